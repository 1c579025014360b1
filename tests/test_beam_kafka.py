"""The Beam Kafka source (``pipelines/kafka_edge/beam_source.py``) and the streaming job Kafka in, Kafka out
(``pipelines/beam_stream.py``), on Prism against the embedded broker.

1. Planning: the bounded end of each partition is the readable end even where the embedded broker
   under-reports it (records produced in batches), and a group's committed offsets are the start.
2. The source alone on Prism, bounded: every record of a three-partition topic once, with its
   partition, offset and record timestamp, and nothing produced after the plan.
3. End to end on Prism: generated events on a raw topic, the streaming job bounded, its enriched,
   lead and dead-letter topics against what the rounds engine writes for the same events.

Prism is the binary ``make prism`` builds (``prism_location`` fixture: skipped without Go); nothing
is downloaded at run time.
"""
from __future__ import annotations

import os
import uuid
from typing import List, NamedTuple

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from envleads.pipelines.kafka_edge.beam_source import KafkaPartitionRange, ReadFromKafka, plan_partitions
from envleads.pipelines.kafka_edge.read import commit_group_offsets

pytestmark = pytest.mark.kafka

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITIONS = 3


def _prism_args(prism_location: str) -> List[str]:
    return ["--runner", "PrismRunner", "--prism_location", prism_location, "--prism_log_level", "warn",
            "--environment_type", "LOOPBACK"]


