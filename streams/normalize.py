"""The normalize stage: raw Kafka records in, canonical events or dead letters out.

This is the role Logstash or Fluentd play in a log stack, as plain code with
no Kafka or Faust inside (the Faust agent wraps it). For each record it

1. **decodes** the value by its first byte: ``C3 01`` Avro single-object
   encoding, ``00`` Confluent wire format (only if a schema registry is
   configured), ``{`` a JSON log line from a producer that cannot speak Avro
   (field names mapped by :class:`~driftline.streams.json_events.JsonFieldMap`);
   the record's source topic says whether it is a prediction or feedback;
2. **validates** it (:class:`NormalizeConfig` holds the limits): required fields
   present and non-empty, finite numbers, a sane timestamp (not before
   2000-01-01, at most a day ahead of the ``now_ms`` the caller passes in),
   sane id lengths, a bounded number of features, classes and slices;
3. **pseudonymizes** personal data with a keyed HMAC
   (:class:`~driftline.streams.pseudonymize.Pseudonymizer`): the subject id,
   the rater id, and the features named in the config (or drops them);
4. **canonicalizes** it into one plain JSON-serializable dict whose field
   names are those of the Elasticsearch templates
   (:mod:`driftline.connectors.elasticsearch.mappings`).

Anything that fails becomes a :class:`DeadLetterRecord` with the raw bytes and
the reason; :meth:`Normalizer.normalize` never raises on input.

Decisions worth knowing
-----------------------
* A **NaN feature is missing**, not invalid: pandas and NumPy write NaN for a
  missing value, and rejecting the whole event would lose its prediction. Its
  name goes to ``features.missing``. (``nan_features="invalid"`` rejects
  instead.) An infinite feature is invalid: it is a bug, not a gap. A NaN or
  infinite latency, score, class score or feedback value is invalid.
* **Top output**: ``prediction.label/value/score`` hold the output with the
  highest score (the first one if none has a score); ``prediction.outputs``
  keeps every output in the producer's order, each without its null fields.
* **Names with dots** (features, slices, classes) have their dots replaced by
  ``_`` (Logstash's de_dot): Elasticsearch reads a dot as an object path, so
  ``a.b`` next to ``a`` would make the whole document fail to index. Two names
  that collide after that are invalid. Empty or blank names are invalid.
* **Event time**: ``@timestamp`` is the event's own time as
  ``YYYY-MM-DDTHH:MM:SS.mmmZ``. The same instant as integer epoch milliseconds,
  for the join and windowing (which must not parse dates per event), is
  :attr:`NormalizedEvent.timestamp_ms`, outside the document: the templates
  have no integer field for it, so the document holds only mapped fields.
  ``event.created`` is when this stage read the record (``now_ms``). For
  feedback, ``feedback.timestamp`` repeats the label time, so a joined outcome
  keeps both times.
* **Omitted fields**: null optional values (``subject``, ``latency_ms``,
  ``trace``, ``span``, ``labels``, ``input``, feedback extras) are left out;
  ``features`` always has its five parts and ``prediction`` its outputs and
  scores, possibly empty.
* Avro timestamps are read as the milliseconds they hold (no ``datetime``
  per event); one outside the sane range is ``invalid``, however far out.
* Dead letters keep the raw bytes, which hold the raw personal ids: restrict
  access to the dead-letter topic and index and keep their retention short.

Example:
    >>> from driftline.connectors.codec import make_codec
    >>> normalizer = Normalizer(pseudonymizer=Pseudonymizer(b"0123456789abcdef0123456789abcdef"))
    >>> value = make_codec("feedback_event").encode(
    ...     {"request_id": "r-1", "timestamp": 1_763_850_000_123, "labels": ["fraud"], "rater_id": "alice"})
    >>> out = normalizer.normalize(RawRecord(value, b"r-1", "driftline.feedback", 0, 42), now_ms=1_763_850_060_000)
    >>> out.document["@timestamp"], out.document["feedback"]["labels"], out.document["feedback"]["rater_id"][:3]
    ('2025-11-22T22:20:00.123Z', ['fraud'], 'pz_')
    >>> bad = normalizer.normalize(RawRecord(b"\\x00\\x00\\x00\\x00\\x01", None, "driftline.feedback", 0, 43), now_ms=0)
    >>> bad.error_type, bad.reason
    ('configuration_error', 'Confluent-framed record (magic byte 00, schema id 1) but no schema registry configured (DRIFTLINE_SCHEMA_REGISTRY_URL)')
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from driftline.connectors.codec import (
    CONFLUENT_MAGIC,
    ConfluentCodec,
    DecodeError,
    ParsedSchema,
    SingleObjectCodec,
    load_schema,
    make_codec,
)
from driftline.streams.json_events import JsonFieldMap, MappingError, json_event
from driftline.streams.pseudonymize import PseudonymizationKeyError, Pseudonymizer

__all__ = [
    "Decoders",
    "DeadLetterRecord",
    "ErrorType",
    "EventKind",
    "NormalizeConfig",
    "NormalizedBatch",
    "NormalizedEvent",
    "Normalizer",
    "RawRecord",
    "iso_millis",
]

# --- small named types ---------------------------------------------------------------


class EventKind(StrEnum):
    """What a topic carries: predictions or feedback (ground truth).

    Example:
        >>> EventKind("feedback").dataset
        'driftline.feedback'
    """

    PREDICTION = "prediction"
    FEEDBACK = "feedback"

    @property
    def dataset(self) -> str:
        """The ECS ``event.dataset`` of canonical events of this kind."""
        return "driftline.predictions" if self is EventKind.PREDICTION else "driftline.feedback"

    @property
    def schema_name(self) -> str:
        """The schema file (``schemas/<name>.avsc``) of this kind."""
        return "prediction_event" if self is EventKind.PREDICTION else "feedback_event"


class ErrorType(StrEnum):
    """Machine-readable kinds of failure, the dead letter's ``error_type``.

    * ``decode_error``: the bytes are not an event (unknown framing, corrupt
      Avro, unknown schema, invalid JSON); replaying will not help.
    * ``mapping_error``: a JSON line whose fields have the wrong types.
    * ``validation_error``: a decoded event breaks a rule (missing or empty
      field, NaN, out-of-range timestamp, too many features...).
    * ``configuration_error``: the pipeline cannot read it as configured (a
      Confluent-framed record without a registry, a topic mapped to no kind);
      replay after fixing the configuration.
    * ``internal_error``: a bug in this stage; the reason names the exception.
    """

    DECODE = "decode_error"
    MAPPING = "mapping_error"
    VALIDATION = "validation_error"
    CONFIGURATION = "configuration_error"
    INTERNAL = "internal_error"


@dataclass(slots=True)
class RawRecord:
    """One Kafka record as read: value and key bytes, where it came from, its broker timestamp.

    Not frozen, on purpose: a frozen dataclass costs ~2 µs more to build, per
    record. Treat it as read-only.

    Example:
        >>> RawRecord(b"{}", None, "driftline.predictions", 3, 1200).partition
        3
    """

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(slots=True)
class NormalizedEvent:
    """A valid event in canonical form (read-only by convention; not frozen, for speed).

    ``document`` is the plain JSON-serializable dict, with only the fields the
    Elasticsearch templates map; ``request_id`` (its ``request.id``) and
    ``timestamp_ms`` (its ``@timestamp`` as integer epoch ms) are the join key
    and event time. ``topic``/``partition``/``offset`` say where it came from.
    """

    kind: EventKind
    request_id: str
    timestamp_ms: int
    document: dict[str, Any]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A record this stage rejected, with everything needed to understand and replay it.

    ``timestamp_ms`` is when it was rejected; ``record_timestamp_ms`` the
    Kafka record's own timestamp, if the broker gave one.

    Example:
        >>> dl = DeadLetterRecord(b"\\xff", None, "not an event", "decode_error", "driftline.predictions", 0, 7, 1_763_850_000_000)
        >>> dl.to_avro()["source_offset"], dl.to_document()["event"]["original"]
        (7, '/w==')
    """

    raw: bytes
    raw_key: bytes | None
    reason: str
    error_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    timestamp_ms: int
    stage: str = "normalize"
    record_timestamp_ms: int | None = None

    def to_avro(self) -> dict[str, Any]:
        """The record for ``schemas/dead_letter.avsc`` (encode with ``make_codec("dead_letter")``)."""
        return {
            "raw": self.raw,
            "raw_key": self.raw_key,
            "reason": self.reason,
            "error_type": self.error_type,
            "stage": self.stage,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "timestamp": self.timestamp_ms,
        }

    def to_document(self) -> dict[str, Any]:
        """The document for the ``deadletters`` stream: base64 raw bytes, ``error.*``, ``kafka.*``.

        ``@timestamp`` is the Kafka record's timestamp when known, so a replay
        lands in the same daily index and overwrites (the id is topic,
        partition, offset, stage and type); otherwise the rejection time.
        """
        kafka: dict[str, Any] = {
            "topic": self.source_topic,
            "partition": self.source_partition,
            "offset": self.source_offset,
        }
        if self.raw_key is not None:
            kafka["key"] = base64.b64encode(self.raw_key).decode("ascii")
        moment = self.record_timestamp_ms if self.record_timestamp_ms is not None else self.timestamp_ms
        return {
            "@timestamp": iso_millis(moment),
            "event": {
                "kind": "pipeline_error",
                "dataset": "driftline.deadletters",
                "created": iso_millis(self.timestamp_ms),
                "original": base64.b64encode(self.raw).decode("ascii"),
            },
            "error": {"type": self.error_type, "message": self.reason, "stage": self.stage},
            "kafka": kafka,
        }


