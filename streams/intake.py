"""The intake: read the input topics with a batch consumer, normalize, forward one message per partition batch.

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

Order: the records are released in timestamp order across every input
topic-partition (:class:`TimeAligner`, Kafka Streams' stream-time
synchronisation), so that a backlog of predictions does not run minutes of
event time ahead of its labels, nor one partition ahead of the others.

Normalizing: with a :class:`~driftline.streams.normalize.Normalizer` the
intake forwards canonical events and dead letters, not raw records
(:func:`normalized_batches`). Decoding and validating is the largest share of
the per-event work; :class:`IntakeProcess` runs the intake in a child process
of the worker, on another core than the worker's event loop.

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
import heapq
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from mode import Service

from driftline.connectors.codec import SingleObjectCodec, load_schema
from driftline.settings import Settings
from driftline.streams.normalize import DeadLetterRecord, EventKind, NormalizedEvent, Normalizer, RawRecord
from driftline.streams.process_name import name_this_process

log = logging.getLogger(__name__)

#: Largest intake message: below Kafka's default 1 MB message limit, with room for the framing.
MAX_BATCH_BYTES = 900_000
#: Cycles whose batches may be on their way to the broker, unacknowledged, while the intake reads the next ones.
MAX_CYCLES_IN_FLIGHT = 4
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
    """Records of one source partition in one message (see ``schemas/intake_batch.avsc``).

    Either raw records, column-wise (:meth:`from_records`, read back with
    :meth:`records`), or what the intake's normalizer made of them: canonical
    events and dead letters (:meth:`from_normalized`, read back with
    :meth:`normalized`).
    """

    partition: int
    topics: list[str]
    topic_index: list[int]
    offsets: list[int]
    timestamps_ms: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    events: list[bytes] = field(default_factory=list)  # JSON rows, see normalized()
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

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

    @classmethod
    def from_normalized(cls, partition: int, topics: list[str], rows: list[bytes],
                        dead_letters: Iterable[DeadLetterRecord]) -> IntakeBatch:
        """A batch of normalized events (rows from :func:`event_row`, topic indices into ``topics``) and dead letters.

        Example:
            >>> event = NormalizedEvent(EventKind.FEEDBACK, "r-1", 5, {"request": {"id": "r-1"}}, "fb", 3, 9)
            >>> batch = IntakeBatch.from_normalized(3, ["fb"], [event_row(event, 0, 7)], [])
            >>> events, dead, sent_ms = IntakeBatch.decode(batch.encode()).normalized()
            >>> events == [event], dead, sent_ms
            (True, [], [7])
        """
        index_of = {topic: i for i, topic in enumerate(topics)}
        dead = [{"raw": d.raw, "raw_key": d.raw_key, "reason": d.reason, "error_type": d.error_type,
                 "stage": d.stage, "topic_index": index_of[d.source_topic], "offset": d.source_offset,
                 "rejected_ms": d.timestamp_ms, "record_timestamp_ms": d.record_timestamp_ms}
                for d in dead_letters]
        return cls(partition, topics, [], [], [], [], [], rows, dead)

    def __len__(self) -> int:
        """Records in the batch: raw records, or events and dead letters."""
        return len(self.offsets) + len(self.events) + len(self.dead_letters)

    def encode(self) -> bytes:
        """The batch as an Avro single-object message."""
        return _codec().encode({"partition": self.partition, "topics": self.topics, "topic_index": self.topic_index,
                                "offsets": self.offsets, "timestamps_ms": self.timestamps_ms, "keys": self.keys,
                                "values": self.values, "events": self.events, "dead_letters": self.dead_letters})

    @classmethod
    def decode(cls, data: bytes) -> IntakeBatch:
        """A batch from its message; raises :class:`~driftline.connectors.codec.DecodeError` if it is not one."""
        value = _codec().decode(data)
        return cls(value["partition"], value["topics"], value["topic_index"], value["offsets"],
                   value["timestamps_ms"], value["keys"], value["values"], value["events"], value["dead_letters"])

    def records(self) -> list[RawRecord]:
        """The raw records as the normalizer reads them, with their source topic, partition and offset."""
        topics, partition = self.topics, self.partition
        return [RawRecord(value, key, topics[index], partition, offset, None if ts < 0 else ts)
                for index, offset, ts, key, value
                in zip(self.topic_index, self.offsets, self.timestamps_ms, self.keys, self.values)]

    def normalized(self) -> tuple[list[NormalizedEvent], list[DeadLetterRecord], list[int]]:
        """The normalized events, the dead letters and the events' broker timestamps (ms; for the latency)."""
        topics, partition, kinds = self.topics, self.partition, _KINDS
        events, sent_ms = [], []
        for row in self.events:
            kind, request_id, timestamp_ms, index, offset, broker_ms, document = orjson.loads(row)
            events.append(NormalizedEvent(kinds[kind], request_id, timestamp_ms, document, topics[index],
                                          partition, offset))
            if broker_ms >= 0:
                sent_ms.append(broker_ms)
        dead = [DeadLetterRecord(d["raw"], d["raw_key"], d["reason"], d["error_type"], topics[d["topic_index"]],
                                 partition, d["offset"], d["rejected_ms"], stage=d["stage"],
                                 record_timestamp_ms=d["record_timestamp_ms"])
                for d in self.dead_letters]
        return events, dead, sent_ms


