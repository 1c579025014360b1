"""Text normalisation and word segmentation for complaint texts.

Complaints arrive in full-width forms, traditional characters and, from copy-pasted or OCR'd
documents, CJK radical look-alikes (``⻋`` for ``车``). Everything downstream (the classifier, the
region resolver, repeat detection) sees text only after :func:`normalise`, so one spelling of a
word reaches one token.

Segmentation uses a *private* ``jieba.Tokenizer`` with the domain dictionary loaded: the global
``jieba.cut`` shares one lazily built dictionary and a lock across the process, and
``jieba.add_word`` would leak our words into every other user of jieba in the same worker.
"""
from __future__ import annotations

import io
import json
import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import FrozenSet, List, Optional

import jieba

from envleads.config import ConfigError, data_path

DOMAIN_DICT_FILE = "domain_dict.txt"
STOPWORDS_FILE = "stopwords.txt"
LOOKALIKES_FILE = "lookalikes.json"

_VERSION_RE = re.compile(r"^#\s*version\s*:\s*(\S+)\s*$")
_WHITESPACE_RE = re.compile(r"\s+")
# A token worth keeping has at least one letter, digit or ideograph; the rest is punctuation,
# symbols or masking (``*****`` for a redacted phone number).
_CONTENT_RE = re.compile(r"[0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

_LOGGER = logging.getLogger(__name__)


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


@lru_cache(maxsize=1)
def _t2s():
    # Building the converter parses its dictionaries (~50 ms); do it once per process.
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=1)
def _traditional_chars() -> FrozenSet[str]:
    """Characters that t2s would change; text without any of them skips the slow converter.

    opencc-python-reimplemented is pure Python (about 4 ms per complaint) and most complaints are
    already simplified. Built from the converter's own dictionaries: for each entry, the
    positions where the traditional form differs from the simplified one.
    """
    import os

    import opencc

    folder = os.path.join(os.path.dirname(opencc.__file__), "dictionary")
    changed = set()
    for name in ("TSCharacters.txt", "TSPhrases.txt"):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2:
                    continue
                key, value = parts[0], parts[1].split(" ")[0]
                if len(key) != len(value):
                    changed.update(key)
                else:
                    changed.update(k for k, v in zip(key, value) if k != v)
    return frozenset(changed)


@lru_cache(maxsize=1)
def _lookalike_table() -> dict:
    path = data_path(LOOKALIKES_FILE)
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if "version" not in document or not isinstance(document.get("map"), dict):
        raise ConfigError(f"{path}: expected keys 'version' and 'map'")
    return str.maketrans({k: v for k, v in document["map"].items() if k != v})


def normalise(text: str) -> str:
    """Returns ``text`` in one canonical spelling: half-width, simplified, standard ideographs.

    NFKC folds full-width letters/digits and Kangxi radicals; radical-supplement look-alikes that
    NFKC leaves alone come from ``lookalikes.json``; OpenCC ``t2s`` converts traditional to
    simplified; runs of whitespace become one space.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_lookalike_table())
    if not _traditional_chars().isdisjoint(text):
        text = _t2s().convert(text)
    return _WHITESPACE_RE.sub(" ", text).strip()


def _dictionary_lines(path: str) -> bytes:
    """The dictionary without comment lines: jieba would otherwise add ``#`` as a word."""
    kept = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                kept.append(stripped)
    return ("\n".join(kept) + "\n").encode("utf-8")


def build_tokenizer(user_dict_path: Optional[str] = None) -> jieba.Tokenizer:
    """Builds a private jieba tokenizer with the domain dictionary loaded.

    Call it once per process (in ``DoFn.setup()``); it takes about a second because jieba builds
    its prefix dictionary eagerly here instead of on the first ``cut``.

    Args:
        user_dict_path: a jieba user dictionary (``word freq tag`` lines, ``#`` comments allowed);
            defaults to the packaged ``domain_dict.txt``.
    """
    # jieba logs "Building prefix dict..." at DEBUG through its own stderr handler; quieten only
    # jieba's logger, and only when nobody configured it.
    jieba_logger = logging.getLogger("jieba")
    if jieba_logger.level in (logging.NOTSET, logging.DEBUG):
        jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    path = user_dict_path or data_path(DOMAIN_DICT_FILE)
    payload = io.BytesIO(_dictionary_lines(path))
    payload.name = path  # jieba names the file in its error messages
    tokenizer.load_userdict(payload)
    return tokenizer


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


def segment(tokenizer: jieba.Tokenizer, text: str, normalised: bool = False) -> List[str]:
    """Normalises and cuts ``text``; drops whitespace, punctuation and stop words.

    Args:
        tokenizer: from :func:`build_tokenizer`.
        text: raw complaint text.
        normalised: set when ``text`` already went through :func:`normalise`.
    """
    if not normalised:
        text = normalise(text)
    if not text:
        return []
    stopwords = load_stopwords()
    return [
        token
        for token in tokenizer.lcut(text, HMM=True)
        if _CONTENT_RE.search(token) and token not in stopwords
    ]


_SHARED_LOCK = threading.Lock()
_SHARED_TOKENIZER: Optional[jieba.Tokenizer] = None


def shared_tokenizer() -> jieba.Tokenizer:
    """One lazily built tokenizer per process, for code that cannot hold its own (model analyzers).

    It is never pickled: a model loaded on a worker builds it on first use.
    """
    global _SHARED_TOKENIZER
    if _SHARED_TOKENIZER is None:
        with _SHARED_LOCK:
            if _SHARED_TOKENIZER is None:
                _SHARED_TOKENIZER = build_tokenizer()
    return _SHARED_TOKENIZER
