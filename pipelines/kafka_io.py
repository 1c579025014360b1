"""Kafka I/O in pure Python (kafka-python): Beam's Java ``ReadFromKafka`` needs jars that cannot be
downloaded offline, so reading and writing are done here.

* :class:`WriteToKafka` is the sink: its producer lives in ``setup()``, every send's future is kept
  and checked in ``finish_bundle()`` after ``flush()``, so a send error fails the bundle (and the
  runner retries it) instead of losing a record silently.
* :func:`poll_new_events` reads the next records of a topic for a round bounded in records and
  bytes, starting from the consumer group's committed offsets; offsets are committed by
  :func:`commit_events` only after the round's outputs were acknowledged by the broker
  (at-least-once).
* :func:`read_whole_topic` reads a topic from its start until it is quiet: the one reader of a
  whole topic (the stream's lead store and state changelog at start, ``envleads status --scan``).
* :class:`LeadView` keeps the compacted view of the lead topic (last record per key), for the
  demo, `tail` and the dashboard (the stream restores from its LeadStore and state changelog).

Partitions are assigned explicitly rather than joining a consumer group: a group join on the
embedded broker waits for the full rebalance timeout, and one local process owns all partitions
anyway. Offsets are still committed to the group, so progress survives restarts.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from envleads import schemas
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.options import DEFAULT_ROUND_BYTES
from envleads.records import KafkaCoordinates, Lead, RawEvent

LOG = logging.getLogger(__name__)


def _kafka_kwargs(bootstrap_servers: str, security, role: str) -> dict:
    from envleads.ops.kafka_config import client_kwargs

    return client_kwargs(bootstrap_servers, security, role=role)


class _WriteFn(beam.DoFn):
    def __init__(self, bootstrap_servers: str, topic: str, security, key_of: Callable, value_of: Callable):
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._security = security
        self._key_of = key_of
        self._value_of = value_of

    def setup(self):
        from kafka import KafkaProducer

        self._producer = KafkaProducer(**_kafka_kwargs(self._bootstrap_servers, self._security, "producer"))
        self._written = Metrics.counter("WriteToKafka", f"written.{self._topic}")

    def start_bundle(self):
        self._pending = []

    def process(self, element):
        key = self._key_of(element)
        self._pending.append(self._producer.send(self._topic, key=key.encode("utf-8") if key else None,
                                                 value=self._value_of(element)))

    def finish_bundle(self):
        self._producer.flush()
        for future in self._pending:
            future.get(timeout=30)  # raises the send error: the bundle fails and is retried
        self._written.inc(len(self._pending))
        self._pending = []

    def teardown(self):
        producer = getattr(self, "_producer", None)
        if producer is not None:
            producer.close(timeout=10)


class WriteToKafka(beam.PTransform):
    """Writes elements to a topic: ``key_of(element) -> str | None``, ``value_of(element) -> bytes``.

    Delivery: at-least-once. A bundle completes only when the broker acknowledged every record
    (``acks=all``); a failed send fails the bundle.
    """

    def __init__(self, bootstrap_servers: str, topic: str, key_of: Callable, value_of: Callable, security=None):
        super().__init__()
        self._fn = _WriteFn(bootstrap_servers, topic, security, key_of, value_of)

    def expand(self, pcoll):
        return pcoll | "Produce" >> beam.ParDo(self._fn)


def open_consumer(bootstrap_servers: str, topic: str, group_id: Optional[str], security=None,
                  from_beginning: bool = True):
    """A consumer assigned to every partition of ``topic``, positioned at the group's committed
    offsets (or the beginning/end when the group has none)."""
    from kafka import KafkaConsumer, TopicPartition

    kwargs = _kafka_kwargs(bootstrap_servers, security, "consumer")
    kwargs.update(group_id=group_id, enable_auto_commit=False,
                  auto_offset_reset="earliest" if from_beginning else "latest")
    consumer = KafkaConsumer(**kwargs)
    partitions = _partitions_for(consumer, topic)
    assignment = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assignment)
    for tp in assignment:
        committed = consumer.committed(tp) if group_id else None
        if committed is not None:
            consumer.seek(tp, committed)
        elif from_beginning:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek_to_end(tp)
    return consumer


def read_whole_topic(bootstrap_servers: str, topic: str, handle: Callable[[list], None], security=None,
                     idle_s: float = 1.0) -> int:
    """Reads a topic from its start until it is quiet for ``idle_s``, handing each poll's records
    to ``handle`` in order; returns the records read."""
    consumer = open_consumer(bootstrap_servers, topic, group_id=None, security=security)
    read = 0
    try:
        deadline = time.monotonic() + idle_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=5000)
            if batch:
                records = [record for part in batch.values() for record in part]
                read += len(records)
                handle(records)
                deadline = time.monotonic() + idle_s
    finally:
        consumer.close()
    return read


class TopicNotFound(RuntimeError):
    """The topic has no partitions in the broker's metadata (not created, or lost)."""


