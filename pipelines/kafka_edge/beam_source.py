"""Reading Kafka in a Beam job, a Kafka source as a Beam transform: :class:`ReadFromKafka`, a splittable DoFn over kafka-python.

Each partition of the topics is one element and one restriction, an :class:`OffsetRange` of its
offsets: ``[start, sys.maxsize)`` when unbounded, ``[start, end)`` when bounded (tests, backfills:
a job over a finite topic finishes). The DoFn claims each record's offset, emits it as a
:class:`~envleads.pipelines.transforms.RawEvent` (its bytes, ``"avro"``, and its
``KafkaCoordinates``, so dead letters carry topic, partition and offset) timestamped with the
record's timestamp, and checkpoints itself (``defer_remainder``, the Python SDK's
``ProcessContinuation.resume()``) when a poll comes back empty or after ``max_call_s`` of reading,
so that every partition of a worker advances and bundles close. The watermark of a partition is
the newest record timestamp it has emitted (``MonotonicWatermarkEstimator``'s rule); the runner
takes the oldest of the partitions' as the source's. Prism (2.78) does not: it takes the estimate of
the restrictions in the source's latest bundle, so ``align_watermarks`` (set by ``run_beam_stream``
on Prism) makes each partition report at most the oldest of all the partitions read in its process.

Why kafka-python and not confluent-kafka (both are dependencies): the Beam sink
(``WriteToKafka``) and every other Beam-side Kafka helper use kafka-python, so one client's
configuration (``ops/kafka_config.client_kwargs``: TLS, SASL) serves both ends of the job; it is
pure Python, so an SDK worker holds no librdkafka threads between bundles; and on Prism the Fn
API's per-element work (coders, bundles, the stateful stages) dwarfs the client's per-record cost,
which is where confluent-kafka wins in the rounds engine (there, one process reads the whole raw
topic).

Where reading starts: the group's committed offsets when ``group_id`` is given (a partition the
group never committed starts at its beginning), else the beginning of each partition. Where a
bounded read stops: at the end each partition had when the job was planned. The embedded broker
(Tansu) reports as a partition's end the base offset of its last record *batch* + 1, so the end is
found by fetching from the reported end - 1 (on Apache Kafka that fetch returns one record and
changes nothing): see :func:`readable_end_offsets`.

Delivery: the source itself commits nothing. Started over the same offsets it re-reads the same
records, so a job is at-least-once from the offsets it starts at; enriched records and dead
letters can then repeat, and leads do not (stable ``lead_id`` keys, a redelivered complaint is
recognised by its id). ``run_beam_stream`` (``pipelines/beam_stream.py``) commits a bounded run's end offsets
to the group only after the job finished, i.e. after every sink bundle was acknowledged by the
broker: at-least-once across restarts for bounded runs. An unbounded job commits while it runs,
each record once its outputs are acknowledged (``beam_commit.py``: the sinks report what they
wrote; a bundle finaliser here would commit when the runner holds the records, which Prism keeps
in memory only). Each record's coordinates carry ``span_start``, the first offset it accounts for
(the record before it + 1, or the restriction's start), so that commits step over offsets that
hold no record.

Splitting: one restriction per partition is the parallelism. The tracker accepts the runner's
checkpoints (a split at fraction 0) but refuses fractional splits: a split of ``[n, sys.maxsize)``
would leave a residual starting at an offset the partition will never reach.

Known limits: an idle partition holds the job's watermark at its last record's time (no idle
advance yet); ``align_watermarks`` is sound only where one process runs every restriction; record
timestamps should be the intake time (``CreateTime`` set by the intake system) for the stateful
stages' expiry timers to mean event time; partitions added while the job runs are not read.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.iobase import WatermarkEstimator
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp

from envleads.pipelines.kafka_edge.read import new_consumer, partitions_for
from envleads.records import KafkaCoordinates, RawEvent

LOG = logging.getLogger(__name__)

SOURCE_STAGE = "ReadFromKafka"
UNBOUNDED_STOP = sys.maxsize  # the stop of an unbounded partition's OffsetRange


class KafkaPartitionRange(NamedTuple):
    """One partition of a topic and the offsets to read: ``[start, stop)``, ``stop`` None: unbounded."""

    topic: str
    partition: int
    start: int
    stop: Optional[int] = None


# --------------------------------------------------------------------------------------- planning
def _consumer(bootstrap_servers: str, security, group_id: Optional[str] = None):
    # auto_offset_reset only matters when a start offset was deleted by retention: read on from
    # the earliest kept record (the process loop skips nothing it should not: offsets only grow)
    return new_consumer(bootstrap_servers, security, group_id, auto_offset_reset="earliest")


def readable_end_offsets(consumer, partitions: Sequence, timeout_s: float = 10.0) -> Dict:
    """Per ``TopicPartition``, the offset after the last record readable now.

    ``end_offsets()`` is exact on Apache Kafka; the embedded broker (Tansu v0.6) answers the base
    offset of the last record batch + 1. A fetch from that answer - 1 returns the whole last batch,
    whose last offset + 1 is the end on both (on Kafka it returns the one last record). The first
    poll that returns records of a partition settles it (records appended meanwhile may count: they
    were there when the plan was made); a partition with no answer in ``timeout_s`` keeps the
    reported end.
    """
    reported = consumer.end_offsets(list(partitions))
    beginnings = consumer.beginning_offsets(list(partitions))
    ends = dict(reported)
    pending = [tp for tp in partitions if reported[tp] > beginnings[tp]]
    if not pending:
        return ends
    consumer.assign(pending)
    for tp in pending:
        consumer.seek(tp, reported[tp] - 1)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=100_000)
        for tp, records in batch.items():
            if tp in pending and records:
                ends[tp] = max(reported[tp], records[-1].offset + 1)
                pending.remove(tp)
                consumer.pause(tp)
    if pending:
        LOG.warning("no answer from %d partition(s) when looking for their end; kept the reported end", len(pending))
    consumer.assign([])
    return ends


def plan_partitions(bootstrap_servers: str, topics: Iterable[str], group_id: Optional[str] = None,
                    bounded: bool = False, security=None) -> List[KafkaPartitionRange]:
    """The partitions of ``topics`` with where to read them: from the group's committed offset
    (``group_id`` given and a commit exists), else from the beginning; up to the end readable now
    when ``bounded``, else without end."""
    from kafka import TopicPartition

    consumer = _consumer(bootstrap_servers, security, group_id)
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in partitions_for(consumer, topic)]
        beginnings = consumer.beginning_offsets(partitions)
        ends = readable_end_offsets(consumer, partitions) if bounded else {}
        plan = []
        for tp in partitions:
            committed = consumer.committed(tp) if group_id else None
            start = max(beginnings[tp], committed if committed is not None else 0)
            stop = ends.get(tp)
            if stop is not None:
                start = min(start, stop)
            plan.append(KafkaPartitionRange(tp.topic, tp.partition, start, stop))
        return plan
    finally:
        consumer.close()


# ------------------------------------------------------------------------------ the splittable DoFn
class _CheckpointOnlyTracker(OffsetRestrictionTracker):
    """An ``OffsetRestrictionTracker`` that accepts checkpoints (fraction 0: ``defer_remainder``
    and the runner's own) and refuses fractional splits (see the module docstring)."""

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)

    def is_bounded(self):
        return self.current_restriction().stop < UNBOUNDED_STOP


