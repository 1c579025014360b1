"""Complainant identity: keyed pseudonyms and masking of identity inside texts.

The environmental protection law obliges authorities to keep a reporter's identity confidential.
envleads therefore replaces the reporter block with a keyed HMAC pseudonym at its first stage and
masks identity in the text before anything is written or logged: phone and ID numbers, e-mail
addresses, WeChat and QQ ids, licence plates, self-introduced names, the reporter's home unit, and
the reporter's own name, phone and ID number wherever they reappear. The key comes from the
environment or a file; rotating it changes every reporter key (old and new keys are not
linkable), which is the point of rotating.

Masking matches on a normalised view of the text (NFKC, Chinese numerals inside digit runs read
as digits, separators between digit groups allowed) and replaces the matching spans of the
original text, so that the rest of the text stays exactly as written.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from bisect import bisect_left, bisect_right
from itertools import compress
from functools import lru_cache
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from envleads.config import OperatorError

KEY_ENV = "ENVLEADS_PSEUDONYM_KEY"
KEY_FILE_ENV = "ENVLEADS_PSEUDONYM_KEY_FILE"

PHONE_MASK = "[电话]"
ID_MASK = "[身份证号]"
NAME_MASK = "[姓名]"
EMAIL_MASK = "[邮箱]"
WECHAT_MASK = "[微信号]"
QQ_MASK = "[QQ号]"
PLATE_MASK = "[车牌]"
ADDRESS_MASK = "[住址]"

# HMAC-SHA256 keys shorter than its block's half are guessable from reporter keys and a phone book
MIN_PRODUCTION_KEY_BYTES = 32


class MissingPseudonymKey(OperatorError):
    """No usable pseudonymisation key: none configured in production mode, a key file that is
    missing or empty, or a production key shorter than :data:`MIN_PRODUCTION_KEY_BYTES`."""


def load_pseudonym_key(production: bool, environ: Optional[Mapping[str, str]] = None) -> bytes:
    """The HMAC key: ``$ENVLEADS_PSEUDONYM_KEY`` or the file named by ``$ENVLEADS_PSEUDONYM_KEY_FILE``.

    Without either, production mode fails; demo mode generates a random key for this run only
    (reporter keys are then stable within the run, not across runs). A key file that is named but
    missing or empty is an error in either mode: falling back to a random key would give each
    worker process its own, and one reporter several reporter keys. Production keys must have at
    least :data:`MIN_PRODUCTION_KEY_BYTES` bytes. The key is never logged (errors name the file,
    never its content).
    """
    environ = os.environ if environ is None else environ
    key = None
    if environ.get(KEY_ENV):
        key = environ[KEY_ENV].encode("utf-8")
    elif environ.get(KEY_FILE_ENV):
        path = environ[KEY_FILE_ENV]
        try:
            with open(path, "rb") as handle:
                key = handle.read().strip()
        except OSError as error:
            raise MissingPseudonymKey(f"pseudonymisation key file {path} cannot be read ({error.strerror})") from None
        if not key:
            raise MissingPseudonymKey(f"pseudonymisation key file {path} is empty")
    if key is None:
        if production:
            raise MissingPseudonymKey(
                f"production mode needs a pseudonymisation key: set {KEY_ENV} or {KEY_FILE_ENV}")
        return secrets.token_bytes(32)
    if production and len(key) < MIN_PRODUCTION_KEY_BYTES:
        raise MissingPseudonymKey(f"the pseudonymisation key has {len(key)} bytes; production needs at least "
                                  f"{MIN_PRODUCTION_KEY_BYTES} (e.g. python -c 'import secrets; "
                                  f"print(secrets.token_hex(32))')")
    return key


def _normalise_identity(value: str) -> str:
    value = unicodedata.normalize("NFKC", value)
    return re.sub(r"[\s\-()（）+]", "", value).upper()


def reporter_key(reporter: Optional[Mapping[str, Optional[str]]], key: bytes) -> Optional[str]:
    """Pseudonymous key of a reporter, from the strongest identifier present (ID, phone, name)."""
    if not reporter:
        return None
    for field in ("id_number", "phone", "name"):
        value = reporter.get(field)
        if value and _normalise_identity(value):
            digest = hmac.new(key, f"{field}:{_normalise_identity(value)}".encode("utf-8"), hashlib.sha256)
            return "rk-" + digest.hexdigest()[:20]
    return None


# ---- masking ---------------------------------------------------------------------------------

# Between the groups of a number people write spaces (also doubled), dots, hyphens, dashes (the
# full-width hyphen is "-" after NFKC) or middle dots, up to three in a row ("——").
_SEP = r"[ \t.\-\u00b7\u2010-\u2015\u2212\u30fb]{1,3}"
_SEP_SPLIT_RE = re.compile(f"({_SEP})")
_SEPARATORS_DROPPED = dict.fromkeys(map(ord, " \t.-\u00b7\u2212\u30fb"), None)
_SEPARATORS_DROPPED.update(dict.fromkeys(range(0x2010, 0x2016), None))
_GAP = f"(?:{_SEP})?"
# Digits written as Chinese numerals (一三九…, 幺 for 1, 〇/○/零 for 0, financial 壹…玖) are read as
# digits inside runs of phone length only, so that ordinary words with numerals stay words.
_NUMERALS = "〇○零幺一二三四五六七八九壹贰叁肆伍陆柒捌玖"
_NUMERAL_DIGITS = str.maketrans(_NUMERALS, "0001123456789123456789")
_NUMERAL_RUN_RE = re.compile(f"[0-9{_NUMERALS}](?:{_GAP}[0-9{_NUMERALS}]){{6,}}")

_ID18_RE = re.compile(rf"(?<![0-9])[1-9](?:{_GAP}[0-9]){{16}}{_GAP}[0-9Xx](?![0-9A-Za-z])")
_ID15_RE = re.compile(rf"(?<![0-9])[1-9](?:{_GAP}[0-9]){{14}}(?![0-9A-Za-z])")
_PROVINCE_CODES = frozenset("11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
                            "61 62 63 64 65 71 81 82".split())
_MOBILE_RE = re.compile(
    rf"(?<![0-9])(?:(?:\+|00)?86{_GAP}|\(\+?86\){_GAP})?(1{_GAP}[3-9](?:{_GAP}[0-9]){{9}})(?![0-9])")
_LANDLINE_RE = re.compile(
    rf"(?<![0-9])((?:\(0[1-9][0-9]{{1,2}}\)|0[1-9][0-9]{{1,2}}){_GAP}[1-9][0-9]{{2,3}}{_GAP}[0-9]{{4}})(?![0-9])")
# A contact word vouches for a number of any grouping, also a landline without its area code.
_CONTACT_NUMBER_RE = re.compile(
    rf"(?:电话|電話|手机|手機|座机|固话|联系方式|(?<![A-Za-z])(?:tel|phone|mobile))(?:号码|号)?\s*(?:[是为:]\s*)?"
    rf"(\+?[0-9](?:{_GAP}[0-9]){{6,11}})(?![0-9])", re.IGNORECASE)
# Numbers that an order, a permit, a case or a register introduces are not a person's.
_CODE_BEFORE_RE = re.compile(r"(?:(?:单|编|流水|发票|批|许可证|执照|注册|案|文|合同|备案|序列|型|车次)号码?|代码|编码)"
                             r"\s*(?:[为是:#]\s*)?$")
# E-mails start only where a run of address characters starts: trying every position of a long run
# would backtrack quadratically on hostile input (a.a.a.a…).
_EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+\s*@\s*[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_AT = r"(?:\s*@\s*|\s*[(\[{<]\s*at\s*[)\]}>]\s*|\s+at\s+|\s*(?:艾特|圈a)\s*)"
_DOT = r"(?:\s*\.\s*|\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+|\s*点\s*)"
_SPELLED_EMAIL_RE = re.compile(
    rf"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+{_AT}[A-Za-z0-9-]+(?:{_DOT}[A-Za-z0-9-]+)*?{_DOT}"
    r"(?:com|cn|net|org|edu|gov|io|cc|top|me|info|hk|tw)(?![A-Za-z0-9])", re.IGNORECASE)
# WeChat ids: 6-20 letters, digits, _ or -, starting with a letter; or a number given as the id.
_WECHAT_RE = re.compile(
    r"(?:微信|威信|薇信|(?<![A-Za-z])(?:vx|wx|weixin|wechat|v信))(?:号码|号|id)?\s*(?:[是为:]\s*)?"
    r"([A-Za-z][-_A-Za-z0-9]{5,19}|[0-9]{5,12})(?![-_A-Za-z0-9])", re.IGNORECASE)
_QQ_RE = re.compile(rf"(?:(?<![A-Za-z])qq|扣扣|企鹅)(?:号码|号)?\s*(?:[是为:]\s*)?([1-9](?:{_GAP}[0-9]){{4,10}})(?![0-9])",
                    re.IGNORECASE)
# Plates: province, issuing letter, 5 characters (6 on new-energy plates, 4-5 and 挂 on trailers…;
# I and O are not used).
_PROVINCES = "[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼]"
_PLATE_RE = re.compile(_PROVINCES + r"[A-HJ-NP-Z][ ·・.\-]?"
                       r"([A-HJ-NP-Z0-9]{4,5}[挂学警港澳]|[A-HJ-NP-Z0-9]{5,6})(?![A-Za-z0-9])", re.IGNORECASE)
# The reporter's home: only where a first-person phrase introduces it are its building, unit and
# room numbers masked; the compound's name stays (repeat detection and region resolution use it),
# and so does every place that describes the problem (XX小区3栋楼下的烧烤店).
_HOME_RE = re.compile(r"(?:我们?家(?:住在|住|在)?|我住在?|本人家?住(?:在|址)?|家住在?|(?:家庭|联系|本人|我的|现|居住)?住址"
                      r"|(?:家庭|联系|本人|我的)地址)\s*(?:[是为:]\s*)?")
# What ends the clause of a home phrase. Every alternative is a plain string, so that the search
# skips to their first characters in C ([,，。…]|旁边|… would try every alternative at every place).
_HOME_CLAUSE_END_RE = re.compile("|".join(map(re.escape, ",，。;；!！?？\n")) + "|旁边|附近|对面|楼下|楼上|隔壁|周边|边上|后面|前面|"
                                 "门口|一带|里面|的|被|受|天天|每天|经常|晚上|夜里|东侧|西侧|南侧|北侧|下风")
_NOT_AFTER_HAO = "线路街道公文"  # 1号线, 3号路…: lines and roads, not houses
_UNIT_WORDS = ("号楼", "号院", "栋", "幢", "座", "单元", "楼", "层", "室", "弄", f"号(?![{_NOT_AFTER_HAO}])")
_UNIT_TOKEN = rf"(?:[0-9]{{1,5}}|[A-Za-z][0-9]{{0,3}}|[一二三四五六七八九十百零〇两]{{1,4}})\s*(?:{'|'.join(_UNIT_WORDS)})"
_UNIT_DASHED = r"[0-9]{1,4}(?:[-—][0-9]{1,5}){1,3}"
_UNITS_RE = re.compile(
    rf"(?:{_UNIT_TOKEN}|{_UNIT_DASHED})(?:[\s\-—]*(?:{_UNIT_TOKEN}|{_UNIT_DASHED}|[0-9]{{3,5}}(?![0-9])))*")
_HOME_CLAUSE_CHARS = 60
# every run of units holds a unit word or a dashed number (3-2-501): clauses without are not searched
_UNIT_WORD_START_RE = re.compile(f"[{''.join(sorted({word[0] for word in _UNIT_WORDS}))}]")
_DASHED_START_RE = re.compile("[0-9][-—]")
# Every character _UNITS_RE can take (and some more). A match, and every attempt at one, stays in
# one run of these and reads at most the character after it: see _units_in_clauses.
_UNIT_CHAR = r"[\s0-9A-Za-z一二三四五六七八九十百零〇两\-—号楼院栋幢座单元层室弄]"
_UNIT_CHARS_RE = re.compile(_UNIT_CHAR + "+")
# the same characters, but whitespace (\s is what str.isspace says), for a test of one character
_UNIT_NOT_SPACE = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz一二三四五六七八九十百零〇两-—"
                            "号楼院栋幢座单元层室弄")
_FEW_CLAUSES = 3

# Names the reporter gives in the text: 我叫张三 / 姓名：李四 / 本人王小明，电话… / 我是赵六，联系电话…
# / 钱七来电称…. Words for roles (市民, 业主 …) in the name slot are not names.
_CJK = "[\u4e00-\u9fff]"
_CONTACT = "(?:联[系繫]|聯[系繫])?(?:电话|電話|手机|手機|身份证|身份證|联系方式|聯繫方式|联系|聯繫)"
_NAME_INTRO = r"我叫|本人叫|我的名字是|我姓|姓名[:：]?\s*|联[系繫]人[:：]?\s*|[举舉][报報]人[:：]\s*|投[诉訴]人[:：]\s*|[来來][电電]人[:：]\s*"
_INTRODUCED_NAME_RE = re.compile(rf"({_NAME_INTRO})({_CJK}{{1,4}}?)(?=[，,。.；;、（(\s]|{_CONTACT}|$)")
_NAME_INTRO_RE = re.compile(rf"(?:{_NAME_INTRO})[ \t]*")
# Characters that end a name written with spaces (我叫张 三住在… / 我叫张 三电话…)
_NOT_IN_SPACED_NAME = frozenset("电電手身联聯住家在是的今昨我本想要反投举舉微座地请因从到和与")
# up to four ideographs, spaces or tabs between them; after the first, none of _NOT_IN_SPACED_NAME
_SPACED_NAME_RE = re.compile(rf"[ \t]*{_CJK}(?:[ \t]*(?![{''.join(sorted(_NOT_IN_SPACED_NAME))}]){_CJK}){{0,3}}")
_SELF_NAME_BEFORE_CONTACT_RE = re.compile(
    rf"(本人|我是)({_CJK}{{2,4}})(?=\s*[，,（(]\s*(?:我的)?{_CONTACT})")
_CALLER_NAME_RE = re.compile(
    rf"(^|[。！？!?\n，,：:；;]\s*)({_CJK}{{2,4}}?)(?=[来來][电電](?:称|稱|反映|说|說|投诉|投訴|举报|舉報|表示))")
ROLE_WORDS = frozenset({"市民", "居民", "村民", "群众", "业主", "网友", "来电人", "投诉人", "举报人", "用户", "师傅",
                        "先生", "女士", "老人", "学生", "家长", "商户", "住户", "租户", "职工", "员工", "有人",
                        "多名市民", "多位居民", "该市民", "该居民", "附近居民", "周边居民", "小区业主"})
# The reporter's own number may be written with anything but letters, digits and ideographs (up
# to three characters) between its digits: a run of such digits is compared digit by digit. No
# number under 7 digits is compared, so runs of fewer are not even collected (a run's tail ends
# where the run ends, so it is shorter still). The digits of every ID number, mobile and landline
# (but an area code in brackets) are in one such run too: the number rules search only around
# runs (_regions).
_NUMBER_RUN_RE = re.compile(r"[0-9](?:[^0-9A-Za-z\u3400-\u9fff]{0,3}[0-9Xx]){6,}")
_NOT_DIGIT_RE = re.compile("[^0-9]")
_NOT_ID_CHAR_RE = re.compile("[^0-9Xx]")
_ID_CHARS = "0123456789Xx"
_NOT_ID_UPPER_RE = re.compile("[^0-9X]")

# Hints: cheap necessary conditions of the rules above, each checked before its rule runs, so
# that a text holding none of what a rule needs costs one scan, not the rule's. Each hint is the
# literal part every match of its rule holds, with the rule's own flags.
_DIGITS = "0123456789"
_DIGIT_RE = re.compile("[0-9]")
# Latin words of the rules (at, wx, qq, tel…, a plate's letter) need an ASCII letter: under
# IGNORECASE only İ and ı (for i) match a Latin letter too, and every such word holds another.
_LATIN_RE = re.compile("[A-Za-z]")
_AT_HINT_RE = re.compile(r"@|at|艾特|圈a", re.IGNORECASE)
_DOMAIN_END_RE = re.compile(r"\.[A-Za-z]{2}")  # an e-mail's last dot and the first letters after it
# the top-level domains of _SPELLED_EMAIL_RE in a lowered view (o for com, org, gov, top, io and
# info, which under IGNORECASE may also be written with ı)
_TOP_LEVEL_HINT_RE = re.compile(r"o|cn|net|edu|cc|me|hk|tw")
_WECHAT_HINT_RE = re.compile(r"微信|威信|薇信|vx|wx|weixin|wechat|v信", re.IGNORECASE)
_QQ_HINT_RE = re.compile(r"qq|扣扣|企鹅", re.IGNORECASE)
_PLATE_HINT_RE = re.compile(_PROVINCES + "[A-HJ-NP-Z]", re.IGNORECASE)
_PROVINCE_RE = re.compile(_PROVINCES)
_CONTACT_WORDS = ("电话", "電話", "手机", "手機", "座机", "固话", "联系方式")
_CONTACT_LATIN_HINT_RE = re.compile(r"tel|phone|mobile", re.IGNORECASE)
# an introduction (_NAME_INTRO), found from its first character on
_NAME_INTRO_HINT_RE = re.compile(r"[我本姓联聯举舉投来來](?:(?<=我)(?:叫|的名字是|姓)|(?<=本)人叫|(?<=姓)名|(?<=[联聯])[系繫]人"
                                 r"|(?<=[举舉])[报報]人[:：]|(?<=投)[诉訴]人[:：]|(?<=[来來])[电電]人[:：])")
_CALLER_HINT_RE = re.compile(r"[来來][电電](?:称|稱|反映|说|說|投诉|投訴|举报|舉報|表示)")
# What every home phrase (_HOME_RE) holds (plain strings: the search skips to their first characters).
_HOME_HINT_RE = re.compile("我家|我们家|家住|我住|本人住|住址|地址")


_FOLDED_CACHE_SIZE = 65536


class _Folded(dict):
    """Code point → its NFKC form, as a translation table filled as characters are met (at most
    :data:`_FOLDED_CACHE_SIZE` entries are kept: hostile texts may use any character)."""

    def __missing__(self, code: int) -> str:
        form = unicodedata.normalize("NFKC", chr(code))
        if len(self) < _FOLDED_CACHE_SIZE:
            self[code] = form
        return form


_FOLDED = _Folded()
# up to this many different characters to fold (or longer forms), one str.replace (str.find) each
_FEW_OTHERS = 16


def _digits_of_numerals(match: "re.Match[str]") -> str:
    return match.group(0).translate(_NUMERAL_DIGITS)


# Characters that NFKC keeps as they are (ASCII, CJK ideographs and punctuation, dashes, quotes; all
# of them assigned since Unicode 13 at the latest, and the normalization of an assigned character
# never changes): only the others are looked up.
_NOT_STABLE_RE = re.compile("[^\x00-\x7f\u00b7\u2010\u2012-\u2016\u2018-\u2023\u2027\u3001-\u3035\u3037"
                            "\u303b-\u303f\u3400-\u4dbf\u4e00-\u9fff]")


def _view(text: str) -> Tuple[str, Sequence[int]]:
    """The text as matching sees it, and ``origin``: ``origin[i]`` is the original index of view
    character ``i``. NFKC character by character (＠ to @, full-width digits to digits), Chinese
    numerals in runs of phone length as digits."""
    if text.isascii():  # NFKC keeps ASCII, which holds no Chinese numerals
        return text, range(len(text))
    others = set(_NOT_STABLE_RE.findall(text))
    if len(others) > _FEW_OTHERS:  # one pass, not one per character
        view = text.translate(_FOLDED)
    else:
        view = text
        for char in others:
            form = _FOLDED[ord(char)]
            if len(form) != 1:
                view = text.translate(_FOLDED)
                break
            if form != char:  # the usual case (，：（）): one for one, and a form is its own form
                view = view.replace(char, form)
    # no character's form is empty: a longer one moves the positions after it; numerals become
    # digits one for one
    origin = range(len(text)) if len(view) == len(text) else _origin(text)
    return _NUMERAL_RUN_RE.sub(_digits_of_numerals, view), origin


def _origin(text: str) -> List[int]:
    """The original index of every view character, when some characters' forms are longer (㎡,
    ½): the characters in between keep their place."""
    longer = {char: len(_FOLDED[ord(char)]) for char in set(text) if len(_FOLDED[ord(char)]) != 1}
    if len(longer) > _FEW_OTHERS:  # one pass, not one per character
        origin_of: List[int] = []
        for index, char in enumerate(text):
            origin_of.extend([index] * longer.get(char, 1))
        return origin_of
    places = []
    for char in longer:
        index = text.find(char)
        while index >= 0:
            places.append(index)
            index = text.find(char, index + 1)
    origin: List[int] = []
    position = 0
    for index in sorted(places):
        origin.extend(range(position, index))
        origin.extend([index] * longer[text[index]])
        position = index + 1
    origin.extend(range(position, len(text)))
    return origin


Span = Tuple[int, int, str]  # start, end, mask


def _grouped_like_a_number(number: str, min_group: int) -> bool:
    """Separators only between groups of ``min_group`` digits or more (139 1234 5678, not the
    decimals 13.9 12.3 45.6 78), or one and the same separator between every digit (1 3 9 …)."""
    if number.isalnum():  # digits (and X) only: no separator
        return True
    parts = _SEP_SPLIT_RE.split(number)  # group, separator, group, …
    if len(parts) == 1:
        return True
    groups, separators = parts[0::2], set(parts[1::2])
    shortest, longest = min(map(len, groups)), max(map(len, groups))
    if shortest == longest == 1 and len(separators) == 1:
        return True
    if len(groups) == 2 and separators == {"."}:  # 135.12345678: a decimal, not a phone
        return False
    return shortest >= min_group


def _inside_a_code(view: str, start: int, end: int) -> bool:
    """Digits that are part of a longer code (91320100MA1X…139…, AB139…CD), or that an order,
    permit or register number introduces. Letters alone before them (tel139…, wx139…) are not."""
    letters = start
    while letters > 0 and view[letters - 1].isascii() and view[letters - 1].isalpha():
        letters -= 1
    if letters < start and (start - letters > 8 or (letters > 0 and view[letters - 1].isascii()
                                                     and view[letters - 1].isalnum())
                            or (end < len(view) and view[end].isascii() and view[end].isalpha())):
        return True
    before = max(0, letters - 12)
    # every code word ends in 号 or 码
    return (view.find("号", before, letters) >= 0 or view.find("码", before, letters) >= 0) \
        and _CODE_BEFORE_RE.search(view, before, letters) is not None


def _plausible_id(number: str) -> bool:
    """A province code and a birth date where an ID number has them (``number``: a match of
    _ID18_RE or _ID15_RE, digits and separators)."""
    digits = number.translate(_SEPARATORS_DROPPED)
    if digits[:2] not in _PROVINCE_CODES:
        return False
    birth = digits[6:14] if len(digits) == 18 else "19" + digits[6:12]
    year, month, day = int(birth[:4]), int(birth[4:6]), int(birth[6:8])
    return 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def _regions(runs: Sequence["re.Match[str]"], size: int, shortest: int, before: int) -> List[Tuple[int, int]]:
    """Where the matches of a number rule can be: around every run of _NUMBER_RUN_RE of
    ``shortest`` characters or more, from ``before`` characters before it (a prefix such as
    (+86) or (010) that the run does not hold) to 3 after it (what an attempt at a match may read
    after its last digit: a separator and the character after it), overlapping ones joined."""
    regions: List[Tuple[int, int]] = []
    for run in runs:
        start, end = run.span()
        if end - start >= shortest:
            start, end = max(0, start - before), min(size, end + 4)
            if regions and start <= regions[-1][1]:
                regions[-1] = (regions[-1][0], end)
            else:
                regions.append((start, end))
    return regions


def _number_spans(view: str, digits: int, runs: Sequence["re.Match[str]"], latin: bool) -> Iterator[Span]:
    """ID numbers first (they contain phone-like runs), then mobiles, landlines and numbers a
    contact word introduces; each rule only where the view has as many digits as it needs
    (``digits``) and its contact word (``latin``: whether the view has a Latin letter).

    The digits of an ID number, a mobile or a landline (but for an area code in brackets) are in
    one run of _NUMBER_RUN_RE (``runs``), so these rules search only around the runs long enough
    (:func:`_regions`): a search from before a region finds nothing up to it, and lookbehinds see
    the text before it, so each region yields what a search of the whole view yields there."""
    # the checks of a number met again in this text (a hostile text repeats one) are not redone;
    # nothing is kept after the call (the numbers may be someone's)
    checked: Dict[Tuple[str, int], bool] = {}
    for pattern in (_ID18_RE, _ID15_RE) if digits >= 15 else ():
        for start, end in _regions(runs, len(view), 15, 0):
            for match in pattern.finditer(view, start, end):
                number = match.group()
                plausible = checked.get((number, 0))
                if plausible is None:
                    plausible = checked[number, 0] = _plausible_id(number) and _grouped_like_a_number(number, 2)
                if plausible and not _inside_a_code(view, match.start(), match.end()):
                    yield match.start(), match.end(), ID_MASK
    for pattern in (_MOBILE_RE, _LANDLINE_RE) if digits >= 11 else (_LANDLINE_RE,) if digits >= 10 else ():
        # a mobile's prefix (+86)--- or a landline's area code (0371)--- is up to 9 characters before its run
        for start, end in _regions(runs, len(view), 11 if pattern is _MOBILE_RE else 7, 9):
            for match in pattern.finditer(view, start, end):
                number = match.group(1)
                grouped = checked.get((number, 3))
                if grouped is None:
                    grouped = checked[number, 3] = _grouped_like_a_number(number, 3)
                if grouped and not _inside_a_code(view, match.start(), match.end()):
                    yield match.start(), match.end(), PHONE_MASK
    if any(word in view for word in _CONTACT_WORDS) or latin and _CONTACT_LATIN_HINT_RE.search(view):
        for match in _CONTACT_NUMBER_RE.finditer(view):
            yield match.start(1), match.end(1), PHONE_MASK


def _contact_spans(view: str, latin: bool) -> Iterator[Span]:
    """E-mails (also spelled out), WeChat and QQ ids, plates; each rule only where its hint is
    (``latin``: whether the view has a Latin letter)."""
    at = "@" in view
    if at and _DOMAIN_END_RE.search(view):
        for match in _EMAIL_RE.finditer(view):
            yield match.start(), match.end(), EMAIL_MASK
    # at, 圈a; wx, vx, weixin, wechat; qq (a letter stands for itself here: see _LATIN_RE)
    a = latin and ("a" in view or "A" in view)
    if (at or "艾特" in view or a and ("t" in view or "T" in view or "圈" in view)) and _AT_HINT_RE.search(view) \
            and _TOP_LEVEL_HINT_RE.search(view.lower()):
        for match in _SPELLED_EMAIL_RE.finditer(view):
            yield match.start(), match.end(), EMAIL_MASK
    w = latin and ("w" in view or "W" in view)
    if ("信" in view or w and ("e" in view or "E" in view)
            or ("x" in view or "X" in view) and (w or "v" in view or "V" in view)) and _WECHAT_HINT_RE.search(view):
        for match in _WECHAT_RE.finditer(view):
            yield match.start(1), match.end(1), WECHAT_MASK
    if ("扣扣" in view or "企鹅" in view or latin and ("q" in view or "Q" in view)) and _QQ_HINT_RE.search(view):
        for match in _QQ_RE.finditer(view):
            yield match.start(1), match.end(1), QQ_MASK
    if latin and _PROVINCE_RE.search(view) and _PLATE_HINT_RE.search(view):
        for match in _PLATE_RE.finditer(view):
            if sum(char.isdigit() for char in match.group(1)) >= 2:
                yield match.start(), match.end(), PLATE_MASK


def _may_hold_a_contact(view: str, latin: bool) -> bool:
    return latin or "@" in view or "信" in view or "艾特" in view or "扣扣" in view or "企鹅" in view


def _home_spans(view: str) -> List[Span]:
    """Building, unit and room numbers in the clause a first-person home phrase starts (and in
    the clause after a comma when it begins with them: 我家住在翠湖花园，3栋2单元501)."""
    if not _HOME_HINT_RE.search(view):
        return []
    clauses: List[Tuple[int, int]] = []  # those that hold a unit word or a dashed number
    size, clause_end, unit_word, dashed = len(view), _HOME_CLAUSE_END_RE.search, _UNIT_WORD_START_RE.search, \
        _DASHED_START_RE.search
    for home in _HOME_RE.finditer(view):
        start = home.end()
        while start < size:
            limit = min(size, start + _HOME_CLAUSE_CHARS)
            end_match = clause_end(view, start, limit)
            end = end_match.start() if end_match else limit
            if unit_word(view, start, end) or dashed(view, start, end):
                clauses.append((start, end))
            if not (end_match and end_match.group() in ",，"):
                break
            following = end + 1
            while following < size and view[following] in " \t":
                following += 1
            if not _UNITS_RE.match(view, following):
                break
            start = following
    if len(clauses) <= _FEW_CLAUSES:
        return [(*units.span(), ADDRESS_MASK)
                for start, end in clauses for units in _UNITS_RE.finditer(view, start, end)]
    return [(*span, ADDRESS_MASK) for span in _units_in_clauses(view, clauses)]


def _units_in_clauses(view: str, clauses: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """The spans of ``_UNITS_RE.finditer(view, start, end)`` for every clause, once each, without
    searching again where clauses overlap (many home phrases close together).

    Every attempt at a match takes only characters of _UNIT_CHAR and reads at most the character
    after them, so it stays in one run of them, and a search enters each run at its first
    character. A search of a clause therefore finds, in every run that lies in the clause and ends
    before the clause's end, what one search of all clauses at once finds there. Only a run the
    clause starts inside (its search enters it later) and a run the clause's end cuts (the end may
    cut a match short) or touches where the next character could matter (号 before 线) are
    searched with the clause's own bounds."""
    low, high = min(start for start, _ in clauses), max(end for _, end in clauses)
    whole = [units.span() for units in _UNITS_RE.finditer(view, low, high)]
    starts = [start for start, _ in whole]
    run_starts = [run.start() for run in _UNIT_CHARS_RE.finditer(view, low, high)]  # the first from low
    found: Set[Tuple[int, int]] = set()
    ranges: List[Tuple[int, int]] = []  # of indexes into whole
    unit_chars, finditer, search = _UNIT_NOT_SPACE, _UNITS_RE.finditer, _UNITS_RE.search
    for start, end in clauses:
        inner = start
        if start:
            char = view[start - 1]
            if char in unit_chars or char.isspace():
                char = view[start]
                if char in unit_chars or char.isspace():  # the clause starts inside a run
                    run_end = _UNIT_CHARS_RE.match(view, start).end()
                    found.update(units.span() for units in finditer(view, start, min(end, run_end + 1)))
                    if run_end >= end:
                        continue
                    inner = run_end
        outer = end
        char = view[end - 1]
        if end < high and (char in unit_chars or char.isspace()):
            char = view[end]
            if char in unit_chars or char.isspace() or char in _NOT_AFTER_HAO:  # the run holding the last character
                outer = max(inner, run_starts[bisect_right(run_starts, end - 1) - 1])
                units = search(view, outer, end)
                while units is not None:
                    found.add(units.span())
                    units = search(view, units.end(), end)
        first, last = bisect_left(starts, inner), bisect_left(starts, outer)
        if first < last:
            ranges.append((first, last))
    covered = 0
    for first, last in sorted(ranges):
        if last > covered:
            found.update(whole[max(first, covered):last])
            covered = last
    return sorted(found)