def _partitions_for(consumer, topic: str, timeout_s: float = 10.0) -> List[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        if time.monotonic() > deadline:
            raise TopicNotFound(f"topic {topic!r} has no partitions (does it exist?)")
        time.sleep(0.2)


def poll_new_events(consumer, max_records: int, wait_s: float, round_wait_s: Optional[float] = None,
                    max_bytes: int = DEFAULT_ROUND_BYTES) -> List[RawEvent]:
    """Up to ``max_records`` next records, of ``max_bytes`` at most together (one larger record is
    a round of its own), as Avro :class:`RawEvent` with their coordinates.

    Waits up to ``wait_s`` for the first record. Then returns when ``max_records`` or ``max_bytes``
    were read, when a poll comes back empty for ``min(wait_s, 0.5)`` s, or (with ``round_wait_s``)
    that long after the first record arrived, so that under a steady flow a round does not wait to
    fill up. The embedded broker under-reports end offsets, so "caught up" means "nothing arrived
    within the wait", not an offset comparison. Records polled past the byte budget are given back
    (see :func:`seek_back`).
    """
    from kafka import TopicPartition

    events: List[RawEvent] = []
    budget = RoundBudget(max_records, max_bytes)
    window = RoundWindow(wait_s, round_wait_s)
    while not budget.full():
        batch = consumer.poll(timeout_ms=int(window.timeout(0.2) * 1000), max_records=max_records - len(events))
        records = [record for partition_records in batch.values() for record in partition_records]
        for position, record in enumerate(records):
            value = record.value or b""
            if not budget.take(len(value)):
                seek_back(((r.topic, r.partition, r.offset) for r in records[position:]),
                          lambda topic, partition, offset: consumer.seek(TopicPartition(topic, partition), offset))
                return events
            events.append(RawEvent(value, "avro", KafkaCoordinates(record.topic, record.partition, record.offset)))
        if window.closed(bool(records)):
            break
    return events


class RoundBudget:
    """A round's records and bytes so far against its limits (shared by both Kafka clients): a
    round of limit-size events costs ~100 times their bytes at its peak, so a round is bounded by
    bytes as well as by count."""

    def __init__(self, max_records: int, max_bytes: int):
        self._max_records, self._max_bytes = max_records, max_bytes
        self.records = self.bytes = 0

    def take(self, size: int) -> bool:
        """Counts a record of ``size`` bytes in, unless the round is full or it would take the
        round over its bytes (the first record is always taken)."""
        if self.full() or self.records and self.bytes + size > self._max_bytes:
            return False
        self.records += 1
        self.bytes += size
        return True

    def full(self) -> bool:
        return self.records >= self._max_records or self.bytes >= self._max_bytes


def seek_back(coordinates: Iterable[Tuple[str, int, int]], seek: Callable[[str, int, int], None]) -> None:
    """Gives back records read past a round's budget, ``(topic, partition, offset)`` in the order
    they were read: each partition is sought back to its first such record, so the next round
    reads them (nothing skipped, nothing read twice)."""
    first: Dict[Tuple[str, int], int] = {}
    for topic, partition, offset in coordinates:
        first.setdefault((topic, partition), offset)
    for (topic, partition), offset in first.items():
        seek(topic, partition, offset)


class RoundWindow:
    """When a round stops reading: ``wait_s`` for a first record, then ``min(wait_s, 0.5)`` s
    without a new one, or ``round_wait_s`` after the first (shared by both Kafka clients)."""

    def __init__(self, wait_s: float, round_wait_s: Optional[float] = None):
        self._wait_s, self._round_wait_s = wait_s, round_wait_s
        self._deadline = time.monotonic() + wait_s
        self._round_deadline: Optional[float] = None

    def timeout(self, longest_s: float) -> float:
        """How long the next poll may wait (at most ``longest_s``)."""
        if self._round_deadline is None:
            return longest_s
        return max(0.0, min(longest_s, self._round_deadline - time.monotonic()))

    def closed(self, arrived: bool) -> bool:
        """Records whether the last poll brought records; True when the round should close."""
        now = time.monotonic()
        if arrived:
            self._deadline = now + min(self._wait_s, 0.5)
            if self._round_deadline is None and self._round_wait_s is not None:
                self._round_deadline = now + self._round_wait_s
        return now > self._deadline or (self._round_deadline is not None and now >= self._round_deadline)


def next_offsets(events: Iterable[RawEvent]) -> Dict[Tuple[str, int], int]:
    """Per partition, the offset after the last of ``events`` (the next to read)."""
    offsets: Dict[Tuple[str, int], int] = {}
    for event in events:
        key = (event.source.topic, event.source.partition)
        offsets[key] = max(offsets.get(key, 0), event.source.offset + 1)
    return offsets


def commit_events(consumer, events: Iterable[RawEvent]) -> Dict[Tuple[str, int], int]:
    """Commits, per partition, the offset after the last event processed (the next to read)."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    offsets = next_offsets(events)
    if offsets:
        consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                         for (topic, partition), offset in offsets.items()})
    return offsets


def decode_lead_record(record) -> Optional[Lead]:
    """The lead in a lead-topic record, or None (logged with its coordinates) when it is unreadable:
    one bad record must not stop a view, the stream's start or the feed."""
    try:
        return lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
    except Exception:  # noqa: BLE001 - any decoding failure means "unreadable"
        LOG.warning("skipped an unreadable lead record at %s/%d@%d", record.topic, record.partition, record.offset)
        return None


class LeadView:
    """The compacted view of the lead topic: the last lead per key, refreshed incrementally."""

    def __init__(self, bootstrap_servers: str, topic: str, security=None):
        self._consumer = open_consumer(bootstrap_servers, topic, group_id=None, security=security)
        self.leads: Dict[str, Lead] = {}

    def refresh(self, wait_s: float = 1.0) -> int:
        """Reads what arrived since the last refresh; returns the number of records read."""
        read = 0
        while True:
            batch = self._consumer.poll(timeout_ms=int(wait_s * 1000) if read == 0 else 300, max_records=5000)
            records = [record for partition_records in batch.values() for record in partition_records]
            if not records:
                return read
            for record in records:
                read += 1
                key = record.key.decode("utf-8") if record.key else None
                if record.value is None:
                    self.leads.pop(key, None)  # tombstone
                    continue
                lead = decode_lead_record(record)
                if lead is not None:
                    self.leads[lead.lead_id] = lead

    def close(self) -> None:
        self._consumer.close()
