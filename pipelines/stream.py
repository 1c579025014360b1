"""``envleads stream``: continuous operation over Kafka as bounded rounds.

Beam's local Python runners cannot emit from a grouping or stateful stage behind an unbounded
source, so on one machine the pipeline runs as short bounded rounds in one long-lived process
(:class:`LocalRoundEngine`): each round reads the raw events that arrived since the committed
offsets, runs the stages of :class:`ComplaintsToLeads` over them (the stateless stages' DoFns set
up once, optionally in ``enrich_workers`` processes that enrich round k+1 while this process runs
the keyed stages of round k; the matter indexes kept between rounds as the streaming form keeps
them in keyed state, the ``"unknown"`` key's and a share of the city keys' optionally in a process
of their own: :class:`KeyedAssigner`), writes enriched complaints, leads, dead letters and the
keyed state's changes to their topics, waits for the broker's acknowledgements, and only then
commits the offsets (at-least-once; lead keys are stable, so a re-processed event updates its lead
instead of adding one). At start, the lead topic and the state changelog are read into a
:class:`LeadStore` on local disk, from which each key's index is rebuilt exactly. A round closes
after ``max_round_events`` or ``round_wait_s`` after its first event, so latency stays bounded.
The same transforms run as one streaming job on runners that support it.

Broker loss: any Kafka error in a round (or a broker that lost the group's committed offsets, as
the in-memory embedded broker does on restart) closes the clients, drops in-memory matter state
and reconnects with exponential backoff (one WARNING per attempt); nothing is committed for a
round whose outputs were not acknowledged, so its events are read again.
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import fastavro
from fastavro.io.binary_encoder import BinaryEncoder
from apache_beam.pvalue import TaggedOutput

from envleads import schemas
from envleads.decode import content_digest
from envleads.failures import Raised, count_internal_errors, internal_error, raised, with_original
from envleads.leads import (MatterReport, block_of_complaint, block_of_lead, complaint_features, event_order,
                            lead_from_avro_dict, lead_id_for, lead_to_wire_record, matter_report, merge_lead, report_join,
                            scope_of_complaint, seed_index)
from envleads.pipelines.kafka_io import (TopicNotFound, commit_events, decode_lead_record, open_consumer,
                                         poll_new_events)
from envleads.pipelines.heap import RoundCollector
from envleads.pipelines.kafka_native import NativeKafkaError, NativeKafkaSession, OutputRecord, native_client_available
from envleads.pipelines.options import DEFAULT_ROUND_BYTES, StageSettings
from envleads.pipelines.transforms import (BUILD_LEADS_STAGE, DEDUPLICATE_STAGE, ENCODE_ENRICHED_STAGE,
                                           ENCODE_LEADS_STAGE, RawEvent, distinct_complaints, reused_id_dead_letter)
from envleads.records import DeadLetter, EnrichedComplaint, Lead
from envleads.repeats import UNKNOWN_BLOCK, KeyIndexes, MatterIndex, assign_unplaced, in_scope
from envleads.serialize import dead_letter_to_avro_dict, enriched_to_avro_dict

LOG = logging.getLogger(__name__)

DEFAULT_GROUP = "envleads-stream"


class Topics:
    """Topic names of one deployment (defaults match the embedded broker's)."""

    def __init__(self, raw: str = "complaints.raw", enriched: str = "complaints.enriched",
                 leads: str = "leads", dead_letter: str = "complaints.deadletter", state: Optional[str] = None):
        self.raw, self.enriched, self.leads, self.dead_letter = raw, enriched, leads, dead_letter
        # the keyed state's changelog (:class:`StateChanges`), beside the leads it belongs to
        self.state = state or f"{leads}.state"


def _encode_enriched(report) -> bytes:
    enriched = report.enriched
    if enriched.wire_parts is None:
        return schemas.encode(schemas.ENRICHED, enriched_to_avro_dict(enriched))
    head, tail = enriched.wire_parts
    buffer = io.BytesIO()
    buffer.write(head)
    encoder = BinaryEncoder(buffer)
    encoder.write_utf8(enriched.cluster_id)
    if enriched.duplicate_of is None:
        encoder.write_index(0, None)
    else:
        encoder.write_index(1, None)
        encoder.write_utf8(enriched.duplicate_of)
    buffer.write(tail)
    return buffer.getvalue()


# The enriched record's fields that only the repeat stage fills: an enrichment worker encodes the
# fields before and after them, and the keyed stage splices them in (a twentieth of its CPU was
# encoding the other twenty-odd fields, which the workers have to spare).
_REPEAT_FIELDS = ("cluster_id", "duplicate_of")


@functools.lru_cache(maxsize=None)
def _enriched_part_schemas():
    """The fields before and after the repeat stage's in the newest enriched schema, each as a
    record schema with its field names (Avro encodes a record as its fields one after another),
    and what each part's bytes start with (the frame, nothing)."""
    fields = schemas.schema_for(schemas.ENRICHED)["fields"]
    names = [field["name"] for field in fields]
    at = names.index(_REPEAT_FIELDS[0])
    if tuple(names[at:at + len(_REPEAT_FIELDS)]) != _REPEAT_FIELDS or \
            [field["type"] for field in fields[at:at + 2]] != ["string", ["null", "string"]]:
        return None  # a schema this splice does not know: records are encoded whole

    def part(name: str, part_fields):
        return (fastavro.parse_schema({"type": "record", "name": name, "fields": part_fields}),
                [field["name"] for field in part_fields])

    return (schemas.frame_header(schemas.ENRICHED), b""), \
        (part("EnrichedHead", fields[:at]), part("EnrichedTail", fields[at + len(_REPEAT_FIELDS):]))


def enriched_wire_parts(enriched: EnrichedComplaint) -> Optional[Tuple[bytes, bytes]]:
    """The framed Avro encoding of ``enriched`` before and after its repeat-stage fields (for
    :func:`_encode_enriched` to splice them in), or None when the schema does not allow it."""
    split = _enriched_part_schemas()
    if split is None:
        return None
    prefixes, parts = split
    record = enriched_to_avro_dict(enriched)
    encoded = []
    for prefix, (schema, names) in zip(prefixes, parts):
        buffer = io.BytesIO()
        buffer.write(prefix)
        fastavro.schemaless_writer(buffer, schema, {name: record[name] for name in names})
        encoded.append(buffer.getvalue())
    return encoded[0], encoded[1]


def _encode_lead(lead: Lead) -> bytes:
    return schemas.encode(schemas.LEADS, lead_to_wire_record(lead))


def _encode_dead_letter(dead: DeadLetter) -> bytes:
    return schemas.encode(schemas.DEAD_LETTER, dead_letter_to_avro_dict(dead, int(time.time() * 1000)))


# ---------------------------------------------------------------------------------- local state
class LeadStore:
    """The compacted lead view on local disk (SQLite): the last lead per ``lead_id``, by block.

    The matter index of a block is seeded from that block's in-window leads only, and a lead is
    decoded only when its matter appears in a round, so memory does not grow with the number of
    leads ever written (each carries a 256-slot signature). It is a cache of the lead topic:
    filled from the topic at start, then from the leads this process has written and the broker
    acknowledged; a temporary file removed by :meth:`close`.
    """

    def __init__(self, path: Optional[str] = None):
        import sqlite3

        self._tmpdir = None
        if path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="envleads-leadstore-")
            path = os.path.join(self._tmpdir, "leads.sqlite")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # a cache rebuilt from the topic at every start: no journal, no fsync
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS leads (lead_id TEXT PRIMARY KEY, block TEXT NOT NULL, "
                         "last_seen_ms INTEGER NOT NULL, value BLOB NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS leads_by_block ON leads (block, last_seen_ms)")
        # complaint id -> its lead: a replayed or redelivered complaint keeps its matter even when
        # the lead lives under another blocking key than the complaint (see ``known_leads``)
        self._db.execute("CREATE TABLE IF NOT EXISTS members (complaint_id TEXT PRIMARY KEY, lead_id TEXT NOT NULL)")
        # the keyed state's changelog (StateChanges): live matters per block, each block's restore
        # bookkeeping, and the content digest of every complaint id seen
        self._db.execute("CREATE TABLE IF NOT EXISTS matters (block TEXT NOT NULL, cluster_id TEXT NOT NULL, "
                         "row TEXT NOT NULL, PRIMARY KEY (block, cluster_id))")
        self._db.execute("CREATE TABLE IF NOT EXISTS blocks (block TEXT PRIMARY KEY, restored_since INTEGER NOT NULL, "
                         "newest_ms INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (complaint_id TEXT PRIMARY KEY, digest TEXT NOT NULL)")

    def put(self, rows: Iterable[Tuple[str, str, int, bytes]]) -> None:
        """``(lead_id, block, last_seen_ms, Avro value)`` rows; the last one per key wins."""
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO leads VALUES (?, ?, ?, ?)", rows)
        self._db.execute("COMMIT")

    def put_leads(self, encoded: Iterable[Tuple[Lead, bytes]]) -> None:
        encoded = list(encoded)
        self.put((lead.lead_id, block_of_lead(lead), int(lead.last_seen_ms), value) for lead, value in encoded)
        self.put_members(lead for lead, _ in encoded)

    def put_members(self, leads: Iterable[Lead]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO members VALUES (?, ?)",
                             ((cid, lead.lead_id) for lead in leads for cid in lead.complaint_ids))
        self._db.execute("COMMIT")

    def known_leads(self, complaint_ids: Sequence[str]) -> Dict[str, Lead]:
        """The current lead of each complaint id that already belongs to one."""
        found: Dict[str, Lead] = {}
        decoded: Dict[bytes, Lead] = {}
        for cid, value in self._rows_in("SELECT m.complaint_id, l.value FROM members m JOIN leads l "
                                        "ON l.lead_id = m.lead_id WHERE m.complaint_id", complaint_ids):
            lead = decoded.get(value) or decoded.setdefault(value, _decode_lead(value))
            if cid in lead.complaint_ids:
                found[cid] = lead
        return found

    def _rows_in(self, query: str, keys: Sequence[str]) -> Iterable[tuple]:
        """Rows of ``query`` (ending in the column compared) ``IN`` the distinct ``keys``, asked
        500 at a time (SQLite's limit on parameters is 999 in older builds)."""
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            yield from self._db.execute(f"{query} IN ({','.join('?' * len(chunk))})", chunk).fetchall()

    def put_state(self, changes: "StateChanges") -> None:
        """Applies a round's state changes (after the broker acknowledged them, as leads)."""
        self._db.execute("BEGIN")
        self._db.executemany("DELETE FROM matters WHERE block = ? AND cluster_id = ?",
                             [(block, cid) for block, cid, row in changes.matters if row is None])
        self._db.executemany("INSERT OR REPLACE INTO matters VALUES (?, ?, ?)",
                             [(block, cid, row) for block, cid, row in changes.matters if row is not None])
        self._db.executemany("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?)",
                             [(block, since, newest) for block, (since, newest) in changes.blocks])
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", changes.seen)
        self._db.execute("COMMIT")

    def saved_block(self, block: str) -> Optional[Tuple[int, int, List[list]]]:
        """A block's state as the last acknowledged round left it: ``(restored since, newest
        event ms, matter rows)``, or None when no round with the changelog on touched it."""
        found = self._db.execute("SELECT restored_since, newest_ms FROM blocks WHERE block = ?", (block,)).fetchone()
        if found is None:
            return None
        rows = [json.loads(row) for (row,) in self._db.execute("SELECT row FROM matters WHERE block = ?", (block,))]
        return int(found[0]), int(found[1]), rows

    def blocks(self) -> List[str]:
        """Every blocking key with a stored lead or saved state."""
        return [block for (block,) in self._db.execute("SELECT block FROM blocks UNION SELECT DISTINCT block FROM leads")]

    def seen_digests(self, complaint_ids: Sequence[str]) -> Dict[str, str]:
        """The content digest of each complaint id already processed."""
        return dict(self._rows_in("SELECT complaint_id, digest FROM seen WHERE complaint_id", complaint_ids))

    def delete(self, lead_ids: Iterable[str]) -> None:
        self._db.executemany("DELETE FROM leads WHERE lead_id = ?", [(i,) for i in lead_ids])

    def get_many(self, lead_ids: Sequence[str]) -> Dict[str, Lead]:
        """The stored lead of each id that has one (a query per 500 ids, not per id)."""
        return {lead_id: _decode_lead(value)
                for lead_id, value in self._rows_in("SELECT lead_id, value FROM leads WHERE lead_id", lead_ids)}

    def in_block(self, block: str, since_ms: int, before_ms: Optional[int] = None) -> List[Lead]:
        """The block's leads whose last report is at or after ``since_ms`` (and before ``before_ms``)."""
        if before_ms is None:
            rows = self._db.execute("SELECT value FROM leads WHERE block = ? AND last_seen_ms >= ?", (block, since_ms))
        else:
            rows = self._db.execute("SELECT value FROM leads WHERE block = ? AND last_seen_ms >= ? "
                                    "AND last_seen_ms < ?", (block, since_ms, before_ms))
        return [_decode_lead(value) for (value,) in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM leads").fetchone()[0])

    def all_leads(self) -> Iterable[Lead]:
        """Every stored lead, decoded one at a time."""
        for (value,) in self._db.execute("SELECT value FROM leads"):
            yield _decode_lead(value)

    def load_topic(self, bootstrap_servers: str, topic: str, security=None, idle_s: float = 1.0) -> int:
        """Reads the whole lead topic into the store (tombstones delete); returns records read."""
        def store(records) -> None:
            encoded, gone = [], []
            for record in records:
                if record.value is None:
                    if record.key:
                        gone.append(record.key.decode("utf-8"))
                    continue
                lead = decode_lead_record(record)
                if lead is not None:
                    encoded.append((lead, record.value))
            self.put_leads(encoded)
            self.delete(gone)

        return read_whole_topic(bootstrap_servers, topic, store, security, idle_s)

    def load_topics(self, bootstrap_servers: str, topics: "Topics", security=None) -> None:
        """Fills the store from the lead topic and the keyed state's changelog (created compacted
        when missing: the first start of a deployment, or one that predates it)."""
        from envleads.ops.broker import create_topics

        create_topics(bootstrap_servers, [topics.state], partitions=1, config={"cleanup.policy": "compact"},
                      security=security)
        self.load_topic(bootstrap_servers, topics.leads, security)
        read_whole_topic(bootstrap_servers, topics.state, lambda records: self.put_state(state_from_records(records)),
                         security)

    def close(self) -> None:
        self._db.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def read_whole_topic(bootstrap_servers: str, topic: str, handle: Callable[[list], None], security=None,
                     idle_s: float = 1.0) -> int:
    """Reads a topic from its start until it is quiet for ``idle_s``, handing each poll's records
    to ``handle`` in order; returns the records read."""
    consumer = open_consumer(bootstrap_servers, topic, group_id=None, security=security)
    read = 0
    try:
        deadline = time.monotonic() + idle_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=5000)
            if batch:
                records = [record for part in batch.values() for record in part]
                read += len(records)
                handle(records)
                deadline = time.monotonic() + idle_s
    finally:
        consumer.close()
    return read


