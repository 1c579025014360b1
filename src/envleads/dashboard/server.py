"""The dashboard's web server and its live lead store.

Why the standard library's ``ThreadingHTTPServer``: the page needs four JSON endpoints and a few
static files for one office's browsers on a local machine; a framework would add a dependency (and
its updates) without adding anything the page uses. Why plain HTML, CSS and JavaScript with inline
SVG charts and map: nothing may be downloaded at run time (no CDN, no map tiles), and a vendored
chart or map library would be more code than the three charts it would draw.

Live updates: a background thread keeps a :class:`LeadStore` current, from the lead topic (a
:class:`~envleads.pipelines.kafka_io.LeadView` refreshed every ``refresh_s``) or from a leads file
(re-read when it changes). The page polls ``/api/leads`` every few seconds with the version it
has, and gets a full answer only when the leads (or the minute, which decides ``overdue``) changed.

Privacy: the API serves leads only through :mod:`envleads.dashboard.api`, which drops reporter keys;
there is no login, so the server binds to 127.0.0.1 unless told otherwise (then put an
authenticating proxy in front). Citizen-written text is inserted into the page as text, never as
HTML, and a Content-Security-Policy forbids inline and foreign scripts.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from envleads.dashboard import api
from envleads.feed import LeadFilter, make_filter
from envleads.records import Lead

LOG = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {  # the only files served: no path from a request ever reaches the file system
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
DEFAULT_PORT = 8750
DEFAULT_REFRESH_S = 2.0
MAX_ROW_LIMIT = 2000
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class LeadStore:
    """The current leads, shared between the refresher thread and request threads."""

    def __init__(self, source: str):
        self.source = source  # shown on the page: topic or file name, never credentials
        self._lock = threading.Lock()
        self._leads: Dict[str, Lead] = {}
        self._version = 0
        self._updated_at_ms: Optional[int] = None
        self._error: Optional[str] = None

    def replace(self, leads: Dict[str, Lead]) -> None:
        with self._lock:
            self._leads = dict(leads)
            self._version += 1
            self._updated_at_ms = int(time.time() * 1000)
            self._error = None

    def set_error(self, error: Optional[str]) -> None:
        with self._lock:
            self._error = error

    def snapshot(self) -> Tuple[int, Dict[str, Lead]]:
        """(version, leads); the dict is never mutated after it is published, so no copy is needed."""
        with self._lock:
            return self._version, self._leads

    def status(self) -> Dict:
        with self._lock:
            return {"source": self.source, "version": self._version, "leads": len(self._leads),
                    "updated_at_ms": self._updated_at_ms, "error": self._error}


class KafkaRefresher(threading.Thread):
    """Keeps ``store`` equal to the compacted view of the lead topic (reconnects on errors)."""

    def __init__(self, store: LeadStore, bootstrap_servers: str, topic: str, security=None,
                 refresh_s: float = DEFAULT_REFRESH_S):
        super().__init__(name="envleads-dashboard-kafka", daemon=True)
        self._store, self._servers, self._topic = store, bootstrap_servers, topic
        self._security, self._refresh_s = security, refresh_s
        self.stopping = threading.Event()

    def run(self) -> None:
        from envleads.pipelines.kafka_io import LeadView

        view = None
        while not self.stopping.is_set():
            try:
                if view is None:
                    view = LeadView(self._servers, self._topic, self._security)
                    view.refresh(wait_s=self._refresh_s)
                    self._store.replace(view.leads)
                elif view.refresh(wait_s=min(1.0, self._refresh_s)):
                    self._store.replace(view.leads)
            except Exception as error:  # noqa: BLE001 - the page shows the error and we retry
                LOG.warning("reading the lead topic failed (%s); retrying", type(error).__name__)
                self._store.set_error(f"lead topic unavailable ({type(error).__name__})")
                if view is not None:
                    _close_quietly(view)
                view = None
            self.stopping.wait(self._refresh_s)
        if view is not None:
            _close_quietly(view)


def _close_quietly(view) -> None:
    try:
        view.close()
    except Exception:  # noqa: BLE001 - closing a broken consumer may fail too
        pass


class FileRefresher(threading.Thread):
    """Keeps ``store`` equal to a leads file, re-reading it when its size or mtime changes."""

    def __init__(self, store: LeadStore, path: str, refresh_s: float = DEFAULT_REFRESH_S):
        super().__init__(name="envleads-dashboard-file", daemon=True)
        self._store, self._path, self._refresh_s = store, path, refresh_s
        self.stopping = threading.Event()
        self._seen: Optional[Tuple[float, int]] = None

    def load_if_changed(self) -> bool:
        from envleads.feed import read_leads_file

        stat = os.stat(self._path)
        if self._seen == (stat.st_mtime, stat.st_size):
            return False
        self._store.replace(read_leads_file(self._path))
        self._seen = (stat.st_mtime, stat.st_size)
        return True

    def run(self) -> None:
        while not self.stopping.wait(self._refresh_s):
            try:
                self.load_if_changed()
            except (OSError, ValueError) as error:  # a half-written file: try again next time
                self._store.set_error(f"cannot read the leads file ({type(error).__name__})")


def filter_from_query(query: Dict[str, list]) -> LeadFilter:
    """The page's filters (``type``, ``region``, ``min_score``, ``campaign``, ``overdue``)."""
    min_score = (query.get("min_score") or [""])[0].strip()
    return make_filter(regions=query.get("region", []), types=query.get("type", []),
                       min_score=float(min_score) if min_score else None,
                       campaigns=query.get("campaign", []),
                       overdue_only=(query.get("overdue") or [""])[0] in ("1", "true", "on"))


