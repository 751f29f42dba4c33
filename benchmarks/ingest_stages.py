"""CPU cost per request of the worker's own work, stage by stage, without servers or Faust.

The simulated fraud model's traffic (each request one prediction and one
feedback event, Avro-encoded as the producer API sends them), cut into the
worker's batches: ``--batch`` records per source partition, partitions
round-robin, predictions and labels in timestamp order as the intake releases
them. Everything runs in this process through the classes the worker uses:

In the intake (a process of its own by default, ``DRIFTLINE_INTAKE_PROCESS``):

1. ``normalize``: ``Normalizer.normalize_batch`` (decode, validate, canonicalize, pseudonymize);
2. ``forward``: the normalized events as intake batches (``normalized_batches``
   minus the normalizing, and the Avro encoding of the batch);

on the worker's event loop:

3. ``receive``: the intake batches decoded back into events;
4. ``prepare``: ``Pipeline.prepare_partition`` = the label join (on a staged
   store over a dict, as over the memory table) + the documents to index +
   one observation batch per model key;
5. ``encode``: the observation batches split to Kafka's size limit and encoded;

in the detect process (a process of its own by default, ``DRIFTLINE_DETECT_PROCESS``):

6. ``detect``: what the detect process does (``BankKeeper.apply``): decoded,
   applied to each model key's ``DetectorBank`` (reorder, River detectors,
   windows), the bank checkpointed once per batch of observation batches as
   the detect agent does.

Each stage is timed in CPU seconds of this thread per request, twice: with
Python's default garbage-collector thresholds, then tuned as the worker tunes
them (``streams/collector.py``). Windows on, as by default; no baseline.

Run:
    python benchmarks/ingest_stages.py                    # 20,000 requests
    python benchmarks/ingest_stages.py --requests 50000 --batch 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faust  # noqa: E402

from driftline.connectors.codec import make_codec  # noqa: E402
from driftline.settings import Settings  # noqa: E402
from driftline.simulation import SimulatedService  # noqa: E402
from driftline.streams.app import Pipeline  # noqa: E402
from driftline.streams.collector import tune_garbage_collector  # noqa: E402
from driftline.streams.banks import NEW_BANK, BankKeeper, BankRequest  # noqa: E402
from driftline.streams.detect import split_batch  # noqa: E402
from driftline.streams.intake import IntakeBatch, normalized_batches  # noqa: E402
from driftline.streams.normalize import RawRecord  # noqa: E402
from driftline.streams.staging import StagedStore  # noqa: E402

#: A fixed benchmark key; never use a key from source code in production.
KEY = "benchmark-key-benchmark-key-0123"


def partition_batches(settings: Settings, requests: int, batch: int) -> list[tuple[int, list[RawRecord]]]:
    """The traffic as the ingest agent gets it: (partition, records) batches, partitions taking turns."""
    traffic = SimulatedService(n=requests, malformed_count=0).traffic()
    by_partition: dict[int, list[RawRecord]] = defaultdict(list)
    partitions = settings.topic_partitions
    for topic, codec, events in ((settings.predictions_topic, "prediction_event", traffic.predictions),
                                 (settings.feedback_topic, "feedback_event", traffic.feedback)):
        for i, value in enumerate(make_codec(codec).encode_many(events)):
            p = i % partitions
            by_partition[p].append(RawRecord(value, None, topic, p, i // partitions, events[i]["timestamp"]))
    for records in by_partition.values():
        records.sort(key=lambda r: (r.timestamp_ms, r.topic))
    longest = max(len(records) for records in by_partition.values())
    return [(p, by_partition[p][start:start + batch]) for start in range(0, longest, batch)
            for p in sorted(by_partition) if by_partition[p][start:start + batch]]


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.thread_time()
    result = fn()
    return time.thread_time() - start, result


def run(settings: Settings, batches: list[tuple[int, list[RawRecord]]], detect_batch: int) -> dict[str, float]:
    """CPU seconds per stage over all batches, with a fresh pipeline (empty join store, no banks)."""
    pipeline = Pipeline(faust.App(f"bench-{id(batches)}", broker="kafka://localhost:1"), settings)
    pipeline.normalizer = pipeline.build_normalizer()
    seconds: dict[str, float] = defaultdict(float)
    join: dict = {}
    encoded: list[tuple[str, bytes]] = []
    now_ms = int(time.time() * 1000)
    for partition, records in batches:
        spent, _ = cpu(lambda: pipeline.normalizer.normalize_batch(records, now_ms))
        seconds["normalize"] += spent
        sources = [(r.topic, r.offset, r.timestamp_ms, r.key, r.value) for r in records]
        spent, messages = cpu(lambda: [b.encode() for b in normalized_batches(partition, sources, pipeline.normalizer,
                                                                               now_ms)])
        seconds["forward"] += spent - seconds_of(pipeline, records, now_ms)
        spent, received = cpu(lambda: [IntakeBatch.decode(m).normalized()[0] for m in messages])
        seconds["receive"] += spent
        events = [event for part in received for event in part]
        store = StagedStore(join)
        spent, prepared = cpu(lambda: pipeline.prepare_partition(partition, events, store))
        seconds["prepare"] += spent
        store.commit()
        spent, messages = cpu(lambda: [(b.key.encode(), part.to_json()) for b in prepared.batches
                                       for part in split_batch(b)])
        seconds["encode"] += spent
        encoded += messages
    keeper = BankKeeper(settings, catalog=None)  # what the detect process does, here in this thread
    kept: dict[str, str] = {}  # the table: a dict, without its changelog

    def detect(messages: list[tuple[str, bytes]]) -> None:
        by_key: dict[str, list[bytes]] = defaultdict(list)
        for key, value in messages:
            by_key[key].append(value)
        requests = [BankRequest(key, 0, values, None if key in kept else NEW_BANK) for key, values in by_key.items()]
        for update in keeper.apply(requests, now_ms, "benchmark"):
            kept[update.key] = update.checkpoint

    for start in range(0, len(encoded), detect_batch):
        spent, _ = cpu(lambda: detect(encoded[start:start + detect_batch]))
        seconds["detect"] += spent
    return seconds


def seconds_of(pipeline: Pipeline, records: list[RawRecord], now_ms: int) -> float:
    """CPU seconds of normalizing ``records`` once more (to take it out of the forward stage's time)."""
    spent, _ = cpu(lambda: pipeline.normalizer.normalize_batch(records, now_ms))
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests (a prediction and its feedback)")
    parser.add_argument("--batch", type=int, default=1_000, help="records per partition batch (the intake's batch size)")
    parser.add_argument("--detect-batch", type=int, default=8, help="observation batches per detect batch")
    args = parser.parse_args(argv)
    settings = Settings(pseudonymization_key=KEY, app_id="bench-stages")
    print(f"encoding {args.requests:,} requests ...", flush=True)
    batches = partition_batches(settings, args.requests, args.batch)
    results = {}
    for label, tune in (("default gc", False), ("tuned gc", True)):
        if tune:
            tune_garbage_collector()
        print(f"running the stages ({label}) ...", flush=True)
        results[label] = run(settings, batches, args.detect_batch)
    print(f"\nCPU µs per request (a prediction and its feedback), {args.requests:,} requests\n")
    print("| stage | default gc | tuned gc |")
    print("| --- | --- | --- |")
    places = {"intake": ("normalize", "forward"), "event loop": ("receive", "prepare", "encode"),
              "detect": ("detect",)}
    totals: dict[str, dict[str, float]] = {}
    for where, stages in places.items():
        for stage in stages:
            print(f"| {where}: {stage} | {results['default gc'][stage] / args.requests * 1e6:.0f} "
                  f"| {results['tuned gc'][stage] / args.requests * 1e6:.0f} |")
        totals[where] = {label: sum(r[s] for s in stages) for label, r in results.items()}
        print(f"| **{where} total** | {totals[where]['default gc'] / args.requests * 1e6:.0f} "
              f"| {totals[where]['tuned gc'] / args.requests * 1e6:.0f} |")
    print("\none core's ceiling with the tuned collector (before Faust, Kafka and Elasticsearch): "
          + ", ".join(f"{where} {args.requests / totals[where]['tuned gc']:,.0f} requests/s" for where in places)
          + f"; all three on one core {args.requests / sum(t['tuned gc'] for t in totals.values()):,.0f} requests/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
