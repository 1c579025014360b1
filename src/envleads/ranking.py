"""Ranked output for an inspection campaign: the top N leads under optional quotas (pure functions).

An inspection campaign takes a fixed number of leads (``top``) from a region, usually for one
campaign (``envleads export --region ... --campaign ... --top N``). Taking the first N of the feed
order alone sends every team to the busiest county, because report volume follows population and
awareness as much as harm. Two optional quotas spread the list:

* ``per_county`` (K): at most K leads from one area;
* ``min_share`` (s): at least ``ceil(s * N)`` of the N leads come from *quiet* areas, those whose
  report volume (the sum of ``report_count`` over the candidate leads of the area) is at or below
  the ``quiet_quantile`` of the areas' volumes (``data/ranking.json``; 0.25 = the quietest quarter),
  when enough such leads exist.

An *area* is the county of the lead's region; a lead resolved only to a city or a province counts
under that city's or province's code, and a lead with no region under ``"unknown"`` (quotas apply to
these areas like to counties). The candidates are the leads passing the export filters, in feed
order (``envleads.feed``: tier, overdue first within a tier, score, recency, key).

Selection is greedy in feed order and deterministic: first the best quiet-area leads up to the
reserved number, then the best remaining leads until N, both never taking more than K from one
area; the result is returned in feed order. Without quotas it is exactly the first N of the feed.
With ``group_by`` the same selection runs per province or per city (the top N of each region).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

from envleads.config import ConfigError, data_path, load_json_config
from envleads.divisions import MUNICIPALITY_CODES
from envleads.records import Lead

CONFIG_FILE = "ranking.json"
UNKNOWN_AREA = "unknown"
GROUP_BY = ("all", "province", "city")


class RankingConfig(NamedTuple):
    """Typed view of ``data/ranking.json``."""

    version: str
    quiet_quantile: float


class Quotas(NamedTuple):
    """How many leads to take and the optional quotas (see the module docstring)."""

    top: int
    per_county: Optional[int] = None
    min_share: float = 0.0
    group_by: str = "all"


@functools.lru_cache(maxsize=4)
def load_ranking_config(path: Optional[str] = None) -> RankingConfig:
    """Loads and validates the ranking configuration (packaged file by default)."""
    path = path or data_path(CONFIG_FILE)
    doc = load_json_config(path, required=("version", "quiet_quantile"))
    quantile = float(doc["quiet_quantile"])
    if not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"{path}: quiet_quantile must be in [0, 1], got {quantile}")
    return RankingConfig(str(doc["version"]), quantile)


def validate_quotas(quotas: Quotas) -> Quotas:
    """Rejects quotas that cannot mean anything, with a message fit for the command line."""
    if quotas.top < 1:
        raise ValueError(f"--top must be at least 1, got {quotas.top}")
    if quotas.per_county is not None and quotas.per_county < 1:
        raise ValueError(f"--per-county must be at least 1, got {quotas.per_county}")
    if not 0.0 <= quotas.min_share <= 1.0:
        raise ValueError(f"--min-share must be in [0, 1], got {quotas.min_share}")
    if quotas.group_by not in GROUP_BY:
        raise ValueError(f"--top-per must be one of {', '.join(GROUP_BY)}, got {quotas.group_by!r}")
    return quotas


def area_of(lead: Lead) -> str:
    """The area a lead counts under: its region's code (a county's, or a city's or province's when
    the region is no deeper), or ``"unknown"``."""
    region = lead.region or {}
    return region.get("adcode") or UNKNOWN_AREA


def area_volumes(leads: Iterable[Lead]) -> Dict[str, int]:
    """Reports per area: the sum of ``report_count`` over the leads of each area."""
    volumes: Dict[str, int] = {}
    for lead in leads:
        area = area_of(lead)
        volumes[area] = volumes.get(area, 0) + max(1, int(lead.report_count))
    return volumes


def quiet_areas(volumes: Dict[str, int], quantile: float) -> frozenset:
    """Areas whose volume is at or below the ``quantile`` of all areas' volumes (lower value)."""
    if not volumes:
        return frozenset()
    ordered = sorted(volumes.values())
    threshold = ordered[int(math.floor(quantile * (len(ordered) - 1)))]
    return frozenset(area for area, volume in volumes.items() if volume <= threshold)


def select_top(ranked: Sequence[Lead], quotas: Quotas, config: Optional[RankingConfig] = None) -> List[Lead]:
    """The top ``quotas.top`` of ``ranked`` (already in feed order) under the quotas, in feed order.

    Args:
        ranked: candidate leads in feed order (``envleads.feed.rank_leads``).
        quotas: ``top``, ``per_county``, ``min_share`` (``group_by`` is ignored here; see
            :func:`select_for_campaign`).
        config: defaults to the packaged ``data/ranking.json``.
    """
    validate_quotas(quotas)
    quiet = quiet_areas(area_volumes(ranked), (config or load_ranking_config()).quiet_quantile)
    cap = quotas.per_county
    taken: Dict[str, int] = {}
    chosen: List[int] = []
    chosen_set = set()

    def take(position: int, lead: Lead) -> bool:
        area = area_of(lead)
        if position in chosen_set or (cap is not None and taken.get(area, 0) >= cap):
            return False
        taken[area] = taken.get(area, 0) + 1
        chosen.append(position)
        chosen_set.add(position)
        return True

    reserved = min(quotas.top, math.ceil(quotas.min_share * quotas.top - 1e-9)) if quotas.min_share else 0
    if reserved:
        got = 0
        for position, lead in enumerate(ranked):
            if got >= reserved:
                break
            if area_of(lead) in quiet and take(position, lead):
                got += 1
    for position, lead in enumerate(ranked):
        if len(chosen) >= quotas.top:
            break
        take(position, lead)
    return [ranked[position] for position in sorted(chosen)]


def _group_key(group_by: str) -> Callable[[Lead], str]:
    def key(lead: Lead) -> str:
        code = area_of(lead)
        if code == UNKNOWN_AREA:
            return UNKNOWN_AREA
        if group_by == "province":
            return code[:2] + "0000"
        return code[:2] + "0000" if code[:2] + "0000" in MUNICIPALITY_CODES else code[:4] + "00"

    return key


def select_for_campaign(ranked: Sequence[Lead], quotas: Quotas,
                        config: Optional[RankingConfig] = None) -> List[Lead]:
    """:func:`select_top` over the whole list, or per province or city (``quotas.group_by``).

    Per region, quiet areas are judged among that region's own areas, and each region gets up to
    ``top`` leads; the union comes back in feed order.
    """
    validate_quotas(quotas)
    config = config or load_ranking_config()
    if quotas.group_by == "all":
        return select_top(ranked, quotas, config=config)
    key = _group_key(quotas.group_by)
    groups: Dict[str, List[Lead]] = {}
    for lead in ranked:
        groups.setdefault(key(lead), []).append(lead)
    keep = set()
    for members in groups.values():
        keep.update(lead.lead_id for lead in select_top(members, quotas, config=config))
    return [lead for lead in ranked if lead.lead_id in keep]
