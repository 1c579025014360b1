"""Writing Kafka from a Beam job: :class:`WriteToKafka`, a DoFn over kafka-python (Beam's Java
``WriteToKafka`` would need the expansion service and a JVM beside every SDK worker).

Delivery: at-least-once. The producer lives in ``setup()``; every send's future is kept and checked
in ``finish_bundle()`` after ``flush()`` (``acks=all``), so a bundle completes only when the broker
acknowledged each of its records, and a send error fails the bundle, which the runner retries
(its records can then be written twice; lead keys are stable, so a compacted lead topic keeps one).

With ``done_of``, the sink reports what it wrote: after the flush, ``done_of(element)`` of each
element of the bundle is its output (an element whose value is None is not written, only
reported), which ``beam_commit.CommitWrittenOffsets`` turns into committed offsets.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue


class TopicWriter(NamedTuple):
    """Where and how elements are written: ``key_of(element) -> str | None`` and
    ``value_of(element) -> bytes``."""

    bootstrap_servers: str
    topic: str
    key_of: Callable
    value_of: Callable
    security: Optional[object] = None
    done_of: Optional[Callable] = None  # what to report of each element once written (None: nothing)


class _WriteFn(beam.DoFn):
    def __init__(self, writer: TopicWriter):
        self._writer = writer

    def setup(self):
        from envleads.pipelines.kafka_edge.write import new_producer

        self._producer = new_producer(self._writer.bootstrap_servers, self._writer.security)
        self._written = Metrics.counter("WriteToKafka", f"written.{self._writer.topic}")

    def start_bundle(self):
        self._pending = []
        self._done = []

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        value = self._writer.value_of(element)
        if value is not None:
            key = self._writer.key_of(element)
            self._pending.append(self._producer.send(self._writer.topic, key=key.encode("utf-8") if key else None,
                                                     value=value))
        if self._writer.done_of is not None:
            done = self._writer.done_of(element)
            if done is not None:
                self._done.append(WindowedValue(done, timestamp, (GlobalWindow(),)))

    def finish_bundle(self):
        self._producer.flush()
        for future in self._pending:
            future.get(timeout=30)  # raises the send error: the bundle fails and is retried
        self._written.inc(len(self._pending))
        self._pending = []
        done, self._done = self._done, []
        yield from done  # only now: every record of the bundle is acknowledged

    def teardown(self):
        producer = getattr(self, "_producer", None)
        if producer is not None:
            producer.close(timeout=10)


class WriteToKafka(beam.PTransform):
    """Writes elements to a topic: ``key_of(element) -> str | None``, ``value_of(element) -> bytes``
    (None: nothing to write); with ``done_of``, returns ``done_of(element)`` of each element once
    it is acknowledged (at-least-once: see the module docstring)."""

    def __init__(self, bootstrap_servers: str, topic: str, key_of: Callable, value_of: Callable, security=None,
                 done_of: Optional[Callable] = None):
        super().__init__()
        self._fn = _WriteFn(TopicWriter(bootstrap_servers, topic, key_of, value_of, security, done_of))

    def expand(self, pcoll):
        return pcoll | "Produce" >> beam.ParDo(self._fn)
