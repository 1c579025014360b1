"""One lead per matter: building, merging and serialising leads (pure functions).

A lead's key is derived from its matter's first complaint, so re-processing the same complaints
(a replay, a restart after a crash) produces the same key and updates the lead instead of adding a
second one. A lead is re-emitted whole when a repeat arrives (compacted-topic semantics: the last
record per key is the lead). Matters in which no report is environmental produce no lead.
"""
from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple

import numpy as np

from envleads.config import data_path, load_json_config
from envleads.records import EnrichedComplaint, Lead, ScoreReason
from envleads.scoring import ScoringWeights, score_matter, signals_from_reasons

SUMMARY_CHARS = 160
_LEVEL_DEPTH = {"province": 1, "city": 2, "county": 3}


class MatterReport(NamedTuple):
    """A report ready to join its matter's lead: the enriched complaint and what scoring needs."""

    enriched: EnrichedComplaint
    signals: FrozenSet[str]
    signature: List[int]
    entities: List[str]


_CST = timezone(timedelta(hours=8))


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


def assignment_deadline_ms(received_at_ms: int, channel: Optional[str], rules: DeadlineRules) -> int:
    """End of the last working day for assigning a complaint (China Standard Time).

    The count starts on the working day after receipt; weekends and the listed holidays do not
    count (numpy's business-day calendar does the arithmetic).
    """
    days = rules.working_days.get(channel or "", rules.default_working_days)
    received = datetime.fromtimestamp(received_at_ms / 1000, _CST).date()
    due = np.busday_offset(np.datetime64(received), days, roll="backward",
                           holidays=np.array(rules.holidays, dtype="datetime64[D]"))
    end_of_day = datetime.fromisoformat(str(due)).replace(hour=23, minute=59, second=59, tzinfo=_CST)
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
    again, so the merge is idempotent.
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
    if previous is None and not any(r.enriched.types.labels for r in unique):
        return None
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
    )


def lead_to_avro_dict(lead: Lead) -> Dict:
    """The lead as it leaves the process (schema ``lead.v1``); it holds no identity by construction."""
    record = lead._asdict()
    record["reasons"] = [reason._asdict() for reason in lead.reasons]
    return record


def lead_from_avro_dict(record: Dict) -> Lead:
    fields = {name: record.get(name) for name in Lead._fields}
    fields["reasons"] = [ScoreReason(r["factor"], r["points"], r["detail"]) for r in record.get("reasons", [])]
    for name in ("complaint_ids", "reporter_keys", "pollution_types", "campaigns", "matter_signature", "matter_entities"):
        fields[name] = list(fields[name] or [])
    return Lead(**fields)
