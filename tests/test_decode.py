"""Every kind of bad event becomes a dead letter with its reason and original bytes."""
import json

import pytest

from envleads import schemas
from envleads.decode import DecodeLimits, decode_event
from envleads.records import Complaint, DeadLetter

KEY = b"test-key"


def _event(**overrides):
    event = {"complaint_id": "c-1", "received_at": "2026-05-04T23:30:00+08:00", "title": "",
             "text": "工厂夜里偷排污水，河里发黑发臭", "channel": "web",
             "reporter": {"name": "赵小明", "phone": "13912345678", "id_number": None}}
    event.update(overrides)
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def test_valid_json_event_becomes_an_identity_free_complaint():
    result = decode_event(_event(text="我叫赵小明，电话13912345678。工厂偷排"), "json", KEY)
    assert isinstance(result, Complaint)
    assert result.complaint_id == "c-1"
    assert result.received_at_ms == 1777908600000
    assert "13912345678" not in result.text and "赵小明" not in result.text
    assert result.reporter_key.startswith("rk-")


def test_valid_avro_event_decodes_like_json():
    payload = schemas.encode(schemas.RAW, json.loads(_event()))
    result = decode_event(payload, "avro", KEY)
    assert isinstance(result, Complaint)
    assert result.text == "工厂夜里偷排污水，河里发黑发臭"


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty_event"),
    (b'{"complaint_id": "c-1", "text": ', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"complaint_id": "c-1", "text": "\xff\xfe"}', "invalid_utf8"),
    (b"[" * 50_000 + b"]" * 50_000, "json_too_deep"),
    (_event(text=""), "empty_text"),
    (_event(text="   \n "), "empty_text"),
    (_event(text=None), "missing_text"),
    (_event(complaint_id=None), "missing_complaint_id"),
    (_event(text=12), "invalid_field_type"),
    (_event(received_at="yesterday evening"), "invalid_timestamp"),
    (_event(received_at="3026-01-01T00:00:00+08:00"), "timestamp_out_of_range"),
    (_event(received_at="1970-01-01T00:00:00+08:00"), "timestamp_out_of_range"),
    (_event(text="污" * 7000), "text_too_large"),
])
def test_bad_json_events_are_dead_lettered_with_reason_and_original(payload, reason):
    result = decode_event(payload, "json", KEY)
    assert isinstance(result, DeadLetter)
    assert result.reason == reason
    assert result.original == payload
    assert "赵小明" not in result.detail and "13912345678" not in result.detail


@pytest.mark.parametrize("payload, reason", [
    (b'{"complaint_id": "c-1"}', "not_avro"),
    (b"\x00\x00\x00\x03\xe7" + b"\x02", "unknown_schema_id"),
    (schemas.encode(schemas.RAW, json.loads(_event()))[:12], "avro_decode_error"),
    (schemas.encode(schemas.LEADS, {"lead_id": "l", "cluster_id": "m", "first_complaint_id": "c",
                                    "complaint_ids": [], "report_count": 1, "distinct_reporters": 0,
                                    "first_seen_ms": 0, "last_seen_ms": 0, "pollution_types": [],
                                    "score": 0.0, "tier": "low", "reasons": [], "summary": "",
                                    "updated_at_ms": 0}), "wrong_subject"),
])
def test_bad_avro_events_are_dead_lettered(payload, reason):
    result = decode_event(payload, "avro", KEY)
    assert isinstance(result, DeadLetter)
    assert result.reason == reason
    assert result.original == payload


def test_event_size_limit_is_checked_before_parsing():
    result = decode_event(_event(), "json", KEY, DecodeLimits(max_event_bytes=50))
    assert result.reason == "event_too_large"


def test_control_characters_are_removed_and_fullwidth_digits_folded():
    result = decode_event(_event(text="噪音\x07扰民，电话１３９１２３４５６７８"), "json", KEY)
    assert result.text == "噪音扰民，电话[电话]"


def test_a_reporter_name_with_an_invisible_character_is_still_masked_in_the_text():
    """The text loses zero-width characters when cleaned; the reporter's name must be cleaned the
    same way, or masking looks for a name that is no longer there."""
    name = "欧阳\u200b伟明"
    event = _event(text=f"联系人{name}负责跟进，工厂偷排", reporter={"name": name, "phone": None, "id_number": None})
    result = decode_event(event, "json", KEY)
    assert isinstance(result, Complaint)
    assert "欧阳伟明" not in result.text and "伟明" not in result.text
