"""End-to-end throughput of ``driftline worker``, against the bare components, in one run.

On the same servers (the embedded ones, started here, or those named by
``DRIFTLINE_KAFKA_BOOTSTRAP`` / ``DRIFTLINE_ES_URL``) and the same events:

1. bare Kafka: ``Producer.produce()`` of the encoded events, then a batch
   ``Consumer.consume()`` of all of them (msgs/s);
2. bare Elasticsearch: ``helpers.bulk`` of the canonical prediction documents
   the pipeline would index (docs/s);
3. the pipeline: predictions and feedback are logged first, then a worker is
   started and timed until every prediction and outcome is indexed
   (input events/s and documents/s), with the worker's own per-phase timings —
   on fresh topics and indices each time: with the windows off (online
   detectors only, ``DRIFTLINE_WINDOWS_ENABLED=false``) and on, with a
   training baseline published (windowed metrics, baseline comparisons,
   schema-skew checks). The local Elasticsearch-API server slows down as it
   holds more documents, so by default the windows-off run goes first and
   last (``--order off,on,off``) and the windows-on run is compared with
   their mean.

The pipeline indexes two documents per request (the prediction and the joined
outcome), so the Elasticsearch floor for N requests is 2N documents at the
bare bulk rate: the report shows the pipeline's documents/s as a share of it.

Run:
    python benchmarks/pipeline_throughput.py               # 10,000 requests
    python benchmarks/pipeline_throughput.py --requests 40000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from elasticsearch import Elasticsearch, helpers  # noqa: E402

from driftline.baselines.build import build_baseline  # noqa: E402
from driftline.baselines.catalog import publish_baseline  # noqa: E402
from driftline.connectors.codec import make_codec  # noqa: E402
from driftline.connectors.kafka_admin import driftline_topics, ensure_topics  # noqa: E402
from driftline.connectors.producer import PredictionLogger  # noqa: E402
from driftline.settings import Settings  # noqa: E402
from driftline.simulation import SimulatedService  # noqa: E402
from driftline.streams.normalize import Normalizer, RawRecord  # noqa: E402
from driftline.streams.pseudonymize import generate_key  # noqa: E402


def bare_kafka(settings: Settings, values: list[bytes]) -> tuple[float, float]:
    topic = f"bench.bare.{uuid.uuid4().hex[:6]}"
    ensure_topics(settings, {topic: settings.topic_partitions})
    producer = Producer(settings.kafka_client_config() | {"linger.ms": 5})
    start = time.perf_counter()
    for i, value in enumerate(values):
        producer.produce(topic, value, str(i).encode())
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    produce_rate = len(values) / (time.perf_counter() - start)
    consumer = Consumer(settings.kafka_consumer_config(f"bench-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.topic_partitions)])
    got = 0
    start = time.perf_counter()
    while got < len(values) and time.perf_counter() - start < 60:
        got += sum(1 for m in consumer.consume(10_000, 0.5) if m.error() is None)
    consume_rate = got / (time.perf_counter() - start)
    consumer.close()
    return produce_rate, consume_rate


def bare_elasticsearch(settings: Settings, documents: list[dict]) -> float:
    es = Elasticsearch(**settings.es_client_options(), request_timeout=120)
    index = f"bench-bare-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    helpers.bulk(es, ({"_index": index, "_id": d["request"]["id"], "_source": d} for d in documents), chunk_size=1000)
    rate = len(documents) / (time.perf_counter() - start)
    es.indices.delete(index=index)
    es.close()
    return rate


def training_file(path: Path, rows: int = 20_000) -> Path:
    """A training CSV of the simulated model's features (no drift: another seed, drift points beyond the end)."""
    import csv

    service = SimulatedService(n=rows, seed=7, feature_drift_start=rows + 1, concept_drift_at=rows + 1, malformed_count=0)
    predictions = service.traffic().predictions
    numeric = sorted(predictions[0]["numeric_features"])
    categorical = sorted(predictions[0]["categorical_features"])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*numeric, *categorical, "prediction"])
        for p in predictions:
            writer.writerow([*(p["numeric_features"][n] for n in numeric), *(p["categorical_features"][c] for c in categorical),
                             p["prediction"][0]["label"]])
    return path


def run_worker(settings: Settings, traffic, requests: int, log_path: Path) -> tuple[float, float, str]:
    """Log the traffic, start a worker, time it until every prediction and outcome is indexed.

    Returns (seconds to the first document, seconds busy indexing, the worker's last counts report).
    """
    import signal
    import subprocess

    tag = settings.es_index_prefix
    ensure_topics(settings, driftline_topics(settings))
    with PredictionLogger(settings, max_buffer=3 * requests) as log:
        for p in traffic.predictions:
            log.log_prediction(p)
        for f in traffic.feedback:
            log.log_feedback(f)
        log.flush(120)
    with log_path.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "driftline.cli", "worker", "--loglevel", "info"],
                                  env=os.environ | settings.to_env(), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    es = Elasticsearch(**settings.es_client_options())

    def count(stream: str) -> int:
        try:
            es.indices.refresh(index=f"{tag}-{stream}-*")
            return int(es.count(index=f"{tag}-{stream}-*")["count"])
        except Exception:  # noqa: BLE001 - no index yet
            return 0

    started = time.perf_counter()
    first = None
    try:
        while time.perf_counter() - started < 1800:
            if worker.poll() is not None:  # a dead worker indexes nothing more: stop, do not wait out the limit
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                raise SystemExit(f"the worker stopped (exit {worker.returncode}):\n" + "\n".join(tail))
            n_pred, n_out = count("predictions"), count("outcomes")
            if first is None and n_pred:
                first = time.perf_counter()
            print(f"  {time.perf_counter() - started:6.1f} s: predictions {n_pred:,}, outcomes {n_out:,}", flush=True)
            if n_pred >= requests and n_out >= requests:
                break
            time.sleep(2.0)
        finished = time.perf_counter()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        es.close()
    counts = [line for line in log_path.read_text(errors="replace").splitlines() if "driftline counts" in line]
    return (first or finished) - started, finished - (first or started), counts[-1].split("driftline counts: ", 1)[-1] if counts else ""


