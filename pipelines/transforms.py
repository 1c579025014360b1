"""The stages of envleads as named composite PTransforms over the pure domain functions.

``DecodeComplaints -> SegmentText -> ClassifyPollutionType -> ResolveRegion ->
DeduplicatePetitions -> BuildLeads``; :class:`ComplaintsToLeads` wires them. Sources and sinks are
not here (files in ``batch.py``, Kafka in ``kafka_edge/``), so the same stages run in batch over
files and in bounded rounds or streaming over Kafka.

Every stage emits ``DeadLetter`` records on the ``dead_letter`` output; nothing is dropped: decode
for bad input (reason codes), every stage for a record that makes it raise (``internal_error``,
:mod:`envleads.failures`), so one poison record never stops the pipeline. Expensive resources (jieba tokenizer, model, division table) are built in
``DoFn.setup()``, once per worker.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, AsList, AsSingleton, TaggedOutput

from envleads.decode import decode_event
from envleads.failures import INTERNAL_ERROR, internal_error, with_original
from envleads.leads import (block_of_complaint, event_order, lead_id_for, merge_lead, report_matter,
                            scope_of_complaint)
from envleads.pipelines.options import StageSettings
from envleads.records import Complaint, DeadLetter, EnrichedComplaint, Lead, RawEvent, SegmentedComplaint
from envleads.repeats import UNKNOWN_BLOCK

LOG = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"
MAIN = "ok"



def failed(stage: str, error: Exception, complaint: Optional[Complaint] = None, original: bytes = b"") -> TaggedOutput:
    """The ``dead_letter`` output of a record that made ``stage`` raise (counted per stage as
    ``dead_letter.internal_error``). A later stage has the complaint, not its bytes: the bounded
    form finds them afterwards (:class:`AttachOriginals`), the streaming form carries them beside
    the record (``keep_original``, :class:`_InFlightFn`)."""
    Metrics.counter(stage, f"dead_letter.{INTERNAL_ERROR}").inc()
    return TaggedOutput(DEAD_LETTER, internal_error(stage, error, complaint, original))


# ------------------------------------------------------------------------------- records in flight
# A record of the streaming form and its event's original bytes: a stream has no side input of the
# whole input to find them in when a later stage fails on the record, so they travel beside it,
# never in state (the ``keep_original`` option of the stages).
InFlight = Tuple[Any, bytes]


def _with_original_bytes(output: Any, original: bytes) -> Any:
    """A stage's output for an in-flight record: its dead letter gets the record's bytes, the record
    it became travels on with them."""
    if isinstance(output, TaggedOutput):  # the stages' only tagged output is the dead letter
        return TaggedOutput(output.tag, output.value._replace(original=original))
    return output, original


class _InFlightFn(beam.DoFn):
    """A per-record stage's DoFn (``fn``, with ``setup`` and ``teardown`` only) run on in-flight
    records, so that the stage's code stays that of the bounded form."""

    def __init__(self, fn: beam.DoFn):
        self._fn = fn

    def setup(self):
        self._fn.setup()

    def teardown(self):
        self._fn.teardown()

    def process(self, in_flight: InFlight):
        record, original = in_flight
        for output in self._fn.process(record):
            yield _with_original_bytes(output, original)


class _InFlightBatchFn(_InFlightFn):
    """A batched stage's DoFn run on batches of in-flight records; ``fn`` gives one output per
    record, in the batch's order, which is how each output finds its record's bytes."""

    def process(self, batch: List[InFlight]):
        outputs = self._fn.process([record for record, _ in batch])
        for output, (_, original) in zip(outputs, batch, strict=True):
            yield _with_original_bytes(output, original)


def _in_flight_if(keep_original: bool, fn: beam.DoFn, wrapper: type = _InFlightFn) -> beam.DoFn:
    """``fn``, run on in-flight records when ``keep_original``."""
    return wrapper(fn) if keep_original else fn


# ------------------------------------------------------------------------------------------ decode
DECODE_STAGE = "DecodeComplaints"


