"""The ``driftline`` command: one Typer app, one sub-command group per concern.

Example:
    $ driftline --help
    $ driftline infra up
    $ driftline baseline build train.csv --model churn --version 7
"""

from __future__ import annotations

import typer

from driftline import __version__
from driftline.commands.baseline import app as baseline_app
from driftline.commands.demo import demo
from driftline.commands.infra import infra_app
from driftline.commands.worker import worker

app = typer.Typer(
    name="driftline",
    help="Watch machine-learning models in production: drift, skew, data quality and system health.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(infra_app, name="infra")
app.add_typer(baseline_app, name="baseline")
app.command()(demo)
app.command()(worker)


@app.command()
def version() -> None:
    """Print driftline's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
