"""The Avro contract and its two framings: round trips, evolution, corrupt input."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from driftline.connectors.codec import (
    EVENT_SCHEMAS,
    ConfluentCodec,
    DecodeError,
    EncodeError,
    SingleObjectCodec,
    load_schema,
    make_codec,
    parse_schema_json,
    registry_client,
    schema_fingerprint,
)
from tests.events import STRATEGIES, prediction

OLD_PREDICTION = parse_schema_json(json.loads((Path(__file__).parents[1] / "schemas" / "prediction_event_v1.avsc").read_text()))
FRAMINGS = ["single-object", "confluent"]
EXAMPLES = {
    "prediction_event": prediction(7),
    "feedback_event": {"request_id": "r-1", "timestamp": 1, "labels": ["a", "b"], "rater_id": "x"},
    "dead_letter": {"raw": b"xyz", "reason": "bad", "error_type": "decode_error", "source_topic": "t",
                    "source_partition": 0, "source_offset": 5, "timestamp": 0},
}


def codec_for(name: str, framing: str, registry=None):
    if framing == "single-object":
        return make_codec(name)
    return make_codec(name, registry=registry or registry_client({"url": "mock://codec-tests"}), topic=f"t.{name}")


def test_every_field_of_every_schema_is_documented():
    for name in EVENT_SCHEMAS:
        raw = json.loads((Path(__file__).parents[2] / "schemas" / f"{name}.avsc").read_text())

        def walk(record):
            assert record.get("doc"), f"{name}: record {record['name']} has no doc"
            for field in record["fields"]:
                assert field.get("doc"), f"{name}: field {field['name']} has no doc"
                types = field["type"] if isinstance(field["type"], list) else [field["type"]]
                for t in types:
                    if isinstance(t, dict) and t.get("type") == "record":
                        walk(t)
                    if isinstance(t, dict) and t.get("type") == "array" and isinstance(t["items"], dict) and t["items"].get("type") == "record":
                        walk(t["items"])

        walk(raw)


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", EVENT_SCHEMAS)
def test_generated_events_round_trip(name, framing):
    codec = codec_for(name, framing)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(STRATEGIES[name])
    def round_trip(event):
        assert codec.decode(codec.encode(event)) == event

    round_trip()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_encode_many_equals_encode(framing):
    codec = codec_for("prediction_event", framing)
    events = [prediction(i) for i in range(50)]
    assert codec.encode_many(events) == [codec.encode(e) for e in events]


def test_single_object_header_is_magic_plus_crc64_fingerprint():
    codec = make_codec("prediction_event")
    data = codec.encode(prediction(1))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(load_schema("prediction_event"))


def test_confluent_header_is_magic_zero_plus_registered_id():
    registry = registry_client({"url": "mock://header"})
    codec = codec_for("prediction_event", "confluent", registry)
    data = codec.encode(prediction(1))
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert registry.get_schema(schema_id).schema_str  # the id really is registered
    assert schema_id == codec.schema_id


def test_omitted_optional_fields_take_their_defaults():
    codec = make_codec("prediction_event")
    minimal = {"request_id": "r", "timestamp": 0, "model_name": "m", "model_version": "1", "prediction": []}
    decoded = codec.decode(codec.encode(minimal))
    assert decoded["numeric_features"] == {} and decoded["request_type"] == "online"
    assert decoded["trace"] == {"trace_id": None, "span_id": None} and decoded["latency_ms"] is None


def test_event_that_breaks_the_schema_raises_encode_error():
    with pytest.raises(EncodeError):
        make_codec("prediction_event").encode({"request_id": "r"})
    with pytest.raises(EncodeError):
        make_codec("feedback_event").encode({"request_id": "r", "timestamp": 0, "label_source": "ORACLE"})


def old_event():
    return {
        "request_id": "old-1",
        "timestamp": 1_700_000_000_000,
        "model_name": "churn",
        "model_version": "v1",
        "latency_ms": 12.5,
        "prediction": [{"label": "stay", "score": 0.9}],
        "numeric_features": {"tenure": 3.0},
        "categorical_features": {"plan": "pro"},
        "feature_set": "2019",
        "slices": {"region": "us"},
    }


def test_old_prediction_version_decodes_under_current_schema_single_object():
    old_writer = SingleObjectCodec(OLD_PREDICTION)
    reader = make_codec("prediction_event", writer_schemas=[OLD_PREDICTION])
    decoded = reader.decode(old_writer.encode(old_event()))
    assert decoded["request_id"] == "old-1" and decoded["latency_ms"] == 12.5
    assert decoded["prediction"] == [{"label": "stay", "value": None, "score": 0.9}]
    assert decoded["boolean_features"] == {} and decoded["subject_id"] is None
    assert "feature_set" not in decoded
    assert decoded["timestamp"].year == 2023


def test_old_prediction_version_decodes_under_current_schema_confluent():
    registry = registry_client({"url": "mock://evolution"})
    subject = "driftline.predictions-value"
    old_writer = ConfluentCodec(OLD_PREDICTION, registry, subject)
    reader = ConfluentCodec(load_schema("prediction_event"), registry, subject)
    data = old_writer.encode(old_event())
    assert struct.unpack(">bI", data[:5])[1] != reader.schema_id
    decoded = reader.decode(data)
    assert decoded["prediction"][0]["value"] is None and decoded["vector_features"] == {}


@pytest.mark.parametrize("framing", FRAMINGS)
def test_without_logical_types_timestamps_read_as_the_milliseconds_written(framing):
    def reader(logical_types: bool):
        if framing == "single-object":
            return make_codec("prediction_event", writer_schemas=[OLD_PREDICTION], logical_types=logical_types)
        return ConfluentCodec(load_schema("prediction_event"), registry, subject, logical_types=logical_types)

    registry, subject = registry_client({"url": f"mock://plain-{framing}"}), "driftline.predictions-value"
    old_writer = SingleObjectCodec(OLD_PREDICTION) if framing == "single-object" else ConfluentCodec(
        OLD_PREDICTION, registry, subject)
    plain, typed = reader(False), reader(True)
    # an older writer, resolved: the timestamp is the long it was written as, every other field as with them
    data = old_writer.encode(old_event())
    decoded, expected = plain.decode(data), typed.decode(data)
    assert isinstance(decoded["timestamp"], int)
    # (a writer schema from the registry is its canonical form, which has no logical types: an int either way)
    typed_ms = expected["timestamp"]
    typed_ms = typed_ms if isinstance(typed_ms, int) else round(typed_ms.timestamp() * 1000)
    assert decoded["timestamp"] == 1_700_000_000_000 == typed_ms
    assert {k: v for k, v in decoded.items() if k != "timestamp"} == {
        k: v for k, v in expected.items() if k != "timestamp"}
    # the current schema: encoding is unchanged, decoding gives the int back
    ms = 1_763_850_000_123
    assert plain.decode(plain.encode(prediction(3) | {"timestamp": ms}))["timestamp"] == ms


def test_unknown_fingerprint_is_a_decode_error():
    data = SingleObjectCodec(OLD_PREDICTION).encode(old_event())
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        make_codec("prediction_event").decode(data)


def test_unknown_schema_id_is_a_decode_error():
    codec = codec_for("prediction_event", "confluent")
    data = bytearray(codec.encode(prediction(1)))
    data[1:5] = struct.pack(">I", 987654)
    with pytest.raises(DecodeError, match="987654"):
        codec.decode(bytes(data))


def test_wrong_framing_is_a_decode_error():
    single = make_codec("prediction_event")
    confluent = codec_for("prediction_event", "confluent")
    with pytest.raises(DecodeError, match="not Confluent-framed"):
        confluent.decode(single.encode(prediction(1)))
    with pytest.raises(DecodeError, match="not single-object encoded"):
        single.decode(confluent.encode(prediction(1)))


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", EVENT_SCHEMAS)
def test_every_truncation_is_a_decode_error(name, framing):
    codec = codec_for(name, framing)
    data = codec.encode(EXAMPLES[name])
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", EVENT_SCHEMAS)
def test_fuzzed_bytes_give_only_decode_errors(name, framing):
    codec = codec_for(name, framing)
    header = codec.encode(EXAMPLES[name])[: 10 if framing == "single-object" else 5]

    @settings(max_examples=400, deadline=None)
    @given(body=st.binary(max_size=300), keep_header=st.booleans())
    def fuzz(body, keep_header):
        data = header + body if keep_header else body
        try:
            codec.decode(data)
        except DecodeError as exc:
            assert exc.reason
        # a decode that succeeds is fine: random bytes can be a valid record

    fuzz()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_bit_flips_of_a_valid_event_give_only_decode_errors(framing):
    codec = codec_for("prediction_event", framing)
    data = codec.encode(prediction(3))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), min_size=1, max_size=4))
    def flip(flips):
        mutated = bytearray(data)
        for pos, bit in flips:
            mutated[pos] ^= 1 << bit
        try:
            codec.decode(bytes(mutated))
        except DecodeError:
            pass

    flip()


def test_huge_length_prefix_is_a_decode_error_not_a_memory_blowup():
    codec = make_codec("feedback_event")
    header = codec.encode({"request_id": "r", "timestamp": 0})[:10]
    # zig-zag varint for a ~2^62 string length
    huge = bytes([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
    with pytest.raises(DecodeError):
        codec.decode(header + huge + b"abc")


def test_non_bytes_input_is_a_decode_error():
    with pytest.raises(DecodeError):
        make_codec("prediction_event").decode("text")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        make_codec("prediction_event").decode(None)  # type: ignore[arg-type]


def test_schemas_are_valid_avro_for_other_readers():
    # the .avsc files must parse on their own, without driftline
    for name in EVENT_SCHEMAS:
        fastavro.parse_schema(json.loads((Path(__file__).parents[2] / "schemas" / f"{name}.avsc").read_text()))
