"""take_batches over a Faust stream (an in-memory channel): when a batch is yielded, and how big it grows."""

from __future__ import annotations

import asyncio
import time

import faust
import pytest

from driftline.streams.batching import take_batches


def batches_of(sends: list[list[int]], *, eager: bool, max_: int = 100, within: float = 1.0,
               work_s: float = 0.2) -> list[tuple[float, list[int]]]:
    """Send each group of values at once, 0.1 s apart; return each batch (seconds after the first send, values)."""

    async def run() -> list[tuple[float, list[int]]]:
        app = faust.App(f"batching-{eager}-{max_}", broker="kafka://localhost:1", store="memory://")
        app.flow_control.resume()  # not started: let the channel's queue take values
        channel = app.channel(maxsize=1000)
        stream = app.stream(channel)
        got: list[tuple[float, list[int]]] = []
        started = time.perf_counter()

        async def consume() -> None:
            async for batch in take_batches(stream, max_, within, eager=eager):
                got.append((time.perf_counter() - started, [event.value for event in batch]))
                await asyncio.sleep(work_s)  # the stage works on the batch

        task = asyncio.ensure_future(consume())
        for i, group in enumerate(sends):
            if i:
                await asyncio.sleep(0.1)
            for value in group:
                await channel.send(value=value)
        await asyncio.sleep(within + 2 * work_s + 0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    return asyncio.run(run())


def test_a_batch_waits_within_seconds_to_fill_by_default():
    got = batches_of([[1, 2, 3, 4, 5], [6, 7]], eager=False)
    assert [values for _, values in got] == [[1, 2, 3, 4, 5, 6, 7]]
    assert got[0][0] >= 0.9


def test_an_eager_batch_is_what_was_fetched_and_the_next_what_queued_meanwhile():
    got = batches_of([[1, 2, 3, 4, 5], [6, 7]], eager=True)
    assert [values for _, values in got] == [[1, 2, 3, 4, 5], [6, 7]]
    assert got[0][0] < 0.5 and got[1][0] < 0.8  # neither waited for ``within``


def test_eager_batches_still_fill_up_to_max_while_events_keep_coming():
    got = batches_of([list(range(250))], eager=True)
    assert [len(values) for _, values in got] == [100, 100, 50]
    assert [v for _, values in got for v in values] == list(range(250))
