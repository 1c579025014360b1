"""The gazetteer behind :class:`envleads.region.RegionResolver`: every name a complaint may use
for a division (full, short, ethnic-free, former, variant-character and township names) with its
weight and kind, built once from the division table and ``region_aliases.json`` /
``region_towns.json``. Kept apart from the resolution procedure, which only reads it.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from envleads.config import ConfigError
from envleads.divisions import CITY, COUNTY, PROVINCE, TownshipTable
from envleads.text import dictionary_words

ALIASES_FILE = "region_aliases.json"
TOWNS_FILE = "region_towns.json"
_LOGGER = logging.getLogger(__name__)
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def _lengths_by_ending(names: Iterable[str]) -> Dict[str, Tuple[int, ...]]:
    """Last two characters -> lengths of the ``names`` (two characters or more) ending so, longest first."""
    lengths: Dict[str, set] = defaultdict(set)
    for name in names:
        lengths[name[-2:]].add(len(name))
    return {ending: tuple(sorted(found, reverse=True)) for ending, found in lengths.items()}


def _ordinary_words(names: set) -> Dict[str, int]:
    """Those of ``names`` that jieba's general dictionary lists as ordinary words (part of speech
    not ns), with their frequency."""
    return _word_frequencies(names)[1]


def _word_frequencies(names: set) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Those of ``names`` that jieba's general dictionary lists: with their highest frequency under
    any part of speech (天桥 528 as a place name, 新建 1000: how often the name is written at all),
    and, separately, those listed as ordinary words (part of speech not ns) with that frequency.

    The dictionary file is read, not imported through jieba (whose global tokenizer we never
    touch); only its lines for ``names`` are split. Without jieba nothing is listed.
    """
    if not names:
        return {}, {}
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - jieba is a dependency
        _LOGGER.warning("jieba not installed: names are not checked against common words")
        return {}, {}
    anywhere: Dict[str, int] = {}
    ordinary: Dict[str, int] = {}
    with open(os.path.join(list(spec.submodule_search_locations)[0], "dict.txt"), encoding="utf-8") as handle:
        for line in handle:
            word = line[:line.find(" ")]
            if word in names:
                _, freq, pos = line.split()
                anywhere[word] = max(anywhere.get(word, 0), int(freq))
                if not pos.startswith("ns"):
                    ordinary[word] = max(ordinary.get(word, 0), int(freq))
    return anywhere, ordinary


def _common_words(names: set, min_freq: int) -> set:
    """Those of ``names`` that jieba lists as ordinary words with frequency ``min_freq`` or more."""
    return {word for word, freq in _ordinary_words(names).items() if freq >= min_freq}


def _codes(value) -> Tuple[str, ...]:
    """A place cue's division code, or its list of codes (a river that crosses several cities)."""
    return (value,) if isinstance(value, str) else tuple(value)


def _informal_kind(level: str) -> str:
    """The kind of an informal name (冰城, 内蒙): read with the rules of a bare short name of its level."""
    return "bare_province" if level == PROVINCE else "bare_city"


def _one_character_variants(name: str, wrong_for: Dict[str, Tuple[str, ...]]) -> List[str]:
    """``name`` with one character replaced by a character commonly written for it (汨罗市 -> 汩罗市)."""
    return [name[:index] + wrong + name[index + 1:]
            for index, char in enumerate(name) for wrong in wrong_for.get(char, ())]


class Gazetteer:
    """Builds the name tables a resolver reads (a mixin: the resolver's ``__init__`` sets the
    configuration attributes these builders use, then calls them)."""


    def _add(self, alias: str, adcode: str, kind: str) -> None:
        if len(alias) < 2 or not _CJK_RE.match(alias):
            return
        weight = self._weights[kind]
        entries = self._aliases.setdefault(alias, {})
        if adcode not in entries or entries[adcode][0] < weight:
            entries[adcode] = (weight, kind)

    @staticmethod
    def _strip(name: str, suffixes: Sequence[str]) -> Optional[str]:
        for suffix in suffixes:
            if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                return name[: -len(suffix)]
        return None

    def _strip_ethnic(self, name: str, ethnic: Sequence[str]) -> Optional[str]:
        """Base of an autonomous name: 环江毛南族自治县 -> 环江, 海西蒙古族藏族自治州 -> 海西."""
        base = name
        changed = True
        while changed:
            changed = False
            for group in ethnic:
                for form in (group + "族", group if len(group) > 1 else None):
                    if form and base.endswith(form) and len(base) > len(form):
                        base = base[: -len(form)]
                        changed = True
                        break
                if changed:
                    break
        return base if base != name and len(base) >= 2 else None

    @staticmethod
    def _people_only(stem: str, ethnic: Sequence[str]) -> bool:
        """True when the stem of an autonomous name is only a people's name (东乡族, 鄂伦春)."""
        return len(stem.removesuffix("族")) >= 2 and stem.removesuffix("族") in ethnic

    def _build_aliases(self, config: dict) -> None:
        ethnic = sorted(config["ethnic_groups"], key=len, reverse=True)
        self._ethnic = ethnic
        bare: Dict[str, List[Tuple[str, str]]] = defaultdict(list)  # short form -> [(adcode, level)]
        former_forms: List[Tuple[str, str]] = []  # 宽城县 for 宽城区: a district's possible former name
        people_forms: List[Tuple[str, str]] = []  # 东乡县 for 东乡族自治县
        for division in self._divisions.values():
            name, code, level = division.name, division.adcode, division.level
            common = name in self._common or self._common_full.match(name)
            self._add(name, code, "common_word" if common else "full")
            short = None
            for long_suffix, short_suffix in config["autonomous_suffixes"].items():
                if name.endswith(long_suffix):
                    stem = name[: -len(long_suffix)]
                    base = self._strip_ethnic(stem, ethnic)
                    if base:
                        self._add(base + short_suffix, code, "suffix_variant")
                        short = base
                    elif self._people_only(stem, ethnic):  # 东乡族自治县 -> 东乡县, no bare 东乡
                        people_forms.append((stem.removesuffix("族") + short_suffix, code))
                    break
            if short is None:
                suffixes = {PROVINCE: config["province_suffixes"], CITY: config["city_suffixes"],
                            COUNTY: config["county_suffixes"]}[level]
                short = self._strip(name, suffixes)
            if level == COUNTY and name.endswith("区"):
                base = self._strip(name, ["区"])
                if base:
                    former_forms += [(base + suffix, code) for suffix in config["district_former_suffixes"]]
            if short and division.province_code not in self._no_short:
                bare[short].append((code, level))
        # A district's guessed former name never shadows a name in force: 宽城县 is the short form of
        # 宽城满族自治县 (Hebei), not a former 宽城区 (Changchun).
        in_force = set(self._aliases)
        for variant, code in former_forms:
            if not self._table.named(variant) and variant not in in_force:
                self._add(variant, code, "suffix_variant")
        # ... but a people's name is no short form that a district's former name gives way to:
        # 东乡县 is Gansu's 东乡族自治县 and Jiangxi's 东乡区 (a 县 until 2017), so it needs a cue.
        for variant, code in people_forms:
            self._add(variant, code, "suffix_variant")
        province_shorts = {s for s, items in bare.items() if any(lv == PROVINCE for _, lv in items)}
        city_shorts = {s for s, items in bare.items() if any(lv == CITY for _, lv in items)}
        for short, items in bare.items():
            if short in self._aliases and any(k != "common_word" for _, k in self._aliases[short].values()):
                continue  # a full name of another division (e.g. 宾县) wins over a stripped form
            for code, level in items:
                if short in province_shorts:
                    # 吉林 and 海南 written alone mean the province, not the city or prefecture.
                    if level != PROVINCE:
                        continue
                    kind = "bare_province"
                elif short in self._common:
                    kind = "common_word"
                elif level == CITY:
                    kind = "bare_city"
                elif short in city_shorts:
                    kind = "organisation"  # 铁岭 alone is the city; its county only breaks ties
                else:
                    kind = "bare_county"
                self._add(short, code, kind)
        for former_list in self._table.former.values():
            for former in former_list:
                if former.current_adcode in self._divisions:
                    self._add(former.name, former.current_adcode, "former")
                    short = self._strip(former.name, config["county_suffixes"] + config["city_suffixes"])
                    if short and short not in self._aliases:
                        self._add(short, former.current_adcode, "bare_county")

    def _build_extra_names(self, config: dict) -> None:
        """Names that are no division's: parts of a province (苏北, 鲁西南), new areas that span
        divisions (贵安新区), informal names of provinces and cities (内蒙, 冰城: read like their
        short forms), province short forms in document codes (浙环函), place cues (鞍钢, 赣江) and
        newspapers (扬子晚报) with the landmarks among them that name their place alone (滇池), names
        as the traditional-to-simplified converter rewrites them (干安县 in 乾安縣), and the counties of a city-level new area that the table lists under their old city (雄安新区)."""
        try:
            for name, code in config["province_regions"]["names"].items():
                if name not in self._aliases and code in self._divisions:
                    self._add(name, code, "province_region")
            for name, code in config["area_names"]["names"].items():
                if name not in self._aliases and code in self._divisions:
                    self._add(name, code, "full")
            self._province_short = {short: code for short, code in config["province_short_forms"]["forms"].items()
                                    if code in self._divisions}
            informal = {name: code for name, code in config["informal_names"]["names"].items()
                        if name not in self._aliases and code in self._divisions}
            for name, code in informal.items():
                self._add(name, code, _informal_kind(self._divisions[code].level))
            self._informal = frozenset(informal)
            cues = {**config["place_cues"]["names"], **config["media_cues"]["names"]}
            # a river that crosses several cities lists them all (沱江): it supports each of them
            self._cues = {name: codes for name, codes in ((name, _codes(value)) for name, value in cues.items())
                          if codes and all(code in self._divisions for code in codes) and name not in self._aliases}
            self._landmarks = frozenset(name for name in config["landmarks_alone"]["names"]
                                        if len(self._cues.get(name, ())) == 1)
            for converted, original in config["converted_names"]["names"].items():
                if original in self._aliases and converted not in self._aliases:
                    self._aliases[converted] = dict(self._aliases[original])
            self._area_counties = {code: frozenset(counties)
                                   for code, counties in config["area_counties"]["areas"].items()}
        except KeyError as error:
            raise ConfigError(f"{ALIASES_FILE}: missing key {error}") from error

    def _build_variants(self) -> None:
        """Names with one confusable character (``confusable_characters``): 汩罗市 for 汨罗市.

        Only a variant that names one division and is no other name counts: with its suffix it
        is sure, without it (荣阳 for 荥阳) it is weak and needs its province or city right before it.
        """
        found: Dict[str, Dict[str, str]] = defaultdict(dict)  # variant -> {adcode: kind}
        for alias, entries in self._aliases.items():
            for code, (_, kind) in entries.items():
                variant_kind = ("variant" if kind in ("full", "former", "suffix_variant") else
                                "variant_bare" if kind in ("bare_province", "bare_city", "bare_county") else None)
                if variant_kind is None:
                    continue
                for variant in _one_character_variants(alias, self._wrong_for):
                    if found[variant].get(code) != "variant":
                        found[variant][code] = variant_kind
        for variant, codes in sorted(found.items()):
            if len(codes) == 1 and variant not in self._aliases and variant not in self._not_places:
                (code, kind), = codes.items()
                self._add(variant, code, kind)

    def _build_near_misses(self, config: dict) -> None:
        """County names with their suffix, indexed once per character of the name before the suffix
        with that character blanked (濉溪县 under ?溪县 and 濉?县), so that a name written one
        character off (睢溪县) finds its counties in a few look-ups (``near_miss``)."""
        try:
            rules = config["near_miss"]
            suffixes = tuple(rules["suffixes"])
            self._near_min_stem, max_stem = int(rules["min_stem_chars"]), int(rules["max_stem_chars"])
            min_stem = min(self._near_min_stem, int(rules["after_place_min_stem_chars"]))
            min_freq = int(rules["common_tail_min_freq"])
            self._near_suffix_re = re.compile("|".join(map(re.escape, suffixes)))
            self._near_not_after = re.compile(rules["not_after"])
        except KeyError as error:
            raise ConfigError(f"{ALIASES_FILE}: missing key near_miss.{error}") from error
        if any(len(suffix) != 1 for suffix in suffixes):  # names are cut as stem + one suffix character
            raise ConfigError(f"{ALIASES_FILE}: near_miss.suffixes must be single characters")
        self._near_stems = range(max_stem, min_stem - 1, -1)  # longest first
        # the last character of a name and its suffix as a common word: 穷山区 is no 琼山区
        self._near_common_tails = dictionary_words(
            lambda word, frequency, _: len(word) == 2 and word[1] in suffixes and frequency >= min_freq)
        names = [(d.name, d.adcode) for d in self._divisions.values() if d.level == COUNTY]
        names += [(former.name, former.current_adcode) for found in self._table.former.values() for former in found
                  if former.current_adcode in self._divisions and self._divisions[former.current_adcode].level == COUNTY]
        index: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
        for name, code in names:  # names in force or former ones, never guessed forms (惠城市)
            if name.endswith(suffixes) and min_stem < len(name) <= max_stem + 1:
                for position in range(len(name) - 1):
                    index[name[:position] + "\0" + name[position + 1:]].append((name, code))
        self._near_index = {key: tuple(found) for key, found in index.items()}

    def _build_abbreviations(self, config: dict) -> None:
        """Short forms of banners and leagues (``abbreviations``): 科左中旗, 准旗, 锡盟, 达茂旗."""
        try:
            rules = config["abbreviations"]
            suffixes = tuple(rules["suffixes"])
            directions = sorted(rules["directions"], key=len, reverse=True)
            dropped, leading = rules["dropped_from_direction"], tuple(rules["leading_directions"])
            min_stem, no_short = int(rules["min_stem_chars"]), set(rules["no_short"])
            extra = rules["names"]
        except KeyError as error:
            raise ConfigError(f"{ALIASES_FILE}: missing key abbreviations.{error}") from error
        built: Dict[str, set] = defaultdict(set)
        for division in self._divisions.values():
            if division.name in no_short or not division.name.endswith(suffixes):
                continue
            short = self._banner_short(division.name, directions, dropped, leading, min_stem)
            if short:
                built[short].add(division.adcode)
        for short, codes in sorted(built.items()):
            if len(codes) == 1 and short not in self._aliases:
                self._add(short, codes.pop(), "abbreviation")
        for short, code in extra.items():
            if code in self._divisions and short not in self._aliases:
                self._add(short, code, "abbreviation")

    def _banner_short(self, name: str, directions: Sequence[str], dropped: str, leading: Tuple[str, ...],
                      min_stem: int) -> Optional[str]:
        """科尔沁左翼中旗 -> 科左中旗, 东乌珠穆沁旗 -> 东乌旗, 准格尔旗 -> 准旗 (see ``abbreviations``)."""
        suffix = name[-1]
        stem = name[:-1]
        for autonomous in ("自治",):  # 莫力达瓦达斡尔族自治旗 -> 莫力达瓦
            if stem.endswith(autonomous):
                stem = self._strip_ethnic(stem[: -len(autonomous)], self._ethnic) or ""
        for direction in directions:
            if stem.endswith(direction) and len(stem) - len(direction) >= 2:
                return stem[0] + direction.replace(dropped, "") + suffix
        if stem.startswith(leading) and len(stem) >= min_stem:
            return stem[:2] + suffix
        return stem[0] + suffix if len(stem) >= min_stem else None

    def _build_unique_bare(self) -> None:
        """Bare county names that may count before 一家/一处/某: those of one division only that
        jieba does not list as frequent ordinary words (合作, 资源 are); and, among them, those
        that count anywhere: jieba lists them seldom or not at all, under any part of speech
        (阆中, 沭阳; not 天桥, 新建, which are words too). A bare name with one confusable character
        that names one division (荧阳 for 荥阳) is read the same way."""
        unique = {alias for alias, entries in self._aliases.items()
                  if len(entries) == 1 and next(iter(entries.values()))[1] in ("bare_county", "variant_bare")}
        frequency, ordinary = _word_frequencies(unique)
        self._unique_bare = frozenset(a for a in unique if ordinary.get(a, 0) < self._ordinary_min)
        self._plain_bare = frozenset(a for a in unique if frequency.get(a, 0) < self._plain_max_freq)

    def _build_towns(self, towns: dict) -> None:
        for branch in towns["bureau_branches"]:
            for name in branch["names"]:
                self._bureaus[name] = branch["adcode"]

    def _build_townships(self, towns: dict, townships: TownshipTable) -> None:
        """Indexes township names with their suffix and, separately, without it (the bare form).

        Either form stands for every township with the same name before the suffix: townships
        change suffix when they are reorganised (汨罗市归义镇 is now 归义街道), so a complaint's
        归义镇 may be today's 归义街道 as well as 岑溪市归义镇, and is ambiguous.
        """
        try:
            rules = towns["township_rules"]
            suffixes = sorted(rules["suffixes"], key=len, reverse=True)
            min_base = int(rules["min_base_chars"])
            stop = set(rules["stopwords"]["names"])
            bad_endings = tuple(rules["bare_bad_endings"])
            min_freq = int(rules["common_word_min_freq"])
            self._town_min_base = min_base
            self._town_suffix_re = re.compile("|".join(map(re.escape, suffixes)))
            self._left_boundary = re.compile(rules["left_boundary"])
            self._village_re = re.compile(rules["village_marker"])
            self._village_chars = re.compile(rules["village_name"])
            self._village_lengths = range(int(rules["min_village_chars"]), int(rules["max_village_chars"]) + 1)
            self._town_weight = self._weights["town"]
            self._town_bare_weight = self._weights["town_bare"]
        except KeyError as error:
            raise ConfigError(f"{TOWNS_FILE}/{ALIASES_FILE}: missing key {error}") from error
        if min_base < 2:  # names are looked up by their last two characters (_lengths_by_ending)
            raise ConfigError(f"{TOWNS_FILE}: township_rules.min_base_chars must be at least 2")
        full: Dict[str, str] = {}  # name with suffix -> its base
        bare: Dict[str, set] = defaultdict(set)  # base -> parents of every township with that base

        def add(name: str, parents: Iterable[str]) -> None:
            parents = {code for code in parents if code in self._divisions}
            suffix = next((x for x in suffixes if name.endswith(x)), None)
            if not parents or suffix is None or len(name) - len(suffix) < min_base:
                return  # 2-character names (杨镇, 新镇) are too often plain words to use
            base = name[: -len(suffix)]
            # 民族乡 are also written without the people's name: 塔西河哈萨克族乡 -> 塔西河乡
            shorter = self._strip_ethnic(base, self._ethnic) if "族" in base else None
            base = shorter or base
            for form in {name, base + suffix}:
                if form not in self._aliases and form not in self._bureaus:  # a division's own name wins
                    full[form] = base
            bare[base] |= parents

        for name, parents in townships.by_name.items():
            add(name, parents)
        for town in towns["towns"]:  # hand-written supplements (names the gazetteer lacks)
            add(town["name"], town["adcodes"])
        # A bare form that is also a division or bureau name, a common word or on the stop list
        # never counts: 长安 (长安镇) is a district name and a word.
        excluded = set(self._aliases) | set(self._bureaus) | self._common | self._not_places | stop
        excluded |= _common_words(set(full) | set(bare), min_freq)
        full = {name: base for name, base in full.items() if name not in stop and name not in excluded}
        interned: Dict[Tuple[str, ...], Tuple[str, ...]] = {}

        def frozen(codes: set) -> Tuple[str, ...]:
            key = tuple(sorted(codes))
            return interned.setdefault(key, key)

        self._town_full = {name: frozen(bare[base]) for name, base in full.items()}
        # County -> its township names without suffix, for settling a same-named district
        # (三里屯 in 朝阳区): looked for only among a few candidates, so a name of three characters
        # or more counts even when it is a word (相国寺) or ends like a village (曹杨新村).
        names_too = set(self._aliases) | set(self._bureaus) | self._common | self._not_places | stop
        two_char_words = _common_words({base for base in bare if len(base) == 2}, min_freq)
        by_county: Dict[str, List[str]] = defaultdict(list)
        for base, codes in bare.items():
            if base in names_too or len(base) == 2 and base in two_char_words:
                continue
            for code in codes:
                by_county[code].append(base)
        self._district_towns = {code: tuple(sorted(bases)) for code, bases in by_county.items()}
        self._town_bare = {base: frozen(codes) for base, codes in bare.items()
                           if base not in excluded and not base.endswith(bad_endings)}
        # Lengths of the names by their last two characters, longest first: at a suffix or before a
        # village only those lengths are probed (one or two, not all nine or ten).
        self._town_full_lengths = _lengths_by_ending(self._town_full)
        self._town_bare_lengths = _lengths_by_ending(self._town_bare)

    # -- finding mentions ---------------------------------------------------------------------
