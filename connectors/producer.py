"""The producer API for model services: log predictions and feedback without slowing requests.

A log call only appends the event to a bounded in-memory buffer (about a
microsecond). A background thread drains the buffer in batches, encodes them
with Avro (the expensive part, ~25 µs per event) and hands them to
confluent-kafka's idempotent producer, keyed by request id so predictions and
feedback co-partition. Nothing on the caller's path blocks or raises when
Kafka is slow or down: a full buffer drops the event and counts it, delivery
failures are counted, and :attr:`PredictionLogger.stats` shows all of it.

Example:
    >>> from driftline.settings import Settings
    >>> with PredictionLogger(Settings(kafka_bootstrap="127.0.0.1:1"), close_timeout=0.1) as log:
    ...     log.log_prediction({"request_id": "r-1", "model_name": "m", "model_version": "1",
    ...                         "prediction": [{"label": "cat", "score": 0.9}]})
    True
    >>> log.stats.accepted, log.stats.lost >= 1  # no broker on port 1: counted, not raised
    (1, True)
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from driftline.connectors.codec import EncodeError, make_codec, registry_client
from driftline.settings import Settings

log = logging.getLogger(__name__)

_PREDICTION = 0
_FEEDBACK = 1

#: librdkafka settings for the logger: idempotent (no duplicates on retry),
#: Java-compatible murmur2 partitioning (so every client agrees on which
#: partition a request id lands in), small linger to batch on the wire.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "compression.type": "lz4",
}


@dataclass(frozen=True)
class LoggerStats:
    """A snapshot of what happened to the events handed to a :class:`PredictionLogger`.

    Every accepted event ends up in exactly one of ``delivered``, ``invalid``,
    ``failed``, ``undelivered`` (still pending when the logger closed) or is
    still ``pending``.
    """

    accepted: int
    dropped_buffer_full: int
    dropped_closed: int
    invalid: int
    delivered: int
    failed: int
    undelivered: int
    pending: int
    last_error: str | None

    @property
    def lost(self) -> int:
        """Events that will never reach Kafka, for whatever reason."""
        return self.dropped_buffer_full + self.dropped_closed + self.invalid + self.failed + self.undelivered


def typed_features(features: Mapping[str, Any]) -> dict[str, Any]:
    """Split one mixed feature mapping into the event's typed feature maps.

    Example:
        >>> typed_features({"age": 41, "country": "DE", "vip": True, "emb": [0.1, 0.2], "x": None})
        {'numeric_features': {'age': 41.0}, 'categorical_features': {'country': 'DE'}, 'boolean_features': {'vip': True}, 'vector_features': {'emb': [0.1, 0.2]}, 'null_features': ['x']}
    """
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    boolean: dict[str, bool] = {}
    vector: dict[str, list[float]] = {}
    null: list[str] = []
    for name, value in features.items():
        if value is None:
            null.append(name)
        elif isinstance(value, bool):
            boolean[name] = value
        elif isinstance(value, (int, float)):
            numeric[name] = float(value)
        elif isinstance(value, str):
            categorical[name] = value
        elif isinstance(value, (list, tuple)):
            vector[name] = [float(v) for v in value]
        else:
            categorical[name] = str(value)
    return {
        "numeric_features": numeric,
        "categorical_features": categorical,
        "boolean_features": boolean,
        "vector_features": vector,
        "null_features": null,
    }


class PredictionLogger:
    """Log prediction and feedback events to Kafka from a model service, never blocking it.

    Parameters
    ----------
    settings
        Kafka bootstrap servers, security, topic names and schema registry.
    max_buffer
        Events held in memory waiting to be encoded; when full, log calls
        drop the event, count it and return ``False``.
    batch_size
        Events encoded and handed to Kafka per background-thread step.
    close_timeout
        Seconds :meth:`close` (and leaving the ``with`` block) waits for
        delivery before counting the rest as undelivered.
    producer_config
        Extra librdkafka settings, over :data:`PRODUCER_DEFAULTS`.
    registry
        A schema-registry client to use instead of one built from settings
        (e.g. a shared ``mock://`` client in tests).

    Events are plain mappings following ``schemas/prediction_event.avsc`` and
    ``schemas/feedback_event.avsc``. ``timestamp`` defaults to the time of the
    log call; a mixed ``features`` mapping is split into the typed maps. The
    event is encoded later on the background thread: do not mutate it after
    logging.

    Example:
        >>> from driftline.settings import Settings
        >>> log = PredictionLogger(Settings(kafka_bootstrap="127.0.0.1:1"), close_timeout=0.1)
        >>> log.log_feedback({"request_id": "r-1", "labels": ["cat"]})
        True
        >>> log.close().undelivered + log.stats.failed
        1
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        max_buffer: int = 100_000,
        batch_size: int = 1_000,
        close_timeout: float = 10.0,
        producer_config: Mapping[str, Any] | None = None,
        registry: Any | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.close_timeout = close_timeout
        registry_conf = self.settings.schema_registry_config()
        if registry is None and registry_conf is not None:
            registry = registry_client(registry_conf)
        self._topics = (self.settings.predictions_topic, self.settings.feedback_topic)
        self._codecs = (
            make_codec("prediction_event", registry=registry, topic=self._topics[0]),
            make_codec("feedback_event", registry=registry, topic=self._topics[1]),
        )
        conf = self.settings.kafka_client_config() | PRODUCER_DEFAULTS | dict(producer_config or {})
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", log)  # librdkafka's logs go to Python logging, not stderr
        self._producer = Producer(conf)

        self._buffer: deque[tuple[int, Mapping[str, Any], int]] = deque()
        self._lock = threading.Lock()  # guards counters written from several threads
        self._dropped_full = 0
        self._dropped_closed = 0
        self._taken = 0  # events taken off the buffer by the background thread
        self._invalid = 0
        self._delivered = 0
        self._failed = 0
        self._undelivered = 0
        self._last_error: str | None = None
        self._closed = False
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driftline-logger", daemon=True)
        self._thread.start()

    # --- the caller's path: append and return -------------------------------

    def log_prediction(self, event: Mapping[str, Any]) -> bool:
        """Queue one prediction event; returns ``False`` (and counts it) if it was dropped."""
        if self._closed or len(self._buffer) >= self.max_buffer:
            return self._drop()
        self._buffer.append((_PREDICTION, event, time.time_ns()))
        return True

    def log_feedback(self, event: Mapping[str, Any]) -> bool:
        """Queue one feedback (ground-truth) event; returns ``False`` if it was dropped."""
        if self._closed or len(self._buffer) >= self.max_buffer:
            return self._drop()
        self._buffer.append((_FEEDBACK, event, time.time_ns()))
        return True

    def _drop(self) -> bool:
        with self._lock:
            if self._closed:
                self._dropped_closed += 1
            else:
                self._dropped_full += 1
        return False

    # --- the background thread ---------------------------------------------

    def _run(self) -> None:
        buffer = self._buffer
        while True:
            if buffer:
                self._idle.clear()
                self._send(self._take())
                self._producer.poll(0)
            else:
                self._idle.set()
                if self._stop.is_set():
                    return
                self._producer.poll(0.005)  # serves delivery reports, releases the GIL

    def _take(self) -> list[tuple[int, Mapping[str, Any], int]]:
        buffer = self._buffer
        n = min(self.batch_size, len(buffer))
        with self._lock:
            self._taken += n  # counted before popping, so accepted never dips
        return [buffer.popleft() for _ in range(n)]

    def _send(self, batch: list[tuple[int, Mapping[str, Any], int]]) -> None:
        for kind in (_PREDICTION, _FEEDBACK):
            messages = []
            codec = self._codecs[kind]
            for k, event, captured_ns in batch:
                if k != kind:
                    continue
                try:
                    record = _complete(event, captured_ns)
                    messages.append({"value": codec.encode(record), "key": record["request_id"].encode()})
                except (EncodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
                    self._count_invalid(f"invalid {('prediction', 'feedback')[kind]} event: {exc}")
            if messages:
                self._produce(self._topics[kind], messages)

    def _produce(self, topic: str, messages: list[dict[str, Any]]) -> None:
        """Hand a batch to librdkafka, waiting (on this thread only) while its queue is full."""
        while messages:
            try:
                self._producer.produce_batch(topic, messages, on_delivery=self._on_delivery)
                retry = [m for m in messages if "_error" in m and m["_error"].code() == KafkaError._QUEUE_FULL]
                failed = [m for m in messages if "_error" in m and m["_error"].code() != KafkaError._QUEUE_FULL]
            except BufferError:
                retry, failed = messages, []
            except KafkaException as exc:
                retry, failed = [], messages
                with self._lock:
                    self._last_error = str(exc)
            if failed:
                with self._lock:
                    self._failed += len(failed)
                    self._last_error = str(failed[0].get("_error", self._last_error))
            messages = [{"value": m["value"], "key": m["key"]} for m in retry]
            if messages:
                if self._stop.is_set() and self._closing_deadline_passed():
                    with self._lock:
                        self._undelivered += len(messages)
                    return
                self._producer.poll(0.05)  # librdkafka's queue is full: let it drain

    # --- callbacks (librdkafka's threads hand them to poll/flush callers) ---

    def _on_delivery(self, err: Any, msg: Any) -> None:
        with self._lock:
            if err is None:
                self._delivered += 1
            else:
                self._failed += 1
                self._last_error = str(err)

    def _on_error(self, err: Any) -> None:
        with self._lock:
            self._last_error = str(err)
        log.debug("kafka client error: %s", err)

    def _count_invalid(self, reason: str) -> None:
        with self._lock:
            self._invalid += 1
            first = self._last_error is None
            self._last_error = reason
        if first:
            log.warning("%s", reason)

    # --- lifecycle ----------------------------------------------------------

    @property
    def stats(self) -> LoggerStats:
        """Counters of accepted, delivered, failed and dropped events."""
        with self._lock:
            accepted = self._taken + len(self._buffer)
            done = self._delivered + self._failed + self._invalid + self._undelivered
            return LoggerStats(
                accepted=accepted,
                dropped_buffer_full=self._dropped_full,
                dropped_closed=self._dropped_closed,
                invalid=self._invalid,
                delivered=self._delivered,
                failed=self._failed,
                undelivered=self._undelivered,
                pending=max(0, accepted - done),
                last_error=self._last_error,
            )

    def flush(self, timeout: float = 10.0) -> int:
        """Wait until every accepted event is delivered or failed; returns how many are still pending.

        Example:
            >>> # log.flush(5.0) == 0 means everything logged so far reached Kafka or failed
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while self._buffer or not self._idle.is_set():
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return self.stats.pending
            if self._idle.is_set():
                time.sleep(0.001)  # the thread has not picked up the newest events yet
            else:
                self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        remaining = max(0.0, deadline - time.monotonic())
        self._producer.flush(remaining)
        return self.stats.pending

    async def aflush(self, timeout: float = 10.0) -> int:
        """:meth:`flush` for asyncio code: waits in a worker thread, not on the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def _closing_deadline_passed(self) -> bool:
        return time.monotonic() >= getattr(self, "_close_deadline", math.inf)

    def close(self, timeout: float | None = None) -> LoggerStats:
        """Stop accepting events, deliver what is pending within ``timeout`` seconds, count the rest.

        Returns the final :class:`LoggerStats`. Safe to call twice.
        """
        if self._closed:
            return self.stats
        timeout = self.close_timeout if timeout is None else timeout
        self._closed = True
        self._close_deadline = time.monotonic() + timeout
        self._stop.set()
        # the thread stops retrying at the deadline; give it a moment past it to settle its counts
        self._thread.join(timeout + 1.0)
        # anything the thread did not get to is undelivered
        with self._lock:
            leftover = len(self._buffer)
            self._buffer.clear()
            self._taken += leftover
            self._undelivered += leftover
        remaining = max(0.0, self._close_deadline - time.monotonic())
        in_queue = self._producer.flush(remaining)
        if in_queue:
            # purge what librdkafka still holds so destroying it cannot hang;
            # the purged messages come back as failed delivery reports
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(0.5)
        return self.stats

    async def aclose(self, timeout: float | None = None) -> LoggerStats:
        """:meth:`close` for asyncio code."""
        return await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> "PredictionLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "PredictionLogger":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _complete(event: Mapping[str, Any], captured_ns: int) -> Mapping[str, Any]:
    """Fill the conveniences: a missing timestamp (the log call's time) and a mixed ``features`` map."""
    if "timestamp" in event and "features" not in event:
        return event
    record = dict(event)
    record.setdefault("timestamp", captured_ns // 1_000_000)
    features = record.pop("features", None)
    if features is not None:
        for key, typed in typed_features(features).items():
            explicit = record.get(key)
            if not explicit:
                record[key] = typed
            elif isinstance(typed, dict):
                record[key] = {**typed, **explicit}
            else:
                record[key] = [*explicit, *typed]
    return record
