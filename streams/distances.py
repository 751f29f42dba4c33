"""Distances between a reference (the training baseline, or the previous window) and a serving window.

Plain functions on NumPy arrays and count mappings, computed with SciPy where
SciPy has the measure; no state, no I/O. :mod:`driftline.streams.feature_windows`
accumulates the inputs and decides what counts as drift.

Categorical distributions are given as counts: either two mappings
``value -> count`` (aligned over the *union* of their keys, a key absent on
one side counting 0) or two arrays of the same length (bins). Counts need not
sum to the same total: every measure compares the normalized frequencies.

=====================  ====================================================  ==========================
measure                definition (``p`` reference, ``q`` current)           range
=====================  ====================================================  ==========================
L-infinity             ``max_i |p_i - q_i|`` (Chebyshev distance of the       ``[0, 1]``
                       normalized frequencies; TFDV's categorical check)
Jensen-Shannon         the *distance* ``sqrt(JSD(p, q))`` with base-2         ``[0, 1]``
distance               logarithms (``scipy.spatial.distance.jensenshannon``);
                       the *divergence* JSD is its square
KL divergence          ``D_KL(p || q) = sum_i p_i ln(p_i / q_i)`` in nats,    ``[0, inf)``
                       on smoothed frequencies (below)
PSI                    ``sum_i (q_i - p_i) ln(q_i / p_i)`` on smoothed        ``[0, inf)``
                       frequencies; equals ``D_KL(p||q) + D_KL(q||p)``
chi-squared test       2 x k contingency test of the two count vectors,       p-value in ``[0, 1]``
                       sparse cells pooled (:func:`chi_squared_test`)
KS test                two-sample Kolmogorov-Smirnov statistic and p-value    statistic in ``[0, 1]``
                       (``scipy.stats.ks_2samp``)
Wasserstein            earth mover's distance of the two samples              ``[0, inf)``, in the
                       (``scipy.stats.wasserstein_distance``), optionally     values' units (or in
                       divided by the reference standard deviation            reference std units)
unseen-token rate      share of tokens (lower-cased ``\\w+``) of the serving  ``[0, 1]``
                       texts that are not in the baseline vocabulary
=====================  ====================================================  ==========================

Smoothing (KL and PSI only)
---------------------------
Both are infinite when a bin is empty on one side and not on the other. They
are therefore computed on *smoothed* frequencies: over the union of bins
(``k`` of them), each normalized frequency gets ``epsilon`` added and the
vector is renormalized, ``p~_i = (c_i / n + epsilon) / (1 + k * epsilon)``
(the same for ``q``), with ``epsilon = 1e-4`` (:data:`DEFAULT_EPSILON`) by
default. Adding ``epsilon`` to the frequencies rather than a pseudo-count to
the counts keeps the smoothing independent of the window size. A category
seen only in serving at frequency ``f`` then contributes about
``f * ln(f / 1e-4)`` to the PSI (0.31 for ``f = 0.05``). Jensen-Shannon and
L-infinity are finite on raw frequencies and are not smoothed.

Numeric features on bins
------------------------
:func:`histogram_counts` counts serving values in the baseline's histogram
bins (:class:`driftline.baselines.model.Histogram`): ``edges[i] <= x <
edges[i+1]``, the last bin closed, and values below the first edge or above
the last one counted in the first or last bin, so no mass is lost. The
Jensen-Shannon distance and PSI of two such count arrays are then
:func:`jensen_shannon_distance` and :func:`psi` of the arrays.

Empty input is an error: every function raises ``ValueError`` naming the
side (``reference`` or ``current``) that has no counts or values, or holds a
negative or non-finite number.

Example:
    >>> baseline = {"web": 60, "app": 30, "store": 10}
    >>> window = {"web": 40, "app": 40, "store": 15, "kiosk": 5}
    >>> round(linf_distance(baseline, window), 4), round(jensen_shannon_distance(baseline, window), 4)
    (0.2, 0.2198)
    >>> round(psi(baseline, window), 4)
    0.4407
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ks = ks_test(rng.normal(0, 1, 500), rng.normal(0.5, 1, 500))
    >>> ks.statistic > 0.15, ks.p_value < 1e-6
    (True, True)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NamedTuple, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.spatial import distance
from scipy.special import rel_entr

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_MIN_EXPECTED",
    "DEFAULT_MIN_STD",
    "TOKEN_PATTERN",
    "Counts",
    "SignificanceResult",
    "aligned_counts",
    "chi_squared_test",
    "histogram_counts",
    "jensen_shannon_distance",
    "kl_divergence",
    "ks_test",
    "linf_distance",
    "normalized_wasserstein",
    "psi",
    "smoothed_frequencies",
    "tokenize",
    "unseen_token_rate",
    "wasserstein",
]

#: Added to every normalized frequency before KL and PSI (then renormalized).
DEFAULT_EPSILON = 1e-4
#: Cells whose expected current count is below this are pooled before the chi-squared test (Cochran's rule).
DEFAULT_MIN_EXPECTED = 5.0
#: Floor on the reference standard deviation that normalizes the Wasserstein distance (as Evidently).
DEFAULT_MIN_STD = 1e-3
#: A token of a text feature: a run of word characters of the lower-cased text.
TOKEN_PATTERN = re.compile(r"\w+")

#: Counts of a categorical distribution: ``value -> count``, or one count per bin.
Counts = Union[Mapping[str, float], Sequence[float], NDArray[np.floating]]


class SignificanceResult(NamedTuple):
    """A test's statistic and p-value."""

    statistic: float
    p_value: float


