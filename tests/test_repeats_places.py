"""Repeat detection, repeats-2026.12: places read where people name them. A river by its bank or
dyke (柳泥河边上, 柳泥河大堤), after the verb that sends water into it (流进柳泥河), or by a
one-character name (涑河); a hamlet in 家溪 / 家沱; a market, which is a place many stalls share and
not a source; a compound's full name as the area a source is described on (丹桂苑楼下那家饭店); a
trade the writer denies (不是铸造厂的味道) describes no source.
A place alone still makes no matter: a shared river joins only with a pollution type in common.
Each rule has its control: the report where the rule does not apply does not join (or still joins)."""
import pytest

from envleads import repeats as R
from envleads.repeats_features import descriptors, extract_entities
from repeats_cases import CITY, DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)


def _entities(config, text):
    return extract_entities(text, config, canonical=True)


@pytest.mark.parametrize("text, river", [
    ("柳泥河边上那根排污管又在冒黑水。", "water:柳泥"),  # a bank
    ("晚上有人在柳泥河大堤下面烧电线。", "water:柳泥"),  # a dyke
    ("厂后面那条沟常年黑水，一直流进柳泥河。", "water:柳泥"),  # after the verb that sends water into it
    ("有根暗管通到涑河，管口往外冒黄水。", "water:涑"),  # a one-character name
])
def test_a_river_is_read_where_people_name_it(config, text, river):
    assert river in _entities(config, text)


@pytest.mark.parametrize("text", [
    "我家住在村东头河边，晚上臭得睡不着。",  # a word of the sentence before 河边
    "下雨前后河里的鱼大量死亡。",
    "污水全部流进河里，又黑又臭。",
    "村前那条小河边堆满了垃圾。",  # a kind of river, not a name
])
def test_words_before_a_river_side_are_no_river(config, text):
    assert not [e for e in _entities(config, text) if e.startswith("water:")]


OUTFALL = ("柳泥河排污口", "城南工业区那边有根管子往柳泥河排黑水，河面上漂着一层油。", ("water",), "320115")


def test_a_report_naming_the_river_by_its_bank_joins_the_outfall_matter(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *OUTFALL))
    again = index.assign("b", T0 + 3 * DAY_MS, feats(config, "", "柳泥河边上那根管子今天早上又排黑水，鸭子都不下水了。",
                                                     ("water",), "320115"))
    assert (again.cluster_id, again.shared) == (first.cluster_id, "water:柳泥")


def test_a_report_of_another_problem_at_the_river_does_not_join(config):
    """The control: the river alone is no matter; burning on its dyke is not the outfall."""
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, *OUTFALL))
    other = index.assign("b", T0 + 3 * DAY_MS, feats(config, "", "柳泥河边上每天晚上有人烧垃圾，黑烟滚滚。", ("air",),
                                                     "320115"))
    assert other.is_new_matter


LOOMS = ("", "盛湖镇石家溪村三组有一户人家开了个织布作坊，十几台织机二十四小时开着，邻居晚上睡不着。", ("noise",), "320115")


@pytest.mark.parametrize("hamlet, joins", [("石家溪", True), ("何家溪", False)])
def test_a_workshop_described_in_its_hamlet_joins_only_in_that_hamlet(config, hamlet, joins):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *LOOMS))
    again = index.assign("b", T0 + 5 * DAY_MS, feats(
        config, "", f"{hamlet}三组，我家隔壁那户的织机日夜不停，咔嗒咔嗒响到半夜。", ("noise",), "320115"))
    assert (again.cluster_id == first.cluster_id) is joins


def test_a_market_is_a_place_not_a_source(config):
    assert _entities(config, "城东农贸市场旁边那家烧烤店油烟很大。") == ["market:城东"]


def test_two_problems_at_one_market_are_two_matters(config):
    """A market's name is no source's: the stalls' smoke and a shop's loudspeaker there are two matters."""
    index = R.MatterIndex(config, CITY)
    index.assign("a", T0, feats(config, "", "城东农贸市场门口的烧烤摊每晚烟熏火燎，油烟直往楼上飘，吵到半夜。",
                                ("air", "noise"), "320115"))
    other = index.assign("b", T0 + 2 * DAY_MS, feats(
        config, "", "城东农贸市场里卖服装的大喇叭从早到晚循环播放，吵得头疼。", ("noise",), "320115"))
    assert other.is_new_matter


def test_a_stall_described_at_its_market_joins_its_matter(config):
    """The control: the same stall described at the market again joins (烧烤@城东)."""
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, "", "城东农贸市场门口的烧烤摊每晚烟熏火燎，油烟直往楼上飘。",
                                        ("air",), "320115"))
    again = index.assign("b", T0 + 2 * DAY_MS, feats(config, "", "又是城东农贸市场那家烧烤，烟大得看不清路。",
                                                     ("air",), "320115"))
    assert again.cluster_id == first.cluster_id


RESTAURANT = ("", "丹桂苑小区临街商铺里的聚福饭店晚上在门口炒菜，油烟直冲楼上，吃饭的人大声喧哗到很晚。",
              ("air", "noise"), "320115")


@pytest.mark.parametrize("text, joins", [
    ("丹桂苑3幢楼下那家饭店油烟呛死人，炒辣椒的时候整栋楼都在咳。", True),
    ("丹桂苑门口那家KTV半夜还在唱，低音炮震得玻璃都响。", False),  # another trade in the compound
])
def test_a_restaurant_described_in_its_compound_joins_its_matter(config, text, joins):
    index = R.MatterIndex(config, CITY)
    first = index.assign("a", T0, feats(config, *RESTAURANT))
    again = index.assign("b", T0 + 4 * DAY_MS, feats(config, "", text, ("air", "noise"), "320115"))
    assert (again.cluster_id == first.cluster_id) is joins


def test_a_trade_the_writer_denies_describes_no_source(config):
    text = "勤丰路工业园最里面那块空地上每天晚上有人烧垃圾，不是铸造厂的味道，是烧垃圾的味道。"
    found = descriptors(text, _entities(config, text), config)
    assert "descriptor:铸造@勤丰" not in found
    kept = "勤丰路那家铸造厂晚上砸砂箱，吵得睡不着。"
    assert "descriptor:铸造@勤丰" in descriptors(kept, _entities(config, kept), config)
