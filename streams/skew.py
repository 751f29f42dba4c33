"""Schema skew: does one serving event look the way the training baseline's schema says it must?

Training/serving skew of the kind TFDV's ``validate_statistics`` reports,
checked per event: :class:`SkewValidator` reads only ``Baseline.schema`` (the
editable part: widen a range or add a category there, and the check follows),
never the statistics. Every problem is an :class:`Anomaly` (feature, kind,
the value as text, what was expected as text):

======================  ======================================================================
kind                    when
======================  ======================================================================
``type_mismatch``       the feature arrives in another map than its type's: a string
                        (``features.categorical``) where a number was trained, a number
                        where a string was, a boolean where a number was ...; or a number
                        with a fraction for an ``integral`` feature (``expected`` is then
                        ``integral``)
``unknown_category``    a categorical value outside the schema's ``domain``
``out_of_range``        a number outside ``[min, max]`` (inclusive; a missing bound is open)
``missing_required``    a ``required`` feature absent from the event (value ``absent``) or
                        sent as null, i.e. listed in ``features.missing`` (value ``null``)
``unexpected_feature``  a feature the schema does not know; *off by default*
======================  ======================================================================

Why ``unexpected_feature`` is off by default: producers routinely log
context the model never trained on (ids, experiment flags, debug values), and
this check runs per event: one extra field would write one anomaly document
per prediction. Turn it on (``report_unexpected=True``) to catch renamed
features; a renamed *required* feature already shows up as ``missing_required``.

Where each schema type lives in the canonical event: ``numeric`` in
``features.numeric``; ``categorical`` and ``text`` in
``features.categorical``; ``boolean`` in ``features.boolean``. Vector features
(``features.vector``) have no schema type: a schema feature sent as a vector
is a ``type_mismatch``, other vectors are ignored (or unexpected).

This is the hot path: the constructor turns the schema into plain dicts and
sets once, and :meth:`SkewValidator.validate` does a few dict lookups per
feature of the event and per required feature (about 5 µs for an event of 20
features on one core).

:func:`anomaly_document` gives the Elasticsearch document of one anomaly with
a deterministic id (model, version, request id, feature, kind), so replays
overwrite; :class:`AnomalyCounts` counts anomalies per window by (feature,
kind), mergeable and JSON-serializable like the other window accumulators.

Example:
    >>> from driftline.baselines.model import Baseline, FeatureSchema
    >>> schema = {"amount": FeatureSchema("amount", "numeric", min=0.0, max=500.0),
    ...           "channel": FeatureSchema("channel", "categorical", domain=["app", "web"])}
    >>> validator = SkewValidator(Baseline("fraud-detector", "2026.11.1", schema, {}))
    >>> event = {"features": {"numeric": {"amount": 900.0}, "categorical": {"channel": "fax"}}}
    >>> for anomaly in validator.validate(event):
    ...     print(anomaly)
    Anomaly(feature='amount', kind=<AnomalyKind.OUT_OF_RANGE: 'out_of_range'>, value='900.0', expected='[0.0, 500.0]')
    Anomaly(feature='channel', kind=<AnomalyKind.UNKNOWN_CATEGORY: 'unknown_category'>, value='fax', expected='one of: app, web')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from driftline.baselines.model import Baseline
from driftline.connectors.elasticsearch.indices import document_id
from driftline.streams.alerts import iso_utc

__all__ = [
    "ANOMALY_DATASET",
    "ANOMALY_ID_FIELDS",
    "MAX_VALUE_CHARS",
    "OTHER",
    "Anomaly",
    "AnomalyCounts",
    "AnomalyKind",
    "SkewValidator",
    "anomaly_document",
]

#: ``event.dataset`` of anomaly documents.
ANOMALY_DATASET = "driftline.anomalies"
#: The fields whose values make an anomaly document's id.
ANOMALY_ID_FIELDS = ("model.name", "model.version", "request.id", "anomaly.feature", "anomaly.kind")
#: Longest value text kept in an anomaly (longer ones are cut, with ``…``).
MAX_VALUE_CHARS = 256
#: Features beyond :class:`AnomalyCounts`' ``max_features`` are counted under this name.
OTHER = "__other__"
#: Domains up to this size are listed in ``expected``; larger ones are summarized.
_LISTED_DOMAIN = 10
_EMPTY: Mapping[str, Any] = {}


class AnomalyKind(StrEnum):
    """What is wrong with a feature of a serving event."""

    TYPE_MISMATCH = "type_mismatch"
    UNKNOWN_CATEGORY = "unknown_category"
    OUT_OF_RANGE = "out_of_range"
    MISSING_REQUIRED = "missing_required"
    UNEXPECTED_FEATURE = "unexpected_feature"


class Anomaly(NamedTuple):
    """One schema anomaly of one feature of one event: the value and the expectation, as text.

    Example:
        >>> a = Anomaly("age", AnomalyKind.TYPE_MISMATCH, "41.5", "integral")
        >>> a.kind == "type_mismatch", a._asdict()["expected"]
        (True, 'integral')
    """

    feature: str
    kind: AnomalyKind
    value: str
    expected: str


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)):
        text = f"vector of {len(value)}"
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _range_text(low: float | None, high: float | None) -> str:
    if low is None:
        return f"<= {high!r}"
    if high is None:
        return f">= {low!r}"
    return f"[{low!r}, {high!r}]"


def _domain_text(domain: Sequence[str]) -> str:
    if len(domain) <= _LISTED_DOMAIN:
        return "one of: " + ", ".join(domain)
    return f"one of {len(domain)} values of the schema's domain"


class SkewValidator:
    """Checks serving events against one baseline's schema (see the module's table of kinds).

    Parameters
    ----------
    baseline
        The model version's baseline; only ``baseline.schema`` is read, once.
    report_unexpected
        Report features the schema does not know (``unexpected_feature``).

    Example:
        >>> from driftline.baselines.model import Baseline, FeatureSchema
        >>> schema = {"age": FeatureSchema("age", "numeric", integral=True),
        ...           "email_domain": FeatureSchema("email_domain", "categorical")}
        >>> validator = SkewValidator(Baseline("churn", "7", schema, {}), report_unexpected=True)
        >>> event = {"features": {"categorical": {"age": "forty"}, "numeric": {"email_domain": 3.0, "x": 1.0},
        ...                       "missing": []}}
        >>> [(a.feature, a.kind.value, a.expected) for a in validator.validate(event)]
        [('email_domain', 'type_mismatch', 'categorical'), ('x', 'unexpected_feature', 'not in the schema'), ('age', 'type_mismatch', 'numeric')]
    """

    def __init__(self, baseline: Baseline, *, report_unexpected: bool = False) -> None:
        self.model_name = baseline.model_name
        self.model_version = baseline.model_version
        self.report_unexpected = report_unexpected
        # numeric: name -> (low, high, integral, range text); open bounds are infinities
        self._numeric: dict[str, tuple[float, float, bool, str]] = {}
        # categorical and text: name -> (domain or None, domain text)
        self._strings: dict[str, tuple[frozenset[str] | None, str]] = {}
        self._boolean: frozenset[str]
        self._types: dict[str, str] = {}
        boolean = []
        for name, schema in sorted(baseline.schema.items()):
            self._types[name] = schema.type
            if schema.type == "numeric":
                low = -math.inf if schema.min is None else float(schema.min)
                high = math.inf if schema.max is None else float(schema.max)
                self._numeric[name] = (low, high, schema.integral, _range_text(schema.min, schema.max))
            elif schema.type in ("categorical", "text"):
                domain = None if schema.domain is None else frozenset(schema.domain)
                self._strings[name] = (domain, _domain_text(schema.domain or ()))
            else:
                boolean.append(name)
        self._boolean = frozenset(boolean)
        self._required: tuple[str, ...] = tuple(name for name, s in sorted(baseline.schema.items()) if s.required)

    def _elsewhere(self, name: str, value: Any, out: list[Anomaly]) -> None:
        """A feature found in a map that is not its type's: a type mismatch, or unknown to the schema."""
        trained = self._types.get(name)
        if trained is not None:
            out.append(Anomaly(name, AnomalyKind.TYPE_MISMATCH, _value_text(value), trained))
        elif self.report_unexpected:
            out.append(Anomaly(name, AnomalyKind.UNEXPECTED_FEATURE, _value_text(value), "not in the schema"))

    def validate(self, event: Mapping[str, Any]) -> list[Anomaly]:
        """The anomalies of one canonical serving event (empty when it matches the schema).

        Order: numeric, categorical, boolean and vector features as they appear
        in the event, then missing required features in name order.
        """
        features = event.get("features") or _EMPTY
        numeric = features.get("numeric") or _EMPTY
        categorical = features.get("categorical") or _EMPTY
        boolean = features.get("boolean") or _EMPTY
        vector = features.get("vector") or _EMPTY
        out: list[Anomaly] = []
        numeric_specs = self._numeric
        for name, value in numeric.items():
            spec = numeric_specs.get(name)
            if spec is None:
                self._elsewhere(name, value, out)
                continue
            low, high, integral, range_text = spec
            if integral and not float(value).is_integer():
                out.append(Anomaly(name, AnomalyKind.TYPE_MISMATCH, _value_text(value), "integral"))
            if value < low or value > high:
                out.append(Anomaly(name, AnomalyKind.OUT_OF_RANGE, _value_text(value), range_text))
        string_specs = self._strings
        for name, value in categorical.items():
            spec = string_specs.get(name)
            if spec is None:
                self._elsewhere(name, value, out)
            elif spec[0] is not None and value not in spec[0]:
                out.append(Anomaly(name, AnomalyKind.UNKNOWN_CATEGORY, _value_text(value), spec[1]))
        for name, value in boolean.items():
            if name not in self._boolean:
                self._elsewhere(name, value, out)
        for name, value in vector.items():
            self._elsewhere(name, value, out)
        for name in self._required:
            if name in numeric or name in categorical or name in boolean or name in vector:
                continue
            missing = features.get("missing") or ()
            out.append(Anomaly(name, AnomalyKind.MISSING_REQUIRED, "null" if name in missing else "absent",
                               "required"))
        return out


