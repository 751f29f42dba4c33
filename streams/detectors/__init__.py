"""driftline's drift-detection core: River's detectors, prepared per stream.

Pure Python, no Kafka, Faust or Elasticsearch: the ``detect`` stage feeds these
classes batches of per-key values and stores them (they pickle) in its tables.

- :class:`ADWINDetector`, :class:`PageHinkleyDetector`, :class:`KSWINDetector`
  wrap River's ``drift.ADWIN``, ``drift.PageHinkley`` and ``drift.KSWIN``
  without changing how they detect: same input, same alarms.
- :class:`Standardizer` scales numeric streams to σ units (baseline or warm-up).
- :class:`DriftSignal` is the record of one alarm.
- :class:`DetectorSpec`, :func:`build_detector` and :func:`default_spec` choose a
  detector per stream from configuration; :data:`DETECTORS` is the registry.

Example:
    >>> import random
    >>> rng = random.Random(1)
    >>> det = build_detector(default_spec("concept"))
    >>> errors = [int(rng.random() < 0.1) for _ in range(4000)]
    >>> errors += [int(rng.random() < 0.2) for _ in range(4000)]
    >>> signals = det.update_many(errors[:5000], start_position=0)
    >>> signals += det.update_many(errors[4000:], start_position=4000)  # a replay overlaps
    >>> [(s.detector, s.position) for s in signals], det.position
    ([('adwin', 4447)], 8000)
"""

from .adwin import ADWINDetector
from .base import StreamDetector
from .errors import DetectorError, InvalidValueError, PositionGapError
from .kswin import KSWINDetector
from .page_hinkley import PageHinkleyDetector
from .signal import DriftSignal
from .spec import DETECTORS, STREAM_KINDS, DetectorSpec, StreamKind, build_detector, default_spec, detector_parameters
from .standardizer import Standardizer

__all__ = [
    "DETECTORS",
    "STREAM_KINDS",
    "ADWINDetector",
    "DetectorError",
    "DetectorSpec",
    "DriftSignal",
    "InvalidValueError",
    "KSWINDetector",
    "PageHinkleyDetector",
    "PositionGapError",
    "Standardizer",
    "StreamDetector",
    "StreamKind",
    "build_detector",
    "default_spec",
    "detector_parameters",
]
