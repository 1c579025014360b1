"""Leads: assignment deadlines, idempotent merges, schema evolution of the lead record."""
import io
import os
from datetime import datetime, timedelta, timezone

import fastavro
import numpy as np
import pytest

from envleads import schemas
from envleads.leads import DeadlineRules, assignment_deadline_ms, lead_from_avro_dict

CST = timezone(timedelta(hours=8))
RULES = DeadlineRules("test", {"phone": 2, "letter": 3}, 3, ("2026-10-01", "2026-10-02"))


def ms(*args):
    return int(datetime(*args, tzinfo=CST).timestamp() * 1000)


@pytest.mark.parametrize("received, channel, due", [
    (ms(2026, 11, 20, 22, 0), "phone", ms(2026, 11, 24, 23, 59, 59)),   # Friday night: Mon, Tue
    (ms(2026, 11, 21, 9, 0), "phone", ms(2026, 11, 24, 23, 59, 59)),    # Saturday: counts from Monday
    (ms(2026, 11, 23, 9, 0), "letter", ms(2026, 11, 26, 23, 59, 59)),   # Monday letter: three days
    (ms(2026, 11, 23, 9, 0), "wechat", ms(2026, 11, 26, 23, 59, 59)),   # unknown channel: the default
    (ms(2026, 9, 30, 9, 0), "phone", ms(2026, 10, 6, 23, 59, 59)),      # holidays do not count
])
def test_assignment_deadline_counts_working_days(received, channel, due):
    assert assignment_deadline_ms(received, channel, RULES) == due


def test_a_lead_written_with_schema_v1_is_read_with_v2_defaults():
    v1 = schemas.load_schema_file(os.path.join(schemas.SCHEMA_DIR, "lead.v1.avsc"))
    record = {"lead_id": "lead-m-1", "cluster_id": "m-1", "first_complaint_id": "c1", "complaint_ids": ["c1"],
              "report_count": 1, "distinct_reporters": 0, "first_seen_ms": 1, "last_seen_ms": 1,
              "pollution_types": ["air"], "score": 5.0, "tier": "low", "reasons": [], "summary": "",
              "updated_at_ms": 1}
    buffer = io.BytesIO()
    buffer.write(b"\x00\x00\x00\x00\x15")  # frame with schema id 21 (lead.v1)
    fastavro.schemaless_writer(buffer, v1, record)
    decoded = schemas.decode(schemas.LEADS, buffer.getvalue())
    assert decoded["channel"] is None and decoded["deadline_ms"] is None and decoded["jurisdiction_adcode"] is None
    assert lead_from_avro_dict(decoded).lead_id == "lead-m-1"
    assert schemas.check_compatibility(v1, schemas.schema_for(schemas.LEADS)) == []


def _framed(schema_id, schema, record):
    buffer = io.BytesIO()
    buffer.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def test_lead_v4_carries_the_sketch_as_bytes_and_reads_v3_arrays_the_same():
    from envleads.leads import lead_to_avro_dict, lead_to_wire_record

    v3 = schemas.load_schema_file(os.path.join(schemas.SCHEMA_DIR, "lead.v3.avsc"))
    assert schemas.check_compatibility(v3, schemas.schema_for(schemas.LEADS)) == []
    lead = _lead_of(_enriched("c1", 0, DYEING_1, "330110"))
    sketch = lead.matter_signature
    assert len(sketch) == 256 and max(sketch) <= 0xFFFFFFFF

    wire = lead_to_wire_record(lead)
    assert wire["matter_signature"] == [] and wire["matter_sketch"] == np.asarray(sketch, dtype="<u4").tobytes()
    v4_bytes = schemas.encode(schemas.LEADS, wire)
    v3_bytes = _framed(23, v3, lead_to_avro_dict(lead))  # as a pipeline before v4 wrote it
    assert len(v4_bytes) < len(v3_bytes)
    from_v4 = lead_from_avro_dict(schemas.decode(schemas.LEADS, v4_bytes))
    from_v3 = lead_from_avro_dict(schemas.decode(schemas.LEADS, v3_bytes))
    assert from_v4 == from_v3 == lead
    # the JSON form (batch --leads) keeps the list, and reads back the same
    assert lead_from_avro_dict(lead_to_avro_dict(lead)) == lead