def _decode_lead(value: bytes) -> Lead:
    return lead_from_avro_dict(schemas.decode(schemas.LEADS, value))


class StateChanges(NamedTuple):
    """A round's changes to the keyed state, from which a restart rebuilds exactly the state this
    process holds (leads alone cannot: they keep one sketch of a matter's reports, no counts, and no
    non-environmental matter). Written after the round's other outputs, before its offsets.

    Exact at round boundaries. The records of one round are not written atomically: when a send
    fails halfway, part of that round's changes may already be on the topic, and the round read
    again then treats those complaints as redeliveries (same matters, not counted twice; the
    other matters' similarities may differ). A round marker or a Kafka transaction would close
    this (not built)."""

    # (block, cluster id, the matter's JSON row, or None when it left the window)
    matters: Sequence[Tuple[str, str, Optional[str]]] = ()
    # (block, (restored since ms, newest event ms)): what of the lead store the block's index holds
    blocks: Sequence[Tuple[str, Tuple[int, int]]] = ()
    # (complaint id, content digest) of the round's complaints
    seen: Sequence[Tuple[str, str]] = ()


_STATE_SEPARATOR = "\x1f"


def state_records(topic: str, changes: StateChanges) -> List[OutputRecord]:
    """The changelog topic's records: keyed so that the newest per key is the state (compaction)."""
    sep = _STATE_SEPARATOR
    records = [(topic, f"m{sep}{block}{sep}{cid}".encode("utf-8"), None if row is None else row.encode("utf-8"))
               for block, cid, row in changes.matters]
    records += [(topic, f"b{sep}{block}".encode("utf-8"), json.dumps(meta).encode("ascii"))
                for block, meta in changes.blocks]
    records += [(topic, f"i{sep}{cid}".encode("utf-8"), digest.encode("ascii")) for cid, digest in changes.seen]
    return records


