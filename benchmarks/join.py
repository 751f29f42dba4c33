"""Records per second of LabelJoiner over a dict store, and store operations per record.

The input: 200,000 canonical predictions (~650 B, 8 numeric and 2 categorical
features) spread over 10 days of event time, and 160,000 labels (80 %
coverage) with shuffled delays:

- 10 % come before their prediction (up to 5 minutes),
- 60 % within an hour, 25 % within 3 days,
- 5 % after 7 to 8 days: beyond the 7-day window, so both sides go unmatched.

Records arrive in event-time order with up to 30 s of jitter, and are handed
to ``join_batch`` in batches of consecutive records. Since the stream is longer
than the window, expiry of tombstones and unmatched predictions runs
throughout. Each run uses a fresh store that counts reads (``get``, ``in``,
``[]``), writes and deletes:

  dict           a plain dict store (values kept as Python objects)
  dict + json    values go through json.dumps / json.loads, as a Faust table's
                 json serializer does (the in-memory table cost, without Kafka)

with batch sizes 1, 50 and 500 (``--batches``). The last column estimates the
ceiling if every write were a Faust table write at ~0.4 ms (see ARCHITECTURE).
Wall-clock rates suffer when other processes share the CPU; the process CPU
time per record is the steadier figure. Over an in-memory store, bigger batches
keep more objects alive between collector passes and so trigger more full
garbage collections over the store: with the collector off, batches of 50, 500
and 5,000 cost about the same per record.

Run:
    python benchmarks/join.py
    python benchmarks/join.py --predictions 50000 --batches 500
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from driftline.streams.join import (
    DAY_MS,
    HOUR_MS,
    RESERVED_PREFIX,
    JoinCounts,
    LabelJoiner,
    iso_timestamp,
)

T0 = 1_763_850_000_000
SPAN_MS = 10 * DAY_MS
TABLE_WRITE_MS = 0.4


class CountingStore(dict):
    """A dict that counts the operations the joiner makes; optionally keeps values as JSON text."""

    def __init__(self, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json
        self.reads = self.writes = self.deletes = 0
        self.max_keys = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads += 1
        value = dict.get(self, key)
        if value is None:
            return default
        return json.loads(value) if self.as_json else value

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        value = dict.__getitem__(self, key)
        return json.loads(value) if self.as_json else value

    def __contains__(self, key: object) -> bool:
        self.reads += 1
        return dict.__contains__(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.writes += 1
        dict.__setitem__(self, key, json.dumps(value) if self.as_json else value)
        if len(self) > self.max_keys:
            self.max_keys = len(self)

    def __delitem__(self, key: Any) -> None:
        self.deletes += 1
        dict.__delitem__(self, key)


def make_prediction(i: int, t: int, rng: random.Random) -> dict[str, Any]:
    return {
        "@timestamp": iso_timestamp(t),
        "timestamp_ms": t,
        "event": {"kind": "event", "dataset": "driftline.predictions"},
        "request": {"id": f"req-{i:010d}-{rng.getrandbits(48):012x}", "type": "online"},
        "model": {"name": "fraud-detector", "version": ("2026.11.3", "2026.11.4")[i % 2]},
        "latency_ms": round(rng.lognormvariate(1.0, 0.3), 3),
        "prediction": {"label": "fraud" if rng.random() < 0.1 else "legitimate", "score": round(rng.random(), 6)},
        "labels": {"region": ("eu-west-1", "us-east-1", "ap-south-1")[i % 3]},
        "subject": {"id": f"subj-{i % 5003:08x}"},
        "features": {
            "numeric": {f"feature_{j:02d}": round(rng.gauss(0.0, 1.0), 9) for j in range(8)},
            "categorical": {"country": rng.choice(["DE", "FR", "US", "IN"]), "device": rng.choice(["ios", "android", "web"])},
        },
    }


def label_delay_ms(rng: random.Random) -> int:
    u = rng.random()
    if u < 0.10:
        return -rng.randrange(0, 5 * 60_000)
    if u < 0.70:
        return rng.randrange(0, HOUR_MS)
    if u < 0.95:
        return rng.randrange(HOUR_MS, 3 * DAY_MS)
    return rng.randrange(7 * DAY_MS + 1, 8 * DAY_MS)


def make_stream(n_predictions: int, n_labels: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """All records in arrival order: event time plus up to 30 s of jitter."""
    rng = random.Random(seed)
    arrivals: list[tuple[int, int, str, dict[str, Any]]] = []
    predictions = []
    for i in range(n_predictions):
        t = T0 + i * SPAN_MS // n_predictions
        doc = make_prediction(i, t, rng)
        predictions.append(doc)
        arrivals.append((t + rng.randrange(30_000), len(arrivals), "p", doc))
    for doc in rng.sample(predictions, n_labels):
        t = doc["timestamp_ms"] + label_delay_ms(rng)
        truth = doc["prediction"]["label"] if rng.random() < 0.9 else "fraud"
        label = {
            "request": {"id": doc["request"]["id"]},
            "timestamp_ms": t,
            "feedback": {"labels": [truth], "values": [], "source": "PROCESS_FEEDBACK"},
        }
        arrivals.append((t + rng.randrange(30_000), len(arrivals), "l", label))
    arrivals.sort()
    return [(kind, doc) for _, _, kind, doc in arrivals]


@dataclass
class Run:
    name: str
    batch: int
    seconds: float
    cpu_seconds: float
    records: int
    store: CountingStore
    counts: JoinCounts
    outcomes: int
    batches: int


def run(name: str, stream: list[tuple[str, dict[str, Any]]], batch: int, as_json: bool) -> Run:
    store = CountingStore(as_json=as_json)
    joiner = LabelJoiner(store)
    batches = [stream[i : i + batch] for i in range(0, len(stream), batch)]
    split = [([d for k, d in b if k == "p"], [d for k, d in b if k == "l"]) for b in batches]
    counts, outcomes = JoinCounts(), 0
    step = max(1, len(split) // 5)
    print(f"  {name}, batch {batch}: ", end="", flush=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    for n, (predictions, labels) in enumerate(split, 1):
        result = joiner.join_batch(predictions, labels)
        counts.merge(result.total())
        outcomes += len(result.outcomes)
        if n % step == 0:
            done = min(n * batch, len(stream))
            print(f"{done:,} ({done / (time.perf_counter() - start):,.0f}/s) ", end="", flush=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(flush=True)
    return Run(name, batch, seconds, cpu_seconds, len(stream), store, counts, outcomes, len(split))


def value_sizes(store: CountingStore) -> dict[str, tuple[int, float]]:
    """Number and mean JSON size of the values left in the store, by kind."""
    sizes: dict[str, list[int]] = {}
    for key, value in dict.items(store):
        text = value if store.as_json else json.dumps(value)
        if key.startswith(RESERVED_PREFIX):
            kind = "clock" if key.endswith("clock") else "index chunk" if key.count("/") == 3 else "index header"
        else:
            kind = {"p": "pending prediction", "l": "pending label", "j": "tombstone"}[json.loads(text)["s"]]
        sizes.setdefault(kind, []).append(len(text))
    return {k: (len(v), sum(v) / len(v)) for k, v in sorted(sizes.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=200_000)
    parser.add_argument("--labels", type=int, default=160_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 50, 500])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    days = SPAN_MS // DAY_MS
    print(f"making {args.predictions:,} predictions and {args.labels:,} labels over {days} days of event time ...", flush=True)
    stream = make_stream(args.predictions, args.labels, args.seed)
    gc.collect()
    gc.freeze()  # the input's millions of objects are not the joiner's: keep them out of GC passes
    sample = [json.dumps(d) for k, d in stream[:2000] if k == "p"]
    mean_size = sum(map(len, sample)) / len(sample)
    print(f"prediction ~{mean_size:.0f} B of JSON; window 7 days, buckets 1 h; python {sys.version.split()[0]}")

    runs = []
    for as_json in (False, True):
        for batch in args.batches:
            runs.append(run("dict + json" if as_json else "dict", stream, batch, as_json))

    columns = [
        "store", "batch", "records/s (wall)", "CPU µs/record", "records/CPU-s", "reads/rec", "writes/rec",
        "deletes/rec", "writes/batch", "outcomes", "expired p / l", "Faust ceiling @0.4 ms/write",
    ]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for r in runs:
        s, n = r.store, r.records
        cells = [
            r.name, r.batch, f"{n / r.seconds:,.0f}", f"{r.cpu_seconds / n * 1e6:.2f}", f"{n / r.cpu_seconds:,.0f}",
            f"{s.reads / n:.3f}", f"{s.writes / n:.3f}", f"{s.deletes / n:.3f}", f"{s.writes / r.batches:.1f}",
            f"{r.outcomes:,}", f"{r.counts.expired_predictions:,} / {r.counts.expired_labels:,}",
            f"{1000 / (s.writes / n * TABLE_WRITE_MS):,.0f} records/s",
        ]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")

    last = runs[-1]
    c = last.counts
    print(f"\nlast run: {last.outcomes:,} outcomes; joined {c.joined:,}, unscored {c.unscored:,}")
    print(
        f"  expired unmatched predictions {c.expired_predictions:,}, expired orphan labels {c.expired_labels:,}, "
        f"late predictions {c.late_predictions:,}, late labels {c.late_labels:,}, duplicates {c.duplicates:,}"
    )
    print(f"  label delay ms: min {c.label_delay_ms_min:,}, mean {c.label_delay_ms_mean:,.0f}, max {c.label_delay_ms_max:,}")
    print(f"  label coverage so far: {c.joined / (c.joined + c.expired_predictions):.3f} of expired-or-joined predictions")
    print(f"\nstore at the end ({len(last.store):,} keys, at most {last.store.max_keys:,} during the run):")
    for kind, (n, mean) in value_sizes(last.store).items():
        print(f"  {kind:<20} {n:>8,} values, mean {mean:,.0f} B of JSON")


if __name__ == "__main__":
    main()
