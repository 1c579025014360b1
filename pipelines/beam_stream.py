"""The Beam streaming job, Kafka in and Kafka out: :func:`run_beam_stream`.

``ReadFromKafka`` (the raw topic, ``kafka_edge/beam_source.py``) -> ``ComplaintsToLeadsStreaming``
(``streaming.py``: the stateless stages, then repeat detection and lead building in keyed state
with event-time timers) -> ``WriteToKafka`` (``kafka_edge/beam_sink.py``) of enriched complaints (keyed by
complaint id), leads (keyed by ``lead_id``, for the compacted topic) and dead letters (keyed by
the complaint id when readable), each Avro in the topic contract, framed as the rounds engine
frames them (``rounds/outputs.py``). The job runs with the streaming option on, on any portable
runner; locally on Prism (``--runner PrismRunner --prism_location .cache/prism/v<version>/prism``).

At start the lead topic is read (``kafka_edge/lead_topic.py``: the last record per key) and handed to the stateful stages as
their prior leads, so a restarted job attaches repeats to the leads already written, and a
complaint read again is recognised as a redelivery by its id.

Delivery: at-least-once from the offsets the job starts at (the group's committed offsets, else
the beginning of the raw topic). A bounded run (``bounded=True``: up to the end the raw topic has
when the job is planned) commits its end offsets to ``group_id`` after the job finished, when
every sink bundle had been acknowledged by the broker; a run that fails commits nothing and the
next one reads the same records again. An unbounded run commits while it runs, each raw record once
all its outputs are acknowledged (``kafka_edge/beam_commit.py``: the sinks report each record they
wrote, a step keyed by partition commits the contiguous prefix), so a stop or crash re-reads only
what was in flight. Enriched records and dead letters can repeat after a restart; leads do not.

Differences from the rounds engine (``envleads stream``) on the same events: complaints of no
known city are assigned as they arrive against the ``"unknown"`` key's own index (not last, against
every city index of their province), matters expire when the watermark (the raw records'
timestamps) passes them rather than by each key's newest event, and a reused complaint id with
other content is not refused as ``duplicate_id_conflict``.

Dead letters carry the event's original bytes, as in every engine, those of the stages after
decode (``internal_error``) too, the stateful ones and the encoders included: each record travels
beside its bytes through the job (never in keyed state), and the encoders run inside
``ComplaintsToLeadsStreaming``. A lead version that fails to encode is the dead letter of the
report that made it, and the lead's state stays as before that report.
"""
from __future__ import annotations

import logging
import os
import time
from operator import attrgetter
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.runner import PipelineState

from envleads import schemas
from envleads.config import DEFAULT_BEAM_GROUP
from envleads.leads import lead_to_wire_record
from envleads.pipelines.kafka_edge.beam_commit import (ENRICHED_PART, LEAD_PART, WHOLE, CommitWrittenOffsets,
                                                       partition_key, record_done)
from envleads.pipelines.kafka_edge.beam_sink import WriteToKafka
from envleads.pipelines.kafka_edge.beam_source import ReadFromKafka, plan_partitions
from envleads.pipelines.kafka_edge.lead_topic import read_leads
from envleads.pipelines.kafka_edge.read import commit_group_offsets
from envleads.pipelines.rounds.outputs import Topics
from envleads.pipelines.streaming import ComplaintsToLeadsStreaming
from envleads.pipelines.transforms import BUILD_LEADS_STAGE, ENCODE_ENRICHED_STAGE, ENCODE_LEADS_STAGE
from envleads.records import DeadLetter, Lead
from envleads.serialize import dead_letter_to_avro_dict, enriched_to_avro_dict

LOG = logging.getLogger(__name__)



# ------------------------------------------------------------------------------------------ encode
def encode_enriched_record(report) -> Tuple[str, bytes]:
    """``(complaint id, framed Avro enriched_complaint)`` of a report."""
    return report.enriched.complaint.complaint_id, schemas.encode(schemas.ENRICHED, enriched_to_avro_dict(report.enriched))


def encode_lead_record(lead: Lead) -> Tuple[str, bytes]:
    """``(lead_id, framed Avro lead)``."""
    return lead.lead_id, schemas.encode(schemas.LEADS, lead_to_wire_record(lead))


def encode_dead_letter_record(dead: DeadLetter) -> Tuple[Optional[str], bytes]:
    """``(complaint id or None, framed Avro dead_letter)``, rejected now."""
    return dead.event_id, schemas.encode(schemas.DEAD_LETTER, dead_letter_to_avro_dict(dead, int(time.time() * 1000)))


# ------------------------------------------------------------------------------------------ sinks
class Outgoing(NamedTuple):
    """What a sink writes (``value`` None: nothing) and what that settles of its raw record."""

    key: Optional[str]
    value: Optional[bytes]
    done: Optional[object] = None  # beam_commit.RecordDone


