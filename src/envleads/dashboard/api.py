"""What the dashboard shows, as JSON-ready dicts built from leads (pure functions, no HTTP).

Every lead goes through :func:`envleads.feed.lead_to_feed_dict` or :func:`lead_row`, which never
carry ``reporter_keys``: the page has no way to show an identity or a pseudonym. Filters and order
are the feed's (:mod:`envleads.feed`), so the page, ``tail`` and ``export`` agree on what rank 3 is;
the page's filter is matched by :func:`lead_matcher`, which decides as ``feed.matches`` does but
through sets, because its values come from any web client (tested to agree).

Counts over time count new leads by the event time of their first report (China Standard Time): by
day when the leads span at most 62 days, by week (from Monday) up to two years, else by month. A
lead counts once, under its main pollution type (the first of ``pollution_types``) and its province
(its city or county when every lead shown is in one province or city), so the stacks add up to the
number of leads.
"""
from __future__ import annotations

import functools
from collections import Counter, OrderedDict
from datetime import date, datetime, timedelta
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from envleads.feed import (
    CHINA_TZ, LeadFilter, format_reason, format_time_ms, is_overdue, lead_location, lead_to_feed_dict, place_name,
    rank_leads,
)

_REGION_LEVELS = ("province", "city", "county")
from envleads.records import POLLUTION_LABELS, Lead
from envleads.scoring import TIER_ORDER

DEFAULT_ROW_LIMIT = 200
MAX_REGION_SERIES = 6
UNRESOLVED = "未定位"
OTHER = "其他"
ABOVE_LEVEL = "(上级)"  # resolved only above the grouping level
_DAY_BUCKET_MAX_DAYS = 62
_WEEK_BUCKET_MAX_DAYS = 730


def lead_row(lead: Lead, rank: int, now_ms: int) -> Dict:
    """A lead as a row of the ranked list (what the list shows, nothing more)."""
    region = lead.region or {}
    return {
        "rank": rank,
        "lead_id": lead.lead_id,
        "tier": lead.tier,
        "score": lead.score,
        "pollution_types": list(lead.pollution_types),
        "place": place_name(lead.region),
        "province": region.get("province"),
        "adcode": region.get("adcode"),
        "department": lead.department,
        "report_count": lead.report_count,
        "overdue": is_overdue(lead, now_ms),
        "deadline": format_time_ms(lead.deadline_ms),
        "last_seen": format_time_ms(lead.last_seen_ms),
        "campaigns": list(lead.campaigns),
        "top_reasons": [format_reason(reason) for reason in lead.reasons[:3]],
    }


def lead_detail(lead: Lead, now_ms: int, campaign_names: Dict[str, str], table=None) -> Dict:
    """Everything the detail panel shows: the feed fields (masked summary, reasons, department,
    deadline, campaigns, complaint ids) plus readable times, place and map location."""
    detail = lead_to_feed_dict(lead, rank=0, now_ms=now_ms)
    del detail["rank"]  # a rank depends on the list's filters; the page keeps the list's rank
    location = lead_location(lead.region, table)
    detail.update(
        place=place_name(lead.region),
        first_seen=format_time_ms(lead.first_seen_ms),
        last_seen=format_time_ms(lead.last_seen_ms),
        deadline=format_time_ms(lead.deadline_ms),
        campaign_names=[campaign_names.get(c, c) for c in lead.campaigns],
        location=location._asdict() if location else None,
    )
    return detail


def map_points(ranked: Sequence[Lead], now_ms: int, table=None) -> List[Dict]:
    """Leads grouped by the division whose centre they are drawn at (usually the county), with
    counts, the most urgent tier and how many are overdue; best group first."""
    if table is None:
        from envleads.divisions import load_divisions

        table = load_divisions()
    groups: "OrderedDict[str, Dict]" = OrderedDict()
    for lead in ranked:  # ranked: the first lead of a group is its best
        location = lead_location(lead.region, table)
        if location is None:
            continue
        group = groups.get(location.adcode)
        if group is None:
            division = table.get(location.adcode)
            group = groups[location.adcode] = {
                "adcode": location.adcode, "level": location.level,
                "name": place_name(table.region_record(location.adcode)) if division else location.adcode,
                "lon": round(location.longitude, 4), "lat": round(location.latitude, 4),
                "count": 0, "overdue": 0, "tier": lead.tier, "top_lead_id": lead.lead_id,
            }
        group["count"] += 1
        group["overdue"] += is_overdue(lead, now_ms)
    return list(groups.values())


