"""One lead per matter: building, merging and serialising leads (pure functions).

A lead's key is derived from its matter's first complaint, so re-processing the same complaints
(a replay, a restart after a crash) produces the same key and updates the lead instead of adding a
second one. A lead is re-emitted whole when a repeat arrives (compacted-topic semantics: the last
record per key is the lead). Matters in which no report is environmental produce no lead.

The per-complaint and per-prior-lead steps of repeat detection live here too
(:func:`report_matter`, :func:`restore_lead`, :func:`seed_index`, the blocking keys), so that the
bounded stage (``pipelines/transforms.py``) and the streaming stage (``pipelines/streaming.py``)
assign matters with the same code.
"""
from __future__ import annotations

import array
import functools
import sys
from collections import Counter
from datetime import date, datetime
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple

import numpy as np

from envleads.config import CHINA_TZ, data_path, load_json_config
from envleads.records import EnrichedComplaint, Lead, ReportJoin, ScoreReason
from envleads.repeats import (UNKNOWN_BLOCK, Assignment, KeyIndexes, MatterFeatures, MatterIndex, assign_unplaced,
                              blocking_key, in_scope, is_sketch, matter_features, signature_from_list,
                              signature_to_list, unplaced_scope)
from envleads.scoring import ScoringWeights, complaint_signals, score_matter, signals_from_reasons

SUMMARY_CHARS = 160
_LEVEL_DEPTH = {"province": 1, "city": 2, "county": 3}


class MatterReport(NamedTuple):
    """A report ready to join its matter's lead: the enriched complaint and what scoring needs."""

    enriched: EnrichedComplaint
    signals: FrozenSet[str]
    signature: List[int]
    entities: List[str]
    join: Optional[ReportJoin] = None  # why a repeat joined its matter (None for a first report)


# a lead lists why its most recent repeats joined it (the list is for checking merges, not history)
MAX_JOINS = 50




class DeadlineRules(NamedTuple):
    version: str
    working_days: Dict[str, int]
    default_working_days: int
    holidays: Tuple[str, ...]


@functools.lru_cache(maxsize=4)
def load_deadline_rules(path: Optional[str] = None) -> DeadlineRules:
    doc = load_json_config(path or data_path("deadlines.json"),
                           required=("version", "working_days", "default_working_days", "holidays"))
    return DeadlineRules(doc["version"], dict(doc["working_days"]), int(doc["default_working_days"]),
                         tuple(doc["holidays"]))


@functools.lru_cache(maxsize=8)
def _calendar(holidays: Tuple[str, ...]) -> np.busdaycalendar:
    return np.busdaycalendar(holidays=np.array(holidays, dtype="datetime64[D]"))


def assignment_deadline_ms(received_at_ms: int, channel: Optional[str], rules: DeadlineRules) -> int:
    """End of the last working day for assigning a complaint (China Standard Time).

    The count starts on the working day after receipt; weekends and the listed holidays do not
    count (numpy's business-day calendar does the arithmetic).
    """
    days = rules.working_days.get(channel or "", rules.default_working_days)
    received = datetime.fromtimestamp(received_at_ms / 1000, CHINA_TZ).date()
    return _end_of_due_day_ms(received, days, rules.holidays)


@functools.lru_cache(maxsize=4096)
def _end_of_due_day_ms(received: date, days: int, holidays: Tuple[str, ...]) -> int:
    """Cached: every new lead asks, and the calendar arithmetic (~7 µs) depends on the day only."""
    due = np.busday_offset(np.datetime64(received), days, roll="backward", busdaycal=_calendar(holidays))
    end_of_day = datetime.fromisoformat(str(due)).replace(hour=23, minute=59, second=59, tzinfo=CHINA_TZ)
    return int(end_of_day.timestamp() * 1000)


def lead_id_for(cluster_id: str) -> str:
    return "lead-" + cluster_id


def _deepest_region(regions: Iterable[Optional[dict]]) -> Optional[dict]:
    best = None
    for region in regions:
        if region and (best is None or _LEVEL_DEPTH.get(region["level"], 0) > _LEVEL_DEPTH.get(best["level"], 0)):
            best = region
    return best


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 1] + "…"


