"""The rounds until interrupted (:func:`run_stream`): each round read from the raw topic, run
through the :class:`~envleads.pipelines.rounds.engine.LocalRoundEngine`, its outputs written and
acknowledged, then its offsets committed (at-least-once), under the group's writer fence; after a
Kafka error the session is rebuilt with :class:`Backoff` and the in-memory state dropped."""
from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from envleads.failures import count_internal_errors
from envleads.pipelines.heap import RoundCollector
from envleads.config import DEFAULT_ROUND_BYTES, DEFAULT_STREAM_GROUP
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.engine import LocalRoundEngine
from envleads.pipelines.rounds.outputs import Topics, output_records
from envleads.pipelines.rounds.pools import EnrichmentPool, KeyedAssigner
from envleads.pipelines.kafka_edge.session import KafkaSession, _check_broker_state, _kafka_errors, open_session
from envleads.pipelines.rounds.store import LeadStore
from envleads.records import RawEvent

LOG = logging.getLogger(__name__)



class Backoff:
    """Exponential backoff with jitter: ``initial_s`` doubling up to ``max_s``; reset on success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0):
        self.initial_s, self.max_s = initial_s, max_s
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        delay = min(self.max_s, self.initial_s * 2 ** (self.attempt - 1))
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


def run_stream(bootstrap_servers: str, topics: Topics, beam_args: Optional[List[str]] = None,
               group_id: str = DEFAULT_STREAM_GROUP, max_round_events: int = 2000, poll_wait_s: float = 2.0,
               stop_when_idle_s: Optional[float] = None, status_every_s: float = 10.0,
               max_rounds: Optional[int] = None, security=None,
               round_wait_s: Optional[float] = 0.25, enrich_workers: int = 0, backoff: Optional[Backoff] = None,
               offset_check_s: float = 5.0, on_ready: Optional[Callable[[], None]] = None,
               kafka_client: str = "auto", unplaced_worker: bool = False,
               wait_for_fence: bool = False,
               max_round_bytes: int = DEFAULT_ROUND_BYTES) -> Dict[str, int]:
    """Runs rounds until interrupted, or until no event arrived for ``stop_when_idle_s``.

    One writer per raw topic and group (:mod:`~envleads.pipelines.writer_fence`): before its first
    session the stream takes the group's writer fence through the broker, or raises
    :class:`~envleads.pipelines.writer_fence.WriterFenceHeld` (one line) while another stream holds
    it (``wait_for_fence``: waits for it instead); every round's outputs and offsets are written
    only after the broker confirmed the fence is still held.

    Args:
        max_round_events: events per round at most.
        max_round_bytes: event bytes per round at most (one larger event makes a round of its own):
            bounds a round's memory when events are large (about 2 MB per limit-size event).
        poll_wait_s: how long one poll for a round's first event waits.
        round_wait_s: a round closes this long after its first event arrived (bounds latency);
            None: only when ``max_round_events`` are read or the topic is quiet for 0.5 s.
        enrich_workers: processes running the stateless stages, overlapping the
            keyed stages of the previous round (0: in this process, no overlap).
        backoff: reconnection delays after a Kafka error (default 0.5 s doubling to 30 s).
        offset_check_s: while idle, how often to check that the broker still has the committed
            offsets (an in-memory broker restarted without its data has not).
        on_ready: called once, when the stages are set up and the first Kafka session is open
            (the moment from which latency is the steady state's).
        kafka_client: the raw topic's consumer and the producer: ``native``
            (confluent-kafka: a tenth of kafka-python's CPU per record), ``python`` (kafka-python),
            or ``auto`` (native when installed, the default).
        unplaced_worker: assign every key's complaints (repeat detection) in a process of its own
            (:class:`KeyedAssigner`). On in ``envleads stream`` and the benchmark; off here, so a
            library caller gets no process it did not ask for.
        wait_for_fence: wait while another stream of the group holds the writer fence (default:
            refuse to start).

    Returns totals: events read, rounds run, leads in the compacted view, Kafka retries, dead
    letters, and of them `internal_error` (records a stage raised on; each also a WARNING).
    """
    from envleads.pipelines.options import prepared_run

    _, settings = prepared_run(beam_args)
    options = _LoopOptions(bootstrap_servers, topics, group_id, security, kafka_client, wait_for_fence,
                           max_round_events, max_round_bytes, poll_wait_s, round_wait_s, stop_when_idle_s,
                           status_every_s, offset_check_s, max_rounds)
    loop = _RoundLoop(options, settings, backoff or Backoff(), enrich_workers, unplaced_worker,
                      on_ready)
    return loop.run()


class _LoopOptions(NamedTuple):
    """The settings of one :func:`run_stream` (see its arguments)."""

    bootstrap_servers: str
    topics: Topics
    group_id: str
    security: Any
    kafka_client: str
    wait_for_fence: bool
    max_round_events: int
    max_round_bytes: int
    poll_wait_s: float
    round_wait_s: Optional[float]
    stop_when_idle_s: Optional[float]
    status_every_s: float
    offset_check_s: float
    max_rounds: Optional[int]


class _RoundLoop:
    """The state of one :func:`run_stream`: the engine and its worker processes, the Kafka session
    and the writer fence, the round being enriched in the workers, the totals and the clocks."""

    def __init__(self, options: _LoopOptions, settings: StageSettings, backoff: Backoff, enrich_workers: int,
                 unplaced_worker: bool, on_ready: Optional[Callable[[], None]]):
        self.options, self.backoff, self.on_ready = options, backoff, on_ready
        self.store = LeadStore()
        self.pool = EnrichmentPool(settings, enrich_workers) if enrich_workers > 0 else None
        if self.pool is not None:
            try:
                self.pool.warm_up()
            except BaseException:
                self.pool.close()
                raise
        self.keyed_worker = KeyedAssigner() if unplaced_worker else None
        self.local = LocalRoundEngine(settings, self.store, keyed_worker=self.keyed_worker, checkpoint=True)
        if self.pool is None:
            self.local.enrich([])  # sets the stages up now rather than in the first round
        self.collector = RoundCollector()
        self.session: Optional[KafkaSession] = None
        self.fence = None  # one writer per group (WriterFence), kept for the whole run
        self.pending = None  # (events, enrichment handle, start) of the round being enriched
        self.totals = {"events": 0, "rounds": 0, "retries": 0, "dead_letters": 0, "internal_errors": 0}
        self.idle_since = self.last_status = self.last_offset_check = time.monotonic()
        self.errors = _kafka_errors()

    def run(self) -> Dict[str, int]:
        """Rounds until ``max_rounds``, an interrupt, or ``stop_when_idle_s`` without events; the totals."""
        max_rounds = self.options.max_rounds
        try:
            self.collector.start()  # setup done: what it built is frozen
            while max_rounds is None or self.totals["rounds"] < max_rounds:
                try:
                    if not self._step():
                        break
                except KeyboardInterrupt:
                    # Ctrl-C or SIGTERM: a round not yet committed is read again by the next run
                    LOG.info("interrupted; stopping after %d rounds", self.totals["rounds"])
                    self.totals["interrupted"] = 1
                    break
                except self.errors as error:
                    self._retry_after(error)
        finally:
            self._close()
        return self.totals

    def _step(self) -> bool:
        """Connects when needed, reads a round and finishes one (the one read, or with workers the
        one they enriched before); False when the stream has been idle for ``stop_when_idle_s``."""
        if self.session is None:
            self._connect()
        events = self._poll()
        started = time.monotonic()
        if self.pool is None:
            if events:
                self._finish_round(events, started, lambda: self.local.enrich(events))
                return True
        else:
            # this round is enriched in the workers while the previous one is finished here
            handle = self.pool.submit(events) if events else None
            if self.pending is not None:
                self._finish_round(self.pending[0], self.pending[2], self.pending[1].result)
            self.pending = (events, handle, started) if events else None
            if self.pending is not None:
                return True
        return self._while_idle()

    def _connect(self) -> None:
        """The writer fence first: refuses (WriterFenceHeld) or waits while another stream of the
        group holds it; after WriterFenceLost, takes it again or refuses. Then the session, and the
        store filled from the lead topic and the state changelog."""
        from envleads.pipelines.writer_fence import WriterFence

        options = self.options
        self.fence = self.fence or WriterFence(options.bootstrap_servers, options.topics.raw, options.group_id,
                                               options.security, wait=options.wait_for_fence)
        self.fence.acquire()
        self.session = open_session(options.kafka_client, options.bootstrap_servers, options.topics.raw,
                                    options.group_id, options.security)
        self.store.load_topics(options.bootstrap_servers, options.topics, options.security)
        # waiting for the fence and loading the store (2 s or more) are not idling
        self.idle_since = time.monotonic()
        self.backoff.reset()
        if self.on_ready is not None:
            self.on_ready()
            self.on_ready = None

    def _poll(self) -> List[RawEvent]:
        """The next round's events (none while a round is being enriched and ``max_rounds`` is set)."""
        options = self.options
        # with a round being enriched, only a short look for the next one
        wait = min(options.poll_wait_s, 0.05) if self.pending else options.poll_wait_s
        # with max_rounds, no round is read while one is still being enriched
        may_read = options.max_rounds is None or self.pending is None
        events = self.session.poll(options.max_round_events, wait, options.round_wait_s,
                                   options.max_round_bytes) if may_read else []
        if events:
            # a broker restarted without its data would hand out records at our old
            # positions of recreated topics: check before processing (one offset fetch)
            _check_broker_state(self.session)
        return events

    def _while_idle(self) -> bool:
        """False after ``stop_when_idle_s`` without events; now and then, checks that the broker
        still has the committed offsets."""
        now = time.monotonic()
        if self.options.stop_when_idle_s is not None and now - self.idle_since >= self.options.stop_when_idle_s:
            return False
        if self.session.committed and now - self.last_offset_check >= self.options.offset_check_s:
            self.last_offset_check = now
            _check_broker_state(self.session)
        return True

    def _finish_round(self, events: List[RawEvent], started: float, outputs_of) -> None:
        """The keyed stages over a round, its outputs sent and acknowledged, then its offsets
        committed (each while the fence is still held)."""
        local, store, session, totals = self.local, self.store, self.session, self.totals
        outputs = local.finish(*outputs_of(), events)
        before = len(outputs.dead_letters)
        records, written_leads = output_records(self.options.topics, outputs, events)
        local.internal_errors.update(count_internal_errors(outputs.dead_letters[before:]))
        self.fence.confirm()  # still the group's writer (else WriterFenceLost: nothing written)
        session.send(records)
        store.put_leads(written_leads)
        store.put_state(outputs.state)
        totals["dead_letters"] += len(outputs.dead_letters)
        totals["internal_errors"] = sum(local.internal_errors.values())
        self.fence.confirm()  # and still the writer when its offsets are committed
        session.commit(events)
        totals["events"] += len(events)
        totals["rounds"] += 1
        self.collector.after_round()
        self.idle_since = time.monotonic()
        if time.monotonic() - self.last_status >= self.options.status_every_s or \
                self.options.stop_when_idle_s is not None:
            elapsed = time.monotonic() - started
            known = len(store)
            LOG.info("round %d: %d events in %.1fs (%.0f/s); %d events so far; %d leads in view",
                     totals["rounds"], len(events), elapsed, len(events) / max(1e-6, elapsed),
                     totals["events"], known)
            self.last_status = time.monotonic()

    def _retry_after(self, error: BaseException) -> None:
        """After a Kafka error: the session closed, the in-memory state dropped, a backoff delay."""
        delay = self.backoff.next_delay()
        self.totals["retries"] += 1
        # the class and the broker only: an error's text may quote a record
        LOG.warning("Kafka unavailable at %s (%s); attempt %d, retrying in %.1f s",
                    self.options.bootstrap_servers, type(error).__name__, self.backoff.attempt, delay)
        self.pending = None  # not committed: read again after reconnecting
        if self.session is not None:
            self.session.close()
            self.session = None
        self.local.forget()  # rebuilt from the store, which holds acknowledged outputs only
        time.sleep(delay)
        self.idle_since = time.monotonic()

    def _close(self) -> None:
        self.collector.stop()
        if self.pool is not None:
            self.pool.close()
        if self.keyed_worker is not None:
            self.keyed_worker.close()
        if self.session is not None:
            self.session.close()
        if self.fence is not None:
            self.fence.close()  # after the last commit: the fence passes to the next stream
        self.totals["leads"] = len(self.store)
        self.store.close()
