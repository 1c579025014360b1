"""The true streaming form of repeat detection and lead building: keyed state, element by element.

``DeduplicatePetitionsStreaming`` and ``BuildLeadsStreaming`` give the same records as the bounded
``DeduplicatePetitions`` and ``BuildLeads`` in ``transforms.py``, but element by element, in the
global window, with the repeat index and the current lead kept in keyed state.
:class:`ComplaintsToLeadsStreaming` wires them after the shared stateless stages; it is what a
Flink or Dataflow job runs over Kafka. The local Python runners cannot run it behind an unbounded
source (``rounds/`` runs bounded rounds instead); the DirectRunner in streaming mode runs it over
``TestStream`` in the tests, and Prism from Kafka to Kafka (``beam_stream.py``).

Event time is the complaint's ``received_at_ms`` throughout: the index, the leads and expiry use
it, and :class:`ComplaintsToLeadsStreaming` re-stamps elements with it before the stateful stages.

The stateful DoFns are adapters over the keyed core (:mod:`envleads.keyed_core`), whose steps and
policies (seed a key, assign with the redelivery and unknown-key policy, expire a key as of its
newest event, start a lead at its matter's first environmental report) the rounds engine runs too;
here the state lives in Beam state cells. No timer: a key's matters expire as the key's own events
move its clock, not by the runner's watermark, and each expired matter is sent to the lead stage
(:class:`MatterExpired`), whose lead state lives exactly as long as the matter. Repeat detection
runs under one state key (:data:`REPEAT_SCOPE`) holding every blocking key's index, because a
complaint of no known city is assigned across the city indexes of its scope (a stateful DoFn
reaches its own key's state only): its parallelism is one, which national intake (about one
complaint a second, well under a millisecond of assignment each) allows; the stages before it and
lead building (keyed by matter) stay parallel. With the same deliveries the job gives the rounds
engine's matters and lead versions (``tests/test_engine_equivalence.py``); what still differs
(order within a round, the order of a lead's types, ``duplicate_id_conflict``) is in
``docs/operations.md``.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

import apache_beam as beam
from apache_beam.coders import Coder, FastPrimitivesCoder, StrUtf8Coder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, AsList, AsMultiMap
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec
from apache_beam.transforms.window import TimestampedValue

from envleads.keyed_core import (KeyedComplaint, assign_in_key, expire_key, joined_by, keyed_complaint,
                                 matter_row_json, merge_into_lead, newest_event_ms, report_of, seed_key,
                                 take_row_changes)
from envleads.leads import (MatterReport, block_of_complaint, block_of_lead, lead_from_avro_dict, lead_id_for,
                            lead_to_wire_record)
from envleads.pipelines.options import StageSettings
from envleads.pipelines.transforms import (BUILD_LEADS_STAGE, DEAD_LETTER, DEDUPLICATE_STAGE, ENCODE_LEADS_STAGE,
                                           MAIN, ClassifyPollutionType, DecodeComplaints, EncodeEnriched, InFlight,
                                           ResolveRegion, SegmentText, failed, set_up_repeat_stage)
from envleads.records import Complaint, Lead
from envleads.repeats import UNKNOWN_BLOCK, KeyIndexes, MatterIndex, in_scope


# ------------------------------------------------------------------------------ adapter helpers
# The repeat stage's output of matters that left their index (for the lead stage).
EXPIRED = "expired"


def _prior_or_none(pipeline, prior_leads):
    """The prior leads, or an empty PCollection when the job has none."""
    return prior_leads if prior_leads is not None else pipeline | "NoPriorLeads" >> beam.Create([])


def _in_flight(element: Any, keep_original: bool) -> InFlight:
    """An element of a stateful stage as ``(record, original bytes)``: as it comes when its event's
    bytes travel with it (``keep_original``), else with none, so one code path serves both."""
    return element if keep_original else (element, b"")


def matter_of_report(report: MatterReport) -> str:
    """The key of a report's lead state: its matter (``cluster_id``)."""
    return report.enriched.cluster_id