def _produce(bootstrap: str, topic: str, records) -> None:
    """``records``: ``(partition, value, timestamp_ms)``, sent together (so the broker stores
    batches of several records, where the embedded broker under-reports the end offset)."""
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    producer = KafkaProducer(**client_kwargs(bootstrap, None, role="producer", linger_ms=50))
    futures = [producer.send(topic, value=value, partition=partition, timestamp_ms=ts) for partition, value, ts in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()


def _numbered(count: int, first: int = 0):
    """Record ``i`` goes to partition ``i % 3`` with value ``r<i>`` and time BASE + i s."""
    return [(i % PARTITIONS, f"r{i}".encode(), BASE_MS + i * 1000) for i in range(first, first + count)]


class _AppendLines(beam.DoFn):
    """Test sink: each element (a line of text) appended to a file of its own in ``folder``."""

    def __init__(self, folder: str):
        self._folder = folder

    def setup(self):
        self._handle = open(os.path.join(self._folder, f"{uuid.uuid4().hex}.txt"), "a", encoding="utf-8")

    def process(self, line: str):
        self._handle.write(line + "\n")
        self._handle.flush()

    def teardown(self):
        self._handle.close()


def _read_lines(folder) -> List[str]:
    lines: List[str] = []
    for path in sorted(folder.glob("*.txt")):
        lines.extend(line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return lines


# ---------------------------------------------------------------------------- 0. the DoFn alone
class _Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


class _ScriptedConsumer:
    """A kafka-python consumer of one partition whose polls return scripted record lists."""

    def __init__(self, polls, position_after=None):
        self._polls = list(polls)
        self._position = None
        self._position_after = position_after  # where an empty poll leaves the position (control records)
        self.seeks = []

    def position(self, tp):
        return self._position if self._position is not None else 0

    def seek(self, tp, offset):
        self.seeks.append(offset)
        self._position = offset

    def poll(self, timeout_ms, max_records):
        from kafka import TopicPartition

        records = self._polls.pop(0) if self._polls else []
        if records:
            self._position = records[-1].offset + 1
        elif self._position_after is not None:
            self._position = self._position_after
        return {TopicPartition("t", 0): records} if records else {}

    def close(self):
        pass


def _run_fn(restriction, consumer):
    """Runs ``_ReadPartitionFn`` over one restriction as the SDK harness does; returns the emitted
    ``(offset, value, timestamp ms)``, the tracker (done or not) and the deferred residual."""
    from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

    from envleads.pipelines.kafka_edge.beam_source import PollSettings, _CheckpointOnlyTracker, _ReadPartitionFn

    fn = _ReadPartitionFn("unused:9092", poll=PollSettings(poll_timeout_s=0.01, max_call_s=60))
    fn.setup()
    fn._consumers[("t", 0)] = consumer
    tracker = ThreadsafeRestrictionTracker(_CheckpointOnlyTracker(restriction))
    element = KafkaPartitionRange("t", 0, restriction.start, None)
    emitted = [(v.value.source.offset, v.value.payload, v.timestamp.micros // 1000)
               for v in fn._read_partition(element, RestrictionTrackerView(tracker))]
    deferred = tracker.deferred_status()
    return emitted, tracker, deferred[0] if deferred else None


def test_fn_reads_a_bounded_range_to_its_end_without_checkpointing():
    from apache_beam.io.restriction_trackers import OffsetRange

    records = [_Record("t", 0, o, BASE_MS + o, f"v{o}".encode()) for o in range(3)]
    emitted, tracker, residual = _run_fn(OffsetRange(0, 3), _ScriptedConsumer([records]))
    assert emitted == [(0, b"v0", BASE_MS), (1, b"v1", BASE_MS + 1), (2, b"v2", BASE_MS + 2)]
    tracker.check_done()
    assert residual is None


def test_fn_checkpoints_an_unbounded_range_when_a_poll_is_empty():
    import sys

    from apache_beam.io.restriction_trackers import OffsetRange

    consumer = _ScriptedConsumer([[_Record("t", 0, 3, BASE_MS, b"old"), _Record("t", 0, 5, BASE_MS, b"a"),
                                   _Record("t", 0, 6, BASE_MS + 9, b"b")], []])
    emitted, tracker, residual = _run_fn(OffsetRange(5, sys.maxsize), consumer)
    assert consumer.seeks == [5]
    assert emitted == [(5, b"a", BASE_MS), (6, b"b", BASE_MS + 9)]  # offset 3 is before the restriction
    assert residual == OffsetRange(7, sys.maxsize)
    tracker.check_done()


def test_fn_finishes_a_bounded_range_whose_last_offsets_hold_no_record():
    from apache_beam.io.restriction_trackers import OffsetRange

    # offsets 2 and 3 are transaction markers: the position moves past them, no record comes
    consumer = _ScriptedConsumer([[_Record("t", 0, o, BASE_MS, b"x") for o in range(2)], []], position_after=4)
    emitted, tracker, residual = _run_fn(OffsetRange(0, 4), consumer)
    assert [offset for offset, _, _ in emitted] == [0, 1]
    tracker.check_done()
    assert residual is None


def test_tracker_refuses_fractional_splits_and_accepts_checkpoints():
    import sys

    from apache_beam.io.restriction_trackers import OffsetRange

    from envleads.pipelines.kafka_edge.beam_source import _CheckpointOnlyTracker

    tracker = _CheckpointOnlyTracker(OffsetRange(0, sys.maxsize))
    assert tracker.try_claim(3)
    assert tracker.try_split(0.5) is None
    assert not tracker.is_bounded()
    primary, residual = tracker.try_split(0)
    assert (primary, residual) == (OffsetRange(0, 4), OffsetRange(4, sys.maxsize))
    assert _CheckpointOnlyTracker(OffsetRange(0, 10)).is_bounded()


def test_aligned_estimator_reports_the_oldest_partition_seen_in_the_process():
    from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp

    from envleads.pipelines.kafka_edge.beam_source import _note_partition_time, _RecordTimeWatermarkEstimator

    token, partitions = uuid.uuid4().hex, [("t", 0), ("t", 1)]
    ahead = _RecordTimeWatermarkEstimator((("t", 0), MIN_TIMESTAMP), token, partitions)
    ahead.observe_timestamp(Timestamp(60))
    assert ahead.current_watermark() == MIN_TIMESTAMP  # partition 1 has not been read yet
    behind = _RecordTimeWatermarkEstimator((("t", 1), MIN_TIMESTAMP), token, partitions)
    behind.observe_timestamp(Timestamp(2))
    assert behind.current_watermark() == Timestamp(2)
    assert ahead.current_watermark() == Timestamp(2)
    behind.observe_timestamp(Timestamp(1))  # an older record does not move it back
    assert behind.current_watermark() == Timestamp(2)
    _note_partition_time(token, ("t", 1), MAX_TIMESTAMP, ())  # partition 1's bounded range is read
    assert ahead.current_watermark() == Timestamp(60)
    assert ahead.get_estimator_state() == (("t", 0), Timestamp(60))
    alone = _RecordTimeWatermarkEstimator((("t", 0), MIN_TIMESTAMP))  # not aligned: its own newest record
    alone.observe_timestamp(Timestamp(60))
    assert alone.current_watermark() == Timestamp(60)


def test_prism_location_and_no_splits_are_added_for_prism_only_and_prism_never_downloaded(tmp_path, monkeypatch):
    from envleads.pipelines.beam_stream import (PRISM_BIN_ENV_VAR, PRISM_NO_SPLITS_EXPERIMENT, PrismMissing,
                                                with_local_prism)

    binary = tmp_path / "prism"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv(PRISM_BIN_ENV_VAR, str(binary))
    no_splits = f"--experiments={PRISM_NO_SPLITS_EXPERIMENT}"
    assert with_local_prism(["--runner", "FnApiRunner"], no_splits=True) == ["--runner", "FnApiRunner"]
    assert with_local_prism(["--runner=PrismRunner"]) == ["--runner=PrismRunner", "--prism_location", str(binary)]
    given = ["--runner", "PrismRunner", "--prism_location", "/elsewhere/prism"]
    assert with_local_prism(given) == given
    assert with_local_prism(given, no_splits=True) == given + [no_splits]
    assert with_local_prism(given + [no_splits], no_splits=True) == given + [no_splits]
    monkeypatch.setenv(PRISM_BIN_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(PrismMissing, match="run make prism"):
        with_local_prism(["--runner", "PrismRunner"])


# ------------------------------------------------------------------------------------- 1. planning
def test_bounded_plan_ends_at_the_readable_end_and_starts_at_the_group_commit(kafka_broker, tmp_topics):
    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=PARTITIONS)["raw"]
    _produce(bootstrap, topic, _numbered(60))

    plan = plan_partitions(bootstrap, [topic], bounded=True)
    assert sorted(plan) == [KafkaPartitionRange(topic, p, 0, 20) for p in range(PARTITIONS)]
    assert all(p.stop is None for p in plan_partitions(bootstrap, [topic]))

    group = f"plan-{uuid.uuid4().hex[:8]}"
    commit_group_offsets(bootstrap, group, {(topic, 0): 5, (topic, 2): 19})
    planned = {p.partition: (p.start, p.stop) for p in plan_partitions(bootstrap, [topic], group, bounded=True)}
    assert planned == {0: (5, 20), 1: (0, 20), 2: (19, 20)}


# ------------------------------------------------------------------------------- 2. the source alone
def test_source_on_prism_reads_every_record_once_with_its_coordinates_and_time(kafka_broker, tmp_topics,
                                                                              prism_location, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=PARTITIONS)["raw"]
    _produce(bootstrap, topic, _numbered(60))
    plan = plan_partitions(bootstrap, [topic], bounded=True)
    _produce(bootstrap, topic, _numbered(6, first=60))  # after the plan: not read by this bounded run

    def describe(event, timestamp=beam.DoFn.TimestampParam):
        source = event.source
        return f"{source.topic} {source.partition} {source.offset} {event.payload.decode()} {event.fmt} " \
               f"{timestamp.micros // 1000}"

    sink = tmp_path / "out"
    sink.mkdir()
    with beam.Pipeline(options=PipelineOptions(_prism_args(prism_location))) as pipeline:
        _ = (pipeline
             | "ReadFromKafka" >> ReadFromKafka(bootstrap, [topic], bounded=True, partitions=plan, max_call_s=0.5)
             | "Describe" >> beam.Map(describe)
             | "Sink" >> beam.ParDo(_AppendLines(str(sink))))

    # record i: partition i % 3, offset i // 3 (one producer, in order), value r<i>, time BASE + i s
    expected = sorted(f"{topic} {i % 3} {i // 3} r{i} avro {BASE_MS + i * 1000}" for i in range(60))
    assert sorted(_read_lines(sink)) == expected


def test_unbounded_source_on_prism_reads_records_produced_while_it_runs(kafka_broker, tmp_topics, prism_location,
                                                                       tmp_path):
    """Unbounded: the job keeps polling (checkpoints while a partition is empty) and emits records
    produced after it started, from the group's committed offsets; it runs until cancelled."""
    import time

    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import PipelineState

    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=2)["raw"]
    _produce(bootstrap, topic, [(i % 2, f"old{i}".encode(), BASE_MS + i) for i in range(4)])
    group = f"unbounded-{uuid.uuid4().hex[:8]}"
    commit_group_offsets(bootstrap, group, {(topic, 0): 2, (topic, 1): 1})  # partition 0 read, 1 half read

    sink = tmp_path / "out"
    sink.mkdir()
    options = PipelineOptions(_prism_args(prism_location))
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "ReadFromKafka" >> ReadFromKafka(bootstrap, [topic], group_id=group, max_call_s=0.5)
         | "Describe" >> beam.Map(lambda e: f"{e.source.partition} {e.source.offset} {e.payload.decode()}")
         | "Sink" >> beam.ParDo(_AppendLines(str(sink))))
    result = pipeline.run()
    try:
        time.sleep(3)  # the job is up and has found partition 0 empty at least once
        _produce(bootstrap, topic, [(i % 2, f"new{i}".encode(), BASE_MS + 100 + i) for i in range(6)])
        expected = sorted(["1 1 old3"] + [f"{i % 2} {2 + i // 2} new{i}" for i in range(6)])
        deadline = time.monotonic() + 60
        while sorted(_read_lines(sink)) != expected and time.monotonic() < deadline:
            assert result.state not in (PipelineState.FAILED, PipelineState.DONE, PipelineState.CANCELLED)
            time.sleep(0.5)
        assert sorted(_read_lines(sink)) == expected
    finally:
        result.cancel()
    assert result.state != PipelineState.DONE  # it would have read on


class _WindowContents(beam.DoFn):
    def process(self, element, window=beam.DoFn.WindowParam):
        _, payloads = element
        yield f"{window.start.micros // 1_000_000} " + ",".join(sorted(payloads))


def test_unbounded_watermark_follows_record_times(kafka_broker, tmp_topics, prism_location, tmp_path):
    """The watermark is the newest record time read: a 10 s window closes once a record past it is
    read, and a window no record has passed stays open however long the job runs (wall-clock time
    is not the watermark). One partition: with several, Prism takes as the source's watermark the
    estimate of the restrictions of its latest bundle, not the oldest of all partitions (see
    docs/operations.md), so a window could close before a slower partition's records reach it unless
    ``align_watermarks`` is on (next test)."""
    import time

    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.transforms.window import FixedWindows

    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=1)["raw"]
    start_s = BASE_MS // 1000
    _produce(bootstrap, topic, [(0, b"a0", BASE_MS + 1000), (0, b"a1", BASE_MS + 2000)])

    sink = tmp_path / "out"
    sink.mkdir()
    options = PipelineOptions(_prism_args(prism_location))
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "ReadFromKafka" >> ReadFromKafka(bootstrap, [topic], max_call_s=0.5)
         | "Window" >> beam.WindowInto(FixedWindows(10))
         | "Key" >> beam.Map(lambda e: ("all", e.payload.decode()))
         | "Group" >> beam.GroupByKey()
         | "Describe" >> beam.ParDo(_WindowContents())
         | "Sink" >> beam.ParDo(_AppendLines(str(sink))))
    result = pipeline.run()
    try:
        time.sleep(6)  # the newest record is at +2 s: the first window cannot close yet
        assert _read_lines(sink) == []
        _produce(bootstrap, topic, [(0, b"b0", BASE_MS + 60_000)])
        deadline = time.monotonic() + 60
        while not _read_lines(sink) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        assert _read_lines(sink) == [f"{start_s} a0,a1"]  # the +60 s window stays open
    finally:
        result.cancel()


