"""The evaluation protocol of the pollution-type classifier: one fixed split of the real labels.

Every real labelled message (the shared ``pollution_dev.jsonl`` and the project's own labels of
``unlabelled_real.jsonl`` in ``models/labels/``) belongs to the **development** part or to the
**locked** part, decided by its id alone (a keyed hash), so the split never changes when rows are
added, removed or reordered, and new labelled data goes to both parts by the same rule. Every
choice (features, cue terms, thresholds, rules, hyper-parameters) is made on the development part
by cross-validation there; the default model trains on the development part only, and the locked
part is only ever scored (``envleads evaluate --locked``), never read for errors.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from typing import Dict, Iterable, List, Optional, Tuple

SPLIT_SALT = b"envleads-pollution-split-2026-12"
LOCKED_PERCENT = 30
LABELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "labels")
DEVELOPMENT = "development"
LOCKED = "locked"


def part_of(record_id: str) -> str:
    """``locked`` for about 30% of ids, ``development`` for the rest; stable for each id."""
    digest = hashlib.blake2b(str(record_id).encode("utf-8"), digest_size=8, key=SPLIT_SALT).digest()
    return LOCKED if int.from_bytes(digest, "big") % 100 < LOCKED_PERCENT else DEVELOPMENT


def split(records: Iterable[dict]) -> Tuple[List[dict], List[dict]]:
    """(development, locked) rows of ``records`` by :func:`part_of` of each ``id``."""
    development, locked = [], []
    for record in records:
        (locked if part_of(record["id"]) == LOCKED else development).append(record)
    return development, locked


def project_label_files() -> List[str]:
    """The project's labels of shared messages (``id`` + ``labels`` only), first readings."""
    return sorted(glob.glob(os.path.join(LABELS_DIR, "real_labels.*.jsonl")))


def _read_rows(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def real_labelled_records(shared_dir: Optional[str]) -> List[dict]:
    """Every real labelled message: ``pollution_dev.jsonl`` plus the project's labels joined with
    ``unlabelled_real.jsonl`` on ``id`` (texts are read from ``shared_dir``, never kept in the
    project). Empty when ``shared_dir`` is ``None`` or lacks the files."""
    if not shared_dir:
        return []
    records: List[dict] = []
    dev_path = os.path.join(shared_dir, "pollution_dev.jsonl")
    if os.path.exists(dev_path):
        records.extend(dict(row, origin="pollution_dev") for row in _read_rows(dev_path))
    texts_path = os.path.join(shared_dir, "unlabelled_real.jsonl")
    if os.path.exists(texts_path):
        labels: Dict[str, List[str]] = {}
        for path in project_label_files():
            labels.update((row["id"], row["labels"]) for row in _read_rows(path))
        for row in _read_rows(texts_path):
            if row["id"] in labels:
                records.append(dict(row, labels=labels[row["id"]], origin="real_labels"))
    return records


def real_parts(shared_dir: Optional[str]) -> Tuple[List[dict], List[dict]]:
    """(development, locked) parts of :func:`real_labelled_records`."""
    return split(real_labelled_records(shared_dir))
