"""Shingle postings of a matter index in sorted numpy arrays instead of a Python dict.

A posting is one (shingle hash, matter) pair, packed as ``hash << 32 | slot`` in a uint64, where
the slot is a small integer standing for the matter. A dict of Python ints costs ~80 bytes per
posting and was most of the memory a live matter held (~12 of its ~16 KB); a packed posting costs
8. Lookups are vectorised over a complaint's whole sketch: document frequencies are range counts
(``searchsorted``), and the weight a complaint shares with each matter is one ``bincount``.

Layout: a large sorted ``base`` array, plus small sorted ``added`` and ``removed`` arrays of the
changes since the last merge (``added`` never overlaps ``base``; ``removed`` is a subset of it).
The changes are merged into ``base`` in one linear pass when they outgrow ``merge_at`` or a 32nd
of the base, so an insert copies the (small) change arrays and a merge, which copies the base,
comes once per that many changes.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Tuple

import numpy as np

_SLOT_BITS = np.uint64(32)
_SLOT_MASK = np.uint64(0xFFFFFFFF)
_EMPTY = np.zeros(0, dtype=np.uint64)
_SMALL = 16384  # below this many postings, merging by sort beats np.insert (measured: 5 against 14 us)


def _pack(hashes: np.ndarray, slot: int) -> np.ndarray:
    return (np.asarray(hashes, dtype=np.uint64) << _SLOT_BITS) | np.uint64(slot)


def _insert_sorted(array: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``array`` with ``values`` (sorted, none already in it) merged in, still sorted."""
    if values.size == 0:
        return array
    if array.size == 0:
        return values.copy()
    if array.size < _SMALL:  # a stable sort merges the two sorted runs, without np.insert's overhead
        return np.sort(np.concatenate((array, values)), kind="stable")
    return np.insert(array, array.searchsorted(values), values)


