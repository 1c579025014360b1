"""Repeat-petition quality through the product's own path: ``envleads batch`` (the Beam engine and
the rounds engine) with default settings, on the project's confusable corpus and on the shared real
board. The thresholds sit a few points under the figures measured when the rules were chosen (on
these development parts), so a change that merges other sources or loses repeats fails here.
``locked_*`` files are never scored here: ``bench/bench_repeats_product.py`` reports them.
"""
import collections
import glob
import json
import os
from datetime import datetime

import pytest

from envleads import repeats_evaluation as E
from envleads.repeats_config import load_repeat_config
from envleads.repeats_features import states_pollution

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "data", "confusable")
REAL = os.environ.get("ENVLEADS_SHARED_DATA") or os.path.join(HERE, "..", "..", "shared", "data")
REAL_REPEATS = os.path.join(REAL, "repeats_dev.jsonl")


def _files(part):
    return sorted(p for p in glob.glob(os.path.join(CORPUS, f"{part}_*.jsonl")) if not p.endswith(".truth.jsonl"))


def test_the_corpus_is_what_its_readme_says():
    """At least 400 complaints, aligned truth, repeat matters spanning 60+ days, non-environmental
    complaints naming the same places, a development and a locked part by other writers."""
    dev, locked = _files("dev"), _files("locked")
    assert len(dev) >= 3 and len(locked) >= 2
    events, truth = E.corpus_gold(dev + locked)
    assert len(events) >= 400 and len(truth) == len(events)
    assert len({e["complaint_id"] for e in events}) == len(events)
    by_matter = collections.defaultdict(list)
    kinds = collections.defaultdict(set)  # matter -> whether its complaints are environmental
    for event in events:
        row = truth[event["complaint_id"]]
        by_matter[row["matter_id"]].append(datetime.fromisoformat(event["received_at"]))
        kinds[row["matter_id"]].add(row["environmental"])
    repeats = [times for times in by_matter.values() if len(times) > 1]
    assert len(repeats) >= 40
    assert sum(1 for times in repeats if (max(times) - min(times)).days >= 60) >= 20
    non_env = [cid for cid, row in truth.items() if row["environmental"] is False]
    # a non-environmental letter sent twice is one matter; never one with an environmental complaint
    assert len(non_env) >= 40 and all(kinds[truth[cid]["matter_id"]] == {False} for cid in non_env)


@pytest.mark.parametrize("engine, precision, recall", [("beam", 0.80, 0.38), ("rounds", 0.80, 0.38)])
def test_confusable_development_part_through_batch(engine, precision, recall):
    """Thresholds hold with the default model trained with or without ``../shared`` (its types
    decide what is environmental, so the figures move by a few points between the two). The floors
    are set a few points under repeats-2026.13 on writers a–i (0.871 / 0.422): h and i, measured
    as the locked part before, joined development on 2026-12-07 and brought its recall down."""
    events, truth = E.corpus_gold(_files("dev"))
    rows, _ = E.run_product(events, engine)
    report = E.score_matters(rows, truth)
    assert report["rows_missing"] == 0
    assert report["pairwise_precision"] >= precision, report
    assert report["pairwise_recall"] >= recall, report
    # the rule itself: a complaint the pipeline found not environmental shares a matter with one it
    # found environmental only when it says what only a pollution report says (偷排, 酸味) and names
    # the matter's source; against the gold, the classifier's errors may add one
    config = load_repeat_config()
    text = {event["complaint_id"]: f"{event.get('title') or ''}。{event['text']}" for event in events}
    by_matter = collections.defaultdict(list)
    for row in rows:
        by_matter[row["cluster_id"]].append(row)
    for members in by_matter.values():
        if any(row["environmental"] for row in members):
            assert all(row["environmental"] or states_pollution(text[row["complaint_id"]], config)
                       for row in members), members
    assert report["non_environmental_in_multi_report_matters"] <= 1, report


