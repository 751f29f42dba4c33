"""Join ground-truth labels to predictions by request id, in event time.

Faust's stream-stream joins are unimplemented stubs, so the join is a small
state machine over a table-like store: any mutable mapping (a ``dict`` in
tests, a Faust ``Table(use_partitioner=True)`` in the worker). Predictions and
feedback are co-partitioned by request id, so one partition's store holds both
sides of every request it sees. The classes here do no I/O and know nothing of
Kafka or Faust: the streaming code hands them batches and indexes the result.

- A prediction waits for its label, and a label that arrives first waits for
  its prediction, for ``window_ms`` of *event time* (default 7 days). The clock
  is a watermark: the largest ``timestamp_ms`` seen, kept in the store. A pair
  joins only if its label delay is within ``[-window_ms, window_ms]``; a side
  more than a window older than the pending one is late, and a pending side
  more than a window older than the incoming one expires there and then.
- Each request id gives at most one outcome. Repeated predictions or labels
  are counted and dropped (the first one seen wins). After a join a small
  tombstone stays until the window has passed, so redelivered records are
  still recognized: replaying the input never gives a second outcome.
- Entries older than the window are removed and reported as expired: a
  prediction that never got a label (it counts against label coverage) or an
  orphan label. An expiry index of coarse time buckets (default one hour of
  event time) finds them without iterating over the store.
- Records of one batch are joined first, then the batch advances the
  watermark and expires what is due. Results depend on the records and their
  event times only, never on the wall clock.

Store layout (every value is a small JSON-compatible ``dict`` or ``list``):

==============================  ==========================================================
key                             value
==============================  ==========================================================
``<request id>``                pending prediction ``{"s": "p", "t": ms, "p": <prediction>}``,
                                pending label ``{"s": "l", "t": ms, "f": <feedback object>[, "m": model]}``,
                                or tombstone ``{"s": "j", "t": ms, "m": [name, version]}``
``~join/[<ns>/]clock``          ``{"wm": watermark ms, "w": bucket_ms, "b": [live buckets, sorted],
                                "pm": latest prediction ms, "lm": latest label ms}``
``~join/[<ns>/]b/<bucket>``     ``{"n": number of chunks}`` of one bucket of the expiry index
``~join/[<ns>/]b/<bucket>/<i>`` chunk ``i``: the request ids one batch indexed in that bucket
==============================  ==========================================================

``t`` is the entry's expiry base: the prediction's or the label's event time,
or the later of the two for a tombstone. Bucket ``b`` holds ids whose ``t`` is
in ``[b * bucket_ms, (b + 1) * bucket_ms)``. Each batch writes one new chunk
and the chunk count per bucket it touches, so a bucket is never rewritten as
it grows. ``<ns>`` is the joiner's namespace (say the partition number, when
one table serves several partitions, each with its own watermark). Request
ids starting with ``~join/`` are rejected. The clock lists the buckets that
hold ids, so expiry reads only those; there are at most
``window_ms / bucket_ms + 2`` of them (170 by default): keep that ratio
modest. ``bucket_ms`` cannot change for a store that already has a clock.

Example:
    >>> joiner = LabelJoiner({}, window_ms=DAY_MS)
    >>> prediction = {"request": {"id": "r-1"}, "model": {"name": "fraud", "version": "3"},
    ...               "@timestamp": "1970-01-01T00:00:01.000+00:00", "timestamp_ms": 1_000,
    ...               "prediction": {"label": "fraud", "score": 0.9}}
    >>> feedback = {"request": {"id": "r-1"}, "timestamp_ms": 61_000,
    ...             "feedback": {"labels": ["fraud"], "values": [], "source": "PROCESS_FEEDBACK"}}
    >>> result = joiner.join_batch([prediction], [])
    >>> result.outcomes, joiner.state_of("r-1")
    ([], 'prediction')
    >>> result = joiner.join_batch([], [feedback])
    >>> outcome = result.outcomes[0]
    >>> outcome.id, outcome.document["outcome"], outcome.document["feedback"]["delay_ms"]
    ('r-1', {'correct': True, 'error': 0.0, 'abs_error': 0.0}, 60000)
    >>> joiner.join_batch([prediction], [feedback]).total().duplicates
    2
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: How long a prediction waits for its label (and a label for its prediction).
DEFAULT_WINDOW_MS = 7 * DAY_MS
#: Width of one expiry-index bucket: expiry happens up to this much late.
DEFAULT_BUCKET_MS = HOUR_MS
#: Store keys of the join's own bookkeeping start with this; request ids may not.
RESERVED_PREFIX = "~join/"
#: Top-level prediction fields always kept in the store, whatever ``keep_fields`` says.
REQUIRED_FIELDS = frozenset({"request", "model", "@timestamp", "timestamp_ms", "prediction", "labels"})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PENDING_PREDICTION, _PENDING_LABEL, _JOINED = "p", "l", "j"
_STATE_NAMES: dict[str, Literal["prediction", "label", "joined"]] = {
    _PENDING_PREDICTION: "prediction",
    _PENDING_LABEL: "label",
    _JOINED: "joined",
}


class ModelKey(NamedTuple):
    """The model a counter belongs to; ``(None, None)`` when unknown.

    Labels know their model only once joined, or when the feedback names it
    (``model.name``, usually without a version).
    """

    name: str | None
    version: str | None


UNKNOWN_MODEL = ModelKey(None, None)


@dataclass(slots=True)
class JoinCounts:
    """Counters of one batch for one model version; :meth:`merge` aggregates them.

    ``late_*`` records are older than the join's horizon (their time bucket had
    already expired when they came): they are dropped, and are usually late
    duplicates. ``label_delay_ms_*`` describe label time minus prediction time
    of the joined pairs (negative when the label came first).

    Example:
        >>> total, other = JoinCounts(expired_predictions=1), JoinCounts(duplicate_labels=1)
        >>> total.add_delay(50); other.add_delay(-10)
        >>> total.merge(other).joined, total.duplicates, total.label_delay_ms_min, total.label_delay_ms_mean
        (2, 1, -10, 20.0)
    """

    joined: int = 0
    #: joined, but no error could be computed (no comparable label or value)
    unscored: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    late_predictions: int = 0
    late_labels: int = 0
    #: predictions whose label never came within the window
    expired_predictions: int = 0
    #: labels whose prediction never came within the window
    expired_labels: int = 0
    #: records without a usable request id or timestamp
    rejected: int = 0
    label_delay_ms_sum: int = 0
    label_delay_ms_min: int | None = None
    label_delay_ms_max: int | None = None

    @property
    def duplicates(self) -> int:
        """Repeated predictions and labels, together."""
        return self.duplicate_predictions + self.duplicate_labels

    @property
    def label_delay_ms_mean(self) -> float | None:
        """Mean label delay of the joined pairs, ``None`` when nothing was joined."""
        return self.label_delay_ms_sum / self.joined if self.joined else None

    def add_delay(self, delay_ms: int) -> None:
        """Count one join with its label delay."""
        self.joined += 1
        self.label_delay_ms_sum += delay_ms
        if self.label_delay_ms_min is None or delay_ms < self.label_delay_ms_min:
            self.label_delay_ms_min = delay_ms
        if self.label_delay_ms_max is None or delay_ms > self.label_delay_ms_max:
            self.label_delay_ms_max = delay_ms

    def merge(self, other: JoinCounts) -> JoinCounts:
        """Add ``other``'s counts to these; return ``self``."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "label_delay_ms_min":
                value = theirs if mine is None else mine if theirs is None else min(mine, theirs)
            elif f.name == "label_delay_ms_max":
                value = theirs if mine is None else mine if theirs is None else max(mine, theirs)
            else:
                value = mine + theirs
            setattr(self, f.name, value)
        return self