class DashboardHandler(BaseHTTPRequestHandler):
    """Routes: ``/`` and ``/static/*`` (the page), ``/api/meta``, ``/api/leads``, ``/api/lead``,
    ``/api/health``. Set ``store`` and ``now_ms`` on a subclass (see :func:`make_server`)."""

    store: LeadStore
    now_ms: Callable[[], int]
    server_version = "envleads-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        # Paths and status only; query strings can hold filter text but never identity.
        LOG.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path in STATIC_FILES:
                self._static(*STATIC_FILES[url.path])
            elif url.path == "/api/meta":
                self._json(api.meta_payload(), cache=True)
            elif url.path == "/api/leads":
                self._leads(query)
            elif url.path == "/api/lead":
                self._lead((query.get("id") or [""])[0])
            elif url.path == "/api/health":
                self._json(self.store.status())
            else:
                self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)
        except ValueError as error:
            self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        except BrokenPipeError:
            pass

    def _leads(self, query: Dict[str, list]) -> None:
        lead_filter = filter_from_query(query)
        limit = max(0, min(MAX_ROW_LIMIT, int((query.get("limit") or [api.DEFAULT_ROW_LIMIT])[0])))
        now_ms = self.now_ms()
        version, leads = self.store.snapshot()
        # The minute is part of the version: overdue flags change with the clock, not only with data.
        etag = f"{version}.{now_ms // 60_000}"
        status = self.store.status()
        if (query.get("known") or [""])[0] == etag:
            self._json({"unchanged": True, "etag": etag, "status": status})
            return
        payload = api.leads_payload(leads.values(), lead_filter, now_ms, limit=limit)
        payload.update(etag=etag, status=status)
        self._json(payload)

    def _lead(self, lead_id: str) -> None:
        _, leads = self.store.snapshot()
        lead = leads.get(lead_id)
        if lead is None:
            self._json({"error": "no such lead"}, HTTPStatus.NOT_FOUND)
            return
        self._json(api.lead_detail(lead, self.now_ms(), api.campaign_names()))

    def _static(self, name: str, content_type: str) -> None:
        with open(os.path.join(STATIC_DIR, name), "rb") as handle:
            body = handle.read()
        self._send(HTTPStatus.OK, body, content_type, cache=False)

    def _json(self, payload, status: HTTPStatus = HTTPStatus.OK, cache: bool = False) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", cache)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, cache: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def make_server(store: LeadStore, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> ThreadingHTTPServer:
    """An HTTP server over ``store`` (not started: call ``serve_forever``); port 0 picks a free one."""
    handler = type("BoundDashboardHandler", (DashboardHandler,), {"store": store, "now_ms": staticmethod(now_ms)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


class Dashboard:
    """Server plus refresher, started and stopped together (a context manager, used by tests)."""

    def __init__(self, *, bootstrap_servers: Optional[str] = None, topic: str = "leads",
                 input_path: Optional[str] = None, security=None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 refresh_s: float = DEFAULT_REFRESH_S, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)):
        if (bootstrap_servers is None) == (input_path is None):
            raise ValueError("give exactly one source: bootstrap_servers (with topic) or input_path")
        if input_path is not None:
            self.store = LeadStore(os.path.basename(input_path))
            self.refresher = FileRefresher(self.store, input_path, refresh_s)
            self.refresher.load_if_changed()  # fail now, not in the background, if the file is unreadable
        else:
            self.store = LeadStore(f"topic {topic}")
            self.refresher = KafkaRefresher(self.store, bootstrap_servers, topic, security, refresh_s)
        self.server = make_server(self.store, host, port, now_ms)
        self._serving: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "Dashboard":
        self.refresher.start()
        self._serving = threading.Thread(target=self.server.serve_forever, name="envleads-dashboard-http",
                                         daemon=True)
        self._serving.start()
        return self

    def stop(self) -> None:
        self.refresher.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.refresher.join(timeout=10)

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _dashboard_command(args: argparse.Namespace) -> int:
    from envleads.ops.kafka_config import security_from_args

    if not _is_loopback(args.host):
        LOG.warning("the dashboard has no login and shows enforcement leads: serving on %s exposes them to "
                    "the network; put an authenticating proxy in front", args.host)
    if args.input:
        dashboard = Dashboard(input_path=args.input, host=args.host, port=args.port, refresh_s=args.refresh)
    else:
        dashboard = Dashboard(bootstrap_servers=args.bootstrap_servers, topic=args.leads_topic,
                              security=security_from_args(args), host=args.host, port=args.port,
                              refresh_s=args.refresh)
    with dashboard:
        print(f"envleads dashboard at {dashboard.url} ({dashboard.store.source}); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def add_subcommand(subparsers) -> None:
    from envleads.ops.kafka_config import add_kafka_arguments

    parser = subparsers.add_parser(
        "dashboard", help="local web page: ranked leads, filters, details, charts and a map, live",
        description="Serves a web page over the current leads (the lead topic, or a leads file), updated "
                    "as new leads arrive. Binds to 127.0.0.1: it has no login.")
    add_kafka_arguments(parser)
    parser.add_argument("--leads-topic", default="leads", help="compacted topic of leads, keyed by lead_id")
    parser.add_argument("--input", default=None, metavar="LEADS.jsonl",
                        help="show this leads file (envleads batch --leads) instead of Kafka; re-read when it changes")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_S, metavar="SECONDS",
                        help="how often the leads are re-read (default 2)")
    parser.set_defaults(func=_dashboard_command)
