"""End to end with a training baseline: a CSV training file → ``build_baseline`` → the baselines topic →
the worker → Elasticsearch.

The serving stream has two regions. In region ``eu`` only, from a known point
on, feature ``amount`` is shifted by 2σ (distribution skew) and 5% of events
send an unknown ``channel`` (schema skew). The worker watches the slices
``region=eu`` and ``region=us``. Expected: data-drift alerts on ``amount``
and schema-skew alerts on ``channel``, naming slice ``region=eu``; nothing on
slice ``region=us``; no drift on the other features; metrics documents per
window and slice; anomalies indexed.
"""

from __future__ import annotations

import csv
import random
import time

import pytest

from driftline.baselines.build import build_baseline
from driftline.baselines.catalog import publish_baseline
from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
from driftline.connectors.producer import PredictionLogger
from tests.worker_process import IndexReader, WorkerProcess, pipeline_settings, wait_until

N = 6_000
STEP_MS = 50  # 6,000 predictions over 300 s of event time: five 60 s windows
WINDOW_S = 60
START_MS = 1_763_800_000_000 - 1_763_800_000_000 % (WINDOW_S * 1000)
SKEW_FROM = 2_400  # windows 0-1 are clean, windows 2-4 are skewed in eu
FEATURES = ("amount", "velocity", "items")
MODEL, VERSION = "fraud", "v7"


def training_file(path, rows: int = 20_000, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*FEATURES, "channel", "label"])
        for _ in range(rows):
            writer.writerow([rng.gauss(50.0, 10.0), rng.gauss(0.0, 1.0), rng.randint(1, 9),
                             rng.choice(["web", "app"]), "fraud" if rng.random() < 0.2 else "legit"])


def serving(seed: int = 12) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    predictions, feedback = [], []
    for i in range(N):
        region = "eu" if i % 2 == 0 else "us"
        skewed = region == "eu" and i >= SKEW_FROM
        channel = rng.choice(["web", "app"])
        if skewed and rng.random() < 0.05:
            channel = "fax"
        truth = "fraud" if rng.random() < 0.2 else "legit"  # as in training
        label = truth if rng.random() < 0.9 else ("legit" if truth == "fraud" else "fraud")  # 90% accurate
        request_id = f"req-{i:05d}"
        predictions.append({
            "request_id": request_id, "timestamp": START_MS + i * STEP_MS, "model_name": MODEL, "model_version": VERSION,
            "latency_ms": rng.lognormvariate(2.0, 0.2), "prediction": [{"label": label, "score": rng.random()}],
            "numeric_features": {"amount": rng.gauss(70.0 if skewed else 50.0, 10.0), "velocity": rng.gauss(0.0, 1.0),
                                 "items": float(rng.randint(1, 9))},
            "categorical_features": {"channel": channel}, "slices": {"region": region},
        })  # fmt: skip
        feedback.append({"request_id": request_id, "timestamp": START_MS + i * STEP_MS + 5_000,
                         "labels": [truth],
                         "label_source": "PROCESS_FEEDBACK"})
    return predictions, feedback