class _DecodeFn(beam.DoFn):
    def __init__(self, settings: StageSettings, keep_original: bool = False):
        self._settings = settings
        self._keep_original = keep_original

    def setup(self):
        from envleads.privacy import load_pseudonym_key

        # The key is read on the worker from its environment, never shipped in the pipeline graph.
        self._key = load_pseudonym_key(self._settings.production)
        self._decoded = Metrics.counter(DECODE_STAGE, "decoded")
        self._rejected = Metrics.counter(DECODE_STAGE, "dead_lettered")

    def process(self, event: RawEvent):
        try:
            result = decode_event(event.payload, event.fmt, self._key, self._settings.limits, event.source)
        except Exception as error:  # noqa: BLE001 - one event must not stop the stream
            result = internal_error(DECODE_STAGE, error, original=event.payload)._replace(source=event.source)
        if isinstance(result, DeadLetter):
            self._rejected.inc()
            Metrics.counter(DECODE_STAGE, f"dead_letter.{result.reason}").inc()
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
    timestamp_out_of_range; internal_error (the decoder raised: the exception's class only).
    Reporter identity becomes ``reporter_key`` here; identity in the text
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

        try:
            doc = segment_for_model(self._tokenizer, complaint.title, complaint.text)
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            yield failed(SEGMENT_STAGE, error, complaint)
            return
        yield SegmentedComplaint(complaint, doc.title_tokens + doc.tokens, doc)


SEGMENT_STAGE = "SegmentText"


class SegmentText(beam.PTransform):
    """Segments title and text with jieba and the domain dictionary (normalised first); a
    complaint that makes it raise goes to ``dead_letter`` (``internal_error``)."""

    def __init__(self, keep_original: bool = False):
        """``keep_original``: input and main output are in-flight ``(record, original bytes)`` pairs
        (:data:`InFlight`), and a dead letter carries its record's bytes."""
        super().__init__()
        self._keep_original = keep_original

    def expand(self, complaints):
        return complaints | "Segment" >> beam.ParDo(_in_flight_if(self._keep_original, _SegmentFn())).with_outputs(
            DEAD_LETTER, main=MAIN)


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
        # one output per item, in the batch's order (_InFlightBatchFn relies on it)
        for item, prediction in self._predict(batch):
            if isinstance(prediction, Exception):
                yield failed(CLASSIFY_STAGE, prediction, item.complaint)
                continue
            if prediction.needs_review:
                self._needs_review.inc()
            yield item, prediction

    def _predict(self, batch: List[SegmentedComplaint]):
        """``(item, prediction or the exception it raised)``: the batch at once, and when that
        raises, item by item, so that only the record that raises is dead-lettered."""
        # Segmented once upstream; (title, text) only for items built without a doc (tests, tools).
        docs = [item.doc or (item.complaint.title, item.complaint.text) for item in batch]
        try:
            return list(zip(batch, self._model.predict(docs)))
        except Exception as error:  # noqa: BLE001 - find the record that raises
            if len(batch) == 1:
                return [(batch[0], error)]
        results = []
        for item, doc in zip(batch, docs):
            try:
                results.append((item, self._model.predict([doc])[0]))
            except Exception as error:  # noqa: BLE001 - one record must not stop the stream
                results.append((item, error))
        return results


CLASSIFY_STAGE = "ClassifyPollutionType"


class ClassifyPollutionType(beam.PTransform):
    """Pollution types with calibrated confidence, from the registered model, in batches.

    A batch that raises is classified again one complaint at a time; only a complaint that raises
    alone goes to ``dead_letter`` (``internal_error``).
    """

    def __init__(self, settings: StageSettings, keep_original: bool = False):
        """``keep_original``: as :class:`SegmentText`'s."""
        super().__init__()
        self._settings = settings
        self._keep_original = keep_original

    def expand(self, segmented):
        size = self._settings.classify_batch_size
        classify = _in_flight_if(self._keep_original, _ClassifyFn(self._settings), _InFlightBatchFn)
        return (segmented
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=size)
                | "Classify" >> beam.ParDo(classify).with_outputs(DEAD_LETTER, main=MAIN))


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
        try:
            region = self._resolver.resolve(complaint.text, complaint.title,
                                            jurisdiction_adcode=complaint.jurisdiction_adcode)
            routing = self._router.route(types.labels, f"{complaint.title}\n{complaint.text}", region)
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            yield failed(REGION_STAGE, error, complaint)
            return
        if region.adcode is None:
            self._unresolved.inc()
        yield EnrichedComplaint(complaint, segmented.tokens, types, region,
                                department=routing.department, routing_rule=routing.rule_id)


