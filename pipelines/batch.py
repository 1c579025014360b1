"""``envleads batch``: the whole pipeline over a JSON Lines file (the batch contract).

    envleads batch --input complaints.jsonl --output enriched.jsonl [--leads leads.jsonl]
                   [--dead-letter PATH] [--engine beam|rounds] [Beam options, e.g. --runner FnApiRunner]

One output line per valid input line (see the README for the fields); every invalid line goes to
the dead-letter file (default: ``<output stem>.deadletter.jsonl`` beside the output) with its
reason and original bytes, never into the output.

Two engines run the same stages:

* ``beam`` (default): :class:`ComplaintsToLeads` as one Beam pipeline on the runner named in the
  options. On the local FnApiRunner every grouped collection is held in memory (about 45 KB per
  complaint), so this suits files up to ~100,000 complaints, or a distributed runner.
* ``rounds``: the stream's :class:`LocalRoundEngine` over the file in event-time order, in rounds
  of ``--round-events``, with the stateless stages in a worker process: memory stays bounded
  (matter indexes of the repeat window, leads in an on-disk store), for a year of complaints on
  one machine. Complaints whose city is unknown are matched against other such complaints only
  (``beam`` also tries every city of their province), and a lead's first report is its first
  environmental one; everything else is equal (tested).
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam

from envleads.config import OperatorError
from envleads.leads import lead_to_avro_dict, rescore_lead
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
                           | "CollectLeads" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
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

    key = load_pseudonym_key(settings.production)  # raises here, not in every worker, when unusable
    if not (os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
        os.environ[KEY_ENV] = key.hex()
        LOG.warning("no pseudonymisation key configured: generated one for this run only "
                    "(reporter keys are not comparable across runs; set %s in production)", KEY_ENV)
    if settings.model_version == "latest":
        return ensure_default_model(settings.model_registry)
    return settings.model_version


def prepared_run(beam_args: Optional[List[str]]):
    """The options and stage settings of a run, with its worker environment prepared (see
    :func:`prepare_worker_environment`) and ``latest`` resolved to a model version."""
    options = pipeline_options(list(beam_args or []))
    settings = settings_from_options(options)
    return options, settings._replace(model_version=prepare_worker_environment(settings))


def run_batch(input_path: str, output_path: str, leads_path: Optional[str] = None,
              dead_letter_path: Optional[str] = None, beam_args: Optional[List[str]] = None) -> Dict[str, int]:
    """Runs the batch pipeline and returns the counts of lines written per output."""
    dead_letter_path = dead_letter_path or default_dead_letter_path(output_path)
    check_paths(input_path, output_path, leads_path, dead_letter_path)
    options, settings = prepared_run(beam_args)
    with beam.Pipeline(options=options) as pipeline:
        build_batch_pipeline(pipeline, input_path, output_path, dead_letter_path, leads_path, settings)
    counts = {"enriched": _count_lines(output_path), "dead_letters": _count_lines(dead_letter_path)}
    if leads_path:
        counts["leads"] = _count_lines(leads_path)
    return counts


def _event_time_order(input_path: str) -> List[Tuple[int, str, int]]:
    """``(event time, complaint id, byte offset)`` of every line, in the order the bounded repeat
    stage assigns complaints (event time, then id). A line that does not parse sorts first: it is
    only dead-lettered."""
    from envleads.decode import parse_event_time

    order, offset = [], 0
    with open(input_path, "rb") as handle:
        for line in handle:
            try:
                document = json.loads(line)
                key = (parse_event_time(document["received_at"]), str(document["complaint_id"]))
            except Exception:  # noqa: BLE001 - any unreadable line: the decoder says why
                key = (0, "")
            order.append((key[0], key[1], offset))
            offset += len(line)
    order.sort()
    return order


def _read_line(handle, offset: int) -> bytes:
    handle.seek(offset)
    line = handle.readline()
    return line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line


def run_batch_rounds(input_path: str, output_path: str, leads_path: Optional[str] = None,
                     dead_letter_path: Optional[str] = None, beam_args: Optional[List[str]] = None,
                     round_events: int = 5000, enrich_workers: int = 1) -> Dict[str, int]:
    """The ``rounds`` engine (see the module docstring); returns the counts of lines written."""
    from envleads.pipelines.heap import RoundCollector
    from envleads.pipelines.stream import EnrichmentPool, LeadStore, LocalRoundEngine, _encode_lead

    dead_letter_path = dead_letter_path or default_dead_letter_path(output_path)
    check_paths(input_path, output_path, leads_path, dead_letter_path)
    _, settings = prepared_run(beam_args)
    order = _event_time_order(input_path)
    store = LeadStore()
    engine = LocalRoundEngine(settings, store)
    pool = EnrichmentPool(settings, enrich_workers) if enrich_workers > 0 else None
    counts = {"enriched": 0, "dead_letters": 0}
    newest_ms = 0
    bar = _progress_bar(len(order))
    collector = RoundCollector()
    try:
        collector.start()
        with open(input_path, "rb") as source, open(output_path, "w", encoding="utf-8") as out, \
                open(dead_letter_path, "w", encoding="utf-8") as dead_out:
            def finish(enriched_of) -> None:
                nonlocal newest_ms
                outputs = engine.finish(*enriched_of())
                for report in outputs.enriched:
                    out.write(json.dumps(enriched_to_contract(report.enriched), ensure_ascii=False) + "\n")
                    newest_ms = max(newest_ms, report.enriched.complaint.received_at_ms)
                for dead in outputs.dead_letters:
                    dead_out.write(dead_letter_to_json(dead) + "\n")
                store.put_leads((lead, _encode_lead(lead)) for lead in outputs.leads)
                counts["enriched"] += len(outputs.enriched)
                counts["dead_letters"] += len(outputs.dead_letters)
                bar.update(len(outputs.enriched) + len(outputs.dead_letters))
                collector.after_round()

            pending = None
            for start in range(0, len(order), round_events):
                events = [RawEvent(_read_line(source, offset), "json") for _, _, offset in order[start:start + round_events]]
                # with a pool, this round is enriched in the worker while the previous one is finished
                enriched_of = pool.submit(events).result if pool else functools.partial(engine.enrich, events)
                if pending is not None:
                    finish(pending)
                pending = enriched_of
            if pending is not None:
                finish(pending)
        if leads_path:
            counts["leads"] = _write_ranked_leads(store.all_leads(), newest_ms, leads_path)
    finally:
        collector.stop()
        bar.close()
        if pool is not None:
            pool.close()
        store.close()
    return counts


def _write_ranked_leads(leads: Iterable[Lead], as_of_ms: int, leads_path: str) -> int:
    """Ranks ``leads`` rescored as of ``as_of_ms`` into ``leads_path``; returns how many.

    The unranked lines wait in a temporary file and only (rank key, offset) pairs are sorted, so
    memory does not grow with the leads' text (a year of complaints gives ~600,000 leads).
    """
    from envleads.scoring import load_scoring_weights

    weights = load_scoring_weights()
    keyed: List[Tuple[tuple, int]] = []
    with tempfile.TemporaryFile() as unranked:
        for lead in leads:
            key, line = lead_rank_line(rescore_lead(lead, as_of_ms, weights))
            keyed.append((key, unranked.tell()))
            unranked.write(line.encode("utf-8") + b"\n")
        keyed.sort()  # ties keep their order of arrival, as the stable sort of ranked_lead_lines does
        with open(leads_path, "w", encoding="utf-8") as out:
            for rank, (_, offset) in enumerate(keyed, start=1):
                unranked.seek(offset)
                line = unranked.readline().decode("utf-8")
                out.write(f'{{"rank": {rank}, {line[1:]}')
    return len(keyed)


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="complaints", unit="line", disable=not sys.stderr.isatty(), leave=False)


def check_paths(input_path: str, *outputs: Optional[str]) -> None:
    """Refuses a run that would read nothing or destroy what it reads: a missing input, or an
    output (enriched, leads, dead letters) that is the input file, by any spelling of its path.

    Raises:
        OperatorError: with the one-line reason.
    """
    if not os.path.isfile(input_path):
        raise OperatorError(f"input file not found: {input_path}")
    source = os.path.realpath(input_path)
    for path in outputs:
        if path and os.path.realpath(path) == source:
            raise OperatorError(f"an output is the input file ({path}): give another output path")


def _run_command(args: argparse.Namespace, beam_args: List[str]) -> int:
    if args.engine == "rounds":
        counts = run_batch_rounds(args.input, args.output, args.leads, args.dead_letter, beam_args,
                                  round_events=args.round_events, enrich_workers=args.enrich_workers)
    else:
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
    parser.add_argument("--engine", choices=("beam", "rounds"), default="beam",
                        help="beam (default): one Beam pipeline, everything grouped in memory on the local "
                             "runner (files up to ~100,000 complaints); rounds: the stream engine over the file in "
                             "event-time order, bounded memory (a year of complaints on one machine)")
    parser.add_argument("--round-events", type=int, default=5000, help="rounds engine: complaints per round")
    parser.add_argument("--enrich-workers", type=int, default=1,
                        help="rounds engine: processes for the stateless stages (0: in this process)")
    parser.set_defaults(func=_run_command, accepts_pipeline_args=True)
