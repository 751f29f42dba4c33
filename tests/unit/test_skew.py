"""Schema skew per event: every anomaly kind on crafted events, none on events like the training data.

Baselines are built directly with the model dataclasses (no builder exists yet).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.baselines.model import Baseline, FeatureSchema
from driftline.connectors.elasticsearch.indices import check_id, document_id
from driftline.streams.skew import (
    ANOMALY_ID_FIELDS,
    MAX_VALUE_CHARS,
    OTHER,
    Anomaly,
    AnomalyCounts,
    AnomalyKind,
    SkewValidator,
    anomaly_document,
)

MODEL, VERSION = "fraud-detector", "2026.11.1"
CHANNELS = ["app", "store", "web"]
COUNTRIES = [f"c{i:02d}" for i in range(30)]
SCHEMA = {
    "amount": FeatureSchema("amount", "numeric", min=0.0, max=10_000.0),
    "age": FeatureSchema("age", "numeric", min=18.0, max=90.0, integral=True),
    "score": FeatureSchema("score", "numeric", required=False),  # unbounded, optional
    "channel": FeatureSchema("channel", "categorical", domain=CHANNELS),
    "country": FeatureSchema("country", "categorical", domain=COUNTRIES, required=False),
    "merchant": FeatureSchema("merchant", "categorical"),  # no domain: any value
    "description": FeatureSchema("description", "text", required=False),
    "is_new": FeatureSchema("is_new", "boolean"),
}
BASELINE = Baseline(MODEL, VERSION, SCHEMA, {})


def event(numeric: dict[str, Any] | None = None, categorical: dict[str, Any] | None = None,
          boolean: dict[str, Any] | None = None, missing: list[str] | None = None,
          vector: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid event, with the given maps' entries replacing or adding to its own."""
    features = {
        "numeric": {"amount": 12.5, "age": 41.0, "score": -3.2},
        "categorical": {"channel": "web", "country": "c03", "merchant": "m-1", "description": "gift card"},
        "boolean": {"is_new": False},
        "vector": {},
        "missing": [],
    }
    for name, extra in (("numeric", numeric), ("categorical", categorical), ("boolean", boolean), ("vector", vector)):
        features[name].update(extra or {})
    if missing:
        features["missing"] = list(missing)
        for name in missing:
            for part in ("numeric", "categorical", "boolean"):
                features[part].pop(name, None)
    return {"model": {"name": MODEL, "version": VERSION}, "latency_ms": 7.1, "request": {"id": "r-1"},
            "prediction": {"label": "fraud", "score": 0.89, "outputs": [], "scores": {}},
            "features": features, "labels": {"region": "eu"}}


def kinds(anomalies: list[Anomaly]) -> list[tuple[str, str]]:
    return [(a.feature, str(a.kind)) for a in anomalies]


VALIDATOR = SkewValidator(BASELINE)


def test_a_valid_event_has_no_anomaly() -> None:
    assert VALIDATOR.validate(event()) == []


# --- each kind on crafted events ---------------------------------------------------------------------


def test_a_string_where_a_number_was_trained_is_a_type_mismatch() -> None:
    e = event(categorical={"amount": "12.50"})
    del e["features"]["numeric"]["amount"]
    assert VALIDATOR.validate(e) == [Anomaly("amount", AnomalyKind.TYPE_MISMATCH, "12.50", "numeric")]


def test_a_number_where_a_string_was_trained_is_a_type_mismatch() -> None:
    e = event(numeric={"channel": 3.0})
    del e["features"]["categorical"]["channel"]
    assert VALIDATOR.validate(e) == [Anomaly("channel", AnomalyKind.TYPE_MISMATCH, "3.0", "categorical")]


def test_a_boolean_or_a_vector_in_the_wrong_place_is_a_type_mismatch() -> None:
    e = event(boolean={"amount": True}, vector={"is_new": [0.1, 0.2]})
    del e["features"]["numeric"]["amount"]
    del e["features"]["boolean"]["is_new"]
    assert kinds(VALIDATOR.validate(e)) == [("amount", "type_mismatch"), ("is_new", "type_mismatch")]
    assert [a.value for a in VALIDATOR.validate(e)] == ["true", "vector of 2"]


def test_a_fraction_for_an_integral_feature_is_a_type_mismatch() -> None:
    assert VALIDATOR.validate(event(numeric={"age": 41.5})) == [
        Anomaly("age", AnomalyKind.TYPE_MISMATCH, "41.5", "integral")
    ]
    assert VALIDATOR.validate(event(numeric={"age": 41.0})) == []


def test_a_value_outside_the_domain_is_an_unknown_category() -> None:
    assert VALIDATOR.validate(event(categorical={"channel": "fax"})) == [
        Anomaly("channel", AnomalyKind.UNKNOWN_CATEGORY, "fax", "one of: app, store, web")
    ]
    (anomaly,) = VALIDATOR.validate(event(categorical={"country": "zz"}))
    assert anomaly.expected == "one of 30 values of the schema's domain"
    assert VALIDATOR.validate(event(categorical={"merchant": "never-seen"})) == []  # no domain: anything goes


