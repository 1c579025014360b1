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
"""
from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Collection, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import ahocorasick
import numpy as np
from pypinyin import lazy_pinyin

from envleads.config import ConfigError, cached_per_config, data_path, load_json_config
from envleads.divisions import MUNICIPALITY_CODES
from envleads.postings import Lookup, ShinglePostings

LOG = logging.getLogger(__name__)

CONFIG_FILE = "repeats.json"
UNKNOWN_BLOCK = "unknown"
STATE_FORMAT = 3  # 3: each matter row ends with whether the matter is environmental
_MS_PER_DAY = 86_400_000
_MAX_HASH = np.uint64(0xFFFFFFFF)
_EMPTY_SLOT = np.uint32(0xFFFFFFFF)  # pads a signature whose text has fewer shingles than slots
_NAMING_SCAN = 256  # past this many matters under one entity key, its names count as generic
# what a :class:`KeyIndexes` directory maps to the keys holding it: entity name keys, title entity
# name keys, reporter digests, complaint ids
_ENTITY, _TITLE, _REPORTER, _COMPLAINT = "entity", "title", "reporter", "complaint"


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

ROLES = ("source", "location", "area")


class EntityClass(NamedTuple):
    name: str
    # "source": a problem source (a company, a site): the same source is the same matter;
    # "location": a precise place (a compound, an address, a river): the same problem there is one
    # matter; "area": a road, town, village or park, which many sources share: never evidence alone
    role: str
    min_core_chars: int
    suffixes: Tuple[str, ...]
    keep_suffix: bool = False  # "许家湾": a one-character core means nothing without its suffix
    trades: bool = False  # names of this kind may end in a trade ("宏达化工"): category_words apply
    # suffixes that say what kind of place a name is ("佳松便利店", "佳松电镀厂"): kept with the
    # name as its trade, so that two kinds under one name are two sources
    kind_suffixes: frozenset = frozenset()


@dataclass(frozen=True)
class RepeatConfig:
    """Typed view of ``data/repeats.json``."""

    version: str
    window_days: int
    sketch_size: int
    shingle_chars: int
    seed: int
    max_members_per_matter: int
    max_entities_per_matter: int
    max_indexed_shingles: int
    text_only_similarity: float
    text_only_unplaced: float
    min_text_with_entity: float
    min_text_with_title_entity: float
    min_text_with_location: float
    min_text_with_location_beside_source: float
    min_text_with_location_unplaced: float
    min_text_with_reporter: float
    conflict_text_similarity: float
    idf_floor: float
    common_share: float
    max_candidates: int
    weights: Mapping[str, float]
    entity_classes: Tuple[EntityClass, ...]
    max_name_chars: int
    not_followed_by: Mapping[str, str]
    boundaries: Tuple[str, ...]
    generic_cores: frozenset = field(default_factory=frozenset)
    category_words: Tuple[str, ...] = ()
    address_class: str = "address"
    address_roads: Tuple[str, ...] = ()
    generic_matters: int = 3
    address_role: str = "location"
    common_word_min_frequency: int = 0  # 0: no dictionary check
    common_word_tags: frozenset = frozenset()
    boilerplate: Tuple[str, ...] = ()
    bound_words: frozenset = frozenset()
    phrase_initial: str = ""
    phrase_starts: Tuple[str, ...] = ()
    conflict_classes: frozenset = frozenset({"company"})
    max_ids_per_matter: int = 64
    name_boundary_chars: str = ""
    max_rare_holders: int = 2048
    max_rare_holders_unplaced: int = 2048

    @property
    def window_ms(self) -> int:
        return self.window_days * _MS_PER_DAY


_WEIGHT_KEYS = ("text", "shared_source", "shared_title_entity", "shared_location", "entity_conflict",
                "shared_type", "same_reporter")


def load_repeat_config(path: Optional[str] = None) -> RepeatConfig:
    """Loads and validates the repeat-detection configuration (packaged file by default).

    Args:
        path: a JSON file shaped like ``data/repeats.json``; ``None`` for the packaged one.
    """
    path = path or data_path(CONFIG_FILE)
    doc = load_json_config(path, required=("version", "window_days", "sketch_size", "shingle_chars",
                                           "seed", "thresholds", "weights", "idf", "entities"))

    def need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in mapping:
            raise ConfigError(f"{path}: missing key {where}{key!r}")
        return mapping[key]

    thresholds, weights, entities, idf = doc["thresholds"], doc["weights"], doc["entities"], doc["idf"]
    classes = []
    for name, spec in need(entities, "classes", "entities.").items():
        role = need(spec, "role", f"entities.classes.{name}.")
        if role not in ROLES:
            raise ConfigError(f"{path}: entities.classes.{name}.role must be one of {ROLES}, got {role!r}")
        classes.append(EntityClass(
            name=name, role=role,
            min_core_chars=int(spec.get("min_core_chars", 2)),
            keep_suffix=bool(spec.get("keep_suffix", False)),
            trades=bool(spec.get("trades", False)),
            kind_suffixes=frozenset(s.lower() for s in spec.get("kind_suffixes", ())),
            # longest first so that 有限公司 wins over 公司
            suffixes=tuple(sorted((s.lower() for s in need(spec, "suffixes", f"entities.classes.{name}.")),
                                  key=len, reverse=True))))
    sketch_size = int(doc["sketch_size"])
    if not 64 <= sketch_size <= 4096:
        raise ConfigError(f"{path}: sketch_size must be in [64, 4096], got {sketch_size}")
    if int(doc["shingle_chars"]) < 1:
        raise ConfigError(f"{path}: shingle_chars must be >= 1")
    text_only = float(need(thresholds, "text_only_similarity", "thresholds."))
    with_entity = float(need(thresholds, "min_text_with_entity", "thresholds."))
    address = entities.get("address", {})
    return RepeatConfig(
        version=str(doc["version"]),
        window_days=int(doc["window_days"]),
        sketch_size=sketch_size,
        shingle_chars=int(doc["shingle_chars"]),
        seed=int(doc["seed"]),
        max_members_per_matter=max(1, int(doc.get("max_members_per_matter", 8))),
        max_entities_per_matter=max(1, int(doc.get("max_entities_per_matter", 24))),
        max_indexed_shingles=max(sketch_size, int(doc.get("max_indexed_shingles", 4 * sketch_size))),
        text_only_similarity=text_only,
        text_only_unplaced=float(thresholds.get("text_only_unplaced", text_only)),
        min_text_with_entity=with_entity,
        min_text_with_title_entity=float(thresholds.get("min_text_with_title_entity", with_entity)),
        min_text_with_location=float(need(thresholds, "min_text_with_location", "thresholds.")),
        min_text_with_location_beside_source=float(need(thresholds, "min_text_with_location_beside_source",
                                                        "thresholds.")),
        min_text_with_location_unplaced=float(need(thresholds, "min_text_with_location_unplaced", "thresholds.")),
        min_text_with_reporter=float(thresholds.get("min_text_with_reporter", text_only)),
        conflict_text_similarity=float(thresholds.get("conflict_text_similarity", text_only)),
        idf_floor=float(need(idf, "floor", "idf.")),
        common_share=float(need(idf, "common_share", "idf.")),
        max_candidates=int(idf.get("max_candidates", 64)),
        max_rare_holders=max(4, int(idf.get("max_rare_holders", 2048))),
        max_rare_holders_unplaced=max(4, int(idf.get("max_rare_holders_unplaced", idf.get("max_rare_holders", 2048)))),
        weights={key: float(weights.get(key, 0.0)) for key in _WEIGHT_KEYS},
        entity_classes=tuple(classes),
        max_name_chars=int(entities.get("max_name_chars", 8)),
        not_followed_by=dict(entities.get("not_followed_by", {})),
        boundaries=tuple(sorted(entities.get("boundaries", []), key=len, reverse=True)),
        generic_cores=frozenset(entities.get("generic_cores", [])),
        # a kind kept with a name is its trade, so every kind suffix is a trade word too
        category_words=tuple(sorted(set(entities.get("category_words", []))
                                    | {kind for cls in classes for kind in cls.kind_suffixes}, key=len, reverse=True)),
        address_class=str(address.get("class", "address")),
        address_roads=tuple(sorted(address.get("road_suffixes", []), key=len, reverse=True)),
        generic_matters=max(2, int(entities.get("generic_matters", 3))),
        address_role=str(address.get("role", "location")),
        common_word_min_frequency=int(entities.get("common_words", {}).get("min_frequency", 0)),
        common_word_tags=frozenset(entities.get("common_words", {}).get("tags", ())),
        boilerplate=tuple(sorted((normalise_text(p) for p in doc.get("boilerplate", []) if p), key=len, reverse=True)),
        bound_words=frozenset(entities.get("bound_words", [])),
        phrase_initial=str(entities.get("phrase_initial", "")),
        phrase_starts=tuple(entities.get("phrase_starts", ())),
        name_boundary_chars=str(entities.get("name_boundary_chars", "")),
        conflict_classes=frozenset(entities.get("conflict_classes", ("company",))),
        max_ids_per_matter=max(1, int(doc.get("max_ids_per_matter", 64))),
    )


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

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


class MatterFeatures(NamedTuple):
    """What identifies a complaint's matter: text sketch, named places/parties, types, region."""

    signature: np.ndarray  # uint32[sketch_size]: bottom-k shingle hashes ascending, then empty slots
    entities: Tuple[str, ...]  # sorted "class:core" strings, e.g. "compound:翠湖"
    title_entities: Tuple[str, ...]  # those named in the title: what the complaint is about
    types: Tuple[str, ...]
    region_adcode: Optional[str]
    shingle_count: int

    def __reduce__(self):
        # Pickled between the stream's processes for every complaint: the sketch without its empty
        # slots, as bytes, is half the bytes and about half the time to unpickle of the padded array.
        signature = self.signature
        if isinstance(signature, np.ndarray) and signature.dtype == np.uint32 and signature.ndim == 1:
            trimmed = _trim(signature)
            if (signature[trimmed.size:] == _EMPTY_SLOT).all():  # else not a sketch: kept whole
                return _features_from_sketch, (trimmed.tobytes(), signature.size, *self[1:])
        return MatterFeatures, tuple(self)


