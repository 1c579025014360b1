"""``envleads stream``: continuous operation over Kafka as bounded rounds.

Beam's local Python runners cannot emit from a grouping or stateful stage behind an unbounded
source, so on one machine the pipeline runs as short bounded rounds: each round reads the raw
events that arrived since the committed offsets, runs :class:`ComplaintsToLeads` over them with
the compacted lead topic as the prior state (the matter index is rebuilt from it, so a restart
loses nothing), writes enriched complaints, leads and dead letters to their topics, and only then
commits the offsets (at-least-once; lead keys are stable, so a re-processed event updates its lead
instead of adding one). The same transforms run as one streaming job on runners that support it.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Dict, Iterable, List, Optional

import apache_beam as beam

from envleads import schemas
from envleads.leads import lead_to_avro_dict
from envleads.pipelines.kafka_io import LeadView, WriteToKafka, commit_events, open_consumer, poll_new_events
from envleads.pipelines.options import StageSettings, pipeline_options, settings_from_options
from envleads.pipelines.transforms import ComplaintsToLeads, RawEvent
from envleads.records import DeadLetter, Lead
from envleads.serialize import dead_letter_to_avro_dict, enriched_to_avro_dict

LOG = logging.getLogger(__name__)

DEFAULT_GROUP = "envleads-stream"


class Topics:
    """Topic names of one deployment (defaults match the embedded broker's)."""

    def __init__(self, raw: str = "complaints.raw", enriched: str = "complaints.enriched",
                 leads: str = "leads", dead_letter: str = "complaints.deadletter"):
        self.raw, self.enriched, self.leads, self.dead_letter = raw, enriched, leads, dead_letter


def _encode_enriched(report) -> bytes:
    return schemas.encode(schemas.ENRICHED, enriched_to_avro_dict(report.enriched))


def _encode_lead(lead: Lead) -> bytes:
    return schemas.encode(schemas.LEADS, lead_to_avro_dict(lead))


def _encode_dead_letter(dead: DeadLetter) -> bytes:
    return schemas.encode(schemas.DEAD_LETTER, dead_letter_to_avro_dict(dead, int(time.time() * 1000)))


def run_round(events: List[RawEvent], prior_leads: Iterable[Lead], bootstrap_servers: str, topics: Topics,
              settings: StageSettings, options, security=None) -> None:
    """One bounded round: the events through every stage, outputs written and acknowledged."""
    with beam.Pipeline(options=options) as pipeline:
        raw = pipeline | "RoundEvents" >> beam.Create(events, reshuffle=False)
        prior = pipeline | "PriorLeads" >> beam.Create(list(prior_leads), reshuffle=False)
        outputs = raw | "ComplaintsToLeads" >> ComplaintsToLeads(settings, prior_leads=prior)
        outputs["enriched"] | "WriteEnriched" >> WriteToKafka(
            bootstrap_servers, topics.enriched, lambda r: r.enriched.complaint.complaint_id, _encode_enriched, security)
        outputs["leads"] | "WriteLeads" >> WriteToKafka(
            bootstrap_servers, topics.leads, lambda lead: lead.lead_id, _encode_lead, security)
        outputs["dead_letters"] | "WriteDeadLetters" >> WriteToKafka(
            bootstrap_servers, topics.dead_letter, lambda d: d.event_id, _encode_dead_letter, security)


def run_stream(bootstrap_servers: str, topics: Topics, beam_args: Optional[List[str]] = None,
               group_id: str = DEFAULT_GROUP, max_round_events: int = 2000, poll_wait_s: float = 2.0,
               stop_when_idle_s: Optional[float] = None, status_every_s: float = 10.0,
               max_rounds: Optional[int] = None, security=None) -> Dict[str, int]:
    """Runs rounds until interrupted, or until no event arrived for ``stop_when_idle_s``.

    Returns totals: events read, rounds run, leads in the compacted view.
    """
    from envleads.pipelines.batch import prepare_worker_environment

    options = pipeline_options(list(beam_args or []))
    settings = settings_from_options(options)
    settings = settings._replace(model_version=prepare_worker_environment(settings))
    consumer = open_consumer(bootstrap_servers, topics.raw, group_id, security)
    lead_view = LeadView(bootstrap_servers, topics.leads, security)
    totals = {"events": 0, "rounds": 0}
    idle_since = time.monotonic()
    last_status = time.monotonic()
    try:
        lead_view.refresh()
        while max_rounds is None or totals["rounds"] < max_rounds:
            events = poll_new_events(consumer, max_round_events, poll_wait_s)
            if not events:
                if stop_when_idle_s is not None and time.monotonic() - idle_since >= stop_when_idle_s:
                    break
                continue
            started = time.monotonic()
            run_round(events, lead_view.leads.values(), bootstrap_servers, topics, settings, options, security)
            commit_events(consumer, events)
            lead_view.refresh(wait_s=0.5)
            totals["events"] += len(events)
            totals["rounds"] += 1
            idle_since = time.monotonic()
            if time.monotonic() - last_status >= status_every_s or stop_when_idle_s is not None:
                LOG.info("round %d: %d events in %.1fs (%.0f/s); %d events so far; %d leads in view",
                         totals["rounds"], len(events), time.monotonic() - started,
                         len(events) / max(1e-6, time.monotonic() - started), totals["events"], len(lead_view.leads))
                last_status = time.monotonic()
    finally:
        consumer.close()
        lead_view.close()
    totals["leads"] = len(lead_view.leads)
    return totals


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


def _run_command(args: argparse.Namespace, beam_args: List[str]) -> int:
    from envleads.ops.kafka_config import security_from_args

    topics = Topics(args.raw_topic, args.enriched_topic, args.leads_topic, args.dead_letter_topic)
    totals = run_stream(args.bootstrap_servers, topics, beam_args, group_id=args.group_id,
                        max_round_events=args.max_round_events, stop_when_idle_s=args.stop_when_idle,
                        security=security_from_args(args))
    print(json.dumps(totals))
    return 0


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-topic", default="complaints.raw", help="topic of raw complaint events")
    parser.add_argument("--enriched-topic", default="complaints.enriched", help="topic of enriched complaints")
    parser.add_argument("--leads-topic", default="leads", help="compacted topic of leads, keyed by lead_id")
    parser.add_argument("--dead-letter-topic", default="complaints.deadletter", help="topic of dead letters")


def add_subcommand(subparsers) -> None:
    from envleads.ops.kafka_config import add_kafka_arguments

    parser = subparsers.add_parser(
        "stream", help="process complaints from Kafka continuously (bounded rounds)",
        description="Reads complaints.raw from the committed offsets, writes enriched complaints, "
                    "leads and dead letters. Unknown flags go to Beam.")
    add_kafka_arguments(parser)
    add_topic_arguments(parser)
    parser.add_argument("--group-id", default=DEFAULT_GROUP, help="consumer group whose offsets record progress")
    parser.add_argument("--max-round-events", type=int, default=2000, help="events per round at most")
    parser.add_argument("--stop-when-idle", type=float, default=None,
                        help="stop after this many seconds without new events (default: run until Ctrl-C)")
    parser.set_defaults(func=_run_command, accepts_pipeline_args=True)
