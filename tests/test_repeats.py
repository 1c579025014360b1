"""Repeat-petition detection: features, blocking key, the matter index and the metrics.

All complaint sentences here are written for these tests.
"""
import hashlib
import json
import os
import pickle

import pytest

from envleads import repeats as R

DAY_MS = 86_400_000
T0 = 1_700_000_000_000

# One matter: a chemical plant on 建设路 discharging waste water at night, told three ways.
PLANT_1 = ("投诉建设路绿源化工有限公司夜间偷排废水",
           "建设路绿源化工有限公司每天夜里把黑色废水排进旁边的小河，河水发臭，鱼都死了，"
           "请环保部门尽快查处。联系电话[电话]")
PLANT_2 = ("绿源化工有限公司半夜往小河里排污水",
           "我家住在建设路，绿源化工有限公司最近一到半夜就往小河里排污水，河水发黑发臭，"
           "希望环保部门尽快来查处。")
PLANT_3 = ("再次反映绿源化工有限公司偷排废水问题",
           "上个月反映过建设路绿源化工有限公司夜里偷排废水，到现在小河还是又黑又臭，没有任何处理。")
# Same road, another company, another problem.
GARAGE = ("建设路恒通汽修厂露天喷漆气味刺鼻",
          "建设路上的恒通汽修厂每天在路边露天喷漆，油漆味非常刺鼻，附近居民家里开窗都不行，"
          "请相关部门查处。")
# Another compound, another problem.
KTV = ("翠湖小区楼下金嗓子KTV深夜噪音扰民",
       "翠湖小区一楼的金嗓子KTV每天营业到凌晨三点，唱歌声音很大，楼上居民根本无法入睡。")


@pytest.fixture(scope="module")
def config():
    return R.load_repeat_config()


def feats(config, title_text, types=()):
    title, text = title_text
    return R.matter_features(text, title, [], None, list(types), config)


# -- configuration ----------------------------------------------------------------------------

def test_packaged_config_has_version_and_ninety_day_window(config):
    assert config.version
    assert config.window_days == 90
    assert config.window_ms == 90 * DAY_MS
    assert 64 <= config.num_perm <= 128


def test_config_missing_key_names_file_and_key(tmp_path):
    bad = tmp_path / "repeats.json"
    bad.write_text(json.dumps({"version": "x", "window_days": 90}), encoding="utf-8")
    with pytest.raises(R.ConfigError, match="num_perm"):
        R.load_repeat_config(str(bad))


# -- features ---------------------------------------------------------------------------------

def test_masked_placeholders_do_not_change_the_signature(config):
    plain = R.matter_features("工厂夜里排放黑烟，气味刺鼻。", "", [], None, [], config)
    masked = R.matter_features("工厂夜里排放黑烟，[电话]气味刺鼻。【姓名】", "", [], None, [], config)
    raw_phone = R.matter_features("工厂夜里排放黑烟，13812345678气味刺鼻。", "", [], None, [], config)
    assert list(plain.signature) == list(masked.signature) == list(raw_phone.signature)


def test_signature_is_deterministic_and_round_trips_as_list(config):
    a = feats(config, PLANT_1).signature
    b = feats(config, PLANT_1).signature
    assert a.dtype.name == "uint32" and a.shape == (config.num_perm,)
    assert list(a) == list(b)
    restored = R.signature_from_list(json.loads(json.dumps(R.signature_to_list(a))))
    assert list(restored) == list(a)


def test_identical_texts_have_similarity_one_and_unrelated_low(config):
    a = feats(config, PLANT_1).signature
    assert R.signature_similarity(a, a) == 1.0
    assert R.signature_similarity(a, feats(config, KTV).signature) < 0.1


def test_entities_extract_named_compound_company_road(config):
    found = set(R.extract_entities("A区建设路旁的翠湖小区附近，宏达塑料厂和绿源化工有限公司排放废气", config))
    assert {"compound:翠湖", "company:宏达塑料", "company:绿源化工", "road:建设"} <= found


