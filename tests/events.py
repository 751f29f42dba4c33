"""Event factories and hypothesis strategies shared by the tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def prediction(i: int, rng: random.Random | None = None, *, n_features: int = 16, ts_ms: int | None = None) -> dict[str, Any]:
    """A realistic prediction event (~400 B of Avro with 16 numeric features)."""
    rng = rng or random.Random(i)
    return {
        "request_id": f"req-{i:010d}",
        "timestamp": ts_ms if ts_ms is not None else 1_763_850_000_000 + i,
        "model_name": "fraud-detector",
        "model_version": "v3",
        "latency_ms": round(rng.lognormvariate(1.0, 0.3), 3),
        "prediction": [{"label": "fraud" if rng.random() < 0.1 else "ok", "value": None, "score": rng.random()}],
        "scores": {"fraud": 0.2, "ok": 0.8},
        "numeric_features": {f"f{j}": rng.gauss(0.0, 1.0) for j in range(n_features)},
        "categorical_features": {"country": rng.choice(["DE", "FR", "US"]), "device": "ios"},
        "boolean_features": {"returning": rng.random() < 0.5},
        "slices": {"region": "eu"},
        "trace": {"trace_id": f"{i:032x}", "span_id": f"{i:016x}"},
        "subject_id": f"subj-{i % 97}",
    }


def feedback(i: int, label: str = "ok", ts_ms: int | None = None) -> dict[str, Any]:
    return {
        "request_id": f"req-{i:010d}",
        "timestamp": ts_ms if ts_ms is not None else 1_763_850_000_000 + i,
        "labels": [label],
        "label_source": "PROCESS_FEEDBACK",
    }


# --- hypothesis strategies -------------------------------------------------

text = st.text(max_size=20)
names = st.text(min_size=1, max_size=12)
doubles = st.floats(allow_nan=False, allow_infinity=True, width=64)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
optional = st.none().__or__

predicted_values = st.fixed_dictionaries(
    {"label": optional(text), "value": optional(doubles), "score": optional(doubles)}
)

prediction_events = st.fixed_dictionaries(
    {
        "request_id": text,
        "timestamp": timestamps,
        "model_name": text,
        "model_version": text,
        "latency_ms": optional(doubles),
        "prediction": st.lists(predicted_values, max_size=4),
        "scores": st.dictionaries(names, doubles, max_size=4),
        "numeric_features": st.dictionaries(names, doubles, max_size=8),
        "categorical_features": st.dictionaries(names, text, max_size=4),
        "boolean_features": st.dictionaries(names, st.booleans(), max_size=4),
        "vector_features": st.dictionaries(names, st.lists(doubles, max_size=5), max_size=2),
        "null_features": st.lists(names, max_size=3),
        "input_summary": st.fixed_dictionaries(
            {
                "shape": st.lists(st.integers(0, 2**40), max_size=4),
                "size_bytes": optional(st.integers(0, 2**62)),
                "description": optional(text),
            }
        ),
        "request_type": st.sampled_from(["online", "batch", "shadow", "canary"]),
        "slices": st.dictionaries(names, text, max_size=3),
        "trace": st.fixed_dictionaries({"trace_id": optional(text), "span_id": optional(text)}),
        "subject_id": optional(text),
    }
)

feedback_events = st.fixed_dictionaries(
    {
        "request_id": text,
        "timestamp": timestamps,
        "labels": st.lists(text, max_size=3),
        "values": st.lists(doubles, max_size=3),
        "label_source": st.sampled_from(["PROCESS_FEEDBACK", "HUMAN_RATER", "WEAK_SUPERVISION", "UNKNOWN"]),
        "rater_id": optional(text),
        "confidence": optional(st.floats(0, 1)),
        "model_name": optional(text),
    }
)

dead_letters = st.fixed_dictionaries(
    {
        "raw": st.binary(max_size=64),
        "raw_key": optional(st.binary(max_size=16)),
        "reason": text,
        "error_type": st.sampled_from(["decode_error", "validation_error", "mapping_error"]),
        "stage": st.sampled_from(["normalize", "join", "index"]),
        "source_topic": names,
        "source_partition": st.integers(0, 2**31 - 1),
        "source_offset": st.integers(0, 2**63 - 1),
        "timestamp": timestamps,
    }
)

STRATEGIES = {"prediction_event": prediction_events, "feedback_event": feedback_events, "dead_letter": dead_letters}


def millis(d: datetime) -> int:
    return (d - EPOCH) // timedelta(milliseconds=1)
