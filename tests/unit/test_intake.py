"""The intake's batch message and its size-bounded runs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.connectors.codec import DecodeError
from driftline.streams.intake import IntakeBatch, split_by_size

record = st.tuples(
    st.sampled_from(["m.predictions", "m.feedback"]),
    st.integers(0, 2**62),
    st.one_of(st.none(), st.integers(0, 2**50)),
    st.one_of(st.none(), st.binary(max_size=20)),
    st.one_of(st.none(), st.binary(max_size=200)),
)


@given(st.integers(0, 63), st.lists(record, max_size=40))
def test_a_batch_gives_back_every_record_in_order_with_its_source(partition, records):
    decoded = IntakeBatch.decode(IntakeBatch.from_records(partition, records).encode())
    assert len(decoded) == len(records)
    assert [(r.topic, r.partition, r.offset, r.timestamp_ms, r.key, r.value) for r in decoded.records()] == [
        (topic, partition, offset, ts, key, value) for topic, offset, ts, key, value in records]


def test_topics_are_stored_once_per_batch():
    batch = IntakeBatch.from_records(0, [("a", i, None, None, b"v") for i in range(3)] + [("b", 9, None, None, b"w")])
    assert batch.topics == ["a", "b"] and batch.topic_index == [0, 0, 0, 1]


def test_bytes_that_are_not_a_batch_raise_a_decode_error():
    with pytest.raises(DecodeError):
        IntakeBatch.decode(b"\x00\x01 not an intake batch")


@given(st.lists(st.integers(0, 500), max_size=60), st.integers(30, 1_000), st.one_of(st.none(), st.integers(1, 10)))
def test_runs_keep_order_and_stay_within_the_limits_unless_one_record_is_larger(sizes, limit, count):
    records = [("t", i, None, None, b"x" * n) for i, n in enumerate(sizes)]
    runs = list(split_by_size(records, max_bytes=limit, max_records=count))
    assert [r for run in runs for r in run] == records
    for run in runs:
        total = sum(len(r[4]) + 24 for r in run)
        assert total <= limit or len(run) == 1
        assert count is None or len(run) <= count
    # greedy: a run ends only when the next record would not fit
    for run, following in zip(runs, runs[1:]):
        assert sum(len(r[4]) + 24 for r in run) + len(following[0][4]) + 24 > limit or len(run) == count