_KINDS = {kind.value: kind for kind in EventKind}  # a dict lookup: calling the enum costs more


def event_row(event: NormalizedEvent, topic_index: int, broker_ms: int | None) -> bytes:
    """One normalized event as an :class:`IntakeBatch` row: JSON, its canonical document as it is."""
    return orjson.dumps([event.kind.value, event.request_id, event.timestamp_ms, topic_index, event.offset,
                         -1 if broker_ms is None else broker_ms, event.document])


def normalized_batches(partition: int, records: Sequence[SourceRecord], normalizer: Normalizer, now_ms: int,
                       max_bytes: int = MAX_BATCH_BYTES, max_records: int | None = None) -> list[IntakeBatch]:
    """Normalize one partition's released records into intake batches, each within ``max_bytes`` (and
    ``max_records``); events keep their order. A row larger than ``max_bytes`` goes alone in its batch."""
    topics = sorted({record[0] for record in records})
    index_of = {topic: i for i, topic in enumerate(topics)}
    broker_ms = {(topic, offset): ts for topic, offset, ts, _, _ in records}
    raw = [RawRecord(value, key, topic, partition, offset, ts) for topic, offset, ts, key, value in records]
    events, dead_letters = normalizer.normalize_batch(raw, now_ms)
    batches: list[IntakeBatch] = []
    rows: list[bytes] = []
    dead: list[DeadLetterRecord] = []
    size = 0
    items: list[tuple[int, bytes | DeadLetterRecord]] = [
        (len(row) + _RECORD_OVERHEAD, row) for row in
        (event_row(e, index_of[e.topic], broker_ms.get((e.topic, e.offset))) for e in events)
    ] + [(len(d.raw) + len(d.raw_key or b"") + len(d.reason) + 4 * _RECORD_OVERHEAD, d) for d in dead_letters]
    for n, item in items:
        count = len(rows) + len(dead)
        if count and (size + n > max_bytes or (max_records is not None and count >= max_records)):
            batches.append(IntakeBatch.from_normalized(partition, topics, rows, dead))
            rows, dead, size = [], [], 0
        if isinstance(item, bytes):
            rows.append(item)
        else:
            dead.append(item)
        size += n
    if rows or dead:
        batches.append(IntakeBatch.from_normalized(partition, topics, rows, dead))
    return batches


_CODEC: SingleObjectCodec | None = None


