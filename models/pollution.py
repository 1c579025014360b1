"""Pollution-type classifier: which media a complaint is about, or that it is not environmental.

The classifier is one scikit-learn estimator, split along its seams:

- :mod:`envleads.models.features`: segmentation, word and character n-gram TF-IDF, clause cue
  features (domain knowledge as data, ``type_terms.json``) and clause evidence;
- :mod:`envleads.models.estimator`: :class:`PollutionTypeClassifier` (hyper-parameters as
  constructor parameters, :data:`DEFAULT_HYPER`) and its first stage;
- :mod:`envleads.models.decisions`: thresholds, the exclusive ``other`` rule, the at-least-one
  rule and the confidence calibration, each tuned out of fold inside ``fit``;
- :mod:`envleads.models.train`: :func:`train_model` (labelled rows -> fitted estimator) and the
  project's training files;
- :mod:`envleads.models.prediction`: :class:`PollutionModel`, what pipelines call;
- :mod:`envleads.models.evaluation`: the one scorer, :func:`cross_validate`, reports.

This module keeps the ``envleads train`` / ``envleads evaluate`` commands and re-exports the
names the rest of the project imports from it.

The real labelled rows are few and rare labels (soil, radiation, other) have around ten examples,
so the learner is helped twice: by the clause cue features and by the project's own training
complaints in ``models/training/*.jsonl`` (``make_generated.py`` writes the generated ones).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from envleads.models.decisions import (at_least_one, exclusive_rule, fit_confidence_calibration,
                                       tune_exclusive_keep, tune_thresholds)
from envleads.models.estimator import DEFAULT_HYPER, LabelViews, PollutionTypeClassifier
from envleads.models.evaluation import cross_validate, evaluate, format_report, score_predictions
from envleads.models.features import (LABELS, CharNgramTfidf, ClauseCueFeatures, ClauseEvidence,
                                      SegmentedDoc, load_type_terms, segment_docs,
                                      segment_for_model)
from envleads.models.prediction import DEFAULT_REVIEW_THRESHOLD, PollutionModel, decide
from envleads.models.train import (TRAINING_DIR, label_matrix, load_project_training, read_jsonl,
                                   record_docs, shared_data_dir, train_model, training_files)

__all__ = ["LABELS", "DEFAULT_HYPER", "PIPELINE_FORMAT", "DEFAULT_REVIEW_THRESHOLD",
           "TRAINING_DIR", "SegmentedDoc", "segment_for_model", "segment_docs",
           "PollutionTypeClassifier", "LabelViews", "PollutionModel",
           "train_model", "cross_validate", "evaluate", "score_predictions", "format_report",
           "decide", "CharNgramTfidf", "ClauseCueFeatures", "ClauseEvidence", "load_type_terms",
           "label_matrix", "record_docs", "read_jsonl", "training_files", "load_project_training",
           "shared_data_dir", "tune_thresholds", "tune_exclusive_keep", "exclusive_rule",
           "at_least_one", "fit_confidence_calibration", "labelled_files", "training_records",
           "add_subcommand"]

# Bumped when the saved model's classes change shape or place, so that old artefacts are refused
# with a clear message (registry.load_model) instead of failing inside joblib.load. 6: the
# estimator (PollutionTypeClassifier) and the split into features/estimator/decisions modules.
PIPELINE_FORMAT = 6


# --------------------------------------------------------------------------- CLI
def _write_json(path: Optional[str], report: Dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)


def labelled_files(paths: Sequence[str]) -> List[dict]:
    """The rows of labelled JSON Lines files as real rows (not ``synthetic``); ``id`` + ``labels``
    rows (``envleads labels import``) are joined with the shared texts
    (:func:`envleads.models.protocol.read_labelled`)."""
    from envleads.models import protocol

    return [dict(r, synthetic=False) for path in paths
            for r in protocol.read_labelled(path, shared_data_dir())]


def training_records(extra: Sequence[str] = (), include_shared: bool = True) -> List[dict]:
    """The rows ``envleads train --extra FILE...`` trains on, in its order: the ``extra`` files,
    the development part of the shared real labels (with ``include_shared``, when present; never
    the locked part) and the project's own rows (synthetic)."""
    from envleads.models import protocol

    records = labelled_files(extra)
    if include_shared:
        development, _ = protocol.real_parts(shared_data_dir())
        records.extend(dict(r, synthetic=False) for r in development)
    records.extend(load_project_training())
    return records


