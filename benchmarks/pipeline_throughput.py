"""End-to-end throughput and latency of ``driftline worker``, against the bare components, in one run.

On the same servers (the embedded ones, started here, or those named by
``DRIFTLINE_KAFKA_BOOTSTRAP`` / ``DRIFTLINE_ES_URL``) and the same events of
the simulated fraud model (each request is one prediction and one feedback
event), it measures:

The limits, first:

1. bare Kafka: ``Producer.produce()`` of the encoded predictions, then a batch
   ``Consumer.consume()`` of all of them (msgs/s);
2. an empty Faust agent (it only counts) on that same topic (events/s):
   Faust's per-event ceiling (``benchmarks/empty_agent.py``);
3. bare Elasticsearch: ``helpers.bulk`` (chunks of 1,000) of the very
   documents the pipeline indexes, canonical predictions and joined outcomes
   (docs/s).

Then the worker (a subprocess, fresh topics and indices every time), on a
backlog logged before it starts, timed from its first indexed document until
everything is in:

4. ``indexing`` — every prediction indexed (2 documents per request): input
   events/s, and documents/s as a share of the bare bulk rate (target (b):
   at least 80%);
5. ``processing`` — neither raw predictions nor outcomes indexed
   (``DRIFTLINE_PREDICTION_SAMPLE_RATE=0``, ``DRIFTLINE_OUTCOME_SAMPLE_RATE=0``;
   drift events, alerts and metrics still are): predictions/s through
   normalize → join → detect with their feedback, timed from the worker's
   first ingested record until it ingested every record and its detect stage
   took every observation batch (from the worker's reports, every quarter second:
   a run of 15 s is timed to within a report or two)
   (target (a): at least 5,000 predictions/s);
6. ``latency`` — a fresh worker fed live at half the rate run 4 sustained:
   event-to-indexed latency p50/p99, from each record's Kafka timestamp (set
   when the producer API sent it) to Elasticsearch's acknowledgement, as the
   worker reports it (target (c): p99 under 2 s);
7. ``two-workers`` — two worker processes in one consumer group over the
   topics' partitions: total events/s; every prediction and outcome indexed
   exactly once (ids are deterministic, so the index cannot hold a
   duplicate: the check is that the counts are exact and the workers' joins
   add up).

The windows (metrics, baseline comparisons, skew checks) are on, as by
default, without a baseline; ``--windows off`` turns them off. The intake
runs in a process of its own, as by default; ``--intake thread`` runs it on a
thread of the worker. So do the detectors' banks; ``--detect loop`` keeps
them on the worker's event loop. For (a) the run also prints the CPU time
each process on the machine used while the worker was busy (the worker, its
``dl-intake`` and ``dl-detect`` children, the broker, the Elasticsearch-API
server), and the machine's busy time no running process accounts for (a
process that exited meanwhile, or kernel work on the processes' behalf): on
two cores, where the time goes; its progress lines show how many cores the
machine kept busy, so stalls show. The bare bulk rate is measured
only for the scenarios that compare with it (``indexing``, and ``latency``
without ``--latency-rate``).

Run:
    python benchmarks/pipeline_throughput.py                      # 10,000 requests, every scenario
    python benchmarks/pipeline_throughput.py --requests 20000 --scenarios indexing,processing
"""

from __future__ import annotations

import argparse
import ast
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from elasticsearch import Elasticsearch, helpers  # noqa: E402

from benchmarks.empty_agent import empty_agent_rate  # noqa: E402
from driftline.connectors.codec import make_codec  # noqa: E402
from driftline.connectors.kafka_admin import driftline_topics, ensure_topics  # noqa: E402
from driftline.connectors.producer import PredictionLogger  # noqa: E402
from driftline.settings import Settings  # noqa: E402
from driftline.simulation import SimulatedService, Traffic  # noqa: E402
from driftline.streams.join import LabelJoiner  # noqa: E402
from driftline.streams.normalize import Normalizer, RawRecord  # noqa: E402
from driftline.streams.pseudonymize import generate_key  # noqa: E402

