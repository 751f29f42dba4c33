"""Logical index streams, time-based index names and idempotent document ids.

A *stream* is one kind of document driftline indexes (predictions, joined
outcomes, drift events, ...). Each stream writes to daily indices named
``<prefix>-<stream>-YYYY.MM.DD`` after the document's ``@timestamp`` (UTC), and
has one index template matching ``<prefix>-<stream>-*``.

Document ids are deterministic, so replaying Kafka after a crash overwrites
documents instead of duplicating them. This holds only if ``@timestamp`` is
deterministic too (event time, never processing time): a replay on another
day would otherwise write the same id into another daily index.

Example:
    >>> from datetime import datetime, timezone
    >>> index_name("driftline", "predictions", datetime(2026, 11, 22, 23, 59, tzinfo=timezone.utc))
    'driftline-predictions-2026.11.22'
    >>> document_id({"request": {"id": "r-1"}}, ("request.id",))
    'r-1'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: Elasticsearch refuses ``_id`` values longer than this many UTF-8 bytes.
MAX_ID_BYTES = 512

_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
# No "-" in stream names: then no stream's pattern ``<prefix>-<name>-*`` can
# match another stream's indices (``drift-*`` would match ``drift-events-...``).
_STREAM_RE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")


class InvalidDocument(ValueError):
    """A document the sink cannot place: no usable ``@timestamp`` or id field.

    ``error_type`` is a short machine-readable kind (``invalid_timestamp``,
    ``missing_id_field``, ``invalid_id``), the message is the reason.
    """

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


@dataclass(frozen=True)
class IndexStream:
    """One logical stream of documents: its name, mapping and id rule.

    Parameters
    ----------
    name
        Lower-case name without ``-``; the middle part of the index names.
    properties
        Explicit field mappings of this stream (merged over the common ECS
        fields by :func:`driftline.connectors.elasticsearch.mappings.index_template`).
    dynamic_templates
        Extra dynamic templates, tried before the common ones.
    id_fields
        Dotted field paths whose values make the document id; empty means
        the caller passes ``doc_id`` to :meth:`ElasticsearchSink.add`.
    dynamic
        The mapping's ``dynamic`` setting: ``"true"``, or ``"false"`` to keep
        unknown fields in ``_source`` without indexing them (no mapping
        conflict can then reject a document on an unknown field).
    settings
        Extra index settings for the template.
    description
        One line for the template's ``_meta``.

    Example:
        >>> s = IndexStream("metrics", {"metric": {"properties": {"value": {"type": "double"}}}})
        >>> s.pattern("driftline")
        'driftline-metrics-*'
    """

    name: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    dynamic_templates: Sequence[Mapping[str, Any]] = ()
    id_fields: tuple[str, ...] = ()
    dynamic: str = "true"
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not _STREAM_RE.match(self.name):
            raise ValueError(f"stream name {self.name!r} must match {_STREAM_RE.pattern} (lower case, no '-')")
        if self.dynamic not in ("true", "false", "strict"):
            raise ValueError(f"dynamic must be 'true', 'false' or 'strict', not {self.dynamic!r}")

    def pattern(self, prefix: str) -> str:
        """The index pattern of this stream, for templates and searches."""
        return f"{prefix}-{self.name}-*"

    def template_name(self, prefix: str) -> str:
        """The name of this stream's index template."""
        return f"{prefix}-{self.name}"


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start an index name, else raise ``ValueError``.

    Example:
        >>> check_prefix("driftline")
        'driftline'
    """
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"index prefix {prefix!r} must match {_PREFIX_RE.pattern} (lower case)")
    return prefix


def event_time(document: Mapping[str, Any], field_name: str = "@timestamp") -> datetime:
    """The document's event time as an aware UTC datetime.

    Accepts what Elasticsearch's default date format accepts and Python
    produces: an aware or naive (= UTC) ``datetime``, an ISO-8601 string, or
    epoch milliseconds (int, float or a string of digits). Anything else
    raises :class:`InvalidDocument`.

    Example:
        >>> event_time({"@timestamp": 1_763_850_000_000}).isoformat()
        '2025-11-22T22:20:00+00:00'
        >>> event_time({"@timestamp": "2026-11-22T01:00:00+02:00"}).date().isoformat()
        '2026-11-21'
    """
    value = document.get(field_name)
    if isinstance(value, bool) or not isinstance(value, (datetime, int, float, str)):
        raise InvalidDocument("invalid_timestamp", f"{field_name} is missing or not a date: {value!r}")
    try:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, (int, float)):
            moment = datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        elif value.isdigit():
            moment = datetime.fromtimestamp(int(value) / 1000.0, tz=timezone.utc)
        else:
            moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidDocument("invalid_timestamp", f"{field_name} {value!r} is not a date: {exc}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def index_name(prefix: str, stream: str, moment: datetime) -> str:
    """The daily index of ``stream`` that holds documents of ``moment`` (UTC).

    Example:
        >>> from datetime import datetime
        >>> index_name("driftline", "alerts", datetime(2026, 1, 2))
        'driftline-alerts-2026.01.02'
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return f"{prefix}-{stream}-{moment.year:04d}.{moment.month:02d}.{moment.day:02d}"


