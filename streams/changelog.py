"""Table changelog records through confluent-kafka instead of Faust's producer.

Every table write is one changelog record. Through Faust's producer (its
``ProducerBuffer`` and aiokafka, in Python on the event loop) a small record
costs a few hundred µs of the worker's one core, and the join writes about one
record per request: measured with ``benchmarks/pipeline_throughput.py``, the
worker spent more time waiting for those records than computing. confluent-
kafka's producer queues a record in C in about a microsecond and batches it on
its own thread. :class:`ChangelogProducer` is that producer;
:class:`~.tables.PartitionTable` sends its changelog through it (the same
topic, partition, key and value bytes Faust would send), so recovery, which
reads the changelog topic, is unchanged.

Ordering: one producer, at most one request in flight per connection, so the
records of a changelog partition are written in the order they were sent (a
retry cannot overtake). :meth:`ChangelogProducer.flush` returns when every
record sent so far is acknowledged and raises :class:`ChangelogError` if one
was refused; a stage flushes before it acknowledges its input. Delivery
callbacks run on the event loop's thread (``poll`` is only called there), so
the RocksDB store's persisted offsets are updated where Faust updates them.

Example:
    >>> # producer = ChangelogProducer(settings.kafka_client_config())
    >>> # producer.send("app-join-changelog", 2, b"key", b"value", on_sent=lambda offset: None)
    >>> # await producer.flush()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

log = logging.getLogger(__name__)


#: records sent between two serving polls of the delivery reports outside flush() (keeps their queue short)
POLL_EVERY = 1000


class ChangelogError(RuntimeError):
    """The broker refused changelog records: the batch that wrote them must not be acknowledged."""


class ChangelogProducer:
    """A confluent-kafka producer for table changelog records, flushed from asyncio.

    Parameters
    ----------
    conf
        librdkafka client settings (bootstrap servers, security).
    """

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self._producer = Producer(dict(conf) | {
            "acks": "all",
            "linger.ms": 2,
            "max.in.flight.requests.per.connection": 1,  # in order, even across retries
        }, logger=log)
        self._failures: list[str] = []
        self._unpolled = 0

    def send(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
             on_sent: Callable[[int], None] | None = None) -> None:
        """Queue one record; ``on_sent(offset)`` runs when the broker acknowledged it (during a flush).

        Raises :class:`ChangelogError` if the client refuses the record at once.
        """

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                self._failures.append(f"{topic}[{partition}]: {error}")
            elif on_sent is not None:
                on_sent(message.offset())

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: serve deliveries to make room
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused at once (an unknown partition, a record too large)
                raise ChangelogError(f"{topic}[{partition}]: {exc}") from None
        # acknowledgements are served by flush(); polling per record cost a quarter of a table write
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def pending(self) -> int:
        """Records queued or in flight, not yet acknowledged."""
        return len(self._producer)

    async def flush(self, poll_s: float = 0.002) -> None:
        """Wait until every record sent so far is acknowledged; raise :class:`ChangelogError` if one was refused."""
        producer = self._producer
        while True:
            producer.poll(0)
            if len(producer) == 0:
                break
            await asyncio.sleep(poll_s)
        if self._failures:
            failures, self._failures = self._failures, []
            raise ChangelogError(f"{len(failures)} changelog record(s) refused, first: {failures[0]}")

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``timeout_s``)."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("%d changelog record(s) not delivered at shutdown (their batches were not acknowledged)",
                        remaining)
