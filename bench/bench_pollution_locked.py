"""Pollution-type quality through ``envleads batch``: the locked part of the real labels (the
result), the project-written hard sets and the outside writers' texts of the confusable corpus
(``outside_dev``: writers a–i, whose files repeat rules were chosen on, never classifier choices;
``outside_locked``: writers j, k, never read), side by side, per label.

The model is the production model of the registry (``--registry``; a fresh registry trains and
promotes the default model first, on the development part only, as a fresh clone does). Nothing
here is used for a choice: choices are made by ``bench/cv_development.py`` on the development part.

    .venv/bin/python bench/bench_pollution_locked.py [--registry DIR] [--out PATH]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from results_file import write_result
from envleads.models import evaluation, pollution, protocol

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "pollution_locked.json")
HARD_SETS = ("hard_cases", "rare_labels", "new_categories")


def summary(report: dict) -> dict:
    keys = ("n", "rows_missing", "micro_f1", "macro_f1_frequent", "macro_f1_all", "env_accuracy",
            "exact_match", "needs_review_rate", "review", "model_version", "by_origin")
    return {**{k: report.get(k) for k in keys},
            "per_label": {l: {"f1": m["f1"], "support": m["support"]} for l, m in report["per_label"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=None, help="model registry (default: a fresh one)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    registry_dir = args.registry or tempfile.mkdtemp(prefix="envleads-registry-")
    beam_args = ["--model_registry", registry_dir]
    sets = {"locked": protocol.real_parts(pollution.shared_data_dir())[1]}
    sets.update((name, evaluation.hard_set(name)) for name in HARD_SETS)
    sets.update((f"outside_{part}", evaluation.outside_writer_set(part)) for part in ("dev", "locked"))
    results = {}
    for name, rows in sets.items():
        if not rows:
            print(f"{name}: no rows (../shared/data absent?)", file=sys.stderr)
            continue
        results[name] = summary(evaluation.evaluate_through_batch(rows, beam_args=beam_args))
        per_label = " ".join(f"{l} {m['f1']:.2f}({m['support']})" for l, m in results[name]["per_label"].items())
        print(f"{name:15s} n={results[name]['n']} micro {results[name]['micro_f1']:.3f} "
              f"macro {results[name]['macro_f1_all']:.3f} env {results[name]['env_accuracy']:.3f} | {per_label}",
              flush=True)
    write_result(args.out, "pollution_locked", results)


if __name__ == "__main__":
    main()
