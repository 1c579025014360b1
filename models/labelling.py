"""``envleads labels import|queue``: labelled files as first-class data (issue 22, item 7).

``import`` turns a labelling tool's export (Label Studio JSON or JSON-MIN, a CSV ``id,labels``,
or JSON Lines) into the project's label format: JSON Lines of ``id`` + ``labels`` only, main label
first. The texts are never written: complainant texts stay in ``../shared``, and
``envleads train --extra`` joins the ids with them (:func:`envleads.models.protocol.join_texts`).
Choice names are mapped through ``src/envleads/data/label_aliases.json`` (data, not code); a row
that cannot be imported is skipped and reported with a reason code, never with its text.

``queue`` is active learning: the unlabelled messages the production model is least sure of,
written as ``id`` + the model's guess + its confidence, so the next hour of labelling goes where
the model learns most. ``--label-studio`` also writes them as Label Studio tasks *with* their
texts, for the labelling tool only: that file must stay outside the repository.

The command line itself (argument parsing, printing, exit codes) is :mod:`envleads.cli.models`.
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from envleads.config import ConfigError, OperatorError, data_path, load_json_config
from envleads.evaluation import read_jsonl

ALIASES_FILE = "label_aliases.json"
FORMATS = ("auto", "label-studio", "json-min", "csv", "jsonl")
# Keys Label Studio's JSON-MIN export adds beside the task's data: never a choice.
JSON_MIN_META = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at",
                           "lead_time", "agreement", "title", "text"})
SHOWN_SKIPS = 50
DEFAULT_QUEUE = "label_queue.jsonl"
_REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ label names
def normalise_name(name: Any) -> str:
    """The form names are compared in: case, surrounding space, and space/hyphen vs underscore
    are how tools and people differ in writing one label (``Solid Waste``, ``solid-waste``)."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().casefold())


def load_aliases(path: Optional[str] = None) -> Dict[str, Optional[str]]:
    """Normalised choice name -> project label, or ``None`` for "not environmental".

    Fails fast, naming the file and key, on a label outside the label set or a name given to two
    labels: a wrong mapping would silently mislabel every row that uses it.
    """
    from envleads.records import POLLUTION_LABELS

    path = path or data_path(ALIASES_FILE)
    document = load_json_config(path, required=("version", "none", "labels"))
    table: Dict[str, Optional[str]] = {}
    entries = [(None, name) for name in document["none"]]
    for label, names in document["labels"].items():
        if label not in POLLUTION_LABELS:
            raise ConfigError(f"{path}: labels.{label}: not a label "
                              f"({', '.join(POLLUTION_LABELS)})")
        entries += [(label, name) for name in [label] + list(names)]
    for label, name in entries:
        key = normalise_name(name)
        if key in table and table[key] != label:
            raise ConfigError(f"{path}: {name!r} is given to both {table[key]} and {label}")
        table[key] = label
    return table


def _shown(value: Any) -> str:
    """A choice name fit for a report: short names as they are; a longer value (a wrong column
    could hold a complainant's text, and a dozen Chinese characters can name a person) only by
    its length. Chinese label names have 2-6 characters."""
    text = str(value)
    short = len(text) <= (24 if text.isascii() else 6)
    return repr(text) if short else f"<a value of {len(text)} characters>"


def map_choices(choices: Any, aliases: Dict[str, Optional[str]]
                ) -> Tuple[Optional[List[str]], str, str]:
    """``(labels, reason, detail)``: labels in the given order (main first), ``[]`` when a choice
    means not environmental, or ``None`` with a reason code when the choices are unusable."""
    if isinstance(choices, str):
        choices = [choices]
    if not isinstance(choices, list) or not choices:
        return None, "no_choices", ""
    unknown = [c for c in choices if normalise_name(c) not in aliases]
    if unknown:
        return None, "unknown_label", ", ".join(_shown(c) for c in unknown)
    mapped = [aliases[normalise_name(c)] for c in choices]
    if None in mapped:  # a "not environmental" tick means [], whatever else was ticked
        return [], "", ""
    return list(dict.fromkeys(mapped)), "", ""


# ------------------------------------------------------------------------------ readers
@dataclass(frozen=True)
class Parsed:
    """One row of an export: its place, id, labels (``None`` when skipped) and why not."""

    where: str
    id: Optional[str]
    labels: Optional[List[str]]
    reason: str = ""
    detail: str = ""
    stamp: str = ""  # the annotation's time: a later one replaces an earlier one of the id