class NormalizedBatch(NamedTuple):
    """The outcome of :meth:`Normalizer.normalize_batch`, in input order within each list."""

    events: list[NormalizedEvent]
    dead_letters: list[DeadLetterRecord]


# --- configuration ---------------------------------------------------------------------

#: 2000-01-01T00:00:00Z: nothing driftline monitors happened before.
Y2K_MS = 946_684_800_000
DAY_MS = 86_400_000


def _default_topics() -> dict[str, EventKind]:
    return {"driftline.predictions": EventKind.PREDICTION, "driftline.feedback": EventKind.FEEDBACK}


@dataclass(frozen=True)
class NormalizeConfig:
    """Limits and rules of the normalize stage; the defaults suit most deployments.

    Parameters
    ----------
    topics
        Source topic to the kind of event it carries.
    min_timestamp_ms, max_future_ms
        Event times before ``min_timestamp_ms`` or more than ``max_future_ms``
        after the caller's ``now_ms`` are invalid (clock bugs, seconds sent as
        milliseconds).
    max_id_length
        Longest request, trace and span id, in characters.
    max_name_length
        Longest model name and version, feature, slice and class name.
    max_features, max_classes, max_outputs, max_slices
        Most features (all typed maps and missing names together), class
        scores, predicted outputs and slice attributes per event: each name
        becomes an Elasticsearch field, and an index holds at most 2,000.
    max_latency_ms
        Largest plausible latency; negative latencies are always invalid.
    nan_features
        ``"missing"``: a NaN numeric feature (or a vector containing NaN)
        counts as missing; ``"invalid"``: it rejects the event.
    pseudonymize_features
        Feature names whose values are personal: replaced by a pseudonym
        (purpose = the feature name) and logged as categorical, whatever their
        type; a vector feature of that name is dropped.
    drop_features
        Feature names never logged (removed from every map, and from missing).
    accept_json
        Accept JSON log lines besides Avro.
    json_fields
        Aliases and timestamp units of JSON lines.

    Example:
        >>> NormalizeConfig(max_features=10).topics["driftline.feedback"]
        <EventKind.FEEDBACK: 'feedback'>
    """

    topics: Mapping[str, EventKind] = field(default_factory=_default_topics)
    min_timestamp_ms: int = Y2K_MS
    max_future_ms: int = DAY_MS
    max_id_length: int = 256
    max_name_length: int = 256
    max_features: int = 256
    max_classes: int = 256
    max_outputs: int = 64
    max_slices: int = 32
    max_latency_ms: float = float(DAY_MS)
    nan_features: Literal["missing", "invalid"] = "missing"
    pseudonymize_features: frozenset[str] = frozenset()
    drop_features: frozenset[str] = frozenset()
    accept_json: bool = True
    json_fields: JsonFieldMap = field(default_factory=JsonFieldMap)

    def __post_init__(self) -> None:
        topics = {t: EventKind(k) for t, k in self.topics.items()}
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "pseudonymize_features", frozenset(self.pseudonymize_features))
        object.__setattr__(self, "drop_features", frozenset(self.drop_features))
        if self.nan_features not in ("missing", "invalid"):
            raise ValueError(f"nan_features must be 'missing' or 'invalid', not {self.nan_features!r}")
        both = self.pseudonymize_features & self.drop_features
        if both:
            raise ValueError(f"features both pseudonymized and dropped: {', '.join(sorted(both))}")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "NormalizeConfig":
        """Topics from driftline's :class:`~driftline.settings.Settings`, other fields as given.

        The pseudonymized and dropped features and the JSON field map come
        from ``DRIFTLINE_PSEUDONYMIZE_FEATURES``, ``DRIFTLINE_DROP_FEATURES``,
        ``DRIFTLINE_JSON_ALIASES`` and ``DRIFTLINE_JSON_EPOCH_UNIT``.

        Example:
            >>> from driftline.settings import Settings
            >>> sorted(NormalizeConfig.from_settings(Settings(predictions_topic="p", feedback_topic="f")).topics)
            ['f', 'p']
            >>> config = NormalizeConfig.from_settings(Settings(drop_features=["ssn"], json_aliases={"ts": "timestamp"}))
            >>> sorted(config.drop_features), dict(config.json_fields.aliases)
            (['ssn'], {'ts': 'timestamp'})
        """
        topics = {settings.predictions_topic: EventKind.PREDICTION, settings.feedback_topic: EventKind.FEEDBACK}
        values: dict[str, Any] = {"topics": topics}
        if getattr(settings, "pseudonymize_features", None):
            values["pseudonymize_features"] = frozenset(settings.pseudonymize_features)
        if getattr(settings, "drop_features", None):
            values["drop_features"] = frozenset(settings.drop_features)
        aliases, unit = getattr(settings, "json_aliases", None), getattr(settings, "json_epoch_unit", "auto")
        if aliases or unit != "auto":
            values["json_fields"] = JsonFieldMap(aliases=dict(aliases or {}), epoch_unit=unit)
        return cls(**(values | overrides))


