"""Documents per second through ElasticsearchSink vs the bare bulk helpers.

All runs index the same ~700 B, 25-field prediction documents into indices
with the same template, one run after another in the same process, so the
figures compare like with like. Each run gets its own index prefix, is
checked with a count, and its indices are deleted before the next run.

Runs:
  helpers.bulk          sync client, chunk 2,000 (the fastest bare setting measured)
  helpers.async_bulk    AsyncElasticsearch, chunk 500
  sink                  ElasticsearchSink add() + flush(), chunk 500, 1 request in flight
  sink concurrency=2    the same with 2 requests in flight

Usage:
    python benchmarks/elasticsearch_sink.py                # starts its own noida-db
    python benchmarks/elasticsearch_sink.py --docs 50000   # longer run
    DRIFTLINE_ES_URL=http://localhost:9200 python benchmarks/elasticsearch_sink.py
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from elasticsearch import AsyncElasticsearch, Elasticsearch, helpers

from driftline.connectors.elasticsearch import ElasticsearchSink, RetryPolicy, document_id, event_time, index_name
from driftline.connectors.elasticsearch.mappings import STREAMS_BY_NAME

STREAM = STREAMS_BY_NAME["predictions"]
START = datetime(2026, 11, 22, tzinfo=timezone.utc)


def document(i: int) -> dict[str, Any]:
    """A prediction document of ~700 B JSON with 25 leaf fields."""
    return {
        "@timestamp": (START + timedelta(milliseconds=37 * i)).isoformat(),
        "event": {"kind": "event", "dataset": "driftline.predictions"},
        "request": {"id": f"req-{i:012d}-{uuid.UUID(int=i * 2654435761).hex[:12]}", "type": "online"},
        "model": {"name": "fraud-detector", "version": "2026.11.3"},
        "latency_ms": round(3.0 + (i % 97) / 13.0, 4),
        "prediction": {"label": "fraud" if i % 11 == 0 else "legitimate", "score": round(((i * 7919) % 1000) / 1000.0, 6)},
        "trace": {"id": uuid.UUID(int=i).hex},
        "span": {"id": uuid.UUID(int=i * 31).hex[:16]},
        "subject": {"id": f"subj-{uuid.UUID(int=i % 5003).hex}"},
        "labels": {"region": ("eu-west-1", "us-east-1", "ap-south-1")[i % 3], "tier": ("free", "pro", "enterprise")[i % 3]},
        "features": {
            "numeric": {f"feature_{j:02d}": round(((i * (j + 3)) % 1009) / 7.0 + 0.123456789, 9) for j in range(8)},
            "categorical": {"country": ("DE", "FR", "US", "IN")[i % 4], "device": ("ios", "android", "web")[i % 3]},
        },
    }


def leaf_count(doc: dict[str, Any]) -> int:
    return sum(leaf_count(v) if isinstance(v, dict) else 1 for v in doc.values())


def bulk_action(prefix: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The same index and id the sink would use, built by hand for the bare helpers."""
    return {
        "_index": index_name(prefix, STREAM.name, event_time(doc)),
        "_id": document_id(doc, STREAM.id_fields),
        "_source": doc,
    }


# --- the runs ---------------------------------------------------------------------------------


def run_sync_bulk(url: str, prefix: str, docs: list[dict[str, Any]], progress: Callable[[int], None]) -> None:
    es = Elasticsearch(url, request_timeout=120)
    try:
        done = 0
        for ok, _ in helpers.streaming_bulk(es, (bulk_action(prefix, d) for d in docs), chunk_size=2000, raise_on_error=True):
            done += ok
            if done % 2000 == 0:
                progress(done)
    finally:
        es.close()


async def run_async_bulk(url: str, prefix: str, docs: list[dict[str, Any]], progress: Callable[[int], None]) -> None:
    async with AsyncElasticsearch(url, request_timeout=120) as es:
        step = 5000
        for start in range(0, len(docs), step):  # progress between calls; the helper chunks by 500
            ok, errors = await helpers.async_bulk(es, (bulk_action(prefix, d) for d in docs[start : start + step]), chunk_size=500)
            assert not errors
            progress(start + ok)


def sink_run(concurrency: int) -> Callable[..., Awaitable[None]]:
    async def run(url: str, prefix: str, docs: list[dict[str, Any]], progress: Callable[[int], None]) -> None:
        async with AsyncElasticsearch(url, request_timeout=120) as es:
            sink = ElasticsearchSink(es, prefix=prefix, concurrency=concurrency, install_templates=False, retry=RetryPolicy())
            await sink.start()
            batch = 5000  # what a worker would buffer per partition between commits
            for start in range(0, len(docs), batch):
                for offset in range(start, min(start + batch, len(docs))):
                    sink.add("predictions", docs[offset], topic="driftline.predictions", partition=0, offset=offset)
                result = await sink.flush("driftline.predictions", 0)
                assert not result.rejected, result.rejected[:1]
                progress(start + result.indexed)
            await sink.close()

    return run


