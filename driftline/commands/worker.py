"""``driftline worker``: run the streaming pipeline (one Faust worker process).

Run more processes with the same settings (on this or other machines) to
scale: they join one consumer group and share the partitions.
"""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from driftline.settings import Settings, SettingsError

console = Console(stderr=True)


def worker(
    kafka_bootstrap: str = typer.Option(None, envvar="DRIFTLINE_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers"),
    es_url: str = typer.Option(None, envvar="DRIFTLINE_ES_URL", help="Elasticsearch URL"),
    loglevel: str = typer.Option("warn", "--loglevel", "-l", help="crit, error, warn, info or debug"),
) -> None:
    """Run the pipeline: normalize, join labels, detect drift, index into Elasticsearch, alert."""
    try:
        settings = Settings.load(kafka_bootstrap=kafka_bootstrap, es_url=es_url)
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if settings.pseudonymization_key is None:
        console.print("[red]DRIFTLINE_PSEUDONYMIZATION_KEY is not set: the worker pseudonymizes subject and rater ids "
                      "with this secret (at least 16 characters) and refuses to run without it.[/]")
        raise typer.Exit(2)

    import faust

    from driftline.connectors.kafka_admin import driftline_topics, ensure_topics
    from driftline.streams.app import create_app
    from driftline.streams.collector import tune_garbage_collector

    ensure_topics(settings, driftline_topics(settings))
    (settings.worker_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    logging.getLogger("driftline").setLevel(logging.INFO)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    tune_garbage_collector()  # the default thresholds cost a fifth of the worker's CPU: streams/collector.py
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
