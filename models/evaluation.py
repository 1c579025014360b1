"""Pollution-type quality measured through the product's own path: ``envleads batch``.

    envleads evaluate --part locked               # the locked part of the real labels (the result)
    envleads evaluate --gold FILE [--gold FILE]   # any labelled file (id/title/text/labels)

Labelled rows are written as batch input, run through ``envleads batch`` with default settings
(the production model unless ``--model_version``/``--model_registry`` say otherwise), and the
``pollution_types`` of its enriched output are scored against the gold labels. No other path is
scored, so a figure here is what a user of ``envleads batch`` gets.

The scorer (:func:`score_predictions`) is shared by every figure: ``envleads evaluate``,
``envleads models compare``, :func:`cross_validate` (choices on the development part) and the
notebook.
"""
from __future__ import annotations

import concurrent.futures
import glob
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.model_selection import StratifiedKFold
# tqdm.auto: a widget bar inside Jupyter (the analyst's notebook), a text bar in a terminal
from tqdm.auto import tqdm

from envleads.models.estimator import DEFAULT_HYPER
from envleads.models.features import LABELS, fold_strata
from envleads.models.prediction import PollutionModel
from envleads.evaluation import read_jsonl as read_rows
from envleads.models.train import label_matrix, read_jsonl, record_docs, train_model
from envleads.records import TypePrediction

LOGGER = logging.getLogger(__name__)

# Real board messages without a date still need one in the batch contract; it does not affect types.
UNDATED = "2020-01-01T00:00:00+08:00"
HARD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tests", "data", "pollution_hard")
CONFUSABLE_DIR = os.path.join(os.path.dirname(HARD_DIR), "confusable")


def batch_events(records: Sequence[dict]) -> List[dict]:
    """Labelled rows as batch input events (the complaint id is the row id)."""
    return [{"complaint_id": str(row["id"]), "received_at": row.get("received_at") or UNDATED,
             "title": row.get("title") or "", "text": row["text"]} for row in records]


def prediction_of(enriched: dict) -> TypePrediction:
    """The type decision an enriched output row carries."""
    return TypePrediction(labels=list(enriched["pollution_types"]), primary=enriched.get("primary_type"),
                          confidence=float(enriched["type_confidence"]),
                          needs_review=bool(enriched["needs_review"]),
                          model_version=enriched["model_version"])


def evaluate_through_batch(records: Sequence[dict], beam_args: Sequence[str] = (),
                           engine: str = "beam") -> Dict[str, Any]:
    """Runs ``records`` through ``envleads batch`` and scores its types; a row the batch rejected
    counts as predicted not environmental and is counted in ``rows_missing``."""
    rows, _ = _run_product(batch_events(records), engine, list(beam_args))
    by_id = {row["complaint_id"]: row for row in rows}
    missing = TypePrediction(labels=[], primary=None, confidence=0.0, needs_review=True,
                             model_version="")
    predictions = [prediction_of(by_id[str(r["id"])]) if str(r["id"]) in by_id else missing
                   for r in records]
    report = score_predictions(records, predictions)
    report["rows_missing"] = sum(1 for r in records if str(r["id"]) not in by_id)
    report["model_version"] = next((p.model_version for p in predictions if p.model_version), None)
    report["by_origin"] = _by_origin(records, predictions)
    report["review"] = review_figures(records, predictions)
    return report


def _run_product(events: List[dict], engine: str, beam_args: List[str]) -> Tuple[list, list]:
    """:func:`envleads.repeats_evaluation.run_product`, in a fresh process inside IPython."""
    from apache_beam.utils.interactive_utils import is_in_ipython

    from envleads.repeats_evaluation import run_product

    if engine != "beam" or not is_in_ipython():
        return run_product(events, engine=engine, beam_args=beam_args)
    # Inside a Jupyter kernel (the analyst's notebook) Beam relabels every step after the cell and
    # loads its interactive runner, which imports apache_beam.dataframe (broken with pandas 3):
    # the batch runs as it does from a terminal, in a spawned process.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(run_product, events, engine, beam_args).result()


