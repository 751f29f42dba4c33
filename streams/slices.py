"""Slices: named subsets of a model's traffic, such as ``region=eu&weather=rain``.

A :class:`SliceSpec` is a conjunction of conditions on an event's attributes,
written as text and parsed once at start-up (:func:`parse_slices`):

=============================  ==================================================
text                           an event belongs to the slice when
=============================  ==================================================
``category=mens-dress-shoes``  the attribute's text equals the value
``weather=rain``               (booleans compare as ``true`` / ``false``; a
                               numeric attribute compares as a number: ``n=3``
                               matches ``3.0``)
``amount=[0,100)``             the attribute is a number in the range: ``[`` and
                               ``]`` include the bound, ``(`` and ``)`` exclude it
``amount=[100,)``              an empty bound is open-ended (``(,0)``: below 0)
``region=eu&weather=rain``     every condition holds (``&`` joins conditions)
=============================  ==================================================

An attribute is looked up, first found wins, in ``labels.*`` (the producer's
slice attributes), then ``features.categorical.*``, ``features.boolean.*`` and
``features.numeric.*``. An event without the attribute is not in the slice. A
label's text is read as a number for a range (``tier=[1,3]`` matches the
label ``"2"``). NaN is in no range.

Names and keys
--------------
A slice's :attr:`~SliceSpec.name` is its normalized text: conditions sorted by
attribute, numbers in their shortest form, no spaces (``weather=rain&region=eu``
and ``region = eu & weather = rain`` are both ``region=eu&weather=rain``), so the
same slice always has the same name. :data:`ALL` is the whole model: no
condition, name ``""`` and empty :attr:`~SliceSpec.labels`.

A slice's :attr:`~SliceSpec.labels` is the mapping from attribute to value text
(``{"region": "eu", "weather": "rain"}``, ``{"amount": "[0,100)"}``), which is
what :class:`~driftline.streams.detect.ModelKey` holds as its ``slice``. The
attribute pairs, rather than one ``{"slice": "<name>"}`` entry, because they
become ``labels.*`` in Elasticsearch, exactly as drift events and alerts of the
slice already carry them (:meth:`~driftline.streams.alerts.DriftEvent.document`):
one filter such as ``labels.region: eu`` finds the slice's metrics, drift and
alerts together, and ``ModelKey.encode`` gives ``fraud|v1|region=eu|weather=rain``,
the name's pairs. The name is still there for one-keyword grouping (the
metrics documents have ``slice.name``), and :meth:`SliceSpec.from_labels`
turns the labels back into the spec.

Values may not contain ``&`` or ``|`` (``|`` separates the parts of a model
key), attribute names not ``=``, ``&`` or ``|``; a value that starts with a
bracket is a range. Names are compared as given: the normalize stage replaces
dots in names with ``_``, so write ``a_b`` for a producer's ``a.b``.

Example:
    >>> specs = parse_slices(["weather=rain & region=eu", "amount=[0,100)"])
    >>> [s.name for s in specs]
    ['region=eu&weather=rain', 'amount=[0,100)']
    >>> event = {"labels": {"region": "eu"}, "features": {"categorical": {"weather": "rain"},
    ...          "numeric": {"amount": 250.0}}}
    >>> slice_names(event, specs)
    ['', 'region=eu&weather=rain']
    >>> specs[0].labels
    {'region': 'eu', 'weather': 'rain'}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL",
    "Equals",
    "Range",
    "SliceSpec",
    "attribute_value",
    "parse_slices",
    "slice_names",
    "slices_of",
]

_FEATURE_PARTS = ("categorical", "boolean", "numeric")
_FORBIDDEN_IN_NAME = ("=", "&", "|")
_FORBIDDEN_IN_VALUE = ("&", "|")


def attribute_value(document: Mapping[str, Any], name: str) -> Any:
    """The value of attribute ``name`` in a canonical document, or None.

    Looked up in ``labels``, then ``features.categorical``,
    ``features.boolean`` and ``features.numeric``; the first one that has the
    name wins.

    Example:
        >>> doc = {"labels": {"region": "eu"}, "features": {"boolean": {"vip": True}, "numeric": {"region": 1.0}}}
        >>> attribute_value(doc, "region"), attribute_value(doc, "vip"), attribute_value(doc, "age")
        ('eu', True, None)
    """
    labels = document.get("labels")
    if labels and name in labels:
        return labels[name]
    features = document.get("features")
    if features:
        for part in _FEATURE_PARTS:
            values = features.get(part)
            if values and name in values:
                return values[name]
    return None


def _number_text(value: float) -> str:
    """Shortest stable text of a finite number: ``100`` for 100.0, ``0.5``, ``1e+20``."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _as_number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Equals:
    """Condition ``attribute=value``: the attribute's text (or number) equals ``value``.

    Example:
        >>> Equals("vip", "true").holds(True), Equals("n", "3").holds(3.0), Equals("region", "eu").holds("us")
        (True, True, False)
    """

    attribute: str
    value: str

    @property
    def text(self) -> str:
        """The value part of the condition, as written in the slice's name."""
        return self.value

    def holds(self, value: Any) -> bool:
        """Whether an attribute value satisfies the condition (None never does)."""
        if isinstance(value, str):
            return value == self.value
        if isinstance(value, bool):
            return ("true" if value else "false") == self.value.lower()
        if isinstance(value, (int, float)):
            number = _as_number(self.value)
            return number is not None and float(value) == number
        return False


