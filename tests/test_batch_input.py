"""Issue 26, item 3: the batch engines read the input as the user gives it and never leave an output
that looks complete when the run was not.

A UTF-8 BOM, CRLF or CR-only line ends and gzip input (with or without the ``.gz`` name) give both
engines the same outputs as the plain file; a run that fails midway leaves nothing at the output
paths (the previous run's outputs are gone too) and no temporary files; operator mistakes end in
one line, exit 2.
"""
import gzip
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envleads.decode import decode_event
from envleads.generator import generate_events
from envleads.records import Complaint
from envleads.pipelines.batch import UTF8_BOM, _line_spans, _without_bom, input_lines

KEY = "batch-input-key"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", KEY)


@pytest.fixture(scope="module")
def lines():
    """Generated lines (a few malformed ones among them), an empty line and a line that is no JSON."""
    generated = [event.line for event in generate_events(30, seed=41)]
    return generated[:10] + [b"", b"not json at all"] + generated[10:]


def _variants(lines):
    plain = b"\n".join(lines) + b"\n"
    return {
        "bom": UTF8_BOM + plain,
        "crlf": b"\r\n".join(lines) + b"\r\n",
        "cr": b"\r".join(lines) + b"\r",
        "gz": gzip.compress(plain),
        "gz_without_suffix": gzip.compress(b"\r\n".join(lines)),  # and the last line without its end
    }


def _run(engine, source, out_dir):
    from envleads.pipelines.batch import run_batch, run_batch_rounds

    out_dir.mkdir()
    output, leads = out_dir / "enriched.jsonl", out_dir / "leads.jsonl"
    if engine == "beam":
        counts = run_batch(str(source), str(output), str(leads), beam_args=["--runner=FnApiRunner"])
    else:
        counts = run_batch_rounds(str(source), str(output), str(leads), enrich_workers=0)
    dead = out_dir / "enriched.deadletter.jsonl"
    # nothing else: no temporary file is left
    assert sorted(os.listdir(out_dir)) == ["enriched.deadletter.jsonl", "enriched.jsonl", "leads.jsonl"]
    return (counts, sorted(output.read_text("utf-8").splitlines()), sorted(dead.read_text("utf-8").splitlines()),
            sorted(leads.read_text("utf-8").splitlines()))


@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_bom_crlf_cr_and_gzip_give_the_outputs_of_the_plain_file(tmp_path, lines, engine):
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    expected = _run(engine, plain, tmp_path / "out-plain")
    counts, _, dead, _ = expected
    assert counts["enriched"] > 20 and counts["dead_letters"] >= 2  # the empty line, the line that is no JSON
    assert {json.loads(line)["reason"] for line in dead} >= {"empty_event", "invalid_json"}
    for name, data in _variants(lines).items():
        source = tmp_path / (f"{name}.jsonl.gz" if name == "gz" else f"{name}.jsonl")
        source.write_bytes(data)
        assert _run(engine, source, tmp_path / f"out-{name}") == expected, name


def _beam_records(data: bytes):
    """Beam's text source's records: split at LF, a CR before it dropped; bytes after the last LF
    are a record (checked against Beam itself below)."""
    parts = data.split(b"\n")
    records = [part[:-1] if part.endswith(b"\r") else part for part in parts[:-1]]
    return records + [parts[-1]] if parts[-1] else records


EDGES = (UTF8_BOM + b'{"a": 1}\r\n\r\nb\rc\r\r\n\n\rd' + UTF8_BOM + b"e\r\r\rf\n" + UTF8_BOM + b"\r\ng\r")


def test_beam_text_source_with_input_lines_reads_what_the_rounds_engine_reads(tmp_path):
    import apache_beam as beam

    source, sink = tmp_path / "edges.jsonl", tmp_path / "read.txt"
    source.write_bytes(EDGES)
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        (pipeline
         | beam.io.ReadFromText(str(source), coder=beam.coders.BytesCoder())
         | beam.FlatMap(input_lines)
         | beam.Map(lambda line: json.dumps(line.decode("utf-8")))
         | beam.io.WriteToText(str(sink), shard_name_template="", num_shards=1))
    read_by_beam = [json.loads(line).encode("utf-8") for line in sink.read_text("utf-8").splitlines()]
    assert read_by_beam == [line for record in _beam_records(EDGES) for line in input_lines(record)]
    with open(source, "rb") as handle:
        spans = [EDGES[offset:offset + length] for offset, length, _ in _line_spans(handle, 100)]
    assert [_without_bom(line) for line in spans] == read_by_beam
    assert b"c" in read_by_beam and b"" in read_by_beam and b"f" in read_by_beam


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", UTF8_BOM]), max_size=30),
       st.integers(min_value=1, max_value=5))
