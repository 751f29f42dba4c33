"""False alarms, detection delay and speed of driftline's default detectors.

For the default detector of each stream kind (``default_spec``), and for KSWIN
as configured, this prints:

- false alarms per million events on stable synthetic streams: Bernoulli(0.1)
  errors, N(0, 1) and N(5, 0.01) features, Beta(2, 8) scores, lognormal
  latencies (σ_log 0.5 and 1.0);
- the share of changes found within a horizon and the median / 90th-percentile
  delay (in events) for a 0.1 → 0.2 error-rate change and a +1σ mean shift,
  each after a stable history;
- updates per second of the wrapper (``update_many`` in batches of 1,000) and
  of the bare River detector over the same (transformed) values, best of 3
  runs (KSWIN: 1 run); the wrapper's figure counts every event, River's only
  the values fed, so for KSWIN (every 10th value) the two differ ~10x.

River's own defaults on raw values are measured alongside, for comparison.

Run:
    python benchmarks/detector_false_alarms.py                 # ~1-2 minutes on 2 cores
    python benchmarks/detector_false_alarms.py --events 5000000 --seeds 10
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from driftline.streams.detectors import DetectorSpec, StreamDetector, build_detector, default_spec

BATCH = 1_000


# --- streams ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A stable synthetic stream and its changed version."""

    name: str
    change: str
    make: Callable[[np.random.Generator, int, bool], np.ndarray]


def _lognormal(sigma: float) -> Callable[[np.random.Generator, int, bool], np.ndarray]:
    mean = 50.0 * math.exp(sigma**2 / 2)
    std = mean * math.sqrt(math.exp(sigma**2) - 1)
    return lambda rng, n, changed: rng.lognormal(math.log(50.0), sigma, n) + (std if changed else 0.0)


BETA_STD = math.sqrt(2 * 8 / ((2 + 8) ** 2 * (2 + 8 + 1)))

STREAMS = {
    s.name: s
    for s in (
        Stream("errors Bernoulli(0.1)", "error rate 0.1 -> 0.2", lambda r, n, c: (r.random(n) < (0.2 if c else 0.1)).astype(float)),
        Stream("feature N(0,1)", "+1 sigma", lambda r, n, c: r.normal(1.0 if c else 0.0, 1.0, n)),
        Stream("feature N(5,0.01)", "+1 sigma", lambda r, n, c: r.normal(5.01 if c else 5.0, 0.01, n)),
        Stream("score Beta(2,8)", "+1 sigma", lambda r, n, c: r.beta(2, 8, n) + (BETA_STD if c else 0.0)),
        Stream("latency logN(sd 0.5)", "+1 sigma", _lognormal(0.5)),
        Stream("latency logN(sd 1.0)", "+1 sigma", _lognormal(1.0)),
    )
}


# --- what is measured ---------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One detector configuration on one stream."""

    config: str
    spec: DetectorSpec
    stream: str
    costly: bool = False  # KSWIN: fewer events, see --kswin-events


def rows() -> list[Row]:
    river_ph = DetectorSpec(kind="page_hinkley", params={"delta": 0.005, "threshold": 50.0, "alpha": 1 - 0.0001})
    river_kswin = DetectorSpec(kind="kswin", params={"alpha": 0.005, "window_size": 100, "stat_size": 30}, sample_every=1)
    return [
        Row("concept (default)", default_spec("concept"), "errors Bernoulli(0.1)"),
        Row("data (default)", default_spec("data"), "feature N(0,1)"),
        Row("data (default)", default_spec("data"), "feature N(5,0.01)"),
        Row("prediction (default)", default_spec("prediction"), "score Beta(2,8)"),
        Row("system (default)", default_spec("system"), "latency logN(sd 0.5)"),
        Row("system (default)", default_spec("system"), "latency logN(sd 1.0)"),
        Row("kswin (configured)", DetectorSpec(kind="kswin"), "feature N(0,1)", costly=True),
        Row("river PH defaults, raw", river_ph, "feature N(0,1)"),
        Row("river PH defaults, raw", river_ph, "feature N(5,0.01)"),
        Row("river KSWIN defaults, raw", river_kswin, "feature N(0,1)", costly=True),
        Row("river KSWIN defaults, raw", river_kswin, "errors Bernoulli(0.1)", costly=True),
    ]


@dataclass(frozen=True)
class Plan:
    events: int  # stable events per seed
    changes: int  # change trials per seed
    history: int  # stable events before each change (after any warm-up)
    horizon: int  # events after the change in which it counts as found


