"""Shared pytest fixtures: one real Kafka-compatible broker per test session.

``kafka_broker`` starts the embedded Tansu broker once, or uses the cluster named by
``$ENVLEADS_TEST_BOOTSTRAP`` (PLAINTEXT) when set. ``tmp_topics`` creates uniquely named topics,
so tests sharing the broker never see each other's records.
"""
from __future__ import annotations

import os
import uuid
from typing import Callable, Dict, Iterator, Mapping, Optional

import pytest

from envleads.ops.broker import EmbeddedBroker, create_topics, wait_for_kafka

TEST_BOOTSTRAP_ENV_VAR = "ENVLEADS_TEST_BOOTSTRAP"


class KafkaTestCluster:
    """What a broker test needs to know: where the cluster is, and the embedded broker if any."""

    def __init__(self, bootstrap_servers: str, embedded: Optional[EmbeddedBroker] = None):
        self.bootstrap_servers = bootstrap_servers
        self.embedded = embedded


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kafka: needs a real Kafka-compatible broker (Tansu by default)")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaTestCluster]:
    """A running broker for the whole session: ``.bootstrap_servers`` (``.embedded`` or None)."""
    external = os.environ.get(TEST_BOOTSTRAP_ENV_VAR)
    if external:
        wait_for_kafka(external, timeout_s=30)
        yield KafkaTestCluster(external)
        return
    with EmbeddedBroker() as broker:
        yield KafkaTestCluster(broker.bootstrap_servers, broker)


@pytest.fixture
def tmp_topics(
    kafka_broker: KafkaTestCluster, request: pytest.FixtureRequest
) -> Callable[..., Dict[str, str]]:
    """Factory: ``tmp_topics("raw", "leads", partitions=2)`` -> ``{"raw": "<unique>", ...}``.

    Names embed the test name and a random suffix; topics are not deleted (the embedded broker is
    in memory and dies with the session).
    """

    def make(*roles: str, partitions: int = 1, config: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        stem = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
        names = {role: f"test.{stem}.{role}.{uuid.uuid4().hex[:8]}" for role in (roles or ("topic",))}
        create_topics(kafka_broker.bootstrap_servers, names.values(), partitions=partitions, config=config)
        return names

    return make
