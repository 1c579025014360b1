"""Complainant identity: keyed pseudonyms and masking of identity inside texts.

The environmental protection law obliges authorities to keep a reporter's identity confidential.
envleads therefore replaces the reporter block with a keyed HMAC pseudonym at its first stage and
masks phone numbers, ID numbers, e-mail addresses and self-introduced names in the text before
anything is written or logged. The key comes from the environment or a file; rotating it changes
every reporter key (old and new keys are not linkable), which is the point of rotating.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from typing import Mapping, Optional

from envleads.config import OperatorError

KEY_ENV = "ENVLEADS_PSEUDONYM_KEY"
KEY_FILE_ENV = "ENVLEADS_PSEUDONYM_KEY_FILE"

PHONE_MASK = "[电话]"
ID_MASK = "[身份证号]"
NAME_MASK = "[姓名]"
EMAIL_MASK = "[邮箱]"

# Mobile numbers with optional +86 and separators, landlines with area code; ID numbers are
# 17 digits plus a digit or X. Digits next to other digits or latin letters are left alone so that
# permit numbers and order codes are not eaten.
_ID_RE = re.compile(r"(?<![0-9A-Za-z])\d{6}(?:[\s-]?\d){11}[\s-]?[\dXx](?![0-9A-Za-z])")
_MOBILE_RE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d){8}(?![0-9A-Za-z])")
_LANDLINE_RE = re.compile(r"(?<![0-9A-Za-z])0\d{2,3}[\s-]?\d{7,8}(?![0-9A-Za-z])")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Names the reporter gives in the text: 我叫张三 / 姓名：李四 / 本人王小明，电话… / 我是赵六，联系电话…
# / 钱七来电称…. Words for roles (市民, 业主 …) in the name slot are not names.
_CJK = "[\u4e00-\u9fff]"
_CONTACT = "(?:联[系繫]|聯[系繫])?(?:电话|電話|手机|手機|身份证|身份證|联系方式|聯繫方式|联系|聯繫)"
_INTRODUCED_NAME_RE = re.compile(
    rf"(我叫|本人叫|我的名字是|我姓|姓名[:：]?\s*|联[系繫]人[:：]?\s*|[举舉][报報]人[:：]\s*|投[诉訴]人[:：]\s*|[来來][电電]人[:：]\s*)"
    rf"({_CJK}{{1,4}}?)(?=[，,。.；;、（(\s]|{_CONTACT}|$)")
_SELF_NAME_BEFORE_CONTACT_RE = re.compile(
    rf"(本人|我是)({_CJK}{{2,4}})(?=\s*[，,（(]\s*(?:我的)?{_CONTACT})")
_CALLER_NAME_RE = re.compile(
    rf"(^|[。！？!?\n，,：:；;]\s*)({_CJK}{{2,4}}?)(?=[来來][电電](?:称|稱|反映|说|說|投诉|投訴|举报|舉報|表示))")
ROLE_WORDS = frozenset({"市民", "居民", "村民", "群众", "业主", "网友", "来电人", "投诉人", "举报人", "用户", "师傅",
                        "先生", "女士", "老人", "学生", "家长", "商户", "住户", "租户", "职工", "员工", "有人",
                        "多名市民", "多位居民", "该市民", "该居民", "附近居民", "周边居民", "小区业主"})


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


def _masked_name(match: "re.Match[str]") -> str:
    name = match.group(2)
    return match.group(0) if name in ROLE_WORDS or name.endswith(("居民", "市民", "村民", "业主")) \
        else match.group(1) + NAME_MASK


def mask_identity(text: str, reporter: Optional[Mapping[str, Optional[str]]] = None) -> str:
    """Masks phone and ID numbers, e-mail addresses, self-introduced names and the reporter's own name."""
    if not text:
        return text
    text = _ID_RE.sub(ID_MASK, text)
    text = _MOBILE_RE.sub(PHONE_MASK, text)
    text = _LANDLINE_RE.sub(PHONE_MASK, text)
    text = _EMAIL_RE.sub(EMAIL_MASK, text)
    text = _INTRODUCED_NAME_RE.sub(_masked_name, text)
    text = _SELF_NAME_BEFORE_CONTACT_RE.sub(_masked_name, text)
    text = _CALLER_NAME_RE.sub(_masked_name, text)
    name = (reporter or {}).get("name")
    if name:
        name = unicodedata.normalize("NFKC", name).strip()
        if len(name) >= 2:
            text = text.replace(name, NAME_MASK)
    return text
