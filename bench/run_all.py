"""Runs every benchmark script in this folder with modest sizes and prints a summary.

Each ``bench_*.py`` found here runs in its own process, one after another (never in parallel: the
machine has 2 cores and the figures are CPU-bound). A script listed in ``JOBS`` runs with the
arguments given there (some run twice, e.g. the stream bench live and in backfill mode); any other
``bench_*.py`` runs with its own defaults. Each script prints its table and writes its JSON to
``bench/results/``; this runner then prints, per job, its exit status, wall and CPU time (user +
system of the job's processes) and the headline figures of the JSON it wrote, and writes
``bench/results/run_all.json``.

    .venv/bin/python bench/run_all.py [--quick] [--only pipeline,stream] [--list]

``--quick`` is a smoke run (about 3 minutes): only the jobs of ``JOBS``, at small sizes, each
writing its JSON to a temporary folder, so bench/results/ keeps the figures of real runs.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")

# (job name, script, arguments, arguments with --quick). Sizes are modest: the whole run takes
# about 11 minutes on the 2-core machine.
JOBS: List[Tuple[str, str, List[str], List[str]]] = [
    ("generate", "bench_generate.py", ["--count", "100000"], ["--count", "10000", "--trace-counts", "5000,10000"]),
    ("pipeline", "bench_pipeline.py", ["--count", "2000", "--profile"], ["--count", "300", "--repeat", "1"]),
    ("stream", "bench_stream.py", ["--rate", "200", "--seconds", "60"], ["--rate", "50", "--seconds", "10"]),
    ("stream_backfill", "bench_stream.py", ["--backfill", "20000"], ["--backfill", "2000"]),
    ("repeats_memory", "bench_repeats_memory.py", ["--events", "20000", "--out", "bench/results/repeats_memory_20000.json"],
     ["--events", "2000", "--out", "/tmp/repeats_memory_quick.json"]),
    ("repeats_pipeline", "bench_repeats_pipeline.py", ["--count", "5000"], ["--count", "500", "--seeds", "31"]),
    ("repeats_product", "bench_repeats_product.py", [], ["--out", "/tmp/repeats_product_quick.json"]),
    ("keyed_rounds", "bench_keyed_rounds.py", ["--events", "60000", "--tail", "20000",
                                               "--out", "bench/results/keyed_rounds_60000.json"],
     ["--events", "6000", "--tail", "2000", "--out", "/tmp/keyed_rounds_quick.json"]),
]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def discover() -> List[Tuple[str, str, List[str], List[str]]]:
    """The jobs of ``JOBS`` whose script exists, then every other ``bench_*.py`` with no arguments."""
    present = {os.path.basename(p) for p in glob.glob(os.path.join(HERE, "bench_*.py"))}
    jobs = [job for job in JOBS if job[1] in present]
    known = {job[1] for job in JOBS}
    for script in sorted(present - known):
        name = script[len("bench_"):-len(".py")]
        jobs.append((name, script, [], []))
    return jobs


def _results_snapshot() -> Dict[str, float]:
    return {path: os.path.getmtime(path) for path in glob.glob(os.path.join(RESULTS_DIR, "*.json"))}


def headline(path: str) -> str:
    """A one-line summary of a results file this folder's scripts write; '' when unknown."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return ""
    name = data.get("name") if isinstance(data, dict) else None
    if name == "pipeline":
        parts = []
        for run in data.get("runs", []):
            if "error" in run:
                parts.append(f"{run['mode']}: FAILED")
                continue
            part = f"{run['mode']}: {run['per_cpu_s']:.0f}/CPU-s"
            if run.get("ratio_to_bare_whole_run") is not None:
                part += f" (x{run['ratio_to_bare_whole_run']:.2f} bare"
                if run.get("ratio_to_bare_marginal") is not None:
                    part += f", marginal x{run['ratio_to_bare_marginal']:.2f}"
                part += ")"
            parts.append(part)
        return "; ".join(parts)
    if name == "stream":
        r = data["result"]
        lat = r["latency_to_lead_s"]
        if not lat["n"]:
            return f"no lead seen; {r['sustained_rate']:.0f} events/s"
        return (f"lead latency p50 {lat['p50']:.1f} s, p95 {lat['p95']:.1f} s, p99 {lat['p99']:.1f} s "
                f"(n={lat['n']}); {r['offered_rate']:.0f}/s offered, {r['sustained_rate']:.0f}/s sustained")
    if name == "stream_backfill":
        r = data["result"]
        return (f"{r['events_processed']} events drained in {r['drain_wall_s']:.0f} s = {r['drain_rate']:.0f}/s; "
                f"peak RSS stream {r['peak_rss_mb'].get('stream', 0):.0f} MB")
    if name == "generate":
        g = data["generate_events"]
        return (f"{g['per_cpu_s']:.0f} events/CPU-s; peak RSS growth {g['peak_rss_growth_mb']:.1f} MB "
                f"over {g['events']} events")
    return ""


