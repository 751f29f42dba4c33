"""Avro encoding and decoding of driftline's events, in two framings.

* **Single-object encoding** (Avro spec): ``C3 01`` + the writer schema's
  8-byte CRC-64-AVRO fingerprint + the Avro body. It needs no registry: every
  reader knows the schemas in ``schemas/`` (and any older versions it is given).
* **Confluent wire format**: magic byte ``0`` + 4-byte big-endian schema id +
  the Avro body, with ids from a schema registry through confluent-kafka's
  ``SchemaRegistryClient`` (``mock://`` gives its in-process registry).

Decoding resolves an older writer schema to the current reader schema (Avro
schema evolution). Anything that cannot be decoded raises :class:`DecodeError`
with the reason — never another exception type.

Example:
    >>> codec = SingleObjectCodec(load_schema("feedback_event"))
    >>> data = codec.encode({"request_id": "r-1", "timestamp": 0, "labels": ["spam"]})
    >>> data[:2].hex()
    'c301'
    >>> codec.decode(data)["labels"]
    ['spam']
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

#: Avro schema as parsed by :func:`fastavro.parse_schema`.
ParsedSchema = dict[str, Any]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
_SINGLE_OBJECT_HEADER = 10  # 2 magic + 8 fingerprint
_CONFLUENT_HEADER = struct.Struct(">bI")  # magic byte + schema id

#: The event types of the contract, by the file name of their current schema.
EVENT_SCHEMAS = ("prediction_event", "feedback_event", "dead_letter")


class DecodeError(ValueError):
    """Bytes that are not a valid event: the one error :meth:`decode` raises.

    ``reason`` says what is wrong, readable by a person; it goes into the
    dead letter record.

    Example:
        >>> try:
        ...     SingleObjectCodec(load_schema("feedback_event")).decode(b"garbage")
        ... except DecodeError as exc:
        ...     print(exc.reason)
        not single-object encoded: expected magic c301, got 6761
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """An event that does not match its schema (a producer-side bug)."""


@cache
def load_schema(name: str) -> ParsedSchema:
    """The parsed current schema ``schemas/<name>.avsc``.

    Example:
        >>> load_schema("prediction_event")["name"]
        'driftline.events.PredictionEvent'
    """
    text = files("driftline.schemas").joinpath(f"{name}.avsc").read_text()
    return parse_schema_json(json.loads(text))


def parse_schema_json(schema: Mapping[str, Any] | str) -> ParsedSchema:
    """Parse an Avro schema given as a dict or JSON text (with logical types)."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    return fastavro.parse_schema(dict(schema))  # type: ignore[arg-type]


def schema_fingerprint(schema: ParsedSchema) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint of a schema, as single-object encoding writes it.

    Example:
        >>> schema_fingerprint(fastavro.parse_schema("null")).hex()
        '8a8f25cce724dd63'
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def schema_json(schema: ParsedSchema) -> str:
    """The schema's canonical JSON text, as registered in a schema registry."""
    return to_parsing_canonical_form(schema)


class Codec(Protocol):
    """What the producer and the stream need from a codec."""

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]: ...

    def decode(self, data: bytes) -> dict[str, Any]: ...


def without_logical_types(schema: ParsedSchema) -> ParsedSchema:
    """The schema with its ``logicalType`` annotations removed: values read as their underlying type.

    A ``timestamp-millis`` field then reads as the ``long`` it is written as,
    without a ``datetime`` made per record. The fingerprint is the same (the
    Parsing Canonical Form has no logical types), so either schema reads the
    other's data.

    Example:
        >>> schema = parse_schema_json({"type": "record", "name": "T", "fields": [
        ...     {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})
        >>> body = io.BytesIO(); fastavro.schemaless_writer(body, schema, {"at": 1500})
        >>> fastavro.schemaless_reader(io.BytesIO(body.getvalue()), without_logical_types(schema), None)
        {'at': 1500}
    """

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("logicalType", "__fastavro_parsed",
                                                                        "__named_schemas")}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return fastavro.parse_schema(strip(schema))  # type: ignore[no-any-return]


