"""A worker stopped with SIGTERM shuts down cleanly: exit status 0, what it opened closed, nothing left running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
from driftline.connectors.producer import PredictionLogger
from tests.worker_process import IndexReader, WorkerProcess, pipeline_settings, wait_until

pytestmark = pytest.mark.integration


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_closes_the_pipeline_and_leaves_no_process_behind(settings, tmp_path):
    run = pipeline_settings(settings)
    ensure_topics(run, driftline_topics(run))
    reader = IndexReader(run)
    worker = WorkerProcess(run, tmp_path / "worker.log").start()
    try:
        with PredictionLogger(run) as log:
            for i in range(300):
                log.log_prediction({"request_id": f"stop-{i}", "timestamp": 1_763_800_000_000 + i * 100,
                                    "model_name": "fraud", "model_version": "v1", "latency_ms": 3.0,
                                    "prediction": [{"label": "legit", "score": 0.2}],
                                    "numeric_features": {"x": float(i)}})
            assert log.flush(60) == 0
        wait_until(lambda: reader.count("predictions") >= 300, 120, "predictions indexed", worker)
        time.sleep(1.0)  # the detect stage takes its observation batches, so its process is up
        assert worker.process is not None
        children = children_of(worker.process.pid)
        assert len(children) >= 2, "the intake and detect processes run"
        worker.stop(timeout=60)
        assert worker.process.returncode == 0, worker.log_tail()
        wait_until(lambda: not any(running(pid) for pid in children), 10, "the child processes to exit")
        log_text = (tmp_path / "worker.log").read_text(errors="replace")
        assert "driftline pipeline closed" in log_text, worker.log_tail()
        for sign in ("Unclosed", "never retrieved", "Traceback"):
            assert sign not in log_text, worker.log_tail(80)
    finally:
        worker.kill()
        reader.close()
