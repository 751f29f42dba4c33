"""The contract every registered drift detector keeps (like River's test_drift_detectors.py).

A detector registered in ``DETECTORS`` is tested by every parametrized test
here: it finds an abrupt change after it and not before, its alarms are
exactly those of the bare River detector run offline over the same transformed
sequence, a pickle/unpickle anywhere in the stream changes no alarm, replayed
positions are not applied twice, and bad specs fail with a clear message.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import random
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import drift

from driftline.streams.detectors import (
    DETECTORS,
    STREAM_KINDS,
    ADWINDetector,
    DetectorError,
    DetectorSpec,
    DriftSignal,
    InvalidValueError,
    PageHinkleyDetector,
    PositionGapError,
    Standardizer,
    StreamDetector,
    build_detector,
    default_spec,
    detector_parameters,
)

# River parameters that keep each detector fast enough for many alarms in a short test.
# KSWIN's defaults need 3,000 events to fill its window (300 values fed, every 10th).
QUICK_PARAMS: dict[str, dict] = {
    "adwin": {},
    "page_hinkley": {},
    "kswin": {"alpha": 1e-3, "window_size": 100, "stat_size": 30},
}

# How each spec variant prepares the input; every registered detector runs with each.
VARIANTS: dict[str, dict] = {
    "raw": {},
    "warmup": {"standardize": True, "warmup": 300},
    "baseline": {"standardize": True, "baseline_mean": 10.0, "baseline_std": 2.0, "clip": 3.0},
    "sampled": {"standardize": True, "warmup": 200, "sample_every": 3},
}


def regime_stream(seed: int, n_segments: int = 6, length: int = 1500, mean: float = 10.0, std: float = 2.0) -> list[float]:
    """Gaussian segments whose mean moves by ±1.5σ at every segment boundary."""
    rng = random.Random(seed)
    xs: list[float] = []
    for k in range(n_segments):
        level = mean + (1.5 * std if k % 2 else 0.0)
        xs += [rng.gauss(level, std) for _ in range(length)]
    return xs


def quick_spec(kind: str, variant: str) -> DetectorSpec:
    return DetectorSpec(kind=kind, params=QUICK_PARAMS[kind], **VARIANTS[variant])


def river_twin(spec: DetectorSpec, detector: StreamDetector) -> drift.base.DriftDetector:
    """A bare River detector of the same class, with the spec's parameters over the defaults."""
    cls = type(detector.river_detector)
    assert cls.__module__.startswith("river.drift"), cls
    return cls(**{**detector_parameters(spec.kind), **spec.params})


def offline_alarms(spec: DetectorSpec, xs: list[float], detector: StreamDetector) -> list[int]:
    """Run the bare River detector over the same transformed sequence; positions of its alarms.

    The transformation is written out here, independently of the wrapper: skip
    the warm-up, standardize with the detector's stored mean/std, clip, keep
    every n-th position.
    """
    river = river_twin(spec, detector)
    standardizer = detector.standardizer
    start = 0
    if standardizer is not None and spec.baseline_mean is None:
        start = standardizer.warmup
    alarms = []
    for p in range(start, len(xs)):
        if p % detector.sample_every:
            continue
        x = xs[p]
        if standardizer is not None:
            x = (x - standardizer.mean) / standardizer.std
            if standardizer.clip is not None:
                x = min(max(x, -standardizer.clip), standardizer.clip)
        river.update(x)
        if river.drift_detected:
            alarms.append(p)
    return alarms


def positions(signals: list[DriftSignal]) -> list[int]:
    return [s.position for s in signals]


all_detectors = pytest.mark.parametrize("kind", sorted(DETECTORS))
all_variants = pytest.mark.parametrize("variant", sorted(VARIANTS))


# --- the contract ------------------------------------------------------------


@all_detectors
def test_finds_an_abrupt_change_after_it_and_not_before(kind: str) -> None:
    # A feature with σ = 0.01 whose mean moves up by 1σ at position 4,000; default parameters.
    rng = random.Random(11)
    xs = [rng.gauss(5.0, 0.01) for _ in range(4000)] + [rng.gauss(5.01, 0.01) for _ in range(3000)]
    det = build_detector(DetectorSpec(kind=kind, standardize=True, warmup=500))

    signals = det.update_many(xs)

    assert signals, f"{kind} found no change"
    assert signals[0].position >= 4000, f"{kind} raised a false alarm at {signals[0].position}"
    assert signals[0].position < 4000 + 1500


