"""The lead feed as enforcement teams use it: ``envleads tail`` and ``envleads export``.

``tail`` follows the lead topic live and prints one line per new or updated lead; ``export`` writes
the current leads (the compacted view: the last record per lead key) as CSV, JSON Lines or GeoJSON,
read from Kafka or from the ``--leads`` file of ``envleads batch``. Both take the same filters
(region, pollution type, minimum score, campaign, overdue only).

Order (the feed order, shared with the dashboard): tier first (urgent, high, normal, low), then,
*within a tier*, overdue leads (assignment deadline passed) before the others, then score, then the
most recent report, then the lead key (so equal leads always come out in the same order). Overdue
does not lift a lead over a higher tier: a tier is the scoring model's judgement of harm (hard
overrides such as drinking-water sources force ``urgent``), while the deadline is a procedural
obligation; an overdue noise complaint must not push an unassigned drinking-water case down the
list, but among leads of equal tier the overdue ones are handled first.

``export --top N`` keeps only the first N of that order for an inspection campaign, optionally at
most K per county (``--per-county``) and a minimum share from quiet areas (``--min-share``), per
province or city with ``--top-per`` (``envleads.ranking``); what it keeps stays in feed order.

Ranks are positions in the list the user is looking at: after the filters, 1 = first. ``tail``
ranks each lead among the leads it has seen so far (from where it started reading) that pass the
filters.

What leaves here carries no complainant identity: leads hold none by construction, and the
pseudonymous ``reporter_keys`` (and the internal text sketch ``matter_signature``) are dropped from
every output; only the count ``distinct_reporters`` remains. Summaries are already masked.

Times are shown in China Standard Time (UTC+8), the time zone of the complaints; ``--since`` takes
an ISO-8601 time, read as China Standard Time when it has no offset.
"""
from __future__ import annotations

import bisect
import csv
import heapq
import json
import logging
import os
import sys
import time
import unicodedata
from datetime import datetime
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, TextIO, Tuple

from envleads.config import CHINA_TZ
from envleads.records import POLLUTION_LABELS, Lead
from envleads.scoring import rank_key

LOG = logging.getLogger(__name__)

EXPORT_FORMATS = ("csv", "jsonl", "geojson")
# Never in any output: pseudonymous reporter keys (linkable across leads) and the internal text sketch
# signature (state for rebuilding the repeat index, meaningless to a reader).
HIDDEN_FIELDS = ("reporter_keys", "matter_signature")
# The CSV contract: stable order, documented in the README; add columns at the end only.
CSV_COLUMNS = (
    "rank", "overdue", "tier", "score", "pollution_types", "province", "city", "county", "adcode",
    "region_level", "department", "report_count", "distinct_reporters", "first_seen_cst",
    "last_seen_cst", "deadline_cst", "channel", "campaigns", "reasons", "summary", "lead_id",
    "first_complaint_id", "complaint_ids", "matter_entities", "routing_rule", "updated_at_cst", "joins",
)
# Excel runs a cell that starts with one of these as a formula (CSV injection); every text cell
# that does (a summary, but also a channel or a complaint id, which the submitter chose) gets a
# leading apostrophe, which Excel shows as text and hides. Also caught: the sign after leading
# white space (readers that trim cells would see it first) and in its full-width or small form
# (＝＋－＠, ﹦﹢﹣﹫, which some spreadsheets take as the sign), by the character's NFKC form.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_LIST_SEPARATOR = ";"


# ---- filters -------------------------------------------------------------------------------------

class LeadFilter(NamedTuple):
    """What a user asked to see; an empty field does not filter. Values within a field are ORed."""

    regions: Tuple[str, ...] = ()  # names (substring of province/city/county) or adcode prefixes
    types: Tuple[str, ...] = ()  # pollution labels; a lead matches if it has any of them
    min_score: Optional[float] = None
    campaigns: Tuple[str, ...] = ()  # campaign ids or id prefixes ("blue_sky" matches blue_sky.*)
    overdue_only: bool = False


def normalise_region_query(value: str) -> str:
    """A region filter value as matched: a six-digit code loses its trailing zero pairs
    (``320100`` means everything in 南京市, i.e. the prefix ``3201``); names are stripped."""
    value = value.strip()
    if value.isdigit() and len(value) == 6:
        while value.endswith("00") and len(value) > 2:
            value = value[:-2]
    return value


