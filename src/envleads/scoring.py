"""Explainable lead scoring: an additive model whose weights live in ``data/scoring.json``.

Each lead's score is the sum of its reasons' points, and every reason names the weight key that
produced it, so an inspector sees why a lead ranks where it does and a change to the weights file
explains itself. Binary factors (severity, receptors, night time, a named target) are *signals*
found per report and unioned over the matter; counts (repeats, distinct reporters) are log-scaled
and capped so that a flood of reports cannot drown severity.
"""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

from envleads.config import ConfigError, cached_per_config, data_path, load_json_config
from envleads.records import ScoreReason

TIER_ORDER = ("urgent", "high", "normal", "low")
_MS_PER_DAY = 86_400_000


class TermFactor(NamedTuple):
    key: str  # e.g. "severity.covert_discharge"
    points: float
    terms: Tuple[str, ...]


class Campaign(NamedTuple):
    campaign_id: str
    name: str
    types: FrozenSet[str]
    valid_from_ms: int
    valid_until_ms: int
    regions: Tuple[Tuple[str, Optional[str]], ...]  # (province, city or None); empty = nationwide
    requires_factor: Optional[str]


class ScoringWeights(NamedTuple):
    version: str
    severity: Tuple[TermFactor, ...]
    receptors: Tuple[TermFactor, ...]
    receptor_cap: float
    night_points: float
    night_hours: Tuple[int, int]
    night_terms: Tuple[str, ...]
    tz_offset_hours: int
    repeats_per_doubling: float
    repeats_cap: float
    reporters_per_doubling: float
    reporters_cap: float
    concentrated_points: float
    concentrated_min_reports: int
    campaign_points: float
    recency_points: float
    recency_half_life_days: float
    named_target_points: float
    resolved_county_points: float
    tiers: Dict[str, float]
    overrides: Tuple[dict, ...]
    campaigns: Tuple[Campaign, ...]
    campaigns_version: str


def _date_ms(value: str) -> int:
    return int(datetime.combine(date.fromisoformat(value), datetime.min.time(), timezone.utc).timestamp() * 1000)


def _terms(terms: Iterable[str], where: str) -> Tuple[str, ...]:
    """A factor's terms; an empty term would match every report, so it is refused by name (an
    empty list is allowed: night time, say, may be told by the hour alone)."""
    terms = tuple(terms)
    if not all(isinstance(term, str) and term for term in terms):
        raise ConfigError(f"{where}: terms must be non-empty strings")
    return terms


def _term_factors(prefix: str, section: dict) -> Tuple[TermFactor, ...]:
    return tuple(TermFactor(f"{prefix}.{name}", float(spec["points"]), _terms(spec["terms"], f"{prefix}.{name}"))
                 for name, spec in section.items() if isinstance(spec, dict))


def load_scoring_weights(path: Optional[str] = None, campaigns_path: Optional[str] = None) -> ScoringWeights:
    """Reads and checks the weights and campaign files once; a missing key fails here, by name."""
    path = path or data_path("scoring.json")
    doc = load_json_config(path, required=("version", "severity", "receptors", "night_time", "repeats",
                                           "distinct_reporters", "concentrated_repeat", "campaign",
                                           "recency", "verifiability", "tiers", "overrides"))
    campaigns_doc = load_json_config(campaigns_path or data_path("campaigns.json"), required=("version", "campaigns"))
    campaigns = tuple(
        Campaign(c["id"], c["name"], frozenset(c["types"]), _date_ms(c["valid_from"]), _date_ms(c["valid_until"]),
                 tuple((r["province"], r.get("city")) for r in c["regions"]), c.get("requires_factor"))
        for c in campaigns_doc["campaigns"])
    night = doc["night_time"]
    return ScoringWeights(
        version=doc["version"],
        severity=_term_factors("severity", doc["severity"]),
        receptors=_term_factors("receptor", doc["receptors"]),
        receptor_cap=float(doc["receptors"]["cap"]),
        night_points=float(night["points"]),
        night_hours=(int(night["start_hour"]), int(night["end_hour"])),
        night_terms=_terms(night["terms"], "night_time"),
        tz_offset_hours=int(night["timezone_offset_hours"]),
        repeats_per_doubling=float(doc["repeats"]["points_per_doubling"]),
        repeats_cap=float(doc["repeats"]["cap"]),
        reporters_per_doubling=float(doc["distinct_reporters"]["points_per_doubling"]),
        reporters_cap=float(doc["distinct_reporters"]["cap"]),
        concentrated_points=float(doc["concentrated_repeat"]["points"]),
        concentrated_min_reports=int(doc["concentrated_repeat"]["min_reports"]),
        campaign_points=float(doc["campaign"]["points"]),
        recency_points=float(doc["recency"]["points"]),
        recency_half_life_days=float(doc["recency"]["half_life_days"]),
        named_target_points=float(doc["verifiability"]["named_target"]["points"]),
        resolved_county_points=float(doc["verifiability"]["resolved_county"]["points"]),
        tiers={name: float(value) for name, value in doc["tiers"].items()},
        overrides=tuple(doc["overrides"]),
        campaigns=campaigns,
        campaigns_version=campaigns_doc["version"],
    )


