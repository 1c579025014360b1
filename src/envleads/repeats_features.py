"""What repeat detection compares of a complaint (:class:`MatterFeatures`): its text sketch, the
places and parties it names (suffix rules, names compared by sound), its types and its region;
and the blocking key its region gives.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Collection, Dict, List, NamedTuple, Optional, Sequence, Tuple

import ahocorasick
import numpy as np
from pypinyin import lazy_pinyin

from envleads.config import cached_per_config
from envleads.divisions import MUNICIPALITY_CODES
from envleads.repeats_config import DESCRIPTOR_CLASS, EntityClass, RepeatConfig, default_config
from envleads.repeats_text import (_EMPTY_SLOT, _SEPARATOR, _canonical, _entity_text, _trim, normalise_text,
                                   shingle_hashes, text_sketch)
from envleads.text import char_readings, dictionary_words

UNKNOWN_BLOCK = "unknown"


class MatterFeatures(NamedTuple):
    """What identifies a complaint's matter: text sketch, named places/parties, types, region."""

    signature: np.ndarray  # uint32[sketch_size]: bottom-k shingle hashes ascending, then empty slots
    entities: Tuple[str, ...]  # sorted "class:core" strings, e.g. "compound:翠湖"
    title_entities: Tuple[str, ...]  # those named in the title: what the complaint is about
    types: Tuple[str, ...]
    region_adcode: Optional[str]
    shingle_count: int
    # no types, but the text says what only a report of pollution says (``pollution_words``)
    states_pollution: bool = False
    # the normalised text with separators where punctuation was: a live matter's trade name is
    # looked for in it (:func:`trade_name_said`)
    plain_text: str = ""

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


# a house number right after a road: "建设路12号", "兴隆路十八号(楼)" (a building or courtyard
# numbered on the road is that address; a line or a gate number is not)
_HOUSE_NUMBER = re.compile(r"(\d{1,5}|[零〇一二两三四五六七八九十百]{1,6})号(?!线|门)")
_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}


def house_number(written: str) -> Optional[str]:
    """A house number in digits ("18"), from digits or Chinese numerals (十八, 一百零八, 一二八);
    None when the numerals do not read as a house number (零, 十十)."""
    if written.isdigit():
        return str(int(written)) if int(written) else None
    if "十" not in written and "百" not in written:  # digit by digit: 一二八
        if written[0] in "零〇" or not all(c in _DIGITS for c in written):
            return None
        return "".join(str(_DIGITS[c]) for c in written)
    value, digit, last_unit = 0, None, 1000
    for char in written:
        if char in "零〇" and value:  # 一百零八: a gap, not a digit
            continue
        if char in _DIGITS:
            if digit is not None:
                return None
            digit = _DIGITS[char]
        elif char in "十百":
            unit = 10 if char == "十" else 100
            if unit >= last_unit:
                return None
            value, digit, last_unit = value + (1 if digit is None else digit) * unit, None, unit
        else:
            return None
    return str(value + (digit or 0))


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
        beside = False
        if banned and end < len(norm) and norm[end] in banned:
            beside = norm.startswith(cls.sides, end)
            if not beside:
                continue
        core = _core_before(norm, pos, config, cls.trades)
        if core is None or beside and _ends_in_ordinary_word(core, config):
            continue  # "村东头河边", "汛期河堤", "下雨前后河里": the sentence before 河边, not a river's name
        if len(core) < cls.min_core_chars and not _single_char_name(core, suffix, cls) \
                or core in config.generic_cores or "某" in core:
            continue  # "某化工厂": the writer withholds the name, so it names a kind, not a party
        if core[0] in config.phrase_initial or core[-1] + suffix[0] in config.bound_words \
                or core.startswith(config.phrase_starts):
            continue  # "一刮风工地", "客人散场", "带泥上路", "晚上炭火烧烤": a phrase, not a name
        if cls.trades:
            name = _strip_category(core, config)[0]
            if name in config.category_words or name in config.generic_cores or name in _common_words(config) \
                    or _kind_only(name, cls, config):
                continue  # "化工厂", "门面烧烤", "其他烧烤", "烧烤店烧烤": a kind or a phrase, not a name
        admin = _admin_names()
        if core + suffix in admin or core + suffix[:1] in admin or any(core + suffix + s in admin for s in "区县市"):
            continue  # "苏州工业园区", "七台河", "普兰店(区)": a division, not a place or party in it
        if cls.keep_suffix or suffix in cls.kind_suffixes:
            core += suffix
        found.append((end, f"{cls.name}:{core}"))
        if cls.full_name_class:
            found.append((end, f"{cls.full_name_class}:{core}{suffix}"))
        if cls.name == "road" or suffix in config.address_roads:
            number = _HOUSE_NUMBER.match(norm, end, end + 8)
            digits = house_number(number.group(1)) if number else None
            if digits and len(core) >= 2:
                found.append((end, f"{config.address_class}:{core}#{digits}"))
    return found


