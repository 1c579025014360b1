"""Cross-validation on the development part with each outer fold fitted once and its first-stage
outputs cached, so that decision-rule settings and candidates are compared on identical folds.

The folds, seeds and training rows are those of ``bench/cv_development.py`` and
``pollution.cross_validate``. For every outer fold the estimator is fitted as ``train_model``
fits it, and the cache keeps what its decision rules were learned from (the inner out-of-fold
first-stage outputs of the real rows, with their labels) and the first-stage outputs of the
held-out rows; ids, labels and probabilities only, never text. ``rules`` then re-learns the
decision rules with other settings without refitting anything; ``compare`` scores two caches on
the same rows with the paired bootstrap of ``envleads models compare``. The locked part is never
read.

    .venv/bin/python bench/cv_fold_cache.py fit default
    .venv/bin/python bench/cv_fold_cache.py fit C4 --hyper '{"C": 4.0}'
    .venv/bin/python bench/cv_fold_cache.py fit negatives --presumed-negatives 2000
    .venv/bin/python bench/cv_fold_cache.py fit v2 --extra-file models/training/unused/handwritten_v2.jsonl
    .venv/bin/python bench/cv_fold_cache.py compare default C4
    .venv/bin/python bench/cv_fold_cache.py rules default
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from sklearn.model_selection import StratifiedKFold

from cv_development import project_rows
from envleads.models import decisions, pollution, protocol
from envleads.models.estimator import PollutionTypeClassifier
from envleads.models.features import LABELS, fold_strata
from envleads.models.prediction import decide
from envleads.models.registry_stages import paired_bootstrap

CACHE_DIR = os.environ.get("ENVLEADS_CV_CACHE",
                           os.path.join(tempfile.gettempdir(), "envleads-cv-cache"))
RULE_SETTINGS = {"threshold_shrink": [0.0, 5.0, 10.0, 40.0, 80.0],
                 "at_least_one": [None, 0.3, 0.4, 0.6, 0.7],
                 "default_threshold": [0.3, 0.5]}


class _CachingClassifier(PollutionTypeClassifier):
    """The production estimator, keeping what its decision rules were learned from."""

    def _fit_rules(self, base: np.ndarray, Y: np.ndarray) -> None:
        self.rule_inputs_ = (base.copy(), Y.copy())
        super()._fit_rules(base, Y)


def presumed_negatives(n: int) -> List[dict]:
    """``n`` messages of ``unlabelled_real.jsonl`` with no project label (the readers' screen
    found them not environmental) as ``[]`` rows, a fixed sample (``random.Random(0)``)."""
    texts = protocol.shared_texts(pollution.shared_data_dir())
    known = set(protocol.project_labels())
    pool = sorted(key for key, row in texts.items() if key not in known and "labels" not in row)
    return [dict(texts[key], labels=[]) for key in random.Random(0).sample(pool, min(n, len(pool)))]


def fit_folds(hyper: Dict[str, Any], extra: List[dict], seed: int) -> Dict[str, Any]:
    """Fits every outer fold once; the cache of :func:`rule_predictions`."""
    development, _ = protocol.real_parts(pollution.shared_data_dir())
    if not development:
        sys.exit("needs ../shared/data")
    records = [dict(r, synthetic=False) for r in development]
    extra = [dict(r, synthetic=True) for r in extra]
    Y = pollution.label_matrix(records)
    cache: Dict[str, Any] = {"ids": [r["id"] for r in records], "Y": Y, "seed": seed,
                             "hyper": hyper, "folds": []}
    splitter = StratifiedKFold(5, shuffle=True, random_state=seed)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(records, fold_strata(Y))):
        rows = [records[i] for i in train_idx] + extra
        estimator = _CachingClassifier(seed=seed, **hyper).fit(
            pollution.record_docs(rows), pollution.label_matrix(rows),
            synthetic=[bool(r.get("synthetic")) for r in rows])
        docs = pollution.segment_docs(pollution.record_docs([records[i] for i in test_idx]))
        cache["folds"].append({"test_idx": test_idx, "rule_inputs": estimator.rule_inputs_,
                               "params": estimator.get_params(),
                               "test_base": estimator.views_.base_proba(
                                   estimator.features_.transform(docs))})
        print(f"fold {fold} fitted", file=sys.stderr, flush=True)
    return cache


def rule_predictions(cache: Dict[str, Any], **settings: Any) -> Tuple[List[dict], list]:
    """Gold rows (ids, labels) and out-of-fold predictions with the decision rules re-learned in
    each fold under ``settings`` (``{}``: exactly the fitted estimator's predictions)."""
    predictions: list = [None] * len(cache["ids"])
    n_labels = len(LABELS)
    for fold in cache["folds"]:
        estimator = PollutionTypeClassifier(**{**fold["params"], **settings})
        estimator._fit_rules(*fold["rule_inputs"])
        base = fold["test_base"]
        P = decisions.exclusive_rule(base[:, :n_labels], estimator.thresholds_,
                                     estimator._exclusive_label(), estimator.exclusive_keep_)
        if estimator.gate:
            P = decisions.at_least_one(P, estimator.thresholds_, base[:, n_labels],
                                       estimator.at_least_one)
        decided = decide(P, estimator.thresholds_, 0.7, "cv", estimator.confidence_calibration_)
        for row, prediction in zip(fold["test_idx"], decided):
            predictions[row] = prediction
    gold = [{"id": key, "labels": [LABELS[j] for j in np.flatnonzero(y)]}
            for key, y in zip(cache["ids"], cache["Y"])]
    return gold, predictions


def summary(gold: List[dict], predictions: list) -> str:
    report = pollution.score_predictions(gold, predictions)
    return (f"micro {report['micro_f1']:.4f} macro {report['macro_f1_all']:.4f} env "
            f"{report['env_accuracy']:.4f} | " + " ".join(
                f"{label} {m['f1']:.2f}" for label, m in report["per_label"].items()))


def compare(old: Tuple[List[dict], list], new: Tuple[List[dict], list], resamples: int) -> None:
    """Prints both, and the paired bootstrap of NEW - OLD on the same rows."""
    (gold, a), (_, b) = old, new
    print("OLD", summary(gold, a))
    print("NEW", summary(gold, b))
    for figure, row in paired_bootstrap(gold, a, b, resamples=resamples).items():
        print(f"  {figure:<22}{row['diff']:+.4f}  [{row['low']:+.4f}, {row['high']:+.4f}]"
              f"{'  beyond noise' if row['beyond_noise'] else ''}")


def _path(name: str) -> str:
    return os.path.join(CACHE_DIR, f"{name}.pkl")


def _load(name: str) -> Dict[str, Any]:
    with open(_path(name), "rb") as handle:  # written by this script only
        return pickle.load(handle)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit the outer folds once and cache them")
    fit.add_argument("name")
    fit.add_argument("--hyper", default="{}", help="estimator parameters as JSON")
    fit.add_argument("--presumed-negatives", type=int, default=0)
    fit.add_argument("--extra-file", nargs="*", default=[],
                     help="more project-written rows (JSON Lines), synthetic like models/training/")
    fit.add_argument("--seed", type=int, default=0)
    pair = commands.add_parser("compare", help="two caches on the same rows")
    pair.add_argument("old")
    pair.add_argument("new")
    pair.add_argument("--resamples", type=int, default=500)
    rules = commands.add_parser("rules", help="decision-rule settings on one cache")
    rules.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "fit":
        extra = project_rows(()) + presumed_negatives(args.presumed_negatives)
        extra += [row for path in args.extra_file for row in pollution.read_jsonl(path)]
        cache = fit_folds(json.loads(args.hyper), extra, args.seed)
        os.makedirs(CACHE_DIR, exist_ok=True)
        with open(_path(args.name), "wb") as handle:
            pickle.dump(cache, handle)
        print(args.name, summary(*rule_predictions(cache)))
    elif args.command == "compare":
        old, new = _load(args.old), _load(args.new)
        if old["ids"] != new["ids"] or old["seed"] != new["seed"]:
            sys.exit("the caches hold different rows or folds")
        compare(rule_predictions(old), rule_predictions(new), args.resamples)
    else:
        cache = _load(args.name)
        print(f"{'default':<26}", summary(*rule_predictions(cache)))
        for key, values in RULE_SETTINGS.items():
            for value in values:
                name = f"{key}={value}"
                print(f"{name:<26}", summary(*rule_predictions(cache, **{key: value})))


if __name__ == "__main__":
    main()