def _is_night(event_time_ms: int, weights: ScoringWeights) -> bool:
    local = datetime.fromtimestamp(event_time_ms / 1000, timezone(timedelta(hours=weights.tz_offset_hours)))
    start, end = weights.night_hours
    return local.hour >= start or local.hour < end


def complaint_signals(text: str, event_time_ms: int, has_named_target: bool,
                      weights: ScoringWeights) -> Set[str]:
    """Binary factors one report shows: severity and receptor terms, night time, a named target.

    Signals are keys of the weights file (``severity.covert_discharge``); the matter's signals are
    the union over its reports, so a lead rebuilt from its stored reasons keeps them.
    """
    signals = set()
    automaton = _term_automaton(weights)
    if automaton is not None:  # None: no terms configured
        for _, keys in automaton.iter(text):
            signals |= keys
    if _is_night(event_time_ms, weights):
        signals.add("night_time")
    if has_named_target:
        signals.add("verifiability.named_target")
    return signals


@cached_per_config
def _term_automaton(weights: ScoringWeights) -> Optional["ahocorasick.Automaton"]:
    """Every signal term in one Aho-Corasick automaton (term -> the signals it shows): one scan of
    a report instead of a substring search per term, which was a twentieth of the stream's keyed
    stages."""
    import ahocorasick

    signals_of: Dict[str, Set[str]] = {}
    for factor in weights.severity + weights.receptors:
        for term in factor.terms:
            signals_of.setdefault(term, set()).add(factor.key)
    for term in weights.night_terms:
        signals_of.setdefault(term, set()).add("night_time")
    if not signals_of:
        return None
    automaton = ahocorasick.Automaton()
    for term, keys in signals_of.items():
        automaton.add_word(term, frozenset(keys))
    automaton.make_automaton()
    return automaton


def matching_campaigns(types: Iterable[str], region: Optional[dict], first_seen_ms: int,
                       signals: Set[str], weights: ScoringWeights) -> List[str]:
    """Ids of the campaigns a matter falls under (type, key region, date, required factor)."""
    types = set(types)
    matched = []
    for campaign in weights.campaigns:
        if not types & campaign.types or not campaign.valid_from_ms <= first_seen_ms < campaign.valid_until_ms:
            continue
        if campaign.requires_factor and campaign.requires_factor not in signals:
            continue
        if campaign.regions:
            if not region:
                continue
            # a (province, None) entry covers the whole province
            province = region.get("province")
            if (province, None) not in campaign.regions and (province, region.get("city")) not in campaign.regions:
                continue
        matched.append(campaign.campaign_id)
    return matched


def _log_points(count: int, per_doubling: float, cap: float) -> float:
    return min(cap, per_doubling * math.log2(count)) if count > 1 else 0.0