SCENARIOS = ("indexing", "processing", "latency", "two-workers")


# --- the limits --------------------------------------------------------------------------------

def bare_kafka(settings: Settings, values: list[bytes]) -> tuple[str, float, float]:
    """Produce then batch-consume ``values``; returns (the topic, produce msgs/s, consume msgs/s)."""
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
    first: list = []
    deadline = time.perf_counter() + 60
    while not first and time.perf_counter() < deadline:  # connecting and the first fetch are not reading
        first = [m for m in consumer.consume(1, 0.5) if m.error() is None]
    got = len(first)
    start = time.perf_counter()
    while got < len(values) and time.perf_counter() < deadline:
        # never ask for more than is left: consume() would wait out its timeout for messages that do not exist
        got += sum(1 for m in consumer.consume(min(10_000, len(values) - got), 0.5) if m.error() is None)
    consume_rate = (got - len(first)) / (time.perf_counter() - start)
    consumer.close()
    return topic, produce_rate, consume_rate


def indexed_documents(settings: Settings, traffic: Traffic) -> list[tuple[str, dict]]:
    """The (stream, document) pairs the pipeline indexes for ``traffic``: predictions and joined outcomes."""
    normalizer = Normalizer.from_settings(settings, settings.pseudonymization_key.get_secret_value())
    now_ms = int(time.time() * 1000)

    def normalized(codec_name: str, events: list[dict], topic: str) -> list:
        values = make_codec(codec_name).encode_many(events)
        return [normalizer.normalize(RawRecord(v, None, topic, 0, i), now_ms) for i, v in enumerate(values)]

    predictions = normalized("prediction_event", traffic.predictions, settings.predictions_topic)
    feedback = normalized("feedback_event", traffic.feedback, settings.feedback_topic)
    joiner = LabelJoiner({}, window_ms=int(settings.label_window_s * 1000))
    result = joiner.join_batch([{**e.document, "timestamp_ms": e.timestamp_ms} for e in predictions],
                               [{**e.document, "timestamp_ms": e.timestamp_ms} for e in feedback])
    outcomes = [{k: v for k, v in o.document.items() if k != "timestamp_ms"} for o in result.outcomes]
    return [("predictions", e.document) for e in predictions] + [("outcomes", o) for o in outcomes]


def bare_elasticsearch(settings: Settings, documents: list[tuple[str, dict]]) -> float:
    """``helpers.bulk`` of the documents into fresh indices (docs/s)."""
    es = Elasticsearch(**settings.es_client_options(), request_timeout=120)
    tag = f"bench-bare-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    helpers.bulk(es, ({"_index": f"{tag}-{stream}", "_id": d["request"]["id"], "_source": d} for stream, d in documents),
                 chunk_size=1000)
    rate = len(documents) / (time.perf_counter() - start)
    es.indices.delete(index=f"{tag}-predictions,{tag}-outcomes")
    es.close()
    return rate


# --- CPU by process ------------------------------------------------------------------------------

