"""``envleads batch``, ``stream``, ``replay``, ``demo`` and ``generate``: the commands that run the
pipeline or feed it.

The work is in :mod:`envleads.pipelines.batch`, :mod:`envleads.pipelines.rounds` (through
:func:`~envleads.pipelines.rounds.loop.run_stream`), :mod:`envleads.pipelines.replay`,
:mod:`envleads.demo` and :mod:`envleads.generate_dataset`; they are imported when a command runs.
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import List

from envleads.cli.arguments import ALL_TOPICS, add_command
from envleads.config import (DEFAULT_BEAM_GROUP, DEFAULT_ROUND_BYTES, DEFAULT_STREAM_GROUP, KAFKA_CLIENTS,
                             OperatorError)

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- batch
def _run_batch(args: argparse.Namespace, beam_args: List[str]) -> int:
    from envleads.pipelines.batch import run_batch, run_batch_rounds

    if args.engine == "rounds":
        counts = run_batch_rounds(args.input, args.output, args.leads, args.dead_letter, beam_args,
                                  round_events=args.round_events, enrich_workers=args.enrich_workers,
                                  round_bytes=args.round_bytes)
    else:
        counts = run_batch(args.input, args.output, args.leads, args.dead_letter, beam_args)
    print(json.dumps(counts))
    return 0


def _add_batch(subparsers) -> None:
    parser = add_command(
        subparsers, "batch", _run_batch, "run the whole pipeline over a JSON Lines file (the batch contract)",
        description="Enriches complaints from a JSON Lines file; unknown flags go to Beam "
                    "(e.g. --runner, --direct_num_workers, --model_version).", pipeline_args=True)
    parser.add_argument("--input", required=True, help="JSON Lines file of complaint events")
    parser.add_argument("--output", required=True, help="enriched JSON Lines output, one line per valid input")
    parser.add_argument("--leads", default=None, help="also write the ranked leads (JSON Lines) here")
    parser.add_argument("--dead-letter", default=None,
                        help="dead-letter file (default: <output stem>.deadletter.jsonl)")
    parser.add_argument("--engine", choices=("beam", "rounds"), default="beam",
                        help="beam (default): one Beam pipeline, everything grouped in memory on the local "
                             "runner (files up to ~100,000 complaints); rounds: the stream engine over the file in "
                             "event-time order, bounded memory (a year of complaints on one machine)")
    parser.add_argument("--round-events", type=int, default=5000, help="rounds engine: complaints per round")
    parser.add_argument("--round-bytes", type=int, default=DEFAULT_ROUND_BYTES,
                        help="rounds engine: input bytes per round at most (default 8 MiB: a round of events "
                             "at the field limits stays near 1.3 GB)")
    parser.add_argument("--enrich-workers", type=int, default=1,
                        help="rounds engine: processes for the stateless stages (0: in this process)")


# ------------------------------------------------------------------------------------------ stream
def _topics(args: argparse.Namespace):
    from envleads.pipelines.rounds.outputs import Topics

    return Topics(args.raw_topic, args.enriched_topic, args.leads_topic, args.dead_letter_topic)


def _run_stream(args: argparse.Namespace, beam_args: List[str]) -> int:
    import signal

    from envleads.ops.kafka_config import security_from_args
    from envleads.pipelines.rounds.loop import run_stream

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    if args.engine == "beam":
        return _run_beam_stream(args, beam_args)
    if args.until_end:
        raise OperatorError("--until-end is for --engine beam; the rounds engine stops with --stop-when-idle")
    if args.worker_city_share is not None:
        LOG.warning("--worker-city-share has no effect (every key is assigned in the keyed worker) and will be removed")
    totals = run_stream(args.bootstrap_servers, _topics(args), beam_args, group_id=args.group_id or DEFAULT_STREAM_GROUP,
                        max_round_events=args.max_round_events, stop_when_idle_s=args.stop_when_idle,
                        security=security_from_args(args), round_wait_s=args.round_wait,
                        enrich_workers=args.enrich_workers, kafka_client=args.kafka_client,
                        unplaced_worker=args.unplaced_worker,
                        wait_for_fence=args.wait_for_fence, max_round_bytes=args.round_bytes)
    print(json.dumps(totals))
    return 130 if totals.get("interrupted") else 0


def _run_beam_stream(args: argparse.Namespace, beam_args: List[str]) -> int:
    from envleads.ops.kafka_config import security_from_args
    from envleads.pipelines.beam_stream import PrismMissing, run_beam_stream

    if args.stop_when_idle is not None:
        raise OperatorError("--stop-when-idle is for the rounds engine; the Beam job stops with --until-end")
    try:
        totals = run_beam_stream(args.bootstrap_servers, _topics(args), beam_args,
                                 group_id=args.group_id or DEFAULT_BEAM_GROUP, bounded=args.until_end,
                                 security=security_from_args(args))
    except PrismMissing as error:
        raise OperatorError(str(error)) from None
    except KeyboardInterrupt:
        return 130
    print(json.dumps(totals))
    return 0


def _add_stream(subparsers) -> None:
    parser = add_command(
        subparsers, "stream", _run_stream, "process complaints from Kafka continuously (bounded rounds)",
        description="Reads complaints.raw from the committed offsets, writes enriched complaints, "
                    "leads and dead letters. Unknown flags go to Beam.", topics=ALL_TOPICS, pipeline_args=True)
    parser.add_argument("--engine", choices=["rounds", "beam"], default="rounds",
                        help="rounds (default): bounded rounds in this process, the fastest on one machine; beam: "
                             "the Beam streaming job (ReadFromKafka, keyed state and timers) on the runner the "
                             "Beam flags name, e.g. --runner PrismRunner (the binary make prism built)")
    parser.add_argument("--until-end", action="store_true",
                        help="--engine beam: read the raw topic up to its end at start, then finish and commit "
                             "(default: run until Ctrl-C, committing each record once its outputs are written)")
    parser.add_argument("--group-id", default=None,
                        help=f"consumer group whose offsets record progress (default {DEFAULT_STREAM_GROUP}; "
                             f"with --engine beam {DEFAULT_BEAM_GROUP})")
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
    # accepted so that deployments that pass it keep starting; it has had no effect since every key
    # is assigned in the keyed worker (complaints of no known city search the city keys)
    parser.add_argument("--worker-city-share", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stop-when-idle", type=float, default=None,
                        help="stop after this many seconds without new events (default: run until Ctrl-C)")
    parser.add_argument("--wait-for-fence", action="store_true",
                        help="wait while another envleads stream of the same raw topic and group holds the writer "
                             "fence (default: refuse to start, exit status 2)")
    parser.add_argument("--kafka-client", choices=KAFKA_CLIENTS, default="auto",
                        help="client of the raw consumer and the output producer: native (confluent-kafka, "
                             "librdkafka: a tenth of the CPU per record), python (kafka-python); auto (default): "
                             "native when installed")


# ------------------------------------------------------------------------------------------ replay
def _run_replay(args: argparse.Namespace, beam_args: List[str]) -> int:
    from envleads.ops.kafka_config import security_from_args
    from envleads.pipelines.replay import events_from_file, events_from_topic, parse_time_ms, replay

    security = security_from_args(args)
    topics = _topics(args)
    if args.file:
        if any(v is not None for v in (args.from_offset, args.to_offset, args.from_time, args.to_time)):
            raise SystemExit("envleads replay: --file replays the whole file; offset and time ranges are for the topic")
        events = events_from_file(args.file)
    else:
        if all(v is None for v in (args.from_offset, args.to_offset, args.from_time, args.to_time)):
            raise SystemExit("envleads replay: give --file, or a range of the raw topic "
                             "(--from-offset/--to-offset and/or --from-time/--to-time)")
        events = events_from_topic(
            args.bootstrap_servers, topics.raw, security, from_offset=args.from_offset, to_offset=args.to_offset,
            from_ms=parse_time_ms(args.from_time) if args.from_time else None,
            to_ms=parse_time_ms(args.to_time) if args.to_time else None, partitions=args.partition)
    totals = replay(args.bootstrap_servers, topics, events, beam_args, security, args.max_round_events,
                    group_id=args.group_id, wait_for_fence=args.wait_for_fence)
    print(json.dumps(totals))
    return 0


def _add_replay(subparsers) -> None:
    parser = add_command(
        subparsers, "replay", _run_replay,
        "re-process a range of complaints.raw (or a file archive) into the same topics",
        description="Runs past complaints through the stream's stages with the lead topic as prior state and "
                    "writes to the same topics: leads are updated, never duplicated (stable keys); enriched "
                    "records and dead letters may repeat. Does not touch the stream's committed offsets. "
                    "Unknown flags go to Beam (options such as --model_version).", topics=ALL_TOPICS,
        pipeline_args=True)
    parser.add_argument("--file", default=None,
                        help="replay this archive instead of the topic: JSON lines (batch input format) or .avro "
                             "(container of raw_complaint records)")
    parser.add_argument("--from-offset", type=int, default=None, help="first offset (per partition, inclusive)")
    parser.add_argument("--to-offset", type=int, default=None, help="end offset (per partition, exclusive)")
    parser.add_argument("--from-time", default=None,
                        help="first record time, ISO-8601 (China Standard Time if no offset) or epoch ms (inclusive)")
    parser.add_argument("--to-time", default=None, help="end record time (exclusive), as --from-time")
    parser.add_argument("--partition", type=int, action="append", default=None,
                        help="replay only this partition (repeatable; default: all)")
    parser.add_argument("--max-round-events", type=int, default=2000, help="events per round at most")
    parser.add_argument("--group-id", default=DEFAULT_STREAM_GROUP,
                        help="the stream's consumer group: the replay takes its writer fence (refuses while that "
                             "stream runs)")
    parser.add_argument("--wait-for-fence", action="store_true",
                        help="wait for the group's writer fence instead of refusing to start")


# -------------------------------------------------------------------------------------------- demo
def _run_demo(args: argparse.Namespace, beam_args: List[str]) -> int:
    from envleads.demo import run_demo
    from envleads.ops.kafka_config import security_from_args

    security = security_from_args(args) if args.bootstrap_servers else None
    run_demo(args.count, args.seed, args.bootstrap_servers, beam_args, security)
    return 0


def _add_demo(subparsers) -> None:
    from envleads.ops.kafka_config import add_kafka_arguments

    parser = add_command(subparsers, "demo", _run_demo,
                         "run the whole path on an embedded Kafka broker and print the top leads", pipeline_args=True)
    parser.add_argument("--count", type=int, default=1500, help="generated complaints to feed")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="use this Kafka cluster instead of starting the embedded broker")
    add_kafka_arguments(parser, with_bootstrap=False)  # security options for --bootstrap-servers


# ---------------------------------------------------------------------------------------- generate
def _run_generate(args: argparse.Namespace) -> int:
    from envleads.generate_dataset import format_summary, write_dataset

    summary = write_dataset(args.count, args.seed, args.output, args.truth)
    print(format_summary(summary))
    print(f"wrote {summary['output']} and {summary['truth']}")
    if args.topic:
        from envleads.ops.kafka_config import security_from_args
        from envleads.pipelines.kafka_edge.write import produce_lines

        with open(args.output, "rb") as handle:
            produced = produce_lines(args.bootstrap_servers, args.topic, (line.rstrip(b"\n") for line in handle),
                                     security=security_from_args(args))
        print(f"produced {produced} events to {args.topic} at {args.bootstrap_servers} (Avro; malformed ones as raw bytes)")
    return 0


def _add_generate(subparsers) -> None:
    from envleads.ops.kafka_config import add_kafka_arguments

    parser = add_command(subparsers, "generate", _run_generate,
                         "write realistic synthetic complaint events with ground truth",
                         description="Write realistic synthetic complaint events with ground truth.")
    parser.add_argument("--count", type=int, default=1000, help="number of events (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed and count give same bytes")
    parser.add_argument("--output", default="complaints.jsonl", help="events file (JSON Lines)")
    parser.add_argument("--truth", default=None, help="truth file (default: <output stem>.truth.jsonl)")
    parser.add_argument("--topic", default=None, help="also produce the events to this Kafka topic")
    add_kafka_arguments(parser)  # the cluster and its security options, for --topic


def register(subparsers) -> None:
    """Adds ``batch``, ``stream``, ``replay``, ``demo`` and ``generate``."""
    for add in (_add_batch, _add_stream, _add_replay, _add_demo, _add_generate):
        add(subparsers)
