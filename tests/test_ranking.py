"""Campaign ranking: the top N leads under quotas (pure functions), and ``envleads export --top``."""
import argparse
import json
from datetime import datetime, timedelta, timezone

import pytest

from envleads import feed
from envleads.cli import feed as feed_cli
from envleads.leads import lead_to_avro_dict
from envleads.ranking import (Quotas, RankingConfig, area_of, area_volumes, load_ranking_config, quiet_areas,
                              select_for_campaign, select_top, validate_quotas)
from envleads.records import Lead, ScoreReason

CST = timezone(timedelta(hours=8))
NOW = int(datetime(2025, 3, 1, 12, 0, tzinfo=CST).timestamp() * 1000)
CONFIG = RankingConfig("test", 0.25)


def region(adcode, level="county"):
    return {"province": "某省", "city": "某市", "county": "某县", "adcode": adcode, "level": level}


# Three counties of one city (3201xx), one county of another city (3202xx), one province-only lead.
GULOU, QINHUAI, LISHUI, WUXI_LIANGXI, JIANGSU = "320106", "320104", "320117", "320213", "320000"


def lead(name, score, adcode, reports=1, tier="normal"):
    return Lead(
        lead_id=f"lead-{name}", cluster_id=name, first_complaint_id=f"{name}-1",
        complaint_ids=[f"{name}-{i}" for i in range(reports)], report_count=reports, reporter_keys=[],
        distinct_reporters=1, first_seen_ms=NOW - 86_400_000, last_seen_ms=NOW - 3_600_000,
        pollution_types=["air"], region=None if adcode is None else region(adcode, "province" if adcode.endswith("0000") else "county"),
        department=None, routing_rule=None, score=float(score), tier=tier,
        reasons=[ScoreReason("recency", 1.0, "fresh")], campaigns=["blue_sky.yangtze_delta"], summary="",
        matter_signature=[], matter_entities=[], updated_at_ms=NOW, channel="phone", deadline_ms=NOW + 86_400_000)


# Feed order is score order here (one tier, nothing overdue): g1 > g2 > g3 > q1 > g4 > l1 > w1 > j1
LEADS = [lead("g1", 90, GULOU, 5), lead("g2", 80, GULOU, 4), lead("g3", 70, GULOU, 3), lead("q1", 60, QINHUAI, 2),
         lead("g4", 50, GULOU, 2), lead("l1", 40, LISHUI, 1), lead("w1", 30, WUXI_LIANGXI, 3), lead("j1", 20, JIANGSU, 1)]


def ids(leads):
    return [x.lead_id[5:] for x in leads]


def ranked():
    return feed.rank_leads(LEADS, NOW)


def test_without_quotas_top_n_is_the_head_of_the_feed():
    assert ids(select_top(ranked(), Quotas(3), config=CONFIG)) == ["g1", "g2", "g3"]
    assert ids(select_top(ranked(), Quotas(100), config=CONFIG)) == ids(ranked())


def test_at_most_k_per_county():
    assert ids(select_top(ranked(), Quotas(4, per_county=2), config=CONFIG)) == ["g1", "g2", "q1", "l1"]
    assert ids(select_top(ranked(), Quotas(10, per_county=1), config=CONFIG)) == ["g1", "q1", "l1", "w1", "j1"]


def test_areas_are_counties_or_the_deepest_code_known():
    assert area_of(LEADS[0]) == GULOU
    assert area_of(LEADS[-1]) == JIANGSU
    assert area_of(lead("x", 1, None)) == "unknown"


def test_area_volume_sums_report_counts_and_quiet_is_the_lowest_quantile():
    volumes = area_volumes(LEADS)
    assert volumes == {GULOU: 14, QINHUAI: 2, LISHUI: 1, WUXI_LIANGXI: 3, JIANGSU: 1}
    # sorted volumes 1, 1, 2, 3, 14: the 0.25 quantile (lower) is the second value, 1
    assert quiet_areas(volumes, 0.25) == {LISHUI, JIANGSU}
    assert quiet_areas(volumes, 0.5) == {LISHUI, JIANGSU, QINHUAI}
    assert quiet_areas(volumes, 1.0) == set(volumes)
    assert quiet_areas({}, 0.25) == frozenset()