def _stop_on_signals() -> None:
    """SIGTERM/SIGINT exit through the ExitStack, so the embedded servers are stopped, not left running."""
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--order", default="off,on,off", help="the worker runs, in order: off (windows off), on")
    args = parser.parse_args(argv)
    _stop_on_signals()

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftline-bench-")))
        bootstrap, es_url = os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP"), os.environ.get("DRIFTLINE_ES_URL")
        if not (bootstrap and es_url):
            from driftline.connectors.infra import free_ports, running_infrastructure

            kafka_port, es_port = free_ports(2)
            print("starting the embedded servers ...", flush=True)
            infra = stack.enter_context(running_infrastructure(folder / "infra", kafka_port=kafka_port, es_port=es_port))
            bootstrap, es_url = infra.kafka_bootstrap, infra.es_url

        def bench_settings(**overrides) -> Settings:
            tag = f"bench{uuid.uuid4().hex[:6]}"
            return Settings(
                kafka_bootstrap=bootstrap, es_url=es_url, kafka_session_timeout_ms=6000, app_id=f"driftline-{tag}",
                predictions_topic=f"{tag}.predictions", feedback_topic=f"{tag}.feedback",
                deadletter_topic=f"{tag}.deadletter", alerts_topic=f"{tag}.alerts", baselines_topic=f"{tag}.baselines",
                es_index_prefix=tag, pseudonymization_key=generate_key(), worker_dir=folder / "worker" / tag,
                detect_idle_s=5.0, **overrides,
            )

        settings = bench_settings()
        service = SimulatedService(n=args.requests, malformed_count=0)
        traffic = service.traffic()
        codec = make_codec("prediction_event")
        values = codec.encode_many(traffic.predictions)
        normalizer = Normalizer.from_settings(settings)
        now_ms = int(time.time() * 1000)
        documents = [normalizer.normalize(RawRecord(v, None, settings.predictions_topic, 0, i), now_ms).document
                     for i, v in enumerate(values)]
        print(f"{args.requests:,} requests: {sum(map(len, values)) / len(values):.0f} B of Avro each", flush=True)

        print("[1] bare Kafka produce + consume ...", flush=True)
        produce_rate, consume_rate = bare_kafka(settings, values)
        print("[2] bare Elasticsearch helpers.bulk ...", flush=True)
        bulk_rate = bare_elasticsearch(settings, documents)

        # noida-db slows down as it holds more documents, so the order of the runs matters: by default the
        # windows-off run goes both first and last, and the report compares the windows-on run with their mean
        off_runs: list[tuple[float, float, str]] = []
        on_run: tuple[float, float, str] | None = None
        baseline = None
        for step, phase in enumerate(args.order.split(","), start=3):
            if phase == "off":
                print(f"[{step}] driftline worker, windows off ...", flush=True)
                off_runs.append(run_worker(bench_settings(windows_enabled=False), traffic, args.requests,
                                           folder / f"worker-off-{step}.log"))
            else:
                print(f"[{step}] driftline worker, windows on, with a training baseline ...", flush=True)
                on = bench_settings(slices=["region=eu"], positive_label="fraud", sensitive_attribute="region")
                baseline = baseline or build_baseline(training_file(folder / "train.csv"), service.model_name,
                                                      service.model_version, prediction_column="prediction")
                publish_baseline(on, baseline)
                on_run = run_worker(on, traffic, args.requests, folder / f"worker-on-{step}.log")

    events = 2 * args.requests
    assert on_run is not None and off_runs, "--order needs at least one 'on' and one 'off'"
    rates_off = [events / busy for _, busy, _ in off_runs]
    rate_off = sum(rates_off) / len(rates_off)
    rate_on = events / on_run[1]
    print("\n| figure | value |")
    print("| --- | --- |")
    print(f"| bare Kafka produce | {produce_rate:,.0f} msgs/s |")
    print(f"| bare Kafka consume | {consume_rate:,.0f} msgs/s |")
    print(f"| bare Elasticsearch bulk (canonical predictions) | {bulk_rate:,.0f} docs/s |")
    print(f"| worker start-up (group join, templates) until the first document | {off_runs[0][0]:.1f} s |")
    print(f"| pipeline, windows off: input events (= documents indexed) | {rate_off:,.0f} events/s "
          f"= {rate_off / bulk_rate:.0%} of bare bulk (runs: {', '.join(f'{r:,.0f}' for r in rates_off)}) |")
    print(f"| pipeline, windows on (metrics, baseline comparisons, skew; slice region=eu) | {rate_on:,.0f} events/s "
          f"= {rate_on / bulk_rate:.0%} of bare bulk |")
    print(f"| windows on / off | {rate_on / rate_off:.0%} (target: at least 67%) |")
    for (_, _, report), n in zip(off_runs, range(len(off_runs))):
        print(f"\nworker's last report, windows off (run {n + 1}): {report}")
    print(f"worker's last report, windows on: {on_run[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
