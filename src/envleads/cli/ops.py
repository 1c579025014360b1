"""``envleads broker`` and ``envleads status``, and ``python -m envleads.ops.apache_kafka``: the
brokers in the foreground, and how far behind the stream is.

The work is in :mod:`envleads.ops.broker`, :mod:`envleads.ops.status` and
:mod:`envleads.ops.apache_kafka`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import List, Optional

from envleads.cli.arguments import ALL_TOPICS, add_command


# ------------------------------------------------------------------------------------------ broker
def _until_exit(broker, exited: str) -> int:
    """Waits while a broker in the foreground runs; when it exits by itself (not on Ctrl-C), prints
    ``exited`` with the tail of its log and returns exit code 1."""
    while broker.is_running():
        time.sleep(0.5)
    print(f"{exited}; log tail:\n{broker.log_tail()}", file=sys.stderr)
    return 1


def run_broker(args: argparse.Namespace) -> int:
    """Runs the broker until Ctrl-C or SIGTERM; returns the exit code."""
    from envleads.ops.broker import BrokerStartError, EmbeddedBroker

    def _terminate(signum, _frame):
        raise KeyboardInterrupt

    # SIGINT too: shells start background jobs with SIGINT ignored, which Python inherits.
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    broker = EmbeddedBroker(
        port=args.port or None,
        storage_engine=args.storage_engine,
        topics=args.topics,
        partitions=args.partitions,
    )
    try:
        try:
            broker.start()
        except BrokerStartError as error:
            print(f"envleads broker: {error}", file=sys.stderr)
            return 1
        print(f"bootstrap servers: {broker.bootstrap_servers}", flush=True)
        print(f"topics: {', '.join(args.topics) or '(none)'}", flush=True)
        print(f"broker pid: {broker.pid}", flush=True)
        print("Ctrl-C to stop", flush=True)
        return _until_exit(broker, "envleads broker: Tansu exited")
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _add_broker(subparsers) -> None:
    from envleads.config import DEFAULT_TOPICS
    from envleads.ops.broker import DEFAULT_STORAGE_ENGINE

    parser = add_command(
        subparsers, "broker", run_broker,
        "run the embedded Kafka-compatible broker (Tansu, in memory) in the foreground",
        description="Runs Tansu on 127.0.0.1, creates the envleads topics and waits for Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=9092, help="listener port (0 = any free port)")
    parser.add_argument(
        "--topics", nargs="*", default=list(DEFAULT_TOPICS.values()),
        help="topics to create (default: %(default)s)",
    )
    parser.add_argument("--partitions", type=int, default=1, help="partitions per topic")
    parser.add_argument(
        "--storage-engine", default=DEFAULT_STORAGE_ENGINE,
        help="Tansu storage URL; this build supports memory:// only",
    )


# ------------------------------------------------------------------------------------------ status
def _run_status(args: argparse.Namespace) -> int:
    from envleads.ops.kafka_config import security_from_args
    from envleads.ops.status import topic_status

    topics = [args.raw_topic, args.enriched_topic, args.leads_topic, args.dead_letter_topic]
    report = topic_status(args.bootstrap_servers, topics, args.group_id, security_from_args(args), args.scan)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for topic, info in report.items():
        if not info["exists"]:
            print(f"{topic}: missing")
            continue
        for partition, row in info["partitions"].items():
            scanned = f" scanned={row['records_scanned']}" if "records_scanned" in row else ""
            lag = "" if row["committed"] is None else f" committed={row['committed']} lag>={row['lag']}"
            print(f"{topic}[{partition}]: offsets {row['begin']}..{row['end']}{scanned}{lag}")
    return 0


def _add_status(subparsers) -> None:
    from envleads.config import DEFAULT_STREAM_GROUP

    parser = add_command(subparsers, "status", _run_status, "consumer lag and topic offsets from the broker",
                         topics=ALL_TOPICS)
    parser.add_argument("--group-id", default=DEFAULT_STREAM_GROUP, help="the stream's consumer group")
    parser.add_argument("--scan", action="store_true", help="count records by reading (exact, slow)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers) -> None:
    """Adds ``broker`` and ``status``."""
    _add_broker(subparsers)
    _add_status(subparsers)


# ------------------------------------------------------------------- python -m envleads.ops.apache_kafka
def apache_kafka_main(argv: Optional[List[str]] = None) -> int:
    """Runs one Apache Kafka broker in the foreground (``python -m envleads.ops.apache_kafka``)."""
    from envleads.ops.apache_kafka import ApacheKafkaBroker
    from envleads.ops.broker import BrokerStartError

    parser = argparse.ArgumentParser(prog="python -m envleads.ops.apache_kafka",
                                     description="Runs Apache Kafka (single-node KRaft) until Ctrl-C.")
    parser.add_argument("--dir", default=None, help="its folder (kept: a second run restarts on its data); "
                                                    "default a temporary one, removed at exit")
    parser.add_argument("--tls", action="store_true", help="add SSL listeners (CA in DIR/tls/ca.pem)")
    parser.add_argument("--scram-user", default=None, help="a SCRAM user; password from $ENVLEADS_KAFKA_PASSWORD")
    args = parser.parse_args(argv)
    users = {}
    if args.scram_user:
        if not os.environ.get("ENVLEADS_KAFKA_PASSWORD"):
            parser.error("--scram-user needs $ENVLEADS_KAFKA_PASSWORD")
        users[args.scram_user] = os.environ["ENVLEADS_KAFKA_PASSWORD"]
    broker = ApacheKafkaBroker(directory=args.dir, scram_users=users, tls=args.tls)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        broker.start()
        for protocol in broker.protocols:
            print(f"{protocol}: {broker.bootstrap(protocol)}", flush=True)
        if broker.ca_file:
            print(f"CA: {broker.ca_file}", flush=True)
        print(f"log: {broker.log_path}; started in {broker.start_seconds:.1f} s; Ctrl-C to stop", flush=True)
        return _until_exit(broker, "Apache Kafka exited")
    except BrokerStartError as error:
        print(f"apache kafka: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.close()
