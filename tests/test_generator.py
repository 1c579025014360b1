"""Tests for the synthetic complaint generator (``envleads generate``)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from envleads.config import data_path
from envleads.divisions import PROVINCE, CITY, load_divisions
from envleads.generate_dataset import write_dataset
from envleads.generator import generate_events, id_check_digit, short_name

CONTRACT_KEYS = {"complaint_id", "received_at", "text", "title", "channel", "reporter", "address",
                 "jurisdiction_adcode"}
ISO_CST = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


@pytest.fixture(scope="module")
def events():
    return list(generate_events(3000, 11))


@pytest.fixture(scope="module")
def valid(events):
    return [(json.loads(e.line), e.truth) for e in events if not e.truth["malformed"]]


def _digits(text: str) -> str:
    return re.sub(r"[\s-]", "", text.translate(FULLWIDTH))


def test_short_names():
    assert short_name("广西壮族自治区", PROVINCE) == "广西"
    assert short_name("江苏省", PROVINCE) == "江苏"
    assert short_name("北京市", PROVINCE) == "北京"
    assert short_name("南京市", CITY) == "南京"
    assert short_name("恩施土家族苗族自治州", CITY) == "恩施土家族苗族自治州"


def test_id_check_digit_matches_gb11643_example():
    assert id_check_digit("11010519491231002") == "X"
    assert id_check_digit("44052418800101001") == "4"


def test_same_seed_same_bytes_and_other_seed_differs():
    first = [(e.line, e.truth) for e in generate_events(300, 5)]
    second = [(e.line, e.truth) for e in generate_events(300, 5)]
    other = [e.line for e in generate_events(300, 6)]
    assert first == second
    assert [line for line, _ in first] != other


def test_output_does_not_depend_on_hash_seed():
    code = ("import hashlib,sys;from envleads.generator import generate_events;"
            "h=hashlib.sha256();[h.update(e.line) for e in generate_events(200, 3)];print(h.hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    expected = hashlib.sha256()
    for event in generate_events(200, 3):
        expected.update(event.line)
    assert digests == {expected.hexdigest()}


def test_shares_within_tolerance(events, valid):
    malformed = sum(e.truth["malformed"] for e in events)
    assert 0.003 <= malformed / len(events) <= 0.025
    non_env = sum(not t["environmental"] for _, t in valid)
    assert 0.15 <= non_env / len(valid) <= 0.25
    repeats = sum(t["duplicate_of"] is not None for _, t in valid)
    assert 0.15 <= repeats / len(valid) <= 0.25
    env = [t for _, t in valid if t["environmental"]]
    labels = Counter(label for t in env for label in t["labels"])
    assert 0.50 <= labels["air"] / len(env) <= 0.66
    assert 0.46 <= labels["noise"] / len(env) <= 0.62
    assert 0.09 <= labels["water"] / len(env) <= 0.21
    assert 0.04 <= labels["solid_waste"] / len(env) <= 0.14
    assert labels["radiation"] / len(env) < 0.02
    assert sum(len(t["labels"]) > 1 for t in env) / len(env) > 0.2


def test_every_valid_line_has_the_contract_fields(valid):
    channels = Counter()
    for event, truth in valid:
        assert set(event) <= CONTRACT_KEYS
        assert isinstance(event["complaint_id"], str) and event["complaint_id"]
        assert ISO_CST.match(event["received_at"])
        dt.datetime.fromisoformat(event["received_at"])
        assert isinstance(event["text"], str) and event["text"].strip()
        assert len(event["text"].encode("utf-8")) < 20000
        assert isinstance(event["title"], str)
        assert event["channel"] in {"phone", "wechat", "web", "letter"}
        channels[event["channel"]] += 1
        if "reporter" in event:
            assert set(event["reporter"]) <= {"name", "phone", "id_number"}
        if "jurisdiction_adcode" in event:
            assert re.fullmatch(r"\d{6}", event["jurisdiction_adcode"])
        assert truth["complaint_id"] == event["complaint_id"]
    assert set(channels) == {"phone", "wechat", "web", "letter"}
    assert all(event["title"] for event, _ in valid if event["channel"] == "web")
    assert all(event["title"] == "" for event, _ in valid if event["channel"] == "phone")


def test_event_time_is_ordered_and_some_at_night(valid):
    times = [dt.datetime.fromisoformat(event["received_at"]) for event, _ in valid]
    assert times == sorted(times)
    night = sum(t.hour >= 22 or t.hour < 6 for t in times)
    assert 0.02 < night / len(times) < 0.2


def test_truth_lines_match_event_lines(events):
    assert [e.truth["line"] for e in events] == list(range(1, len(events) + 1))
    ids = [e.truth["complaint_id"] for e in events if e.truth["complaint_id"] is not None]
    assert len(ids) == len(set(ids))
    for e in events:
        if e.truth["complaint_id"] is not None:
            assert e.truth["complaint_id"].encode() in e.line


def test_non_environmental_have_no_labels(valid):
    for _, truth in valid:
        assert truth["environmental"] == bool(truth["labels"])
        assert truth["primary_type"] == (truth["labels"][0] if truth["labels"] else None)


def test_repeats_point_to_an_earlier_complaint_of_the_same_matter(valid):
    first_of = {}
    when = {}
    for event, truth in valid:
        when[truth["complaint_id"]] = dt.datetime.fromisoformat(event["received_at"])
        if truth["duplicate_of"] is None:
            first_of.setdefault(truth["matter_id"], truth["complaint_id"])
            continue
        assert first_of[truth["matter_id"]] == truth["duplicate_of"]
        gap = when[truth["complaint_id"]] - when[truth["duplicate_of"]]
        assert dt.timedelta(days=1) <= gap <= dt.timedelta(days=42)
    texts = {}
    for event, truth in valid:
        texts.setdefault(truth["matter_id"], set()).add(event["text"])
    repeated = [t for t in texts.values() if len(t) > 1]
    assert repeated, "repeats must be paraphrased, not copied"


def test_same_named_districts_appear_with_and_without_context(valid):
    table = load_divisions()
    ambiguous = sorted({d.name for d in table if d.level == "county" and len(table.named(d.name)) > 1})
    pattern = re.compile("|".join(ambiguous))
    resolved, unresolved = 0, 0
    for event, truth in valid:
        if "address" in event or not pattern.search(event["text"]):
            continue
        if truth["region"] and truth["region"]["level"] == "county":
            resolved += 1
        elif truth["region"] is None:
            unresolved += 1
    assert resolved >= 10 and unresolved >= 10


def test_region_truth_agrees_with_the_true_place(valid):
    table = load_divisions()
    with open(data_path("generator/phrases.json"), encoding="utf-8") as handle:
        pairs = json.load(handle)["traditional"]["map"]
    to_simplified = str.maketrans({pairs[i + 1]: pairs[i] for i in range(0, len(pairs), 2)})
    for event, truth in valid:
        region = truth["region"]
        if region is None:
            continue
        chain = {d.adcode for d in table.chain(truth["true_adcode"]) if d is not None}
        chain.add(truth["true_adcode"])
        assert region["adcode"] in chain
        if region["level"] == "county":
            seen = (event["text"] + event["title"]).translate(to_simplified) + event.get("address", "")
            assert region["county"] in seen


def test_pii_from_truth_is_found_in_texts(valid):
    found = Counter()
    for event, truth in valid:
        text = event["text"]
        if truth["reporter_phone"] and truth["reporter_phone"] in _digits(text):
            found["phone"] += 1
        if truth["reporter_name"] and truth["reporter_name"] in text:
            found["name"] += 1
        if truth["reporter_id_number"] and truth["reporter_id_number"] in text:
            found["id_number"] += 1
        if truth["pii_in_text"]["phone"]:
            assert truth["reporter_phone"] in _digits(text)
    assert found["phone"] >= 20 and found["name"] >= 20 and found["id_number"] >= 3


def test_labels_are_supported_by_words_in_the_text(valid):
    cues = {"noise": "噪燥躁声聲吵响響喇叭音闹轰", "air": "烟煙味尘塵臭气氣灰呛", "water": "水河污排"}
    for label, chars in cues.items():
        texts = [event["text"] for event, truth in valid if label in truth["labels"]]
        hits = sum(any(c in text for c in chars) for text in texts)
        assert hits / len(texts) > 0.95, label


def test_malformed_lines_are_single_lines_and_really_broken(events):
    reasons = Counter()
    for event in events:
        truth = event.truth
        assert b"\n" not in event.line and b"\r" not in event.line
        if not truth["malformed"]:
            continue
        reason = truth["malformed_reason"]
        reasons[reason] += 1
        line = event.line
        if reason == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                line.decode("utf-8")
            continue
        if reason in ("invalid_json", "truncated"):
            with pytest.raises(ValueError):
                json.loads(line)
            continue
        value = json.loads(line)
        if reason == "not_object":
            assert not isinstance(value, dict)
        elif reason == "missing_id":
            assert not value.get("complaint_id") and truth["complaint_id"] is None
        elif reason == "empty_text":
            assert value["text"].strip() == "" and truth["labels"] == []
        elif reason == "oversize_text":
            assert len(value["text"].encode("utf-8")) > 20000
        elif reason == "bad_timestamp":
            with pytest.raises(ValueError):
                dt.datetime.fromisoformat(value["received_at"])
    assert len(reasons) >= 5


def test_write_dataset_and_cli(tmp_path, capsys):
    from envleads.cli import main

    out = tmp_path / "complaints.jsonl"
    assert main(["generate", "--count", "120", "--seed", "9", "--output", str(out)]) == 0
    truth_path = tmp_path / "complaints.truth.jsonl"
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 121
    truths = [json.loads(line) for line in truth_path.read_text(encoding="utf-8").splitlines()]
    assert len(truths) == 120
    assert lines[:-1] == [e.line for e in generate_events(120, 9)]
    assert "repeats" in capsys.readouterr().out
    summary = write_dataset(50, 1, str(tmp_path / "a.jsonl"), str(tmp_path / "t.jsonl"))
    assert summary["count"] == 50 and summary["valid"] + summary["malformed"] == 50
