"""The ``envleads`` command line.

Each subcommand lives in the module that owns its work and registers itself through an
``add_subcommand(subparsers)`` function; this file only collects them and configures logging
(the library itself never installs handlers).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

# Modules that contribute subcommands, in the order `envleads --help` lists them.
SUBCOMMAND_MODULES = (
    "envleads.pipelines.batch",
    "envleads.pipelines.stream",
    "envleads.pipelines.replay",
    "envleads.demo",
    "envleads.generate_dataset",
    "envleads.ops.broker",
    "envleads.ops.status",
    "envleads.models.pollution",
    "envleads.models.registry_cli",
    "envleads.models.labels_cli",
    "envleads.region_evaluation",
    "envleads.repeats_evaluation",
    "envleads.evaluation",
    "envleads.feed",
    "envleads.dashboard.server",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envleads",
        description="Citizen environmental complaints in, ranked enforcement leads out.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_subcommand(subparsers)
    return parser


# kafka-python logs raw protocol bytes at DEBUG and INFO, and raw complaint events carry the
# reporter's identity: its loggers stay at WARNING whatever --log-level says.
IDENTITY_BEARING_LOGGERS = ("kafka",)


def configure_logging(level: str) -> None:
    """The CLI's logging: ``level`` for envleads, never a level at which a library logs identity."""
    # force: importing Beam already installed a root handler, which would make this a no-op.
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for name in IDENTITY_BEARING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Beam's INFO lines (runner internals, batch-size statistics) drown envleads' own status; at
    # DEBUG its workers log every element they process ("Processing [...]": whole lead records and
    # complaints), which would put anything masking missed into the logs: never below INFO.
    beam_level = logging.WARNING if logging.getLogger().level > logging.DEBUG else logging.INFO
    logging.getLogger("apache_beam").setLevel(beam_level)
    import jieba

    jieba.setLogLevel(logging.WARNING)


def _drop_gcp_import_notice(record: logging.LogRecord) -> bool:
    # Beam logs that its optional Google Cloud clients are missing on every import; envleads does
    # not use them, and the notice would only confuse an operator.
    return not str(record.msg).startswith("apitools not found")


def main(argv: Optional[List[str]] = None) -> int:
    logging.getLogger().addFilter(_drop_gcp_import_notice)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_pipeline_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.log_level)
    from envleads.config import OperatorError

    try:
        if getattr(args, "accepts_pipeline_args", False):
            return int(args.func(args, extra) or 0)
        return int(args.func(args) or 0)
    except OperatorError as error:  # an operator's mistake: one line, no traceback
        print(f"envleads {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
