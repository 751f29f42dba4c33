"""The Elasticsearch sink against a real server (noida-db locally, or DRIFTLINE_ES_URL).

Every test writes under its own index prefix and deletes its indices and
templates afterwards, so tests do not see each other's documents. The
session header printed by pytest says which server the tests ran against.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from elasticsearch import AsyncElasticsearch

from driftline.connectors.elasticsearch import (
    STREAMS,
    ElasticsearchSink,
    RetryPolicy,
    SinkBackpressure,
)

TOPIC = "driftline.predictions"
FAST = RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=0.2)
DAY = datetime(2026, 11, 22, tzinfo=timezone.utc)


@pytest.fixture
def prefix(servers: Any) -> Iterator[str]:
    """A fresh index prefix; its indices and templates are deleted after the test."""
    name = f"dltest-{uuid.uuid4().hex[:10]}"
    yield name

    async def cleanup() -> None:
        async with AsyncElasticsearch(servers.es_url) as es:
            indices = await es.indices.get(index=f"{name}-*", allow_no_indices=True, expand_wildcards="all")
            for index in indices:  # one by one: wildcard deletes are refused by default
                await es.indices.delete(index=index, ignore_unavailable=True)
            for stream in STREAMS:
                await es.options(ignore_status=404).indices.delete_index_template(name=stream.template_name(name))

    asyncio.run(cleanup())


def run(servers: Any, test: Callable[[AsyncElasticsearch], Awaitable[None]]) -> None:
    async def main() -> None:
        async with AsyncElasticsearch(servers.es_url, request_timeout=60) as es:
            await test(es)

    asyncio.run(main())


def prediction(i: int, moment: datetime = DAY, **extra: Any) -> dict[str, Any]:
    """A ~700 B prediction document with 20 numeric features."""
    return {
        "@timestamp": (moment + timedelta(seconds=i)).isoformat(),
        "event": {"kind": "event", "dataset": "driftline.predictions"},
        "request": {"id": f"req-{i:08d}", "type": "online"},
        "model": {"name": "fraud-detector", "version": "v3"},
        "latency_ms": 3.25,
        "prediction": {"label": ["ok"], "score": [0.83], "scores": {"ok": 0.83, "fraud": 0.17}},
        "features": {"numeric": {f"f{j}": (i * 31 + j) % 97 for j in range(20)}, "categorical": {"country": "DE"}},
        "labels": {"region": "eu", "tier": 2},
        "trace": {"id": f"{i:032x}"},
        **extra,
    }


async def count(es: AsyncElasticsearch, pattern: str) -> int:
    await es.indices.refresh(index=pattern)
    return (await es.count(index=pattern))["count"]


def field_type(mappings: dict[str, Any], path: str) -> str:
    node = mappings
    for part in path.split("."):
        node = node["properties"][part]
    return node["type"]


def test_start_installs_templates_and_new_indices_get_their_mappings(servers, prefix):
    async def body(es: AsyncElasticsearch) -> None:
        async with ElasticsearchSink(es, prefix=prefix, retry=FAST) as sink:
            await sink.start()  # a second install is harmless
            installed = await es.indices.get_index_template(name=f"{prefix}-*")
            assert {t["name"] for t in installed["index_templates"]} == {s.template_name(prefix) for s in STREAMS}

            sink.add("predictions", prediction(1), topic=TOPIC, partition=0, offset=1)
            sink.add("drift", {"@timestamp": DAY, "model": {"name": "m", "version": "1"}, "drift": {"detector": "adwin", "stream": "error", "statistic": 0.31, "position": 1234}}, topic=TOPIC, partition=0, doc_id="adwin/m/1/1234")
            sink.add("alerts", {"@timestamp": DAY, "alert": {"severity": "high", "rule": "drift", "cooldown_s": 600}}, topic=TOPIC, partition=0, doc_id="drift/m/1/1234")
            sink.add("deadletters", {"@timestamp": DAY, "error": {"type": "decode_error", "message": "bad magic byte", "stage": "normalize"}, "kafka": {"topic": TOPIC, "partition": 0, "offset": 9}, "event": {"original": b"\x00\xffraw"}, "surprise": {"x": 1}}, topic=TOPIC, partition=0)
            result = await sink.flush(TOPIC, 0)
            assert (result.indexed, result.rejected) == (4, ())

        day = DAY.strftime("%Y.%m.%d")
        predictions = (await es.indices.get_mapping(index=f"{prefix}-predictions-{day}"))[f"{prefix}-predictions-{day}"]["mappings"]
        for path, expected in {
            "@timestamp": "date",
            "model.name": "keyword",
            "request.id": "keyword",
            "latency_ms": "float",
            "trace.id": "keyword",
            "labels.region": "keyword",
            "labels.tier": "keyword",  # a number in a slice attribute is still a keyword
            "features.numeric.f0": "double",  # integer values, double mapping
            "features.categorical.country": "keyword",
            "prediction.scores.ok": "double",
            "event.dataset": "keyword",
        }.items():
            assert field_type(predictions, path) == expected, path
        drift = (await es.indices.get_mapping(index=f"{prefix}-drift-{day}"))[f"{prefix}-drift-{day}"]["mappings"]
        assert field_type(drift, "drift.statistic") == "double" and field_type(drift, "drift.position") == "long"
        alerts = (await es.indices.get_mapping(index=f"{prefix}-alerts-{day}"))[f"{prefix}-alerts-{day}"]["mappings"]
        assert field_type(alerts, "alert.severity") == "keyword" and field_type(alerts, "alert.cooldown_s") == "double"
        dead = (await es.indices.get_mapping(index=f"{prefix}-deadletters-{day}"))[f"{prefix}-deadletters-{day}"]["mappings"]
        assert field_type(dead, "event.original") == "binary" and field_type(dead, "error.type") == "keyword"
        assert "surprise" not in dead["properties"]  # dynamic false: kept in _source, not mapped
        await es.indices.refresh(index=f"{prefix}-deadletters-*")
        hit = (await es.search(index=f"{prefix}-deadletters-*", query={"term": {"error.type": "decode_error"}}))["hits"]["hits"][0]
        assert base64.b64decode(hit["_source"]["event"]["original"]) == b"\x00\xffraw"
        assert hit["_source"]["surprise"] == {"x": 1}

    run(servers, body)


def test_n_documents_give_n_documents_and_a_replay_duplicates_nothing(servers, prefix):
    n = 3000

    async def body(es: AsyncElasticsearch) -> None:
        async with ElasticsearchSink(es, prefix=prefix, retry=FAST) as sink:
            for i in range(n):
                sink.add("predictions", prediction(i), topic=TOPIC, partition=i % 3, offset=i // 3)
            results = [await sink.flush(TOPIC, p) for p in range(3)]
            assert sum(r.indexed for r in results) == n and all(r.ok for r in results)
            assert [r.commit_offset for r in results] == [n // 3] * 3
            assert await count(es, sink.index_pattern("predictions")) == n

        # A restarted worker replays the uncommitted tail: same ids, no duplicates.
        async with ElasticsearchSink(es, prefix=prefix, retry=FAST) as sink:
            for i in range(n):
                sink.add("predictions", prediction(i), topic=TOPIC, partition=0, offset=i)
            assert (await sink.flush(TOPIC, 0)).indexed == n
            assert await count(es, sink.index_pattern("predictions")) == n

    run(servers, body)


def test_mapping_rejected_document_comes_back_with_reason_and_the_rest_is_indexed(servers, prefix):
    async def body(es: AsyncElasticsearch) -> None:
        async with ElasticsearchSink(es, prefix=prefix, retry=FAST) as sink:
            for i in range(50):
                doc = prediction(i, latency_ms="slow") if i == 17 else prediction(i)
                sink.add("predictions", doc, topic=TOPIC, partition=0, offset=i)
            sink.add("predictions", prediction(50, features={"numeric": {"f0": "not a number"}}), topic=TOPIC, partition=0, offset=50)
            result = await sink.flush(TOPIC, 0)
            assert result.indexed == 49 and result.commit_offset == 51
            assert sorted(r.offset for r in result.rejected) == [17, 50]
            for rejected in result.rejected:
                assert rejected.status == 400 and rejected.stream == "predictions"
                assert rejected.error_type  # e.g. document_parsing_exception / mapper_parsing_exception
                assert ("latency_ms" if rejected.offset == 17 else "features.numeric.f0") in rejected.reason
            assert await count(es, sink.index_pattern("predictions")) == 49

    run(servers, body)


def test_documents_go_to_the_daily_index_of_their_utc_timestamp(servers, prefix):
    async def body(es: AsyncElasticsearch) -> None:
        async with ElasticsearchSink(es, prefix=prefix, retry=FAST) as sink:
            moments = {
                "a": datetime(2026, 11, 21, 23, 59, 59, tzinfo=timezone.utc),
                "b": datetime(2026, 11, 22, 0, 30, tzinfo=timezone(timedelta(hours=2))),  # 21st in UTC
                "c": datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc),
                "d": int(datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc).timestamp() * 1000),  # epoch millis
            }
            for i, (name, moment) in enumerate(moments.items()):
                stamp = moment.isoformat() if isinstance(moment, datetime) else moment
                sink.add("predictions", prediction(i, **{"@timestamp": stamp, "request": {"id": name}}), topic=TOPIC, partition=0)
            assert (await sink.flush(TOPIC, 0)).indexed == 4
            await es.indices.refresh(index=f"{prefix}-predictions-*")
            counts = {idx["index"]: int(idx["docs.count"]) for idx in await es.cat.indices(index=f"{prefix}-predictions-*", format="json")}
            assert counts == {
                f"{prefix}-predictions-2026.11.21": 2,
                f"{prefix}-predictions-2026.11.22": 1,
                f"{prefix}-predictions-2026.11.23": 1,
            }

    run(servers, body)


class TcpProxy:
    """A loopback TCP forwarder that can be taken down and up again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # cut open keep-alive connections too
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def test_unavailable_elasticsearch_raises_backpressure_then_a_replayed_flush_succeeds(servers, prefix):
    target = urlsplit(servers.es_url)
    if target.scheme != "http":
        pytest.skip("the outage is simulated with a plain-TCP proxy")

    async def body(es: AsyncElasticsearch) -> None:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 80)
        await proxy.up()
        async with AsyncElasticsearch(f"http://127.0.0.1:{proxy.port}", request_timeout=30) as via_proxy:
            sink = ElasticsearchSink(via_proxy, prefix=prefix, retry=FAST)
            await sink.start()
            await proxy.down()

            for i in range(200):
                sink.add("predictions", prediction(i), topic=TOPIC, partition=0, offset=i)
            began = time.monotonic()
            with pytest.raises(SinkBackpressure) as info:
                await sink.flush(TOPIC, 0)
            assert time.monotonic() - began < FAST.total_wait + 5.0, "bounded retries"
            assert (info.value.pending, info.value.partition, info.value.retry_after > 0) == (200, 0, True)
            assert sink.batch(TOPIC, 0) is None  # dropped; nothing was committed

            await proxy.up()  # Elasticsearch is back: the caller replays from its committed offset
            for i in range(200):
                sink.add("predictions", prediction(i), topic=TOPIC, partition=0, offset=i)
            result = await sink.flush(TOPIC, 0)
            assert (result.indexed, result.commit_offset) == (200, 200)
            await sink.close()
            await proxy.down()
        assert await count(es, f"{prefix}-predictions-*") == 200

    run(servers, body)