@pytest.mark.parametrize(
    "value, expected",
    [(-0.01, "[0.0, 10000.0]"), (10_000.5, "[0.0, 10000.0]")],
)
def test_a_number_outside_the_range_is_out_of_range(value: float, expected: str) -> None:
    assert VALIDATOR.validate(event(numeric={"amount": value})) == [
        Anomaly("amount", AnomalyKind.OUT_OF_RANGE, repr(value), expected)
    ]


def test_range_bounds_are_inclusive_and_open_when_missing() -> None:
    assert VALIDATOR.validate(event(numeric={"amount": 0.0, "age": 90.0, "score": -1e300})) == []
    one_sided = SkewValidator(Baseline(MODEL, VERSION, {"x": FeatureSchema("x", "numeric", min=1.0)}, {}))
    assert kinds(one_sided.validate({"features": {"numeric": {"x": 0.0}}})) == [("x", "out_of_range")]
    assert one_sided.validate({"features": {"numeric": {"x": 0.0}}})[0].expected == ">= 1.0"


def test_a_fractional_out_of_range_integral_value_has_both_anomalies() -> None:
    assert kinds(VALIDATOR.validate(event(numeric={"age": 12.5}))) == [("age", "type_mismatch"), ("age", "out_of_range")]


def test_a_required_feature_absent_or_null_is_missing_required() -> None:
    absent = event()
    del absent["features"]["categorical"]["channel"]
    assert VALIDATOR.validate(absent) == [Anomaly("channel", AnomalyKind.MISSING_REQUIRED, "absent", "required")]
    assert VALIDATOR.validate(event(missing=["amount", "is_new"])) == [
        Anomaly("amount", AnomalyKind.MISSING_REQUIRED, "null", "required"),
        Anomaly("is_new", AnomalyKind.MISSING_REQUIRED, "null", "required"),
    ]
    assert VALIDATOR.validate(event(missing=["score", "country"])) == []  # optional features may be null


def test_a_required_feature_with_the_wrong_type_is_not_also_missing() -> None:
    e = event(categorical={"age": "forty"})
    del e["features"]["numeric"]["age"]
    assert kinds(VALIDATOR.validate(e)) == [("age", "type_mismatch")]


def test_unexpected_features_are_reported_only_when_asked() -> None:
    e = event(numeric={"debug_ms": 3.0}, categorical={"experiment": "b"}, vector={"embedding": [0.1]})
    assert VALIDATOR.validate(e) == []
    loud = SkewValidator(BASELINE, report_unexpected=True)
    assert kinds(loud.validate(e)) == [
        ("debug_ms", "unexpected_feature"), ("experiment", "unexpected_feature"), ("embedding", "unexpected_feature"),
    ]


def test_an_event_without_features_misses_every_required_one() -> None:
    required = sorted(name for name, s in SCHEMA.items() if s.required)
    assert kinds(VALIDATOR.validate({})) == [(name, "missing_required") for name in required]


def test_long_values_are_cut() -> None:
    (anomaly,) = VALIDATOR.validate(event(categorical={"channel": "x" * 1000}))
    assert len(anomaly.value) == MAX_VALUE_CHARS and anomaly.value.endswith("…")


def test_the_schema_not_the_statistics_decides_and_edits_are_honoured() -> None:
    widened = dict(SCHEMA, channel=FeatureSchema("channel", "categorical", domain=[*CHANNELS, "fax"]),
                   amount=FeatureSchema("amount", "numeric", min=0.0, max=None))
    validator = SkewValidator(Baseline(MODEL, VERSION, widened, {}))
    assert validator.validate(event(categorical={"channel": "fax"}, numeric={"amount": 1e9})) == []


# --- none on events like the training data --------------------------------------------------------------


def training_like_events(seed: int, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n):
        optional_missing = [name for name in ("score", "country", "description") if rng.random() < 0.1]
        events.append(event(
            numeric={"amount": float(np.clip(rng.lognormal(3, 1), 0, 10_000)), "age": float(rng.integers(18, 91)),
                     "score": float(rng.normal(0, 5))},
            categorical={"channel": str(rng.choice(CHANNELS)), "country": str(rng.choice(COUNTRIES)),
                         "merchant": f"m-{rng.integers(10_000)}", "description": "refund for order"},
            boolean={"is_new": bool(rng.random() < 0.2)},
            missing=optional_missing,
        ))  # fmt: skip
    return events


