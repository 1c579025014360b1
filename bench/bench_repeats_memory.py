"""Memory held by the repeat stage over a long stream: is it bounded by the repeat window?

Streams ``--events`` complaints from ``envleads.generator`` (decoded as the pipeline decodes them)
through the repeat stage's state as the streaming form keeps it: one ``MatterIndex`` per blocking
key, each complaint assigned in event-time order, matters expired once per simulated day (the
event-time timer) and a key's state dropped when no matter is left. Event time is rescaled to
``--days`` (default 365): the generator spreads large counts over up to two years.

The region a reader can derive from the text (the generator's ``region_text_only`` truth) stands in for the resolver's,
and the truth labels for the classifier's, so the stateless stages do not dominate the run time.

At ``--checkpoints`` evenly spaced points it records: live matters, keys, the deep size of all
indexes in memory (numpy buffers + Python containers, walked without tracemalloc, which would
slow the run several times), the size of their ``to_state()`` JSON (what the streaming stage
keeps in its state backend), and the process RSS. Prints a table and writes
bench/results/repeats_memory.json.

    .venv/bin/python bench/bench_repeats_memory.py --events 1000000
    .venv/bin/python bench/bench_repeats_memory.py --events 200000 --out bench/results/repeats_memory_200000.json
    .venv/bin/python bench/bench_repeats_memory.py --summary   # repeats_memory_*.json -> repeats_memory.json
    .venv/bin/python bench/bench_repeats_memory.py --events 1000000 --stop-after 300000 --checkpoints 1 \
        --profile /tmp/assign.prof --out /tmp/assign.json   # where assignment's time goes at scale

It also reports the assignment CPU per complaint for the city keys and for the ``"unknown"`` key
(complaints of no known city, whose index is the largest).

``--summary`` collects the runs of several sizes (``bench/results/repeats_memory_<events>.json``)
into one table of memory against stream length and against event rate, to show how the state
grows: with the length of the stream it should not (it plateaus once the first window has
passed); with the rate (events per day) it grows linearly, since the live matters are those of
the last ``window_days``.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np

from envleads import repeats as R
from envleads.config import data_path, load_json_config
from envleads.decode import decode_event
from envleads.generator import generate_events
from envleads.records import Complaint

DAY_MS = 86_400_000


def deep_size(obj, seen=None) -> int:
    """Bytes held by ``obj`` and everything it references (each object counted once)."""
    seen = set() if seen is None else seen
    stack, total = [obj], 0
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            total += sys.getsizeof(o) + (o.nbytes if o.base is None else 0)
            if o.base is not None:
                stack.append(o.base)
            continue
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif not isinstance(o, type):
            if hasattr(o, "__dict__"):
                stack.append(o.__dict__)
            for klass in type(o).__mro__:  # objects with __slots__ (the index's matters) have no __dict__
                for name in getattr(klass, "__slots__", ()):
                    if hasattr(o, name):
                        stack.append(getattr(o, name))
    return total


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def generator_span_days(count: int) -> float:
    """The event-time span ``envleads.generator`` gives ``count`` events (see its ``_Generator``)."""
    mix = load_json_config(data_path(os.path.join("generator", "mix.json")))
    lo, hi = mix["span_days"]
    return min(max(count / float(mix["events_per_day"]), lo), hi)


def measure(indexes, config) -> dict:
    gc.collect()
    shared: set = set()
    # the configuration is shared by every index and not state: count it zero times
    shared.add(id(config))
    for value in config.__dict__.values() if hasattr(config, "__dict__") else ():
        shared.add(id(value))
    held = sum(deep_size(index, shared) for index in indexes.values())
    state_bytes = sum(len(json.dumps(index.to_state(), separators=(",", ":"))) for index in indexes.values())
    return {"live_matters": sum(len(i) for i in indexes.values()), "keys": len(indexes),
            "held_bytes": held, "state_json_bytes": state_bytes, "rss_mb": round(rss_mb(), 1)}


def summarise(results_dir: str, out: str) -> dict:
    """One table over the sized runs: memory at the end, at the plateau, per live matter."""
    import glob

    runs = []
    for path in sorted(glob.glob(os.path.join(results_dir, "repeats_memory_*.json"))):
        with open(path, encoding="utf-8") as handle:
            run = json.load(handle)
        points = run["checkpoints"]
        after_window = [p for p in points if p["event_days"] >= run["window_days"]]
        runs.append({
            "file": os.path.basename(path), "events": run["params"]["events"], "days": run["params"]["days"],
            "events_per_day": round(run["params"]["events"] / run["params"]["days"], 1),
            "complaints": run["complaints"], "wall_s": run["wall_s"],
            "live_matters_at_end": points[-1]["live_matters"], "held_mb_at_end": round(points[-1]["held_bytes"] / 1e6, 1),
            "held_mb_peak": round(run["peak_held_bytes"] / 1e6, 1),
            "state_json_mb_at_end": round(points[-1]["state_json_bytes"] / 1e6, 1),
            "held_bytes_per_live_matter": points[-1]["held_bytes_per_live_matter"],
            "growth_after_first_window": (round(points[-1]["held_bytes"] / after_window[0]["held_bytes"], 3)
                                          if after_window else None),
            "checkpoints": [(p["events"], p["event_days"], p["live_matters"], round(p["held_bytes"] / 1e6, 1))
                            for p in points],
            **({"note": run["note"]} if run.get("note") else {}),
        })
    runs.sort(key=lambda r: r["events"])
    summary = {
        "name": "repeats_memory",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine_note": "SHARED machine (2 cores, other helpers' tests and benchmarks running): wall times indicative only",
        "how": "bench/bench_repeats_memory.py --events N --out bench/results/repeats_memory_<N>.json per size, then --summary",
        "runs": runs,
        "checkpoints_columns": ["events", "event_days", "live_matters", "held_mb"],
    }
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        per_event = (large["held_mb_at_end"] - small["held_mb_at_end"]) / (large["events_per_day"] - small["events_per_day"])
        summary["held_mb_per_extra_event_per_day"] = round(per_event, 3)
        summary["extrapolated_held_mb_for_1M_events_per_year"] = round(
            large["held_mb_at_end"] + per_event * (1_000_000 / 365.0 - large["events_per_day"]), 0)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(f"{'events':>9} {'ev/day':>8} {'live':>8} {'held MB':>9} {'peak MB':>9} {'B/matter':>9} {'end/first-window':>17}")
    for r in runs:
        print(f"{r['events']:>9} {r['events_per_day']:>8} {r['live_matters_at_end']:>8} {r['held_mb_at_end']:>9} "
              f"{r['held_mb_peak']:>9} {r['held_bytes_per_live_matter']:>9.0f} {str(r['growth_after_first_window']):>17}")
    if "extrapolated_held_mb_for_1M_events_per_year" in summary:
        print(f"extrapolated to 1,000,000 events/year: {summary['extrapolated_held_mb_for_1M_events_per_year']} MB")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="generated events (malformed included)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--days", type=float, default=365.0, help="event-time span to rescale the stream to")
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "repeats_memory.json"))
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="process only the first N events of the --events stream (its density stays that of --events)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="cProfile (CPU clock) of the assignments only, to FILE (pstats format)")
    parser.add_argument("--summary", action="store_true",
                        help="only collect bench/results/repeats_memory_<events>.json into --out")
    args = parser.parse_args()
    if args.summary:
        summarise(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"), args.out)
        return

    config = R.load_repeat_config()
    key = b"bench-key"
    span_ms = generator_span_days(args.events) * DAY_MS
    scale = args.days * DAY_MS / span_ms
    last = min(args.events, args.stop_after or args.events)
    every = max(1, last // max(1, args.checkpoints))
    indexes = {}
    t0_ms = None
    day = None
    stats = {"complaints": 0, "dead_letters": 0, "new_matters": 0, "repeats": 0, "expired_matters": 0,
             "keys_cleared": 0, "true_repeats": 0}
    gold, predicted = {}, {}
    checkpoints = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    rss_start = rss_mb()
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    # assignment CPU by kind of key: the "unknown" key's index (no known city) is the largest
    assign_cpu = {"city_keys": 0.0, "unknown_key": 0.0}
    assigned = {"city_keys": 0, "unknown_key": 0}
    for n, event in enumerate(itertools.islice(generate_events(args.events, args.seed), last), 1):
        complaint = decode_event(event.line, "json", key)
        if isinstance(complaint, Complaint) and not event.truth.get("malformed"):
            truth = event.truth
            if t0_ms is None:
                t0_ms = complaint.received_at_ms
            ms = t0_ms + int((complaint.received_at_ms - t0_ms) * scale)
            if day != ms // DAY_MS:  # the expiry timer, once per simulated day
                day = ms // DAY_MS
                for block in list(indexes):
                    stats["expired_matters"] += len(indexes[block].expire(ms))
                    if not len(indexes[block]):
                        del indexes[block]
                        stats["keys_cleared"] += 1
            region = (truth.get("region_text_only") or {}).get("adcode")
            block = R.blocking_key(region, complaint.jurisdiction_adcode)
            index = indexes.get(block)
            if index is None:
                index = indexes[block] = R.MatterIndex(config, block)
            features = R.matter_features(complaint.text, complaint.title, [], region, truth.get("labels") or [],
                                         config)
            if profiler is not None:
                profiler.enable()
            cpu_before = time.process_time()
            assignment = index.assign(complaint.complaint_id, ms, features, complaint.reporter_key)
            kind = "unknown_key" if block == R.UNKNOWN_BLOCK else "city_keys"
            assign_cpu[kind] += time.process_time() - cpu_before
            assigned[kind] += 1
            if profiler is not None:
                profiler.disable()
            stats["complaints"] += 1
            stats["new_matters" if assignment.is_new_matter else "repeats"] += 1
            stats["true_repeats"] += truth.get("duplicate_of") is not None
            if args.events <= 200_000:  # pairwise scores need every id in memory: only for small runs
                gold[complaint.complaint_id] = truth["matter_id"]
                predicted[complaint.complaint_id] = assignment.cluster_id
        else:
            stats["dead_letters"] += 1
        if n % every == 0 or n == last:
            point = {"events": n, "event_days": round(((ms if t0_ms is not None else 0) - (t0_ms or 0)) / DAY_MS, 1),
                     "wall_s": round(time.perf_counter() - started, 1), **measure(indexes, config)}
            point["held_bytes_per_live_matter"] = round(point["held_bytes"] / max(1, point["live_matters"]), 1)
            checkpoints.append(point)
            print(json.dumps(point), flush=True)
    wall = time.perf_counter() - started
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"CPU profile of the assignments written to {args.profile}")
    result = {
        "name": "repeats_memory",
        "command": " ".join([os.path.relpath(sys.executable)] + sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "note": "SHARED machine: other helpers ran tests and benchmarks at the same time; "
                            "wall times are indicative only"},
        "config_version": config.version, "window_days": config.window_days, "sketch_size": config.sketch_size,
        "params": {"events": args.events, "stop_after": args.stop_after, "seed": args.seed, "days": args.days,
                   "time_scale": round(scale, 4)},
        "stand_ins": "region = generator truth region (resolver not run); types = truth labels (classifier not run)",
        **stats,
        "wall_s": round(wall, 1), "cpu_s": round(time.process_time() - cpu_started, 1),
        "complaints_per_s": round(stats["complaints"] / wall, 1),
        "assign_cpu_ms_per_complaint": {kind: round(1000 * assign_cpu[kind] / max(1, assigned[kind]), 3)
                                        for kind in assign_cpu},
        "assigned_by_key_kind": assigned,
        "rss_mb_start": round(rss_start, 1),
        "checkpoints": checkpoints,
        "peak_held_bytes": max(c["held_bytes"] for c in checkpoints),
        "held_bytes_at_end": checkpoints[-1]["held_bytes"],
    }
    if gold:
        scores = R.clustering_scores(gold, predicted)
        result.update({k: round(scores[k], 4) for k in ("pairwise_precision", "pairwise_recall", "bcubed_f1")})
    print(f"{'events':>9} {'days':>6} {'live':>8} {'keys':>5} {'held MB':>9} {'state MB':>9} {'B/matter':>9} {'rss MB':>8}")
    for c in checkpoints:
        print(f"{c['events']:>9} {c['event_days']:>6} {c['live_matters']:>8} {c['keys']:>5} "
              f"{c['held_bytes'] / 1e6:>9.1f} {c['state_json_bytes'] / 1e6:>9.1f} "
              f"{c['held_bytes_per_live_matter']:>9.0f} {c['rss_mb']:>8.1f}")
    print("assignment CPU ms per complaint: " + ", ".join(
        f"{kind} {ms} (n={assigned[kind]})" for kind, ms in result["assign_cpu_ms_per_complaint"].items()))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
