"""The dashboard under hostile clients: ``/api/health`` latency while N half-sent requests are open,
the server's thread count, one GET with 32,000 region values, and a foreign Host header.

    .venv/bin/python bench/bench_dashboard_slowloris.py [--leads 5000] [--slow 0,500,1000,3000]
        [--src DIR] [--output FILE]

The dashboard runs as ``envleads dashboard --input LEADS.jsonl`` in a subprocess (``--src`` puts
another checkout's ``src`` first on its path, e.g. a ``git worktree`` of the commit before the
hardening, to measure "before"). The leads are generated here over real counties (no shared data).
For each N the script opens N connections that send part of a request line and stall (slowloris),
then times 10 ``/api/health`` requests one after the other (timeout 30 s each: a timeout is
reported as such) and counts the server's threads (``/proc/PID/task``). Then one GET of
``/api/leads`` with 32,000 comma-separated region values (64,000 characters; timeout 600 s), and a
``/api/health`` with ``Host: rebind.attacker.example``. Writes bench/results/dashboard_slowloris.json
(or ``--output``). Wall times on a shared 2-core machine: read them as orders of magnitude.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from envleads.divisions import COUNTY, load_divisions
from envleads.leads import lead_to_avro_dict
from envleads.records import Lead, ScoreReason

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "dashboard_slowloris.json"


def write_leads(path: str, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    table = load_divisions()
    counties = [d for d in table if d.level == COUNTY]
    now = int(time.time() * 1000)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            county = rng.choice(counties)
            score = round(rng.uniform(1, 90), 1)
            lead = Lead(
                lead_id=f"lead-b-{i:06d}", cluster_id=f"b-{i:06d}", first_complaint_id=f"RX{i:016d}",
                complaint_ids=[f"RX{i:016d}"], report_count=1, reporter_keys=[], distinct_reporters=1,
                first_seen_ms=now - rng.randrange(30) * 86_400_000, last_seen_ms=now, pollution_types=["air"],
                region=table.region_record(county.adcode), department=county.name + "生态环境分局",
                routing_rule="county_environment", score=score,
                tier=rng.choice(("urgent", "high", "normal", "low")),
                reasons=[ScoreReason("repeats", score, "1 report")], campaigns=[], summary="工厂排放刺鼻废气。",
                matter_signature=[], matter_entities=[], updated_at_ms=now, channel="phone",
                deadline_ms=now + rng.choice((-1, 1)) * 86_400_000, joins=())
            handle.write(json.dumps(lead_to_avro_dict(lead), ensure_ascii=False) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float, host: str = None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (TimeoutError, socket.timeout, urllib.error.URLError, ConnectionError) as error:
        status = f"error: {type(getattr(error, 'reason', error)).__name__}"
    return status, time.perf_counter() - started


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def open_slow(port: int, count: int, into: list) -> int:
    opened = 0
    for i in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /api/health?slow=%d HTTP/1.1\r\nHost: 127.0" % i)
        except OSError:
            continue
        into.append(sock)
        opened += 1
    return opened


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--slow", default="0,500,1000,3000", help="half-open connection counts, cumulative steps")
    parser.add_argument("--src", default=None, help="a checkout's src directory to run the dashboard from")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--label", default="after")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the client side holds one file per connection

    workdir = tempfile.mkdtemp(prefix="bench-dashboard-")
    leads_path = os.path.join(workdir, "leads.jsonl")
    write_leads(leads_path, args.leads)
    port = free_port()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.path.abspath(args.src) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen([sys.executable, "-m", "envleads.cli", "dashboard", "--input", leads_path,
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/"
    result = {"label": args.label, "src": args.src or "src", "leads": args.leads, "steps": [],
              "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                          "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}}
    slow: list = []
    try:
        deadline = time.monotonic() + 60
        while get(base + "api/health", 2)[0] != 200:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the dashboard did not start: " + process.stderr.read().decode()[-2000:])
            time.sleep(0.2)
        get(base + "api/leads", 60)  # warm: divisions table, first payload
        for target in (int(n) for n in args.slow.split(",")):
            opened = open_slow(port, target - len(slow), slow) if target > len(slow) else 0
            time.sleep(1.0)  # let the server take them
            samples = [get(base + "api/health", 30) for _ in range(10)]
            ok = [seconds for status, seconds in samples if status == 200]
            step = {"slow_connections": len(slow), "opened_now": opened, "server_threads": threads_of(process.pid),
                    "health_ok": len(ok), "health_failures": sorted({str(s) for s, _ in samples if s != 200}),
                    "health_median_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
                    "health_max_ms": round(max(ok) * 1000, 1) if ok else None}
            result["steps"].append(step)
            print(f"{len(slow):5d} slow connections: server threads {step['server_threads']:5d}, /api/health "
                  f"{len(ok)}/10 ok, median {step['health_median_ms']} ms, max {step['health_max_ms']} ms"
                  + (f", failures {step['health_failures']}" if step["health_failures"] else ""), flush=True)
        for sock in slow:
            sock.close()
        slow.clear()
        time.sleep(1.0)
        values = ",".join(str(i % 10) for i in range(32_000))
        status, seconds = get(base + "api/leads?region=" + values, 600)
        result["filter_32000"] = {"status": status, "seconds": round(seconds, 3)}
        print(f"GET /api/leads with 32,000 region values: {status} in {seconds:.3f} s", flush=True)
        status, _ = get(base + "api/health", 10, host=f"rebind.attacker.example:{port}")
        result["foreign_host_status"] = status
        print(f"GET /api/health with Host: rebind.attacker.example: {status}", flush=True)
        result["server_threads_at_end"] = threads_of(process.pid)
    finally:
        for sock in slow:
            sock.close()
        process.terminate()
        process.wait(timeout=30)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