class _PartitionRestrictionProvider(RestrictionProvider):
    def initial_restriction(self, element: KafkaPartitionRange) -> OffsetRange:
        return OffsetRange(element.start, UNBOUNDED_STOP if element.stop is None else element.stop)

    def create_tracker(self, restriction: OffsetRange) -> _CheckpointOnlyTracker:
        return _CheckpointOnlyTracker(restriction)

    def restriction_size(self, element, restriction: OffsetRange) -> int:
        # the backlog of an unbounded partition is not known without asking the broker: a constant
        return 1 if restriction.stop >= UNBOUNDED_STOP else restriction.size()

    def split(self, element, restriction):
        yield restriction  # one restriction per partition, never split up front


_PROVIDER = _PartitionRestrictionProvider()


# Aligned watermarks (``align_watermarks``): per job (a token), the newest record time of each
# partition read in this process. Prism 2.78 takes as a splittable DoFn's output watermark the
# minimum estimate of the restrictions of its *latest bundle* (engine/elementmanager.go replaces the
# stage's estimate with each bundle's, and pending restrictions do not hold it), so one partition's
# estimate can pass another's unread records; aligned, each restriction reports at most the oldest
# of its job's partitions. Sound only where every restriction of the job runs in one process.
_ALIGNED_LOCK = threading.Lock()
_ALIGNED: Dict[str, Dict[Tuple[str, int], Timestamp]] = {}


def _note_partition_time(token: str, key: Tuple[str, int], newest: Timestamp,
                         partitions: Sequence[Tuple[str, int]]) -> Timestamp:
    """Records ``key``'s newest record time (never lowering it); returns the oldest of ``partitions``
    (a partition not seen yet: the minimum timestamp)."""
    with _ALIGNED_LOCK:
        table = _ALIGNED.setdefault(token, {})
        if newest > table.get(key, MIN_TIMESTAMP):
            table[key] = newest
        return min((table.get(p, MIN_TIMESTAMP) for p in partitions), default=MAX_TIMESTAMP)


