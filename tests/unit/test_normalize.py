"""The normalize stage: Avro (both framings) and JSON in, one canonical document or a dead letter out."""

from __future__ import annotations

import base64
import doctest
import hashlib
import hmac
import importlib
import json
import math
import random
import re
import struct
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from driftline.connectors.codec import (
    SINGLE_OBJECT_MAGIC,
    SingleObjectCodec,
    load_schema,
    make_codec,
    parse_schema_json,
    registry_client,
    schema_fingerprint,
)
from driftline.connectors.elasticsearch.indices import event_time
from driftline.connectors.elasticsearch.mappings import STREAMS_BY_NAME, index_template
from driftline.settings import Settings
from driftline.streams.json_events import PREDICTION_FIELDS, JsonFieldMap
from driftline.streams.normalize import (
    DeadLetterRecord,
    Decoders,
    ErrorType,
    EventKind,
    NormalizeConfig,
    NormalizedEvent,
    Normalizer,
    RawRecord,
    _IsoMillis,
    iso_millis,
)
from driftline.streams.pseudonymize import PseudonymizationKeyError, Pseudonymizer
from tests import events as contract_events

KEY = b"normalize-tests-key-0123456789ab"
PREDICTIONS, FEEDBACK = "driftline.predictions", "driftline.feedback"
TS = 1_763_850_000_123  # 2025-11-22T22:20:00.123Z
NOW = 1_763_900_000_000  # 2025-11-23T12:13:20.000Z
HYPOTHESIS = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

