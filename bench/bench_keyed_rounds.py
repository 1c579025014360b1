"""CPU per complaint of the stream engine's keyed stages, offline: repeat assignment, lead building,
output encoding and the lead store, round by round, as :class:`LocalRoundEngine` runs them.

``bench_stream.py --backfill 1000000`` is the figure of record, but it takes a quarter of an hour and
its wall time drifts with the host. This runs the same code over the first ``--events`` complaints
of the 1,000,000-complaint generated stream (so they arrive as densely as there: the 90-day window
fills after about 125,000), enriched once and cached, with no broker and all keys in this process,
under the stream process's garbage collection (``pipelines/heap.py``: the loaded rounds are frozen
with the setup), and reports CPU seconds per complaint per stage over the last ``--tail``
complaints (a full window).
Use it to compare two versions of the keyed code (run both at once, one per core: the host's speed
drifts within minutes; both must print the same outputs digest); the backfill says what the whole
system does. The cache holds pickled records: delete it when the enrichment's records change.

    .venv/bin/python bench/bench_keyed_rounds.py [--events 300000] [--tail 100000] [--cache FILE]
        [--profile FILE]

Prints a table and writes bench/results/keyed_rounds.json.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import hashlib
import json
import os
import pickle
import platform
import sys
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "keyed_rounds.json")
STREAM_SIZE = 1_000_000  # the generated stream's size sets its density (complaints per day)
ROUND = 2000  # events per round, as the backfill's max_round_events


def enriched_rounds(events: int, seed: int, cache: str):
    """The enriched rounds (``[(enriched, dead letters)]``) of the first ``events`` generated events,
    from ``cache`` when it holds them."""
    if os.path.exists(cache):
        try:
            with open(cache, "rb") as handle:
                saved = pickle.load(handle)
        except (AttributeError, ImportError):  # pickled by code whose record classes lived elsewhere
            saved = {}
        if saved.get("events") == events and saved.get("seed") == seed:
            return saved["rounds"]
    from itertools import islice

    from envleads.generator import generate_events
    from envleads.pipelines.options import prepared_run
    from envleads.pipelines.rounds.enrich import Enricher
    from envleads.pipelines.kafka_edge.write import raw_event_bytes
    from envleads.records import RawEvent

    _, settings = prepared_run(["--runner=FnApiRunner"])
    enricher = Enricher(settings, keep_tokens=False, wire_parts=True)  # as the enrichment workers
    raw = [RawEvent(raw_event_bytes(event.line), "avro")
           for event in islice(generate_events(STREAM_SIZE, seed), events)]
    rounds = [enricher.enrich(raw[start:start + ROUND]) for start in range(0, len(raw), ROUND)]
    with open(cache, "wb") as handle:
        pickle.dump({"events": events, "seed": seed, "rounds": rounds}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return rounds


def run(rounds, tail: int, profile: str = None) -> Dict[str, object]:
    from envleads.pipelines.options import prepared_run
    from envleads.pipelines.heap import RoundCollector
    from envleads.pipelines.rounds.engine import LocalRoundEngine, RoundOutputs
    from envleads.pipelines.rounds.outputs import Topics, output_records
    from envleads.pipelines.rounds.store import LeadStore

    _, settings = prepared_run(["--runner=FnApiRunner"])
    store = LeadStore()
    engine = LocalRoundEngine(settings, store, checkpoint=True)  # as the stream runs it
    topics = Topics()
    stages = ("assign", "build_leads", "encode", "store", "full_gc")
    cpu = {stage: 0.0 for stage in stages}
    counted, leads, seen = 0, 0, 0
    digest = hashlib.sha256()  # of every assignment and lead: two versions must agree on it
    total = sum(len(enriched) + len(dead) for enriched, dead in rounds)
    profiler = cProfile.Profile() if profile else None
    clock = time.process_time
    collector = RoundCollector().start()  # as in the stream process; the cached rounds are frozen
    for enriched, dead in rounds:
        size = len(enriched) + len(dead)
        timed = seen + size > total - tail
        if timed and profiler is not None:
            profiler.enable()
        t0 = clock()
        reports, _, state = engine.assign(enriched)
        t1 = clock()
        built = engine.build_leads(reports)
        t2 = clock()
        _, written = output_records(topics, RoundOutputs(reports, built, dead, state))
        t3 = clock()
        store.put_leads(written)
        store.put_state(state)
        t4 = clock()
        collector.after_round()
        t5 = clock()
        if profiler is not None:
            profiler.disable()
        for report in reports:
            digest.update(f"{report.enriched.complaint.complaint_id}>{report.enriched.cluster_id};".encode())
        for lead in built:
            digest.update(f"{lead.lead_id}:{lead.report_count}:{lead.score}:{lead.tier};".encode())
        seen += size
        if timed:
            counted += size
            leads += len(built)
            for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                cpu[stage] += seconds
    collector.stop()
    store.close()
    if profiler is not None:
        profiler.dump_stats(profile)
    per = {stage: round(1000 * seconds / max(1, counted), 4) for stage, seconds in cpu.items()}
    per["total"] = round(sum(per.values()), 4)
    return {"complaints_timed": counted, "leads_built": leads, "matters_in_memory": engine.matters_in_memory(),
            "cpu_ms_per_complaint": per, "outputs_sha256": digest.hexdigest()[:16]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="first events of the generated stream")
    parser.add_argument("--tail", type=int, default=100_000, help="events timed at the end")
    parser.add_argument("--seed", type=int, default=11, help="generator seed (the backfill's)")
    parser.add_argument("--cache", default=None, help="enriched rounds (default: in the temp folder)")
    parser.add_argument("--profile", default=None, metavar="FILE", help="cProfile of the timed rounds")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("ENVLEADS_PSEUDONYM_KEY", "bench-keyed-rounds-key")
    cache = args.cache or os.path.join("/tmp", f"envleads-keyed-rounds-{args.events}-{args.seed}.pickle")
    started = time.perf_counter()
    rounds = enriched_rounds(args.events, args.seed, cache)
    prepared_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run(rounds, args.tail, args.profile)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    import apache_beam

    document = {
        "name": "keyed_rounds",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "beam": apache_beam.__version__},
        "params": {"events": args.events, "tail": args.tail, "seed": args.seed, "round": ROUND,
                   "prepare_s": round(prepared_s, 1)},
        "result": result,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    per = result["cpu_ms_per_complaint"]
    print(f"keyed stages over the last {result['complaints_timed']:,} of {args.events:,} complaints "
          f"({result['matters_in_memory']:,} matters in memory at the end)")
    print(f"outputs digest {result['outputs_sha256']}")
    print("| stage | CPU ms per complaint |\n|---|---|")
    for stage, value in per.items():
        print(f"| {stage} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