@all_detectors
@all_variants
def test_alarms_are_exactly_rivers_offline(kind: str, variant: str) -> None:
    spec = quick_spec(kind, variant)
    xs = regime_stream(seed=3)
    det = build_detector(spec)

    got = positions(det.update_many(xs))

    expected = offline_alarms(spec, xs, det)
    assert len(expected) >= 2, "the stream should make River alarm several times (resets included)"
    assert got == expected


@all_detectors
def test_alarms_do_not_depend_on_how_the_stream_is_batched(kind: str) -> None:
    spec = quick_spec(kind, "sampled")
    xs = regime_stream(seed=4, n_segments=4)
    whole = build_detector(spec).update_many(xs)

    one_by_one = build_detector(spec)
    singles = []
    for x in xs:
        if one_by_one.update(x).drift_detected:
            singles.append(one_by_one.signal)

    assert singles == whole


@all_detectors
def test_pickle_mid_stream_gives_identical_alarms(kind: str) -> None:
    spec = quick_spec(kind, "warmup")
    xs = regime_stream(seed=5, n_segments=4)
    straight = build_detector(spec).update_many(xs)
    assert straight
    first_alarm = straight[0].position
    # during the warm-up, right after an alarm (River's reset is still pending), and elsewhere
    for cut in (150, first_alarm + 1, first_alarm + 2, 4321):
        det = build_detector(spec)
        before = det.update_many(xs[:cut])
        restored = pickle.loads(pickle.dumps(det))
        assert restored.position == cut
        after = restored.update_many(xs[cut:], start_position=cut)
        assert before + after == straight, f"cut at {cut}"


@all_detectors
def test_replayed_positions_are_not_applied_twice(kind: str) -> None:
    spec = quick_spec(kind, "raw")
    xs = regime_stream(seed=6, n_segments=4)
    straight = build_detector(spec).update_many(xs)

    det = build_detector(spec)
    got = det.update_many(xs[:2500], start_position=0)
    got += det.update_many(xs[2000:4000], start_position=2000)  # at-least-once: 500 values again
    got += det.update_many(xs[2000:4000], start_position=2000)  # the whole batch again
    got += det.update_many(xs[4000:], start_position=4000)

    assert got == straight
    assert det.position == len(xs)


@all_detectors
def test_a_gap_in_positions_is_refused_and_changes_nothing(kind: str) -> None:
    det = build_detector(quick_spec(kind, "raw"))
    det.update_many([1.0, 2.0, 3.0])
    state = pickle.dumps(det)

    with pytest.raises(PositionGapError) as err:
        det.update_many([4.0], start_position=5)

    assert (err.value.expected, err.value.got) == (3, 5)
    assert pickle.dumps(det) == state


@all_detectors
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None])
def test_a_non_finite_value_rejects_the_whole_batch(kind: str, bad: object) -> None:
    xs = regime_stream(seed=7, n_segments=2)
    reference = build_detector(quick_spec(kind, "warmup"))
    det = build_detector(quick_spec(kind, "warmup"))
    det.update_many(xs[:1000])
    reference.update_many(xs[:1000])

    with pytest.raises(InvalidValueError, match="position 1002"):
        det.update_many([*xs[1000:1002], bad, *xs[1002:1100]])

    assert det.position == 1000
    assert det.update_many(xs[1000:]) == reference.update_many(xs[1000:])


def test_booleans_and_numpy_values_count_as_numbers() -> None:
    rng = random.Random(14)
    errors = [rng.random() < (0.1 if i < 3000 else 0.3) for i in range(5000)]
    as_floats = build_detector(default_spec("concept")).update_many([float(e) for e in errors])
    assert as_floats
    assert build_detector(default_spec("concept")).update_many(errors) == as_floats
    assert build_detector(default_spec("concept")).update_many(np.array(errors)) == as_floats

    xs = np.asarray(regime_stream(seed=15, n_segments=2), dtype=np.float32)
    from_list = build_detector(default_spec("data")).update_many([float(x) for x in xs])
    assert build_detector(default_spec("data")).update_many(list(xs)) == from_list  # numpy scalars


@all_detectors
def test_signal_carries_detector_position_value_and_statistics(kind: str) -> None:
    spec = quick_spec(kind, "warmup")
    xs = regime_stream(seed=8, n_segments=3)
    det = build_detector(spec)
    signals = det.update_many(xs)

    s = signals[0]
    assert s.detector == kind
    assert s.value == xs[s.position]
    assert s.statistics and all(math.isfinite(v) for v in s.statistics.values())
    assert s.window_size is not None and s.window_size > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.position = 0  # type: ignore[misc]
    assert s.as_dict()["position"] == s.position


