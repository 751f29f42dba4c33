"""Long table values in parts (streams/tables.py): whole after a restore, whole after a crash mid-write."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from driftline.streams.tables import PartsError, get_text, put_text


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
