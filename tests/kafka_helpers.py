"""Reading topics back in tests: by assignment, so no consumer-group join is waited for."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from driftline.settings import Settings


def consume_all(settings: Settings, topic: str, partitions: int, expected: int, timeout: float = 60.0) -> list:
    """Every message of ``topic`` from the beginning, until ``expected`` arrived or ``timeout``.

    Counts by consuming, never by trusting the high watermark (the embedded
    broker under-reports it slightly).
    """
    consumer = Consumer(settings.kafka_consumer_config(f"test-reader-{uuid.uuid4().hex[:8]}") | {"enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is None:
                    messages.append(msg)
        # a little longer, to catch duplicates beyond the expected count
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                if msg.error() is None:
                    messages.append(msg)
    finally:
        consumer.close()
    return messages


def group_positions(settings: Settings, group: str, topics: list[str], partitions: int) -> str:
    """``topic[p] committed/end`` for a consumer group, for failure messages (where records stopped)."""
    consumer = Consumer(settings.kafka_consumer_config(group) | {"enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        committed = consumer.committed(tps, timeout=10)
        parts = []
        for tp in committed:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            except Exception as exc:  # noqa: BLE001 - say so for this partition, go on
                high = f"? ({exc.args[0].str() if hasattr(exc.args[0], 'str') else exc})"
            parts.append(f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}] {tp.offset}/{high}")
        return f"{group}: " + ", ".join(parts)
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure it describes
        return f"{group}: positions unavailable ({exc})"
    finally:
        consumer.close()