def test_aligned_watermark_waits_for_the_oldest_partition_on_prism(kafka_broker, tmp_topics, prism_location,
                                                                   tmp_path):
    """Two partitions, one far ahead: with ``align_watermarks`` a window closes only when both
    partitions have a record past it, and holds the behind partition's record. (Without it, Prism
    closed the first window with partition 0's record alone and dropped partition 1's as late.)"""
    import time

    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.transforms.window import FixedWindows

    bootstrap = kafka_broker.bootstrap_servers
    topic = tmp_topics("raw", partitions=2)["raw"]
    start_s = BASE_MS // 1000
    _produce(bootstrap, topic, [(0, b"a0", BASE_MS + 1000), (1, b"a1", BASE_MS + 2000), (0, b"b0", BASE_MS + 60_000)])
    plan = plan_partitions(bootstrap, [topic])

    sink = tmp_path / "out"
    sink.mkdir()
    options = PipelineOptions(_prism_args(prism_location))
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "ReadFromKafka" >> ReadFromKafka(bootstrap, [topic], partitions=plan, max_call_s=0.5, align_watermarks=True)
         | "Window" >> beam.WindowInto(FixedWindows(10))
         | "Key" >> beam.Map(lambda e: ("all", e.payload.decode()))
         | "Group" >> beam.GroupByKey()
         | "Describe" >> beam.ParDo(_WindowContents())
         | "Sink" >> beam.ParDo(_AppendLines(str(sink))))
    result = pipeline.run()
    try:
        time.sleep(6)  # partition 1's newest record is at +2 s: the first window cannot close yet
        assert _read_lines(sink) == []
        _produce(bootstrap, topic, [(1, b"b1", BASE_MS + 61_000)])
        deadline = time.monotonic() + 60
        while not _read_lines(sink) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        assert _read_lines(sink) == [f"{start_s} a0,a1"]  # the +60 s window stays open
    finally:
        result.cancel()