def _features_from_sketch(sketch: bytes, size: int, *rest) -> MatterFeatures:
    signature = np.full(size, _EMPTY_SLOT, dtype=np.uint32)
    filled = np.frombuffer(sketch, dtype=np.uint32)
    signature[:filled.size] = filled
    return MatterFeatures(signature, *rest)


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


def _strip_category(core: str, config: RepeatConfig) -> Tuple[str, str]:
    """Splits "宏达化工" into the name "宏达" and the trade "化工" (name only if >= 2 chars remain)."""
    words, lengths, memo = _category_table(config)
    hit = memo.get(core)
    if hit is None:
        hit = (core, "")
        for n in lengths:
            if len(core) - n >= 2 and core[-n:] in words:
                inner, trade = _strip_category(core[:-n], config)
                hit = (inner, trade + core[-n:])
                break
        if len(memo) < 100_000:
            memo[core] = hit
    return hit


@cached_per_config
def _entity_key_memo(config: RepeatConfig) -> Dict[str, str]:
    """Entity -> its index key (:meth:`MatterIndex._entity_key`), shared by the indexes of one
    configuration."""
    return {}


@cached_per_config
def _category_table(config: RepeatConfig) -> Tuple[frozenset, Tuple[int, ...], Dict[str, Tuple[str, str]]]:
    """The trade words, their lengths longest first, and a memo of split names. Found by the
    configuration's identity: hashing the word tuple again for every pair of names compared was a
    third of comparing them."""
    words = frozenset(config.category_words)
    return words, tuple(sorted({len(w) for w in words}, reverse=True)), {}


def extract_entities(text: str, config: RepeatConfig, canonical: bool = False) -> List[str]:
    """Named places and parties by suffix rules, as sorted ``class:core`` strings.

    The core is the name without its suffix and without what precedes it up to the nearest boundary
    (punctuation, an administrative unit, a road, a preposition), so that "某区劳动路翠湖小区" and
    "翠湖小区" give the same ``compound:翠湖``. A candidate with no boundary within
    ``max_name_chars`` is dropped (without a word segmenter it would be a run of the sentence, not a
    name), and so are generic cores (我们小区, 烧烤店) and cores that are only a trade (化工厂,
    养殖场): they name a kind of thing, not a matter, and so are phrases in which the suffix is part
    of another word ("客人散场", "车辆带泥上路": ``bound_words``). A division name written before a
    name is cut off ("阳江友坝沟" -> ``water:友坝``); a division itself ("七台河") is no entity. A
    road followed by a house number gives an ``address`` entity as well ("建设路12号" ->
    ``address:建设#12``).
    """
    return sorted({entity for _, entity in _entities_at(_entity_text(text, canonical), config)})


_HOUSE_NUMBER = re.compile(r"(\d{1,5})号(?!楼|院|线|门)")
@cached_per_config
def _suffix_automaton(config: RepeatConfig) -> "ahocorasick.Automaton":
    """Every entity suffix in one Aho-Corasick automaton: one scan finds all their occurrences
    (a ``str.find`` loop per suffix was most of extracting entities). A suffix listed by several
    classes belongs to the first, as in a loop over the classes in order."""
    automaton = ahocorasick.Automaton()
    for cls in config.entity_classes:
        for suffix in cls.suffixes:
            if suffix and suffix not in automaton:
                automaton.add_word(suffix, (suffix, cls))
    automaton.make_automaton()
    return automaton


def _entities_at(norm: str, config: RepeatConfig) -> List[Tuple[int, str]]:
    """:func:`extract_entities` over normalised text, each entity with where its suffix ends."""
    # every suffix occurrence; where several end at one place, the longest is the one meant
    # ("中心广场" is a 广场, not a 场; "翠湖花园" a 花园, not a 园)
    longest: Dict[int, Tuple[int, str, EntityClass]] = {}
    for last, (suffix, cls) in _suffix_automaton(config).iter(norm):
        end = last + 1
        if end not in longest or len(suffix) > len(longest[end][1]):
            longest[end] = (end - len(suffix), suffix, cls)
    found: List[Tuple[int, str]] = []
    for end in sorted(longest):
        pos, suffix, cls = longest[end]
        banned = config.not_followed_by.get(suffix, "")
        if banned and end < len(norm) and norm[end] in banned:
            continue
        core = _core_before(norm, pos, config)
        if core is None:
            continue
        if len(core) < cls.min_core_chars or core in config.generic_cores or "某" in core:
            continue  # "某化工厂": the writer withholds the name, so it names a kind, not a party
        if core[0] in config.phrase_initial or core[-1] + suffix[0] in config.bound_words \
                or core.startswith(config.phrase_starts):
            continue  # "一刮风工地", "客人散场", "带泥上路", "晚上炭火烧烤": a phrase, not a name
        if cls.trades:
            name = _strip_category(core, config)[0]
            if name in config.category_words or name in config.generic_cores or name in _common_words(config):
                continue  # "化工厂", "门面烧烤", "其他烧烤": a kind or a phrase, not a name
        admin = _admin_names()
        if core + suffix in admin or core + suffix[:1] in admin or any(core + suffix + s in admin for s in "区县市"):
            continue  # "苏州工业园区", "七台河", "普兰店(区)": a division, not a place or party in it
        if cls.keep_suffix or suffix in cls.kind_suffixes:
            core += suffix
        found.append((end, f"{cls.name}:{core}"))
        if cls.name == "road" or suffix in config.address_roads:
            number = _HOUSE_NUMBER.match(norm, end, end + 8)
            if number and len(core) >= 2:
                found.append((end, f"{config.address_class}:{core}#{number.group(1)}"))
    return found


