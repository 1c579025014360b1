"""Shared by the end-to-end tests of the Beam streaming job on Prism (``test_beam_kafka.py`` on the
embedded broker, ``test_beam_apache_kafka.py`` on Apache Kafka over SASL_SSL): producing generated
events, reading the output topics back, running the rounds engine beside the job, starting and
stopping the job unbounded, and the two checks both brokers must pass: the job writes what the
rounds engine writes, and an unbounded run restarted from its group's commit loses and duplicates
nothing. Every Kafka call takes the project's ``KafkaSecurity`` (None: PLAINTEXT)."""
from __future__ import annotations

import json
import time
import uuid
from typing import Callable, List, Optional

import apache_beam as beam
import pytest

from kafka_scan import scan_topic

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
E2E_EVENTS = 200
E2E_SEED = 24


@pytest.fixture(scope="module")
def model_version():
    from envleads.models.registry import ensure_default_model

    return ensure_default_model()


def prism_args(prism_location: str) -> List[str]:
    return ["--runner", "PrismRunner", "--prism_location", prism_location, "--prism_log_level", "warn",
            "--environment_type", "LOOPBACK"]


def produce_events(bootstrap: str, topic: str, events, security=None) -> List[tuple]:
    """Each generated event as the intake system would produce it: Avro (a malformed one as its
    bytes), record timestamp = the complaint's ``received_at`` (CreateTime set by the intake; a
    malformed event takes the previous one's), round-robin over the partitions. Returns
    ``(partition, offset)`` of each, in the order of ``events``."""
    from kafka import KafkaProducer

    from envleads.decode import parse_event_time
    from envleads.ops.kafka_config import client_kwargs
    from envleads.pipelines.kafka_edge.write import raw_event_bytes

    producer = KafkaProducer(**client_kwargs(bootstrap, security, role="producer", linger_ms=20))
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


def decoded(bootstrap: str, topic: str, subject: str, security=None) -> list:
    from envleads import schemas

    return [(record.key, schemas.decode(subject, record.value)) for record in scan_topic(bootstrap, topic, security=security)]


def compacted_leads(bootstrap: str, topic: str, security=None) -> dict:
    """The last lead per key, as ``{lead_id: avro dict}``."""
    from envleads import schemas

    leads = {}
    for key, lead in decoded(bootstrap, topic, schemas.LEADS, security):
        assert key.decode() == lead["lead_id"]
        leads[lead["lead_id"]] = lead
    return leads


def unplaced_ids(events, enriched) -> set:
    """The complaints of no known city (blocking key "unknown"). Both engines assign them across the
    city indexes of their scope, but a round of many events assigns them after the round's city
    keys, a Beam run in arrival order: set aside where two runs order the events differently."""
    from envleads.repeats_features import UNKNOWN_BLOCK, blocking_key

    jurisdiction = {e.truth["complaint_id"]: json.loads(e.line).get("jurisdiction_adcode")
                    for e in events if not e.truth["malformed"]}
    return {r["complaint_id"] for r in enriched
            if blocking_key(r["region"] and r["region"]["adcode"], jurisdiction[r["complaint_id"]]) == UNKNOWN_BLOCK}


def placed_membership(leads: dict, unplaced: set) -> list:
    """The leads' complaints, those of no known city set aside."""
    return sorted(sorted(set(lead["complaint_ids"]) - unplaced) for lead in leads.values()
                  if set(lead["complaint_ids"]) - unplaced)


def run_rounds_engine(bootstrap: str, topics, model_version: str, security=None) -> None:
    """The rounds engine (``envleads stream``) once over the raw topic, in a fresh group, one event
    per round: it then assigns in the order the events come, as the Beam job does."""
    from envleads.pipelines.rounds.loop import run_stream

    run_stream(bootstrap, topics, ["--runner=FnApiRunner", "--model_version", model_version],
               group_id=f"rounds-{uuid.uuid4().hex[:8]}", max_round_events=1, stop_when_idle_s=2.0,
               poll_wait_s=1.0, round_wait_s=None, kafka_client="python", security=security)


