"""The Beam streaming job (``pipelines/beam_stream.py``) on Prism against Apache Kafka itself
(``apache_kafka`` in conftest), every client of the job, of the producer and of the checks over the
SASL_SSL listener with SCRAM-SHA-512, through the project's security options (``KafkaSecurity`` with
a password file and the broker's CA, as ``--security-protocol SASL_SSL --sasl-password-file ...
--ssl-cafile ...`` give them):

1. bounded, Kafka to Kafka: what the rounds engine writes on the same events, over the same listener;
2. unbounded, stopped, the broker restarted on its data, and again from the group's commit: nothing
   lost, nothing duplicated.

The checks are those the embedded broker's tests make (``beam_kafka_cases``). Prism is the binary
``make prism`` builds and Apache Kafka the jars ``make kafka`` fetches (skipped only without Go or Java).
"""
from __future__ import annotations

import uuid

import pytest

from beam_kafka_cases import (E2E_EVENTS, E2E_SEED, check_beam_writes_what_the_rounds_engine_writes,
                              check_unbounded_restart, prism_args, produce_events, run_rounds_engine)
from beam_kafka_cases import model_version  # noqa: F401 (a fixture)
from conftest import APACHE_KAFKA_USER

pytestmark = pytest.mark.kafka

PROTOCOL = "SASL_SSL"
MECHANISM = "SCRAM-SHA-512"


def _topics(apache_kafka, name: str, raw: str = None):
    """Fresh output topics (and a raw topic of two partitions unless ``raw`` is given); Apache Kafka
    here creates no topic on first use."""
    from envleads.pipelines.rounds.outputs import Topics

    stem = f"apache.beam.{name}.{uuid.uuid4().hex[:8]}"
    topics = Topics(raw or f"{stem}.raw", f"{stem}.enriched", f"{stem}.leads", f"{stem}.deadletter")
    if raw is None:
        apache_kafka.create_topics([topics.raw], partitions=2)
    apache_kafka.create_topics([topics.enriched, topics.leads, topics.dead_letter])
    return topics


def _secured(apache_kafka):
    """The SASL_SSL listener and the project's security options for it."""
    return apache_kafka.bootstrap(PROTOCOL), apache_kafka.security(PROTOCOL, APACHE_KAFKA_USER, mechanism=MECHANISM)


def test_beam_stream_over_sasl_ssl_writes_what_the_rounds_engine_writes(apache_kafka, prism_location, model_version,
                                                                        monkeypatch):
    """Events produced over SASL_SSL, the job bounded on Prism over SASL_SSL: every complaint
    enriched once, every malformed event dead-lettered with its bytes and where it was read, the
    group's end offsets committed, and the same enriched decisions, dead letters and leads (keys,
    members, scores) as the rounds engine over the same listener."""
    from envleads.generator import generate_events
    from envleads.pipelines.beam_stream import run_beam_stream

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "apache-kafka-beam-key")
    bootstrap, security = _secured(apache_kafka)
    events = list(generate_events(E2E_EVENTS, E2E_SEED))
    beam_topics = _topics(apache_kafka, "sasl")
    rounds_topics = _topics(apache_kafka, "sasl-rounds", raw=beam_topics.raw)
    coordinates = produce_events(bootstrap, beam_topics.raw, events, security)

    args = prism_args(prism_location) + ["--model_version", model_version]
    counts = run_beam_stream(bootstrap, beam_topics, args, group_id=f"beam-{uuid.uuid4().hex[:8]}", bounded=True,
                             security=security)
    assert counts == {"partitions": 2, "planned_records": E2E_EVENTS, "prior_leads": 0, "committed": 2}

    run_rounds_engine(bootstrap, rounds_topics, model_version, security)
    check_beam_writes_what_the_rounds_engine_writes(bootstrap, events, coordinates, beam_topics, rounds_topics,
                                                    security)


def test_unbounded_beam_stream_over_sasl_ssl_survives_a_broker_restart_losing_and_duplicating_nothing(
        apache_kafka, prism_location, model_version, monkeypatch):
    """The unbounded job (committing while it runs) over the first half, stopped; the broker stopped
    and started again on its log directory (``apache_kafka.restart()``); the group's commit and the
    leads are still there, and the job over the second half reads from that commit: every
    complaint enriched once, no lead twice, each complaint in one lead, the leads those of one
    bounded run over all the events (``beam_kafka_cases.check_unbounded_restart``)."""
    from envleads.generator import generate_events

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "apache-kafka-beam-key")
    bootstrap, security = _secured(apache_kafka)
    topics = _topics(apache_kafka, "restart")

    def restart_broker():
        pid = apache_kafka.pid
        apache_kafka.restart()
        assert apache_kafka.pid != pid and apache_kafka.is_running()

    check_unbounded_restart(bootstrap, list(generate_events(E2E_EVENTS, E2E_SEED)), topics,
                            prism_args(prism_location) + ["--model_version", model_version],
                            f"beam-{uuid.uuid4().hex[:8]}", lambda: _topics(apache_kafka, "bounded", raw=topics.raw),
                            security, between=restart_broker)
