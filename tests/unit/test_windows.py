"""Tumbling windows of one model key, alone and inside a DetectorBank (replays, restarts, closing)."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.baselines.model import Baseline, CategoricalStats, FeatureSchema, Histogram, NumericStats
from driftline.streams.detect import DetectorBank, ObservationBatch
from driftline.streams.keys import ModelKey
from driftline.streams.metrics import MetricsConfig
from driftline.streams.skew import SkewValidator
from driftline.streams.windows import OUTCOME, PREDICTION, WindowSet, WindowSettings, outcome_record, prediction_record

KEY = ModelKey("fraud", "1")
MINUTE = 60_000
SETTINGS = WindowSettings(size_ms=MINUTE, lateness_ms=0, metrics=MetricsConfig(positive_label="fraud"))


def training_baseline(seed: int = 0, n: int = 20_000) -> Baseline:
    rng = np.random.default_rng(seed)
    stats, schema = {}, {}
    for name in ("amount", "velocity"):
        values = rng.normal(0.0, 1.0, n)
        edges = np.linspace(values.min(), values.max(), 21)
        counts, _ = np.histogram(values, edges)
        stats[name] = NumericStats(count=n, missing=0, mean=float(values.mean()), std=float(values.std()),
                                   min=float(values.min()), max=float(values.max()), quantiles={},
                                   histogram=Histogram(edges.tolist(), counts.tolist()),
                                   sample=rng.choice(values, 2000, replace=False).tolist())
        schema[name] = FeatureSchema(name, "numeric", required=True, min=-6.0, max=6.0)
    stats["channel"] = CategoricalStats(count=n, missing=0, frequencies={"web": n // 2, "app": n // 2})
    schema["channel"] = FeatureSchema("channel", "categorical", required=True, domain=["app", "web"])
    return Baseline("fraud", "1", schema, stats, rows=n)


def serving(rng: np.random.Generator, shift: float = 0.0, channel: str | None = None) -> dict:
    return {
        "latency_ms": float(rng.gamma(2.0, 4.0)),
        "prediction": {"label": "fraud" if rng.random() < 0.2 else "legit", "score": float(rng.random())},
        "features": {"numeric": {"amount": float(rng.normal(shift, 1.0)), "velocity": float(rng.normal())},
                     "categorical": {"channel": channel or ("web" if rng.random() < 0.5 else "app")},
                     "boolean": {}, "vector": {}, "missing": []},
        "labels": {"region": "eu"},
    }


def fill(windows: WindowSet, baseline: Baseline | None, start_ms: int, n: int, seed: int, **kwargs) -> None:
    rng = np.random.default_rng(seed)
    validator = SkewValidator(baseline) if baseline is not None else None
    for i in range(n):
        doc = serving(rng, **kwargs)
        anomalies = validator.validate(doc) if validator else []
        windows.add(PREDICTION, prediction_record(doc, anomalies), start_ms + i * (MINUTE // n), baseline)


def test_a_window_closes_once_the_watermark_passes_its_end_plus_lateness():
    windows = WindowSet(KEY, WindowSettings(size_ms=MINUTE, lateness_ms=10_000))
    fill(windows, None, 0, 100, seed=1)
    assert windows.close(MINUTE + 9_999).documents == []
    closed = windows.close(MINUTE + 10_000)
    assert [d["window"]["closed"] for _, d in closed.documents] == [True]
    assert closed.documents[0][1]["metrics"]["count"] == 100 and windows.open == {}


def test_late_records_update_an_open_window_and_are_counted_once_it_closed():
    windows = WindowSet(KEY, WindowSettings(size_ms=MINUTE, lateness_ms=10_000))
    fill(windows, None, 0, 10, seed=1)
    fill(windows, None, MINUTE, 10, seed=2)
    fill(windows, None, 5_000, 1, seed=3)  # late, but within lateness: the first window is still open
    closed = windows.close(MINUTE + 10_000)
    assert closed.documents[0][1]["metrics"]["count"] == 11
    fill(windows, None, 5_000, 1, seed=4)  # too late
    assert windows.late == 1 and sum(w.metrics.summary()["count"] for w in windows.open.values()) == 10


def test_open_window_documents_are_produced_once_per_change_with_a_stable_id():
    windows = WindowSet(KEY, SETTINGS)
    fill(windows, None, 0, 5, seed=1)
    first = windows.documents()
    assert len(first) == 1 and first[0][1]["window"]["closed"] is False and windows.documents() == []
    fill(windows, None, 0, 5, seed=2)
    second = windows.documents()
    assert second[0][1]["event"]["id"] == first[0][1]["event"]["id"]
    assert second[0][1]["metrics"]["count"] == 10


def test_outcomes_land_in_the_window_of_the_time_they_became_known():
    windows = WindowSet(KEY, SETTINGS)
    doc = serving(np.random.default_rng(0))
    outcome = {**doc, "feedback": {"labels": ["legit"], "delay_ms": 90_000},
               "outcome": {"correct": doc["prediction"]["label"] == "legit", "error": 0.0}}
    windows.add(PREDICTION, prediction_record(doc, []), 1_000)
    windows.add(OUTCOME, outcome_record(outcome), 91_000)
    first, second = (d for _, d in windows.close(10 * MINUTE).documents)
    assert (first["metrics"]["count"], first["metrics"]["outcomes"]) == (1, 0)
    assert (second["metrics"]["count"], second["metrics"]["outcomes"]) == (0, 1)


def test_a_stable_window_raises_no_drift_against_its_baseline():
    baseline = training_baseline()
    windows = WindowSet(KEY, SETTINGS)
    for minute in range(4):
        fill(windows, baseline, minute * MINUTE, 2000, seed=10 + minute)
    closed = windows.close(10 * MINUTE, baseline)
    assert len(closed.documents) == 4
    assert closed.drift == []


def test_a_mean_shift_in_one_feature_drifts_that_feature_only():
    baseline = training_baseline()
    windows = WindowSet(KEY, SETTINGS)
    fill(windows, baseline, 0, 2000, seed=1)
    fill(windows, baseline, MINUTE, 2000, seed=2, shift=0.5)
    drift = windows.close(10 * MINUTE, baseline).drift
    assert drift and {e.feature for e in drift} == {"amount"}
    assert {e.kind.value for e in drift} == {"data"} and all(e.event_time_ms == MINUTE for e in drift)
    # against the baseline and against the previous window
    assert {e.baseline for e in drift} == {"fraud|1", "previous_window"}


def test_schema_skew_above_the_rate_raises_a_quality_event_naming_feature_and_kind():
    baseline = training_baseline()
    windows = WindowSet(ModelKey("fraud", "1", {"region": "eu"}), SETTINGS)
    fill(windows, baseline, 0, 500, seed=1)
    fill(windows, baseline, 0, 20, seed=2, channel="fax")  # 20 of 520 events: 3.8% > 1%
    closed = windows.close(10 * MINUTE, baseline)
    skew = [e for e in closed.drift if e.detector == "schema"]
    assert [(e.feature, e.stream, e.slice) for e in skew] == [("channel", "skew.unknown_category", {"region": "eu"})]
    assert skew[0].statistic == pytest.approx(20 / 520)
    quality = closed.documents[0][1]["quality"]
    assert quality["events"] == 520 and quality["anomalies"][0]["count"] == 20


def test_a_single_anomaly_stays_below_the_alert_rate():
    baseline = training_baseline()
    windows = WindowSet(KEY, SETTINGS)
    fill(windows, baseline, 0, 500, seed=1)
    fill(windows, baseline, 0, 1, seed=2, channel="fax")
    closed = windows.close(10 * MINUTE, baseline)
    assert [e for e in closed.drift if e.detector == "schema"] == []
    assert closed.documents[0][1]["quality"]["anomalies"][0]["count"] == 1


def _batches(seed: int, n_batches: int, per_batch: int) -> list[ObservationBatch]:
    rng = np.random.default_rng(seed)
    out, offset = [], 0
    for b in range(n_batches):
        records = []
        for _ in range(per_batch):
            t = offset * 100
            records.append((PREDICTION, prediction_record(serving(rng, shift=1.0 if t > 3 * MINUTE else 0.0), []),
                            t, "preds", offset))
            offset += 1
        out.append(ObservationBatch(KEY, 0, {"p": offset * 100}, [], records))
    return out


def _run(batches: list[ObservationBatch], baseline: Baseline, restart_after: int | None = None, replay: int = 0):
    bank = DetectorBank(KEY, partitions=1, windows=WindowSet(KEY, SETTINGS))
    drift, docs = [], []
    for i, batch in enumerate(batches):
        drift += bank.apply(batch, now_ms=0, baseline=baseline)
        docs += bank.take_documents()
        if restart_after == i:
            bank = DetectorBank.loads(bank.dumps())
            for again in batches[i + 1 - replay: i + 1]:  # at-least-once: redelivered batches
                drift += bank.apply(again, now_ms=0, baseline=baseline)
                docs += bank.take_documents()
    return drift, docs, bank


def test_a_restart_with_replayed_batches_gives_the_same_windows_and_drift():
    baseline = training_baseline()
    batches = _batches(seed=5, n_batches=30, per_batch=100)
    drift, docs, bank = _run(batches, baseline)
    again, again_docs, again_bank = _run(batches, baseline, restart_after=12, replay=3)
    assert again_bank.replayed == 300
    assert [e.id for e in again] == [e.id for e in drift] and drift
    closed = {d["event"]["id"]: d for _, d in docs if d["window"]["closed"]}
    closed_again = {d["event"]["id"]: d for _, d in again_docs if d["window"]["closed"]}
    assert closed_again.keys() == closed.keys() and len(closed) == 5
    for doc_id, doc in closed.items():
        # KLL compaction is randomized: quantiles after a restart agree within the sketch's rank error only
        latency, latency_again = doc["metrics"].pop("latency_ms"), closed_again[doc_id]["metrics"].pop("latency_ms")
        assert latency["count"] == latency_again["count"] and latency["mean"] == pytest.approx(latency_again["mean"])
        assert doc == closed_again[doc_id]


def test_a_bank_without_a_baseline_still_measures_and_keeps_records_for_later():
    batches = _batches(seed=5, n_batches=10, per_batch=100)
    bank = DetectorBank(KEY, partitions=1, windows=WindowSet(KEY, SETTINGS))
    for batch in batches:
        assert bank.apply(batch, now_ms=0) == []
    docs = bank.take_documents()
    assert sum(d["metrics"]["count"] for _, d in docs if d["window"]["closed"]) == 600
    assert bank.holding


def test_records_survive_the_observation_batch_json():
    batch = _batches(seed=1, n_batches=1, per_batch=3)[0]
    assert ObservationBatch.from_json(batch.to_json()) == batch


def test_a_fairness_gap_above_its_threshold_raises_a_quality_event_when_the_window_closes():
    settings = WindowSettings(size_ms=MINUTE, lateness_ms=0,
                              metrics=MetricsConfig(positive_label="fraud", sensitive_attribute="region", min_group_size=30))
    windows = WindowSet(KEY, settings)
    # region eu: 40 legit requests, 4 predicted fraud (FPR 0.1); region us: 40 legit, 16 predicted fraud (FPR 0.4)
    for region, false_positives in (("eu", 4), ("us", 16)):
        for i in range(40):
            predicted = "fraud" if i < false_positives else "legit"
            doc = {"prediction": {"label": predicted, "score": 0.9}, "labels": {"region": region},
                   "features": {"categorical": {}}, "feedback": {"labels": ["legit"], "delay_ms": 10},
                   "outcome": {"correct": predicted == "legit", "error": float(predicted != "legit")}}
            windows.add(PREDICTION, prediction_record(doc, []), 1_000 + i)
            windows.add(OUTCOME, outcome_record(doc), 2_000 + i)
    closed = windows.close(10 * MINUTE)
    gaps = {e.stream: e for e in closed.drift if e.detector == "fairness"}
    assert set(gaps) == {"fairness.fpr_gap", "fairness.accuracy_gap"}
    assert gaps["fairness.fpr_gap"].statistic == pytest.approx(0.3)
    assert gaps["fairness.fpr_gap"].parameters["high_group"] == "us"
    fairness = closed.documents[0][1]["fairness"]
    assert {g["value"]: g["fpr"] for g in fairness["groups"]} == {"eu": pytest.approx(0.1), "us": pytest.approx(0.4)}


def test_a_bank_above_the_state_limit_drops_window_samples_not_the_worker(monkeypatch, caplog):
    import driftline.streams.detect as detect

    baseline = training_baseline()
    bank = DetectorBank(KEY, partitions=1, windows=WindowSet(KEY, SETTINGS))
    for batch in _batches(seed=2, n_batches=13, per_batch=100):  # two windows closed, one open
        bank.apply(batch, now_ms=0, baseline=baseline)
    assert bank.windows.previous is not None and any(w.serving for w in bank.windows.open.values())
    full = len(bank.dumps())
    monkeypatch.setattr(detect, "MAX_STATE_BYTES", full // 4)
    with caplog.at_level("ERROR"):
        text = bank.dumps()
    restored = DetectorBank.loads(text)
    assert restored.windows.previous is None
    assert all(w.serving is None and w._serving_state is None for w in restored.windows.open.values())
    assert sum(w.metrics.count for w in restored.windows.open.values()) > 0  # the metrics stay
    assert "dropping" in caplog.text


def test_a_bank_checkpoint_is_compressed_and_older_uncompressed_ones_still_load():
    import base64
    import pickle

    bank = DetectorBank(KEY, partitions=1, windows=WindowSet(KEY, SETTINGS))
    for batch in _batches(seed=2, n_batches=3, per_batch=100):
        bank.apply(batch, now_ms=0, baseline=training_baseline())
    old = base64.b64encode(pickle.dumps(bank)).decode()
    assert len(bank.dumps()) < len(old) / 1.3
    assert DetectorBank.loads(old).positions == DetectorBank.loads(bank.dumps()).positions


def test_a_batch_split_into_parts_feeds_a_bank_exactly_as_the_whole_batch():
    from driftline.streams.detect import split_batch

    rng = np.random.default_rng(4)
    baseline = training_baseline()
    whole_batches = []
    for b in range(6):
        records = []
        for i in range(b * 300, (b + 1) * 300):
            doc = serving(rng, shift=1.5 if i > 900 else 0.0)
            records.append((PREDICTION, prediction_record(doc, []), i * 100, "preds", i))
        whole_batches.append(ObservationBatch(KEY, 0, {"p": (b + 1) * 300 * 100}, [], records))

    def run(batches):
        bank = DetectorBank(KEY, partitions=1, windows=WindowSet(KEY, SETTINGS))
        drift = [e.id for batch in batches for e in bank.apply(batch, now_ms=0, baseline=baseline)]
        closed = {d["event"]["id"]: d["metrics"]["count"] for _, d in bank.take_documents() if d["window"]["closed"]}
        return drift, closed, bank.positions

    parts = [part for batch in whole_batches for part in split_batch(batch, max_records=70)]
    assert len(parts) == 6 * 5 and all(len(p.to_json()) < len(whole_batches[0].to_json()) / 4 for p in parts)
    assert run(parts) == run(whole_batches)
    drift, closed, _ = run(whole_batches)
    assert drift and sum(closed.values()) == 1800


def test_a_batch_within_the_limit_is_not_split_counting_sources_not_rows():
    from driftline.streams.detect import split_batch

    small = ObservationBatch(KEY, 0, {"p": 5}, [("score", 0.5, i, "preds", i) for i in range(70)])
    assert split_batch(small, max_records=70) == [small]
    # two values per source record: 120 rows, 60 sources
    shared = ObservationBatch(KEY, 0, {"p": 5}, [(s, 0.5, i, "preds", i) for i in range(60) for s in ("a", "b")])
    assert split_batch(shared, max_records=70) == [shared]
    parts = split_batch(shared, max_records=25)
    assert [len({o[4] for o in p.observations}) for p in parts] == [25, 25, 10]
    assert [p.marks for p in parts] == [{}, {}, {"p": 5}]
