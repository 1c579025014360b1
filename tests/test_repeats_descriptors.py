"""Repeat detection: sources described without their names (a trade on a road or in a village),
trade words inside names, names of a kind only, neighbours named beside a source, and praise.

All complaint sentences here are written for these tests.
"""
import pytest

from envleads import repeats as R
from envleads.repeats_features import _kind_only, descriptors, is_not_complaint, trades_named
from repeats_cases import CITY, DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)


def company(config, text):
    return [e for e in R.extract_entities(text, config) if e.startswith("company:")]


# -- features ------------------------------------------------------------------------------------

def test_a_plant_described_by_road_and_trade_gives_a_descriptor(config):
    f = feats(config, "", "兴旺东路上那家电镀厂今晚又在排酸雾，整条街都是酸味。")
    assert "descriptor:电镀@兴旺东" in f.entities
    assert not [e for e in f.entities if e.startswith("company:")]


def test_words_of_one_trade_give_one_descriptor(config):
    f = feats(config, "", "兴旺东路那家铸件厂半夜还在清砂，吵得睡不着。", types=("noise",))
    assert [e for e in f.entities if e.startswith("descriptor:")] == ["descriptor:铸造@兴旺东"]


def test_a_named_source_gives_its_own_trade_not_its_neighbours(config):
    f = feats(config, "宏发表面处理厂废水直排",
              "兴旺东路的宏发表面处理厂每天上午排白色废水，和同一条路上的华强电镀不是一家。", types=("water",))
    assert [e for e in f.entities if e.startswith("descriptor:")] == ["descriptor:表面处理@兴旺东"]


def test_no_area_no_descriptor_and_too_many_none(config):
    assert descriptors("那家电镀厂又在排酸雾", ["company:华强电镀"], config) == []
    many = [f"road:{name}" for name in ("兴旺东", "建设西", "人民南", "解放北", "和平东")]
    assert descriptors("电镀厂、印染厂都在排", many, config) == []  # 10 descriptors: none


def test_trades_named_by_a_source_name(config):
    assert trades_named("华强五金电镀", config) == ["电镀"]
    assert trades_named("金鹏地板", config) == ["木业"]
    assert trades_named("宏达", config) == []


def test_a_source_name_that_is_an_area_and_a_trade_is_a_description(config):
    f = feats(config, "", "我住在新桥村，新桥村里的新桥印花厂晚上气味很重。")
    assert "company:新桥印花" in company(config, "新桥印花厂晚上气味很重")  # a name, with no area beside it
    assert "company:新桥印花" not in f.entities
    assert "descriptor:印花@新桥" in f.entities


# -- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, entity", [
    ("兴旺东路东侧的雅居家具厂天天喷漆", "company:雅居家具"),   # 家 is a boundary elsewhere
    ("宏发表面处理厂废水直排", "company:宏发表面处理"),            # so is 处理
    ("夜市东头的老周烤串天天冒烟", "company:老周烤串"),
])
def test_a_trade_word_before_the_suffix_stays_in_the_name(config, text, entity):
    assert entity in company(config, text)


def test_a_name_of_a_kind_only_is_no_name(config):
    assert company(config, "每天楼下烧烤店烧烤到凌晨") == []
    assert _kind_only("烧烤店", next(c for c in config.entity_classes if c.name == "company"), config)
    assert not _kind_only("老周烧烤", next(c for c in config.entity_classes if c.name == "company"), config)


@pytest.mark.parametrize("left, right, same", [
    ("老周土菜", "老周饭店", True),     # one trade group: restaurants
    ("鸿运染", "鸿运印染", True),
    ("好运来排档", "好运来大排档", True),
    ("老周土菜", "老周汽修", False),
])
def test_names_with_trades_of_one_group_match(config, left, right, same):
    assert R._cores_match(left, right, config) is same


def test_praise_and_thanks_are_not_complaints(config):
    assert is_not_complaint("感谢环保局", config)
    assert is_not_complaint("表扬社区环境整治", config)
    assert not is_not_complaint("投诉华强电镀", config)
    assert feats(config, "感谢环保局", "之前反映的华强电镀噪声问题已经解决了。", types=("noise",)).types == ()


# -- the index -----------------------------------------------------------------------------------

NAMED = ("", "兴旺东路上的华强电镀有限公司每天晚上排放刺鼻的酸雾，附近居民不敢开窗。")
DESCRIBED = ("", "兴旺东路那家电镀厂又在排酸雾，半夜把人熏醒。")
OTHER_PLANT = ("", "兴旺东路上的永达电镀有限公司把废水直接排进河里，还有一股酸味。")


def test_a_description_joins_the_only_matter_described_so(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *NAMED))
    second = index.assign("b", T0 + DAY_MS, feats(config, *DESCRIBED))
    assert second.cluster_id == first.cluster_id
    assert second.matched_on.endswith("descriptor") and second.shared == "descriptor:电镀@兴旺东"


def test_a_description_of_two_plants_of_one_trade_joins_neither(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *NAMED))
    other = index.assign("b", T0 + DAY_MS, feats(config, *OTHER_PLANT, types=("water", "air")))
    described = index.assign("c", T0 + 2 * DAY_MS, feats(config, *DESCRIBED))
    assert other.is_new_matter and described.is_new_matter
    assert described.cluster_id not in (first.cluster_id, other.cluster_id)


def test_a_description_needs_a_common_type(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *NAMED))
    assert index.assign("b", T0 + DAY_MS, feats(config, *DESCRIBED, types=("solid_waste",))).is_new_matter


def test_a_report_about_another_plant_does_not_join_the_neighbour_it_names(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *NAMED))
    index.assign("b", T0 + DAY_MS, feats(config, "华强电镀酸雾", "华强电镀晚上的酸雾越来越重了。"))
    about_other = index.assign("c", T0 + 2 * DAY_MS, feats(
        config, "永达电镀偷排废水", "永达电镀就在华强电镀隔壁，它的废水管通到河里，请一并检查。", types=("water", "air")))
    assert about_other.is_new_matter


def test_thanks_for_a_solved_problem_do_not_join_its_matter(config):
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, "", "华强电镀有限公司夜里机器噪声很大，吵得睡不着。", types=("noise",)))
    thanks = index.assign("b", T0 + DAY_MS, feats(
        config, "感谢环保局", "之前反映的华强电镀有限公司夜里噪声问题已经解决了，特此感谢！", types=("noise",)))
    assert thanks.is_new_matter


def test_an_unplaced_description_held_by_two_city_keys_joins_neither(config):
    indexes = R.KeyIndexes({"320100": R.MatterIndex(config, "320100"), "320500": R.MatterIndex(config, "320500")})
    indexes["320100"].assign("a", T0, feats(config, *NAMED, region="320102"))
    indexes["320500"].assign("b", T0, feats(config, *OTHER_PLANT, types=("water", "air"), region="320505"))
    block, assignment = R.assign_unplaced(indexes, "320000", "c", T0 + DAY_MS, feats(config, *DESCRIBED))
    assert assignment.is_new_matter and block == "unknown"


def test_an_unplaced_description_held_by_one_city_key_joins_it(config):
    indexes = R.KeyIndexes({"320100": R.MatterIndex(config, "320100"), "320500": R.MatterIndex(config, "320500")})
    first = indexes["320100"].assign("a", T0, feats(config, *NAMED, region="320102"))
    block, assignment = R.assign_unplaced(indexes, "320000", "c", T0 + DAY_MS, feats(config, *DESCRIBED))
    assert (block, assignment.cluster_id) == ("320100", first.cluster_id)
