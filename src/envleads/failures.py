"""One error policy for every engine: a record that makes a stage raise becomes a dead letter.

Bad input has its reason codes (``decode.py``); this is for the unexpected, what a single record
can make a stage raise. Every stage of both engines (the Beam transforms and the rounds engine)
catches it around the one record (or the one matter) and emits a dead letter ``internal_error``
of that stage, so one poison message never stops the stream nor keeps its round uncommitted.

Privacy: the dead letter's detail and the log line carry the stage, the reason and the
exception's class only (and the code location that raised), never the exception's message or
traceback text, which may quote the record (its text, a name, a phone, an address). The original
bytes travel in the dead letter itself, as for every dead letter (an access-restricted topic).
"""
from __future__ import annotations

import logging
import os
import traceback
from collections import Counter
from typing import Iterable, Mapping, NamedTuple, Optional, Union

from envleads.records import Complaint, DeadLetter

LOG = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


def _raised_at(error: BaseException) -> str:
    """Where the error was raised, as ``file.py:line``: code, never data."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    return f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"


class Raised(NamedTuple):
    """What an error leaves when it crosses a process (its class and where), never its message."""

    name: str
    at: str


def raised(error: BaseException) -> Raised:
    return Raised(type(error).__name__, _raised_at(error))


def internal_error(stage: str, error: Union[BaseException, Raised], complaint: Optional[Complaint] = None,
                   original: bytes = b"") -> DeadLetter:
    """The dead letter of a record that made ``stage`` raise ``error``, logged as one WARNING.

    Args:
        stage: the stage's name, e.g. ``SegmentText``.
        error: what it raised (or :func:`raised` of it); only its class name is kept.
        complaint: the decoded complaint, when the stage had one: its id, source and content digest
            (with which :func:`with_original` finds the original bytes).
        original: the event's bytes, when the stage has them (decode).
    """
    name, at = error if isinstance(error, Raised) else raised(error)
    LOG.warning("%s: %s (%s raised at %s); the record is dead-lettered", stage, INTERNAL_ERROR, name, at)
    if complaint is None:
        return DeadLetter(stage, INTERNAL_ERROR, name, None, bytes(original or b""))
    return DeadLetter(stage, INTERNAL_ERROR, name, complaint.complaint_id, bytes(original or b""),
                      complaint.source, complaint.content_digest)


def with_original(dead: DeadLetter, originals: Mapping[str, bytes]) -> DeadLetter:
    """``dead`` with its original bytes found by content digest in ``originals``, when it lacks them."""
    if dead.original or not dead.content_digest:
        return dead
    return dead._replace(original=originals.get(dead.content_digest, b""))


def count_internal_errors(dead_letters: Iterable[DeadLetter]) -> Counter:
    """``internal_error`` dead letters per stage: the rounds engine's metric."""
    return Counter(dead.stage for dead in dead_letters if dead.reason == INTERNAL_ERROR)
