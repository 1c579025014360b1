"""The lead feed: filters, feed order and formats as pure functions, then ``tail`` and ``export`` end
to end over the real broker, checked against the leads the stream produced and scanned for identity."""
import argparse
import json
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from envleads import feed, schemas
from envleads.cli import feed as feed_cli
from envleads.divisions import load_divisions
from envleads.leads import lead_from_avro_dict, lead_to_avro_dict
from envleads.records import Lead, ScoreReason
from kafka_scan import scan_topic

CST = timezone(timedelta(hours=8))
TIERS = ("urgent", "high", "normal", "low")


def ms(*args):
    return int(datetime(*args, tzinfo=CST).timestamp() * 1000)


NOW = ms(2025, 3, 1, 12, 0)
NANJING_GULOU = {"province": "江苏省", "city": "南京市", "county": "鼓楼区", "adcode": "320106", "level": "county"}
JIANGSU = {"province": "江苏省", "city": None, "county": None, "adcode": "320000", "level": "province"}
HANGZHOU_SHANGCHENG = {"province": "浙江省", "city": "杭州市", "county": "上城区", "adcode": "330102", "level": "county"}


def make_lead(lead_id, tier="normal", score=10.0, overdue=False, last_seen_ms=ms(2025, 2, 1), **fields):
    values = dict(
        lead_id=lead_id, cluster_id=lead_id[5:], first_complaint_id="RX1", complaint_ids=["RX1"], report_count=1,
        reporter_keys=["rk-should-never-show"], distinct_reporters=1, first_seen_ms=ms(2025, 1, 20),
        last_seen_ms=last_seen_ms, pollution_types=["air"], region=NANJING_GULOU, department="南京市生态环境局",
        routing_rule="county_environment", score=score, tier=tier, reasons=[ScoreReason("recency", 1.0, "fresh")],
        campaigns=[], summary="化工厂夜间排放刺鼻废气。", matter_signature=[1, 2, 3], matter_entities=[],
        updated_at_ms=last_seen_ms, channel="phone",
        deadline_ms=NOW - 3_600_000 if overdue else NOW + 3_600_000)
    values.update(fields)
    return Lead(**values)


# ---- pure functions ------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ("320100", {"gulou"}),             # a full city code means everything inside the city
    ("3201", {"gulou"}),
    ("32", {"gulou", "jiangsu"}),
    ("320106", {"gulou"}),
    ("南京", {"gulou"}),
    ("江苏省", {"gulou", "jiangsu"}),
    ("上城区", {"hangzhou"}),
    ("33", {"hangzhou"}),
])
def test_region_filter_takes_names_and_code_prefixes(query, expected):
    leads = [make_lead("lead-gulou"), make_lead("lead-jiangsu", region=JIANGSU),
             make_lead("lead-hangzhou", region=HANGZHOU_SHANGCHENG), make_lead("lead-nowhere", region=None)]
    kept = {lead.lead_id[5:] for lead in leads if feed.matches(lead, feed.make_filter(regions=[query]), NOW)}
    assert kept == expected


def test_type_campaign_score_and_overdue_filters():
    water = make_lead("lead-water", pollution_types=["water", "air"], score=30.0, overdue=True,
                      campaigns=["clear_water.drinking_sources"])
    air = make_lead("lead-air", pollution_types=["air"], score=12.0, campaigns=["blue_sky.yangtze_delta"])
    noise = make_lead("lead-noise", pollution_types=["noise"], score=5.0)
    leads = [water, air, noise]

    def kept(**kwargs):
        return [lead.lead_id for lead in leads if feed.matches(lead, feed.make_filter(**kwargs), NOW)]

    assert kept(types=["water"]) == ["lead-water"]
    assert kept(types=["noise,water"]) == ["lead-water", "lead-noise"]
    assert kept(min_score=12) == ["lead-water", "lead-air"]
    assert kept(campaigns=["blue_sky"]) == ["lead-air"]
    assert kept(campaigns=["blue"]) == []  # a prefix is a whole id segment
    assert kept(overdue_only=True) == ["lead-water"]
    assert kept(types=["air"], min_score=20) == ["lead-water"]


