"""The bank keeper: the detect stage's CPU work, in this process or a child, and what it hands back to write."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from driftline.settings import Settings
from driftline.streams.banks import (
    NEW_BANK,
    BankKeeper,
    BankRequest,
    BankUpdate,
    DetectProcess,
    checkpoint_request,
)
from driftline.streams.detect import DetectorBank, ModelKey, ObservationBatch
from driftline.streams.tables import get_text, put_text

KEY = ModelKey("fraud", "v1")
SETTINGS = Settings(windows_enabled=False, topic_partitions=1, alert_cooldown_s=0)


def messages(n: int = 6000, change_at: int = 3000, size: int = 250, seed: int = 3) -> list[bytes]:
    """Observation batches of one partition, as read from the topic: an error rate that jumps at ``change_at``."""
    rng = random.Random(seed)
    values = [float(rng.random() < (0.1 if i < change_at else 0.4)) for i in range(n)]
    out = []
    for start in range(0, n, size):
        obs = [("error", v, 1_000 * (start + i), "feedback", start + i) for i, v in enumerate(values[start:start + size])]
        out.append(ObservationBatch(KEY, 0, {"j": obs[-1][2] + 1}, obs).to_json())
    return out


def direct(batches: list[bytes]) -> list[int]:
    """The alarms' positions of a bank fed the same batches directly."""
    bank = DetectorBank(KEY, partitions=1)
    return [e.position for m in batches for e in bank.apply(ObservationBatch.from_json(m))]


def run(keeper: BankKeeper, batches: list[bytes], per_request: int, table: dict, kept: dict) -> list[BankUpdate]:
    """Feed ``batches`` through ``keeper`` as the detect agent does, writing each update to ``table``."""
    updates = []
    for start in range(0, len(batches), per_request):
        request = BankRequest(KEY.encode(), 0, batches[start:start + per_request],
                              checkpoint_request(table, kept, KEY.encode()))
        for update in keeper.apply([request], now_ms=0, session="s"):
            kept[update.key] = put_text(table, update.key, update.checkpoint)
            updates.append(update)
    return updates


def positions(updates: list[BankUpdate]) -> list[int]:
    return [e.position for u in updates for e in u.drift]


def test_keeper_raises_the_alarms_of_the_bank_fed_directly():
    batches = messages()
    expected = direct(batches)
    table: dict = {}
    updates = run(BankKeeper(SETTINGS, catalog=None), batches, 3, table, {})
    assert positions(updates) == expected and expected
    assert sum(u.batches for u in updates) == len(batches)
    assert DetectorBank.loads(get_text(table, KEY.encode())).positions == {"error": 6000}


def test_alerts_follow_the_cooldown_kept_in_the_bank():
    updates = run(BankKeeper(Settings(windows_enabled=False, topic_partitions=1, alert_cooldown_s=3600),
                             catalog=None), messages(), 4, {}, {})
    drift = [e for u in updates for e in u.drift]
    alerts = [a for u in updates for a in u.alerts]
    assert drift and len(alerts) == 1, "one alert per cooldown, however many drift events"
    assert alerts[0].drift == drift[0]


def test_keeper_reloads_from_the_table_whenever_it_is_not_its_own_last_checkpoint():
    batches = messages()
    table: dict = {}
    first, second = BankKeeper(SETTINGS, catalog=None), BankKeeper(SETTINGS, catalog=None)
    kept_first: dict = {}
    updates = run(first, batches[:8], 2, table, kept_first)
    # a rebalance: another worker's keeper goes on from the table, then the key comes back
    updates += run(second, batches[8:16], 2, table, {})
    assert checkpoint_request(table, dict(kept_first), KEY.encode()) == get_text(table, KEY.encode())
    updates += run(first, batches[16:], 2, table, kept_first)
    assert positions(updates) == direct(batches)


