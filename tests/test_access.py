"""Access: every Kafka client takes SASL and TLS settings from one configuration, secrets stay secret.

* Audit: every ``KafkaConsumer``/``KafkaProducer``/``KafkaAdminClient`` construction in the package
  is built from :func:`envleads.ops.kafka_config.client_kwargs` (read from the source, so a new
  client that forgets security fails here), and every command that talks to Kafka takes the
  security flags.
* TLS for real, up to the handshake: the embedded Tansu (v0.6.0) cannot serve TLS (``--cert`` and
  ``--key`` are mutually exclusive in its argument parser; either alone leaves the listener plain:
  checked with ``openssl s_client``), so a local TLS server (Python ``ssl``, certificates made
  with ``openssl``) stands in for the broker: a client configured with the right CA completes the
  handshake (also with a client certificate for mutual TLS), one with another CA refuses the
  server, and a TLS client against the plain Tansu port fails.
* SASL: Tansu's ``--authentication`` needs users created through an authenticated connection, which
  a fresh in-memory broker cannot have; so SASL is tested up to the client arguments
  (mechanism, user, password from the environment or a file) and the logs.
"""
from __future__ import annotations

import argparse
import ast
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from envleads.ops.kafka_config import (KafkaConfigError, KafkaSecurity, add_kafka_arguments, client_kwargs,
                                       security_from_args, security_kwargs)  # validation: test_broker.py

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = [ROOT / "src" / "envleads", ROOT / "pipelines", ROOT / "ops", ROOT / "schemas", ROOT / "models"]
CLIENT_CLASSES = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient", "KafkaClient"}
KWARGS_BUILDERS = {"client_kwargs", "_kafka_kwargs"}
SECRET = "Pa55-s3cret-never-shown"

# Commands that take --bootstrap-servers without the security flags. Each is a gap to close
# (see the helper report: add_kafka_arguments(parser) and pass security_from_args(args) through);
# the test fails when one is closed and still listed, so this list can only shrink.
KNOWN_GAPS = set()


# ------------------------------------------------------------------------------------- audit
def _client_constructions() -> List[Dict]:
    """Every call of a kafka-python client class in the package, with how its kwargs are built."""
    found = []
    for folder in PACKAGE_DIRS:
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text("utf-8"), str(path))
            for function in [node for node in ast.walk(tree)
                             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module))]:
                built = {target.id for node in ast.walk(function) if isinstance(node, ast.Assign)
                         and isinstance(node.value, ast.Call) and _name(node.value.func) in KWARGS_BUILDERS
                         for target in node.targets if isinstance(target, ast.Name)}
                for call in ast.walk(function):
                    if not (isinstance(call, ast.Call) and _name(call.func) in CLIENT_CLASSES):
                        continue
                    if not isinstance(function, ast.Module) and call not in _direct_calls(function):
                        continue
                    star = [kw.value for kw in call.keywords if kw.arg is None]
                    ok = any((isinstance(v, ast.Call) and _name(v.func) in KWARGS_BUILDERS)
                             or (isinstance(v, ast.Name) and v.id in built) for v in star)
                    found.append({"where": f"{path.relative_to(ROOT)}:{call.lineno}", "class": _name(call.func),
                                  "through_client_kwargs": ok})
    unique = {item["where"]: item for item in found}
    return sorted(unique.values(), key=lambda item: item["where"])


def _direct_calls(function) -> set:
    """Calls inside ``function`` but not inside a nested function (those are audited on their own)."""
    nested = {id(node) for inner in ast.walk(function) if inner is not function
              and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(inner)}
    return {node for node in ast.walk(function) if isinstance(node, ast.Call) and id(node) not in nested}