def _not_a_role(name: str) -> bool:
    return name not in ROLE_WORDS and not name.endswith(("居民", "市民", "村民", "业主"))


def _name_spans(view: str) -> List[Span]:
    """Introduced names, names before a contact, callers' names, names written with spaces; each
    rule only where its hint is (an introduction, 本人/我是, 来电称…)."""
    spans: List[Span] = []
    introduced = _NAME_INTRO_HINT_RE.search(view) is not None
    if introduced:
        spans += _names_of(_INTRODUCED_NAME_RE, view)
    if "本人" in view or "我是" in view:
        spans += _names_of(_SELF_NAME_BEFORE_CONTACT_RE, view)
    if _CALLER_HINT_RE.search(view):
        spans += _names_of(_CALLER_NAME_RE, view)
    if introduced:
        spans += _spaced_name_spans(view)
    return spans


def _names_of(pattern: "re.Pattern[str]", view: str) -> List[Span]:
    return [(match.start(2), match.end(2), NAME_MASK)
            for match in pattern.finditer(view) if _not_a_role(match.group(2))]


def _spaced_name_spans(view: str) -> Iterator[Span]:
    """Names written with spaces after an introduction (我叫张 三, 我叫 欧阳 娜娜): up to four
    ideographs, spaces between them skipped, until anything else or a word that ends a name."""
    if " " not in view and "\t" not in view:
        return
    for intro in _NAME_INTRO_RE.finditer(view):
        name = _SPACED_NAME_RE.match(view, intro.end())
        if name is None:
            continue
        chars = name.group().lstrip(" \t")
        if (" " in chars or "\t" in chars) and _not_a_role(chars.replace(" ", "").replace("\t", "")):
            yield intro.end(), name.end(), NAME_MASK


