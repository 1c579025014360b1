"""Repeat detection, repeats-2026.13: fewer matters holding two true matters on generated streams.

- a report of no known city meets another city's matter by a source name only when the two names
  are of one trade (``entities.one_trade_across_cities``): 福兴精细化工 and 福兴家具加工 share the
  character 工, not a trade; within one city the looser rule stays;
- a trade name is no part of a province's or city's name (浩特 of "呼和浩特大排档" would be said by
  every report from 呼和浩特), nor a trade word (精细 of 精细化工);
- a frequent word that sounds like a trade name is that word (每天 is not 梅天, 晚上 not 完上).
Each test has its control: the same case where the rule does not apply joins or is a name."""
import dataclasses

import pytest

from envleads import repeats as R
from envleads.repeats_features import trade_name, trade_name_said
from repeats_cases import DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)

YANCHENG = "320900"
WORKSHOP = ("", "亭湖区文港北路福兴家具加工厂白天晚上都在开锯，粉尘落得阳台上一层，电锯声吵得人睡不着。",
            ("air", "noise"), "320902")
OTHER_TRADE = "我们家对面的福兴精细化工有限公司，晚上排废气，风机吵得人睡不着。"
SAME_TRADE = "我们家对面的福兴家具加工厂，天天粉尘飞，电锯声吵得人睡不着。"


def _unplaced(indexes, config, text):
    features = feats(config, "", text, ("air", "noise"), None)
    return R.assign_unplaced(indexes, R.UNKNOWN_BLOCK, "u-1", T0 + 3 * DAY_MS, features, None, config)


def _city_with(config, matter):
    indexes = R.KeyIndexes({YANCHENG: R.MatterIndex(config, YANCHENG)})
    indexes[YANCHENG].assign("c-1", T0, feats(config, *matter))
    return indexes


@pytest.mark.parametrize("text, joins", [(OTHER_TRADE, False), (SAME_TRADE, True)])
def test_a_report_of_no_known_city_joins_by_a_name_of_the_same_trade_only(config, text, joins):
    block, got = _unplaced(_city_with(config, WORKSHOP), config, text)
    assert (block, got.duplicate_of) == ((YANCHENG, "c-1") if joins else (R.UNKNOWN_BLOCK, None))


def test_without_the_rule_a_name_of_another_trade_joins(config):
    """What the rule changes: with ``one_trade_across_cities`` off, 福兴精细化工 joins 福兴家具加工."""
    loose = dataclasses.replace(config, one_trade_across_cities=False)
    block, got = _unplaced(_city_with(loose, WORKSHOP), loose, OTHER_TRADE)
    assert (block, got.duplicate_of) == (YANCHENG, "c-1")


def test_a_trade_name_is_no_part_of_a_city_name_nor_a_trade_word(config):
    assert trade_name("company:浩特大排档", config) is None  # 呼和浩特大排档 cut at 和
    assert trade_name("company:精细化工", config) is None
    assert trade_name("company:浩瀚大排档", config) == "浩瀚"  # controls: names of their own
    assert trade_name("company:李和精细化工", config) == "李和"


def test_a_report_from_the_city_whose_name_holds_the_trade_name_does_not_join(config):
    city = "150100"
    index = R.MatterIndex(config, city)
    index.assign("c-1", T0, feats(config, "呼和浩特大排档油烟污染严重",
                                  "呼和浩特市荷昌大道这边，大排档，每天中午和晚上油烟直接往居民楼里排。", ("air",), "150100"))
    got = index.assign("c-2", T0 + DAY_MS, feats(config, "", "呼和浩特市赛罕区星洲中路223号的饭店，排出来的油烟呛得人喘不过气。",
                                                 ("air",), "150105"))
    assert got.is_new_matter


@pytest.mark.parametrize("text, name, said", [
    ("每天晚上烤串的烟雾飘满整条街", "梅天", False),
    ("兰州市这边，这家广场舞，晚上放音乐到十点多", "完上", False),
    ("路口那家梅田新材料又在排废气", "梅天", True),  # controls: not a word, marked as a name
    ("皖上烧烤又把炉子摆到路边", "完上", True),
])
def test_a_frequent_word_that_sounds_like_a_trade_name_is_that_word(config, text, name, said):
    assert (trade_name_said(text, name, config) is not None) == said