def _display_path(path: str) -> str:
    root = os.path.dirname(HERE)
    return os.path.relpath(path, root) if os.path.abspath(path).startswith(root + os.sep) else path


def run_job(name: str, script: str, arguments: List[str], log_dir: str,
            out_dir: Optional[str] = None) -> Dict[str, object]:
    command = [sys.executable, os.path.join(HERE, script), *arguments]
    if out_dir:
        command += ["--out", os.path.join(out_dir, f"{name}.json")]
    print(f"\n=== {name}: {shlex.join(command)}", flush=True)
    log_path = os.path.join(log_dir, f"{name}.stderr.log")
    before = _results_snapshot()
    cpu0, wall0 = _children_cpu_s(), time.perf_counter()
    with open(log_path, "wb") as log:
        # stdout (the script's table) is shown as it comes; stderr (Beam, jieba logs) goes to a file
        code = subprocess.call(command, stdout=sys.stdout, stderr=log, cwd=os.path.dirname(HERE))
    wall, cpu = time.perf_counter() - wall0, _children_cpu_s() - cpu0
    after = _results_snapshot()
    written = sorted(path for path, mtime in after.items() if before.get(path) != mtime)
    if out_dir and os.path.exists(os.path.join(out_dir, f"{name}.json")):
        written.append(os.path.join(out_dir, f"{name}.json"))
    if code != 0:
        with open(log_path, "rb") as log:
            tail = log.read()[-3000:].decode("utf-8", "replace")
        print(f"--- {name} exited with {code}; stderr tail ({log_path}):\n{tail}", flush=True)
    return {"job": name, "command": shlex.join(command), "exit_code": code, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "results": [_display_path(p) for p in written],
            "headlines": [h for h in (headline(p) for p in written) if h], "stderr_log": log_path}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run, not figures to quote")
    parser.add_argument("--only", default="", help="comma-separated job names to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the jobs and their commands, run nothing")
    args = parser.parse_args(argv)
    jobs = discover()
    if args.quick:
        # other scripts have no size or output flag in common: a smoke run would overwrite their results
        jobs = [job for job in jobs if job in JOBS]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {job[0] for job in jobs}
        if unknown:
            parser.error(f"unknown jobs {sorted(unknown)}; known: {[job[0] for job in jobs]}")
        jobs = [job for job in jobs if job[0] in wanted]
    if args.list:
        for name, script, full, quick in jobs:
            print(f"{name:<18} {script} {shlex.join(quick if args.quick else full)}")
        return 0

    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    log_dir = tempfile.mkdtemp(prefix="envleads-bench-logs-")  # logs are not results: kept out of the tree
    print(f"stderr of each job goes to {log_dir}", flush=True)
    out_dir = tempfile.mkdtemp(prefix="envleads-bench-quick-") if args.quick else None
    if out_dir:
        print(f"quick run: results go to {out_dir}, not {RESULTS_DIR}", flush=True)
    outcomes = [run_job(name, script, quick if args.quick else full, log_dir, out_dir)
                for name, script, full, quick in jobs]

    print(f"\n=== summary ({'quick' if args.quick else 'default'} sizes; CPU = user+sys of each job's processes; "
          f"load average {loadavg_start} at start, {[round(x, 2) for x in os.getloadavg()]} at end)")
    print(f"{'job':<18}{'status':>8}{'wall s':>9}{'CPU s':>9}  results")
    for outcome in outcomes:
        status = "ok" if outcome["exit_code"] == 0 else f"exit {outcome['exit_code']}"
        files = ", ".join(outcome["results"]) or "-"
        print(f"{outcome['job']:<18}{status:>8}{outcome['wall_s']:>9.1f}{outcome['cpu_s']:>9.1f}  {files}")
        for line in outcome["headlines"]:
            print(f"{'':<18}  {line}")
    summary_path = os.path.join(out_dir or RESULTS_DIR, "run_all.json")
    with open(summary_path, "w", encoding="utf-8") as handle:
        json.dump({"name": "run_all", "command": shlex.join([sys.executable, *sys.argv]), "date": started_at,
                   "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                               "beam": _beam_version(), "platform": platform.platform(),
                               "loadavg_at_start": loadavg_start,
                               "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
                   "quick": args.quick, "jobs": outcomes}, handle, indent=2, ensure_ascii=False)
    print(f"\nwrote {summary_path}")
    return 0 if all(outcome["exit_code"] == 0 for outcome in outcomes) else 1


def _beam_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("apache-beam")
    except Exception:  # noqa: BLE001 - the summary still stands without it
        return None


if __name__ == "__main__":
    sys.exit(main())