# ---------------------------------------------------------------- the job against the rounds engine
def check_beam_writes_what_the_rounds_engine_writes(bootstrap: str, events, coordinates, beam_topics, rounds_topics,
                                                    security=None) -> None:
    """After one run of each over ``events`` (produced at ``coordinates`` of ``beam_topics.raw``):
    each complaint enriched once with the same decisions, each malformed event dead-lettered once
    with its bytes and where it was read, and the same leads, keys and scores."""
    from envleads import schemas
    from envleads.pipelines.kafka_edge.write import raw_event_bytes

    raw = beam_topics.raw
    valid_ids = {e.truth["complaint_id"] for e in events if not e.truth["malformed"]}
    malformed = {raw_event_bytes(e.line): coordinates[i] for i, e in enumerate(events) if e.truth["malformed"]}
    assert malformed

    # every complaint enriched exactly once (one run, no restart), keyed by its id
    beam_enriched = decoded(bootstrap, beam_topics.enriched, schemas.ENRICHED, security)
    assert sorted(r["complaint_id"] for _, r in beam_enriched) == sorted(valid_ids)
    assert all(key.decode() == r["complaint_id"] for key, r in beam_enriched)
    rounds_enriched = decoded(bootstrap, rounds_topics.enriched, schemas.ENRICHED, security)
    rounds_ids = {r["complaint_id"] for _, r in rounds_enriched}
    assert rounds_ids == valid_ids, f"rounds engine: {len(valid_ids - rounds_ids)} missing, {len(rounds_ids - valid_ids)} more"

    # every malformed event dead-lettered exactly once, with its reason and where it was read
    beam_dead = [d for _, d in decoded(bootstrap, beam_topics.dead_letter, schemas.DEAD_LETTER, security)]
    rounds_dead = [d for _, d in decoded(bootstrap, rounds_topics.dead_letter, schemas.DEAD_LETTER, security)]
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
    unplaced = unplaced_ids(events, [r for _, r in beam_enriched])
    assert unplaced and len(unplaced) < len(valid_ids) / 2

    beam_leads = compacted_leads(bootstrap, beam_topics.leads, security)
    rounds_leads = compacted_leads(bootstrap, rounds_topics.leads, security)
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


# ------------------------------------------------------------------------- unbounded, restarted
def committed_offsets(bootstrap: str, group: str, topic: str, security=None) -> dict:
    """``{partition: next offset}`` the group committed for ``topic`` (partitions without a commit left out)."""
    from kafka import TopicPartition

    from envleads.pipelines.kafka_edge.read import new_consumer, partitions_for

    consumer = new_consumer(bootstrap, security, group)
    try:
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in partitions_for(consumer, topic)}
    finally:
        consumer.close()
    return {p: offset for p, offset in committed.items() if offset is not None}


def start_unbounded_job(bootstrap: str, topics, group: str, args: List[str], security=None):
    """The job as ``run_beam_stream`` builds it unbounded (group commits while it runs), started, not
    waited for; returns the result and how many prior leads it was given."""
    from apache_beam.options.pipeline_options import StandardOptions

    from envleads.pipelines.beam_stream import build_beam_stream
    from envleads.pipelines.kafka_edge.beam_source import plan_partitions
    from envleads.pipelines.kafka_edge.lead_topic import read_leads
    from envleads.pipelines.options import prepared_run

    options, settings = prepared_run(args)
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    prior = list(read_leads(bootstrap, topics.leads, security).values())
    build_beam_stream(pipeline, bootstrap, topics, settings,
                      partitions=plan_partitions(bootstrap, [topics.raw], group, security=security),
                      group_id=group, security=security, prior_leads=prior, align_watermarks=True,
                      commit_while_running=True)
    return pipeline.run(), len(prior)