def test_a_taken_batch_survives_an_outage_longer_than_the_retries_and_is_then_indexed_whole(servers, prefix):
    """The worker's retry loop writes the same batch again until Elasticsearch is back: nothing is dropped."""
    from driftline.streams.app import flush_until_indexed

    target = urlsplit(servers.es_url)
    if target.scheme != "http":
        pytest.skip("the outage is simulated with a plain-TCP proxy")

    async def body(es: AsyncElasticsearch) -> None:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 80)
        await proxy.up()
        async with AsyncElasticsearch(f"http://127.0.0.1:{proxy.port}", request_timeout=30) as via_proxy:
            sink = ElasticsearchSink(via_proxy, prefix=prefix, retry=FAST)
            await sink.start()
            await proxy.down()
            for i in range(200):
                sink.add("predictions", prediction(i), topic=TOPIC, partition=0, offset=i)
            batch = sink.take(TOPIC, 0)
            assert sink.batch(TOPIC, 0) is None and batch.size == 200
            with pytest.raises(SinkBackpressure):
                await sink.write(batch)
            assert batch.size == 200, "a failed write leaves the batch as it was"

            async def back_later() -> None:  # down for several times the sink's own retry budget
                await asyncio.sleep(3 * FAST.total_wait + 1.0)
                await proxy.up()

            restore = asyncio.ensure_future(back_later())
            result = await flush_until_indexed(sink, batch)
            await restore
            assert (result.indexed, result.commit_offset) == (200, 200)
            await sink.close()
            await proxy.down()
        assert await count(es, f"{prefix}-predictions-*") == 200

    run(servers, body)


def test_closed_port_fails_start_and_flush_with_backpressure(servers, prefix):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes

    async def main() -> None:
        async with AsyncElasticsearch(f"http://127.0.0.1:{port}") as client:
            began = time.monotonic()
            with pytest.raises(SinkBackpressure, match="template"):
                await ElasticsearchSink(client, prefix=prefix, retry=FAST).start()
            assert time.monotonic() - began < FAST.total_wait + 5.0

    asyncio.run(main())
