"""What the normalize stage costs per event, against decoding alone.

No servers: everything runs in this process. The events are the producer
benchmark's ~600-byte prediction events with 20 features
(``benchmarks/producer_latency.py``'s ``make_events``), encoded once with the
contract's codecs. Each phase runs ``--repeat`` times and the best run counts
(the least disturbed by other processes on the machine). Figures are CPU
time of this thread per event, with wall-clock time beside them:

1. decode only: ``codec.decode`` (fastavro), single-object and Confluent framing
   (the Confluent one with the client's in-process ``mock://`` registry);
2. the whole stage: ``Normalizer.normalize_batch`` = decode + validate +
   canonicalize + pseudonymize, for the same bytes, in batches of ``--batch``
   records whose results are dropped before the next (as in the worker: a
   benchmark that kept every result alive would mostly measure the garbage
   collector walking them);
3. the stage's own share: canonicalizing already-decoded events, with and
   without feature pseudonymization, and JSON lines instead of Avro;
4. one pseudonym: an HMAC (cache miss) and a cache hit.

Run:
    python benchmarks/normalize.py                  # 20,000 events, best of 3
    python benchmarks/normalize.py --events 50000 --repeat 5 --batch 1000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from producer_latency import make_events  # noqa: E402  (a sibling script, not a package)

from driftline.connectors.codec import make_codec, registry_client  # noqa: E402
from driftline.streams.normalize import Decoders, NormalizeConfig, Normalizer, RawRecord  # noqa: E402
from driftline.streams.pseudonymize import Pseudonymizer  # noqa: E402

TOPIC = "driftline.predictions"
#: A fixed benchmark key; never use a key from source code in production.
KEY = b"benchmark-key-benchmark-key-0123"


def best_of(repeat: int, n: int, fn: Callable[[], Any]) -> tuple[float, float]:
    """Best CPU and best wall-clock µs per event over ``repeat`` runs of ``fn`` (which handles ``n`` events).

    CPU time (``time.thread_time``) is the figure to trust on a shared machine:
    wall time also counts the time other processes held the core.
    """
    cpu, wall = [], []
    for _ in range(repeat):
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        fn()
        cpu.append((time.thread_time() - start_cpu) / n * 1e6)
        wall.append((time.perf_counter() - start_wall) / n * 1e6)
    return min(cpu), min(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per phase")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the best counts")
    parser.add_argument("--batch", type=int, default=500, help="records per normalize_batch call (the worker's batch size)")
    args = parser.parse_args(argv)
    n, repeat, size = args.events, args.repeat, args.batch

    print(f"building {n:,} prediction events with 20 features ...", flush=True)
    events = make_events(n)
    registry = registry_client({"url": "mock://benchmark-normalize"})
    single = make_codec("prediction_event")
    confluent = make_codec("prediction_event", registry=registry, topic=TOPIC)
    single_values = single.encode_many(events)
    confluent_values = confluent.encode_many(events)
    json_values = [json.dumps(e).encode() for e in events]
    now_ms = max(e["timestamp"] for e in events) + 1_000
    print(
        f"  Avro: {statistics.fmean(map(len, single_values)):.0f} B/event single-object, "
        f"{statistics.fmean(map(len, confluent_values)):.0f} B Confluent; JSON lines {statistics.fmean(map(len, json_values)):.0f} B",
        flush=True,
    )

    def records(values: list[bytes]) -> list[RawRecord]:
        return [RawRecord(v, e["request_id"].encode(), TOPIC, 0, i, e["timestamp"]) for i, (v, e) in enumerate(zip(values, events))]

    single_records, confluent_records, json_records = records(single_values), records(confluent_values), records(json_values)
    config = NormalizeConfig()
    normalizer = Normalizer(config, pseudonymizer=Pseudonymizer(KEY), decoders=Decoders.build(config.topics, registry=registry))
    hiding = NormalizeConfig(pseudonymize_features=frozenset({"country"}), drop_features=frozenset({"channel"}))
    hiding_normalizer = Normalizer(hiding, pseudonymizer=Pseudonymizer(KEY))

    # sanity: every event is valid, and the stage's documents are what it says
    batch = normalizer.normalize_batch(single_records, now_ms)
    assert not batch.dead_letters, batch.dead_letters[:1]
    doc_bytes = statistics.fmean(len(json.dumps(e.document)) for e in batch.events[:1000])
    print(f"  canonical documents: {doc_bytes:.0f} B of JSON each", flush=True)

    # The fixtures (every event three times over, ~1M objects) are not the stage's: move them out of the
    # garbage collector's sight, or its full collections would walk them and charge the stage for it.
    gc.collect()
    gc.freeze()
    results: dict[str, float] = {}

    def batched(items: list[Any], fn: Callable[[list[Any]], Any]) -> Callable[[], None]:
        """Run ``fn`` per batch and drop its result, as the worker does: only one batch is alive at a time."""

        def run() -> None:
            for start in range(0, len(items), size):
                fn(items[start : start + size])

        return run

    def phase(name: str, fn: Callable[[], Any], count: int = n) -> None:
        print(f"  {name:<52}", end="", flush=True)  # the figures follow when the phase is done
        results[name], wall = best_of(repeat, count, fn)
        print(f" {results[name]:7.2f} µs CPU/event ({1e6 / results[name]:>9,.0f} events/s)   wall {wall:7.2f} µs", flush=True)

    print(f"\ndecode only (best of {repeat}, batches of {size})", flush=True)
    phase("single-object: codec.decode", batched(single_values, lambda b: [single.decode(v) for v in b]))
    phase("Confluent: codec.decode", batched(confluent_values, lambda b: [confluent.decode(v) for v in b]))

    print("\nthe whole stage: decode + validate + canonicalize + pseudonymize", flush=True)
    phase("single-object: normalize_batch", batched(single_records, lambda b: normalizer.normalize_batch(b, now_ms)))
    phase("Confluent: normalize_batch", batched(confluent_records, lambda b: normalizer.normalize_batch(b, now_ms)))
    phase("JSON lines: normalize_batch", batched(json_records, lambda b: normalizer.normalize_batch(b, now_ms)))
    phase("single-object, 1 feature pseudonymized + 1 dropped", batched(single_records, lambda b: hiding_normalizer.normalize_batch(b, now_ms)))

    print("\nthe stage's own share, on already-decoded events", flush=True)
    decoded = [single.decode(v) for v in single_values]
    gc.freeze()
    # a private method, used here only to separate the stage's work from fastavro's
    phase("validate + canonicalize + pseudonymize", batched(decoded, lambda b: [normalizer._prediction(d, now_ms) for d in b]))
    phase("... with 1 feature pseudonymized + 1 dropped", batched(decoded, lambda b: [hiding_normalizer._prediction(d, now_ms) for d in b]))

    print("\none pseudonym", flush=True)
    ids = [f"subject-{i}" for i in range(n)]
    uncached = Pseudonymizer(KEY, cache_size=0)
    phase("HMAC-SHA256 (cache miss)", lambda: [uncached.pseudonymize(s) for s in ids])
    warm = Pseudonymizer(KEY)
    phase("cache hit", lambda: [warm.pseudonymize(s) for s in ids[:1000] * (n // 1000)], count=(n // 1000) * 1000)

    print(f"\nload average while running: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores", flush=True)
    overhead = results["single-object: normalize_batch"] - results["single-object: codec.decode"]
    share = overhead / results["single-object: normalize_batch"]
    print(
        f"summary (CPU time): the stage costs {results['single-object: normalize_batch']:.1f} µs/event, "
        f"of which decoding {results['single-object: codec.decode']:.1f} µs and the rest {overhead:.1f} µs "
        f"({share:.0%}); one worker process normalizes ~{1e6 / results['single-object: normalize_batch']:,.0f} events/s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