@lru_cache(maxsize=1)
def _one_script() -> Mapping[int, str]:
    """A translation table taking every character with simplified and traditional forms
    (OpenCC's character tables) to one of them, so that a name given in one script is found in
    the other (刘/劉): a lookup, not a conversion per event."""
    from envleads.text import _opencc_dictionary

    variants: Dict[str, Set[str]] = {}
    for table in ("STCharacters.txt", "TSCharacters.txt"):
        for char, candidates in _opencc_dictionary(table):
            forms = {char, *candidates}
            for form in list(forms):
                forms |= variants.get(form, set())
            for form in forms:
                variants[form] = forms
    return {ord(char): min(forms) for char, forms in variants.items() if min(forms) != char}


@lru_cache(maxsize=1)
def _script_sources() -> Mapping[str, str]:
    """For each character, the characters that :func:`_one_script` turns into a form holding it."""
    sources: Dict[str, List[str]] = {}
    for code, form in _one_script().items():
        for char in set(form):
            sources.setdefault(char, []).append(chr(code))
    return {char: "".join(codes) for char, codes in sources.items()}


def _name_hint(name: str) -> Tuple[str, ...]:
    """For each character of ``name`` in one script, the characters of a text that would give it:
    a text holding the name holds one of each."""
    table, sources = _one_script(), _script_sources()
    return tuple(sources.get(char, "") + ("" if ord(char) in table else char)
                 for char in set(name.translate(table)))


