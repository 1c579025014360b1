"""Speed and memory of the complaint generator (``envleads generate``).

In one process:
  * setup: loading the phrase banks and the division table (the first event pays it);
  * ``generate_events(N)`` iterated with the lines discarded: events/s and MB/s, CPU and wall;
  * ``write_dataset(N)`` (events + truth files, as ``envleads generate`` writes them): events/s;
  * memory: peak RSS growth over the process's RSS before generating (sampled every 20 ms), and the
    peak of Python allocations (tracemalloc) at two sizes, to show whether memory grows with N
    (the generator keeps a window of the last ``window_matters`` matters, 20,000 in
    ``data/generator/mix.json``, for repeats: memory grows until the window is full, then stays).
CPU is user + system seconds of this process (the machine is shared: wall time is noisy).

    .venv/bin/python bench/bench_generate.py [--count 100000] [--seed 0] [--trace-counts 30000,60000]

Prints a table and writes bench/results/generate.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import threading
import time
import tracemalloc
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "generate.json")


def machine_facts() -> Dict[str, object]:
    from importlib.metadata import PackageNotFoundError, version

    try:  # read from the metadata: importing Beam would add ~150 MB to the RSS measured here
        beam = version("apache-beam")
    except PackageNotFoundError:
        beam = None
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "beam": beam,
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


class RssPeak(threading.Thread):
    """Peak RSS of this process while running, sampled every ``interval_s``."""

    def __init__(self, interval_s: float = 0.02):
        super().__init__(daemon=True)
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop_event = threading.Event()
        self.start_rss = self._process.memory_info().rss
        self.peak_rss = self.start_rss

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            self._stop_event.wait(self._interval_s)

    def stop(self) -> "RssPeak":
        self._stop_event.set()
        self.join()
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
        return self


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_iterate(count: int, seed: int) -> Dict[str, object]:
    from envleads.generator import generate_events

    sampler = RssPeak()
    sampler.start()
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    n = size = malformed = 0
    for event in generate_events(count, seed):
        n += 1
        size += len(event.line)
        malformed += bool(event.truth.get("malformed"))
    cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    sampler.stop()
    return {"events": n, "malformed": malformed, "bytes": size, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "per_cpu_s": round(n / cpu, 1), "per_wall_s": round(n / wall, 1),
            "mb_per_cpu_s": round(size / 2**20 / cpu, 2),
            "rss_before_mb": round(sampler.start_rss / 2**20, 1),
            "peak_rss_growth_mb": round((sampler.peak_rss - sampler.start_rss) / 2**20, 1)}


def measure_write(count: int, seed: int, directory: str) -> Dict[str, object]:
    from envleads.generate_dataset import write_dataset

    path = os.path.join(directory, "complaints.jsonl")
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    summary = write_dataset(count, seed, path)
    cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    return {"events": summary["count"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "per_cpu_s": round(summary["count"] / cpu, 1), "per_wall_s": round(summary["count"] / wall, 1),
            "events_mb": round(os.path.getsize(path) / 2**20, 1),
            "truth_mb": round(os.path.getsize(summary["truth"]) / 2**20, 1)}


def measure_traced_peak(count: int, seed: int) -> Dict[str, object]:
    """Peak Python allocations while generating ``count`` events (tracemalloc; slows the run)."""
    from envleads.generator import generate_events

    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    for _ in generate_events(count, seed):
        pass
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"events": count, "traced_peak_mb": round((peak - base) / 2**20, 2),
            "traced_left_mb": round((current - base) / 2**20, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="events to generate (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--trace-counts", default="30000,60000",
                        help="sizes at which to take tracemalloc's peak (comma-separated; empty: skip)")
    parser.add_argument("--out", default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    facts = machine_facts()

    from envleads.generator import generate_events

    cpu0, wall0 = _cpu_s(), time.perf_counter()
    next(iter(generate_events(1, args.seed)))  # loads banks and the division table once per process
    setup = {"wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(_cpu_s() - cpu0, 2)}
    iterate = measure_iterate(args.count, args.seed)
    with tempfile.TemporaryDirectory(prefix="envleads-bench-generate-") as directory:
        write = measure_write(args.count, args.seed, directory)
    traced = [measure_traced_peak(int(n), args.seed) for n in args.trace_counts.split(",") if n.strip()]

    print(f"generator, {args.count} events (seed {args.seed}), one process; CPU = user+sys of this process")
    print(f"setup (phrase banks + division table): {setup['cpu_s']:.2f} CPU-s, {setup['wall_s']:.2f} s wall")
    print(f"{'what':<34}{'wall s':>8}{'CPU s':>8}{'ev/CPU-s':>10}{'ev/wall-s':>11}")
    print(f"{'generate_events (lines discarded)':<34}{iterate['wall_s']:>8.1f}{iterate['cpu_s']:>8.1f}"
          f"{iterate['per_cpu_s']:>10.0f}{iterate['per_wall_s']:>11.0f}")
    print(f"{'write_dataset (events + truth)':<34}{write['wall_s']:>8.1f}{write['cpu_s']:>8.1f}"
          f"{write['per_cpu_s']:>10.0f}{write['per_wall_s']:>11.0f}")
    print(f"mean line {iterate['bytes'] / max(iterate['events'], 1):.0f} bytes; {iterate['malformed']} malformed; "
          f"files {write['events_mb']} MB events + {write['truth_mb']} MB truth")
    print(f"RSS before generating {iterate['rss_before_mb']:.0f} MB; peak growth while generating "
          f"{args.count} events: {iterate['peak_rss_growth_mb']:.1f} MB")
    for entry in traced:
        print(f"tracemalloc peak over {entry['events']} events: {entry['traced_peak_mb']:.2f} MB")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"name": "generate", "command": shlex.join([sys.executable, *sys.argv]), "date": started_at,
                   "machine": {**facts, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
                   "params": {"count": args.count, "seed": args.seed},
                   "cpu_note": "cpu_s = user+system of this process (getrusage)",
                   "setup": setup, "generate_events": iterate, "write_dataset": write, "tracemalloc": traced},
                  handle, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
