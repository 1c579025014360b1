"""A round's outputs as Kafka records: the :class:`Topics` of a deployment, the Avro encoding of
enriched complaints (spliced from the parts the enrichment workers encoded), leads, dead letters
and state changes. They are sent by ``kafka_edge/write.py`` (at-least-once, acknowledged; its
docstring says how).
"""
from __future__ import annotations

import functools
import io
import time
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import fastavro
from fastavro.io.binary_encoder import BinaryEncoder

from envleads import schemas
from envleads.config import DEFAULT_TOPICS
from envleads.decode import content_digest
from envleads.failures import internal_error, with_original
from envleads.leads import MatterReport, lead_to_wire_record
from envleads.pipelines.kafka_edge.write import OutputRecord, send_acknowledged
from envleads.pipelines.rounds.store import state_records
from envleads.pipelines.transforms import ENCODE_ENRICHED_STAGE, ENCODE_LEADS_STAGE, distinct_complaints
from envleads.records import DeadLetter, EnrichedComplaint, Lead, RawEvent
from envleads.serialize import dead_letter_to_avro_dict, enriched_to_avro_dict

if TYPE_CHECKING:
    from envleads.pipelines.rounds.engine import RoundOutputs


class Topics:
    """Topic names of one deployment (defaults match the embedded broker's)."""

    def __init__(self, raw: str = DEFAULT_TOPICS["raw"], enriched: str = DEFAULT_TOPICS["enriched"],
                 leads: str = DEFAULT_TOPICS["leads"], dead_letter: str = DEFAULT_TOPICS["dead_letter"],
                 state: Optional[str] = None):
        self.raw, self.enriched, self.leads, self.dead_letter = raw, enriched, leads, dead_letter
        # the keyed state's changelog (:class:`StateChanges`), beside the leads it belongs to
        self.state = state or f"{leads}.state"


def _encode_enriched(report) -> bytes:
    enriched = report.enriched
    if enriched.wire_parts is None:
        return schemas.encode(schemas.ENRICHED, enriched_to_avro_dict(enriched))
    head, tail = enriched.wire_parts
    buffer = io.BytesIO()
    buffer.write(head)
    encoder = BinaryEncoder(buffer)
    encoder.write_utf8(enriched.cluster_id)
    if enriched.duplicate_of is None:
        encoder.write_index(0, None)
    else:
        encoder.write_index(1, None)
        encoder.write_utf8(enriched.duplicate_of)
    buffer.write(tail)
    return buffer.getvalue()


# The enriched record's fields that only the repeat stage fills: an enrichment worker encodes the
# fields before and after them, and the keyed stage splices them in (a twentieth of its CPU was
# encoding the other twenty-odd fields, which the workers have to spare).
_REPEAT_FIELDS = ("cluster_id", "duplicate_of")


@functools.lru_cache(maxsize=None)
def _enriched_part_schemas():
    """The fields before and after the repeat stage's in the newest enriched schema, each as a
    record schema with its field names (Avro encodes a record as its fields one after another),
    and what each part's bytes start with (the frame, nothing)."""
    fields = schemas.schema_for(schemas.ENRICHED)["fields"]
    names = [field["name"] for field in fields]
    at = names.index(_REPEAT_FIELDS[0])
    if tuple(names[at:at + len(_REPEAT_FIELDS)]) != _REPEAT_FIELDS or \
            [field["type"] for field in fields[at:at + 2]] != ["string", ["null", "string"]]:
        return None  # a schema this splice does not know: records are encoded whole

    def part(name: str, part_fields):
        return (fastavro.parse_schema({"type": "record", "name": name, "fields": part_fields}),
                [field["name"] for field in part_fields])

    return (schemas.frame_header(schemas.ENRICHED), b""), \
        (part("EnrichedHead", fields[:at]), part("EnrichedTail", fields[at + len(_REPEAT_FIELDS):]))


