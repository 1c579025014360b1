"""Decision rules over per-label probabilities, and how each is tuned out of fold.

Per-label thresholds (rare labels get low probabilities: one global 0.5 would never predict
them), the exclusive rule for ``other``, the at-least-one rule, and the calibration of the
confidence that a whole label set is right. Every tuning function here reads out-of-fold
probabilities (in-sample ones look more certain than those of new complaints); the estimator
(:class:`envleads.models.estimator.PollutionTypeClassifier`) calls them inside ``fit``.
Pure numpy, no fitted state of its own.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression


def exclusive_rule(P: np.ndarray, thresholds: np.ndarray, label: Optional[int], keep: float
                   ) -> np.ndarray:
    """Lowers ``label``'s probability under its threshold where another label is over its own
    and ``label`` is under ``keep``: the learned models see "环评" or "严重污染环境" in many
    medium complaints, but the annotation guide gives ``other`` only when no medium is named
    (or, rarely, for an explicit violation besides one: kept when the model is sure)."""
    if label is None or keep > 1.0 or not len(P):
        return P
    P = np.array(P, dtype=np.float64, copy=True)
    others = np.delete(P >= thresholds, label, axis=1).any(axis=1)
    drop = others & (P[:, label] < keep)
    P[drop, label] *= thresholds[label] / max(keep, 1e-9) * 0.999
    return P


def at_least_one(P: np.ndarray, thresholds: np.ndarray, gate: np.ndarray,
                 min_ratio: Optional[float]) -> np.ndarray:
    """Raises the closest label to its threshold where the environmental gate is at least 0.5
    but no label reaches its threshold, if that label's probability is at least ``min_ratio``
    of its threshold. LABELS.md gives every environmental complaint at least one label; the
    per-label models each see only their own few dozen positives and can all fall just short on
    a complaint the gate (trained on every labelled row) is sure about. The raised probability
    sits at the threshold, so the prediction's confidence stays low."""
    if min_ratio is None or not len(P):
        return P
    thresholds = np.asarray(thresholds, dtype=np.float64)
    ratio = P / thresholds
    top = np.argmax(ratio, axis=1)
    rows = np.arange(len(P))
    lift = ~(P >= thresholds).any(axis=1) & (np.asarray(gate) >= 0.5) \
        & (ratio[rows, top] >= min_ratio)
    if not lift.any():
        return P
    P = np.array(P, dtype=np.float64, copy=True)
    P[rows[lift], top[lift]] = thresholds[top[lift]]
    return P


def tune_exclusive_keep(Y: np.ndarray, P: np.ndarray, thresholds: Sequence[float], label: int,
                        grid: Sequence[float] = (0.85, 0.9, 0.95, 0.98, 1.01)) -> float:
    """The ``keep`` level of :func:`exclusive_rule` maximising the label's F1 out of fold
    (middle of the best plateau, like :func:`tune_thresholds`)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    y = Y[:, label]
    scores = []
    for keep in grid:
        pred = exclusive_rule(P, thresholds, label, keep)[:, label] >= thresholds[label]
        denominator = pred.sum() + y.sum()
        scores.append(2.0 * np.sum(pred & (y == 1)) / denominator if denominator else 0.0)
    scores = np.asarray(scores)
    best = np.flatnonzero(scores >= scores.max() - 0.005)
    return float(grid[best[len(best) // 2]])



def _plateau_middle(grid: np.ndarray, scores: np.ndarray) -> float:
    best = np.flatnonzero(scores >= scores.max() - 0.005)
    return float(grid[best[len(best) // 2]])


def tune_thresholds(Y: np.ndarray, P: np.ndarray, default: float, min_positives: int = 5,
                    shrink: float = 0.0) -> List[float]:
    """Per-label threshold maximising F1 on out-of-fold probabilities.

    Takes the middle of the best plateau (not its edge) so one row does not move the threshold,
    and keeps ``default`` for labels with fewer than ``min_positives`` rows.

    With ``shrink`` > 0 each label's threshold is then pulled toward the common threshold (the
    one threshold for all labels that maximises micro F1), weighted as if the label had
    ``shrink`` more positives there: ``(n * own + shrink * common) / (n + shrink)``. A rare
    label's own optimum rests on a handful of rows and overfits them; a frequent label keeps
    close to its own.
    """
    grid = np.round(np.arange(0.10, 0.81, 0.025), 3)
    thresholds: List[float] = []
    for column in range(Y.shape[1]):
        y, p = Y[:, column], P[:, column]
        if y.sum() < min_positives:
            thresholds.append(default)
            continue
        scores = []
        for t in grid:
            pred = p >= t
            tp = float(np.sum(pred & (y == 1)))
            denominator = pred.sum() + y.sum()
            scores.append(2 * tp / denominator if denominator else 0.0)
        thresholds.append(_plateau_middle(grid, np.asarray(scores)))
    if shrink <= 0 or not Y.sum():
        return thresholds
    positives = Y.sum()
    common = []
    for t in grid:
        pred = P >= t
        common.append(2.0 * np.sum(pred & (Y == 1)) / (pred.sum() + positives))
    common_threshold = _plateau_middle(grid, np.asarray(common))
    counts = Y.sum(axis=0)
    return [float((n * own + shrink * common_threshold) / (n + shrink))
            for n, own in zip(counts, thresholds)]


def raw_confidence(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Product over labels of ``p`` (chosen) or ``1 - p`` (not chosen): right if independent."""
    return np.prod(np.where(probabilities >= thresholds, probabilities, 1.0 - probabilities),
                   axis=1)


def logit(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 1e-6, 1.0 - 1e-6)
    return np.log(values / (1.0 - values))


def fit_confidence_calibration(Y: np.ndarray, P: np.ndarray, thresholds: np.ndarray
                               ) -> Optional[Tuple[float, float]]:
    """Platt scaling of the raw confidence to "the whole label set is right".

    Labels are not independent and the averaged, gated probabilities are not calibrated, so the
    raw product over-states confidence. A one-feature logistic regression on the logit of the
    raw confidence of out-of-fold predictions, against exact label-set match, maps it to a
    probability (monotonic: the ranking of complaints by confidence is unchanged).

    Returns:
        ``(slope, intercept)``, or ``None`` when every prediction was right or every one wrong.
    """
    correct = np.all((P >= thresholds).astype(int) == Y, axis=1).astype(int)
    if correct.min() == correct.max():
        return None
    feature = logit(raw_confidence(P, thresholds)).reshape(-1, 1)
    model = LogisticRegression(C=100.0).fit(feature, correct)
    return float(model.coef_[0, 0]), float(model.intercept_[0])



def calibrated_confidence(raw: np.ndarray, calibration: Optional[Tuple[float, float]]
                          ) -> np.ndarray:
    """Maps raw confidence through :func:`fit_confidence_calibration`'s ``(slope, intercept)``
    (``None``: unchanged)."""
    if calibration is None:
        return raw
    slope, intercept = calibration
    return 1.0 / (1.0 + np.exp(-(slope * logit(raw) + intercept)))
