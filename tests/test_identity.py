"""No complainant identity anywhere the demo writes: topics, files, logs (DEBUG), metric names.

``envleads demo`` (the command of ``make demo``) runs in this process against a broker started here,
so that after it returns every topic can still be read. Before it starts, hostile events that carry
identity (valid ones with names, phones and ID numbers in the text; invalid ones that must
dead-letter: oversize texts with identity, far timestamps, truncated Avro, JSON where Avro was due)
are put on the raw topic beside the demo's 400 generated complaints. While it runs: log records
at DEBUG are kept, Beam metric names are recorded as they are created, the working directory and
the temporary directory are private to the run, and folders the run deletes are copied first.

Then the scan: the generator's reporter names, phones and ID numbers (as written, as formatted in
texts: spaced, hyphenated, full-width; names also in traditional characters) must not occur in the
enriched, lead or dead-letter topics (a dead letter's ``original`` is the raw event itself,
restricted like ``complaints.raw``: only its other fields are scanned), in any file written, in the
printed output, in any log line or in any metric name. The same for the pseudonymisation key.
``complaints.raw`` is excluded: it legitimately holds the identity, and it proves the scan finds
identity where there is some.

Other tests cover parts of this: tests/test_end_to_end.py scans ``envleads stream`` at DEBUG over
enriched and leads; tests/test_demo.py scans the demo's printed table for phones and ID numbers.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Dict, Iterable, List, Set

import pytest

from envleads import schemas
from envleads.generator import generate_events
import test_identity_corpus



def _demo_test(test):
    """The demo-scanning tests share one demo run on a broker of their own (about a minute)."""
    return pytest.mark.kafka(pytest.mark.slow(test))


COUNT, SEED = 400, 7
ROOT = Path(__file__).resolve().parent.parent

# Every third row of the project's adversarial identity corpus (tests/data/identity/) with identity in it.
CORPUS_ON_KAFKA = [row for row in test_identity_corpus.CORPUS if row["must_not_contain"]][::3]

# Identities of the extra hostile events (not from the generator's banks, so they occur nowhere else).
EXTRA_PEOPLE = [
    {"name": "欧阳静雯", "phone": "13911112222", "id_number": "110101198803150027"},
    {"name": "司马庆丰", "phone": "15022223333", "id_number": "32010619750812001X"},
    {"name": "上官慧琳", "phone": "18633334444", "id_number": "440305199212240046"},
]


def _extra_events() -> List[bytes]:
    """Identity-bearing events, valid and invalid, as the raw topic would carry them."""
    events = []
    for n, person in enumerate(EXTRA_PEOPLE):
        phone_spaced = f"{person['phone'][:3]} {person['phone'][3:7]} {person['phone'][7:]}"
        text = (f"我叫{person['name']}，电话{phone_spaced}，身份证号{person['id_number']}。"
                f"南京市鼓楼区化工厂夜里排放刺鼻废气，{person['name']}家的窗户都不敢开。")
        base = {"complaint_id": f"idt-{n}", "received_at": "2026-03-02T21:15:00+08:00", "text": text,
                "title": f"{person['name']}反映废气", "channel": "web", "reporter": person}
        events.append(schemas.encode(schemas.RAW, base))  # valid: identity masked or keyed
        events.append(schemas.encode(schemas.RAW, {**base, "complaint_id": f"idt-{n}-big",
                                                   "text": text * 400}))  # text_too_large
        events.append(schemas.encode(schemas.RAW, {**base, "complaint_id": f"idt-{n}-late",
                                                   "received_at": "2199-01-01T00:00:00+08:00"}))
        events.append(schemas.encode(schemas.RAW, {**base, "complaint_id": f"idt-{n}-blank",
                                                   "text": " \u200b\x00 ", "title": person["phone"]}))
        events.append(schemas.encode(schemas.RAW, {**base, "complaint_id": f"idt-{n}-early",
                                                   "received_at": "1999-01-01T00:00:00"})[:-7])  # truncated
        events.append(json.dumps(base, ensure_ascii=False).encode("utf-8"))  # JSON where Avro is due
        framed = bytearray(schemas.encode(schemas.RAW, base))
        framed[1:5] = (7).to_bytes(4, "big")
        events.append(bytes(framed))  # unknown schema id
    for n, row in enumerate(CORPUS_ON_KAFKA):  # the adversarial corpus's variants, through the topics
        events.append(schemas.encode(schemas.RAW, {
            "complaint_id": f"idc-{row['id']}", "received_at": f"2026-03-03T{8 + n // 60:02d}:{n % 60:02d}:00+08:00",
            "text": row["text"], "reporter": row["reporter"], "channel": "web"}))
    return events


def _digits_view(text: str) -> str:
    """NFKC (full-width digits fold) with spaces and hyphens gone, so 139 1111-2222 is found too."""
    return re.sub(r"[\s\-\u2010-\u2015]", "", unicodedata.normalize("NFKC", text)).upper()


class IdentityScanner:
    """Finds the generator's identities in a text, in the forms they take in complaint texts."""

    def __init__(self, names: Set[str], numbers: Set[str]):
        from opencc import OpenCC

        traditional = OpenCC("s2t")
        self.names = {name for name in names if len(name) >= 2}
        self.name_forms = self.names | {traditional.convert(name) for name in self.names}
        self.numbers = {number.upper() for number in numbers}

    def hits(self, text: str) -> List[str]:
        found = [name for name in self.name_forms if name in text]
        digits = _digits_view(text)
        found += [number for number in self.numbers if number in digits]
        return sorted(found)


