"""The premise of sealing changelogs: after a seal in its own produce request, every earlier record is below the high watermark."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition


def high_watermark(settings, topic: str) -> int:
    consumer = Consumer(settings.kafka_consumer_config("watermark-reader"))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        consumer.close()


def test_a_seal_makes_every_earlier_record_visible_below_the_high_watermark(settings, kafka_admin, unique_topic):
    kafka_admin.create_topic(unique_topic, partitions=1)
    producer = Producer(settings.kafka_client_config() | {"linger.ms": 100})
    for i in range(50):  # one produce request: one record batch
        producer.produce(unique_topic, f"write-{i}".encode(), b"k")
    assert producer.flush(10) == 0
    unsealed = high_watermark(settings, unique_topic)
    # real Kafka reports 50; the embedded broker reports the last batch's base offset + 1
    assert unsealed in (1, 50), f"unexpected high watermark {unsealed} for 50 records in one batch"
    producer.produce(unique_topic, b"seal", b"seal")  # its own request: a batch of one
    assert producer.flush(10) == 0
    assert high_watermark(settings, unique_topic) >= 50 + 1, "a reader trusting the watermark would still miss writes"
