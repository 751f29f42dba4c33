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

:class:`PromptFetchTransport` is Faust's aiokafka transport whose worker
consumer waits ``app.fetch_max_wait_ms`` instead (100 ms by default in
driftline's settings: an idle worker then sends ten empty fetches a
second, which cost the broker next to nothing);
:class:`~.faust_app.DriftlineApp` uses it.

Example:
    >>> PromptFetchTransport.Consumer.__name__
    'PromptFetchConsumer'
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

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
