"""``envleads replay`` over the real embedded broker: re-processing an offset range, a time range or a
file archive of complaints updates leads under their stable keys instead of duplicating them."""
import json
import os
import subprocess
import sys
import time

import pytest

from envleads import schemas
from envleads.generator import generate_events
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.replay import events_from_file, events_from_topic, parse_time_ms, replay
from envleads.pipelines.rounds.loop import run_stream
from envleads.pipelines.rounds.outputs import Topics
from envleads.pipelines.kafka_edge.write import produce_lines
from kafka_scan import scan_topic

pytestmark = pytest.mark.kafka


def _compacted(bootstrap, topic):
    view = {}
    for record in scan_topic(bootstrap, topic):
        view[record.key.decode()] = lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
    return view


def _membership(view):
    """complaint id -> lead key; fails if a complaint is in two leads."""
    owner = {}
    for key, lead in view.items():
        assert lead.report_count == len(lead.complaint_ids) == len(set(lead.complaint_ids)), key
        for cid in lead.complaint_ids:
            assert cid not in owner, f"{cid} in two leads: {owner[cid]} and {key}"
            owner[cid] = key
    return owner


def _enriched_ids(bootstrap, topic):
    return [schemas.decode(schemas.ENRICHED, r.value)["complaint_id"] for r in scan_topic(bootstrap, topic)]


def test_parse_time_ms():
    assert parse_time_ms("1700000000000") == 1_700_000_000_000
    assert parse_time_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time_ms("2023-11-15T06:13:20+08:00") == 1_700_000_000_000
    assert parse_time_ms("2023-11-15T06:13:20") == 1_700_000_000_000  # naive = China Standard Time, as tail --since


def test_events_from_file_reads_json_lines_and_avro_archives(tmp_path):
    import fastavro

    events = [e for e in generate_events(12, seed=2) if not e.truth["malformed"]]
    lines = tmp_path / "archive.jsonl"
    lines.write_bytes(b"\n".join(e.line for e in events) + b"\n")
    assert [r.payload for r in events_from_file(str(lines))] == [e.line for e in events]
    assert {r.fmt for r in events_from_file(str(lines))} == {"json"}
    archive = tmp_path / "archive.avro"
    records = [schemas.decode(schemas.RAW, schemas.encode(schemas.RAW, json.loads(e.line))) for e in events]
    with open(archive, "wb") as handle:
        fastavro.writer(handle, schemas.schema_for(schemas.RAW), records)
    replayed = [schemas.decode(schemas.RAW, r.payload) for r in events_from_file(str(archive))]
    assert [r["complaint_id"] for r in replayed] == [e.truth["complaint_id"] for e in events]


def test_replay_updates_leads_under_stable_keys(kafka_broker, tmp_topics, tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "replay-key")  # same key: same reporter keys on replay
    events = list(generate_events(240, seed=5))
    first, later = events[:160], events[160:]
    names = tmp_topics("raw", "enriched", "leads", "dead_letter")
    topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
    bootstrap = kafka_broker.bootstrap_servers
    produce_lines(bootstrap, topics.raw, (e.line for e in first))
    totals = run_stream(bootstrap, topics, ["--runner=FnApiRunner"], group_id="replay-test",
                        stop_when_idle_s=2.0, poll_wait_s=1.0)
    assert totals["events"] == 160
    before = _compacted(bootstrap, topics.leads)
    owner_before = _membership(before)
    valid_first = {e.truth["complaint_id"] for e in first if not e.truth["malformed"]}
    assert set(_enriched_ids(bootstrap, topics.enriched)) == valid_first and before

    # 1. the same offset range again: every lead keeps its key and its reports, none is added
    result = replay(bootstrap, topics, events_from_topic(bootstrap, topics.raw, from_offset=0, to_offset=160),
                    ["--runner=FnApiRunner"])
    assert result["events"] == 160
    again = _compacted(bootstrap, topics.leads)
    assert again.keys() == before.keys()
    assert all(sorted(again[k].complaint_ids) == sorted(before[k].complaint_ids) for k in before)
    enriched = _enriched_ids(bootstrap, topics.enriched)
    assert len(enriched) == 2 * len(valid_first)  # enriched is at-least-once: a replay repeats it

    # 2. a time range of the raw topic holding only later events: they are processed, and
    #    the matters they repeat are updated under their existing keys
    time.sleep(1.1)
    since = int(time.time() * 1000)
    produce_lines(bootstrap, topics.raw, (e.line for e in later))
    result = replay(bootstrap, topics, events_from_topic(bootstrap, topics.raw, from_ms=since),
                    ["--runner=FnApiRunner"])
    assert result["events"] == len(later)
    after = _compacted(bootstrap, topics.leads)
    owner_after = _membership(after)
    assert all(owner_after[cid] == key for cid, key in owner_before.items()), "a replay moved a complaint"
    valid_later = {e.truth["complaint_id"] for e in later if not e.truth["malformed"]}
    assert set(_enriched_ids(bootstrap, topics.enriched)) == valid_first | valid_later
    updated = [k for k in before if after[k].report_count > before[k].report_count]
    print(f"{len(before)} leads before, {len(after)} after; {len(updated)} updated by the later events")

    # 3. a file archive overlapping both, through the command line: no lead is added, no report
    #    moves or counts twice (a report that is in no lead, being not environmental, may now
    #    join one: the replay assigns it against matters that did not exist when it first came)
    archive = tmp_path / "archive.jsonl"
    archive.write_bytes(b"\n".join(e.line for e in first[100:] + later[:40]) + b"\n")
    completed = subprocess.run(
        [sys.executable, "-m", "envleads.cli", "replay", "--bootstrap-servers", bootstrap, "--file", str(archive),
         "--raw-topic", names["raw"], "--enriched-topic", names["enriched"], "--leads-topic", names["leads"],
         "--dead-letter-topic", names["dead_letter"], "--runner=FnApiRunner"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
        env={**os.environ, "ENVLEADS_PSEUDONYM_KEY": "replay-key"})
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")[-3000:]
    printed = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    assert printed["events"] == 100
    final = _compacted(bootstrap, topics.leads)
    assert final.keys() == after.keys()
    owner_final = _membership(final)
    assert all(owner_final[cid] == key for cid, key in owner_after.items()), "a replay moved a complaint"

    # the stream's committed offsets are untouched by replays
    from envleads.ops.status import topic_status

    report = topic_status(bootstrap, [topics.raw], "replay-test")
    assert report[topics.raw]["partitions"][0]["committed"] == 160
