"""Metrics per tumbling window, per model version and slice: a mergeable accumulator.

A :class:`WindowMetrics` holds everything needed to report one (model,
version, slice, window): predictions go in with :meth:`~WindowMetrics.add_prediction`,
joined outcomes with :meth:`~WindowMetrics.add_outcome`. Two accumulators of
the same window (two partitions, two batches) combine with
:meth:`~WindowMetrics.merge`; the state is a small JSON object
(:meth:`~WindowMetrics.to_json`) for a changelogged table; the numbers come
from :meth:`~WindowMetrics.summary` and, as an Elasticsearch document, from
:func:`metrics_document`. Like the detectors, nothing here does I/O.

Per event the work is a few ``dict`` and ``float`` updates plus, for latency,
label delay and regression values, one update of an Apache DataSketches KLL
sketch (C++). Memory is bounded whatever the number of events: each KLL
sketch keeps ``O(k)`` items (about 600 with ``k = 200``, 5 KB serialized,
even after millions of updates); class counts hold at most
``max_classes`` classes and fairness counts ``max_groups`` groups (later
ones are counted under :data:`OTHER`); the ROC AUC histograms at most
``auc_bins + 1`` bins per class.

Definitions
-----------
Windows
    Tumbling, aligned on the epoch: ``[window_start(t, size), + size)``
    (:func:`window_start`). The caller picks the window of each event. Put an
    outcome in the window of its *prediction's* event time (the outcome
    document's ``@timestamp``): label coverage is then the labelled share of
    that window's predictions (at most 1), and a window's document is
    re-indexed, under the same id, as its labels arrive.
Latency
    ``latency_ms`` of predictions; missing, negative or non-finite values are
    counted as ``latency_ms.missing``. Quantiles are KLL quantiles with
    ``inclusive=True``: an observed value whose rank is within the sketch's
    normalized rank error (about 1.3 % for ``k = 200``, 99 % confidence) of the
    requested one; exact (NumPy's ``inverted_cdf`` method) while the sketch
    holds every value (fewer than ``k`` values).
Error rate
    Mean of ``outcome.error`` over the scored *classification* outcomes (those
    with ``outcome.correct``): the misclassification rate, where a multi-label
    prediction counts its Jaccard distance as the join scores it. Regression
    outcomes report ``mae`` (mean ``abs_error``), ``rmse`` and ``mean_error``
    (bias) instead. Unscored outcomes (``outcome == {}``) count only towards
    coverage and label delay.
Classification
    Accuracy, per-class and macro precision / recall / F1 use the outcomes
    with exactly one predicted label (``prediction.outputs``, else
    ``prediction.label``) and exactly one true label (``feedback.labels``);
    ``evaluated`` counts them. Per class, an undefined precision (never
    predicted) or recall (never true) is ``None``; macro averages run over
    every class seen (true or predicted) and count undefined values as 0,
    like scikit-learn's ``zero_division=0``.
Binary (with ``positive_label``)
    ``precision``, ``recall``, ``f1``, ``fpr``, ``fnr`` and the confusion
    counts treat the positive label against all others (one-vs-rest).
ROC AUC
    Over the evaluated outcomes that have a positive-class score in ``[0, 1]``
    (:func:`positive_class_score`). Scores go to per-class histograms of
    ``auc_bins + 1`` bins centred on the grid ``0, 1/B, ..., 1`` (``B =
    auc_bins``, default 1000): bin ``floor(s * B + 0.5)``. The AUC is the
    Mann-Whitney statistic over bins, pairs in one bin counted one half. It
    is exact when every score is on the grid (scores rounded to 3 decimals,
    by default), and otherwise wrong only for positive-negative pairs that
    share a bin, by at most half a pair each: ``|AUC - exact| <=
    roc_auc_max_error = sum_b pos_b * neg_b / (2 * n_pos * n_neg)``, computed
    from the same histograms and reported next to the AUC (about ``1 / (2B)``
    times the score densities' overlap; 0.0005 or less for well-spread scores).
Prediction distribution
    Class counts of ``prediction.label`` (the top output); for regression a
    KLL sketch of ``prediction.value`` reported as quantiles.
Fairness (with ``positive_label`` and ``sensitive_attribute``)
    Per group of the attribute's value (a slice label, categorical or boolean
    feature; outcomes without it are counted as ``missing``): false-positive
    rate, false-negative rate and accuracy. The gap of a metric is its largest
    minus its smallest value over the groups with at least ``min_group_size``
    evaluated outcomes (and the metric defined); a gap above its threshold is
    a finding (:func:`fairness_findings`).

Example:
    >>> config = MetricsConfig(window_ms=60_000, positive_label="fraud")
    >>> metrics = WindowMetrics(config)
    >>> for latency in (5.0, 7.0, 9.0, 40.0):
    ...     metrics.add_prediction({"latency_ms": latency, "prediction": {"label": "fraud", "score": 0.9}}, 1_000)
    >>> outcome = {"prediction": {"label": "fraud", "score": 0.9},
    ...            "feedback": {"labels": ["legit"], "delay_ms": 30_000},
    ...            "outcome": {"correct": False, "error": 1.0, "abs_error": 1.0}}
    >>> metrics.add_outcome(outcome)
    >>> numbers = metrics.summary()
    >>> numbers["count"], numbers["latency_ms"]["p50"], numbers["error_rate"], numbers["label_coverage"]
    (4, 7.0, 1.0, 0.25)
    >>> WindowMetrics.from_json(metrics.to_json()).summary() == numbers
    True
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch

from driftline.streams.alerts import DriftEvent, _digest, iso_utc
from driftline.streams.keys import ModelKey
from driftline.streams.slices import attribute_value

__all__ = [
    "ALL_SLICE_NAME",
    "DEFAULT_FAIRNESS_THRESHOLDS",
    "DEFAULT_WINDOW_MS",
    "FAIRNESS_METRICS",
    "OTHER",
    "MetricsConfig",
    "WindowMetrics",
    "fairness_findings",
    "metrics_document",
    "metrics_id",
    "positive_class_score",
    "window_start",
]

#: One minute of event time per window.
DEFAULT_WINDOW_MS = 60_000
#: The group metrics compared between groups of the sensitive attribute.
FAIRNESS_METRICS = ("fpr", "fnr", "accuracy")
#: Largest acceptable gap between groups, per gap (``<metric>_gap``).
DEFAULT_FAIRNESS_THRESHOLDS: Mapping[str, float] = MappingProxyType({f"{m}_gap": 0.1 for m in FAIRNESS_METRICS})
#: Classes or groups beyond ``max_classes`` / ``max_groups`` are counted under this name.
OTHER = "__other__"
#: ``slice.name`` of the whole model in metrics documents (no real slice name lacks ``=``).
ALL_SLICE_NAME = "all"

LATENCY_QUANTILES: Mapping[str, float] = MappingProxyType({"p50": 0.5, "p95": 0.95, "p99": 0.99})
DELAY_QUANTILES: Mapping[str, float] = MappingProxyType({"p50": 0.5, "p95": 0.95})
VALUE_QUANTILES: Mapping[str, float] = MappingProxyType({"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95})
#: Version of the :meth:`WindowMetrics.to_json` layout.
STATE_VERSION = 1

_TP, _FP, _TN, _FN = 0, 1, 2, 3


def window_start(event_time_ms: int, size_ms: int) -> int:
    """Start (epoch ms) of the tumbling window of ``size_ms`` holding ``event_time_ms``.

    Example:
        >>> window_start(1_790_000_012_345, 60_000), window_start(-1, 60_000)
        (1789999980000, -60000)
    """
    if size_ms <= 0:
        raise ValueError(f"window size must be > 0 ms, not {size_ms!r}")
    return event_time_ms - event_time_ms % size_ms


def _finite(value: Any) -> bool:
    """A finite int or float (NumPy's too), not a bool."""
    kind = type(value)
    if kind is float or kind is int:  # the hot path: plain JSON numbers
        return math.isfinite(value)
    return isinstance(value, (float, int)) and not isinstance(value, bool) and math.isfinite(value)


def positive_class_score(prediction: Mapping[str, Any], positive_label: str,
                         negative_label: str | None = None) -> float | None:
    """The score of the positive class in a ``prediction`` object, or None if it cannot be known.

    In this order: ``prediction.scores[positive_label]`` (the class
    distribution); ``prediction.score`` when ``prediction.label`` (the top
    output) is the positive label; the score of an output labelled
    ``positive_label`` in ``prediction.outputs``; ``1 - prediction.score``
    when ``prediction.label`` is ``negative_label`` (a binary model: only the
    configuration can say there are exactly two classes). Otherwise None.

    Example:
        >>> positive_class_score({"label": "legit", "score": 0.8, "scores": {"fraud": 0.2, "legit": 0.8}}, "fraud")
        0.2
        >>> positive_class_score({"label": "fraud", "score": 0.9}, "fraud")
        0.9
        >>> positive_class_score({"label": "legit", "score": 0.75}, "fraud", "legit")
        0.25
        >>> positive_class_score({"label": "legit", "score": 0.75}, "fraud") is None
        True
    """
    scores = prediction.get("scores")
    if scores:
        score = scores.get(positive_label)
        if _finite(score):
            return float(score)
    label, score = prediction.get("label"), prediction.get("score")
    if label == positive_label and _finite(score):
        return float(score)
    outputs = prediction.get("outputs")
    if outputs:
        for output in outputs:
            if isinstance(output, Mapping) and output.get("label") == positive_label and _finite(output.get("score")):
                return float(output["score"])
    if negative_label is not None and label == negative_label and _finite(score):
        return 1.0 - float(score)
    return None


def _single_predicted(prediction: Mapping[str, Any]) -> str | None:
    """The one predicted label (as the join scores it: outputs, else label), or None."""
    outputs = prediction.get("outputs")
    if isinstance(outputs, list) and outputs:
        if len(outputs) == 1:  # the usual case
            output = outputs[0]
            label = output.get("label") if isinstance(output, Mapping) else None
            return label if isinstance(label, str) else None
        labels = {o.get("label") for o in outputs if isinstance(o, Mapping) and isinstance(o.get("label"), str)}
    else:
        label = prediction.get("label")
        if isinstance(label, str):
            return label
        labels = {x for x in label if isinstance(x, str)} if isinstance(label, list) else set()
    return labels.pop() if len(labels) == 1 else None


def _single_truth(feedback: Mapping[str, Any]) -> str | None:
    labels = feedback.get("labels")
    if isinstance(labels, str):
        return labels
    if isinstance(labels, list):
        if len(labels) == 1:  # the usual case
            label = labels[0]
            return label if isinstance(label, str) else None
        distinct = {x for x in labels if isinstance(x, str)}
        if len(distinct) == 1:
            return distinct.pop()
    return None


def _group_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return None  # numbers are not groups; missing is None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _slot(counts: Mapping[str, Any], key: str, cap: int) -> str:
    """``key`` if it has (or may get) its own entry, else :data:`OTHER`."""
    return key if key in counts or len(counts) < cap else OTHER


def _new_sketch(k: int) -> kll_doubles_sketch:
    return kll_doubles_sketch(k)


#: Values a sketch buffers at most before they are added (see :func:`_flushed`).
_PENDING_MAX = 4096


def _flushed(sketch: kll_doubles_sketch, pending: list[float]) -> kll_doubles_sketch:
    """``sketch`` with the ``pending`` values added (in order, in one call: one call per value costs about a
    microsecond, as much as the rest of a window's work for an event)."""
    if pending:
        sketch.update(np.asarray(pending, dtype=np.float64))
        pending.clear()
    return sketch


def _buffer(sketch: kll_doubles_sketch, pending: list[float], value: float) -> None:
    """Add ``value`` to ``sketch`` through ``pending`` (added at once when read, or when ``_PENDING_MAX`` wait)."""
    pending.append(value)
    if len(pending) >= _PENDING_MAX:
        _flushed(sketch, pending)


def _sketch_text(sketch: kll_doubles_sketch) -> str:
    return base64.b64encode(sketch.serialize()).decode("ascii")


def _sketch_from(text: str) -> kll_doubles_sketch:
    return kll_doubles_sketch.deserialize(base64.b64decode(text))


def _quantiles(sketch: kll_doubles_sketch, names: Mapping[str, float]) -> dict[str, float | None]:
    if sketch.is_empty():
        return {name: None for name in names}
    return {name: sketch.get_quantile(rank, True) for name, rank in names.items()}


def _roc_auc(positives: Mapping[int, int], negatives: Mapping[int, int]) -> tuple[float | None, float | None]:
    """(AUC, its largest error) from per-class score histograms; pairs in one bin count one half."""
    n_pos, n_neg = sum(positives.values()), sum(negatives.values())
    if not n_pos or not n_neg:
        return None, None
    below = twice_wins = ties = 0  # exact integers: twice the Mann-Whitney U, pairs sharing a bin
    for b in sorted(positives.keys() | negatives.keys()):
        p, q = positives.get(b, 0), negatives.get(b, 0)
        twice_wins += p * (2 * below + q)
        ties += p * q
        below += q
    pairs = n_pos * n_neg
    return twice_wins / (2 * pairs), ties / (2 * pairs)


@dataclass(frozen=True)
class MetricsConfig:
    """What the window metrics compute; fixed for the life of an accumulator.

    Parameters
    ----------
    window_ms
        Size of the tumbling windows (event time): ``requests_per_s`` is
        ``count`` over this many seconds.
    positive_label
        The positive class: enables binary precision / recall / F1, FPR / FNR,
        ROC AUC and fairness.
    negative_label
        The other class of a binary model: a prediction of it with score ``s``
        gives the positive class ``1 - s`` (see :func:`positive_class_score`).
    sensitive_attribute
        Slice label, categorical or boolean feature whose groups are compared
        for fairness (needs ``positive_label``).
    fairness_thresholds
        Largest acceptable gap per gap name (``fpr_gap``, ``fnr_gap``,
        ``accuracy_gap``), merged over :data:`DEFAULT_FAIRNESS_THRESHOLDS` (0.1).
    min_group_size
        Groups with fewer evaluated outcomes are reported but left out of gaps.
    auc_bins
        ROC AUC score resolution: scores on the grid ``i / auc_bins`` are exact.
    sketch_k
        KLL ``k`` (8 to 65535): rank error about 1.3 % at 200, memory ~ 3k values.
    max_classes, max_groups
        Most classes and groups counted separately; the rest go to :data:`OTHER`.

    Example:
        >>> config = MetricsConfig(positive_label="fraud", fairness_thresholds={"fpr_gap": 0.05})
        >>> config.fairness_thresholds
        {'accuracy_gap': 0.1, 'fnr_gap': 0.1, 'fpr_gap': 0.05}
        >>> MetricsConfig.from_json(config.to_json()) == config
        True
    """

    window_ms: int = DEFAULT_WINDOW_MS
    positive_label: str | None = None
    negative_label: str | None = None
    sensitive_attribute: str | None = None
    fairness_thresholds: Mapping[str, float] = field(default_factory=dict)
    min_group_size: int = 30
    auc_bins: int = 1000
    sketch_k: int = 200
    max_classes: int = 256
    max_groups: int = 64

    def __post_init__(self) -> None:
        for name in ("window_ms", "min_group_size", "auc_bins", "max_classes", "max_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        if isinstance(self.sketch_k, bool) or not isinstance(self.sketch_k, int) or not 8 <= self.sketch_k <= 65535:
            raise ValueError(f"sketch_k must be an integer from 8 to 65535, not {self.sketch_k!r}")
        for name in ("positive_label", "negative_label", "sensitive_attribute"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, not {value!r}")
        if self.negative_label is not None and self.negative_label == self.positive_label:
            raise ValueError("negative_label must differ from positive_label")
        thresholds = dict(DEFAULT_FAIRNESS_THRESHOLDS)
        for name, value in self.fairness_thresholds.items():
            if name not in thresholds:
                raise ValueError(f"unknown fairness gap {name!r}; known: {', '.join(sorted(thresholds))}")
            if not _finite(value) or value < 0:
                raise ValueError(f"threshold of {name} must be a finite number >= 0, not {value!r}")
            thresholds[name] = float(value)
        object.__setattr__(self, "fairness_thresholds", dict(sorted(thresholds.items())))

    @property
    def fairness_enabled(self) -> bool:
        """Whether fairness is computed (positive label and sensitive attribute configured)."""
        return self.positive_label is not None and self.sensitive_attribute is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "window_ms": self.window_ms,
            "positive_label": self.positive_label,
            "negative_label": self.negative_label,
            "sensitive_attribute": self.sensitive_attribute,
            "fairness_thresholds": dict(self.fairness_thresholds),
            "min_group_size": self.min_group_size,
            "auc_bins": self.auc_bins,
            "sketch_k": self.sketch_k,
            "max_classes": self.max_classes,
            "max_groups": self.max_groups,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricsConfig:
        return cls(**dict(data))


class WindowMetrics:
    """The mergeable metrics accumulator of one (model, version, slice, window).

    Parameters
    ----------
    config
        What to compute; accumulators merge only with the same configuration.

    Bad input is counted, never raised: a prediction without a usable
    latency counts in ``latency_ms.missing``, an outcome without a finite
    ``outcome.error`` in ``unscored_outcomes``, one without ``feedback.delay_ms``
    in ``label_delay_ms.missing``. Non-finite numbers are ignored everywhere.

    Example:
        >>> a, b = WindowMetrics(), WindowMetrics()
        >>> a.add_prediction({"latency_ms": 3.0, "prediction": {"value": 2.5}}, 10)
        >>> b.add_prediction({"prediction": {"value": 4.0}}, 20)
        >>> b.add_outcome({"feedback": {"values": [3.0], "delay_ms": 5}, "outcome": {"error": 1.0, "abs_error": 1.0}})
        >>> merged = a.merge(b).summary()
        >>> merged["count"], merged["latency_ms"]["missing"], merged["mae"], merged["prediction"]["value"]["p50"]
        (2, 1, 1.0, 2.5)
    """

    def __init__(self, config: MetricsConfig | None = None) -> None:
        self.config = config or MetricsConfig()
        k = self.config.sketch_k
        # predictions
        self.count = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        # the sketches' values are buffered and added in one call when a sketch is read (see _flushed)
        self._latency, self._latency_pending = _new_sketch(k), []
        self.latency_sum = 0.0
        self.latency_missing = 0
        self.predicted: dict[str, int] = {}  # prediction distribution: class -> count
        self._values, self._values_pending = _new_sketch(k), []  # prediction distribution: regression values
        # outcomes
        self.outcomes = 0
        self.unscored = 0
        self._delay, self._delay_pending = _new_sketch(k), []
        self.delay_sum = 0.0
        self.delay_missing = 0
        self.classified = 0  # scored classification outcomes
        self.error_sum = 0.0
        self.evaluated = 0  # ... with one predicted and one true label
        self.correct = 0
        self.classes: dict[str, list[int]] = {}  # class -> [true positives, predicted, actual]
        self.binary = [0, 0, 0, 0]  # tp, fp, tn, fn for the positive label
        self.auc_pos: dict[int, int] = {}  # score bin -> count, outcomes whose true label is positive
        self.auc_neg: dict[int, int] = {}
        self.auc_missing = 0  # evaluated outcomes without a positive-class score in [0, 1]
        self.regressed = 0
        self.error_total = 0.0  # regression: sum of signed errors
        self.abs_error_sum = 0.0
        self.squared_error_sum = 0.0
        self.groups: dict[str, list[int]] = {}  # sensitive attribute value -> [tp, fp, tn, fn]
        self.group_missing = 0

    def __repr__(self) -> str:
        return f"WindowMetrics(count={self.count}, outcomes={self.outcomes})"

    @property
    def latency(self) -> kll_doubles_sketch:
        """The sketch of ``latency_ms``."""
        return _flushed(self._latency, self._latency_pending)

    @property
    def values(self) -> kll_doubles_sketch:
        """The sketch of regression ``prediction.value``."""
        return _flushed(self._values, self._values_pending)

    @property
    def delay(self) -> kll_doubles_sketch:
        """The sketch of ``feedback.delay_ms``."""
        return _flushed(self._delay, self._delay_pending)

    # --- updates ---------------------------------------------------------------

    def add_prediction(self, document: Mapping[str, Any], event_time_ms: int) -> None:
        """Count one canonical prediction document at its event time (epoch ms)."""
        self.count += 1
        if self.first_ms is None or event_time_ms < self.first_ms:
            self.first_ms = event_time_ms
        if self.last_ms is None or event_time_ms > self.last_ms:
            self.last_ms = event_time_ms
        latency = document.get("latency_ms")
        if _finite(latency) and latency >= 0:
            _buffer(self._latency, self._latency_pending, latency)
            self.latency_sum += latency
        else:
            self.latency_missing += 1
        prediction = document.get("prediction")
        if prediction:
            label = prediction.get("label")
            if isinstance(label, str):
                key = _slot(self.predicted, label, self.config.max_classes)
                self.predicted[key] = self.predicted.get(key, 0) + 1
            else:
                value = prediction.get("value")
                if _finite(value):
                    _buffer(self._values, self._values_pending, value)

    def add_outcome(self, document: Mapping[str, Any]) -> None:
        """Count one joined outcome document (a prediction plus ``feedback`` and ``outcome``)."""
        self.outcomes += 1
        feedback = document.get("feedback")
        if type(feedback) is not dict and not isinstance(feedback, Mapping):
            feedback = {}
        delay = feedback.get("delay_ms")
        if _finite(delay):
            _buffer(self._delay, self._delay_pending, delay)
            self.delay_sum += delay
        else:
            self.delay_missing += 1
        outcome = document.get("outcome")
        error = outcome.get("error") if type(outcome) is dict or isinstance(outcome, Mapping) else None
        if not _finite(error):
            self.unscored += 1
            return
        if "correct" not in outcome:
            self.regressed += 1
            self.error_total += error
            self.abs_error_sum += abs(error)
            self.squared_error_sum += error * error
            return
        self.classified += 1
        self.error_sum += error
        prediction = document.get("prediction")
        if type(prediction) is not dict and not isinstance(prediction, Mapping):
            return
        predicted, truth = _single_predicted(prediction), _single_truth(feedback)
        if predicted is None or truth is None:
            return
        self._add_labelled(document, prediction, predicted, truth)

    def _add_labelled(self, document: Mapping[str, Any], prediction: Mapping[str, Any], predicted: str,
                      truth: str) -> None:
        config = self.config
        self.evaluated += 1
        classes, cap = self.classes, config.max_classes
        if predicted == truth:
            self.correct += 1
            entry = classes.get(predicted) or classes.setdefault(_slot(classes, predicted, cap), [0, 0, 0])
            entry[0] += 1
            entry[1] += 1
            entry[2] += 1
        else:
            (classes.get(predicted) or classes.setdefault(_slot(classes, predicted, cap), [0, 0, 0]))[1] += 1
            (classes.get(truth) or classes.setdefault(_slot(classes, truth, cap), [0, 0, 0]))[2] += 1
        positive = config.positive_label
        if positive is None:
            return
        actual = truth == positive
        cell = (_TP if predicted == positive else _FN) if actual else (_FP if predicted == positive else _TN)
        self.binary[cell] += 1
        score = positive_class_score(prediction, positive, config.negative_label)
        if score is not None and 0.0 <= score <= 1.0:
            bins = self.auc_pos if actual else self.auc_neg
            b = int(score * config.auc_bins + 0.5)
            bins[b] = bins.get(b, 0) + 1
        else:
            self.auc_missing += 1
        if config.sensitive_attribute is not None:
            group = _group_text(attribute_value(document, config.sensitive_attribute))
            if group is None:
                self.group_missing += 1
            else:
                key = _slot(self.groups, group, config.max_groups)
                counts = self.groups.get(key)
                if counts is None:
                    counts = self.groups[key] = [0, 0, 0, 0]
                counts[cell] += 1

    def merge(self, other: WindowMetrics) -> WindowMetrics:
        """Add ``other``'s counts and sketches into this accumulator; returns ``self``.

        The result equals one accumulator fed both inputs: counts exactly,
        sums up to float rounding, sketches within their rank error (exactly
        while they hold every value). With more than ``max_classes`` classes
        (``max_groups`` groups) which ones get their own entry may differ.
        """
        if other.config != self.config:
            raise ValueError("cannot merge window metrics computed with different configurations")
        self.count += other.count
        if other.first_ms is not None and (self.first_ms is None or other.first_ms < self.first_ms):
            self.first_ms = other.first_ms
        if other.last_ms is not None and (self.last_ms is None or other.last_ms > self.last_ms):
            self.last_ms = other.last_ms
        for name in ("latency", "values", "delay"):
            sketch = getattr(other, name)
            if not sketch.is_empty():
                getattr(self, name).merge(sketch)
        for name in ("latency_sum", "latency_missing", "outcomes", "unscored", "delay_sum", "delay_missing",
                     "classified", "error_sum", "evaluated", "correct", "auc_missing", "regressed",
                     "error_total", "abs_error_sum", "squared_error_sum", "group_missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        cap = self.config.max_classes
        for label, n in other.predicted.items():
            key = _slot(self.predicted, label, cap)
            self.predicted[key] = self.predicted.get(key, 0) + n
        _merge_lists(self.classes, other.classes, cap)
        _merge_lists(self.groups, other.groups, self.config.max_groups)
        self.binary = [a + b for a, b in zip(self.binary, other.binary)]
        for mine, theirs in ((self.auc_pos, other.auc_pos), (self.auc_neg, other.auc_neg)):
            for b, n in theirs.items():
                mine[b] = mine.get(b, 0) + n
        return self

    # --- state -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-compatible ``dict`` (sketches as base64 text), for a table.

        Example:
            >>> m = WindowMetrics()
            >>> m.add_prediction({"latency_ms": 1.5}, 0)
            >>> json.loads(json.dumps(m.to_json())) == m.to_json(), WindowMetrics.from_json(m.to_json()).count
            (True, 1)
        """
        return {
            "v": STATE_VERSION,
            "config": self.config.to_json(),
            "count": self.count,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "latency": _sketch_text(self.latency),
            "latency_sum": self.latency_sum,
            "latency_missing": self.latency_missing,
            "predicted": dict(sorted(self.predicted.items())),
            "values": _sketch_text(self.values),
            "outcomes": self.outcomes,
            "unscored": self.unscored,
            "delay": _sketch_text(self.delay),
            "delay_sum": self.delay_sum,
            "delay_missing": self.delay_missing,
            "classified": self.classified,
            "error_sum": self.error_sum,
            "evaluated": self.evaluated,
            "correct": self.correct,
            "classes": {c: list(v) for c, v in sorted(self.classes.items())},
            "binary": list(self.binary),
            "auc_pos": sorted(self.auc_pos.items()),
            "auc_neg": sorted(self.auc_neg.items()),
            "auc_missing": self.auc_missing,
            "regressed": self.regressed,
            "error_total": self.error_total,
            "abs_error_sum": self.abs_error_sum,
            "squared_error_sum": self.squared_error_sum,
            "groups": {g: list(v) for g, v in sorted(self.groups.items())},
            "group_missing": self.group_missing,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> WindowMetrics:
        """Rebuild an accumulator from :meth:`to_json` (a ``dict``, or its JSON text)."""
        obj = data if isinstance(data, Mapping) else json.loads(data)
        if obj.get("v") != STATE_VERSION:
            raise ValueError(f"unknown window metrics state version {obj.get('v')!r}")
        metrics = cls(MetricsConfig.from_json(obj["config"]))
        for name in ("latency", "values", "delay"):
            setattr(metrics, f"_{name}", _sketch_from(obj[name]))
        for name in ("count", "latency_missing", "outcomes", "unscored", "delay_missing", "classified",
                     "evaluated", "correct", "auc_missing", "regressed", "group_missing"):
            setattr(metrics, name, int(obj[name]))
        for name in ("latency_sum", "delay_sum", "error_sum", "error_total", "abs_error_sum", "squared_error_sum"):
            setattr(metrics, name, float(obj[name]))
        metrics.first_ms = None if obj["first_ms"] is None else int(obj["first_ms"])
        metrics.last_ms = None if obj["last_ms"] is None else int(obj["last_ms"])
        metrics.predicted = {str(c): int(n) for c, n in obj["predicted"].items()}
        metrics.classes = {str(c): [int(x) for x in v] for c, v in obj["classes"].items()}
        metrics.binary = [int(x) for x in obj["binary"]]
        metrics.auc_pos = {int(b): int(n) for b, n in obj["auc_pos"]}
        metrics.auc_neg = {int(b): int(n) for b, n in obj["auc_neg"]}
        metrics.groups = {str(g): [int(x) for x in v] for g, v in obj["groups"].items()}
        return metrics

    # --- results ---------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The window's numbers (None where undefined); see the module docstring for definitions."""
        config = self.config
        latency_n = self.latency.n
        delay_n = self.delay.n
        values_n = self.values.n
        tp, fp, tn, fn = self.binary
        binary = config.positive_label is not None
        auc, auc_error = _roc_auc(self.auc_pos, self.auc_neg)
        per_class = {
            c: {
                "support": actual,
                "predicted": predicted,
                "tp": hits,
                "precision": _ratio(hits, predicted),
                "recall": _ratio(hits, actual),
                "f1": _ratio(2 * hits, predicted + actual),
            }
            for c, (hits, predicted, actual) in sorted(self.classes.items())
        }
        macro = {
            name: (sum(stats[name] or 0.0 for stats in per_class.values()) / len(per_class) if per_class else None)
            for name in ("precision", "recall", "f1")
        }
        value_summary: dict[str, Any] = {"count": values_n, "min": None, "max": None}
        value_summary.update(_quantiles(self.values, VALUE_QUANTILES))
        if values_n:
            value_summary.update(min=self.values.get_min_value(), max=self.values.get_max_value())
        return {
            "count": self.count,
            "requests_per_s": self.count * 1000.0 / config.window_ms,
            "first_event_ms": self.first_ms,
            "last_event_ms": self.last_ms,
            "latency_ms": {
                "count": latency_n,
                "missing": self.latency_missing,
                "mean": _ratio(self.latency_sum, latency_n),
                "min": self.latency.get_min_value() if latency_n else None,
                "max": self.latency.get_max_value() if latency_n else None,
                **_quantiles(self.latency, LATENCY_QUANTILES),
            },
            "outcomes": self.outcomes,
            "unscored_outcomes": self.unscored,
            "label_coverage": _ratio(self.outcomes, self.count),
            "label_delay_ms": {
                "count": delay_n,
                "missing": self.delay_missing,
                "mean": _ratio(self.delay_sum, delay_n),
                **_quantiles(self.delay, DELAY_QUANTILES),
            },
            "classified": self.classified,
            "error_rate": _ratio(self.error_sum, self.classified),
            "evaluated": self.evaluated,
            "accuracy": _ratio(self.correct, self.evaluated),
            "macro_precision": macro["precision"],
            "macro_recall": macro["recall"],
            "macro_f1": macro["f1"],
            "classes": per_class,
            "positive_label": config.positive_label,
            "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn} if binary else None,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "fpr": _ratio(fp, fp + tn),
            "fnr": _ratio(fn, fn + tp),
            "roc_auc": auc,
            "roc_auc_max_error": auc_error,
            "roc_auc_count": sum(self.auc_pos.values()) + sum(self.auc_neg.values()),
            "roc_auc_missing": self.auc_missing,
            "regressed": self.regressed,
            "mae": _ratio(self.abs_error_sum, self.regressed),
            "rmse": math.sqrt(self.squared_error_sum / self.regressed) if self.regressed else None,
            "mean_error": _ratio(self.error_total, self.regressed),
            "prediction": {"classes": dict(sorted(self.predicted.items())), "value": value_summary},
            "fairness": self._fairness() if config.fairness_enabled else None,
        }

    def _fairness(self) -> dict[str, Any]:
        config = self.config
        groups: dict[str, dict[str, Any]] = {}
        for group, (tp, fp, tn, fn) in sorted(self.groups.items()):
            n = tp + fp + tn + fn
            groups[group] = {
                "count": n,
                "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                "fpr": _ratio(fp, fp + tn),
                "fnr": _ratio(fn, fn + tp),
                "accuracy": _ratio(tp + tn, n),
                "included": n >= config.min_group_size,
            }  # fmt: skip
        result: dict[str, Any] = {
            "attribute": config.sensitive_attribute,
            "positive_label": config.positive_label,
            "min_group_size": config.min_group_size,
            "missing": self.group_missing,
            "groups": groups,
        }
        exceeded: list[str] = []
        for metric in FAIRNESS_METRICS:
            name = f"{metric}_gap"
            threshold = config.fairness_thresholds[name]
            eligible = [(g, s[metric]) for g, s in groups.items() if s["included"] and s[metric] is not None]
            gap: dict[str, Any] = {"value": None, "threshold": threshold, "exceeded": False, "groups": len(eligible),
                                   "high_group": None, "high": None, "low_group": None, "low": None}
            if len(eligible) >= 2:
                high_group, high = max(eligible, key=lambda gv: gv[1])  # first of equals, groups sorted by name
                low_group, low = min(eligible, key=lambda gv: gv[1])
                value = high - low
                gap.update(value=value, exceeded=value > threshold, high_group=high_group, high=high,
                           low_group=low_group, low=low)
                if value > threshold:
                    exceeded.append(name)
            result[name] = gap
        result["exceeded"] = exceeded
        return result


def _merge_lists(mine: dict[str, list[int]], theirs: Mapping[str, list[int]], cap: int) -> None:
    for key, counts in theirs.items():
        slot = _slot(mine, key, cap)
        entry = mine.get(slot)
        if entry is None:
            mine[slot] = list(counts)
        else:
            mine[slot] = [a + b for a, b in zip(entry, counts)]


# --- documents and findings ---------------------------------------------------------


def _slice_name(key: ModelKey) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(key.slice.items()))


def metrics_id(key: ModelKey, window_start_ms: int, window_size_ms: int) -> str:
    """Deterministic document id of one window of one key: 32 hex digits.

    Example:
        >>> key = ModelKey("fraud", "3", {"region": "eu"})
        >>> metrics_id(key, 0, 60_000) == metrics_id(ModelKey("fraud", "3", {"region": "eu"}), 0, 60_000)
        True
        >>> metrics_id(key, 0, 60_000) == metrics_id(key, 60_000, 60_000), len(metrics_id(key, 0, 60_000))
        (False, 32)
    """
    slice_text = json.dumps(dict(sorted(key.slice.items())), separators=(",", ":"), ensure_ascii=False)
    return _digest("metrics", key.model, key.version, slice_text, str(window_start_ms), str(window_size_ms))


def _check_window(window_size_ms: int, metrics: WindowMetrics) -> None:
    if window_size_ms != metrics.config.window_ms:
        configured = metrics.config.window_ms
        raise ValueError(f"window size {window_size_ms} ms differs from the metrics' window_ms {configured}")


def metrics_document(
    key: ModelKey, window_start_ms: int, window_size_ms: int, metrics: WindowMetrics
) -> dict[str, Any]:
    """The Elasticsearch document of one window of one key (index it with ``doc_id=metrics_id(...)``).

    ``@timestamp`` and ``window.start`` are the window's start, ``window.end``
    its (exclusive) end. The slice is in ``labels.*`` (as in drift events and
    alerts) and ``slice.name`` (``all`` for the whole model). ``metrics.*``
    holds :meth:`WindowMetrics.summary` with per-class numbers, class counts
    and groups as lists of objects (class names are data: as object keys they
    would each become a mapped field); ``fairness.*`` the fairness summary.

    Example:
        >>> m = WindowMetrics(MetricsConfig(window_ms=60_000))
        >>> m.add_prediction({"latency_ms": 12.0, "prediction": {"label": "cat"}}, 1_790_000_012_345)
        >>> doc = metrics_document(ModelKey("pets", "1"), window_start(1_790_000_012_345, 60_000), 60_000, m)
        >>> doc["@timestamp"], doc["window"]["end"], doc["slice"], doc["metrics"]["latency_ms"]["p99"]
        ('2026-09-21T14:13:00.000Z', '2026-09-21T14:14:00.000Z', {'name': 'all'}, 12.0)
        >>> doc["metrics"]["prediction"]["classes"], "fairness" in doc
        ([{'label': 'cat', 'count': 1}], False)
    """
    _check_window(window_size_ms, metrics)
    numbers = metrics.summary()
    fairness = numbers.pop("fairness")
    numbers["classes"] = [{"class": c, **stats} for c, stats in numbers["classes"].items()]
    numbers["prediction"] = {
        "classes": [{"label": c, "count": n} for c, n in numbers["prediction"]["classes"].items()],
        "value": numbers["prediction"]["value"],
    }
    document: dict[str, Any] = {
        "@timestamp": iso_utc(window_start_ms),
        "event": {
            "id": metrics_id(key, window_start_ms, window_size_ms),
            "kind": "metric",
            "dataset": "driftline.metrics",
        },
        "model": {"name": key.model, "version": key.version},
        "labels": dict(sorted(key.slice.items())),
        "slice": {"name": _slice_name(key) or ALL_SLICE_NAME},
        "window": {
            "start": iso_utc(window_start_ms),
            "end": iso_utc(window_start_ms + window_size_ms),
            "size_ms": window_size_ms,
        },
        "metrics": numbers,
    }
    if fairness is not None:
        fairness["groups"] = [{"value": g, **stats} for g, stats in fairness["groups"].items()]
        document["fairness"] = fairness
    return document


def fairness_findings(
    key: ModelKey, window_start_ms: int, window_size_ms: int, metrics: WindowMetrics
) -> list[DriftEvent]:
    """One :class:`~driftline.streams.alerts.DriftEvent` per fairness gap above its threshold.

    Each is ``detector="fairness"``, ``kind="quality"`` (the model's quality
    differs between groups; ``concept`` is kept for errors changing over
    time), ``stream`` the gap (``fairness.fpr_gap``), ``feature`` the
    sensitive attribute, ``statistic`` the gap and ``threshold`` its
    threshold, ``window_size`` the outcomes of the compared groups,
    ``event_time_ms`` the window's start and ``position`` the window's number
    (``start // size``), so the event's id is one per window, key and gap.
    ``parameters`` names the groups with the highest and lowest value and
    lists every compared group's value.

    Example:
        >>> config = MetricsConfig(positive_label="fraud", sensitive_attribute="region", min_group_size=1)
        >>> m = WindowMetrics(config)
        >>> for region, truth, guess in [("eu", "legit", "fraud"), ("us", "legit", "legit")]:
        ...     m.add_outcome({"labels": {"region": region}, "prediction": {"label": guess},
        ...                    "feedback": {"labels": [truth]}, "outcome": {"correct": truth == guess,
        ...                    "error": float(truth != guess)}})
        >>> findings = fairness_findings(ModelKey("f", "1"), 0, 60_000, m)
        >>> [(e.stream, e.statistic, e.parameters["high_group"]) for e in findings]
        [('fairness.fpr_gap', 1.0, 'eu'), ('fairness.accuracy_gap', 1.0, 'us')]
    """
    _check_window(window_size_ms, metrics)
    fairness = metrics.summary()["fairness"]
    if fairness is None:
        return []
    events: list[DriftEvent] = []
    for name in fairness["exceeded"]:
        gap = fairness[name]
        metric = name.removesuffix("_gap")
        compared = {g: s[metric] for g, s in fairness["groups"].items() if s["included"] and s[metric] is not None}
        events.append(
            DriftEvent(
                detector="fairness",
                kind="quality",
                stream=f"fairness.{name}",
                model_name=key.model,
                model_version=key.version,
                position=window_start_ms // window_size_ms,
                event_time_ms=window_start_ms,
                feature=fairness["attribute"],
                slice=dict(key.slice),
                statistic=gap["value"],
                threshold=gap["threshold"],
                window_size=sum(fairness["groups"][g]["count"] for g in compared),
                parameters={
                    "window_ms": window_size_ms,
                    "metric": metric,
                    "attribute": fairness["attribute"],
                    "positive_label": fairness["positive_label"],
                    "high_group": gap["high_group"],
                    "high": gap["high"],
                    "low_group": gap["low_group"],
                    "low": gap["low"],
                    "groups": compared,
                    "min_group_size": fairness["min_group_size"],
                    "window_ms": window_size_ms,
                },
            )
        )
    return events
