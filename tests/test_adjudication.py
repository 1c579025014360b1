"""The record of every change made to the project's own labels after their first reading.

``models/labels/adjudication.jsonl`` lists each changed row as ``id``, ``old``, ``new`` and a
reason code (``guide:...`` or ``practice:...``, no text); the label files hold the ``new`` labels,
so the loader has one source of truth and this record explains it. Only development rows may be
adjudicated: the locked part is never read, so a locked id here would mean it was.
"""
import json
import re
from pathlib import Path

import pytest

from envleads.models import pollution, protocol

ADJUDICATION = Path(protocol.LABELS_DIR) / "adjudication.jsonl"


@pytest.fixture(scope="module")
def changes():
    return [json.loads(line) for line in ADJUDICATION.read_text(encoding="utf-8").splitlines()]


def test_every_change_is_a_development_row_once(changes):
    ids = [row["id"] for row in changes]
    assert ids and len(set(ids)) == len(ids)
    assert [key for key in ids if protocol.part_of(key) != protocol.DEVELOPMENT] == []


def test_every_change_has_labels_and_a_reason_code_and_no_text(changes):
    for row in changes:
        assert set(row) == {"id", "old", "new", "reason"}, row["id"]
        assert re.fullmatch(r"(guide|practice):[a-z_]+", row["reason"]), row
        assert row["old"] != row["new"], row["id"]
        for labels in (row["old"], row["new"]):
            assert set(labels) <= set(pollution.LABELS) and len(set(labels)) == len(labels), row


def test_the_label_files_hold_the_adjudicated_labels(changes):
    labels = protocol.project_labels()
    assert [row["id"] for row in changes if labels.get(row["id"]) != row["new"]] == []


def test_the_label_files_have_one_row_per_id():
    ids = [json.loads(line)["id"] for path in protocol.project_label_files()
           for line in Path(path).read_text(encoding="utf-8").splitlines()]
    assert len(set(ids)) == len(ids)
