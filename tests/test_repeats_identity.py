"""Repeat detection, repeats-2026.7: how people refer to one polluter again. A repeat the
classifier typed as no pollution, a plant much talked about by others, a name given in quotes or
read off a signboard, house numbers in Chinese numerals, a road with a house number or a crossing
of two roads for reports of no known city, and phrases the suffix rules must not take for names.

All complaint sentences here are written for these tests.
"""
import pytest

from envleads import repeats as R
from envleads.repeats_features import given_names, house_number, states_pollution
from repeats_cases import CITY, DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)


def named(config, text, cls):
    return [e for e in R.extract_entities(text, config) if e.startswith(cls + ":")]


# -- features ------------------------------------------------------------------------------------

@pytest.mark.parametrize("written, digits", [
    ("18", "18"), ("018", "18"), ("十八", "18"), ("十", "10"), ("二十", "20"), ("一百零八", "108"),
    ("一二八", "128"), ("两百", "200"), ("零", None), ("十十", None), ("0", None),
])
def test_house_numbers_in_digits_or_chinese_numerals(written, digits):
    assert house_number(written) == digits


def test_an_address_in_chinese_numerals_and_a_numbered_building_on_a_road(config):
    assert named(config, "红星路十八号楼上那个打磨作坊晚上很吵", "address") == ["address:红星#18"]
    assert named(config, "红星路18号三楼有家抛光作坊", "address") == ["address:红星#18"]
    assert named(config, "坐地铁2号线到红星路", "address") == []


@pytest.mark.parametrize("text", [
    "我家在物流园后面，后面印染厂天天冒黄烟",        # 后面: where, not a name
    "红星路十八号楼上那个打磨作坊晚上很吵",            # 打磨: a trade, 打磨作坊 a kind
    "村里有个无证小作坊晚上烧塑料",                    # 无证小: no name
    "有一家小作坊，专门做废塑料造粒，晚上开工",        # a phrase of what it does
    "要求取缔违法饭店，还居民安宁",                    # a request, not a restaurant's name
])
def test_phrases_before_a_suffix_are_no_source_names(config, text):
    assert named(config, text, "company") == []


def test_a_crossing_of_two_roads_names_both(config):
    f = feats(config, "", "建华大道跟光明路路口东北角有家喷漆的小作坊")
    assert {"road:建华", "road:光明"} <= set(f.entities)


@pytest.mark.parametrize("text, names", [
    ("光明路那家地板厂(门口立着“森美”两个大字)晚上喷漆", ["company:森美"]),
    ("村西边有一家印染厂，门口牌子上写的是恒昌。", ["company:恒昌"]),
    ("小区底商一家湖南菜馆(湘味轩)油烟很大", ["company:湘味轩"]),
    ("夜市里有一家烤串店(招牌是阿强)，烟很大", ["company:阿强"]),
    ("光明路在建楼盘(翠澜府)半夜还在打桩", ["site:翠澜府"]),     # a building project's name: a site's
    ("要建设“美丽中国”，化工厂就不能偷排", []),       # a slogan beside no source word
    ("印染厂(进门第二家)晚上排臭气", []),              # an aside: a phrase, not a name
    ("“森美”两个字", []),                              # no trade named: nothing to name
])
def test_a_name_given_in_quotes_or_read_off_a_signboard(config, text, names):
    assert given_names(text, config) == names


def test_what_only_a_pollution_report_says(config):
    assert states_pollution("恒昌染厂又在偷排！！！", config)
    assert states_pollution("最近又有酸味，下雨天特别明显", config)
    assert not states_pollution("请问恒昌印染招不招挡车工，要不要体检", config)
    assert feats(config, "", "恒昌染厂又在偷排", types=()).states_pollution
    assert not feats(config, "", "恒昌染厂又在偷排", types=("water",)).states_pollution  # typed: not needed
    assert not feats(config, "感谢环保局", "恒昌染厂不再偷排了", types=()).states_pollution


# -- the index -----------------------------------------------------------------------------------

PLANT = ("", "光明路上的恒丰电镀有限公司夜里偷排废水，河水发绿，还有一股刺鼻的酸味。")


def test_a_repeat_typed_as_no_pollution_joins_the_source_it_names(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *PLANT, types=("water", "air")))
    repeat = index.assign("b", T0 + DAY_MS, feats(config, "情况反馈", "常州恒丰电镀最近又有酸味，怀疑趁下雨偷排。",
                                                  types=()))
    assert repeat.cluster_id == first.cluster_id and repeat.matched_on == "text+entity"


def test_a_question_typed_as_no_pollution_does_not_join_the_source_it_names(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *PLANT, types=("water", "air")))
    question = index.assign("b", T0 + DAY_MS, feats(config, "", "请问恒丰电镀有限公司招不招普工，要不要体检？",
                                                    types=()))
    assert question.is_new_matter


def test_a_plant_talked_about_by_others_still_identifies_its_matter(config):
    """A job question and a neighbour's complaint name the plant too: its name is neither common
    among the problems (the question is no problem) nor a phrase (it has its trade)."""
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *PLANT, types=("water", "air")))
    index.assign("b", T0 + DAY_MS, feats(config, "", "请问恒丰电镀有限公司招不招普工，工资怎么样？", types=()))
    index.assign("c", T0 + 2 * DAY_MS, feats(
        config, "华宇纺织噪声", "华宇纺织就在恒丰电镀隔壁，织机夜里响个不停。", types=("noise",)))
    repeat = index.assign("d", T0 + 3 * DAY_MS, feats(config, "", "恒丰电镀今天清晨又从雨水管排有色废水。",
                                                      types=("water",)))
    assert repeat.cluster_id == first.cluster_id


def test_a_road_with_a_house_number_is_one_place_for_reports_of_no_known_city(config):
    index = R.MatterIndex(config, R.UNKNOWN_BLOCK)
    first = index.assign("a", T0, feats(config, "", "红星路18号三楼有一家抛光作坊，机器响到凌晨。", types=("noise",)))
    repeat = index.assign("b", T0 + DAY_MS, feats(config, "投诉", "隔壁十八号楼上天天嗡嗡响，红星路十八号，快管管",
                                                  types=("noise",)))
    assert repeat.cluster_id == first.cluster_id and repeat.shared == "address:红星#18"
    assert repeat.similarity < config.min_text_with_location_unplaced  # the address decided it


def test_a_crossing_of_two_roads_is_one_place_for_reports_of_no_known_city(config):
    crossing = "建华大道和光明路路口东北角，彩钢棚里有家喷漆作坊，漆雾乱飘，路过的人都捂着鼻子。"
    index = R.MatterIndex(config, R.UNKNOWN_BLOCK)
    first = index.assign("a", T0, feats(config, "", crossing))
    repeat = index.assign("b", T0 + DAY_MS, feats(config, "", "光明路建华大道口那个喷漆点今天又开工了，难闻死了"))
    assert repeat.cluster_id == first.cluster_id and repeat.matched_on == "text+descriptor"
    assert repeat.similarity < config.min_text_with_location_unplaced  # the crossing decided it
    index = R.MatterIndex(config, R.UNKNOWN_BLOCK)
    index.assign("a", T0, feats(config, "", crossing))
    # one two-character road in no known city is too common alone
    assert index.assign("b", T0 + DAY_MS, feats(config, "", "光明路那个喷漆的，难闻死了")).is_new_matter
