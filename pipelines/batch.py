"""``envleads batch``: the whole pipeline over a JSON Lines file (the batch contract).

    envleads batch --input complaints.jsonl --output enriched.jsonl [--leads leads.jsonl]
                   [--dead-letter PATH] [--engine beam|rounds] [Beam options, e.g. --runner FnApiRunner]

One output line per valid input line (see the README for the fields); every invalid line goes to
the dead-letter file (default: ``<output stem>.deadletter.jsonl`` beside the output) with its
reason and original bytes, never into the output, and so does a line that makes a stage raise
(``internal_error``, :mod:`envleads.failures`): the run goes on without it.

Two engines run the same stages:

* ``beam`` (default): :class:`ComplaintsToLeads` as one Beam pipeline on the runner named in the
  options. On the local FnApiRunner every grouped collection is held in memory (about 45 KB per
  complaint, 0.7 MB for one with every field at its limit), so this suits files up to ~100,000
  complaints, or a distributed runner.
* ``rounds``: the stream's :class:`LocalRoundEngine` over the file in event-time order, in rounds
  of ``--round-events`` and at most ``--round-bytes``, with the stateless stages in a worker
  process: memory stays bounded (matter indexes of the repeat window, leads in an on-disk store,
  one round's events), for a year of complaints on one machine. Complaints whose city is unknown
  meet the matters of every city of their province in both engines, but ``beam`` weighs them
  against each city's index after the whole file, ``rounds`` after their round, so a join's
  similarity (rarely its matter) can differ; and a lead's first report is its first environmental
  one; everything else is equal (tested).

Both read the input as the user gives it, line for line the same: a UTF-8 BOM, CRLF or CR-only
line ends and gzip (recognised by its first bytes, whatever the file's name) are accepted (see
:func:`input_lines`). Outputs are written under temporary names beside their targets and renamed
into place at the end; any previous file at a target is removed first and the temporary files are
removed on failure, so a failed or killed run never leaves an output that looks complete (a run
killed with SIGKILL may leave a hidden ``.envleads-*`` directory beside an output). Operator
mistakes (a missing or unreadable input, an output that is the input, a missing or unwritable
output directory) end the run with a one-line :class:`OperatorError`, before any output is touched.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zlib
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes

from envleads.config import OperatorError
from envleads.leads import lead_to_avro_dict, rescore_lead
from envleads.config import DEFAULT_ROUND_BYTES
from envleads.pipelines.options import StageSettings, prepared_run, without_job_stream_deadline
from envleads.pipelines.transforms import ComplaintsToLeads
from envleads.records import Lead, RawEvent
from envleads.scoring import rank_key
from envleads.serialize import dead_letter_to_json, enriched_to_contract

LOG = logging.getLogger(__name__)


def default_dead_letter_path(output: str) -> str:
    stem, _ = os.path.splitext(output)
    return f"{stem}.deadletter.jsonl"


GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"


def is_gzip(path: str) -> bool:
    """Whether a file is gzip-compressed, by its first bytes: a name without ``.gz`` is common."""
    with open(path, "rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def _without_bom(line: bytes) -> bytes:
    return line[len(UTF8_BOM):] if line.startswith(UTF8_BOM) else line


def input_lines(record: bytes) -> List[bytes]:
    """The input lines of one record of Beam's text source (split at ``\\n`` or ``\\r\\n``,
    without them): split again at each lone ``\\r`` (CR-only line ends), a ``\\r`` at the
    record's end adding no empty line, each without a leading UTF-8 BOM (Windows editors write
    one). The rounds engine's :func:`_line_spans` finds the same lines."""
    pieces = record.split(b"\r")
    if len(pieces) > 1 and not pieces[-1]:
        pieces.pop()
    return [_without_bom(piece) for piece in pieces]


_LINE_END = re.compile(rb"\r\n|\n|\r")


def _line_spans(handle, keep: int, block_size: int = 1 << 20) -> Iterator[Tuple[int, int, bytes]]:
    """``(offset, length, head)`` of every line of a binary file as :func:`input_lines` splits it
    (BOM not removed), ``head`` being its first ``keep`` bytes. Read in blocks, so that a file of
    CR-only line ends (one record to a reader that splits at ``\\n``) is never held whole."""
    base = start = 0  # file offsets of data[0] and of the current line
    head, separated = b"", False  # a lone CR ended a line since the last LF
    data = b""
    while True:
        block = handle.read(block_size)
        data += block
        # a CR at the end waits for the next block: it may be the first half of a CRLF
        scan_end = len(data) - 1 if block and data.endswith(b"\r") else len(data)
        position = 0
        for match in _LINE_END.finditer(data, 0, scan_end):
            head += data[position:match.start()][:keep - len(head)]
            length = base + match.start() - start
            lone = match.group() == b"\r"
            if lone or length or not separated:  # CR CR LF ends one line, as in input_lines
                yield start, length, head
            separated = lone
            start, head, position = base + match.end(), b"", match.end()
        head += data[position:scan_end][:keep - len(head)]
        data, base = data[scan_end:], base + scan_end
        if not block:
            break
    if base > start:
        yield start, base - start, head


