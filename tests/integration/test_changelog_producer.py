"""The changelog producer against the broker: records in order, offsets reported, refusals raised."""

from __future__ import annotations

import asyncio
import json
import random
import string

import pytest

from driftline.streams.changelog import POLL_EVERY, ChangelogError, ChangelogProducer
from driftline.streams.tables import get_text, put_text
from tests.kafka_helpers import consume_all

COUNT = 2 * POLL_EVERY + 500  # past the producer's own polls, and a remainder only flush() serves


def test_records_arrive_in_order_with_their_offsets_and_a_refused_record_raises(settings, kafka_admin, unique_topic):
    kafka_admin.create_topic(unique_topic, partitions=2)
    producer = ChangelogProducer(settings.kafka_client_config())
    offsets: list[int] = []
    for i in range(COUNT):
        producer.send(unique_topic, 1, f"k{i % 50}".encode(), f"v{i}".encode(), on_sent=offsets.append)
    asyncio.run(producer.flush())
    assert producer.pending() == 0
    assert offsets == list(range(COUNT)), "acknowledged in order, one offset per record (served by polls and flush)"
    messages = consume_all(settings, unique_topic, 2, expected=COUNT)
    assert [m.value() for m in messages] == [f"v{i}".encode() for i in range(COUNT)]
    assert {m.partition() for m in messages} == {1}

    with pytest.raises(ChangelogError, match=unique_topic):
        producer.send(unique_topic, 7, b"k", b"v")  # the topic has no partition 7
        asyncio.run(producer.flush())
    producer.close()


class _Changelogged(dict):
    """A dict whose writes go to a changelog partition as JSON values, as a driftline table's do."""

    def __init__(self, producer: ChangelogProducer, topic: str) -> None:
        super().__init__()
        self.producer, self.topic, self.writes = producer, topic, 0

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.writes += 1
        self.producer.send(self.topic, 0, key.encode(), json.dumps(value).encode())


def test_a_checkpoint_above_the_message_limit_is_refused_whole_and_restored_from_its_parts(
        settings, kafka_admin, unique_topic):
    kafka_admin.create_topic(unique_topic, partitions=1)
    producer = ChangelogProducer(settings.kafka_client_config())
    rng = random.Random(7)
    text = "".join(rng.choice(string.ascii_letters) for _ in range(2_100_000))  # incompressible, like a bank's base64

    with pytest.raises(ChangelogError, match="MSG_SIZE_TOO_LARGE"):  # what a lagging partition's bank once did
        producer.send(unique_topic, 0, b"whole", json.dumps(text).encode())
        asyncio.run(producer.flush())

    table = _Changelogged(producer, unique_topic)
    put_text(table, "fraud|v1", text)
    put_text(table, "fraud|v1", text[::-1])  # the next checkpoint: the other slot
    asyncio.run(producer.flush())
    restored: dict[str, str] = {}  # what a recovering worker rebuilds from the changelog
    for message in consume_all(settings, unique_topic, 1, expected=table.writes):
        restored[message.key().decode()] = json.loads(message.value())
    assert get_text(restored, "fraud|v1") == text[::-1]
    producer.close()
