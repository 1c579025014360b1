"""Resolves the place of a complaint to a GB/T 2260 division (province, city, county).

A complaint names places in many ways: full names (南京市鼓楼区), short forms (南京, 鼓楼, 江苏),
autonomous names without their ethnic part (环江县 for 环江毛南族自治县), names no longer in force
(偃师市, now 偃师区), agency names (如东生态环境局, 香坊分局) and, in traditional characters, 賓縣.
Place names also hide inside road, company, newspaper and premises names (北海市重庆路 is in Beihai),
so every matched name is weighed by its context before it votes.

The answer is decided level by level: a province, then a city inside it, then a county inside that,
each only when one candidate clearly leads (see ``decision`` in ``data/region_aliases.json``). A
name shared by several divisions (朝阳区 in Beijing and Changchun) without context that tells them
apart stops the answer at the level all candidates share, or gives no answer; a candidate is never
picked arbitrarily. Several different counties of one city (a bulletin listing cases per county)
give the city.

Township names (乡, 镇, 街道, from :func:`envleads.divisions.load_townships`) come last: when the
answer stops above county, a township that lies in exactly one county inside what the text already
settled (or, failing that, inside the intake office's jurisdiction) gives that county, with a lower
confidence than a named county. A township never overrides a county the text names, and a township
name shared by several counties (城关镇 is in more than eighty) gives nothing. Written without its
suffix (小板 for 小板镇) a township counts only right before a village or community (小板罗黄村).

When a same-named district stops the answer (朝阳区 alone), a township written without its
suffix (三里屯) settles it if it lies in exactly one of that district's candidates: the name is looked
for only among their townships, so that a short name is no risk elsewhere. A full name that is also
a common word (新城区, 市中区) counts once the text has settled a province or city holding exactly one
division of that name (陕西省生态环境厅 ... 新城区).

When several places are named, the words around each chain of names (江苏省南京市江宁区) give it a
role (``region_roles.json``): a registered office, a mailing address, the writer's home or workplace
or a vehicle's plate is left out when another place remains; the place reported, a site, a branch
plant weighs more. Names written with one commonly confused character (汩罗市, 陨西县) count when
they name one division only; bare city and province names count only when they hold up as words
(这几天水面上 holds no 天水).

A county name written one character off by ear (睢溪县 for 濉溪县, 啄州市 for 涿州市: a character
whose usual reading is the name's) is read last, when the vote has settled no county: it gives the
county only when the text also names that county's city or province, or a township of it;
otherwise the deepest level that all its candidates (and every sure name) share, a city or a
province, with a lower confidence, so that the lead goes to that bureau instead of nowhere. The
same answer from names that are words (资源, 天山) or from sure names outvoted by weak ones was
measured and left out: on the shared message board (one province's) it made 58 new answers, nearly all other provinces.

All names, suffixes, context patterns and weights are data (``region_aliases.json``,
``region_towns.json``, ``region_roles.json``, ``former_divisions.json``); this module holds only the
procedure.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from envleads.config import ConfigError, data_path, load_json_config
from envleads.divisions import (CITY, COUNTY, MUNICIPALITY_CODES, PROVINCE, DivisionTable, TownshipTable,
                                 load_divisions, load_townships)
from envleads.records import RegionResolution
from envleads.region_gazetteer import ALIASES_FILE, TOWNS_FILE, Gazetteer
from envleads.text import char_readings, normalise as _normalise, shared_tokenizer, usual_reading

ROLES_FILE = "region_roles.json"

_LOGGER = logging.getLogger(__name__)

_LEVEL_DEPTH = {PROVINCE: 0, CITY: 1, COUNTY: 2}
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class of ``chars`` (sorted, so the pattern is the same in every process)."""
    return "[" + "".join(re.escape(char) for char in sorted(set(chars))) + "]"


def _holds_in(tokens: Iterable[str], start: int, end: int) -> bool:
    """True when, in the segmentation ``tokens``, a word starts at ``start`` and a word ends at
    ``end`` or the word starting at ``start`` runs past it: the name is a word, words, or a word's
    head (北京晨报), not the tail of one word and the head of the next (几天|水面 around 天水)."""
    bounds, offset, head_end = {0}, 0, -1
    for token in tokens:
        if offset == start:
            head_end = offset + len(token)
        offset += len(token)
        bounds.add(offset)
    return start in bounds and (end in bounds or head_end >= end)


class _Mention(NamedTuple):
    start: int
    end: int
    surface: str
    candidates: Dict[str, float]  # adcode -> support this mention gives it
    kind: str
    needs_support: bool = False  # weak alone: counts only when a surer mention exists


class _Town(NamedTuple):
    start: int
    end: int
    surface: str  # the evidence: 小板镇, or 小板罗黄村 for a township written without its suffix
    parents: Tuple[str, ...]  # every county (or county-less city) with a township of this name
    weight: float


class _Kinds(NamedTuple):
    """What the kinds of an alias's entries say before its context is read: fixed once the
    gazetteer is built, so worked out once per alias instead of once per mention (``_weigh``)."""

    strongest: str  # the kind of the strongest entry
    bare: bool  # every entry is a short form or a word
    weak_alone: bool  # bare county names and names in organisations are weak alone: 资源, 公安, 通道
    bare_county: bool  # some entry is a bare county name, or one with a confusable character (荧阳)


_WEAK_KINDS = frozenset({"bare_county", "organisation", "common_word", "variant_bare"})
_BARE_KINDS = _WEAK_KINDS | {"bare_province", "bare_city", "province_region", "abbreviation"}


def _kinds(entries: Dict[str, Tuple[float, str]]) -> _Kinds:
    """The :class:`_Kinds` of one alias's entries (adcode -> (weight, kind))."""
    kinds = {kind for _, kind in entries.values()}
    return _Kinds(max(entries.values())[1], kinds <= _BARE_KINDS, kinds <= _WEAK_KINDS,
                  bool(kinds & {"bare_county", "variant_bare"}))


