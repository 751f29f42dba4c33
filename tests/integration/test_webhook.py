"""Webhook delivery against a real aiohttp web server on 127.0.0.1, started by each test.

No Kafka or Elasticsearch needed. Back-offs are a few milliseconds so the
retry tests run quickly.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from driftline.connectors.webhook import WebhookNotifier, WebhookResult, WebhookRetry
from driftline.streams.alerts import AlertPolicy, DriftEvent

FAST_RETRY = WebhookRetry(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


def an_alert():
    event = DriftEvent(
        "adwin", "concept", "error", "fraud", "3", position=1200, event_time_ms=1_790_000_000_000,
        slice={"region": "eu"}, statistic=0.12, threshold=0.05,
    )  # fmt: skip
    return AlertPolicy().consider(event, {})


@dataclass
class Receiver:
    """A webhook endpoint that answers with the given statuses in turn (the last one repeats) and records requests."""

    statuses: Sequence[int] = (200,)
    delays: Sequence[float] = ()
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        n = len(self.requests)
        self.requests.append({"body": await request.read(), "headers": dict(request.headers)})
        if n < len(self.delays):
            await asyncio.sleep(self.delays[n])
        status = self.statuses[min(n, len(self.statuses) - 1)]
        return web.Response(status=status, text="nope" if status >= 300 else "ok", headers=self.extra_headers)


async def _with_server(receiver: Receiver, body: Callable[[str], Awaitable[Any]]) -> Any:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        return await body(str(server.make_url("/hook")))


def deliver_to(receiver: Receiver, payload: dict[str, Any], **kwargs: Any) -> WebhookResult:
    async def body(url: str) -> WebhookResult:
        async with WebhookNotifier(url, **({"retry": FAST_RETRY} | kwargs)) as notifier:
            return await notifier.deliver(payload, key=payload.get("alert", {}).get("id"))

    return asyncio.run(_with_server(receiver, body))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_delivered_payload_is_the_alert_json():
    alert = an_alert()
    receiver = Receiver()
    result = deliver_to(receiver, alert.document(), headers={"Authorization": "Bearer test-token"})
    assert result == WebhookResult(delivered=True, attempts=1, status=200)
    [request] = receiver.requests
    assert json.loads(request["body"]) == json.loads(alert.to_json())
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer test-token"
    assert request["headers"]["Idempotency-Key"] == alert.id


def test_server_errors_are_retried_until_delivered():
    receiver = Receiver(statuses=(503, 503, 200))
    result = deliver_to(receiver, an_alert().document())
    assert result.delivered and result.attempts == 3 and result.status == 200
    assert len(receiver.requests) == 3
    assert len({r["headers"]["Idempotency-Key"] for r in receiver.requests}) == 1


def test_too_many_requests_is_retried_after_retry_after():
    receiver = Receiver(statuses=(429, 200), extra_headers={"Retry-After": "0"})
    result = deliver_to(receiver, an_alert().document())
    assert result == WebhookResult(delivered=True, attempts=2, status=200)


def test_client_error_fails_at_once_without_retries():
    receiver = Receiver(statuses=(400,))
    result = deliver_to(receiver, an_alert().document())
    assert not result.delivered
    assert result.attempts == 1 and result.status == 400
    assert result.reason == "HTTP 400: nope"
    assert len(receiver.requests) == 1


def test_server_errors_until_the_last_attempt_fail_with_the_last_status():
    receiver = Receiver(statuses=(500,))
    result = deliver_to(receiver, an_alert().document())
    assert result == WebhookResult(delivered=False, attempts=3, status=500, reason="HTTP 500: nope")
    assert len(receiver.requests) == 3


def test_a_slow_answer_times_out_and_is_retried():
    receiver = Receiver(delays=(2.0,))
    started = time.monotonic()
    result = deliver_to(receiver, an_alert().document(), timeout_s=0.3)
    assert result == WebhookResult(delivered=True, attempts=2, status=200)
    assert time.monotonic() - started < 2.0


def test_unreachable_endpoint_fails_quickly_after_the_configured_attempts():
    async def main() -> WebhookResult:
        async with WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", retry=FAST_RETRY, timeout_s=1.0) as n:
            return await n.deliver(an_alert().document())

    started = time.monotonic()
    result = asyncio.run(main())
    assert not result.delivered
    assert result.attempts == FAST_RETRY.max_attempts and result.status is None
    assert "ClientConnectorError" in result.reason
    assert time.monotonic() - started < 2.0


def test_delivery_never_raises_before_start_after_close_or_on_bad_payloads():
    async def main() -> list[WebhookResult]:
        notifier = WebhookNotifier("http://127.0.0.1:9/hook", retry=FAST_RETRY)
        results = [await notifier.deliver({"a": 1})]
        await notifier.start()
        results.append(await notifier.deliver({"value": float("nan")}))
        results.append(await notifier.deliver({"value": object()}))
        await notifier.close()
        await notifier.close()
        results.append(await notifier.deliver({"a": 1}))
        return results

    not_started, nan, not_json, closed = asyncio.run(main())
    assert not_started == closed == WebhookResult(False, 0, reason="webhook notifier is not started")
    assert not nan.delivered and nan.attempts == 0 and nan.reason.startswith("payload is not JSON")
    assert not not_json.delivered and not_json.attempts == 0