def _check_counts(counts: NDArray[np.float64], side: str) -> NDArray[np.float64]:
    if counts.ndim != 1:
        raise ValueError(f"{side} counts must be one-dimensional, not of shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"{side} counts must be finite and >= 0")
    if not counts.sum() > 0:
        raise ValueError(f"{side} counts are empty (no values to compare)")
    return counts


def aligned_counts(reference: Counts, current: Counts) -> tuple[list[str] | None, NDArray[np.float64], NDArray[np.float64]]:
    """The two count vectors over the same bins: ``(labels, reference, current)``.

    Mappings are aligned over the sorted union of their keys (``labels``);
    arrays must have the same length (``labels`` is None). Raises
    ``ValueError`` when a side is empty, negative or not finite.

    Example:
        >>> labels, p, q = aligned_counts({"a": 2, "b": 1}, {"c": 4, "a": 1})
        >>> labels, p.tolist(), q.tolist()
        (['a', 'b', 'c'], [2.0, 1.0, 0.0], [1.0, 0.0, 4.0])
    """
    if isinstance(reference, Mapping) != isinstance(current, Mapping):
        raise TypeError("compare two mappings of counts, or two arrays of counts, not one of each")
    labels: list[str] | None = None
    if isinstance(reference, Mapping) and isinstance(current, Mapping):
        labels = sorted(set(reference) | set(current))
        p = np.array([reference.get(k, 0) for k in labels], dtype=np.float64)
        q = np.array([current.get(k, 0) for k in labels], dtype=np.float64)
    else:
        p = np.asarray(reference, dtype=np.float64)
        q = np.asarray(current, dtype=np.float64)
        if p.shape != q.shape:
            raise ValueError(f"reference and current need the same bins: {p.size} and {q.size} counts")
    return labels, _check_counts(p, "reference"), _check_counts(q, "current")


def smoothed_frequencies(counts: ArrayLike, epsilon: float = DEFAULT_EPSILON) -> NDArray[np.float64]:
    """Normalized frequencies with ``epsilon`` added to each, renormalized: ``(c / n + epsilon) / (1 + k * epsilon)``.

    Example:
        >>> smoothed_frequencies([3, 1, 0], epsilon=0.01).round(6).tolist()
        [0.737864, 0.252427, 0.009709]
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, not {epsilon!r}")
    c = _check_counts(np.asarray(counts, dtype=np.float64), "the")
    return (c / c.sum() + epsilon) / (1.0 + c.size * epsilon)


def linf_distance(reference: Counts, current: Counts) -> float:
    """L-infinity (Chebyshev) distance of the normalized frequencies: the largest change of any one value's share.

    Example:
        >>> linf_distance({"a": 50, "b": 50}, {"a": 70, "b": 30})
        0.2
    """
    _, p, q = aligned_counts(reference, current)
    return float(distance.chebyshev(p / p.sum(), q / q.sum()))


def jensen_shannon_distance(reference: Counts, current: Counts) -> float:
    """Jensen-Shannon *distance* (the square root of the divergence), base 2, so in ``[0, 1]``.

    0 for the same frequencies, 1 for frequencies with no value in common.

    Example:
        >>> jensen_shannon_distance({"a": 1}, {"b": 5}), jensen_shannon_distance([1, 3], [2, 6])
        (1.0, 0.0)
    """
    _, p, q = aligned_counts(reference, current)
    return float(distance.jensenshannon(p, q, base=2))


def kl_divergence(reference: Counts, current: Counts, epsilon: float = DEFAULT_EPSILON) -> float:
    """``D_KL(reference || current)`` in nats, on smoothed frequencies (see the module's *Smoothing*).

    Not symmetric: it weighs the changes by the reference frequencies.

    Example:
        >>> round(kl_divergence({"a": 50, "b": 50}, {"a": 70, "b": 30}), 4)
        0.0871
    """
    _, p, q = aligned_counts(reference, current)
    return float(stats.entropy(smoothed_frequencies(p, epsilon), smoothed_frequencies(q, epsilon)))


def psi(reference: Counts, current: Counts, epsilon: float = DEFAULT_EPSILON) -> float:
    """Population stability index ``sum (q - p) ln(q / p)`` on smoothed frequencies (symmetric).

    Usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.

    Example:
        >>> round(psi({"a": 50, "b": 50}, {"a": 70, "b": 30}), 4)
        0.1694
    """
    _, p, q = aligned_counts(reference, current)
    ps, qs = smoothed_frequencies(p, epsilon), smoothed_frequencies(q, epsilon)
    return float(np.sum(rel_entr(ps, qs) + rel_entr(qs, ps)))


def chi_squared_test(reference: Counts, current: Counts, min_expected: float = DEFAULT_MIN_EXPECTED) -> SignificanceResult:
    """Chi-squared test that both count vectors come from one distribution (2 x k contingency table).

    Cells whose expected current count under the reference frequencies,
    ``n_current * p_i``, is below ``min_expected`` (categories rare in the
    reference, or new in the current window) are pooled into one cell first,
    so the chi-squared approximation holds; cells empty on both sides are
    dropped. With fewer than two cells left there is nothing to test:
    statistic 0, p-value 1. No continuity correction.

    Example:
        >>> result = chi_squared_test({"a": 500, "b": 500}, {"a": 70, "b": 30})
        >>> round(result.statistic, 2), result.p_value < 0.001
        (14.56, True)
    """
    _, p, q = aligned_counts(reference, current)
    expected = q.sum() * p / p.sum()
    sparse = expected < min_expected
    if sparse.any():
        p = np.append(p[~sparse], p[sparse].sum())
        q = np.append(q[~sparse], q[sparse].sum())
    table = np.vstack([p, q])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return SignificanceResult(0.0, 1.0)
    result = stats.chi2_contingency(table, correction=False)
    return SignificanceResult(float(result.statistic), float(result.pvalue))


def _values(values: ArrayLike, side: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{side} values must be one-dimensional, not of shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{side} values are empty (no values to compare)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{side} values must be finite")
    return array


def ks_test(reference: ArrayLike, current: ArrayLike) -> SignificanceResult:
    """Two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, two-sided, exact for small samples).

    The statistic is the largest distance between the two empirical CDFs.

    Example:
        >>> ks_test([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
        SignificanceResult(statistic=0.0, p_value=1.0)
    """
    result = stats.ks_2samp(_values(reference, "reference"), _values(current, "current"))
    return SignificanceResult(float(result.statistic), float(result.pvalue))


def wasserstein(reference: ArrayLike, current: ArrayLike) -> float:
    """Wasserstein-1 (earth mover's) distance between two samples, in the values' units.

    Example:
        >>> wasserstein([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
        1.0
    """
    return float(stats.wasserstein_distance(_values(reference, "reference"), _values(current, "current")))


def normalized_wasserstein(reference: ArrayLike, current: ArrayLike, reference_std: float,
                           min_std: float = DEFAULT_MIN_STD) -> float:
    """Wasserstein distance in units of the reference standard deviation (floored at ``min_std``, as Evidently).

    A mean shift of ``d`` standard deviations, shape unchanged, gives ``d``.

    Example:
        >>> normalized_wasserstein([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], reference_std=2.0)
        0.5
    """
    if not np.isfinite(reference_std) or reference_std < 0:
        raise ValueError(f"reference_std must be finite and >= 0, not {reference_std!r}")
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0, not {min_std!r}")
    return wasserstein(reference, current) / max(float(reference_std), min_std)


def histogram_counts(values: ArrayLike, edges: Sequence[float]) -> NDArray[np.int64]:
    """Counts of ``values`` in the bins of ``edges`` (``numpy.histogram``), values outside the edges in the end bins.

    Example:
        >>> histogram_counts([-5.0, 0.0, 0.5, 1.0, 2.0, 9.0], [0.0, 1.0, 2.0]).tolist()
        [3, 3]
    """
    bins = np.asarray(edges, dtype=np.float64)
    if bins.ndim != 1 or bins.size < 2 or np.any(np.diff(bins) < 0) or not np.all(np.isfinite(bins)):
        raise ValueError("edges must be at least two sorted finite numbers")
    array = np.asarray(values, dtype=np.float64)
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError("values must be finite")
    counts, _ = np.histogram(np.clip(array, bins[0], bins[-1]), bins=bins)
    return counts.astype(np.int64)


def tokenize(text: str) -> list[str]:
    """The tokens of a text feature: lower-cased runs of word characters (``\\w+``).

    Example:
        >>> tokenize("Refund NOT received, order #4411!")
        ['refund', 'not', 'received', 'order', '4411']
    """
    return TOKEN_PATTERN.findall(text.lower())


def unseen_token_rate(texts: Iterable[str], vocabulary: Collection[str]) -> float:
    """Share of the tokens of ``texts`` (see :func:`tokenize`) that are not in ``vocabulary``.

    Raises ``ValueError`` when the texts have no token at all.

    Example:
        >>> unseen_token_rate(["card declined", "crypto wallet declined"], {"card", "declined"})
        0.4
    """
    seen = unseen = 0
    for text in texts:
        for token in tokenize(text):
            if token in vocabulary:
                seen += 1
            else:
                unseen += 1
    if seen + unseen == 0:
        raise ValueError("current texts have no tokens (nothing to compare)")
    return unseen / (seen + unseen)
