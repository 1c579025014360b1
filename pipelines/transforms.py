"""The stages of envleads as named composite PTransforms over the pure domain functions.

``DecodeComplaints -> SegmentText -> ClassifyPollutionType -> ResolveRegion ->
DeduplicatePetitions -> BuildLeads``; :class:`ComplaintsToLeads` wires them. Sources and sinks are
not here (files in ``batch.py``, Kafka in ``kafka_io.py``), so the same stages run in batch over
files and in bounded rounds or streaming over Kafka.

Every stage that can meet bad input emits ``DeadLetter`` records on the ``dead_letter`` output;
nothing is dropped. Expensive resources (jieba tokenizer, model, division table) are built in
``DoFn.setup()``, once per worker.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, List, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from envleads.decode import decode_event
from envleads.leads import block_of_complaint, lead_id_for, merge_lead, scope_of_complaint
from envleads.pipelines.options import StageSettings
from envleads.records import (Complaint, DeadLetter, EnrichedComplaint, KafkaCoordinates, Lead,
                              SegmentedComplaint)
from envleads.repeats import UNKNOWN_BLOCK

LOG = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"
MAIN = "ok"


class RawEvent(NamedTuple):
    """An undecoded event: its bytes, how they are encoded, where they came from."""

    payload: bytes
    fmt: str  # "json" or "avro"
    source: Optional[KafkaCoordinates] = None


# ------------------------------------------------------------------------------------------ decode
class _DecodeFn(beam.DoFn):
    def __init__(self, settings: StageSettings, keep_original: bool = False):
        self._settings = settings
        self._keep_original = keep_original

    def setup(self):
        from envleads.privacy import load_pseudonym_key

        # The key is read on the worker from its environment, never shipped in the pipeline graph.
        self._key = load_pseudonym_key(self._settings.production)
        self._decoded = Metrics.counter("DecodeComplaints", "decoded")
        self._rejected = Metrics.counter("DecodeComplaints", "dead_lettered")

    def process(self, event: RawEvent):
        result = decode_event(event.payload, event.fmt, self._key, self._settings.limits, event.source)
        if isinstance(result, DeadLetter):
            self._rejected.inc()
            Metrics.counter("DecodeComplaints", f"dead_letter.{result.reason}").inc()
            yield TaggedOutput(DEAD_LETTER, result)
        else:
            self._decoded.inc()
            yield (result, event.payload) if self._keep_original else result


class DecodeComplaints(beam.PTransform):
    """Raw events to validated, identity-free complaints; invalid events to ``dead_letter``.

    Reasons: empty_event, event_too_large, invalid_utf8, invalid_json, json_too_deep, not_an_object,
    not_avro, unknown_schema_id, avro_decode_error, missing_<field>, invalid_field_type,
    invalid_complaint_id, empty_text, text_too_large, title_too_large, address_too_large,
    channel_too_large, reporter_field_too_large, jurisdiction_too_large, invalid_timestamp,
    timestamp_out_of_range. Reporter identity becomes ``reporter_key`` here; identity in the text
    is masked here, before any other stage sees it.
    """

    def __init__(self, settings: StageSettings, keep_original: bool = False):
        """``keep_original``: the main output is ``(complaint, original bytes)`` pairs, for
        :class:`RejectReusedIds`."""
        super().__init__()
        self._settings = settings
        self._keep_original = keep_original

    def expand(self, events):
        return events | "Decode" >> beam.ParDo(_DecodeFn(self._settings, self._keep_original)).with_outputs(
            DEAD_LETTER, main=MAIN)


DEDUPLICATE_STAGE = "DeduplicatePetitions"
REUSED_ID = "duplicate_id_conflict"
REUSED_ID_DETAIL = "complaint id already used by an event with other content; the first is kept"


def reused_id_dead_letter(complaint: Complaint, original: bytes) -> DeadLetter:
    """The dead letter of a complaint whose id an earlier event with other content holds."""
    return DeadLetter(DEDUPLICATE_STAGE, REUSED_ID, REUSED_ID_DETAIL, complaint.complaint_id, original,
                      complaint.source)


class _FirstContentOfIdFn(beam.DoFn):
    def setup(self):
        self._rejected = Metrics.counter(DEDUPLICATE_STAGE, f"dead_letter.{REUSED_ID}")

    def process(self, element):
        _, copies = element
        copies = sorted(copies, key=lambda pair: (pair[0].received_at_ms, pair[0].content_digest))
        first = copies[0][0].content_digest
        for complaint, original in copies:
            if complaint.content_digest == first:
                yield complaint
            else:
                self._rejected.inc()
                yield TaggedOutput(DEAD_LETTER, reused_id_dead_letter(complaint, original))


class RejectReusedIds(beam.PTransform):
    """``(complaint, original bytes)`` pairs to complaints, one content per complaint id.

    Events with one id and the same bytes are deliveries of one complaint and all pass (the repeat
    stage recognises the redelivery); an id carried by events of different content keeps the first
    by event time (then content digest), and the others go to ``dead_letter`` as
    ``duplicate_id_conflict``, never folded into the first one's matter. Bounded input only (a
    GroupByKey in the global window); the stream's round engine checks the ids it has seen, and
    the Beam streaming form (``streaming.py``) recognises a repeated id as a redelivery only.
    """

    def expand(self, pairs):
        return (pairs
                | "KeyById" >> beam.Map(lambda pair: (pair[0].complaint_id, pair))
                | "GroupById" >> beam.GroupByKey()
                | "FirstContentOfId" >> beam.ParDo(_FirstContentOfIdFn()).with_outputs(DEAD_LETTER, main=MAIN))


# ----------------------------------------------------------------------------------------- segment
class _SegmentFn(beam.DoFn):
    def setup(self):
        from envleads.text import build_tokenizer

        # jieba builds its prefix dictionary lazily behind a lock; a private tokenizer with the
        # domain dictionary, built here once per worker, keeps 偷排 and 渗坑 whole on every worker.
        self._tokenizer = build_tokenizer()

    def process(self, complaint: Complaint):
        from envleads.text import segment_for_model

        doc = segment_for_model(self._tokenizer, complaint.title, complaint.text)
        yield SegmentedComplaint(complaint, doc.title_tokens + doc.tokens, doc)


class SegmentText(beam.PTransform):
    """Segments title and text with jieba and the domain dictionary (normalised first)."""

    def expand(self, complaints):
        return complaints | "Segment" >> beam.ParDo(_SegmentFn())


# ---------------------------------------------------------------------------------------- classify
class _ClassifyFn(beam.DoFn):
    def __init__(self, settings: StageSettings):
        self._settings = settings

    def setup(self):
        from envleads.models.registry import load_model

        # Loaded once per worker; a label-set or library mismatch fails here, not per element.
        self._model = load_model(self._settings.model_version, self._settings.model_registry)
        if self._settings.review_threshold is not None:
            self._model.review_threshold = self._settings.review_threshold
        self._needs_review = Metrics.counter("ClassifyPollutionType", "needs_review")

    def process(self, batch: List[SegmentedComplaint]):
        # Segmented once upstream; (title, text) only for items built without a doc (tests, tools).
        predictions = self._model.predict([item.doc or (item.complaint.title, item.complaint.text)
                                           for item in batch])
        for item, prediction in zip(batch, predictions):
            if prediction.needs_review:
                self._needs_review.inc()
            yield item, prediction


class ClassifyPollutionType(beam.PTransform):
    """Pollution types with calibrated confidence, from the registered model, in batches."""

    def __init__(self, settings: StageSettings):
        super().__init__()
        self._settings = settings

    def expand(self, segmented):
        size = self._settings.classify_batch_size
        return (segmented
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=size)
                | "Classify" >> beam.ParDo(_ClassifyFn(self._settings)))


# ------------------------------------------------------------------------------------------ region
class _ResolveRegionFn(beam.DoFn):
    def setup(self):
        from envleads.region import RegionResolver
        from envleads.routing import Router

        self._resolver = RegionResolver()
        self._router = Router()
        self._unresolved = Metrics.counter("ResolveRegion", "unresolved")

    def process(self, classified):
        segmented, types = classified
        complaint = segmented.complaint
        region = self._resolver.resolve(complaint.text, complaint.title,
                                        jurisdiction_adcode=complaint.jurisdiction_adcode)
        if region.adcode is None:
            self._unresolved.inc()
        routing = self._router.route(types.labels, f"{complaint.title}\n{complaint.text}", region)
        yield EnrichedComplaint(complaint, segmented.tokens, types, region,
                                department=routing.department, routing_rule=routing.rule_id)


class ResolveRegion(beam.PTransform):
    """The most specific GB/T 2260 division the text supports, and the responsible department.

    Ambiguous names resolve only to the level that is certain, or to the intake channel's
    jurisdiction; an unresolved region is not an error (``region`` is null), so nothing is
    dead-lettered here.
    """

    def expand(self, classified):
        return classified | "Resolve" >> beam.ParDo(_ResolveRegionFn())


# --------------------------------------------------------------------------------------- repeats
INDEX_STATE = "index_state"
UNPLACED = "unplaced"


class _AssignMattersFn(beam.DoFn):
    """Runs the matter index over one city key's reports in event-time order.

    Emits the reports, and the key's final index (``(key, MatterIndex.to_state())``) on
    ``index_state`` for the unplaced complaints assigned after all city keys.
    """

    def setup(self):
        from envleads.repeats import load_repeat_config
        from envleads.scoring import load_scoring_weights

        self._config = load_repeat_config()
        self._weights = load_scoring_weights()
        self._repeats = Metrics.counter("DeduplicatePetitions", "repeats")
        self._matters = Metrics.counter("DeduplicatePetitions", "new_matters")
        self._restored = Metrics.counter("DeduplicatePetitions", "restored_matters")
        self._unrestorable = Metrics.counter("DeduplicatePetitions", "unrestorable_prior_leads")

    def _index(self, block: str, prior_leads):
        from envleads.leads import seed_index
        from envleads.repeats import MatterIndex

        index = MatterIndex(self._config, block)
        restored, unrestorable = seed_index(index, prior_leads.get(block, []))
        self._restored.inc(restored)
        self._unrestorable.inc(unrestorable)
        return index

    def _assign(self, index, reports, across=None):
        from envleads.leads import assign_in_order

        for report, assignment in assign_in_order(index, reports, self._weights, across):
            (self._matters if assignment.is_new_matter else self._repeats).inc()
            yield report

    def process(self, keyed, prior_leads):
        block, reports = keyed
        index = self._index(block, prior_leads)
        yield from self._assign(index, reports)
        yield TaggedOutput(INDEX_STATE, (block, index.to_state()))


class _AssignUnplacedFn(_AssignMattersFn):
    """Assigns one scope's complaints of no known city across every city index of the scope."""

    def process(self, keyed, prior_leads, city_states):
        from envleads.leads import scope_indexes
        from envleads.repeats import UNKNOWN_BLOCK

        scope, reports = keyed
        indexes = scope_indexes(scope, city_states, prior_leads, self._config)
        yield from self._assign(indexes[UNKNOWN_BLOCK], reports, indexes)


