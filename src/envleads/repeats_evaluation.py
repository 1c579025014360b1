"""Repeat-petition quality measured through the product's own path: the batch contract.

    envleads evaluate-repeats --gold repeats_dev.jsonl [--jurisdiction 430100] [--engine beam|rounds]
    envleads evaluate-repeats --gold tests/data/confusable/dev_wa.jsonl [--gold ...] [--no-jurisdiction]

A gold file is either a labelled message board (``id``, ``title``, ``text``, ``received_at``,
``cluster``) or a batch input file with a ``<stem>.truth.jsonl`` beside it (``complaint_id``,
``matter_id``, ``environmental``), as the project's confusable corpus is. The events are written as
batch input, run through :func:`envleads.pipelines.batch.run_batch` (or the rounds engine) with
default settings, and the ``cluster_id`` of the output is compared with the gold matters:
pairwise precision/recall of "same matter", B-cubed F1, and how many gold non-environmental
complaints ended in a matter of several reports. No other path is scored, so a figure here is
what a user of ``envleads batch`` gets.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from envleads.evaluation import read_jsonl
from envleads.generate_dataset import default_truth_path as truth_path

Events = List[dict]
Truth = Dict[str, dict]


def clustering_scores(gold: Mapping[str, str], predicted: Mapping[str, str]) -> Dict[str, float]:
    """Pairwise precision/recall of "same matter" and B-cubed precision/recall/F1."""
    ids = sorted(gold)

    def groups(labels: Mapping[str, str]) -> Dict[str, set]:
        out: Dict[str, set] = {}
        for i in ids:
            out.setdefault(labels[i], set()).add(i)
        return out

    g_groups, p_groups = groups(gold), groups(predicted)
    tp = fp = fn = 0
    b_p = b_r = 0.0
    for i in ids:
        g = g_groups[gold[i]]
        p = p_groups[predicted[i]]
        both = len(g & p)
        b_p += both / len(p)
        b_r += both / len(g)
        tp += both - 1
        fp += len(p) - both
        fn += len(g) - both
    tp, fp, fn = tp / 2, fp / 2, fn / 2
    n = len(ids) or 1
    bp, br = b_p / n, b_r / n
    return {
        "pairwise_precision": tp / (tp + fp) if tp + fp else 1.0,
        "pairwise_recall": tp / (tp + fn) if tp + fn else 1.0,
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f1": 2 * bp * br / (bp + br) if bp + br else 0.0,
        "gold_pairs": tp + fn,
        "predicted_pairs": tp + fp,
    }


def board_gold(rows: Sequence[dict], jurisdiction: Optional[str] = None) -> Tuple[Events, Truth]:
    """A labelled message board as batch input (the board's city as intake jurisdiction, if given)
    and its truth (whether a message is environmental is not labelled there)."""
    events, truth = [], {}
    for row in rows:
        event = {"complaint_id": str(row["id"]), "received_at": row["received_at"],
                 "title": row.get("title") or "", "text": row["text"]}
        if jurisdiction:
            event["jurisdiction_adcode"] = jurisdiction
        events.append(event)
        truth[event["complaint_id"]] = {"matter_id": str(row["cluster"]), "environmental": None}
    return events, truth


def corpus_gold(paths: Sequence[str], with_jurisdiction: bool = True) -> Tuple[Events, Truth]:
    """Batch input files with their truth files; ``with_jurisdiction`` off drops the intake
    jurisdiction, so that only the texts place the complaints."""
    events, truth = [], {}
    for path in paths:
        for event in read_jsonl(path):
            if not with_jurisdiction:
                event.pop("jurisdiction_adcode", None)
            events.append(event)
        for row in read_jsonl(truth_path(path)):
            truth[row["complaint_id"]] = row
    return events, truth


def load_gold(paths: Sequence[str], jurisdiction: Optional[str] = None,
              with_jurisdiction: bool = True) -> Tuple[Events, Truth]:
    """Either kind of gold file (see the module docstring); kinds may not be mixed."""
    boards = [p for p in paths if not os.path.exists(truth_path(p))]
    if boards and len(boards) != len(paths):
        raise ValueError("give either labelled boards or batch files with truth files, not both")
    if boards:
        rows = [row for path in paths for row in read_jsonl(path)]
        return board_gold(rows, jurisdiction if with_jurisdiction else None)
    return corpus_gold(paths, with_jurisdiction)


def run_product(events: Events, engine: str = "beam", beam_args: Sequence[str] = ()
                ) -> Tuple[List[dict], List[dict]]:
    """The enriched rows and leads ``envleads batch`` writes for ``events`` with default settings
    (``beam_args`` only to name a model registry or version, e.g. ``--model_registry DIR``)."""
    from envleads.pipelines.batch import run_batch, run_batch_rounds

    with tempfile.TemporaryDirectory() as work:
        source, output, leads = (os.path.join(work, name) for name in ("in.jsonl", "out.jsonl", "leads.jsonl"))
        with open(source, "w", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event, ensure_ascii=False) + "\n")
        if engine == "rounds":
            run_batch_rounds(source, output, leads, beam_args=list(beam_args), enrich_workers=0)
        else:
            run_batch(source, output, leads, beam_args=["--runner=FnApiRunner", *beam_args])
        return read_jsonl(output), read_jsonl(leads)


def score_matters(rows: Sequence[dict], truth: Truth) -> Dict[str, float]:
    """Clustering scores of the output's ``cluster_id`` against the gold ``matter_id``; the gold
    non-environmental complaints that share a matter with another report; and the output's
    multi-report matters that hold reports of more than one gold matter."""
    rows = [row for row in rows if row["complaint_id"] in truth]
    gold = {row["complaint_id"]: str(truth[row["complaint_id"]]["matter_id"]) for row in rows}
    predicted = {row["complaint_id"]: row["cluster_id"] for row in rows}
    scores = clustering_scores(gold, predicted)
    members: Dict[str, List[str]] = {}
    for cid, cluster in predicted.items():
        members.setdefault(cluster, []).append(cid)
    multi = [cids for cids in members.values() if len(cids) > 1]
    return {"rows": len(rows), "rows_missing": len(truth) - len(rows),
            **{key: round(float(value), 4) for key, value in scores.items()},
            "gold_matters": len(set(gold.values())), "predicted_matters": len(members),
            "multi_report_matters": len(multi),
            "multi_report_matters_mixed": sum(1 for cids in multi if len({gold[cid] for cid in cids}) > 1),
            "non_environmental_in_multi_report_matters": sum(
                1 for cids in multi for cid in cids if truth[cid].get("environmental") is False)}


def score_leads(rows: Sequence[dict], truth: Truth, leads: Sequence[dict]) -> Dict[str, int]:
    """The multi-report leads (leads whose matter holds several scored reports) and those holding
    reports of more than one gold matter: issue 21's purity figure is over leads, and a
    non-environmental matter makes no lead."""
    lead_ids = {lead["cluster_id"] for lead in leads}
    matters: Dict[str, List[str]] = {}
    for row in rows:
        if row["complaint_id"] in truth and row["cluster_id"] in lead_ids:
            matters.setdefault(row["cluster_id"], []).append(str(truth[row["complaint_id"]]["matter_id"]))
    multi = [gold for gold in matters.values() if len(gold) > 1]
    return {"multi_report_leads": len(multi), "multi_report_leads_mixed": sum(1 for gold in multi if len(set(gold)) > 1)}


def evaluate(paths: Sequence[str], jurisdiction: Optional[str] = None, with_jurisdiction: bool = True,
             engine: str = "beam") -> Dict[str, float]:
    """Loads the gold, runs the batch contract on it and scores its matters."""
    events, truth = load_gold(paths, jurisdiction, with_jurisdiction)
    rows, leads = run_product(events, engine)
    return {**score_matters(rows, truth), "leads": len(leads), "engine": engine}
