"""The project's Beam jobs on Prism, Beam's portable runner, whose SDK workers are driven over the Fn
API by a separate Go process that really streams (watermarks, bundles, timers of its own), compared
with the in-process runners the other tests use.

Prism is built from Beam's Go module, at the version of the installed Python SDK, by ``make``
(target ``prism``, cached in ``.cache/prism/v<version>/prism``) and handed to ``PrismRunner`` with
``--prism_location`` (see the ``prism_location`` fixture in ``conftest.py``); nothing is downloaded
at run time. One Prism job service serves every pipeline of the test process: ``PrismRunner`` keeps
its job server in a process-wide shared handle, started by the first job and stopped at exit. The
SDK workers run in this process (``LOOPBACK``, PrismRunner's default), so the environment the
tests set (the pseudonymisation key) reaches them.

1. The batch pipeline (``build_batch_pipeline`` through ``run_batch``) over generated events:
   identical enriched records, ranked leads and dead letters on Prism and on the FnApiRunner.
2. The streaming pipeline (``ComplaintsToLeadsStreaming``) under ``TestStream`` over generated
   events, with late complaints (some far behind the watermark): identical outputs on Prism
   and on the DirectRunner in streaming mode.
3. The hand-written ``TestStream`` scenarios of ``test_streaming.py`` (late data, expiry, prior
   leads, redelivery, the whole path), run again as they are with Prism as the streaming runner.
4. One difference from the DirectRunner, pinned: within one bundle, Prism hands a key's elements
   to a stateful DoFn in event-time order, not in arrival order.

Prism runs without its bundle splits (``beam_stream.with_local_prism(no_splits=True)``), which lose
state writes of stateful stages (see test 2); the TestStream pipelines here need none.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import pickle
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from envleads.decode import parse_event_time
from envleads.generator import generate_events
from envleads.leads import lead_to_avro_dict
from envleads.pipelines.batch import run_batch
from envleads.pipelines.beam_stream import with_local_prism
from envleads.pipelines.options import StageSettings
from envleads.pipelines.streaming import (EXPIRED, BuildLeadsStreaming, ComplaintsToLeadsStreaming,
                                          DeduplicatePetitionsStreaming)
from envleads.pipelines.transforms import (DEAD_LETTER, MAIN, ClassifyPollutionType, DecodeComplaints, ResolveRegion,
                                           SegmentText)
from envleads.records import RawEvent
from envleads.serialize import dead_letter_to_json, enriched_to_contract

import test_streaming as scenarios  # the module, not its functions: pytest collects nothing twice

KEY = "test-prism-key"
EVENTS = 200  # the batch comparison
STREAM_EVENTS = 120  # the streaming comparison: the first of the same events (one TestStream step each)
SEED = 24
DAY_MS = 86_400_000
WINDOW_DAYS = 90  # data/repeats.json
WATERMARK_EVERY = 5  # elements between two watermark steps of the generated stream


def _prism_args(prism_location: str) -> List[str]:
    """Prism without its bundle splits, which lose state writes of a stateful stage (see
    ``test_streaming_pipeline_on_prism_matches_direct_runner``), as bounded Kafka runs use it."""
    return with_local_prism(["--runner", "PrismRunner", "--prism_location", prism_location, "--prism_log_level",
                             "warn", "--environment_type", "LOOPBACK"], no_splits=True)


@pytest.fixture(scope="module")
def model_version():
    from envleads.models.registry import ensure_default_model

    return ensure_default_model()


@pytest.fixture
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", KEY)


@pytest.fixture(scope="module")
def generated_lines() -> List[bytes]:
    """EVENTS generated events (one of them malformed), in event-time order."""
    return [event.line for event in generate_events(EVENTS, SEED)]


# ----------------------------------------------------------------------------------- 1. batch
def _sorted_lines(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as handle:
        return sorted(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in handle)


def test_batch_pipeline_on_prism_matches_fn_api_runner(prism_location, generated_lines, model_version,
                                                       pseudonym_key, tmp_path):
    source = tmp_path / "complaints.jsonl"
    source.write_bytes(b"\n".join(generated_lines) + b"\n")
    outputs = {}
    for runner, beam_args in {"fn_api": ["--runner", "FnApiRunner"], "prism": _prism_args(prism_location)}.items():
        folder = tmp_path / runner
        folder.mkdir()
        counts = run_batch(str(source), str(folder / "enriched.jsonl"), str(folder / "leads.jsonl"),
                           str(folder / "dead.jsonl"), beam_args + ["--model_version", model_version])
        outputs[runner] = (counts, folder)

    (fn_counts, fn_dir), (prism_counts, prism_dir) = outputs["fn_api"], outputs["prism"]
    assert fn_counts["enriched"] + fn_counts["dead_letters"] == EVENTS
    assert fn_counts["dead_letters"] >= 1 and fn_counts["leads"] >= 10
    assert prism_counts == fn_counts
    assert _sorted_lines(prism_dir / "enriched.jsonl") == _sorted_lines(fn_dir / "enriched.jsonl")
    assert _sorted_lines(prism_dir / "dead.jsonl") == _sorted_lines(fn_dir / "dead.jsonl")
    # the ranked lead file line for line, rank included (no two leads of these events tie on the rank key)
    assert (prism_dir / "leads.jsonl").read_bytes() == (fn_dir / "leads.jsonl").read_bytes()


# ------------------------------------------------------------------------------- 2. streaming
class _AppendLines(beam.DoFn):
    """Test sink: appends each element (one line of text) to a file of its own in ``folder``.

    Works wherever the SDK worker runs on this machine, in this process or not."""

    def __init__(self, folder: str, label: str):
        self._folder, self._label = folder, label

    def setup(self):
        self._handle = open(os.path.join(self._folder, f"{self._label}-{uuid.uuid4().hex}.txt"), "a",
                            encoding="utf-8")

    def process(self, line: str):
        self._handle.write(line + "\n")
        self._handle.flush()

    def teardown(self):
        self._handle.close()


def _sink(pcolls: Dict[str, beam.PCollection], folder: Path) -> None:
    for label, pcoll in pcolls.items():
        _ = pcoll | f"Sink{label}" >> beam.ParDo(_AppendLines(str(folder), label))


def _read_sink(folder: Path, label: str) -> List[str]:
    lines: List[str] = []
    for path in glob.glob(str(folder / f"{label}-*.txt")):
        with open(path, encoding="utf-8") as handle:
            lines.extend(line.rstrip("\n") for line in handle if line.strip())
    return sorted(lines)


def _report_json(report) -> str:
    return json.dumps(enriched_to_contract(report.enriched), sort_keys=True, ensure_ascii=False)


def _lead_json(lead) -> str:
    return json.dumps(lead_to_avro_dict(lead), sort_keys=True, ensure_ascii=False)


def _event_ms(line: bytes) -> Optional[int]:
    try:
        return parse_event_time(json.loads(line)["received_at"])
    except Exception:  # noqa: BLE001 - a malformed generated line: no event time
        return None


def _resent(line: bytes, complaint_id: str, received_ms: int) -> bytes:
    """A valid generated event under another id and event time (same text, reporter and place)."""
    event = json.loads(line)
    event["complaint_id"] = complaint_id
    event["received_at"] = datetime.fromtimestamp(received_ms / 1000, timezone(timedelta(hours=8))).isoformat()
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


class StreamPlan(NamedTuple):
    """What a ``TestStream`` delivers: ``("element", line, event ms)`` and ``("watermark", ms)`` steps."""

    steps: List[tuple]
    resent_ids: List[str]

    def lines(self) -> List[bytes]:
        return [step[1] for step in self.steps if step[0] == "element"]

    def late_elements(self) -> int:
        """How many elements arrive with an event time behind the watermark."""
        watermark_ms, late = 0, 0
        for step in self.steps:
            if step[0] == "watermark":
                watermark_ms = step[1]
            elif step[2] < watermark_ms:
                late += 1
        return late

    def test_stream(self, element_of) -> test_stream.TestStream:
        """The stream, one element per step; ``element_of(line)`` is the element (None: leave it out)."""
        stream = test_stream.TestStream()
        for step in self.steps:
            if step[0] == "watermark":
                stream = stream.advance_watermark_to(Timestamp(micros=step[1] * 1000))
            else:
                element = element_of(step[1])
                if element is not None:
                    stream = stream.add_elements([TimestampedValue(element, step[2] / 1000.0)])
        return stream.advance_watermark_to_infinity()


def _stream_plan(lines: List[bytes]) -> StreamPlan:
    """The generated events in event-time order, the watermark following them, with late data.

    The watermark moves to the newest event time every ``WATERMARK_EVERY`` elements. Every 20th
    event is held back and delivered ten events later, behind the watermark. At the
    end the watermark jumps past every matter's last report + the repeat window, and three early
    complaints are sent again (new ids, event times one day after the originals): far behind the
    watermark, but their matters are live as of their keys' newest events (expiry does not follow
    the watermark), so each joins its matter. A malformed line has no event time and takes its
    predecessor's.
    """
    first_ms = next(ms for ms in map(_event_ms, lines) if ms is not None)
    order, held, last_ms = [], [], first_ms
    for position, line in enumerate(lines):
        ms = _event_ms(line)
        if ms is None:
            ms = last_ms
        elif position % 20 == 7:
            held.append((position + 10, line, ms))
            continue
        order.append((line, ms))
        last_ms = ms
        for due in [item for item in held if item[0] == position]:
            order.append(due[1:])
            held.remove(due)
    order.extend(item[1:] for item in held)
    steps, watermark_ms = [], 0
    for count, (line, ms) in enumerate(order, start=1):
        steps.append(("element", line, ms))
        # not after every element: each step is a bundle, and the DirectRunner's cost is per bundle
        if count % WATERMARK_EVERY == 0 and ms > watermark_ms:
            watermark_ms = ms
            steps.append(("watermark", ms))
    watermark_ms = max(ms for _, ms in order)
    steps.append(("watermark", watermark_ms + (WINDOW_DAYS + 2) * DAY_MS))
    valid = [(line, ms) for line, ms in order if _event_ms(line) is not None]
    resent_ids = []
    for index, (line, ms) in enumerate(valid[:3]):
        resent_ids.append(f"resent-{index}")
        steps.append(("element", _resent(line, resent_ids[-1], ms + DAY_MS), ms + DAY_MS))
    return StreamPlan(steps, resent_ids)


@pytest.fixture(scope="module")
def stream_plan(generated_lines) -> StreamPlan:
    lines = generated_lines[:STREAM_EVENTS]
    # invalid events midway (the generator makes few): the dead-letter path streams too
    return _stream_plan(lines[:60] + [b'{"complaint_id": "bad-1", "text": ""}', b"\xff\xfe not utf-8"] + lines[60:])


def _streaming_options(beam_args: List[str]) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    return options


def _whole_path_on_prism(prism_location: str, plan: StreamPlan, model_version: str, folder: Path):
    """``ComplaintsToLeadsStreaming`` from raw events, on Prism."""
    with beam.Pipeline(options=_streaming_options(_prism_args(prism_location))) as p:
        outputs = (p | plan.test_stream(lambda line: RawEvent(line, "json"))
                   | ComplaintsToLeadsStreaming(StageSettings(model_version=model_version)))
        _sink({"enriched": outputs["enriched"] | "ReportJson" >> beam.Map(_report_json),
               "leads": outputs["leads"] | "LeadJson" >> beam.Map(_lead_json),
               "dead_letters": outputs["dead_letters"] | "DeadJson" >> beam.Map(dead_letter_to_json)}, folder)
    return {label: _read_sink(folder, label) for label in ("enriched", "leads", "dead_letters")}


def _enrich_on_fn_api_runner(lines: List[bytes], model_version: str, folder: Path):
    """The stateless stages of ``ComplaintsToLeadsStreaming`` over ``lines``, bounded, on the FnApiRunner:
    ``{complaint_id: EnrichedComplaint}`` and the dead letters as JSON lines."""
    settings = StageSettings(model_version=model_version)
    with beam.Pipeline(options=PipelineOptions(["--runner", "FnApiRunner"])) as p:
        events = [RawEvent(line, "json") for line in dict.fromkeys(lines)]
        decoded = p | beam.Create(events) | DecodeComplaints(settings)
        segmented = (decoded[MAIN] | SegmentText())[MAIN]
        enriched = ((segmented | ClassifyPollutionType(settings))[MAIN] | ResolveRegion())[MAIN]
        _sink({"enriched": enriched | "Pickle" >> beam.Map(lambda e: base64.b64encode(pickle.dumps(e)).decode("ascii")),
               "dead_letters": decoded[DEAD_LETTER] | "DeadJson" >> beam.Map(dead_letter_to_json)}, folder)
    by_id = {}
    for line in _read_sink(folder, "enriched"):
        enriched = pickle.loads(base64.b64decode(line))
        by_id[enriched.complaint.complaint_id] = enriched
    return by_id, _read_sink(folder, "dead_letters")


def _stateful_stages_on_direct_runner(plan: StreamPlan, enriched_by_line, folder: Path):
    """``DeduplicatePetitionsStreaming`` and ``BuildLeadsStreaming`` over the enriched complaints, in the
    plan's order and watermark steps, on the DirectRunner in streaming mode (as test_streaming.py)."""
    with beam.Pipeline(options=_streaming_options(["--runner", "DirectRunner"])) as p:
        assigned = p | plan.test_stream(enriched_by_line.get) | DeduplicatePetitionsStreaming()
        reports = assigned[MAIN]
        leads = (reports | BuildLeadsStreaming(expired=assigned[EXPIRED]))[MAIN]
        _sink({"enriched": reports | "ReportJson" >> beam.Map(_report_json),
               "leads": leads | "LeadJson" >> beam.Map(_lead_json)}, folder)
    return {label: _read_sink(folder, label) for label in ("enriched", "leads")}


