"""LabelJoiner: labels joined to predictions by request id, in event time, over a plain mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from driftline.streams.join import (
    DAY_MS,
    HOUR_MS,
    RESERVED_PREFIX,
    UNKNOWN_MODEL,
    JoinCounts,
    JoinStoreError,
    LabelJoiner,
    ModelKey,
    build_outcome,
    iso_timestamp,
    score_outcome,
)
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_763_850_000_000  # 2025-11-22T22:20:00Z
WINDOW = 7 * DAY_MS
MODEL = ModelKey("fraud-detector", "v3")


class JsonStore(MutableMapping[str, Any]):
    """A dict-backed store that behaves like a Faust table where it matters here.

    Values go through JSON on every write and come back as fresh copies (as a
    table's json serializer does), so non-JSON values and aliasing show up.
    Iterating over the store or asking its size fails: the join must not.
    Reads, writes and deletes are counted.
    """

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.reads = self.writes = self.deletes = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return json.loads(self.data[key])

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        raw = self.data.get(key)
        return default if raw is None else json.loads(raw)

    def __contains__(self, key: object) -> bool:
        self.reads += 1
        return key in self.data

    def __setitem__(self, key: str, value: Any) -> None:
        assert isinstance(key, str)
        self.writes += 1
        self.data[key] = json.dumps(value, allow_nan=False)

    def __delitem__(self, key: str) -> None:
        self.deletes += 1
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the join iterated over the store")

    def __len__(self) -> int:
        raise AssertionError("the join asked for the store's size")

    def keys_for_test(self) -> set[str]:
        return set(self.data)


@pytest.fixture(params=["dict", "json"])
def store(request) -> MutableMapping[str, Any]:
    return {} if request.param == "dict" else JsonStore()


def keys_of(store: MutableMapping[str, Any]) -> set[str]:
    return store.keys_for_test() if isinstance(store, JsonStore) else set(store)


def prediction(rid: str, t: int, *, label: Any = "fraud", value: float | None = None, model: ModelKey = MODEL) -> dict[str, Any]:
    predicted: dict[str, Any] = {"score": 0.75}
    if label is not None:
        predicted["label"] = label
    if value is not None:
        predicted["value"] = value
    return {
        "@timestamp": iso_timestamp(t),
        "timestamp_ms": t,
        "request": {"id": rid, "type": "online"},
        "model": {"name": model.name, "version": model.version},
        "prediction": predicted,
        "labels": {"region": "eu"},
        "features": {"numeric": {"amount": 12.5}},
    }


def feedback(rid: str, t: int, *, labels: list[str] | None = None, values: list[float] | None = None) -> dict[str, Any]:
    return {
        "request": {"id": rid},
        "timestamp_ms": t,
        "feedback": {"labels": ["fraud"] if labels is None else labels, "values": values or [], "source": "PROCESS_FEEDBACK"},
    }


# --- joining ------------------------------------------------------------------------


def test_prediction_then_label_is_joined_once(store):
    joiner = LabelJoiner(store)
    first = joiner.join_batch([prediction("r-1", T0)], [])
    assert first.outcomes == [] and joiner.state_of("r-1") == "prediction"
    second = joiner.join_batch([], [feedback("r-1", T0 + 5_000)])
    [outcome] = second.outcomes
    assert outcome.id == "r-1"
    doc = outcome.document
    assert doc["request"]["id"] == "r-1" and doc["@timestamp"] == iso_timestamp(T0)
    assert doc["model"] == {"name": "fraud-detector", "version": "v3"} and doc["labels"] == {"region": "eu"}
    assert doc["feedback"] == {
        "labels": ["fraud"], "values": [], "source": "PROCESS_FEEDBACK",
        "timestamp": iso_timestamp(T0 + 5_000), "delay_ms": 5_000,
    }  # fmt: skip
    assert doc["outcome"] == {"correct": True, "error": 0.0, "abs_error": 0.0}
    counts = second.counts[MODEL]
    assert (counts.joined, counts.label_delay_ms_min, counts.label_delay_ms_max) == (1, 5_000, 5_000)
    assert joiner.state_of("r-1") == "joined"


def test_label_before_prediction_is_joined_with_negative_delay(store):
    joiner = LabelJoiner(store)
    assert joiner.join_batch([], [feedback("r-1", T0 - 2_000, labels=["ok"])]).outcomes == []
    assert joiner.state_of("r-1") == "label"
    result = joiner.join_batch([prediction("r-1", T0)], [])
    [outcome] = result.outcomes
    assert outcome.document["feedback"]["delay_ms"] == -2_000
    assert outcome.document["outcome"] == {"correct": False, "error": 1.0, "abs_error": 1.0}
    assert result.counts[MODEL].label_delay_ms_sum == -2_000


def test_prediction_and_label_in_one_batch_are_joined(store):
    result = LabelJoiner(store).join_batch([prediction("r-1", T0)], [feedback("r-1", T0 + 1)])
    assert [o.id for o in result.outcomes] == ["r-1"]


def test_duplicate_prediction_is_counted_and_dropped(store):
    joiner = LabelJoiner(store)
    first = prediction("r-1", T0, label="fraud")
    again = prediction("r-1", T0 + 10, label="ok")  # a re-sent prediction with other content
    result = joiner.join_batch([first, again], [])
    assert result.counts[MODEL].duplicate_predictions == 1
    assert joiner.join_batch([first], []).counts[MODEL].duplicate_predictions == 1
    joined = joiner.join_batch([], [feedback("r-1", T0 + 20)])
    [outcome] = joined.outcomes
    assert outcome.document["prediction"]["label"] == "fraud"  # the first one seen wins
    after = joiner.join_batch([again], [])
    assert after.outcomes == [] and after.counts[MODEL].duplicate_predictions == 1


def test_duplicate_label_is_counted_and_dropped(store):
    joiner = LabelJoiner(store)
    label = feedback("r-1", T0)
    result = joiner.join_batch([], [label, label])
    assert result.counts[UNKNOWN_MODEL].duplicate_labels == 1  # no prediction yet: model unknown
    joined = joiner.join_batch([prediction("r-1", T0 + 1)], [label])
    assert len(joined.outcomes) == 1
    assert joined.total().duplicate_labels == 1 and joined.total().joined == 1
    later = joiner.join_batch([], [label])
    assert later.outcomes == [] and later.counts[MODEL].duplicate_labels == 1  # the tombstone knows the model


def test_tombstone_recognizes_duplicates_until_the_window_passes(store):
    joiner = LabelJoiner(store, window_ms=HOUR_MS, bucket_ms=60_000)
    joiner.join_batch([prediction("r-1", T0)], [feedback("r-1", T0 + 1_000)])
    assert joiner.state_of("r-1") == "joined"
    joiner.expire(T0 + 1_000 + HOUR_MS)  # not yet past the window
    assert joiner.state_of("r-1") == "joined"
    assert joiner.join_batch([prediction("r-1", T0)], []).total().duplicate_predictions == 1
    result = joiner.expire(T0 + 1_000 + HOUR_MS + 60_001)
    assert result.expired == [] and joiner.state_of("r-1") is None  # tombstones expire silently
    late = joiner.join_batch([prediction("r-1", T0)], [feedback("r-1", T0 + 1_000)])
    assert late.outcomes == [] and (late.total().late_predictions, late.total().late_labels) == (1, 1)


# --- expiry -------------------------------------------------------------------------


def test_unmatched_prediction_expires_once_when_the_watermark_passes_the_window(store):
    joiner = LabelJoiner(store, bucket_ms=1)  # one-millisecond buckets: exact expiry
    joiner.join_batch([prediction("r-1", T0)], [])
    assert joiner.expire(T0 + WINDOW).expired == []  # exactly one window later: still waiting
    assert joiner.state_of("r-1") == "prediction"
    result = joiner.expire(T0 + WINDOW + 1)
    [expired] = result.expired
    assert (expired.kind, expired.request_id, expired.timestamp_ms, expired.model) == ("prediction", "r-1", T0, MODEL)
    assert expired.document["prediction"]["label"] == "fraud"
    assert result.counts[MODEL].expired_predictions == 1
    assert joiner.expire(T0 + 2 * WINDOW).expired == []  # reported once
    assert keys_of(store) == {f"{RESERVED_PREFIX}clock"}


def test_expiry_waits_at_most_one_bucket_beyond_the_window(store):
    joiner = LabelJoiner(store)  # one-hour buckets
    t = T0 - T0 % HOUR_MS  # the start of a bucket: the longest wait
    joiner.join_batch([prediction("r-1", t)], [])
    assert joiner.expire(t + WINDOW + HOUR_MS - 1).expired == []
    assert [e.request_id for e in joiner.expire(t + WINDOW + HOUR_MS).expired] == ["r-1"]


def test_records_advance_the_watermark_and_expire_older_entries(store):
    joiner = LabelJoiner(store, window_ms=10_000, bucket_ms=1_000)
    joiner.join_batch([prediction("old", T0)], [])
    result = joiner.join_batch([prediction("new", T0 + 12_000)], [])
    assert [e.request_id for e in result.expired] == ["old"] and result.watermark_ms == T0 + 12_000
    assert joiner.state_of("new") == "prediction"


def test_orphan_label_expires(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS)
    joiner.join_batch([], [feedback("r-9", T0)])
    result = joiner.expire(T0 + 2 * DAY_MS)
    [expired] = result.expired
    assert (expired.kind, expired.request_id, expired.model) == ("label", "r-9", UNKNOWN_MODEL)
    assert expired.document["labels"] == ["fraud"]
    assert result.counts[UNKNOWN_MODEL].expired_labels == 1
    assert joiner.state_of("r-9") is None


def test_label_later_than_the_window_leaves_both_sides_unmatched(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS, bucket_ms=1)
    joiner.join_batch([prediction("r-1", T0)], [])
    result = joiner.join_batch([], [feedback("r-1", T0 + DAY_MS + 1)])
    assert result.outcomes == [] and [e.kind for e in result.expired] == ["prediction"]
    assert joiner.state_of("r-1") == "label"
    assert [e.kind for e in joiner.expire(T0 + 3 * DAY_MS).expired] == ["label"]


def test_prediction_more_than_a_window_after_a_pending_label_expires_the_label(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS)
    joiner.join_batch([], [feedback("r-1", T0)])
    result = joiner.join_batch([prediction("r-1", T0 + DAY_MS + 1)], [])
    assert result.outcomes == [] and [(e.kind, e.request_id) for e in result.expired] == [("label", "r-1")]
    assert joiner.state_of("r-1") == "prediction"


def test_side_more_than_a_window_before_the_pending_one_is_late(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS)
    joiner.join_batch([prediction("r-1", T0 + DAY_MS + 1)], [feedback("r-2", T0 + DAY_MS + 1)])
    result = joiner.join_batch([prediction("r-2", T0)], [feedback("r-1", T0)])
    assert result.outcomes == [] and result.expired == []
    assert (result.counts[MODEL].late_predictions, result.counts[MODEL].late_labels) == (1, 1)
    assert (joiner.state_of("r-1"), joiner.state_of("r-2")) == ("prediction", "label")


def test_pair_exactly_one_window_apart_is_joined(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS)
    result = joiner.join_batch(
        [prediction("a", T0), prediction("b", T0 + DAY_MS)], [feedback("a", T0 + DAY_MS), feedback("b", T0)]
    )
    assert sorted(o.document["feedback"]["delay_ms"] for o in result.outcomes) == [-DAY_MS, DAY_MS]


def test_a_batch_joins_before_it_advances_the_watermark(store):
    joiner = LabelJoiner(store, window_ms=10_000, bucket_ms=1_000)
    result = joiner.join_batch(
        [prediction("old", T0), prediction("alone", T0), prediction("new", T0 + 60_000)], [feedback("old", T0 + 1)]
    )
    assert [o.id for o in result.outcomes] == ["old"]
    assert [e.request_id for e in result.expired] == ["alone"]


def test_watermark_can_be_passed_in_and_never_goes_back(store):
    joiner = LabelJoiner(store)
    joiner.join_batch([prediction("r-1", T0)], [], watermark_ms=T0 + 5)
    assert joiner.watermark_ms == T0 + 5
    joiner.join_batch([prediction("r-2", T0 - 100)], [], watermark_ms=T0)
    assert joiner.watermark_ms == T0 + 5


# --- replay and restarts ------------------------------------------------------------------


def batches_of_a_day() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Six batches: labels before and after predictions, one never labelled, one orphan."""
    hour = HOUR_MS
    return [
        ([prediction("a", T0), prediction("b", T0 + 1)], [feedback("c", T0 + 2)]),
        ([prediction("c", T0 + 3)], [feedback("a", T0 + hour)]),
        ([prediction("d", T0 + 2 * hour)], [feedback("b", T0 + 3 * hour)]),
        ([], [feedback("orphan", T0 + 3 * hour)]),
        ([prediction("e", T0 + 4 * hour)], [feedback("e", T0 + 4 * hour + 5)]),
        ([prediction("a", T0)], [feedback("b", T0 + 3 * hour)]),  # redelivered within the stream
    ]


def run(joiner: LabelJoiner, batches) -> tuple[list[str], list[tuple[str, str]], JoinCounts]:
    outcomes, expired, total = [], [], JoinCounts()
    for preds, labels in batches:
        result = joiner.join_batch(preds, labels)
        outcomes += [o.id for o in result.outcomes]
        expired += [(e.kind, e.request_id) for e in result.expired]
        total.merge(result.total())
    return outcomes, expired, total


def test_replay_after_restart_gives_no_new_outcomes(store):
    outcomes, expired, total = run(LabelJoiner(store, window_ms=DAY_MS), batches_of_a_day())
    assert sorted(outcomes) == ["a", "b", "c", "e"] and expired == []
    assert total.duplicates == 2
    replayed, expired_again, again = run(LabelJoiner(store, window_ms=DAY_MS), batches_of_a_day())  # a new worker, same table
    assert replayed == [] and expired_again == []
    assert again.joined == 0 and again.duplicate_predictions == 6 and again.duplicate_labels == 6


def test_replay_after_everything_expired_gives_nothing_new(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS)
    run(joiner, batches_of_a_day())
    final = joiner.expire(T0 + 3 * DAY_MS)
    assert sorted((e.kind, e.request_id) for e in final.expired) == [("label", "orphan"), ("prediction", "d")]
    assert keys_of(store) == {f"{RESERVED_PREFIX}clock"}
    replayed, expired, total = run(LabelJoiner(store, window_ms=DAY_MS), batches_of_a_day())
    assert replayed == [] and expired == [] and total.late_predictions + total.late_labels == 12


def test_results_do_not_depend_on_the_store_or_wall_clock():
    first = LabelJoiner({}).join_batch([prediction("r", T0)], [feedback("r", T0 + 9)])
    second = LabelJoiner(JsonStore()).join_batch([prediction("r", T0)], [feedback("r", T0 + 9)])
    assert first.outcomes == second.outcomes and first.counts == second.counts


# --- outcome documents --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "truth", "expected"),
    [
        ({"label": "cat"}, {"labels": ["cat"]}, {"correct": True, "error": 0.0, "abs_error": 0.0}),
        ({"label": "cat"}, {"labels": ["dog", "cat"]}, {"correct": True, "error": 0.0, "abs_error": 0.0}),
        ({"label": ["cat"]}, {"labels": ["dog"]}, {"correct": False, "error": 1.0, "abs_error": 1.0}),
        ({"label": ["cat", "dog"]}, {"labels": ["dog", "cat"]}, {"correct": True, "error": 0.0, "abs_error": 0.0}),
        ({"label": ["cat", "dog"]}, {"labels": ["cat"]}, {"correct": False, "error": 0.5, "abs_error": 0.5}),
        ({"label": ["a", "b"]}, {"labels": ["c"]}, {"correct": False, "error": 1.0, "abs_error": 1.0}),
        ({"value": 10.0}, {"values": [12.5]}, {"error": -2.5, "abs_error": 2.5}),
        ({"value": [3]}, {"values": [1.0, 9.0]}, {"error": 2.0, "abs_error": 2.0}),
        ({"label": "cat", "value": 1.0}, {"values": [0.5]}, {"error": 0.5, "abs_error": 0.5}),
        ({"label": "cat"}, {"values": [1.0]}, {}),
        ({"value": float("inf")}, {"values": [1.0]}, {}),
        ({"value": True}, {"values": [1.0]}, {}),
        ({}, {"labels": ["cat"], "values": [1.0]}, {}),
        ({"label": "cat"}, {"labels": "cat"}, {"correct": True, "error": 0.0, "abs_error": 0.0}),
        ({"label": "cat"}, {"labels": [{"not": "hashable"}]}, {}),
        ({"value": 2.0}, {"values": 1.5}, {"error": 0.5, "abs_error": 0.5}),
        ({"value": []}, {"values": [1.5]}, {}),
        # as the normalize stage writes them: the top output, all outputs, the class distribution
        ({"label": "a", "outputs": [{"label": "a"}], "scores": {"a": 0.9, "b": 0.1}}, {"labels": ["b"]},
         {"correct": False, "error": 1.0, "abs_error": 1.0}),
        ({"label": "a", "outputs": [{"label": "a"}, {"label": "b"}]}, {"labels": ["b", "a"]},
         {"correct": True, "error": 0.0, "abs_error": 0.0}),
        ({"label": "a", "outputs": [{"label": "a"}, {"label": "b"}, {"label": "c"}]}, {"labels": ["a", "d"]},
         {"correct": False, "error": 0.75, "abs_error": 0.75}),
        ({"value": 4.0, "outputs": [{"value": 4.0}]}, {"values": [5.0]}, {"error": -1.0, "abs_error": 1.0}),
    ],
)
def test_outcome_error(predicted, truth, expected):
    assert score_outcome(predicted, truth) == expected


