"""Complaint lines produced to the raw topic (``produce_lines``, for the demo, the generator and the tests).

``envleads stream`` (registered in :mod:`envleads.cli.pipelines`) runs the rounds engine, the package
:mod:`envleads.pipelines.rounds` (its docstring says how a round runs):
:func:`~envleads.pipelines.rounds.loop.run_stream` runs the rounds until interrupted.
"""
from __future__ import annotations

import json
from typing import Iterable

from envleads import schemas


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
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    producer = KafkaProducer(**client_kwargs(bootstrap_servers, security, role="producer"))
    futures = [producer.send(topic, value=raw_event_bytes(line)) for line in lines]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()
    return len(futures)