FULL_PREDICTION: dict[str, Any] = {
    "request_id": "req-0001",
    "timestamp": TS,
    "model_name": "fraud-detector",
    "model_version": "2026.11.1",
    "latency_ms": 3.5,
    "prediction": [{"label": "legit", "value": None, "score": 0.3}, {"label": "fraud", "value": None, "score": 0.7}],
    "scores": {"fraud": 0.7, "legit": 0.3},
    "numeric_features": {"amount": 12.5, "age": 41.0, "income": math.nan},
    "categorical_features": {"country": "DE"},
    "boolean_features": {"returning": True},
    "vector_features": {"embedding": [0.1, 0.2]},
    "null_features": ["zip"],
    "input_summary": {"shape": [1, 4], "size_bytes": 512, "description": "tabular"},
    "request_type": "shadow",
    "slices": {"region": "eu-west", "device.os": "ios"},
    "trace": {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"},
    "subject_id": "customer-4711@example.com",
}

FULL_FEEDBACK: dict[str, Any] = {
    "request_id": "req-0001",
    "timestamp": TS + 60_000,
    "labels": ["fraud"],
    "values": [],
    "label_source": "HUMAN_RATER",
    "rater_id": "rater-jane-17",
    "confidence": 0.9,
    "model_name": "fraud-detector",
}


def pseudonym(value: str, purpose: str, key: bytes = KEY) -> str:
    """The pseudonym computed independently of the code under test."""
    return "pz_" + hmac.new(key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:32]


EXPECTED_PREDICTION: dict[str, Any] = {
    "@timestamp": "2025-11-22T22:20:00.123Z",
    "event": {"kind": "event", "dataset": "driftline.predictions", "created": "2025-11-23T12:13:20.000Z"},
    "model": {"name": "fraud-detector", "version": "2026.11.1"},
    "request": {"id": "req-0001", "type": "shadow"},
    "subject": {"id": pseudonym("customer-4711@example.com", "subject")},
    "latency_ms": 3.5,
    "prediction": {
        "label": "fraud",  # the highest score, not the first output
        "score": 0.7,
        "outputs": [{"label": "legit", "score": 0.3}, {"label": "fraud", "score": 0.7}],
        "scores": {"fraud": 0.7, "legit": 0.3},
    },
    "features": {
        "numeric": {"amount": 12.5, "age": 41.0},
        "categorical": {"country": "DE"},
        "boolean": {"returning": True},
        "vector": {"embedding": [0.1, 0.2]},
        "missing": ["zip", "income"],  # NaN counts as missing
    },
    "input": {"summary": {"shape": [1, 4], "size_bytes": 512, "description": "tabular"}},
    "labels": {"region": "eu-west", "device_os": "ios"},  # de-dotted
    "trace": {"id": "0af7651916cd43dd8448eb211c80319c"},
    "span": {"id": "b7ad6b7169203331"},
}

EXPECTED_FEEDBACK: dict[str, Any] = {
    "@timestamp": "2025-11-22T22:21:00.123Z",
    "event": {"kind": "event", "dataset": "driftline.feedback", "created": "2025-11-23T12:13:20.000Z"},
    "request": {"id": "req-0001"},
    "model": {"name": "fraud-detector"},
    "feedback": {
        "labels": ["fraud"],
        "values": [],
        "source": "HUMAN_RATER",
        "timestamp": "2025-11-22T22:21:00.123Z",
        "rater_id": pseudonym("rater-jane-17", "rater"),
        "confidence": 0.9,
    },
}


# --- helpers ---------------------------------------------------------------------------


def make_normalizer(config: NormalizeConfig | None = None, *, registry: Any = None, key: bytes = KEY) -> Normalizer:
    config = config or NormalizeConfig()
    return Normalizer(
        config,
        pseudonymizer=Pseudonymizer(key),
        decoders=Decoders.build(config.topics, registry=registry),
    )


def record(value: Any, topic: str = PREDICTIONS, *, key: bytes | None = b"req-0001", offset: int = 7) -> RawRecord:
    return RawRecord(value, key, topic, 2, offset, TS + 5)


def avro(event: dict[str, Any], kind: str = "prediction_event") -> bytes:
    return make_codec(kind).encode(event)


def normalized(value: bytes, topic: str = PREDICTIONS, normalizer: Normalizer | None = None) -> NormalizedEvent:
    out = (normalizer or make_normalizer()).normalize(record(value, topic), NOW)
    assert isinstance(out, NormalizedEvent), out
    return out


def dead(value: Any, topic: str = PREDICTIONS, normalizer: Normalizer | None = None) -> DeadLetterRecord:
    out = (normalizer or make_normalizer()).normalize(record(value, topic), NOW)
    assert isinstance(out, DeadLetterRecord), out.document if isinstance(out, NormalizedEvent) else out
    return out


def epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


def strict_json(document: dict[str, Any]) -> str:
    """What any JSON consumer must accept: no NaN, valid UTF-8."""
    text = json.dumps(document, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    return text


# --- Elasticsearch mapping check -----------------------------------------------------


def mapping_check(document: dict[str, Any], stream: str) -> set[str]:
    """Assert every leaf fits its template type; return the paths left to dynamic type inference."""
    mappings = index_template(STREAMS_BY_NAME[stream])["template"]["mappings"]
    dynamic_templates = [next(iter(t.values())) for t in mappings["dynamic_templates"]]
    inferred: set[str] = set()

    def spec_for(path: str, value: Any) -> dict[str, Any] | None:
        for rule in dynamic_templates:
            if "path_match" in rule and fnmatchcase(path, rule["path_match"]):
                return rule["mapping"]
            if rule.get("match_mapping_type") == "string" and "path_match" not in rule and isinstance(value, str):
                return rule["mapping"]
        return None

    def leaf(path: str, spec: dict[str, Any], value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                leaf(path, spec, item)
            return
        kind = spec["type"]
        if kind in ("keyword", "text"):
            assert isinstance(value, str), (path, value)
        elif kind == "date":
            assert isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None, (path, value)
        elif kind in ("double", "float"):
            assert isinstance(value, float) and math.isfinite(value), (path, value)
            if kind == "float":
                assert abs(value) < 3.4e38, (path, value)
        elif kind in ("long", "integer"):
            bits = 63 if kind == "long" else 31
            assert type(value) is int and -(2**bits) <= value < 2**bits, (path, value)
        elif kind == "boolean":
            assert isinstance(value, bool), (path, value)
        elif kind == "binary":
            assert isinstance(value, str) and base64.b64decode(value, validate=True) is not None, (path, value)
        else:
            raise AssertionError(f"{path}: unexpected mapping type {kind}")

    def walk(node: dict[str, Any], properties: dict[str, Any] | None, prefix: str) -> None:
        for key, value in node.items():
            assert isinstance(key, str) and key.strip() and "." not in key, f"bad field name {prefix}{key!r}"
            path = prefix + key
            spec = (properties or {}).get(key)
            if spec is None:
                spec = spec_for(path, value)
            if spec is not None and spec.get("enabled") is False:
                continue
            if isinstance(value, dict):
                if spec is not None and "type" in spec and spec["type"] != "object":
                    raise AssertionError(f"{path} is an object, mapped as {spec['type']}")
                walk(value, (spec or {}).get("properties"), path + ".")
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for item in value:
                    walk(item, (spec or {}).get("properties"), path + ".")
            elif spec is None or "type" not in spec:
                if value is not None and value != []:
                    inferred.add(path)
            else:
                leaf(path, spec, value)

    walk(document, mappings["properties"], "")
    return inferred


# --- canonical documents -----------------------------------------------------------------


def test_single_object_prediction_becomes_the_canonical_document():
    out = normalized(avro(FULL_PREDICTION))
    assert out.document == EXPECTED_PREDICTION
    assert (out.kind, out.request_id, out.timestamp_ms) == (EventKind.PREDICTION, "req-0001", TS)
    assert (out.topic, out.partition, out.offset) == (PREDICTIONS, 2, 7)
    strict_json(out.document)


def test_confluent_framed_prediction_decodes_with_the_registry_shared_with_the_producer():
    registry = registry_client({"url": "mock://normalize-confluent"})
    producer_codec = make_codec("prediction_event", registry=registry, topic=PREDICTIONS)
    value = producer_codec.encode(FULL_PREDICTION)
    assert value[0] == 0
    out = normalized(value, normalizer=make_normalizer(registry=registry))
    assert out.document == EXPECTED_PREDICTION


def test_confluent_framed_feedback_decodes_with_the_shared_registry():
    registry = registry_client({"url": "mock://normalize-confluent-feedback"})
    value = make_codec("feedback_event", registry=registry, topic=FEEDBACK).encode(FULL_FEEDBACK)
    assert normalized(value, FEEDBACK, make_normalizer(registry=registry)).document == EXPECTED_FEEDBACK


def test_confluent_framed_record_without_a_registry_is_a_configuration_dead_letter():
    registry = registry_client({"url": "mock://normalize-no-registry"})
    value = make_codec("prediction_event", registry=registry, topic=PREDICTIONS).encode(FULL_PREDICTION)
    letter = dead(value)
    assert letter.error_type == "configuration_error"
    assert "Confluent-framed record" in letter.reason and "no schema registry configured" in letter.reason


def test_feedback_becomes_the_canonical_document():
    out = normalized(avro(FULL_FEEDBACK, "feedback_event"), FEEDBACK)
    assert out.document == EXPECTED_FEEDBACK
    assert (out.kind, out.request_id, out.timestamp_ms) == (EventKind.FEEDBACK, "req-0001", TS + 60_000)


def test_minimal_prediction_leaves_out_what_it_does_not_have():
    event = {"request_id": "r-1", "timestamp": TS, "model_name": "m", "model_version": "1", "prediction": [{"value": 2.5}]}
    doc = normalized(avro(event)).document
    assert doc == {
        "@timestamp": "2025-11-22T22:20:00.123Z",
        "event": {"kind": "event", "dataset": "driftline.predictions", "created": "2025-11-23T12:13:20.000Z"},
        "model": {"name": "m", "version": "1"},
        "request": {"id": "r-1", "type": "online"},
        "prediction": {"value": 2.5, "outputs": [{"value": 2.5}], "scores": {}},
        "features": {"numeric": {}, "categorical": {}, "boolean": {}, "vector": {}, "missing": []},
    }


def test_top_output_is_the_first_when_no_output_has_a_score():
    event = FULL_PREDICTION | {"prediction": [{"label": "a"}, {"label": "b"}]}
    assert normalized(avro(event)).document["prediction"]["label"] == "a"


def test_old_writer_schema_is_accepted_when_configured():
    old = parse_schema_json(json.loads((Path(__file__).parents[1] / "schemas" / "prediction_event_v1.avsc").read_text()))
    event = {"request_id": "old-1", "timestamp": TS, "model_name": "m", "model_version": "1", "latency_ms": 1.0,
             "prediction": [{"label": "stay", "score": 0.9}], "numeric_features": {"x": 1.0},
             "categorical_features": {}, "feature_set": "v1", "slices": {}}  # fmt: skip
    value = SingleObjectCodec(old).encode(event)
    config = NormalizeConfig()
    plain = make_normalizer(config)
    assert dead(value, normalizer=plain).reason.startswith("unknown schema fingerprint")
    evolving = Normalizer(config, pseudonymizer=Pseudonymizer(KEY),
                          decoders=Decoders.build(config.topics, writer_schemas={EventKind.PREDICTION: [old]}))  # fmt: skip
    assert normalized(value, normalizer=evolving).document["features"]["numeric"] == {"x": 1.0}


def test_timestamp_is_iso_utc_with_milliseconds_and_parses_to_timestamp_ms():
    for ms in (946_684_800_000, 946_684_800_001, TS, NOW + 86_400_000):
        event = FULL_PREDICTION | {"timestamp": ms}
        doc = normalized(avro(event)).document
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["@timestamp"])
        out = normalized(avro(event))
        assert epoch_ms(event_time(out.document)) == ms == out.timestamp_ms


def test_remembered_seconds_format_as_iso_millis_does_also_past_the_memory_limit():
    iso = _IsoMillis()
    rng = random.Random(5)
    # predictions and their labels minutes later, alternating; then more distinct seconds than it remembers
    moments = [TS + i * 100 + (300_000 if i % 2 else 0) for i in range(2_000)]
    moments += [rng.randrange(-10**12, 10**13) for _ in range(2 * _IsoMillis.MAX_SECONDS)] + [0, -1, 999, 1000]
    for ms in moments:
        assert iso(ms) == iso_millis(ms), ms


def test_iso_millis_handles_negative_and_boundary_milliseconds():
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
    assert iso_millis(-1) == "1969-12-31T23:59:59.999Z"
    assert iso_millis(999) == "1970-01-01T00:00:00.999Z"


# --- JSON log lines ------------------------------------------------------------------------

JSON_ALIASES = JsonFieldMap(
    {"id": "request_id", "ts": "timestamp", "model": "model_name", "version": "model_version",
     "latency": "latency_ms", "meta.user": "subject_id"}  # fmt: skip
)


def json_line(**overrides: Any) -> bytes:
    line = {
        "id": "req-0001",
        "ts": "2025-11-22T22:20:00.123Z",
        "model": "fraud-detector",
        "version": "2026.11.1",
        "latency": 3.5,
        "prediction": [{"label": "legit", "score": 0.3}, {"label": "fraud", "score": 0.7}],
        "scores": {"fraud": 0.7, "legit": 0.3},
        "features": {"amount": 12.5, "age": 41, "income": math.nan, "country": "DE", "returning": True,
                     "embedding": [0.1, 0.2], "zip": None},  # fmt: skip
        "input_summary": {"shape": [1, 4], "size_bytes": 512, "description": "tabular"},
        "request_type": "shadow",
        "slices": {"region": "eu-west", "device.os": "ios"},
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "meta": {"user": "customer-4711@example.com"},
        "unmapped_secret": "never indexed",
    }
    return json.dumps(line | overrides).encode()  # Python writes NaN as the NaN literal


def test_json_line_with_aliases_gives_the_same_document_as_avro():
    out = normalized(json_line(), normalizer=make_normalizer(NormalizeConfig(json_fields=JSON_ALIASES)))
    assert out.document == EXPECTED_PREDICTION
    assert "never indexed" not in strict_json(out.document)


@pytest.mark.parametrize("ts", [1_763_850_000.123, 1_763_850_000_123, "1763850000123", "2025-11-22T23:20:00.123+01:00"])
def test_json_timestamps_in_seconds_milliseconds_or_iso_agree(ts):
    out = normalized(json_line(ts=ts), normalizer=make_normalizer(NormalizeConfig(json_fields=JSON_ALIASES)))
    assert out.timestamp_ms == TS and out.document["@timestamp"] == "2025-11-22T22:20:00.123Z"


def test_json_feedback_line_gives_the_same_document_as_avro():
    line = {"request_id": "req-0001", "timestamp": (TS + 60_000) / 1000, "label": "fraud", "label_source": "human_rater",
            "rater_id": "rater-jane-17", "confidence": 0.9, "model_name": "fraud-detector"}  # fmt: skip
    assert normalized(json.dumps(line).encode(), FEEDBACK).document == EXPECTED_FEEDBACK


def test_json_lines_are_refused_when_not_accepted():
    letter = dead(json_line(), normalizer=make_normalizer(NormalizeConfig(accept_json=False)))
    assert letter.error_type == "decode_error" and "JSON lines are not accepted" in letter.reason


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"latency": "fast"}, "'latency'"),
        ({"ts": "soon"}, "'ts'"),
        ({"ts": True}, "'ts'"),
        ({"features": {"nested": {"a": 1}}}, "features.nested"),
        ({"features": {"v": [1, "x"]}}, "features.v"),
        ({"scores": {"a": "high"}}, "scores.a"),
        ({"prediction": [{"label": "a", "score": "0.3"}]}, "prediction[0].score"),
        ({"slices": {"region": None}}, "slices.region"),
        ({"input_summary": {"shape": [2**70]}}, "input_summary.shape"),
    ],
)
def test_json_fields_of_the_wrong_type_are_mapping_errors_naming_the_field(override, field):
    letter = dead(json_line(**override), normalizer=make_normalizer(NormalizeConfig(json_fields=JSON_ALIASES)))
    assert letter.error_type == "mapping_error"
    assert field in letter.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"request_id": ', "invalid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b"{" * 100_000, "invalid JSON"),
        (b'\xef\xbb\xbf{"a": 1', "invalid JSON"),
    ],
)
def test_unreadable_json_is_a_decode_error(value, reason):
    letter = dead(value)
    assert letter.error_type == "decode_error" and reason in letter.reason


