"""A restart equals no restart, and a reused complaint id is never folded into a matter.

The round engine saves the changes of its keyed state with each round (``StateChanges``, the
stream's changelog topic); a new process rebuilt from the saved leads and changes must assign every
later complaint exactly as the process it replaces would have. Checked for the round engine (the
stream's and ``envleads batch --engine rounds``'s) with a stop and a new process at every round
boundary, with redelivered, late and unplaced complaints, in one process and with keys in the
keyed worker; for both batch engines across processes (what a rerun after a kill does); and for
``envleads stream`` over the real broker, stopped and started again after every round.
"""
import json
import os
import random
import subprocess
import sys

import pytest

from envleads import schemas
from envleads.generator import generate_events
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.engine import LocalRoundEngine
from envleads.pipelines.rounds.enrich import Enricher
from envleads.pipelines.rounds.loop import run_stream
from envleads.pipelines.rounds.outputs import Topics, _encode_lead
from envleads.pipelines.rounds.pools import KeyedAssigner
from envleads.pipelines.rounds.store import LeadStore, StateChanges
from envleads.pipelines.kafka_edge.write import produce_lines
from envleads.records import RawEvent
from envleads.repeats import UNKNOWN_BLOCK

ROUND = 120


def _stream_like_events(count: int, seed: int):
    """Generated events in rounds of ``ROUND``, with some delivered again in a later round and some
    arriving a few rounds late (their event time older than the round's)."""
    events = [RawEvent(event.line, "json") for event in generate_events(count, seed=seed)]
    rng = random.Random(seed)
    late = set(rng.sample(range(ROUND, count - 3 * ROUND), 30))
    ordered = [event for position, event in enumerate(events) if position not in late]
    for position in sorted(late):
        ordered.insert(min(len(ordered), position + rng.randrange(ROUND, 3 * ROUND)), events[position])
    for position in rng.sample(range(count - ROUND), 40):  # redeliveries
        ordered.insert(min(len(ordered), position + rng.randrange(1, 2 * ROUND)), ordered[position])
    return [ordered[start:start + ROUND] for start in range(0, len(ordered), ROUND)]


@pytest.fixture(scope="module")
def enriched_rounds():
    from envleads.models.registry import ensure_default_model

    enricher = Enricher(StageSettings(model_version=ensure_default_model()))
    return [(enricher.enrich(events), events) for events in _stream_like_events(1100, seed=23)]


def _outcome(outputs, assignments, leads):
    for report in outputs.enriched:
        enriched = report.enriched
        assignments.append((enriched.complaint.complaint_id, enriched.cluster_id, enriched.duplicate_of))
    for lead in outputs.leads:
        leads[lead.lead_id] = (lead.cluster_id, tuple(lead.complaint_ids), lead.report_count, lead.score, lead.tier)


def _run(enriched_rounds, restart_every_round: bool, keyed_worker=None):
    """The rounds through the engine; with restarts, a new engine and a new store rebuilt from
    what the rounds before wrote (leads and state changes, in order), as ``envleads stream`` does
    at start from its topics."""
    written_leads, written_state = [], []
    assignments, leads = [], {}
    store = LeadStore()
    engine = LocalRoundEngine(StageSettings(), store, keyed_worker=keyed_worker,
                              checkpoint=True)
    try:
        for number, ((enriched, dead), events) in enumerate(enriched_rounds):
            if restart_every_round and number:
                store.close()
                store = LeadStore()
                store.put_leads(written_leads)
                for changes in written_state:
                    store.put_state(changes)
                engine.forget()  # what a new process holds: nothing but the store
                engine = LocalRoundEngine(StageSettings(), store, keyed_worker=keyed_worker,
                                          checkpoint=True)
            outputs = engine.finish(enriched, dead, events)
            encoded = [(lead, _encode_lead(lead)) for lead in outputs.leads]
            store.put_leads(encoded)
            store.put_state(outputs.state)
            written_leads.extend(encoded)
            written_state.append(outputs.state)
            _outcome(outputs, assignments, leads)
    finally:
        store.close()
    return assignments, leads


def test_the_rounds_hold_what_a_restart_can_get_wrong(enriched_rounds):
    """Redeliveries, late events, unplaced complaints and matters that grow across rounds."""
    from envleads.leads import block_of_complaint

    rounds_of = {}
    ids = []
    for number, ((enriched, _), _) in enumerate(enriched_rounds):
        for item in enriched:
            ids.append(item.complaint.complaint_id)
            rounds_of.setdefault(item.complaint.complaint_id, set()).add(number)
    assert len(ids) - len(set(ids)) >= 30, "redeliveries"
    newest = 0
    late = 0
    for (enriched, _), _ in enriched_rounds:
        late += sum(1 for item in enriched if item.complaint.received_at_ms < newest - 86_400_000)
        newest = max([newest] + [item.complaint.received_at_ms for item in enriched])
    assert late >= 20, "late events"
    assert any(block_of_complaint(item) == UNKNOWN_BLOCK for (enriched, _), _ in enriched_rounds for item in enriched)
    assignments, _ = _run(enriched_rounds, restart_every_round=False)
    rounds_of_cluster = {}
    for cid, cluster, _ in assignments:
        rounds_of_cluster.setdefault(cluster, set()).update(rounds_of[cid])
    assert sum(1 for rounds in rounds_of_cluster.values() if len(rounds) > 1) >= 30, "matters across rounds"