class _KeyInFlightFn(beam.DoFn):
    """Keys an element of a stateful stage, ``(key, element)``, the element as it came (in flight
    with ``keep_original``). A record that makes the keying raise is a dead letter ``internal_error``
    of ``STAGE``, with its bytes, as in the stage itself: one record must not stop the stream."""

    STAGE = ""

    def __init__(self, keep_original: bool = False):
        self._keep_original = keep_original

    def _key(self, record: Any) -> str:
        raise NotImplementedError

    def _complaint(self, record: Any) -> Complaint:
        raise NotImplementedError

    def _keyed(self, key: str, element: Any) -> Tuple[str, Any]:
        return key, element

    def process(self, element: Any) -> Iterable[Any]:
        record, original = _in_flight(element, self._keep_original)
        try:
            key = self._key(record)
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            yield failed(self.STAGE, error, self._complaint(record), original)
            return
        yield self._keyed(key, element)


class _KeyByBlockStreamingFn(_KeyInFlightFn):
    """An enriched complaint under the repeat stage's one key, with its blocking key
    (``block_of_complaint``): ``(REPEAT_SCOPE, (block, element))``."""

    STAGE = DEDUPLICATE_STAGE

    def _key(self, enriched) -> str:
        return block_of_complaint(enriched)

    def _complaint(self, enriched) -> Complaint:
        return enriched.complaint

    def _keyed(self, key: str, element: Any) -> Tuple[str, Any]:
        return REPEAT_SCOPE, (key, element)


class _KeyByMatterStreamingFn(_KeyInFlightFn):
    """A report keyed by its matter (``matter_of_report``)."""

    STAGE = BUILD_LEADS_STAGE

    def _key(self, report) -> str:
        return matter_of_report(report)

    def _complaint(self, report) -> Complaint:
        return report.enriched.complaint


# ------------------------------------------------------------------------------------- state coders
class LeadStateCoder(Coder):
    """A lead as its Avro record of the ``leads`` subject (schema id framed), as on the lead topic.

    State written by one version of the job is read by the next through Avro schema resolution,
    the same evolution path as the compacted topic.
    """

    def encode(self, value: Lead) -> bytes:
        from envleads import schemas

        return schemas.encode(schemas.LEADS, lead_to_wire_record(value))

    def decode(self, encoded: bytes) -> Lead:
        from envleads import schemas

        return lead_from_avro_dict(schemas.decode(schemas.LEADS, encoded))

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self):
        return Lead


# ----------------------------------------------------------------------------------- repeats (state)
# The one key of the streaming repeat stage: every blocking key's index lives in its state, so that a
# complaint of no known city is assigned across the city indexes of its scope, as in the rounds engine
# (state keyed by city could not reach another city's index).
REPEAT_SCOPE = "all"
# The changelog is compacted (cleared and rewritten with the live rows) once it holds more than twice
# the live rows and this many more: amortised, each change is written about twice at most.
COMPACT_SLACK = 64
# The token of an instance whose indexes must be rebuilt from state before use (never one in state).
_STALE = object()


def _append_compacting(bag, entries: Sequence[Any], logged: int, live: int,
                       live_entries: Callable[[], Iterable[Any]]) -> int:
    """Appends ``entries`` to a changelog ``bag`` that holds ``logged`` entries; once it holds more
    than twice the ``live`` ones (+ :data:`COMPACT_SLACK`), rewrites it with ``live_entries()``, so
    each change is written about twice at most. Returns how many entries the bag holds."""
    for entry in entries:
        bag.add(entry)
    logged += len(entries)
    if logged > 2 * live + COMPACT_SLACK:
        bag.clear()
        for entry in live_entries():
            bag.add(entry)
        logged = live
    return logged


class _CachedIndexes:
    """What an :class:`_AssignMattersStreamingFn` instance keeps between elements, valid while
    ``token`` is the token in state: the parsed indexes of every blocking key, the keys whose prior
    leads were restored, each key's newest event time, and how many entries the changelog and the
    bag of newest times hold in state."""

    def __init__(self, token: Any = _STALE):
        self.token = token
        self.indexes: KeyIndexes = KeyIndexes()
        self.seeded: Set[str] = set()
        self.newest: Dict[str, int] = {}
        self.logged = 0
        self.newest_logged = 0


