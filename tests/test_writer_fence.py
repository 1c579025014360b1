"""One writer per group (issue 26, item 6), over the real embedded broker: a second ``envleads
stream`` of the same topics and group refuses to start while the first runs, nothing is processed
twice, the fence passes to a waiting stream when the first stops, and a stream that lost the fence
(paused past its session timeout) writes and commits nothing."""
import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types

import pytest

from envleads import schemas
from envleads.generator import generate_events
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.rounds.loop import run_stream
from envleads.pipelines.rounds.outputs import Topics
from envleads.pipelines.kafka_edge.write import produce_lines, raw_event_bytes
from envleads.pipelines.writer_fence import (WriterFence, WriterFenceAssignor, WriterFenceHeld, WriterFenceLost,
                                             fence_names)
from kafka_scan import scan_topic

KEY = "fence-key"


def _stream_command(bootstrap, names, group_id, *extra):
    return [sys.executable, "-m", "envleads.cli", "stream", "--bootstrap-servers", bootstrap,
            "--raw-topic", names["raw"], "--enriched-topic", names["enriched"], "--leads-topic", names["leads"],
            "--dead-letter-topic", names["dead_letter"], "--group-id", group_id, "--max-round-events", "60",
            "--round-wait", "0.1", "--enrich-workers", "0", "--no-unplaced-worker", *extra, "--runner=FnApiRunner"]


def _env():
    return {**os.environ, "ENVLEADS_PSEUDONYM_KEY": KEY}


def _wait_for(condition, timeout_s, what, process=None):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the stream exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.5)


def _committed_total(bootstrap, topic, group_id):
    """The sum over ``topic``'s partitions of ``group_id``'s committed offsets (None: none at all)."""
    from kafka import KafkaConsumer, TopicPartition

    from envleads.ops.kafka_config import client_kwargs

    consumer = KafkaConsumer(**client_kwargs(bootstrap, role="consumer", group_id=group_id))
    try:
        offsets = [consumer.committed(TopicPartition(topic, p)) for p in sorted(consumer.partitions_for_topic(topic))]
    finally:
        consumer.close()
    found = [offset for offset in offsets if offset is not None]
    return sum(found) if found else None


def _enriched_ids(bootstrap, topic):
    return [schemas.decode(schemas.ENRICHED, record.value)["complaint_id"]
            for record in scan_topic(bootstrap, topic, idle_s=1.0)]


