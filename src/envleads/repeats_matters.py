"""The live matters of one blocking key and the indexes over them: shingle postings, name keys,
reporters and complaint ids, kept in step as matters are added, updated, expired and dropped; and
their state (``to_state``, changelog rows, matters restored from leads). :class:`MatterIndex`
(:mod:`envleads.repeats_index`) adds the matching.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from envleads.config import ConfigError, cached_per_config
from envleads.postings import ShinglePostings
from envleads.repeats_config import DESCRIPTOR_CLASS, RepeatConfig, default_config
from envleads.repeats_features import (UNKNOWN_BLOCK, MatterFeatures, _clean_adcode, _split, _strip_category, sound,
                                       trade_name, trade_name_keys)
from envleads.repeats_text import (_signature_from_b64, _signature_to_b64, _sorted_membership, _trim, is_sketch,
                                   signature_from_list, signature_to_list, text_sketch)

LOG = logging.getLogger(__name__)

STATE_FORMAT = 3  # 3: each matter row ends with whether the matter is environmental


_NAMING_SCAN = 256  # past this many matters under one entity key, its names count as generic
# what a :class:`KeyIndexes` directory maps to the keys holding it: entity name keys, title entity
# name keys, reporter digests, complaint ids, trade name keys
_ENTITY, _TITLE, _REPORTER, _COMPLAINT, _TRADE = "entity", "title", "reporter", "complaint", "trade"


@cached_per_config
def _entity_key_memo(config: RepeatConfig) -> Dict[str, str]:
    """Entity -> its index key (:meth:`MatterIndex._entity_key`), shared by the indexes of one
    configuration."""
    return {}


def _reporter_digest(reporter_key: str) -> str:
    # the reporter key is already pseudonymous; a short digest keeps state small
    return hashlib.sha1(reporter_key.encode("utf-8")).hexdigest()[:12]


def _reporter_digests(reporter_key: Union[str, Iterable[str], None]) -> Tuple[str, ...]:
    """Digests of one reporter key, or of several keys of one reporter (one per identifier)."""
    if not reporter_key:
        return ()
    keys = [reporter_key] if isinstance(reporter_key, str) else [k for k in reporter_key if k]
    return tuple(sorted({_reporter_digest(k) for k in keys}))


@dataclass(slots=True)  # no per-matter __dict__: hundreds of thousands are live
class _Matter:
    cluster_id: str
    first_complaint_id: str
    first_seen_ms: int
    last_seen_ms: int
    report_count: int
    members: List[np.ndarray]  # sketches; members[0] is the first report's
    entities: Dict[str, int]
    types: Dict[str, int]
    reporters: List[str]
    title_entities: List[str] = field(default_factory=list)
    regions: Dict[str, int] = field(default_factory=dict)
    shingles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    # the first and the most recent complaint ids: a redelivered one is recognised, not re-counted
    complaint_ids: List[str] = field(default_factory=list)
    # environmental and non-environmental complaints are never one matter (a matter restored from
    # a lead is environmental: only environmental matters have leads)
    environmental: bool = True


class IndexedMatters:
    """The matters of one blocking key within the time window and their indexes (the state of a
    :class:`~envleads.repeats_index.MatterIndex`, which adds assignment against them)."""

    def __init__(self, config: Optional[RepeatConfig] = None, block: Optional[str] = None):
        """An empty index.

        Args:
            config: defaults to the packaged configuration.
            block: the blocking key this index serves. A city key tells the index that all its
                complaints come from one city even when their own region is unresolved, so a
                shared road or similar text is evidence enough; ``None`` or ``"unknown"`` (the
                default) mean complaints may come from anywhere and need a shared name unless
                their regions say they are in one city.
        """
        self.config = config or default_config()
        self.block = block
        self._one_city = block is not None and block != UNKNOWN_BLOCK
        roles = {c.name: c.role for c in self.config.entity_classes}
        roles[self.config.address_class] = self.config.address_role
        self._sources = frozenset(name for name, role in roles.items() if role == "source")
        self._locations = frozenset(name for name, role in roles.items() if role == "location")
        self._areas = frozenset(name for name, role in roles.items() if role == "area")
        self._descriptors = frozenset({DESCRIPTOR_CLASS}) if self.config.descriptors.words else frozenset()
        # class -> the class of its names in full ("compound" -> "estate"), for comparisons across cities
        self._full_name_classes = {c.name: c.full_name_class for c in self.config.entity_classes if c.full_name_class}
        self._full_names = frozenset(self._full_name_classes.values())
        self._matters: Dict[str, _Matter] = {}
        # shingle hash -> the clusters whose retained sketches hold it (their number is the shingle's
        # document frequency), packed in numpy arrays: most of a live matter's memory otherwise
        self._postings = ShinglePostings()
        # name tail -> clusters naming an entity with it (a superset of entity matches)
        self._entity_index: _Holders = {}
        # title entity tail -> clusters whose titles name it: a matter restated in other words is
        # still found when its texts share little
        self._title_index: _Holders = {}
        # reporter digest -> clusters they reported to
        self._reporter_index: _Holders = {}
        # complaint id -> its cluster (the ids each matter keeps): at-least-once delivery repeats
        # complaints, and a repeat delivery must neither count again nor match its own matter
        self._complaint_index: Dict[str, str] = {}
        # trade name sound key (:func:`trade_name_keys`) -> clusters naming a source with such a
        # trade name; and its first two characters -> the same (what the :class:`KeyIndexes`
        # directory holds: a report of no known city visits another key only for a trade name
        # written in the same characters, since sound keys are held by too many keys)
        self._trade_index: _Holders = {}
        self._trade_chars_index: _Holders = {}
        self._maps: Dict[str, dict] = {_ENTITY: self._entity_index, _TITLE: self._title_index,
                                       _REPORTER: self._reporter_index, _COMPLAINT: self._complaint_index,
                                       _TRADE: self._trade_chars_index}
        self._specific_cache: Dict[str, bool] = {}  # valid while the index does not change
        self._key_memo = _entity_key_memo(self.config)
        # the directory of the :class:`KeyIndexes` holding this index (kept in step: every key
        # present in the indexes above and the complaint ids), and this index's key there
        self._directory: Optional[_Directory] = None
        self._directory_block = ""
        # (last seen ms, cluster id) of every live matter's latest report, and stale entries of
        # matters seen again or dropped since: a heap, so that expiry looks at the expired only
        # instead of walking every live matter each round
        self._by_last_seen: List[Tuple[int, str]] = []
        # matters changed and dropped since the last :meth:`take_changes` (the state changelog)
        self._changed: set = set()
        self._dropped: set = set()

    # -- bookkeeping -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._matters)

    def __contains__(self, cluster_id: object) -> bool:
        return cluster_id in self._matters

    def _set_shingles(self, matter: _Matter) -> None:
        """Re-derives the matter's shingle union from its members and updates the postings."""
        members = [m for m in matter.members if m.size]
        if len(members) > 1:
            union = np.unique(np.concatenate(members))
        else:  # a sketch is ascending and distinct already
            union = members[0] if members else np.zeros(0, dtype=np.uint32)
        union = union[:self.config.max_indexed_shingles]  # the smallest hashes: a bottom-k of the union
        old = matter.shingles
        if old.size:
            self._postings.remove(matter.cluster_id, old[~_sorted_membership(old, union)])
            self._postings.add(matter.cluster_id, union[~_sorted_membership(union, old)])
        else:
            self._postings.add(matter.cluster_id, union)
        matter.shingles = union

    def _seen(self, matter: _Matter) -> None:
        """Notes the matter's last-seen time for :meth:`expire`."""
        heapq.heappush(self._by_last_seen, (matter.last_seen_ms, matter.cluster_id))

    def _drop(self, cluster_id: str) -> None:
        matter = self._matters.pop(cluster_id)
        self._changed.discard(cluster_id)
        self._dropped.add(cluster_id)
        matter.members = []
        self._set_shingles(matter)
        self._postings.release(cluster_id)
        for entity in matter.entities:
            self._release_entity(entity, cluster_id)
        for entity in matter.title_entities:
            self._release(_TITLE, self._entity_key(entity), cluster_id)
        for reporter in matter.reporters:
            self._release(_REPORTER, reporter, cluster_id)
        for complaint_id in matter.complaint_ids:
            if self._complaint_index.get(complaint_id) == cluster_id:
                self._forget_id(complaint_id)

    def _add_complaint_ids(self, matter: _Matter, complaint_ids: Iterable[str]) -> None:
        """Remembers complaint ids of the matter: the first one and the ``max_ids_per_matter`` - 1
        most recent (a redelivery comes soon after the original, so older ids are rarely needed)."""
        limit = self.config.max_ids_per_matter
        for complaint_id in complaint_ids:
            if not complaint_id or complaint_id in matter.complaint_ids:
                continue
            matter.complaint_ids.append(complaint_id)
            if complaint_id not in self._complaint_index and self._directory is not None:
                _index(self._directory[_COMPLAINT], complaint_id, self._directory_block)
            self._complaint_index[complaint_id] = matter.cluster_id
            if len(matter.complaint_ids) > limit:
                gone = matter.complaint_ids.pop(1 if limit > 1 else 0)
                if self._complaint_index.get(gone) == matter.cluster_id:
                    self._forget_id(gone)

    def _forget_id(self, complaint_id: str) -> None:
        del self._complaint_index[complaint_id]
        if self._directory is not None:
            _unindex(self._directory[_COMPLAINT], complaint_id, self._directory_block)

    def _hold(self, kind: str, key: Optional[str], cluster_id: str) -> None:
        """Indexes ``cluster_id`` under ``key`` (of ``kind``); a key new here goes to the directory."""
        if _index(self._maps[kind], key, cluster_id) and self._directory is not None:
            _index(self._directory[kind], key, self._directory_block)

    def _release(self, kind: str, key: Optional[str], cluster_id: str) -> None:
        """Unindexes ``cluster_id`` under ``key``; a key gone from here leaves the directory."""
        if _unindex(self._maps[kind], key, cluster_id) and self._directory is not None:
            _unindex(self._directory[kind], key, self._directory_block)

    def _attach(self, directory: Optional["_Directory"], block: str) -> None:
        """Enters every key held here in ``directory`` under ``block`` and keeps it in step from
        now on; None: leaves the current directory (its entries go)."""
        if directory is not None and self._directory is not None:
            raise ValueError(f"index of {self.block} is in another KeyIndexes already")
        target = directory if directory is not None else self._directory
        if target is not None:
            step = _index if directory is not None else _unindex
            for kind, holders in self._maps.items():
                for key in holders:
                    step(target[kind], key, block)
        self._directory, self._directory_block = directory, block

    def _add_member(self, matter: _Matter, signature: np.ndarray) -> None:
        limit = self.config.max_members_per_matter
        if len(matter.members) >= limit:
            # keep the first report's sketch; the oldest of the recent ones makes room
            matter.members.pop(1 if limit > 1 else 0)
        matter.members.append(signature)
        self._set_shingles(matter)

    def _entity_key(self, entity: str) -> Optional[str]:
        """Index key of an entity: its class and the last two characters of its name.

        :func:`_cores_match` needs equal names or a shared tail of >= 3 characters, so equal keys
        are a superset of matches; the number of live matters holding a key is how common it is.
        Remembered per configuration: the same names are keyed again at every look-up.
        """
        key = self._key_memo.get(entity)
        if key is None:
            key = self._new_entity_key(entity)
            if len(self._key_memo) < 200_000:
                self._key_memo[entity] = key
        return key

    def _new_entity_key(self, entity: str) -> str:
        cls, core = _split(entity)
        trade, at, area = core.rpartition("@")
        if at:  # a descriptor: its trade and its area's tail
            return f"{cls}|{trade}@{''.join(sound(area[-2:]))}"
        if cls in self._full_names:  # never looked up by a tail: keyed whole ("estate|裕西花园")
            return f"{cls}|{core}"
        road, _, number = core.partition("#")
        tail = "".join(sound(_strip_category(road, self.config)[0][-2:]))
        return f"{cls}|{tail}#{number}" if number else f"{cls}|{tail}"

    def _hold_entity(self, entity: str, cluster_id: str) -> None:
        """Indexes a matter's name under its entity key and, for a source, its trade name's keys."""
        self._hold(_ENTITY, self._entity_key(entity), cluster_id)
        name = trade_name(entity, self.config)
        if name is not None:
            for key in trade_name_keys(name):
                _index(self._trade_index, key, cluster_id)
            self._hold(_TRADE, name[:2], cluster_id)

    def _release_entity(self, entity: str, cluster_id: str) -> None:
        self._release(_ENTITY, self._entity_key(entity), cluster_id)
        name = trade_name(entity, self.config)
        if name is not None:
            for key in trade_name_keys(name):
                _unindex(self._trade_index, key, cluster_id)
            self._release(_TRADE, name[:2], cluster_id)

    def _trade_names(self, matter: _Matter) -> List[Tuple[str, str]]:
        """The trade names of the matter's sources (:func:`trade_name`), with their names."""
        return sorted((name, e) for e in matter.entities for name in [trade_name(e, self.config)] if name)

    def _entity_holders(self, entities: Iterable[str], index: "_Holders") -> set:
        """Matters under the entities' index keys; a key held by more than :data:`_NAMING_SCAN`
        matters is skipped, since its names are generic (:meth:`_matters_naming`) and give no
        evidence: those matters can still join by text or reporter, found through those indexes."""
        out: set = set()
        for entity in entities:
            holders = _holders(index, self._entity_key(entity))
            if len(holders) <= _NAMING_SCAN:
                out.update(holders)
        return out

    def _add_entities(self, matter: _Matter, entities: Iterable[str],
                      title_entities: Iterable[str] = ()) -> None:
        for entity in entities:
            if entity not in matter.entities:
                matter.entities[entity] = 0
                self._hold_entity(entity, matter.cluster_id)
            matter.entities[entity] += 1
        limit = self.config.max_entities_per_matter
        for entity in title_entities:
            if entity not in matter.title_entities and len(matter.title_entities) < limit:
                matter.title_entities.append(entity)
                self._hold(_TITLE, self._entity_key(entity), matter.cluster_id)
        if len(matter.entities) > limit:
            ranked = sorted(matter.entities.items(), key=lambda kv: (-kv[1], kv[0]))
            for entity, _ in ranked[limit:]:
                self._release_entity(entity, matter.cluster_id)
            kept = dict(ranked[:limit])
            # entities sharing a key with a kept one stay indexed through it
            for entity in kept:
                self._hold_entity(entity, matter.cluster_id)
            matter.entities = kept

    def _add_report(self, matter: _Matter, features: MatterFeatures, reporters: Sequence[str]) -> None:
        self._add_member(matter, features.signature)
        self._add_entities(matter, features.entities, features.title_entities)
        for t in features.types:
            matter.types[t] = matter.types.get(t, 0) + 1
        if features.region_adcode:
            matter.regions[features.region_adcode] = matter.regions.get(features.region_adcode, 0) + 1
            if len(matter.regions) > 8:
                ranked = sorted(matter.regions.items(), key=lambda kv: (-kv[1], kv[0]))
                matter.regions = dict(ranked[:8])
        for reporter in reporters:
            if reporter not in matter.reporters and len(matter.reporters) < 32:
                matter.reporters.append(reporter)
                self._hold(_REPORTER, reporter, matter.cluster_id)

    def expire(self, now_ms: int) -> List[str]:
        """Drops matters whose last report is older than the window; returns their cluster ids."""
        return [cid for cid, _ in self.expire_matters(now_ms)]

    def expire_matters(self, now_ms: int) -> List[Tuple[str, int]]:
        """:meth:`expire`, returning each dropped matter's cluster id with its last report's time
        (what a lead kept elsewhere must have reached before it goes too)."""
        horizon = now_ms - self.config.window_ms
        heap, expired = self._by_last_seen, {}
        while heap and heap[0][0] < horizon:
            cid = heapq.heappop(heap)[1]
            matter = self._matters.get(cid)
            if matter is not None and matter.last_seen_ms < horizon:  # else a stale entry
                expired[cid] = matter.last_seen_ms
        gone = sorted(expired.items())
        for cid, _ in gone:
            self._drop(cid)
        return gone

    def restore_matter(self, cluster_id: str, first_complaint_id: str, last_seen_ms: int,
                       signature: Sequence[int], entities: Iterable[str],
                       first_seen_ms: Optional[int] = None, report_count: int = 1,
                       types: Iterable[str] = (), title_entities: Iterable[str] = (),
                       region_adcode: Optional[str] = None, reporter_keys: Iterable[str] = (),
                       complaint_ids: Iterable[str] = ()) -> None:
        """Re-creates a matter from a lead (at start-up, before the stream resumes).

        Args:
            cluster_id: the lead's ``cluster_id`` (kept as is, not re-derived).
            first_complaint_id: the matter's first complaint.
            last_seen_ms: event time of the matter's latest report.
            signature: the matter's sketch (:func:`signature_to_list` output). A signature of the
                former MinHash kind is not comparable and is ignored (the entities still match).
            entities: ``class:core`` strings, as in :class:`MatterFeatures`.
            title_entities: those of them named in a title (stronger evidence), if the lead has them.
            region_adcode: the matter's resolved region (the lead's ``region.adcode``), if any, so
                that reports from another county do not join it.
            reporter_keys: the matter's pseudonymous reporter keys (the lead's ``reporter_keys``), so
                that a reporter writing again is recognised.
            complaint_ids: the matter's reports (the lead's ``complaint_ids``, event-time order), so
                that a redelivered report is recognised instead of counted again.
        """
        sig = signature_from_list(signature)
        if is_sketch(sig, self.config.sketch_size):
            sig = _trim(sig)
        elif sig.size:
            LOG.warning("restored matter %s has a signature that is not a sketch of this configuration; "
                        "it will match on its names only", cluster_id)
            sig = np.zeros(0, dtype=np.uint32)
        else:  # restored by its names only (see leads.restore_lead)
            sig = np.zeros(0, dtype=np.uint32)
        if cluster_id in self._matters:
            self._drop(cluster_id)
        matter = _Matter(cluster_id, first_complaint_id,
                         last_seen_ms if first_seen_ms is None else first_seen_ms, last_seen_ms,
                         report_count, [], {}, {t: 1 for t in types}, [])
        region = _clean_adcode(region_adcode)
        if region:
            matter.regions[region] = 1
        self._matters[cluster_id] = matter
        self._seen(matter)
        self._add_member(matter, sig)
        self._add_entities(matter, entities, title_entities)
        for reporter in _reporter_digests(list(reporter_keys)):
            if len(matter.reporters) < 32:
                matter.reporters.append(reporter)
                self._hold(_REPORTER, reporter, cluster_id)
        self._add_complaint_ids(matter, [first_complaint_id] + [c for c in complaint_ids if c != first_complaint_id])
        self._changed.add(cluster_id)

    def matter_summary(self, cluster_id: str) -> Dict[str, Any]:
        """What a lead should carry so that :meth:`restore_matter` can rebuild the matter."""
        m = self._matters[cluster_id]
        return {
            "cluster_id": m.cluster_id,
            "first_complaint_id": m.first_complaint_id,
            "first_seen_ms": m.first_seen_ms,
            "last_seen_ms": m.last_seen_ms,
            "report_count": m.report_count,
            "signature": signature_to_list(text_sketch(m.members[0] if m.members else np.zeros(0, np.uint32),
                                                       self.config.sketch_size)),
            "entities": sorted(m.entities),
            "title_entities": list(m.title_entities),
            "types": sorted(m.types),
            "region_adcode": max(m.regions, key=lambda r: (m.regions[r], r)) if m.regions else None,
            "complaint_ids": list(m.complaint_ids),
        }

    @staticmethod
    def _row(m: _Matter) -> list:
        return [m.cluster_id, m.first_complaint_id, m.first_seen_ms, m.last_seen_ms,
                m.report_count, [_signature_to_b64(s) for s in m.members],
                m.entities, m.types, m.reporters, m.title_entities, m.regions, m.complaint_ids,
                m.environmental]

    def _load_row(self, row: Sequence[Any]) -> None:
        (cid, first, first_ms, last_ms, count, sigs, ents, types, reporters, titled, regions, complaint_ids,
         environmental) = row
        if cid in self._matters:
            self._drop(cid)
        matter = _Matter(cid, first, int(first_ms), int(last_ms), int(count), [], {}, dict(types),
                         list(reporters), [], dict(regions), environmental=bool(environmental))
        self._matters[cid] = matter
        self._seen(matter)
        matter.members = [_signature_from_b64(s) for s in sigs]
        self._set_shingles(matter)
        self._add_entities(matter, [], titled)
        for entity, n in ents.items():
            matter.entities[entity] = int(n)
            self._hold_entity(entity, cid)
        for reporter in matter.reporters:
            self._hold(_REPORTER, reporter, cid)
        self._add_complaint_ids(matter, complaint_ids)

    def to_state(self) -> Dict[str, Any]:
        """Compact JSON-able state (sketches as base64 little-endian uint32)."""
        matters = [self._row(m) for m in sorted(self._matters.values(), key=lambda m: (m.first_seen_ms, m.cluster_id))]
        return {"format": STATE_FORMAT, "version": self.config.version, "block": self.block,
                "sketch_size": self.config.sketch_size,
                "shingle_chars": self.config.shingle_chars, "seed": self.config.seed, "matters": matters}

    def merge_state(self, state: Mapping[str, Any]) -> int:
        """Adds the matters of another index's :meth:`to_state` (those not held already).

        Returns the number of matters added.
        """
        cfg = self.config
        if (state.get("format") != STATE_FORMAT or state.get("sketch_size") != cfg.sketch_size
                or state.get("seed") != cfg.seed or state.get("shingle_chars") != cfg.shingle_chars):
            raise ConfigError("repeat index state was built with another sketch configuration; sketches "
                              "are not comparable (rebuild from leads instead)")
        added = 0
        for row in state["matters"]:
            if row[0] not in self._matters:
                self._load_row(row)
                added += 1
        return added

    def take_changes(self) -> Tuple[List[str], List[str]]:
        """The ids of the matters changed and of those dropped since the last call: with
        :meth:`matter_rows`, a changelog from which :meth:`load_changes` rebuilds exactly this
        index (as a restart must)."""
        changed, dropped = sorted(self._changed), sorted(self._dropped - self._changed)
        self._changed, self._dropped = set(), set()
        return changed, dropped

    def matter_rows(self, cluster_ids: Iterable[str]) -> List[list]:
        """JSON-able rows of live matters (as in :meth:`to_state`)."""
        return [self._row(self._matters[cid]) for cid in cluster_ids]

    def load_changes(self, rows: Iterable[Sequence[Any]]) -> None:
        """Loads changelog rows (:meth:`matter_rows`) of live matters; they are not changes."""
        for row in rows:
            self._load_row(row)
        self._changed, self._dropped = set(), set()