def state_from_records(records) -> StateChanges:
    """The changes read back from changelog records (Kafka records with ``key`` and ``value``)."""
    changes = StateChanges([], [], [])
    for record in records:
        kind, _, rest = record.key.decode("utf-8").partition(_STATE_SEPARATOR)
        if kind == "m":
            block, _, cid = rest.partition(_STATE_SEPARATOR)
            changes.matters.append((block, cid, None if record.value is None else record.value.decode("utf-8")))
        elif kind == "b" and record.value is not None:
            since, newest = json.loads(record.value)
            changes.blocks.append((rest, (int(since), int(newest))))
        elif kind == "i" and record.value is not None:
            changes.seen.append((rest, record.value.decode("ascii")))
    return changes


class _AssignmentFailed(Exception):
    """The index raised on a complaint (its :class:`~envleads.failures.Raised` as the argument)."""


def with_originals(dead_letters: List[DeadLetter], events: Sequence[RawEvent]) -> List[DeadLetter]:
    """The dead letters, those of a stage after decode given their event's bytes (by content
    digest among the round's ``events``)."""
    if all(dead.original or not dead.content_digest for dead in dead_letters):
        return dead_letters
    originals = {content_digest(event.payload): event.payload for event in events}
    return [with_original(dead, originals) for dead in dead_letters]


class RoundOutputs(NamedTuple):
    """What one round writes: enriched reports, new lead versions, dead letters, state changes."""

    enriched: List[MatterReport]
    leads: List[Lead]
    dead_letters: List[DeadLetter]
    state: StateChanges = StateChanges()


