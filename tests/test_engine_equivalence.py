"""The two streaming engines over the same deliveries: the rounds engine (``LocalRoundEngine``, one
round per delivery) and the Beam streaming job (``ComplaintsToLeadsStreaming`` under ``TestStream``
on the DirectRunner, the watermark at the newest event time delivered). Both run the per-key steps
of :mod:`envleads.keyed_core`, so the same deliveries must give the same matter of every delivery
and the same lead versions, scores and tiers included.

The deliveries are generated complaints with late ones (delivered well after newer ones),
redeliveries (the same bytes again, later), complaints of no known city (blocking key
``"unknown"``, with a known province and without) and, after a gap longer than the repeat window,
repeats of early matters (which both engines must start anew, the old matter expired). A complaint
of no known city is assigned across the city indexes of its scope in both engines (the Beam job
keeps every key's index under one state key), so it joins the matter its city's reports opened in
both; the last tests pin that on one such complaint, with and without a province.
"""
import json
import random
from datetime import datetime, timedelta

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from envleads.generator import generate_events
from envleads.leads import block_of_complaint, lead_id_for, scope_of_complaint
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.engine import LocalRoundEngine
from envleads.pipelines.rounds.outputs import _encode_lead
from envleads.pipelines.rounds.store import LeadStore
from envleads.pipelines.streaming import (EXPIRED, BuildLeadsStreaming, ComplaintsToLeadsStreaming,
                                          DeduplicatePetitionsStreaming)
from envleads.pipelines.transforms import DEAD_LETTER, MAIN
from envleads.records import Complaint, EnrichedComplaint, RawEvent, RegionResolution, TypePrediction
from envleads.repeats import UNKNOWN_BLOCK, cluster_id_for

DAY_MS = 86_400_000
GENERATED, SEED = 500, 23
LATE, REDELIVERED, AFTER_GAP = 15, 15, 6
GAP_DAYS = 120  # more than the 90-day repeat window


@pytest.fixture(scope="module")
def settings():
    from envleads.models.registry import ensure_default_model

    return StageSettings(model_version=ensure_default_model())


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-engine-equivalence-key")


def _received_ms(event: RawEvent) -> int:
    return int(datetime.fromisoformat(json.loads(event.payload)["received_at"]).timestamp() * 1000)


def _moved(event: RawEvent, complaint_id: str, days: float) -> RawEvent:
    """The same complaint under another id, received ``days`` later."""
    record = json.loads(event.payload)
    received = datetime.fromisoformat(record["received_at"]) + timedelta(days=days)
    record.update(complaint_id=complaint_id, received_at=received.isoformat())
    return RawEvent(json.dumps(record, ensure_ascii=False).encode("utf-8"), "json")


def _complaint_id(event: RawEvent) -> str:
    return json.loads(event.payload)["complaint_id"]


def _deliveries(settings):
    """Generated complaints (of a known city and of none), with late ones, redeliveries and repeats
    after a gap longer than the window, in delivery order; and the ids of those of no known city,
    with their scope (:func:`~envleads.leads.scope_of_complaint`)."""
    events = [RawEvent(event.line, "json") for event in generate_events(GENERATED, SEED)
              if not event.truth["malformed"]]
    enriched, _ = LocalRoundEngine(settings, LeadStore()).enrich(events)
    unplaced = {item.complaint.complaint_id: scope_of_complaint(item) for item in enriched
                if block_of_complaint(item) == UNKNOWN_BLOCK}
    enriched_ids = {item.complaint.complaint_id for item in enriched}
    placed = [event for event in events if _complaint_id(event) in enriched_ids]
    rng = random.Random(SEED)
    ordered = list(placed)
    for event in rng.sample(placed[:-60], LATE):
        position = ordered.index(event)
        ordered.insert(position + rng.randrange(20, 60), ordered.pop(position))
    for position in sorted(rng.sample(range(len(ordered) - 40), REDELIVERED), reverse=True):
        ordered.insert(position + rng.randrange(5, 40), ordered[position])
    newest_ms = max(_received_ms(event) for event in placed)
    first_ms = _received_ms(placed[0])
    gap_days = (newest_ms - first_ms) / DAY_MS + GAP_DAYS
    ordered += [_moved(event, f"GAP{number:04d}", gap_days) for number, event in enumerate(placed[:AFTER_GAP])]
    return ordered, unplaced