@cached_per_config
def _common_words(config: RepeatConfig) -> frozenset:
    """jieba's dictionary words of at least ``common_words.min_frequency`` with one of
    ``common_words.tags``: a source's name that is one of them is an ordinary word."""
    if config.common_word_min_frequency <= 0:
        return frozenset()
    words = set()
    with open(_jieba_dictionary(), encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and int(parts[1]) >= config.common_word_min_frequency and len(parts[0]) >= 2 \
                    and len(parts) >= 3 and parts[2] in config.common_word_tags:
                words.add(parts[0])
    return frozenset(words)


def _jieba_dictionary() -> str:
    import jieba

    return os.path.join(os.path.dirname(jieba.__file__), "dict.txt")


_ADMIN_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "自治州", "自治县", "地区",
                   "省", "市", "县", "区", "盟", "旗")
_TOWNSHIP_SUFFIXES = ("街道", "镇", "乡")
_ADMIN_NAMES: Optional[frozenset] = None


def _admin_names() -> frozenset:
    """Division names that are not part of a place name written after them.

    Full names of all divisions (长沙市, 雨花区), and short names (长沙) of provinces and cities
    only: a county's short name is too often also part of a compound's or company's name.
    """
    global _ADMIN_NAMES
    if _ADMIN_NAMES is None:
        from envleads.divisions import load_divisions

        names = set()
        for division in load_divisions():
            name = division.name
            names.add(name)
            if division.level in ("province", "city"):
                names.add(_short_name(name, _ADMIN_SUFFIXES))
        _ADMIN_NAMES = frozenset(n for n in names if len(n) >= 2)
    return _ADMIN_NAMES


def _strip_admin_prefix(core: str) -> str:
    """"阳江友坝" -> "友坝": a division name written before a place name is not part of it."""
    names = _admin_names()
    for length in range(min(len(core) - 2, 8), 1, -1):
        if core[:length] in names:
            return core[length:]
    return core


def _core_before(norm: str, pos: int, config: RepeatConfig) -> Optional[str]:
    limit = config.max_name_chars
    window = norm[max(0, pos - limit - 1):pos]
    bounded = pos - len(window) == 0 or _SEPARATOR in window
    tail = window.rsplit(_SEPARATOR, 1)[-1]
    core = _cut_at_boundary(tail, config.boundaries, config.name_boundary_chars)
    if len(core) < len(tail):
        bounded = True
    core = _strip_admin_prefix(core.lstrip("0123456789"))
    if not bounded or len(core) > limit:
        return None
    return core


def _cut_at_boundary(window: str, boundaries: Tuple[str, ...], name_chars: str = "") -> str:
    """What follows the last boundary in ``window``.

    A one-character boundary that is also common in names (``name_chars``: 和平路, 顺河路,
    荷和中路) does not cut when it would leave less than two characters: the name then runs back
    to the boundary before it.
    """
    # the first match in the reversed window is the boundary ending last; at one end, the first
    # boundary of the list wins
    match = _reversed_boundaries(boundaries).search(window[::-1])
    cut, by = (len(window) - match.start(), match.group()[::-1]) if match else (0, "")
    if len(window) - cut < 2 and len(by) == 1 and by in name_chars:
        return _cut_at_boundary(window[:cut - 1], boundaries, name_chars) + window[cut - 1:]
    return window[cut:]


_BOUNDARY_PATTERNS: Dict[Tuple[str, ...], "re.Pattern[str]"] = {}


def _reversed_boundaries(boundaries: Tuple[str, ...]) -> "re.Pattern[str]":
    pattern = _BOUNDARY_PATTERNS.get(boundaries)
    if pattern is None:
        pattern = _BOUNDARY_PATTERNS[boundaries] = re.compile(
            "|".join(re.escape(b[::-1]) for b in boundaries if b))
    return pattern


def matter_features(text: str, title: str, tokens: Sequence[str], region_adcode: Optional[str],
                    types: Sequence[str], config: Optional[RepeatConfig] = None) -> MatterFeatures:
    """Computes the features :meth:`MatterIndex.assign` compares.

    Args:
        text: the masked complaint text.
        title: the complaint title, often the most concise statement of the matter.
        tokens: segmented tokens; currently unused (character shingles do not depend on the
            dictionary, so sketches stay stable when the dictionary changes).
        region_adcode: the resolved GB/T 2260 code: complaints resolved to different counties are
            never one matter.
        types: predicted pollution types (a weak signal only).
        config: defaults to the packaged configuration.
    """
    config = config or default_config()
    del tokens  # see docstring: sketches must not change with the user dictionary
    title = _canonical(title or "")
    full = f"{title}。{_canonical(text or '')}"
    hashes = shingle_hashes(_without_boilerplate(normalise_text(full, canonical=True), config),
                            config.shingle_chars, config.seed)
    entities, title_entities = _full_and_title_entities(full, title, config)
    return MatterFeatures(
        signature=text_sketch(hashes, config.sketch_size),
        entities=entities,
        title_entities=title_entities,
        types=tuple(types or ()),
        region_adcode=_clean_adcode(region_adcode),
        shingle_count=int(hashes.size),
    )


@cached_per_config
def _boilerplate_pattern(config: RepeatConfig) -> Optional["re.Pattern[str]"]:
    phrases = [re.escape(p) for p in config.boilerplate if p]
    return re.compile("|".join(phrases)) if phrases else None


def _without_boilerplate(normalised: str, config: RepeatConfig) -> str:
    """The text without the phrases citizens use in any complaint (greetings, 请求处理, 严重扰民):
    two reports must not look alike because both are polite or angry. Early in a stream the
    document frequencies cannot know these phrases yet, so they are removed, not down-weighted."""
    pattern = _boilerplate_pattern(config)
    return pattern.sub("", normalised) if pattern is not None else normalised


