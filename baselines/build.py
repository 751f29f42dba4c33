"""Build a model version's :class:`~.model.Baseline` from its training data file.

:func:`build_baseline` streams the file (:mod:`.readers`) in chunks of rows
through one :class:`~.profile.ColumnProfile` per column, so memory does not
grow with the file: a file larger than memory works. It reads the file once,
and a second time only when some statistic needs it: exact histograms of
numeric columns whose values outgrew ``value_cache_mb`` (256 MiB by default:
some 30 million numbers), and the numbers in a mostly-string column (see
:mod:`.profile`).

Which column is what:

- ``label_column`` and ``prediction_column`` are the ground truth and the
  model's output: their statistics go to :attr:`Baseline.label` and
  :attr:`Baseline.prediction` (numeric, or categorical for strings and
  booleans), not to the features;
- ``categorical_columns`` and ``text_columns`` fix a feature's type (numbers
  in a categorical column are categories, say zip codes or class ids; a label
  or prediction can be categorical too);
- ``exclude_columns`` are skipped (ids, timestamps, leakage);
- every other column is a feature whose type is inferred.

Naming a column the file does not have is an error.

With ``novelty`` (on by default), the first pass also keeps a bounded random
sample of rows (:class:`~.novelty.RowSample`, 10,240 rows), and the numeric
features' :class:`~.novelty.NoveltyModel` is fitted on it at the end
(:func:`~.novelty.fit_novelty`): none when the file has no numeric feature
or fewer than 1,000 rows.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "churn-train.csv"
    >>> _ = path.write_text("id,tenure,plan,churned\\n1,10,basic,false\\n2,30,pro,true\\n3,20,basic,false\\n")
    >>> b = build_baseline(path, "churn", "7", label_column="churned", exclude_columns=["id"])
    >>> b.rows, sorted(b.schema), b.schema["plan"].domain, b.label.frequencies
    (3, ['plan', 'tenure'], ['basic', 'pro'], {'false': 2, 'true': 1})
    >>> b.schema["tenure"]
    FeatureSchema(name='tenure', type='numeric', required=True, domain=None, min=8.0, max=32.0, integral=True)
    >>> b.source["file"], b.source["format"]
    ('churn-train.csv', 'csv')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timezone
from typing import Any

from .model import Baseline, BaselineError, FeatureSchema, FeatureStats, NumericStats
from .novelty import NoveltyOptions, RowSample, fit_novelty
from .profile import ColumnProfile, ProfileOptions, Role
from .readers import DEFAULT_CHUNK_ROWS, TrainingFile

__all__ = ["ProgressCallback", "build_baseline"]

#: ``progress(rows_done, bytes_done, bytes_total)``, called after every chunk.
#: Both byte counts cover every pass: ``bytes_total`` is the file's size during
#: the first pass and twice that once a second pass starts; ``rows_done``
#: counts rows read, over all passes.
ProgressCallback = Callable[[int, int, int], None]


def _names(option: str, columns: Iterable[str] | None) -> set[str]:
    names = set(columns or ())
    if any(not isinstance(n, str) or not n for n in names):
        raise BaselineError(f"{option} must be column names, not {sorted(names, key=str)!r}")
    return names


def build_baseline(
    path: str | os.PathLike[str],
    model_name: str,
    model_version: str,
    *,
    format: str | None = None,
    label_column: str | None = None,
    prediction_column: str | None = None,
    categorical_columns: Collection[str] = (),
    text_columns: Collection[str] = (),
    exclude_columns: Collection[str] = (),
    options: ProfileOptions | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    value_cache_mb: float = 256,
    progress: ProgressCallback | None = None,
    novelty: bool | NoveltyOptions = True,
) -> Baseline:
    """Profile a training data file into the baseline of ``model_name`` ``model_version``.

    Parameters
    ----------
    path
        The training file: CSV, JSON lines, Avro or Parquet (see :mod:`.readers`).
    model_name, model_version
        The model version the baseline is for.
    format
        The file's format, if its extension does not tell.
    label_column, prediction_column
        Columns holding the ground truth and the model's output (optional).
    categorical_columns, text_columns
        Columns whose type is fixed rather than inferred.
    exclude_columns
        Columns left out of the baseline.
    options
        Profiling settings (:class:`~.profile.ProfileOptions`): domain size,
        range margin, histogram bins, sample size, vocabulary size, ...
    chunk_rows
        Rows read and profiled at a time (memory against per-chunk overhead).
    value_cache_mb
        Memory for keeping the numeric columns' values (8 bytes each) during
        the first pass: while they fit, their exact histograms come without
        reading the file again; once they outgrow it they are dropped, and a
        second pass counts the histograms. With 0, any numeric column with more
        values than its sample holds takes a second pass.
    progress
        Called after every chunk (see :data:`ProgressCallback`).
    novelty
        Fit the numeric features' novelty model (:mod:`.novelty`): ``True``
        with the default :class:`~.novelty.NoveltyOptions`, or the options;
        ``False`` for none.

    Returns
    -------
    Baseline
        With ``source`` = file name (not its folder), format, size and SHA-256,
        ``created`` = now (ISO 8601, UTC), ``rows`` = the file's rows and
        ``novelty`` = the novelty model (None when not asked for, without
        numeric features, or with fewer than ``min_rows`` rows).

    Raises
    ------
    BaselineError
        The file cannot be read (naming the line or row), has no rows, or the
        columns named are not in it or contradict each other.

    Example:
        >>> import json, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.jsonl"
        >>> rows = [{"stars": s, "verified": s > 2, "score": s / 5} for s in (1, 3, 5, 4)]
        >>> _ = path.write_text("".join(json.dumps(r) + "\\n" for r in rows))
        >>> seen = []
        >>> b = build_baseline(path, "stars", "1", prediction_column="score", progress=lambda *p: seen.append(p))
        >>> b.schema["verified"].type, b.statistics["verified"].true_count, b.prediction.mean
        ('boolean', 3, 0.65)
        >>> seen[-1] == (4, path.stat().st_size, path.stat().st_size)
        True
    """
    options = options or ProfileOptions()
    novelty_options = novelty if isinstance(novelty, NoveltyOptions) else NoveltyOptions() if novelty else None
    if not model_name or not model_version:
        raise BaselineError("a baseline needs a model name and version")
    if chunk_rows < 1:
        raise BaselineError(f"chunk_rows must be at least 1, not {chunk_rows}")
    categorical = _names("categorical_columns", categorical_columns)
    text = _names("text_columns", text_columns)
    excluded = _names("exclude_columns", exclude_columns)
    roles: dict[str, Role] = {}
    for role, column in (("label", label_column), ("prediction", prediction_column)):
        if column is not None:
            if column in roles:
                raise BaselineError(f"column {column!r} cannot be both the label and the prediction")
            roles[column] = role  # type: ignore[assignment]
    for overlap, why in ((categorical & text, "both categorical and text"), (excluded & (categorical | text | set(roles)),
                         "excluded and also given a role"), (text & set(roles), "text and a label or prediction")):
        if overlap:
            raise BaselineError(f"column(s) {', '.join(sorted(overlap))} cannot be {why}")
    named = categorical | text | excluded | set(roles)

    data = TrainingFile(path, format)
    typed = data.format != "csv"

    def check_named(columns: Collection[str]) -> None:
        unknown = named - set(columns)
        if unknown:
            shown = list(columns)[:30]
            more = f", … ({len(columns)} in all)" if len(columns) > len(shown) else ""
            raise BaselineError(f"{data.name} has no column {', '.join(repr(c) for c in sorted(unknown))} "
                                f"(its columns: {', '.join(shown)}{more})")

    def new_profile(name: str) -> ColumnProfile:
        kind = "categorical" if name in categorical else "text" if name in text else None
        return ColumnProfile(name, role=roles.get(name, "feature"), kind=kind, typed=typed,  # type: ignore[arg-type]
                             options=options, keep_values=keeping)

    profiles: dict[str, ColumnProfile] = {}
    seen: dict[str, None] = {}  # every column met, excluded ones too, in order
    rows = 0
    keeping = value_cache_mb > 0
    # a bounded sample of whole rows, of the columns that may turn out numeric features
    rows_sample = RowSample(novelty_options.sample_rows, novelty_options.seed) if novelty_options else None
    try:
        for chunk in data.chunks(chunk_rows):
            if rows == 0 and data.columns is not None:
                check_named(data.columns)
            seen.update(dict.fromkeys(chunk.columns))
            for name, values in chunk.columns.items():
                if name in excluded:
                    continue
                profile = profiles.get(name)
                if profile is None:
                    profile = profiles[name] = new_profile(name).add_missing(rows)
                profile.update_many(values, chunk.start)
            for name, profile in profiles.items():
                if name not in chunk.columns:
                    profile.add_missing(chunk.rows)
            if rows_sample is not None:
                rows_sample.update({name: values for name, values in chunk.columns.items() if name not in named},
                                   chunk.rows, typed)
            rows += chunk.rows
            if keeping and sum(p.kept_bytes for p in profiles.values()) > value_cache_mb * 2**20:
                keeping = False
                for profile in profiles.values():
                    profile.forget_values()
            if progress is not None:
                progress(rows, data.bytes_read, data.size)
        if rows == 0:
            raise BaselineError(f"{data.name} has no rows")
        check_named(list(seen))

        second = [name for name, profile in profiles.items() if profile.end_first_pass()]
        if second:
            rows_again = 0
            for chunk in data.chunks(chunk_rows):
                for name in second:
                    values = chunk.columns.get(name)
                    if values is not None:
                        profiles[name].update_second(values, chunk.start)
                rows_again += chunk.rows
                if progress is not None:
                    progress(rows + rows_again, data.size + data.bytes_read, 2 * data.size)
            if rows_again != rows:
                raise BaselineError(f"{data.name} had {rows:,} rows, then {rows_again:,} (did it change while it was read?)")
        results = {name: profile.result() for name, profile in profiles.items()}
    except BaselineError as exc:
        message = str(exc)
        raise BaselineError(message if message.startswith(data.name) else f"{data.name}: {message}") from None

    schema: dict[str, FeatureSchema] = {}
    statistics: dict[str, FeatureStats] = {}
    by_role: dict[str, Any] = {}
    for name, (column_schema, column_stats) in results.items():
        if column_schema is None:
            by_role[roles[name]] = column_stats
        else:
            schema[name] = column_schema
            statistics[name] = column_stats
    model = None
    if rows_sample is not None:
        numeric = {name: s for name, s in statistics.items() if isinstance(s, NumericStats) and schema[name].type == "numeric"}
        model = fit_novelty(rows_sample.columns(sorted(numeric)), numeric, novelty_options)
    if progress is not None:
        passes = 2 if second else 1
        progress(passes * rows, passes * data.size, passes * data.size)
    return Baseline(
        model_name=str(model_name),
        model_version=str(model_version),
        schema=schema,
        statistics=statistics,
        rows=rows,
        prediction=by_role.get("prediction"),
        label=by_role.get("label"),
        source={"file": data.name, "format": data.format, "size": data.size, "sha256": data.sha256()},
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        novelty=model,
    )
