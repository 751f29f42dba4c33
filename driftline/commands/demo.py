"""``driftline demo``: the whole pipeline on the embedded defaults, with drifts at known points.

1. starts the local Kafka broker and Elasticsearch-API server if they are not
   running (only when the settings point at the local defaults);
2. starts ``driftline worker`` on this run's own topics and indices;
3. runs a simulated model service (:mod:`driftline.simulation`) that logs
   predictions and delayed feedback through the producer API — a gradual
   feature drift and an abrupt concept drift at known points — plus a few
   malformed messages;
4. shows progress as documents land in Elasticsearch and prints each alert as
   it arrives;
5. ends with a summary and the Elasticsearch queries to run next.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftline.settings import LOCAL_ES_PORT, LOCAL_KAFKA_PORT, Settings, SettingsError
from driftline.simulation import SimulatedService, Traffic

console = Console()


def _uses_local_defaults(settings: Settings) -> bool:
    return settings.kafka_bootstrap == f"127.0.0.1:{LOCAL_KAFKA_PORT}" and settings.es_url == f"http://127.0.0.1:{LOCAL_ES_PORT}"


def _start_local_servers(settings: Settings) -> None:
    from driftline.connectors.infra import InfrastructureError, LocalInfrastructure

    infra = LocalInfrastructure(settings.infra_dir)
    try:
        with console.status("starting the embedded Kafka broker and Elasticsearch-API server ..."):
            results = infra.up()
    except InfrastructureError as exc:
        console.print(f"[red]could not start the local servers:[/] {exc}")
        raise typer.Exit(1) from None
    for result in results:
        verb = "started" if result.started else "already running"
        console.print(f"  {result.status.name}: {verb} at {result.status.url}")


def _run_settings(settings: Settings) -> Settings:
    """This run's own topics, consumer group and indices, so demos never mix."""
    from driftline.streams.pseudonymize import generate_key

    tag = f"demo{time.strftime('%Y%m%d%H%M%S')}"
    key = settings.pseudonymization_key.get_secret_value() if settings.pseudonymization_key else generate_key()
    values = settings.model_dump() | {
        "predictions_topic": f"driftline.{tag}.predictions",
        "feedback_topic": f"driftline.{tag}.feedback",
        "deadletter_topic": f"driftline.{tag}.deadletter",
        "alerts_topic": f"driftline.{tag}.alerts",
        "baselines_topic": f"driftline.{tag}.baselines",
        "metrics_window_s": 120.0,  # 12,000 requests of 100 ms: ten windows
        "metrics_lateness_s": 10.0,
        "positive_label": settings.positive_label or "fraud",
        "app_id": f"driftline-{tag}",
        "es_index_prefix": tag,
        "pseudonymization_key": key if isinstance(key, str) else key.hex(),
        "detect_idle_s": 10.0,
        "slice_keys": settings.slice_keys or ["region"],
    }
    return Settings(**values)


def _publish_baseline(settings: Settings, service: SimulatedService) -> None:
    """Build the model's baseline from its (simulated) training file and publish it, as a user would."""
    from driftline.baselines.build import build_baseline
    from driftline.baselines.catalog import publish_baseline

    folder = Path(settings.infra_dir)
    folder.mkdir(parents=True, exist_ok=True)
    train = service.write_training_file(folder / f"{settings.es_index_prefix}-train.csv")
    baseline = build_baseline(train, service.model_name, service.model_version, label_column="label",
                              prediction_column="prediction")
    (folder / f"{settings.es_index_prefix}.baseline.json").write_text(baseline.dumps())
    size = publish_baseline(settings, baseline)
    console.print(f"baseline of {service.model_name} {service.model_version}: {len(baseline.schema)} features from "
                  f"{baseline.rows:,} training rows ({train}), published to {settings.baselines_topic} ({size:,} bytes)")


