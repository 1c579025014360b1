"""Model registry: one folder per trained pollution-type model, with what produced it.

Layout: ``<registry>/pollution_type/<version>/`` holding ``model.joblib``, ``metadata.json``
(label set, sha256 of the training rows and of every data file read, dictionary and cue-term
versions, library versions, metrics, locked-part metrics, training time, command, created_at),
``training_rows.json`` (the ids and text hashes of the training rows, so an evaluation on them can
say it is not a result) and ``MODEL_CARD.md``. Versions sort by time:
``pt-YYYYMMDD-HHMMSS-<6 hex of the training fingerprint>``.

Stages: ``<registry>/pollution_type/aliases.json`` names the ``production`` version, which the
pipeline runs (``--model_version production``, the default), with the history of every promotion
and rollback. Training registers a version without promoting it (except the first one of an empty
registry); an analyst promotes with ``envleads models promote`` (``envleads models`` lives in
:mod:`envleads.models.registry_stages`). ``latest`` still means the newest folder, for whoever asks.

Only artefacts this project wrote are loaded (joblib runs pickle, which executes code); a
scikit-learn version or label-set mismatch is refused at load time instead of failing, or worse
silently mispredicting, on the first batch.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
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
from typing import Any, Dict, List, Optional, Sequence

from envleads.config import OperatorError
from envleads.records import POLLUTION_LABELS

LOGGER = logging.getLogger(__name__)

MODEL_KIND = "pollution_type"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CARD_FILE = "MODEL_CARD.md"
ROWS_FILE = "training_rows.json"
ALIASES_FILE = "aliases.json"
PRODUCTION = "production"
LATEST = "latest"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ENSURE_LOCK = threading.Lock()
# What an operator runs when a model cannot be used: never an automatic retrain on default data,
# which would drop the rows the promoted model was trained on.
# Options removed from the estimator with their off values (measured without gain): a format-6
# model trained with one on would load without it and predict otherwise, so it is refused.
_REMOVED_OPTIONS = {"model": "lr", "rule_view": False, "stack": False}
_RETRAIN = "fix: `envleads train`, then `envleads models promote VERSION` with the new version"
_FIX = ("fix: `envleads train` then `envleads models promote VERSION` (or `envleads models "
        "promote` an older loadable version, see `envleads models list`)")


class ModelMismatchError(RuntimeError):
    """A registered model cannot be used by this installation (library or label-set mismatch)."""


class ModelNotFoundError(FileNotFoundError):
    """No registered model matches the requested version."""


class UnusableModelError(OperatorError):
    """The model a run asked for (production by default) is missing or cannot be loaded here; it
    is never silently replaced by a retrained one. The message says the fix."""


def _sklearn_version() -> str:
    """The installed scikit-learn's version, read without importing it (``envleads --help`` and
    the registry commands that only read metadata stay fast)."""
    from importlib.metadata import version

    return version("scikit-learn")

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
    if version == PRODUCTION:
        target = production_version(registry_dir)
        if target is None:
            raise ModelNotFoundError(
                f"no {PRODUCTION} model in {_kind_dir(registry_dir)}; run `envleads train` (the "
                "first model of an empty registry becomes production) or `envleads models promote "
                "VERSION`")
        if target not in versions:
            raise ModelNotFoundError(
                f"{PRODUCTION} names {MODEL_KIND} model {target!r}, which is not in "
                f"{_kind_dir(registry_dir)}; {_FIX}")
        return target
    if version == LATEST:
        if not versions:
            raise ModelNotFoundError(f"no {MODEL_KIND} model in {_kind_dir(registry_dir)}; "
                                     "run `envleads train`")
        return versions[-1]
    if version not in versions:
        raise ModelNotFoundError(f"{MODEL_KIND} model {version!r} not in {_kind_dir(registry_dir)}")
    return version


def resolve(version: str, registry_dir: Optional[str] = None) -> str:
    """The registered version ``version`` names (``production`` and ``latest`` resolved).

    Raises:
        ModelNotFoundError: no such version, no alias, or an empty registry.
    """
    return _resolve(version, registry_dir)


def read_metadata(version: str = LATEST, registry_dir: Optional[str] = None) -> Dict[str, Any]:
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


def register(estimator, metadata: Dict[str, Any], registry_dir: Optional[str] = None) -> str:
    """Saves a fitted estimator with its metadata and model card; returns the new version.

    ``metadata`` must hold ``training_fingerprint``; library versions, label set and created_at
    are filled in here. The folder is written under a temporary name and renamed, so a reader
    never sees a half-written model.
    """
    import jieba

    from envleads.models.pollution import PIPELINE_FORMAT
    from envleads.text import DICTIONARY_VERSION, segmenter_engine

    fingerprint = metadata["training_fingerprint"]
    metadata = dict(metadata)
    row_index = metadata.pop("training_row_index", None)
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
        "sklearn_version": _sklearn_version(),
        "jieba_version": getattr(jieba, "__version__", "unknown"),
        "segmenter": segmenter_engine(),
        "pipeline_format": PIPELINE_FORMAT,
        "python_version": platform.python_version(),
        "created_at": now.isoformat(timespec="seconds"),
        **metadata,
    }
    staging = tempfile.mkdtemp(prefix=f".{version}.", dir=root)
    import joblib

    joblib.dump(estimator, os.path.join(staging, MODEL_FILE), compress=3)
    with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as handle:
        json.dump(full, handle, ensure_ascii=False, indent=2)
    with open(os.path.join(staging, CARD_FILE), "w", encoding="utf-8") as handle:
        handle.write(_model_card(version, full))
    if row_index is not None:
        with open(os.path.join(staging, ROWS_FILE), "w", encoding="utf-8") as handle:
            json.dump(row_index, handle)
    os.rename(staging, os.path.join(root, version))
    LOGGER.info("registered %s/%s", MODEL_KIND, version)
    return version


def load_model(version: str = PRODUCTION, registry_dir: Optional[str] = None,
               review_threshold: Optional[float] = None):
    """Loads a registered model as a :class:`~envleads.models.pollution.PollutionModel`.

    Args:
        version: a version, ``"production"`` (the alias) or ``"latest"`` (the newest folder).

    Raises:
        ModelNotFoundError: no such version (or an empty registry for ``"latest"``, no alias for
            ``"production"``).
        ModelMismatchError: the model was trained with another scikit-learn version or label set.
    """
    from envleads.models.pollution import DEFAULT_REVIEW_THRESHOLD, PollutionModel

    version = _resolve(version, registry_dir)
    metadata = read_metadata(version, registry_dir)
    _check_compatible(version, metadata)
    import joblib

    estimator = joblib.load(os.path.join(_kind_dir(registry_dir), version, MODEL_FILE))
    return PollutionModel(estimator, version=version,
                          review_threshold=metadata.get("review_threshold", DEFAULT_REVIEW_THRESHOLD)
                          if review_threshold is None else review_threshold)


def train_and_register(records: List[dict], registry_dir: Optional[str] = None,
                       command: Optional[str] = None, cv_folds: int = 0,
                       data_files: Optional[List[str]] = None, locked_part: bool = True,
                       **hyper: Any) -> str:
    """Trains on ``records`` (synthetic rows marked ``synthetic``), registers, returns the version.

    The version is registered, not promoted (see :func:`promote`). With ``cv_folds`` the metrics
    are a cross-validation on the real rows (project rows always on the training side); that
    multiplies the training time by about ``cv_folds + 1``. ``data_files`` (the files the records
    came from) are recorded with their sha256. With ``locked_part`` and the shared data present,
    the new model is scored on the locked part of the real labels (seconds), so versions can be
    listed side by side on the same rows.
    """
    from envleads.models import pollution

    started = time.perf_counter()
    estimator = pollution.train_model(records, **hyper)
    seconds = round(time.perf_counter() - started, 1)
    metrics = None
    if cv_folds:
        real = [r for r in records if not r.get("synthetic")]
        synthetic = [r for r in records if r.get("synthetic")]
        metrics = pollution.cross_validate(real, folds=cv_folds, extra_train=synthetic, **hyper)
        # every out-of-fold row would make metadata.json (read by `models list`) heavy
        metrics.pop("predictions", None)
    metadata = {
        "training_fingerprint": training_fingerprint(records),
        "training_rows": len(records),
        "synthetic_rows": sum(1 for r in records if r.get("synthetic")),
        "hyper": {**pollution.DEFAULT_HYPER, **hyper},
        "thresholds": [round(float(t), 3) for t in estimator.thresholds_],
        "review_threshold": pollution.DEFAULT_REVIEW_THRESHOLD,
        "type_terms_version": estimator.type_terms_version(),
        "training_seconds": seconds,
        "metrics": metrics,
        "locked_metrics": locked_metrics(estimator, records) if locked_part else None,
        "data_files": file_digests(data_files) if data_files is not None else None,
        "training_row_index": training_row_index(records),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
    }
    return register(estimator, metadata, registry_dir)


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
            f"code reads format {PIPELINE_FORMAT}; {_RETRAIN}")
    removed = {key: value for key, value in (metadata.get("hyper") or {}).items()
               if key in _REMOVED_OPTIONS and value != _REMOVED_OPTIONS[key]}
    if removed:
        raise ModelMismatchError(
            f"{MODEL_KIND}/{version} was trained with options this code no longer has "
            f"({json.dumps(removed)}); {_RETRAIN}")
    if metadata.get("sklearn_version") != _sklearn_version():
        raise ModelMismatchError(
            f"{MODEL_KIND}/{version} was trained with scikit-learn {metadata.get('sklearn_version')}"
            f" but {_sklearn_version()} is installed; {_RETRAIN}, or install "
            f"scikit-learn=={metadata.get('sklearn_version')}")
    if tuple(metadata.get("labels") or ()) != tuple(LABELS):
        raise ModelMismatchError(
            f"{MODEL_KIND}/{version} predicts labels {metadata.get('labels')} but this code expects "
            f"{list(LABELS)}; {_RETRAIN}")


def unusable_reason(version: str, registry_dir: Optional[str] = None) -> Optional[str]:
    """Why :func:`load_model` would refuse ``version`` (the mismatch, not the fix), or ``None``."""
    try:
        _check_compatible(version, read_metadata(version, registry_dir))
    except ModelMismatchError as error:
        return str(error).split(";")[0]
    return None


def is_loadable(version: str, registry_dir: Optional[str] = None) -> bool:
    """Whether :func:`load_model` would accept ``version`` (format, library and label checks)."""
    try:
        _check_compatible(version, read_metadata(version, registry_dir))
    except ModelMismatchError:
        return False
    return True


# ------------------------------------------------------------------ data files and training rows
def file_digests(paths: Sequence[str]) -> List[Dict[str, Any]]:
    """``{"path", "sha256", "bytes"}`` of each file: which bytes exactly a version learned from."""
    out = []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out.append({"path": os.path.abspath(path), "sha256": digest.hexdigest(),
                    "bytes": os.path.getsize(path)})
    return out


def text_key(record: dict) -> str:
    """16 hex of the sha256 of a row's text without white space: the same message re-exported
    (other id, other line breaks) is still recognised as a training row."""
    text = "".join(str(record.get("text") or "").split())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def training_row_index(records: Sequence[dict]) -> Dict[str, List[str]]:
    """The ids and text keys of the training rows (stored as ``training_rows.json``)."""
    return {"ids": sorted({str(r["id"]) for r in records if r.get("id") is not None}),
            "text_keys": sorted({text_key(r) for r in records})}


def _overlap(index: Dict[str, Any], records: Sequence[dict]) -> Dict[str, int]:
    ids, keys = set(index.get("ids") or ()), set(index.get("text_keys") or ())
    by_id = [r.get("id") is not None and str(r["id"]) in ids for r in records]
    by_text = [text_key(r) in keys for r in records]
    return {"rows": len(records), "overlap": sum(a or b for a, b in zip(by_id, by_text)),
            "by_id": sum(by_id), "by_text": sum(by_text)}


def training_overlap(version: str, records: Sequence[dict], registry_dir: Optional[str] = None
                     ) -> Optional[Dict[str, int]]:
    """How many of ``records`` the model ``version`` was trained on (same id or same text):
    ``{"rows", "overlap", "by_id", "by_text"}``, or ``None`` for a version without a row index."""
    path = os.path.join(_kind_dir(registry_dir), _resolve(version, registry_dir), ROWS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return _overlap(json.load(handle), records)


def overlap_warning(version: str, overlap: Optional[Dict[str, int]]) -> Optional[str]:
    """A loud warning when a score is measured on rows the model learned from, else ``None``."""
    if not overlap or not overlap["overlap"]:
        return None
    share = overlap["overlap"] / max(overlap["rows"], 1)
    bar = "!" * 78
    return (f"{bar}\nWARNING: {overlap['overlap']} of {overlap['rows']} rows ({share:.0%}) were "
            f"TRAINING ROWS of {version} ({overlap['by_id']} by id, "
            f"{overlap['by_text']} by text).\n"
            f"Figures of {version} on these rows are NOT A RESULT: they measure what the model "
            "memorised, not how it does on messages it has never seen.\nScore it on rows it was "
            "not trained on (the locked part, for a model trained on the development part).\n"
            + bar)


def compact_metrics(report: Dict[str, Any]) -> Dict[str, Any]:
    """The comparable figures of an evaluation report (no errors, no confusion)."""
    keys = ("n", "micro_f1", "macro_f1_frequent", "macro_f1_all", "env_accuracy", "exact_match")
    return {**{k: report.get(k) for k in keys},
            "per_label": {label: {"f1": m["f1"], "support": m["support"]}
                          for label, m in report.get("per_label", {}).items()}}


def locked_metrics(estimator, records: Sequence[dict]) -> Optional[Dict[str, Any]]:
    """The fitted ``estimator`` scored on the locked part of the real labels, or ``None`` when the
    shared data is absent. ``training_overlap`` counts locked rows among ``records`` (0 when the
    protocol was followed; otherwise the figure is not a result)."""
    from envleads.models import pollution, protocol

    locked = protocol.real_parts(pollution.shared_data_dir())[1]
    if not locked:
        return None
    started = time.perf_counter()
    report = pollution.evaluate(pollution.PollutionModel(estimator, version="unregistered"), locked)
    return {**compact_metrics(report),
            "training_overlap": _overlap(training_row_index(records), locked)["overlap"],
            "split": {"locked_percent": protocol.LOCKED_PERCENT,
                      "salt": protocol.SPLIT_SALT.decode("ascii")},
            "seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------ stages: the production alias
def _aliases_path(registry_dir: Optional[str]) -> str:
    return os.path.join(_kind_dir(registry_dir), ALIASES_FILE)


def read_aliases(registry_dir: Optional[str] = None) -> Dict[str, Any]:
    """``{"aliases": {alias: version}, "history": [entry, ...]}`` (empty for a new registry)."""
    path = _aliases_path(registry_dir)
    if not os.path.exists(path):
        return {"aliases": {}, "history": []}
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    document.setdefault("aliases", {})
    document.setdefault("history", [])
    return document


def production_version(registry_dir: Optional[str] = None) -> Optional[str]:
    """The version the ``production`` alias names, or ``None`` when nothing was promoted."""
    return read_aliases(registry_dir)["aliases"].get(PRODUCTION)


@contextlib.contextmanager
def _aliases_for_update(registry_dir: Optional[str]):
    """The alias document under an exclusive file lock, written back atomically on success (two
    promotions at once must not lose one of them, a reader never sees half a file)."""
    import fcntl

    root = _kind_dir(registry_dir)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ALIASES_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = read_aliases(registry_dir)
        yield document
        fd, staging = tempfile.mkstemp(prefix=f".{ALIASES_FILE}.", dir=root)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)
        os.replace(staging, _aliases_path(registry_dir))


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a container without a passwd entry
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{platform.node()}"


def _usable(version: str, registry_dir: Optional[str]) -> None:
    """Raises :class:`UnusableModelError` (with the fix) unless ``version`` can be loaded here."""
    if version not in list_versions(registry_dir):
        raise UnusableModelError(f"{MODEL_KIND} model {version!r} is not in "
                                   f"{_kind_dir(registry_dir)}; {_FIX}")
    try:
        _check_compatible(version, read_metadata(version, registry_dir))
    except ModelMismatchError as error:
        raise UnusableModelError(str(error)) from error


def promotion_stack(history: Sequence[Dict[str, Any]]) -> List[str]:
    """The promoted versions still in force, oldest first: each promotion pushes its version,
    each rollback pops one, so a rollback returns to the version promoted before the current."""
    stack: List[str] = []
    for entry in history:
        if entry.get("alias", PRODUCTION) != PRODUCTION:
            continue
        if entry["action"] == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry["version"])
    return stack


def _record(document: Dict[str, Any], action: str, version: str, command: Optional[str],
            note: Optional[str]) -> Dict[str, Any]:
    entry = {"alias": PRODUCTION, "action": action, "version": version,
             "previous": document["aliases"].get(PRODUCTION),
             "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "by": _actor(), "command": command or " ".join(shlex.quote(a) for a in sys.argv)}
    if note:
        entry["note"] = note
    document["aliases"][PRODUCTION] = version
    document["history"].append(entry)
    return entry


def promote(version: str, registry_dir: Optional[str] = None, command: Optional[str] = None,
            note: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Points ``production`` at ``version`` (a version or ``latest``); returns the history entry,
    or ``None`` when it already is production.

    Raises:
        UnusableModelError: the version is missing or cannot be loaded by this installation
            (promoting it would stop the pipeline at its next start).
    """
    version = _resolve(version, registry_dir) if version in (LATEST, PRODUCTION) else version
    _usable(version, registry_dir)
    with _aliases_for_update(registry_dir) as document:
        if document["aliases"].get(PRODUCTION) == version:
            return None
        return _record(document, "promote", version, command, note)


