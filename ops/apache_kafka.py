"""Apache Kafka itself as a single-node KRaft broker, for what the embedded Tansu cannot do.

Tansu (``envleads.ops.broker.EmbeddedBroker``) stays the default: the demo and most tests need no
Java. :class:`ApacheKafkaBroker` runs the real broker from Maven jars for the rest: a restart that
keeps its data (a log directory on disk), TLS, SASL/SCRAM, consumer groups as Kafka runs them.

Where the jars come from: ``make kafka`` (a dependency of ``make test``) resolves
``ops/kafka/pom.xml`` (``org.apache.kafka:kafka_2.13`` and a log4j binding) and copies the jars to
``.cache/kafka/libs/`` of the repository; ``$ENVLEADS_KAFKA_LIBS`` names another folder. Nothing is
downloaded at run time: without the jars :meth:`ApacheKafkaBroker.start` raises
:class:`KafkaJarsMissing` ("run make kafka"). Java 17 or later must be on ``PATH`` (or in
``$JAVA_HOME``); without it, :class:`JavaMissing`.

What one broker is (all on 127.0.0.1, ports picked free at the first start and kept on restart):

* ``process.roles=broker,controller``, ``node.id=1``, a static quorum of itself; replication
  factors 1; ``group.initial.rebalance.delay.ms=0`` (a first group join is not held back 3 s);
  ``auto.create.topics.enable=false``, as on most production clusters (``envleads stream`` creates
  the topics it needs beyond the four it is given).
* Listeners: ``PLAINTEXT`` always (inter-broker traffic and the readiness probe), ``CONTROLLER``;
  with ``scram_users`` also ``SASL_PLAINTEXT`` (SCRAM-SHA-256 and -512, credentials written into
  the metadata by ``kafka-storage format --add-scram``, so they exist from the first moment; the
  passwords are on that command's line for the second it runs: test passwords only); with
  ``tls`` also ``SSL``, and with both ``SASL_SSL``. No authorizer: an authenticated user may do
  anything (authentication is what is tested, not ACLs).
* TLS material is made at start by the JDK's ``keytool`` (no download): a CA, and a broker key
  and certificate signed by it for ``IP:127.0.0.1`` and ``DNS:localhost`` (host-name checking
  passes), EC P-256, valid 7 days. Clients trust :attr:`ApacheKafkaBroker.ca_file` (PEM).
* Files, all under ``directory``: ``server.properties``, ``data/`` (the log directory),
  ``server.log`` (the broker's log4j output), ``stdout.log`` (the JVM's own output), ``tls/``,
  ``secrets/`` (SASL password files for :meth:`ApacheKafkaBroker.security`, mode 0600).
  Nothing reaches the caller's stdout or stderr.
* Measured on the 2-core machine under other load: the first start 11-21 s (keytool 3-8 s, format
  2-4 s, JVM to first metadata 6-11 s); a restart after ``stop()`` 8 s, after ``kill()`` 14-17 s
  (the controller refuses the new incarnation until the old one's 9 s broker session expires).
* Heap ``-Xmx512m`` by default. The JVM runs in its own process group and dies with the Python
  process (``PR_SET_PDEATHSIG``), like Tansu.

Example::

    with ApacheKafkaBroker(scram_users={"leads": "s3cret"}, tls=True) as kafka:
        security = kafka.security("SASL_SSL", "leads", mechanism="SCRAM-SHA-512")
        producer = KafkaProducer(**client_kwargs(kafka.bootstrap("SASL_SSL"), security))
        kafka.restart()  # stop (SIGTERM), start again on the same data and ports

``python -m envleads.ops.apache_kafka --dir DIR`` runs one in the foreground until Ctrl-C.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

from envleads.ops.broker import (LIVE_BROKERS, BrokerStartError, ManagedBroker, _api_versions_probe, _pdeathsig_preexec,
                                 create_topics, free_port, port_is_free, signal_group, wait_for_kafka)
from envleads.ops.kafka_config import KafkaSecurity

LIBS_ENV_VAR = "ENVLEADS_KAFKA_LIBS"
HOST = "127.0.0.1"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG_TAIL_BYTES = 3_000
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
# keytool is a JVM per call: a client JIT and the serial GC make each ~3x quicker to start
_QUICK_JVM = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"]
# The broker's JVM: a test broker's load is small, its start time is not. C1 only (no C2) started
# it in 5.3-7.7 s instead of 7.3-9.6 s on the 2-core machine under load; the serial GC keeps it
# from taking GC threads from the stream under test.
DEFAULT_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


class JavaMissing(BrokerStartError):
    """No ``java`` (or ``keytool``) on this machine."""


class KafkaJarsMissing(BrokerStartError):
    """The Apache Kafka jars were not fetched (``make kafka``)."""


def default_libs_dir() -> Path:
    """``$ENVLEADS_KAFKA_LIBS``, else ``.cache/kafka/libs`` of the repository holding this file
    (an editable install, as ``make`` makes), else of the working directory."""
    if os.environ.get(LIBS_ENV_VAR):
        return Path(os.environ[LIBS_ENV_VAR])
    beside = Path(__file__).resolve().parents[1] / ".cache" / "kafka" / "libs"
    return beside if beside.is_dir() else Path.cwd() / ".cache" / "kafka" / "libs"


def find_java_tool(name: str = "java") -> Optional[str]:
    """``$JAVA_HOME/bin/NAME`` if there, else NAME on ``PATH``; None when neither exists."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", name), os.X_OK):
        return os.path.join(home, "bin", name)
    return shutil.which(name)