def _single_char_name(core: str, suffix: str, cls: EntityClass) -> bool:
    """Whether a one-character core is a name of its class: rivers are named so (细河, 祊河, 乌河),
    unless the character says a kind or a direction (小河, 内河, 东河 of a village's east)."""
    return len(core) == 1 and suffix in cls.single_char_suffixes and core not in cls.single_char_stop


def _kind_only(name: str, cls: EntityClass, config: RepeatConfig) -> bool:
    """Whether a name is only a kind of source with its suffix ("烧烤店", "化工厂"): what is left
    once a suffix of its class and its trades are taken off is a trade or nothing."""
    for suffix in cls.suffixes:
        if len(name) > len(suffix) and name.endswith(suffix):
            inner = _strip_category(name[:-len(suffix)], config)[0]
            return inner in config.category_words or inner in config.generic_cores
    return False


def _ends_in_ordinary_word(core: str, config: RepeatConfig) -> bool:
    """Whether a name of two characters or more is, or ends in, a word of the sentence (东头, 汛期,
    前后 of 下雨前后): before a suffix and a side word (河边, 河堤) it is no place's name."""
    words = _ordinary_words(config)
    return len(core) > 1 and (core in words or core[-2:] in words)


@cached_per_config
def _ordinary_words(config: RepeatConfig) -> frozenset:
    """jieba's dictionary words of two to four characters, of ``entities.ordinary_words.min_frequency``
    or more, with no proper-name tag (``proper_name_tags``: places, persons, organisations)."""
    if config.ordinary_word_min_frequency <= 0:
        return frozenset()
    return dictionary_words(lambda word, frequency, tag: 2 <= len(word) <= 4 and tag not in config.proper_name_tags
                             and frequency >= config.ordinary_word_min_frequency)


@cached_per_config
def _common_words(config: RepeatConfig) -> frozenset:
    """jieba's dictionary words of at least ``common_words.min_frequency`` with one of
    ``common_words.tags``: a source's name that is one of them is an ordinary word."""
    if config.common_word_min_frequency <= 0:
        return frozenset()
    return dictionary_words(lambda word, frequency, tag: len(word) >= 2 and tag in config.common_word_tags
                             and frequency >= config.common_word_min_frequency)


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


@lru_cache(maxsize=1)
def _division_name_parts() -> frozenset:
    """Every part of two characters or more of a province's or city's short name (浩特 of 呼和浩特):
    a trade name taken from "呼和浩特大排档" cut short would match every report from that city."""
    from envleads.divisions import load_divisions

    names = {_short_name(d.name, _ADMIN_SUFFIXES) for d in load_divisions() if d.level in ("province", "city")}
    return frozenset(name[i:j] for name in names for i in range(len(name)) for j in range(i + 2, len(name) + 1))


