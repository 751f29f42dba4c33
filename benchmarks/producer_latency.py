"""What logging a prediction costs a model service, against the bare encode + produce floor.

One run, one broker (the embedded Tansu broker, started here, or the one named
by ``DRIFTLINE_KAFKA_BOOTSTRAP``), the same ~450-byte prediction events with
20 features:

1. encoder options: fastavro ``schemaless_writer`` with a new buffer per event,
   with one reused buffer (what driftline's codec does), the lower-level
   ``write_data`` and the container-file ``writer`` (batch; not framable per
   message, shown as the library's best case);
2. the floor: a bare loop of ``schemaless_writer`` + ``Producer.produce()``:
   latency per call (``perf_counter_ns``), events/s including the final flush,
   process CPU per event;
3. driftline's ``PredictionLogger`` in a tight loop: the same figures, where
   latency is what the caller's thread pays per ``log_prediction`` call;
4. a paced "service": requests at a fixed rate with ~100 µs of work each, the
   logger's call latency while its background thread competes for the GIL.

Run:
    python benchmarks/producer_latency.py            # 100,000 events per phase
    python benchmarks/producer_latency.py --events 300000 --rate 5000
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import fastavro
import fastavro._write as fastavro_write
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.connectors.codec import load_schema, make_codec
from driftline.connectors.producer import PRODUCER_DEFAULTS, PredictionLogger
from driftline.settings import Settings

PARTITIONS = 4


def make_events(n: int, seed: int = 7) -> list[dict]:
    """Prediction events with 20 features (16 numeric, 2 categorical, 2 boolean)."""
    rng = random.Random(seed)
    base_ms = 1_763_850_000_000
    return [
        {
            "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": base_ms + i,
            "model_name": "fraud-detector",
            "model_version": "2026.11.1",
            "latency_ms": rng.lognormvariate(1.2, 0.4),
            "prediction": [{"label": "fraud" if rng.random() < 0.05 else "legit", "score": rng.random()}],
            "scores": {"fraud": 0.12, "legit": 0.88},
            "numeric_features": {f"feature_{j:02d}": rng.gauss(0, 1) for j in range(16)},
            "categorical_features": {"country": rng.choice(["DE", "FR", "US", "BR"]), "channel": "mobile"},
            "boolean_features": {"returning_customer": rng.random() < 0.5, "promo": False},
            "slices": {"region": "eu-west", "tier": "gold"},
            "trace": {"trace_id": f"{rng.getrandbits(128):032x}", "span_id": f"{rng.getrandbits(64):016x}"},
            "subject_id": f"subject-{rng.randrange(100_000)}",
        }
        for i in range(n)
    ]


def pct(samples: list[int], q: float) -> float:
    """The q-quantile of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def encoder_options(events: list[dict]) -> dict[str, float]:
    """µs per event of fastavro's ways to produce one Avro body per event."""
    schema = load_schema("prediction_event")
    results = {}

    def timed(name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        results[name] = (time.perf_counter() - start) / len(events) * 1e6
        print(f"  {name:<44} {results[name]:7.2f} µs/event", flush=True)

    def new_buffer() -> None:
        for e in events:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, e)
            buf.getvalue()

    def reused_buffer() -> None:
        buf = io.BytesIO()
        for e in events:
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, schema, e)
            buf.getvalue()

    def write_data() -> None:
        write = fastavro_write.write_data
        for e in events:
            out = bytearray()
            write(out, e, schema, {}, "", {})
            bytes(out)

    codec = make_codec("prediction_event")
    timed("schemaless_writer, new BytesIO per event", new_buffer)
    timed("schemaless_writer, one reused BytesIO", reused_buffer)
    timed("write_data into a bytearray (internal API)", write_data)
    timed("driftline codec.encode_many (framed)", lambda: codec.encode_many(events))
    timed("fastavro.writer container file (batch)", lambda: fastavro.writer(io.BytesIO(), schema, events, codec="null"))
    return results


def create_topic(settings: Settings, name: str) -> str:
    admin = AdminClient(settings.kafka_client_config())
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        future.result(30)
    return name


