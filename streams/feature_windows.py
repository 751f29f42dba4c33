"""Serving windows of features, predictions and labels, and their comparison with a reference.

One *window accumulator* summarizes one feature (or the model's output, or
the ground truth) over one serving window, River-style: ``update(value)``
adds a value and returns the accumulator, ``merge(other)`` adds another
accumulator of the same window (another partition, another batch) in place,
``to_json()`` / ``from_json()`` give a small JSON object for a changelogged
Faust table. Memory is bounded whatever the window's length. Nothing here does
I/O; :mod:`driftline.streams.distances` computes the distances.

The accumulators and their (bounded) state:

:class:`NumericWindow`
    count, missing; counts in the baseline histogram's bins (values outside
    the edges in the end bins, and counted as ``below`` / ``above``); a
    uniform sample of at most ``sample_size`` values (default 1,000) for KS
    and Wasserstein.
:class:`CategoricalWindow`
    count, missing; a count per value for the baseline's ``known`` values (its
    200 most frequent) and for at most ``max_unknown`` other values (default
    50); every other value counted under :data:`OTHER`.
:class:`BooleanWindow`
    count, missing, true count.
:class:`TextWindow`
    count, missing; tokens (:func:`~driftline.streams.distances.tokenize`)
    seen in the baseline vocabulary, and tokens not seen.
:class:`NoveltyWindow`
    events scored by the baseline's novelty model
    (:class:`~driftline.baselines.novelty.NoveltyModel`), how many were
    outliers, feature values filled; and at most ``batch_size`` (256) events'
    values waiting to be scored together.

A missing value (``None``; for numbers also NaN and infinities) only counts as
missing. :class:`ServingWindow` holds one accumulator per feature of a
:class:`~driftline.baselines.model.Baseline`, plus the prediction and the
label, and reads canonical serving events.

Merging is exact
----------------
``a.merge(b)`` equals one accumulator fed ``a``'s and then ``b``'s values:

* **Numeric sample** (bottom-k sampling): each value gets a pseudo-random
  priority, a 64-bit mix (SplitMix64) of the accumulator's ``seed`` and the
  value's *key* (by default its position in the accumulator, 0, 1, 2 ...; pass
  ``key=`` to use e.g. a global position or an offset), and the sample is the
  ``sample_size`` values of smallest priority. The smallest priorities of a
  union are the smallest of the two parts' smallest, so merging keeps exactly
  the sample one accumulator would have kept, given the same keys. The sample
  is a uniform sample without replacement of the window, deterministic (a
  replay gives the same sample), and the whole window while it has at most
  ``sample_size`` values. Two accumulators built with the same seed and default
  keys give equal priorities to their i-th values: the merged sample is still
  uniform (every value has the same chance to be in it) but the parts'
  selections are coupled; give partitions distinct seeds (e.g. the partition
  number) to avoid that.
* **Categories**: the ``known`` values always have their own count; among the
  others, the ``max_unknown`` with the smallest hash (BLAKE2b of the value)
  have theirs, and a tracked value displaced by one with a smaller hash moves
  its count to :data:`OTHER`. A value tracked at the end was tracked on both
  sides since its first occurrence, so counts and :data:`OTHER` are exact
  under merging (unlike keeping the first values seen).

Error of the sample
-------------------
For a window of ``n > sample_size`` values, KS and Wasserstein are computed on
a uniform sample of ``k = sample_size`` of them. By the DKW inequality the
sample's empirical CDF is within ``sqrt(ln(2 / delta) / (2 k))`` of the
window's with probability ``1 - delta``: 0.043 for ``k = 1000`` and ``delta =
0.05``, so the KS statistic is within 0.043 of the whole window's. The
Wasserstein distance moves by at most ``W(sample, window)``: for normal data,
0.036 standard deviations on average, 0.072 at the 99th percentile (k = 1,000
of n = 5,000, 300 simulated windows). The KS p-value is the test of the sample
(conservative: less power than the whole window). Histogram counts, categories
and tokens are exact. An Apache DataSketches KLL sketch would bound the rank
error tighter for the same memory (1.3 % for k = 200), but its compaction is
random (a replay could give other numbers) and it holds the exact values only
below ``k``; the bottom-k sample is deterministic and exact up to 1,000
values, which is where KS p-values decide (below).

Comparison and thresholds
-------------------------
:func:`compare` (a feature against its baseline statistics),
:func:`compare_stats` (the same for the prediction or the label) and
:func:`compare_windows` (a window against the previous one) return a
:class:`Finding` per measure. Which findings can raise drift depends on the
*comparison size*, the smaller of the window's count and the reference's:

* below ``large_window`` (1,000) values, significance tests decide: the KS
  test for numbers, the chi-squared test for categories and booleans, drift
  when ``p < alpha`` (0.05), as Evidently does for small data;
* from ``large_window`` values, effect sizes decide, with Evidently's
  thresholds: Wasserstein normalized by the reference standard deviation
  ``>= 0.1``, Jensen-Shannon distance ``>= 0.1``, PSI ``>= 0.25`` (``>= 0.1``
  sets ``warning``), and L-infinity ``>= 0.1``; the KS statistic and
  chi-squared statistic are reported, not alarmed on;
* an effect size also needs its test's ``p < guard_alpha`` (0.01; the
  chi-squared test of the same counts for L-infinity, Jensen-Shannon and PSI,
  the KS test of the samples for Wasserstein). Sampling noise alone reaches
  the thresholds: the Jensen-Shannon distance of a 100-category feature at
  1,000 values is about ``sqrt((k - 1) / (5.5 n))`` = 0.13 on stable data,
  and the Wasserstein distance between a 1,000-value window sample and a
  2,000-value baseline sample was at least 0.1 in 10 % (5,000-value windows)
  to 17 % (1,000) of stable simulated windows (normal data, one baseline
  sample; most of it is the baseline sample's own error). With the guard:
  no stable window of 150 drifted at 1,000 or 5,000 values (numbers, and 5,
  20 or 100 categories), except Jensen-Shannon on 100 categories at 1,000
  values (2 %). The cost is power near the threshold for Wasserstein, whose
  test sees only the samples: a mean shift of 0.1 standard deviation drifted
  in 18 % of 5,000-value windows, 0.15 in 78 %, 0.2 in 97 %, 0.3 in all. The
  count-based measures lose nothing: a change of their threshold's size is
  far beyond the chi-squared test's noise at 1,000 values;
* no finding drifts below ``min_count`` (100) values (for text: tokens);
* unseen tokens drift when their rate reaches the reference's own unseen rate
  plus ``unseen_tokens`` (0.1): the baseline vocabulary is bounded, so some
  training tokens were "unseen" too; 10 more points of tokens the model never
  saw (new products, a new language, a changed template) is worth a look;
* novelty (:func:`compare_novelty`) drifts when the window's outlier share is
  above ``novelty`` (2) times the share of held-out training rows that were
  outliers (about 1 %), *and* significantly above it: Fisher's exact test of
  the two counts (the window's, and the calibration rows'), one-sided,
  ``p < alpha``. The test covers a small window's noise (at 100 events and
  1 % expected, 4 outliers are needed) and the calibration sample's own (the
  expected share is an estimate from a few thousand rows); the ratio keeps a
  large window from drifting on a share that is significant but too close to
  the expected one to act on (a slightly miscalibrated threshold).

The tests' ``alpha`` is per test: a window of ``m`` tested streams (features,
prediction, label) below ``large_window`` has up to ``1 - 0.95^m`` chance of
some false alarm (30 % for 7 streams, as simulated). Lower ``alpha`` (e.g.
``0.05 / m``) or use larger windows where that is too many.

L-infinity has no default in TFDV (its example uses 0.01, a threshold for
whole datasets): 0.1, ten points of one value's share, is above the sampling
noise of every window of at least 1,000 values (at most 0.05 at four standard
errors) and is a change people act on. Every threshold can be overridden per
feature (:meth:`DriftThresholds.for_feature`). KL divergence is reported, never
alarmed on.

A drifted finding becomes a :class:`~driftline.streams.alerts.DriftEvent` with
:func:`drift_event`.

Example:
    >>> from driftline.baselines.model import CategoricalStats, FeatureSchema
    >>> stats = CategoricalStats(count=10_000, missing=0, frequencies={"web": 6000, "app": 3000, "store": 1000})
    >>> window = window_for(stats)
    >>> for i in range(2000):
    ...     _ = window.update("web" if i % 2 else "app")
    >>> findings = compare(window, FeatureSchema("channel", "categorical"), stats)
    >>> [(f.metric, round(f.value, 3), f.drifted) for f in findings]
    [('chi_squared', 428.571, False), ('linf', 0.2, True), ('jensen_shannon', 0.267, True), ('psi', 0.811, True), ('kl', 0.648, False)]
    >>> drift_event(findings[1], model_name="shop", model_version="4", window_start_ms=1_790_000_000_000,
    ...             window_size_ms=3_600_000).describe()
    'data drift on feature.channel/channel of shop 4 (all traffic): linf in the 3600 s window from 2026-09-21T14:13:20.000Z, 2000 values (statistic=0.2, threshold=0.1, p_value=...)'
"""

