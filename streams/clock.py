"""The detect stage's idle clock: wall time that stands still while a stage works through a backlog.

The detectors put values back in event-time order by waiting for every
source partition (see :class:`~.detect.DetectorBank`); a partition silent
for ``detect_idle_s`` stops holding the others back. "Silent" must mean the
partition has nothing to say, not that the worker is busy elsewhere: after a
restart, or under a burst, Faust may feed the ingest agent for tens of
seconds before the detect agent gets a fetch, and measured in plain wall time
every partition would then look silent, values would be released out of
order, and the alarms would depend on timing.

:class:`BacklogClock` is that distinction. Each stage reports the batches it
processes; a *full* batch (as many events as the batch size) means the stage
is working through a backlog. The clock advances with wall time only while no
stage has had a full batch in flight or finished within the last ``quiet_s``
seconds; otherwise it stands still. Silence is then measured only while the
worker is caught up.

Within one worker process this is exact. With several workers, a worker sees
only its own stages: a detect stage can still time out on a partition whose
ingest runs behind in another worker (then order falls back to arrival order
for that stretch, as with any idle timeout).

Example:
    >>> t = [0.0]
    >>> clock = BacklogClock(["ingest"], quiet_s=1.0, wall=lambda: t[0])
    >>> clock.begin("ingest", full=True); t[0] = 10.0; clock.tick()   # busy: stands still
    0
    >>> clock.end("ingest", full=True); t[0] = 10.5; clock.tick()     # just finished: still quiet_s to wait
    0
    >>> t[0] = 12.0; clock.tick()                                    # caught up: advances again
    1500
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

__all__ = ["BacklogClock"]


class BacklogClock:
    """Milliseconds of wall time during which no stage was working through a backlog.

    Parameters
    ----------
    stages
        The stages that report their batches.
    quiet_s
        How long after its last full batch a stage still counts as backlogged
        (a little more than the time it waits for a batch to fill).
    wall
        The wall clock in seconds (``time.monotonic``); replaceable in tests.
    start_ms
        The clock's first reading.
    """

    def __init__(self, stages: Iterable[str], quiet_s: float, wall: Callable[[], float] = time.monotonic,
                 start_ms: int = 0) -> None:
        self.quiet_s = quiet_s
        self.wall = wall
        self.ms = start_ms
        self._last = wall()
        self._in_flight = {stage: 0 for stage in stages}
        self._last_full = {stage: float("-inf") for stage in self._in_flight}

    def begin(self, stage: str, full: bool) -> None:
        """A stage starts a batch (``full``: it had as many events as the batch size)."""
        self.tick()
        if full:
            self._in_flight[stage] += 1
            self._last_full[stage] = self.wall()

    def end(self, stage: str, full: bool) -> None:
        """A stage finished (or gave up) the batch it began."""
        self.tick()
        if full:
            self._in_flight[stage] -= 1
            self._last_full[stage] = self.wall()

    @contextmanager
    def batch(self, stage: str, full: bool) -> Iterator[None]:
        """``begin`` and ``end`` around the processing of one batch (``end`` also when it raises)."""
        self.begin(stage, full)
        try:
            yield
        finally:
            self.end(stage, full)

    def backlogged(self) -> bool:
        """Whether some stage is, or just was, working through a backlog."""
        now = self.wall()
        return any(n > 0 for n in self._in_flight.values()) or any(
            now - last < self.quiet_s for last in self._last_full.values())

    def tick(self) -> int:
        """The clock's reading now (advanced by the wall time passed, unless backlogged)."""
        now = self.wall()
        if not self.backlogged():
            self.ms += int((now - self._last) * 1000)
        self._last = now
        return self.ms