def _full_and_title_entities(full: str, title: str, config: RepeatConfig) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Entities of the whole text and of its title, from one scan when the normalised text starts
    with the normalised title (an entity looks back only, so those ending inside the title are the
    title's)."""
    norm_full, norm_title = _entity_text(full, True), _entity_text(title, True)
    spans = _entities_at(norm_full, config)
    if norm_full.startswith(norm_title):
        in_title = {entity for end, entity in spans if end <= len(norm_title)}
    else:
        in_title = {entity for _, entity in _entities_at(norm_title, config)}
    return tuple(sorted({entity for _, entity in spans})), tuple(sorted(in_title))


_DEFAULT_CONFIG: Optional[RepeatConfig] = None


def default_config() -> RepeatConfig:
    global _DEFAULT_CONFIG
    if _DEFAULT_CONFIG is None:
        _DEFAULT_CONFIG = load_repeat_config()
    return _DEFAULT_CONFIG


def _clean_adcode(code: Optional[str]) -> Optional[str]:
    code = str(code).strip() if code else ""
    return code[:6] if len(code) >= 6 and code[:6].isdigit() and code[:2] != "00" else None


def blocking_key(region_adcode: Optional[str], fallback_adcode: Optional[str] = None) -> str:
    """The coarse key the stream is partitioned by: the city-level code (first 4 digits + "00").

    A report that resolves to a county and a repeat that only names the city must meet in one
    index, so the key is the city, not the county. The price: a city's matters share one index
    (more comparisons, a little more risk of joining two matters with similar text), and a repeat
    whose region resolves to another city is not found. Province-level-only or unresolved
    complaints go to ``"unknown"``, unless ``fallback_adcode`` (the receiving office's
    jurisdiction) names a city. Municipalities (11, 12, 31, 50) are one key per municipality,
    because their "city" level is a placeholder and reporters name a district one time and only
    the city the next. Complaints of the ``"unknown"`` key may report a matter of any key of their
    scope: assign them across those keys' indexes (:func:`assign_unplaced`).
    """
    for code in (region_adcode, fallback_adcode):
        key = _city_key(code)
        if key != UNKNOWN_BLOCK:
            return key
    return UNKNOWN_BLOCK


def unplaced_scope(region_adcode: Optional[str], fallback_adcode: Optional[str] = None) -> str:
    """Where a complaint of the ``"unknown"`` key looks for its matter: its province.

    The province-level code (``"320000"``) of the resolved region, or else of the receiving
    office's jurisdiction; ``"unknown"`` (anywhere) when neither names a province. Such complaints
    are assigned last, against the matters of every city key of that province (and of every key
    when the scope is ``"unknown"``).
    """
    for code in (region_adcode, fallback_adcode):
        code = _clean_adcode(code)
        if code:
            return code[:2] + "0000"
    return UNKNOWN_BLOCK


def in_scope(adcode_or_key: Optional[str], scope: str) -> bool:
    """Whether a blocking key or region code lies in an unplaced complaint's scope (see
    :func:`unplaced_scope`); an unknown place may lie anywhere, so it is in every scope."""
    if scope == UNKNOWN_BLOCK or not adcode_or_key or adcode_or_key == UNKNOWN_BLOCK:
        return True
    return str(adcode_or_key)[:2] == scope[:2]


def _city_key(region_adcode: Optional[str]) -> str:
    if not region_adcode:
        return UNKNOWN_BLOCK
    code = str(region_adcode).strip()
    if len(code) < 4 or not code[:6].isdigit():
        return UNKNOWN_BLOCK
    if code[:2] + "0000" in MUNICIPALITY_CODES:
        return code[:2] + "0000"
    if code[2:4] == "00":
        return UNKNOWN_BLOCK
    return code[:4] + "00"


def region_relation(left: Optional[str], right: Optional[str]) -> str:
    """How two resolved places relate: ``"same_county"``, ``"same_city"``, ``"compatible"``, ``"conflict"``.

    Codes name a province (``xx0000``), a city (``xxxx00``) or a county. Two codes conflict when
    they name different provinces, different cities, or different counties. A county and its own
    city are ``"same_city"`` (for a municipality: a district and the municipality); a province
    and anything in it, or an unknown place and anything, are ``"compatible"``.
    """
    if not left or not right:
        return "compatible"
    if left[:2] != right[:2]:
        return "conflict"
    municipal = left[:2] + "0000" in MUNICIPALITY_CODES
    if not municipal and left[2:4] != "00" and right[2:4] != "00" and left[2:4] != right[2:4]:
        return "conflict"
    if left[4:6] != "00" and right[4:6] != "00":
        return "same_county" if left == right else "conflict"
    if municipal:
        return "same_city"
    return "same_city" if left[2:4] != "00" and right[2:4] != "00" else "compatible"


# --------------------------------------------------------------------------------------------
# The matter index
# --------------------------------------------------------------------------------------------

class Assignment(NamedTuple):
    cluster_id: str
    duplicate_of: Optional[str]  # first complaint of the matter; None when this one starts it
    is_new_matter: bool
    similarity: float  # weighted text similarity to the closest report of the matter
    # "new", "redelivery", "text", or "text+" one of "title_entity", "entity", "location", "reporter"
    matched_on: str
    # the name the complaint shares with the matter ("company:恒丰电镀"), when a name joined it
    shared: Optional[str] = None


def cluster_id_for(first_complaint_id: str) -> str:
    """Stable matter id derived from the first complaint id (equal on every worker and replay)."""
    return "m-" + hashlib.sha1(first_complaint_id.encode("utf-8")).hexdigest()[:16]


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


class _Candidate(NamedTuple):
    score: float
    text: float
    evidence: str
    first_seen_ms: int
    cluster_id: str
    shared: Optional[str]


class MatterIndex:
    """The matters of one blocking key seen within the time window, and assignment against them.

    Keeps up to ``max_members_per_matter`` sketches per matter (the first report's and the most
    recent), so a matter that drifts in wording is still found (single linkage) while memory stays
    bounded. An inverted index from shingle to the matters holding it finds candidates and gives
    each shingle's document frequency, so the weight of a phrase follows the stream: what many live
    matters say is boilerplate here, whatever the source. Entity indexes find matters that name the
    same place in other words.
    """

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
        self._maps: Dict[str, dict] = {_ENTITY: self._entity_index, _TITLE: self._title_index,
                                       _REPORTER: self._reporter_index, _COMPLAINT: self._complaint_index}
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
            self._release(_ENTITY, self._entity_key(entity), cluster_id)
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
            cls, core = _split(entity)
            road, _, number = core.partition("#")
            tail = "".join(sound(_strip_category(road, self.config)[0][-2:]))
            key = f"{cls}|{tail}#{number}" if number else f"{cls}|{tail}"
            if len(self._key_memo) < 200_000:
                self._key_memo[entity] = key
        return key

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
                self._hold(_ENTITY, self._entity_key(entity), matter.cluster_id)
            matter.entities[entity] += 1
        limit = self.config.max_entities_per_matter
        for entity in title_entities:
            if entity not in matter.title_entities and len(matter.title_entities) < limit:
                matter.title_entities.append(entity)
                self._hold(_TITLE, self._entity_key(entity), matter.cluster_id)
        if len(matter.entities) > limit:
            ranked = sorted(matter.entities.items(), key=lambda kv: (-kv[1], kv[0]))
            for entity, _ in ranked[limit:]:
                self._release(_ENTITY, self._entity_key(entity), matter.cluster_id)
            kept = dict(ranked[:limit])
            # entities sharing a key with a kept one stay indexed through it
            for entity in kept:
                self._hold(_ENTITY, self._entity_key(entity), matter.cluster_id)
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

    # -- scoring -------------------------------------------------------------------------------

    def _weights(self, hashes: np.ndarray, df: Optional[np.ndarray] = None) -> np.ndarray:
        """IDF weight of each shingle among the live matters (smoothed; a floor keeps all > 0)."""
        n = len(self._matters)
        if df is None:
            df = self._postings.document_frequency(hashes)
        return np.log((n + 1.0) / (df.astype(np.float64) + 1.0)) + self.config.idf_floor

    def _candidates(self, lookup: Lookup, weights: np.ndarray, region_adcode: Optional[str],
                    one_city: bool) -> Tuple[List[str], set]:
        """The ``max_candidates`` matters sharing the most weight of rare shingles, among those that
        could still reach the lowest text-only threshold: ``text_only_unplaced`` for a complaint
        with no region in an index of no one city, which :meth:`_evaluate` never takes as placed
        (most of the ``"unknown"`` key's complaints: its index is the largest of all); and the set
        of all matters that could reach it (a matter outside it can only join by a shared name or
        reporter).

        Shingles held by more than ``common_share`` of the matters, or by more than
        ``max_rare_holders``, are skipped; their weight counts as shared for the threshold, so
        ``(shared + skipped) / total`` bounds the similarity from above and a matter below the floor
        can only join by a shared name or reporter. The absolute cap keeps the postings walked per
        complaint bounded as a city's index grows (a share alone made the cost linear in its size).
        An unplaced complaint has a cap of its own (``max_rare_holders_unplaced``): its high
        text-only threshold prunes almost every matter anyway, so a lower cap halves the walk in the
        largest index at equal clustering quality (``bench/bench_repeats_scale.py --block unknown``).
        """
        cfg = self.config
        placed = one_city or bool(region_adcode)
        rare_cap = cfg.max_rare_holders if placed else cfg.max_rare_holders_unplaced
        cap = min(max(4.0, cfg.common_share * len(self._matters)), float(rare_cap))
        total = float(weights.sum()) or 1.0
        text_only = cfg.text_only_similarity if placed else cfg.text_only_unplaced
        floor = min(text_only, cfg.conflict_text_similarity) * total
        clusters, shared, _ = self._postings.shared_weight(lookup, weights, cap, floor)
        ranked = sorted(range(len(clusters)), key=lambda i: (-shared[i], clusters[i]))
        return [clusters[i] for i in ranked[:cfg.max_candidates]], set(clusters)

    def _text_similarities(self, signature: np.ndarray, weights: Optional[np.ndarray],
                           matters: Sequence[_Matter]) -> List[float]:
        """Per matter, the best weighted Jaccard similarity between the complaint and the matter's
        retained reports (``weights``: of the complaint's shingles; None: looked up here, only as
        far as the reports' cuts reach).

        The shingles of the reports that the complaint lacks need their document frequencies: they
        are looked up in one sorted batch for all matters, since in a large index each lookup is a
        binary search through megabytes of postings and sorted keys keep it in cache.
        """
        size = self.config.sketch_size
        pairs = []  # (matter position, complaint's weights below the cut, shared mask, report-only shingles)
        for position, matter in enumerate(matters):
            for member in matter.members:
                if member.size == 0 or signature.size == 0:
                    continue
                left, right = _below_cut(signature, member, size)
                in_right = _sorted_membership(left, right)
                pairs.append((position, left.size, in_right, right[~_sorted_membership(right, left)]))
        best = [0.0] * len(matters)
        if not pairs:
            return best
        if weights is None:
            weights = self._weights(signature[:max(pair[1] for pair in pairs)])
        only_right = np.concatenate([pair[3] for pair in pairs])
        unique, inverse = np.unique(only_right, return_inverse=True)
        right_weights = self._weights(unique)[inverse]
        start = 0
        for position, cut, in_right, right_only in pairs:
            lw = weights[:cut]
            w_right = right_weights[start:start + right_only.size]
            start += right_only.size
            w_inter = float(lw[in_right].sum())
            if w_inter <= 0.0:
                continue
            w_union = float(lw.sum()) + float(w_right.sum())
            best[position] = max(best[position], w_inter / w_union)
        return best

    def _evaluate(self, text_sim: float, features: MatterFeatures, matter: _Matter,
                  reporters: Sequence[str], relation: str, shared: Optional[List[str]] = None,
                  one_city: bool = False) -> Optional[Tuple[float, str, Optional[str]]]:
        """The join score and its evidence, or None when the complaint does not report this matter.

        A matter is one problem source at one place. Evidence, strongest first:

        * ``title_entity`` / ``entity``: both name the same source (a company, a site), with a
          little text in common; the same source is the same matter whatever the problem;
        * ``location``: both name the same precise place (a compound, an address, a river or a
          school) and share a pollution type: a restaurant's fumes and a shop's noise in one
          compound are two matters; when either names a source there (a KTV, a restaurant), the
          place says less about the other, so some text must be shared too;
        * ``reporter``: the same reporter writes again about the same type, or with text in common;
        * ``text``: the same type and very similar text (boilerplate removed before shingling).

        A road, town, village or park (role ``area``) is never evidence: many sources share one.
        Two reports naming different sources of one kind join only with nearly identical text.
        Environmental and non-environmental complaints (no types) share a matter only when one
        restates the other (a shared name and ``text_only_unplaced`` text); non-environmental
        ones join each other by text alone.
        """
        cfg, w = self.config, self.config.weights
        # known to be in one city: by the index's key, or by both resolved regions
        placed = one_city or relation in ("same_county", "same_city")
        if shared is None or placed != one_city:  # names sound alike more loosely within one city
            shared = self._shared_entities(features.entities, matter.entities, near=placed)
        classes = {entity.partition(":")[0] for entity in shared}
        shared_source, shared_location = bool(classes & self._sources), bool(classes & self._locations)
        if bool(features.types) != matter.environmental and not (
                (shared_source or shared_location) and text_sim >= cfg.text_only_unplaced):
            return None  # the classifier may miss a repeat's type, never a restatement's
        shared_title = shared_source and any(
            entity.partition(":")[0] in self._sources
            for entity in self._shared_entities(features.title_entities, matter.title_entities, near=placed))
        conflict = self._entity_conflict(features.entities, matter)
        same_reporter = any(r in matter.reporters for r in reporters)
        # a restored matter whose lead names no type could be of any type
        shared_type = bool(set(features.types) & set(matter.types)) or (
            bool(features.types) and matter.environmental and not matter.types)
        # a matter restored without a comparable sketch can only be recognised by its names
        textless = not any(member.size for member in matter.members)
        if conflict:
            evidence = "text" if shared_type and text_sim >= cfg.conflict_text_similarity else None
        elif not features.types:
            # a non-environmental complaint names a company for a job, a wage or a subsidy: only
            # the same letter again makes a matter of such complaints
            evidence = "text" if text_sim >= (cfg.text_only_similarity if placed else cfg.text_only_unplaced) else None
        elif shared_title and (textless or text_sim >= cfg.min_text_with_title_entity):
            evidence = "title_entity"
        elif shared_source and (textless or text_sim >= cfg.min_text_with_entity):
            evidence = "entity"
        elif shared_location and shared_type and (textless or text_sim >= self._location_floor(
                features, matter, shared, placed)):
            evidence = "location"
        elif same_reporter and (shared_type or text_sim >= cfg.min_text_with_reporter):
            evidence = "reporter"
        elif shared_type and text_sim >= (cfg.conflict_text_similarity
                                          if self._entity_conflict(features.entities, matter, False)
                                          else cfg.text_only_similarity if placed else cfg.text_only_unplaced):
            evidence = "text"
        else:
            evidence = None
        if evidence is None:
            return None
        score = w["text"] * text_sim
        score += w["shared_source"] * shared_source + w["shared_location"] * shared_location
        score += w["shared_title_entity"] * shared_title
        score += w["shared_type"] * shared_type + w["same_reporter"] * same_reporter
        score -= w["entity_conflict"] * conflict
        # the name an inspector reads to check the merge
        named_by = {"title_entity": self._sources, "entity": self._sources, "location": self._locations}.get(evidence, ())
        return score, evidence, next((e for e in shared if e.partition(":")[0] in named_by), None)

    def _location_floor(self, features: MatterFeatures, matter: _Matter, shared: Sequence[str], placed: bool) -> float:
        """The text similarity a shared precise place needs besides a shared type: more when either
        side names a source there (the place then says less about the other report), and when the
        two are not known to be in one city and no shared place name has three characters or more
        (a two-character compound name, 长虹苑 or 河李小区, recurs from city to city)."""
        cfg = self.config
        floor = cfg.min_text_with_location_beside_source if self._names_source(features, matter) \
            else cfg.min_text_with_location
        long_name = any(e.partition(":")[0] in self._locations and len(e.partition(":")[2].partition("#")[0]) >= 3
                        for e in shared)
        return floor if placed or long_name else max(floor, cfg.min_text_with_location_unplaced)

    def _names_source(self, features: MatterFeatures, matter: _Matter) -> bool:
        """Whether the complaint or the matter names a specific source (not necessarily a shared one)."""
        return any(entity.partition(":")[0] in self._sources and self._specific(entity)
                   for entity in itertools.chain(features.entities, matter.entities))

    def _shared_entities(self, new: Sequence[str], known: Iterable[str], near: bool = False) -> List[str]:
        """The complaint's specific names that match one of the matter's (same kind, :func:`_cores_match`;
        ``near``: both in one city), in the complaint's order."""
        cfg = self.config
        known_split = [e.partition(":")[::2] for e in known]  # (class, core), as _split, without its call
        shared = []
        for entity in new:  # names first: whether a name is specific costs a look at the postings
            cls, _, core = entity.partition(":")
            if any(kcls == cls and _cores_match(core, kcore, cfg, near) for kcls, kcore in known_split) \
                    and self._specific(entity):
                shared.append(entity)
        return shared

    def _specific(self, entity: str) -> bool:
        cached = self._specific_cache.get(entity)
        if cached is None:
            cached = self._specific_cache[entity] = self._is_specific(entity)
        return cached

    def _is_specific(self, entity: str) -> bool:
        """Whether an entity can identify a matter here.

        Not when several live matters name it (``generic_matters`` or more: a kind of place, or a
        busy road), nor when every shingle of its name is common among the live matters (a phrase
        the suffix rules mistook for a name, "客人散场" -> ``company:客人散``).
        """
        holders = _holders(self._entity_index, self._entity_key(entity))
        if len(holders) >= self.config.generic_matters and self._matters_naming(entity, holders) >= \
                self.config.generic_matters:
            return False
        core = _split(entity)[1].partition("#")[0]
        k = self.config.shingle_chars
        if len(core) < k or not len(self._postings):
            return True
        cap = max(float(self.config.generic_matters), self.config.common_share * len(self._matters))
        hashes = _name_hashes(core, k, self.config.seed)
        return bool((self._postings.document_frequency(hashes) < cap).any())

    def _matters_naming(self, entity: str, holders: Collection[str]) -> int:
        """How many of ``holders`` (the matters under the entity's index key) name the entity itself,
        counted up to ``generic_matters``. The key is the name's last two characters, so in a large
        index (a province's unplaced complaints, a big city) "锦松北路" and "龙松北路" share it; only
        matters naming the same place make a name generic. Past :data:`_NAMING_SCAN` holders the
        key itself is taken as generic."""
        cfg = self.config
        if len(holders) > _NAMING_SCAN:
            return cfg.generic_matters
        cls, core = _split(entity)
        prefix = cls + ":"
        cut = len(prefix)
        found = 0
        for cid in sorted(holders):
            if any(e.startswith(prefix) and _cores_match(core, e[cut:], cfg) for e in self._matters[cid].entities):
                found += 1
                if found >= cfg.generic_matters:
                    break
        return found

    def _entity_conflict(self, new: Sequence[str], matter: _Matter, confirmed_only: bool = True) -> bool:
        """Both name a specific source of one kind (a company, a site) that the other does not.

        Only source kinds count: one matter often names several places (where the source is,
        whom it harms). The matter's name must be confirmed (in a title, or in two reports), so a
        phrase the rules mistook for a name does not split a matter; and a conflict stands even
        when another name of that kind is shared, so such a phrase ("客人散场" ->
        ``company:客人散``) does not join two bars with different names either. With
        ``confirmed_only`` off, any name of the matter counts: the bar for text alone.
        """
        cfg = self.config
        titled = None
        for kind in cfg.conflict_classes:
            prefix = kind + ":"  # "company:宏达" is of kind "company" (names are "class:core")
            cut = len(prefix)
            named = [e[cut:] for e in new if e.startswith(prefix) and self._specific(e)]
            if not named:
                continue
            if titled is None:
                titled = set(matter.title_entities)
            known = [(e[cut:], n >= 2 or e in titled or not confirmed_only) for e, n in matter.entities.items()
                     if e.startswith(prefix) and self._specific(e)]
            if not known:
                continue
            new_unmatched = any(not any(_cores_match(c, k, cfg) for k, _ in known) for c in named)
            known_unmatched = any(confirmed and not any(_cores_match(c, k, cfg) for c in named)
                                  for k, confirmed in known)
            if new_unmatched and known_unmatched:
                return True
        return False

    def _relation(self, region: Optional[str], matter: _Matter) -> str:
        if not region or not matter.regions:
            return "compatible"
        relations = {region_relation(region, known) for known in matter.regions}
        for relation in ("same_county", "same_city", "compatible"):
            if relation in relations:
                return relation
        return "conflict"

    # -- public API --------------------------------------------------------------------------

    def assign(self, complaint_id: str, event_time_ms: int, features: MatterFeatures,
               reporter_key: Union[str, Sequence[str], None] = None) -> Assignment:
        """Assigns a complaint to the best matching live matter, or starts a new matter.

        Matters whose reports all lie more than ``window_days`` from ``event_time_ms`` are not
        candidates (call :meth:`expire` to free them). The index is updated in place.

        Args:
            complaint_id: the complaint's id; the id of a new matter's first complaint fixes its
                ``cluster_id``.
            event_time_ms: event time (epoch ms).
            features: from :func:`matter_features` with the same configuration.
            reporter_key: pseudonymous reporter key (or several keys of one reporter, one per
                identifier): the same reporter writing again is evidence of a repeat.
        """
        return assign_across(self, (), complaint_id, event_time_ms, features, reporter_key)[1]

    def _prepared(self, features: MatterFeatures, reporter_key: Union[str, Sequence[str], None]
                  ) -> Tuple[MatterFeatures, Tuple[str, ...]]:
        """The features with a trimmed sketch and the reporter digests, as matching needs them."""
        if np.shape(features.signature) != (self.config.sketch_size,):
            raise ValueError(f"signature has {np.size(features.signature)} slots, "
                             f"index expects {self.config.sketch_size}")
        return features._replace(signature=_trim(features.signature)), _reporter_digests(reporter_key)

    def _names_held(self, keys: Tuple[Tuple[str, ...], Tuple[str, ...]], reporters: Sequence[str]) -> bool:
        """Whether a live matter here is under one of a complaint's name keys (``(entity keys,
        title entity keys)``) or reporters: a cheap test before another key's index is searched
        (the holders' key is dropped with its last matter, so membership is the test)."""
        return (any(key in self._entity_index for key in keys[0]) or any(key in self._title_index for key in keys[1])
                or any(r in self._reporter_index for r in reporters))

    def _match(self, event_time_ms: int, features: MatterFeatures, reporters: Sequence[str],
               one_city: bool, by_name: bool = False) -> Optional[_Candidate]:
        """The best live matter the (prepared) complaint reports, or None; changes nothing.

        ``one_city``: whether the complaint is known to be in this index's city (false when a
        complaint of no known city searches a city key's index, whose looser rules then do not
        apply). ``by_name``: only matters sharing a name or a reporter are candidates (no walk of
        the postings for text alone: the cost of searching another key)."""
        cfg = self.config
        self._specific_cache = {}
        if not self._matters:
            return None
        signature = features.signature
        if by_name:
            weights, by_text, reachable = None, [], set()
        else:
            lookup = self._postings.lookup(signature)
            weights = self._weights(signature, lookup.df)
            by_text, reachable = self._candidates(lookup, weights, features.region_adcode, one_city)
        candidates = set(by_text)
        for reporter in reporters:
            candidates.update(_holders(self._reporter_index, reporter))
        # matters under the complaint's name keys: the keys are coarse (a name's last two
        # characters), so most of them name something else; one that shares no name and whose
        # text cannot reach a text-only threshold could not join, and is not compared
        named = self._entity_holders(features.entities, self._entity_index)
        named |= self._entity_holders(features.title_entities, self._title_index)
        shared_of: Dict[str, List[str]] = {}
        for cluster_id in named - candidates:
            shared = self._shared_entities(features.entities, self._matters[cluster_id].entities, one_city)
            if shared or cluster_id in reachable:
                shared_of[cluster_id] = shared
                candidates.add(cluster_id)
        if not candidates:
            return None
        comparable = []
        for cluster_id in sorted(candidates):
            matter = self._matters[cluster_id]
            if (event_time_ms - matter.last_seen_ms > cfg.window_ms
                    or matter.first_seen_ms - event_time_ms > cfg.window_ms):
                continue
            relation = self._relation(features.region_adcode, matter)
            if relation != "conflict":
                comparable.append((cluster_id, matter, relation))
        similarities = self._text_similarities(signature, weights, [matter for _, matter, _ in comparable])
        best: Optional[_Candidate] = None
        for (cluster_id, matter, relation), text_sim in zip(comparable, similarities):
            judged = self._evaluate(text_sim, features, matter, reporters, relation, shared_of.get(cluster_id),
                                    one_city)
            if judged is None:
                continue
            found = _Candidate(judged[0], text_sim, judged[1], matter.first_seen_ms, cluster_id, judged[2])
            if best is None or _rank(found) > _rank(best):
                best = found
        return best

    def _settle(self, complaint_id: str, event_time_ms: int, features: MatterFeatures, reporters: Sequence[str],
                best: Optional[_Candidate]) -> Assignment:
        """Adds the (prepared) complaint to the matter ``best`` names, or starts a new matter."""
        if best is None:
            cluster_id = cluster_id_for(complaint_id)
            matter = _Matter(cluster_id, complaint_id, event_time_ms, event_time_ms, 1, [], {}, {}, [],
                             environmental=bool(features.types))
            self._matters[cluster_id] = matter
            self._seen(matter)
            self._add_report(matter, features, reporters)
            self._add_complaint_ids(matter, [complaint_id])
            self._changed.add(cluster_id)
            return Assignment(cluster_id, None, True, 0.0, "new")
        matter = self._matters[best.cluster_id]
        matter.report_count += 1
        if event_time_ms > matter.last_seen_ms:
            matter.last_seen_ms = event_time_ms
            self._seen(matter)
        matter.first_seen_ms = min(matter.first_seen_ms, event_time_ms)
        self._add_report(matter, features, reporters)
        self._add_complaint_ids(matter, [complaint_id])
        self._changed.add(matter.cluster_id)
        return Assignment(matter.cluster_id, matter.first_complaint_id, False, round(best.text, 4),
                          "text" if best.evidence == "text" else f"text+{best.evidence}", best.shared)

    def redelivery(self, complaint_id: str) -> Optional[Assignment]:
        """The assignment a complaint already got, if it is a live matter's known report.

        At-least-once delivery (a replayed round, a redelivered Kafka record, a restart that
        re-reads what the prior leads already hold) repeats complaints: a repeat delivery keeps its
        matter, is not counted again, and the first report of a matter stays its first report
        (``duplicate_of`` None) instead of matching its own matter as a repeat of itself.
        """
        cluster_id = self._complaint_index.get(complaint_id)
        if cluster_id is None and cluster_id_for(complaint_id) in self._matters:
            cluster_id = cluster_id_for(complaint_id)  # state written before ids were kept
        matter = self._matters.get(cluster_id) if cluster_id is not None else None
        if matter is None:
            return None
        first = matter.first_complaint_id
        return Assignment(cluster_id, None if first == complaint_id else first, False, 1.0, "redelivery")

    def expire(self, now_ms: int) -> List[str]:
        """Drops matters whose last report is older than the window; returns their cluster ids."""
        horizon = now_ms - self.config.window_ms
        heap, expired = self._by_last_seen, set()
        while heap and heap[0][0] < horizon:
            cid = heapq.heappop(heap)[1]
            matter = self._matters.get(cid)
            if matter is not None and matter.last_seen_ms < horizon:  # else a stale entry
                expired.add(cid)
        gone = sorted(expired)
        for cid in gone:
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
            self._hold(_ENTITY, self._entity_key(entity), cid)
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

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: Optional[RepeatConfig] = None,
                   block: Optional[str] = None) -> "MatterIndex":
        """Rebuilds an index from :meth:`to_state`; refuses state of another sketch shape."""
        index = cls(config, block if block is not None else state.get("block"))
        index.merge_state(state)
        return index


