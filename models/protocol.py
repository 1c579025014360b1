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
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from envleads.evaluation import read_jsonl
from envleads.config import OperatorError

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


TEXT_FILES = ("unlabelled_real.jsonl", "pollution_dev.jsonl")


class LabelledDataError(OperatorError):
    """A labelled file that cannot be used as asked (a row without labels, ids with no text)."""


def shared_texts(shared_dir: Optional[str]) -> Dict[str, dict]:
    """``id`` -> message row of the shared text files (:data:`TEXT_FILES`), in file order; the
    first file holding an id wins. Empty when ``shared_dir`` is ``None``."""
    texts: Dict[str, dict] = {}
    for name in TEXT_FILES if shared_dir else ():
        path = os.path.join(shared_dir, name)
        if os.path.exists(path):
            for row in read_jsonl(path):
                texts.setdefault(row["id"], row)
    return texts


def join_texts(rows: Sequence[dict], shared_dir: Optional[str], source: str = "labelled rows",
               texts: Optional[Dict[str, dict]] = None) -> List[dict]:
    """``rows`` with a text as they are; ``id`` + ``labels`` rows (the project's label format, no
    text) completed with the shared message of that id, their own keys winning.

    The one join of labels kept as ids with texts kept in ``../shared``: used by the protocol's
    loader, ``envleads train --extra``, ``evaluate --gold/--extra`` and ``models compare --gold``.

    Raises:
        LabelledDataError: rows without a text whose id is in no shared text file (with the count).
    """
    if all("text" in row for row in rows):
        return list(rows)
    if texts is None:
        texts = shared_texts(shared_dir)
    missing = [row.get("id") for row in rows if "text" not in row and row.get("id") not in texts]
    if missing:
        where = (f"in the shared texts of {shared_dir}" if shared_dir else
                 "anywhere: no shared data folder (../shared/data or $ENVLEADS_SHARED_DATA)")
        raise LabelledDataError(
            f"{source}: {len(missing)} of {len(rows)} rows have id + labels but no text, and their "
            f"id is not {where} (first: {missing[0]!r})")
    return [row if "text" in row else {**texts[row["id"]], **row} for row in rows]


def read_labelled(path: str, shared_dir: Optional[str]) -> List[dict]:
    """A labelled JSON Lines file: rows with ``text`` and ``labels``, or ``id`` and ``labels``
    (joined with the shared texts by :func:`join_texts`)."""
    rows = []
    for number, row in enumerate(read_jsonl(path), 1):
        if "labels" not in row or ("text" not in row and "id" not in row):
            raise LabelledDataError(f"{path}:{number}: a row needs 'labels' and 'text' or 'id'")
        rows.append(row)
    return join_texts(rows, shared_dir, source=path)


def project_labels() -> Dict[str, List[str]]:
    """``id`` -> labels of the project's label files (a later file wins for an id)."""
    labels: Dict[str, List[str]] = {}
    for path in project_label_files():
        labels.update((row["id"], row["labels"]) for row in read_jsonl(path))
    return labels


def real_labelled_records(shared_dir: Optional[str]) -> List[dict]:
    """Every real labelled message: ``pollution_dev.jsonl`` plus the project's labels joined with
    ``unlabelled_real.jsonl`` on ``id`` (texts are read from ``shared_dir``, never kept in the
    project), in the order of the shared files. Empty when ``shared_dir`` is ``None`` or lacks
    the files."""
    if not shared_dir:
        return []
    records: List[dict] = []
    dev_path = os.path.join(shared_dir, "pollution_dev.jsonl")
    if os.path.exists(dev_path):
        records.extend(dict(row, origin="pollution_dev") for row in read_jsonl(dev_path))
    if os.path.exists(os.path.join(shared_dir, "unlabelled_real.jsonl")):
        labels = project_labels()
        texts = shared_texts(shared_dir)
        # in the texts' order, as before the join was shared: row order changes a trained model
        rows = [{"id": key, "labels": labels[key]} for key in texts if key in labels]
        rows += [{"id": key, "labels": value} for key, value in labels.items() if key not in texts]
        records.extend(dict(row, origin="real_labels")
                       for row in join_texts(rows, shared_dir, "models/labels/", texts))
    return records


def real_parts(shared_dir: Optional[str]) -> Tuple[List[dict], List[dict]]:
    """(development, locked) parts of :func:`real_labelled_records`."""
    return split(real_labelled_records(shared_dir))
