"""End-to-end latency and throughput of ``run_stream`` (bounded rounds) over the embedded broker.

Live mode (default): a producer process sends generated complaints (Avro, as an intake system
would) to the raw topic at ``--rate`` events/s for ``--seconds``; the same process watches the
lead and enriched topics. The stream (:func:`envleads.pipelines.rounds.loop.run_stream`) runs in this main process
until the backlog is drained; production starts when the stream reports it is ready (its
``on_ready``), unless ``--include-startup``. Reported:
  * latency produce -> lead: time the first lead record listing the complaint is readable on the
    lead topic minus the time the complaint was handed to the producer; p50/p95/p99 over the
    complaints that reach a lead (non-environmental and malformed ones never do);
  * the same to the enriched topic (every valid complaint), as a second view;
  * events/s offered and processed, per round (events, seconds) and the per-round fixed cost.
Backfill mode (``--backfill N``): N complaints are produced first, then ``run_stream`` drains them;
reported: wall time to drain, events/s, CPU, peak RSS.

CPU is user + system seconds, of the stream process (this one; getrusage), of the producer/watcher
process and of the broker (psutil), next to wall time: the machine is shared, so wall time and
latency are noisy. Nothing is extrapolated: a run shorter than asked prints what it measured.

    .venv/bin/python bench/bench_stream.py [--rate 200] [--seconds 120]
    .venv/bin/python bench/bench_stream.py --backfill 1000000
        [--kafka-client native|python|auto] [--max-round-events 2000] [--round-wait 0.25]
        [--partitions 1] [--seed 11]

The backfill's events are generated and produced by a child process (streamed, never held in
the stream's process), so the stream's peak RSS is its own.

Prints a table and writes bench/results/stream.json (live) or bench/results/stream_backfill.json.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import logging
import multiprocessing
import os
import platform
import resource
import shlex
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
BENCH_KEY = "bench-stream-key"
BEAM_ARGS = ["--runner=FnApiRunner"]


# ------------------------------------------------------------------------------ measuring helpers
def machine_facts() -> Dict[str, object]:
    import apache_beam

    return {"nproc": os.cpu_count(), "python": platform.python_version(), "beam": apache_beam.__version__,
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


class PeakSampler(threading.Thread):
    """Peak RSS of each watched process (sampled every ``interval_s``) and its last CPU time.

    It runs in the stream's process and on the same two cores, so it is kept cheap: listing the
    stream's children walks all of /proc, so the list is refreshed every ``children_every_s`` only
    (at a 50 ms interval with a walk per sample it was 7% of the stream process's CPU).
    """

    def __init__(self, pids: Dict[str, int], interval_s: float = 0.25, children_every_s: float = 2.0):
        super().__init__(daemon=True)
        import psutil

        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._psutil = psutil
        self._interval_s = interval_s
        self._children_every_s = children_every_s
        self._stop_event = threading.Event()
        self.peak_rss = dict.fromkeys(pids, 0)
        self.cpu_s = dict.fromkeys(pids, 0.0)
        self._child_cpu: Dict[int, float] = {}
        self._children: list = []
        self._children_listed = float("-inf")

    def _stream_children(self, process) -> list:
        """The stream's worker processes (not the other watched ones, such as the producer)."""
        if time.monotonic() - self._children_listed >= self._children_every_s:
            others = {p.pid for n, p in self._processes.items() if n != "stream"}
            self._children = [child for child in process.children(recursive=True) if child.pid not in others]
            self._children_listed = time.monotonic()
        return self._children

    def run(self) -> None:
        while not self._stop_event.is_set():
            for name, process in self._processes.items():
                try:
                    with process.oneshot():
                        rss = process.memory_info().rss
                        self.peak_rss[name] = max(self.peak_rss[name], rss)
                        times = process.cpu_times()
                        self.cpu_s[name] = times.user + times.system
                    if name == "stream":
                        # the workers' RSS adds to the stream's (the sum of the family)
                        workers_rss = 0
                        for child in self._stream_children(process):
                            try:
                                with child.oneshot():
                                    workers_rss += child.memory_info().rss
                                    times = child.cpu_times()
                                self._child_cpu[child.pid] = times.user + times.system
                            except self._psutil.Error:
                                continue
                        self.peak_rss["stream_workers"] = max(self.peak_rss.get("stream_workers", 0), workers_rss)
                        self.peak_rss["stream_total"] = max(self.peak_rss.get("stream_total", 0), workers_rss + rss)
                        self.cpu_s["stream_workers"] = sum(self._child_cpu.values())
                except self._psutil.Error:
                    continue
            self._stop_event.wait(self._interval_s)

    def stop(self) -> "PeakSampler":
        self._stop_event.set()
        self.join()
        return self


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: List[float]) -> Dict[str, Optional[float]]:
    import numpy as np

    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    array = np.asarray(values)
    return {"n": len(values), "p50": round(float(np.percentile(array, 50)), 3),
            "p95": round(float(np.percentile(array, 95)), 3), "p99": round(float(np.percentile(array, 99)), 3),
            "max": round(float(array.max()), 3), "mean": round(float(array.mean()), 3)}


