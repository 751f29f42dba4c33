"""``driftline infra``: start, stop and report the embedded local servers.

Example:
    $ driftline infra up                 # Kafka on 127.0.0.1:19092, Elasticsearch API on :19200
    $ driftline infra status             # exit code 0 only if both run and answer
    $ driftline infra down
    $ driftline infra up --kafka-port 29092 --es-port 29200 --dir /tmp/dl
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftline.connectors.infra import InfrastructureError, LocalInfrastructure, ServerStatus
from driftline.settings import LOCAL_ES_PORT, LOCAL_KAFKA_PORT, Settings, SettingsError

infra_app = typer.Typer(
    help="Start, stop and report the embedded Kafka broker and Elasticsearch-API server.",
    no_args_is_help=True,
)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

KafkaPort = Annotated[
    int | None,
    typer.Option(
        "--kafka-port",
        min=1,
        max=65535,
        show_default=False,
        help=f"Kafka broker port (default: the port of DRIFTLINE_KAFKA_BOOTSTRAP if local, else {LOCAL_KAFKA_PORT})",
    ),
]
EsPort = Annotated[
    int | None,
    typer.Option(
        "--es-port",
        min=1,
        max=65535,
        show_default=False,
        help=f"Elasticsearch-API port (default: the port of DRIFTLINE_ES_URL if local, else {LOCAL_ES_PORT})",
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        file_okay=False,
        show_default=False,
        help="Folder for logs, pid files and data (default: DRIFTLINE_INFRA_DIR, else .driftline)",
    ),
]


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _local_port(host: str | None, port: int | None, fallback: int) -> int:
    return port if host in _LOOPBACK and port else fallback


def _infrastructure(kafka_port: int | None, es_port: int | None, data_dir: Path | None) -> LocalInfrastructure:
    """The infrastructure the options (or, for unset ones, the settings) describe."""
    try:
        settings = Settings.load()
    except SettingsError as exc:
        raise _fail(str(exc), code=2) from None
    if kafka_port is None:
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        kafka_port = _local_port(host, int(port), LOCAL_KAFKA_PORT)
    if es_port is None:
        parts = urlsplit(settings.es_url)
        es_port = _local_port(parts.hostname, parts.port, LOCAL_ES_PORT)
    return LocalInfrastructure(data_dir or settings.infra_dir, kafka_port=kafka_port, es_port=es_port)


def _status_table(statuses: list[ServerStatus], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("server", "state", "pid", "url", "answering", "note"):
        table.add_column(column)
    for s in statuses:
        state = "[green]running[/]" if s.running else "[yellow]stopped[/]"
        answering = "[green]yes[/]" if s.answering else ("[red]no[/]" if s.running else "no")
        table.add_row(s.name, state, str(s.pid or "-"), s.url, answering, escape(s.detail))
    return table


@infra_app.command()
def up(
    kafka_port: KafkaPort = None,
    es_port: EsPort = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the servers to answer")] = 30.0,
) -> None:
    """Start the local Kafka broker and Elasticsearch-API server, and wait until both answer.

    Servers already running from the same --dir are left alone. Prints the
    environment variables that point driftline at them.
    """
    infra = _infrastructure(kafka_port, es_port, data_dir)
    out = _console()
    try:
        with _console(stderr=True).status("starting local servers...") as spinner:
            results = infra.up(timeout=timeout, progress=lambda msg: spinner.update(escape(msg)))
    except InfrastructureError as exc:
        where = f"\n(full log: {infra.log_path(exc.server)})" if exc.server and exc.log_tail else ""
        raise _fail(f"{exc}{where}") from None
    for r in results:
        s = r.status
        how = f"started in {r.seconds:.1f} s" if r.started else "already running"
        out.print(f"[green]✓[/] {s.name:<14} {s.url:<26} pid {s.pid}  ({how})")
    out.print(f"data, logs and pid files in {infra.data_dir}")
    out.print("point driftline at them with:")
    for name, value in infra.env().items():
        # plain echo: never wrapped or styled, so it can be copied or eval'd
        typer.echo(f"export {name}={value}")


@infra_app.command()
def down(
    data_dir: DataDir = None,
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for a graceful stop (SIGINT) before SIGKILL")
    ] = 10.0,
) -> None:
    """Stop the local servers started from --dir (a no-op when nothing runs).

    Only processes this tool started are signalled: a pid file whose process
    has gone or been replaced is just removed.
    """
    infra = _infrastructure(None, None, data_dir)
    out = _console()
    try:
        results = infra.down(timeout=timeout)
    except InfrastructureError as exc:
        raise _fail(str(exc)) from None
    if not any(r.stopped for r in results) and all(r.detail == "not running" for r in results):
        out.print("nothing running")
        return
    for r in results:
        if r.stopped:
            how = " (SIGKILL needed)" if r.forced else ""
            out.print(f"[green]✓[/] {r.name:<14} stopped pid {r.pid}{how}{': ' + r.detail if r.detail else ''}")
        else:
            out.print(f"- {r.name:<14} {escape(r.detail)}")


@infra_app.command()
def status(
    kafka_port: KafkaPort = None,
    es_port: EsPort = None,
    data_dir: DataDir = None,
) -> None:
    """Show whether each local server runs and answers; exit code 0 only if both do."""
    infra = _infrastructure(kafka_port, es_port, data_dir)
    statuses = infra.status()
    _console().print(_status_table(statuses, title=f"driftline infra ({infra.data_dir})"))
    if not all(s.running and s.answering for s in statuses):
        raise typer.Exit(1)