# A :class:`KeyIndexes` directory: per kind (:data:`_ENTITY` ...), key -> the blocking keys whose
# index holds it (a key while there is one, a set from two on, as :data:`_Holders`)
_Directory = Dict[str, Dict[str, Union[str, set]]]


# The name, region and reporter indexes map a key to the clusters holding it: the cluster id itself
# while there is one (most keys: a set costs ~200 bytes per live matter), a set from two on.
_Holders = Dict[str, Union[str, set]]


def _index(index: _Holders, key: Optional[str], cluster_id: str) -> bool:
    """Adds ``cluster_id`` to the holders of ``key``; True when the key is new in ``index``."""
    if key is None:
        return False
    holders = index.get(key)
    if holders is None:
        index[key] = cluster_id
        return True
    if isinstance(holders, str):
        if holders != cluster_id:
            index[key] = {holders, cluster_id}
    else:
        holders.add(cluster_id)
    return False


def _unindex(index: _Holders, key: Optional[str], cluster_id: str) -> bool:
    """Removes ``cluster_id`` from the holders of ``key``; True when the key left ``index``."""
    holders = index.get(key) if key is not None else None
    if holders is None:
        return False
    if isinstance(holders, str):
        if holders == cluster_id:
            del index[key]
            return True
        return False
    holders.discard(cluster_id)
    if len(holders) == 1:
        index[key] = next(iter(holders))
    return False


def _holders(index: _Holders, key: Optional[str]) -> Union[set, Tuple[str, ...]]:
    holders = index.get(key) if key is not None else None
    return () if holders is None else (holders,) if isinstance(holders, str) else holders