def test_streaming_pipeline_on_prism_matches_direct_runner(prism_location, stream_plan, model_version,
                                                           pseudonym_key, tmp_path):
    """The whole streaming job on Prism, against the same stream on the DirectRunner.

    Both get one element per step: the order of arrival decides which report heads a matter, and a
    runner may order the elements of one step as it likes. The DirectRunner sets up every DoFn
    again for each bundle (about a second for the stateless stages: tokenizer, region tables), so
    its side runs the stateless stages once, bounded, on the FnApiRunner, and streams the enriched
    complaints through the stateful stages, whose output depends on arrival order.

    Every field must be equal, a join's similarity included: it is computed against the key's
    matter index in state, so it differs when a runner loses a state write. Prism did, in 3 of 6
    runs, until its bundle splits were turned off (``_prism_args``; the Kafka job does the same for
    bounded runs, not for unbounded ones, which stalled without splits):
    a split of a slow bundle of the repeat stage gave one complaint (RX…0010) to a new bundle, which
    wrote its key's index, and the first bundle then wrote back the index it had copied at its start
    (Prism's ``splitBundle``/``PersistBundle``); the key's next complaint (RX…0032) was assigned
    against an index without RX…0010's matter, so the lead it joined said similarity 0.0269
    instead of 0.0319. Not an order dependence: Prism processed that key's three complaints in their
    arrival order, which is their event-time order too (logged); RX…0032 read an index of one matter
    where RX…0010 had written two.
    """
    for name in ("prism", "enrich", "direct"):
        (tmp_path / name).mkdir()
    prism = _whole_path_on_prism(prism_location, stream_plan, model_version, tmp_path / "prism")
    enriched_by_id, dead_letters = _enrich_on_fn_api_runner(stream_plan.lines(), model_version, tmp_path / "enrich")
    enriched_by_line = {}
    for line in stream_plan.lines():
        try:
            enriched_by_line[line] = enriched_by_id[str(json.loads(line)["complaint_id"])]
        except (ValueError, KeyError, TypeError):
            pass  # a dead letter: it never reaches the stateful stages
    direct = _stateful_stages_on_direct_runner(stream_plan, enriched_by_line, tmp_path / "direct")

    # the DirectRunner's output is the streaming semantics test_streaming.py pins down
    reports = {row["complaint_id"]: row for row in map(json.loads, direct["enriched"])}
    assert stream_plan.late_elements() >= len(stream_plan.resent_ids) + 5
    assert len(direct["enriched"]) + len(dead_letters) == len(stream_plan.lines())
    assert dead_letters and len(direct["leads"]) >= 10
    assert any(row["duplicate_of"] for row in reports.values()), "the generated events hold repeat complaints"
    # far behind the watermark, but their keys' clocks did not pass their matters' window: each
    # joins its matter (expiry follows each key's newest event, not the watermark)
    for complaint_id in stream_plan.resent_ids:
        assert reports[complaint_id]["duplicate_of"] is not None

    assert prism["enriched"] == direct["enriched"]
    assert prism["leads"] == direct["leads"]
    assert prism["dead_letters"] == dead_letters


