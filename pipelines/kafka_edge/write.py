"""Writing Kafka with kafka-python, outside Beam: a round's outputs (:func:`send_acknowledged`, used
by the rounds engine's :class:`~envleads.pipelines.kafka_edge.session.KafkaSession` and by
``envleads replay``) and complaint lines produced to the raw topic (:func:`produce_lines`: the demo,
``envleads produce``, the tests).

Delivery: at-least-once, acknowledged. Every send waits until the broker acknowledged each record
(``acks=all`` from ``ops/kafka_config``); a failed send raises, so the caller commits nothing and
its input is read (and written) again. Lead keys are stable, so a re-sent lead replaces itself in
the compacted lead topic.
"""
from __future__ import annotations

import json
from typing import Iterable, Optional, Tuple

from envleads import schemas

OutputRecord = Tuple[str, Optional[bytes], bytes]  # (topic, key, value)

# For the round writers. Timeouts short enough that a lost broker surfaces within seconds, not the
# library's minutes. Batches of 512 KiB: a round's records go out in a few requests, and
# kafka-python wakes its sender thread (a socket write) per new batch; at the default 16 KiB, lead
# records of ~2 KB made that a quarter of the stream process's CPU in a backfill.
ROUND_PRODUCER_OVERRIDES = dict(max_block_ms=10_000, request_timeout_ms=10_000, delivery_timeout_ms=30_000,
                                batch_size=512 * 1024)


def new_producer(bootstrap_servers: str, security=None, **overrides):
    """A kafka-python producer of the project's client settings (TLS, SASL: ``ops/kafka_config``)."""
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    return KafkaProducer(**client_kwargs(bootstrap_servers, security, role="producer", **overrides))


def send_acknowledged(producer, records: Iterable[OutputRecord]) -> None:
    """Sends ``(topic, key, value)`` records and waits until the broker acknowledged every one (a
    failed send raises: the round is not committed and its events are read again)."""
    send = producer.send
    futures = [send(topic, key=key, value=value) for topic, key, value in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)


def raw_event_bytes(line: bytes) -> bytes:
    """A JSON complaint line as the Avro event an intake system would produce; a line that is not a
    valid complaint (the generator's malformed ones) is produced as it is, and must dead-letter."""
    try:
        document = json.loads(line.decode("utf-8"))
        return schemas.encode(schemas.RAW, document)
    except Exception:  # noqa: BLE001 - anything not encodable is sent raw on purpose
        return line


def produce_lines(bootstrap_servers: str, topic: str, lines: Iterable[bytes], security=None) -> int:
    """Produces complaint lines to the raw topic as Avro events, keyed by nothing (round-robin)."""
    producer = new_producer(bootstrap_servers, security)
    try:
        records = [(topic, None, raw_event_bytes(line)) for line in lines]
        send_acknowledged(producer, records)
        return len(records)
    finally:
        producer.close()