def _rank(candidate: _Candidate) -> Tuple[float, float, int, str]:
    """Order of candidates: score, then text; ties go to the older matter so that replays are
    deterministic."""
    return candidate.score, candidate.text, -candidate.first_seen_ms, candidate.cluster_id


def assign_across(home: MatterIndex, others: Sequence[MatterIndex], complaint_id: str, event_time_ms: int,
                  features: MatterFeatures, reporter_key: Union[str, Sequence[str], None] = None
                  ) -> Tuple[MatterIndex, Assignment]:
    """Assigns a complaint to the best live matter of ``home`` or of ``others``, or starts a new
    matter in ``home``; returns the index that now holds its matter, and the assignment.

    ``others`` are searched as for a complaint not known to be in their city, and only among their
    matters under one of its names or reporters: such a matter joins on a shared source, place or
    reporter; text alone joins only within ``home`` (a walk of every city's postings would cost
    more than all the rest of the assignment). A redelivered
    complaint keeps the matter of whichever index knows it. With no ``others``, this is
    :meth:`MatterIndex.assign`.
    """
    features, reporters = home._prepared(features, reporter_key)
    keys = _name_keys(home, features) if others else ((), ())
    return _assign_across(home, others, complaint_id, event_time_ms, features, reporters, keys)


def _name_keys(home: MatterIndex, features: MatterFeatures) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The index keys of a complaint's source and place names, ``(entity keys, title entity
    keys)``: what another key's index is searched under (a road or a town alone never joins)."""
    evidence = home._sources | home._locations
    return (tuple(home._entity_key(e) for e in features.entities if e.partition(":")[0] in evidence),
            tuple(home._entity_key(e) for e in features.title_entities if e.partition(":")[0] in evidence))


