"""The Beam Kafka source (``pipelines/kafka_source.py``) and the streaming job Kafka in, Kafka out
(``pipelines/beam_stream.py``), on Prism against the embedded broker.

1. Planning: the bounded end of each partition is the readable end even where the embedded broker
   under-reports it (records produced in batches), and a group's committed offsets are the start.
2. The source alone on Prism, bounded: every record of a three-partition topic once, with its
   partition, offset and record timestamp, and nothing produced after the plan.
3. End to end on Prism: generated events on a raw topic, the streaming job bounded, its enriched,
   lead and dead-letter topics against what the rounds engine writes for the same events.

Prism is the binary ``make prism`` builds (``prism_location`` fixture: skipped without Go); nothing
is downloaded at run time.
"""
from __future__ import annotations

import os
import uuid
from typing import List

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from envleads.pipelines.kafka_source import KafkaPartitionRange, ReadFromKafka, commit_offsets, plan_partitions

pytestmark = pytest.mark.kafka

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITIONS = 3


def _prism_args(prism_location: str) -> List[str]:
    return ["--runner", "PrismRunner", "--prism_location", prism_location, "--prism_log_level", "warn",
            "--environment_type", "LOOPBACK"]


def _produce(bootstrap: str, topic: str, records) -> None:
    """``records``: ``(partition, value, timestamp_ms)``, sent together (so the broker stores
    batches of several records, where the embedded broker under-reports the end offset)."""
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    producer = KafkaProducer(**client_kwargs(bootstrap, None, role="producer", linger_ms=50))
    futures = [producer.send(topic, value=value, partition=partition, timestamp_ms=ts) for partition, value, ts in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()


def _numbered(count: int, first: int = 0):
    """Record ``i`` goes to partition ``i % 3`` with value ``r<i>`` and time BASE + i s."""
    return [(i % PARTITIONS, f"r{i}".encode(), BASE_MS + i * 1000) for i in range(first, first + count)]


class _AppendLines(beam.DoFn):
    """Test sink: each element (a line of text) appended to a file of its own in ``folder``."""

    def __init__(self, folder: str):
        self._folder = folder

    def setup(self):
        self._handle = open(os.path.join(self._folder, f"{uuid.uuid4().hex}.txt"), "a", encoding="utf-8")

    def process(self, line: str):
        self._handle.write(line + "\n")
        self._handle.flush()

    def teardown(self):
        self._handle.close()


def _read_lines(folder) -> List[str]:
    lines: List[str] = []
    for path in sorted(folder.glob("*.txt")):
        lines.extend(line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return lines


# ------------------------------------------------------------------------------------- 1. planning
def test_bounded_plan_ends_at_the_readable_end_and_starts_at_the_group_commit(kafka_broker, tmp_topics):
    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=PARTITIONS)["raw"]
    _produce(bootstrap, topic, _numbered(60))

    plan = plan_partitions(bootstrap, [topic], bounded=True)
    assert sorted(plan) == [KafkaPartitionRange(topic, p, 0, 20) for p in range(PARTITIONS)]
    assert all(p.stop is None for p in plan_partitions(bootstrap, [topic]))

    group = f"plan-{uuid.uuid4().hex[:8]}"
    commit_offsets(bootstrap, group, {(topic, 0): 5, (topic, 2): 19})
    planned = {p.partition: (p.start, p.stop) for p in plan_partitions(bootstrap, [topic], group, bounded=True)}
    assert planned == {0: (5, 20), 1: (0, 20), 2: (19, 20)}


# ------------------------------------------------------------------------------- 2. the source alone
def test_source_on_prism_reads_every_record_once_with_its_coordinates_and_time(kafka_broker, tmp_topics,
                                                                              prism_location, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=PARTITIONS)["raw"]
    _produce(bootstrap, topic, _numbered(60))
    plan = plan_partitions(bootstrap, [topic], bounded=True)
    _produce(bootstrap, topic, _numbered(6, first=60))  # after the plan: not read by this bounded run

    def describe(event, timestamp=beam.DoFn.TimestampParam):
        source = event.source
        return f"{source.topic} {source.partition} {source.offset} {event.payload.decode()} {event.fmt} " \
               f"{timestamp.micros // 1000}"

    sink = tmp_path / "out"
    sink.mkdir()
    with beam.Pipeline(options=PipelineOptions(_prism_args(prism_location))) as pipeline:
        _ = (pipeline
             | "ReadFromKafka" >> ReadFromKafka(bootstrap, [topic], bounded=True, partitions=plan, max_call_s=0.5)
             | "Describe" >> beam.Map(describe)
             | "Sink" >> beam.ParDo(_AppendLines(str(sink))))

    # record i: partition i % 3, offset i // 3 (one producer, in order), value r<i>, time BASE + i s
    expected = sorted(f"{topic} {i % 3} {i // 3} r{i} avro {BASE_MS + i * 1000}" for i in range(60))
    assert sorted(_read_lines(sink)) == expected
