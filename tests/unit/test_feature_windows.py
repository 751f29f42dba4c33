"""Window accumulators merge exactly, survive JSON, stay bounded; comparisons find drift where it is, and only there.

The baselines are built here directly with the model dataclasses from a
generated "training set" (no builder exists yet); serving windows are drawn
from the same generator (stable) or from it with one change (drift). Seeds
are fixed. The significance tests of small windows (KS, chi-squared, alpha
0.05) raise false alarms at their nominal rate by design:
``test_small_window_false_alarms_are_at_the_nominal_rate`` checks the rate,
the stable-window tests use fixed seeds.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from driftline.baselines.model import (
    Baseline,
    BooleanStats,
    CategoricalStats,
    FeatureSchema,
    Histogram,
    NumericStats,
    TextStats,
)
from driftline.streams import distances
from driftline.streams.alerts import DriftKind
from driftline.streams.feature_windows import (
    OTHER,
    PREVIOUS_WINDOW,
    BooleanWindow,
    CategoricalWindow,
    DriftThresholds,
    Finding,
    NumericWindow,
    ServingWindow,
    TextWindow,
    compare,
    compare_stats,
    compare_windows,
    drift_event,
    drift_events,
    window_for,
    window_from_json,
)

MODEL, VERSION = "fraud-detector", "2026.11.1"
CHANNELS, CHANNEL_P = ["web", "app", "store"], [0.6, 0.3, 0.1]
COUNTRIES = [f"c{i:02d}" for i in range(20)]
COUNTRY_P = (w := 1 / np.arange(1, 21) ** 1.1) / w.sum()
WORDS = [f"w{i}" for i in range(300)]
WORD_P = (v := 1 / np.arange(1, 301)) / v.sum()
HOUR = 3_600_000


# --- a generated training set and its baseline ---------------------------------------------------------


def draw(rng: np.random.Generator, n: int, *, amount_shift: float = 0.0, store_share: float = 0.1,
         fraud_rate: float = 0.05, new_words: float = 0.0) -> dict[str, Any]:
    """``n`` rows of every column; the keyword arguments change one column's distribution."""
    channel_p = np.array([0.7 - store_share, 0.3, store_share])  # CHANNEL_P at store_share=0.1
    n_words = rng.integers(3, 9, n)
    words = rng.choice(len(WORDS), int(n_words.sum()), p=WORD_P)
    texts, start = [], 0
    for k in n_words:
        chosen = [WORDS[i] if rng.random() >= new_words else f"novel{rng.integers(1000)}" for i in words[start:start + k]]
        texts.append(" ".join(chosen).capitalize())
        start += k
    return {
        "amount": rng.lognormal(3.0, 0.5, n) * np.exp(amount_shift * 0.5),  # a shift of the log-mean, in its sd units
        "age": rng.integers(18, 91, n).astype(float),
        "channel": [CHANNELS[i] for i in rng.choice(3, n, p=channel_p)],
        "country": [COUNTRIES[i] for i in rng.choice(20, n, p=COUNTRY_P)],
        "is_new": rng.random(n) < 0.2,
        "description": texts,
        "prediction": np.where(rng.random(n) < fraud_rate, "fraud", "legit"),
        "label": np.where(rng.random(n) < 0.06, "fraud", "legit"),
    }


def numeric_stats(values: np.ndarray, rng: np.random.Generator) -> NumericStats:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    return NumericStats(
        count=int(values.size), missing=0, mean=float(values.mean()), std=float(values.std()),
        min=float(values.min()), max=float(values.max()),
        quantiles={str(q): float(np.quantile(values, q)) for q in (0.25, 0.5, 0.75)},
        histogram=Histogram(edges.tolist(), np.histogram(values, edges)[0].tolist()),
        sample=rng.choice(values, 2000, replace=False).tolist(),
    )  # fmt: skip


def categorical_stats(values: list[str]) -> CategoricalStats:
    return CategoricalStats(count=len(values), missing=0, frequencies=dict(Counter(values)))


def text_stats(texts: list[str], vocabulary_size: int = 200) -> TextStats:
    tokens = Counter(t for text in texts for t in distances.tokenize(text))
    return TextStats(count=len(texts), missing=0, tokens=sum(tokens.values()), vocabulary=dict(tokens.most_common(vocabulary_size)))


