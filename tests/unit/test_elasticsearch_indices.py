"""Index names from @timestamp, deterministic document ids: pure functions, no server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.connectors.elasticsearch.indices import (
    MAX_ID_BYTES,
    IndexStream,
    InvalidDocument,
    check_id,
    check_prefix,
    document_id,
    event_time,
    get_field,
    index_name,
)

moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.sampled_from(
        [timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-11, minutes=-30))]
    )
)  # fmt: skip


def test_index_name_is_the_utc_day_of_the_timestamp():
    late_in_berlin = datetime(2026, 11, 23, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert index_name("driftline", "predictions", late_in_berlin) == "driftline-predictions-2026.11.22"
    assert index_name("driftline", "alerts", datetime(2026, 1, 2, 3, 4)) == "driftline-alerts-2026.01.02"


@given(moments)
def test_every_timestamp_form_gives_the_same_day(moment: datetime):
    utc_day = moment.astimezone(timezone.utc).strftime("%Y.%m.%d")
    millis = int(moment.timestamp() * 1000)
    forms = [moment, moment.isoformat(), millis, float(millis), str(millis)]
    for form in forms:
        assert index_name("p", "s", event_time({"@timestamp": form})) == f"p-s-{utc_day}", form


def test_naive_timestamps_are_utc_and_z_suffix_parses():
    assert event_time({"@timestamp": "2026-11-22T23:59:59"}) == datetime(2026, 11, 22, 23, 59, 59, tzinfo=timezone.utc)
    assert event_time({"@timestamp": "2026-11-22T23:59:59Z"}).tzinfo == timezone.utc


@pytest.mark.parametrize("bad", [None, "", "yesterday", True, [1], {"ms": 1}, float("nan"), 10**30])
def test_unusable_timestamp_is_invalid_document(bad):
    with pytest.raises(InvalidDocument) as info:
        event_time({"@timestamp": bad})
    assert info.value.error_type == "invalid_timestamp"


def test_missing_timestamp_is_invalid_document():
    with pytest.raises(InvalidDocument, match="@timestamp"):
        event_time({"request": {"id": "r"}})


def test_single_field_id_is_the_value_itself():
    assert document_id({"request": {"id": "req-1"}}, ["request.id"]) == "req-1"
    assert document_id({"request.id": "req-1"}, ["request.id"]) == "req-1"
    assert document_id({"kafka": {"offset": 7}}, ["kafka.offset"]) == "7"


def test_too_long_single_field_id_is_hashed_to_fit():
    long_id = "x" * (MAX_ID_BYTES + 1)
    doc_id = document_id({"request": {"id": long_id}}, ["request.id"])
    assert len(doc_id) == 32 and doc_id == document_id({"request": {"id": long_id}}, ["request.id"])


@given(st.lists(st.text(min_size=1, max_size=8), min_size=3, max_size=3), st.lists(st.text(min_size=1, max_size=8), min_size=3, max_size=3))
def test_multi_field_ids_are_deterministic_and_collision_free(a: list[str], b: list[str]):
    fields = ["model.name", "model.version", "request.id"]

    def doc(v: list[str]) -> dict:
        return {"model": {"name": v[0], "version": v[1]}, "request": {"id": v[2]}}

    assert document_id(doc(a), fields) == document_id(dict(doc(a)), fields)
    assert (document_id(doc(a), fields) == document_id(doc(b), fields)) == (a == b)


def test_separator_inside_values_cannot_make_two_ids_equal():
    fields = ["a", "b"]
    assert document_id({"a": "x:1", "b": "y"}, fields) != document_id({"a": "x", "b": "1:y"}, fields)


@pytest.mark.parametrize("doc", [{}, {"request": {"id": ""}}, {"request": {"id": None}}, {"request": {"id": ["a"]}}, {"request": "r"}])
def test_missing_id_field_is_invalid_document(doc):
    with pytest.raises(InvalidDocument) as info:
        document_id(doc, ["request.id"])
    assert info.value.error_type == "missing_id_field"


@pytest.mark.parametrize("bad", ["", "x" * (MAX_ID_BYTES + 1), "é" * (MAX_ID_BYTES // 2 + 1), 5])
def test_caller_ids_are_checked_before_sending(bad):
    with pytest.raises(InvalidDocument) as info:
        check_id(bad)
    assert info.value.error_type == "invalid_id"
    assert check_id("adwin/fraud/v3/1234") == "adwin/fraud/v3/1234"


def test_get_field_reads_nested_flat_and_mixed_paths():
    assert get_field({"a": {"b": {"c": 1}}}, "a.b.c") == 1
    assert get_field({"a": {"b.c": 2}}, "a.b.c") == 2
    assert get_field({"a": 3}, "a.b") is None


@pytest.mark.parametrize("name", ["Predictions", "drift-events", "", "1x", "a b"])
def test_stream_names_are_lower_case_without_dashes(name):
    with pytest.raises(ValueError):
        IndexStream(name)


@pytest.mark.parametrize("prefix", ["Driftline", "-x", "_x", "a*b", ""])
def test_index_prefix_must_be_a_valid_index_name_start(prefix):
    with pytest.raises(ValueError):
        check_prefix(prefix)
