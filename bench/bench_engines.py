"""The engines side by side on the same generated complaints, in one run: which to use when.

Each engine runs as its own command in a child process over the same N events (default 20,000,
`envleads generate` with one seed); wall time, events per wall-second and CPU per event (user +
system of the child and everything it started, from ``RUSAGE_CHILDREN``; the embedded broker is a
separate process started before and not counted):

* ``batch-rounds``: ``envleads batch --engine rounds`` (the rounds engine over a file);
* ``batch-beam``: ``envleads batch`` (the Beam pipeline on the in-process FnApiRunner);
* ``stream``: ``envleads stream`` over the embedded broker (Tansu), the events produced first, until idle;
* ``stream-beam-prism``: ``envleads stream --engine beam --until-end --runner PrismRunner`` over the
  same topic (the Beam streaming job on Prism, the binary ``make prism`` built; skipped without it).

    .venv/bin/python bench/bench_engines.py [--events 20000] [--seed 5]

Writes ``bench/results/engines.json``.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

from results_file import write_result

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENVLEADS = [sys.executable, "-m", "envleads.cli"]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(name: str, command, events: int) -> dict:
    """One engine's run; a run that fails is recorded as failed (with its exit status), not dropped."""
    load = round(os.getloadavg()[0], 2)
    cpu_before, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wall_s, cpu_s = time.perf_counter() - started, _children_cpu_s() - cpu_before
    row = {"engine": name, "events": events, "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1),
           "load_1min_at_start": load, "returncode": done.returncode}
    if done.returncode:
        row["error_tail"] = done.stderr.decode("utf-8", "replace")[-1500:]
        print(f"{name:<18} FAILED (exit {done.returncode}) after {row['wall_s']:.1f} s", flush=True)
        return row
    row.update(events_per_wall_s=round(events / wall_s, 1), cpu_ms_per_event=round(1000 * cpu_s / events, 3))
    print(f"{name:<18} {row['wall_s']:>8.1f} s {row['events_per_wall_s']:>9.1f} events/s "
          f"{row['cpu_ms_per_event']:>7.3f} CPU ms/event", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "engines.json"))
    args = parser.parse_args()

    from envleads.ops.broker import EmbeddedBroker, create_topics
    from envleads.pipelines.beam_stream import local_prism_location
    from envleads.pipelines.kafka_edge.write import produce_lines

    os.environ.setdefault("ENVLEADS_PSEUDONYM_KEY", "bench-engines-key")
    rows = []
    with tempfile.TemporaryDirectory(prefix="envleads-engines-") as folder:
        source = os.path.join(folder, "complaints.jsonl")
        subprocess.run(ENVLEADS + ["generate", "--count", str(args.events), "--seed", str(args.seed),
                                   "--output", source], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        for name, extra in (("batch-rounds", ["--engine", "rounds"]), ("batch-beam", [])):
            out = os.path.join(folder, name)
            rows.append(_timed(name, ENVLEADS + ["batch", "--input", source, "--output", out + ".jsonl",
                                                 "--leads", out + ".leads.jsonl"] + extra, args.events))
        with EmbeddedBroker() as broker:
            stem = f"bench.engines.{uuid.uuid4().hex[:8]}"
            topics = {role: f"{stem}.{role}" for role in ("raw", "enriched", "leads", "deadletter")}
            create_topics(broker.bootstrap_servers, list(topics.values())
                          + [f"{stem}.beam.{role}" for role in ("enriched", "leads", "deadletter")])
            with open(source, "rb") as handle:
                produce_lines(broker.bootstrap_servers, topics["raw"], (line.rstrip(b"\n") for line in handle))
            rows.append(_timed("stream", ENVLEADS + [
                "stream", "--bootstrap-servers", broker.bootstrap_servers, "--raw-topic", topics["raw"],
                "--enriched-topic", topics["enriched"], "--leads-topic", topics["leads"],
                "--dead-letter-topic", topics["deadletter"], "--stop-when-idle", "5"], args.events))
            if local_prism_location().is_file():
                rows.append(_timed("stream-beam-prism", ENVLEADS + [
                    "stream", "--engine", "beam", "--until-end", "--runner", "PrismRunner",
                    "--bootstrap-servers", broker.bootstrap_servers, "--raw-topic", topics["raw"],
                    "--enriched-topic", f"{stem}.beam.enriched", "--leads-topic", f"{stem}.beam.leads",
                    "--dead-letter-topic", f"{stem}.beam.deadletter"], args.events))
    write_result(args.out, "engines", {"events": args.events, "seed": args.seed, "engines": rows,
                                       "note": "stream includes its 5 s idle stop and reading state at start"})


if __name__ == "__main__":
    main()
