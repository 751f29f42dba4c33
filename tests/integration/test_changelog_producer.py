"""The changelog producer against the broker: records in order, offsets reported, refusals raised."""

from __future__ import annotations

import asyncio

import pytest

from driftline.streams.changelog import ChangelogError, ChangelogProducer
from tests.kafka_helpers import consume_all


def test_records_arrive_in_order_with_their_offsets_and_a_refused_record_raises(settings, kafka_admin, unique_topic):
    kafka_admin.create_topic(unique_topic, partitions=2)
    producer = ChangelogProducer(settings.kafka_client_config())
    offsets: list[int] = []
    for i in range(500):
        producer.send(unique_topic, 1, f"k{i % 50}".encode(), f"v{i}".encode(), on_sent=offsets.append)
    asyncio.run(producer.flush())
    assert producer.pending() == 0
    assert offsets == list(range(500)), "acknowledged in order, one offset per record"
    messages = consume_all(settings, unique_topic, 2, expected=500)
    assert [m.value() for m in messages] == [f"v{i}".encode() for i in range(500)]
    assert {m.partition() for m in messages} == {1}

    with pytest.raises(ChangelogError, match=unique_topic):
        producer.send(unique_topic, 7, b"k", b"v")  # the topic has no partition 7
        asyncio.run(producer.flush())
    producer.close()
