"""The dashboard: its JSON (pure functions and over HTTP), then a real headless Chromium driving the
page over leads on the real broker: the top lead and its reasons, a live update, filters, no
identity, and a screenshot for the docs (``docs/screenshots/dashboard.png``)."""
import json
import os
import random
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from envleads import schemas
from envleads.dashboard import api
from envleads.dashboard.server import Dashboard
from envleads.divisions import COUNTY, load_divisions
from envleads.feed import make_filter
from envleads.leads import lead_to_avro_dict
from envleads.records import Lead, ScoreReason

CST = timezone(timedelta(hours=8))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_PACKAGES = ("chromium", "chromium-driver")
CJK_FONT_PACKAGE = "fonts-wqy-zenhei"  # without a CJK font the screenshot shows boxes for Chinese
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "dashboard.png"
PSEUDONYM = "rk-dashboard-test-"


def ms(*args):
    return int(datetime(*args, tzinfo=CST).timestamp() * 1000)


NOW = ms(2025, 3, 1, 12, 0)
GULOU = {"province": "江苏省", "city": "南京市", "county": "鼓楼区", "adcode": "320106", "level": "county"}


def make_lead(lead_id, reasons, tier, overdue, **fields):
    values = dict(
        lead_id=lead_id, cluster_id=lead_id[5:], first_complaint_id="RX2025022000000001",
        complaint_ids=["RX2025022000000001"], report_count=1, reporter_keys=[PSEUDONYM + lead_id],
        distinct_reporters=1, first_seen_ms=ms(2025, 2, 20, 9), last_seen_ms=ms(2025, 2, 20, 9),
        pollution_types=["air"], region=GULOU, department="南京市生态环境局", routing_rule="county_environment",
        score=round(sum(r.points for r in reasons), 2), tier=tier, reasons=reasons, campaigns=[],
        summary="反映附近工厂排放刺鼻废气。", matter_signature=[7, 8], matter_entities=[],
        updated_at_ms=ms(2025, 2, 20, 9), channel="phone",
        deadline_ms=NOW - 86_400_000 if overdue else NOW + 86_400_000)
    values.update(fields)
    return Lead(**values)


TOP_REASONS = [
    ScoreReason("override.drinking_water_source", 0.0, "饮用水水源保护区: urgent whatever the score"),
    ScoreReason("severity.covert_discharge", 25.0, "behaviour named in a report"),
    ScoreReason("receptor.drinking_water", 20.0, "sensitive receptor named"),
    ScoreReason("repeats", 18.0, "8 reports"),
    ScoreReason("distinct_reporters", 12.0, "5 reporters"),
    ScoreReason("concentrated_repeat", 10.0, "8 reports >= 3: supervision"),
    ScoreReason("verifiability.resolved_county", 6.5, "county 320106"),
]
TOP = make_lead(
    "lead-m-top", TOP_REASONS, "urgent", overdue=True, pollution_types=["water", "solid_waste"],
    report_count=8, distinct_reporters=5, first_seen_ms=ms(2025, 2, 18, 23, 10), last_seen_ms=ms(2025, 2, 27, 6),
    complaint_ids=["RX2025021800000011", "WX2025021900000042", "RX2025022200000108", "WB2025022700000187"],
    summary="[姓名]来电反映：秦淮河边某化工厂夜里通过暗管往河里偷排废水，水面发黑发臭，下游就是取水口。",
    campaigns=["clear_water.drinking_sources"], matter_entities=["company:宏达化工", "road:江东北路"],
    reporter_keys=[PSEUDONYM + "top-1", PSEUDONYM + "top-2"])
NEW = make_lead(
    "lead-m-new", [ScoreReason("severity.hazardous_waste", 30.0, "behaviour named in a report"),
                   ScoreReason("receptor.school", 20.0, "sensitive receptor named"),
                   ScoreReason("repeats", 24.0, "16 reports"), ScoreReason("distinct_reporters", 25.0, "12 reporters")],
    "urgent", overdue=True, pollution_types=["solid_waste", "soil"], report_count=16, distinct_reporters=12,
    region={"province": "广东省", "city": "深圳市", "county": "宝安区", "adcode": "440306", "level": "county"},
    department="深圳市生态环境局宝安管理局", summary="学校旁空地夜间倾倒桶装危险废物，气味刺鼻。")

SUMMARIES = ("反映小区楼下餐馆油烟直排，影响居民开窗。", "工地夜间施工噪声扰民，凌晨仍在作业。",
             "河道出现大量死鱼，怀疑上游企业排污。", "垃圾中转站臭味严重，渗滤液流到路面。",
             "砖厂烟囱冒黑烟，周边农田落满粉尘。", "养殖场粪污直排水沟，村里水井有异味。",
             "KTV深夜音响声音过大，多次投诉未解决。", "汽修厂露天喷漆，气味刺鼻。")