def bare_floor(settings: Settings, events: list[dict]) -> dict[str, float]:
    """A bare ``schemaless_writer`` + ``Producer.produce()`` loop: the floor to compare against."""
    topic = create_topic(settings, f"bench.bare.{uuid.uuid4().hex[:6]}")
    schema = load_schema("prediction_event")
    producer = Producer(settings.kafka_client_config() | PRODUCER_DEFAULTS)
    buf = io.BytesIO()
    call_ns: list[int] = []
    produce_ns: list[int] = []
    clock = time.perf_counter_ns
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, event in enumerate(events):
        t0 = clock()
        buf.seek(0)
        buf.truncate()
        fastavro.schemaless_writer(buf, schema, event)
        value = buf.getvalue()
        t1 = clock()
        producer.produce(topic, value, event["request_id"].encode())
        t2 = clock()
        call_ns.append(t2 - t0)
        produce_ns.append(t2 - t1)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    assert left == 0, f"{left} bare messages undelivered"
    return {
        "p50_us": pct(call_ns, 0.50),
        "p99_us": pct(call_ns, 0.99),
        "p999_us": pct(call_ns, 0.999),
        "produce_p50_us": pct(produce_ns, 0.50),
        "produce_p99_us": pct(produce_ns, 0.99),
        "events_per_s": len(events) / wall,
        "cpu_us_per_event": cpu / len(events) * 1e6,
    }


def logger_tight(settings: Settings, events: list[dict]) -> dict[str, float]:
    """``PredictionLogger.log_prediction`` as fast as the caller can call it."""
    topic = create_topic(settings, f"bench.logger.{uuid.uuid4().hex[:6]}")
    log = PredictionLogger(settings.model_copy(update={"predictions_topic": topic}), max_buffer=len(events) + 1)
    call_ns: list[int] = []
    clock = time.perf_counter_ns
    record = log.log_prediction
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for event in events:
        t0 = clock()
        record(event)
        call_ns.append(clock() - t0)
    calls_s = time.perf_counter() - wall0
    pending = log.flush(120)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stats = log.close()
    assert pending == 0 and stats.delivered == len(events), stats
    return {
        "p50_us": pct(call_ns, 0.50),
        "p99_us": pct(call_ns, 0.99),
        "p999_us": pct(call_ns, 0.999),
        "max_us": max(call_ns) / 1000,
        "events_per_s": len(events) / wall,
        "caller_loop_s": calls_s,
        "cpu_us_per_event": cpu / len(events) * 1e6,
    }


def busy_work(us: float) -> None:
    """About ``us`` microseconds of pure-Python work (a stand-in for request handling)."""
    end = time.perf_counter_ns() + int(us * 1000)
    x = 0
    while time.perf_counter_ns() < end:
        x += 1


def logger_paced(settings: Settings, events: list[dict], rate: float, work_us: float) -> dict[str, float]:
    """A service handling ``rate`` requests/s, each ~``work_us`` of work plus one log call."""
    topic = create_topic(settings, f"bench.paced.{uuid.uuid4().hex[:6]}")
    log = PredictionLogger(settings.model_copy(update={"predictions_topic": topic}))
    call_ns: list[int] = []
    request_ns: list[int] = []
    clock = time.perf_counter_ns
    interval = int(1e9 / rate)
    next_at = clock()
    for event in events:
        while clock() < next_at:
            pass
        next_at += interval
        r0 = clock()
        busy_work(work_us)
        t0 = clock()
        log.log_prediction(event)
        t1 = clock()
        call_ns.append(t1 - t0)
        request_ns.append(t1 - r0)
    stats = log.close(60)
    assert stats.delivered == len(events), stats
    return {
        "p50_us": pct(call_ns, 0.50),
        "p99_us": pct(call_ns, 0.99),
        "p999_us": pct(call_ns, 0.999),
        "request_p50_us": pct(request_ns, 0.50),
        "request_p99_us": pct(request_ns, 0.99),
    }