@dataclass(frozen=True, slots=True)
class Outcome:
    """A joined outcome document; its Elasticsearch id is the request id."""

    id: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Expired:
    """A pending entry whose window passed unmatched: the watermark moved past
    it, or its other side came more than a window later.

    ``kind`` is ``"prediction"`` (no label came: counts against label coverage)
    or ``"label"`` (an orphan label). ``document`` is the stored prediction, or
    the stored ``feedback`` object of the label.
    """

    kind: Literal["prediction", "label"]
    request_id: str
    timestamp_ms: int
    model: ModelKey
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the join cannot use (for the dead-letter topic), with the reason."""

    kind: Literal["prediction", "label"]
    record: Mapping[str, Any]
    reason: str


@dataclass(slots=True)
class JoinResult:
    """What one batch produced: outcomes, expired entries, rejects and counters."""

    outcomes: list[Outcome] = field(default_factory=list)
    expired: list[Expired] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    counts: dict[ModelKey, JoinCounts] = field(default_factory=dict)
    #: the watermark after the batch (``None`` until a record has been seen)
    watermark_ms: int | None = None
    #: no outcome still to come from this store becomes known earlier than this (see :meth:`JoinClock.known_ms`)
    known_ms: int | None = None

    def count(self, model: ModelKey) -> JoinCounts:
        """The counters of ``model``, created empty on first use."""
        counts = self.counts.get(model)
        if counts is None:
            counts = self.counts[model] = JoinCounts()
        return counts

    def total(self) -> JoinCounts:
        """All models' counters added up."""
        total = JoinCounts()
        for counts in self.counts.values():
            total.merge(counts)
        return total


