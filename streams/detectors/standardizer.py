"""Put a numeric stream in units of its own standard deviation.

Page-Hinkley's threshold and ADWIN's bound are in the units of their input, so
the same parameters cannot suit a feature whose standard deviation is 0.01 and a
latency measured in milliseconds. Driftline therefore feeds numeric streams
(feature values, predicted scores, latencies) to its detectors as

    z = clip((x - mean) / std, -clip, +clip)

where ``mean`` and ``std`` come from the training baseline when one is known, or
else from the stream's first ``warmup`` values. They are then frozen: the
standardizer is part of the detector's state (pickled with it), so a restarted
worker transforms the next value exactly as the last one did.

Why clip, and why at 5 standard deviations: on stable lognormal latencies with
σ_log = 1, the heavy right tail made Page-Hinkley (δ 0.25, λ 30) and ADWIN
(δ 0.002) raise 17–27 false alarms per million events; clipping at ±5 brought
both to 0 in 2 million, and changed nothing measurable on Gaussian streams
(same false alarms, same delays). See
``benchmarks/detector_false_alarms.py``.

Example:
    >>> st = Standardizer(warmup=4)
    >>> for x in [9.0, 11.0, 10.0, 10.0]:
    ...     _ = st.update(x)
    >>> st.is_ready, st.mean, round(st.std, 4)
    (True, 10.0, 0.8165)
    >>> round(st.transform(11.0), 4), st.transform(1e9)
    (1.2247, 5.0)

References
----------
[^1]: River's ``stats.Var`` (Welford's online algorithm) computes the warm-up
mean and variance.

"""

from __future__ import annotations

import math
from typing import Self

from river import stats

from .errors import DetectorError


class Standardizer:
    """Standardize with a baseline's or a warm-up window's mean and std, then clip.

    Parameters
    ----------
    mean
        The baseline mean. Give it together with ``std`` to skip the warm-up.
    std
        The baseline standard deviation (> 0).
    warmup
        Without a baseline, how many first values estimate the mean and the
        standard deviation (sample std, ddof=1). Those values only warm up the
        standardizer: they are not passed on to the detector.
    clip
        Clip standardized values to ``[-clip, clip]``; ``None`` disables it.
    min_std
        Floor on the standard deviation, so a stream that was constant during
        the warm-up still yields finite values (any later change then
        saturates at ``±clip``).

    Examples
    --------
    >>> Standardizer(mean=5.0, std=0.01).transform(5.01)
    0.9999999999999787

    """

    def __init__(
        self,
        mean: float | None = None,
        std: float | None = None,
        warmup: int = 1000,
        clip: float | None = 5.0,
        min_std: float = 1e-12,
    ) -> None:
        if (mean is None) != (std is None):
            raise DetectorError("give both the baseline mean and std, or neither (then the warm-up estimates them)")
        if std is not None and not (math.isfinite(std) and std > 0):
            raise DetectorError(f"baseline std must be a finite number > 0, got {std!r}")
        if mean is not None and not math.isfinite(mean):
            raise DetectorError(f"baseline mean must be finite, got {mean!r}")
        if mean is None and warmup < 2:
            raise DetectorError(f"warmup must be at least 2 values to estimate a standard deviation, got {warmup}")
        if clip is not None and not clip > 0:
            raise DetectorError(f"clip must be > 0 or None, got {clip!r}")
        if not min_std > 0:
            raise DetectorError(f"min_std must be > 0, got {min_std!r}")
        self.warmup = warmup
        self.clip = None if clip is None else float(clip)
        self.min_std = min_std
        self._var = stats.Var(ddof=1)
        self._mean = mean
        self._std = None if std is None else max(std, min_std)

    @property
    def is_ready(self) -> bool:
        """Whether the mean and std are known (baseline given or warm-up complete)."""
        return self._std is not None

    @property
    def mean(self) -> float | None:
        """The frozen mean, or ``None`` during the warm-up."""
        return self._mean

    @property
    def std(self) -> float | None:
        """The frozen standard deviation (floored at ``min_std``), or ``None`` during the warm-up."""
        return self._std

    @property
    def n_seen(self) -> int:
        """How many warm-up values have been seen."""
        return int(self._var.mean.n)

    def update(self, x: float) -> Self:
        """Learn from one warm-up value; a no-op once the mean and std are frozen."""
        if self._std is None:
            self._var.update(x)
            if self._var.mean.n >= self.warmup:
                self._mean = self._var.mean.get()
                self._std = max(math.sqrt(self._var.get()), self.min_std)
        return self

    def transform(self, x: float) -> float:
        """``clip((x - mean) / std)``; only valid once :attr:`is_ready`."""
        if self._std is None:
            raise DetectorError("the standardizer is still warming up")
        z = (x - self._mean) / self._std
        c = self.clip
        if c is not None:
            if z > c:
                return c
            if z < -c:
                return -c
        return z

    def __repr__(self) -> str:
        if self._std is None:
            return f"Standardizer(warmup={self.warmup}, seen={self.n_seen}, clip={self.clip})"
        return f"Standardizer(mean={self._mean!r}, std={self._std!r}, clip={self.clip})"
