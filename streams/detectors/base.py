"""What every driftline detector shares: position, standardization, sampling, batches.

A :class:`StreamDetector` wraps one River drift detector. It does not change how
River detects: it decides *which* values River sees and *how* they are scaled,
then reads River's own ``drift_detected`` after every update. The value at
stream position ``p`` (0-based, counting every value given to the detector) is

1. used to warm up the :class:`~.standardizer.Standardizer` while it has no
   mean/std yet, and not passed on;
2. otherwise standardized (when there is a standardizer);
3. passed to River's ``update`` only if ``p % sample_every == 0``.

So fed the same sequence, the alarms are exactly those of the same River
detector run offline over ``[z(x_p) for p, x_p in enumerate(xs) if p >= warm-up
end and p % sample_every == 0]`` — the property ``tests/unit/test_detectors.py``
checks against River directly.

The whole object (River detector, standardizer and position included) pickles,
so a checkpoint taken between two batches lets a restarted worker continue with
the same alarms; :attr:`StreamDetector.position` says which values it covers,
and :meth:`StreamDetector.update_many` skips values a replay delivers again.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Self

from pydantic import ConfigDict, ValidationError, validate_call
from river.base import DriftDetector

from .errors import DetectorError, InvalidValueError, PositionGapError
from .signal import DriftSignal
from .standardizer import Standardizer


def _is_finite_number(x: object) -> bool:
    try:
        return math.isfinite(x)  # type: ignore[arg-type]
    except TypeError:
        return False


def validated_parameters(init: Callable[..., None]) -> Callable[..., None]:
    """Check a constructor's arguments against its annotations (pydantic).

    A wrong name, type or range raises :class:`~.errors.DetectorError` naming
    each bad parameter.
    """
    checked = validate_call(config=ConfigDict(arbitrary_types_allowed=True))(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            checked(self, *args, **kwargs)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise DetectorError(f"invalid parameters for {type(self).__name__}: {problems}") from None

    return wrapper


class StreamDetector(abc.ABC):
    """Base class: one River detector over one per-key stream.

    Subclasses set :attr:`name`, store their River parameters under their own
    names, call ``super().__init__(standardizer, sample_every)`` last, and
    implement :meth:`_build` (make the River detector) and :meth:`_alarm`
    (the :class:`~.signal.DriftSignal` for an alarm, with River's statistics).

    Parameters
    ----------
    standardizer
        Scales values before River sees them; ``None`` passes them unchanged.
    sample_every
        Feed River only the values whose position is a multiple of this.

    """

    #: The registered name, written into every :class:`DriftSignal`.
    name: ClassVar[str]

    def __init__(self, standardizer: Standardizer | None = None, sample_every: int = 1) -> None:
        if sample_every < 1:
            raise DetectorError(f"sample_every must be >= 1, got {sample_every}")
        self.standardizer = standardizer
        self.sample_every = sample_every
        self._position = 0
        self._signal: DriftSignal | None = None
        self._detector = self._build()

    # -- what subclasses provide -------------------------------------------

    @abc.abstractmethod
    def _build(self) -> DriftDetector:
        """A fresh River detector with this detector's parameters."""

    @abc.abstractmethod
    def _alarm(self, position: int, value: float) -> DriftSignal:
        """The signal for an alarm just raised, with the River detector's statistics."""

    # -- results -------------------------------------------------------------

    @property
    def position(self) -> int:
        """How many values have been applied; the position the next value will have."""
        return self._position

    @property
    def drift_detected(self) -> bool:
        """Whether the last value applied raised an alarm."""
        return self._signal is not None

    @property
    def signal(self) -> DriftSignal | None:
        """The alarm raised by the last value applied, if any."""
        return self._signal

    @property
    def river_detector(self) -> DriftDetector:
        """The wrapped River detector (read it, do not update it directly)."""
        return self._detector

    # -- updates -------------------------------------------------------------

    def update(self, x: float) -> Self:
        """Apply one value at the next position."""
        self.update_many((x,))
        return self

    def update_many(self, values: Iterable[float], start_position: int | None = None) -> list[DriftSignal]:
        """Apply a batch of consecutive values and return the alarms it raised.

        ``values[i]`` is the value at position ``start_position + i``
        (``start_position`` defaults to :attr:`position`, i.e. "append").
        Values whose position was already applied are skipped, so an
        at-least-once replay of a batch does not update the detector twice. A
        batch that starts after :attr:`position` raises
        :class:`~.errors.PositionGapError`; a value that is not a finite number
        raises :class:`~.errors.InvalidValueError`. Either way nothing of the
        batch is applied.

        Example:
            >>> from driftline.streams.detectors import ADWINDetector
            >>> det = ADWINDetector()
            >>> det.update_many([0, 0, 1], start_position=0)
            []
            >>> _ = det.update_many([0, 1, 0], start_position=1)  # replays 2, applies 1
            >>> det.position
            4
        """
        position = self._position
        if start_position is None:
            start_position = position
        if start_position > position:
            raise PositionGapError(expected=position, got=start_position)
        skip = position - start_position
        if isinstance(values, Sequence):
            batch = values[skip:] if skip else values
        elif hasattr(values, "tolist"):  # numpy arrays: plain floats are faster to feed
            batch = values.tolist()[skip:]
        else:
            batch = list(values)[skip:]
        try:
            finite = all(map(math.isfinite, batch))
        except TypeError:
            finite = False
        if not finite:
            for i, x in enumerate(batch):
                if not _is_finite_number(x):
                    raise InvalidValueError(position + i, x)
        if not batch:
            return []
        return self._apply(batch)

    def _apply(self, batch: Sequence[float]) -> list[DriftSignal]:
        position = self._position
        end = position + len(batch)
        i = 0
        standardizer = self.standardizer
        if standardizer is not None:
            n = len(batch)
            while i < n and not standardizer.is_ready:
                standardizer.update(float(batch[i]))
                i += 1
            position += i
            mean, std, clip = standardizer.mean, standardizer.std, standardizer.clip
        every = self.sample_every
        if every > 1 and position % every:
            i += every - position % every  # skip to the next sampled position
        detector = self._detector
        feed = detector.update
        signals: list[DriftSignal] = []
        last_alarm = -1
        for x in batch[i::every] if (i or every > 1) else batch:
            if standardizer is None:
                feed(float(x))
            else:
                z = (float(x) - mean) / std
                if clip is not None:
                    z = clip if z > clip else (-clip if z < -clip else z)
                feed(z)
            if detector.drift_detected:
                last_alarm = self._position + i
                signals.append(self._alarm(last_alarm, float(x)))
            i += every
        self._position = end
        self._signal = signals[-1] if signals and last_alarm == end - 1 else None
        return signals

    # -- presentation ----------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        params = {**self._params(), "standardizer": self.standardizer, "sample_every": self.sample_every}
        body = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({body}, position={self._position})"
