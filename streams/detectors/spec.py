"""Which detector watches which stream: a typed, validated specification.

A :class:`DetectorSpec` names a registered detector (``"adwin"``,
``"page_hinkley"``, ``"kswin"``), its River parameters, and how its input is
prepared (standardization, warm-up or baseline, sampling). :func:`build_detector`
turns it into a detector; :func:`default_spec` gives the measured default for
each kind of stream:

=============  =====================================  ==========================================
stream kind    what it carries                        default
=============  =====================================  ==========================================
``concept``    0/1 misclassification per prediction   ADWIN, ``delta=0.0001``, raw values
``data``       one feature's values                   Page-Hinkley (δ 0.25σ, λ 40σ), standardized
``prediction`` the predicted score (or class)         Page-Hinkley (δ 0.25σ, λ 40σ), standardized
``system``     latency                                Page-Hinkley (δ 0.25σ, λ 40σ), standardized
=============  =====================================  ==========================================

Measured (``benchmarks/detector_false_alarms.py --events 5000000 --seeds 4``):
no false alarm in 20 million stable events on any of Bernoulli(0.1) errors,
N(0, 1) and N(5, 0.01) features, Beta(2, 8) scores and lognormal latencies
(σ_log 0.5 and 1.0); every change found: a +1σ shift in a median of ~50 events
(90th percentile ~67) on each numeric stream, a 0.1 → 0.2 error-rate change in
~400 (~655).

Standardized means: the first 1,000 values (or a baseline's mean and std) fix
the mean and std, values are expressed in σ units and clipped at ±5σ; see
:mod:`.page_hinkley` and :mod:`.standardizer` for the measurements behind the
numbers. KSWIN is never a default: it costs ~0.5 ms per value fed, and cannot
see a 0.1 → 0.2 error-rate change on a 0/1 stream (see :mod:`.kswin`).

For the absolute errors of a regression model, standardize the concept stream:
``DetectorSpec(kind="adwin", standardize=True)``.

Example:
    >>> spec = default_spec("data")
    >>> spec.kind, spec.standardize, spec.warmup
    ('page_hinkley', True, 1000)
    >>> build_detector(spec)
    PageHinkleyDetector(min_instances=30, delta=0.25, threshold=40.0, alpha=1.0, mode='both', standardizer=Standardizer(warmup=1000, seen=0, clip=5.0), sample_every=1, position=0)
    >>> DetectorSpec(kind="kswin", params={"alpha": 1e-4}, sample_every=20).kind
    'kswin'
    >>> try:
    ...     DetectorSpec.from_config({"kind": "adwin", "params": {"threshold": 3}})
    ... except DetectorError as err:
    ...     print(err)
    invalid detector spec:
      unknown parameter(s) 'threshold' for detector 'adwin'; known: delta, clock, max_buckets, min_window_length, grace_period
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .adwin import ADWINDetector
from .base import StreamDetector
from .errors import DetectorError
from .kswin import KSWINDetector
from .page_hinkley import PageHinkleyDetector
from .standardizer import Standardizer

#: The registered detectors, by the name a spec (and a :class:`~.signal.DriftSignal`) uses.
DETECTORS: dict[str, type[StreamDetector]] = {
    cls.name: cls for cls in (ADWINDetector, PageHinkleyDetector, KSWINDetector)
}

StreamKind = Literal["concept", "data", "prediction", "system"]
STREAM_KINDS: tuple[str, ...] = get_args(StreamKind)

# Constructor arguments that are not River parameters: a spec sets them with its own fields.
_WRAPPER_ARGUMENTS = frozenset({"self", "standardizer", "sample_every"})


def detector_parameters(kind: str) -> dict[str, Any]:
    """The River parameters a detector kind accepts, with their defaults.

    Example:
        >>> detector_parameters("adwin")["delta"]
        0.0001
    """
    cls = _detector_class(kind)
    signature = inspect.signature(cls.__init__)
    return {name: p.default for name, p in signature.parameters.items() if name not in _WRAPPER_ARGUMENTS}


def _detector_class(kind: str) -> type[StreamDetector]:
    try:
        return DETECTORS[kind]
    except KeyError:
        raise DetectorError(f"unknown detector kind {kind!r}; known: {', '.join(sorted(DETECTORS))}") from None


class DetectorSpec(BaseModel):
    """How one stream is watched: which detector, with which parameters, on which values.

    Parameters
    ----------
    kind
        A registered detector: ``"adwin"``, ``"page_hinkley"`` or ``"kswin"``.
    params
        River parameters of that detector; the ones left out keep the
        detector's defaults (see :func:`detector_parameters`).
    standardize
        Standardize values (and clip them at ±``clip``) before the detector.
    warmup
        Without a baseline, how many first values fix the mean and std.
    baseline_mean, baseline_std
        The training baseline's mean and std; given, they replace the warm-up.
    clip
        Clip standardized values at ±``clip`` standard deviations (``None``: no clipping).
    sample_every
        Feed the detector every n-th value; ``None`` keeps the detector's
        default (1, or 10 for KSWIN).

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    standardize: bool = False
    warmup: int = Field(1000, ge=2)
    baseline_mean: float | None = None
    baseline_std: float | None = Field(None, gt=0)
    clip: float | None = Field(5.0, gt=0)
    sample_every: int | None = Field(None, ge=1)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DetectorSpec:
        """Validate a spec read from configuration; errors become one :class:`~.errors.DetectorError`.

        Example:
            >>> DetectorSpec.from_config({"kind": "page_hinkley", "standardize": True}).warmup
            1000
        """
        try:
            return cls.model_validate(config)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                message = err["msg"].removeprefix("Value error, ")
                lines.append(f"{where}: {message}" if where else message)
            raise DetectorError("invalid detector spec:\n  " + "\n  ".join(lines)) from None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        _detector_class(kind)
        return kind

    @model_validator(mode="after")
    def _consistent(self) -> DetectorSpec:
        unknown = sorted(set(self.params) - set(detector_parameters(self.kind)))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))} for detector {self.kind!r}; "
                f"known: {', '.join(detector_parameters(self.kind))}"
            )
        if (self.baseline_mean is None) != (self.baseline_std is None):
            raise ValueError("give both baseline_mean and baseline_std, or neither")
        if self.baseline_mean is not None and not self.standardize:
            raise ValueError("a baseline is only used to standardize: set standardize=True")
        build_detector(self)  # the detector checks its own parameter values
        return self