def anomaly_document(anomaly: Anomaly, model: str, version: str, event_time_ms: int, request_id: str,
                     slice: Mapping[str, Any] | None = None) -> dict[str, Any]:  # noqa: A002 - the domain's word
    """The Elasticsearch document of one anomaly of one event.

    ``@timestamp`` is the event's time; ``event.id`` is the document id to
    index with: a hash of model, version, request id, feature and kind
    (:data:`ANOMALY_ID_FIELDS`), the same on every replay. The slice goes to
    ``labels.*`` as text, as in drift documents.

    Example:
        >>> a = Anomaly("channel", AnomalyKind.UNKNOWN_CATEGORY, "fax", "one of: app, web")
        >>> doc = anomaly_document(a, "fraud-detector", "2026.11.1", 1_790_000_000_000, "r-1", {"region": "eu"})
        >>> doc["@timestamp"], doc["anomaly"]["kind"], doc["labels"], len(doc["event"]["id"])
        ('2026-09-21T14:13:20.000Z', 'unknown_category', {'region': 'eu'}, 32)
        >>> doc["event"]["id"] == anomaly_document(a, "fraud-detector", "2026.11.1", 0, "r-1")["event"]["id"]
        True
        >>> doc["message"]
        "unknown_category on channel of fraud-detector 2026.11.1: 'fax' (expected one of: app, web)"
    """
    if isinstance(event_time_ms, bool) or not isinstance(event_time_ms, int) or event_time_ms < 0:
        raise ValueError(f"event_time_ms must be an integer >= 0, not {event_time_ms!r}")
    kind = AnomalyKind(anomaly.kind)
    labels = {
        str(k): ("true" if v is True else "false" if v is False else str(v))
        for k, v in sorted((slice or {}).items(), key=lambda kv: str(kv[0]))
        if v is not None
    }
    document: dict[str, Any] = {
        "@timestamp": iso_utc(event_time_ms),
        "event": {"kind": "event", "dataset": ANOMALY_DATASET},
        "model": {"name": model, "version": version},
        "request": {"id": request_id},
        "labels": labels,
        "anomaly": {"feature": anomaly.feature, "kind": str(kind), "value": anomaly.value, "expected": anomaly.expected},
        "message": f"{kind} on {anomaly.feature} of {model} {version}: {anomaly.value!r} (expected {anomaly.expected})",
    }
    document["event"]["id"] = document_id(document, ANOMALY_ID_FIELDS)
    return document