@contextlib.contextmanager
def _private_run(workdir: Path):
    """cwd and TMPDIR private to the run; deleted folders under them copied aside first."""
    cwd, tmp, graveyard = workdir / "cwd", workdir / "tmp", workdir / "deleted"
    for folder in (cwd, tmp, graveyard):
        folder.mkdir()
    original_rmtree, original_tempdir, original_cwd = shutil.rmtree, tempfile.tempdir, os.getcwd()
    saved_env = {name: os.environ.get(name) for name in ("TMPDIR", "ENVLEADS_PSEUDONYM_KEY",
                                                         "ENVLEADS_PSEUDONYM_KEY_FILE")}
    counter = iter(range(10**6))

    def archiving_rmtree(path, *args, **kwargs):
        resolved = Path(os.fspath(path)).resolve()
        if resolved.is_dir() and (tmp in resolved.parents or cwd in resolved.parents):
            original_copytree(resolved, graveyard / f"{next(counter)}-{resolved.name}", dirs_exist_ok=True)
        return original_rmtree(path, *args, **kwargs)

    original_copytree = shutil.copytree
    try:
        os.environ["TMPDIR"] = str(tmp)
        os.environ.pop("ENVLEADS_PSEUDONYM_KEY", None)  # as `make demo`: the run makes its own key
        os.environ.pop("ENVLEADS_PSEUDONYM_KEY_FILE", None)
        tempfile.tempdir = str(tmp)
        shutil.rmtree = archiving_rmtree
        os.chdir(cwd)
        yield {"cwd": cwd, "tmp": tmp, "deleted": graveyard}
    finally:
        os.chdir(original_cwd)
        shutil.rmtree = original_rmtree
        tempfile.tempdir = original_tempdir
        generated_key = os.environ.get("ENVLEADS_PSEUDONYM_KEY")
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _private_run.generated_key = generated_key


class _KeepRecords(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: List[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record):
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _captured_logging_and_metrics():
    """Keeps every log record the CLI's logging setup lets through, and every Beam metric name."""
    from apache_beam.metrics.metric import Metrics

    from envleads import cli

    keeper = _KeepRecords()
    metric_names: List[str] = []
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {name: logging.getLogger(name).level
                                              for name in ("kafka", "apache_beam", "jieba")})
    original_configure = cli.configure_logging
    originals = {kind: getattr(Metrics, kind) for kind in ("counter", "distribution", "gauge")}

    def configure_and_keep(level):
        original_configure(level)
        logging.getLogger().addHandler(keeper)
        keeper.lines.append(f"(root logger level {logging.getLevelName(logging.getLogger().level)})")

    def recording(kind):
        original = originals[kind]

        def make(namespace, name):
            metric_names.append(f"{namespace if isinstance(namespace, str) else namespace.__name__}/{name}")
            return original(namespace, name)
        return staticmethod(make)

    cli.configure_logging = configure_and_keep
    for kind in originals:
        setattr(Metrics, kind, recording(kind))
    try:
        yield keeper.lines, metric_names
    finally:
        cli.configure_logging = original_configure
        for kind, original in originals.items():
            setattr(Metrics, kind, staticmethod(original))
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def _read_topic(bootstrap: str, topic: str, idle_s: float = 3.0) -> list:
    from envleads.pipelines.kafka_edge.read import open_consumer

    consumer = open_consumer(bootstrap, topic, group_id=None)
    records, deadline = [], time.monotonic() + idle_s
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
                deadline = time.monotonic() + idle_s
    finally:
        consumer.close()
    return records


