"""driftline's Faust application class: a prompt fetch wait, and clean-up once everything stopped.

:class:`DriftlineApp` is a :class:`faust.App` with two differences:

- its worker consumer waits ``fetch_max_wait_ms`` for a fetch to fill, not
  Faust's hardcoded 1,500 ms (:mod:`.transport` says why);
- hooks registered with :meth:`DriftlineApp.after_stop` run when the app
  has stopped its agents, services and timers, at the worker's shutdown
  (``SIGTERM``, Ctrl-C). The pipeline closes what it opened there (the bank
  keeper's child process, the changelog producer, the Elasticsearch client)
  once no agent can use it any more. Faust's own shutdown signal,
  ``on_before_shutdown``, comes earlier: while the agents are still running.

Example:
    >>> app = DriftlineApp("doc-app", broker="kafka://localhost:9092", fetch_max_wait_ms=50)
    >>> type(app.transport).__name__, app.fetch_max_wait_ms
    ('PromptFetchTransport', 50)
    >>> async def close() -> None: ...
    >>> app.after_stop(close) is close
    True
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types.transports import TransportT

from driftline.streams.transport import PromptFetchTransport

Hook = Callable[[], Awaitable[None]]


class DriftlineApp(faust.App):
    """A Faust app with a settable fetch wait and hooks that run after it stopped.

    Only ``kafka://`` / ``aiokafka://`` brokers are served by the prompt
    transport; any other broker URL keeps Faust's transport for it.
    """

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        if fetch_max_wait_ms < 0:
            raise ValueError(f"fetch_max_wait_ms must be at least 0, not {fetch_max_wait_ms}")
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._after_stop: list[Hook] = []
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        url = self.conf.broker_consumer[0]
        if url.scheme not in ("kafka", "aiokafka"):
            return super()._new_transport()
        return PromptFetchTransport(self.conf.broker_consumer, self)

    def after_stop(self, hook: Hook) -> Hook:
        """Run ``hook`` (a coroutine function) once the app stopped its agents and services; returns it.

        Hooks run in the order they were added; one that raises is logged and
        the others still run.
        """
        self._after_stop.append(hook)
        return hook

    async def on_shutdown(self) -> None:
        """Called by :meth:`mode.Service.stop` after the children (agents, services, timers) stopped."""
        await super().on_shutdown()
        for hook in self._after_stop:
            try:
                await hook()
            except Exception:  # noqa: BLE001 -- shutting down: log, and close the rest
                self.log.exception("closing %r failed", getattr(hook, "__qualname__", hook))
