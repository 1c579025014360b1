"""Scoring a batch-contract output against ground truth (the generator's, or any labelled set).

    envleads evaluate-batch --output enriched.jsonl --truth complaints.truth.jsonl [--leads leads.jsonl]

Measures every stage on one run: pollution types (micro/macro F1, environmental accuracy),
regions (exact, province, county accuracy and wrong-county rate against the place as far as the
text supports it), repeats (pairwise precision/recall, B-cubed F1 on matter ids) and, with the
leads file, the number of leads against the number of true environmental matters.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence

from envleads.config import OperatorError
from envleads.records import TypePrediction


def read_jsonl(path: str, required: Sequence[str] = ()) -> List[dict]:
    """The rows of a JSON Lines file (blank lines and a byte-order mark skipped); a row without
    one of the ``required`` fields is an :class:`~envleads.config.OperatorError` naming its line."""
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [field for field in required if field not in row]
            if missing:
                raise OperatorError(f"{path}:{number}: a row needs {' and '.join(map(repr, required))}")
            rows.append(row)
    return rows


def _region_scores(pairs) -> Dict[str, float]:
    exact = province = county_total = county_right = wrong_county = 0
    for predicted, gold in pairs:
        exact += (predicted or {}).get("adcode") == (gold or {}).get("adcode")
        province += (predicted or {}).get("province") == (gold or {}).get("province")
        if gold and gold.get("level") == "county":
            county_total += 1
            county_right += (predicted or {}).get("adcode") == gold["adcode"]
        if predicted and predicted.get("county") and predicted.get("adcode") != (gold or {}).get("adcode"):
            wrong_county += 1
    total = max(1, len(pairs))
    return {"exact_accuracy": round(exact / total, 4), "province_accuracy": round(province / total, 4),
            "county_accuracy": round(county_right / max(1, county_total), 4),
            "wrong_county_rate": round(wrong_county / total, 4), "rows": len(pairs), "county_rows": county_total}


def score_batch_output(output_rows: List[dict], truth_rows: List[dict],
                       lead_rows: Optional[List[dict]] = None) -> Dict:
    """Compares the rows of ``envleads batch`` with the truth rows by ``complaint_id``."""
    from envleads.models.pollution import score_predictions
    from envleads.repeats_evaluation import score_leads, score_matters

    truth = {row["complaint_id"]: row for row in truth_rows if not row.get("malformed") and row.get("complaint_id")}
    rows = [row for row in output_rows if row["complaint_id"] in truth]
    gold = [{"labels": truth[row["complaint_id"]]["labels"]} for row in rows]
    predictions = [TypePrediction(row["pollution_types"], row["primary_type"], row["type_confidence"], False, "")
                   for row in rows]
    types = score_predictions(gold, predictions)
    report = {
        "rows_scored": len(rows),
        "rows_missing": len(truth) - len(rows),
        "types": {key: types[key] for key in ("micro_f1", "macro_f1_frequent", "macro_f1_all", "env_accuracy")
                  if key in types},
        "types_per_label": types.get("per_label"),
        "region": _region_scores([(row["region"], truth[row["complaint_id"]]["region"]) for row in rows]),
        "repeats": score_matters(rows, truth),
    }
    if lead_rows is not None:
        true_matters = {t["matter_id"] for t in truth.values() if t.get("environmental")}
        report["leads"] = {"leads": len(lead_rows), "true_environmental_matters": len(true_matters),
                           "relative_error": round((len(lead_rows) - len(true_matters)) / max(1, len(true_matters)), 4),
                           **score_leads(rows, truth, lead_rows)}
    return report


def print_report(report: Dict, json_out: Optional[str] = None) -> int:
    """Prints a scores report as JSON, and writes it to ``json_out`` too when given."""
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if json_out:
        with open(json_out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
    return 0