@pytest.mark.skipif(not os.path.exists(REAL_REPEATS), reason="shared labelled data absent")
@pytest.mark.parametrize("jurisdiction", [None, "430100"])
def test_real_board_through_batch(jurisdiction):
    report = E.evaluate([REAL_REPEATS], jurisdiction)
    assert report["pairwise_precision"] >= 0.95, report
    assert report["pairwise_recall"] >= 0.75, report
    assert report["bcubed_f1"] >= 0.92, report


def test_evaluate_repeats_command_scores_what_batch_wrote(tmp_path):
    """The command on a small board written for this test: two reports of one plant (its name
    written by sound once), another plant of the same trade on the same road, a job question."""
    rows = [
        {"id": "1", "title": "", "text": "延政西路上的恒丰电镀厂夜里偷排废水，河水发绿发臭，鱼都死了", "cluster": "a"},
        {"id": "2", "title": "恒峰电镀偷排", "text": "恒峰电镀又在往河里排废水，一股酸味，请环保部门查处", "cluster": "a"},
        {"id": "3", "title": "", "text": "延政西路东头的华宇电镀厂废水直排进河里，河水发黑，请查处", "cluster": "b"},
        {"id": "4", "title": "", "text": "请问恒丰电镀厂招不招普工，工资待遇怎么样", "cluster": "c"},
    ]
    gold = tmp_path / "board.jsonl"
    gold.write_text("\n".join(json.dumps({**r, "received_at": f"2026-03-0{r['id']}T09:00:00+08:00"},
                                         ensure_ascii=False) for r in rows), encoding="utf-8")
    out = tmp_path / "scores.json"
    import argparse

    from envleads.cli import evaluation as evaluation_cli
    parser = argparse.ArgumentParser()
    evaluation_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate-repeats", "--gold", str(gold), "--jurisdiction", "320400",
                              "--json-out", str(out)])
    assert args.func(args) == 0
    scores = json.loads(out.read_text(encoding="utf-8"))
    assert scores["rows"] == 4 and scores["gold_pairs"] == 1
    assert scores["pairwise_precision"] == 1.0 and scores["pairwise_recall"] == 1.0, scores


def test_every_merge_in_the_batch_leads_says_why():
    """Issue 21 item 5: each repeat in a lead of ``envleads batch --leads`` lists its evidence,
    the shared name when a name joined it, and its text similarity."""
    events, _ = E.corpus_gold(_files("dev"))
    rows, leads = E.run_product(events)
    merged = [lead for lead in leads if lead["report_count"] > 1]
    assert merged
    for lead in merged:
        joins = lead["joins"]
        assert len(joins) == min(lead["report_count"] - 1, 50)
        # every report but the matter's first (the first assigned: not always the earliest, since
        # complaints of no known city are assigned after the cities')
        assert {j["complaint_id"] for j in joins} <= set(lead["complaint_ids"])
        for join in joins:
            assert join["evidence"].startswith("text")
            named = join["evidence"] in ("text+entity", "text+title_entity", "text+trade_name", "text+location",
                                         "text+descriptor")
            assert (join["shared"] is not None) == named, join


@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_reports_of_one_source_at_every_depth_of_place_are_one_matter(engine):
    """Issue 21, item 2: a report resolved to the district, one resolved only to the city, one
    placed by nothing and one placed only by the intake jurisdiction, all of one named plant, end
    in one matter through ``envleads batch``; an electroplating shop's noise in the same town, told
    once with its district and once with no place, is another matter."""
    events = E.read_jsonl(os.path.join(HERE, "data", "blocking_depths.jsonl"))
    rows, _ = E.run_product(events, engine)
    matter = {row["complaint_id"]: row["cluster_id"] for row in rows}
    level = {row["complaint_id"]: (row["region"] or {}).get("level") for row in rows}
    assert (level["jq-district"], level["jq-city"], level["jq-unplaced"], level["jq-intake"]) == \
        ("county", "city", None, None)
    plant = {matter[cid] for cid in ("jq-district", "jq-city", "jq-unplaced", "jq-intake")}
    shop = {matter[cid] for cid in ("hd-district", "hd-unplaced")}
    assert len(plant) == 1 and len(shop) == 1 and plant != shop
