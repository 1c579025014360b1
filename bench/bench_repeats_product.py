"""Repeat-petition quality through the product's own path (``envleads evaluate-repeats``, which runs
``envleads batch`` with default settings), on every gold set the project has, in one table.

- ``real``: ``../shared/data/repeats_dev.jsonl`` (real messages of one city's board, place names
  anonymised), without and with an intake jurisdiction (any city code: the board is one city's);
- ``confusable dev`` / ``confusable locked``: the project's hand-written confusable corpus
  (``tests/data/confusable/``), as written (about half the rows carry an intake jurisdiction) and
  with every jurisdiction dropped. Every rule and threshold was chosen on the ``dev_*`` files;
  ``locked_*`` (other writers, other provinces) is reported and never tuned on.

    .venv/bin/python bench/bench_repeats_product.py [--engine beam|rounds] [--parts real dev locked]

``--parts real dev`` runs the sets rules may be chosen on and never opens the locked files (write
its ``--out`` outside ``bench/results/``: the figure of record holds every part).
"""
from __future__ import annotations

import argparse
import glob
import os
import time

from results_file import write_result
from envleads.repeats_evaluation import evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REAL = os.path.join(ROOT, "..", "shared", "data", "repeats_dev.jsonl")
CONFUSABLE = os.path.join(ROOT, "tests", "data", "confusable")


def corpus_files(part: str):
    return sorted(p for p in glob.glob(os.path.join(CONFUSABLE, f"{part}_*.jsonl")) if not p.endswith(".truth.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="beam", choices=["beam", "rounds"])
    parser.add_argument("--jurisdiction", default="430100", help="intake city code given to the real board")
    parser.add_argument("--out", default=None, help="default bench/results/repeats_product_<engine>.json")
    parser.add_argument("--parts", nargs="+", default=["real", "dev", "locked"], choices=["real", "dev", "locked"],
                        help="which sets to run (default all); without locked, the locked files are not read")
    args = parser.parse_args()
    sets = []
    if "real" in args.parts and os.path.exists(REAL):
        sets += [("real, no jurisdiction", [REAL], None, False), ("real, with jurisdiction", [REAL], args.jurisdiction, True)]
    for part in ("dev", "locked"):
        if part in args.parts and corpus_files(part):
            sets += [(f"confusable {part}, as written", corpus_files(part), None, True),
                     (f"confusable {part}, no jurisdiction", corpus_files(part), None, False)]
    results = []
    print(f"{'set':<34} {'P':>6} {'R':>6} {'B3 F1':>6} {'pairs gold/pred':>16} {'non-env joined':>15}")
    for name, paths, jurisdiction, with_jurisdiction in sets:
        started = time.perf_counter()
        report = evaluate(paths, jurisdiction, with_jurisdiction, args.engine)
        report.update(set=name, wall_s=round(time.perf_counter() - started, 1))
        results.append(report)
        print(f"{name:<34} {report['pairwise_precision']:>6.3f} {report['pairwise_recall']:>6.3f} "
              f"{report['bcubed_f1']:>6.3f} {int(report['gold_pairs']):>7}/{int(report['predicted_pairs']):<8} "
              f"{report['non_environmental_in_multi_report_matters']:>15}", flush=True)
    out = args.out or os.path.join(HERE, "results", f"repeats_product_{args.engine}.json")
    write_result(out, "repeats_product", results)


if __name__ == "__main__":
    main()
