"""Repeat-petition detection: which earlier matter, if any, a complaint reports again.

The same problem at the same place is reported again and again, by the same and by other people,
in other words and often typed differently. Each complaint gets a ``cluster_id`` (the matter) and a
``duplicate_of`` (the first complaint of that matter, ``None`` for the first one itself).

Pure functions and a plain-Python index; no Beam import. The stage keys complaints by
:func:`blocking_key` (the city, from the resolved region or else the receiving office's
jurisdiction), keeps one :class:`MatterIndex` per key (``to_state``/``from_state``), calls
:meth:`MatterIndex.assign` per complaint in event-time order and :meth:`MatterIndex.expire` on a
timer. A complaint with no known city (key ``"unknown"``) can report a matter of any city of its
province (or of any city when not even its province is known, :func:`unplaced_scope`), so it is
assigned last, across the ``"unknown"`` key's index and those keys' (:func:`assign_unplaced`).
A complaint delivered again (at-least-once delivery, a replayed round) keeps its matter and is not
counted again: each matter remembers its first and most recent complaint ids
(:meth:`MatterIndex.redelivery`).

A matter is one problem source at one place. What joins a complaint to a live matter, strongest
evidence first (:meth:`MatterIndex._evaluate`):

* both name the same source (company, plant, site, shop), also written by sound (宏锦 / 鸿锦), with
  or without its trade, district or town;
* both name the same precise place (compound, street address "X路12号", river, school) and share a
  pollution type (and some text when a source is named there);
* the same reporter writes again, with a shared type or some text in common;
* the text alone is very similar, with a shared type.

A road, town, village or park alone never joins two complaints; environmental and
non-environmental complaints never share a matter (unless one restates the other).

Text similarity is a weighted Jaccard similarity of character-shingle sets: a shingle weighs by
its rarity among the index's live matters (inverse document frequency learned online, so bounded
by the window). Phrases every complaint uses ("严重影响居民休息", "希望你们派人来看看") count
little; names count much. Sets are bottom-k sketches, exact for texts shorter than the sketch, so
results do not hang on hash luck. A name that several live matters share, or whose every shingle
is common, identifies none of them.

Never joined: complaints resolved to different counties (or cities, or provinces); reports more
than ``window_days`` apart; complaints that each name a different source of one kind, unless
their texts are nearly identical. Thresholds, weights and word lists live in
``data/repeats.json``; quality is measured only through the batch contract
(:mod:`envleads.repeats_evaluation`).

Modules:

* :mod:`envleads.repeats_text`: normalised text, shingle hashes, sketches and their similarity;
* :mod:`envleads.repeats_config`: :class:`RepeatConfig` and :func:`load_repeat_config`;
* :mod:`envleads.repeats_features`: :class:`MatterFeatures` (:func:`matter_features`), names and
  their comparison by sound, region codes and :func:`blocking_key`;
* :mod:`envleads.repeats_matters`: the live matters of one key, their indexes and state rows;
* :mod:`envleads.repeats_index`: :class:`MatterIndex`, assignment and its evidence;
* this module: placement across keys (:class:`KeyIndexes`, :func:`assign_unplaced`) and the whole
  stage in bounded form (:func:`assign_in_blocks`); clustering scores are in
  :mod:`envleads.repeats_evaluation`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from envleads.repeats_config import RepeatConfig, default_config
from envleads.repeats_features import UNKNOWN_BLOCK, MatterFeatures, blocking_key, in_scope, matter_features, unplaced_scope
from envleads.repeats_index import Assignment, MatterIndex, _assign_across, _name_keys
from envleads.repeats_matters import _COMPLAINT, _ENTITY, _REPORTER, _TITLE, _TRADE, _Directory, _holders

# what the engines, tests and benches import from here besides the above (their homes are the modules
# named in the docstring)
from envleads.config import ConfigError  # noqa: F401
from envleads.repeats_config import load_repeat_config  # noqa: F401
from envleads.repeats_evaluation import clustering_scores  # noqa: F401
from envleads.repeats_features import _cores_match, extract_entities, region_relation  # noqa: F401
from envleads.repeats_index import cluster_id_for  # noqa: F401
from envleads.repeats_text import is_sketch, signature_from_list, signature_similarity, signature_to_list  # noqa: F401


def assign_unplaced(indexes: Dict[str, MatterIndex], scope: str, complaint_id: str, event_time_ms: int,
                    features: MatterFeatures, reporter_key: Union[str, Sequence[str], None] = None,
                    config: Optional[RepeatConfig] = None) -> Tuple[str, Assignment]:
    """Assigns a complaint of no known city (key ``"unknown"``, of :func:`unplaced_scope`
    ``scope``) across the blocking keys: against the ``"unknown"`` key's index (created in
    ``indexes`` when missing) and every city key's index of its scope, so that a report placed by
    no district or city still meets the matter its placed reports opened (the blocking must not
    split a matter). Every engine calls this one policy. With :class:`KeyIndexes`, only the keys
    its directory says hold one of the complaint's names, reporters or its id are visited (the
    others could not take it: the same assignment at a fraction of the cost). Returns the key
    whose index holds the complaint's matter, and the assignment.
    """
    home = indexes.get(UNKNOWN_BLOCK)
    if home is None:
        home = indexes[UNKNOWN_BLOCK] = MatterIndex(config, UNKNOWN_BLOCK)
    features, reporters = home._prepared(features, reporter_key)
    keys = _name_keys(home, features)
    blocks = indexes.holding(keys, reporters, complaint_id) if isinstance(indexes, KeyIndexes) else indexes
    others = [indexes[block] for block in sorted(blocks) if block != UNKNOWN_BLOCK and in_scope(block, scope)]
    index, assignment = _assign_across(home, others, complaint_id, event_time_ms, features, reporters, keys)
    return index.block, assignment


class KeyIndexes(dict):
    """The matter indexes of the blocking keys (``{key: MatterIndex}``, used as a dict), with a
    directory from every name key, reporter and complaint id to the keys whose index holds it,
    kept in step by the indexes themselves as they change: :func:`assign_unplaced` then visits
    only the city keys that could take a complaint, not every key of its scope (about 280 with no
    province known). An index belongs to one such mapping at a time."""

    def __init__(self, indexes: Optional[Mapping[str, MatterIndex]] = None):
        super().__init__()
        self._directory: _Directory = {kind: {} for kind in (_ENTITY, _TITLE, _REPORTER, _COMPLAINT, _TRADE)}
        self.update(indexes or {})

    def __setitem__(self, block: str, index: MatterIndex) -> None:
        old = self.get(block)
        if old is index:
            return
        if index._directory is not None:
            raise ValueError(f"index of {index.block} is in another KeyIndexes already")
        if old is not None:  # first out: the two may hold the same keys
            old._attach(None, block)
        index._attach(self._directory, block)
        super().__setitem__(block, index)

    def __delitem__(self, block: str) -> None:
        self[block]._attach(None, block)
        super().__delitem__(block)

    def setdefault(self, block: str, index: MatterIndex) -> MatterIndex:  # type: ignore[override]
        if block not in self:
            self[block] = index
        return self[block]

    def update(self, indexes: Mapping[str, MatterIndex] = (), **more: MatterIndex) -> None:  # type: ignore[override]
        for block, index in {**dict(indexes), **more}.items():
            self[block] = index

    def pop(self, block: str, *default):  # type: ignore[override]
        if block not in self:
            return dict.pop(self, block, *default)
        index = self[block]
        del self[block]
        return index

    def popitem(self):
        block = next(reversed(self))
        return block, self.pop(block)

    def clear(self) -> None:
        for index in self.values():  # every index leaves: no entry to take out one by one
            index._directory, index._directory_block = None, ""
        for holders in self._directory.values():
            holders.clear()
        super().clear()

    def holding(self, keys: Tuple[Tuple[str, ...], ...], reporters: Sequence[str],
                complaint_id: str) -> set:
        """The keys whose index holds one of the entity keys ``keys[0]``, title entity keys
        ``keys[1]``, trade name keys ``keys[2]``, ``reporters`` or ``complaint_id``: the only keys
        where the complaint can be a redelivery or find a matter by name or reporter
        (:meth:`MatterIndex._names_held`)."""
        found: set = set()
        for kind, wanted in ((_ENTITY, keys[0]), (_TITLE, keys[1]), (_TRADE, keys[2]), (_REPORTER, reporters),
                             (_COMPLAINT, (complaint_id,))):
            directory = self._directory[kind]
            for key in wanted:
                found.update(_holders(directory, key))
        return found


# --------------------------------------------------------------------------------------------
# Evaluation on labelled messages
# --------------------------------------------------------------------------------------------

def _event_ms(received_at: Optional[str]) -> int:
    if not received_at:
        return 0
    dt = datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _record_time(record: Mapping[str, Any]) -> int:
    if record.get("received_at_ms") is not None:
        return int(record["received_at_ms"])
    return _event_ms(record.get("received_at"))


def _assign_all(index: MatterIndex, records: Sequence[Mapping[str, Any]],
                config: RepeatConfig) -> List[Tuple[str, Assignment]]:
    out = []
    for rec in sorted(records, key=lambda r: (_record_time(r), str(r["id"]))):
        now = _record_time(rec)
        index.expire(now)
        feats = matter_features(rec.get("text") or "", rec.get("title") or "",
                                (), rec.get("region_adcode"),
                                rec.get("types") or (), config)
        out.append((str(rec["id"]), index.assign(str(rec["id"]), now, feats, rec.get("reporter_key"))))
    return out


def assign_in_blocks(records: Sequence[Mapping[str, Any]],
                     config: Optional[RepeatConfig] = None) -> List[Tuple[str, Assignment]]:
    """The deduplication stage in bounded form: city keys first, then the ``"unknown"`` key.

    Records are grouped by :func:`blocking_key` of their ``region_adcode`` (or else their
    ``jurisdiction_adcode``); each city key runs its own index (in a pipeline: in parallel). The
    records of no known city are then assigned per scope (their province, or anywhere when no
    province is known, :func:`unplaced_scope`) with the engines' policy, :func:`assign_unplaced`,
    across the final state of every city key of the scope, because they may report a matter
    anywhere there. Fields as in :func:`cluster_records`. Returns ``(id, Assignment)`` per record,
    city keys first.
    """
    config = config or default_config()
    blocks: Dict[str, List[Mapping[str, Any]]] = {}
    for rec in records:
        key = blocking_key(rec.get("region_adcode"), rec.get("jurisdiction_adcode"))
        blocks.setdefault(key, []).append(rec)
    out: List[Tuple[str, Assignment]] = []
    states: Dict[str, Dict[str, Any]] = {}
    for key in sorted(k for k in blocks if k != UNKNOWN_BLOCK):
        index = MatterIndex(config, key)
        out.extend(_assign_all(index, blocks[key], config))
        states[key] = index.to_state()
    scopes: Dict[str, List[Mapping[str, Any]]] = {}
    for rec in blocks.get(UNKNOWN_BLOCK, ()):
        scopes.setdefault(unplaced_scope(rec.get("region_adcode"), rec.get("jurisdiction_adcode")), []).append(rec)
    for scope in sorted(scopes):
        indexes = KeyIndexes({key: MatterIndex.from_state(state, config, key)
                              for key, state in states.items() if in_scope(key, scope)})
        for rec in sorted(scopes[scope], key=lambda r: (_record_time(r), str(r["id"]))):
            feats = matter_features(rec.get("text") or "", rec.get("title") or "", (), rec.get("region_adcode"),
                                    rec.get("types") or (), config)
            out.append((str(rec["id"]), assign_unplaced(indexes, scope, str(rec["id"]), _record_time(rec), feats,
                                                        rec.get("reporter_key"), config)[1]))
    return out