REGION_STAGE = "ResolveRegion"


class ResolveRegion(beam.PTransform):
    """The most specific GB/T 2260 division the text supports, and the responsible department.

    Ambiguous names resolve only to the level that is certain, or to the intake channel's
    jurisdiction; an unresolved region is not an error (``region`` is null). Only a complaint that
    makes resolution or routing raise goes to ``dead_letter`` (``internal_error``).
    """

    def __init__(self, keep_original: bool = False):
        """``keep_original``: as :class:`SegmentText`'s."""
        super().__init__()
        self._keep_original = keep_original

    def expand(self, classified):
        resolve = _in_flight_if(self._keep_original, _ResolveRegionFn())
        return classified | "Resolve" >> beam.ParDo(resolve).with_outputs(DEAD_LETTER, main=MAIN)


# --------------------------------------------------------------------------------------- repeats
INDEX_STATE = "index_state"
UNPLACED = "unplaced"


def set_up_repeat_stage(fn: beam.DoFn) -> None:
    """What every repeat-assigning DoFn (batch and streaming) loads once per worker: the matter
    rules, the scoring weights and the stage's counters."""
    from envleads.repeats import load_repeat_config
    from envleads.scoring import load_scoring_weights

    fn._config = load_repeat_config()
    fn._weights = load_scoring_weights()
    for name, counter in (("_repeats", "repeats"), ("_matters", "new_matters"),
                          ("_restored", "restored_matters"), ("_unrestorable", "unrestorable_prior_leads")):
        setattr(fn, name, Metrics.counter("DeduplicatePetitions", counter))


