"""Slice specs: parsing, normalized names, attribute lookup, membership, model keys. Pure, no server."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.streams.detect import ModelKey
from driftline.streams.slices import (
    ALL,
    Equals,
    Range,
    SliceSpec,
    attribute_value,
    parse_slices,
    slice_names,
    slices_of,
)


def event(labels=None, categorical=None, boolean=None, numeric=None):
    return {
        "labels": labels or {},
        "features": {"numeric": numeric or {}, "categorical": categorical or {}, "boolean": boolean or {},
                     "vector": {}, "missing": []},
    }  # fmt: skip


# --- parsing and names ---------------------------------------------------------------


def test_equality_spec_is_parsed_and_named_as_written():
    spec = SliceSpec.parse("category=mens-dress-shoes")
    assert spec.conditions == (Equals("category", "mens-dress-shoes"),)
    assert spec.name == "category=mens-dress-shoes"
    assert spec.labels == {"category": "mens-dress-shoes"}


@pytest.mark.parametrize(
    ("text", "low", "high", "low_closed", "high_closed", "name"),
    [
        ("amount=[0,100)", 0.0, 100.0, True, False, "amount=[0,100)"),
        ("amount=(0,100]", 0.0, 100.0, False, True, "amount=(0,100]"),
        ("amount=[100,)", 100.0, None, True, False, "amount=[100,)"),
        ("amount=(,0)", None, 0.0, False, False, "amount=(,0)"),
        ("amount = [ 0.50 , 1e2 ]", 0.5, 100.0, True, True, "amount=[0.5,100]"),
        ("amount=[-inf,5)", None, 5.0, False, False, "amount=(,5)"),
        ("amount=[5,5]", 5.0, 5.0, True, True, "amount=[5,5]"),
    ],
)
def test_range_specs_are_parsed_and_normalized(text, low, high, low_closed, high_closed, name):
    (condition,) = SliceSpec.parse(text).conditions
    assert isinstance(condition, Range)
    assert (condition.low, condition.high) == (low, high)
    assert (condition.low_closed and low is not None, condition.high_closed and high is not None) == (low_closed, high_closed)
    assert SliceSpec.parse(text).name == name


def test_combinations_are_sorted_by_attribute_and_spaces_dropped():
    spec = SliceSpec.parse(" weather = rain & region=eu ")
    assert spec.name == "region=eu&weather=rain"
    assert spec == SliceSpec.parse("region=eu&weather=rain")
    assert spec.labels == {"region": "eu", "weather": "rain"}


@given(st.permutations(["region=eu", "weather=rain", "amount=[0,100)", "vip=true"]))
def test_the_name_does_not_depend_on_condition_order(parts):
    assert SliceSpec.parse("&".join(parts)).name == "amount=[0,100)&region=eu&vip=true&weather=rain"


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=0.001, max_value=1e12),
    st.sampled_from("[("), st.sampled_from(")]"),
)
def test_a_normalized_name_parses_back_to_the_same_spec(low, width, left, right):
    spec = SliceSpec.parse(f"amount={left}{low!r},{low + width!r}{right}")
    assert SliceSpec.parse(spec.name) == spec
    assert SliceSpec.parse(spec.name).name == spec.name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty slice"),
        ("   ", "empty slice"),
        ("region", "has no '='"),
        ("=eu", "no attribute name"),
        ("region=", "has no value"),
        ("region=eu&", "has no '='"),
        ("a=b&a=c", "names attribute 'a' twice"),
        ("amount=[0,100", "must look like"),
        ("amount=[0;100)", "must look like"),
        ("amount=[0,1,2)", "must look like"),
        ("amount=[x,100)", "low bound 'x' is not a number"),
        ("amount=[0,y)", "high bound 'y' is not a number"),
        ("amount=[nan,1)", "NaN"),
        ("amount=[,]", "has no bound"),
        ("amount=[2,1)", "is empty"),
        ("amount=[1,1)", "is empty"),
        ("amount=[inf,)", "the range is empty"),
        ("amount=(,-inf)", "the range is empty"),
        ("region=eu|us", "may not contain '|'"),
        ("re|gion=eu", "may not contain '|'"),
    ],
)
def test_bad_specs_raise_a_clear_value_error(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("|", r"\|")) as info:
        SliceSpec.parse(text)
    if text.strip():
        assert repr(text) in str(info.value)  # the message quotes the spec


def test_parse_slices_keeps_order_and_rejects_duplicates():
    assert [s.name for s in parse_slices(["weather=rain", "amount=[0,10)"])] == ["weather=rain", "amount=[0,10)"]
    with pytest.raises(ValueError, match="same as 'region=eu&tier=2'"):
        parse_slices(["region=eu&tier=2", "tier=2 & region=eu"])


def test_a_non_text_spec_is_a_value_error():
    with pytest.raises(ValueError, match="is text like"):
        SliceSpec.parse(42)  # type: ignore[arg-type]


# --- attribute lookup and matching -------------------------------------------------------


def test_labels_win_over_features_and_categorical_over_boolean_over_numeric():
    doc = event(labels={"a": "label"}, categorical={"a": "cat", "b": "cat"}, boolean={"b": True, "c": False},
                numeric={"c": 1.0, "d": 2.0})  # fmt: skip
    assert [attribute_value(doc, name) for name in "abcde"] == ["label", "cat", False, 2.0, None]


def test_a_document_without_labels_or_features_has_no_attributes():
    assert attribute_value({}, "region") is None
    assert not SliceSpec.parse("region=eu").matches({})
    assert ALL.matches({})


def test_equality_matches_text_booleans_and_numbers():
    doc = event(labels={"region": "eu", "tier": "2"}, boolean={"vip": True}, numeric={"n": 3.0})
    assert SliceSpec.parse("region=eu").matches(doc)
    assert not SliceSpec.parse("region=EU").matches(doc)  # text is case-sensitive
    assert SliceSpec.parse("vip=true").matches(doc)
    assert SliceSpec.parse("vip=True").matches(doc)  # booleans are not
    assert not SliceSpec.parse("vip=false").matches(doc)
    assert SliceSpec.parse("n=3").matches(doc) and SliceSpec.parse("n=3.0").matches(doc)
    assert not SliceSpec.parse("n=three").matches(doc)
    assert SliceSpec.parse("tier=2").matches(doc)
    assert not SliceSpec.parse("tier=2.0").matches(doc)  # a label compares as text


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ("amount=[0,100)", [0, 0.0, 50, 99.999], [-0.001, 100, 100.5]),
        ("amount=(0,100]", [0.001, 100], [0, 100.001]),
        ("amount=[100,)", [100, 1e300], [99.99, -5]),
        ("amount=(,0)", [-1e300, -0.5], [0, 3]),
        ("amount=[5,5]", [5], [4.999, 5.001]),
    ],
)
def test_range_bounds_are_half_open_or_closed_as_written(spec, inside, outside):
    parsed = SliceSpec.parse(spec)
    assert all(parsed.matches(event(numeric={"amount": x})) for x in inside)
    assert not any(parsed.matches(event(numeric={"amount": x})) for x in outside)


def test_a_range_reads_numeric_label_text_but_not_booleans_nan_or_words():
    spec = SliceSpec.parse("tier=[1,3]")
    assert spec.matches(event(labels={"tier": "2"}))
    assert not spec.matches(event(labels={"tier": "gold"}))
    assert not spec.matches(event(boolean={"tier": True}))
    assert not spec.matches(event(numeric={"tier": math.nan}))
    assert not spec.matches(event(labels={"tier": "nan"}))


@given(st.floats(allow_nan=False, min_value=-1e6, max_value=1e6), st.floats(allow_nan=False, min_value=-1e6, max_value=1e6),
       st.floats(allow_nan=True), st.booleans(), st.booleans())
def test_range_membership_is_the_comparison_it_says(a, b, x, low_closed, high_closed):
    low, high = min(a, b), max(a, b)
    if low == high:
        low_closed = high_closed = True
    text = f"x={'[' if low_closed else '('}{low!r},{high!r}{']' if high_closed else ')'}"
    expected = (
        not math.isnan(x) and not math.isinf(x)
        and (low <= x if low_closed else low < x)
        and (x <= high if high_closed else x < high)
    )  # fmt: skip
    assert SliceSpec.parse(text).matches(event(numeric={"x": x})) == expected


def test_all_conditions_of_a_combination_must_hold():
    spec = SliceSpec.parse("region=eu&weather=rain&amount=[0,100)")
    assert spec.matches(event(labels={"region": "eu"}, categorical={"weather": "rain"}, numeric={"amount": 5.0}))
    assert not spec.matches(event(labels={"region": "eu"}, categorical={"weather": "sun"}, numeric={"amount": 5.0}))
    assert not spec.matches(event(labels={"region": "eu"}, categorical={"weather": "rain"}))  # amount missing


# --- slices of a document and model keys -----------------------------------------------


def test_the_whole_model_slice_is_first_with_the_empty_name():
    specs = parse_slices(["region=eu", "weather=rain", "region=eu&weather=rain", "amount=[100,)"])
    doc = event(labels={"region": "eu"}, categorical={"weather": "sun"}, numeric={"amount": 100.0})
    assert slice_names(doc, specs) == ["", "region=eu", "amount=[100,)"]
    assert slice_names(doc, specs, include_all=False) == ["region=eu", "amount=[100,)"]
    assert slices_of(doc, specs)[0] is ALL
    assert ALL.name == "" and ALL.labels == {} and str(ALL) == "all"


def test_slice_labels_are_a_model_key_slice_and_come_back_from_it():
    for text in ["region=eu&weather=rain", "amount=[0,100)", "amount=(,0.5]&vip=true"]:
        spec = SliceSpec.parse(text)
        key = ModelKey("fraud", "v1", spec.labels)
        assert key.encode() == "fraud|v1|" + spec.name.replace("&", "|")
        assert SliceSpec.from_labels(ModelKey.decode(key.encode()).slice) == spec
    assert ModelKey("fraud", "v1", ALL.labels).encode() == "fraud|v1"
    assert SliceSpec.from_labels({}) is ALL


def test_a_canonical_document_is_sliced_by_labels_and_features():
    doc = {
        "@timestamp": "2025-11-22T08:26:40.000Z", "model": {"name": "fraud-detector", "version": "2026.11.1"},
        "request": {"id": "2a-0000000", "type": "online"}, "latency_ms": 7.13,
        "prediction": {"label": "fraud", "score": 0.89, "outputs": [{"label": "fraud", "score": 0.89}], "scores": {}},
        "features": {"numeric": {"amount": -0.14, "velocity": -0.12}, "categorical": {"channel": "web"},
                     "boolean": {}, "vector": {}, "missing": []},
        "labels": {"region": "eu"},
    }  # fmt: skip
    specs = parse_slices(["region=eu&channel=web", "amount=(,0)", "region=us", "velocity=[0,)"])
    assert slice_names(doc, specs) == ["", "channel=web&region=eu", "amount=(,0)"]


def test_membership_of_many_random_events_agrees_with_a_direct_check():
    rng = random.Random(7)
    spec = SliceSpec.parse("region=eu&amount=[10,20)")
    for _ in range(500):
        region, amount = rng.choice(["eu", "us", None]), rng.choice([None, rng.uniform(0, 30), 10.0, 20.0])
        doc = event(labels={"region": region} if region else {}, numeric={"amount": amount} if amount is not None else {})
        assert spec.matches(doc) == (region == "eu" and amount is not None and 10 <= amount < 20)