@all_detectors
def test_update_returns_self_and_drift_detected_follows_the_last_value(kind: str) -> None:
    xs = regime_stream(seed=9, n_segments=3)
    det = build_detector(quick_spec(kind, "raw"))
    flags = []
    for x in xs:
        assert det.update(x) is det
        flags.append(det.drift_detected)
        assert (det.signal is not None) == det.drift_detected
    assert any(flags)
    assert det.position == len(xs)


@given(cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=6), overlap=st.integers(0, 400))
@settings(max_examples=15, deadline=None, derandomize=True)
def test_any_batching_with_replays_gives_the_alarms_of_one_pass(cuts: list[int], overlap: int) -> None:
    spec = quick_spec("adwin", "sampled")
    xs = regime_stream(seed=10, n_segments=4)
    straight = build_detector(spec).update_many(xs)

    det = build_detector(spec)
    got: list[DriftSignal] = []
    bounds = [0, *sorted(cuts), len(xs)]
    for lo, hi in zip(bounds, bounds[1:]):
        start = max(0, lo - overlap)  # each batch re-delivers up to `overlap` values
        got += det.update_many(xs[start:hi], start_position=start)
        det = pickle.loads(pickle.dumps(det))  # a checkpoint between every batch
    assert got == straight


# --- River's semantics, kept -------------------------------------------------


def test_adwin_resets_on_the_update_after_an_alarm() -> None:
    det = ADWINDetector()
    rng = random.Random(1)
    xs = [float(rng.random() < 0.1) for _ in range(3000)] + [float(rng.random() < 0.5) for _ in range(1000)]
    for x in xs:
        if det.update(x).drift_detected:
            break
    assert det.river_detector.width > 1
    det.update(0.0)
    assert det.river_detector.width == 1


def test_page_hinkley_signal_reports_the_sum_that_crossed_the_threshold() -> None:
    det = PageHinkleyDetector(standardizer=Standardizer(warmup=500))
    signals = det.update_many(regime_stream(seed=12, n_segments=2))
    s = signals[0]
    assert s.statistic > s.threshold == 40.0
    assert s.statistic == max(s.statistics["increase"], s.statistics["decrease"])


def test_kswin_signal_reports_a_p_value_below_alpha() -> None:
    det = build_detector(quick_spec("kswin", "raw"))
    s = det.update_many(regime_stream(seed=13, n_segments=2))[0]
    assert s.p_value is not None and s.p_value <= s.threshold == 1e-3


# --- standardization ------------------------------------------------------------


def test_one_sigma_shift_of_a_feature_with_sigma_001_is_found_with_defaults() -> None:
    rng = np.random.default_rng(21)
    xs = np.concatenate([rng.normal(5.0, 0.01, 5000), rng.normal(5.01, 0.01, 2000)])
    det = build_detector(default_spec("data"))

    signals = det.update_many(xs)

    assert positions(signals)[:1] and 5000 <= signals[0].position < 5200


def test_rivers_raw_page_hinkley_defaults_miss_that_shift() -> None:
    # Why numeric streams are standardized: River's threshold of 50 is in raw units.
    rng = np.random.default_rng(21)
    xs = np.concatenate([rng.normal(5.0, 0.01, 5000), rng.normal(5.01, 0.01, 2000)]).tolist()
    ph = drift.PageHinkley()
    assert not any(ph.update(x) or ph.drift_detected for x in xs)


def test_warmup_fixes_mean_and_std_of_the_first_values_and_stores_them() -> None:
    rng = np.random.default_rng(22)
    xs = rng.normal(3.0, 0.5, 2000)
    det = build_detector(DetectorSpec(kind="page_hinkley", standardize=True, warmup=1000))
    det.update_many(xs[:1500])

    restored = pickle.loads(pickle.dumps(det))
    assert restored.standardizer.mean == pytest.approx(float(np.mean(xs[:1000])), rel=1e-12)
    assert restored.standardizer.std == pytest.approx(float(np.std(xs[:1000], ddof=1)), rel=1e-12)
    assert restored.standardizer.mean == det.standardizer.mean


def test_a_stream_constant_during_warmup_still_detects_a_change() -> None:
    det = build_detector(DetectorSpec(kind="page_hinkley", standardize=True, warmup=100))
    signals = det.update_many([7.0] * 500 + [7.5] * 100)
    assert signals and 500 <= signals[0].position < 520


def test_clipping_bounds_what_the_detector_sees() -> None:
    st_ = Standardizer(mean=0.0, std=1.0, clip=5.0)
    assert st_.transform(1e12) == 5.0 and st_.transform(-1e12) == -5.0 and st_.transform(2.0) == 2.0