def test_regression_outcome_is_joined_with_signed_error(store):
    result = LabelJoiner(store).join_batch(
        [prediction("r", T0, label=None, value=3.25)], [feedback("r", T0 + 1, labels=[], values=[4.0])]
    )
    assert result.outcomes[0].document["outcome"] == {"error": -0.75, "abs_error": 0.75}


def test_multi_label_outcome_uses_jaccard(store):
    result = LabelJoiner(store).join_batch(
        [prediction("r", T0, label=["fraud", "chargeback"])], [feedback("r", T0 + 1, labels=["fraud"])]
    )
    assert result.outcomes[0].document["outcome"] == {"correct": False, "error": 0.5, "abs_error": 0.5}


def test_feedback_keeps_its_own_timestamp_text():
    doc = build_outcome({"prediction": {}}, {"labels": ["ok"], "timestamp": "2026-11-22T00:00:00Z"}, prediction_ms=0, label_ms=5)
    assert doc["feedback"]["timestamp"] == "2026-11-22T00:00:00Z" and doc["feedback"]["delay_ms"] == 5


def test_labels_naming_their_model_are_counted_for_it(store):
    joiner = LabelJoiner(store, window_ms=DAY_MS)
    named = feedback("r", T0) | {"model": {"name": "fraud-detector"}}
    assert joiner.join_batch([], [named, named]).counts[ModelKey("fraud-detector", None)].duplicate_labels == 1
    result = joiner.expire(T0 + 3 * DAY_MS)
    assert result.expired[0].model == ModelKey("fraud-detector", None)
    assert result.counts[ModelKey("fraud-detector", None)].expired_labels == 1


