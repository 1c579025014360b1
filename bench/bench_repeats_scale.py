"""How the cost of one repeat assignment grows with the size of a city's matter index.

Repeat detection keys complaints by city; a busy city holds thousands of live matters in one
``MatterIndex``, and each assignment looks up document frequencies in that index's postings and
compares the candidates it finds. This script assigns generated complaints (``envleads.generator``,
decoded text, no region: one city key, no expiry) to a single index and reports the CPU time per
assignment over the last ``--tail`` complaints of each size, so the trend is visible, and the
clustering quality against the generator's true matters (pairwise precision/recall, B-cubed F1),
so that a change making large indexes cheaper shows what it costs in quality:

    .venv/bin/python bench/bench_repeats_scale.py [--sizes 2000,6000,12000] [--tail 1500]

Prints a table and writes bench/results/repeats_scale.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

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
                     event.truth["matter_id"]))
    return rows


def measure(count: int, tail: int, seed: int) -> dict:
    config = R.default_config()
    rows = _complaints(count, seed)
    features = [R.matter_features(text, title, [], None, [], config) for _, _, title, text, _ in rows]
    index = R.MatterIndex(config, "440100")
    start_tail = max(0, len(rows) - tail)
    tail_cpu = 0.0
    gold, predicted = {}, {}
    for n, ((complaint_id, event_ms, _, _, matter_id), feature) in enumerate(zip(rows, features)):
        started = time.process_time()
        assignment = index.assign(complaint_id, event_ms, feature)
        if n >= start_tail:
            tail_cpu += time.process_time() - started
        gold[complaint_id], predicted[complaint_id] = matter_id, assignment.cluster_id
    measured = len(rows) - start_tail
    scores = R.clustering_scores(gold, predicted)
    return {"complaints": len(rows), "live_matters": len(index), "postings": len(index._postings),
            "tail_complaints": measured, "ms_per_assignment": round(1000 * tail_cpu / max(1, measured), 3),
            **{k: round(scores[k], 4) for k in ("pairwise_precision", "pairwise_recall", "bcubed_f1")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,6000,12000", help="generated events per run (comma-separated)")
    parser.add_argument("--tail", type=int, default=1500, help="assignments timed at the end of each run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    runs = [measure(int(size), args.tail, args.seed) for size in args.sizes.split(",")]
    print(f"{'complaints':>10} {'live matters':>12} {'postings':>10} {'ms/assignment (CPU)':>20} "
          f"{'pair P':>7} {'pair R':>7} {'B3 F1':>7}")
    for run in runs:
        print(f"{run['complaints']:>10} {run['live_matters']:>12} {run['postings']:>10} {run['ms_per_assignment']:>20} "
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
