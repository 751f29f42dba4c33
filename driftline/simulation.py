"""A simulated model service: predictions and delayed feedback with drifts at known points.

Used by ``driftline demo`` (and handy for trying dashboards): a fraud model
scores requests with five numeric features and a region slice. At
``feature_drift_start`` one feature starts drifting gradually (its mean grows
by one standard deviation over ``feature_drift_span`` requests); at
``concept_drift_at`` the relation between inputs and labels changes abruptly
(the model's error rate jumps from 10% to 45%). Labels arrive for every
request, ``label_delay_ms`` of event time later, logged ~100 requests after
their prediction. A few malformed messages are mixed in.

Example:
    >>> sim = SimulatedService(n=1_000, seed=1)
    >>> traffic = sim.traffic()
    >>> len(traffic.predictions), len(traffic.feedback), len(traffic.malformed)
    (1000, 1000, 10)
    >>> traffic.predictions[0]["model_name"], sorted(traffic.predictions[0]["numeric_features"])
    ('fraud-detector', ['amount', 'distance_km', 'hour', 'items', 'velocity'])
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FEATURES = ("amount", "distance_km", "hour", "items", "velocity")


@dataclass(frozen=True)
class Traffic:
    """What the service logs: predictions, feedback (in logging order) and raw malformed values."""

    predictions: list[dict]
    feedback: list[dict]
    malformed: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class SimulatedService:
    """Parameters of the simulation (all event times derive from ``start_ms`` and ``step_ms``)."""

    n: int = 12_000
    seed: int = 42
    start_ms: int = 1_763_800_000_000
    step_ms: int = 100
    label_delay_ms: int = 30_000
    feature_drift_start: int = 3_000
    feature_drift_span: int = 2_000
    drifting_feature: str = "velocity"
    concept_drift_at: int = 8_000
    malformed_count: int = 10
    model_name: str = "fraud-detector"
    model_version: str = "2026.11.1"

    def timestamp(self, i: int) -> int:
        """Event time of request ``i``."""
        return self.start_ms + i * self.step_ms

    def drift_shift(self, i: int) -> float:
        """How far (in standard deviations) the drifting feature has moved at request ``i``."""
        if i < self.feature_drift_start:
            return 0.0
        return min(1.0, (i - self.feature_drift_start) / self.feature_drift_span)

    def traffic(self) -> Traffic:
        rng = random.Random(self.seed)
        predictions, feedback = [], []
        for i in range(self.n):
            features = {name: rng.gauss(0.0, 1.0) for name in FEATURES}
            features[self.drifting_feature] += self.drift_shift(i)
            score = rng.random()
            predicted = "fraud" if score > 0.5 else "legit"
            error_rate = 0.10 if i < self.concept_drift_at else 0.45
            wrong = rng.random() < error_rate
            truth = ("legit" if predicted == "fraud" else "fraud") if wrong else predicted
            request_id = f"{self.seed:x}-{i:07d}"
            predictions.append({
                "request_id": request_id,
                "timestamp": self.timestamp(i),
                "model_name": self.model_name,
                "model_version": self.model_version,
                "latency_ms": rng.lognormvariate(2.0, 0.25),
                "prediction": [{"label": predicted, "score": score}],
                "numeric_features": features,
                "categorical_features": {"channel": rng.choice(["web", "app", "pos"])},
                "slices": {"region": rng.choice(["eu", "us", "apac"])},
                "subject_id": f"customer-{rng.randrange(10_000)}",
            })
            feedback.append({"request_id": request_id, "timestamp": self.timestamp(i) + self.label_delay_ms,
                             "labels": [truth], "label_source": "PROCESS_FEEDBACK"})
        malformed = []
        for k in range(self.malformed_count):
            if k % 3 == 0:
                malformed.append(bytes(rng.getrandbits(8) for _ in range(24)))
            elif k % 3 == 1:
                malformed.append(b'{"request_id": "broken-%d", "model_name": ' % k)
            else:
                malformed.append(b'{"request_id": "no-model-%d", "timestamp": 1763800000000}' % k)
        return Traffic(predictions, feedback, malformed)