# ------------------------------------------------------------------------------------ 3. end to end
E2E_EVENTS = 200
E2E_SEED = 24


@pytest.fixture(scope="module")
def model_version():
    from envleads.models.registry import ensure_default_model

    return ensure_default_model()


def _produce_events(bootstrap: str, topic: str, events) -> List[tuple]:
    """Each generated event as the intake system would produce it: Avro (a malformed one as its
    bytes), record timestamp = the complaint's ``received_at`` (CreateTime set by the intake; a
    malformed event takes the previous one's), round-robin over the partitions. Returns
    ``(partition, offset)`` of each, in the order of ``events``."""
    import json

    from kafka import KafkaProducer

    from envleads.decode import parse_event_time
    from envleads.ops.kafka_config import client_kwargs
    from envleads.pipelines.kafka_edge.write import raw_event_bytes

    producer = KafkaProducer(**client_kwargs(bootstrap, None, role="producer", linger_ms=20))
    futures, last_ms = [], BASE_MS
    for number, event in enumerate(events):
        try:
            last_ms = parse_event_time(json.loads(event.line)["received_at"])
        except Exception:  # noqa: BLE001 - a malformed event: the previous event's time
            pass
        futures.append(producer.send(topic, value=raw_event_bytes(event.line), timestamp_ms=last_ms,
                                     partition=number % 2))
    producer.flush()
    coordinates = [(meta.partition, meta.offset) for meta in (future.get(timeout=30) for future in futures)]
    producer.close()
    return coordinates


def _decoded(bootstrap: str, topic: str, subject: str) -> list:
    from envleads import schemas
    from kafka_scan import scan_topic

    return [(record.key, schemas.decode(subject, record.value)) for record in scan_topic(bootstrap, topic)]


def _compacted_leads(bootstrap: str, topic: str) -> dict:
    """The last lead per key, as ``{lead_id: avro dict}``."""
    from envleads import schemas

    leads = {}
    for key, lead in _decoded(bootstrap, topic, schemas.LEADS):
        assert key.decode() == lead["lead_id"]
        leads[lead["lead_id"]] = lead
    return leads


def _unplaced_ids(events, enriched) -> set:
    """The complaints of no known city (blocking key "unknown"). Both engines assign them across the
    city indexes of their scope, but a round of many events assigns them after the round's city
    keys, a Beam run in arrival order: set aside where the two runs order the events differently."""
    import json

    from envleads.repeats_features import UNKNOWN_BLOCK, blocking_key

    jurisdiction = {e.truth["complaint_id"]: json.loads(e.line).get("jurisdiction_adcode")
                    for e in events if not e.truth["malformed"]}
    return {r["complaint_id"] for r in enriched
            if blocking_key(r["region"] and r["region"]["adcode"], jurisdiction[r["complaint_id"]]) == UNKNOWN_BLOCK}


def _placed_membership(leads: dict, unplaced: set) -> list:
    """The leads' complaints, those of no known city set aside."""
    return sorted(sorted(set(lead["complaint_ids"]) - unplaced) for lead in leads.values()
                  if set(lead["complaint_ids"]) - unplaced)