class LocalRoundEngine:
    """The stages of :class:`ComplaintsToLeads` over one round, in this process, set up once.

    The stateless stages call the very DoFns of ``transforms.py`` (set up once per process instead
    of once per round); repeat detection keeps one :class:`MatterIndex` per city key alive between
    rounds, as the streaming form (``streaming.py``) keeps it in keyed state, seeded on first use
    from that block's in-window leads in the :class:`LeadStore`, with the shared per-complaint
    step :func:`report_matter`; complaints of no known city are assigned after the round's city
    keys, across the ``"unknown"`` key's index and the city keys of their scope
    (:func:`assign_unplaced`, as in ``DeduplicatePetitions``); a complaint already counted in a stored lead (a replay, a
    redelivery) keeps that lead's matter; leads are merged per matter with :func:`merge_lead` as of
    the round's newest event time, as in ``BuildLeads``. A FnApiRunner round costs ~0.8 s fixed
    plus ~2-3 ms per event and re-seeds every index from all prior leads (pipeline construction,
    fusion, DoFn setup, pickling, side inputs); this costs what the stages cost.

    :meth:`forget` drops the in-memory indexes (after a round whose outputs were not
    acknowledged, or at a restart), so they are rebuilt from the store, which holds acknowledged
    outputs only. With ``checkpoint``, each round also returns the changes of the keyed state
    (:class:`StateChanges`), and an index is rebuilt from the saved changes, which makes a restart
    assign exactly as no restart would; without, from the leads (one sketch and the names of
    each environmental matter: close, not equal).

    A complaint id already used by an event with other content (another content digest) is a
    dead letter ``duplicate_id_conflict``, never folded into its matter as if it were a
    redelivery: within a round the first by event time (then digest) is kept, across rounds the
    one processed first.
    """

    def __init__(self, settings: StageSettings, store: LeadStore, enricher: Optional["Enricher"] = None,
                 keyed_worker: Optional["KeyedAssigner"] = None, worker_city_share: float = 0.0,
                 checkpoint: bool = False):
        """``keyed_worker``: assigns every key's complaints in a process of its own (None: here);
        every key, since an unplaced complaint searches the city keys of its scope.
        ``worker_city_share``: no longer used (it was the share of city keys assigned there)."""
        from envleads.repeats import load_repeat_config
        from envleads.scoring import load_scoring_weights

        self._store = store
        self._enricher = enricher
        self._settings = settings
        self._config = load_repeat_config()
        self._weights = load_scoring_weights()
        self._indexes: Dict[str, MatterIndex] = KeyIndexes()  # its directory: what unplaced complaints visit
        # per block: matters whose last report is at or after this were restored from the store
        self._restored_since: Dict[str, int] = {}
        self._newest_ms: Dict[str, int] = {}
        self._keyed_worker = keyed_worker
        self._worker_matters = 0
        self._worker_forget = False
        self._checkpoint = checkpoint
        # the keys of the store when first needed (after a start or forget): what an unplaced
        # complaint searches beside the keys in memory
        self._known_blocks: Optional[set] = None
        # dead letters ``internal_error`` per stage since start (the rounds engine's metric)
        self.internal_errors: Counter = Counter()

    def forget(self) -> None:
        self._known_blocks = None
        self._indexes.clear()
        self._restored_since.clear()
        self._newest_ms.clear()
        self._worker_forget = True
        self._worker_matters = 0

    def matters_in_memory(self) -> int:
        return sum(len(index) for index in self._indexes.values()) + self._worker_matters

    def enrich(self, events: Sequence[RawEvent]) -> Tuple[List[EnrichedComplaint], List[DeadLetter]]:
        """The stateless stages in this process (set up on first use)."""
        if self._enricher is None:
            self._enricher = Enricher(self._settings)
        return self._enricher.enrich(events)

    def _leads_to_restore(self, block: str, oldest_ms: int) -> List[Lead]:
        """The block's stored leads its index lacks for an event at ``oldest_ms``: all in its
        window on first use, older ones when an older event arrives."""
        since = oldest_ms - self._config.window_ms
        restored_since = self._restored_since.get(block)
        if restored_since is None or since < restored_since:
            self._restored_since[block] = since
            return self._store.in_block(block, since, restored_since)
        return []

    def _newest(self, block: str, newest_ms: int) -> int:
        newest_ms = self._newest_ms[block] = max(self._newest_ms.get(block, 0), newest_ms)
        return newest_ms

    def _expired(self, block: str, newest_ms: int) -> None:
        # matters out of the window of the block's newest event went; an older event arriving
        # later brings them back from the store (``_leads_to_restore``)
        self._restored_since[block] = max(self._restored_since[block], newest_ms - self._config.window_ms)

    def assign(self, enriched: Sequence[EnrichedComplaint], events: Sequence[RawEvent] = ()
               ) -> Tuple[List[MatterReport], List[DeadLetter], StateChanges]:
        """Repeat detection per blocking key, in event-time order within the round: the reports,
        the dead letters of reused ids (their bytes found among ``events``) and the state changes.

        Complaints of no known city are assigned after the round's city keys, across the
        ``"unknown"`` key and the city keys of their scope (:func:`assign_unplaced`, as the bounded
        ``DeduplicatePetitions``); a complaint whose assignment raises is a dead letter.
        """
        enriched, conflicts, seen = self._without_reused_ids(enriched, events)
        known = self._store.known_leads([item.complaint.complaint_id for item in enriched])
        reports: List[MatterReport] = []
        by_block: Dict[str, List[EnrichedComplaint]] = {}
        for item in enriched:
            lead = known.get(item.complaint.complaint_id)
            if lead is not None:
                self._report_or_dead_letter(reports, conflicts, self._known_report, item, lead)
            else:
                by_block.setdefault(block_of_complaint(item), []).append(item)
        rounds = {block: self._key_round(block, items) for block, items in by_block.items()}
        rounds.update(self._searched_keys(rounds))
        pending = None
        if self._keyed_worker is not None:  # every key there: unplaced complaints search the city keys
            forget, self._worker_forget = self._worker_forget, False
            pending = self._keyed_worker.submit(forget, {block: key_round for block, (key_round, _) in rounds.items()},
                                                self._checkpoint)
            results, self._worker_matters = pending.result()
        else:
            results = assign_key_rounds(self._indexes, {block: key_round for block, (key_round, _) in rounds.items()},
                                        self._config, self._checkpoint)
        matters = []
        for block, (_, expired, changed) in results.items():
            if expired:
                self._expired(block, rounds[block][0][2])
            matters.extend((block, cluster_id, row) for cluster_id, row in changed)
        for block, (_, ordered) in rounds.items():
            assigned = results[block][0]
            for item, features in ordered:
                self._report_or_dead_letter(reports, conflicts, self._assigned_report, item, features,
                                            assigned[item.complaint.complaint_id])
        blocks = [(block, (self._restored_since[block], self._newest_ms[block]))
                  for block in rounds] if self._checkpoint else []
        return reports, conflicts, StateChanges(matters, blocks, seen)

    def _without_reused_ids(self, enriched: Sequence[EnrichedComplaint], events: Sequence[RawEvent]
                            ) -> Tuple[List[EnrichedComplaint], List[DeadLetter], List[Tuple[str, str]]]:
        """The complaints whose id is new or a redelivery (same content digest), the dead letters
        of those reusing an id with other content, and the round's new ``(id, digest)`` pairs."""
        seen = self._store.seen_digests([item.complaint.complaint_id for item in enriched])
        chosen = dict(seen)
        reused = set()
        for position, item in sorted(enumerate(enriched), key=lambda p: (
                p[1].complaint.received_at_ms, p[1].complaint.complaint_id, p[1].complaint.content_digest)):
            complaint = item.complaint
            if complaint.content_digest and \
                    chosen.setdefault(complaint.complaint_id, complaint.content_digest) != complaint.content_digest:
                reused.add(position)
        new = [(cid, digest) for cid, digest in chosen.items() if cid not in seen]
        if not reused:
            return list(enriched), [], new
        originals = {content_digest(event.payload): event.payload for event in events}
        dead = [reused_id_dead_letter(item.complaint, originals.get(item.complaint.content_digest, b""))
                for position, item in enumerate(enriched) if position in reused]
        return [item for position, item in enumerate(enriched) if position not in reused], dead, new

    def _assigned_report(self, item: EnrichedComplaint, features, assigned) -> MatterReport:
        if isinstance(assigned, Raised):  # the index raised on it, here or in the keyed worker
            raise _AssignmentFailed(assigned)
        cluster_id, duplicate_of, join = assigned
        return matter_report(item, features, cluster_id, duplicate_of, self._weights, join)

    @staticmethod
    def _report_or_dead_letter(reports: List[MatterReport], dead: List[DeadLetter], report_of, item, *args) -> None:
        """Appends ``report_of(item, *args)`` to ``reports``, or the complaint's dead letter to
        ``dead`` when it raises (one record must not stop the stream)."""
        try:
            reports.append(report_of(item, *args))
        except _AssignmentFailed as failure:
            dead.append(internal_error(DEDUPLICATE_STAGE, failure.args[0], item.complaint))
        except Exception as error:  # noqa: BLE001
            dead.append(internal_error(DEDUPLICATE_STAGE, error, item.complaint))

    def _key_round(self, block: str, items: List[EnrichedComplaint]):
        """One key's part of the round for :func:`assign_key_rounds`: ``((saved matter rows, seed
        leads), complaints, newest event ms)``, with the restore bookkeeping done here, with the
        store; and the complaints with their features in event order, to report the assignments."""
        ordered = [(item, complaint_features(item, self._config)) for item in event_order(items)]
        seeds = self._seeds(block, ordered[0][0].complaint.received_at_ms)
        newest_ms = self._newest(block, ordered[-1][0].complaint.received_at_ms)
        unplaced = block == UNKNOWN_BLOCK
        complaints = [(item.complaint.complaint_id, item.complaint.received_at_ms, features, item.complaint.reporter_key,
                       scope_of_complaint(item) if unplaced else None) for item, features in ordered]
        return (seeds, complaints, newest_ms), ordered

    def _seeds(self, block: str, oldest_ms: int, saved_only: bool = False) -> Tuple[List[list], List[Lead]]:
        """What a key's index lacks for an event at ``oldest_ms``: its saved matter rows on first
        use (exactly the state the last acknowledged round left), and the stored leads it lacks
        (none with ``saved_only`` when there were saved rows)."""
        rows: List[list] = []
        if self._checkpoint and block not in self._restored_since:
            saved = self._store.saved_block(block)
            if saved is not None:
                self._restored_since[block], self._newest_ms[block], rows = saved
                if saved_only:
                    return rows, []
        return rows, self._leads_to_restore(block, oldest_ms)

    def _searched_keys(self, rounds) -> Dict[str, tuple]:
        """The city keys the round's unplaced complaints search (:func:`assign_unplaced`) that no
        index holds yet (after a start or :meth:`forget`), as rounds of no complaints that load
        them: as they were saved, so that a restart searches what no restart would."""
        if UNKNOWN_BLOCK not in rounds:
            return {}
        if self._known_blocks is None:
            self._known_blocks = set(self._store.blocks())
        (_, complaints, _), _ = rounds[UNKNOWN_BLOCK]
        scopes = {complaint[4] for complaint in complaints}
        oldest_ms = complaints[0][1]
        searched = {}
        for block in sorted(self._known_blocks - set(rounds) - set(self._restored_since)):
            if block != UNKNOWN_BLOCK and any(in_scope(block, scope) for scope in scopes):
                seeds = self._seeds(block, oldest_ms, saved_only=True)
                searched[block] = ((seeds, [], self._newest(block, 0)), [])
        return searched

    def _known_report(self, enriched: EnrichedComplaint, lead: Lead) -> MatterReport:
        """The report of a complaint already counted in ``lead`` (a replay or redelivery): it keeps
        that matter, whatever the index would say now, and leaves the index alone."""
        features = complaint_features(enriched, self._config)
        return matter_report(enriched, features, lead.cluster_id, lead.first_complaint_id, self._weights)

    def build_leads(self, reports: Sequence[MatterReport]) -> List[Lead]:
        """One new lead version per matter touched, merged into its stored lead (``BuildLeads``)."""
        return self._build_leads(reports)[0]

    def _build_leads(self, reports: Sequence[MatterReport]) -> Tuple[List[Lead], List[DeadLetter]]:
        """:meth:`build_leads`, and the dead letters of the reports of a matter whose merge raised."""
        if not reports:
            return [], []
        as_of_ms = max(r.enriched.complaint.received_at_ms for r in reports)
        by_cluster: Dict[str, List[MatterReport]] = {}
        for report in reports:
            by_cluster.setdefault(report.enriched.cluster_id, []).append(report)
        stored = self._store.get_many([lead_id_for(cluster_id) for cluster_id in by_cluster])
        leads, dead = [], []
        for cluster_id, matter_reports in by_cluster.items():
            previous = stored.get(lead_id_for(cluster_id))
            try:
                lead = merge_lead(previous, matter_reports, as_of_ms, self._weights)
            except Exception as error:  # noqa: BLE001 - one matter must not stop the stream
                dead.extend(internal_error(BUILD_LEADS_STAGE, error, complaint)
                            for complaint in distinct_complaints(matter_reports))
                continue
            if lead is not None and lead is not previous:
                leads.append(lead)
        return leads, dead

    def run(self, events: Sequence[RawEvent]) -> RoundOutputs:
        return self.finish(*self.enrich(events), events)

    def finish(self, enriched: Sequence[EnrichedComplaint], dead: List[DeadLetter],
               events: Sequence[RawEvent] = ()) -> RoundOutputs:
        """The keyed stages over a round's enriched complaints (``events``: the round's raw events,
        whose bytes a dead letter of a reused id or of a record a stage raised on carries).

        A record that made a stage raise is a dead letter ``internal_error``
        (:mod:`envleads.failures`), counted per stage in :attr:`internal_errors`; the round goes on.
        """
        reports, reused, state = self.assign(enriched, events)
        leads, unbuilt = self._build_leads(reports)
        dead_letters = with_originals(list(dead) + reused + unbuilt, events)
        self.internal_errors.update(count_internal_errors(dead_letters))
        return RoundOutputs(reports, leads, dead_letters, state)


