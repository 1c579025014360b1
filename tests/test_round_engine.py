"""The local round engine with the keys' assignment in a process of its own (:class:`KeyedAssigner`)
gives the same matters, reports and leads as with all keys in this process, also across a
:meth:`LocalRoundEngine.forget` (what a broker loss triggers)."""
import pytest

from envleads.generator import generate_events
from envleads.leads import block_of_complaint
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.engine import LocalRoundEngine
from envleads.pipelines.rounds.enrich import Enricher
from envleads.pipelines.rounds.outputs import _encode_lead
from envleads.pipelines.rounds.pools import KeyedAssigner
from envleads.pipelines.rounds.store import LeadStore
from envleads.records import RawEvent
from envleads.repeats import UNKNOWN_BLOCK

ROUND = 150


@pytest.fixture(scope="module")
def enriched_rounds():
    from envleads.models.registry import ensure_default_model

    enricher = Enricher(StageSettings(model_version=ensure_default_model()))
    events = [RawEvent(event.line, "json") for event in generate_events(1200, seed=5)]
    return [enricher.enrich(events[start:start + ROUND]) for start in range(0, len(events), ROUND)]


def _run(enriched_rounds, keyed_worker):
    """Rounds through a fresh engine and store; the state is forgotten before the fourth round."""
    store = LeadStore()
    engine = LocalRoundEngine(StageSettings(), store, keyed_worker=keyed_worker)
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


def test_keys_in_their_own_process_assign_as_in_one_process(enriched_rounds):
    in_one = _run(enriched_rounds, None)
    assigner = KeyedAssigner()
    try:
        beside = _run(enriched_rounds, assigner)
    finally:
        assigner.close()
    repeats = [report for reports, _, _ in in_one for report in reports if report[2] is not None]
    assert any(report[3] == UNKNOWN_BLOCK for report in repeats), \
        "the generated rounds must hold repeats of no known city to compare"
    assert any(report[3] != UNKNOWN_BLOCK for report in repeats), "and repeats of city keys"
    assert beside == in_one


def test_after_forget_repeats_join_the_matters_restored_from_the_store(enriched_rounds):
    """The indexes dropped by ``forget`` come back from the stored leads: complaints after it
    still join matters that began before it (without the restore none could)."""
    rounds = _run(enriched_rounds, None)
    before = {cluster for reports, _, _ in rounds[:3] for _, cluster, _, _ in reports}
    joined_after = [report for reports, _, _ in rounds[3:] for report in reports
                    if report[1] in before and report[2] is not None]
    assert len(joined_after) >= 5


def test_leads_grow_from_the_stored_versions_read_in_one_query_per_500(enriched_rounds):
    store = LeadStore()
    engine = LocalRoundEngine(StageSettings(), store)
    written, grown = {}, 0
    try:
        for enriched, dead in enriched_rounds:
            for lead in engine.finish(enriched, dead).leads:
                before = written.get(lead.lead_id)
                if before is not None:  # a matter of an earlier round: merged into its stored lead
                    assert lead.report_count > before.report_count
                    assert lead.complaint_ids[:before.report_count] == before.complaint_ids
                    grown += 1
                written[lead.lead_id] = lead
            store.put_leads([(lead, _encode_lead(lead)) for lead in written.values()])
        assert grown >= 5 and len(written) > 500
        found = store.get_many(["lead-none", *written, *list(written)[:3]])
        assert sorted(found) == sorted(written)
        assert all((found[i].report_count, found[i].complaint_ids) == (lead.report_count, lead.complaint_ids)
                   for i, lead in written.items())
    finally:
        store.close()


def test_enriched_records_spliced_from_the_workers_parts_equal_whole_encodings():
    """An enrichment worker encodes all but the repeat stage's fields; the keyed stage splices those
    in. The bytes must be those of encoding the whole record: with and without Kafka coordinates,
    first reports and repeats, non-ASCII and long ids."""
    from envleads import schemas
    from envleads.leads import MatterReport
    from envleads.pipelines.rounds.outputs import _encode_enriched
    from envleads.records import KafkaCoordinates
    from envleads.serialize import enriched_to_avro_dict

    enricher = Enricher(StageSettings(), keep_tokens=False, wire_parts=True)
    events = [RawEvent(event.line, "json", KafkaCoordinates("complaints.raw", n % 3, 10 ** (n % 12)) if n % 2 else None)
              for n, event in enumerate(generate_events(120, seed=8))]
    enriched, _ = enricher.enrich(events)
    assert enriched and all(item.wire_parts is not None for item in enriched)
    for n, item in enumerate(enriched):
        cluster = f"cl-{n:04d}" if n % 3 else "事项-" + "x" * (70 * n)
        duplicate = None if n % 4 == 0 else f"WB-{n}-重复"
        spliced = item._replace(cluster_id=cluster, duplicate_of=duplicate)
        whole = schemas.encode(schemas.ENRICHED, enriched_to_avro_dict(spliced))
        assert _encode_enriched(MatterReport(spliced, frozenset(), [], [])) == whole
        assert schemas.decode(schemas.ENRICHED, whole)["cluster_id"] == cluster


def test_an_unplaced_complaint_whose_assignment_raises_is_marked_and_the_others_are_assigned(monkeypatch):
    """The error policy's guard wraps the shared rule for unplaced complaints too: the one that
    raises gets :class:`~envleads.failures.Raised` (a dead letter in the engine), the key goes on."""
    import envleads.keyed_core as keyed_core
    import envleads.pipelines.rounds.engine as engine
    from envleads.failures import Raised
    from envleads.keyed_core import KeyedComplaint
    from envleads.repeats import KeyIndexes, cluster_id_for, load_repeat_config, matter_features

    config = load_repeat_config()
    real = keyed_core.assign_unplaced

    def assign_unplaced(indexes, scope, complaint_id, *args):
        if complaint_id == "bad":
            raise RuntimeError("planted")
        return real(indexes, scope, complaint_id, *args)

    monkeypatch.setattr(keyed_core, "assign_unplaced", assign_unplaced)
    text = "金桥化工厂夜里偷排废水，河水发黑发臭"
    features = matter_features(text, "", (), None, ("water",), config)
    complaints = [KeyedComplaint("bad", 1_000, features, None, UNKNOWN_BLOCK),
                  KeyedComplaint("ok", 2_000, features, None, UNKNOWN_BLOCK)]
    results = engine.assign_key_rounds(KeyIndexes(), {UNKNOWN_BLOCK: (([], [], 1_000), complaints, 2_000)}, config)
    assigned = results[UNKNOWN_BLOCK][0]
    assert isinstance(assigned["bad"], Raised)
    assert assigned["ok"][:2] == (cluster_id_for("ok"), None)  # a new matter, as without the planted one
