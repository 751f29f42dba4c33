"""Faust tables whose changelog partition is the source partition being processed.

Faust decides a table write's changelog partition from the *current event*
(``faust.current_event()``), which is not set while a batch of events is
processed (a default Table written inside a batch raises ``TypeError``), or
from the producer's partitioner (``use_partitioner=True``), which puts keys
that are not the source's keys (time buckets, model keys) in partitions this
worker may not own after a rebalance. :class:`PartitionTable` instead writes
each key to the changelog partition of the source partition whose records are
being processed, named by :func:`partition_scope`: the table's partitions line
up with the source's, so a rebalance moves state together with the input.

Example:
    >>> # inside an agent, for the records of source partition 2:
    >>> # with partition_scope(2):
    >>> #     table[key] = value          # changelog partition 2
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import faust

_current_partition: ContextVar[int | None] = ContextVar("driftline_table_partition", default=None)


@contextmanager
def partition_scope(partition: int) -> Iterator[None]:
    """Table writes inside the block go to changelog partition ``partition``."""
    token = _current_partition.set(partition)
    try:
        yield
    finally:
        _current_partition.reset(token)


class PartitionTable(faust.Table):
    """A ``faust.Table`` written per source partition (see the module docstring)."""

    def partition_for_key(self, key: Any) -> int | None:  # noqa: D102 - documented above
        partition = _current_partition.get()
        if partition is None:
            raise RuntimeError(f"table {self.name!r} written outside partition_scope()")
        return partition