def test_outcome_without_comparable_truth_is_counted_unscored(store):
    result = LabelJoiner(store).join_batch([prediction("r", T0)], [feedback("r", T0 + 1, labels=[], values=[1.0])])
    assert result.outcomes[0].document["outcome"] == {}
    assert result.counts[MODEL].unscored == 1 and result.counts[MODEL].joined == 1


def test_outcome_document_does_not_modify_the_prediction():
    pred = prediction("r", T0)
    before = json.dumps(pred, sort_keys=True)
    build_outcome(pred, {"labels": ["ok"]}, prediction_ms=T0, label_ms=T0)
    assert json.dumps(pred, sort_keys=True) == before


def test_keep_fields_drops_other_prediction_fields_from_the_store_and_outcome(store):
    joiner = LabelJoiner(store, keep_fields=["latency_ms"])
    pred = prediction("r", T0) | {"latency_ms": 4.5}
    joiner.join_batch([pred], [])
    [outcome] = joiner.join_batch([], [feedback("r", T0 + 1)]).outcomes
    assert "features" not in outcome.document and outcome.document["latency_ms"] == 4.5
    assert outcome.document["prediction"] == pred["prediction"]


# --- bad input, counters, store use ----------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {"timestamp_ms": T0},
        {"request": {"id": ""}, "timestamp_ms": T0},
        {"request": {"id": f"{RESERVED_PREFIX}clock"}, "timestamp_ms": T0, "feedback": {}},
        {"request": {"id": "r"}, "timestamp_ms": "yesterday"},
        {"request": {"id": "r"}, "timestamp_ms": True},
        {"request": {"id": "r"}},
    ],
)
def test_unusable_records_are_rejected_with_a_reason(store, record):
    result = LabelJoiner(store).join_batch([record], [record])
    assert [r.kind for r in result.rejected] == ["prediction", "label"]
    assert all(r.reason for r in result.rejected) and result.counts[UNKNOWN_MODEL].rejected == 2
    assert result.watermark_ms is None