def test_an_unknown_type_is_rejected_by_name():
    with pytest.raises(ValueError, match="smell"):
        feed.make_filter(types=["smell"])


def test_overdue_leads_come_first_within_a_tier_but_never_above_a_higher_tier():
    leads = [
        make_lead("lead-e", tier="low", score=90.0, overdue=True),
        make_lead("lead-c", tier="high", score=60.0),
        make_lead("lead-d", tier="high", score=40.0, overdue=True),
        make_lead("lead-a", tier="urgent", score=30.0),
        make_lead("lead-b", tier="high", score=50.0, overdue=True),
        make_lead("lead-f", tier="high", score=50.0, overdue=True, last_seen_ms=ms(2025, 2, 10)),
        make_lead("lead-v1", tier="high", score=70.0, deadline_ms=None),  # no deadline: never overdue
    ]
    ranked = [lead.lead_id for lead in feed.rank_leads(leads, NOW)]
    assert ranked == ["lead-a", "lead-f", "lead-b", "lead-d", "lead-v1", "lead-c", "lead-e"]


def test_rank_index_tracks_arrivals_updates_and_deadlines_passing():
    index = feed.RankIndex()
    assert index.update(make_lead("lead-a", tier="low", score=5.0), NOW) == 1
    assert index.update(make_lead("lead-b", tier="urgent", score=20.0), NOW) == 1
    assert index.update(make_lead("lead-c", tier="normal", score=9.0, deadline_ms=NOW + 60_000), NOW) == 2
    assert index.update(make_lead("lead-d", tier="normal", score=15.0, deadline_ms=NOW + 7_200_000), NOW) == 2
    # Two minutes later lead-c is overdue: among normal leads it now comes first (b, c, d, e, a).
    assert index.update(make_lead("lead-e", tier="normal", score=12.0, deadline_ms=NOW + 7_200_000),
                        NOW + 120_000) == 4
    assert index.update(make_lead("lead-c", tier="normal", score=9.5, deadline_ms=NOW + 60_000),
                        NOW + 120_000) == 2
    assert index.update(make_lead("lead-a", tier="urgent", score=25.0), NOW + 120_000) == 1  # an update moves it
    assert len(index) == 5
    index.discard("lead-b")
    assert index.update(make_lead("lead-f", tier="urgent", score=21.0), NOW + 120_000) == 2


def test_a_lead_line_carries_what_a_team_needs():
    lead = make_lead("lead-m-1", tier="urgent", score=88.5, overdue=True, pollution_types=["water", "air"],
                     report_count=5, reasons=[ScoreReason("severity.covert_discharge", 20.0, "x"),
                                              ScoreReason("receptor.drinking_water", 15.0, "x"),
                                              ScoreReason("repeats", 12.0, "5 reports"),
                                              ScoreReason("night_time", 8.0, "x")])
    line = feed.format_lead_line(lead, 3, NOW, "NEW")
    assert line.startswith("NEW #3 ")
    for part in ("urgent", "88.5", "water,air", "南京市鼓楼区", "南京市生态环境局", "5 reports", "OVERDUE",
                 "severity.covert_discharge +20, receptor.drinking_water +15, repeats +12", "[lead-m-1]"):
        assert part in line
    assert "night_time" not in line and "rk-" not in line
    assert "OVERDUE" not in feed.format_lead_line(lead._replace(deadline_ms=NOW + 1), 3, NOW)


@pytest.mark.parametrize("region, expected", [
    (NANJING_GULOU, "南京市鼓楼区"), (JIANGSU, "江苏省"), (None, "-"),
    ({"province": "北京市", "city": "北京市", "county": "朝阳区", "adcode": "110105", "level": "county"}, "北京市朝阳区"),
    ({"province": "河南省", "city": None, "county": "济源市", "adcode": "419001", "level": "county"}, "济源市"),
])
def test_place_name(region, expected):
    assert feed.place_name(region) == expected


