"""JSON log lines from producers that cannot speak Avro, mapped onto the event contract.

A producer that only writes JSON lines (a shell script, a vendor service, an
old logger) sends one JSON object per Kafka record. :func:`json_event` parses
it and returns the same dict the Avro codec would return for the contract
(``schemas/prediction_event.avsc`` or ``feedback_event.avsc``), so the rest of
the normalize stage has one path for both.

Field names: every contract name is accepted as itself (``request_id``,
``model_name``...). :class:`JsonFieldMap` adds aliases, source name to contract
name, e.g. ``{"id": "request_id", "ts": "timestamp", "model": "model_name"}``;
a source name with dots is looked up as a path into nested objects
(``"meta.model": "model_name"``) unless the line has that exact key. An
explicit alias wins over a key that already has the contract name. Keys that
map to nothing are ignored (and so never reach the indices: a safe default for
fields that might hold personal data).

Besides the contract's fields, JSON lines may use these conveniences:

* ``features``: one mixed object, split into the typed maps by
  :func:`driftline.connectors.producer.typed_features` (numbers, strings,
  booleans, arrays of numbers, null = missing);
* ``trace_id`` and ``span_id`` as top-level fields instead of a ``trace`` object;
* ``prediction`` as a single output object, a label string or a number;
* for feedback, ``label`` / ``value`` for a single label or value, and
  ``labels`` / ``values`` as a single item.

Timestamps (``timestamp``) may be epoch seconds or milliseconds (numbers or
digit strings; with ``epoch_unit="auto"`` a magnitude under 1e11 is seconds,
under 1e14 milliseconds, under 1e17 microseconds, else nanoseconds) or ISO-8601
strings (``2026-11-22T23:31:09.123Z``; without an offset they are UTC). They
come back as integer epoch milliseconds. ``NaN`` and ``Infinity`` literals are
accepted as Python writes them; the normalizer's validation decides what they
mean.

Wrong JSON types raise :class:`MappingError` naming the source field;
unparsable bytes raise :class:`~driftline.connectors.codec.DecodeError`.

Example:
    >>> fm = JsonFieldMap({"id": "request_id", "ts": "timestamp", "model": "model_name", "version": "model_version"})
    >>> e = json_event(b'{"id": "r-1", "ts": 1763850000, "model": "m", "version": 3, '
    ...                b'"prediction": {"label": "fraud", "score": 0.9}, "features": {"age": 41, "country": "DE"}}',
    ...                "prediction", fm)
    >>> e["request_id"], e["timestamp"], e["model_version"], e["prediction"]
    ('r-1', 1763850000000, '3', [{'label': 'fraud', 'value': None, 'score': 0.9}])
    >>> e["numeric_features"], e["categorical_features"]
    ({'age': 41.0}, {'country': 'DE'})
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from driftline.connectors.codec import DecodeError
from driftline.connectors.producer import typed_features

__all__ = [
    "FEEDBACK_FIELDS",
    "PREDICTION_FIELDS",
    "JsonFieldMap",
    "MappingError",
    "json_event",
    "parse_timestamp_ms",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_LABEL_SOURCES = frozenset({"PROCESS_FEEDBACK", "HUMAN_RATER", "WEAK_SUPERVISION", "UNKNOWN"})

#: Contract names a JSON prediction line may use (after aliasing).
PREDICTION_FIELDS = frozenset(
    {
        "request_id", "timestamp", "model_name", "model_version", "latency_ms", "prediction", "scores",
        "features", "numeric_features", "categorical_features", "boolean_features", "vector_features",
        "null_features", "input_summary", "request_type", "slices", "trace", "trace_id", "span_id", "subject_id",
    }
)  # fmt: skip
#: Contract names a JSON feedback line may use (after aliasing).
FEEDBACK_FIELDS = frozenset(
    {"request_id", "timestamp", "labels", "label", "values", "value", "label_source", "rater_id", "confidence", "model_name"}
)


class MappingError(ValueError):
    """A JSON line whose fields do not fit the contract (a wrong type, an unreadable timestamp).

    ``field`` is the name as the line spelled it; ``reason`` says what is wrong.

    Example:
        >>> str(MappingError("ts", "not a timestamp: 'soon'"))
        "field 'ts': not a timestamp: 'soon'"
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = f"field {field!r}: {reason}"