def _assign_across(home: MatterIndex, others: Sequence[MatterIndex], complaint_id: str, event_time_ms: int,
                   features: MatterFeatures, reporters: Sequence[str],
                   keys: Tuple[Tuple[str, ...], Tuple[str, ...]]) -> Tuple[MatterIndex, Assignment]:
    """:func:`assign_across` of a prepared complaint (:meth:`MatterIndex._prepared`) and its name keys."""
    indexes = (home, *others)
    for index in indexes:
        known = index.redelivery(complaint_id) if complaint_id in index._complaint_index or index is home else None
        if known is not None:
            return index, known
    best, chosen = None, home
    for index in indexes:
        if index is not home and not index._names_held(keys, reporters):
            continue
        found = index._match(event_time_ms, features, reporters, index._one_city and index is home, index is not home)
        if found is not None and (best is None or _rank(found) > _rank(best)):
            best, chosen = found, index
    return chosen, chosen._settle(complaint_id, event_time_ms, features, reporters, best)


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


# A :class:`KeyIndexes` directory: per kind (:data:`_ENTITY` ...), key -> the blocking keys whose
# index holds it (a key while there is one, a set from two on, as :data:`_Holders`)
_Directory = Dict[str, Dict[str, Union[str, set]]]


class KeyIndexes(dict):
    """The matter indexes of the blocking keys (``{key: MatterIndex}``, used as a dict), with a
    directory from every name key, reporter and complaint id to the keys whose index holds it,
    kept in step by the indexes themselves as they change: :func:`assign_unplaced` then visits
    only the city keys that could take a complaint, not every key of its scope (about 280 with no
    province known). An index belongs to one such mapping at a time."""

    def __init__(self, indexes: Optional[Mapping[str, MatterIndex]] = None):
        super().__init__()
        self._directory: _Directory = {kind: {} for kind in (_ENTITY, _TITLE, _REPORTER, _COMPLAINT)}
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

    def holding(self, keys: Tuple[Tuple[str, ...], Tuple[str, ...]], reporters: Sequence[str],
                complaint_id: str) -> set:
        """The keys whose index holds one of the entity keys ``keys[0]``, title entity keys
        ``keys[1]``, ``reporters`` or ``complaint_id``: the only keys where the complaint can be a
        redelivery or find a matter by name or reporter (:meth:`MatterIndex._names_held`)."""
        found: set = set()
        for kind, wanted in ((_ENTITY, keys[0]), (_TITLE, keys[1]), (_REPORTER, reporters),
                             (_COMPLAINT, (complaint_id,))):
            directory = self._directory[kind]
            for key in wanted:
                found.update(_holders(directory, key))
        return found


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