def _rounds_engine_outputs(settings, deliveries):
    """Assignments and lead versions of the rounds engine, one round per delivery, its store kept
    as ``envleads stream`` keeps it (leads and state after each round)."""
    store = LeadStore()
    engine = LocalRoundEngine(settings, store, checkpoint=True)
    assignments, versions = [], []
    try:
        for event in deliveries:
            outputs = engine.run([event])
            assert outputs.dead_letters == []
            store.put_leads([(lead, _encode_lead(lead)) for lead in outputs.leads])
            store.put_state(outputs.state)
            assignments += [_assignment(report) for report in outputs.enriched]
            versions += [_version(lead) for lead in outputs.leads]
    finally:
        store.close()
    return assignments, versions


def _assignment(report):
    enriched = report.enriched
    return enriched.complaint.complaint_id, enriched.cluster_id, enriched.duplicate_of


def _version(lead):
    return lead.lead_id, tuple(lead.complaint_ids), lead.report_count, lead.distinct_reporters, lead.score, lead.tier


def _streaming_options():
    options = PipelineOptions(["--runner=DirectRunner"])
    options.view_as(StandardOptions).streaming = True
    return options


def _delivered_in_steps(deliveries, event_ms, step: int = 25):
    """A TestStream of the deliveries, ``step`` at a time and the last ``AFTER_GAP`` (after the
    gap) one at a time, so that expiry timers fire between them; the watermark at the newest event
    time delivered after each step. Within a step a key's deliveries are handed over in order (the
    DirectRunner's arrival order) and no timer falls due (the deliveries before the gap span less
    than the window), so this gives what one delivery per step gives, in a tenth of the time."""
    cut = len(deliveries) - AFTER_GAP
    steps = [deliveries[start:min(start + step, cut)] for start in range(0, cut, step)]
    steps += [[delivery] for delivery in deliveries[cut:]]
    stream, newest_ms = test_stream.TestStream(), 0
    for batch in steps:
        stream = stream.add_elements([TimestampedValue(delivery, event_ms(delivery) / 1000) for delivery in batch])
        if max(map(event_ms, batch)) > newest_ms:  # a step of late deliveries leaves it where it is
            newest_ms = max(map(event_ms, batch))
            stream = stream.advance_watermark_to(Timestamp(micros=newest_ms * 1000))
    return stream.advance_watermark_to_infinity()


def test_the_rounds_engine_and_the_beam_streaming_job_assign_and_score_alike(settings):
    deliveries, unplaced = _deliveries(settings)
    assignments, versions = _rounds_engine_outputs(settings, deliveries)
    # what the deliveries hold, or the comparison proves little
    delivered_ids = [complaint_id for complaint_id, _, _ in assignments]
    assert len(delivered_ids) - len(set(delivered_ids)) == REDELIVERED
    repeats = [row for row in assignments if row[2] is not None]
    assert len(repeats) >= 20
    newest, late, late_unplaced = 0, 0, 0
    for event in deliveries:
        is_late = _received_ms(event) < newest - DAY_MS
        late += is_late
        late_unplaced += is_late and _complaint_id(event) in unplaced
        newest = max(newest, _received_ms(event))
    assert late >= LATE and late_unplaced >= 1
    assert sum(scope == UNKNOWN_BLOCK for scope in unplaced.values()) >= 20, "no province known"
    assert sum(scope != UNKNOWN_BLOCK for scope in unplaced.values()) >= 10, "a province known"
    redelivered = {cid for cid in delivered_ids if delivered_ids.count(cid) > 1}
    assert redelivered & set(unplaced), "an unplaced complaint delivered twice"
    # unplaced complaints that join a matter a complaint of a known city opened: the case a
    # stage keyed by city (the "unknown" key's index alone) gets wrong
    joined_placed = [cid for cid, _, first in assignments if cid in unplaced and first is not None
                     and first not in unplaced]
    assert len(joined_placed) >= 3
    gap = {cid: cluster for cid, cluster, _ in assignments if cid.startswith("GAP")}
    assert gap == {cid: cluster_id_for(cid) for cid in gap}, "after the window, repeats start new matters"
    assert len({lead_id for lead_id, *_ in versions}) >= 100
    assert len(versions) > len({lead_id for lead_id, *_ in versions}), "leads updated"

    with TestPipeline(options=_streaming_options()) as p:
        outputs = p | _delivered_in_steps(deliveries, _received_ms) | ComplaintsToLeadsStreaming(settings)
        assert_that(outputs["enriched"] | "Assignments" >> beam.Map(_assignment), equal_to(assignments),
                    label="assignments")
        assert_that(outputs["leads"] | "Versions" >> beam.Map(_version), equal_to(versions), label="leads")
        assert_that(outputs["dead_letters"], equal_to([]), label="dead_letters")


