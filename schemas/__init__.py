"""Avro schemas of the Kafka topics and their wire codec.

The ``.avsc`` files beside this module are the contract; ``registry.json`` gives each an id. Events
use the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body) so a reader
always knows the writer's schema: data written with an older schema of a subject is resolved to the
newest one (Avro schema resolution), which is the schema-evolution path. A new version of a schema
is a new file with a new id; :func:`check_compatibility` must pass against the previous one.
"""
from __future__ import annotations

import functools
import io
import json
import os
import struct
from typing import Any, Dict, List

import fastavro
from fastavro.utils import generate_many

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))
MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

RAW = "complaints.raw"
ENRICHED = "complaints.enriched"
LEADS = "leads"
DEAD_LETTER = "complaints.deadletter"


class AvroDecodeError(ValueError):
    """The payload is not a valid Avro event of the expected subject; ``reason`` is a code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_schema_file(path: str) -> Dict[str, Any]:
    """Parses an ``.avsc`` file (fastavro validates it and expands named types)."""
    with open(path, encoding="utf-8") as handle:
        return fastavro.parse_schema(json.load(handle), _write_hint=False)


@functools.lru_cache(maxsize=1)
def _registry() -> Dict[int, Dict[str, Any]]:
    with open(os.path.join(SCHEMA_DIR, "registry.json"), encoding="utf-8") as handle:
        entries = json.load(handle)["schemas"]
    return {int(schema_id): {"subject": entry["subject"],
                             "schema": load_schema_file(os.path.join(SCHEMA_DIR, entry["file"]))}
            for schema_id, entry in entries.items()}


@functools.lru_cache(maxsize=None)
def _codec_schema(schema_id: int) -> Dict[str, Any]:
    """The schema of an id parsed once for fastavro's writer and reader: a schema without
    fastavro's parse mark is parsed again on every record (half of an enriched record's encoding
    time). Kept apart from the registry's copy, which stays plain for display and comparison."""
    with open(os.path.join(SCHEMA_DIR, "registry.json"), encoding="utf-8") as handle:
        entry = json.load(handle)["schemas"][str(schema_id)]
    with open(os.path.join(SCHEMA_DIR, entry["file"]), encoding="utf-8") as handle:
        return fastavro.parse_schema(json.load(handle))


@functools.lru_cache(maxsize=None)
def latest_schema_id(subject: str) -> int:
    ids = [schema_id for schema_id, entry in _registry().items() if entry["subject"] == subject]
    if not ids:
        raise KeyError(f"no schema registered for subject {subject!r}")
    return max(ids)


def schema_for(subject: str) -> Dict[str, Any]:
    """The newest parsed schema of a subject (topic role)."""
    return _registry()[latest_schema_id(subject)]["schema"]


def frame_header(subject: str) -> bytes:
    """The frame an encoded record of the subject's newest schema starts with (magic byte, id)."""
    return _HEADER.pack(MAGIC_BYTE, latest_schema_id(subject))


def encode(subject: str, record: Dict[str, Any]) -> bytes:
    """Avro-encodes a record with the subject's newest schema, framed with its id."""
    buffer = io.BytesIO()
    buffer.write(frame_header(subject))
    fastavro.schemaless_writer(buffer, _codec_schema(latest_schema_id(subject)), record)
    return buffer.getvalue()


def decode(subject: str, payload: bytes) -> Dict[str, Any]:
    """Decodes a framed Avro event, resolving the writer's schema to the subject's newest one.

    Raises:
        AvroDecodeError: with reason ``not_avro`` (no frame), ``unknown_schema_id``,
            ``wrong_subject`` or ``avro_decode_error`` (truncated or corrupt body).
    """
    if len(payload) < _HEADER.size or payload[0] != MAGIC_BYTE:
        raise AvroDecodeError("not_avro", f"{len(payload)} bytes without the Avro frame")
    _, schema_id = _HEADER.unpack_from(payload)
    entry = _registry().get(schema_id)
    if entry is None:
        raise AvroDecodeError("unknown_schema_id", f"schema id {schema_id}")
    if entry["subject"] != subject:
        raise AvroDecodeError("wrong_subject", f"schema id {schema_id} belongs to {entry['subject']}")
    body = io.BytesIO(payload[_HEADER.size:])
    try:
        record = fastavro.schemaless_reader(body, _codec_schema(schema_id), _codec_schema(latest_schema_id(subject)))
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError, MemoryError,
            fastavro.read.SchemaResolutionError) as error:
        raise AvroDecodeError("avro_decode_error", type(error).__name__) from None
    if body.tell() != len(payload) - _HEADER.size:
        raise AvroDecodeError("avro_decode_error", "trailing bytes after the record")
    return record


def check_compatibility(old_schema: Dict[str, Any], new_schema: Dict[str, Any],
                        samples: int = 50) -> List[str]:
    """Problems that stop a reader on ``new_schema`` from reading data written with ``old_schema``.

    Uses fastavro's own schema resolution on generated records of the old schema, so the rules
    are Avro's, not ours: an added field needs a default, a type may only be promoted, and so on.
    An empty list means backward compatible.
    """
    problems = []
    for record in generate_many(old_schema, samples):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, old_schema, record)
        buffer.seek(0)
        try:
            fastavro.schemaless_reader(buffer, old_schema, new_schema)
        except fastavro.read.SchemaResolutionError as error:
            problems.append(str(error))
            break
    return problems
