"""The intake: read the input topics with a batch consumer, forward one message per partition batch.

Faust hands every Kafka record to an agent through an asyncio queue and a
task of its own: ~230 µs per record on a 2-core machine, a ceiling of ~4,400
records/s for an agent that does nothing (see the README's architecture
section). confluent-kafka's batch ``consume()`` reads the same topic at
hundreds of thousands of records/s. So the input topics are read by
:class:`Intake`, not by a Faust agent: it consumes up to ``max_records`` at a
time, groups them by source partition and sends each group as one
:class:`IntakeBatch` message to the intake topic, in the *same partition
number*. Predictions and feedback are co-partitioned by request id, and so is
the intake topic: the ingest agent that reads partition ``p`` of it (and owns
partition ``p`` of the join table) sees every record of request-id partition
``p``, whichever worker's intake read it. Faust's per-event cost is then paid
once per batch of up to ``max_records`` records.

Order: the records of one partition number are released in timestamp order
across the input topics (:class:`TimeAligner`, Kafka Streams' stream-time
synchronisation), so that a backlog of predictions does not run minutes of
event time ahead of its labels.

Delivery: the intake commits its consumer offsets only after the broker
acknowledged the batches that carry those records, so a crash re-reads and
re-sends them (at-least-once). Every record keeps its source topic, partition
and offset: the stages downstream are replay-safe by those (the join keeps
tombstones, detector banks skip positions they already applied, documents
have deterministic ids), so a record sent twice is processed once.

Example:
    >>> batch = IntakeBatch.from_records(2, [("driftline.predictions", 7, 1_700_000_000_000, b"r-1", b"...")])
    >>> [(r.topic, r.partition, r.offset, r.key) for r in IntakeBatch.decode(batch.encode()).records()]
    [('driftline.predictions', 2, 7, b'r-1')]
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from mode import Service

from driftline.connectors.codec import SingleObjectCodec, load_schema
from driftline.settings import Settings
from driftline.streams.normalize import RawRecord

log = logging.getLogger(__name__)

#: Largest intake message: below Kafka's default 1 MB message limit, with room for the framing.
MAX_BATCH_BYTES = 900_000
#: Per-record framing overhead counted against ``MAX_BATCH_BYTES`` (offset, timestamp, lengths).
_RECORD_OVERHEAD = 24

#: One record as the intake forwards it: (source topic, offset, timestamp ms or None, key, value).
SourceRecord = tuple[str, int, "int | None", "bytes | None", "bytes | None"]


class IntakeError(RuntimeError):
    """The intake could not forward what it read (the broker refused or timed out its batches)."""


def intake_topic(settings: Settings) -> str:
    """The internal topic the intake writes and the ingest agent reads.

    Example:
        >>> intake_topic(Settings(app_id="driftline"))
        'driftline.intake'
    """
    return f"{settings.app_id}.intake"


@dataclass(slots=True)
class IntakeBatch:
    """Records of one source partition in one message, stored column-wise (see ``schemas/intake_batch.avsc``)."""

    partition: int
    topics: list[str]
    topic_index: list[int]
    offsets: list[int]
    timestamps_ms: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]

    _codec: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_records(cls, partition: int, records: Iterable[SourceRecord]) -> IntakeBatch:
        """A batch of ``(topic, offset, timestamp_ms, key, value)`` records of one partition."""
        topics: list[str] = []
        index_of: dict[str, int] = {}
        batch = cls(partition, topics, [], [], [], [], [])
        for topic, offset, timestamp_ms, key, value in records:
            index = index_of.get(topic)
            if index is None:
                index = index_of[topic] = len(topics)
                topics.append(topic)
            batch.topic_index.append(index)
            batch.offsets.append(offset)
            batch.timestamps_ms.append(-1 if timestamp_ms is None else timestamp_ms)
            batch.keys.append(key)
            batch.values.append(value)
        return batch

    def __len__(self) -> int:
        return len(self.offsets)

    def encode(self) -> bytes:
        """The batch as an Avro single-object message."""
        return _codec().encode({"partition": self.partition, "topics": self.topics, "topic_index": self.topic_index,
                                "offsets": self.offsets, "timestamps_ms": self.timestamps_ms, "keys": self.keys,
                                "values": self.values})

    @classmethod
    def decode(cls, data: bytes) -> IntakeBatch:
        """A batch from its message; raises :class:`~driftline.connectors.codec.DecodeError` if it is not one."""
        value = _codec().decode(data)
        return cls(value["partition"], value["topics"], value["topic_index"], value["offsets"],
                   value["timestamps_ms"], value["keys"], value["values"])

    def records(self) -> list[RawRecord]:
        """The records as the normalizer reads them, with their source topic, partition and offset."""
        topics, partition = self.topics, self.partition
        return [RawRecord(value, key, topics[index], partition, offset, None if ts < 0 else ts)
                for index, offset, ts, key, value
                in zip(self.topic_index, self.offsets, self.timestamps_ms, self.keys, self.values)]


_CODEC: SingleObjectCodec | None = None


def _codec() -> SingleObjectCodec:
    global _CODEC
    if _CODEC is None:
        _CODEC = SingleObjectCodec(load_schema("intake_batch"))
    return _CODEC


def split_by_size(records: Sequence[SourceRecord], max_bytes: int = MAX_BATCH_BYTES,
                  max_records: int | None = None) -> Iterator[Sequence[SourceRecord]]:
    """Consecutive runs of ``records`` whose keys and values together stay within ``max_bytes``
    (and of at most ``max_records`` records).

    A record larger than ``max_bytes`` on its own goes alone in its run (the
    broker accepted it on the input topic, so it accepts it with the framing
    unless it sat right at the broker's limit).

    Example:
        >>> runs = split_by_size([("t", i, None, None, b"x" * 40) for i in range(5)], max_bytes=150)
        >>> [len(r) for r in runs]
        [2, 2, 1]
        >>> [len(r) for r in split_by_size([("t", i, None, None, b"x") for i in range(5)], max_records=2)]
        [2, 2, 1]
    """
    start, size = 0, 0
    for i, (_, _, _, key, value) in enumerate(records):
        n = len(key or b"") + len(value or b"") + _RECORD_OVERHEAD
        if i > start and (size + n > max_bytes or (max_records is not None and i - start >= max_records)):
            yield records[start:i]
            start, size = i, 0
        size += n
    if start < len(records):
        yield records[start:]


class TimeAligner:
    """Releases each partition's records of several topics in timestamp order, as Kafka Streams does.

    Predictions and feedback of one request-id partition arrive on two topics,
    and a batch consumer reads them at different paces: through a backlog it
    can hand over a megabyte of one topic before the first record of the
    other. The join and the detectors then see labels long after predictions
    that were sent at the same time, and windows close before outcomes that
    were on time reach them. Kafka Streams solves this by always processing
    the buffered record with the smallest timestamp among a task's partitions,
    waiting while one of them has nothing buffered (``max.task.idle.ms``).
    This class does the same for the intake: a partition's records are
    released smallest timestamp first while every topic has some buffered; a
    topic with none holds the others back unless it is *caught up* (nothing
    more to read now) or has been empty for ``max_idle_s``.

    Buffered records are not forwarded, so they are not committed: the
    offsets to commit are those after the last record released.

    Example:
        >>> aligner = TimeAligner(["p", "f"], max_idle_s=60.0, clock=lambda: 0.0)
        >>> for topic, offset, ts in [("p", 0, 10), ("p", 1, 30), ("f", 0, 20)]:
        ...     aligner.add(topic, 0, (topic, offset, ts, None, b""))
        >>> [(r[0], r[2]) for r in aligner.release(caught_up=lambda t, p: False)[0]]
        [('p', 10), ('f', 20)]
        >>> aligner.commit_offsets()
        {('p', 0): 1, ('f', 0): 1}
        >>> [(r[0], r[2]) for r in aligner.release(caught_up=lambda t, p: t == "f")[0]]  # f has nothing more
        [('p', 30)]
    """

    def __init__(self, topics: Sequence[str], max_idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.topics = list(topics)
        self.max_idle_s = max_idle_s
        self.clock = clock
        self._buffers: dict[tuple[str, int], deque[SourceRecord]] = defaultdict(deque)
        self._empty_since: dict[tuple[str, int], float] = {}
        self._released_next: dict[tuple[str, int], int] = {}  # offset after the last record released

    def add(self, topic: str, partition: int, record: SourceRecord) -> None:
        """Buffer one record (records of a topic-partition come in offset order)."""
        self._buffers[(topic, partition)].append(record)

    def buffered(self, topic: str, partition: int) -> int:
        """How many records of a topic-partition wait."""
        buffer = self._buffers.get((topic, partition))
        return len(buffer) if buffer else 0

    def release(self, caught_up: Callable[[str, int], bool]) -> dict[int, list[SourceRecord]]:
        """The records that can go now, by partition, each partition's in timestamp order."""
        now = self.clock()
        released: dict[int, list[SourceRecord]] = {}
        for partition in sorted({p for (_, p), buffer in self._buffers.items() if buffer}):
            buffers = [self._buffers[(t, partition)] for t in self.topics]
            blocked = [not b and not self._may_pass(t, partition, now, caught_up) for t, b in zip(self.topics, buffers)]
            out: list[SourceRecord] = []
            while not any(blocked):
                live = [b for b in buffers if b]
                if not live:
                    break
                source = min(live, key=lambda b: b[0][2] if b[0][2] is not None else -1)
                record = source.popleft()
                out.append(record)
                self._released_next[(record[0], partition)] = record[1] + 1
                if not source:  # this topic ran dry: it holds the others back from now on, unless caught up
                    topic = record[0]
                    self._empty_since[(topic, partition)] = now
                    blocked[self.topics.index(topic)] = not self._may_pass(topic, partition, now, caught_up)
            if out:
                released[partition] = out
        return released

    def _may_pass(self, topic: str, partition: int, now: float, caught_up: Callable[[str, int], bool]) -> bool:
        since = self._empty_since.setdefault((topic, partition), now)
        return now - since >= self.max_idle_s or caught_up(topic, partition)

    def commit_offsets(self) -> dict[tuple[str, int], int]:
        """The offsets after the records released so far (and not yet reported), by topic-partition."""
        offsets, self._released_next = self._released_next, {}
        return offsets

    def drop(self, topic: str, partition: int) -> int:
        """Forget a topic-partition (revoked: its new owner reads it again from the committed offset)."""
        self._empty_since.pop((topic, partition), None)
        self._released_next.pop((topic, partition), None)
        buffer = self._buffers.pop((topic, partition), None)
        return len(buffer) if buffer else 0


@dataclass
class CycleResult:
    """What one :meth:`Intake.cycle` did: records read, batches sent, and whether the read was full (a backlog)."""

    records: int = 0
    batches: int = 0
    full: bool = False
    commit_failed: bool = False


class Intake:
    """Batch consumer of the input topics that forwards per-partition :class:`IntakeBatch` messages.

    Lifecycle: :meth:`start` (connects, subscribes), :meth:`cycle` repeatedly
    (one read → send → wait for the acks → commit), :meth:`close`. The
    consumer group is ``<app id>-intake``: several workers share the input
    partitions, each forwarding what it reads to the same partition number of
    the intake topic. A rebalance can only happen inside ``consume()``, when
    everything read before was sent and committed.

    Example:
        >>> # intake = Intake(settings); intake.start()
        >>> # while running: intake.cycle()
        >>> # intake.close()
    """

    def __init__(self, settings: Settings, *, max_records: int | None = None, within_s: float | None = None,
                 max_bytes: int = MAX_BATCH_BYTES) -> None:
        self.settings = settings
        self.sources = [settings.predictions_topic, settings.feedback_topic]
        self.target = intake_topic(settings)
        self.max_records = max_records or settings.batch_size
        self.within_s = settings.intake_within_s if within_s is None else within_s
        self.max_bytes = max_bytes
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._failures: list[str] = []
        self.aligner = TimeAligner(self.sources, max_idle_s=max(1.0, 5 * self.within_s))
        self._assigned_tps: set[tuple[str, int]] = set()
        self._paused: set[tuple[str, int]] = set()
        self._consumed_next: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()  # cycle() and close() may run on different executor threads

    def start(self) -> None:
        """Connect, check that the intake topic is co-partitioned with the input, and subscribe."""
        from driftline.connectors.kafka_admin import ensure_topics

        partitions = self.settings.topic_partitions
        ensure_topics(self.settings, {self.target: partitions})
        conf = self.settings.kafka_consumer_config(f"{self.settings.app_id}-intake") | {
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": max(10, int(self.within_s * 1000)),
            # partition p of every input topic to the same member: its records can be aligned in time
            "partition.assignment.strategy": "range",
        }
        self.consumer = Consumer(conf, logger=log)
        self.producer = Producer(self.settings.kafka_client_config() | {
            "acks": "all", "linger.ms": 2, "message.max.bytes": max(1_000_000, self.max_bytes + 100_000)}, logger=log)
        self.consumer.subscribe(self.sources, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned_tps.update((tp.topic, tp.partition) for tp in partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # nothing released is uncommitted here (a cycle commits before it returns): only buffered records are
        # dropped, and the partition's next owner reads them again from the committed offset.
        # librdkafka keeps a partition paused across a rebalance: resume it, or it stays silent when reassigned
        paused = [tp for tp in partitions if (tp.topic, tp.partition) in self._paused]
        if paused:
            try:
                consumer.resume(paused)
            except KafkaException as exc:  # a lost partition may no longer be known to the client
                log.warning("intake: resuming revoked partitions: %s", exc)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned_tps.discard(key)
            self._paused.discard(key)
            self._consumed_next.pop(key, None)
            self.aligner.drop(*key)

    def _caught_up(self, topic: str, partition: int) -> bool:
        """Whether a topic-partition has nothing more to read now (or is not this consumer's)."""
        assert self.consumer is not None
        if (topic, partition) not in self._assigned_tps:
            return True
        _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        position = self._consumed_next.get((topic, partition))
        if position is None:
            (tp,) = self.consumer.position([TopicPartition(topic, partition)])
            position = tp.offset
        return high >= 0 and position >= 0 and position >= high

    def cycle(self, stopping: Callable[[], bool] = lambda: False) -> CycleResult:
        """Read up to ``max_records`` records, forward what is aligned by partition, wait for the acks, commit.

        Raises :class:`IntakeError` if the broker refused a batch: nothing of
        that read is committed, so a restarted worker reads it again.
        """
        with self._lock:
            if self.consumer is None or self.producer is None:
                raise IntakeError("the intake is not started (or already closed)")
            messages = self.consumer.consume(self.max_records, self.within_s)
            result = CycleResult(full=len(messages) >= self.max_records)
            for message in messages:
                if message.error() is not None:
                    self._consume_error(message)
                    continue
                ts_type, ts = message.timestamp()
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                self.aligner.add(topic, partition, (topic, offset, ts if ts_type else None, message.key(), message.value()))
                self._consumed_next[(topic, partition)] = offset + 1
            released = self.aligner.release(self._caught_up)
            self._pause_or_resume()
            if not released:
                return result
            for partition, records in sorted(released.items()):
                for run in split_by_size(records, self.max_bytes, self.max_records):
                    self._produce(IntakeBatch.from_records(partition, run).encode(), partition)
                    result.batches += 1
                result.records += len(records)
            offsets = self.aligner.commit_offsets()
            while self.producer.flush(1.0) > 0:  # librdkafka retries until message.timeout.ms, then fails it
                if stopping():
                    log.warning("intake stopped before the broker acknowledged its last batches: they are read again")
                    return result
            if self._failures:
                failures, self._failures = self._failures, []
                raise IntakeError(f"the broker did not take {len(failures)} intake batches: {failures[0]}")
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                     asynchronous=False)
            except KafkaException as exc:
                # e.g. a rebalance between the read and the commit: the records are forwarded already, so the
                # partition's next reader forwards them again and the stages below drop the repeats by offset
                result.commit_failed = True
                log.warning("intake: committing after forwarding failed (%s); those records will be read again", exc)
            return result

    def _pause_or_resume(self) -> None:
        """Stop fetching a topic-partition while many of its records wait for the other topic to catch up."""
        assert self.consumer is not None
        limit = 4 * self.max_records
        for key in list(self._assigned_tps):
            waiting = self.aligner.buffered(*key)
            if key not in self._paused and waiting > limit:
                self.consumer.pause([TopicPartition(*key)])
                self._paused.add(key)
            elif key in self._paused and waiting <= limit // 2:
                self.consumer.resume([TopicPartition(*key)])
                self._paused.discard(key)

    def _produce(self, value: bytes, partition: int) -> None:
        assert self.producer is not None
        while True:
            try:
                self.producer.produce(self.target, value=value, partition=partition, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def _consume_error(self, message: Message) -> None:
        error = message.error()
        if error.fatal():
            raise IntakeError(f"fatal consumer error: {error}")
        log.warning("intake: consumer error (retried by the client): %s", error)

    def close(self) -> None:
        """Leave the group (committing nothing more) and release the clients."""
        with self._lock:
            if self.consumer is not None:
                try:
                    self.consumer.close()
                except KafkaException as exc:  # pragma: no cover - closing a consumer whose broker is gone
                    log.warning("intake: closing the consumer: %s", exc)
                self.consumer = None
            if self.producer is not None:
                self.producer.flush(5.0)
                self.producer = None


class IntakeService(Service):
    """Runs an :class:`Intake` inside the Faust worker: its blocking calls on a thread, one cycle at a time.

    ``on_cycle`` gets every :class:`CycleResult` on the event loop (the
    pipeline's backlog clock and counters). An intake that fails crashes the
    worker: a restart resumes from the committed offsets.
    """

    def __init__(self, settings: Settings, on_cycle: Callable[[CycleResult], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.intake = Intake(settings)
        self.on_cycle = on_cycle or (lambda _result: None)
        self._stopping = False

    async def on_start(self) -> None:
        await asyncio.to_thread(self.intake.start)

    @Service.task
    async def _forward(self) -> None:
        while not self.should_stop and not self._stopping:
            try:
                result = await asyncio.to_thread(self.intake.cycle, lambda: self._stopping)
            except Exception as exc:  # noqa: BLE001 - crash the worker, say why
                await self.crash(exc)
                return
            self.on_cycle(result)

    async def on_stop(self) -> None:
        self._stopping = True
        await asyncio.to_thread(self.intake.close)


__all__ = ["CycleResult", "Intake", "IntakeBatch", "IntakeError", "IntakeService", "MAX_BATCH_BYTES", "TimeAligner",
           "intake_topic", "split_by_size"]
