"""``driftline demo``: the embedded servers plus a round trip of real events.

Starts the local Kafka broker and Elasticsearch-API server if they are not
running (only when the settings point at the local defaults), creates the
topics, logs predictions and delayed feedback through the producer API, reads
every event back from Kafka and decodes it, and prints what a user can do next.
"""

from __future__ import annotations

import random
import time
import uuid

import typer
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftline.connectors.codec import DecodeError, make_codec, registry_client
from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
from driftline.connectors.producer import PredictionLogger
from driftline.settings import LOCAL_ES_PORT, LOCAL_KAFKA_PORT, Settings, SettingsError

console = Console()


def _uses_local_defaults(settings: Settings) -> bool:
    return settings.kafka_bootstrap == f"127.0.0.1:{LOCAL_KAFKA_PORT}" and settings.es_url == f"http://127.0.0.1:{LOCAL_ES_PORT}"


def _start_local_servers(settings: Settings) -> None:
    from driftline.connectors.infra import InfrastructureError, LocalInfrastructure

    infra = LocalInfrastructure(settings.infra_dir)
    try:
        with console.status("starting the embedded Kafka broker and Elasticsearch-API server ..."):
            results = infra.up(progress=lambda msg: console.log(msg))
    except InfrastructureError as exc:
        console.print(f"[red]could not start the local servers:[/] {exc}")
        raise typer.Exit(1) from None
    for result in results:
        verb = "started" if result.started else "already running"
        console.print(f"  {result.status.name}: {verb} at {result.status.url}")


def simulated_events(n: int, seed: int = 42) -> tuple[list[dict], list[dict]]:
    """``n`` predictions of a small fraud model and feedback for ~80% of them, delayed 1–60 min."""
    rng = random.Random(seed)
    start_ms = int(time.time() * 1000) - n * 1000
    predictions, feedback = [], []
    for i in range(n):
        request_id = str(uuid.UUID(int=rng.getrandbits(128)))
        amount = rng.lognormvariate(3.5, 1.0)
        score = min(1.0, amount / 400.0 + rng.random() * 0.2)
        ts = start_ms + i * 1000
        predictions.append(
            {
                "request_id": request_id,
                "timestamp": ts,
                "model_name": "fraud-detector",
                "model_version": "v1",
                "latency_ms": rng.lognormvariate(1.5, 0.3),
                "prediction": [{"label": "fraud" if score > 0.5 else "legit", "score": score}],
                "features": {"amount": amount, "country": rng.choice(["DE", "FR", "US"]), "new_device": rng.random() < 0.1},
                "slices": {"region": rng.choice(["eu", "us"])},
            }
        )
        if rng.random() < 0.8:
            label = "fraud" if amount > 200 and rng.random() < 0.7 else "legit"
            feedback.append(
                {"request_id": request_id, "timestamp": ts + rng.randint(60_000, 3_600_000), "labels": [label],
                 "label_source": "PROCESS_FEEDBACK"}
            )
    return predictions, feedback


def _read_back(settings: Settings, topic: str, partitions: int, expected: int, codec, progress: Progress) -> tuple[int, int]:
    """Consume ``topic`` from the beginning by assignment; returns (decoded, undecodable)."""
    consumer = Consumer(settings.kafka_consumer_config(f"driftline-demo-{uuid.uuid4().hex[:6]}") | {"enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    task = progress.add_task(f"reading {topic}", total=expected)
    ok = bad = 0
    deadline = time.monotonic() + 60
    idle_since = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - idle_since < 3:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            if batch:
                idle_since = time.monotonic()
            for msg in batch:
                if msg.error() is not None:
                    continue
                try:
                    codec.decode(msg.value())
                    ok += 1
                except DecodeError:
                    bad += 1
            progress.update(task, completed=ok + bad)
    finally:
        consumer.close()
    return ok, bad


def demo(
    events: int = typer.Option(2_000, "--events", "-n", min=1, help="predictions to log"),
    kafka_bootstrap: str = typer.Option(None, envvar="DRIFTLINE_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers"),
    es_url: str = typer.Option(None, envvar="DRIFTLINE_ES_URL", help="Elasticsearch URL"),
) -> None:
    """Run driftline on the embedded defaults: start local servers, log events, read them back."""
    try:
        settings = Settings.load(kafka_bootstrap=kafka_bootstrap, es_url=es_url, kafka_session_timeout_ms=6000)
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None

    if _uses_local_defaults(settings):
        _start_local_servers(settings)
    else:
        console.print(f"using Kafka at {settings.kafka_bootstrap} and Elasticsearch at {settings.es_url}")

    topics = driftline_topics(settings)
    created = ensure_topics(settings, topics)
    console.print(f"topics: {', '.join(topics)}" + (f" (created {len(created)})" if created else ""))

    registry_conf = settings.schema_registry_config()
    registry = registry_client(registry_conf) if registry_conf else None
    predictions, feedback = simulated_events(events)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("logging predictions and feedback", total=len(predictions) + len(feedback))
        call_ns = []
        with PredictionLogger(settings, registry=registry) as log:
            for i, event in enumerate(predictions):
                start = time.perf_counter_ns()
                log.log_prediction(event)
                call_ns.append(time.perf_counter_ns() - start)
                if i % 200 == 0:
                    progress.update(task, completed=i)
            for event in feedback:
                log.log_feedback(event)
            progress.update(task, description="delivering to Kafka")
            pending = log.flush(60)
            progress.update(task, completed=len(predictions) + len(feedback) - pending)
        stats = log.stats
        partitions = topics[settings.predictions_topic]
        prediction_codec = make_codec("prediction_event", registry=registry, topic=settings.predictions_topic)
        feedback_codec = make_codec("feedback_event", registry=registry, topic=settings.feedback_topic)
        read_predictions = _read_back(settings, settings.predictions_topic, partitions, len(predictions), prediction_codec, progress)
        read_feedback = _read_back(settings, settings.feedback_topic, partitions, len(feedback), feedback_codec, progress)

    call_ns.sort()
    table = Table(title="driftline demo: producer round trip")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("predictions + feedback logged", f"{len(predictions):,} + {len(feedback):,}")
    table.add_row("events delivered to Kafka", f"{stats.delivered:,}")
    table.add_row("events lost", f"{stats.lost:,}")
    table.add_row("log call p50 / p99", f"{call_ns[len(call_ns) // 2] / 1000:.1f} µs / {call_ns[int(len(call_ns) * 0.99)] / 1000:.1f} µs")
    table.add_row("predictions read back (topic total, decoded / undecodable)", f"{read_predictions[0]:,} / {read_predictions[1]:,}")
    table.add_row("feedback read back (topic total, decoded / undecodable)", f"{read_feedback[0]:,} / {read_feedback[1]:,}")
    console.print(table)
    if stats.lost:
        console.print(f"[red]{stats.lost} events were lost: {stats.last_error}[/]")
        raise typer.Exit(1)
    console.print(
        "next: `driftline infra status` shows the servers, `driftline infra down` stops them; "
        f"export DRIFTLINE_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} DRIFTLINE_ES_URL={settings.es_url} to point other tools at them."
    )