def run_until_committed(bootstrap: str, topics, group: str, args: List[str], produce, expected_ids, ends,
                        security=None) -> int:
    """Starts the unbounded job, runs ``produce()``, waits until every id of ``expected_ids`` is
    enriched and the group's commit reached ``ends()``, then cancels the job; returns its prior leads."""
    from apache_beam.runners.runner import PipelineState

    from envleads import schemas

    result, prior = start_unbounded_job(bootstrap, topics, group, args, security)
    try:
        time.sleep(2)
        produce()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert result.state not in (PipelineState.FAILED, PipelineState.DONE, PipelineState.CANCELLED)
            enriched = {r["complaint_id"] for _, r in decoded(bootstrap, topics.enriched, schemas.ENRICHED, security)}
            if enriched >= expected_ids and committed_offsets(bootstrap, group, topics.raw, security) == ends():
                break
            time.sleep(1)
    finally:
        result.cancel()
    return prior


def check_unbounded_restart(bootstrap: str, events, topics, args: List[str], group: str,
                            fresh_topics: Callable[[], object], security=None,
                            between: Optional[Callable[[], None]] = None) -> None:
    """The unbounded job over the first half of ``events``, stopped once its leads are out and its
    commit is exactly the end of what was produced (nothing unwritten committed); ``between()`` (a
    broker restart, say); the commit and the leads still as the first run left them; the job again
    over the second half, from the group's commit: every complaint enriched once, every malformed
    event dead-lettered once, each complaint in one lead, the first run's leads continued under
    their keys, and the leads those of one bounded run (``--until-end``) over all the events on
    ``fresh_topics()`` (same raw topic), complaints of no known city set aside."""
    from envleads import schemas
    from envleads.pipelines.beam_stream import run_beam_stream

    truth, raw, half = [event.truth for event in events], topics.raw, len(events) // 2
    produced: List[tuple] = []

    def ends():
        return {partition: max(o for p, o in produced if p == partition) + 1 for partition, _ in produced}

    def valid_ids(batch):
        return {e.truth["complaint_id"] for e in batch if not e.truth["malformed"]}

    def run(batch, expected) -> int:
        return run_until_committed(bootstrap, topics, group, args,
                                   lambda: produced.extend(produce_events(bootstrap, raw, batch, security)),
                                   expected, ends, security)

    assert run(events[:half], valid_ids(events[:half])) == 0
    assert committed_offsets(bootstrap, group, raw, security) == ends()  # all it wrote, and no further
    leads_after_first = compacted_leads(bootstrap, topics.leads, security)
    assert len(leads_after_first) >= 5

    if between is not None:
        between()
    assert committed_offsets(bootstrap, group, raw, security) == ends()
    assert compacted_leads(bootstrap, topics.leads, security) == leads_after_first

    assert run(events[half:], valid_ids(events)) == len(leads_after_first)
    assert committed_offsets(bootstrap, group, raw, security) == ends()

    # nothing lost, nothing read twice
    enriched = [r for _, r in decoded(bootstrap, topics.enriched, schemas.ENRICHED, security)]
    assert sorted(r["complaint_id"] for r in enriched) == sorted(valid_ids(events))
    dead = [d for _, d in decoded(bootstrap, topics.dead_letter, schemas.DEAD_LETTER, security)]
    assert len(dead) == sum(t["malformed"] for t in truth)

    # one lead per matter, each complaint in one lead, leads of the first run continued under their keys
    leads = compacted_leads(bootstrap, topics.leads, security)
    members = [cid for lead in leads.values() for cid in lead["complaint_ids"]]
    assert len(members) == len(set(members))
    assert all(lead["report_count"] == len(lead["complaint_ids"]) for lead in leads.values())
    for lead_id, lead in leads_after_first.items():
        assert set(lead["complaint_ids"]) <= set(leads[lead_id]["complaint_ids"])

    # against one bounded run (--until-end) over all the events
    bounded_topics = fresh_topics()
    run_beam_stream(bootstrap, bounded_topics, args, group_id=f"beam-{uuid.uuid4().hex[:8]}", bounded=True,
                    security=security)
    unplaced = unplaced_ids(events, enriched)
    assert placed_membership(leads, unplaced) == \
           placed_membership(compacted_leads(bootstrap, bounded_topics.leads, security), unplaced)
