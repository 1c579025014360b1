"""End to end over the real embedded broker: generated complaints in, enriched records, dead
letters and leads out, with a restart in the middle and no identity anywhere downstream."""
import os
import subprocess
import sys
import time

import pytest

from envleads import schemas
from envleads.generator import generate_events
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.stream import Topics, produce_lines, run_stream

pytestmark = pytest.mark.kafka


def _scan(bootstrap_servers, topic, idle_s=2.0):
    """Every record of a topic (the embedded broker under-reports end offsets: scan until idle)."""
    from envleads.pipelines.kafka_io import open_consumer

    consumer = open_consumer(bootstrap_servers, topic, group_id=None)
    records, deadline = [], time.monotonic() + idle_s
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200)
        for partition_records in batch.values():
            records.extend(partition_records)
            deadline = time.monotonic() + idle_s
    consumer.close()
    return records


@pytest.fixture(scope="module")
def generated():
    events = list(generate_events(400, seed=11))
    truth = [event.truth for event in events]
    return events, truth


def test_stream_with_a_restart_keeps_every_complaint_and_one_lead_per_matter(kafka_broker, tmp_topics, generated,
                                                                              monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "e2e-key")
    events, truth = generated
    names = tmp_topics("raw", "enriched", "leads", "dead_letter", partitions=2)
    topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
    bootstrap = kafka_broker.bootstrap_servers
    assert produce_lines(bootstrap, topics.raw, (event.line for event in events)) == 400

    beam_args = ["--runner=FnApiRunner"]
    first = run_stream(bootstrap, topics, beam_args, group_id="e2e", max_round_events=150, max_rounds=1,
                       poll_wait_s=1.0)
    assert first["events"] == 150
    # A new process: nothing survives but the committed offsets and the topics.
    second = run_stream(bootstrap, topics, beam_args, group_id="e2e", max_round_events=150,
                        stop_when_idle_s=2.0, poll_wait_s=1.0)
    assert first["events"] + second["events"] == 400

    valid_ids = {t["complaint_id"] for t in truth if not t["malformed"]}
    enriched = [schemas.decode(schemas.ENRICHED, record.value) for record in _scan(bootstrap, topics.enriched)]
    assert {record["complaint_id"] for record in enriched} == valid_ids
    dead = [schemas.decode(schemas.DEAD_LETTER, record.value) for record in _scan(bootstrap, topics.dead_letter)]
    assert len(dead) == sum(t["malformed"] for t in truth) > 0
    assert all(d["reason"] and d["original"] for d in dead)

    compacted = {}
    for record in _scan(bootstrap, topics.leads):
        compacted[record.key.decode()] = lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
    environmental = {r["complaint_id"] for r in enriched if r["environmental"]}
    membership = [cid for lead in compacted.values() for cid in lead.complaint_ids]
    assert sorted(membership) == sorted(environmental | (set(membership) - environmental))
    assert len(membership) == len(set(membership)), "a complaint belongs to one lead only"
    assert environmental <= set(membership)
    by_cluster = {r["complaint_id"]: r["cluster_id"] for r in enriched}
    for lead in compacted.values():
        assert {by_cluster[cid] for cid in lead.complaint_ids} == {lead.cluster_id}


def test_no_identity_reaches_enriched_leads_or_logs(kafka_broker, tmp_topics, generated, tmp_path):
    """Runs ``envleads stream`` as an operator would, at DEBUG, and scans its log and outputs."""
    events, truth = generated
    names = tmp_topics("raw", "enriched", "leads", "dead_letter")
    bootstrap = kafka_broker.bootstrap_servers
    produce_lines(bootstrap, names["raw"], (event.line for event in events))
    log_path = tmp_path / "stream.log"
    with open(log_path, "wb") as log:
        subprocess.run([sys.executable, "-m", "envleads.cli", "--log-level", "DEBUG", "stream",
                        "--bootstrap-servers", bootstrap, "--raw-topic", names["raw"],
                        "--enriched-topic", names["enriched"], "--leads-topic", names["leads"],
                        "--dead-letter-topic", names["dead_letter"], "--group-id", "privacy",
                        "--stop-when-idle", "2", "--runner=FnApiRunner"],
                       stdout=log, stderr=subprocess.STDOUT, check=True, timeout=300,
                       env={**os.environ, "ENVLEADS_PSEUDONYM_KEY": "e2e-key"})
    identities = {value for t in truth for value in (t.get("reporter_name"), t.get("reporter_phone"),
                                                     t.get("reporter_id_number")) if value}
    # A generated name can also occur as ordinary words of another complaint (李永 in 李永巷):
    # such a string proves nothing either way, so it is left out of the scan.
    identities -= {t["reporter_name"] for t, event in zip(truth, events) if t.get("reporter_name")
                   for other_t, other in zip(truth, events)
                   if other_t.get("reporter_name") != t["reporter_name"]
                   and t["reporter_name"].encode() in other.line}
    assert len(identities) > 50 and any(t["pii_in_text"]["phone"] for t in truth)
    downstream = b"".join(record.value for topic in (names["enriched"], names["leads"])
                          for record in _scan(bootstrap, topic)).decode("utf-8", "replace")
    logs = log_path.read_text("utf-8", "replace")
    assert "round 1" in logs  # the log is really the stream's
    leaks = sorted(value for value in identities if value in downstream or value in logs)
    assert leaks == []


def test_status_reports_lag_of_the_stream_group(kafka_broker, tmp_topics, generated):
    from envleads.ops.status import topic_status
    from envleads.pipelines.kafka_io import commit_events, open_consumer, poll_new_events

    events, _ = generated
    names = tmp_topics("raw")
    bootstrap = kafka_broker.bootstrap_servers
    produce_lines(bootstrap, names["raw"], (event.line for event in events[:30]))
    consumer = open_consumer(bootstrap, names["raw"], group_id="status-test")
    read = poll_new_events(consumer, 10, wait_s=2.0)
    commit_events(consumer, read)
    consumer.close()
    report = topic_status(bootstrap, [names["raw"]], "status-test", scan=True)
    partition = report[names["raw"]]["partitions"][0]
    assert partition["committed"] == 10
    assert partition["records_scanned"] == 30
    assert partition["lag"] >= 0