def _strip_admin_prefix(core: str) -> str:
    """"阳江友坝" -> "友坝": a division name written before a place name is not part of it."""
    names = _admin_names()
    for length in range(min(len(core) - 2, 8), 1, -1):
        if core[:length] in names:
            return core[length:]
    return core


def _core_before(norm: str, pos: int, config: RepeatConfig, trades: bool = False) -> Optional[str]:
    """The name before a suffix at ``pos``, cut at the nearest boundary; None when there is none
    within ``max_name_chars``. ``trades``: a trade word just before the suffix is part of the name
    and cut in no place ("美林家具厂", "宏达表面处理厂": 家 and 处理 are boundaries elsewhere)."""
    limit = config.max_name_chars
    window = norm[max(0, pos - limit - 1):pos]
    bounded = pos - len(window) == 0 or _SEPARATOR in window
    tail = window.rsplit(_SEPARATOR, 1)[-1]
    trade = ""
    if trades:
        name, trade = _strip_category(tail, config)
        if trade and not _cut_at_boundary(trade, config.boundaries, config.name_boundary_chars) == trade:
            tail = name
        else:
            trade = ""
    core = _cut_at_boundary(tail, config.boundaries, config.name_boundary_chars)
    if len(core) < len(tail):
        bounded = True
    core = _strip_admin_prefix(core.lstrip("0123456789")) + trade
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
    entities = tuple(sorted(set(entities) | set(given_names(full, config))))
    placed_trades = _area_named_sources(entities, config)
    if placed_trades:
        entities = tuple(e for e in entities if e not in placed_trades)
        title_entities = tuple(e for e in title_entities if e not in placed_trades)
    entities = tuple(sorted(set(entities) | set(descriptors(full, entities, config, title_entities))))
    thanks = is_not_complaint(title, config)
    return MatterFeatures(
        signature=text_sketch(hashes, config.sketch_size),
        entities=entities,
        title_entities=title_entities,
        types=() if thanks else tuple(types or ()),
        region_adcode=_clean_adcode(region_adcode),
        shingle_count=int(hashes.size),
        states_pollution=not types and not thanks and states_pollution(full, config),
        plain_text=_entity_text(full, True) if config.trade_names.max_chars else "",
    )


# a source's name given beside its description: quoted or bracketed ("门口立着“森美”两个大字",
# "一家湖南菜馆(湘味轩)"), or read off its signboard ("门口牌子上写的是恒昌", "招牌是阿强")
_QUOTED_NAME = re.compile(r"[“\"「『(]([\u4e00-\u9fff]{2,6})[”\"」』)]")
_NAME_MARKS = re.compile(r"[“\"「『(牌名]")
_SIGNBOARD_NAME = re.compile(r"(?:招牌|牌子|厂名|店名)[^，。；！？,.;!?]{0,4}?(?:写的是|写着|是|叫)"
                             r"([\u4e00-\u9fff]{2,6}?)(?=[^\u4e00-\u9fff]|$)")


def given_names(text: str, config: RepeatConfig) -> List[str]:
    """Names a report gives its source in quotes, brackets or as read off a signboard, when it
    describes a source by its trade ("那家地板厂(门口立着“森美”两个大字)"): people who do not know
    a plant's registered name say what its sign says. As ``class:core``, of the class of the source
    word beside it (a 楼盘's name is a site's), else of the first source class with trades; not a
    place, a kind, a division, a generic word or a phrase (a boundary inside: "进门第二家")."""
    if not _NAME_MARKS.search(text):
        return []  # most reports: no quote, bracket or signboard to read
    found = [(m.group(1), None) for m in _SIGNBOARD_NAME.finditer(text)]
    found += [(m.group(1), cls) for m in _QUOTED_NAME.finditer(text)
              for cls in [_source_word_beside(text, m.start(), m.end(), config)] if cls]
    if not found or not any(True for _ in _descriptor_automaton(config).iter(_entity_text(text, True))):
        return []
    default = next((c.name for c in config.entity_classes if c.role == "source" and c.trades), None)
    names = []
    for name, cls in found:
        core = _strip_admin_prefix(name)
        if (cls or default) is None or len(core) < 2 or core in config.generic_cores \
                or core in config.category_words or "某" in core or core[0] in config.phrase_initial \
                or core in _admin_names() or core in _place_words() or core in _common_words(config) \
                or _cut_at_boundary(core, config.boundaries) != core:
            continue
        names.append(f"{cls or default}:{core}")
    return names