def _split(entity: str) -> Tuple[str, str]:
    cls, _, core = entity.partition(":")
    return cls, core


@lru_cache(maxsize=200_000)
def sound(name: str) -> Tuple[str, ...]:
    """The name as toneless pinyin syllables, one per character (each character's usual reading,
    not a reading guessed from the phrase, so that one character always sounds the same).

    Names reach the hotline by ear and are typed by whoever takes the call: 鸿锦 / 宏锦, 锦盛 /
    锦胜 and 鑫源 / 新源 are one company written by sound."""
    return tuple(lazy_pinyin(list(name), errors="default"))


def _cores_match(a: str, b: str, config: RepeatConfig, near: bool = False) -> bool:
    """Whether two entity cores of one class name the same place or party.

    Equal names; one name with and one without its trade ("宏达化工" / "宏达"); a name with a place
    or developer prefix the rules did not cut off ("南海狮山鸿泰" / "鸿泰", two characters or more);
    and the same names written with other characters of the same sound (:func:`sound`), when the
    name has three characters, or two and a trade on both sides (on either side when ``near``: both
    reports are known to be in one city). Trades must agree (equal, one missing, or
    sharing a character: 铝材 / 铝业). Remembered per configuration (the same pairs of names
    are compared again for every complaint naming them)."""
    if a == b:
        return True
    memo = _match_memo(config)
    hit = memo.get((a, b, near))
    if hit is None:
        hit = _compare_cores(a, b, config, near)
        if len(memo) >= 65_536:  # bounded: a long stream meets ever new names
            memo.clear()
        memo[(a, b, near)] = hit
    return hit