def test_a_restart_at_every_round_boundary_assigns_and_scores_as_no_restart(enriched_rounds):
    uninterrupted = _run(enriched_rounds, restart_every_round=False)
    restarted = _run(enriched_rounds, restart_every_round=True)
    assert restarted[0] == uninterrupted[0]
    assert restarted[1] == uninterrupted[1]


def test_a_restart_with_keys_in_the_keyed_worker_assigns_as_no_restart(enriched_rounds):
    uninterrupted = _run(enriched_rounds, restart_every_round=False)
    assigner = KeyedAssigner()
    try:
        restarted = _run(enriched_rounds, restart_every_round=True, keyed_worker=assigner)
    finally:
        assigner.close()
    assert restarted == uninterrupted


def test_saved_state_covers_environmental_and_other_matters_and_their_expiry(enriched_rounds):
    store = LeadStore()
    engine = LocalRoundEngine(StageSettings(), store, checkpoint=True)
    changes = []
    try:
        for (enriched, dead), events in enriched_rounds:
            changes.append(engine.finish(enriched, dead, events).state)
    finally:
        store.close()
    rows = [json.loads(row) for state in changes for _, _, row in state.matters if row is not None]
    assert any(row[-1] for row in rows) and any(not row[-1] for row in rows), "both kinds of matter are saved"
    assert any(block == UNKNOWN_BLOCK for state in changes for block, _ in state.blocks)
    assert all(isinstance(state, StateChanges) for state in changes)


# ------------------------------------------------------------------------------ reused complaint ids
def _event(complaint_id, text, received_at="2026-05-01T10:00:00+08:00", **extra):
    return json.dumps({"complaint_id": complaint_id, "received_at": received_at, "text": text, **extra},
                      ensure_ascii=False)


REUSED = [
    _event("dup-1", "上海市浦东新区川沙镇华夏东路一家工地夜间施工噪声扰民，凌晨两点还在打桩。",
           "2026-05-01T22:00:00+08:00"),
    _event("dup-1", "广州市白云区太和镇一家塑料厂每天傍晚排放刺鼻废气，附近居民头晕恶心。",
           "2026-05-02T18:00:00+08:00"),
    _event("dup-1", "苏州市吴江区盛泽镇印染厂向河道偷排废水，河水发黑发臭。", "2026-05-03T09:00:00+08:00"),
    _event("ok-2", "苏州市吴江区盛泽镇印染厂向河道偷排废水，河水发黑发臭，已经持续一个月。",
           "2026-05-04T09:00:00+08:00"),
]


