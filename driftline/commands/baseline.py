"""``driftline baseline``: build a model version's training baseline, and check an edited one.

``build`` profiles a training file (CSV, JSON lines, Avro, Parquet) into one
reviewable JSON document: the schema serving data must follow and the
reference statistics drift is measured against (see
:mod:`driftline.baselines.model`), with a novelty model of the numeric
features' joint distribution unless ``--no-novelty`` (see
:mod:`driftline.baselines.novelty`). Edit the schema — widen a range, add a
category, make a feature optional — then ``show`` checks the edit and prints
the schema as the pipeline will read it.

``publish`` puts it on the compacted baselines topic, where every worker
picks it up (from the next window on, without a restart); ``list`` shows
what the topic holds; ``withdraw`` removes one.

Example:
    $ driftline baseline build train.csv --model churn --version 7 --label-column churned --exclude customer_id
    $ driftline baseline show churn-7.baseline.json
    $ driftline baseline publish churn-7.baseline.json
    $ driftline baseline list
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftline.baselines.build import build_baseline
from driftline.baselines.model import Baseline, BaselineError, FeatureSchema, FeatureStats
from driftline.baselines.novelty import NoveltyOptions
from driftline.baselines.profile import ProfileOptions
from driftline.settings import Settings, SettingsError

__all__ = ["app", "build", "default_output", "list_baselines", "publish", "show", "withdraw"]

app = typer.Typer(
    help="Build and check training baselines: the schema and reference statistics of a model version's training data.",
    no_args_is_help=True,
)

_DOMAIN_SHOWN = 6


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def default_output(model: str, version: str) -> Path:
    """Where ``build`` writes by default: ``<model>-<version>.baseline.json`` in
    the current folder (characters other than letters, digits, ``.``, ``-`` and
    ``_`` become ``_``).

    Example:
        >>> default_output("churn", "7"), default_output("fraud/eu", "2024 q1")
        (PosixPath('churn-7.baseline.json'), PosixPath('fraud_eu-2024_q1.baseline.json'))
    """
    safe = re.sub(r"[^\w.-]+", "_", f"{model}-{version}")
    return Path(f"{safe}.baseline.json")


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shown_rule(schema: FeatureSchema | None, stats: FeatureStats | None) -> str:
    """The schema's constraint (or, without schema, the statistics' shape), briefly."""
    kind = schema.type if schema is not None else stats.type if stats is not None else "?"
    if kind == "numeric":
        if schema is None:
            return f"[{stats.min:g}, {stats.max:g}] in training" if stats is not None else ""  # type: ignore[union-attr]
        low = "-inf" if schema.min is None else f"{schema.min:g}"
        high = "+inf" if schema.max is None else f"{schema.max:g}"
        return f"[{low}, {high}]" + (" integers" if schema.integral else "")
    if kind == "categorical":
        values = list(schema.domain) if schema is not None and schema.domain is not None else None
        if values is None and schema is None and stats is not None:
            values = sorted(stats.frequencies)  # type: ignore[union-attr]
        if values is None:
            return "any value"
        more = f" … (+{len(values) - _DOMAIN_SHOWN})" if len(values) > _DOMAIN_SHOWN else ""
        return "{" + ", ".join(values[:_DOMAIN_SHOWN]) + more + "}"
    if kind == "text":
        return f"{len(stats.vocabulary):,} words kept" if stats is not None else "free text"  # type: ignore[union-attr]
    return "true / false" if kind == "boolean" else ""


def _missing(stats: FeatureStats | None) -> str:
    return "-" if stats is None else f"{stats.missing_rate:.1%}"


def _schema_table(baseline: Baseline, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (("column", "left"), ("role", "left"), ("type", "left"), ("required", "left"),
                            ("missing", "right"), ("valid values", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, schema in sorted(baseline.schema.items()):
        stats = baseline.statistics.get(name)
        table.add_row(escape(name), "feature", schema.type, "yes" if schema.required else "no", _missing(stats),
                      escape(_shown_rule(schema, stats)))
    for role, stats in (("label", baseline.label), ("prediction", baseline.prediction)):
        if stats is not None:
            table.add_row("", role, stats.type, "-", _missing(stats), escape(_shown_rule(None, stats)))
    return table


def _novelty_line(baseline: Baseline) -> str:
    model = baseline.novelty
    if model is None:
        return "no novelty model"
    return (f"novelty model: {model.n_trees} half-space trees on {len(model.features)} numeric features, "
            f"{model.expected_rate:.2%} of {model.calibration_rows:,} held-out training rows above its threshold")


@app.command()
def build(
    file: Annotated[Path, typer.Argument(show_default=False, help="Training data: .csv, .jsonl/.ndjson/.json, .avro or .parquet")],
    model: Annotated[str, typer.Option("--model", "-m", show_default=False, help="Model name")],
    version: Annotated[str, typer.Option("--version", show_default=False, help="Model version")],
    label_column: Annotated[str | None, typer.Option(help="Column with the ground truth (its statistics: label drift)")] = None,
    prediction_column: Annotated[str | None, typer.Option(help="Column with the model's output (prediction drift)")] = None,
    text_column: Annotated[list[str] | None, typer.Option(help="A free-text feature (repeat for more)")] = None,
    categorical_column: Annotated[
        list[str] | None, typer.Option(help="A feature (or label) whose values are categories, even if numbers (repeat)")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="A column to leave out, e.g. an id (repeat)")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", show_default=False, dir_okay=False,
                                  help="Where to write the baseline (default: <model>-<version>.baseline.json)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file (and any edits in it)")] = False,
    file_format: Annotated[
        str | None, typer.Option("--format", show_default=False, help="csv, jsonl, avro or parquet (default: from the extension)")
    ] = None,
    max_domain: Annotated[int, typer.Option(min=0, help="Most distinct values a categorical's domain lists")] = 200,
    range_margin: Annotated[float, typer.Option(min=0, help="Widening of numeric ranges, as a share of the training range per side")] = 0.1,
    bins: Annotated[int, typer.Option(min=1, help="Histogram bins of a numeric feature")] = 20,
    sample_size: Annotated[int, typer.Option(min=1, help="Values kept per numeric feature for two-sample tests")] = 2_000,
    novelty: Annotated[bool, typer.Option("--novelty/--no-novelty",
                                          help="Fit a novelty model (Half-Space Trees) on the numeric features")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Profile a training data file into a model version's baseline (schema + statistics) and write it as JSON."""
    target = output if output is not None else default_output(model, version)
    if target.exists() and not force:
        raise _fail(f"{target} exists (it may hold schema edits): pass --force to overwrite it, or choose --output")
    if not target.parent.is_dir():
        raise _fail(f"cannot write {target}: folder {target.parent} does not exist")
    try:
        options = ProfileOptions(max_domain=max_domain, range_margin=range_margin, histogram_bins=bins,
                                 sample_size=sample_size)
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn())
        with Progress(*columns, console=_console(stderr=True), disable=quiet) as bar:
            task = bar.add_task("reading", total=None, rows=0)
            size = file.stat().st_size if file.is_file() else 0

            def progress(rows: int, done: int, total: int) -> None:
                second = size and total > size
                bar.update(task, completed=done, total=total, rows=rows, description="2nd pass" if second else "profiling")

            baseline = build_baseline(
                file, model, version, format=file_format, label_column=label_column,
                prediction_column=prediction_column, categorical_columns=categorical_column or (),
                text_columns=text_column or (), exclude_columns=exclude or (), options=options, progress=progress,
                novelty=novelty,
            )
        _write_atomically(target, baseline.dumps())
    except BaselineError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {target}: {exc.strerror or exc}") from None

    out = _console()
    out.print(_schema_table(baseline, f"{baseline.model_name} {baseline.model_version}: "
                                      f"{baseline.rows:,} rows of {baseline.source.get('file')}"))
    out.print(f"wrote {escape(str(target))} ({len(baseline.schema)} features"
              + "".join(f", {role}" for role, s in (("label", baseline.label), ("prediction", baseline.prediction)) if s)
              + ")")
    if baseline.novelty is not None:
        out.print(escape(_novelty_line(baseline)))
    elif novelty:
        out.print(f"no novelty model: it needs a numeric feature that varies and {NoveltyOptions().min_rows:,} rows")
    out.print(f"review the schema, edit it if needed, then check it with: driftline baseline show {escape(str(target))}")