# --- defaults per stream kind ----------------------------------------------------

STABLE_AND_CHANGED: dict[str, Callable[[np.random.Generator, int, bool], np.ndarray]] = {
    "concept": lambda rng, n, changed: (rng.random(n) < (0.2 if changed else 0.1)).astype(float),
    "data": lambda rng, n, changed: rng.normal(5.01 if changed else 5.0, 0.01, n),
    "prediction": lambda rng, n, changed: rng.beta(2, 8, n) + (0.12 if changed else 0.0),
    "system": lambda rng, n, changed: rng.lognormal(math.log(50), 0.5, n) + (28.0 if changed else 0.0),
}


@pytest.mark.parametrize("stream_kind", STREAM_KINDS)
def test_default_spec_is_quiet_on_a_stable_stream_and_finds_the_change(stream_kind: str) -> None:
    make = STABLE_AND_CHANGED[stream_kind]
    rng = np.random.default_rng(30)
    stable = build_detector(default_spec(stream_kind))
    assert stable.update_many(make(rng, 60_000, False)) == []

    det = build_detector(default_spec(stream_kind))
    det.update_many(make(rng, 10_000, False))
    signals = det.update_many(make(rng, 3_000, True))
    assert signals and signals[0].position < 10_000 + 1_500


def test_default_specs_never_choose_kswin() -> None:
    assert {default_spec(k).kind for k in STREAM_KINDS} == {"adwin", "page_hinkley"}


# --- configuration errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "cusum"}, "unknown detector kind 'cusum'; known: adwin, kswin, page_hinkley"),
        ({"kind": "adwin", "params": {"threshold": 3}}, "unknown parameter(s) 'threshold' for detector 'adwin'"),
        ({"kind": "adwin", "params": {"delta": 2}}, "delta: Input should be less than 1"),
        ({"kind": "page_hinkley", "params": {"mode": "sideways"}}, "mode: Input should be 'up', 'down' or 'both'"),
        ({"kind": "page_hinkley", "params": {"threshold": "high"}}, "threshold: Input should be a valid number"),
        ({"kind": "kswin", "params": {"seed": None}}, "KSWIN needs a fixed integer seed"),
        ({"kind": "kswin", "params": {"window_size": 100, "stat_size": 80}}, "must be at least stat_size"),
        ({"kind": "adwin", "sample_every": 0}, "sample_every: Input should be greater than or equal to 1"),
        ({"kind": "adwin", "standardise": True}, "standardise: Extra inputs are not permitted"),
        ({"kind": "adwin", "standardize": True, "baseline_mean": 1.0}, "give both baseline_mean and baseline_std"),
        ({"kind": "adwin", "baseline_mean": 1.0, "baseline_std": 2.0}, "set standardize=True"),
        ({"kind": "adwin", "standardize": True, "baseline_mean": 0, "baseline_std": 0}, "baseline_std: Input should be greater than 0"),
        ({"kind": "adwin", "standardize": True, "warmup": 1}, "warmup: Input should be greater than or equal to 2"),
    ],
)
def test_invalid_spec_fails_with_a_clear_message(config: dict, message: str) -> None:
    with pytest.raises(DetectorError, match="invalid detector spec") as err:
        DetectorSpec.from_config(config)
    assert message in str(err.value)
    with pytest.raises(ValueError):  # the model itself raises pydantic's ValidationError, a ValueError
        DetectorSpec(**config)


def test_unknown_stream_kind_fails_with_a_clear_message() -> None:
    with pytest.raises(DetectorError, match="unknown stream kind 'label'; known: concept, data, prediction, system"):
        default_spec("label")  # type: ignore[arg-type]


def test_detector_constructors_check_their_parameters() -> None:
    with pytest.raises(DetectorError, match="invalid parameters for ADWINDetector: delta"):
        ADWINDetector(delta=0)
    with pytest.raises(DetectorError, match="clock"):
        ADWINDetector(clock=2.5)


def test_spec_parameters_reach_the_river_detector() -> None:
    det = build_detector(DetectorSpec(kind="page_hinkley", params={"threshold": 12, "mode": "up"}, sample_every=4))
    assert (det.river_detector.threshold, det.river_detector.mode, det.sample_every) == (12.0, "up", 4)
    assert set(detector_parameters("kswin")) == {"alpha", "window_size", "stat_size", "seed"}
    assert build_detector(DetectorSpec(kind="kswin")).sample_every == 10