def test_a_sketch_of_broken_length_leaves_the_lead_readable_without_a_signature():
    from envleads.leads import lead_to_wire_record

    wire = lead_to_wire_record(_lead_of(_enriched("c1", 0, DYEING_1, "330110")))
    wire["matter_sketch"] = wire["matter_sketch"][:-1]
    lead = lead_from_avro_dict(schemas.decode(schemas.LEADS, schemas.encode(schemas.LEADS, wire)))
    assert lead.lead_id == wire["lead_id"] and lead.matter_signature == []


def test_a_signature_of_the_older_minhash_kind_stays_in_the_array():
    from envleads.leads import lead_to_wire_record

    lead = _lead_of(_enriched("c1", 0, DYEING_1, "330110"))
    minhash = lead._replace(matter_signature=[2 ** 40 + i for i in range(128)])
    wire = lead_to_wire_record(minhash)
    assert wire["matter_sketch"] is None and wire["matter_signature"] == minhash.matter_signature
    assert lead_from_avro_dict(schemas.decode(schemas.LEADS, schemas.encode(schemas.LEADS, wire))) == minhash


# ---- the repeat-detection steps both pipeline forms share -----------------------------------------

def _enriched(complaint_id, day, text, adcode, reporter=None, jurisdiction=None):
    from envleads.records import Complaint, EnrichedComplaint, RegionResolution, TypePrediction

    received = ms(2026, 3, 1, 10, 0) + day * 86_400_000
    complaint = Complaint(complaint_id, "", received, "", text, "web", reporter, jurisdiction)
    region = RegionResolution(None, None, None, adcode, "county" if adcode else None, 0.9, None, "test")
    return EnrichedComplaint(complaint, [], TypePrediction(["water"], "water", 0.9, False, "test"), region)


DYEING_1 = "杭州市余杭区仁和街道永盛印染厂每天夜里往河里偷排黑色废水，河水发臭，鱼都死了。"
DYEING_2 = "再次投诉余杭区仁和街道永盛印染厂，晚上偷偷往河里排黑水，河道又黑又臭。"
NOISE_1 = "楼下那台机器整夜响个不停，吵得睡不着。"
NOISE_2 = "晚上的机器声还是很吵。"


def _lead_of(*enriched):
    from envleads.leads import merge_lead, report_matter
    from envleads.repeats import MatterIndex, load_repeat_config
    from envleads.scoring import load_scoring_weights

    weights = load_scoring_weights()
    index = MatterIndex(load_repeat_config(), "330100")
    reports = [report_matter(index, e, weights)[0] for e in enriched]
    lead = merge_lead(None, reports, max(e.complaint.received_at_ms for e in enriched), weights)
    # through the wire format, as a restarted pipeline reads it from the lead topic
    return lead_from_avro_dict(schemas.decode(schemas.LEADS, schemas.encode(schemas.LEADS, _to_avro(lead))))


def _to_avro(lead):
    from envleads.leads import lead_to_wire_record

    return lead_to_wire_record(lead)


def test_restore_lead_carries_region_reporters_and_complaint_ids():
    from envleads.leads import report_matter, restore_lead
    from envleads.repeats import MatterIndex, load_repeat_config
    from envleads.scoring import load_scoring_weights

    lead = _lead_of(_enriched("n1", 0, NOISE_1, "330110", reporter="rk-1"))
    weights = load_scoring_weights()
    index = MatterIndex(load_repeat_config(), "330100")
    assert restore_lead(index, lead)
    # same reporter, few words in common, same county: joins through the restored reporter key
    report, assignment = report_matter(index, _enriched("n2", 2, NOISE_2, "330110", reporter="rk-1"), weights)
    assert (report.enriched.cluster_id, assignment.matched_on) == (lead.cluster_id, "text+reporter")
    # the first report delivered again: its own matter, not a repeat of itself, not counted again
    report, assignment = report_matter(index, _enriched("n1", 0, NOISE_1, "330110", reporter="rk-1"), weights)
    assert (report.enriched.cluster_id, report.enriched.duplicate_of, assignment.matched_on) == (
        lead.cluster_id, None, "redelivery")
    # another county of the city: the restored region keeps it out, whatever the text
    other = MatterIndex(load_repeat_config(), "330100")
    restore_lead(other, lead)
    report, assignment = report_matter(other, _enriched("n3", 2, NOISE_1, "330106", reporter="rk-1"), weights)
    assert assignment.is_new_matter