# --- outcome documents --------------------------------------------------------


def score_outcome(predicted: Mapping[str, Any], feedback: Mapping[str, Any]) -> dict[str, Any]:
    """The ``outcome`` object of a prediction (its ``prediction`` object) given its ``feedback`` object.

    Classification, when the feedback has labels and the prediction a label.
    The predicted labels are those of ``prediction.outputs`` (one entry per
    predicted output, as the normalize stage writes them), else
    ``prediction.label`` (a string or a list); the class distribution in
    ``prediction.scores`` is not a prediction:

    - one predicted label: correct if it is among the true labels, ``error``
      is 0 or 1 (misclassification);
    - several predicted labels (multi-label): correct on an exact set match,
      ``error`` is ``1 - Jaccard(predicted, true)`` (0 exact, 1 disjoint).

    Regression, when the feedback has values and the prediction a number:
    ``error = prediction.value - feedback.values[0]`` (signed), ``abs_error``
    its magnitude; there is no ``correct``. Anything else (nothing comparable,
    non-finite numbers) gives ``{}``: the outcome is unscored.

    Example:
        >>> score_outcome({"label": "cat"}, {"labels": ["dog"]})
        {'correct': False, 'error': 1.0, 'abs_error': 1.0}
        >>> score_outcome({"label": "cat", "outputs": [{"label": "cat"}, {"label": "dog"}]}, {"labels": ["dog", "bird"]})
        {'correct': False, 'error': 0.6666666666666667, 'abs_error': 0.6666666666666667}
        >>> score_outcome({"value": 2.5}, {"values": [3.0]})
        {'error': -0.5, 'abs_error': 0.5}
    """
    truth = {x for x in _as_list(feedback.get("labels")) if isinstance(x, str)}
    outputs = predicted.get("outputs")
    if isinstance(outputs, list) and outputs:
        guessed = {o.get("label") for o in outputs
                   if (type(o) is dict or isinstance(o, Mapping)) and isinstance(o.get("label"), str)}
    else:
        guessed = {x for x in _as_list(predicted.get("label")) if isinstance(x, str)}
    if truth and guessed:
        if len(guessed) == 1:
            correct = not guessed.isdisjoint(truth)
            error = 0.0 if correct else 1.0
        else:
            correct = guessed == truth
            error = 1.0 - len(guessed & truth) / len(guessed | truth)
        return {"correct": correct, "error": error, "abs_error": error}
    true_values = _as_list(feedback.get("values"))
    values = _as_list(predicted.get("value"))
    if true_values and values and _is_finite_number(values[0]) and _is_finite_number(true_values[0]):
        error = float(values[0]) - float(true_values[0])
        if math.isfinite(error):
            return {"error": error, "abs_error": abs(error)}
    return {}


