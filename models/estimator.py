"""The pollution-type estimator: features, per-label classifiers and decision rules in one
scikit-learn estimator.

:class:`PollutionTypeClassifier` is what production runs. Its constructor parameters are the
hyper-parameters (:data:`DEFAULT_HYPER`), and ``fit`` learns everything the model decides with:
the features and per-label classifiers on all rows, and, cross-fitted on the real
(non-synthetic) rows, the per-label thresholds, the ``other`` keep level of the exclusive rule,
the at-least-one rule's thresholds and the confidence calibration. So ``clone``,
``cross_val_score`` and ``GridSearchCV`` reproduce the production model.

Layers: ``features`` (:mod:`envleads.models.features`: word TF-IDF over jieba tokens,
character 1-3-gram TF-IDF, clause evidence, clause cue features) -> :class:`LabelViews` (per
label a logistic regression, combined with an environmental-or-not gate) -> decision rules
(:mod:`envleads.models.decisions`).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted

from envleads.models import decisions
from envleads.models.features import (LABELS, CharNgramTfidf, ClauseCueFeatures, ClauseEvidence,
                                      SegmentedDoc, fold_strata, segment_docs, word_analyzer)

# The estimator's constructor defaults: one dict, so a change of a default is one line here.
DEFAULT_HYPER: Dict[str, Any] = {
    "C": 8.0,
    "words": True,
    "char_ngrams": True,
    "rules": True,
    "synthetic_weight": 1.0,  # 5-fold CV: 1.0 beat 0.5, 1.5 and 2.0 (bench/results/classify.json)
    "threshold_folds": 4,
    "default_threshold": 0.4,
    "gate": True,
    "exclusive_other": True,  # `other` only beside a medium when sure (LABELS.md; tuned OOF)
    # Per-label thresholds shrunk toward the one threshold best for all labels together, as if
    # each label had this many more rows at that threshold: a label with 10 positives cannot
    # place its F1 optimum reliably (see tune_thresholds).
    "threshold_shrink": 20.0,
    # An environmental complaint has at least one label (LABELS.md): when the gate says
    # environmental and no label reaches its threshold, the closest label (probability over
    # threshold) is given if that ratio is at least this (None: off). See at_least_one.
    # 5-fold CV micro/macro/env, fold seed 0: 0.875/0.828/0.965 -> 0.884/0.852/0.971; seed 1:
    # 0.860/0.792/0.958 -> 0.866/0.813/0.963. Each half helps alone on both seeds, and so does
    # every setting tried nearby (shrink 10-40, ratio 0.3-0.5).
    "at_least_one": 0.5,
    # Clause evidence (ClauseEvidence): 5-fold CV micro F1 0.852 -> 0.875; weight 0.5 beat
    # 0.25, 0.75, 1, 2 and 4, C 4 beat 1 and 8.
    "clauses": True,
    "clause_C": 4.0,
    "clause_weight": 0.5,
    "seed": 0,
}


# --------------------------------------------------------------------------- first stage
def _fit_binary(base, X, y, sample_weight):
    if y.min() == y.max():
        return float(y[0])  # no positives (or only positives) here: predict the constant
    return clone(base).fit(X, y, sample_weight=sample_weight)



class LabelViews(BaseEstimator):
    """First stage: per label one binary classifier, combined with an environmental-or-not gate.

    One binary ``estimator`` per label over all columns (word and character TF-IDF, clause
    evidence and the clause cues). With ``gate`` an "environmental at all?" model (trained on
    every labelled row at once) is combined with each label by a geometric mean, so both must
    agree. Thresholds and the other decision rules are not here:
    :class:`PollutionTypeClassifier` learns them out of fold over :meth:`base_proba`.

    Args:
        estimator: a binary ``LogisticRegression``; :meth:`base_proba` applies the fitted
            models' coefficients as one matrix product (what their ``predict_proba`` computes,
            one model at a time, with input checks each time: a tenth of classification).
        gate: combine with the environmental-or-not model.
    """

    def __init__(self, estimator=None, gate: bool = False):
        self.estimator = estimator
        self.gate = gate

    def fit(self, X, Y, sample_weight=None):
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        base = self.estimator if self.estimator is not None else LogisticRegression(max_iter=2000)
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        self.__dict__.pop("_stacked_cache", None)  # a refit has other coefficients
        env = (Y.sum(axis=1) > 0).astype(int)
        self.estimators_ = [_fit_binary(base, X, Y[:, column], sample_weight)
                            for column in range(Y.shape[1])]
        self.gate_ = None
        if self.gate and env.min() != env.max():
            # "Environmental at all?" learns from every labelled row at once, which the
            # per-label models (a few dozen positives each) cannot.
            self.gate_ = _fit_binary(base, X, env, sample_weight)
        self.n_labels_ = Y.shape[1]
        return self

    def base_proba(self, X) -> np.ndarray:
        """First-stage probabilities: per-label (gated), then the gate (all ones without a
        gate). The decision rules read this matrix."""
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        coef, intercept, constant = self._stacked()
        out = expit(safe_sparse_dot(X, coef, dense_output=True) + intercept)
        fixed = ~np.isnan(constant)
        out[:, fixed] = constant[fixed]
        gate = np.ones(out.shape[0])
        if self.gate_ is not None:
            gate = out[:, -1]
            out = np.sqrt(out[:, :-1] * gate[:, None])
        return np.column_stack([out, gate])

    def _stacked(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The per-label models then the gate as columns: coefficients (features x models),
        intercepts, and the probability of a constant model (NaN for a fitted one)."""
        stacked = getattr(self, "_stacked_cache", None)
        if stacked is None:
            models = self.estimators_ + ([self.gate_] if self.gate_ is not None else [])
            fitted = [m for m in models if not isinstance(m, float)]
            if any(not isinstance(m, LogisticRegression) or m.coef_.shape[0] != 1
                   for m in fitted):
                raise TypeError("LabelViews needs binary LogisticRegression estimators")
            n_features = fitted[0].coef_.shape[1] if fitted else 0
            coef = np.zeros((n_features, len(models)))
            intercept = np.zeros(len(models))
            constant = np.full(len(models), np.nan)
            for column, model in enumerate(models):
                if isinstance(model, float):
                    constant[column] = model
                else:
                    coef[:, column] = model.coef_[0]
                    intercept[column] = model.intercept_[0]
            stacked = self._stacked_cache = (coef, intercept, constant)
        return stacked

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: Python 3.11 hands out __dict__ itself
        state.pop("_stacked_cache", None)  # rebuilt from the fitted models after loading
        return state


