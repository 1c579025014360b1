"""``envleads status``: how far behind the stream is, and what the topics hold.

Offsets come from the broker (``beginning_offsets``/``end_offsets``) and the stream's consumer
group (committed offsets). The embedded Tansu broker reports the end offset of the last record
*batch*, not of the last record, so on it lag and counts are lower bounds (``--scan`` counts by
reading, exactly but slowly).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional


def topic_status(bootstrap_servers: str, topics: List[str], group_id: Optional[str], security=None,
                 scan: bool = False) -> Dict[str, Dict]:
    """Per topic and partition: first and end offset, records (scanned if asked), committed and lag."""
    from kafka import TopicPartition

    from envleads.pipelines.kafka_edge.read import new_consumer

    consumer = new_consumer(bootstrap_servers, security, group_id)
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
    from envleads.pipelines.kafka_edge.read import read_whole_topic

    counts: Counter = Counter()
    read_whole_topic(bootstrap_servers, topic, lambda records: counts.update(r.partition for r in records),
                     security, idle_s)
    return dict(counts)