def _files_text(folders: Iterable[Path], newer_than: float = 0.0) -> Dict[str, str]:
    texts = {}
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file() and path.stat().st_mtime >= newer_than:
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return texts


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from kafka import KafkaProducer

    from envleads import cli
    from envleads.config import DEFAULT_TOPICS
    from envleads.ops.broker import EmbeddedBroker, create_topics
    from envleads.ops.kafka_config import client_kwargs

    workdir = tmp_path_factory.mktemp("identity")
    started = time.time() - 1
    extras = _extra_events()
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, list(DEFAULT_TOPICS.values()))
        producer = KafkaProducer(**client_kwargs(bootstrap))
        for payload in extras:
            producer.send(DEFAULT_TOPICS["raw"], value=payload).get(timeout=30)
        producer.close()
        out, err = io.StringIO(), io.StringIO()
        with _private_run(workdir) as folders, _captured_logging_and_metrics() as (log_lines, metric_names), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--log-level", "DEBUG", "demo", "--count", str(COUNT), "--seed", str(SEED),
                             "--bootstrap-servers", bootstrap, "--runner=FnApiRunner"])
        topics = {role: _read_topic(bootstrap, name) for role, name in DEFAULT_TOPICS.items()}
    files = _files_text(folders.values())
    files.update(_files_text([ROOT / "models" / "registry"], newer_than=started))
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "logs": "\n".join(log_lines),
            "metric_names": metric_names, "topics": topics, "files": files, "extras": extras,
            "key": _private_run.generated_key}


@pytest.fixture(scope="module")
def scanner():
    from envleads.divisions import load_divisions

    events = list(generate_events(COUNT, SEED))
    names = {t["reporter_name"] for t in (e.truth for e in events) if t.get("reporter_name")}
    numbers = {value for t in (e.truth for e in events) for value in (t.get("reporter_phone"),
                                                                      t.get("reporter_id_number")) if value}
    # A generated name can also be ordinary words (李永 in 李永巷, a district, a department): then it
    # proves nothing, and is left out. Background: other complaints' lines and the package's data.
    background = [division.name for division in load_divisions()]
    background += [path.read_text("utf-8") for path in (ROOT / "src" / "envleads" / "data").rglob("*.json")]
    by_name: Dict[str, Set[bytes]] = {}
    for event in events:
        if event.truth.get("reporter_name"):
            by_name.setdefault(event.truth["reporter_name"], set()).add(event.line)
    ordinary = {name for name in names
                if any(name in text for text in background)
                or any(name.encode() in event.line for event in events if event.line not in by_name[name])}
    names -= ordinary
    names |= {person["name"] for person in EXTRA_PEOPLE}
    numbers |= {person[field] for person in EXTRA_PEOPLE for field in ("phone", "id_number")}
    assert len(names) > 50 and len(numbers) > 100
    return IdentityScanner(names, numbers)


def _decoded(records, subject, drop=()) -> List[str]:
    texts = []
    for record in records:
        value = schemas.decode(subject, record.value) if record.value is not None else {}
        for field in drop:
            value.pop(field, None)
        texts.append(json.dumps(value, ensure_ascii=False, default=str))
        if record.key:
            texts.append(record.key.decode("utf-8", "replace"))
    return texts


@_demo_test
def test_the_demo_ran_and_the_scan_can_find_identity(demo_run, scanner):
    assert demo_run["code"] == 0, demo_run["stderr"][-2000:]
    assert "rank" in demo_run["stdout"] and "broker stopped" in demo_run["stdout"]
    raw = demo_run["topics"]["raw"]
    assert len(raw) == COUNT + len(demo_run["extras"])
    # complaints.raw is restricted and holds identity: the scanner finds it there (it can fail)
    raw_text = "\n".join(record.value.decode("utf-8", "replace") for record in raw)
    assert len(scanner.hits(raw_text)) > 100
    assert "(root logger level DEBUG)" in demo_run["logs"] and demo_run["metric_names"]


