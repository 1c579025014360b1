"""Text normalisation and word segmentation for complaint texts.

Complaints arrive in full-width forms, traditional characters and, from copy-pasted or OCR'd
documents, CJK radical look-alikes (``⻋`` for ``车``). Everything downstream (the classifier, the
region resolver, repeat detection) sees text only after :func:`normalise`, so one spelling of a
word reaches one token.

Segmentation uses a *private* segmenter with the domain dictionary loaded: the global ``jieba.cut``
shares one lazily built dictionary and a lock across the process, and ``jieba.add_word`` would leak
our words into every other user of jieba in the same worker. The engine is jieba-rs (the
``rjieba`` binding: the same dictionary, DAG and HMM as jieba, about 6 times faster here) when
installed, else jieba itself; :func:`build_tokenizer` hides the difference and :func:`segment`
gives the same tokens with either (see :class:`Segmenter`).
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import unicodedata
from functools import lru_cache
from typing import Callable, FrozenSet, List, NamedTuple, Optional, Tuple

import jieba
import numpy as np
from pypinyin import Style, pinyin

from envleads.config import ConfigError, data_path

DOMAIN_DICT_FILE = "domain_dict.txt"
STOPWORDS_FILE = "stopwords.txt"
LOOKALIKES_FILE = "lookalikes.json"
ENGINES = ("auto", "rjieba", "jieba")

_VERSION_RE = re.compile(r"^#\s*version\s*:\s*(\S+)\s*$")
_WHITESPACE_RE = re.compile(r"\s+")
# A token worth keeping has at least one letter, digit or ideograph; the rest is punctuation,
# symbols or masking (``*****`` for a redacted phone number).
_CONTENT_RE = re.compile(r"[0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# jieba's own HMM fallback (jieba/finalseg): runs of ideographs are one class, and the rest is
# split into letter/digit words such as "PM2.5" or "30%"; jieba-rs keeps "0000-0000" or
# "baidu.com" whole, so tokens it returns outside the dictionary are re-split the jieba way.
_IDEOGRAPHS_ONLY_RE = re.compile(r"[\u4e00-\u9fd5]+")
_FINALSEG_HAN_RE = re.compile(r"([\u4e00-\u9fd5]+)")
_FINALSEG_SKIP_RE = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")


def _read_header_version(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            match = _VERSION_RE.match(line.strip())
            if match:
                return match.group(1)
    raise ConfigError(f"{path}: missing '# version: ...' header line")


DICTIONARY_VERSION: str = _read_header_version(data_path(DOMAIN_DICT_FILE))


# --------------------------------------------------------------------------- normalisation
def _opencc_dictionary(name: str) -> List[Tuple[str, List[str]]]:
    """Entries of one of opencc-python-reimplemented's dictionaries: (key, candidates)."""
    import os

    import opencc

    entries = []
    path = os.path.join(os.path.dirname(opencc.__file__), "dictionary", name)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                entries.append((parts[0], parts[1].split(" ")))
    return entries


@lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str]:
    """The traditional-to-simplified converter, built once per process.

    opencc-python-reimplemented is pure Python (about 2 ms per complaint), so it runs only on
    texts holding a character that exists only in traditional script (:func:`_traditional_only`),
    a few percent of complaints. (opencc-pyo3 is 30 times faster but its lexicon turns 著 into 着
    even in simplified words such as 显著 and 论著.)
    """
    from opencc import OpenCC

    return OpenCC("t2s").convert


@lru_cache(maxsize=1)
def _traditional_only() -> FrozenSet[str]:
    """Characters that t2s always changes and that simplified Chinese does not use (廠, 廢, 聲).

    Left out: characters whose conversion depends on the word (乾 in 乾隆, 瞭 in 瞭望, 著), and
    simplified characters. A text holding none of these is left as it is, which also keeps
    OpenCC from touching simplified words; a traditional text practically always holds one.
    """
    simplified = {key for key, _ in _opencc_dictionary("STCharacters.txt")}
    return frozenset(key for key, candidates in _opencc_dictionary("TSCharacters.txt")
                     if len(key) == 1 and key not in candidates and key not in simplified)