def _log_traffic(settings: Settings, traffic: Traffic, progress: Progress) -> None:
    from confluent_kafka import Producer

    from driftline.connectors.producer import PredictionLogger

    task = progress.add_task("model service logging predictions + feedback", total=len(traffic.predictions))
    with PredictionLogger(settings, max_buffer=len(traffic.predictions) * 2 + 10) as log:
        lag = 100  # labels are logged ~100 requests after their prediction
        for i, prediction in enumerate(traffic.predictions):
            log.log_prediction(prediction)
            if i >= lag:
                log.log_feedback(traffic.feedback[i - lag])
            if i % 500 == 0:
                progress.update(task, completed=i)
        for fb in traffic.feedback[-lag:]:
            log.log_feedback(fb)
        log.flush(60)
        progress.update(task, completed=len(traffic.predictions))
    if log.stats.lost:
        console.print(f"[red]{log.stats.lost} events were not delivered: {log.stats.last_error}[/]")
    raw = Producer(settings.kafka_client_config())
    for n, value in enumerate(traffic.malformed):
        raw.produce(settings.predictions_topic, value=value, key=f"malformed-{n}".encode())
    raw.flush(30)


def demo(
    events: int = typer.Option(12_000, "--events", "-n", min=2_000, help="predictions the simulated service logs"),
    kafka_bootstrap: str = typer.Option(None, envvar="DRIFTLINE_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers"),
    es_url: str = typer.Option(None, envvar="DRIFTLINE_ES_URL", help="Elasticsearch URL"),
    timeout: float = typer.Option(600.0, help="seconds to wait for the pipeline to finish"),
) -> None:
    """Run driftline end to end on the embedded defaults: a simulated model drifts, driftline alerts."""
    try:
        base = Settings.load(kafka_bootstrap=kafka_bootstrap, es_url=es_url)
        if base.kafka_session_timeout_ms is None and _uses_local_defaults(base):
            base = Settings(**(base.model_dump() | {"kafka_session_timeout_ms": 6000}))
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None

    if _uses_local_defaults(base):
        _start_local_servers(base)
    else:
        console.print(f"using Kafka at {base.kafka_bootstrap} and Elasticsearch at {base.es_url}")

    from driftline.connectors.kafka_admin import driftline_topics, ensure_topics

    settings = _run_settings(base)
    ensure_topics(settings, driftline_topics(settings))
    service = SimulatedService(n=events, concept_drift_at=events * 2 // 3, feature_drift_start=events // 4,
                               feature_drift_span=events // 6, skew_at=events // 2)
    _publish_baseline(settings, service)
    traffic = service.traffic()
    console.print(
        f"run [bold]{settings.es_index_prefix}[/]: {events:,} predictions of {service.model_name} "
        f"{service.model_version}; '{service.drifting_feature}' drifts from request {service.feature_drift_start:,}, "
        f"the concept changes at request {service.concept_drift_at:,}; from request {service.skew_at:,} region "
        f"'{service.skewed_region}' sends an unknown channel '{service.unknown_channel}'"
    )

    log_dir = Path(settings.infra_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = log_dir / f"{settings.es_index_prefix}-worker.log"
    with worker_log.open("ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "driftline.cli", "worker", "--loglevel", "warn"],
                                  env=os.environ | settings.to_env(), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    console.print(f"worker started (pid {worker.pid}, log {worker_log})")
    try:
        summary = _watch(settings, service, traffic, worker, timeout)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
    _print_summary(settings, service, summary)


def _watch(settings: Settings, service: SimulatedService, traffic: Traffic, worker: subprocess.Popen,
           timeout: float) -> dict:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(**settings.es_client_options())
    prefix = settings.es_index_prefix

    def count(stream: str) -> int:
        try:
            es.indices.refresh(index=f"{prefix}-{stream}-*")
            return int(es.count(index=f"{prefix}-{stream}-*")["count"])
        except Exception:  # noqa: BLE001 - the index does not exist yet
            return 0

    seen: dict[str, dict] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        _log_traffic(settings, traffic, progress)
        indexed = progress.add_task("predictions indexed", total=len(traffic.predictions))
        joined = progress.add_task("outcomes joined and indexed", total=len(traffic.feedback))
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                console.print(f"[red]the worker stopped (exit {worker.returncode}); see its log[/]")
                break
            n_pred, n_out = count("predictions"), count("outcomes")
            progress.update(indexed, completed=n_pred)
            progress.update(joined, completed=n_out)
            if count("alerts"):
                hits = es.search(index=f"{prefix}-alerts-*", size=100, sort=[{"@timestamp": "asc"}])["hits"]["hits"]
                for hit in hits:
                    if hit["_id"] not in seen:
                        seen[hit["_id"]] = hit["_source"]
                        alert = hit["_source"]["alert"]
                        line = escape(alert.get("message") or f"[{alert['severity']}]")
                        progress.console.print(f"[bold red]ALERT[/] {line}")
            done = n_pred >= len(traffic.predictions) and n_out >= len(traffic.feedback)
            if done:
                quiet_since = quiet_since or time.monotonic()
                # the detectors release the last values once the input has been quiet for detect_idle_s
                if time.monotonic() - quiet_since > settings.detect_idle_s + 10:
                    break
            time.sleep(1.0)
    drift = es.search(index=f"{prefix}-drift-*", size=1000)["hits"]["hits"] if count("drift") else []
    summary = {
        "predictions": count("predictions"),
        "outcomes": count("outcomes"),
        "deadletters": count("deadletters"),
        "metrics": count("metrics"),
        "anomalies": count("anomalies"),
        "drift": [h["_source"] for h in drift],
        "alerts": list(seen.values()),
    }
    es.close()
    return summary


def _print_summary(settings: Settings, service: SimulatedService, summary: dict) -> None:
    prefix = settings.es_index_prefix
    table = Table(title=f"driftline demo {prefix}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("predictions indexed", f"{summary['predictions']:,}")
    table.add_row("outcomes (prediction + label) indexed", f"{summary['outcomes']:,}")
    table.add_row("dead letters (malformed input)", f"{summary['deadletters']:,}")
    table.add_row("window metrics documents (per window and slice)", f"{summary['metrics']:,}")
    table.add_row("schema-skew anomalies", f"{summary['anomalies']:,}")
    kinds = Counter(f"{d['drift']['kind']} drift on {d['drift']['stream']}" for d in summary["drift"])
    for what, n in sorted(kinds.items()):
        table.add_row(f"drift events: {what}", str(n))
    table.add_row("alerts", str(len(summary["alerts"])))
    console.print(table)
    console.print(
        f"known drift points: '{service.drifting_feature}' starts drifting at event time "
        f"{_iso(service.timestamp(service.feature_drift_start))}; the concept changes at "
        f"{_iso(service.timestamp(service.concept_drift_at))} (labels arrive {service.label_delay_ms // 1000} s later); "
        f"region '{service.skewed_region}' sends channel '{service.unknown_channel}' from "
        f"{_iso(service.timestamp(service.skew_at or 0))}"
    )
    for alert in sorted(summary["alerts"], key=lambda a: a["@timestamp"]):
        console.print(f"  {alert['@timestamp']}  " + escape(alert["alert"].get("message") or alert["alert"]["severity"]))
    url = settings.es_url
    console.print("\nnext, query Elasticsearch:")
    console.print(f"  curl -s '{url}/{prefix}-alerts-*/_search?pretty' -H 'Content-Type: application/json' "
                  "-d '{\"sort\": [{\"@timestamp\": \"asc\"}]}'")
    console.print(f"  curl -s '{url}/{prefix}-outcomes-*/_search?pretty&size=0' -H 'Content-Type: application/json' "
                  "-d '{\"aggs\": {\"per_region\": {\"terms\": {\"field\": \"labels.region\"}, "
                  "\"aggs\": {\"errors\": {\"avg\": {\"field\": \"outcome.error\"}}}}}}'")
    console.print(f"  curl -s '{url}/{prefix}-deadletters-*/_search?pretty' -H 'Content-Type: application/json' "
                  "-d '{\"_source\": [\"error\", \"kafka\"]}'")
    console.print(f"  curl -s '{url}/{prefix}-drift-*/_search?pretty' -H 'Content-Type: application/json' "
                  "-d '{\"query\": {\"term\": {\"drift.kind\": \"data\"}}}'")
    console.print(f"  curl -s '{url}/{prefix}-metrics-*/_search?pretty' -H 'Content-Type: application/json' "
                  "-d '{\"query\": {\"term\": {\"window.closed\": true}}, \"sort\": [{\"window.start\": \"asc\"}], "
                  "\"_source\": [\"window.start\", \"slice.name\", \"metrics.count\", \"metrics.accuracy\", "
                  "\"metrics.latency_ms.p99\"]}'")
    console.print(f"  curl -s '{url}/{prefix}-anomalies-*/_search?pretty' -H 'Content-Type: application/json' "
                  "-d '{\"query\": {\"term\": {\"labels.region\": \"apac\"}}}'")
    console.print("the local servers keep running: `driftline infra down` stops them.")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
