"""Batch throughput of the whole pipeline against a bare loop over the same stages, and 1 vs 2 workers.

On N generated complaints (``envleads generate``'s generator), in fresh processes:
  * ``bare``: one Python loop over the stages, no Beam: decode + validate (``decode_event``),
    segment, classify in batches of 64 with the registered model, resolve region + route, repeat
    features + ``MatterIndex.assign`` (one index per blocking key, in event-time order, as the
    pipeline does), Avro-encode each enriched record. CPU per stage is measured inside the loop.
  * ``pipeline 1 worker``: ``envleads batch --runner=FnApiRunner`` (in-process, one worker).
  * ``pipeline 2 workers``: the same with ``--direct_num_workers=2
    --direct_running_mode=multi_processing`` (two SDK worker processes).
Each pipeline run is also repeated on the first ``--small`` lines to estimate its fixed cost
(imports, DoFn setup, graph construction), so a setup-free "marginal" rate can be compared with
the bare loop's loop-only rate.

Runs are interleaved (bare loop, each pipeline, again ``--repeat`` times): the lowest CPU of each
configuration gives the table's ratio, and each round's bare/pipeline pair gives a paired ratio,
whose median is the figure least moved by the shared host's drifting speed.

Speed is reported as complaints per CPU-second ("per core"), with CPU = user + system of the run's
processes (getrusage of the waited child, which includes its own waited children), next to wall
time: the machine is shared, so wall time is noisy and CPU time is the figure to compare. Peak
RSS is sampled every 20 ms over the run's whole process tree (sum) and per process (largest).

``--profile`` adds a cProfile of the bare loop and of the 1-worker pipeline (in-process), with
CPU attributed to each stage's ``DoFn.process`` and the rest to Beam, plus time by library.
cProfile slows Python-heavy code unevenly: read its shares, not its absolute numbers.

    .venv/bin/python bench/bench_pipeline.py [--count 2000] [--seed 7] [--small 64]
        [--repeat 1] [--modes 1,2mp] [--profile]

Prints a table and writes bench/results/pipeline.json.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import functools
import inspect
import json
import os
import platform
import pstats
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "pipeline.json")
BENCH_KEY = "bench-pipeline-key"  # a fixed pseudonymisation key: every process hashes the same way
CLASSIFY_BATCH = 64
MODES = {
    "1": ("pipeline 1 worker", ["--runner=FnApiRunner"]),
    "2mp": ("pipeline 2 workers (multi_processing)",
            ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]),
    "2mt": ("pipeline 2 workers (multi_threading)",
            ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"]),
}
STAGES = ("decode", "segment", "classify", "region_route", "repeats", "avro_encode")


# ------------------------------------------------------------------------------ measuring helpers
def machine_facts() -> Dict[str, object]:
    import apache_beam

    return {"nproc": os.cpu_count(), "python": platform.python_version(), "beam": apache_beam.__version__,
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


class TreeSampler(threading.Thread):
    """Samples RSS and CPU of a process and its descendants until stopped.

    Keeps the peak of the summed RSS, the largest single-process RSS, and the last CPU time seen
    per process (so a caller can see which processes did the work).
    """

    def __init__(self, pid: int, interval_s: float = 0.02, exclude: Optional[set] = None):
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(pid)
        self._interval_s = interval_s
        self._exclude = exclude or set()
        self._stop_event = threading.Event()
        self.peak_tree_rss = 0
        self.peak_process_rss = 0
        self.cpu_by_process: Dict[int, Dict[str, object]] = {}

    def _sample(self) -> None:
        try:
            processes = [self._root] + self._root.children(recursive=True)
        except self._psutil.Error:
            return
        total = 0
        for process in processes:
            if process.pid in self._exclude:
                continue
            try:
                with process.oneshot():
                    rss = process.memory_info().rss
                    cpu = process.cpu_times()
                    if process.pid not in self.cpu_by_process:
                        self.cpu_by_process[process.pid] = {"name": _short_cmd(process.cmdline())}
                    self.cpu_by_process[process.pid]["cpu_s"] = round(cpu.user + cpu.system, 2)
            except self._psutil.Error:
                continue
            total += rss
            self.peak_process_rss = max(self.peak_process_rss, rss)
        self.peak_tree_rss = max(self.peak_tree_rss, total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self._interval_s)

    def stop(self) -> "TreeSampler":
        self._stop_event.set()
        self.join()
        return self


def _short_cmd(cmdline: List[str]) -> str:
    for marker in ("sdk_worker_main", "envleads.cli", "bench_pipeline.py"):
        if any(marker in part for part in cmdline):
            return marker
    return os.path.basename(cmdline[0]) if cmdline else "?"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: List[str], log_path: str, env: Dict[str, str]) -> Dict[str, object]:
    """Runs ``command`` as a child; wall, CPU (child + its waited children) and sampled peak RSS."""
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(process.pid)
        sampler.start()
        code = process.wait()
    wall = time.perf_counter() - started
    sampler.stop()
    if code != 0:
        with open(log_path, "rb") as log:
            tail = log.read()[-1500:].decode("utf-8", "replace")
        raise RuntimeError(f"{shlex.join(command)} exited with {code}; log {log_path} ends:\n{tail}")
    return {"wall_s": round(wall, 2), "cpu_s": round(_children_cpu_s() - cpu_before, 2),
            "peak_tree_rss_mb": round(sampler.peak_tree_rss / 2**20, 1),
            "peak_process_rss_mb": round(sampler.peak_process_rss / 2**20, 1),
            "cpu_by_process": sorted(sampler.cpu_by_process.values(), key=lambda p: -p.get("cpu_s", 0))}


# ------------------------------------------------------------------------------------ bare loop
def bare_loop(input_path: str, model_version: str, profiler: Optional[cProfile.Profile] = None) -> Dict[str, object]:
    """The stages as one plain loop; returns setup and per-stage CPU seconds and the counts.

    A ``profiler`` given is enabled for the loop only (imports and setup excluded).
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    from envleads import schemas
    from envleads.decode import decode_event
    from envleads.models.registry import load_model
    from envleads.privacy import load_pseudonym_key
    from envleads.records import DeadLetter, EnrichedComplaint, SegmentedComplaint
    from envleads.region import RegionResolver
    from envleads.repeats import blocking_key, load_repeat_config, matter_features, MatterIndex
    from envleads.routing import Router
    from envleads.scoring import complaint_signals, load_scoring_weights
    from envleads.serialize import enriched_to_avro_dict
    from envleads.text import build_tokenizer, segment

    key = load_pseudonym_key(False)
    tokenizer = build_tokenizer()
    model = load_model(model_version)
    model.predict([("预热", "预热")])  # builds the model's per-process tokenizer now, not in the loop
    resolver, router = RegionResolver(), Router()
    repeat_config, weights = load_repeat_config(), load_scoring_weights()
    schemas.schema_for(schemas.ENRICHED)
    with open(input_path, "rb") as handle:
        lines = handle.read().splitlines()
    setup_wall, setup_cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time
    if profiler is not None:
        profiler.enable()
    loop_wall0, loop_cpu0 = time.perf_counter(), clock()
    enriched: List[EnrichedComplaint] = []
    dead = 0
    for start in range(0, len(lines), CLASSIFY_BATCH):
        t0 = clock()
        complaints = []
        for line in lines[start:start + CLASSIFY_BATCH]:
            result = decode_event(line, "json", key)
            if isinstance(result, DeadLetter):
                dead += 1
            else:
                complaints.append(result)
        t1 = clock()
        segmented = [SegmentedComplaint(c, segment(tokenizer, f"{c.title}\n{c.text}")) for c in complaints]
        t2 = clock()
        predictions = model.predict([(c.title, c.text) for c in complaints]) if complaints else []
        t3 = clock()
        for item, types in zip(segmented, predictions):
            c = item.complaint
            region = resolver.resolve(c.text, c.title, jurisdiction_adcode=c.jurisdiction_adcode)
            routing = router.route(types.labels, f"{c.title}\n{c.text}", region)
            enriched.append(EnrichedComplaint(c, item.tokens, types, region, department=routing.department,
                                              routing_rule=routing.rule_id))
        t4 = clock()
        spent["decode"] += t1 - t0
        spent["segment"] += t2 - t1
        spent["classify"] += t3 - t2
        spent["region_route"] += t4 - t3

    t0 = clock()
    blocks: Dict[str, List[EnrichedComplaint]] = defaultdict(list)
    for item in enriched:
        blocks[blocking_key(item.region.adcode)].append(item)
    assigned = []
    for reports in blocks.values():
        index = MatterIndex(repeat_config)
        for item in sorted(reports, key=lambda e: (e.complaint.received_at_ms, e.complaint.complaint_id)):
            c = item.complaint
            features = matter_features(c.text, c.title, item.tokens, item.region.adcode, item.types.labels)
            assignment = index.assign(c.complaint_id, c.received_at_ms, features, c.reporter_key)
            complaint_signals(f"{c.title}\n{c.text}", c.received_at_ms, bool(features.entities), weights)
            assigned.append(item._replace(cluster_id=assignment.cluster_id, duplicate_of=assignment.duplicate_of))
    t1 = clock()
    encoded_bytes = sum(len(schemas.encode(schemas.ENRICHED, enriched_to_avro_dict(item))) for item in assigned)
    t2 = clock()
    if profiler is not None:
        profiler.disable()
    spent["repeats"], spent["avro_encode"] = t1 - t0, t2 - t1
    loop_wall, loop_cpu = time.perf_counter() - loop_wall0, clock() - loop_cpu0
    return {"events": len(lines), "enriched": len(assigned), "dead_letters": dead,
            "matters": len({item.cluster_id for item in assigned}), "avro_bytes": encoded_bytes,
            "setup_wall_s": round(setup_wall, 2), "setup_cpu_s": round(setup_cpu, 2),
            "loop_wall_s": round(loop_wall, 2), "loop_cpu_s": round(loop_cpu, 2),
            "stage_cpu_s": {name: round(value, 3) for name, value in spent.items()},
            "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


# ------------------------------------------------------------------------------------- profiles
def _package_of(filename: str) -> str:
    if filename.startswith("<") or filename == "~":
        return "builtins/C"
    parts = filename.replace("\\", "/").split("/")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    if "/work/main/" in filename or "envleads" in filename:
        return "envleads." + os.path.splitext(parts[-1])[0]
    return "stdlib"


def summarise_profile(profile: cProfile.Profile, stage_codes: Dict[str, tuple], top: int = 15) -> Dict:
    """Total, per-stage cumulative time, time by package (tottime) and the top functions."""
    stats = pstats.Stats(profile)
    total = stats.total_tt
    by_package: Dict[str, float] = defaultdict(float)
    functions = []
    for (filename, line, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        by_package[_package_of(filename)] += tottime
        functions.append((tottime, cumtime, f"{_package_of(filename)}:{name}:{line}"))
    stages = {}
    for stage, code_key in stage_codes.items():
        entry = stats.stats.get(code_key)
        stages[stage] = round(entry[3], 3) if entry else 0.0
    functions.sort(reverse=True)
    return {"total_s": round(total, 3), "stage_cum_s": stages,
            "by_package_s": {k: round(v, 3) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]},
            "top_tottime": [{"function": f, "tottime_s": round(t, 3), "cumtime_s": round(c, 3)}
                            for t, c, f in functions[:top]]}


def _code_key(function) -> tuple:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def _timed(function, spent: Dict[str, float], key: str):
    """Wraps a DoFn method to add its CPU time to ``spent[key]``. A generator (``process``) is
    timed per step, so what downstream stages do while it is suspended is not counted."""
    clock = time.process_time
    if not inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def plain(*args, **kwargs):
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += clock() - started

        return plain

    @functools.wraps(function)  # Beam reads the signature (side inputs) through __wrapped__
    def generator(*args, **kwargs):
        iterator = function(*args, **kwargs)
        while True:
            started = clock()
            try:
                item = next(iterator)
            except StopIteration:
                spent[key] += clock() - started
                return
            spent[key] += clock() - started
            yield item

    return generator


def profile_pipeline(input_path: str, small_path: str, workdir: str) -> Dict:
    """Two in-process runs after a warm-up run (which pays imports and process-wide caches):

    * timed: each stage's ``DoFn.process`` (and ``setup``) wrapped with a CPU clock, no profiler;
      the rest of the run's CPU is Beam's (runner, coders, grouping, file I/O);
    * cProfile (CPU clock), for the functions and libraries. The profiler slows pure-Python code
      (Beam's state-cache size walk, pickle) far more than C code: trust the timed split for shares.
    """
    import logging

    from envleads.pipelines import transforms as T
    from envleads.pipelines.batch import run_batch

    logging.disable(logging.WARNING)
    stages = {"decode": T._DecodeFn, "segment": T._SegmentFn, "classify": T._ClassifyFn,
              "region_route": T._ResolveRegionFn, "repeats": T._AssignMattersFn, "build_leads": T._MergeLeadFn}
    stage_codes = {name: _code_key(cls.process) for name, cls in stages.items()}
    setups = {f"setup.{cls.__name__}": _code_key(cls.setup) for cls in stages.values()}

    def run(tag: str, path: str) -> None:
        run_batch(path, os.path.join(workdir, f"{tag}.jsonl"), os.path.join(workdir, f"{tag}.leads.jsonl"),
                  None, ["--runner=FnApiRunner"])

    run("warm", small_path)
    spent = defaultdict(float)
    originals = {cls: (cls.process, cls.setup) for cls in stages.values()}
    for name, cls in stages.items():
        cls.process = _timed(cls.process, spent, name)
        cls.setup = _timed(cls.setup, spent, f"setup.{cls.__name__}")
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        run("timed", input_path)
        timed_cpu, timed_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        for cls, (process, setup) in originals.items():
            cls.process, cls.setup = process, setup
    timed = {name: round(seconds, 3) for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])}
    timed["beam_runner_io_and_rest"] = round(timed_cpu - sum(spent.values()), 3)

    profile = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    profile.enable()
    run("profiled", input_path)
    profile.disable()
    summary = summarise_profile(profile, {**stage_codes, **setups})
    in_stages = sum(v for k, v in summary["stage_cum_s"].items())
    summary["stage_cum_s"]["beam_runner_io_and_rest"] = round(summary["total_s"] - in_stages, 3)
    summary["timed"] = {"cpu_s": round(timed_cpu, 3), "wall_s": round(timed_wall, 3), "stage_cpu_s": timed}
    return summary