def test_min_share_reserves_places_for_quiet_areas_and_keeps_feed_order():
    # 4 places, share 0.5: two from quiet areas (Lishui, the province-only lead), the rest the best
    got = select_top(ranked(), Quotas(4, min_share=0.5), config=CONFIG)
    assert ids(got) == ["g1", "g2", "l1", "j1"]
    # a share the head of the feed already meets changes nothing
    assert ids(select_top(ranked(), Quotas(3, min_share=0.0), config=CONFIG)) == ["g1", "g2", "g3"]


def test_min_share_rounds_up_and_takes_what_exists():
    # ceil(0.1 * 4) = 1 place reserved
    assert ids(select_top(ranked(), Quotas(4, min_share=0.1), config=CONFIG)) == ["g1", "g2", "g3", "l1"]
    # everything reserved, but only two quiet leads exist: the rest is filled from the feed
    assert ids(select_top(ranked(), Quotas(4, min_share=1.0), config=CONFIG)) == ["g1", "g2", "l1", "j1"]


def test_quotas_combine():
    got = select_top(ranked(), Quotas(4, per_county=1, min_share=0.25), config=CONFIG)
    assert ids(got) == ["g1", "q1", "l1", "w1"]


def test_top_per_city_takes_the_top_n_of_each_city():
    got = select_for_campaign(ranked(), Quotas(1, group_by="city"), config=CONFIG)
    assert ids(got) == ["g1", "w1", "j1"]  # Nanjing, Wuxi, and the province-only lead's own group
    got = select_for_campaign(ranked(), Quotas(2, group_by="province"), config=CONFIG)
    assert ids(got) == ["g1", "g2"]


@pytest.mark.parametrize("quotas", [Quotas(0), Quotas(3, per_county=0), Quotas(3, min_share=1.5),
                                    Quotas(3, group_by="county")])
def test_meaningless_quotas_are_rejected(quotas):
    with pytest.raises(ValueError):
        validate_quotas(quotas)


def test_packaged_config_loads():
    config = load_ranking_config()
    assert config.version and 0.0 <= config.quiet_quantile <= 1.0


# ---- the command line ------------------------------------------------------------------------------

def _run_cli(argv):
    parser = argparse.ArgumentParser(prog="envleads")
    feed_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def leads_file(tmp_path):
    path = tmp_path / "leads.jsonl"
    path.write_text("".join(json.dumps(dict(rank=0, **lead_to_avro_dict(x)), ensure_ascii=False) + "\n"
                            for x in LEADS), encoding="utf-8")
    return path


def test_export_top_with_quotas_writes_ranked_lines(leads_file, tmp_path):
    out = tmp_path / "top.jsonl"
    assert _run_cli(["export", "--input", str(leads_file), "--format", "jsonl", "--output", str(out),
                     "--region", "3201", "--campaign", "blue_sky", "--top", "3", "--per-county", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [r["lead_id"] for r in rows] == ["lead-g1", "lead-g2", "lead-q1"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert all("reporter_keys" not in r for r in rows)


def test_export_without_top_is_unchanged(leads_file, tmp_path):
    out = tmp_path / "all.jsonl"
    assert _run_cli(["export", "--input", str(leads_file), "--format", "jsonl", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == len(LEADS)


def test_quota_flags_need_top(leads_file, tmp_path):
    with pytest.raises(SystemExit, match="need --top"):
        _run_cli(["export", "--input", str(leads_file), "--output", str(tmp_path / "x.csv"), "--per-county", "2"])
    with pytest.raises(SystemExit, match="min-share"):
        _run_cli(["export", "--input", str(leads_file), "--output", str(tmp_path / "x.csv"), "--top", "3",
                  "--min-share", "2"])