def _source_word_beside(text: str, start: int, end: int, config: RepeatConfig) -> Optional[str]:
    """The source class whose suffix is beside a quoted or bracketed span: one following it
    ("“蜀湘园”饭店"), else the nearest ending at most ``max_name_chars`` before it ("地板厂(门口立着
    “森美”", "在建楼盘(江南府)"); None for a slogan or an aside in quotes."""
    after = text[end:end + 4]
    for suffix, cls in _source_suffixes(config):
        if after.startswith(suffix):
            return cls
    before = text[max(0, start - config.max_name_chars):start]
    found = [(before.rfind(suffix) + len(suffix), cls) for suffix, cls in _source_suffixes(config) if suffix in before]
    return max(found)[1] if found else None


@cached_per_config
def _source_suffixes(config: RepeatConfig) -> Tuple[Tuple[str, str], ...]:
    """The suffixes of the source classes (厂, 店, 公司, 工地 ...) with their class, longest first."""
    pairs = {(suffix, cls.name) for cls in config.entity_classes if cls.role == "source" for suffix in cls.suffixes}
    return tuple(sorted(pairs, key=lambda pair: (-len(pair[0]), pair)))


def states_pollution(text: str, config: RepeatConfig) -> bool:
    """Whether the text says what only a report of pollution says (``pollution_words``: 偷排,
    酸味, 噪音): short angry repeats ("恒昌染厂又在偷排!!!") are often typed as no pollution by the
    classifier, while a job, wage or subsidy question naming the same plant says none of these."""
    if not config.pollution_words:
        return False
    normalised = normalise_text(text, canonical=True)
    return any(word in normalised for word in config.pollution_words)


def is_not_complaint(title: str, config: RepeatConfig) -> bool:
    """Whether the title says the report praises or thanks (``not_complaint_titles``): the
    classifier reads the problem it thanks for ("之前反映的噪声问题已经解决") as a complaint, and
    such a report must not join or head that problem's matter."""
    return bool(config.not_complaint_titles) and normalise_text(title, canonical=True).startswith(
        config.not_complaint_titles)


def _area_named_sources(entities: Sequence[str], config: RepeatConfig) -> frozenset:
    """The complaint's source names that are an area it names and a trade ("许巷印花(厂)" beside
    ``park:许巷``, "延政西电镀"): a description, not a name (its descriptor comes from the text)."""
    if not config.descriptors.area_classes:
        return frozenset()
    areas = {core for cls, core in map(_split, entities) if cls in _area_classes(config)}
    if not areas:
        return frozenset()
    trades = {cls.name for cls in config.entity_classes if cls.trades and cls.role == "source"}
    out = set()
    for entity in entities:
        cls, core = _split(entity)
        if cls in trades:
            name, trade = _strip_category(core, config)
            if trade and any(name == area or _cores_match(name, area, config) for area in areas):
                out.add(entity)
    return frozenset(out)


@cached_per_config
def _area_classes(config: RepeatConfig) -> frozenset:
    """The classes of role ``area`` (roads, villages, towns, parks)."""
    twins = {cls.full_name_class for cls in config.entity_classes}  # a compound in full names no area
    return frozenset(cls.name for cls in config.entity_classes if cls.role == "area" and cls.name not in twins)


