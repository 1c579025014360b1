"""``envleads evaluate-regions``, ``evaluate-repeats`` and ``evaluate-batch``: quality measured
against gold.

The work is in :mod:`envleads.region_evaluation`, :mod:`envleads.repeats_evaluation` and
:mod:`envleads.evaluation`.
"""
from __future__ import annotations

import argparse
import json

from envleads.cli.arguments import add_command



def _run_regions(args: argparse.Namespace) -> int:
    from envleads.region import RegionResolver
    from envleads.region_evaluation import evaluate_regions, format_region_report, read_gold

    report = evaluate_regions(RegionResolver(), read_gold(args.gold))
    print(format_region_report(report))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
    return 0


def _run_repeats(args: argparse.Namespace) -> int:
    from envleads.evaluation import print_report
    from envleads.repeats_evaluation import evaluate

    return print_report(evaluate(args.gold, args.jurisdiction, not args.no_jurisdiction, args.engine), args.json_out)


def _run_batch_scores(args: argparse.Namespace) -> int:
    from envleads.evaluation import print_report, read_jsonl, score_batch_output

    return print_report(score_batch_output(read_jsonl(args.output), read_jsonl(args.truth),
                                           read_jsonl(args.leads) if args.leads else None), args.json_out)


def register(subparsers) -> None:
    """Adds ``evaluate-regions``, ``evaluate-repeats`` and ``evaluate-batch``."""
    regions = add_command(subparsers, "evaluate-regions", _run_regions,
                          "measure region resolution against a gold JSONL file")
    regions.add_argument("--gold", required=True, help="JSON Lines with text and gold province/city/county/adcode/level")
    regions.add_argument("--json-out", default=None, help="also write the report (with per-row errors) as JSON here")

    repeats = add_command(subparsers, "evaluate-repeats", _run_repeats,
                          "repeat-petition quality through envleads batch on labelled data")
    repeats.add_argument("--gold", required=True, nargs="+",
                         help="labelled boards (id, title, text, received_at, cluster) or batch input files "
                              "with <stem>.truth.jsonl beside them")
    repeats.add_argument("--jurisdiction", default=None,
                         help="for a board: the intake jurisdiction (a city code) given to every message")
    repeats.add_argument("--no-jurisdiction", action="store_true",
                         help="drop every intake jurisdiction: only the texts place the complaints")
    repeats.add_argument("--engine", choices=("beam", "rounds"), default="beam")
    repeats.add_argument("--json-out", default=None, help="also write the scores as JSON here")

    batch = add_command(subparsers, "evaluate-batch", _run_batch_scores, "score a batch output against ground truth")
    batch.add_argument("--output", required=True, help="the enriched JSON Lines written by envleads batch")
    batch.add_argument("--truth", required=True, help="ground truth JSON Lines (e.g. from envleads generate)")
    batch.add_argument("--leads", default=None, help="the leads file written by envleads batch --leads")
    batch.add_argument("--json-out", default=None, help="also write the report here")