def test_the_json_form_drops_reporter_keys_and_reads_back_as_a_lead():
    lead = make_lead("lead-m-1", overdue=True)
    record = feed.lead_to_feed_dict(lead, 7, NOW)
    assert list(record)[:2] == ["rank", "overdue"] and record["rank"] == 7 and record["overdue"] is True
    assert "reporter_keys" not in record and "matter_signature" not in record
    assert "rk-should-never-show" not in json.dumps(record)
    assert lead_from_avro_dict(record) == lead._replace(reporter_keys=[], matter_signature=[])


def test_csv_rows_keep_excel_from_running_citizen_text_as_a_formula():
    lead = make_lead("lead-m-1", summary="=HYPERLINK(\"http://x\")投诉", matter_entities=["company:宏达"])
    row = feed.lead_to_csv_row(lead, 1, NOW)
    assert row["summary"] == "'=HYPERLINK(\"http://x\")投诉"
    assert row["matter_entities"] == "company:宏达"
    assert list(row) == list(feed.CSV_COLUMNS)


def test_no_csv_cell_starts_a_formula_whoever_chose_its_text():
    """Channel and complaint ids come from the submitter too (issue 26: they came out as live
    formulas); every text cell is neutralised, numbers stay numbers."""
    lead = make_lead("lead-m-1", channel="=cmd|' /C calc'!A0", first_complaint_id="+HYPERLINK(\"http://x\")",
                     complaint_ids=["@SUM(A1)", "c-2"], department="-2+3")
    row = feed.lead_to_csv_row(lead, 1, NOW)
    texts = [value for value in row.values() if isinstance(value, str)]
    assert texts and not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in texts)
    assert row["channel"] == "'=cmd|' /C calc'!A0" and row["complaint_ids"].startswith("'@SUM")
    assert isinstance(row["score"], float) and isinstance(row["report_count"], int)


def test_a_point_sits_at_the_division_centre_or_its_parents():
    table = load_divisions()
    gulou = feed.lead_location(NANJING_GULOU, table)
    assert (gulou.adcode, gulou.level) == ("320106", "county")
    assert (gulou.longitude, gulou.latitude) == (table.get("320106").longitude, table.get("320106").latitude)
    # 昆玉市 (659009) has no centre in the table: the point falls back to 新疆 (650000).
    kunyu = feed.lead_location({"province": "新疆维吾尔自治区", "city": None, "county": "昆玉市",
                                "adcode": "659009", "level": "county"}, table)
    assert (kunyu.adcode, kunyu.level) == ("650000", "province")
    # A code not in the table (an abolished county) falls back by prefix.
    assert feed.lead_location({"adcode": "320199", "level": "county"}, table).adcode == "320100"
    assert feed.lead_location(None, table) is None


def test_since_is_read_as_china_standard_time_without_an_offset():
    assert feed.parse_since("2025-01-10T08:00") == 1736467200000
    assert feed.parse_since("2025-01-10T00:00+00:00") == 1736467200000
    with pytest.raises(ValueError, match="ISO-8601"):
        feed.parse_since("yesterday")


# ---- end to end over the real broker ------------------------------------------------------------

pytest_kafka = pytest.mark.kafka
COUNT = 300


def _scan(bootstrap_servers, topic, idle_s=2.0):
    return sorted(scan_topic(bootstrap_servers, topic, idle_s),
                  key=lambda r: (r.timestamp, r.partition, r.offset))


