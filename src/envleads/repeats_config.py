"""Repeat detection's configuration: the typed view of ``data/repeats.json`` and its loader."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from envleads.config import ConfigError, data_path, load_json_config
from envleads.repeats_text import normalise_text

CONFIG_FILE = "repeats.json"
_MS_PER_DAY = 86_400_000


ROLES = ("source", "location", "area", "descriptor")
DESCRIPTOR_CLASS = "descriptor"  # "descriptor:电镀@延政西": a trade on a road or in a village (see Descriptors)


class Descriptors(NamedTuple):
    """How a source described without its name ("延政西路上那家电镀厂") is compared: by its trade
    on an area (a road, village or park), written ``descriptor:<trade>@<area core>``."""

    # the area classes a descriptor is built on (a town is too large: many plants of one trade)
    area_classes: frozenset = frozenset()
    # word -> its trade (the first word of its group): 铸件 and 铸造 are one trade
    words: Mapping[str, str] = {}
    max_per_complaint: int = 8
    # class -> the trade its names are of whatever their words ("江南府" of class site: 工地)
    class_trades: Mapping[str, str] = {}
    # words just before a trade word that say the source is not of it ("不是铸造厂的味道")
    negations: Tuple[str, ...] = ()


class TradeNames(NamedTuple):
    """How a source's trade name (字号: 鑫晟 of 唐山市丰南区鑫晟轧钢有限公司) is found again in a
    later report that does not give the name in a form the suffix rules read ("路北那家轧钢厂(鑫晟)",
    "园区南头那家齐昌", "鑫盛轧钢(音)")."""

    # longest trade name looked for; 0: trade names are not looked for
    max_chars: int = 0
    # a mark after a name written by ear ("(音)"): the name is meant by its sound
    sound_marks: Tuple[str, ...] = ()
    # words after or before a name that say the report is about a neighbour ("就在鸿锦隔壁")
    neighbour_words: Tuple[str, ...] = ()
    # words right before a name that say it is the source's name ("好像叫齐昌")
    called: Tuple[str, ...] = ()


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
    # the class of the same name written in full, suffix included ("estate:裕西花园" beside
    # "compound:裕西"): across cities, 裕西小区 and 裕西花园 are two places
    full_name_class: str = ""
    # words after a suffix that say a spot beside the place ("陷泥河边上", "子牙河大堤"): the
    # place is named whatever ``not_followed_by`` bans after its suffix
    sides: Tuple[str, ...] = ()
    # suffixes after which a one-character name is a name ("细河", "祊河"), unless that character
    # is in ``single_char_stop`` (小河, 内河: a kind or a phrase, not a name)
    single_char_suffixes: Tuple[str, ...] = ()
    single_char_stop: str = ""


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
    # jieba words (of at least this frequency, of no proper-name tag) that are no place's name
    # before a side word ("东头" of 村东头河边): ``entities.ordinary_words``
    ordinary_word_min_frequency: int = 0  # 0: no dictionary check
    proper_name_tags: frozenset = frozenset()
    boilerplate: Tuple[str, ...] = ()
    bound_words: frozenset = frozenset()
    phrase_initial: str = ""
    phrase_starts: Tuple[str, ...] = ()
    conflict_classes: frozenset = frozenset({"company"})
    max_ids_per_matter: int = 64
    name_boundary_chars: str = ""
    max_rare_holders: int = 2048
    max_rare_holders_unplaced: int = 2048
    descriptors: Descriptors = Descriptors()
    # titles starting so are praise or thanks, not complaints ("感谢环保局"): such a report is
    # matched as non-environmental whatever its types
    not_complaint_titles: Tuple[str, ...] = ()
    # words only a report of pollution uses ("偷排", "酸味"): a report the classifier found not
    # environmental that says one of them and names a matter's source is that matter's repeat
    pollution_words: Tuple[str, ...] = ()
    # trade -> its group (the first word of a ``trade_groups`` entry): "土菜" and "饭店" are both
    # restaurants, so "老绍兴土菜(馆)" and "老绍兴饭店" can be one source
    trade_groups: Mapping[str, str] = field(default_factory=dict)
    # area and location classes (roads, addresses, parks) that tell two places apart: a complaint
    # not known to be in a matter's city that names one of them, where the matter names others of
    # that class and none alike, is about another place (鑫隆巷286号 is not 海联巷235号)
    place_conflict_classes: frozenset = frozenset()
    # place classes of a non-environmental question (a town, a village, an estate, a road): the
    # same question asked from places none alike is two residents' question, not one matter
    question_place_classes: frozenset = frozenset()
    trade_names: TradeNames = TradeNames()
    # source names shared with a matter of another city, for a complaint not known to be in it, must
    # be of one trade (福东精细化工 / 福东家具加工 share 工, not a trade: two sources)
    one_trade_across_cities: bool = False
    # a descriptor shared with a matter of another city: its area written in the same characters
    # (源静中路 / 元静中路, 青广北路 / 清光北路 recur as two roads)
    descriptor_areas_written_across_cities: bool = False
    # text alone does not join two complaints that name places (``question_place_classes``) and none
    # alike: one clause of a kind of source ("采砂船，私挖乱采") from two villages is two sources
    text_needs_places_alike: bool = False
    # a complaint not known to be in a matter's city that names places (``question_place_classes``)
    # none alike the matter's, of any kinds, is about a namesake elsewhere
    namesake_places_apart: bool = False
    # a trade name said by a source of another trade than the matter's source of that name is
    # another source's (源平量贩KTV / 源平酒店)
    trade_name_same_trade: bool = False

    @property
    def window_ms(self) -> int:
        return self.window_days * _MS_PER_DAY


_WEIGHT_KEYS = ("text", "shared_source", "shared_title_entity", "shared_location", "entity_conflict",
                "shared_type", "same_reporter", "shared_descriptor", "trade_name_said")


def load_repeat_config(path: Optional[str] = None) -> RepeatConfig:
    """Loads and validates the repeat-detection configuration (packaged file by default).

    Args:
        path: a JSON file shaped like ``data/repeats.json``; ``None`` for the packaged one.
    """
    path = path or data_path(CONFIG_FILE)
    doc = load_json_config(path, required=("version", "window_days", "sketch_size", "shingle_chars",
                                           "seed", "thresholds", "weights", "idf", "entities"))

    def need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
        return _need(path, mapping, key, where)

    thresholds, weights, entities, idf = doc["thresholds"], doc["weights"], doc["entities"], doc["idf"]
    classes = _entity_classes(path, need(entities, "classes", "entities."))
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
        **_thresholds(path, thresholds, text_only, with_entity),
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
        ordinary_word_min_frequency=int(entities.get("ordinary_words", {}).get("min_frequency", 0)),
        proper_name_tags=frozenset(entities.get("ordinary_words", {}).get("proper_name_tags", ())),
        not_complaint_titles=tuple(normalise_text(p) for p in doc.get("not_complaint_titles", []) if p),
        pollution_words=tuple(normalise_text(p) for p in doc.get("pollution_words", []) if p),
        boilerplate=tuple(sorted((normalise_text(p) for p in doc.get("boilerplate", []) if p), key=len, reverse=True)),
        bound_words=frozenset(entities.get("bound_words", [])),
        phrase_initial=str(entities.get("phrase_initial", "")),
        phrase_starts=tuple(entities.get("phrase_starts", ())),
        name_boundary_chars=str(entities.get("name_boundary_chars", "")),
        conflict_classes=frozenset(entities.get("conflict_classes", ("company",))),
        max_ids_per_matter=max(1, int(doc.get("max_ids_per_matter", 64))),
        descriptors=_descriptors(path, entities.get("descriptors", {}), classes),
        trade_groups=_groups(entities.get("trade_groups", [])),
        place_conflict_classes=_place_conflict_classes(path, entities.get("place_conflict_classes", ()), classes,
                                                       str(address.get("class", "address"))),
        question_place_classes=_place_conflict_classes(path, entities.get("question_place_classes", ()), classes,
                                                       str(address.get("class", "address"))),
        trade_names=_trade_names(entities.get("trade_names", {})),
        one_trade_across_cities=bool(entities.get("one_trade_across_cities", False)),
        descriptor_areas_written_across_cities=bool(entities.get("descriptor_areas_written_across_cities", False)),
        text_needs_places_alike=bool(entities.get("text_needs_places_alike", False)),
        namesake_places_apart=bool(entities.get("namesake_places_apart", False)),
        trade_name_same_trade=bool(entities.get("trade_name_same_trade", False)),
    )


def _trade_names(spec: Mapping[str, Any]) -> TradeNames:
    """The ``entities.trade_names`` block (absent: trade names are not looked for)."""
    if not spec:
        return TradeNames()

    def words(key: str) -> Tuple[str, ...]:
        return tuple(sorted({normalise_text(w) for w in spec.get(key, ()) if w}, key=len, reverse=True))

    return TradeNames(max_chars=max(0, int(spec.get("max_chars", 4))), sound_marks=words("sound_marks"),
                      neighbour_words=words("neighbour_words"), called=words("called"))


def _place_conflict_classes(path: str, names: List[str], classes: List[EntityClass], address_class: str) -> frozenset:
    """``entities.place_conflict_classes`` or ``question_place_classes``: classes of role ``area``
    or ``location`` (or the address class), never a source class (a source's name is compared by
    :meth:`MatterIndex._entity_conflict`)."""
    roles = {c.name: c.role for c in classes}
    roles[address_class] = "location"
    for name in names:
        if roles.get(name) not in ("area", "location"):
            raise ConfigError(f"{path}: entities.place_conflict_classes / question_place_classes: {name!r} "
                              "is not an area or location class")
    return frozenset(names)


def _groups(groups: List[List[str]]) -> Dict[str, str]:
    """Word -> the first word of its group (lower-cased), for lists of synonymous words."""
    out: Dict[str, str] = {}
    for group in groups:
        words = [w.lower() for w in group if w]
        for word in words:
            out.setdefault(word, words[0])
    return out


def _descriptors(path: str, spec: Mapping[str, Any], classes: List[EntityClass]) -> Descriptors:
    """The ``entities.descriptors`` block: ``area_classes`` (area-role classes) and ``trades``
    (groups of words naming one trade)."""
    if not spec:
        return Descriptors()
    areas = frozenset(spec.get("area_classes", ()))
    roles = {c.name: c.role for c in classes}
    for name in areas:
        if roles.get(name) != "area":
            raise ConfigError(f"{path}: entities.descriptors.area_classes: {name!r} is not a class of role 'area'")
    words = _groups(spec.get("trades", []))
    class_trades = {name: words.get(str(word).lower(), str(word).lower())
                    for name, word in spec.get("class_trades", {}).items()}
    return Descriptors(area_classes=areas, words=words, class_trades=class_trades,
                       max_per_complaint=max(1, int(spec.get("max_per_complaint", 8))),
                       negations=tuple(spec.get("negations", ())))


def _need(path: str, mapping: Mapping[str, Any], key: str, where: str) -> Any:
    """``mapping[key]``; a missing key is a :class:`ConfigError` naming ``where`` it is missing."""
    if key not in mapping:
        raise ConfigError(f"{path}: missing key {where}{key!r}")
    return mapping[key]


def _entity_classes(path: str, specs: Mapping[str, Any]) -> List[EntityClass]:
    """The entity classes of ``entities.classes``, in the file's order."""
    classes = []
    for name, spec in specs.items():
        role = _need(path, spec, "role", f"entities.classes.{name}.")
        if role not in ROLES:
            raise ConfigError(f"{path}: entities.classes.{name}.role must be one of {ROLES}, got {role!r}")
        classes.append(EntityClass(
            name=name, role=role,
            min_core_chars=int(spec.get("min_core_chars", 2)),
            keep_suffix=bool(spec.get("keep_suffix", False)),
            trades=bool(spec.get("trades", False)),
            kind_suffixes=frozenset(s.lower() for s in spec.get("kind_suffixes", ())),
            full_name_class=str(spec.get("full_name_class", "")),
            sides=tuple(sorted(spec.get("sides", ()), key=len, reverse=True)),
            single_char_suffixes=tuple(spec.get("single_char_suffixes", ())),
            single_char_stop=str(spec.get("single_char_stop", "")),
            # longest first so that 有限公司 wins over 公司
            suffixes=tuple(sorted((s.lower() for s in _need(path, spec, "suffixes", f"entities.classes.{name}.")),
                                  key=len, reverse=True))))
    return classes


