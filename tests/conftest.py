"""Shared fixtures: the Kafka broker and Elasticsearch-API server the tests run against.

If both ``DRIFTLINE_KAFKA_BOOTSTRAP`` and ``DRIFTLINE_ES_URL`` are set, tests use
those servers ("external", e.g. a docker-compose stack) and start nothing.
Otherwise the embedded servers (Tansu + noida-db) are started once per session,
on free loopback ports in a temporary folder, the first time a test asks for
them, and stopped at the end. Unit tests that do not ask start nothing.

Example:
    def test_roundtrip(settings, kafka_admin, unique_topic):
        kafka_admin.create_topic(unique_topic, partitions=3)
        ...
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from driftline.settings import Settings

_ENV_KAFKA = "DRIFTLINE_KAFKA_BOOTSTRAP"
_ENV_ES = "DRIFTLINE_ES_URL"
_INTEGRATION_DIR = Path(__file__).parent / "integration"
#: Session timeout for test consumers: a group join on Tansu takes ~4 s, not ~23 s.
TEST_SESSION_TIMEOUT_MS = 6000


@dataclass(frozen=True)
class Servers:
    """Where the tests' Kafka and Elasticsearch are, and whether they were started here."""

    kafka_bootstrap: str
    es_url: str
    kind: Literal["embedded", "external"]


def _external_servers() -> Servers | None:
    kafka, es = os.environ.get(_ENV_KAFKA), os.environ.get(_ENV_ES)
    if kafka and es:
        return Servers(kafka_bootstrap=kafka, es_url=es.rstrip("/"), kind="external")
    return None


def pytest_report_header(config: pytest.Config) -> list[str]:
    external = _external_servers()
    if external is not None:
        return [f"driftline servers: external (from env) kafka={external.kafka_bootstrap} es={external.es_url}"]
    return [
        "driftline servers: embedded (Tansu Kafka broker + noida-db Elasticsearch API), "
        f"started on free loopback ports when first needed; set {_ENV_KAFKA} and {_ENV_ES} to use real ones"
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration``."""
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The Kafka and Elasticsearch servers of this test session (started at most once)."""
    external = _external_servers()
    if external is not None:
        yield external
        return
    from driftline.connectors.infra import free_ports, running_infrastructure

    kafka_port, es_port = free_ports(2)
    with running_infrastructure(tmp_path_factory.mktemp("infra"), kafka_port=kafka_port, es_port=es_port) as infra:
        yield Servers(kafka_bootstrap=infra.kafka_bootstrap, es_url=infra.es_url, kind="embedded")


@pytest.fixture(scope="session")
def settings(servers: Servers) -> Settings:
    """driftline settings pointed at the session's servers (other DRIFTLINE_* variables still apply)."""
    return Settings(
        kafka_bootstrap=servers.kafka_bootstrap,
        es_url=servers.es_url,
        kafka_session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
    )


def _topic_name(request: pytest.FixtureRequest, prefix: str = "test") -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]
    return f"{prefix}.{name}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or earlier run) uses, e.g. ``test.test_roundtrip.1a2b3c4d``."""
    return _topic_name(request)


@pytest.fixture
def topic_name_factory(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A function returning a fresh topic name per call: ``topic_name_factory("predictions")``."""
    return lambda prefix="test": _topic_name(request, prefix)


@dataclass
class KafkaAdmin:
    """A thin wrapper over confluent-kafka's AdminClient that waits for its futures.

    Topics it created are deleted at session end (best effort).
    """

    client: Any
    created: list[str] = field(default_factory=list)

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, str] | None = None, timeout: float = 10.0
    ) -> str:
        """Create ``name`` with ``partitions`` partitions (replication 1) and wait; returns the name."""
        self.create_topics({name: partitions}, config=config, timeout=timeout)
        return name

    def create_topics(
        self, topics: dict[str, int], config: dict[str, str] | None = None, timeout: float = 10.0
    ) -> None:
        """Create several topics (name -> partitions) and wait for all of them."""
        from confluent_kafka.admin import NewTopic

        new = [
            NewTopic(name, num_partitions=n, replication_factor=1, config=config or {}) for name, n in topics.items()
        ]
        futures = self.client.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            future.result(timeout=timeout)
            self.created.append(name)

    def delete_topics(self, names: list[str], timeout: float = 10.0) -> None:
        """Delete topics and wait."""
        if not names:
            return
        futures = self.client.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
        for future in futures.values():
            future.result(timeout=timeout)

    def partitions(self, name: str, timeout: float = 10.0) -> int:
        """Number of partitions of ``name`` (0 if it does not exist)."""
        topic = self.client.list_topics(topic=name, timeout=timeout).topics.get(name)
        return len(topic.partitions) if topic is not None and topic.error is None else 0


@pytest.fixture(scope="session")
def kafka_admin(settings: Settings) -> Iterator[KafkaAdmin]:
    """A :class:`KafkaAdmin` on the session's broker."""
    from confluent_kafka.admin import AdminClient

    admin = KafkaAdmin(AdminClient(settings.kafka_client_config()))
    yield admin
    try:
        admin.delete_topics(admin.created)
    except Exception:  # noqa: BLE001 - cleanup only; the embedded broker goes away anyway
        pass
