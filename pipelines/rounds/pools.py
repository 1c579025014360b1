"""The rounds engine's worker processes (spawned, set up once): the :class:`EnrichmentPool` runs the
stateless stages of round k+1 while the stream process runs the keyed stages of round k, and the
:class:`KeyedAssigner` runs repeat detection of every blocking key. Their initialisers and the
functions submitted to them are top-level functions of this module (pickled by name)."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

from envleads.pipelines.heap import RoundCollector
from envleads.pipelines.options import StageSettings
from envleads.pipelines.rounds.engine import assign_key_rounds
from envleads.pipelines.rounds.enrich import Enricher
from envleads.records import DeadLetter, EnrichedComplaint, RawEvent
from envleads.repeats import KeyIndexes, MatterIndex


_WORKER_INDEXES: Dict[str, MatterIndex] = KeyIndexes()
# a worker process's garbage collection (``heap.py``): started when its setup is done
_WORKER_COLLECTOR = RoundCollector()


def _assign_in_worker(forget: bool, rounds, checkpoint: bool = False):
    """:func:`assign_key_rounds` in the keyed worker's process, over its own indexes; also returns
    how many matters they hold."""
    from envleads.repeats import load_repeat_config

    if forget:
        _WORKER_INDEXES.clear()
    results = assign_key_rounds(_WORKER_INDEXES, rounds, load_repeat_config(), checkpoint)
    _WORKER_COLLECTOR.after_round()
    return results, sum(len(index) for index in _WORKER_INDEXES.values())


class KeyedAssigner:
    """Repeat detection of every blocking key in a process of its own, so that the stream
    process, which bounds a backfill, keeps less (every key in one process: complaints of no
    known city search the city keys of their scope, :func:`assign_unplaced`). One worker, so its
    rounds run in order; its state is the same indexes the in-process engine would keep, restored from the
    same stored leads, and dropped with :meth:`LocalRoundEngine.forget`."""

    def __init__(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_keyed_worker, initargs=(os.getpid(),))

    def submit(self, forget: bool, rounds, checkpoint: bool = False):
        """Runs :func:`_assign_in_worker` in the process; returns its future."""
        return self._pool.submit(_assign_in_worker, forget, rounds, checkpoint)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_WORKER_ENRICHER: Optional[Enricher] = None


def _detach_from_parent(parent_pid: int) -> None:
    """In a worker process: Ctrl-C is the parent's to handle; and a worker must not outlive a
    parent killed with -9 (it would wait on its task queue forever)."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_enrich_worker(settings: StageSettings, parent_pid: int) -> None:
    global _WORKER_ENRICHER
    _detach_from_parent(parent_pid)
    # tokens stay in the worker: the keyed stages read the features computed from them, and they
    # were a fifth of the bytes pickled back per complaint
    _WORKER_ENRICHER = Enricher(settings, keep_tokens=False, wire_parts=True)
    _WORKER_COLLECTOR.start()


def _init_keyed_worker(parent_pid: int) -> None:
    from envleads.repeats import load_repeat_config

    _detach_from_parent(parent_pid)
    load_repeat_config()  # before the freeze: it lives as long as the process
    _WORKER_COLLECTOR.start()


def _enrich_in_worker(events: List[RawEvent]):
    enriched = _WORKER_ENRICHER.enrich(events)
    _WORKER_COLLECTOR.after_round()
    return enriched


class EnrichmentPool:
    """The stateless stages in worker processes, so that they overlap the keyed stages of the
    previous round (and use a second core): ``submit(events)`` returns a handle whose
    ``result()`` is ``(enriched, dead_letters)`` in event order. Workers set up once (spawned:
    no fork of a process holding Kafka and Beam threads)."""

    def __init__(self, settings: StageSettings, workers: int = 1):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._workers = max(1, workers)
        self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_enrich_worker, initargs=(settings, os.getpid()))

    def warm_up(self) -> None:
        """Starts every worker and waits for its setup (model, tokenizer, division table), so that
        the first rounds do not wait for it."""
        for future in [self._pool.submit(_enrich_in_worker, []) for _ in range(self._workers)]:
            future.result()

    def submit(self, events: Sequence[RawEvent]) -> "_PooledRound":
        size = max(1, -(-len(events) // self._workers))
        return _PooledRound([self._pool.submit(_enrich_in_worker, list(events[i:i + size]))
                             for i in range(0, len(events), size)])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _PooledRound:
    def __init__(self, futures):
        self._futures = futures

    def result(self) -> Tuple[List[EnrichedComplaint], List[DeadLetter]]:
        enriched, dead = [], []
        for future in self._futures:
            part_enriched, part_dead = future.result()
            enriched.extend(part_enriched)
            dead.extend(part_dead)
        return enriched, dead
