"""Drift events become alerts: one drift gives one alert, not thousands.

A detector that fires produces a :class:`DriftEvent`: which detector, what
kind of drift, on which monitored stream of which model, version and slice,
where in the stream and when (event time). Every drift event is indexed
(its :meth:`DriftEvent.document` goes to the ``drift`` stream), but only some
become an :class:`Alert`: :class:`AlertPolicy` gives each alert a severity by
drift kind and keeps a cooldown per *alert key* (model, version, monitored
stream, slice). A drift event within the cooldown of the key's last alert is
suppressed; the first one at or after its end raises a new alert.

Everything here is pure: no clock, no I/O. Time is the drift event's own
event time, so replaying a topic gives the same decisions as the first run.

Cooldown state lives in a mutable mapping passed to
:meth:`AlertPolicy.consider` (a ``dict`` in tests, a Faust ``Table`` in the
worker, so it survives restarts through the table's changelog). The policy
only calls ``store.get(key)`` and ``store[key] = value``, and every value is a
small JSON object. For a Faust table, the drift events must reach the agent
keyed so that all events of one alert key land in the same partition (key the
topic by :attr:`DriftEvent.alert_key`, or by something coarser such as the
model name).

Replays (at-least-once delivery) are safe: ids are deterministic
(:attr:`DriftEvent.id` hashes model, version, slice, stream, feature,
detector and position; :attr:`Alert.id` derives from it), and considering the
drift event that raised the key's last alert again returns the *same* alert,
counted as ``replayed``, not as a new alert. Returning it (rather than None)
lets a worker that crashed between saving the state and sending the alert
send it on replay; Elasticsearch (same ``_id``) and the webhook receiver
(``Idempotency-Key``) see one alert. A replayed event that was suppressed is
suppressed again.

Defaults (:data:`DEFAULT_SEVERITIES`, :data:`DEFAULT_COOLDOWN_S`):

=============  ==========  =====================================================
drift kind     severity    why
=============  ==========  =====================================================
``concept``    critical    the model's errors changed: predictions got worse
``label``      high        the ground truth's distribution moved (prior shift)
``data``       warning     inputs moved; the model may or may not suffer
``prediction`` warning     outputs moved; often follows data drift
``latency``    warning     serving got slower
``quality``    warning     missing, invalid or out-of-range inputs
=============  ==========  =====================================================

Cooldown: one hour of event time per alert key.

Example:
    >>> policy = AlertPolicy(cooldown_s=3600)
    >>> store = {}
    >>> first = DriftEvent("adwin", "concept", "error", "fraud", "3", position=1200,
    ...                    event_time_ms=1_790_000_000_000, slice={"region": "eu"}, statistic=0.12)
    >>> alert = policy.consider(first, store)
    >>> alert.severity, alert.id == "alert-" + first.id
    (<Severity.CRITICAL: 'critical'>, True)
    >>> ten_minutes_later = DriftEvent("adwin", "concept", "error", "fraud", "3", position=1900,
    ...                                event_time_ms=1_790_000_600_000, slice={"region": "eu"})
    >>> policy.consider(ten_minutes_later, store) is None
    True
    >>> policy.consider(first, store).id == alert.id  # a replay: same alert, not a new one
    True
    >>> policy.counts
    AlertCounts(raised=1, suppressed=1, replayed=1)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from driftline.connectors.elasticsearch.indices import event_time

__all__ = [
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_SEVERITIES",
    "Alert",
    "AlertCounts",
    "AlertPolicy",
    "DriftEvent",
    "DriftKind",
    "Severity",
    "iso_utc",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class DriftKind(StrEnum):
    """What drifted: the model's errors (concept), its inputs, outputs, labels, latency or input quality."""

    CONCEPT = "concept"
    DATA = "data"
    PREDICTION = "prediction"
    LABEL = "label"
    LATENCY = "latency"
    QUALITY = "quality"


