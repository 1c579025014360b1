"""Prediction: a fitted estimator's probabilities as :class:`~envleads.records.TypePrediction`
(labels, primary label, confidence, ``needs_review``), what pipelines and the CLI call."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from envleads.models.decisions import calibrated_confidence, raw_confidence
from envleads.models.estimator import PollutionTypeClassifier
from envleads.models.features import LABELS, segment_docs
from envleads.records import TypePrediction

# Chosen on the development part's out-of-fold decisions (2026-12-07): under 0.7 a reviewer sees
# 15% of complaints and 56% of the wrong label sets (0.5: 4% and 21%; 0.8: 26% and 74%).
DEFAULT_REVIEW_THRESHOLD = 0.7


def decide(probabilities: np.ndarray, thresholds: np.ndarray, review_threshold: float,
           model_version: str, calibration: Optional[Tuple[float, float]] = None
           ) -> List[TypePrediction]:
    """Turns per-label probabilities into predictions.

    Labels are those at or over their threshold, ordered by probability (main concern first).
    Confidence is the probability that the whole label set is right: taking labels as
    independent, the product of ``p`` for chosen labels and ``1 - p`` for the others; with
    ``calibration`` (from
    :func:`~envleads.models.decisions.fit_confidence_calibration`) that product is mapped to the
    observed rate of fully right predictions. ``needs_review`` is confidence below
    ``review_threshold``.
    """
    out = []
    raw = calibrated_confidence(raw_confidence(probabilities, thresholds), calibration) \
        if len(probabilities) else []
    for row, confidence in zip(probabilities, raw):
        chosen = [i for i in np.argsort(-row, kind="stable") if row[i] >= thresholds[i]]
        confidence = float(confidence)
        labels = [LABELS[i] for i in chosen]
        out.append(TypePrediction(labels=labels, primary=labels[0] if labels else None,
                                  confidence=round(confidence, 4),
                                  needs_review=confidence < review_threshold,
                                  model_version=model_version))
    return out


class PollutionModel:
    """A fitted estimator plus its registry version; what pipelines and the CLI call.

    Args:
        estimator: a fitted :class:`PollutionTypeClassifier` (from
            :func:`~envleads.models.train.train_model` or the registry).
        version: registry version (``"unregistered"`` for a fresh model).
        review_threshold: predictions with lower confidence get ``needs_review=True``.
    """

    def __init__(self, estimator: PollutionTypeClassifier, version: str = "unregistered",
                 review_threshold: float = DEFAULT_REVIEW_THRESHOLD):
        self.estimator = estimator
        self.version = version
        self.labels: Tuple[str, ...] = LABELS
        self.review_threshold = review_threshold

    @property
    def thresholds(self) -> np.ndarray:
        return self.estimator.thresholds_

    def predict_proba(self, docs: Sequence[Any]) -> np.ndarray:
        """Per-label probabilities, one row per complaint (columns in :data:`LABELS` order)."""
        if not len(docs):
            return np.zeros((0, len(self.labels)))
        return self.estimator.predict_proba(segment_docs(docs))

    def predict(self, docs: Sequence[Any]) -> List[TypePrediction]:
        """Classifies a batch (batching amortises the matrix work).

        Args:
            docs: ``(title, text)`` pairs, or :class:`~envleads.text.SegmentedDoc` from
                :func:`~envleads.text.segment_for_model` (the pipeline's segmentation stage), or
                a mix.
        """
        return self.predict_with_proba(docs)[0]

    def predict_with_proba(self, docs: Sequence[Any]
                           ) -> Tuple[List[TypePrediction], np.ndarray]:
        """:meth:`predict` and the per-label probabilities its decisions come from (one pass)."""
        probabilities = self.predict_proba(docs)
        return decide(probabilities, self.thresholds, self.review_threshold, self.version,
                      self.estimator.confidence_calibration_), probabilities
