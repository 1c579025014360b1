"""Offsets of the Beam streaming job committed once outputs are written
(``pipelines/kafka_edge/beam_commit.py``): the contiguous prefix of settled records, and what a dead
letter settles. End to end on Prism: ``tests/test_beam_kafka.py``."""
from __future__ import annotations

import random

from envleads.pipelines.beam_stream import dead_letter_parts, lead_outgoing
from envleads.pipelines.kafka_edge.beam_commit import ENRICHED_PART, LEAD_PART, WHOLE, RecordDone, advance
from envleads.pipelines.transforms import (BUILD_LEADS_STAGE, DECODE_STAGE, DEDUPLICATE_STAGE, ENCODE_ENRICHED_STAGE,
                                           ENCODE_LEADS_STAGE)
from envleads.records import DeadLetter, KafkaCoordinates


def _done(offset: int, parts: int, span_start=None) -> RecordDone:
    return RecordDone("raw", 0, offset, offset if span_start is None else span_start, parts)


def _progress(start: int = 0) -> dict:
    return {"next": start, "settled": {}}


def test_prefix_waits_for_every_part_of_every_earlier_record():
    progress = _progress(10)
    for done in (_done(11, WHOLE), _done(12, ENRICHED_PART), _done(10, ENRICHED_PART)):
        progress = advance(progress, done)
    assert progress["next"] == 10  # record 10's lead branch is not written yet
    progress = advance(progress, _done(10, LEAD_PART))
    assert progress["next"] == 12  # 10 and 11 settled; 12 still owes its lead branch
    progress = advance(progress, _done(12, LEAD_PART))
    assert progress == {"next": 13, "settled": {}}


def test_offsets_that_hold_no_record_do_not_stop_the_prefix():
    # offsets 3 and 4 are transaction markers: record 5 spans from 3
    progress = _progress(0)
    for done in (_done(5, WHOLE, span_start=3), _done(2, WHOLE), _done(0, WHOLE), _done(1, WHOLE)):
        progress = advance(progress, done)
    assert progress["next"] == 6


def test_a_repeated_report_changes_nothing_and_order_does_not_matter():
    reports = [_done(offset, part) for offset in range(50) for part in (ENRICHED_PART, LEAD_PART)]
    reports += reports[:30]  # a retried bundle reports again
    for seed in range(5):
        random.Random(seed).shuffle(reports)
        progress = _progress(0)
        nexts = []
        for done in reports:
            progress = advance(progress, done)
            nexts.append(progress["next"])
        assert nexts == sorted(nexts) and progress == {"next": 50, "settled": {}}


def test_without_a_report_the_prefix_stops_before_it():
    progress = _progress(0)
    for offset in range(20):
        if offset != 7:
            progress = advance(progress, _done(offset, WHOLE))
    assert progress["next"] == 7 and len(progress["settled"]) == 12


def test_dead_letters_settle_the_part_of_their_stage():
    def dead(stage):
        return DeadLetter(stage, "internal_error", "KeyError", "c1", b"x", KafkaCoordinates("raw", 0, 4, 4))

    assert {stage: dead_letter_parts(dead(stage)) for stage in
            (DECODE_STAGE, DEDUPLICATE_STAGE, ENCODE_ENRICHED_STAGE, BUILD_LEADS_STAGE, ENCODE_LEADS_STAGE)} == {
        DECODE_STAGE: WHOLE, DEDUPLICATE_STAGE: WHOLE, ENCODE_ENRICHED_STAGE: ENRICHED_PART,
        BUILD_LEADS_STAGE: LEAD_PART, ENCODE_LEADS_STAGE: LEAD_PART}


def test_a_report_without_a_new_lead_version_is_reported_not_written():
    outgoing = lead_outgoing((None, KafkaCoordinates("raw", 1, 9, 8)))
    assert (outgoing.key, outgoing.value) == (None, None)
    assert outgoing.done == RecordDone("raw", 1, 9, 8, LEAD_PART)
