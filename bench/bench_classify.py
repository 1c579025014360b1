"""Pollution-type classification throughput (and, with --compare, model quality by CV).

Measures complaints per second in one process (one core), segmentation included, in batches of
64 as the pipeline feeds them. Input: the shared pollution_dev.jsonl texts when present, else the
project's training rows. Prints a table and writes bench/results/classify.json.

    .venv/bin/python bench/bench_classify.py [--batch 64] [--repeat 3] [--compare]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

from envleads.models import pollution, registry
from envleads.text import build_tokenizer, segment

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "classify.json")

CANDIDATES = {
    "lr_words": {"model": "lr", "char_ngrams": False, "rules": False},
    "lr_words_chars_rules": {"model": "lr"},
    "svc_words_chars_rules": {"model": "svc"},
    "ensemble_lr_svc": {"model": "ensemble"},
}


def _docs():
    shared = pollution.shared_data_dir()
    path = os.path.join(shared, "pollution_dev.jsonl") if shared else None
    rows = pollution.read_jsonl(path) if path and os.path.exists(path) else \
        pollution.load_project_training()
    return [(r.get("title") or "", r["text"]) for r in rows], ("shared" if path else "project")


def _throughput(model, docs, batch, repeat):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        for start in range(0, len(docs), batch):
            model.predict(docs[start:start + batch])
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return len(docs) / best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", action="store_true",
                        help="also 5-fold CV each candidate model on the shared data (minutes)")
    args = parser.parse_args(argv)
    docs, source = _docs()
    chars = sum(len(t) + len(x) for t, x in docs)

    tokenizer = build_tokenizer()
    started = time.perf_counter()
    for title, text in docs:
        segment(tokenizer, title)
        segment(tokenizer, text)
    segment_rate = len(docs) / (time.perf_counter() - started)

    started = time.perf_counter()
    version = registry.ensure_default_model()
    ensure_seconds = time.perf_counter() - started
    model = registry.load_model(version)
    model.predict(docs[:2])  # warm the per-process tokenizer
    rows = [{"model": version, "complaints_per_s": round(_throughput(model, docs, args.batch,
                                                                     args.repeat), 1)}]

    quality = {}
    if args.compare:
        gold = [dict(r, synthetic=False) for r in pollution.read_jsonl(
            os.path.join(pollution.shared_data_dir(), "pollution_dev.jsonl"))]
        extra = pollution.load_project_training()
        with tempfile.TemporaryDirectory() as tmp:
            for name, hyper in CANDIDATES.items():
                report = pollution.cross_validate(gold, folds=5, seed=0, extra_train=extra, **hyper)
                quality[name] = {k: report[k] for k in ("micro_f1", "macro_f1_frequent",
                                                        "macro_f1_all", "env_accuracy")}
                pipeline = pollution.train_model(gold + extra, **hyper)
                candidate = pollution.PollutionModel(pipeline, version=name)
                candidate.predict(docs[:2])
                quality[name]["complaints_per_s"] = round(
                    _throughput(candidate, docs, args.batch, 1), 1)
                quality[name]["cv_seconds"] = report["cv"]["seconds"]

    print(f"input: {len(docs)} complaints ({source}), mean {chars / len(docs):.0f} chars, "
          f"batch {args.batch}, one process")
    print(f"{'what':<28}{'complaints/s':>14}")
    print(f"{'segmentation only':<28}{segment_rate:>14.1f}")
    for row in rows:
        print(f"{row['model']:<28}{row['complaints_per_s']:>14.1f}")
    if quality:
        print(f"\n{'candidate (5-fold CV)':<24}{'micro':>7}{'macroF':>8}{'macroA':>8}{'env':>7}"
              f"{'docs/s':>9}")
        for name, q in quality.items():
            print(f"{name:<24}{q['micro_f1']:>7.3f}{q['macro_f1_frequent']:>8.3f}"
                  f"{q['macro_f1_all']:>8.3f}{q['env_accuracy']:>7.3f}{q['complaints_per_s']:>9.1f}")

    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump({"input": source, "n": len(docs), "mean_chars": round(chars / len(docs)),
                   "batch": args.batch, "segmentation_per_s": round(segment_rate, 1),
                   "throughput": rows, "ensure_default_model_s": round(ensure_seconds, 1),
                   "comparison": quality, "python": platform.python_version(),
                   "argv": sys.argv}, handle, indent=2)
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