def _may_hold_the_name(view: str, hint: Tuple[str, ...]) -> bool:
    """Whether ``view`` holds one of each string of characters in ``hint`` (see :func:`_name_hint`)."""
    for givers in hint:
        for char in givers:
            if char in view:
                break
        else:  # a character of the name is in no form in the text
            return False
    return True


def _name_spans_of(view: str, name: str) -> Iterator[Span]:
    """Where ``name`` reappears in either script, spaces or tabs allowed between its characters;
    a Latin name only as a whole word."""
    table = _one_script()
    spaced = " " in view or "\t" in view
    compact = (view.replace(" ", "").replace("\t", "") if spaced else view).translate(table)
    name = name.translate(table)
    found = compact.find(name)
    if found < 0:
        return
    positions: Sequence[int] = [index for index, char in enumerate(view) if char not in " \t"] if spaced \
        else range(len(view))
    while found >= 0:
        first, last = positions[found], positions[found + len(name) - 1]
        if not (name[0].isascii() and view[first - 1:first].isalpha()
                or name[-1].isascii() and view[last + 1:last + 2].isalpha()):
            yield first, last + 1, NAME_MASK
        found = compact.find(name, found + 1)


def _own_numbers(phone_value: object, id_value: object) -> Tuple[Tuple[str, str], ...]:
    """The reporter's phone (without country code; a landline also without its area code) and ID
    number as bare digits, each with its mask; numbers under 7 digits identify no one."""
    phone = str(phone_value or "")
    if not (phone.isascii() and phone.isdigit()):  # NFKC keeps ASCII
        phone = _NOT_DIGIT_RE.sub("", unicodedata.normalize("NFKC", phone).translate(_NUMERAL_DIGITS))
    digits = phone
    digits = digits[4:] if digits.startswith("0086") else digits[2:] if len(digits) == 13 and digits.startswith("86") \
        else digits
    numbers = [(digits, PHONE_MASK)]
    if digits.startswith("0") and len(digits) >= 10:
        numbers.append((digits[3:] if digits[1] in "12" else digits[4:], PHONE_MASK))
    id_number = str(id_value or "")
    numbers.append((_NOT_ID_UPPER_RE.sub("", (id_number if id_number.isascii() else
                                              unicodedata.normalize("NFKC", id_number)).upper()), ID_MASK))
    return tuple((number, mask) for number, mask in numbers if len(number) >= 7)


