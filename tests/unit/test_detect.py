"""The detect stage's per-key state: replay-safe, restart-safe, faithful to River."""

from __future__ import annotations

import random

from river import drift

from driftline.streams.detect import DetectorBank, ModelKey, ObservationBatch, observation_streams, stream_kinds
from driftline.streams.detectors import build_detector, default_spec
from driftline.streams.staging import StagedStore

KEY = ModelKey("fraud", "v1")


def error_stream(seed: int = 3, n: int = 6000, change_at: int = 3000) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < (0.1 if i < change_at else 0.4)) for i in range(n)]


def batches(values: list[float], size: int = 250, partition: int = 0) -> list[ObservationBatch]:
    """Batches of one partition; the mark of each is the time of its last value + 1 (all released)."""
    out = []
    for start in range(0, len(values), size):
        chunk = values[start:start + size]
        obs = [("error", v, 1_000 * (start + i), "feedback", start + i) for i, v in enumerate(chunk)]
        out.append(ObservationBatch(KEY, partition, {"j": obs[-1][2] + 1}, obs))
    return out


def positions(events) -> list[int]:
    return [e.position for e in events]


def test_alarms_equal_river_adwin_run_offline():
    values = error_stream()
    bank = DetectorBank(KEY)
    found = [e for b in batches(values) for e in bank.apply(b)]
    offline = drift.ADWIN()
    expected = []
    for i, v in enumerate(values):
        offline.update(v)
        if offline.drift_detected:
            expected.append(i)
    assert positions(found) == expected and expected, "same alarms as River, and at least one"
    assert all(e.kind == "concept" and e.detector == "adwin" for e in found)


def test_replayed_batches_are_skipped():
    values = error_stream()
    bank = DetectorBank(KEY)
    parts = batches(values)
    first = [e for b in parts[:10] for e in bank.apply(b)]
    assert all(bank.apply(b) == [] for b in parts[:10]), "at-least-once redelivery is not applied twice"
    assert bank.replayed == 10 * 250
    rest = [e for b in parts[10:] for e in bank.apply(b)]
    reference = DetectorBank(KEY)
    assert positions(first + rest) == positions([e for b in parts for e in reference.apply(b)])
    assert bank.positions["error"] == len(values)


def test_a_restored_bank_continues_exactly():
    values = error_stream(seed=11)
    parts = batches(values)
    uninterrupted = DetectorBank(KEY)
    expected = [e.id for b in parts for e in uninterrupted.apply(b)]
    bank = DetectorBank(KEY)
    ids = [e.id for b in parts[:7] for e in bank.apply(b)]
    bank = DetectorBank.loads(bank.dumps())  # the worker restarts from its checkpoint
    ids += [e.id for b in parts[5:] for e in bank.apply(b)]  # overlapping replay
    assert ids == expected