def enriched_wire_parts(enriched: EnrichedComplaint) -> Optional[Tuple[bytes, bytes]]:
    """The framed Avro encoding of ``enriched`` before and after its repeat-stage fields (for
    :func:`_encode_enriched` to splice them in), or None when the schema does not allow it."""
    split = _enriched_part_schemas()
    if split is None:
        return None
    prefixes, parts = split
    record = enriched_to_avro_dict(enriched)
    encoded = []
    for prefix, (schema, names) in zip(prefixes, parts):
        buffer = io.BytesIO()
        buffer.write(prefix)
        fastavro.schemaless_writer(buffer, schema, {name: record[name] for name in names})
        encoded.append(buffer.getvalue())
    return encoded[0], encoded[1]


def _encode_lead(lead: Lead) -> bytes:
    return schemas.encode(schemas.LEADS, lead_to_wire_record(lead))


def _encode_dead_letter(dead: DeadLetter) -> bytes:
    return schemas.encode(schemas.DEAD_LETTER, dead_letter_to_avro_dict(dead, int(time.time() * 1000)))


def with_originals(dead_letters: List[DeadLetter], events: Sequence[RawEvent]) -> List[DeadLetter]:
    """The dead letters, those of a stage after decode given their event's bytes (by content
    digest among the round's ``events``)."""
    if all(dead.original or not dead.content_digest for dead in dead_letters):
        return dead_letters
    originals = {content_digest(event.payload): event.payload for event in events}
    return [with_original(dead, originals) for dead in dead_letters]


def output_records(topics: Topics, outputs: RoundOutputs, events: Sequence[RawEvent] = ()
                   ) -> Tuple[List[OutputRecord], List[Tuple[Lead, bytes]]]:
    """A round's outputs as ``(topic, key, Avro value)`` records, and ``(lead, Avro value)`` of its
    leads (for the :class:`LeadStore`, once the broker acknowledged them).

    An enriched record that fails to encode, or a lead (then each of the round's reports of its
    matter), is a dead letter ``internal_error`` instead, with its bytes from ``events``, appended
    to ``outputs.dead_letters`` (so the round's counts include it).
    """
    records: List[OutputRecord] = []
    written_leads = []
    failed: List[DeadLetter] = []
    for report in outputs.enriched:
        value = encode_or_dead_letter(_encode_enriched, report, ENCODE_ENRICHED_STAGE, [report], failed)
        if value is not None:
            records.append((topics.enriched, report.enriched.complaint.complaint_id.encode("utf-8"), value))
    for lead in outputs.leads:
        value = encode_or_dead_letter(_encode_lead, lead, ENCODE_LEADS_STAGE,
                         [r for r in outputs.enriched if r.enriched.cluster_id == lead.cluster_id], failed)
        if value is not None:
            written_leads.append((lead, value))
            records.append((topics.leads, lead.lead_id.encode("utf-8"), value))
    outputs.dead_letters.extend(with_originals(failed, events))
    for dead in outputs.dead_letters:
        records.append((topics.dead_letter, dead.event_id.encode("utf-8") if dead.event_id else None,
                        _encode_dead_letter(dead)))
    records += state_records(topics.state, outputs.state)  # last: a restart finds the state of sent outputs
    return records, written_leads


def encode_or_dead_letter(encode: Callable[[Any], bytes], record, stage: str, reports: Sequence[MatterReport],
             failed: List[DeadLetter]) -> Optional[bytes]:
    """``encode(record)``, or None and the dead letters of ``reports``' complaints in ``failed``."""
    try:
        return encode(record)
    except Exception as error:  # noqa: BLE001 - one record must not stop the stream
        failed.extend(internal_error(stage, error, complaint) for complaint in distinct_complaints(reports))
        return None


def write_outputs(producer, topics: Topics, outputs: RoundOutputs, events: Sequence[RawEvent] = ()
                  ) -> List[Tuple[Lead, bytes]]:
    """Sends a round's outputs to their topics (kafka-python) and waits for the acknowledgements;
    returns ``(lead, Avro value)`` of the leads written, for the :class:`LeadStore`."""
    records, written_leads = output_records(topics, outputs, events)
    send_acknowledged(producer, records)
    return written_leads