def descriptors(text: str, entities: Sequence[str], config: RepeatConfig,
                title_entities: Sequence[str] = ()) -> List[str]:
    """How the complaint describes a source without naming it: the trade of its source (电镀,
    铸件 -> 铸造; ``entities.descriptors.trades``) on each area it names (a road, a village, a
    park), as ``descriptor:<trade>@<area core>`` ("延政西路上那家电镀厂" -> ``descriptor:电镀@延政西``).
    The trade is that of the sources it names (those of its title first: "宏达表面处理厂", whose text
    names 恒丰电镀 on the same road as well), or, when they say none, every trade its text names.
    One only joins a matter that is the only live one described so (:meth:`MatterIndex._evaluate`).
    Sorted; none past ``max_per_complaint`` (a letter listing many plants describes none of them).
    """
    spec = config.descriptors
    if not spec.words:
        return []
    areas = sorted({core.partition("#")[0] for cls, core in map(_split, entities) if cls in spec.area_classes})
    if not areas:
        return []
    trades: set = set()
    for named in (title_entities, entities):
        for cls, core in map(_split, named):
            if cls in _source_classes(config):
                trades.update(trades_named(core, config))
                if cls in spec.class_trades:
                    trades.add(spec.class_trades[cls])
        if trades:
            break
    if not trades:
        trades = _trades_said(_entity_text(text, True), config)
    found = sorted(f"{DESCRIPTOR_CLASS}:{trade}@{area}" for trade in trades for area in areas)
    return found if len(found) <= spec.max_per_complaint else []


def _trades_said(norm: str, config: RepeatConfig) -> set:
    """The descriptor trades a (normalised) text names, but those it denies just before ("不是铸造厂
    的味道", "不是排档那家": the writer says which neighbour the source is not)."""
    spec = config.descriptors
    trades = set()
    for last, trade in _descriptor_automaton(config).iter(norm):
        if spec.negations:
            start = last + 1 - max(len(w) for w, t in spec.words.items()
                                   if t == trade and norm.endswith(w, 0, last + 1))
            if any(negation in norm[max(0, start - 4):start] for negation in spec.negations):
                continue
        trades.add(trade)
    return trades


# --------------------------------------------------------------------------------------------
# Trade names said again
# --------------------------------------------------------------------------------------------

class TradeNameSaid(NamedTuple):
    """Where a report says a matter's trade name: ``by_sound`` when written with other characters
    of the same sound (鑫盛 for 鑫晟), ``marked`` when the text says it is a source's name (a source
    word or trade follows, "(音)" follows, "叫" / "那家" precedes, or it stands in brackets)."""

    name: str
    by_sound: bool
    marked: bool


def trade_name(entity: str, config: RepeatConfig) -> Optional[str]:
    """The trade name (字号) of a source's name: the name without the division before it, its
    trade and its legal form (``company:唐山市丰南区鑫晟轧钢`` -> 鑫晟), the part people say when
    they do not say the rest; None for a name that is no trade name (a place, a common word, a
    phrase the suffix rules caught, or longer than ``trade_names.max_chars``). Remembered per
    configuration."""
    memo = _trade_name_memo(config)
    if entity in memo:
        return memo[entity]
    cls, _, core = entity.partition(":")
    name: Optional[str] = None
    if cls in _source_classes(config) and "#" not in core and "@" not in core:
        stripped = _strip_category(core, config)[0]
        while _strip_admin_prefix(stripped) != stripped:  # 唐山市丰南区鑫晟
            stripped = _strip_admin_prefix(stripped)
        if 2 <= len(stripped) <= config.trade_names.max_chars and _plain_name(stripped, config):
            name = stripped
    if len(memo) < 100_000:
        memo[entity] = name
    return name


