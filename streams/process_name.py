"""Name a worker's child process, so ``top``, ``ps -o comm`` and the benchmarks tell the processes apart.

Spawned children all run ``python -c 'from multiprocessing.spawn import
spawn_main ...'``; on Linux a process can rename itself (its ``comm``, at most
15 bytes) by writing ``/proc/self/comm``. Elsewhere this does nothing.

Example:
    >>> name_this_process("dl-example-too-long-name")  # doctest: +SKIP
    'dl-example-too-'
"""

from __future__ import annotations

from pathlib import Path

COMM = Path("/proc/self/comm")
MAX_COMM = 15


def name_this_process(name: str) -> str | None:
    """Set this process's name as the kernel shows it; returns the name set, or None where that is not possible."""
    short = name[:MAX_COMM]
    try:
        COMM.write_text(short)
    except OSError:
        return None
    return short


__all__ = ["name_this_process"]