class MatterExpired(NamedTuple):
    """What the repeat stage sends the lead stage (keyed by ``cluster_id``) when a matter leaves
    its index: the lead's state goes with it, once the lead holds the matter's last report
    (``last_seen_ms``; a runner may deliver the marker before a report emitted earlier). Not a raw
    record: it settles no offset."""

    cluster_id: str
    last_seen_ms: int


class _AssignMattersStreamingFn(beam.DoFn):
    """Repeat detection under one key (:data:`REPEAT_SCOPE`) holding every blocking key's
    :class:`MatterIndex` in a :class:`KeyIndexes`: each complaint is assigned by the keyed core's
    :func:`assign_in_key` exactly as the rounds engine assigns it, a complaint of no known city
    across the ``"unknown"`` index and the city indexes of its scope; then its key's matters
    expire as of the key's newest event time (:func:`newest_event_ms`, :func:`expire_key`), as
    in the rounds engine, each one sent as :class:`MatterExpired` to output ``expired``. No timer:
    expiry follows the events, not the runner's watermark.

    The parsed indexes stay in the DoFn instance between elements (and in the process, for a new
    instance), valid while the token in state is the one written with them; nothing is parsed or
    serialised whole per element. State (one key, global window):
      ``matter_changes``: the changelog, a bag of ``(block, cluster_id, JSON row or None when
        dropped)`` (``MatterIndex.take_changes``, ``matter_rows``), appended per element and
        compacted (cleared, rewritten with the live rows) once it holds more than twice the live
        rows (+ :data:`COMPACT_SLACK`).
      ``key_newest``: ``(block, event ms)`` appended when a key's newest event time advances (the
        largest per key counts), compacted likewise.
      ``seeded_blocks``: the blocking keys whose prior leads were restored, once per key, so that a
        matter that expired is not brought back from them.
      ``token``: a fresh random value written with every update. When it is not the instance's (a
        retried bundle, another worker, a restart) the instance rebuilds the indexes from the
        changelog (``MatterIndex.load_changes``), as the rounds engine restarts from its checkpoint.
    State is bounded by the matters of each key's last window, however long the stream runs.
    With ``keep_original``, elements and reports are in flight (``(record, original bytes)``): the
    bytes pass through with the complaint, into its report or its dead letter, never into state.
    """

    # the indexes an instance of this process wrote last: a runner that makes a new instance per
    # bundle (the DirectRunner) takes them over when the token in state is theirs
    _latest: Optional[_CachedIndexes] = None

    TOKEN_STATE = ReadModifyWriteStateSpec("token", StrUtf8Coder())
    CHANGES_STATE = BagStateSpec("matter_changes", FastPrimitivesCoder())
    SEEDED_STATE = BagStateSpec("seeded_blocks", StrUtf8Coder())
    NEWEST_STATE = BagStateSpec("key_newest", FastPrimitivesCoder())

    def __init__(self, keep_original: bool = False):
        self._keep_original = keep_original

    def setup(self):
        set_up_repeat_stage(self)
        self._expired = Metrics.counter("DeduplicatePetitions", "expired_matters")
        self._rebuilds = Metrics.counter("DeduplicatePetitions", "index_rebuilds")
        self._compactions = Metrics.counter("DeduplicatePetitions", "changelog_compactions")
        self._cache = _CachedIndexes()
        self._prior_blocks: Optional[Set[str]] = None

    # -- the instance's indexes, as the state says -------------------------------------------------
    def _current(self, token_state, changes_state, seeded_state, newest_state) -> _CachedIndexes:
        """The indexes as the state holds them, marked stale until :meth:`_save` has written their
        next version (so that a bundle that stops half-way leaves no index taken for current)."""
        token = token_state.read()
        if token != self._cache.token:
            latest = _AssignMattersStreamingFn._latest
            if token is not None and latest is not None and latest.token == token:
                self._cache = latest  # another instance of this process wrote it (a runner's new instance)
            else:
                self._cache = self._rebuilt(token, changes_state.read(), seeded_state.read(), newest_state.read())
        self._cache.token = _STALE
        return self._cache

    def _rebuilt(self, token: Optional[str], changes: Iterable[tuple], seeded: Iterable[str],
                 newest: Iterable[tuple] = ()) -> _CachedIndexes:
        """The indexes the changelog ``changes`` describes (the last row of a matter wins), and
        each key's newest event time (the largest logged)."""
        cache = _CachedIndexes(token)
        rows: Dict[str, Dict[str, str]] = {}
        for block, cluster_id, row in changes:
            cache.logged += 1
            live = rows.setdefault(block, {})
            if row is None:
                live.pop(cluster_id, None)
            else:
                live[cluster_id] = row
        for block, live in rows.items():
            index = MatterIndex(self._config, block)
            index.load_changes(json.loads(row) for row in live.values())
            cache.indexes[block] = index
        cache.seeded.update(seeded)
        for block, newest_ms in newest:
            cache.newest_logged += 1
            newest_event_ms(cache.newest, block, newest_ms)
        if token is not None:
            self._rebuilds.inc()
        return cache

    def _save(self, cache: _CachedIndexes, blocks: Iterable[str], seeded: Sequence[str], advanced: Optional[str],
              token_state, changes_state, seeded_state, newest_state) -> None:
        """Appends the changes of ``blocks``' indexes to the changelog and the newest event time of
        the key that ``advanced`` it (compacting either when due), notes the keys just ``seeded``
        and writes a new token."""
        for block in seeded:
            seeded_state.add(block)
        changes = [(block, cluster_id, row_json) for block in sorted(set(blocks))
                   for cluster_id, row_json in take_row_changes(cache.indexes[block])]
        logged = _append_compacting(changes_state, changes, cache.logged,
                                    sum(len(index) for index in cache.indexes.values()),
                                    lambda: ((block, row[0], matter_row_json(row))
                                             for block, index in cache.indexes.items()
                                             for row in index.to_state()["matters"]))
        if logged < cache.logged + len(changes):
            self._compactions.inc()
        cache.logged = logged
        if advanced is not None:
            cache.newest_logged = _append_compacting(newest_state, [(advanced, cache.newest[advanced])],
                                                     cache.newest_logged, len(cache.newest),
                                                     lambda: sorted(cache.newest.items()))
        token = uuid.uuid4().hex
        token_state.write(token)
        cache.token = token
        _AssignMattersStreamingFn._latest = cache

    def _seed(self, cache: _CachedIndexes, block: str, complaint: KeyedComplaint, prior_by_block,
              prior_blocks: Iterable[str]) -> List[str]:
        """Restores the prior leads live as of the complaint of the keys it reaches whose leads
        were not restored yet: its own key, and for a complaint of no known city every key of its
        scope with prior leads (as the rounds engine loads them from its store). Returns the keys
        restored."""
        wanted = [block]
        if block == UNKNOWN_BLOCK:
            if self._prior_blocks is None:  # the side input is fixed for the job
                self._prior_blocks = set(prior_blocks)
            wanted += sorted(key for key in self._prior_blocks - cache.seeded if in_scope(key, complaint.scope))
        seeded = []
        for key in wanted:
            if key in cache.seeded:
                continue
            restored, unrestorable = seed_key(self._index(cache, key), prior_by_block[key], complaint.event_ms)
            self._restored.inc(restored)
            self._unrestorable.inc(unrestorable)
            cache.seeded.add(key)
            seeded.append(key)
        return seeded

    def _index(self, cache: _CachedIndexes, block: str) -> MatterIndex:
        """The index of ``block``, created empty when the key has none (a changelog holds no row of
        a key whose matters all expired)."""
        index = cache.indexes.get(block)
        if index is None:
            index = cache.indexes[block] = MatterIndex(self._config, block)
        return index

    # -- elements ---------------------------------------------------------------------------------
    def process(self, keyed: Tuple[str, Any], prior_by_block, prior_blocks,
                token_state=beam.DoFn.StateParam(TOKEN_STATE),
                changes_state=beam.DoFn.StateParam(CHANGES_STATE),
                seeded_state=beam.DoFn.StateParam(SEEDED_STATE),
                newest_state=beam.DoFn.StateParam(NEWEST_STATE)) -> Iterable[Any]:
        _, (block, element) = keyed
        enriched, original = _in_flight(element, self._keep_original)
        cache = self._current(token_state, changes_state, seeded_state, newest_state)
        try:
            complaint = keyed_complaint(enriched, block, self._config)
            seeded = self._seed(cache, block, complaint, prior_by_block, prior_blocks)
            self._index(cache, block)
            holder, assignment = assign_in_key(cache.indexes, block, complaint)
            report = report_of(enriched, complaint.features, joined_by(complaint.complaint_id, assignment),
                               self._weights)
            before_ms = cache.newest.get(block)
            newest_ms = newest_event_ms(cache.newest, block, complaint.event_ms)
            expired = expire_key(cache.indexes[block], newest_ms)
        except Exception as error:  # noqa: BLE001 - one record must not stop the stream
            # the state is as before this complaint, the indexes may not be (they stay stale): rebuilt
            # from the state at the next element, the stage goes on as if the complaint had not come
            yield failed(DEDUPLICATE_STAGE, error, enriched.complaint, original)
            return
        (self._matters if assignment.is_new_matter else self._repeats).inc()
        self._expired.inc(len(expired))
        self._save(cache, seeded + [holder, block], seeded, block if newest_ms != before_ms else None,
                   token_state, changes_state, seeded_state, newest_state)
        yield (report, original) if self._keep_original else report
        for cluster_id, last_seen_ms in expired:
            yield TaggedOutput(EXPIRED, (cluster_id, MatterExpired(cluster_id, last_seen_ms)))