def test_rounds_engine_line_spans_equal_the_beam_records_split_by_input_lines(pieces, block):
    import io

    data = b"".join(pieces)
    spans = list(_line_spans(io.BytesIO(data), keep=4, block_size=block))
    expected = [line for record in _beam_records(data) for line in input_lines(record)]
    assert [_without_bom(data[offset:offset + length]) for offset, length, _ in spans] == expected
    assert all(head == data[offset:offset + min(length, 4)] for offset, length, head in spans)


# ----------------------------------------------------------------------------------- failed runs
class _RunAborted(BaseException):
    """A failure of the run, not of one record (as an interrupt or the process running out of a resource)."""


@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_a_run_that_fails_midway_leaves_no_output_and_no_temporary_file(tmp_path, monkeypatch, engine):
    from envleads.pipelines import batch

    source = tmp_path / "in.jsonl"
    events = [event.line for event in generate_events(40, seed=43)]
    source.write_bytes(b"\n".join(events) + b"\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    targets = [out_dir / "enriched.jsonl", out_dir / "enriched.deadletter.jsonl", out_dir / "leads.jsonl"]
    for target in targets:  # a previous run's outputs
        target.write_text('{"complaint_id": "from the previous run"}\n', encoding="utf-8")
    complaints = [decode_event(line, "json", b"k") for line in events]
    last_id = max((c.received_at_ms, c.complaint_id) for c in complaints if isinstance(c, Complaint))[1]
    real = batch.enriched_to_contract

    def failing(enriched):
        if enriched.complaint.complaint_id == last_id:  # the last round, after others were written
            # not an Exception: one record's Exception is only a dead letter (envleads.failures)
            raise _RunAborted("stage failed")
        return real(enriched)

    monkeypatch.setattr(batch, "enriched_to_contract", failing)
    with pytest.raises(BaseException, match="stage failed"):
        if engine == "beam":
            batch.run_batch(str(source), str(targets[0]), str(targets[2]), beam_args=["--runner=FnApiRunner"])
        else:
            batch.run_batch_rounds(str(source), str(targets[0]), str(targets[2]), round_events=10, enrich_workers=0)
    assert sorted(os.listdir(out_dir)) == []


# ------------------------------------------------------------------------------- operator mistakes
@pytest.mark.parametrize("engine", ["beam", "rounds"])
@pytest.mark.parametrize("role", ["--output", "--leads", "--dead-letter"])
def test_a_missing_output_directory_is_one_line_and_exit_2(tmp_path, capsys, engine, role):
    from envleads.cli import main

    source = tmp_path / "in.jsonl"
    source.write_bytes(next(generate_events(1, seed=3)).line + b"\n")
    paths = {"--output": str(tmp_path / "out.jsonl"), "--leads": str(tmp_path / "leads.jsonl"),
             "--dead-letter": str(tmp_path / "dead.jsonl")}
    paths[role] = str(tmp_path / "no-such-dir" / "file.jsonl")
    argv = ["batch", "--input", str(source), "--engine", engine]
    for flag, path in paths.items():
        argv += [flag, path]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "output directory not found" in err and "no-such-dir" in err and "\n" not in err
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_two_outputs_at_one_path_are_refused(tmp_path, capsys):
    from envleads.cli import main

    source = tmp_path / "in.jsonl"
    source.write_bytes(next(generate_events(1, seed=3)).line + b"\n")
    argv = ["batch", "--input", str(source), "--output", str(tmp_path / "out.jsonl"),
            "--leads", str(tmp_path / "out.jsonl")]
    assert main(argv) == 2
    assert "another output" in capsys.readouterr().err


def test_a_damaged_gzip_input_is_one_line_and_exit_2(tmp_path, capsys):
    from envleads.cli import main

    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(gzip.compress(b"\n".join(event.line for event in generate_events(50, seed=5)))[:-30])
    argv = ["batch", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--engine", "rounds"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "gzip input" in err and "damaged" in err and "\n" not in err
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl.gz"]
