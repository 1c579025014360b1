"""Reading a whole topic in tests: the embedded broker under-reports end offsets, so scan until idle."""
import time


def scan_topic(bootstrap_servers: str, topic: str, idle_s: float = 2.0, security=None) -> list:
    """Every record of ``topic``, in poll order (offset order within a partition); ``security``: the
    project's ``KafkaSecurity`` (None: PLAINTEXT)."""
    from envleads.pipelines.kafka_edge.read import open_consumer

    consumer = open_consumer(bootstrap_servers, topic, group_id=None, security=security)
    records, deadline = [], time.monotonic() + idle_s
    while time.monotonic() < deadline:
        for partition_records in consumer.poll(timeout_ms=200).values():
            records.extend(partition_records)
            deadline = time.monotonic() + idle_s
    consumer.close()
    return records
