"""Repeat detection, repeats-2026.9: a source's trade name (字号) said again in a later report in a
form the suffix rules do not read as a name: in brackets after a description, after 叫 or 那家, or
written by ear with other characters of the same sound. All sentences are written for these tests.
"""
import pytest

from envleads import repeats as R
from envleads.repeats_features import trade_name, trade_name_said
from envleads.repeats_text import _entity_text
from repeats_cases import CITY, DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)

PLANT = ("", "来电人反映，丰南区黄各庄镇丰黄路北侧的唐山市丰南区鑫晟轧钢有限公司夜里开轧，轧机撞击声很大，烟囱冒黄烟。")


@pytest.mark.parametrize("entity, name", [
    ("company:唐山市丰南区鑫晟轧钢", "鑫晟"),     # division, trade and legal form off
    ("company:宏基混凝土", "宏基"),
    ("company:金嗓子ktv", "金嗓子"),
    ("company:垃圾焚烧", None),                   # two frequent words: a phrase the rules caught
    ("company:棋牌室ktv", None),                  # a kind of business, not its name
    ("company:某化工", None),
    ("road:鑫晟", None),                          # only sources have trade names
    ("company:希望能督促饭店", None),             # longer than any trade name
])
def test_trade_names_of_source_names(config, entity, name):
    assert trade_name(entity, config) == name


@pytest.mark.parametrize("text, by_sound, marked", [
    ("路北挨着加油站的那家轧钢厂(鑫晟)从春节前就昼夜生产", False, True),   # in brackets
    ("园区南头那家鑫晟，熏得睡不着", False, True),                          # after 那家
    ("路北鑫盛轧钢(音)今天早上又冒黑烟", True, True),                      # by ear, marked (音)
    ("听说是鑫盛老板的亲戚开的", True, False),                             # by ear, not marked
])
def test_a_trade_name_said_in_other_forms(config, text, by_sound, marked):
    said = trade_name_said(_entity_text(text), "鑫晟", config)
    assert said is not None and (said.by_sound, said.marked) == (by_sound, marked)


@pytest.mark.parametrize("text", [
    "鑫晟路上的烧烤摊天天冒烟",          # a road of that name
    "华丰印染，就在鑫晟隔壁，夜里排臭气",  # a neighbour the report places its source by
    "小区门口的早餐店油烟大",              # not said at all
    "新城轧钢厂夜里开工",                  # both characters other ones (xin cheng): another name
])
def test_what_is_not_saying_a_trade_name(config, text):
    assert trade_name_said(_entity_text(text), "鑫晟", config) is None


def test_a_rare_reading_of_the_written_character_is_not_the_name_by_ear(config):
    """泵 has a rare reading liu: "气泵和打磨机" does not say 柳和 (of 柳和KTV)."""
    assert trade_name_said(_entity_text("气泵和打磨机噪音很大"), "柳和", config) is None


def test_a_plant_described_with_its_trade_name_in_brackets_joins_its_matter(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *PLANT, types=("noise", "air")))
    repeat = index.assign("b", T0 + 5 * DAY_MS, feats(
        config, "夜间生产扰民", "我住丰黄路附近，路北那家轧钢厂(鑫晟)从春节前就一直昼夜生产，咣当声隔着窗户都听得见。",
        types=("noise",)))
    assert repeat.cluster_id == first.cluster_id and repeat.matched_on == "text+trade_name"
    assert repeat.shared == "trade_name:鑫晟"


def test_a_trade_name_written_by_ear_and_marked_joins_within_one_city(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *PLANT, types=("noise", "air")))
    repeat = index.assign("b", T0 + 3 * DAY_MS, feats(
        config, "轧钢厂冒黑烟", "来电人称路北鑫盛轧钢(音)今天早上又在烧加热炉，黑烟很大。", types=("air",)))
    assert repeat.cluster_id == first.cluster_id


def test_a_trade_name_by_ear_without_a_mark_is_no_evidence(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *PLANT, types=("noise", "air")))
    other = index.assign("b", T0 + DAY_MS, feats(
        config, "", "听说是鑫盛老板的亲戚开的饭店，后厨油烟直排进小区。", types=("air",)))
    assert other.is_new_matter


def test_a_report_about_another_plant_that_names_this_one_as_its_neighbour_does_not_join(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *PLANT, types=("noise", "air")))
    other = index.assign("b", T0 + DAY_MS, feats(
        config, "", "华宇纺织就在鑫晟旁边，织机夜里响个不停，严重扰民。", types=("noise",)))
    assert other.is_new_matter


def test_a_two_character_trade_name_does_not_join_across_cities(config):
    """鑫晟 of no known city: two characters recur from province to province."""
    index = R.MatterIndex(config, R.UNKNOWN_BLOCK)
    index.assign("a", T0, feats(config, *PLANT, types=("noise", "air"), region="130207"))
    other = index.assign("b", T0 + DAY_MS, feats(config, "", "那家轧钢厂(鑫晟)晚上又冒黄烟，呛死人了。", types=("air",)))
    assert other.is_new_matter


def test_a_job_question_naming_the_trade_name_does_not_join(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *PLANT, types=("noise", "air")))
    question = index.assign("b", T0 + DAY_MS, feats(config, "", "请问那家鑫晟还招不招天车工，工资怎么算？", types=()))
    assert question.is_new_matter


def test_trade_names_survive_a_restart_of_the_index(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *PLANT, types=("noise", "air")))
    restored = R.MatterIndex.from_state(index.to_state(), config)
    repeat = restored.assign("b", T0 + DAY_MS, feats(
        config, "", "路北那家轧钢厂(鑫晟)又在半夜生产，吵得睡不着。", types=("noise",)))
    assert repeat.cluster_id == first.cluster_id and repeat.matched_on == "text+trade_name"
