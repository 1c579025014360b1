"""Argument groups shared by several ``envleads`` commands, defined once.

The Kafka connection flags are :func:`envleads.ops.kafka_config.add_kafka_arguments` (beside the
:class:`~envleads.ops.kafka_config.KafkaSecurity` they build); the topic flags take their defaults
from :data:`envleads.config.DEFAULT_TOPICS`.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional

from envleads.config import DEFAULT_TOPICS

# The topics a command may read or write: all four (the stream, replay, status), or the leads only
# (the lead feed and the dashboard).
ALL_TOPICS = "all"
LEADS_TOPIC = "leads"


def add_leads_topic_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leads-topic", default=DEFAULT_TOPICS["leads"],
                        help="compacted topic of leads, keyed by lead_id")


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    """The four topics of a deployment (``--raw-topic`` ... ``--dead-letter-topic``)."""
    parser.add_argument("--raw-topic", default=DEFAULT_TOPICS["raw"], help="topic of raw complaint events")
    parser.add_argument("--enriched-topic", default=DEFAULT_TOPICS["enriched"], help="topic of enriched complaints")
    add_leads_topic_argument(parser)
    parser.add_argument("--dead-letter-topic", default=DEFAULT_TOPICS["dead_letter"], help="topic of dead letters")


def add_command(subparsers, name: str, handler: Optional[Callable], help_text: str,
                description: Optional[str] = None, topics: Optional[str] = None,
                pipeline_args: bool = False) -> argparse.ArgumentParser:
    """Adds the subcommand ``name`` run by ``handler(args)`` (``handler(args, beam_args)`` with
    ``pipeline_args``: unknown flags go to Beam). With ``topics`` (:data:`ALL_TOPICS` or
    :data:`LEADS_TOPIC`) the command talks to Kafka: the connection flags come first, then the
    topic flags. ``handler`` None: a command of actions, each with its own handler."""
    parser = subparsers.add_parser(name, help=help_text, description=description)
    if topics is not None:
        from envleads.ops.kafka_config import add_kafka_arguments

        add_kafka_arguments(parser)
        (add_topic_arguments if topics == ALL_TOPICS else add_leads_topic_argument)(parser)
    if handler is not None:
        parser.set_defaults(func=handler)
    if pipeline_args:
        parser.set_defaults(accepts_pipeline_args=True)
    return parser


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse ``type`` that refuses zero and negative numbers."""
    def parse(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse
