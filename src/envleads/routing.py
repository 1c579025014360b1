"""Routes a complaint to the department that leads on its matter, at the level of its region.

Which department leads on which environmental matter is fixed per locality (the opinion on
functional departments' environmental duties, ``seeds/001``: local governments name the lead
department for each specific matter), so the rules are data: ``data/routing.json`` holds the
national default order, and ``data/routing/<province adcode>.json`` replaces or prepends rules for
one province. The first rule whose conditions hold wins; every answer names its rule id so a lead
can say why it went where it went.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from envleads.config import ConfigError, data_path, load_json_config
from envleads.records import RegionResolution
from envleads.text import normalise as _normalise  # one spelling of a word reaches one keyword

ROUTING_FILE = "routing.json"
OVERRIDES_DIR = "routing"


class Routing(NamedTuple):
    """The lead department, the administrative level it acts at, and the rule that chose it."""

    department: str
    level: str
    rule_id: str


class RoutingRule(NamedTuple):
    rule_id: str
    department: str
    types_any: Tuple[str, ...]  # empty: any pollution type
    all_of: Tuple[Tuple[str, ...], ...]  # every group needs one keyword in the text
    none_of: Tuple[str, ...]
    source: str

    def matches(self, types: Sequence[str], text: str) -> bool:
        if self.types_any and not set(self.types_any) & set(types):
            return False
        if any(word in text for word in self.none_of):
            return False
        return all(any(word in text for word in group) for group in self.all_of)


def _parse_rule(item: dict, path: str) -> RoutingRule:
    for key in ("id", "department", "source"):
        if key not in item:
            raise ConfigError(f"{path}: rule {item.get('id', '?')!r} missing key {key!r}")
    groups = item.get("all_of", [])
    if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
        raise ConfigError(f"{path}: rule {item['id']!r}: 'all_of' must be a list of non-empty keyword lists")
    return RoutingRule(item["id"], item["department"], tuple(item.get("types_any", ())),
                       tuple(tuple(_normalise(w) for w in g) for g in groups),
                       tuple(_normalise(w) for w in item.get("none_of", ())), item["source"])


class Router:
    """Picks the lead department for a complaint; load once per worker.

    Args:
        routing_path: the national rules (``data/routing.json``).
        overrides_dir: folder of ``<province adcode>.json`` files, each with ``version``,
            ``mode`` (``"prepend"`` or ``"replace"``) and ``rules``.
    """

    def __init__(self, routing_path: Optional[str] = None, overrides_dir: Optional[str] = None):
        path = routing_path or data_path(ROUTING_FILE)
        document = load_json_config(path, required=("version", "rules", "default", "region_levels"))
        self.version = document["version"]
        self._rules = [_parse_rule(item, path) for item in document["rules"]]
        default = document["default"]
        self._default = RoutingRule(default["id"], default["department"], (), (), (), default.get("source", ""))
        self._levels: Dict[str, str] = document["region_levels"]
        if "none" not in self._levels:
            raise ConfigError(f"{path}: 'region_levels' needs a 'none' entry")
        self._province_rules: Dict[str, List[RoutingRule]] = {}
        self.override_versions: Dict[str, str] = {}
        folder = overrides_dir if overrides_dir is not None else data_path(OVERRIDES_DIR)
        for override_path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            self._load_override(override_path)

    def _load_override(self, path: str) -> None:
        province = os.path.splitext(os.path.basename(path))[0]
        if not (len(province) == 6 and province.isdigit() and province.endswith("0000")):
            raise ConfigError(f"{path}: file name must be a province adcode such as 320000.json")
        document = load_json_config(path, required=("version", "mode", "rules"))
        rules = [_parse_rule(item, path) for item in document["rules"]]
        if document["mode"] == "prepend":
            self._province_rules[province] = rules + self._rules
        elif document["mode"] == "replace":
            self._province_rules[province] = rules
        else:
            raise ConfigError(f"{path}: 'mode' must be 'prepend' or 'replace'")
        self.override_versions[province] = document["version"]

    def rules_for(self, province_code: Optional[str]) -> List[RoutingRule]:
        """The ordered rules in force in a province (the national ones when it has no override)."""
        return self._province_rules.get(province_code or "", self._rules)

    def route(self, types: List[str], text: str, region: RegionResolution) -> Routing:
        """The lead department for a complaint.

        Args:
            types: pollution types (``envleads.records.POLLUTION_LABELS``), main concern first.
            text: complaint text (title included if wanted); normalised here.
            region: the resolved region; its province picks the rules, its level the department's.
        """
        normalised = _normalise(text or "")
        province_code = region.adcode[:2] + "0000" if region.adcode else None
        level = self._levels.get(region.level or "none", self._levels["none"])
        for rule in self.rules_for(province_code):
            if rule.matches(types, normalised):
                return Routing(rule.department, level, rule.rule_id)
        return Routing(self._default.department, level, self._default.rule_id)
