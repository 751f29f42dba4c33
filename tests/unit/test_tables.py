"""Tables (streams/tables.py): long values in parts, whole after a restore and after a crash mid-write; batched writes."""

from __future__ import annotations

import faust
import pytest
from hypothesis import given, strategies as st

from driftline.streams.staging import StagedStore
from driftline.streams.tables import PartitionTable, PartsError, get_text, partition_scope, put_text


@given(texts=st.lists(st.text(max_size=60), min_size=1, max_size=6), part_chars=st.integers(1, 25))
def test_the_last_text_written_is_read_back_whole(texts, part_chars):
    table: dict[str, str] = {}
    for text in texts:
        put_text(table, "k", text, part_chars=part_chars)
        assert get_text(table, "k") == text
    assert all(len(v) <= max(part_chars, 40) for v in table.values()), "no record longer than a part or a head"


def test_a_short_text_is_stored_as_it_is_and_a_missing_key_reads_none():
    table: dict[str, str] = {}
    assert put_text(table, "k", "abc", part_chars=10) == "abc"
    assert table == {"k": "abc"}
    assert get_text(table, "absent") is None


def test_a_crash_between_the_parts_and_the_head_leaves_the_previous_checkpoint_whole():
    table: dict[str, str] = {}
    put_text(table, "k", "a" * 50, part_chars=10)

    class Crash(Exception):
        pass

    class CrashingAtHead(dict):
        def __setitem__(self, key: str, value: str) -> None:
            if key == "k":
                raise Crash
            super().__setitem__(key, value)

    crashing = CrashingAtHead(table)
    with pytest.raises(Crash):
        put_text(crashing, "k", "b" * 70, part_chars=10)  # every part written, the head not
    assert get_text(crashing, "k") == "a" * 50
    restored = dict(crashing)  # what a restarted worker recovers; its next checkpoint goes on from there
    put_text(restored, "k", "c" * 30, part_chars=10)
    assert get_text(restored, "k") == "c" * 30


def test_parts_that_do_not_match_their_head_raise():
    table: dict[str, str] = {}
    put_text(table, "k", "x" * 30, part_chars=10)
    del table[next(key for key in table if key != "k")]
    with pytest.raises(PartsError, match="the head says 30"):
        get_text(table, "k")


class _Recorder:
    """Stands in for the changelog producer: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bytes | None, bytes | None]] = []

    def send(self, topic, partition, key, value, on_sent=None) -> None:
        self.sent.append((topic, partition, key, value))


def _join_table() -> PartitionTable:
    app = faust.App("tables-test", broker="kafka://localhost:1", store="memory://")
    table = PartitionTable(app, name="join", partitions=4, beacon=app.tables.beacon,
                           schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"))
    table = app.tables.add(table)
    table.changelog_producer = _Recorder()
    return table


def test_write_many_writes_what_writing_key_by_key_writes():
    one_by_one, batched = _join_table(), _join_table()
    values = [("r-1", {"prediction": {"score": 0.5}, "labels": ["a"]}), ("r-2", "text"), ("r-3", 7)]
    with partition_scope(2):
        for key, value in values:
            one_by_one[key] = value
        del one_by_one["r-1"]
        assert batched.write_many(values) == 3
        assert batched.write_many([], deleted=["r-1", "never-written"]) == 1
    assert batched.changelog_producer.sent == one_by_one.changelog_producer.sent
    assert [record[1] for record in batched.changelog_producer.sent] == [2, 2, 2, 2]
    assert batched.changelog_producer.sent[-1][3] is None  # a tombstone
    assert dict(batched.data) == dict(one_by_one.data) == {"r-2": "text", "r-3": 7}


def test_write_many_outside_a_partition_scope_raises():
    with pytest.raises(RuntimeError, match="partition_scope"):
        _join_table().write_many([("r-1", 1)])


def test_a_staged_store_commits_to_a_partition_table_in_one_batch():
    table = _join_table()
    with partition_scope(1):
        table["old"] = {"p": 1}
    table.changelog_producer.sent.clear()
    staged = StagedStore(table)
    staged["r-1"], staged["r-2"] = {"p": 2}, {"p": 3}
    del staged["old"]
    calls = []
    write_many = table.write_many
    table.write_many = lambda items, deleted=(): calls.append(1) or write_many(items, deleted)
    with partition_scope(1):
        assert staged.commit() == 3
    assert calls == [1]
    assert dict(table.data) == {"r-1": {"p": 2}, "r-2": {"p": 3}}
    assert [(record[2], record[3]) for record in table.changelog_producer.sent] == [
        (b'"r-1"', b'{"p":2}'), (b'"r-2"', b'{"p":3}'), (b'"old"', None)]


def test_staged_reads_fall_through_to_the_table_and_an_earlier_store():
    table = _join_table()
    with partition_scope(0):
        table["kept"], table["gone"] = 1, 2
    first = StagedStore(table)
    first["new"] = 3
    del first["gone"]
    second = StagedStore(first)
    second["newer"] = 4
    assert [second.get(k, "none") for k in ("kept", "gone", "new", "newer", "never")] == [1, "none", 3, 4, "none"]
    assert [k in second for k in ("kept", "gone", "new", "never")] == [True, False, True, False]
    with pytest.raises(KeyError):
        second["gone"]
