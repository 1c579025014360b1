"""Times the README's two commands: ``make demo`` in this checkout, and ``make test`` (what
``.ci/run`` calls) on a clean clone of the committed HEAD, as CI runs it (its builds included: the
virtualenv, the Kafka jars, Prism; the Go module and pip caches of this machine are warm).
Writes ``bench/results/commands.json``, keeping the other command's last entry.

    .venv/bin/python bench/time_commands.py demo test     # test takes 15-45 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from results_file import write_result

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "results", "commands.json")


def _timed(command, cwd: str) -> dict:
    """Wall time of ``command``; the load average at its start says how busy the machine was."""
    load = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    failures = [line for line in run.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {"returncode": run.returncode, "wall_s": round(time.perf_counter() - started, 1),
            "load_1min_at_start": load, "failures": failures,
            "tail": (run.stdout[-4000:] + run.stderr[-1000:])}


def time_demo() -> dict:
    result = _timed(["make", "demo"], ROOT)
    result.pop("tail")
    result.pop("failures")
    return result


def pytest_counts(output: str) -> dict:
    """passed / skipped / failed / errors of pytest's last summary line in ``output``."""
    summaries = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    if not summaries:  # pytest never reported (the install or a build failed): no counts
        return {"passed": 0, "skipped": 0, "failed": 0, "errors": 0}
    summary = summaries[-1]
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|skipped|failed|errors?)", summary)}
    return {key: counts.get(key, 0) for key in ("passed", "skipped", "failed")} | {
        "errors": counts.get("errors", counts.get("error", 0))}


def time_clean_clone_test() -> dict:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="envleads-clean-") as folder:
        clone = os.path.join(folder, "envleads")
        subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
        result = _timed(["bash", ".ci/run"], clone)
    tail = result.pop("tail")
    result.update(pytest_counts(tail), commit=head)
    if result["returncode"]:
        result["tail"] = tail[-2000:]  # why it failed (make's message; the tests are in "failures")
    else:
        result.pop("failures")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commands", nargs="+", choices=["demo", "test"])
    args = parser.parse_args()
    results = {}
    if os.path.exists(OUT):
        with open(OUT, encoding="utf-8") as handle:
            results = json.load(handle)["results"]
    if "demo" in args.commands:
        results["demo"] = time_demo()
        print("make demo:", results["demo"], flush=True)
    if "test" in args.commands:
        results["test_clean_clone"] = time_clean_clone_test()
        print("make test, clean clone:", results["test_clean_clone"], flush=True)
    write_result(OUT, "commands", results)
    sys.exit(max(entry["returncode"] for entry in results.values()))


if __name__ == "__main__":
    main()