def merge_lead(previous: Optional[Lead], reports: List[MatterReport], as_of_ms: int,
               weights: ScoringWeights) -> Optional[Lead]:
    """The lead of a matter after adding ``reports`` (event-time order not required) to ``previous``.

    Reports already counted in ``previous`` (same complaint id, as after a replay) are not counted
    again, so the merge is idempotent. A lead starts at its matter's first environmental report:
    without ``previous``, the reports before it in event-time order are left out (a
    non-environmental complaint never heads a lead), so that however a matter's in-order reports
    are batched, one at a time or all at once, the same lead results; later ones join it.
    """
    known = set(previous.complaint_ids) if previous else set()
    fresh = sorted((r for r in reports if r.enriched.complaint.complaint_id not in known),
                   key=lambda r: (r.enriched.complaint.received_at_ms, r.enriched.complaint.complaint_id))
    # Drop duplicates within the batch too (at-least-once delivery can repeat an event).
    seen, unique = set(), []
    for report in fresh:
        if report.enriched.complaint.complaint_id not in seen:
            seen.add(report.enriched.complaint.complaint_id)
            unique.append(report)
    if previous is None:
        start = next((at for at, r in enumerate(unique) if r.enriched.types.labels), None)
        if start is None:
            return None
        unique = unique[start:]
    if previous is not None and not unique:
        return previous
    first = unique[0].enriched if previous is None else None
    complaint_ids = (list(previous.complaint_ids) if previous else []) + [r.enriched.complaint.complaint_id for r in unique]
    reporter_keys = sorted(set(previous.reporter_keys if previous else [])
                           | {r.enriched.complaint.reporter_key for r in unique if r.enriched.complaint.reporter_key})
    type_counts: Counter = Counter()
    if previous:
        for rank, label in enumerate(previous.pollution_types):
            type_counts[label] += len(previous.pollution_types) - rank  # keep the old order as a prior
    for report in unique:
        type_counts.update(report.enriched.types.labels)
    pollution_types = [label for label, _ in sorted(type_counts.items(), key=lambda item: (-item[1], item[0]))]
    signals = set(signals_from_reasons(previous.reasons)) if previous else set()
    for report in unique:
        signals |= report.signals
    region = _deepest_region([previous.region if previous else None] + [r.enriched.region.as_contract() for r in unique])
    department_source = next((r.enriched for r in unique if r.enriched.department), None)
    first_seen_ms = previous.first_seen_ms if previous else first.complaint.received_at_ms
    last_seen_ms = max([previous.last_seen_ms if previous else 0] + [r.enriched.complaint.received_at_ms for r in unique])
    report_count = len(complaint_ids)
    score, tier, reasons, campaigns = score_matter(
        signals, pollution_types, region, report_count, len(reporter_keys), first_seen_ms, last_seen_ms,
        max(as_of_ms, last_seen_ms), weights)
    entities = sorted(set(previous.matter_entities if previous else []) | {e for r in unique for e in r.entities})
    cluster_id = previous.cluster_id if previous else first.cluster_id
    return Lead(
        lead_id=lead_id_for(cluster_id),
        cluster_id=cluster_id,
        first_complaint_id=previous.first_complaint_id if previous else first.complaint.complaint_id,
        complaint_ids=complaint_ids,
        report_count=report_count,
        reporter_keys=reporter_keys,
        distinct_reporters=len(reporter_keys),
        first_seen_ms=first_seen_ms,
        last_seen_ms=last_seen_ms,
        pollution_types=pollution_types,
        region=region,
        department=(previous.department if previous and previous.department else
                    department_source.department if department_source else None),
        routing_rule=(previous.routing_rule if previous and previous.routing_rule else
                      department_source.routing_rule if department_source else None),
        score=score,
        tier=tier,
        reasons=reasons,
        campaigns=campaigns,
        summary=previous.summary if previous else _summary(first.complaint.text),
        matter_signature=list(previous.matter_signature) if previous else list(unique[0].signature),
        matter_entities=entities,
        updated_at_ms=last_seen_ms,
        channel=previous.channel if previous else first.complaint.channel,
        deadline_ms=(previous.deadline_ms if previous and previous.deadline_ms else
                     assignment_deadline_ms(first_seen_ms, previous.channel if previous else first.complaint.channel,
                                            load_deadline_rules())),
        jurisdiction_adcode=previous.jurisdiction_adcode if previous else first.complaint.jurisdiction_adcode,
        joins=((tuple(previous.joins) if previous else ()) + tuple(r.join for r in unique if r.join))[-MAX_JOINS:],
    )


