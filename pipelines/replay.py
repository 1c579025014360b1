"""``envleads replay``: re-processes past complaints through the stream's stages into the same topics.

Sources: an offset range or a time range of ``complaints.raw`` (read without a consumer group, so
the stream's committed offsets are untouched), or a file archive: JSON lines in the batch
contract's input format, or an Avro container file of ``raw_complaint`` records. The events run
through :class:`~envleads.pipelines.rounds.engine.LocalRoundEngine` with the compacted lead topic and
the keyed state's changelog as prior state, exactly as ``envleads stream`` runs them, and the
outputs (state changes included) go to the same topics.

Lead keys are derived from a matter's first complaint and restored matters know their complaint
ids, so a replayed complaint that was processed before keeps its matter and is not counted again:
its lead is updated (or left alone when nothing changed), never duplicated. Enriched records and
dead letters of a replayed range are written again (``complaints.enriched`` is at-least-once).

A replay takes the stream group's writer fence, so it runs while ``envleads stream`` is
stopped (it refuses to start beside it, or waits with ``--wait-for-fence``).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Dict, Iterable, Iterator, List, Optional

from envleads.pipelines.kafka_edge.read import open_consumer
from envleads.pipelines.kafka_edge.write import ROUND_PRODUCER_OVERRIDES, new_producer
from envleads.config import DEFAULT_STREAM_GROUP
from envleads.pipelines.heap import RoundCollector
from envleads.pipelines.rounds.engine import LocalRoundEngine
from envleads.pipelines.rounds.outputs import Topics, write_outputs
from envleads.pipelines.rounds.store import LeadStore
from envleads.records import KafkaCoordinates, RawEvent

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ sources
def parse_time_ms(value: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time read like ``tail --since`` (no offset: China Standard Time)."""
    from envleads.feed import parse_since

    text = value.strip()
    return int(text) if text.isdigit() else parse_since(text)


def events_from_topic(bootstrap_servers: str, topic: str, security=None, from_offset: Optional[int] = None,
                      to_offset: Optional[int] = None, from_ms: Optional[int] = None, to_ms: Optional[int] = None,
                      partitions: Optional[List[int]] = None, idle_s: float = 2.0) -> Iterator[RawEvent]:
    """Records of ``topic`` in ``[from_offset, to_offset)`` per partition and/or with a record
    timestamp in ``[from_ms, to_ms)``; read until nothing arrives for ``idle_s`` (the embedded
    broker under-reports end offsets, so the end is found by reading)."""
    from kafka import TopicPartition

    consumer = open_consumer(bootstrap_servers, topic, group_id=None, security=security)
    try:
        assignment = [tp for tp in consumer.assignment() if partitions is None or tp.partition in partitions]
        consumer.assign(assignment)
        starts: Dict[TopicPartition, int] = {tp: from_offset or 0 for tp in assignment}
        if from_ms is not None:
            found = consumer.offsets_for_times({tp: from_ms for tp in assignment})
            # a partition without a record at or after from_ms has nothing to replay
            assignment = [tp for tp in assignment if found.get(tp) is not None]
            consumer.assign(assignment)
            for tp in assignment:
                starts[tp] = max(starts[tp], found[tp].offset)
        for tp in assignment:
            consumer.seek(tp, starts[tp])
        done = set()
        deadline = time.monotonic() + idle_s
        while len(done) < len(assignment) and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=2000)
            for tp, records in batch.items():
                deadline = time.monotonic() + idle_s
                for record in records:
                    if to_offset is not None and record.offset >= to_offset:
                        done.add(tp)
                        consumer.pause(tp)
                        break
                    if from_ms is not None and record.timestamp < from_ms:
                        continue
                    if to_ms is not None and record.timestamp >= to_ms:
                        continue  # timestamps need not grow with offsets (CreateTime): keep reading
                    yield RawEvent(record.value if record.value is not None else b"", "avro",
                                   KafkaCoordinates(record.topic, record.partition, record.offset))
    finally:
        consumer.close()


def events_from_file(path: str) -> Iterator[RawEvent]:
    """A file archive: ``.avro`` = Avro container of ``raw_complaint`` records, else JSON lines."""
    from envleads import schemas

    if path.endswith(".avro"):
        import fastavro

        with open(path, "rb") as handle:
            for record in fastavro.reader(handle):
                try:
                    payload = schemas.encode(schemas.RAW, record)
                except (ValueError, TypeError, KeyError):
                    # not a raw_complaint: as JSON, decoding dead-letters it with its reason
                    yield RawEvent(json.dumps(record, ensure_ascii=False, default=str).encode("utf-8"), "json")
                    continue
                yield RawEvent(payload, "avro")
        return
    with open(path, "rb") as handle:
        for line in handle:  # a blank line is an empty event (dead letter), as in ``envleads batch``
            yield RawEvent(line.rstrip(b"\r\n"), "json")


def _chunks(events: Iterable[RawEvent], size: int) -> Iterator[List[RawEvent]]:
    chunk: List[RawEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ------------------------------------------------------------------------------------------- replay
def replay(bootstrap_servers: str, topics: Topics, events: Iterable[RawEvent], beam_args: Optional[List[str]] = None,
           security=None, max_round_events: int = 2000, group_id: str = DEFAULT_STREAM_GROUP,
           wait_for_fence: bool = False) -> Dict[str, int]:
    """Runs ``events`` through the stream's stages in rounds, writing to ``topics`` (acknowledged
    round by round); returns totals (events, rounds, enriched, leads written, dead letters).

    It writes the state a stream of ``group_id`` continues from, so it takes that group's writer
    fence first (:class:`~envleads.pipelines.writer_fence.WriterFence`: refuses while the stream
    runs, or waits with ``wait_for_fence``) and confirms it before each round's outputs."""
    from envleads.pipelines.writer_fence import WriterFence

    from envleads.pipelines.options import prepared_run

    _, settings = prepared_run(beam_args)
    store = LeadStore()
    producer = None
    totals = {"events": 0, "rounds": 0, "enriched": 0, "leads_written": 0, "dead_letters": 0}
    collector = RoundCollector()
    fence = WriterFence(bootstrap_servers, topics.raw, group_id, security, wait=wait_for_fence)
    try:
        fence.acquire()
        store.load_topics(bootstrap_servers, topics, security)
        engine = LocalRoundEngine(settings, store, checkpoint=True)  # continues the stream's state
        collector.start()
        producer = new_producer(bootstrap_servers, security, **ROUND_PRODUCER_OVERRIDES)
        for chunk in _chunks(events, max_round_events):
            outputs = engine.run(chunk)
            fence.confirm()
            store.put_leads(write_outputs(producer, topics, outputs, chunk))
            store.put_state(outputs.state)
            totals["events"] += len(chunk)
            totals["rounds"] += 1
            totals["enriched"] += len(outputs.enriched)
            totals["leads_written"] += len(outputs.leads)
            totals["dead_letters"] += len(outputs.dead_letters)
            collector.after_round()
            LOG.info("replay round %d: %d events; %d so far", totals["rounds"], len(chunk), totals["events"])
        totals["leads"] = len(store)
    finally:
        collector.stop()
        if producer is not None:
            producer.close(timeout=10)
        fence.close()
        store.close()
    return totals