class Severity(StrEnum):
    """How urgent an alert is, most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


#: Severity of an alert by the kind of drift that raised it.
DEFAULT_SEVERITIES: Mapping[DriftKind, Severity] = MappingProxyType(
    {
        DriftKind.CONCEPT: Severity.CRITICAL,
        DriftKind.LABEL: Severity.HIGH,
        DriftKind.DATA: Severity.WARNING,
        DriftKind.PREDICTION: Severity.WARNING,
        DriftKind.LATENCY: Severity.WARNING,
        DriftKind.QUALITY: Severity.WARNING,
    }
)
#: One hour of event time between two alerts of the same key.
DEFAULT_COOLDOWN_S = 3600.0


def iso_utc(epoch_ms: int) -> str:
    """ISO-8601 UTC text of an epoch-milliseconds time, exact to the millisecond.

    Example:
        >>> iso_utc(1_790_000_000_123)
        '2026-09-21T14:13:20.123Z'
    """
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _digest(*parts: str) -> str:
    """32 hex digits of BLAKE2b over length-prefixed parts (no separator ambiguity)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class DriftEvent:
    """One drift found by one detector at one point of a monitored stream.

    Parameters
    ----------
    detector
        The detector's name: ``adwin``, ``page_hinkley``, ``kswin``, ``psi``, ``ks`` ...
    kind
        A :class:`DriftKind` (or its value, ``"concept"`` ...).
    stream
        The monitored series: ``error``, ``latency``, a feature name ...
    model_name, model_version
        The model the stream belongs to.
    position
        Index of the observation in the detector's stream where drift was found.
    event_time_ms
        Event time of that observation, epoch milliseconds (never processing time).
    feature
        The input feature, for data and quality drift; None otherwise.
    slice
        Slice attributes (``{"region": "eu"}``), possibly empty; values are
        kept as text (they are ``labels.*`` keywords), None values are dropped.
    statistic, threshold, p_value, window_size, baseline, parameters
        What the detector measured, optional; numbers must be finite.

    Raises ``ValueError`` on an unknown kind, empty names, a negative position
    or time, or a non-finite statistic.

    Example:
        >>> e = DriftEvent("ks", "data", "age", "churn", "7", position=5000, event_time_ms=0,
        ...                feature="age", slice={"tier": 2}, statistic=0.31, p_value=0.001)
        >>> e.kind, e.slice, len(e.id)
        (<DriftKind.DATA: 'data'>, {'tier': '2'}, 32)
        >>> e.alert_key
        '["churn","7","age",{"tier":"2"}]'
    """

    detector: str
    kind: DriftKind
    stream: str
    model_name: str
    model_version: str
    position: int
    event_time_ms: int
    feature: str | None = None
    slice: Mapping[str, str] = field(default_factory=dict)
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    window_size: int | None = None
    baseline: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DriftKind(self.kind))
        for name in ("detector", "stream", "model_name", "model_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, not {value!r}")
        for name in ("position", "event_time_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
        for name in ("statistic", "threshold", "p_value"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, not {value!r}")
        labels = {str(k): _label_text(v) for k, v in sorted(self.slice.items(), key=lambda kv: str(kv[0])) if v is not None}
        object.__setattr__(self, "slice", labels)
        object.__setattr__(self, "parameters", dict(self.parameters))

    def __hash__(self) -> int:
        return hash(self.id)  # equal events have equal ids; the dict fields are not hashable

    @property
    def id(self) -> str:
        """Deterministic id: a hash of model, version, slice, stream, feature, detector and position."""
        return _digest(
            self.model_name,
            self.model_version,
            self._slice_text(),
            self.stream,
            self.feature or "",
            self.detector,
            str(self.position),
        )

    @property
    def alert_key(self) -> str:
        """The cooldown key: model, version, monitored stream and slice, as compact JSON."""
        return json.dumps(
            [self.model_name, self.model_version, self.stream, self.slice], separators=(",", ":"), ensure_ascii=False
        )

    def describe(self) -> str:
        """One line for people.

        Example:
            >>> DriftEvent("adwin", "concept", "error", "fraud", "3", 1200, 0, statistic=0.12).describe()
            'concept drift on error of fraud 3 (all traffic): adwin at position 1200 (statistic=0.12)'
            >>> DriftEvent("psi", "data", "feature.age", "fraud", "3", 5, 300_000, feature="age", statistic=0.3,
            ...            window_size=1200, parameters={"window_ms": 60_000}).describe()
            'data drift on feature.age/age of fraud 3 (all traffic): psi in the 60 s window from 1970-01-01T00:05:00.000Z, 1200 values (statistic=0.3)'
        """
        where = self.stream if self.feature in (None, self.stream) else f"{self.stream}/{self.feature}"
        scope = ", ".join(f"{k}={v}" for k, v in self.slice.items()) or "all traffic"
        measured = ", ".join(
            f"{name}={value:g}"
            for name, value in (("statistic", self.statistic), ("threshold", self.threshold), ("p_value", self.p_value))
            if value is not None
        )
        text = f"{self.kind} drift on {where} of {self.model_name} {self.model_version} ({scope}): "
        window_ms = self.parameters.get("window_ms")
        if window_ms:  # a window comparison: its position is the window's number, say when instead
            text += f"{self.detector} in the {window_ms / 1000:g} s window from {iso_utc(self.event_time_ms)}"
            if self.window_size is not None:
                text += f", {self.window_size} values"
        else:
            text += f"{self.detector} at position {self.position}"
        return f"{text} ({measured})" if measured else text

    def document(self) -> dict[str, Any]:
        """The Elasticsearch document of the ``drift`` stream (index it with ``doc_id=self.id``).

        Example:
            >>> doc = DriftEvent("page_hinkley", "latency", "latency", "fraud", "3", 10, 1_790_000_000_000).document()
            >>> doc["@timestamp"], doc["drift"]["kind"], doc["model"]
            ('2026-09-21T14:13:20.000Z', 'latency', {'name': 'fraud', 'version': '3'})
        """
        drift: dict[str, Any] = {
            "detector": self.detector,
            "kind": str(self.kind),
            "stream": self.stream,
            "position": self.position,
            "detected": True,
        }
        optional = {
            "feature": self.feature,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "window_size": self.window_size,
            "baseline": self.baseline,
        }
        drift.update({name: value for name, value in optional.items() if value is not None})
        if self.parameters:
            drift["parameters"] = dict(self.parameters)
        return {
            "@timestamp": iso_utc(self.event_time_ms),
            "event": {"id": self.id, "kind": "event", "dataset": "driftline.drift"},
            "model": {"name": self.model_name, "version": self.model_version},
            "labels": dict(self.slice),
            "drift": drift,
            "message": self.describe(),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DriftEvent:
        """Rebuild a drift event from its :meth:`document` (or from an alert's document).

        Example:
            >>> e = DriftEvent("kswin", "data", "income", "churn", "7", 42, 1_790_000_000_001, slice={"tier": "gold"})
            >>> DriftEvent.from_document(e.document()) == e
            True
        """
        drift = document["drift"]
        moment = event_time(document)
        return cls(
            detector=drift["detector"],
            kind=drift["kind"],
            stream=drift["stream"],
            model_name=document["model"]["name"],
            model_version=document["model"]["version"],
            position=drift["position"],
            event_time_ms=(moment - _EPOCH) // timedelta(milliseconds=1),
            feature=drift.get("feature"),
            slice=document.get("labels") or {},
            statistic=drift.get("statistic"),
            threshold=drift.get("threshold"),
            p_value=drift.get("p_value"),
            window_size=drift.get("window_size"),
            baseline=drift.get("baseline"),
            parameters=drift.get("parameters") or {},
        )

    def _slice_text(self) -> str:
        return json.dumps(self.slice, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Alert:
    """An alert raised by one drift event.

    Its id derives from the drift event's id, and its cooldown ends
    ``cooldown_s`` after the drift's event time, so the same drift always
    gives the same alert.

    Example:
        >>> drift = DriftEvent("adwin", "concept", "error", "fraud", "3", 1200, 1_790_000_000_000)
        >>> alert = Alert(drift, Severity.CRITICAL, rule="concept_drift", cooldown_s=3600)
        >>> alert.document()["alert"]["cooldown_until"], alert.document()["alert"]["drift_event_id"] == drift.id
        ('2026-09-21T15:13:20.000Z', True)
    """

    drift: DriftEvent
    severity: Severity
    rule: str
    cooldown_s: float
    status: str = "active"

    @property
    def id(self) -> str:
        """``alert-`` and the drift event's id."""
        return f"alert-{self.drift.id}"

    @property
    def cooldown_until_ms(self) -> int:
        """Event time (epoch ms) until which later drift of the same key is suppressed."""
        return self.drift.event_time_ms + round(self.cooldown_s * 1000)

    @property
    def message(self) -> str:
        """One line for people: severity and the drift's description."""
        return f"[{self.severity}] {self.drift.describe()}"

    def document(self) -> dict[str, Any]:
        """The Elasticsearch document of the ``alerts`` stream: ``alert.*`` plus the drift's fields.

        This is also the alert's JSON payload on the alerts topic and webhook
        (see :meth:`to_json`). Index it with ``doc_id=self.id``.
        """
        doc = self.drift.document()
        doc["event"] = {"id": self.id, "kind": "alert", "dataset": "driftline.alerts"}
        doc["message"] = self.message
        doc["alert"] = {
            "id": self.id,
            "rule": self.rule,
            "severity": str(self.severity),
            "status": self.status,
            "message": self.message,
            "cooldown_s": float(self.cooldown_s),
            "cooldown_until": iso_utc(self.cooldown_until_ms),
            "drift_event_id": self.drift.id,
        }
        return doc

    def to_json(self) -> bytes:
        """The payload for the alerts Kafka topic and webhooks: :meth:`document` as compact UTF-8 JSON.

        Example:
            >>> drift = DriftEvent("adwin", "concept", "error", "fraud", "3", 1200, 1_790_000_000_000)
            >>> alert = Alert(drift, Severity.CRITICAL, rule="concept_drift", cooldown_s=60)
            >>> json.loads(alert.to_json()) == alert.document()
            True
        """
        return json.dumps(self.document(), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclass
class AlertCounts:
    """What a policy decided since it was created (in memory; the store holds the state)."""

    raised: int = 0
    suppressed: int = 0
    replayed: int = 0


class AlertPolicy:
    """Decides which drift events raise an alert, and how severe it is.

    Parameters
    ----------
    cooldown_s
        Seconds of *event time* after an alert during which further drift of
        the same alert key (model, version, stream, slice) is suppressed.
    severities
        Severity per drift kind, merged over :data:`DEFAULT_SEVERITIES`
        (keys and values may be given as text: ``{"data": "high"}``).

    The rule name of an alert is ``<kind>_drift``. The state kept per key in
    the store is ``{"alert_id", "drift_event_id", "raised_at_ms",
    "cooldown_until_ms", "severity"}`` of the key's last alert.

    A drift event older than the key's last alert (out of order) falls inside
    that alert's cooldown and is suppressed, unless it is the very event that
    raised it (a replay). Only the last alert is remembered: replaying events
    from before it gives no alert (they were sent before the state moved on).

    Example:
        >>> policy = AlertPolicy(cooldown_s=60, severities={"data": "high"})
        >>> policy.severity_of("data"), policy.severity_of("latency")
        (<Severity.HIGH: 'high'>, <Severity.WARNING: 'warning'>)
        >>> store = {}
        >>> e = lambda pos, t: DriftEvent("psi", "data", "age", "churn", "7", pos, t)
        >>> [policy.consider(e(p, t), store) is not None for p, t in [(1, 0), (2, 59_999), (3, 60_000)]]
        [True, False, True]
        >>> sorted(store[e(3, 60_000).alert_key])
        ['alert_id', 'cooldown_until_ms', 'drift_event_id', 'raised_at_ms', 'severity']
    """

    def __init__(
        self,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        severities: Mapping[DriftKind | str, Severity | str] | None = None,
    ) -> None:
        if not math.isfinite(cooldown_s) or cooldown_s < 0:
            raise ValueError(f"cooldown_s must be finite and >= 0, not {cooldown_s!r}")
        self.cooldown_s = float(cooldown_s)
        merged = dict(DEFAULT_SEVERITIES)
        merged.update({DriftKind(k): Severity(v) for k, v in (severities or {}).items()})
        self.severities: Mapping[DriftKind, Severity] = MappingProxyType(merged)
        self.counts = AlertCounts()

    def severity_of(self, kind: DriftKind | str) -> Severity:
        """The severity of an alert raised by drift of ``kind``."""
        return self.severities[DriftKind(kind)]

    def alert_for(self, drift: DriftEvent) -> Alert:
        """The alert this policy gives ``drift`` if it is not suppressed (no state involved)."""
        return Alert(drift, self.severity_of(drift.kind), rule=f"{drift.kind}_drift", cooldown_s=self.cooldown_s)

    def consider(self, drift: DriftEvent, store: MutableMapping[str, Any]) -> Alert | None:
        """The alert ``drift`` raises, or None if it falls in its key's cooldown.

        Updates ``store`` (only ``get`` and item assignment) when an alert is
        raised; a replay of the event that raised the key's last alert returns
        that alert again and leaves the store as it is.
        """
        key = drift.alert_key
        last = store.get(key)
        if isinstance(last, Mapping):
            if last.get("drift_event_id") == drift.id:
                self.counts.replayed += 1
                return self.alert_for(drift)
            until = last.get("cooldown_until_ms")
            if isinstance(until, int) and drift.event_time_ms < until:
                self.counts.suppressed += 1
                return None
        alert = self.alert_for(drift)
        store[key] = {
            "alert_id": alert.id,
            "drift_event_id": drift.id,
            "raised_at_ms": drift.event_time_ms,
            "cooldown_until_ms": alert.cooldown_until_ms,
            "severity": str(alert.severity),
        }
        self.counts.raised += 1
        return alert