# --- harness ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server() -> Iterator[str]:
    """A noida-db Elasticsearch-API server on a free port, stopped (process group) on exit."""
    binary = str(importlib.resources.files("noida_db").joinpath("noida-db"))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as data_dir:
        log = open(os.path.join(data_dir, "server.log"), "wb")
        proc = subprocess.Popen(
            [binary, "start", "--only", "elasticsearch", "--data-dir", os.path.join(data_dir, "data"),
             "--host", "127.0.0.1", "--elasticsearch-port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(url, timeout=1).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"noida-db did not start; see {log.name}") from None
                    time.sleep(0.1)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


async def prepare(url: str, prefix: str) -> None:
    async with AsyncElasticsearch(url) as es:
        await ElasticsearchSink(es, prefix=prefix, streams=[STREAM]).start()


async def verify_and_clean(url: str, prefix: str, expected: int) -> float:
    async with AsyncElasticsearch(url, request_timeout=300) as es:
        began = time.perf_counter()
        await es.indices.refresh(index=f"{prefix}-*")
        refresh_s = time.perf_counter() - began
        found = (await es.count(index=f"{prefix}-*"))["count"]
        if found != expected:
            raise SystemExit(f"{prefix}: {found} documents indexed, expected {expected}")
        for index in await es.indices.get(index=f"{prefix}-*"):
            await es.indices.delete(index=index)
        await es.indices.delete_index_template(name=STREAM.template_name(prefix))
        return refresh_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000, help="documents per run (default 10,000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, in alternating order to cancel warm-up effects (default 2)")
    parser.add_argument("--es-url", default=os.environ.get("DRIFTLINE_ES_URL"), help="default: DRIFTLINE_ES_URL, else start noida-db")
    args = parser.parse_args()

    docs = [document(i) for i in range(args.docs)]
    sizes = [len(json.dumps(d, separators=(",", ":"))) for d in docs[:1000]]
    print(f"documents: {args.docs:,} per run, ~{sum(sizes) / len(sizes):.0f} B JSON, {leaf_count(docs[0])} fields each")

    runs: list[tuple[str, Callable[..., Any]]] = [
        ("helpers.bulk (sync, chunk 2000)", run_sync_bulk),
        ("helpers.async_bulk (chunk 500)", run_async_bulk),
        ("ElasticsearchSink (chunk 500)", sink_run(1)),
        ("ElasticsearchSink (chunk 500, concurrency 2)", sink_run(2)),
    ]

    def one_run(url: str, name: str, fn: Callable[..., Any]) -> float:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        asyncio.run(prepare(url, prefix))
        began = time.perf_counter()

        def progress(done: int) -> None:
            rate = done / max(time.perf_counter() - began, 1e-9)
            print(f"\r  {name}: {done:>8,} docs  {rate:>7,.0f} docs/s", end="", flush=True)

        if asyncio.iscoroutinefunction(fn):
            asyncio.run(fn(url, prefix, docs, progress))
        else:
            fn(url, prefix, docs, progress)
        seconds = time.perf_counter() - began
        refresh_s = asyncio.run(verify_and_clean(url, prefix, args.docs))
        print(f"\r  {name}: {args.docs:,} docs in {seconds:.1f} s = {args.docs / seconds:,.0f} docs/s (refresh {refresh_s:.1f} s, count ok)")
        return args.docs / seconds

    def bench(url: str) -> None:
        print(f"server: {url}")
        rates: dict[str, list[float]] = {name: [] for name, _ in runs}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}")
            for name, fn in runs if round_ % 2 == 0 else runs[::-1]:
                rates[name].append(one_run(url, name, fn))
        base = sum(rates[runs[1][0]]) / args.rounds
        print(f"\nsummary: docs/s, mean of {args.rounds} round(s) [min-max], relative to helpers.async_bulk")
        for name, values in rates.items():
            mean = sum(values) / len(values)
            print(f"  {name:<46} {mean:>7,.0f} [{min(values):,.0f}-{max(values):,.0f}]  {mean / base:>5.2f}x")

    if args.es_url:
        bench(args.es_url)
    else:
        with local_server() as url:
            bench(url)


if __name__ == "__main__":
    sys.exit(main())
