"""JSON log lines mapped onto the event contract: aliases, timestamps, features, wrong types."""

from __future__ import annotations

import json
import math

import pytest

from driftline.connectors.codec import DecodeError
from driftline.streams.json_events import JsonFieldMap, MappingError, json_event, parse_timestamp_ms

MS = 1_763_850_000_123  # 2025-11-22T22:20:00.123Z


def line(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_763_850_000, 1_763_850_000_000),  # seconds
        (1_763_850_000.123, MS),  # fractional seconds
        (MS, MS),  # milliseconds
        (MS * 1000 + 456, MS),  # microseconds
        (MS * 1_000_000 + 456_789, MS),  # nanoseconds
        ("1763850000123", MS),
        ("1763850000", 1_763_850_000_000),
        ("2025-11-22T22:20:00.123Z", MS),
        ("2025-11-22T22:20:00.123456+00:00", MS),
        ("2025-11-23T00:20:00.123+02:00", MS),
        ("2025-11-22T22:20:00.123", MS),  # no offset: UTC
        ("2025-11-22", 1_763_769_600_000),
        (" 2025-11-22T22:20:00.123Z ", MS),
        (-1_000, -1_000_000),  # before 1970, seconds; the normalizer's range check rejects it
    ],
)
def test_timestamps_in_every_accepted_form(value, expected):
    assert parse_timestamp_ms(value) == expected


def test_epoch_unit_can_be_forced():
    assert parse_timestamp_ms(5, "ms") == 5 and parse_timestamp_ms(MS, "s") == MS * 1000
    assert parse_timestamp_ms(1.5, "s") == 1500


@pytest.mark.parametrize("value", [True, None, math.nan, math.inf, "soon", "2025-13-01", "1" * 40, [1], {"s": 1}, "１２３"])
def test_unreadable_timestamps_are_mapping_errors(value):
    with pytest.raises(MappingError, match="'when'"):
        parse_timestamp_ms(value, field_name="when")


def test_huge_float_timestamp_is_a_mapping_error():
    with pytest.raises(MappingError, match="finite"):
        parse_timestamp_ms(1.7e308, "s")


def test_aliases_map_source_names_and_dotted_paths():
    fm = JsonFieldMap({"id": "request_id", "meta.model.name": "model_name", "v": "model_version"})
    e = json_event(line(id="r-1", meta={"model": {"name": "m"}}, v=2, model_name="ignored"), "prediction", fm)
    assert (e["request_id"], e["model_name"], e["model_version"]) == ("r-1", "m", "2")


def test_an_exact_dotted_key_wins_over_the_path():
    fm = JsonFieldMap({"a.b": "request_id"})
    assert json_event(line(**{"a.b": "flat", "a": {"b": "nested"}}), "prediction", fm)["request_id"] == "flat"
    assert json_event(line(a={"b": "nested"}), "prediction", fm)["request_id"] == "nested"


def test_contract_names_are_used_when_the_alias_is_absent():
    fm = JsonFieldMap({"id": "request_id"})
    assert json_event(line(request_id="direct"), "prediction", fm)["request_id"] == "direct"


def test_alias_to_an_unknown_contract_name_fails_at_construction():
    with pytest.raises(ValueError, match="not a contract field"):
        JsonFieldMap({"x": "request"})
    with pytest.raises(ValueError, match="epoch_unit"):
        JsonFieldMap(epoch_unit="us")  # type: ignore[arg-type]


def test_unknown_keys_are_ignored():
    e = json_event(line(request_id="r", password="hunter2"), "prediction")
    assert "hunter2" not in json.dumps(e)


def test_mixed_features_are_split_like_the_producer_does():
    e = json_event(line(features={"age": 41, "country": "DE", "vip": True, "emb": [1, 2.5], "x": None}), "prediction")
    assert e["numeric_features"] == {"age": 41.0}
    assert e["categorical_features"] == {"country": "DE"}
    assert e["boolean_features"] == {"vip": True}
    assert e["vector_features"] == {"emb": [1.0, 2.5]}
    assert e["null_features"] == ["x"]


