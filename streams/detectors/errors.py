"""The one exception family of the drift-detection core.

Every failure raised by :mod:`driftline.streams.detectors` is a
:class:`DetectorError` (a ``ValueError``) carrying the reason, so the stage that
drives the detectors can catch one type and turn it into a dead letter or a
log line.

Example:
    >>> err = PositionGapError(expected=10, got=12)
    >>> isinstance(err, DetectorError), err.expected, err.got
    (True, 10, 12)
    >>> print(err)
    batch starts at position 12 but the detector has applied 10 values: positions 10..11 are missing
"""

from __future__ import annotations


class DetectorError(ValueError):
    """A detector cannot be built or cannot apply its input; the message says why."""


class PositionGapError(DetectorError):
    """A batch starts after the detector's position: values in between were never applied.

    Replaying values already applied is fine (they are skipped); skipping values is
    not, because the alarms would no longer be those of the full sequence.
    """

    def __init__(self, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            f"batch starts at position {got} but the detector has applied {expected} values: "
            f"positions {expected}..{got - 1} are missing"
        )


class InvalidValueError(DetectorError):
    """A value is not a finite number; nothing of its batch was applied."""

    def __init__(self, position: int, value: object) -> None:
        self.position = position
        self.value = value
        super().__init__(f"value at position {position} is not a finite number: {value!r}")