_WORKER_INDEXES: Dict[str, MatterIndex] = KeyIndexes()
# a worker process's garbage collection (``heap.py``): started when its setup is done
_WORKER_COLLECTOR = RoundCollector()
# The city keys' share assigned beside the unknown key (see KeyedAssigner): measured to balance the
# stream process against the workers in a backfill on two cores.
DEFAULT_WORKER_CITY_SHARE = 0.2


def assign_key_rounds(indexes: Dict[str, MatterIndex],
                      rounds: Dict[str, Tuple[Tuple[List[list], List[Lead]], List[Tuple[str, int, Any, Any, str]], int]],
                      config, checkpoint: bool = False):
    """One round of some blocking keys over their ``indexes`` (created on first use): per key,
    load the saved matter rows and restore the seed leads, assign the complaints (``(id, event
    ms, matter features, reporter key, unplaced scope)`` in event order), expire as of the key's
    newest event; the city keys first, then the ``"unknown"`` key's complaints across the city
    keys of their scope (:func:`assign_unplaced`, as the bounded stage), so ``indexes`` must hold
    every key (a key with no complaint of its own may be in ``rounds`` only to be loaded). The
    same in the stream process and in the :class:`KeyedAssigner`'s. Returns ``{key: ({complaint
    id: (cluster id, duplicate of, why it joined)}, whether matters expired, changed matters as
    (cluster id, JSON row or None when dropped) when ``checkpoint``)}``, also for a key whose
    matters only complaints of another key joined; a complaint whose assignment raised has
    :class:`~envleads.failures.Raised` instead of its triple (matching reads only, so the other
    complaints are assigned as without it)."""
    results, touched = {}, set()
    for block in sorted(rounds, key=lambda key: key == UNKNOWN_BLOCK):  # the unknown key last
        (rows, seeds), complaints, newest_ms = rounds[block]
        index = indexes.get(block)
        if index is None:
            index = indexes[block] = MatterIndex(config, block)
        index.load_changes(rows)
        seed_index(index, seeds)
        assigned = {}
        for complaint_id, event_ms, features, reporter_key, scope in complaints:
            try:
                if block == UNKNOWN_BLOCK:
                    holder, assignment = assign_unplaced(indexes, scope, complaint_id, event_ms, features,
                                                         reporter_key)
                    touched.add(holder)
                else:
                    assignment = index.assign(complaint_id, event_ms, features, reporter_key)
            except Exception as error:  # noqa: BLE001 - dead-lettered by the engine; the key goes on
                assigned[complaint_id] = raised(error)
                continue
            assigned[complaint_id] = (assignment.cluster_id, assignment.duplicate_of,
                                      report_join(complaint_id, assignment))
        results[block] = (assigned, rounds[block][2], [])
    for block in touched - set(results):
        results[block] = ({}, None, [])
    for block, (assigned, newest_ms, changes) in list(results.items()):
        # expired after the unplaced complaints searched the keys, as the bounded stage never expires
        expired = newest_ms is not None and bool(indexes[block].expire(newest_ms))
        results[block] = (assigned, expired, changes)
        changed, dropped = indexes[block].take_changes()
        if checkpoint:
            changes.extend([(row[0], json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                            for row in indexes[block].matter_rows(changed)] + [(cid, None) for cid in dropped])
    return results


def _assign_in_worker(forget: bool, rounds, checkpoint: bool = False):
    """:func:`assign_key_rounds` in the keyed worker's process, over its own indexes; also returns
    how many matters they hold."""
    from envleads.repeats import load_repeat_config

    if forget:
        _WORKER_INDEXES.clear()
    results = assign_key_rounds(_WORKER_INDEXES, rounds, load_repeat_config(), checkpoint)
    _WORKER_COLLECTOR.after_round()
    return results, sum(len(index) for index in _WORKER_INDEXES.values())


class KeyedAssigner:
    """Repeat detection of every blocking key in a process of its own, so that the stream
    process, which bounds a backfill, keeps less (every key in one process: complaints of no
    known city search the city keys of their scope, :func:`assign_unplaced`). One worker, so its
    rounds run in order; its state is the same indexes the in-process engine would keep, restored from the
    same stored leads, and dropped with :meth:`LocalRoundEngine.forget`."""

    def __init__(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_keyed_worker, initargs=(os.getpid(),))

    def submit(self, forget: bool, rounds, checkpoint: bool = False):
        """Runs :func:`_assign_in_worker` in the process; returns its future."""
        return self._pool.submit(_assign_in_worker, forget, rounds, checkpoint)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Enricher:
    """The stateless stages: the DoFns of ``transforms.py``, set up once, called per round.

    It also computes each complaint's repeat-detection features (a pure function of the enriched
    complaint), so that in worker processes they are off the keyed stage's critical path;
    ``keep_tokens=False`` then leaves the words out of the results (nothing after reads them), and
    ``wire_parts=True`` encodes the enriched record but for the repeat stage's fields.
    """

    def __init__(self, settings: StageSettings, classify_batch_size: int = 512, keep_tokens: bool = True,
                 wire_parts: bool = False):
        from envleads.pipelines.transforms import _ClassifyFn, _DecodeFn, _ResolveRegionFn, _SegmentFn
        from envleads.repeats import load_repeat_config

        self._repeat_config = load_repeat_config()

        self._decode = _DecodeFn(settings)
        self._segment = _SegmentFn()
        self._classify = _ClassifyFn(settings)
        self._resolve = _ResolveRegionFn()
        for fn in (self._decode, self._segment, self._classify, self._resolve):
            fn.setup()
        self._batch = max(1, classify_batch_size)
        self._keep_tokens = keep_tokens
        self._wire_parts = wire_parts

    def enrich(self, events: Sequence[RawEvent]) -> Tuple[List[EnrichedComplaint], List[DeadLetter]]:
        """Decode, segment, classify (batched), resolve region and route; invalid events, and
        records that make a stage raise, to dead letters (those after decode with their bytes)."""
        dead: List[DeadLetter] = []
        complaints = _main_outputs((out for event in events for out in self._decode.process(event)), dead)
        segmented = _main_outputs((out for complaint in complaints for out in self._segment.process(complaint)), dead)
        enriched: List[EnrichedComplaint] = []
        for start in range(0, len(segmented), self._batch):
            classified = _main_outputs(self._classify.process(segmented[start:start + self._batch]), dead)
            enriched.extend(_main_outputs((out for item in classified for out in self._resolve.process(item)), dead))
        enriched = [done for done in (self._with_features(item, dead) for item in enriched) if done is not None]
        return enriched, with_originals(dead, events)

    def _with_features(self, item: EnrichedComplaint, dead: List[DeadLetter]) -> Optional[EnrichedComplaint]:
        """The complaint with its repeat features (and encoded parts), or None and its dead letter."""
        stage = DEDUPLICATE_STAGE
        try:
            features = complaint_features(item, self._repeat_config)
            stage = ENCODE_ENRICHED_STAGE
            parts = enriched_wire_parts(item) if self._wire_parts else None
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            dead.append(internal_error(stage, error, item.complaint))
            return None
        return item._replace(matter_features=features, tokens=item.tokens if self._keep_tokens else [],
                             wire_parts=parts)


def _main_outputs(outputs: Iterable[Any], dead: List[DeadLetter]) -> List[Any]:
    """A DoFn's main outputs; its ``dead_letter`` outputs appended to ``dead``."""
    main = []
    for out in outputs:
        if isinstance(out, TaggedOutput):
            dead.append(out.value)
        else:
            main.append(out)
    return main


_WORKER_ENRICHER: Optional[Enricher] = None


def _detach_from_parent(parent_pid: int) -> None:
    """In a worker process: Ctrl-C is the parent's to handle; and a worker must not outlive a
    parent killed with -9 (it would wait on its task queue forever)."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_enrich_worker(settings: StageSettings, parent_pid: int) -> None:
    global _WORKER_ENRICHER
    _detach_from_parent(parent_pid)
    # tokens stay in the worker: the keyed stages read the features computed from them, and they
    # were a fifth of the bytes pickled back per complaint
    _WORKER_ENRICHER = Enricher(settings, keep_tokens=False, wire_parts=True)
    _WORKER_COLLECTOR.start()


def _init_keyed_worker(parent_pid: int) -> None:
    from envleads.repeats import load_repeat_config

    _detach_from_parent(parent_pid)
    load_repeat_config()  # before the freeze: it lives as long as the process
    _WORKER_COLLECTOR.start()


def _enrich_in_worker(events: List[RawEvent]):
    enriched = _WORKER_ENRICHER.enrich(events)
    _WORKER_COLLECTOR.after_round()
    return enriched


class EnrichmentPool:
    """The stateless stages in worker processes, so that they overlap the keyed stages of the
    previous round (and use a second core): ``submit(events)`` returns a handle whose
    ``result()`` is ``(enriched, dead_letters)`` in event order. Workers set up once (spawned:
    no fork of a process holding Kafka and Beam threads)."""

    def __init__(self, settings: StageSettings, workers: int = 1):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._workers = max(1, workers)
        self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_enrich_worker, initargs=(settings, os.getpid()))

    def warm_up(self) -> None:
        """Starts every worker and waits for its setup (model, tokenizer, division table), so that
        the first rounds do not wait for it."""
        for future in [self._pool.submit(_enrich_in_worker, []) for _ in range(self._workers)]:
            future.result()

    def submit(self, events: Sequence[RawEvent]) -> "_PooledRound":
        size = max(1, -(-len(events) // self._workers))
        return _PooledRound([self._pool.submit(_enrich_in_worker, list(events[i:i + size]))
                             for i in range(0, len(events), size)])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _PooledRound:
    def __init__(self, futures):
        self._futures = futures

    def result(self) -> Tuple[List[EnrichedComplaint], List[DeadLetter]]:
        enriched, dead = [], []
        for future in self._futures:
            part_enriched, part_dead = future.result()
            enriched.extend(part_enriched)
            dead.extend(part_dead)
        return enriched, dead


class Backoff:
    """Exponential backoff with jitter: ``initial_s`` doubling up to ``max_s``; reset on success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0):
        self.initial_s, self.max_s = initial_s, max_s
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        delay = min(self.max_s, self.initial_s * 2 ** (self.attempt - 1))
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


