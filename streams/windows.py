"""Tumbling event-time windows of one model key: metrics, baseline comparisons, schema-skew counts.

The online detectors (:mod:`.detect`) say *that* a stream changed. A window
says *what* changed, against what the model was trained on, and for whom:
per model, version and slice (a :class:`~.keys.ModelKey`), per tumbling
window of event time, a :class:`WindowSet` keeps

* :class:`~.metrics.WindowMetrics` — counts, latency quantiles, error rate,
  label coverage and delay, classification and regression metrics, fairness
  groups;
* a :class:`~.feature_windows.ServingWindow` when the model version has a
  baseline — one accumulator per baseline feature, the prediction and the
  label, compared with the baseline (and with the previous window) when the
  window closes;
* :class:`~.skew.AnomalyCounts` — the schema-skew anomalies the ingest stage
  found (type, domain, range, required), per feature and kind.

It is fed *records* (:func:`prediction_record`, :func:`outcome_record`): the
parts of a canonical event the windows read, sent by the ingest stage with the
observation batches, so they arrive de-duplicated by source offset (see
:class:`~.detect.DetectorBank`). Records are order-free: a window is a sum.

Which window a record lands in
------------------------------
A prediction lands in the window of its event time. An outcome lands in the
window of the time it became *known* (the later of prediction and label time,
the join's clock): labels can come days late, long after the prediction's
window closed, and a closed window is never reopened. So a window's accuracy,
error rate and fairness describe the labels that arrived in it, and its
``label_coverage`` is outcomes known in the window over predictions made in it
(close to the true coverage when traffic and label delay are steady; the
join's expiry counts give the exact share of predictions never labelled).

Closing
-------
A window ``[start, start + size)`` closes when the key's watermark (the
prediction clock of the source partitions, as the detectors use it) passes
``start + size + lateness``. Until then late events update it, and its
metrics document is re-indexed under the same id on every batch
(``window.closed: false``). On closing, its final document is indexed
(``window.closed: true``), and the comparisons run: each drifted finding is
a :class:`~.alerts.DriftEvent` that goes through the alert policy like the
detectors' alarms. Records for a closed window are counted as
``window.late_events`` and dropped.

Small windows are compared with significance tests (KS, chi-squared), large
ones by effect sizes guarded by a test. Both levels (``alpha``,
``guard_alpha``) are divided by the number of streams compared (Bonferroni),
so a window of a stable model raises a false alarm with probability about
``alpha`` in all, not ``alpha`` per feature. The pipeline's default is 1% per
window and key (:data:`PIPELINE_THRESHOLDS`): with 5-minute windows that is
about three false comparisons a day per key before the alert cooldown, against
~14 at the textbook 5%.

Example:
    >>> from driftline.streams.keys import ModelKey
    >>> windows = WindowSet(ModelKey("fraud", "1"), WindowSettings(size_ms=60_000, lateness_ms=0))
    >>> doc = {"latency_ms": 8.0, "prediction": {"label": "fraud", "score": 0.9}, "features": {"numeric": {"x": 1.0}}}
    >>> windows.add("p", prediction_record(doc, []), 1_000)
    >>> windows.add("p", prediction_record(doc, []), 61_000)
    >>> closed = windows.close(watermark_ms=60_500)
    >>> [d["window"]["closed"] for _, d in closed.documents], closed.documents[0][1]["metrics"]["count"]
    ([True], 1)
    >>> sorted(windows.open)
    [60000]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftline.baselines.model import Baseline
from driftline.streams.alerts import DriftEvent
from driftline.streams.feature_windows import DEFAULT_THRESHOLDS, DriftThresholds, ServingWindow, drift_events
from driftline.streams.keys import ModelKey
from driftline.streams.metrics import MetricsConfig, WindowMetrics, fairness_findings, metrics_document, window_start
from driftline.streams.skew import Anomaly, AnomalyCounts

__all__ = [
    "OUTCOME",
    "PIPELINE_THRESHOLDS",
    "PREDICTION",
    "ClosedWindows",
    "Window",
    "WindowSet",
    "WindowSettings",
    "outcome_record",
    "prediction_record",
]

log = logging.getLogger(__name__)

#: The pipeline's comparison thresholds: family-wise 1% per window (see the module doc).
PIPELINE_THRESHOLDS = dataclasses.replace(DEFAULT_THRESHOLDS, alpha=0.01, guard_alpha=0.01)

#: Record kinds: a prediction, an outcome (a prediction joined with its label).
PREDICTION, OUTCOME = "p", "o"


def prediction_record(document: Mapping[str, Any], anomalies: Iterable[Anomaly | Sequence[str]]) -> dict[str, Any]:
    """The parts of a canonical prediction the windows read, plus its schema-skew anomalies as ``[feature, kind]``.

    Example:
        >>> prediction_record({"latency_ms": 3.0, "request": {"id": "r"}}, [("age", "out_of_range")])
        {'latency_ms': 3.0, 'anomalies': [['age', 'out_of_range']]}
    """
    record = {k: document[k] for k in ("latency_ms", "prediction", "features", "labels") if k in document}
    found = [[str(a[0]), str(a[1])] for a in anomalies]
    if found:
        record["anomalies"] = found
    return record


def outcome_record(document: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a joined outcome the windows read (numeric features and vectors left out).

    Example:
        >>> outcome_record({"outcome": {"error": 0.0}, "feedback": {"labels": ["a"], "delay_ms": 5, "source": "x"},
        ...                 "features": {"numeric": {"x": 1.0}, "categorical": {"c": "v"}}})
        {'outcome': {'error': 0.0}, 'feedback': {'labels': ['a'], 'delay_ms': 5}, 'features': {'categorical': {'c': 'v'}}}
    """
    record: dict[str, Any] = {k: document[k] for k in ("prediction", "outcome", "labels") if k in document}
    feedback = document.get("feedback") or {}
    record["feedback"] = {k: feedback[k] for k in ("labels", "values", "delay_ms") if k in feedback}
    features = document.get("features") or {}
    kept = {k: features[k] for k in ("categorical", "boolean") if features.get(k)}
    if kept:
        record["features"] = kept
    return record