def get_field(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path``, nested (``{"a": {"b": 1}}``) or flat (``{"a.b": 1}``).

    Example:
        >>> get_field({"model": {"name": "m"}}, "model.name"), get_field({"model.name": "m"}, "model.name")
        ('m', 'm')
        >>> get_field({}, "model.name") is None
        True
    """
    if path in document:
        return document[path]
    node: Any = document
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            return None
        rest = ".".join(parts[i:])
        if rest in node:  # a flat key below a nested object
            return node[rest]
        if part not in node:
            return None
        node = node[part]
    return node


def document_id(document: Mapping[str, Any], fields: Sequence[str]) -> str:
    """A deterministic ``_id`` from the values of ``fields``.

    One field gives its value as is (readable: ``GET index/_doc/<request id>``)
    unless longer than Elasticsearch allows; several fields give a 32-hex-digit
    BLAKE2b hash of their length-prefixed values (no separator ambiguity).
    A missing or empty field raises :class:`InvalidDocument`.

    Example:
        >>> document_id({"request": {"id": "r-1"}}, ["request.id"])
        'r-1'
        >>> len(document_id({"a": "x", "b": 2}, ["a", "b"]))
        32
    """
    if not fields:
        raise ValueError("document_id needs at least one field")
    values: list[str] = []
    for path in fields:
        value = get_field(document, path)
        if value is None or value == "" or isinstance(value, (Mapping, list, tuple)):
            raise InvalidDocument("missing_id_field", f"id field {path} is missing, empty or not a scalar: {value!r}")
        values.append(value if isinstance(value, str) else _scalar_text(value))
    if len(values) == 1 and len(values[0].encode("utf-8")) <= MAX_ID_BYTES:
        return values[0]
    digest = hashlib.blake2b(digest_size=16)
    for value in values:
        encoded = value.encode("utf-8", "surrogatepass")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


def check_id(doc_id: str) -> str:
    """Return ``doc_id`` if Elasticsearch accepts it as ``_id``, else raise :class:`InvalidDocument`.

    Real Elasticsearch validates ids for the whole bulk request, so one bad id
    would fail every document of a chunk: the sink checks ids before sending.

    Example:
        >>> check_id("drift-42")
        'drift-42'
    """
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidDocument("invalid_id", f"document id must be a non-empty string, not {doc_id!r}")
    if len(doc_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InvalidDocument("invalid_id", f"document id is longer than {MAX_ID_BYTES} bytes")
    return doc_id


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 and 3 give the same id, as JSON does not tell them apart
    return str(value)
