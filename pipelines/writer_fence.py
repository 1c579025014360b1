"""One writer at a time: the stream's writer fence, held through the broker's group membership.

``envleads stream`` reads its raw partitions by explicit assignment (no group join, see
:mod:`~envleads.pipelines.kafka_edge.read`), so nothing in Kafka stopped a second stream of the same group
(a rolling update, a second replica) from reading the same events: both processed them, and a
complaint could end up in two leads. The fence makes the broker choose one writer:

* **Fence.** A topic ``<raw topic>.writer`` with one partition (created if missing; nothing is
  ever written to it) and a consumer group ``<group id>.writer``. Every stream subscribes to it.
  The group's assignor (:class:`WriterFenceAssignor`) gives partition 0 to exactly one member per
  generation: the member that held it in the latest generation (a stream that joins never takes
  it from a live writer), else the one that has waited longest. The holder is the writer; every
  member learns who it is (process id, host and start time) with its assignment.
* **Refusal.** A stream that gets nothing after its first join stops before reading a record,
  with one line: ``another envleads stream holds the writer fence of group 'G' (pid P on H since
  T); stop it first or use --wait-for-fence`` (``envleads stream`` exits with status 2). With
  ``wait=True`` it stays in the group and takes over when the writer stops.
* **Handover.** A writer alone in the fence group leaves it when it stops, so the next stream
  gets the fence after one join (~3 s on Tansu). A writer with another stream in the group (one
  waiting, or one just refused) does not leave: the broker drops it after its session timeout, and
  the waiting stream takes over ~11 s after the writer stopped, as after a kill -9. The reason is a
  Tansu bug (v0.6.0, still in its successor's main branch): a group *leader* that leaves while the
  group re-forms stays its leader for good, and no member is ever assigned anything again
  (measured: nobody got the fence in 2 minutes). A residual race remains: a stream that joins in
  the ~0.3 s before a lone writer leaves (measured) meets that bug on Tansu, and its join never
  settles (``the writer fence group ... did not settle``, retried with backoff) until the broker
  restarts. ``WriterFence.LEAVE_WHEN_ALONE = False`` closes that race at ~8 s more per restart.
* **Keeping.** A daemon thread polls the fence consumer every 0.2 s: kafka-python heartbeats in
  its own thread but leaves the group when ``poll()`` is not called within ``max_poll_interval_ms``,
  and a round may take longer than that. The thread also rejoins during a rebalance.
* **Checking.** Before a round's outputs are written and before its offsets are committed,
  :meth:`WriterFence.confirm` commits an offset of the fence partition in the fence group. The
  broker accepts that commit only from a member of the current generation (Tansu and Apache Kafka
  reject a stale generation or an unknown member), so a writer that was dropped from the group (a
  pause longer than the session timeout) or lost the partition finds out there:
  :class:`WriterFenceLost`, a Kafka error. The stream then writes and commits nothing for that
  round, drops its in-memory state as after any Kafka error, and takes the fence again; if another
  stream holds it by then, it stops with one line (``this stream lost the writer fence ...``),
  and its round is read again by the new writer from the committed offsets.

Delivery: at-least-once, as before, with one writer per group: a second stream neither reads nor
writes anything while the first holds the fence. The fence is a lease the writer checks, not a
filter on the broker's side of its writes: a writer paused after its check for longer than the
session timeout can still write that one round's outputs after the new writer has taken over
(duplicate enriched records as after a crash, and in that window a complaint may reach two
leads). Strict fencing of the writes themselves would need transactional producers (Tansu does
fence a producer when another one initialises the same ``transactional.id``); that belongs with
scaling out over several instances, a later step.

Needs kafka-python 3 (the assignor API) whatever the stream's own Kafka client is. On a secured
cluster the stream's principal needs to create (or find) the fence topic, read it and use the
group ``<group id>.writer``.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
from typing import Dict, List, Optional

from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

from envleads.config import OperatorError

LOG = logging.getLogger(__name__)

FENCE_SUFFIX = ".writer"
FENCE_PARTITION = 0


def fence_names(raw_topic: str, group_id: str):
    """``(topic, group)`` of the fence of a stream reading ``raw_topic`` in ``group_id``."""
    return raw_topic + FENCE_SUFFIX, group_id + FENCE_SUFFIX


class WriterFenceHeld(OperatorError):
    """Another stream holds the writer fence of this group (the command line prints one line)."""


class WriterFenceLost(KafkaError):
    """This stream held the writer fence and no longer does: nothing of the current round may be
    written or committed. A Kafka error, so the stream's reconnect path drops its in-memory state
    and takes the fence again (or stops with :class:`WriterFenceHeld`)."""


def _close_without_leaving(consumer) -> None:
    """Makes kafka-python's ``close()`` skip its LeaveGroup (it sends none for a member without a
    generation); the broker drops the member after its session timeout, as if it had died."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and hasattr(coordinator, "reset_generation"):
        coordinator.reset_generation()