@dataclass(frozen=True)
class WindowSettings:
    """How windows are cut, measured and compared.

    Parameters
    ----------
    size_ms, lateness_ms
        Window length, and how long after its end a window still takes late records.
    metrics
        Positive label, sensitive attribute, fairness thresholds (its
        ``window_ms`` is set to ``size_ms``).
    thresholds
        Drift thresholds of the baseline comparisons, per feature overridable.
    skew_alert_rate
        Share of a window's events with one kind of anomaly on one feature
        from which the window raises a data-quality drift event (0.01: one
        event in a hundred; a single bad sensor reading does not page anyone,
        a broken feature pipeline does).
    compare_previous
        Also compare each window with the one before it (window-over-window drift).
    """

    size_ms: int = 300_000
    lateness_ms: int = 60_000
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    thresholds: DriftThresholds = PIPELINE_THRESHOLDS
    skew_alert_rate: float = 0.01
    compare_previous: bool = True

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.lateness_ms < 0:
            raise ValueError("size_ms must be > 0 and lateness_ms >= 0")
        if not 0 < self.skew_alert_rate <= 1:
            raise ValueError(f"skew_alert_rate must be in (0, 1], not {self.skew_alert_rate}")
        if self.metrics.window_ms != self.size_ms:
            object.__setattr__(self, "metrics", dataclasses.replace(self.metrics, window_ms=self.size_ms))


