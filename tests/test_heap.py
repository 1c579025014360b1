"""The stream processes' garbage collection policy (``pipelines/heap.py``)."""
import gc
import weakref

import pytest

from envleads.pipelines.heap import RoundCollector


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Node:
    pass


def _cycle():
    """Cyclic garbage: only the cyclic collector frees it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def clock():
    return _Clock()


def test_start_freezes_setup_and_stop_restores_the_interpreter(clock):
    before = gc.get_threshold()
    collector = RoundCollector(full_every_s=60, clock=clock).start()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[:2] == before[:2]  # young collections as before
        assert gc.get_threshold()[2] > 1000 * before[2]  # no automatic full collection
    finally:
        collector.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    collector.stop()  # a second stop changes nothing
    assert gc.get_threshold() == before


def test_full_collection_runs_on_the_clock_and_frees_cycles(clock):
    collector = RoundCollector(full_every_s=60, clock=clock).start()
    try:
        gc.disable()  # no young collection may free the cycle behind the test's back
        ref = _cycle()
        clock.now = 59.0
        assert not collector.after_round()
        assert ref() is not None  # cyclic garbage waits for the period
        clock.now = 60.0
        assert collector.after_round()
        assert ref() is None
        assert collector.full_collections == 1
        clock.now = 100.0
        assert not collector.after_round()  # the period restarts at the last full collection
    finally:
        gc.enable()
        collector.stop()


def test_a_freeze_made_by_the_process_itself_is_left_alone(clock):
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        RoundCollector(clock=clock).start().stop()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_collector_not_started_never_collects(clock):
    collector = RoundCollector(full_every_s=0, clock=clock)
    clock.now = 1000.0
    assert not collector.after_round()
    assert gc.get_freeze_count() == 0