TYPES = ("air", "noise", "water", "solid_waste", "ecological")
FACTORS = [("severity.covert_discharge", 20.0, "behaviour named in a report"),
           ("receptor.school", 10.0, "sensitive receptor named"), ("receptor.homes", 5.0, "sensitive receptor named"),
           ("night_time", 8.0, "reported at or about night time (22:00-06:00)"), ("repeats", 6.0, "2 reports"),
           ("verifiability.named_target", 5.0, "a company, site or place is named"),
           ("verifiability.resolved_county", 3.0, "county resolved")]
TIER_SCORES = {"urgent": (45, 70), "high": (30, 45), "normal": (15, 30), "low": (3, 15)}


def background_leads(count=70, seed=7):
    """Varied leads over real counties (hand-made, deterministic): the map, charts and list."""
    rng = random.Random(seed)
    counties = sorted((d for d in load_divisions() if d.level == COUNTY and d.longitude is not None),
                      key=lambda d: d.adcode)
    table = load_divisions()
    leads = []
    for i, county in enumerate(rng.sample(counties, count)):
        tier = rng.choices(list(TIER_SCORES), weights=(1, 3, 8, 10))[0]
        low, high = TIER_SCORES[tier]
        score = round(rng.uniform(low, high), 1)
        reasons, left = [], score
        for factor, points, detail in rng.sample(FACTORS, len(FACTORS)):
            if points <= left - 1:
                reasons.append(ScoreReason(factor, points, detail))
                left -= points
        reasons.append(ScoreReason("recency", round(left, 2), "last report 1.0 days before the newest event"))
        score = round(sum(r.points for r in reasons), 2)
        first_seen = NOW - rng.randrange(1, 30) * 86_400_000 - rng.randrange(86_400_000)
        types = [rng.choice(TYPES)] + ([rng.choice(TYPES)] if rng.random() < 0.3 else [])
        leads.append(make_lead(
            f"lead-m-bg{i:03d}", sorted(reasons, key=lambda r: -r.points), tier, overdue=rng.random() < 0.4,
            pollution_types=list(dict.fromkeys(types)), region=table.region_record(county.adcode),
            first_seen_ms=first_seen, last_seen_ms=first_seen, updated_at_ms=first_seen,
            summary=rng.choice(SUMMARIES), department=county.name + "生态环境分局",
            report_count=rng.choice((1, 1, 1, 2, 3))))
    return leads


BACKGROUND = background_leads()


# ---- the JSON the page shows ---------------------------------------------------------------------

def test_counts_over_time_fill_every_day_and_keep_the_type_order():
    leads = [make_lead(f"lead-{i}", [], "low", False, first_seen_ms=first, pollution_types=types)
             for i, (first, types) in enumerate([(ms(2025, 1, 6, 10), ["water"]), (ms(2025, 1, 6, 23), ["air", "water"]),
                                                  (ms(2025, 1, 8, 1), ["air"])])]
    chart = api.counts_over_time(leads, api.primary_type, order=("air", "water", "noise"))
    assert chart == {"bucket": "day", "buckets": ["2025-01-06", "2025-01-07", "2025-01-08"],
                     "series": [{"name": "air", "counts": [1, 0, 1]}, {"name": "water", "counts": [1, 0, 0]}]}


def test_counts_over_a_long_span_are_weekly_and_fold_small_regions():
    regions = ["江苏省", "广东省", "江苏省", "浙江省", "广东省", "山东省", "江苏省"]
    leads = [make_lead(f"lead-{i}", [], "low", False, first_seen_ms=ms(2025, 1, 6) + i * 20 * 86_400_000,
                       region={"province": p, "city": None, "county": None, "adcode": "000000", "level": "province"})
             for i, p in enumerate(regions)] + [make_lead("lead-x", [], "low", False, region=None,
                                                          first_seen_ms=ms(2025, 1, 7))]
    chart = api.counts_over_time(leads, api.region_grouping(leads), max_series=3)
    assert chart["bucket"] == "week" and chart["buckets"][0] == "2025-01-06"  # a Monday
    assert [s["name"] for s in chart["series"]] == ["江苏省", "广东省", "其他", "未定位"]
    assert [sum(s["counts"]) for s in chart["series"]] == [3, 2, 2, 1]


