"""``envleads tail``, ``export`` and ``dashboard``: the lead feed as enforcement teams use it.

The work is in :mod:`envleads.feed` (order, filters, formats), :mod:`envleads.ranking` (campaign
quotas) and :mod:`envleads.dashboard.server`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from envleads.cli.arguments import LEADS_TOPIC, add_command, positive


def _filter_from_args(args: argparse.Namespace):
    from envleads.feed import make_filter

    try:
        return make_filter(args.region or (), args.type or (), args.min_score, args.campaign or (), args.overdue)
    except ValueError as error:
        raise SystemExit(f"envleads: {error}") from None


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The lead filters shared by ``tail`` and ``export``."""
    from envleads.records import POLLUTION_LABELS

    group = parser.add_argument_group("filters (repeat a flag, or give a comma-separated list, to OR values)")
    group.add_argument("--region", action="append", metavar="NAME|ADCODE",
                       help="division name (南京, 鼓楼区) or GB/T 2260 code prefix (32, 3201, 320100)")
    group.add_argument("--type", action="append", metavar="TYPE",
                       help="pollution type: " + ", ".join(POLLUTION_LABELS))
    group.add_argument("--min-score", type=float, default=None, help="only leads scoring at least this")
    group.add_argument("--campaign", action="append", metavar="ID",
                       help="campaign id or prefix (blue_sky.yangtze_delta, blue_sky)")
    group.add_argument("--overdue", action="store_true", help="only leads whose assignment deadline has passed")


# -------------------------------------------------------------------------------------------- tail
def _print_line(line: str) -> None:
    print(line, flush=True)


def _run_tail(args: argparse.Namespace) -> int:
    from envleads.feed import parse_since, tail_leads
    from envleads.ops.kafka_config import security_from_args

    lead_filter = _filter_from_args(args)
    try:
        since_ms = parse_since(args.since) if args.since else None
    except ValueError as error:
        raise SystemExit(f"envleads: {error}") from None
    try:
        tail_leads(args.bootstrap_servers, args.leads_topic, _print_line, lead_filter=lead_filter,
                   json_output=args.json, from_beginning=args.from_beginning, since_ms=since_ms,
                   group_id=args.group_id, security=security_from_args(args), idle_exit_s=args.exit_when_idle)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: stop quietly, and keep Python from complaining at exit.
        sys.stdout = open(os.devnull, "w")
    return 0


def _add_tail(subparsers) -> None:
    tail = add_command(
        subparsers, "tail", _run_tail, "follow the lead topic: one line per new or updated lead",
        description="Prints one line per new or updated lead (rank among the leads seen so far, tier, "
                    "score, types, place, department, reports, OVERDUE, top reasons). Ctrl-C stops.",
        topics=LEADS_TOPIC)
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="replay the whole topic first")
    start.add_argument("--since", metavar="ISO-TIME",
                       help="start at records written at or after this time (no offset: China Standard Time)")
    tail.add_argument("--group-id", default=None,
                      help="consumer group: resume from its committed offsets and commit as lines are printed")
    tail.add_argument("--json", action="store_true",
                      help="one JSON object per line (rank, overdue, status, lead fields; no reporter keys)")
    tail.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds without new records (default: run until Ctrl-C)")
    add_filter_arguments(tail)


# ------------------------------------------------------------------------------------------ export
def _quotas_from_args(args: argparse.Namespace):
    """The campaign quotas asked for, or None without ``--top`` (quota flags need ``--top``)."""
    from envleads.ranking import Quotas, validate_quotas

    if args.top is None:
        if args.per_county is not None or args.min_share or args.top_per != "all":
            raise SystemExit("envleads: --per-county, --min-share and --top-per need --top N")
        return None
    try:
        return validate_quotas(Quotas(args.top, args.per_county, args.min_share or 0.0, args.top_per))
    except ValueError as error:
        raise SystemExit(f"envleads: {error}") from None


def _run_export(args: argparse.Namespace) -> int:
    from envleads.feed import export_leads, read_leads_file, read_leads_topic
    from envleads.ops.kafka_config import security_from_args

    lead_filter = _filter_from_args(args)
    quotas = _quotas_from_args(args)
    if args.input:
        leads = read_leads_file(args.input)
    else:
        leads = read_leads_topic(args.bootstrap_servers, args.leads_topic, security_from_args(args), args.idle)
    now_ms = int(time.time() * 1000)
    to_stdout = args.output == "-"
    if args.format == "csv":
        handle = (open(sys.stdout.fileno(), "w", encoding="utf-8-sig", newline="", closefd=False) if to_stdout
                  else open(args.output, "w", encoding="utf-8-sig", newline=""))
    else:
        handle = sys.stdout if to_stdout else open(args.output, "w", encoding="utf-8")
    try:
        count = export_leads(leads.values(), args.format, handle, now_ms, lead_filter, quotas)
    finally:
        if handle is not sys.stdout:
            handle.close()
    print(f"exported {count} of {len(leads)} leads to {args.output} ({args.format})", file=sys.stderr)
    return 0


