"""Hostile-input fuzz: generated events mixing valid and invalid bytes, through decode and the batch pipeline.

Each case says what must happen to it: ``valid`` (must become a complaint), a set of acceptable
dead-letter reasons, or ``ANY`` (random corruption: either outcome is fine, but it must not raise
and must not stop anything). The kinds: valid JSON and Avro complaints (also with control
characters, mojibake, lone surrogates in the reporter, a 20,000-byte text, wide and moderately
nested extra fields, boundary timestamps), and hostile ones: empty events, truncated Avro, trailing
bytes, unknown or foreign Confluent schema ids, JSON sent as Avro, texts and titles over the
limits, events over 1 MB, control-character-only texts, GBK / UTF-16 / latin-1 encoded JSON,
nesting bombs, timestamps far in the past or future, non-object JSON, missing and mistyped
fields, ids with control characters or lone surrogates, truncated JSON, random bytes, random byte
flips in valid Avro.

Checks (the same as ``tests/test_hostile_input.py`` runs at a smaller size):

* decode stage (``envleads.decode.decode_event``): nothing raises; count in = complaints + dead
  letters; every valid case is a complaint with its id, every invalid case a dead letter with an
  accepted reason and its original bytes; every output can be serialised (JSON file line and
  Avro record), so no event can stop a later stage.
* batch pipeline (``envleads.pipelines.batch.run_batch``, FnApiRunner) over the JSON cases as a
  file: the pipeline finishes; lines in = output lines + dead-letter lines; every valid case's id
  is in the output, every dead letter carries its line's bytes and an accepted reason.

    .venv/bin/python bench/fuzz.py [--count 100000] [--seed 1] [--batch-count N] [--skip-batch]

Prints a table and writes bench/results/fuzz.json.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Union

HERE = os.path.dirname(os.path.abspath(__file__))
VALID = "valid"
ANY = "any"
FUZZ_KEY = b"fuzz-pseudonym-key"


class FuzzCase(NamedTuple):
    """One event: its bytes, their format, the kind that made it and what must become of it."""

    payload: bytes
    fmt: str  # "json" or "avro"
    kind: str
    expect: Union[str, FrozenSet[str]]  # VALID, ANY, or the accepted dead-letter reasons
    complaint_id: Optional[str] = None  # the id a valid case must come out with


def _reasons(*names: str) -> FrozenSet[str]:
    return frozenset(names)


class _Maker:
    """Builds cases from generated complaints (the project's generator: realistic texts)."""

    def __init__(self, seed: int, bases: int = 400):
        from envleads.generator import generate_events

        self.rng = random.Random(seed)
        self.bases = []
        for event in generate_events(bases, seed):
            if not event.truth["malformed"]:
                self.bases.append(json.loads(event.line))
        self.serial = 0

    # -------------------------------------------------------------------------------- helpers
    def base(self) -> Dict:
        document = dict(self.rng.choice(self.bases))
        self.serial += 1
        document["complaint_id"] = f"fz-{self.serial:07d}"
        return document

    def json_case(self, kind: str, document, expect, encoding: str = "utf-8", ensure_ascii: bool = False) -> FuzzCase:
        text = json.dumps(document, ensure_ascii=ensure_ascii)
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            text = json.dumps(document, ensure_ascii=True)  # lone surrogates as \\udxxx escapes
        payload = text.encode(encoding)
        cid = document.get("complaint_id") if isinstance(document, dict) and expect == VALID else None
        return FuzzCase(payload, "json", kind, expect, cid)

    def avro(self, document: Dict) -> bytes:
        from envleads import schemas

        fields = {name: document.get(name) for name in
                  ("complaint_id", "received_at", "title", "text", "channel", "reporter", "address",
                   "jurisdiction_adcode")}
        fields["title"] = fields["title"] or ""
        return schemas.encode(schemas.RAW, fields)

    def controls(self, n: int) -> str:
        pool = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127, 0x85, 0x200B, 0x200E, 0xFEFF)]
        return "".join(self.rng.choice(pool) for _ in range(n))

    # ----------------------------------------------------------------------------- valid kinds
    def valid_json(self):
        return self.json_case("valid_json", self.base(), VALID)

    def valid_json_ascii_escapes(self):
        return self.json_case("valid_json_ascii_escapes", self.base(), VALID, ensure_ascii=True)

    def valid_avro(self):
        document = self.base()
        return FuzzCase(self.avro(document), "avro", "valid_avro", VALID, document["complaint_id"])

    def valid_control_characters(self):
        document = self.base()
        text = document["text"]
        cut = self.rng.randrange(len(text) + 1)
        document["text"] = text[:cut] + self.controls(self.rng.randint(1, 20)) + text[cut:]
        document["title"] = self.controls(3) + (document.get("title") or "")
        return self.json_case("valid_control_characters", document, VALID)

    def valid_mojibake(self):
        document = self.base()
        # GBK bytes read as latin-1: valid UTF-8 JSON whose text is garbage, still a complaint.
        document["text"] = document["text"].encode("gbk", "replace").decode("latin-1")
        return self.json_case("valid_mojibake", document, VALID)

    def valid_surrogate_in_reporter(self):
        document = self.base()
        document["reporter"] = {"name": "张\ud800三", "phone": "138\udc000013800"}
        return self.json_case("valid_surrogate_in_reporter", document, VALID)

    def valid_text_at_limit(self):
        document = self.base()
        filler = "河水发黑发臭，"  # 21 bytes a unit
        text = (filler * (20_000 // len(filler.encode()) + 1)).encode()[:20_000]
        document["text"] = text.decode("utf-8", "ignore")
        return self.json_case("valid_text_at_limit", document, VALID)

    def valid_wide_extra_field(self):
        document = self.base()
        document["attachments"] = list(range(self.rng.randint(1_000, 50_000)))
        return self.json_case("valid_wide_extra_field", document, VALID)

    def valid_nested_extra_field(self):
        document = self.base()
        nested: object = "leaf"
        for _ in range(self.rng.randint(10, 200)):
            nested = {"x": [nested]}
        document["extra"] = nested
        return self.json_case("valid_nested_extra_field", document, VALID)

    def valid_boundary_timestamp(self):
        document = self.base()
        document["received_at"] = self.rng.choice(
            ["2000-01-01T00:00:00Z", "2000-01-01T08:00:00", "2099-12-31T23:59:59Z", "2099-12-31T23:59:59.999+00:00",
             "2026-02-28T12:00:00.123456+08:00", "2026-05-01 08:30:00"])
        return self.json_case("valid_boundary_timestamp", document, VALID)

    def valid_fullwidth_and_utf8_bom_text(self):
        document = self.base()
        document["text"] = "\ufeff" + document["text"].replace("1", "１") + "ｅｍａｉｌ"
        return self.json_case("valid_fullwidth_and_utf8_bom_text", document, VALID)

    # --------------------------------------------------------------------------- invalid kinds
    def empty(self):
        return FuzzCase(b"", self.rng.choice(["json", "avro"]), "empty", _reasons("empty_event"))

    def truncated_avro(self):
        payload = self.avro(self.base())
        cut = self.rng.randrange(0, len(payload))
        reasons = ("empty_event",) if cut == 0 else ("not_avro",) if cut < 5 else ("avro_decode_error",)
        return FuzzCase(payload[:cut], "avro", "truncated_avro", _reasons(*reasons))

    def avro_trailing_bytes(self):
        payload = self.avro(self.base()) + bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 20)))
        return FuzzCase(payload, "avro", "avro_trailing_bytes", _reasons("avro_decode_error"))

    def avro_unknown_schema_id(self):
        payload = bytearray(self.avro(self.base()))
        schema_id = self.rng.choice([0, 2, 3, 7, 12, 99, 2**31 - 1, 2**32 - 1])
        payload[1:5] = schema_id.to_bytes(4, "big")
        return FuzzCase(bytes(payload), "avro", "avro_unknown_schema_id", _reasons("unknown_schema_id"))

    def avro_foreign_schema_id(self):
        payload = bytearray(self.avro(self.base()))
        payload[1:5] = self.rng.choice([11, 21, 22, 31]).to_bytes(4, "big")
        return FuzzCase(bytes(payload), "avro", "avro_foreign_schema_id", _reasons("wrong_subject"))

    def json_sent_as_avro(self):
        return FuzzCase(json.dumps(self.base(), ensure_ascii=False).encode(), "avro", "json_sent_as_avro",
                        _reasons("not_avro"))

    def avro_byte_flips(self):
        payload = bytearray(self.avro(self.base()))
        for _ in range(self.rng.randint(1, 4)):
            position = self.rng.randrange(5, len(payload))
            payload[position] = self.rng.randrange(256)
        return FuzzCase(bytes(payload), "avro", "avro_byte_flips", ANY)

    def huge_text(self):
        document = self.base()
        document["text"] = "噪音扰民" * self.rng.randint(1_700, 60_000)
        return self.json_case("huge_text", document, _reasons("text_too_large"))

    def huge_title(self):
        document = self.base()
        document["title"] = "标题" * self.rng.randint(170, 3_000)
        return self.json_case("huge_title", document, _reasons("title_too_large"))

    def huge_event(self):
        document = self.base()
        document["attachments"] = "A" * (1_048_577 + self.rng.randint(0, 10_000))
        return self.json_case("huge_event", document, _reasons("event_too_large"))

    def control_only_text(self):
        document = self.base()
        document["text"] = self.controls(self.rng.randint(1, 30)) + self.rng.choice(["", " ", "\n\t "])
        return self.json_case("control_only_text", document, _reasons("empty_text"))

    def raw_control_bytes_in_json(self):
        document = self.base()
        payload = json.dumps(document, ensure_ascii=False).encode()
        position = payload.index(b'"text": "') + 9
        payload = payload[:position] + bytes([self.rng.choice([0, 1, 7, 8, 27, 31])]) + payload[position:]
        return FuzzCase(payload, "json", "raw_control_bytes_in_json", _reasons("invalid_json"))

    def _foreign_encoding(self, kind: str, encoding: str, document: Dict) -> FuzzCase:
        payload = json.dumps(document, ensure_ascii=False).encode(encoding, "replace")
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return FuzzCase(payload, "json", kind, _reasons("invalid_utf8"))
        return FuzzCase(payload, "json", kind, ANY)  # the bytes happen to be UTF-8 too

    def gbk_json(self):
        return self._foreign_encoding("gbk_json", self.rng.choice(["gbk", "gb18030"]), self.base())

    def utf16_json(self):
        return self._foreign_encoding("utf16_json", self.rng.choice(["utf-16", "utf-16-be", "utf-16-le"]), self.base())

    def latin1_json(self):
        document = self.base()
        document["text"] = "Plainte: l'usine déverse des eaux usées, odeur très forte près de la rivière"
        document["title"] = "Pollution à côté"
        document["reporter"] = {"name": "Hélène"}
        return self._foreign_encoding("latin1_json", "latin-1", document)

    def surrogate_bytes_json(self):
        document = self.base()
        document["text"] += "\ud83d"  # half an emoji, written as raw (CESU-8) bytes: not UTF-8
        payload = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return FuzzCase(payload, "json", "surrogate_bytes_json", _reasons("invalid_utf8"))

    def utf8_bom_json(self):
        payload = b"\xef\xbb\xbf" + json.dumps(self.base(), ensure_ascii=False).encode()
        return FuzzCase(payload, "json", "utf8_bom_json", _reasons("invalid_json"))

    def nesting_bomb(self):
        depth = self.rng.choice([5_000, 100_000, 400_000])
        opening, closing = self.rng.choice([("[", "]"), ('{"a":', "}")])
        bomb = opening * depth + "1" + closing * depth
        if self.rng.random() < 0.5:
            payload = bomb.encode()
        else:
            document = self.base()
            head = json.dumps(document, ensure_ascii=False)[:-1]
            payload = (head + ', "extra": ' + bomb + "}").encode()
        reasons = ("event_too_large",) if len(payload) > 1_048_576 else ("json_too_deep",)
        return FuzzCase(payload, "json", "nesting_bomb", _reasons(*reasons))

    def far_timestamp(self):
        document = self.base()
        value, reason = self.rng.choice([
            ("0001-01-01T00:00:00", "timestamp_out_of_range"), ("0001-01-01T00:00:00+14:00", "timestamp_out_of_range"),
            ("1970-01-01T00:00:00Z", "timestamp_out_of_range"), ("1999-12-31T23:59:59Z", "timestamp_out_of_range"),
            ("2100-01-01T00:00:00Z", "timestamp_out_of_range"), ("9999-12-31T23:59:59-12:00", "timestamp_out_of_range"),
            ("+275760-09-13T00:00:00Z", "invalid_timestamp"), ("2026-13-01T00:00:00", "invalid_timestamp"),
            ("2026-02-30T00:00:00", "invalid_timestamp"), ("yesterday", "invalid_timestamp"), ("", "invalid_timestamp"),
            (1_700_000_000, "invalid_timestamp"), (1.7e12, "invalid_timestamp"), (None, "invalid_timestamp"),
            ("2026-01-01T00:00:00+25:00", "invalid_timestamp"), ("NaN", "invalid_timestamp")])
        document["received_at"] = value
        return self.json_case("far_timestamp", document, _reasons(reason))

    def far_timestamp_avro(self):
        document = self.base()
        document["received_at"] = self.rng.choice(["0001-01-01T00:00:00", "2100-01-01T00:00:00Z", "9999-12-31T23:59:59"])
        return FuzzCase(self.avro(document), "avro", "far_timestamp_avro", _reasons("timestamp_out_of_range"))

    def non_object_json(self):
        value = self.rng.choice([[], [self.base()], "complaint", 42, 3.5, None, True, False, [1, 2, 3]])
        return FuzzCase(json.dumps(value, ensure_ascii=False).encode(), "json", "non_object_json",
                        _reasons("not_an_object"))

    def missing_field(self):
        document = self.base()
        field, reason = self.rng.choice([("complaint_id", "missing_complaint_id"), ("text", "missing_text"),
                                         ("received_at", "invalid_timestamp")])
        if self.rng.random() < 0.5:
            del document[field]
        else:
            document[field] = None
        return self.json_case("missing_field", document, _reasons(reason))

    def wrong_type(self):
        document = self.base()
        field = self.rng.choice(["text", "title", "channel", "reporter", "complaint_id", "address"])
        document[field] = self.rng.choice([12, 1.5, True, ["a"], {"a": 1}] if field != "reporter" else [12, "张三", ["x"]])
        return self.json_case("wrong_type", document, _reasons("invalid_field_type"))

    def bad_complaint_id(self):
        document = self.base()
        document["complaint_id"] = self.rng.choice(["", "   ", "x" * 129, "id\ud800", "id\x00", "a\nb", "\udfff"])
        return self.json_case("bad_complaint_id", document, _reasons("invalid_complaint_id"))

    def truncated_json(self):
        payload = json.dumps(self.base(), ensure_ascii=False).encode()
        cut = self.rng.randrange(1, len(payload) - 1)
        return FuzzCase(payload[:cut], "json", "truncated_json", _reasons("invalid_json", "invalid_utf8"))

    def random_bytes(self):
        payload = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 300)))
        return FuzzCase(payload, self.rng.choice(["json", "avro"]), "random_bytes", ANY)