class _RecordTimeWatermarkEstimator(WatermarkEstimator):
    """The newest record time emitted by a restriction (``MonotonicWatermarkEstimator``'s rule,
    started at the minimum timestamp: Beam 2.78's default provider starts it at None, and its
    ``current_watermark()`` then compares a timestamp with None, ``TypeError``, the first time a
    restriction that emitted records checkpoints). Aligned (``token``), it reports at most the
    oldest newest-record-time of the job's ``partitions`` in this process."""

    def __init__(self, state, token: Optional[str] = None, partitions: Sequence[Tuple[str, int]] = ()):
        self._key, self._watermark = state
        self._newest = self._watermark
        self._token, self._partitions = token, partitions

    def observe_timestamp(self, timestamp):
        if timestamp > self._newest:
            self._newest = timestamp

    def current_watermark(self):
        candidate = self._newest
        if self._token is not None:
            candidate = min(candidate, _note_partition_time(self._token, self._key, self._newest, self._partitions))
        if candidate > self._watermark:
            self._watermark = candidate
        return self._watermark

    def get_estimator_state(self):
        return self._key, self._watermark


class PollSettings(NamedTuple):
    """How a restriction reads: each poll waits up to ``poll_timeout_s`` for ``max_poll_records``;
    a call checkpoints after ``max_call_s`` of reading, or when a poll comes back empty, resuming
    ``idle_resume_s`` later."""

    poll_timeout_s: float = 0.5
    max_call_s: float = 2.0
    idle_resume_s: float = 0.5
    max_poll_records: int = 500


class _ReadPartitionFn(beam.DoFn, WatermarkEstimatorProvider):
    """Reads one partition's restriction (bounded form; :class:`_ReadUnboundedPartitionFn` is the
    same with ``unbounded_per_element``). One consumer per partition per DoFn instance, kept across
    calls, so a resumed restriction continues from the consumer's buffered position."""

    def __init__(self, bootstrap_servers: str, security=None, poll: PollSettings = PollSettings(),
                 aligned_partitions: Optional[Sequence[Tuple[str, int]]] = None):
        """``aligned_partitions``: align the watermark over these partitions (see ``ReadFromKafka``)."""
        self._token = uuid.uuid4().hex if aligned_partitions else None
        self._aligned_partitions = tuple(aligned_partitions or ())
        self._client = (bootstrap_servers, security)
        self._poll = poll

    def setup(self):
        self._consumers: Dict[tuple, object] = {}
        self._read = Metrics.counter(SOURCE_STAGE, "records")
        self._resumed = Metrics.counter(SOURCE_STAGE, "checkpoints")

    # WatermarkEstimatorProvider: the estimator state is (topic, partition) and the watermark
    def initial_estimator_state(self, element: KafkaPartitionRange, restriction):
        return (element.topic, element.partition), MIN_TIMESTAMP

    def create_watermark_estimator(self, estimator_state):
        return _RecordTimeWatermarkEstimator(estimator_state, self._token, self._aligned_partitions)

    def _finished(self, element: KafkaPartitionRange) -> None:
        """A bounded restriction read to its end no longer holds the aligned watermark."""
        if self._token is not None:
            _note_partition_time(self._token, (element.topic, element.partition), MAX_TIMESTAMP, ())

    def _consumer_for(self, topic: str, partition: int):
        from kafka import TopicPartition

        consumer = self._consumers.get((topic, partition))
        if consumer is None:
            consumer = _consumer(*self._client)
            consumer.assign([TopicPartition(topic, partition)])
            self._consumers[(topic, partition)] = consumer
        return consumer

    def _read_partition(self, element: KafkaPartitionRange, tracker) -> Iterator[TimestampedValue]:
        from kafka import TopicPartition

        restriction = tracker.current_restriction()
        tp = TopicPartition(element.topic, element.partition)
        consumer = self._consumer_for(element.topic, element.partition)
        if consumer.position(tp) != restriction.start:
            consumer.seek(tp, restriction.start)
        next_offset = span_start = restriction.start
        last_ms = 0
        deadline = time.monotonic() + self._poll.max_call_s
        while True:
            records = consumer.poll(timeout_ms=int(self._poll.poll_timeout_s * 1000),
                                    max_records=self._poll.max_poll_records).get(tp, [])
            if not records:
                if consumer.position(tp) >= restriction.stop:
                    tracker.try_claim(restriction.stop)  # only control records were left: done
                    self._finished(element)
                    return
                self._resumed.inc()
                tracker.defer_remainder(Duration(seconds=self._poll.idle_resume_s))
                return
            for record in records:
                if record.offset < next_offset:
                    continue  # already emitted (the consumer was reset below the restriction)
                if not tracker.try_claim(record.offset):
                    consumer.seek(tp, record.offset)  # split off or past a bounded end
                    return
                last_ms = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else last_ms
                self._read.inc()
                yield TimestampedValue(
                    RawEvent(record.value if record.value is not None else b"", "avro",
                             KafkaCoordinates(record.topic, record.partition, record.offset, span_start)),
                    Timestamp(micros=last_ms * 1000))
                next_offset = span_start = record.offset + 1
            if next_offset >= restriction.stop:
                self._finished(element)
                return  # a bounded restriction read to its end
            if time.monotonic() >= deadline:
                self._resumed.inc()
                tracker.defer_remainder()
                return

    def process(self, element: KafkaPartitionRange,
                tracker=beam.DoFn.RestrictionParam(_PROVIDER),
                watermark_estimator=beam.DoFn.WatermarkEstimatorParam()):
        # no return annotation: the outputs are pickled RawEvent, as in the other stages
        yield from self._read_partition(element, tracker)

    def teardown(self):
        for consumer in getattr(self, "_consumers", {}).values():
            consumer.close()
        self._consumers = {}