# A complaint's title, text and address are masked one after the other with one reporter block:
# what is drawn from it is kept for a few reporters, not more (they are someone's).
@lru_cache(maxsize=8)
def _reporter_values(name_value: object, phone_value: object, id_value: object) \
        -> Tuple[Tuple[Tuple[str, str], ...], str, Tuple[str, ...]]:
    """The reporter's own numbers (:func:`_own_numbers`), name (NFKC, no whitespace) and the
    name's hint (:func:`_name_hint`, for names of two characters or more)."""
    name = "".join(unicodedata.normalize("NFKC", str(name_value or "")).split())  # str.split: what \s is
    return _own_numbers(phone_value, id_value), name, _name_hint(name) if len(name) >= 2 else ()


def _is_plain(value: object) -> bool:
    return value is None or type(value) is str


def _own_number_spans(view: str, numbers: Sequence[Tuple[str, str]], runs: Sequence["re.Match[str]"]) -> Iterator[Span]:
    """Where the reporter's own numbers reappear, compared digit by digit whatever separates the
    digits (a plain search on each run's digits, ``runs`` of _NUMBER_RUN_RE: no regex compiled
    per event)."""
    for run in runs:
        text = run.group()
        digits = _NOT_ID_CHAR_RE.sub("", text).upper()
        positions: Optional[Sequence[int]] = None  # of the digits in the view, once one number is found
        for number, mask in numbers:
            found = digits.find(number)
            if found >= 0 and positions is None:
                positions = range(run.start(), run.end()) if len(digits) == len(text) \
                    else list(compress(range(run.start(), run.end()), map(_ID_CHARS.__contains__, text)))
            while found >= 0:
                first, last = positions[found], positions[found + len(number) - 1]
                if not view[first - 1:first].isdigit() and not view[last + 1:last + 2].isdigit():
                    yield first, last + 1, mask
                found = digits.find(number, found + 1)


