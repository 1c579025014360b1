"""Repeat detection, repeats-2026.8: a matter holds one true matter. Namesakes in other cities (a
shop name, a compound name that recurs across the country) are told apart by the street they are
on, and the generated stream through the product path keeps its multi-report leads pure.

All complaint sentences here are written for these tests.
"""
from envleads import repeats as R
from repeats_cases import CITY, DAY_MS, T0, config, feats  # noqa: F401 (config: a fixture)

GRILL = "南京市鼓楼区海联巷235号的侯记烧烤，每天晚上烟熏火燎，吵到凌晨"


def _city_with_grill(config):
    indexes = R.KeyIndexes({CITY: R.MatterIndex(config, CITY)})
    first = indexes[CITY].assign("g-001", T0, feats(config, "", GRILL, region="320106"), None)
    return indexes, first


def _unplaced(indexes, config, cid, text, days=2):
    return R.assign_unplaced(indexes, R.UNKNOWN_BLOCK, cid, T0 + days * DAY_MS, feats(config, "", text), None,
                             config)[1]


def test_a_namesake_on_another_street_of_no_known_city_is_another_matter(config):
    indexes, first = _city_with_grill(config)
    other = _unplaced(indexes, config, "g-002", "鑫隆巷286号的侯记烧烤，烤串的烟雾飘满整条街，管不管")
    assert other.is_new_matter and other.cluster_id != first.cluster_id


def test_the_same_name_on_the_same_street_or_with_no_street_still_joins(config):
    indexes, first = _city_with_grill(config)
    same_street = _unplaced(indexes, config, "g-002", "海联巷那家侯记烧烤又在烧炭，烟大得看不清对面楼")
    no_street = _unplaced(indexes, config, "g-003", "我家楼下的侯记烧烤油烟太大了，晚上吵得睡不着", days=3)
    assert same_street.cluster_id == first.cluster_id and same_street.matched_on == "text+entity"
    assert no_street.cluster_id == first.cluster_id


def test_within_one_city_a_plant_described_from_the_next_road_still_joins(config):
    """The rule is for namesakes across the country: in one city people say where they live."""
    index = R.MatterIndex(config, CITY)
    first = index.assign("p-001", T0, feats(config, "", "兴业路上的恒昌染厂天天偷排污水，河水发黑发臭",
                                            types=("water",)), None)
    again = index.assign("p-002", T0 + DAY_MS, feats(config, "", "我住在光明路，旁边恒昌染厂的污水又排进河里了",
                                                     types=("water",)), None)
    assert again.cluster_id == first.cluster_id


def test_place_conflict_classes_must_be_places(tmp_path, config):
    import json

    import pytest

    doc = json.load(open(R.__file__.replace("repeats.py", "data/repeats.json"), encoding="utf-8"))
    doc["entities"]["place_conflict_classes"] = ["company"]
    path = tmp_path / "repeats.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(R.ConfigError, match="place_conflict_classes"):
        R.load_repeat_config(str(path))


DANCE = "龙德家园24栋楼下广场舞音箱放得震耳朵，每天晚上放音乐到十点多"


def test_a_compound_name_is_also_kept_in_full(config):
    assert {"compound:龙德", "estate:龙德家园"} <= set(feats(config, "", DANCE).entities)


def test_across_cities_a_two_character_compound_under_another_full_name_is_another_place(config):
    indexes = R.KeyIndexes({CITY: R.MatterIndex(config, CITY)})
    first = indexes[CITY].assign("d-001", T0, feats(config, "", DANCE, types=("noise",), region="320106"), None)
    other = R.assign_unplaced(indexes, R.UNKNOWN_BLOCK, "d-002", T0 + DAY_MS,
                              feats(config, "", "龙德花园门口跳舞的大妈音箱放得震耳朵", types=("noise",)), None, config)[1]
    same = R.assign_unplaced(indexes, R.UNKNOWN_BLOCK, "d-003", T0 + 2 * DAY_MS,
                             feats(config, "", "龙德家园24栋楼下又在跳广场舞，每天晚上放音乐", types=("noise",)),
                             None, config)[1]
    assert other.is_new_matter
    assert same.cluster_id == first.cluster_id and same.matched_on == "text+location"


def test_within_one_city_one_estate_written_either_way_is_one_place(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("d-001", T0, feats(config, "", DANCE, types=("noise",)), None)
    again = index.assign("d-002", T0 + DAY_MS, feats(config, "", "龙德花园楼下广场舞音箱放得震耳朵，晚上放音乐到十点多",
                                                     types=("noise",)), None)
    assert again.cluster_id == first.cluster_id


def test_one_question_from_two_estates_is_two_residents_question(config):
    index = R.MatterIndex(config, CITY)
    first = index.assign("q-001", T0, feats(config, "", "我住在昌山家园，想咨询一下新能源汽车的购车补贴怎么申请", types=()), None)
    other = index.assign("q-002", T0 + DAY_MS, feats(config, "", "我住在湾鑫村，想咨询一下新能源汽车的购车补贴怎么申请",
                                                     types=()), None)
    again = index.assign("q-003", T0 + 2 * DAY_MS, feats(config, "", "昌山家园的居民，想咨询一下新能源汽车的购车补贴怎么申请",
                                                         types=()), None)
    assert other.is_new_matter
    assert again.cluster_id == first.cluster_id


# -- a generated stream through the product path ---------------------------------------------------

STREAM_COUNT, STREAM_SEED = 2000, 11  # seed 11: development (31 and 37 are the bench's reporting seeds)


def _generated_stream(count, seed):
    import json

    from envleads.generator import generate_events

    events, truth = [], {}
    for event in generate_events(count, seed):
        if event.truth["malformed"]:
            continue
        events.append(json.loads(event.line))
        truth[event.truth["complaint_id"]] = event.truth
    return events, truth


def test_multi_report_leads_of_a_generated_stream_hold_one_true_matter():
    """Issue 21: fewer than 1% of multi-report leads hold reports of more than one true matter
    (the generator's truth), through ``envleads batch`` with default settings. This stream spans
    30 days, a third of the window, so namesakes meet far less often than in a long stream
    (bench/bench_repeats_pipeline.py: 5,000 and more); here none may: repeats-2026.7 put one lead
    and one matter of 134 together from two true matters. Non-environmental matters make no lead,
    so the multi-report matters are held to it too."""
    from envleads import repeats_evaluation as E

    events, truth = _generated_stream(STREAM_COUNT, STREAM_SEED)
    rows, leads = E.run_product(events, "beam")
    purity = E.score_leads(rows, truth, leads)
    matters = E.score_matters(rows, truth)
    assert purity["multi_report_leads"] >= 100  # enough leads for the share to mean something
    assert purity["multi_report_leads_mixed"] == 0, purity
    assert matters["multi_report_matters_mixed"] == 0, matters


def test_lead_purity_is_counted_over_leads_with_several_reports():
    from envleads import repeats_evaluation as E

    truth = {c: {"matter_id": m} for c, m in (("a", "1"), ("b", "1"), ("c", "2"), ("d", "3"), ("e", "4"), ("f", "4"))}
    rows = [{"complaint_id": c, "cluster_id": k} for c, k in (("a", "x"), ("b", "x"), ("c", "x"), ("d", "y"),
                                                              ("e", "z"), ("f", "z"))]
    leads = [{"cluster_id": "x"}, {"cluster_id": "y"}]  # z: a non-environmental matter, no lead
    assert E.score_leads(rows, truth, leads) == {"multi_report_leads": 1, "multi_report_leads_mixed": 1}
