"""The offset guard in a real Faust worker on the broker: messages the consumer jumps past are still processed,
once each, and committed only after they were (streams/offsets.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from driftline.connectors.kafka_admin import committed_offsets
from tests.worker_process import pipeline_settings, settings_env, wait_until

N = 600


def produce(producer: Producer, topic: str, offsets: range) -> None:
    for i in offsets:  # one request each: the broker's high watermark is exact (see test_changelog_seal.py)
        producer.produce(topic, f"m{i}".encode(), b"k")
        producer.flush(10)


def run_guarded_agent(settings, kafka_admin, topic: str, out: Path, skip_at: int, extra_env: dict | None = None,
                      first: int = N) -> dict[str, int]:
    """Run the agent over N messages (``first`` of them before it starts, the rest once it processed those)."""
    extra_env = extra_env or {}
    kafka_admin.create_topic(topic, partitions=1)
    producer = Producer(settings.kafka_client_config())
    produce(producer, topic, range(first))
    run = pipeline_settings(settings)
    env = settings_env(run) | {"GUARD_TOPIC": topic, "GUARD_OUT": str(out), "GUARD_SKIP_AT": str(skip_at)} | extra_env
    log = out.with_suffix(".log")
    worker = subprocess.Popen([sys.executable, "-m", "tests.guarded_agent", "worker"], env=env,
                              stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if first < N:
            wait_until(lambda: out.exists() and len(out.read_text().split()) >= first, 120,
                       f"the first {first} messages processed", status=lambda: log.read_text()[-2000:])
            time.sleep(1.0)  # the agent has sought past the end by now
            produce(producer, topic, range(first, N))

        def done() -> bool:
            assert worker.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"
            return committed_offsets(run, run.app_id, topic, 1)[0] == N

        wait_until(done, 120, f"offset {N} committed", status=lambda: log.read_text()[-2000:])
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    offsets = [int(line) for line in out.read_text().split()]
    assert sorted(offsets) == list(range(N)), "every message processed once"
    assert offsets == sorted(offsets), "in offset order"
    return json.loads(Path(str(out) + ".counts").read_text())


@pytest.mark.timeout(180)
def test_messages_faust_skipped_are_processed_once_before_the_commit_passes_them(
        settings, kafka_admin, unique_topic, tmp_path):
    counts = run_guarded_agent(settings, kafka_admin, unique_topic, tmp_path / "offsets", skip_at=20)
    assert counts["holes"] >= 1, "the skip was seen as a hole and sought back"


@pytest.mark.timeout(180)
def test_a_hole_at_the_end_is_sought_back_when_nothing_more_comes(
        settings, kafka_admin, unique_topic, tmp_path):
    # the agent seeks 20 past its last message before the last 20 are written: nothing comes after the hole
    counts = run_guarded_agent(settings, kafka_admin, unique_topic, tmp_path / "offsets", skip_at=N - 21,
                               extra_env={"GUARD_JUMP_TO": str(N)}, first=N - 20)
    assert counts["stalls"] >= 1, "no later message reveals the hole: the stalled partition was sought back"
