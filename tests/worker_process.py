"""Run ``driftline worker`` as a real subprocess for end-to-end tests, and read what it indexed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from driftline.settings import Settings

PSEUDONYMIZATION_KEY = "test-key-0123456789abcdef"


def pipeline_settings(base: Settings, **overrides: Any) -> Settings:
    """Settings for one isolated pipeline run: its own topics, consumer group and indices."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "predictions_topic": f"t{tag}.predictions",
        "feedback_topic": f"t{tag}.feedback",
        "deadletter_topic": f"t{tag}.deadletter",
        "alerts_topic": f"t{tag}.alerts",
        "baselines_topic": f"t{tag}.baselines",
        "app_id": f"driftline-test-{tag}",
        "es_index_prefix": f"t{tag}",
        "pseudonymization_key": PSEUDONYMIZATION_KEY,
        "batch_within_s": 0.2,
        "detect_idle_s": 15.0,  # the tail of a finite test stream is released 15 s after the input stops
        "kafka_session_timeout_ms": 6000,
    }
    values.update(overrides)
    return Settings(**(base.model_dump() | values))  # validated, unlike model_copy(update=...)


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment, with DRIFTLINE_* replaced by ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    return env | settings.to_env()


@dataclass
class WorkerProcess:
    """One ``driftline worker`` child process; its output goes to ``log_path``."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> "WorkerProcess":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "worker", "--loglevel", "info"],
            env=settings_env(self.settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final commit."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class IndexReader:
    """Counts and searches a run's indices (refreshing first)."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.es_index_prefix
        self.es = Elasticsearch(**settings.es_client_options())

    def pattern(self, stream: str) -> str:
        return f"{self.prefix}-{stream}-*"

    def count(self, stream: str, query: dict | None = None) -> int:
        try:
            self.es.indices.refresh(index=self.pattern(stream))
            return int(self.es.count(index=self.pattern(stream), query=query or {"match_all": {}})["count"])
        except Exception:  # noqa: BLE001 - no index yet
            return 0

    def search(self, stream: str, query: dict | None = None, size: int = 10_000) -> list[dict]:
        self.es.indices.refresh(index=self.pattern(stream))
        hits = self.es.search(index=self.pattern(stream), query=query or {"match_all": {}}, size=size)["hits"]["hits"]
        return [h["_source"] | {"_id": h["_id"]} for h in hits]

    def field_values(self, stream: str, field: str, page: int = 5_000) -> list[str]:
        """Every document's value of a keyword ``field``, paging with search_after (no 10,000 cap)."""
        self.es.indices.refresh(index=self.pattern(stream))
        values: list[str] = []
        after = None
        while True:
            body = {"index": self.pattern(stream), "size": page, "sort": [{field: "asc"}], "source": [field]}
            if after is not None:
                body["search_after"] = after
            hits = self.es.search(**body)["hits"]["hits"]
            if not hits:
                return values
            values.extend(h["sort"][0] for h in hits)
            after = hits[-1]["sort"]

    def close(self) -> None:
        self.es.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, worker: WorkerProcess | None = None,
               interval: float = 1.0, status: Callable[[], str] | None = None) -> None:
    """Poll ``condition`` until true; fail with the worker's log tail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker is not None and worker.process is not None and not worker.alive() and worker.process.returncode not in (None, 0, -9):
            raise AssertionError(f"worker died (exit {worker.process.returncode}) while waiting for {what}:\n{worker.log_tail()}")
        time.sleep(interval)
    tail = worker.log_tail() if worker else ""
    state = f" ({status()})" if status else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{state}\n{tail}")
