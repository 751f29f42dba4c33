"""Webhook delivery: one generic JSON POST per alert, retried with back-off.

:class:`WebhookNotifier` posts a JSON object (an alert's document, see
:meth:`driftline.streams.alerts.Alert.document`) to one configured URL and
returns a :class:`WebhookResult`; it never raises into the pipeline (only
cancellation propagates).

Lifecycle: :meth:`WebhookNotifier.start` opens an ``aiohttp`` client session,
:meth:`WebhookNotifier.close` closes it; ``async with`` does both.

Retries: an attempt that gets a connection error, a timeout (``timeout_s``
per attempt), 429 or any 5xx is retried after ``initial_backoff_s * 2**(n-1)``
seconds (capped at ``max_backoff_s``; a numeric ``Retry-After`` header can
lengthen the wait up to that cap), at most ``max_attempts`` attempts in all.
Other answers fail at once: a 4xx will not change by asking again, and
redirects are not followed. Any 2xx is delivered.

Each request carries ``Content-Type: application/json``, the custom headers
(e.g. ``Authorization``) and, when a key is given, an ``Idempotency-Key``
header: the same alert delivered twice (retries, Kafka replays) carries the
same key, so the receiver can drop duplicates.

Example:
    >>> import asyncio
    >>> async def main():
    ...     retry = WebhookRetry(max_attempts=2, initial_backoff_s=0.01)
    ...     async with WebhookNotifier("http://127.0.0.1:9/hook", retry=retry) as notifier:  # nothing listens
    ...         return await notifier.deliver({"alert": {"id": "alert-1"}}, key="alert-1")
    >>> result = asyncio.run(main())
    >>> result.delivered, result.attempts, result.reason.startswith("ClientConnectorError")
    (False, 2, True)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["WebhookNotifier", "WebhookResult", "WebhookRetry", "is_retryable_status"]

logger = logging.getLogger(__name__)

#: Longest part of an error response body kept in a failure reason.
_MAX_REASON_BODY = 200


def is_retryable_status(status: int) -> bool:
    """True for answers worth asking again: 429 (too many requests) and every 5xx.

    Example:
        >>> [is_retryable_status(s) for s in (200, 400, 404, 429, 500, 503)]
        [False, False, False, True, True, True]
    """
    return status == 429 or 500 <= status <= 599


@dataclass(frozen=True)
class WebhookRetry:
    """How many attempts, and how long to wait between them.

    Parameters
    ----------
    max_attempts
        Attempts in all, the first included (1 = never retry).
    initial_backoff_s
        Seconds before the second attempt; doubled for each further one.
    max_backoff_s
        Upper bound of one wait.

    Example:
        >>> r = WebhookRetry(max_attempts=4, initial_backoff_s=0.5, max_backoff_s=1.5)
        >>> [r.backoff(n) for n in (1, 2, 3)]
        [0.5, 1.0, 1.5]
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("back-off seconds must not be negative")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        A server's ``Retry-After`` (seconds) lengthens the wait, up to ``max_backoff_s``.
        """
        wait = self.initial_backoff_s * 2 ** max(0, attempt - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(self.max_backoff_s, wait)


@dataclass(frozen=True)
class WebhookResult:
    """The outcome of one delivery.

    ``delivered`` is True after a 2xx answer. ``attempts`` counts the requests
    made (0 if none could be made), ``status`` is the last HTTP status (None
    when no answer came), ``reason`` says why a delivery failed.

    Example:
        >>> WebhookResult(delivered=False, attempts=1, status=400, reason="HTTP 400: bad payload")
        WebhookResult(delivered=False, attempts=1, status=400, reason='HTTP 400: bad payload')
    """

    delivered: bool
    attempts: int
    status: int | None = None
    reason: str = ""


class WebhookNotifier:
    """POSTs JSON payloads to one URL, with retries; see the module docstring.

    Parameters
    ----------
    url
        The ``http://`` or ``https://`` address to POST to.
    headers
        Extra request headers, e.g. ``{"Authorization": "Bearer ..."}``.
    timeout_s
        Time limit of one attempt (connecting, sending and reading the answer).
    retry
        A :class:`WebhookRetry`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        retry: WebhookRetry = WebhookRetry(),
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r} must start with http:// or https://")
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s!r}")
        self.url = url
        self.headers = {"Content-Type": "application/json", "User-Agent": "driftline-webhook", **(headers or {})}
        self.timeout_s = timeout_s
        self.retry = retry
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client session (idempotent)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        """Close the HTTP client session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> WebhookNotifier:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def deliver(self, payload: Mapping[str, Any], *, key: str | None = None) -> WebhookResult:
        """POST ``payload`` as JSON until it is accepted or the attempts run out; never raises.

        ``key`` (e.g. the alert id) is sent as the ``Idempotency-Key`` header.
        """
        session = self._session
        if session is None or session.closed:
            return WebhookResult(False, 0, reason="webhook notifier is not started")
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return WebhookResult(False, 0, reason=f"payload is not JSON: {exc}")
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        status: int | None = None
        reason = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            retry_after: float | None = None
            try:
                async with session.post(self.url, data=body, headers=headers, allow_redirects=False) as response:
                    status = response.status
                    if 200 <= status <= 299:
                        return WebhookResult(True, attempt, status)
                    text = (await response.content.read(_MAX_REASON_BODY)).decode("utf-8", "replace")
                    reason = f"HTTP {status}: {text}".strip()
                    if not is_retryable_status(status):
                        break
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            except TimeoutError:
                status, reason = None, f"no answer within {self.timeout_s} s"
            except aiohttp.ClientError as exc:
                status, reason = None, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - an edge must not break the pipeline
                logger.exception("webhook delivery to %s failed unexpectedly", self.url)
                return WebhookResult(False, attempt, status, f"{type(exc).__name__}: {exc}")
            if attempt < self.retry.max_attempts:
                await asyncio.sleep(self.retry.backoff(attempt, retry_after))
        logger.warning("webhook delivery to %s failed after %d attempt(s): %s", self.url, attempt, reason)
        return WebhookResult(False, attempt, status, reason)


def _retry_after_seconds(value: str | None) -> float | None:
    """The delay of a ``Retry-After`` header in seconds; None for a missing or HTTP-date value."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
