"""What leaves the process: enriched complaints and dead letters as contract JSON and Avro dicts.

The batch contract (``envleads batch``) is stable: its fields are listed in the README and only
ever added to. Identity never reaches these functions (it is gone after decoding).
"""
from __future__ import annotations

import base64
import json
from typing import Any, Dict

from envleads.records import DeadLetter, EnrichedComplaint

CONTRACT_FIELDS = ("complaint_id", "environmental", "pollution_types", "primary_type", "type_confidence",
                   "region", "cluster_id", "duplicate_of")


def enriched_to_contract(enriched: EnrichedComplaint) -> Dict[str, Any]:
    """One output line of ``envleads batch``: the contract fields, then documented extras."""
    types = enriched.types
    return {
        "complaint_id": enriched.complaint.complaint_id,
        "environmental": bool(types.labels),
        "pollution_types": list(types.labels),
        "primary_type": types.primary,
        "type_confidence": round(float(types.confidence), 4),
        "region": enriched.region.as_contract(),
        "cluster_id": enriched.cluster_id,
        "duplicate_of": enriched.duplicate_of,
        # extras (not part of the stable contract's required set)
        "needs_review": bool(types.needs_review),
        "region_confidence": round(float(enriched.region.confidence), 4),
        "department": enriched.department,
        "routing_rule": enriched.routing_rule,
        "reporter_key": enriched.complaint.reporter_key,
        "received_at": enriched.complaint.received_at,
        "model_version": types.model_version,
        "division_table_version": enriched.region.table_version,
    }


def enriched_to_avro_dict(enriched: EnrichedComplaint) -> Dict[str, Any]:
    complaint, types, region = enriched.complaint, enriched.types, enriched.region
    source = complaint.source
    return {
        "complaint_id": complaint.complaint_id,
        "received_at": complaint.received_at,
        "received_at_ms": complaint.received_at_ms,
        "channel": complaint.channel,
        "reporter_key": complaint.reporter_key,
        "title": complaint.title,
        "text": complaint.text,
        "environmental": bool(types.labels),
        "pollution_types": list(types.labels),
        "primary_type": types.primary,
        "type_confidence": float(types.confidence),
        "needs_review": bool(types.needs_review),
        "model_version": types.model_version,
        "region": region.as_contract(),
        "region_confidence": float(region.confidence),
        "region_evidence": region.evidence,
        "division_table_version": region.table_version,
        "department": enriched.department,
        "routing_rule": enriched.routing_rule,
        "cluster_id": enriched.cluster_id,
        "duplicate_of": enriched.duplicate_of,
        "source_topic": source.topic if source else None,
        "source_partition": source.partition if source else None,
        "source_offset": source.offset if source else None,
    }


def dead_letter_to_avro_dict(dead: DeadLetter, rejected_at_ms: int) -> Dict[str, Any]:
    source = dead.source
    return {
        "stage": dead.stage, "reason": dead.reason, "detail": dead.detail, "event_id": dead.event_id,
        "original": dead.original, "rejected_at_ms": rejected_at_ms,
        "source_topic": source.topic if source else None,
        "source_partition": source.partition if source else None,
        "source_offset": source.offset if source else None,
    }


def dead_letter_to_json(dead: DeadLetter) -> str:
    """A dead-letter file line: reason and facts, with the original bytes in base64."""
    record = {"stage": dead.stage, "reason": dead.reason, "detail": dead.detail, "event_id": dead.event_id,
              "original_base64": base64.b64encode(dead.original).decode("ascii")}
    if dead.source:
        record.update(source_topic=dead.source.topic, source_partition=dead.source.partition,
                      source_offset=dead.source.offset)
    return json.dumps(record, ensure_ascii=False)
