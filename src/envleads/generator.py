"""A realistic, deterministic generator of citizen complaint traffic with ground truth.

``envleads generate`` (:mod:`envleads.generate_dataset`) writes JSON Lines events in the batch contract's input shape
(``complaint_id, received_at, text, title, channel, reporter``, sometimes ``address`` and
``jurisdiction_adcode``) and a truth file with one line per event. Texts are composed from phrase
banks in ``data/generator/*.json`` (sources, aspects, channel styles, typos), never from the shared
labelled data; administrative places come from the GB/T 2260 table (:func:`load_divisions`), and
sub-county places (towns, villages, roads, companies) are invented from syllables and filtered so
they never equal a real division name.

Why it looks like traffic rather than templates: each matter (a problem at a place) draws its
aspects independently from its source, each event re-renders the matter with its own channel
style, sentence frame, partial place description, details, typos and identity leaks; about a fifth
of valid events repeat an earlier matter days to weeks later. Memory is bounded: only a window of
recent matters is kept for repeats, so a million events stream through without being held.

Determinism: one ``random.Random(seed)`` drives everything and no set or hash order is iterated,
so the same ``count`` and ``seed`` give the same bytes whatever ``PYTHONHASHSEED`` is.
"""
from __future__ import annotations

import bisect
import datetime as _dt
import json
import random
import re
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from envleads.config import CHINA_TZ
from envleads.divisions import CITY, COUNTY, MUNICIPALITY_CODES, PROVINCE
from envleads.generator_banks import CHANNELS, Banks, banks, short_name  # short_name: public here too

MALFORMED_REASONS = ("invalid_json", "truncated", "empty_text", "missing_id", "oversize_text",
                     "invalid_utf8", "bad_timestamp", "not_object")
_ID_PREFIX = {"phone": "RX", "wechat": "WX", "web": "WB", "letter": "XF"}
_DAY_MS = 86_400_000
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_SENTINEL = "\ue000"  # private-use character replaced by invalid bytes in invalid_utf8 lines
_TOKEN = re.compile(r"\{(N|S|food|project|light)\}")


class GeneratedEvent(NamedTuple):
    """One output line (bytes, no trailing newline) and its ground truth."""

    line: bytes
    truth: dict


class _Person(NamedTuple):
    name: str
    surname: str
    gender: str  # "先生" or "女士"
    phone: str
    id_number: str


class _Matter(NamedTuple):
    """A problem at a place; every repeat re-renders the same matter."""

    matter_id: str
    environmental: bool
    adcode: str  # the true county (or county-less city) code
    key: str  # source key (environmental) or topic key
    name: str  # invented source name, e.g. 宏达化工有限公司
    noun: str
    aspects: Tuple[str, ...]
    labels: Tuple[str, ...]
    site: str
    places: Dict[str, str]  # town, village, community, road, house, industrial
    receptor: Optional[Tuple[str, str]]  # (kind, invented name)
    severe: Tuple[str, ...]
    first_id: Optional[str]
    first_ms: int
    reporter: _Person


class _Message(NamedTuple):
    """What one rendered message says, shared by the channel renderers (``pii`` is filled in)."""

    matter: "_Matter"
    person: "_Person"
    date: _dt.datetime
    loc: str
    loc_short: str
    src: str
    short: str
    head: str
    body: List[str]
    marker: str
    noisy_now: bool
    leak: bool
    pii: Dict[str, bool]