def test_feedback_without_feedback_object_is_rejected(store):
    [rejected] = LabelJoiner(store).join_batch([], [{"request": {"id": "r"}, "timestamp_ms": T0}]).rejected
    assert rejected.reason == "feedback object is missing"


def test_counts_are_kept_per_model_version(store):
    other = ModelKey("fraud-detector", "v4")
    result = LabelJoiner(store).join_batch(
        [prediction("a", T0), prediction("b", T0, model=other), prediction("b", T0, model=other)],
        [feedback("a", T0 + 10), feedback("b", T0 + 30)],
    )
    assert result.counts[MODEL].joined == 1 and result.counts[MODEL].label_delay_ms_sum == 10
    assert result.counts[other].joined == 1 and result.counts[other].duplicate_predictions == 1
    assert result.total().joined == 2 and result.total().label_delay_ms_mean == 20.0


def test_namespaces_keep_separate_clocks_in_one_store(store):
    p0 = LabelJoiner(store, namespace="0", window_ms=10_000, bucket_ms=1_000)
    p1 = LabelJoiner(store, namespace="1", window_ms=10_000, bucket_ms=1_000)
    p0.join_batch([prediction("a", T0)], [])
    p1.join_batch([prediction("b", T0 + 60_000)], [])
    assert p0.state_of("a") == "prediction" and p0.watermark_ms == T0 and p1.watermark_ms == T0 + 60_000
    assert [e.request_id for e in p0.expire(T0 + 60_000).expired] == ["a"]


