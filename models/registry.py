"""Model registry: one folder per trained pollution-type model, with what produced it.

Layout: ``<registry>/pollution_type/<version>/`` holding ``model.joblib``, ``metadata.json``
(label set, sha256 of the training rows, dictionary and cue-term versions, library versions,
metrics, training time, command, created_at) and ``MODEL_CARD.md``. Versions sort by time:
``pt-YYYYMMDD-HHMMSS-<6 hex of the training fingerprint>``.

Only artefacts this project wrote are loaded (joblib runs pickle, which executes code); a
scikit-learn version or label-set mismatch is refused at load time instead of failing, or worse
silently mispredicting, on the first batch.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import joblib
import sklearn

from envleads.records import POLLUTION_LABELS

LOGGER = logging.getLogger(__name__)

MODEL_KIND = "pollution_type"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CARD_FILE = "MODEL_CARD.md"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ENSURE_LOCK = threading.Lock()


class ModelMismatchError(RuntimeError):
    """A registered model cannot be used by this installation (library or label-set mismatch)."""


class ModelNotFoundError(FileNotFoundError):
    """No registered model matches the requested version."""


def _writable(path: str) -> bool:
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.access(probe, os.W_OK)


def default_registry_dir() -> str:
    """``$ENVLEADS_REGISTRY``, else ``models/registry`` beside this package when writable, else
    ``~/.cache/envleads/registry`` (an installed, read-only package)."""
    configured = os.environ.get("ENVLEADS_REGISTRY")
    if configured:
        return configured
    local = os.path.join(_PACKAGE_DIR, "registry")
    if _writable(local):
        return local
    return os.path.join(os.path.expanduser("~"), ".cache", "envleads", "registry")


def _kind_dir(registry_dir: Optional[str]) -> str:
    return os.path.join(registry_dir or default_registry_dir(), MODEL_KIND)


def training_fingerprint(records: List[dict]) -> str:
    """sha256 over the training rows (title, text, labels) in order, independent of extra keys."""
    digest = hashlib.sha256()
    for record in records:
        row = [record.get("title") or "", record.get("text") or "", list(record.get("labels") or [])]
        digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def list_versions(registry_dir: Optional[str] = None) -> List[str]:
    """Registered versions, oldest first (only complete folders: model and metadata present)."""
    root = _kind_dir(registry_dir)
    if not os.path.isdir(root):
        return []
    return sorted(
        name for name in os.listdir(root)
        if os.path.isfile(os.path.join(root, name, MODEL_FILE))
        and os.path.isfile(os.path.join(root, name, METADATA_FILE))
    )


def _resolve(version: str, registry_dir: Optional[str]) -> str:
    versions = list_versions(registry_dir)
    if version == "latest":
        if not versions:
            raise ModelNotFoundError(f"no {MODEL_KIND} model in {_kind_dir(registry_dir)}; "
                                     "run `envleads train`")
        return versions[-1]
    if version not in versions:
        raise ModelNotFoundError(f"{MODEL_KIND} model {version!r} not in {_kind_dir(registry_dir)}")
    return version


def read_metadata(version: str = "latest", registry_dir: Optional[str] = None) -> Dict[str, Any]:
    """The ``metadata.json`` of a registered model."""
    version = _resolve(version, registry_dir)
    with open(os.path.join(_kind_dir(registry_dir), version, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)


def _model_card(version: str, metadata: Dict[str, Any]) -> str:
    metrics = metadata.get("metrics") or {}
    lines = [
        f"# Pollution-type classifier {version}",
        "",
        "Multi-label classifier of citizen environmental complaints over "
        f"`{', '.join(metadata['labels'])}`; an empty label list means not environmental.",
        "",
        "## Training",
        f"- rows: {metadata.get('training_rows')} ({metadata.get('synthetic_rows')} project-written, "
        f"rest real labelled rows)",
        f"- training data sha256: `{metadata.get('training_fingerprint')}`",
        f"- dictionary {metadata.get('dictionary_version')}, cue terms "
        f"{metadata.get('type_terms_version')}",
        f"- scikit-learn {metadata.get('sklearn_version')}, jieba {metadata.get('jieba_version')}, "
        f"segmenter {metadata.get('segmenter')}, python {metadata.get('python_version')}",
        f"- hyper-parameters: `{json.dumps(metadata.get('hyper', {}), ensure_ascii=False)}`",
        f"- per-label thresholds: `{metadata.get('thresholds')}`",
        f"- trained in {metadata.get('training_seconds')} s by `{metadata.get('command')}` "
        f"at {metadata.get('created_at')}",
        "",
        "## Measured quality",
    ]
    if metrics:
        lines += [
            f"Cross-validated on the real rows ({metrics.get('cv', {}).get('folds')} folds, project "
            "rows only on the training side):",
            f"- micro F1 {metrics.get('micro_f1')}, macro F1 (labels with >= 10 rows) "
            f"{metrics.get('macro_f1_frequent')}, macro F1 (all) {metrics.get('macro_f1_all')}",
            f"- environmental/not accuracy {metrics.get('env_accuracy')}",
            "",
            "| label | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for label, m in metrics.get("per_label", {}).items():
            lines.append(f"| {label} | {m['precision']} | {m['recall']} | {m['f1']} | "
                         f"{m['support']} |")
    else:
        lines.append("Not measured at training time; run `envleads evaluate --cv 5 --gold FILE`.")
    lines += [
        "",
        "## Intended use and limits",
        "Ranks and routes complaints for human review; predictions with `needs_review` must be "
        "read by a person. Rare labels (soil, radiation, other) rest on few real examples and on "
        "the cue-term rules. Trained on one city's message board; other channels may differ.",
        "",
    ]
    return "\n".join(lines)


def register(pipeline, metadata: Dict[str, Any], registry_dir: Optional[str] = None) -> str:
    """Saves a fitted pipeline with its metadata and model card; returns the new version.

    ``metadata`` must hold ``training_fingerprint``; library versions, label set and created_at
    are filled in here. The folder is written under a temporary name and renamed, so a reader
    never sees a half-written model.
    """
    import jieba

    from envleads.models.pollution import PIPELINE_FORMAT
    from envleads.text import DICTIONARY_VERSION, segmenter_engine

    fingerprint = metadata["training_fingerprint"]
    now = _dt.datetime.now(_dt.timezone.utc)
    root = _kind_dir(registry_dir)
    os.makedirs(root, exist_ok=True)
    version = f"pt-{now:%Y%m%d-%H%M%S}-{fingerprint[:6]}"
    while os.path.exists(os.path.join(root, version)):  # two trainings in the same second
        time.sleep(1.0)
        now = _dt.datetime.now(_dt.timezone.utc)
        version = f"pt-{now:%Y%m%d-%H%M%S}-{fingerprint[:6]}"
    full = {
        "kind": MODEL_KIND,
        "version": version,
        "labels": list(POLLUTION_LABELS),
        "dictionary_version": DICTIONARY_VERSION,
        "sklearn_version": sklearn.__version__,
        "jieba_version": getattr(jieba, "__version__", "unknown"),
        "segmenter": segmenter_engine(),
        "pipeline_format": PIPELINE_FORMAT,
        "python_version": platform.python_version(),
        "created_at": now.isoformat(timespec="seconds"),
        **metadata,
    }
    staging = tempfile.mkdtemp(prefix=f".{version}.", dir=root)
    joblib.dump(pipeline, os.path.join(staging, MODEL_FILE), compress=3)
    with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as handle:
        json.dump(full, handle, ensure_ascii=False, indent=2)
    with open(os.path.join(staging, CARD_FILE), "w", encoding="utf-8") as handle:
        handle.write(_model_card(version, full))
    os.rename(staging, os.path.join(root, version))
    LOGGER.info("registered %s/%s", MODEL_KIND, version)
    return version


def load_model(version: str = "latest", registry_dir: Optional[str] = None,
               review_threshold: Optional[float] = None):
    """Loads a registered model as a :class:`~envleads.models.pollution.PollutionModel`.

    Raises:
        ModelNotFoundError: no such version (or an empty registry for ``"latest"``).
        ModelMismatchError: the model was trained with another scikit-learn version or label set.
    """
    from envleads.models.pollution import DEFAULT_REVIEW_THRESHOLD, PollutionModel

    version = _resolve(version, registry_dir)
    metadata = read_metadata(version, registry_dir)
    _check_compatible(version, metadata)
    pipeline = joblib.load(os.path.join(_kind_dir(registry_dir), version, MODEL_FILE))
    return PollutionModel(pipeline, version=version,
                          review_threshold=metadata.get("review_threshold", DEFAULT_REVIEW_THRESHOLD)
                          if review_threshold is None else review_threshold)


def train_and_register(records: List[dict], registry_dir: Optional[str] = None,
                       command: Optional[str] = None, cv_folds: int = 0,
                       **hyper: Any) -> str:
    """Trains on ``records`` (synthetic rows marked ``synthetic``), registers, returns the version.

    With ``cv_folds`` the metrics are a cross-validation on the real rows (project rows always on
    the training side); that multiplies the training time by about ``cv_folds + 1``.
    """
    from envleads.models import pollution

    started = time.perf_counter()
    pipeline = pollution.train_model(records, **hyper)
    seconds = round(time.perf_counter() - started, 1)
    metrics = None
    if cv_folds:
        real = [r for r in records if not r.get("synthetic")]
        synthetic = [r for r in records if r.get("synthetic")]
        metrics = pollution.cross_validate(real, folds=cv_folds, extra_train=synthetic, **hyper)
    classify = pipeline.named_steps["classify"]
    cues = pipeline.named_steps["features"].transformer_list
    terms_version = next((step.terms_version_ for name, step in cues if name == "cues"), None)
    metadata = {
        "training_fingerprint": training_fingerprint(records),
        "training_rows": len(records),
        "synthetic_rows": sum(1 for r in records if r.get("synthetic")),
        "hyper": {**pollution.DEFAULT_HYPER, **hyper},
        "thresholds": [round(float(t), 3) for t in classify.thresholds_array()],
        "review_threshold": pollution.DEFAULT_REVIEW_THRESHOLD,
        "type_terms_version": terms_version,
        "training_seconds": seconds,
        "metrics": metrics,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
    }
    return register(pipeline, metadata, registry_dir)


def default_training_records() -> List[dict]:
    """The default training set: the project's own rows plus the **development part** of the real
    labelled messages when ``../shared/data`` is present (see :mod:`envleads.models.protocol`).

    The locked part is never trained on, so the default model can be scored on it through
    ``envleads batch`` (``bench/bench_pollution_locked.py``) and that figure is a result."""
    from envleads.models import pollution, protocol

    development, _ = protocol.real_parts(pollution.shared_data_dir())
    return [dict(r, synthetic=False) for r in development] + pollution.load_project_training()


def _check_compatible(version: str, metadata: Dict) -> None:
    """Raises :class:`ModelMismatchError` unless this code can use the model (format, library, labels)."""
    from envleads.models.pollution import LABELS, PIPELINE_FORMAT

    if metadata.get("pipeline_format") != PIPELINE_FORMAT:
        raise ModelMismatchError(
            f"{MODEL_KIND}/{version} has pipeline format {metadata.get('pipeline_format')} but this "
            f"code reads format {PIPELINE_FORMAT}; retrain with `envleads train`")
    if metadata.get("sklearn_version") != sklearn.__version__:
        raise ModelMismatchError(
            f"{MODEL_KIND}/{version} was trained with scikit-learn {metadata.get('sklearn_version')}"
            f" but {sklearn.__version__} is installed; retrain with `envleads train` or install "
            f"scikit-learn=={metadata.get('sklearn_version')}")
    if tuple(metadata.get("labels") or ()) != tuple(LABELS):
        raise ModelMismatchError(
            f"{MODEL_KIND}/{version} predicts labels {metadata.get('labels')} but this code expects "
            f"{list(LABELS)}; retrain with `envleads train`")


def is_loadable(version: str, registry_dir: Optional[str] = None) -> bool:
    """Whether :func:`load_model` would accept ``version`` (format, library and label checks)."""
    try:
        _check_compatible(version, read_metadata(version, registry_dir))
    except ModelMismatchError:
        return False
    return True


def ensure_default_model(registry_dir: Optional[str] = None) -> str:
    """Returns the latest registered version, training and registering the default model first
    when the registry is empty (a fresh clone; artefacts are never committed) or its latest model
    cannot be loaded by this code (older pipeline format or library)."""
    with _ENSURE_LOCK:
        versions = list_versions(registry_dir)
        if versions and is_loadable(versions[-1], registry_dir):
            return versions[-1]
        LOGGER.info("no %s model registered; training the default model", MODEL_KIND)
        return train_and_register(default_training_records(), registry_dir=registry_dir,
                                  command="envleads.models.registry.ensure_default_model()")
