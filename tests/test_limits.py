"""Issue 26, item 1: a limit on every field and on a round's bytes, so that what an event can cost
is bounded by design.

Every field over its limit is dead-lettered with its own reason through both batch engines (and a
field at its limit is not); rounds are bounded in bytes in the rounds engine and in both Kafka
clients of the stream; one round of events with every field at its limit, next to events far over
the limits, stays under 2 GiB (peak RSS of the child process; slow: ~2 minutes each).
"""
import base64
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import uuid

import pytest

from envleads.decode import DecodeLimits, decode_event
from envleads.config import DEFAULT_ROUND_BYTES
from envleads.records import DeadLetter

LIMITS = DecodeLimits()
KEY = "limits-test-key"
GIB = 2 ** 30

# (reason, fields over the limit): byte limits, so CJK values are over with a third of the characters
OVER = [
    ("address_too_large", {"address": "噪" * (LIMITS.max_address_bytes // 3 + 1)}),
    ("channel_too_large", {"channel": "c" * (LIMITS.max_channel_bytes + 1)}),
    ("reporter_field_too_large", {"reporter": {"name": "张" * (LIMITS.max_reporter_field_bytes // 3 + 1)}}),
    ("reporter_field_too_large", {"reporter": {"phone": "1" * (LIMITS.max_reporter_field_bytes + 1)}}),
    ("reporter_field_too_large", {"reporter": {"id_number": int("9" * (LIMITS.max_reporter_field_bytes + 1))}}),
    ("jurisdiction_too_large", {"jurisdiction_adcode": "3" * (LIMITS.max_adcode_bytes + 1)}),
]
AT_LIMIT = {"address": "南京市鼓楼区" + "a" * (LIMITS.max_address_bytes - 18),
            "channel": "c" * LIMITS.max_channel_bytes, "jurisdiction_adcode": "3" * LIMITS.max_adcode_bytes,
            "reporter": {"name": "张" * (LIMITS.max_reporter_field_bytes // 3),
                         "phone": "1" * LIMITS.max_reporter_field_bytes,
                         "id_number": "2" * LIMITS.max_reporter_field_bytes}}
CONTENT = ("噪", "张", "ccc", "111", "999", "333")  # what a detail must never quote


def _line(complaint_id: str, **fields) -> bytes:
    document = {"complaint_id": complaint_id, "received_at": "2026-03-01T10:00:00+08:00",
                "text": "南京市鼓楼区化工厂夜里排放刺鼻废气"}
    document.update(fields)
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("reason, fields", OVER)
def test_a_field_over_its_limit_is_a_dead_letter_with_its_reason_and_no_content(reason, fields):
    payload = _line("c-over", **fields)
    result = decode_event(payload, "json", KEY.encode())
    assert isinstance(result, DeadLetter) and result.reason == reason and result.event_id == "c-over"
    assert result.original == payload and "bytes >" in result.detail
    assert not any(piece in result.detail for piece in CONTENT)


@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_both_batch_engines_dead_letter_each_field_over_its_limit(tmp_path, monkeypatch, engine):
    from envleads.cli import main

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", KEY)
    lines = {f"over-{n}": _line(f"over-{n}", **fields) for n, (_, fields) in enumerate(OVER)}
    lines["at-limit"] = _line("at-limit", **AT_LIMIT)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"\n".join(lines.values()) + b"\n")
    assert main(["batch", "--input", str(source), "--output", str(output), "--engine", engine,
                 "--runner=FnApiRunner"]) == 0
    dead = [json.loads(line) for line in (tmp_path / "out.deadletter.jsonl").read_text("utf-8").splitlines()]
    assert sorted((d["event_id"], d["reason"]) for d in dead) == \
        sorted((f"over-{n}", reason) for n, (reason, _) in enumerate(OVER))
    for letter in dead:
        assert base64.b64decode(letter["original_base64"]) == lines[letter["event_id"]]
        assert not any(piece in letter["detail"] for piece in CONTENT)
    assert [json.loads(line)["complaint_id"] for line in output.read_text("utf-8").splitlines()] == ["at-limit"]


# ----------------------------------------------------------------------------------- round bytes
def test_the_rounds_engine_bounds_each_round_by_its_bytes(tmp_path, monkeypatch):
    from envleads.cli import main
    from envleads.generator import generate_events
    from envleads.pipelines.rounds.engine import LocalRoundEngine

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", KEY)
    lines = [event.line for event in generate_events(60, seed=53)]
    lines.append(_line("big", text="工厂排污" * 1500))  # 18 KB: over the budget alone
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    budget = 4000
    rounds = []
    enrich = LocalRoundEngine.enrich
    monkeypatch.setattr(LocalRoundEngine, "enrich",
                        lambda self, events: rounds.append([len(e.payload) for e in events]) or enrich(self, events))
    assert main(["batch", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--engine", "rounds",
                 "--enrich-workers", "0", "--round-bytes", str(budget)]) == 0
    rounds = [sizes for sizes in rounds if sizes]  # the stages' set-up call
    assert sorted(size for sizes in rounds for size in sizes) == sorted(map(len, lines))
    assert all(sum(sizes) <= budget or len(sizes) == 1 for sizes in rounds)
    assert [sizes for sizes in rounds if sum(sizes) > budget] == [[len(lines[-1])]]
    assert len(rounds) > sum(map(len, lines[:-1])) // budget


def _produce(bootstrap, topic, values):
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    producer = KafkaProducer(**client_kwargs(bootstrap, role="producer"))
    for number, value in enumerate(values):
        producer.send(topic, value=value, partition=number % 2)
    producer.flush(10)
    producer.close()


def _poll_rounds(poll, budget):
    rounds = []
    while True:
        events = poll(1000, 3.0 if not rounds else 1.0, None, budget)
        if not events:
            return rounds
        rounds.append(events)


def _check_rounds(rounds, values, budget):
    read = [event.payload for events in rounds for event in events]
    assert sorted(read) == sorted(values)  # each once: none skipped, none twice
    assert all(sum(len(e.payload) for e in events) <= budget or len(events) == 1 for events in rounds)
    for partition in (0, 1):  # and in order within a partition
        offsets = [e.source.offset for events in rounds for e in events if e.source.partition == partition]
        assert offsets == sorted(offsets) == list(range(len(offsets)))


def _values():
    values = [b"%04d" % number + b"x" * 996 for number in range(40)]  # 1,000 bytes each
    values[17] = b"big" * 3000  # over the budget alone
    return values


@pytest.mark.kafka
def test_the_stream_poll_bounds_a_round_by_its_bytes_kafka_python(kafka_broker, tmp_topics):
    from envleads.pipelines.kafka_edge.read import open_consumer, poll_new_events

    assert inspect.signature(poll_new_events).parameters["max_bytes"].default == DEFAULT_ROUND_BYTES
    names = tmp_topics("raw", partitions=2)
    values = _values()
    _produce(kafka_broker.bootstrap_servers, names["raw"], values)
    consumer = open_consumer(kafka_broker.bootstrap_servers, names["raw"], group_id=f"limits-{uuid.uuid4().hex[:8]}")
    try:
        rounds = _poll_rounds(lambda *args: poll_new_events(consumer, *args), 4500)
    finally:
        consumer.close()
    _check_rounds(rounds, values, 4500)
    assert len(rounds) >= 10


@pytest.mark.kafka
def test_the_stream_poll_bounds_a_round_by_its_bytes_native(kafka_broker, tmp_topics):
    from envleads.pipelines.kafka_edge.native import NativeKafkaSession, native_client_available

    if not native_client_available():
        pytest.skip("confluent-kafka is not installed")
    assert inspect.signature(NativeKafkaSession.poll).parameters["max_bytes"].default == DEFAULT_ROUND_BYTES
    names = tmp_topics("raw", partitions=2)
    values = _values()
    _produce(kafka_broker.bootstrap_servers, names["raw"], values)
    session = NativeKafkaSession(kafka_broker.bootstrap_servers, names["raw"], f"limits-{uuid.uuid4().hex[:8]}")
    try:
        rounds = _poll_rounds(session.poll, 4500)
    finally:
        session.close()
    _check_rounds(rounds, values, 4500)
    assert len(rounds) >= 10


# ---------------------------------------------------------------------------------------- memory
def _bench():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                        "bench_limits_memory.py")
    spec = importlib.util.spec_from_file_location("envleads_bench_limits_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Runs the command given as arguments and prints its result and peak RSS: in a fresh process, so
# that RUSAGE_CHILDREN sees this one child only.
_MEASURE = ("import json, resource, subprocess, sys; run = subprocess.run(sys.argv[1:], capture_output=True, "
            "text=True); print(json.dumps([run.returncode, run.stdout, run.stderr[-2000:], "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))")


def _batch_peak(tmp_path, lines, engine, *flags):
    from envleads.models.registry import ensure_default_model

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    command = [sys.executable, "-m", "envleads.cli", "batch", "--input", str(source),
               "--output", str(tmp_path / "out.jsonl"), "--leads", str(tmp_path / "leads.jsonl"),
               "--engine", engine, "--runner=FnApiRunner", f"--model_version={ensure_default_model()}", *flags]
    env = {**os.environ, "ENVLEADS_PSEUDONYM_KEY": KEY}
    measured = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, env=env,
                              check=True)
    returncode, stdout, stderr, peak = json.loads(measured.stdout.splitlines()[-1])
    assert returncode == 0, stderr
    return json.loads(stdout.splitlines()[-1]), peak


def _over_limit_lines(count: int):
    """Events with a 1 MB address (within the event limit; 70 MB each in enrichment when the
    address was unbounded), later than the limit-size events, so that those stay one round."""
    return [_line(f"huge-{n}", address="南京市鼓楼区" + "路" * 330_000, received_at="2026-04-01T10:00:00+08:00")
            for n in range(count)]


@pytest.mark.slow
def test_one_round_of_limit_size_events_stays_under_2_gib_in_the_rounds_engine(tmp_path):
    """One process (no enrichment worker), one full round at the default byte budget."""
    limit_size = _bench().limit_size_events(600)
    round_lines, size = [], 0
    for line in limit_size:
        if size + len(line) > DEFAULT_ROUND_BYTES:
            break
        round_lines.append(line)
        size += len(line)
    counts, peak = _batch_peak(tmp_path, round_lines + _over_limit_lines(30), "rounds", "--enrich-workers", "0")
    assert counts["enriched"] == len(round_lines) > 300 and counts["dead_letters"] == 30
    assert peak < 2 * GIB, f"peak RSS {peak / 2 ** 20:.0f} MB"


@pytest.mark.slow
def test_limit_size_events_stay_under_2_gib_in_the_beam_engine(tmp_path):
    """The Beam engine holds every complaint of the file (~0.7 MB each at the field limits), so
    this is a smaller file, not a round."""
    lines = _bench().limit_size_events(150) + _over_limit_lines(30)
    counts, peak = _batch_peak(tmp_path, lines, "beam")
    assert counts["enriched"] == 150 and counts["dead_letters"] == 30
    assert peak < 2 * GIB, f"peak RSS {peak / 2 ** 20:.0f} MB"