def build_baseline(seed: int = 7, rows: int = 20_000) -> tuple[Baseline, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    train = draw(rng, rows)
    schema = {
        "amount": FeatureSchema("amount", "numeric", min=0.0),
        "age": FeatureSchema("age", "numeric", min=18.0, max=90.0, integral=True),
        "channel": FeatureSchema("channel", "categorical", domain=CHANNELS),
        "country": FeatureSchema("country", "categorical", domain=COUNTRIES),
        "is_new": FeatureSchema("is_new", "boolean"),
        "description": FeatureSchema("description", "text"),
    }
    statistics = {
        "amount": numeric_stats(train["amount"], rng),
        "age": numeric_stats(train["age"], rng),
        "channel": categorical_stats(train["channel"]),
        "country": categorical_stats(train["country"]),
        "is_new": BooleanStats(rows, 0, int(train["is_new"].sum())),
        "description": text_stats(train["description"]),
    }
    baseline = Baseline(MODEL, VERSION, schema, statistics, rows=rows,
                        prediction=categorical_stats(train["prediction"].tolist()),
                        label=categorical_stats(train["label"].tolist()))
    return baseline, train


BASELINE, TRAIN = build_baseline()


def serving_window(seed: int, n: int, baseline: Baseline = BASELINE, **change: float) -> ServingWindow:
    rng = np.random.default_rng(seed)
    data = draw(rng, n, **change)
    window = ServingWindow(baseline, seed=seed)
    for i in range(n):
        window.update({
            "model": {"name": MODEL, "version": VERSION},
            "prediction": {"label": str(data["prediction"][i]), "score": 0.5},
            "features": {
                "numeric": {"amount": float(data["amount"][i]), "age": float(data["age"][i])},
                "categorical": {"channel": data["channel"][i], "country": data["country"][i],
                                "description": data["description"][i]},
                "boolean": {"is_new": bool(data["is_new"][i])},
                "vector": {}, "missing": [],
            },
        })  # fmt: skip
        window.update_label(str(data["label"][i]))
    return window


def drifted(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.feature, f.metric) for f in findings if f.drifted}


# --- accumulators: histogram, merge, JSON, bounds ----------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
edges_strategy = st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=8, unique=True).map(sorted)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(finite, st.none(), st.just(float("nan"))), max_size=100), edges_strategy)
def test_numeric_bins_equal_numpy_histogram_of_clipped_values(values: list[float | None], edges: list[float]) -> None:
    window = NumericWindow(edges)
    for v in values:
        window.update(v)
    present = np.array([v for v in values if v is not None and v == v], dtype=float)
    expected = np.histogram(np.clip(present, edges[0], edges[-1]), edges)[0] if present.size else np.zeros(len(edges) - 1)
    assert window.bins == expected.tolist()
    assert window.count == present.size and window.missing == len(values) - present.size
    assert window.below == int(np.sum(present < edges[0])) and window.above == int(np.sum(present > edges[-1]))


def test_binned_findings_equal_psi_and_js_of_numpy_histograms() -> None:
    stats_ = BASELINE.statistics["amount"]
    edges = np.array(stats_.histogram.edges)
    serve = np.random.default_rng(1).lognormal(3.1, 0.55, 3000)
    window = window_for(stats_)
    for x in serve:
        window.update(float(x))
    found = {f.metric: f.value for f in compare(window, BASELINE.schema["amount"], stats_)}
    reference = np.histogram(TRAIN["amount"], edges)[0]
    current = np.histogram(np.clip(serve, edges[0], edges[-1]), edges)[0]
    assert found["psi"] == pytest.approx(distances.psi(reference, current), abs=1e-12)
    assert found["jensen_shannon"] == pytest.approx(distances.jensen_shannon_distance(reference, current), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(finite, max_size=60), st.lists(finite, max_size=60), st.integers(1, 10), st.integers(-5, 5))
def test_numeric_merge_equals_accumulating_everything(a: list[float], b: list[float], k: int, seed: int) -> None:
    edges = [-10.0, 0.0, 10.0]
    left, right, whole = NumericWindow(edges, k, seed), NumericWindow(edges, k, seed), NumericWindow(edges, k, seed)
    for x in a:
        left.update(x)
        whole.update(x)
    for i, x in enumerate(b):
        right.update(x, key=len(a) + i)  # the positions in the whole stream
        whole.update(x)
    assert left.merge(right) == whole
    assert len(whole.sample) == min(k, len(a) + len(b))
    assert Counter(whole.sample) <= Counter(a + b)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from([f"v{i}" for i in range(30)] + [None]), max_size=80),
    st.lists(st.sampled_from([f"v{i}" for i in range(30)] + [None]), max_size=80),
    st.sets(st.sampled_from([f"v{i}" for i in range(30)]), max_size=5),
    st.integers(0, 6),
)
def test_categorical_merge_equals_accumulating_everything(a, b, known, max_unknown) -> None:
    left, right, whole = (CategoricalWindow(known, max_unknown) for _ in range(3))
    for v in a:
        left.update(v)
        whole.update(v)
    for v in b:
        right.update(v)
        whole.update(v)
    assert left.merge(right) == whole
    assert sum(whole.counts.values()) + whole.other == whole.count
    for value, n in whole.counts.items():  # tracked counts are exact
        assert n == (a + b).count(value)