def build_outcome(
    prediction: Mapping[str, Any], feedback: Mapping[str, Any], *, prediction_ms: int, label_ms: int
) -> dict[str, Any]:
    """The joined outcome document: the prediction's fields plus ``feedback.*`` and ``outcome.*``.

    ``feedback`` is the feedback record's ``feedback`` object; the document adds
    ``feedback.delay_ms`` (label time minus prediction time) and, unless the
    object has one, ``feedback.timestamp`` (the label's event time). ``@timestamp`` stays the prediction's,
    so the outcome lands in the prediction's daily index. Nothing is modified:
    the document is a new top-level ``dict`` sharing the prediction's values.

    Example:
        >>> doc = build_outcome({"request": {"id": "r"}, "prediction": {"value": 1.0}},
        ...                     {"values": [1.5], "source": "HUMAN_RATER"}, prediction_ms=0, label_ms=-1000)
        >>> doc["feedback"]["timestamp"], doc["feedback"]["delay_ms"], doc["outcome"]
        ('1969-12-31T23:59:59.000+00:00', -1000, {'error': -0.5, 'abs_error': 0.5})
    """
    document = dict(prediction)
    joined_feedback = dict(feedback)
    if "timestamp" not in joined_feedback:
        joined_feedback["timestamp"] = iso_timestamp(label_ms)
    joined_feedback["delay_ms"] = label_ms - prediction_ms
    document["feedback"] = joined_feedback
    predicted = prediction.get("prediction")
    is_mapping = type(predicted) is dict or isinstance(predicted, Mapping)
    document["outcome"] = score_outcome(predicted if is_mapping else {}, feedback)
    return document


def iso_timestamp(epoch_ms: int) -> str:
    """ISO-8601 UTC text of epoch milliseconds.

    Example:
        >>> iso_timestamp(1_763_850_000_123)
        '2025-11-22T22:20:00.123+00:00'
    """
    return (_EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds")


# --- state in the store ----------------------------------------------------------


class JoinStoreError(ValueError):
    """The store's join state was written with settings this joiner cannot read."""


@dataclass(slots=True)
class JoinClock:
    """The join's clock, stored under one key: the watermark and the live expiry buckets.

    Example:
        >>> clock = JoinClock(bucket_ms=1_000, watermark_ms=12_500, buckets=[2, 5])
        >>> clock.horizon(window_ms=10_000)  # buckets 0 and 1 are entirely older than the window
        1
        >>> JoinClock.from_json(clock.to_json(), bucket_ms=1_000) == clock
        True
    """

    bucket_ms: int
    #: the largest event time seen (or passed in); ``None`` before the first record
    watermark_ms: int | None = None
    #: sorted numbers of the expiry buckets that hold ids
    buckets: list[int] = field(default_factory=list)
    #: the largest event time of a prediction, and of a label, seen
    predictions_ms: int | None = None
    labels_ms: int | None = None

    def known_ms(self) -> int | None:
        """A lower bound of when the outcomes still to come become known (the later of prediction and label time).

        Each side arrives in event-time order. An outcome completed by a label
        still to come is known no earlier than that label, so no earlier than
        the latest label seen; one completed by a prediction still to come, no
        earlier than the latest prediction seen. Hence the smaller of the two.
        The watermark (the larger) is not a bound: with predictions read ahead
        of their labels, labels still to come are older than it. ``None``
        until both sides have been seen: the first label may be older than
        every prediction seen.

        Example:
            >>> JoinClock(1_000, 9_000, predictions_ms=9_000, labels_ms=4_000).known_ms()
            4000
            >>> JoinClock(1_000, 9_000, predictions_ms=9_000).known_ms() is None
            True
        """
        if self.predictions_ms is None or self.labels_ms is None:
            return None
        return min(self.predictions_ms, self.labels_ms)

    def horizon(self, window_ms: int) -> int | None:
        """The last bucket whose every time is more than ``window_ms`` before the watermark.

        Entries in it or before it are expired; records in it or before it are late.
        """
        if self.watermark_ms is None:
            return None
        return (self.watermark_ms - window_ms) // self.bucket_ms - 1

    def to_json(self) -> dict[str, Any]:
        return {"wm": self.watermark_ms, "w": self.bucket_ms, "b": self.buckets, "pm": self.predictions_ms,
                "lm": self.labels_ms}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None, bucket_ms: int) -> JoinClock:
        """The clock in ``value``, or a new one; raise :class:`JoinStoreError` if its bucket width differs."""
        if not value:
            return cls(bucket_ms)
        if value["w"] != bucket_ms:
            raise JoinStoreError(f"the join store uses bucket_ms={value['w']}, not {bucket_ms}; it cannot change")
        return cls(bucket_ms, value["wm"], list(value["b"]), value.get("pm"), value.get("lm"))