def _unplaced_report_joins(config, city: str, placed: tuple, text: str, types: tuple) -> bool:
    """Whether a report of no known city, three days after ``placed`` opened a matter in ``city``,
    joins that matter (else it opens its own under the unknown key)."""
    indexes = R.KeyIndexes({city: R.MatterIndex(config, city)})
    indexes[city].assign("c-1", T0, feats(config, *placed))
    features = feats(config, "", text, types, None)
    block, got = R.assign_unplaced(indexes, R.UNKNOWN_BLOCK, "u-1", T0 + 3 * DAY_MS, features, None, config)
    assert (block, got.duplicate_of) in {(city, "c-1"), (R.UNKNOWN_BLOCK, None)}, (block, got)
    return block == city


PLATING = ("", "武进区湖塘镇延政西路上那家电镀厂天天晚上偷排废水，河沟里的水都是绿的，一股酸味。", ("water", "air"), "320412")


@pytest.mark.parametrize("text, joins", [
    ("沿政西路上那家电镀厂晚上又在偷排废水，河沟里的水发绿，酸味很重。", False),  # 沿政西 sounds as 延政西
    ("延政西路上那家电镀厂晚上又在偷排废水，河沟里的水发绿，酸味很重。", True),
])
def test_a_descriptor_across_cities_needs_its_area_written_alike(config, text, joins):
    assert _unplaced_report_joins(config, "320400", PLATING, text, ("water", "air")) == joins


@pytest.mark.parametrize("place, joins", [("顺利街道一带", False), ("美中乡阳利村", True)])
def test_text_alone_does_not_join_two_complaints_from_places_none_alike(config, place, joins):
    """One clause of a kind of source from two villages of one city is two sources; from the same
    village, the same one."""
    index = R.MatterIndex(config, "320500")
    body = "那个采砂船白天晚上都在私挖乱采，山体被挖掉一大半，河道都变窄了，拖拉机来回拉砂，路都压坏了"
    first = index.assign("c-1", T0, feats(config, "", f"常熟市美中乡阳利村，{body}，能不能管一下", ("ecological",), "320581"))
    got = index.assign("c-2", T0 + DAY_MS, feats(config, "", f"常熟市{place}，{body}，拜托了", ("ecological",), "320581"))
    assert (got.cluster_id == first.cluster_id) == joins, got


@pytest.mark.parametrize("text, joins", [
    ("义乌市康明中路241号有一家源平量贩KTV，音乐开得震天响，低音炮震得窗户都在响。", False),
    ("峰友名城那家酒店(源平)机房的声音还是很大，楼上卧室睡不着。", True),
])
def test_a_trade_name_said_by_a_source_of_another_trade_is_another_source(config, text, joins):
    """源平量贩KTV says 源平, the trade name of 源平酒店, but is a KTV: another source of one city."""
    index = R.MatterIndex(config, "330700")
    first = index.assign("c-1", T0, feats(config, "投诉源平酒店设备噪音", "金华市义乌市峰友名城一带，源平酒店，机房的声音传到楼上卧室。",
                                          ("noise",), "330782"))
    got = index.assign("c-2", T0 + DAY_MS, feats(config, "", text, ("noise",), "330782"))
    assert (got.cluster_id == first.cluster_id) == joins, got


BARBECUE = ("", "江宁区东山街道竹山路那家阿福烧烤，每天晚上烤串的烟往楼上飘，客人喝酒吵到凌晨。", ("air", "noise"), "320115")


@pytest.mark.parametrize("text, joins", [
    ("我们小区对面的阿福烧烤，晚上烤串的烟往楼上飘，紧挨着翠湖家园居民楼。", False),  # a compound, not the road
    ("竹山路上的阿福烧烤，晚上烤串的烟往楼上飘，喝酒吵到凌晨。", True),
    ("阿福烧烤晚上烤串的烟往楼上飘，喝酒吵到凌晨。", True),  # no place: nothing says it is elsewhere
])
def test_a_report_of_no_known_city_naming_places_none_alike_is_about_a_namesake(config, text, joins):
    assert _unplaced_report_joins(config, "320100", BARBECUE, text, ("air", "noise")) == joins


@pytest.mark.parametrize("entity, name", [
    ("company:昌吉回族自治州歌厅", None),  # 昌吉回族 cut as the prefecture's short name leaves 自治州
    ("company:巴音郭楞蒙古自治州私房菜", None),
    ("company:昌吉回族自治州宏达歌厅", "宏达"),  # the control: the whole prefecture cut, the name kept
])
def test_a_division_suffix_left_of_a_prefecture_name_is_no_trade_name(config, entity, name):
    """Sixty-two reports of 52 matters across one autonomous prefecture shared "trade name 自治州"
    (a 100,000-complaint generated stream)."""
    assert trade_name(entity, config) == name
