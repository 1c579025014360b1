"""Repeat-petition detection: which earlier matter, if any, a complaint reports again.

The same problem at the same place is reported again and again, by the same and by other people,
in other words and often typed differently. Each complaint gets a ``cluster_id`` (the matter) and a
``duplicate_of`` (the first complaint of that matter, ``None`` for the first one itself).

Pure functions and a plain-Python index; no Beam import. The streaming stage keys complaints by
:func:`blocking_key`, keeps one :class:`MatterIndex` per key in state (``to_state``/``from_state``),
calls :meth:`MatterIndex.assign` per complaint in event-time order and :meth:`MatterIndex.expire`
on a timer. A complaint joins a matter when

* the text is similar enough on its own (MinHash estimate of character-shingle Jaccard), or
* it names the same place or party (compound, company, village, site, school) *and* shares at least
  a little text.

Naming a *different* compound or company of the same kind counts against a join; sharing only a road
counts a little for it; a shared pollution type or reporter is a small bonus, never a requirement,
because one matter is often typed differently by different reporters. Thresholds and weights live in
``data/repeats.json``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from envleads.config import ConfigError, data_path, load_json_config

LOG = logging.getLogger(__name__)

CONFIG_FILE = "repeats.json"
UNKNOWN_BLOCK = "unknown"
_MS_PER_DAY = 86_400_000
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64(0xFFFFFFFF)
_EMPTY_SLOT = np.uint32(0xFFFFFFFF)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

class EntityClass(NamedTuple):
    name: str
    strong: bool  # a shared strong entity identifies a matter; a road alone does not
    min_core_chars: int
    suffixes: Tuple[str, ...]


@dataclass(frozen=True)
class RepeatConfig:
    """Typed view of ``data/repeats.json``."""

    version: str
    window_days: int
    num_perm: int
    shingle_chars: int
    seed: int
    max_members_per_matter: int
    max_entities_per_matter: int
    join_score: float
    text_only_similarity: float
    min_text_with_entity: float
    min_text_with_title_entity: float
    weights: Mapping[str, float]
    entity_classes: Tuple[EntityClass, ...]
    max_name_chars: int
    not_followed_by: Mapping[str, str]
    boundaries: Tuple[str, ...]
    generic_cores: frozenset = field(default_factory=frozenset)

    @property
    def window_ms(self) -> int:
        return self.window_days * _MS_PER_DAY


_WEIGHT_KEYS = ("text", "shared_strong_entity", "shared_title_entity", "shared_weak_entity", "entity_conflict",
                "shared_type", "same_reporter")


def load_repeat_config(path: Optional[str] = None) -> RepeatConfig:
    """Loads and validates the repeat-detection configuration (packaged file by default).

    Args:
        path: a JSON file shaped like ``data/repeats.json``; ``None`` for the packaged one.
    """
    path = path or data_path(CONFIG_FILE)
    doc = load_json_config(path, required=("version", "window_days", "num_perm", "shingle_chars",
                                           "seed", "thresholds", "weights", "entities"))

    def need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in mapping:
            raise ConfigError(f"{path}: missing key {where}{key!r}")
        return mapping[key]

    thresholds, weights, entities = doc["thresholds"], doc["weights"], doc["entities"]
    classes = []
    for name, spec in need(entities, "classes", "entities.").items():
        classes.append(EntityClass(
            name=name, strong=bool(need(spec, "strong", f"entities.classes.{name}.")),
            min_core_chars=int(spec.get("min_core_chars", 2)),
            # longest first so that 有限公司 wins over 公司
            suffixes=tuple(sorted((s.lower() for s in need(spec, "suffixes", f"entities.classes.{name}.")),
                                  key=len, reverse=True))))
    num_perm = int(doc["num_perm"])
    if not 16 <= num_perm <= 512:
        raise ConfigError(f"{path}: num_perm must be in [16, 512], got {num_perm}")
    if int(doc["shingle_chars"]) < 1:
        raise ConfigError(f"{path}: shingle_chars must be >= 1")
    return RepeatConfig(
        version=str(doc["version"]),
        window_days=int(doc["window_days"]),
        num_perm=num_perm,
        shingle_chars=int(doc["shingle_chars"]),
        seed=int(doc["seed"]),
        max_members_per_matter=max(1, int(doc.get("max_members_per_matter", 12))),
        max_entities_per_matter=max(1, int(doc.get("max_entities_per_matter", 24))),
        join_score=float(need(thresholds, "join_score", "thresholds.")),
        text_only_similarity=float(need(thresholds, "text_only_similarity", "thresholds.")),
        min_text_with_entity=float(need(thresholds, "min_text_with_entity", "thresholds.")),
        min_text_with_title_entity=float(thresholds.get("min_text_with_title_entity",
                                                        thresholds["min_text_with_entity"])),
        weights={key: float(weights.get(key, 0.0)) for key in _WEIGHT_KEYS},
        entity_classes=tuple(classes),
        max_name_chars=int(entities.get("max_name_chars", 8)),
        not_followed_by=dict(entities.get("not_followed_by", {})),
        boundaries=tuple(sorted(entities.get("boundaries", []), key=len, reverse=True)),
        generic_cores=frozenset(entities.get("generic_cores", [])),
    )


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

# Placeholders left by masking ([电话], 【姓名】, {ID}) and long digit runs (unmasked phone or ID
# numbers) say nothing about the matter and must not make two reports look alike or different.
_PLACEHOLDER = re.compile(r"\[[^\[\]]{0,12}\]|【[^【】]{0,12}】|\{[^{}]{0,12}\}|<[^<>]{0,12}>|\d{7,}")
_NOT_KEPT = re.compile(r"[^0-9a-z\u3400-\u9fff]+")


def normalise_text(text: str) -> str:
    """Lower-cased NFKC text with placeholders removed and only CJK letters and digits kept."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _PLACEHOLDER.sub(" ", text)
    return _NOT_KEPT.sub("", text)