@dataclass(frozen=True, slots=True)
class Range:
    """Condition ``attribute=[low,high)``: the attribute is a number within the bounds.

    ``None`` bounds are open-ended; ``low_closed`` / ``high_closed`` say
    whether a finite bound is included.

    Example:
        >>> r = Range("amount", 0.0, 100.0, low_closed=True, high_closed=False)
        >>> r.text, r.holds(0), r.holds(100.0), r.holds("42"), r.holds(float("nan"))
        ('[0,100)', True, False, True, False)
    """

    attribute: str
    low: float | None
    high: float | None
    low_closed: bool = True
    high_closed: bool = False

    @property
    def text(self) -> str:
        """The value part of the condition, normalized: ``[0,100)``, ``(,0)``, ``[100,)``."""
        low = "" if self.low is None else _number_text(self.low)
        high = "" if self.high is None else _number_text(self.high)
        left = "[" if self.low_closed and self.low is not None else "("
        right = "]" if self.high_closed and self.high is not None else ")"
        return f"{left}{low},{high}{right}"

    def holds(self, value: Any) -> bool:
        """Whether an attribute value (a number, or a label's numeric text) is in the range."""
        number = _as_number(value)
        if number is None:
            return False
        if self.low is not None and (number < self.low or (number == self.low and not self.low_closed)):
            return False
        if self.high is not None and (number > self.high or (number == self.high and not self.high_closed)):
            return False
        return True


Condition = Equals | Range


