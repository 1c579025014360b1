"""Repeat detection through the whole batch pipeline on generated traffic with known repeats.

For each seed: ``envleads generate --count N --seed S``, ``envleads batch`` (the full path: decode,
segment, classify, resolve region, deduplicate, build leads) and ``envleads evaluate-batch``
against the generator's truth. Reports pairwise precision/recall and B-cubed F1 of the matters,
the number of leads against the number of true environmental matters (target: within 5%), and the
share of multi-report matters that hold reports of more than one true matter, and of multi-report leads
(issue 21: under 1%; a non-environmental matter makes no lead). Below about 10,000 complaints
the stream spans less than the 90-day window, so namesakes meet less often than in a long stream.
Seeds 5 and 9 were looked at while the repeat rules were chosen; report other seeds.
Prints a table and writes bench/results/repeats_pipeline.json.

    .venv/bin/python bench/bench_repeats_pipeline.py [--count 5000] [--seeds 31 37]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ENVLEADS = os.path.join(os.path.dirname(sys.executable), "envleads")


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([ENVLEADS, *argv], check=True, capture_output=True, text=True, **kwargs)


def one_seed(count: int, seed: int, folder: str) -> dict:
    events = os.path.join(folder, f"events-{seed}.jsonl")
    output = os.path.join(folder, f"enriched-{seed}.jsonl")
    leads = os.path.join(folder, f"leads-{seed}.jsonl")
    _run(["generate", "--count", str(count), "--seed", str(seed), "--output", events])
    env = dict(os.environ, ENVLEADS_PSEUDONYM_KEY=os.environ.get("ENVLEADS_PSEUDONYM_KEY", "bench-key"))
    started = time.perf_counter()
    _run(["batch", "--input", events, "--output", output, "--leads", leads], env=env)
    wall = time.perf_counter() - started
    report = _run(["evaluate-batch", "--output", output, "--truth", events[:-len(".jsonl")] + ".truth.jsonl",
                   "--leads", leads]).stdout
    scores = json.loads(report[report.index("{"):])
    repeats, lead_count = scores["repeats"], scores["leads"]
    return {"seed": seed, "events": count, "batch_wall_s": round(wall, 1),
            **{k: round(repeats[k], 4) for k in ("pairwise_precision", "pairwise_recall", "bcubed_f1")},
            "gold_pairs": int(repeats["gold_pairs"]), "predicted_pairs": int(repeats["predicted_pairs"]),
            "multi_report_matters": repeats["multi_report_matters"],
            "multi_report_matters_mixed": repeats["multi_report_matters_mixed"],
            "leads": lead_count["leads"], "true_environmental_matters": lead_count["true_environmental_matters"],
            "lead_count_relative_error": lead_count["relative_error"],
            "multi_report_leads": lead_count["multi_report_leads"],
            "multi_report_leads_mixed": lead_count["multi_report_leads_mixed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[31, 37])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "repeats_pipeline.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = [one_seed(args.count, seed, folder) for seed in args.seeds]
    result = {
        "name": "repeats_pipeline",
        "command": " ".join([os.path.relpath(sys.executable)] + sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "note": "SHARED machine: other helpers ran tests and benchmarks at the same time"},
        "runs": runs,
        "mean": {k: round(sum(r[k] for r in runs) / len(runs), 4)
                 for k in ("pairwise_precision", "pairwise_recall", "bcubed_f1", "lead_count_relative_error")},
    }
    print(f"{'seed':>5} {'P':>6} {'R':>6} {'B3 F1':>6} {'leads':>6} {'matters':>8} {'error':>7} {'mixed':>10} "
          f"{'mixed leads':>12}")
    for r in runs:
        print(f"{r['seed']:>5} {r['pairwise_precision']:>6.3f} {r['pairwise_recall']:>6.3f} {r['bcubed_f1']:>6.3f} "
              f"{r['leads']:>6} {r['true_environmental_matters']:>8} {r['lead_count_relative_error']:>+7.3f} "
              f"{r['multi_report_matters_mixed']:>4}/{r['multi_report_matters']:<5} "
              f"{r['multi_report_leads_mixed']:>5}/{r['multi_report_leads']:<6}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