def test_boolean_and_text_merge_equal_accumulating_everything() -> None:
    values = [True, False, None, True, True]
    left, right, whole = BooleanWindow(), BooleanWindow(), BooleanWindow()
    for i, v in enumerate(values):
        (left if i < 2 else right).update(v)
        whole.update(v)
    assert left.merge(right) == whole
    vocabulary = frozenset({"card", "declined"})
    texts = ["Card declined", None, "crypto wallet", "declined again"]
    left_t, right_t, whole_t = TextWindow(vocabulary), TextWindow(vocabulary), TextWindow(vocabulary)
    for i, text in enumerate(texts):
        (left_t if i < 2 else right_t).update(text)
        whole_t.update(text)
    assert left_t.merge(right_t) == whole_t
    assert (whole_t.seen, whole_t.unseen, whole_t.missing) == (3, 3, 1)


def test_merging_different_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="same edges"):
        NumericWindow([0.0, 1.0]).merge(NumericWindow([0.0, 2.0]))
    with pytest.raises(ValueError, match="same known"):
        CategoricalWindow(["a"]).merge(CategoricalWindow(["b"]))
    with pytest.raises(ValueError, match="same vocabulary"):
        TextWindow({"a"}).merge(TextWindow({"b"}))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, max_size=80), st.lists(st.text(max_size=5), max_size=80))
def test_windows_round_trip_through_json_and_continue_identically(numbers: list[float], texts: list[str]) -> None:
    windows = [NumericWindow([0.0, 1.0, 2.0], 7, 3), CategoricalWindow(["a"], 3), BooleanWindow(), TextWindow({"a", "b"})]
    for i, (x, s) in enumerate(zip(numbers, texts)):
        windows[0].update(x)
        windows[1].update(s)
        windows[2].update(i % 3 == 0)
        windows[3].update(s)
    for window in windows:
        restored = window_from_json(json.loads(json.dumps(window.to_json())), TextStats(1, 0, 1, {"a": 1, "b": 1}))
        assert restored == window
        for x in (0.5, 5.0):
            window.update(x if isinstance(window, NumericWindow) else str(x))  # type: ignore[arg-type]
            restored.update(x if isinstance(restored, NumericWindow) else str(x))  # type: ignore[arg-type]
        assert restored == window


def test_text_window_needs_its_vocabulary_back() -> None:
    state = TextWindow({"a", "b"}).update("a c").to_json()
    with pytest.raises(ValueError, match="vocabulary"):
        TextWindow.from_json(state, {"a"})


def test_windows_stay_bounded() -> None:
    numeric, categorical = NumericWindow([0.0, 1.0], sample_size=1000), CategoricalWindow([f"k{i}" for i in range(10)], 50)
    for i in range(100_000):
        numeric.update(float(i))
        categorical.update(f"id-{i}" if i % 2 else f"k{i % 10}")
    assert len(numeric.sample) == 1000 and numeric.count == 100_000
    assert len(categorical.counts) <= 10 + 50
    assert categorical.frequencies()[OTHER] == categorical.count - sum(categorical.counts.values())
    assert len(json.dumps(numeric.to_json())) < 60_000 and len(json.dumps(categorical.to_json())) < 5_000


def test_the_sample_is_uniform_and_deterministic() -> None:
    window = NumericWindow(sample_size=1000, seed=4)
    for i in range(20_000):
        window.update(float(i))
    sample = np.array(window.sample)
    assert stats.kstest(sample / 20_000, "uniform").pvalue > 1e-3
    again = NumericWindow(sample_size=1000, seed=4)
    for i in range(20_000):
        again.update(float(i))
    other_seed = NumericWindow(sample_size=1000, seed=5)
    for i in range(20_000):
        other_seed.update(float(i))
    assert again == window and set(other_seed.sample) != set(window.sample)