class _AvroBody:
    """Encodes and decodes Avro bodies of one reader schema, resolving older writers.

    With ``logical_types=False`` bodies are read without logical-type
    conversions (see :func:`without_logical_types`); writing is the same.
    """

    def __init__(self, schema: ParsedSchema, logical_types: bool = True) -> None:
        self.schema = schema
        self.logical_types = logical_types
        self.reader = schema if logical_types else without_logical_types(schema)
        self._buffer = io.BytesIO()

    def writer_form(self, writer: ParsedSchema) -> ParsedSchema:
        """An older writer schema as this body resolves it (without logical types if it reads without)."""
        return writer if self.logical_types else without_logical_types(writer)

    def encode_body(self, record: Mapping[str, Any], header: bytes) -> bytes:
        buf = self._buffer
        buf.seek(0)
        buf.truncate()
        buf.write(header)
        try:
            fastavro.schemaless_writer(buf, self.schema, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{self.schema['name']}: {type(exc).__name__}: {exc}") from exc
        return buf.getvalue()

    def decode_body(self, data: bytes, offset: int, writer: ParsedSchema | None) -> dict[str, Any]:
        """Decode ``data[offset:]``; ``writer`` is None when it is the reader schema."""
        stream = io.BytesIO(data)
        stream.seek(offset)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(stream, self.reader, None)
            else:
                record = fastavro.schemaless_reader(stream, writer, self.reader)
        except DecodeError:
            raise
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}: {exc}") from None
        if stream.tell() != len(data):
            raise DecodeError(f"{len(data) - stream.tell()} trailing bytes after the Avro body")
        if not isinstance(record, dict):
            raise DecodeError("Avro body is not a record")
        return record