def output_records(topics: Topics, outputs: RoundOutputs, events: Sequence[RawEvent] = ()
                   ) -> Tuple[List[OutputRecord], List[Tuple[Lead, bytes]]]:
    """A round's outputs as ``(topic, key, Avro value)`` records, and ``(lead, Avro value)`` of its
    leads (for the :class:`LeadStore`, once the broker acknowledged them).

    An enriched record that fails to encode, or a lead (then each of the round's reports of its
    matter), is a dead letter ``internal_error`` instead, with its bytes from ``events``, appended
    to ``outputs.dead_letters`` (so the round's counts include it).
    """
    records: List[OutputRecord] = []
    written_leads = []
    failed: List[DeadLetter] = []
    for report in outputs.enriched:
        value = encode_or_dead_letter(_encode_enriched, report, ENCODE_ENRICHED_STAGE, [report], failed)
        if value is not None:
            records.append((topics.enriched, report.enriched.complaint.complaint_id.encode("utf-8"), value))
    for lead in outputs.leads:
        value = encode_or_dead_letter(_encode_lead, lead, ENCODE_LEADS_STAGE,
                         [r for r in outputs.enriched if r.enriched.cluster_id == lead.cluster_id], failed)
        if value is not None:
            written_leads.append((lead, value))
            records.append((topics.leads, lead.lead_id.encode("utf-8"), value))
    outputs.dead_letters.extend(with_originals(failed, events))
    for dead in outputs.dead_letters:
        records.append((topics.dead_letter, dead.event_id.encode("utf-8") if dead.event_id else None,
                        _encode_dead_letter(dead)))
    records += state_records(topics.state, outputs.state)  # last: a restart finds the state of sent outputs
    return records, written_leads