def _bucket_function(span_days: float) -> Callable[[date], date]:
    if span_days <= _DAY_BUCKET_MAX_DAYS:
        return lambda day: day
    if span_days <= _WEEK_BUCKET_MAX_DAYS:
        return lambda day: day - timedelta(days=day.weekday())
    return lambda day: day.replace(day=1)


def _bucket_name(span_days: float) -> str:
    if span_days <= _DAY_BUCKET_MAX_DAYS:
        return "day"
    return "week" if span_days <= _WEEK_BUCKET_MAX_DAYS else "month"


def _next_bucket(start: date, bucket: str) -> date:
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def counts_over_time(leads: Sequence[Lead], group_of: Callable[[Lead], str],
                     order: Optional[Sequence[str]] = None, max_series: Optional[int] = None) -> Dict:
    """New leads per time bucket (by first report), one series per group.

    Args:
        leads: the leads to count.
        group_of: a lead's group name (its primary type, its province ...).
        order: series order to use where present; else the largest series first.
        max_series: keep this many groups (largest first) and fold the rest into ``其他``.

    Returns:
        ``{"bucket": "day"|"week"|"month", "buckets": ["2025-01-06", ...],
        "series": [{"name": ..., "counts": [...]}, ...]}`` with no gaps between buckets.
    """
    if not leads:
        return {"bucket": "day", "buckets": [], "series": []}
    days = [datetime.fromtimestamp(lead.first_seen_ms / 1000, CHINA_TZ).date() for lead in leads]
    span_days = (max(days) - min(days)).days
    bucket_of, bucket = _bucket_function(span_days), _bucket_name(span_days)
    groups = [group_of(lead) for lead in leads]
    totals = Counter(groups)
    if order is not None:
        names = [name for name in order if name in totals] + sorted(n for n in totals if n not in order)
    else:
        names = [name for name, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]
    if max_series is not None and len(names) > max_series:
        kept = [n for n in names if n not in (OTHER, UNRESOLVED)][:max_series - 1]
        folded = {n: (n if n in kept or n == UNRESOLVED else OTHER) for n in names}
        groups = [folded[g] for g in groups]
        names = kept + [n for n in (OTHER, UNRESOLVED) if n in set(groups)]
    buckets: List[date] = []
    cursor, last = bucket_of(min(days)), bucket_of(max(days))
    while cursor <= last:
        buckets.append(cursor)
        cursor = _next_bucket(cursor, bucket)
    position = {b: i for i, b in enumerate(buckets)}
    counts = {name: [0] * len(buckets) for name in names}
    for day, group in zip(days, groups):
        counts[group][position[bucket_of(day)]] += 1
    return {"bucket": bucket, "buckets": [b.isoformat() for b in buckets],
            "series": [{"name": name, "counts": counts[name]} for name in names]}


def primary_type(lead: Lead) -> str:
    return lead.pollution_types[0] if lead.pollution_types else "other"


def region_grouping(leads: Sequence[Lead]) -> Callable[[Lead], str]:
    """Groups by province; by city when all resolved leads are in one province, by county when
    all are in one city (a region filter narrows the chart to the next level down)."""
    regions = [lead.region for lead in leads if lead.region]
    provinces = {r.get("province") for r in regions}
    cities = {r.get("city") for r in regions}
    if len(provinces) == 1 and len(cities) == 1 and None not in cities:
        levels = ("county",)
    elif len(provinces) == 1:
        levels = ("city", "county")  # a county-level city directly under the province has no city
    else:
        levels = ("province",)

    def group_of(lead: Lead) -> str:
        if not lead.region:
            return UNRESOLVED
        # A lead resolved only above the grouping level (the city itself) is shown as such.
        return next((lead.region[level] for level in levels if lead.region.get(level)), ABOVE_LEVEL)

    return group_of


