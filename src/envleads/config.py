"""Locating and validating the data files that configure envleads (dictionaries, rules, weights),
and the default topic names of a deployment.

Every data file carries a ``version`` so that outputs can say which configuration produced them.
Files are read once and turned into typed objects by the module that owns them; a missing key fails
at load time, naming the file and the key, never later per element.
"""
from __future__ import annotations

import functools
import json
import os
from datetime import timedelta, timezone
from typing import Any, Callable, Dict, Iterable, Tuple, TypeVar

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# The topics of a deployment by role, defined here only: the defaults of every command's topic
# flags, of :class:`~envleads.pipelines.rounds.outputs.Topics` and of the topics the embedded broker
# creates. The Avro subjects of ``schemas/registry.json`` carry the same names but are another thing
# (a renamed topic keeps its subject).
DEFAULT_TOPICS: Dict[str, str] = {
    "raw": "complaints.raw",
    "enriched": "complaints.enriched",
    "leads": "leads",
    "dead_letter": "complaints.deadletter",
}


# China Standard Time (UTC+8), the time zone of the complaints: a time without an offset is read in
# it, and the feed, the dashboard and the due dates of leads show and count days in it.
CHINA_TZ = timezone(timedelta(hours=8))

# Defaults shared by the command line and the engines, here (not beside the engines) so that
# ``envleads --help`` and argument parsing import neither Beam nor scikit-learn.
DEFAULT_STREAM_GROUP = "envleads-stream"  # the rounds engine's consumer group and writer fence
DEFAULT_BEAM_GROUP = "envleads-beam-stream"  # the Beam streaming job's consumer group
KAFKA_CLIENTS = ("auto", "native", "python")  # the rounds engine's Kafka session (kafka_edge/session.py)
# A round's raw event bytes at most (besides its event count), in the batch rounds engine and the
# stream. An event at the field limits (~24 KB) cost ~2.2 MB at a round's peak (measured with
# bench/bench_limits_memory.py: tokens held as Python strings, and the classifier's n-gram arrays
# of its whole batch), so 8 MiB (~350 such events) keeps one process of a round of limit-size
# events near 1.3 GB; a round of 5,000 ordinary complaints (under 1.6 KB each) is not cut.
DEFAULT_ROUND_BYTES = 8 * 1024 * 1024


def data_path(name: str) -> str:
    """Absolute path of a packaged data file (``src/envleads/data/<name>``)."""
    return os.path.join(DATA_DIR, name)


class ConfigError(ValueError):
    """A configuration file is missing a key or holds a value of the wrong kind."""


class OperatorError(RuntimeError):
    """A run that must not start as asked (a missing input, an output over the input, an unusable
    key): the command line reports it in one line, without a traceback."""


def load_json_config(path: str, required: Iterable[str] = ("version",)) -> Dict[str, Any]:
    """Reads a JSON configuration file and checks that its required top-level keys exist."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object at top level")
    for key in required:
        if key not in document:
            raise ConfigError(f"{path}: missing key {key!r}")
    return document


_Built = TypeVar("_Built")


def cached_per_config(build: Callable[[Any], _Built]) -> Callable[[Any], _Built]:
    """Memoises ``build(config)`` by the configuration object's identity: configurations hold dicts,
    so they cannot be hashed for ``lru_cache``, and what is built from one (an automaton) is costly.
    Keeps at most 64 (tests and tuning runs make many configurations)."""
    cache: Dict[int, Tuple[Any, _Built]] = {}

    @functools.wraps(build)
    def cached(config):
        hit = cache.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        built = build(config)
        if len(cache) >= 64:
            cache.clear()
        cache[id(config)] = (config, built)
        return built

    return cached