def _describe(who: Optional[dict]) -> str:
    if not who:
        return "holder unknown"
    return f"pid {who.get('pid')} on {who.get('host')} since {who.get('since')}"


class WriterFenceAssignor(AbstractPartitionAssignor):
    """Partition 0 of each subscribed fence topic to one member: the one that held it in the
    latest generation, else the one waiting longest (then by member id); every member's
    assignment carries the holder's identity."""

    name = "envleads-writer-fence"
    version = 0

    def __init__(self, fence: "WriterFence"):
        self._fence = fence

    def metadata(self, topics):
        return ConsumerProtocolSubscription(self.version, sorted(topics), json.dumps(self._fence.claim()).encode())

    @staticmethod
    def _claim_of(member) -> dict:
        try:
            claim = json.loads(bytes(member.metadata.user_data or b"{}").decode("utf-8"))
            return claim if isinstance(claim, dict) else {}
        except (ValueError, UnicodeDecodeError):
            return {}

    def assign(self, cluster, members):
        if self._fence is not None:
            self._fence._leading(len(members))
        claims = {member.member_id: self._claim_of(member) for member in members}
        by_topic: Dict[str, List[str]] = {}
        for member in members:
            for topic in member.metadata.topics:
                by_topic.setdefault(topic, []).append(member.member_id)
        assigned: Dict[str, Dict[str, List[int]]] = {member.member_id: {} for member in members}
        holders: Dict[str, Optional[dict]] = {}
        for topic, member_ids in by_topic.items():
            if FENCE_PARTITION not in (cluster.partitions_for_topic(topic) or ()):
                holders[topic] = None  # no fence topic (yet): nobody holds it
                continue

            def rank(member_id):
                claim = claims[member_id]
                held = claim.get("held_generation")
                return (-(held if isinstance(held, int) else -1),
                        claim.get("waiting_since_ms") if isinstance(claim.get("waiting_since_ms"), int) else 1 << 62,
                        member_id)

            holder = min(member_ids, key=rank)
            assigned[holder][topic] = [FENCE_PARTITION]
            holders[topic] = claims[holder].get("who")
        result = {}
        for member in members:
            topics = sorted(assigned[member.member_id].items())
            holder = next((holders[t] for t in member.metadata.topics if t in holders), None)
            result[member.member_id] = ConsumerProtocolAssignment(
                self.version, topics, json.dumps({"holder": holder}).encode())
        return result

    def on_assignment(self, assignment, generation=None):
        self._fence._assigned(assignment, generation)


