"""The distances equal independent computations written from their formulas.

Every reference below is written here from the definition with NumPy (not by
calling the SciPy function the module uses), on generated data. Tolerance:
absolute and relative 1e-12, except the Jensen-Shannon *distance*, compared
as its square (the divergence), because a square root turns a 1e-17 rounding
difference near 0 into 3e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from driftline.streams.distances import (
    DEFAULT_EPSILON,
    aligned_counts,
    chi_squared_test,
    histogram_counts,
    jensen_shannon_distance,
    kl_divergence,
    ks_test,
    linf_distance,
    normalized_wasserstein,
    psi,
    smoothed_frequencies,
    tokenize,
    unseen_token_rate,
    wasserstein,
)

TOL = 1e-12

categories = st.sampled_from([f"v{i}" for i in range(12)])
count_maps = st.dictionaries(categories, st.integers(0, 10_000), min_size=1, max_size=12).filter(lambda d: sum(d.values()) > 0)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


def union_frequencies(p: dict[str, int], q: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(p) | set(q))
    a = np.array([p.get(k, 0) for k in keys], dtype=float)
    b = np.array([q.get(k, 0) for k in keys], dtype=float)
    return a / a.sum(), b / b.sum()


def smoothed(freq: np.ndarray, eps: float = DEFAULT_EPSILON) -> np.ndarray:
    return (freq + eps) / (1 + eps * freq.size)


def xlog2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log2(x / y) with 0 log 0 = 0."""
    out = np.zeros_like(x)
    nz = x > 0
    out[nz] = x[nz] * np.log2(x[nz] / y[nz])
    return out


# --- categorical -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(count_maps, count_maps)
def test_linf_is_the_largest_change_of_one_share(p: dict[str, int], q: dict[str, int]) -> None:
    a, b = union_frequencies(p, q)
    assert close(linf_distance(p, q), float(np.max(np.abs(a - b))))


@settings(max_examples=200, deadline=None)
@given(count_maps, count_maps)
def test_jensen_shannon_distance_is_the_root_of_the_base2_divergence(p: dict[str, int], q: dict[str, int]) -> None:
    a, b = union_frequencies(p, q)
    m = (a + b) / 2
    divergence = 0.5 * xlog2(a, m).sum() + 0.5 * xlog2(b, m).sum()
    js = jensen_shannon_distance(p, q)
    assert 0.0 <= js <= 1.0
    assert close(js**2, float(divergence))


@settings(max_examples=200, deadline=None)
@given(count_maps, count_maps)
def test_kl_divergence_is_on_epsilon_smoothed_frequencies_in_nats(p: dict[str, int], q: dict[str, int]) -> None:
    a, b = union_frequencies(p, q)
    ps, qs = smoothed(a), smoothed(b)
    assert close(kl_divergence(p, q), float(np.sum(ps * np.log(ps / qs))))


@settings(max_examples=200, deadline=None)
@given(count_maps, count_maps)
def test_psi_is_the_symmetric_sum_on_smoothed_frequencies(p: dict[str, int], q: dict[str, int]) -> None:
    a, b = union_frequencies(p, q)
    ps, qs = smoothed(a), smoothed(b)
    value = psi(p, q)
    assert close(value, float(np.sum((qs - ps) * np.log(qs / ps))))
    assert close(value, psi(q, p))
    assert math.isclose(value, kl_divergence(p, q) + kl_divergence(q, p), rel_tol=1e-9, abs_tol=TOL)


def test_smoothing_is_additive_on_frequencies_then_renormalized() -> None:
    out = smoothed_frequencies([6, 0, 2], epsilon=0.01)
    assert np.allclose(out, (np.array([0.75, 0.0, 0.25]) + 0.01) / 1.03, rtol=0, atol=TOL)
    assert close(float(out.sum()), 1.0)
    with pytest.raises(ValueError, match="epsilon"):
        smoothed_frequencies([1, 2], epsilon=0.0)


def test_identical_and_disjoint_distributions() -> None:
    assert linf_distance({"a": 1, "b": 3}, {"a": 10, "b": 30}) == 0.0
    assert jensen_shannon_distance({"a": 1, "b": 3}, {"a": 10, "b": 30}) == 0.0
    assert psi({"a": 1, "b": 3}, {"a": 10, "b": 30}) == pytest.approx(0.0, abs=TOL)
    assert jensen_shannon_distance({"a": 5}, {"b": 5}) == 1.0
    assert linf_distance({"a": 5}, {"b": 5}) == 1.0


