"""Hostile input never stops decoding: every event becomes a complaint or a dead letter."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from envleads import schemas
from envleads.decode import decode_event
from envleads.records import Complaint, DeadLetter

KEY = b"fuzz-key"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

events = st.fixed_dictionaries(
    {"complaint_id": st.one_of(st.text(max_size=20), st.none(), st.integers())},
    optional={"received_at": st.one_of(st.text(max_size=30), st.datetimes().map(lambda d: d.isoformat()), json_values),
              "text": st.one_of(st.text(max_size=300), json_values),
              "title": st.one_of(st.text(max_size=30), json_values),
              "channel": st.one_of(st.text(max_size=10), json_values),
              "reporter": st.one_of(st.none(), json_values,
                                    st.fixed_dictionaries({}, optional={"name": st.text(max_size=5),
                                                                        "phone": st.text(max_size=15)}))})


def _check(result, payload):
    assert isinstance(result, (Complaint, DeadLetter))
    if isinstance(result, DeadLetter):
        assert result.reason and result.original == payload
    else:
        assert result.text.strip() and result.complaint_id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(payload):
    _check(decode_event(payload, "json", KEY), payload)
    _check(decode_event(payload, "avro", KEY), payload)


@settings(max_examples=300, deadline=None)
@given(events)
def test_arbitrary_json_events_never_raise(event):
    payload = json.dumps(event).encode("utf-8")
    _check(decode_event(payload, "json", KEY), payload)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=0, max_value=40))
def test_truncated_avro_events_are_dead_lettered_not_raised(text, cut):
    payload = schemas.encode(schemas.RAW, {"complaint_id": "c", "received_at": "2026-01-01T00:00:00+08:00",
                                           "text": text or "x"})
    truncated = payload[:max(0, len(payload) - 1 - cut)]
    _check(decode_event(truncated, "avro", KEY), truncated)
