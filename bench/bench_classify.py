"""Pollution-type classification throughput (and, with --compare, model quality by CV).

Measures complaints per second in one process (one core), in batches of 64 as the pipeline feeds
them: normalisation alone, segmentation alone (``segment_for_model``), classification of
pre-segmented complaints (what the pipeline's classify stage does once SegmentText hands it a
SegmentedDoc), and classification including segmentation (raw ``(title, text)`` pairs; the
headline number). Input: the shared pollution_dev.jsonl texts when present, else the project's
training rows. Prints a table and writes bench/results/classify.json.

    .venv/bin/python bench/bench_classify.py [--batch 64] [--repeat 3] [--compare [NAME ...]]

``--compare`` with names cross-validates only those candidates and keeps the other rows of the
last comparison table (each row says when and with which cue-term version it was measured).

Pin to one core for a per-core number: ``taskset -c 0 .venv/bin/python bench/bench_classify.py``.
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
from envleads.text import build_tokenizer, normalise, segment_for_model, segmenter_engine

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "classify.json")

# What --compare cross-validates (5 folds on the shared rows, project rows on every training side).
# The rule view, the stacker and the SVM / naive Bayes candidates were removed with their options
# (measured without gain); their rows stay in results/classify.json as history.
CANDIDATES = {
    "words_lr": {"char_ngrams": False, "rules": False},
    "chars_lr": {"words": False, "rules": False},
    "words_chars_lr": {"rules": False},
    "lr_words_chars_cues_no_gate": {"gate": False},
    "default: lr_words_chars_cues": {},
}


def _docs():
    shared = pollution.shared_data_dir()
    path = os.path.join(shared, "pollution_dev.jsonl") if shared else None
    if path and os.path.exists(path):
        rows, source = pollution.read_jsonl(path), "shared"
    else:
        rows, source = pollution.load_project_training(), "project"
    return [(r.get("title") or "", r["text"]) for r in rows], source


def _best_rate(run, n, repeat):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return n / best


def _batched(predict, docs, batch):
    def run():
        for start in range(0, len(docs), batch):
            predict(docs[start:start + batch])
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", nargs="*", default=None, metavar="NAME",
                        help="also 5-fold CV candidate models on the shared data (minutes each); "
                             "no names: all of them")
    args = parser.parse_args(argv)
    docs, source = _docs()
    n = len(docs)
    chars = sum(len(t) + len(x) for t, x in docs)

    tokenizer = build_tokenizer()
    rates = {}
    rates["normalise only"] = _best_rate(
        lambda: [(normalise(t), normalise(x)) for t, x in docs], n, args.repeat)
    rates[f"segmentation ({tokenizer.engine})"] = _best_rate(
        lambda: [segment_for_model(tokenizer, t, x) for t, x in docs], n, args.repeat)
    if tokenizer.engine != "jieba":
        slow = build_tokenizer(engine="jieba")
        rates["segmentation (pure-Python jieba)"] = _best_rate(
            lambda: [segment_for_model(slow, t, x) for t, x in docs], n, 1)

    started = time.perf_counter()
    version = registry.ensure_default_model()
    ensure_seconds = time.perf_counter() - started
    model = registry.load_model(version)
    model.predict(docs[:2])  # warm the per-process segmenter
    segmented = [segment_for_model(tokenizer, t, x) for t, x in docs]
    rates["classify, pre-segmented"] = _best_rate(
        _batched(model.predict, segmented, args.batch), n, args.repeat)
    rates["classify incl. segmentation"] = _best_rate(
        _batched(model.predict, docs, args.batch), n, args.repeat)

    quality = {}
    if args.compare is not None:
        shared = pollution.shared_data_dir()
        gold_path = os.path.join(shared, "pollution_dev.jsonl") if shared else None
        if not gold_path or not os.path.exists(gold_path):
            parser.error("--compare needs the shared pollution_dev.jsonl")
        gold = [dict(r, synthetic=False) for r in pollution.read_jsonl(gold_path)]
        extra = pollution.load_project_training()
        unknown = [name for name in args.compare if name not in CANDIDATES]
        if unknown:
            parser.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
        terms_version = str(pollution.load_type_terms()["version"])
        with tempfile.TemporaryDirectory():
            for name in args.compare or list(CANDIDATES):
                hyper = CANDIDATES[name]
                report = pollution.cross_validate(gold, folds=5, seed=0, extra_train=extra,
                                                  **hyper)
                quality[name] = {k: report[k] for k in ("micro_f1", "macro_f1_frequent",
                                                        "macro_f1_all", "env_accuracy",
                                                        "exact_match", "mean_confidence")}
                candidate = pollution.PollutionModel(pollution.train_model(gold + extra, **hyper),
                                                     version=name)
                candidate.predict(docs[:2])
                quality[name]["complaints_per_s"] = round(_best_rate(
                    _batched(candidate.predict, docs, args.batch), n, 1), 1)
                quality[name]["cv_seconds"] = report["cv"]["seconds"]
                quality[name]["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
                quality[name]["type_terms_version"] = terms_version
                print(f"  {name}: micro {report['micro_f1']:.3f}", flush=True)

    print(f"input: {n} complaints ({source}), mean {chars / n:.0f} chars, batch {args.batch}, "
          f"one process; model {version}; segmenter {segmenter_engine()}")
    print(f"{'what':<36}{'complaints/s':>14}")
    for what, rate in rates.items():
        print(f"{what:<36}{rate:>14.1f}")
    if quality:
        print(f"\n{'candidate (5-fold CV)':<32}{'micro':>7}{'macroF':>8}{'macroA':>8}{'env':>7}"
              f"{'exact':>7}{'docs/s':>9}")
        for name, q in quality.items():
            print(f"{name:<32}{q['micro_f1']:>7.3f}{q['macro_f1_frequent']:>8.3f}"
                  f"{q['macro_f1_all']:>8.3f}{q['env_accuracy']:>7.3f}{q['exact_match']:>7.3f}"
                  f"{q['complaints_per_s']:>9.1f}")

    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    previous = {}
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as handle:
            previous = json.load(handle).get("comparison", {})  # keep the last --compare rows
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump({"input": source, "n": n, "mean_chars": round(chars / n),
                   "batch": args.batch, "model": version, "segmenter": segmenter_engine(),
                   "complaints_per_s": {k: round(v, 1) for k, v in rates.items()},
                   "ensure_default_model_s": round(ensure_seconds, 1),
                   "comparison": {**previous, **quality}, "python": platform.python_version(),
                   "cpu_affinity": len(os.sched_getaffinity(0)), "argv": sys.argv,
                   "note": "measured on a 2-core machine shared with other jobs at the same "
                           "time: rates are lower bounds and vary between runs"},
                  handle, indent=2, ensure_ascii=False)
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
