"""One error policy for every engine: a record that makes a stage raise is a dead letter, not a
stopped stream.

For each stage, the stage's domain function is made to raise for one planted complaint (with an
exception whose message quotes the record, as a real one may): the other complaints still become
enriched records and leads, the planted one is a dead letter ``internal_error`` of that stage with
the exception's class and its original bytes, and nothing of its text, name or phone reaches the
dead letter's detail or the logs. Run on the rounds engine (``LocalRoundEngine`` with the Kafka
records it writes, and ``envleads batch --engine rounds``), on the Beam pipeline (``envleads
batch``, FnApiRunner in process, so a patched module function is the one the workers call) and on
the Beam streaming job (``ComplaintsToLeadsStreaming`` with the Kafka sink's encoders, its stateful
stages included, under ``TestStream``: its records carry their bytes from stage to stage), where the
keying steps before the stateful stages (``KeyByBlock``, ``KeyByMatter``) are planted too.
"""
import base64
import json
import logging
from typing import Dict, List, NamedTuple

import pytest

from envleads.pipelines.options import StageSettings
from envleads.records import RawEvent

MARKER = "毒丸路"  # in the planted complaint's text (its address) only
NAME, PHONE = "张三丰", "13912345678"
POISON_ID = "p"


class PoisonError(Exception):
    """What the planted complaint makes a stage raise; its message quotes the record."""


def _line(complaint_id, text, received_at, **extra):
    event = {"complaint_id": complaint_id, "received_at": received_at, "text": text, "channel": "web"}
    event.update(extra)
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


POISON_LINE = _line(POISON_ID, f"南京市鼓楼区{MARKER}18号有家洗车店把洗车污水直接排进雨水管，河道发黑发臭。联系电话{PHONE}",
                    "2026-03-03T08:00:00+08:00", reporter={"name": NAME, "phone": PHONE})
LINES = [
    _line("r1", "南京市鼓楼区宏达化工有限公司每天晚上排放刺鼻废气，附近小区居民无法开窗。", "2026-03-01T21:10:00+08:00"),
    POISON_LINE,  # between the matter's reports, in the same city key
    _line("r2", "再次反映：南京市鼓楼区宏达化工有限公司晚上排放刺鼻废气，小区居民无法开窗，请尽快处理。",
          "2026-03-05T09:30:00+08:00"),
    _line("r3", "南京鼓楼区的宏达化工有限公司晚上又在排刺鼻的废气，小区里的居民都不敢开窗。", "2026-03-12T22:40:00+08:00"),
    _line("other", "苏州市吴中区一家饭店的油烟机正对居民楼，油烟很大", "2026-03-06T12:00:00+08:00"),
    _line("consult", "请问新能源汽车购置补贴怎么申请？", "2026-03-07T12:00:00+08:00"),
]


def _raise_on_marker(text: str) -> None:
    if MARKER in text:
        raise PoisonError(f"cannot handle {text!r} of {NAME} {PHONE}")


def _plant_decode(patch):
    import envleads.pipelines.transforms as transforms

    real = transforms.decode_event

    def decode_event(payload, *args, **kwargs):
        _raise_on_marker(bytes(payload).decode("utf-8", "replace"))
        return real(payload, *args, **kwargs)

    patch.setattr(transforms, "decode_event", decode_event)


def _plant_segment(patch):
    import envleads.text as text

    real = text.segment_for_model

    def segment_for_model(tokenizer, title, body, *args, **kwargs):
        _raise_on_marker(body)
        return real(tokenizer, title, body, *args, **kwargs)

    patch.setattr(text, "segment_for_model", segment_for_model)


def _plant_classify(patch):
    from envleads.models.pollution import PollutionModel

    real = PollutionModel.predict

    def predict(self, docs):  # a whole batch raises, as a model does
        for doc in docs:
            _raise_on_marker(doc.text if hasattr(doc, "text") else doc[1])
        return real(self, docs)

    patch.setattr(PollutionModel, "predict", predict)


def _plant_region(patch):
    from envleads.region import RegionResolver

    real = RegionResolver.resolve

    def resolve(self, text, *args, **kwargs):
        _raise_on_marker(text)
        return real(self, text, *args, **kwargs)

    patch.setattr(RegionResolver, "resolve", resolve)