def enriched_json_line(report) -> str:
    """A report's line of the enriched output (the batch contract)."""
    return json.dumps(enriched_to_contract(report.enriched), ensure_ascii=False)


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


def _count_input_lines(path: str) -> int:
    with (gzip.open if is_gzip(path) else open)(path, "rb") as handle:
        return sum(1 for _ in _line_spans(handle, 0))


def _write_single_file(pcoll, path: str, label: str):
    return pcoll | label >> beam.io.WriteToText(path, shard_name_template="", num_shards=1)


def build_batch_pipeline(pipeline: beam.Pipeline, input_path: str, output_path: str,
                         dead_letter_path: str, leads_path: Optional[str], settings: StageSettings) -> None:
    """Wires file source, :class:`ComplaintsToLeads` and file sinks onto ``pipeline``."""
    compression = CompressionTypes.GZIP if is_gzip(input_path) else CompressionTypes.UNCOMPRESSED
    lines = (pipeline
             | "ReadComplaints" >> beam.io.ReadFromText(input_path, coder=beam.coders.BytesCoder(),
                                                        compression_type=compression)
             | "InputLines" >> beam.FlatMap(input_lines))
    if sys.stderr.isatty() and os.path.isfile(input_path):  # a bar for people, nothing in logs or CI
        lines = lines | "Progress" >> beam.ParDo(_ProgressFn(_count_input_lines(input_path)))
    events = lines | "AsRawEvents" >> beam.Map(lambda line: RawEvent(line, "json"))
    # the sink's encodings run inside: a record that fails to encode is a dead letter with its bytes
    outputs = events | "ComplaintsToLeads" >> ComplaintsToLeads(settings, encode_enriched=enriched_json_line,
                                                                 encode_lead=lead_rank_line)
    _write_single_file(outputs["enriched"], output_path, "WriteEnriched")
    _write_single_file(outputs["dead_letters"] | "DeadLetterToJson" >> beam.Map(dead_letter_to_json),
                       dead_letter_path, "WriteDeadLetters")
    if leads_path:
        _write_single_file(outputs["leads"]
                           | "CollectLeads" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
                           | "RankLeads" >> beam.FlatMap(ranked_lead_lines),
                           leads_path, "WriteLeads")


def run_batch(input_path: str, output_path: str, leads_path: Optional[str] = None,
              dead_letter_path: Optional[str] = None, beam_args: Optional[List[str]] = None) -> Dict[str, int]:
    """Runs the batch pipeline and returns the counts of lines written per output."""
    dead_letter_path = dead_letter_path or default_dead_letter_path(output_path)
    check_paths(input_path, output_path, leads_path, dead_letter_path)
    options, settings = prepared_run(beam_args)
    if is_gzip(input_path):
        _decompress(input_path, None)  # a damaged file fails here in one line, not silently halfway
    with staged_outputs(output_path, dead_letter_path, leads_path) as (output, dead_letters, leads):
        with beam.Pipeline(options=options) as pipeline:
            without_job_stream_deadline(pipeline.runner)  # on Prism: a run may outlast --job_server_timeout
            build_batch_pipeline(pipeline, input_path, output, dead_letters, leads, settings)
        counts = {"enriched": _count_lines(output), "dead_letters": _count_lines(dead_letters)}
        if leads:
            counts["leads"] = _count_lines(leads)
    return counts


