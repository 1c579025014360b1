"""One place that turns Kafka options into kafka-python client keyword arguments.

Every envleads component (pipelines, generator, broker tooling) builds its producers, consumers
and admin clients from :func:`client_kwargs`, so security settings and the defaults that make
kafka-python behave on the embedded Tansu broker live here and nowhere else.

Secrets: a SASL password is never accepted as a literal on the command line (it would show in
``ps`` and shell history). It is read from an environment variable or a file named on the command
line, at the moment :func:`client_kwargs` needs it, and :class:`KafkaSecurity`'s ``repr`` only ever
shows where the password comes from.

Defaults chosen for Tansu (see ``envleads.ops.broker`` for the measurements):

* consumer ``max_poll_interval_ms=10000``: kafka-python sends it as the JoinGroup rebalance
  timeout; a coordinator waits up to that long for members during a rebalance, so the
  kafka-python default (300 s) can stall a restarted pipeline for minutes.
* consumer ``session_timeout_ms=6000``/``heartbeat_interval_ms=1000``: a crashed member is
  evicted in ~6-11 s instead of 45 s.
* producer ``acks="all"``, retries with backoff, a short ``linger_ms`` to batch.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, Optional

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ROLES = ("producer", "consumer", "admin")

DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
BOOTSTRAP_ENV_VAR = "ENVLEADS_KAFKA_BOOTSTRAP"

# Consumer group timing that works on Tansu (and is harmless on Apache Kafka).
CONSUMER_MAX_POLL_INTERVAL_MS = 10_000
CONSUMER_SESSION_TIMEOUT_MS = 6_000
CONSUMER_HEARTBEAT_INTERVAL_MS = 1_000
REQUEST_TIMEOUT_MS = 30_000
PRODUCER_LINGER_MS = 5
PRODUCER_RETRY_BACKOFF_MS = 200
PRODUCER_DELIVERY_TIMEOUT_MS = 120_000


# kafka-python 3 logs a client's whole configuration at DEBUG ("Starting KafkaAdminClient with
# configuration: {...}"), SASL password included. The CLI keeps kafka-python's loggers at WARNING;
# this filter also covers library use (notebooks, the dashboard, tests) with DEBUG logging on.
SECRET_CONFIG_KEYS = ("sasl_plain_password", "ssl_password")
CONFIG_LOGGING_LOGGERS = ("kafka.admin.client", "kafka.producer.kafka", "kafka.consumer.group",
                          "kafka.client_async", "kafka.conn", "kafka.net.connection")
REDACTED = "<redacted>"


def _redacted(value: Any) -> Any:
    if isinstance(value, Mapping) and any(value.get(key) for key in SECRET_CONFIG_KEYS):
        return {k: (REDACTED if k in SECRET_CONFIG_KEYS and v else v) for k, v in value.items()}
    return value


class RedactKafkaSecrets(logging.Filter):
    """Replaces secret values in configuration mappings passed as log arguments (copies, never the
    client's own configuration)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = _redacted(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True


def install_secret_redaction() -> None:
    """Adds :class:`RedactKafkaSecrets` to the kafka-python loggers that log configurations (idempotent)."""
    for name in CONFIG_LOGGING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactKafkaSecrets) for existing in logger.filters):
            logger.addFilter(RedactKafkaSecrets())


install_secret_redaction()