def _name(node) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def test_every_kafka_client_is_built_from_client_kwargs():
    constructions = _client_constructions()
    classes = {item["class"] for item in constructions}
    assert {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"} <= classes  # the audit sees them
    assert len(constructions) >= 6
    assert [item["where"] for item in constructions if not item["through_client_kwargs"]] == []


def _subcommands() -> Dict[str, argparse.ArgumentParser]:
    from envleads.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_that_talks_to_kafka_takes_the_security_flags():
    security_flags = {"--security-protocol", "--sasl-mechanism", "--sasl-username", "--sasl-password-env",
                      "--sasl-password-file", "--ssl-cafile", "--ssl-certfile", "--ssl-keyfile"}
    kafka_commands, missing = set(), {}
    for name, sub in _subcommands().items():
        flags = {flag for action in sub._actions for flag in action.option_strings}
        if "--bootstrap-servers" in flags:
            kafka_commands.add(name)
            if security_flags - flags:
                missing[name] = sorted(security_flags - flags)
    assert {"stream", "status"} <= kafka_commands
    assert set(missing) == KNOWN_GAPS, missing


def test_security_flags_reach_the_client_arguments(tmp_path, monkeypatch):
    password_file = tmp_path / "kafka.pw"
    password_file.write_text(SECRET + "\n")
    args, _ = _subcommands()["stream"].parse_known_args([
        "--bootstrap-servers", "k1:9093,k2:9093", "--security-protocol", "sasl_ssl", "--sasl-mechanism",
        "scram-sha-512", "--sasl-username", "envleads", "--sasl-password-file", str(password_file),
        "--ssl-cafile", "/etc/ca.pem"])
    security = security_from_args(args)
    kwargs = client_kwargs(args.bootstrap_servers, security, role="consumer", group_id="g")
    assert kwargs["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "envleads" and kwargs["sasl_plain_password"] == SECRET
    assert kwargs["ssl_cafile"] == "/etc/ca.pem" and kwargs["ssl_check_hostname"] is True
    assert kwargs["group_id"] == "g"
    from kafka import KafkaConsumer

    assert set(kwargs) <= set(KafkaConsumer.DEFAULT_CONFIG)  # kafka-python knows every argument

    monkeypatch.setenv("KAFKA_PW", SECRET)
    from_env = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u", sasl_password_env="KAFKA_PW")
    assert security_kwargs(from_env)["sasl_plain_password"] == SECRET
    assert "ssl_cafile" not in security_kwargs(from_env)


@pytest.mark.parametrize("argv", [["--sasl-password", SECRET], [f"--sasl-password={SECRET}"]])
def test_a_literal_password_flag_is_refused_without_echoing_it(argv, capsys):
    parser = argparse.ArgumentParser(prog="envleads x")
    add_kafka_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--security-protocol", "SASL_SSL", "--sasl-username", "u", *argv])
    captured = capsys.readouterr()
    assert "--sasl-password-env" in captured.err
    assert SECRET not in captured.out + captured.err


def test_password_is_never_in_repr_or_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_PW", SECRET)
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "u", sasl_password_env="KAFKA_PW", ssl_cafile="ca.pem")
    assert SECRET not in repr(security) and SECRET not in str(security) and "KAFKA_PW" in repr(security)
    monkeypatch.delenv("KAFKA_PW")
    with pytest.raises(KafkaConfigError) as unset:
        security.password()
    missing_file = KafkaSecurity("SASL_SSL", "PLAIN", "u", sasl_password_file=str(tmp_path / "none"))
    with pytest.raises(KafkaConfigError) as unreadable:
        missing_file.password()
    assert SECRET not in str(unset.value) + str(unreadable.value)


# --------------------------------------------------------------------------- TLS, for real
def _make_cert(folder: Path, name: str, ca: Optional[Path] = None) -> Dict[str, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (made with the openssl command)."""
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return {"key": key, "cert": cert}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    return {"server": _make_cert(folder, "server"), "other": _make_cert(folder, "other-ca"),
            "client": _make_cert(folder, "client")}


class TlsServer:
    """Accepts TCP connections and runs the server side of a TLS handshake; records the outcome."""

    def __init__(self, cert: Dict[str, Path], client_ca: Optional[Path] = None):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert["cert"]), str(cert["key"]))
        if client_ca:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(str(client_ca))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handshakes: List[Dict] = []
        self.first_bytes: List[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except socket.timeout:
                continue
            connection.settimeout(2)
            try:
                tls = self.context.wrap_socket(connection, server_side=True)
                peer = tls.getpeercert()
                self.handshakes.append({"ok": True, "version": tls.version(), "client_cert": bool(peer)})
                try:
                    self.first_bytes.append(tls.recv(4096))  # the client's first Kafka request
                except (OSError, ssl.SSLError):
                    pass
                tls.close()
            except (ssl.SSLError, OSError) as error:
                self.handshakes.append({"ok": False, "error": type(error).__name__, "detail": str(error)[:200]})
                connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _try_connect(port: int, security: KafkaSecurity, timeout_s: float = 3.0) -> BaseException:
    from envleads.ops.broker import wait_for_kafka

    with pytest.raises(TimeoutError) as error:  # the stand-in is no Kafka broker: it never answers
        wait_for_kafka(f"127.0.0.1:{port}", timeout_s=timeout_s, security=security)
    return error.value


def test_tls_client_completes_the_handshake_with_the_configured_ca(certificates):
    with TlsServer(certificates["server"]) as server:
        _try_connect(server.port, KafkaSecurity("SSL", ssl_cafile=str(certificates["server"]["cert"])))
    assert server.handshakes and all(h["ok"] for h in server.handshakes), server.handshakes
    assert server.handshakes[0]["version"] in ("TLSv1.2", "TLSv1.3")
    # inside the TLS session the client speaks Kafka: a size-prefixed request
    request = next(data for data in server.first_bytes if data)
    assert int.from_bytes(request[:4], "big") == len(request) - 4


def test_tls_client_refuses_a_server_its_ca_did_not_sign(certificates):
    with TlsServer(certificates["server"]) as server:
        error = _try_connect(server.port, KafkaSecurity("SSL", ssl_cafile=str(certificates["other"]["cert"])))
    assert server.handshakes and not any(h["ok"] for h in server.handshakes), server.handshakes
    assert "ssl" in str(error).lower() or "certificate" in str(error).lower() or server.handshakes


def test_mutual_tls_presents_the_configured_client_certificate(certificates):
    client = certificates["client"]
    with TlsServer(certificates["server"], client_ca=client["cert"]) as server:
        _try_connect(server.port, KafkaSecurity("SSL", ssl_cafile=str(certificates["server"]["cert"]),
                                                ssl_certfile=str(client["cert"]), ssl_keyfile=str(client["key"])))
    assert any(h["ok"] and h["client_cert"] for h in server.handshakes), server.handshakes
    with TlsServer(certificates["server"], client_ca=client["cert"]) as server:
        _try_connect(server.port, KafkaSecurity("SSL", ssl_cafile=str(certificates["server"]["cert"])))
    assert server.handshakes and not any(h["ok"] for h in server.handshakes)  # no client certificate


def test_sasl_over_tls_secret_stays_out_of_logs_even_at_debug(certificates, monkeypatch, caplog):
    """Worst case: kafka-python's own loggers at DEBUG (the CLI keeps them at WARNING)."""
    monkeypatch.setenv("KAFKA_PW", SECRET)
    caplog.set_level(logging.DEBUG)
    for name in ("kafka", "envleads"):
        caplog.set_level(logging.DEBUG, logger=name)
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "envleads", sasl_password_env="KAFKA_PW",
                             ssl_cafile=str(certificates["server"]["cert"]))
    with TlsServer(certificates["server"]) as server:
        error = _try_connect(server.port, security)
    assert any(h["ok"] for h in server.handshakes)  # SASL_SSL really starts with TLS
    assert caplog.records
    assert SECRET not in caplog.text and SECRET not in str(error)
    # kafka-python logs the admin client's configuration at DEBUG: it is there, redacted
    assert "sasl_plain_password': '<redacted>'" in caplog.text


@pytest.mark.kafka
def test_tls_handshake_against_the_plain_tansu_port_fails(kafka_broker, certificates):
    """A broker port without TLS never completes a handshake: nothing is sent in clear by mistake.

    Measured with a plain ``ssl`` socket and a deadline: kafka-python 3.0.12 itself waits for the
    ServerHello without a timeout there (Tansu reads the ClientHello as the start of a huge Kafka
    frame and keeps the connection open), so ``wait_for_kafka`` would hang, not fail.
    """
    host, port = kafka_broker.bootstrap_servers.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(certificates["server"]["cert"]))
    with socket.create_connection((host, int(port)), timeout=3) as raw:
        with pytest.raises((ssl.SSLError, socket.timeout, ConnectionError)):
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass


def test_security_flags_without_a_bootstrap_flag_for_commands_that_define_their_own():
    parser = argparse.ArgumentParser(prog="envleads demo")
    parser.add_argument("--bootstrap-servers", default=None)  # None: start the embedded broker
    add_kafka_arguments(parser, with_bootstrap=False)
    args = parser.parse_args(["--security-protocol", "SSL", "--ssl-cafile", "/etc/ca.pem"])
    assert args.bootstrap_servers is None
    assert security_from_args(args) == KafkaSecurity("SSL", ssl_cafile="/etc/ca.pem")


def test_waiting_for_a_tls_cluster_behind_a_silent_port_times_out_instead_of_hanging():
    """kafka-python waits forever for a TLS reply; ``wait_for_kafka`` must still keep its deadline."""
    from envleads.ops.broker import wait_for_kafka

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections (the kernel does) and never says a word
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError):
            wait_for_kafka(f"127.0.0.1:{port}", timeout_s=3, security=KafkaSecurity("SSL"))
