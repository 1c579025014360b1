"""Repeat detection, repeats-2026.10 and 2026.11: what joins two reports that are not the same
source. A name that two cities' matters give, a report naming another town or compound, a community
(社区) shared by two sources, a trade word taken for a trade name, and one resident writing about two
neighbours.
Each test has its control: the same report where the rule does not apply joins."""
import pytest

from envleads import repeats as R
from envleads.repeats_features import trade_name
from repeats_cases import DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)

RUIAN, JINJIANG = "330300", "350500"
BARBECUE_RUIAN = ("阿强烧烤油烟扰民", "瑞安市塘下镇金塘路阿强烧烤每天营业到凌晨三点，门口露天烧烤，炭火烟雾直冲楼上住户。",
                  ("air", "noise"), "330381")
BARBECUE_JINJIANG = ("", "晋江市陈埭镇鹏江花园楼下的阿强烧烤，油烟直接往楼上飘，客人划拳声音很大。",
                     ("air", "noise"), "350582")
BARBECUE_UNPLACED = ("", "阿强烧烤又把炉子摆到人行道上烤了，炭火烟很大，整条街都是烟。", ("air",), None)


def _unplaced(indexes, config, complaint_id, case):
    return R.assign_unplaced(indexes, R.UNKNOWN_BLOCK, complaint_id, T0 + 3 * DAY_MS, feats(config, *case), None,
                             config)


def test_a_source_name_that_two_cities_give_joins_neither(config):
    indexes = R.KeyIndexes({RUIAN: R.MatterIndex(config, RUIAN), JINJIANG: R.MatterIndex(config, JINJIANG)})
    indexes[RUIAN].assign("r-1", T0, feats(config, *BARBECUE_RUIAN))
    indexes[JINJIANG].assign("j-1", T0 + DAY_MS, feats(config, *BARBECUE_JINJIANG))
    block, got = _unplaced(indexes, config, "u-1", BARBECUE_UNPLACED)
    assert (block, got.is_new_matter) == (R.UNKNOWN_BLOCK, True)


def test_a_source_name_that_one_city_gives_joins_it(config):
    indexes = R.KeyIndexes({RUIAN: R.MatterIndex(config, RUIAN)})
    first = indexes[RUIAN].assign("r-1", T0, feats(config, *BARBECUE_RUIAN))
    block, got = _unplaced(indexes, config, "u-1", BARBECUE_UNPLACED)
    assert (block, got.cluster_id, got.shared) == (RUIAN, first.cluster_id, "company:阿强烧烤")


NANCHANG = "360100"
KTV_NANCHANG = ("", "青山湖区湖韵雅苑小区沿街商铺二楼的金麦克KTV每晚营业到凌晨三点，低音炮震得楼上睡不着。", ("noise",),
                "360111")
BARBECUE_LATER = "的阿强烧烤又把炉子摆到人行道上烤了，炭火烟很大，整条街都是烟。"
KTV_LATER = "小区商业楼二楼的金麦克KTV，每晚唱到凌晨一两点，低音炮震得楼板都在响。"


@pytest.mark.parametrize("city, matter, types, other_place, same_place", [
    (RUIAN, BARBECUE_RUIAN, ("air",), "陈埭镇" + BARBECUE_LATER, "塘下镇" + BARBECUE_LATER),  # a town
    (NANCHANG, KTV_NANCHANG, ("noise",), "翠岭华庭" + KTV_LATER, "湖韵雅苑" + KTV_LATER),  # a compound
])
def test_a_report_of_no_known_city_naming_another_place_is_about_another_source(
        config, city, matter, types, other_place, same_place):
    """金麦克KTV of 翠岭华庭 is not that of 湖韵雅苑; of the same compound, it is."""
    for text, joins in ((other_place, False), (same_place, True)):
        indexes = R.KeyIndexes({city: R.MatterIndex(config, city)})  # one each: a first report would make two
        indexes[city].assign("c-1", T0, feats(config, *matter))
        block, got = _unplaced(indexes, config, "u-1", ("", text, types, None))
        assert (block, got.duplicate_of) == ((city, "c-1") if joins else (R.UNKNOWN_BLOCK, None)), text


def test_a_community_is_an_area_like_a_village_not_a_precise_place(config):
    """A 社区 is a residents' committee's area, in the country a village by another name: a
    compound (小区, 花园) is a precise place, a community is not."""
    community = feats(config, "", "望城区高塘岭街道马桥河社区有一家沥青搅拌站，烟囱冒黄黑色的烟。")
    assert "village:马桥河" in community.entities
    assert not any(e.startswith("water:") for e in community.entities)  # 马桥河社区 is no river
    assert not any(e.startswith("compound:马桥河") for e in community.entities)
    compound = feats(config, "", "望城区高塘岭街道马桥河花园楼下有一家烧烤店，油烟很大。")
    assert any(e.startswith("compound:马桥河") for e in compound.entities)


def test_a_trade_word_is_no_trade_name(config):
    assert trade_name("company:小镀锌", config) is None
    assert trade_name("company:镀锌", config) is None
    assert trade_name("company:箱包", config) is None  # "北张庄那个箱包厂": a trade, not a name
    assert trade_name("company:鸿锦印染", config) == "鸿锦"  # the trade is taken off a name, not the name


def test_one_resident_writing_about_two_named_neighbours_opens_two_matters(config):
    index = R.MatterIndex(config, "350500")
    index.assign("a", T0, feats(config, "", "磁灶镇大埔村晋江市新盛建材有限公司原料堆场没有遮盖，一刮风黄土满天飞。"),
                 "reporter-1")
    other = index.assign("b", T0 + 9 * DAY_MS, feats(
        config, "大埔村瓷砖厂烟尘", "村里的华磊陶瓷厂烟尘污染一直没停过，老人气管炎越来越多。"), "reporter-1")
    assert other.is_new_matter
    again = index.assign("c", T0 + 20 * DAY_MS, feats(
        config, "", "大埔村那个建材厂的原料堆场还是没盖，风一吹满村黄土。"), "reporter-1")
    assert again.duplicate_of == "a"