def test_beam_stream_on_prism_writes_what_the_rounds_engine_writes(kafka_broker, tmp_topics, prism_location,
                                                                  model_version, monkeypatch):
    from envleads import schemas
    from envleads.generator import generate_events
    from envleads.pipelines.beam_stream import run_beam_stream
    from envleads.pipelines.rounds.loop import run_stream
    from envleads.pipelines.rounds.outputs import Topics
    from envleads.pipelines.kafka_edge.write import raw_event_bytes
    import json

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-beam-kafka-key")
    bootstrap = kafka_broker.bootstrap_servers
    events = list(generate_events(E2E_EVENTS, E2E_SEED))
    truth = [event.truth for event in events]
    raw = tmp_topics("raw", partitions=2)["raw"]
    beam_names = tmp_topics("enriched", "leads", "dead_letter")
    rounds_names = tmp_topics("enriched", "leads", "dead_letter")
    coordinates = _produce_events(bootstrap, raw, events)

    beam_topics = Topics(raw, beam_names["enriched"], beam_names["leads"], beam_names["dead_letter"])
    group = f"beam-{uuid.uuid4().hex[:8]}"
    counts = run_beam_stream(bootstrap, beam_topics, _prism_args(prism_location) + ["--model_version", model_version],
                             group_id=group, bounded=True)
    assert counts == {"partitions": 2, "planned_records": E2E_EVENTS, "prior_leads": 0, "committed": 2}

    rounds_topics = Topics(raw, rounds_names["enriched"], rounds_names["leads"], rounds_names["dead_letter"])
    run_stream(bootstrap, rounds_topics, ["--runner=FnApiRunner", "--model_version", model_version],
               group_id=f"rounds-{uuid.uuid4().hex[:8]}", max_round_events=1, stop_when_idle_s=2.0,
               poll_wait_s=1.0, round_wait_s=None, kafka_client="python")

    valid_ids = {t["complaint_id"] for t in truth if not t["malformed"]}
    malformed = {raw_event_bytes(e.line): coordinates[i] for i, e in enumerate(events) if e.truth["malformed"]}
    assert malformed

    # every complaint enriched exactly once (one run, no restart), keyed by its id
    beam_enriched = _decoded(bootstrap, beam_topics.enriched, schemas.ENRICHED)
    assert sorted(r["complaint_id"] for _, r in beam_enriched) == sorted(valid_ids)
    assert all(key.decode() == r["complaint_id"] for key, r in beam_enriched)
    rounds_enriched = _decoded(bootstrap, rounds_topics.enriched, schemas.ENRICHED)
    assert {r["complaint_id"] for _, r in rounds_enriched} == valid_ids

    # every malformed event dead-lettered exactly once, with its reason and where it was read
    beam_dead = [d for _, d in _decoded(bootstrap, beam_topics.dead_letter, schemas.DEAD_LETTER)]
    rounds_dead = [d for _, d in _decoded(bootstrap, rounds_topics.dead_letter, schemas.DEAD_LETTER)]
    assert sorted(d["original"] for d in beam_dead) == sorted(malformed)
    for dead in beam_dead:
        assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == \
               (raw, *malformed[dead["original"]])
    assert sorted((d["original"], d["stage"], d["reason"]) for d in beam_dead) == \
           sorted((d["original"], d["stage"], d["reason"]) for d in rounds_dead)

    # the same decisions per complaint: environmental, types, region
    def decisions(records):
        return {r["complaint_id"]: (r["environmental"], tuple(r["pollution_types"]), r["region"] and r["region"]["adcode"])
                for _, r in records}

    assert decisions(beam_enriched) == decisions(rounds_enriched)

    # the leads: one delivery per round, so both engines assign in the order the events come (a
    # complaint of no known city across the city indexes of its scope in both) and score a lead as of
    # its newest report: the same matters, complaints of no known city included, scored alike. Which
    # report of a matter came first follows the order the two partitions were read in, which the
    # engines' readers do not share; with it the lead_id, first_seen_ms (the first merged report's),
    # the department (the first report's routing) and a join's similarity: compared where the first
    # report is the same
    from envleads.repeats_features import UNKNOWN_BLOCK, blocking_key

    jurisdiction = {t["complaint_id"]: json.loads(e.line).get("jurisdiction_adcode")
                    for e, t in zip(events, truth) if not t["malformed"]}
    unplaced = {r["complaint_id"] for _, r in beam_enriched
                if blocking_key(r["region"] and r["region"]["adcode"], jurisdiction[r["complaint_id"]]) == UNKNOWN_BLOCK}
    assert unplaced and len(unplaced) < len(valid_ids) / 2

    beam_leads = _compacted_leads(bootstrap, beam_topics.leads)
    rounds_leads = _compacted_leads(bootstrap, rounds_topics.leads)
    assert len(beam_leads) >= 10
    assert any(set(lead["complaint_ids"]) & unplaced and set(lead["complaint_ids"]) - unplaced
               for lead in rounds_leads.values()), "a complaint of no known city in a lead of a city"
    fields = ("report_count", "distinct_reporters", "last_seen_ms", "region", "score", "tier")

    def by_matter(leads):
        return {frozenset(lead["complaint_ids"]): ({f: lead[f] for f in fields}, sorted(lead["pollution_types"]))
                for lead in leads.values()}

    assert by_matter(beam_leads) == by_matter(rounds_leads)
    same_first = [lead_id for lead_id in beam_leads if lead_id in rounds_leads]
    assert len(same_first) >= 0.9 * len(beam_leads)

    def whole(lead):
        """The lead but for what follows the arrival order: its types' order, and a join's similarity
        (word weights learnt from the matters live at the time)."""
        joins = [{f: v for f, v in join.items() if f != "similarity"} for join in lead["joins"] or ()]
        return {**lead, "pollution_types": sorted(lead["pollution_types"]), "joins": joins}

    for lead_id in same_first:
        assert whole(beam_leads[lead_id]) == whole(rounds_leads[lead_id]), lead_id