@dataclass(frozen=True)
class Decoders:
    """The Avro codecs of the normalize stage: single-object always, Confluent with a registry.

    Example:
        >>> d = Decoders.build()
        >>> sorted(k.value for k in d.single_object), d.confluent
        (['feedback', 'prediction'], None)
    """

    single_object: Mapping[EventKind, SingleObjectCodec]
    confluent: Mapping[EventKind, ConfluentCodec] | None = None

    @classmethod
    def build(
        cls,
        topics: Mapping[str, EventKind] | None = None,
        *,
        registry: Any | None = None,
        writer_schemas: Mapping[EventKind, Sequence[ParsedSchema]] | None = None,
    ) -> "Decoders":
        """Codecs for both kinds; ``writer_schemas`` are older versions still accepted (single-object).

        With a ``registry``, Confluent codecs are made too (subject
        ``<first topic of the kind>-value``), and their schemas are registered
        now, so an unreachable or read-only registry fails at start.
        """
        topics = topics if topics is not None else _default_topics()
        writer_schemas = writer_schemas or {}
        # timestamps read as the milliseconds they are written as: a datetime per event costs more than the rest
        # of the decoding of a small event (benchmarks/ingest_stages.py)
        single = {
            kind: SingleObjectCodec(load_schema(kind.schema_name), writer_schemas.get(kind, ()), logical_types=False)
            for kind in EventKind
        }
        confluent = None
        if registry is not None:
            confluent = {}
            for kind in EventKind:
                topic = next((t for t, k in topics.items() if k == kind), f"driftline.{kind.value}")
                codec = make_codec(kind.schema_name, registry=registry, topic=topic, logical_types=False)
                assert isinstance(codec, ConfluentCodec)
                _ = codec.schema_id  # register now: fail at start, not per record
                confluent[kind] = codec
        return cls(single, confluent)


