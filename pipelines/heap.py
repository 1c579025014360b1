"""Garbage collection for the long-running stream processes.

CPython's cyclic collector runs a full collection whenever the objects that survived young
collections since the last full one reach a quarter of the heap. A stream process keeps a large
heap for its whole life (matter indexes, the model, the division table) and allocates round-scoped
objects by the hundred thousand, which live just long enough to be promoted: with the default
thresholds the stream process ran a full collection about every round, 0.3 s each and growing with
the window, a fifth of its CPU in the 1,000,000-complaint backfill (measured with ``gc.callbacks``).
Reference counting frees nearly all of those objects anyway; the collector is only needed for
cycles.

:class:`RoundCollector` makes full collections a matter of the clock instead: what setup built is
frozen (it lives as long as the process), young objects are collected as CPython does, and a full
collection runs after a round once ``full_every_s`` have passed. Its cost is then bounded (one full
collection per period), and cyclic garbage lives at most one period.
"""
from __future__ import annotations

import gc
import time
from typing import Optional, Tuple

# The oldest generation's threshold: full collections come from :meth:`RoundCollector.after_round`,
# the automatic one practically never.
_NEVER = 1_000_000_000
DEFAULT_FULL_EVERY_S = 60.0


class RoundCollector:
    """The collection policy of a process that works in rounds (see the module's docstring).

    ``start()`` at the end of setup, ``after_round()`` after each round, ``stop()`` to restore the
    interpreter's settings (a library caller's process keeps running after a stream stops).
    """

    def __init__(self, full_every_s: float = DEFAULT_FULL_EVERY_S, clock=time.monotonic):
        self.full_every_s = full_every_s
        self._clock = clock
        self._saved: Optional[Tuple[int, ...]] = None
        self._froze = False
        self._last_full = 0.0
        self.full_collections = 0

    def start(self) -> "RoundCollector":
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.collect()
            # a process that froze objects itself (before forking, say) keeps its own freeze
            self._froze = gc.get_freeze_count() == 0
            if self._froze:
                gc.freeze()
            gc.set_threshold(self._saved[0], self._saved[1], _NEVER)
            self._last_full = self._clock()
        return self

    def after_round(self) -> bool:
        """Runs a full collection when the period has passed; returns whether it did."""
        if self._saved is None or self._clock() - self._last_full < self.full_every_s:
            return False
        gc.collect()
        self._last_full = self._clock()
        self.full_collections += 1
        return True

    def stop(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            if self._froze:
                gc.unfreeze()
            self._saved = None