def review_figures(records: Sequence[dict], predictions: Sequence[TypePrediction]) -> Dict[str, Any]:
    """How well ``needs_review`` points a reviewer at the wrong label sets: the share of wrong
    decisions it flags (what a reviewer catches) and of right ones (what it costs them)."""
    wrong = [set(r.get("labels") or []) != set(p.labels) for r, p in zip(records, predictions)]
    flagged = [p.needs_review for p in predictions]
    n_wrong = sum(wrong)
    n_right = len(wrong) - n_wrong
    return {"wrong": n_wrong,
            "wrong_flagged": round(sum(f for f, w in zip(flagged, wrong) if w) / n_wrong, 4) if n_wrong else None,
            "right_flagged": round(sum(f for f, w in zip(flagged, wrong) if not w) / n_right, 4) if n_right else None}


def _by_origin(records: Sequence[dict], predictions: Sequence[TypePrediction]) -> Dict[str, Any]:
    """Headline scores per ``origin`` of the rows (e.g. the shared set vs the project's labels)."""
    origins = {r.get("origin") for r in records if r.get("origin")}
    if len(origins) < 2:
        return {}
    return {origin: {key: figures[key] for key in ("n", "micro_f1", "macro_f1_all", "env_accuracy")}
            for origin, figures in scores_by_slice(records, predictions,
                                                   lambda r: r.get("origin")).items()
            if origin is not None}


def scores_by_slice(records: Sequence[dict], predictions: Sequence[TypePrediction],
                    slice_of: Callable[[dict], Any]) -> Dict[Any, Dict[str, Any]]:
    """:func:`score_predictions` of each slice of the rows (``slice_of(record)`` names its slice:
    origin, board category, a length bin), slices in sorted order of their names.

    A slice of a few rows moves by a whole row's weight: read small slices with their ``n``.
    """
    groups: Dict[Any, List[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(slice_of(record), []).append(i)
    return {name: score_predictions([records[i] for i in rows], [predictions[i] for i in rows])
            for name, rows in sorted(groups.items(), key=lambda item: str(item[0]))}


def hard_set(name: str) -> List[dict]:
    """A project-written hard set of ``tests/data/pollution_hard/`` (``hard_cases``,
    ``rare_labels``, ``new_categories``); empty when the file is absent."""
    path = os.path.join(HARD_DIR, f"{name}.jsonl")
    return read_jsonl(path) if os.path.exists(path) else []


def outside_writer_set(part: str) -> List[dict]:
    """The labelled texts of the outside writers' confusable corpus (``tests/data/confusable/``,
    written for repeat detection): ``part`` ``"dev"`` (writers whose files repeat rules were
    chosen on) or ``"locked"`` (never read). Rows as the hard sets: ``id``, ``title``, ``text``,
    ``received_at`` and the truth's ``labels``; empty when the folder is absent."""
    rows = []
    for path in sorted(glob.glob(os.path.join(CONFUSABLE_DIR, f"{part}_w*.truth.jsonl"))):
        truth = {row["complaint_id"]: row for row in read_rows(path, ("complaint_id", "labels"))}
        for event in read_rows(path.replace(".truth.jsonl", ".jsonl"), ("complaint_id", "text")):
            rows.append({"id": event["complaint_id"], "title": event.get("title") or "",
                         "text": event["text"], "received_at": event.get("received_at"),
                         "labels": list(truth[event["complaint_id"]].get("labels") or [])})
    return rows


# --------------------------------------------------------------------------- scoring
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
    pairs: Counter = Counter()
    for record, prediction, gold_row, pred_row in zip(gold_records, predictions, Y, Yp):
        gold_labels = list(record.get("labels") or [])
        gold_primary = gold_labels[0] if gold_labels else "none"
        pred_primary = prediction.primary or "none"
        confusion.setdefault(gold_primary, Counter())[pred_primary] += 1
        missed = [LABELS[i] for i in np.flatnonzero((gold_row == 1) & (pred_row == 0))]
        extra = [LABELS[i] for i in np.flatnonzero((gold_row == 0) & (pred_row == 1))]
        for label in missed:
            for other in extra or ["-"]:
                pairs[(label, other)] += 1
        if not missed:
            for other in extra:
                pairs[("none" if not gold_labels else "-", other)] += 1
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
        "exact_match": round(float(np.mean(np.all(Y == Yp, axis=1))), 4) if len(Y) else 0.0,
        "mean_confidence": round(float(np.mean([p.confidence for p in predictions])), 4)
        if predictions else 0.0,
        "reliability": _reliability(Y, Yp, predictions),
        "confusion": {g: dict(c) for g, c in sorted(confusion.items())},
        # (gold label missed or "-"/"none", predicted label not in gold or "-"): counts.
        "error_pairs": [[g, p, n] for (g, p), n in pairs.most_common(15)],
        "worst_errors": errors[:20],
    }


def _reliability(Y: np.ndarray, Yp: np.ndarray, predictions: Sequence[TypePrediction]
                 ) -> List[Dict[str, Any]]:
    """Calibration table: per confidence bin, how many, mean confidence, share fully right."""
    if not len(predictions):
        return []
    confidence = np.array([p.confidence for p in predictions])
    right = np.all(Y == Yp, axis=1)
    table = []
    edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0001]
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence >= low) & (confidence < high)
        if inside.any():
            table.append({"bin": f"{low:.1f}-{min(high, 1.0):.1f}", "n": int(inside.sum()),
                          "mean_confidence": round(float(confidence[inside].mean()), 3),
                          "exact_match": round(float(right[inside].mean()), 3)})
    return table