def _run_train(args: argparse.Namespace) -> int:
    from envleads.models import registry, registry_cli

    records = training_records(args.extra, args.include_shared)
    version = registry.train_and_register(records, registry_dir=args.out,
                                          command=" ".join(["envleads"] + sys.argv[1:]),
                                          cv_folds=args.cv, data_files=registry.training_files_for(
                                              args.extra, args.include_shared))
    metadata = registry.read_metadata(version, args.out)
    print(f"registered pollution_type/{version}")
    print(registry_cli.after_train(version, args.out))
    if metadata.get("metrics"):
        print(format_report(metadata["metrics"]))
    _write_json(args.json_out, {"version": version, **metadata})
    return 0


def _gold_rows(args: argparse.Namespace) -> List[dict]:
    """The rows ``envleads evaluate`` scores: a part of the real labels or the ``--gold`` files."""
    from envleads.models import protocol

    if not args.part:
        return labelled_files(args.gold)
    shared = shared_data_dir()
    if not shared:
        raise SystemExit("--part needs the shared data folder (../shared/data or $ENVLEADS_SHARED_DATA)")
    development, locked = protocol.real_parts(shared)
    return development if args.part == protocol.DEVELOPMENT else locked


def _run_evaluate(args: argparse.Namespace) -> int:
    from envleads.models import evaluation, protocol
    from envleads.models.registry_cli import training_rows_warning

    if bool(args.part) == bool(args.gold):
        raise SystemExit("give --part or --gold (one of them)")
    if args.cv and args.part == protocol.LOCKED:
        raise SystemExit("the locked part is only scored, never cross-validated on: use --part development")
    gold = _gold_rows(args)
    warning = None if args.cv else training_rows_warning(args.model, args.registry, gold)
    if args.cv:
        report = cross_validate(gold, folds=args.cv, seed=args.seed,
                                extra_train=load_project_training() + labelled_files(args.extra))
    else:
        beam_args = ["--model_version", args.model]
        if args.registry:
            beam_args += ["--model_registry", args.registry]
        report = evaluation.evaluate_through_batch(gold, beam_args=beam_args)
    print(format_report(report))
    if warning:  # printed before and after the table: a long report must not scroll it away
        print(warning, file=sys.stderr)
    _write_json(args.json_out, report)
    return 0


def add_subcommand(subparsers) -> None:
    """Registers ``envleads train`` and ``envleads evaluate``."""
    train = subparsers.add_parser("train", help="train the pollution-type classifier and register it")
    train.add_argument("--extra", "--data", nargs="*", default=[], metavar="FILE", dest="extra",
                       help="labelled JSON Lines files (title, text, labels; or id + labels, joined "
                            "with the shared texts) to train on besides the project's rows and "
                            "the development part of the shared labels")
    train.add_argument("--out", default=None, metavar="REGISTRY_DIR",
                       help="model registry folder (default: $ENVLEADS_REGISTRY or models/registry)")
    train.add_argument("--include-shared", action=argparse.BooleanOptionalAction, default=True,
                       help="also train on the development part of the shared real labels when present "
                            "(the locked part is never trained on)")
    train.add_argument("--cv", type=int, default=0, metavar="K",
                       help="also run K-fold CV on the real rows and store it as the metrics")
    train.add_argument("--json-out", default=None, metavar="PATH", help="write metadata as JSON")
    train.set_defaults(func=_run_train)

    evaluate_parser = subparsers.add_parser(
        "evaluate", help="score a model through envleads batch on labelled data, or cross-validate")
    evaluate_parser.add_argument("--model", default="production",
                                 help="VERSION, 'production' or 'latest'")
    evaluate_parser.add_argument("--registry", default=None, metavar="REGISTRY_DIR",
                                 help="model registry folder")
    evaluate_parser.add_argument("--part", choices=("development", "locked"), default=None,
                                 help="a part of the shared real labels (models/protocol.py): "
                                      "'locked' is the reported result, 'development' is for choices")
    evaluate_parser.add_argument("--gold", nargs="*", default=[], metavar="FILE",
                                 help="gold JSON Lines files (id, title, text, labels; or id + labels)")
    evaluate_parser.add_argument("--cv", type=int, default=0, metavar="K",
                                 help="run K-fold cross-validation on the gold rows instead")
    evaluate_parser.add_argument("--extra", nargs="*", default=[], metavar="FILE",
                                 help="with --cv: labelled files added to every training side only")
    evaluate_parser.add_argument("--seed", type=int, default=0, help="CV fold seed")
    evaluate_parser.add_argument("--json-out", default=None, metavar="PATH",
                                 help="write the report as JSON")
    evaluate_parser.set_defaults(func=_run_evaluate)