def test_counts_are_aligned_over_the_union_of_categories() -> None:
    labels, p, q = aligned_counts({"web": 3, "app": 1}, {"kiosk": 2, "web": 2})
    assert labels == ["app", "kiosk", "web"]
    assert p.tolist() == [1.0, 0.0, 3.0] and q.tolist() == [0.0, 2.0, 2.0]


@pytest.mark.parametrize(
    "reference, current, message",
    [
        ({}, {"a": 1}, "reference counts are empty"),
        ({"a": 1}, {"a": 0}, "current counts are empty"),
        ([1, 2], [1, 2, 3], "same bins"),
        ([1, -2], [1, 2], "finite and >= 0"),
        ([1, float("nan")], [1, 2], "finite and >= 0"),
    ],
)
def test_bad_counts_are_a_clear_value_error(reference, current, message) -> None:
    for measure in (linf_distance, jensen_shannon_distance, kl_divergence, psi, chi_squared_test):
        with pytest.raises(ValueError, match=message):
            measure(reference, current)


def test_a_mapping_and_an_array_cannot_be_compared() -> None:
    with pytest.raises(TypeError):
        psi({"a": 1}, [1])


# --- chi-squared -----------------------------------------------------------------------------------------


def chi_squared_reference(table: np.ndarray) -> tuple[float, float]:
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


def test_chi_squared_equals_the_contingency_formula() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        k = int(rng.integers(2, 12))
        reference = rng.integers(50, 5000, k).astype(float)
        current = rng.integers(50, 500, k).astype(float)
        result = chi_squared_test(reference, current, min_expected=0.0)
        statistic, p_value = chi_squared_reference(np.vstack([reference, current]))
        assert math.isclose(result.statistic, statistic, rel_tol=1e-9, abs_tol=TOL)
        assert math.isclose(result.p_value, p_value, rel_tol=1e-9, abs_tol=TOL)


def test_chi_squared_pools_cells_rare_under_the_reference() -> None:
    reference = {"a": 5000, "b": 4990, "rare1": 5, "rare2": 5}
    current = {"a": 40, "b": 50, "rare1": 1, "new": 9}
    result = chi_squared_test(reference, current)  # expected rare1, rare2, new < 5 in 100 values: pooled
    pooled = np.array([[5000, 4990, 10], [40, 50, 10]], dtype=float)
    statistic, p_value = chi_squared_reference(pooled)
    assert math.isclose(result.statistic, statistic, rel_tol=1e-9)
    assert math.isclose(result.p_value, p_value, rel_tol=1e-9)


def test_chi_squared_with_a_single_cell_has_nothing_to_test() -> None:
    assert tuple(chi_squared_test({"a": 10}, {"a": 3})) == (0.0, 1.0)


# --- numeric --------------------------------------------------------------------------------------------

samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=60)