def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) every process on this machine has used so far, with its name (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)  # utime, stime
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy (not idle, not waiting for I/O) since boot (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


#: The row of :class:`CpuMeter`'s table for the machine's busy time that no process accounts for.
UNATTRIBUTED = "(not in any process)"


class CpuMeter:
    """CPU seconds per process between :meth:`start` and :meth:`stop`, grouped by process name; the workers
    themselves (event loop, Kafka clients' and Elasticsearch client's threads) as ``worker``; and the
    machine's busy time that no running process accounts for (a process that exited meanwhile, or work no
    process is charged for)."""

    def __init__(self, workers: list["Worker"]) -> None:
        self.workers = workers
        self.before: dict[int, tuple[str, float]] | None = None
        self.busy_before = 0.0
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = cpu_by_process()
        self.busy_before = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        after, before = cpu_by_process(), self.before or {}
        busy = machine_busy_seconds() - self.busy_before
        workers = {w.process.pid for w in self.workers}
        used: dict[str, float] = {}
        for pid, (name, seconds) in after.items():
            label = "worker" if pid in workers else "benchmark" if pid == os.getpid() else name
            used[label] = used.get(label, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
        used[UNATTRIBUTED] = max(0.0, busy - sum(used.values()))
        self.used = {k: v for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.05}
        return self.used


# --- the worker ----------------------------------------------------------------------------------

class Worker:
    """``driftline worker`` as a subprocess with its log in a file; its periodic reports parsed."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self._read_to = 0
        self._reports: list[tuple[dict, dict, dict]] = []
        with log_path.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "driftline.cli", "worker", "--loglevel", "info"],
                                            env=os.environ | settings.to_env(), stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def check(self) -> None:
        if self.process.poll() is not None:  # a dead worker indexes nothing more: stop, do not wait out the limit
            lines = self.log_path.read_text(errors="replace").splitlines()
            start = next((i for i, line in enumerate(lines) if "Traceback" in line or "Crashed" in line), len(lines) - 20)
            raise SystemExit(f"the worker stopped (exit {self.process.returncode}):\n" + "\n".join(lines[start:start + 60]))

    def reports(self) -> list[tuple[dict, dict, dict]]:
        """Every periodic report so far: (counts, seconds per phase, latency ms).

        Reads only what the log gained since the last call: the runs poll often, and a long run's log is long.
        """
        with self.log_path.open("rb") as log:
            log.seek(self._read_to)
            chunk = log.read()
        whole = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        self._read_to += len(whole)
        for line in whole.decode(errors="replace").splitlines():
            if "driftline counts: " in line:
                body = line.split("driftline counts: ", 1)[1]
                counts, rest = body.split("; seconds: ", 1)
                seconds, latency = rest.split("; latency ms: ", 1)
                self._reports.append((ast.literal_eval(counts), ast.literal_eval(seconds),
                                      ast.literal_eval(latency.strip())))
        return self._reports

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


class Index:
    """Counts of the pipeline's indices."""

    def __init__(self, settings: Settings) -> None:
        self.es = Elasticsearch(**settings.es_client_options())
        self.prefix = settings.es_index_prefix

    def count(self, stream: str, attempts: int = 3) -> int | None:
        """Documents in the stream's indices (0 while there are none); None if the server did not answer
        (a local server full of documents can time out: the count is then unknown, not zero)."""
        index = f"{self.prefix}-{stream}-*"
        es = self.es.options(request_timeout=120)
        for attempt in range(attempts):
            try:
                es.indices.refresh(index=index, allow_no_indices=True)
                return int(es.count(index=index, allow_no_indices=True)["count"])
            except Exception as exc:  # noqa: BLE001 - reported, then retried
                print(f"  counting {stream}: {type(exc).__name__}: {exc} (attempt {attempt + 1} of {attempts})",
                      flush=True)
                if attempt + 1 < attempts:
                    time.sleep(5)
        return None

    def drop(self) -> None:
        """Delete the run's indices: the local server slows down as it holds more documents."""
        names = list(self.es.indices.get(index=f"{self.prefix}-*"))
        for name in names:
            self.es.indices.delete(index=name)

    def close(self) -> None:
        self.es.close()


def log_traffic(settings: Settings, traffic: Traffic) -> None:
    with PredictionLogger(settings, max_buffer=3 * len(traffic.predictions)) as log:
        for prediction, feedback in zip(traffic.predictions, traffic.feedback):
            log.log_prediction(prediction)
            log.log_feedback(feedback)
        log.flush(300)


#: the workers' report interval, and how often the processing run polls the reports
REPORT_S = 0.25


def wait_indexed(workers: list[Worker], documents: int, limit_s: float = 1800) -> tuple[float, float]:
    """Poll the workers' reports (every half second) until they indexed ``documents`` input documents (predictions
    and outcomes, as Elasticsearch acknowledged them); returns (seconds to the first document, seconds busy).

    The reports, not Elasticsearch, are polled: a refresh per poll slows the local server down as it fills.
    """
    started = time.perf_counter()
    first = None
    while time.perf_counter() - started < limit_s:
        for worker in workers:
            worker.check()
        indexed = sum((w.reports() or [({}, {}, {})])[-1][0].get("indexed", 0) for w in workers)
        if first is None and indexed:
            first = time.perf_counter()
        print(f"  {time.perf_counter() - started:6.1f} s: indexed {indexed:,} of {documents:,}", flush=True)
        if indexed >= documents:
            finished = time.perf_counter()
            return (first or finished) - started, finished - (first or started)
        time.sleep(0.5)
    raise SystemExit(f"not everything was indexed within {limit_s:.0f} s")


def wait_processed(worker: Worker, records: int, limit_s: float = 1800,
                   meter: CpuMeter | None = None) -> tuple[float, float]:
    """Poll the worker's reports until it ingested ``records`` and its detect stage took every observation
    batch ingest sent; returns (seconds to the first ingested record, seconds busy). ``meter`` runs while busy."""
    started = time.perf_counter()
    first = None
    busy, at = machine_busy_seconds(), started
    while time.perf_counter() - started < limit_s:
        worker.check()
        reports = worker.reports()
        counts = reports[-1][0] if reports else {}
        ingested = counts.get("ingested", 0)
        if first is None and ingested:
            first = time.perf_counter()
            if meter is not None:
                meter.start()
        now, busy_now = time.perf_counter(), machine_busy_seconds()
        cores, busy, at = (busy_now - busy) / max(now - at, 1e-3), busy_now, now
        print(f"  {now - started:6.1f} s: ingested {ingested:,}, observation batches "
              f"{counts.get('observation_batches', 0):,} of {counts.get('observation_batches_sent', 0):,}; "
              f"machine busy {cores:.1f} cores", flush=True)
        if ingested >= records and counts.get("observation_batches", 0) >= counts.get("observation_batches_sent", 1):
            finished = time.perf_counter()
            if meter is not None:
                meter.stop()
            return (first or finished) - started, finished - (first or started)
        time.sleep(REPORT_S)
    raise SystemExit(f"not everything was processed within {limit_s:.0f} s")


def backlog_run(settings: Settings, traffic: Traffic, folder: Path, name: str, workers: int = 1,
                processed: int | None = None) -> dict:
    """Log the traffic, start the worker(s), time them until every prediction and outcome is indexed
    (or, with ``processed``, until one worker ingested that many requests and detected on them)."""
    n = len(traffic.predictions)
    ensure_topics(settings, driftline_topics(settings))
    log_traffic(settings, traffic)
    procs = [Worker(settings, folder / f"{name}-{i}.log") for i in range(workers)]
    index = Index(settings)
    meter = CpuMeter(procs)
    try:
        if processed is None:
            startup, busy = wait_indexed(procs, 2 * n)
        else:
            startup, busy = wait_processed(procs[0], 2 * processed, meter=meter)
        counts = {stream: index.count(stream) for stream in ("predictions", "outcomes")}
        time.sleep(2 * settings.report_interval_s + 0.5)  # one more periodic report with the final counts
        reports = [w.reports()[-1] if w.reports() else ({}, {}, {}) for w in procs]
    finally:
        for w in procs:
            w.stop()
        index.drop()
        index.close()
    return {"startup_s": startup, "busy_s": busy, "events_per_s": 2 * n / busy, "counts": counts, "reports": reports,
            "cpu": meter.used}


def latency_run(settings: Settings, service: SimulatedService, rate: float, seconds: float, folder: Path) -> dict:
    """A worker fed live at ``rate`` requests/s (a prediction and its feedback each) for ``seconds``."""
    ensure_topics(settings, driftline_topics(settings))
    worker = Worker(settings, folder / "latency.log")
    index = Index(settings)
    traffic = service.traffic()
    try:
        # warm up: the worker joins its groups and installs its templates before the clock starts
        warm = 20
        log_traffic(settings, Traffic(traffic.predictions[:warm], traffic.feedback[:warm]))
        wait_indexed([worker], 2 * warm, limit_s=120)
        total = min(len(traffic.predictions) - warm, int(rate * seconds))
        print(f"  feeding {total:,} requests at {rate:,.0f} requests/s ({2 * rate:,.0f} events/s) ...", flush=True)
        with PredictionLogger(settings, max_buffer=4 * total) as log:
            start = time.perf_counter()
            for k in range(total):
                i = warm + k
                due = start + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                log.log_prediction(traffic.predictions[i])
                log.log_feedback(traffic.feedback[i])
                if k and k % int(rate * 5) == 0:
                    worker.check()
                    print(f"  {time.perf_counter() - start:5.1f} s: {k:,} requests sent", flush=True)
            fed_s = time.perf_counter() - start
            log.flush(120)
        wait_indexed([worker], 2 * (warm + total), limit_s=600)
        time.sleep(2 * settings.report_interval_s + 0.5)  # a report after the last document
        reports = [worker.reports()[-1]]
        latency = reports[0][2]
        counts = {stream: index.count(stream) for stream in ("predictions", "outcomes")}
    finally:
        worker.stop()
        index.drop()
        index.close()
    return {"requests": total, "achieved_rate": total / fed_s, "latency": latency, "counts": counts,
            "reports": reports}


def _stop_on_signals() -> None:
    """SIGTERM/SIGINT exit through the ExitStack, so the embedded servers are stopped, not left running."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests (prediction + feedback) per backlog run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--windows", choices=("on", "off"), default="on", help="windowed metrics and comparisons")
    parser.add_argument("--intake", choices=("process", "thread"), default="process",
                        help="where the worker's intake (batch consumer and normalizer) runs: DRIFTLINE_INTAKE_PROCESS")
    parser.add_argument("--detect", choices=("process", "loop"), default="process",
                        help="where the detectors' banks are fed and checkpointed: DRIFTLINE_DETECT_PROCESS")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="how long the live feed of the latency run lasts")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="events/s of the live feed (default: half of what the indexing run sustained)")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    _stop_on_signals()
    results: dict[str, dict] = {}

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
                detect_idle_s=5.0, windows_enabled=args.windows == "on", report_interval_s=REPORT_S,
                intake_process=args.intake == "process", detect_process=args.detect == "process", **overrides,
            )

        settings = bench_settings()
        service = SimulatedService(n=args.requests, malformed_count=0)
        traffic = service.traffic()
        values = make_codec("prediction_event").encode_many(traffic.predictions)
        documents = indexed_documents(settings, traffic)
        print(f"{args.requests:,} requests: {sum(map(len, values)) / len(values):.0f} B of Avro per prediction; "
              f"{len(documents):,} documents to index", flush=True)

        print("[1] bare Kafka produce + consume ...", flush=True)
        bare_topic, produce_rate, consume_rate = bare_kafka(settings, values)
        print("[2] an empty Faust agent on the same topic ...", flush=True)
        agent_rate = empty_agent_rate(bootstrap, bare_topic, settings.topic_partitions, len(values))
        bulk_rate = None  # the reference of (b), and of (c)'s rate unless given: measured only for them
        if "indexing" in scenarios or ("latency" in scenarios and not args.latency_rate):
            print("[3] bare Elasticsearch helpers.bulk of the same documents ...", flush=True)
            bulk_rate = bare_elasticsearch(settings, documents)

        for step, scenario in enumerate(scenarios, start=4):
            print(f"[{step}] {scenario} ...", flush=True)
            if scenario == "indexing":
                results[scenario] = backlog_run(bench_settings(), traffic, folder, scenario)
            elif scenario == "processing":
                n = args.requests
                results[scenario] = backlog_run(bench_settings(prediction_sample_rate=0.0, outcome_sample_rate=0.0),
                                                traffic, folder, scenario, processed=n)
            elif scenario == "two-workers":
                results[scenario] = backlog_run(bench_settings(), traffic, folder, scenario, workers=2)
            else:
                sustained = results.get("indexing", {}).get("events_per_s") or bulk_rate
                rate = (args.latency_rate or sustained / 2) / 2  # half the sustained events/s; two events per request
                live = SimulatedService(n=int(rate * args.latency_seconds) + 100, seed=43, malformed_count=0)
                results[scenario] = latency_run(bench_settings(), live, rate, args.latency_seconds, folder)

    n = args.requests
    print("\n| figure | value |")
    print("| --- | --- |")
    print(f"| bare Kafka produce | {produce_rate:,.0f} msgs/s |")
    print(f"| bare Kafka batch consume | {consume_rate:,.0f} msgs/s |")
    print(f"| empty Faust agent, same topic | {agent_rate:,.0f} events/s |")
    if bulk_rate is not None:
        print(f"| bare Elasticsearch helpers.bulk (predictions + outcomes) | {bulk_rate:,.0f} docs/s |")
    if "indexing" in results:
        r = results["indexing"]
        print(f"| worker start-up (group joins, templates) until the first document | {r['startup_s']:.1f} s |")
        print(f"| (b) every prediction indexed: input events/s = documents/s | {r['events_per_s']:,.0f} "
              f"= {r['events_per_s'] / bulk_rate:.0%} of bare bulk (target: at least 80%) |")
    if "processing" in results:
        r = results["processing"]
        print(f"| (a) raw predictions not indexed: predictions/s with their feedback | {r['events_per_s'] / 2:,.0f} "
              f"({r['events_per_s']:,.0f} events/s; {r['events_per_s'] / agent_rate:.1f}x the empty Faust agent; "
              f"target: at least 5,000 predictions/s) |")
        print("\n(a): CPU by process while the worker was busy (two cores: at most "
              f"{2 * r['busy_s']:.1f} s in {r['busy_s']:.1f} s)\n")
        print("| process | CPU s | µs per request | cores |")
        print("| --- | --- | --- | --- |")
        for label, seconds in r["cpu"].items():
            print(f"| {label} | {seconds:.1f} | {seconds / n * 1e6:,.0f} | {seconds / r['busy_s']:.2f} |")
        total = sum(r["cpu"].values())
        print(f"| **all** | {total:.1f} | {total / n * 1e6:,.0f} | {total / r['busy_s']:.2f} |")
    if "latency" in results:
        r = results["latency"]
        lat = r["latency"]
        share = "" if args.latency_rate else " (half of (b))"
        print(f"| (c) event-to-indexed latency at {2 * r['achieved_rate']:,.0f} events/s{share} | "
              f"p50 {lat.get('p50', float('nan')):,.0f} ms, p99 {lat.get('p99', float('nan')):,.0f} ms "
              f"(target: p99 under 2,000 ms) |")
    if "two-workers" in results:
        r = results["two-workers"]
        joined = sum(report[0].get("joined", 0) for report in r["reports"])
        counts = r["counts"]
        verdict = ("count failed" if None in counts.values()
                   else "exact" if counts == {"predictions": n, "outcomes": n} else "NOT EXACT")
        shown = {k: "?" if v is None else f"{v:,}" for k, v in counts.items()}
        print(f"| two workers, one group, {settings.topic_partitions} partitions | {r['events_per_s']:,.0f} events/s; "
              f"indexed {shown['predictions']} predictions and {shown['outcomes']} outcomes of {n:,} "
              f"({verdict}); joins reported by the workers: {joined:,} |")
    for name, r in results.items():
        for i, (counts, seconds, latency) in enumerate(r.get("reports", [])):
            print(f"\n{name}, worker {i}: counts {counts}\n  seconds {seconds}\n  latency ms {latency}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
