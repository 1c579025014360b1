"""One keyed core: what the streaming engines do per key, written once, free of Beam and of any engine.

The Beam streaming job (``pipelines/streaming.py``: Beam state) and the rounds engine
(``pipelines/rounds/engine.py``: matter indexes in memory between rounds, a lead store, a
changelog) are adapters over these functions. An adapter decides where a key's state lives and in
what order a key's events come; what a step does, and when a matter leaves, is here, so the two
engines cannot drift apart in it.

Per blocking key, the state is a :class:`~envleads.repeats.MatterIndex` and the key's newest
event time:

* :func:`seed_key`: restore the key's prior leads live as of its first event (what a restart must
  find again);
* :func:`keyed_complaint` and :func:`assign_in_key`: one complaint to its matter, with one policy
  for the ``"unknown"`` key (:func:`~envleads.repeats.assign_unplaced` across every city index of
  its scope) and for redeliveries (a complaint the index already
  holds keeps its matter and is not counted again: :meth:`MatterIndex.redelivery`);
* :func:`joined_by`, :func:`report_of`: the complaint's matter and its report, for the lead;
* :func:`newest_event_ms`, :func:`expire_key`: one expiry policy. A key's matters expire as of the
  key's newest event time, counted from the events themselves (a complaint advances its own
  key's clock, also when it joins another key's matter), never from a watermark, which depends on
  the runner. ``assign`` joins only matters within the window of the complaint's own time, so for
  in-order events expiry frees memory and changes no assignment; an event more than the window
  behind its key's newest meets only the matters still live (an expired one is not brought back).

Both engines reach every key's index from every complaint (the rounds engine holds them in one
process, the Beam job under one state key, :data:`~envleads.pipelines.streaming.REPEAT_SCOPE`),
so a complaint of no known city meets the matters of its scope's cities in both.

Per matter, the state is its current lead, which lives exactly as long as the matter in its index:

* :func:`merge_into_lead`: reports into the lead. A lead starts at its matter's first
  environmental report (:func:`~envleads.leads.merge_lead`); reports before it stay out of the
  lead and nothing waits for one; a report already counted changes nothing.

What the adapters still do differently is not a policy: the order within a round (the rounds
engine assigns a round in event-time order, city keys first, and expires once per round; the Beam
job in arrival order, expiring after each complaint), the order of a lead's types when its reports
were merged in other batches, and the rounds engine's ``duplicate_id_conflict`` (a reused id with
other content), which the Beam job does not check. With one delivery per round the two give the
same matters and lead versions (``tests/test_engine_equivalence.py``).
"""
from __future__ import annotations

import json
from typing import Iterable, List, Mapping, MutableMapping, NamedTuple, Optional, Sequence, Tuple, Union

from envleads.leads import MatterReport, complaint_features, matter_report, merge_lead, report_join, \
    scope_of_complaint, seed_index
from envleads.records import EnrichedComplaint, Lead, ReportJoin
from envleads.repeats import UNKNOWN_BLOCK, Assignment, MatterFeatures, MatterIndex, assign_unplaced
from envleads.scoring import ScoringWeights


# --------------------------------------------------------------------------------- per blocking key
class KeyedComplaint(NamedTuple):
    """What repeat detection needs of a complaint (all that crosses to the rounds engine's keyed
    worker): its id, event time, matter features, reporter key, and for the ``"unknown"`` key the
    scope it searches (None for a city key)."""

    complaint_id: str
    event_ms: int
    features: MatterFeatures
    reporter_key: Union[str, Sequence[str], None]
    scope: Optional[str]


# A complaint's matter as the adapters carry it: ``(cluster_id, duplicate_of, why it joined)``
# (``ReportJoin``; None for a matter's first report or a redelivery). A plain tuple, not a named
# one: one is made per complaint, and plain tuples of strings leave the garbage collector's lists.
Joined = Tuple[str, Optional[str], Optional[ReportJoin]]


def keyed_complaint(enriched: EnrichedComplaint, block: str, config) -> KeyedComplaint:
    """The complaint as :func:`assign_in_key` takes it under the blocking key ``block``."""
    complaint = enriched.complaint
    scope = scope_of_complaint(enriched) if block == UNKNOWN_BLOCK else None
    return KeyedComplaint(complaint.complaint_id, complaint.received_at_ms, complaint_features(enriched, config),
                          complaint.reporter_key, scope)


def seed_key(index: MatterIndex, leads: Iterable[Lead], as_of_ms: int) -> Tuple[int, int]:
    """Restores a key's prior leads its index lacks and that are live as of ``as_of_ms`` (the
    first event that reaches the key): ``(restored, unrestorable)``
    (:func:`~envleads.leads.seed_index`). A lead that left the window is not brought back, as it
    would expire at once."""
    horizon = as_of_ms - index.config.window_ms
    return seed_index(index, (lead for lead in leads if lead.last_seen_ms >= horizon))