def id_check_digit(first17: str) -> str:
    """GB 11643 check character of an 18-digit resident identity number."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS)) % 11]


class _Generator:
    """Stateful stream: clock, window of recent matters, counters. One per ``generate_events`` call."""

    def __init__(self, count: int, seed: int, banks: Banks):
        self.b = banks
        self.rng = random.Random(seed)
        mix = banks.mix
        lo, hi = mix["span_days"]
        span_days = min(max(count / float(mix["events_per_day"]), lo), hi)
        self.rate_per_day = max(count, 1) / span_days
        start = _dt.datetime.fromisoformat(mix["start"])
        self.start_ms = int(start.timestamp() * 1000)
        self.clock_days = 0.0
        self.seq = 0
        self.matter_seq = 0
        self.valid = 0
        self.repeats = 0
        gap_lo, gap_hi = mix["repeat_gap_days"]
        self.gap_lo_ms, self.gap_hi_ms = int(gap_lo * _DAY_MS), int(gap_hi * _DAY_MS)
        self.window: List[_Matter] = []
        self.window_ms: List[int] = []
        self.head = 0
        self.window_cap = int(mix["window_matters"])

    # ---- small helpers -------------------------------------------------------------------------
    def _fill(self, pattern: str) -> str:
        if "{" not in pattern:
            return pattern
        rng, b = self.rng, self.b

        def sub(match):
            token = match.group(1)
            if token == "N":
                return rng.choice(b.invented)
            if token == "S":
                return rng.choice(b.phr["surnames"])
            return rng.choice(b.phr["fill"][token])

        return _TOKEN.sub(sub, pattern)

    def _person(self, home: str) -> _Person:
        rng, phr = self.rng, self.b.phr
        surname = rng.choice(phr["surnames"])
        given = rng.choice(phr["given_chars"])
        if rng.random() < 0.6:
            given += rng.choice(phr["given_chars"])
        gender = "先生" if rng.random() < 0.5 else "女士"
        phone = rng.choice(phr["mobile_prefixes"]) + "%08d" % rng.randrange(100_000_000)
        area = home if rng.random() < 0.6 else rng.choice(self.b.all_places).adcode
        birth = _dt.date(1950, 1, 1) + _dt.timedelta(days=rng.randrange(19_700))
        serial = rng.randrange(1000)
        if (serial % 2 == 1) != (gender == "先生"):
            serial = (serial + 1) % 1000
        first17 = f"{area}{birth:%Y%m%d}{serial:03d}"
        return _Person(surname + given, surname, gender, phone, first17 + id_check_digit(first17))

    def _format_phone(self, phone: str) -> str:
        r = self.rng.random()
        if r < 0.6:
            return phone
        if r < 0.8:
            return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
        if r < 0.95:
            return f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
        return phone.translate(_FULLWIDTH)

    # ---- time ---------------------------------------------------------------------------------
    def _next_time_ms(self) -> int:
        """Advances a Poisson clock in 'intensity days' and warps it onto the hour profile."""
        self.clock_days += self.rng.expovariate(self.rate_per_day)
        day = int(self.clock_days)
        frac = self.clock_days - day
        cum = self.b.hour_cum
        hour = min(bisect.bisect_right(cum, frac) - 1, 23)
        within = (frac - cum[hour]) / self.b.hour_w[hour]
        return self.start_ms + day * _DAY_MS + int((hour + within) * 3_600_000)

    # ---- matters ------------------------------------------------------------------------------
    def _new_matter(self, night: bool, environmental: bool, now_ms: int) -> _Matter:
        rng, b = self.rng, self.b
        self.matter_seq += 1
        if b.ambiguous and rng.random() < b.mix["ambiguous_county_share"]:
            place = rng.choice(b.ambiguous)
        else:
            place = rng.choices(b.places, cum_weights=b.place_cum)[0]
        places = {
            "town": self._fill(rng.choice(b.phr["place"]["town"])),
            "village": self._fill(rng.choice(b.phr["place"]["village"])),
            "community": self._fill(rng.choice(b.phr["place"]["community"])),
            "road": self._fill(rng.choice(b.phr["place"]["road"])),
            "house": str(rng.randrange(1, 300)),
            "industrial": self._fill(rng.choice(b.phr["place"]["industrial"])),
        }
        reporter = self._person(place.adcode)
        if not environmental:
            key = rng.choices(b.topic_keys, cum_weights=b.topic_cum)[0]
            return _Matter(f"M{self.matter_seq:08d}", False, place.adcode, key, "", "", (), (),
                           rng.choice(("community", "street", "village")), places, None, (), None, now_ms,
                           reporter)
        if night and rng.random() < b.mix["night_noise_bias"]:
            key = rng.choices(b.noisy_keys, cum_weights=b.noisy_cum)[0]
        else:
            key = rng.choices(b.source_keys, cum_weights=b.source_cum)[0]
        source = b.scn["sources"][key]
        aspects = [a for a, p in source["aspects"] if rng.random() < p]
        if not aspects:
            aspects = [source["aspects"][0][0]]
        aspect_defs = b.scn["aspects"]
        labels: List[str] = []
        for aspect in aspects:
            if aspect_defs[aspect]["label"] not in labels:
                labels.append(aspect_defs[aspect]["label"])
        severe = [aspect_defs[a]["severe"] for a in aspects if "severe" in aspect_defs[a]]
        receptor = None
        for kind, spec in b.scn["receptors"].items():
            if rng.random() < spec["p"] and all(l in labels for l in spec.get("labels", ())):
                receptor = (kind, self._fill(rng.choice(spec["names"])))
                if kind == "water_source" and "饮用水源" not in severe:
                    severe.append("饮用水源")
                break
        return _Matter(f"M{self.matter_seq:08d}", True, place.adcode, key,
                       self._fill(rng.choice(source["names"])), rng.choice(source["nouns"]), tuple(aspects),
                       tuple(labels), source["site"], places, receptor, tuple(severe), None, now_ms, reporter)

    def _remember(self, matter: _Matter) -> None:
        self.window.append(matter)
        self.window_ms.append(matter.first_ms)
        if len(self.window) - self.head > self.window_cap:
            self.head += 1
        if self.head > 4096:
            del self.window[: self.head]
            del self.window_ms[: self.head]
            self.head = 0

    def _pick_repeat(self, now_ms: int) -> Optional[_Matter]:
        lo = max(self.head, bisect.bisect_left(self.window_ms, now_ms - self.gap_hi_ms, self.head))
        hi = bisect.bisect_right(self.window_ms, now_ms - self.gap_lo_ms, self.head)
        if hi <= lo:
            return None
        return self.window[self.rng.randrange(lo, hi)]

    # ---- places in text -----------------------------------------------------------------------
    def _admin(self, place_code: str, mode: str) -> Tuple[str, str, bool, bool, bool]:
        """Administrative part of a place phrase and which levels it names: (phrase, short, p, c, k)."""
        table = self.b.table
        province, city, county = table.chain(place_code)
        if county is None:  # a county-less city: only province and city exist
            mode = {"full": "province_city", "city_county": "city", "short_city_county": "short_city",
                    "county": "city", "province_county": "province_city"}.get(mode, mode)
        municipal = province.adcode in MUNICIPALITY_CODES
        p_name, p_short = province.name, short_name(province.name, PROVINCE)
        c_name = city.name if city else None
        k_name = county.name if county else None
        if mode == "full":
            if municipal or city is None:
                return p_name + k_name, k_name, True, False, True
            return p_name + c_name + k_name, k_name, True, True, True
        if mode == "city_county":
            if city is None:
                return p_name + k_name, k_name, True, False, True
            return c_name + k_name, k_name, False, True, True
        if mode == "short_city_county":
            if city is None:
                return p_short + k_name, k_name, True, False, True
            return short_name(c_name, CITY) + k_name, k_name, False, True, True
        if mode == "county":
            return k_name, k_name, False, False, True
        if mode == "province_county":
            return p_short + k_name, k_name, True, False, True
        if mode == "province_city":
            return p_name + c_name, c_name, True, True, False
        if mode == "short_city":
            return short_name(c_name, CITY), short_name(c_name, CITY), False, True, False
        if mode == "city":
            if city is None:
                return p_name, p_short, True, False, False
            return c_name, short_name(c_name, CITY), False, True, False
        if mode == "province":
            return p_name, p_short, True, False, False
        return "", "", False, False, False

    def _support(self, place_code: str, named_p: bool, named_c: bool, named_k: bool) -> Optional[dict]:
        """The region a reader can derive from the named levels (ambiguous names stop higher)."""
        table = self.b.table
        province, city, county = table.chain(place_code)
        if named_k and county is not None:
            candidates = table.named(county.name)
            if named_p:
                candidates = [d for d in candidates if d.province_code == province.adcode]
            if named_c and city is not None:
                candidates = [d for d in candidates if d.city_code == city.adcode]
            if len(candidates) == 1:
                return table.region_record(county.adcode)
            city_codes = {d.city_code for d in candidates}
            if len(city_codes) == 1 and city is not None and city.adcode in city_codes:
                return table.region_record(city.adcode)
            if len({d.province_code for d in candidates}) == 1:
                return table.region_record(province.adcode)
            named_k = False
        if named_c and city is not None:
            return table.region_record(city.adcode)
        if named_p:
            return table.region_record(province.adcode)
        return None

    def _sub_place(self, matter: _Matter) -> str:
        rng, pl = self.rng, matter.places
        site, r = matter.site, rng.random()
        if site == "village":
            if r < 0.45:
                return pl["town"] + pl["village"]
            if r < 0.75:
                return pl["village"] + (rng.choice(self.b.phr["place"]["village_group"]) if rng.random() < 0.3 else "")
            return pl["town"]
        if site == "industrial":
            if r < 0.4:
                return pl["industrial"]
            if r < 0.7:
                return pl["town"] + pl["road"]
            return pl["town"]
        if site == "community":
            if r < 0.5:
                return pl["community"]
            if r < 0.75:
                return pl["road"] + pl["community"]
            return pl["community"] + str(rng.randrange(1, 30)) + rng.choice(self.b.phr["place"]["building"])
        if r < 0.45:
            return pl["road"] + pl["house"] + "号"
        if r < 0.7:
            return pl["road"] + rng.choice(self.b.phr["place"]["nearby"])
        if r < 0.85:
            return pl["road"] + pl["community"]
        return pl["road"]

    # ---- text ---------------------------------------------------------------------------------
    def _problems(self, matter: _Matter, extras: float = 0.25) -> List[str]:
        """One clause per aspect (so the labels stay true to the text), sometimes a second one."""
        rng, aspects = self.rng, self.b.scn["aspects"]
        parts = []
        for aspect in matter.aspects:
            spec = aspects[aspect]
            clause = rng.choice(spec["clauses"])
            if spec["times"] and rng.random() < 0.4:
                time = rng.choice(spec["times"])
                if time not in clause:
                    clause = time + clause
            parts.append(clause)
            if len(spec["clauses"]) > 3 and rng.random() < extras:
                extra = rng.choice(spec["clauses"])
                if extra not in parts:
                    parts.append(extra)
        return parts

    def _short(self, matter: _Matter) -> str:
        if not matter.environmental:
            return self.rng.choice(self.b.phr["non_environmental"]["topics"][matter.key]["short"])
        return self.rng.choice(self.b.scn["aspects"][matter.aspects[0]]["short"])

    def _details(self, matter: _Matter, lo: int, hi: int, rich: float = 0.0) -> List[str]:
        """Duration, effects, receptors, earlier attempts; ``rich`` raises their odds (web, letters)."""
        rng, det = self.rng, self.b.phr["details"]
        parts = []
        if not matter.environmental:
            return [rng.choice(det["prior"])] if rng.random() < 0.3 else []
        if rng.random() < 0.35 + rich:
            parts.append(rng.choice(det["duration"]))
        if rng.random() < 0.45 + rich:
            parts.append(rng.choice(det["effects"]))
        if matter.receptor is not None and rng.random() < 0.85:
            kind, name = matter.receptor
            spec = self.b.scn["receptors"][kind]
            parts.append(rng.choice(spec["clauses"]).replace("{r}", name))
        if rng.random() < 0.2 + rich:
            parts.append(rng.choice(det["prior"]))
        return parts[: max(lo, min(hi, len(parts)))]

    def _render(self, matter: _Matter, channel: str, repeat: bool, night: bool, person: _Person,
                date: _dt.datetime) -> Tuple[str, str, Optional[str], Optional[dict], Optional[dict], Dict[str, bool]]:
        """Title, text, address, region (with address), region (text only), PII flags."""
        rng, b = self.rng, self.b
        phr = b.phr
        modes, cum = b.modes[channel]
        mode = rng.choices(modes, cum_weights=cum)[0]
        admin, admin_short, named_p, named_c, named_k = self._admin(matter.adcode, mode)
        sub = self._sub_place(matter) if (rng.random() < 0.85 or not admin) else ""
        loc = admin + sub
        loc_short = admin_short or sub
        if not loc:
            loc = rng.choice(("我们这里", "我家附近", "我们这边", "本地"))
        near = rng.choice(phr["place"]["nearby"])
        short = self._short(matter)
        if matter.environmental:
            src = matter.name if rng.random() < 0.6 else matter.noun
            if rng.random() < 0.5:
                frame = rng.choice(phr["frames"]["location_source"])
            else:
                frame = "{loc}" + rng.choice(("，", "这边，", "，有个", "一带，")) + rng.choice(phr["frames"]["source_only"])
            if "{loc}" not in frame and channel != "letter":
                # the text names no place at all ("我们小区旁边的饭店"): nothing to resolve
                named_p = named_c = named_k = False
                loc_short = ""
            head = frame.format(loc=loc, src=src, near=near, noun=matter.noun, home=rng.choice(phr["frames"]["home"]))
            body = self._problems(matter, extras={"wechat": 0.0, "phone": 0.2}.get(channel, 0.5))
        else:
            src = ""
            topic = phr["non_environmental"]["topics"][matter.key]
            head = rng.choice(("我是{loc}的居民", "{loc}", "我住在{loc}", "{loc}这边", "本人在{loc}")).format(loc=loc)
            body = [rng.choice(topic["clauses"])]
        marker = rng.choice(phr["details"]["repeat_markers"]) if repeat and rng.random() < 0.5 else ""
        noisy_now = night and "noise" in matter.labels and rng.random() < 0.5
        message = _Message(matter=matter, person=person, date=date, loc=loc, loc_short=loc_short, src=src,
                           short=short, head=head, body=body, marker=marker, noisy_now=noisy_now,
                           leak=rng.random() < b.mix["pii_in_text"][channel],
                           pii={"name": False, "phone": False, "id_number": False})
        title, text = getattr(self, f"_{channel}_text")(message, phr["channels"][channel])
        text = self._noise(text)
        address, region, region_text = self._address_and_regions(matter, channel, named_p, named_c, named_k)
        return title, text, address, region, region_text, message.pii

    def _pii_phrase(self, message: "_Message", kind: str) -> str:
        """A phrase of the reporter's identity, noting in ``message.pii`` what it reveals."""
        s = self.rng.choice(self.b.phr["intro_pii"][kind])
        for field, token in (("name", "{name}"), ("phone", "{phone}"), ("id_number", "{id}")):
            if token in s:
                message.pii[field] = True
        person = message.person
        return s.format(name=person.name, phone=self._format_phone(person.phone), id=person.id_number,
                        surname=person.surname)

    def _phone_text(self, m: "_Message", ch: dict) -> Tuple[str, str]:
        """A hotline operator's summary: opening with the caller, the problem, demands."""
        rng, phr, person = self.rng, self.b.phr, m.person
        opening = rng.choice(ch["openings"])
        if "{caller}" in opening:
            caller = rng.choice(phr["intro_pii"]["caller"])
            if "{name}" in caller:
                m.pii["name"] = True
            if "{phone}" in caller:
                m.pii["phone"] = True
            opening = opening.replace("{caller}", caller.format(
                name=person.name, surname=person.surname, phone=self._format_phone(person.phone))
                .replace("先生", person.gender).replace("女士", person.gender))
        pieces = [m.marker]
        if m.noisy_now:
            pieces.append(rng.choice(phr["details"]["night_now"]))
        if rng.random() < 0.3:
            pieces.append(rng.choice(ch["fillers"]))
        pieces.append(m.head + "，" + "，".join(m.body))
        details = self._details(m.matter, 0, 2)
        if m.matter.environmental and rng.random() < 0.5:
            details.append(rng.choice(ch["mood"]))
        text = opening + "".join(pieces) + ("，" + "，".join(details) if details else "") + "。"
        if m.leak and not m.pii["phone"]:
            text += self._pii_phrase(m, "phone" if rng.random() < 0.6 else "name_phone")
        text += rng.choice(ch["demands"] if m.matter.environmental else phr["non_environmental"]["demands"])
        return "", text

    def _wechat_text(self, m: "_Message", ch: dict) -> Tuple[str, str]:
        """A short chat message, sometimes with the problem as its title."""
        rng = self.rng
        core = (m.head + " " if rng.random() < 0.3 else m.head + "，") + "，".join(m.body)
        text = rng.choice(ch["openings"]) + m.marker + core + ("，" if rng.random() < 0.6 else " ") \
            + rng.choice(ch["demands"]) + rng.choice(ch["tails"])
        if m.leak:
            text += " " + self._pii_phrase(m, "phone")
        return (m.short if rng.random() < 0.35 else ""), text

    def _web_text(self, m: "_Message", ch: dict) -> Tuple[str, str]:
        """A web form: a title, background, the problem, details, questions, demands."""
        rng, phr, matter = self.rng, self.b.phr, m.matter
        title = rng.choice(ch["titles"]).format(loc_short=m.loc_short if rng.random() < 0.6 else "",
                                                src=(m.src if rng.random() < 0.5 else matter.noun), short=m.short)
        parts = [rng.choice(ch["openings"])]
        if m.leak:
            parts.append(self._pii_phrase(m, "name_phone" if rng.random() < 0.7 else "full"))
        det = phr["details"]
        if matter.environmental and rng.random() < 0.4:
            parts.append(rng.choice(det["background"]) + "。")
        parts.append(m.marker + m.head + "，" + "，".join(m.body) + "。")
        details = self._details(matter, 1, 4, rich=0.3)
        if details:
            parts.append("，".join(details) + "。")
        if matter.environmental and rng.random() < 0.3:
            parts.append(rng.choice(det["questions"]))
        if not matter.environmental and rng.random() < 0.5:
            parts.append(rng.choice(phr["details"]["prior"]) + "。")
        parts.append(rng.choice(ch["demands"] if matter.environmental else phr["non_environmental"]["demands"]))
        return title, "".join(parts)

    def _letter_text(self, m: "_Message", ch: dict) -> Tuple[str, str]:
        """A letter: title, salutation, introduction, the problem, closing, signature and date."""
        rng, phr, matter, person = self.rng, self.b.phr, m.matter, m.person
        title = (rng.choice(ch["titles"]).format(src=m.src, short=m.short) if matter.environmental
                 else rng.choice(("", "关于" + m.short + "的来信")))
        intros = ch["intros"] if matter.environmental else ch["intros_other"]
        intro = rng.choice(intros).format(loc=m.loc, src=m.src, short=m.short)
        parts = [rng.choice(ch["openings"]), intro, m.marker + m.head + "，" + "，".join(m.body) + "。"]
        details = self._details(matter, 2, 4, rich=0.3)
        if matter.environmental and rng.random() < 0.5:
            details.insert(0, rng.choice(phr["details"]["background"]))
        if details:
            parts.append("，".join(details) + "。")
        parts.append(rng.choice(ch["demands"]))
        parts.append(rng.choice(ch["closings"]))
        signature = "\n举报人：" + (person.name if m.leak or rng.random() < 0.5 else "一群受害的群众")
        if "举报人：" + person.name in signature:
            m.pii["name"] = True
            if m.leak:
                signature += "\n电话：" + self._format_phone(person.phone)
                m.pii["phone"] = True
                if rng.random() < 0.4:
                    signature += "\n身份证号：" + person.id_number
                    m.pii["id_number"] = True
        date = m.date
        parts.append(signature + f"\n{date.year}年{date.month}月{date.day}日")
        return title, "".join(parts)

    def _address_and_regions(self, matter: _Matter, channel: str, named_p: bool, named_c: bool, named_k: bool
                             ) -> Tuple[Optional[str], Optional[dict], Optional[dict]]:
        """The optional address field, the region text and address support, and the text's alone."""
        rng = self.rng
        region_text = self._support(matter.adcode, named_p, named_c, named_k)
        if rng.random() >= self.b.mix["address_rate"][channel]:
            return None, region_text, region_text
        a_mode = rng.choice(("full", "city_county", "county"))
        a_admin, _, ap, ac, ak = self._admin(matter.adcode, a_mode)
        address = a_admin + self._sub_place(matter)
        region = self._support(matter.adcode, named_p or ap, named_c or ac, named_k or ak)
        if region_text is not None and region is not None and _depth(region_text) > _depth(region):
            region = region_text
        return address, region, region_text

    def _noise(self, text: str) -> str:
        """Typos, full-width digits and the odd message in traditional characters."""
        rng, mix = self.rng, self.b.mix
        if rng.random() < mix["typo_rate"]:
            for _ in range(rng.randint(1, 2)):
                wrong, typo = rng.choice(self.b.typos)
                if wrong in text:
                    text = text.replace(wrong, typo, 1)
        if rng.random() < mix["fullwidth_digit_rate"]:
            text = text.translate(_FULLWIDTH)
        if rng.random() < mix["traditional_rate"]:
            text = text.translate(self.b.traditional)
        return text

    def _reporter_field(self, person: _Person) -> Tuple[Optional[dict], Dict[str, bool]]:
        rng = self.rng
        names, cum = self.b.reporter_modes
        mode = rng.choices(names, cum_weights=cum)[0]
        if mode == "absent":
            return None, {"name": False, "phone": False, "id_number": False}
        keep = {"full": ("name", "phone", "id_number"), "name_phone": ("name", "phone"),
                "phone": ("phone",), "name": ("name",)}[mode]
        omit_missing = rng.random() < 0.5
        values = {"name": person.name, "phone": person.phone, "id_number": person.id_number}
        field = {}
        for key in ("name", "phone", "id_number"):
            if key in keep:
                field[key] = values[key]
            elif not omit_missing:
                field[key] = None
        return field, {k: k in keep for k in values}

    # ---- events -------------------------------------------------------------------------------
    def next_event(self) -> GeneratedEvent:
        rng, b, mix = self.rng, self.b, self.b.mix
        self.seq += 1
        line_no = self.seq
        now_ms = self._next_time_ms()
        date = _dt.datetime.fromtimestamp(now_ms / 1000.0, CHINA_TZ)
        night = date.hour >= 22 or date.hour < 6
        channel = CHANNELS[bisect.bisect_right(b.channel_cum, rng.random() * b.channel_cum[-1])]
        complaint_id = f"{_ID_PREFIX[channel]}{date:%Y%m%d}{self.seq:08d}"
        malformed = rng.random() < mix["malformed_rate"]
        matter = None
        repeat = False
        if not malformed:
            self.valid += 1
            target = mix["repeat_rate"]
            deficit = target * self.valid - self.repeats
            p_repeat = min(0.35, max(0.0, target + deficit / 200.0))
            if rng.random() < p_repeat:
                matter = self._pick_repeat(now_ms)
                repeat = matter is not None
        if matter is None:
            environmental = rng.random() >= mix["non_environmental_rate"]
            matter = self._new_matter(night, environmental, now_ms)
            if not malformed:
                matter = matter._replace(first_id=complaint_id)
                self._remember(matter)
        if repeat:
            self.repeats += 1
            person = matter.reporter if rng.random() < mix["repeat_same_reporter"] else self._person(matter.adcode)
        else:
            person = matter.reporter
        title, text, address, region, region_text, pii = self._render(matter, channel, repeat, night, person, date)
        reporter, in_field = self._reporter_field(person)
        event = {"complaint_id": complaint_id,
                 "received_at": date.isoformat(timespec="seconds"),
                 "text": text, "title": title, "channel": channel}
        if reporter is not None:
            event["reporter"] = reporter
        if address is not None:
            event["address"] = address
        if rng.random() < mix["jurisdiction_rate"]:
            province, city, _ = b.table.chain(matter.adcode)
            event["jurisdiction_adcode"] = city.adcode if city is not None and rng.random() < 0.8 else province.adcode
        present = {k: pii[k] or in_field[k] for k in pii}
        truth = {
            "complaint_id": complaint_id, "line": line_no, "malformed": False, "malformed_reason": None,
            "environmental": matter.environmental, "labels": list(matter.labels),
            "primary_type": matter.labels[0] if matter.labels else None,
            "region": region, "region_text_only": region_text, "true_adcode": matter.adcode,
            "matter_id": matter.matter_id, "duplicate_of": matter.first_id if repeat else None,
            "channel": channel, "received_at": event["received_at"], "night": night,
            "severe": list(matter.severe), "receptor": matter.receptor[0] if matter.receptor else None,
            "reporter_name": person.name if present["name"] else None,
            "reporter_phone": person.phone if present["phone"] else None,
            "reporter_id_number": person.id_number if present["id_number"] else None,
            "pii_in_text": pii,
        }
        if malformed:
            return self._malform(event, truth)
        return GeneratedEvent(_dumps(event), truth)

    def _malform(self, event: dict, truth: dict) -> GeneratedEvent:
        rng, b = self.rng, self.b
        names, cum = b.malformed_modes
        reason = rng.choices(names, cum_weights=cum)[0]
        truth.update(malformed=True, malformed_reason=reason)
        cid = event["complaint_id"]
        if reason == "invalid_json":
            raw = _dumps(event)
            variant = rng.randrange(3)
            if variant == 0:
                line = raw[:-1] + b",}"
            elif variant == 1:
                line = raw.replace(b'"text": "', b'"text": ', 1)
            else:
                line = raw.replace(b'": "', b"': '", 2).replace(b'{"', b"{'", 1)
        elif reason == "truncated":
            raw = _dumps(event)
            line = raw[: rng.randrange(10, max(11, len(raw) - 2))]
            if ('"complaint_id": "%s"' % cid).encode() not in line:
                truth["complaint_id"] = None
        elif reason == "empty_text":
            event["text"] = rng.choice(("", " ", "\u3000", "   "))
            event["title"] = ""
            line = _dumps(event)
            truth.update(environmental=False, labels=[], primary_type=None, region=None, region_text_only=None,
                         severe=[], receptor=None)
        elif reason == "missing_id":
            variant = rng.randrange(3)
            if variant == 0:
                del event["complaint_id"]
            else:
                event["complaint_id"] = None if variant == 1 else ""
            line = _dumps(event)
            truth["complaint_id"] = None
        elif reason == "oversize_text":
            limit = int(b.mix["max_text_bytes"])
            base = event["text"] or "。"
            unit = len(base.encode("utf-8"))
            repeat = limit // unit + 1 + rng.randrange(1 + limit // unit)
            event["text"] = (base * repeat)
            line = _dumps(event)
        elif reason == "invalid_utf8":
            text = event["text"]
            cut = rng.randrange(len(text) + 1)
            event["text"] = text[:cut] + _SENTINEL + text[cut:]
            bad = rng.choice((b"\xff", b"\xc3\x28", b"\xe4\xb8", b"\xfe\xfe", b"\x80"))
            line = _dumps(event).replace(_SENTINEL.encode("utf-8"), bad, 1)
        elif reason == "bad_timestamp":
            event["received_at"] = rng.choice(("2025-13-40T25:61:00+08:00", "昨天下午三点", "", "N/A",
                                               "2025-02-30T10:00:00+08:00", "not a date", "20250"))
            line = _dumps(event)
        else:  # not_object
            variant = rng.randrange(3)
            if variant == 0:
                line = _dumps([event])
            elif variant == 1:
                line = _dumps(event["text"])
            else:
                line = rng.choice((b"null", b"42", b"true"))
            truth["complaint_id"] = None
        truth["duplicate_of"] = None
        return GeneratedEvent(line.replace(b"\n", b" ").replace(b"\r", b" "), truth)


def _depth(region: dict) -> int:
    return {PROVINCE: 1, CITY: 2, COUNTY: 3}.get(region.get("level"), 0)


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def generate_events(count: int, seed: int) -> Iterator[GeneratedEvent]:
    """Yields ``count`` events in event-time order, deterministically for ``seed``.

    Args:
        count: number of events (lines), malformed ones included.
        seed: any integer; the same ``count`` and ``seed`` give the same bytes.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    generator = _Generator(count, seed, banks())
    for _ in range(count):
        yield generator.next_event()