class DeduplicatePetitionsStreaming(beam.PTransform):
    """Gives each complaint its matter (``cluster_id``) and the matter's first report, as it arrives.

    The streaming form of ``DeduplicatePetitions``, with the same ``MatterReport`` output. Each
    complaint has its blocking key (city-level code of the region, else of the intake jurisdiction,
    else "unknown") and is assigned, one by one in arrival order, against the matter indexes of
    every blocking key, kept under one state key (:data:`REPEAT_SCOPE`) in the global window: a
    complaint of a city against its city's index, one of no known city across the ``"unknown"``
    index and the city indexes of its scope (:func:`~envleads.keyed_core.assign_in_key`, as in
    the rounds engine). Nothing is windowed or dropped: a late complaint (behind the watermark) is
    assigned like any other and joins its matter as long as the matter has not expired. A matter
    expires when its key's newest event time passes its last report + the repeat window (90 days,
    ``data/repeats.json``), as in the rounds engine: the events decide, not the runner's
    watermark. A later report of it starts a new matter.

    Args:
        prior_leads: optional ``Lead`` records (the compacted lead topic read at start-up). The
            first time a blocking key is reached its index is seeded with the key's prior leads, so
            a restarted job attaches a repeat to the existing lead. Read as a side input, so it must
            be bounded (or windowed into the global window with a trigger).
        keep_original: input and main output are in flight, ``(record, original bytes)``
            (``transforms.InFlight``), and a dead letter carries its complaint's bytes.

    Delivery: a redelivered complaint (same id) gets its matter again, is not counted again by the
    index or the lead, and a matter's first report stays its first report (``duplicate_of`` None).
    Emitted in arrival order, with the input element's timestamp. Returns ``{ok, dead_letter,
    expired}``: ``expired`` holds ``(cluster_id, MatterExpired)`` per matter that left an index,
    for :class:`BuildLeadsStreaming` to drop its lead's state; a complaint whose keying or
    assignment raises is a dead letter ``internal_error`` (of ``DeduplicatePetitions``) and leaves
    the state as it was.
    """

    def __init__(self, prior_leads=None, keep_original: bool = False):
        super().__init__()
        self._prior_leads = prior_leads
        self._keep_original = keep_original

    def expand(self, enriched):
        keep = self._keep_original
        prior = _prior_or_none(enriched.pipeline, self._prior_leads)
        prior_by_block = prior | "KeyPriorByBlock" >> beam.Map(lambda lead: (block_of_lead(lead), lead))
        keyed = (enriched
                 | "KeyByBlock" >> beam.ParDo(_KeyByBlockStreamingFn(keep)).with_output_types(Tuple[str, Any])
                 .with_outputs(DEAD_LETTER, main=MAIN))
        prior_blocks = prior_by_block | "PriorBlocks" >> beam.Keys()
        assigned = (keyed[MAIN]
                    | "AssignMatters" >> beam.ParDo(_AssignMattersStreamingFn(keep), AsMultiMap(prior_by_block),
                                                    AsList(prior_blocks))
                    .with_outputs(DEAD_LETTER, EXPIRED, main=MAIN))
        return {MAIN: assigned[MAIN], EXPIRED: assigned[EXPIRED],
                DEAD_LETTER: (keyed[DEAD_LETTER], assigned[DEAD_LETTER]) | "MergeDeadLetters" >> beam.Flatten()}