def _latest(annotations: Sequence[dict]) -> Tuple[Optional[dict], str]:
    """The latest non-cancelled annotation (by ``updated_at``, then ``created_at``, then list
    order), or ``None`` with the reason."""
    if not annotations:
        return None, "no_annotation"
    kept = [(a.get("updated_at") or a.get("created_at") or "", i, a)
            for i, a in enumerate(annotations)
            if isinstance(a, dict) and not a.get("was_cancelled")]
    if not kept:
        return None, "cancelled"
    return max(kept, key=lambda item: (str(item[0]), item[1]))[2], ""


def _result_choices(annotation: dict, from_name: Optional[str]) -> List[str]:
    choices: List[str] = []
    for result in annotation.get("result") or []:
        if result.get("type") != "choices":
            continue
        if from_name and result.get("from_name") != from_name:
            continue
        choices.extend((result.get("value") or {}).get("choices") or [])
    return choices


def _message_id(value: Any) -> Optional[str]:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def read_label_studio(tasks: Sequence[Any], id_key: str, from_name: Optional[str],
                      aliases: Dict[str, Optional[str]]) -> Iterator[Parsed]:
    """Label Studio's JSON export: one task per message, ``data[id_key]`` the message id,
    ``annotations[].result[]`` of ``type: choices``; the latest non-cancelled annotation counts."""
    for number, task in enumerate(tasks, 1):
        where = f"task {number}"
        data = task.get("data") if isinstance(task, dict) else None
        message_id = _message_id((data or {}).get(id_key))
        if message_id is None:
            yield Parsed(where, None, None, "no_id", f"no data.{id_key}")
            continue
        annotation, reason = _latest(task.get("annotations") or [])
        if annotation is None:
            yield Parsed(where, message_id, None, reason)
            continue
        labels, reason, detail = map_choices(_result_choices(annotation, from_name), aliases)
        yield Parsed(where, message_id, labels, reason, detail,
                     str(annotation.get("updated_at") or annotation.get("created_at") or ""))


def _flat_choices(record: dict, id_key: str, from_name: Optional[str],
                  aliases: Dict[str, Optional[str]]) -> Tuple[Any, str]:
    """The choices of a flat record, and a reason when none or several keys hold choices.

    Without ``from_name`` a key holds choices when its value is ``{"choices": [...]}`` (JSON-MIN,
    several ticked) or names only known labels (one ticked; a plain ``labels`` list)."""
    if from_name:
        return record.get(from_name), ""
    candidates = {}
    for key, value in record.items():
        if key in JSON_MIN_META or key == id_key:
            continue
        if isinstance(value, dict) and isinstance(value.get("choices"), list):
            candidates[key] = value["choices"]
        elif key == "labels" or (isinstance(value, (str, list)) and value and all(
                isinstance(v, str) and normalise_name(v) in aliases
                for v in ([value] if isinstance(value, str) else value))):
            candidates[key] = value
    if len(candidates) > 1:
        return None, "ambiguous_choices"
    return next(iter(candidates.values()), None), ""


def read_flat(records: Iterable[Any], id_key: str, from_name: Optional[str],
              aliases: Dict[str, Optional[str]], task_ids: bool) -> Iterator[Parsed]:
    """Flat objects: Label Studio's JSON-MIN export (``task_ids``: its ``id`` is the task's) or
    JSON Lines rows such as the project's own ``{"id", "labels"}``."""
    for number, record in enumerate(records, 1):
        where = f"row {number}"
        if not isinstance(record, dict):
            yield Parsed(where, None, None, "not_an_object")
            continue
        raw_id = record.get(id_key)
        if task_ids and id_key == "id" and isinstance(raw_id, int):
            # JSON-MIN writes Label Studio's task number over data.id
            yield Parsed(where, None, None, "id_is_task_id",
                         "JSON-MIN replaces `id` with the task number: give --id-key")
            continue
        message_id = _message_id(raw_id)
        if message_id is None:
            yield Parsed(where, None, None, "no_id", f"no {id_key}")
            continue
        choices, reason = _flat_choices(record, id_key, from_name, aliases)
        if reason:
            yield Parsed(where, message_id, None, reason, "give --from-name")
            continue
        if choices == [] and (from_name or "labels") == "labels" and "labels" in record:
            labels, reason, detail = [], "", ""  # the project's own format: [] is a label set
        else:
            labels, reason, detail = map_choices(choices, aliases)
        yield Parsed(where, message_id, labels, reason, detail,
                     str(record.get("updated_at") or record.get("created_at") or ""))


def _split_cell(cell: str) -> Any:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            pass
    return [part.strip() for part in re.split(r"[;|]", cell) if part.strip()]