# ------------------------------------------------------------------ one complaint of no known city
T0_MS = 1772330400000  # 2026-03-01T10:00:00+08:00
DYEING_1 = "杭州市余杭区仁和街道永盛印染厂每天夜里往河里偷排黑色废水，河水发臭，鱼都死了。"
DYEING_2 = "再次投诉永盛印染厂，晚上偷偷往河里排黑水，河道又黑又臭。"


def _enriched(complaint_id, day, text, adcode, jurisdiction):
    complaint = Complaint(complaint_id, f"t+{day}d", T0_MS + day * DAY_MS, "", text, "web", None,
                          jurisdiction_adcode=jurisdiction)
    level = "county" if adcode else None
    region = RegionResolution(None, None, None, adcode, level, 0.9 if adcode else 0.0, None, "test")
    types = TypePrediction(["water"], "water", 0.9, False, "test")
    return EnrichedComplaint(complaint, [], types, region)


@pytest.mark.parametrize("jurisdiction", ["330000", None], ids=["province known", "no province"])
def test_a_complaint_of_no_known_city_meets_its_citys_matter_in_both_engines(settings, jurisdiction):
    """A report that names no place, taken in by a provincial office (or by none), repeats a matter
    of a city (of that province): both engines assign it across the city indexes of its scope (the
    Beam job keeps every key's index under one state key), so both join it to that matter."""
    placed = _enriched("a1", 0, DYEING_1, "330110", "330100")
    unplaced = _enriched("a2", 3, DYEING_2, None, jurisdiction)
    assert block_of_complaint(unplaced) == UNKNOWN_BLOCK
    expected = [("a1", cluster_id_for("a1"), None), ("a2", cluster_id_for("a1"), "a1")]
    store = LeadStore()
    try:
        engine = LocalRoundEngine(settings, store)
        rounds = [_assignment(report) for round_ in ([placed], [unplaced])
                  for report in engine.finish(round_, [], []).enriched]
    finally:
        store.close()
    assert rounds == expected

    stream = test_stream.TestStream()
    for item in (placed, unplaced):
        ms = item.complaint.received_at_ms
        stream = stream.add_elements([TimestampedValue(item, ms / 1000)]).advance_watermark_to(Timestamp(micros=ms * 1000))
    with TestPipeline(options=_streaming_options()) as p:
        reports = p | stream.advance_watermark_to_infinity() | DeduplicatePetitionsStreaming()
        leads = reports[MAIN] | BuildLeadsStreaming()
        assert_that(reports[MAIN] | beam.Map(_assignment), equal_to(expected), label="assignments")
        assert_that((reports[DEAD_LETTER], leads[DEAD_LETTER]) | beam.Flatten(), equal_to([]), label="dead")


# --------------------------------------------------------------- one policy each, both engines
def _rounds_engine(rounds):
    """Assignments and lead versions of the rounds engine over ``rounds`` of enriched complaints,
    its store kept as ``envleads stream`` keeps it."""
    store = LeadStore()
    engine = LocalRoundEngine(StageSettings(), store, checkpoint=True)
    assignments, leads = [], []
    try:
        for round_ in rounds:
            outputs = engine.finish(round_, [], [])
            assert outputs.dead_letters == []
            store.put_leads([(lead, _encode_lead(lead)) for lead in outputs.leads])
            store.put_state(outputs.state)
            assignments += [_assignment(report) for report in outputs.enriched]
            leads += outputs.leads
    finally:
        store.close()
    return assignments, leads