# ------------------------------------------------------------------------------------- leads (state)
class _MergeLeadStreamingFn(beam.DoFn):
    """Per matter (``cluster_id``): the current lead in state, merged with each report as it arrives.

    State (per key, global window): ``lead``, the matter's current lead (Avro record,
    :class:`LeadStateCoder`); when empty, the prior lead of the same ``lead_id`` (side input) is
    the starting point. A lead starts at its matter's first environmental report
    (:func:`merge_into_lead`): nothing is kept for a matter without one. A
    :class:`MatterExpired` from the repeat stage (its matter left the index) clears the state, so
    it lives exactly as long as the matter; no timer. Beam promises no order across a shuffle, so a
    marker may come before a report the repeat stage emitted earlier: when the lead does not yet
    hold the matter's last report, ``expire_after`` keeps that report's time and the state is
    cleared once the lead reaches it.
    With ``keep_original``, reports are in flight (``(report, original bytes)``): the bytes go into
    the report's dead letter, if any, never into state.
    With ``encode``, a new lead version is emitted encoded, and one that fails to encode is a dead
    letter of the report that made it. With ``sourced``, every report that is not a dead letter
    gives one output, ``(new version or None, the report's KafkaCoordinates)``, so a sink can tell
    that the report's lead branch is written (``kafka_edge/beam_commit.py``); a
    :class:`MatterExpired` gives none (it is no raw record).
    """

    LEAD_STATE = ReadModifyWriteStateSpec("lead", LeadStateCoder())
    EXPIRE_AFTER_STATE = ReadModifyWriteStateSpec("expire_after", VarIntCoder())

    def __init__(self, encode: Optional[Callable[[Lead], Any]] = None, keep_original: bool = False,
                 sourced: bool = False):
        self._encode = encode
        self._keep_original = keep_original
        self._sourced = sourced

    def setup(self):
        from envleads.scoring import load_scoring_weights

        self._weights = load_scoring_weights()
        self._emitted = Metrics.counter("BuildLeads", "leads_emitted")
        self._updated = Metrics.counter("BuildLeads", "leads_updated")
        self._expired = Metrics.counter("BuildLeads", "leads_expired")

    def _output(self, version: Any, report: MatterReport) -> Iterable[Any]:
        """What a report gives: its new lead version (``version``; None: none), with the report's
        source when ``sourced``."""
        if self._sourced:
            yield version, report.enriched.complaint.source
        elif version is not None:
            yield version

    def _encoded(self, lead: Optional[Lead], previous: Optional[Lead]) -> Any:
        """What a new version of the lead is emitted as; computed before the state changes, so that
        a lead that fails to encode leaves the state as it was, as one that fails to merge does."""
        if lead is None or lead is previous or self._encode is None:
            return lead
        return self._encode(lead)

    def _expire(self, lead: Optional[Lead], last_seen_ms: Optional[int], lead_state, expire_after_state) -> None:
        """Clears the matter's state when its matter expired (``last_seen_ms``: the matter's last
        report) and the lead holds that report; otherwise keeps the time to clear it then."""
        if last_seen_ms is None:
            return
        if lead is not None and lead.last_seen_ms < last_seen_ms:
            expire_after_state.write(last_seen_ms)  # a report of the matter is still on its way
            return
        if lead is not None:
            self._expired.inc()
        lead_state.clear()
        expire_after_state.clear()

    def process(self, keyed: Tuple[str, Any], prior_by_id,
                lead_state=beam.DoFn.StateParam(LEAD_STATE),
                expire_after_state=beam.DoFn.StateParam(EXPIRE_AFTER_STATE)) -> Iterable[Any]:
        cluster_id, element = keyed
        if isinstance(element, MatterExpired):
            self._expire(lead_state.read(), element.last_seen_ms, lead_state, expire_after_state)
            return
        report, original = _in_flight(element, self._keep_original)
        previous = lead_state.read()
        if previous is None:
            previous = prior_by_id.get(lead_id_for(cluster_id))
        stage = BUILD_LEADS_STAGE
        try:
            merged = merge_into_lead(previous, [report], self._weights)
            stage = ENCODE_LEADS_STAGE
            encoded = self._encoded(merged.lead, previous)
        except Exception as error:  # noqa: BLE001 - one matter must not stop the stream
            # the lead in state is unchanged: this report alone is a dead letter (the bounded form,
            # merging a matter at once, dead-letters all of them)
            yield failed(stage, error, report.enriched.complaint, original)
            return
        if merged.changed:
            lead_state.write(merged.lead)
            (self._updated if previous else self._emitted).inc()
            self._expire(merged.lead, expire_after_state.read(), lead_state, expire_after_state)
            yield from self._output(encoded, report)
        else:
            yield from self._output(None, report)