def test_generic_mentions_are_not_entities(config):
    found = R.extract_entities("我们小区楼下的烧烤店每天很吵", config)
    assert "compound:我们" not in found
    assert "company:烧烤" not in found


# -- blocking key -----------------------------------------------------------------------------

@pytest.mark.parametrize("adcode, key", [
    ("430104", "430100"),  # a county of a prefecture-level city -> the city
    ("430100", "430100"),  # the city itself -> same key as its counties
    ("110105", "110000"),  # a district of Beijing -> the municipality
    ("430000", "unknown"),  # province only: too coarse to be a partition of its own
    (None, "unknown"),
    ("", "unknown"),
    ("abc", "unknown"),
])
def test_blocking_key(adcode, key):
    assert R.blocking_key(adcode) == key


# -- the index --------------------------------------------------------------------------------

def test_cluster_id_derives_from_first_complaint_id():
    expected = "m-" + hashlib.sha1(b"c-001").hexdigest()[:16]
    assert R.cluster_id_for("c-001") == expected


def test_paraphrased_repeats_join_the_first_matter(config):
    index = R.MatterIndex(config)
    first = index.assign("c-001", T0, feats(config, PLANT_1, ["water"]), "r1")
    second = index.assign("c-002", T0 + 3 * DAY_MS, feats(config, PLANT_2, ["water"]), "r2")
    third = index.assign("c-003", T0 + 30 * DAY_MS, feats(config, PLANT_3, ["other"]), "r3")
    assert first.is_new_matter and first.duplicate_of is None
    assert first.cluster_id == R.cluster_id_for("c-001")
    for later in (second, third):
        assert not later.is_new_matter
        assert later.cluster_id == first.cluster_id
        assert later.duplicate_of == "c-001"
    assert len(index) == 1


def test_other_company_on_same_road_is_another_matter(config):
    index = R.MatterIndex(config)
    index.assign("c-001", T0, feats(config, PLANT_1), None)
    garage = index.assign("c-002", T0 + DAY_MS, feats(config, GARAGE), None)
    ktv = index.assign("c-003", T0 + DAY_MS, feats(config, KTV), None)
    assert garage.is_new_matter and garage.duplicate_of is None
    assert ktv.is_new_matter
    assert len(index) == 3


def test_repeat_after_window_starts_new_matter(config):
    index = R.MatterIndex(config)
    index.assign("c-001", T0, feats(config, PLANT_1), None)
    late = index.assign("c-002", T0 + (config.window_days + 1) * DAY_MS, feats(config, PLANT_2), None)
    assert late.is_new_matter
    assert late.cluster_id == R.cluster_id_for("c-002")


def test_window_slides_with_the_latest_report(config):
    index = R.MatterIndex(config)
    index.assign("c-001", T0, feats(config, PLANT_1), None)
    index.assign("c-002", T0 + 60 * DAY_MS, feats(config, PLANT_2), None)
    # 120 days after the first report but 60 after the latest one: still the same matter
    again = index.assign("c-003", T0 + 120 * DAY_MS, feats(config, PLANT_3), None)
    assert again.duplicate_of == "c-001"


def test_expire_drops_old_matters_and_frees_state(config):
    index = R.MatterIndex(config)
    index.assign("c-001", T0, feats(config, PLANT_1), None)
    index.assign("c-002", T0 + 50 * DAY_MS, feats(config, KTV), None)
    assert index.expire(T0 + 95 * DAY_MS) == [R.cluster_id_for("c-001")]
    assert len(index) == 1
    assert index.expire(T0 + 200 * DAY_MS) == [R.cluster_id_for("c-002")]
    assert len(index) == 0
    assert index.to_state()["matters"] == []