def test_events_drawn_like_the_training_data_have_no_anomaly() -> None:
    counts = AnomalyCounts()
    for e in training_like_events(seed=31, n=3000):
        counts.update(VALIDATOR.validate(e))
    assert (counts.events, counts.anomalous, counts.counts) == (3000, 0, {})


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10, 200))
def test_numbers_are_anomalous_exactly_outside_their_range(amount: float, age: int) -> None:
    found = set(kinds(VALIDATOR.validate(event(numeric={"amount": amount, "age": float(age)}))))
    assert (("amount", "out_of_range") in found) == (not 0.0 <= amount <= 10_000.0)
    assert (("age", "out_of_range") in found) == (not 18 <= age <= 90)
    assert ("age", "type_mismatch") not in found


# --- documents and counts ---------------------------------------------------------------------------------


def test_anomaly_documents_have_deterministic_distinct_ids() -> None:
    a = Anomaly("channel", AnomalyKind.UNKNOWN_CATEGORY, "fax", "one of: app, store, web")
    doc = anomaly_document(a, MODEL, VERSION, 1_790_000_000_000, "r-1", {"region": "eu", "tier": 2, "none": None})
    assert doc["event"]["id"] == document_id(doc, ANOMALY_ID_FIELDS) == check_id(doc["event"]["id"])
    assert doc["event"]["dataset"] == "driftline.anomalies" and doc["labels"] == {"region": "eu", "tier": "2"}
    assert doc["anomaly"] == {"feature": "channel", "kind": "unknown_category", "value": "fax",
                              "expected": "one of: app, store, web"}
    assert doc["request"] == {"id": "r-1"} and doc["model"] == {"name": MODEL, "version": VERSION}
    assert json.loads(json.dumps(doc)) == doc
    ids = {
        anomaly_document(x, MODEL, VERSION, 0, request)["event"]["id"]
        for x in (a, a._replace(kind=AnomalyKind.MISSING_REQUIRED), a._replace(feature="country"))
        for request in ("r-1", "r-2")
    }
    assert len(ids) == 6
    assert anomaly_document(a, MODEL, VERSION, 5, "r-1")["event"]["id"] == doc["event"]["id"]  # a replay overwrites


def test_anomaly_documents_refuse_a_bad_time() -> None:
    with pytest.raises(ValueError, match="event_time_ms"):
        anomaly_document(Anomaly("x", AnomalyKind.OUT_OF_RANGE, "1", "<= 0"), MODEL, VERSION, -1, "r-1")


def test_anomaly_counts_merge_exactly_and_round_trip() -> None:
    events = training_like_events(seed=32, n=200)
    for i in range(0, 200, 7):
        events[i]["features"]["categorical"]["channel"] = "fax"
    for i in range(0, 200, 11):
        events[i]["features"]["numeric"]["age"] = 17.5
    left, right, whole = AnomalyCounts(), AnomalyCounts(), AnomalyCounts()
    for i, e in enumerate(events):
        found = VALIDATOR.validate(e)
        (left if i < 80 else right).update(found)
        whole.update(found)
    assert left.merge(right) == whole
    assert whole.counts == {("channel", "unknown_category"): 29, ("age", "type_mismatch"): 19, ("age", "out_of_range"): 19}
    assert whole.anomalous == len(set(range(0, 200, 7)) | set(range(0, 200, 11)))
    assert whole.rate("channel", AnomalyKind.UNKNOWN_CATEGORY) == 29 / 200
    assert AnomalyCounts.from_json(json.loads(json.dumps(whole.to_json()))) == whole


def test_anomaly_counts_stay_bounded() -> None:
    counts = AnomalyCounts(max_features=5)
    for i in range(100):
        counts.update([Anomaly(f"extra{i}", AnomalyKind.UNEXPECTED_FEATURE, "1", "not in the schema")])
    assert len(counts.counts) == 6 and counts.counts[(OTHER, "unexpected_feature")] == 95


def test_an_edited_schema_is_what_validation_honours(tmp_path):
    """Build a baseline from a file, widen a range and add a category in its JSON, as a user would."""
    from driftline.baselines.build import build_baseline

    train = tmp_path / "train.csv"
    rng = np.random.default_rng(0)
    train.write_text("amount,channel\n" + "".join(f"{v:.3f},{rng.choice(['web', 'app'])}\n"
                                                  for v in rng.uniform(0, 100, 2000)))
    built = build_baseline(train, "shop", "1", novelty=False)
    event = {"features": {"numeric": {"amount": 500.0}, "categorical": {"channel": "kiosk"}}}
    assert {a.kind for a in SkewValidator(built).validate(event)} == {"out_of_range", "unknown_category"}

    document = json.loads(built.dumps())
    document["schema"]["features"]["amount"]["max"] = 1000.0
    document["schema"]["features"]["channel"]["domain"].append("kiosk")
    edited = Baseline.from_json(json.dumps(document))
    assert SkewValidator(edited).validate(event) == []
    document["schema"]["features"]["channel"]["required"] = False
    assert SkewValidator(Baseline.from_json(json.dumps(document))).validate(
        {"features": {"numeric": {"amount": 5.0}, "categorical": {}}}) == []
