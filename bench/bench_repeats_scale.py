"""How the cost of one repeat assignment grows with the size of a city's matter index.

Repeat detection keys complaints by city; a busy city holds thousands of live matters in one
``MatterIndex``, and each assignment looks up document frequencies in that index's postings and
compares the candidates it finds. This script assigns generated complaints (``envleads.generator``,
decoded text, no region: one city key, no expiry) to a single index and reports the CPU time per
assignment over the last ``--tail`` complaints of each size, so the trend is visible, and the
clustering quality against the generator's true matters (pairwise precision/recall, B-cubed F1),
so that a change making large indexes cheaper shows what it costs in quality:

    .venv/bin/python bench/bench_repeats_scale.py [--sizes 2000,6000,12000] [--tail 1500]
        [--block 440100|unknown] [--max-rare-holders 2048,512]

Prints a table and writes bench/results/repeats_scale.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from typing import Optional

from envleads import repeats as R
from envleads.generator import generate_events

RESULTS = os.path.join(os.path.dirname(__file__), "results", "repeats_scale.json")


def _complaints(count: int, seed: int):
    rows = []
    for event in generate_events(count, seed):
        if event.truth.get("malformed"):
            continue
        document = json.loads(event.line)
        rows.append((document["complaint_id"], R._record_time(document), document.get("title") or "", document["text"],
                     event.truth["matter_id"], event.truth["labels"]))
    return rows


def _prepared(count: int, seed: int, config) -> tuple:
    rows = _complaints(count, seed)
    # the generator's true types stand in for the classifier's (a matter is environmental or not)
    return rows, [R.matter_features(text, title, [], None, types, config) for _, _, title, text, _, types in rows]


def measure(count: int, tail: int, seed: int, block: str = "440100", max_rare_holders: Optional[int] = None,
            prepared: Optional[tuple] = None) -> dict:
    config = R.default_config()
    if max_rare_holders is not None:
        config = dataclasses.replace(config, max_rare_holders=max_rare_holders,
                                     max_rare_holders_unplaced=max_rare_holders)
    rows, features = prepared or _prepared(count, seed, config)
    index = R.MatterIndex(config, block)
    start_tail = max(0, len(rows) - tail)
    tail_cpu = 0.0
    gold, predicted = {}, {}
    for n, ((complaint_id, event_ms, _, _, matter_id, _), feature) in enumerate(zip(rows, features)):
        started = time.process_time()
        assignment = index.assign(complaint_id, event_ms, feature)
        if n >= start_tail:
            tail_cpu += time.process_time() - started
        gold[complaint_id], predicted[complaint_id] = matter_id, assignment.cluster_id
    measured = len(rows) - start_tail
    scores = R.clustering_scores(gold, predicted)
    cap = config.max_rare_holders_unplaced if block == R.UNKNOWN_BLOCK else config.max_rare_holders
    return {"complaints": len(rows), "block": block, "max_rare_holders": cap,
            "live_matters": len(index), "postings": len(index._postings),
            "tail_complaints": measured, "ms_per_assignment": round(1000 * tail_cpu / max(1, measured), 3),
            **{k: round(scores[k], 4) for k in ("pairwise_precision", "pairwise_recall", "bcubed_f1")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,6000,12000", help="generated events per run (comma-separated)")
    parser.add_argument("--tail", type=int, default=1500, help="assignments timed at the end of each run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--block", default="440100",
                        help="the index's blocking key: a city code, or 'unknown' for the complaints of no known "
                             "city (text-only joins need a higher similarity there)")
    parser.add_argument("--max-rare-holders", default=None,
                        help="comma-separated caps of rare-shingle holders to compare on the same complaints "
                             "(idf.max_rare_holders, or idf.max_rare_holders_unplaced for --block unknown; "
                             "default: the configured one)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    caps = [int(c) for c in args.max_rare_holders.split(",")] if args.max_rare_holders else [None]
    runs = []
    for size in args.sizes.split(","):
        prepared = _prepared(int(size), args.seed, R.default_config())
        runs.extend(measure(int(size), args.tail, args.seed, args.block, cap, prepared) for cap in caps)
    print(f"{'complaints':>10} {'block':>8} {'rare cap':>8} {'live matters':>12} {'postings':>10} "
          f"{'ms/assignment (CPU)':>20} {'pair P':>7} {'pair R':>7} {'B3 F1':>7}")
    for run in runs:
        print(f"{run['complaints']:>10} {run['block']:>8} {run['max_rare_holders']:>8} {run['live_matters']:>12} "
              f"{run['postings']:>10} {run['ms_per_assignment']:>20} "
              f"{run['pairwise_precision']:>7} {run['pairwise_recall']:>7} {run['bcubed_f1']:>7}")
    document = {"name": "repeats_scale", "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
                "config_version": R.default_config().version, "runs": runs}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