@pytest.fixture(scope="module")
def run(settings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline-run")
    run_settings = pipeline_settings(settings, metrics_window_s=WINDOW_S, metrics_lateness_s=5,
                                     slices=["region=eu", "region=us"], positive_label="fraud",
                                     detect_idle_s=5.0)
    ensure_topics(run_settings, driftline_topics(run_settings))
    training_file(folder / "train.csv")
    baseline = build_baseline(folder / "train.csv", MODEL, VERSION, label_column="label")
    publish_baseline(run_settings, baseline)
    predictions, feedback = serving()
    worker = WorkerProcess(run_settings, folder / "worker.log").start()
    reader = IndexReader(run_settings)
    try:
        with PredictionLogger(run_settings, max_buffer=50_000) as log:
            for p, f in zip(predictions, feedback):
                log.log_prediction(p)
                log.log_feedback(f)
            assert log.flush(60) == 0
        wait_until(lambda: reader.count("predictions") >= N, 240, "all predictions indexed", worker)
        # windows close when the input goes idle (detect_idle_s): 6 windows x 3 keys, all closed
        wait_until(lambda: reader.count("metrics", {"term": {"window.closed": True}}) >= 18, 120,
                   "every window closed", worker)
        last: list[int] = []

        def settled() -> bool:
            last.append(reader.count("alerts"))
            return len(last) > 2 and last[-1] == last[-2] == last[-3]

        wait_until(settled, 60, "alerts to settle", worker, 2.0)
        yield run_settings, baseline, reader, worker
    finally:
        worker.stop()
        reader.close()


def _alerts(reader, **terms) -> list[dict]:
    query = {"bool": {"filter": [{"term": {k: v}} for k, v in terms.items()]}}
    return reader.search("alerts", query)


def _describe(alerts: list[dict]) -> str:
    """One line per alert, for failure messages."""
    return "\n".join(
        f"{a['drift']['kind']} {a['drift']['detector']} {a['drift']['stream']} {a['drift'].get('feature')} "
        f"{a.get('labels')} vs {a['drift'].get('baseline')} at {a['@timestamp']}: statistic "
        f"{a['drift'].get('statistic')} threshold {a['drift'].get('threshold')} p {a['drift'].get('p_value')} "
        f"n {a['drift'].get('window_size')}"
        for a in sorted(alerts, key=lambda a: a["@timestamp"]))


def test_the_baseline_describes_the_training_file(run):
    _, baseline, _, _ = run
    assert set(baseline.schema) == {"amount", "velocity", "items", "channel"}
    assert baseline.schema["channel"].domain == ["app", "web"] and baseline.label is not None
    assert baseline.statistics["amount"].mean == pytest.approx(50.0, abs=0.5)


def test_distribution_skew_alerts_name_the_feature_and_the_slice(run):
    _, _, reader, _ = run
    data = _alerts(reader, **{"drift.kind": "data"})
    assert data, "no data-drift alert"
    # the unknown channel "fax" changes channel's distribution too, and shifted amounts fall where training had
    # no rows (novelty): true drifts; the other features never drift
    assert "amount" in {a["drift"]["feature"] for a in data}, _describe(data)
    assert {a["drift"]["feature"] for a in data} <= {"amount", "channel", "novelty"}, _describe(data)
    sliced = [a for a in data if a.get("labels")]
    assert sliced and {tuple(sorted(a["labels"].items())) for a in sliced} == {(("region", "eu"),)}


def test_schema_skew_alerts_name_the_feature_and_the_slice(run):
    _, _, reader, _ = run
    quality = [a for a in _alerts(reader, **{"drift.kind": "quality"}) if a["drift"]["detector"] == "schema"]
    assert quality, "no schema-skew alert"
    found = {(a["drift"]["feature"], a["drift"]["stream"]) for a in quality}
    assert ("channel", "skew.unknown_category") in found, _describe(quality)
    assert found <= {("channel", "skew.unknown_category"), ("amount", "skew.out_of_range")}, _describe(quality)
    assert {a.get("labels", {}).get("region") for a in quality} <= {"eu", None}
    assert any(a.get("labels", {}).get("region") == "eu" for a in quality)


def test_nothing_is_raised_for_the_clean_slice(run):
    _, _, reader, _ = run
    assert _alerts(reader, **{"labels.region": "us", "drift.kind": "data"}) == [], _describe(_alerts(reader))
    assert _alerts(reader, **{"labels.region": "us", "drift.kind": "quality"}) == []


def test_each_anomaly_is_indexed_once_with_its_feature_and_kind(run):
    _, _, reader, _ = run
    anomalies = reader.search("anomalies")
    kinds = {(a["anomaly"]["feature"], a["anomaly"]["kind"]) for a in anomalies}
    # "fax" is unknown; a 2σ shift also takes some amounts beyond the training range (+10% margin)
    assert ("channel", "unknown_category") in kinds and kinds <= {("channel", "unknown_category"), ("amount", "out_of_range")}
    assert all(a["labels"] == {"region": "eu"} for a in anomalies)
    ids = [a["_id"] for a in anomalies]
    assert len(ids) == len(set(ids))


def test_metrics_documents_one_per_window_and_key_with_the_counts(run):
    _, _, reader, _ = run
    closed = reader.search("metrics", {"term": {"window.closed": True}})
    by_slice: dict[str, list[dict]] = {}
    for doc in closed:
        by_slice.setdefault(doc["slice"]["name"], []).append(doc)
    assert sorted(by_slice) == ["all", "region=eu", "region=us"]
    # five windows of predictions; the last labels (5 s late) become known in a sixth
    assert {name: len(docs) for name, docs in by_slice.items()} == {"all": 6, "region=eu": 6, "region=us": 6}
    assert all(sum(d["metrics"]["count"] > 0 for d in docs) == 5 for docs in by_slice.values())
    assert sum(d["metrics"]["count"] for d in by_slice["all"]) == N
    assert sum(d["metrics"]["count"] for d in by_slice["region=eu"]) == N // 2
    # every prediction's label arrives 5 s later: the outcomes of the window are those known in it
    assert sum(d["metrics"]["outcomes"] for d in by_slice["all"]) == N
    accuracy = [d["metrics"]["accuracy"] for d in by_slice["all"]]
    assert all(0.85 < a < 0.95 for a in accuracy if a is not None), accuracy
    assert all(d["metrics"]["latency_ms"]["p50"] > 0 for d in closed if d["metrics"]["count"])
    skewed_quality = [d["quality"]["anomalous"] for d in sorted(by_slice["region=eu"], key=lambda d: d["window"]["start"])
                      if d["metrics"]["count"]]
    assert skewed_quality[:2] == [0, 0] and all(n > 0 for n in skewed_quality[2:]), skewed_quality
