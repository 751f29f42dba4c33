"""Python's garbage collector, tuned for a worker that allocates millions of short-lived objects a minute.

CPython's cyclic collector runs a young-generation pass every 700 net
allocations and, every so often, a full pass over every tracked object:
Faust, River, the joined documents waiting in memory tables. Each batch the
worker handles allocates tens of thousands of dicts and tuples that die at
the end of the batch, so with the defaults the collector walks the worker's
whole long-lived heap again and again (a fifth of the worker's CPU time on
the ingest and detect path: ``benchmarks/ingest_stages.py`` prints both
settings). Reference counting frees almost all of those objects anyway; the
collector is only needed for cycles.

:func:`tune_garbage_collector` moves everything allocated at start-up
(modules, the app, its agents) out of the collector's sight with
:func:`gc.freeze` and collects young objects every 50,000 allocations instead
of 700, as many high-throughput Python services do. Cycles are still
collected; memory stays bounded.

Example:
    >>> import gc
    >>> before = gc.get_threshold()
    >>> tune_garbage_collector(freeze=False)
    (50000, 20, 100)
    >>> gc.set_threshold(*before)
"""

from __future__ import annotations

import atexit
import gc

#: Young-generation threshold (allocations minus deallocations between passes), then how many young passes make a
#: middle one, and middle passes a full one.
THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector(freeze: bool = True, thresholds: tuple[int, int, int] = THRESHOLDS) -> tuple[int, int, int]:
    """Set the collector's thresholds and (``freeze``) exempt every object alive now from collection.

    Call it once, after the application is built and before it starts
    processing. Returns the thresholds now in effect.
    """
    if freeze:
        gc.collect()  # do not freeze garbage
        gc.freeze()
        # frozen objects are never collected, not even at exit, where extension modules (datasketches) then
        # report every instance still alive as a leak, hundreds of lines in the log: collect them normally again
        atexit.register(gc.unfreeze)
    gc.set_threshold(*thresholds)
    return gc.get_threshold()