def _plain_name(name: str, config: RepeatConfig) -> bool:
    """Whether ``name`` can be a trade name: Chinese characters only, no place, division, trade,
    common word, generic core, source word, boilerplate or pollution word in it, not starting as a
    phrase does (又, 都 ...)."""
    if not all("\u4e00" <= ch <= "\u9fff" for ch in name) or "某" in name or name[0] in config.phrase_initial:
        return False
    if any(name in phrase for phrase in config.boilerplate) or any(word in name for word in config.pollution_words):
        return False  # 扰民 (of 严重扰民), 偷排: what complaints say, not whom
    if name.endswith(tuple(suffix for suffix in _ADMIN_SUFFIXES if len(suffix) >= 2)):
        return False  # 自治州 left of "昌吉回族自治州歌厅" once 昌吉回族 is cut: a division, no one's name
    if name in _place_words() or name in _admin_names() or name in _division_name_parts() or _common_phrase(name, config) \
            or name in config.generic_cores or name in config.category_words or _is_place_prefix(name) \
            or any(word in name for word in config.descriptors.words):  # a trade (小镀锌作坊) names no one
        return False
    return not any(suffix in name for suffix, _ in _source_suffixes(config) if len(suffix) >= 2) \
        and not name.endswith(tuple(suffix for suffix, _ in _source_suffixes(config))) \
        and not any(word in name for word in config.boundaries if len(word) >= 2)


@cached_per_config
def _kind_nouns(config: RepeatConfig) -> frozenset:
    """jieba's dictionary words of three characters or more tagged as common nouns (棋牌室,
    理发店, 洗车场): kinds of places and businesses, not trade names (proper nouns are tagged nz)."""
    return dictionary_words(lambda word, frequency, tag: len(word) >= 3 and tag == "n")


def _common_phrase(name: str, config: RepeatConfig) -> bool:
    """Whether ``name`` is a common function word (:func:`_common_words`), a kind of business
    (:func:`_kind_nouns`), or two or more frequent words end to end (垃圾焚烧: 垃圾 + 焚烧): what
    the suffix rules catch of a sentence, not a trade name (one frequent two-character word, 星光
    or 金龙, is a name often enough)."""
    return name in _common_words(config) or name in _kind_nouns(config) \
        or _words_end_to_end(name, _frequent_words(config), 0)


def _words_end_to_end(name: str, words: frozenset, found: int) -> bool:
    if not name:
        return found >= 2
    return any(name[:n] in words and _words_end_to_end(name[n:], words, found + 1) for n in range(2, len(name) + 1))


@cached_per_config
def _frequent_words(config: RepeatConfig) -> frozenset:
    """jieba's dictionary words of two characters or more with at least
    ``common_words.min_frequency`` (any part of speech)."""
    if config.common_word_min_frequency <= 0:
        return frozenset()
    return dictionary_words(lambda word, frequency, tag: len(word) >= 2
                             and frequency >= config.common_word_min_frequency)


@cached_per_config
def _trade_name_memo(config: RepeatConfig) -> Dict[str, Optional[str]]:
    return {}


@lru_cache(maxsize=200_000)
def trade_name_keys(name: str) -> Tuple[str, ...]:
    """Index keys of a trade name: the sounds of its first two characters in every reading
    ("xin|sheng", "xin|cheng" for 鑫晟), so that a report writing it by ear (鑫盛) is found under
    one of them."""
    first, second = char_readings(name[0]), char_readings(name[1])
    return tuple(sorted(f"{a}|{b}" for a in first for b in second))


@lru_cache(maxsize=64)  # one complaint's text is looked up in every index it searches
def text_trade_name_keys(text: str) -> frozenset:
    """The keys (:func:`trade_name_keys`) of every two Chinese characters of ``text`` read as
    usual: the keys under which a live matter whose trade name the text may say is indexed (a
    name is indexed under every reading of its characters, a text read as its writer reads it)."""
    usual = _usual_readings(text)
    return frozenset(f"{a}|{b}" for a, b in zip(usual, usual[1:]) if a and b)