class BuildLeadsStreaming(beam.PTransform):
    """One scored lead per matter, re-emitted whole each time a report of the matter arrives.

    The streaming form of ``BuildLeads``: compacted-topic semantics, the last lead per ``lead_id``
    is the current one. Each report is merged into the matter's current lead, scored as of the
    lead's newest report (as in the rounds engine); a report already counted (a redelivery)
    changes nothing and emits nothing. A lead starts at its matter's first environmental report;
    the matter's reports before it are in no lead (a matter whose reports are all
    non-environmental has none). The lead leaves state with its matter: when repeat detection
    expires the matter, its ``expired`` output says so.

    Args:
        prior_leads: optional ``Lead`` records (the compacted lead topic at start-up); a matter
            without a lead in state continues from its prior lead. A bounded side input.
        encode: what the main output holds, from each new lead version (default: the lead);
            encoded here, so that a version that fails to encode is the dead letter ``EncodeLeads``
            of the report that made it (the bounded form's: of each report of the matter).
        keep_original: reports come in flight, ``(report, original bytes)``
            (``transforms.InFlight``), and a dead letter carries its report's bytes.
        sourced: the main output is one ``(new version or None, the report's KafkaCoordinates)``
            per report that is not a dead letter (what offset commits need to know).
        expired: optional, the ``expired`` output of :class:`DeduplicatePetitionsStreaming`
            (``(cluster_id, MatterExpired)``): each clears its matter's lead state (without it,
            leads stay in state).

    Returns ``{ok, dead_letter}``: a report whose keying or merge (or encoding) raises is a dead
    letter ``internal_error`` (of ``BuildLeads``, ``EncodeLeads``) and leaves the lead in state as it was.
    """

    def __init__(self, prior_leads=None, encode: Optional[Callable[[Lead], Any]] = None,
                 keep_original: bool = False, sourced: bool = False, expired=None):
        super().__init__()
        self._prior_leads = prior_leads
        self._encode = encode
        self._keep_original = keep_original
        self._sourced = sourced
        self._expired = expired

    def expand(self, reports):
        keep = self._keep_original
        prior = _prior_or_none(reports.pipeline, self._prior_leads)
        prior_by_id = prior | "KeyPriorById" >> beam.Map(lambda lead: (lead.lead_id, lead))
        keyed = (reports
                 | "KeyByMatter" >> beam.ParDo(_KeyByMatterStreamingFn(keep)).with_output_types(Tuple[str, Any])
                 .with_outputs(DEAD_LETTER, main=MAIN))
        to_merge = keyed[MAIN]
        if self._expired is not None:
            to_merge = (to_merge, self._expired) | "WithExpiredMatters" >> beam.Flatten()
        merged = (to_merge
                  | "MergeLead" >> beam.ParDo(_MergeLeadStreamingFn(self._encode, keep, self._sourced),
                                              AsDict(prior_by_id))
                  .with_outputs(DEAD_LETTER, main=MAIN))
        return {MAIN: merged[MAIN],
                DEAD_LETTER: (keyed[DEAD_LETTER], merged[DEAD_LETTER]) | "MergeDeadLetters" >> beam.Flatten()}