# --- validation ------------------------------------------------------------------------------


def too_many_features(n: int) -> dict[str, Any]:
    return {"numeric_features": {f"f{i}": 1.0 for i in range(n)}}


PREDICTION_FAILURES = [
    ("request_id empty", {"request_id": ""}, "request_id"),
    ("request_id blank", {"request_id": "   "}, "request_id"),
    ("request_id too long", {"request_id": "r" * 257}, "request_id"),
    ("model_name empty", {"model_name": ""}, "model_name"),
    ("model_version empty", {"model_version": ""}, "model_version"),
    ("timestamp before 2000", {"timestamp": 946_684_799_999}, "timestamp"),
    ("timestamp in the far future", {"timestamp": NOW + 86_400_001}, "timestamp"),
    ("latency NaN", {"latency_ms": math.nan}, "latency_ms"),
    ("latency infinite", {"latency_ms": math.inf}, "latency_ms"),
    ("latency negative", {"latency_ms": -1.0}, "latency_ms"),
    ("latency beyond a day", {"latency_ms": 1e300}, "latency_ms"),
    ("no output", {"prediction": []}, "prediction"),
    ("output without label or value", {"prediction": [{"score": 0.5}]}, "prediction[0]"),
    ("output score NaN", {"prediction": [{"label": "a", "score": math.nan}]}, "prediction[0].score"),
    ("output value infinite", {"prediction": [{"value": -math.inf}]}, "prediction[0].value"),
    ("class score NaN", {"scores": {"a": math.nan}}, "scores['a']"),
    ("feature infinite", {"numeric_features": {"amount": math.inf}}, "numeric_features['amount']"),
    ("vector with infinity", {"vector_features": {"emb": [0.0, math.inf]}}, "vector_features['emb']"),
    ("too many features", too_many_features(257), "features"),
    ("empty feature name", {"numeric_features": {"": 1.0}}, "numeric_features"),
    ("blank slice name", {"slices": {" ": "x"}}, "slices"),
    ("names colliding once de-dotted", {"numeric_features": {"a.b": 1.0, "a_b": 2.0}}, "numeric_features"),
    ("too many classes", {"scores": {f"c{i}": 0.0 for i in range(257)}}, "scores"),
    ("too many slices", {"slices": {f"s{i}": "x" for i in range(33)}}, "slices"),
    ("trace id too long", {"trace": {"trace_id": "f" * 300, "span_id": None}}, "trace.trace_id"),
    ("negative input size", {"input_summary": {"shape": [], "size_bytes": -1, "description": None}}, "input_summary.size_bytes"),
    ("timestamp past year 9999", {"timestamp": 2**62}, "timestamp"),
    ("timestamp the lowest long", {"timestamp": -(2**63)}, "timestamp"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "change", "field"), PREDICTION_FAILURES, ids=[c[0] for c in PREDICTION_FAILURES])
