"""Why repeats are missed, on development data only: runs ``envleads batch`` (the product path,
default settings) on the confusable corpus's ``dev_*`` files or the real board and lists, per gold
matter split into several output matters, each report's output matter, types, region and the
names repeat detection compares (:func:`envleads.repeats_features.matter_features`); then the
false merges. Refuses the corpus's ``locked_*`` files: their errors are never read.

    .venv/bin/python bench/explain_repeats_misses.py [--set dev|real] [--no-jurisdiction]
        [--engine beam|rounds]
"""
from __future__ import annotations

import argparse
import glob
import os
from collections import defaultdict
from typing import Dict, List, Sequence

from envleads.repeats_config import default_config
from envleads.repeats_evaluation import load_gold, run_product, score_matters
from envleads.repeats_features import matter_features

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REAL = os.path.join(ROOT, "..", "shared", "data", "repeats_dev.jsonl")
CONFUSABLE = os.path.join(ROOT, "tests", "data", "confusable")


def dev_files() -> List[str]:
    return sorted(p for p in glob.glob(os.path.join(CONFUSABLE, "dev_*.jsonl")) if not p.endswith(".truth.jsonl"))


def _line(event: dict, row: dict, clusters: Dict[str, str]) -> str:
    """One report: its output matter, types, region and names, and the start of its text."""
    feats = matter_features(event.get("text") or "", event.get("title") or "", (),
                            (row.get("region") or {}).get("adcode"), row.get("pollution_types") or (),
                            default_config())
    region = (row.get("region") or {}).get("adcode") or "-"
    text = ((event.get("title") or "") + "|" + (event.get("text") or "")).replace("\n", " ")
    return (f"  {event['complaint_id']:<10} out={clusters[row['cluster_id']]:<3} env={int(row['environmental'])} "
            f"types={','.join(row.get('pollution_types') or []) or '-':<16} region={region:<6} "
            f"juris={event.get('jurisdiction_adcode') or '-':<6} names={' '.join(feats.entities) or '-'}\n"
            f"             {text[:160]}")


def explain(paths: Sequence[str], with_jurisdiction: bool, engine: str, jurisdiction: str = None) -> None:
    if any(os.path.basename(p).startswith("locked") for p in paths):
        raise SystemExit("locked files are never explained")
    events, truth = load_gold(paths, jurisdiction, with_jurisdiction)
    rows, _ = run_product(events, engine)
    print({k: v for k, v in score_matters(rows, truth).items()})
    by_id = {event["complaint_id"]: event for event in events}
    row_of = {row["complaint_id"]: row for row in rows if row["complaint_id"] in truth}
    gold: Dict[str, List[str]] = defaultdict(list)
    predicted: Dict[str, List[str]] = defaultdict(list)
    for cid, row in sorted(row_of.items()):
        gold[str(truth[cid]["matter_id"])].append(cid)
        predicted[row["cluster_id"]].append(cid)
    missed_total = 0
    for matter, cids in sorted(gold.items()):
        outs = {row_of[c]["cluster_id"] for c in cids}
        if len(outs) < 2:
            continue
        labels = {cluster: f"{i}" for i, cluster in enumerate(sorted(outs, key=lambda o: min(predicted[o])))}
        sizes = [sum(1 for c in cids if row_of[c]["cluster_id"] == o) for o in outs]
        missed = (len(cids) * (len(cids) - 1) - sum(s * (s - 1) for s in sizes)) // 2
        missed_total += missed
        print(f"\n== MISSED {matter} ({len(cids)} reports, {missed} pairs missed) "
              f"{truth[cids[0]].get('source') or truth[cids[0]].get('matter') or ''}")
        for cid in sorted(cids, key=lambda c: by_id[c].get("received_at") or ""):
            print(_line(by_id[cid], row_of[cid], labels))
    print(f"\nmissed pairs: {missed_total}")
    for cluster, cids in sorted(predicted.items()):
        matters = {str(truth[c]["matter_id"]) for c in cids}
        if len(matters) > 1:
            print(f"\n== FALSE MERGE {cluster}: {sorted(matters)}")
            for cid in cids:
                print(_line(by_id[cid], row_of[cid], {cluster: str(truth[cid]['matter_id'])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="dev", choices=["dev", "real"])
    parser.add_argument("--no-jurisdiction", action="store_true")
    parser.add_argument("--engine", default="rounds", choices=["beam", "rounds"])
    parser.add_argument("--jurisdiction", default="430100", help="intake city of the real board")
    args = parser.parse_args()
    paths = dev_files() if args.set == "dev" else [REAL]
    explain(paths, not args.no_jurisdiction, args.engine, args.jurisdiction)


if __name__ == "__main__":
    main()
