"""Soak: many generated complaints through the pipeline, with memory sampled and nothing lost.

Batch mode (default): ``--count`` generated complaints (default 1,000,000, malformed ones
included) are written to a JSON Lines file and run through ``envleads batch --engine rounds``
(``--engine beam``: the Beam engine on FnApiRunner, which holds every grouped collection in memory,
~45 KB per complaint: 4.5 GB at 100,000) in a child process; the RSS of its whole process tree is
sampled every ``--sample-s`` seconds.

Stream mode (``--stream``, default 200,000): the same generated events are produced as Avro to an
embedded Tansu broker and ``envleads stream --stop-when-idle`` runs against it in a child process;
then the enriched and dead-letter topics are read back.

Either way it reports peak RSS, events per second (wall), complaints lost (must be 0: every input
event is either an enriched record or a dead letter, by complaint id and by count) and the size
of the repeat stage's state (matters, blocking keys, largest block: in batch mode the
``GroupByBlock`` holds a whole block's reports at once, so the largest block bounds its memory).

    .venv/bin/python bench/soak.py [--count 1000000] [--seed 3] [--keep DIR]
    .venv/bin/python bench/soak.py --stream [--count 200000]

Prints a table and writes bench/results/soak.json (soak_stream.json with --stream; ``--out`` to
choose). Exits 1 if a complaint was lost.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOAK_KEY = "soak-pseudonym-key"


class TreeRssSampler:
    """Samples the summed RSS of a process and its descendants (psutil, or /proc when absent)."""

    def __init__(self, pid: int, every_s: float):
        self.pid, self.every_s = pid, every_s
        self.peak_mb, self.samples = 0.0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_rss_mb(self) -> float:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is installed with the test extra
            with open(f"/proc/{self.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
            return 0.0
        try:
            root = psutil.Process(self.pid)
            processes = [root] + root.children(recursive=True)
        except psutil.Error:
            return 0.0
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total / 1_048_576

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            rss = self._tree_rss_mb()
            self.peak_mb = max(self.peak_mb, rss)
            self.samples.append((round(time.monotonic() - started, 1), round(rss, 1)))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def curve(self, points: int = 20) -> List[List[float]]:
        """A thinned (seconds, MB) curve: enough to see growth without storing every sample."""
        if len(self.samples) <= points:
            return [list(s) for s in self.samples]
        step = len(self.samples) / points
        return [list(self.samples[int(i * step)]) for i in range(points)] + [list(self.samples[-1])]


def _machine() -> Dict:
    import apache_beam

    return {"nproc": os.cpu_count(), "python": platform.python_version(), "beam": apache_beam.__version__,
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "shared": "the machine was shared with other helpers' work (tests, benches) while measured"}


def _generate(count: int, seed: int, path: str) -> Dict:
    from envleads.generate_dataset import write_dataset

    started = time.monotonic()
    summary = write_dataset(count, seed, path)
    return {"events": summary["count"], "malformed": summary["malformed"], "repeats": summary["repeats"],
            "wall_s": round(time.monotonic() - started, 1), "truth": summary["truth"]}


def _truth_ids(truth_path: str) -> Dict[str, Counter]:
    """Valid complaint ids, and per malformed reason how many the generator made."""
    valid, malformed = Counter(), Counter()
    with open(truth_path, encoding="utf-8") as handle:
        for line in handle:
            truth = json.loads(line)
            if truth["malformed"]:
                malformed[truth["malformed_reason"]] += 1
            else:
                valid[truth["complaint_id"]] += 1
    return {"valid": valid, "malformed": malformed}


def _repeat_state(records: List[Dict]) -> Dict:
    """Size of the repeat stage's state, from what it emitted: matters and blocking keys."""
    from envleads.repeats import blocking_key

    blocks = Counter(blocking_key((record.get("region") or {}).get("adcode")) for record in records)
    matters = {record["cluster_id"] for record in records}
    return {"matters": len(matters), "blocking_keys": len(blocks),
            "largest_block_reports": max(blocks.values(), default=0),
            "repeats": sum(1 for record in records if record.get("duplicate_of"))}