def _codec() -> SingleObjectCodec:
    global _CODEC
    if _CODEC is None:
        # batches an older worker forwarded (raw records only) are still read
        _CODEC = SingleObjectCodec(load_schema("intake_batch"), writer_schemas=[load_schema("intake_batch_v1")])
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
    """Releases the records of every topic-partition read in timestamp order, as Kafka Streams does within a task.

    Predictions and feedback of one request-id partition arrive on two topics,
    and a batch consumer reads them at different paces: through a backlog it
    can hand over a megabyte of one topic before the first record of the
    other. The join and the detectors then see labels long after predictions
    that were sent at the same time, and windows close before outcomes that
    were on time reach them. Kafka Streams solves this by always processing
    the buffered record with the smallest timestamp among a task's partitions,
    waiting while one of them has nothing buffered (``max.task.idle.ms``).

    This class does the same for the intake, across *all* the topic-partitions
    it reads, not only the two topics of one partition: the detect stage puts
    each model's values back in event-time order across partitions, holding
    back those of a partition that runs ahead until the others catch up, so a
    partition forwarded far ahead of the others (a backlog fetched a
    megabyte of one partition at a time) would fill that buffer. Records are
    released smallest timestamp first while every topic-partition has some
    buffered; one with none holds the others back unless it is *caught up*
    (nothing more to read now, or not this consumer's) or has been empty for
    ``max_idle_s``.

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

    def release(self, caught_up: Callable[[str, int], bool | None],
                assigned: Iterable[tuple[str, int]] = ()) -> dict[int, list[SourceRecord]]:
        """The records that can go now, by partition, in timestamp order across every topic-partition.

        ``caught_up(topic, partition)``: True if nothing more is waiting to be
        read, False if records are known to wait, None if unknown.
        ``assigned``: the topic-partitions read, including those nothing was
        buffered for yet (each partition's topics count in any case).
        """
        now = self.clock()
        keys = set(assigned) | {key for key, buffer in self._buffers.items() if buffer}
        keys |= {(topic, partition) for _, partition in list(keys) for topic in self.topics}
        buffers = {key: self._buffers[key] for key in keys}
        # ties: the topics' order (predictions before feedback), then the partition
        rank = {key: (self.topics.index(key[0]) if key[0] in self.topics else len(self.topics), key[1]) for key in keys}
        heads = [(_time(buffer[0]), rank[key], key) for key, buffer in buffers.items() if buffer]
        heapq.heapify(heads)
        blocked = {key for key, buffer in buffers.items() if not buffer and not self._may_pass(*key, now, caught_up)}
        released: dict[int, list[SourceRecord]] = defaultdict(list)
        while heads and not blocked:
            _, _, key = heapq.heappop(heads)
            buffer = buffers[key]
            record = buffer.popleft()
            released[key[1]].append(record)
            self._released_next[key] = record[1] + 1
            if buffer:
                heapq.heappush(heads, (_time(buffer[0]), rank[key], key))
            else:  # this topic-partition ran dry: it holds the others back from now on, unless caught up
                self._empty_since[key] = now
                if not self._may_pass(*key, now, caught_up):
                    blocked.add(key)
        return dict(released)

    def _may_pass(self, topic: str, partition: int, now: float,
                  caught_up: Callable[[str, int], bool | None]) -> bool:
        """Whether an empty topic-partition lets the others go: it is caught up, or nobody knows whether more
        is waiting and it has been empty for ``max_idle_s``. One known to have records waiting (not fetched yet,
        as at start-up) never does: the others would run ahead of it."""
        since = self._empty_since.setdefault((topic, partition), now)
        state = caught_up(topic, partition)
        return now - since >= self.max_idle_s if state is None else state

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


def _time(record: SourceRecord) -> int:
    return record[2] if record[2] is not None else -1


@dataclass
class CycleResult:
    """What one :meth:`Intake.cycle` did: records read, batches sent, and whether the read was full (a backlog)."""

    records: int = 0
    batches: int = 0
    full: bool = False
    commit_failed: bool = False
    waited_s: float = 0.0  # waiting for the broker's acknowledgements (more than MAX_CYCLES_IN_FLIGHT unacknowledged)


@dataclass
class Forwarded:
    """One cycle's forwarded batches until the broker acknowledged them all, and the input offsets they cover."""

    offsets: dict[tuple[str, int], int]
    pending: int = 0  # batches not acknowledged yet
    failures: list[str] = field(default_factory=list)

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        self.pending -= 1
        if error is not None:
            self.failures.append(str(error))


class Intake:
    """Batch consumer of the input topics that forwards per-partition :class:`IntakeBatch` messages.

    With a ``normalizer`` it forwards what the normalizer made of the records
    (canonical events and dead letters: the ingest agent then only joins,
    detects and indexes); without one, the raw records.

    Lifecycle: :meth:`start` (connects, subscribes), :meth:`cycle` repeatedly
    (one read → send; commit the earlier cycles the broker acknowledged),
    :meth:`close` (waits for the acknowledgements, commits, leaves). A cycle
    does not wait for its own batches' acknowledgements: up to
    :data:`MAX_CYCLES_IN_FLIGHT` cycles are on their way while the next ones
    are read and normalized (waiting for each cycle's acks and a synchronous
    commit left the intake idle half the time through a backlog). Offsets are
    committed only once every batch of their cycle and of the cycles before
    it was acknowledged. The consumer group is ``<app id>-intake``: several
    workers share the input partitions, each forwarding what it reads to the
    same partition number of the intake topic. A rebalance can only happen
    inside ``consume()``; before partitions are revoked, the intake waits for
    the acknowledgements and commits.

    Example:
        >>> # intake = Intake(settings); intake.start()
        >>> # while running: intake.cycle()
        >>> # intake.close()
    """

    def __init__(self, settings: Settings, *, max_records: int | None = None, within_s: float | None = None,
                 max_bytes: int = MAX_BATCH_BYTES, normalizer: Normalizer | None = None) -> None:
        self.settings = settings
        self.normalizer = normalizer  # None: forward raw records, for the ingest agent to normalize
        self.sources = [settings.predictions_topic, settings.feedback_topic]
        self.target = intake_topic(settings)
        self.max_records = max_records or settings.batch_size
        self.within_s = settings.intake_within_s if within_s is None else within_s
        self.max_bytes = max_bytes
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._in_flight: deque[Forwarded] = deque()  # cycles not yet committed, oldest first
        self._commit_failed = False
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
            # ask for small fetches per partition (~300 prediction events), so that a backlog is read from every
            # partition at once rather than a megabyte of one partition at a time: the detect stage holds values
            # back until every partition's clock has passed them, and a partition far ahead fills that buffer
            "max.partition.fetch.bytes": 64 * 1024,
        }
        conf["on_commit"] = self._committed
        self.consumer = Consumer(conf, logger=log)
        self.producer = Producer(self.settings.kafka_client_config() | {
            "acks": "all", "linger.ms": 2, "message.max.bytes": max(1_000_000, self.max_bytes + 100_000)}, logger=log)
        self.consumer.subscribe(self.sources, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned_tps.update((tp.topic, tp.partition) for tp in partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # what was forwarded is committed before the partitions go (if the broker acknowledged it in time; if not,
        # the next owner forwards it again and the stages drop the repeats by source offset); buffered records are
        # dropped, and the partition's next owner reads them again from the committed offset.
        try:
            self._settle(keep=0, stopping=lambda: False, deadline_s=10.0, synchronous=True)
        except IntakeError as exc:
            log.warning("intake: before a rebalance: %s; those records will be forwarded again", exc)
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

    def _caught_up(self, topic: str, partition: int) -> bool | None:
        """Whether a topic-partition has nothing more to read now (or is not this consumer's): True; records
        wait on the broker: False; unknown: None."""
        assert self.consumer is not None
        if (topic, partition) not in self._assigned_tps:
            return True
        tp = TopicPartition(topic, partition)
        _, high = self.consumer.get_watermark_offsets(tp, cached=True)
        if high < 0:  # nothing fetched yet: ask the broker (once; later fetches keep the cached value current)
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            except KafkaException as exc:
                log.debug("intake: watermark of %s[%d] unknown: %s", topic, partition, exc)
                return None
        position = self._consumed_next.get((topic, partition))
        try:
            if position is None:
                (current,) = self.consumer.position([tp])
                position = current.offset
            if position < 0:  # no position yet: from the committed offset, or the start
                committed = self.consumer.committed([tp], timeout=1.0)[0].offset
                position = committed if committed >= 0 else self.consumer.get_watermark_offsets(tp, timeout=1.0)[0]
        except KafkaException as exc:
            log.debug("intake: position of %s[%d] unknown: %s", topic, partition, exc)
            return None
        if high < 0 or position < 0:
            return None
        return position >= high

    def cycle(self, stopping: Callable[[], bool] = lambda: False) -> CycleResult:
        """Read up to ``max_records`` records, forward what is aligned by partition, commit what was acknowledged.

        Waits only while more than :data:`MAX_CYCLES_IN_FLIGHT` cycles are
        unacknowledged. Raises :class:`IntakeError` if the broker refused a
        batch: nothing of that read is committed, so a restarted worker reads
        it again.
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
            released = self.aligner.release(self._caught_up, self._assigned_tps)
            self._pause_or_resume()
            if released:
                self._forward(released, result)
            started = time.perf_counter()
            self._settle(keep=MAX_CYCLES_IN_FLIGHT, stopping=stopping)
            result.waited_s = time.perf_counter() - started
            result.commit_failed, self._commit_failed = self._commit_failed, False
            return result

    def _forward(self, released: dict[int, list[SourceRecord]], result: CycleResult) -> None:
        """Send the released records as intake batches, each partition's to its own partition (not waiting)."""
        now_ms = int(time.time() * 1000)
        forwarded = Forwarded({})
        for partition, records in sorted(released.items()):
            if self.normalizer is not None:
                batches = normalized_batches(partition, records, self.normalizer, now_ms, self.max_bytes,
                                             self.max_records)
            else:
                batches = [IntakeBatch.from_records(partition, run)
                           for run in split_by_size(records, self.max_bytes, self.max_records)]
            for batch in batches:
                self._produce(batch.encode(), partition, forwarded)
            result.batches += len(batches)
            result.records += len(records)
        forwarded.offsets = self.aligner.commit_offsets()
        self._in_flight.append(forwarded)

    def _settle(self, keep: int, stopping: Callable[[], bool], deadline_s: float | None = None,
                synchronous: bool = False) -> None:
        """Commit the cycles the broker acknowledged, oldest first, waiting until at most ``keep`` are not.

        Raises :class:`IntakeError` if the broker refused a batch (nothing of
        that cycle or later is committed: the records are read again), or if
        ``deadline_s`` passed with more than ``keep`` cycles unacknowledged.
        """
        assert self.producer is not None
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        offsets: dict[tuple[str, int], int] = {}
        in_flight = self._in_flight
        self.producer.poll(0)  # serves the delivery callbacks
        while True:
            while in_flight and in_flight[0].pending == 0 and not in_flight[0].failures:
                offsets.update(in_flight.popleft().offsets)
            if (len(in_flight) <= keep or in_flight[0].failures or stopping()
                    or (deadline is not None and time.monotonic() > deadline)):
                break
            self.producer.poll(0.05)  # librdkafka retries until message.timeout.ms, then fails the batch
        if offsets:
            self._commit(offsets, synchronous)
        if in_flight and in_flight[0].failures:
            failures = in_flight[0].failures
            raise IntakeError(f"the broker did not take {len(failures)} intake batches: {failures[0]}")
        if len(in_flight) > keep:
            if stopping():
                log.warning("intake stopped before the broker acknowledged its last batches: they are read again")
            else:
                raise IntakeError(f"the broker did not acknowledge {sum(c.pending for c in in_flight)} intake "
                                  f"batches within {deadline_s:.0f} s")

    def _commit(self, offsets: dict[tuple[str, int], int], synchronous: bool) -> None:
        assert self.consumer is not None
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=not synchronous)
        except KafkaException as exc:
            self._committed(exc, [])

    def _committed(self, error: KafkaError | KafkaException | None, _partitions: list[TopicPartition]) -> None:
        """A commit's outcome (an asynchronous one's is served by ``consume()``). A refused commit is reported, not
        raised: e.g. a rebalance between the read and the commit; the records are forwarded already, so the
        partition's next reader forwards them again and the stages below drop the repeats by offset."""
        if error is not None:
            self._commit_failed = True
            log.warning("intake: committing after forwarding failed (%s); those records will be read again", error)

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

    def _produce(self, value: bytes, partition: int, forwarded: Forwarded) -> None:
        assert self.producer is not None
        while True:
            try:
                self.producer.produce(self.target, value=value, partition=partition, on_delivery=forwarded.delivered)
                forwarded.pending += 1
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)

    def _consume_error(self, message: Message) -> None:
        error = message.error()
        if error.fatal():
            raise IntakeError(f"fatal consumer error: {error}")
        log.warning("intake: consumer error (retried by the client): %s", error)

    def close(self, timeout_s: float = 10.0) -> None:
        """Commit what the broker acknowledged (waiting up to ``timeout_s``), leave the group, release the clients."""
        with self._lock:
            if self.consumer is not None and self.producer is not None and self._in_flight:
                try:
                    self._settle(keep=0, stopping=lambda: False, deadline_s=timeout_s, synchronous=True)
                except IntakeError as exc:
                    log.warning("intake: closing: %s; those records will be forwarded again", exc)
            if self.consumer is not None:
                try:
                    self.consumer.close()
                except KafkaException as exc:  # pragma: no cover - closing a consumer whose broker is gone
                    log.warning("intake: closing the consumer: %s", exc)
                self.consumer = None
            if self.producer is not None:
                self.producer.flush(5.0)
                self.producer = None