def _remove_sorted(array: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``array`` without those of ``values`` it holds (both sorted)."""
    if values.size == 0 or array.size == 0:
        return array
    positions = array.searchsorted(values[_contains(array, values)])
    if not positions.size:
        return array
    keep = np.ones(array.size, dtype=bool)
    keep[positions] = False
    return array[keep]


def _contains(array: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the sorted ``array``."""
    if array.size == 0 or values.size == 0:
        return np.zeros(values.size, dtype=bool)
    positions = np.minimum(array.searchsorted(values), array.size - 1)
    return array[positions] == values


def _expand(starts: np.ndarray, ends: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of all ``[start, end)`` ranges concatenated, and the range each index came from."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(lengths.size), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return starts[owner] + offsets, owner


class ShinglePostings:
    """Which matters hold each shingle hash, for document frequencies and candidate search."""

    def __init__(self, merge_at: int = 8192):
        self._base = _EMPTY
        self._added = _EMPTY
        self._removed = _EMPTY
        self._merge_at = merge_at
        self._slot_of: Dict[str, int] = {}
        self._cluster_of: List[str] = []
        self._free: List[int] = []
        # per slot: may have postings in ``removed`` (until the next merge applies them), so a walk
        # checks only those postings against ``removed`` instead of all it found
        self._dirty = np.zeros(1024, dtype=bool)
        self._version = 0  # bumped by every change: a Lookup of an older version is stale

    def __len__(self) -> int:
        """Number of postings."""
        return self._base.size + self._added.size - self._removed.size

    def nbytes(self) -> int:
        return self._base.nbytes + self._added.nbytes + self._removed.nbytes

    def _slot(self, cluster_id: str) -> int:
        slot = self._slot_of.get(cluster_id)
        if slot is None:
            if self._free:
                slot = self._free.pop()
                self._cluster_of[slot] = cluster_id
            else:
                slot = len(self._cluster_of)
                self._cluster_of.append(cluster_id)
                if slot >= self._dirty.size:
                    self._dirty = np.concatenate((self._dirty, np.zeros(self._dirty.size, dtype=bool)))
            self._slot_of[cluster_id] = slot
        return slot

    def add(self, cluster_id: str, hashes: np.ndarray) -> None:
        """Records that the matter holds ``hashes`` (sorted, distinct, none recorded yet)."""
        if not len(hashes):
            return
        packed = _pack(hashes, self._slot(cluster_id))
        in_removed = _contains(self._removed, packed)
        if in_removed.any():  # back in base: the removal is undone
            self._removed = _remove_sorted(self._removed, packed[in_removed])
            packed = packed[~in_removed]
        self._added = _insert_sorted(self._added, packed)
        self._version += 1
        self._maybe_merge()

    def remove(self, cluster_id: str, hashes: np.ndarray) -> None:
        """Records that the matter no longer holds ``hashes`` (sorted, distinct, all held)."""
        slot = self._slot_of.get(cluster_id)
        if slot is None or not len(hashes):
            return
        packed = _pack(hashes, slot)
        in_added = _contains(self._added, packed)
        if in_added.any():
            self._added = _remove_sorted(self._added, packed[in_added])
        # a held posting not in ``added`` is in ``base`` and not yet in ``removed``: no search of
        # the base (millions of postings) is needed to know it
        rest = packed[~in_added]
        if rest.size:
            self._dirty[slot] = True
        self._removed = _insert_sorted(self._removed, rest)
        self._version += 1
        self._maybe_merge()

    def release(self, cluster_id: str) -> None:
        """Frees the matter's slot; call after all its hashes were removed."""
        slot = self._slot_of.pop(cluster_id, None)
        if slot is not None:
            # postings of the slot may still be in ``removed`` (it stays dirty until the merge): a
            # reuse that adds one of them back undoes that removal, which is right, since the
            # packed pair means the new holder
            self._free.append(slot)

    def _maybe_merge(self) -> None:
        # changes up to a 32nd of the base: a merge copies the base, an insert copies the changes
        if self._added.size + self._removed.size > max(self._merge_at, self._base.size >> 5):
            self._merge()

    def _merge(self) -> None:
        if self._removed.size:
            self._base = _remove_sorted(self._base, self._removed)
            self._removed = _EMPTY
            self._dirty[:] = False
        if self._added.size:
            self._base = _insert_sorted(self._base, self._added)
            self._added = _EMPTY

    def _bounds(self, hashes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        lows = np.asarray(hashes, dtype=np.uint64) << _SLOT_BITS
        return lows, lows | _SLOT_MASK

    def document_frequency(self, hashes: np.ndarray) -> np.ndarray:
        """How many matters hold each of ``hashes`` (int64, one per hash)."""
        return self.lookup(hashes).df

    def lookup(self, hashes: np.ndarray) -> "Lookup":
        """The document frequency of each of ``hashes``, with where their postings lie, for
        :meth:`shared_weight` (valid until the postings change): a complaint's candidate search
        walks the very ranges its frequencies counted, and the binary searches through a large
        index were half of that search's cost."""
        lows, highs = self._bounds(hashes)
        df = np.zeros(lows.size, dtype=np.int64)
        ranges = []
        for array, sign in ((self._base, 1), (self._added, 1), (self._removed, -1)):
            if array.size:
                starts, ends = array.searchsorted(lows), array.searchsorted(highs, side="right")
                df += sign * (ends - starts)
                if sign > 0:
                    ranges.append((array, starts, ends))
        return Lookup(df, ranges, self._version)

    def shared_weight(self, lookup: "Lookup", weights: np.ndarray, cap: float,
                      floor: float = float("-inf")) -> Tuple[List[str], np.ndarray, float]:
        """The weight each matter shares with a complaint's hashes (``lookup``: their
        :meth:`lookup`, ``weights`` aligned with them), over hashes held by at most ``cap`` matters,
        and the weight of the hashes skipped as too common.

        Returns the matters whose shared weight plus the skipped weight reaches ``floor`` (in a
        large index most sharers share a shingle or two, and naming them all was a cost linear in
        its size), the weight each shares (aligned), and the skipped weight. Sums run in the order
        of the hashes, as a loop over them would, so results do not depend on how the postings
        happen to be split between the arrays.
        """
        if lookup.version != self._version:
            raise ValueError("the postings changed since this lookup")
        weights = np.asarray(weights, dtype=np.float64)
        df = lookup.df
        common = df > cap
        skipped = float(sum(weights[common].tolist()))
        rare = np.flatnonzero((df > 0) & ~common)
        if rare.size == 0:
            return [], np.zeros(0, dtype=np.float64), skipped
        packed_parts, owner_parts = [], []
        for array, starts, ends in lookup.ranges:
            index, owner = _expand(starts[rare], ends[rare])
            packed_parts.append(array[index])
            owner_parts.append(owner)
        packed = np.concatenate(packed_parts)
        owner = np.concatenate(owner_parts)
        slots = (packed & _SLOT_MASK).astype(np.int64)
        if self._removed.size:
            suspect = np.flatnonzero(self._dirty[slots])
            if suspect.size:
                gone = suspect[_contains(self._removed, packed[suspect])]
                if gone.size:
                    keep = np.ones(packed.size, dtype=bool)
                    keep[gone] = False
                    slots, owner = slots[keep], owner[keep]
        if len(packed_parts) > 1:
            order = np.argsort(owner, kind="stable")
            slots, owner = slots[order], owner[order]
        # bincount adds in input order, so each matter's sum is the sequential sum in hash order
        sums = np.bincount(slots, weights=weights[rare][owner])
        present = np.flatnonzero(np.bincount(slots))
        present = present[sums[present] >= floor - skipped]
        cluster_of = self._cluster_of
        return [cluster_of[slot] for slot in present.tolist()], sums[present], skipped


class Lookup(NamedTuple):
    """:meth:`ShinglePostings.lookup`: document frequencies and the postings' ranges per hash."""

    df: np.ndarray
    ranges: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]  # (array, starts, ends) of base and added
    version: int