def _account(events: int, truth: Dict[str, Counter], enriched_ids: Counter, dead_count: int) -> Dict:
    valid = truth["valid"]
    missing = [cid for cid in valid if cid not in enriched_ids]
    unexpected = [cid for cid in enriched_ids if cid not in valid]
    duplicated = sum(n - 1 for n in enriched_ids.values() if n > 1)
    distinct_out = len(enriched_ids) - len(unexpected)
    return {"events_in": events, "enriched_distinct": len(enriched_ids), "enriched_records": sum(enriched_ids.values()),
            "dead_letters": dead_count, "valid_in": len(valid), "malformed_in": sum(truth["malformed"].values()),
            "valid_missing_from_output": len(missing), "unexpected_ids_in_output": len(unexpected),
            "duplicate_enriched_records": duplicated,
            "complaints_lost": events - distinct_out - dead_count,
            "missing_examples": missing[:5]}


def _run_child(command: List[str], log_path: str, sample_s: float):
    """Runs an ``envleads`` command with the soak's key, output to ``log_path``, RSS of its process
    tree sampled; returns (exit code, wall seconds, sampler)."""
    env = {**os.environ, "ENVLEADS_PSEUDONYM_KEY": SOAK_KEY}
    print("running", " ".join(command[2:]), flush=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        with TreeRssSampler(process.pid, sample_s) as sampler:
            rc = process.wait()
    return rc, time.monotonic() - started, sampler


def run_batch_soak(count: int, seed: int, workdir: str, sample_s: float, beam_args: List[str],
                   engine: str = "rounds") -> Dict:
    source = os.path.join(workdir, "complaints.jsonl")
    output = os.path.join(workdir, "enriched.jsonl")
    dead = os.path.join(workdir, "enriched.deadletter.jsonl")
    leads = os.path.join(workdir, "leads.jsonl")
    print(f"generating {count:,} complaints into {source} ...", flush=True)
    generated = _generate(count, seed, source)
    command = [sys.executable, "-m", "envleads.cli", "batch", "--input", source, "--output", output,
               "--leads", leads, "--dead-letter", dead, "--engine", engine, *beam_args]
    rc, wall, sampler = _run_child(command, os.path.join(workdir, "batch.log"), sample_s)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the waited child and its own children
    result = {"mode": "batch", "command": " ".join(command[2:]), "returncode": rc, "wall_s": round(wall, 1),
              "child_cpu_s": round(cpu.ru_utime + cpu.ru_stime, 1), "generate": generated,
              "peak_rss_mb": round(sampler.peak_mb, 1), "rss_curve_s_mb": sampler.curve()}
    if rc != 0:
        with open(os.path.join(workdir, "batch.log"), "rb") as handle:
            result["log_tail"] = handle.read()[-3000:].decode("utf-8", "replace")
        return result
    truth = _truth_ids(generated["truth"])
    enriched_ids: Counter = Counter()
    records = []
    with open(output, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            enriched_ids[record["complaint_id"]] += 1
            records.append({"complaint_id": record["complaint_id"], "cluster_id": record["cluster_id"],
                            "duplicate_of": record["duplicate_of"], "region": record["region"]})
    reasons: Counter = Counter()
    with open(dead, encoding="utf-8") as handle:
        for line in handle:
            reasons[json.loads(line)["reason"]] += 1
    with open(leads, "rb") as handle:
        lead_count = sum(1 for _ in handle)
    result.update(_account(count, truth, enriched_ids, sum(reasons.values())))
    result.update(dead_letter_reasons=dict(reasons.most_common()), leads=lead_count,
                  repeat_state=_repeat_state(records), events_per_s=round(count / wall, 1))
    return result


def _read_topic(bootstrap: str, topic: str, idle_s: float = 5.0):
    from envleads.pipelines.kafka_edge.read import open_consumer

    consumer = open_consumer(bootstrap, topic, group_id=None)
    deadline = time.monotonic() + idle_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    yield record
                deadline = time.monotonic() + idle_s
    finally:
        consumer.close()


def run_stream_soak(count: int, seed: int, workdir: str, sample_s: float, beam_args: List[str],
                    max_round_events: int, idle_s: float) -> Dict:
    from envleads import schemas
    from envleads.config import DEFAULT_TOPICS
    from envleads.ops.broker import EmbeddedBroker, create_topics
    from envleads.pipelines.kafka_edge.write import produce_lines

    source = os.path.join(workdir, "complaints.jsonl")
    print(f"generating {count:,} complaints into {source} ...", flush=True)
    generated = _generate(count, seed, source)
    result: Dict = {"mode": "stream", "generate": generated}
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, list(DEFAULT_TOPICS.values()))
        started = time.monotonic()
        with open(source, "rb") as handle:
            produced = produce_lines(bootstrap, DEFAULT_TOPICS["raw"], (line.rstrip(b"\n") for line in handle))
        result["produce_wall_s"] = round(time.monotonic() - started, 1)
        print(f"produced {produced:,} events in {result['produce_wall_s']} s", flush=True)
        command = [sys.executable, "-m", "envleads.cli", "stream", "--bootstrap-servers", bootstrap,
                   "--max-round-events", str(max_round_events), "--stop-when-idle", str(idle_s), *beam_args]
        rc, wall, sampler = _run_child(command, os.path.join(workdir, "stream.log"), sample_s)
        result.update(command=" ".join(command[2:]), returncode=rc, wall_s=round(wall, 1),
                      stream_wall_includes_idle_s=idle_s, peak_rss_mb=round(sampler.peak_mb, 1),
                      rss_curve_s_mb=sampler.curve(), events_per_s=round(count / max(wall - idle_s, 1e-9), 1))
        if rc != 0:
            with open(os.path.join(workdir, "stream.log"), "rb") as handle:
                result["log_tail"] = handle.read()[-3000:].decode("utf-8", "replace")
            return result
        truth = _truth_ids(generated["truth"])
        enriched_ids: Counter = Counter()
        records = []
        for record in _read_topic(bootstrap, DEFAULT_TOPICS["enriched"]):
            value = schemas.decode(schemas.ENRICHED, record.value)
            enriched_ids[value["complaint_id"]] += 1
            records.append({"complaint_id": value["complaint_id"], "cluster_id": value["cluster_id"],
                            "duplicate_of": value.get("duplicate_of"), "region": value.get("region")})
        reasons: Counter = Counter(schemas.decode(schemas.DEAD_LETTER, record.value)["reason"]
                                   for record in _read_topic(bootstrap, DEFAULT_TOPICS["dead_letter"]))
        lead_keys = {record.key for record in _read_topic(bootstrap, DEFAULT_TOPICS["leads"])}
    result.update(_account(count, truth, enriched_ids, sum(reasons.values())))
    result.update(dead_letter_reasons=dict(reasons.most_common()), leads=len(lead_keys),
                  repeat_state=_repeat_state(records))
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", action="store_true", help="through envleads stream on the embedded broker")
    parser.add_argument("--count", type=int, default=None, help="events (default 1,000,000; 200,000 with --stream)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling period")
    parser.add_argument("--max-round-events", type=int, default=5000, help="--stream: events per round")
    parser.add_argument("--engine", choices=("rounds", "beam"), default="rounds", help="batch mode: envleads batch --engine")
    parser.add_argument("--idle-s", type=float, default=10.0, help="--stream: stop when idle this long")
    parser.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temp folder)")
    parser.add_argument("--out", default=None, help="results JSON (default bench/results/soak[_stream].json)")
    args, beam_args = parser.parse_known_args(argv)
    beam_args = beam_args or ["--runner=FnApiRunner"]
    count = args.count or (200_000 if args.stream else 1_000_000)
    out = args.out or os.path.join(HERE, "results", "soak_stream.json" if args.stream else "soak.json")
    workdir = args.keep or tempfile.mkdtemp(prefix="envleads-soak-")
    os.makedirs(workdir, exist_ok=True)
    report = {"name": "soak_stream" if args.stream else "soak",
              "command": " ".join([os.path.relpath(sys.executable, ROOT), "bench/soak.py", *(argv or sys.argv[1:])]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": _machine(), "params": {"count": count, "seed": args.seed, "beam_args": beam_args,
                                                         "engine": None if args.stream else args.engine}}
    try:
        if args.stream:
            result = run_stream_soak(count, args.seed, workdir, args.sample_s, beam_args,
                                     args.max_round_events, args.idle_s)
        else:
            result = run_batch_soak(count, args.seed, workdir, args.sample_s, beam_args, args.engine)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["result"] = result
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, ensure_ascii=False, indent=2)
    rows = [("mode", result["mode"]), ("events in", f"{count:,}"), ("return code", result.get("returncode")),
            ("wall s", result.get("wall_s")), ("events/s (wall)", result.get("events_per_s")),
            ("peak RSS MB (process tree)", result.get("peak_rss_mb")),
            ("enriched (distinct ids)", result.get("enriched_distinct")), ("dead letters", result.get("dead_letters")),
            ("complaints lost", result.get("complaints_lost")),
            ("duplicate enriched records", result.get("duplicate_enriched_records")),
            ("leads", result.get("leads")), ("repeat state", json.dumps(result.get("repeat_state")))]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"wrote {out}")
    ok = result.get("returncode") == 0 and result.get("complaints_lost") == 0 \
        and result.get("valid_missing_from_output") == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