def rollback(registry_dir: Optional[str] = None, command: Optional[str] = None
             ) -> Dict[str, Any]:
    """Points ``production`` back at the version promoted before the current one.

    Raises:
        UnusableModelError: nothing to roll back to, or that version cannot be loaded.
    """
    with _aliases_for_update(registry_dir) as document:
        stack = promotion_stack(document["history"])
        if len(stack) < 2:
            raise UnusableModelError(
                f"no earlier promoted {MODEL_KIND} model to roll back to in "
                f"{_kind_dir(registry_dir)} (production: {document['aliases'].get(PRODUCTION)})")
        _usable(stack[-2], registry_dir)
        return _record(document, "rollback", stack[-2], command, None)


def ensure_default_model(registry_dir: Optional[str] = None) -> str:
    """Returns the production version, checked loadable; never replaces it silently.

    An empty registry (a fresh clone: artefacts are never committed) gets the default model
    trained and promoted, so the demo runs from a clone. A registry from before aliases adopts its
    newest version when loadable. A production model that cannot be loaded here (older pipeline
    format or library, missing folder) raises :class:`UnusableModelError` with the fix: a
    retrain on default data would drop whatever rows the promoted model was trained on.
    """
    with _ENSURE_LOCK:
        target = production_version(registry_dir)
        if target is not None:
            _usable(target, registry_dir)
            return target
        versions = list_versions(registry_dir)
        if versions:
            try:
                _usable(versions[-1], registry_dir)
            except UnusableModelError as error:
                raise UnusableModelError(
                    f"no {PRODUCTION} alias in {_kind_dir(registry_dir)} and its newest version "
                    f"cannot be used: {error}") from error
            promote(versions[-1], registry_dir, command="envleads.models.registry."
                    "ensure_default_model()", note="adopted: newest version of a registry "
                    "without a production alias")
            LOGGER.warning("no %s alias in %s: promoted the newest version %s", PRODUCTION,
                           _kind_dir(registry_dir), versions[-1])
            return versions[-1]
        LOGGER.warning("no %s model registered: training the default model and promoting it",
                       MODEL_KIND)
        command = "envleads.models.registry.ensure_default_model()"
        version = train_and_register(default_training_records(), registry_dir=registry_dir,
                                     command=command, data_files=default_training_files())
        promote(version, registry_dir, command=command, note="default model of an empty registry")
        return version