def test_a_region_filter_narrows_the_region_chart_to_the_next_level():
    nanjing = [make_lead("lead-a", [], "low", False), make_lead("lead-b", [], "low", False, region=dict(
        GULOU, county="玄武区", adcode="320102"))]
    assert api.region_grouping(nanjing)(nanjing[1]) == "玄武区"


def test_map_points_group_leads_by_division_with_the_best_first():
    leads = [TOP, make_lead("lead-b", [], "low", False), NEW]
    points = api.map_points(sorted(leads, key=lambda lead: -lead.score), NOW)
    assert [(p["adcode"], p["count"], p["overdue"], p["tier"], p["top_lead_id"]) for p in points] == [
        ("440306", 1, 1, "urgent", "lead-m-new"), ("320106", 2, 1, "urgent", "lead-m-top")]
    assert points[1]["name"] == "南京市鼓楼区"


def test_payload_and_detail_carry_no_reporter_keys():
    payload = api.leads_payload([TOP, NEW] + BACKGROUND, make_filter(types=["water"]), NOW)
    text = json.dumps(payload, ensure_ascii=False)
    detail = json.dumps(api.lead_detail(TOP, NOW, api.campaign_names()), ensure_ascii=False)
    assert PSEUDONYM not in text + detail and "reporter_keys" not in text + detail
    assert payload["rows"][0]["lead_id"] == "lead-m-top"
    assert all("water" in row["pollution_types"] for row in payload["rows"])
    assert json.loads(detail)["campaign_names"] == ["碧水保卫战·饮用水水源"]


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_server_over_a_leads_file(tmp_path):
    path = tmp_path / "leads.jsonl"
    path.write_text("".join(json.dumps(dict(rank=0, **lead_to_avro_dict(lead)), ensure_ascii=False) + "\n"
                            for lead in [TOP] + BACKGROUND), encoding="utf-8")
    with Dashboard(input_path=str(path), port=0, refresh_s=0.2, now_ms=lambda: NOW) as dashboard:
        status, headers, body = _get(dashboard.url)
        assert status == 200 and b"/static/app.js" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, _, body = _get(dashboard.url + "api/leads?region=3201&min_score=50")
        payload = json.loads(body)
        assert [row["lead_id"] for row in payload["rows"]] == ["lead-m-top"] and payload["total"] == 71
        etag = payload["etag"]
        assert json.loads(_get(dashboard.url + f"api/leads?known={etag}")[2])["unchanged"] is True
        assert _get(dashboard.url + "api/leads?type=smell")[0] == 400
        assert _get(dashboard.url + "api/lead?id=lead-m-nope")[0] == 404
        assert _get(dashboard.url + "static/../server.py")[0] == 404
        # The file changes (a new batch run): the page's next poll sees it.
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(lead_to_avro_dict(NEW), ensure_ascii=False) + "\n")
        deadline = time.monotonic() + 10
        while json.loads(_get(dashboard.url + "api/health")[2])["leads"] != 72 and time.monotonic() < deadline:
            time.sleep(0.1)
        payload = json.loads(_get(dashboard.url + f"api/leads?known={etag}")[2])
        assert payload["rows"][0]["lead_id"] == "lead-m-new"
        assert PSEUDONYM not in json.dumps(payload)


# ---- a real browser ------------------------------------------------------------------------------

