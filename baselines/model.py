"""What a training baseline holds: an editable schema and reference statistics.

A :class:`Baseline` describes one model version's training data the way
TFDV's schema and statistics do, as one reviewable JSON document:

* ``schema`` — per feature, what serving data *must* look like: its type
  (``numeric``, ``categorical``, ``boolean`` or ``text``), whether it is
  required, the domain of a categorical, the valid range of a numeric. Users
  edit this part (widen a range, add a category) and the pipeline honours the
  edit: validation reads only the schema, never the statistics.
* ``statistics`` — what the training data *did* look like: counts, missing
  rate, moments, quantiles, a histogram with fixed bin edges and a bounded
  sample for numerics; category frequencies; a token vocabulary for text. The
  window comparisons (PSI, Jensen-Shannon, L-infinity, KS, Wasserstein) read
  these. Optionally, ``statistics.novelty``: an anomaly detector fitted on the
  training rows' numeric features (:class:`~.novelty.NoveltyModel`), for the
  joint distribution the per-feature statistics do not see. A document
  without it is valid (no novelty comparison); deleting it turns that off.

The same statistics describe the model's output (``prediction``) and the
ground truth (``label``) when the training file has them, for prediction and
label drift.

Where the serving event keeps each type: ``numeric`` in
``features.numeric``; ``categorical`` and ``text`` in
``features.categorical`` (a text feature is a string feature the baseline
treats as words); ``boolean`` in ``features.boolean``.

Example:
    >>> schema = FeatureSchema("amount", "numeric", required=True, min=0.0, max=500.0)
    >>> stats = NumericStats(count=3, missing=0, mean=2.0, std=0.816, min=1.0, max=3.0,
    ...                      quantiles={"0.5": 2.0}, histogram=Histogram([1.0, 2.0, 3.0], [1, 2]), sample=[1.0, 2.0, 3.0])
    >>> b = Baseline("churn", "7", {"amount": schema}, {"amount": stats}, rows=3)
    >>> Baseline.from_json(b.to_json()) == b
    True
    >>> b.schema["amount"].accepts_number(600.0)
    False
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:
    from .novelty import NoveltyModel

__all__ = [
    "BASELINE_FORMAT",
    "PERCENTILE_PROBABILITIES",
    "Baseline",
    "BaselineError",
    "BooleanStats",
    "CategoricalStats",
    "FeatureSchema",
    "FeatureStats",
    "FeatureType",
    "Histogram",
    "NumericStats",
    "TextStats",
]

#: The ``format`` field of a baseline document; a reader refuses any other.
BASELINE_FORMAT = "driftline.baseline/1"

FeatureType = Literal["numeric", "categorical", "boolean", "text"]

#: The probabilities of :attr:`NumericStats.percentiles`: 0, 0.001, 0.002, 0.005, 0.01 ... 0.99 (every
#: percentile), 0.995, 0.998, 0.999, 1 — refined in the tails, where a straight line from the 1st
#: percentile to the minimum would misplace the outer 1% (~0.015 std of Wasserstein distance on a normal).
PERCENTILE_PROBABILITIES: tuple[float, ...] = (
    0.0, 0.001, 0.002, 0.005, *(i / 100 for i in range(1, 100)), 0.995, 0.998, 0.999, 1.0)
FEATURE_TYPES: tuple[str, ...] = ("numeric", "categorical", "boolean", "text")


class BaselineError(ValueError):
    """A baseline document that cannot be read: the message says which field and why."""


@dataclass(frozen=True)
class FeatureSchema:
    """What serving values of one feature must look like (the editable part).

    Parameters
    ----------
    name
        The feature's name, as in the serving event's ``features.*`` maps.
    type
        ``numeric``, ``categorical``, ``boolean`` or ``text``.
    required
        Whether every serving event must carry the feature (inferred: it was
        present in every training row).
    domain
        The accepted values of a categorical feature; None accepts any.
    min, max
        The valid range of a numeric feature, inclusive; None is unbounded.
    integral
        A numeric feature whose training values were all whole numbers (a
        count, a code): a serving value with a fraction is a type anomaly.

    Example:
        >>> s = FeatureSchema("channel", "categorical", required=False, domain=["app", "web"])
        >>> s.accepts_category("web"), s.accepts_category("fax")
        (True, False)
    """

    name: str
    type: FeatureType
    required: bool = True
    domain: Sequence[str] | None = None
    min: float | None = None
    max: float | None = None
    integral: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise BaselineError(f"feature name must be a non-empty string, not {self.name!r}")
        if self.type not in FEATURE_TYPES:
            raise BaselineError(f"feature {self.name!r}: type must be one of {', '.join(FEATURE_TYPES)}, not {self.type!r}")
        if self.domain is not None:
            object.__setattr__(self, "domain", sorted({str(v) for v in self.domain}))
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
                raise BaselineError(f"feature {self.name!r}: {bound} must be a number or null, not {value!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise BaselineError(f"feature {self.name!r}: min {self.min} is above max {self.max}")

    def accepts_number(self, value: float) -> bool:
        """Whether ``value`` lies in ``[min, max]``."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def accepts_category(self, value: str) -> bool:
        """Whether ``value`` is in the domain (any value when there is none)."""
        return self.domain is None or value in self.domain

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        if self.domain is not None:
            out["domain"] = list(self.domain)
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.integral:
            out["integral"] = True
        return out

    @classmethod
    def from_json(cls, name: str, obj: Mapping[str, Any]) -> FeatureSchema:
        if not isinstance(obj, Mapping):
            raise BaselineError(f"schema of feature {name!r} must be an object, not {obj!r}")
        unknown = set(obj) - {"type", "required", "domain", "min", "max", "integral"}
        if unknown:
            raise BaselineError(f"schema of feature {name!r} has unknown fields: {', '.join(sorted(unknown))}")
        required = obj.get("required", True)
        if not isinstance(required, bool):
            raise BaselineError(f"feature {name!r}: required must be true or false, not {required!r}")
        domain = obj.get("domain")
        if domain is not None and not isinstance(domain, list):
            raise BaselineError(f"feature {name!r}: domain must be a list of strings or null, not {domain!r}")
        integral = obj.get("integral", False)
        if not isinstance(integral, bool):
            raise BaselineError(f"feature {name!r}: integral must be true or false, not {integral!r}")
        return cls(name, obj.get("type"), required, domain, obj.get("min"), obj.get("max"), integral)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Histogram:
    """Counts of values in fixed bins: ``counts[i]`` counts ``edges[i] <= x < edges[i+1]``
    (the last bin includes its right edge, as :func:`numpy.histogram`). Serving
    values outside ``[edges[0], edges[-1]]`` fall in the first or last bin when
    a window is compared (so no mass is lost)."""

    edges: Sequence[float]
    counts: Sequence[int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", [float(e) for e in self.edges])
        object.__setattr__(self, "counts", [int(c) for c in self.counts])
        if len(self.edges) != len(self.counts) + 1:
            raise BaselineError(f"histogram needs one more edge than counts: {len(self.edges)} edges, {len(self.counts)} counts")
        if any(b < a for a, b in zip(self.edges, self.edges[1:])):
            raise BaselineError("histogram edges must be sorted")


class _Counted:
    """What every statistics class shares: rows with a value (``count``) and rows without (``missing``)."""

    count: int
    missing: int

    @property
    def missing_rate(self) -> float:
        """Share of the rows without a value."""
        total = self.count + self.missing
        return self.missing / total if total else 0.0


@dataclass(frozen=True)
class NumericStats(_Counted):
    """Reference statistics of a numeric feature (or a regression output or label).

    ``count`` rows had a value, ``missing`` rows had none. ``quantiles`` maps
    the probability as text (``"0.5"``) to the value. ``sample`` is a uniform
    random sample of the values (at most a few thousand, fixed seed) for the
    two-sample tests (KS, Wasserstein), which need values, not bins.
    ``percentiles`` holds the values at :data:`PERCENTILE_PROBABILITIES` (the
    minimum, every percentile with the tails refined to 0.1%, the maximum;
    KLL sketch quantiles): when present, the window
    comparisons take the reference distribution from them instead of from the
    sample, free of the sample's own noise (a 2,000-value sample alone moves
    the normalized Wasserstein distance by ~0.04 and KS p-values by orders of
    magnitude).
    """

    count: int
    missing: int
    mean: float
    std: float
    min: float
    max: float
    quantiles: Mapping[str, float]
    histogram: Histogram
    sample: Sequence[float]
    percentiles: Sequence[float] = field(default_factory=list)
    type: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class CategoricalStats(_Counted):
    """Reference frequencies of a categorical feature (or a class label): value → rows."""

    count: int
    missing: int
    frequencies: Mapping[str, int]
    type: Literal["categorical"] = "categorical"


@dataclass(frozen=True)
class BooleanStats(_Counted):
    """Reference counts of a boolean feature."""

    count: int
    missing: int
    true_count: int
    type: Literal["boolean"] = "boolean"


@dataclass(frozen=True)
class TextStats(_Counted):
    """Reference vocabulary of a text feature: token → occurrences (the most
    frequent tokens, bounded), and how many tokens the training rows had."""

    count: int
    missing: int
    tokens: int
    vocabulary: Mapping[str, int]
    type: Literal["text"] = "text"


FeatureStats = Union[NumericStats, CategoricalStats, BooleanStats, TextStats]
_STATS_TYPES: dict[str, type] = {"numeric": NumericStats, "categorical": CategoricalStats, "boolean": BooleanStats, "text": TextStats}


def _stats_to_json(stats: FeatureStats) -> dict[str, Any]:
    return asdict(stats)


def _stats_from_json(name: str, obj: Any) -> FeatureStats:
    if not isinstance(obj, Mapping) or obj.get("type") not in _STATS_TYPES:
        raise BaselineError(f"statistics of {name!r} need a type among {', '.join(_STATS_TYPES)}")
    cls = _STATS_TYPES[obj["type"]]
    values = dict(obj)
    try:
        if cls is NumericStats:
            values["histogram"] = Histogram(**values["histogram"])
        return cls(**values)
    except (TypeError, KeyError) as exc:
        raise BaselineError(f"statistics of {name!r}: {exc}") from None


@dataclass(frozen=True)
class Baseline:
    """One model version's training baseline: schema plus statistics.

    ``schema`` and ``statistics`` are keyed by feature name. ``prediction`` and
    ``label`` describe the model's output and the ground truth in the training
    file, when it had them. ``source`` says where the baseline came from
    (file name, format, digest) and ``created`` when (ISO 8601). ``novelty``
    is the training rows' novelty model (:mod:`.novelty`), if one was fitted;
    it is written as ``statistics.novelty``, and only when present.
    """

    model_name: str
    model_version: str
    schema: Mapping[str, FeatureSchema]
    statistics: Mapping[str, FeatureStats]
    rows: int = 0
    prediction: FeatureStats | None = None
    label: FeatureStats | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    novelty: NoveltyModel | None = None

    @property
    def key(self) -> str:
        """The compacted-topic key: ``model|version``."""
        return f"{self.model_name}|{self.model_version}"

    def to_json(self) -> dict[str, Any]:
        """The baseline as a JSON-serializable document (what ``driftline baseline build`` writes)."""
        doc: dict[str, Any] = {
            "format": BASELINE_FORMAT,
            "model": {"name": self.model_name, "version": self.model_version},
            "created": self.created,
            "source": dict(self.source),
            "rows": self.rows,
            "schema": {"features": {name: s.to_json() for name, s in sorted(self.schema.items())}},
            "statistics": {
                "features": {name: _stats_to_json(s) for name, s in sorted(self.statistics.items())},
                "prediction": _stats_to_json(self.prediction) if self.prediction is not None else None,
                "label": _stats_to_json(self.label) if self.label is not None else None,
            },
        }
        if self.novelty is not None:
            doc["statistics"]["novelty"] = self.novelty.to_json()
        return doc

    def dumps(self) -> str:
        """The document as indented JSON text, for review and editing."""
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | str | bytes) -> Baseline:
        """Read a baseline document; raises :class:`BaselineError` naming what is wrong."""
        if isinstance(obj, (str, bytes)):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise BaselineError(f"baseline is not valid JSON: {exc}") from None
        if not isinstance(obj, Mapping):
            raise BaselineError("a baseline must be a JSON object")
        if obj.get("format") != BASELINE_FORMAT:
            raise BaselineError(f"unknown baseline format {obj.get('format')!r} (expected {BASELINE_FORMAT!r})")
        try:
            model = obj["model"]
            features = obj["schema"]["features"]
            statistics = obj["statistics"]
        except (KeyError, TypeError) as exc:
            raise BaselineError(f"baseline lacks {exc}") from None
        schema = {name: FeatureSchema.from_json(name, s) for name, s in features.items()}
        stats = {name: _stats_from_json(name, s) for name, s in (statistics.get("features") or {}).items()}
        for name, s in schema.items():
            if name in stats and stats[name].type != s.type and not (s.type == "categorical" and stats[name].type == "text"):
                raise BaselineError(f"feature {name!r}: schema type {s.type!r} but statistics of type {stats[name].type!r}")
        prediction = statistics.get("prediction")
        label = statistics.get("label")
        novelty = statistics.get("novelty")
        if novelty is not None:
            from .novelty import NoveltyModel  # numpy and River, only for documents that have a model

            try:
                novelty = NoveltyModel.from_json(novelty)
            except BaselineError as exc:  # e.g. another River version draws other trees: keep the rest usable
                logging.getLogger(__name__).warning(
                    "baseline %s|%s: novelty model ignored (%s); rebuild the baseline to restore it",
                    model.get("name"), model.get("version"), exc)
                novelty = None
        return cls(
            str(model["name"]),
            str(model["version"]),
            schema,
            stats,
            rows=int(obj.get("rows", 0)),
            prediction=_stats_from_json("prediction", prediction) if prediction is not None else None,
            label=_stats_from_json("label", label) if label is not None else None,
            source=dict(obj.get("source") or {}),
            created=str(obj.get("created", "")),
            novelty=novelty,
        )