def profile_bare(input_path: str, model_version: str) -> Dict:
    profile = cProfile.Profile(time.process_time)
    result = bare_loop(input_path, model_version, profile)
    summary = summarise_profile(profile, {})
    summary["stage_cpu_s_under_profile"] = result["stage_cpu_s"]
    return summary


# ----------------------------------------------------------------------------------------- main
def _rate(count: float, seconds: float) -> Optional[float]:
    return round(count / seconds, 1) if seconds > 0 else None


def _child(args) -> int:
    """Internal: runs the bare loop or a profile in this (fresh) process and writes JSON."""
    os.environ.setdefault("ENVLEADS_PSEUDONYM_KEY", BENCH_KEY)
    if args.child == "bare":
        result = bare_loop(args.input, args.model_version)
    elif args.child == "profile-bare":
        result = profile_bare(args.input, args.model_version)
    else:
        result = profile_pipeline(args.input, args.small_input, os.path.dirname(args.child_json))
    with open(args.child_json, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="generated complaints (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument("--small", type=int, default=64,
                        help="lines of the small run that estimates each pipeline's fixed cost (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the lowest CPU is kept")
    parser.add_argument("--modes", default="1,2mp", help=f"pipeline configurations, from {','.join(MODES)}")
    parser.add_argument("--profile", action="store_true", help="also profile the bare loop and the pipeline")
    parser.add_argument("--out", default=RESULTS, help="results JSON")
    parser.add_argument("--child", choices=("bare", "profile-bare", "profile-pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--small-input", help=argparse.SUPPRESS)
    parser.add_argument("--model-version", help=argparse.SUPPRESS)
    parser.add_argument("--child-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    from envleads.generate_dataset import write_dataset
    from envleads.models.registry import ensure_default_model

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown --modes {unknown}; choose from {sorted(MODES)}")
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    facts = machine_facts()
    model_version = ensure_default_model()  # trained once here if the registry is empty: never timed
    env = {**os.environ, "ENVLEADS_PSEUDONYM_KEY": os.environ.get("ENVLEADS_PSEUDONYM_KEY", BENCH_KEY)}
    workdir = tempfile.mkdtemp(prefix="envleads-bench-pipeline-")
    log_path = os.path.join(workdir, "runs.log")
    input_path = os.path.join(workdir, "complaints.jsonl")
    summary = write_dataset(args.count, args.seed, input_path)
    small_path = os.path.join(workdir, "small.jsonl")
    with open(input_path, "rb") as src, open(small_path, "wb") as dst:
        dst.writelines(line for _, line in zip(range(args.small), src))
    print(f"input: {args.count} generated complaints (seed {args.seed}; {summary['malformed']} malformed), "
          f"model {model_version}; work dir {workdir}", flush=True)

    def bare_command():
        return [sys.executable, os.path.abspath(__file__), "--child", "bare", "--input", input_path,
                "--model-version", model_version, "--child-json", bare_json]

    def pipeline_command(mode: str, path: str, tag: str):
        out = os.path.join(workdir, f"{tag}-{os.path.basename(path)}")
        return [sys.executable, "-m", "envleads.cli", "--log-level", "WARNING", "batch", "--input", path,
                "--output", out, "--leads", out + ".leads", *MODES[mode][1], f"--model_version={model_version}"]

    # Interleaved (bare, each mode, each mode's small run; again ...), so that every pipeline run
    # has a bare run measured next to it: the host's speed drifts by ±10% within minutes.
    bare_json = os.path.join(workdir, "bare.json")
    bare_runs: List[Dict] = []
    runs: Dict[str, List[Dict]] = defaultdict(list)
    failed: Dict[str, str] = {}
    for attempt in range(args.repeat):
        print(f"  round {attempt + 1}/{args.repeat}: bare loop ...", flush=True)
        bare_runs.append(run_measured(bare_command(), log_path, env))
        for mode in modes:
            if mode in failed:
                continue
            print(f"  round {attempt + 1}/{args.repeat}: {MODES[mode][0]} ...", flush=True)
            try:
                runs[mode].append(run_measured(pipeline_command(mode, input_path, mode), log_path, env))
                if args.small:
                    runs[f"{mode}-small"].append(
                        run_measured(pipeline_command(mode, small_path, f"{mode}-small"), log_path, env))
            except RuntimeError as error:
                print(f"  FAILED: {error}", flush=True)
                failed[mode] = str(error)

    with open(bare_json, encoding="utf-8") as handle:
        bare = json.load(handle)
    bare_run = min(bare_runs, key=lambda r: r["cpu_s"])
    bare_row = {"name": "bare loop (one process, no Beam)", "mode": "bare", **bare_run, "inner": bare,
                "per_cpu_s": _rate(args.count, bare_run["cpu_s"]), "per_wall_s": _rate(args.count, bare_run["wall_s"]),
                "marginal_per_cpu_s": _rate(args.count, bare["loop_cpu_s"]),
                "marginal_per_wall_s": _rate(args.count, bare["loop_wall_s"]), "all_runs": bare_runs}
    rows = [bare_row]
    for mode in modes:
        name, beam_args = MODES[mode]
        if mode in failed:
            rows.append({"name": name, "mode": mode, "error": failed[mode]})
            continue
        run = min(runs[mode], key=lambda r: r["cpu_s"])
        row = {"name": name, "mode": mode, "beam_args": beam_args, **run,
               "per_cpu_s": _rate(args.count, run["cpu_s"]), "per_wall_s": _rate(args.count, run["wall_s"]),
               "all_runs": runs[mode]}
        if args.small:
            small = min(runs[f"{mode}-small"], key=lambda r: r["cpu_s"])
            row["small_run"] = small
            row["marginal_per_cpu_s"] = _rate(args.count - args.small, run["cpu_s"] - small["cpu_s"])
            row["marginal_per_wall_s"] = _rate(args.count - args.small, run["wall_s"] - small["wall_s"])
        # per round: the bare loop's CPU over this run's, both measured minutes apart at most
        row["paired_ratios"] = [round(b["cpu_s"] / r["cpu_s"], 3) for b, r in zip(bare_runs, runs[mode])]
        row["ratio_paired_median"] = round(statistics.median(row["paired_ratios"]), 3)
        row["ratio_to_bare_whole_run"] = round(row["per_cpu_s"] / bare_row["per_cpu_s"], 3)
        if row.get("marginal_per_cpu_s"):
            row["ratio_to_bare_marginal"] = round(row["marginal_per_cpu_s"] / bare_row["marginal_per_cpu_s"], 3)
        rows.append(row)

    profiles = {}
    if args.profile:
        for kind in ("profile-bare", "profile-pipeline"):
            path = os.path.join(workdir, f"{kind}.json")
            print(f"  running {kind} ...", flush=True)
            try:
                run_measured([sys.executable, os.path.abspath(__file__), "--child", kind, "--input", input_path,
                              "--small-input", small_path, "--model-version", model_version,
                              "--child-json", path], log_path, env)
            except RuntimeError as error:
                print(f"  FAILED: {error}", flush=True)
                continue
            with open(path, encoding="utf-8") as handle:
                profiles[kind] = json.load(handle)

    _print_report(args, rows, bare, profiles)
    result = {"name": "pipeline", "command": shlex.join([sys.executable, *sys.argv]), "date": started_at,
              "machine": {**facts, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
              "params": {"count": args.count, "seed": args.seed, "small": args.small, "repeat": args.repeat,
                         "modes": modes, "classify_batch": CLASSIFY_BATCH, "model_version": model_version,
                         "malformed": summary["malformed"]},
              "cpu_note": "cpu_s = user+system of the run's processes (getrusage RUSAGE_CHILDREN delta); "
                          "per_cpu_s = complaints per CPU-second (per core)",
              "runs": rows, "profiles": profiles}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, ensure_ascii=False)
    print(f"\nwrote {args.out}")
    return 0


def _print_report(args, rows, bare, profiles) -> None:
    print(f"\n{args.count} complaints; CPU = user+sys of all the run's processes; wall is noisy (shared machine)")
    header = (f"{'run':<40}{'wall s':>8}{'CPU s':>8}{'/CPU-s':>9}{'/wall-s':>9}{'marg/CPU-s':>11}"
              f"{'marg/wall-s':>12}{'x bare':>8}{'x bare m':>9}{'peak RSS MB':>12}")
    print(header)
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<40}  FAILED (see JSON)")
            continue
        print(f"{row['name']:<40}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['per_cpu_s']:>9.1f}"
              f"{row['per_wall_s']:>9.1f}{_fmt(row.get('marginal_per_cpu_s')):>11}"
              f"{_fmt(row.get('marginal_per_wall_s')):>12}"
              f"{_fmt(row.get('ratio_to_bare_whole_run'), 2):>8}{_fmt(row.get('ratio_to_bare_marginal'), 2):>9}"
              f"{row['peak_tree_rss_mb']:>12.0f}")
    print("marg = after subtracting fixed cost: bare = loop only (setup excluded); pipeline = "
          f"(N - {args.small}) / (CPU(N) - CPU({args.small} lines)). 'x bare' = rate / bare loop's rate.")
    for row in rows:
        if row.get("paired_ratios"):
            print(f"x bare per round (bare CPU / this run's CPU, run side by side), {row['name']}: "
                  f"{row['paired_ratios']}, median {row['ratio_paired_median']:.2f}")
    for row in rows:
        if row.get("mode", "").startswith("2") and "cpu_by_process" in row:
            parts = ", ".join(f"{p['name']} {p['cpu_s']:.1f}s" for p in row["cpu_by_process"]
                              if p.get("cpu_s", 0) >= 0.05)
            print(f"CPU by process, {row['name']}: {parts}")
    print(f"\nbare loop: setup {bare['setup_cpu_s']:.1f} CPU-s, loop {bare['loop_cpu_s']:.1f} CPU-s; by stage:")
    loop = max(bare["loop_cpu_s"], 1e-9)
    for stage, seconds in bare["stage_cpu_s"].items():
        print(f"  {stage:<14}{seconds:>8.2f} s {seconds / loop:>6.1%} {_fmt(_rate(bare['events'], seconds)):>10}/s")
    timed = profiles.get("profile-pipeline", {}).get("timed")
    if timed:
        print(f"\npipeline 1 worker, in-process, stages timed with a CPU clock (no profiler): "
              f"{timed['cpu_s']:.1f} CPU-s, {timed['wall_s']:.1f} s wall")
        for stage, seconds in timed["stage_cpu_s"].items():
            print(f"  {stage:<28}{seconds:>8.2f} s {seconds / max(timed['cpu_s'], 1e-9):>6.1%}")
    for kind, profile in profiles.items():
        print(f"\n{kind} (cProfile, {profile['total_s']:.1f} s under the profiler)")
        if profile["stage_cum_s"]:
            # setup is mostly joblib's pure-Python unpickler, which the profiler slows far more
            # than the rest: the second share leaves setup out
            setup = sum(v for k, v in profile["stage_cum_s"].items() if k.startswith("setup."))
            work = max(profile["total_s"] - setup, 1e-9)
            print("  by stage (DoFn.process cumulative; setup separately)   share   share excl. setup")
            for stage, seconds in sorted(profile["stage_cum_s"].items(), key=lambda kv: -kv[1]):
                excl = "" if stage.startswith("setup.") else f"{seconds / work:>10.1%}"
                print(f"    {stage:<28}{seconds:>8.2f} s {seconds / profile['total_s']:>6.1%}{excl}")
        print("  by library (own time):")
        for package, seconds in list(profile["by_package_s"].items())[:8]:
            print(f"    {package:<28}{seconds:>8.2f} s {seconds / profile['total_s']:>6.1%}")
        print("  top functions (own time):")
        for entry in profile["top_tottime"][:10]:
            print(f"    {entry['function'][:60]:<60}{entry['tottime_s']:>8.2f} s")


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