def trade_name_key_starts(text: str, keys: Collection[str]) -> Dict[str, List[int]]:
    """Where in ``text`` each of ``keys`` (:func:`text_trade_name_keys`) starts."""
    usual = _usual_readings(text)
    starts: Dict[str, List[int]] = {}
    for start, (a, b) in enumerate(zip(usual, usual[1:])):
        if a and b:
            key = f"{a}|{b}"
            if key in keys:
                starts.setdefault(key, []).append(start)
    return starts


_USUAL_READINGS: Dict[str, str] = {}  # character -> its usual reading ("" if not Chinese), filled as met


@lru_cache(maxsize=64)
def _usual_readings(text: str) -> List[str]:
    """Each character's usual reading (:func:`sound`), "" for a character that is not Chinese;
    a plain dict per character (every complaint's text is read so)."""
    known = _USUAL_READINGS
    out = []
    for ch in text:
        reading = known.get(ch)
        if reading is None:
            reading = known[ch] = sound(ch)[0] if _is_han(ch) else ""
        out.append(reading)
    return out


@lru_cache(maxsize=64)
def text_character_pairs(text: str) -> Tuple[str, ...]:
    """Every two Chinese characters of ``text``, once each: the first two characters of a trade
    name written in the same characters (the :class:`KeyIndexes` directory's trade name keys)."""
    return tuple(sorted({text[i:i + 2] for i in range(len(text) - 1) if _is_han(text[i]) and _is_han(text[i + 1])}))


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _sounds_alike(window: str, name: str) -> bool:
    """Whether ``window`` is ``name`` written by ear: one character other than the name's (鑫盛 /
    鑫晟, 齐长 / 齐昌), of a reading of the name's character at its place. Two characters that
    both differ, or one whose usual reading is not the name's (泵和 / 柳和), are another word."""
    others = [(a, b) for a, b in zip(window, name) if a != b]
    # the written character's usual reading is one of the name's character's (盛 sheng: 晟 cheng
    # or sheng); a rare reading of the written one (泵: liu) is not how anyone hears it
    return len(others) == 1 and sound(others[0][0])[0] in char_readings(others[0][1])


def trade_name_said(text: str, name: str, config: RepeatConfig,
                    starts: Optional[Sequence[int]] = None) -> Optional[TradeNameSaid]:
    """Whether ``text`` (:attr:`MatterFeatures.plain_text`) says the trade name ``name``, in the
    same characters or in others of the same sound. Not a mention: one followed by a road's,
    village's or compound's suffix (金桥路 is a road), or with a ``neighbour_words`` word beside it
    ("就在鸿锦隔壁": the report is about the neighbour). ``marked``: one of its mentions is.
    ``starts``: the only positions to look at (:func:`text_trade_name_keys`), else all."""
    tn = config.trade_names
    n = len(name)
    if not tn.max_chars or n < 2 or len(text) < n:
        return None
    exact = marked = found = False
    for start in (range(len(text) - n + 1) if starts is None else starts):
        window = text[start:start + n]
        if len(window) < n:
            continue
        if window != name and (not _sounds_alike(window, name) or window in _frequent_words(config)):
            continue  # a frequent word that sounds like the name (每天 / 梅天, 晚上 / 完上) is that word
        end = start + n
        after, before = text[end:end + 8], text[max(0, start - 4):start]
        if after.startswith(_place_suffixes(config)) or any(w in after or w in before for w in tn.neighbour_words):
            continue
        found, exact = True, exact or window == name
        marked = marked or _marked_as_name(text, start, end, config)
    return TradeNameSaid(name, not exact, marked) if found else None


def named_as_neighbour(text: str, core: str, config: RepeatConfig) -> bool:
    """Whether every mention of ``core`` in ``text`` has a ``neighbour_words`` word beside it
    ("挨着中石化加油站的那家轧钢厂"): a landmark the report places its source by, not its source."""
    words = config.trade_names.neighbour_words
    starts = [m.start() for m in re.finditer(re.escape(core), text)] if core and words else []
    return bool(starts) and all(any(w in text[max(0, i - 4):i] or w in text[i + len(core):i + len(core) + 8]
                                    for w in words) for i in starts)