class WriterFence:
    """Membership of ``<group id>.writer`` on ``<raw topic>.writer``; see the module docstring.

    ``acquire()`` joins (or re-checks) and returns once this process holds the fence, raising
    :class:`WriterFenceHeld` when another stream does (unless ``wait``); ``confirm()`` before any
    write or commit; ``close()`` gives the fence up (at once when this stream is alone in the group,
    else after the broker's session timeout: see "Handover" in the module docstring).
    """

    JOIN_TIMEOUT_S = 60.0      # a first join waits for the broker's rebalance (~3 s on Tansu; a
                               # dead holder is dropped after its rebalance/session timeout, ~11 s)
    CONFIRM_TIMEOUT_S = 30.0   # a rebalance the writer keeps the fence through (another stream
                               # joining or leaving) takes ~3-6 s on Tansu
    LEAVE_WHEN_ALONE = True    # False: never send LeaveGroup (see "Handover" in the module docstring)
    KEEP_INTERVAL_S = 0.2      # between the keeper's polls while the group is stable
    KEEP_POLL_MS = 20
    JOIN_POLL_MS = 250
    EMPTY_REJOIN_AFTER_S = 10.0  # a generation that gave nobody the fence, then no rejoin: see acquire()
    REOPEN_UNSETTLED_AFTER_S = 20.0  # a join not settled by then starts again from a new consumer: see acquire()

    def __init__(self, bootstrap_servers: str, raw_topic: str, group_id: str, security=None, wait: bool = False,
                 consumer_overrides: Optional[dict] = None):
        self.topic, self.group = fence_names(raw_topic, group_id)
        self.stream_group = group_id
        self._bootstrap_servers = bootstrap_servers
        self._security = security
        self._wait = wait
        self._overrides = dict(consumer_overrides or {})
        self._who = {"pid": os.getpid(), "host": socket.gethostname(),
                     "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        self._waiting_since_ms = int(time.time() * 1000)
        self._consumer = None
        self._keeper: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()        # the fence consumer, used by the keeper and confirm()
        self._cv = threading.Condition()     # the membership state below (set by kafka-python's callbacks)
        self._reset_state()
        self._ever_held = False   # acquire() returned once: a later refusal means the fence was lost
        self._confirmed = 0

    def _reset_state(self) -> None:
        self._generation: Optional[int] = None
        self._settled = False   # an assignment arrived since the last join began
        self._holds = False     # partition 0 in the latest assignment
        self._lost = False      # held it, then lost it (dropped from the group, or assigned nothing)
        self._holder: Optional[dict] = None
        self._held_generation = -1  # the latest generation this member held the fence in
        self._led: Optional[int] = None  # members of the latest generation, when this member led it
        self._leading_now: Optional[int] = None

    # -- kafka-python callbacks (its own threads) ------------------------------------------------
    def claim(self) -> dict:
        with self._cv:
            held = self._held_generation if self._holds_now() else -1
            return {"held_generation": held, "waiting_since_ms": self._waiting_since_ms, "who": self._who}

    def _leading(self, members: int) -> None:
        with self._cv:
            self._leading_now = members  # this member is the leader: on_assignment follows

    def _assigned(self, assignment, generation) -> None:
        holds = any(tp.topic == self.topic and tp.partition == FENCE_PARTITION for tp in assignment.partitions())
        try:
            holder = json.loads(bytes(assignment.user_data or b"{}").decode("utf-8")).get("holder")
        except (ValueError, UnicodeDecodeError, AttributeError):
            holder = None
        generation = generation if isinstance(generation, int) else getattr(generation, "generation_id", None)
        with self._cv:
            # a member stays in the group from one generation to the next only by rejoining each
            # (else kafka-python reports the membership lost), and its claim then wins: a holder
            # that is assigned nothing has lost the fence. (A generation's assignment may be missed:
            # kafka-python drops a join that completes between two polls and joins again.)
            if self._holds_now() and not holds:
                self._lost = True
            self._generation, self._settled, self._holds, self._holder = generation, True, holds, holder
            self._led, self._leading_now = self._leading_now, None
            if self._holds_now():
                self._held_generation = generation
            self._cv.notify_all()

    def _revoked(self) -> None:
        with self._cv:
            self._settled = False  # a rebalance began (eager protocol: revoke, rejoin, assign)
            self._cv.notify_all()

    def _membership_lost(self) -> None:
        with self._cv:
            if self._holds_now():
                self._lost = True
            self._settled = self._holds = False
            self._cv.notify_all()

    def _holds_now(self) -> bool:
        return self._holds and not self._lost

    # -- lifecycle -------------------------------------------------------------------------------
    def _open(self) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        from envleads.ops.broker import create_topics
        from envleads.ops.kafka_config import client_kwargs

        fence = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                fence._revoked()

            def on_partitions_assigned(self, assigned):
                pass  # WriterFenceAssignor.on_assignment has the generation and the holder

            def on_partitions_lost(self, lost):
                fence._membership_lost()

        create_topics(self._bootstrap_servers, [self.topic], partitions=1, security=self._security)
        kwargs = client_kwargs(self._bootstrap_servers, self._security, role="consumer", group_id=self.group,
                               client_id=f"envleads-stream-fence-{self._who['pid']}",
                               partition_assignment_strategy=[WriterFenceAssignor(self)],
                               enable_auto_commit=False,
                               # a rebalance is noticed within a quarter second (see _may_leave)
                               heartbeat_interval_ms=250)
        kwargs.update(self._overrides)
        consumer = KafkaConsumer(**kwargs)
        try:
            consumer.subscribe([self.topic], listener=Listener())
        except BaseException:
            consumer.close()
            raise
        with self._cv:
            self._reset_state()
        self._consumer = consumer
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, name=f"writer-fence-{self.group}", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        consumer = self._consumer
        while not self._stop.is_set():
            with self._cv:
                settled = self._settled
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    # During a join, polls follow each other without a pause: kafka-python 3.0.12
                    # drops a join that completes between two polls and starts another (each costs
                    # Tansu's ~3 s join delay; with pauses between short polls the group never settled).
                    consumer.poll(timeout_ms=self.KEEP_POLL_MS if settled else self.JOIN_POLL_MS, max_records=1)
                    if settled:
                        consumer.pause(*consumer.assignment())  # nothing to fetch: no fetch requests
            except Exception as error:  # noqa: BLE001 - kafka-python reconnects; the state says the rest
                LOG.debug("writer fence poll failed: %s", type(error).__name__)
                self._stop.wait(self.KEEP_INTERVAL_S)
                continue
            with self._cv:
                settled = self._settled  # a join this poll began goes on with the next poll at once
            if settled:
                self._stop.wait(self.KEEP_INTERVAL_S)

    def _shut(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(10)
            self._keeper = None
        if self._consumer is not None:
            try:
                with self._lock:
                    if not self._may_leave():
                        _close_without_leaving(self._consumer)
                    self._consumer.close()
            except Exception:  # noqa: BLE001 - closing a client of a lost broker may fail
                LOG.debug("closing the writer fence consumer failed", exc_info=True)
            self._consumer = None

    def _may_leave(self) -> bool:
        """Whether closing may send LeaveGroup: a follower may, and a leader alone in a settled
        group. Tansu (v0.6.0, and its successor's main branch) keeps a leader that leaves while the
        group is re-forming as the group's leader for good: every later member then waits for that
        leader's assignment forever (measured: no member got the fence in 2 minutes). A leader with
        other members is therefore dropped by the broker after its session timeout instead (a
        waiting stream takes over ~11 s after the writer stopped); one alone leaves at once."""
        with self._cv:
            return self._settled and (self._led is None or (self._led == 1 and self.LEAVE_WHEN_ALONE))

    def close(self) -> None:
        self._shut()

    def __enter__(self) -> "WriterFence":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def holds(self) -> bool:
        with self._cv:
            return self._holds_now()

    # -- acquire / confirm -----------------------------------------------------------------------
    def _message(self) -> str:
        holder = _describe(self._holder)
        if self._ever_held:
            return (f"this stream lost the writer fence of group {self.stream_group!r} to another envleads stream "
                    f"({holder}) and stopped without committing its last round")
        return (f"another envleads stream holds the writer fence of group {self.stream_group!r} ({holder}); "
                f"stop it first or use --wait-for-fence")

    def acquire(self) -> None:
        """Returns once this process holds the fence; raises :class:`WriterFenceHeld` when another
        stream holds it (unless ``wait``), a Kafka error when the broker does not settle the group
        within ``JOIN_TIMEOUT_S`` (the stream retries with backoff)."""
        if self._consumer is None:
            self._open()
        deadline = time.monotonic() + self.JOIN_TIMEOUT_S
        settled_seen = time.monotonic()  # the last time the group was seen settled (or the join began)
        announced = False
        while True:
            with self._cv:
                if self._settled and self._holds:
                    # a fresh hold, or one kept or regained after the caller dropped its state
                    if not self._ever_held or announced or self._lost:
                        LOG.info("holding the writer fence of group %r (topic %s, generation %s)",
                                 self.stream_group, self.topic, self._generation)
                    self._lost = False
                    self._held_generation = self._generation
                    self._ever_held = True
                    return
                settled, holder = self._settled, self._holder
                now = time.monotonic()
                if settled:
                    settled_seen = now
                elif now <= deadline and now - settled_seen <= self.REOPEN_UNSETTLED_AFTER_S:
                    self._cv.wait(0.2)
                    continue
            if not settled and time.monotonic() <= deadline:
                # A join takes ~3 s, ~14 s behind a dead holder. kafka-python 3.0.12 can stop for good
                # in a join on Apache Kafka: after the leader's own rejoin (its metadata lacked the
                # topic) it sends no more heartbeats and looks for the coordinator without end (seen
                # in the TLS and restart tests). Join again from a new consumer, without leaving.
                LOG.info("the writer fence group %r has not settled in %.0f s: joining again from a new consumer",
                         self.group, self.REOPEN_UNSETTLED_AFTER_S)
                self._shut()
                self._open()
                settled_seen = time.monotonic()
                continue
            if not settled:
                LOG.warning("the writer fence group %r has not settled in %.0f s (on the embedded broker, "
                            "Tansu, a group whose leader left while it re-formed never settles again: "
                            "restart the broker)", self.group, self.JOIN_TIMEOUT_S)
                self._shut()  # the stream's next attempt starts from a new consumer
                raise KafkaTimeoutError(f"the writer fence group {self.group!r} did not settle")
            if holder is None:
                # nobody was given the fence. Mostly the leader assigned before its metadata listed
                # the fence topic: kafka-python rejoins by itself once it does, so wait for that
                # generation (closing and joining again here met the same race every time: measured
                # on Apache Kafka, hundreds of generations without a holder). After
                # EMPTY_REJOIN_AFTER_S without one, the topic is taken to be missing (a broker
                # restarted without its data): recreate it and join again.
                if time.monotonic() > deadline:
                    self._shut()
                    raise KafkaTimeoutError(f"no member of {self.group!r} was given the writer fence")
                with self._cv:
                    empty_generation = self._generation
                    self._cv.wait_for(lambda: self._generation != empty_generation or not self._settled,
                                      timeout=self.EMPTY_REJOIN_AFTER_S)
                    rejoined = self._generation != empty_generation or not self._settled
                if not rejoined:
                    self._shut()
                    self._open()
                continue
            if not self._wait:
                message = self._message()
                self._shut()
                raise WriterFenceHeld(message)
            if not announced:
                LOG.warning("waiting for the writer fence of group %r: held by another envleads stream (%s)",
                            self.stream_group, _describe(holder))
                announced = True
            with self._cv:
                self._cv.wait(0.5)  # a new assignment comes with the next rebalance
            deadline = time.monotonic() + self.JOIN_TIMEOUT_S  # waiting has no end; a join does

    def confirm(self) -> None:
        """Proves with the broker that this process still holds the fence: commits an offset of
        the fence partition with its generation and member id. Waits through a rebalance it keeps
        the fence through; raises :class:`WriterFenceLost` when the fence is gone, or the Kafka
        error (broker unavailable) after ``CONFIRM_TIMEOUT_S``."""
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError, RebalanceInProgressError
        from kafka.structs import OffsetAndMetadata

        deadline = time.monotonic() + self.CONFIRM_TIMEOUT_S
        partition = TopicPartition(self.topic, FENCE_PARTITION)
        while True:
            with self._cv:
                if self._consumer is None or not self._ever_held or self._lost or (self._settled and not self._holds):
                    self._lost = True
                    raise self._lost_error()
                settled = self._settled
            error: Optional[BaseException] = None
            if settled:
                try:
                    with self._lock:
                        # offset 0 (the topic stays empty, so a later holder's fetch position is
                        # valid); the metadata names the writer and counts its confirmations
                        metadata = json.dumps({**self._who, "confirmed": self._confirmed + 1})
                        self._consumer.commit({partition: OffsetAndMetadata(0, metadata, -1)},
                                              timeout_ms=int(self.CONFIRM_TIMEOUT_S * 1000))
                    self._confirmed += 1
                    return
                except RebalanceInProgressError as caught:  # the client is rejoining: wait for it
                    error = caught
                except CommitFailedError as caught:
                    if caught.args and isinstance(caught.args[0], RebalanceInProgressError):
                        error = caught
                    else:  # ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID: dropped from the group
                        with self._cv:
                            self._lost = True
                            self._settled = False  # acquire() waits for the next assignment
                        raise self._lost_error() from None
                except KafkaError as caught:
                    error = caught
            if time.monotonic() > deadline:
                raise error if error is not None else KafkaTimeoutError(
                    f"the writer fence group {self.group!r} did not settle")
            with self._cv:
                self._cv.wait(0.1)

    def _lost_error(self) -> WriterFenceLost:
        LOG.warning("lost the writer fence of group %r: this round is neither written nor committed (it is read "
                    "again by the stream that holds the fence)", self.stream_group)
        return WriterFenceLost(f"lost the writer fence of group {self.stream_group!r}")
