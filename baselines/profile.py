"""Streaming accumulators that profile one training column into the baseline's statistics and schema.

Each class is small and River-style: the constructor stores its parameters,
``update(value)`` / ``update_many(values)`` change the state and return the
object, and the result is a property or method. None does I/O; memory is
bounded whatever the number of rows.

- :class:`Reservoir` — a uniform random sample of fixed size (bottom-k random keys).
- :class:`NumericSummary` — count, mean, population std, min, max, whether all
  values are whole, KLL quantiles (DataSketches), and a :class:`Reservoir`.
- :class:`HistogramCounter` — exact counts on fixed bin edges.
- :class:`FrequentValues` — value counts: exact up to a number of distinct
  values, then a DataSketches frequent-items sketch (approximate counts).
- :class:`BooleanSummary`, :class:`CategoricalSummary`, :class:`TextSummary`.
- :class:`ColumnProfile` — one column: infers its type, feeds the summaries,
  and gives the :class:`~.model.FeatureSchema` and statistics.

How a column's type is inferred
-------------------------------
Every value is first classified: *missing* (``None``, NaN, ±infinity, ``""``),
*boolean* (``True``/``False``; in CSV, ``true``/``false`` in any case),
*number* (ints and floats; in CSV, text that :class:`float` parses) or
*string* (anything else; dates and UUIDs as their ISO/str form). The column
gets the type most of its non-missing values have — ties go to categorical,
then numeric — and:

- a ``numeric`` column counts its booleans and strings as missing;
- a ``boolean`` column counts its numbers and strings as missing;
- a ``categorical`` or ``text`` column keeps every value, as text: a string as
  it is, a boolean as ``true``/``false``, a number as written in CSV and in
  its JSON spelling in the other formats (``3``, ``2.5``);
- a string column is ``text`` when its values average at least
  ``text_min_tokens`` (3) words and it has more than ``max_domain`` distinct
  values (a handful of multi-word labels is a categorical); otherwise
  ``categorical``. Naming the column as categorical or text skips inference.

Statistics come in one pass over the values, and a second pass where needed:
the exact histogram of a numeric column (its bin edges come from the first
pass' min and max; no second pass while every value is at hand — all in the
sample, or kept with ``keep_values``), and the text of the numbers in a
mostly-string column. A string column counts both its values and their words
in the first pass, so it needs no second pass whether it turns out to be
categorical or text.

Example:
    >>> column = ColumnProfile("amount", typed=False)
    >>> _ = column.update_many(["1", "2", "4", None, "5"])
    >>> column.end_first_pass(), column.type
    (False, 'numeric')
    >>> schema, stats = column.result()
    >>> schema
    FeatureSchema(name='amount', type='numeric', required=False, domain=None, min=0.6, max=5.4, integral=True)
    >>> stats.count, stats.missing, stats.mean, stats.histogram.counts[:4]
    (4, 1, 3.0, [1, 0, 0, 0])
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, NamedTuple
from uuid import UUID

import numpy as np
from datasketches import frequent_items_error_type, frequent_strings_sketch, kll_doubles_sketch

from .model import (
    PERCENTILE_PROBABILITIES,
    BaselineError,
    BooleanStats,
    CategoricalStats,
    FeatureSchema,
    FeatureStats,
    FeatureType,
    Histogram,
    NumericStats,
    TextStats,
)

__all__ = [
    "QUANTILES",
    "BooleanSummary",
    "CategoricalSummary",
    "ColumnProfile",
    "ColumnResult",
    "FrequentValues",
    "HistogramCounter",
    "NumericSummary",
    "ProfileOptions",
    "Reservoir",
    "Role",
    "TextSummary",
    "as_number",
    "tokenize",
    "widened_range",
]

#: The probabilities whose quantiles a numeric baseline keeps.
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: What a column is to the model: an input feature, the label (ground truth) or the model's prediction.
Role = Literal["feature", "label", "prediction"]

_TOKEN = re.compile(r"\w+")
_NUMBER_START = frozenset("0123456789+-.iInN \t")
_BOOLEAN_TEXT = {"true": True, "false": False}
_NONE = type(None)


def tokenize(text: str) -> list[str]:
    """The words of ``text`` as a text baseline counts them: lower-cased ``\\w+`` runs.

    Example:
        >>> tokenize("Great phone, battery LASTS 2 days!")
        ['great', 'phone', 'battery', 'lasts', '2', 'days']
    """
    return _TOKEN.findall(text.lower())


def widened_range(low: float, high: float, margin: float = 0.1) -> tuple[float, float]:
    """The valid range of a numeric feature: the training ``[low, high]`` widened
    on each side by ``margin × (high − low)``.

    A serving value beyond anything the model saw in training is an anomaly,
    but the training minimum and maximum are themselves just the extremes of
    one sample: new values drawn from the same distribution fall a little
    beyond them now and then. The margin keeps those from tripping the check.
    The widening never crosses zero: a feature that was never negative in
    training (a count, a price) stays non-negative, and one never positive
    stays non-positive. A constant feature gets no margin (its width is 0).

    Example:
        >>> widened_range(10.0, 20.0)
        (9.0, 21.0)
        >>> widened_range(0.0, 50.0), widened_range(-4.0, -2.0, margin=1.0)
        ((0.0, 55.0), (-6.0, 0.0))
    """
    width = high - low
    lo, hi = low - margin * width, high + margin * width
    if low >= 0:
        lo = max(lo, 0.0)
    if high <= 0:
        hi = min(hi, 0.0)
    return float(lo), float(hi)


@dataclass(frozen=True)
class ProfileOptions:
    """How columns are profiled: one typed settings object for :func:`~.build.build_baseline`.

    Parameters
    ----------
    max_domain
        A categorical column with at most this many distinct values gets them
        as its schema domain; with more, no domain (any value is accepted).
    range_margin
        Widening of a numeric column's valid range, as a share of the training
        range on each side (see :func:`widened_range`).
    histogram_bins
        Equal-width bins of a numeric histogram, over the training ``[min, max]``.
    sample_size
        Values kept in a numeric column's uniform random sample.
    vocabulary_size
        Most frequent tokens a text column's statistics keep.
    max_categories
        Most frequent values a categorical column's statistics keep (at least
        ``max_domain`` are kept); values are counted exactly up to ten times
        this many distinct values, and approximately beyond.
    text_min_tokens
        Mean words per value from which a string column with more than
        ``max_domain`` distinct values is inferred to be text.
    quantile_k
        ``k`` of the KLL quantile sketch: its rank error is about 0.3 % at
        1,000 (1.3 % at DataSketches' default of 200), and quantiles are exact
        while a column has at most ``k`` values.
    seed
        Seed of the random samples (each column's sample also depends on its name).

    Example:
        >>> ProfileOptions(max_domain=50).histogram_bins
        20
        >>> ProfileOptions(range_margin=-1)
        Traceback (most recent call last):
        ...
        driftline.baselines.model.BaselineError: range_margin must be at least 0, not -1
    """

    max_domain: int = 200
    range_margin: float = 0.1
    histogram_bins: int = 20
    sample_size: int = 2_000  # what the window comparisons were calibrated with; keeps 20 features under 1 MB on Kafka
    vocabulary_size: int = 10_000
    max_categories: int = 1_000
    text_min_tokens: float = 3.0
    quantile_k: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        minimum = {"max_domain": 0, "range_margin": 0, "histogram_bins": 1, "sample_size": 1, "vocabulary_size": 1,
                   "max_categories": 1, "text_min_tokens": 0, "quantile_k": 8}
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
                raise BaselineError(f"{name} must be at least {low}, not {value!r}")


class Reservoir:
    """A uniform random sample of at most ``size`` values of a stream (bottom-k random keys).

    Each value gets an independent uniform random key; the sample is the
    ``size`` values with the smallest keys, so every subset of ``size`` values
    is equally likely (each value is in it with probability ``size / seen``).
    Keys come from one seeded numpy generator, drawn in stream order, so the
    sample depends only on the seed and the sequence of values, not on how
    they are batched; a batch costs a few numpy calls (only keys below the
    current largest kept key are looked at). :attr:`sample` lists the kept
    values by key (a random order).

    Parameters
    ----------
    size
        The most values kept.
    seed
        Seed of the keys (an int, or a string such as a column name).

    Example:
        >>> r = Reservoir(size=3, seed=7).update_many(range(1000))
        >>> len(r.sample), r.seen
        (3, 1000)
        >>> r.sample == Reservoir(size=3, seed=7).update_many(range(500)).update_many(range(500, 1000)).sample
        True

    References
    ----------
    Pavlos S. Efraimidis and Paul G. Spirakis, "Weighted random sampling with a
    reservoir", Information Processing Letters 97(5), 2006 (here with equal weights).
    """

    def __init__(self, size: int = 5_000, seed: int | str = 0) -> None:
        if size < 1:
            raise ValueError(f"a reservoir holds at least 1 value, not {size}")
        self.size = size
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        seed = self.seed if isinstance(self.seed, int) else int.from_bytes(
            hashlib.sha256(str(self.seed).encode()).digest()[:8], "big")
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self._values = np.empty(0)
        self._largest = 1.0  # the largest kept key, once the sample is full
        self.seen = 0

    def update(self, x: float) -> Reservoir:
        """Offer one value."""
        return self.update_many((x,))

    def update_many(self, xs: Sequence[float] | np.ndarray) -> Reservoir:
        """Offer values, in order."""
        xs = np.asarray(xs, dtype=np.float64)
        keys = self._rng.random(xs.size)
        self.seen += xs.size
        if self._keys.size == self.size:
            smaller = keys < self._largest
            if not smaller.any():
                return self
            keys, xs = keys[smaller], xs[smaller]
        keys = np.concatenate((self._keys, keys))
        values = np.concatenate((self._values, xs))
        if keys.size > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            keys, values = keys[kept], values[kept]
            self._largest = float(keys.max())
        elif keys.size == self.size:
            self._largest = float(keys.max())
        self._keys, self._values = keys, values
        return self

    @property
    def sample(self) -> list[float]:
        """The kept values, by key."""
        return self._values[np.argsort(self._keys, kind="stable")].tolist()


class NumericSummary:
    """Count, mean, population standard deviation, min, max, quantiles and a sample of numbers.

    Moments are merged batch by batch with Chan et al.'s parallel update (each
    batch's mean and squared deviations computed by numpy), so they are as
    accurate as numpy's on the whole data. ``std`` is the population standard
    deviation (``ddof=0``). Quantiles come from a DataSketches KLL sketch:
    exact while there are at most ``quantile_k`` values, and within
    :attr:`rank_error` in rank beyond (the sketch compacts with random coin
    flips, seeded by DataSketches from the clock, so two runs over many values
    can differ within that bound). Non-finite values are ignored.

    The exact histogram needs the final min and max, so it usually takes a
    second look at the values (:class:`HistogramCounter`); :meth:`histogram`
    gives it at once while every value is at hand: all fit in the sample, or
    ``keep_values`` keeps them (until :meth:`forget_values`).

    Parameters
    ----------
    sample_size
        Size of the uniform random :attr:`sample` (a :class:`Reservoir`).
    quantile_k
        ``k`` of the KLL sketch (accuracy against size).
    seed
        Seed of the sample.
    keep_values
        Keep every value (8 bytes each, :attr:`kept_bytes`) for :meth:`histogram`.

    Example:
        >>> s = NumericSummary(sample_size=4).update_many([3.0, 1.0, 2.0, 4.0]).update(5.0)
        >>> s.count, s.mean, round(s.std, 6), s.min, s.max, s.integral
        (5, 3.0, 1.414214, 1.0, 5.0, True)
        >>> s.quantiles((0.5, 0.99)), len(s.sample), s.holds_every_value
        ({'0.5': 3.0, '0.99': 5.0}, 4, False)
        >>> NumericSummary(keep_values=True).update_many([1, 2, 2, 5]).histogram(bins=2)
        Histogram(edges=[1.0, 3.0, 5.0], counts=[3, 1])
    """

    def __init__(self, sample_size: int = 5_000, quantile_k: int = 1_000, seed: int | str = 0,
                 keep_values: bool = False) -> None:
        self.sample_size = sample_size
        self.quantile_k = quantile_k
        self.seed = seed
        self.keep_values = keep_values
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.integral = True
        self._sketch = kll_doubles_sketch(self.quantile_k)
        self.reservoir = Reservoir(self.sample_size, self.seed)
        self._kept: list[np.ndarray] | None = [] if self.keep_values else None
        self.kept_bytes = 0

    def update(self, x: float) -> NumericSummary:
        """Add one number."""
        return self.update_many(np.array([x], dtype=np.float64))

    def update_many(self, xs: Sequence[float] | np.ndarray) -> NumericSummary:
        """Add numbers (ideally a float64 numpy array: one batch costs a few numpy calls)."""
        xs = np.asarray(xs, dtype=np.float64)
        finite = np.isfinite(xs)
        if not finite.all():
            xs = xs[finite]
        n = xs.size
        if not n:
            return self
        mean = float(xs.mean())
        m2 = float(np.square(xs - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self._m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(xs.min()))
        self.max = max(self.max, float(xs.max()))
        if self.integral:
            self.integral = bool(np.all(np.floor(xs) == xs))
        self._sketch.update(xs)
        self.reservoir.update_many(xs)
        if self._kept is not None:
            self._kept.append(np.array(xs, copy=True))
            self.kept_bytes += xs.nbytes
        return self

    def forget_values(self) -> NumericSummary:
        """Stop keeping every value, and free those kept."""
        self._kept = None
        self.kept_bytes = 0
        return self

    @property
    def std(self) -> float:
        """The population standard deviation (``ddof=0``); 0 without values."""
        return math.sqrt(max(self._m2, 0.0) / self.count) if self.count else 0.0

    @property
    def rank_error(self) -> float:
        """The KLL sketch's a-priori normalized rank error of one quantile (99 % confidence)."""
        return 0.0 if not self._sketch.is_estimation_mode() else float(self._sketch.normalized_rank_error(False))

    def quantiles(self, probabilities: Iterable[float] = QUANTILES) -> dict[str, float]:
        """Probability (as text) → quantile: the smallest value whose rank reaches it
        (numpy's ``method="inverted_cdf"`` on exact data)."""
        probabilities = list(probabilities)
        if not self.count:
            return {}
        values = self._sketch.get_quantiles(probabilities, inclusive=True)
        return {str(p): float(v) for p, v in zip(probabilities, values)}

    def percentiles(self) -> list[float]:
        """The values at :data:`~driftline.baselines.model.PERCENTILE_PROBABILITIES`: minimum, sketch
        quantiles, maximum (empty without values)."""
        if not self.count:
            return []
        inner = self._sketch.get_quantiles(list(PERCENTILE_PROBABILITIES[1:-1]), inclusive=True)
        return [float(self.min), *(float(v) for v in inner), float(self.max)]

    @property
    def sample(self) -> list[float]:
        """A uniform random sample of the values (all of them while they fit), in random order."""
        return self.reservoir.sample

    @property
    def holds_every_value(self) -> bool:
        """Whether every value seen is at hand (kept, or all in the sample), for :meth:`histogram`."""
        return self._kept is not None or self.count <= self.reservoir.size

    def histogram(self, bins: int = 20) -> Histogram | None:
        """The exact histogram on :meth:`histogram_edges`, if every value is at hand, else ``None``."""
        if not self.holds_every_value:
            return None
        counter = HistogramCounter(self.histogram_edges(bins) or [0.0, 1.0])
        for xs in self._kept if self._kept is not None else [np.asarray(self.sample)]:
            counter.update_many(xs)
        return counter.histogram

    def histogram_edges(self, bins: int = 20) -> list[float]:
        """``bins + 1`` equal-width edges over ``[min, max]`` (numpy's, so a
        constant column gets ``[value - 0.5, value + 0.5]``)."""
        if not self.count:
            return []
        return [float(e) for e in np.histogram_bin_edges(np.array([self.min, self.max]), bins=bins)]


class HistogramCounter:
    """Exact counts of numbers in fixed bins, as :func:`numpy.histogram` with the same edges.

    ``counts[i]`` counts ``edges[i] <= x < edges[i+1]``, the last bin also its
    right edge. Values below the first edge count in the first bin, values
    above the last in the last bin (as a serving window is binned); non-finite
    values are ignored.

    Example:
        >>> h = HistogramCounter([0.0, 1.0, 2.0]).update_many([0.5, 1.0, 2.0]).update(-3.0)
        >>> h.histogram
        Histogram(edges=[0.0, 1.0, 2.0], counts=[2, 2])
    """

    def __init__(self, edges: Sequence[float]) -> None:
        if len(edges) < 2:
            raise ValueError("a histogram needs at least 2 edges")
        self.edges = [float(e) for e in edges]
        self._reset()

    def _reset(self) -> None:
        self._edges = np.asarray(self.edges, dtype=np.float64)
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def update(self, x: float) -> HistogramCounter:
        """Count one number."""
        return self.update_many(np.array([x], dtype=np.float64))

    def update_many(self, xs: Sequence[float] | np.ndarray) -> HistogramCounter:
        """Count numbers."""
        xs = np.asarray(xs, dtype=np.float64)
        xs = np.clip(xs[np.isfinite(xs)], self._edges[0], self._edges[-1])
        self.counts += np.histogram(xs, bins=self._edges)[0]
        return self

    @property
    def count(self) -> int:
        """Numbers counted."""
        return int(self.counts.sum())

    @property
    def histogram(self) -> Histogram:
        """The counts so far, as the baseline keeps them."""
        return Histogram(self.edges, self.counts.tolist())


class FrequentValues:
    """How often each value occurs: exact up to ``capacity`` distinct values,
    approximate (and bounded in memory) beyond.

    Counts are exact while at most ``capacity`` distinct values have been seen.
    One more, and they move into a DataSketches frequent-items sketch sized for
    ``capacity`` values: the most frequent values are still found, with counts
    overestimated by at most ``epsilon × total`` (:attr:`error_bound`).

    Parameters
    ----------
    keep
        How many of the most frequent values :meth:`top` returns.
    capacity
        Distinct values counted exactly (default ``10 × keep``).

    Example:
        >>> f = FrequentValues(keep=2).update_many("abracadabra")
        >>> f.top(), f.distinct, f.total, f.exact
        ({'a': 5, 'b': 2}, 5, 11, True)
    """

    def __init__(self, keep: int = 1_000, capacity: int | None = None) -> None:
        self.keep = keep
        self.capacity = 10 * keep if capacity is None else capacity
        if keep < 1 or self.capacity < keep:
            raise ValueError(f"keep ({keep}) must be at least 1 and at most capacity ({self.capacity})")
        self._reset()

    def _reset(self) -> None:
        self._counts: dict[str, int] = {}
        self._sketch: Any = None
        self.total = 0

    def update(self, value: str, count: int = 1) -> FrequentValues:
        """Count ``value`` ``count`` times."""
        return self.update_counts({value: count})

    def update_many(self, values: Iterable[str]) -> FrequentValues:
        """Count each value once per occurrence."""
        return self.update_counts(Counter(values))

    def update_counts(self, counts: Mapping[str, int]) -> FrequentValues:
        """Add counts: value → occurrences."""
        if self._sketch is None:
            mine = self._counts
            for value, n in counts.items():
                mine[value] = mine.get(value, 0) + n
            if len(mine) > self.capacity:
                self._sketch = frequent_strings_sketch(max(3, math.ceil(math.log2(self.capacity / 0.75))))
                for value, n in mine.items():
                    self._sketch.update(value, n)
                self._counts = {}
        else:
            for value, n in counts.items():
                self._sketch.update(value, n)
        self.total += sum(counts.values())
        return self

    @property
    def exact(self) -> bool:
        """Whether the counts are exact (at most ``capacity`` distinct values so far)."""
        return self._sketch is None

    @property
    def distinct(self) -> int | None:
        """Distinct values seen, or ``None`` once there are more than ``capacity``."""
        return len(self._counts) if self._sketch is None else None

    @property
    def error_bound(self) -> int:
        """The most a count of :meth:`top` can exceed the true count (0 while exact)."""
        return 0 if self._sketch is None else math.ceil(self._sketch.epsilon * self._sketch.total_weight)

    def top(self) -> dict[str, int]:
        """The ``keep`` most frequent values and their counts, most frequent first (ties by value)."""
        if self._sketch is None:
            items: Iterable[tuple[str, int]] = self._counts.items()
        else:
            found = self._sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES, 0)
            items = [(value, int(estimate)) for value, estimate, _lower, _upper in found]
        return dict(sorted(items, key=lambda item: (-item[1], item[0]))[: self.keep])


class BooleanSummary:
    """Counts of true and false values.

    Example:
        >>> b = BooleanSummary().update_many([True, False, True]).update(True)
        >>> b.count, b.true_count, b.stats(missing=2)
        (4, 3, BooleanStats(count=4, missing=2, true_count=3, type='boolean'))
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.true_count = 0

    def update(self, value: bool) -> BooleanSummary:
        """Count one boolean."""
        return self.update_many((value,))

    def update_many(self, values: Sequence[bool]) -> BooleanSummary:
        """Count booleans."""
        true = sum(1 for v in values if v)
        return self.update_counts(true, len(values) - true)

    def update_counts(self, true: int, false: int) -> BooleanSummary:
        """Count ``true`` true and ``false`` false values."""
        self.count += true + false
        self.true_count += true
        return self

    def stats(self, missing: int = 0) -> BooleanStats:
        """The baseline statistics, with ``missing`` rows that had no boolean."""
        return BooleanStats(count=self.count, missing=missing, true_count=self.true_count)


class CategoricalSummary:
    """Frequencies of string values, and of their words: the statistics of a
    categorical column, or of a text column (whichever it turns out to be).

    Parameters
    ----------
    keep, capacity
        As in :class:`FrequentValues`, for the values.
    vocabulary_size
        As in :class:`TextSummary`, for the words.

    Example:
        >>> c = CategoricalSummary().update_many(["web", "app", "web"]).update("In store")
        >>> c.count, c.frequencies.distinct, c.mean_tokens
        (4, 3, 1.25)
        >>> c.stats(missing=1)
        CategoricalStats(count=4, missing=1, frequencies={'web': 2, 'In store': 1, 'app': 1}, type='categorical')
        >>> c.text_stats(missing=1).vocabulary
        {'web': 2, 'app': 1, 'in': 1, 'store': 1}
    """

    def __init__(self, keep: int = 1_000, capacity: int | None = None, vocabulary_size: int = 10_000) -> None:
        self.keep = keep
        self.capacity = capacity
        self.vocabulary_size = vocabulary_size
        self._reset()

    def _reset(self) -> None:
        self.frequencies = FrequentValues(self.keep, self.capacity)
        self.words = FrequentValues(self.vocabulary_size)
        self.count = 0
        self.tokens = 0

    def update(self, value: str) -> CategoricalSummary:
        """Count one value."""
        return self.update_counts({value: 1})

    def update_many(self, values: Sequence[str]) -> CategoricalSummary:
        """Count values."""
        return self.update_counts(Counter(values))

    def update_counts(self, counts: Mapping[str, int]) -> CategoricalSummary:
        """Add counts: value → occurrences."""
        self.frequencies.update_counts(counts)
        self.count += sum(counts.values())
        # words of the values seen once, tokenized together; repeated values weighted by their count
        once = _TOKEN.findall("\n".join(value for value, n in counts.items() if n == 1).lower())
        words = Counter(once)
        tokens = len(once)
        for value, n in counts.items():
            if n > 1:
                found = _TOKEN.findall(value.lower())
                tokens += n * len(found)
                for word in found:
                    words[word] += n
        self.tokens += tokens
        self.words.update_counts(words)
        return self

    @property
    def mean_tokens(self) -> float:
        """Mean words per value (0 without values)."""
        return self.tokens / self.count if self.count else 0.0

    def stats(self, missing: int = 0) -> CategoricalStats:
        """The baseline statistics of a categorical column, with ``missing`` rows that had no value."""
        return CategoricalStats(count=self.count, missing=missing, frequencies=self.frequencies.top())

    def text_stats(self, missing: int = 0) -> TextStats:
        """The baseline statistics of a text column, with ``missing`` rows that had no value."""
        return TextStats(count=self.count, missing=missing, tokens=self.tokens, vocabulary=self.words.top())


class TextSummary:
    """Token counts of free text: lower-cased ``\\w+`` words (:func:`tokenize`).

    Parameters
    ----------
    vocabulary_size
        How many of the most frequent tokens the statistics keep.

    Example:
        >>> t = TextSummary(vocabulary_size=2).update_many(["Late delivery", "late again, LATE"])
        >>> t.count, t.tokens, t.stats(missing=0).vocabulary
        (2, 5, {'late': 3, 'again': 1})
    """

    def __init__(self, vocabulary_size: int = 10_000) -> None:
        self.vocabulary_size = vocabulary_size
        self._reset()

    def _reset(self) -> None:
        self.vocabulary = FrequentValues(self.vocabulary_size)
        self.count = 0
        self.tokens = 0

    def update(self, text: str) -> TextSummary:
        """Count one text's tokens."""
        return self.update_many((text,))

    def update_many(self, texts: Sequence[str]) -> TextSummary:
        """Count the tokens of several texts."""
        tokens = _TOKEN.findall("\n".join(texts).lower())  # \w never matches the newline: no token spans two texts
        self.count += len(texts)
        self.tokens += len(tokens)
        self.vocabulary.update_many(tokens)
        return self

    def stats(self, missing: int = 0) -> TextStats:
        """The baseline statistics, with ``missing`` rows that had no text."""
        return TextStats(count=self.count, missing=missing, tokens=self.tokens, vocabulary=self.vocabulary.top())


# -- classifying raw values -------------------------------------------------------------


def _where(name: str, row: int) -> str:
    return f"row {row}, column {name!r}"


def _classify(value: Any, typed: bool, name: str, row: int) -> tuple[str, Any]:
    """``(kind, value)``: kind is missing, number, boolean or string; value the float, bool or str."""
    if value is None:
        return "missing", None
    kind = type(value)
    if kind is str:
        if not value:
            return "missing", None
        if typed:
            return "string", value
        if value[0] in _NUMBER_START:
            try:
                x = float(value)
            except ValueError:
                return "string", value
            return ("number", x) if math.isfinite(x) else ("missing", None)
        flag = _BOOLEAN_TEXT.get(value.lower())
        return ("string", value) if flag is None else ("boolean", flag)
    if kind is bool or isinstance(value, (bool, np.bool_)):
        return "boolean", bool(value)
    if isinstance(value, (int, float, Decimal, np.number)):
        try:
            x = float(value)
        except OverflowError:
            return "missing", None
        return ("number", x) if math.isfinite(x) else ("missing", None)
    if isinstance(value, (datetime, date, time)):
        return "string", value.isoformat()
    if isinstance(value, UUID):
        return "string", str(value)
    raise BaselineError(f"{_where(name, row)}: cannot profile a value of type {type(value).__name__} "
                        "(nested values must be flattened into columns first)")


class _Batch(NamedTuple):
    """A batch of raw values, classified."""

    numbers: np.ndarray  # finite, in batch order
    true: int
    false: int
    strings: dict[str, int]  # value → occurrences
    missing: int


def _split(values: Sequence[Any], typed: bool, name: str, start: int) -> _Batch:
    """Classify a batch of raw values, fast for the usual batches of one kind."""
    empty = np.empty(0)
    if not typed:  # CSV: text or None
        try:
            numbers = np.array(values, dtype=np.float64)  # parses as float() does; None becomes NaN
        except ValueError:
            pass
        else:
            finite = np.isfinite(numbers)
            if not finite.all():
                numbers = numbers[finite]
            return _Batch(numbers, 0, 0, {}, len(values) - numbers.size)
        present = [v for v in values if v is not None] if None in values else values
        # each distinct text is classified once
        kinds = {v: _classify(v, typed, name, 0) for v in set(present)}
        numbers_list = [kinds[v][1] for v in present if kinds[v][0] == "number"] if any(
            k == "number" for k, _ in kinds.values()) else []
        counts = Counter(present)
        strings: dict[str, int] = {}
        flags = {True: 0, False: 0}
        missing = len(values) - len(present)
        for value, n in counts.items():
            kind, converted = kinds[value]
            if kind == "string":
                strings[converted] = n
            elif kind == "boolean":
                flags[converted] += n
            elif kind == "missing":
                missing += n
        return _Batch(np.array(numbers_list, dtype=np.float64), flags[True], flags[False], strings, missing)
    kinds_seen = set(map(type, values))
    if kinds_seen <= {float, int, _NONE}:
        try:
            numbers = np.array(values, dtype=np.float64)  # None becomes NaN
        except OverflowError:
            pass
        else:
            numbers = numbers[np.isfinite(numbers)]
            return _Batch(numbers, 0, 0, {}, len(values) - numbers.size)
    elif kinds_seen <= {str, _NONE}:
        strings = Counter(values)
        missing = strings.pop(None, 0) + strings.pop("", 0)
        return _Batch(empty, 0, 0, strings, missing)
    elif kinds_seen <= {bool, _NONE}:
        true = values.count(True)
        missing = values.count(None)
        return _Batch(empty, true, len(values) - true - missing, {}, missing)
    # mixed types: one value at a time (a Counter would merge True, 1 and 1.0)
    numbers_: list[float] = []
    strings_: Counter[str] = Counter()
    flags_ = {True: 0, False: 0}
    missing = 0
    for i, value in enumerate(values):
        kind, converted = _classify(value, typed, name, start + i + 1)
        if kind == "number":
            numbers_.append(converted)
        elif kind == "string":
            strings_[converted] += 1
        elif kind == "boolean":
            flags_[converted] += 1
        else:
            missing += 1
    return _Batch(np.array(numbers_, dtype=np.float64), flags_[True], flags_[False], strings_, missing)


def as_number(value: Any, typed: bool = True) -> float:
    """A raw value as a number column reads it: the float, or NaN when it is missing,
    a boolean, a string (in CSV: text that is no number) or of a type the
    profiler does not read.

    Example:
        >>> as_number("2.5", typed=False), as_number(3), as_number("3"), as_number(True), as_number(None)
        (2.5, 3.0, nan, nan, nan)
    """
    try:
        kind, converted = _classify(value, typed, "", 0)
    except BaselineError:
        return math.nan
    return float(converted) if kind == "number" else math.nan


def _number_text(raw: Any, typed: bool) -> str:
    """A number as a category: as written in CSV, else its JSON spelling."""
    if not typed or isinstance(raw, str):
        return str(raw)
    if isinstance(raw, float):
        return repr(raw)
    return str(raw)


def _as_text(value: Any, typed: bool, name: str, row: int) -> str | None:
    """A raw value as a categorical or text value; ``None`` if missing."""
    kind, converted = _classify(value, typed, name, row)
    if kind == "missing":
        return None
    if kind == "boolean":
        return "true" if converted else "false"
    if kind == "number":
        return _number_text(value, typed)
    return converted


class ColumnResult(NamedTuple):
    """What a profiled column gives the baseline: its schema (``None`` for the
    label and prediction, which have none) and its statistics."""

    schema: FeatureSchema | None
    statistics: FeatureStats


class ColumnProfile:
    """One column of a training file, profiled in one or two passes over its values.

    Feed every row's value to :meth:`update_many` (``None`` where the row had
    none; :meth:`add_missing` for rows without the column), call
    :meth:`end_first_pass` — it decides the type (module docstring) and says
    whether a second pass is needed — then, if so, feed the same values, in
    the same order, to :meth:`update_second`. :meth:`result` gives the schema
    and statistics.

    Parameters
    ----------
    name
        The column's name (also seeds its sample).
    role
        ``feature``; or ``label`` / ``prediction``, which get statistics but no
        schema, and are numeric or categorical (never boolean or text:
        booleans become the categories ``true`` and ``false``).
    kind
        ``categorical`` or ``text`` to skip inference: every value is then
        taken as text.
    typed
        Whether values come typed (JSON, Avro, Parquet); ``False`` for CSV,
        whose fields are text to parse.
    options
        Profiling settings.
    keep_values
        Keep the column's numbers in memory (8 bytes each, :attr:`kept_bytes`)
        so that a numeric column needs no second pass; see :meth:`forget_values`.

    Example:
        A mostly-string column keeps its one number as a category, after a
        second pass to count it:

        >>> column = ColumnProfile("channel")
        >>> values = ["web", "app", 7, "web", None]
        >>> _ = column.update_many(values)
        >>> column.end_first_pass(), column.type
        (True, 'categorical')
        >>> _ = column.update_second(values)
        >>> schema, stats = column.result()
        >>> schema.domain, schema.required, stats.frequencies
        (['7', 'app', 'web'], False, {'web': 2, '7': 1, 'app': 1})
    """

    def __init__(self, name: str, *, role: Role = "feature", kind: Literal["categorical", "text"] | None = None,
                 typed: bool = True, options: ProfileOptions | None = None, keep_values: bool = False) -> None:
        if role not in ("feature", "label", "prediction"):
            raise BaselineError(f"column {name!r}: role must be feature, label or prediction, not {role!r}")
        if kind not in (None, "categorical", "text") or (kind == "text" and role != "feature"):
            raise BaselineError(f"column {name!r}: a {role} cannot be of kind {kind!r}")
        self.name = name
        self.role = role
        self.kind = kind
        self.typed = typed
        self.options = options or ProfileOptions()
        self.keep_values = keep_values
        self._reset()

    def _reset(self) -> None:
        o = self.options
        self.rows = 0
        self.missing = 0
        self.numbers = NumericSummary(o.sample_size, o.quantile_k, seed=f"{o.seed}:{self.name}",
                                      keep_values=self.keep_values)
        self.booleans = BooleanSummary()
        keep = max(o.max_categories, o.max_domain)
        self.strings = CategoricalSummary(keep, max(10 * keep, o.max_domain + 1), o.vocabulary_size)
        self.text = TextSummary(o.vocabulary_size) if self.kind == "text" else None
        self._type: FeatureType | None = None
        self._second: Literal["histogram", "numbers"] | None = None
        self._second_count = 0
        self._histogram: HistogramCounter | None = None

    # -- first pass -----------------------------------------------------------------

    def update(self, value: Any) -> ColumnProfile:
        """Add one row's value (first pass)."""
        return self.update_many((value,))

    def update_many(self, values: Sequence[Any], start: int = 0) -> ColumnProfile:
        """Add consecutive rows' values (first pass); ``start`` is the 0-based
        index of the first one's row, for error messages."""
        if self._type is not None:
            raise RuntimeError(f"column {self.name!r}: the first pass has ended")
        self.rows += len(values)
        if self.kind is not None:
            texts = [t for i, v in enumerate(values) if (t := _as_text(v, self.typed, self.name, start + i + 1))]
            self.missing += len(values) - len(texts)
            (self.text or self.strings).update_many(texts)
            return self
        batch = _split(values, self.typed, self.name, start)
        self.missing += batch.missing
        if batch.numbers.size:
            self.numbers.update_many(batch.numbers)
        if batch.true or batch.false:
            self.booleans.update_counts(batch.true, batch.false)
        if batch.strings:
            self.strings.update_counts(batch.strings)
        return self

    @property
    def kept_bytes(self) -> int:
        """Memory held by the numbers kept with ``keep_values``."""
        return self.numbers.kept_bytes

    def forget_values(self) -> ColumnProfile:
        """Stop keeping the column's numbers (a numeric column then needs a second pass)."""
        self.numbers.forget_values()
        return self

    def add_missing(self, rows: int) -> ColumnProfile:
        """Count ``rows`` rows that did not have the column at all (first pass)."""
        self.rows += rows
        self.missing += rows
        return self

    @property
    def type(self) -> FeatureType:
        """The column's type, decided by :meth:`end_first_pass`."""
        if self._type is None:
            raise RuntimeError(f"column {self.name!r}: the type is known once the first pass has ended")
        return self._type

    def _infer(self) -> FeatureType:
        if self.kind is not None:
            return self.kind
        n_numbers, n_booleans, n_strings = self.numbers.count, self.booleans.count, self.strings.count
        if self.role != "feature":
            return "numeric" if n_numbers > max(n_booleans, n_strings) else "categorical"
        if n_strings >= max(n_numbers, n_booleans):  # also when the column has no value at all
            distinct = self.strings.frequencies.distinct
            many = distinct is None or distinct > self.options.max_domain
            return "text" if many and self.strings.mean_tokens >= self.options.text_min_tokens else "categorical"
        return "numeric" if n_numbers >= n_booleans else "boolean"

    def end_first_pass(self) -> bool:
        """Decide the type; ``True`` if :meth:`update_second` must see the values again."""
        if self._type is not None:
            return self._second is not None
        self._type = self._infer()
        if self._type != "numeric":
            self.numbers.forget_values()
        if self.kind is not None:
            return False
        if self._type == "numeric" and not self.numbers.holds_every_value:
            self._second = "histogram"
            self._histogram = HistogramCounter(self.numbers.histogram_edges(self.options.histogram_bins))
        elif self._type in ("categorical", "text"):
            flags = {"true": self.booleans.true_count, "false": self.booleans.count - self.booleans.true_count}
            self.strings.update_counts({value: n for value, n in flags.items() if n})
            if self.numbers.count:
                self._second = "numbers"
        return self._second is not None

    # -- second pass ----------------------------------------------------------------

    def update_second(self, values: Sequence[Any], start: int = 0) -> ColumnProfile:
        """Add consecutive rows' values again (second pass, same order as the first)."""
        if self._second is None:
            raise RuntimeError(f"column {self.name!r} needs no second pass")
        if self._second == "histogram":
            numbers = _split(values, self.typed, self.name, start).numbers
            self._histogram.update_many(numbers)  # type: ignore[union-attr]
            self._second_count += numbers.size
        else:
            numbers = [_number_text(v, self.typed) for i, v in enumerate(values)
                       if _classify(v, self.typed, self.name, start + i + 1)[0] == "number"]
            self.strings.update_many(numbers)
            self._second_count += len(numbers)
        return self

    # -- result ---------------------------------------------------------------------

    def result(self) -> ColumnResult:
        """The column's schema (``None`` for a label or prediction) and statistics."""
        self.end_first_pass()
        expected = self.numbers.count if self._second else 0
        if self._second_count != expected:
            raise BaselineError(f"column {self.name!r}: the second pass saw {self._second_count:,} values where the "
                                f"first saw {expected:,} (did the file change while it was read?)")
        o = self.options
        kind = self.type
        if kind == "numeric":
            s = self.numbers
            histogram = self._histogram.histogram if self._histogram is not None else s.histogram(o.histogram_bins)
            assert histogram is not None
            missing = self.rows - s.count
            stats: FeatureStats = NumericStats(count=s.count, missing=missing, mean=s.mean, std=s.std, min=s.min,
                                               max=s.max, quantiles=s.quantiles(), histogram=histogram,
                                               sample=list(s.sample), percentiles=s.percentiles())
            low, high = widened_range(s.min, s.max, o.range_margin)
            schema = FeatureSchema(self.name, "numeric", required=missing == 0, min=low, max=high, integral=s.integral)
        elif kind == "boolean":
            stats = self.booleans.stats(missing=self.rows - self.booleans.count)
            schema = FeatureSchema(self.name, "boolean", required=stats.missing == 0)
        elif kind == "text":
            if self.text is not None:  # named as text: only words were counted
                stats = self.text.stats(missing=self.rows - self.text.count)
            else:
                stats = self.strings.text_stats(missing=self.rows - self.strings.count)
            schema = FeatureSchema(self.name, "text", required=stats.missing == 0)
        else:
            stats = self.strings.stats(missing=self.rows - self.strings.count)
            distinct = self.strings.frequencies.distinct
            domain = sorted(stats.frequencies) if distinct is not None and 0 < distinct <= o.max_domain else None
            schema = FeatureSchema(self.name, "categorical", required=stats.missing == 0, domain=domain)
        return ColumnResult(schema if self.role == "feature" else None, stats)
