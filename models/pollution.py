"""Pollution-type classifier: which media a complaint is about, or that it is not environmental.

One scikit-learn ``Pipeline`` does everything from ``(title, text)`` to per-label probabilities, so
it is fitted, saved and loaded as a unit:

``segment`` (normalise + jieba with the domain dictionary) -> ``features`` (word TF-IDF over jieba
tokens, character 1-3-gram TF-IDF, weak-rule cue counts from ``type_terms.json``) -> ``classify``
(one calibrated binary model per label with per-label decision thresholds tuned by
cross-validation).

The real labelled rows are few and rare labels (soil, radiation, other) have around ten examples,
so the learner is helped twice: by the cue-term features (domain knowledge as data) and by the
project's own generated training sentences in ``models/training/*.jsonl``.

Every object the pipeline references is defined at module level so ``joblib.load`` on a worker
can import it; the jieba tokenizer is never pickled but built lazily once per process.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from envleads.config import ConfigError, data_path, load_json_config
from envleads.records import POLLUTION_LABELS, TypePrediction
from envleads.text import SegmentedDoc, normalise, segment_for_model, shared_tokenizer

LOGGER = logging.getLogger(__name__)

LABELS: Tuple[str, ...] = tuple(POLLUTION_LABELS)
TYPE_TERMS_FILE = "type_terms.json"
TRAINING_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training")
DEFAULT_REVIEW_THRESHOLD = 0.5
DEFAULT_HYPER: Dict[str, Any] = {
    "model": "lr",  # "lr" | "svc" | "ensemble"
    "C": 8.0,
    "char_ngrams": True,
    "rules": True,
    "synthetic_weight": 0.5,
    "threshold_folds": 4,
    "default_threshold": 0.4,
    "gate": True,
    "seed": 0,
}


# --------------------------------------------------------------------------- segmentation step
def _as_pair(doc: Any) -> Tuple[str, str]:
    if isinstance(doc, str):
        return "", doc
    title, text = doc
    return title or "", text or ""


def segment_doc(doc: Any) -> SegmentedDoc:
    """Normalises and segments one ``(title, text)`` pair (or bare text) with the shared tokenizer."""
    title, text = _as_pair(doc)
    return segment_for_model(shared_tokenizer(), title, text)


def segment_docs(docs: Iterable[Any]) -> List[SegmentedDoc]:
    """Segments a batch; :class:`SegmentedDoc` items pass through (segmented once upstream)."""
    return [doc if isinstance(doc, SegmentedDoc) else segment_doc(doc) for doc in docs]


def word_analyzer(doc: SegmentedDoc) -> List[str]:
    """Words of title and text; title words also count as ``T:word`` because titles are dense."""
    return doc.tokens + doc.title_tokens + ["T:" + token for token in doc.title_tokens]


def full_text(doc: SegmentedDoc) -> str:
    """Title and text as one string, for the character n-gram vectoriser."""
    return doc.title + "。" + doc.text if doc.title else doc.text


# --------------------------------------------------------------------------- rule features
def load_type_terms(path: Optional[str] = None) -> Dict[str, Any]:
    """Reads and validates ``type_terms.json``: cue terms per label plus non-environmental cues."""
    path = path or data_path(TYPE_TERMS_FILE)
    document = load_json_config(path, required=("version", "labels", "not_environmental"))
    for label in LABELS:
        terms = document["labels"].get(label)
        if not isinstance(terms, list) or not terms:
            raise ConfigError(f"{path}: labels.{label} must be a non-empty list of terms")
    return document


class CueTermFeatures(BaseEstimator, TransformerMixin):
    """Weak rules as features: per label, how many cue terms the text and the title contain.

    Cue lists come from ``type_terms.json`` at fit time and are kept in the fitted state, so a
    saved model always applies the rules it was trained with.

    Args:
        terms_path: a type-terms file; ``None`` means the packaged one.
    """

    def __init__(self, terms_path: Optional[str] = None):
        self.terms_path = terms_path

    def fit(self, X, y=None):
        document = load_type_terms(self.terms_path)
        groups = [[normalise(t) for t in document["labels"][label]] for label in LABELS]
        groups.append([normalise(t) for t in document["not_environmental"]])
        self.groups_ = groups
        self.terms_version_ = str(document["version"])
        self.n_features_out_ = 2 * len(groups)
        return self

    def transform(self, X):
        out = np.zeros((len(X), 2 * len(self.groups_)), dtype=np.float64)
        for row, doc in enumerate(X):
            for col, terms in enumerate(self.groups_):
                text_hits = sum(1 for term in terms if term in doc.text)
                title_hits = sum(1 for term in terms if term in doc.title)
                out[row, 2 * col] = math.log1p(text_hits)
                out[row, 2 * col + 1] = 1.0 if title_hits else 0.0
        return out

    def get_feature_names_out(self, input_features=None):
        names = list(LABELS) + ["not_environmental"]
        return np.array([f"cue_{n}_{w}" for n in names for w in ("text", "title")], dtype=object)


# --------------------------------------------------------------------------- classifier step
class MultiLabelThresholdClassifier(BaseEstimator, ClassifierMixin):
    """One binary probabilistic model per label, each with its own decision threshold.

    Per-label thresholds matter because rare labels get low probabilities: one global 0.5 would
    never predict them. ``thresholds`` is set after fitting by :func:`train_model` from
    out-of-fold probabilities; without it ``default_threshold`` applies.

    Args:
        estimator: a binary classifier with ``predict_proba`` (cloned per label).
        thresholds: per-label thresholds, or ``None``.
        default_threshold: used when ``thresholds`` is ``None``.
    """

    def __init__(self, estimator=None, thresholds=None, default_threshold: float = 0.5,
                 gate: bool = False):
        self.estimator = estimator
        self.thresholds = thresholds
        self.default_threshold = default_threshold
        self.gate = gate

    def fit(self, X, Y, sample_weight=None):
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        base = self.estimator if self.estimator is not None else LogisticRegression(max_iter=2000)
        self.estimators_ = []
        self.constant_ = []
        for column in range(Y.shape[1]):
            y = Y[:, column]
            if y.min() == y.max():
                # No positives (or only positives) in this training set: predict the constant.
                self.estimators_.append(None)
                self.constant_.append(float(y[0]))
                continue
            model = clone(base)
            model.fit(X, y, sample_weight=sample_weight)
            self.estimators_.append(model)
            self.constant_.append(None)
        self.gate_ = None
        if self.gate:
            # "Environmental at all?" learns from every labelled row at once, which the
            # per-label models (a few dozen positives each) cannot.
            env = (Y.sum(axis=1) > 0).astype(int)
            if env.min() != env.max():
                self.gate_ = clone(base).fit(X, env, sample_weight=sample_weight)
        self.n_labels_ = Y.shape[1]
        self.classes_ = np.arange(Y.shape[1])
        return self

    def predict_proba(self, X):
        n = X.shape[0]
        out = np.zeros((n, self.n_labels_), dtype=np.float64)
        for column, model in enumerate(self.estimators_):
            out[:, column] = (self.constant_[column] if model is None
                              else model.predict_proba(X)[:, 1])
        if getattr(self, "gate_", None) is not None:
            # Geometric mean of label and gate probabilities: both must agree.
            out = np.sqrt(out * self.gate_.predict_proba(X)[:, 1][:, None])
        return out

    def thresholds_array(self) -> np.ndarray:
        if self.thresholds is None:
            return np.full(self.n_labels_, self.default_threshold)
        return np.asarray(self.thresholds, dtype=np.float64)

    def predict(self, X):
        return (self.predict_proba(X) >= self.thresholds_array()).astype(int)


def _base_estimator(model: str, C: float, seed: int):
    if model == "lr":
        return LogisticRegression(C=C, max_iter=3000, class_weight="balanced", solver="liblinear",
                                  random_state=seed)
    if model == "svc":
        return CalibratedClassifierCV(LinearSVC(C=C / 10.0, class_weight="balanced",
                                                random_state=seed), method="sigmoid", cv=3)
    if model == "ensemble":
        from sklearn.ensemble import VotingClassifier

        return VotingClassifier([
            ("lr", _base_estimator("lr", C, seed)),
            ("svc", _base_estimator("svc", C, seed)),
        ], voting="soft")
    raise ValueError(f"unknown model {model!r}; expected 'lr', 'svc' or 'ensemble'")


def build_pipeline(**hyper: Any) -> Pipeline:
    """An unfitted classifier pipeline; ``hyper`` overrides :data:`DEFAULT_HYPER`."""
    h = {**DEFAULT_HYPER, **hyper}
    features = [("words", TfidfVectorizer(analyzer=word_analyzer, sublinear_tf=True, min_df=2))]
    if h["char_ngrams"]:
        features.append(("chars", TfidfVectorizer(analyzer="char", preprocessor=full_text,
                                                  ngram_range=(1, 3), sublinear_tf=True,
                                                  min_df=2, max_features=60000)))
    if h["rules"]:
        features.append(("cues", CueTermFeatures()))
    return Pipeline([
        ("segment", FunctionTransformer(segment_docs)),
        ("features", FeatureUnion(features)),
        ("classify", MultiLabelThresholdClassifier(
            _base_estimator(h["model"], h["C"], h["seed"]),
            default_threshold=h["default_threshold"], gate=h["gate"])),
    ])


# --------------------------------------------------------------------------- training
def _docs(records: Sequence[dict]) -> List[Tuple[str, str]]:
    return [(r.get("title") or "", r.get("text") or "") for r in records]


def label_matrix(records: Sequence[dict]) -> np.ndarray:
    """Gold labels as a 0/1 matrix over :data:`LABELS`; unknown labels fail loudly."""
    Y = np.zeros((len(records), len(LABELS)), dtype=int)
    for row, record in enumerate(records):
        for label in record.get("labels") or []:
            if label not in LABELS:
                raise ValueError(f"record {record.get('id')!r}: unknown label {label!r}")
            Y[row, LABELS.index(label)] = 1
    return Y


def _strata(Y: np.ndarray) -> np.ndarray:
    """Stratify folds by the rarest gold label of each row, so rare labels spread over folds."""
    counts = Y.sum(axis=0)
    strata = np.full(Y.shape[0], -1)
    for row in range(Y.shape[0]):
        present = np.flatnonzero(Y[row])
        if present.size:
            strata[row] = present[np.argmin(counts[present])]
    # StratifiedKFold needs every stratum at least n_splits times; merge tiny strata into "any".
    values, sizes = np.unique(strata, return_counts=True)
    for value, size in zip(values, sizes):
        if size < 5:
            strata[strata == value] = -2
    return strata


def tune_thresholds(Y: np.ndarray, P: np.ndarray, default: float, min_positives: int = 5
                    ) -> List[float]:
    """Per-label threshold maximising F1 on out-of-fold probabilities.

    Takes the middle of the best plateau (not its edge) so one row does not move the threshold,
    and keeps ``default`` for labels with fewer than ``min_positives`` rows.
    """
    grid = np.round(np.arange(0.10, 0.81, 0.025), 3)
    thresholds = []
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
        scores = np.asarray(scores)
        best = np.flatnonzero(scores >= scores.max() - 0.005)
        thresholds.append(float(grid[best[len(best) // 2]]))
    return thresholds


def _fit_features_and_classifier(pipeline: Pipeline, segmented, Y, weights) -> Pipeline:
    tail = pipeline[1:]
    tail.fit(segmented, Y, classify__sample_weight=weights)
    return pipeline


def train_model(records: List[dict], **hyper: Any) -> Pipeline:
    """Fits the classifier pipeline and tunes its per-label thresholds.

    Thresholds come from out-of-fold probabilities over the non-synthetic rows (records without
    ``"synthetic": true``); synthetic rows are always in the training side and weigh
    ``synthetic_weight``.

    Args:
        records: dicts with ``text``, optional ``title``, ``labels`` and ``synthetic``.
        **hyper: overrides of :data:`DEFAULT_HYPER`.
    """
    h = {**DEFAULT_HYPER, **hyper}
    pipeline = build_pipeline(**h)
    segmented = segment_docs(_docs(records))
    Y = label_matrix(records)
    synthetic = np.array([bool(r.get("synthetic")) for r in records])
    weights = np.where(synthetic, h["synthetic_weight"], 1.0)
    real = np.flatnonzero(~synthetic)
    thresholds = None
    if h["threshold_folds"] and len(real) >= 5 * h["threshold_folds"]:
        P = np.zeros((len(real), len(LABELS)))
        folds = StratifiedKFold(h["threshold_folds"], shuffle=True, random_state=h["seed"])
        for train_idx, test_idx in folds.split(real, _strata(Y[real])):
            train_rows = np.concatenate([real[train_idx], np.flatnonzero(synthetic)])
            fold_pipe = build_pipeline(**h)
            _fit_features_and_classifier(fold_pipe, [segmented[i] for i in train_rows],
                                         Y[train_rows], weights[train_rows])
            P[test_idx] = fold_pipe[1:].predict_proba([segmented[i] for i in real[test_idx]])
        thresholds = tune_thresholds(Y[real], P, h["default_threshold"])
    _fit_features_and_classifier(pipeline, segmented, Y, weights)
    pipeline.named_steps["classify"].set_params(thresholds=thresholds)
    return pipeline


# --------------------------------------------------------------------------- prediction
def decide(probabilities: np.ndarray, thresholds: np.ndarray, review_threshold: float,
           model_version: str) -> List[TypePrediction]:
    """Turns per-label probabilities into predictions.

    Labels are those at or over their threshold, ordered by probability (main concern first);
    confidence is the probability that the whole decision is right, taking labels as
    independent: product of ``p`` for chosen labels and ``1 - p`` for the others.
    """
    out = []
    for row in probabilities:
        chosen = [i for i in np.argsort(-row, kind="stable") if row[i] >= thresholds[i]]
        confidence = float(np.prod(np.where(row >= thresholds, row, 1.0 - row)))
        labels = [LABELS[i] for i in chosen]
        out.append(TypePrediction(labels=labels, primary=labels[0] if labels else None,
                                  confidence=round(confidence, 4),
                                  needs_review=confidence < review_threshold,
                                  model_version=model_version))
    return out


class PollutionModel:
    """A fitted pipeline plus its registry version; what pipelines and the CLI call.

    Args:
        pipeline: from :func:`train_model`.
        version: registry version (``"unregistered"`` for a fresh model).
        review_threshold: predictions with lower confidence get ``needs_review=True``.
    """

    def __init__(self, pipeline: Pipeline, version: str = "unregistered",
                 review_threshold: float = DEFAULT_REVIEW_THRESHOLD):
        self.pipeline = pipeline
        self.version = version
        self.labels: Tuple[str, ...] = LABELS
        self.review_threshold = review_threshold

    @property
    def thresholds(self) -> np.ndarray:
        return self.pipeline.named_steps["classify"].thresholds_array()

    def predict_proba(self, docs: Sequence[Tuple[str, str]]) -> np.ndarray:
        if not docs:
            return np.zeros((0, len(self.labels)))
        return self.pipeline.predict_proba(list(docs))

    def predict(self, docs: Sequence[Tuple[str, str]]) -> List[TypePrediction]:
        """Classifies a batch of ``(title, text)`` pairs (batching amortises the matrix work)."""
        return decide(self.predict_proba(docs), self.thresholds, self.review_threshold,
                      self.version)


# --------------------------------------------------------------------------- evaluation
def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score_predictions(gold_records: Sequence[dict], predictions: Sequence[TypePrediction]
                      ) -> Dict[str, Any]:
    """The evaluation report for predictions aligned with gold records (see :func:`evaluate`)."""
    Y = label_matrix(gold_records)
    Yp = np.zeros_like(Y)
    for row, prediction in enumerate(predictions):
        for label in prediction.labels:
            Yp[row, LABELS.index(label)] = 1
    per_label = {}
    for i, label in enumerate(LABELS):
        tp = int(np.sum((Y[:, i] == 1) & (Yp[:, i] == 1)))
        fp = int(np.sum((Y[:, i] == 0) & (Yp[:, i] == 1)))
        fn = int(np.sum((Y[:, i] == 1) & (Yp[:, i] == 0)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        per_label[label] = {"precision": round(precision, 4), "recall": round(recall, 4),
                            "f1": round(_f1(precision, recall), 4), "support": int(Y[:, i].sum()),
                            "predicted": int(Yp[:, i].sum())}
    tp = int(np.sum((Y == 1) & (Yp == 1)))
    micro_p = tp / Yp.sum() if Yp.sum() else 0.0
    micro_r = tp / Y.sum() if Y.sum() else 0.0
    frequent = [l for l in LABELS if per_label[l]["support"] >= 10]
    env_gold = Y.sum(axis=1) > 0
    env_pred = Yp.sum(axis=1) > 0
    confusion: Dict[str, Dict[str, int]] = {}
    errors = []
    for record, prediction, gold_row, pred_row in zip(gold_records, predictions, Y, Yp):
        gold_labels = list(record.get("labels") or [])
        gold_primary = gold_labels[0] if gold_labels else "none"
        pred_primary = prediction.primary or "none"
        confusion.setdefault(gold_primary, Counter())[pred_primary] += 1
        wrong = int(np.sum(gold_row != pred_row))
        if wrong:
            errors.append({"id": record.get("id"), "gold": gold_labels,
                           "predicted": list(prediction.labels),
                           "confidence": prediction.confidence, "_wrong": wrong})
    # Worst first: most wrong labels, then the most confident mistakes.
    errors.sort(key=lambda e: (-e["_wrong"], -e["confidence"]))
    for error in errors:
        del error["_wrong"]
    return {
        "n": len(gold_records),
        "per_label": per_label,
        "micro_f1": round(_f1(micro_p, micro_r), 4),
        "micro_precision": round(micro_p, 4),
        "micro_recall": round(micro_r, 4),
        "macro_f1_frequent": round(float(np.mean([per_label[l]["f1"] for l in frequent])), 4)
        if frequent else 0.0,
        "frequent_labels": frequent,
        "macro_f1_all": round(float(np.mean([per_label[l]["f1"] for l in LABELS])), 4),
        "env_accuracy": round(float(np.mean(env_gold == env_pred)), 4) if len(Y) else 0.0,
        "needs_review_rate": round(float(np.mean([p.needs_review for p in predictions])), 4)
        if predictions else 0.0,
        "confusion": {g: dict(c) for g, c in sorted(confusion.items())},
        "worst_errors": errors[:20],
    }


def evaluate(model: PollutionModel, gold_records: Sequence[dict], batch_size: int = 64
             ) -> Dict[str, Any]:
    """Scores ``model`` on gold records.

    Returns per-label precision/recall/F1/support, micro F1, macro F1 over labels with at least 10
    gold rows and over all labels, environmental-or-not accuracy, a primary-label confusion table
    (``"none"`` = not environmental) and the 20 worst errors (ids and labels only, never text).
    """
    docs = _docs(gold_records)
    predictions: List[TypePrediction] = []
    for start in range(0, len(docs), batch_size):
        predictions.extend(model.predict(docs[start:start + batch_size]))
    report = score_predictions(gold_records, predictions)
    report["model_version"] = model.version
    return report


def cross_validate(records: List[dict], folds: int = 5, seed: int = 0,
                   extra_train: Optional[List[dict]] = None, **hyper: Any) -> Dict[str, Any]:
    """K-fold cross-validation on real rows; ``extra_train`` joins every training side only.

    The report pools the out-of-fold predictions of all folds (so every real row is scored once,
    by a model that never saw it) and adds each fold's micro and macro F1.
    """
    extra = [dict(r, synthetic=True) for r in (extra_train or [])]
    records = [dict(r, synthetic=False) for r in records]
    Y = label_matrix(records)
    predictions: List[Optional[TypePrediction]] = [None] * len(records)
    fold_scores = []
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    started = time.perf_counter()
    for fold, (train_idx, test_idx) in enumerate(splitter.split(records, _strata(Y))):
        pipeline = train_model([records[i] for i in train_idx] + extra, seed=seed, **hyper)
        model = PollutionModel(pipeline, version=f"cv-fold-{fold}")
        held_out = [records[i] for i in test_idx]
        fold_predictions = model.predict(_docs(held_out))
        for i, prediction in zip(test_idx, fold_predictions):
            predictions[i] = prediction
        fold_report = score_predictions(held_out, fold_predictions)
        fold_scores.append({"micro_f1": fold_report["micro_f1"],
                            "macro_f1_frequent": fold_report["macro_f1_frequent"],
                            "env_accuracy": fold_report["env_accuracy"]})
        LOGGER.info("cv fold %d: micro_f1=%.3f", fold, fold_report["micro_f1"])
    report = score_predictions(records, predictions)
    report["folds"] = fold_scores
    report["cv"] = {"folds": folds, "seed": seed, "extra_train_rows": len(extra),
                    "hyper": {**DEFAULT_HYPER, **hyper},
                    "seconds": round(time.perf_counter() - started, 1)}
    return report


def format_report(report: Dict[str, Any]) -> str:
    """A readable table of an evaluation or cross-validation report."""
    lines = []
    title = report.get("model_version") or (f"{report['cv']['folds']}-fold CV" if "cv" in report
                                             else "evaluation")
    lines.append(f"Pollution-type classifier: {title}  (n={report['n']})")
    lines.append(f"{'label':<12}{'prec':>7}{'rec':>7}{'f1':>7}{'support':>9}{'pred':>7}")
    for label, m in report["per_label"].items():
        lines.append(f"{label:<12}{m['precision']:>7.3f}{m['recall']:>7.3f}{m['f1']:>7.3f}"
                     f"{m['support']:>9d}{m['predicted']:>7d}")
    lines.append(f"micro F1 {report['micro_f1']:.3f}   macro F1 (support>=10: "
                 f"{','.join(report['frequent_labels'])}) {report['macro_f1_frequent']:.3f}   "
                 f"macro F1 (all) {report['macro_f1_all']:.3f}")
    lines.append(f"environmental/not accuracy {report['env_accuracy']:.3f}   "
                 f"needs_review rate {report['needs_review_rate']:.3f}")
    columns = ["none"] + list(LABELS)
    lines.append("confusion (rows gold primary, columns predicted primary):")
    lines.append(" " * 12 + "".join(f"{c[:6]:>7}" for c in columns))
    for gold in columns:
        row = report["confusion"].get(gold)
        if row:
            lines.append(f"{gold:<12}" + "".join(f"{row.get(c, 0):>7d}" for c in columns))
    if report.get("folds"):
        lines.append("folds: " + "  ".join(
            f"[micro {f['micro_f1']:.3f} macro {f['macro_f1_frequent']:.3f}]"
            for f in report["folds"]))
    if report["worst_errors"]:
        lines.append("worst errors (id: gold -> predicted @confidence):")
        for e in report["worst_errors"]:
            lines.append(f"  {e['id']}: {e['gold']} -> {e['predicted']} @{e['confidence']:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- data files
def read_jsonl(path: str) -> List[dict]:
    """Reads labelled rows (JSON Lines); each needs ``text`` and ``labels``."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "text" not in row or "labels" not in row:
                raise ValueError(f"{path}:{number}: a row needs 'text' and 'labels'")
            rows.append(row)
    return rows


