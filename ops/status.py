"""``envleads status``: how far behind the stream is, and what the topics hold.

Offsets come from the broker (``beginning_offsets``/``end_offsets``) and the stream's consumer
group (committed offsets). The embedded Tansu broker reports the end offset of the last record
*batch*, not of the last record, so on it lag and counts are lower bounds (``--scan`` counts by
reading, exactly but slowly).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Dict, List, Optional


def topic_status(bootstrap_servers: str, topics: List[str], group_id: Optional[str], security=None,
                 scan: bool = False) -> Dict[str, Dict]:
    """Per topic and partition: first and end offset, records (scanned if asked), committed and lag."""
    from kafka import KafkaConsumer, TopicPartition

    from envleads.ops.kafka_config import client_kwargs

    kwargs = client_kwargs(bootstrap_servers, security, role="consumer")
    kwargs.update(group_id=group_id, enable_auto_commit=False)
    consumer = KafkaConsumer(**kwargs)
    report: Dict[str, Dict] = {}
    try:
        for topic in topics:
            partitions = sorted(consumer.partitions_for_topic(topic) or [])
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                report[topic] = {"exists": False}
                continue
            begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            rows = {}
            for tp in tps:
                committed = consumer.committed(tp) if group_id else None
                rows[tp.partition] = {"begin": begin[tp], "end": end[tp], "committed": committed,
                                      "lag": None if committed is None else max(0, end[tp] - committed)}
            if scan:
                counts = _scan_counts(bootstrap_servers, topic, security)
                for partition, row in rows.items():
                    row["records_scanned"] = counts.get(partition, 0)
            report[topic] = {"exists": True, "partitions": rows}
    finally:
        consumer.close()
    return report


def _scan_counts(bootstrap_servers: str, topic: str, security, idle_s: float = 1.5) -> Dict[int, int]:
    """Records per partition, counted by reading the whole topic (exact, unlike the offsets)."""
    from envleads.pipelines.kafka_io import read_whole_topic

    counts: Counter = Counter()
    read_whole_topic(bootstrap_servers, topic, lambda records: counts.update(r.partition for r in records),
                     security, idle_s)
    return dict(counts)


def _run_command(args: argparse.Namespace) -> int:
    from envleads.ops.kafka_config import security_from_args

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


def add_subcommand(subparsers) -> None:
    from envleads.ops.kafka_config import add_kafka_arguments
    from envleads.pipelines.rounds.loop import DEFAULT_GROUP
    from envleads.pipelines.stream import add_topic_arguments

    parser = subparsers.add_parser("status", help="consumer lag and topic offsets from the broker")
    add_kafka_arguments(parser)
    add_topic_arguments(parser)
    parser.add_argument("--group-id", default=DEFAULT_GROUP, help="the stream's consumer group")
    parser.add_argument("--scan", action="store_true", help="count records by reading (exact, slow)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_run_command)