from __future__ import annotations

import hashlib
import heapq
import math
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Union

import numpy as np

from scipy import stats as scipy_stats

from driftline.baselines.model import (
    PERCENTILE_PROBABILITIES,
    Baseline,
    BooleanStats,
    CategoricalStats,
    FeatureSchema,
    FeatureStats,
    NumericStats,
    TextStats,
)
from driftline.baselines.novelty import NoveltyModel
from driftline.streams import distances
from driftline.streams.alerts import DriftEvent, DriftKind

__all__ = [
    "BASELINE_REFERENCE",
    "DEFAULT_MAX_KNOWN",
    "DEFAULT_MAX_UNKNOWN",
    "DEFAULT_NOVELTY_BATCH",
    "DEFAULT_SAMPLE_SIZE",
    "DEFAULT_THRESHOLDS",
    "NOVELTY",
    "OTHER",
    "PREVIOUS_WINDOW",
    "BooleanWindow",
    "CategoricalWindow",
    "DriftThresholds",
    "FeatureWindow",
    "Finding",
    "NoveltyWindow",
    "NumericWindow",
    "REFERENCE_POINTS",
    "ServingWindow",
    "TextWindow",
    "compare",
    "compare_novelty",
    "compare_stats",
    "compare_windows",
    "drift_event",
    "drift_events",
    "reference_values",
    "window_for",
    "window_from_json",
]

#: Values beyond the tracked ones are counted under this name (as in :mod:`driftline.streams.metrics`).
OTHER = "__other__"
#: Values kept in a numeric window's sample: all of them in windows up to this size.
DEFAULT_SAMPLE_SIZE = 1000
#: Values of a categorical window outside the baseline's known ones that get their own count.
DEFAULT_MAX_UNKNOWN = 50
#: The baseline's most frequent values that always get their own count.
DEFAULT_MAX_KNOWN = 200
#: :attr:`Finding.reference` of a comparison with the training baseline.
BASELINE_REFERENCE = "baseline"
#: :attr:`Finding.reference` of a comparison with the previous window.
PREVIOUS_WINDOW = "previous_window"
#: The feature name and metric of the novelty finding.
NOVELTY = "novelty"
#: Events a :class:`NoveltyWindow` scores together (one NumPy pass over the trees).
DEFAULT_NOVELTY_BATCH = 256

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finalizer: a bijection of 64-bit integers that spreads every input bit."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _category_hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def _check_type(obj: Mapping[str, Any], expected: str) -> None:
    if not isinstance(obj, Mapping) or obj.get("type") != expected:
        raise ValueError(f"not a {expected} window: {obj.get('type') if isinstance(obj, Mapping) else obj!r}")


# --- accumulators --------------------------------------------------------------------------------


