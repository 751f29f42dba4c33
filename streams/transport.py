"""The worker's Kafka transport: Faust's aiokafka driver with a settable fetch wait.

aiokafka keeps at most one fetch request in flight per broker. A partition
whose fetched records the worker is still processing is left out of that
request, and when the worker is done with them it can only be fetched again
once the request in flight returns: when data arrives on one of the
partitions it does ask for, or when the broker's wait (``fetch_max_wait_ms``)
runs out. Faust hardcodes that wait to 1,500 ms, so at the end of a backlog
(nothing new on the partitions in flight) each detect batch of the
observations a stage just sent waited up to 1.5 s, with the machine idle;
under live load the same wait adds to the event-to-indexed latency.

:class:`DriftlineApp` is a :class:`faust.App` whose worker consumer uses
``fetch_max_wait_ms`` from the settings instead (100 ms by default, as
short as Kafka's own consumers' defaults are long: an idle worker sends ten
empty fetches a second, which cost the broker next to nothing).

Example:
    >>> app = DriftlineApp("doc-transport", broker="kafka://localhost:9092", fetch_max_wait_ms=50)
    >>> type(app.transport).Consumer.__name__
    'PromptFetchConsumer'
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.transports import TransportT

#: Faust's own value, for comparison
FAUST_FETCH_MAX_WAIT_MS = 1500


class PromptFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose worker consumer waits at most ``app.fetch_max_wait_ms`` per fetch."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start(), which builds its fetcher with it
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", FAUST_FETCH_MAX_WAIT_MS)
        return consumer


class PromptFetchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, on a :class:`PromptFetchConsumerThread`."""

    def _new_consumer_thread(self) -> PromptFetchConsumerThread:
        return PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class PromptFetchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`PromptFetchConsumer`."""

    Consumer = PromptFetchConsumer


class DriftlineApp(faust.App):
    """A Faust app whose worker consumer waits ``fetch_max_wait_ms`` (not Faust's 1,500 ms) for a fetch to fill.

    Only ``kafka://`` / ``aiokafka://`` brokers are served by the prompt
    transport; any other broker URL keeps Faust's transport for it.
    """

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        if fetch_max_wait_ms < 0:
            raise ValueError(f"fetch_max_wait_ms must be at least 0, not {fetch_max_wait_ms}")
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        url = self.conf.broker_consumer[0]
        if url.scheme not in ("kafka", "aiokafka"):
            return super()._new_transport()
        return PromptFetchTransport(self.conf.broker_consumer, self)