def dead_letter_parts(dead: DeadLetter) -> int:
    """What a dead letter settles of its record: the lead branch's (``BuildLeads``, ``EncodeLeads``),
    the enriched record's (``EncodeEnriched``), or, before repeat detection, the whole record."""
    if dead.stage in (BUILD_LEADS_STAGE, ENCODE_LEADS_STAGE):
        return LEAD_PART
    return ENRICHED_PART if dead.stage == ENCODE_ENRICHED_STAGE else WHOLE


# no return annotations below: Beam would take the NamedTuple for a schema (RowCoder); they are pickled
def enriched_outgoing(sourced):
    (key, value), source = sourced
    return Outgoing(key, value, record_done(source, ENRICHED_PART))


def lead_outgoing(sourced):
    encoded, source = sourced
    key, value = encoded if encoded is not None else (None, None)
    return Outgoing(key, value, record_done(source, LEAD_PART))


def dead_letter_outgoing(dead: DeadLetter):
    key, value = encode_dead_letter_record(dead)
    return Outgoing(key, value, record_done(dead.source, dead_letter_parts(dead)))


# ------------------------------------------------------------------------------------------ Prism
PRISM_BIN_ENV_VAR = "ENVLEADS_PRISM_BIN"


class PrismMissing(RuntimeError):
    """No Prism binary where ``make prism`` puts it (and none named by ``$ENVLEADS_PRISM_BIN``)."""


def local_prism_location() -> Path:
    """Where ``make prism`` builds Prism for the installed SDK: ``.cache/prism/v<version>/prism`` at
    the root of the source tree, or the file ``$ENVLEADS_PRISM_BIN`` names."""
    import importlib.metadata

    override = os.environ.get(PRISM_BIN_ENV_VAR)
    if override:
        return Path(override)
    version = "v" + importlib.metadata.version("apache-beam").replace("rc", "-RC")
    return Path(__file__).resolve().parents[1] / ".cache" / "prism" / version / "prism"


# Prism (2.78) splits a slow bundle of any stage by default and, in a stateful stage, hands the keys
# only the residual holds to a new bundle while the primary keeps the state they had when it started,
# and writes it back when it finishes (engine/elementmanager.go: splitBundle frees the keys,
# StateForBundle copied them, PersistBundle writes every key copied): when the residual's bundle
# finishes first, its writes are lost and the key's next element reads the older state (seen as a
# matter index missing the matter of the element before, tests/test_prism.py). This experiment
# turns runner-initiated splits off. Bounded runs only: without splits, unbounded reads on Prism
# stalled (tests/test_beam_kafka.py: a window of the aligned watermark never closed, unbounded jobs
# wrote nothing in 90 s), so an unbounded run on Prism keeps the splits and the risk.
PRISM_NO_SPLITS_EXPERIMENT = "prism_disable_sdf_split"


