"""The dashboard's web server and its live lead store.

Why waitress and no framework: the page needs four JSON endpoints and a few static files for one
office's browsers on a local machine; the routes are a small WSGI application (:class:`DashboardApp`)
and a framework would add nothing the page uses. Serving HTTP to clients that may be slow or hostile
is another matter: that is what waitress (Pylons project, pure Python) does, with one I/O thread for
every connection, a fixed pool of threads for the application, idle timeouts and size limits, so
the dashboard uses it rather than a server of its own. Why plain HTML, CSS and JavaScript with
inline SVG charts and map: nothing may be downloaded at run time (no CDN, no map tiles), and a
vendored chart or map library would be more code than the three charts it would draw.

Live updates: a background thread keeps a :class:`CurrentLeads` current, from the lead topic (a
:class:`~envleads.pipelines.kafka_edge.lead_topic.LeadView` refreshed every ``refresh_s``) or from a leads file
(re-read when it changes). The page polls ``/api/leads`` every few seconds with the version it
has, and gets a full answer only when the leads (or the minute, which decides ``overdue``) changed.

Privacy: the API serves leads only through :mod:`envleads.dashboard.api`, which drops reporter keys;
there is no login, so the server binds to 127.0.0.1 unless told otherwise (then put an
authenticating proxy in front). Citizen-written text is inserted into the page as text, never as
HTML, and a Content-Security-Policy forbids inline and foreign scripts.

Hardening (issue 26), so that neither a web page in the user's browser nor a slow or greedy client
can reach or stall the dashboard:

* **Host allow-list** (against DNS rebinding, where a foreign site's name is made to resolve to
  127.0.0.1): a request is served only when its ``Host`` header names the dashboard: ``localhost``,
  ``127.0.0.1`` or ``[::1]`` with the dashboard's port, the address it is bound to, or a name given
  with ``--allowed-host NAME[:PORT]`` (repeatable; without a port, any port). Any other ``Host`` gets
  ``421`` with a one-line plain body. A request without ``Host`` (HTTP/1.0) is served only when the
  dashboard is bound to a loopback address; an HTTP/1.1 request without one gets ``400``. Behind a
  proxy that passes the public name on, give that name with ``--allowed-host``.
* **Slow clients cost no thread** (waitress): its I/O thread reads every request without blocking
  and hands only complete requests to ``--workers`` threads (default 8); the response is written
  back by the I/O thread too. A request head is at most 72 KiB (else ``431``; a request target over
  64 KiB gets ``414``) and a body at most 64 KiB (else ``413``; no route takes one); waitress closes
  such a connection without reading the rest, so the client may see a reset instead of the
  refusal. A connection idle ``--request-timeout`` seconds (default 10; waitress counts whole
  seconds) is closed, also one whose reader stopped taking its response; of a response not yet
  taken, 64 KiB stay in memory and the rest in a temporary file. Added to waitress
  (:class:`DashboardServer`): a request must arrive whole within ``--request-timeout`` seconds of
  its first bytes, however it trickles in; at most ``--max-connections`` connections (default
  1000, kept under the open-file limit) are held, and a new one beyond that closes the oldest one
  idle or still sending its request (waitress alone would stop accepting, and stalled clients
  would lock everyone out). When all workers are busy, a request gets ``503`` with
  ``Retry-After: 1`` at once (from one thread kept beyond the workers for that).
* **Bounded queries:** a query string of at most 4,096 characters and 64 parameters, at most 32
  values per filter (``region``, ``type``, ``campaign``; comma-separated values count one each),
  else ``400`` with a short message; filtering looks each lead up in sets built from the filter
  (:func:`envleads.dashboard.api.lead_matcher`), so its cost does not grow with the number of values.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import logging
import math
import os
import resource
import threading
import time
from http import HTTPStatus
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from envleads.config import DEFAULT_TOPICS
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
# Connections and workers (see the module docstring).
DEFAULT_WORKERS = 8
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
MAX_REQUEST_TARGET = 65_536  # characters of path and query (http.server's request-line limit); beyond: 414
MAX_HEAD_BYTES = MAX_REQUEST_TARGET + 8_192  # request line plus headers; beyond: 431 (waitress)
MAX_BODY_BYTES = 65_536  # no route reads a body; beyond: 413 (waitress)
OUTBUF_IN_MEMORY = 65_536  # of a response not yet taken by its client; the rest waits in a temporary file
ACCEPTS_PER_PASS = 64  # connections taken per pass of waitress's I/O loop
# Query limits: the page sends one value per filter and a few short parameters.
MAX_QUERY_CHARS = 4096
MAX_QUERY_FIELDS = 64
MAX_FILTER_VALUES = 32
FILTER_PARAMETERS = ("region", "type", "campaign")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class CurrentLeads:
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

    def __init__(self, store: CurrentLeads, bootstrap_servers: str, topic: str, security=None,
                 refresh_s: float = DEFAULT_REFRESH_S):
        super().__init__(name="envleads-dashboard-kafka", daemon=True)
        self._store, self._servers, self._topic = store, bootstrap_servers, topic
        self._security, self._refresh_s = security, refresh_s
        self.stopping = threading.Event()

    def run(self) -> None:
        from envleads.pipelines.kafka_edge.lead_topic import LeadView

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

    def __init__(self, store: CurrentLeads, path: str, refresh_s: float = DEFAULT_REFRESH_S):
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
    """The page's filters (``type``, ``region``, ``min_score``, ``campaign``, ``overdue``).

    Raises ValueError (answered with 400) for more than :data:`MAX_FILTER_VALUES` values in one
    filter, counting each part of a comma-separated value, and for an unknown pollution type."""
    for name in FILTER_PARAMETERS:
        count = sum(1 for value in query.get(name, ()) for part in value.split(",") if part.strip())
        if count > MAX_FILTER_VALUES:
            raise ValueError(f"too many {name} values ({count}; at most {MAX_FILTER_VALUES})")
    min_score = (query.get("min_score") or [""])[0].strip()
    return make_filter(regions=query.get("region", []), types=query.get("type", []),
                       min_score=float(min_score) if min_score else None,
                       campaigns=query.get("campaign", []),
                       overdue_only=(query.get("overdue") or [""])[0] in ("1", "true", "on"))


def parse_query(raw_query: str) -> Dict[str, list]:
    """``parse_qs`` within the limits: raises ValueError for a query string over
    :data:`MAX_QUERY_CHARS` characters or with more than :data:`MAX_QUERY_FIELDS` parameters."""
    if len(raw_query) > MAX_QUERY_CHARS:
        raise ValueError(f"query too long ({len(raw_query)} characters; at most {MAX_QUERY_CHARS})")
    try:
        return parse_qs(raw_query, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise ValueError(f"too many query parameters (at most {MAX_QUERY_FIELDS})") from None


# ---- the Host allow-list -------------------------------------------------------------------------

HostEntry = Tuple[str, Optional[int]]  # (lower-case name or address, port or None for any port)


def parse_host(value: str, default_port: Optional[int] = 80) -> Optional[HostEntry]:
    """A ``Host`` header (or an ``--allowed-host`` value) as (name, port); None when malformed.
    ``[::1]:8750`` -> ("::1", 8750); ``Localhost.`` -> ("localhost", default_port)."""
    value = value.strip()
    if not value or any(ch.isspace() or ch in "/@?#\\" for ch in value):
        return None
    port_text = None
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        name, port_text = value.split(":")
    elif ":" in value:  # a bare IPv6 address: only as an --allowed-host value, never valid in Host
        name = value
    else:
        name = value
    name = name.lower().rstrip(".")
    if not name:
        return None
    if port_text is None:
        return name, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def default_allowed_hosts(bound_host: str, port: int) -> FrozenSet[HostEntry]:
    """The loopback names with the dashboard's port, and the bound address unless it is a wildcard."""
    names = set(LOOPBACK_NAMES)
    bound = bound_host.strip("[]").lower()
    if bound and bound not in ("0.0.0.0", "::", "*"):
        names.add(bound)
    return frozenset((name, port) for name in names)


