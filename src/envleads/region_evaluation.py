"""Region resolution measured on gold passages (what ``envleads evaluate-regions`` reports).

    envleads evaluate-regions --gold ../shared/data/regions_dev.jsonl

Scores :class:`envleads.region.RegionResolver` directly; the product-path figures (through
``envleads batch``) come from ``bench/bench_regions_libraries.py``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, List, Optional

from envleads.divisions import COUNTY
from envleads.evaluation import read_jsonl
from envleads.region import RegionResolver


def read_gold(path: str) -> List[dict]:
    """Reads a JSON Lines gold file (``id``, ``text``, ``province``, ``city``, ``county``, ``adcode``, ``level``)."""
    return read_jsonl(path)


def evaluate_regions(resolver: RegionResolver, gold_records: Iterable[dict]) -> dict:
    """Scores a resolver against gold places; errors are listed by id and codes only (no text).

    ``county_accuracy``: exact code on rows whose gold level is county. ``province_accuracy``:
    province name on rows with a gold province. ``city_accuracy``: city name on rows with a gold
    city. ``wrong_county_rate``: answers naming a county other than the gold county, over all rows.
    ``null_accuracy``: empty answers on rows whose text names no place. ``exact_accuracy``: same
    code and level (or both empty) over all rows.
    """
    rows = list(gold_records)
    counts = defaultdict(int)
    errors = []
    for row in rows:
        pred = resolver.resolve(row.get("text", ""), title=row.get("title") or "")
        gold_county = row.get("adcode") if row.get("level") == COUNTY else None
        exact = pred.adcode == row.get("adcode")
        counts["exact"] += exact
        if row.get("level") == COUNTY:
            counts["county_total"] += 1
            counts["county_ok"] += pred.adcode == gold_county
        if row.get("province"):
            counts["province_total"] += 1
            counts["province_ok"] += pred.province == row["province"]
        if row.get("city"):
            counts["city_total"] += 1
            counts["city_ok"] += pred.city == row["city"]
        if row.get("level") is None:
            counts["null_total"] += 1
            counts["null_ok"] += pred.adcode is None
        if pred.level == COUNTY and pred.adcode != gold_county:
            counts["wrong_county"] += 1
        if not exact:
            errors.append({"id": row.get("id"), "gold_adcode": row.get("adcode"), "gold_level": row.get("level"),
                           "pred_adcode": pred.adcode, "pred_level": pred.level,
                           "pred_name": pred.county or pred.city or pred.province})

    def ratio(ok: str, total: str) -> Optional[float]:
        return round(counts[ok] / counts[total], 4) if counts[total] else None

    total = len(rows)
    return {
        "rows": total,
        "county_rows": counts["county_total"],
        "county_accuracy": ratio("county_ok", "county_total"),
        "province_rows": counts["province_total"],
        "province_accuracy": ratio("province_ok", "province_total"),
        "city_rows": counts["city_total"],
        "city_accuracy": ratio("city_ok", "city_total"),
        "null_rows": counts["null_total"],
        "null_accuracy": ratio("null_ok", "null_total"),
        "wrong_county_rate": round(counts["wrong_county"] / total, 4) if total else None,
        "exact_accuracy": round(counts["exact"] / total, 4) if total else None,
        "table_version": resolver.version,
        "errors": errors,
    }


def format_region_report(report: dict) -> str:
    """A short plain-text table of :func:`evaluate_regions` results."""
    lines = [f"rows: {report['rows']}  (table {report['table_version']})"]
    for key, rows_key in (("county_accuracy", "county_rows"), ("province_accuracy", "province_rows"),
                          ("city_accuracy", "city_rows"), ("null_accuracy", "null_rows"),
                          ("wrong_county_rate", "rows"), ("exact_accuracy", "rows")):
        value = report[key]
        lines.append(f"{key:<20} {'-' if value is None else f'{value:.3f}':>6}  (n={report[rows_key]})")
    if report["errors"]:
        lines.append("errors (id: gold -> predicted):")
        for error in report["errors"]:
            lines.append(f"  {error['id']}: {error['gold_adcode']}/{error['gold_level']} -> "
                         f"{error['pred_adcode']}/{error['pred_level']} {error['pred_name'] or ''}")
    return "\n".join(lines)