def _group_prior_leads(leads: Iterable[Lead]) -> Dict[str, List[Lead]]:
    from envleads.leads import group_leads_by_block

    return group_leads_by_block(leads)


class DeduplicatePetitions(beam.PTransform):
    """Gives each complaint its matter (``cluster_id``) and the matter's first report (``duplicate_of``).

    Complaints are grouped by a coarse blocking key (city-level code of the resolved region, else
    of the intake jurisdiction, else "unknown") and assigned in event-time order against the
    matters already known: the prior leads (from the compacted lead topic, or none in a fresh
    batch) rebuild the index first, so a restart or a replay attaches a repeat to its existing
    matter instead of opening a second one, and a redelivered complaint keeps its matter without
    counting again. Complaints of no known city are assigned last, per province (or nationwide
    when not even that is known), across the final indexes of that province's cities and its
    prior leads (``envleads.repeats.assign_unplaced``, the rounds engine's policy too). Matching window: 90 days by default (``data/repeats.json``). This is the bounded
    form used by batch runs and bounded rounds; the per-complaint steps are those of the streaming
    form (``envleads.leads.report_matter``, ``restore_lead``).
    """

    def __init__(self, prior_leads=None):
        super().__init__()
        self._prior_leads = prior_leads

    def expand(self, enriched):
        # no prior leads (a fresh batch): an empty dict, not a side input of an empty collection,
        # which would add a global combine and four bundles to every run
        prior_by_block = {} if self._prior_leads is None else AsSingleton(
            self._prior_leads
            | "CollectPriorLeads" >> beam.combiners.ToList()
            | "GroupPriorByBlock" >> beam.Map(_group_prior_leads))
        keyed = enriched | "KeyByBlock" >> beam.ParDo(_KeyByBlockFn()).with_outputs(UNPLACED, main=MAIN)
        assigned = (keyed[MAIN]
                    | "GroupByBlock" >> beam.GroupByKey()
                    | "AssignMatters" >> beam.ParDo(_AssignMattersFn(), prior_leads=prior_by_block)
                    .with_outputs(INDEX_STATE, main=MAIN))
        unplaced_reports = (keyed[UNPLACED]
                            | "GroupByScope" >> beam.GroupByKey()
                            | "AssignUnplaced" >> beam.ParDo(_AssignUnplacedFn(),
                                                             prior_leads=prior_by_block,
                                                             city_states=AsList(assigned[INDEX_STATE])))
        return (assigned[MAIN], unplaced_reports) | "MergeReports" >> beam.Flatten()