def encode_or_dead_letter(encode: Callable[[Any], bytes], record, stage: str, reports: Sequence[MatterReport],
             failed: List[DeadLetter]) -> Optional[bytes]:
    """``encode(record)``, or None and the dead letters of ``reports``' complaints in ``failed``."""
    try:
        return encode(record)
    except Exception as error:  # noqa: BLE001 - one record must not stop the stream
        failed.extend(internal_error(stage, error, complaint) for complaint in distinct_complaints(reports))
        return None


def send_acknowledged(producer, records: Iterable[OutputRecord]) -> None:
    """Sends records with a kafka-python producer and waits until the broker acknowledged every
    one (a failed send raises: the round is not committed and its events are read again)."""
    send = producer.send
    futures = [send(topic, key=key, value=value) for topic, key, value in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)


def write_outputs(producer, topics: Topics, outputs: RoundOutputs, events: Sequence[RawEvent] = ()
                  ) -> List[Tuple[Lead, bytes]]:
    """Sends a round's outputs to their topics (kafka-python) and waits for the acknowledgements;
    returns ``(lead, Avro value)`` of the leads written, for the :class:`LeadStore`."""
    records, written_leads = output_records(topics, outputs, events)
    send_acknowledged(producer, records)
    return written_leads


class KafkaSession:
    """The raw topic's consumer (explicit assignment at the group's committed offsets) and one
    producer for the three output topics, on kafka-python; rebuilt whole after a Kafka error.
    :class:`~envleads.pipelines.kafka_native.NativeKafkaSession` is the same on librdkafka."""

    # Timeouts short enough that a lost broker surfaces within seconds, not the library's minutes.
    # Batches of 512 KiB: a round's records go out in a few requests, and kafka-python wakes its
    # sender thread (a socket write) per new batch; at the default 16 KiB, lead records of ~2 KB
    # made that a quarter of this process's CPU in a backfill.
    PRODUCER_OVERRIDES = dict(max_block_ms=10_000, request_timeout_ms=10_000, delivery_timeout_ms=30_000,
                              batch_size=512 * 1024)

    def __init__(self, bootstrap_servers: str, raw_topic: str, group_id: str, security=None):
        from kafka import KafkaProducer

        from envleads.ops.kafka_config import client_kwargs

        self.consumer = None
        self.producer = None
        try:
            self.consumer = open_consumer(bootstrap_servers, raw_topic, group_id, security)
            self.producer = KafkaProducer(**client_kwargs(bootstrap_servers, security, role="producer",
                                                          **self.PRODUCER_OVERRIDES))
        except BaseException:
            self.close()
            raise
        self.committed: Dict[Tuple[str, int], int] = {}

    def poll(self, max_records: int, wait_s: float, round_wait_s: Optional[float] = None,
             max_bytes: int = DEFAULT_ROUND_BYTES) -> List[RawEvent]:
        return poll_new_events(self.consumer, max_records, wait_s, round_wait_s, max_bytes)

    def send(self, records: Iterable[OutputRecord]) -> None:
        send_acknowledged(self.producer, records)

    def commit(self, events: Sequence[RawEvent]) -> None:
        self.committed.update(commit_events(self.consumer, events))

    def lost_committed_offsets(self) -> bool:
        """True when the broker no longer has an offset this session committed: it was restarted
        without its data (the in-memory embedded broker), so the positions must be re-read."""
        from kafka import TopicPartition

        for (topic, partition), offset in self.committed.items():
            committed = self.consumer.committed(TopicPartition(topic, partition))
            if committed is None or committed < offset:
                return True
        return False

    def close(self) -> None:
        for client in (self.consumer, self.producer):
            if client is None:
                continue
            try:
                client.close(timeout=2) if client is self.producer else client.close()
            except Exception:  # noqa: BLE001 - closing a client of a lost broker may fail
                LOG.debug("closing a Kafka client failed", exc_info=True)
        self.consumer = self.producer = None


def _kafka_errors() -> Tuple[type, ...]:
    from kafka.errors import KafkaError

    # TopicNotFound: a broker back without its topics (they are recreated by whoever owns them)
    # (the native session raises NativeKafkaError for librdkafka's exceptions, so confluent_kafka
    # is imported only by a stream that uses it)
    return (KafkaError, OSError, TopicNotFound, _BrokerLostState, NativeKafkaError)


KAFKA_CLIENTS = ("auto", "native", "python")


def open_session(kafka_client: str, bootstrap_servers: str, raw_topic: str, group_id: str, security=None):
    """A :class:`KafkaSession` (kafka-python) or :class:`NativeKafkaSession` (librdkafka; ``auto``
    picks it when confluent-kafka is installed)."""
    if kafka_client not in KAFKA_CLIENTS:
        raise ValueError(f"kafka_client must be one of {KAFKA_CLIENTS}, got {kafka_client!r}")
    if kafka_client == "native" or kafka_client == "auto" and native_client_available():
        return NativeKafkaSession(bootstrap_servers, raw_topic, group_id, security)
    return KafkaSession(bootstrap_servers, raw_topic, group_id, security)