@dataclass(frozen=True)
class JsonFieldMap:
    """How JSON lines name the contract's fields.

    Parameters
    ----------
    aliases
        Source field name (or dotted path into nested objects) to contract
        field name; contract names are accepted as themselves anyway.
    epoch_unit
        How numeric timestamps are read: ``"auto"`` by magnitude (see the
        module docstring), or always ``"s"`` or ``"ms"``.

    Raises ``ValueError`` at construction for an alias to an unknown contract name.

    Example:
        >>> JsonFieldMap({"ts": "time"})
        Traceback (most recent call last):
        ...
        ValueError: JSON alias 'ts' maps to 'time', which is not a contract field; known: boolean_features, categorical_features, confidence, features, input_summary, label, label_source, labels, latency_ms, model_name, model_version, null_features, numeric_features, prediction, rater_id, request_id, request_type, scores, slices, span_id, subject_id, timestamp, trace, trace_id, value, values, vector_features
    """

    aliases: Mapping[str, str] = field(default_factory=dict)
    epoch_unit: Literal["auto", "s", "ms"] = "auto"

    def __post_init__(self) -> None:
        known = PREDICTION_FIELDS | FEEDBACK_FIELDS
        for source, target in self.aliases.items():
            if target not in known:
                raise ValueError(
                    f"JSON alias {source!r} maps to {target!r}, which is not a contract field; known: {', '.join(sorted(known))}"
                )
        if self.epoch_unit not in ("auto", "s", "ms"):
            raise ValueError(f"epoch_unit must be 'auto', 's' or 'ms', not {self.epoch_unit!r}")


def parse_timestamp_ms(value: Any, epoch_unit: str = "auto", field_name: str = "timestamp") -> int:
    """Epoch milliseconds from epoch seconds/ms (number or digits) or an ISO-8601 string.

    Raises :class:`MappingError` for anything else (booleans, NaN, garbage).

    Example:
        >>> parse_timestamp_ms(1763850000), parse_timestamp_ms(1763850000123), parse_timestamp_ms("2025-11-22T22:20:00.5Z")
        (1763850000000, 1763850000123, 1763850000500)
        >>> parse_timestamp_ms("2025-11-22T23:20:00+01:00")
        1763850000000
    """
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.lstrip("-").isdigit():
            if len(text) > 24:
                raise MappingError(field_name, f"epoch number out of range: {value[:64]!r}")
            value = int(text)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise MappingError(field_name, f"not an ISO-8601 timestamp or epoch number: {value[:64]!r}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            delta = moment - _EPOCH  # exact integer arithmetic, no float rounding
            return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MappingError(field_name, f"not a timestamp: {_preview(value)}")
    unit = epoch_unit
    if unit == "auto":
        magnitude = abs(value)
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"
    if isinstance(value, int):
        if unit == "s":
            return value * 1000
        if unit == "ms":
            return value
        return value // (1000 if unit == "us" else 1_000_000)
    millis = value * {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}[unit]
    if not math.isfinite(millis):
        raise MappingError(field_name, f"not a finite timestamp: {value!r}")
    return math.floor(millis)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _lookup(line: Mapping[str, Any], path: str) -> Any:
    """The value at ``path``: the exact key first, then a dotted path into nested objects."""
    if path in line:
        return line[path]
    if "." not in path:
        return None
    node: Any = line
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any, name: str, *, numbers: bool = True) -> str | None:
    """A string field; integers (and floats, if ``numbers``) become their text."""
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if numbers and isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise MappingError(name, f"expected a string, got {type(value).__name__} {_preview(value)}")


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MappingError(name, f"expected a number, got {type(value).__name__} {_preview(value)}")
    try:
        return float(value)
    except OverflowError:
        raise MappingError(name, f"number out of range: {_preview(value)}") from None