class AnomalyCounts:
    """Anomalies of one window counted by (feature, kind), with the number of events checked.

    Mergeable and JSON-serializable like the window accumulators. At most
    ``max_features`` distinct features get their own counts (only unexpected
    features can be unbounded); later ones are counted under :data:`OTHER`.

    Example:
        >>> counts = AnomalyCounts()
        >>> _ = counts.update([Anomaly("age", AnomalyKind.OUT_OF_RANGE, "-1", ">= 0")]).update([])
        >>> counts.events, counts.anomalous, counts.counts
        (2, 1, {('age', 'out_of_range'): 1})
        >>> counts.rate("age", "out_of_range")
        0.5
        >>> import json
        >>> AnomalyCounts.from_json(json.loads(json.dumps(counts.to_json()))) == counts
        True
    """

    def __init__(self, max_features: int = 1000) -> None:
        if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
            raise ValueError(f"max_features must be an integer >= 1, not {max_features!r}")
        self.max_features = max_features
        self.events = 0
        self.anomalous = 0
        self.counts: dict[tuple[str, str], int] = {}
        self._features: set[str] = set()

    def _add(self, feature: str, kind: str, n: int) -> None:
        if feature not in self._features:
            if len(self._features) >= self.max_features:
                feature = OTHER
            self._features.add(feature)
        key = (feature, kind)
        self.counts[key] = self.counts.get(key, 0) + n

    def update(self, anomalies: Iterable[Anomaly]) -> AnomalyCounts:
        """Count one checked event and its anomalies."""
        self.events += 1
        found = False
        for anomaly in anomalies:
            found = True
            self._add(anomaly.feature, str(anomaly.kind), 1)
        self.anomalous += found
        return self

    def rate(self, feature: str, kind: AnomalyKind | str) -> float:
        """Share of the window's events with this anomaly (0 for an empty window)."""
        return self.counts.get((feature, str(kind)), 0) / self.events if self.events else 0.0

    def merge(self, other: AnomalyCounts) -> AnomalyCounts:
        """Add ``other`` into these counts; returns ``self``."""
        self.events += other.events
        self.anomalous += other.anomalous
        for (feature, kind), n in sorted(other.counts.items()):
            self._add(feature, kind, n)
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-serializable object (counts as ``[feature, kind, count]`` rows)."""
        return {
            "max_features": self.max_features,
            "events": self.events,
            "anomalous": self.anomalous,
            "counts": [[f, k, n] for (f, k), n in sorted(self.counts.items())],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AnomalyCounts:
        """Rebuild counts from :meth:`to_json`."""
        counts = cls(int(obj["max_features"]))
        counts.events, counts.anomalous = int(obj["events"]), int(obj["anomalous"])
        for feature, kind, n in obj["counts"]:
            counts.counts[(str(feature), str(kind))] = int(n)
            counts._features.add(str(feature))
        return counts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnomalyCounts) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AnomalyCounts(events={self.events}, anomalous={self.anomalous}, counts={len(self.counts)})"