def test_a_batch_reads_and_writes_each_key_once():
    store = JsonStore()
    joiner = LabelJoiner(store)
    joiner.join_batch([prediction(f"r{i}", T0 + i) for i in range(100)], [])
    # 100 entries, then one index chunk + its header and the clock
    assert store.writes == 100 + 2 + 1
    assert store.reads == 1 + 100 + 1  # clock, entries, index header
    store.reads = store.writes = 0
    joiner.join_batch([], [feedback(f"r{i}", T0 + 100 + i) for i in range(100)])
    assert store.writes == 100 + 1  # tombstones in the same bucket: no index write; the clock moved
    assert store.reads == 1 + 100


# --- the contract, for any interleaving ---------------------------------------------------


@st.composite
def interleavings(draw):
    """Records of up to 25 request ids (each at most one prediction and one label, with
    duplicates) in any order, cut into batches of any size, all within one window."""
    records: list[tuple[str, str, int]] = []
    both, predicted_only, labelled_only = set(), set(), set()
    for i in range(draw(st.integers(0, 25))):
        rid = f"r{i}"
        has_prediction, has_label = draw(st.booleans()), draw(st.booleans())
        t_pred, t_label = draw(st.integers(0, 3 * DAY_MS)), draw(st.integers(0, 3 * DAY_MS))
        if has_prediction:
            records += [("p", rid, T0 + t_pred)] * draw(st.integers(1, 3))
        if has_label:
            records += [("l", rid, T0 + t_label)] * draw(st.integers(1, 3))
        if has_prediction and has_label:
            both.add(rid)
        elif has_prediction or has_label:
            (predicted_only if has_prediction else labelled_only).add(rid)
    order = draw(st.permutations(records))
    batches, start = [], 0
    while start < len(order):
        size = draw(st.integers(1, 8))
        batches.append(order[start : start + size])
        start += size
    return batches, both, predicted_only, labelled_only, len(records) - len(set(records))