def _stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.kafka
def test_a_second_stream_of_the_group_refuses_and_nothing_is_doubled(kafka_broker, tmp_topics, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", KEY)
    events = list(generate_events(360, seed=29))
    first, second, third = events[:120], events[120:300], events[300:]
    names = tmp_topics("raw", "enriched", "leads", "dead_letter", partitions=2)
    topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
    bootstrap = kafka_broker.bootstrap_servers
    group = "fence-two"
    produce_lines(bootstrap, topics.raw, (event.line for event in first))
    valid = lambda batch: {e.truth["complaint_id"] for e in batch if not e.truth["malformed"]}  # noqa: E731

    with open(tmp_path / "a.log", "wb") as log:
        stream_a = subprocess.Popen(_stream_command(bootstrap, names, group), stdout=log, stderr=subprocess.STDOUT,
                                    env=_env())
    waiter = None
    try:
        # A holds the fence once it has written the first batch's outputs
        _wait_for(lambda: valid(first) <= set(_enriched_ids(bootstrap, topics.enriched)), 240,
                  "enriched records of the first batch", stream_a)

        # B, same topics and group, while new events arrive (a second replica, a rolling update)
        stream_b = subprocess.Popen(_stream_command(bootstrap, names, group, "--stop-when-idle", "5"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        produce_lines(bootstrap, topics.raw, (event.line for event in second))
        out_b, err_b = stream_b.communicate(timeout=300)
        err_b = err_b.decode("utf-8", "replace")
        assert stream_b.returncode == 2, err_b[-3000:]
        refusals = [line for line in err_b.splitlines() if line.startswith("envleads stream: ")]
        assert len(refusals) == 1, err_b[-3000:]
        assert refusals[0].startswith(f"envleads stream: another envleads stream holds the writer fence of group "
                                      f"{group!r} (pid {stream_a.pid} on ")
        assert refusals[0].endswith("); stop it first or use --wait-for-fence")
        assert "Traceback" not in err_b and out_b == b""

        # A processes the second batch alone and commits all of it (the group's offsets reach the end)
        _wait_for(lambda: _committed_total(bootstrap, topics.raw, group) == len(first) + len(second), 240,
                  "commit of every event", stream_a)

        # C waits for the fence while A runs, and takes over when A stops
        results = {}

        def run_c():
            try:
                results["totals"] = run_stream(bootstrap, topics, ["--runner=FnApiRunner"], group_id=group,
                                               max_round_events=60, stop_when_idle_s=5.0, poll_wait_s=1.0,
                                               kafka_client="python", wait_for_fence=True)
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                results["error"] = error

        waiting = threading.Event()

        class Waiting(logging.Handler):
            def emit(self, record):
                if record.getMessage().startswith("waiting for the writer fence"):
                    waiting.set()

        handler = Waiting()
        logging.getLogger("envleads.pipelines.writer_fence").addHandler(handler)
        try:
            waiter = threading.Thread(target=run_c, name="stream-c")
            waiter.start()
            assert waiting.wait(240), results  # C found the fence held and waits for it
        finally:
            logging.getLogger("envleads.pipelines.writer_fence").removeHandler(handler)
        assert stream_a.poll() is None and "totals" not in results
        _stop(stream_a)
        assert stream_a.returncode in (0, 130)
        produce_lines(bootstrap, topics.raw, (event.line for event in third))
        waiter.join(300)
        assert not waiter.is_alive() and "error" not in results, results
        assert results["totals"]["events"] == len(third)  # from A's committed offsets: nothing read twice
    finally:
        _stop(stream_a)
        if waiter is not None:
            waiter.join(60)
    assert "holds the writer fence" not in (tmp_path / "a.log").read_text("utf-8", "replace")

    # every complaint enriched exactly once, every malformed event dead-lettered once
    enriched = [schemas.decode(schemas.ENRICHED, r.value) for r in scan_topic(bootstrap, topics.enriched)]
    counts = collections.Counter(r["complaint_id"] for r in enriched)
    assert set(counts) == valid(events) and set(counts.values()) == {1}
    dead = [schemas.decode(schemas.DEAD_LETTER, r.value) for r in scan_topic(bootstrap, topics.dead_letter)]
    malformed = [raw_event_bytes(e.line) for e in events if e.truth["malformed"]]
    assert malformed and sorted(d["original"] for d in dead) == sorted(malformed)
    # each complaint in exactly one lead of the compacted view, the lead of its own matter
    compacted = {}
    for record in scan_topic(bootstrap, topics.leads):
        compacted[record.key.decode()] = lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
    membership = [cid for lead in compacted.values() for cid in lead.complaint_ids]
    assert len(membership) == len(set(membership))
    assert {r["complaint_id"] for r in enriched if r["environmental"]} <= set(membership)
    cluster_of = {r["complaint_id"]: r["cluster_id"] for r in enriched}
    assert all({cluster_of[cid] for cid in lead.complaint_ids} == {lead.cluster_id} for lead in compacted.values())


@pytest.mark.kafka
def test_a_stream_that_lost_the_fence_writes_and_commits_nothing(kafka_broker, tmp_topics, tmp_path):
    """A stream frozen past its session timeout (a long pause, SIGSTOP here) is dropped from the
    fence group, and a waiting writer takes the fence; resumed, the old stream reads new events but
    writes none of their outputs, commits none of their offsets, and stops with one line."""
    events = [e for e in generate_events(40, seed=31) if not e.truth["malformed"]]
    names = tmp_topics("raw", "enriched", "leads", "dead_letter")
    bootstrap = kafka_broker.bootstrap_servers
    group = "fence-lost"
    log_path = tmp_path / "paused.log"
    with open(log_path, "wb") as log:
        paused = subprocess.Popen(_stream_command(bootstrap, names, group), stdout=log, stderr=subprocess.STDOUT,
                                  env=_env())
    successor = WriterFence(bootstrap, names["raw"], group, wait=True)
    try:
        _wait_for(lambda: "holding the writer fence" in log_path.read_text("utf-8", "replace"), 240,
                  "writer fence", paused)
        paused.send_signal(signal.SIGSTOP)
        # returns once the broker dropped the frozen stream from the group and gave the fence here
        taking = threading.Thread(target=successor.acquire, name="successor")
        taking.start()
        taking.join(120)
        assert successor.holds
        successor.confirm()
        produce_lines(bootstrap, names["raw"], (event.line for event in events))
        paused.send_signal(signal.SIGCONT)
        assert paused.wait(240) == 2
    finally:
        paused.send_signal(signal.SIGCONT)
        _stop(paused)
        successor.close()
    logs = log_path.read_text("utf-8", "replace")
    assert f"envleads stream: this stream lost the writer fence of group {group!r}" in logs
    assert "Traceback" not in logs
    assert _enriched_ids(bootstrap, names["enriched"]) == []
    assert scan_topic(bootstrap, names["leads"], idle_s=1.0) == []
    assert _committed_total(bootstrap, names["raw"], group) is None


@pytest.mark.kafka
def test_the_fence_is_released_on_close_and_refused_while_held(kafka_broker, tmp_topics):
    raw = tmp_topics("raw")["raw"]
    bootstrap = kafka_broker.bootstrap_servers
    assert fence_names(raw, "g") == (raw + ".writer", "g.writer")
    holder = WriterFence(bootstrap, raw, "g")
    holder.acquire()
    try:
        holder.confirm()
        with pytest.raises(WriterFenceHeld, match="another envleads stream holds the writer fence of group 'g'"):
            WriterFence(bootstrap, raw, "g").acquire()
        holder.confirm()  # kept through the rebalances of the refused member's join and leave
        # a replay writes the state the group's stream continues from: it is refused as well
        from envleads.pipelines.replay import replay
        from envleads.pipelines.rounds.outputs import Topics

        with pytest.raises(WriterFenceHeld):
            replay(bootstrap, Topics(raw, raw + ".enriched", raw + ".leads", raw + ".dead"), iter(()),
                   ["--runner=FnApiRunner"], group_id="g")
        holder.confirm()
        assert holder.holds
        # another group on the same topic has a fence of its own
        with WriterFence(bootstrap, raw, "other") as other:
            other.confirm()
    finally:
        holder.close()
    with pytest.raises(WriterFenceLost):
        holder.confirm()  # a closed fence proves nothing
    with WriterFence(bootstrap, raw, "g") as successor:  # no wait: the fence was left, not dropped later
        successor.confirm()


def test_a_join_that_never_settles_starts_again_from_a_new_consumer(kafka_broker, tmp_topics, monkeypatch):
    """kafka-python 3.0.12 can stop for good in a join (no more heartbeats, the coordinator looked
    for without end); acquire() then joins again from a new consumer instead of waiting it out."""
    raw = tmp_topics("raw")["raw"]
    monkeypatch.setattr(WriterFence, "REOPEN_UNSETTLED_AFTER_S", 8.0)  # a join on Tansu takes ~3 s
    keep = WriterFence._keep
    opened = []

    def stuck_first(self):
        opened.append(self._consumer)
        if len(opened) == 1:
            self._stop.wait()  # the stuck client: it never polls, so its join never settles
            return
        keep(self)

    monkeypatch.setattr(WriterFence, "_keep", stuck_first)
    fence = WriterFence(kafka_broker.bootstrap_servers, raw, "stuck")
    try:
        fence.acquire()
        fence.confirm()
        assert len(opened) == 2 and opened[0] is not opened[1]
    finally:
        fence.close()


def _member(member_id, topic, held=-1, waiting_since=0, pid=1):
    import json

    claim = {"held_generation": held, "waiting_since_ms": waiting_since, "who": {"pid": pid}}
    metadata = types.SimpleNamespace(topics=[topic], user_data=json.dumps(claim).encode())
    return types.SimpleNamespace(member_id=member_id, metadata=metadata)


def test_the_assignor_keeps_the_fence_with_its_holder():
    import json

    cluster = types.SimpleNamespace(partitions_for_topic=lambda topic: {0} if topic == "t.writer" else None)
    assignor = WriterFenceAssignor(fence=None)

    def holder_of(members):
        assignment = assignor.assign(cluster, members)
        holders = [m for m, a in assignment.items() if a.partitions()]
        assert len(holders) <= 1
        named = {json.dumps(json.loads(a.user_data)["holder"]) for a in assignment.values()}
        assert len(named) == 1
        return holders[0] if holders else None

    # the member that held it keeps it, whoever waited longer or sorts first
    assert holder_of([_member("a", "t.writer", waiting_since=1), _member("b", "t.writer", held=4, waiting_since=9)]) \
        == "b"
    # after a takeover, the newer holder wins over one that comes back from a pause
    assert holder_of([_member("a", "t.writer", held=4), _member("b", "t.writer", held=6, waiting_since=9)]) == "b"
    # nobody holds it: the one that has waited longest
    assert holder_of([_member("a", "t.writer", waiting_since=5), _member("b", "t.writer", waiting_since=3)]) == "b"
    # no fence topic: nobody
    assert holder_of([_member("a", "missing.writer"), _member("b", "missing.writer")]) is None