def evaluate(model: PollutionModel, gold_records: Sequence[dict], batch_size: int = 64
             ) -> Dict[str, Any]:
    """Scores ``model`` on gold records.

    Returns per-label precision/recall/F1/support, micro F1, macro F1 over labels with at least 10
    gold rows and over all labels, environmental-or-not accuracy, a primary-label confusion table
    (``"none"`` = not environmental) and the 20 worst errors (ids and labels only, never text).
    """
    docs = record_docs(gold_records)
    predictions: List[TypePrediction] = []
    for start in range(0, len(docs), batch_size):
        predictions.extend(model.predict(docs[start:start + batch_size]))
    report = score_predictions(gold_records, predictions)
    report["model_version"] = model.version
    return report


def cross_validate(records: List[dict], folds: int = 5, seed: int = 0,
                   extra_train: Optional[List[dict]] = None, progress: Optional[bool] = None,
                   **hyper: Any) -> Dict[str, Any]:
    """K-fold cross-validation on real rows; ``extra_train`` joins every training side only.

    The report pools the out-of-fold predictions of all folds (so every real row is scored once,
    by a model that never saw it), adds each fold's micro and macro F1 and thresholds, and keeps
    every out-of-fold prediction in ``report["predictions"]`` (see :func:`oof_prediction`): ids,
    labels and probabilities, never text.

    Args:
        progress: a progress bar over the folds; ``None`` shows it on a terminal only (a
            notebook's output is no terminal: pass ``True`` there).
    """
    extra = [dict(r, synthetic=True) for r in (extra_train or [])]
    records = [dict(r, synthetic=False) for r in records]
    Y = label_matrix(records)
    predictions: List[Optional[TypePrediction]] = [None] * len(records)
    probabilities = np.zeros(Y.shape)
    fold_of = np.zeros(len(records), dtype=int)
    fold_scores = []
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    started = time.perf_counter()
    progress_bar = tqdm(total=folds, desc="cross-validation", unit="fold", leave=False,
                        disable=None if progress is None else not progress, file=sys.stderr)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(records, fold_strata(Y))):
        estimator = train_model([records[i] for i in train_idx] + extra, seed=seed, **hyper)
        model = PollutionModel(estimator, version=f"cv-fold-{fold}")
        held_out = [records[i] for i in test_idx]
        fold_predictions, fold_probabilities = model.predict_with_proba(record_docs(held_out))
        for i, prediction, row in zip(test_idx, fold_predictions, fold_probabilities):
            predictions[i] = prediction
            probabilities[i] = row
            fold_of[i] = fold
        fold_report = score_predictions(held_out, fold_predictions)
        fold_scores.append({"micro_f1": fold_report["micro_f1"],
                            "macro_f1_frequent": fold_report["macro_f1_frequent"],
                            "env_accuracy": fold_report["env_accuracy"],
                            "thresholds": {label: round(float(t), 4)
                                           for label, t in zip(LABELS, model.thresholds)}})
        LOGGER.info("cv fold %d: micro_f1=%.3f", fold, fold_report["micro_f1"])
        progress_bar.update(1)
    progress_bar.close()
    report = score_predictions(records, predictions)
    report["folds"] = fold_scores
    report["predictions"] = [oof_prediction(record, prediction, row, int(fold))
                             for record, prediction, row, fold
                             in zip(records, predictions, probabilities, fold_of)]
    report["cv"] = {"folds": folds, "seed": seed, "extra_train_rows": len(extra),
                    "hyper": {**DEFAULT_HYPER, **hyper},
                    "seconds": round(time.perf_counter() - started, 1)}
    return report