class NumericWindow:
    """One numeric feature (or regression output or label) over one window.

    Parameters
    ----------
    edges
        The baseline histogram's bin edges (:class:`~driftline.baselines.model.Histogram`);
        empty for no histogram.
    sample_size
        Most values kept in the sample (bottom-k by priority; see the module's
        *Merging is exact*).
    seed
        Salt of the sampling priorities; give merged partitions distinct seeds.

    Example:
        >>> w = NumericWindow(edges=[0.0, 1.0, 2.0], sample_size=3)
        >>> for x in [0.5, 1.5, 7.0, None, -2.0]:
        ...     _ = w.update(x)
        >>> w.count, w.missing, w.bins, w.below, w.above, len(w.sample)
        (4, 1, [2, 2], 1, 1, 3)
        >>> NumericWindow.from_json(w.to_json()) == w
        True
    """

    type = "numeric"

    def __init__(self, edges: Sequence[float] = (), sample_size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0) -> None:
        self.edges = [float(e) for e in edges]
        if len(self.edges) == 1 or any(not math.isfinite(e) for e in self.edges) or any(
            b < a for a, b in zip(self.edges, self.edges[1:])
        ):
            raise ValueError("edges must be empty or at least two sorted finite numbers")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(f"sample_size must be an integer >= 1, not {sample_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        self.sample_size = sample_size
        self.seed = seed
        self._salt = _mix64(seed & _MASK64)
        self.count = 0
        self.missing = 0
        self.bins = [0] * max(len(self.edges) - 1, 0)
        self.below = 0
        self.above = 0
        self._heap: list[tuple[int, float]] = []  # (-priority, value): a max-heap on priority

    def update(self, value: float | None, key: int | None = None) -> NumericWindow:
        """Add one value (None, NaN or infinite: missing); ``key`` replaces its position in the priority."""
        if value is None or not math.isfinite(value):
            self.missing += 1
            return self
        x = float(value)
        if self.bins:
            i = bisect_right(self.edges, x) - 1
            if i < 0:
                i = 0
                self.below += 1
            elif i >= len(self.bins):
                i = len(self.bins) - 1
                if x > self.edges[-1]:
                    self.above += 1
            self.bins[i] += 1
        priority = _mix64(self._salt ^ ((self.count if key is None else key) & _MASK64)) >> 11
        self.count += 1
        if len(self._heap) < self.sample_size:
            heapq.heappush(self._heap, (-priority, x))
        elif priority < -self._heap[0][0]:
            heapq.heapreplace(self._heap, (-priority, x))
        return self

    @property
    def sample(self) -> list[float]:
        """The sampled values, in priority order."""
        return [v for _, v in sorted(self._heap, reverse=True)]

    def sample_array(self) -> np.ndarray:
        """The sampled values as a NumPy array (in no particular order)."""
        return np.fromiter((v for _, v in self._heap), dtype=np.float64, count=len(self._heap))

    def merge(self, other: NumericWindow) -> NumericWindow:
        """Add ``other`` (same edges and sample size) into this window; returns ``self``."""
        if not isinstance(other, NumericWindow) or other.edges != self.edges or other.sample_size != self.sample_size:
            raise ValueError("can only merge numeric windows with the same edges and sample size")
        self.count += other.count
        self.missing += other.missing
        self.bins = [a + b for a, b in zip(self.bins, other.bins)]
        self.below += other.below
        self.above += other.above
        combined = self._heap + other._heap
        if len(combined) > self.sample_size:
            combined = heapq.nlargest(self.sample_size, combined)
        heapq.heapify(combined)
        self._heap = combined
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object (sample as ``[priority, value]`` pairs, by priority)."""
        return {
            "type": self.type,
            "edges": list(self.edges),
            "sample_size": self.sample_size,
            "seed": self.seed,
            "count": self.count,
            "missing": self.missing,
            "bins": list(self.bins),
            "below": self.below,
            "above": self.above,
            "sample": [[-p, v] for p, v in sorted(self._heap, reverse=True)],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> NumericWindow:
        """Rebuild a window from :meth:`to_json`."""
        _check_type(obj, cls.type)
        window = cls(obj["edges"], int(obj["sample_size"]), int(obj["seed"]))
        window.count, window.missing = int(obj["count"]), int(obj["missing"])
        window.below, window.above = int(obj["below"]), int(obj["above"])
        window.bins = [int(c) for c in obj["bins"]]
        if len(window.bins) != max(len(window.edges) - 1, 0) or len(obj["sample"]) > window.sample_size:
            raise ValueError("numeric window state does not match its edges or sample size")
        window._heap = [(-int(p), float(v)) for p, v in obj["sample"]]
        heapq.heapify(window._heap)
        return window

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericWindow) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NumericWindow(count={self.count}, missing={self.missing}, sample={len(self._heap)}/{self.sample_size})"


class CategoricalWindow:
    """One categorical feature (or class label) over one window: bounded value counts.

    Parameters
    ----------
    known
        Values that always get their own count: the baseline's most frequent ones.
    max_unknown
        How many other values get their own count (those with the smallest
        hash); the rest are counted in :attr:`other` (:data:`OTHER`).

    Example:
        >>> w = CategoricalWindow(known=["app", "web"], max_unknown=1)
        >>> for v in ["web", "web", "fax", "kiosk", None, "app"]:
        ...     _ = w.update(v)
        >>> w.count, w.missing, len(w.counts), w.other, w.frequencies()["web"]
        (5, 1, 3, 1, 2)
        >>> CategoricalWindow.from_json(w.to_json()) == w
        True
    """

    type = "categorical"

    def __init__(self, known: Iterable[str] = (), max_unknown: int = DEFAULT_MAX_UNKNOWN) -> None:
        if isinstance(max_unknown, bool) or not isinstance(max_unknown, int) or max_unknown < 0:
            raise ValueError(f"max_unknown must be an integer >= 0, not {max_unknown!r}")
        self.known = frozenset(str(v) for v in known)
        self.max_unknown = max_unknown
        self.count = 0
        self.missing = 0
        self.other = 0
        self.counts: dict[str, int] = {}
        self._unknown: dict[str, int] = {}  # tracked value outside known -> its hash
        self._largest: tuple[int, str] | None = None  # largest (hash, value) of _unknown

    def update(self, value: str | None) -> CategoricalWindow:
        """Add one value (None: missing); values are compared as text."""
        if value is None:
            self.missing += 1
            return self
        self.count += 1
        if not isinstance(value, str):
            value = str(value)
        n = self.counts.get(value)
        if n is not None:
            self.counts[value] = n + 1
        elif value in self.known:
            self.counts[value] = 1
        else:
            self._add_unknown(value, _category_hash(value), 1)
        return self

    def _add_unknown(self, value: str, digest: int, n: int) -> None:
        if len(self._unknown) < self.max_unknown:
            self._unknown[value] = digest
            self.counts[value] = n
            if self._largest is None or (digest, value) > self._largest:
                self._largest = (digest, value)
        elif self._largest is not None and (digest, value) < self._largest:
            evicted = self._largest[1]
            self.other += self.counts.pop(evicted)
            del self._unknown[evicted]
            self._unknown[value] = digest
            self.counts[value] = n
            self._largest = max((h, v) for v, h in self._unknown.items())
        else:
            self.other += n

    def frequencies(self) -> dict[str, int]:
        """Counts per value, with :data:`OTHER` when some values were not tracked."""
        out = dict(self.counts)
        if self.other:
            out[OTHER] = out.get(OTHER, 0) + self.other
        return out

    def merge(self, other: CategoricalWindow) -> CategoricalWindow:
        """Add ``other`` (same ``known`` and ``max_unknown``) into this window; returns ``self``."""
        if not isinstance(other, CategoricalWindow) or other.known != self.known or other.max_unknown != self.max_unknown:
            raise ValueError("can only merge categorical windows with the same known values and max_unknown")
        self.count += other.count
        self.missing += other.missing
        self.other += other.other
        for value in self.known.intersection(other.counts):
            self.counts[value] = self.counts.get(value, 0) + other.counts[value]
        pooled = {v: self.counts.pop(v) for v in self._unknown}
        hashes = dict(self._unknown)
        for value, digest in other._unknown.items():
            pooled[value] = pooled.get(value, 0) + other.counts[value]
            hashes[value] = digest
        ranked = sorted(pooled, key=lambda v: (hashes[v], v))
        kept = ranked[: self.max_unknown]
        self._unknown = {v: hashes[v] for v in kept}
        self.counts.update({v: pooled[v] for v in kept})
        self.other += sum(pooled[v] for v in ranked[self.max_unknown :])
        self._largest = max(((h, v) for v, h in self._unknown.items()), default=None)
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object."""
        return {
            "type": self.type,
            "known": sorted(self.known),
            "max_unknown": self.max_unknown,
            "count": self.count,
            "missing": self.missing,
            "other": self.other,
            "counts": dict(sorted(self.counts.items())),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CategoricalWindow:
        """Rebuild a window from :meth:`to_json`."""
        _check_type(obj, cls.type)
        window = cls(obj["known"], int(obj["max_unknown"]))
        window.count, window.missing, window.other = int(obj["count"]), int(obj["missing"]), int(obj["other"])
        window.counts = {str(v): int(n) for v, n in obj["counts"].items()}
        window._unknown = {v: _category_hash(v) for v in window.counts if v not in window.known}
        if len(window._unknown) > window.max_unknown:
            raise ValueError("categorical window state tracks more values than max_unknown")
        window._largest = max(((h, v) for v, h in window._unknown.items()), default=None)
        return window

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoricalWindow) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CategoricalWindow(count={self.count}, missing={self.missing}, values={len(self.counts)}, other={self.other})"


class BooleanWindow:
    """One boolean feature over one window.

    Example:
        >>> w = BooleanWindow()
        >>> for v in [True, False, True, None]:
        ...     _ = w.update(v)
        >>> w.count, w.true_count, w.missing, w.frequencies()
        (3, 2, 1, {'true': 2, 'false': 1})
    """

    type = "boolean"

    def __init__(self) -> None:
        self.count = 0
        self.missing = 0
        self.true_count = 0

    def update(self, value: bool | None) -> BooleanWindow:
        """Add one value; anything but a bool counts as missing."""
        if isinstance(value, (bool, np.bool_)):
            self.count += 1
            self.true_count += bool(value)
        else:
            self.missing += 1
        return self

    def frequencies(self) -> dict[str, int]:
        """``{"true": n, "false": m}``."""
        return {"true": self.true_count, "false": self.count - self.true_count}

    def merge(self, other: BooleanWindow) -> BooleanWindow:
        """Add ``other`` into this window; returns ``self``."""
        if not isinstance(other, BooleanWindow):
            raise ValueError("can only merge a boolean window with a boolean window")
        self.count += other.count
        self.missing += other.missing
        self.true_count += other.true_count
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object."""
        return {"type": self.type, "count": self.count, "missing": self.missing, "true_count": self.true_count}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BooleanWindow:
        """Rebuild a window from :meth:`to_json`."""
        _check_type(obj, cls.type)
        window = cls()
        window.count, window.missing, window.true_count = int(obj["count"]), int(obj["missing"]), int(obj["true_count"])
        return window

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BooleanWindow) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BooleanWindow(count={self.count}, missing={self.missing}, true_count={self.true_count})"


class TextWindow:
    """One text feature over one window: its tokens seen and not seen in the baseline vocabulary.

    The vocabulary is not part of the state (it can be large): pass it again
    to :meth:`from_json`, which checks its size.

    Example:
        >>> w = TextWindow({"card", "declined"})
        >>> _ = w.update("Card declined").update("crypto wallet declined").update(None)
        >>> w.count, w.missing, w.seen, w.unseen, w.unseen_rate
        (2, 1, 3, 2, 0.4)
    """

    type = "text"

    def __init__(self, vocabulary: Collection[str] = frozenset()) -> None:
        self.vocabulary = vocabulary if isinstance(vocabulary, frozenset) else frozenset(vocabulary)
        self.count = 0
        self.missing = 0
        self.seen = 0
        self.unseen = 0

    def update(self, value: str | None) -> TextWindow:
        """Add one text (None: missing)."""
        if value is None:
            self.missing += 1
            return self
        self.count += 1
        vocabulary = self.vocabulary
        for token in distances.TOKEN_PATTERN.findall(str(value).lower()):
            if token in vocabulary:
                self.seen += 1
            else:
                self.unseen += 1
        return self

    @property
    def tokens(self) -> int:
        """Tokens in the window."""
        return self.seen + self.unseen

    @property
    def unseen_rate(self) -> float | None:
        """Share of the tokens not in the vocabulary; None without tokens."""
        return self.unseen / self.tokens if self.tokens else None

    def merge(self, other: TextWindow) -> TextWindow:
        """Add ``other`` (same vocabulary) into this window; returns ``self``."""
        if not isinstance(other, TextWindow) or (other.vocabulary is not self.vocabulary and other.vocabulary != self.vocabulary):
            raise ValueError("can only merge text windows with the same vocabulary")
        self.count += other.count
        self.missing += other.missing
        self.seen += other.seen
        self.unseen += other.unseen
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object (without the vocabulary)."""
        return {
            "type": self.type,
            "vocabulary_size": len(self.vocabulary),
            "count": self.count,
            "missing": self.missing,
            "seen": self.seen,
            "unseen": self.unseen,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], vocabulary: Collection[str] = frozenset()) -> TextWindow:
        """Rebuild a window from :meth:`to_json` and the vocabulary it was built with."""
        _check_type(obj, cls.type)
        window = cls(vocabulary)
        if int(obj["vocabulary_size"]) != len(window.vocabulary):
            raise ValueError(
                f"text window was built with {obj['vocabulary_size']} vocabulary tokens, not {len(window.vocabulary)}"
            )
        window.count, window.missing = int(obj["count"]), int(obj["missing"])
        window.seen, window.unseen = int(obj["seen"]), int(obj["unseen"])
        return window

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextWindow) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TextWindow(count={self.count}, missing={self.missing}, seen={self.seen}, unseen={self.unseen})"


