"""The stream's Kafka session on confluent-kafka (librdkafka), the default when it is installed.

kafka-python does its protocol work in Python: in a 200,000-complaint backfill its produce path
was a fifth of the stream process's CPU, on the process that bounds throughput. librdkafka does
the same in C threads for a few microseconds per record (measured against the embedded broker:
0.004 ms to produce and 0.002 ms to consume a 1.5 KB record). The session keeps :class:`~envleads.pipelines.kafka_edge.session.KafkaSession`'s
contract, so ``run_stream`` uses either: explicit assignment at the group's committed offsets (no
group join, no rebalance wait), outputs acknowledged by the broker before the offsets of their
events are committed, and any failure raised as a :class:`NativeKafkaError` so the stream
reconnects (delivery: at-least-once, as there). The Beam transforms stay on kafka-python.
"""
from __future__ import annotations

import logging
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from envleads.pipelines.kafka_edge.read import RoundBudget, RoundWindow, TopicNotFound, next_offsets, seek_back
from envleads.pipelines.kafka_edge.write import OutputRecord
from envleads.config import DEFAULT_ROUND_BYTES
from envleads.records import KafkaCoordinates, RawEvent

LOG = logging.getLogger(__name__)

class NativeKafkaError(RuntimeError):
    """A Kafka operation of the native session failed; the message names error codes only."""


def native_client_available() -> bool:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def _log_client_error(error) -> None:
    # global client errors (all brokers down, a connection refused) are retried inside librdkafka;
    # the stream notices through a failed operation and logs its own WARNING per attempt. (The
    # text is librdkafka's: broker addresses and causes, never a record.)
    LOG.debug("librdkafka: %s", error)


