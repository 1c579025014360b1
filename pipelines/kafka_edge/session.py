"""The rounds engine's Kafka session: the raw topic's consumer and one producer for the output topics
(:class:`KafkaSession` on kafka-python, over ``read.py`` and ``write.py``, or
:class:`~envleads.pipelines.kafka_edge.native.NativeKafkaSession` on librdkafka:
:func:`open_session`), and the errors after which the loop reconnects.

Delivery: at-least-once. The consumer reads from the group's committed offsets, which are
committed only after the broker acknowledged every output of the round (:meth:`KafkaSession.send`
waits for it), so a round lost to an error is read again.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from envleads.pipelines.kafka_edge.native import NativeKafkaError, NativeKafkaSession, native_client_available
from envleads.pipelines.kafka_edge.read import TopicNotFound, commit_events, open_consumer, poll_new_events
from envleads.pipelines.kafka_edge.write import ROUND_PRODUCER_OVERRIDES, OutputRecord, new_producer, send_acknowledged
from envleads.config import DEFAULT_ROUND_BYTES, KAFKA_CLIENTS
from envleads.records import RawEvent

LOG = logging.getLogger(__name__)


class KafkaSession:
    """The raw topic's consumer (explicit assignment at the group's committed offsets) and one
    producer for the three output topics, on kafka-python; rebuilt whole after a Kafka error.
    :class:`~envleads.pipelines.kafka_edge.native.NativeKafkaSession` is the same on librdkafka."""

    def __init__(self, bootstrap_servers: str, raw_topic: str, group_id: str, security=None):
        self.consumer = None
        self.producer = None
        try:
            self.consumer = open_consumer(bootstrap_servers, raw_topic, group_id, security)
            self.producer = new_producer(bootstrap_servers, security, **ROUND_PRODUCER_OVERRIDES)
        except BaseException:
            self.close()
            raise
        self.committed: Dict[Tuple[str, int], int] = {}

    def poll(self, max_records: int, wait_s: float, round_wait_s: Optional[float] = None,
             max_bytes: int = DEFAULT_ROUND_BYTES) -> List[RawEvent]:
        return poll_new_events(self.consumer, max_records, wait_s, round_wait_s, max_bytes)

    def send(self, records: Iterable[OutputRecord]) -> None:
        send_acknowledged(self.producer, records)

    def commit(self, events: Sequence[RawEvent]) -> None:
        self.committed.update(commit_events(self.consumer, events))

    def lost_committed_offsets(self) -> bool:
        """True when the broker no longer has an offset this session committed: it was restarted
        without its data (the in-memory embedded broker), so the positions must be re-read."""
        from kafka import TopicPartition

        for (topic, partition), offset in self.committed.items():
            committed = self.consumer.committed(TopicPartition(topic, partition))
            if committed is None or committed < offset:
                return True
        return False

    def close(self) -> None:
        for client in (self.consumer, self.producer):
            if client is None:
                continue
            try:
                client.close(timeout=2) if client is self.producer else client.close()
            except Exception:  # noqa: BLE001 - closing a client of a lost broker may fail
                LOG.debug("closing a Kafka client failed", exc_info=True)
        self.consumer = self.producer = None


def _kafka_errors() -> Tuple[type, ...]:
    from kafka.errors import KafkaError

    # TopicNotFound: a broker back without its topics (they are recreated by whoever owns them)
    # (the native session raises NativeKafkaError for librdkafka's exceptions, so confluent_kafka
    # is imported only by a stream that uses it)
    return (KafkaError, OSError, TopicNotFound, _BrokerLostState, NativeKafkaError)




def open_session(kafka_client: str, bootstrap_servers: str, raw_topic: str, group_id: str, security=None):
    """A :class:`KafkaSession` (kafka-python) or :class:`NativeKafkaSession` (librdkafka; ``auto``
    picks it when confluent-kafka is installed)."""
    if kafka_client not in KAFKA_CLIENTS:
        raise ValueError(f"kafka_client must be one of {KAFKA_CLIENTS}, got {kafka_client!r}")
    if kafka_client == "native" or kafka_client == "auto" and native_client_available():
        return NativeKafkaSession(bootstrap_servers, raw_topic, group_id, security)
    return KafkaSession(bootstrap_servers, raw_topic, group_id, security)


class _BrokerLostState(RuntimeError):
    """The broker no longer knows what this process committed (restarted without its data)."""


def _check_broker_state(session) -> None:
    if session.committed and session.lost_committed_offsets():
        raise _BrokerLostState("the broker lost the committed offsets (restarted without its data)")