class SingleObjectCodec:
    """Avro single-object encoding: ``C3 01`` + CRC-64-AVRO fingerprint + body.

    Parameters
    ----------
    schema
        The current (reader and writer) schema.
    writer_schemas
        Older versions of the same record that readers must still accept;
        their bodies are resolved to ``schema``.
    logical_types
        Whether decoding applies logical types (a ``timestamp-millis`` as a
        ``datetime``); False reads the underlying values (an ``int``), faster.

    Example:
        >>> codec = SingleObjectCodec(load_schema("feedback_event"))
        >>> codec.decode(codec.encode({"request_id": "r-2", "timestamp": 5}))["label_source"]
        'UNKNOWN'
    """

    def __init__(self, schema: ParsedSchema, writer_schemas: Sequence[ParsedSchema] = (),
                 logical_types: bool = True) -> None:
        self.schema = schema
        self._body = _AvroBody(schema, logical_types)
        self.fingerprint = schema_fingerprint(schema)
        self._header = SINGLE_OBJECT_MAGIC + self.fingerprint
        self._writers: dict[bytes, ParsedSchema | None] = {self.fingerprint: None}
        for old in writer_schemas:
            fp = schema_fingerprint(old)
            if fp != self.fingerprint:
                self._writers[fp] = self._body.writer_form(old)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one record; raises :class:`EncodeError` if it does not match the schema."""
        return self._body.encode_body(record, self._header)

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode a batch of records (one reused buffer; the producer's hot path)."""
        encode = self._body.encode_body
        header = self._header
        return [encode(record, header) for record in records]

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one framed record, or raise :class:`DecodeError`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _SINGLE_OBJECT_HEADER:
            if data[:2] != SINGLE_OBJECT_MAGIC[: len(data[:2])]:
                raise DecodeError(f"not single-object encoded: expected magic c301, got {data[:2].hex() or 'nothing'}")
            raise DecodeError(f"truncated: {len(data)} bytes, shorter than the 10-byte single-object header")
        if data[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(f"not single-object encoded: expected magic c301, got {data[:2].hex()}")
        fp = data[2:_SINGLE_OBJECT_HEADER]
        try:
            writer = self._writers[fp]
        except KeyError:
            raise DecodeError(
                f"unknown schema fingerprint {fp.hex()} for {self.schema['name']}"
            ) from None
        return self._body.decode_body(data, _SINGLE_OBJECT_HEADER, writer)


class ConfluentCodec:
    """Confluent wire format: magic byte 0 + 4-byte schema id + body, ids from a registry.

    Parameters
    ----------
    schema
        The current schema; registered under ``subject`` on first use.
    registry
        A ``confluent_kafka.schema_registry.SchemaRegistryClient`` (``mock://``
        URL for the in-process registry).
    subject
        Registry subject, by the TopicNameStrategy ``<topic>-value``.
    logical_types
        As for :class:`SingleObjectCodec`.

    Example:
        >>> from confluent_kafka.schema_registry import SchemaRegistryClient
        >>> registry = SchemaRegistryClient.new_client({"url": "mock://doc"})
        >>> codec = ConfluentCodec(load_schema("feedback_event"), registry, "driftline.feedback-value")
        >>> data = codec.encode({"request_id": "r-3", "timestamp": 0})
        >>> data[0], codec.decode(data)["request_id"]
        (0, 'r-3')
    """

    def __init__(self, schema: ParsedSchema, registry: Any, subject: str, logical_types: bool = True) -> None:
        self.schema = schema
        self.registry = registry
        self.subject = subject
        self._body = _AvroBody(schema, logical_types)
        self._schema_id: int | None = None
        self._writers: dict[int, ParsedSchema | None] = {}

    @property
    def schema_id(self) -> int:
        """The registry id of the current schema (registered on first use)."""
        if self._schema_id is None:
            from confluent_kafka.schema_registry import Schema

            self._schema_id = int(self.registry.register_schema(self.subject, Schema(schema_json(self.schema), "AVRO")))
            self._writers[self._schema_id] = None
        return self._schema_id

    def _header(self) -> bytes:
        return _CONFLUENT_HEADER.pack(CONFLUENT_MAGIC, self.schema_id)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one record; raises :class:`EncodeError` if it does not match the schema."""
        return self._body.encode_body(record, self._header())

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode a batch of records with one reused buffer."""
        header = self._header()
        encode = self._body.encode_body
        return [encode(record, header) for record in records]

    def _writer_schema(self, schema_id: int) -> ParsedSchema | None:
        if self._schema_id is None:
            _ = self.schema_id  # our own id maps to "no resolution needed"
        if schema_id in self._writers:
            return self._writers[schema_id]
        try:
            registered = self.registry.get_schema(schema_id)
        except Exception as exc:  # registry errors: unknown id, unreachable registry
            raise DecodeError(f"schema id {schema_id} not found in the registry: {exc}") from None
        if getattr(registered, "schema_type", "AVRO") not in (None, "AVRO"):
            raise DecodeError(f"schema id {schema_id} is {registered.schema_type}, not AVRO")
        try:
            writer = parse_schema_json(registered.schema_str)
        except Exception as exc:
            raise DecodeError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from None
        same = schema_fingerprint(writer) == schema_fingerprint(self.schema)
        resolved = None if same else self._body.writer_form(writer)
        self._writers[schema_id] = resolved
        return resolved

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one framed record, or raise :class:`DecodeError`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if not data or data[0] != CONFLUENT_MAGIC:
            raise DecodeError(f"not Confluent-framed: expected magic byte 00, got {data[:1].hex() or 'nothing'}")
        if len(data) < _CONFLUENT_HEADER.size:
            raise DecodeError(f"truncated: {len(data)} bytes, shorter than the 5-byte Confluent header")
        _, schema_id = _CONFLUENT_HEADER.unpack_from(data)
        return self._body.decode_body(data, _CONFLUENT_HEADER.size, self._writer_schema(schema_id))


def make_codec(
    name: str,
    *,
    registry: Any | None = None,
    topic: str | None = None,
    writer_schemas: Sequence[ParsedSchema] = (),
    logical_types: bool = True,
) -> SingleObjectCodec | ConfluentCodec:
    """The codec for one event type: Confluent framing with a registry, single-object without.

    ``logical_types=False`` decodes without logical-type conversions (see :class:`SingleObjectCodec`).

    Example:
        >>> make_codec("prediction_event").__class__.__name__
        'SingleObjectCodec'
    """
    schema = load_schema(name)
    if registry is None:
        return SingleObjectCodec(schema, writer_schemas, logical_types)
    if topic is None:
        raise ValueError("a registry codec needs the topic, for the <topic>-value subject")
    return ConfluentCodec(schema, registry, f"{topic}-value", logical_types)


def registry_client(conf: Mapping[str, Any]) -> Any:
    """A schema-registry client from settings (``mock://`` → the in-process registry).

    Example:
        >>> registry_client({"url": "mock://x"}).__class__.__name__
        'MockSchemaRegistryClient'
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client(dict(conf))