@lru_cache(maxsize=1)
def _lookalike_table() -> dict:
    path = data_path(LOOKALIKES_FILE)
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if "version" not in document or not isinstance(document.get("map"), dict):
        raise ConfigError(f"{path}: expected keys 'version' and 'map'")
    return str.maketrans({k: v for k, v in document["map"].items() if k != v})


# Full-width punctuation of everyday Chinese text: NFKC folds it to ASCII (，to ,), and because
# each folds to its own full compatibility decomposition, replacing it first leaves NFKC's result
# unchanged; most texts are then already in NFKC, which a quick check confirms.
_COMMON_FULL_WIDTH = tuple((char, unicodedata.normalize("NFKD", char)) for char in "，：；！？（）　")
_NEEDS_LOOKALIKES, _NEEDS_T2S = 1, 2


@lru_cache(maxsize=256)
def normalise(text: str) -> str:
    """Returns ``text`` in one canonical spelling: half-width, simplified, standard ideographs.

    NFKC folds full-width letters/digits and Kangxi radicals; radical-supplement look-alikes that
    NFKC leaves alone come from ``lookalikes.json``; OpenCC ``t2s`` converts traditional to
    simplified; runs of whitespace become one space.

    Each step runs only when the text needs it (a look-up of its code points in one table, and
    NFKC's quick check), as doing all three was a sixth of the enrichment stage's CPU; the result
    is the same (``tests/test_text.py`` holds the plain composition as the reference).

    Cached: segmentation, region resolution and repeat features each normalise parts of the same
    complaint, and about a quarter of the calls repeat a recent string; a string keeps its hash,
    so a hit costs little.
    """
    if not text:
        return ""
    if text.isascii():
        # Nothing to fold or convert: only whitespace can change.
        return _WHITESPACE_RE.sub(" ", text).strip()
    for full_width, folded in _COMMON_FULL_WIDTH:
        if full_width in text:
            text = text.replace(full_width, folded)
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    needs = _needs(text)
    if needs & _NEEDS_LOOKALIKES:
        text = text.translate(_lookalike_table())
        needs = _needs(text)  # a look-alike may stand for a traditional character
    if needs & _NEEDS_T2S:
        text = _t2s()(text)
    return _WHITESPACE_RE.sub(" ", text).strip()


def _needs(text: str) -> int:
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return int(np.bitwise_or.reduce(_character_flags()[codes]))


@lru_cache(maxsize=1)
def _character_flags() -> np.ndarray:
    """Per code point: whether a text holding it needs the look-alike table or t2s."""
    flags = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
    flags[list(_lookalike_table())] |= _NEEDS_LOOKALIKES
    flags[[ord(char) for char in _traditional_only()]] |= _NEEDS_T2S
    return flags


# --------------------------------------------------------------------------- segmentation
def _dictionary_lines(path: str) -> bytes:
    """The dictionary without comment lines: jieba would otherwise add ``#`` as a word."""
    kept = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                kept.append(stripped)
    return ("\n".join(kept) + "\n").encode("utf-8")


def _resplit_like_jieba(token: str) -> List[str]:
    parts = []
    for block in _FINALSEG_HAN_RE.split(token):
        if not block:
            continue
        if _IDEOGRAPHS_ONLY_RE.fullmatch(block):
            parts.append(block)
        else:
            parts.extend(x for x in _FINALSEG_SKIP_RE.split(block) if x)
    return parts


