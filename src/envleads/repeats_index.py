"""The matter index of one blocking key: which live matter, if any, a complaint reports again
(:meth:`MatterIndex.assign`), the evidence that joins them (:meth:`MatterIndex._evaluate`), and
the same across several keys' indexes (:func:`assign_across`).
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Any, Collection, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from envleads.postings import Lookup
from envleads.repeats_config import RepeatConfig
from envleads.repeats_features import (MatterFeatures, TradeNameSaid, _cores_match, _same_trade_group, _split, _strip_category, named_as_neighbour, region_relation, text_character_pairs, text_trade_name_keys,
                                       trade_name_key_starts, trade_name_keys, trade_name_said, trades_named)
from envleads.repeats_matters import (_NAMING_SCAN, IndexedMatters, _Matter, _holders, _reporter_digests)
from envleads.repeats_text import _below_cut, _name_hashes, _sorted_membership, _trim


class Assignment(NamedTuple):
    cluster_id: str
    duplicate_of: Optional[str]  # first complaint of the matter; None when this one starts it
    is_new_matter: bool
    similarity: float  # weighted text similarity to the closest report of the matter
    # "new", "redelivery", "text", or "text+" one of "title_entity", "entity", "trade_name", "location",
    # "descriptor", "reporter"
    matched_on: str
    # the name the complaint shares with the matter ("company:恒丰电镀"), when a name joined it
    shared: Optional[str] = None


def cluster_id_for(first_complaint_id: str) -> str:
    """Stable matter id derived from the first complaint id (equal on every worker and replay)."""
    return "m-" + hashlib.sha1(first_complaint_id.encode("utf-8")).hexdigest()[:16]


class _Candidate(NamedTuple):
    score: float
    text: float
    evidence: str
    first_seen_ms: int
    cluster_id: str
    shared: Optional[str]


class MatterIndex(IndexedMatters):
    """The matters of one blocking key seen within the time window, and assignment against them.

    Keeps up to ``max_members_per_matter`` sketches per matter (the first report's and the most
    recent), so a matter that drifts in wording is still found (single linkage) while memory stays
    bounded. An inverted index from shingle to the matters holding it finds candidates and gives
    each shingle's document frequency, so the weight of a phrase follows the stream: what many live
    matters say is boilerplate here, whatever the source. Entity indexes find matters that name the
    same place in other words.
    """

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
                  one_city: bool = False, said: Optional[TradeNameSaid] = None
                  ) -> Optional[Tuple[float, str, Optional[str]]]:
        """The join score and its evidence, or None when the complaint does not report this matter.

        A matter is one problem source at one place. Evidence, strongest first:

        * ``title_entity`` / ``entity``: both name the same source (a company, a site), with a
          little text in common; the same source is the same matter whatever the problem;
        * ``trade_name``: the complaint says the trade name of the matter's source (鑫晟 of
          鑫晟轧钢有限公司) in another form, with a pollution type in common or marked as a name
          (:meth:`_trade_name_joins`);
        * ``location``: both name the same precise place (a compound, an address, a river or a
          school) and share a pollution type: a restaurant's fumes and a shop's noise in one
          compound are two matters; when either names a source there (a KTV, a restaurant), the
          place says less about the other, so some text must be shared too;
        * ``reporter``: the same reporter writes again about the same type, or with text in common;
        * ``text``: the same type and very similar text (boilerplate removed before shingling).

        A road, town, village or park (role ``area``) is never evidence (across cities another one
        is another place: :meth:`_namesake`). Different sources of one kind join only with nearly
        identical text. An environmental and a non-environmental (untyped) complaint share a matter
        only as a restatement, or when the untyped one names the source and says ``pollution_words``."""
        cfg, w = self.config, self.config.weights
        placed = one_city or relation in ("same_county", "same_city")  # by the key, or both regions
        if shared is None or placed != one_city:  # names sound alike more loosely within one city
            shared = self._shared_entities(features.entities, matter.entities, near=placed)
        shared = shared if placed else self._alike_across_cities(
            self._same_full_names(shared, features.entities, matter), matter)
        classes = {entity.partition(":")[0] for entity in shared}
        shared_source, shared_location = bool(classes & self._sources), bool(classes & self._locations)
        shared_descriptor = bool(classes & self._descriptors)
        if shared_source and not self._about_shared_source(features, matter, shared, placed):
            shared_source = False  # a neighbour the report names beside its own source
        said = said if said is not None and self._trade_name_joins(said, features, matter, placed) else None
        if not features.types and features.states_pollution and matter.environmental and (shared_source or said):
            features = features._replace(types=tuple(matter.types) or ("other",))  # typed as none, says 偷排
        if bool(features.types) != matter.environmental and not (
                (shared_source or shared_location or said) and text_sim >= cfg.text_only_unplaced):
            return None  # the classifier may miss a repeat's type, never a restatement's
        shared_title = shared_source and any(
            entity.partition(":")[0] in self._sources
            for entity in self._shared_entities(features.title_entities, matter.title_entities, near=placed))
        # a name of the report's that differs from the matter's but says its trade name (齐长化工(音),
        # 好像叫齐昌) is no other source
        conflict = said is None and self._entity_conflict(features.entities, matter)
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
            evidence = "text" if self._same_question(text_sim, features, matter, placed) else None
        elif shared_title and (textless or text_sim >= cfg.min_text_with_title_entity):
            evidence = "title_entity"
        elif shared_source and (textless or text_sim >= cfg.min_text_with_entity):
            evidence = "entity"
        elif said is not None and (shared_type or said.marked):
            evidence = "trade_name"
        elif shared_location and shared_type and (textless or text_sim >= self._location_floor(
                features, matter, shared, placed)):
            evidence = "location"
        elif shared_descriptor and shared_type and self._descriptor_joins(text_sim, features, matter, shared, placed):
            evidence = "descriptor"
        elif same_reporter and (shared_type or text_sim >= cfg.min_text_with_reporter) \
                and not self._entity_conflict(features.entities, matter, False):
            evidence = "reporter"  # one resident writes about each neighbour: 华磊陶瓷, then 新盛建材
        elif shared_type and text_sim >= (cfg.conflict_text_similarity
                                          if self._entity_conflict(features.entities, matter, False)
                                          else cfg.text_only_similarity if placed else cfg.text_only_unplaced) \
                and not (cfg.text_needs_places_alike and self._asked_elsewhere(features.entities, matter)):
            evidence = "text"  # one clause of a kind of source ("采砂船，私挖乱采") from two villages: two sources
        else:
            evidence = None
        if evidence is None or not placed and self._namesake(text_sim, features, matter):
            return None
        score = w["text"] * text_sim
        score += w["shared_source"] * shared_source + w["shared_location"] * shared_location
        score += w["shared_title_entity"] * shared_title
        score += w["shared_type"] * shared_type + w["same_reporter"] * same_reporter
        score += w["shared_descriptor"] * shared_descriptor
        score -= w["entity_conflict"] * conflict
        if evidence == "trade_name":
            score += w["trade_name_said"]
            return score, evidence, f"trade_name:{said.name}"
        # the name an inspector reads to check the merge
        named_by = {"title_entity": self._sources, "entity": self._sources, "location": self._locations,
                    "descriptor": self._descriptors}.get(evidence, ())
        return score, evidence, next((e for e in shared if e.partition(":")[0] in named_by), None)

    def _trade_name_joins(self, said: TradeNameSaid, features: MatterFeatures, matter: _Matter, placed: bool) -> bool:
        """Whether the matter's trade name said in the complaint (:func:`trade_name_said`) makes it
        this matter's report: said in the same characters, or by sound when marked as a name
        ("鑫盛轧钢(音)"); for a complaint not known to be in the matter's city, of three
        characters or more (鑫达, 星光 recur from city to city) or with a place named alike; a name
        of the matter's confirmed sources when it has some; never when the complaint names the
        matter's source itself (the name's own rules judged it); and every source the complaint
        names carries that trade name or is a landmark beside it ("好像叫齐昌" is 齐昌): a report
        about another plant that mentions this one is not this one's."""
        name = said.name
        if said.by_sound and not said.marked or not placed and len(name) < 3 and not self._shares_a_place(
                features.entities, matter):
            return False
        if self._shared_entities([e for e in features.entities if e.partition(":")[0] in self._sources],
                                 matter.entities, near=placed):
            return False  # the report names the matter's source: the name's own rules judged it
        cores = [(e.partition(":")[0] in self._sources, e.partition(":")[2]) for e in features.entities]
        if any(name in core for source, core in cores if not source) and not any(
                name in core for source, core in cores if source):
            return False  # said as part of a place's name (柳红快速路), not a source's
        confirmed = self._confirmed_sources(matter)
        if confirmed and not any(name in e.partition(":")[2] for e in confirmed):
            return False  # a neighbour one report named beside the matter's source
        if self.config.trade_name_same_trade and not self._trade_of_trade_name_agrees(said, features, matter):
            return False
        for entity in features.entities:
            cls, _, core = entity.partition(":")
            if cls in self._sources and name not in core and self._specific(entity) \
                    and trade_name_said(core, name, self.config) is None \
                    and not named_as_neighbour(features.plain_text, core, self.config):
                return False
        return True

    def _trade_of_trade_name_agrees(self, said: TradeNameSaid, features: MatterFeatures, matter: _Matter) -> bool:
        """Whether the complaint's source that says the trade name is of the trade of the matter's
        source of that name (:func:`_trades_agree`): 源平量贩KTV is not 源平酒店, 红荷包装加工 not
        宏荷牧业, in one city or not. True when either names no such source."""
        name = said.name
        mine = [core for cls, core in map(_split, features.entities)
                if cls in self._sources and trade_name_said(core, name, self.config) is not None]
        theirs = [core for cls, core in map(_split, matter.entities) if cls in self._sources and name in core]
        return not mine or not theirs or any(_trades_agree(a, b, self.config) for a in mine for b in theirs)

    def _same_full_names(self, shared: List[str], entities: Sequence[str], matter: _Matter) -> List[str]:
        """``shared`` without the names whose full forms (``full_name_class``) both sides give and
        none alike: across cities a two-character compound name recurs, and 裕西小区 here and
        裕西花园 there are two places (within one city people write one estate either way)."""
        full = self._full_name_classes
        if not full or not shared:
            return shared
        kept = []
        for entity in shared:
            cls, _, core = entity.partition(":")
            twin = full.get(cls)
            if twin:
                prefix = f"{twin}:{core}"
                mine = {e for e in entities if e.startswith(prefix)}
                theirs = {e for e in matter.entities if e.startswith(prefix)}
                if mine and theirs and not mine & theirs:
                    continue
            kept.append(entity)
        return kept

    def _alike_across_cities(self, shared: List[str], matter: _Matter) -> List[str]:
        """``shared`` without the names that match none of the matter's as two cities' names must:
        a source's of the same trade (:func:`_trades_agree`, ``one_trade_across_cities``: 福东精细化工
        is not 福东家具加工), a descriptor's area in the same characters (:func:`_areas_written_alike`,
        ``descriptor_areas_written_across_cities``: 源静中路 is not 元静中路 there; one city's clerk
        may write a road by ear, but across the country a road name of the same sound is another
        road)."""
        cfg = self.config
        if not shared or not (cfg.one_trade_across_cities or cfg.descriptor_areas_written_across_cities):
            return shared
        known = [_split(e) for e in matter.entities]
        kept = []
        for entity in shared:
            cls, core = _split(entity)
            if cls in self._descriptors:
                alike = not cfg.descriptor_areas_written_across_cities or any(
                    kcls == cls and _areas_written_alike(core, kcore) for kcls, kcore in known)
            else:
                alike = not cfg.one_trade_across_cities or any(
                    kcls == cls and _cores_match(core, kcore, cfg) and _trades_agree(core, kcore, cfg)
                    for kcls, kcore in known)
            if alike:
                kept.append(entity)
        return kept

    def _same_question(self, text_sim: float, features: MatterFeatures, matter: _Matter, placed: bool) -> bool:
        """Whether a non-environmental complaint asks the matter's question again: the same letter
        (text only), from no place or one alike (:meth:`_asked_elsewhere`)."""
        cfg = self.config
        return text_sim >= (cfg.text_only_similarity if placed else cfg.text_only_unplaced) \
            and not self._asked_elsewhere(features.entities, matter)

    def _namesake(self, text_sim: float, features: MatterFeatures, matter: _Matter) -> bool:
        """Whether a complaint not known to be in the matter's city is about a namesake elsewhere:
        another road, address or park (:meth:`_places_conflict`), or, with ``namesake_places_apart``,
        places none alike whatever their kinds (杨记烧烤 by 德远家园 is not the one on 昌港路 of another
        city: :meth:`_asked_elsewhere`), unless it restates the matter."""
        return text_sim < self.config.conflict_text_similarity and (
            self._places_conflict(features.entities, matter)
            or self.config.namesake_places_apart and self._asked_elsewhere(features.entities, matter))

    def _asked_elsewhere(self, entities: Sequence[str], matter: _Matter) -> bool:
        """Whether a non-environmental complaint and the matter both name places
        (``question_place_classes``: towns, villages, estates, roads) and none alike: the same
        question about parking or a subsidy from two estates is two residents' question."""
        mine = _cores_by_class(entities, self.config.question_place_classes)
        theirs = _cores_by_class(matter.entities, self.config.question_place_classes)
        return bool(mine) and bool(theirs) and not any(
            _places_alike(a, b, self.config) for cls in mine.keys() & theirs.keys() for a in mine[cls] for b in theirs[cls])

    def _places_conflict(self, entities: Sequence[str], matter: _Matter) -> bool:
        """Whether the complaint names a road, an address or a park (``place_conflict_classes``)
        where the matter names others of that class and none alike (:func:`_places_alike`).

        Only for a complaint not known to be in the matter's city: across the country a name
        recurs (李记烧烤, 裕西花园, two 港德大道), and the street it is on is what tells the
        namesakes apart; within one city a plant is often described from the next road."""
        mine = _cores_by_class(entities, self.config.place_conflict_classes)
        if not mine:
            return False
        theirs = _cores_by_class(matter.entities, mine.keys())
        return any(not any(_places_alike(a, b, self.config) for a in mine[cls] for b in known)
                   for cls, known in theirs.items())

    def _descriptor_joins(self, text_sim: float, features: MatterFeatures, matter: _Matter, shared: Sequence[str],
                          placed: bool) -> bool:
        """Whether a shared descriptor (a trade on an area, the only live matter described so:
        :meth:`_is_specific`) joins. A descriptor stands for a name the report does not give, so
        not when the complaint names a source (a name that matched nothing is another plant); when
        the matter names sources, one of them must be of that trade (a matter named 顺景 says
        nothing of which furniture plant it is); and, when the two are not known to be in one city
        and the area's name has two characters (城西村, 兴业路: they recur from city to city), only
        with ``min_text_with_location_unplaced`` text, as a two-character compound, unless two
        areas are shared (a crossing of two roads)."""
        if self._names_source(features.entities):
            return False
        described = [e.partition(":")[2] for e in shared if e.partition(":")[0] in self._descriptors]
        areas = {core.rpartition("@")[2] for core in described}
        if not placed and text_sim < self.config.min_text_with_location_unplaced and len(areas) < 2 and not any(
                len(area) >= 3 for area in areas):
            return False  # two areas shared: a crossing ("遥观大道和勤新路路口"), one place
        named = [e for e in matter.entities if e.partition(":")[0] in self._sources and self._specific(e)]
        if not named:
            return True
        trades = {core.rpartition("@")[0] for core in described}
        class_trades = self.config.descriptors.class_trades
        return any(trade in trades for e in named
                   for trade in [*trades_named(e.partition(":")[2], self.config), class_trades.get(e.partition(":")[0])])

    def _about_shared_source(self, features: MatterFeatures, matter: _Matter, shared: Sequence[str],
                             placed: bool) -> bool:
        """Whether a source both name is what each is about, not a neighbour named beside it
        ("华丰印染, 就在鸿锦印染隔壁"): not when the complaint's title names a source that is not
        the matter's, nor when the matter has confirmed sources (named in a title or by two
        reports) and the shared one is none of them."""
        sources = [e for e in shared if e.partition(":")[0] in self._sources]
        titled = [e for e in features.title_entities if e.partition(":")[0] in self._sources and self._specific(e)]
        if titled and not self._shared_entities(titled, matter.entities, near=placed):
            return False
        confirmed = self._confirmed_sources(matter)
        return not confirmed or any(self._shared_entities([e], confirmed, near=placed) for e in sources)

    def _confirmed_sources(self, matter: _Matter) -> List[str]:
        """The matter's specific source names named in a title or by two reports: what it is about."""
        return [e for e, n in matter.entities.items()
                if e.partition(":")[0] in self._sources and (n >= 2 or e in matter.title_entities)
                and self._specific(e)]

    def _describes(self, shared: Optional[str]) -> bool:
        """Whether a live matter here gives the name a join was made on: a descriptor (a trade on
        an area), a source's name (``company:阿强烧烤``) or a trade name (``trade_name:鑫晟``)."""
        if not shared:
            return False
        if shared.startswith("trade_name:"):
            name = shared.partition(":")[2]
            holders = set().union(*(_holders(self._trade_index, key) for key in trade_name_keys(name)))
            return any(name == known for cid in holders for known, _ in self._trade_names(self._matters[cid]))
        holders = _holders(self._entity_index, self._entity_key(shared))
        return bool(holders) and self._matters_naming(shared, holders) >= 1

    def _matched_length(self, entity: str, matter: _Matter, placed: bool) -> int:
        """The length of the shortest of the matter's names the complaint's ``entity`` matches
        (its own if none): "长安新安" matches "新安", a two-character name with a town before it."""
        cls, _, core = entity.partition(":")
        lengths = [len(core.partition("#")[0])]
        for known in matter.entities:
            kcls, _, kcore = known.partition(":")
            if kcls == cls and _cores_match(core, kcore, self.config, placed):
                lengths.append(len(kcore.partition("#")[0]))
        return min(lengths)

    def _names_source(self, entities: Iterable[str]) -> bool:
        """Whether ``entities`` hold the name of a specific source."""
        return any(entity.partition(":")[0] in self._sources and self._specific(entity) for entity in entities)

    def _location_floor(self, features: MatterFeatures, matter: _Matter, shared: Sequence[str], placed: bool) -> float:
        """The text similarity a shared precise place needs besides a shared type: more when either
        side names a source there (the place then says less about the other report), and when the
        two are not known to be in one city and no shared place name has three characters or more
        (a two-character compound name, 长虹苑 or 河李小区, recurs from city to city; a road with a
        house number, 兴隆路18号, is one place however short the road's name)."""
        cfg = self.config
        floor = cfg.min_text_with_location_beside_source \
            if self._names_source(itertools.chain(features.entities, matter.entities)) \
            else cfg.min_text_with_location
        long_name = any(e.partition(":")[0] in self._locations and (
            e.partition(":")[0] == cfg.address_class or self._matched_length(e, matter, placed) >= 3) for e in shared)
        return floor if placed or long_name else max(floor, cfg.min_text_with_location_unplaced)

    def _shared_entities(self, new: Sequence[str], known: Iterable[str], near: bool = False) -> List[str]:
        """The complaint's specific names that match one of the matter's (same kind, :func:`_cores_match`;
        ``near``: both in one city), in the complaint's order. Areas (roads, towns, estates) are
        never compared: they are no evidence, and comparing them was most of the cost."""
        cfg = self.config
        areas = self._areas
        wanted = []
        for entity in new:
            cls, _, core = entity.partition(":")
            if cls not in areas:
                wanted.append((entity, cls, core))
        if not wanted:
            return []
        classes = {cls for _, cls, _ in wanted}
        # (class, core) of the matter's names of those classes, as _split, without its call
        known_split = [(kcls, kcore) for kcls, _, kcore in (e.partition(":") for e in known) if kcls in classes]
        shared = []
        for entity, cls, core in wanted:  # names first: whether a name is specific costs a look at the postings
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
        if entity.partition(":")[0] in self._descriptors:  # only while one live matter is described so
            return len(holders) <= 1 or self._matters_naming(entity, holders) <= 1
        if len(holders) >= self.config.generic_matters and self._matters_naming(entity, holders) >= \
                self.config.generic_matters:
            return False
        cls, core = _split(entity)
        core = core.partition("#")[0]
        k = self.config.shingle_chars
        if len(core) < k or not len(self._postings) or self._named_with_trade(cls, core):
            return True
        cap = max(float(self.config.generic_matters), self.config.common_share * len(self._matters))
        hashes = _name_hashes(core, k, self.config.seed)
        return bool((self._postings.document_frequency(hashes) < cap).any())

    def _named_with_trade(self, cls: str, core: str) -> bool:
        """Whether a source's name is a name and a trade ("鸿锦印染": 鸿锦 and 印染): the shape of a
        real name, so that its words being common in the texts means the source is much talked
        about (a landmark, a neighbour), not that the rules took a phrase for a name."""
        if cls not in self._sources:
            return False
        name, trade = _strip_category(core, self.config)
        return len(name) >= 2 and trade != ""

    def _matters_naming(self, entity: str, holders: Collection[str]) -> int:
        """How many of ``holders`` (the matters under the entity's index key) name the entity itself,
        counted up to ``generic_matters``; for a source, only environmental matters count (a job
        seeker or a wage claim naming a plant does not make its name common among its problems,
        while a compound that many letters of any kind name is a busy place). The key is the name's last two characters, so in a large
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
        problems_only = cls in self._sources
        for cid in sorted(holders):
            matter = self._matters[cid]
            if (matter.environmental or not problems_only) and any(e.startswith(prefix) and _cores_match(core, e[cut:], cfg)
                                            for e in matter.entities):
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

    def _names_held(self, keys: Tuple[Tuple[str, ...], ...], reporters: Sequence[str]) -> bool:
        """Whether a live matter here is under one of a complaint's name keys (``(entity keys,
        title entity keys, trade name keys)``) or reporters: a cheap test before another key's
        index is searched (the holders' key is dropped with its last matter, so membership is the
        test)."""
        return (any(key in self._entity_index for key in keys[0]) or any(key in self._title_index for key in keys[1])
                or any(key in self._trade_chars_index for key in keys[2])
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
        said_of = self._trade_names_said(features)
        candidates.update(said_of)
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
                                    one_city, said_of.get(cluster_id))
            if judged is None:
                continue
            found = _Candidate(judged[0], text_sim, judged[1], matter.first_seen_ms, cluster_id, judged[2])
            if best is None or _rank(found) > _rank(best):
                best = found
        return best

    def _shares_a_place(self, entities: Sequence[str], matter: _Matter) -> bool:
        """Whether the complaint and the matter name a place alike (:func:`_places_alike`) of any
        area or location class: a town, road, village, compound ... (彭记烧烤 at 斑马湖畔 in both)."""
        classes = self._areas | self._locations
        mine = _cores_by_class(entities, classes)
        theirs = _cores_by_class(matter.entities, mine.keys())
        return any(_places_alike(a, b, self.config) for cls, known in theirs.items() for a in mine[cls] for b in known)

    def _trade_names_said(self, features: MatterFeatures) -> Dict[str, TradeNameSaid]:
        """The live matters whose source's trade name the complaint's text says
        (:func:`trade_name_said`), as cluster id -> how. A trade name that two live matters here
        hold identifies neither (a common one: 宏达, 鑫源), nor one of a name that is not specific
        here (:meth:`_is_specific`); a key held by more than ``generic_matters`` matters is not
        looked at (what several hold identifies none: the cost of a common name is one look-up)."""
        text = features.plain_text
        if not self._trade_index or not text:
            return {}
        keys = [key for key in text_trade_name_keys(text) & self._trade_index.keys()
                if len(_holders(self._trade_index, key)) <= self.config.generic_matters]
        if not keys:
            return {}
        starts_of: Dict[str, set] = {}  # cluster id -> where its trade names' keys start in the text
        for key, starts in trade_name_key_starts(text, keys).items():
            for cluster_id in _holders(self._trade_index, key):
                starts_of.setdefault(cluster_id, set()).update(starts)
        said_of: Dict[str, TradeNameSaid] = {}
        matters_of: Dict[str, set] = {}
        for cluster_id in sorted(starts_of):
            starts = sorted(starts_of[cluster_id])
            for name, entity in self._trade_names(self._matters[cluster_id]):
                said = trade_name_said(text, name, self.config, starts)
                # not of a name several live matters give, nor of a phrase (every shingle common)
                if said is not None and self._specific(entity):
                    matters_of.setdefault(name, set()).add(cluster_id)
                    best = said_of.get(cluster_id)
                    if best is None or (not said.by_sound, said.marked, len(name)) > (
                            not best.by_sound, best.marked, len(best.name)):
                        said_of[cluster_id] = said
        return {cid: said for cid, said in said_of.items() if len(matters_of[said.name]) == 1}

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

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: Optional[RepeatConfig] = None,
                   block: Optional[str] = None) -> "MatterIndex":
        """Rebuilds an index from :meth:`to_state`; refuses state of another sketch shape."""
        index = cls(config, block if block is not None else state.get("block"))
        index.merge_state(state)
        return index


def _cores_by_class(entities: Iterable[str], classes: Collection[str]) -> Dict[str, List[str]]:
    """The names of ``classes`` among ``entities``, as class -> cores."""
    found: Dict[str, List[str]] = {}
    for entity in entities:
        cls, _, core = entity.partition(":")
        if cls in classes:
            found.setdefault(cls, []).append(core)
    return found


def _places_alike(a: str, b: str, config: RepeatConfig) -> bool:
    """Whether two road, address or park names may be one place: :func:`_cores_match`, or one
    ending with the other (a word the rules left before a road, "反映过建设路" -> 过建设, is no
    other road): a conflict needs two plainly different names."""
    return a.endswith(b) or b.endswith(a) or _cores_match(a, b, config)


def _areas_written_alike(a: str, b: str) -> bool:
    """Whether two descriptors (``trade@area``) are of one trade on an area written in the same
    characters: equal, or one ending the other in three characters or more (东延政西 / 延政西)."""
    trade_a, _, area_a = a.partition("@")
    trade_b, _, area_b = b.partition("@")
    short, long_ = sorted((area_a, area_b), key=len)
    return trade_a == trade_b and (short == long_ or len(short) >= 3 and long_.endswith(short))


def _trades_agree(a: str, b: str, config: RepeatConfig) -> bool:
    """Whether two source names (cores) are of one trade, as two cities' names must be: equal, of
    one group (土菜 / 饭店), one ending the other (化工 / 精细化工), or one without a trade; a
    character in common is not enough (精细化工 / 家具加工 share 工, 酒业 / 牧业 share 业)."""
    if "@" in a or "#" in a or "@" in b or "#" in b:
        return True  # a descriptor's trade and an address's number are compared as the name is
    trade_a, trade_b = _strip_category(a, config)[1], _strip_category(b, config)[1]
    return not trade_a or not trade_b or trade_a.endswith(trade_b) or trade_b.endswith(trade_a) \
        or _same_trade_group(trade_a, trade_b, config)


# evidence by a name that a live matter of another key may give too (阿强烧烤, 鑫达电镀 and 星光KTV
# recur from city to city): a complaint that two keys could take by it is neither's by it
_AMBIGUOUS_ACROSS_KEYS = frozenset({"descriptor", "entity", "title_entity", "trade_name"})


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
    keys = _name_keys(home, features) if others else ((), (), ())
    return _assign_across(home, others, complaint_id, event_time_ms, features, reporters, keys)


def _name_keys(home: MatterIndex, features: MatterFeatures) -> Tuple[Tuple[str, ...], ...]:
    """The index keys of a complaint's source and place names and of the trade names its text
    may say, ``(entity keys, title entity keys, trade name keys)``: what another key's index is
    searched under (a road or a town alone never joins)."""
    evidence = home._sources | home._locations | home._descriptors
    return (tuple(home._entity_key(e) for e in features.entities if e.partition(":")[0] in evidence),
            tuple(home._entity_key(e) for e in features.title_entities if e.partition(":")[0] in evidence),
            text_character_pairs(features.plain_text) if features.plain_text else ())


def _assign_across(home: MatterIndex, others: Sequence[MatterIndex], complaint_id: str, event_time_ms: int,
                   features: MatterFeatures, reporters: Sequence[str],
                   keys: Tuple[Tuple[str, ...], ...]) -> Tuple[MatterIndex, Assignment]:
    """:func:`assign_across` of a prepared complaint (:meth:`MatterIndex._prepared`) and its name keys."""
    indexes = (home, *others)
    for index in indexes:
        known = index.redelivery(complaint_id) if complaint_id in index._complaint_index or index is home else None
        if known is not None:
            return index, known
    searched, found_in = [], []
    for index in indexes:
        if index is not home and not index._names_held(keys, reporters):
            continue
        searched.append(index)
        found = index._match(event_time_ms, features, reporters, index._one_city and index is home, index is not home)
        if found is not None:
            found_in.append((found, index))
    best, chosen = None, home
    # best first; stable, so that of equal ranks the first index searched wins
    for found, index in sorted(found_in, key=lambda pair: _rank(pair[0]), reverse=True):
        if found.evidence in _AMBIGUOUS_ACROSS_KEYS and any(
                other is not index and other._describes(found.shared) for other in searched):
            continue  # described or named so in another key too: it identifies none of them
        best, chosen = found, index
        break
    return chosen, chosen._settle(complaint_id, event_time_ms, features, reporters, best)
