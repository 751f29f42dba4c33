"""Per-event cost of the windows (metrics, baseline comparisons, skew checks), stage by stage.

One model key, the simulated fraud model's traffic (five numeric features and
a channel), a baseline built from its simulated training file (with a novelty
model). Prints microseconds per event for each piece the windows add to the
hot path, next to the same piece with the windows off, and the cost of
closing one window (the comparisons).

Run:
    python benchmarks/window_costs.py                  # 6,000 events
    python benchmarks/window_costs.py --events 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driftline.baselines.build import build_baseline  # noqa: E402
from driftline.connectors.codec import make_codec  # noqa: E402
from driftline.simulation import SimulatedService  # noqa: E402
from driftline.streams.detect import DetectorBank, ObservationBatch, observation_streams, split_batch  # noqa: E402
from driftline.streams.feature_windows import NoveltyWindow, ServingWindow  # noqa: E402
from driftline.streams.keys import ModelKey  # noqa: E402
from driftline.streams.metrics import WindowMetrics  # noqa: E402
from driftline.streams.normalize import Normalizer, RawRecord  # noqa: E402
from driftline.streams.pseudonymize import Pseudonymizer  # noqa: E402
from driftline.streams.skew import SkewValidator  # noqa: E402
from driftline.streams.windows import PREDICTION, WindowSet, WindowSettings, prediction_record  # noqa: E402


def per_event(n: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Microseconds per event of one call of ``fn`` over ``n`` events, and its result."""
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) / n * 1e6, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=6_000)
    args = parser.parse_args(argv)

    service = SimulatedService(n=args.events, malformed_count=0)
    with tempfile.TemporaryDirectory() as folder:
        baseline = build_baseline(service.write_training_file(Path(folder) / "train.csv"), service.model_name,
                                  service.model_version, label_column="label", prediction_column="prediction")
    normalizer = Normalizer(pseudonymizer=Pseudonymizer(b"0" * 32))
    codec = make_codec("prediction_event")
    events = [normalizer.normalize(RawRecord(codec.encode(p), b"k", "driftline.predictions", 0, i), now_ms=p["timestamp"])
              for i, p in enumerate(service.traffic().predictions)]
    events = [e for e in events if hasattr(e, "document")]
    n = len(events)
    key = ModelKey(service.model_name, service.model_version)
    rows: list[tuple[str, float, float | None]] = []

    validator = SkewValidator(baseline)
    skew, _ = per_event(n, lambda: [validator.validate(e.document) for e in events])
    rows.append(("schema-skew check (ingest)", skew, None))
    record_cost, records = per_event(n, lambda: [(PREDICTION, prediction_record(e.document, []), e.timestamp_ms, "p", i)
                                                 for i, e in enumerate(events)])
    rows.append(("window record (ingest)", record_cost, None))
    observations = [(s, v, e.timestamp_ms, "p", i) for i, e in enumerate(events) for s, v in observation_streams(
        None, e.document["prediction"].get("score"), e.document.get("latency_ms"), e.document["features"]["numeric"])]
    marks = {"p": events[-1].timestamp_ms}
    on, off = ObservationBatch(key, 0, marks, observations, records), ObservationBatch(key, 0, marks, observations, [])
    encode_on, parts_on = per_event(n, lambda: [p.to_json() for p in split_batch(on)])
    encode_off, parts_off = per_event(n, lambda: [p.to_json() for p in split_batch(off)])
    rows.append(("encode observation batches (ingest)", encode_on, encode_off))
    decode_on, decoded_on = per_event(n, lambda: [ObservationBatch.from_json(x) for x in parts_on])
    decode_off, decoded_off = per_event(n, lambda: [ObservationBatch.from_json(x) for x in parts_off])
    rows.append(("decode observation batches (detect)", decode_on, decode_off))
    bank_on = DetectorBank(key, partitions=1, windows=WindowSet(key, WindowSettings()))
    bank_off = DetectorBank(key, partitions=1)
    apply_on, _ = per_event(n, lambda: [bank_on.apply(b, 0, baseline) for b in decoded_on])
    apply_off, _ = per_event(n, lambda: [bank_off.apply(b, 0, None) for b in decoded_off])
    rows.append(("detector bank apply, windows closed included (detect)", apply_on, apply_off))
    metrics = WindowMetrics()
    rows.append(("  of which: window metrics", per_event(n, lambda: [metrics.add_prediction(r[1], r[2]) for r in records])[0], None))
    serving = ServingWindow(baseline)
    rows.append(("  of which: baseline accumulators (with novelty)", per_event(n, lambda: [serving.update(r[1]) for r in records])[0], None))
    if baseline.novelty is not None:
        novelty = NoveltyWindow(baseline.novelty)
        rows.append(("  of which: novelty scoring", per_event(n, lambda: ([novelty.update(r[1]) for r in records], novelty.flush()))[0], None))
    closing = WindowSet(key, WindowSettings(size_ms=10 ** 12))  # one window holding every event
    for kind, record, event_ms, _, _ in records:
        closing.add(kind, record, event_ms, baseline)
    started = time.perf_counter()
    closing.close(float("inf"), baseline)
    close_ms = (time.perf_counter() - started) * 1000
    encoded = len(bank_on.dumps())

    print(f"{n:,} events of {service.model_name}, {len(baseline.schema)} features, novelty model: "
          f"{'yes' if baseline.novelty else 'no'}\n")
    print("| piece | windows on (µs/event) | windows off (µs/event) |")
    print("| --- | --- | --- |")
    for name, cost_on, cost_off in rows:
        print(f"| {name} | {cost_on:.1f} | {'' if cost_off is None else f'{cost_off:.1f}'} |")
    print(f"\nclosing one window of {n:,} events (every comparison): {close_ms:.0f} ms")
    print(f"detector bank checkpoint with windows: {encoded:,} bytes encoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