def _runner_of(args: List[str]) -> str:
    runner = ""
    for position, arg in enumerate(args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and position + 1 < len(args):
            runner = args[position + 1]
    return runner


def with_local_prism(beam_args: Optional[List[str]], no_splits: bool = False) -> List[str]:
    """``beam_args`` as a Prism run needs them when the runner is ``PrismRunner``: with
    ``--prism_location`` of :func:`local_prism_location` when no location is given (``PrismRunner``
    would download its binary from GitHub at run time), and with ``no_splits`` without Prism's
    bundle splits, which lose state writes (:data:`PRISM_NO_SPLITS_EXPERIMENT`). Raises
    :class:`PrismMissing` when that binary is not there."""
    args = list(beam_args or [])
    if "prism" not in _runner_of(args).lower():
        return args
    if not any(a == "--prism_location" or a.startswith("--prism_location=") for a in args):
        location = local_prism_location()
        if not (location.is_file() and os.access(location, os.X_OK)):
            raise PrismMissing(f"no Prism binary at {location}: run make prism (or set {PRISM_BIN_ENV_VAR}, "
                               "or pass --prism_location)")
        args += ["--prism_location", str(location)]
    if no_splits and not any(PRISM_NO_SPLITS_EXPERIMENT in arg for arg in args):
        args.append(f"--experiments={PRISM_NO_SPLITS_EXPERIMENT}")
    return args


# ---------------------------------------------------------------------------------------- the job
def build_beam_stream(pipeline: beam.Pipeline, bootstrap_servers: str, topics: Topics, settings,
                      partitions=None, group_id: Optional[str] = None, bounded: bool = False, security=None,
                      prior_leads: Optional[List[Lead]] = None, align_watermarks: bool = False,
                      commit_while_running: bool = False) -> None:
    """Adds the job's steps to ``pipeline`` (see the module docstring). ``commit_while_running``:
    commit to ``group_id`` each raw record once its outputs are written (needs ``partitions``)."""
    if commit_while_running and (not group_id or partitions is None):
        raise ValueError("committing while running needs the group and the plan (partitions)")
    events = pipeline | "ReadFromKafka" >> ReadFromKafka(bootstrap_servers, [topics.raw], group_id=group_id,
                                                         bounded=bounded, security=security, partitions=partitions,
                                                         align_watermarks=align_watermarks)
    prior = pipeline | "PriorLeads" >> beam.Create(list(prior_leads or []))
    # encoded inside the job, so that a record that fails to encode is a dead letter with its bytes
    outputs = events | "ComplaintsToLeadsStreaming" >> ComplaintsToLeadsStreaming(
        settings, prior, encode_enriched=encode_enriched_record, encode_lead=encode_lead_record, sourced=True)
    done_of = attrgetter("done") if commit_while_running else None
    written = []
    for label, pcoll, outgoing, topic in (
            ("WriteEnriched", outputs["enriched"], enriched_outgoing, topics.enriched),
            ("WriteLeads", outputs["leads"], lead_outgoing, topics.leads),
            ("WriteDeadLetters", outputs["dead_letters"], dead_letter_outgoing, topics.dead_letter)):
        written.append(pcoll
                       | f"{label}Outgoing" >> beam.Map(outgoing)
                       | label >> WriteToKafka(bootstrap_servers, topic, attrgetter("key"), attrgetter("value"),
                                               security=security, done_of=done_of))
    if commit_while_running:
        starts = {partition_key(p.topic, p.partition): p.start for p in partitions}
        _ = (written | "Written" >> beam.Flatten()
             | "CommitOffsets" >> CommitWrittenOffsets(bootstrap_servers, group_id, starts, security))


def run_beam_stream(bootstrap_servers: str, topics: Topics, beam_args: Optional[List[str]] = None,
                    group_id: Optional[str] = DEFAULT_BEAM_GROUP, bounded: bool = False, security=None,
                    commit: bool = True, align_watermarks: Optional[bool] = None) -> Dict[str, int]:
    """Builds and runs the streaming job (streaming option on) until it ends; returns counts.

    Args:
        bootstrap_servers: ``host:port,...``.
        topics: raw, enriched, leads and dead-letter topics (``Topics``; ``topics.state`` unused).
        beam_args: the runner and its options, and the envleads options (``--model_version``...),
            e.g. ``["--runner", "PrismRunner"]``: the binary ``make prism`` built is added as
            ``--prism_location`` (never downloaded), and for a bounded run Prism's bundle splits
            are turned off (:func:`with_local_prism`).
        group_id: start at this group's committed offsets (None: at the beginning of the raw topic).
        bounded: read the raw topic up to the end it has now, then finish (backfills, tests);
            otherwise run until cancelled.
        security: ``ops.kafka_config.KafkaSecurity`` (None: PLAINTEXT).
        commit: commit to ``group_id``: a bounded run its end offsets after it finished, an
            unbounded one each record once its outputs are written, while it runs.
        align_watermarks: the source's ``align_watermarks`` (None: on for ``PrismRunner``, which
            does not take the oldest partition's watermark itself; off elsewhere).

    Returns ``{"partitions", "planned_records", "prior_leads", "committed"}``: what was planned and
    done; the outputs are on the topics.
    """
    from envleads.pipelines.options import prepared_run, without_job_stream_deadline

    options, settings = prepared_run(with_local_prism(beam_args, no_splits=bounded))
    standard = options.view_as(StandardOptions)
    standard.streaming = True
    if align_watermarks is None:
        runner = standard.runner if isinstance(standard.runner, str) else type(standard.runner).__name__
        align_watermarks = "prism" in str(runner).lower()
    partitions = plan_partitions(bootstrap_servers, [topics.raw], group_id, bounded, security)
    prior_leads = list(read_leads(bootstrap_servers, topics.leads, security).values())
    LOG.info("beam stream: %d partition(s) of %s, %d prior lead(s), %s", len(partitions), topics.raw,
             len(prior_leads), "bounded" if bounded else "unbounded")
    pipeline = beam.Pipeline(options=options)
    without_job_stream_deadline(pipeline.runner)  # else a job longer than --job_server_timeout fails
    build_beam_stream(pipeline, bootstrap_servers, topics, settings, partitions, group_id, bounded, security,
                      prior_leads, align_watermarks, commit_while_running=commit and bool(group_id) and not bounded)
    result = pipeline.run()
    try:
        state = result.wait_until_finish()
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM on an unbounded job: stop it; what it wrote is committed, the rest is read again
        LOG.info("interrupted; cancelling the job")
        result.cancel()
        raise
    if state != PipelineState.DONE:
        raise RuntimeError(f"the Beam stream ended in state {state}; no offsets committed")
    committed = 0
    if bounded and commit and group_id:
        offsets = {(p.topic, p.partition): p.stop for p in partitions if p.stop is not None and p.stop > p.start}
        commit_group_offsets(bootstrap_servers, group_id, offsets, security)
        committed = len(offsets)
    return {"partitions": len(partitions),
            "planned_records": sum((p.stop - p.start) for p in partitions if p.stop is not None),
            "prior_leads": len(prior_leads), "committed": committed}
