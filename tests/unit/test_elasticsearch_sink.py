"""The sink's batching lifecycle and retry rules, against a scripted in-process fake.

The fake answers the bulk API the way Elasticsearch does (per-item statuses,
or an error for the whole request) following a script, so 429s, 5xx and
authentication failures can be produced on demand. Real-server behaviour is
in tests/integration/test_elasticsearch_sink.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from elasticsearch import AsyncElasticsearch

from driftline.connectors.elasticsearch import (
    ElasticsearchSink,
    RetryPolicy,
    SinkBackpressure,
    SinkError,
    TemplateError,
)

TOPIC = "driftline.predictions"
FAST = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.05)
HEADERS = {"X-Elastic-Product": "Elasticsearch"}

#: One scripted answer: "ok", "item429" (every item 429), "request503",
#: "request401", or a callable(items) -> per-item statuses.
Step = str | Callable[[list[dict[str, Any]]], list[int]]


@dataclass
class FakeElasticsearch:
    script: list[Step] = field(default_factory=list)
    bulk_calls: list[list[dict[str, Any]]] = field(default_factory=list)
    stored: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    template_status: int = 200
    url: str = ""

    async def bulk(self, request: web.Request) -> web.Response:
        lines = [json.loads(line) for line in (await request.text()).splitlines() if line.strip()]
        items = [{"meta": lines[i]["index"], "source": lines[i + 1]} for i in range(0, len(lines), 2)]
        self.bulk_calls.append(items)
        step = self.script.pop(0) if self.script else "ok"
        if step == "request503":
            return web.json_response({"error": {"type": "unavailable"}, "status": 503}, status=503, headers=HEADERS)
        if step == "request401":
            return web.json_response({"error": {"type": "security_exception"}, "status": 401}, status=401, headers=HEADERS)
        statuses = [429] * len(items) if step == "item429" else [201] * len(items) if step == "ok" else step(items)
        out = []
        for item, status in zip(items, statuses):
            meta = {"_index": item["meta"]["_index"], "_id": item["meta"]["_id"], "status": status}
            if status < 300:
                self.stored[(meta["_index"], meta["_id"])] = item["source"]
                meta["result"] = "created"
            else:
                meta["error"] = {"type": "document_parsing_exception" if status == 400 else "es_rejected_execution_exception", "reason": f"status {status}"}
            out.append({"index": meta})
        return web.json_response({"errors": any(s >= 300 for s in statuses), "took": 1, "items": out}, headers=HEADERS)

    async def put_template(self, request: web.Request) -> web.Response:
        if self.template_status != 200:
            return web.json_response({"error": {"type": "x"}, "status": self.template_status}, status=self.template_status, headers=HEADERS)
        self.templates[request.match_info["name"]] = await request.json()
        return web.json_response({"acknowledged": True}, headers=HEADERS)


def run_with_fake(test: Callable[[FakeElasticsearch, AsyncElasticsearch], Awaitable[None]]) -> FakeElasticsearch:
    fake = FakeElasticsearch()

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/_bulk", fake.bulk)
        app.router.add_put("/_bulk", fake.bulk)
        app.router.add_put("/_index_template/{name}", fake.put_template)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fake.url = f"http://127.0.0.1:{port}"
        client = AsyncElasticsearch(fake.url)
        try:
            await test(fake, client)
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(main())
    return fake


def prediction_doc(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": 1_763_850_000_000 + i,
        "request": {"id": f"req-{i}"},
        "model": {"name": "fraud", "version": "v3"},
        "latency_ms": 2.5,
        **extra,
    }


async def started(client: AsyncElasticsearch, **kwargs: Any) -> ElasticsearchSink:
    sink = ElasticsearchSink(client, prefix="unit", retry=kwargs.pop("retry", FAST), **kwargs)
    await sink.start()
    return sink


# --- batching lifecycle ------------------------------------------------------------------


def test_add_buffers_per_topic_partition_and_flush_writes_only_that_one():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client)
        for i in range(10):
            sink.add("predictions", prediction_doc(i), topic=TOPIC, partition=i % 2, offset=100 + i)
        assert {k: b.size for k, b in sink.batches.items()} == {(TOPIC, 0): 5, (TOPIC, 1): 5}
        result = await sink.flush(TOPIC, 1)
        assert (result.indexed, result.rejected, result.offset, result.commit_offset) == (5, (), 109, 110)
        assert sink.batch(TOPIC, 1) is None and sink.batch(TOPIC, 0).size == 5
        assert len(fake.stored) == 5

    run_with_fake(body)


def test_start_installs_one_template_per_stream_and_flush_before_start_is_refused():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = ElasticsearchSink(client, prefix="unit", retry=FAST)
        sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=0)
        with pytest.raises(RuntimeError, match="start"):
            await sink.flush(TOPIC, 0)
        await sink.start()
        await sink.start()  # idempotent
        assert set(fake.templates) == {f"unit-{s}" for s in ("predictions", "outcomes", "drift", "alerts", "metrics", "anomalies", "deadletters")}
        assert fake.templates["unit-predictions"]["index_patterns"] == ["unit-predictions-*"]

    run_with_fake(body)


def test_refused_template_is_a_template_error():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.template_status = 400
        with pytest.raises(TemplateError):
            await ElasticsearchSink(client, prefix="unit", retry=FAST).start()

    run_with_fake(body)


def test_documents_without_timestamp_or_id_or_json_are_rejected_locally_not_raised():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client)
        sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=0, offset=1)
        sink.add("predictions", {"request": {"id": "r"}, "model": {"name": "m", "version": "1"}}, topic=TOPIC, partition=0, offset=2)
        sink.add("predictions", prediction_doc(3, request={}), topic=TOPIC, partition=0, offset=3)
        sink.add("predictions", prediction_doc(4, latency_ms=float("nan")), topic=TOPIC, partition=0, offset=4)
        sink.add("predictions", prediction_doc(5, x=object()), topic=TOPIC, partition=0, offset=5)
        sink.add("drift", {"@timestamp": 0}, topic=TOPIC, partition=0, offset=6, doc_id="x" * 600)
        result = await sink.flush(TOPIC, 0)
        assert result.indexed == 1
        assert [(r.offset, r.status, r.error_type) for r in result.rejected] == [
            (2, None, "invalid_timestamp"),
            (3, None, "missing_id_field"),
            (4, None, "serialization_error"),
            (5, None, "serialization_error"),
            (6, None, "invalid_id"),
        ]
        assert result.commit_offset == 7
        assert len(fake.bulk_calls) == 1 and len(fake.bulk_calls[0]) == 1

    run_with_fake(body)


def test_programming_errors_raise():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client)
        with pytest.raises(ValueError, match="unknown stream"):
            sink.add("nope", prediction_doc(1), topic=TOPIC, partition=0)
        with pytest.raises(ValueError, match="doc_id"):
            sink.add("drift", {"@timestamp": 0}, topic=TOPIC, partition=0)  # drift ids come from the caller
        await sink.close()
        with pytest.raises(RuntimeError, match="closed"):
            sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=0)

    run_with_fake(body)


def test_same_id_twice_in_a_batch_sends_the_last_one_only():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client)
        sink.add("predictions", prediction_doc(1, latency_ms=1.0), topic=TOPIC, partition=0, offset=1)
        sink.add("predictions", prediction_doc(1, latency_ms=9.0), topic=TOPIC, partition=0, offset=2)
        result = await sink.flush(TOPIC, 0)
        assert (result.indexed, result.superseded) == (1, 1)
        (source,) = fake.stored.values()
        assert source["latency_ms"] == 9.0

    run_with_fake(body)


def test_bytes_are_written_as_base64():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client)
        dead = {"@timestamp": 0, "kafka": {"topic": "t", "partition": 0, "offset": 3}, "error": {"stage": "normalize", "type": "decode_error"}, "event": {"original": b"\xc3\x01\x00"}}
        sink.add("deadletters", dead, topic=TOPIC, partition=0)
        await sink.flush(TOPIC, 0)
        (source,) = fake.stored.values()
        assert source["event"]["original"] == "wwEA"

    run_with_fake(body)


def test_flush_of_an_unknown_partition_is_an_empty_success():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        result = await (await started(client)).flush(TOPIC, 7)
        assert (result.indexed, result.rejected, result.commit_offset, result.attempts) == (0, (), None, 0)
        assert fake.bulk_calls == []

    run_with_fake(body)


def test_drop_forgets_a_revoked_partition():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client)
        sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=3)
        assert sink.drop(TOPIC, 3) == 1 and sink.batch(TOPIC, 3) is None

    run_with_fake(body)


# --- retries ---------------------------------------------------------------------------


def test_429_items_are_retried_with_backoff_until_indexed():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.script = ["item429", "item429"]
        sink = await started(client)
        for i in range(20):
            sink.add("predictions", prediction_doc(i), topic=TOPIC, partition=0, offset=i)
        began = time.monotonic()
        result = await sink.flush(TOPIC, 0)
        assert (result.indexed, result.attempts) == (20, 3)
        assert time.monotonic() - began >= FAST.backoff(1) + FAST.backoff(2)

    run_with_fake(body)


def test_only_the_failed_items_are_sent_again():
    def third_is_busy(items: list[dict[str, Any]]) -> list[int]:
        return [503 if i == 2 else 201 for i in range(len(items))]

    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.script = [third_is_busy]
        sink = await started(client)
        for i in range(5):
            sink.add("predictions", prediction_doc(i), topic=TOPIC, partition=0)
        result = await sink.flush(TOPIC, 0)
        assert (result.indexed, result.attempts) == (5, 2)
        assert [len(call) for call in fake.bulk_calls] == [5, 1]

    run_with_fake(body)


def test_whole_request_503_is_retried():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.script = ["request503"]
        sink = await started(client)
        sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=0)
        assert (await sink.flush(TOPIC, 0)).indexed == 1

    run_with_fake(body)


def test_mapping_errors_are_rejected_once_and_never_retried():
    def second_is_bad(items: list[dict[str, Any]]) -> list[int]:
        return [400 if i == 1 else 201 for i in range(len(items))]

    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.script = [second_is_bad]
        sink = await started(client)
        for i in range(3):
            sink.add("predictions", prediction_doc(i), topic=TOPIC, partition=0, offset=i)
        result = await sink.flush(TOPIC, 0)
        assert result.indexed == 2 and len(fake.bulk_calls) == 1
        (rejected,) = result.rejected
        assert (rejected.status, rejected.error_type, rejected.offset, rejected.doc_id is not None) == (400, "document_parsing_exception", 1, True)
        assert rejected.document["request"]["id"] == "req-1" and "status 400" in rejected.reason

    run_with_fake(body)


def test_persistent_503_raises_backpressure_after_bounded_retries_and_drops_the_batch():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.script = ["request503"] * 10
        sink = await started(client)
        for i in range(4):
            sink.add("predictions", prediction_doc(i), topic=TOPIC, partition=0)
        with pytest.raises(SinkBackpressure) as info:
            await sink.flush(TOPIC, 0)
        assert len(fake.bulk_calls) == FAST.max_retries + 1
        assert (info.value.pending, info.value.topic, info.value.partition) == (4, TOPIC, 0)
        assert info.value.retry_after > 0 and "503" in info.value.reason
        assert sink.batch(TOPIC, 0) is None  # dropped: the caller replays from its committed offset

    run_with_fake(body)


def test_refused_request_is_a_sink_error_not_rejected_documents():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        fake.script = ["request401"]
        sink = await started(client)
        sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=0)
        with pytest.raises(SinkError, match="401") as info:
            await sink.flush(TOPIC, 0)
        assert not isinstance(info.value, SinkBackpressure)
        assert len(fake.bulk_calls) == 1

    run_with_fake(body)


def test_concurrent_chunks_index_everything_once():
    async def body(fake: FakeElasticsearch, client: AsyncElasticsearch) -> None:
        sink = await started(client, chunk_size=7, concurrency=3)
        for i in range(100):
            sink.add("predictions", prediction_doc(i), topic=TOPIC, partition=0)
        result = await sink.flush(TOPIC, 0)
        assert result.indexed == 100 and len(fake.stored) == 100
        assert max(len(call) for call in fake.bulk_calls) <= 7

    run_with_fake(body)


def test_closed_port_raises_backpressure_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        client = AsyncElasticsearch(f"http://127.0.0.1:{port}")
        sink = ElasticsearchSink(client, prefix="unit", retry=FAST, install_templates=False)
        await sink.start()
        sink.add("predictions", prediction_doc(1), topic=TOPIC, partition=0)
        began = time.monotonic()
        with pytest.raises(SinkBackpressure, match="onnection"):
            await sink.flush(TOPIC, 0)
        assert time.monotonic() - began < FAST.total_wait + 2.0
        with pytest.raises(SinkBackpressure):
            await ElasticsearchSink(client, prefix="unit", retry=FAST).start()
        await client.close()

    asyncio.run(main())