def test_invalid_prediction_is_a_validation_dead_letter_naming_the_field(case, change, field):
    letter = dead(avro(FULL_PREDICTION | change))
    assert letter.error_type == "validation_error", letter.reason
    assert field in letter.reason, letter.reason
    assert letter.stage == "normalize" and letter.source_topic == PREDICTIONS


FEEDBACK_FAILURES = [
    ("no label and no value", {"labels": [], "values": []}, "labels nor values"),
    ("empty label", {"labels": [""]}, "labels[0]"),
    ("value NaN", {"values": [1.0, math.nan]}, "values[1]"),
    ("confidence above 1", {"confidence": 1.5}, "confidence"),
    ("confidence NaN", {"confidence": math.nan}, "confidence"),
    ("request_id empty", {"request_id": ""}, "request_id"),
    ("timestamp before 2000", {"timestamp": 0}, "timestamp"),
    ("timestamp past year 9999", {"timestamp": 2**63 - 1}, "timestamp"),
]


@pytest.mark.parametrize(("case", "change", "field"), FEEDBACK_FAILURES, ids=[c[0] for c in FEEDBACK_FAILURES])
def test_invalid_feedback_is_a_validation_dead_letter_naming_the_field(case, change, field):
    letter = dead(avro(FULL_FEEDBACK | change, "feedback_event"), FEEDBACK)
    assert letter.error_type == "validation_error" and field in letter.reason, letter.reason