def read_csv(path: str, id_key: str, aliases: Dict[str, Optional[str]]) -> Iterator[Parsed]:
    """A CSV with a header naming ``id_key`` and ``labels``; labels separated by ``;`` or ``|``
    (or a JSON list). An empty cell is skipped, not taken as []: write ``none``."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if id_key not in header or "labels" not in header:
            raise OperatorError(f"{path}: the CSV header needs columns {id_key!r} and 'labels'")
        for number, row in enumerate(reader, 2):
            where = f"line {number}"
            message_id = _message_id(row.get(id_key))
            if message_id is None:
                yield Parsed(where, None, None, "no_id", f"empty {id_key}")
                continue
            labels, reason, detail = map_choices(_split_cell(row.get("labels") or ""), aliases)
            yield Parsed(where, message_id, labels, reason, detail)


# ------------------------------------------------------------------------------ import
@dataclass
class ImportResult:
    """What an import kept (``id`` + ``labels`` rows, in the export's order) and skipped."""

    format: str
    rows: List[dict] = field(default_factory=list)
    skipped: List[Parsed] = field(default_factory=list)

    def reasons(self) -> Counter:
        return Counter(row.reason for row in self.skipped)


def collect(parsed: Iterable[Parsed], fmt: str) -> ImportResult:
    """Keeps one label set per id: a later annotation (by time, then position) replaces an
    earlier one, which is reported as ``superseded`` when its labels differ."""
    result = ImportResult(fmt)
    kept: Dict[str, Parsed] = {}
    for row in parsed:
        if row.labels is None:
            result.skipped.append(row)
            continue
        before = kept.get(row.id)
        if before is not None and before.stamp > row.stamp:
            row, before = before, row
        if before is not None and before.labels != row.labels:
            result.skipped.append(Parsed(before.where, before.id, None, "superseded",
                                         f"by {row.where}"))
        kept[row.id] = row
    result.rows = [{"id": key, "labels": row.labels} for key, row in kept.items()]
    return result


def read_json_document(path: str) -> Tuple[List[Any], bool]:
    """``(records, is_json_lines)`` of a JSON (a list, or one object) or JSON Lines file."""
    with open(path, encoding="utf-8-sig") as handle:
        content = handle.read()
    try:
        document = json.loads(content)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in content.splitlines() if line.strip()], True
        except json.JSONDecodeError as error:
            raise OperatorError(f"{path}: neither JSON, JSON Lines nor CSV ({error.msg}, line "
                                f"{error.lineno})") from error
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise OperatorError(f"{path}: expected a list of tasks or records")
    return document, False


def detect_format(path: str, records: Sequence[Any], json_lines: bool) -> str:
    """Label Studio tasks hold their fields under ``data``; JSON-MIN records are flat."""
    if json_lines:
        return "jsonl"
    tasks = any(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in records)
    return "label-studio" if tasks else "json-min"


def import_labels(path: str, fmt: str = "auto", id_key: str = "id",
                  from_name: Optional[str] = None,
                  aliases: Optional[Dict[str, Optional[str]]] = None) -> ImportResult:
    """Reads a labelling tool's export (see :data:`FORMATS`) into ``id`` + ``labels`` rows.

    Args:
        fmt: one of :data:`FORMATS`; ``auto``: ``.csv`` by name, the others by content.
        id_key: the key of the task data (column of a CSV) holding the message id.
        from_name: only the choices of this control (Label Studio's ``from_name``).
    """
    aliases = load_aliases() if aliases is None else aliases
    if fmt == "csv" or (fmt == "auto" and path.lower().endswith(".csv")):
        return collect(read_csv(path, id_key, aliases), "csv")
    records, json_lines = read_json_document(path)
    fmt = detect_format(path, records, json_lines) if fmt == "auto" else fmt
    if fmt == "label-studio":
        return collect(read_label_studio(records, id_key, from_name, aliases), fmt)
    return collect(read_flat(records, id_key, from_name, aliases, fmt == "json-min"), fmt)


def inside_repo(path: str) -> bool:
    """Whether ``path`` is inside this checkout (where a file of complainant texts must never be)."""
    absolute = os.path.abspath(path)
    return os.path.commonpath([absolute, _REPO_DIR]) == _REPO_DIR


