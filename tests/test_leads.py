"""Leads: assignment deadlines, idempotent merges, schema evolution of the lead record."""
import io
import os
from datetime import datetime, timedelta, timezone

import fastavro
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
    assert decoded["channel"] is None and decoded["deadline_ms"] is None
    assert lead_from_avro_dict(decoded).lead_id == "lead-m-1"
    assert schemas.check_compatibility(v1, schemas.schema_for(schemas.LEADS)) == []
