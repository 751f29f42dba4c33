"""Every input message processed before its offset is committed, whatever Faust's fetcher does around a rebalance.

Found by the SIGKILL restart test (traced offset by offset): when a restarted
worker finishes its table recovery, faust-streaming 0.15.3 resumes the stream
partitions *before* it seeks them to their committed offsets
(``Recovery.on_recovery_completed``). Messages fetched during that seek reach
the streams while flow control is still off and are skipped, and the
consumer's read offset is set back and forth, so the fetcher goes on past
them: the restarted worker never saw one intake message. Two commit rules
then let the loss through:

* ``Consumer._new_offset`` commits past the lowest acknowledged offset when
  it is one above the committed offset (``min(acked) - committed > 1``), but
  the committed offset is already the *next* message: one never-acknowledged
  message at the head is committed past.
* ``Consumer._add_gap`` treats offsets between the read offset and an arriving
  message as acknowledged (for compacted topics), the arriving message itself
  included; with the read offset set back by the seek, that covers messages
  still being processed.

So driftline keeps its own account, for the topics it acknowledges by hand
(:func:`driftline.streams.batching.take_batches`; written by driftline, never
compacted, never transactional, so their offsets are contiguous):

* :class:`OffsetGuard` admits each topic-partition's messages in offset order
  from the committed offset: a message already admitted is dropped, and a
  message past a hole makes the consumer seek back to the hole;
* :func:`strict_commits` makes a commit cover only acknowledged offsets,
  starting exactly at the committed one (:func:`next_commit`), and stops the
  gap filling for those topics.

Example:
    >>> next_commit([7, 8, 9, 12], committed=7)
    (10, 3)
    >>> next_commit([8, 9], committed=7)  # offset 7 never acknowledged: no commit
    (None, 0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: A topic-partition with messages on the broker past what was admitted, and none admitted for this long,
#: is sought back to its next offset (a lost message at the end of the input has no successor to reveal it).
STALL_S = 10.0


def next_commit(acked: Sequence[int], committed: int | None) -> tuple[int | None, int]:
    """The offset to commit for sorted acknowledged ``acked`` offsets, and how many of them it covers.

    ``committed`` is the committed offset (the next message to process), or
    None if the group never committed. A commit covers the run of consecutive
    offsets that starts at ``committed``; acknowledged offsets below it are
    covered already.

    Example:
        >>> next_commit([3, 4, 5], None), next_commit([1, 2, 3, 4], 3), next_commit([], 3)
        ((6, 3), (5, 4), (None, 0))
    """
    start = 0
    if committed is not None:
        while start < len(acked) and acked[start] < committed:
            start += 1
        if start == len(acked) or acked[start] != committed:
            return None, start
    if start == len(acked):
        return None, start
    end = start + 1
    while end < len(acked) and acked[end] == acked[end - 1] + 1:
        end += 1
    return acked[end - 1] + 1, end


def strict_commits(topics: set[str]) -> None:
    """Patch faust-streaming's consumer so that offsets of ``topics`` are committed only when every
    message below them was acknowledged (see the module docstring). Idempotent; other topics keep
    Faust's rules."""
    from faust.transport.consumer import Consumer

    guarded: set[str] = getattr(Consumer, "_driftline_strict_topics", set())
    guarded |= topics
    if getattr(Consumer, "_driftline_strict_topics", None) is not None:
        return
    Consumer._driftline_strict_topics = guarded  # type: ignore[attr-defined]
    faust_new_offset = Consumer._new_offset
    faust_add_gap = Consumer._add_gap

    def _new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic not in guarded:
            return faust_new_offset(self, tp)
        acked = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        offset, covered = next_commit(acked, self._committed_offset[tp])
        if covered:
            self._acked_index[tp].difference_update(acked[:covered])
            del acked[:covered]
        return offset

    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        if tp.topic not in guarded:
            await faust_add_gap(self, tp, offset_from, offset_to)

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]


class OffsetGuard:
    """Admits one stream's messages in offset order per topic-partition, from the committed offset.

    ``admit`` returns True for the next message of its topic-partition; False
    for a message admitted before (a re-delivery after a seek: the first copy
    is being processed) and for one past a hole, after seeking the consumer
    back to the hole. ``unstall`` seeks back a topic-partition whose next
    message is on the broker but has not come for :data:`STALL_S` seconds.
    State starts over with each consumer generation (a rebalance seeks every
    partition to its committed offset).

    ``committed`` reads the group's committed offsets of a topic from the
    broker (by partition; None where it never committed), the same offsets
    Faust seeks to; it is asked once per topic and generation.

    Example:
        >>> async def committed(topic): return {0: 5}
        >>> guard = OffsetGuard(consumer=None, committed=committed)
        >>> guard.expected
        {}
    """

    def __init__(self, consumer: Any, committed: Callable[[str], Awaitable[dict[int, int | None]]],
                 stall_s: float = STALL_S) -> None:
        self.consumer = consumer
        self.committed = committed
        self.stall_s = stall_s
        self.expected: dict[Any, int] = {}  # topic-partition -> next offset to admit
        self.admitted_at: dict[Any, float] = {}
        self.generation: int | None = None
        self._starts: dict[str, dict[int, int | None]] = {}  # topic -> committed offsets, this generation
        self.counts = {"duplicates": 0, "holes": 0, "stalls": 0}

    async def admit(self, message: Any) -> bool:
        """Whether to process ``message`` now (see the class docstring)."""
        generation = getattr(message, "generation_id", None)
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self._starts.clear()
        tp, offset = message.tp, message.offset
        expected = self.expected.get(tp)
        if expected is None:
            expected = await self._start(tp)
            if expected is None:  # the group never committed: its first message starts it
                expected = offset
        if offset == expected:
            self.expected[tp] = offset + 1
            self.admitted_at[tp] = time.monotonic()
            return True
        if offset < expected:
            self.counts["duplicates"] += 1
            self.expected[tp] = expected
            return False
        self.counts["holes"] += 1
        self.expected[tp] = expected
        log.warning("%s[%d]: offset %d arrived before %d (a skipped message); seeking back to %d",
                    tp.topic, tp.partition, offset, expected, expected)
        await self.consumer.seek_wait({tp: expected})
        return False

    async def unstall(self) -> None:
        """Seek back topic-partitions whose next message is on the broker but has not come for a while."""
        now = time.monotonic()
        for tp, expected in list(self.expected.items()):
            if now - self.admitted_at.get(tp, now) < self.stall_s:
                continue
            try:
                highwater = self.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - unknown (not fetched yet, or revoked): nothing to do
                continue
            if highwater is not None and highwater > expected:
                self.counts["stalls"] += 1
                self.admitted_at[tp] = now
                log.warning("%s[%d]: offset %d is on the broker (high watermark %d) but did not come; seeking to it",
                            tp.topic, tp.partition, expected, highwater)
                await self.consumer.seek_wait({tp: expected})

    async def _start(self, tp: Any) -> int | None:
        """The committed offset of ``tp`` (read from the broker: Faust's own copy is unset during its seek)."""
        starts = self._starts.get(tp.topic)
        if starts is None or tp.partition not in starts:
            starts = self._starts[tp.topic] = await self.committed(tp.topic)
        return starts.get(tp.partition)