def score_matter(signals: Set[str], types: Sequence[str], region: Optional[dict], report_count: int,
                 distinct_reporters: int, first_seen_ms: int, last_seen_ms: int, as_of_ms: int,
                 weights: ScoringWeights) -> Tuple[float, str, List[ScoreReason], List[str]]:
    """Scores one matter. Returns (score, tier, reasons largest first, campaign ids).

    ``as_of_ms`` is the event time the ranking is made at (the newest event seen), not the wall
    clock, so that replaying the same events gives the same scores.
    """
    reasons: List[ScoreReason] = []
    for factor in weights.severity:
        if factor.key in signals:
            reasons.append(ScoreReason(factor.key, factor.points, "behaviour named in a report"))
    receptor_points = 0.0
    for factor in weights.receptors:
        if factor.key in signals and receptor_points < weights.receptor_cap:
            points = min(factor.points, weights.receptor_cap - receptor_points)
            receptor_points += points
            reasons.append(ScoreReason(factor.key, points, "sensitive receptor named"))
    if "night_time" in signals:
        reasons.append(ScoreReason("night_time", weights.night_points, "reported at or about night time (22:00-06:00)"))
    repeat_points = _log_points(report_count, weights.repeats_per_doubling, weights.repeats_cap)
    if repeat_points:
        reasons.append(ScoreReason("repeats", round(repeat_points, 2), f"{report_count} reports"))
    reporter_points = _log_points(distinct_reporters, weights.reporters_per_doubling, weights.reporters_cap)
    if reporter_points:
        reasons.append(ScoreReason("distinct_reporters", round(reporter_points, 2), f"{distinct_reporters} reporters"))
    if report_count >= weights.concentrated_min_reports:
        reasons.append(ScoreReason("concentrated_repeat", weights.concentrated_points,
                                   f"{report_count} reports >= {weights.concentrated_min_reports}: supervision"))
    campaigns = matching_campaigns(types, region, first_seen_ms, signals, weights)
    if campaigns:
        reasons.append(ScoreReason("campaign", weights.campaign_points, ",".join(campaigns)))
    age_days = max(0.0, (as_of_ms - last_seen_ms) / _MS_PER_DAY)
    recency = weights.recency_points * 0.5 ** (age_days / weights.recency_half_life_days)
    if recency >= 0.01:
        reasons.append(ScoreReason("recency", round(recency, 2), f"last report {age_days:.1f} days before the newest event"))
    if "verifiability.named_target" in signals:
        reasons.append(ScoreReason("verifiability.named_target", weights.named_target_points, "a company, site or place is named"))
    if region and region.get("level") == "county":
        reasons.append(ScoreReason("verifiability.resolved_county", weights.resolved_county_points, f"county {region.get('adcode')}"))
    reasons.sort(key=lambda reason: -reason.points)
    score = round(sum(reason.points for reason in reasons), 2)
    tier = _tier(score, signals | {f"type.{t}" for t in types}, weights, reasons)
    return score, tier, reasons, campaigns


def _tier(score: float, facts: Set[str], weights: ScoringWeights, reasons: List[ScoreReason]) -> str:
    for override in weights.overrides:
        if all(key in facts for key in override["all_of"]) and (
                not override["any_of"] or any(key in facts for key in override["any_of"])):
            reasons.insert(0, ScoreReason(f"override.{override['id']}", 0.0, override["why"]))
            return override["tier"]
    for tier in TIER_ORDER[:-1]:
        if score >= weights.tiers[tier]:
            return tier
    return TIER_ORDER[-1]


def signals_from_reasons(reasons: Iterable[ScoreReason]) -> Set[str]:
    """The binary signals a stored lead already had (to merge with a new report's)."""
    binary_prefixes = ("severity.", "receptor.", "verifiability.named_target", "night_time")
    return {reason.factor for reason in reasons if reason.factor.startswith(binary_prefixes)}


def rank_key(tier: str, score: float, last_seen_ms: int) -> Tuple[int, float, int]:
    """Sort key: tier first, then score, then the most recent."""
    return (TIER_ORDER.index(tier), -score, -last_seen_ms)