class _ReadUnboundedPartitionFn(_ReadPartitionFn):
    @beam.DoFn.unbounded_per_element()
    def process(self, element: KafkaPartitionRange,
                tracker=beam.DoFn.RestrictionParam(_PROVIDER),
                watermark_estimator=beam.DoFn.WatermarkEstimatorParam()):
        # no return annotation: the outputs are pickled RawEvent, as in the other stages
        yield from self._read_partition(element, tracker)


class _PlanPartitionsFn(beam.DoFn):
    def __init__(self, bootstrap_servers, topics, group_id, bounded, security):
        self._args = (bootstrap_servers, list(topics), group_id, bounded, security)

    def process(self, _):
        bootstrap_servers, topics, group_id, bounded, security = self._args
        yield from plan_partitions(bootstrap_servers, topics, group_id, bounded, security)


class ReadFromKafka(beam.PTransform):
    """Reads the records of Kafka topics as ``RawEvent`` (bytes, ``"avro"``, topic/partition/offset),
    timestamped with the record timestamp; one splittable restriction per partition.

    Args:
        bootstrap_servers: ``host:port,...``.
        topics: the topics to read (all their partitions, as known when the job starts).
        group_id: start at this group's committed offsets (else at the beginning). The source
            never commits (see the module docstring for what is committed, and when).
        bounded: stop at the end each partition had at the start (a job over a finite topic
            finishes); otherwise read without end.
        security: ``ops.kafka_config.KafkaSecurity`` (None: PLAINTEXT).
        partitions: the plan itself (:func:`plan_partitions`), made by the caller (so it knows the
            bounded ends, to commit them); by default it is made in the job, when it starts.
        max_call_s: a restriction checkpoints after reading this long, so bundles close.
        align_watermarks: each partition reports as its watermark at most the oldest of all the
            planned partitions read in this SDK process. For Prism, which does not take the minimum
            over a splittable DoFn's restrictions itself (see the module docstring); sound only
            when one process runs every restriction (Prism, the local runners): on a distributed
            runner a partition read elsewhere would hold the watermark for ever. Needs
            ``partitions``.

    Delivery: every record of the planned ranges once per run, in offset order within a partition
    (a bundle the runner retries emits its records again, as with any source); across runs, what the start offsets give (at-least-once from a commit made after the outputs
    were written).
    """

    def __init__(self, bootstrap_servers: str, topics: Sequence[str], group_id: Optional[str] = None,
                 bounded: bool = False, security=None, partitions: Optional[List[KafkaPartitionRange]] = None,
                 max_call_s: float = 2.0, poll_timeout_s: float = 0.5, align_watermarks: bool = False):
        super().__init__()
        if align_watermarks and partitions is None:
            raise ValueError("align_watermarks needs the plan (partitions)")
        self._bounded = bounded
        self._partitions = partitions
        self._plan_fn = _PlanPartitionsFn(bootstrap_servers, topics, group_id, bounded, security)
        fn_class = _ReadPartitionFn if bounded else _ReadUnboundedPartitionFn
        aligned = [(p.topic, p.partition) for p in partitions] if align_watermarks else None
        self._fn = fn_class(bootstrap_servers, security, PollSettings(poll_timeout_s, max_call_s),
                            aligned_partitions=aligned)

    def expand(self, pbegin):
        if self._partitions is not None:
            if self._bounded and any(p.stop is None for p in self._partitions):
                raise ValueError("a bounded read needs a stop offset for every partition")
            planned = pbegin | "Partitions" >> beam.Create(list(self._partitions))
        else:
            planned = (pbegin | "Impulse" >> beam.Impulse()
                       | "PlanPartitions" >> beam.ParDo(self._plan_fn))
        return planned | "ReadPartitions" >> beam.ParDo(self._fn)