def allowed_hosts_for(bound_hosts: Iterable[str], port: int, extra: Iterable[str] = ()) -> FrozenSet[HostEntry]:
    """:func:`default_allowed_hosts` for each of ``bound_hosts`` (the address asked for and the one
    bound), plus ``extra`` (``NAME`` for any port, ``NAME:PORT``, ``[IPv6]:PORT``); raises
    ValueError for a value that is not a host name."""
    hosts = set()
    for bound_host in bound_hosts:
        hosts |= default_allowed_hosts(bound_host or "", port)
    for value in extra:
        entry = parse_host(value, default_port=None)
        if entry is None:
            raise ValueError(f"--allowed-host {value!r} is not a host name, [IPv6] address or NAME:PORT")
        hosts.add(entry)
    return frozenset(hosts)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


# ---- the WSGI application ------------------------------------------------------------------------

Answer = Tuple[HTTPStatus, bytes, str, bool, Tuple[Tuple[str, str], ...]]  # status, body, type, cache, headers


class DashboardApp:
    """The dashboard as a WSGI application. Routes (GET only): ``/`` and ``/static/*`` (the page),
    ``/api/meta``, ``/api/leads``, ``/api/lead``, ``/api/health``.

    Before any route: the Host allow-list (``allowed_hosts``, from :func:`allowed_hosts_for`; a
    request without ``Host`` is served only over HTTP/1.0 and when ``loopback_bound``), then the
    method, then the length of the request target (64 KiB, as ``http.server``'s request line).
    At most ``workers`` requests are answered at once; one more gets ``503`` with ``Retry-After: 1``
    (the server runs one thread beyond ``workers`` for that, see :class:`DashboardServer`)."""

    def __init__(self, store: CurrentLeads, now_ms: Callable[[], int], allowed_hosts: FrozenSet[HostEntry],
                 loopback_bound: bool, workers: int = DEFAULT_WORKERS):
        self.store, self.now_ms = store, now_ms
        self.allowed_hosts, self.loopback_bound = allowed_hosts, loopback_bound
        self._slots = threading.BoundedSemaphore(workers)

    def __call__(self, environ: dict, start_response) -> List[bytes]:
        status, body, content_type, cache, extra_headers = self._answer(environ)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   ("Cache-Control", "max-age=3600" if cache else "no-store"), *_SECURITY_HEADERS.items(),
                   *extra_headers]
        start_response(f"{status.value} {status.phrase}", headers)
        # Paths and status only: query strings can hold filter text (never identity, but no need).
        LOG.debug("%s %s %s %d", environ.get("REMOTE_ADDR"), environ["REQUEST_METHOD"], environ.get("PATH_INFO"),
                  status.value)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]  # waitress would send it after a HEAD

    def _answer(self, environ: dict) -> Answer:
        refused = self._check_host(environ)
        if refused is not None:
            return refused
        if environ["REQUEST_METHOD"] != "GET":
            return _plain(HTTPStatus.NOT_IMPLEMENTED, "only GET is served")
        if len(environ.get("REQUEST_URI", "")) > MAX_REQUEST_TARGET:
            return _plain(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
        if not self._slots.acquire(blocking=False):
            return _plain(HTTPStatus.SERVICE_UNAVAILABLE, "busy, retry in a moment", (("Retry-After", "1"),))
        try:
            return self._route(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
        except Exception:  # noqa: BLE001 - one failed request must not take the page down
            LOG.exception("dashboard: a request failed")
            return _plain(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        finally:
            self._slots.release()

    def _check_host(self, environ: dict) -> Optional[Answer]:
        """None when the ``Host`` header names this dashboard, else the refusal (421, or 400)."""
        host = environ.get("HTTP_HOST")
        if host is None:
            if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
                return None if self.loopback_bound else _plain(HTTPStatus.MISDIRECTED_REQUEST,
                                                               "a Host header is required")
            return _plain(HTTPStatus.BAD_REQUEST, "a Host header is required")
        if "," in host:  # waitress joins repeated headers with ", "; a comma is never in a host name
            return _plain(HTTPStatus.BAD_REQUEST, "more than one Host header")
        entry = parse_host(host)
        if entry is None or (entry not in self.allowed_hosts and (entry[0], None) not in self.allowed_hosts):
            return _plain(HTTPStatus.MISDIRECTED_REQUEST,
                          "unknown Host: this dashboard answers only to the names it is configured for")
        return None

    def _route(self, path: str, raw_query: str) -> Answer:
        try:
            query = parse_query(raw_query)
            if path in STATIC_FILES:
                name, content_type = STATIC_FILES[path]
                with open(os.path.join(STATIC_DIR, name), "rb") as handle:
                    return HTTPStatus.OK, handle.read(), content_type, False, ()
            if path == "/api/meta":
                return _json(api.meta_payload(), cache=True)
            if path == "/api/leads":
                return self._leads(query)
            if path == "/api/lead":
                return self._lead((query.get("id") or [""])[0])
            if path == "/api/health":
                return _json(self.store.status())
            return _json({"error": "not found"}, HTTPStatus.NOT_FOUND)
        except ValueError as error:
            return _json({"error": str(error)[:200]}, HTTPStatus.BAD_REQUEST)

    def _leads(self, query: Dict[str, list]) -> Answer:
        lead_filter = filter_from_query(query)
        limit = max(0, min(MAX_ROW_LIMIT, int((query.get("limit") or [api.DEFAULT_ROW_LIMIT])[0])))
        now_ms = self.now_ms()
        version, leads = self.store.snapshot()
        # The minute is part of the version: overdue flags change with the clock, not only with data.
        etag = f"{version}.{now_ms // 60_000}"
        status = self.store.status()
        if (query.get("known") or [""])[0] == etag:
            return _json({"unchanged": True, "etag": etag, "status": status})
        payload = api.leads_payload(leads.values(), lead_filter, now_ms, limit=limit)
        payload.update(etag=etag, status=status)
        return _json(payload)

    def _lead(self, lead_id: str) -> Answer:
        _, leads = self.store.snapshot()
        lead = leads.get(lead_id)
        if lead is None:
            return _json({"error": "no such lead"}, HTTPStatus.NOT_FOUND)
        return _json(api.lead_detail(lead, self.now_ms(), api.campaign_names()))


def _json(payload, status: HTTPStatus = HTTPStatus.OK, cache: bool = False) -> Answer:
    try:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere (rare): JSON has no such number
        body = json.dumps(_finite(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return status, body.encode("utf-8"), "application/json; charset=utf-8", cache, ()


def _plain(status: HTTPStatus, message: str, extra_headers: Tuple[Tuple[str, str], ...] = ()) -> Answer:
    return status, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8", False, extra_headers


def _finite(value):
    """``value`` with NaN and infinities as None: ``JSON.parse`` rejects them, and one lead with a
    NaN score (a hand-edited leads file) would otherwise blank the whole page."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# ---- the server: waitress, with a request deadline and eviction -----------------------------------

class _Request(HTTPRequestParser):
    """waitress's request parser, stamped with the time the request's first bytes arrived."""

    def __init__(self, adj):
        super().__init__(adj)
        self.started = time.time()


class _Channel(HTTPChannel):
    parser_class = _Request


def _open_file_allowance(wanted: int) -> int:
    """``wanted``, kept under the process's open-file limit: a connection is one file, and one more
    while a response larger than :data:`OUTBUF_IN_MEMORY` waits in a temporary file."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else max(16, min(wanted, (soft - 64) // 2))


class DashboardServer(TcpWSGIServer):
    """waitress's HTTP server (one I/O thread for every connection, a fixed pool of threads for the
    application) with two additions waitress does not have, both in its I/O thread:

    * a **request deadline**: a request whose head is not complete ``request_timeout`` seconds after
      its first bytes is dropped (waitress's own ``channel_timeout`` only drops connections idle that
      long, so a client sending a byte now and then would keep its connection for ever);
    * **eviction** instead of waitress's "stop accepting" at ``connection_limit``: at
      ``max_connections``, a new connection closes the oldest one that has no request with the
      application (idle or still sending its request; else the oldest still taking its response),
      so that stalled clients cannot lock everyone else out.

    Both run from waitress's own ``maintenance`` (every ``cleanup_interval``, 1 s) and
    ``handle_accept``, and read a channel's ``requests``, ``request``, ``last_activity``,
    ``will_close`` and ``total_outbufs_len`` and the server's ``active_channels``: waitress's
    internals (as of waitress 3.0), which ``tests/test_dashboard_hardening.py`` covers.
    ``stats`` counts ``timed_out`` (request deadline), ``idle_closed`` and ``evicted`` connections.
    :meth:`start` serves from a background thread, :meth:`shutdown` stops it (closes every
    connection, waits for the I/O thread and the workers); :meth:`run` serves in the calling thread.
    """

    channel_class = _Channel

    def __init__(self, app: DashboardApp, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 workers: int = DEFAULT_WORKERS, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS):
        if workers < 1 or max_connections < 1 or not request_timeout > 0:
            raise ValueError("workers and max_connections must be at least 1, request_timeout positive")
        self.app, self.workers, self.request_timeout = app, workers, request_timeout
        self.max_connections = _open_file_allowance(max_connections)
        self.stats: collections.Counter = collections.Counter()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._sockets: dict = {}  # waitress's socket map: the listening socket, its trigger, the connections
        self.active_channels: dict = {}
        try:
            super().__init__(
                app, map=self._sockets, dispatcher=ThreadedTaskDispatcher(),  # its threads start with the server
                host=host or "*", port=port, ident="envleads-dashboard",
                channel_timeout=max(1, math.ceil(request_timeout)),  # whole seconds in waitress
                cleanup_interval=1,
                # The map also holds the listening socket and waitress's trigger; one more connection
                # than max_connections lets handle_accept run (and evict) when the limit is reached.
                connection_limit=self.max_connections + 3, backlog=1024,
                max_request_header_size=MAX_HEAD_BYTES, max_request_body_size=MAX_BODY_BYTES,
                outbuf_overflow=OUTBUF_IN_MEMORY, asyncore_use_poll=True,  # select() stops at fd 1024
                log_socket_errors=False)  # a client resetting its connection is not the server's error
        except BaseException:
            wasyncore.close_all(self._sockets, ignore_all=True)
            raise

    @property
    def server_address(self) -> Tuple[str, int]:
        return self.effective_host, int(self.effective_port)

    @property
    def open_connections(self) -> int:
        return len(self.active_channels)

    # -- starting and stopping --

    def run(self) -> None:
        """Serves in this thread until :meth:`shutdown`."""
        self.task_dispatcher.set_thread_count(self.workers + 1)  # + 1: answers 503 when all are busy
        super().run()

    def start(self) -> "DashboardServer":
        self._thread = threading.Thread(target=self.run, name="envleads-dashboard-http", daemon=True)
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        """Closes every connection and the listening socket, waits for the I/O thread to end and
        stops the workers (a request still running after ``timeout`` is left to finish alone)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self.trigger.pull_trigger(self._close_sockets)  # runs in the I/O thread; its loop then ends
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():  # else it is stuck: leave its sockets
            self._close_sockets()
        self.task_dispatcher.shutdown(timeout=timeout)
        self.trigger.close()  # last: the thunk above and the workers pull it

    def _close_sockets(self) -> None:
        """The connections and the listening socket; waitress's trigger only leaves the map (the I/O
        loop ends when the map is empty): closing it here would race with the pull that runs this."""
        for channel in list(self.active_channels.values()):
            channel.handle_close()
        wasyncore.dispatcher.close(self)  # not BaseWSGIServer.close, which closes the trigger too
        self.trigger.del_channel()
        wasyncore.close_all(self._sockets, ignore_all=True)  # nothing should be left

    # -- waitress's hooks --

    def handle_accept(self) -> None:
        """waitress takes one connection per pass of its loop, and a pass costs a look at every open
        connection: a burst of thousands would wait seconds in the kernel's queue. So up to
        :data:`ACCEPTS_PER_PASS` here, each beyond ``max_connections`` closing the oldest idle one."""
        for _ in range(ACCEPTS_PER_PASS):
            before = len(self.active_channels)
            super().handle_accept()
            if len(self.active_channels) == before:
                return  # none waiting (or one that failed: waitress logged it)
            if len(self.active_channels) > self.max_connections and not self._evict_one():
                return  # every one has a request with the application: waitress stops accepting

    def _evict_one(self) -> bool:
        writing = None
        for channel in self.active_channels.values():  # oldest first (insertion order)
            if channel.requests:
                continue  # with the application or waiting for a thread
            if channel.total_outbufs_len and not channel.will_close:
                writing = writing or channel
                continue
            victim = channel
            break
        else:
            victim = writing
        if victim is None:
            return False
        self.stats["evicted"] += 1
        victim.handle_close()
        return True

    def maintenance(self, now: float) -> None:
        """waitress's idle timeout (``channel_timeout``) plus the request deadline."""
        idle_cutoff, request_cutoff = now - self.adj.channel_timeout, now - self.request_timeout
        for channel in self.active_channels.values():
            if channel.requests or channel.will_close:
                continue
            if channel.request is not None and channel.request.started < request_cutoff:
                self.stats["timed_out"] += 1
                channel.will_close = True
            elif channel.last_activity < idle_cutoff:
                self.stats["idle_closed"] += 1
                channel.will_close = True


def make_server(store: CurrentLeads, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                now_ms: Callable[[], int] = lambda: int(time.time() * 1000), *, allowed_hosts: Iterable[str] = (),
                workers: int = DEFAULT_WORKERS, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
                max_connections: int = DEFAULT_MAX_CONNECTIONS) -> DashboardServer:
    """An HTTP server over ``store``, bound but not started (:meth:`DashboardServer.start` or
    ``run``); port 0 picks a free one. ``allowed_hosts``: further ``Host`` names to answer
    (``NAME`` or ``NAME:PORT``). The application is ``server.app``."""
    allowed_hosts = tuple(allowed_hosts)
    allowed_hosts_for((), 0, allowed_hosts)  # a bad --allowed-host fails before anything is bound
    app = DashboardApp(store, now_ms, frozenset(), loopback_bound=False, workers=workers)
    server = DashboardServer(app, host, port, workers=workers, request_timeout=request_timeout,
                             max_connections=max_connections)
    bound_host, bound_port = server.server_address
    app.allowed_hosts = allowed_hosts_for((host, bound_host), bound_port, allowed_hosts)
    app.loopback_bound = is_loopback(bound_host)
    return server


class Dashboard:
    """Server plus refresher, started and stopped together (a context manager, used by tests).

    ``allowed_hosts``, ``workers``, ``request_timeout`` and ``max_connections`` are passed to
    :func:`make_server` (see the module docstring)."""

    def __init__(self, *, bootstrap_servers: Optional[str] = None, topic: str = DEFAULT_TOPICS["leads"],
                 input_path: Optional[str] = None, security=None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 refresh_s: float = DEFAULT_REFRESH_S, now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 allowed_hosts: Iterable[str] = (), workers: int = DEFAULT_WORKERS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S, max_connections: int = DEFAULT_MAX_CONNECTIONS):
        if (bootstrap_servers is None) == (input_path is None):
            raise ValueError("give exactly one source: bootstrap_servers (with topic) or input_path")
        if input_path is not None:
            self.store = CurrentLeads(os.path.basename(input_path))
            self.refresher = FileRefresher(self.store, input_path, refresh_s)
            self.refresher.load_if_changed()  # fail now, not in the background, if the file is unreadable
        else:
            self.store = CurrentLeads(f"topic {topic}")
            self.refresher = KafkaRefresher(self.store, bootstrap_servers, topic, security, refresh_s)
        self.server = make_server(self.store, host, port, now_ms, allowed_hosts=allowed_hosts, workers=workers,
                                  request_timeout=request_timeout, max_connections=max_connections)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def app(self) -> DashboardApp:
        return self.server.app

    def start(self) -> "Dashboard":
        self.refresher.start()
        self.server.start()
        return self

    def stop(self) -> None:
        self.refresher.stopping.set()
        self.server.shutdown()
        self.refresher.join(timeout=10)

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def warn_if_exposed(host: str, allowed_hosts: Optional[Iterable[str]]) -> None:
    """Warns when the dashboard, which has no login, is to be served beyond this machine (``host``
    not a loopback address), and when no ``allowed_hosts`` name the address browsers will use."""
    if not is_loopback(host):
        LOG.warning("the dashboard has no login and shows enforcement leads: serving on %s exposes them to "
                    "the network; put an authenticating proxy in front", host)
        if not allowed_hosts:
            LOG.warning("only requests naming localhost, 127.0.0.1, [::1] or %s in their Host header are "
                        "answered; give the names browsers use with --allowed-host", host)
