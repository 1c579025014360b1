"""The streaming forms of repeat detection and lead building: TestStream on the DirectRunner in
streaming mode (watermark steps, late data, expiry as of each key's newest event), and the stateful
DoFns alone.

Inputs are enriched complaints built by hand, so these tests need no classifier; one test runs the
whole path with the trained model. Event times are days after ``T0``; the repeat window is the
packaged 90 days.
"""
import copy
import hashlib
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pytest
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.metrics.metricbase import MetricName
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.worker import statesampler
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils import counters
from apache_beam.utils.timestamp import Timestamp

from envleads import schemas
from envleads.leads import lead_from_avro_dict, lead_to_avro_dict, merge_lead, report_matter
from envleads.pipelines import streaming
from envleads.pipelines.streaming import (EXPIRED, REPEAT_SCOPE, BuildLeadsStreaming, ComplaintsToLeadsStreaming,
                                          DeduplicatePetitionsStreaming, LeadStateCoder, MatterExpired,
                                          _AssignMattersStreamingFn, _MergeLeadStreamingFn)
from envleads.pipelines.transforms import DEAD_LETTER, MAIN, DeduplicatePetitions
from envleads.records import Complaint, EnrichedComplaint, RawEvent, RegionResolution, TypePrediction
from envleads.repeats import MatterIndex, load_repeat_config
from envleads.scoring import load_scoring_weights

T0_MS = 1772330400000  # 2026-03-01T10:00:00+08:00
DAY_MS = 86_400_000
WINDOW_DAYS = 90  # data/repeats.json

# One matter told three ways (a dyeing works discharging at night), one unrelated matter nearby.
DYEING_1 = "杭州市余杭区仁和街道永盛印染厂每天夜里往河里偷排黑色废水，河水发臭，鱼都死了。"
DYEING_2 = "再次投诉余杭区仁和街道永盛印染厂，晚上偷偷往河里排黑水，河道又黑又臭。"
DYEING_3 = "余杭区仁和那家永盛印染厂夜间偷排废水到旁边河里的问题还没解决，河水发黑发臭，请环保部门查处。"
BARBECUE = "杭州市余杭区良渚街道玉鸟路上有家烧烤店油烟直排居民楼，熏得没法开窗。"


def _matter(first_complaint_id):
    """The matter id rule written out: ``m-`` + the first 16 hex digits of SHA-1 of the first id."""
    return "m-" + hashlib.sha1(first_complaint_id.encode("utf-8")).hexdigest()[:16]


def _lead(first_complaint_id):
    return "lead-" + _matter(first_complaint_id)


def _at(day):
    return T0_MS + int(day * DAY_MS)


def _complaint(complaint_id, day, text, labels=("water",), reporter=None):
    ms = _at(day)
    complaint = Complaint(complaint_id, f"t+{day}d", ms, "", text, "web", reporter)
    types = TypePrediction(list(labels), labels[0] if labels else None, 0.9, False, "test")
    region = RegionResolution("浙江省", "杭州市", "余杭区", "330110", "county", 0.9, "余杭区", "test")
    return EnrichedComplaint(complaint, [], types, region, department="余杭区生态环境分局", routing_rule="test")


def _stream():
    # imported as a module: pytest would try to collect a class named TestStream
    return test_stream.TestStream()


def _streaming_options():
    options = PipelineOptions(["--runner=DirectRunner"])
    options.view_as(StandardOptions).streaming = True
    return options


def _stamped(*complaints):
    return [TimestampedValue(c, c.complaint.received_at_ms / 1000.0) for c in complaints]


def _watermark(day):
    return Timestamp(micros=_at(day) * 1000)


def _assignments(reports):
    return reports | "Assignments" >> beam.Map(
        lambda r: (r.enriched.complaint.complaint_id, r.enriched.cluster_id, r.enriched.duplicate_of))


def _lead_versions(leads):
    return leads | "Versions" >> beam.Map(lambda lead: (lead.lead_id, lead.report_count, lead.complaint_ids))


def _run(stream, assertions, prior=None):
    """Runs both streaming stages over ``stream``; ``assertions(p, reports, leads)`` adds asserts."""
    with TestPipeline(options=_streaming_options()) as p:
        prior_leads = p | "Prior" >> beam.Create(prior) if prior is not None else None
        reports = p | "Complaints" >> stream | DeduplicatePetitionsStreaming(prior_leads)
        leads = reports[MAIN] | BuildLeadsStreaming(prior_leads, expired=reports[EXPIRED])
        assert_that((reports[DEAD_LETTER], leads[DEAD_LETTER]) | "DeadLetters" >> beam.Flatten(), equal_to([]),
                    label="NoDeadLetters")
        assertions(reports[MAIN], leads[MAIN])