@cached_per_config
def _match_memo(config: RepeatConfig) -> Dict[Tuple[str, str, bool], bool]:
    """(core, core, near) -> :func:`_cores_match`, per configuration."""
    return {}


def _compare_cores(a: str, b: str, config: RepeatConfig, near: bool) -> bool:
    """:func:`_cores_match` of two different cores, not remembered."""
    if "#" in a or "#" in b:
        road_a, _, number_a = a.partition("#")
        road_b, _, number_b = b.partition("#")
        return number_a == number_b and _cores_match(road_a, road_b, config, near)
    name_a, trade_a = _strip_category(a, config)
    name_b, trade_b = _strip_category(b, config)
    if trade_a and trade_b and trade_a != trade_b and not set(trade_a) & set(trade_b):
        short, long_ = (a, b) if len(a) < len(b) else (b, a)
        return len(short) >= 3 and long_.endswith(short)
    if name_a == name_b:
        return True
    short, long_ = (name_a, name_b) if len(name_a) < len(name_b) else (name_b, name_a)
    if len(short) < 2:
        return False
    if not long_.endswith(short):
        # by sound, only a name long enough to be one: three characters, or two with a trade on
        # both sides (鸿锦印染 / 宏锦印染), or on one side within one city (恒昌 / 恒倡印染); two
        # bare characters sound alike too often (湾大 / 万大, 西明汽修 / 溪明烧烤 in two provinces)
        if sound(long_)[-len(short):] != sound(short) or not (
                len(short) >= 3 or trade_a and trade_b or near and (trade_a or trade_b)):
            return False
    return len(short) >= 3 or _is_place_prefix(long_[:-len(short)])


@lru_cache(maxsize=100_000)
def _is_place_prefix(prefix: str) -> bool:
    """Whether ``prefix`` is nothing but place names ("", "南海狮山", "瑞安塘下"): what a reporter
    writes before a source's name to say where it is, so "南海狮山鸿泰" is "鸿泰" while "天宸府楼盘"
    is not "楼盘"."""
    if not prefix:
        return True
    words = _place_words()
    return any(prefix[:n] in words and _is_place_prefix(prefix[n:]) for n in range(min(len(prefix), 7), 1, -1))


@lru_cache(maxsize=1)
def _place_words() -> frozenset:
    """Division and township names, full and without their level suffix (瑞安市 / 瑞安, 塘下镇 / 塘下)."""
    from envleads.divisions import load_divisions, load_townships

    names = [division.name for division in load_divisions()] + list(load_townships().by_name)
    words = set(names) | {_short_name(name, _ADMIN_SUFFIXES + _TOWNSHIP_SUFFIXES) for name in names}
    return frozenset(w for w in words if len(w) >= 2)


def _short_name(name: str, suffixes: Tuple[str, ...]) -> str:
    """The name without the first of ``suffixes`` it ends with (长沙市 -> 长沙), when two or more
    characters remain; else the name itself."""
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[:-len(suffix)]
    return name


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
