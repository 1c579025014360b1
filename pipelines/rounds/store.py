"""The local state of the rounds engine: the :class:`LeadStore` (the compacted lead view and the
keyed state's changelog, on local disk) and :class:`StateChanges` with their changelog records; it is
a cache rebuilt from the topics at every start (``kafka_edge/lead_topic.py``, ``kafka_edge/read.py``)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from envleads import schemas
from envleads.leads import block_of_lead, lead_from_avro_dict
from envleads.pipelines.kafka_edge.lead_topic import LeadChange, read_lead_topic
from envleads.pipelines.kafka_edge.read import read_whole_topic
from envleads.pipelines.kafka_edge.write import OutputRecord
from envleads.records import Lead

if TYPE_CHECKING:
    from envleads.pipelines.rounds.outputs import Topics


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

    def in_block(self, block: str, since_ms: int) -> List[Lead]:
        """The block's leads whose last report is at or after ``since_ms``."""
        rows = self._db.execute("SELECT value FROM leads WHERE block = ? AND last_seen_ms >= ?", (block, since_ms))
        return [_decode_lead(value) for (value,) in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM leads").fetchone()[0])

    def all_leads(self) -> Iterable[Lead]:
        """Every stored lead, decoded one at a time."""
        for (value,) in self._db.execute("SELECT value FROM leads"):
            yield _decode_lead(value)

    def load_topic(self, bootstrap_servers: str, topic: str, security=None, idle_s: float = 1.0) -> int:
        """Reads the whole lead topic into the store (tombstones delete); returns records read."""
        def store(changes: List[LeadChange]) -> None:
            self.put_leads((change.lead, change.value) for change in changes if change.lead is not None)
            self.delete(change.key for change in changes if change.tombstone and change.key)

        return read_lead_topic(bootstrap_servers, topic, store, security, idle_s)

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