def check_libs(libs_dir: Optional[os.PathLike] = None) -> Path:
    """The jars folder, or :class:`KafkaJarsMissing` saying how to fetch it."""
    libs = Path(libs_dir) if libs_dir else default_libs_dir()
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaJarsMissing(f"Apache Kafka jars not found in {libs}: run `make kafka` (`make test` runs it) to "
                               f"fetch them with Maven, or set ${LIBS_ENV_VAR}")
    return libs


def kafka_version(libs_dir: Optional[os.PathLike] = None) -> str:
    """The version of the fetched ``kafka_2.13`` jar, e.g. ``4.4.0``."""
    jar = sorted(check_libs(libs_dir).glob("kafka_2.13-*.jar"))[-1]
    return jar.name[len("kafka_2.13-"):-len(".jar")]


class ApacheKafkaBroker(ManagedBroker):
    """A single-node KRaft Apache Kafka broker on 127.0.0.1; a context manager (see the module doc).

    Args:
        directory: where its files go (created); default a temporary folder, removed on exit.
        scram_users: user name -> password, for the SASL listeners (both SCRAM mechanisms).
        tls: also listen with TLS (``SSL``; ``SASL_SSL`` too with ``scram_users``).
        heap: the JVM's ``-Xmx``.
        extra_properties: server properties added last (they win).
        start_timeout_s: from launching the JVM until a client gets metadata.
        stop_timeout_s: after SIGTERM, how long a controlled shutdown may take before SIGKILL.
        libs_dir: the jars (default :func:`default_libs_dir`).
        jvm_options: JVM flags besides the heap (default :data:`DEFAULT_JVM_OPTIONS`).
    """

    def __init__(self, directory: Optional[os.PathLike] = None, scram_users: Optional[Mapping[str, str]] = None,
                 tls: bool = False, heap: str = "512m", extra_properties: Optional[Mapping[str, str]] = None,
                 start_timeout_s: float = 90.0, stop_timeout_s: float = 30.0,
                 libs_dir: Optional[os.PathLike] = None, jvm_options: Optional[Iterable[str]] = None):
        self._owns_directory = directory is None
        self.directory = Path(directory) if directory else None
        self.scram_users = dict(scram_users or {})
        for name, password in self.scram_users.items():
            if not name or not password or '"' in name + password:
                raise ValueError("SCRAM users need a name and a password, neither with a double quote")
        self.tls = tls
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._libs_dir = libs_dir
        self.jvm_options = list(DEFAULT_JVM_OPTIONS if jvm_options is None else jvm_options)
        self.ports: Dict[str, int] = {}
        self.ca_file: Optional[str] = None
        self.start_seconds: Optional[float] = None  # JVM launch to first metadata, last start
        self._process: Optional[subprocess.Popen] = None
        self._output = None
        self._formatted = False
        self._lock = threading.Lock()

    # -- addresses and client settings ------------------------------------------------------
    @property
    def protocols(self) -> List[str]:
        """The client listeners' security protocols."""
        protocols = ["PLAINTEXT"]
        if self.scram_users:
            protocols.append("SASL_PLAINTEXT")
        if self.tls:
            protocols.append("SSL")
        if self.tls and self.scram_users:
            protocols.append("SASL_SSL")
        return protocols

    def bootstrap(self, protocol: str = "PLAINTEXT") -> str:
        """``host:port`` of the listener of ``protocol``."""
        protocol = protocol.upper()
        if protocol not in self.ports:
            raise ValueError(f"no {protocol} listener (this broker has {', '.join(self.protocols)}); "
                             f"or it was never started")
        return f"{HOST}:{self.ports[protocol]}"

    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT listener."""
        return self.bootstrap("PLAINTEXT")

    def security(self, protocol: str = "PLAINTEXT", username: Optional[str] = None,
                 password: Optional[str] = None, mechanism: str = "SCRAM-SHA-256") -> KafkaSecurity:
        """A :class:`KafkaSecurity` for one of this broker's listeners, as an operator would pass it
        with ``--security-protocol ... --sasl-password-file ... --ssl-cafile ...``.

        The password (default: ``username``'s own in ``scram_users``; pass another to test a wrong
        one) goes to a 0600 file under ``secrets/``, named by ``sasl_password_file``.
        """
        protocol = protocol.upper()
        self.bootstrap(protocol)  # a listener of that protocol exists
        fields: Dict[str, object] = {"security_protocol": protocol}
        if protocol in ("SSL", "SASL_SSL"):
            fields["ssl_cafile"] = self.ca_file
        if protocol.startswith("SASL_"):
            if username is None:
                raise ValueError(f"{protocol} needs a user name")
            secret = self.scram_users.get(username, "") if password is None else password
            secrets = self.directory / "secrets"
            secrets.mkdir(mode=0o700, exist_ok=True)
            path = secrets / f"{username}-{uuid.uuid4().hex[:8]}.password"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secret)
            fields.update(sasl_mechanism=mechanism, sasl_username=username, sasl_password_file=str(path))
        return KafkaSecurity(**fields)

    # -- files --------------------------------------------------------------------------------
    @property
    def log_path(self) -> Optional[Path]:
        return self.directory / "server.log" if self.directory else None

    @property
    def data_dir(self) -> Optional[Path]:
        return self.directory / "data" if self.directory else None

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The end of ``server.log`` and of the JVM's ``stdout.log``."""
        parts = []
        for name in ("stdout.log", "server.log"):
            path = self.directory / name if self.directory else None
            if path is None or not path.exists() or not path.stat().st_size:
                continue
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - max_bytes))
                parts.append(f"--- {name}\n" + handle.read().decode("utf-8", "replace"))
        return "\n".join(parts) or "(no log)"

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "ApacheKafkaBroker":
        """Formats the storage (first start only) and starts the broker; returns when a client
        gets metadata and every partition it knows has a leader."""
        with self._lock:
            if self.is_running():
                return self
            java = find_java_tool("java")
            if java is None:
                raise JavaMissing("java not found (set JAVA_HOME or put Java 17+ on PATH): Apache Kafka needs it")
            libs = check_libs(self._libs_dir)
            if self.directory is None:
                self.directory = Path(tempfile.mkdtemp(prefix="envleads-kafka-"))
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._formatted:
                self._launch(java, libs)
                return self
            if self._load_existing():
                self._launch(java, libs)
                return self
            if self.tls and self.ca_file is None:
                self._make_tls_material()
            for attempt in range(3):  # a port picked free may be taken before the JVM binds it
                self._pick_ports()
                self._write_config()
                self._format(java, libs)
                try:
                    self._launch(java, libs)
                    return self
                except BrokerStartError as error:
                    if attempt == 2 or "Address already in use" not in str(error):
                        raise
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                    self._formatted = False
            return self

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``stop_timeout_s``. The data stays."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would; the data stays (what was acknowledged is in the page
        cache or on disk), and the next start recovers the logs."""
        self._end(signal.SIGKILL)

    def restart(self, keep_data: bool = True, hard: bool = False) -> "ApacheKafkaBroker":
        """Stops (``hard``: kills) the broker and starts it again on the same ports; with
        ``keep_data`` on the same log directory, else on a freshly formatted one (all topics,
        offsets and records gone, SCRAM users formatted in again)."""
        if not self.ports:
            raise RuntimeError("broker never started")
        self.kill() if hard else self.stop()
        deadline = time.monotonic() + 15
        while not all(port_is_free(HOST, port) for port in self.ports.values()):
            if time.monotonic() > deadline:
                raise BrokerStartError(f"ports {sorted(self.ports.values())} still taken 15 s after the stop")
            time.sleep(0.1)
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._format(find_java_tool("java"), check_libs(self._libs_dir))
        return self.start()

    def close(self) -> None:
        """Stops the broker and removes its directory if it made it."""
        self.stop()
        if self._owns_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._formatted = False


    def create_topics(self, names: Iterable[str], partitions: int = 1,
                      config: Optional[Mapping[str, str]] = None) -> List[str]:
        """Creates topics (existing ones are left alone) through the PLAINTEXT listener."""
        return create_topics(self.bootstrap_servers, names, partitions=partitions, config=config)

    # -- internals ----------------------------------------------------------------------------
    def _pick_ports(self) -> None:
        chosen: Dict[str, int] = {}
        for name in ["CONTROLLER", *self.protocols]:
            port = free_port(HOST)
            while port in chosen.values():
                port = free_port(HOST)
            chosen[name] = port
        self.ports = chosen

    def _load_existing(self) -> bool:
        """A directory formatted by an earlier broker (``--dir`` given again): its ports, TLS
        material and data are taken over as they are (its SCRAM users are those it was formatted
        with). False for a new directory."""
        config = self.directory / "server.properties"
        if not (config.exists() and (self.data_dir / "meta.properties").exists()):
            return False
        properties = dict(line.split("=", 1) for line in config.read_text(encoding="utf-8").splitlines()
                          if "=" in line and not line.startswith("#"))
        self.ports = {listener.split("://")[0]: int(listener.rsplit(":", 1)[1])
                      for listener in properties["listeners"].split(",")}
        if (self.directory / "tls" / "ca.pem").exists():
            self.ca_file = str(self.directory / "tls" / "ca.pem")
        self._formatted = True
        return True

    def _write_config(self) -> None:
        listeners = {name: port for name, port in self.ports.items()}
        client = [name for name in listeners if name != "CONTROLLER"]
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.ports['CONTROLLER']}",
            "controller.listener.names": "CONTROLLER",
            "listeners": ",".join(f"{name}://{HOST}:{port}" for name, port in listeners.items()),
            "advertised.listeners": ",".join(f"{name}://{HOST}:{self.ports[name]}" for name in client),
            "listener.security.protocol.map": ",".join(
                f"{name}:{'PLAINTEXT' if name == 'CONTROLLER' else name}" for name in listeners),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        if self.scram_users:
            properties["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for listener in ("SASL_PLAINTEXT", "SASL_SSL"):
                if listener in listeners:
                    for mechanism in SCRAM_MECHANISMS:
                        properties[f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"] = \
                            _SCRAM_LOGIN
        if self.tls:
            tls = self.directory / "tls"
            properties.update({
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.location": str(tls / "broker.p12"),
                "ssl.keystore.password": (tls / "broker.pass").read_text(encoding="utf-8"),
                "ssl.client.auth": "none",
            })
        properties.update(self.extra_properties)
        lines = ["# written by envleads.ops.apache_kafka; rewritten at every first start"]
        lines += [f"{key}={value}" for key, value in properties.items()]
        (self.directory / "server.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (self.directory / "log4j2.properties").write_text(_log4j_config(self.log_path), encoding="utf-8")

    def _format(self, java: str, libs: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        command = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                   f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
                   "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
                   # one argument: an id starting with "-" (one in 64) would be taken for an option
                   f"--cluster-id={cluster_id}", "--config", str(self.directory / "server.properties")]
        for name, password in self.scram_users.items():
            for mechanism in SCRAM_MECHANISMS:
                command += ["--add-scram", f'{mechanism}=[name="{name}",password="{password}"]']
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=120)
        output = result.stdout.decode("utf-8", "replace")
        (self.directory / "format.log").write_text(output, encoding="utf-8")
        if result.returncode != 0:
            for password in self.scram_users.values():
                output = output.replace(password, "<redacted>") if password else output
            raise BrokerStartError(f"kafka-storage format failed ({result.returncode}):\n{output[-_LOG_TAIL_BYTES:]}")
        self._formatted = True

    def _launch(self, java: str, libs: Path) -> None:
        for name, port in self.ports.items():
            if not port_is_free(HOST, port):
                raise BrokerStartError(f"{name} port {HOST}:{port}: Address already in use")
        command = [java, f"-Xmx{self.heap}", "-Xms128m", *self.jvm_options, "-XX:+ExitOnOutOfMemoryError",
                   "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.directory}",
                   f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
                   "-cp", f"{libs}/*", "kafka.Kafka", str(self.directory / "server.properties")]
        self._output = open(self.directory / "stdout.log", "ab")
        started = time.monotonic()
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._output,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_pdeathsig_preexec(os.getpid()), close_fds=True,
                                         cwd=str(self.directory))
        LIVE_BROKERS.add(self)
        deadline = started + self.start_timeout_s
        plaintext = self.ports["PLAINTEXT"]
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._forget_process()
                tail = self.log_tail()
                reason = "Address already in use" if "Address already in use" in tail else f"exit code {code}"
                raise BrokerStartError(f"Apache Kafka exited during start ({reason}); log tail:\n{tail}")
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.kill()
                raise BrokerStartError(f"Apache Kafka did not answer on {HOST}:{plaintext} within "
                                       f"{self.start_timeout_s:.0f} s; log tail:\n{tail}")
            if _api_versions_probe(HOST, plaintext, timeout_s=1.0):
                break
            time.sleep(0.1)
        try:
            wait_for_kafka(self.bootstrap_servers, timeout_s=max(5.0, deadline - time.monotonic()))
            self._wait_for_leaders(deadline)
        except (TimeoutError, BrokerStartError) as error:
            tail = self.log_tail()
            self.kill()
            raise BrokerStartError(f"Apache Kafka not ready: {error}; log tail:\n{tail}") from None
        self.start_seconds = time.monotonic() - started

    def _wait_for_leaders(self, deadline: float) -> None:
        """After a restart the partitions get their leader back a moment after metadata answers."""
        from kafka.admin import KafkaAdminClient

        from envleads.ops.kafka_config import client_kwargs

        admin = KafkaAdminClient(**client_kwargs(self.bootstrap_servers, role="admin"))
        try:
            while True:
                leaderless = [(topic["name"], partition["partition_index"]) for topic in admin.describe_topics()
                              for partition in topic["partitions"] if partition["leader_id"] < 0]
                if not leaderless:
                    return
                if time.monotonic() > deadline:
                    raise BrokerStartError(f"partitions without a leader: {leaderless[:5]}")
                time.sleep(0.2)
        finally:
            admin.close()

    def _end(self, sig: int) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            signal_group(process, sig)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                signal_group(process, signal.SIGKILL)
                process.wait(10)
        signal_group(process, signal.SIGKILL)
        self._forget_process()

    def _make_tls_material(self) -> None:
        """A CA and a broker certificate it signed, with ``keytool`` (see the module doc)."""
        keytool = find_java_tool("keytool")
        if keytool is None:
            raise JavaMissing("keytool not found (it ships with the JDK): needed for the TLS listener")
        tls = self.directory / "tls"
        shutil.rmtree(tls, ignore_errors=True)
        tls.mkdir(mode=0o700)
        ca_pass, broker_pass = uuid.uuid4().hex, uuid.uuid4().hex
        (tls / "broker.pass").write_text(broker_pass, encoding="utf-8")
        ca = ["-keystore", str(tls / "ca.p12"), "-storetype", "PKCS12", "-storepass", ca_pass]
        broker = ["-keystore", str(tls / "broker.p12"), "-storetype", "PKCS12", "-storepass", broker_pass]
        key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", "7"]

        def run(*args: str, stdin: Optional[bytes] = None) -> bytes:
            result = subprocess.run([keytool, *_QUICK_JVM, *args], input=stdin, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=60)
            if result.returncode != 0:
                raise BrokerStartError(f"keytool {args[0]} failed: {result.stdout.decode('utf-8', 'replace')}")
            return result.stdout

        run("-genkeypair", "-alias", "ca", "-dname", "CN=envleads test CA", "-ext", "bc:c", *key, *ca)
        ca_pem = run("-exportcert", "-rfc", "-alias", "ca", *ca)
        run("-genkeypair", "-alias", "broker", "-dname", f"CN={HOST}", *key, *broker)
        request = run("-certreq", "-alias", "broker", *broker)
        signed = run("-gencert", "-alias", "ca", "-rfc", "-validity", "7", "-ext", f"SAN=ip:{HOST},dns:localhost",
                     "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth", *ca, stdin=request)
        (tls / "chain.pem").write_bytes(signed + ca_pem)
        run("-importcert", "-noprompt", "-alias", "broker", "-file", str(tls / "chain.pem"), *broker)
        (tls / "ca.pem").write_bytes(ca_pem)
        self.ca_file = str(tls / "ca.pem")


def _log4j_config(log_path: Path) -> str:
    return "\n".join([
        "status = warn",
        "appender.file.type = File",
        "appender.file.name = file",
        f"appender.file.fileName = {log_path}",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = file",
        # one line per request / per partition state change: noise at INFO
        "logger.request.name = kafka.request.logger",
        "logger.request.level = WARN",
        "logger.state.name = state.change.logger",
        "logger.state.level = WARN",
        "",
    ])


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one broker in the foreground (``python -m envleads.ops.apache_kafka``; the command line
    is :func:`envleads.cli.ops.apache_kafka_main`)."""
    from envleads.cli.ops import apache_kafka_main

    return apache_kafka_main(argv)


if __name__ == "__main__":
    sys.exit(main())
