"""Lead scoring: each factor contributes what the weights file says, with its reason."""
from datetime import datetime, timedelta, timezone

import pytest

from envleads.scoring import (complaint_signals, load_scoring_weights, matching_campaigns, rank_key,
                              score_matter)

CST = timezone(timedelta(hours=8))


def ms(*args):
    return int(datetime(*args, tzinfo=CST).timestamp() * 1000)


@pytest.fixture(scope="module")
def weights():
    return load_scoring_weights()


def test_signals_find_severity_receptors_and_night(weights):
    signals = complaint_signals("化工厂半夜通过暗管偷排废水，旁边就是小学", ms(2026, 6, 1, 23, 40), True, weights)
    assert {"severity.covert_discharge", "receptor.school", "night_time", "verifiability.named_target"} <= signals
    daytime = complaint_signals("饭店油烟很大", ms(2026, 6, 1, 12, 0), False, weights)
    assert daytime == set()


def test_score_is_the_sum_of_reasons_and_reasons_name_weight_keys(weights):
    signals = {"severity.covert_discharge", "receptor.school"}
    score, tier, reasons, _ = score_matter(signals, ["water"], None, 1, 1, ms(2026, 6, 1), ms(2026, 6, 1),
                                           ms(2026, 6, 1), weights)
    factors = {r.factor: r.points for r in reasons}
    assert factors["severity.covert_discharge"] == 25
    assert factors["receptor.school"] == 10
    assert factors["recency"] == 6
    assert score == pytest.approx(sum(r.points for r in reasons))
    assert score == 41  # 25 + 10 + 6, over the "high" threshold of 40
    assert tier == "high"


def test_repeats_are_log_scaled_capped_and_three_trigger_concentration(weights):
    _, _, two, _ = score_matter(set(), ["air"], None, 2, 2, 0, 0, 0, weights)
    _, _, many, _ = score_matter(set(), ["air"], None, 64, 40, 0, 0, 0, weights)
    two = {r.factor: r.points for r in two}
    many = {r.factor: r.points for r in many}
    assert two["repeats"] == 6 and "concentrated_repeat" not in two
    assert many["repeats"] == 18 and many["distinct_reporters"] == 12 and many["concentrated_repeat"] == 10


def test_drinking_water_discharge_overrides_to_urgent(weights):
    signals = {"severity.drinking_water_source", "severity.covert_discharge"}
    _, tier, reasons, _ = score_matter(signals, ["water"], None, 1, 1, 0, 0, 0, weights)
    assert tier == "urgent"
    assert reasons[0].factor == "override.drinking_water_discharge"


def test_blue_sky_key_region_matches_air_only(weights):
    beijing = {"province": "北京市", "city": "北京市", "county": "朝阳区", "adcode": "110105", "level": "county"}
    guangzhou = {"province": "广东省", "city": "广州市", "county": None, "adcode": "440100", "level": "city"}
    assert matching_campaigns(["air"], beijing, ms(2026, 3, 1), set(), weights) == ["blue_sky.jing_jin_ji"]
    assert matching_campaigns(["noise"], beijing, ms(2026, 3, 1), set(), weights) == []
    assert matching_campaigns(["air"], guangzhou, ms(2026, 3, 1), set(), weights) == []
    assert matching_campaigns(["air"], beijing, ms(2022, 3, 1), set(), weights) == []


def test_a_key_region_listed_by_city_takes_that_city_only(weights):
    in_list = {"province": "河北省", "city": "石家庄市", "county": None, "adcode": "130100", "level": "city"}
    not_listed = {"province": "河北省", "city": "雄安新区", "county": None, "adcode": "133100", "level": "city"}
    province_only = {"province": "河北省", "city": None, "county": None, "adcode": "130000", "level": "province"}
    assert matching_campaigns(["air"], in_list, ms(2026, 3, 1), set(), weights) == ["blue_sky.jing_jin_ji"]
    assert matching_campaigns(["air"], not_listed, ms(2026, 3, 1), set(), weights) == []
    assert matching_campaigns(["air"], province_only, ms(2026, 3, 1), set(), weights) == []


def test_recency_decays_with_half_life(weights):
    _, _, reasons, _ = score_matter(set(), ["air"], None, 1, 1, 0, 0, 14 * 86_400_000, weights)
    assert {r.factor: r.points for r in reasons}["recency"] == 3


def test_rank_key_orders_tier_then_score():
    ordered = sorted([("normal", 30.0, 5), ("urgent", 10.0, 1), ("normal", 35.0, 1)], key=lambda t: rank_key(*t))
    assert ordered == [("urgent", 10.0, 1), ("normal", 35.0, 1), ("normal", 30.0, 5)]


def _signals_by_substring(text, event_time_ms, named, weights):
    """The definition: a factor shows when any of its terms is a substring of the report."""
    from envleads.scoring import _is_night

    found = {f.key for f in weights.severity + weights.receptors if any(term in text for term in f.terms)}
    if _is_night(event_time_ms, weights) or any(term in text for term in weights.night_terms):
        found.add("night_time")
    if named:
        found.add("verifiability.named_target")
    return found


def test_signals_of_one_scan_equal_a_substring_search_per_term(weights):
    """Terms overlapping, nested (one inside another) and shared between factors, over random
    reports made of terms and filler."""
    import random

    from envleads.scoring import TermFactor

    nested = weights._replace(
        severity=weights.severity + (TermFactor("severity.nested", 1.0, ("偷排废", "排废水", "废")),),
        receptors=weights.receptors + (TermFactor("receptor.shared", 1.0, (weights.receptors[0].terms[0],)),))
    terms = sorted({t for f in nested.severity + nested.receptors for t in f.terms} | set(nested.night_terms))
    rng = random.Random(5)
    for _ in range(400):
        text = "".join(rng.choice(terms + list("的了水厂区夜，。")) for _ in range(rng.randrange(0, 12)))
        at = ms(2026, 6, 1, rng.randrange(24), 0)
        for w in (weights, nested):
            assert complaint_signals(text, at, False, w) == _signals_by_substring(text, at, False, w), text


def test_an_empty_signal_term_is_refused_at_load(tmp_path):
    """It would match every report: the weights file is refused, naming the factor."""
    import json

    from envleads.config import ConfigError, data_path

    document = json.loads(open(data_path("scoring.json"), encoding="utf-8").read())
    name = next(key for key, spec in document["severity"].items() if isinstance(spec, dict))
    document["severity"][name]["terms"].append("")
    bad = tmp_path / "scoring.json"
    bad.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"severity.{name}"):
        load_scoring_weights(str(bad))
    # no terms at all is a choice, not a mistake: night time told by the hour alone
    document["severity"][name]["terms"].pop()
    document["night_time"]["terms"] = []
    bad.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    assert load_scoring_weights(str(bad)).night_terms == ()


def test_without_any_term_signals_come_from_the_hour_and_the_names(weights):
    bare = weights._replace(severity=(), receptors=(), night_terms=())
    night = next(ms(2026, 6, 1, hour, 0) for hour in range(24) if complaint_signals("", ms(2026, 6, 1, hour, 0), False, weights))
    day = next(ms(2026, 6, 1, hour, 0) for hour in range(24) if not complaint_signals("", ms(2026, 6, 1, hour, 0), False, weights))
    text = " ".join(t for f in weights.severity for t in f.terms)
    assert complaint_signals(text, night, True, bare) == {"night_time", "verifiability.named_target"}
    assert complaint_signals(text, day, False, bare) == set()
