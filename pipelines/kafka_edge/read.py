"""Reading Kafka with kafka-python, outside Beam: the consumer of the rounds engine's raw topic
(:func:`poll_new_events` and :func:`commit_events`), whole-topic reads (:func:`read_whole_topic`:
the lead store and the state changelog at start, ``envleads status --scan``) and group commits.

Delivery: at-least-once. Reading never commits by itself (``enable_auto_commit`` is off): the
caller commits a round's offsets with :func:`commit_events` only after the broker acknowledged
every output of the round, so a round lost to a crash or a Kafka error is read again.

Partitions are assigned explicitly rather than joining a consumer group: a group join on the
embedded broker waits for the full rebalance timeout, and one local process owns all partitions
anyway (the writer fence, ``writer_fence.py``, keeps it to one). Offsets are still committed to
the group, so progress survives restarts.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from envleads.config import DEFAULT_ROUND_BYTES
from envleads.records import KafkaCoordinates, RawEvent


def new_consumer(bootstrap_servers: str, security=None, group_id: Optional[str] = None, **overrides):
    """A kafka-python consumer of the project's client settings (TLS, SASL: ``ops/kafka_config``)
    that never commits by itself."""
    from kafka import KafkaConsumer

    from envleads.ops.kafka_config import client_kwargs

    return KafkaConsumer(**client_kwargs(bootstrap_servers, security, role="consumer",
                                         **{"group_id": group_id, "enable_auto_commit": False, **overrides}))


def open_consumer(bootstrap_servers: str, topic: str, group_id: Optional[str], security=None,
                  from_beginning: bool = True):
    """A consumer assigned to every partition of ``topic``, positioned at the group's committed
    offsets (or the beginning/end when the group has none)."""
    from kafka import TopicPartition

    consumer = new_consumer(bootstrap_servers, security, group_id,
                            auto_offset_reset="earliest" if from_beginning else "latest")
    partitions = partitions_for(consumer, topic)
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


def partitions_for(consumer, topic: str, timeout_s: float = 10.0) -> List[int]:
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
    offsets = next_offsets(events)
    commit_offsets(consumer, offsets)
    return offsets


def commit_group_offsets(bootstrap_servers: str, group_id: str, offsets: Dict[Tuple[str, int], int],
                         security=None) -> None:
    """Commits ``{(topic, partition): next offset to read}`` for ``group_id`` without joining it
    (the Beam job's bounded runs, after the job finished)."""
    from kafka import TopicPartition

    if not offsets:
        return
    consumer = new_consumer(bootstrap_servers, security, group_id)
    try:
        consumer.assign([TopicPartition(t, p) for t, p in offsets])
        commit_offsets(consumer, offsets)
    finally:
        consumer.close()


def commit_offsets(consumer, offsets: Dict[Tuple[str, int], int]) -> None:
    """Commits ``{(topic, partition): next offset to read}`` with ``consumer`` (of the group)."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    if offsets:
        consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                         for (topic, partition), offset in offsets.items()})
