"""Training the pollution-type model from labelled rows, and the project's training files.

A labelled row is a dict with ``text``, optional ``title``, ``labels`` (a list over
:data:`~envleads.models.features.LABELS`; empty: not environmental) and optional ``synthetic``
(written for the project, not a real message: always on the training side of every fold).
"""
from __future__ import annotations

import glob
import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from envleads.evaluation import read_jsonl as read_rows
from envleads.models.estimator import PollutionTypeClassifier
from envleads.models.features import LABELS

TRAINING_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training")


def record_docs(records: Sequence[dict]) -> List[Tuple[str, str]]:
    """``(title, text)`` pairs of labelled rows, the estimator's ``X``."""
    return [(r.get("title") or "", r.get("text") or "") for r in records]


def label_matrix(records: Sequence[dict]) -> np.ndarray:
    """Gold labels as a 0/1 matrix over :data:`LABELS`; unknown labels fail loudly."""
    Y = np.zeros((len(records), len(LABELS)), dtype=int)
    for row, record in enumerate(records):
        for label in record.get("labels") or []:
            if label not in LABELS:
                raise ValueError(f"record {record.get('id')!r}: unknown label {label!r}")
            Y[row, LABELS.index(label)] = 1
    return Y


def train_model(records: List[dict], **hyper: Any) -> PollutionTypeClassifier:
    """Fits :class:`PollutionTypeClassifier` on labelled rows (what the CLI and registry call).

    Args:
        records: dicts with ``text``, optional ``title``, ``labels`` and ``synthetic``.
        **hyper: overrides of :data:`~envleads.models.estimator.DEFAULT_HYPER` (an unknown key
            is a ``TypeError``: a misspelt option must not be ignored).
    """
    estimator = PollutionTypeClassifier(**hyper)
    return estimator.fit(record_docs(records), label_matrix(records),
                         synthetic=[bool(r.get("synthetic")) for r in records])


# --------------------------------------------------------------------------- data files
def read_jsonl(path: str) -> List[dict]:
    """Reads labelled rows (JSON Lines); each needs ``text`` and ``labels``."""
    return read_rows(path, required=("text", "labels"))


def training_files() -> List[str]:
    """The project's own training sentences shipped in ``models/training/``."""
    return sorted(glob.glob(os.path.join(TRAINING_DIR, "*.jsonl")))


def load_project_training() -> List[dict]:
    """All generated/hand-written project rows, marked synthetic."""
    rows = []
    for path in training_files():
        rows.extend(dict(r, synthetic=True) for r in read_jsonl(path))
    return rows


def shared_data_dir() -> Optional[str]:
    """The shared labelled-data folder (``$ENVLEADS_SHARED_DATA`` or ``<repo>/../shared/data``)."""
    configured = os.environ.get("ENVLEADS_SHARED_DATA")
    if configured:
        return configured if os.path.isdir(configured) else None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(os.path.dirname(repo), "shared", "data")
    return candidate if os.path.isdir(candidate) else None