def _beam_job_gives(items, assignments, leads):
    """The Beam streaming stages over ``items`` one at a time, the watermark at the newest event
    time delivered after each, must give ``assignments`` and ``leads``."""
    stream, newest_ms = test_stream.TestStream(), 0
    for item in items:
        ms = item.complaint.received_at_ms
        stream = stream.add_elements([TimestampedValue(item, ms / 1000)])
        if ms > newest_ms:
            newest_ms = ms
            stream = stream.advance_watermark_to(Timestamp(micros=ms * 1000))
    with TestPipeline(options=_streaming_options()) as p:
        reports = p | stream.advance_watermark_to_infinity() | DeduplicatePetitionsStreaming()
        built = reports[MAIN] | BuildLeadsStreaming(expired=reports[EXPIRED])
        assert_that(reports[MAIN] | beam.Map(_assignment), equal_to(assignments), label="assignments")
        assert_that(built[MAIN], equal_to(leads), label="leads")
        assert_that((reports[DEAD_LETTER], built[DEAD_LETTER]) | beam.Flatten(), equal_to([]), label="dead")


def test_a_lead_starts_at_its_matters_first_environmental_report_however_rounds_batch_it():
    """A dyeing works' discharge first reported as typed by no pollution (the classifier missed
    it), then restated as water pollution: the restatement joins the first report's matter, and
    the lead starts at it, with the first report left out, whether the two come in two rounds or
    in one, and in the Beam job (which kept the first waiting in state and headed the lead with it)."""
    missed = _enriched("q1", 0, DYEING_1, "330110", "330100")
    missed = missed._replace(types=TypePrediction([], None, 0.3, False, "test"))
    restated = _enriched("r2", 2, "再次反映：" + DYEING_1, "330110", "330100")
    matter = cluster_id_for("q1")
    expected = [("q1", matter, None), ("r2", matter, "q1")]
    apart, leads_apart = _rounds_engine([[missed], [restated]])
    together, leads_together = _rounds_engine([[missed, restated]])
    assert apart == together == expected, "the restatement joins the missed report's matter"
    assert leads_apart == leads_together
    [lead] = leads_apart
    assert (lead.lead_id, lead.first_complaint_id, lead.complaint_ids) == (lead_id_for(matter), "r2", ["r2"])
    _beam_job_gives([missed, restated], expected, leads_apart)


def test_a_quiet_keys_matters_expire_by_its_own_events_not_by_other_keys_time():
    """One city's matter goes quiet while another city's reports move event time (and the Beam
    job's watermark) more than the window past it; then the quiet city's next report, within the
    window of its matter's last one, joins it in both engines: a key's matters expire as of its own
    newest event, whatever the runner's watermark. Later, that city's own clock passes the window
    and the matter expires in both, a late repeat starting anew."""
    other = "湖州市吴兴区织里镇一家童装厂的锅炉天天冒黑烟，附近居民不敢开窗。"
    items = [_enriched("a1", 0, DYEING_1, "330110", "330100"),
             _enriched("a2", 5, DYEING_2, "330110", "330100"),
             _enriched("b1", 10, other, "330502", "330500"),
             _enriched("b2", 5 + 90 + 20, other, "330502", "330500"),  # the watermark passes a2 + window
             _enriched("a3", 60, DYEING_2, "330110", "330100"),  # in the window of a2: joins
             _enriched("a4", 60 + 90 + 1, "杭州市余杭区仁和街道宏达铸造厂烟囱冒黑烟。", "330110", "330100"),
             _enriched("a5", 80, DYEING_1, "330110", "330100")]  # late: a4 expired the matter (last a3, day 60)
    assert {block_of_complaint(item) for item in items} == {"330100", "330500"}
    assignments, leads = _rounds_engine([[item] for item in items])
    joined = {cid: first for cid, _, first in assignments}
    assert joined["a3"] == "a1", "the quiet key's matter was live as of its own newest event"
    assert joined["a5"] is None, "expired as of the key's newest event, not restored for a late event"
    assert joined["b2"] is None
    _beam_job_gives(items, assignments, leads)