@dataclass(frozen=True, slots=True)
class SliceSpec:
    """A slice: conditions that all hold for its events (none for :data:`ALL`).

    Build one with :meth:`parse` (or :func:`parse_slices`); conditions are kept
    sorted by attribute, one per attribute.

    Example:
        >>> spec = SliceSpec.parse("region=eu&amount=[0,100)")
        >>> spec.name, spec.labels
        ('amount=[0,100)&region=eu', {'amount': '[0,100)', 'region': 'eu'})
        >>> spec.matches({"labels": {"region": "eu"}, "features": {"numeric": {"amount": 12.5}}})
        True
        >>> SliceSpec.from_labels(spec.labels) == spec, ALL.name, ALL.matches({})
        (True, '', True)
    """

    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.conditions, key=lambda c: c.attribute))
        for first, second in zip(ordered, ordered[1:]):
            if first.attribute == second.attribute:
                raise ValueError(f"slice names attribute {first.attribute!r} twice; use one condition per attribute")
        object.__setattr__(self, "conditions", ordered)

    @property
    def name(self) -> str:
        """The normalized text: ``attribute=value`` pairs sorted by attribute, joined by ``&``; ``""`` for ALL."""
        return "&".join(f"{c.attribute}={c.text}" for c in self.conditions)

    @property
    def labels(self) -> dict[str, str]:
        """Attribute to value text: the ``slice`` of a :class:`~driftline.streams.detect.ModelKey`."""
        return {c.attribute: c.text for c in self.conditions}

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Whether a canonical prediction or outcome document belongs to the slice."""
        for condition in self.conditions:
            if not condition.holds(attribute_value(document, condition.attribute)):
                return False
        return True

    @classmethod
    def parse(cls, text: str) -> SliceSpec:
        """Parse ``attr=value[&attr=value...]``; raises ``ValueError`` saying what is wrong."""
        if not isinstance(text, str):
            raise ValueError(f"a slice is text like 'region=eu', not {text!r}")
        if not text.strip():
            raise ValueError("empty slice; write conditions like 'region=eu' (the whole model is always monitored)")
        conditions = [_parse_condition(part, text) for part in text.split("&")]
        attributes = [c.attribute for c in conditions]
        for attribute in attributes:
            if attributes.count(attribute) > 1:
                raise ValueError(f"slice {text!r} names attribute {attribute!r} twice; use one condition per attribute")
        return cls(tuple(conditions))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> SliceSpec:
        """The spec back from its :attr:`labels` (a model key's ``slice``); empty labels give :data:`ALL`.

        Example:
            >>> SliceSpec.from_labels({"weather": "rain", "region": "eu"}).name
            'region=eu&weather=rain'
        """
        if not labels:
            return ALL
        return cls.parse("&".join(f"{k}={v}" for k, v in labels.items()))

    def __str__(self) -> str:
        return self.name or "all"


#: The whole model: every event, name ``""``, no labels.
ALL = SliceSpec()


def _parse_condition(part: str, whole: str) -> Condition:
    attribute, sep, value = part.partition("=")
    attribute, value = attribute.strip(), value.strip()
    if not sep:
        raise ValueError(f"slice {whole!r}: condition {part.strip()!r} has no '='; write attribute=value")
    if not attribute:
        raise ValueError(f"slice {whole!r}: condition {part.strip()!r} has no attribute name before '='")
    if not value:
        raise ValueError(f"slice {whole!r}: attribute {attribute!r} has no value after '='")
    for bad in _FORBIDDEN_IN_NAME:
        if bad in attribute:
            raise ValueError(f"slice {whole!r}: attribute name {attribute!r} may not contain {bad!r}")
    for bad in _FORBIDDEN_IN_VALUE:
        if bad in value:
            raise ValueError(f"slice {whole!r}: value {value!r} may not contain {bad!r}")
    if value[0] in "[(":
        return _parse_range(attribute, value, whole)
    return Equals(attribute, value)


def _parse_range(attribute: str, value: str, whole: str) -> Range:
    where = f"slice {whole!r}: range {value!r} of {attribute!r}"
    if value[-1] not in ")]" or value.count(",") != 1:
        raise ValueError(f"{where} must look like [low,high), (low,high] or [low,) with one comma")
    low_text, high_text = (t.strip() for t in value[1:-1].split(","))
    bounds: list[float | None] = []
    for side, bound in (("low", low_text), ("high", high_text)):
        if not bound:
            bounds.append(None)
            continue
        try:
            number = float(bound)
        except ValueError:
            raise ValueError(f"{where}: {side} bound {bound!r} is not a number") from None
        if math.isnan(number):
            raise ValueError(f"{where}: {side} bound is NaN")
        bounds.append(None if math.isinf(number) else number)  # an infinite bound is no bound
    low, high = bounds
    if low_text and low is None and low_text.lstrip("+").lower().startswith("inf"):
        raise ValueError(f"{where}: low bound is +inf; the range is empty")
    if high_text and high is None and high_text.lower().startswith("-inf"):
        raise ValueError(f"{where}: high bound is -inf; the range is empty")
    if low is None and high is None:
        raise ValueError(f"{where} has no bound; use an equality or drop the condition")
    low_closed, high_closed = value[0] == "[", value[-1] == "]"
    if low is not None and high is not None:
        if low > high or (low == high and not (low_closed and high_closed)):
            raise ValueError(f"{where} is empty (low must be below high, or [x,x] for one value)")
    return Range(attribute, low, high, low_closed, high_closed)


def parse_slices(texts: Iterable[str]) -> list[SliceSpec]:
    """Parse slice specs in order; duplicates (same normalized name) raise ``ValueError``.

    Example:
        >>> [s.name for s in parse_slices(["amount=[100,)", "vip=true"])]
        ['amount=[100,)', 'vip=true']
        >>> parse_slices(["amount=[0,100"])
        Traceback (most recent call last):
        ...
        ValueError: slice 'amount=[0,100': range '[0,100' of 'amount' must look like [low,high), ...
    """
    specs: list[SliceSpec] = []
    seen: dict[str, str] = {}
    for text in texts:
        spec = SliceSpec.parse(text)
        if spec.name in seen:
            raise ValueError(f"slice {text!r} is the same as {seen[spec.name]!r} ({spec.name})")
        seen[spec.name] = text
        specs.append(spec)
    return specs


def slices_of(document: Mapping[str, Any], specs: Sequence[SliceSpec], *, include_all: bool = True) -> list[SliceSpec]:
    """The slices a document belongs to, in ``specs`` order, :data:`ALL` first (unless ``include_all=False``).

    Example:
        >>> slices_of({"labels": {"region": "us"}}, parse_slices(["region=eu"]))
        [SliceSpec(conditions=())]
    """
    found = [ALL] if include_all else []
    found.extend(spec for spec in specs if spec.matches(document))
    return found


def slice_names(document: Mapping[str, Any], specs: Sequence[SliceSpec], *, include_all: bool = True) -> list[str]:
    """The names of the slices a document belongs to; ``""`` is the whole model.

    Example:
        >>> slice_names({"features": {"boolean": {"vip": False}}}, parse_slices(["vip=false"]), include_all=False)
        ['vip=false']
    """
    return [spec.name for spec in slices_of(document, specs, include_all=include_all)]
