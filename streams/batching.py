"""Batches of Faust events that are acknowledged only after they were processed.

Faust's ``Stream.take_events`` acknowledges a batch in a ``finally`` clause, so
a batch whose processing raised (or was cancelled while Elasticsearch was
down) would still have its offsets committed: at-most-once for that batch.
:func:`take_batches` is the same buffering (adapted from faust-streaming's
``take_events``), but it acknowledges the events only when the consumer of the
batch asks for the next one — after it has indexed and sent everything. A
batch that fails is never acknowledged: its offsets are not committed and
Kafka delivers it again after a restart (at-least-once; idempotent ids make
the re-delivery harmless).

Example:
    >>> # inside a Faust agent:
    >>> # async for events in take_batches(stream, 500, within=0.5):
    >>> #     await process(events)        # raising here leaves the batch un-acked
"""

from __future__ import annotations

import asyncio
from functools import partial
from collections.abc import AsyncIterator, Sequence
from typing import Any

from faust.types import EventT, StreamT

from driftline.streams.offsets import OffsetGuard


class EventBatch(list):  # type: ignore[type-arg]
    """A batch of events. Set ``completion`` to a future to acknowledge the events only when it is done
    (successfully), instead of when the next batch is requested."""

    completion: asyncio.Future[Any] | None = None


def _ack_when_done(stream: StreamT, events: list[EventT], completion: asyncio.Future[Any]) -> None:
    if completion.cancelled() or completion.exception() is not None:
        return  # never acknowledged: Kafka delivers the batch again after a restart
    asyncio.ensure_future(_ack(stream, events))


async def _ack(stream: StreamT, events: list[EventT]) -> None:
    for event in events:
        await stream.ack(event)


async def take_batches(stream: StreamT, max_: int, within: float,
                       guard: OffsetGuard | None = None, eager: bool = False) -> AsyncIterator[EventBatch]:
    """Yield lists of up to ``max_`` events, waiting at most ``within`` seconds for a batch to fill.

    The events of a batch are acknowledged when the next batch is requested,
    i.e. only if the code consuming the batch finished without raising.
    With a ``guard``, each topic-partition's events come in offset order from
    the committed offset, each once (see :mod:`.offsets`).

    ``eager`` yields a batch as soon as it holds every event the stream has
    fetched (its channel's queue is empty), without waiting out ``within``:
    a stage that falls behind then takes what queued up meanwhile at once,
    instead of idling for ``within`` per batch (the detect stage lagged the
    ingest stage by seconds at the end of a backlog because of it); while
    fetched events keep coming, batches still grow up to ``max_``.
    """
    events: list[EventT] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future | None = None
    enable_acks = stream.enable_acks
    channel_it = aiter(stream.channel)
    queue = getattr(stream.channel, "queue", None)  # what the stream fetched and has not processed yet

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming
        waiting_for = buffer_consuming
        if waiting_for is not None:
            try:
                await waiting_for
            finally:
                if buffer_consuming is waiting_for:  # never clear a newer batch's future
                    buffer_consuming = None
        event = stream.current_event
        if event is None:  # pragma: no cover - Faust always sets it for a processor
            raise RuntimeError("no current event in a stream processor")
        if guard is not None and not await guard.admit(event.message):
            return value  # already taken, or past a skipped message (the consumer seeks back to it)
        events.append(event)
        if len(events) >= max_:
            buffer_full.set()
            buffer_consumed.clear()
            await stream.wait(buffer_consumed)  # type: ignore[arg-type]
        elif eager and (queue is None or queue.empty()):
            buffer_full.set()  # ready: nothing more fetched (events added before it is taken go with it)
        return value

    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)  # noqa: SLF001 - the mechanism take_events uses
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)  # type: ignore[arg-type]
            if not events:
                if guard is not None and (queue is None or queue.empty()):
                    await guard.unstall()
                continue
            buffer_consuming = asyncio.get_running_loop().create_future()
            batch = EventBatch(events)
            yield batch  # raising or cancellation in the consumer: no ack below
            if batch.completion is None:
                for event in batch:
                    await stream.ack(event)
            else:  # acknowledged when the consumer's work on it is done (never if that fails)
                batch.completion.add_done_callback(partial(_ack_when_done, stream, list(batch)))
            del events[: len(batch)]  # exactly this batch: an event added meanwhile waits for the next one
            if not buffer_consuming.done():
                buffer_consuming.set_result(None)
            buffer_full.clear()
            buffer_consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)  # noqa: SLF001
