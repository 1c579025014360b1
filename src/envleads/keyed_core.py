"""One keyed core: what the streaming engines do per key, written once, free of Beam and of any engine.

The Beam streaming job (``pipelines/streaming.py``: keyed state and event-time timers) and the
rounds engine (``pipelines/rounds/engine.py``: matter indexes in memory between rounds, a lead
store, a changelog) are adapters over these functions. An adapter decides where a key's state
lives, in what order a key's events come and when expiry runs; what a step does is here, so the
two engines cannot drift apart in it.

Per blocking key, the state is a :class:`~envleads.repeats.MatterIndex`:

* :func:`seed_key`: restore the key's prior leads (the matters a restart must find again);
* :func:`keyed_complaint` and :func:`assign_in_key`: one complaint to its matter, with one policy
  for the ``"unknown"`` key (:func:`~envleads.repeats.assign_unplaced` across every city index of
  its scope) and for redeliveries (a complaint the index already
  holds keeps its matter and is not counted again: :meth:`MatterIndex.redelivery`);
* :func:`joined_by`, :func:`report_of`: the complaint's matter and its report, for the lead;
* :func:`expire_key`, :func:`next_expiry_ms`: matters whose last report left the window go.

Both engines reach every key's index from every complaint (the rounds engine holds them in one
process, the Beam job under one state key, :data:`~envleads.pipelines.streaming.REPEAT_SCOPE`),
so a complaint of no known city meets the matters of its scope's cities in both.

Per matter, the state is its current lead and the reports that wait for an environmental one:

* :func:`merge_into_lead`: reports into the lead (a report already counted changes nothing);
* :func:`lead_expiry_ms`: when the lead leaves state, with its matter.
"""
from __future__ import annotations

import json
from typing import Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

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


def seed_key(index: MatterIndex, leads: Iterable[Lead]) -> Tuple[int, int]:
    """Restores a key's prior leads its index lacks: ``(restored, unrestorable)``
    (:func:`~envleads.leads.seed_index`)."""
    return seed_index(index, leads)


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


def expire_key(index: MatterIndex, now_ms: int) -> int:
    """Drops the matters whose last report is more than the window before ``now_ms`` (event
    time: each key's newest event in the rounds engine, the watermark in the Beam job); how many."""
    return len(index.expire(now_ms))


def next_expiry_ms(indexes: Iterable[MatterIndex], window_ms: int) -> Optional[int]:
    """When the oldest matter of ``indexes`` leaves the window: its last report + window + 1 ms.

    ``MatterIndex.expire(now)`` drops matters whose last report is *before* ``now - window``, and
    ``assign`` still joins a report exactly ``window`` after the last one, so the first instant a
    matter may go is one millisecond later. None when no index holds a matter.
    """
    last_seen = [oldest for oldest in (index.oldest_last_seen_ms() for index in indexes) if oldest is not None]
    return lead_expiry_ms(min(last_seen), window_ms) if last_seen else None


# ------------------------------------------------------------------------------------- per matter
# ``merge_lead`` scores as of the later of this and the lead's newest report: the newest report.
_AS_OF_NEWEST_REPORT = 0


class LeadMerge(NamedTuple):
    """A matter's state after :func:`merge_into_lead`.

    ``lead``: the current lead (None while no report is environmental); ``changed``: whether it is
    a new version (to emit); ``waiting``: reports to add to those waiting for an environmental one
    (``pending_cleared``: the waiting ones joined the lead); ``last_seen_ms``: the matter's newest
    report, from which its expiry is counted."""

    lead: Optional[Lead]
    changed: bool
    waiting: List[MatterReport]
    pending_cleared: bool
    last_seen_ms: int


def merge_into_lead(previous: Optional[Lead], pending: Sequence[MatterReport], reports: Sequence[MatterReport],
                    weights: ScoringWeights) -> LeadMerge:
    """Merges a matter's new ``reports`` into its lead ``previous`` (or, when it has none, with the
    reports that wait for an environmental one, ``pending``). A report already counted (in the
    lead, or waiting) is a redelivery: it changes nothing.

    The lead is scored as of its newest report (``merge_lead`` scores as of the later of the time
    given and the lead's newest report): whatever the engine and however reports are batched, the
    same reports give the same score."""
    waited = list(pending) if previous is None else []
    lead = merge_lead(previous, waited + list(reports), _AS_OF_NEWEST_REPORT, weights)
    if lead is None:
        known = {report.enriched.complaint.complaint_id for report in waited}
        waiting = []
        for report in reports:
            if report.enriched.complaint.complaint_id not in known:
                known.add(report.enriched.complaint.complaint_id)
                waiting.append(report)
        last_seen_ms = max(report.enriched.complaint.received_at_ms for report in waited + list(reports))
        return LeadMerge(None, False, waiting, False, last_seen_ms)
    return LeadMerge(lead, lead is not previous, [], bool(waited), lead.last_seen_ms)


def lead_expiry_ms(last_seen_ms: int, window_ms: int) -> int:
    """The first instant a matter (its index entry and its lead) may leave state: its last report
    + the repeat window + 1 ms (a report exactly ``window`` later still joins)."""
    return last_seen_ms + window_ms + 1


def matter_row_json(row: list) -> str:
    """One matter row of a key's index as both engines persist it (the rounds engine's checkpoint,
    the Beam job's changelog state)."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def take_row_changes(index: MatterIndex) -> List[Tuple[str, Optional[str]]]:
    """The index's matters changed since the last call, as ``(cluster id, JSON row)``, and those
    dropped, as ``(cluster id, None)``; the index forgets them."""
    changed, dropped = index.take_changes()
    return [(row[0], matter_row_json(row)) for row in index.matter_rows(changed)] + [(cid, None) for cid in dropped]