class Window:
    """The state of one window of one key: metrics, baseline accumulators, anomaly counts.

    The serving accumulators need the baseline to be rebuilt from their stored
    form; :meth:`serving_for` binds them to the baseline in use.
    """

    def __init__(self, start_ms: int, metrics: WindowMetrics) -> None:
        self.start_ms = start_ms
        self.metrics = metrics
        self.anomalies = AnomalyCounts()
        self.serving: ServingWindow | None = None
        self._serving_state: dict[str, Any] | None = None  # stored form, until a baseline binds it

    def serving_for(self, baseline: Baseline | None) -> ServingWindow | None:
        """The window's accumulators for ``baseline`` (created empty, or rebuilt from the stored state)."""
        if baseline is None:
            return self.serving
        if self.serving is not None and self.serving.baseline is baseline:
            return self.serving
        state = self.serving.to_json() if self.serving is not None else self._serving_state
        self.serving = None
        if state is not None:
            try:
                self.serving = ServingWindow.from_json(state, baseline)
            except (ValueError, KeyError, TypeError) as exc:  # the baseline was replaced: start over
                log.warning("window %d: baseline %s changed (%s); its comparison starts from this batch",
                            self.start_ms, baseline.key, exc)
        if self.serving is None:
            self.serving = ServingWindow(baseline)
        self._serving_state = None
        return self.serving

    def to_json(self) -> dict[str, Any]:
        serving = self.serving.to_json() if self.serving is not None else self._serving_state
        return {"start": self.start_ms, "metrics": self.metrics.to_json(), "anomalies": self.anomalies.to_json(),
                "serving": serving}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Window:
        window = cls(int(obj["start"]), WindowMetrics.from_json(obj["metrics"]))
        window.anomalies = AnomalyCounts.from_json(obj["anomalies"])
        window._serving_state = obj.get("serving")
        return window


@dataclass
class ClosedWindows:
    """What closing windows produced: ``(stream, document)`` pairs to index, and drift events."""

    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    drift: list[DriftEvent] = field(default_factory=list)