@pytest.fixture(scope="module")
def streamed(kafka_broker):
    """Generated complaints through the stream on fresh topics: the lead records it wrote, in order."""
    import uuid

    from envleads.generator import generate_events
    from envleads.ops.broker import create_topics
    from envleads.pipelines.rounds.loop import run_stream
    from envleads.pipelines.rounds.outputs import Topics
    from envleads.pipelines.kafka_edge.write import produce_lines

    suffix = uuid.uuid4().hex[:8]
    topics = Topics(*(f"test.feed.{role}.{suffix}" for role in ("raw", "enriched", "leads", "dead_letter")))
    bootstrap = kafka_broker.bootstrap_servers
    create_topics(bootstrap, [topics.raw, topics.enriched, topics.leads, topics.dead_letter], partitions=2)
    events = list(generate_events(COUNT, seed=23))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENVLEADS_PSEUDONYM_KEY", "feed-test-key")
        produce_lines(bootstrap, topics.raw, (event.line for event in events))
        run_stream(bootstrap, topics, ["--runner=FnApiRunner"], group_id="feed-test", max_round_events=120,
                   stop_when_idle_s=2.0, poll_wait_s=1.0)
    records = [(r.key.decode(), lead_from_avro_dict(schemas.decode(schemas.LEADS, r.value)))
               for r in _scan(bootstrap, topics.leads)]
    current = {}
    for key, lead in records:
        current[key] = lead
    identities = {value for event in events for value in (event.truth.get("reporter_phone"),
                                                          event.truth.get("reporter_id_number")) if value}
    assert len(current) > 50 and len(records) > len(current), "the data must hold leads and lead updates"
    assert len(identities) > 50
    pseudonyms = {key for lead in current.values() for key in lead.reporter_keys}
    assert pseudonyms, "the stream's leads carry reporter keys, which the feed must drop"
    return {"bootstrap": bootstrap, "topic": topics.leads, "records": records, "current": current,
            "identities": identities, "pseudonyms": pseudonyms}


def expected_key(lead, now_ms):
    """The documented feed order, written out independently of the code under test."""
    overdue = lead.deadline_ms is not None and lead.deadline_ms < now_ms
    return (TIERS.index(lead.tier), not overdue, -lead.score, -lead.last_seen_ms, lead.lead_id)


def assert_no_identity(text, streamed):
    leaks = sorted(value for value in streamed["identities"] | streamed["pseudonyms"] if value in text)
    assert leaks == []


def _lead_key(line):
    """The lead key at the end of a tail line's first row (an update's second row says why the
    repeat joined)."""
    return line.split("\n")[0].split("[")[-1].rstrip("]")


def _tail(streamed, **kwargs):
    lines = []
    kwargs.setdefault("idle_exit_s", 2.0)
    count = feed.tail_leads(streamed["bootstrap"], streamed["topic"], lines.append, **kwargs)
    assert count == len(lines)
    return lines