# --- time -------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def iso_millis(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds, as ``@timestamp`` holds it.

    Example:
        >>> iso_millis(1_763_850_000_123)
        '2025-11-22T22:20:00.123Z'
    """
    second, milli = divmod(ms, 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d" % time.gmtime(second)[:6] + f".{milli:03d}Z"


class _IsoMillis:
    """:func:`iso_millis` remembering the seconds it formatted: a batch's events share few seconds, but
    predictions and their labels (minutes later) alternate, so one remembered second would not do."""

    __slots__ = ("_prefixes",)

    #: Seconds remembered at most (then forgotten all at once).
    MAX_SECONDS = 4096

    def __init__(self) -> None:
        self._prefixes: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        prefix = self._prefixes.get(second)
        if prefix is None:
            prefix = "%04d-%02d-%02dT%02d:%02d:%02d" % time.gmtime(second)[:6]
            if len(self._prefixes) >= self.MAX_SECONDS:
                self._prefixes.clear()
            self._prefixes[second] = prefix
        return f"{prefix}.{milli:03d}Z"


def _describe_ms(ms: int) -> str:
    try:
        return iso_millis(ms)
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms since the epoch"


# --- the stage --------------------------------------------------------------------------


class _Rejected(Exception):
    """Internal: the event is a dead letter; carries the type and reason."""

    def __init__(self, error_type: ErrorType, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


def _invalid(reason: str) -> _Rejected:
    return _Rejected(ErrorType.VALIDATION, reason)


_JSON_FIRST_BYTES = frozenset(b"{[ \t\r\n\xef")  # an object, an array (to say why not), whitespace, a BOM
_MAX_REASON = 2000
_NAME_CACHE_LIMIT = 100_000


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return repr(value).encode("utf-8", "backslashreplace")


def _int_or(value: Any, default: int) -> int:
    return value if type(value) is int else default


def _feature_text(value: Any) -> str:
    """A feature value as the text a pseudonym is computed from (3.0 and 3 agree)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Normalizer:
    """Decode, validate, pseudonymize and canonicalize raw records; never raises on input.

    Parameters
    ----------
    config
        Topics, limits and feature rules (:class:`NormalizeConfig`).
    pseudonymizer
        Required: there is no default key (see
        :mod:`driftline.streams.pseudonymize`). Tests pass one with a fixed key.
    decoders
        The Avro codecs; :meth:`Decoders.build` without a registry by default
        (then a Confluent-framed record is a ``configuration_error`` dead letter).

    :attr:`counts` tallies outcomes: events per kind and dead letters per error type.

    Example:
        >>> n = Normalizer(pseudonymizer=Pseudonymizer(b"0123456789abcdef"))
        >>> line = b'{"request_id": "r-7", "timestamp": 1763850000, "model_name": "m", "model_version": "1", "prediction": "cat"}'
        >>> event = n.normalize(RawRecord(line, b"r-7", "driftline.predictions", 0, 1), now_ms=1_763_850_000_000)
        >>> event.timestamp_ms, event.document["prediction"]
        (1763850000000, {'label': 'cat', 'outputs': [{'label': 'cat'}], 'scores': {}})
        >>> n.normalize(RawRecord(b"hello", None, "driftline.predictions", 0, 2), now_ms=0).reason
        'unrecognized framing: first byte 68; expected c3 01 (Avro single-object), 00 (Confluent wire format) or a JSON object'
    """

    def __init__(
        self,
        config: NormalizeConfig | None = None,
        *,
        pseudonymizer: Pseudonymizer | None,
        decoders: Decoders | None = None,
    ) -> None:
        if pseudonymizer is None:
            raise PseudonymizationKeyError(
                "the normalizer needs a Pseudonymizer with a secret key; there is deliberately no default"
            )
        self.config = config or NormalizeConfig()
        self.pseudonymizer = pseudonymizer
        self.decoders = decoders or Decoders.build(self.config.topics)
        self.counts: dict[str, int] = {}
        self._iso = _IsoMillis()
        self._created: tuple[int, str] | None = None
        self._clean_names: set[str] = set()
        self._feature_rules = bool(self.config.pseudonymize_features or self.config.drop_features)
        self._gone_features = self.config.pseudonymize_features | self.config.drop_features
        self._nan_missing = self.config.nan_features == "missing"

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        pseudonymization_key: Any = None,
        *,
        config: NormalizeConfig | None = None,
        registry: Any | None = None,
        writer_schemas: Mapping[EventKind, Sequence[ParsedSchema]] | None = None,
    ) -> "Normalizer":
        """A normalizer for driftline's settings: its topics and its schema registry, if any.

        The key is ``pseudonymization_key`` if given, else the settings'
        ``pseudonymization_key`` (``DRIFTLINE_PSEUDONYMIZATION_KEY``). Raises
        :class:`~driftline.streams.pseudonymize.PseudonymizationKeyError` at
        start when it is missing or short.

        Example:
            >>> from driftline.settings import Settings
            >>> Normalizer.from_settings(Settings(pseudonymization_key="k" * 32)).decoders.confluent is None
            True
        """
        from driftline.connectors.codec import registry_client

        config = config or NormalizeConfig.from_settings(settings)
        if pseudonymization_key is None:
            pseudonymization_key = getattr(settings, "pseudonymization_key", None)
        pseudonymizer = Pseudonymizer.from_secret(pseudonymization_key)
        if registry is None:
            registry_conf = settings.schema_registry_config()
            registry = registry_client(registry_conf) if registry_conf is not None else None
        decoders = Decoders.build(config.topics, registry=registry, writer_schemas=writer_schemas)
        return cls(config, pseudonymizer=pseudonymizer, decoders=decoders)

    # --- public API ------------------------------------------------------------------

    def normalize(self, record: RawRecord, now_ms: int) -> NormalizedEvent | DeadLetterRecord:
        """One record in, one canonical event or one dead letter out; never raises on input.

        ``now_ms`` is the current time (epoch ms), passed in: it bounds event
        times in the future and stamps dead letters and ``event.created``.
        """
        try:
            kind = self.config.topics.get(record.topic)
            if kind is None:
                raise _Rejected(
                    ErrorType.CONFIGURATION,
                    f"topic {record.topic!r} is not mapped to an event kind (configured: {', '.join(sorted(self.config.topics))})",
                )
            data = self._decode(record.value, kind)
            if kind is EventKind.PREDICTION:
                request_id, ts_ms, doc = self._prediction(data, now_ms)
            else:
                request_id, ts_ms, doc = self._feedback(data, now_ms)
            self.counts[kind.value] = self.counts.get(kind.value, 0) + 1
            return NormalizedEvent(kind, request_id, ts_ms, doc, record.topic, record.partition, record.offset)
        except _Rejected as exc:
            return self._dead(record, exc.error_type, exc.reason, now_ms)
        except DecodeError as exc:
            return self._dead(record, ErrorType.DECODE, exc.reason, now_ms)
        except MappingError as exc:
            return self._dead(record, ErrorType.MAPPING, exc.reason, now_ms)
        except Exception as exc:  # noqa: BLE001 - the stage must not crash on input; a bug is a dead letter too
            return self._dead(record, ErrorType.INTERNAL, f"{type(exc).__name__}: {exc}", now_ms)

    def normalize_batch(self, records: Iterable[RawRecord], now_ms: int) -> NormalizedBatch:
        """Normalize a batch with one ``now_ms``; events and dead letters in input order.

        Example:
            >>> n = Normalizer(pseudonymizer=Pseudonymizer(b"0123456789abcdef"))
            >>> events, dead = n.normalize_batch([RawRecord(b"", None, "driftline.feedback", 0, 0)], now_ms=0)
            >>> len(events), dead[0].reason
            (0, 'empty record value (a tombstone?)')
        """
        events: list[NormalizedEvent] = []
        dead: list[DeadLetterRecord] = []
        normalize = self.normalize
        for record in records:
            out = normalize(record, now_ms)
            if isinstance(out, NormalizedEvent):
                events.append(out)
            else:
                dead.append(out)
        return NormalizedBatch(events, dead)

    # --- decoding --------------------------------------------------------------------

    def _decode(self, value: Any, kind: EventKind) -> dict[str, Any]:
        if not value:
            raise DecodeError("empty record value (a tombstone?)")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise DecodeError(f"record value is {type(value).__name__}, not bytes")
        first = value[0]
        if first == 0xC3:
            return self.decoders.single_object[kind].decode(value)
        if first == CONFLUENT_MAGIC:
            confluent = self.decoders.confluent
            if confluent is None:
                schema_id = int.from_bytes(bytes(value[1:5]), "big") if len(value) >= 5 else None
                detail = f", schema id {schema_id}" if schema_id is not None else ""
                raise _Rejected(
                    ErrorType.CONFIGURATION,
                    f"Confluent-framed record (magic byte 00{detail}) but no schema registry configured "
                    "(DRIFTLINE_SCHEMA_REGISTRY_URL)",
                )
            return confluent[kind].decode(value)
        if first in _JSON_FIRST_BYTES and self.config.accept_json:
            return json_event(value, kind.value, self.config.json_fields)
        expected = "c3 01 (Avro single-object), 00 (Confluent wire format)"
        expected += " or a JSON object" if self.config.accept_json else "; JSON lines are not accepted"
        raise DecodeError(f"unrecognized framing: first byte {first:02x}; expected {expected}")

    # --- dead letters ----------------------------------------------------------------

    def _dead(self, record: RawRecord, error_type: ErrorType, reason: str, now_ms: int) -> DeadLetterRecord:
        """The dead letter of ``record``; tolerant of a malformed record object (it must not raise)."""
        self.counts[error_type.value] = self.counts.get(error_type.value, 0) + 1
        key = getattr(record, "key", None)
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 3] + "..."
        record_ms = getattr(record, "timestamp_ms", None)
        return DeadLetterRecord(
            raw=_as_bytes(getattr(record, "value", None)),
            raw_key=None if key is None else _as_bytes(key),
            reason=reason,
            error_type=error_type.value,
            source_topic=str(getattr(record, "topic", "")),
            source_partition=_int_or(getattr(record, "partition", None), -1),
            source_offset=_int_or(getattr(record, "offset", None), -1),
            timestamp_ms=now_ms,
            record_timestamp_ms=record_ms if type(record_ms) is int and record_ms >= 0 else None,
        )

    # --- shared checks ---------------------------------------------------------------

    def _created_iso(self, now_ms: int) -> str:
        created = self._created
        if created is None or created[0] != now_ms:
            created = self._created = (now_ms, iso_millis(now_ms))
        return created[1]

    def _timestamp(self, value: Any, now_ms: int) -> int:
        if value is None:
            raise _invalid("timestamp is missing")
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            ms = (value - _EPOCH) // _ONE_MS
        elif isinstance(value, int) and not isinstance(value, bool):
            ms = value
        else:
            raise _invalid(f"timestamp is not a time: {_preview(value)}")
        cfg = self.config
        if ms < cfg.min_timestamp_ms:
            raise _invalid(f"timestamp {_describe_ms(ms)} is before {_describe_ms(cfg.min_timestamp_ms)}")
        if ms > now_ms + cfg.max_future_ms:
            raise _invalid(
                f"timestamp {_describe_ms(ms)} is more than {cfg.max_future_ms} ms after now ({_describe_ms(now_ms)})"
            )
        return ms

    def _id(self, value: Any, name: str, *, required: bool) -> str | None:
        """A required id (missing, empty or blank is invalid) or an optional one (then absent)."""
        if value is None or value == "" or (isinstance(value, str) and value.isspace()):
            if required:
                raise _invalid(f"{name} is missing, empty or blank")
            return None
        if not isinstance(value, str):
            raise _invalid(f"{name} is not a string: {_preview(value)}")
        if len(value) > self.config.max_id_length:
            raise _invalid(f"{name} is {len(value)} characters long, more than {self.config.max_id_length}")
        return value

    def _name(self, value: Any, name: str) -> str:
        if value is None or value == "" or not isinstance(value, str) or value.isspace():
            raise _invalid(f"{name} is missing or empty")
        if len(value) > self.config.max_name_length:
            raise _invalid(f"{name} is {len(value)} characters long, more than {self.config.max_name_length}")
        return value

    def _clean_key(self, key: Any, where: str) -> str:
        """A valid field name, with dots as ``_``; names that need no change are remembered."""
        if not isinstance(key, str) or not key or key.isspace():
            raise _invalid(f"{where} has an empty or blank name")
        if len(key) > self.config.max_name_length:
            raise _invalid(f"{where} name {key[:40]!r}... is longer than {self.config.max_name_length} characters")
        if "." in key:
            return key.replace(".", "_")
        clean = self._clean_names
        if len(clean) >= _NAME_CACHE_LIMIT:
            clean.clear()
        clean.add(key)
        return key

    def _keys(self, mapping: dict[str, Any], where: str) -> dict[str, Any]:
        """``mapping`` with valid, dot-free keys (dots become ``_``); the same dict if nothing changes."""
        clean = self._clean_names
        if clean.issuperset(mapping):
            return mapping
        out: dict[str, Any] = {}
        renamed = False
        for key, value in mapping.items():
            target = key if key in clean else self._clean_key(key, where)
            if target in out:
                raise _invalid(f"{where} has two names that both read {target!r} once dots become '_'")
            renamed = renamed or target != key
            out[target] = value
        return out if renamed else mapping

    def _names(self, names: list[str], where: str) -> list[str]:
        clean = self._clean_names
        if clean.issuperset(names):
            return names
        return [name if name in clean else self._clean_key(name, where) for name in names]

    def _finite_map(self, mapping: dict[str, float], where: str) -> dict[str, float]:
        total = sum(mapping.values())
        if total - total == 0.0:  # every value finite (fast path: one C loop)
            return mapping
        for key, value in mapping.items():
            if not math.isfinite(value):
                raise _invalid(f"{where}[{key!r}] is {value!r}; numbers must be finite")
        return mapping  # all finite: the sum only overflowed

    # --- predictions -----------------------------------------------------------------

    def _prediction(self, data: dict[str, Any], now_ms: int) -> tuple[str, int, dict[str, Any]]:
        cfg = self.config
        request_id = self._id(data.get("request_id"), "request_id", required=True)
        assert request_id is not None
        ts_ms = self._timestamp(data.get("timestamp"), now_ms)
        model = {
            "name": self._name(data.get("model_name"), "model_name"),
            "version": self._name(data.get("model_version"), "model_version"),
        }
        doc: dict[str, Any] = {
            "@timestamp": self._iso(ts_ms),
            "event": {"kind": "event", "dataset": "driftline.predictions", "created": self._created_iso(now_ms)},
            "model": model,
            "request": {"id": request_id, "type": data.get("request_type") or "online"},
        }
        subject = data.get("subject_id")
        if subject:
            doc["subject"] = {"id": self.pseudonymizer.pseudonymize(subject, "subject")}
        latency = data.get("latency_ms")
        if latency is not None:
            if not 0.0 <= latency <= cfg.max_latency_ms:  # False for NaN too
                raise _invalid(f"latency_ms is {latency!r}; expected 0 to {cfg.max_latency_ms:g}")
            doc["latency_ms"] = latency
        doc["prediction"] = self._outputs(data.get("prediction") or [], data.get("scores") or {})
        doc["features"] = self._features(data)
        summary = data.get("input_summary")
        if summary:
            shape = summary.get("shape") or []
            size = summary.get("size_bytes")
            description = summary.get("description")
            if shape or size is not None or description:
                out: dict[str, Any] = {}
                if shape:
                    out["shape"] = shape
                if size is not None:
                    if size < 0:
                        raise _invalid(f"input_summary.size_bytes is negative: {size}")
                    out["size_bytes"] = size
                if description:
                    out["description"] = description
                doc["input"] = {"summary": out}
        slices = data.get("slices")
        if slices:
            if len(slices) > cfg.max_slices:
                raise _invalid(f"slices has {len(slices)} attributes, more than {cfg.max_slices}")
            doc["labels"] = self._keys(slices, "slices")
        trace = data.get("trace")
        if trace:
            trace_id = self._id(trace.get("trace_id"), "trace.trace_id", required=False)
            span_id = self._id(trace.get("span_id"), "trace.span_id", required=False)
            if trace_id is not None:
                doc["trace"] = {"id": trace_id}
            if span_id is not None:
                doc["span"] = {"id": span_id}
        return request_id, ts_ms, doc

    def _outputs(self, outputs: list[dict[str, Any]], scores: dict[str, float]) -> dict[str, Any]:
        cfg = self.config
        if not outputs:
            raise _invalid("prediction is empty; at least one output (label or value) is required")
        if len(outputs) > cfg.max_outputs:
            raise _invalid(f"prediction has {len(outputs)} outputs, more than {cfg.max_outputs}")
        kept: list[dict[str, Any]] = []
        top: dict[str, Any] | None = None
        top_score = -math.inf
        for i, output in enumerate(outputs):
            label = output.get("label")
            value = output.get("value")
            score = output.get("score")
            entry: dict[str, Any] = {}
            if label:
                entry["label"] = label
            if value is not None:
                if not math.isfinite(value):
                    raise _invalid(f"prediction[{i}].value is {value!r}; numbers must be finite")
                entry["value"] = value
            if not entry:
                raise _invalid(f"prediction[{i}] has neither a label nor a value")
            if score is not None:
                if not math.isfinite(score):
                    raise _invalid(f"prediction[{i}].score is {score!r}; numbers must be finite")
                entry["score"] = score
                if score > top_score:
                    top, top_score = entry, score
            kept.append(entry)
        if top is None:
            top = kept[0]
        if scores:
            if len(scores) > cfg.max_classes:
                raise _invalid(f"scores has {len(scores)} classes, more than {cfg.max_classes}")
            scores = self._keys(self._finite_map(scores, "scores"), "scores")
        prediction = dict(top)
        prediction["outputs"] = kept
        prediction["scores"] = scores
        return prediction

    def _features(self, data: dict[str, Any]) -> dict[str, Any]:
        numeric = data.get("numeric_features") or {}
        categorical = data.get("categorical_features") or {}
        boolean = data.get("boolean_features") or {}
        vector = data.get("vector_features") or {}
        missing = data.get("null_features") or []
        total = len(numeric) + len(categorical) + len(boolean) + len(vector) + len(missing)
        if total > self.config.max_features:
            raise _invalid(f"the event has {total} features, more than {self.config.max_features}")
        if self._feature_rules:
            numeric, categorical, boolean, vector, missing = self._apply_feature_rules(
                numeric, categorical, boolean, vector, missing
            )
        total = sum(numeric.values())
        if total - total != 0.0:  # a NaN or infinity somewhere (or an overflowing sum)
            numeric, missing = self._finite_features(numeric, missing)
        if vector:
            vector, missing = self._finite_vectors(vector, missing)
        return {
            "numeric": self._keys(numeric, "numeric_features"),
            "categorical": self._keys(categorical, "categorical_features"),
            "boolean": self._keys(boolean, "boolean_features"),
            "vector": self._keys(vector, "vector_features"),
            "missing": self._names(missing, "null_features"),
        }

    def _finite_features(self, numeric: dict[str, float], missing: list[str]) -> tuple[dict[str, float], list[str]]:
        kept: dict[str, float] = {}
        nan_names: list[str] = []
        for name, value in numeric.items():
            if value != value:
                if not self._nan_missing:
                    raise _invalid(f"numeric_features[{name!r}] is NaN")
                nan_names.append(name)
            elif value in (math.inf, -math.inf):
                raise _invalid(f"numeric_features[{name!r}] is {value!r}; numbers must be finite")
            else:
                kept[name] = value
        return kept, [*missing, *nan_names] if nan_names else missing

    def _finite_vectors(
        self, vector: dict[str, list[float]], missing: list[str]
    ) -> tuple[dict[str, list[float]], list[str]]:
        kept: dict[str, list[float]] | None = None
        nan_names: list[str] = []
        for name, values in vector.items():
            total = sum(values)
            if total - total == 0.0:
                continue
            if any(v in (math.inf, -math.inf) for v in values):
                raise _invalid(f"vector_features[{name!r}] holds an infinity; numbers must be finite")
            if any(v != v for v in values):
                if not self._nan_missing:
                    raise _invalid(f"vector_features[{name!r}] holds a NaN")
                if kept is None:
                    kept = dict(vector)
                del kept[name]
                nan_names.append(name)
        if kept is None:
            return vector, missing
        return kept, [*missing, *nan_names]

    def _apply_feature_rules(
        self,
        numeric: dict[str, float],
        categorical: dict[str, str],
        boolean: dict[str, bool],
        vector: dict[str, list[float]],
        missing: list[str],
    ) -> tuple[dict[str, float], dict[str, str], dict[str, bool], dict[str, list[float]], list[str]]:
        drop = self.config.drop_features
        hide = self.config.pseudonymize_features
        pseudonymize = self.pseudonymizer.pseudonymize
        new_categorical = {k: v for k, v in categorical.items() if k not in drop}
        for name in hide.intersection(categorical):
            new_categorical[name] = pseudonymize(categorical[name], name)
        for name in hide.intersection(numeric):
            if math.isfinite(numeric[name]):
                new_categorical[name] = pseudonymize(_feature_text(numeric[name]), name)
        for name in hide.intersection(boolean):
            new_categorical[name] = pseudonymize(_feature_text(boolean[name]), name)
        gone = self._gone_features
        return (
            {k: v for k, v in numeric.items() if k not in gone} if not gone.isdisjoint(numeric) else numeric,
            new_categorical,
            {k: v for k, v in boolean.items() if k not in gone} if not gone.isdisjoint(boolean) else boolean,
            {k: v for k, v in vector.items() if k not in gone} if not gone.isdisjoint(vector) else vector,
            [n for n in missing if n not in drop] if not drop.isdisjoint(missing) else missing,
        )

    # --- feedback --------------------------------------------------------------------

    def _feedback(self, data: dict[str, Any], now_ms: int) -> tuple[str, int, dict[str, Any]]:
        request_id = self._id(data.get("request_id"), "request_id", required=True)
        assert request_id is not None
        ts_ms = self._timestamp(data.get("timestamp"), now_ms)
        labels = data.get("labels") or []
        values = data.get("values") or []
        if not labels and not values:
            raise _invalid("feedback has neither labels nor values; at least one is required")
        for i, label in enumerate(labels):
            if not label or label.isspace():
                raise _invalid(f"labels[{i}] is empty")
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise _invalid(f"values[{i}] is {value!r}; numbers must be finite")
        iso = self._iso(ts_ms)
        feedback: dict[str, Any] = {
            "labels": labels,
            "values": values,
            "source": data.get("label_source") or "UNKNOWN",
            "timestamp": iso,
        }
        rater = data.get("rater_id")
        if rater:
            feedback["rater_id"] = self.pseudonymizer.pseudonymize(rater, "rater")
        confidence = data.get("confidence")
        if confidence is not None:
            if not 0.0 <= confidence <= 1.0:  # False for NaN too
                raise _invalid(f"confidence is {confidence!r}; expected 0 to 1")
            feedback["confidence"] = confidence
        doc: dict[str, Any] = {
            "@timestamp": iso,
            "event": {"kind": "event", "dataset": "driftline.feedback", "created": self._created_iso(now_ms)},
            "request": {"id": request_id},
            "feedback": feedback,
        }
        model_name = data.get("model_name")
        if model_name:
            doc["model"] = {"name": self._name(model_name, "model_name")}
        return request_id, ts_ms, doc

