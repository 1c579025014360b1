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

This module keeps the labelled rows ``envleads train`` reads (the commands are in
:mod:`envleads.cli.models`) and re-exports the names the rest of the project imports from it.

The real labelled rows are few and rare labels (soil, radiation, other) have around ten examples,
so the learner is helped twice: by the clause cue features and by the project's own training
complaints in ``models/training/*.jsonl`` (``make_generated.py`` writes the generated ones).
"""
from __future__ import annotations

from typing import List, Sequence

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
           "at_least_one", "fit_confidence_calibration", "labelled_files", "training_records"]

# Bumped when the saved model's classes change shape or place, so that old artefacts are refused
# with a clear message (registry.load_model) instead of failing inside joblib.load. 6: the
# estimator (PollutionTypeClassifier) and the split into features/estimator/decisions modules.
PIPELINE_FORMAT = 6


# ----------------------------------------------------------------- labelled rows (envleads train)
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