def test_json_line_missing_required_fields_is_a_validation_error():
    letter = dead(b'{"timestamp": 1763850000, "model_name": "m", "model_version": "1", "prediction": "a"}')
    assert letter.error_type == "validation_error" and "request_id is missing" in letter.reason, letter.reason
    letter = dead(b'{"request_id": "r", "model_name": "m", "model_version": "1", "prediction": "a"}')
    assert letter.error_type == "validation_error" and "timestamp is missing" in letter.reason


@pytest.mark.parametrize(
    ("value", "topic", "error_type", "reason"),
    [
        (b"", PREDICTIONS, "decode_error", "empty record value"),
        (None, PREDICTIONS, "decode_error", "empty record value"),
        (b"\x89PNG\r\n", PREDICTIONS, "decode_error", "unrecognized framing: first byte 89"),
        (SINGLE_OBJECT_MAGIC + b"\x00" * 8 + b"\x02", PREDICTIONS, "decode_error", "unknown schema fingerprint"),
        (avro(FULL_PREDICTION)[:-3], PREDICTIONS, "decode_error", "corrupt Avro body"),
        (avro(FULL_PREDICTION), FEEDBACK, "decode_error", "unknown schema fingerprint"),
        (avro(FULL_PREDICTION), "some.other.topic", "configuration_error", "'some.other.topic' is not mapped"),
    ],
)
def test_undecodable_records_are_dead_letters(value, topic, error_type, reason):
    letter = dead(value, topic)
    assert letter.error_type == error_type and reason in letter.reason, letter.reason


def test_nan_feature_is_missing_by_default_and_invalid_on_request():
    event = FULL_PREDICTION | {"numeric_features": {"a": math.nan, "b": 1.0}, "vector_features": {"v": [math.nan]}}
    doc = normalized(avro(event)).document
    assert doc["features"]["numeric"] == {"b": 1.0}
    assert doc["features"]["vector"] == {}
    assert doc["features"]["missing"] == ["zip", "a", "v"]
    strict = make_normalizer(NormalizeConfig(nan_features="invalid"))
    letter = dead(avro(event), normalizer=strict)
    assert letter.error_type == "validation_error" and "numeric_features['a'] is NaN" in letter.reason


def test_dotted_names_become_underscored_everywhere():
    event = FULL_PREDICTION | {"numeric_features": {"user.age": 3.0}, "scores": {"class.a": 1.0}, "null_features": ["x.y"]}
    doc = normalized(avro(event)).document
    assert doc["features"]["numeric"] == {"user_age": 3.0}
    assert doc["prediction"]["scores"] == {"class_a": 1.0}
    assert doc["features"]["missing"] == ["x_y"]


def test_limits_are_configurable():
    config = NormalizeConfig(max_features=3, max_id_length=5, min_timestamp_ms=TS + 1)
    letter = dead(avro(FULL_PREDICTION), normalizer=make_normalizer(config))
    assert letter.error_type == "validation_error" and "request_id" in letter.reason
    event = FULL_PREDICTION | {"request_id": "r-1"}
    assert "timestamp" in dead(avro(event), normalizer=make_normalizer(config)).reason
    event |= {"timestamp": TS + 1}
    assert "7 features, more than 3" in dead(avro(event), normalizer=make_normalizer(config)).reason


# --- pseudonymization ------------------------------------------------------------------------


def test_pseudonyms_are_stable_for_a_key_and_differ_across_keys():
    value = avro(FULL_PREDICTION)
    first = normalized(value).document["subject"]["id"]
    again = normalized(value, normalizer=make_normalizer()).document["subject"]["id"]
    other = normalized(value, normalizer=make_normalizer(key=b"another-key-of-32-bytes-xxxxxxxx")).document["subject"]["id"]
    assert first == again == pseudonym("customer-4711@example.com", "subject")
    assert other != first and other.startswith("pz_")


def test_raw_personal_ids_never_reach_the_canonical_document():
    config = NormalizeConfig(pseudonymize_features=frozenset({"email", "zip_code"}), drop_features=frozenset({"phone"}))
    normalizer = make_normalizer(config)
    event = FULL_PREDICTION | {
        "categorical_features": {"country": "DE", "email": "jane.doe@example.org", "phone": "+49 30 1234567"},
        "numeric_features": {"zip_code": 10115.0, "age": 41.0},
        "null_features": ["phone"],
    }
    doc = normalized(avro(event), normalizer=normalizer).document
    text = strict_json(doc)
    for raw in ("customer-4711@example.com", "jane.doe@example.org", "+49 30 1234567", "10115", "phone"):
        assert raw not in text
    assert doc["features"]["categorical"] == {
        "country": "DE",
        "email": pseudonym("jane.doe@example.org", "email"),
        "zip_code": pseudonym("10115", "zip_code"),
    }
    assert doc["features"]["numeric"] == {"age": 41.0}
    feedback = normalized(avro(FULL_FEEDBACK, "feedback_event"), FEEDBACK, normalizer).document
    assert "rater-jane-17" not in strict_json(feedback)