def test_state_round_trip_gives_same_assignments(config):
    index = R.MatterIndex(config)
    index.assign("c-001", T0, feats(config, PLANT_1), "r1")
    index.assign("c-002", T0 + DAY_MS, feats(config, GARAGE), "r2")
    state = json.loads(json.dumps(index.to_state()))
    copy = R.MatterIndex.from_state(pickle.loads(pickle.dumps(state)), config)
    assert len(copy) == 2
    later = [("c-003", PLANT_2), ("c-004", KTV), ("c-005", PLANT_3)]
    got_original = [index.assign(cid, T0 + 5 * DAY_MS, feats(config, msg), None) for cid, msg in later]
    got_copy = [copy.assign(cid, T0 + 5 * DAY_MS, feats(config, msg), None) for cid, msg in later]
    assert got_original == got_copy
    assert got_copy[0].duplicate_of == "c-001"
    assert got_copy[1].is_new_matter


def test_restore_matter_lets_a_new_report_join(config):
    source = R.MatterIndex(config)
    source.assign("c-001", T0, feats(config, PLANT_1), None)
    summary = json.loads(json.dumps(source.matter_summary(R.cluster_id_for("c-001"))))

    index = R.MatterIndex(config)
    index.restore_matter("m-restored", summary["first_complaint_id"], summary["last_seen_ms"],
                         summary["signature"], summary["entities"])
    got = index.assign("c-009", T0 + 2 * DAY_MS, feats(config, PLANT_2), None)
    assert got.cluster_id == "m-restored"
    assert got.duplicate_of == "c-001"
    assert not got.is_new_matter


def test_redelivered_complaint_keeps_its_matter(config):
    index = R.MatterIndex(config)
    index.assign("c-001", T0, feats(config, KTV), None)
    again = index.assign("c-001", T0, feats(config, KTV), None)
    assert again.cluster_id == R.cluster_id_for("c-001")
    assert len(index) == 1


# -- metrics ----------------------------------------------------------------------------------

def test_clustering_scores_by_hand():
    gold = {"a": "1", "b": "1", "c": "2"}
    predicted = {"a": "x", "b": "y", "c": "y"}
    s = R.clustering_scores(gold, predicted)
    assert s["pairwise_precision"] == 0.0
    assert s["pairwise_recall"] == 0.0
    assert s["bcubed_precision"] == pytest.approx(2 / 3)
    assert s["bcubed_recall"] == pytest.approx(2 / 3)
    perfect = R.clustering_scores(gold, {"a": "p", "b": "p", "c": "q"})
    assert perfect["bcubed_f1"] == 1.0 and perfect["pairwise_precision"] == 1.0


def test_cli_registers_evaluate_repeats(tmp_path, config):
    import argparse
    parser = argparse.ArgumentParser()
    R.add_subcommand(parser.add_subparsers(dest="command"))
    gold = tmp_path / "gold.jsonl"
    rows = [
        {"id": "1", "title": PLANT_1[0], "text": PLANT_1[1], "received_at": "2024-03-01T08:00:00", "cluster": "p"},
        {"id": "2", "title": PLANT_2[0], "text": PLANT_2[1], "received_at": "2024-03-03T08:00:00", "cluster": "p"},
        {"id": "3", "title": GARAGE[0], "text": GARAGE[1], "received_at": "2024-03-04T08:00:00", "cluster": "g"},
    ]
    gold.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = tmp_path / "scores.json"
    args = parser.parse_args(["evaluate-repeats", "--gold", str(gold), "--json-out", str(out)])
    assert args.func(args) == 0
    scores = json.loads(out.read_text(encoding="utf-8"))
    assert scores["bcubed_f1"] == 1.0


# -- real labelled data -----------------------------------------------------------------------

def _shared_repeats_path():
    root = os.environ.get("ENVLEADS_SHARED_DATA") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
    return os.path.join(root, "repeats_dev.jsonl")


@pytest.mark.skipif(not os.path.exists(_shared_repeats_path()), reason="shared labelled data absent")
def test_meets_targets_on_shared_repeats(config):
    with open(_shared_repeats_path(), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    result = R.evaluate_repeats(records, config)
    assert result["pairwise_precision"] >= 0.90
    assert result["pairwise_recall"] >= 0.80
    assert result["bcubed_f1"] >= 0.95