#: The intake process's name as ``ps`` shows it.
INTAKE_PROCESS_NAME = "dl-intake"

#: How much lower the intake process's CPU priority is than the worker's (``os.nice``).
INTAKE_NICENESS = 5


class IntakeProcess:
    """The intake (batch consumer and normalizer) in a child process of the worker.

    Decoding and validating events is the largest share of the worker's CPU
    time (``benchmarks/ingest_stages.py``); in a process of its own it runs on
    another core than the worker's event loop, and the two exchange nothing
    but Kafka messages. The child is started with ``spawn`` (the worker has
    threads and open sockets that must not be forked), stops when asked
    (:meth:`stop`), and also when its parent is gone (a worker killed with
    SIGKILL leaves no intake behind). Its counters (cycles, full reads,
    records, batches, refused commits) are shared memory, read with
    :meth:`poll`. A child that fails prints its traceback to the worker's
    stderr and exits; :attr:`exitcode` tells the worker.

    Example:
        >>> # intake = IntakeProcess(settings); intake.start()
        >>> # while intake.alive: result = intake.poll() ...
        >>> # intake.stop()
    """

    #: Shared counters: cycles, full reads, records, batches, refused commits, µs waited for acknowledgements.
    FIELDS = 6

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._counters = self._context.Array("q", self.FIELDS)
        self._seen = [0] * self.FIELDS
        self.process: Any = None

    def start(self) -> None:
        self.process = self._context.Process(target=run_intake, name="driftline-intake", daemon=True,
                                             args=(self.settings, self._stop, self._counters, os.getpid()))
        self.process.start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self.process is None else self.process.exitcode

    def poll(self) -> CycleResult | None:
        """What the child did since the last poll (None: no cycle ended); ``full`` if any read was full."""
        with self._counters.get_lock():
            now = list(self._counters)
        delta = [a - b for a, b in zip(now, self._seen)]
        self._seen = now
        if not delta[0]:
            return None
        return CycleResult(records=delta[2], batches=delta[3], full=delta[1] > 0, commit_failed=delta[4] > 0,
                           waited_s=delta[5] / 1e6)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the child to finish its cycle and leave the group; terminate it if it does not within ``timeout_s``."""
        self._stop.set()
        if self.process is None:
            return
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("intake process did not stop within %.0f s: terminating it", timeout_s)
            self.process.terminate()
            self.process.join(5.0)


def run_intake(settings: Settings, stop: Any, counters: Any, parent_pid: int) -> None:
    """The child's main: normalize and forward until ``stop`` is set or the parent is gone."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the worker stops us
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())  # so does SIGTERM: finish the cycle, leave
    # the intake only has to stay ahead of the worker, which it feeds through Kafka: where cores are short (a
    # local Elasticsearch on the same machine), the worker's event loop and the sink come first
    os.nice(INTAKE_NICENESS)
    name_this_process(INTAKE_PROCESS_NAME)

    def stopping() -> bool:
        return stop.is_set() or os.getppid() != parent_pid

    from driftline.streams.collector import tune_garbage_collector

    intake = Intake(settings, normalizer=Normalizer.from_settings(settings))
    intake.start()
    tune_garbage_collector()  # as in the worker: the default thresholds cost a third of the normalizing
    log.info("intake process started: reading %s", ", ".join(intake.sources))
    try:
        while not stopping():
            result = intake.cycle(stopping)
            with counters.get_lock():
                counters[0] += 1
                counters[1] += int(result.full)
                counters[2] += result.records
                counters[3] += result.batches
                counters[4] += int(result.commit_failed)
                counters[5] += int(result.waited_s * 1e6)
    finally:
        intake.close()


