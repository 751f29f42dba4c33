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

The RocksDB store also needs to know the partition of a write (it keeps one
database per partition and asks ``faust.current_event()``), so the scope also
names one event of that partition as Faust's current event.

**Sealing.** The embedded broker (Tansu) reports a partition's high
watermark as the base offset of its last record batch plus one, so the rest
of that batch is invisible to anything that reads "up to the high watermark" —
which is what Faust's changelog recovery does (with RocksDB it even refuses to
start: "persisted offset is higher than the highwater"). :meth:`PartitionTable.seal`
writes one small record to a changelog partition in a produce request of its
own, after the batch's writes were flushed: the last batch is then that seal
alone, and every real write lies below the reported high watermark. The stages
seal after each batch's table writes, before the batch is acknowledged.

**Long values.** A changelog record must stay below the broker's message
size limit (1 MB by default; Tansu's too). :func:`put_text` writes a longer
text value in parts, each one record, and a short *head* under the key that
names them; :func:`get_text` reads it back. The parts alternate between two
slots, so a worker killed between the parts and the head leaves the previous
head and its parts whole.

Example:
    >>> # inside an agent, for the records of source partition 2 (event: one of them):
    >>> # with partition_scope(2, event):
    >>> #     table[key] = value          # changelog partition 2, RocksDB database 2
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from functools import partial
from types import SimpleNamespace

import faust
from faust import streams as faust_streams
from faust.serializers import codecs
from faust.types import TP

from driftline.streams.changelog import ChangelogProducer
from driftline.streams.staging import write_each

_current_partition: ContextVar[int | None] = ContextVar("driftline_table_partition", default=None)


@contextmanager
def partition_scope(partition: int, event: Any | None = None) -> Iterator[None]:
    """Table writes inside the block go to changelog partition ``partition``.

    ``event`` (a Faust event read from that partition) becomes Faust's current
    event for the block, which the RocksDB store needs to pick its database.
    """
    if event is not None and event.message.partition != partition:
        raise ValueError(f"event of partition {event.message.partition} given for partition {partition}")
    token = _current_partition.set(partition)
    # faust.current_event() reads this context variable (a weak reference to the event)
    event_token = faust_streams._current_event.set(weakref.ref(event)) if event is not None else None  # noqa: SLF001
    try:
        yield
    finally:
        if event_token is not None:
            faust_streams._current_event.reset(event_token)  # noqa: SLF001
        _current_partition.reset(token)


#: The key of the seal record (never a request id or model key).
SEAL_KEY = "\x00driftline-seal"

#: Text values longer than this are written in parts (one changelog record each, JSON-quoted: below 1 MB).
PART_CHARS = 800_000
_PARTS = "\x00parts"


class PartsError(RuntimeError):
    """A value's parts do not match its head (a table not restored whole)."""


def put_text(table: MutableMapping[str, Any], key: str, text: str, part_chars: int = PART_CHARS) -> str:
    """Write ``text`` under ``key``, in parts if it is longer than ``part_chars``; return what ``key`` now holds.

    Write inside :func:`partition_scope`: the parts go to the same changelog
    partition as the head, in order, before it.

    Example:
        >>> table = {}
        >>> head = put_text(table, "m|v1", "x" * 25, part_chars=10)
        >>> len(table), get_text(table, "m|v1") == "x" * 25
        (4, True)
        >>> put_text(table, "m|v1", "short", part_chars=10), get_text(table, "m|v1")
        ('short', 'short')
    """
    if len(text) <= part_chars:
        table[key] = text
        return text
    previous = table.get(key)
    # the other slot than the head's: until the new head is written, the previous one's parts stay whole
    slot = 1 - int(previous.split("/")[1]) if isinstance(previous, str) and previous.startswith(_PARTS) else 0
    count = -(-len(text) // part_chars)
    for i in range(count):
        table[f"{key}{_PARTS}/{slot}/{i}"] = text[i * part_chars:(i + 1) * part_chars]
    head = f"{_PARTS}/{slot}/{count}/{len(text)}/{zlib.crc32(text.encode()):08x}"
    table[key] = head
    return head


def get_text(table: MutableMapping[str, Any], key: str) -> Any:
    """What :func:`put_text` wrote under ``key`` (whole), or the key's plain value (None if absent).

    Raises :class:`PartsError` if the parts do not add up to what the head says.
    """
    stored = table.get(key)
    if not isinstance(stored, str) or not stored.startswith(_PARTS):
        return stored
    _, slot, count, length, crc = stored.split("/")
    text = "".join(table.get(f"{key}{_PARTS}/{slot}/{i}") or "" for i in range(int(count)))
    if len(text) != int(length) or f"{zlib.crc32(text.encode()):08x}" != crc:
        raise PartsError(f"{key!r}: {count} parts of {len(text)} characters, the head says {length} ({crc})")
    return text


def _plain(table: faust.Table) -> bool:
    """Whether the table's keys and values serialize by codec name alone (no models, no key expiry)."""
    return (isinstance(table.key_serializer, str) and isinstance(table.value_serializer, str)
            and table.key_type in (str, bytes, None) and table.value_type is None
            and not table._should_expire_keys())  # noqa: SLF001


class _Sent:
    """What Faust's table code reads of a changelog record it sent: the partition."""

    __slots__ = ("message",)

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


class PartitionTable(faust.Table):
    """A ``faust.Table`` written per source partition (see the module docstring).

    With ``changelog_producer`` set (a :class:`~.changelog.ChangelogProducer`),
    changelog records go through it instead of Faust's producer: the same
    topic, partition, key and value bytes, for a fraction of the cost. Flush it
    before acknowledging the input that caused the writes.
    """

    changelog_producer: ChangelogProducer | None = None

    def send_changelog(self, partition: int | None, key: Any, value: Any, key_serializer: Any = None,
                       value_serializer: Any = None) -> Any:
        producer = self.changelog_producer
        if producer is None:
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if partition is None:  # pragma: no cover - partition_for_key always names one
            raise RuntimeError(f"table {self.name!r}: a changelog record without a partition")
        topic = self.changelog_topic
        key_bytes, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        value_bytes, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        name = topic.get_topic_name()
        producer.send(name, partition, key_bytes, value_bytes, on_sent=partial(self._persisted, TP(name, partition)))
        return _Sent(partition)

    def write_many(self, items: Iterable[tuple[Any, Any]], deleted: Iterable[Any] = ()) -> int:
        """Set the keys of ``items`` and delete those of ``deleted`` (if present), in the current
        :func:`partition_scope`; returns how many records were written.

        The same store writes and changelog records as ``table[key] = value``
        and ``del table[key]`` one by one, with Faust's per-key layers
        (topic, schema and serializer registry lookups, a callback per record)
        done once per call: a stage writes about one key per request.

        Example:
            >>> # with partition_scope(2, event):
            >>> #     table.write_many([("r-1", {"p": 1}), ("r-2", {"p": 2})], deleted=["r-0"])
        """
        producer = self.changelog_producer
        if producer is None or not _plain(self):
            return write_each(self, items, deleted)
        partition = self.partition_for_key(None)
        assert partition is not None
        name = self.changelog_topic.get_topic_name()
        on_sent = partial(self._persisted, TP(name, partition))
        dump_key, dump_value = codecs.get_codec(self.key_serializer).dumps, codecs.get_codec(self.value_serializer).dumps
        data, send, on_set = self.data, producer.send, self._sensor_on_set
        n = 0
        for key, value in items:
            data[key] = value
            send(name, partition, dump_key(key), dump_value(value), on_sent=on_sent)
            on_set(self, key, value)
            n += 1
        for key in deleted:
            if key in data:
                del data[key]
                send(name, partition, dump_key(key), None, on_sent=on_sent)
                self._sensor_on_del(self, key)
                n += 1
        return n

    def _persisted(self, tp: TP, offset: int) -> None:
        # what Faust's own callback does: RocksDB remembers the changelog offset its data covers
        self.data.set_persisted_offset(tp, offset)

    def seal(self, partition: int, event: Any | None = None) -> None:
        """Write the seal record to ``partition``'s changelog (call after flushing the producer)."""
        with partition_scope(partition, event):
            self[SEAL_KEY] = int(self.get(SEAL_KEY) or 0) + 1

    def partition_for_key(self, key: Any) -> int | None:  # noqa: D102 - documented above
        partition = _current_partition.get()
        if partition is None:
            raise RuntimeError(f"table {self.name!r} written outside partition_scope()")
        return partition
