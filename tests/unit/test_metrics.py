"""Window metrics: hand-computed slices and fairness, NumPy / SciPy references, merge, state, bounds. Pure, no server."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from driftline.streams.alerts import AlertPolicy, DriftEvent, DriftKind
from driftline.streams.detect import ModelKey
from driftline.streams.metrics import (
    OTHER,
    MetricsConfig,
    WindowMetrics,
    fairness_findings,
    metrics_document,
    metrics_id,
    positive_class_score,
    window_start,
)
from driftline.streams.slices import ALL, parse_slices, slices_of

MINUTE = 60_000
T0 = 1_789_999_980_000  # 2026-09-21T14:13:00Z, a minute boundary


def prediction_doc(
    label: str | None = None,
    score: float | None = None,
    *,
    latency: Any = 10.0,
    value: float | None = None,
    scores: Mapping[str, float] | None = None,
    region: str | None = None,
    weather: str | None = None,
) -> dict[str, Any]:
    """A canonical prediction document as the normalize stage writes it."""
    prediction: dict[str, Any] = {"outputs": [], "scores": dict(scores or {})}
    output: dict[str, Any] = {}
    if label is not None:
        output["label"] = label
    if value is not None:
        output["value"] = value
    if score is not None:
        output["score"] = score
    prediction.update(output)
    prediction["outputs"] = [output] if output else []
    doc: dict[str, Any] = {
        "@timestamp": "2026-09-21T14:13:00.000Z",
        "model": {"name": "fraud", "version": "3"},
        "request": {"id": "r", "type": "online"},
        "prediction": prediction,
        "features": {"numeric": {}, "categorical": {}, "boolean": {}, "vector": {}, "missing": []},
        "labels": {},
    }
    if latency is not None:
        doc["latency_ms"] = latency
    if region is not None:
        doc["labels"]["region"] = region
    if weather is not None:
        doc["features"]["categorical"]["weather"] = weather
    return doc


def outcome_doc(prediction: Mapping[str, Any], truth: Any, *, delay_ms: Any = 1000) -> dict[str, Any]:
    """The joined outcome, scored the way streams/join.py scores it."""
    from driftline.streams.join import score_outcome

    feedback: dict[str, Any] = {"labels": [truth]} if isinstance(truth, str) else {"values": [truth]}
    if delay_ms is not None:
        feedback["delay_ms"] = delay_ms
    doc = dict(prediction)
    doc["feedback"] = feedback
    doc["outcome"] = score_outcome(prediction["prediction"], feedback)
    return doc


def assert_close(actual: Any, expected: Any, path: str = "") -> None:
    """Equal structures; floats equal up to rounding (sums added in another order)."""
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping) and set(actual) == set(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9), path
    else:
        assert actual == expected, path


# --- a hand-computed window -------------------------------------------------------------
#
# Ten predictions of a binary fraud model in one minute, positive label "fraud"
# (negative "legit"). "p" is the positive-class score: the score itself when
# "fraud" is predicted, else 1 - score, or scores["fraud"] where a class
# distribution is given (events 3 and 5). Event 10 has no latency and no label.
#
#   #  region weather latency truth  pred   score  p     delay   result
#   1  eu     rain    10      fraud  fraud  0.9    0.9   1000    TP
#   2  eu     rain    20      legit  fraud  0.6    0.6   2000    FP
#   3  eu     sun     30      legit  legit  0.8    0.2   3000    TN   (scores)
#   4  eu     sun     40      fraud  legit  0.7    0.3   4000    FN
#   5  eu     rain    50      legit  legit  0.9    0.1   5000    TN   (scores)
#   6  us     rain    60      fraud  fraud  0.8    0.8   6000    TP
#   7  us     sun     70      legit  legit  0.6    0.4   7000    TN
#   8  us     sun     80      legit  legit  0.9    0.1   8000    TN
#   9  us     rain    90      fraud  fraud  0.7    0.7   9000    TP
#  10  us     sun     -       -      fraud  0.6    -     -       (no outcome)

HAND = [
    ("eu", "rain", 10.0, "fraud", "fraud", 0.9, None, 1000),
    ("eu", "rain", 20.0, "legit", "fraud", 0.6, None, 2000),
    ("eu", "sun", 30.0, "legit", "legit", 0.8, {"fraud": 0.2, "legit": 0.8}, 3000),
    ("eu", "sun", 40.0, "fraud", "legit", 0.7, None, 4000),
    ("eu", "rain", 50.0, "legit", "legit", 0.9, {"fraud": 0.1, "legit": 0.9}, 5000),
    ("us", "rain", 60.0, "fraud", "fraud", 0.8, None, 6000),
    ("us", "sun", 70.0, "legit", "legit", 0.6, None, 7000),
    ("us", "sun", 80.0, "legit", "legit", 0.9, None, 8000),
    ("us", "rain", 90.0, "fraud", "fraud", 0.7, None, 9000),
    ("us", "sun", None, None, "fraud", 0.6, None, None),
]
SLICES = parse_slices(["region=eu", "weather=rain", "region=us&weather=sun"])


def hand_window(config: MetricsConfig) -> dict[str, WindowMetrics]:
    """The hand dataset accumulated per slice name, as the streaming code would route it."""
    windows: dict[str, WindowMetrics] = {}
    for i, (region, weather, latency, truth, label, score, scores, delay) in enumerate(HAND):
        prediction = prediction_doc(label, score, latency=latency, scores=scores, region=region, weather=weather)
        for spec in slices_of(prediction, SLICES):
            metrics = windows.setdefault(spec.name, WindowMetrics(config))
            metrics.add_prediction(prediction, T0 + 1000 * i)
            if truth is not None:
                metrics.add_outcome(outcome_doc(prediction, truth, delay_ms=delay))
    return windows


BINARY = MetricsConfig(window_ms=MINUTE, positive_label="fraud", negative_label="legit")


def test_hand_window_whole_model_matches_hand_computed_numbers():
    m = hand_window(BINARY)[ALL.name].summary()
    assert m["count"] == 10
    assert m["requests_per_s"] == 10 / 60
    assert (m["first_event_ms"], m["last_event_ms"]) == (T0, T0 + 9000)
    # latencies 10..90 (9 values), one missing; inclusive quantile = the value at rank ceil(q * 9)
    assert m["latency_ms"] == {"count": 9, "missing": 1, "mean": 50.0, "min": 10.0, "max": 90.0,
                               "p50": 50.0, "p95": 90.0, "p99": 90.0}  # fmt: skip
    assert (m["outcomes"], m["unscored_outcomes"], m["label_coverage"]) == (9, 0, 0.9)
    assert m["label_delay_ms"] == {"count": 9, "missing": 0, "mean": 5000.0, "p50": 5000.0, "p95": 9000.0}
    # wrong: events 2 and 4
    assert (m["classified"], m["evaluated"]) == (9, 9)
    assert m["error_rate"] == 2 / 9
    assert m["accuracy"] == 7 / 9
    assert m["confusion"] == {"tp": 3, "fp": 1, "tn": 4, "fn": 1}
    assert (m["precision"], m["recall"], m["f1"]) == (0.75, 0.75, 0.75)  # 3/4, 3/4, 6/8
    assert (m["fpr"], m["fnr"]) == (0.2, 0.25)  # 1/5, 1/4
    # per class: fraud tp 3 of 4 predicted (1,2,6,9) and 4 true (1,4,6,9);
    #            legit tp 4 of 5 predicted (3,4,5,7,8) and 5 true (2,3,5,7,8)
    assert m["classes"] == {
        "fraud": {"support": 4, "predicted": 4, "tp": 3, "precision": 0.75, "recall": 0.75, "f1": 0.75},
        "legit": {"support": 5, "predicted": 5, "tp": 4, "precision": 0.8, "recall": 0.8, "f1": 0.8},
    }
    assert m["macro_precision"] == pytest.approx(0.775, abs=1e-15)
    assert m["macro_recall"] == pytest.approx(0.775, abs=1e-15)
    assert m["macro_f1"] == pytest.approx(0.775, abs=1e-15)
    # positives' p: 0.9 0.3 0.8 0.7, negatives' p: 0.6 0.2 0.1 0.4 0.1;
    # negatives below each positive: 5 + 3 + 5 + 5 = 18 of 4 * 5 = 20 pairs, no ties
    assert (m["roc_auc"], m["roc_auc_max_error"], m["roc_auc_count"], m["roc_auc_missing"]) == (0.9, 0.0, 9, 0)
    assert m["prediction"]["classes"] == {"fraud": 5, "legit": 5}
    assert m["prediction"]["value"]["count"] == 0
    assert (m["regressed"], m["mae"], m["rmse"]) == (0, None, None)
    assert m["fairness"] is None  # no sensitive attribute configured


def test_hand_window_slices_match_hand_computed_numbers():
    windows = hand_window(BINARY)
    assert sorted(windows) == ["", "region=eu", "region=us&weather=sun", "weather=rain"]

    eu = windows["region=eu"].summary()  # events 1-5
    assert (eu["count"], eu["outcomes"], eu["label_coverage"]) == (5, 5, 1.0)
    assert (eu["latency_ms"]["p50"], eu["latency_ms"]["p95"], eu["latency_ms"]["p99"]) == (30.0, 50.0, 50.0)
    assert (eu["error_rate"], eu["accuracy"]) == (0.4, 0.6)  # 2 and 4 wrong of 5
    assert eu["confusion"] == {"tp": 1, "fp": 1, "tn": 2, "fn": 1}
    assert (eu["precision"], eu["recall"], eu["f1"], eu["fpr"], eu["fnr"]) == (0.5, 0.5, 0.5, 1 / 3, 0.5)
    assert eu["roc_auc"] == 5 / 6  # positives 0.9 > all 3, 0.3 > 0.2 and 0.1: 5 of 6 pairs

    rain = windows["weather=rain"].summary()  # events 1, 2, 5, 6, 9
    assert (rain["count"], rain["outcomes"]) == (5, 5)
    assert rain["latency_ms"]["p50"] == 50.0  # 10 20 50 60 90
    assert rain["label_delay_ms"]["mean"] == 4600.0  # (1000 + 2000 + 5000 + 6000 + 9000) / 5
    assert rain["label_delay_ms"]["p50"] == 5000.0
    assert (rain["error_rate"], rain["accuracy"]) == (0.2, 0.8)
    assert rain["confusion"] == {"tp": 3, "fp": 1, "tn": 1, "fn": 0}
    assert (rain["precision"], rain["recall"], rain["f1"]) == (0.75, 1.0, 6 / 7)
    assert (rain["fpr"], rain["fnr"], rain["roc_auc"]) == (0.5, 0.0, 1.0)

    us_sun = windows["region=us&weather=sun"].summary()  # events 7, 8, 10 (unlabelled)
    assert (us_sun["count"], us_sun["outcomes"], us_sun["label_coverage"]) == (3, 2, 2 / 3)
    assert us_sun["latency_ms"]["missing"] == 1
    assert us_sun["accuracy"] == 1.0
    assert us_sun["confusion"] == {"tp": 0, "fp": 0, "tn": 2, "fn": 0}
    assert (us_sun["precision"], us_sun["recall"], us_sun["fpr"], us_sun["fnr"]) == (None, None, 0.0, None)
    assert us_sun["roc_auc"] is None  # no positive
    assert us_sun["prediction"]["classes"] == {"fraud": 1, "legit": 2}


FAIR = MetricsConfig(window_ms=MINUTE, positive_label="fraud", negative_label="legit", sensitive_attribute="region",
                     min_group_size=3, fairness_thresholds={"fpr_gap": 0.4, "accuracy_gap": 0.5})  # fmt: skip


def test_hand_window_fairness_by_a_slice_label():
    fairness = hand_window(FAIR)[ALL.name].summary()["fairness"]
    # eu (1-5): TP 1, FP 1, TN 2, FN 1: FPR 1/3, FNR 1/2, accuracy 3/5
    # us (6-9): TP 2, FP 0, TN 2, FN 0: FPR 0, FNR 0, accuracy 1
    assert fairness["groups"] == {
        "eu": {"count": 5, "tp": 1, "fp": 1, "tn": 2, "fn": 1, "fpr": 1 / 3, "fnr": 0.5, "accuracy": 0.6, "included": True},
        "us": {"count": 4, "tp": 2, "fp": 0, "tn": 2, "fn": 0, "fpr": 0.0, "fnr": 0.0, "accuracy": 1.0, "included": True},
    }
    assert (fairness["attribute"], fairness["positive_label"], fairness["missing"]) == ("region", "fraud", 0)
    # gaps: FPR 1/3 (threshold 0.4: no), FNR 1/2 (default 0.1: yes), accuracy 0.4 (0.5: no)
    assert fairness["fpr_gap"] == {"value": 1 / 3, "threshold": 0.4, "exceeded": False, "groups": 2,
                                   "high_group": "eu", "high": 1 / 3, "low_group": "us", "low": 0.0}  # fmt: skip
    assert fairness["fnr_gap"]["value"] == 0.5 and fairness["fnr_gap"]["exceeded"]
    assert fairness["accuracy_gap"]["value"] == pytest.approx(0.4, abs=1e-15)
    assert (fairness["accuracy_gap"]["high_group"], fairness["accuracy_gap"]["low_group"]) == ("us", "eu")
    assert fairness["exceeded"] == ["fnr_gap"]


def test_hand_window_fairness_by_a_categorical_feature():
    config = MetricsConfig(window_ms=MINUTE, positive_label="fraud", negative_label="legit",
                           sensitive_attribute="weather", min_group_size=3)  # fmt: skip
    fairness = hand_window(config)[ALL.name].summary()["fairness"]
    # rain (1,2,5,6,9): TP 3, FP 1, TN 1, FN 0: FPR 1/2, FNR 0, accuracy 4/5
    # sun (3,4,7,8):    TP 0, FP 0, TN 3, FN 1: FPR 0, FNR 1, accuracy 3/4
    assert {g: (s["fpr"], s["fnr"], s["accuracy"]) for g, s in fairness["groups"].items()} == {
        "rain": (0.5, 0.0, 0.8), "sun": (0.0, 1.0, 0.75)
    }
    assert (fairness["fpr_gap"]["value"], fairness["fnr_gap"]["value"]) == (0.5, 1.0)
    assert fairness["accuracy_gap"]["value"] == pytest.approx(0.05)
    assert fairness["exceeded"] == ["fpr_gap", "fnr_gap"]  # accuracy gap 0.05 <= 0.1


def test_small_groups_are_reported_but_left_out_of_the_gaps():
    config = MetricsConfig(window_ms=MINUTE, positive_label="fraud", negative_label="legit",
                           sensitive_attribute="region", min_group_size=5)  # fmt: skip
    fairness = hand_window(config)[ALL.name].summary()["fairness"]
    assert (fairness["groups"]["eu"]["included"], fairness["groups"]["us"]["included"]) == (True, False)  # 5 and 4
    assert all(fairness[gap]["value"] is None and fairness[gap]["groups"] == 1 for gap in ("fpr_gap", "fnr_gap", "accuracy_gap"))
    assert fairness["exceeded"] == []
    assert fairness_findings(ModelKey("fraud", "3"), T0, MINUTE, hand_window(config)[ALL.name]) == []


def test_default_min_group_size_excludes_the_ten_event_groups():
    config = MetricsConfig(positive_label="fraud", negative_label="legit", sensitive_attribute="region")
    assert config.min_group_size == 30
    assert hand_window(config)[ALL.name].summary()["fairness"]["exceeded"] == []


def test_fairness_findings_are_quality_drift_events_with_the_groups():
    metrics = hand_window(FAIR)[ALL.name]
    key = ModelKey("fraud", "3")
    (finding,) = fairness_findings(key, T0, MINUTE, metrics)
    assert isinstance(finding, DriftEvent)
    assert (finding.detector, finding.kind, finding.stream, finding.feature) == (
        "fairness", DriftKind.QUALITY, "fairness.fnr_gap", "region")
    assert (finding.model_name, finding.model_version, finding.slice) == ("fraud", "3", {})
    assert (finding.statistic, finding.threshold, finding.window_size) == (0.5, 0.1, 9)
    assert (finding.event_time_ms, finding.position) == (T0, T0 // MINUTE)
    assert finding.parameters["metric"] == "fnr"
    assert (finding.parameters["high_group"], finding.parameters["high"]) == ("eu", 0.5)
    assert (finding.parameters["low_group"], finding.parameters["low"]) == ("us", 0.0)
    assert finding.parameters["groups"] == {"eu": 0.5, "us": 0.0}
    # deterministic, one per window, a valid document, and the alert policy accepts it
    assert fairness_findings(key, T0, MINUTE, hand_window(FAIR)[ALL.name])[0].id == finding.id
    assert DriftEvent.from_document(json.loads(json.dumps(finding.document()))) == finding
    alert = AlertPolicy().consider(finding, {})
    assert alert is not None and alert.rule == "quality_drift"


def test_findings_of_a_slice_carry_its_labels():
    windows = hand_window(MetricsConfig(window_ms=MINUTE, positive_label="fraud", negative_label="legit",
                                        sensitive_attribute="region", min_group_size=1))  # fmt: skip
    rain = windows["weather=rain"]
    findings = fairness_findings(ModelKey("fraud", "3", SLICES[1].labels), T0, MINUTE, rain)
    # rain: eu (1, 2, 5) TP 1 FP 1 TN 1: FPR 1/2, FNR 0, acc 2/3; us (6, 9) TP 2: FPR undefined, FNR 0, acc 1
    assert [(f.stream, f.slice) for f in findings] == [("fairness.accuracy_gap", {"weather": "rain"})]
    assert findings[0].statistic == pytest.approx(1 / 3)


# --- the Elasticsearch document ---------------------------------------------------------------


def test_metrics_document_has_ecs_names_and_a_stable_id():
    windows = hand_window(FAIR)
    key = ModelKey("fraud", "3", SLICES[0].labels)
    doc = metrics_document(key, T0, MINUTE, windows["region=eu"])
    assert doc["@timestamp"] == "2026-09-21T14:13:00.000Z"
    assert doc["window"] == {"start": "2026-09-21T14:13:00.000Z", "end": "2026-09-21T14:14:00.000Z", "size_ms": MINUTE}
    assert doc["model"] == {"name": "fraud", "version": "3"}
    assert (doc["labels"], doc["slice"]) == ({"region": "eu"}, {"name": "region=eu"})
    assert doc["event"] == {"id": metrics_id(key, T0, MINUTE), "kind": "metric", "dataset": "driftline.metrics"}
    metrics = doc["metrics"]
    assert (metrics["count"], metrics["requests_per_s"], metrics["error_rate"], metrics["accuracy"]) == (5, 5 / 60, 0.4, 0.6)
    assert (metrics["latency_ms"]["p50"], metrics["latency_ms"]["p95"], metrics["latency_ms"]["p99"]) == (30.0, 50.0, 50.0)
    assert metrics["classes"][0] == {"class": "fraud", "support": 2, "predicted": 2, "tp": 1,
                                     "precision": 0.5, "recall": 0.5, "f1": 0.5}  # fmt: skip
    assert metrics["prediction"]["classes"] == [{"label": "fraud", "count": 2}, {"label": "legit", "count": 3}]
    assert doc["fairness"]["groups"] == [{"value": "eu", "count": 5, "tp": 1, "fp": 1, "tn": 2, "fn": 1,
                                          "fpr": 1 / 3, "fnr": 0.5, "accuracy": 0.6, "included": True}]  # fmt: skip
    json.dumps(doc, allow_nan=False)
    whole = metrics_document(ModelKey("fraud", "3"), T0, MINUTE, windows[""])
    assert (whole["labels"], whole["slice"]) == ({}, {"name": "all"})


def test_metrics_ids_differ_by_key_and_window_only():
    key = ModelKey("fraud", "3", {"region": "eu", "weather": "rain"})
    same = ModelKey("fraud", "3", {"weather": "rain", "region": "eu"})
    ids = {
        metrics_id(key, T0, MINUTE),
        metrics_id(key, T0 + MINUTE, MINUTE),
        metrics_id(key, T0, 5 * MINUTE),
        metrics_id(ModelKey("fraud", "4", key.slice), T0, MINUTE),
        metrics_id(ModelKey("fraud", "3", {"region": "eu"}), T0, MINUTE),
        metrics_id(ModelKey("fraud", "3"), T0, MINUTE),
    }
    assert len(ids) == 6 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert metrics_id(same, T0, MINUTE) == metrics_id(key, T0, MINUTE)


def test_a_window_size_other_than_the_configured_one_is_refused():
    with pytest.raises(ValueError, match="differs"):
        metrics_document(ModelKey("fraud", "3"), T0, 5 * MINUTE, WindowMetrics(MetricsConfig(window_ms=MINUTE)))


def test_window_start_aligns_on_the_epoch():
    assert window_start(T0, MINUTE) == T0
    assert window_start(T0 + MINUTE - 1, MINUTE) == T0
    assert window_start(T0 + MINUTE, MINUTE) == T0 + MINUTE
    assert window_start(-1, MINUTE) == -MINUTE
    with pytest.raises(ValueError):
        window_start(T0, 0)


# --- references on generated data ---------------------------------------------------------------


def classified(seed: int, n: int, classes: list[str], config: MetricsConfig) -> tuple[WindowMetrics, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(classes, size=n)
    guess = np.where(rng.random(n) < 0.6, truth, rng.choice(classes, size=n))
    metrics = WindowMetrics(config)
    for t, g in zip(truth.tolist(), guess.tolist()):
        metrics.add_outcome(outcome_doc(prediction_doc(g, 0.5), t))
    return metrics, truth, guess


def test_multiclass_metrics_match_a_numpy_computation():
    classes = ["a", "b", "c", "d"]
    metrics, truth, guess = classified(3, 5000, classes, MetricsConfig())
    m = metrics.summary()
    assert m["accuracy"] == pytest.approx(np.mean(truth == guess), abs=1e-12)
    assert m["error_rate"] == pytest.approx(np.mean(truth != guess), abs=1e-12)
    precisions, recalls, f1s = [], [], []
    for c in classes:
        tp = np.sum((guess == c) & (truth == c))
        p, r = tp / np.sum(guess == c), tp / np.sum(truth == c)
        f1 = 2 * p * r / (p + r)
        assert (m["classes"][c]["precision"], m["classes"][c]["recall"], m["classes"][c]["f1"]) == pytest.approx((p, r, f1), abs=1e-12)
        precisions.append(p), recalls.append(r), f1s.append(f1)
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx(
        (np.mean(precisions), np.mean(recalls), np.mean(f1s)), abs=1e-12)


def test_a_class_never_predicted_counts_zero_in_macro_averages():
    metrics = WindowMetrics()
    for truth, guess in [("a", "a"), ("b", "a"), ("c", "c")]:
        metrics.add_outcome(outcome_doc(prediction_doc(guess), truth))
    m = metrics.summary()
    assert m["classes"]["b"] == {"support": 1, "predicted": 0, "tp": 0, "precision": None, "recall": 0.0, "f1": 0.0}
    # precision a 1/2, b undefined -> 0, c 1; recall a 1, b 0, c 1; F1 a 2/3, b 0, c 1
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((0.5, 2 / 3, 5 / 9))


def test_binary_metrics_match_a_numpy_computation():
    metrics, truth, guess = classified(4, 3000, ["fraud", "legit", "review"], MetricsConfig(positive_label="fraud"))
    m = metrics.summary()
    y, yhat = truth == "fraud", guess == "fraud"
    tp, fp, tn, fn = (np.sum(y & yhat), np.sum(~y & yhat), np.sum(~y & ~yhat), np.sum(y & ~yhat))
    assert m["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((precision, recall, 2 * precision * recall / (precision + recall)), abs=1e-12)
    assert (m["fpr"], m["fnr"]) == pytest.approx((fp / (fp + tn), fn / (fn + tp)), abs=1e-12)


def auc_window(positive: np.ndarray, negative: np.ndarray, **config: Any) -> dict[str, Any]:
    """Outcomes whose class distribution gives these positive-class scores."""
    metrics = WindowMetrics(MetricsConfig(positive_label="pos", **config))
    for truth, scores in (("pos", positive), ("neg", negative)):
        for s in scores.tolist():
            guess = "pos" if s >= 0.5 else "neg"
            metrics.add_outcome(outcome_doc(prediction_doc(guess, max(s, 1 - s), scores={"pos": s, "neg": 1 - s}), truth))
    return metrics.summary()


def mann_whitney_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    return mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_is_exact_for_scores_on_the_bin_grid(seed):
    rng = np.random.default_rng(seed)
    positive = np.round(np.clip(rng.normal(0.6, 0.2, 700), 0, 1), 3)  # many ties
    negative = np.round(np.clip(rng.normal(0.45, 0.2, 900), 0, 1), 3)
    m = auc_window(positive, negative)
    assert m["roc_auc"] == pytest.approx(mann_whitney_auc(positive, negative), abs=1e-12)
    assert m["roc_auc_count"] == 1600


def test_roc_auc_counts_ties_one_half_on_a_coarse_grid():
    positive, negative = np.array([0.5, 0.5, 1.0]), np.array([0.0, 0.5])
    m = auc_window(positive, negative, auc_bins=2)
    # pairs: (0.5, 0) win, (0.5, 0.5) tie, twice; (1, *) two wins: (2 + 1 + 2) / 6
    assert m["roc_auc"] == pytest.approx(5 / 6) == pytest.approx(mann_whitney_auc(positive, negative))
    assert m["roc_auc_max_error"] == pytest.approx(2 / (2 * 6))  # two positive-negative pairs share a bin


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_of_continuous_scores_is_within_its_stated_bound(seed):
    rng = np.random.default_rng(seed)
    positive = rng.beta(5, 3, 4000)
    negative = rng.beta(3, 5, 5000)
    m = auc_window(positive, negative)
    exact = mann_whitney_auc(positive, negative)
    assert abs(m["roc_auc"] - exact) <= m["roc_auc_max_error"]
    assert m["roc_auc_max_error"] < 0.002  # about 1/(2 * 1000) times the overlap of the densities


def test_scores_without_a_positive_class_score_are_left_out_of_the_auc():
    metrics = WindowMetrics(MetricsConfig(positive_label="fraud"))  # no negative label: 1 - score is not assumed
    metrics.add_outcome(outcome_doc(prediction_doc("fraud", 0.9), "fraud"))
    metrics.add_outcome(outcome_doc(prediction_doc("legit", 0.8), "legit"))
    metrics.add_outcome(outcome_doc(prediction_doc("legit", 0.8, scores={"fraud": 0.2}), "legit"))
    metrics.add_outcome(outcome_doc(prediction_doc("fraud", 7.5), "legit"))  # not a probability
    m = metrics.summary()
    assert (m["roc_auc_count"], m["roc_auc_missing"], m["roc_auc"]) == (2, 2, 1.0)


def test_positive_class_score_rule():
    assert positive_class_score({"label": "b", "score": 0.7, "scores": {"a": 0.1, "b": 0.7, "c": 0.2}}, "a") == 0.1
    assert positive_class_score({"label": "a", "score": 0.7}, "a") == 0.7
    two = {"label": "b", "score": 0.6, "outputs": [{"label": "b", "score": 0.6}, {"label": "a", "score": 0.3}]}
    assert positive_class_score(two, "a") == 0.3
    assert positive_class_score({"label": "b", "score": 0.75}, "a", "b") == 0.25
    assert positive_class_score({"label": "c", "score": 0.75}, "a", "b") is None
    assert positive_class_score({"label": "a"}, "a") is None
    assert positive_class_score({"label": "a", "score": math.nan, "scores": {"a": math.inf}}, "a") is None


def rank_interval(data_sorted: np.ndarray, value: float) -> tuple[float, float]:
    n = len(data_sorted)
    return np.searchsorted(data_sorted, value, "left") / n, np.searchsorted(data_sorted, value, "right") / n


def test_latency_quantiles_are_within_the_kll_rank_error_of_numpy():
    rng = np.random.default_rng(11)
    latencies = rng.lognormal(2.0, 1.0, 50_000)
    metrics = WindowMetrics()
    for value in latencies.tolist():
        metrics.add_prediction({"latency_ms": value}, T0)
    m = metrics.summary()["latency_ms"]
    eps = metrics.latency.normalized_rank_error(False)  # ~1.3% for k = 200, at 99% confidence
    data = np.sort(latencies)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        low, high = rank_interval(data, m[name])
        assert low - eps <= q <= high + eps, (name, q, low, high, eps)
        assert m[name] in latencies  # a quantile is an observed value
        assert np.quantile(latencies, max(q - eps, 0)) <= m[name] <= np.quantile(latencies, min(q + eps, 1))
    assert m["mean"] == pytest.approx(latencies.mean(), rel=1e-12)
    assert (m["min"], m["max"]) == (latencies.min(), latencies.max())


def test_quantiles_are_exact_while_the_sketch_holds_every_value():
    values = np.random.default_rng(5).exponential(20.0, 150)
    metrics = WindowMetrics()
    for v in values.tolist():
        metrics.add_prediction({"latency_ms": v, "prediction": {"value": -v}}, T0)
        metrics.add_outcome({"feedback": {"delay_ms": int(v * 1000)}, "outcome": {}})
    m = metrics.summary()
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert m["latency_ms"][name] == np.quantile(values, q, method="inverted_cdf")
    for name, q in (("p5", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95)):
        assert m["prediction"]["value"][name] == np.quantile(-values, q, method="inverted_cdf")
    delays = (values * 1000).astype(int)
    assert m["label_delay_ms"]["p95"] == np.quantile(delays, 0.95, method="inverted_cdf")
    assert m["label_delay_ms"]["mean"] == pytest.approx(delays.mean())


def test_regression_mae_rmse_and_bias_match_numpy():
    rng = np.random.default_rng(8)
    predicted, actual = rng.normal(10, 3, 2000), rng.normal(10, 3, 2000)
    metrics = WindowMetrics()
    for p, a in zip(predicted.tolist(), actual.tolist()):
        prediction = prediction_doc(value=p)
        metrics.add_prediction(prediction, T0)
        metrics.add_outcome(outcome_doc(prediction, a))
    m = metrics.summary()
    errors = predicted - actual
    assert m["regressed"] == 2000 and m["classified"] == 0 and m["error_rate"] is None
    assert m["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-12)
    assert m["mean_error"] == pytest.approx(np.mean(errors), rel=1e-9, abs=1e-12)
    assert m["prediction"]["value"]["count"] == 2000 and m["prediction"]["classes"] == {}


# --- merge, state, bounds ---------------------------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["eu", "us", "apac", None]),  # region
        st.one_of(st.none(), st.floats(0, 1e4)),  # latency
        st.sampled_from(["fraud", "legit", "review"]),  # predicted
        st.sampled_from(["fraud", "legit", "review", None]),  # truth (None: no outcome)
        st.integers(0, 1000).map(lambda i: i / 1000),  # score on the grid
        st.one_of(st.none(), st.floats(-1e3, 1e3)),  # regression value
        st.integers(0, 10**6),  # event time offset
    ),
    max_size=60,
)
MERGE_CONFIG = MetricsConfig(positive_label="fraud", negative_label="legit", sensitive_attribute="region", min_group_size=2)


def accumulate(events: list[tuple[Any, ...]], config: MetricsConfig = MERGE_CONFIG) -> WindowMetrics:
    metrics = WindowMetrics(config)
    for region, latency, label, truth, score, value, offset in events:
        prediction = prediction_doc(label, score, latency=latency, region=region)
        metrics.add_prediction(prediction, T0 + offset)
        if truth is not None:
            metrics.add_outcome(outcome_doc(prediction, truth, delay_ms=offset))
        if value is not None:
            regression = prediction_doc(value=value, latency=latency)
            metrics.add_prediction(regression, T0 + offset)
            metrics.add_outcome(outcome_doc(regression, value + score))
    return metrics


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.data())
def test_merging_two_parts_equals_accumulating_all_events(events, data):
    cut = data.draw(st.integers(0, len(events)))
    merged = accumulate(events[:cut]).merge(accumulate(events[cut:]))
    assert_close(merged.summary(), accumulate(events).summary())  # fewer than k values: sketches exact


@settings(max_examples=40, deadline=None)
@given(EVENTS)
def test_state_round_trips_through_json(events):
    metrics = accumulate(events)
    state = json.loads(json.dumps(metrics.to_json(), allow_nan=False))
    restored = WindowMetrics.from_json(state)
    assert restored.to_json() == metrics.to_json()
    assert restored.summary() == metrics.summary()
    assert WindowMetrics.from_json(json.dumps(state)).summary() == metrics.summary()
    # and a restored accumulator keeps accumulating like the original
    restored.add_prediction(prediction_doc("fraud", 0.5), T0)
    metrics.add_prediction(prediction_doc("fraud", 0.5), T0)
    assert restored.summary() == metrics.summary()


def test_merged_sketches_of_large_parts_stay_within_the_rank_error():
    rng = np.random.default_rng(21)
    latencies = rng.gamma(2.0, 10.0, 40_000)
    parts = [WindowMetrics() for _ in range(4)]
    for i, value in enumerate(latencies.tolist()):
        parts[i % 4].add_prediction({"latency_ms": value}, T0)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    m = merged.summary()["latency_ms"]
    assert m["count"] == 40_000
    eps = merged.latency.normalized_rank_error(False)
    data = np.sort(latencies)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        low, high = rank_interval(data, m[name])
        assert low - eps <= q <= high + eps


def test_merging_different_configurations_is_refused():
    with pytest.raises(ValueError, match="different configurations"):
        WindowMetrics(MetricsConfig(positive_label="a")).merge(WindowMetrics(MetricsConfig(positive_label="b")))


def test_an_unknown_state_version_is_refused():
    state = WindowMetrics().to_json()
    state["v"] = 99
    with pytest.raises(ValueError, match="version"):
        WindowMetrics.from_json(state)


def serialized_size(n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    metrics = WindowMetrics(MetricsConfig(positive_label="c0", sensitive_attribute="region", max_classes=50, max_groups=20))
    latencies, scores, values = rng.lognormal(2, 1, n), rng.random(n), rng.normal(0, 1, n)
    classes = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 500, n))
    truths = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 500, n))
    regions = rng.integers(0, 200, n)
    for i in range(n):
        prediction = prediction_doc(f"c{classes[i]}", float(scores[i]), latency=float(latencies[i]), region=f"r{regions[i]}")
        prediction["prediction"]["scores"] = {"c0": float(scores[i])}
        metrics.add_prediction(prediction, T0 + i)
        metrics.add_outcome(outcome_doc(prediction, f"c{truths[i]}", delay_ms=int(latencies[i] * 100)))
        if i % 4 == 0:
            regression = prediction_doc(value=float(values[i]), latency=None)
            metrics.add_prediction(regression, T0 + i)
            metrics.add_outcome(outcome_doc(regression, 0.0))
    summary = metrics.summary()
    assert len(summary["classes"]) <= 51 and len(summary["prediction"]["classes"]) <= 51
    assert len(summary["fairness"]["groups"]) <= 21 and OTHER in summary["fairness"]["groups"]
    assert len(metrics.auc_pos) <= 1001 and len(metrics.auc_neg) <= 1001
    for sketch in (metrics.latency, metrics.delay, metrics.values):
        assert sketch.num_retained <= 3 * 200 + 8 * 40  # KLL: ~3k items plus a few per level
    return len(json.dumps(metrics.to_json()))


def test_serialized_state_does_not_grow_with_ten_times_more_events():
    small, large = serialized_size(10_000, 1), serialized_size(100_000, 2)
    # Bounded parts, full at both sizes: AUC histograms (<= 2 x 1001 bins), <= 51 classes,
    # <= 21 groups. What grows is a few retained items per KLL level (three sketches, ~11
    # base64 bytes an item) and one more digit in some counters: well under 5 KB for 10x.
    assert large - small < 5_000, (small, large)
    # An upper bound for any number of events below 10**12: 3 sketches of at most ~920
    # items (8 bytes, base64 4/3), 2002 bins as "[bbbb,nnnnnnnnnnnn]," and the
    # classes, groups and config as written with 12-digit counts.
    assert large < 3 * 920 * 8 * 4 // 3 + 2002 * 21 + 51 * 2 * 60 + 21 * 70 + 2000, large


def test_classes_beyond_the_cap_are_counted_as_other():
    metrics = WindowMetrics(MetricsConfig(max_classes=2))
    for label in ["a", "b", "c", "d", "a"]:
        prediction = prediction_doc(label)
        metrics.add_prediction(prediction, T0)
        metrics.add_outcome(outcome_doc(prediction, label))
    m = metrics.summary()
    assert m["prediction"]["classes"] == {"a": 2, "b": 1, OTHER: 2}
    assert m["classes"][OTHER] == {"support": 2, "predicted": 2, "tp": 2, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert m["accuracy"] == 1.0


# --- bad and partial input ------------------------------------------------------------------------


@pytest.mark.parametrize("latency", [None, math.nan, math.inf, -1.0, True, "12", [3.0]])
def test_an_unusable_latency_is_counted_missing(latency):
    metrics = WindowMetrics()
    metrics.add_prediction(prediction_doc("a", latency=latency), T0)
    metrics.add_prediction(prediction_doc("a", latency=4.0), T0)
    m = metrics.summary()
    assert (m["count"], m["latency_ms"]["count"], m["latency_ms"]["missing"], m["latency_ms"]["p99"]) == (2, 1, 1, 4.0)


def test_numpy_numbers_are_numbers():
    metrics = WindowMetrics()
    metrics.add_prediction({"latency_ms": np.float64(3.5), "prediction": {"value": np.float32(2.0)}}, T0)
    assert metrics.summary()["latency_ms"]["p50"] == 3.5


def test_unscored_and_malformed_outcomes_count_only_towards_coverage_and_delay():
    metrics = WindowMetrics(MetricsConfig(positive_label="a", sensitive_attribute="region"))
    metrics.add_prediction(prediction_doc("a"), T0)
    metrics.add_outcome({"feedback": {"labels": [], "delay_ms": 100}, "outcome": {}})
    metrics.add_outcome({"feedback": {"delay_ms": 200}})  # no outcome object
    metrics.add_outcome({"outcome": {"error": math.nan}})  # no feedback, non-finite error
    metrics.add_outcome({"feedback": "bad", "outcome": "bad"})
    metrics.add_outcome({})
    m = metrics.summary()
    assert (m["outcomes"], m["unscored_outcomes"], m["label_coverage"]) == (5, 5, 5.0)
    assert m["label_delay_ms"] == {"count": 2, "missing": 3, "mean": 150.0, "p50": 100.0, "p95": 200.0}
    assert (m["classified"], m["regressed"], m["error_rate"], m["accuracy"], m["mae"]) == (0, 0, None, None, None)
    assert m["fairness"]["groups"] == {} and m["fairness"]["exceeded"] == []


def test_multi_label_outcomes_count_in_the_error_rate_but_not_per_class():
    metrics = WindowMetrics(MetricsConfig(positive_label="a"))
    two = {"prediction": {"label": "a", "outputs": [{"label": "a"}, {"label": "b"}]}}
    metrics.add_outcome(outcome_doc(two, "a"))  # Jaccard distance 1/2
    metrics.add_outcome({**outcome_doc(prediction_doc("a"), "a"), "feedback": {"labels": ["a", "b"]}, "outcome": {"correct": True, "error": 0.0}})
    metrics.add_outcome(outcome_doc(prediction_doc("b"), "a"))
    m = metrics.summary()
    assert (m["classified"], m["evaluated"]) == (3, 1)
    assert m["error_rate"] == pytest.approx(0.5)  # (0.5 + 0 + 1) / 3
    assert (m["accuracy"], m["confusion"]) == (0.0, {"tp": 0, "fp": 0, "tn": 0, "fn": 1})


def test_outcomes_without_the_sensitive_attribute_are_counted_missing():
    metrics = WindowMetrics(MetricsConfig(positive_label="a", sensitive_attribute="region", min_group_size=1))
    metrics.add_outcome(outcome_doc(prediction_doc("a", region="eu"), "a"))
    metrics.add_outcome(outcome_doc(prediction_doc("a"), "b"))
    vip = outcome_doc(prediction_doc("b"), "b")
    vip["labels"] = {}
    vip["features"]["boolean"]["region"] = True  # a boolean attribute groups as "true"
    metrics.add_outcome(vip)
    fairness = metrics.summary()["fairness"]
    assert fairness["missing"] == 1
    assert sorted(fairness["groups"]) == ["eu", "true"]


def test_an_empty_window_has_no_numbers_and_a_valid_document():
    config = MetricsConfig(positive_label="a", sensitive_attribute="region")
    m = WindowMetrics(config).summary()
    assert (m["count"], m["requests_per_s"], m["label_coverage"], m["latency_ms"]["p50"], m["roc_auc"]) == (0, 0.0, None, None, None)
    doc = metrics_document(ModelKey("m", "1"), 0, config.window_ms, WindowMetrics(config))
    json.dumps(doc, allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_ms": 0}, "window_ms"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"auc_bins": 1.5}, "auc_bins"),
        ({"sketch_k": 4}, "sketch_k"),
        ({"positive_label": ""}, "positive_label"),
        ({"positive_label": "a", "negative_label": "a"}, "differ"),
        ({"fairness_thresholds": {"tpr_gap": 0.1}}, "unknown fairness gap"),
        ({"fairness_thresholds": {"fpr_gap": math.nan}}, "finite"),
    ],
)
def test_bad_configuration_is_a_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MetricsConfig(**kwargs)


def test_sketch_values_are_buffered_boundedly_and_all_counted():
    from driftline.streams.metrics import _PENDING_MAX

    metrics = WindowMetrics()
    for i in range(3 * _PENDING_MAX + 7):
        metrics.add_prediction({"latency_ms": float(i % 1000), "prediction": {"value": float(i)}}, i)
        metrics.add_outcome({"feedback": {"delay_ms": i}, "outcome": {"error": 0.0, "abs_error": 0.0}})
        assert len(metrics._latency_pending) < _PENDING_MAX and len(metrics._delay_pending) < _PENDING_MAX
    n = 3 * _PENDING_MAX + 7
    assert metrics.latency.n == metrics.values.n == metrics.delay.n == n
    assert not metrics._latency_pending and not metrics._values_pending and not metrics._delay_pending
    restored = WindowMetrics.from_json(metrics.to_json())
    assert restored.summary()["latency_ms"]["count"] == n and restored.delay.get_max_value() == n - 1