@app.command()
def show(
    path: Annotated[Path, typer.Argument(show_default=False, help="A baseline file (as written by build, maybe edited)")],
) -> None:
    """Check a baseline file (after an edit, say) and print its schema; exit code 1 if it is not valid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        baseline = Baseline.from_json(text)
    except BaselineError as exc:
        raise _fail(f"{path}: {exc}") from None
    out = _console()
    source = baseline.source
    origin = f"{baseline.rows:,} rows of {source.get('file', '?')} ({source.get('format', '?')})" if source else \
        f"{baseline.rows:,} rows"
    out.print(_schema_table(baseline, f"{baseline.model_name} {baseline.model_version}: {origin}"))
    out.print(escape(_novelty_line(baseline)))
    if baseline.created:
        out.print(f"created {baseline.created}" + (f", sha256 {source['sha256']}" if source.get("sha256") else ""))
    out.print(f"[green]✓[/] {escape(str(path))} is a valid baseline ({len(baseline.schema)} features)")


def _settings(kafka_bootstrap: str | None) -> Settings:
    try:
        return Settings.load(kafka_bootstrap=kafka_bootstrap)
    except SettingsError as exc:
        raise _fail(str(exc)) from None


_KAFKA = typer.Option("--kafka-bootstrap", help="Kafka bootstrap servers (default: DRIFTLINE_KAFKA_BOOTSTRAP)")


def _read(path: Path) -> Baseline:
    try:
        return Baseline.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except BaselineError as exc:
        raise _fail(f"{path}: {exc}") from None


@app.command()
def publish(
    path: Annotated[Path, typer.Argument(show_default=False, help="A baseline file (as written by build, maybe edited)")],
    kafka_bootstrap: Annotated[str | None, _KAFKA] = None,
) -> None:
    """Publish a baseline to the compacted baselines topic: every worker uses it from the next window on."""
    from driftline.baselines.catalog import publish_baseline

    baseline = _read(path)
    settings = _settings(kafka_bootstrap)
    try:
        size = publish_baseline(settings, baseline)
    except BaselineError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - Kafka unreachable, topic refused: say so, exit 1
        raise _fail(f"cannot publish to {settings.baselines_topic} at {settings.kafka_bootstrap}: {exc}") from None
    _console().print(f"[green]✓[/] published {escape(baseline.key)} to {escape(settings.baselines_topic)} "
                     f"({size:,} bytes compressed)")


@app.command("list")
def list_baselines(kafka_bootstrap: Annotated[str | None, _KAFKA] = None) -> None:
    """List the baselines on the baselines topic: what the workers use."""
    from driftline.baselines.catalog import read_baselines

    settings = _settings(kafka_bootstrap)
    try:
        baselines = read_baselines(settings)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"cannot read {settings.baselines_topic} at {settings.kafka_bootstrap}: {exc}") from None
    out = _console()
    if not baselines:
        out.print(f"no baselines on {escape(settings.baselines_topic)}; publish one with: driftline baseline publish FILE")
        return
    table = Table(title=f"baselines on {settings.baselines_topic}")
    for column in ("model", "version", "features", "rows", "label", "prediction", "source", "created"):
        table.add_column(column)
    for key in sorted(baselines):
        b = baselines[key]
        table.add_row(escape(b.model_name), escape(b.model_version), str(len(b.schema)), f"{b.rows:,}",
                      "yes" if b.label else "-", "yes" if b.prediction else "-",
                      escape(str(b.source.get("file", "-"))), escape(b.created or "-"))
    out.print(table)


@app.command()
def withdraw(
    model: Annotated[str, typer.Option("--model", "-m", show_default=False, help="Model name")],
    version: Annotated[str, typer.Option("--version", show_default=False, help="Model version")],
    kafka_bootstrap: Annotated[str | None, _KAFKA] = None,
) -> None:
    """Withdraw a model version's baseline (workers stop comparing it from the next window on)."""
    from driftline.baselines.catalog import withdraw_baseline

    settings = _settings(kafka_bootstrap)
    try:
        withdraw_baseline(settings, model, version)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"cannot withdraw from {settings.baselines_topic} at {settings.kafka_bootstrap}: {exc}") from None
    _console().print(f"[green]✓[/] withdrew {escape(model)}|{escape(version)} from {escape(settings.baselines_topic)}")