def test_json_line_personal_ids_are_pseudonymized_too():
    normalizer = make_normalizer(NormalizeConfig(json_fields=JSON_ALIASES, pseudonymize_features=frozenset({"email"})))
    line = json_line(features={"email": "jane.doe@example.org", "age": 41})
    text = strict_json(normalized(line, normalizer=normalizer).document)
    assert "jane.doe@example.org" not in text and "customer-4711@example.com" not in text


def test_normalizer_refuses_to_start_without_a_key():
    with pytest.raises(PseudonymizationKeyError):
        Normalizer(pseudonymizer=None)
    with pytest.raises(PseudonymizationKeyError, match="DRIFTLINE_PSEUDONYMIZATION_KEY"):
        Normalizer.from_settings(Settings())
    with pytest.raises(PseudonymizationKeyError, match="at least 16 bytes"):
        Normalizer.from_settings(Settings(pseudonymization_key="short"))


def test_from_settings_uses_the_topics_the_key_and_the_registry():
    registry = registry_client({"url": "mock://normalize-settings"})
    s = Settings(predictions_topic="p.topic", feedback_topic="f.topic", pseudonymization_key=KEY.decode())
    normalizer = Normalizer.from_settings(s, registry=registry)
    value = make_codec("feedback_event", registry=registry, topic="f.topic").encode(FULL_FEEDBACK)
    out = normalizer.normalize(RawRecord(value, None, "f.topic", 0, 1), NOW)
    assert isinstance(out, NormalizedEvent) and out.document == EXPECTED_FEEDBACK


# --- dead letters -----------------------------------------------------------------------------


def test_dead_letter_encodes_as_the_avro_contract_and_indexes_as_a_deadletters_document():
    letter = dead(b"\x89garbage")
    codec = make_codec("dead_letter")
    decoded = codec.decode(codec.encode(letter.to_avro()))
    assert decoded["raw"] == b"\x89garbage" and decoded["raw_key"] == b"req-0001"
    assert decoded["error_type"] == "decode_error" and decoded["stage"] == "normalize"
    assert (decoded["source_topic"], decoded["source_partition"], decoded["source_offset"]) == (PREDICTIONS, 2, 7)
    assert epoch_ms(decoded["timestamp"]) == NOW

    doc = letter.to_document()
    assert doc == {
        "@timestamp": iso_millis(TS + 5),  # the Kafka record's time: a replay lands in the same index
        "event": {"kind": "pipeline_error", "dataset": "driftline.deadletters", "created": iso_millis(NOW),
                  "original": base64.b64encode(b"\x89garbage").decode()},  # fmt: skip
        "error": {"type": "decode_error", "message": letter.reason, "stage": "normalize"},
        "kafka": {"topic": PREDICTIONS, "partition": 2, "offset": 7, "key": base64.b64encode(b"req-0001").decode()},
    }
    assert mapping_check(doc, "deadletters") == set()


def test_normalize_batch_splits_events_and_dead_letters_in_order_and_counts_them():
    normalizer = make_normalizer()
    records = [record(avro(FULL_PREDICTION), offset=1), record(b"junk", offset=2),
               record(avro(FULL_FEEDBACK, "feedback_event"), FEEDBACK, offset=3), record(b"", offset=4)]  # fmt: skip
    events, letters = normalizer.normalize_batch(records, NOW)
    assert [e.offset for e in events] == [1, 3] and [d.source_offset for d in letters] == [2, 4]
    assert normalizer.counts == {"prediction": 1, "feedback": 1, "decode_error": 2}


# --- Elasticsearch template compatibility -------------------------------------------------------


def test_canonical_documents_fit_the_elasticsearch_templates():
    prediction = normalized(avro(FULL_PREDICTION)).document
    feedback = normalized(avro(FULL_FEEDBACK, "feedback_event"), FEEDBACK).document
    # prediction.outputs has no explicit mapping yet: strings become keyword by the template, scores float by inference
    assert mapping_check(prediction, "predictions") == {"prediction.outputs.score"}
    assert mapping_check(prediction, "outcomes") == {"prediction.outputs.score"}
    assert mapping_check(feedback, "outcomes") == set()


# --- never raises ----------------------------------------------------------------------------------

_NORMALIZER = make_normalizer(NormalizeConfig(json_fields=JSON_ALIASES, pseudonymize_features=frozenset({"email"})))
_TOPICS = st.sampled_from([PREDICTIONS, FEEDBACK])


def check_outcome(out: Any) -> None:
    """Either a canonical event that fits the templates, or a dead letter from a known, non-internal cause."""
    if isinstance(out, NormalizedEvent):
        strict_json(out.document)
        stream = "predictions" if out.kind is EventKind.PREDICTION else "outcomes"
        assert mapping_check(out.document, stream) <= {"prediction.outputs.score", "prediction.outputs.value"}
        assert out.document["request"]["id"] == out.request_id
        assert epoch_ms(event_time(out.document)) == out.timestamp_ms
    else:
        assert isinstance(out, DeadLetterRecord)
        assert out.error_type in {e.value for e in ErrorType} - {"internal_error"}, out.reason
        make_codec("dead_letter").encode(out.to_avro())
        strict_json(out.to_document())