class MatterFeatures(NamedTuple):
    """What identifies a complaint's matter: text fingerprint, named places/parties, types, region."""

    signature: np.ndarray  # uint32[num_perm] MinHash of character shingles
    entities: Tuple[str, ...]  # sorted "class:core" strings, e.g. "compound:翠湖"
    title_entities: Tuple[str, ...]  # those named in the title: what the complaint is about
    types: Tuple[str, ...]
    region_adcode: Optional[str]
    shingle_count: int


class _Permutations:
    """Universal hash parameters, derived from the seed so every worker computes equal signatures."""

    _cache: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def get(cls, num_perm: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        key = (num_perm, seed)
        if key not in cls._cache:
            rng = np.random.RandomState(seed % (2 ** 32))
            a = rng.randint(1, 2 ** 32 - 1, size=num_perm, dtype=np.uint64)
            b = rng.randint(0, 2 ** 32 - 1, size=num_perm, dtype=np.uint64)
            cls._cache[key] = (a, b)
        return cls._cache[key]


def shingle_hashes(normalised: str, k: int) -> np.ndarray:
    """Distinct 32-bit hashes of the character k-grams of ``normalised`` (deterministic, vectorised).

    Python's ``hash`` is salted per process, so a polynomial hash over code points is used instead:
    signatures must be equal across workers and restarts because leads carry them.
    """
    codes = np.frombuffer(normalised.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if codes.size == 0:
        return np.zeros(0, dtype=np.uint64)
    k = min(k, codes.size)
    n = codes.size - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * np.uint64(0x100000001B3) + codes[j:j + n]
        # splitmix64 finaliser spreads the bits before taking the low 32
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return np.unique(h & _MAX_HASH)


def minhash_signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signature (uint32[num_perm]); an empty shingle set gives all-empty slots."""
    if hashes.size == 0:
        return np.full(num_perm, _EMPTY_SLOT, dtype=np.uint32)
    a, b = _Permutations.get(num_perm, seed)
    with np.errstate(over="ignore"):
        values = (hashes[:, None] * a[None, :] + b[None, :]) % _MERSENNE_PRIME
    return (values & _MAX_HASH).min(axis=0).astype(np.uint32)


def signature_similarity(left: np.ndarray, right: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two shingle sets behind two signatures."""
    if left.shape != right.shape:
        raise ValueError("signatures of different length cannot be compared")
    return float(np.count_nonzero(left == right)) / left.size


def signature_to_list(signature: np.ndarray) -> List[int]:
    """Plain ints for a lead record or JSON."""
    return [int(v) for v in signature]


def signature_from_list(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32)


def _signature_to_b64(signature: np.ndarray) -> str:
    return base64.b64encode(signature.astype("<u4").tobytes()).decode("ascii")


def _signature_from_b64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)


_SEPARATOR = "|"


def _entity_text(text: str) -> str:
    """Normalised text that keeps a separator where punctuation or a placeholder was."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _PLACEHOLDER.sub(_SEPARATOR, text)
    return _NOT_KEPT.sub(_SEPARATOR, text)


def extract_entities(text: str, config: RepeatConfig) -> List[str]:
    """Named places and parties by suffix rules, as sorted ``class:core`` strings.

    The core is the name without its suffix and without what precedes it up to the nearest boundary
    (punctuation, an administrative unit, a road, a preposition), so that "某区劳动路翠湖小区" and
    "翠湖小区" give the same ``compound:翠湖``. A candidate with no boundary within
    ``max_name_chars`` is dropped (without a word segmenter it would be a run of the sentence, not a
    name), and so are generic cores (我们小区, 烧烤店): they name a kind of thing, not a matter.
    """
    norm = _entity_text(text)
    found = set()
    limit = config.max_name_chars
    for cls in config.entity_classes:
        for suffix in cls.suffixes:
            start = 0
            while True:
                pos = norm.find(suffix, start)
                if pos < 0:
                    break
                start = pos + 1
                end = pos + len(suffix)
                banned = config.not_followed_by.get(suffix, "")
                if banned and end < len(norm) and norm[end] in banned:
                    continue
                window = norm[max(0, pos - limit - 1):pos]
                bounded = pos - len(window) == 0 or _SEPARATOR in window
                core = _cut_at_boundary(window.rsplit(_SEPARATOR, 1)[-1], config.boundaries)
                if len(core) < len(window.rsplit(_SEPARATOR, 1)[-1]):
                    bounded = True
                core = core.lstrip("0123456789")
                if not bounded or len(core) > limit:
                    continue
                if len(core) < cls.min_core_chars or core in config.generic_cores:
                    continue
                found.add(f"{cls.name}:{core}")
    return sorted(found)


def _cut_at_boundary(window: str, boundaries: Tuple[str, ...]) -> str:
    cut = 0
    for boundary in boundaries:
        idx = window.rfind(boundary)
        if idx >= 0 and idx + len(boundary) > cut:
            cut = idx + len(boundary)
    return window[cut:]


def matter_features(text: str, title: str, tokens: Sequence[str], region_adcode: Optional[str],
                    types: Sequence[str], config: Optional[RepeatConfig] = None) -> MatterFeatures:
    """Computes the features :meth:`MatterIndex.assign` compares.

    Args:
        text: the masked complaint text.
        title: the complaint title, often the most concise statement of the matter.
        tokens: segmented tokens; currently unused by the signature (character shingles do not
            depend on the dictionary, so signatures stay stable when the dictionary changes).
        region_adcode: the resolved GB/T 2260 code, kept for the caller's blocking key.
        types: predicted pollution types (a weak signal only).
        config: defaults to the packaged configuration.
    """
    config = config or default_config()
    del tokens  # see docstring: signatures must not change with the user dictionary
    full = f"{title or ''}。{text or ''}"
    hashes = shingle_hashes(normalise_text(full), config.shingle_chars)
    return MatterFeatures(
        signature=minhash_signature(hashes, config.num_perm, config.seed),
        entities=tuple(extract_entities(full, config)),
        title_entities=tuple(extract_entities(title or "", config)),
        types=tuple(types or ()),
        region_adcode=region_adcode,
        shingle_count=int(hashes.size),
    )


_DEFAULT_CONFIG: Optional[RepeatConfig] = None


def default_config() -> RepeatConfig:
    global _DEFAULT_CONFIG
    if _DEFAULT_CONFIG is None:
        _DEFAULT_CONFIG = load_repeat_config()
    return _DEFAULT_CONFIG


def blocking_key(region_adcode: Optional[str]) -> str:
    """The coarse key the stream is partitioned by: the city-level code (first 4 digits + "00").

    A report that resolves to a county and a repeat that only names the city must meet in one
    index, so the key is the city, not the county. The price: a city's matters share one index
    (more comparisons, a little more risk of joining two matters with similar text), and a repeat
    whose region resolves to another city, or to nothing, is not found. Province-level-only or
    unresolved complaints go to ``"unknown"`` (one shared index, bounded by the window).
    Municipalities (11, 12, 31, 50) are one key per municipality, because their "city" level is a
    placeholder and reporters name a district one time and only the city the next.
    """
    if not region_adcode:
        return UNKNOWN_BLOCK
    code = str(region_adcode).strip()
    if len(code) < 4 or not code[:6].isdigit():
        return UNKNOWN_BLOCK
    if code[:2] in ("11", "12", "31", "50"):
        return code[:2] + "0000"
    if code[2:4] == "00":
        return UNKNOWN_BLOCK
    return code[:4] + "00"


# --------------------------------------------------------------------------------------------
# The matter index
# --------------------------------------------------------------------------------------------

class Assignment(NamedTuple):
    cluster_id: str
    duplicate_of: Optional[str]  # first complaint of the matter; None when this one starts it
    is_new_matter: bool
    similarity: float  # estimated text similarity to the closest report of the matter
    matched_on: str  # "new", "text", "text+entity", "text+title_entity", "redelivery"


def cluster_id_for(first_complaint_id: str) -> str:
    """Stable matter id derived from the first complaint id (equal on every worker and replay)."""
    return "m-" + hashlib.sha1(first_complaint_id.encode("utf-8")).hexdigest()[:16]


def _reporter_digest(reporter_key: str) -> str:
    # the reporter key is already pseudonymous; a short digest keeps state small
    return hashlib.sha1(reporter_key.encode("utf-8")).hexdigest()[:12]


@dataclass
class _Matter:
    cluster_id: str
    first_complaint_id: str
    first_seen_ms: int
    last_seen_ms: int
    report_count: int
    rows: List[int]  # rows of the index's signature pool; rows[0] is the first report's
    entities: Dict[str, int]
    types: Dict[str, int]
    reporters: List[str]
    title_entities: List[str] = field(default_factory=list)


class MatterIndex:
    """The matters of one blocking key seen within the time window, and assignment against them.

    Keeps up to ``max_members_per_matter`` signatures per matter (the first report's and the most
    recent), so a matter that drifts in wording is still found (single linkage) while memory stays
    bounded. Signatures live in one numpy pool, so comparing a complaint with every live matter is one
    vectorised equality test; at a key's size (hundreds to a few thousand live matters) this is cheaper
    than LSH banding and has no banding false negatives near the low thresholds that entity matches
    allow.
    """

    def __init__(self, config: Optional[RepeatConfig] = None):
        self.config = config or default_config()
        self._strong = {c.name for c in self.config.entity_classes if c.strong}
        self._matters: Dict[str, _Matter] = {}
        p = self.config.num_perm
        self._pool = np.zeros((16, p), dtype=np.uint32)
        self._owner: List[Optional[str]] = [None] * 16
        self._free: List[int] = list(range(15, -1, -1))
        self._owner_arr_dirty = True
        self._owner_codes = np.full(16, -1, dtype=np.int64)
        self._matter_codes: Dict[str, int] = {}
        self._code_matter: List[Optional[str]] = []
        # tail of a strong entity's core -> matters naming it (a superset of entity matches)
        self._entity_index: Dict[str, set] = {}
        # title entity -> matters whose titles name it: a matter restated in other words is still
        # found when its texts share no shingle at all
        self._title_index: Dict[str, set] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._matters)

    def __contains__(self, cluster_id: object) -> bool:
        return cluster_id in self._matters

    def _alloc_row(self, cluster_id: str, signature: np.ndarray) -> int:
        if not self._free:
            old = self._pool.shape[0]
            self._pool = np.vstack([self._pool, np.zeros_like(self._pool)])
            self._owner.extend([None] * old)
            self._owner_codes = np.concatenate([self._owner_codes, np.full(old, -1, dtype=np.int64)])
            self._free.extend(range(2 * old - 1, old - 1, -1))
        row = self._free.pop()
        self._pool[row] = signature
        self._owner[row] = cluster_id
        self._owner_codes[row] = self._code(cluster_id)
        return row

    def _release_row(self, row: int) -> None:
        self._owner[row] = None
        self._owner_codes[row] = -1
        self._free.append(row)

    def _code(self, cluster_id: str) -> int:
        code = self._matter_codes.get(cluster_id)
        if code is None:
            code = len(self._code_matter)
            self._matter_codes[cluster_id] = code
            self._code_matter.append(cluster_id)
        return code

    def _drop(self, cluster_id: str) -> None:
        matter = self._matters.pop(cluster_id)
        for row in matter.rows:
            self._release_row(row)
        for entity in matter.entities:
            self._unindex_entity(cluster_id, entity)
        for entity in matter.title_entities:
            holders = self._title_index.get(entity)
            if holders is not None:
                holders.discard(cluster_id)
                if not holders:
                    del self._title_index[entity]
        code = self._matter_codes.pop(cluster_id, None)
        if code is not None:
            self._code_matter[code] = None
        if len(self._code_matter) > 64 and len(self._matter_codes) * 2 < len(self._code_matter):
            self._recode()

    def _recode(self) -> None:
        # keeps the code table proportional to live matters when many have expired
        self._matter_codes, self._code_matter = {}, []
        for row, owner in enumerate(self._owner):
            self._owner_codes[row] = -1 if owner is None else self._code(owner)

    def _add_member(self, matter: _Matter, signature: np.ndarray) -> None:
        limit = self.config.max_members_per_matter
        if len(matter.rows) < limit:
            matter.rows.append(self._alloc_row(matter.cluster_id, signature))
        else:
            # keep the first report's signature; the oldest of the recent ones makes room
            row = matter.rows.pop(1) if limit > 1 else matter.rows.pop(0)
            self._pool[row] = signature
            matter.rows.append(row)

    def _entity_key(self, entity: str) -> Optional[str]:
        cls, core = _split(entity)
        # _cores_match needs equal cores or a shared tail of >= 3 characters
        return core[-3:] if cls in self._strong else None

    def _index_entity(self, cluster_id: str, entity: str) -> None:
        key = self._entity_key(entity)
        if key is not None:
            self._entity_index.setdefault(key, set()).add(cluster_id)

    def _unindex_entity(self, cluster_id: str, entity: str) -> None:
        key = self._entity_key(entity)
        holders = self._entity_index.get(key) if key is not None else None
        if holders is not None:
            holders.discard(cluster_id)
            if not holders:
                del self._entity_index[key]

    def _entity_holders(self, entities: Iterable[str]) -> set:
        out: set = set()
        for entity in entities:
            key = self._entity_key(entity)
            if key is not None:
                out |= self._entity_index.get(key, set())
        return out

    def _add_entities(self, matter: _Matter, entities: Iterable[str],
                      title_entities: Iterable[str] = ()) -> None:
        for entity in entities:
            if entity not in matter.entities:
                matter.entities[entity] = 0
                self._index_entity(matter.cluster_id, entity)
            matter.entities[entity] += 1
        limit = self.config.max_entities_per_matter
        for entity in title_entities:
            if entity not in matter.title_entities and len(matter.title_entities) < limit:
                matter.title_entities.append(entity)
                self._title_index.setdefault(entity, set()).add(matter.cluster_id)
        if len(matter.entities) > limit:
            kept = sorted(matter.entities.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
            for entity, _ in sorted(matter.entities.items(), key=lambda kv: (-kv[1], kv[0]))[limit:]:
                self._unindex_entity(matter.cluster_id, entity)
            matter.entities = dict(kept)

    # -- scoring -------------------------------------------------------------------------------

    def _text_similarities(self, signature: np.ndarray, min_similarity: float = 0.0) -> Dict[str, float]:
        """Best similarity per matter over its retained signatures (those >= min_similarity)."""
        used = self._owner_codes >= 0
        if not used.any():
            return {}
        rows = np.flatnonzero(used)
        equal = (self._pool[rows] == signature[None, :]).sum(axis=1)
        codes = self._owner_codes[rows]
        best = np.zeros(len(self._code_matter), dtype=np.int64)
        np.maximum.at(best, codes, equal)
        p = float(self.config.num_perm)
        hit = np.flatnonzero(best >= max(1, int(np.ceil(min_similarity * p - 1e-9))))
        return {self._code_matter[c]: best[c] / p for c in hit if self._code_matter[c] is not None}

    def _score(self, text_sim: float, features: MatterFeatures, matter: _Matter,
               reporter: Optional[str]) -> Tuple[float, str]:
        """Join score and the strongest evidence ("title_entity", "entity" or "text")."""
        w = self.config.weights
        strong = self._strong
        shared_strong, shared_weak = _entity_overlap(features.entities, matter.entities, strong)
        shared_title = shared_strong and _entity_overlap(
            features.title_entities, dict.fromkeys(matter.title_entities, 1), strong)[0]
        conflict = (not shared_strong) and _entity_conflict(features.entities, matter.entities, strong)
        score = w["text"] * text_sim
        score += w["shared_strong_entity"] * shared_strong + w["shared_weak_entity"] * shared_weak
        score += w["shared_title_entity"] * shared_title
        score -= w["entity_conflict"] * conflict
        if set(features.types) & set(matter.types):
            score += w["shared_type"]
        if reporter is not None and reporter in matter.reporters:
            score += w["same_reporter"]
        return score, ("title_entity" if shared_title else "entity" if shared_strong else "text")

    # -- public API --------------------------------------------------------------------------

    def assign(self, complaint_id: str, event_time_ms: int, features: MatterFeatures,
               reporter_key: Optional[str] = None) -> Assignment:
        """Assigns a complaint to the best matching live matter, or starts a new matter.

        Matters whose reports all lie more than ``window_days`` from ``event_time_ms`` are not
        candidates (call :meth:`expire` to free them). The index is updated in place.

        Args:
            complaint_id: the complaint's id; the id of a new matter's first complaint fixes its
                ``cluster_id``.
            event_time_ms: event time (epoch ms).
            features: from :func:`matter_features` with the same configuration.
            reporter_key: pseudonymous reporter key, a small bonus when the reporter repeats.
        """
        cfg = self.config
        if features.signature.shape != (cfg.num_perm,):
            raise ValueError(f"signature has {features.signature.shape[0]} slots, index expects "
                             f"{cfg.num_perm}")
        reporter = _reporter_digest(reporter_key) if reporter_key else None
        best: Optional[Tuple[float, float, str, str]] = None
        if features.shingle_count > 0:
            # below min_text_with_entity only a matter whose title names the same place may join;
            # those come from the title index, which keeps the per-candidate loop short
            candidates = self._text_similarities(
                features.signature, min(cfg.min_text_with_entity, cfg.text_only_similarity))
            # below text_only_similarity a matter needs a shared place or party: the entity index
            # rules most candidates out before the (slower) scoring
            entity_holders = self._entity_holders(features.entities)
            for entity in features.title_entities:
                for cluster_id in self._title_index.get(entity, ()):
                    candidates.setdefault(cluster_id, 0.0)
            for cluster_id, text_sim in sorted(candidates.items()):
                if text_sim < cfg.text_only_similarity and cluster_id not in entity_holders:
                    continue
                matter = self._matters[cluster_id]
                if (event_time_ms - matter.last_seen_ms > cfg.window_ms
                        or matter.first_seen_ms - event_time_ms > cfg.window_ms):
                    continue
                score, evidence = self._score(text_sim, features, matter, reporter)
                if score < cfg.join_score:
                    continue
                if evidence == "text" and text_sim < cfg.text_only_similarity:
                    continue
                if evidence == "entity" and text_sim < cfg.min_text_with_entity:
                    continue
                # ties go to the older matter so that replays are deterministic
                key = (score, text_sim, -matter.first_seen_ms, cluster_id)
                if best is None or key > (best[0], best[1], -self._matters[best[2]].first_seen_ms,
                                          best[2]):
                    best = (score, text_sim, cluster_id, evidence)
        if best is None:
            cluster_id = cluster_id_for(complaint_id)
            if cluster_id in self._matters:  # the same complaint delivered twice
                matter = self._matters[cluster_id]
                return Assignment(cluster_id, None, False, 1.0, "redelivery")
            matter = _Matter(cluster_id, complaint_id, event_time_ms, event_time_ms, 1, [], {}, {}, [])
            self._matters[cluster_id] = matter
            matter.rows.append(self._alloc_row(cluster_id, features.signature))
            self._add_entities(matter, features.entities, features.title_entities)
            for t in features.types:
                matter.types[t] = 1
            if reporter:
                matter.reporters.append(reporter)
            return Assignment(cluster_id, None, True, 0.0, "new")
        score, text_sim, cluster_id, evidence = best
        matter = self._matters[cluster_id]
        matter.report_count += 1
        matter.last_seen_ms = max(matter.last_seen_ms, event_time_ms)
        matter.first_seen_ms = min(matter.first_seen_ms, event_time_ms)
        self._add_member(matter, features.signature)
        self._add_entities(matter, features.entities, features.title_entities)
        for t in features.types:
            matter.types[t] = matter.types.get(t, 0) + 1
        if reporter and reporter not in matter.reporters and len(matter.reporters) < 32:
            matter.reporters.append(reporter)
        return Assignment(cluster_id, matter.first_complaint_id, False, round(text_sim, 4),
                          "text" if evidence == "text" else f"text+{evidence}")

    def expire(self, now_ms: int) -> List[str]:
        """Drops matters whose last report is older than the window; returns their cluster ids."""
        horizon = now_ms - self.config.window_ms
        gone = sorted(cid for cid, m in self._matters.items() if m.last_seen_ms < horizon)
        for cid in gone:
            self._drop(cid)
        return gone

    def restore_matter(self, cluster_id: str, first_complaint_id: str, last_seen_ms: int,
                       signature: Sequence[int], entities: Iterable[str],
                       first_seen_ms: Optional[int] = None, report_count: int = 1,
                       types: Iterable[str] = (), title_entities: Iterable[str] = ()) -> None:
        """Re-creates a matter from a lead (at start-up, before the stream resumes).

        Args:
            cluster_id: the lead's ``cluster_id`` (kept as is, not re-derived).
            first_complaint_id: the matter's first complaint.
            last_seen_ms: event time of the matter's latest report.
            signature: the matter's signature (:func:`signature_to_list` output).
            entities: ``class:core`` strings, as in :class:`MatterFeatures`.
            title_entities: those of them named in a title (stronger evidence), if the lead has them.
        """
        sig = signature_from_list(signature)
        if sig.shape != (self.config.num_perm,):
            raise ValueError(f"restored signature has {sig.size} slots, expected {self.config.num_perm}")
        if cluster_id in self._matters:
            self._drop(cluster_id)
        matter = _Matter(cluster_id, first_complaint_id,
                         last_seen_ms if first_seen_ms is None else first_seen_ms, last_seen_ms,
                         report_count, [], {}, {t: 1 for t in types}, [])
        self._matters[cluster_id] = matter
        matter.rows.append(self._alloc_row(cluster_id, sig))
        self._add_entities(matter, entities, title_entities)

    def matter_summary(self, cluster_id: str) -> Dict[str, Any]:
        """What a lead should carry so that :meth:`restore_matter` can rebuild the matter."""
        m = self._matters[cluster_id]
        return {
            "cluster_id": m.cluster_id,
            "first_complaint_id": m.first_complaint_id,
            "first_seen_ms": m.first_seen_ms,
            "last_seen_ms": m.last_seen_ms,
            "report_count": m.report_count,
            "signature": signature_to_list(self._pool[m.rows[0]]),
            "entities": sorted(m.entities),
            "title_entities": list(m.title_entities),
            "types": sorted(m.types),
        }

    def to_state(self) -> Dict[str, Any]:
        """Compact JSON-able state (signatures as base64 little-endian uint32)."""
        matters = []
        for m in sorted(self._matters.values(), key=lambda m: (m.first_seen_ms, m.cluster_id)):
            matters.append([m.cluster_id, m.first_complaint_id, m.first_seen_ms, m.last_seen_ms,
                            m.report_count, [_signature_to_b64(self._pool[r]) for r in m.rows],
                            m.entities, m.types, m.reporters, m.title_entities])
        return {"version": self.config.version, "num_perm": self.config.num_perm,
                "seed": self.config.seed, "matters": matters}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: Optional[RepeatConfig] = None) -> "MatterIndex":
        """Rebuilds an index from :meth:`to_state`; refuses state of another MinHash shape."""
        index = cls(config)
        if (state.get("num_perm") != index.config.num_perm or state.get("seed") != index.config.seed):
            raise ConfigError("repeat index state was built with another num_perm/seed; signatures "
                              "are not comparable (rebuild from leads instead)")
        for cid, first, first_ms, last_ms, count, sigs, ents, types, reporters, titled in state["matters"]:
            matter = _Matter(cid, first, int(first_ms), int(last_ms), int(count), [], dict(ents),
                             dict(types), list(reporters), list(titled))
            index._matters[cid] = matter
            for entity in matter.title_entities:
                index._title_index.setdefault(entity, set()).add(cid)
            for entity in matter.entities:
                index._index_entity(cid, entity)
            for sig in sigs:
                matter.rows.append(index._alloc_row(cid, _signature_from_b64(sig)))
        return index


def _split(entity: str) -> Tuple[str, str]:
    cls, _, core = entity.partition(":")
    return cls, core


def _cores_match(a: str, b: str) -> bool:
    if a == b:
        return True
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    # "翠湖" vs "某某翠湖": a name with a developer prefix; require 3 chars to avoid chance hits
    return len(short) >= 3 and long_.endswith(short)


def _entity_overlap(new: Sequence[str], known: Mapping[str, int], strong: set) -> Tuple[bool, bool]:
    shared_strong = shared_weak = False
    known_split = [_split(e) for e in known]
    for entity in new:
        cls, core = _split(entity)
        for kcls, kcore in known_split:
            if not _cores_match(core, kcore):
                continue
            if cls in strong and kcls in strong:
                shared_strong = True
            elif cls == kcls:
                shared_weak = True
    return shared_strong, shared_weak


def _entity_conflict(new: Sequence[str], known: Mapping[str, int], strong: set) -> bool:
    """Both name a place or party of one strong kind, and none of them match."""
    new_classes = {_split(e)[0] for e in new} & strong
    known_classes = {_split(e)[0] for e in known} & strong
    return bool(new_classes & known_classes)


# --------------------------------------------------------------------------------------------
# Evaluation on labelled messages
# --------------------------------------------------------------------------------------------

def _tokenize_for_eval():
    """Segmentation for evaluation: the project tokenizer when present, else a private jieba one."""
    try:
        from envleads.text import build_tokenizer, segment  # type: ignore
        tok = build_tokenizer()
        return lambda text: segment(tok, text)
    except Exception:  # the text module is optional here; features do not use tokens yet
        return lambda text: []


def _event_ms(received_at: Optional[str]) -> int:
    if not received_at:
        return 0
    dt = datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def cluster_records(records: Sequence[Mapping[str, Any]], config: Optional[RepeatConfig] = None,
                    tokenize=None) -> List[Tuple[str, Assignment]]:
    """Runs one index over records (``id``, ``title``, ``text``, ``received_at``) in event order."""
    config = config or default_config()
    tokenize = tokenize or (lambda text: [])
    index = MatterIndex(config)
    order = sorted(records, key=lambda r: (_event_ms(r.get("received_at")), str(r["id"])))
    out = []
    for rec in order:
        now = _event_ms(rec.get("received_at"))
        index.expire(now)
        feats = matter_features(rec.get("text") or "", rec.get("title") or "",
                                tokenize(rec.get("text") or ""), None, rec.get("types") or (), config)
        out.append((str(rec["id"]), index.assign(str(rec["id"]), now, feats, rec.get("reporter_key"))))
    return out


def clustering_scores(gold: Mapping[str, str], predicted: Mapping[str, str]) -> Dict[str, float]:
    """Pairwise precision/recall of "same matter" and B-cubed precision/recall/F1."""
    ids = sorted(gold)

    def groups(labels: Mapping[str, str]) -> Dict[str, set]:
        out: Dict[str, set] = {}
        for i in ids:
            out.setdefault(labels[i], set()).add(i)
        return out

    g_groups, p_groups = groups(gold), groups(predicted)
    tp = fp = fn = 0
    b_p = b_r = 0.0
    for i in ids:
        g = g_groups[gold[i]]
        p = p_groups[predicted[i]]
        both = len(g & p)
        b_p += both / len(p)
        b_r += both / len(g)
        tp += both - 1
        fp += len(p) - both
        fn += len(g) - both
    tp, fp, fn = tp / 2, fp / 2, fn / 2
    n = len(ids) or 1
    bp, br = b_p / n, b_r / n
    return {
        "pairwise_precision": tp / (tp + fp) if tp + fp else 1.0,
        "pairwise_recall": tp / (tp + fn) if tp + fn else 1.0,
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f1": 2 * bp * br / (bp + br) if bp + br else 0.0,
        "gold_pairs": tp + fn,
        "predicted_pairs": tp + fp,
    }


def evaluate_repeats(records: Sequence[Mapping[str, Any]], config: Optional[RepeatConfig] = None
                     ) -> Dict[str, Any]:
    """Assigns every labelled message in ``received_at`` order and scores against ``cluster``."""
    config = config or default_config()
    assigned = cluster_records(records, config, _tokenize_for_eval())
    predicted = {cid: a.cluster_id for cid, a in assigned}
    gold = {str(r["id"]): str(r["cluster"]) for r in records}
    scores = clustering_scores(gold, predicted)
    singletons = {cid: cid for cid in gold}
    matched = {}
    for _, a in assigned:
        matched[a.matched_on] = matched.get(a.matched_on, 0) + 1
    return {
        "config_version": config.version,
        "messages": len(records),
        "gold_matters": len(set(gold.values())),
        "predicted_matters": len(set(predicted.values())),
        "window_days": config.window_days,
        "num_perm": config.num_perm,
        "matched_on": matched,
        **scores,
        "bcubed_f1_all_singletons": clustering_scores(gold, singletons)["bcubed_f1"],
    }


def format_repeats_report(result: Mapping[str, Any]) -> str:
    lines = [f"repeat detection ({result['config_version']}, window {result['window_days']} d, "
             f"{result['num_perm']} perm): {result['messages']} messages, "
             f"{result['gold_matters']} gold matters, {result['predicted_matters']} predicted"]
    for key in ("pairwise_precision", "pairwise_recall", "bcubed_precision", "bcubed_recall",
                "bcubed_f1", "bcubed_f1_all_singletons"):
        lines.append(f"  {key:<26} {result[key]:.3f}")
    lines.append(f"  gold pairs {int(result['gold_pairs'])}, predicted pairs {int(result['predicted_pairs'])}, "
                 f"matched on {result['matched_on']}")
    return "\n".join(lines)


def _read_jsonl(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _run_evaluate(args: argparse.Namespace) -> int:
    config = load_repeat_config(args.config)
    result = evaluate_repeats(_read_jsonl(args.gold), config)
    print(format_repeats_report(result))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, ensure_ascii=False)
    return 0


def add_subcommand(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate-repeats", help="measure repeat-petition detection on messages labelled by matter")
    parser.add_argument("--gold", required=True,
                        help="JSON Lines with id, title, text, received_at, cluster")
    parser.add_argument("--config", default=None, help="repeats.json to use (default: packaged)")
    parser.add_argument("--json-out", default=None, help="also write the scores as JSON here")
    parser.set_defaults(func=_run_evaluate)
