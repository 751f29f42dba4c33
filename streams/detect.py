"""The detect stage's state for one model key: its detectors, alert cooldowns and input position.

The ingest stage sends *observation batches* to the detect stage, keyed by
model key (model, version and optionally one slice): each batch holds the
window records (:mod:`.windows`) of one source partition's predictions and
joined outcomes, each with its event time and the topic and offset of the
record it came from, plus that partition's clocks. The values of the
monitored streams — ``error`` (concept drift), ``score`` (prediction drift),
``latency`` (system) and ``feature.<name>`` (data drift) — are read from the
records (:func:`record_values`), so each value crosses the topic once; a batch
may also carry values of its own (``observations``).

Before the detectors, values are put back in event-time order (see
:class:`DetectorBank`): the alarms then depend only on the input, not on the
order the worker happened to fetch partitions in, or on restarts.

A :class:`DetectorBank` is everything the detect stage keeps for one model
key. It is a plain picklable object (River detectors inside), written to a
changelogged table once per key per batch. It records, per source topic and
partition, the last source offset it received: values replayed after a crash
(at-least-once delivery) are recognized and skipped, so no detector is
updated twice with the same values.

Example:
    >>> bank = DetectorBank(ModelKey("fraud", "v1"), partitions=1)
    >>> batch = ObservationBatch(ModelKey("fraud", "v1"), 0, {"j": 3_000},
    ...                          [("error", 0.0, 1_000, "feedback", 7), ("error", 1.0, 2_000, "feedback", 8)])
    >>> bank.apply(batch), bank.positions["error"]
    ([], 2)
    >>> bank.apply(batch), bank.replayed   # a redelivered batch changes nothing
    ([], 2)
"""

from __future__ import annotations

import base64
import heapq
import json
import logging
import pickle
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from driftline.baselines.model import Baseline
from driftline.streams.alerts import DriftEvent
from driftline.streams.detectors import DetectorSpec, StreamDetector, build_detector, default_spec
from driftline.streams.keys import ModelKey
from driftline.streams.windows import WindowSet

log = logging.getLogger(__name__)

#: Largest checkpoint of one bank (encoded) before its windows' accumulators are dropped. The table writes a
#: longer checkpoint in parts below Kafka's message limit (:func:`~.tables.put_text`); this bounds the cost of
#: writing it once per batch. Values held back for a lagging partition are never dropped.
MAX_STATE_BYTES = 4_000_000

#: Most values a bank holds back for the event-time order, a last resort: past it the oldest values are
#: released without waiting (logged). The intake keeps the partitions it reads in step (:class:`~.intake.TimeAligner`),
#: so a bank holds this much only while a partition read by another worker lags far behind. A long buffer costs
#: memory (~100 bytes a value) and checkpoint time (~16 bytes a value, written in parts: :func:`~.tables.put_text`).
MAX_PENDING_VALUES = 1_000_000

#: Which detector stream kind (and drift kind of the alert) a stream name belongs to.
STREAM_KINDS: dict[str, tuple[str, str]] = {
    "error": ("concept", "concept"),
    "score": ("prediction", "prediction"),
    "latency": ("system", "latency"),
}
FEATURE_PREFIX = "feature."


def stream_kinds(stream: str) -> tuple[str, str]:
    """(detector stream kind, drift kind) of a stream name.

    Example:
        >>> stream_kinds("feature.amount"), stream_kinds("error")
        (('data', 'data'), ('concept', 'concept'))
    """
    if stream.startswith(FEATURE_PREFIX):
        return ("data", "data")
    try:
        return STREAM_KINDS[stream]
    except KeyError:
        raise ValueError(f"unknown stream {stream!r}") from None


#: The clock a stream is ordered by: prediction-derived values by the
#: prediction's event time ("p"); errors by the time the outcome was known,
#: the later of prediction and label time ("j", the join's clock).
PREDICTION_CLOCK, JOIN_CLOCK = "p", "j"


def clock_of(stream: str) -> str:
    """Which clock orders a stream.

    Example:
        >>> clock_of("error"), clock_of("feature.amount")
        ('j', 'p')
    """
    return JOIN_CLOCK if stream == "error" else PREDICTION_CLOCK