class RoundLog(logging.Handler):
    """Collects run_stream's per-round status lines (it logs every round with ``status_every_s=0``)."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.rounds: List[Dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("round ") and isinstance(record.args, tuple) and len(record.args) >= 3:
            leads_after = record.args[5] if len(record.args) >= 6 else None
            leads_before = self.rounds[-1]["leads_in_view_after"] if self.rounds else 0
            self.rounds.append({"round": record.args[0], "events": record.args[1],
                                "seconds": round(float(record.args[2]), 3), "ended_at": record.created,
                                "leads_in_view_before": leads_before, "leads_in_view_after": leads_after})


def round_cost_fit(rounds: List[Dict[str, float]]) -> Dict[str, Optional[float]]:
    """Least squares ``seconds = fixed + a * events + b * leads in view before the round``.

    The prior leads (the compacted lead view) are an input of every round, so a round's cost can
    grow with them even at a constant size; a column that does not vary is left out.
    """
    import numpy as np

    fit = {"fixed_s": None, "per_event_ms": None, "per_prior_lead_ms": None, "rounds": len(rounds)}
    usable = [r for r in rounds if r.get("leads_in_view_before") is not None]
    columns = {name: [float(r[key]) for r in usable] for name, key in
               (("per_event_ms", "events"), ("per_prior_lead_ms", "leads_in_view_before"))}
    columns = {name: values for name, values in columns.items() if len(set(values)) > 1}
    if len(usable) < len(columns) + 2:
        return fit
    matrix = np.column_stack([np.ones(len(usable))] + list(columns.values()))
    coefficients, *_ = np.linalg.lstsq(matrix, np.array([r["seconds"] for r in usable]), rcond=None)
    fit["fixed_s"] = round(float(coefficients[0]), 3)
    for name, value in zip(columns, coefficients[1:]):
        fit[name] = round(float(value) * 1000, 4)
    return fit


# ---------------------------------------------------------------------------- producer/watcher
def _watch(bootstrap: str, topics: Dict[str, str], seen: Dict[str, Dict[str, float]], stop: threading.Event,
           idle_s: float) -> None:
    """Records, per complaint id, the first time it is readable on the lead and the enriched topic."""
    from kafka import KafkaConsumer, TopicPartition

    from envleads import schemas
    from envleads.ops.kafka_config import client_kwargs

    consumer = KafkaConsumer(**{**client_kwargs(bootstrap, None, role="consumer"), "group_id": None,
                                "enable_auto_commit": False})
    assignment = []
    for role in ("leads", "enriched"):
        deadline = time.monotonic() + 10
        while not consumer.partitions_for_topic(topics[role]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assignment += [TopicPartition(topics[role], p) for p in consumer.partitions_for_topic(topics[role]) or ()]
    consumer.assign(assignment)
    consumer.seek_to_beginning(*assignment)
    last_record = time.monotonic()
    while not (stop.is_set() and time.monotonic() - last_record > idle_s):
        batch = consumer.poll(timeout_ms=50, max_records=5000)
        now = time.time()
        for partition, records in batch.items():
            last_record = time.monotonic()
            if partition.topic == topics["enriched"]:
                for record in records:
                    seen["enriched"].setdefault(record.key.decode("utf-8"), now)
            else:
                for record in records:
                    if record.value is None:
                        continue
                    for cid in schemas.decode(schemas.LEADS, record.value)["complaint_ids"]:
                        seen["leads"].setdefault(cid, now)
    consumer.close()


def producer_process(bootstrap: str, topics: Dict[str, str], payload_path: str, rate: float, result_path: str,
                     ready, go, done) -> None:
    """Child process: watches the output topics; after ``go``, produces at ``rate`` until done."""
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    with open(payload_path, encoding="utf-8") as handle:
        payload = json.load(handle)
    events = [(cid, bytes.fromhex(value)) for cid, value in payload]
    seen: Dict[str, Dict[str, float]] = {"leads": {}, "enriched": {}}
    stop_watching = threading.Event()
    watcher = threading.Thread(target=_watch, args=(bootstrap, topics, seen, stop_watching, 3.0), daemon=True)
    watcher.start()
    producer = KafkaProducer(**client_kwargs(bootstrap, None, role="producer"))
    producer.partitions_for(topics["raw"])  # metadata fetched before the clock starts
    ready.set()
    go.wait()
    produced: Dict[str, float] = {}
    late_sends = 0
    started = time.monotonic()
    futures = []
    for i, (cid, value) in enumerate(events):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.1:
            late_sends += 1  # the producer itself fell behind the target rate
        produced[cid] = time.time()
        futures.append(producer.send(topics["raw"], value=value))
    producer.flush()
    production_s = time.monotonic() - started
    failed = 0
    for future in futures:
        try:
            future.get(timeout=30)
        except Exception:  # noqa: BLE001 - counted and reported
            failed += 1
    producer.close()
    done.wait()
    stop_watching.set()
    watcher.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump({"produced": produced, "seen": seen, "production_s": production_s, "late_sends": late_sends,
                   "failed_sends": failed, "cpu_s": usage.ru_utime + usage.ru_stime,
                   "maxrss_mb": usage.ru_maxrss / 1024}, handle)


# -------------------------------------------------------------------------------------- helpers
def generated_payload(count: int, seed: int):
    """``[(complaint id or placeholder, JSON line)]`` for ``count`` generated events, and the malformed count."""
    from envleads.generator import generate_events

    payload, malformed = [], 0
    for i, event in enumerate(generate_events(count, seed)):
        malformed += bool(event.truth.get("malformed"))
        cid = event.truth.get("complaint_id") if not event.truth.get("malformed") else None
        payload.append((cid or f"malformed-{i}", event.line))
    return payload, malformed


def make_topics(bootstrap: str, partitions: int) -> Dict[str, str]:
    from envleads.ops.broker import create_topics

    suffix = uuid.uuid4().hex[:8]
    topics = {role: f"bench.{role}.{suffix}" for role in ("raw", "enriched", "leads", "dead_letter")}
    create_topics(bootstrap, topics.values(), partitions=partitions)
    return topics


def _stream_topics(topics: Dict[str, str]):
    from envleads.pipelines.rounds.outputs import Topics

    return Topics(topics["raw"], topics["enriched"], topics["leads"], topics["dead_letter"])


def _quiet_logging() -> RoundLog:
    logging.basicConfig(level=logging.WARNING, force=True)
    # kafka-python warns whenever a client task ran over 0.1 s: on a busy 2-core machine that is
    # most of them, and the lines would drown the table
    logging.getLogger("kafka").setLevel(logging.ERROR)
    handler = RoundLog()
    stream_logger = logging.getLogger("envleads.pipelines.rounds.loop")
    stream_logger.setLevel(logging.INFO)
    stream_logger.addHandler(handler)
    stream_logger.propagate = False
    return handler


# ------------------------------------------------------------------------------------------ live
def run_live(args, broker, workdir: str) -> Dict[str, object]:
    from envleads.pipelines.rounds.loop import run_stream
    from envleads.pipelines.kafka_edge.write import raw_event_bytes

    count = int(round(args.rate * args.seconds))
    payload, malformed = generated_payload(count, args.seed)
    payload_path = os.path.join(workdir, "payload.json")
    with open(payload_path, "w", encoding="utf-8") as handle:
        # Avro-encoded here, as an intake system would send them, so the producer only sends
        json.dump([(cid, raw_event_bytes(line).hex()) for cid, line in payload], handle)
    topics = make_topics(broker.bootstrap_servers, args.partitions)
    rounds = _quiet_logging()

    context = multiprocessing.get_context("spawn")  # no fork of a process holding Beam's threads
    ready, go, done = context.Event(), context.Event(), context.Event()
    result_path = os.path.join(workdir, "producer.json")
    child = context.Process(target=producer_process, args=(broker.bootstrap_servers, topics, payload_path,
                                                           args.rate, result_path, ready, go, done))
    child.start()
    if not ready.wait(60):
        child.terminate()
        raise RuntimeError("the producer process did not get ready within 60 s")
    sampler = PeakSampler({"stream": os.getpid(), "broker": broker.pid, "producer_watcher": child.pid})
    sampler.start()
    time.sleep(0.2)  # a first sample, so the broker's CPU before the run is known
    broker_cpu0 = sampler.cpu_s["broker"]
    print(f"producing {count} events at {args.rate:g}/s for {args.seconds:g} s; stream running ...", flush=True)
    cpu0, wall0, started_at = _self_cpu_s(), time.perf_counter(), time.time()
    clock = {"started_at": started_at}

    def start_production() -> None:
        clock["started_at"] = time.time()
        go.set()

    if args.include_startup:
        go.set()  # the stream's set-up time counts in the first events' latency
    totals = run_stream(broker.bootstrap_servers, _stream_topics(topics), BEAM_ARGS, group_id="bench-stream",
                        max_round_events=args.max_round_events, poll_wait_s=args.poll_wait,
                        stop_when_idle_s=args.idle_stop, status_every_s=0,
                        round_wait_s=args.round_wait, enrich_workers=args.enrich_workers,
                        on_ready=None if args.include_startup else start_production, kafka_client=args.kafka_client,
                        unplaced_worker=args.unplaced_worker)
    started_at = clock["started_at"]
    stream_wall, stream_cpu = time.perf_counter() - wall0, _self_cpu_s() - cpu0
    done.set()
    child.join(120)
    sampler.stop()
    with open(result_path, encoding="utf-8") as handle:
        observed = json.load(handle)

    produced = observed["produced"]
    valid = {cid for cid in produced if not cid.startswith("malformed-")}
    lead_latency = [observed["seen"]["leads"][cid] - produced[cid] for cid in valid if cid in observed["seen"]["leads"]]
    enriched_latency = [observed["seen"]["enriched"][cid] - produced[cid]
                        for cid in valid if cid in observed["seen"]["enriched"]]
    last_visible = max(observed["seen"]["leads"].values(), default=started_at)
    production_end = started_at + observed["production_s"]
    processed_by_end = sum(r["events"] for r in rounds.rounds if r["ended_at"] <= production_end)
    buckets = {}
    for cid in valid:
        if cid in observed["seen"]["leads"]:
            bucket = int((produced[cid] - started_at) // 10) * 10
            buckets.setdefault(bucket, []).append(observed["seen"]["leads"][cid] - produced[cid])
    in_rounds_s = sum(r["seconds"] for r in rounds.rounds)
    return {
        "mode": "live", "topics": topics, "target_rate": args.rate, "target_seconds": args.seconds,
        "events_produced": len(produced), "malformed": malformed, "failed_sends": observed["failed_sends"],
        "producer_late_sends": observed["late_sends"],
        "production_s": round(observed["production_s"], 2),
        "offered_rate": round(len(produced) / max(observed["production_s"], 1e-9), 1),
        "events_processed": totals["events"], "rounds": totals["rounds"], "leads_in_view": totals["leads"],
        "processed_when_production_ended": processed_by_end,
        "backlog_when_production_ended": len(produced) - processed_by_end,
        "first_produce_to_last_lead_s": round(last_visible - started_at, 2),
        "sustained_rate": round(totals["events"] / max(last_visible - started_at, 1e-9), 1),
        "rate_inside_rounds": round(totals["events"] / max(in_rounds_s, 1e-9), 1),
        "stream_wall_s": round(stream_wall, 2), "idle_stop_s": args.idle_stop,
        "stream_cpu_s": round(stream_cpu, 2),
        "stream_workers_cpu_s": round(sampler.cpu_s.get("stream_workers", 0.0), 2),
        "broker_cpu_s": round(sampler.cpu_s["broker"] - broker_cpu0, 2),
        "producer_watcher_cpu_s": round(observed["cpu_s"], 2),
        "peak_rss_mb": {name: round(v / 2**20, 1) for name, v in sampler.peak_rss.items()},
        "latency_to_lead_s": percentiles(lead_latency),
        "latency_to_enriched_s": percentiles(enriched_latency),
        "valid_without_lead": len(valid) - len(lead_latency),
        "lead_latency_p50_by_10s_of_production": {str(k): percentiles(v)["p50"] for k, v in sorted(buckets.items())},
        "round_fit": round_cost_fit(rounds.rounds), "round_log": rounds.rounds,
    }


# -------------------------------------------------------------------------------------- backfill
def backfill_producer(bootstrap: str, topic: str, count: int, seed: int, result_path: str) -> None:
    """Child process: generates ``count`` complaints and produces them as Avro, streaming."""
    from kafka import KafkaProducer

    from envleads.generator import generate_events
    from envleads.ops.kafka_config import client_kwargs
    from envleads.pipelines.kafka_edge.write import raw_event_bytes

    producer = KafkaProducer(**client_kwargs(bootstrap, None, role="producer", linger_ms=20,
                                             batch_size=256 * 1024))
    started, produced, malformed, pending = time.perf_counter(), 0, 0, []
    for event in generate_events(count, seed):
        malformed += bool(event.truth.get("malformed"))
        pending.append(producer.send(topic, value=raw_event_bytes(event.line)))
        produced += 1
        if len(pending) >= 20000:
            producer.flush()
            for future in pending:
                future.get(timeout=60)
            pending = []
    producer.flush()
    for future in pending:
        future.get(timeout=60)
    producer.close()
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump({"produced": produced, "malformed": malformed, "produce_s": time.perf_counter() - started}, handle)


def run_backfill(args, broker) -> Dict[str, object]:
    from envleads.pipelines.rounds.loop import run_stream

    topics = make_topics(broker.bootstrap_servers, args.partitions)
    rounds = _quiet_logging()
    print(f"generating and producing {args.backfill} events (child process) ...", flush=True)
    result_path = os.path.join(tempfile.mkdtemp(prefix="envleads-bench-backfill-"), "producer.json")
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=backfill_producer,
                            args=(broker.bootstrap_servers, topics["raw"], args.backfill, args.seed, result_path))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the producer process failed with exit code {child.exitcode}")
    with open(result_path, encoding="utf-8") as handle:
        production = json.load(handle)
    produced, malformed, produce_s = production["produced"], production["malformed"], production["produce_s"]
    sampler = PeakSampler({"stream": os.getpid(), "broker": broker.pid})
    sampler.start()
    time.sleep(0.2)
    broker_cpu0 = sampler.cpu_s["broker"]
    print(f"draining {produced} events with run_stream ...", flush=True)
    cpu0, wall0, started_at = _self_cpu_s(), time.perf_counter(), time.time()
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler:
        profiler.enable()
    totals = run_stream(broker.bootstrap_servers, _stream_topics(topics), BEAM_ARGS, group_id="bench-backfill",
                        max_round_events=args.max_round_events, poll_wait_s=args.poll_wait,
                        stop_when_idle_s=args.idle_stop, status_every_s=0,
                        round_wait_s=args.round_wait, enrich_workers=args.enrich_workers,
                        kafka_client=args.kafka_client, unplaced_worker=args.unplaced_worker)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"CPU profile of the stream process written to {args.profile}", flush=True)
    wall, cpu = time.perf_counter() - wall0, _self_cpu_s() - cpu0
    sampler.stop()
    drained_s = (max(r["ended_at"] for r in rounds.rounds) - started_at) if rounds.rounds else wall
    return {
        "mode": "backfill", "topics": topics, "events_produced": produced, "malformed": malformed,
        "produce_s": round(produce_s, 2), "produce_rate": round(produced / max(produce_s, 1e-9), 1),
        "events_processed": totals["events"], "rounds": totals["rounds"], "leads_in_view": totals["leads"],
        "drain_wall_s": round(drained_s, 2), "drain_rate": round(totals["events"] / max(drained_s, 1e-9), 1),
        "stream_wall_s_incl_idle_stop": round(wall, 2), "idle_stop_s": args.idle_stop,
        "stream_cpu_s": round(cpu, 2),
        "stream_workers_cpu_s": round(sampler.cpu_s.get("stream_workers", 0.0), 2),
        "per_cpu_s": round(totals["events"] / max(cpu + sampler.cpu_s.get("stream_workers", 0.0), 1e-9), 1),
        "broker_cpu_s": round(sampler.cpu_s["broker"] - broker_cpu0, 2),
        "peak_rss_mb": {name: round(v / 2**20, 1) for name, v in sampler.peak_rss.items()},
        "round_fit": round_cost_fit(rounds.rounds), "round_log": rounds.rounds,
    }


# ------------------------------------------------------------------------------------------ main
def _print_live(r: Dict[str, object]) -> None:
    print(f"\nlive: target {r['target_rate']:g}/s for {r['target_seconds']:g} s; "
          f"produced {r['events_produced']} ({r['malformed']} malformed) in {r['production_s']:.1f} s "
          f"= {r['offered_rate']:.1f}/s offered; {r['failed_sends']} failed sends")
    print(f"processed {r['events_processed']} in {r['rounds']} rounds; first produce -> last lead "
          f"{r['first_produce_to_last_lead_s']:.1f} s = {r['sustained_rate']:.1f} events/s sustained; "
          f"{r['rate_inside_rounds']:.1f}/s inside rounds")
    print(f"backlog when production ended: {r['backlog_when_production_ended']} events "
          f"({r['processed_when_production_ended']} processed by then)")
    print(f"{'latency (s)':<28}{'n':>7}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for label, key in (("produce -> lead topic", "latency_to_lead_s"),
                       ("produce -> enriched topic", "latency_to_enriched_s")):
        s = r[key]
        if s["n"]:
            print(f"{label:<28}{s['n']:>7}{s['p50']:>8.2f}{s['p95']:>8.2f}{s['p99']:>8.2f}{s['max']:>8.2f}")
        else:
            print(f"{label:<28}{0:>7}  (none seen)")
    print(f"valid complaints that reached no lead (non-environmental): {r['valid_without_lead']}")
    print("lead latency p50 by 10 s of production: " + ", ".join(
        f"{k}s {v:.1f}" for k, v in r["lead_latency_p50_by_10s_of_production"].items() if v is not None))
    _print_common(r)


def _print_backfill(r: Dict[str, object]) -> None:
    print(f"\nbackfill: {r['events_produced']} events ({r['malformed']} malformed) produced in {r['produce_s']:.1f} s "
          f"({r['produce_rate']:.0f}/s)")
    print(f"drained {r['events_processed']} events in {r['rounds']} rounds: {r['drain_wall_s']:.1f} s wall "
          f"= {r['drain_rate']:.1f} events/s; stream CPU {r['stream_cpu_s']:.1f} s = {r['per_cpu_s']:.1f} events/CPU-s")
    _print_common(r)


def _print_common(r: Dict[str, object]) -> None:
    cpu = (f"CPU s: stream {r['stream_cpu_s']:.1f} + its worker processes {r.get('stream_workers_cpu_s', 0):.1f}, "
           f"broker {r['broker_cpu_s']:.1f}")
    if "producer_watcher_cpu_s" in r:
        cpu += f", producer+watcher {r['producer_watcher_cpu_s']:.1f}"
    print(cpu)
    print("peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_mb"].items()))
    fit = r["round_fit"]
    if fit["fixed_s"] is not None:
        terms = [f"{fit['fixed_s']:.2f} s"]
        if fit["per_event_ms"] is not None:
            terms.append(f"{fit['per_event_ms']:.2f} ms x events")
        if fit["per_prior_lead_ms"] is not None:
            terms.append(f"{fit['per_prior_lead_ms']:.2f} ms x leads in view before the round")
        print(f"round wall seconds ~ {' + '.join(terms)} (least squares over {fit['rounds']} rounds)")
    sizes = [f"{x['events']}/{x['leads_in_view_before']}/{x['seconds']:.1f}s" for x in r["round_log"]]
    print(f"rounds (events/prior leads/seconds): {' '.join(sizes[:30])}{' ...' if len(sizes) > 30 else ''}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="target events/s in live mode (default 200)")
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of production in live mode (default 120)")
    parser.add_argument("--include-startup", action="store_true",
                        help="live mode: start producing before the stream is set up (as before 2026-11-29), so "
                             "its start-up time is in the latencies; default: production starts when it is ready")
    parser.add_argument("--enrich-workers", type=int, default=1,
                        help="run_stream's enrich_workers (processes for the stateless stages; 0: none)")
    parser.add_argument("--round-wait", type=float, default=0.25,
                        help="run_stream's round_wait_s: a round closes this long after its first event")
    parser.add_argument("--kafka-client", choices=("auto", "native", "python"), default="native",
                        help="run_stream's Kafka client (default native: confluent-kafka, the fast path)")
    parser.add_argument("--unplaced-worker", action=argparse.BooleanOptionalAction, default=True,
                        help="run_stream's unplaced_worker: the unknown key's assignment in its own process "
                             "(default on, as in envleads stream)")
    parser.add_argument("--backfill", type=int, default=0, help="backfill mode: produce N events first, then drain")
    parser.add_argument("--max-round-events", type=int, default=2000, help="run_stream's events per round at most")
    parser.add_argument("--poll-wait", type=float, default=2.0, help="run_stream's poll_wait_s")
    parser.add_argument("--idle-stop", type=float, default=5.0,
                        help="run_stream stops after this many seconds without new events")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of each topic")
    parser.add_argument("--seed", type=int, default=11, help="generator seed")
    parser.add_argument("--out", default=None, help="results JSON (default by mode, in bench/results/)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="backfill mode: cProfile (CPU clock) of the stream process to FILE (pstats format)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ENVLEADS_PSEUDONYM_KEY", BENCH_KEY)
    from envleads.models.registry import ensure_default_model
    from envleads.ops.broker import EmbeddedBroker

    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    facts = machine_facts()
    model_version = ensure_default_model()  # trained here if the registry is empty: never timed
    workdir = tempfile.mkdtemp(prefix="envleads-bench-stream-")
    with EmbeddedBroker() as broker:
        result = run_backfill(args, broker) if args.backfill else run_live(args, broker, workdir)
    (_print_backfill if args.backfill else _print_live)(result)
    out = args.out or os.path.join(RESULTS_DIR, "stream_backfill.json" if args.backfill else "stream.json")
    document = {"name": "stream_backfill" if args.backfill else "stream",
                "command": shlex.join([sys.executable, *sys.argv]), "date": started_at,
                "machine": {**facts, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
                "params": {"rate": args.rate, "seconds": args.seconds, "backfill": args.backfill,
                           "max_round_events": args.max_round_events, "poll_wait_s": args.poll_wait,
                           "idle_stop_s": args.idle_stop, "partitions": args.partitions, "seed": args.seed,
                           "beam_args": BEAM_ARGS, "model_version": model_version,
                           "round_wait_s": args.round_wait, "enrich_workers": args.enrich_workers,
                           "include_startup": args.include_startup, "kafka_client": args.kafka_client,
                           "unplaced_worker": args.unplaced_worker},
                "machine_note": "2 cores SHARED with other engineers' jobs while measured: wall time, latency "
                                "and throughput are noisy (see loadavg); CPU seconds are the steadier figure",
                "cpu_note": "CPU = user+system seconds: stream = this process (getrusage), broker and "
                            "producer/watcher measured separately",
                "result": result}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