def resolve_for_run(version: str, registry_dir: Optional[str] = None) -> str:
    """The concrete version a pipeline run uses for ``--model_version`` (checked loadable here,
    once, instead of in every worker): ``production`` through :func:`ensure_default_model`,
    ``latest`` the newest folder (the default model first in an empty registry), else as given."""
    if version == PRODUCTION:
        return ensure_default_model(registry_dir)
    if version == LATEST and not list_versions(registry_dir):
        ensure_default_model(registry_dir)
    try:
        version = _resolve(version, registry_dir)
    except ModelNotFoundError as error:
        raise UnusableModelError(str(error)) from error
    _usable(version, registry_dir)
    return version


def default_training_files() -> List[str]:
    """The files :func:`default_training_records` reads (recorded with their sha256)."""
    return training_files_for([], include_shared=True)


def training_files_for(extra: Sequence[str], include_shared: bool) -> List[str]:
    """The data files a training reads: ``extra`` labelled files, the project's rows and, with
    ``include_shared``, the shared real labels of :mod:`envleads.models.protocol` when present."""
    from envleads.models import pollution, protocol

    files = list(extra) + list(pollution.training_files())
    shared = pollution.shared_data_dir() if include_shared else None
    if shared:
        files += [os.path.join(shared, name) for name in ("pollution_dev.jsonl",
                                                          "unlabelled_real.jsonl")]
        files += protocol.project_label_files()
    return [path for path in files if os.path.exists(path)]
