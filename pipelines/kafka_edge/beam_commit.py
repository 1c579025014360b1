"""Committing a Beam job's raw offsets once its outputs are written: :class:`CommitWrittenOffsets`.

Each raw record's outputs are the *parts* it owes the sinks: its enriched record (or the dead letter
that replaces it) and its lead branch (a lead version, a dead letter, or nothing new, which the
lead branch still reports). A record that fails before repeat detection owes one dead letter,
which settles both parts. The sinks (``beam_sink.WriteToKafka`` with ``done_of``) emit a
:class:`RecordDone` for every element only after ``flush()`` and every send's acknowledgement
(``acks=all``); this step, keyed by partition, keeps per partition the next offset to commit and the
records settled beyond it, and commits the contiguous prefix of settled records to the group at the
end of each bundle. Records complete out of order (keys run in parallel, leads wait in state), so a
record settled early waits until every record before it is.

Contiguity without holes: offsets that hold no record (transaction markers) would stop a prefix of
``offset + 1`` steps for ever, so each record carries ``span_start`` from the source
(``KafkaCoordinates``): the offsets ``[span_start, offset]`` are its own, and the prefix moves from
``next`` to ``offset + 1`` when the record spanning from ``next`` is settled.

Guarantee: an offset is committed only after every output of the records before it was
acknowledged by the broker: at-least-once across stops and crashes. What was written and not yet
committed is read again after a restart: its enriched records and dead letters repeat; its leads
do not (prior leads, redeliveries recognised by complaint id). The progress lives in keyed state;
if a runner loses it (Prism keeps state in memory only) the job starts again from the group's
commit, and a commit never goes back within a process.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from envleads.records import KafkaCoordinates

LOG = logging.getLogger(__name__)

ENRICHED_PART = 1  # the enriched record, or the dead letter written instead
LEAD_PART = 2  # the lead branch: a lead version, its dead letter, or nothing new
WHOLE = ENRICHED_PART | LEAD_PART  # what a record owes; a dead letter before repeat detection settles both


class RecordDone(NamedTuple):
    """The ``parts`` of the raw record at ``offset`` (spanning from ``span_start``) whose outputs are written."""

    topic: str
    partition: int
    offset: int
    span_start: int
    parts: int


def record_done(source: Optional[KafkaCoordinates], parts: int) -> Optional[RecordDone]:
    """What a sink reports for an output of the record read at ``source`` (None: not from the source)."""
    if source is None or source.span_start is None:
        return None
    return RecordDone(source.topic, source.partition, source.offset, source.span_start, parts)


def partition_key(topic: str, partition: int) -> str:
    """The committer's key (Kafka topic names hold no ``:``)."""
    return f"{topic}:{partition}"


def advance(progress: Dict, done: RecordDone) -> Dict:
    """``progress`` (``{"next": offset, "settled": {span_start: [offset, parts]}}``) with ``done``
    added and ``next`` moved over the contiguous settled records. A report of a record already
    committed (a retried bundle's) changes nothing."""
    if done.offset < progress["next"]:
        return progress
    settled = progress["settled"]
    offset, parts = settled.get(str(done.span_start), (done.offset, 0))
    settled[str(done.span_start)] = [offset, parts | done.parts]
    next_offset = progress["next"]
    while settled.get(str(next_offset), (0, 0))[1] == WHOLE:
        next_offset = settled.pop(str(next_offset))[0] + 1
    progress["next"] = next_offset
    return progress


class _CommitPrefixFn(beam.DoFn):
    """Per partition: the progress in state (:func:`advance`); the bundle's advances committed in
    ``finish_bundle``, never below what this instance committed before."""

    PROGRESS = ReadModifyWriteStateSpec("progress", beam.coders.PickleCoder())

    def __init__(self, bootstrap_servers: str, group_id: str, starts: Mapping[str, int], security=None):
        self._client = (bootstrap_servers, security, group_id)
        self._starts = dict(starts)

    def setup(self):
        self._consumer = None
        self._committed: Dict[Tuple[str, int], int] = {}
        self._commits = Metrics.counter("CommitOffsets", "commits")

    def start_bundle(self):
        self._advanced: Dict[Tuple[str, int], int] = {}

    def process(self, keyed: Tuple[str, RecordDone], progress_state=beam.DoFn.StateParam(PROGRESS)):
        key, done = keyed
        progress = progress_state.read() or {"next": self._starts[key], "settled": {}}
        before = progress["next"]
        progress = advance(progress, done)
        progress_state.write(progress)
        if progress["next"] > before:
            self._advanced[(done.topic, done.partition)] = progress["next"]

    def finish_bundle(self):
        offsets = {tp: offset for tp, offset in self._advanced.items() if offset > self._committed.get(tp, -1)}
        if not offsets:
            return
        from kafka import TopicPartition

        from envleads.pipelines.kafka_edge.read import commit_offsets, new_consumer

        if self._consumer is None:
            bootstrap_servers, security, group_id = self._client
            self._consumer = new_consumer(bootstrap_servers, security, group_id)
        assigned = set(self._consumer.assignment())
        wanted = assigned | {TopicPartition(topic, partition) for topic, partition in offsets}
        if wanted != assigned:
            self._consumer.assign(sorted(wanted))
        commit_offsets(self._consumer, offsets)  # raises: the bundle fails and is retried
        self._committed.update(offsets)
        self._commits.inc()
        LOG.debug("committed %s", offsets)

    def teardown(self):
        if getattr(self, "_consumer", None) is not None:
            self._consumer.close()
            self._consumer = None


class CommitWrittenOffsets(beam.PTransform):
    """Commits to ``group_id``, per partition of the plan, the offsets of the raw records whose
    outputs are all written (the input: the sinks' :class:`RecordDone`). ``starts``: where the job
    started reading each partition, ``{partition_key(topic, partition): offset}``."""

    def __init__(self, bootstrap_servers: str, group_id: str, starts: Mapping[str, int], security=None):
        super().__init__()
        self._fn = _CommitPrefixFn(bootstrap_servers, group_id, starts, security)

    def expand(self, done):
        return (done
                | "KeyByPartition" >> beam.Map(lambda d: (partition_key(d.topic, d.partition), d))
                .with_output_types(Tuple[str, Any])
                | "CommitPrefix" >> beam.ParDo(self._fn))