def _plant_assign(patch):
    from envleads.repeats import MatterIndex

    real = MatterIndex.assign

    def assign(self, complaint_id, *args, **kwargs):
        if complaint_id == POISON_ID:
            raise PoisonError(f"cannot assign {complaint_id} of {NAME} at {MARKER}")
        return real(self, complaint_id, *args, **kwargs)

    patch.setattr(MatterIndex, "assign", assign)


def _plant_leads(patch):
    import envleads.leads as leads

    real = leads._summary

    def summary(text):  # the first report's text: only the planted complaint's matter fails
        _raise_on_marker(text)
        return real(text)

    patch.setattr(leads, "_summary", summary)


def _raise_on_planted_enriched(enriched):
    if enriched.complaint.complaint_id == POISON_ID:
        raise PoisonError(f"cannot encode {enriched.complaint.text!r}")


def _plant_encode_enriched(patch):
    import envleads.pipelines.batch as batch
    import envleads.pipelines.beam_stream as beam_stream
    import envleads.pipelines.rounds.outputs as outputs

    for module, name in ((batch, "enriched_to_contract"), (outputs, "enriched_to_avro_dict"),
                         (beam_stream, "enriched_to_avro_dict")):
        real = getattr(module, name)

        def encode(enriched, *args, _real=real, **kwargs):
            _raise_on_planted_enriched(enriched)
            return _real(enriched, *args, **kwargs)

        patch.setattr(module, name, encode)


def _plant_encode_leads(patch):
    import envleads.pipelines.batch as batch
    import envleads.pipelines.beam_stream as beam_stream
    import envleads.pipelines.rounds.outputs as outputs

    # beam_stream's own name only: the streaming job's lead state is encoded by envleads.leads' function
    for module, name in ((batch, "lead_to_avro_dict"), (outputs, "lead_to_wire_record"),
                         (beam_stream, "lead_to_wire_record")):
        real = getattr(module, name)

        def encode(lead, *args, _real=real, **kwargs):
            if POISON_ID in lead.complaint_ids:
                raise PoisonError(f"cannot encode {lead.summary!r}")
            return _real(lead, *args, **kwargs)

        patch.setattr(module, name, encode)


# stage: (how to plant the failure, the planted complaint has an enriched record, it has a lead)
STAGES = {
    "DecodeComplaints": (_plant_decode, False, False),
    "SegmentText": (_plant_segment, False, False),
    "ClassifyPollutionType": (_plant_classify, False, False),
    "ResolveRegion": (_plant_region, False, False),
    "DeduplicatePetitions": (_plant_assign, False, False),
    "BuildLeads": (_plant_leads, True, False),
    # a record that cannot be encoded is a dead letter; the lead built from it stands
    "EncodeEnriched": (_plant_encode_enriched, False, True),
    # a lead that cannot be encoded: each of its reports is a dead letter, their records stand
    "EncodeLeads": (_plant_encode_leads, True, False),
}


def _raise_on_planted_complaint(complaint, what):
    if complaint.complaint_id == POISON_ID:
        raise PoisonError(f"cannot {what} {complaint.text!r} of {NAME} {PHONE}")


def _plant_key_by_block(patch):
    import envleads.pipelines.streaming as streaming

    real = streaming.block_of_complaint

    def block_of_complaint(enriched, *args, **kwargs):
        _raise_on_planted_complaint(enriched.complaint, "key")
        return real(enriched, *args, **kwargs)

    patch.setattr(streaming, "block_of_complaint", block_of_complaint)


def _plant_key_by_matter(patch):
    import envleads.pipelines.streaming as streaming

    real = streaming.matter_of_report

    def matter_of_report(report, *args, **kwargs):
        _raise_on_planted_complaint(report.enriched.complaint, "key")
        return real(report, *args, **kwargs)

    patch.setattr(streaming, "matter_of_report", matter_of_report)


# The streaming form's keying steps before its stateful stages, "stage/step": (plant, enriched, has a lead);
# their dead letter is one of the stage. (The bounded form's KeyByBlock is that of ``transforms.py``.)
STREAMING_STEPS = {
    "DeduplicatePetitions/KeyByBlock": (_plant_key_by_block, False, False),
    # the report was assigned, so its enriched record is written; it has no lead
    "BuildLeads/KeyByMatter": (_plant_key_by_matter, True, False),
}


class Outputs(NamedTuple):
    enriched: Dict[str, object]  # complaint id -> duplicate_of
    leads: Dict[str, List[str]]  # first complaint id -> complaint ids
    dead: List[dict]  # stage, reason, detail, event_id, original (bytes)


