"""Shape of the project's written region corpus (tests/data/regions_written, issue 23).

Checks only that the corpus is well formed: row counts, fields, gold codes that exist in envleads's
division table and agree with each other, every class present in both parts. No quality threshold:
how well envleads does on it is measured by bench/bench_regions_libraries.py.
"""
import json
from collections import Counter
from pathlib import Path

import pytest

from envleads.divisions import CITY, COUNTY, MUNICIPALITY_CODES, PROVINCE, load_divisions

CORPUS = Path(__file__).resolve().parent / "data" / "regions_written"
PARTS = ("dev", "locked")
MIN_ROWS = 110
CLASSES = {"easy", "city_and_district", "ethnic_short", "variant_character", "county_without_suffix",
           "same_name_with_cue", "same_name_no_cue", "traditional", "several_places", "no_place"}
# written later for development only (wd-137 on): no locked counterpart
DEV_ONLY_CLASSES = {"province_short", "zone_or_county_city", "renamed"}
DEALT = 124  # wd-001 .. wd-124 were dealt alternately with the locked part
# written on 2026-12-07 in one list per class and dealt alternately: wd-234..254 with wl-125..145,
# wd-262..267 with wl-146..151 (wd-255..261 are for development only)
SECOND_CLASSES = {"province_cue", "landmark_or_informal", "city_gap_district", "overlapping_names"}
SECOND_DEALT = {"dev": {*range(234, 255), *range(262, 268)}, "locked": range(125, 152)}
LEVELS = (PROVINCE, CITY, COUNTY)
# written on 2026-12-07 by an outside writer who never saw the rules (writer o), one list per class
# dealt alternately: wod-NNN (dev_wo) and wol-NNN (locked_wo, reporting only)
OUTSIDE_PARTS = ("dev_wo", "locked_wo")
# more outside writers with writer o's classes: p wrote dev_wp and r dev_wr (development), q wrote
# locked_wq, s locked_ws and t locked_wt (reporting only); written apart, so their class counts differ on purpose
SECOND_OUTSIDE_PARTS = ("dev_wp", "locked_wq", "dev_wr", "locked_ws", "locked_wt")
OUTSIDE_PREFIX = {"dev_wo": "wod-", "locked_wo": "wol-", "dev_wp": "wpd-", "locked_wq": "wql-",
                  "dev_wr": "wrd-", "locked_ws": "wsl-", "locked_wt": "wtl-"}
OUTSIDE_CLASSES = {"city_and_district", "short_or_variant", "same_name_with_cue", "same_name_no_cue",
                   "traditional", "several_places", "partial_or_no_place"}
ALL_PARTS = PARTS + OUTSIDE_PARTS + SECOND_OUTSIDE_PARTS