def test_small_windows_are_kept_whole() -> None:
    window = NumericWindow(sample_size=1000)
    values = np.random.default_rng(2).normal(size=1000)
    for x in values:
        window.update(float(x))
    assert sorted(window.sample) == sorted(values.tolist())


# --- comparisons against the baseline --------------------------------------------------------------------------


@pytest.mark.parametrize("n, seed", [(500, 101), (5000, 102)])
def test_windows_drawn_from_the_baseline_distribution_do_not_drift(n: int, seed: int) -> None:
    findings = serving_window(seed, n).compare()
    assert drifted(findings) == set()
    features = {f.feature for f in findings}
    assert features == {"amount", "age", "channel", "country", "is_new", "description", "prediction", "label"}


def test_small_window_false_alarms_are_at_the_nominal_rate() -> None:
    stats_, rng = BASELINE.statistics["amount"], np.random.default_rng(55)
    alarms = 0
    for seed in range(60):
        window = window_for(stats_, seed=seed)
        for x in rng.lognormal(3.0, 0.5, 500):
            window.update(float(x))
        alarms += any(f.drifted for f in compare(window, BASELINE.schema["amount"], stats_))
    assert alarms / 60 <= 0.15  # alpha = 0.05; 0.15 is far in the binomial tail for 60 windows


def test_one_categorys_share_moving_drifts_that_feature_only() -> None:
    findings = serving_window(103, 5000, store_share=0.25).compare()
    assert ("channel", "linf") in drifted(findings)
    assert {feature for feature, _ in drifted(findings)} == {"channel"}
    linf = next(f for f in findings if f.feature == "channel" and f.metric == "linf")
    assert linf.value == pytest.approx(0.15, abs=0.03) and linf.threshold == 0.1 and linf.p_value < 0.01


@pytest.mark.parametrize("n, metric", [(500, "ks"), (5000, "wasserstein")])
def test_a_mean_shift_drifts_that_numeric_feature_only(n: int, metric: str) -> None:
    findings = serving_window(104, n, amount_shift=0.5).compare()
    assert ("amount", metric) in drifted(findings)
    assert {feature for feature, _ in drifted(findings)} == {"amount"}


def test_small_windows_decide_by_tests_and_large_ones_by_effect_sizes() -> None:
    small = {f.metric: f for f in serving_window(105, 500, amount_shift=1.0).compare() if f.feature == "amount"}
    assert small["ks"].drifted and small["ks"].threshold == 0.05
    assert small["wasserstein"].value > 0.3 and small["wasserstein"].threshold is None and not small["wasserstein"].drifted
    large = {f.metric: f for f in serving_window(106, 5000, amount_shift=1.0).compare() if f.feature == "amount"}
    assert large["ks"].threshold is None and not large["ks"].drifted and large["ks"].p_value < 1e-6
    assert large["wasserstein"].drifted and large["psi"].drifted and large["psi"].warning


def test_nothing_drifts_below_min_count() -> None:
    findings = serving_window(107, 60, amount_shift=3.0).compare()
    assert drifted(findings) == set()
    assert drifted(serving_window(107, 60, amount_shift=3.0).compare(DriftThresholds(min_count=50))) == {("amount", "ks")}


def test_the_prediction_and_the_label_drift_with_their_kinds() -> None:
    findings = serving_window(108, 5000, fraud_rate=0.25).compare()
    prediction = [f for f in findings if f.drifted]
    assert {(f.feature, f.kind) for f in prediction} == {("prediction", DriftKind.PREDICTION)}
    window = ServingWindow(BASELINE)
    for i in range(2000):
        window.update_label("fraud" if i % 4 == 0 else "legit")
    label = [f for f in window.compare() if f.drifted]
    assert label and {(f.feature, f.kind) for f in label} == {("label", DriftKind.LABEL)}


def test_unseen_tokens_drift_above_the_baselines_own_unseen_rate() -> None:
    stable = [f for f in serving_window(109, 1000).compare() if f.metric == "unseen_tokens"][0]
    reference_rate = stable.details["reference_rate"]
    assert 0.0 < reference_rate < 0.2  # the bounded vocabulary leaves some training tokens out
    assert stable.value == pytest.approx(reference_rate, abs=0.02) and not stable.drifted
    moved = [f for f in serving_window(110, 1000, new_words=0.3).compare() if f.drifted]
    assert [(f.feature, f.metric) for f in moved] == [("description", "unseen_tokens")]
    assert moved[0].threshold == pytest.approx(reference_rate + 0.1)


