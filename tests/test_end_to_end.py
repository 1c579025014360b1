"""End to end over the real embedded broker: generated complaints in, enriched records, dead
letters and leads out, with a restart in the middle (graceful, and kill -9 of the process) and no
identity anywhere downstream."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from envleads import schemas
from envleads.generator import generate_events
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.rounds.loop import run_stream
from envleads.pipelines.rounds.outputs import Topics
from envleads.pipelines.kafka_edge.write import produce_lines
from kafka_scan import scan_topic

pytestmark = pytest.mark.kafka


def _stream_command(bootstrap, names, group_id, *extra):
    return [sys.executable, "-m", "envleads.cli", "stream", "--bootstrap-servers", bootstrap,
            "--raw-topic", names["raw"], "--enriched-topic", names["enriched"], "--leads-topic", names["leads"],
            "--dead-letter-topic", names["dead_letter"], "--group-id", group_id, *extra, "--runner=FnApiRunner"]


def _processes_with(marker):
    """Pids whose environment holds ``ENVLEADS_TEST_MARKER=marker`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if f"ENVLEADS_TEST_MARKER={marker}".encode() in handle.read().split(b"\0"):
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        if stat.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            found.append(int(entry))
        except OSError:
            continue
    return found


def _wait_no_process_with(marker, timeout_s):
    deadline = time.monotonic() + timeout_s
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _processes_with(marker)


def _check_outputs(bootstrap, topics, truth, events):
    """The delivery contract after any restarts: every valid complaint enriched at least once,
    every malformed event dead-lettered, each complaint in exactly one lead of the compacted view
    (last record per key), that lead being its matter's. Returns the duplicate counts."""
    from envleads.pipelines.kafka_edge.write import raw_event_bytes

    valid_ids = {t["complaint_id"] for t in truth if not t["malformed"]}
    enriched = [schemas.decode(schemas.ENRICHED, record.value) for record in scan_topic(bootstrap, topics.enriched)]
    assert {record["complaint_id"] for record in enriched} == valid_ids
    dead = [schemas.decode(schemas.DEAD_LETTER, record.value) for record in scan_topic(bootstrap, topics.dead_letter)]
    malformed = {raw_event_bytes(event.line) for t, event in zip(truth, events) if t["malformed"]}
    assert malformed and {d["original"] for d in dead} == malformed
    assert all(d["reason"] for d in dead)

    lead_records = scan_topic(bootstrap, topics.leads)
    compacted = {}
    for record in lead_records:
        compacted[record.key.decode()] = lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
    environmental = {r["complaint_id"] for r in enriched if r["environmental"]}
    membership = [cid for lead in compacted.values() for cid in lead.complaint_ids]
    assert len(membership) == len(set(membership)), "a complaint belongs to one lead only"
    assert environmental <= set(membership) <= valid_ids
    by_cluster = {}
    for r in enriched:  # the last enriched record of a complaint is its current matter
        by_cluster[r["complaint_id"]] = r["cluster_id"]
    for lead in compacted.values():
        assert {by_cluster[cid] for cid in lead.complaint_ids} == {lead.cluster_id}
        assert lead.report_count == len(lead.complaint_ids)
    return {"enriched_records": len(enriched), "enriched_duplicates": len(enriched) - len(valid_ids),
            "dead_letter_duplicates": len(dead) - len(malformed), "lead_records": len(lead_records),
            "leads": len(compacted)}


@pytest.fixture(scope="module")
def generated():
    events = list(generate_events(400, seed=11))
    truth = [event.truth for event in events]
    return events, truth


@pytest.mark.parametrize("kafka_client, unplaced_worker", [("native", True), ("python", False)])
def test_stream_with_a_restart_keeps_every_complaint_and_one_lead_per_matter(kafka_broker, tmp_topics, generated,
                                                                              monkeypatch, kafka_client,
                                                                              unplaced_worker):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "e2e-key")
    events, truth = generated
    names = tmp_topics("raw", "enriched", "leads", "dead_letter", partitions=2)
    topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
    bootstrap = kafka_broker.bootstrap_servers
    assert produce_lines(bootstrap, topics.raw, (event.line for event in events)) == 400

    beam_args = ["--runner=FnApiRunner"]
    first = run_stream(bootstrap, topics, beam_args, group_id="e2e", max_round_events=150, max_rounds=1,
                       poll_wait_s=1.0, round_wait_s=None, kafka_client=kafka_client,
                       unplaced_worker=unplaced_worker)
    assert first["events"] == 150
    # A new process: nothing survives but the committed offsets and the topics.
    second = run_stream(bootstrap, topics, beam_args, group_id="e2e", max_round_events=150,
                        stop_when_idle_s=2.0, poll_wait_s=1.0, kafka_client=kafka_client,
                        unplaced_worker=unplaced_worker)
    assert first["events"] + second["events"] == 400

    _check_outputs(bootstrap, topics, truth, events)


def test_stream_killed_mid_round_loses_nothing_and_keeps_one_lead_per_matter(kafka_broker, tmp_topics, generated,
                                                                              tmp_path, record_property):
    """``envleads stream`` killed with SIGKILL at a random point of consumption, then restarted:
    re-processing the uncommitted round may repeat enriched records (at-least-once), never leads."""
    events, truth = generated
    names = tmp_topics("raw", "enriched", "leads", "dead_letter", partitions=2)
    topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
    bootstrap = kafka_broker.bootstrap_servers
    produce_lines(bootstrap, topics.raw, (event.line for event in events))
    seed = int(os.environ.get("ENVLEADS_CRASH_SEED", time.time_ns() % 10_000))
    kill_after = random.Random(seed).randrange(10, 330)  # enriched records seen before the kill
    marker = f"crash-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "ENVLEADS_PSEUDONYM_KEY": "e2e-key", "ENVLEADS_TEST_MARKER": marker}
    command = _stream_command(bootstrap, names, "crash", "--max-round-events", "40", "--round-wait", "0.1",
                              "--stop-when-idle", "3")
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    from envleads.pipelines.kafka_edge.read import open_consumer

    watcher = open_consumer(bootstrap, topics.enriched, group_id=None)
    seen, deadline = 0, time.monotonic() + 240
    try:
        while seen < kill_after and first.poll() is None and time.monotonic() < deadline:
            seen += sum(len(records) for records in watcher.poll(timeout_ms=50).values())
    finally:
        watcher.close()
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL, f"the stream ended before the kill (seed {seed})"
    assert _wait_no_process_with(marker, 15), "a worker of the killed stream outlived it"
    second = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=300)
    assert second.returncode == 0, second.stdout.decode("utf-8", "replace")[-3000:]
    duplicates = _check_outputs(bootstrap, topics, truth, events)
    duplicates.update(seed=seed, killed_after_enriched_records=seen)
    record_property("replay_duplicates", duplicates)
    print(f"kill -9 after {seen} enriched records (seed {seed}): {duplicates}")


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
                          for record in scan_topic(bootstrap, topic)).decode("utf-8", "replace")
    logs = log_path.read_text("utf-8", "replace")
    assert "round 1" in logs  # the log is really the stream's
    leaks = sorted(value for value in identities if value in downstream or value in logs)
    assert leaks == []


def test_status_reports_lag_of_the_stream_group(kafka_broker, tmp_topics, generated):
    from envleads.ops.status import topic_status
    from envleads.pipelines.kafka_edge.read import commit_events, open_consumer, poll_new_events

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


def test_loading_the_store_is_not_idling(kafka_broker, tmp_topics, monkeypatch):
    """``stop_when_idle_s`` counts from when the stream is ready to read. Loading the lead topic and
    the state changelog takes 2 s or more (each read until quiet for 1 s); counted as idling, a
    stream with ``stop_when_idle_s=2`` whose first poll came back empty (its first fetch slower than
    the poll's wait, as over SASL_SSL on a busy machine) stopped before reading anything."""
    from envleads.pipelines.rounds import loop

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "e2e-key")
    names = tmp_topics("raw", "enriched", "leads", "dead_letter")
    topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
    bootstrap = kafka_broker.bootstrap_servers
    assert produce_lines(bootstrap, topics.raw, (event.line for event in generate_events(20, seed=13))) == 20
    real_open_session = loop.open_session

    def session_with_a_slow_first_fetch(*args, **kwargs):
        session = real_open_session(*args, **kwargs)
        real_poll, polls = session.poll, []

        def poll(max_records, wait_s, *rest, **options):
            polls.append(wait_s)
            if len(polls) == 1:
                time.sleep(wait_s)
                return []
            return real_poll(max_records, wait_s, *rest, **options)

        session.poll = poll
        return session

    monkeypatch.setattr(loop, "open_session", session_with_a_slow_first_fetch)
    totals = run_stream(bootstrap, topics, ["--runner=FnApiRunner"], group_id="idle", stop_when_idle_s=2.0,
                        poll_wait_s=1.0, round_wait_s=None, kafka_client="python")
    assert totals["events"] == 20
