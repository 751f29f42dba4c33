"""Documents Elasticsearch refuses become dead letters of the index stage; everything else carries on.

An operator created one day's predictions index by hand with a mapping that
contradicts driftline's template (``request.type`` as a number). Predictions of
that day are refused with a mapping error; the worker turns each into a dead
letter (topic and index) with the reason, indexes the other day's predictions
and the outcomes, and commits past all of them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from elasticsearch import Elasticsearch

from driftline.connectors.elasticsearch.indices import index_name
from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
from driftline.connectors.producer import PredictionLogger
from tests.kafka_helpers import consume_all
from tests.worker_process import IndexReader, WorkerProcess, pipeline_settings, wait_until

DAY_MS = 86_400_000
BAD_DAY_MS = 1_763_769_600_000  # 2025-11-22T00:00:00Z
PER_DAY = 30


def test_refused_documents_become_index_stage_dead_letters_and_the_rest_is_indexed(settings, tmp_path):
    run = pipeline_settings(settings)
    ensure_topics(run, driftline_topics(run))
    es = Elasticsearch(**run.es_client_options())
    bad_index = index_name(run.es_index_prefix, "predictions", datetime.fromtimestamp(BAD_DAY_MS / 1000, timezone.utc))
    es.indices.create(index=bad_index, mappings={"properties": {"request": {"properties": {"type": {"type": "long"}}}}})
    worker = WorkerProcess(run, tmp_path / "worker.log").start()
    reader = IndexReader(run)
    try:
        with PredictionLogger(run) as log:
            for day, start in (("bad", BAD_DAY_MS), ("good", BAD_DAY_MS + DAY_MS)):
                for i in range(PER_DAY):
                    request_id = f"{day}-{i}"
                    log.log_prediction({"request_id": request_id, "timestamp": start + 3_600_000 + i * 1000,
                                        "model_name": "m", "model_version": "1",
                                        "prediction": [{"label": "a", "score": 0.9}],
                                        "numeric_features": {"x": float(i)}})
                    log.log_feedback({"request_id": request_id, "timestamp": start + 3_600_000 + i * 1000 + 500,
                                      "labels": ["a"], "label_source": "PROCESS_FEEDBACK"})
            assert log.flush(30) == 0
        wait_until(lambda: reader.count("deadletters") >= PER_DAY and reader.count("predictions") >= PER_DAY
                   and reader.count("outcomes") >= 2 * PER_DAY, 120, "dead letters, predictions and outcomes", worker)
        dead = reader.search("deadletters")
        assert len(dead) == PER_DAY
        assert {d["error"]["stage"] for d in dead} == {"index"} and {d["error"]["type"] for d in dead} == {"mapping_error"}
        assert all("Elasticsearch rejected the predictions document" in d["error"]["message"] for d in dead)
        assert sorted(d["request"]["id"] for d in reader.search("predictions")) == sorted(f"good-{i}" for i in range(PER_DAY))
        # the outcomes index follows driftline's template, so every outcome is there, the refused day's too
        assert reader.count("outcomes") == 2 * PER_DAY
        # and on the dead-letter topic, for replay after the mapping is fixed
        assert len(consume_all(run, run.deadletter_topic, run.topic_partitions, PER_DAY)) == PER_DAY
    finally:
        worker.stop()
        reader.close()
        es.close()
