"""The Avro contract: every schema parses, round-trips, and evolves only compatibly."""
import copy
import io
import json
import os

import fastavro
import pytest

from envleads import schemas


@pytest.mark.parametrize("subject", [schemas.RAW, schemas.ENRICHED, schemas.LEADS, schemas.DEAD_LETTER])
def test_every_field_is_documented(subject):
    def check(record):
        assert record.get("doc"), record["name"]
        for field in record["fields"]:
            assert field.get("doc"), f"{record['name']}.{field['name']}"
            for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    check(branch)
                if isinstance(branch, dict) and branch.get("type") == "array" and isinstance(branch["items"], dict):
                    check(branch["items"])
    path = os.path.join(schemas.SCHEMA_DIR, json.load(open(os.path.join(schemas.SCHEMA_DIR, "registry.json")))
                        ["schemas"][str(schemas.latest_schema_id(subject))]["file"])
    check(json.load(open(path, encoding="utf-8")))


@pytest.mark.parametrize("subject", [schemas.RAW, schemas.ENRICHED, schemas.LEADS, schemas.DEAD_LETTER])
def test_generated_records_round_trip(subject):
    for record in fastavro.utils.generate_many(schemas.schema_for(subject), 20):
        assert schemas.decode(subject, schemas.encode(subject, record)) == record


def _raw_schema_json():
    with open(os.path.join(schemas.SCHEMA_DIR, "raw_complaint.v1.avsc"), encoding="utf-8") as handle:
        return json.load(handle)


def test_reader_on_a_new_schema_reads_data_written_with_the_previous_one():
    old = fastavro.parse_schema(_raw_schema_json())
    new_json = _raw_schema_json()
    new_json["fields"].append({"name": "language", "type": "string", "default": "zh", "doc": "added in v2"})
    new = fastavro.parse_schema(new_json)
    assert schemas.check_compatibility(old, new) == []
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, old, {"complaint_id": "c", "received_at": "2026-01-01T00:00:00+08:00", "text": "x"})
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, old, new)["language"] == "zh"


@pytest.mark.parametrize("breaking_change", ["field_without_default", "type_narrowed", "field_renamed"])
def test_breaking_changes_are_caught(breaking_change):
    old = fastavro.parse_schema(_raw_schema_json())
    new_json = copy.deepcopy(_raw_schema_json())
    if breaking_change == "field_without_default":
        new_json["fields"].append({"name": "language", "type": "string", "doc": "no default"})
    elif breaking_change == "type_narrowed":
        new_json["fields"][1]["type"] = "long"
    else:
        new_json["fields"][0]["name"] = "event_id"
    assert schemas.check_compatibility(old, fastavro.parse_schema(new_json)) != []