def test_new_categories_beyond_the_tracked_ones_still_count() -> None:
    stats_ = CategoricalStats(10_000, 0, {"a": 5000, "b": 5000})
    window = window_for(stats_, max_unknown=2)
    for i in range(3000):
        window.update("a" if i % 3 == 0 else f"new-{i % 40}")
    assert len(window.counts) == 3 and window.other > 0
    findings = {f.metric: f for f in compare(window, FeatureSchema("x", "categorical"), stats_)}
    # b is a known value (always tracked): its absence is a count of 0 (its share fell by 0.5), not hidden in
    # __other__; the untracked new values are __other__, which the baseline does not have
    assert findings["linf"].value == pytest.approx(max(0.5, window.other / window.count)) and findings["linf"].drifted
    assert findings["linf"].value > 0.5


def test_per_feature_thresholds_apply_to_that_feature_only() -> None:
    window = serving_window(111, 5000, store_share=0.16)
    assert drifted(window.compare()) == set()
    strict = DriftThresholds(per_feature={"channel": {"linf": 0.04}})
    assert drifted(window.compare(strict)) == {("channel", "linf")}
    with pytest.raises(ValueError, match="unknown names"):
        DriftThresholds(per_feature={"channel": {"linfinity": 0.04}})
    with pytest.raises(ValueError, match="linf"):
        DriftThresholds(per_feature={"channel": {"linf": -1.0}})


def test_comparing_mismatched_types_is_an_error() -> None:
    with pytest.raises(TypeError):
        compare_stats(BooleanWindow().update(True), BASELINE.statistics["amount"], "amount")
    with pytest.raises(ValueError, match="schema type"):
        compare(NumericWindow().update(1.0), FeatureSchema("amount", "categorical"), BASELINE.statistics["amount"])


def test_empty_windows_give_no_findings() -> None:
    assert compare(window_for(BASELINE.statistics["amount"]).update(None), BASELINE.schema["amount"],
                   BASELINE.statistics["amount"]) == []
    assert compare_windows(CategoricalWindow(), CategoricalWindow().update("a"), "x") == []


# --- window over window -------------------------------------------------------------------------------------


def test_window_over_window_finds_the_change_between_windows_only() -> None:
    before, same, after = serving_window(112, 5000), serving_window(113, 5000), serving_window(114, 5000, amount_shift=0.6)
    assert drifted(same.compare_previous(before)) == set()
    findings = after.compare_previous(before)
    assert {feature for feature, _ in drifted(findings)} == {"amount"}
    assert all(f.reference == PREVIOUS_WINDOW for f in findings)


def test_window_over_window_text_uses_the_previous_unseen_rate() -> None:
    vocabulary = frozenset(WORDS[:50])
    before, after = TextWindow(vocabulary), TextWindow(vocabulary)
    for i in range(300):
        before.update(f"{WORDS[i % 50]} {WORDS[60]}")  # half unseen
        after.update(f"{WORDS[61]} {WORDS[62]}")  # all unseen
    (finding,) = compare_windows(after, before, "description")
    assert finding.threshold == pytest.approx(0.6) and finding.value == 1.0 and finding.drifted


# --- drift events -----------------------------------------------------------------------------------------------


def test_a_drifted_finding_becomes_a_drift_event() -> None:
    findings = serving_window(103, 5000, store_share=0.25).compare()
    events = drift_events(findings, model_name=MODEL, model_version=VERSION, window_start_ms=10 * HOUR,
                          window_size_ms=HOUR, slice={"region": "eu"})
    linf = next(e for e in events if e.detector == "linf")
    assert (linf.kind, linf.stream, linf.feature, linf.baseline) == (DriftKind.DATA, "feature.channel", "channel", f"{MODEL}|{VERSION}")
    assert (linf.position, linf.event_time_ms, linf.window_size, linf.slice) == (10, 10 * HOUR, 5000, {"region": "eu"})
    assert linf.threshold == 0.1 and linf.statistic > 0.1 and linf.p_value is not None
    assert {e.detector for e in events} <= {"linf", "jensen_shannon", "psi"}


def test_baseline_and_previous_window_events_have_distinct_ids() -> None:
    common = dict(value=0.3, threshold=0.25, p_value=0.0, drifted=True, window_size=5000)
    ours = Finding("amount", "psi", **common)  # type: ignore[arg-type]
    previous = Finding("amount", "psi", reference=PREVIOUS_WINDOW, **common)  # type: ignore[arg-type]
    kwargs = dict(model_name=MODEL, model_version=VERSION, window_start_ms=0, window_size_ms=HOUR)
    a, b = drift_event(ours, **kwargs), drift_event(previous, **kwargs)  # type: ignore[arg-type]
    assert (a.detector, b.detector, b.baseline) == ("psi", "psi.previous_window", "previous_window")
    assert a.id != b.id and a.alert_key == b.alert_key