def paced_without_logging(events: int, rate: float, work_us: float) -> dict[str, float]:
    """The same paced requests with no logging at all: the baseline for request latency."""
    request_ns: list[int] = []
    clock = time.perf_counter_ns
    interval = int(1e9 / rate)
    next_at = clock()
    for _ in range(events):
        while clock() < next_at:
            pass
        next_at += interval
        r0 = clock()
        busy_work(work_us)
        request_ns.append(clock() - r0)
    return {"request_p50_us": pct(request_ns, 0.50), "request_p99_us": pct(request_ns, 0.99)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per phase")
    parser.add_argument("--rate", type=float, default=5_000, help="requests/s of the paced service")
    parser.add_argument("--paced-events", type=int, default=20_000, help="requests of the paced phase")
    parser.add_argument("--work-us", type=float, default=100.0, help="work per paced request, µs")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        bootstrap = os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP")
        if bootstrap:
            print(f"broker: {bootstrap} (from DRIFTLINE_KAFKA_BOOTSTRAP)")
        else:
            from driftline.connectors.infra import free_ports, running_infrastructure

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftline-bench-")))
            port, es_port = free_ports(2)
            print(f"broker: starting the embedded servers (Tansu Kafka on 127.0.0.1:{port}) ...", flush=True)
            infra = stack.enter_context(running_infrastructure(folder, kafka_port=port, es_port=es_port))
            bootstrap = infra.kafka_bootstrap
        settings = Settings(kafka_bootstrap=bootstrap)

        print(f"making {args.events:,} prediction events ...", flush=True)
        events = make_events(args.events)
        size = statistics.mean(len(b) for b in make_codec("prediction_event").encode_many(events[:1000]))
        print(f"event: {size:.0f} bytes of Avro, 20 features, python {sys.version.split()[0]}, fastavro {fastavro.__version__}")

        print("\n[1/4] encoder options (no broker)")
        encoder_options(events)

        print("\n[2/4] floor: bare schemaless_writer + Producer.produce() loop ...", flush=True)
        bare = bare_floor(settings, events)
        print("[3/4] PredictionLogger.log_prediction, tight loop ...", flush=True)
        tight = logger_tight(settings, events)
        print(f"[4/4] paced service: {args.rate:,.0f} requests/s, ~{args.work_us:.0f} µs of work each ...", flush=True)
        baseline = paced_without_logging(args.paced_events, args.rate, args.work_us)
        paced = logger_paced(settings, events[: args.paced_events], args.rate, args.work_us)

    print("\n| figure | bare encode+produce | PredictionLogger | ratio / target |")
    print("| --- | --- | --- | --- |")
    print(f"| caller latency p50 | {bare['p50_us']:.1f} µs | {tight['p50_us']:.2f} µs | target < 20 µs |")
    print(f"| caller latency p99 | {bare['p99_us']:.1f} µs | {tight['p99_us']:.2f} µs | target < 100 µs |")
    print(f"| caller latency p99.9 | {bare['p999_us']:.1f} µs | {tight['p999_us']:.2f} µs | |")
    print(f"| sustained events/s (one process, to delivery) | {bare['events_per_s']:,.0f} | {tight['events_per_s']:,.0f} "
          f"| {tight['events_per_s'] / bare['events_per_s']:.0%} of the floor (target ≥ 80%) |")
    print(f"| process CPU per event | {bare['cpu_us_per_event']:.1f} µs | {tight['cpu_us_per_event']:.1f} µs | "
          f"{tight['cpu_us_per_event'] / bare['cpu_us_per_event']:.2f}x |")
    print(f"\nbare Producer.produce() alone: p50 {bare['produce_p50_us']:.1f} µs, p99 {bare['produce_p99_us']:.1f} µs")
    print(f"logger tight loop: {args.events:,} calls took {tight['caller_loop_s']:.2f} s on the caller's thread; worst call {tight['max_us']:.0f} µs")
    print(f"paced service, log call: p50 {paced['p50_us']:.2f} µs, p99 {paced['p99_us']:.2f} µs, p99.9 {paced['p999_us']:.1f} µs")
    print(f"paced service, whole request: p50 {paced['request_p50_us']:.1f} µs, p99 {paced['request_p99_us']:.1f} µs "
          f"(without logging: p50 {baseline['request_p50_us']:.1f} µs, p99 {baseline['request_p99_us']:.1f} µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
