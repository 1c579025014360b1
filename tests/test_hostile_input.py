"""Hostile input never stops decoding: every event becomes a complaint or a dead letter.

Property-based tests (hypothesis) first; then the generated hostile corpus of ``bench/fuzz.py``
(100,000 cases there) at suite size through ``decode_event``, the ``DecodeComplaints`` stage and the
batch pipeline; then regression tests for the bugs that corpus found.
"""
import base64
import importlib.util
import json
import os
import sys
from collections import Counter

import pytest
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


# ------------------------------------------------------------------------------------ fuzz runs
# The generated hostile corpus of bench/fuzz.py (which runs 100,000 cases) at suite size.

_FUZZ_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "fuzz.py")


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("envleads_bench_fuzz", _FUZZ_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


@pytest.fixture(scope="module")
def fuzz_corpus():
    return list(fuzz.fuzz_cases(8000, seed=5))


def test_fuzz_corpus_mixes_every_kind_and_both_outcomes(fuzz_corpus):
    kinds = Counter(case.kind for case in fuzz_corpus)
    assert set(kinds) == set(fuzz.WEIGHTS)
    assert sum(case.expect == fuzz.VALID for case in fuzz_corpus) > 2000
    assert sum(case.expect not in (fuzz.VALID, fuzz.ANY) for case in fuzz_corpus) > 2000
    assert {case.fmt for case in fuzz_corpus} == {"json", "avro"}


def test_fuzz_decode_stage_accounts_for_every_event(fuzz_corpus):
    tally = fuzz.run_decode_fuzz(fuzz_corpus)
    assert tally.failures == {}
    assert tally.counts["in"] == len(fuzz_corpus) == tally.counts["complaints"] + tally.counts["dead_letters"]
    # every reason the corpus aims at was really produced
    aimed = {reason for case in fuzz_corpus if isinstance(case.expect, frozenset) for reason in case.expect}
    assert aimed - set(tally.reasons) <= {"empty_event", "not_avro"}  # alternatives of truncation cuts
    assert tally.reasons["unknown_schema_id"] and tally.reasons["wrong_subject"] and tally.reasons["json_too_deep"]


def test_fuzz_through_decode_complaints_transform_loses_nothing(fuzz_corpus, monkeypatch, tmp_path):
    """Avro and JSON cases (line breaks included) through the Beam stage itself."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from envleads.pipelines.options import StageSettings
    from envleads.pipelines.transforms import DEAD_LETTER, MAIN, DecodeComplaints
    from envleads.records import RawEvent

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "fuzz-key")
    # oversize events are left to the decode and batch runs: beam.Create would embed them in the graph
    cases = [case for case in fuzz_corpus[:1600] if len(case.payload) <= 65_536]
    ids_path, dead_path = str(tmp_path / "ids.txt"), str(tmp_path / "dead.txt")
    with beam.Pipeline(runner="FnApiRunner", options=PipelineOptions([])) as pipeline:
        outputs = (pipeline
                   | beam.Create([RawEvent(case.payload, case.fmt) for case in cases], reshuffle=False)
                   | DecodeComplaints(StageSettings()))
        (outputs[MAIN] | "Ids" >> beam.Map(lambda c: json.dumps(c.complaint_id))
         | "WriteIds" >> beam.io.WriteToText(ids_path, shard_name_template="", num_shards=1))
        (outputs[DEAD_LETTER]
         | "Dead" >> beam.Map(lambda d: json.dumps([d.reason, base64.b64encode(d.original).decode()]))
         | "WriteDead" >> beam.io.WriteToText(dead_path, shard_name_template="", num_shards=1))
    with open(ids_path, encoding="utf-8") as handle:
        ids = [json.loads(line) for line in handle]
    with open(dead_path, encoding="utf-8") as handle:
        dead = [(reason, base64.b64decode(original)) for reason, original in map(json.loads, handle)]
    assert len(ids) + len(dead) == len(cases)
    valid_ids = {case.complaint_id for case in cases if case.expect == fuzz.VALID}
    assert valid_ids <= set(ids)
    payloads = Counter(case.payload for case in cases if case.expect != fuzz.VALID)
    assert Counter(original for _, original in dead) <= payloads
    assert all(reason for reason, _ in dead)


@pytest.mark.slow
def test_fuzz_through_the_batch_pipeline_every_line_accounted(tmp_path, monkeypatch):
    """~3,000 hostile and valid lines through ``run_batch``: it finishes, nothing is lost."""
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "fuzz-key")
    cases = list(fuzz.fuzz_cases(4500, seed=9))
    result = fuzz.run_batch_fuzz(cases, str(tmp_path))
    assert result["lines_in"] > 2500
    assert result["lost"] == 0
    assert result["output_lines"] + result["dead_letter_lines"] == result["lines_in"]
    assert result["valid_missing"] == 0 and result["duplicate_output_ids"] == 0
    assert result["dead_letters_of_valid_cases"] == 0
    assert result["dead_letters_with_unexpected_reason"] == 0
    assert result["dead_letters_with_unknown_original"] == 0
    assert {"invalid_utf8", "json_too_deep", "text_too_large", "empty_event"} <= set(result["reasons"])


# ------------------------------------------------------------------ bugs the fuzz run found first
def _event(**fields):
    document = {"complaint_id": "c-1", "received_at": "2026-03-01T10:00:00+08:00", "text": "河边工厂夜里排污"}
    document.update(fields)
    return json.dumps(document).encode("utf-8")  # ensure_ascii: lone surrogates as \ud800 escapes


@pytest.mark.parametrize("reporter", [{"name": "张\ud800三"}, {"phone": "138\udc0000138000"},
                                      {"id_number": "11010119900307\ud83d1234"}])
def test_lone_surrogate_in_reporter_keeps_the_complaint(reporter):
    result = decode_event(_event(reporter=reporter), "json", KEY)
    assert isinstance(result, Complaint) and result.reporter_key


@pytest.mark.parametrize("complaint_id", ["c\ud800", "\udfff", "c\x00", "a\nb", "c\x1b[31m"])
def test_complaint_id_that_no_sink_could_write_is_dead_lettered(complaint_id):
    payload = _event(complaint_id=complaint_id)
    result = decode_event(payload, "json", KEY)
    assert isinstance(result, DeadLetter) and result.reason == "invalid_complaint_id"
    assert result.event_id is None and result.original == payload
    assert fuzz.check_outputs_serialise(result) is None


def test_channel_with_lone_surrogate_is_cleaned_not_passed_on():
    result = decode_event(_event(channel="web\ud800"), "json", KEY)
    assert isinstance(result, Complaint) and result.channel == "web"
    assert fuzz.check_outputs_serialise(result) is None


@pytest.mark.parametrize("value, read", [(320106, "320106"), (3201.06, None), (True, None), ([320106], None),
                                         ({"code": "320106"}, None)])
def test_a_jurisdiction_code_of_another_type_is_read_or_ignored_never_a_rejection(value, read):
    complaint = decode_event(_event(jurisdiction_adcode=value), "json", KEY)
    assert not isinstance(complaint, DeadLetter) and complaint.jurisdiction_adcode == read


def test_non_ascii_digits_are_not_a_jurisdiction_code():
    assert decode_event(_event(jurisdiction_adcode="１１０１０１"), "json", KEY).jurisdiction_adcode is None
    assert decode_event(_event(jurisdiction_adcode="110101"), "json", KEY).jurisdiction_adcode == "110101"


@pytest.mark.parametrize("received_at", ["2100-01-01T00:00:00Z", "0001-01-01T00:00:00", "tomorrow"])
def test_timestamp_dead_letters_keep_the_readable_event_id(received_at):
    result = decode_event(_event(received_at=received_at), "json", KEY)
    assert isinstance(result, DeadLetter) and result.reason in ("timestamp_out_of_range", "invalid_timestamp")
    assert result.event_id == "c-1"


def test_dead_letter_original_is_base64_of_the_exact_line():
    payload = "{\"complaint_id\": \"x\", \"text\": \"噪音\"".encode("gbk")
    result = decode_event(payload, "json", KEY)
    assert result.reason == "invalid_utf8"
    from envleads.serialize import dead_letter_to_json

    assert base64.b64decode(json.loads(dead_letter_to_json(result))["original_base64"]) == payload


any_chars = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)  # surrogates, controls too


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(
    {"complaint_id": any_chars, "received_at": st.just("2026-03-01T10:00:00+08:00"), "text": any_chars},
    optional={"title": any_chars, "channel": any_chars, "address": any_chars, "jurisdiction_adcode": any_chars,
              "reporter": st.fixed_dictionaries({}, optional={"name": any_chars, "phone": any_chars,
                                                              "id_number": any_chars})}))
def test_any_unicode_in_any_field_never_raises_and_every_output_can_be_written(event):
    payload = json.dumps(event).encode("utf-8")
    result = decode_event(payload, "json", KEY)
    _check(result, payload)
    assert fuzz.check_outputs_serialise(result) is None


@pytest.mark.parametrize("engine", ["beam", "rounds"])
@pytest.mark.parametrize("role", ["--output", "--leads", "--dead-letter"])
def test_batch_refuses_to_write_over_its_input(tmp_path, capsys, engine, role):
    """Issue 26: ``--output F`` with ``--input F`` truncated the input before reading it. Any
    output naming the input file (also through another spelling of the path) is refused in one
    line, and the input is left as it was."""
    from envleads.cli import main

    source = tmp_path / "complaints.jsonl"
    source.write_text('{"complaint_id": "c1", "received_at": "2026-03-01T08:00:00+08:00", "text": "工厂排污"}\n',
                      encoding="utf-8")
    before = source.read_bytes()
    paths = {"--output": str(tmp_path / "out.jsonl"), "--leads": None, "--dead-letter": None}
    paths[role] = str(tmp_path / "." / "complaints.jsonl")
    argv = ["batch", "--input", str(source), "--engine", engine]
    for flag, path in paths.items():
        if path:
            argv += [flag, path]
    assert main(argv) == 2
    assert "is the input file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_batch_says_so_when_the_input_is_missing(tmp_path, capsys):
    from envleads.cli import main

    assert main(["batch", "--input", str(tmp_path / "nowhere.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