class Segmenter:
    """A private word segmenter with the domain dictionary loaded; build it with
    :func:`build_tokenizer`.

    Args:
        engine: ``"rjieba"`` or ``"jieba"``: which library ``backend`` comes from.
        backend: an ``rjieba.Jieba`` or a ``jieba.Tokenizer`` with the user dictionary loaded.
    """

    def __init__(self, engine: str, backend):
        if engine not in ("rjieba", "jieba"):
            raise ValueError(f"unknown segmentation engine {engine!r}")
        self.engine = engine
        self.backend = backend
        self._words_of: dict = {}  # engine token -> the words :meth:`words` keeps of it

    def lcut(self, text: str, HMM: bool = True) -> List[str]:  # noqa: N803 (jieba's spelling)
        """Cuts ``text`` into words, whitespace and punctuation included, as ``jieba.lcut``."""
        if self.engine == "jieba":
            return self.backend.lcut(text, HMM=HMM)
        return self._resplit(self.backend.cut(text, HMM))

    def words(self, text: str) -> List[str]:
        """:meth:`lcut` (with HMM) without whitespace, punctuation and stop words.

        What the re-split and the keep test make of an engine token depends on the token alone,
        so it is worked out once per distinct token and cached: one dict look-up per token
        instead of a regex match and a look-up (the two were half of segmentation's time).
        """
        words_of = self._words_of
        out: List[str] = []
        cut = self.backend.cut(text, True) if self.engine == "rjieba" \
            else self.backend.cut(text, HMM=True)
        for token in cut:
            words = words_of.get(token)
            if words is None:
                if len(words_of) >= _WORDS_CACHE_MAX:
                    words_of.clear()  # ids and numbers are unbounded
                parts = self._resplit([token]) if self.engine == "rjieba" else [token]
                words = words_of[token] = tuple(part for part in parts if _keep(part))
            out.extend(words)
        return out

    def _resplit(self, tokens: List[str]) -> List[str]:
        out: List[str] = []
        has_word = self.backend.has_word
        for token in tokens:
            if len(token) > 1 and not _IDEOGRAPHS_ONLY_RE.fullmatch(token) \
                    and not has_word(token):
                out.extend(_resplit_like_jieba(token))
            else:
                out.append(token)
        return out

    def __repr__(self) -> str:
        return f"Segmenter(engine={self.engine!r})"


def _quiet_jieba() -> None:
    # jieba logs "Building prefix dict..." at DEBUG through its own stderr handler; quieten only
    # jieba's logger, and only when nobody configured it.
    jieba_logger = logging.getLogger("jieba")
    if jieba_logger.level in (logging.NOTSET, logging.DEBUG):
        jieba.setLogLevel(logging.WARNING)


def _rjieba_available() -> bool:
    try:
        import rjieba  # noqa: F401
    except ImportError:
        return False
    return True