def make_filter(regions: Iterable[str] = (), types: Iterable[str] = (), min_score: Optional[float] = None,
                campaigns: Iterable[str] = (), overdue_only: bool = False) -> LeadFilter:
    """A checked :class:`LeadFilter`; unknown pollution types fail here, by name.

    Each value may also be a comma-separated list (``--type air,water``).
    """
    def split(values: Iterable[str]) -> Tuple[str, ...]:
        return tuple(part.strip() for value in values for part in str(value).split(",") if part.strip())

    types = split(types)
    unknown = [t for t in types if t not in POLLUTION_LABELS]
    if unknown:
        raise ValueError(f"unknown pollution type(s) {unknown}; known: {', '.join(POLLUTION_LABELS)}")
    return LeadFilter(tuple(normalise_region_query(r) for r in split(regions)), types,
                      None if min_score is None else float(min_score), split(campaigns), bool(overdue_only))


def is_overdue(lead: Lead, now_ms: int) -> bool:
    """True when the lead's assignment deadline has passed (a v1 lead has none: never overdue)."""
    return lead.deadline_ms is not None and lead.deadline_ms < now_ms


def _region_matches(region: Optional[dict], query: str) -> bool:
    if not region:
        return False
    if query.isdigit():
        return (region.get("adcode") or "").startswith(query)
    return any(query in (region.get(level) or "") for level in ("province", "city", "county"))


def matches(lead: Lead, lead_filter: LeadFilter, now_ms: int) -> bool:
    """Whether ``lead`` passes every non-empty field of ``lead_filter``."""
    if lead_filter.regions and not any(_region_matches(lead.region, q) for q in lead_filter.regions):
        return False
    if lead_filter.types and not set(lead_filter.types) & set(lead.pollution_types):
        return False
    if lead_filter.min_score is not None and lead.score < lead_filter.min_score:
        return False
    if lead_filter.campaigns and not any(c == q or c.startswith(q + ".")
                                         for c in lead.campaigns for q in lead_filter.campaigns):
        return False
    if lead_filter.overdue_only and not is_overdue(lead, now_ms):
        return False
    return True


# ---- order ---------------------------------------------------------------------------------------

def feed_key(lead: Lead, now_ms: int) -> Tuple[int, int, float, int, str]:
    """Sort key of the feed order (see the module docstring): tier, overdue first, score, recency."""
    tier, minus_score, minus_last_seen = rank_key(lead.tier, lead.score, lead.last_seen_ms)
    return (tier, 0 if is_overdue(lead, now_ms) else 1, minus_score, minus_last_seen, lead.lead_id)


def rank_leads(leads: Iterable[Lead], now_ms: int, lead_filter: LeadFilter = LeadFilter()) -> List[Lead]:
    """The leads passing ``lead_filter``, in feed order (rank 1 first)."""
    return sorted((lead for lead in leads if matches(lead, lead_filter, now_ms)),
                  key=lambda lead: feed_key(lead, now_ms))


class RankIndex:
    """Ranks of the leads seen so far, kept sorted as leads arrive and change (for ``tail``).

    An insert or update costs a binary search and a list shift. Overdue depends on the clock, so
    when the earliest pending deadline passes, every key is recomputed once.
    """

    def __init__(self):
        self._keys: Dict[str, tuple] = {}
        self._sorted: List[tuple] = []
        self._leads: Dict[str, Lead] = {}
        self._next_deadline_ms: Optional[int] = None

    def __len__(self) -> int:
        return len(self._sorted)

    def __contains__(self, lead_id: str) -> bool:
        return lead_id in self._keys

    def _rebuild(self, now_ms: int) -> None:
        self._keys = {lead_id: feed_key(lead, now_ms) for lead_id, lead in self._leads.items()}
        self._sorted = sorted(self._keys.values())
        pending = [lead.deadline_ms for lead in self._leads.values()
                   if lead.deadline_ms is not None and lead.deadline_ms >= now_ms]
        self._next_deadline_ms = min(pending) if pending else None

    def discard(self, lead_id: str) -> None:
        key = self._keys.pop(lead_id, None)
        if key is not None:
            del self._sorted[bisect.bisect_left(self._sorted, key)]
            del self._leads[lead_id]

    def update(self, lead: Lead, now_ms: int) -> int:
        """Adds or replaces ``lead``; returns its rank (1 = first) among the leads held."""
        if self._next_deadline_ms is not None and self._next_deadline_ms < now_ms:
            self._rebuild(now_ms)
        self.discard(lead.lead_id)
        key = feed_key(lead, now_ms)
        self._keys[lead.lead_id] = key
        self._leads[lead.lead_id] = lead
        position = bisect.bisect_left(self._sorted, key)
        self._sorted.insert(position, key)
        if lead.deadline_ms is not None and lead.deadline_ms >= now_ms and (
                self._next_deadline_ms is None or lead.deadline_ms < self._next_deadline_ms):
            self._next_deadline_ms = lead.deadline_ms
        return position + 1


