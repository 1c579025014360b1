"""Cross-validation on the development part of the real labels: where classifier choices are made.

Every candidate is scored on the same folds (seed 0) of the development part
(``models/protocol.py``), the project's training rows on every training side; the locked part is
never read. Writes bench/results/cv_development.json (one entry per candidate, kept across runs).

    .venv/bin/python bench/cv_development.py default no_rare_rows synthetic_half [--folds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone

from envleads.models import pollution, protocol

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cv_development.json")
RARE_FILE = "handwritten_rare_v1.jsonl"

# name -> (hyper-parameter overrides, training files left out)
CANDIDATES = {
    "default": ({}, ()),
    "no_rare_rows": ({}, (RARE_FILE,)),
    "synthetic_half": ({"synthetic_weight": 0.5}, ()),
    "C4": ({"C": 4.0}, ()),
}


def project_rows(left_out) -> list:
    rows = []
    for path in pollution.training_files():
        if os.path.basename(path) not in left_out:
            rows.extend(pollution.read_jsonl(path))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(CANDIDATES))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    development, _ = protocol.real_parts(pollution.shared_data_dir())
    if not development:
        sys.exit("needs ../shared/data")
    results = json.load(open(RESULTS, encoding="utf-8")) if os.path.exists(RESULTS) else {}
    for name in args.names:
        hyper, left_out = CANDIDATES[name]
        report = pollution.cross_validate(development, folds=args.folds, seed=0,
                                          extra_train=project_rows(left_out), **hyper)
        results[name] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "folds": args.folds, "rows": len(development), "hyper": hyper,
                         "left_out": list(left_out),
                         **{k: report[k] for k in ("micro_f1", "macro_f1_frequent", "macro_f1_all",
                                                   "env_accuracy", "exact_match")},
                         "per_label_f1": {l: m["f1"] for l, m in report["per_label"].items()},
                         "fold_micro_f1": [f["micro_f1"] for f in report["folds"]]}
        print(name, json.dumps(results[name], ensure_ascii=False), flush=True)
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w", encoding="utf-8") as handle:
            json.dump(results, handle, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