def write_jsonl(rows: Iterable[dict], path: str) -> int:
    """Writes JSON Lines through a temporary file and a rename (no half-written file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = f"{path}.tmp-{os.getpid()}"
    count = 0
    with open(staging, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    os.replace(staging, path)
    return count


def import_report(result: ImportResult, out: str, known: Optional[Set[str]],
                  project: Dict[str, List[str]]) -> List[str]:
    """The lines ``import`` prints: counts, reasons, each skipped row (place, id, reason; never
    text) and how the ids relate to the shared texts and the project's labels."""
    environmental = sum(1 for row in result.rows if row["labels"])
    lines = [f"imported {len(result.rows)} rows ({environmental} environmental, "
             f"{len(result.rows) - environmental} not) from a {result.format} export to {out}"]
    if result.skipped:
        counts = ", ".join(f"{reason} {n}" for reason, n in result.reasons().most_common())
        lines.append(f"skipped {len(result.skipped)} rows: {counts}")
        for row in result.skipped[:SHOWN_SKIPS]:
            lines.append(f"  {row.where}: id {row.id or '-'}: {row.reason}"
                         + (f" ({row.detail})" if row.detail else ""))
        if len(result.skipped) > SHOWN_SKIPS:
            lines.append(f"  ... and {len(result.skipped) - SHOWN_SKIPS} more")
    ids = [row["id"] for row in result.rows]
    if known is not None:
        unknown = sum(1 for key in ids if key not in known)
        if unknown:
            lines.append(f"warning: {unknown} ids are not in the shared texts: `envleads train "
                         "--extra` will refuse this file until they are")
    again = [key for key in ids if key in project]
    if again:
        differ = sum(1 for row in result.rows if row["id"] in project
                     and set(row["labels"]) != set(project[row["id"]]))
        lines.append(f"note: {len(again)} ids already have project labels in models/labels/ "
                     f"({differ} with other labels)")
    return lines


# ------------------------------------------------------------------------------ queue
def labelled_ids(extra_files: Sequence[str], shared_dir: Optional[str]) -> Set[str]:
    """Ids that already have a label: every file of ``models/labels/``, the shared
    ``pollution_dev.jsonl``, and ``extra_files`` (imports not yet in the project)."""
    from envleads.models import protocol

    paths = [os.path.join(protocol.LABELS_DIR, name) for name in os.listdir(protocol.LABELS_DIR)
             if name.endswith(".jsonl")] + list(extra_files)
    if shared_dir and os.path.exists(os.path.join(shared_dir, "pollution_dev.jsonl")):
        paths.append(os.path.join(shared_dir, "pollution_dev.jsonl"))
    ids: Set[str] = set()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            ids.update(str(json.loads(line)["id"]) for line in handle if line.strip())
    return ids


def read_messages(path: str) -> List[dict]:
    """Messages to score: JSON Lines with ``id`` (or ``complaint_id``, the batch input's),
    ``text`` and an optional ``title``."""
    rows = []
    for number, row in enumerate(read_jsonl(path), 1):
        key = row.get("id", row.get("complaint_id"))
        if key is None or not isinstance(row.get("text"), str):
            raise OperatorError(f"{path}: row {number}: a message needs 'id' and 'text'")
        rows.append(dict(row, id=str(key)))
    return rows


def score_messages(model, messages: Sequence[dict], batch_size: int = 256) -> List[dict]:
    """The model's guess for each message with its confidence (the probability that the whole
    label set is right) and margin (how close the nearest label's probability is to its
    threshold): the two ways a decision can be unsure."""
    from envleads.models.pollution import segment_docs

    thresholds = model.thresholds
    scored = []
    for start in range(0, len(messages), batch_size):
        batch = messages[start:start + batch_size]
        docs = segment_docs([(m.get("title") or "", m["text"]) for m in batch])
        probabilities = model.predict_proba(docs)
        for message, prediction, row in zip(batch, model.predict(docs), probabilities):
            scored.append({"id": message["id"], "guess": prediction.labels,
                           "confidence": prediction.confidence,
                           "margin": round(float(min(abs(row - thresholds))), 4),
                           "needs_review": prediction.needs_review,
                           "model_version": prediction.model_version})
    return scored


def rank_queue(scored: Sequence[dict], n: int, by: str = "confidence") -> List[dict]:
    """The ``n`` least sure rows, least sure first (ties: the other measure, then the id)."""
    other = "margin" if by == "confidence" else "confidence"
    ranked = sorted(scored, key=lambda row: (row[by], row[other], row["id"]))
    return [dict(row, rank=rank) for rank, row in enumerate(ranked[:n], 1)]


def label_studio_tasks(queue: Sequence[dict], messages: Dict[str, dict]) -> List[dict]:
    """Label Studio import tasks for the queue, texts included. ``message_id`` repeats the id
    because JSON-MIN exports overwrite ``id`` with the task number."""
    return [{"data": {"id": row["id"], "message_id": row["id"],
                      "title": messages[row["id"]].get("title") or "",
                      "text": messages[row["id"]]["text"]},
             "meta": {"rank": row["rank"], "guess": row["guess"],
                      "confidence": row["confidence"]}}
            for row in queue]