@contextlib.contextmanager
def staged_outputs(*paths: Optional[str]) -> Iterator[List[Optional[str]]]:
    """Temporary paths for the outputs ``paths`` (None: no such output), renamed into place when
    the block ends without an error and removed when it raises.

    Previous files at ``paths`` are removed first: a failed or killed run must not leave the last
    run's output looking like its own. Each temporary path is in a hidden directory beside its
    target (a rename within one file system is atomic), where Beam's sinks put their own
    temporary files too.

    Raises:
        OperatorError: an output that cannot be removed or written beside.
    """
    staging: List[str] = []
    try:
        temporary: List[Optional[str]] = []
        for path in paths:
            if path is None:
                temporary.append(None)
                continue
            directory = os.path.dirname(os.path.abspath(path))
            try:
                if os.path.lexists(path):
                    os.remove(path)
                staging.append(tempfile.mkdtemp(prefix=".envleads-", dir=directory))
            except OSError as error:
                raise OperatorError(f"cannot write the output {path}: {error.strerror}") from None
            temporary.append(os.path.join(staging[-1], os.path.basename(path)))
        yield temporary
        for staged, path in zip(temporary, paths):
            if staged is not None:
                os.replace(staged, path)
    finally:
        for directory in staging:
            shutil.rmtree(directory, ignore_errors=True)


def _event_time_order(input_path: str, keep: int) -> List[Tuple[int, str, int, int]]:
    """``(event time, complaint id, byte offset, length)`` of every line, in the order the bounded
    repeat stage assigns complaints (event time, then id). A line that does not parse (or is longer
    than ``keep`` bytes, the event limit) sorts first: it is only dead-lettered."""
    from envleads.decode import parse_event_time

    order = []
    with open(input_path, "rb") as handle:
        for offset, length, head in _line_spans(handle, keep):
            try:
                document = json.loads(_without_bom(head))
                key = (parse_event_time(document["received_at"]), str(document["complaint_id"]))
            except Exception:  # noqa: BLE001 - any unreadable line: the decoder says why
                key = (0, "")
            order.append((key[0], key[1], offset, length))
    order.sort()
    return order


def _read_line(handle, offset: int, length: int) -> bytes:
    handle.seek(offset)
    return _without_bom(handle.read(length))


def _rounds(order: List[Tuple[int, str, int, int]], round_events: int,
            round_bytes: int) -> Iterator[List[Tuple[int, int]]]:
    """``(offset, length)`` of the lines of each round: at most ``round_events`` lines and
    ``round_bytes`` bytes (a longer line is a round of its own)."""
    lines: List[Tuple[int, int]] = []
    size = 0
    for _, _, offset, length in order:
        if lines and (len(lines) >= round_events or size + length > round_bytes):
            yield lines
            lines, size = [], 0
        lines.append((offset, length))
        size += length
    if lines:
        yield lines


