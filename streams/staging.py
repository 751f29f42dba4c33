"""A write buffer over a table: state changes become visible to the table only when committed.

A stage computes a batch's new state (join entries, detector banks) before its
outputs are durable. If it wrote the table at once and then crashed before
Elasticsearch and Kafka had acknowledged the outputs, the table (changelogged
asynchronously) could already say "joined" for a request whose outcome was
never indexed, and the replayed input would then be dropped as a duplicate.
:class:`StagedStore` holds the writes until :meth:`commit`, which the stage
calls only after its outputs were acknowledged.

Example:
    >>> table = {"a": 1}
    >>> staged = StagedStore(table)
    >>> staged["b"] = 2; del staged["a"]
    >>> staged.get("a"), staged["b"], table
    (None, 2, {'a': 1})
    >>> staged.commit(), table
    (2, {'b': 2})

A batch computed while the previous one is not committed yet reads through it:

    >>> first = StagedStore(table); first["c"] = 3
    >>> second = StagedStore(first); second["d"] = second["c"] + 1
    >>> first.commit(), second.commit(), table
    (1, 1, {'b': 2, 'c': 3, 'd': 4})
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from functools import partial
from typing import Any

_DELETED = object()


class StagedStore(MutableMapping[Any, Any]):
    """Reads see staged writes first, then the table; :meth:`commit` applies the writes once each."""

    def __init__(self, table: MutableMapping[Any, Any]) -> None:
        self.table = table  # what reads fall through to: the table, or an earlier batch's uncommitted store
        self.root: MutableMapping[Any, Any] = table.root if isinstance(table, StagedStore) else table
        self.changes: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        if key in self.changes:
            value = self.changes[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self.table[key]

    def get(self, key: Any, default: Any = None) -> Any:
        changes = self.changes
        if key in changes:
            value = changes[key]
            return default if value is _DELETED else value
        table = self.table
        if isinstance(table, StagedStore):
            return table.get(key, default)
        # not ``table.get``: a Faust table's raises and catches a KeyError for a missing key, and most keys a
        # batch looks up are new (a request id seen for the first time)
        return table[key] if key in table else default

    def __contains__(self, key: object) -> bool:
        if key in self.changes:
            return self.changes[key] is not _DELETED
        return key in self.table

    def __setitem__(self, key: Any, value: Any) -> None:
        self.changes[key] = value

    def __delitem__(self, key: Any) -> None:
        if key not in self:
            raise KeyError(key)
        self.changes[key] = _DELETED

    def __iter__(self) -> Iterator[Any]:  # not used on the hot path
        seen = set()
        for key, value in self.changes.items():
            seen.add(key)
            if value is not _DELETED:
                yield key
        for key in self.table:
            if key not in seen:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def commit(self) -> int:
        """Write the staged changes to the table (one write per key); returns how many.

        A store over an earlier, uncommitted store writes to the table below
        both: commit the earlier one first.
        """
        n = len(self.changes)
        root = self.root
        # a PartitionTable writes the batch in one call (streams/tables.py); any other mapping key by key
        write_many = getattr(root, "write_many", None) or partial(write_each, root)
        changes = self.changes.items()
        write_many(((k, v) for k, v in changes if v is not _DELETED), [k for k, v in changes if v is _DELETED])
        self.changes.clear()
        self.table = root  # reads need not pass through an earlier store any more
        return n

    def discard(self) -> None:
        """Forget the staged changes."""
        self.changes.clear()


def write_each(table: MutableMapping[Any, Any], items: Iterable[tuple[Any, Any]], deleted: Iterable[Any] = ()) -> int:
    """Set the keys of ``items`` and delete those of ``deleted`` (if present), one key at a time; returns how many
    records were written.

    Example:
        >>> table = {"a": 1, "b": 2}
        >>> write_each(table, [("c", 3)], deleted=["a", "z"]), table
        (2, {'b': 2, 'c': 3})
    """
    n = 0
    for key, value in items:
        table[key] = value
        n += 1
    for key in deleted:
        if key in table:
            del table[key]
            n += 1
    return n
