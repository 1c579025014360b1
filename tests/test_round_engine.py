"""The local round engine with the ``"unknown"`` key's assignment in a process of its own
(:class:`UnplacedAssigner`) gives the same matters, reports and leads as with all keys in one
process, also across a :meth:`LocalRoundEngine.forget` (what a broker loss triggers)."""
import pytest

from envleads.generator import generate_events
from envleads.leads import block_of_complaint
from envleads.pipelines.options import StageSettings
from envleads.pipelines.stream import Enricher, LeadStore, LocalRoundEngine, UnplacedAssigner, _encode_lead
from envleads.pipelines.transforms import RawEvent
from envleads.repeats import UNKNOWN_BLOCK

ROUND = 150


@pytest.fixture(scope="module")
def enriched_rounds():
    from envleads.models.registry import ensure_default_model

    enricher = Enricher(StageSettings(model_version=ensure_default_model()))
    events = [RawEvent(event.line, "json") for event in generate_events(1200, seed=5)]
    return [enricher.enrich(events[start:start + ROUND]) for start in range(0, len(events), ROUND)]


def _run(enriched_rounds, unplaced):
    """Rounds through a fresh engine and store; the state is forgotten before the fourth round."""
    store = LeadStore()
    engine = LocalRoundEngine(StageSettings(), store, unplaced=unplaced)
    rounds = []
    try:
        for number, (enriched, dead) in enumerate(enriched_rounds):
            if number == 3:
                engine.forget()
            outputs = engine.finish(enriched, dead)
            store.put_leads([(lead, _encode_lead(lead)) for lead in outputs.leads])
            reports = [(report.enriched.complaint.complaint_id, report.enriched.cluster_id,
                        report.enriched.duplicate_of, block_of_complaint(report.enriched))
                       for report in outputs.enriched]
            leads = sorted((lead.lead_id, lead.report_count, tuple(lead.complaint_ids), lead.score)
                           for lead in outputs.leads)
            rounds.append((reports, leads, engine.matters_in_memory()))
    finally:
        store.close()
    return rounds


def test_the_unknown_key_in_its_own_process_assigns_as_in_one_process(enriched_rounds):
    in_one = _run(enriched_rounds, None)
    assigner = UnplacedAssigner()
    try:
        beside = _run(enriched_rounds, assigner)
    finally:
        assigner.close()
    unplaced_repeats = [report for reports, _, _ in in_one for report in reports
                        if report[3] == UNKNOWN_BLOCK and report[2] is not None]
    assert unplaced_repeats, "the generated rounds must hold repeats of no known city to compare"
    assert beside == in_one