class WindowSet:
    """The open windows of one model key, the last closed one, and what arrived too late.

    Plain state, picklable (as JSON inside) into the detectors' table with the
    key's :class:`~.detect.DetectorBank`.
    """

    def __init__(self, key: ModelKey, settings: WindowSettings | None = None) -> None:
        self.key = key
        self.settings = settings or WindowSettings()
        self.open: dict[int, Window] = {}
        self.previous: dict[str, Any] | None = None  # the last closed window's serving state
        self.closed_before = 0  # windows starting before this are closed
        self.late = 0
        self.touched: set[int] = set()  # windows changed since their document was last taken

    def add(self, kind: str, record: Mapping[str, Any], event_ms: int, baseline: Baseline | None = None) -> None:
        """Add one record (``PREDICTION`` or ``OUTCOME``) at its event time."""
        start = window_start(event_ms, self.settings.size_ms)
        if start < self.closed_before:
            self.late += 1
            return
        window = self.open.get(start)
        if window is None:
            window = self.open[start] = Window(start, WindowMetrics(self.settings.metrics))
        self.touched.add(start)
        serving = window.serving_for(baseline)
        if kind == PREDICTION:
            window.metrics.add_prediction(record, event_ms)
            if baseline is not None:
                window.anomalies.update(Anomaly(f, k, "", "") for f, k in record.get("anomalies") or ())
            if serving is not None:
                serving.update(record)
        elif kind == OUTCOME:
            window.metrics.add_outcome(record)
            if serving is not None and serving.label is not None:
                feedback = record.get("feedback") or {}
                labels, values = feedback.get("labels") or [], feedback.get("values") or []
                if labels or values:
                    serving.update_label(labels[0] if labels else values[0])
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def documents(self) -> list[tuple[str, dict[str, Any]]]:
        """The metrics documents of the open windows changed since the last call (``window.closed: false``)."""
        out = [("metrics", self._document(self.open[start], closed=False)) for start in sorted(self.touched)
               if start in self.open]
        self.touched.clear()
        return out

    def close(self, watermark_ms: float, baseline: Baseline | None = None) -> ClosedWindows:
        """Close every window the watermark has passed (plus lateness): final documents and drift events."""
        out = ClosedWindows()
        size, lateness = self.settings.size_ms, self.settings.lateness_ms
        for start in sorted(self.open):
            if start + size + lateness > watermark_ms:
                break
            window = self.open.pop(start)
            self.touched.discard(start)
            self.closed_before = max(self.closed_before, start + size)
            out.documents.append(("metrics", self._document(window, closed=True)))
            out.drift += fairness_findings(self.key, start, size, window.metrics)
            out.drift += self._skew_events(window)
            serving = window.serving_for(baseline)
            if serving is not None and serving.count:
                out.drift += self._baseline_events(window, serving, baseline)
                self.previous = serving.to_json()
        return out

    def _document(self, window: Window, closed: bool) -> dict[str, Any]:
        doc = metrics_document(self.key, window.start_ms, self.settings.size_ms, window.metrics)
        doc["window"]["closed"] = closed
        doc["window"]["late_events"] = self.late
        counts = window.anomalies
        doc["quality"] = {
            "events": counts.events,
            "anomalous": counts.anomalous,
            "anomalies": [{"feature": f, "kind": k, "count": n, "rate": n / counts.events if counts.events else 0.0}
                          for (f, k), n in sorted(counts.counts.items())],
        }
        return doc

    def _skew_events(self, window: Window) -> list[DriftEvent]:
        counts, size = window.anomalies, self.settings.size_ms
        events = []
        for (feature, kind), n in sorted(counts.counts.items()):
            rate = n / counts.events if counts.events else 0.0
            if rate >= self.settings.skew_alert_rate:
                events.append(DriftEvent(
                    detector="schema", kind="quality", stream=f"skew.{kind}", feature=feature,
                    model_name=self.key.model, model_version=self.key.version, slice=dict(self.key.slice),
                    position=window.start_ms // size, event_time_ms=window.start_ms, statistic=rate,
                    threshold=self.settings.skew_alert_rate, window_size=counts.events,
                    parameters={"anomalies": n, "anomaly_kind": kind, "window_ms": size},
                ))  # fmt: skip
        return events

    def _baseline_events(self, window: Window, serving: ServingWindow, baseline: Baseline | None) -> list[DriftEvent]:
        streams = len(serving.features) + sum(part is not None for part in (serving.prediction, serving.label,
                                                                            getattr(serving, "novelty", None)))
        thresholds = self.settings.thresholds
        if streams > 1:  # Bonferroni: about alpha false alarms per window in all, not per stream
            thresholds = dataclasses.replace(thresholds, alpha=thresholds.alpha / streams,
                                             guard_alpha=thresholds.guard_alpha / streams)
        findings = serving.compare(thresholds)
        if self.settings.compare_previous and self.previous is not None and baseline is not None:
            try:
                previous = ServingWindow.from_json(self.previous, baseline)
            except (ValueError, KeyError, TypeError):
                previous = None
            if previous is not None and previous.count:
                findings += serving.compare_previous(previous, thresholds)
        return drift_events(findings, model_name=self.key.model, model_version=self.key.version,
                            window_start_ms=window.start_ms, window_size_ms=self.settings.size_ms,
                            slice=dict(self.key.slice))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "key": [self.key.model, self.key.version, dict(self.key.slice)],
            "settings": self.settings,
            "open": [w.to_json() for _, w in sorted(self.open.items())],
            "previous": self.previous,
            "closed_before": self.closed_before,
            "late": self.late,
            "touched": sorted(self.touched),
        }

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        model, version, slice_ = state["key"]
        self.key = ModelKey(model, version, slice_)
        self.settings = state["settings"]
        self.open = {int(w["start"]): Window.from_json(w) for w in state["open"]}
        self.previous = state["previous"]
        self.closed_before = int(state["closed_before"])
        self.late = int(state["late"])
        self.touched = set(state.get("touched") or ())
