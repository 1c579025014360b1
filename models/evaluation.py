"""Pollution-type quality measured through the product's own path: ``envleads batch``.

    envleads evaluate --part locked               # the locked part of the real labels (the result)
    envleads evaluate --gold FILE [--gold FILE]   # any labelled file (id/title/text/labels)

Labelled rows are written as batch input, run through ``envleads batch`` with default settings
(the production model unless ``--model_version``/``--model_registry`` say otherwise), and the
``pollution_types`` of its enriched output are scored against the gold labels. No other path is
scored, so a figure here is what a user of ``envleads batch`` gets.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

from envleads.records import TypePrediction

# Real board messages without a date still need one in the batch contract; it does not affect types.
UNDATED = "2020-01-01T00:00:00+08:00"
HARD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tests", "data", "pollution_hard")


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
    from envleads.models.pollution import score_predictions
    from envleads.repeats_evaluation import run_product

    rows, _ = run_product(batch_events(records), engine=engine, beam_args=beam_args)
    by_id = {row["complaint_id"]: row for row in rows}
    missing = TypePrediction(labels=[], primary=None, confidence=0.0, needs_review=True,
                             model_version="")
    predictions = [prediction_of(by_id[str(r["id"])]) if str(r["id"]) in by_id else missing
                   for r in records]
    report = score_predictions(records, predictions)
    report["rows_missing"] = sum(1 for r in records if str(r["id"]) not in by_id)
    report["model_version"] = next((p.model_version for p in predictions if p.model_version), None)
    report["by_origin"] = _by_origin(records, predictions)
    return report


def _by_origin(records: Sequence[dict], predictions: Sequence[TypePrediction]) -> Dict[str, Any]:
    """Headline scores per ``origin`` of the rows (e.g. the shared set vs the project's labels)."""
    from envleads.models.pollution import score_predictions

    origins = sorted({r.get("origin") for r in records if r.get("origin")})
    out = {}
    for origin in origins if len(origins) > 1 else ():
        pairs = [(r, p) for r, p in zip(records, predictions) if r.get("origin") == origin]
        part = score_predictions([r for r, _ in pairs], [p for _, p in pairs])
        out[origin] = {key: part[key] for key in ("n", "micro_f1", "macro_f1_all", "env_accuracy")}
    return out


def hard_set(name: str) -> List[dict]:
    """A project-written hard set of ``tests/data/pollution_hard/`` (``hard_cases``,
    ``rare_labels``, ``new_categories``); empty when the file is absent."""
    from envleads.models.pollution import read_jsonl

    path = os.path.join(HARD_DIR, f"{name}.jsonl")
    return read_jsonl(path) if os.path.exists(path) else []
