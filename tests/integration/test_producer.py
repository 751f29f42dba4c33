"""The producer API against a real broker: nothing lost, order per key kept, never blocking."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict

import pytest

from driftline.connectors.codec import make_codec, registry_client
from driftline.connectors.producer import PredictionLogger
from driftline.settings import Settings
from tests.events import feedback, prediction
from tests.kafka_helpers import consume_all


@pytest.fixture
def topics(settings, kafka_admin, topic_name_factory):
    predictions, feedbacks = topic_name_factory("predictions"), topic_name_factory("feedback")
    kafka_admin.create_topics({predictions: 4, feedbacks: 4})
    return settings.model_copy(update={"predictions_topic": predictions, "feedback_topic": feedbacks})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_ten_thousand_events_round_trip_none_lost_in_order_per_key(topics: Settings):
    n, keys = 10_000, 500
    events = []
    for i in range(n):
        event = prediction(i)
        event["request_id"] = f"req-{i % keys:05d}"
        event["numeric_features"]["seq"] = float(i)
        events.append(event)
    with PredictionLogger(topics) as log:
        assert all(log.log_prediction(e) for e in events)
        assert log.flush(30) == 0
    stats = log.stats
    assert (stats.accepted, stats.delivered, stats.lost) == (n, n, 0)

    messages = consume_all(topics, topics.predictions_topic, 4, expected=n)
    codec = make_codec("prediction_event")
    decoded = [(m.key().decode(), m.partition(), codec.decode(m.value())) for m in messages]
    seqs = sorted(int(d["numeric_features"]["seq"]) for _, _, d in decoded)
    assert seqs == list(range(n)), "every event exactly once"

    per_key: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for key, partition, event in decoded:
        assert key == event["request_id"]
        per_key[key].append(int(event["numeric_features"]["seq"]))
        partitions_of_key[key].add(partition)
    assert len(per_key) == keys
    assert all(seq == sorted(seq) for seq in per_key.values()), "order per key kept"
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({p for ps in partitions_of_key.values() for p in ps}) == 4, "keys spread over partitions"


def test_prediction_and_feedback_of_a_request_land_in_the_same_partition(topics: Settings):
    with PredictionLogger(topics) as log:
        for i in range(200):
            log.log_prediction(prediction(i))
            log.log_feedback(feedback(i))
        assert log.flush(30) == 0
    preds = {m.key(): m.partition() for m in consume_all(topics, topics.predictions_topic, 4, expected=200)}
    fbs = {m.key(): m.partition() for m in consume_all(topics, topics.feedback_topic, 4, expected=200)}
    assert len(preds) == 200 and preds == fbs


def test_confluent_framing_round_trip_through_the_broker(topics: Settings):
    registry = registry_client({"url": "mock://producer-test"})
    with PredictionLogger(topics, registry=registry) as log:
        for i in range(100):
            log.log_prediction(prediction(i))
        assert log.flush(30) == 0
    reader = make_codec("prediction_event", registry=registry, topic=topics.predictions_topic)
    messages = consume_all(topics, topics.predictions_topic, 4, expected=100)
    assert {m.value()[0] for m in messages} == {0}
    assert sorted(reader.decode(m.value())["request_id"] for m in messages) == [prediction(i)["request_id"] for i in range(100)]


def test_conveniences_fill_timestamp_and_split_mixed_features(topics: Settings):
    before_ms = time.time_ns() // 1_000_000
    with PredictionLogger(topics) as log:
        log.log_prediction(
            {"request_id": "conv-1", "model_name": "m", "model_version": "1", "prediction": [{"value": 3.5}],
             "features": {"age": 41, "country": "DE", "vip": True, "emb": [1, 2], "zip": None}}
        )
        assert log.flush(30) == 0
    (message,) = consume_all(topics, topics.predictions_topic, 4, expected=1)
    event = make_codec("prediction_event").decode(message.value())
    assert event["numeric_features"] == {"age": 41.0} and event["categorical_features"] == {"country": "DE"}
    assert event["boolean_features"] == {"vip": True} and event["vector_features"] == {"emb": [1.0, 2.0]}
    assert event["null_features"] == ["zip"]
    assert event["timestamp"].timestamp() * 1000 >= before_ms - 1


def test_invalid_events_are_counted_not_raised(topics: Settings):
    with PredictionLogger(topics) as log:
        assert log.log_prediction({"model_name": "no request id"})
        assert log.log_feedback({"request_id": "x", "label_source": "ORACLE"})
        assert log.log_prediction(prediction(1))
        assert log.flush(30) == 0
    assert (log.stats.invalid, log.stats.delivered) == (2, 1)
    assert "invalid" in (log.stats.last_error or "")


def test_asyncio_service_logs_and_flushes_without_blocking_the_loop(topics: Settings):
    async def service() -> tuple[int, int]:
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        async with PredictionLogger(topics) as log:
            for i in range(500):
                log.log_prediction(prediction(i))
            pending = await log.aflush(30)
        task.cancel()
        return pending, log.stats.delivered

    assert asyncio.run(service()) == (0, 500)


def test_without_a_broker_log_calls_return_promptly_and_drops_are_counted(settings: Settings):
    nowhere = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{closed_port()}"})
    log = PredictionLogger(nowhere, close_timeout=1.0)
    events = [prediction(i) for i in range(2_000)]
    worst = 0
    for event in events:
        start = time.perf_counter_ns()
        assert log.log_prediction(event)
        worst = max(worst, time.perf_counter_ns() - start)
    assert worst < 50_000_000, f"a log call took {worst / 1e6:.1f} ms without a broker"
    start = time.monotonic()
    stats = log.close()
    assert time.monotonic() - start < 5.0
    assert stats.delivered == 0 and stats.accepted == 2_000
    assert stats.lost == 2_000 and stats.pending == 0
    assert not log.log_prediction(prediction(0)) and log.stats.dropped_closed == 1


def test_a_full_buffer_drops_and_counts_instead_of_blocking(settings: Settings):
    nowhere = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{closed_port()}"})
    # librdkafka's own queue is capped too, so the in-memory buffer must fill
    log = PredictionLogger(nowhere, max_buffer=100, batch_size=10, close_timeout=0.5,
                           producer_config={"queue.buffering.max.messages": 50})
    results = [log.log_prediction(prediction(i)) for i in range(5_000)]
    stats = log.close()
    dropped = results.count(False)
    assert dropped > 0 and stats.dropped_buffer_full == dropped
    assert stats.accepted == 5_000 - dropped
    assert stats.lost == 5_000 and stats.delivered == 0
