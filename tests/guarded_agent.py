"""A Faust worker for ``tests/integration/test_offset_guard.py`` (run as ``python -m tests.guarded_agent``).

One agent reads ``GUARD_TOPIC`` (one partition) with :func:`take_batches` and
the offset guard, and appends each batch's offsets to ``GUARD_OUT``. Once a
batch reaches offset ``GUARD_SKIP_AT``, it turns Faust's flow control off for
a moment, as Faust does during a rebalance: the stream skips the messages
queued meanwhile, and nothing seeks back to them — what happened to the
restarted worker in the SIGKILL restart trace (messages never delivered,
later ones delivered). With ``GUARD_JUMP_TO``, it makes its consumer seek
there instead (past messages not written yet: no later message reveals the
hole). The guard's counts go to ``GUARD_OUT`` + ``.counts`` after each batch.
"""

from __future__ import annotations

import asyncio
import json
import os

import faust

from driftline.connectors.kafka_admin import committed_offsets
from driftline.settings import Settings
from driftline.streams.app import faust_settings
from driftline.streams.batching import take_batches
from driftline.streams.offsets import OffsetGuard, strict_commits


def main() -> None:
    settings = Settings()
    name, out = os.environ["GUARD_TOPIC"], os.environ["GUARD_OUT"]
    skip_at = int(os.environ["GUARD_SKIP_AT"])
    # a small stream buffer: the jump is not hidden by messages already queued for the stream
    app = faust.App(settings.app_id, **faust_settings(settings), stream_buffer_maxsize=8, broker_commit_interval=0.5)
    topic = app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                      partitions=1)
    strict_commits({name})
    jumped = False

    async def committed(topic_name: str) -> dict[int, int | None]:
        return await asyncio.get_running_loop().run_in_executor(None, committed_offsets, settings, settings.app_id,
                                                                topic_name, 1)

    @app.agent(topic)
    async def consume(stream: faust.StreamT) -> None:
        nonlocal jumped
        guard = OffsetGuard(app.consumer, committed, stall_s=float(os.environ.get("GUARD_STALL_S", "2")))
        async for events in take_batches(stream, 10, 0.2, guard):
            with open(out, "a") as file:
                file.writelines(f"{event.message.offset}\n" for event in events)
            with open(out + ".counts", "w") as file:
                json.dump(guard.counts, file)
            if not jumped and any(event.message.offset >= skip_at for event in events):
                jumped = True
                if os.environ.get("GUARD_JUMP_TO"):
                    await app.consumer.seek_wait({events[-1].message.tp: int(os.environ["GUARD_JUMP_TO"])})
                    continue
                app.flow_control.suspend()
                await asyncio.sleep(1.0)
                app.flow_control.resume()

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