class _AssignMattersFn(beam.DoFn):
    """Runs the matter index over one city key's reports in event-time order.

    Emits the reports, and the key's final index (``(key, MatterIndex.to_state())``) on
    ``index_state`` for the unplaced complaints assigned after all city keys.
    """

    def setup(self):
        set_up_repeat_stage(self)

    def _index(self, block: str, prior_leads):
        from envleads.leads import seed_index
        from envleads.repeats import MatterIndex

        index = MatterIndex(self._config, block)
        restored, unrestorable = seed_index(index, prior_leads.get(block, []))
        self._restored.inc(restored)
        self._unrestorable.inc(unrestorable)
        return index

    def _assign(self, index, reports, across=None):
        # as envleads.leads.assign_in_order, one complaint at a time: one that raises is a dead
        # letter and the key goes on (the indexes change only once a complaint's match is found)
        for enriched in event_order(reports):
            try:
                report, assignment = report_matter(index, enriched, self._weights, across)
            except Exception as error:  # noqa: BLE001 - one record must not stop the stream
                yield failed(DEDUPLICATE_STAGE, error, enriched.complaint)
                continue
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
    prior leads (``envleads.repeats.assign_unplaced``, the rounds engine's policy too). Matching
    window: 90 days by default (``data/repeats.json``). A complaint that makes its assignment raise
    goes to ``dead_letter`` (``internal_error``); its key's other complaints are assigned as if it
    had not come. Returns ``{ok, dead_letter}``. This is the bounded
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
        keyed = enriched | "KeyByBlock" >> beam.ParDo(_KeyByBlockFn()).with_outputs(UNPLACED, DEAD_LETTER,
                                                                                   main=MAIN)
        assigned = (keyed[MAIN]
                    | "GroupByBlock" >> beam.GroupByKey()
                    | "AssignMatters" >> beam.ParDo(_AssignMattersFn(), prior_leads=prior_by_block)
                    .with_outputs(INDEX_STATE, DEAD_LETTER, main=MAIN))
        unplaced = (keyed[UNPLACED]
                    | "GroupByScope" >> beam.GroupByKey()
                    | "AssignUnplaced" >> beam.ParDo(_AssignUnplacedFn(), prior_leads=prior_by_block,
                                                     city_states=AsList(assigned[INDEX_STATE]))
                    .with_outputs(DEAD_LETTER, main=MAIN))
        return {MAIN: (assigned[MAIN], unplaced[MAIN]) | "MergeReports" >> beam.Flatten(),
                DEAD_LETTER: (keyed[DEAD_LETTER], assigned[DEAD_LETTER], unplaced[DEAD_LETTER])
                | "MergeDeadLetters" >> beam.Flatten()}


class _KeyByBlockFn(beam.DoFn):
    """Keys a complaint by its blocking key, or, with no known city, by its scope on ``unplaced``."""

    def process(self, enriched: EnrichedComplaint):
        try:
            block = block_of_complaint(enriched)
            scope = scope_of_complaint(enriched) if block == UNKNOWN_BLOCK else None
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            yield failed(DEDUPLICATE_STAGE, error, enriched.complaint)
            return
        if block == UNKNOWN_BLOCK:
            yield TaggedOutput(UNPLACED, (scope, enriched))
        else:
            yield block, enriched


# ------------------------------------------------------------------------------------------ leads
class _MergeLeadFn(beam.DoFn):
    """Merges one matter's reports into its lead (and encodes it, with ``encode``); a matter that
    raises makes each of its reports a dead letter of the stage that raised."""

    def __init__(self, encode: Optional[Callable[[Lead], Any]] = None):
        self._encode = encode

    def setup(self):
        from envleads.scoring import load_scoring_weights

        self._weights = load_scoring_weights()
        self._emitted = Metrics.counter("BuildLeads", "leads_emitted")
        self._updated = Metrics.counter("BuildLeads", "leads_updated")

    def process(self, keyed, prior_leads, as_of_ms):
        cluster_id, reports = keyed
        reports = list(reports)
        previous = prior_leads.get(lead_id_for(cluster_id))
        stage = BUILD_LEADS_STAGE
        try:
            lead = merge_lead(previous, reports, as_of_ms, self._weights)
            if lead is None or lead is previous:
                return
            stage = ENCODE_LEADS_STAGE
            encoded = lead if self._encode is None else self._encode(lead)
        except Exception as error:  # noqa: BLE001 - one matter must not stop the stream
            for complaint in distinct_complaints(reports):
                yield failed(stage, error, complaint)
            return
        (self._updated if previous else self._emitted).inc()
        yield encoded


BUILD_LEADS_STAGE = "BuildLeads"
ENCODE_LEADS_STAGE = "EncodeLeads"
ENCODE_ENRICHED_STAGE = "EncodeEnriched"


def distinct_complaints(reports) -> List[Complaint]:
    """The complaints of a matter's reports, each once (a redelivery repeats one)."""
    return list({report.enriched.complaint.complaint_id: report.enriched.complaint for report in reports}.values())


class BuildLeads(beam.PTransform):
    """One scored lead per matter with its reasons, merged into the prior lead of the same key.

    A matter whose reports are all non-environmental gives no lead. Scores are computed as of the
    newest event time seen, so re-running the same events gives the same scores. A matter whose
    lead cannot be built (or, with ``encode``, encoded) makes each of its reports a dead letter
    ``internal_error`` of ``BuildLeads`` (``EncodeLeads``). Returns ``{ok, dead_letter}``.
    """

    def __init__(self, prior_leads=None, encode: Optional[Callable[[Lead], Any]] = None):
        """``encode``: what the main output holds, from each lead (default: the lead)."""
        super().__init__()
        self._prior_leads = prior_leads
        self._encode = encode

    def expand(self, reports):
        prior_by_id = {} if self._prior_leads is None else AsDict(
            self._prior_leads | "KeyPriorById" >> beam.Map(lambda lead: (lead.lead_id, lead)))
        as_of = reports | "NewestEventTime" >> beam.CombineGlobally(_NewestEventTime()).without_defaults()
        return (reports
                | "KeyByMatter" >> beam.Map(lambda r: (r.enriched.cluster_id, r))
                | "GroupByMatter" >> beam.GroupByKey()
                | "MergeLead" >> beam.ParDo(_MergeLeadFn(self._encode), prior_leads=prior_by_id,
                                            as_of_ms=AsSingleton(as_of, default_value=0))
                .with_outputs(DEAD_LETTER, main=MAIN))


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


# ----------------------------------------------------------------------------------------- encode
class _EncodeFn(beam.DoFn):
    """``encode(report)``; a report that raises is a dead letter of ``EncodeEnriched``."""

    def __init__(self, encode: Callable[[Any], Any]):
        self._encode = encode

    def process(self, report):
        try:
            encoded = self._encode(report)
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            yield failed(ENCODE_ENRICHED_STAGE, error, report.enriched.complaint)
            return
        yield encoded


class EncodeEnriched(beam.PTransform):
    """Enriched reports to what the sink writes (``encode``); one that raises goes to
    ``dead_letter`` (``internal_error``). Returns ``{ok, dead_letter}``."""

    def __init__(self, encode: Callable[[Any], Any], keep_original: bool = False):
        """``keep_original``: as :class:`SegmentText`'s."""
        super().__init__()
        self._encode = encode
        self._keep_original = keep_original

    def expand(self, reports):
        encode = _in_flight_if(self._keep_original, _EncodeFn(self._encode))
        return reports | "Encode" >> beam.ParDo(encode).with_outputs(DEAD_LETTER, main=MAIN)


class _AttachOriginalFn(beam.DoFn):
    def process(self, dead: DeadLetter, originals):
        yield with_original(dead, originals)


class AttachOriginals(beam.PTransform):
    """Gives the dead letters of the stages after decode the original bytes of their event.

    Those stages have the complaint, not its bytes; they are found by the complaint's content
    digest among ``originals`` (``(digest, bytes)`` of every decoded event). A side input: the
    originals are held once more (the raw input's size), and looked up only when a dead letter
    comes (the side input is read on the first element).
    """

    def __init__(self, originals):
        super().__init__()
        self._originals = originals

    def expand(self, dead_letters):
        return dead_letters | "AttachOriginal" >> beam.ParDo(_AttachOriginalFn(), AsDict(self._originals))


# ----------------------------------------------------------------------------------------- whole
class ComplaintsToLeads(beam.PTransform):
    """The whole path from raw events to enriched complaints, leads and dead letters.

    Returns a dict with ``enriched`` (``MatterReport`` with cluster ids), ``leads`` (new or updated
    ``Lead`` records) and ``dead_letters`` (``DeadLetter``): invalid events and, from every stage,
    the records that made it raise (``internal_error``, with their original bytes).
    """

    def __init__(self, settings: StageSettings, prior_leads=None, encode_enriched: Optional[Callable] = None,
                 encode_lead: Optional[Callable[[Lead], Any]] = None):
        """``encode_enriched``, ``encode_lead``: the sink's encodings, applied here so that a record
        that fails to encode is a dead letter with its bytes (``enriched``, ``leads``: encoded)."""
        super().__init__()
        self._settings = settings
        self._prior_leads = prior_leads
        self._encode_enriched = encode_enriched
        self._encode_lead = encode_lead

    def expand(self, events):
        decoded = events | "DecodeComplaints" >> DecodeComplaints(self._settings, keep_original=True)
        unique = decoded[MAIN] | "RejectReusedIds" >> RejectReusedIds()
        segmented = unique[MAIN] | "SegmentText" >> SegmentText()
        classified = segmented[MAIN] | "ClassifyPollutionType" >> ClassifyPollutionType(self._settings)
        enriched = classified[MAIN] | "ResolveRegion" >> ResolveRegion()
        reports = enriched[MAIN] | "DeduplicatePetitions" >> DeduplicatePetitions(self._prior_leads)
        leads = reports[MAIN] | "BuildLeads" >> BuildLeads(self._prior_leads, self._encode_lead)
        failed_stages = [segmented, classified, enriched, reports, leads]
        written = reports[MAIN]
        if self._encode_enriched is not None:
            encoded = reports[MAIN] | "EncodeEnriched" >> EncodeEnriched(self._encode_enriched)
            failed_stages.append(encoded)
            written = encoded[MAIN]
        originals = decoded[MAIN] | "KeyOriginalByDigest" >> beam.Map(lambda pair: (pair[0].content_digest, pair[1]))
        raised = ([stage[DEAD_LETTER] for stage in failed_stages] | "StageDeadLetters" >> beam.Flatten()
                  | "AttachOriginals" >> AttachOriginals(originals))
        dead_letters = (decoded[DEAD_LETTER], unique[DEAD_LETTER], raised) | "DeadLetters" >> beam.Flatten()
        return {"enriched": written, "leads": leads[MAIN], "dead_letters": dead_letters}
