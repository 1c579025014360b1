"""``envleads batch``: the whole pipeline over a JSON Lines file (the batch contract).

    envleads batch --input complaints.jsonl --output enriched.jsonl [--leads leads.jsonl]
                   [--dead-letter PATH] [Beam options, e.g. --runner FnApiRunner]

One output line per valid input line (see the README for the fields); every invalid line goes to
the dead-letter file (default: ``<output stem>.deadletter.jsonl`` beside the output) with its
reason and original bytes, never into the output.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam

from envleads.leads import lead_to_avro_dict
from envleads.pipelines.options import StageSettings, pipeline_options, settings_from_options
from envleads.pipelines.transforms import ComplaintsToLeads, RawEvent
from envleads.records import Lead
from envleads.scoring import rank_key
from envleads.serialize import dead_letter_to_json, enriched_to_contract

LOG = logging.getLogger(__name__)


def default_dead_letter_path(output: str) -> str:
    stem, _ = os.path.splitext(output)
    return f"{stem}.deadletter.jsonl"


def lead_rank_line(lead: Lead) -> Tuple[tuple, str]:
    """A lead's rank key and its JSON line without the rank: what the global ranking step collects.

    Ranking needs every lead in one place; a JSON string is several times smaller than the Lead
    (its sketch alone is 256 Python ints), which keeps the batch run's peak memory down.
    """
    return rank_key(lead.tier, lead.score, lead.last_seen_ms), json.dumps(lead_to_avro_dict(lead), ensure_ascii=False)


def ranked_lead_lines(keyed_lines: List[Tuple[tuple, str]]) -> Iterator[str]:
    """The collected leads best first, each line the lead's JSON object with ``rank`` as its first field."""
    for rank, (_, line) in enumerate(sorted(keyed_lines, key=lambda item: item[0]), start=1):
        yield f'{{"rank": {rank}, {line[1:]}'


class _ProgressFn(beam.DoFn):
    """Counts input lines on a terminal progress bar and passes them on unchanged.

    Only added when stderr is a terminal (see :func:`build_batch_pipeline`); with several worker
    processes each shows its own bar.
    """

    def __init__(self, total: int):
        self._total = total

    def setup(self):
        from tqdm import tqdm

        self._bar = tqdm(total=self._total, desc="complaints", unit="line", disable=None, leave=False)

    def process(self, line: bytes):
        self._bar.update(1)
        yield line

    def teardown(self):
        self._bar.close()


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def _write_single_file(pcoll, path: str, label: str):
    return pcoll | label >> beam.io.WriteToText(path, shard_name_template="", num_shards=1)


def build_batch_pipeline(pipeline: beam.Pipeline, input_path: str, output_path: str,
                         dead_letter_path: str, leads_path: Optional[str], settings: StageSettings) -> None:
    """Wires file source, :class:`ComplaintsToLeads` and file sinks onto ``pipeline``."""
    lines = pipeline | "ReadComplaints" >> beam.io.ReadFromText(input_path, coder=beam.coders.BytesCoder())
    if sys.stderr.isatty() and os.path.isfile(input_path):  # a bar for people, nothing in logs or CI
        lines = lines | "Progress" >> beam.ParDo(_ProgressFn(_count_lines(input_path)))
    events = lines | "AsRawEvents" >> beam.Map(lambda line: RawEvent(line, "json"))
    outputs = events | "ComplaintsToLeads" >> ComplaintsToLeads(settings)
    _write_single_file(outputs["enriched"]
                       | "ToContract" >> beam.Map(lambda r: json.dumps(enriched_to_contract(r.enriched), ensure_ascii=False)),
                       output_path, "WriteEnriched")
    _write_single_file(outputs["dead_letters"] | "DeadLetterToJson" >> beam.Map(dead_letter_to_json),
                       dead_letter_path, "WriteDeadLetters")
    if leads_path:
        _write_single_file(outputs["leads"]
                           | "LeadToKeyedJson" >> beam.Map(lead_rank_line)
                           | "CollectLeads" >> beam.combiners.ToList()
                           | "RankLeads" >> beam.FlatMap(ranked_lead_lines),
                           leads_path, "WriteLeads")


def prepare_worker_environment(settings: StageSettings) -> str:
    """Makes sure a model is registered and a pseudonymisation key is set for this run's workers.

    In demo mode (no --production) a missing key is generated once here and put in the
    environment, so every local worker process pseudonymises with the same key. Returns the model
    version the run will use.
    """
    from envleads.models.registry import ensure_default_model
    from envleads.privacy import KEY_ENV, KEY_FILE_ENV, load_pseudonym_key

    if not (os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
        key = load_pseudonym_key(settings.production)  # raises in production mode
        os.environ[KEY_ENV] = key.hex()
        LOG.warning("no pseudonymisation key configured: generated one for this run only "
                    "(reporter keys are not comparable across runs; set %s in production)", KEY_ENV)
    if settings.model_version == "latest":
        return ensure_default_model(settings.model_registry)
    return settings.model_version


def run_batch(input_path: str, output_path: str, leads_path: Optional[str] = None,
              dead_letter_path: Optional[str] = None, beam_args: Optional[List[str]] = None) -> Dict[str, int]:
    """Runs the batch pipeline and returns the counts of lines written per output."""
    options = pipeline_options(list(beam_args or []))
    settings = settings_from_options(options)
    settings = settings._replace(model_version=prepare_worker_environment(settings))
    dead_letter_path = dead_letter_path or default_dead_letter_path(output_path)
    with beam.Pipeline(options=options) as pipeline:
        build_batch_pipeline(pipeline, input_path, output_path, dead_letter_path, leads_path, settings)
    counts = {"enriched": _count_lines(output_path), "dead_letters": _count_lines(dead_letter_path)}
    if leads_path:
        counts["leads"] = _count_lines(leads_path)
    return counts


def _run_command(args: argparse.Namespace, beam_args: List[str]) -> int:
    counts = run_batch(args.input, args.output, args.leads, args.dead_letter, beam_args)
    print(json.dumps(counts))
    return 0


def add_subcommand(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch", help="run the whole pipeline over a JSON Lines file (the batch contract)",
        description="Enriches complaints from a JSON Lines file; unknown flags go to Beam "
                    "(e.g. --runner, --direct_num_workers, --model_version).")
    parser.add_argument("--input", required=True, help="JSON Lines file of complaint events")
    parser.add_argument("--output", required=True, help="enriched JSON Lines output, one line per valid input")
    parser.add_argument("--leads", default=None, help="also write the ranked leads (JSON Lines) here")
    parser.add_argument("--dead-letter", default=None,
                        help="dead-letter file (default: <output stem>.deadletter.jsonl)")
    parser.set_defaults(func=_run_command, accepts_pipeline_args=True)