class RegionResolver(Gazetteer):
    """Finds the most specific division a complaint supports; build once per worker (``setup()``).

    Args:
        table: the division table; defaults to :func:`envleads.divisions.load_divisions`.
        aliases_path: alias/context/weight configuration (``region_aliases.json``).
        towns_path: township rules, supplements and bureau branches (``region_towns.json``).
        townships: township names; defaults to :func:`envleads.divisions.load_townships`, or to
            none (with a warning, and ``townships-none`` in the version) when its package is absent.
        roles_path: cues for the role of a place among several (``region_roles.json``).
    """

    def __init__(self, table: Optional[DivisionTable] = None, aliases_path: Optional[str] = None,
                 towns_path: Optional[str] = None, townships: Optional[TownshipTable] = None,
                 roles_path: Optional[str] = None):
        self._table = table or load_divisions()
        config = load_json_config(aliases_path or data_path(ALIASES_FILE),
                                  required=("version", "weights", "context", "decision"))
        towns = load_json_config(towns_path or data_path(TOWNS_FILE),
                                 required=("version", "bureau_branches", "towns", "township_rules"))
        roles = load_json_config(roles_path or data_path(ROLES_FILE),
                                 required=("version", "window", "chain_gap", "discount_before", "discount_after",
                                           "boost_before", "boost_after", "boost_factor"))
        if townships is None:
            try:
                townships = load_townships()
            except RuntimeError as error:  # an optional refinement: resolve without it, visibly
                _LOGGER.warning("township names unavailable: %s", error)
                townships = TownshipTable([], "none")
        self.version = (f"{self._table.version}+townships-{townships.version}"
                        f"+aliases-{config['version']}+towns-{towns['version']}+roles-{roles['version']}")
        self._configure(config, roles)
        self._divisions = {d.adcode: d for d in self._table if d.province_code not in self._excluded}
        # alias -> {adcode: (weight, kind)}; the kind of the strongest entry decides context rules.
        self._aliases: Dict[str, Dict[str, Tuple[float, str]]] = {}
        self._bureaus: Dict[str, str] = {}
        self._build_aliases(config)
        self._build_extra_names(config)
        self._build_abbreviations(config)
        self._build_variants()
        self._build_near_misses(config)
        self._alias_kinds = {alias: _kinds(entries) for alias, entries in self._aliases.items()}
        self._build_unique_bare()
        # full names that are common words, long enough to be a district's name (新城区, not 城区)
        self._common_full_names = frozenset(name for name in self._common
                                            if len(name) >= self._common_full_min and self._table.named(name))
        # bare names must hold up as words (bare_word_check): the process's segmenter, shared with
        # the classifier (about 0.2 s to build once)
        self._segmenter = shared_tokenizer()
        self._build_towns(towns)
        self._build_townships(towns, townships)
        # Every name a mention can start with, indexed by its first two characters. One regex scan
        # (a name's possible first character before a possible second one) finds the positions
        # where a name may start, one in eight to ten; only there are names probed. It replaced an
        # Aho-Corasick scan (pyahocorasick), which searches a node's children one by one: with
        # about a thousand first characters at its root it cost some 0.3 us a character.
        self._names = frozenset(name for name in {*self._aliases, *self._bureaus, *self._not_places, *self._cues}
                                if len(name) >= 2)
        lengths: Dict[str, set] = defaultdict(set)
        for name in self._names:
            lengths[name[:2]].add(len(name))
        self._name_lengths = {pair: tuple(sorted(found, reverse=True)) for pair, found in lengths.items()}
        self._name_starts = re.compile(_char_class(pair[0] for pair in lengths)
                                       + "(?=" + _char_class(pair[1] for pair in lengths) + ")")
        self._alias_lengths = sorted({len(alias) for alias in self._aliases})

    def _configure(self, config: dict, roles: dict) -> None:
        """Weights, context patterns and decision thresholds from the two configuration files."""
        try:
            self._weights: Dict[str, float] = {k: float(v) for k, v in config["weights"].items()
                                               if k != "about"}
            context = config["context"]
            self._re = {key: re.compile(context[key]) for key in (
                "after_road", "after_feature_bare", "after_dateline", "before_dateline",
                "after_organisation", "after_premises_bare", "after_agency", "document_code",
                "after_locative_bare", "before_locative_bare", "after_locative_unique_bare",
                "after_cue_bare", "province_document", "adjacent_gap",
                "before_informal", "before_comparison", "before_person", "after_person", "before_plain_bare",
                "after_plain_bare",
                "full_name_not_road")}
            self._surnames = frozenset(context["person_surnames"])
            decision = config["decision"]
            self._common_full_min = int(decision["common_full_name_min_chars"])
            self._common_by_cue_min = int(decision["common_full_by_cue_min_chars"])
            self._min_support = float(decision["min_support"])
            self._margin = float(decision["margin"])
            self._ratio = {level: float(decision["ratio"][level]) for level in (PROVINCE, CITY, COUNTY)}
            self._excluded = set(config.get("excluded_province_codes", []))
            self._no_short = set(config.get("no_short_form_province_codes", []))
            self._common = set(config["common_word_names"]["names"])
            self._common_full = re.compile(config["common_word_full_name_pattern"])
            self._not_places = set(config["not_places"]["names"])
            wrong_for: Dict[str, List[str]] = defaultdict(list)
            for wrong, right in sorted(config["confusable_characters"]["map"].items()):
                wrong_for[right].append(wrong)
            self._wrong_for = {right: tuple(wrongs) for right, wrongs in wrong_for.items()}
            self._ordinary_min = int(config["unique_bare_county"]["ordinary_word_min_freq"])
            self._plain_max_freq = int(config["unique_bare_county"]["plain_max_freq"])
            self._word_check_kinds = frozenset(config["bare_word_check"]["kinds"])
            self._word_window = int(config["bare_word_check"]["window"])
            self._role_window = int(roles["window"])
            self._role_re = {key: re.compile(roles[key]) for key in (
                "chain_gap", "discount_before", "discount_after", "boost_before", "boost_after")}
            self._boost = float(roles["boost_factor"])
        except KeyError as error:
            raise ConfigError(f"{ALIASES_FILE}/{ROLES_FILE}: missing key {error}") from error

    def _mentions(self, text: str, scale: float) -> List[_Mention]:
        mentions: List[_Mention] = []
        for match in self._re["document_code"].finditer(text):
            division = self._divisions.get(match.group(1))
            if division is not None and division.level == COUNTY:
                mentions.append(_Mention(match.start(1), match.end(1), match.group(1),
                                         {division.adcode: self._weights["document_code"] * scale},
                                         "document_code"))
        for match in self._re["province_document"].finditer(text):  # 浙环函〔2025〕: Zhejiang's
            code = self._province_short.get(match.group(1))
            if code is not None:
                mentions.append(_Mention(match.start(1), match.end(1), match.group(1),
                                         {code: self._weights["province_document"] * scale}, "agency"))
        # Longest names first, then leftmost: 安居区 must not lose its first character to 和安; but
        # two names that nest go before both (山西|城区, not 山|西城区|).
        taken = bytearray(len(text))  # characters of the names kept so far, places or not
        cued = set()
        found = sorted(self._longest_names(text))
        for negative_length, start in self._nested_splits(text, found) + found:
            end = start - negative_length
            if taken.find(1, start, end) >= 0:
                continue
            taken[start:end] = b"\1" * -negative_length
            piece = text[start:end]
            if piece in self._not_places:
                continue
            if piece in self._cues:  # a landmark, river or newspaper: only helps to choose (鞍钢 ... 铁西区)
                if piece not in cued:  # counted once: an estate's name (...花园) repeated is one cue
                    cued.add(piece)
                    mentions.append(self._cue(text, start, piece, scale))
                continue
            mention = self._weigh(text, start, piece, scale)
            if mention is not None:
                mentions.append(mention)
        mentions.sort(key=lambda m: m.start)
        return self._adjacent(text, self._in_areas(mentions))

    def _nested_splits(self, text: str, found: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
        """``(-length, start)`` of two names that nest, where two overlapping names were found.

        The longest name may take the head of the next one or the tail of the one before:
        甘肃宁县 holds 肃宁县 (Hebei), 山西城区 holds 西城区 (Beijing), 乐山市中区 holds 乐山市 and
        市中区. When the characters split into two names of which one holds the other (甘肃 and its
        宁县, 乐山 and its 市中区), that split is the reading: a province or city followed by one of
        its own counties is no accident of spelling, and the overlapping name is.
        """
        spans = sorted((start, start - negative) for negative, start in found)
        splits: List[Tuple[int, int]] = []
        for index, (start, end) in enumerate(spans):
            for later, later_end in spans[index + 1:]:
                if later >= end:
                    break
                if later_end <= end:
                    continue
                for first, second in (((start, end), (end, later_end)), ((start, later), (later, later_end))):
                    if self._nest(text[first[0]:first[1]], text[second[0]:second[1]]):
                        splits += [(first[0] - first[1], first[0]), (second[0] - second[1], second[0])]
                        break
        return splits

    def _nest(self, outer: str, inner: str) -> bool:
        """True when the names ``outer`` and ``inner`` (in this order) name a division and one inside it."""
        outer_codes, inner_codes = self._aliases.get(outer), self._aliases.get(inner)
        return bool(outer_codes and inner_codes and len(outer) >= 2 and len(inner) >= 2
                    and any(self._within(code, parent) for code in inner_codes for parent in outer_codes))

    def _person(self, text: str, start: int, end: int) -> bool:
        """True when the name at ``text[start:end]`` is a person's (一个叫江宁的人, 张天津师傅, 老板叫李东营)."""
        if self._re["before_person"].search(text[max(0, start - 3):start]):
            return True
        if start == 0 or text[start - 1] not in self._surnames:
            return False
        return bool(self._re["after_person"].match(text[end:end + 3])
                    or self._re["before_person"].search(text[max(0, start - 4):start - 1]))

    def _plain_bare_name(self, text: str, start: int, surface: str) -> bool:
        """True for a bare county name of one division that is seldom any word (阆中, 沭阳), at the
        start of a clause, before works or its old town (沭阳板材厂, 阆中古城), and holding up as a
        word there (``unique_bare_county.plain_max_freq``, ``context.after_plain_bare``)."""
        return (surface in self._plain_bare and bool(self._re["before_plain_bare"].search(text[max(0, start - 4):start]))
                and bool(self._re["after_plain_bare"].match(text[start + len(surface):start + len(surface) + 8]))
                and self._holds_as_word(text, start, start + len(surface)))

    def _cue(self, text: str, start: int, piece: str, scale: float) -> _Mention:
        """A place cue's mention: weak (it only helps to choose), unless it is a landmark that lies
        in one city and names it alone (滇池, 黄浦江) and is no comparison (像滇池那样): then it
        is a sure, light vote for that city. A river across cities (沱江) supports each of them."""
        before = text[max(0, start - 3):start]
        alone = piece in self._landmarks and not self._re["before_comparison"].search(before)
        kind = "landmark" if alone else "cue"
        weight = self._weights[kind] * scale
        return _Mention(start, start + len(piece), piece, {code: weight for code in self._cues[piece]},
                        kind, kind == "cue")

    def _longest_names(self, text: str) -> List[Tuple[int, int]]:
        """``(-length, start)`` of the longest name starting at each position where one starts."""
        found = []
        n = len(text)
        names, name_lengths = self._names, self._name_lengths
        for match in self._name_starts.finditer(text):
            start = match.start()
            for length in name_lengths.get(text[start:start + 2], ()):
                if start + length <= n and text[start:start + length] in names:
                    found.append((-length, start))
                    break
        return found

    def _after_boundary(self, text: str, start: int) -> bool:
        """True at the text start, after a non-Chinese or boundary character, or right after a place name (无锡周庄镇)."""
        if start == 0 or not _CJK_RE.match(text[start - 1]) or self._left_boundary.match(text[start - 1]):
            return True
        return any(text[start - length:start] in self._aliases for length in self._alias_lengths if length <= start)

    def _towns(self, text: str) -> List[_Town]:
        """Township names with their suffix, and bare ones right before a village or community."""
        found: List[_Town] = []
        taken = []
        for match in self._town_suffix_re.finditer(text):
            end = match.end()
            for length in self._town_full_lengths.get(text[max(0, end - 2):end], ()):
                start = end - length
                if start < 0 or text[start:end] not in self._town_full:
                    continue
                piece = text[start:end]
                taken.append((start, end))
                after = text[end:end + 20]
                # 周庄镇路, 乌镇镇建材有限公司: a name inside a road or company name is no place
                if self._re["after_road"].match(after) or self._re["after_organisation"].match(after):
                    break
                if len(piece) - len(match.group()) <= self._town_min_base and not self._after_boundary(text, start):
                    break  # 当地城镇: a short name glued to the word before it
                found.append(_Town(start, end, piece, self._town_full[piece], self._town_weight))
                break
        for match in self._village_re.finditer(text):
            marker = match.start()
            for village in self._village_lengths:
                end = marker - village
                if end < self._town_min_base or not self._village_chars.fullmatch(text[end:marker]):
                    break
                for length in self._town_bare_lengths.get(text[end - 2:end], ()):
                    start = end - length
                    if start < 0 or text[start:end] not in self._town_bare:
                        continue
                    if self._after_boundary(text, start) and not any(a < match.end() and start < b for a, b in taken):
                        found.append(_Town(start, match.end(), text[start:match.end()],
                                           self._town_bare[text[start:end]], self._town_bare_weight))
                    break
        return found

    def _full_name_at(self, text: str, start: int) -> bool:
        """True when a division's full name starts at ``start``: 重庆江北区 is 重庆 and 江北区, not a
        river 重庆江 (a bare name before 江, 河, 湖 ... is otherwise a feature)."""
        for length in self._alias_lengths:
            name = text[start:start + length]
            if len(name) == length and name in self._alias_kinds and not self._alias_kinds[name].bare:
                return True
        return False

    def _nested_name_at(self, text: str, start: int, parents: Iterable[str], full_only: bool = False) -> bool:
        """True when a name of a division inside one of ``parents`` starts at ``start``: 常德石门 is
        常德 and 石门 (a county of Changde), not a stone of Changde, nor 普洱镇 a township. With
        ``full_only``, only a name with its suffix counts (唐山市路南区, not 唐山路南侧)."""
        for length in self._alias_lengths:
            name = text[start:start + length]
            entries = self._aliases.get(name)
            if (entries and not (full_only and self._alias_kinds[name].bare)
                    and any(self._within(code, parent) for code in entries for parent in parents)):
                return True
        return False

    def _after_parent(self, text: str, start: int, entries: Iterable[str]) -> bool:
        """True when a name right before ``start`` names a division holding one of ``entries``.

        jieba lists some chains as one word (福建厦门, 云南昆明, 辽宁沈阳), so a city that its own
        province precedes does not hold up as a word on its own; the two nest and touch, which
        words seldom do by chance (安居乐业 holds 安居 and 乐业, which do not nest). The same holds
        for a city right before one of its own counties (:meth:`_nested_name_at`).
        """
        for length in self._alias_lengths:
            if length > start:
                break
            before = self._aliases.get(text[start - length:start])
            if before and any(self._within(code, parent) for code in entries for parent in before):
                return True
        return False

    def _unique_bare_cue(self, text: str, start: int, surface: str, after: str) -> bool:
        """True for a bare county name of one division before 一家/一处/某 (桐庐一家造纸厂) that starts
        at a boundary and holds up as a word there: 准备新建一家 and 胡龙海某 are no places."""
        return (surface in self._unique_bare and bool(self._re["after_locative_unique_bare"].match(after))
                and self._after_boundary(text, start) and self._holds_as_word(text, start, start + len(surface)))

    def _holds_as_word(self, text: str, start: int, end: int) -> bool:
        """True when segmenting the text around ``text[start:end]`` cuts before and after it.

        Only a few characters either side are segmented (``bare_word_check.window``): enough for
        the words that could swallow an edge of the name (几天|水面 around 天水).
        """
        low = max(0, start - self._word_window)
        return _holds_in(self._segmenter.lcut(text[low:end + self._word_window], HMM=False), start - low, end - low)

    def _in_areas(self, mentions: List[_Mention]) -> List[_Mention]:
        """A city-level new area the table lists without counties (雄安新区) named with a county it
        holds (容城县, listed under 保定市) votes for that county's city, not against it."""
        named = {code for mention in mentions if not mention.needs_support for code in mention.candidates}
        for index, mention in enumerate(mentions):
            areas = [code for code in mention.candidates if code in self._area_counties]
            for area in areas:
                held = self._area_counties[area] & named
                if not held:
                    continue
                weight = mention.candidates[area]
                candidates = {c: w for c, w in mention.candidates.items() if c != area}
                for county in held:
                    candidates[self._key(county, CITY)] = weight
                mentions[index] = mention = mention._replace(candidates=candidates)
        return mentions

    def _adjacent(self, text: str, mentions: List[_Mention]) -> List[_Mention]:
        """A weak county name right after its own province or city (浙江萧山, 杭州萧山, or with only
        ``context.adjacent_gap`` between them: 南京的江宁) is sure.

        So is the pair when the city name is itself weak, a common word (普洱孟连, 长治长子): two
        names that nest and touch are seldom two words by chance. The city then counts as a bare city.
        """
        for index in range(1, len(mentions)):
            previous, mention = mentions[index - 1], mentions[index]
            gap = text[previous.end:mention.start] if previous.end <= mention.start else None
            if not mention.needs_support or gap is None or not self._re["adjacent_gap"].fullmatch(gap):
                continue
            inside = {code: max(weight, self._weights["bare_county"])
                      for code, weight in mention.candidates.items()
                      if any(self._within(code, parent) for parent in previous.candidates)}
            if not inside:
                continue
            mentions[index] = mention._replace(candidates=inside, needs_support=False)
            if previous.needs_support:
                parents = {parent: max(weight, self._weights["bare_city"])
                           for parent, weight in previous.candidates.items()
                           if any(self._within(code, parent) for code in inside)}
                mentions[index - 1] = previous._replace(candidates=parents, needs_support=False)
        return mentions

    def _weigh(self, text: str, start: int, surface: str, scale: float) -> Optional[_Mention]:
        """Applies the context rules to one matched name; None when it is not a place here."""
        end = start + len(surface)
        after = text[end:end + 20]
        before = text[max(0, start - 4):start]
        if (self._re["after_road"].match(after) and not self._re["full_name_not_road"].match(surface) and not (
                surface in self._aliases and self._nested_name_at(text, end, self._aliases[surface], True))):
            return None  # 唐山路 is a road, but 唐山市路南区 is a city and its district, 鼓楼区东街口 a place
        if surface in self._informal and not self._re["before_informal"].search(before):
            return None  # 润和星城: the tail of an estate's or a firm's name
        cue = (surface in self._alias_kinds and self._alias_kinds[surface].bare
               and self._re["after_cue_bare"].match(after))
        if cue or self._re["after_dateline"].match(after) or self._re["before_dateline"].search(before):
            # where the news was filed (新华社南京5月3日电 鼓楼区 ...) or a university's city (南京大学),
            # not where the matter is: it only helps to choose among places that other mentions name
            cap = self._weights["dateline"] * scale
            return _Mention(start, end, surface, {code: min(weight * scale, cap) for code, (weight, _)
                                                  in self._aliases.get(surface, {}).items()}, "dateline", True)
        agency = bool(self._re["after_agency"].match(after))
        if surface in self._bureaus and surface not in self._aliases:
            if not agency:
                return None
            return _Mention(start, end, surface, {self._bureaus[surface]: self._weights["agency"] * scale},
                            "agency")
        entries = self._aliases[surface]
        kind, is_bare, weak_alone, bare_county = self._alias_kinds[surface]
        if is_bare and self._person(text, start, end):
            return None
        if (is_bare and self._re["after_feature_bare"].match(after) and not self._full_name_at(text, end)
                and not self._nested_name_at(text, end, entries)):
            return None
        if (is_bare and kind in self._word_check_kinds and not self._holds_as_word(text, start, end)
                and not self._after_parent(text, start, entries)
                and not self._nested_name_at(text, end, entries)):
            return None  # 几天水面 holds no 天水; but 信阳光山 is 信阳 and its 光山 (jieba: 信|阳光|山)
        if agency and surface in self._bureaus:
            return _Mention(start, end, surface, {self._bureaus[surface]: self._weights["agency"] * scale},
                            "agency")
        cap = None
        plain = bare_county and (self._unique_bare_cue(text, start, surface, after)
                                 or self._plain_bare_name(text, start, surface))
        locative = bare_county and bool(self._re["after_locative_bare"].match(after)
                                        or self._re["before_locative_bare"].search(before) or plain)
        if agency:
            kind = "agency"
            weak_alone = False
        elif locative:  # 家住定海…, 萧山开发区: an address, even when premises follow
            weak_alone = False
        elif self._re["after_organisation"].match(after) or (
                is_bare and self._re["after_premises_bare"].match(after)):
            cap = self._weights["organisation"]
            kind = "organisation"
        elif bare_county:
            cap = self._weights["weak_bare"]
            kind = "weak_bare"
        candidates = {}
        for code, (weight, entry_kind) in entries.items():
            if agency and entry_kind in ("bare_county", "common_word", "organisation"):
                weight = self._weights["agency"] if len(entries) == 1 else self._weights["bare_county"]
            if plain:
                weight = max(weight, self._weights["plain_bare"])
            if cap is not None:
                weight = min(weight, cap)
            candidates[code] = weight * scale
        return _Mention(start, end, surface, candidates, kind, weak_alone)

    # -- deciding ---------------------------------------------------------------------------------

    def _key(self, code: str, level: str) -> Optional[str]:
        """The division at ``level`` that contains ``code`` (municipalities are their own city)."""
        division = self._divisions[code]
        if _LEVEL_DEPTH[division.level] < _LEVEL_DEPTH[level]:
            return None
        if level == PROVINCE:
            return division.province_code
        if level == CITY:
            if division.city_code:
                return division.city_code
            if division.province_code in MUNICIPALITY_CODES:
                return division.province_code
            return division.adcode  # county-level unit directly under its province (天门市, 澄迈县)
        return division.adcode

    def _pick(self, mentions: List[_Mention], level: str) -> Tuple[Optional[str], float, float]:
        scores: Dict[str, float] = defaultdict(float)
        for mention in mentions:
            best: Dict[str, float] = {}
            for code, weight in mention.candidates.items():
                key = self._key(code, level)
                if key is not None:
                    best[key] = max(best.get(key, 0.0), weight)
            for key, weight in best.items():
                scores[key] += weight
        if not scores:
            return None, 0.0, 0.0
        # Only places that a sure mention supports can win; weak ones (bare county names that are
        # also words, names in company names) only help to choose among them.
        sure = {self._key(code, level) for mention in mentions if not mention.needs_support
                for code in mention.candidates}
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        if ranked[0][0] not in sure:
            return None, ranked[0][1], 0.0
        top_key, top = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        if top < self._min_support or top - second < self._margin or top < self._ratio[level] * second:
            return None, top, second
        return top_key, top, second

    def _inside(self, mentions: List[_Mention], level: str, key: str, deeper: str) -> List[_Mention]:
        """Mentions narrowed to candidates inside ``key``; mentions satisfied at ``level`` drop out."""
        kept = []
        for mention in mentions:
            inside = {c: w for c, w in mention.candidates.items() if self._key(c, level) == key}
            if not inside:
                continue
            if any(_LEVEL_DEPTH[self._divisions[c].level] < _LEVEL_DEPTH[deeper] for c in inside):
                continue  # names the unit itself (吉林, 大理州) or a shallower one: says nothing deeper
            kept.append(mention._replace(candidates=inside))
        return kept

    def resolve(self, text: str, title: str = "", address: Optional[str] = None,
                jurisdiction_adcode: Optional[str] = None) -> RegionResolution:
        """The most specific division the complaint supports, or an empty resolution.

        Args:
            text: complaint text (any script; normalised here).
            title: complaint title, read like the text.
            address: a structured address field; its names count twice.
            jurisdiction_adcode: the receiving office's division; only breaks ties between
                candidates the text already names, never adds a level the text does not support.
        """
        mentions: List[_Mention] = []
        towns: List[_Town] = []
        if address:
            address = _normalise(address)
            mentions += self._mentions(address, 2.0)
            towns += self._towns(address)
        body = _normalise(f"{title}\n{text}" if title else text or "")
        found = self._mentions(body, 1.0)
        body_mentions = self._by_role(body, found)
        mentions += body_mentions
        # a township whose suffix starts a division's name is no township: 普洱镇沅 is 普洱 and 镇沅
        towns += self._chained([town for town in self._towns(body) if not any(m.start < town.end < m.end for m in found)],
                               found)
        if all(mention.needs_support for mention in mentions):
            return (self._by_town(towns, None, 1.0, [], jurisdiction_adcode)
                    or self._common_full_by_cue(body, mentions, body_mentions) or self._common_full_by_town(body, mentions)
                    or self._by_near_miss(body, found, None, 1.0, mentions, towns) or self._empty())
        helper = []
        if jurisdiction_adcode and jurisdiction_adcode in self._divisions:
            helper = [_Mention(-1, -1, "", {jurisdiction_adcode: self._weights["jurisdiction"]},
                               "jurisdiction")]
        chosen: Optional[str] = None
        confidence = 0.0
        level_mentions = mentions
        for level, deeper in ((PROVINCE, CITY), (CITY, COUNTY), (COUNTY, None)):
            voting = level_mentions + (helper if self._votes(level_mentions, level) else [])
            key, top, second = self._pick(voting, level)
            if key is None:
                break
            chosen = key
            confidence = min(0.99, 0.5 + 0.5 * min(1.0, top)) * (1.0 - 0.5 * second / top)
            if deeper is None:
                break
            helper = [m._replace(candidates={c: w for c, w in m.candidates.items()
                                             if self._key(c, level) == key}) for m in helper]
            helper = [m for m in helper if m.candidates]
            level_mentions = self._inside(level_mentions, level, key, deeper)
            if not level_mentions:
                break
        if chosen is None or self._divisions[chosen].level != COUNTY:
            # Stopped above county: a common-word district name unique inside what the text
            # settled, a township inside it or a county name written one character off may settle it.
            left = level_mentions if chosen else mentions
            common = self._common_full_in_scope(left) if chosen else None
            if common is not None:
                return self._resolution(common, round(min(confidence, 0.5 + 0.5 * self._weights[
                    "common_full_in_scope"]), 2), mentions)
            sure = [m for m in left if not m.needs_support]
            towns = towns + self._towns_in_districts(body, sure, chosen, body_mentions)
            by_town = self._by_town(towns, chosen, confidence if chosen else 1.0, sure, jurisdiction_adcode)
            if by_town is not None:
                return by_town
            near = self._by_near_miss(body, found, chosen, confidence if chosen else 1.0, mentions, towns)
            if near is not None:
                return near
        if chosen is None:
            return self._empty()
        return self._resolution(chosen, round(confidence, 2), mentions)

    def _by_near_miss(self, text: str, found: List[_Mention], scope: Optional[str], confidence: float,
                      mentions: List[_Mention], towns: List[_Town]) -> Optional[RegionResolution]:
        """The county, or the level its candidates share, of county names written one character off
        (:meth:`_near_misses`), once the vote has settled no county.

        A near-miss is a guess at the county: it is given only when the text also names that
        county's city or province (a sure name, or ``scope``, what the vote settled) or one of its
        townships (睢溪县刘桥镇: 濉溪县 holds a 刘桥镇, 遂溪县 none), and exactly one candidate is
        so confirmed. Otherwise the answer is the deepest division holding every
        candidate and every sure name's divisions (啄州市 alone: Baoding's city, never its county),
        or nothing when they share none; it must lie inside ``scope`` and below it.
        """
        near = self._near_misses(text, found)
        codes = {c for m in near for c in m.candidates if scope is None or self._within(c, scope)}
        if not codes:
            return None
        sure = [m for m in mentions if not m.needs_support]
        parents = {c for m in sure for c in m.candidates if self._divisions[c].level != COUNTY}
        parents |= {scope} if scope else set()
        confirmed = {c for c in codes if any(self._within(c, parent) for parent in parents)}
        if len(confirmed) != 1:  # a township of exactly one candidate
            confirmed = {c for c in codes if any(c in town.parents for town in towns)}
        if len(confirmed) == 1:
            return self._resolution(confirmed.pop(), round(min(confidence, 0.5 + 0.5 * self._weights["near_miss"]), 2),
                                    mentions + near)
        shared = self._shared(codes if scope else codes | {c for m in sure for c in m.candidates})
        if shared is None or scope is not None and not self._within(shared, scope):
            return None
        return self._resolution(shared, round(min(confidence, 0.5 + 0.5 * self._weights["near_miss_shared"]), 2),
                                mentions + near)

    def _shared(self, codes: Iterable[str]) -> Optional[str]:
        """The deepest city or province that is or holds every one of ``codes``, or None; never a
        county (a county-level city under its province, 仙桃市, is its own city)."""
        for level in (CITY, PROVINCE):
            keys = {self._key(code, level) for code in codes}
            if len(keys) == 1 and None not in keys and self._divisions[next(iter(keys))].level != COUNTY:
                return keys.pop()
        return None

    def _near_misses(self, text: str, found: List[_Mention]) -> List[_Mention]:
        """County names written one character off, with their suffix, in a county slot
        (``near_miss``): 睢溪县 (濉溪县), 啄州市 (涿州市), at a boundary or right after a place name
        (a one-character name only right after a place holding it: 邯郸瓷县 is 磁县),
        where no sure name was read and the written name names no division itself, nor is a word
        (家里县: 家里 is a word; 穷山区: 山区 is one; 的城市 starts with a boundary character)."""
        near: List[_Mention] = []
        sure = None
        for match in self._near_suffix_re.finditer(text):
            end = match.end()
            if sure is None:
                sure = [(m.start, m.end) for m in found if not m.needs_support]
            if (any(a <= match.start() < b for a, b in sure) or text[max(0, match.start() - 1):end] in self._near_common_tails
                    or self._near_not_after.match(text[end:end + 8])):
                continue  # the suffix of a name read (鼓楼区), or a word (山区, 市场)
            for stem in self._near_stems:
                start = match.start() - stem
                written = text[start:end]
                if start < 0 or written in self._aliases or self._left_boundary.match(written):
                    continue
                codes = self._near_counties(written)  # first: most places in a text have none
                if stem < self._near_min_stem:  # 邯郸瓷县: only right after a place that holds it
                    codes = {c for m in found if m.end == start and not m.needs_support
                             for parent in m.candidates for c in codes if self._within(c, parent)}
                if not codes:
                    continue
                if (not any(a < end and start < b for a, b in sure)
                        and (any(b == start for _, b in sure) or self._after_boundary(text, start))
                        and (stem == 1 or self._segmenter.lcut(written[:-1], HMM=False) != [written[:-1]])):
                    near.append(_Mention(start, end, written, {code: self._weights["near_miss"] for code in codes},
                                         "near_miss"))
                    break
        return near

    def _near_counties(self, written: str) -> set:
        """The counties whose name ``written`` is one character off, by a character whose usual
        reading is one of the name's character (啄 zhuo for 涿; not 市 for 涪, fu only in a rare reading)."""
        found = set()
        for position in range(len(written) - 1):
            for name, code in self._near_index.get(written[:position] + "\0" + written[position + 1:], ()):
                if usual_reading(written[position]) in char_readings(name[position]):
                    found.add(code)
        return found

    def _chained(self, towns: List[_Town], mentions: List[_Mention]) -> List[_Town]:
        """Townships right after a district name that holds one of them (郊区大通镇: of the 大通镇
        in five counties, the one in a 郊区), narrowed to those districts, even when the district's
        name is a common word that settles nothing alone."""
        if not towns:
            return towns
        ends = {mention.end: mention for mention in mentions}
        chained = []
        for town in towns:
            before = ends.get(town.start)
            inside = tuple(code for code in town.parents if before is not None and code in before.candidates)
            chained.append(town._replace(parents=inside) if inside else town)
        return chained

    def _common_full_by_cue(self, text: str, mentions: List[_Mention],
                            spans: List[_Mention]) -> Optional[RegionResolution]:
        """The one division of a common-word full name (城中区, 市中区) that the text's other weak
        names agree with, when nothing sure is named: 城中区 ... 柳江边 is Liuzhou's (柳江 is a
        district of Liuzhou), 市中区 ... 英雄山 Jinan's. One such name only, and exactly one of
        its divisions must lie in a city (or province) that another name points to. A shorter
        name (东区, 城区: words of every town) counts only with the cue right after it, as one
        chain (东区攀钢附近, 城区凤山妈祖庙后面) in ``text`` (``spans``: its mentions); a cue elsewhere
        in the text settles nothing."""
        agreeing: Dict[str, List[_Mention]] = {}  # name -> the mentions that may agree with it
        for mention in mentions:
            if mention.kind != "common_word" or mention.surface not in self._common_full_names:
                continue
            if len(mention.surface) >= self._common_by_cue_min:
                agreeing[mention.surface] = [m for m in mentions if m.surface != mention.surface]
            elif mention in spans:
                after = self._right_after(text, mention, spans)
                if after:
                    agreeing.setdefault(mention.surface, []).extend(after)
        if len(agreeing) != 1:
            return None
        (name, others), = agreeing.items()
        districts = {c for m in mentions if m.surface == name for c in m.candidates
                     if self._divisions[c].level == COUNTY}
        pointed = {c for m in others for c in m.candidates} - districts  # not 城北 for 城北区
        agreed = {c for c in districts if any(self._agrees(c, other) for other in pointed)}
        if len(agreed) != 1:
            return None
        return self._resolution(agreed.pop(), round(0.5 + 0.5 * self._weights["cue"], 2), mentions)

    def _right_after(self, text: str, mention: _Mention, mentions: List[_Mention]) -> List[_Mention]:
        """The mentions that start right after ``mention``, across at most ``context.adjacent_gap``."""
        return [m for m in mentions if m.start >= mention.end
                and self._re["adjacent_gap"].fullmatch(text[mention.end:m.start])]

    def _common_full_by_town(self, text: str, mentions: List[_Mention]) -> Optional[RegionResolution]:
        """A township written without its suffix (韩森寨) that lies in one division of a common-word
        full name (新城区: Xi'an's and Hohhot's) settles it, as it does a same-named district that
        is no common word (朝阳区 ... 三里屯). One such name only, and nothing sure named."""
        common = [m for m in mentions if m.kind == "common_word" and m.surface in self._common_full_names
                  and len(m.surface) >= self._common_by_cue_min]
        if len({m.surface for m in common}) != 1:
            return None
        districts = [m._replace(candidates={c: w for c, w in m.candidates.items()
                                            if self._divisions[c].level == COUNTY}) for m in common[:1]]
        towns = self._towns_in_districts(text, districts, None, mentions)
        return self._by_town(towns, None, 1.0, districts, None)

    def _agrees(self, county: str, other: str) -> bool:
        """True when ``other`` is ``county``'s province, or lies in its city (or is it)."""
        if self._divisions[other].level == PROVINCE:
            return self._divisions[county].province_code == other
        return self._key(other, CITY) == self._key(county, CITY)

    def _common_full_in_scope(self, left: List[_Mention]) -> Optional[str]:
        """The one county that common-word full names (新城区) leave inside the settled division.

        ``left`` are the mentions narrowed to the province or city the vote settled. 新城区 alone is
        in two provinces and a word besides; once 陕西省 is settled it is Xi'an's. A sure mention of
        a county there (a tie between two named counties) leaves it undecided.
        """
        codes = set()
        for mention in left:
            counties = {c for c in mention.candidates if self._divisions[c].level == COUNTY}
            if counties and not mention.needs_support:
                return None
            if mention.kind == "common_word" and mention.surface in self._common_full_names:
                codes |= counties
        return codes.pop() if len(codes) == 1 else None

    def _towns_in_districts(self, text: str, sure: List[_Mention], scope: Optional[str],
                            spans: List[_Mention]) -> List[_Town]:
        """Townships written without suffix (三里屯) among those of a same-named district's candidates.

        Only when a sure mention leaves two counties or more (朝阳区: Beijing's and Changchun's)
        are their townships looked for, anywhere in ``text`` outside the names in ``spans``;
        each found is a :class:`_Town` of the candidates that hold it, for :meth:`_by_town`. A
        two-character name must follow a boundary, as a bare township does.
        """
        candidates = set()
        for mention in sure:
            counties = {c for c in mention.candidates if self._divisions[c].level == COUNTY
                        and (scope is None or self._within(c, scope))}
            if len(counties) > 1:
                candidates |= counties
        if not candidates:
            return []
        holders: Dict[str, set] = defaultdict(set)
        for code in candidates:
            for base in self._district_towns.get(code, ()):
                holders[base].add(code)
        taken = bytearray(len(text))
        for mention in spans:  # a weak name inside a township's (天门 in 天门山) does not hide it
            if not mention.needs_support:
                taken[mention.start:mention.end] = b"\1" * (mention.end - mention.start)
        found = []
        for base in sorted(holders):
            start = text.find(base)
            while start >= 0:
                end = start + len(base)
                if taken.find(1, start, end) < 0 and (len(base) > self._town_min_base
                                                      or self._after_boundary(text, start)):
                    found.append(_Town(start, end, base, tuple(sorted(holders[base])),
                                       self._weights["town_in_district"]))
                    break
                start = text.find(base, start + 1)
        return found

    def _by_role(self, text: str, mentions: List[_Mention]) -> List[_Mention]:
        """The mentions with the roles of their places applied (``region_roles.json``).

        Consecutive names form a chain (江苏省南京市江宁区). A chain after 注册地 or before 的牌照 is
        not the polluter's site: it is left out when another chain with a sure name remains. A
        chain after 被举报地点 or before 设有 is: its support is multiplied when another chain
        competes. One chain, or no sure name outside the discounted ones, leaves all as they are.
        """
        chains: List[List[_Mention]] = []
        for mention in mentions:
            if chains and self._role_re["chain_gap"].fullmatch(text[chains[-1][-1].end:mention.start]):
                chains[-1].append(mention)
            else:
                chains.append([mention])
        if len(chains) < 2:
            return mentions
        roles = [self._role(text, chain[0].start, chain[-1].end) for chain in chains]
        kept = [(chain, role) for chain, role in zip(chains, roles) if role != "discount"]
        if not any(not mention.needs_support for chain, _ in kept for mention in chain):
            return mentions
        boost = len({role for _, role in kept}) > 1  # boosted chains and others compete
        return [mention._replace(candidates={c: w * self._boost for c, w in mention.candidates.items()})
                if boost and role == "boost" else mention
                for chain, role in kept for mention in chain]

    def _role(self, text: str, start: int, end: int) -> str:
        """``discount``, ``boost`` or ``""`` for the chain of names at ``text[start:end]``."""
        before = text[max(0, start - self._role_window):start]
        after = text[end:end + self._role_window]
        if self._role_re["discount_before"].search(before) or self._role_re["discount_after"].match(after):
            return "discount"
        if self._role_re["boost_before"].search(before) or self._role_re["boost_after"].match(after):
            return "boost"
        return ""

    def _by_town(self, towns: List[_Town], scope: Optional[str], confidence: float,
                 sure: List[_Mention], jurisdiction: Optional[str]) -> Optional[RegionResolution]:
        """The one county that the township names allow, or None.

        A township's counties are narrowed to those inside ``scope`` (the division decided so far)
        and consistent with every sure mention not yet used (鼓楼区 narrows a 街道 to a 鼓楼区); then
        to the jurisdiction: if several remain, or always when the text names no division (a
        complaint to a Hebei office naming a 桃坪镇 that the gazetteer has only in Sichuan more
        likely means a local place it does not list). Some township must then leave exactly one
        county and every other township must allow it; a conflict gives nothing.
        """
        if not towns:
            return None
        narrowed: List[Tuple[_Town, set]] = []
        for town in towns:
            inside = {code for code in town.parents
                      if (scope is None or self._within(code, scope))
                      and all(any(code == c or self._within(code, c) for c in m.candidates) for m in sure)}
            if jurisdiction in self._divisions and (len(inside) > 1 or scope is None and not sure):
                local = {code for code in inside if code == jurisdiction or self._within(code, jurisdiction)}
                inside = local if local or scope is None and not sure else inside
            if inside:
                narrowed.append((town, inside))
        single = {next(iter(inside)) for _, inside in narrowed if len(inside) == 1}
        if len(single) != 1:
            return None
        code = single.pop()
        if any(code not in inside for _, inside in narrowed):
            return None
        evidence = max((town for town, inside in narrowed if len(inside) == 1), key=lambda t: t.weight)
        confidence = min(confidence, 0.5 + 0.5 * evidence.weight)
        record = self._table.region_record(code)
        return RegionResolution(record["province"], record["city"], record["county"], code, record["level"],
                                round(confidence, 2), evidence.surface, self.version)

    def _votes(self, mentions: List[_Mention], level: str) -> bool:
        return any(self._key(c, level) is not None for m in mentions for c in m.candidates)

    def _resolution(self, adcode: str, confidence: float, mentions: List[_Mention]) -> RegionResolution:
        record = self._table.region_record(adcode)
        level = self._divisions[adcode].level
        evidence, best = None, (-1, -1.0)
        for mention in mentions:
            for code, weight in mention.candidates.items():
                depth = _LEVEL_DEPTH[self._divisions[code].level]
                related = (self._key(code, level) == adcode
                           or depth < _LEVEL_DEPTH[level] and self._key(adcode, self._divisions[code].level) == code)
                if related and (min(depth, _LEVEL_DEPTH[level]), weight) > best:
                    best, evidence = (min(depth, _LEVEL_DEPTH[level]), weight), mention.surface
        return RegionResolution(record["province"], record["city"], record["county"], adcode,
                                record["level"], confidence, evidence, self.version)

    def _within(self, code: str, parent: str) -> bool:
        """True when ``parent`` is a division strictly above ``code`` that contains it."""
        level = self._divisions[parent].level
        return _LEVEL_DEPTH[level] < _LEVEL_DEPTH[self._divisions[code].level] and self._key(code, level) == parent

    def _empty(self) -> RegionResolution:
        return RegionResolution(None, None, None, None, None, 0.0, None, self.version)
