"""``envleads stream``: continuous operation over Kafka as bounded rounds (the command line).

The rounds engine is the package :mod:`envleads.pipelines.rounds` (its docstring says how a round
runs): :func:`~envleads.pipelines.rounds.loop.run_stream` runs the rounds until interrupted. This
module registers the command and produces complaint lines to the raw topic (``produce_lines``, for
the demo, the generator and the tests).
"""
from __future__ import annotations

import argparse
import json
from typing import Iterable, List

from envleads import schemas
from envleads.pipelines.options import DEFAULT_ROUND_BYTES
from envleads.pipelines.rounds.loop import DEFAULT_GROUP, run_stream
from envleads.pipelines.rounds.outputs import Topics
from envleads.pipelines.rounds.pools import DEFAULT_WORKER_CITY_SHARE
from envleads.pipelines.rounds.session import KAFKA_CLIENTS


def raw_event_bytes(line: bytes) -> bytes:
    """A JSON complaint line as the Avro event an intake system would produce; a line that is not a
    valid complaint (the generator's malformed ones) is produced as it is, and must dead-letter."""
    try:
        document = json.loads(line.decode("utf-8"))
        return schemas.encode(schemas.RAW, document)
    except Exception:  # noqa: BLE001 - anything not encodable is sent raw on purpose
        return line


def produce_lines(bootstrap_servers: str, topic: str, lines: Iterable[bytes], security=None) -> int:
    """Produces complaint lines to the raw topic as Avro events, keyed by nothing (round-robin)."""
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    producer = KafkaProducer(**client_kwargs(bootstrap_servers, security, role="producer"))
    futures = [producer.send(topic, value=raw_event_bytes(line)) for line in lines]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()
    return len(futures)


def _run_command(args: argparse.Namespace, beam_args: List[str]) -> int:
    from envleads.ops.kafka_config import security_from_args

    import signal

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    topics = Topics(args.raw_topic, args.enriched_topic, args.leads_topic, args.dead_letter_topic)
    totals = run_stream(args.bootstrap_servers, topics, beam_args, group_id=args.group_id,
                        max_round_events=args.max_round_events, stop_when_idle_s=args.stop_when_idle,
                        security=security_from_args(args), round_wait_s=args.round_wait,
                        enrich_workers=args.enrich_workers, kafka_client=args.kafka_client,
                        unplaced_worker=args.unplaced_worker, worker_city_share=args.worker_city_share,
                        wait_for_fence=args.wait_for_fence, max_round_bytes=args.round_bytes)
    print(json.dumps(totals))
    return 130 if totals.get("interrupted") else 0


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-topic", default="complaints.raw", help="topic of raw complaint events")
    parser.add_argument("--enriched-topic", default="complaints.enriched", help="topic of enriched complaints")
    parser.add_argument("--leads-topic", default="leads", help="compacted topic of leads, keyed by lead_id")
    parser.add_argument("--dead-letter-topic", default="complaints.deadletter", help="topic of dead letters")


def add_subcommand(subparsers) -> None:
    from envleads.ops.kafka_config import add_kafka_arguments

    parser = subparsers.add_parser(
        "stream", help="process complaints from Kafka continuously (bounded rounds)",
        description="Reads complaints.raw from the committed offsets, writes enriched complaints, "
                    "leads and dead letters. Unknown flags go to Beam.")
    add_kafka_arguments(parser)
    add_topic_arguments(parser)
    parser.add_argument("--group-id", default=DEFAULT_GROUP, help="consumer group whose offsets record progress")
    parser.add_argument("--max-round-events", type=int, default=2000, help="events per round at most")
    parser.add_argument("--round-bytes", type=int, default=DEFAULT_ROUND_BYTES,
                        help=f"event bytes per round at most (default {DEFAULT_ROUND_BYTES:,}: bounds a round's memory)")
    parser.add_argument("--round-wait", type=float, default=0.25,
                        help="seconds a round waits for more events after its first one (bounds latency)")
    parser.add_argument("--enrich-workers", type=int, default=1,
                        help="processes running the stateless stages, overlapping the keyed stages "
                             "of the previous round (0: all in one process)")
    parser.add_argument("--unplaced-worker", action=argparse.BooleanOptionalAction, default=True,
                        help="assign the complaints of every blocking key (repeat detection) in a process of their "
                             "own, beside this one (default on; --no-unplaced-worker: in the stream process)")
    parser.add_argument("--worker-city-share", type=float, default=DEFAULT_WORKER_CITY_SHARE,
                        help="no longer used: the worker assigns every key, since complaints of no known city "
                             "search the city keys of their province")
    parser.add_argument("--stop-when-idle", type=float, default=None,
                        help="stop after this many seconds without new events (default: run until Ctrl-C)")
    parser.add_argument("--wait-for-fence", action="store_true",
                        help="wait while another envleads stream of the same raw topic and group holds the writer "
                             "fence (default: refuse to start, exit status 2)")
    parser.add_argument("--kafka-client", choices=KAFKA_CLIENTS, default="auto",
                        help="client of the raw consumer and the output producer: native (confluent-kafka, "
                             "librdkafka: a tenth of the CPU per record), python (kafka-python); auto (default): "
                             "native when installed")
    parser.set_defaults(func=_run_command, accepts_pipeline_args=True)