# ---- formatting ----------------------------------------------------------------------------------

def format_time_ms(epoch_ms: Optional[int]) -> str:
    """``2025-01-10 14:57:32`` in China Standard Time (Excel reads it as a date), or ``""``."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def place_name(region: Optional[dict]) -> str:
    """Where a lead is, as short as is unambiguous: ``南京市鼓楼区``, ``南京市``, ``江苏省`` or ``-``.

    County names repeat across China (鼓楼区 is in four cities), so a county comes with its city.
    """
    if not region:
        return "-"
    city, county = region.get("city"), region.get("county")
    if county:
        return (city if city and city != county else "") + county
    return city or region.get("province") or "-"


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    """Pads to ``width`` terminal columns (a Chinese character takes two)."""
    return text + " " * max(0, width - _display_width(text))


def format_reason(reason) -> str:
    return f"{reason.factor} +{reason.points:g}"


def format_join(join) -> str:
    """Why one repeat joined its lead, for a reader: "c-12 text+entity company:恒丰电镀 0.12"."""
    return " ".join(part for part in (join.complaint_id, join.evidence, join.shared, f"{join.similarity:.2f}") if part)


def format_lead_line(lead: Lead, rank: int, now_ms: int, status: str = "") -> str:
    """One readable line: status, rank, tier, score, types, place, department, reports, OVERDUE,
    top three reasons and the lead key."""
    parts = [
        _pad(status, 3) if status else None,
        f"#{rank:<4d}",
        f"{lead.tier:<6s}",
        f"{lead.score:6.1f}",
        _pad(",".join(lead.pollution_types) or "-", 18),
        _pad(place_name(lead.region), 22),
        _pad(lead.department or "-", 24),
        f"{lead.report_count:3d} report{'s' if lead.report_count != 1 else ' '}",
        "OVERDUE" if is_overdue(lead, now_ms) else "       ",
        ", ".join(format_reason(r) for r in lead.reasons[:3]) or "-",
        f"[{lead.lead_id}]",
    ]
    return " ".join(part for part in parts if part is not None)


def lead_to_feed_dict(lead: Lead, rank: int, now_ms: int) -> Dict:
    """The lead as JSON for piping and export: ``rank`` and ``overdue`` first, then the fields of
    ``schemas/lead.v3.avsc`` without :data:`HIDDEN_FIELDS` (still readable by ``--input``)."""
    record = {"rank": rank, "overdue": is_overdue(lead, now_ms)}
    for name, value in lead._asdict().items():
        if name in HIDDEN_FIELDS:
            continue
        record[name] = [item._asdict() for item in value] if name in ("reasons", "joins") else value
    return record


def _excel_safe(text: str) -> str:
    first = unicodedata.normalize("NFKC", text.lstrip()[:1])
    return "'" + text if text.startswith(_FORMULA_PREFIXES) or first.startswith(_FORMULA_PREFIXES) else text


def lead_to_csv_row(lead: Lead, rank: int, now_ms: int) -> Dict[str, object]:
    """One CSV row keyed by :data:`CSV_COLUMNS` (lists joined with ``;``, times in China Standard Time)."""
    region = lead.region or {}
    row = {
        "rank": rank,
        "overdue": "yes" if is_overdue(lead, now_ms) else "no",
        "tier": lead.tier,
        "score": lead.score,
        "pollution_types": _LIST_SEPARATOR.join(lead.pollution_types),
        "province": region.get("province") or "",
        "city": region.get("city") or "",
        "county": region.get("county") or "",
        "adcode": region.get("adcode") or "",
        "region_level": region.get("level") or "",
        "department": lead.department or "",
        "report_count": lead.report_count,
        "distinct_reporters": lead.distinct_reporters,
        "first_seen_cst": format_time_ms(lead.first_seen_ms),
        "last_seen_cst": format_time_ms(lead.last_seen_ms),
        "deadline_cst": format_time_ms(lead.deadline_ms),
        "channel": lead.channel or "",
        "campaigns": _LIST_SEPARATOR.join(lead.campaigns),
        "reasons": _LIST_SEPARATOR.join(f"{format_reason(r)} ({r.detail})" for r in lead.reasons),
        "summary": lead.summary,
        "lead_id": lead.lead_id,
        "first_complaint_id": lead.first_complaint_id,
        "complaint_ids": _LIST_SEPARATOR.join(lead.complaint_ids),
        "matter_entities": _LIST_SEPARATOR.join(lead.matter_entities),
        "routing_rule": lead.routing_rule or "",
        "updated_at_cst": format_time_ms(lead.updated_at_ms),
        "joins": _LIST_SEPARATOR.join(format_join(join) for join in lead.joins),
    }
    return {column: _excel_safe(value) if isinstance(value, str) else value for column, value in row.items()}


# ---- locations -----------------------------------------------------------------------------------

class Location(NamedTuple):
    longitude: float
    latitude: float
    adcode: str  # the division whose centre is used
    level: str  # its level: the point is as precise as a county, a city or a province


def lead_location(region: Optional[dict], table=None) -> Optional[Location]:
    """The centre of the lead's division, or of the nearest enclosing division that has one
    (the division table lacks some centres, and a code no longer in force may be missing)."""
    if not region or not region.get("adcode"):
        return None
    if table is None:
        from envleads.divisions import load_divisions

        table = load_divisions()
    adcode = region["adcode"]
    candidates = [adcode]
    division = table.get(adcode)
    if division is not None:
        candidates += [code for code in (division.city_code, division.province_code) if code]
    candidates += [adcode[:4] + "00", adcode[:2] + "0000"]
    for code in candidates:
        found = table.get(code)
        if found is not None and found.longitude is not None and found.latitude is not None:
            return Location(found.longitude, found.latitude, found.adcode, found.level)
    return None


# ---- reading leads -------------------------------------------------------------------------------

def _progress(description: str, unit: str = "record", total: Optional[int] = None):
    from tqdm import tqdm

    # disable=None: shown on a terminal only, silent in pipes, logs and CI.
    return tqdm(desc=description, unit=unit, total=total, disable=None, leave=False, file=sys.stderr)


def read_leads_file(path: str) -> Dict[str, Lead]:
    """Leads from a JSON Lines file (``envleads batch --leads`` or ``export --format jsonl``);
    when a key repeats, the last line wins (compacted-topic semantics)."""
    from envleads.leads import lead_from_avro_dict

    leads: Dict[str, Lead] = {}
    with open(path, encoding="utf-8-sig") as handle, _progress(f"reading {os.path.basename(path)}", "lead") as bar:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                lead = lead_from_avro_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a lead record ({type(error).__name__})") from None
            leads[lead.lead_id] = lead
            bar.update()
    return leads


def read_leads_topic(bootstrap_servers: str, topic: str, security=None, idle_s: float = 2.0) -> Dict[str, Lead]:
    """The compacted view of the lead topic: read from the beginning until nothing arrives for
    ``idle_s`` (the embedded broker under-reports end offsets, so the end is found by waiting)."""
    from envleads.pipelines.kafka_edge.lead_topic import LeadView

    view = LeadView(bootstrap_servers, topic, security)
    try:
        with _progress(f"reading {topic}") as bar:
            while True:
                read = view.refresh(wait_s=idle_s)
                bar.update(read)
                if not read:
                    break
        return dict(view.leads)
    finally:
        view.close()


# ---- export --------------------------------------------------------------------------------------

def write_csv(ranked: Sequence[Lead], handle: TextIO, now_ms: int) -> None:
    """CSV for Excel: the caller opens ``handle`` with ``encoding="utf-8-sig"`` (the BOM makes
    Excel read UTF-8, so Chinese text is not garbled) and ``newline=""``."""
    writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for rank, lead in enumerate(_progress_iter(ranked, "writing CSV"), start=1):
        writer.writerow(lead_to_csv_row(lead, rank, now_ms))


def write_jsonl(ranked: Sequence[Lead], handle: TextIO, now_ms: int) -> None:
    for rank, lead in enumerate(_progress_iter(ranked, "writing JSON Lines"), start=1):
        handle.write(json.dumps(lead_to_feed_dict(lead, rank, now_ms), ensure_ascii=False) + "\n")


def geojson_collection(ranked: Sequence[Lead], now_ms: int, table=None) -> Dict:
    """A FeatureCollection: one Point per lead at its division's centre (``location_level`` says
    how precise), properties = the lead's feed fields; a lead without a region has no geometry."""
    features = []
    for rank, lead in enumerate(_progress_iter(ranked, "writing GeoJSON"), start=1):
        properties = lead_to_feed_dict(lead, rank, now_ms)
        location = lead_location(lead.region, table)
        properties["location_adcode"] = location.adcode if location else None
        properties["location_level"] = location.level if location else None
        geometry = ({"type": "Point", "coordinates": [round(location.longitude, 6), round(location.latitude, 6)]}
                    if location else None)
        features.append({"type": "Feature", "id": lead.lead_id, "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _progress_iter(items: Sequence, description: str) -> Iterator:
    with _progress(description, "lead", total=len(items)) as bar:
        for item in items:
            yield item
            bar.update()


def export_leads(leads: Iterable[Lead], output_format: str, output: TextIO, now_ms: int,
                 lead_filter: LeadFilter = LeadFilter(), quotas=None) -> int:
    """Writes the leads passing ``lead_filter`` in feed order; returns how many.

    Args:
        leads: the current leads (one per key).
        output_format: ``csv``, ``jsonl`` or ``geojson``.
        output: text stream; for CSV opened with ``encoding="utf-8-sig", newline=""``.
        now_ms: the time at which ``overdue`` is decided.
        lead_filter: what to keep.
        quotas: an ``envleads.ranking.Quotas`` to keep only the top N for an inspection campaign
            (optionally at most K per county, a minimum share for quiet areas); still in feed
            order, ranked 1..n. None keeps every lead passing the filter.
    """
    if output_format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {output_format!r}")
    ranked = rank_leads(leads, now_ms, lead_filter)
    if quotas is not None:
        from envleads.ranking import select_for_campaign

        ranked = select_for_campaign(ranked, quotas)
    if output_format == "csv":
        write_csv(ranked, output, now_ms)
    elif output_format == "jsonl":
        write_jsonl(ranked, output, now_ms)
    else:
        json.dump(geojson_collection(ranked, now_ms), output, ensure_ascii=False)
        output.write("\n")
    return len(ranked)


# ---- tail ----------------------------------------------------------------------------------------

def parse_since(value: str) -> int:
    """An ISO-8601 time as epoch ms; without an offset it is China Standard Time."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {value!r} (e.g. 2025-01-10T08:00 or 2025-01-10)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TZ)
    return int(moment.timestamp() * 1000)


def _position(consumer, group_id: Optional[str], from_beginning: bool, since_ms: Optional[int],
              started_ms: int) -> Dict:
    """Puts every partition where the user asked to start; returns, per partition left at its end,
    the record time below which records are skipped.

    Why the skip: the embedded broker (Tansu) reports the end of a partition as the base offset of
    its last record *batch* + 1, so "seek to end" lands inside the last batch and would replay it.
    Records written before the tail started (or before ``--since``) are therefore dropped until the
    first newer one arrives on that partition. A producer whose clock is behind the tail's can have
    its first records dropped the same way; a real Kafka cluster gives the exact end.
    """
    guards = {}
    assignment = list(consumer.assignment())
    found = consumer.offsets_for_times({tp: since_ms for tp in assignment}) if since_ms is not None else {}
    for tp in assignment:
        if since_ms is not None:
            hit = found.get(tp)
            # Nothing written at or after since_ms: Kafka answers None, Tansu offset 0 with timestamp -1.
            if hit is None or hit.timestamp < 0 or hit.offset < 0:
                consumer.seek_to_end(tp)
                guards[tp] = since_ms
            else:
                consumer.seek(tp, hit.offset)
        elif from_beginning:
            consumer.seek_to_beginning(tp)
        elif not (group_id and consumer.committed(tp) is not None):
            guards[tp] = started_ms  # open_consumer left it at the end: only records from now on
    return guards


def _commit(consumer, positions: Dict) -> None:
    from kafka.structs import OffsetAndMetadata

    consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in positions.items()})


def tail_leads(bootstrap_servers: str, topic: str, emit: Callable[[str], None], *,
               lead_filter: LeadFilter = LeadFilter(), json_output: bool = False,
               from_beginning: bool = False, since_ms: Optional[int] = None, group_id: Optional[str] = None,
               security=None, idle_exit_s: Optional[float] = None, max_s: Optional[float] = None,
               now_fn: Callable[[], int] = lambda: int(time.time() * 1000)) -> int:
    """Follows the lead topic, calling ``emit`` with one line per new or updated lead passing the
    filter; returns the number of lines emitted.

    Starts at the group's committed offsets when ``group_id`` has some, else at the end (only new
    records), unless ``from_beginning`` or ``since_ms`` (the time the lead record was written, by
    the broker's timestamp index) says otherwise. With ``group_id`` the offsets are committed after
    each batch is printed, so a restarted tail resumes where it stopped. Runs until interrupted,
    until nothing arrived for ``idle_exit_s`` or for ``max_s`` in all.

    Args:
        emit: called with each line (no newline).
        now_fn: the clock that decides ``overdue`` (epoch ms).
    """
    from envleads.pipelines.kafka_edge.lead_topic import lead_changes
    from envleads.pipelines.kafka_edge.read import open_consumer

    consumer = open_consumer(bootstrap_servers, topic, group_id, security, from_beginning=from_beginning)
    index = RankIndex()
    emitted = skipped = 0
    started = last_record = time.monotonic()
    try:
        guards = _position(consumer, group_id, from_beginning, since_ms, int(time.time() * 1000))
        while True:
            now = time.monotonic()
            if max_s is not None and now - started >= max_s:
                break
            if idle_exit_s is not None and now - last_record >= idle_exit_s:
                break
            batch = consumer.poll(timeout_ms=500, max_records=1000)
            # Partitions interleaved by record time; within a partition the log order is kept, so
            # the versions of one lead (one key, one partition) are never printed out of order.
            records = list(heapq.merge(*batch.values(), key=lambda r: r.timestamp))
            if not records:
                continue
            last_record = time.monotonic()
            positions = {}
            for record, change in zip(records, lead_changes(records)):
                tp = _topic_partition(record)
                positions[tp] = record.offset + 1
                if tp in guards:
                    if record.timestamp < guards[tp]:
                        continue  # written before the start asked for (see _position)
                    del guards[tp]
                if change.tombstone:
                    if change.key:
                        index.discard(change.key)  # the lead was withdrawn
                    continue
                lead = change.lead
                if lead is None:
                    skipped += 1
                    continue
                now_ms = now_fn()
                if not matches(lead, lead_filter, now_ms):
                    index.discard(lead.lead_id)  # e.g. its score fell under --min-score
                    continue
                status = "UPD" if lead.lead_id in index else "NEW"
                rank = index.update(lead, now_ms)
                if json_output:
                    record_dict = lead_to_feed_dict(lead, rank, now_ms)
                    record_dict["status"] = status.lower()
                    emit(json.dumps(record_dict, ensure_ascii=False))
                else:
                    line = format_lead_line(lead, rank, now_ms, status)
                    if status == "UPD" and lead.joins:  # the repeat that updated it, and why it joined
                        line += "\n      joined: " + format_join(lead.joins[-1])
                    emit(line)
                emitted += 1
            if group_id:
                _commit(consumer, positions)
    finally:
        consumer.close()
    if skipped:
        LOG.warning("%d unreadable lead records skipped", skipped)
    return emitted


def _topic_partition(record):
    from kafka import TopicPartition

    return TopicPartition(record.topic, record.partition)