class ExpiryIndex:
    """Request ids by coarse bucket of event time, so expiry never scans the store.

    :meth:`add` stages an id in memory; :meth:`write` appends one chunk per
    touched bucket to the store (a bucket's chunk list grows by one key per
    batch, it is never rewritten). :meth:`take` returns a due bucket's ids
    (stored and staged) and :meth:`delete_taken` removes its keys.

    Parameters
    ----------
    store
        The mutable mapping shared with the joiner.
    bucket_ms
        Width of one bucket in milliseconds of event time.
    prefix
        Key prefix of the index (``"~join/b/"`` by default).

    Example:
        >>> store = {}
        >>> index = ExpiryIndex(store, bucket_ms=1_000, prefix="~join/b/")
        >>> index.add("r-1", 1_500); index.add("r-2", 1_999); index.write()
        [1]
        >>> sorted(store.items())
        [('~join/b/1', {'n': 1}), ('~join/b/1/0', ['r-1', 'r-2'])]
        >>> index.take(1); index.delete_taken(); store
        ['r-1', 'r-2']
        {}
    """

    def __init__(self, store: MutableMapping[Any, Any], *, bucket_ms: int, prefix: str) -> None:
        self.store = store
        self.bucket_ms = bucket_ms
        self.prefix = prefix
        self._staged: dict[int, list[str]] = {}
        self._taken: list[str] = []  # keys of the buckets take() read, deleted by delete_taken()

    def bucket(self, timestamp_ms: int) -> int:
        """The bucket number of an event time."""
        return timestamp_ms // self.bucket_ms

    def add(self, request_id: str, timestamp_ms: int) -> None:
        """Stage ``request_id`` in the bucket of ``timestamp_ms`` (written by :meth:`write`)."""
        self._staged.setdefault(timestamp_ms // self.bucket_ms, []).append(request_id)

    def staged_buckets(self) -> list[int]:
        """Buckets with staged ids, in order."""
        return sorted(self._staged)

    def take(self, bucket: int, *, stored: bool = True) -> list[str]:
        """The ids of a due bucket: its stored chunks (if ``stored``) then its staged ids."""
        ids: list[str] = []
        if stored:
            key = self._key(bucket)
            header = self.store.get(key)
            if header:
                for i in range(header["n"]):
                    chunk = self.store.get(f"{key}/{i}")
                    if chunk:
                        ids.extend(chunk)
                        self._taken.append(f"{key}/{i}")
                self._taken.append(key)
        ids.extend(self._staged.pop(bucket, ()))
        return ids

    def write(self) -> list[int]:
        """Append the staged ids to the store, one chunk per bucket; return the buckets written."""
        written = sorted(self._staged)
        for bucket in written:
            key = self._key(bucket)
            header = self.store.get(key)
            chunk = header["n"] if header else 0
            self.store[f"{key}/{chunk}"] = self._staged[bucket]
            self.store[key] = {"n": chunk + 1}
        self._staged.clear()
        return written

    def delete_taken(self) -> None:
        """Remove the keys of the buckets :meth:`take` read."""
        for key in self._taken:
            del self.store[key]
        self._taken.clear()

    def _key(self, bucket: int) -> str:
        return f"{self.prefix}{bucket}"


class _Entries:
    """Read-through cache of request-id entries for one batch: each key read and written once."""

    __slots__ = ("store", "current", "original")

    def __init__(self, store: MutableMapping[Any, Any]) -> None:
        self.store = store
        self.current: dict[str, dict[str, Any] | None] = {}
        self.original: dict[str, dict[str, Any] | None] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return self.current[key]
        except KeyError:
            value = self.original[key] = self.current[key] = self.store.get(key) or None  # a table default reads as missing
            return value

    def set(self, key: str, value: dict[str, Any] | None) -> None:
        self.current[key] = value  # always after get(): original is known

    def changed(self) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
        """(key, original, current) of every entry this batch changed, in first-seen order."""
        original = self.original
        return [(k, original[k], v) for k, v in self.current.items() if v is not original[k]]


# --- the joiner ---------------------------------------------------------------------


class LabelJoiner:
    """Join labels to predictions by request id over a mutable-mapping store, in event time.

    Parameters
    ----------
    store
        Any mutable mapping: only ``get``, ``[k] = v`` and ``del`` are used,
        never iteration. Values written are JSON-compatible. A Faust table
        should have no ``default`` (an empty default value reads as missing).
    window_ms
        How long, in event time, a prediction waits for its label and a label
        for its prediction; tombstones of joined ids live as long.
    bucket_ms
        Expiry-index bucket width: entries expire between ``window_ms`` and
        ``window_ms + bucket_ms`` after their time.
    namespace
        Separates the bookkeeping keys (clock, index) of joiners sharing one
        store, e.g. one joiner per partition over one Faust table.
    keep_fields
        Top-level prediction fields stored for the outcome (``None``: all). The
        fields in :data:`REQUIRED_FIELDS` are always kept. Dropping ``features``
        makes a pending prediction several times smaller.

    Example:
        >>> store = {}
        >>> joiner = LabelJoiner(store, window_ms=10_000, bucket_ms=1_000)
        >>> label = {"request": {"id": "r-9"}, "timestamp_ms": 0, "feedback": {"labels": ["ok"]}}
        >>> joiner.join_batch([], [label]).outcomes
        []
        >>> result = joiner.expire(watermark_ms=11_000)
        >>> [(e.kind, e.request_id) for e in result.expired], result.total().expired_labels
        ([('label', 'r-9')], 1)
        >>> sorted(store)
        ['~join/clock']
    """

    def __init__(
        self,
        store: MutableMapping[Any, Any],
        *,
        window_ms: int = DEFAULT_WINDOW_MS,
        bucket_ms: int = DEFAULT_BUCKET_MS,
        namespace: str = "",
        keep_fields: Collection[str] | None = None,
    ) -> None:
        if window_ms < 0 or bucket_ms <= 0:
            raise ValueError("window_ms must be >= 0 and bucket_ms > 0")
        self.store = store
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self.namespace = namespace
        self.keep_fields = None if keep_fields is None else frozenset(keep_fields) | REQUIRED_FIELDS
        prefix = f"{RESERVED_PREFIX}{namespace}/" if namespace else RESERVED_PREFIX
        self._clock_key = f"{prefix}clock"
        self._index = ExpiryIndex(store, bucket_ms=bucket_ms, prefix=f"{prefix}b/")

    @property
    def clock(self) -> JoinClock:
        """The stored clock (watermark and live expiry buckets)."""
        return JoinClock.from_json(self.store.get(self._clock_key), self.bucket_ms)

    @property
    def watermark_ms(self) -> int | None:
        """The largest event time seen (or passed in), ``None`` before the first record."""
        return self.clock.watermark_ms

    def state_of(self, request_id: str) -> Literal["prediction", "label", "joined"] | None:
        """What the store holds for ``request_id``: a pending side, a tombstone, or nothing."""
        entry = self.store.get(request_id)
        return _STATE_NAMES[entry["s"]] if entry else None

    def expire(self, watermark_ms: int) -> JoinResult:
        """Advance the watermark without records (e.g. an idle partition) and expire what is due."""
        return self.join_batch((), (), watermark_ms=watermark_ms)

    def join_batch(
        self,
        predictions: Iterable[Mapping[str, Any]],
        feedbacks: Iterable[Mapping[str, Any]],
        *,
        watermark_ms: int | None = None,
    ) -> JoinResult:
        """Join one batch of canonical predictions and feedback records; expire what is due.

        The batch's records are joined first (predictions, then labels: how the
        two kinds interleaved within the batch does not matter; among repeats
        of one side, the first wins), then the watermark advances to the largest of the stored
        watermark, the batch's event times and ``watermark_ms``, and entries
        older than the window are expired. Each store key is read and written
        at most once per batch.
        """
        result = JoinResult()
        loaded_clock = self.store.get(self._clock_key)
        clock = JoinClock.from_json(loaded_clock, self.bucket_ms)
        horizon = clock.horizon(self.window_ms)
        entries = _Entries(self.store)
        newest = clock.watermark_ms
        for record in predictions:
            newest = self._add_prediction(record, horizon, entries, result, newest)
            clock.predictions_ms = _later(clock.predictions_ms, _event_ms(record))
        for record in feedbacks:
            newest = self._add_feedback(record, horizon, entries, result, newest)
            clock.labels_ms = _later(clock.labels_ms, _event_ms(record))
        if watermark_ms is not None and (newest is None or watermark_ms > newest):
            newest = watermark_ms

        index = self._index
        bucket_ms = self.bucket_ms
        for key, before, after in entries.changed():
            if after is not None and (before is None or before["t"] // bucket_ms != after["t"] // bucket_ms):
                index.add(key, after["t"])

        if newest is not None:
            clock.watermark_ms = newest
            self._expire_due(clock, entries, result)
            written = index.write()
            if written:
                clock.buckets = sorted(set(clock.buckets).union(written))

        # Written in an order that is safe to replay after a crash between two
        # writes: index additions (above), entries, index deletions, the clock.
        for key, before, after in entries.changed():
            if after is not None:
                self.store[key] = after
            elif before is not None:
                del self.store[key]
        index.delete_taken()
        stored_clock = clock.to_json()
        if stored_clock != loaded_clock:
            self.store[self._clock_key] = stored_clock
        result.watermark_ms = clock.watermark_ms
        result.known_ms = clock.known_ms()
        return result

    # -- one record --------------------------------------------------------------

    def _add_prediction(
        self,
        record: Mapping[str, Any],
        horizon: int | None,
        entries: _Entries,
        result: JoinResult,
        newest: int | None,
    ) -> int | None:
        request_id, timestamp_ms, reason = _identify(record)
        if reason:
            result.rejected.append(Rejected("prediction", record, reason))
            result.count(UNKNOWN_MODEL).rejected += 1
            return newest
        model = _model_of(record)
        if horizon is not None and timestamp_ms // self.bucket_ms <= horizon:
            result.count(model).late_predictions += 1
            return newest
        entry = entries.get(request_id)
        if entry is not None and entry["s"] != _PENDING_LABEL:
            result.count(model).duplicate_predictions += 1
        elif entry is not None and timestamp_ms < entry["t"] - self.window_ms:
            result.count(model).late_predictions += 1  # more than a window before its label
            return newest
        else:
            kept = record if self.keep_fields is None else {k: v for k, v in record.items() if k in self.keep_fields}
            if entry is not None and timestamp_ms <= entry["t"] + self.window_ms:
                self._join(request_id, kept, timestamp_ms, entry["f"], entry["t"], model, entries, result)
            else:
                if entry is not None:  # a label more than a window older waited in vain
                    self._expire(request_id, entry, result)
                entries.set(request_id, {"s": _PENDING_PREDICTION, "t": timestamp_ms, "p": kept})
        return timestamp_ms if newest is None or timestamp_ms > newest else newest

    def _add_feedback(
        self,
        record: Mapping[str, Any],
        horizon: int | None,
        entries: _Entries,
        result: JoinResult,
        newest: int | None,
    ) -> int | None:
        request_id, timestamp_ms, reason = _identify(record)
        feedback = record.get("feedback")
        if not reason and not (type(feedback) is dict or isinstance(feedback, Mapping)):
            reason = "feedback object is missing"
        if reason:
            result.rejected.append(Rejected("label", record, reason))
            result.count(UNKNOWN_MODEL).rejected += 1
            return newest
        label_model = _model_of(record)  # feedback may name its model
        if horizon is not None and timestamp_ms // self.bucket_ms <= horizon:
            result.count(label_model).late_labels += 1
            return newest
        entry = entries.get(request_id)
        if entry is not None and entry["s"] != _PENDING_PREDICTION:
            result.count(_entry_model(entry)).duplicate_labels += 1
        elif entry is not None and timestamp_ms < entry["t"] - self.window_ms:
            result.count(_model_of(entry["p"])).late_labels += 1  # more than a window before its prediction
            return newest
        elif entry is not None and timestamp_ms <= entry["t"] + self.window_ms:
            prediction = entry["p"]
            self._join(request_id, prediction, entry["t"], feedback, timestamp_ms, _model_of(prediction), entries, result)
        else:
            if entry is not None:  # a prediction more than a window older waited in vain
                self._expire(request_id, entry, result)
            pending = {"s": _PENDING_LABEL, "t": timestamp_ms, "f": dict(feedback)}
            if label_model != UNKNOWN_MODEL:
                pending["m"] = list(label_model)
            entries.set(request_id, pending)
        return timestamp_ms if newest is None or timestamp_ms > newest else newest

    def _join(
        self,
        request_id: str,
        prediction: Mapping[str, Any],
        prediction_ms: int,
        feedback: Mapping[str, Any],
        label_ms: int,
        model: ModelKey,
        entries: _Entries,
        result: JoinResult,
    ) -> None:
        document = build_outcome(prediction, feedback, prediction_ms=prediction_ms, label_ms=label_ms)
        result.outcomes.append(Outcome(request_id, document))
        counts = result.count(model)
        counts.add_delay(label_ms - prediction_ms)
        if not document["outcome"]:
            counts.unscored += 1
        tombstone_ms = label_ms if label_ms > prediction_ms else prediction_ms
        entries.set(request_id, {"s": _JOINED, "t": tombstone_ms, "m": [model.name, model.version]})

    # -- expiry ---------------------------------------------------------------------

    def _expire_due(self, clock: JoinClock, entries: _Entries, result: JoinResult) -> None:
        """Expire every entry in a bucket up to the clock's horizon: stored buckets, and those staged by this batch."""
        index = self._index
        due = clock.horizon(self.window_ms)
        assert due is not None
        cut = bisect_right(clock.buckets, due)
        stored = set(clock.buckets[:cut])
        del clock.buckets[:cut]
        buckets = stored.union(b for b in index.staged_buckets() if b <= due)
        bucket_ms = self.bucket_ms
        for bucket in sorted(buckets):
            for request_id in index.take(bucket, stored=bucket in stored):
                entry = entries.get(request_id)
                if entry is None or entry["t"] // bucket_ms > due:
                    continue  # already gone, or moved to a later bucket when it was joined
                entries.set(request_id, None)
                self._expire(request_id, entry, result)

    @staticmethod
    def _expire(request_id: str, entry: Mapping[str, Any], result: JoinResult) -> None:
        """Report a pending entry as expired (a tombstone goes silently)."""
        state = entry["s"]
        if state == _PENDING_PREDICTION:
            model = _model_of(entry["p"])
            result.expired.append(Expired("prediction", request_id, entry["t"], model, entry["p"]))
            result.count(model).expired_predictions += 1
        elif state == _PENDING_LABEL:
            model = _entry_model(entry)
            result.expired.append(Expired("label", request_id, entry["t"], model, entry["f"]))
            result.count(model).expired_labels += 1


# --- record fields -------------------------------------------------------------------


def _identify(record: Mapping[str, Any]) -> tuple[str, int, str]:
    """(request id, event time, "") of a canonical record, or a reason it is unusable."""
    request = record.get("request")
    # dict first: an isinstance check against the Mapping ABC costs more than the rest of the function
    request_id = request.get("id") if type(request) is dict or isinstance(request, Mapping) else None
    if not isinstance(request_id, str) or not request_id:
        return "", 0, "request.id is missing or not a non-empty string"
    if request_id.startswith(RESERVED_PREFIX):
        return "", 0, f"request.id starts with the reserved prefix {RESERVED_PREFIX!r}"
    timestamp_ms = record.get("timestamp_ms")
    if type(timestamp_ms) is not int:
        return "", 0, "timestamp_ms is missing or not an integer"
    return request_id, timestamp_ms, ""


def _event_ms(record: Mapping[str, Any]) -> int | None:
    timestamp_ms = record.get("timestamp_ms")
    return timestamp_ms if type(timestamp_ms) is int else None


def _later(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _entry_model(entry: Mapping[str, Any]) -> ModelKey:
    """The model a tombstone or pending label remembers, if any."""
    model = entry.get("m")
    return ModelKey(*model) if model else UNKNOWN_MODEL


def _model_of(record: Mapping[str, Any]) -> ModelKey:
    model = record.get("model")
    if not (type(model) is dict or isinstance(model, Mapping)):
        return UNKNOWN_MODEL
    return ModelKey(model.get("name"), model.get("version"))


def _as_list(value: Any) -> list[Any]:
    """``[]`` for nothing, the list itself, or a one-item list of a scalar."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