def _decompress(input_path: str, target) -> None:
    """Writes the gzip input's content to ``target`` (a binary file, or None to only check it);
    a damaged or truncated file is a one-line OperatorError in both engines (Beam's reader would
    silently stop at a truncation and lose the rest)."""
    try:
        with gzip.open(input_path, "rb") as source:
            while chunk := source.read(1 << 20):
                if target is not None:
                    target.write(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise OperatorError(f"the gzip input {input_path} is damaged: {error}") from None


def _uncompressed(input_path: str, directory: str) -> str:
    """The input's path, or for gzip input that of a decompressed copy in ``directory``: the rounds
    engine reads lines by their offsets, which a compressed stream has not."""
    if not is_gzip(input_path):
        return input_path
    copy = os.path.join(directory, "input.jsonl")
    with open(copy, "wb") as target:
        _decompress(input_path, target)
    return copy


def run_batch_rounds(input_path: str, output_path: str, leads_path: Optional[str] = None,
                     dead_letter_path: Optional[str] = None, beam_args: Optional[List[str]] = None,
                     round_events: int = 5000, enrich_workers: int = 1,
                     round_bytes: int = DEFAULT_ROUND_BYTES) -> Dict[str, int]:
    """The ``rounds`` engine (see the module docstring); returns the counts of lines written.

    A round is at most ``round_events`` lines and ``round_bytes`` bytes of them: memory per round
    is bounded by the bytes (an event at the field limits costs ~100 times its size at the peak)."""
    dead_letter_path = dead_letter_path or default_dead_letter_path(output_path)
    check_paths(input_path, output_path, leads_path, dead_letter_path)
    _, settings = prepared_run(beam_args)
    with staged_outputs(output_path, dead_letter_path, leads_path) as (output, dead_letters, leads):
        source = _uncompressed(input_path, os.path.dirname(output))
        return _run_rounds(source, output, dead_letters, leads, settings, round_events, round_bytes, enrich_workers)


def _run_rounds(input_path: str, output_path: str, dead_letter_path: str, leads_path: Optional[str],
                settings: StageSettings, round_events: int, round_bytes: int, enrich_workers: int) -> Dict[str, int]:
    from envleads.pipelines.heap import RoundCollector
    from envleads.pipelines.rounds.engine import LocalRoundEngine
    from envleads.pipelines.rounds.pools import EnrichmentPool
    from envleads.pipelines.rounds.store import LeadStore

    order = _event_time_order(input_path, settings.limits.max_event_bytes + len(UTF8_BOM))
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
            def finish(enriched_of, events) -> None:
                nonlocal newest_ms
                outputs = engine.finish(*enriched_of(), events)
                lines, encoded_leads = _encoded_round(engine, outputs, events)
                out.writelines(lines)
                newest_ms = max([newest_ms] + [r.enriched.complaint.received_at_ms for r in outputs.enriched])
                for dead in outputs.dead_letters:
                    dead_out.write(dead_letter_to_json(dead) + "\n")
                store.put_leads(encoded_leads)
                store.put_state(outputs.state)
                counts["enriched"] += len(lines)
                counts["dead_letters"] += len(outputs.dead_letters)
                bar.update(len(outputs.enriched) + len(outputs.dead_letters))
                collector.after_round()

            pending = None
            for lines in _rounds(order, round_events, round_bytes):
                events = [RawEvent(_read_line(source, offset, length), "json") for offset, length in lines]
                # with a pool, this round is enriched in the worker while the previous one is finished
                enriched_of = pool.submit(events).result if pool else functools.partial(engine.enrich, events)
                if pending is not None:
                    finish(*pending)
                pending = enriched_of, events
            if pending is not None:
                finish(*pending)
        if leads_path:
            counts["leads"] = _write_ranked_leads(store.all_leads(), newest_ms, leads_path)
        if engine.internal_errors:
            LOG.warning("internal_error dead letters per stage: %s", dict(sorted(engine.internal_errors.items())))
    finally:
        collector.stop()
        bar.close()
        if pool is not None:
            pool.close()
        store.close()
    return counts


def _encoded_round(engine, outputs, events) -> Tuple[List[str], List[Tuple[Lead, bytes]]]:
    """A round's enriched lines and ``(lead, Avro value)`` pairs; a record that fails to encode is a
    dead letter (with its bytes) appended to ``outputs.dead_letters`` and counted by the engine."""
    from envleads.failures import count_internal_errors
    from envleads.pipelines.rounds.outputs import encode_or_dead_letter, with_originals
    from envleads.pipelines.transforms import ENCODE_ENRICHED_STAGE, ENCODE_LEADS_STAGE

    failed: list = []
    lines = [line for line in (encode_or_dead_letter(enriched_json_line, report, ENCODE_ENRICHED_STAGE, [report], failed)
                               for report in outputs.enriched) if line is not None]
    leads = []
    for lead in outputs.leads:
        reports = [r for r in outputs.enriched if r.enriched.cluster_id == lead.cluster_id]
        value = encode_or_dead_letter(_encodable_lead, lead, ENCODE_LEADS_STAGE, reports, failed)
        if value is not None:
            leads.append((lead, value))
    failed = with_originals(failed, events)
    engine.internal_errors.update(count_internal_errors(failed))
    outputs.dead_letters.extend(failed)
    return [line + "\n" for line in lines], leads


def _encodable_lead(lead: Lead) -> bytes:
    """The lead's Avro value, once its line of the leads file is known to encode too (it is
    written at the end, when its reports' bytes are gone)."""
    from envleads.pipelines.rounds.outputs import _encode_lead

    lead_rank_line(lead)
    return _encode_lead(lead)


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
    """Refuses a run that would read nothing, destroy what it reads or fail only at its end: a
    missing or unreadable input; an output (enriched, leads, dead letters) that is the input file
    or another output, by any spelling of its path; an output directory that is missing or not
    writable, or an output that is a directory.

    Raises:
        OperatorError: with the one-line reason.
    """
    if not os.path.isfile(input_path):
        raise OperatorError(f"input file not found: {input_path}")
    if not os.access(input_path, os.R_OK):
        raise OperatorError(f"input file not readable: {input_path}")
    seen = {os.path.realpath(input_path): "the input file"}
    for path in filter(None, outputs):
        real = os.path.realpath(path)
        if real in seen:
            raise OperatorError(f"an output is {seen[real]} ({path}): give another output path")
        seen[real] = "another output"
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OperatorError(f"output directory not found: {directory}")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OperatorError(f"output directory not writable: {directory}")
        if os.path.isdir(path):
            raise OperatorError(f"an output is a directory: {path}")