#: One value: (stream, value, event time ms, source topic, source offset).
Observation = tuple[str, float, int, str, int]
#: One record for the windows (:mod:`.windows`): (kind ``p``/``o``, fields, event time ms, source topic, source offset).
WindowRecord = tuple[str, dict[str, Any], int, str, int]
#: Window record kinds: a prediction, a joined outcome (same values as :data:`.windows.PREDICTION` / ``OUTCOME``).
PREDICTION_RECORD, OUTCOME_RECORD = "p", "o"


def record_values(kind: str, record: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The (stream, value) pairs a window record feeds the detectors, and the clock that orders them.

    A prediction (``p``) gives its score, latency and numeric features, on the
    prediction clock; a joined outcome (``o``) its error, on the join clock.

    Example:
        >>> record_values("p", {"prediction": {"score": 0.8}, "latency_ms": 12.0, "features": {"numeric": {"x": 3.0}}})
        [('score', 0.8), ('latency', 12.0), ('feature.x', 3.0)]
        >>> record_values("o", {"outcome": {"error": 1.0}})
        [('error', 1.0)]
    """
    if kind == PREDICTION_RECORD:
        prediction = record.get("prediction") or {}
        features = record.get("features") or {}
        return list(observation_streams(None, prediction.get("score"), record.get("latency_ms"),
                                        features.get("numeric") or {}))
    error = (record.get("outcome") or {}).get("error")
    return [] if error is None else [("error", float(error))]


@dataclass(slots=True)
class ObservationBatch:
    """Values for one model key from one source partition, with that partition's clocks.

    ``marks`` holds, per clock, the latest event time the ingest stage had seen
    in ``source_partition`` when it sent the batch: every later value from that
    partition on that clock is at least as recent (for in-order input).
    The detectors get the values of ``records`` (:func:`record_values`) and
    those of ``observations``.
    """

    key: ModelKey
    source_partition: int
    marks: dict[str, int]
    observations: list[Observation]
    records: list[WindowRecord] = field(default_factory=list)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "model": self.key.model,
            "version": self.key.version,
            "slice": dict(self.key.slice),
            "partition": self.source_partition,
            "marks": self.marks,
        }
        if self.observations:
            body["obs"] = self.observations
        if self.records:
            body["rec"] = self.records
        return orjson.dumps(body)  # ~3x faster than json both ways: this is per event on the hot path

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> "ObservationBatch":
        obj = data if isinstance(data, Mapping) else orjson.loads(data)
        # written by to_json only (an internal topic): orjson gives the types back, floats as floats, so the
        # rows become tuples as they are — per-field conversions cost a third of the detect stage's decoding
        return cls(
            ModelKey(obj["model"], obj["version"], obj.get("slice") or {}),
            int(obj["partition"]),
            {str(k): int(v) for k, v in obj["marks"].items()},
            list(map(tuple, obj.get("obs") or ())),
            list(map(tuple, obj.get("rec") or ())),
        )


def split_batch(batch: ObservationBatch, max_records: int = 250) -> list[ObservationBatch]:
    """One observation batch as several, each with the values of at most ``max_records`` source records.

    Each message must stay below Kafka's size limit, whatever the batch size
    and the number of features. The parts keep what the replay check and the
    event-time order rely on: all values of one source record travel in one
    part; per source, offsets grow from part to part; only the last part
    carries the partition's clock marks (earlier parts' values are older).

    Example:
        >>> key = ModelKey("m", "1")
        >>> obs = [("score", 0.5, 10 * i, "p", i) for i in range(5)]
        >>> parts = split_batch(ObservationBatch(key, 0, {"p": 50}, obs), max_records=2)
        >>> [[o[4] for o in part.observations] for part in parts], [part.marks for part in parts]
        ([[0, 1], [2, 3], [4]], [{}, {}, {'p': 50}])
    """
    if len(batch.observations) + len(batch.records) <= max_records:  # no more sources than rows
        return [batch]
    sources = sorted({(o[3], o[4]) for o in batch.observations} | {(r[3], r[4]) for r in batch.records})
    if len(sources) <= max_records:
        return [batch]
    parts: list[ObservationBatch] = []
    for start in range(0, len(sources), max_records):
        chosen = set(sources[start:start + max_records])
        last = start + max_records >= len(sources)
        parts.append(ObservationBatch(
            batch.key, batch.source_partition, dict(batch.marks) if last else {},
            [o for o in batch.observations if (o[3], o[4]) in chosen],
            [r for r in batch.records if (r[3], r[4]) in chosen],
        ))
    return parts


class DetectorBank:
    """Detectors, reorder buffer, cooldown state and input positions of one :class:`ModelKey`.

    Values from the source partitions arrive interleaved in whatever order the
    worker happened to fetch them. The bank puts them back in event-time order
    before any detector sees them: a value waits in a buffer until every source
    partition's mark (on the value's clock) has passed its time, and then values
    are released sorted by (time, partition, topic, offset). The sequence each
    detector sees therefore depends only on the input, not on fetch timing or
    restarts — the condition for a restarted worker to raise exactly the alarms
    an uninterrupted one would. A partition silent for ``idle_ms`` of wall time
    stops holding values back (then, and for values later than the marks,
    order is arrival order).

    Parameters
    ----------
    key
        The model key the bank watches.
    partitions
        Number of source partitions (the input topics').
    specs
        Detector spec per stream kind (``concept``, ``data``, ``prediction``,
        ``system``); missing kinds use :func:`default_spec`.
    idle_ms
        Wall-clock time after which a silent partition no longer holds values back.
    windows
        The key's tumbling windows (:mod:`.windows`); None keeps none. Records
        are de-duplicated like values, then added at once (a window is a sum:
        order does not matter); windows close when the prediction clock's
        watermark passes them.
    """

    def __init__(self, key: ModelKey, partitions: int = 1, specs: Mapping[str, DetectorSpec] | None = None,
                 idle_ms: int = 30_000, windows: WindowSet | None = None) -> None:
        self.key = key
        self.partitions = partitions
        self.specs = dict(specs or {})
        self.idle_ms = idle_ms
        self.detectors: dict[str, StreamDetector] = {}
        self.received: dict[str, int] = {}  # "topic:partition" -> last source offset received
        self.alert_state: dict[str, Any] = {}  # AlertPolicy's store, co-located with the key
        self.marks: dict[str, dict[int, int]] = {PREDICTION_CLOCK: {}, JOIN_CLOCK: {}}
        self.heard_ms: dict[int, int] = {}  # wall time a partition last sent a batch
        self.heard_join_ms: dict[int, int] = {}  # wall time a partition last sent a join-clock mark
        self.created_ms: int | None = None
        self.session: str | None = None  # the worker process that last used the bank
        # heaps of (time, partition, topic, offset, index in batch, ((stream, value), ...)): one entry per source record
        self.pending: dict[str, list[tuple[int, int, str, int, int, tuple[tuple[str, float], ...]]]] = {
            PREDICTION_CLOCK: [], JOIN_CLOCK: []}
        self.replayed = 0  # observations skipped as already received
        self.pending_values = 0  # values in ``pending`` (entries hold all values of one source record)
        self.forced = 0  # values released before their partitions' clocks passed them (MAX_PENDING_VALUES)
        self.windows = windows
        self.outbox: list[tuple[str, dict[str, Any]]] = []  # window documents to index (see take_documents)

    @property
    def positions(self) -> dict[str, int]:
        """Values applied so far, per stream."""
        return {stream: det.position for stream, det in self.detectors.items()}

    @property
    def waiting(self) -> int:
        """Source records whose values were received but not yet released to the detectors."""
        return sum(len(heap) for heap in self.pending.values())

    @property
    def holding(self) -> bool:
        """Whether the bank holds values back or has open windows: something a silent input must still release."""
        windows = getattr(self, "windows", None)
        return self.waiting > 0 or bool(windows is not None and windows.open)

    def detector(self, stream: str) -> StreamDetector:
        det = self.detectors.get(stream)
        if det is None:
            kind, _ = stream_kinds(stream)
            det = self.detectors[stream] = build_detector(self.specs.get(kind) or default_spec(kind))  # type: ignore[arg-type]
        return det

    def resume(self, session: str, now_ms: int) -> None:
        """Start a new worker session: the time the worker was down does not count as partitions being silent.

        Without this, a restarted worker would find every partition "idle" and
        release values out of order, and raise other alarms than an
        uninterrupted run.
        """
        if getattr(self, "session", None) != session:
            self.session = session
            self.heard_ms = {p: now_ms for p in self.heard_ms}
            self.heard_join_ms = {p: now_ms for p in getattr(self, "heard_join_ms", self.heard_ms)}
            if self.created_ms is not None:
                self.created_ms = now_ms

    def apply(self, batch: ObservationBatch, now_ms: int = 0, baseline: Baseline | None = None) -> list[DriftEvent]:
        """Receive a batch (skipping values already received) and release what is in order.

        Returns the drift events raised by the values released and by the
        windows closed; ``baseline`` is the model version's, if it has one.
        """
        partition = batch.source_partition
        if self.created_ms is None:
            self.created_ms = now_ms
        # one record's values all travel in one batch: compare with what was received before it
        before = dict(self.received)
        pending, push = self.pending, heapq.heappush
        held = self._pending_values()
        for index, (stream, value, event_ms, topic, offset) in enumerate(batch.observations):
            if not self._fresh(topic, partition, offset, before):
                continue
            push(pending[clock_of(stream)], (event_ms, partition, topic, offset, index, ((stream, value),)))
            held += 1
        windows = getattr(self, "windows", None)
        index = len(batch.observations)
        for kind, record, event_ms, topic, offset in batch.records:
            index += 1
            if not self._fresh(topic, partition, offset, before):
                continue
            if windows is not None:
                windows.add(kind, record, event_ms, baseline)
            values = record_values(kind, record)
            if values:
                clock = PREDICTION_CLOCK if kind == PREDICTION_RECORD else JOIN_CLOCK
                push(pending[clock], (event_ms, partition, topic, offset, index, tuple(values)))
                held += len(values)
        self.pending_values = held
        for clock, mark in batch.marks.items():
            marks = self.marks.setdefault(clock, {})
            marks[partition] = max(mark, marks.get(partition, mark))
        self.heard_ms[partition] = max(now_ms, self.heard_ms.get(partition, now_ms))
        if JOIN_CLOCK in batch.marks:
            heard = self._heard(JOIN_CLOCK)
            heard[partition] = max(now_ms, heard.get(partition, now_ms))
        return self.release(now_ms, baseline)

    def _fresh(self, topic: str, partition: int, offset: int, before: Mapping[str, int]) -> bool:
        """Whether a value or record from this source offset is new (not received before this batch); notes it."""
        source = f"{topic}:{partition}"
        if offset <= before.get(source, -1):
            self.replayed += 1
            return False
        if offset > self.received.get(source, -1):
            self.received[source] = offset
        return True

    def watermark(self, clock: str, now_ms: int) -> float:
        """Values on ``clock`` older than this are in order and can be released.

        A partition silent for ``idle_ms`` stops holding values back. On the
        join clock, silent means no mark: the ingest stage sends one only once
        a partition has seen both predictions and labels (a partition whose
        labels never come must not hold back the errors of the others).
        """
        marks = self.marks.get(clock, {})
        heard = self._heard(clock)
        since = now_ms if self.created_ms is None else self.created_ms
        blocking = [
            marks.get(p, -1)
            for p in range(self.partitions)
            if now_ms - heard.get(p, since) < self.idle_ms  # a silent partition stops blocking
        ]
        return min(blocking) if blocking else float("inf")

    def _heard(self, clock: str) -> dict[int, int]:
        if clock != JOIN_CLOCK:
            return self.heard_ms
        heard = getattr(self, "heard_join_ms", None)
        if heard is None:  # a checkpoint from before join-clock silence: as heard as the partition
            heard = self.heard_join_ms = dict(self.heard_ms)
        return heard

    def _pending_values(self) -> int:
        held = getattr(self, "pending_values", None)
        if held is None:  # a checkpoint from before the count: one value per entry
            held = self.pending_values = self.waiting
        return held

    def release(self, now_ms: int = 0, baseline: Baseline | None = None) -> list[DriftEvent]:
        """Feed the detectors every buffered value older than its clock's watermark, in order; close passed windows.

        Past :data:`MAX_PENDING_VALUES` held back, the oldest go too (down to
        three quarters of the bound): order then falls back to arrival order
        for the values of the partitions that lag, as for a silent partition.
        """
        events: list[DriftEvent] = []
        held = before = self._pending_values()
        excess = held > MAX_PENDING_VALUES
        keep = MAX_PENDING_VALUES * 3 // 4 if excess else held
        for clock, heap in self.pending.items():
            watermark = self.watermark(clock, now_ms)
            ready: dict[str, list[tuple[float, int]]] = {}
            while heap and (heap[0][0] < watermark or held > keep):
                entry = heapq.heappop(heap)
                event_ms, values = entry[0], entry[5]
                if isinstance(values, str):  # one value per entry, as checkpoints before record entries hold them
                    values = ((values, entry[6]),)
                if event_ms >= watermark:
                    self.forced = getattr(self, "forced", 0) + len(values)
                held -= len(values)
                for stream, value in values:
                    ready.setdefault(stream, []).append((value, event_ms))
            for stream, values in ready.items():
                det = self.detector(stream)
                start = det.position
                for signal in det.update_many([v for v, _ in values], start_position=start):
                    events.append(self._drift_event(stream, signal, values[signal.position - start][1]))
        self.pending_values = held
        if excess:
            log.warning("%s: %d values were held back for the event-time order, more than %d: released the oldest "
                        "(%d so far) without waiting for the partitions that lag", self.key.encode(), before,
                        MAX_PENDING_VALUES, self.forced)
        windows = getattr(self, "windows", None)
        if windows is not None:
            closed = windows.close(self.watermark(PREDICTION_CLOCK, now_ms), baseline)
            self.outbox = getattr(self, "outbox", [])
            self.outbox += closed.documents
            events += closed.drift
        return events

    def take_documents(self) -> list[tuple[str, dict[str, Any]]]:
        """The window documents since the last call (``(stream, document)``, id in ``event.id``): the closed
        windows' final ones, then the open windows changed since (built now, once per call, not per batch)."""
        out, self.outbox = getattr(self, "outbox", []), []
        windows = getattr(self, "windows", None)
        return out + (windows.documents() if windows is not None else [])

    def _drift_event(self, stream: str, signal: Any, event_ms: int) -> DriftEvent:
        _, drift_kind = stream_kinds(stream)
        feature = stream[len(FEATURE_PREFIX):] if stream.startswith(FEATURE_PREFIX) else None
        return DriftEvent(
            detector=signal.detector,
            kind=drift_kind,
            stream=stream,
            feature=feature,
            model_name=self.key.model,
            model_version=self.key.version,
            slice=dict(self.key.slice),
            position=signal.position,
            event_time_ms=event_ms,
            statistic=signal.statistic,
            threshold=signal.threshold,
            p_value=signal.p_value,
            window_size=signal.window_size,
        )

    def dumps(self) -> str:
        """The bank as text for a table: pickled (River detectors are plain picklable objects), zlib, base64.

        Tables hold it as a JSON string, which every Faust store keeps as is;
        a text too long for one changelog record is written in parts
        (:func:`~.tables.put_text`). Window samples make most of a
        bank's size and compress about 2.3 times (level 1: ~3 ms for 300 kB).
        A bank still above :data:`MAX_STATE_BYTES` drops the previous window's
        accumulators first (no window-over-window comparison for the next
        window), then the open windows' baseline accumulators (their metrics
        stay), and says so in the log, rather than stop the worker.
        Load checkpoints only from driftline's own changelog topics (pickle).
        """
        text = self._encode()
        windows = getattr(self, "windows", None)
        if len(text) > MAX_STATE_BYTES and windows is not None:
            log.error("state of %s is %d bytes, above %d: dropping the previous window's accumulators",
                      self.key.encode(), len(text), MAX_STATE_BYTES)
            windows.previous = None
            text = self._encode()
            if len(text) > MAX_STATE_BYTES:
                log.error("state of %s is still %d bytes: dropping the open windows' baseline accumulators",
                          self.key.encode(), len(text))
                for window in windows.open.values():
                    window.serving, window._serving_state = None, None
                text = self._encode()
        return text

    def _encode(self) -> str:
        packed = zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL), 1)
        return base64.b64encode(packed).decode("ascii")

    @staticmethod
    def loads(data: str | bytes) -> "DetectorBank":
        raw = base64.b64decode(data)
        try:
            raw = zlib.decompress(raw)
        except zlib.error:  # written before banks were compressed
            pass
        bank = pickle.loads(raw)
        if not isinstance(bank, DetectorBank):
            raise TypeError(f"not a DetectorBank: {type(bank).__name__}")
        return bank


def observation_streams(outcome_error: float | None, score: float | None, latency: float | None,
                        numeric_features: Mapping[str, float]) -> Iterable[tuple[str, float]]:
    """The (stream, value) pairs one event contributes (errors come from joined outcomes).

    Example:
        >>> list(observation_streams(None, 0.8, 12.0, {"amount": 3.0}))
        [('score', 0.8), ('latency', 12.0), ('feature.amount', 3.0)]
    """
    if outcome_error is not None:
        yield ("error", float(outcome_error))
    if score is not None:
        yield ("score", float(score))
    if latency is not None:
        yield ("latency", float(latency))
    for name, value in numeric_features.items():
        yield (FEATURE_PREFIX + name, float(value))

