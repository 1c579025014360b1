"""Generated datasets on disk: what the ``envleads generate`` command writes.

    envleads generate --count 1000 --seed 0 --output complaints.jsonl [--topic complaints.raw]

Writes :func:`envleads.generator.generate_events` as batch input with a truth file beside it
(``<stem>.truth.jsonl``), and optionally produces the events to Kafka.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Optional

from envleads.generator import generate_events

LOG = logging.getLogger(__name__)


def write_dataset(count: int, seed: int, output_path: str, truth_path: Optional[str] = None) -> dict:
    """Writes the events and their truth as JSON Lines, streaming; returns summary counts.

    Args:
        count: number of events.
        seed: random seed.
        output_path: the complaints file (one event per line; malformed ones raw).
        truth_path: the truth file; default ``<output stem>.truth.jsonl`` beside the output.
    """
    if truth_path is None:
        truth_path = default_truth_path(output_path)
    labels: Counter = Counter()
    reasons: Counter = Counter()
    channels: Counter = Counter()
    summary = {"count": 0, "valid": 0, "malformed": 0, "environmental": 0, "non_environmental": 0,
               "repeats": 0, "multi_label": 0, "night": 0}
    with open(output_path, "wb") as out, open(truth_path, "w", encoding="utf-8") as truth_out:
        for event in generate_events(count, seed):
            out.write(event.line + b"\n")
            truth = event.truth
            truth_out.write(json.dumps(truth, ensure_ascii=False) + "\n")
            summary["count"] += 1
            if truth["malformed"]:
                summary["malformed"] += 1
                reasons[truth["malformed_reason"]] += 1
                continue
            summary["valid"] += 1
            channels[truth["channel"]] += 1
            summary["night"] += truth["night"]
            if truth["environmental"]:
                summary["environmental"] += 1
                labels.update(truth["labels"])
                summary["multi_label"] += len(truth["labels"]) > 1
            else:
                summary["non_environmental"] += 1
            summary["repeats"] += truth["duplicate_of"] is not None
    summary["labels"] = dict(sorted(labels.items(), key=lambda kv: -kv[1]))
    summary["malformed_reasons"] = dict(sorted(reasons.items()))
    summary["channels"] = dict(sorted(channels.items()))
    summary["output"] = output_path
    summary["truth"] = truth_path
    LOG.info("generated %d events (%d malformed, %d repeats)", summary["count"], summary["malformed"],
             summary["repeats"])
    return summary


def default_truth_path(output_path: str) -> str:
    """``complaints.jsonl`` -> ``complaints.truth.jsonl`` in the same folder."""
    root, _ = os.path.splitext(output_path)
    return root + ".truth.jsonl"


def format_summary(summary: dict) -> str:
    """A short human-readable table of a :func:`write_dataset` summary."""
    env = max(summary["environmental"], 1)
    valid = max(summary["valid"], 1)
    lines = [f"events {summary['count']}  valid {summary['valid']}  malformed {summary['malformed']}"
             f"  repeats {summary['repeats']} ({summary['repeats'] / valid:.1%} of valid)",
             f"environmental {summary['environmental']}  non-environmental {summary['non_environmental']}"
             f" ({summary['non_environmental'] / valid:.1%})  multi-label {summary['multi_label'] / env:.1%}"
             f"  night {summary['night'] / valid:.1%}",
             "label         count  share of environmental"]
    for label, n in summary["labels"].items():
        lines.append(f"{label:<12} {n:>6}  {n / env:6.1%}")
    if summary["malformed_reasons"]:
        lines.append("malformed: " + ", ".join(f"{k} {v}" for k, v in summary["malformed_reasons"].items()))
    lines.append("channels: " + ", ".join(f"{k} {v}" for k, v in summary["channels"].items()))
    return "\n".join(lines)