def _thresholds(path: str, thresholds: Mapping[str, Any], text_only: float, with_entity: float) -> Dict[str, float]:
    """The similarity thresholds of :class:`RepeatConfig` (``thresholds``), the optional ones
    defaulting to ``text_only_similarity`` or ``min_text_with_entity``."""
    return dict(
        text_only_similarity=text_only,
        text_only_unplaced=float(thresholds.get("text_only_unplaced", text_only)),
        min_text_with_entity=with_entity,
        min_text_with_title_entity=float(thresholds.get("min_text_with_title_entity", with_entity)),
        min_text_with_location=float(_need(path, thresholds, "min_text_with_location", "thresholds.")),
        min_text_with_location_beside_source=float(_need(path, thresholds, "min_text_with_location_beside_source",
                                                         "thresholds.")),
        min_text_with_location_unplaced=float(_need(path, thresholds, "min_text_with_location_unplaced",
                                                    "thresholds.")),
        min_text_with_reporter=float(thresholds.get("min_text_with_reporter", text_only)),
        conflict_text_similarity=float(thresholds.get("conflict_text_similarity", text_only)),
    )


_DEFAULT_CONFIG: Optional[RepeatConfig] = None


def default_config() -> RepeatConfig:
    global _DEFAULT_CONFIG
    if _DEFAULT_CONFIG is None:
        _DEFAULT_CONFIG = load_repeat_config()
    return _DEFAULT_CONFIG