def build_detector(spec: DetectorSpec) -> StreamDetector:
    """A fresh detector as the spec describes it.

    Example:
        >>> det = build_detector(DetectorSpec(kind="adwin", params={"delta": 0.001}))
        >>> det.delta, det.position
        (0.001, 0)
    """
    cls = _detector_class(spec.kind)
    standardizer = None
    if spec.standardize:
        standardizer = Standardizer(mean=spec.baseline_mean, std=spec.baseline_std, warmup=spec.warmup, clip=spec.clip)
    extra: dict[str, Any] = {} if spec.sample_every is None else {"sample_every": spec.sample_every}
    return cls(**spec.params, standardizer=standardizer, **extra)


def default_spec(stream_kind: StreamKind) -> DetectorSpec:
    """The measured default detector for a kind of stream (see the table above).

    Example:
        >>> default_spec("concept")
        DetectorSpec(kind='adwin', params={}, standardize=False, warmup=1000, baseline_mean=None, baseline_std=None, clip=5.0, sample_every=None)
    """
    if stream_kind == "concept":
        return DetectorSpec(kind="adwin")
    if stream_kind in ("data", "prediction", "system"):
        return DetectorSpec(kind="page_hinkley", standardize=True, warmup=1000, clip=5.0)
    raise DetectorError(f"unknown stream kind {stream_kind!r}; known: {', '.join(STREAM_KINDS)}")
