"""The key of everything kept per monitored model: model name, version and an optional slice.

Detectors, windows and alerts are keyed by it; it is also the Kafka key of the
observation batches that carry values to them (the repartition step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ModelKey"]


@dataclass(frozen=True, slots=True)
class ModelKey:
    """Who a detector watches: a model version, or one slice of it.

    Example:
        >>> ModelKey("fraud", "v1", {"region": "eu"}).encode()
        'fraud|v1|region=eu'
        >>> ModelKey.decode("fraud|v1|region=eu") == ModelKey("fraud", "v1", {"region": "eu"})
        True
    """

    model: str
    version: str
    slice: Mapping[str, str] = field(default_factory=dict)
    # the encoded key, computed once: keys are hashed several times per event on the ingest path
    _encoded: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_encoded", self._encode())

    def _encode(self) -> str:
        parts = [self.model, self.version] + [f"{k}={v}" for k, v in sorted(self.slice.items())]
        return "|".join(p.replace("|", "/") for p in parts)

    def encode(self) -> str:
        """The Kafka and table key (stable: slice attributes sorted)."""
        try:
            return self._encoded
        except AttributeError:  # unpickled from a checkpoint written before the key was cached
            object.__setattr__(self, "_encoded", self._encode())
            return self._encoded

    @classmethod
    def decode(cls, text: str) -> "ModelKey":
        model, version, *rest = text.split("|")
        return cls(model, version, dict(p.split("=", 1) for p in rest))

    def __hash__(self) -> int:
        return hash(self.encode())