@_demo_test
def test_enriched_leads_and_dead_letter_topics_carry_no_identity(demo_run, scanner):
    topics = demo_run["topics"]
    enriched = _decoded(topics["enriched"], schemas.ENRICHED)
    leads = _decoded(topics["leads"], schemas.LEADS)
    dead = _decoded(topics["dead_letter"], schemas.DEAD_LETTER, drop=("original",))
    assert enriched and leads and len(dead) >= 6 * len(EXTRA_PEOPLE)
    reasons = {json.loads(text)["reason"] for text in dead if text.startswith("{")}
    assert {"text_too_large", "timestamp_out_of_range", "empty_text", "avro_decode_error", "not_avro",
            "unknown_schema_id"} <= reasons
    leaks = {where: scanner.hits(text) for where, texts in (("enriched", enriched), ("leads", leads),
                                                            ("dead letters", dead))
             for text in texts if scanner.hits(text)}
    assert leaks == {}
    # the corpus's variants: none in any topic but the restricted raw one, though they were there
    assert len(CORPUS_ON_KAFKA) >= 30
    assert test_identity_corpus.leaks("\n".join(record.value.decode("utf-8", "replace")
                                                for record in topics["raw"]))
    assert [hit for text in enriched + leads + dead for hit in test_identity_corpus.leaks(text)] == []
    corpus_in_leads = {cid for text in leads if text.startswith("{")
                       for cid in json.loads(text)["complaint_ids"] if cid.startswith("idc-")}
    assert len(corpus_in_leads) >= 15, "the corpus's complaints reached the leads"


@_demo_test
def test_dead_letters_keep_the_raw_event_only_in_original(demo_run, scanner):
    raw_values = {record.value for record in demo_run["topics"]["raw"]}
    originals = [schemas.decode(schemas.DEAD_LETTER, record.value)["original"]
                 for record in demo_run["topics"]["dead_letter"]]
    assert originals and all(original in raw_values for original in originals)
    # the restricted field does hold identity (so the scan above, which skips it, was not vacuous)
    assert any(scanner.hits(original.decode("utf-8", "replace")) for original in originals)


@_demo_test
def test_printed_output_and_debug_logs_carry_no_identity(demo_run, scanner):
    logs = demo_run["logs"]
    assert "round" in logs
    assert scanner.hits(demo_run["stdout"]) == []
    assert scanner.hits(demo_run["stderr"]) == []
    assert [line for line in logs.splitlines() if scanner.hits(line)] == []


@_demo_test
def test_metric_names_carry_no_identity(demo_run, scanner):
    names = set(demo_run["metric_names"])
    assert any(name.startswith("DecodeComplaints/dead_letter.") for name in names)
    assert [name for name in names if scanner.hits(name)] == []


@_demo_test
def test_files_the_demo_wrote_carry_no_identity(demo_run, scanner):
    leaks = {path: scanner.hits(text) for path, text in demo_run["files"].items() if scanner.hits(text)}
    assert leaks == {}, f"scanned {len(demo_run['files'])} files"


@_demo_test
def test_the_pseudonymisation_key_is_never_written_or_logged(demo_run):
    key = demo_run["key"]
    assert key and len(key) >= 32  # the demo generated one for the run (no key configured)
    places = {"stdout": demo_run["stdout"], "stderr": demo_run["stderr"], "logs": demo_run["logs"],
              "metric names": " ".join(demo_run["metric_names"])}
    places.update(demo_run["files"])
    for role, records in demo_run["topics"].items():
        places[f"topic {role}"] = b"".join((record.value or b"") + (record.key or b"")
                                           for record in records).decode("utf-8", "replace")
    assert [where for where, text in places.items() if key in text] == []


def test_the_pseudonymisation_key_is_not_logged_by_a_batch_run(tmp_path, monkeypatch, caplog):
    """A key from a key file (the production way): a DEBUG batch run never shows it."""
    from envleads.pipelines.batch import run_batch
    from envleads.privacy import KEY_ENV, KEY_FILE_ENV

    secret = "kf-9f3c1e77d2b84a06b5e1c0ffee51d3a7"
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(secret + "\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(event.line + b"\n" for event in generate_events(40, 3)))
    caplog.set_level(logging.DEBUG)
    for name in ("apache_beam", "envleads"):  # an earlier in-process CLI run may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    run_batch(str(source), str(tmp_path / "out.jsonl"), str(tmp_path / "leads.jsonl"),
              beam_args=["--runner=FnApiRunner"])
    assert caplog.records
    written = [path.read_text("utf-8", "replace") for path in tmp_path.iterdir() if path != key_file]
    assert [text for text in [caplog.text, *written] if secret in text] == []
    assert os.environ.get(KEY_ENV) is None  # the key stays in its file, not copied around
