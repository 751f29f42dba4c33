"""Index templates of driftline's streams: the single source of truth.

Field names follow ECS (Elastic Common Schema) where it has one: ``@timestamp``,
``event.*``, ``trace.id``, ``span.id``, ``labels.*`` (slice attributes, all
keyword), ``error.*``, ``message``. driftline's own fields are ``model.*``,
``request.*``, ``subject.id``, ``latency_ms``, ``prediction.*``, ``features.*``,
``input.summary.*``, ``feedback.*``, ``outcome.*``, ``drift.*``, ``alert.*`` and
``kafka.*``.

:data:`STREAMS` registers the streams; adding one is one line there (a new
:class:`IndexStream` with its field mapping). ``deploy/elasticsearch/*.json``
holds an exported copy of these templates for operators (the request bodies of
``PUT _index_template/<name>``); regenerate it with::

    python -m driftline.connectors.elasticsearch export-templates deploy/elasticsearch

and a unit test fails if the copy and this module disagree.

Local server notes (noida-db 0.2.3, checked by hand and in the tests): it
stores and applies index templates, explicit mappings, ``dynamic_templates``
(``path_match`` and ``match_mapping_type``), ``dynamic: false``,
``ignore_above`` and per-field type checks (400 ``document_parsing_exception``).
It accepts but does not enforce: ``binary`` (no base64 check), ``index: false``
(the field stays searchable), ``index.mapping.total_fields.limit``. Nothing
here depends on those being enforced, so the same templates serve both.

Example:
    >>> body = index_template(STREAMS_BY_NAME["predictions"], "driftline")
    >>> body["index_patterns"], body["template"]["mappings"]["properties"]["latency_ms"]
    (['driftline-predictions-*'], {'type': 'float'})
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from driftline.connectors.elasticsearch.indices import IndexStream, check_prefix

#: Bumped whenever a template changes; stored as the template's ``version``.
#: A changed template applies to indices created after it is installed
#: (tomorrow's daily index); existing indices keep their mapping.
TEMPLATE_VERSION = 1
#: Above Elasticsearch's built-in templates (priority 100 for ``logs-*-*`` ...).
TEMPLATE_PRIORITY = 200

KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
DATE: dict[str, Any] = {"type": "date"}
DOUBLE: dict[str, Any] = {"type": "double"}
FLOAT: dict[str, Any] = {"type": "float"}
LONG: dict[str, Any] = {"type": "long"}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
TEXT: dict[str, Any] = {"type": "text"}
#: Kept in ``_source`` only: not searchable, no doc values (noida-db ignores
#: ``index: false`` and still lets you search the field; harmless).
STORED_ONLY: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}
#: Not indexed at all; the object stays in ``_source``.
UNINDEXED_OBJECT: dict[str, Any] = {"type": "object", "enabled": False}


def _obj(**properties: Any) -> dict[str, Any]:
    return {"properties": properties}


def _dynamic(name: str, path_match: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {name: {"path_match": path_match, "mapping": dict(mapping)}}


# --- fields shared by every stream -------------------------------------------

COMMON_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "message": TEXT,
    "event": _obj(id=KEYWORD, kind=KEYWORD, dataset=KEYWORD, created=DATE, ingested=DATE),
    "model": _obj(name=KEYWORD, version=KEYWORD),
    "labels": {"type": "object"},  # slice attributes: keyword by the dynamic template below
    "trace": _obj(id=KEYWORD),
    "span": _obj(id=KEYWORD),
}

COMMON_DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    # ECS labels are keyword, whatever JSON type the value has (region, tier, "5").
    _dynamic("labels_as_keyword", "labels.*", KEYWORD),
    # Last: unknown strings become keyword, not text + keyword multi-fields.
    {"strings_as_keyword": {"match_mapping_type": "string", "mapping": dict(KEYWORD)}},
]

# --- predictions and joined outcomes -------------------------------------------

PREDICTION_PROPERTIES: dict[str, Any] = {
    "request": _obj(id=KEYWORD, type=KEYWORD),
    "subject": _obj(id=KEYWORD),  # pseudonymous, never a raw personal id
    "latency_ms": FLOAT,
    # One entry per predicted output, flattened: label (classification), value
    # (regression), score; plus the full class distribution as scores.<class>.
    "prediction": _obj(label=KEYWORD, value=DOUBLE, score=DOUBLE, scores={"type": "object"}),
    "features": _obj(
        numeric={"type": "object"},
        categorical={"type": "object"},
        boolean={"type": "object"},
        vector=UNINDEXED_OBJECT,  # embeddings: kept, not indexed
        missing=KEYWORD,  # names of null or missing features
    ),
    "input": _obj(summary=_obj(shape=LONG, size_bytes=LONG, description=KEYWORD)),
}

PREDICTION_DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    # double, not the long a first integer value would give a dynamic field.
    _dynamic("numeric_features", "features.numeric.*", DOUBLE),
    _dynamic("categorical_features", "features.categorical.*", KEYWORD),
    _dynamic("boolean_features", "features.boolean.*", BOOLEAN),
    _dynamic("class_scores", "prediction.scores.*", DOUBLE),
]

OUTCOME_PROPERTIES: dict[str, Any] = {
    **PREDICTION_PROPERTIES,
    "feedback": _obj(
        labels=KEYWORD,
        values=DOUBLE,
        source=KEYWORD,
        rater_id=KEYWORD,
        confidence=FLOAT,
        timestamp=DATE,
        delay_ms=LONG,  # label time minus prediction time
    ),
    "outcome": _obj(correct=BOOLEAN, error=DOUBLE, abs_error=DOUBLE),
}

# --- drift events and alerts ------------------------------------------------------

DRIFT_PROPERTIES: dict[str, Any] = {
    "drift": _obj(
        detector=KEYWORD,  # adwin, page_hinkley, kswin, psi, ks ...
        kind=KEYWORD,  # concept, data, prediction, label, quality, latency
        stream=KEYWORD,  # the monitored series: error, latency, feature name ...
        feature=KEYWORD,
        statistic=DOUBLE,
        threshold=DOUBLE,
        p_value=DOUBLE,
        position=LONG,  # index of the observation in the detector's stream
        window_size=LONG,
        baseline=KEYWORD,
        detected=BOOLEAN,
        parameters=UNINDEXED_OBJECT,
    ),
}

ALERT_PROPERTIES: dict[str, Any] = {
    **DRIFT_PROPERTIES,  # an alert carries the drift that raised it
    "alert": _obj(
        id=KEYWORD,
        rule=KEYWORD,
        severity=KEYWORD,
        status=KEYWORD,
        message=TEXT,
        cooldown_s=DOUBLE,
        cooldown_until=DATE,
        drift_event_id=KEYWORD,
    ),
}

# --- dead letters -------------------------------------------------------------------

DEADLETTER_PROPERTIES: dict[str, Any] = {
    "error": _obj(type=KEYWORD, message=TEXT, stage=KEYWORD, stack_trace=STORED_ONLY),
    "kafka": _obj(topic=KEYWORD, partition=INTEGER, offset=LONG, key={"type": "binary"}),
    # The raw record value, base64: ``binary`` is stored, never indexed.
    # Real Elasticsearch rejects invalid base64 here; noida-db does not check.
    "event": _obj(original={"type": "binary"}),
}

# --- windowed metrics and data-quality anomalies ----------------------------------

METRICS_PROPERTIES: dict[str, Any] = {
    "window": _obj(start=DATE, end=DATE, size_ms=LONG, closed=BOOLEAN, late_events=LONG),
    "slice": _obj(name=KEYWORD),
    # metrics.*, fairness.*, quality.*: numbers, objects and lists of objects
    # (per class, per group, per anomaly kind), mapped by the dynamic templates.
    "metrics": _obj(positive_label=KEYWORD),
    "fairness": _obj(attribute=KEYWORD, positive_label=KEYWORD, exceeded=KEYWORD),
    "quality": _obj(events=LONG, anomalous=LONG),
}

METRICS_DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    # every number is a double: a first whole value must not make a rate field ``long``
    {"metric_numbers": {"match_mapping_type": "long", "mapping": dict(DOUBLE)}},
]

ANOMALY_PROPERTIES: dict[str, Any] = {
    "request": _obj(id=KEYWORD),
    "anomaly": _obj(feature=KEYWORD, kind=KEYWORD, value=KEYWORD, expected=KEYWORD),
}

# --- registrations: one line per stream -------------------------------------------

STREAMS: tuple[IndexStream, ...] = (
    IndexStream("predictions", PREDICTION_PROPERTIES, PREDICTION_DYNAMIC_TEMPLATES, ("model.name", "model.version", "request.id"), settings={"index": {"mapping": {"total_fields": {"limit": 2000}}}}, description="one document per prediction served"),
    IndexStream("outcomes", OUTCOME_PROPERTIES, PREDICTION_DYNAMIC_TEMPLATES, ("model.name", "model.version", "request.id"), settings={"index": {"mapping": {"total_fields": {"limit": 2000}}}}, description="predictions joined with their ground truth"),
    IndexStream("drift", DRIFT_PROPERTIES, description="drift detected by a detector; ids given by the caller"),
    IndexStream("alerts", ALERT_PROPERTIES, description="alerts raised from drift events; ids given by the caller"),
    IndexStream("metrics", METRICS_PROPERTIES, METRICS_DYNAMIC_TEMPLATES, description="metrics per model, version, slice and tumbling window; one document per window, updated until the window closes"),
    IndexStream("anomalies", ANOMALY_PROPERTIES, (), ("model.name", "model.version", "request.id", "anomaly.feature", "anomaly.kind"), description="serving values that break the baseline's schema (type, domain, range, required)"),
    # dynamic false: unknown fields of a dead letter are kept but never mapped, so a dead letter is not rejected for them.
    IndexStream("deadletters", DEADLETTER_PROPERTIES, (), ("kafka.topic", "kafka.partition", "kafka.offset", "error.stage", "error.type"), dynamic="false", description="records driftline could not process, with the reason and raw bytes"),
)  # fmt: skip

STREAMS_BY_NAME: dict[str, IndexStream] = {s.name: s for s in STREAMS}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two mappings; ``extra`` wins on conflicts.

    Example:
        >>> merge({"event": {"properties": {"kind": 1}}}, {"event": {"properties": {"original": 2}}})
        {'event': {'properties': {'kind': 1, 'original': 2}}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def index_template(stream: IndexStream, prefix: str = "driftline") -> dict[str, Any]:
    """The body of ``PUT _index_template/<prefix>-<stream>`` for one stream.

    Example:
        >>> t = index_template(STREAMS_BY_NAME["deadletters"], "driftline")
        >>> t["template"]["mappings"]["dynamic"], t["template"]["mappings"]["properties"]["event"]["properties"]["original"]
        ('false', {'type': 'binary'})
    """
    check_prefix(prefix)
    mappings: dict[str, Any] = {
        "dynamic": stream.dynamic,
        "dynamic_templates": [dict(t) for t in stream.dynamic_templates] + COMMON_DYNAMIC_TEMPLATES,
        "properties": merge(COMMON_PROPERTIES, stream.properties),
    }
    template: dict[str, Any] = {"mappings": copy.deepcopy(mappings)}
    if stream.settings:
        template["settings"] = copy.deepcopy(dict(stream.settings))
    return {
        "index_patterns": [stream.pattern(prefix)],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "driftline", "stream": stream.name, "description": stream.description},
        "template": template,
    }


def export_templates(directory: Path, streams: Sequence[IndexStream] = STREAMS, prefix: str = "driftline") -> list[Path]:
    """Write one ``<prefix>-<stream>.json`` per stream into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for stream in streams:
        path = directory / f"{stream.template_name(prefix)}.json"
        path.write_text(render_template(stream, prefix), encoding="utf-8")
        paths.append(path)
    return paths


def render_template(stream: IndexStream, prefix: str = "driftline") -> str:
    """The exported JSON text of one template (stable formatting, for diffs)."""
    return json.dumps(index_template(stream, prefix), indent=2, ensure_ascii=False) + "\n"

