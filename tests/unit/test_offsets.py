"""The offset guard and the strict commit rule (streams/offsets.py), with a stand-in consumer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.streams.offsets import OffsetGuard, next_commit


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Message:
    tp: TP
    offset: int
    generation_id: int = 1


class Consumer:
    """Records seeks; reports a fixed high watermark."""

    def __init__(self, highwater: int | None = None) -> None:
        self.seeks: list[tuple[TP, int]] = []
        self._highwater = highwater

    async def seek_wait(self, partitions: dict) -> None:
        self.seeks += list(partitions.items())

    def highwater(self, tp: TP) -> int | None:
        return self._highwater


def guard_for(consumer: Consumer, committed: dict[int, int | None], **kwargs) -> tuple[OffsetGuard, list[str]]:
    asked: list[str] = []

    async def read(topic: str) -> dict[int, int | None]:
        asked.append(topic)
        return committed

    return OffsetGuard(consumer, read, **kwargs), asked


def admit_all(guard: OffsetGuard, messages: list[Message]) -> list[bool]:
    async def run() -> list[bool]:
        return [await guard.admit(m) for m in messages]

    return asyncio.run(run())


TP0 = TP("app.intake", 0)


def test_messages_in_order_from_the_committed_offset_are_admitted_once():
    consumer = Consumer()
    guard, asked = guard_for(consumer, {0: 8})
    assert admit_all(guard, [Message(TP0, 8), Message(TP0, 9), Message(TP0, 9), Message(TP0, 7)]) == [
        True, True, False, False]
    assert guard.counts["duplicates"] == 2 and consumer.seeks == [] and asked == ["app.intake"]


def test_a_message_past_a_hole_is_refused_and_the_consumer_seeks_back_to_the_hole():
    # the restart trace: offset 8 admitted, 9 skipped by Faust during its seek, 10 arrives
    consumer = Consumer()
    guard, _ = guard_for(consumer, {0: 8})
    assert admit_all(guard, [Message(TP0, 8), Message(TP0, 10), Message(TP0, 11), Message(TP0, 9), Message(TP0, 10)]) == [
        True, False, False, True, True]
    assert consumer.seeks == [(TP0, 9), (TP0, 9)] and guard.counts["holes"] == 2


def test_the_first_message_after_a_skipped_head_is_refused():
    consumer = Consumer()
    guard, _ = guard_for(consumer, {0: 8})
    assert admit_all(guard, [Message(TP0, 9)]) == [False]
    assert consumer.seeks == [(TP0, 8)]


def test_a_group_that_never_committed_starts_at_its_first_message():
    guard, _ = guard_for(Consumer(), {0: None})
    assert admit_all(guard, [Message(TP0, 3), Message(TP0, 4)]) == [True, True]


def test_a_new_generation_starts_over_from_the_committed_offsets():
    consumer = Consumer()
    guard, asked = guard_for(consumer, {0: 8})
    assert admit_all(guard, [Message(TP0, 8), Message(TP0, 9), Message(TP0, 8, generation_id=2)]) == [True, True, True]
    assert asked == ["app.intake", "app.intake"]


def test_a_partition_whose_next_message_does_not_come_is_sought_back():
    consumer = Consumer(highwater=12)
    guard, _ = guard_for(consumer, {0: 8}, stall_s=0.0)
    admit_all(guard, [Message(TP0, 8)])
    asyncio.run(guard.unstall())
    assert consumer.seeks == [(TP0, 9)] and guard.counts["stalls"] == 1


def test_a_partition_at_its_high_watermark_is_left_alone():
    consumer = Consumer(highwater=9)
    guard, _ = guard_for(consumer, {0: 8}, stall_s=0.0)
    admit_all(guard, [Message(TP0, 8)])
    asyncio.run(guard.unstall())
    assert consumer.seeks == []


@pytest.mark.parametrize(("acked", "committed", "expected"), [
    ([7, 8, 9, 12], 7, (10, 3)),
    ([8, 9], 7, (None, 0)),  # Faust would commit 10 here: one never-acknowledged message at the head
    ([5, 6, 7, 8], 7, (9, 4)),  # below the committed offset: covered already
    ([5, 6], 7, (None, 2)),
    ([3, 4, 6], None, (5, 2)),
    ([], 7, (None, 0)),
])
def test_next_commit(acked, committed, expected):
    assert next_commit(acked, committed) == expected


@given(st.sets(st.integers(0, 60)), st.integers(0, 40))
def test_a_commit_never_covers_an_offset_that_was_not_acknowledged(acked, committed):
    offset, covered = next_commit(sorted(acked), committed)
    if offset is not None:
        assert set(range(committed, offset)) <= acked
        assert covered == len([a for a in acked if a < offset])


def test_strict_commits_patches_faust_for_the_guarded_topics_only():
    from collections import defaultdict

    from faust.transport.consumer import Consumer as FaustConsumer
    from intervaltree import IntervalTree

    from driftline.streams.offsets import strict_commits

    strict_commits({"guarded.intake"})

    class State:  # the attributes Faust's _new_offset reads
        def __init__(self, tp: TP) -> None:
            self._acked = {tp: [9, 10]}
            self._acked_index = {tp: {9, 10}}
            self._committed_offset = {tp: 8}
            self._gap = defaultdict(IntervalTree)

    guarded, other = TP("guarded.intake", 0), TP("other", 0)
    assert FaustConsumer._new_offset(State(guarded), guarded) is None  # offset 8 never acknowledged
    assert FaustConsumer._new_offset(State(other), other) == 11  # Faust's own rule commits past offset 8
    state = State(guarded)
    state._acked[guarded].insert(0, 8)
    state._acked_index[guarded].add(8)
    assert FaustConsumer._new_offset(state, guarded) == 11
    assert state._acked[guarded] == [] and state._acked_index[guarded] == set()