def ks_statistic_reference(x: np.ndarray, y: np.ndarray) -> float:
    points = np.concatenate([x, y])
    fx = np.searchsorted(np.sort(x), points, side="right") / x.size
    fy = np.searchsorted(np.sort(y), points, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


def wasserstein_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Integral of |F - G| over the pooled sorted values."""
    points = np.sort(np.concatenate([x, y]))
    fx = np.searchsorted(np.sort(x), points[:-1], side="right") / x.size
    fy = np.searchsorted(np.sort(y), points[:-1], side="right") / y.size
    return float(np.sum(np.abs(fx - fy) * np.diff(points)))


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")  # scipy falls back to asymp on ties
@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_ks_statistic_is_the_largest_gap_between_empirical_cdfs(x: list[float], y: list[float]) -> None:
    result = ks_test(x, y)
    assert close(result.statistic, ks_statistic_reference(np.array(x), np.array(y)))
    assert 0.0 <= result.p_value <= 1.0


def test_ks_p_value_is_scipys_two_sided_test() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, 800), rng.normal(0.1, 1, 600)
    expected = stats.ks_2samp(x, y)
    result = ks_test(x, y)
    assert (result.statistic, result.p_value) == (float(expected.statistic), float(expected.pvalue))
    # the large-sample limit, written independently: Kolmogorov's distribution
    n_eff = x.size * y.size / (x.size + y.size)
    assert math.isclose(result.p_value, stats.kstwobign.sf(result.statistic * math.sqrt(n_eff)), rel_tol=0.1)


@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_wasserstein_is_the_area_between_the_cdfs(x: list[float], y: list[float]) -> None:
    expected = wasserstein_reference(np.array(x), np.array(y))
    assert math.isclose(wasserstein(x, y), expected, rel_tol=1e-9, abs_tol=1e-9)


def test_wasserstein_of_equal_sizes_is_the_mean_gap_of_sorted_values() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, 1000), rng.normal(0.3, 2, 1000)
    assert close(wasserstein(x, y), float(np.mean(np.abs(np.sort(x) - np.sort(y)))))


def test_normalized_wasserstein_is_in_reference_standard_deviations() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(10, 4, 2000)
    shifted = x + 2.0  # a shift of half a standard deviation
    assert close(normalized_wasserstein(x, shifted, reference_std=4.0), 0.5)
    assert close(normalized_wasserstein(x, shifted, reference_std=0.0), 2.0 / 1e-3)  # floored as Evidently
    with pytest.raises(ValueError, match="reference_std"):
        normalized_wasserstein(x, shifted, reference_std=float("nan"))


@pytest.mark.parametrize("bad", [[], [1.0, float("inf")], [[1.0, 2.0]]])
def test_bad_samples_are_a_clear_value_error(bad) -> None:
    with pytest.raises(ValueError, match="current values"):
        ks_test([1.0, 2.0], bad)
    with pytest.raises(ValueError, match="reference values"):
        wasserstein(bad, [1.0, 2.0])


# --- bins --------------------------------------------------------------------------------------------------


def histogram_reference(values: list[float], edges: list[float]) -> list[int]:
    """The Histogram rule: edges[i] <= x < edges[i+1], the last bin closed, outside values in the end bins."""
    counts = [0] * (len(edges) - 1)
    for x in values:
        if x < edges[0]:
            counts[0] += 1
        elif x >= edges[-1]:
            counts[-1] += 1
        else:
            i = max(j for j in range(len(edges) - 1) if edges[j] <= x)
            counts[i] += 1
    return counts


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), max_size=80),
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=8, unique=True).map(sorted),
)
def test_histogram_counts_follow_the_histogram_rule(values: list[float], edges: list[float]) -> None:
    assert histogram_counts(values, edges).tolist() == histogram_reference(values, edges)


def test_binned_js_and_psi_equal_those_of_numpy_histograms() -> None:
    rng = np.random.default_rng(21)
    train, serve = rng.normal(0, 1, 20_000), rng.normal(0.4, 1.3, 3000)
    edges = np.quantile(train, np.linspace(0, 1, 11))
    p = np.histogram(train, edges)[0]
    q = np.histogram(np.clip(serve, edges[0], edges[-1]), edges)[0]
    assert histogram_counts(serve, edges).tolist() == q.tolist()
    a, b = p / p.sum(), q / q.sum()
    m = (a + b) / 2
    assert close(jensen_shannon_distance(p, histogram_counts(serve, edges)) ** 2,
                 float(0.5 * xlog2(a, m).sum() + 0.5 * xlog2(b, m).sum()))
    ps, qs = smoothed(a), smoothed(b)
    assert close(psi(p, histogram_counts(serve, edges)), float(np.sum((qs - ps) * np.log(qs / ps))))


def test_histogram_needs_two_sorted_edges() -> None:
    with pytest.raises(ValueError, match="edges"):
        histogram_counts([1.0], [1.0])
    with pytest.raises(ValueError, match="edges"):
        histogram_counts([1.0], [2.0, 1.0])


# --- text -----------------------------------------------------------------------------------------------------


def test_tokens_are_lower_cased_word_runs() -> None:
    assert tokenize("Wire TRANSFER to ACME-42, ok?") == ["wire", "transfer", "to", "acme", "42", "ok"]
    assert tokenize("  ...  ") == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abcAB xyz,.-", max_size=30), min_size=1, max_size=10),
       st.sets(st.text(alphabet="abcxyz", min_size=1, max_size=3), max_size=10))
def test_unseen_token_rate_is_the_share_of_tokens_outside_the_vocabulary(texts: list[str], vocabulary: set[str]) -> None:
    tokens = [t for text in texts for t in text.lower().replace(",", " ").replace(".", " ").replace("-", " ").split()]
    if not tokens:
        with pytest.raises(ValueError, match="no tokens"):
            unseen_token_rate(texts, vocabulary)
        return
    assert unseen_token_rate(texts, vocabulary) == sum(t not in vocabulary for t in tokens) / len(tokens)