def rescore_lead(lead: Lead, as_of_ms: int, weights: ScoringWeights) -> Lead:
    """The lead scored again as of ``as_of_ms`` (recency moves with it; its signals do not)."""
    score, tier, reasons, campaigns = score_matter(
        set(signals_from_reasons(lead.reasons)), lead.pollution_types, lead.region, lead.report_count,
        lead.distinct_reporters, lead.first_seen_ms, lead.last_seen_ms, max(as_of_ms, lead.last_seen_ms), weights)
    return lead._replace(score=score, tier=tier, reasons=reasons, campaigns=campaigns)


def lead_to_avro_dict(lead: Lead) -> Dict:
    """The lead as a dict of its fields, the sketch as a list (the JSON of ``envleads batch
    --leads``, and ``lead.v1``–``v3`` on Kafka; :func:`lead_to_wire_record` gives ``lead.v4`` and
    later). It
    holds no identity by construction."""
    record = lead._asdict()
    record["reasons"] = [reason._asdict() for reason in lead.reasons]
    record["joins"] = [join._asdict() for join in lead.joins]
    return record


def lead_to_wire_record(lead: Lead) -> Dict:
    """The lead as the lead topic's newest schema (``lead.v5``) carries it: the sketch packed in
    ``matter_sketch`` (bytes) and ``matter_signature`` left empty, since an Avro array of 256 longs
    cost ~30 times as much to encode and decode. A signature that is not one of 32-bit slots (the
    older MinHash kind) stays in the array. :func:`lead_to_avro_dict` keeps the list form for JSON."""
    record = lead_to_avro_dict(lead)
    try:
        record["matter_sketch"] = _packed_u4(lead.matter_signature)
        record["matter_signature"] = []
    except OverflowError:
        record["matter_sketch"] = None
    return record


def _packed_u4(values: List[int]) -> bytes:
    """Unsigned 32-bit little-endian slots (OverflowError for any other value); ``array`` packs a
    list of ints in a third of numpy's time, and every lead written is packed."""
    packed = array.array("I", values)
    if packed.itemsize != 4:
        return np.asarray(values, dtype="<u4").tobytes()
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def lead_from_avro_dict(record: Dict) -> Lead:
    """A lead from a decoded record of any lead schema version (or from a JSON line of
    :func:`lead_to_avro_dict`)."""
    fields = {name: record.get(name) for name in Lead._fields}
    fields["reasons"] = [ScoreReason(r["factor"], r["points"], r["detail"]) for r in record.get("reasons", [])]
    fields["joins"] = tuple(ReportJoin(j["complaint_id"], j["evidence"], j.get("shared"), j["similarity"])
                            for j in record.get("joins") or ())
    for name in ("complaint_ids", "reporter_keys", "pollution_types", "campaigns", "matter_signature", "matter_entities"):
        fields[name] = list(fields[name] or [])
    sketch = record.get("matter_sketch")
    if sketch and len(sketch) % 4 == 0:
        fields["matter_signature"] = np.frombuffer(sketch, dtype="<u4").tolist()
    # a sketch of broken length is left out: the matter is then restored by its names only
    # (``restore_lead``), rather than the whole lead being skipped as unreadable
    return Lead(**fields)


# --------------------------------------------------------------------------------------------
# Repeat detection steps shared by the bounded and the streaming stage
# --------------------------------------------------------------------------------------------

def block_of_complaint(enriched: EnrichedComplaint) -> str:
    """The blocking key of a complaint: its region's city, or else its intake jurisdiction's."""
    return blocking_key(enriched.region.adcode if enriched.region else None,
                        enriched.complaint.jurisdiction_adcode)