# -------------------------------------------------------------- 3. test_streaming.py's scenarios
# Its TestStream tests: those that build their options with ``_streaming_options`` (directly or
# through ``_run``). Each runs as written there, with Prism as the streaming runner; the fixtures
# they take are given below.
SCENARIOS = sorted(name for name, test in vars(scenarios).items()
                   if name.startswith("test_") and callable(test)
                   and {"_run", "_streaming_options"} & set(test.__code__.co_names))


def test_the_streaming_scenarios_are_found():
    # a rename in test_streaming.py must not silently empty the list below
    assert len(SCENARIOS) >= 10 and "test_whole_path_as_one_streaming_job" in SCENARIOS, SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_streaming_scenario_on_prism(scenario, prism_location, model_version, pseudonym_key, monkeypatch):
    monkeypatch.setattr(scenarios, "_streaming_options", lambda: _streaming_options(_prism_args(prism_location)))
    test = getattr(scenarios, scenario)
    fixtures = {"trained_model": model_version, "pseudonym_key": None}
    arguments = test.__code__.co_varnames[:test.__code__.co_argcount]
    test(**{name: fixtures[name] for name in arguments})


def test_prism_hands_a_keys_elements_of_one_step_in_event_time_order(prism_location):
    """Where Prism differs from the DirectRunner: the elements of one bundle reach a stateful DoFn
    in event-time order per key (Prism keeps a stage's pending elements in a heap ordered by
    timestamp), not in arrival order. So the earliest report heads the matter even when it arrives
    after its repeats in the same step; the DirectRunner makes the first to arrive the head (here
    x2). Pinned so that a Beam upgrade that changes it is noticed: which report heads a matter
    depends on it whenever several reports of one key arrive together (a Kafka poll, a bundle).
    """
    stream = (scenarios._stream()
              .add_elements(scenarios._stamped(scenarios._complaint("x2", 5, scenarios.DYEING_2),
                                               scenarios._complaint("x1", 1, scenarios.DYEING_1),
                                               scenarios._complaint("x3", 3, scenarios.DYEING_3)))
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=_streaming_options(_prism_args(prism_location))) as p:
        reports = (p | stream | DeduplicatePetitionsStreaming())[MAIN]
        assert_that(scenarios._assignments(reports), equal_to([
            ("x1", scenarios._matter("x1"), None), ("x2", scenarios._matter("x1"), "x1"),
            ("x3", scenarios._matter("x1"), "x1")]))