def _reporter_spans(view: str, reporter: Optional[Mapping[str, Optional[str]]],
                    runs: Sequence["re.Match[str]"]) -> List[Span]:
    """The reporter's own phone, ID number and name (as given in the reporter block) wherever
    they reappear (``runs``: the view's runs of _NUMBER_RUN_RE)."""
    spans: List[Span] = []
    if not reporter:
        return spans
    values = reporter.get("name"), reporter.get("phone"), reporter.get("id_number")
    numbers, name, hint = _reporter_values(*values) if all(map(_is_plain, values)) \
        else _reporter_values.__wrapped__(*values)  # values that are not strings: not kept
    if numbers and runs:
        spans += _own_number_spans(view, numbers, runs)
    if len(name) >= 2 and _may_hold_the_name(view, hint):
        spans += _name_spans_of(view, name)
    return spans


def _merged(spans: Iterable[Span]) -> List[Span]:
    """Overlapping spans as one, masked as the first of them in order of precedence (so that a
    number half found by two rules is masked whole)."""
    merged: List[list] = []
    for start, end, precedence, mask in sorted((start, end, precedence, mask)
                                               for precedence, (start, end, mask) in enumerate(spans)):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            if precedence < last[2]:
                last[2:] = [precedence, mask]
        else:
            merged.append([start, end, precedence, mask])
    return [(start, end, mask) for start, end, _, mask in merged]


