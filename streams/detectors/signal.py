"""The record a detector emits when it finds a change.

Example:
    >>> s = DriftSignal("adwin", position=1023, value=1.0, statistic=0.21, window_size=96,
    ...                 statistics={"width": 96.0, "estimation": 0.21, "variance": 0.17})
    >>> s.position, s.statistic, s.statistics["width"]
    (1023, 0.21, 96.0)
    >>> s.as_dict()["detector"]
    'adwin'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DriftSignal:
    """One alarm of one detector on one stream.

    The optional fields are the common projection the ``drift`` documents and
    alerts use; ``statistics`` holds everything the River detector exposes. All
    numbers are in the units the River detector saw: standard deviations when
    the detector standardizes.

    Parameters
    ----------
    detector
        The registered name of the detector (``"adwin"``, ``"page_hinkley"``, ``"kswin"``).
    position
        Index, in the detector's input stream, of the value whose update raised
        the alarm (0-based; the first value a detector receives is position 0).
    value
        That value, as received (before any standardization).
    statistic
        The detector's test statistic: ADWIN's mean of the window kept after the
        cut (``estimation``); Page-Hinkley's cumulative sum that crossed the
        threshold; ``None`` for KSWIN (River keeps only the p-value).
    threshold
        What the statistic was compared with: Page-Hinkley's ``threshold``,
        KSWIN's ``alpha``; ``None`` for ADWIN (its bound moves with the window).
    p_value
        KSWIN's Kolmogorov-Smirnov p-value; ``None`` otherwise.
    window_size
        Values behind the statistic: ADWIN's window width after the cut,
        Page-Hinkley's values since its last reset, KSWIN's window size.
    statistics
        All of the River detector's statistics by name: ADWIN ``width``,
        ``estimation``, ``variance``; Page-Hinkley ``mean``, ``increase``,
        ``decrease``, ``n``; KSWIN ``p_value``.

    """

    detector: str
    position: int
    value: float
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    window_size: int | None = None
    statistics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A plain dictionary, ready for JSON or an Elasticsearch document."""
        return asdict(self)