def _restart_case(kafka_broker, tmp_topics, prism_location: str, model_version: str):
    """What the restart tests share: the broker's address, the generated events, fresh topics (a
    raw topic of two partitions), the job's arguments on Prism and a fresh group."""
    from envleads.generator import generate_events
    from envleads.pipelines.rounds.outputs import Topics

    raw = tmp_topics("raw", partitions=2)["raw"]
    names = tmp_topics("enriched", "leads", "dead_letter")
    return (kafka_broker.bootstrap_servers, list(generate_events(E2E_EVENTS, E2E_SEED)),
            Topics(raw, names["enriched"], names["leads"], names["dead_letter"]),
            _prism_args(prism_location) + ["--model_version", model_version], f"beam-{uuid.uuid4().hex[:8]}")


def test_beam_stream_restarted_from_its_commit_loses_nothing_and_duplicates_no_lead(kafka_broker, tmp_topics,
                                                                                    prism_location, model_version,
                                                                                    monkeypatch):
    """Two bounded runs of one group, the second over events produced after the first ended (a
    restart): each complaint enriched once, one lead per matter, leads continued under their keys;
    a third run finds nothing to read."""
    from envleads import schemas
    from envleads.pipelines.beam_stream import run_beam_stream
    from envleads.pipelines.rounds.loop import run_stream
    from envleads.pipelines.rounds.outputs import Topics

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-beam-kafka-key")
    bootstrap, events, topics, args, group = _restart_case(kafka_broker, tmp_topics, prism_location, model_version)
    truth, raw, half = [event.truth for event in events], topics.raw, E2E_EVENTS // 2

    _produce_events(bootstrap, raw, events[:half])
    first = run_beam_stream(bootstrap, topics, args, group_id=group, bounded=True)
    assert first["planned_records"] == half and first["prior_leads"] == 0
    leads_after_first = _compacted_leads(bootstrap, topics.leads)
    _produce_events(bootstrap, raw, events[half:])
    second = run_beam_stream(bootstrap, topics, args, group_id=group, bounded=True)
    assert second["planned_records"] == E2E_EVENTS - half
    assert second["prior_leads"] == len(leads_after_first) >= 5
    third = run_beam_stream(bootstrap, topics, args, group_id=group, bounded=True)
    assert third["planned_records"] == 0 and third["committed"] == 0

    valid_ids = {t["complaint_id"] for t in truth if not t["malformed"]}
    enriched = [r for _, r in _decoded(bootstrap, topics.enriched, schemas.ENRICHED)]
    assert sorted(r["complaint_id"] for r in enriched) == sorted(valid_ids)  # each once, none lost
    dead = [d for _, d in _decoded(bootstrap, topics.dead_letter, schemas.DEAD_LETTER)]
    assert len(dead) == sum(t["malformed"] for t in truth)

    leads = _compacted_leads(bootstrap, topics.leads)
    members = [cid for lead in leads.values() for cid in lead["complaint_ids"]]
    assert len(members) == len(set(members)), "a complaint belongs to one lead only"
    cluster_of = {r["complaint_id"]: r["cluster_id"] for r in enriched}
    for lead in leads.values():
        assert {cluster_of[cid] for cid in lead["complaint_ids"]} == {lead["cluster_id"]}
        assert lead["report_count"] == len(lead["complaint_ids"])
    # a lead of the first run continued by the second keeps its key and its first complaints
    continued = [lead_id for lead_id, lead in leads.items() if lead_id in leads_after_first
                 and len(lead["complaint_ids"]) > len(leads_after_first[lead_id]["complaint_ids"])]
    assert continued
    for lead_id in continued:
        assert set(leads_after_first[lead_id]["complaint_ids"]) < set(leads[lead_id]["complaint_ids"])

    # against the rounds engine in one run: the same leads, complaints of no known city set aside
    rounds_names = tmp_topics("enriched", "leads", "dead_letter")
    rounds_topics = Topics(raw, rounds_names["enriched"], rounds_names["leads"], rounds_names["dead_letter"])
    run_stream(bootstrap, rounds_topics, ["--runner=FnApiRunner", "--model_version", model_version],
               group_id=f"rounds-{uuid.uuid4().hex[:8]}", max_round_events=E2E_EVENTS, stop_when_idle_s=2.0,
               poll_wait_s=1.0, round_wait_s=None, kafka_client="python")
    unplaced = _unplaced_ids(events, enriched)
    assert _placed_membership(leads, unplaced) == \
           _placed_membership(_compacted_leads(bootstrap, rounds_topics.leads), unplaced)