def _add_export(subparsers) -> None:
    from envleads.feed import EXPORT_FORMATS

    export = add_command(
        subparsers, "export", _run_export, "write the current leads as CSV (Excel), JSON Lines or GeoJSON",
        description="Writes the current leads (last record per lead key) in feed order: tier, overdue "
                    "first within a tier, score, most recent. CSV is UTF-8 with BOM for Excel; GeoJSON "
                    "points sit at the centre of each lead's division. No identity fields.",
        topics=LEADS_TOPIC)
    export.add_argument("--input", default=None, metavar="LEADS.jsonl",
                        help="read leads from this file (envleads batch --leads) instead of Kafka")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="output format (default csv)")
    export.add_argument("--output", required=True, metavar="PATH", help="output file, or - for stdout")
    export.add_argument("--idle", type=float, default=2.0, metavar="SECONDS",
                        help="the topic is read to its end when nothing arrives for this long (default 2)")
    add_filter_arguments(export)
    ranked = export.add_argument_group(
        "campaign ranking (envleads.ranking): the top N of the filtered leads, optionally under quotas")
    ranked.add_argument("--top", type=int, default=None, metavar="N",
                        help="keep only the first N leads in feed order (with the quotas below)")
    ranked.add_argument("--per-county", type=int, default=None, metavar="K",
                        help="at most K leads from one county (or one city/province for leads resolved no deeper)")
    ranked.add_argument("--min-share", type=float, default=None, metavar="S",
                        help="at least this share (0-1) of the N from quiet areas: counties whose reports are "
                             "in the quietest quantile (data/ranking.json), when there are enough")
    ranked.add_argument("--top-per", choices=("all", "province", "city"), default="all",
                        help="take the top N per province or per city instead of overall (default all)")


# --------------------------------------------------------------------------------------- dashboard
def _run_dashboard(args: argparse.Namespace) -> int:
    from envleads.dashboard.server import Dashboard, warn_if_exposed
    from envleads.ops.kafka_config import security_from_args

    warn_if_exposed(args.host, args.allowed_host)
    options = dict(host=args.host, port=args.port, refresh_s=args.refresh, allowed_hosts=args.allowed_host or (),
                   workers=args.workers, request_timeout=args.request_timeout,
                   max_connections=args.max_connections)
    try:
        if args.input:
            dashboard = Dashboard(input_path=args.input, **options)
        else:
            dashboard = Dashboard(bootstrap_servers=args.bootstrap_servers, topic=args.leads_topic,
                                  security=security_from_args(args), **options)
    except ValueError as error:
        raise SystemExit(f"envleads: {error}") from None
    with dashboard:
        print(f"envleads dashboard at {dashboard.url} ({dashboard.store.source}); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _add_dashboard(subparsers) -> None:
    from envleads.dashboard.server import (DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT, DEFAULT_REFRESH_S,
                                           DEFAULT_REQUEST_TIMEOUT_S, DEFAULT_WORKERS)

    parser = add_command(
        subparsers, "dashboard", _run_dashboard,
        "local web page: ranked leads, filters, details, charts and a map, live",
        description="Serves a web page over the current leads (the lead topic, or a leads file), updated "
                    "as new leads arrive. Binds to 127.0.0.1: it has no login.", topics=LEADS_TOPIC)
    parser.add_argument("--input", default=None, metavar="LEADS.jsonl",
                        help="show this leads file (envleads batch --leads) instead of Kafka; re-read when it changes")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_S, metavar="SECONDS",
                        help="how often the leads are re-read (default 2)")
    parser.add_argument("--allowed-host", action="append", metavar="NAME[:PORT]",
                        help="also answer requests whose Host header is this name (repeatable; without a port, "
                             "any port). Always answered: localhost, 127.0.0.1, [::1] and --host, with --port; "
                             "any other Host gets 421 (against DNS rebinding)")
    parser.add_argument("--workers", type=positive(int), default=DEFAULT_WORKERS,
                        help=f"threads answering requests (default {DEFAULT_WORKERS}); slow clients take none")
    parser.add_argument("--request-timeout", type=positive(float), default=DEFAULT_REQUEST_TIMEOUT_S,
                        metavar="SECONDS", help="a request must arrive whole within this (default 10)")
    parser.add_argument("--max-connections", type=positive(int), default=DEFAULT_MAX_CONNECTIONS,
                        help=f"open connections held at most (default {DEFAULT_MAX_CONNECTIONS}); beyond, the oldest "
                             "still sending its request is closed")


def register(subparsers) -> None:
    """Adds ``tail``, ``export`` and ``dashboard``."""
    for add in (_add_tail, _add_export, _add_dashboard):
        add(subparsers)
