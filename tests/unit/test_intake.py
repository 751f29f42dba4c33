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
    """Stands in for confluent-kafka's consumer: hands out each list of messages once; records (or refuses) commits."""

    def __init__(self, *reads: list[_Message], refuse: bool = False) -> None:
        self.reads = list(reads)
        self.refuse = refuse
        self.commits: list[tuple[dict, bool]] = []  # ({(topic, partition): offset}, asynchronous)

    def consume(self, _n: int, _timeout: float) -> list[_Message]:
        return self.reads.pop(0) if self.reads else []

    def commit(self, offsets, asynchronous: bool) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if self.refuse:
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        self.commits.append(({(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous))

    def get_watermark_offsets(self, _tp, cached: bool):
        return (0, 3)  # everything read: nothing holds the other topic back

    def close(self) -> None:
        pass


class _Producer:
    """Stands in for confluent-kafka's producer: acknowledges (or fails) on ``poll`` only while ``acking``."""

    def __init__(self, acking: bool = True, error=None) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.unacked: list = []
        self.acking = acking
        self.error = error

    def produce(self, _topic: str, value: bytes, partition: int, on_delivery) -> None:
        self.sent.append((partition, value))
        self.unacked.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        if not self.acking:
            return 0
        served, self.unacked = self.unacked, []
        for callback in served:
            callback(self.error, None)
        return len(served)

    def flush(self, _timeout: float) -> int:
        return len(self.unacked)


def _intake(consumer: _Consumer, producer: _Producer):
    from driftline.settings import Settings
    from driftline.streams.intake import Intake

    intake = Intake(Settings(predictions_topic="m.predictions", feedback_topic="m.feedback"), max_records=10)
    intake.consumer, intake.producer = consumer, producer
    intake._assigned_tps = {("m.predictions", 0), ("m.feedback", 0)}
    return intake


def _read(start: int, n: int = 3) -> list[_Message]:
    return ([_Message("m.predictions", 0, i) for i in range(start, start + n)]
            + [_Message("m.feedback", 0, i) for i in range(start, start + n)])


def test_a_refused_commit_after_forwarding_is_reported_not_raised():
    intake = _intake(_Consumer(_read(0), refuse=True), _Producer())
    result = intake.cycle()
    assert (result.records, result.commit_failed) == (6, True)
    (partition, value), = intake.producer.sent
    assert partition == 0 and len(IntakeBatch.decode(value)) == 6


def test_a_cycle_does_not_wait_for_its_acks_and_commits_them_once_they_came():
    consumer, producer = _Consumer(_read(0), _read(3)), _Producer(acking=False)
    intake = _intake(consumer, producer)
    assert intake.cycle().records == 6 and intake.cycle().records == 6
    assert consumer.commits == [], "nothing is committed before the broker acknowledged it"
    producer.acking = True
    intake.cycle()
    assert consumer.commits == [({("m.predictions", 0): 6, ("m.feedback", 0): 6}, True)]


def test_the_intake_waits_once_too_many_cycles_are_unacknowledged():
    from driftline.streams.intake import MAX_CYCLES_IN_FLIGHT

    reads = [_read(3 * i) for i in range(MAX_CYCLES_IN_FLIGHT + 1)]
    consumer, producer = _Consumer(*reads), _Producer(acking=False)
    intake = _intake(consumer, producer)
    for _ in range(MAX_CYCLES_IN_FLIGHT):
        intake.cycle()
    polls = []
    result = intake.cycle(stopping=lambda: polls.append(1) or len(polls) > 3)  # gives up waiting after 3 polls
    assert len(polls) > 3 and consumer.commits == [], "it waited, and committed nothing unacknowledged"
    assert result.records == 6


def test_a_refused_batch_raises_and_its_offsets_are_not_committed():
    from driftline.streams.intake import IntakeError

    consumer, producer = _Consumer(_read(0), _read(3)), _Producer()
    intake = _intake(consumer, producer)
    intake.cycle()
    producer.error = "MSG_SIZE_TOO_LARGE"
    with pytest.raises(IntakeError, match="did not take 1 intake batches: MSG_SIZE_TOO_LARGE"):
        intake.cycle()
    assert [offsets for offsets, _ in consumer.commits] == [{("m.predictions", 0): 3, ("m.feedback", 0): 3}]


def test_close_commits_what_was_acknowledged_synchronously():
    consumer, producer = _Consumer(_read(0)), _Producer(acking=False)
    intake = _intake(consumer, producer)
    intake.cycle()
    producer.acking = True
    intake.close()
    assert consumer.commits == [({("m.predictions", 0): 3, ("m.feedback", 0): 3}, False)]


# --- normalized batches: what the intake forwards when it normalizes ---------------------------------------

def _encoded_traffic(n: int, malformed: int = 0) -> list[tuple]:
    """(topic, offset, timestamp, key, value) records of the simulated model: n predictions, n feedbacks, junk."""
    from driftline.connectors.codec import make_codec
    from driftline.simulation import SimulatedService

    traffic = SimulatedService(n=n, malformed_count=0).traffic()
    records = []
    for topic, schema, events in (("driftline.predictions", "prediction_event", traffic.predictions),
                                  ("driftline.feedback", "feedback_event", traffic.feedback)):
        for i, value in enumerate(make_codec(schema).encode_many(events)):
            records.append((topic, i, events[i]["timestamp"] + 5, events[i]["request_id"].encode(), value))
    records += [("driftline.predictions", n + k, None, b"junk", b"\x00 not an event") for k in range(malformed)]
    return records


def _normalizer():
    from driftline.settings import Settings
    from driftline.streams.normalize import Normalizer

    return Normalizer.from_settings(Settings(pseudonymization_key="k" * 32))


def test_a_normalized_batch_gives_back_the_normalizers_events_and_dead_letters():
    from driftline.streams.intake import normalized_batches
    from driftline.streams.normalize import RawRecord

    records = _encoded_traffic(30, malformed=3)
    normalizer = _normalizer()
    (batch,) = normalized_batches(2, records, normalizer, now_ms=1_800_000_000_000)
    events, dead, sent_ms = IntakeBatch.decode(batch.encode()).normalized()
    expected = normalizer.normalize_batch([RawRecord(v, k, t, 2, o, ts) for t, o, ts, k, v in records],
                                          now_ms=1_800_000_000_000)
    assert events == expected.events and len(events) == 60 and len(batch) == 63
    assert dead == expected.dead_letters and {d.source_offset for d in dead} == {30, 31, 32}
    assert all(d.source_partition == 2 and d.raw == b"\x00 not an event" and d.reason for d in dead)
    assert sorted(sent_ms) == sorted(ts for _, _, ts, _, _ in records if ts is not None)


def test_normalized_batches_stay_within_the_size_and_count_limits_and_keep_the_order():
    from driftline.streams.intake import normalized_batches

    records = _encoded_traffic(200, malformed=5)
    for max_bytes, max_records in ((20_000, None), (1_000_000, 70), (1, None)):
        batches = normalized_batches(0, records, _normalizer(), 1_800_000_000_000, max_bytes, max_records)
        decoded = [IntakeBatch.decode(b.encode()).normalized() for b in batches]
        events = [(e.topic, e.offset) for part in decoded for e in part[0]]
        assert events == [(t, o) for t, o, _, _, _ in records[:400]], "every event once, in the order released"
        assert sum(len(part[1]) for part in decoded) == 5
        assert all(len(b.encode()) <= max_bytes + 1_000 or len(b) == 1 for b in batches)
        assert max_records is None or all(len(b) <= max_records for b in batches)
    assert len(normalized_batches(0, records, _normalizer(), 1_800_000_000_000, 1, None)) == 405


def test_a_batch_an_older_worker_forwarded_is_still_read():
    from driftline.connectors.codec import SingleObjectCodec, load_schema

    old = SingleObjectCodec(load_schema("intake_batch_v1")).encode({
        "partition": 1, "topics": ["p"], "topic_index": [0], "offsets": [4], "timestamps_ms": [-1],
        "keys": [None], "values": [b"raw"]})
    batch = IntakeBatch.decode(old)
    assert [(r.topic, r.partition, r.offset, r.value) for r in batch.records()] == [("p", 1, 4, b"raw")]
    assert batch.events == [] and batch.dead_letters == []


def test_the_intake_process_counters_become_one_cycle_result_per_poll():
    from driftline.settings import Settings
    from driftline.streams.intake import IntakeProcess

    child = IntakeProcess(Settings())
    assert child.poll() is None and not child.alive
    with child._counters.get_lock():
        child._counters[:] = [3, 1, 250, 4, 0, 1_500_000]
    result = child.poll()
    assert (result.records, result.batches, result.full, result.commit_failed) == (250, 4, True, False)
    assert result.waited_s == 1.5
    child._counters[0] += 1
    child._counters[2] += 10
    result = child.poll()
    assert (result.records, result.batches, result.full) == (10, 0, False)
    assert child.poll() is None


# --- time alignment across partitions ------------------------------------------------------------------------

def _aligner(records: dict[tuple[str, int], list[int]]):
    from driftline.streams.intake import TimeAligner

    aligner = TimeAligner(["p", "f"], max_idle_s=60.0, clock=lambda: 0.0)
    for (topic, partition), times in records.items():
        for offset, ts in enumerate(times):
            aligner.add(topic, partition, (topic, offset, ts, None, b""))
    return aligner


def test_a_partition_read_far_ahead_waits_for_the_others_and_is_released_in_time_order_with_them():
    aligner = _aligner({("p", 0): [10, 20, 30, 40, 50], ("f", 0): [15, 45], ("p", 1): [12, 25], ("f", 1): [22]})
    released = aligner.release(caught_up=lambda t, p: False)
    assert [r[2] for r in released[0]] == [10, 15, 20] and [r[2] for r in released[1]] == [12, 22]
    # partition 1's feedback ran dry at 22 and is not caught up: nothing later than it goes, from any partition
    assert aligner.buffered("p", 0) == 3 and aligner.buffered("p", 1) == 1
    released = aligner.release(caught_up=lambda t, p: p == 1)  # partition 1 has nothing more to read now
    assert [r[2] for r in released[0]] == [30, 40, 45] and [r[2] for r in released[1]] == [25]
    assert aligner.buffered("p", 0) == 1  # f/0 ran dry at 45 and is not caught up


def test_an_assigned_partition_with_nothing_read_yet_holds_the_others_back_until_caught_up():
    aligner = _aligner({("p", 0): [10, 20], ("f", 0): [15]})
    assigned = {("p", 0), ("f", 0), ("p", 1), ("f", 1)}
    assert aligner.release(caught_up=lambda t, p: False, assigned=assigned) == {}
    released = aligner.release(caught_up=lambda t, p: p == 1, assigned=assigned)
    assert [r[2] for r in released[0]] == [10, 15]  # then f/0 ran dry and is not caught up


def test_an_empty_partition_with_records_waiting_on_the_broker_never_lets_the_others_run_ahead():
    from driftline.streams.intake import TimeAligner

    now = [0.0]
    aligner = TimeAligner(["p", "f"], max_idle_s=1.0, clock=lambda: now[0])
    aligner.add("p", 0, ("p", 0, 10, None, b""))
    aligner.add("f", 0, ("f", 0, 12, None, b""))
    assigned = {("p", 0), ("f", 0), ("p", 1), ("f", 1)}
    waiting = {"p": False, "f": None}  # p/1 has records not fetched yet; f/1: unknown
    for now[0] in (0.0, 5.0, 60.0):
        assert aligner.release(lambda t, p: True if p == 0 else waiting[t], assigned) == {}
    waiting["p"] = True  # p/1 fetched and read up: the unknown f/1 has been empty for a minute, past the idle time
    assert [r[2] for r in aligner.release(lambda t, p: True if p == 0 else waiting[t], assigned)[0]] == [10, 12]