def scope_of_complaint(enriched: EnrichedComplaint) -> str:
    """Where a complaint of the ``"unknown"`` key looks for its matter (its province, or anywhere)."""
    return unplaced_scope(enriched.region.adcode if enriched.region else None, enriched.complaint.jurisdiction_adcode)


def _lead_adcode(lead: Lead) -> Optional[str]:
    return lead.region.get("adcode") if lead.region else None


def block_of_lead(lead: Lead) -> str:
    """The blocking key a lead's matter lives under: as :func:`block_of_complaint` gives its first
    report's (its region's city, or else its intake jurisdiction's; leads written before lead.v3
    carry no jurisdiction)."""
    return blocking_key(_lead_adcode(lead), lead.jurisdiction_adcode)


def lead_in_scope(lead: Lead, scope: str) -> bool:
    """Whether an unplaced complaint of ``scope`` may report the lead's matter."""
    return in_scope(_lead_adcode(lead) or lead.jurisdiction_adcode, scope)


def restore_lead(index: MatterIndex, lead: Lead) -> bool:
    """Re-creates a lead's matter in ``index`` so that a repeat attaches to the existing lead.

    Carries what the lead knows of its matter: sketch, names, types, region (reports from another
    county stay out), reporter keys (the same reporter writing again is evidence) and complaint ids
    (a redelivered report is recognised, not counted again). A lead whose signature is not a sketch
    of the index's configuration (written before leads carried sketches, or with another sketch
    size) is restored by its names only. Returns False, leaving the index alone, for a lead with
    neither a comparable sketch nor names: it cannot be matched, only superseded.
    """
    comparable = is_sketch(signature_from_list(lead.matter_signature), index.config.sketch_size)
    if not comparable and not lead.matter_entities:
        return False
    index.restore_matter(lead.cluster_id, lead.first_complaint_id, lead.last_seen_ms,
                         lead.matter_signature if comparable else [], lead.matter_entities,
                         first_seen_ms=lead.first_seen_ms, report_count=lead.report_count,
                         types=lead.pollution_types, region_adcode=_lead_adcode(lead),
                         reporter_keys=lead.reporter_keys, complaint_ids=lead.complaint_ids)
    return True


def seed_index(index: MatterIndex, leads: Iterable[Lead]) -> Tuple[int, int]:
    """Restores prior leads not already in ``index``; returns (restored, unrestorable).

    Leads whose matter already left the window are restored too: ``assign`` never joins them, and
    the index's ``expire`` drops them.
    """
    restored = unrestorable = 0
    for lead in leads:
        if lead.cluster_id in index:
            continue
        if restore_lead(index, lead):
            restored += 1
        else:
            unrestorable += 1
    return restored, unrestorable


def report_matter(index: MatterIndex, enriched: EnrichedComplaint, weights: ScoringWeights,
                  across: Optional[Dict[str, MatterIndex]] = None) -> Tuple[MatterReport, Assignment]:
    """Assigns one complaint to its matter in ``index`` (updated in place) and builds its report.

    The per-complaint step of both forms of repeat detection: matter features, assignment, the
    report's scoring signals. The bounded form calls it in event-time order per blocking key, the
    streaming form in arrival order.

    Args:
        index: the blocking key's matter index.
        enriched: the complaint, classified and with its region resolved.
        weights: scoring weights (the signals are keys of the weights file).
        across: for a complaint of no known city, the indexes of the keys it is assigned across
            (:func:`assign_unplaced`; ``index`` is then their ``"unknown"`` key's).

    Returns:
        The report (complaint with ``cluster_id`` and ``duplicate_of`` set) and the assignment.
    """
    complaint = enriched.complaint
    features = complaint_features(enriched, index.config)
    if across is None:
        assignment = index.assign(complaint.complaint_id, complaint.received_at_ms, features, complaint.reporter_key)
    else:
        assignment = assign_unplaced(across, scope_of_complaint(enriched), complaint.complaint_id,
                                     complaint.received_at_ms, features, complaint.reporter_key, index.config)[1]
    return (matter_report(enriched, features, assignment.cluster_id, assignment.duplicate_of, weights,
                          report_join(complaint.complaint_id, assignment)), assignment)