def test_typed_feature_maps_are_accepted_and_merged():
    e = json_event(line(features={"a": 1}, numeric_features={"b": 2}, boolean_features={"c": False},
                        vector_features={"d": [1]}, null_features=["e"]), "prediction")  # fmt: skip
    assert e["numeric_features"] == {"a": 1.0, "b": 2.0}
    assert (e["boolean_features"], e["vector_features"], e["null_features"]) == ({"c": False}, {"d": [1.0]}, ["e"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"features": {"o": {"a": 1}}}, "features.o"),
        ({"features": {"v": [1, "a"]}}, "features.v"),
        ({"features": {"v": [True]}}, "features.v"),
        ({"features": {"big": 10**400}}, "features"),
        ({"features": [1, 2]}, "features"),
        ({"boolean_features": {"b": 1}}, "boolean_features.b"),
        ({"vector_features": {"v": 3}}, "vector_features.v"),
        ({"null_features": [1]}, "null_features[0]"),
        ({"request_id": True}, "request_id"),
        ({"request_id": {"a": 1}}, "request_id"),
        ({"latency_ms": "3"}, "latency_ms"),
        ({"prediction": [None]}, "prediction[0]"),
        ({"trace": {"trace_id": 5}}, "trace_id"),
        ({"input_summary": {"shape": [1.5]}}, "input_summary.shape"),
        ({"input_summary": {"size_bytes": -(2**64)}}, "input_summary.size_bytes"),
        ({"scores": {"a": None}}, "scores.a"),
    ],
)
def test_prediction_fields_of_the_wrong_type_name_the_field(fields, field):
    with pytest.raises(MappingError) as info:
        json_event(line(**({"request_id": "r"} | fields)), "prediction")
    assert field in info.value.reason


def test_alias_names_appear_in_mapping_errors():
    with pytest.raises(MappingError, match="'lat'"):
        json_event(line(lat="slow"), "prediction", JsonFieldMap({"lat": "latency_ms"}))


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("cat", [{"label": "cat", "value": None, "score": None}]),
        (2.5, [{"label": None, "value": 2.5, "score": None}]),
        ({"label": "cat", "score": 0.9}, [{"label": "cat", "value": None, "score": 0.9}]),
        (["a", {"label": "b", "score": 1}], [{"label": "a", "value": None, "score": None}, {"label": "b", "value": None, "score": 1.0}]),
    ],
)
def test_prediction_shortcuts(prediction, expected):
    assert json_event(line(prediction=prediction), "prediction")["prediction"] == expected


def test_numbers_become_text_where_the_contract_wants_text():
    e = json_event(line(request_id=12345, model_version=1.5, slices={"tier": 2, "vip": True}), "prediction")
    assert (e["request_id"], e["model_version"], e["slices"]) == ("12345", "1.5", {"tier": "2", "vip": "true"})


def test_trace_object_or_flat_ids():
    assert json_event(line(trace={"trace_id": "t", "span_id": "s"}), "prediction")["trace"] == {"trace_id": "t", "span_id": "s"}
    assert json_event(line(trace_id="t", span_id="s"), "prediction")["trace"] == {"trace_id": "t", "span_id": "s"}


def test_feedback_singles_and_label_sources():
    e = json_event(line(request_id="r", timestamp=MS, label="spam", value=1, label_source="human_rater"), "feedback")
    assert (e["labels"], e["values"], e["label_source"], e["timestamp"]) == (["spam"], [1.0], "HUMAN_RATER", MS)
    e = json_event(line(labels="ham", values=2.0, label_source="crowd"), "feedback")
    assert (e["labels"], e["values"], e["label_source"]) == (["ham"], [2.0], "UNKNOWN")
    assert json_event(line(labels=[1, True]), "feedback")["labels"] == ["1", "true"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"labels": [None]}, "labels[0]"), ({"values": ["1"]}, "values[0]"), ({"label_source": 3}, "label_source"),
     ({"confidence": "high"}, "confidence"), ({"labels": {"a": 1}}, "labels")],
)  # fmt: skip
def test_feedback_fields_of_the_wrong_type_name_the_field(fields, field):
    with pytest.raises(MappingError) as info:
        json_event(line(**fields), "feedback")
    assert field in info.value.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "invalid JSON"), (b"{", "invalid JSON"), (b'"text"', "is a str"), (b"null", "is a NoneType"),
     (b"\xff\xfe{", "invalid JSON"), (b"[" * 50_000 + b"]" * 50_000, "invalid JSON"), (b'{"a": "\\udc00"}', "surrogate"),
     (b'{"a": "\xed\xa0\x80"}', "not UTF-8"), (b'{"a": "caf\xe9"}', "not UTF-8")],
)  # fmt: skip
def test_bytes_that_are_not_one_json_object_are_decode_errors(data, reason):
    with pytest.raises(DecodeError, match=reason.replace("(", r"\(")):
        json_event(data, "prediction")


def test_a_byte_order_mark_and_text_input_are_fine():
    assert json_event(b'\xef\xbb\xbf{"request_id": "r"}', "prediction")["request_id"] == "r"
    assert json_event('{"request_id": "r"}', "prediction")["request_id"] == "r"


def test_paired_surrogate_escapes_are_fine():
    assert json_event(b'{"request_id": "\\ud83d\\ude00"}', "prediction")["request_id"] == "😀"


def test_nan_and_infinity_literals_are_read_for_validation_to_judge():
    e = json_event(b'{"features": {"a": NaN, "b": Infinity}, "latency_ms": NaN}', "prediction")
    assert math.isnan(e["numeric_features"]["a"]) and e["numeric_features"]["b"] == math.inf
    assert math.isnan(e["latency_ms"])
