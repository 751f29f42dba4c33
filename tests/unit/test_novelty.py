"""Novelty: Half-Space Trees fitted on the training rows, kept in the baseline as JSON, scored per window."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from river.anomaly import HalfSpaceTrees
from typer.testing import CliRunner

from driftline.baselines.build import build_baseline
from driftline.baselines.catalog import MAX_RECORD_BYTES, decode_baseline, encode_baseline
from driftline.baselines.model import Baseline, BaselineError
from driftline.baselines.novelty import NoveltyModel, NoveltyOptions, RowSample, fit_novelty
from driftline.cli import app
from driftline.streams.feature_windows import (
    DEFAULT_THRESHOLDS,
    NOVELTY,
    DriftThresholds,
    NoveltyWindow,
    ServingWindow,
    compare_novelty,
    drift_events,
)
from driftline.streams.keys import ModelKey
from driftline.streams.windows import PREDICTION, WindowSet, WindowSettings, prediction_record

TRAIN_ROWS = 20_000


def diagonal(rng: np.random.Generator, n: int, flip: bool = False) -> dict[str, np.ndarray]:
    """``x`` uniform on [0, 1] and ``y = x + noise``; flipped, ``y = 1 - x + noise``: the same marginals either way."""
    x = rng.random(n)
    return {"x": x, "y": (1.0 - x if flip else x) + rng.normal(0.0, 0.05, n)}


def serving_events(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    n = len(next(iter(columns.values())))
    return [{"features": {"numeric": {name: float(values[i]) for name, values in columns.items()},
                          "categorical": {"channel": "web" if i % 2 else "app"}}} for i in range(n)]


@pytest.fixture(scope="module")
def training_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(2026)
    columns = diagonal(rng, TRAIN_ROWS)
    path = tmp_path_factory.mktemp("novelty") / "train.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "x", "y", "channel"])
        for i in range(TRAIN_ROWS):
            out.writerow([i, repr(float(columns["x"][i])), repr(float(columns["y"][i])), "web" if i % 2 else "app"])
    return path


@pytest.fixture(scope="module")
def baseline(training_file: Path) -> Baseline:
    return build_baseline(training_file, "fraud", "3", exclude_columns=["id"])


@pytest.fixture(scope="module")
def model() -> NoveltyModel:
    fitted = fit_novelty(diagonal(np.random.default_rng(5), 8_000))
    assert fitted is not None
    return fitted


# -- the model ----------------------------------------------------------------------------------------


def test_rebuilt_trees_score_exactly_as_river_fitted_on_the_same_rows() -> None:
    rng = np.random.default_rng(11)
    n = 8_000
    train = {"amount": rng.lognormal(3.0, 1.0, n), "age": rng.normal(40.0, 12.0, n), "visits": rng.poisson(3, n) * 1.0}
    train["age"][rng.random(n) < 0.05] = np.nan  # missing: the mean stands in
    model = fit_novelty(train)
    assert model is not None and model.features == ("age", "amount", "visits")
    restored = NoveltyModel.from_json(json.loads(json.dumps(model.to_json())))  # rebuilt from the seed + masses
    assert restored == model

    # River itself, fed dicts keyed by the feature names, learns the same rows
    names = list(model.features)
    raw = np.column_stack([train[name] for name in names])
    river = HalfSpaceTrees(n_trees=model.n_trees, height=model.height, window_size=model.window_size, seed=model.seed)
    for row in model.scale(raw[: model.window_size]):
        river.learn_one(dict(zip(names, row.tolist())))

    serving = np.column_stack([rng.lognormal(3.5, 1.5, 5_000), rng.normal(40.0, 30.0, 5_000),
                               rng.poisson(6, 5_000) * 1.0])  # many values beyond the training range
    serving[rng.random(serving.shape) < 0.1] = np.nan
    expected = [river.score_one(dict(zip(names, row.tolist()))) for row in model.scale(serving)]
    assert restored.score_many(serving).tolist() == expected  # bit for bit, not approximately

    held_out = raw[model.window_size: model.window_size + model.calibration_rows]
    scores = np.array([river.score_one(dict(zip(names, row.tolist()))) for row in model.scale(held_out)])
    assert model.threshold == np.quantile(scores, model.quantile, method="inverted_cdf")
    assert int((scores > model.threshold).sum()) == model.calibration_outliers


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(seed=1), "not the fitted ones"),
    (lambda d: d["masses"][0].pop(), "masses of tree 0 must be 511 integers"),
    (lambda d: d["masses"][3].__setitem__(0, 7), "root mass 7 is not the window size"),
    (lambda d: d.update(colour="blue"), "unknown fields: colour"),
    (lambda d: d["features"]["x"].update(min=2.0), "min 2.0 must be below max"),
    (lambda d: d.pop("threshold"), "novelty lacks 'threshold'"),
])
def test_a_model_document_that_does_not_rebuild_the_fitted_trees_is_refused(model: NoveltyModel, edit: Any,
                                                                            message: str) -> None:
    doc = json.loads(json.dumps(model.to_json()))
    edit(doc)
    with pytest.raises(BaselineError, match=message):
        NoveltyModel.from_json(doc)


def test_about_one_percent_of_fresh_training_data_are_outliers(baseline: Baseline) -> None:
    model = baseline.novelty
    assert model is not None and model.features == ("x", "y")
    assert 0.004 <= model.expected_rate <= 0.01  # the 99th percentile: at most 1 % above (scores tie)
    fresh = diagonal(np.random.default_rng(7), 50_000)
    share = float((model.score_many(np.column_stack([fresh["x"], fresh["y"]])) > model.threshold).mean())
    assert share == pytest.approx(model.expected_rate, abs=0.003)


def test_stable_windows_raise_no_novelty_finding(baseline: Baseline) -> None:
    rng = np.random.default_rng(8)
    shares = []
    for _ in range(20):
        window = ServingWindow(baseline)
        for event in serving_events(diagonal(rng, 1_000)):
            window.update(event)
        [finding] = [f for f in window.compare() if f.feature == NOVELTY]
        assert not finding.drifted, finding
        shares.append(finding.value)
    assert np.mean(shares) == pytest.approx(baseline.novelty.expected_rate, abs=0.003)


def test_a_correlation_flip_raises_novelty_while_the_marginals_stay_put(baseline: Baseline) -> None:
    window = ServingWindow(baseline)
    for event in serving_events(diagonal(np.random.default_rng(9), 2_000, flip=True)):
        window.update(event)
    findings = window.compare()
    marginal = [f for f in findings if f.feature in ("x", "y")]
    assert {f.metric for f in marginal} == {"ks", "wasserstein", "jensen_shannon", "psi"}
    assert not any(f.drifted for f in marginal)  # each feature alone is as in training
    assert all(f.p_value > 0.01 for f in marginal if f.metric == "ks")
    [novelty] = [f for f in findings if f.feature == NOVELTY]
    assert novelty.drifted and novelty.metric == NOVELTY and novelty.kind == "data"
    assert novelty.value > 0.1 and novelty.threshold == 2 * baseline.novelty.expected_rate
    assert novelty.window_size == 2_000 and novelty.p_value < 1e-10
    [event] = drift_events([novelty], model_name="fraud", model_version="3", window_start_ms=0, window_size_ms=60_000)
    assert (event.detector, event.stream, event.feature) == ("novelty", "feature.novelty", "novelty")
    assert event.parameters["expected_rate"] == baseline.novelty.expected_rate


def test_a_window_over_the_threshold_becomes_a_drift_event_when_it_closes(baseline: Baseline) -> None:
    windows = WindowSet(ModelKey("fraud", "3"), WindowSettings(size_ms=60_000, lateness_ms=0))
    for i, event in enumerate(serving_events(diagonal(np.random.default_rng(10), 2_000, flip=True))):
        windows.add(PREDICTION, prediction_record(event, []), i * 30, baseline)
    closed = windows.close(watermark_ms=60_000, baseline=baseline)
    assert [(e.detector, e.feature) for e in closed.drift] == [("novelty", "novelty")]


def test_small_windows_and_thresholds_hold_novelty_back(model: NoveltyModel) -> None:
    flipped = serving_events(diagonal(np.random.default_rng(12), 2_000, flip=True))
    small, large = NoveltyWindow(model), NoveltyWindow(model)
    for event in flipped[:99]:
        small.update(event)
    for event in flipped:
        large.update(event)
    assert small.outliers > 10 and not compare_novelty(small)[0].drifted  # below min_count (100)
    assert compare_novelty(large)[0].drifted
    lenient = DriftThresholds(per_feature={NOVELTY: {"novelty": 1_000.0}})
    assert not compare_novelty(large, lenient)[0].drifted
    assert compare_novelty(NoveltyWindow(model), DEFAULT_THRESHOLDS) == []  # no events, no finding
    with pytest.raises(ValueError, match="at least 1"):
        DriftThresholds(novelty=0.5)


# -- the baseline document ------------------------------------------------------------------------


def test_a_baseline_with_novelty_round_trips_through_json(baseline: Baseline) -> None:
    doc = json.loads(baseline.dumps())
    novelty = doc["statistics"]["novelty"]
    assert novelty["method"] == "half_space_trees" and novelty["n_trees"] == 20 and novelty["height"] == 8
    assert set(novelty["features"]) == {"x", "y"} and novelty["window_size"] == 2_048
    assert novelty["calibration"]["rows"] == 8_192
    assert Baseline.from_json(baseline.dumps()) == baseline
    assert decode_baseline(encode_baseline(baseline)) == baseline
    assert len(json.dumps(novelty)) < 40_000 and len(encode_baseline(baseline)) < MAX_RECORD_BYTES


def test_a_baseline_document_without_novelty_still_loads(baseline: Baseline, training_file: Path) -> None:
    doc = json.loads(baseline.dumps())
    del doc["statistics"]["novelty"]
    old = Baseline.from_json(json.dumps(doc))
    assert old.novelty is None and old.statistics == baseline.statistics and old.schema == baseline.schema
    assert "novelty" not in json.loads(old.dumps())["statistics"]
    window = ServingWindow(old)
    window.update(serving_events(diagonal(np.random.default_rng(1), 1))[0])
    assert window.novelty is None and "novelty" not in window.to_json()
    assert not any(f.feature == NOVELTY for f in window.compare())
    # a window state saved before novelty existed binds to a baseline that has it: novelty starts empty
    bound = ServingWindow.from_json(window.to_json(), baseline)
    assert bound.novelty is not None and bound.novelty.count == 0 and bound.count == 1
    without = build_baseline(training_file, "fraud", "3", exclude_columns=["id"], novelty=False)
    assert without.novelty is None and without.schema == baseline.schema


def test_no_model_without_a_varying_numeric_feature_or_enough_rows(tmp_path: Path) -> None:
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps({"x": i * 0.5, "c": "ab"[i % 2]}) + "\n" for i in range(999)))
    assert build_baseline(few, "m", "1").novelty is None  # fewer than 1,000 rows
    categories = tmp_path / "categories.jsonl"
    categories.write_text("".join(json.dumps({"k": 1.0, "c": "ab"[i % 2]}) + "\n" for i in range(2_000)))
    assert build_baseline(categories, "m", "1").novelty is None  # the one number never varies
    enough = tmp_path / "enough.jsonl"
    enough.write_text("".join(json.dumps({"x": i * 0.5, "k": 1.0, "c": "ab"[i % 2]}) + "\n" for i in range(1_000)))
    model = build_baseline(enough, "m", "1").novelty
    assert model is not None and model.features == ("x",) and (model.window_size, model.calibration_rows) == (250, 750)


def test_the_row_sample_is_the_same_however_the_file_is_chunked(training_file: Path, baseline: Baseline) -> None:
    rows = np.arange(10_000, dtype=float)
    whole = RowSample(size=500, seed=3).update({"a": rows, "b": 2 * rows}, 10_000)
    chunked = RowSample(size=500, seed=3)
    for start in range(0, 10_000, 7):
        chunked.update({"a": rows[start:start + 7].tolist(), "b": (2 * rows[start:start + 7]).tolist()},
                       len(rows[start:start + 7]))
    a, b = whole.columns(["a", "b"]), chunked.columns(["a", "b", "c"])
    assert len(chunked) == 500 and chunked.seen == 10_000
    assert a["a"].tolist() == b["a"].tolist() and (b["b"] == 2 * b["a"]).all()  # whole rows, kept together
    assert np.isnan(b["c"]).all()
    assert 4_000 < float(np.mean(a["a"])) < 6_000  # uniform over the rows
    again = build_baseline(training_file, "fraud", "3", exclude_columns=["id"], chunk_rows=333).novelty
    assert again is not None and baseline.novelty is not None
    assert (again.masses, again.threshold, again.trees_digest) == (baseline.novelty.masses, baseline.novelty.threshold,
                                                                    baseline.novelty.trees_digest)


# -- the window accumulator -----------------------------------------------------------------------------


def test_merging_windows_equals_accumulating_all(model: NoveltyModel, baseline: Baseline) -> None:
    rng = np.random.default_rng(13)
    mixed = serving_events(diagonal(rng, 600)) + serving_events(diagonal(rng, 400, flip=True))
    for event in mixed[::50]:
        del event["features"]["numeric"]["y"]  # missing: the mean stands in
    rng.shuffle(mixed)  # type: ignore[arg-type]
    whole = NoveltyWindow(model)
    for event in mixed:
        whole.update(event)
    parts = [NoveltyWindow(model), NoveltyWindow(model, batch_size=7), NoveltyWindow(model, batch_size=1_000)]
    for i, event in enumerate(mixed):
        parts[0 if i < 300 else 1 if i == 300 else 2].update(event)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged == whole and merged.to_json() == whole.to_json()
    assert (merged.count, merged.outliers, merged.filled) == (1_000, whole.outliers, 20)
    assert 150 < whole.outliers < 500  # most of the 400 flipped events

    serving_all, serving_a, serving_b = ServingWindow(baseline), ServingWindow(baseline), ServingWindow(baseline)
    for i, event in enumerate(mixed):
        serving_all.update(event)
        (serving_a if i % 3 else serving_b).update(event)
    merged_serving = serving_a.merge(serving_b)  # (its numeric samples depend on positions: not compared)
    assert merged_serving.novelty == serving_all.novelty and merged_serving.count == serving_all.count
    with pytest.raises(ValueError, match="same model"):
        NoveltyWindow(model).merge(NoveltyWindow(baseline.novelty))  # type: ignore[arg-type]


def test_the_window_state_is_bounded_and_round_trips(model: NoveltyModel, baseline: Baseline) -> None:
    window = NoveltyWindow(model, batch_size=64)
    for event in serving_events(diagonal(np.random.default_rng(14), 10_000)):
        window.update(event)
        assert len(window._pending) < 64
    state = window.to_json()
    assert set(state) == {"type", "model", "count", "outliers", "filled"} and len(json.dumps(state)) < 200
    assert state["count"] == 10_000 and window._pending == []
    assert NoveltyWindow.from_json(state, model) == window
    with pytest.raises(ValueError, match="is not of model"):
        NoveltyWindow.from_json(state, baseline.novelty)  # type: ignore[arg-type]
    serving = ServingWindow(baseline)
    for event in serving_events(diagonal(np.random.default_rng(15), 300)):
        serving.update(event)
    restored = ServingWindow.from_json(json.loads(json.dumps(serving.to_json())), baseline)
    assert restored.novelty == serving.novelty and restored.to_json() == serving.to_json()


# -- the command line ---------------------------------------------------------------------------------------


def test_baseline_build_fits_novelty_unless_told_not_to(training_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    with_model, without = tmp_path / "with.json", tmp_path / "without.json"
    result = runner.invoke(app, ["baseline", "build", str(training_file), "-m", "fraud", "--version", "3",
                                 "--exclude", "id", "-o", str(with_model), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "novelty model: 20 half-space trees on 2 numeric features" in result.stdout
    assert Baseline.from_json(with_model.read_text()).novelty is not None
    result = runner.invoke(app, ["baseline", "build", str(training_file), "-m", "fraud", "--version", "3",
                                 "--exclude", "id", "-o", str(without), "--quiet", "--no-novelty"])
    assert result.exit_code == 0, result.output
    assert "novelty" not in json.loads(without.read_text())["statistics"]
    shown = runner.invoke(app, ["baseline", "show", str(with_model)])
    assert shown.exit_code == 0 and "novelty model: 20 half-space trees" in shown.stdout


def test_a_baseline_whose_novelty_model_does_not_rebuild_loads_without_it(baseline: Baseline, caplog) -> None:
    document = baseline.to_json()
    document["statistics"]["novelty"]["trees_digest"] = "0" * 16  # as if another River version drew other trees
    with caplog.at_level("WARNING"):
        loaded = Baseline.from_json(json.loads(json.dumps(document)))
    assert loaded.novelty is None and loaded.schema == baseline.schema
    assert "novelty model ignored" in caplog.text
