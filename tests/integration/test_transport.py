"""The worker's consumer against the broker: started, its fetcher asks the broker to wait fetch_max_wait_ms, and it reads."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from driftline.streams.app import create_app

pytestmark = pytest.mark.integration


def test_the_started_consumer_fetches_with_the_settings_wait_and_reads_records(settings, kafka_admin, unique_topic):
    kafka_admin.create_topic(unique_topic, partitions=2)
    app = create_app(settings.model_copy(update={"app_id": f"transport-{unique_topic}", "fetch_max_wait_ms": 120,
                                                 "pseudonymization_key": "k" * 32}))

    async def run() -> tuple[int, list[bytes]]:
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        consumer.assign([TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)])
        await consumer.start()
        try:
            await consumer.seek_to_beginning()
            client = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
            await client.start()
            try:
                for i in range(5):
                    await client.send_and_wait(unique_topic, f"v{i}".encode(), partition=1)
            finally:
                await client.stop()
            got: list[bytes] = []
            for _ in range(50):
                batches = await consumer.getmany(timeout_ms=200)
                got += [record.value for records in batches.values() for record in records]
                if len(got) >= 5:
                    break
            return consumer._fetcher._fetch_max_wait_ms, got
        finally:
            await consumer.stop()

    wait_ms, got = asyncio.run(run())
    assert wait_ms == 120
    assert got == [f"v{i}".encode() for i in range(5)]