# ----------------------------------------------------------------------------------------- whole
def _stamp_with_event_time(in_flight: InFlight) -> TimestampedValue:
    """An enriched complaint in flight, stamped with its ``received_at`` (the stateful stages' event time)."""
    enriched, _ = in_flight
    return TimestampedValue(in_flight, enriched.complaint.received_at_ms / 1000.0)


def _without_original(in_flight: InFlight) -> Any:
    """The record alone, as it leaves the job: its event's bytes are needed no further."""
    record, _ = in_flight
    return record


class _WithSource:
    """An enriched report's encoding, paired with where its event was read: ``(encoded, KafkaCoordinates)``."""

    def __init__(self, encode: Optional[Callable]):
        self._encode = encode

    def __call__(self, report: MatterReport) -> Tuple[Any, Any]:
        encoded = self._encode(report) if self._encode is not None else report
        return encoded, report.enriched.complaint.source


class ComplaintsToLeadsStreaming(beam.PTransform):
    """The whole path as one streaming job: raw events to enriched complaints, leads and dead letters.

    The stateless stages are those of ``ComplaintsToLeads``; repeat detection and lead building are
    the stateful forms above. Complaints are re-stamped with their ``received_at`` before repeat
    detection (classification batches carry the end of the global window as their timestamp).
    Returns a dict with ``enriched`` (``MatterReport``), ``leads`` (each new version of a lead,
    to be written to the compacted lead topic keyed by ``lead_id``) and ``dead_letters``.
    Delivery is what the runner gives: with checkpointed state and transactional or idempotent
    sinks, each lead version is written once; on replay a lead version may repeat, never conflict.

    Every dead letter carries its event's original bytes, those of a later stage too: the stream
    has no side input of the whole input (the bounded form's ``AttachOriginals``), so each record
    travels from decode to the last stage beside its bytes (``keep_original``), which the
    stateful stages hand on and never keep in state; they are dropped as the record leaves.

    With ``sourced`` (offset commits after the sinks wrote, ``kafka_edge/beam_commit.py``), each
    output says which raw record it settles: ``enriched`` holds ``(encoded, KafkaCoordinates)``,
    ``leads`` one ``(new version or None, KafkaCoordinates)`` per report, and a dead letter has
    its ``source``.
    """

    def __init__(self, settings: StageSettings, prior_leads=None, encode_enriched: Optional[Callable] = None,
                 encode_lead: Optional[Callable[[Lead], Any]] = None, sourced: bool = False):
        """``encode_enriched``, ``encode_lead``: the sink's encodings, applied here so that a record
        that fails to encode is a dead letter with its bytes (``enriched``, ``leads``: encoded)."""
        super().__init__()
        self._settings = settings
        self._prior_leads = prior_leads
        self._encode_enriched = encode_enriched
        self._encode_lead = encode_lead
        self._sourced = sourced

    def expand(self, events):
        decoded = events | "DecodeComplaints" >> DecodeComplaints(self._settings, keep_original=True)
        segmented = decoded[MAIN] | "SegmentText" >> SegmentText(keep_original=True)
        classified = segmented[MAIN] | "ClassifyPollutionType" >> ClassifyPollutionType(self._settings,
                                                                                         keep_original=True)
        resolved = classified[MAIN] | "ResolveRegion" >> ResolveRegion(keep_original=True)
        enriched = resolved[MAIN] | "AssignEventTime" >> beam.Map(_stamp_with_event_time)
        reports = enriched | "DeduplicatePetitions" >> DeduplicatePetitionsStreaming(self._prior_leads,
                                                                                     keep_original=True)
        leads = reports[MAIN] | "BuildLeads" >> BuildLeadsStreaming(self._prior_leads, self._encode_lead,
                                                                    keep_original=True, sourced=self._sourced,
                                                                    expired=reports[EXPIRED])
        failed_stages = [decoded, segmented, classified, resolved, reports, leads]
        written = reports[MAIN]
        encode_enriched = _WithSource(self._encode_enriched) if self._sourced else self._encode_enriched
        if encode_enriched is not None:
            encoded = reports[MAIN] | "EncodeEnriched" >> EncodeEnriched(encode_enriched, keep_original=True)
            failed_stages.append(encoded)
            written = encoded[MAIN]
        dead_letters = [stage[DEAD_LETTER] for stage in failed_stages] | "DeadLetters" >> beam.Flatten()
        return {"enriched": written | "DropOriginals" >> beam.Map(_without_original), "leads": leads[MAIN],
                "dead_letters": dead_letters}
