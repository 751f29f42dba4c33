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


class _Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def error(self):
        return None

    def timestamp(self):
        return (1, 1_700_000_000_000 + self._where[2])

    def topic(self):
        return self._where[0]

    def partition(self):
        return self._where[1]

    def offset(self):
        return self._where[2]

    def key(self):
        return b"k"

    def value(self):
        return b"v"


class _Consumer:
    """Stands in for confluent-kafka's consumer: hands out messages once, then refuses the commit."""

    def __init__(self, messages: list[_Message]) -> None:
        self.messages = messages

    def consume(self, _n: int, _timeout: float) -> list[_Message]:
        messages, self.messages = self.messages, []
        return messages

    def commit(self, offsets, asynchronous: bool) -> None:
        from confluent_kafka import KafkaError, KafkaException

        raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

    def get_watermark_offsets(self, _tp, cached: bool):
        return (0, 3)  # everything read: nothing holds the other topic back


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def produce(self, _topic: str, value: bytes, partition: int, on_delivery) -> None:
        self.sent.append((partition, value))

    def flush(self, _timeout: float) -> int:
        return 0


def test_a_refused_commit_after_forwarding_is_reported_not_raised():
    from driftline.settings import Settings
    from driftline.streams.intake import Intake

    settings = Settings(predictions_topic="m.predictions", feedback_topic="m.feedback")
    intake = Intake(settings, max_records=10)
    intake.consumer = _Consumer([_Message("m.predictions", 0, i) for i in range(3)]
                                + [_Message("m.feedback", 0, i) for i in range(3)])
    intake.producer = _Producer()
    intake._assigned_tps = {("m.predictions", 0), ("m.feedback", 0)}
    result = intake.cycle()
    assert (result.records, result.commit_failed) == (6, True)
    (partition, value), = intake.producer.sent
    assert partition == 0 and len(IntakeBatch.decode(value)) == 6