def training_files() -> List[str]:
    """The project's own training sentences shipped in ``models/training/``."""
    return sorted(glob.glob(os.path.join(TRAINING_DIR, "*.jsonl")))


def load_project_training() -> List[dict]:
    """All generated/hand-written project rows, marked synthetic."""
    rows = []
    for path in training_files():
        rows.extend(dict(r, synthetic=True) for r in read_jsonl(path))
    return rows


def shared_data_dir() -> Optional[str]:
    """The shared labelled-data folder (``$ENVLEADS_SHARED_DATA`` or ``<repo>/../shared/data``)."""
    configured = os.environ.get("ENVLEADS_SHARED_DATA")
    if configured:
        return configured if os.path.isdir(configured) else None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(os.path.dirname(repo), "shared", "data")
    return candidate if os.path.isdir(candidate) else None


# --------------------------------------------------------------------------- CLI
def _write_json(path: Optional[str], report: Dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)


def _run_train(args: argparse.Namespace) -> int:
    from envleads.models import registry

    records: List[dict] = []
    for path in args.data or []:
        records.extend(dict(r, synthetic=False) for r in read_jsonl(path))
    if args.include_shared:
        shared = shared_data_dir()
        if shared and os.path.join(shared, "pollution_dev.jsonl") not in (args.data or []):
            path = os.path.join(shared, "pollution_dev.jsonl")
            if os.path.exists(path):
                records.extend(dict(r, synthetic=False) for r in read_jsonl(path))
    records.extend(load_project_training())
    version = registry.train_and_register(records, registry_dir=args.out,
                                          command=" ".join(["envleads"] + sys.argv[1:]),
                                          cv_folds=args.cv)
    metadata = registry.read_metadata(version, args.out)
    print(f"registered pollution_type/{version}")
    if metadata.get("metrics"):
        print(format_report(metadata["metrics"]))
    _write_json(args.json_out, {"version": version, **metadata})
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    gold = read_jsonl(args.gold)
    if args.cv:
        report = cross_validate(gold, folds=args.cv, seed=args.seed,
                                extra_train=load_project_training())
    else:
        from envleads.models import registry

        report = evaluate(registry.load_model(args.model, args.registry), gold)
    print(format_report(report))
    _write_json(args.json_out, report)
    return 0