class KafkaConfigError(ValueError):
    """Raised for an inconsistent or incomplete Kafka security configuration."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How to authenticate to and encrypt traffic with a Kafka cluster.

    The password itself is never stored here: ``sasl_password_env`` names an environment variable
    and ``sasl_password_file`` a file; :meth:`password` reads it when a client is built.
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: Optional[str] = None
    sasl_username: Optional[str] = None
    sasl_password_env: Optional[str] = None
    sasl_password_file: Optional[str] = None
    ssl_cafile: Optional[str] = None
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        protocol = self.security_protocol.upper()
        object.__setattr__(self, "security_protocol", protocol)
        if protocol not in SECURITY_PROTOCOLS:
            raise KafkaConfigError(
                f"security_protocol must be one of {SECURITY_PROTOCOLS}, got {self.security_protocol!r}"
            )
        if self.uses_sasl:
            mechanism = (self.sasl_mechanism or "PLAIN").upper()
            object.__setattr__(self, "sasl_mechanism", mechanism)
            if mechanism not in SASL_MECHANISMS:
                raise KafkaConfigError(
                    f"sasl_mechanism must be one of {SASL_MECHANISMS}, got {self.sasl_mechanism!r}"
                )
            if not self.sasl_username:
                raise KafkaConfigError(f"{protocol} needs a SASL username")
            if bool(self.sasl_password_env) == bool(self.sasl_password_file):
                raise KafkaConfigError(
                    f"{protocol} needs exactly one of sasl_password_env or sasl_password_file"
                )
        elif self.sasl_mechanism or self.sasl_username:
            raise KafkaConfigError(f"SASL settings given but security_protocol is {protocol}")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise KafkaConfigError("ssl_certfile and ssl_keyfile go together (client certificate)")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def password(self) -> str:
        """Reads the SASL password from its environment variable or file (trailing newline dropped)."""
        if self.sasl_password_env:
            value = os.environ.get(self.sasl_password_env)
            if value is None:
                raise KafkaConfigError(
                    f"environment variable {self.sasl_password_env} (SASL password) is not set"
                )
            return value
        if self.sasl_password_file:
            try:
                with open(self.sasl_password_file, encoding="utf-8") as handle:
                    return handle.read().rstrip("\r\n")
            except OSError as error:
                raise KafkaConfigError(
                    f"cannot read SASL password file {self.sasl_password_file}: {error.strerror}"
                ) from None
        raise KafkaConfigError("no SASL password source configured")

    def __repr__(self) -> str:
        # Only the *source* of the password is shown, never its value (there is no value field).
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in (
                "security_protocol",
                "sasl_mechanism",
                "sasl_username",
                "sasl_password_env",
                "sasl_password_file",
                "ssl_cafile",
                "ssl_certfile",
                "ssl_keyfile",
                "ssl_check_hostname",
            )
            if getattr(self, name) not in (None, "")
        )
        return f"KafkaSecurity({fields})"

    __str__ = __repr__


PLAINTEXT = KafkaSecurity()


class _RefuseLiteralPassword(argparse.Action):
    """``--sasl-password`` exists only to be refused, without echoing the value it was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--sasl-password is not accepted (a password on the command line shows in ps and "
                     "shell history): use --sasl-password-env VAR or --sasl-password-file PATH")


def add_kafka_arguments(parser: argparse.ArgumentParser, bootstrap_default: Optional[str] = None,
                        with_bootstrap: bool = True) -> None:
    """Adds the shared Kafka connection flags to ``parser``.

    Args:
        parser: the (sub)command parser.
        bootstrap_default: default for ``--bootstrap-servers``; falls back to
            ``$ENVLEADS_KAFKA_BOOTSTRAP`` then ``127.0.0.1:9092``.
        with_bootstrap: False for a command that defines ``--bootstrap-servers`` itself (``demo``:
            no value there means "start the embedded broker") and needs only the security flags.
    """
    group = parser.add_argument_group("Kafka connection")
    if with_bootstrap:
        group.add_argument(
            "--bootstrap-servers",
            default=bootstrap_default or os.environ.get(BOOTSTRAP_ENV_VAR, DEFAULT_BOOTSTRAP_SERVERS),
            help="comma-separated host:port list (default: $%s or %s)" % (BOOTSTRAP_ENV_VAR, DEFAULT_BOOTSTRAP_SERVERS),
        )
    group.add_argument(
        "--security-protocol", default="PLAINTEXT", choices=SECURITY_PROTOCOLS, type=str.upper,
        help="Kafka security protocol (default PLAINTEXT)",
    )
    group.add_argument(
        "--sasl-mechanism", default=None, choices=SASL_MECHANISMS, type=str.upper,
        help="SASL mechanism for SASL_* protocols (default PLAIN)",
    )
    group.add_argument("--sasl-username", default=None, help="SASL user name")
    password = group.add_mutually_exclusive_group()
    password.add_argument(
        "--sasl-password-env", default=None, metavar="VAR",
        help="name of the environment variable holding the SASL password (never the password itself)",
    )
    password.add_argument(
        "--sasl-password-file", default=None, metavar="PATH",
        help="file whose content is the SASL password",
    )
    # A literal password flag is refused by name: without it, argparse would call
    # --sasl-password=VALUE an ambiguous abbreviation and print VALUE in its error message.
    group.add_argument("--sasl-password", action=_RefuseLiteralPassword, default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
    group.add_argument("--ssl-cafile", default=None, help="CA bundle (PEM) to verify the brokers")
    group.add_argument("--ssl-certfile", default=None, help="client certificate (PEM) for mutual TLS")
    group.add_argument("--ssl-keyfile", default=None, help="client private key (PEM) for mutual TLS")
    group.add_argument(
        "--no-ssl-check-hostname", dest="ssl_check_hostname", action="store_false", default=True,
        help="do not check the broker certificate's host name (self-signed test clusters only)",
    )


def security_from_args(args: argparse.Namespace) -> KafkaSecurity:
    """Builds a :class:`KafkaSecurity` from the flags added by :func:`add_kafka_arguments`."""
    try:
        return KafkaSecurity(
            security_protocol=args.security_protocol,
            sasl_mechanism=args.sasl_mechanism,
            sasl_username=args.sasl_username,
            sasl_password_env=args.sasl_password_env,
            sasl_password_file=args.sasl_password_file,
            ssl_cafile=args.ssl_cafile,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            ssl_check_hostname=args.ssl_check_hostname,
        )
    except KafkaConfigError as error:
        raise SystemExit(f"envleads: Kafka configuration: {error}") from None


def security_kwargs(security: Optional[KafkaSecurity]) -> Dict[str, Any]:
    """The kafka-python keyword arguments for ``security`` alone (reads the password)."""
    security = security or PLAINTEXT
    kwargs: Dict[str, Any] = {"security_protocol": security.security_protocol}
    if security.uses_ssl:
        kwargs["ssl_check_hostname"] = security.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(security, name):
                kwargs[name] = getattr(security, name)
    if security.uses_sasl:
        # kafka-python uses the sasl_plain_* names for SCRAM as well.
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = security.password()
    return kwargs


def client_kwargs(
    bootstrap_servers: str,
    security: Optional[KafkaSecurity] = None,
    role: str = "producer",
    **overrides: Any,
) -> Dict[str, Any]:
    """kafka-python keyword arguments for a producer, consumer or admin client.

    The result contains the password in clear (kafka-python needs it): pass it straight to the
    client constructor and never log it.

    Args:
        bootstrap_servers: comma-separated ``host:port`` list.
        security: how to connect; ``None`` means PLAINTEXT.
        role: ``"producer"``, ``"consumer"`` or ``"admin"``; selects role-specific defaults.
        **overrides: any kafka-python setting, applied last (e.g. ``group_id``, ``linger_ms``).
    """
    if role not in ROLES:
        raise KafkaConfigError(f"role must be one of {ROLES}, got {role!r}")
    kwargs: Dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in bootstrap_servers.split(",") if s.strip()],
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "retry_backoff_ms": PRODUCER_RETRY_BACKOFF_MS,
        "reconnect_backoff_max_ms": 5_000,
    }
    kwargs.update(security_kwargs(security))
    if role == "producer":
        kwargs.update(
            acks="all",
            linger_ms=PRODUCER_LINGER_MS,
            delivery_timeout_ms=PRODUCER_DELIVERY_TIMEOUT_MS,
        )
    elif role == "consumer":
        kwargs.update(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=CONSUMER_MAX_POLL_INTERVAL_MS,
            session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
        )
    kwargs.update(overrides)
    return kwargs


