"""Routing rules: lead department per matter, level from the region, province overrides."""
import json

import pytest

from envleads.records import RegionResolution
from envleads.routing import Router, Routing


def region(adcode, level):
    return RegionResolution("省", "市", "县" if level == "county" else None, adcode, level, 0.9, "x", "t")


COUNTY = region("320106", "county")
CITY = region("320100", "city")
NONE = RegionResolution(None, None, None, None, None, 0.0, None, "t")


@pytest.fixture(scope="module")
def router():
    return Router(overrides_dir="/nonexistent")


@pytest.mark.parametrize("types,text,department,rule", [
    (["air"], "小区旁边的建筑工地扬尘很大,没有洒水降尘。", "住房和城乡建设部门", "construction_dust_noise"),
    (["noise"], "工地夜间施工噪音太大,吵得睡不着。", "住房和城乡建设部门", "construction_dust_noise"),
    (["air"], "楼下餐馆的油烟直接排到居民窗户。", "城市管理部门", "catering_fumes"),
    (["air"], "村口每天有人露天焚烧垃圾,黑烟呛人。", "城市管理部门", "open_burning"),
    (["noise"], "晚上广场舞音响声音太大。", "公安机关", "social_life_noise"),
    (["noise"], "楼上装修从早到晚电钻响个不停。", "公安机关", "social_life_noise"),
    (["noise"], "商铺门口的喇叭整天循环叫卖。", "公安机关", "social_life_noise"),
    (["water", "air"], "村边的养猪场粪水直排水沟,臭气熏天。", "农业农村部门", "livestock_farming"),
    (["ecological"], "有人开着采砂船在河道非法采砂。", "水行政主管部门", "river_sand_mining"),
    (["ecological"], "山上有人私挖滥采,无证开采石料。", "自然资源部门", "illegal_mining"),
    (["water"], "化工厂夜里偷排废水,河水发黑。", "生态环境部门", "default_environment"),
])
def test_national_rules(router, types, text, department, rule):
    assert router.route(types, text, COUNTY) == Routing(department, "county", rule)


def test_social_noise_rule_needs_the_noise_type(router):
    # a shop's fumes are not social-life noise even though 商铺 appears
    assert router.route(["air"], "商铺门口烧烤油烟很大。", COUNTY).rule_id == "catering_fumes"


def test_traditional_text_is_normalised(router):
    assert router.route(["air"], "樓下餐館的油煙很大。", COUNTY).department == "城市管理部门"


def test_level_follows_region(router):
    assert router.route(["water"], "偷排废水。", CITY).level == "city"
    assert router.route(["water"], "偷排废水。", NONE).level == "unresolved"


def test_every_rule_cites_a_source(router):
    for rule in router.rules_for(None):
        assert "seeds/001" in rule.source


def _write(folder, name, document):
    path = folder / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def test_province_override_prepend(tmp_path):
    _write(tmp_path, "320000.json", {"version": "t1", "mode": "prepend", "rules": [
        {"id": "js_fumes", "department": "生态环境部门", "all_of": [["油烟"]], "source": "test"}]})
    router = Router(overrides_dir=str(tmp_path))
    text = "楼下餐馆的油烟很大。"
    assert router.route(["air"], text, COUNTY) == Routing("生态环境部门", "county", "js_fumes")
    # other provinces keep the national rules; the national rules still follow the override
    assert router.route(["air"], text, region("110105", "county")).rule_id == "catering_fumes"
    assert router.route(["noise"], "晚上广场舞太吵。", COUNTY).rule_id == "social_life_noise"
    assert router.override_versions == {"320000": "t1"}


def test_province_override_replace(tmp_path):
    _write(tmp_path, "320000.json", {"version": "t2", "mode": "replace", "rules": []})
    router = Router(overrides_dir=str(tmp_path))
    assert router.route(["noise"], "晚上广场舞太吵。", COUNTY).rule_id == "default_environment"


def test_bad_override_fails_at_load(tmp_path):
    from envleads.config import ConfigError

    _write(tmp_path, "320000.json", {"version": "t3", "mode": "append", "rules": []})
    with pytest.raises(ConfigError):
        Router(overrides_dir=str(tmp_path))