def add_subcommand(subparsers) -> None:
    """Registers ``envleads train`` and ``envleads evaluate``."""
    train = subparsers.add_parser("train", help="train the pollution-type classifier and register it")
    train.add_argument("--data", nargs="*", default=[], metavar="FILE",
                       help="labelled JSON Lines files (text, title, labels)")
    train.add_argument("--out", default=None, metavar="REGISTRY_DIR",
                       help="model registry folder (default: $ENVLEADS_REGISTRY or models/registry)")
    train.add_argument("--include-shared", action=argparse.BooleanOptionalAction, default=True,
                       help="also train on the shared pollution_dev.jsonl when present")
    train.add_argument("--cv", type=int, default=0, metavar="K",
                       help="also run K-fold CV on the real rows and store it as the metrics")
    train.add_argument("--json-out", default=None, metavar="PATH", help="write metadata as JSON")
    train.set_defaults(func=_run_train)

    evaluate_parser = subparsers.add_parser(
        "evaluate", help="score a registered model on gold data, or cross-validate on it")
    evaluate_parser.add_argument("--model", default="latest", help="VERSION or 'latest'")
    evaluate_parser.add_argument("--registry", default=None, metavar="REGISTRY_DIR",
                                 help="model registry folder")
    evaluate_parser.add_argument("--gold", required=True, metavar="FILE",
                                 help="gold JSON Lines file")
    evaluate_parser.add_argument("--cv", type=int, default=0, metavar="K",
                                 help="run K-fold cross-validation on the gold file instead")
    evaluate_parser.add_argument("--seed", type=int, default=0, help="CV fold seed")
    evaluate_parser.add_argument("--json-out", default=None, metavar="PATH",
                                 help="write the report as JSON")
    evaluate_parser.set_defaults(func=_run_evaluate)