def build_tokenizer(user_dict_path: Optional[str] = None, engine: str = "auto") -> Segmenter:
    """Builds a private segmenter with the domain dictionary loaded.

    Call it once per process (in ``DoFn.setup()``): it builds the prefix dictionary eagerly here
    (about 0.2 s with jieba-rs, 1 s with jieba) instead of on the first cut.

    Args:
        user_dict_path: a jieba user dictionary (``word freq tag`` lines, ``#`` comments allowed);
            defaults to the packaged ``domain_dict.txt``.
        engine: ``"rjieba"`` (jieba-rs), ``"jieba"`` (pure Python), or ``"auto"``: jieba-rs when
            installed.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    path = user_dict_path or data_path(DOMAIN_DICT_FILE)
    payload = _dictionary_lines(path)
    if engine == "auto":
        engine = "rjieba" if _rjieba_available() else "jieba"
    if engine == "rjieba":
        import rjieba

        backend = rjieba.Jieba()
        for number, line in enumerate(payload.decode("utf-8").splitlines(), 1):
            parts = line.split()
            freq = parts[1] if len(parts) > 1 else None
            if freq is not None and not freq.isdigit():
                raise ConfigError(f"{path}: entry {number}: frequency {freq!r} is not a number")
            backend.add_word(parts[0], int(freq) if freq else None,
                             parts[2] if len(parts) > 2 else None)
        return Segmenter("rjieba", backend)
    _quiet_jieba()
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    stream = io.BytesIO(payload)
    stream.name = path  # jieba names the file in its error messages
    tokenizer.load_userdict(stream)
    return Segmenter("jieba", tokenizer)


def segmenter_engine() -> str:
    """The engine :func:`build_tokenizer` picks here, with its version (``"rjieba 0.2.2"``)."""
    from importlib import metadata

    name = "rjieba" if _rjieba_available() else "jieba"
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:  # pragma: no cover - installed without metadata
        return name


@lru_cache(maxsize=4)
def load_stopwords(path: Optional[str] = None) -> FrozenSet[str]:
    """Function words dropped by :func:`segment` (``stopwords.txt``, ``#`` comments allowed)."""
    path = path or data_path(STOPWORDS_FILE)
    words = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word = line.strip()
            if word and not word.startswith("#"):
                words.add(normalise(word))
    return frozenset(words)


# Bound of Segmenter.words' per-token cache: emptied when it grows past this.
_WORDS_CACHE_MAX = 200_000


def _keep(token: str) -> bool:
    """A word worth keeping: some letter, digit or ideograph, and no stop word."""
    return bool(_CONTENT_RE.search(token)) and token not in load_stopwords()


def segment(tokenizer, text: str, normalised: bool = False) -> List[str]:
    """Normalises and cuts ``text``; drops whitespace, punctuation and stop words.

    Args:
        tokenizer: from :func:`build_tokenizer` (a ``jieba.Tokenizer`` works too).
        text: raw complaint text.
        normalised: set when ``text`` already went through :func:`normalise`.
    """
    if not normalised:
        text = normalise(text)
    if not text:
        return []
    if isinstance(tokenizer, Segmenter):
        return tokenizer.words(text)
    return [token for token in tokenizer.lcut(text, HMM=True) if _keep(token)]


class SegmentedDoc(NamedTuple):
    """A complaint after normalisation and segmentation: what the classifier's features read.

    ``title`` and ``text`` are normalised; ``title_tokens`` and ``tokens`` are their words as
    :func:`segment` gives them. Produced once per complaint (by the pipeline's segmentation stage
    or by the model itself when given raw text).
    """

    title: str
    text: str
    title_tokens: List[str]
    tokens: List[str]


def segment_for_model(tokenizer, title: str, text: str) -> SegmentedDoc:
    """Normalises and segments a complaint's title and text for the pollution-type model.

    Args:
        tokenizer: from :func:`build_tokenizer`.
        title: complaint title (may be empty or ``None``).
        text: complaint text.
    """
    title, text = normalise(title or ""), normalise(text or "")
    return SegmentedDoc(title, text, segment(tokenizer, title, normalised=True),
                        segment(tokenizer, text, normalised=True))


_SHARED_LOCK = threading.Lock()
_SHARED_TOKENIZER: Optional[Segmenter] = None


def shared_tokenizer() -> Segmenter:
    """One lazily built segmenter per process, for code that cannot hold its own (model analyzers).

    It is never pickled: a model loaded on a worker builds it on first use.
    """
    global _SHARED_TOKENIZER
    if _SHARED_TOKENIZER is None:
        with _SHARED_LOCK:
            if _SHARED_TOKENIZER is None:
                _SHARED_TOKENIZER = build_tokenizer()
    return _SHARED_TOKENIZER


@lru_cache(maxsize=20_000)
def usual_reading(ch: str) -> str:
    """The usual toneless reading of a character (市: shi, though it is also read fu); a
    non-Chinese character is itself. A name misspelt by ear is written with a character read so."""
    if not "\u4e00" <= ch <= "\u9fff":
        return ch
    return pinyin(ch, style=Style.NORMAL, errors="default")[0][0]


@lru_cache(maxsize=20_000)
def char_readings(ch: str) -> FrozenSet[str]:
    """Every toneless reading of a character (长: chang, zhang; 瓷 and 磁 share ci); a non-Chinese
    character is itself. Names reach the hotline by ear: repeat detection and region resolution
    compare names written with one character of the same sound."""
    if not "\u4e00" <= ch <= "\u9fff":
        return frozenset((ch,))
    return frozenset(pinyin(ch, style=Style.NORMAL, heteronym=True, errors="default")[0])


def dictionary_words(keep: Callable[[str, int, str], bool]) -> frozenset:
    """The words of jieba's general dictionary (its ``dict.txt``, read as a file: the global
    tokenizer is never touched) that ``keep(word, frequency, tag)`` keeps."""
    words = set()
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 3 and keep(parts[0], int(parts[1]), parts[2]):
                words.add(parts[0])
    return frozenset(words)