@pytest.fixture(scope="module", autouse=True)
def pseudonym_key():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-poison-key")
        yield


@pytest.fixture(scope="module")
def model():
    from envleads.models.registry import ensure_default_model

    return ensure_default_model()


def _run_local_engine(model, tmp_path) -> Outputs:
    """The stream's round engine over one round, and the Kafka records it would send."""
    from envleads import schemas
    from envleads.pipelines.rounds.engine import LocalRoundEngine
    from envleads.pipelines.rounds.outputs import Topics, output_records
    from envleads.pipelines.rounds.store import LeadStore

    events = [RawEvent(line, "json") for line in LINES]
    store = LeadStore()
    try:
        engine = LocalRoundEngine(StageSettings(model_version=model), store)
        topics = Topics()
        records, _ = output_records(topics, engine.run(events), events)
    finally:
        store.close()
    enriched, leads, dead = {}, {}, []
    for topic, _, value in records:
        if topic == topics.enriched:
            record = schemas.decode(schemas.ENRICHED, value)
            enriched[record["complaint_id"]] = record["duplicate_of"]
        elif topic == topics.leads:
            record = schemas.decode(schemas.LEADS, value)
            leads[record["first_complaint_id"]] = sorted(record["complaint_ids"])
        elif topic == topics.dead_letter:
            record = schemas.decode(schemas.DEAD_LETTER, value)
            dead.append({key: record[key] for key in ("stage", "reason", "detail", "event_id", "original")})
    return Outputs(enriched, leads, dead)


def _read_batch_outputs(tmp_path) -> Outputs:
    def rows(name):
        path = tmp_path / name
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []

    dead = [{"stage": row["stage"], "reason": row["reason"], "detail": row["detail"], "event_id": row["event_id"],
             "original": base64.b64decode(row["original_base64"])} for row in rows("out.deadletter.jsonl")]
    return Outputs({row["complaint_id"]: row["duplicate_of"] for row in rows("out.jsonl")},
                   {row["first_complaint_id"]: sorted(row["complaint_ids"]) for row in rows("leads.jsonl")}, dead)


def _run_batch_rounds(model, tmp_path) -> Outputs:
    from envleads.pipelines.batch import run_batch_rounds

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(LINES) + b"\n")
    # enrich_workers=0: the stateless stages in this process, where the patch is
    run_batch_rounds(str(source), str(tmp_path / "out.jsonl"), str(tmp_path / "leads.jsonl"),
                     beam_args=[f"--model_version={model}"], round_events=4, enrich_workers=0)
    return _read_batch_outputs(tmp_path)


def _run_batch_beam(model, tmp_path) -> Outputs:
    from envleads.pipelines.batch import run_batch

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(LINES) + b"\n")
    run_batch(str(source), str(tmp_path / "out.jsonl"), str(tmp_path / "leads.jsonl"),
              beam_args=["--runner=FnApiRunner", f"--model_version={model}"])
    return _read_batch_outputs(tmp_path)


class _AppendJson:
    """A sink for the streaming job's outputs: one JSON line per element in ``folder/label.jsonl``
    (the DirectRunner in streaming mode runs in this process)."""

    def __init__(self, folder, label):
        self._path = str(folder / f"{label}.jsonl")

    def __call__(self, row: dict) -> None:
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _append_enriched(folder, record) -> None:
    """An encoded enriched record of the streaming job, ``(complaint id, framed Avro)``, as a line."""
    from envleads import schemas

    enriched = schemas.decode(schemas.ENRICHED, record[1])
    _AppendJson(folder, "enriched")({"complaint_id": enriched["complaint_id"], "duplicate_of": enriched["duplicate_of"]})


def _append_lead(folder, record) -> None:
    """An encoded lead version of the streaming job, ``(lead_id, framed Avro)``, as a line."""
    from envleads import schemas

    lead = schemas.decode(schemas.LEADS, record[1])
    _AppendJson(folder, "leads")({"lead_id": lead["lead_id"], "first_complaint_id": lead["first_complaint_id"],
                                  "complaint_ids": sorted(lead["complaint_ids"])})