class NoveltyWindow:
    """The outlier share of one window's events under the baseline's novelty model.

    Each event's ``features.numeric`` values of the model's features (a
    missing one, or one that is no number, takes its training mean; see
    :mod:`driftline.baselines.novelty`) are scored by the model, and the
    window counts the events scored and those above the model's threshold.
    Scoring one event at a time would cost some 30 µs (River's
    ``score_one``, or a NumPy call per event); so :meth:`update` only keeps
    the event's values, and every ``batch_size`` events are scored in one
    NumPy pass: about 3 µs an event for the default 20 trees, plus ~0.2 µs
    per feature to read its values (about 5 µs in all for six features,
    measured on a busy core). Every event is
    scored — no sampling — and the counts read at any time (:attr:`count`,
    :attr:`outliers`, :meth:`to_json`) include the events still waiting,
    which are scored first. State: three counts, and at most ``batch_size``
    rows of values between calls.

    Merging is exact: an event's score depends on its values only, so a
    merged window counts what one window fed both windows' events would.

    Parameters
    ----------
    model
        The baseline's novelty model.
    batch_size
        Events scored together.

    Example:
        >>> import numpy as np
        >>> from driftline.baselines.novelty import fit_novelty
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random(4000)
        >>> model = fit_novelty({"x": x, "y": x + rng.normal(0, 0.05, 4000)})   # y follows x
        >>> window = NoveltyWindow(model)
        >>> for x in rng.random(500):   # y = 1 - x: x and y each as in training, together never
        ...     _ = window.update({"features": {"numeric": {"x": float(x), "y": float(1 - x)}}})
        >>> window.count, window.outliers > 100
        (500, True)
        >>> NoveltyWindow.from_json(window.to_json(), model) == window
        True
    """

    type = "novelty"

    def __init__(self, model: NoveltyModel, batch_size: int = DEFAULT_NOVELTY_BATCH) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, not {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self._scored = 0
        self._outliers = 0
        self._filled = 0
        self._pending: list[list[float]] = []

    def update(self, event: Mapping[str, Any]) -> NoveltyWindow:
        """Add one canonical serving event (its ``features.numeric``)."""
        features = event.get("features") or {}
        return self.update_values(features.get("numeric") or {})

    def update_values(self, numeric: Mapping[str, Any]) -> NoveltyWindow:
        """Add one event's numeric feature values (name → number)."""
        self._pending.append(self.model.row(numeric))
        if len(self._pending) >= self.batch_size:
            self.flush()
        return self

    def flush(self) -> NoveltyWindow:
        """Score the events waiting (the counts already include them: nothing else changes)."""
        if self._pending:
            rows = np.array(self._pending, dtype=np.float64)
            self._pending = []
            scores = self.model.score_many(rows)
            self._scored += rows.shape[0]
            self._outliers += int(np.count_nonzero(scores > self.model.threshold))
            self._filled += int(np.count_nonzero(~np.isfinite(rows)))
        return self

    @property
    def count(self) -> int:
        """Events in the window (scored, or waiting to be)."""
        return self._scored + len(self._pending)

    @property
    def outliers(self) -> int:
        """Events scored above the model's threshold."""
        return self.flush()._outliers

    @property
    def filled(self) -> int:
        """Feature values that were missing and took their training mean."""
        return self.flush()._filled

    @property
    def outlier_share(self) -> float | None:
        """Share of the events that were outliers; None without events."""
        return self.outliers / self.count if self.count else None

    def merge(self, other: NoveltyWindow) -> NoveltyWindow:
        """Add ``other`` (same model) into this window; returns ``self``."""
        if not isinstance(other, NoveltyWindow) or other.model.fingerprint != self.model.fingerprint:
            raise ValueError("can only merge novelty windows of the same model")
        self._scored += other._scored
        self._outliers += other._outliers
        self._filled += other._filled
        self._pending.extend(list(row) for row in other._pending)
        if len(self._pending) >= self.batch_size:
            self.flush()
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object (waiting events are scored first)."""
        self.flush()
        return {"type": self.type, "model": self.model.fingerprint, "count": self._scored,
                "outliers": self._outliers, "filled": self._filled}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], model: NoveltyModel) -> NoveltyWindow:
        """Rebuild a window from :meth:`to_json` and the model it was built with."""
        _check_type(obj, cls.type)
        if obj.get("model") != model.fingerprint:
            raise ValueError(f"novelty window of model {obj.get('model')!r} is not of model {model.fingerprint!r}")
        window = cls(model)
        window._scored, window._outliers, window._filled = int(obj["count"]), int(obj["outliers"]), int(obj["filled"])
        if not 0 <= window._outliers <= window._scored or window._filled < 0:
            raise ValueError("novelty window counts are inconsistent")
        return window

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoveltyWindow) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NoveltyWindow(count={self.count}, outliers={self.outliers})"


FeatureWindow = Union[NumericWindow, CategoricalWindow, BooleanWindow, TextWindow]


def window_for(stats: FeatureStats, *, sample_size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0,
               max_unknown: int = DEFAULT_MAX_UNKNOWN, max_known: int = DEFAULT_MAX_KNOWN) -> FeatureWindow:
    """An empty accumulator matching baseline statistics: their histogram edges, their frequent values, their vocabulary.

    Example:
        >>> from driftline.baselines.model import BooleanStats
        >>> window_for(BooleanStats(count=10, missing=0, true_count=4))
        BooleanWindow(count=0, missing=0, true_count=0)
    """
    if isinstance(stats, NumericStats):
        return NumericWindow(stats.histogram.edges, sample_size=sample_size, seed=seed)
    if isinstance(stats, CategoricalStats):
        frequent = sorted(stats.frequencies.items(), key=lambda kv: (-kv[1], kv[0]))[:max_known]
        return CategoricalWindow([v for v, _ in frequent], max_unknown=max_unknown)
    if isinstance(stats, BooleanStats):
        return BooleanWindow()
    if isinstance(stats, TextStats):
        return TextWindow(stats.vocabulary)
    raise TypeError(f"no window for statistics of type {type(stats).__name__}")


def window_from_json(obj: Mapping[str, Any], stats: FeatureStats | None = None) -> FeatureWindow:
    """Rebuild any accumulator from its ``to_json()``; a text window needs its baseline ``stats`` (the vocabulary).

    Example:
        >>> window_from_json(BooleanWindow().update(True).to_json())
        BooleanWindow(count=1, missing=0, true_count=1)
    """
    kind = obj.get("type") if isinstance(obj, Mapping) else None
    if kind == "numeric":
        return NumericWindow.from_json(obj)
    if kind == "categorical":
        return CategoricalWindow.from_json(obj)
    if kind == "boolean":
        return BooleanWindow.from_json(obj)
    if kind == "text":
        return TextWindow.from_json(obj, stats.vocabulary if isinstance(stats, TextStats) else frozenset())
    raise ValueError(f"unknown window type {kind!r}")


# --- thresholds and findings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftThresholds:
    """When a comparison is drift (see the module's *Comparison and thresholds* for the reasons).

    Parameters
    ----------
    wasserstein
        Wasserstein distance in reference standard deviations.
    jensen_shannon
        Jensen-Shannon distance (base 2).
    psi, psi_warning
        PSI for drift, and for a warning.
    linf
        L-infinity distance of the frequencies.
    unseen_tokens
        Unseen-token rate above the reference's own.
    alpha
        Significance of the KS and chi-squared tests below ``large_window``.
    guard_alpha
        Significance an effect size's test also needs (1.0 turns the guard off).
    large_window
        Comparison size from which effect sizes decide instead of tests.
    min_count
        Comparison size (tokens for text) below which nothing drifts.
    novelty
        Outlier share of a window, as a multiple of the training share (at
        least 1), above which novelty can drift (:func:`compare_novelty`).
    per_feature
        Overrides by feature name (or ``prediction`` / ``label``):
        ``{"amount": {"wasserstein": 0.2}}``.

    Example:
        >>> t = DriftThresholds(per_feature={"country": {"linf": 0.05}})
        >>> t.for_feature("country").linf, t.for_feature("amount").linf
        (0.05, 0.1)
    """

    wasserstein: float = 0.1
    jensen_shannon: float = 0.1
    psi: float = 0.25
    psi_warning: float = 0.1
    linf: float = 0.1
    unseen_tokens: float = 0.1
    alpha: float = 0.05
    guard_alpha: float = 0.01
    large_window: int = 1000
    min_count: int = 100
    novelty: float = 2.0
    per_feature: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("wasserstein", "jensen_shannon", "psi", "psi_warning", "linf", "unseen_tokens", "novelty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"threshold {name} must be a finite number > 0, not {value!r}")
        if self.novelty < 1:
            raise ValueError(f"threshold novelty is a multiple of the expected outlier share: at least 1, not {self.novelty!r}")
        for name in ("alpha", "guard_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], not {value!r}")
        for name in ("large_window", "min_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
        allowed = {f.name for f in fields(self)} - {"per_feature"}
        for feature, overrides in self.per_feature.items():
            unknown = set(overrides) - allowed
            if unknown:
                raise ValueError(f"thresholds of {feature!r}: unknown names {', '.join(sorted(unknown))}")
            replace(self, per_feature={}, **overrides)  # validates the values
        object.__setattr__(self, "per_feature", {k: dict(v) for k, v in self.per_feature.items()})

    def for_feature(self, name: str) -> DriftThresholds:
        """These thresholds with ``name``'s overrides applied."""
        overrides = self.per_feature.get(name)
        return replace(self, per_feature={}, **overrides) if overrides else self


DEFAULT_THRESHOLDS = DriftThresholds()


@dataclass(frozen=True)
class Finding:
    """One measure of one window against its reference.

    Parameters
    ----------
    feature
        The feature's name, or ``prediction`` / ``label``.
    metric
        ``ks``, ``wasserstein`` (in reference std), ``jensen_shannon``, ``psi``,
        ``linf``, ``kl``, ``chi_squared``, ``unseen_tokens`` or ``novelty``
        (the outlier share; its feature is ``novelty`` too).
    value
        The measure (a test's statistic for ``ks`` and ``chi_squared``).
    threshold
        What decided drift: the effect size's threshold, or ``alpha`` for a
        test (compared with ``p_value``); None when the measure is only
        reported at this window size.
    p_value
        The test's p-value, or the guarding test's for an effect size.
    drifted
        Whether the finding is drift.
    window_size
        Values in the window (not missing).
    reference
        :data:`BASELINE_REFERENCE` or :data:`PREVIOUS_WINDOW`.
    kind
        ``data`` for a feature, ``prediction`` or ``label``.
    warning
        PSI only: at or above ``psi_warning`` at a large window.
    details
        Further numbers (the raw Wasserstein distance, the reference's size ...).

    Example:
        >>> f = Finding("amount", "psi", 0.31, 0.25, p_value=0.0, drifted=True, window_size=5000)
        >>> f.detector, f.kind
        ('psi', <DriftKind.DATA: 'data'>)
    """

    feature: str
    metric: str
    value: float
    threshold: float | None
    p_value: float | None = None
    drifted: bool = False
    window_size: int = 0
    reference: str = BASELINE_REFERENCE
    kind: DriftKind = DriftKind.DATA
    warning: bool = False
    details: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DriftKind(self.kind))
        if self.reference not in (BASELINE_REFERENCE, PREVIOUS_WINDOW):
            raise ValueError(f"reference must be {BASELINE_REFERENCE!r} or {PREVIOUS_WINDOW!r}, not {self.reference!r}")

    @property
    def detector(self) -> str:
        """The drift event's detector: the metric, suffixed ``.previous_window`` for a window-over-window comparison.

        (The suffix keeps the two comparisons' drift events apart: an event's
        id hashes the detector, not the reference.)
        """
        return self.metric if self.reference == BASELINE_REFERENCE else f"{self.metric}.{PREVIOUS_WINDOW}"


class _Scope:
    """What every finding of one comparison shares."""

    def __init__(self, name: str, kind: DriftKind, reference: str, n: int, reference_n: int, t: DriftThresholds) -> None:
        self.name, self.kind, self.reference, self.n, self.t = name, kind, reference, n, t
        size = min(n, reference_n)
        self.able = size >= t.min_count
        self.small = size < t.large_window

    def test(self, metric: str, result: distances.SignificanceResult, **details: float) -> Finding:
        t = self.t
        return Finding(self.name, metric, result.statistic, t.alpha if self.small else None, result.p_value,
                       self.able and self.small and result.p_value < t.alpha, self.n, self.reference, self.kind,
                       details=details)

    def effect(self, metric: str, value: float, threshold: float, p_value: float, warning: float | None = None,
               **details: float) -> Finding:
        large = self.able and not self.small
        drifted = large and value >= threshold and p_value < self.t.guard_alpha
        return Finding(self.name, metric, value, None if self.small else threshold, p_value, drifted, self.n,
                       self.reference, self.kind, warning=warning is not None and large and value >= warning,
                       details=details)


#: Points of the reference distribution drawn from a baseline's percentiles (see :func:`reference_values`).
REFERENCE_POINTS = 5_000


def reference_values(stats: NumericStats, points: int = REFERENCE_POINTS) -> np.ndarray:
    """The reference values a numeric window is compared with (KS, Wasserstein).

    With the baseline's ``percentiles``: its quantile function (linear between
    the percentiles, :data:`~driftline.baselines.model.PERCENTILE_PROBABILITIES`) at ``points`` evenly spaced probabilities — the training
    distribution itself, to the sketch's rank error (~0.3%), not a sample of
    it. Otherwise (older baselines) the stored sample. Two-sample tests against
    5,000 such points count as a 5,000-value sample in the KS p-value: for a
    window of 1,000 values that asks for a statistic ~10% larger than a
    one-sample test would (effective size 833, not 1,000), and they
    treat ties (integral features) correctly. The
    distance of this reference to the training data is under 0.005 std of
    Wasserstein distance on normal and gamma features, against a threshold
    of 0.1 (a 2,000-value sample's own noise: ~0.04).

    Example:
        >>> from driftline.baselines.model import Histogram
        >>> from driftline.baselines.model import PERCENTILE_PROBABILITIES
        >>> stats = NumericStats(count=10, missing=0, mean=0.5, std=0.3, min=0.0, max=1.0, quantiles={},
        ...                      histogram=Histogram([0.0, 1.0], [10]), sample=[0.2, 0.8],
        ...                      percentiles=list(PERCENTILE_PROBABILITIES))  # a uniform distribution on [0, 1]
        >>> values = reference_values(stats, points=4)
        >>> values.round(3).tolist()
        [0.125, 0.375, 0.625, 0.875]
    """
    percentiles = np.asarray(stats.percentiles, dtype=np.float64)
    if percentiles.size == len(PERCENTILE_PROBABILITIES) and np.all(np.isfinite(percentiles)):
        return np.interp((np.arange(points) + 0.5) / points, PERCENTILE_PROBABILITIES, percentiles)
    return np.asarray(stats.sample, dtype=np.float64)


def _numeric_findings(scope: _Scope, window: NumericWindow, reference_sample: np.ndarray, reference_std: float,
                      reference_bins: Sequence[int]) -> list[Finding]:
    t = scope.t
    findings: list[Finding] = []
    sample = window.sample_array()
    if reference_sample.size and sample.size:
        ks = distances.ks_test(reference_sample, sample)
        raw = distances.wasserstein(reference_sample, sample)
        scale = max(reference_std, distances.DEFAULT_MIN_STD)
        findings.append(scope.test("ks", ks, sample=float(sample.size), reference_sample=float(reference_sample.size)))
        findings.append(scope.effect("wasserstein", raw / scale, t.wasserstein, ks.p_value, distance=raw,
                                     reference_std=reference_std))
    if window.bins and sum(reference_bins) > 0 and sum(window.bins) > 0 and len(reference_bins) == len(window.bins):
        chi = distances.chi_squared_test(reference_bins, window.bins)
        findings.append(scope.effect("jensen_shannon", distances.jensen_shannon_distance(reference_bins, window.bins),
                                     t.jensen_shannon, chi.p_value, chi_squared=chi.statistic))
        findings.append(scope.effect("psi", distances.psi(reference_bins, window.bins), t.psi, chi.p_value,
                                     warning=t.psi_warning, chi_squared=chi.statistic))
    return findings


def _common_partition(reference: Mapping[str, float], reference_other: float, current: Mapping[str, float],
                      current_other: float, reference_known: Collection[str] = frozenset(),
                      current_known: Collection[str] = frozenset()) -> tuple[dict[str, float], dict[str, float]]:
    """Both count maps over the same partition of values.

    A value with a count on one side only is 0 on the other side if that side
    had no untracked values (no ``other`` count) or always tracks it (one of
    its ``known`` values). Otherwise its count there may be inside ``other``,
    and it is moved to :data:`OTHER` on both sides.
    """
    ref, cur = dict(reference), dict(current)
    ref_other, cur_other = float(reference_other), float(current_other)
    for value in sorted(set(ref) ^ set(cur)):
        if value in ref:
            if current_other > 0 and value not in current_known:
                ref_other += ref.pop(value)
        elif reference_other > 0 and value not in reference_known:
            cur_other += cur.pop(value)
    if ref_other > 0 or cur_other > 0:
        ref[OTHER] = ref.get(OTHER, 0) + ref_other
        cur[OTHER] = cur.get(OTHER, 0) + cur_other
    return ref, cur


def _categorical_findings(scope: _Scope, reference: Mapping[str, float], current: Mapping[str, float]) -> list[Finding]:
    t = scope.t
    if sum(reference.values()) <= 0 or sum(current.values()) <= 0:
        return []
    chi = distances.chi_squared_test(reference, current)
    return [
        scope.test("chi_squared", chi),
        scope.effect("linf", distances.linf_distance(reference, current), t.linf, chi.p_value),
        scope.effect("jensen_shannon", distances.jensen_shannon_distance(reference, current), t.jensen_shannon, chi.p_value),
        scope.effect("psi", distances.psi(reference, current), t.psi, chi.p_value, warning=t.psi_warning),
        Finding(scope.name, "kl", distances.kl_divergence(reference, current), None, chi.p_value, False, scope.n,
                scope.reference, scope.kind),
    ]


def _text_finding(scope: _Scope, window: TextWindow, reference_rate: float) -> list[Finding]:
    if window.tokens == 0:
        return []
    rate = window.unseen / window.tokens
    threshold = reference_rate + scope.t.unseen_tokens
    drifted = window.tokens >= scope.t.min_count and rate >= threshold
    return [Finding(scope.name, "unseen_tokens", rate, threshold, None, drifted, window.count, scope.reference, scope.kind,
                    details={"tokens": float(window.tokens), "unseen": float(window.unseen), "reference_rate": reference_rate})]


def compare_stats(window: FeatureWindow, stats: FeatureStats, name: str, kind: DriftKind | str = DriftKind.DATA,
                  thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """Findings of one window against baseline statistics: a feature's, or ``Baseline.prediction`` / ``Baseline.label``.

    ``name`` names the findings (and picks the per-feature thresholds);
    ``kind`` is ``data``, ``prediction`` or ``label``. An empty window, or
    statistics without values, give no findings; the histogram findings
    (``jensen_shannon``, ``psi`` of numbers) need a window built with the
    statistics' bin edges (:func:`window_for`). For text, the reference's
    unseen rate is the share of training tokens outside the (bounded)
    vocabulary, ``1 - sum(vocabulary counts) / tokens`` (the baseline must
    count tokens with :func:`~driftline.streams.distances.tokenize`).

    Example:
        >>> from driftline.baselines.model import BooleanStats
        >>> w = BooleanWindow()
        >>> for i in range(500):
        ...     _ = w.update(i % 10 == 0)
        >>> [(f.metric, f.drifted) for f in compare_stats(w, BooleanStats(10_000, 0, 5000), "is_new")][:2]
        [('chi_squared', True), ('linf', False)]
    """
    t = thresholds.for_feature(name)
    kind = DriftKind(kind)
    if window.count == 0:
        return []
    if isinstance(stats, NumericStats) and isinstance(window, NumericWindow):
        scope = _Scope(name, kind, BASELINE_REFERENCE, window.count, stats.count, t)
        sample = reference_values(stats)
        bins = stats.histogram.counts if list(stats.histogram.edges) == window.edges else ()
        return _numeric_findings(scope, window, sample, float(stats.std), bins)
    if isinstance(stats, CategoricalStats) and isinstance(window, CategoricalWindow):
        scope = _Scope(name, kind, BASELINE_REFERENCE, window.count, stats.count, t)
        reference_other = max(stats.count - sum(stats.frequencies.values()), 0)
        ref, cur = _common_partition(stats.frequencies, reference_other, window.counts, window.other,
                                     current_known=window.known)
        return _categorical_findings(scope, ref, cur)
    if isinstance(stats, BooleanStats) and isinstance(window, BooleanWindow):
        scope = _Scope(name, kind, BASELINE_REFERENCE, window.count, stats.count, t)
        return _categorical_findings(scope, {"true": stats.true_count, "false": stats.count - stats.true_count},
                                     window.frequencies())
    if isinstance(stats, TextStats) and isinstance(window, TextWindow):
        scope = _Scope(name, kind, BASELINE_REFERENCE, window.count, stats.count, t)
        known = sum(stats.vocabulary.values())
        reference_rate = min(max(1.0 - known / stats.tokens, 0.0), 1.0) if stats.tokens else 0.0
        return _text_finding(scope, window, reference_rate)
    raise TypeError(f"cannot compare a {type(window).__name__} with {type(stats).__name__}")


def compare(window: FeatureWindow, feature_schema: FeatureSchema, feature_stats: FeatureStats,
            thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """Findings of one feature's window against its baseline statistics (drift kind ``data``).

    Example:
        >>> from driftline.baselines.model import Histogram, NumericStats
        >>> import numpy as np
        >>> rng = np.random.default_rng(7)
        >>> train = rng.normal(50.0, 10.0, 2000)
        >>> edges = np.quantile(train, np.linspace(0, 1, 11)).tolist()
        >>> stats = NumericStats(count=2000, missing=0, mean=50.0, std=float(train.std()), min=float(train.min()),
        ...                      max=float(train.max()), quantiles={}, sample=train.tolist(),
        ...                      histogram=Histogram(edges, np.histogram(train, edges)[0].tolist()))
        >>> window = window_for(stats)
        >>> for x in rng.normal(55.0, 10.0, 5000):   # the mean moved by half a standard deviation
        ...     _ = window.update(float(x))
        >>> [(f.metric, round(f.value, 2), f.drifted) for f in compare(window, FeatureSchema("age", "numeric"), stats)]
        [('ks', 0.25, False), ('wasserstein', 0.57, True), ('jensen_shannon', 0.22, True), ('psi', 0.28, True)]
    """
    if feature_schema.type != feature_stats.type and not (feature_schema.type == "categorical" and feature_stats.type == "text"):
        raise ValueError(
            f"feature {feature_schema.name!r}: schema type {feature_schema.type!r}, statistics {feature_stats.type!r}"
        )
    return compare_stats(window, feature_stats, feature_schema.name, DriftKind.DATA, thresholds)


def compare_novelty(window: NoveltyWindow, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """The novelty finding of a window: its outlier share against the training rows' (drift kind ``data``).

    The finding's feature and metric are :data:`NOVELTY`; its value is the
    window's outlier share, its threshold ``novelty ×`` the expected share,
    its p-value Fisher's exact test (one-sided) of the window's outliers
    against the calibration rows'. It drifts when the share is above the
    threshold, ``p < alpha`` and the window has at least ``min_count``
    events (see the module's *Comparison and thresholds*); per-feature
    overrides go under ``novelty``. An empty window gives no finding.

    Example:
        >>> import numpy as np
        >>> from driftline.baselines.novelty import fit_novelty
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random(4000)
        >>> model = fit_novelty({"x": x, "y": x + rng.normal(0, 0.05, 4000)})
        >>> stable, flipped = NoveltyWindow(model), NoveltyWindow(model)
        >>> for x in rng.random(2000):
        ...     _ = stable.update_values({"x": float(x), "y": float(x + rng.normal(0, 0.05))})
        ...     _ = flipped.update_values({"x": float(x), "y": float(1 - x)})
        >>> [(f.metric, f.drifted) for f in compare_novelty(stable) + compare_novelty(flipped)]
        [('novelty', False), ('novelty', True)]
    """
    t = thresholds.for_feature(NOVELTY)
    n = window.count
    if n == 0:
        return []
    k = window.outliers
    model = window.model
    n0, k0 = model.calibration_rows, model.calibration_outliers
    share, expected = k / n, model.expected_rate
    threshold = t.novelty * expected
    p_value = float(scipy_stats.fisher_exact([[k, n - k], [k0, n0 - k0]], alternative="greater").pvalue)
    drifted = n >= t.min_count and share > threshold and p_value < t.alpha
    features = len(model.features)
    return [Finding(NOVELTY, NOVELTY, share, threshold, p_value, drifted, n, BASELINE_REFERENCE, DriftKind.DATA,
                    details={"outliers": float(k), "expected_rate": expected, "calibration_rows": float(n0),
                             "calibration_outliers": float(k0), "score_threshold": model.threshold,
                             "filled_rate": window.filled / (n * features)})]


def compare_windows(current: FeatureWindow, previous: FeatureWindow, name: str, kind: DriftKind | str = DriftKind.DATA,
                    thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """Findings of a window against the previous window of the same stream (the previous one is the reference).

    For numbers the reference standard deviation is the previous window's
    sample's; for text the reference rate is the previous window's unseen
    rate. Empty windows give no findings.

    Example:
        >>> before, after = CategoricalWindow(), CategoricalWindow()
        >>> for i in range(3000):
        ...     _ = before.update("web" if i % 2 else "app")
        ...     _ = after.update("web" if i % 4 else "app")
        >>> [(f.metric, f.drifted) for f in compare_windows(after, before, "channel") if f.drifted]
        [('linf', True), ('jensen_shannon', True), ('psi', True)]
    """
    t = thresholds.for_feature(name)
    kind = DriftKind(kind)
    if current.count == 0 or previous.count == 0:
        return []
    scope = _Scope(name, kind, PREVIOUS_WINDOW, current.count, previous.count, t)
    if isinstance(current, NumericWindow) and isinstance(previous, NumericWindow):
        sample = previous.sample_array()
        std = float(np.std(sample, ddof=1)) if sample.size > 1 else 0.0
        bins = previous.bins if previous.edges == current.edges else ()
        return _numeric_findings(scope, current, sample, std, bins)
    if isinstance(current, CategoricalWindow) and isinstance(previous, CategoricalWindow):
        ref, cur = _common_partition(previous.counts, previous.other, current.counts, current.other,
                                     previous.known, current.known)
        return _categorical_findings(scope, ref, cur)
    if isinstance(current, BooleanWindow) and isinstance(previous, BooleanWindow):
        return _categorical_findings(scope, previous.frequencies(), current.frequencies())
    if isinstance(current, TextWindow) and isinstance(previous, TextWindow):
        if previous.tokens == 0:
            return []
        return _text_finding(scope, current, previous.unseen / previous.tokens)
    raise TypeError(f"cannot compare a {type(current).__name__} with a {type(previous).__name__}")


def drift_event(finding: Finding, *, model_name: str, model_version: str, window_start_ms: int, window_size_ms: int,
                slice: Mapping[str, Any] | None = None) -> DriftEvent:  # noqa: A002 - the domain's word
    """The :class:`~driftline.streams.alerts.DriftEvent` of a drifted finding of one window.

    ``stream`` is ``feature.<name>`` for data drift (the stream the detect
    stage's detectors use for the feature) and ``prediction`` or ``label``
    otherwise; ``detector`` is :attr:`Finding.detector`; ``baseline`` is
    ``model|version`` or ``previous_window``. As for the other window
    findings, ``event_time_ms`` is the window's start and ``position`` the
    window's number (``start // size``). Raises ``ValueError`` for a finding
    that did not drift.

    Example:
        >>> f = Finding("prediction", "jensen_shannon", 0.18, 0.1, 0.0, True, 4000, kind="prediction")
        >>> e = drift_event(f, model_name="fraud", model_version="3", window_start_ms=3_600_000, window_size_ms=3_600_000)
        >>> e.stream, e.feature, e.detector, e.position, e.baseline
        ('prediction', None, 'jensen_shannon', 1, 'fraud|3')
    """
    if not finding.drifted:
        raise ValueError(f"finding {finding.metric} of {finding.feature!r} did not drift")
    if window_size_ms <= 0 or window_start_ms < 0:
        raise ValueError("window_start_ms must be >= 0 and window_size_ms > 0")
    data = finding.kind == DriftKind.DATA
    parameters: dict[str, Any] = {"reference": finding.reference, "window_ms": window_size_ms, **finding.details}
    return DriftEvent(
        detector=finding.detector,
        kind=finding.kind,
        stream=f"feature.{finding.feature}" if data else str(finding.kind),
        model_name=model_name,
        model_version=model_version,
        position=window_start_ms // window_size_ms,
        event_time_ms=window_start_ms,
        feature=finding.feature if data else None,
        slice=dict(slice or {}),
        statistic=finding.value,
        threshold=finding.threshold,
        p_value=finding.p_value,
        window_size=finding.window_size,
        baseline=f"{model_name}|{model_version}" if finding.reference == BASELINE_REFERENCE else PREVIOUS_WINDOW,
        parameters=parameters,
    )


def drift_events(findings: Iterable[Finding], *, model_name: str, model_version: str, window_start_ms: int,
                 window_size_ms: int, slice: Mapping[str, Any] | None = None) -> list[DriftEvent]:  # noqa: A002
    """The drift events of the drifted findings (see :func:`drift_event`).

    Example:
        >>> drift_events([Finding("age", "ks", 0.02, 0.05, 0.7)], model_name="m", model_version="1",
        ...              window_start_ms=0, window_size_ms=60_000)
        []
    """
    return [
        drift_event(f, model_name=model_name, model_version=model_version, window_start_ms=window_start_ms,
                    window_size_ms=window_size_ms, slice=slice)
        for f in findings
        if f.drifted
    ]


# --- all of one model version's windows -------------------------------------------------------------------


class ServingWindow:
    """One serving window of one model version: an accumulator per baseline feature, the prediction and the label.

    Features of the baseline's schema that have statistics get an
    accumulator (:func:`window_for`); :meth:`update` reads a canonical serving
    event: ``features.numeric`` for numeric features, ``features.categorical``
    for categorical and text ones, ``features.boolean`` for booleans (a value
    absent from its map, or in another map, counts as missing). The prediction
    is ``prediction.label`` when ``Baseline.prediction`` is categorical, else
    ``prediction.value`` (``prediction.score`` when there is no value). Labels
    come from feedback: :meth:`update_label`. About 14 µs per event for six
    features (one of them text) and the prediction, on one core. When the
    baseline has a novelty model, :attr:`novelty` (a :class:`NoveltyWindow`)
    scores the events' numeric features too (about 5 µs more per event for six),
    and :meth:`compare` adds its finding (:func:`compare_novelty`); it is not
    compared with the previous window (the model is the reference).

    Example:
        >>> from driftline.baselines.model import BooleanStats, CategoricalStats
        >>> baseline = Baseline("fraud-detector", "2026.11.1", {"is_new": FeatureSchema("is_new", "boolean")},
        ...                     {"is_new": BooleanStats(1000, 0, 100)},
        ...                     prediction=CategoricalStats(1000, 0, {"fraud": 50, "legit": 950}))
        >>> window = ServingWindow(baseline)
        >>> event = {"prediction": {"label": "fraud"}, "features": {"boolean": {"is_new": True}}}
        >>> window.update(event).count, window.features["is_new"].true_count, window.prediction.counts
        (1, 1, {'fraud': 1})
        >>> ServingWindow.from_json(window.to_json(), baseline).to_json() == window.to_json()
        True
    """

    def __init__(self, baseline: Baseline, *, sample_size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0,
                 max_unknown: int = DEFAULT_MAX_UNKNOWN, max_known: int = DEFAULT_MAX_KNOWN) -> None:
        self.baseline = baseline
        options = {"sample_size": sample_size, "seed": seed, "max_unknown": max_unknown, "max_known": max_known}
        self.count = 0
        self.features: dict[str, FeatureWindow] = {
            name: window_for(baseline.statistics[name], **options)  # type: ignore[arg-type]
            for name in sorted(baseline.schema)
            if name in baseline.statistics
        }
        self._numeric = [(n, w) for n, w in self.features.items() if isinstance(w, NumericWindow)]
        self._string = [(n, w) for n, w in self.features.items() if isinstance(w, (CategoricalWindow, TextWindow))]
        self._boolean = [(n, w) for n, w in self.features.items() if isinstance(w, BooleanWindow)]
        self.prediction = None if baseline.prediction is None else window_for(baseline.prediction, **options)  # type: ignore[arg-type]
        self.label = None if baseline.label is None else window_for(baseline.label, **options)  # type: ignore[arg-type]
        self.novelty = None if baseline.novelty is None else NoveltyWindow(baseline.novelty)

    def update(self, event: Mapping[str, Any]) -> ServingWindow:
        """Add one canonical serving event."""
        self.count += 1
        features = event.get("features") or {}
        numeric = features.get("numeric") or {}
        categorical = features.get("categorical") or {}
        boolean = features.get("boolean") or {}
        for name, window in self._numeric:
            value = numeric.get(name)
            window.update(value if isinstance(value, (int, float)) and not isinstance(value, bool) else None)
        for name, window in self._string:
            value = categorical.get(name)
            window.update(value if isinstance(value, str) else None)
        for name, window in self._boolean:
            window.update(boolean.get(name))
        if self.novelty is not None:
            self.novelty.update_values(numeric)
        if self.prediction is not None:
            prediction = event.get("prediction") or {}
            if isinstance(self.prediction, NumericWindow):
                value = prediction.get("value")
                self.prediction.update(prediction.get("score") if value is None else value)
            else:
                self.prediction.update(prediction.get("label"))  # type: ignore[arg-type]
        return self

    def update_label(self, value: Any) -> ServingWindow:
        """Add one ground-truth value (a class label, or a number for regression)."""
        if self.label is not None:
            self.label.update(value)
        return self

    def merge(self, other: ServingWindow) -> ServingWindow:
        """Add ``other`` (same baseline) into this window; returns ``self``."""
        if other.baseline.key != self.baseline.key or set(other.features) != set(self.features):
            raise ValueError("can only merge serving windows of the same baseline")
        self.count += other.count
        for name, window in self.features.items():
            window.merge(other.features[name])  # type: ignore[arg-type]
        for mine, theirs in ((self.prediction, other.prediction), (self.label, other.label)):
            if mine is not None and theirs is not None:
                mine.merge(theirs)  # type: ignore[arg-type]
        if self.novelty is not None and other.novelty is not None:
            self.novelty.merge(other.novelty)
        return self

    def compare(self, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
        """Every finding against the baseline: features and novelty (``data``), then ``prediction`` and ``label``."""
        baseline = self.baseline
        findings = [
            finding
            for name, window in self.features.items()
            for finding in compare(window, baseline.schema[name], baseline.statistics[name], thresholds)
        ]
        if self.novelty is not None:
            findings += compare_novelty(self.novelty, thresholds)
        if self.prediction is not None and baseline.prediction is not None:
            findings += compare_stats(self.prediction, baseline.prediction, "prediction", DriftKind.PREDICTION, thresholds)
        if self.label is not None and baseline.label is not None:
            findings += compare_stats(self.label, baseline.label, "label", DriftKind.LABEL, thresholds)
        return findings

    def compare_previous(self, previous: ServingWindow, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
        """Every finding against the previous window (same baseline)."""
        findings = [
            finding
            for name, window in self.features.items()
            if name in previous.features
            for finding in compare_windows(window, previous.features[name], name, DriftKind.DATA, thresholds)
        ]
        for name, kind, mine, theirs in (("prediction", DriftKind.PREDICTION, self.prediction, previous.prediction),
                                         ("label", DriftKind.LABEL, self.label, previous.label)):
            if mine is not None and theirs is not None:
                findings += compare_windows(mine, theirs, name, kind, thresholds)
        return findings

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object (with ``novelty`` only when the baseline has a model)."""
        state: dict[str, Any] = {
            "model": {"name": self.baseline.model_name, "version": self.baseline.model_version},
            "count": self.count,
            "features": {name: window.to_json() for name, window in self.features.items()},
            "prediction": self.prediction.to_json() if self.prediction is not None else None,
            "label": self.label.to_json() if self.label is not None else None,
        }
        if self.novelty is not None:
            state["novelty"] = self.novelty.to_json()
        return state

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], baseline: Baseline) -> ServingWindow:
        """Rebuild a window from :meth:`to_json` and its baseline."""
        if obj["model"] != {"name": baseline.model_name, "version": baseline.model_version}:
            raise ValueError(f"serving window of {obj['model']} is not of baseline {baseline.key}")
        window = cls(baseline)
        window.count = int(obj["count"])
        features = {name: window_from_json(state, baseline.statistics.get(name)) for name, state in obj["features"].items()}
        if set(features) != set(window.features):
            raise ValueError("serving window features differ from the baseline's")
        window.features = features
        window._numeric = [(n, w) for n, w in features.items() if isinstance(w, NumericWindow)]
        window._string = [(n, w) for n, w in features.items() if isinstance(w, (CategoricalWindow, TextWindow))]
        window._boolean = [(n, w) for n, w in features.items() if isinstance(w, BooleanWindow)]
        window.prediction = window_from_json(obj["prediction"], baseline.prediction) if obj.get("prediction") else None
        window.label = window_from_json(obj["label"], baseline.label) if obj.get("label") else None
        if baseline.novelty is not None and obj.get("novelty"):  # a state without it: novelty starts now
            window.novelty = NoveltyWindow.from_json(obj["novelty"], baseline.novelty)
        return window
