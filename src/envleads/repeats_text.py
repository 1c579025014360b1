"""Repeat detection's text features: normalised text, character-shingle hashes and sketches.

No configuration here: what is hashed and how a sketch is compared is the same for every
configuration (:mod:`envleads.repeats_config` gives the sizes). A sketch is the bottom-k of a text's
shingle hashes, padded with empty slots to a fixed length (see :mod:`envleads.repeats`).
"""
from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np

_MAX_HASH = np.uint64(0xFFFFFFFF)
_EMPTY_SLOT = np.uint32(0xFFFFFFFF)  # pads a signature whose text has fewer shingles than slots


# Placeholders left by masking ([电话], 【姓名】, {ID}) and long digit runs (unmasked phone or ID
# numbers) say nothing about the matter and must not make two reports look alike or different.
_PLACEHOLDER = re.compile(r"\[[^\[\]]{0,12}\]|【[^【】]{0,12}】|\{[^{}]{0,12}\}|<[^<>]{0,12}>|\d{7,}")
_NOT_KEPT = re.compile(r"[^0-9a-z\u3400-\u9fff]+")


def _canonical(text: str) -> str:
    """One spelling per character (half-width, simplified), as the rest of the pipeline sees it."""
    from envleads.text import normalise  # deterministic: no dictionary involved

    return normalise(text or "")


def normalise_text(text: str, canonical: bool = False) -> str:
    """Canonical, lower-cased text with placeholders removed and only CJK letters and digits kept.

    ``canonical``: the text already went through :func:`envleads.text.normalise`.
    """
    text = unicodedata.normalize("NFKC", text if canonical else _canonical(text)).lower()
    text = _PLACEHOLDER.sub(" ", text)
    return _NOT_KEPT.sub("", text)


def _seed_mix(seed: int) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha1(str(seed).encode("ascii")).digest()[:8], "little"))


def shingle_hashes(normalised: str, k: int, seed: int = 0) -> np.ndarray:
    """Distinct 32-bit hashes of the character k-grams of ``normalised``, ascending.

    Python's ``hash`` is salted per process, so a polynomial hash over code points is used instead
    (mixed with ``seed``): sketches must be equal across workers and restarts because leads carry
    them.
    """
    codes = np.frombuffer(normalised.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if codes.size == 0:
        return np.zeros(0, dtype=np.uint32)
    k = min(k, codes.size)
    n = codes.size - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * np.uint64(0x100000001B3) + codes[j:j + n]
        h ^= _seed_mix(seed)
        # splitmix64 finaliser spreads the bits before taking the low 32
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    h &= _MAX_HASH
    h[h == _MAX_HASH] -= np.uint64(1)  # the empty-slot value is never a shingle
    return np.unique(h).astype(np.uint32)


@lru_cache(maxsize=65536)
def _name_hashes(core: str, k: int, seed: int) -> np.ndarray:
    """:func:`shingle_hashes` of a name, cached: the same names are judged again and again.
    Read-only, since the cache hands the same array to every caller."""
    hashes = shingle_hashes(core, k, seed)
    hashes.flags.writeable = False
    return hashes


def text_sketch(hashes: np.ndarray, size: int) -> np.ndarray:
    """A signature of ``size`` slots: the smallest shingle hashes ascending (a bottom-k sketch),
    then empty slots when the text has fewer shingles. Fixed length, like the MinHash signatures
    leads carried before, so a lead's signature length still tells which configuration made it."""
    out = np.full(size, _EMPTY_SLOT, dtype=np.uint32)
    kept = np.sort(np.asarray(hashes, dtype=np.uint32))[:size]
    out[:kept.size] = kept
    return out


def _trim(signature: np.ndarray) -> np.ndarray:
    """The sketch in a signature: its slots before the first empty one."""
    signature = np.asarray(signature, dtype=np.uint32)
    return signature[:int(signature.searchsorted(_EMPTY_SLOT))] if signature.size and signature[-1] == _EMPTY_SLOT \
        else signature


def signature_similarity(left: np.ndarray, right: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two shingle sets behind two signatures.

    Exact when neither text has more shingles than the signature has slots; otherwise only the
    hashes below the lower of the two cut-offs are compared (an unbiased estimate).
    """
    left, right = np.asarray(left, dtype=np.uint32), np.asarray(right, dtype=np.uint32)
    if left.shape != right.shape:
        raise ValueError("signatures of different length cannot be compared")
    size = left.size
    left, right = _below_cut(_trim(left), _trim(right), size)
    if left.size == 0 or right.size == 0:
        return 0.0
    inter = np.intersect1d(left, right, assume_unique=True).size
    return inter / (left.size + right.size - inter)


def _sorted_membership(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``sorted_set`` (both ascending, distinct)."""
    if sorted_set.size == 0:
        return np.zeros(values.size, dtype=bool)
    positions = np.minimum(sorted_set.searchsorted(values), sorted_set.size - 1)
    return sorted_set[positions] == values


def _below_cut(left: np.ndarray, right: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    cut = None
    if left.size >= size:
        cut = left[-1]
    if right.size >= size:
        cut = right[-1] if cut is None else min(cut, right[-1])
    if cut is None:
        return left, right
    return left[:left.searchsorted(cut, side="right")], right[:right.searchsorted(cut, side="right")]


def signature_to_list(signature: np.ndarray) -> List[int]:
    """Plain ints for a lead record or JSON."""
    return np.asarray(signature).tolist()


def signature_from_list(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32)


def _signature_to_b64(signature: np.ndarray) -> str:
    return base64.b64encode(signature.astype("<u4").tobytes()).decode("ascii")


def _signature_from_b64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)


def is_sketch(signature: np.ndarray, size: int) -> bool:
    """``size`` slots holding ascending, distinct hashes, then empty slots (MinHash slots are not
    ascending)."""
    sketch = _trim(signature)
    return signature.size == size and bool(np.all(sketch[1:] > sketch[:-1]))


_SEPARATOR = "|"


def _entity_text(text: str, canonical: bool = False) -> str:
    """Normalised text that keeps a separator where punctuation or a placeholder was."""
    text = unicodedata.normalize("NFKC", text if canonical else _canonical(text)).lower()
    text = _PLACEHOLDER.sub(_SEPARATOR, text)
    return _NOT_KEPT.sub(_SEPARATOR, text)