def _rows(part):
    with open(CORPUS / f"{part}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def table():
    return load_divisions()


@pytest.fixture(scope="module", params=ALL_PARTS)
def part(request):
    return request.param, _rows(request.param)


def test_row_counts_and_fields(part):
    name, rows = part
    assert len(rows) >= MIN_ROWS, f"{name}: {len(rows)} rows"
    for row in rows:
        assert {"id", "text", "gold", "class"} <= set(row), row.get("id")
        assert set(row) <= {"id", "text", "gold", "class", "note"}, row["id"]
        assert set(row["gold"]) == {"province", "city", "county", "adcode", "level"}, row["id"]
        assert isinstance(row["text"], str) and row["text"].strip(), row["id"]
        if name in OUTSIDE_PREFIX:
            assert row["id"].startswith(OUTSIDE_PREFIX[name]), row["id"]
            assert row["class"] in OUTSIDE_CLASSES, row["id"]
        else:
            assert row["class"] in CLASSES | SECOND_CLASSES | (DEV_ONLY_CLASSES if name == "dev" else set()), row["id"]


def test_ids_and_texts_unique_across_parts():
    rows = [row for part in ALL_PARTS for row in _rows(part)]
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({row["text"] for row in rows}) == len(rows)


def test_every_class_in_both_parts_with_similar_counts():
    counts = {part: Counter(row["class"] for row in _rows(part) if int(row["id"][3:]) <= DEALT) for part in PARTS}
    for cls in CLASSES:
        dev, locked = counts["dev"][cls], counts["locked"][cls]
        assert dev > 0 and locked > 0, cls
        assert abs(dev - locked) <= max(2, (dev + locked) // 5), (cls, dev, locked)


def test_second_dealt_classes_in_both_parts_with_equal_counts():
    """The passages of 2026-12-07 were dealt alternately per class: both parts hold every class
    about equally, and only those classes."""
    counts = {part: Counter(row["class"] for row in _rows(part) if int(row["id"][3:]) in SECOND_DEALT[part])
              for part in PARTS}
    assert set(counts["dev"]) == set(counts["locked"]) == SECOND_CLASSES
    for cls in SECOND_CLASSES:
        assert abs(counts["dev"][cls] - counts["locked"][cls]) <= 1, cls


def test_outside_parts_hold_the_same_classes_equally():
    """Writer o's passages were dealt alternately per class: both parts hold every class, within one row."""
    counts = {part: Counter(row["class"] for row in _rows(part)) for part in OUTSIDE_PARTS}
    assert set(counts["dev_wo"]) == set(counts["locked_wo"]) == OUTSIDE_CLASSES
    for cls in OUTSIDE_CLASSES:
        assert abs(counts["dev_wo"][cls] - counts["locked_wo"][cls]) <= 1, cls


def test_second_outside_writers_cover_every_class():
    """Writers p, q, r and s wrote apart (not one list dealt alternately): their counts per class may
    differ, but each part holds every one of writer o's classes, with a few rows at least."""
    for part in SECOND_OUTSIDE_PARTS:
        counts = Counter(row["class"] for row in _rows(part))
        assert set(counts) == OUTSIDE_CLASSES, part
        assert min(counts.values()) >= 10, (part, counts)


def test_gold_codes_exist_and_agree(part, table):
    name, rows = part
    for row in rows:
        gold, rid = row["gold"], row["id"]
        if gold["level"] is None:
            assert all(gold[level] is None for level in LEVELS) and gold["adcode"] is None, rid
            continue
        assert gold["level"] in LEVELS, rid
        assert gold[gold["level"]] == gold["adcode"], rid
        for level in LEVELS:
            code = gold[level]
            if code is not None:
                assert table.get(code) is not None, f"{rid}: {code} not in the division table"
        division = table.get(gold["adcode"])
        assert division.level == gold["level"], rid
        province = gold["province"]
        assert province is not None and table.get(province).level == PROVINCE, rid
        assert gold["adcode"][:2] == province[:2], rid
        if gold["level"] == PROVINCE:
            assert gold["city"] is None and gold["county"] is None, rid
        elif gold["level"] == CITY:
            assert gold["county"] is None, rid
            assert gold["city"] == gold["adcode"] and gold["city"][:2] + "0000" == province, rid
        else:
            county, city = gold["county"], gold["city"]
            if province in MUNICIPALITY_CODES:
                assert city == province, f"{rid}: a municipality's city repeats it"
            elif division.city_code is None:  # county-level city directly under its province
                assert city is None, rid
            else:
                assert city == county[:4] + "00" == division.city_code, rid
                assert table.get(city).level == CITY, rid


def test_class_gold_levels():
    for part in ALL_PARTS:
        for row in _rows(part):
            if row["class"] == "no_place":
                assert row["gold"]["level"] is None, row["id"]
            if row["class"] in ("same_name_with_cue", "city_and_district", "county_without_suffix",
                                "city_gap_district", "overlapping_names"):
                assert row["gold"]["level"] == COUNTY, row["id"]
            if row["class"] == "same_name_no_cue":
                assert row["gold"]["level"] in (None, PROVINCE), row["id"]
