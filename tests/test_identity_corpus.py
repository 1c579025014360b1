"""The project's adversarial identity corpus (tests/data/identity/corpus.jsonl, see its README):
through ``mask_identity`` row by row, then through every output of ``envleads batch`` (both
engines), the lead exports and the DEBUG logs of the whole run.

A hit is an identity of a row (``must_not_contain``) found in a text after both are brought to one
comparable form: NFKC, simplified script, Chinese numerals as digits, separators gone, case
folded. So a number masked only in part (``139 [电话]``) or a name re-spelled in traditional
script still counts as a hit.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import logging
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from envleads import cli
from envleads.privacy import (ADDRESS_MASK, EMAIL_MASK, ID_MASK, NAME_MASK, PHONE_MASK, PLATE_MASK, QQ_MASK,
                              WECHAT_MASK, mask_identity)

CORPUS_PATH = Path(__file__).resolve().parent / "data" / "identity" / "corpus.jsonl"
CORPUS: List[dict] = [json.loads(line) for line in CORPUS_PATH.read_text("utf-8").splitlines() if line.strip()]
NEAR_MISS = "near_miss"

_NUMERALS = str.maketrans("〇○零幺一二三四五六七八九壹贰叁肆伍陆柒捌玖", "0001123456789123456789")
_SEPARATORS = re.compile(r"[\s.\-\u00b7\u2010-\u2015\u2212\u30fb/_()（）]")


@lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s").convert


def comparable(text: str) -> str:
    """One form for identities and outputs alike (see the module docstring)."""
    text = _t2s()(unicodedata.normalize("NFKC", text)).translate(_NUMERALS)
    return _SEPARATORS.sub("", text).casefold()


IDENTITIES = [(row["id"], item, comparable(item)) for row in CORPUS for item in row["must_not_contain"]]


def leaks(text: str) -> List[str]:
    """``row id: identity`` for every identity of the corpus found in ``text``."""
    view = comparable(text)
    return [f"{row_id}: {item}" for row_id, item, form in IDENTITIES if form in view]


# ---- the corpus itself -----------------------------------------------------------------------------

def test_the_corpus_covers_every_variant_and_its_identities_occur_nowhere_else():
    classes = Counter(row["class"] for row in CORPUS)
    assert len(CORPUS) >= 120 and len({row["id"] for row in CORPUS}) == len(CORPUS)
    assert classes[NEAR_MISS] >= 20
    assert {"phone_separators", "phone_glued", "phone_numerals", "phone_landline", "id_15", "id_grouped",
            "email_fullwidth", "email_spelled", "name_spaced", "reporter_literal", "wechat", "qq", "plate",
            "home_unit"} <= set(classes)
    assert min(classes.values()) >= 4
    for row in CORPUS:
        assert bool(row["must_not_contain"]) == (row["class"] != NEAR_MISS), row["id"]
        assert all(item in row["text"] for item in row["must_not_contain"] + row["must_keep"]), row["id"]
    # a hit in the product outputs must mean a leak, never another row's legitimate text
    kept = [comparable(keep) for row in CORPUS for keep in row["must_keep"]] + [comparable(FILLER)]
    assert [(row_id, item) for row_id, item, form in IDENTITIES if any(form in text for text in kept)] == []


@pytest.mark.parametrize("row", CORPUS, ids=[row["id"] for row in CORPUS])
def test_masking_removes_every_identity_and_keeps_everything_else(row):
    masked = mask_identity(row["text"], row["reporter"])
    assert [hit for hit in leaks(masked) if hit.startswith(row["id"] + ":")] == []
    assert [keep for keep in row["must_keep"] if keep not in masked] == []


def test_the_comparison_counts_a_half_masked_number_as_a_hit():
    assert leaks("请回电139  2201  [电话]") == []
    assert leaks("请回电139  2201  3344") == ["phone_separators-01: 139  2201  3344"]
    assert "reporter_literal-06: 陳麗萍" in leaks("陈丽萍反映")  # the other script


# ---- every product output ---------------------------------------------------------------------------

FILLER = "附近有污染问题，请环保部门尽快处理。"
MASKS = (PHONE_MASK, ID_MASK, NAME_MASK, EMAIL_MASK, WECHAT_MASK, QQ_MASK, PLATE_MASK, ADDRESS_MASK)


def _event_lines() -> List[str]:
    """One event per row, the identity in the text, or (every fifth row from the second) in the
    title, or (every fifth from the third) in the address; then invalid events carrying identity,
    which must dead-letter without quoting it."""
    lines = []
    for n, row in enumerate(CORPUS):
        event = {"complaint_id": f"idc-{row['id']}", "channel": "web", "text": row["text"],
                 "received_at": f"2026-05-01T{8 + n // 60:02d}:{n % 60:02d}:00+08:00", "reporter": row["reporter"]}
        if n % 5 == 1:
            event.update(title=row["text"], text=f"{row['must_keep'][0]}{FILLER}" if row["must_keep"] else FILLER)
        elif n % 5 == 2:
            event.update(address=row["text"], text=FILLER)
        lines.append(json.dumps(event, ensure_ascii=False))
    first, second = CORPUS[0], CORPUS[1]
    lines.append(json.dumps({"complaint_id": "idc-dead-late", "received_at": "2199-01-01T00:00:00+08:00",
                             "text": first["text"], "title": second["text"]}, ensure_ascii=False))
    lines.append(json.dumps({"complaint_id": "idc-dead-blank", "received_at": "2026-05-01T07:00:00+08:00",
                             "text": " ", "title": first["text"], "reporter": {"name": "司徒骁华"}}, ensure_ascii=False))
    lines.append(json.dumps({"complaint_id": "idc-dead-cut", "text": second["text"]}, ensure_ascii=False)[:-2])
    return lines


def _strings(value) -> Iterator[str]:
    """The text in a JSON value (numbers such as a lead's text sketch are not text)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _json_lines(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def _project_logging_at_debug(caplog, monkeypatch):
    """The CLI's own logging setup at DEBUG, every record it lets through also kept by caplog
    (its ``basicConfig(force=True)`` drops caplog's handler: it is added back after it)."""
    root = logging.getLogger()
    names = ("apache_beam", "kafka", "jieba")
    saved = list(root.handlers), root.level, {name: logging.getLogger(name).level for name in names}
    original = cli.configure_logging

    def configure_and_keep(level: str) -> None:
        original(level)
        root.addHandler(caplog.handler)

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(cli, "configure_logging", configure_and_keep)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("identity-corpus") / "complaints.jsonl"
    path.write_text("\n".join(_event_lines()) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("engine", ["beam", "rounds"])
def test_no_identity_in_any_batch_output_export_or_debug_log(engine, source, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("ENVLEADS_PSEUDONYM_KEY", "identity-corpus-key")
    monkeypatch.delenv("ENVLEADS_PSEUDONYM_KEY_FILE", raising=False)
    enriched, leads, dead = tmp_path / "enriched.jsonl", tmp_path / "leads.jsonl", tmp_path / "dead.jsonl"
    engine_args = ["--engine", "rounds", "--enrich-workers", "0"] if engine == "rounds" else ["--runner=FnApiRunner"]
    with _project_logging_at_debug(caplog, monkeypatch):
        assert cli.main(["--log-level", "DEBUG", "batch", "--input", str(source), "--output", str(enriched),
                         "--leads", str(leads), "--dead-letter", str(dead), *engine_args]) == 0
        logging.getLogger("envleads.tests").debug("capture check")  # kept: the capture works at DEBUG
        for fmt in ("csv", "jsonl", "geojson"):
            assert cli.main(["--log-level", "DEBUG", "export", "--input", str(leads), "--format", fmt,
                             "--output", str(tmp_path / f"export.{fmt}")]) == 0
    printed = capsys.readouterr()

    # the scan finds every row's identity where it is (the input), so a clean output means something
    assert {hit.split(":")[0] for hit in leaks(source.read_text("utf-8"))} == \
        {row["id"] for row in CORPUS if row["must_not_contain"]}
    lead_records = _json_lines(leads)
    dead_records = _json_lines(dead)
    assert len(_json_lines(enriched)) == len(CORPUS) and len(dead_records) == 3
    # masked texts reached the outputs: every kind of mask is in the lead summaries
    summaries = " ".join(lead["summary"] for lead in lead_records)
    assert [mask for mask in MASKS if mask not in summaries] == []
    # a dead letter keeps the raw event (restricted, like complaints.raw) only in original_base64
    originals = " ".join(base64.b64decode(record.pop("original_base64")).decode("utf-8") for record in dead_records)
    assert leaks(originals)

    places: Dict[str, List[str]] = {
        "enriched": [text for record in _json_lines(enriched) for text in _strings(record)],
        "leads": [text for record in lead_records for text in _strings(record)],
        "dead letters": [text for record in dead_records for text in _strings(record)],
        "export.csv": [cell for row in csv.reader(io.StringIO((tmp_path / "export.csv").read_text("utf-8-sig")))
                       for cell in row],
        "export.jsonl": [text for record in _json_lines(tmp_path / "export.jsonl") for text in _strings(record)],
        "export.geojson": list(_strings(json.loads((tmp_path / "export.geojson").read_text("utf-8")))),
        "printed": [printed.out, printed.err],
        "logs": [record.getMessage() + (record.exc_text or "") for record in caplog.records],
    }
    found = {where: sorted({hit for text in texts for hit in leaks(text)}) for where, texts in places.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}
    # DEBUG was on for envleads, and Beam (whose workers log every element at DEBUG) stayed at INFO
    assert "capture check" in caplog.messages
    assert [record.name for record in caplog.records
            if record.name.startswith("apache_beam") and record.levelno < logging.INFO] == []