@pytest_kafka
def test_tail_json_from_the_beginning_replays_every_lead_version_with_its_rank(streamed):
    now_ms = sorted(lead.deadline_ms for lead in streamed["current"].values())[len(streamed["current"]) // 2]
    lines = _tail(streamed, json_output=True, from_beginning=True, now_fn=lambda: now_ms)
    printed = [json.loads(line) for line in lines]
    assert len(printed) == len(streamed["records"])
    # Records of one lead keep their order (one key, one partition); across partitions the order in
    # which tail sees them may differ from the scan's, so each print is matched to its lead's next version.
    versions = {}
    for key, lead in streamed["records"]:
        versions.setdefault(key, []).append(lead)
    seen = {}
    for p in printed:
        lead = versions[p["lead_id"]].pop(0)
        assert p["status"] == ("upd" if lead.lead_id in seen else "new")
        seen[lead.lead_id] = lead
        expected_rank = 1 + sum(expected_key(other, now_ms) < expected_key(lead, now_ms) for other in seen.values())
        assert p["rank"] == expected_rank
        assert p["score"] == lead.score and p["overdue"] == (lead.deadline_ms < now_ms)
        assert "reporter_keys" not in p and "matter_signature" not in p
    assert not any(versions.values())
    assert {p["overdue"] for p in printed} == {True, False}
    assert_no_identity("\n".join(lines), streamed)


@pytest_kafka
def test_tail_filters_and_starting_points(streamed):
    water = [lead for _, lead in streamed["records"] if "water" in lead.pollution_types and lead.score >= 10]
    assert water, "the generated data must hold water leads scoring 10 or more"
    lines = _tail(streamed, from_beginning=True, lead_filter=feed.make_filter(types=["water"], min_score=10))
    assert sorted(_lead_key(line) for line in lines) == sorted(lead.lead_id for lead in water)
    assert all("water" in line for line in lines)
    assert_no_identity("\n".join(lines), streamed)
    # --since: nothing was written after tomorrow, everything after 2000.
    tomorrow = int(time.time() * 1000) + 86_400_000
    assert _tail(streamed, since_ms=tomorrow, idle_exit_s=2.0) == []
    assert len(_tail(streamed, since_ms=ms(2000, 1, 1))) == len(streamed["records"])
    # Latest (the default) prints only what arrives after the start.
    assert _tail(streamed, idle_exit_s=2.0) == []


@pytest_kafka
def test_tail_with_a_group_resumes_after_what_it_printed(streamed, kafka_broker, tmp_topics):
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    topic = tmp_topics("leads")["leads"]
    leads = list(streamed["current"].values())[:5]
    producer = KafkaProducer(**client_kwargs(kafka_broker.bootstrap_servers))

    def produce(batch):
        for lead in batch:
            producer.send(topic, key=lead.lead_id.encode(), value=schemas.encode(schemas.LEADS, lead_to_avro_dict(lead)))
        producer.flush()

    produce(leads[:3])
    group = "feed-test-" + topic[-8:]
    mine = dict(streamed, topic=topic)
    assert len(_tail(mine, from_beginning=True, group_id=group, idle_exit_s=2.0)) == 3
    assert _tail(mine, group_id=group, idle_exit_s=2.0) == []
    produce(leads[3:])
    resumed = _tail(mine, group_id=group, idle_exit_s=2.0)
    producer.close()
    assert [_lead_key(line) for line in resumed] == [lead.lead_id for lead in leads[3:]]


@pytest_kafka
def test_tail_from_latest_prints_only_leads_written_after_it_started(streamed, kafka_broker, tmp_topics):
    import threading

    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    topic = tmp_topics("leads")["leads"]
    old, new = list(streamed["current"].values())[:4], list(streamed["current"].values())[4]
    producer = KafkaProducer(**client_kwargs(kafka_broker.bootstrap_servers))
    for lead in old:  # one batch: the embedded broker's end offset lands inside it
        producer.send(topic, key=lead.lead_id.encode(), value=schemas.encode(schemas.LEADS, lead_to_avro_dict(lead)))
    producer.flush()
    lines = []
    tail = threading.Thread(target=lambda: lines.extend(_tail(dict(streamed, topic=topic), idle_exit_s=5.0)))
    tail.start()
    time.sleep(2.0)
    producer.send(topic, key=new.lead_id.encode(), value=schemas.encode(schemas.LEADS, lead_to_avro_dict(new)))
    producer.flush()
    producer.close()
    tail.join(timeout=30)
    assert [_lead_key(line) for line in lines] == [new.lead_id]
    assert lines[0].startswith("NEW #1 ")


def _run_cli(argv):
    parser = argparse.ArgumentParser(prog="envleads")
    feed_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


CSV_COLUMNS = [
    "rank", "overdue", "tier", "score", "pollution_types", "province", "city", "county", "adcode",
    "region_level", "department", "report_count", "distinct_reporters", "first_seen_cst", "last_seen_cst",
    "deadline_cst", "channel", "campaigns", "reasons", "summary", "lead_id", "first_complaint_id",
    "complaint_ids", "matter_entities", "routing_rule", "updated_at_cst", "joins",
]


@pytest_kafka
def test_export_from_kafka_and_from_a_leads_file(streamed, tmp_path):
    current = streamed["current"]
    kafka_args = ["--bootstrap-servers", streamed["bootstrap"], "--leads-topic", streamed["topic"], "--idle", "1"]
    for fmt in ("csv", "jsonl", "geojson"):
        assert _run_cli(["export", *kafka_args, "--format", fmt, "--output", str(tmp_path / f"leads.{fmt}")]) == 0
    # The file `envleads batch --leads` writes: rank, then every lead field (reporter keys included).
    batch_file = tmp_path / "batch-leads.jsonl"
    batch_file.write_text("".join(json.dumps(dict(rank=0, **lead_to_avro_dict(lead)), ensure_ascii=False) + "\n"
                                  for lead in current.values()), encoding="utf-8")
    assert _run_cli(["export", "--input", str(batch_file), "--format", "jsonl",
                     "--output", str(tmp_path / "from-file.jsonl")]) == 0
    now_ms = int(time.time() * 1000)

    exported = [json.loads(line) for line in (tmp_path / "leads.jsonl").read_text("utf-8").splitlines()]
    assert [e["rank"] for e in exported] == list(range(1, len(current) + 1))
    expected_order = sorted(current.values(), key=lambda lead: expected_key(lead, now_ms))
    assert [e["lead_id"] for e in exported] == [lead.lead_id for lead in expected_order]
    assert all(e["score"] == current[e["lead_id"]].score for e in exported)
    assert all("reporter_keys" not in e for e in exported)
    assert (tmp_path / "from-file.jsonl").read_text("utf-8") == (tmp_path / "leads.jsonl").read_text("utf-8")

    raw_csv = (tmp_path / "leads.csv").read_bytes()
    assert raw_csv.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    table = pd.read_csv(tmp_path / "leads.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(table.columns) == CSV_COLUMNS
    assert list(table["lead_id"]) == [lead.lead_id for lead in expected_order]
    for row in table.itertuples():
        lead = current[row.lead_id]
        assert row.summary == lead.summary  # Chinese text intact (no summary starts with a formula sign)
        assert row.county == ((lead.region or {}).get("county") or "")
        assert row.pollution_types == ";".join(lead.pollution_types)
        assert row.complaint_ids == ";".join(lead.complaint_ids)
    assert any("市" in value or "区" in value or "县" in value for value in table["county"])

    collection = json.loads((tmp_path / "leads.geojson").read_text("utf-8"))
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(current)
    divisions = load_divisions()
    located = 0
    for feature in collection["features"]:
        lead = current[feature["id"]]
        assert feature["properties"]["lead_id"] == lead.lead_id
        region = lead.region
        if region and divisions.get(region["adcode"]) and divisions.get(region["adcode"]).longitude is not None:
            division = divisions.get(region["adcode"])
            assert feature["geometry"]["coordinates"] == [round(division.longitude, 6), round(division.latitude, 6)]
            assert feature["properties"]["location_level"] == region["level"]
            located += 1
        if region is None:
            assert feature["geometry"] is None
    assert located > 20

    everything = "\n".join((tmp_path / name).read_text("utf-8") for name in
                           ("leads.csv", "leads.jsonl", "leads.geojson", "from-file.jsonl"))
    assert_no_identity(everything, streamed)
    assert "reporter_keys" not in everything


@pytest_kafka
def test_export_filters_keep_their_order_and_rank_from_one(streamed, tmp_path):
    output = tmp_path / "air.jsonl"
    assert _run_cli(["export", "--bootstrap-servers", streamed["bootstrap"], "--leads-topic", streamed["topic"],
                     "--idle", "1", "--format", "jsonl", "--output", str(output), "--type", "air", "--min-score", "8"]) == 0
    exported = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
    expected = [lead for lead in streamed["current"].values() if "air" in lead.pollution_types and lead.score >= 8]
    assert expected and len(exported) == len(expected)
    assert [e["rank"] for e in exported] == list(range(1, len(expected) + 1))
    assert {e["lead_id"] for e in exported} == {lead.lead_id for lead in expected}
