"""``driftline infra``: start, stop and report the embedded local servers."""

import typer

infra_app = typer.Typer(help="Start, stop and report the embedded Kafka broker and Elasticsearch-API server.", no_args_is_help=True)