def feed(joiner: LabelJoiner, batch: list[tuple[str, str, int]]):
    preds = [prediction(rid, t) for kind, rid, t in batch if kind == "p"]
    labels = [feedback(rid, t) for kind, rid, t in batch if kind == "l"]
    return joiner.join_batch(preds, labels)


@settings(max_examples=200, deadline=None)
@given(interleavings())
def test_outcomes_are_the_request_ids_with_both_sides_in_any_order(case):
    batches, both, predicted_only, labelled_only, duplicates = case
    joiner = LabelJoiner(JsonStore(), bucket_ms=HOUR_MS)
    outcomes: dict[str, dict[str, Any]] = {}
    total = JoinCounts()
    for batch in batches:
        result = feed(joiner, batch)
        assert result.expired == []  # everything is within the window
        for outcome in result.outcomes:
            assert outcome.id not in outcomes
            outcomes[outcome.id] = outcome.document
        total.merge(result.total())
    assert set(outcomes) == both
    assert total.joined == len(both) and total.duplicates == duplicates
    # the same documents as one batch in sorted order would give
    reference = feed(LabelJoiner({}), sorted(r for b in batches for r in b))
    assert outcomes == {o.id: o.document for o in reference.outcomes}
    # later, everything unmatched expires exactly once and the store holds only the clock
    final = joiner.expire(T0 + 3 * DAY_MS + WINDOW + HOUR_MS)
    assert {e.request_id for e in final.expired if e.kind == "prediction"} == predicted_only
    assert {e.request_id for e in final.expired if e.kind == "label"} == labelled_only
    assert len(final.expired) == len(predicted_only) + len(labelled_only)
    assert joiner.store.keys_for_test() <= {f"{RESERVED_PREFIX}clock"}