@HYPOTHESIS
@given(value=st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b'{"' + b), topic=_TOPICS)
def test_random_bytes_never_raise(value, topic):
    check_outcome(_NORMALIZER.normalize(record(value, topic), NOW))


_FINGERPRINTS = [schema_fingerprint(load_schema(n)) for n in ("prediction_event", "feedback_event")]


@HYPOTHESIS
@given(body=st.binary(max_size=300), header=st.sampled_from([SINGLE_OBJECT_MAGIC + f for f in _FINGERPRINTS]), topic=_TOPICS)
def test_random_avro_bodies_never_raise(body, header, topic):
    check_outcome(_NORMALIZER.normalize(record(header + body, topic), NOW))


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
_contract_lines = st.fixed_dictionaries(
    {}, optional={name: _json_values for name in sorted(PREDICTION_FIELDS | {"labels", "label", "values", "value", "label_source", "rater_id", "confidence", "id", "ts", "meta"})}
)  # fmt: skip


@HYPOTHESIS
@given(line=_json_values | _contract_lines, topic=_TOPICS)
def test_random_json_never_raises(line, topic):
    check_outcome(_NORMALIZER.normalize(record(json.dumps(line).encode(), topic), NOW))


_hostile_doubles = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 3.5e38, 0.0])
_hostile_names = st.text(max_size=6) | st.sampled_from(["", " ", ".", "a.b", "a_b", "..", "_id"])
_hostile_predictions = contract_events.prediction_events.flatmap(
    lambda event: st.fixed_dictionaries(
        {
            "timestamp": st.integers(-(2**63), 2**63 - 1) | st.integers(946_684_800_000, NOW + 86_400_000),
            "latency_ms": st.none() | _hostile_doubles,
            "prediction": st.lists(st.fixed_dictionaries({"label": st.none() | st.text(max_size=4), "value": st.none() | _hostile_doubles, "score": st.none() | _hostile_doubles}), max_size=3),
            "scores": st.dictionaries(_hostile_names, _hostile_doubles, max_size=3),
            "numeric_features": st.dictionaries(_hostile_names, _hostile_doubles, max_size=6),
            "vector_features": st.dictionaries(_hostile_names, st.lists(_hostile_doubles, max_size=3), max_size=2),
            "slices": st.dictionaries(_hostile_names, st.text(max_size=4), max_size=3),
            "null_features": st.lists(_hostile_names, max_size=3),
        }
    ).map(lambda hostile: event | hostile)
)  # fmt: skip
_hostile_feedback = contract_events.feedback_events.flatmap(
    lambda event: st.fixed_dictionaries(
        {
            "timestamp": st.integers(-(2**63), 2**63 - 1) | st.integers(946_684_800_000, NOW + 86_400_000),
            "values": st.lists(_hostile_doubles, max_size=3),
            "confidence": st.none() | _hostile_doubles,
        }
    ).map(lambda hostile: event | hostile)
)


@HYPOTHESIS
@given(event=_hostile_predictions, framing=st.sampled_from(["single", "confluent"]))
def test_valid_avro_predictions_with_hostile_values_never_raise(event, framing):
    check_outcome(_normalize_avro(event, "prediction_event", PREDICTIONS, framing))


@HYPOTHESIS
@given(event=_hostile_feedback, framing=st.sampled_from(["single", "confluent"]))
def test_valid_avro_feedback_with_hostile_values_never_raises(event, framing):
    check_outcome(_normalize_avro(event, "feedback_event", FEEDBACK, framing))


_REGISTRY = registry_client({"url": "mock://normalize-hostile"})
_REGISTRY_NORMALIZER = make_normalizer(registry=_REGISTRY)
_ENCODERS = {
    ("single", "prediction_event"): make_codec("prediction_event"),
    ("single", "feedback_event"): make_codec("feedback_event"),
    ("confluent", "prediction_event"): make_codec("prediction_event", registry=_REGISTRY, topic=PREDICTIONS),
    ("confluent", "feedback_event"): make_codec("feedback_event", registry=_REGISTRY, topic=FEEDBACK),
}


def _normalize_avro(event: dict[str, Any], schema: str, topic: str, framing: str) -> Any:
    value = _ENCODERS[(framing, schema)].encode(event)
    return _REGISTRY_NORMALIZER.normalize(record(value, topic), NOW)


