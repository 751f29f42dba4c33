"""The worker's periodic report: the event-to-indexed latency it summarizes."""

from __future__ import annotations

import time
from types import SimpleNamespace

import faust

from driftline.settings import Settings
from driftline.streams.app import Pipeline


def test_latency_is_from_each_records_kafka_timestamp_to_now(tmp_path):
    pipeline = Pipeline(faust.App("report-test", broker="kafka://localhost:1"), Settings(worker_dir=tmp_path))
    assert pipeline.latency_report() == {}
    now_ms = time.time() * 1000
    # two partitions' records, sent 1 s to 1.99 s ago; a partition without records adds nothing
    parts = [SimpleNamespace(sent_ms=[now_ms - 1000 - i for i in range(0, 990, 10)]),
             SimpleNamespace(sent_ms=[]), SimpleNamespace(sent_ms=[now_ms - 1990])]
    pipeline.observe_latency(parts)
    report = pipeline.latency_report()
    assert report["n"] == 100
    assert 1490 <= report["p50"] <= 1600 and 1980 <= report["p99"] <= 2200
    pipeline.keeper.stop()