def plan_for(row: Row, args: argparse.Namespace) -> Plan:
    if row.costly:  # KSWIN costs ~0.5 ms per value fed: budget in values fed, 500 before and after each change
        every = build_detector(row.spec).sample_every
        return Plan(args.kswin_events * every // 10, max(1, args.changes // 5), 500 * every, 500 * every)
    return Plan(args.events, args.changes, 10_000, 10_000)


def feed(detector: StreamDetector, xs: np.ndarray) -> list[int]:
    alarms: list[int] = []
    values = xs.tolist()
    for i in range(0, len(values), BATCH):
        alarms += [s.position for s in detector.update_many(values[i : i + BATCH])]
    return alarms


def measure(row_index: int, seed: int, args: argparse.Namespace) -> dict:
    """False alarms and change delays of one row for one seed (runs in a worker process)."""
    row = rows()[row_index]
    plan = plan_for(row, args)
    stream = STREAMS[row.stream]
    rng = np.random.default_rng([seed, row_index])
    warmup = row.spec.warmup if row.spec.standardize and row.spec.baseline_mean is None else 0

    false_alarms = 0
    for start in range(0, plan.events, 200_000):  # bounded memory for long runs
        if start == 0:
            detector = build_detector(row.spec)
        n = min(200_000, plan.events - start)
        false_alarms += len(feed(detector, stream.make(rng, n, False)))

    delays: list[int] = []
    missed = early = 0
    for _ in range(plan.changes):
        detector = build_detector(row.spec)
        change_at = warmup + plan.history
        before = feed(detector, stream.make(rng, change_at, False))
        early += len(before)
        after = [p for p in feed(detector, stream.make(rng, plan.horizon, True))]
        if after:
            delays.append(after[0] - change_at)
        else:
            missed += 1
    return {"row": row_index, "events": plan.events, "false_alarms": false_alarms, "delays": delays,
            "missed": missed, "early": early, "history_events": plan.changes * plan.history}


def speed(row: Row, n: int, repeats: int) -> tuple[float, float]:
    """Events/s through the wrapper, and updates/s of the bare River detector on the same fed values (best of repeats)."""
    stream = STREAMS[row.stream]
    xs = stream.make(np.random.default_rng(99), n, False)
    values = xs.tolist()
    wrapper = 0.0
    for _ in range(repeats):
        detector = build_detector(row.spec)
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            detector.update_many(values[i : i + BATCH])
        wrapper = max(wrapper, n / (time.perf_counter() - t0))

    # the values River saw: standardized with the detector's stored mean/std, sampled
    st = detector.standardizer
    start = st.warmup if st is not None and row.spec.baseline_mean is None else 0
    fed = xs[start :: detector.sample_every]
    if st is not None:
        fed = (fed - st.mean) / st.std
        if st.clip is not None:
            fed = np.clip(fed, -st.clip, st.clip)
    fed_values = fed.tolist()
    bare = 0.0
    for _ in range(repeats):
        river = type(detector.river_detector)(**detector._params())
        t0 = time.perf_counter()
        for x in fed_values:
            river.update(x)
            if river.drift_detected:
                pass
        bare = max(bare, len(fed_values) / (time.perf_counter() - t0))
    return wrapper, bare


# --- report --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=600_000, help="stable events per seed and row (default 600,000)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    parser.add_argument("--changes", type=int, default=10, help="change trials per seed and row (default 10; a fifth of it for KSWIN rows)")
    parser.add_argument("--kswin-events", type=int, default=30_000,
                        help="stable events per seed for KSWIN fed every 10th value (default 30,000; "
                             "scaled by sample_every/10 for other KSWIN rows)")
    parser.add_argument("--speed-events", type=int, default=200_000,
                        help="events for the speed measurement (default 200,000; 2,000 values fed for KSWIN rows)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = parser.parse_args(argv)

    table = rows()
    tasks = [(i, seed) for i in range(len(table)) for seed in range(args.seeds)]
    print(f"{len(table)} rows x {args.seeds} seeds; {args.events:,} stable events per seed "
          f"({args.kswin_events:,} for KSWIN), {args.changes} changes per seed; {args.jobs} processes", file=sys.stderr)
    results: dict[int, list[dict]] = {i: [] for i in range(len(table))}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(measure, i, seed, args) for i, seed in tasks]
        for done, future in enumerate(as_completed(futures), 1):
            r = future.result()
            results[r["row"]].append(r)
            print(f"  [{done}/{len(tasks)}] {time.perf_counter() - t0:6.1f}s  {table[r['row']].config} / {table[r['row']].stream}",
                  file=sys.stderr, flush=True)

    print(f"\nRiver drift detectors behind driftline: {args.seeds} seeds, stable events per seed "
          f"{args.events:,} ({args.kswin_events:,} for KSWIN rows)")
    print("false alarms per million events on stable streams (warm-up included); change found within the horizon "
          "(10,000 events after 10,000 stable ones; 500 values fed before and after for KSWIN rows), delay in events")
    header = (f"{'configuration':<26}{'stream':<23}{'detector':<13}{'FA/M':>7}{'alarms':>8}   {'change':<21}"
              f"{'found':>9}{'median':>8}{'p90':>7}{'early':>6}{'wrapper ev/s':>14}{'River upd/s':>13}")
    print(header)
    print("-" * len(header))
    for i, row in enumerate(table):
        rs = results[i]
        events = sum(r["events"] for r in rs)
        alarms = sum(r["false_alarms"] for r in rs)
        delays = sorted(d for r in rs for d in r["delays"])
        missed = sum(r["missed"] for r in rs)
        early = sum(r["early"] for r in rs)
        trials = len(delays) + missed
        median = f"{statistics.median(delays):.0f}" if delays else "-"
        p90 = f"{np.percentile(delays, 90):.0f}" if delays else "-"
        print(f"  ...speed {row.config} / {row.stream}", file=sys.stderr, flush=True)
        n_speed = args.speed_events if not row.costly else 2_000 * build_detector(row.spec).sample_every
        wrapper, bare = speed(row, n_speed, repeats=1 if row.costly else 3)
        print(f"{row.config:<26}{row.stream:<23}{row.spec.kind:<13}{alarms / events * 1e6:>7.2f}{alarms:>8}   "
              f"{STREAMS[row.stream].change:<21}{len(delays):>4}/{trials:<4}{median:>8}{p90:>7}{early:>6}"
              f"{wrapper:>14,.0f}{bare:>13,.0f}", flush=True)
    print(f"\n'early' counts alarms during the stable history before each change (also false alarms). "
          f"Total {time.perf_counter() - t0:.0f}s.")


if __name__ == "__main__":
    main()
