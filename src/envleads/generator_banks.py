"""The generator's phrase banks, scenarios and place lists (``data/generator/*.json`` and the
division table), loaded once per process and shared by every :func:`generate_events` call."""
from __future__ import annotations

import itertools
import re
from typing import Optional

from envleads.config import ConfigError, data_path, load_json_config
from envleads.divisions import CITY, COUNTY, PROVINCE, DivisionTable, load_divisions, load_townships

CHANNELS = ("phone", "wechat", "web", "letter")
_PROVINCE_SUFFIXES = ("壮族自治区", "回族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市")


def short_name(name: str, level: str) -> str:
    """The everyday short form of a province or city name (江苏省 -> 江苏, 南京市 -> 南京)."""
    if level == PROVINCE:
        for suffix in _PROVINCE_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                return name[: -len(suffix)]
        return name
    if level == CITY and name.endswith("市") and len(name) > 2:
        return name[:-1]
    return name


class Banks:
    """Phrase banks, scenario definitions and the division-derived place lists, loaded once."""

    def __init__(self, table: DivisionTable):
        self.table = table
        self.mix = load_json_config(data_path("generator/mix.json"), ("version", "malformed_rate",
                                                                      "mention_modes", "hour_weights"))
        self.phr = load_json_config(data_path("generator/phrases.json"), ("version", "syllables", "channels"))
        self.scn = load_json_config(data_path("generator/scenarios.json"), ("version", "sources", "aspects"))
        self.version = "+".join(d["version"] for d in (self.mix, self.phr, self.scn))
        for key, source in self.scn["sources"].items():
            for aspect, _ in source["aspects"]:
                if aspect not in self.scn["aspects"]:
                    raise ConfigError(f"scenarios.json: source {key!r} names unknown aspect {aspect!r}")
        self._places(table)
        self._invented_names(table)
        self.source_keys = list(self.scn["sources"])
        self.source_cum = list(itertools.accumulate(s["weight"] for s in self.scn["sources"].values()))
        noisy = [k for k in self.source_keys
                 if any(self.scn["aspects"][a]["label"] == "noise" and p >= 0.4
                        for a, p in self.scn["sources"][k]["aspects"])]
        self.noisy_keys = noisy
        self.noisy_cum = list(itertools.accumulate(self.scn["sources"][k]["weight"] for k in noisy))
        topics = self.phr["non_environmental"]["topics"]
        self.topic_keys = list(topics)
        self.topic_cum = list(itertools.accumulate(t["weight"] for t in topics.values()))
        weights = self.mix["hour_weights"]
        if len(weights) != 24:
            raise ConfigError("mix.json: hour_weights must have 24 values")
        total = float(sum(weights))
        self.hour_w = [w / total for w in weights]
        self.hour_cum = [0.0] + list(itertools.accumulate(self.hour_w))
        channel_w = self.phr["channels"]["weights"]
        self.channel_cum = list(itertools.accumulate(channel_w[c] for c in CHANNELS))
        self.modes = {c: (list(m), list(itertools.accumulate(m.values())))
                      for c, m in self.mix["mention_modes"].items()}
        rf = self.mix["reporter_field"]
        self.reporter_modes = (list(rf), list(itertools.accumulate(rf.values())))
        mr = self.mix["malformed_reasons"]
        self.malformed_modes = (list(mr), list(itertools.accumulate(mr.values())))
        trad = self.phr["traditional"]["map"]
        if len(trad) % 2:
            raise ConfigError("phrases.json: traditional.map must hold character pairs")
        self.traditional = str.maketrans({trad[i]: trad[i + 1] for i in range(0, len(trad), 2)})
        self.typos = [tuple(p) for p in self.phr["typos"]["pairs"]]

    def _places(self, table: DivisionTable) -> None:
        excluded = set(self.mix.get("excluded_provinces", ())) | set(self.mix.get("excluded_places", ()))
        with_counties = {d.city_code for d in table if d.level == COUNTY and d.city_code}
        places = []
        for division in sorted(table, key=lambda d: d.adcode):
            if division.province_code in excluded or division.adcode in excluded:
                continue
            if division.level == COUNTY:
                places.append(division)
            elif division.level == CITY and division.adcode not in with_counties:
                places.append(division)  # cities without counties (东莞市, 中山市)
        places = [p for p in places if table.get(p.province_code) is not None
                  and "交界" not in table.get(p.province_code).name]
        self.places = places
        weight = float(self.mix.get("district_weight", 1.0))
        self.place_cum = list(itertools.accumulate(weight if p.name.endswith("区") else 1.0 for p in places))
        self.ambiguous = [p for p in places if p.level == COUNTY and len(table.named(p.name)) > 1]
        self.all_places = [d for d in sorted(table, key=lambda d: d.adcode) if d.level == COUNTY]

    def _invented_names(self, table: DivisionTable) -> None:
        banned = set()
        for division in table:
            banned.add(division.name)
            banned.add(short_name(division.name, division.level))
            if len(division.name) > 2:
                banned.add(division.name[:2])
        try:  # an invented town must not be a real, unique township the resolver would place
            townships = load_townships()
        except RuntimeError:
            townships = None
        for name in (townships.by_name if townships else ()):
            banned.add(re.sub("(街道|镇|乡|苏木)$", "", name))
        syllables = self.phr["syllables"]
        self.invented = [a + b for a in syllables for b in syllables if a != b and a + b not in banned]


_BANKS: Optional[Banks] = None


def banks() -> Banks:
    global _BANKS
    if _BANKS is None:
        _BANKS = Banks(load_divisions())
    return _BANKS
