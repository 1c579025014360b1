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


# ------------------------------------------------------------------------------------------- Prism
PRISM_BIN_ENV_VAR = "ENVLEADS_PRISM_BIN"


@pytest.fixture(scope="session")
def prism_location() -> str:
    """The Prism binary for ``PrismRunner``'s ``--prism_location``: the one ``make`` (target ``prism``)
    builds from Beam's Go module at the installed SDK's version, ``.cache/prism/v<version>/prism``,
    or the file named by ``$ENVLEADS_PRISM_BIN``.

    Skips only when Go is not installed (Prism cannot be built on this machine); a missing binary
    where Go is installed is a failure: run make.
    """
    import importlib.metadata
    import shutil
    from pathlib import Path

    version = "v" + importlib.metadata.version("apache-beam").replace("rc", "-RC")
    override = os.environ.get(PRISM_BIN_ENV_VAR)
    path = Path(override) if override else Path(__file__).resolve().parents[1] / ".cache" / "prism" / version / "prism"
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    if shutil.which("go") is None:
        pytest.skip(f"Go is not installed, so Prism {version} cannot be built from Beam's Go module "
                    "(install Go, then run make)")
    pytest.fail(f"no Prism binary at {path}: run make (`make prism` builds Prism {version} from Beam's Go module)",
                pytrace=False)


# ------------------------------------------------------------------------------------ Apache Kafka
APACHE_KAFKA_USER = "envleads"
APACHE_KAFKA_PASSWORD = "test-only-scram-password"


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory):
    """Apache Kafka itself (:class:`envleads.ops.apache_kafka.ApacheKafkaBroker`, single-node KRaft) for
    the session, for what Tansu cannot do: listeners PLAINTEXT, SASL_PLAINTEXT, SSL and SASL_SSL, SCRAM
    user ``APACHE_KAFKA_USER``, a CA made by keytool (``.ca_file``), data on disk (``.restart()``
    keeps it). Its folder (server.log, data, CA) stays under pytest's temporary directory.

    Skips only when Java is not installed; jars that were not fetched are a failure: run make.
    """
    from envleads.ops.apache_kafka import ApacheKafkaBroker, KafkaJarsMissing, check_libs, find_java_tool

    if find_java_tool("java") is None:
        pytest.skip("Java is not installed, so Apache Kafka cannot run (install Java 17+, then run make)")
    try:
        check_libs()
    except KafkaJarsMissing as error:
        pytest.fail(str(error), pytrace=False)
    broker = ApacheKafkaBroker(directory=tmp_path_factory.mktemp("apache-kafka"),
                               scram_users={APACHE_KAFKA_USER: APACHE_KAFKA_PASSWORD}, tls=True)
    with broker:
        yield broker
