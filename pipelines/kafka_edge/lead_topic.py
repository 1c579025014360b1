"""Reading the lead topic: the one decoder of its records (:func:`lead_changes`) and the compacted
view built from them (:class:`LeadView`, :func:`read_leads`, :func:`read_lead_topic`). The stream's
lead store and the Beam job read it at start; the demo, ``tail``, ``export`` and the dashboard read
it to show leads.

Delivery: the topic is compacted and keyed by ``lead_id``, so the last record per key is the lead
(a tombstone, a null value, withdraws it). A reader sees every version written, at least once; the
view keeps the last. An unreadable record is skipped and logged with its coordinates only: one bad
record must not stop a view, the stream's start or the feed.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional

from envleads import schemas
from envleads.leads import lead_from_avro_dict
from envleads.pipelines.kafka_edge.read import open_consumer, read_whole_topic
from envleads.records import Lead

LOG = logging.getLogger(__name__)


class LeadChange(NamedTuple):
    """One record of the lead topic: ``lead`` is None for a tombstone (``value`` None) and for an
    unreadable record (``value`` kept)."""

    key: Optional[str]
    lead: Optional[Lead]
    value: Optional[bytes]

    @property
    def tombstone(self) -> bool:
        return self.value is None


def lead_changes(records: Iterable) -> Iterator[LeadChange]:
    """The lead-topic records (kafka-python ``ConsumerRecord``) as :class:`LeadChange`, in order."""
    for record in records:
        key = record.key.decode("utf-8") if record.key else None
        if record.value is None:
            yield LeadChange(key, None, None)
            continue
        try:
            lead = lead_from_avro_dict(schemas.decode(schemas.LEADS, record.value))
        except Exception:  # noqa: BLE001 - any decoding failure means "unreadable"
            LOG.warning("skipped an unreadable lead record at %s/%d@%d", record.topic, record.partition, record.offset)
            lead = None
        yield LeadChange(key, lead, record.value)


def apply_changes(leads: Dict[str, Lead], changes: Iterable[LeadChange]) -> None:
    """Folds changes into a compacted view ``{lead_id: lead}`` (tombstones remove)."""
    for change in changes:
        if change.tombstone:
            leads.pop(change.key, None)
        elif change.lead is not None:
            leads[change.lead.lead_id] = change.lead


def read_lead_topic(bootstrap_servers: str, topic: str, handle: Callable[[List[LeadChange]], None],
                    security=None, idle_s: float = 1.0) -> int:
    """Reads the whole lead topic from its start until it is quiet for ``idle_s``, handing each
    poll's changes to ``handle`` in order; returns the records read."""
    return read_whole_topic(bootstrap_servers, topic, lambda records: handle(list(lead_changes(records))),
                            security, idle_s)


def read_leads(bootstrap_servers: str, topic: str, security=None, idle_s: float = 1.0) -> Dict[str, Lead]:
    """The compacted view of the whole lead topic, ``{lead_id: lead}``."""
    leads: Dict[str, Lead] = {}
    read_lead_topic(bootstrap_servers, topic, lambda changes: apply_changes(leads, changes), security, idle_s)
    return leads


class LeadView:
    """The compacted view of the lead topic, refreshed incrementally (the demo, ``export``, the
    dashboard)."""

    def __init__(self, bootstrap_servers: str, topic: str, security=None):
        self._consumer = open_consumer(bootstrap_servers, topic, group_id=None, security=security)
        self.leads: Dict[str, Lead] = {}

    def refresh(self, wait_s: float = 1.0) -> int:
        """Reads what arrived since the last refresh; returns the number of records read."""
        read = 0
        while True:
            batch = self._consumer.poll(timeout_ms=int(wait_s * 1000) if read == 0 else 300, max_records=5000)
            records = [record for partition_records in batch.values() for record in partition_records]
            if not records:
                return read
            read += len(records)
            apply_changes(self.leads, lead_changes(records))

    def close(self) -> None:
        self._consumer.close()