def mask_identity(text: str, reporter: Optional[Mapping[str, Optional[str]]] = None) -> str:
    """Masks identity in ``text`` (see the module docstring): matched on the normalised view,
    replaced in the original, so that places, dates, permits and amounts stay as written.

    Each rule runs only where a cheap hint says it may match (digits for numbers, @ or a contact
    word for contacts, a home phrase's characters, an introduction, the reporter's name's
    characters), so that an ordinary text costs a few scans.

    Args:
        text: a complaint's text, title or address.
        reporter: the event's reporter block (name, phone, id_number); its values are masked
            wherever they reappear, whatever their spelling.
    """
    if not text:
        return text
    view, origin = _view(text)
    digits = sum(map(view.count, _DIGITS)) if _DIGIT_RE.search(view) else 0
    runs = list(_NUMBER_RUN_RE.finditer(view)) if digits else []
    latin = _LATIN_RE.search(view) is not None
    found = _reporter_spans(view, reporter, runs) if reporter else []
    # ID numbers, mobiles, landlines and contact numbers all have 7 digits or more, in one run
    if digits >= 7 and runs:
        found.extend(_number_spans(view, digits, runs, latin))
    if _may_hold_a_contact(view, latin):
        found.extend(_contact_spans(view, latin))
    found.extend(_home_spans(view))
    found.extend(_name_spans(view))
    if not found:
        return text
    # the same span found twice (overlapping home clauses, a number found by two rules) once
    in_text = dict.fromkeys(found if type(origin) is range else  # noqa: E721 (a view as long as the text)
                            ((origin[start], origin[end - 1] + 1, mask) for start, end, mask in found))
    pieces, position = [], 0
    for start, end, mask in _merged(in_text):
        pieces += [text[position:start], mask]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