def librdkafka_config(bootstrap_servers: str, security: Optional[KafkaSecurity] = None,
                      role: str = "producer", **overrides: Any) -> Dict[str, Any]:
    """The same settings as :func:`client_kwargs`, for a confluent-kafka (librdkafka) client.

    The producer partitions keys with ``murmur2_random``, the partitioner of kafka-python and the
    Java client, so a lead key lands in the same partition whichever client wrote it (librdkafka's
    own default would split a compacted key's versions across partitions). Like
    :func:`client_kwargs`, the result holds the SASL password in clear: never log it.
    """
    if role not in ROLES:
        raise KafkaConfigError(f"role must be one of {ROLES}, got {role!r}")
    security = security or PLAINTEXT
    config: Dict[str, Any] = {
        "bootstrap.servers": ",".join(s.strip() for s in bootstrap_servers.split(",") if s.strip()),
        "security.protocol": security.security_protocol,
        "socket.timeout.ms": REQUEST_TIMEOUT_MS,
        "reconnect.backoff.max.ms": 5_000,
        "retry.backoff.ms": PRODUCER_RETRY_BACKOFF_MS,
    }
    if security.uses_ssl:
        for ours, theirs in (("ssl_cafile", "ssl.ca.location"), ("ssl_certfile", "ssl.certificate.location"),
                             ("ssl_keyfile", "ssl.key.location")):
            if getattr(security, ours):
                config[theirs] = getattr(security, ours)
        config["ssl.endpoint.identification.algorithm"] = "https" if security.ssl_check_hostname else "none"
    if security.uses_sasl:
        config.update({"sasl.mechanisms": security.sasl_mechanism, "sasl.username": security.sasl_username,
                       "sasl.password": security.password()})
    if role == "producer":
        config.update({"acks": "all", "linger.ms": PRODUCER_LINGER_MS, "partitioner": "murmur2_random",
                       "message.timeout.ms": PRODUCER_DELIVERY_TIMEOUT_MS})
    elif role == "consumer":
        config.update({"enable.auto.commit": False, "enable.auto.offset.store": False,
                       "auto.offset.reset": "earliest", "max.poll.interval.ms": CONSUMER_MAX_POLL_INTERVAL_MS,
                       "session.timeout.ms": CONSUMER_SESSION_TIMEOUT_MS,
                       "heartbeat.interval.ms": CONSUMER_HEARTBEAT_INTERVAL_MS})
    config.update(overrides)
    return config