def report_join(complaint_id: str, assignment: Assignment) -> Optional[ReportJoin]:
    """Why the complaint joined its matter, for the lead; None for a new matter or a redelivery."""
    if assignment.is_new_matter or assignment.duplicate_of is None or assignment.matched_on == "redelivery":
        return None
    return ReportJoin(complaint_id, assignment.matched_on, assignment.shared, float(assignment.similarity))


def complaint_features(enriched: EnrichedComplaint, config) -> MatterFeatures:
    """The repeat-detection features of one complaint (sketch, names, place, types), unless an
    earlier stage computed them already."""
    if enriched.matter_features is not None:
        return enriched.matter_features
    complaint = enriched.complaint
    return matter_features(complaint.text, complaint.title, enriched.tokens, enriched.region.adcode,
                           enriched.types.labels, config)


def matter_report(enriched: EnrichedComplaint, features: MatterFeatures, cluster_id: str, duplicate_of: Optional[str],
                  weights: ScoringWeights, join: Optional[ReportJoin] = None) -> MatterReport:
    """A complaint's report to the matter ``cluster_id``, with its scoring signals.

    A matter's first report is never a repeat of itself, whatever ``duplicate_of`` says (a
    redelivered or replayed first report).
    """
    complaint = enriched.complaint
    signals = complaint_signals(f"{complaint.title}\n{complaint.text}", complaint.received_at_ms,
                                bool(features.entities), weights)
    if duplicate_of == complaint.complaint_id:
        duplicate_of = None
    return MatterReport(enriched._replace(cluster_id=cluster_id, duplicate_of=duplicate_of, matter_features=None),
                        frozenset(signals), signature_to_list(features.signature), list(features.entities),
                        join if duplicate_of is not None else None)


def event_order(complaints: Iterable[EnrichedComplaint]) -> List[EnrichedComplaint]:
    """Complaints in event-time order, ties by complaint id: the order a blocking key's complaints
    are assigned in, so that a rerun assigns the same matters."""
    return sorted(complaints, key=lambda e: (e.complaint.received_at_ms, e.complaint.complaint_id))


def assign_in_order(index: MatterIndex, complaints: Iterable[EnrichedComplaint], weights: ScoringWeights,
                    across: Optional[Dict[str, MatterIndex]] = None) -> List[Tuple[MatterReport, Assignment]]:
    """:func:`report_matter` over complaints in :func:`event_order`, as the bounded stage runs
    one blocking key (``across``: one scope's unplaced complaints)."""
    return [report_matter(index, enriched, weights, across) for enriched in event_order(complaints)]


def scope_indexes(scope: str, city_states: Iterable[Tuple[str, dict]], prior_by_block: Dict[str, List[Lead]],
                  config) -> Dict[str, MatterIndex]:
    """The indexes a scope's unplaced complaints are assigned across (:func:`assign_unplaced`):
    the final state of every city key of the scope, the scope's prior leads that no city key held
    (their city had no complaint in this run) under their own key, and the ``"unknown"`` key's."""
    indexes = KeyIndexes({UNKNOWN_BLOCK: MatterIndex(config, UNKNOWN_BLOCK)})
    for block, state in sorted(city_states, key=lambda kv: kv[0]):
        if in_scope(block, scope):
            indexes[block] = MatterIndex.from_state(state, config, block)
    for block in sorted(prior_by_block):
        if in_scope(block, scope):
            index = indexes.get(block) or indexes.setdefault(block, MatterIndex(config, block))
            seed_index(index, (lead for lead in prior_by_block[block] if lead_in_scope(lead, scope)))
    return indexes


def group_leads_by_block(leads: Iterable[Lead]) -> Dict[str, List[Lead]]:
    grouped: Dict[str, List[Lead]] = {}
    for lead in leads:
        grouped.setdefault(block_of_lead(lead), []).append(lead)
    return grouped