# ----------------------------------------------------------------------------------- (a) in order
def test_paraphrased_reports_update_one_lead_as_they_arrive():
    stream = (_stream()
              .advance_watermark_to(_watermark(0))
              .add_elements(_stamped(_complaint("a1", 0.1, DYEING_1, reporter="k1")))
              .advance_watermark_to(_watermark(1))
              .add_elements(_stamped(_complaint("a2", 3, DYEING_2, reporter="k2")))
              .advance_watermark_to(_watermark(4))
              .add_elements(_stamped(_complaint("a3", 10, DYEING_3, reporter="k3")))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([
            ("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("a3", _matter("a1"), "a1")]),
            label="matters")
        assert_that(_lead_versions(leads), equal_to([
            (_lead("a1"), 1, ["a1"]), (_lead("a1"), 2, ["a1", "a2"]), (_lead("a1"), 3, ["a1", "a2", "a3"])]),
            label="leads")
        assert_that(leads | "Reporters" >> beam.Map(lambda lead: lead.distinct_reporters), equal_to([1, 2, 3]),
                    label="reporters")

    _run(stream, check)


def test_an_unrelated_complaint_in_the_same_city_gets_its_own_matter_and_lead():
    stream = (_stream()
              .add_elements(_stamped(_complaint("a1", 0, DYEING_1)))
              .advance_watermark_to(_watermark(1))
              .add_elements(_stamped(_complaint("b1", 2, BARBECUE, labels=("air",))))
              .advance_watermark_to(_watermark(3))
              .add_elements(_stamped(_complaint("a2", 4, DYEING_2)))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([
            ("a1", _matter("a1"), None), ("b1", _matter("b1"), None), ("a2", _matter("a1"), "a1")]),
            label="matters")
        assert_that(_lead_versions(leads), equal_to([
            (_lead("a1"), 1, ["a1"]), (_lead("b1"), 1, ["b1"]), (_lead("a1"), 2, ["a1", "a2"])]), label="leads")

    _run(stream, check)


# --------------------------------------------------------------------------------------- (b) late
def test_a_late_repeat_still_joins_its_live_matter():
    stream = (_stream()
              .add_elements(_stamped(_complaint("a1", 0, DYEING_1)))
              .advance_watermark_to(_watermark(20))
              .add_elements(_stamped(_complaint("a2", 30, DYEING_2)))
              .advance_watermark_to(_watermark(40))
              # event time day 10, thirty days behind the watermark
              .add_elements(_stamped(_complaint("a3", 10, DYEING_3)))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([
            ("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("a3", _matter("a1"), "a1")]),
            label="matters")
        assert_that(leads | "Times" >> beam.Map(lambda lead: (lead.report_count, lead.first_seen_ms, lead.last_seen_ms)),
                    equal_to([(1, _at(0), _at(0)), (2, _at(0), _at(30)), (3, _at(0), _at(30))]), label="leads")

    _run(stream, check)


# ------------------------------------------------------------------------------------- (c) expiry
# Another matter of the same key (the same city), which moves the key's clock.
SMOKE = "杭州市余杭区仁和街道金鹏铸造厂烟囱天天冒黑烟，一股焦糊味，呛得人咳嗽。"


def _expiry_stream(clock_day, late_day, late_text=DYEING_3):
    """a1 (day 0) and a2 (day 5) of one matter; then an unrelated complaint of the same key at
    ``clock_day`` (the key's newest event) and the watermark far beyond; then a late repeat."""
    return (_stream()
            .add_elements(_stamped(_complaint("a1", 0, DYEING_1)))
            .advance_watermark_to(_watermark(1))
            .add_elements(_stamped(_complaint("a2", 5, DYEING_2)))
            .advance_watermark_to(_watermark(6))
            .add_elements(_stamped(_complaint("s1", clock_day, SMOKE, labels=("air",))))
            .advance_watermark_to(_watermark(200))
            .add_elements(_stamped(_complaint("a3", late_day, late_text)))
            .advance_watermark_to_infinity())


def test_a_matter_expires_when_its_keys_newest_event_passes_its_last_report_plus_the_window():
    # s1, an hour past day 5 + 90 days, expires the matter: a3 (day 50, within 90 days of a2) is
    # late and meets no live matter; its lead starts anew (the old lead left state with its matter)
    stream = _expiry_stream(5 + WINDOW_DAYS + 1 / 24, 50)

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([
            ("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("s1", _matter("s1"), None),
            ("a3", _matter("a3"), None)]), label="matters")
        assert_that(_lead_versions(leads), equal_to([
            (_lead("a1"), 1, ["a1"]), (_lead("a1"), 2, ["a1", "a2"]), (_lead("s1"), 1, ["s1"]),
            (_lead("a3"), 1, ["a3"])]), label="leads")

    _run(stream, check)


def test_a_matter_is_still_live_up_to_its_expiry():
    # The same, but s1 comes an hour short of day 5 + 90: a3 joins.
    stream = _expiry_stream(5 + WINDOW_DAYS - 1 / 24, 50)

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([
            ("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("s1", _matter("s1"), None),
            ("a3", _matter("a1"), "a1")]), label="matters")

    _run(stream, check)


def test_the_watermark_expires_nothing():
    # The watermark passes day 5 + 90 days with no event of the key after day 5: the matter is
    # live as of the key's newest event, and a3 (day 50) joins it, whatever the runner's watermark.
    stream = (_stream()
              .add_elements(_stamped(_complaint("a1", 0, DYEING_1)))
              .advance_watermark_to(_watermark(1))
              .add_elements(_stamped(_complaint("a2", 5, DYEING_2)))
              .advance_watermark_to(_watermark(100))
              .add_elements(_stamped(_complaint("a3", 50, DYEING_3)))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([
            ("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("a3", _matter("a1"), "a1")]),
            label="matters")
        assert_that(_lead_versions(leads), equal_to([
            (_lead("a1"), 1, ["a1"]), (_lead("a1"), 2, ["a1", "a2"]), (_lead("a1"), 3, ["a1", "a2", "a3"])]),
            label="leads")

    _run(stream, check)


# -------------------------------------------------------------------------------- (d) prior leads
def _prior_lead(complaint_id, day, text):
    """A lead as a previous run left it on the compacted topic (through its Avro record)."""
    weights = load_scoring_weights()
    report, _ = report_matter(MatterIndex(load_repeat_config()), _complaint(complaint_id, day, text), weights)
    lead = merge_lead(None, [report], _at(day), weights)
    return lead_from_avro_dict(schemas.decode(schemas.LEADS, schemas.encode(schemas.LEADS, lead_to_avro_dict(lead))))


def test_seeding_from_prior_leads_attaches_a_repeat_to_the_existing_lead():
    prior = [_prior_lead("p1", 0, DYEING_1)]
    stream = (_stream()
              .advance_watermark_to(_watermark(2))
              .add_elements(_stamped(_complaint("a2", 3, DYEING_2)))
              .advance_watermark_to(_watermark(4))
              .add_elements(_stamped(_complaint("b1", 5, BARBECUE, labels=("air",))))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([("a2", _matter("p1"), "p1"), ("b1", _matter("b1"), None)]),
                    label="matters")
        assert_that(_lead_versions(leads), equal_to([(_lead("p1"), 2, ["p1", "a2"]), (_lead("b1"), 1, ["b1"])]),
                    label="leads")

    _run(stream, check, prior=prior)


def test_a_prior_lead_past_the_window_is_not_joined():
    prior = [_prior_lead("p1", 0, DYEING_1)]
    stream = (_stream()
              .advance_watermark_to(_watermark(120))
              .add_elements(_stamped(_complaint("a2", 121, DYEING_2)))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([("a2", _matter("a2"), None)]), label="matters")

    _run(stream, check, prior=prior)


# ----------------------------------------------------------------------------- lead-building rules
def test_a_non_environmental_first_report_neither_joins_nor_heads_a_later_environmental_lead():
    stream = (_stream()
              .add_elements(_stamped(_complaint("a1", 0, DYEING_1, labels=())))
              .advance_watermark_to(_watermark(1))
              .add_elements(_stamped(_complaint("a2", 2, DYEING_2)))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(leads | "Ids" >> beam.Map(lambda lead: (lead.lead_id, lead.first_complaint_id, lead.complaint_ids)),
                    equal_to([(_lead("a2"), "a2", ["a2"])]), label="leads")

    _run(stream, check)


def test_a_redelivered_complaint_changes_nothing():
    stream = (_stream()
              .add_elements(_stamped(_complaint("a1", 0, DYEING_1)))
              .advance_watermark_to(_watermark(1))
              .add_elements(_stamped(_complaint("a1", 0, DYEING_1)))
              .advance_watermark_to_infinity())

    def check(reports, leads):
        assert_that(_assignments(reports), equal_to([("a1", _matter("a1"), None), ("a1", _matter("a1"), None)]),
                    label="matters")
        assert_that(_lead_versions(leads), equal_to([(_lead("a1"), 1, ["a1"])]), label="leads")

    _run(stream, check)


# ------------------------------------------------------------------------- same as the bounded form
EXPECTED_MATTERS = [("a1", _matter("a1"), None), ("b1", _matter("b1"), None), ("a2", _matter("a1"), "a1"),
                    ("a3", _matter("a1"), "a1")]


def _mixed():
    return [_complaint("a1", 0, DYEING_1), _complaint("b1", 1, BARBECUE, labels=("air",)),
            _complaint("a2", 3, DYEING_2), _complaint("a3", 10, DYEING_3)]


def test_bounded_and_streaming_repeat_detection_assign_the_same_matters():
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        reports = (p | beam.Create(_mixed()) | DeduplicatePetitions())[MAIN]
        assert_that(_assignments(reports), equal_to(EXPECTED_MATTERS))
    stream = _stream()
    for complaint in _mixed():
        stream = stream.add_elements(_stamped(complaint)).advance_watermark_to(
            _watermark((complaint.complaint.received_at_ms - T0_MS) / DAY_MS))
    with TestPipeline(options=_streaming_options()) as p:
        reports = (p | stream.advance_watermark_to_infinity() | DeduplicatePetitionsStreaming())[MAIN]
        assert_that(_assignments(reports), equal_to(EXPECTED_MATTERS))


# ------------------------------------------------------------------------------- the DoFns alone
class _FakeState:
    def __init__(self, value=None):
        self.value = value

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class _FakeBag:
    def __init__(self):
        self.items = []

    def read(self):
        return list(self.items)

    def add(self, value):
        self.items.append(value)

    def clear(self):
        self.items = []


class _CountedStep:
    """Collects the Beam metrics a DoFn reports while called directly (as Beam's own metric tests do)."""

    def __enter__(self):
        self.container = MetricsContainer("step")
        self._sampler = statesampler.StateSampler("", counters.CounterFactory())
        statesampler.set_current_tracker(self._sampler)
        self._state = self._sampler.scoped_state("step", "process", metrics_container=self.container)
        self._state.__enter__()
        return self

    def __exit__(self, *exc):
        self._state.__exit__(*exc)
        statesampler.set_current_tracker(None)

    def counter(self, namespace, name):
        return self.container.get_counter(MetricName(namespace, name)).get_cumulative()


def _state():
    """The stateful repeat DoFn's state, faked: ``(token, changes, seeded, newest)``."""
    return _FakeState(), _FakeBag(), _FakeBag(), _FakeBag()


def _outputs(fn, block, complaint, state, prior=None):
    """One complaint through the stateful repeat DoFn under its one key; all it outputs."""
    return list(fn.process((REPEAT_SCOPE, (block, complaint)), defaultdict(list, prior or {}),
                           list(prior or {}), *state))


def _assign(fn, block, complaint, state, prior=None):
    """One complaint through the stateful repeat DoFn under its one key; its reports."""
    return [output for output in _outputs(fn, block, complaint, state, prior) if not isinstance(output, TaggedOutput)]


def _expired(outputs):
    """The matters the outputs say left their index."""
    return [output.value for output in outputs if isinstance(output, TaggedOutput) and output.tag == EXPIRED]


def _fresh_assigner(**kwargs):
    """A new instance with nothing of an earlier one in the process (as in another worker)."""
    _AssignMattersStreamingFn._latest = None
    fn = _AssignMattersStreamingFn(**kwargs)
    fn.setup()
    return fn


def _rebuilt_matters(fn, state):
    """The matters (cluster id, report count) the state's changelog holds, read by a new instance."""
    token, changes, seeded, newest = state
    indexes = _fresh_assigner()._rebuilt(token.value, changes.read(), seeded.read(), newest.read()).indexes
    return sorted((block, row[0], row[4]) for block, index in indexes.items() for row in index.to_state()["matters"])


def test_a_keys_matters_expire_as_of_its_own_newest_event_and_go_to_the_lead_stage():
    fn = _fresh_assigner()
    state = _state()
    with _CountedStep() as step:
        for block, complaint in [("330100", _complaint("a1", 0, DYEING_1)), ("330100", _complaint("a2", 5, DYEING_2)),
                                 ("330500", _complaint("b1", 2, BARBECUE))]:
            assert _expired(_outputs(fn, block, complaint, state)) == []
        # 330500's clock passes the barbecue's last report + the window: it goes, 330100's stays
        outputs = _outputs(fn, "330500", _complaint("s1", 2 + WINDOW_DAYS + 1, SMOKE, labels=("air",)), state)
        assert _expired(outputs) == [(_matter("b1"), MatterExpired(_matter("b1"), _at(2)))]
        assert [(block, cid) for block, cid, _ in _rebuilt_matters(fn, state)] == [
            ("330100", _matter("a1")), ("330500", _matter("s1"))]
        # each key's newest event is in state: a new instance rebuilds it
        assert _fresh_assigner()._rebuilt(*(part.read() if isinstance(part, _FakeBag) else part.value
                                            for part in state)).newest == {"330100": _at(5),
                                                                           "330500": _at(2 + WINDOW_DAYS + 1)}
        outputs = _outputs(fn, "330100", _complaint("s2", 5 + WINDOW_DAYS + 1, SMOKE, labels=("air",)), state)
        assert _expired(outputs) == [(_matter("a1"), MatterExpired(_matter("a1"), _at(5)))]
        assert step.counter("DeduplicatePetitions", "expired_matters") == 2
        assert step.counter("DeduplicatePetitions", "new_matters") == 4
        assert step.counter("DeduplicatePetitions", "repeats") == 1


def test_a_complaint_of_no_known_city_moves_its_own_keys_clock_not_the_city_keys():
    """As in the rounds engine: the ``"unknown"`` key's newest event is the unplaced complaint's,
    though it joins the city's matter; the city key's clock stays where its own events left it."""
    fn = _fresh_assigner()
    state = _state()
    _assign(fn, "330100", _complaint("a1", 0, DYEING_1), state)
    unplaced = _complaint("u1", 30, DYEING_2)._replace(region=RegionResolution(None, None, None, None, None, 0.0,
                                                                               None, "test"))
    unplaced = unplaced._replace(complaint=unplaced.complaint._replace(jurisdiction_adcode="330000"))
    reports = _assign(fn, "unknown", unplaced, state)
    assert [(r.enriched.cluster_id, r.enriched.duplicate_of) for r in reports] == [(_matter("a1"), "a1")]
    assert fn._cache.newest == {"330100": _at(0), "unknown": _at(30)}


def test_prior_leads_are_restored_once_per_key_not_after_the_key_expired():
    fn = _fresh_assigner()
    state = _state()
    prior = {"330100": [_prior_lead("p1", 0, DYEING_1), _prior_lead("p0", -100, BARBECUE)]}
    with _CountedStep() as step:
        reports = _assign(fn, "330100", _complaint("a2", 3, DYEING_2), state, prior)
        # the lead that left the window before the key's first event is not restored
        assert step.counter("DeduplicatePetitions", "restored_matters") == 1
    assert [(r.enriched.cluster_id, r.enriched.duplicate_of) for r in reports] == [(_matter("p1"), "p1")]
    # the key's clock passes day 3 + 90 days: the restored matter goes too
    assert _expired(_outputs(fn, "330100", _complaint("s1", 3 + WINDOW_DAYS + 1, SMOKE, labels=("air",)), state)) \
        == [(_matter("p1"), MatterExpired(_matter("p1"), _at(3)))]
    # a late repeat after the expiry: the prior lead is not restored a second time, by a new
    # instance either (the keys restored are in state)
    for assigner in (fn, _fresh_assigner()):
        reports = _assign(assigner, "330100", _complaint("a3", 20, DYEING_3), state, prior)
        assert [(r.enriched.cluster_id, r.enriched.duplicate_of) for r in reports] == [(_matter("a3"), None)]


def test_a_complaint_of_no_known_city_restores_and_meets_the_prior_leads_of_its_scope():
    """A restarted job: the prior lead of a city of the province is restored when a complaint of no
    known city reaches that city's key, though no complaint of the city came since the start."""
    fn = _fresh_assigner()
    state = _state()
    prior = {"330100": [_prior_lead("p1", 0, DYEING_1)], "440100": [_prior_lead("q1", 0, BARBECUE)]}
    unplaced = _complaint("u1", 3, DYEING_2)._replace(region=RegionResolution(None, None, None, None, None, 0.0,
                                                                              None, "test"))
    unplaced = unplaced._replace(complaint=unplaced.complaint._replace(jurisdiction_adcode="330000"))
    reports = _assign(fn, "unknown", unplaced, state, prior)
    assert [(r.enriched.cluster_id, r.enriched.duplicate_of) for r in reports] == [(_matter("p1"), "p1")]
    assert sorted(state[2].items) == ["330100", "unknown"], "the other province's key is not restored"


_SEQUENCE = [("330100", _complaint("a1", 0, DYEING_1)), ("330500", _complaint("b1", 1, BARBECUE, labels=("air",))),
             ("330100", _complaint("a2", 3, DYEING_2)), ("330100", _complaint("a2", 3, DYEING_2)),
             ("330100", _complaint("a3", 10, DYEING_3)), ("330500", _complaint("b2", 11, BARBECUE, labels=("air",))),
             ("330100", _complaint("a4", 12, DYEING_1))]


def _assignments_of(reports):
    return [(r.enriched.complaint.complaint_id, r.enriched.cluster_id, r.enriched.duplicate_of) for r in reports]


def test_a_retried_bundle_rebuilds_the_indexes_from_the_changelog_and_assigns_alike(monkeypatch):
    """The instance's indexes are valid while the token in state is theirs. A bundle that failed
    after the instance had updated them is retried: the state is as before that bundle, so its token
    is not the instance's, and the instance rebuilds the indexes from the changelog; the retried and
    later complaints get what they get without the failure. Compaction (made frequent here) keeps
    the changelog's length within twice the live matters and rebuilds the same indexes."""
    monkeypatch.setattr(streaming, "COMPACT_SLACK", 0)
    fn, state = _fresh_assigner(), _state()
    expected = [row for block, complaint in _SEQUENCE for row in _assignments_of(_assign(fn, block, complaint, state))]
    fn, state = _fresh_assigner(), _state()
    with _CountedStep() as step:
        got = [row for block, complaint in _SEQUENCE[:4] for row in _assignments_of(_assign(fn, block, complaint, state))]
        committed = tuple(copy.deepcopy(part.__dict__) for part in state)
        _assign(fn, *_SEQUENCE[4], state)  # the bundle that fails: its state writes are discarded...
        for part, saved in zip(state, committed):
            part.__dict__.update(copy.deepcopy(saved))
        assert fn._cache.token != state[0].value  # ...while the instance's indexes hold its complaint
        got += [row for block, complaint in _SEQUENCE[4:] for row in _assignments_of(_assign(fn, block, complaint, state))]
        assert step.counter("DeduplicatePetitions", "index_rebuilds") == 1
        assert step.counter("DeduplicatePetitions", "changelog_compactions") >= 1
    assert got == expected
    assert ("a3", _matter("a1"), "a1") in got and ("b2", _matter("b1"), "b1") in got
    assert len(state[1].items) <= 2 * len(_rebuilt_matters(fn, state))
    # a new instance (another worker, a restart) rebuilds the same indexes from the state
    assert _rebuilt_matters(fn, state) == sorted((block, row[0], row[4]) for block, index in fn._cache.indexes.items()
                                                 for row in index.to_state()["matters"])


def test_an_expired_matter_clears_its_lead_state():
    weights = load_scoring_weights()
    reports = []
    index = MatterIndex(load_repeat_config())
    for complaint in [_complaint("a1", 0, DYEING_1), _complaint("a2", 5, DYEING_2)]:
        reports.append(report_matter(index, complaint, weights)[0])
    fn = _MergeLeadStreamingFn()
    fn.setup()
    lead_state = _FakeState()
    with _CountedStep() as step:
        emitted = [lead for report in reports
                   for lead in fn.process((_matter("a1"), report), {}, lead_state, _FakeState())]
        assert [lead.report_count for lead in emitted] == [1, 2]
        expired = MatterExpired(_matter("a1"), _at(5))
        assert list(fn.process((_matter("a1"), expired), {}, lead_state, _FakeState())) == []
        assert lead_state.value is None
        assert list(fn.process((_matter("a1"), expired), {}, lead_state, _FakeState())) == []
        assert step.counter("BuildLeads", "leads_expired") == 1


def test_a_marker_that_overtakes_its_matters_last_report_clears_the_lead_after_it():
    """Beam promises no order across a shuffle: the lead stage may get a matter's expiry before
    a report the repeat stage emitted earlier. The lead then keeps that report, whole, and its
    state goes once the lead holds the matter's last report."""
    weights = load_scoring_weights()
    index = MatterIndex(load_repeat_config())
    first, last = (report_matter(index, complaint, weights)[0]
                   for complaint in [_complaint("a1", 0, DYEING_1), _complaint("a2", 5, DYEING_2)])
    fn = _MergeLeadStreamingFn()
    fn.setup()
    lead_state, expire_after = _FakeState(), _FakeState()
    with _CountedStep() as step:
        assert [lead.report_count for lead in fn.process((_matter("a1"), first), {}, lead_state, expire_after)] == [1]
        assert list(fn.process((_matter("a1"), MatterExpired(_matter("a1"), _at(5))), {}, lead_state,
                               expire_after)) == []
        assert lead_state.value is not None and expire_after.value == _at(5)
        [lead] = fn.process((_matter("a1"), last), {}, lead_state, expire_after)
        assert lead.complaint_ids == ["a1", "a2"]
        assert lead_state.value is None and expire_after.value is None
        assert step.counter("BuildLeads", "leads_expired") == 1


def test_with_sourced_every_report_gives_its_lead_version_or_none_with_its_source():
    """What the offset committer counts on: a report before the matter's first environmental one, a
    report that makes a new version and a redelivery that changes nothing each give one ``(version
    or None, source)``; an expired matter (no raw record) gives nothing."""
    from envleads.records import KafkaCoordinates

    weights = load_scoring_weights()
    index = MatterIndex(load_repeat_config())
    first = _complaint("a1", 0, DYEING_1, labels=())
    second = _complaint("a2", 1, DYEING_1)
    sourced = [c._replace(complaint=c.complaint._replace(source=KafkaCoordinates("raw", 0, n)))
               for n, c in enumerate([first, second, second])]
    reports = [report_matter(index, complaint, weights)[0] for complaint in sourced]
    assert len({report.enriched.cluster_id for report in reports}) == 1
    fn = _MergeLeadStreamingFn(sourced=True)
    fn.setup()
    lead_state = _FakeState()
    elements = [(report.enriched.cluster_id, report) for report in reports]
    elements.append((reports[0].enriched.cluster_id, MatterExpired(reports[0].enriched.cluster_id, _at(1))))
    expire_after = _FakeState()
    outputs = [output for element in elements for output in fn.process(element, {}, lead_state, expire_after)]
    assert [(version is None, source.offset) for version, source in outputs] == [(True, 0), (False, 1), (True, 2)]
    # the lead starts at the first environmental report: the question before it is not in it
    assert outputs[1][0].complaint_ids == ["a2"] and outputs[1][0].first_complaint_id == "a2"


def test_event_bytes_pass_through_the_stateful_stages_and_never_into_state():
    """``keep_original``: the bytes travel with the complaint into its report (and would go into its
    dead letter), while the index holds what it holds without them and the lead stage keeps nothing."""
    original = "原始事件字节 13900000009".encode("utf-8")
    question = _complaint("q1", 0, "请问新能源汽车购置补贴怎么申请？", labels=())  # no lead
    assign = _fresh_assigner(keep_original=True)
    state = _state()
    [(report, carried)] = _assign(assign, "330100", (question, original), state)
    assert carried == original
    assert state[1].items and not any("13900000009" in (row or "") for _, _, row in state[1].items)
    merge = _MergeLeadStreamingFn(keep_original=True)
    merge.setup()
    lead_state = _FakeState()
    assert list(merge.process((report.enriched.cluster_id, (report, original)), {}, lead_state, _FakeState())) == []
    assert lead_state.value is None


def test_state_coders_round_trip():
    index = MatterIndex(load_repeat_config())
    report, _ = report_matter(index, _complaint("a1", 0, DYEING_1), load_scoring_weights())
    lead = merge_lead(None, [report], _at(0), load_scoring_weights())
    assert LeadStateCoder().decode(LeadStateCoder().encode(lead)) == lead


# ------------------------------------------------------------------------------------ whole path
def _raw(complaint_id, day, text, phone):
    received = datetime.fromtimestamp(_at(day) / 1000, timezone(timedelta(hours=8))).isoformat()
    event = {"complaint_id": complaint_id, "received_at": received, "text": text, "channel": "web",
             "reporter": {"phone": phone}}
    return RawEvent(json.dumps(event, ensure_ascii=False).encode("utf-8"), "json")


@pytest.fixture(scope="module")
def trained_model():
    from envleads.models.registry import ensure_default_model

    return ensure_default_model()


@pytest.fixture
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "test-streaming-key")


def test_whole_path_as_one_streaming_job(trained_model, pseudonym_key):
    from envleads.pipelines.options import StageSettings

    settings = StageSettings(model_version=trained_model)
    events = [_raw("a1", 0, DYEING_1, "13900000001"), _raw("a2", 3, DYEING_2, "13900000002"),
              _raw("a3", 10, DYEING_3, "13900000003")]
    stream = (_stream()
              .add_elements([TimestampedValue(events[0], _at(0) / 1000)])
              .advance_watermark_to(_watermark(1))
              .add_elements([TimestampedValue(events[1], _at(3) / 1000),
                             TimestampedValue(RawEvent(b"{not json", "json"), _at(3) / 1000)])
              .advance_watermark_to(_watermark(4))
              .add_elements([TimestampedValue(events[2], _at(10) / 1000)])
              .advance_watermark_to_infinity())
    with TestPipeline(options=_streaming_options()) as p:
        outputs = p | stream | ComplaintsToLeadsStreaming(settings)
        assert_that(_assignments(outputs["enriched"]), equal_to([
            ("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("a3", _matter("a1"), "a1")]),
            label="matters")
        assert_that(outputs["leads"] | beam.Map(lambda lead: (lead.lead_id, lead.report_count, lead.region["adcode"])),
                    equal_to([(_lead("a1"), 1, "330110"), (_lead("a1"), 2, "330110"), (_lead("a1"), 3, "330110")]),
                    label="leads")
        assert_that(outputs["dead_letters"] | beam.Map(lambda d: d.reason), equal_to(["invalid_json"]), label="dead")


# --------------------------------------------------------------- bounded stage: keys, scopes, replays
def _placed(complaint_id, day, text, adcode=None, jurisdiction=None, labels=("water",)):
    """A complaint resolved to ``adcode`` (None: unresolved), taken in by an office of ``jurisdiction``."""
    enriched = _complaint(complaint_id, day, text, labels)
    level = None if adcode is None else "province" if adcode.endswith("0000") else "county"
    region = RegionResolution(None, None, None, adcode, level, 0.9 if adcode else 0.0, None, "test")
    return enriched._replace(complaint=enriched.complaint._replace(jurisdiction_adcode=jurisdiction), region=region)


def _bounded(complaints, prior=None):
    """Runs the bounded DeduplicatePetitions + BuildLeads; returns (sorted assignments, leads)."""
    import glob
    import os
    import tempfile

    from envleads.pipelines.transforms import BuildLeads

    with tempfile.TemporaryDirectory() as folder:
        with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            prior_leads = p | "Prior" >> beam.Create(prior) if prior else None
            reports = (p | "Complaints" >> beam.Create(complaints) | DeduplicatePetitions(prior_leads))[MAIN]
            leads = (reports | BuildLeads(prior_leads))[MAIN]
            (reports
             | "ReportJson" >> beam.Map(lambda r: json.dumps([r.enriched.complaint.complaint_id, r.enriched.cluster_id,
                                                              r.enriched.duplicate_of]))
             | "WriteReports" >> beam.io.WriteToText(os.path.join(folder, "reports")))
            (leads
             | "LeadJson" >> beam.Map(lambda lead: json.dumps(lead_to_avro_dict(lead), ensure_ascii=False))
             | "WriteLeads" >> beam.io.WriteToText(os.path.join(folder, "leads")))

        def read(prefix):
            lines = []
            for path in sorted(glob.glob(os.path.join(folder, prefix + "*"))):
                with open(path, encoding="utf-8") as handle:
                    lines.extend(json.loads(line) for line in handle if line.strip())
            return lines

        return (sorted(tuple(row) for row in read("reports")),
                [lead_from_avro_dict(record) for record in read("leads")])


def test_bounded_unplaced_complaints_are_assigned_last_against_their_province():
    # a1 in Yuhang; a2 names no place but was taken in by a Zhejiang office with no city (330000);
    # a3 names no place and came in through a Jiangsu office: another province, another matter
    reports, _ = _bounded([_placed("a1", 0, DYEING_1, "330110"), _placed("a2", 3, DYEING_2, None, "330000"),
                           _placed("a3", 4, DYEING_3, None, "320000")])
    assert reports == [("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("a3", _matter("a3"), None)]


def test_bounded_blocking_key_falls_back_to_the_intake_jurisdiction():
    # unresolved, but the office's jurisdiction names the city: one key with the Yuhang report
    reports, _ = _bounded([_placed("a1", 0, DYEING_1, "330110"), _placed("a2", 3, DYEING_2, None, "330100")])
    assert reports == [("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1")]


def test_bounded_restart_attaches_a_repeat_to_the_prior_lead_and_replays_change_nothing():
    first_round = [_placed("a1", 0, DYEING_1, "330110"), _placed("a2", 3, DYEING_2, "330110")]
    _, leads = _bounded(first_round)
    assert [(lead.lead_id, lead.report_count) for lead in leads] == [(_lead("a1"), 2)]
    prior = [lead_from_avro_dict(schemas.decode(schemas.LEADS, schemas.encode(schemas.LEADS, lead_to_avro_dict(lead))))
             for lead in leads]
    # a new process (no in-memory state): a replay of the first round plus a new repeat
    reports, updated = _bounded(first_round + [_placed("a3", 10, DYEING_3, "330110")], prior)
    assert reports == [("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1"), ("a3", _matter("a1"), "a1")]
    assert [(lead.lead_id, lead.report_count, lead.complaint_ids) for lead in updated] == [
        (_lead("a1"), 3, ["a1", "a2", "a3"])]
    # replaying the first round alone emits no lead at all
    reports, updated = _bounded(first_round, prior)
    assert reports == [("a1", _matter("a1"), None), ("a2", _matter("a1"), "a1")] and updated == []


def test_bounded_restored_matters_keep_their_region():
    _, leads = _bounded([_placed("a1", 0, DYEING_1, "330110")])
    # the same words resolved to another county of the city do not join the restored matter
    reports, _ = _bounded([_placed("a2", 3, DYEING_2, "330106")], leads)
    assert reports == [("a2", _matter("a2"), None)]
