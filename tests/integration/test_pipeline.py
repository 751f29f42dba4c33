"""End to end: model service → Kafka → driftline worker → Elasticsearch, on real servers.

A simulated fraud model logs 20,000 predictions and their feedback through the
producer API, with a concept drift (the error rate jumps) at one known point,
a mean shift of one feature at another, and 50 malformed messages.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from driftline.connectors.codec import make_codec
from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
from driftline.connectors.producer import PredictionLogger
from driftline.streams.intake import IntakeBatch, intake_topic
from tests.kafka_helpers import consume_all, group_positions
from tests.worker_process import IndexReader, WorkerProcess, pipeline_settings, wait_until

N = 20_000
FEATURE_SHIFT_AT = 6_000
CONCEPT_DRIFT_AT = 12_000
STEP_MS = 100  # one prediction every 100 ms of event time
START_MS = 1_763_800_000_000
LABEL_DELAY_MS = 30_000
FEATURES = ["f0", "f1", "f2", "f3", "f4"]
SHIFTED = "f2"
MALFORMED_PREDICTIONS, MALFORMED_FEEDBACK = 40, 10
#: ADWIN needs a few hundred outcomes to see a 0.10 → 0.45 error-rate change; allow 2,000.
DETECTION_BOUND = 2_000


@dataclass(frozen=True)
class Traffic:
    predictions: list[dict]
    feedback: list[dict]
    malformed: list[tuple[str, bytes]]


def ts(i: int) -> int:
    return START_MS + i * STEP_MS


def simulate(seed: int = 20261122) -> Traffic:
    rng = random.Random(seed)
    predictions, feedback = [], []
    for i in range(N):
        features = {f: rng.gauss(0.0, 1.0) for f in FEATURES}
        if i >= FEATURE_SHIFT_AT:
            features[SHIFTED] += 1.0  # a 1σ mean shift
        score = rng.random()
        predicted = "fraud" if score > 0.5 else "legit"
        error_rate = 0.10 if i < CONCEPT_DRIFT_AT else 0.45
        truth = predicted if rng.random() >= error_rate else ("legit" if predicted == "fraud" else "fraud")
        request_id = f"req-{i:06d}"
        predictions.append({
            "request_id": request_id, "timestamp": ts(i), "model_name": "fraud", "model_version": "v1",
            "latency_ms": rng.lognormvariate(2.0, 0.2),
            "prediction": [{"label": predicted, "score": score}],
            "numeric_features": features, "slices": {"region": rng.choice(["eu", "us"])},
            "subject_id": f"customer-{rng.randrange(5000)}",
        })
        feedback.append({"request_id": request_id, "timestamp": ts(i) + LABEL_DELAY_MS, "labels": [truth],
                         "label_source": "PROCESS_FEEDBACK"})
    codec = make_codec("prediction_event")
    valid = codec.encode(predictions[0])
    malformed: list[tuple[str, bytes]] = []
    for k in range(MALFORMED_PREDICTIONS):
        kind = k % 4
        if kind == 0:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80)))  # garbage
        elif kind == 1:
            raw = valid[: rng.randint(11, len(valid) - 1)]  # truncated Avro
        elif kind == 2:
            raw = b'{"request_id": "json-%d", "model_name": "fraud"' % k  # broken JSON
        else:
            raw = codec.encode({**predictions[0], "request_id": f"nan-{k}", "latency_ms": float("nan")})  # invalid value
        malformed.append(("predictions", raw))
    for k in range(MALFORMED_FEEDBACK):
        malformed.append(("feedback", b'{"request_id": "fb-%d", "labels": []}' % k))  # no label
    return Traffic(predictions, feedback, malformed)


def produce(settings, traffic: Traffic) -> None:
    """Log everything through the producer API; labels follow their predictions ~100 requests later."""
    with PredictionLogger(settings, max_buffer=200_000) as log:
        for i, prediction in enumerate(traffic.predictions):
            log.log_prediction(prediction)
            if i >= 100:
                log.log_feedback(traffic.feedback[i - 100])
        for fb in traffic.feedback[-100:]:
            log.log_feedback(fb)
        assert log.flush(60) == 0
    assert log.stats.delivered == 2 * N
    raw = Producer(settings.kafka_client_config())
    topics = {"predictions": settings.predictions_topic, "feedback": settings.feedback_topic}
    for n, (which, value) in enumerate(traffic.malformed):
        raw.produce(topics[which], value=value, key=f"bad-{n}".encode())
    assert raw.flush(30) == 0


@pytest.fixture(scope="module")
def run(settings, tmp_path_factory):
    """One pipeline run over the simulated traffic (shared by the assertions below)."""
    run_settings = pipeline_settings(settings)
    ensure_topics(run_settings, driftline_topics(run_settings))
    traffic = simulate()
    worker = WorkerProcess(run_settings, tmp_path_factory.mktemp("worker") / "worker.log").start()
    reader = IndexReader(run_settings)
    try:
        started = time.monotonic()
        produce(run_settings, traffic)
        print(f"produced in {time.monotonic() - started:.1f} s")
        wait_until(lambda: reader.count("predictions") >= N and reader.count("outcomes") >= N
                   and reader.count("deadletters") >= len(traffic.malformed), 240, "all documents indexed", worker)
        # the detect stage runs behind ingest: wait for the concept-drift alert, then let it settle
        print(f"indexed after {time.monotonic() - started:.1f} s")
        wait_until(lambda: reader.count("alerts", {"term": {"drift.kind": "concept"}}) > 0, 120,
                   "the concept-drift alert", worker)
        print(f"concept alert after {time.monotonic() - started:.1f} s")
        last: list[tuple[int, int]] = []

        def settled() -> bool:
            last.append((reader.count("drift"), reader.count("alerts")))
            return len(last) > 1 and last[-1] == last[-2]

        wait_until(settled, 60, "drift documents to settle", worker, 3.0)
        yield run_settings, traffic, reader, worker
    finally:
        worker.stop()
        reader.close()


def test_every_valid_prediction_is_indexed_exactly_once(run):
    _, traffic, reader, _ = run
    assert reader.count("predictions") == N
    ids = reader.field_values("predictions", "request.id")
    assert len(ids) == N and set(ids) == {p["request_id"] for p in traffic.predictions}


def test_joined_outcomes_equal_the_matched_feedback(run):
    _, traffic, reader, _ = run
    assert reader.count("outcomes") == len(traffic.feedback)
    wrong = reader.count("outcomes", {"term": {"outcome.correct": False}})
    assert 0.2 * N < wrong < 0.3 * N  # 10% errors before the drift, 45% after


def test_malformed_messages_are_dead_letters_with_reasons(run):
    _, traffic, reader, _ = run
    letters = reader.search("deadletters")
    assert len(letters) == len(traffic.malformed)
    assert all(d["error"]["message"] and d["error"]["type"] for d in letters)
    kinds = {d["error"]["type"] for d in letters}
    assert {"decode_error", "validation_error"} <= kinds


def test_concept_drift_alert_after_the_drift_within_bound_and_none_before(run):
    _, _, reader, _ = run
    concept = reader.search("drift", {"term": {"drift.kind": "concept"}})
    assert concept, "no concept drift detected"
    times = sorted(_epoch_ms(d["@timestamp"]) for d in concept)
    drift_ms = ts(CONCEPT_DRIFT_AT) + LABEL_DELAY_MS  # errors are ordered by when the label was known
    assert times[0] >= drift_ms, "a concept drift was raised before the drift point"
    assert times[0] <= drift_ms + DETECTION_BOUND * STEP_MS, "the concept drift was found too late"
    alerts = reader.search("alerts", {"term": {"drift.kind": "concept"}})
    assert len(alerts) == 1 and alerts[0]["alert"]["severity"] == "critical"


def test_data_drift_alert_on_the_shifted_feature_only(run):
    _, _, reader, _ = run
    data = reader.search("drift", {"term": {"drift.kind": "data"}})
    features = {d["drift"]["feature"] for d in data}
    assert features == {SHIFTED}, f"data drift on {features}"
    first = min(_epoch_ms(d["@timestamp"]) for d in data)
    assert ts(FEATURE_SHIFT_AT) <= first <= ts(FEATURE_SHIFT_AT + DETECTION_BOUND)


def _epoch_ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# The restart must not change the alarms: values are released to the detectors in event-time order, and a
# partition counts as silent only while the worker is caught up (streams/clock.py). Before that clock, a detect
# agent starved of fetches during the restarted worker's backlog released values early in some runs.
@pytest.mark.timeout(900)  # its waits add up to more than the suite's 300 s when it fails, and then it says why
def test_restart_after_sigkill_loses_nothing_duplicates_nothing_and_raises_the_same_alarms(run, settings, tmp_path):
    reference_settings, traffic, reference, _ = run
    restarted = pipeline_settings(settings)
    ensure_topics(restarted, driftline_topics(restarted))
    log_path = tmp_path / "worker.log"
    reader = IndexReader(restarted)
    worker = WorkerProcess(restarted, log_path).start()
    try:
        produce(restarted, traffic)
        wait_until(lambda: reader.count("outcomes") >= N // 2, 240, "half of the outcomes", worker)
        worker.kill()  # no shutdown, no final commit
        worker = WorkerProcess(restarted, log_path).start()
        wait_until(lambda: reader.count("predictions") >= N and reader.count("outcomes") >= N
                   and reader.count("deadletters") >= len(traffic.malformed), 240, "all documents after the restart",
                   worker, status=lambda: f"{_positions(restarted)}\n{_missing(reader, traffic)}\n{_unforwarded(restarted, reader, traffic)}")
        wait_until(lambda: reader.count("alerts", {"term": {"drift.kind": "concept"}}) > 0, 120, "the concept alert",
                   worker)
        last: list[tuple[int, int]] = []

        def settled() -> bool:
            last.append((reader.count("drift"), reader.count("alerts")))
            return len(last) > 2 and last[-1] == last[-2] == last[-3]

        wait_until(settled, 90, "drift documents to settle", worker, 3.0)
        assert reader.count("predictions") == N and reader.count("outcomes") == N
        assert reader.count("deadletters") == len(traffic.malformed)
        restarted_drift = {d["_id"] for d in reader.search("drift")}
        reference_drift = {d["_id"] for d in reference.search("drift")}
        assert restarted_drift == reference_drift, "the restart changed the alarms"
        assert {d["_id"] for d in reader.search("alerts")} == {d["_id"] for d in reference.search("alerts")}
    finally:
        worker.stop()
        reader.close()


def _missing(reader: IndexReader, traffic: Traffic) -> str:
    """Which request ids lack a prediction or an outcome document (for a failure message)."""
    expected = {p["request_id"] for p in traffic.predictions}
    missing_predictions = sorted(expected - set(reader.field_values("predictions", "request.id")))
    missing_outcomes = sorted(expected - set(reader.field_values("outcomes", "request.id")))
    return (f"{reader.count('predictions')} predictions, {reader.count('outcomes')} outcomes, "
            f"{reader.count('deadletters')} dead letters; missing predictions {missing_predictions[:10]} "
            f"({len(missing_predictions)}), missing outcomes {missing_outcomes[:10]} ({len(missing_outcomes)})")


def _unforwarded(settings, reader: IndexReader, traffic: Traffic) -> str:
    """Source offsets below each input partition's end that no intake batch carries (records the intake lost),
    and which intake messages carry the first missing predictions (records the stages lost)."""
    try:
        forwarded: dict[tuple[str, int], set[int]] = {}
        carriers: dict[str, list[tuple[int, int]]] = {}
        messages = consume_all(settings, intake_topic(settings), settings.topic_partitions, expected=10**9, timeout=15)
        for message in messages:
            batch = IntakeBatch.decode(message.value())
            if batch.offsets:  # raw records
                sources = [(batch.topics[index], offset) for index, offset in zip(batch.topic_index, batch.offsets)]
            else:  # normalized events and dead letters
                events, dead, _ = batch.normalized()
                sources = [(e.topic, e.offset) for e in events] + [(d.source_topic, d.source_offset) for d in dead]
                for event in events:
                    carriers.setdefault(event.request_id, []).append((message.partition(), message.offset()))
            for topic, offset in sources:
                forwarded.setdefault((topic, batch.partition), set()).add(offset)
        gaps = []
        for (topic, partition), offsets in sorted(forwarded.items()):
            missing = sorted(set(range(max(offsets) + 1)) - offsets)
            if missing:
                gaps.append(f"{topic}[{partition}]: {len(missing)} from offset {missing[0]}")
        indexed = set(reader.field_values("predictions", "request.id"))
        lost = sorted({p["request_id"] for p in traffic.predictions} - indexed)
        where = sorted({c for request_id in lost for c in carriers.get(request_id, [])})
        return (f"{len(messages)} intake messages; never forwarded: {', '.join(gaps) or 'none'}; "
                f"intake messages (partition, offset) carrying the missing predictions: {where[:40]}")
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure it describes
        return f"intake topic unreadable ({exc})"


def _positions(settings) -> str:
    """The intake's and the stages' committed offsets against the end of their topics (where records stopped)."""
    raw = [settings.predictions_topic, settings.feedback_topic]
    internal = [intake_topic(settings), f"{settings.app_id}.observations"]
    return "\n".join([group_positions(settings, f"{settings.app_id}-intake", raw, settings.topic_partitions),
                      group_positions(settings, settings.app_id, internal, settings.topic_partitions)])


def test_elasticsearch_outage_commits_nothing_unindexed_and_catches_up(settings, servers, tmp_path):
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    from tests.tcp_proxy import SwitchableProxy

    host, port = servers.es_url.removeprefix("http://").rsplit(":", 1)
    proxy = SwitchableProxy(host, int(port))
    outage = pipeline_settings(settings, es_url=proxy.url)
    ensure_topics(outage, driftline_topics(outage))
    reader = IndexReader(outage.model_copy(update={"es_url": servers.es_url}))  # reads around the proxy
    traffic = simulate()
    small = Traffic(traffic.predictions[:2_000], traffic.feedback[:2_000], [])
    worker = WorkerProcess(outage, tmp_path / "worker.log")
    admin = AdminClient(settings.kafka_client_config())

    intake = intake_topic(outage)

    def committed(group: str, topics: list[str]) -> dict[tuple[str, int], int]:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t in topics
                                                      for p in range(outage.topic_partitions)])
        result = admin.list_consumer_group_offsets([request])[group].result(10)
        return {(tp.topic, tp.partition): max(0, tp.offset) for tp in result.topic_partitions}

    def pipeline_committed() -> dict[tuple[str, int], int]:  # the Faust group, on the intake's batches
        return committed(outage.app_id, [intake])

    def intake_committed() -> int:  # the intake's group, on the input topics
        return sum(committed(f"{outage.app_id}-intake", [outage.predictions_topic, outage.feedback_topic]).values())

    try:
        proxy.up()
        worker.start()
        # let the worker install its templates, then take Elasticsearch away and send traffic
        wait_until(lambda: reader.es.indices.exists_index_template(name=f"{outage.es_index_prefix}-predictions"), 60,
                   "templates installed", worker)
        proxy.down()
        produce_small(outage, small)
        time.sleep(15)  # the worker is consuming, and retrying Elasticsearch
        assert worker.alive()
        # the intake forwarded (and committed) the input; the pipeline committed none of the batches it holds
        wait_until(lambda: intake_committed() == 4_000, 30, "the intake forwarded the input", worker)
        assert sum(pipeline_committed().values()) == 0, "offsets were committed for records that were never indexed"
        assert reader.count("predictions") == 0
        proxy.up()
        wait_until(lambda: reader.count("predictions") >= 2_000 and reader.count("outcomes") >= 2_000, 180,
                   "catching up after the outage", worker)
        assert reader.count("predictions") == 2_000 and reader.count("outcomes") == 2_000
        # every intake batch is committed once indexed: the committed offset of each partition is its end
        batches = consume_all(outage, intake, outage.topic_partitions, expected=1)
        ends = {(intake, p): 1 + max((m.offset() for m in batches if m.partition() == p), default=-1)
                for p in range(outage.topic_partitions)}
        assert sum(len(IntakeBatch.decode(m.value())) for m in batches) == 4_000
        wait_until(lambda: pipeline_committed() == ends, 60, "offsets committed after indexing", worker)
    finally:
        worker.stop()
        proxy.close()
        reader.close()


def produce_small(settings, traffic: Traffic) -> None:
    with PredictionLogger(settings) as log:
        for prediction, feedback in zip(traffic.predictions, traffic.feedback):
            log.log_prediction(prediction)
            log.log_feedback(feedback)
        assert log.flush(60) == 0


def test_rocksdb_store_keeps_waiting_predictions_across_a_restart(settings, tmp_path):
    rocks = pipeline_settings(settings, store="rocksdb://", worker_dir=tmp_path / "worker-data")
    ensure_topics(rocks, driftline_topics(rocks))
    traffic = simulate()
    predictions, feedback = traffic.predictions[:2_000], traffic.feedback[:2_000]
    reader = IndexReader(rocks)
    worker = WorkerProcess(rocks, tmp_path / "worker.log").start()
    try:
        with PredictionLogger(rocks) as log:
            for prediction in predictions:
                log.log_prediction(prediction)
            assert log.flush(60) == 0
        wait_until(lambda: reader.count("predictions") >= 2_000, 120, "predictions indexed", worker)
        time.sleep(3)  # let the last batch's table writes and offsets land
        worker.kill()
        assert any((tmp_path / "worker-data").rglob("*")), "RocksDB wrote nothing to the worker directory"
        worker = WorkerProcess(rocks, tmp_path / "worker.log").start()
        with PredictionLogger(rocks) as log:
            for fb in feedback:
                log.log_feedback(fb)
            assert log.flush(60) == 0
        wait_until(lambda: reader.count("outcomes") >= 2_000, 120, "outcomes after the restart", worker)
        time.sleep(2)
        assert reader.count("outcomes") == 2_000 and reader.count("predictions") == 2_000
    finally:
        worker.stop()
        reader.close()