def lead_matcher(lead_filter: LeadFilter, now_ms: int) -> Callable[[Lead], bool]:
    """``lambda lead: feed.matches(lead, lead_filter, now_ms)``, at a cost per lead that does not
    grow with the number of filter values (the dashboard's filters come from any web client).

    The values go into sets: an adcode query matches when one of the lead's adcode prefixes (of the
    queries' lengths) is in the set; a campaign query when the campaign or one of its dotted prefixes
    is; a name query (a substring of the province, city or county) is looked up among the name's
    substrings of the queries' lengths, once per distinct name.
    """
    codes = frozenset(q for q in lead_filter.regions if q.isdigit())
    names = frozenset(q for q in lead_filter.regions if not q.isdigit())
    code_lengths = sorted({len(q) for q in codes})
    name_lengths = sorted({len(q) for q in names})
    types = frozenset(lead_filter.types)
    campaigns = frozenset(lead_filter.campaigns)
    name_hits: Dict[str, bool] = {}

    def name_matches(name: str) -> bool:
        hit = name_hits.get(name)
        if hit is None:
            hit = name_hits[name] = any(name[i:i + n] in names for n in name_lengths
                                        for i in range(len(name) - n + 1))
        return hit

    def region_matches(region: Optional[dict]) -> bool:
        if not region:
            return False
        if codes:
            adcode = region.get("adcode") or ""
            if any(adcode[:n] in codes for n in code_lengths if n <= len(adcode)):
                return True
        return bool(names) and any(name_matches(region.get(level) or "") for level in _REGION_LEVELS)

    def campaign_matches(campaign: str) -> bool:
        if campaign in campaigns:
            return True
        dot = campaign.find(".")
        while dot >= 0:
            if campaign[:dot] in campaigns:
                return True
            dot = campaign.find(".", dot + 1)
        return False

    def matches(lead: Lead) -> bool:
        if lead_filter.regions and not region_matches(lead.region):
            return False
        if types and types.isdisjoint(lead.pollution_types):
            return False
        if lead_filter.min_score is not None and lead.score < lead_filter.min_score:
            return False
        if campaigns and not any(campaign_matches(c) for c in lead.campaigns):
            return False
        if lead_filter.overdue_only and not is_overdue(lead, now_ms):
            return False
        return True

    return matches


def leads_payload(leads: Iterable[Lead], lead_filter: LeadFilter, now_ms: int,
                  limit: int = DEFAULT_ROW_LIMIT, table=None) -> Dict:
    """The page's main payload: ranked rows (the first ``limit``), counts, map points and charts,
    all over the leads passing ``lead_filter`` (matched by :func:`lead_matcher`, ordered by the feed)."""
    leads = list(leads)
    ranked = rank_leads(filter(lead_matcher(lead_filter, now_ms), leads), now_ms)
    return {
        "total": len(leads),
        "matched": len(ranked),
        "overdue": sum(is_overdue(lead, now_ms) for lead in ranked),
        "by_tier": {tier: sum(lead.tier == tier for lead in ranked) for tier in TIER_ORDER},
        "rows": [lead_row(lead, rank, now_ms) for rank, lead in enumerate(ranked[:limit], start=1)],
        "points": map_points(ranked, now_ms, table),
        "by_type": counts_over_time(ranked, primary_type, order=POLLUTION_LABELS),
        "by_region": counts_over_time(ranked, region_grouping(ranked), max_series=MAX_REGION_SERIES),
        "now": format_time_ms(now_ms),
    }


@functools.lru_cache(maxsize=1)
def basemap() -> Dict:
    """Background for the map: every county's centre (drawn as faint dots, they trace China's
    settled land without any map tiles) and each province's short name at its centre."""
    from envleads.divisions import COUNTY, PROVINCE, load_divisions
    from envleads.generator import short_name

    table = load_divisions()
    counties = [[round(d.longitude, 2), round(d.latitude, 2)] for d in table
                if d.level == COUNTY and d.longitude is not None and d.latitude is not None]
    provinces = [{"name": short_name(d.name, PROVINCE), "adcode": d.adcode,
                  "lon": round(d.longitude, 2), "lat": round(d.latitude, 2)}
                 for d in table if d.level == PROVINCE and d.longitude is not None and d.latitude is not None]
    return {"counties": counties, "provinces": provinces, "table_version": table.version}


@functools.lru_cache(maxsize=1)
def campaign_names() -> Dict[str, str]:
    """Campaign id -> its Chinese name, from the packaged campaigns file."""
    from envleads.config import data_path, load_json_config

    doc = load_json_config(data_path("campaigns.json"), required=("version", "campaigns"))
    return {c["id"]: c["name"] for c in doc["campaigns"]}


def meta_payload() -> Dict:
    """What the page needs once: filter choices, campaign names and the basemap."""
    return {"types": list(POLLUTION_LABELS), "tiers": list(TIER_ORDER), "campaigns": campaign_names(),
            "basemap": basemap()}
