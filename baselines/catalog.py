"""Baselines on Kafka: publish to a compacted topic, and every worker loads them.

One record per model version: key ``model|version``, value the baseline
document as gzip-compressed JSON (a baseline holds a few thousand sample
values per numeric feature; compressed, a 20-feature baseline stays far below
Kafka's default 1 MB message limit — a larger one is refused with a clear
error). A record with no value (a tombstone) withdraws a baseline. The topic
is compacted, so it keeps the latest baseline of every model version forever
and nothing else.

:class:`BaselineCatalog` is what a worker holds: it reads the whole topic on
start and then follows it on a background thread, so a baseline published
while the worker runs is used from the next window on. Lookups are plain dict
reads, safe from any thread.

Each baseline is produced in a produce request of its own: the embedded
broker reports a topic's end as the last *batch*'s first offset + 1, so a
batch of several records would hide all but its first from a reader that
stops at the reported end.

Example:
    >>> encoded = encode_baseline(example_baseline())
    >>> decode_baseline(encoded).key
    'demo|1'
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from driftline.baselines.model import Baseline, BaselineError, FeatureSchema, Histogram, NumericStats
from driftline.connectors.kafka_admin import ensure_topics
from driftline.settings import Settings

__all__ = [
    "MAX_RECORD_BYTES",
    "BaselineCatalog",
    "decode_baseline",
    "encode_baseline",
    "ensure_baselines_topic",
    "example_baseline",
    "publish_baseline",
    "read_baselines",
    "withdraw_baseline",
]

log = logging.getLogger(__name__)

#: Kafka's default largest message (``message.max.bytes``), minus room for the record's overhead.
MAX_RECORD_BYTES = 1_000_000 - 1024

#: The topic's configuration: keep the latest record per key, forever.
TOPIC_CONFIG = {"cleanup.policy": "compact"}


def encode_baseline(baseline: Baseline) -> bytes:
    """The record value of a baseline: its JSON document, gzip-compressed."""
    return gzip.compress(baseline.dumps().encode(), compresslevel=6, mtime=0)


def decode_baseline(value: bytes) -> Baseline:
    """A baseline from a record value; raises :class:`BaselineError` when it is not one."""
    try:
        text = gzip.decompress(value)
    except (OSError, EOFError) as exc:
        raise BaselineError(f"baseline record is not gzip-compressed JSON: {exc}") from None
    return Baseline.from_json(text)


def ensure_baselines_topic(settings: Settings, timeout: float = 30.0) -> None:
    """Create the compacted baselines topic (one partition: it is small and read whole) if missing."""
    ensure_topics(settings, {settings.baselines_topic: 1}, timeout=timeout, configs={settings.baselines_topic: TOPIC_CONFIG})


def _produce_one(settings: Settings, key: str, value: bytes | None, timeout: float) -> None:
    producer = Producer(settings.kafka_client_config() | {"enable.idempotence": True, "acks": "all",
                                                         "message.max.bytes": 1_000_000})
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    try:
        producer.produce(settings.baselines_topic, key=key.encode(), value=value, on_delivery=on_delivery)
    except (KafkaException, BufferError) as exc:
        raise BaselineError(f"cannot publish baseline {key}: {exc}") from None
    if producer.flush(timeout) > 0:
        raise BaselineError(f"baseline {key} was not acknowledged by Kafka at {settings.kafka_bootstrap} within {timeout:.0f} s")
    if errors:
        raise BaselineError(f"Kafka refused baseline {key}: {errors[0]}")


def publish_baseline(settings: Settings, baseline: Baseline, timeout: float = 30.0) -> int:
    """Publish a baseline to the baselines topic (created if missing); returns the record's size in bytes.

    Example:
        >>> publish_baseline(settings, baseline)  # doctest: +SKIP
        48213
    """
    value = encode_baseline(baseline)
    if len(value) > MAX_RECORD_BYTES:
        raise BaselineError(
            f"baseline {baseline.key} is {len(value):,} bytes compressed, above Kafka's default limit of "
            f"{MAX_RECORD_BYTES:,}: rebuild it with a smaller --sample-size or fewer features"
        )
    ensure_baselines_topic(settings, timeout)
    _produce_one(settings, baseline.key, value, timeout)
    return len(value)


def withdraw_baseline(settings: Settings, model_name: str, model_version: str, timeout: float = 30.0) -> None:
    """Withdraw a model version's baseline (a tombstone: compaction then drops it)."""
    ensure_baselines_topic(settings, timeout)
    _produce_one(settings, f"{model_name}|{model_version}", None, timeout)