def run_stream(bootstrap_servers: str, topics: Topics, beam_args: Optional[List[str]] = None,
               group_id: str = DEFAULT_GROUP, max_round_events: int = 2000, poll_wait_s: float = 2.0,
               stop_when_idle_s: Optional[float] = None, status_every_s: float = 10.0,
               max_rounds: Optional[int] = None, security=None,
               round_wait_s: Optional[float] = 0.25, enrich_workers: int = 0, backoff: Optional[Backoff] = None,
               offset_check_s: float = 5.0, on_ready: Optional[Callable[[], None]] = None,
               kafka_client: str = "auto", unplaced_worker: bool = False,
               worker_city_share: float = DEFAULT_WORKER_CITY_SHARE, wait_for_fence: bool = False,
               max_round_bytes: int = DEFAULT_ROUND_BYTES) -> Dict[str, int]:
    """Runs rounds until interrupted, or until no event arrived for ``stop_when_idle_s``.

    One writer per raw topic and group (:mod:`~envleads.pipelines.writer_fence`): before its first
    session the stream takes the group's writer fence through the broker, or raises
    :class:`~envleads.pipelines.writer_fence.WriterFenceHeld` (one line) while another stream holds
    it (``wait_for_fence``: waits for it instead); every round's outputs and offsets are written
    only after the broker confirmed the fence is still held.

    Args:
        max_round_events: events per round at most.
        max_round_bytes: event bytes per round at most (one larger event makes a round of its own):
            bounds a round's memory when events are large (about 2 MB per limit-size event).
        poll_wait_s: how long one poll for a round's first event waits.
        round_wait_s: a round closes this long after its first event arrived (bounds latency);
            None: only when ``max_round_events`` are read or the topic is quiet for 0.5 s.
        enrich_workers: processes running the stateless stages, overlapping the
            keyed stages of the previous round (0: in this process, no overlap).
        backoff: reconnection delays after a Kafka error (default 0.5 s doubling to 30 s).
        offset_check_s: while idle, how often to check that the broker still has the committed
            offsets (an in-memory broker restarted without its data has not).
        on_ready: called once, when the stages are set up and the first Kafka session is open
            (the moment from which latency is the steady state's).
        kafka_client: the raw topic's consumer and the producer: ``native``
            (confluent-kafka: a tenth of kafka-python's CPU per record), ``python`` (kafka-python),
            or ``auto`` (native when installed, the default).
        unplaced_worker: assign every key's complaints (repeat detection) in a process of its own
            (:class:`KeyedAssigner`). On in ``envleads stream`` and the benchmark; off here, so a
            library caller gets no process it did not ask for.
        worker_city_share: no longer used (every key is assigned in the worker: complaints of no
            known city search the city keys).
        wait_for_fence: wait while another stream of the group holds the writer fence (default:
            refuse to start).

    Returns totals: events read, rounds run, leads in the compacted view, Kafka retries, dead
    letters, and of them `internal_error` (records a stage raised on; each also a WARNING).
    """
    from envleads.pipelines.batch import prepared_run
    from envleads.pipelines.writer_fence import WriterFence

    _, settings = prepared_run(beam_args)
    backoff = backoff or Backoff()
    store = LeadStore()
    pool = EnrichmentPool(settings, enrich_workers) if enrich_workers > 0 else None
    if pool is not None:
        try:
            pool.warm_up()
        except BaseException:
            pool.close()
            raise
    keyed_worker = KeyedAssigner() if unplaced_worker else None
    local = LocalRoundEngine(settings, store, keyed_worker=keyed_worker, worker_city_share=worker_city_share,
                             checkpoint=True)
    if pool is None:
        local.enrich([])  # sets the stages up now rather than in the first round
    collector = RoundCollector()
    session: Optional[KafkaSession] = None
    fence: Optional[WriterFence] = None  # one writer per group, kept for the whole run
    pending = None  # (events, enrichment handle) of the round being enriched
    totals = {"events": 0, "rounds": 0, "retries": 0, "dead_letters": 0, "internal_errors": 0}
    idle_since = last_status = last_offset_check = time.monotonic()
    errors = _kafka_errors()

    def finish_round(events: List[RawEvent], started: float, outputs_of) -> None:
        nonlocal last_status, idle_since
        outputs = local.finish(*outputs_of(), events)
        before = len(outputs.dead_letters)
        records, written_leads = output_records(topics, outputs, events)
        local.internal_errors.update(count_internal_errors(outputs.dead_letters[before:]))
        fence.confirm()  # still the group's writer (else WriterFenceLost: nothing written)
        session.send(records)
        store.put_leads(written_leads)
        store.put_state(outputs.state)
        totals["dead_letters"] += len(outputs.dead_letters)
        totals["internal_errors"] = sum(local.internal_errors.values())
        fence.confirm()  # and still the writer when its offsets are committed
        session.commit(events)
        totals["events"] += len(events)
        totals["rounds"] += 1
        collector.after_round()
        idle_since = time.monotonic()
        if time.monotonic() - last_status >= status_every_s or stop_when_idle_s is not None:
            elapsed = time.monotonic() - started
            known = len(store)
            LOG.info("round %d: %d events in %.1fs (%.0f/s); %d events so far; %d leads in view",
                     totals["rounds"], len(events), elapsed, len(events) / max(1e-6, elapsed),
                     totals["events"], known)
            last_status = time.monotonic()

    try:
        collector.start()  # setup done: what it built is frozen
        while max_rounds is None or totals["rounds"] < max_rounds:
            try:
                if session is None:
                    # the writer fence first: refuses (WriterFenceHeld) or waits while another
                    # stream of the group holds it; after WriterFenceLost, takes it again or refuses
                    fence = fence or WriterFence(bootstrap_servers, topics.raw, group_id, security, wait=wait_for_fence)
                    fence.acquire()
                    idle_since = time.monotonic()  # waiting for the fence is not idling
                    session = open_session(kafka_client, bootstrap_servers, topics.raw, group_id, security)
                    store.load_topics(bootstrap_servers, topics, security)
                    backoff.reset()
                    if on_ready is not None:
                        on_ready()
                        on_ready = None
                # with a round being enriched, only a short look for the next one
                wait = min(poll_wait_s, 0.05) if pending else poll_wait_s
                # with max_rounds, no round is read while one is still being enriched
                may_read = max_rounds is None or pending is None
                events = session.poll(max_round_events, wait, round_wait_s, max_round_bytes) if may_read else []
                if events:
                    # a broker restarted without its data would hand out records at our old
                    # positions of recreated topics: check before processing (one offset fetch)
                    _check_broker_state(session)
                started = time.monotonic()
                if pool is None:
                    if events:
                        finish_round(events, started, lambda: local.enrich(events))
                        continue
                else:
                    # this round is enriched in the workers while the previous one is finished here
                    handle = pool.submit(events) if events else None
                    if pending is not None:
                        finish_round(pending[0], pending[2], pending[1].result)
                    pending = (events, handle, started) if events else None
                    if pending is not None:
                        continue
                now = time.monotonic()
                if stop_when_idle_s is not None and now - idle_since >= stop_when_idle_s:
                    break
                if session.committed and now - last_offset_check >= offset_check_s:
                    last_offset_check = now
                    _check_broker_state(session)
            except KeyboardInterrupt:
                # Ctrl-C or SIGTERM: a round not yet committed is read again by the next run
                LOG.info("interrupted; stopping after %d rounds", totals["rounds"])
                totals["interrupted"] = 1
                break
            except errors as error:
                delay = backoff.next_delay()
                totals["retries"] += 1
                # the class and the broker only: an error's text may quote a record
                LOG.warning("Kafka unavailable at %s (%s); attempt %d, retrying in %.1f s",
                            bootstrap_servers, type(error).__name__, backoff.attempt, delay)
                pending = None  # not committed: read again after reconnecting
                if session is not None:
                    session.close()
                    session = None
                local.forget()  # rebuilt from the store, which holds acknowledged outputs only
                time.sleep(delay)
                idle_since = time.monotonic()
    finally:
        collector.stop()
        if pool is not None:
            pool.close()
        if keyed_worker is not None:
            keyed_worker.close()
        if session is not None:
            session.close()
        if fence is not None:
            fence.close()  # after the last commit: the fence passes to the next stream
        totals["leads"] = len(store)
        store.close()
    return totals


class _BrokerLostState(RuntimeError):
    """The broker no longer knows what this process committed (restarted without its data)."""


def _check_broker_state(session) -> None:
    if session.committed and session.lost_committed_offsets():
        raise _BrokerLostState("the broker lost the committed offsets (restarted without its data)")


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