def _long(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError(name, f"expected an integer, got {type(value).__name__} {_preview(value)}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise MappingError(name, f"integer out of the 64-bit range: {_preview(value)}")
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError(name, f"expected an object, got {type(value).__name__} {_preview(value)}")
    return value


def _number_map(value: Any, name: str) -> dict[str, float]:
    return {k: _number_required(v, f"{name}.{k}") for k, v in _object(value, name).items()}


def _number_required(value: Any, name: str) -> float:
    number = _number(value, name)
    if number is None:
        raise MappingError(name, "expected a number, got null")
    return number


def _text_map(value: Any, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _object(value, name).items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        text = _text(v, f"{name}.{k}")
        if text is None:
            raise MappingError(f"{name}.{k}", "expected a string, got null")
        out[k] = text
    return out


def _bool_map(value: Any, name: str) -> dict[str, bool]:
    out = _object(value, name)
    for k, v in out.items():
        if not isinstance(v, bool):
            raise MappingError(f"{name}.{k}", f"expected a boolean, got {_preview(v)}")
    return dict(out)


def _vector_map(value: Any, name: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for k, v in _object(value, name).items():
        out[k] = [_number_required(x, f"{name}.{k}[{i}]") for i, x in enumerate(_list(v, f"{name}.{k}"))]
    return out


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(name, f"expected an array, got {type(value).__name__} {_preview(value)}")
    return value


def _features(value: Any, name: str) -> dict[str, Any]:
    mixed = _object(value, name)
    for key, item in mixed.items():
        if isinstance(item, list):
            for x in item:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise MappingError(f"{name}.{key}", f"an array feature must hold numbers only, got {_preview(x)}")
        elif isinstance(item, dict):
            raise MappingError(f"{name}.{key}", "a feature cannot be an object; flatten it or log it as a slice")
    try:
        return typed_features(mixed)
    except OverflowError:  # an integer too large for a double
        raise MappingError(name, "a number is out of the double range") from None


def _output(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            "label": _text(value.get("label"), f"{name}.label"),
            "value": _number(value.get("value"), f"{name}.value"),
            "score": _number(value.get("score"), f"{name}.score"),
        }
    if isinstance(value, str):
        return {"label": value, "value": None, "score": None}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"label": None, "value": _number(value, name), "score": None}
    raise MappingError(name, f"expected an output object, a label or a number, got {_preview(value)}")


def _outputs(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_output(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return [_output(value, name)]


def _prediction(get: Any, names: Mapping[str, str], epoch_unit: str) -> dict[str, Any]:
    def n(target: str) -> str:
        return names.get(target, target)

    ts = get("timestamp")
    typed = _features(get("features"), n("features"))
    typed["numeric_features"].update(_number_map(get("numeric_features"), n("numeric_features")))
    typed["categorical_features"].update(_text_map(get("categorical_features"), n("categorical_features")))
    typed["boolean_features"].update(_bool_map(get("boolean_features"), n("boolean_features")))
    typed["vector_features"].update(_vector_map(get("vector_features"), n("vector_features")))
    for i, x in enumerate(_list(get("null_features"), n("null_features"))):
        if not isinstance(x, str):
            raise MappingError(f"{n('null_features')}[{i}]", f"expected a feature name, got {_preview(x)}")
        typed["null_features"].append(x)
    trace = _object(get("trace"), n("trace"))
    summary = _object(get("input_summary"), n("input_summary"))
    shape = _list(summary.get("shape"), f"{n('input_summary')}.shape")
    request_type = _text(get("request_type"), n("request_type"))
    return {
        "request_id": _text(get("request_id"), n("request_id")),
        "timestamp": None if ts is None else parse_timestamp_ms(ts, epoch_unit, n("timestamp")),
        "model_name": _text(get("model_name"), n("model_name")),
        "model_version": _text(get("model_version"), n("model_version")),
        "latency_ms": _number(get("latency_ms"), n("latency_ms")),
        "prediction": _outputs(get("prediction"), n("prediction")),
        "scores": _number_map(get("scores"), n("scores")),
        **typed,
        "input_summary": {
            "shape": [_long(x, f"{n('input_summary')}.shape") for x in shape],
            "size_bytes": _long(summary.get("size_bytes"), f"{n('input_summary')}.size_bytes"),
            "description": _text(summary.get("description"), f"{n('input_summary')}.description"),
        },
        "request_type": "online" if request_type is None else request_type,
        "slices": _text_map(get("slices"), n("slices")),
        "trace": {
            "trace_id": _text(trace.get("trace_id", get("trace_id")), n("trace_id"), numbers=False),
            "span_id": _text(trace.get("span_id", get("span_id")), n("span_id"), numbers=False),
        },
        "subject_id": _text(get("subject_id"), n("subject_id")),
    }


def _feedback(get: Any, names: Mapping[str, str], epoch_unit: str) -> dict[str, Any]:
    def n(target: str) -> str:
        return names.get(target, target)

    ts = get("timestamp")
    labels_in = get("labels")
    labels_raw = [labels_in] if isinstance(labels_in, (str, int)) and not isinstance(labels_in, bool) else _list(labels_in, n("labels"))
    if get("label") is not None:
        labels_raw = [*labels_raw, get("label")]
    values_in = get("values")
    values_raw = [values_in] if isinstance(values_in, (int, float)) and not isinstance(values_in, bool) else _list(values_in, n("values"))
    if get("value") is not None:
        values_raw = [*values_raw, get("value")]
    labels = []
    for i, x in enumerate(labels_raw):
        if isinstance(x, bool):
            x = "true" if x else "false"
        text = _text(x, f"{n('labels')}[{i}]")
        if text is None:
            raise MappingError(f"{n('labels')}[{i}]", "a label cannot be null")
        labels.append(text)
    source = _text(get("label_source"), n("label_source"), numbers=False)
    source = "UNKNOWN" if source is None else source.strip().upper()
    return {
        "request_id": _text(get("request_id"), n("request_id")),
        "timestamp": None if ts is None else parse_timestamp_ms(ts, epoch_unit, n("timestamp")),
        "labels": labels,
        "values": [_number_required(x, f"{n('values')}[{i}]") for i, x in enumerate(values_raw)],
        # unknown symbols read as UNKNOWN, as the Avro reader schema's enum default does
        "label_source": source if source in _LABEL_SOURCES else "UNKNOWN",
        "rater_id": _text(get("rater_id"), n("rater_id")),
        "confidence": _number(get("confidence"), n("confidence")),
        "model_name": _text(get("model_name"), n("model_name")),
    }


def json_event(data: bytes | str, kind: str, field_map: JsonFieldMap | None = None) -> dict[str, Any]:
    """The contract dict of one JSON line, for ``kind`` ``"prediction"`` or ``"feedback"``.

    ``timestamp`` is integer epoch milliseconds (or None when the line has
    none: the validation that follows rejects it). Raises
    :class:`~driftline.connectors.codec.DecodeError` for bytes that are not one
    JSON object and :class:`MappingError` for fields of the wrong type.

    Example:
        >>> json_event(b'{"request_id": "r-9", "timestamp": "2026-01-01T00:00:00Z", "label": "spam"}', "feedback")["labels"]
        ['spam']
        >>> json_event(b'[1, 2]', "feedback")
        Traceback (most recent call last):
        ...
        driftline.connectors.codec.DecodeError: not a JSON object: the line is a list
    """
    field_map = field_map or _DEFAULT_MAP
    try:
        # strict UTF-8 (RFC 8259): json.loads(bytes) would let encoded lone surrogates through
        text = data if isinstance(data, str) else bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        line = json.loads(text)
    except RecursionError:
        raise DecodeError("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(line, dict):
        raise DecodeError(f"not a JSON object: the line is a {type(line).__name__}")
    if "\\ud" in text or "\\uD" in text:  # rare: escaped surrogates, paired (emoji) or not
        try:
            json.dumps(line, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("invalid JSON text: an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)") from None
    aliases = field_map.aliases
    if aliases:
        sources: dict[str, str] = {}  # contract name -> the source name that gave it, for messages
        mapped: dict[str, Any] = {}
        for source, target in aliases.items():
            value = _lookup(line, source)
            if value is not None and target not in mapped:
                mapped[target] = value
                sources[target] = source

        def get(target: str) -> Any:
            if target in mapped:
                return mapped[target]
            return line.get(target)

    else:
        sources = {}
        get = line.get
    build = _prediction if kind == "prediction" else _feedback
    return build(get, sources, field_map.epoch_unit)


_DEFAULT_MAP = JsonFieldMap()