def read_baselines(settings: Settings, timeout: float = 30.0) -> dict[str, Baseline]:
    """Every baseline on the topic, by ``model|version`` (an empty dict when the topic does not exist).

    Records that are not baselines are logged and skipped: one bad record must
    not keep a worker from the others.
    """
    catalog = BaselineCatalog(settings)
    try:
        catalog.refresh(timeout)
    finally:
        catalog.stop()  # closes the consumer
    return dict(catalog.baselines)


class BaselineCatalog:
    """The baselines a worker uses, kept up to date from the baselines topic.

    ``refresh()`` reads the topic to its end once; ``start()`` does that and
    then follows the topic on a daemon thread until ``stop()``. ``get`` is a
    dict lookup.

    Parameters
    ----------
    settings
        Where the topic is.
    on_change
        Called with the key of every baseline added, replaced or withdrawn
        (on the catalog's thread).
    """

    def __init__(self, settings: Settings, on_change: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_change = on_change
        self.baselines: dict[str, Baseline] = {}
        self.skipped = 0  # records that were not baselines
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def get(self, model_name: str, model_version: str) -> Baseline | None:
        """The baseline of a model version, or None."""
        return self.baselines.get(f"{model_name}|{model_version}")

    def __len__(self) -> int:
        return len(self.baselines)

    def _open(self) -> Consumer | None:
        if self._consumer is not None:
            return self._consumer
        conf = self.settings.kafka_client_config() | {
            "group.id": f"driftline-baselines-{uuid.uuid4().hex[:8]}",  # never joins nor commits: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        consumer = Consumer(conf)
        metadata = consumer.list_topics(self.settings.baselines_topic, timeout=10.0).topics.get(self.settings.baselines_topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            consumer.close()
            return None
        consumer.assign([TopicPartition(self.settings.baselines_topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        self._consumer = consumer
        return consumer

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        name = (key or b"").decode(errors="replace")
        if value is None:
            with self._lock:
                removed = self.baselines.pop(name, None)
            if removed is not None and self.on_change:
                self.on_change(name)
            return
        try:
            baseline = decode_baseline(value)
        except BaselineError as exc:
            self.skipped += 1
            log.error("skipping record %r of %s: %s", name, self.settings.baselines_topic, exc)
            return
        with self._lock:
            self.baselines[baseline.key] = baseline
        if self.on_change:
            self.on_change(baseline.key)

    def _poll(self, consumer: Consumer, timeout: float) -> bool:
        """Apply what one poll returns; True when every partition reached its end."""
        messages = consumer.consume(num_messages=100, timeout=timeout)
        at_end = False
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                    continue
                log.warning("baselines topic: %s", error)
                continue
            self._apply(message.key(), message.value())
        return at_end

    def refresh(self, timeout: float = 30.0) -> int:
        """Read the topic up to its end; returns how many baselines are known."""
        consumer = self._open()
        if consumer is None:
            return len(self.baselines)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._poll(consumer, min(1.0, max(0.01, deadline - time.monotonic()))):
                break
        else:
            raise BaselineError(f"could not read {self.settings.baselines_topic} to its end within {timeout:.0f} s")
        return len(self.baselines)

    def start(self, timeout: float = 30.0) -> None:
        """Load every baseline, then follow the topic on a background thread."""
        self.refresh(timeout)
        self._thread = threading.Thread(target=self._follow, name="driftline-baselines", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stopping.is_set():
            try:
                consumer = self._open()
                if consumer is None:  # the topic does not exist yet: look again later
                    self._stopping.wait(5.0)
                    continue
                self._poll(consumer, 1.0)
            except KafkaException as exc:  # pragma: no cover - broker trouble: keep the baselines we have
                log.warning("baselines topic unavailable: %s", exc)
                self._stopping.wait(5.0)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def example_baseline(model_name: str = "demo", model_version: str = "1") -> Baseline:
    """A tiny baseline for examples and tests: one numeric feature ``x`` in [0, 1]."""
    return Baseline(
        model_name,
        model_version,
        {"x": FeatureSchema("x", "numeric", required=True, min=0.0, max=1.0)},
        {"x": NumericStats(count=4, missing=0, mean=0.5, std=0.3, min=0.1, max=0.9, quantiles={"0.5": 0.5},
                           histogram=Histogram([0.0, 0.5, 1.0], [2, 2]), sample=[0.1, 0.4, 0.6, 0.9])},
        rows=4,
    )