@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_a_reused_id_with_other_content_is_a_dead_letter_not_a_fold(tmp_path, monkeypatch, engine):
    import base64

    from envleads.pipelines.batch import run_batch, run_batch_rounds

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "restart-test-key")
    source = tmp_path / "in.jsonl"
    # the first line delivered twice: a redelivery, not a conflict
    source.write_text("\n".join([REUSED[0], *REUSED, ""]), encoding="utf-8")
    out, leads = tmp_path / "out.jsonl", tmp_path / "leads.jsonl"
    run = run_batch if engine == "beam" else run_batch_rounds
    run(str(source), str(out), str(leads), beam_args=["--runner=FnApiRunner"])
    enriched = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    dead = [json.loads(line) for line in (tmp_path / "out.deadletter.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [d["reason"] for d in dead] == ["duplicate_id_conflict"] * 2
    assert sorted(base64.b64decode(d["original_base64"]).decode("utf-8") for d in dead) == sorted(REUSED[1:3])
    kept = [record for record in enriched if record["complaint_id"] == "dup-1"]
    assert len(kept) == 2 and {record["cluster_id"] for record in kept} == {kept[0]["cluster_id"]}
    assert all(record["received_at"].startswith("2026-05-01") for record in kept), "the first by event time is kept"
    for line in leads.read_text(encoding="utf-8").splitlines():
        lead = json.loads(line)
        assert lead["complaint_ids"].count("dup-1") <= 1
        if "dup-1" in lead["complaint_ids"]:
            assert "ok-2" not in lead["complaint_ids"], "the dye works' repeat did not join the noise matter"


# ------------------------------------------------------------------------------------- batch reruns
@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_a_batch_rerun_in_another_process_writes_the_same_outputs(tmp_path, engine):
    """A killed batch leaves no output (it writes under temporary names); its rerun is a new
    process, with another hash seed, and must write what an uninterrupted run writes."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(event.line for event in generate_events(500, seed=29)) + b"\n")
    from envleads.models.registry import ensure_default_model

    model = ensure_default_model()  # one model for both runs, whatever is registered meanwhile
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"out-{hash_seed}.jsonl"
        leads = tmp_path / f"leads-{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "ENVLEADS_PSEUDONYM_KEY": "restart-test-key"}
        subprocess.run([sys.executable, "-m", "envleads.cli", "batch", "--input", str(source), "--output", str(out),
                        "--leads", str(leads), "--engine", engine, "--runner=FnApiRunner", f"--model_version={model}"],
                       check=True, env=env, capture_output=True)
        outputs.append((sorted(out.read_text(encoding="utf-8").splitlines()),
                        leads.read_text(encoding="utf-8").splitlines()))
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0]) > 400 and len(outputs[0][1]) > 100


# ------------------------------------------------------------------------------------ the stream
def _stream_outcome(bootstrap, topics):
    from kafka_scan import scan_topic

    clusters = {}
    for record in scan_topic(bootstrap, topics.enriched):  # the last record of a complaint is its matter
        value = schemas.decode(schemas.ENRICHED, record.value)
        clusters[value["complaint_id"]] = (value["cluster_id"], value["duplicate_of"])
    leads = {}
    for record in scan_topic(bootstrap, topics.leads):
        lead = lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
        leads[lead.lead_id] = (tuple(lead.complaint_ids), lead.report_count, lead.score, lead.tier)
    dead = sorted((d["reason"], d["event_id"] or "") for d in
                  (schemas.decode(schemas.DEAD_LETTER, r.value) for r in scan_topic(bootstrap, topics.dead_letter)))
    return clusters, leads, dead


@pytest.mark.kafka
def test_the_stream_stopped_after_every_round_ends_as_one_uninterrupted_run(kafka_broker, tmp_topics, monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "restart-test-key")
    bootstrap = kafka_broker.bootstrap_servers
    lines = [event.line for event in generate_events(600, seed=31)]
    lines += [REUSED[1].encode("utf-8"), REUSED[0].encode("utf-8"), lines[5]]  # a reused id, a redelivery
    outcomes = []
    for restart in (False, True):
        names = tmp_topics("raw", "enriched", "leads", "dead_letter")
        topics = Topics(names["raw"], names["enriched"], names["leads"], names["dead_letter"])
        produce_lines(bootstrap, topics.raw, [REUSED[0].encode("utf-8"), *lines])
        common = dict(group_id="restart", max_round_events=100, poll_wait_s=1.0, round_wait_s=None,
                      kafka_client="python")
        if restart:
            rounds = 0
            while True:  # a new process each round: nothing kept but the topics and offsets
                totals = run_stream(bootstrap, topics, ["--runner=FnApiRunner"], max_rounds=1,
                                    stop_when_idle_s=2.0, **common)
                if not totals["events"]:
                    break
                rounds += 1
            assert rounds == 7
        else:
            totals = run_stream(bootstrap, topics, ["--runner=FnApiRunner"], stop_when_idle_s=2.0, **common)
            assert totals["rounds"] == 7
        outcomes.append(_stream_outcome(bootstrap, topics))
    assert outcomes[1] == outcomes[0]
    clusters, leads, dead = outcomes[0]
    assert ("duplicate_id_conflict", "dup-1") in dead
    assert sum(1 for cluster, dup in clusters.values() if dup is not None) >= 20


@pytest.mark.parametrize("worker", [False, True])
def test_reports_of_one_source_at_every_depth_meet_across_a_restart(worker):
    """Issue 21, item 2, on restart: the plant's district report and the shop's in one round, its
    city-only report in the next, the reports placed by nothing in the third (after a restart, the
    city key they must search is held by no index yet: it comes back from the changelog) and the
    one placed by the intake jurisdiction last: one matter per source, as without a restart."""
    from envleads.evaluation import read_jsonl
    from envleads.models.registry import ensure_default_model

    lines = [json.dumps(event, ensure_ascii=False).encode("utf-8")
             for event in read_jsonl(os.path.join(os.path.dirname(__file__), "data", "blocking_depths.jsonl"))]
    enricher = Enricher(StageSettings(model_version=ensure_default_model()))
    rounds = [[RawEvent(line, "json") for line in part] for part in (lines[0:2], lines[2:3], lines[3:5], lines[5:6])]
    enriched_rounds = [(enricher.enrich(events), events) for events in rounds]
    assigner = KeyedAssigner() if worker else None
    try:
        uninterrupted = _run(enriched_rounds, restart_every_round=False, keyed_worker=assigner)
        restarted = _run(enriched_rounds, restart_every_round=True, keyed_worker=assigner)
    finally:
        if assigner is not None:
            assigner.close()
    assert restarted == uninterrupted
    matter = {cid: cluster for cid, cluster, _ in restarted[0]}
    assert len(matter) == 6
    assert len({matter[cid] for cid in ("jq-district", "jq-city", "jq-unplaced", "jq-intake")}) == 1
    assert matter["hd-unplaced"] == matter["hd-district"] != matter["jq-district"]
