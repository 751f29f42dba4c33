"""The worker's app class: its consumer is built with driftline's fetch wait (not Faust's 1,500 ms); its after-stop hooks."""

from __future__ import annotations

import asyncio

import faust
import pytest

from driftline.settings import Settings
from driftline.streams.app import create_app
from driftline.streams.faust_app import DriftlineApp
from driftline.streams.transport import FAUST_FETCH_MAX_WAIT_MS, PromptFetchTransport


def _worker_consumer_wait(app: faust.App) -> int:
    """The fetch wait of the aiokafka consumer the app's worker would start (not started: no broker needed)."""

    async def build() -> int:
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    return asyncio.run(build())


def test_the_worker_consumer_waits_as_long_as_the_settings_say():
    app = create_app(Settings(pseudonymization_key="k" * 32, app_id="transport-unit", fetch_max_wait_ms=80))
    assert isinstance(app.transport, PromptFetchTransport)
    assert _worker_consumer_wait(app) == 80


def test_the_default_is_far_below_fausts():
    app = create_app(Settings(pseudonymization_key="k" * 32, app_id="transport-default"))
    assert _worker_consumer_wait(app) == Settings.model_fields["fetch_max_wait_ms"].default < FAUST_FETCH_MAX_WAIT_MS


def test_other_brokers_keep_fausts_transport():
    app = DriftlineApp("transport-confluent", broker="confluent://localhost:1", fetch_max_wait_ms=80)
    assert not isinstance(app.transport, PromptFetchTransport)


def test_a_negative_wait_is_refused():
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        DriftlineApp("transport-negative", broker="kafka://localhost:1", fetch_max_wait_ms=-1)


def test_after_stop_hooks_run_in_order_and_one_failing_does_not_stop_the_others(caplog):
    app = DriftlineApp("after-stop", broker="kafka://localhost:1")
    ran: list[str] = []

    async def first() -> None:
        ran.append("first")
        raise RuntimeError("cannot close")

    async def second() -> None:
        ran.append("second")

    app.after_stop(first)
    app.after_stop(second)
    asyncio.run(app.on_shutdown())
    assert ran == ["first", "second"]
    assert any("closing" in r.getMessage() and r.exc_info for r in caplog.records)