@st.composite
def streams_longer_than_the_window(draw):
    """Records over three windows of event time, some request ids redelivered, in batches."""
    records = []
    for i in range(draw(st.integers(0, 20))):
        for kind in ("p", "l"):
            if draw(st.booleans()):
                records += [(kind, f"r{i}", T0 + draw(st.integers(0, 3 * DAY_MS)))] * draw(st.integers(1, 2))
    order = draw(st.permutations(records))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=6)))
    return [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]


@settings(max_examples=200, deadline=None)
@given(streams_longer_than_the_window())
def test_every_record_is_accounted_for_exactly_once(batches):
    joiner = LabelJoiner(JsonStore(), window_ms=DAY_MS, bucket_ms=HOUR_MS)
    total, joined = JoinCounts(), []
    results = [feed(joiner, batch) for batch in batches] + [joiner.expire(T0 + 5 * DAY_MS)]
    for result in results:
        total.merge(result.total())
        joined += [o.id for o in result.outcomes]
        assert all(abs(o.document["feedback"]["delay_ms"]) <= DAY_MS for o in result.outcomes)
    assert len(joined) == len(set(joined)) == total.joined
    predictions = sum(kind == "p" for batch in batches for kind, _, _ in batch)
    labels = sum(kind == "l" for batch in batches for kind, _, _ in batch)
    assert predictions == total.joined + total.duplicate_predictions + total.late_predictions + total.expired_predictions
    assert labels == total.joined + total.duplicate_labels + total.late_labels + total.expired_labels
    assert joiner.store.keys_for_test() <= {f"{RESERVED_PREFIX}clock"}


