"""The keyed stages of one round in this process (:class:`LocalRoundEngine`): repeat detection per
blocking key over matter indexes kept between rounds (:func:`assign_key_rounds`, also run in the
:class:`~envleads.pipelines.rounds.pools.KeyedAssigner`'s process), and lead building; a round's
results as :class:`RoundOutputs`."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple

from envleads.decode import content_digest
from envleads.failures import Raised, count_internal_errors, internal_error, raised
from envleads.keyed_core import (KeyedComplaint, assign_in_key, counted_in, expire_key, joined_by, keyed_complaint,
                                 merge_into_lead, newest_event_ms, report_of, seed_key, take_row_changes)
from envleads.leads import MatterReport, block_of_complaint, complaint_features, event_order, lead_id_for
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.enrich import Enricher
from envleads.pipelines.rounds.outputs import with_originals
from envleads.pipelines.rounds.store import LeadStore, StateChanges
from envleads.pipelines.transforms import (BUILD_LEADS_STAGE, DEDUPLICATE_STAGE, distinct_complaints,
                                           reused_id_dead_letter)
from envleads.records import DeadLetter, EnrichedComplaint, Lead, RawEvent
from envleads.repeats import UNKNOWN_BLOCK, KeyIndexes, MatterIndex, in_scope

if TYPE_CHECKING:
    from envleads.pipelines.rounds.pools import KeyedAssigner


class _AssignmentFailed(Exception):
    """The index raised on a complaint (its :class:`~envleads.failures.Raised` as the argument)."""


class RoundOutputs(NamedTuple):
    """What one round writes: enriched reports, new lead versions, dead letters, state changes."""

    enriched: List[MatterReport]
    leads: List[Lead]
    dead_letters: List[DeadLetter]
    state: StateChanges = StateChanges()


class LocalRoundEngine:
    """The stages of :class:`ComplaintsToLeads` over one round, in this process, set up once.

    The stateless stages call the very DoFns of ``transforms.py`` (set up once per process instead
    of once per round); repeat detection keeps one :class:`MatterIndex` per city key alive between
    rounds, as the streaming form (``streaming.py``) keeps it in keyed state, seeded on first use
    from that block's in-window leads in the :class:`LeadStore`; each step is the keyed core's
    (:mod:`envleads.keyed_core`, the Beam streaming job's too): complaints of no known city are
    assigned after the round's city keys, across the ``"unknown"`` key's index and the city keys
    of their scope (:func:`~envleads.keyed_core.assign_in_key`); a key's matters expire as of its
    newest event (:func:`~envleads.keyed_core.expire_key`), and an expired matter is not restored
    for a late event; a complaint already counted in a
    stored lead (a replay, a redelivery) keeps that lead's matter; leads are merged per matter
    (:func:`~envleads.keyed_core.merge_into_lead`: a lead starts at its first environmental report),
    each scored as of its newest report, as in the Beam streaming job (not as of the round's
    newest event: a lead's score must not depend on how its reports were batched in rounds). A FnApiRunner round costs ~0.8 s fixed
    plus ~2-3 ms per event and re-seeds every index from all prior leads (pipeline construction,
    fusion, DoFn setup, pickling, side inputs); this costs what the stages cost.

    :meth:`forget` drops the in-memory indexes (after a round whose outputs were not
    acknowledged, or at a restart), so they are rebuilt from the store, which holds acknowledged
    outputs only. With ``checkpoint``, each round also returns the changes of the keyed state
    (:class:`StateChanges`), and an index is rebuilt from the saved changes, which makes a restart
    assign exactly as no restart would; without, from the leads (one sketch and the names of
    each environmental matter: close, not equal).

    A complaint id already used by an event with other content (another content digest) is a
    dead letter ``duplicate_id_conflict``, never folded into its matter as if it were a
    redelivery: within a round the first by event time (then digest) is kept, across rounds the
    one processed first.
    """

    def __init__(self, settings: StageSettings, store: LeadStore, enricher: Optional["Enricher"] = None,
                 keyed_worker: Optional["KeyedAssigner"] = None, checkpoint: bool = False):
        """``keyed_worker``: assigns every key's complaints in a process of its own (None: here);
        every key, since an unplaced complaint searches the city keys of its scope."""
        from envleads.repeats import load_repeat_config
        from envleads.scoring import load_scoring_weights

        self._store = store
        self._enricher = enricher
        self._settings = settings
        self._config = load_repeat_config()
        self._weights = load_scoring_weights()
        self._indexes: Dict[str, MatterIndex] = KeyIndexes()  # its directory: what unplaced complaints visit
        # per block whose stored leads were restored (on first use only): the horizon they were restored from
        self._restored_since: Dict[str, int] = {}
        self._newest_ms: Dict[str, int] = {}
        self._keyed_worker = keyed_worker
        self._worker_matters = 0
        self._worker_forget = False
        self._checkpoint = checkpoint
        # the keys of the store when first needed (after a start or forget): what an unplaced
        # complaint searches beside the keys in memory
        self._known_blocks: Optional[set] = None
        # dead letters ``internal_error`` per stage since start (the rounds engine's metric)
        self.internal_errors: Counter = Counter()

    def forget(self) -> None:
        self._known_blocks = None
        self._indexes.clear()
        self._restored_since.clear()
        self._newest_ms.clear()
        self._worker_forget = True
        self._worker_matters = 0

    def matters_in_memory(self) -> int:
        return sum(len(index) for index in self._indexes.values()) + self._worker_matters

    def enrich(self, events: Sequence[RawEvent]) -> Tuple[List[EnrichedComplaint], List[DeadLetter]]:
        """The stateless stages in this process (set up on first use)."""
        if self._enricher is None:
            self._enricher = Enricher(self._settings)
        return self._enricher.enrich(events)

    def _leads_to_restore(self, block: str, oldest_ms: int) -> List[Lead]:
        """The block's stored leads live for an event at ``oldest_ms``, on the block's first use
        only (the store's query does :func:`~envleads.keyed_core.seed_key`'s filter): a matter
        that expired later is not brought back for a late event, as the Beam job cannot."""
        if block in self._restored_since:
            return []
        since = self._restored_since[block] = oldest_ms - self._config.window_ms
        return self._store.in_block(block, since)

    def _newest(self, block: str, newest_ms: int) -> int:
        return newest_event_ms(self._newest_ms, block, newest_ms)

    def assign(self, enriched: Sequence[EnrichedComplaint], events: Sequence[RawEvent] = ()
               ) -> Tuple[List[MatterReport], List[DeadLetter], StateChanges]:
        """Repeat detection per blocking key, in event-time order within the round: the reports,
        the dead letters of reused ids (their bytes found among ``events``) and the state changes.

        Complaints of no known city are assigned after the round's city keys, across the
        ``"unknown"`` key and the city keys of their scope (:func:`assign_unplaced`, as the bounded
        ``DeduplicatePetitions``); a complaint whose assignment raises is a dead letter.
        """
        enriched, conflicts, seen = self._without_reused_ids(enriched, events)
        known = self._store.known_leads([item.complaint.complaint_id for item in enriched])
        reports: List[MatterReport] = []
        by_block: Dict[str, List[EnrichedComplaint]] = {}
        for item in enriched:
            lead = known.get(item.complaint.complaint_id)
            if lead is not None:
                self._report_or_dead_letter(reports, conflicts, self._known_report, item, lead)
            else:
                by_block.setdefault(block_of_complaint(item), []).append(item)
        rounds = {block: self._key_round(block, items) for block, items in by_block.items()}
        rounds.update(self._searched_keys(rounds))
        pending = None
        if self._keyed_worker is not None:  # every key there: unplaced complaints search the city keys
            forget, self._worker_forget = self._worker_forget, False
            pending = self._keyed_worker.submit(forget, {block: key_round for block, (key_round, _) in rounds.items()},
                                                self._checkpoint)
            results, self._worker_matters = pending.result()
        else:
            results = assign_key_rounds(self._indexes, {block: key_round for block, (key_round, _) in rounds.items()},
                                        self._config, self._checkpoint)
        matters = []
        for block, (_, changed) in results.items():
            matters.extend((block, cluster_id, row) for cluster_id, row in changed)
        for block, (_, ordered) in rounds.items():
            assigned = results[block][0]
            for item, features in ordered:
                self._report_or_dead_letter(reports, conflicts, self._assigned_report, item, features,
                                            assigned[item.complaint.complaint_id])
        blocks = [(block, (self._restored_since[block], self._newest_ms[block]))
                  for block in rounds] if self._checkpoint else []
        return reports, conflicts, StateChanges(matters, blocks, seen)

    def _without_reused_ids(self, enriched: Sequence[EnrichedComplaint], events: Sequence[RawEvent]
                            ) -> Tuple[List[EnrichedComplaint], List[DeadLetter], List[Tuple[str, str]]]:
        """The complaints whose id is new or a redelivery (same content digest), the dead letters
        of those reusing an id with other content, and the round's new ``(id, digest)`` pairs."""
        seen = self._store.seen_digests([item.complaint.complaint_id for item in enriched])
        chosen = dict(seen)
        reused = set()
        for position, item in sorted(enumerate(enriched), key=lambda p: (
                p[1].complaint.received_at_ms, p[1].complaint.complaint_id, p[1].complaint.content_digest)):
            complaint = item.complaint
            if complaint.content_digest and \
                    chosen.setdefault(complaint.complaint_id, complaint.content_digest) != complaint.content_digest:
                reused.add(position)
        new = [(cid, digest) for cid, digest in chosen.items() if cid not in seen]
        if not reused:
            return list(enriched), [], new
        originals = {content_digest(event.payload): event.payload for event in events}
        dead = [reused_id_dead_letter(item.complaint, originals.get(item.complaint.content_digest, b""))
                for position, item in enumerate(enriched) if position in reused]
        return [item for position, item in enumerate(enriched) if position not in reused], dead, new

    def _assigned_report(self, item: EnrichedComplaint, keyed: KeyedComplaint, assigned) -> MatterReport:
        if isinstance(assigned, Raised):  # the index raised on it, here or in the keyed worker
            raise _AssignmentFailed(assigned)
        return report_of(item, keyed.features, assigned, self._weights)

    @staticmethod
    def _report_or_dead_letter(reports: List[MatterReport], dead: List[DeadLetter], report_for, item, *args) -> None:
        """Appends ``report_for(item, *args)`` to ``reports``, or the complaint's dead letter to
        ``dead`` when it raises (one record must not stop the stream)."""
        try:
            reports.append(report_for(item, *args))
        except _AssignmentFailed as failure:
            dead.append(internal_error(DEDUPLICATE_STAGE, failure.args[0], item.complaint))
        except Exception as error:  # noqa: BLE001
            dead.append(internal_error(DEDUPLICATE_STAGE, error, item.complaint))

    def _key_round(self, block: str, items: List[EnrichedComplaint]):
        """One key's part of the round for :func:`assign_key_rounds`: ``((saved matter rows, seed
        leads, as of ms), complaints, newest event ms)``, with the restore bookkeeping done here, with the
        store; and the complaints with their features in event order, to report the assignments."""
        ordered = [(item, keyed_complaint(item, block, self._config)) for item in event_order(items)]
        seeds = self._seeds(block, ordered[0][0].complaint.received_at_ms)
        newest_ms = self._newest(block, ordered[-1][0].complaint.received_at_ms)
        return (seeds, [keyed for _, keyed in ordered], newest_ms), ordered

    def _seeds(self, block: str, oldest_ms: int, saved_only: bool = False) -> Tuple[List[list], List[Lead], int]:
        """What a key's index lacks for an event at ``oldest_ms``: its saved matter rows on first
        use (exactly the state the last acknowledged round left), and the stored leads live then
        (none once there were saved rows), with ``oldest_ms``."""
        rows: List[list] = []
        if self._checkpoint and block not in self._restored_since:
            saved = self._store.saved_block(block)
            if saved is not None:
                self._restored_since[block], self._newest_ms[block], rows = saved
                if saved_only:
                    return rows, [], oldest_ms
        return rows, self._leads_to_restore(block, oldest_ms), oldest_ms

    def _searched_keys(self, rounds) -> Dict[str, tuple]:
        """The city keys the round's unplaced complaints search (:func:`assign_unplaced`) that no
        index holds yet (after a start or :meth:`forget`), as rounds of no complaints that load
        them: as they were saved, so that a restart searches what no restart would."""
        if UNKNOWN_BLOCK not in rounds:
            return {}
        if self._known_blocks is None:
            self._known_blocks = set(self._store.blocks())
        (_, complaints, _), _ = rounds[UNKNOWN_BLOCK]
        scopes = {complaint.scope for complaint in complaints}
        oldest_ms = complaints[0].event_ms
        searched = {}
        for block in sorted(self._known_blocks - set(rounds) - set(self._restored_since)):
            if block != UNKNOWN_BLOCK and any(in_scope(block, scope) for scope in scopes):
                seeds = self._seeds(block, oldest_ms, saved_only=True)
                searched[block] = ((seeds, [], self._newest(block, 0)), [])
        return searched

    def _known_report(self, enriched: EnrichedComplaint, lead: Lead) -> MatterReport:
        """The report of a complaint already counted in ``lead`` (a replay or redelivery): it keeps
        that matter, whatever the index would say now, and leaves the index alone."""
        return report_of(enriched, complaint_features(enriched, self._config), counted_in(lead), self._weights)

    def build_leads(self, reports: Sequence[MatterReport]) -> List[Lead]:
        """One new lead version per matter touched, merged into its stored lead (``BuildLeads``)."""
        return self._build_leads(reports)[0]

    def _build_leads(self, reports: Sequence[MatterReport]) -> Tuple[List[Lead], List[DeadLetter]]:
        """:meth:`build_leads`, and the dead letters of the reports of a matter whose merge raised."""
        if not reports:
            return [], []
        by_cluster: Dict[str, List[MatterReport]] = {}
        for report in reports:
            by_cluster.setdefault(report.enriched.cluster_id, []).append(report)
        stored = self._store.get_many([lead_id_for(cluster_id) for cluster_id in by_cluster])
        leads, dead = [], []
        for cluster_id, matter_reports in by_cluster.items():
            previous = stored.get(lead_id_for(cluster_id))
            try:
                merged = merge_into_lead(previous, matter_reports, self._weights)
            except Exception as error:  # noqa: BLE001 - one matter must not stop the stream
                dead.extend(internal_error(BUILD_LEADS_STAGE, error, complaint)
                            for complaint in distinct_complaints(matter_reports))
                continue
            if merged.changed:
                leads.append(merged.lead)
        return leads, dead

    def run(self, events: Sequence[RawEvent]) -> RoundOutputs:
        return self.finish(*self.enrich(events), events)

    def finish(self, enriched: Sequence[EnrichedComplaint], dead: List[DeadLetter],
               events: Sequence[RawEvent] = ()) -> RoundOutputs:
        """The keyed stages over a round's enriched complaints (``events``: the round's raw events,
        whose bytes a dead letter of a reused id or of a record a stage raised on carries).

        A record that made a stage raise is a dead letter ``internal_error``
        (:mod:`envleads.failures`), counted per stage in :attr:`internal_errors`; the round goes on.
        """
        reports, reused, state = self.assign(enriched, events)
        leads, unbuilt = self._build_leads(reports)
        dead_letters = with_originals(list(dead) + reused + unbuilt, events)
        self.internal_errors.update(count_internal_errors(dead_letters))
        return RoundOutputs(reports, leads, dead_letters, state)


def assign_key_rounds(indexes: Dict[str, MatterIndex],
                      rounds: Dict[str, Tuple[Tuple[List[list], List[Lead], int], List[KeyedComplaint], int]],
                      config, checkpoint: bool = False):
    """One round of some blocking keys over their ``indexes`` (created on first use): per key,
    load the saved matter rows and restore the seed leads live as of the time given, assign the complaints
    (:class:`~envleads.keyed_core.KeyedComplaint`, in event order), expire as of the key's
    newest event; the city keys first, then the ``"unknown"`` key's complaints across the city
    keys of their scope (:func:`~envleads.keyed_core.assign_in_key`), so ``indexes`` must hold
    every key (a key with no complaint of its own may be in ``rounds`` only to be loaded). The
    same in the stream process and in the :class:`KeyedAssigner`'s. Returns ``{key: ({complaint
    id: ``keyed_core.Joined``}, changed matters as
    (cluster id, JSON row or None when dropped) when ``checkpoint``)}``, also for a key whose
    matters only complaints of another key joined; a complaint whose assignment raised has
    :class:`~envleads.failures.Raised` instead of its triple (matching reads only, so the other
    complaints are assigned as without it)."""
    results, touched = {}, set()
    for block in sorted(rounds, key=lambda key: key == UNKNOWN_BLOCK):  # the unknown key last
        (rows, seeds, as_of_ms), complaints, newest_ms = rounds[block]
        index = indexes.get(block)
        if index is None:
            index = indexes[block] = MatterIndex(config, block)
        index.load_changes(rows)
        seed_key(index, seeds, as_of_ms)
        assigned = {}
        for complaint in complaints:
            try:
                holder, assignment = assign_in_key(indexes, block, complaint)
            except Exception as error:  # noqa: BLE001 - dead-lettered by the engine; the key goes on
                assigned[complaint.complaint_id] = raised(error)
                continue
            touched.add(holder)
            assigned[complaint.complaint_id] = joined_by(complaint.complaint_id, assignment)
        results[block] = (assigned, rounds[block][2], [])
    for block in touched - set(results):
        results[block] = ({}, None, [])
    for block, (assigned, newest_ms, changes) in list(results.items()):
        # expired as of each key's newest event, after the unplaced complaints searched the keys
        # (a key only an unplaced complaint touched: its clock did not move)
        if newest_ms is not None:
            expire_key(indexes[block], newest_ms)
        results[block] = (assigned, changes)
        row_changes = take_row_changes(indexes[block])
        if checkpoint:
            changes.extend(row_changes)
    return results
