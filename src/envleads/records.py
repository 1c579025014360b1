"""Typed records that flow between the stages.

The wire contract is the Avro schema in ``schemas/``; the ``to_avro_dict`` functions beside each
record decide what leaves the process. A reporter's identity never gets past
:class:`Complaint`: it is replaced by a pseudonymous ``reporter_key`` when the event is decoded.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Tuple

POLLUTION_LABELS: Tuple[str, ...] = (
    "air", "water", "noise", "solid_waste", "soil", "radiation", "ecological", "other",
)


class KafkaCoordinates(NamedTuple):
    """Where an event was read from, so every output can be traced back to its input."""

    topic: str
    partition: int
    offset: int
    # the Beam source's: the first offset this record accounts for, i.e. offsets [span_start, offset)
    # hold no record (transaction markers), so the committer can chain records without gaps
    span_start: Optional[int] = None


class RawEvent(NamedTuple):
    """An undecoded event: its bytes, how they are encoded, where they came from."""

    payload: bytes
    fmt: str  # "json" or "avro"
    source: Optional[KafkaCoordinates] = None


class DeadLetter(NamedTuple):
    """An input that a stage could not process: reason code, short facts and the original bytes."""

    stage: str
    reason: str  # a code such as "invalid_json", "empty_text"
    detail: str  # short facts (sizes, field names); never complaint text or identity
    event_id: Optional[str]
    original: bytes
    source: Optional[KafkaCoordinates] = None
    # digest of the original bytes, for a later stage's dead letter (``envleads.failures``), which
    # has the complaint but not its bytes: they are found by it; never serialised
    content_digest: str = ""


class Complaint(NamedTuple):
    """A validated complaint; identity already replaced by ``reporter_key``, text already masked."""

    complaint_id: str
    received_at: str  # ISO-8601 as given
    received_at_ms: int  # epoch milliseconds, the event time
    title: str
    text: str
    channel: Optional[str]
    reporter_key: Optional[str]
    jurisdiction_adcode: Optional[str] = None
    source: Optional[KafkaCoordinates] = None
    # digest of the event's bytes: a redelivery has the same, another complaint under a used id
    # another (dead letter ``duplicate_id_conflict``); never serialised
    content_digest: str = ""


class SegmentedComplaint(NamedTuple):
    """A complaint and its words; ``doc`` keeps the normalised title/text split so the classifier
    reuses this segmentation instead of segmenting the complaint a second time."""

    complaint: Complaint
    tokens: List[str]
    doc: Optional[Any] = None  # envleads.text.SegmentedDoc (kept untyped: records import no jieba)


class TypePrediction(NamedTuple):
    """Pollution types for one complaint; an empty ``labels`` list means not environmental."""

    labels: List[str]
    primary: Optional[str]
    confidence: float
    needs_review: bool
    model_version: str


class RegionResolution(NamedTuple):
    """The most specific division the text supports, with how sure and from where."""

    province: Optional[str]
    city: Optional[str]
    county: Optional[str]
    adcode: Optional[str]
    level: Optional[str]
    confidence: float
    evidence: Optional[str]  # the matched span of text
    table_version: str

    def as_contract(self) -> Optional[dict]:
        if self.adcode is None:
            return None
        return {"province": self.province, "city": self.city, "county": self.county,
                "adcode": self.adcode, "level": self.level}


class EnrichedComplaint(NamedTuple):
    """A complaint after classification, region resolution and repeat detection."""

    complaint: Complaint
    tokens: List[str]
    types: TypePrediction
    region: RegionResolution
    department: Optional[str] = None
    routing_rule: Optional[str] = None
    cluster_id: Optional[str] = None
    duplicate_of: Optional[str] = None
    # repeat-detection features (``repeats.MatterFeatures``) when a stateless stage computed them
    # ahead of the keyed one, as the local stream engine's enrichment workers do; never serialised
    matter_features: Optional[object] = None
    # the Avro record's bytes before and after the repeat stage's fields, when an enrichment worker
    # encoded them (``pipelines.rounds.outputs.enriched_wire_parts``); never serialised
    wire_parts: Optional[Tuple[bytes, bytes]] = None


class ScoreReason(NamedTuple):
    factor: str  # the weight key in scoring.json that produced this contribution
    points: float
    detail: str


class ReportJoin(NamedTuple):
    """Why a repeat joined its matter (``lead.v5`` ``joins``): an inspector checks the merge by it."""

    complaint_id: str
    evidence: str  # Assignment.matched_on: text+entity, text+trade_name, text+location, text+descriptor, text ...
    shared: Optional[str]  # the shared name as "kind:name", or None when no name joined it
    similarity: float


class Lead(NamedTuple):
    """One lead per matter; re-emitted with the same ``lead_id`` when a repeat arrives."""

    lead_id: str
    cluster_id: str
    first_complaint_id: str
    complaint_ids: List[str]
    report_count: int
    reporter_keys: List[str]
    distinct_reporters: int
    first_seen_ms: int
    last_seen_ms: int
    pollution_types: List[str]
    region: Optional[dict]
    department: Optional[str]
    routing_rule: Optional[str]
    score: float
    tier: str
    reasons: List[ScoreReason]
    campaigns: List[str]
    summary: str  # masked text of the first complaint, shortened
    matter_signature: List[int]
    matter_entities: List[str]
    updated_at_ms: int
    channel: Optional[str] = None  # of the first report (lead.v2)
    deadline_ms: Optional[int] = None  # assignment deadline (lead.v2)
    jurisdiction_adcode: Optional[str] = None  # intake office of the first report (lead.v3)
    joins: Tuple[ReportJoin, ...] = ()  # why each repeat joined, the most recent MAX_JOINS (lead.v5)
