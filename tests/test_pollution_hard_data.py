"""Shape of the project-written pollution test sets (tests/data/pollution_hard, issue 22 items 3, 5, 9).

Checks only that the sets are well formed: ids unique and prefixed, labels from the label set with no
repeats, every text long enough, each file's minimum counts, and that no text was copied from the
shared real data (20-character windows; that part skips when ../shared/data is absent). No quality
threshold: these sets are for measuring only (see the README beside them).
"""
import json
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SETS = HERE / "data" / "pollution_hard"
SHARED = HERE.parent.parent / "shared" / "data"
LABELS = ("air", "water", "noise", "solid_waste", "soil", "radiation", "ecological", "other")
FIELDS = {"id", "title", "text", "labels", "case", "note"}
FILES = {
    "hard_cases": {"prefix": "hc-", "rows": 160, "labels": {}},
    "rare_labels": {"prefix": "rl-", "rows": 100,
                    "labels": {"soil": 25, "radiation": 25, "ecological": 25, "other": 25}},
    "new_categories": {"prefix": "nc-", "rows": 80, "labels": {}},
}
WINDOW = 20


def _rows(name):
    with open(SETS / f"{name}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module", params=sorted(FILES))
def part(request):
    return request.param, _rows(request.param)


def test_fields_and_ids(part):
    name, rows = part
    spec = FILES[name]
    assert len(rows) >= spec["rows"], f"{name}: {len(rows)} rows"
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), f"{name}: duplicate ids"
    for row in rows:
        assert set(row) == FIELDS, row["id"]
        assert row["id"].startswith(spec["prefix"]), row["id"]
        assert isinstance(row["title"], str) and isinstance(row["text"], str), row["id"]
        assert len(row["text"].strip()) >= 10, row["id"]
        assert row["case"].strip() and row["note"].strip(), row["id"]


def test_labels(part):
    name, rows = part
    for row in rows:
        labels = row["labels"]
        assert isinstance(labels, list), row["id"]
        assert all(label in LABELS for label in labels), (row["id"], labels)
        assert len(labels) == len(set(labels)), (row["id"], labels)
        if labels:  # the main concern is first: a non-empty list has a first label from the set
            assert labels[0] in LABELS, row["id"]


def test_minimum_counts(part):
    name, rows = part
    counts = Counter(label for row in rows for label in row["labels"])
    for label, minimum in FILES[name]["labels"].items():
        assert counts[label] >= minimum, f"{name}: {label} {counts[label]} < {minimum}"
    # every set holds negatives (empty lists) and positives
    assert any(not row["labels"] for row in rows), name
    assert any(row["labels"] for row in rows), name


def test_texts_unique_across_sets():
    seen = {}
    for name in FILES:
        for row in _rows(name):
            assert row["text"] not in seen, (row["id"], seen.get(row["text"]))
            seen[row["text"]] = row["id"]


def _shared_texts():
    texts = []
    for path in sorted(SHARED.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    texts.extend(str(row.get(key) or "") for key in ("title", "text"))
    return texts


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
def test_no_text_copied_from_shared_data():
    assert _shared_texts(), "no shared texts read"
    windows = {}
    for name in FILES:
        for row in _rows(name):
            text = row["text"]
            for start in range(0, max(len(text) - WINDOW + 1, 0)):
                windows.setdefault(text[start:start + WINDOW], row["id"])
    # slide over the shared texts once and look each window up in the project's windows
    copied = set()
    for shared in _shared_texts():
        for start in range(0, len(shared) - WINDOW + 1):
            row_id = windows.get(shared[start:start + WINDOW])
            if row_id is not None:
                copied.add(row_id)
    assert not copied, f"20-character windows shared with ../shared/data: {sorted(copied)}"


@pytest.mark.parametrize("part, writers", [("dev", "abcdefghi"), ("locked", "jk")])
def test_outside_writer_sets_pair_every_text_with_its_truth(part, writers):
    """The confusable corpus as labelled rows (bench/bench_pollution_locked.py's outside sets): one
    row per complaint of the part's writers, with the truth's labels, and no other part's rows."""
    from envleads.models.evaluation import outside_writer_set

    rows = outside_writer_set(part)
    truth = {}
    for writer in writers:
        with open(HERE / "data" / "confusable" / f"{part}_w{writer}.truth.jsonl", encoding="utf-8") as handle:
            truth.update((r["complaint_id"], r) for r in map(json.loads, filter(str.strip, handle)))
    assert sorted(r["id"] for r in rows) == sorted(truth)
    for row in rows:
        assert row["labels"] == truth[row["id"]]["labels"] and row["text"]
        assert bool(row["labels"]) == truth[row["id"]]["environmental"]
