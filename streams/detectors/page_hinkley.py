"""Page-Hinkley on a standardized per-key stream: driftline's default for numeric streams.

Defaults, and why
-----------------
``delta=0.25``, ``threshold=40``, ``alpha=1.0`` (no fading), ``min_instances=30``,
``mode="both"``, on values standardized by the baseline's or a 1,000-value
warm-up's mean and std and clipped at ±5 (see :mod:`.standardizer`). Both
``delta`` and ``threshold`` are then in standard deviations, so one setting
suits a feature with σ = 0.01 and a latency in milliseconds.

Measured with ``benchmarks/detector_false_alarms.py`` and the same code on
more events (River 0.26.1, i.i.d. synthetic streams):

- River's defaults (``delta=0.005``, ``threshold=50``, ``alpha=0.9999``) on raw
  values miss every 1σ shift of a feature whose σ is 0.01, and raise hundreds
  of false alarms per million stable N(0, 1) values: with ``delta`` near 0 the
  cumulative sum is a random walk, and with ``alpha < 1`` it becomes an AR(1)
  process with a standard deviation of ~70 that keeps crossing any threshold
  (50–76 false alarms per million with ``alpha=0.9999`` even at thresholds
  20–30, standardized). ``alpha=1.0`` makes the test the classic CUSUM.
- ``delta`` is the smallest shift (in σ) that accumulates: with 0.25 a 0.5σ
  shift is found in ~145 events; with 0.5 it takes ~450, and 1.0 misses half
  of the 1σ shifts.
- ``threshold`` 15 / 20 / 25 / 30 gave 75 / 6 / 1 / 0 false alarms per million
  stable N(0, 1) values, but 30 still gave 0.8 per million on lognormal
  latencies (σ_log = 0.5, skewed even after clipping). 40 gave none in 5
  million events on each of N(0, 1), Beta(2, 8) scores and lognormal latencies
  (σ_log 0.5 and 1.0), for a median delay of 49 events (90th percentile ~63)
  after a 1σ shift, against 37 (~47) at 30 and 66 (~78) at 50.

These figures are for independent values. Autocorrelated or seasonal streams
make cumulative sums wander further and alarm more often; raise ``threshold``
for them, or standardize with a baseline that includes their seasonality.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from river import drift

from .base import StreamDetector, validated_parameters
from .signal import DriftSignal
from .standardizer import Standardizer


class PageHinkleyDetector(StreamDetector):
    """The Page-Hinkley test (River's ``drift.PageHinkley``) over one stream.

    Page-Hinkley accumulates the deviations of each value from the running
    mean, minus ``delta``, and raises an alarm when the cumulative sum rises
    more than ``threshold`` above its minimum (or, for decreases, falls below
    its maximum). River resets it on the update after an alarm.

    The defaults assume standardized input (pass a
    :class:`~.standardizer.Standardizer`): ``delta`` and ``threshold`` are in
    standard deviations.

    Parameters
    ----------
    min_instances
        Values fed before any alarm.
    delta
        Magnitude of change tolerated (in the input's units).
    threshold
        Alarm threshold on the cumulative sum (lambda, in the input's units).
    alpha
        Forgetting factor of the cumulative sums; 1.0 disables forgetting.
    mode
        Look for increases (``"up"``), decreases (``"down"``) or both.
    standardizer
        Scales values before Page-Hinkley sees them.
    sample_every
        Feed Page-Hinkley only every ``sample_every``-th value (by position).

    Examples
    --------
    A feature with mean 5 and σ = 0.01 whose mean moves up by one σ at position
    3,000 (the first 1,000 values warm up the standardizer):

    >>> import random
    >>> rng = random.Random(42)
    >>> xs = [rng.gauss(5.0, 0.01) for _ in range(3000)]
    >>> xs += [rng.gauss(5.01, 0.01) for _ in range(3000)]

    >>> det = PageHinkleyDetector(standardizer=Standardizer(warmup=1000))
    >>> for i, x in enumerate(xs):
    ...     if det.update(x).drift_detected:
    ...         print(f"Change detected at position {i}")
    Change detected at position 3049

    References
    ----------
    [^1]: E. S. Page. "Continuous Inspection Schemes." Biometrika 41, 1/2 (1954), 100-115.
    [^2]: D. V. Hinkley. "Inference about the change-point from cumulative sum
    tests." Biometrika 58, 3 (1971), 509-523.

    """

    name = "page_hinkley"

    @validated_parameters
    def __init__(
        self,
        min_instances: Annotated[int, Field(ge=1)] = 30,
        delta: Annotated[float, Field(ge=0)] = 0.25,
        threshold: Annotated[float, Field(gt=0)] = 40.0,
        alpha: Annotated[float, Field(gt=0, le=1)] = 1.0,
        mode: Literal["up", "down", "both"] = "both",
        standardizer: Standardizer | None = None,
        sample_every: Annotated[int, Field(ge=1)] = 1,
    ) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        super().__init__(standardizer, sample_every)

    def _params(self) -> dict[str, Any]:
        return {
            "min_instances": self.min_instances,
            "delta": self.delta,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "mode": self.mode,
        }

    def _build(self) -> drift.PageHinkley:
        return drift.PageHinkley(**self._params())

    def _alarm(self, position: int, value: float) -> DriftSignal:
        # River keeps the test's sums as private attributes; these are what crossed the threshold.
        d = self._detector
        increase = float(d._sum_increase - d._min_increase)
        decrease = float(d._max_decrease - d._sum_decrease)
        n = int(d._x_mean.n)
        return DriftSignal(
            self.name,
            position,
            value,
            statistic=max(increase, decrease),
            threshold=float(self.threshold),
            window_size=n,
            statistics={"mean": float(d._x_mean.get()), "increase": increase, "decrease": decrease, "n": float(n)},
        )