# kind -> weight (per 1000). Valid cases are about 45 %.
WEIGHTS: Dict[str, int] = {
    "valid_json": 200, "valid_json_ascii_escapes": 30, "valid_avro": 120, "valid_control_characters": 30,
    "valid_mojibake": 15, "valid_surrogate_in_reporter": 10, "valid_text_at_limit": 5, "valid_wide_extra_field": 5,
    "valid_nested_extra_field": 10, "valid_boundary_timestamp": 15, "valid_fullwidth_and_utf8_bom_text": 10,
    "empty": 25, "truncated_avro": 50, "avro_trailing_bytes": 20, "avro_unknown_schema_id": 20,
    "avro_foreign_schema_id": 15, "json_sent_as_avro": 15, "avro_byte_flips": 40, "huge_text": 12, "huge_title": 8,
    "huge_event": 1, "control_only_text": 20, "raw_control_bytes_in_json": 15, "gbk_json": 30, "utf16_json": 25,
    "latin1_json": 15, "surrogate_bytes_json": 5, "utf8_bom_json": 10, "nesting_bomb": 5, "far_timestamp": 40, "far_timestamp_avro": 10,
    "non_object_json": 25, "missing_field": 30, "wrong_type": 30, "bad_complaint_id": 20, "truncated_json": 40,
    "random_bytes": 40,
}