class TableWithDefault(JsonStore):
    """Like a Faust table declared with ``default=dict``: a missing key reads as ``{}``."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key) or {}


def test_a_store_whose_missing_keys_read_as_empty_works_the_same():
    joiner = LabelJoiner(TableWithDefault(), window_ms=DAY_MS)
    assert joiner.join_batch([prediction("r", T0)], []).outcomes == []
    assert [o.id for o in joiner.join_batch([], [feedback("r", T0 + 1)]).outcomes] == ["r"]
    joiner.join_batch([], [feedback("orphan", T0)])
    assert [e.request_id for e in joiner.expire(T0 + 3 * DAY_MS).expired] == ["orphan"]
    assert joiner.store.keys_for_test() == {f"{RESERVED_PREFIX}clock"}


def test_bucket_width_cannot_change_for_an_existing_store(store):
    LabelJoiner(store, bucket_ms=HOUR_MS).join_batch([prediction("r", T0)], [])
    with pytest.raises(JoinStoreError, match="bucket_ms"):
        LabelJoiner(store, bucket_ms=60_000).join_batch([], [feedback("r", T0)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50_000, 120_000), min_size=1, max_size=60), st.randoms(use_true_random=False),
       st.integers(1, 8))
def test_no_outcome_becomes_known_before_the_bound_the_previous_batches_gave(delays, rng, batches):
    """Each side in event-time order, interleaved and batched at random: every outcome's known time (the later
    of prediction and label) is at or after ``known_ms`` as it stood before its batch. The watermark is not."""
    predictions = [prediction(f"r{i}", T0 + 1_000 * i) for i in range(len(delays))]
    labels = sorted((feedback(f"r{i}", T0 + 1_000 * i + d) for i, d in enumerate(delays)), key=lambda f: f["timestamp_ms"])
    merged, p, f = [], 0, 0
    while p < len(predictions) or f < len(labels):  # a random interleaving that keeps each side's order
        if f >= len(labels) or (p < len(predictions) and rng.random() < 0.5):
            merged.append(("p", predictions[p]))
            p += 1
        else:
            merged.append(("f", labels[f]))
            f += 1
    cuts = sorted(rng.sample(range(1, len(merged)), min(batches, len(merged) - 1))) if len(merged) > 1 else []
    joiner = LabelJoiner({}, window_ms=WINDOW)
    bound = None
    for start, end in zip([0] + cuts, cuts + [len(merged)]):
        part = merged[start:end]
        result = joiner.join_batch([r for k, r in part if k == "p"], [r for k, r in part if k == "f"])
        for outcome in result.outcomes:
            known = max(outcome.document["timestamp_ms"],
                        outcome.document["timestamp_ms"] + outcome.document["feedback"]["delay_ms"])
            assert bound is None or known >= bound
        assert result.known_ms is None or bound is None or result.known_ms >= bound
        bound = result.known_ms if result.known_ms is not None else bound
