"""The intake against the broker: input records forwarded by partition, committed once forwarded."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
from driftline.streams.banks import DETECT_PROCESS_NAME
from driftline.streams.intake import INTAKE_PROCESS_NAME, Intake, IntakeBatch, intake_topic
from tests.kafka_helpers import consume_all
from tests.worker_process import IndexReader, WorkerProcess, pipeline_settings, wait_until


def produce(settings, topic: str, n: int, prefix: str) -> None:
    producer = Producer(settings.kafka_client_config())
    for i in range(n):
        producer.produce(topic, value=f"{prefix}-value-{i}".encode(), key=f"req-{i}".encode())
    assert producer.flush(30) == 0


def forwarded(settings) -> list[IntakeBatch]:
    messages = consume_all(settings, intake_topic(settings), settings.topic_partitions, expected=1)
    batches = []
    for message in messages:
        batch = IntakeBatch.decode(message.value())
        assert batch.partition == message.partition(), "a batch went to another partition number than its records"
        batches.append(batch)
    return batches


def run_until(intake: Intake, records: int, cycles: int = 100) -> int:
    seen = 0
    for _ in range(cycles):
        seen += intake.cycle().records
        if seen >= records:
            break
    return seen


def test_the_intake_forwards_each_record_once_to_its_own_partition_and_resumes_after_a_restart(settings):
    config = pipeline_settings(settings, batch_size=300, intake_within_s=0.2)
    ensure_topics(config, driftline_topics(config))
    produce(config, config.predictions_topic, 1_000, "p")
    produce(config, config.feedback_topic, 400, "f")

    intake = Intake(config)
    intake.start()
    try:
        assert run_until(intake, 1_400) == 1_400
    finally:
        intake.close()

    batches = forwarded(config)
    records = [r for b in batches for r in b.records()]
    assert len(records) == 1_400 and all(len(b) <= 300 for b in batches)
    assert len({(r.topic, r.partition, r.offset) for r in records}) == 1_400  # no record twice
    assert {r.value.decode().split("-value-")[0] for r in records} == {"p", "f"}
    assert all(r.timestamp_ms and r.timestamp_ms > 1_700_000_000_000 for r in records)
    # within a partition and topic, offsets arrive in order
    for topic in (config.predictions_topic, config.feedback_topic):
        for p in range(config.topic_partitions):
            offsets = [r.offset for r in records if r.topic == topic and r.partition == p]
            assert offsets == sorted(offsets) and offsets == list(range(len(offsets)))

    # a new intake in the same group continues after the committed offsets: only the new records
    produce(config, config.predictions_topic, 100, "late")
    again = Intake(config)
    again.start()
    try:
        assert run_until(again, 100) == 100
        assert again.cycle().records == 0
    finally:
        again.close()
    late = [r for b in forwarded(config) for r in b.records()]
    assert len(late) == 1_500
    assert sum(1 for r in late if r.value.startswith(b"late-")) == 100


def _spawned_children(pid: int) -> set[int]:
    """The process's children started by multiprocessing's spawn (not its resource tracker), from any thread."""
    children = {int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()}
    return {c for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")}


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait() is missing


def _log_three(settings, n: int = 3) -> None:
    from driftline.connectors.producer import PredictionLogger
    from driftline.simulation import SimulatedService

    traffic = SimulatedService(n=n, malformed_count=0).traffic()
    with PredictionLogger(settings) as log:
        for prediction in traffic.predictions:
            log.log_prediction(prediction)
        assert log.flush(30) == 0


@pytest.mark.parametrize(("in_process", "detect_process"), [(True, True), (False, False)],
                         ids=["child-processes", "event-loop"])
def test_the_worker_indexes_with_or_without_child_processes_and_they_leave_with_it(settings, tmp_path, in_process,
                                                                                   detect_process):
    config = pipeline_settings(settings, intake_process=in_process, detect_process=detect_process)
    ensure_topics(config, driftline_topics(config))
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    reader = IndexReader(config)
    try:
        _log_three(config)
        wait_until(lambda: reader.count("predictions") >= 3, 120, "predictions indexed", worker)
        assert reader.count("predictions") == 3
        # the detect stage (its bank keeper) took them too: their open window's metrics document is indexed
        wait_until(lambda: reader.count("metrics") >= 1, 60, "the window's metrics document indexed", worker)
        assert worker.process is not None
        children = _spawned_children(worker.process.pid)
        # the intake process (DRIFTLINE_INTAKE_PROCESS) and the detect process (DRIFTLINE_DETECT_PROCESS), by name
        names = sorted(Path(f"/proc/{child}/comm").read_text().strip() for child in children)
        assert names == [DETECT_PROCESS_NAME] * detect_process + [INTAKE_PROCESS_NAME] * in_process, names
        os.kill(worker.process.pid, signal.SIGKILL)  # the worker alone: no clean shutdown, no process group
        worker.process.wait(10)
        for child in children:
            wait_until(lambda: not _running(child), 20, "the orphaned child process to exit")
    finally:
        worker.stop()
        reader.close()