def _run_beam_streaming(model, tmp_path) -> Outputs:
    """``ComplaintsToLeadsStreaming`` (the stateful stages) with the Kafka job's encoders
    (``beam_stream.py``) over a ``TestStream`` on the DirectRunner in streaming mode."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream

    from envleads.pipelines.beam_stream import encode_enriched_record, encode_lead_record
    from envleads.pipelines.streaming import ComplaintsToLeadsStreaming

    options = PipelineOptions(["--runner=DirectRunner"])
    options.view_as(StandardOptions).streaming = True
    stream = TestStream().add_elements([RawEvent(line, "json") for line in LINES]).advance_watermark_to_infinity()
    with beam.Pipeline(options=options) as p:
        outputs = p | stream | ComplaintsToLeadsStreaming(StageSettings(model_version=model),
                                                          encode_enriched=encode_enriched_record,
                                                          encode_lead=encode_lead_record)
        _ = outputs["enriched"] | "Enriched" >> beam.Map(lambda record: _append_enriched(tmp_path, record))
        _ = outputs["leads"] | "Leads" >> beam.Map(lambda record: _append_lead(tmp_path, record))
        _ = outputs["dead_letters"] | "Dead" >> beam.Map(lambda dead: _AppendJson(tmp_path, "dead")(
            {"stage": dead.stage, "reason": dead.reason, "detail": dead.detail, "event_id": dead.event_id,
             "original_base64": base64.b64encode(dead.original).decode()}))

    def rows(label):
        path = tmp_path / f"{label}.jsonl"
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []

    leads = {}
    for row in rows("leads"):  # each new version of a lead: the last one per lead id is the lead
        leads[row["lead_id"]] = row
    dead = [{"stage": row["stage"], "reason": row["reason"], "detail": row["detail"], "event_id": row["event_id"],
             "original": base64.b64decode(row["original_base64"])} for row in rows("dead")]
    return Outputs({row["complaint_id"]: row["duplicate_of"] for row in rows("enriched")},
                   {row["first_complaint_id"]: row["complaint_ids"] for row in leads.values()}, dead)


ENGINES = {"local_round_engine": _run_local_engine, "batch_rounds": _run_batch_rounds, "batch_beam": _run_batch_beam,
           "beam_streaming": _run_beam_streaming}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_without_a_planted_failure_every_complaint_is_enriched(engine, model, tmp_path):
    """The baseline the poison tests compare with: the planted complaint is an ordinary one."""
    outputs = ENGINES[engine](model, tmp_path)
    assert outputs.enriched == {"r1": None, POISON_ID: None, "r2": "r1", "r3": "r1", "other": None, "consult": None}
    assert outputs.leads == {"r1": ["r1", "r2", "r3"], POISON_ID: [POISON_ID], "other": ["other"]}
    assert outputs.dead == []


@pytest.mark.parametrize("engine, step", [(engine, stage) for engine in ENGINES for stage in STAGES]
                         + [("beam_streaming", step) for step in STREAMING_STEPS])
def test_a_record_that_makes_a_stage_raise_is_a_dead_letter_and_the_rest_goes_on(engine, step, model, tmp_path,
                                                                                  monkeypatch, caplog):
    plant, enriched, has_lead = {**STAGES, **STREAMING_STEPS}[step]
    stage = step.split("/")[0]
    plant(monkeypatch)
    # INFO, as operators run it (at DEBUG Beam's own workers log the elements they process, the
    # masked text of every complaint and lead included); envleads' own loggers at DEBUG
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="envleads")
    outputs = ENGINES[engine](model, tmp_path)

    # (a) the others still become enriched records and leads (the matter across the planted one too)
    expected = {"r1": None, "r2": "r1", "r3": "r1", "other": None, "consult": None}
    if enriched:
        expected[POISON_ID] = None
    assert outputs.enriched == expected
    expected_leads = {"r1": ["r1", "r2", "r3"], "other": ["other"]}
    if has_lead:
        expected_leads[POISON_ID] = [POISON_ID]
    assert outputs.leads == expected_leads
    # (b) the planted one is a dead letter of its stage, with the exception's class and its bytes
    # (and its id, but when the decoder raised: it is what reads the id)
    event_id = None if stage == "DecodeComplaints" else POISON_ID
    assert outputs.dead == [{"stage": stage, "reason": "internal_error", "detail": "PoisonError",
                             "event_id": event_id, "original": POISON_LINE}]
    # (c) nothing of its text, name or phone in the detail or in any log line
    logged = [(record.name, record.getMessage()) for record in caplog.records]
    assert any("PoisonError" in message and stage in message for _, message in logged)
    for secret in (MARKER, NAME, PHONE, "洗车"):
        assert [(name, message[:300]) for name, message in logged if secret in message] == []
        assert secret not in outputs.dead[0]["detail"]
