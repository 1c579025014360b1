"""Decoding and validation of raw complaint events: the first stage, where identity is removed.

An event is either a JSON object (batch files, one per line) or an Avro-framed ``RawComplaint``
(Kafka). Anything that cannot become a valid :class:`Complaint` becomes a :class:`DeadLetter` with
a reason code, short facts and the original bytes; nothing is dropped. Details never quote the
text or the identity, only sizes, field names and positions.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import datetime, timezone
from typing import Any, Dict, NamedTuple, Optional, Union

from envleads.config import CHINA_TZ
from envleads import schemas
from envleads.privacy import mask_identity, reporter_key
from envleads.records import Complaint, DeadLetter, KafkaCoordinates

STAGE = "DecodeComplaints"
JSON = "json"
AVRO = "avro"

# Event times before this are data errors (the platforms started long after); far-future times
# are clock errors. Bounds are fixed, not "now", so a replay years later decides the same way.
MIN_EVENT_TIME_MS = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
MAX_EVENT_TIME_MS = int(datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


class DecodeLimits(NamedTuple):
    """A bound on every field, so that the memory an event costs downstream is bounded by design
    (an unbounded ``address``, appended to the text, once cost 70 MB per event in enrichment).

    Each is far above what a real value needs: an address is a few dozen characters (2,000 bytes
    leave room for directions such as "往北200米路口东侧"); a channel is a short code; a reporter's
    name, phone or ID number is under 60 bytes even for long transliterated names; an adcode is six
    digits (32 bytes still lets a 12-digit statistical code through, to be ignored). A field over
    its limit dead-letters the event with its own reason (``<field>_too_large``), never truncated.
    """

    max_event_bytes: int = 1_048_576
    max_text_bytes: int = 20_000
    max_title_bytes: int = 1_000
    max_id_chars: int = 128
    max_address_bytes: int = 2_000
    max_channel_bytes: int = 64
    max_reporter_field_bytes: int = 128
    max_adcode_bytes: int = 32


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str = "", event_id: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.event_id = event_id


def parse_event_time(value: Any) -> int:
    """ISO-8601 to epoch milliseconds; a time without offset is China Standard Time (UTC+8)."""
    if not isinstance(value, str) or not value.strip():
        raise _Rejected("invalid_timestamp", "received_at missing or not a string")
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Rejected("invalid_timestamp", f"received_at not ISO-8601 ({len(value)} chars)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TZ)
    millis = int(moment.timestamp() * 1000)
    if not MIN_EVENT_TIME_MS <= millis < MAX_EVENT_TIME_MS:
        raise _Rejected("timestamp_out_of_range", f"year {moment.year}")
    return millis


def _parse_json(payload: bytes) -> Dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Rejected("invalid_utf8", f"invalid byte at position {error.start}") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise _Rejected("json_too_deep", "nesting exceeds the parser's limit") from None
    except ValueError as error:
        raise _Rejected("invalid_json", f"line {getattr(error, 'lineno', '?')} column {getattr(error, 'colno', '?')}") from None
    if not isinstance(document, dict):
        raise _Rejected("not_an_object", f"top-level JSON {type(document).__name__}")
    return document


def _parse_avro(payload: bytes) -> Dict[str, Any]:
    try:
        return schemas.decode(schemas.RAW, payload)
    except schemas.AvroDecodeError as error:
        raise _Rejected(error.reason, error.detail) from None


def _string_field(document: Dict[str, Any], name: str, required: bool, event_id: Optional[str]) -> Optional[str]:
    value = document.get(name)
    if value is None:
        if required:
            raise _Rejected(f"missing_{name}", f"field {name} absent or null", event_id)
        return None
    if not isinstance(value, str):
        raise _Rejected("invalid_field_type", f"field {name} is {type(value).__name__}", event_id)
    return value


# Unicode's Cc (control) and Cs (surrogate) categories, as code point ranges
_UNCLEAN_ID = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _is_clean_id(value: str) -> bool:
    """No control characters and no lone surrogates (JSON ``\\ud800`` escapes): such an id could not
    be written to a UTF-8 file or an Avro string later, and would stop the pipeline there."""
    return _UNCLEAN_ID.search(value) is None


def _utf8_size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _check_size(value: Optional[str], limit: int, reason: str, field: str, event_id: Optional[str]) -> None:
    """Rejects ``value`` over ``limit`` UTF-8 bytes; the detail names the field and sizes only."""
    size = 0 if value is None else _utf8_size(value)
    if size > limit:
        raise _Rejected(reason, f"field {field}: {size} bytes > {limit}", event_id)


def _reporter(document: Dict[str, Any], limits: DecodeLimits,
              event_id: Optional[str]) -> Optional[Dict[str, Optional[str]]]:
    reporter = document.get("reporter")
    if reporter is None:
        return None
    if not isinstance(reporter, dict):
        raise _Rejected("invalid_field_type", f"field reporter is {type(reporter).__name__}", event_id)
    cleaned = {}
    for field in ("name", "phone", "id_number"):
        value = reporter.get(field)
        if value is not None and not isinstance(value, (str, int)):
            raise _Rejected("invalid_field_type", f"field reporter.{field} is {type(value).__name__}", event_id)
        value = None if value is None else str(value)  # an integer counts by its digits
        _check_size(value, limits.max_reporter_field_bytes, "reporter_field_too_large", f"reporter.{field}",
                    event_id)
        # Cleaned exactly like the text (this also drops lone surrogates, which the HMAC could not
        # encode), so that masking finds the reporter's name in the cleaned text.
        cleaned[field] = None if value is None else _clean_text(value)
    return cleaned


def _validate(document: Dict[str, Any], limits: DecodeLimits, key: bytes,
              source: Optional[KafkaCoordinates]) -> Complaint:
    event_id = document.get("complaint_id")
    event_id = event_id if isinstance(event_id, str) and 0 < len(event_id) <= limits.max_id_chars \
        and _is_clean_id(event_id) else None
    complaint_id = _string_field(document, "complaint_id", True, None)
    if not complaint_id.strip() or len(complaint_id) > limits.max_id_chars:
        raise _Rejected("invalid_complaint_id", f"{len(complaint_id)} chars")
    if not _is_clean_id(complaint_id):
        raise _Rejected("invalid_complaint_id", "control or lone surrogate characters")
    text = _string_field(document, "text", True, event_id)
    _check_size(text, limits.max_text_bytes, "text_too_large", "text", event_id)
    title = _string_field(document, "title", False, event_id) or ""
    _check_size(title, limits.max_title_bytes, "title_too_large", "title", event_id)
    text = _clean_text(text)
    title = _clean_text(title)
    if not text.strip():
        raise _Rejected("empty_text", "text is empty or whitespace", event_id)
    received_at = document.get("received_at")
    try:
        received_at_ms = parse_event_time(received_at)
    except _Rejected as rejected:
        rejected.event_id = event_id
        raise
    # every other field is bounded before any work is done on it
    channel = _string_field(document, "channel", False, event_id)
    _check_size(channel, limits.max_channel_bytes, "channel_too_large", "channel", event_id)
    # a hint, not content: a code given as a JSON number is read as its digits, any other type ignored
    jurisdiction = document.get("jurisdiction_adcode")
    if isinstance(jurisdiction, int) and not isinstance(jurisdiction, bool):
        jurisdiction = str(jurisdiction)
    jurisdiction = jurisdiction if isinstance(jurisdiction, str) else None
    _check_size(jurisdiction, limits.max_adcode_bytes, "jurisdiction_too_large", "jurisdiction_adcode", event_id)
    address = _string_field(document, "address", False, event_id)
    _check_size(address, limits.max_address_bytes, "address_too_large", "address", event_id)
    reporter = _reporter(document, limits, event_id)
    channel = (_clean_text(channel) or None) if channel is not None else None
    if jurisdiction is not None and not (len(jurisdiction) == 6 and jurisdiction.isascii() and jurisdiction.isdigit()):
        jurisdiction = None
    masked_text = mask_identity(text, reporter)
    if address:
        masked_text = f"{masked_text}\n地址：{mask_identity(_clean_text(address), reporter)}"
    return Complaint(
        complaint_id=complaint_id,
        received_at=received_at,
        received_at_ms=received_at_ms,
        title=mask_identity(title, reporter),
        text=masked_text,
        channel=channel,
        reporter_key=reporter_key(reporter, key),
        jurisdiction_adcode=jurisdiction,
        source=source,
    )


# Full-width digits and latin letters fold to ASCII (so masking sees 1３8 as 138); Chinese
# punctuation is kept as written.
_FULLWIDTH_ALNUM = {code: code - 0xFEE0 for code in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B))}
_FULLWIDTH_ALNUM[0x3000] = 0x20


def _clean_text(value: str) -> str:
    """Folds full-width alphanumerics and drops control characters other than line breaks and tabs."""
    value = value.translate(_FULLWIDTH_ALNUM)
    if value.isprintable():  # no character of category C (the usual case): skip the scan
        return value
    return "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch)[0] != "C")


def content_digest(payload: bytes) -> str:
    """A short digest of an event's bytes (:attr:`Complaint.content_digest`)."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def decode_event(payload: bytes, fmt: str, key: bytes, limits: DecodeLimits = DecodeLimits(),
                 source: Optional[KafkaCoordinates] = None) -> Union[Complaint, DeadLetter]:
    """Turns one raw event into a validated, identity-free :class:`Complaint`, or a dead letter.

    Args:
        payload: the event's bytes (a JSON line without its newline, or a framed Avro record).
        fmt: ``"json"`` or ``"avro"``.
        key: the pseudonymisation key (see :func:`envleads.privacy.load_pseudonym_key`).
        limits: size limits; events over them are dead-lettered, not truncated.
        source: Kafka coordinates of the event, kept for traceability.
    """
    try:
        if payload is None or len(payload) == 0:
            raise _Rejected("empty_event", "0 bytes")
        if len(payload) > limits.max_event_bytes:
            raise _Rejected("event_too_large", f"{len(payload)} bytes > {limits.max_event_bytes}")
        document = _parse_avro(payload) if fmt == AVRO else _parse_json(payload)
        return _validate(document, limits, key, source)._replace(content_digest=content_digest(payload))
    except _Rejected as rejected:
        return DeadLetter(STAGE, rejected.reason, rejected.detail, rejected.event_id, bytes(payload or b""), source)