def test_a_batch_whose_outputs_were_not_written_is_applied_again_not_skipped():
    batches = messages()
    expected = direct(batches)
    keeper, table, kept = BankKeeper(SETTINGS, catalog=None), {}, {}
    where = next(i for i in range(len(batches)) if direct(batches[:i + 1]))  # the first batch with an alarm
    updates = run(keeper, batches[:where], 4, table, kept)
    request = BankRequest(KEY.encode(), 0, [batches[where]], checkpoint_request(table, kept, KEY.encode()))
    lost = keeper.apply([request], now_ms=0, session="s")  # applied, then the publish failed: nothing written
    assert positions(lost), "the batch raised its alarm"
    assert KEY.encode() not in kept, "the keeper's bank is no longer the table's"
    updates += run(keeper, batches[where:], 4, table, kept)
    assert positions(updates) == expected, "redelivered, the batch raised its alarm again"


def test_checkpoint_request():
    table: dict = {}
    kept: dict = {}
    assert checkpoint_request(table, kept, "m|1") == NEW_BANK
    kept["m|1"] = put_text(table, "m|1", "x" * 30, part_chars=10)  # a checkpoint in parts: its head is compared
    assert checkpoint_request(table, kept, "m|1") is None and kept == {}
    assert checkpoint_request(table, kept, "m|1") == "x" * 30, "taken out until written again"
    kept["m|1"] = table["m|1"]
    put_text(table, "m|1", "written elsewhere")
    assert checkpoint_request(table, kept, "m|1") == "written elsewhere"


def test_a_request_without_checkpoint_for_an_unknown_key_says_so():
    with pytest.raises(KeyError, match="must carry its checkpoint"):
        BankKeeper(SETTINGS, catalog=None).apply([BankRequest("m|1", 0, [], None)], now_ms=0, session="s")


def test_release_writes_only_when_there_is_something_to_write():
    keeper = BankKeeper(Settings(windows_enabled=False, topic_partitions=2, detect_idle_s=30), catalog=None)
    obs = [("error", 1.0, 1_000, "feedback", 0)]
    batch = ObservationBatch(KEY, 0, {"j": 2_000}, obs).to_json()
    [update] = keeper.apply([BankRequest(KEY.encode(), 0, [batch], NEW_BANK)], now_ms=0, session="s")
    assert update.holding, "partition 1 holds the value back"
    [quiet] = keeper.release([BankRequest(KEY.encode(), 0, [], None)], now_ms=10_000, session="s")
    assert quiet.checkpoint is None and quiet.holding
    [released] = keeper.release([BankRequest(KEY.encode(), 0, [], None)], now_ms=40_000, session="s")
    assert released.checkpoint and not released.holding, "partition 1 silent for 30 s: released, written"


def test_detect_process_gives_what_the_keeper_gives():
    batches = messages()
    process = DetectProcess(SETTINGS, baselines=False)
    process.start()
    try:
        assert process.pid() != os.getpid()
        table: dict = {}
        kept: dict = {}

        async def feed() -> list[BankUpdate]:
            updates = []
            for start in range(0, len(batches), 3):
                request = BankRequest(KEY.encode(), 0, batches[start:start + 3],
                                      checkpoint_request(table, kept, KEY.encode()))
                for update in await process.apply([request], 0, "s"):
                    kept[update.key] = put_text(table, update.key, update.checkpoint)
                    updates.append(update)
            return updates

        updates = asyncio.run(feed())
    finally:
        process.stop()
    assert positions(updates) == direct(batches)
    assert process.pool is None


def test_detect_process_exits_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from driftline.settings import Settings
        from driftline.streams.banks import DetectProcess
        if __name__ == "__main__":  # the child is spawned: it imports this module again
            process = DetectProcess(Settings(windows_enabled=False), baselines=False)
            process.start()
            print(process.pid(), flush=True)
            time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(child):
            time.sleep(0.2)
        assert not alive(child), "the detect process outlived its worker"
    finally:
        if parent.poll() is None:
            parent.kill()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped by its dead parent's init yet) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
