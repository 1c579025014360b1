"""The batch pipeline submitted through ``PortableRunner`` to a local job service whose SDK workers
are separate processes started by a worker pool (``--environment_type EXTERNAL``): the stand-in for
a Flink, Spark or Dataflow cluster on a machine that cannot download their job servers. The output
must equal the in-process ``FnApiRunner``'s on the same input, record for record.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envleads.pipelines.batch import run_batch

BIN = Path(sys.executable).parent
KEY = "test-runners-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


@pytest.fixture(scope="module")
def portable_cluster(tmp_path_factory):
    """A Beam job service and an SDK worker pool, each its own process, stopped after the module.

    The worker pool starts workers with ``python`` from PATH and its own environment, as a cluster's
    workers would: so PATH leads to this virtualenv and the pseudonymisation key is set there too.
    """
    logs = tmp_path_factory.mktemp("portable")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", ENVLEADS_PSEUDONYM_KEY=KEY)
    job_port, pool_port = _free_port(), _free_port()
    commands = {
        "job_service": [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                        "--port", str(job_port)],
        "worker_pool": [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        "--service_port", str(pool_port)],
    }
    processes = {}
    try:
        for name, command in commands.items():
            log = open(logs / f"{name}.log", "wb")
            processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait_for_port(job_port, processes["job_service"])
        _wait_for_port(pool_port, processes["worker_pool"])
        yield {"job_port": job_port, "pool_port": pool_port, "logs": logs}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def generated_input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portable-input")
    path = folder / "complaints.jsonl"
    subprocess.run([str(BIN / "envleads"), "generate", "--count", "150", "--seed", "11", "--output", str(path)],
                   check=True, capture_output=True)
    with open(path, "ab") as handle:  # the dead-letter path must work on remote workers too
        handle.write(b'{"complaint_id": "bad-1", "text": ""}\n\xff\xfe not utf-8\n')
    return path


def _records(path: Path, drop=()):
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return sorted(json.dumps({k: v for k, v in row.items() if k not in drop}, sort_keys=True, ensure_ascii=False)
                  for row in rows)


def test_portable_runner_with_external_workers_matches_fn_api_runner(portable_cluster, generated_input, tmp_path,
                                                                     monkeypatch):
    from envleads.models.registry import ensure_default_model

    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", KEY)
    version = ensure_default_model()
    outputs = {}
    for runner, beam_args in {
        "fn_api": ["--runner", "FnApiRunner"],
        "portable": ["--runner", "PortableRunner", "--job_endpoint", f"localhost:{portable_cluster['job_port']}",
                     "--environment_type", "EXTERNAL",
                     "--environment_config", f"localhost:{portable_cluster['pool_port']}"],
    }.items():
        folder = tmp_path / runner
        folder.mkdir()
        counts = run_batch(str(generated_input), str(folder / "enriched.jsonl"), str(folder / "leads.jsonl"),
                           str(folder / "dead.jsonl"), beam_args + ["--model_version", version])
        outputs[runner] = (counts, folder)

    (fn_counts, fn_dir), (portable_counts, portable_dir) = outputs["fn_api"], outputs["portable"]
    assert portable_counts == fn_counts
    lines = len(generated_input.read_bytes().splitlines())
    assert fn_counts["enriched"] + fn_counts["dead_letters"] == lines and fn_counts["dead_letters"] >= 2
    assert _records(portable_dir / "enriched.jsonl") == _records(fn_dir / "enriched.jsonl")
    assert _records(portable_dir / "leads.jsonl", drop=("rank",)) == _records(fn_dir / "leads.jsonl", drop=("rank",))
    assert _records(portable_dir / "dead.jsonl") == _records(fn_dir / "dead.jsonl")
    # The work really ran in a worker the pool started, not in this process.
    pool_log = (portable_cluster["logs"] / "worker_pool.log").read_text(errors="replace")
    assert "Starting worker with command" in pool_log