def _base_estimator(C: float, seed: int):
    # dual: the same L2 objective, solved 2-4 times faster when features outnumber rows
    return LogisticRegression(C=C, max_iter=3000, class_weight="balanced", solver="liblinear",
                              dual=True, random_state=seed)


def _transform(features: FeatureUnion, docs: Sequence[Any]) -> sp.csr_matrix:
    """``features.transform(docs)`` without FeatureUnion's per-call machinery (joblib dispatch,
    and a stack through COO because the clause blocks are dense: 7% of classification): each
    block as CSR, stacked by scipy's CSR path, indices sorted as FeatureUnion's result has them,
    so the products downstream add in the same order."""
    X = sp.hstack([sp.csr_matrix(step.transform(docs)) for _, step in features.transformer_list],
                  format="csr")
    X.sort_indices()
    return X


# --------------------------------------------------------------------------- the estimator
_H = DEFAULT_HYPER


def _indicator(Y, n_rows: int) -> np.ndarray:
    """``Y`` as a 0/1 matrix over :data:`LABELS`, or a ``ValueError`` saying what is wrong."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape != (n_rows, len(LABELS)):
        raise ValueError(f"Y must be a 0/1 matrix of shape ({n_rows}, {len(LABELS)}) with columns "
                         f"{', '.join(LABELS)}; got shape {Y.shape}")
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("Y must hold 0 and 1 only")
    return Y.astype(int)


def canonical_order(docs: Sequence[SegmentedDoc], Y: np.ndarray, weights: np.ndarray,
                    synthetic: np.ndarray) -> np.ndarray:
    """The rows in the order of a digest of their content (text, tokens, labels, weight, flag).

    ``fit`` works on rows in this order, so that the same rows in any order give the same model:
    fold assignment is by position and liblinear visits rows in order, and a different order
    alone moved 1.4% of label sets (thresholds of rare labels most). A digest rather than the
    text itself, so that similar texts do not sit together. Rows with equal digests are equal.
    """
    digests = []
    for doc, labels, weight, flag in zip(docs, Y, weights, synthetic):
        content = [doc.title, doc.text, doc.tokens, doc.title_tokens, labels.tolist(),
                   float(weight), bool(flag)]
        digests.append(hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8"))
                       .hexdigest())
    return np.array(sorted(range(len(digests)), key=digests.__getitem__), dtype=np.intp)


class PollutionTypeClassifier(ClassifierMixin, BaseEstimator):
    """Which media a complaint is about (multi-label), or that it is not environmental.

    ``X`` is a sequence of complaints: ``(title, text)`` pairs, bare texts, or
    :class:`~envleads.text.SegmentedDoc` segmented upstream (segmented once). ``Y`` is a 0/1
    matrix with one column per label of :data:`LABELS` (an all-zero row: not environmental).

    ``fit`` learns every part of the decision, so that ``clone`` and model selection reproduce
    the production model: features and classifiers on all rows, and the per-label thresholds,
    the ``other`` keep level, the at-least-one rule's thresholds and the confidence calibration
    from out-of-fold probabilities over the real rows (``synthetic`` rows are always on the
    training side: they are written to teach, and scoring on them would flatter the rules).
    Deterministic given ``seed``, and the same rows in another order give the same model: ``fit``
    first puts the rows in :func:`canonical_order`.

    scikit-learn's ``check_estimator`` does not apply: its checks feed numeric arrays and
    single-output targets, while this estimator reads text and needs one column per label of
    :data:`LABELS`. ``tests/test_estimator.py`` runs the checks that do apply (``clone``,
    ``get_params``/``set_params``, ``fit`` returns self, cross-validation of clones, pickling).

    Args: the keys of :data:`DEFAULT_HYPER`, with its values as defaults. ``C``: the per-label
        logistic regressions; ``words``, ``char_ngrams``, ``clauses`` (``clause_C``,
        ``clause_weight``), ``rules``: the feature blocks; ``gate``; ``synthetic_weight``;
        ``threshold_folds`` (0: no tuning, ``default_threshold`` everywhere),
        ``threshold_shrink``, ``exclusive_other``, ``at_least_one``: the decision rules;
        ``seed``: every fold split and solver.
    """

    def __init__(self, C: float = _H["C"], words: bool = _H["words"],
                 char_ngrams: bool = _H["char_ngrams"], rules: bool = _H["rules"],
                 synthetic_weight: float = _H["synthetic_weight"],
                 threshold_folds: int = _H["threshold_folds"],
                 default_threshold: float = _H["default_threshold"], gate: bool = _H["gate"],
                 exclusive_other: bool = _H["exclusive_other"],
                 threshold_shrink: float = _H["threshold_shrink"],
                 at_least_one: Optional[float] = _H["at_least_one"], clauses: bool = _H["clauses"],
                 clause_C: float = _H["clause_C"], clause_weight: float = _H["clause_weight"],
                 seed: int = _H["seed"]):
        self.C = C
        self.words = words
        self.char_ngrams = char_ngrams
        self.rules = rules
        self.synthetic_weight = synthetic_weight
        self.threshold_folds = threshold_folds
        self.default_threshold = default_threshold
        self.gate = gate
        self.exclusive_other = exclusive_other
        self.threshold_shrink = threshold_shrink
        self.at_least_one = at_least_one
        self.clauses = clauses
        self.clause_C = clause_C
        self.clause_weight = clause_weight
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        return tags

    # ------------------------------------------------------------------ building blocks
    def _build_features(self) -> FeatureUnion:
        features = []
        if self.words:
            features.append(("words", TfidfVectorizer(analyzer=word_analyzer, sublinear_tf=True,
                                                      min_df=2)))
        if self.char_ngrams:
            features.append(("chars", CharNgramTfidf(ngram_range=(1, 3), min_df=2,
                                                     max_features=60000)))
        if self.clauses:
            features.append(("clauses", ClauseEvidence(C=self.clause_C, weight=self.clause_weight,
                                                       seed=self.seed)))
        if self.rules:
            features.append(("cues", ClauseCueFeatures()))
        return FeatureUnion(features)

    def _build_views(self) -> LabelViews:
        return LabelViews(_base_estimator(self.C, self.seed), gate=self.gate)

    def _fit_stage(self, docs: Sequence[Any], Y: np.ndarray, weights: np.ndarray
                   ) -> Tuple[FeatureUnion, LabelViews]:
        """Features and first stage fitted on ``docs`` (no decision rules)."""
        features = self._build_features()
        views = self._build_views().fit(features.fit_transform(docs, Y), Y, sample_weight=weights)
        return features, views

    def _exclusive_label(self) -> Optional[int]:
        return LABELS.index("other") if self.exclusive_other else None

    # ------------------------------------------------------------------ fitting
    def fit(self, X, Y, sample_weight=None, synthetic=None) -> "PollutionTypeClassifier":
        """Fits features, classifiers and the decision rules (cross-fitted on the real rows).

        Args:
            X: complaints (see the class docstring).
            Y: 0/1 matrix, one column per label of :data:`LABELS`.
            sample_weight: per-row weights, multiplied with ``synthetic_weight`` on synthetic rows.
            synthetic: per-row flags; synthetic rows train every fold and are never scored.
        """
        docs = segment_docs(X)
        Y = _indicator(Y, len(docs))
        synthetic = np.zeros(len(docs), dtype=bool) if synthetic is None \
            else np.asarray(synthetic, dtype=bool)
        weights = np.where(synthetic, self.synthetic_weight, 1.0)
        if sample_weight is not None:
            weights = weights * np.asarray(sample_weight, dtype=np.float64)
        order = canonical_order(docs, Y, weights, synthetic)
        docs, Y, weights, synthetic = [docs[i] for i in order], Y[order], weights[order], \
            synthetic[order]
        real = np.flatnonzero(~synthetic)
        self.thresholds_ = np.full(len(LABELS), float(self.default_threshold))
        self.exclusive_keep_ = 1.01  # over 1: the exclusive rule is off until tuned
        self.confidence_calibration_: Optional[Tuple[float, float]] = None
        if self.threshold_folds and len(real) >= 5 * self.threshold_folds:
            self._fit_rules(self._out_of_fold_base(docs, Y, weights, synthetic), Y[real])
        self.features_, self.views_ = self._fit_stage(docs, Y, weights)
        self.classes_ = np.array(LABELS, dtype=object)  # the columns of Y and of predict_proba
        return self

    def _out_of_fold_base(self, docs: List[Any], Y: np.ndarray, weights: np.ndarray,
                          synthetic: np.ndarray) -> np.ndarray:
        """First-stage outputs (:meth:`LabelViews.base_proba`) of every real row, each from a
        model fitted without it; synthetic rows train every fold."""
        real, always = np.flatnonzero(~synthetic), np.flatnonzero(synthetic)
        base = None
        folds = StratifiedKFold(self.threshold_folds, shuffle=True, random_state=self.seed)
        for train_idx, test_idx in folds.split(real, fold_strata(Y[real])):
            rows = np.concatenate([real[train_idx], always])
            features, views = self._fit_stage([docs[i] for i in rows], Y[rows], weights[rows])
            fold_base = views.base_proba(_transform(features, [docs[i] for i in real[test_idx]]))
            if base is None:
                base = np.zeros((len(real), fold_base.shape[1]))
            base[test_idx] = fold_base
        return base

    def _fit_rules(self, base: np.ndarray, Y: np.ndarray) -> None:
        """Thresholds, ``other`` keep level and calibration from out-of-fold ``base``, each
        tuned on what the rules before it output (as :meth:`predict_proba` applies them)."""
        n_labels = len(LABELS)
        P = base[:, :n_labels]
        thresholds = np.asarray(decisions.tune_thresholds(Y, P, self.default_threshold,
                                                          shrink=self.threshold_shrink),
                                dtype=np.float64)
        label = self._exclusive_label()
        if label is not None:
            self.exclusive_keep_ = decisions.tune_exclusive_keep(Y, P, thresholds, label)
            P = decisions.exclusive_rule(P, thresholds, label, self.exclusive_keep_)
        if self.gate:
            P = decisions.at_least_one(P, thresholds, base[:, n_labels], self.at_least_one)
        self.confidence_calibration_ = decisions.fit_confidence_calibration(Y, P, thresholds)
        self.thresholds_ = thresholds

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X) -> np.ndarray:
        """Per-label probabilities after the decision rules, columns in :data:`LABELS` order;
        a label is given at or over its threshold (:attr:`thresholds_`)."""
        check_is_fitted(self, "views_")
        docs = segment_docs(X)
        if not docs:
            return np.zeros((0, len(LABELS)))
        base = self.views_.base_proba(_transform(self.features_, docs))
        n_labels = len(LABELS)
        out = base[:, :n_labels]
        out = decisions.exclusive_rule(out, self.thresholds_, self._exclusive_label(),
                                       self.exclusive_keep_)
        if self.views_.gate_ is None:
            return out  # no gate, no evidence that a complaint is environmental at all
        return decisions.at_least_one(out, self.thresholds_, base[:, n_labels], self.at_least_one)

    def predict(self, X) -> np.ndarray:
        """0/1 matrix of the labels given, columns in :data:`LABELS` order."""
        return (self.predict_proba(X) >= self.thresholds_).astype(int)

    def type_terms_version(self) -> Optional[str]:
        """The version of the cue-terms file the fitted model applies (``None``: no cues)."""
        check_is_fitted(self, "features_")
        return next((step.terms_version_ for name, step in self.features_.transformer_list
                     if name == "cues"), None)