def _marked_as_name(text: str, start: int, end: int, config: RepeatConfig) -> bool:
    tn = config.trade_names
    after = text[end:end + 6]
    followers, lengths = _name_followers(config)
    if any(after[k:k + n] in followers for k in range(3) for n in lengths):
        return True
    if any(mark in after for mark in tn.sound_marks):
        return True
    before = text[:start]
    if before.endswith(tn.called):
        return True
    return (start == 0 or text[start - 1] == _SEPARATOR) and (end == len(text) or text[end] == _SEPARATOR) \
        and start > 0 and end < len(text)


@cached_per_config
def _name_followers(config: RepeatConfig) -> Tuple[frozenset, Tuple[int, ...]]:
    """Source suffixes and trade words (what follows a source's name), and their lengths."""
    words = frozenset({suffix for suffix, _ in _source_suffixes(config)} | set(config.category_words))
    return words, tuple(sorted({len(w) for w in words}))


@cached_per_config
def _place_suffixes(config: RepeatConfig) -> Tuple[str, ...]:
    """Suffixes of area and location classes (路, 村, 小区 ...): a name followed by one is a place."""
    words = {suffix for cls in config.entity_classes if cls.role != "source" for suffix in cls.suffixes}
    return tuple(sorted(words, key=len, reverse=True))


@cached_per_config
def _source_classes(config: RepeatConfig) -> frozenset:
    """The classes of role ``source`` (companies, sites)."""
    return frozenset(cls.name for cls in config.entity_classes if cls.role == "source")


def trades_named(core: str, config: RepeatConfig) -> List[str]:
    """The descriptor trades (``entities.descriptors.trades``) a source's name says it is of
    ("锦盛五金电镀" -> ["电镀"])."""
    return sorted({trade for _, trade in _descriptor_automaton(config).iter(core)}) if config.descriptors.words else []


@cached_per_config
def _descriptor_automaton(config: RepeatConfig) -> "ahocorasick.Automaton":
    automaton = ahocorasick.Automaton()
    for word, trade in config.descriptors.words.items():
        automaton.add_word(word, trade)
    automaton.make_automaton()
    return automaton


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


# --------------------------------------------------------------------------------------------
# Names compared by sound
# --------------------------------------------------------------------------------------------

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
    trade_a, at_a, area_a = a.partition("@")
    if at_a:  # a descriptor: its trade, then its area (remembered as a name); not remembered itself
        trade_b, at_b, area_b = b.partition("@")
        return bool(at_b) and trade_a == trade_b and _cores_match(area_a, area_b, config, near)
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
    if "@" in a or "@" in b:  # descriptors (compared in :func:`_cores_match`) match no name
        return False
    if "#" in a or "#" in b:
        road_a, _, number_a = a.partition("#")
        road_b, _, number_b = b.partition("#")
        return number_a == number_b and _cores_match(road_a, road_b, config, near)
    name_a, trade_a = _strip_category(a, config)
    name_b, trade_b = _strip_category(b, config)
    if trade_a and trade_b and trade_a != trade_b and not set(trade_a) & set(trade_b) \
            and not _same_trade_group(trade_a, trade_b, config):
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


def _same_trade_group(a: str, b: str, config: RepeatConfig) -> bool:
    """Whether two trades end in words of one ``entities.trade_groups`` group (土菜 / 饭店: both
    restaurants)."""
    groups = config.trade_groups
    if not groups:
        return False

    def group(trade: str) -> Optional[str]:
        for start in range(len(trade)):  # the longest word of a group the trade ends with
            if trade[start:] in groups:
                return groups[trade[start:]]
        return None

    found = group(a)
    return found is not None and found == group(b)


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
# Places: region codes and blocking keys
# --------------------------------------------------------------------------------------------

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