def test_prediction_and_label_events_name_their_stream() -> None:
    for kind in ("prediction", "label"):
        event = drift_event(Finding(kind, "jensen_shannon", 0.2, 0.1, 0.0, True, 900, kind=kind),
                            model_name=MODEL, model_version=VERSION, window_start_ms=HOUR, window_size_ms=HOUR)
        assert (event.kind, event.stream, event.feature) == (kind, kind, None)


def test_only_drifted_findings_become_events() -> None:
    with pytest.raises(ValueError, match="did not drift"):
        drift_event(Finding("amount", "ks", 0.01, 0.05, 0.9), model_name=MODEL, model_version=VERSION,
                    window_start_ms=0, window_size_ms=HOUR)


# --- the serving window ------------------------------------------------------------------------------------------


def test_serving_window_merges_and_round_trips() -> None:
    a, b = serving_window(115, 300), serving_window(116, 200)
    state = json.loads(json.dumps(a.to_json()))
    restored = ServingWindow.from_json(state, BASELINE)
    assert restored.to_json() == a.to_json()
    merged = restored.merge(b)
    assert merged.count == 500 and merged.features["channel"].count == 500  # type: ignore[union-attr]
    assert merged.prediction.count == 500 and merged.label.count == 500  # type: ignore[union-attr]


def test_serving_window_counts_absent_and_mistyped_features_as_missing() -> None:
    window = ServingWindow(BASELINE)
    window.update({"features": {"numeric": {"age": 30.0}, "categorical": {"amount": "12"}, "missing": ["channel"]},
                   "prediction": {"label": "legit"}})
    assert window.features["amount"].missing == 1 and window.features["age"].count == 1
    assert window.features["channel"].missing == 1 and window.features["is_new"].missing == 1


from driftline.baselines.model import PERCENTILE_PROBABILITIES  # noqa: E402


def _stats_with_percentiles(values, sample):
    from driftline.baselines.model import Histogram as _Histogram, NumericStats as _NumericStats

    edges = np.linspace(values.min(), values.max(), 21)
    counts, _ = np.histogram(values, edges)
    return _NumericStats(count=values.size, missing=0, mean=float(values.mean()), std=float(values.std()),
                         min=float(values.min()), max=float(values.max()), quantiles={},
                         histogram=_Histogram(edges.tolist(), counts.tolist()), sample=list(sample),
                         percentiles=np.quantile(values, PERCENTILE_PROBABILITIES).tolist())


def test_the_reference_comes_from_the_percentiles_not_from_an_unlucky_sample():
    from driftline.streams.feature_windows import NumericWindow as _NumericWindow, compare_stats as _compare_stats

    rng = np.random.default_rng(1)
    training = rng.normal(0.0, 1.0, 50_000)
    unlucky = rng.normal(-0.1, 1.0, 2_000)  # a sample 0.1σ off: the old reference
    stats = _stats_with_percentiles(training, unlucky)
    drifted = 0
    for seed in range(30):
        window = _NumericWindow(stats.histogram.edges)
        for x in np.random.default_rng(100 + seed).normal(0.0, 1.0, 1_200):
            window.update(float(x))
        drifted += any(f.drifted for f in _compare_stats(window, stats, "x"))
    assert drifted <= 1  # ~alpha of 30 stable windows
    shifted = _NumericWindow(stats.histogram.edges)
    for x in np.random.default_rng(7).normal(0.3, 1.0, 1_200):
        shifted.update(float(x))
    found = {f.metric for f in _compare_stats(shifted, stats, "x") if f.drifted}
    assert "wasserstein" in found


def test_the_percentile_reference_matches_the_training_distribution():
    from driftline.streams.feature_windows import reference_values

    from scipy.stats import ks_2samp, wasserstein_distance

    rng = np.random.default_rng(3)
    # within 0.5% of a std, symmetric or long-tailed (the thresholds are at 10%)
    for training, bound in ((rng.normal(5.0, 2.0, 100_000), 0.005), (rng.gamma(2.0, 2.0, 100_000), 0.005)):
        reference = reference_values(_stats_with_percentiles(training, training[:10]))
        assert wasserstein_distance(training, reference) / training.std() < bound
        assert ks_2samp(training, reference).statistic < 0.01