_nonblank = st.text(min_size=1, max_size=12).filter(lambda s: not s.isspace())
# no "_" in names: de-dotting ("a.b" -> "a_b") then cannot make two names collide
_field_names = st.text(st.characters(blacklist_characters="_", blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(lambda s: not s.isspace())
_finite = st.floats(allow_nan=False, allow_infinity=False)
_feature_values = _finite | st.just(math.nan)  # NaN = missing
_valid_predictions = st.fixed_dictionaries(
    {
        "request_id": _nonblank,
        "timestamp": st.integers(946_684_800_000, NOW + 86_400_000),
        "model_name": _nonblank,
        "model_version": _nonblank,
        "latency_ms": st.none() | st.floats(0, 86_400_000),
        "prediction": st.lists(
            st.fixed_dictionaries({"label": st.none() | _nonblank, "value": st.none() | _finite, "score": st.none() | _finite})
            .filter(lambda o: o["label"] is not None or o["value"] is not None), min_size=1, max_size=3),
        "scores": st.dictionaries(_field_names, _finite, max_size=4),
        "numeric_features": st.dictionaries(_field_names, _feature_values, max_size=8),
        "categorical_features": st.dictionaries(_field_names, st.text(max_size=8), max_size=3),
        "boolean_features": st.dictionaries(_field_names, st.booleans(), max_size=3),
        "vector_features": st.dictionaries(_field_names, st.lists(_feature_values, max_size=4), max_size=2),
        "null_features": st.lists(_field_names, max_size=3),
        "input_summary": st.fixed_dictionaries({"shape": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
                                                "size_bytes": st.none() | st.integers(0, 2**63 - 1),
                                                "description": st.none() | st.text(max_size=8)}),
        "request_type": st.text(max_size=8),
        "slices": st.dictionaries(_field_names, st.text(max_size=8), max_size=3),
        "trace": st.fixed_dictionaries({"trace_id": st.none() | st.text(max_size=32), "span_id": st.none() | st.text(max_size=16)}),
        "subject_id": st.none() | st.text(max_size=12),
    }
)
_valid_feedback = st.fixed_dictionaries(
    {
        "request_id": _nonblank,
        "timestamp": st.integers(946_684_800_000, NOW + 86_400_000),
        "labels": st.lists(_nonblank, max_size=3),
        "values": st.lists(_finite, max_size=3),
        "label_source": st.sampled_from(["PROCESS_FEEDBACK", "HUMAN_RATER", "WEAK_SUPERVISION", "UNKNOWN"]),
        "rater_id": st.none() | st.text(max_size=12),
        "confidence": st.none() | st.floats(0, 1),
        "model_name": st.none() | _nonblank,
    }
).filter(lambda e: e["labels"] or e["values"])  # fmt: skip


@HYPOTHESIS
@given(event=_valid_predictions)
def test_valid_edge_case_predictions_are_events_and_json_lines_agree_with_avro(event):
    from_avro = _NORMALIZER.normalize(record(avro(event)), NOW)
    assert isinstance(from_avro, NormalizedEvent), from_avro.reason  # type: ignore[union-attr]
    check_outcome(from_avro)
    from_json = _NORMALIZER.normalize(record(json.dumps(event).encode()), NOW)
    assert isinstance(from_json, NormalizedEvent), from_json.reason  # type: ignore[union-attr]
    assert from_json.document == from_avro.document
    assert not any(isinstance(v, float) and math.isnan(v) for v in from_avro.document["features"]["numeric"].values())


@HYPOTHESIS
@given(event=_valid_feedback)
def test_valid_edge_case_feedback_is_an_event_and_json_lines_agree_with_avro(event):
    from_avro = _NORMALIZER.normalize(record(avro(event, "feedback_event"), FEEDBACK), NOW)
    assert isinstance(from_avro, NormalizedEvent), from_avro.reason  # type: ignore[union-attr]
    check_outcome(from_avro)
    from_json = _NORMALIZER.normalize(record(json.dumps(event).encode(), FEEDBACK), NOW)
    assert isinstance(from_json, NormalizedEvent) and from_json.document == from_avro.document


def test_records_of_the_wrong_python_type_are_dead_letters_too():
    for value in ("a str", 12, ["list"]):
        out = _NORMALIZER.normalize(RawRecord(value, "key", PREDICTIONS, 0, 0), NOW)  # type: ignore[arg-type]
        assert isinstance(out, DeadLetterRecord) and out.error_type == "decode_error"
        make_codec("dead_letter").encode(out.to_avro())


# --- docstring examples --------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["driftline.streams.normalize", "driftline.streams.json_events", "driftline.streams.pseudonymize"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_dead_letter_partition_header_is_what_struct_packs():
    # the schema id reported for a Confluent record without a registry is the big-endian id
    letter = dead(b"\x00" + struct.pack(">I", 4242) + b"\x02")
    assert "schema id 4242" in letter.reason


def test_feature_privacy_and_json_aliases_come_from_driftline_environment_variables(monkeypatch):
    monkeypatch.setenv("DRIFTLINE_PSEUDONYMIZE_FEATURES", '["email"]')
    monkeypatch.setenv("DRIFTLINE_DROP_FEATURES", '["ssn"]')
    monkeypatch.setenv("DRIFTLINE_JSON_ALIASES", '{"ts": "timestamp", "model": "model_name"}')
    monkeypatch.setenv("DRIFTLINE_JSON_EPOCH_UNIT", "s")
    from driftline.streams.normalize import Normalizer as EnvNormalizer
    from driftline.streams.normalize import RawRecord as Raw

    settings_from_env = Settings(pseudonymization_key="k" * 32)
    normalizer = EnvNormalizer.from_settings(settings_from_env)
    line = json.dumps({"request_id": "r-9", "ts": 1_763_850_000, "model": "churn", "model_version": "3",
                       "prediction": [{"label": "stay"}],
                       "categorical_features": {"email": "a@example.com", "ssn": "123-45-6789", "plan": "pro"}})
    out = normalizer.normalize(Raw(line.encode(), b"r-9", settings_from_env.predictions_topic, 0, 1),
                               now_ms=1_763_850_000_000)
    assert not hasattr(out, "reason"), out.reason
    categorical = out.document["features"]["categorical"]
    assert "ssn" not in categorical and categorical["plan"] == "pro"
    assert categorical["email"].startswith("pz_") and "example" not in categorical["email"]
    assert out.document["model"]["name"] == "churn" and out.document["@timestamp"] == "2025-11-22T22:20:00.000Z"