class IntakeService(Service):
    """Runs the intake for the Faust worker: in a child process (``DRIFTLINE_INTAKE_PROCESS``, the default)
    or, on a thread of the worker, its blocking calls one cycle at a time.

    ``on_cycle`` gets what the intake did on the event loop (the pipeline's
    backlog clock and counters). An intake that fails crashes the worker: a
    restart resumes from the committed offsets.
    """

    #: Seconds between two looks at the intake process's counters and health.
    POLL_S = 0.1

    def __init__(self, settings: Settings, on_cycle: Callable[[CycleResult], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.child = IntakeProcess(settings) if settings.intake_process else None
        self.intake = None if self.child else Intake(settings, normalizer=Normalizer.from_settings(settings))
        self.on_cycle = on_cycle or (lambda _result: None)
        self._stopping = False

    async def on_start(self) -> None:
        if self.child is not None:
            await asyncio.to_thread(self.child.start)
        else:
            assert self.intake is not None
            await asyncio.to_thread(self.intake.start)

    @Service.task
    async def _forward(self) -> None:
        if self.child is not None:
            await self._watch(self.child)
            return
        assert self.intake is not None
        while not self.should_stop and not self._stopping:
            try:
                result = await asyncio.to_thread(self.intake.cycle, lambda: self._stopping)
            except Exception as exc:  # noqa: BLE001 - crash the worker, say why
                await self.crash(exc)
                return
            self.on_cycle(result)

    async def _watch(self, child: IntakeProcess) -> None:
        while not self.should_stop and not self._stopping:
            await asyncio.sleep(self.POLL_S)
            result = child.poll()
            if result is not None:
                self.on_cycle(result)
            if not child.alive:
                await asyncio.sleep(2.0)  # a SIGTERM to the process group stops the child first: so may we
                if not self._stopping and not self.should_stop:
                    await self.crash(IntakeError(f"the intake process exited (code {child.exitcode}); "
                                                 "its traceback, if any, is in the worker's log"))
                return

    async def on_stop(self) -> None:
        self._stopping = True
        if self.child is not None:
            await asyncio.to_thread(self.child.stop)
        elif self.intake is not None:
            await asyncio.to_thread(self.intake.close)


__all__ = ["INTAKE_PROCESS_NAME", "CycleResult", "Intake", "IntakeBatch", "IntakeError", "IntakeProcess", "IntakeService",
           "MAX_BATCH_BYTES", "TimeAligner", "event_row", "intake_topic", "normalized_batches", "run_intake", "split_by_size"]