def oof_prediction(record: dict, prediction: TypePrediction, probabilities: Sequence[float],
                   fold: int) -> Dict[str, Any]:
    """One row of ``cross_validate``'s ``report["predictions"]``: the row's ``id``, its ``fold``,
    ``gold`` and ``predicted`` labels, per-label ``probabilities`` (after the decision rules; a
    label is predicted at or over its fold's threshold, ``report["folds"][fold]["thresholds"]``),
    ``confidence`` and ``needs_review``. No text: a report may be written to disk or shared."""
    return {"id": record.get("id"), "fold": fold, "gold": list(record.get("labels") or []),
            "predicted": list(prediction.labels),
            "probabilities": {label: round(float(p), 4) for label, p in zip(LABELS, probabilities)},
            "confidence": prediction.confidence, "needs_review": prediction.needs_review}


def prediction_arrays(predictions: Sequence[Dict[str, Any]]
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Y, Yp, P)`` of :func:`oof_prediction` rows: gold and predicted 0/1 matrices and the
    probabilities, one column per label in :data:`LABELS` order (what scikit-learn's
    ``calibration_curve``, ``precision_recall_curve`` and ``multilabel_confusion_matrix`` take)."""
    Y = label_matrix([{"id": p["id"], "labels": p["gold"]} for p in predictions])
    Yp = label_matrix([{"id": p["id"], "labels": p["predicted"]} for p in predictions])
    P = np.array([[p["probabilities"][label] for label in LABELS] for p in predictions],
                 dtype=float).reshape(len(predictions), len(LABELS))
    return Y, Yp, P


def type_predictions(predictions: Sequence[Dict[str, Any]], model_version: str = "cv"
                     ) -> List[TypePrediction]:
    """:func:`oof_prediction` rows back as :class:`TypePrediction` (for :func:`score_predictions`
    and :func:`scores_by_slice`)."""
    return [TypePrediction(labels=list(p["predicted"]),
                           primary=p["predicted"][0] if p["predicted"] else None,
                           confidence=p["confidence"], needs_review=p["needs_review"],
                           model_version=model_version) for p in predictions]


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
    if "exact_match" in report:
        lines.append(f"exact label-set match {report['exact_match']:.3f}   mean confidence "
                     f"{report['mean_confidence']:.3f}   calibration: " + "  ".join(
                         f"[{b['bin']}: n={b['n']} conf {b['mean_confidence']:.2f} "
                         f"right {b['exact_match']:.2f}]" for b in report.get("reliability", [])))
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
    if report.get("error_pairs"):
        lines.append("most common errors (gold missed -> predicted extra; '-' none, 'none' not "
                     "environmental): " + ", ".join(f"{g}->{p} {n}" for g, p, n in
                                                    report["error_pairs"][:10]))
    if report["worst_errors"]:
        lines.append("worst errors (id: gold -> predicted @confidence):")
        for e in report["worst_errors"]:
            lines.append(f"  {e['id']}: {e['gold']} -> {e['predicted']} @{e['confidence']:.2f}")
    return "\n".join(lines)