def test_beam_stream_outlasting_the_job_server_timeout_finishes(kafka_broker, tmp_topics, prism_location,
                                                               model_version, monkeypatch):
    """Beam 2.78's portable runner opens the job's state and message streams with
    ``--job_server_timeout`` (300 s by default) as their gRPC deadline: a job that ran longer failed
    with ``DEADLINE_EXCEEDED`` and was torn down (the 20,000-event row of bench/bench_engines.py).
    ``run_beam_stream`` waits without that deadline: a bounded run outlasting a 1 s timeout finishes
    and commits."""
    import time

    from envleads.generator import generate_events
    from envleads.pipelines.beam_stream import run_beam_stream
    from envleads.pipelines.rounds.outputs import Topics

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-beam-kafka-key")
    bootstrap = kafka_broker.bootstrap_servers
    events = list(generate_events(40, E2E_SEED))
    raw = tmp_topics("raw", partitions=2)["raw"]
    names = tmp_topics("enriched", "leads", "dead_letter")
    _produce_events(bootstrap, raw, events)
    timeout_s = 1
    started = time.monotonic()
    counts = run_beam_stream(bootstrap, Topics(raw, names["enriched"], names["leads"], names["dead_letter"]),
                             _prism_args(prism_location) + ["--model_version", model_version,
                                                            "--job_server_timeout", str(timeout_s)],
                             group_id=f"beam-{uuid.uuid4().hex[:8]}", bounded=True)
    assert time.monotonic() - started > 3 * timeout_s  # the job did outlast the timeout
    assert counts["planned_records"] == len(events) and counts["committed"] == 2


def test_unbounded_beam_stream_on_prism_enriches_and_leads_while_it_runs(kafka_broker, tmp_topics, prism_location,
                                                                        model_version, monkeypatch):
    """The job without end (as ``envleads stream --engine beam`` will run it): events produced after
    it started are enriched once each and reach their leads while it runs; then it is cancelled."""
    import time

    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import PipelineState

    from envleads import schemas
    from envleads.generator import generate_events
    from envleads.pipelines.options import prepared_run
    from envleads.pipelines.beam_stream import build_beam_stream
    from envleads.pipelines.rounds.outputs import Topics

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-beam-kafka-key")
    bootstrap = kafka_broker.bootstrap_servers
    events = list(generate_events(60, E2E_SEED))
    valid_ids = {e.truth["complaint_id"] for e in events if not e.truth["malformed"]}
    raw = tmp_topics("raw", partitions=2)["raw"]
    names = tmp_topics("enriched", "leads", "dead_letter")
    topics = Topics(raw, names["enriched"], names["leads"], names["dead_letter"])

    options, settings = prepared_run(_prism_args(prism_location) + ["--model_version", model_version])
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    build_beam_stream(pipeline, bootstrap, topics, settings, partitions=plan_partitions(bootstrap, [raw]),
                      align_watermarks=True)
    result = pipeline.run()
    try:
        time.sleep(3)
        _produce_events(bootstrap, raw, events)
        deadline = time.monotonic() + 90
        enriched = []
        while time.monotonic() < deadline:
            assert result.state not in (PipelineState.FAILED, PipelineState.DONE, PipelineState.CANCELLED)
            enriched = [r["complaint_id"] for _, r in _decoded(bootstrap, topics.enriched, schemas.ENRICHED)]
            if set(enriched) >= valid_ids:
                break
        assert sorted(enriched) == sorted(valid_ids)
        leads = _compacted_leads(bootstrap, topics.leads)
        members = [cid for lead in leads.values() for cid in lead["complaint_ids"]]
        assert leads and len(members) == len(set(members)) and set(members) <= valid_ids
        assert len(_decoded(bootstrap, topics.dead_letter, schemas.DEAD_LETTER)) == \
               sum(e.truth["malformed"] for e in events)
    finally:
        result.cancel()


def test_envleads_stream_engine_beam_until_end_runs_the_job_and_commits(kafka_broker, tmp_topics, prism_location,
                                                                       model_version):
    """The command an operator runs: ``envleads stream --engine beam --until-end --runner PrismRunner``
    (the binary ``make prism`` built is found by itself) reads the raw topic to its end, writes every
    valid complaint's enriched record, commits, and a second run finds nothing to read."""
    import json
    import subprocess
    import sys

    from envleads import schemas
    from envleads.generator import generate_events
    from envleads.pipelines.beam_stream import PRISM_BIN_ENV_VAR

    bootstrap = kafka_broker.bootstrap_servers
    events = list(generate_events(60, 23))
    raw = tmp_topics("raw", partitions=2)["raw"]
    names = tmp_topics("enriched", "leads", "dead_letter")
    _produce_events(bootstrap, raw, events)
    env = dict(os.environ, ENVLEADS_PSEUDONYM_KEY="test-beam-cli-key", **{PRISM_BIN_ENV_VAR: prism_location})
    command = [sys.executable, "-m", "envleads.cli", "stream", "--engine", "beam", "--until-end",
               "--bootstrap-servers", bootstrap, "--raw-topic", raw, "--enriched-topic", names["enriched"],
               "--leads-topic", names["leads"], "--dead-letter-topic", names["dead_letter"],
               "--group-id", f"cli-{uuid.uuid4().hex[:8]}", "--runner", "PrismRunner",
               "--model_version", model_version]

    def run() -> dict:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=600)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    first = run()
    assert first["planned_records"] == len(events) and first["committed"] == 2
    valid_ids = sorted(e.truth["complaint_id"] for e in events if not e.truth["malformed"])
    assert sorted(r["complaint_id"] for _, r in _decoded(bootstrap, names["enriched"], schemas.ENRICHED)) == valid_ids
    assert run()["planned_records"] == 0


def _committed_offsets(bootstrap: str, group: str, topic: str) -> dict:
    """``{partition: next offset}`` the group committed for ``topic`` (partitions without a commit left out)."""
    from kafka import TopicPartition

    from envleads.pipelines.kafka_edge.read import new_consumer, partitions_for

    consumer = new_consumer(bootstrap, None, group)
    try:
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in partitions_for(consumer, topic)}
    finally:
        consumer.close()
    return {p: offset for p, offset in committed.items() if offset is not None}