def assign_in_key(indexes: Mapping[str, MatterIndex], block: str,
                  complaint: KeyedComplaint) -> Tuple[str, Assignment]:
    """Assigns one complaint of ``block`` to its matter; returns the key whose index now holds the
    matter, and the assignment. ``indexes`` are every key's indexes (a
    :class:`~envleads.repeats.KeyIndexes`), ``block``'s among them: a complaint of the
    ``"unknown"`` key is assigned across the ``"unknown"`` index and those of its scope's city keys
    (:func:`assign_unplaced`). A redelivered complaint keeps its matter."""
    if block == UNKNOWN_BLOCK:
        return assign_unplaced(indexes, complaint.scope, complaint.complaint_id, complaint.event_ms,
                               complaint.features, complaint.reporter_key)
    return block, indexes[block].assign(complaint.complaint_id, complaint.event_ms, complaint.features,
                                        complaint.reporter_key)


def joined_by(complaint_id: str, assignment: Assignment) -> Joined:
    """An assignment as the adapters carry it (the rounds engine from its keyed worker)."""
    return assignment.cluster_id, assignment.duplicate_of, report_join(complaint_id, assignment)


def counted_in(lead: Lead) -> Joined:
    """The matter of a complaint already counted in ``lead`` (a replay, a redelivery whose matter
    another key holds): the lead's, whatever an index would say now."""
    return lead.cluster_id, lead.first_complaint_id, None


def report_of(enriched: EnrichedComplaint, features: MatterFeatures, joined: Joined,
              weights: ScoringWeights) -> MatterReport:
    """The complaint's report to its matter, for the lead (scoring signals, why it joined)."""
    cluster_id, duplicate_of, join = joined
    return matter_report(enriched, features, cluster_id, duplicate_of, weights, join)


def newest_event_ms(newest: MutableMapping[str, int], block: str, event_ms: int) -> int:
    """Advances ``block``'s newest event time (its expiry clock) to ``event_ms`` when later, and
    returns it. Only the key's own complaints advance it: one of the ``"unknown"`` key that joins
    a city key's matter advances ``"unknown"``'s, not the city's."""
    newest_ms = newest.get(block)
    if newest_ms is None or event_ms > newest_ms:
        newest[block] = newest_ms = event_ms
    return newest_ms


def expire_key(index: MatterIndex, newest_ms: int) -> List[Tuple[str, int]]:
    """Drops the key's matters whose last report is more than the window before ``newest_ms``,
    the key's newest event time (:func:`newest_event_ms`); returns their cluster ids, each with
    its last report's time (their leads leave state with them, once they hold that report)."""
    return index.expire_matters(newest_ms)


# ------------------------------------------------------------------------------------- per matter
# ``merge_lead`` scores as of the later of this and the lead's newest report: the newest report.
_AS_OF_NEWEST_REPORT = 0


class LeadMerge(NamedTuple):
    """A matter's state after :func:`merge_into_lead`: ``lead``, the current lead (None while no
    report is environmental); ``changed``, whether it is a new version (to emit)."""

    lead: Optional[Lead]
    changed: bool


def merge_into_lead(previous: Optional[Lead], reports: Sequence[MatterReport], weights: ScoringWeights) -> LeadMerge:
    """Merges a matter's new ``reports`` into its lead ``previous``. Without one, the lead starts
    at the first environmental report among ``reports`` (event-time order) and the reports before
    it are not in the lead: nothing is kept for a later environmental report, so the lead is the
    same however in-order reports are batched. A report already counted is a redelivery: it
    changes nothing.

    The lead is scored as of its newest report (``merge_lead`` scores as of the later of the time
    given and the lead's newest report): whatever the engine and however reports are batched, the
    same reports give the same score."""
    lead = merge_lead(previous, list(reports), _AS_OF_NEWEST_REPORT, weights)
    return LeadMerge(lead, lead is not None and lead is not previous)


def matter_row_json(row: list) -> str:
    """One matter row of a key's index as both engines persist it (the rounds engine's checkpoint,
    the Beam job's changelog state)."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def take_row_changes(index: MatterIndex) -> List[Tuple[str, Optional[str]]]:
    """The index's matters changed since the last call, as ``(cluster id, JSON row)``, and those
    dropped, as ``(cluster id, None)``; the index forgets them."""
    changed, dropped = index.take_changes()
    return [(row[0], matter_row_json(row)) for row in index.matter_rows(changed)] + [(cid, None) for cid in dropped]