class NativeKafkaSession:
    """The raw topic's consumer and one producer for the output topics, on librdkafka."""

    ACK_TIMEOUT_S = 30.0
    OFFSET_TIMEOUT_S = 10.0

    def __init__(self, bootstrap_servers: str, raw_topic: str, group_id: str, security=None):
        from confluent_kafka import Consumer, Producer

        from envleads.ops.kafka_config import librdkafka_config

        # librdkafka's own log lines are off (it logged every failed reconnect, ~20 a second while
        # a broker was down, against the stream's one WARNING per attempt); its errors still reach
        # error_cb, at DEBUG
        common = {"error_cb": _log_client_error, "log_level": 0}
        self._raw_topic = raw_topic
        self._partitions: List[int] = []
        self.committed: Dict[Tuple[str, int], int] = {}
        # librdkafka prefetches up to 100,000 records (64 MB) per partition by default: a backfill
        # held them all in this process; a few rounds ahead is enough
        self.consumer = Consumer(librdkafka_config(bootstrap_servers, security, role="consumer",
                                                   **{"group.id": group_id, "queued.min.messages": 10_000,
                                                      "queued.max.messages.kbytes": 16_384}, **common))
        self.producer = None
        try:
            self._assign()
            self.producer = Producer(librdkafka_config(bootstrap_servers, security, role="producer",
                                                       **{"message.timeout.ms": int(self.ACK_TIMEOUT_S * 1000)},
                                                       **common))
        except BaseException:
            self.close()
            raise

    def _assign(self, timeout_s: float = 10.0) -> None:
        from confluent_kafka import OFFSET_STORED, KafkaException, TopicPartition

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                metadata = self.consumer.list_topics(self._raw_topic, timeout=min(5.0, timeout_s))
            except KafkaException as error:
                raise NativeKafkaError(f"metadata request failed: {error.args[0].name()}") from None
            topic = metadata.topics.get(self._raw_topic)
            if topic is not None and topic.error is None and topic.partitions:
                break
            if time.monotonic() > deadline:
                raise TopicNotFound(f"topic {self._raw_topic!r} has no partitions (does it exist?)")
            time.sleep(0.2)
        self._partitions = sorted(topic.partitions)
        # OFFSET_STORED: the group's committed offset, else auto.offset.reset (earliest)
        self.consumer.assign([TopicPartition(self._raw_topic, p, OFFSET_STORED) for p in self._partitions])

    def poll(self, max_records: int, wait_s: float, round_wait_s: Optional[float] = None,
             max_bytes: int = DEFAULT_ROUND_BYTES) -> List[RawEvent]:
        """As :func:`~envleads.pipelines.kafka_edge.read.poll_new_events`: waits up to ``wait_s`` for a
        first record, then returns at ``max_records`` or ``max_bytes``, after ``min(wait_s, 0.5)`` s
        without a new record, or ``round_wait_s`` after the first record."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        events: List[RawEvent] = []
        budget = RoundBudget(max_records, max_bytes)
        window = RoundWindow(wait_s, round_wait_s)
        while not budget.full():
            # librdkafka's batch call returns at its count or its timeout, not at the first record:
            # wait for one record, then take what has arrived in short waits
            count, longest = (min(max_records - len(events), 1000), 0.02) if events else (1, 0.2)
            try:
                messages = self.consumer.consume(count, window.timeout(longest))
            except KafkaException as error:
                raise NativeKafkaError(f"consume failed: {error.args[0].name()}") from None
            for position, message in enumerate(messages):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise TopicNotFound(f"topic {self._raw_topic!r} is gone")
                    raise NativeKafkaError(f"consume failed: {error.name()}")
                value = message.value() or b""
                if not budget.take(len(value)):
                    try:
                        seek_back(((m.topic(), m.partition(), m.offset()) for m in messages[position:]
                                   if m.error() is None),
                                  lambda topic, partition, offset: self.consumer.seek(
                                      TopicPartition(topic, partition, offset)))
                    except KafkaException as error:
                        raise NativeKafkaError(f"seek failed: {error.args[0].name()}") from None
                    return events
                events.append(RawEvent(value, "avro",
                                       KafkaCoordinates(message.topic(), message.partition(), message.offset())))
            if window.closed(bool(messages)):
                break
        return events

    def send(self, records: Iterable[OutputRecord]) -> None:
        """Produces every record and waits until the broker acknowledged all of them; raises
        :class:`NativeKafkaError` (error names only: a record's content is never quoted)."""
        failed: List[str] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failed.append(error.name())

        from confluent_kafka import KafkaException

        produce, poll = self.producer.produce, self.producer.poll
        try:
            for topic, key, value in records:
                while True:
                    try:
                        produce(topic, value, key, on_delivery=delivered)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        poll(0.1)
            remaining = self.producer.flush(self.ACK_TIMEOUT_S)
        except KafkaException as error:
            raise NativeKafkaError(f"produce failed: {error.args[0].name()}") from None
        if remaining or failed:
            raise NativeKafkaError(f"{len(failed)} records rejected ({', '.join(sorted(set(failed)))}), "
                                   f"{remaining} not acknowledged")

    def commit(self, events: Sequence[RawEvent]) -> None:
        """Commits, per partition, the offset after the last event of ``events`` (synchronously)."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = next_offsets(events)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=False)
        except KafkaException as error:
            raise NativeKafkaError(f"commit failed: {error.args[0].name()}") from None
        self.committed.update(offsets)

    def lost_committed_offsets(self) -> bool:
        """True when the broker no longer has an offset this session committed (restarted without
        its data); raises :class:`NativeKafkaError` when it cannot be asked."""
        from confluent_kafka import KafkaException, TopicPartition

        if not self.committed:
            return False
        try:
            found = self.consumer.committed([TopicPartition(t, p) for t, p in self.committed],
                                            timeout=self.OFFSET_TIMEOUT_S)
        except KafkaException as error:
            raise NativeKafkaError(f"offset fetch failed: {error.args[0].name()}") from None
        return any(tp.offset < self.committed[(tp.topic, tp.partition)] for tp in found)

    def close(self) -> None:
        if self.producer is not None:
            try:
                self.producer.purge()  # unacknowledged outputs are written again with their round
                self.producer.flush(1.0)
            except Exception:  # noqa: BLE001 - closing a client of a lost broker may fail
                LOG.debug("closing the producer failed", exc_info=True)
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:  # noqa: BLE001
                LOG.debug("closing the consumer failed", exc_info=True)
        self.consumer = self.producer = None