def _start_unbounded_job(bootstrap: str, topics, group: str, args: List[str]):
    """The job as ``run_beam_stream`` builds it unbounded (group commits while it runs), started, not waited for."""
    from apache_beam.options.pipeline_options import StandardOptions

    from envleads.pipelines.beam_stream import build_beam_stream
    from envleads.pipelines.kafka_edge.lead_topic import read_leads
    from envleads.pipelines.options import prepared_run

    options, settings = prepared_run(args)
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    prior = list(read_leads(bootstrap, topics.leads).values())
    build_beam_stream(pipeline, bootstrap, topics, settings, partitions=plan_partitions(bootstrap, [topics.raw], group),
                      group_id=group, prior_leads=prior, align_watermarks=True, commit_while_running=True)
    return pipeline.run(), len(prior)


def _run_until_committed(bootstrap: str, topics, group: str, args: List[str], produce, expected_ids, ends) -> int:
    """Starts the unbounded job, runs ``produce()``, waits until every id of ``expected_ids`` is
    enriched and the group's commit reached ``ends``, then cancels the job; returns its prior leads."""
    import time

    from apache_beam.runners.runner import PipelineState

    from envleads import schemas

    result, prior = _start_unbounded_job(bootstrap, topics, group, args)
    try:
        time.sleep(2)
        produce()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert result.state not in (PipelineState.FAILED, PipelineState.DONE, PipelineState.CANCELLED)
            enriched = {r["complaint_id"] for _, r in _decoded(bootstrap, topics.enriched, schemas.ENRICHED)}
            if enriched >= expected_ids and _committed_offsets(bootstrap, group, topics.raw) == ends():
                break
            time.sleep(1)
    finally:
        result.cancel()
    return prior


def test_unbounded_beam_stream_commits_what_it_wrote_and_restarts_losing_and_duplicating_nothing(
        kafka_broker, tmp_topics, prism_location, model_version, monkeypatch):
    """``envleads stream --engine beam`` without ``--until-end``: the job commits while it runs, each
    raw record once its outputs are acknowledged. Stopped after its leads are out, the group's
    commit is exactly the end of what was produced (no further: nothing unwritten is committed);
    restarted over later events, it reads from there: every complaint enriched once, every
    malformed event dead-lettered once, each complaint in one lead, and the leads those of one
    bounded run (``--until-end``) over all the events, complaints of no known city set aside."""
    from envleads import schemas
    from envleads.pipelines.beam_stream import run_beam_stream
    from envleads.pipelines.rounds.outputs import Topics

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-beam-kafka-key")
    bootstrap, events, topics, args, group = _restart_case(kafka_broker, tmp_topics, prism_location, model_version)
    truth, raw, half = [event.truth for event in events], topics.raw, E2E_EVENTS // 2
    produced: List[tuple] = []

    def ends():
        return {partition: max(o for p, o in produced if p == partition) + 1 for partition, _ in produced}

    def valid_ids(batch):
        return {e.truth["complaint_id"] for e in batch if not e.truth["malformed"]}

    first_prior = _run_until_committed(bootstrap, topics, group, args,
                                       lambda: produced.extend(_produce_events(bootstrap, raw, events[:half])),
                                       valid_ids(events[:half]), ends)
    assert first_prior == 0
    assert _committed_offsets(bootstrap, group, raw) == ends()  # all it wrote, and no further
    leads_after_first = _compacted_leads(bootstrap, topics.leads)
    assert len(leads_after_first) >= 5

    second_prior = _run_until_committed(bootstrap, topics, group, args,
                                        lambda: produced.extend(_produce_events(bootstrap, raw, events[half:])),
                                        valid_ids(events), ends)
    assert second_prior == len(leads_after_first)
    assert _committed_offsets(bootstrap, group, raw) == ends()

    # nothing lost, nothing read twice
    enriched = [r for _, r in _decoded(bootstrap, topics.enriched, schemas.ENRICHED)]
    assert sorted(r["complaint_id"] for r in enriched) == sorted(valid_ids(events))
    dead = [d for _, d in _decoded(bootstrap, topics.dead_letter, schemas.DEAD_LETTER)]
    assert len(dead) == sum(t["malformed"] for t in truth)

    # one lead per matter, each complaint in one lead, leads of the first run continued under their keys
    leads = _compacted_leads(bootstrap, topics.leads)
    members = [cid for lead in leads.values() for cid in lead["complaint_ids"]]
    assert len(members) == len(set(members))
    assert all(lead["report_count"] == len(lead["complaint_ids"]) for lead in leads.values())
    for lead_id, lead in leads_after_first.items():
        assert set(lead["complaint_ids"]) <= set(leads[lead_id]["complaint_ids"])

    # against one bounded run (--until-end) over all the events
    bounded_names = tmp_topics("enriched", "leads", "dead_letter")
    bounded_topics = Topics(raw, bounded_names["enriched"], bounded_names["leads"], bounded_names["dead_letter"])
    run_beam_stream(bootstrap, bounded_topics, args, group_id=f"beam-{uuid.uuid4().hex[:8]}", bounded=True)
    unplaced = _unplaced_ids(events, enriched)
    assert _placed_membership(leads, unplaced) == \
           _placed_membership(_compacted_leads(bootstrap, bounded_topics.leads), unplaced)