class _KeyByBlockFn(beam.DoFn):
    """Keys a complaint by its blocking key, or, with no known city, by its scope on ``unplaced``."""

    def process(self, enriched: EnrichedComplaint):
        block = block_of_complaint(enriched)
        if block == UNKNOWN_BLOCK:
            yield TaggedOutput(UNPLACED, (scope_of_complaint(enriched), enriched))
        else:
            yield block, enriched


# ------------------------------------------------------------------------------------------ leads
class _MergeLeadFn(beam.DoFn):
    def setup(self):
        from envleads.scoring import load_scoring_weights

        self._weights = load_scoring_weights()
        self._emitted = Metrics.counter("BuildLeads", "leads_emitted")
        self._updated = Metrics.counter("BuildLeads", "leads_updated")

    def process(self, keyed, prior_leads, as_of_ms):
        cluster_id, reports = keyed
        previous = prior_leads.get(lead_id_for(cluster_id))
        lead = merge_lead(previous, list(reports), as_of_ms, self._weights)
        if lead is None or lead is previous:
            return
        (self._updated if previous else self._emitted).inc()
        yield lead


class BuildLeads(beam.PTransform):
    """One scored lead per matter with its reasons, merged into the prior lead of the same key.

    A matter whose reports are all non-environmental gives no lead. Scores are computed as of the
    newest event time seen, so re-running the same events gives the same scores.
    """

    def __init__(self, prior_leads=None):
        super().__init__()
        self._prior_leads = prior_leads

    def expand(self, reports):
        prior_by_id = {} if self._prior_leads is None else AsDict(
            self._prior_leads | "KeyPriorById" >> beam.Map(lambda lead: (lead.lead_id, lead)))
        as_of = reports | "NewestEventTime" >> beam.CombineGlobally(_NewestEventTime()).without_defaults()
        return (reports
                | "KeyByMatter" >> beam.Map(lambda r: (r.enriched.cluster_id, r))
                | "GroupByMatter" >> beam.GroupByKey()
                | "MergeLead" >> beam.ParDo(_MergeLeadFn(), prior_leads=prior_by_id,
                                            as_of_ms=AsSingleton(as_of, default_value=0)))