def interleavings(values: list[float], partitions: int, seed: int) -> list[ObservationBatch]:
    """The same values spread over partitions (value i in partition i % n), batches sent in a random order."""
    rng = random.Random(seed)
    per_partition = {p: [] for p in range(partitions)}
    for i, v in enumerate(values):
        per_partition[i % partitions].append(("error", v, 1_000 * i, "feedback", i // partitions))
    queues = {}
    for p, obs in per_partition.items():
        cuts = sorted(rng.sample(range(1, len(obs)), 20))
        queues[p] = [obs[a:b] for a, b in zip([0, *cuts], [*cuts, len(obs)])]
    sent = []
    while any(queues.values()):
        p = rng.choice([p for p, q in queues.items() if q])
        chunk = queues[p].pop(0)
        if chunk:
            sent.append(ObservationBatch(KEY, p, {"j": chunk[-1][2]}, chunk))
    return sent


def test_values_are_reordered_by_event_time_whatever_the_fetch_order():
    values = error_stream(seed=5, n=6000, change_at=3000)
    reference = DetectorBank(KEY, partitions=1)
    expected = [e.id for b in batches(values) for e in reference.apply(b)]
    expected += [e.id for e in reference.release(now_ms=10**12)]
    assert expected
    for seed in range(3):
        bank = DetectorBank(KEY, partitions=3)
        ids = [e.id for b in interleavings(values, 3, seed) for e in bank.apply(b, now_ms=0)]
        ids += [e.id for e in bank.release(now_ms=10**12)]  # every partition idle: release the tail
        assert ids == expected, f"fetch order {seed} changed the alarms"


def test_a_silent_partition_holds_values_back_only_until_idle():
    bank = DetectorBank(KEY, partitions=2, idle_ms=30_000)
    batch = ObservationBatch(KEY, 0, {"j": 5_000}, [("error", 0.0, 1_000, "feedback", 0)])
    bank.apply(batch, now_ms=0)
    assert bank.waiting == 1, "partition 1 has not spoken yet"
    bank.release(now_ms=29_999)
    assert bank.waiting == 1
    bank.release(now_ms=30_000)
    assert bank.waiting == 0 and bank.positions["error"] == 1


def test_each_stream_gets_its_kind_of_detector():
    bank = DetectorBank(KEY)
    bank.apply(ObservationBatch(KEY, 0, {"p": 1}, [("feature.amount", 1.0, 0, "p", 0), ("latency", 3.0, 0, "p", 0),
                                                  ("score", 0.4, 0, "p", 0)]))
    assert {s: type(d).__name__ for s, d in bank.detectors.items()} == {
        "feature.amount": "PageHinkleyDetector", "latency": "PageHinkleyDetector", "score": "PageHinkleyDetector"}
    assert stream_kinds("latency") == ("system", "latency")
    assert repr(bank.detectors["latency"]) == repr(build_detector(default_spec("system")).update(3.0))


def test_observation_batches_round_trip_as_json():
    batch = ObservationBatch(ModelKey("m", "2", {"region": "eu"}), 3, {"p": 6, "j": 5},
                             [("error", 1.0, 5, "fb", 9), ("score", 0.5, 6, "pr", 3)])
    assert ObservationBatch.from_json(batch.to_json()) == batch
    assert ModelKey.decode(batch.key.encode()) == batch.key
    assert list(observation_streams(1.0, None, None, {})) == [("error", 1.0)]


def test_staged_store_writes_only_on_commit():
    table = {"keep": 1, "drop": 2}
    staged = StagedStore(table)
    staged["new"] = 3
    del staged["drop"]
    assert "drop" not in staged and staged["new"] == 3 and table == {"keep": 1, "drop": 2}
    assert sorted(staged) == ["keep", "new"] and len(staged) == 2
    assert staged.commit() == 2 and table == {"keep": 1, "new": 3}
    staged["x"] = 1
    staged.discard()
    assert "x" not in staged and table == {"keep": 1, "new": 3}


def test_a_restart_does_not_count_as_silence():
    bank = DetectorBank(KEY, partitions=2, idle_ms=30_000)
    bank.resume("first", 0)
    bank.apply(ObservationBatch(KEY, 0, {"j": 5_000}, [("error", 0.0, 1_000, "feedback", 0)]), now_ms=0)
    bank.apply(ObservationBatch(KEY, 1, {"j": 500}, [("error", 1.0, 400, "feedback", 0)]), now_ms=0)
    assert bank.waiting == 1  # partition 1's clock (500) holds back the value at 1,000
    restored = DetectorBank.loads(bank.dumps())
    restored.resume("second", 600_000)  # the worker was down ten minutes
    assert restored.release(600_000) == [] and restored.waiting == 1, "downtime made partition 1 look idle"
    assert restored.release(630_000) == [] and restored.waiting == 0  # really silent for 30 s now


def outcome_batches(values: list[float], size: int = 250) -> list[ObservationBatch]:
    """The batches of ``batches``, as the ingest stage sends them: joined-outcome window records."""
    out = []
    for start in range(0, len(values), size):
        rows = [("o", {"outcome": {"error": v}}, 1_000 * (start + i), "feedback", start + i)
                for i, v in enumerate(values[start:start + size])]
        out.append(ObservationBatch(KEY, 0, {"j": rows[-1][2] + 1}, [], rows))
    return out


def test_values_read_from_records_raise_the_alarms_of_the_same_values_sent_as_observations():
    values = error_stream()
    from_records, explicit = DetectorBank(KEY), DetectorBank(KEY)
    found = [e.position for b in outcome_batches(values) for e in from_records.apply(b)]
    assert found and found == [e.position for b in batches(values) for e in explicit.apply(b)]
    assert from_records.positions == explicit.positions == {"error": len(values)}


def test_prediction_records_feed_score_latency_and_every_numeric_feature_once_each():
    bank = DetectorBank(KEY)
    record = {"prediction": {"score": 0.4}, "latency_ms": 3.0, "features": {"numeric": {"amount": 1.0, "age": 2.0}}}
    batch = ObservationBatch(KEY, 0, {"p": 10}, [], [("p", record, 5, "predictions", 0), ("p", record, 6, "predictions", 1)])
    bank.apply(batch)
    bank.apply(batch)  # redelivered: skipped per source record
    assert bank.positions == {"score": 2, "latency": 2, "feature.amount": 2, "feature.age": 2}
    assert bank.replayed == 2 and bank.waiting == 0


def test_a_checkpoint_holding_one_value_per_pending_entry_still_releases_them():
    bank = DetectorBank(KEY)
    bank.pending["j"] = [(1_000, 0, "feedback", 0, 0, "error", 1.0), (2_000, 0, "feedback", 1, 0, "error", 0.0)]
    bank.marks["j"][0] = 5_000
    bank.release()
    assert bank.positions == {"error": 2} and bank.waiting == 0


def test_model_keys_hash_and_compare_by_value_and_survive_pickling():
    import pickle

    key = ModelKey("fraud", "v1", {"region": "eu"})
    assert hash(key) == hash(ModelKey("fraud", "v1", {"region": "eu"})) and key == pickle.loads(pickle.dumps(key))
    assert key != ModelKey("fraud", "v1") and {key: 1}[ModelKey("fraud", "v1", {"region": "eu"})] == 1
    old = ModelKey.__new__(ModelKey)  # unpickled from a checkpoint written before keys cached their encoding
    ModelKey.__setstate__(old, ["fraud", "v1", {"region": "eu"}])
    assert old.encode() == "fraud|v1|region=eu" and old == key


def test_values_held_back_beyond_the_bound_are_released_oldest_first_and_the_checkpoint_stays_small(monkeypatch):
    from driftline.streams import detect

    monkeypatch.setattr(detect, "MAX_PENDING_VALUES", 400)
    bank = DetectorBank(KEY, partitions=2)  # partition 1 never speaks: nothing passes the watermark
    record = {"prediction": {"score": 0.5}, "latency_ms": 1.0, "features": {"numeric": {"a": 1.0, "b": 2.0}}}
    rows = [("p", record, 1_000 + i, "predictions", i) for i in range(150)]  # 4 values each
    bank.apply(ObservationBatch(KEY, 0, {"p": 10_000}, [], rows[:90]))
    assert bank.pending_values == 360 and bank.forced == 0 and bank.positions == {}
    bank.apply(ObservationBatch(KEY, 0, {"p": 10_000}, [], rows[90:]))
    assert bank.pending_values <= 300 and bank.forced == 600 - bank.pending_values
    assert bank.positions["score"] == bank.forced // 4  # the oldest records, each with all its values
    restored = DetectorBank.loads(bank.dumps())
    assert restored.pending_values == bank.pending_values and restored.waiting * 4 == bank.pending_values


def test_a_partition_without_labels_stops_holding_back_the_errors_once_silent_on_the_join_clock():
    bank = DetectorBank(KEY, partitions=2, idle_ms=30_000)
    bank.apply(ObservationBatch(KEY, 0, {"j": 5_000}, [("error", 1.0, 1_000, "feedback", 0)]), now_ms=0)
    record = {"prediction": {"score": 0.5}}
    for t in range(0, 40_000, 10_000):  # partition 1: predictions only, a batch every 10 s, never a join mark
        bank.apply(ObservationBatch(KEY, 1, {"p": t + 1}, [], [("p", record, t, "predictions", t)]), now_ms=t)
        assert ("error" in bank.positions) == (t >= 30_000)
    assert bank.positions["error"] == 1 and bank.positions["score"] == 4
