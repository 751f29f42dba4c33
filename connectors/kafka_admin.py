"""Kafka administration: the topics driftline needs, created once with the right shape.

Example:
    >>> from driftline.settings import Settings
    >>> sorted(driftline_topics(Settings()))
    ['driftline.alerts', 'driftline.deadletter', 'driftline.feedback', 'driftline.predictions']
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.settings import Settings

class TopicError(RuntimeError):
    """A topic could not be created, or exists with a shape that breaks co-partitioning."""


def driftline_topics(settings: Settings, partitions: int | None = None) -> dict[str, int]:
    """The topics driftline reads and writes, with their partition counts."""
    partitions = partitions or settings.topic_partitions
    return {
        settings.predictions_topic: partitions,
        settings.feedback_topic: partitions,
        settings.deadletter_topic: partitions,
        settings.alerts_topic: 1,
    }


def ensure_topics(settings: Settings, topics: Mapping[str, int], timeout: float = 30.0,
                  configs: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    ``configs`` gives topic configurations by topic name (``cleanup.policy`` ...),
    applied when a topic is created.

    An existing topic with a different partition count raises :class:`TopicError`
    (the join relies on predictions and feedback being co-partitioned).

    Example:
        >>> ensure_topics(settings, {"driftline.predictions": 4})  # doctest: +SKIP
        ['driftline.predictions']
    """
    admin = AdminClient(settings.kafka_client_config())
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise TopicError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    for name, partitions in topics.items():
        if name in existing and existing[name].error is None and len(existing[name].partitions) != partitions:
            raise TopicError(
                f"topic {name} has {len(existing[name].partitions)} partitions, expected {partitions}"
            )
    # Predictions and feedback must have the same partition count: both are keyed
    # by request id, so a request's prediction and label land in the same
    # partition number and meet in the same worker (co-partitioning).
    replication = settings.topic_replication_factor
    configs = configs or {}
    missing = [NewTopic(name, num_partitions=n, replication_factor=replication, config=dict(configs.get(name, {})))
               for name, n in topics.items() if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout)
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicError(f"cannot create topic {name}: {exc}") from None
    return created


def committed_offsets(settings: Settings, group: str, topic: str, partitions: int,
                      timeout: float = 10.0) -> dict[int, int | None]:
    """A consumer group's committed offsets of ``topic`` by partition (None where it never committed).

    Reads them without joining the group (an offset fetch), so it never
    triggers a rebalance.

    Example:
        >>> committed_offsets(settings, "driftline", "driftline.intake", 4)  # doctest: +SKIP
        {0: 120, 1: 118, 2: None, 3: 131}
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.kafka_consumer_config(group) | {"enable.auto.commit": False})
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in answer}
