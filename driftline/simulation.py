"""A simulated model service: predictions and delayed feedback with drifts at known points.

Used by ``driftline demo`` (and handy for trying dashboards): a fraud model
scores requests with five numeric features and a region slice. At
``feature_drift_start`` one feature starts drifting gradually (its mean grows
by one standard deviation over ``feature_drift_span`` requests); at
``concept_drift_at`` the relation between inputs and labels changes abruptly
(the model's error rate jumps from 10% to 45%). From ``skew_at`` on, a bad
release in one region (``skewed_region``) sends an unknown ``channel`` value
in 5% of its requests: schema skew in one slice. Labels arrive for every
request, ``label_delay_ms`` of event time later, logged ~100 requests after
their prediction. A few malformed messages are mixed in.
:meth:`~SimulatedService.write_training_file` writes the training data the
model was fit on (no drift, no skew), for ``driftline baseline build``.

Example:
    >>> sim = SimulatedService(n=1_000, seed=1)
    >>> traffic = sim.traffic()
    >>> len(traffic.predictions), len(traffic.feedback), len(traffic.malformed)
    (1000, 1000, 10)
    >>> traffic.predictions[0]["model_name"], sorted(traffic.predictions[0]["numeric_features"])
    ('fraud-detector', ['amount', 'distance_km', 'hour', 'items', 'velocity'])
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

FEATURES = ("amount", "distance_km", "hour", "items", "velocity")
CHANNELS = ("web", "app", "pos")
REGIONS = ("eu", "us", "apac")


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
    skew_at: int | None = None
    skewed_region: str = "apac"
    unknown_channel: str = "kiosk"
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
                "categorical_features": {"channel": rng.choice(CHANNELS)},
                "slices": {"region": rng.choice(REGIONS)},
                "subject_id": f"customer-{rng.randrange(10_000)}",
            })
            if self.skew_at is not None and i >= self.skew_at and predictions[-1]["slices"]["region"] == self.skewed_region \
                    and rng.random() < 0.05:
                predictions[-1]["categorical_features"]["channel"] = self.unknown_channel
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


    def write_training_file(self, path: Path, rows: int = 20_000, seed: int = 7) -> Path:
        """Write the model's training data as CSV: the features, the prediction and the label.

        Same distributions as the serving traffic before any drift (another seed).

        Example:
            >>> import tempfile, pathlib
            >>> path = SimulatedService().write_training_file(pathlib.Path(tempfile.mkdtemp()) / "train.csv", rows=3)
            >>> path.read_text().splitlines()[0]
            'amount,distance_km,hour,items,velocity,channel,prediction,label'
        """
        rng = random.Random(seed)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*FEATURES, "channel", "prediction", "label"])
            for _ in range(rows):
                features = [rng.gauss(0.0, 1.0) for _ in FEATURES]
                predicted = "fraud" if rng.random() > 0.5 else "legit"
                truth = predicted if rng.random() >= 0.10 else ("legit" if predicted == "fraud" else "fraud")
                writer.writerow([*features, rng.choice(CHANNELS), predicted, truth])
        return path