class _NewestEventTime(beam.CombineFn):
    """The newest event time (ms) of the reports: the time leads are scored as of."""

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, newest: int, report) -> int:
        return max(newest, report.enriched.complaint.received_at_ms)

    def merge_accumulators(self, accumulators: Iterable[int]) -> int:
        return max(accumulators, default=0)

    def extract_output(self, newest: int) -> int:
        return newest


# ----------------------------------------------------------------------------------------- whole
class ComplaintsToLeads(beam.PTransform):
    """The whole path from raw events to enriched complaints, leads and dead letters.

    Returns a dict with ``enriched`` (``MatterReport`` with cluster ids), ``leads`` (new or updated
    ``Lead`` records) and ``dead_letters`` (``DeadLetter``).
    """

    def __init__(self, settings: StageSettings, prior_leads=None):
        super().__init__()
        self._settings = settings
        self._prior_leads = prior_leads

    def expand(self, events):
        decoded = events | "DecodeComplaints" >> DecodeComplaints(self._settings, keep_original=True)
        unique = decoded[MAIN] | "RejectReusedIds" >> RejectReusedIds()
        enriched = (unique[MAIN]
                    | "SegmentText" >> SegmentText()
                    | "ClassifyPollutionType" >> ClassifyPollutionType(self._settings)
                    | "ResolveRegion" >> ResolveRegion())
        reports = enriched | "DeduplicatePetitions" >> DeduplicatePetitions(self._prior_leads)
        leads = reports | "BuildLeads" >> BuildLeads(self._prior_leads)
        dead_letters = (decoded[DEAD_LETTER], unique[DEAD_LETTER]) | "DeadLetters" >> beam.Flatten()
        return {"enriched": reports, "leads": leads, "dead_letters": dead_letters}