def fuzz_cases(count: int, seed: int = 1, weights: Optional[Dict[str, int]] = None) -> Iterator[FuzzCase]:
    """``count`` cases, deterministic for ``seed``; every kind appears once before random draws."""
    maker = _Maker(seed)
    weights = weights or WEIGHTS
    kinds = list(weights)
    cumulative = []
    total = 0
    for kind in kinds:
        total += weights[kind]
        cumulative.append(total)
    for index in range(count):
        kind = kinds[index] if index < len(kinds) else maker.rng.choices(kinds, cum_weights=cumulative)[0]
        yield getattr(maker, kind)()


# ------------------------------------------------------------------------------------ checking
class Tally:
    """Counts and failures of one fuzz run (failures keep a few examples per problem)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.kinds: Counter = Counter()
        self.reasons: Counter = Counter()
        self.failures: Dict[str, List[str]] = {}

    def fail(self, problem: str, case: FuzzCase, note: str = "") -> None:
        self.counts["failures"] += 1
        examples = self.failures.setdefault(problem, [])
        if len(examples) < 5:
            examples.append(f"{case.kind} {case.fmt} {len(case.payload)} bytes {note} "
                            f"{base64.b64encode(case.payload[:120]).decode()}")

    def as_dict(self) -> Dict:
        return {"counts": dict(self.counts), "kinds": dict(sorted(self.kinds.items())),
                "reasons": dict(self.reasons.most_common()), "failures": self.failures}


def check_outputs_serialise(result) -> Optional[str]:
    """Whether a decode result can be written by every sink (JSON line, Avro); the problem if not."""
    from envleads import schemas
    from envleads.records import DeadLetter
    from envleads.serialize import dead_letter_to_avro_dict, dead_letter_to_json

    try:
        if isinstance(result, DeadLetter):
            dead_letter_to_json(result).encode("utf-8")
            schemas.encode(schemas.DEAD_LETTER, dead_letter_to_avro_dict(result, 0))
        else:
            for name, value in result._asdict().items():
                if isinstance(value, str):
                    value.encode("utf-8")
            json.dumps(result._asdict(), ensure_ascii=False, default=str).encode("utf-8")
    except Exception as error:  # noqa: BLE001 - any failure here would stop a sink
        return f"{type(error).__name__}"
    return None


def check_decode_case(case: FuzzCase, tally: Tally, key: bytes = FUZZ_KEY) -> None:
    """Runs one case through ``decode_event`` and records whether it met its expectation."""
    from envleads.decode import decode_event
    from envleads.records import Complaint, DeadLetter

    tally.counts["in"] += 1
    tally.kinds[case.kind] += 1
    try:
        result = decode_event(case.payload, case.fmt, key)
    except Exception as error:  # noqa: BLE001 - the point: nothing may raise
        tally.counts["raised"] += 1
        tally.fail(f"raised {type(error).__name__}", case)
        return
    problem = check_outputs_serialise(result)
    if problem:
        tally.fail(f"output not serialisable: {problem}", case)
    if isinstance(result, Complaint):
        tally.counts["complaints"] += 1
        if case.expect not in (VALID, ANY):
            tally.fail("invalid event accepted", case, f"expected {sorted(case.expect)}")
        elif case.expect == VALID and result.complaint_id != case.complaint_id:
            tally.fail("complaint id changed", case)
        if not result.text.strip():
            tally.fail("complaint with empty text", case)
    elif isinstance(result, DeadLetter):
        tally.counts["dead_letters"] += 1
        tally.reasons[result.reason] += 1
        if case.expect == VALID:
            tally.fail("valid event dead-lettered", case, result.reason)
        elif case.expect != ANY and result.reason not in case.expect:
            tally.fail("unexpected reason", case, f"{result.reason} not in {sorted(case.expect)}")
        if not result.reason or result.original != case.payload:
            tally.fail("dead letter without reason or original bytes", case)
    else:
        tally.fail(f"neither complaint nor dead letter: {type(result).__name__}", case)


def run_decode_fuzz(cases: List[FuzzCase]) -> Tally:
    tally = Tally()
    for case in cases:
        check_decode_case(case, tally)
    return tally


def batch_lines(cases: List[FuzzCase]) -> List[FuzzCase]:
    """The JSON cases that can be lines of a JSON Lines file (no line break inside the bytes)."""
    return [case for case in cases if case.fmt == "json" and b"\n" not in case.payload and b"\r" not in case.payload]


def run_batch_fuzz(cases: List[FuzzCase], workdir: str, beam_args: Optional[List[str]] = None) -> Dict:
    """Writes the line-able JSON cases to a file, runs the batch pipeline, checks every line's fate."""
    from envleads.pipelines.batch import run_batch

    lines = batch_lines(cases)
    source = os.path.join(workdir, "fuzz.jsonl")
    output = os.path.join(workdir, "fuzz.out.jsonl")
    dead_path = os.path.join(workdir, "fuzz.dead.jsonl")
    with open(source, "wb") as handle:
        for case in lines:
            handle.write(case.payload + b"\n")
    started = time.monotonic()
    counts = run_batch(source, output, dead_letter_path=dead_path,
                       beam_args=beam_args or ["--runner=FnApiRunner"])
    wall = time.monotonic() - started
    with open(output, encoding="utf-8") as handle:
        out_ids = Counter(json.loads(line)["complaint_id"] for line in handle)
    dead = []
    with open(dead_path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            dead.append((record["reason"], base64.b64decode(record["original_base64"])))
    expected_valid = Counter(case.complaint_id for case in lines if case.expect == VALID)
    by_payload: Dict[bytes, List[FuzzCase]] = {}
    for case in lines:
        by_payload.setdefault(case.payload, []).append(case)
    unknown_originals = wrong_reasons = dead_valid = 0
    for reason, original in dead:
        matches = by_payload.get(original)
        if not matches:
            unknown_originals += 1
            continue
        if all(case.expect == VALID for case in matches):
            dead_valid += 1
        elif not any(case.expect in (VALID, ANY) or reason in case.expect for case in matches):
            wrong_reasons += 1
    return {
        "lines_in": len(lines), "output_lines": sum(out_ids.values()), "dead_letter_lines": len(dead),
        "lost": len(lines) - sum(out_ids.values()) - len(dead),
        "valid_in": sum(expected_valid.values()),
        "valid_missing": sum(1 for cid in expected_valid if cid not in out_ids),
        "duplicate_output_ids": sum(n - 1 for n in out_ids.values() if n > 1),
        "dead_letters_of_valid_cases": dead_valid, "dead_letters_with_unexpected_reason": wrong_reasons,
        "dead_letters_with_unknown_original": unknown_originals,
        "pipeline_counts": counts, "wall_s": round(wall, 1),
        "reasons": dict(Counter(reason for reason, _ in dead).most_common()),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="cases through the decode stage")
    parser.add_argument("--batch-count", type=int, default=None, help="cases made for the batch run (default --count)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "fuzz.json"))
    args, beam_args = parser.parse_known_args(argv)
    os.environ.setdefault("ENVLEADS_PSEUDONYM_KEY", FUZZ_KEY.decode())
    report: Dict = {"name": "fuzz", "command": " ".join(["bench/fuzz.py", *(argv or sys.argv[1:])]),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform(),
                                "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
                                "shared": "the machine was shared with other helpers' work while measured"},
                    "params": {"count": args.count, "seed": args.seed}}
    started = time.monotonic()
    cases = list(fuzz_cases(args.count, args.seed))
    report["generate_wall_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    tally = run_decode_fuzz(cases)
    report["decode"] = {**tally.as_dict(), "wall_s": round(time.monotonic() - started, 1),
                        "expected_valid": sum(case.expect == VALID for case in cases),
                        "expected_invalid": sum(case.expect not in (VALID, ANY) for case in cases),
                        "either": sum(case.expect == ANY for case in cases)}
    ok = tally.counts["failures"] == 0 and tally.counts["in"] == tally.counts["complaints"] + tally.counts["dead_letters"]
    print(f"decode: {tally.counts['in']:,} events, {tally.counts['complaints']:,} complaints, "
          f"{tally.counts['dead_letters']:,} dead letters, {tally.counts['failures']} failures "
          f"({report['decode']['wall_s']} s)")
    for problem, examples in tally.failures.items():
        print(f"  FAIL {problem}: {examples[0]}")
    if not args.skip_batch:
        batch_cases = cases if args.batch_count is None else list(fuzz_cases(args.batch_count, args.seed + 1))
        with tempfile.TemporaryDirectory(prefix="envleads-fuzz-") as workdir:
            batch = run_batch_fuzz(batch_cases, workdir, beam_args or None)
        report["batch"] = batch
        ok = ok and batch["lost"] == 0 and batch["valid_missing"] == 0 and batch["dead_letters_of_valid_cases"] == 0 \
            and batch["dead_letters_with_unexpected_reason"] == 0 and batch["dead_letters_with_unknown_original"] == 0
        print(f"batch: {batch['lines_in']:,} lines, {batch['output_lines']:,} enriched, "
              f"{batch['dead_letter_lines']:,} dead letters, lost {batch['lost']}, valid missing "
              f"{batch['valid_missing']} ({batch['wall_s']} s)")
    report["ok"] = ok
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, ensure_ascii=False, indent=2)
    print(f"{'ok' if ok else 'FAILED'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