def _has_cjk_font() -> bool:
    try:
        return bool(subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def _apt_install(packages):
    """Installs Debian packages; returns None on success, else why not."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        except (OSError, subprocess.SubprocessError) as error:
            return f"{' '.join(command[:2])} failed: {error}"
        if result.returncode != 0:
            return f"{' '.join(command[:2])} exited {result.returncode}: {result.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium and chromedriver, installed when missing (CI machines are fresh)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        packages = BROWSER_PACKAGES + (() if _has_cjk_font() else (CJK_FONT_PACKAGE,))
        error = _apt_install(packages)
        if error or not os.path.exists(CHROMEDRIVER):
            pytest.skip(f"headless Chromium unavailable: apt-get install {' '.join(packages)}: {error or 'no driver'}")
    elif not _has_cjk_font():
        _apt_install([CJK_FONT_PACKAGE])  # only the screenshot's looks depend on it
    return CHROMIUM


@pytest.fixture
def browser(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1440,1000", "--lang=zh-CN"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download drivers) is never run.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _produce(bootstrap_servers, topic, leads):
    from kafka import KafkaProducer

    from envleads.ops.kafka_config import client_kwargs

    producer = KafkaProducer(**client_kwargs(bootstrap_servers))
    for lead in leads:
        producer.send(topic, key=lead.lead_id.encode(), value=schemas.encode(schemas.LEADS, lead_to_avro_dict(lead)))
    producer.flush()
    producer.close()


def _rows(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#lead-table tbody tr")


@pytest.mark.kafka
def test_the_page_in_chromium_over_the_lead_topic(browser, kafka_broker, tmp_topics):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    topic = tmp_topics("leads")["leads"]
    _produce(kafka_broker.bootstrap_servers, topic, BACKGROUND + [TOP])
    # The page redraws the list when data arrives: a row read during a redraw is retried.
    wait = WebDriverWait(browser, 20, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))

    def count_is(expected):
        return lambda d: d.find_element(By.ID, "matched-count").text == str(expected)

    with Dashboard(bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic, port=0, refresh_s=0.5,
                   now_ms=lambda: NOW) as dashboard:
        browser.get(dashboard.url)
        wait.until(count_is(len(BACKGROUND) + 1))
        wait.until(lambda d: _rows(d)[0].get_attribute("data-lead-id") == TOP.lead_id)
        first = _rows(browser)[0]
        assert first.get_attribute("data-rank") == "1"
        for text in ("南京市鼓楼区", "南京市生态环境局", "逾期", "91.5", "severity.covert_discharge +25"):
            assert text in first.text

        # The top lead is selected at first: its masked summary and every reason, in order.
        wait.until(lambda d: d.find_element(By.ID, "detail").get_attribute("data-lead-id") == TOP.lead_id)
        assert browser.find_element(By.ID, "detail-summary").text == TOP.summary
        reason_rows = browser.find_elements(By.CSS_SELECTOR, "#detail-reasons tr")
        assert [row.get_attribute("data-factor") for row in reason_rows] == [r.factor for r in TOP_REASONS]
        assert [row.find_element(By.CSS_SELECTOR, "td.num").text for row in reason_rows] == [
            "+0", "+25", "+20", "+18", "+12", "+10", "+6.5"]
        detail_text = browser.find_element(By.ID, "detail").text
        for text in ("碧水保卫战·饮用水水源", "2025-02-28 12:00:00", "RX2025021800000011", "WB2025022700000187",
                     "8 (不同投诉人 distinct reporters: 5)"):
            assert text in detail_text

        # Another lead's detail on click.
        second = _rows(browser)[1]
        second_id = second.get_attribute("data-lead-id")
        second.click()
        wait.until(lambda d: d.find_element(By.ID, "detail").get_attribute("data-lead-id") == second_id)

        # A lead arriving on the topic reaches the page without a reload.
        _produce(kafka_broker.bootstrap_servers, topic, [NEW])
        wait.until(count_is(len(BACKGROUND) + 2))
        wait.until(lambda d: _rows(d)[0].get_attribute("data-lead-id") == NEW.lead_id)
        assert _rows(browser)[1].get_attribute("data-lead-id") == TOP.lead_id
        everything = BACKGROUND + [TOP, NEW]

        # Filter by type: only air leads, as many as there are.
        Select(browser.find_element(By.ID, "filter-type")).select_by_value("air")
        air = [lead for lead in everything if "air" in lead.pollution_types]
        wait.until(count_is(len(air)))
        assert len(_rows(browser)) == len(air)
        assert all("大气" in row.find_element(By.CSS_SELECTOR, "td.types").text for row in _rows(browser))
        assert "type=air" in browser.current_url

        # Filter by region code prefix (Enter applies it) on top of the type filter cleared.
        Select(browser.find_element(By.ID, "filter-type")).select_by_value("")
        region = browser.find_element(By.ID, "filter-region")
        region.send_keys("3201", Keys.ENTER)
        nanjing = [lead for lead in everything if (lead.region or {}).get("adcode", "").startswith("3201")]
        wait.until(count_is(len(nanjing)))
        assert {row.get_attribute("data-lead-id") for row in _rows(browser)} == {lead.lead_id for lead in nanjing}

        # Back to everything, the top lead selected, for the screenshot.
        browser.find_element(By.ID, "filter-reset").click()
        wait.until(count_is(len(everything)))
        _rows(browser)[1].click()
        wait.until(lambda d: d.find_element(By.ID, "detail").get_attribute("data-lead-id") == TOP.lead_id)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#lead-points circle")) >= 60
        assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-type rect")) > 10

        page = browser.page_source
        assert PSEUDONYM not in page and "reporter_keys" not in page
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []  # no script error, no blocked resource (CSP), no failed request

        time.sleep(4.5)  # let the fresh-row highlight fade before the picture
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1440, max(1000, height))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
    with open(SCREENSHOT, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 30_000