def test_a_matter_placed_by_its_intake_jurisdiction_is_restored_under_the_same_key():
    """The text names no place, the receiving office does: after a restart (lead read back from
    the topic) the lead must be seeded into the key its repeats arrive under, not "unknown"."""
    from envleads.leads import block_of_complaint, block_of_lead, lead_in_scope

    first = _enriched("j1", 0, NOISE_1, None, jurisdiction="330110")
    lead = _lead_of(first)
    assert lead.jurisdiction_adcode == "330110"
    assert block_of_lead(lead) == block_of_complaint(first) == "330100"
    assert lead_in_scope(lead, "330000") and not lead_in_scope(lead, "320000")
    # a lead written before lead.v3 (no jurisdiction) keeps its old key
    assert block_of_lead(lead._replace(jurisdiction_adcode=None)) == "unknown"


def test_seed_index_skips_matters_already_held_and_counts_unrestorable_leads():
    from envleads.leads import seed_index
    from envleads.repeats import MatterIndex, load_repeat_config

    lead = _lead_of(_enriched("d1", 0, DYEING_1, "330110"))
    blank = lead._replace(lead_id="lead-m-blank", cluster_id="m-blank", matter_signature=[], matter_entities=[])
    index = MatterIndex(load_repeat_config(), "330100")
    assert seed_index(index, [lead, blank]) == (1, 1)
    assert seed_index(index, [lead]) == (0, 0)


def test_blocking_keys_of_complaints_and_leads():
    from envleads.leads import block_of_complaint, block_of_lead, scope_of_complaint

    assert block_of_complaint(_enriched("x", 0, NOISE_1, "330110")) == "330100"
    assert block_of_complaint(_enriched("x", 0, NOISE_1, None, jurisdiction="330102")) == "330100"
    assert block_of_complaint(_enriched("x", 0, NOISE_1, None)) == "unknown"
    assert scope_of_complaint(_enriched("x", 0, NOISE_1, None, jurisdiction="330000")) == "330000"
    assert block_of_lead(_lead_of(_enriched("d1", 0, DYEING_1, "330110"))) == "330100"


def test_a_lead_says_why_each_repeat_joined_and_v4_records_read_with_none():
    """lead.v5 ``joins``: the report, the evidence, the shared name and the text similarity, kept
    through the wire format and the JSON form; a v4 record reads with no joins."""
    from envleads.leads import lead_to_avro_dict

    lead = _lead_of(_enriched("c1", 0, DYEING_1, "330110"), _enriched("c2", 3, DYEING_2, "330110"))
    assert lead.complaint_ids == ["c1", "c2"]
    (join,) = lead.joins
    assert join.complaint_id == "c2" and join.evidence.startswith("text+") and 0 < join.similarity <= 1
    assert join.shared and join.shared.startswith("company:") and "永盛" in join.shared
    assert lead_from_avro_dict(lead_to_avro_dict(lead)) == lead
    v4 = schemas.load_schema_file(os.path.join(schemas.SCHEMA_DIR, "lead.v4.avsc"))
    assert schemas.check_compatibility(v4, schemas.schema_for(schemas.LEADS)) == []
    v4_record = {k: v for k, v in _to_avro(lead).items() if k != "joins"}
    assert lead_from_avro_dict(schemas.decode(schemas.LEADS, _framed(24, v4, v4_record))).joins == ()


def test_joins_are_bounded_to_the_most_recent():
    from envleads.leads import MAX_JOINS, merge_lead, report_matter
    from envleads.repeats import MatterIndex, load_repeat_config
    from envleads.scoring import load_scoring_weights

    weights = load_scoring_weights()
    index = MatterIndex(load_repeat_config(), "330100")
    texts = [DYEING_1, DYEING_2] * (MAX_JOINS // 2 + 3)
    reports = [report_matter(index, _enriched(f"c{i:03d}", i % 80, text, "330110"), weights)[0]
               for i, text in enumerate(texts)]
    lead = merge_lead(None, reports, ms(2026, 6, 1, 0, 0), weights)
    assert len(lead.complaint_ids) == len(texts)
    assert len(lead.joins) == MAX_JOINS
    assert lead.joins[-1].complaint_id == reports[-1].enriched.complaint.complaint_id
