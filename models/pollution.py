"""Pollution-type classifier: which media a complaint is about, or that it is not environmental.

One scikit-learn ``Pipeline`` goes from a complaint to per-label probabilities, so it is fitted,
saved and loaded as a unit:

``segment`` (normalise + jieba with the domain dictionary; a :class:`SegmentedDoc` passes
through, so a pipeline that segmented upstream with :func:`segment_for_model` segments once) ->
``features`` (word TF-IDF over jieba tokens, character 1-3-gram TF-IDF, clause evidence: per label
the score of the strongest sentence under a character n-gram model, so that a second medium named
in one sentence of a long letter still counts; clause-level cue features from
``type_terms.json``) -> ``classify`` (per label, a lexical logistic regression over all
features, optionally averaged with a small rule-view regression over the cue features, combined
with an environmental-or-not gate; optionally (``stack=True``, off by default: it did not beat
the single stage in cross-validation) a second-stage :class:`LabelStacker` reading every label's
out-of-fold probability, so that rules linking labels can be learned; then the annotation rule
that ``other`` is for complaints naming no medium (:func:`exclusive_rule`); per-label thresholds,
that rule's keep level and the confidence calibration are tuned on out-of-fold probabilities).

The real labelled rows are few and rare labels (soil, radiation, other) have around ten examples,
so the learner is helped twice: by the clause cue features (domain knowledge as data) and by the
project's own training complaints in ``models/training/*.jsonl`` (``make_generated.py`` writes
the generated ones).

Every object the pipeline references is defined at module level so ``joblib.load`` on a worker
can import it; the segmenter is never pickled but built lazily once per process.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import re
import sys
import time
from bisect import bisect_right
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import LinearSVC
from tqdm import tqdm

from envleads.config import ConfigError, data_path, load_json_config
from envleads.records import POLLUTION_LABELS, TypePrediction
from envleads.text import SegmentedDoc, normalise, segment_for_model, shared_tokenizer

LOGGER = logging.getLogger(__name__)

__all__ = ["LABELS", "SegmentedDoc", "segment_for_model", "PollutionModel", "train_model",
           "cross_validate", "evaluate", "score_predictions", "format_report", "build_pipeline",
           "CharNgramTfidf", "ClauseCueFeatures", "ClauseEvidence",
           "MultiLabelThresholdClassifier"]

LABELS: Tuple[str, ...] = tuple(POLLUTION_LABELS)
TYPE_TERMS_FILE = "type_terms.json"
TRAINING_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training")
DEFAULT_REVIEW_THRESHOLD = 0.5
# Bumped when the saved pipeline's classes change shape, so that old artefacts are refused (and
# retrained by ensure_default_model) instead of failing inside joblib.load.
PIPELINE_FORMAT = 5
DEFAULT_HYPER: Dict[str, Any] = {
    "model": "lr",  # lexical view: "lr" | "svc" | "nb"
    "C": 8.0,
    "words": True,
    "char_ngrams": True,
    "rules": True,
    "rule_view": False,
    "rule_weight": 0.5,
    "rule_C": 0.3,
    "synthetic_weight": 1.0,  # 5-fold CV: 1.0 beat 0.5, 1.5 and 2.0 (bench/results/classify.json)
    "threshold_folds": 4,
    "default_threshold": 0.4,
    "gate": True,
    "stack": False,  # measured: no gain over the single stage on the shared rows (see bench)
    "stack_C": 1.0,
    "stack_min": 12,
    "stack_cues": False,
    "exclusive_other": True,  # `other` only beside a medium when sure (LABELS.md; tuned OOF)
    # Per-label thresholds shrunk toward the one threshold best for all labels together, as if
    # each label had this many more rows at that threshold: a label with 10 positives cannot
    # place its F1 optimum reliably (see tune_thresholds).
    "threshold_shrink": 20.0,
    # An environmental complaint has at least one label (LABELS.md): when the gate says
    # environmental and no label reaches its threshold, the closest label (probability over
    # threshold) is given if that ratio is at least this (None: off). See at_least_one.
    # 5-fold CV micro/macro/env, fold seed 0: 0.875/0.828/0.965 -> 0.884/0.852/0.971; seed 1:
    # 0.860/0.792/0.958 -> 0.866/0.813/0.963. Each half helps alone on both seeds, and so does
    # every setting tried nearby (shrink 10-40, ratio 0.3-0.5).
    "at_least_one": 0.5,
    # Clause evidence (ClauseEvidence): 5-fold CV micro F1 0.852 -> 0.875; weight 0.5 beat
    # 0.25, 0.75, 1, 2 and 4, C 4 beat 1 and 8; as input to the stacker instead it gave 0.858.
    "clauses": True,
    "clause_C": 4.0,
    "clause_weight": 0.5,
    "seed": 0,
}


# --------------------------------------------------------------------------- segmentation step
def _as_pair(doc: Any) -> Tuple[str, str]:
    if isinstance(doc, str):
        return "", doc
    title, text = doc
    return title or "", text or ""


def segment_doc(doc: Any) -> SegmentedDoc:
    """Normalises and segments one ``(title, text)`` pair (or bare text), shared tokenizer."""
    title, text = _as_pair(doc)
    return segment_for_model(shared_tokenizer(), title, text)


def segment_docs(docs: Iterable[Any]) -> List[SegmentedDoc]:
    """Segments a batch; :class:`SegmentedDoc` items pass through (segmented once upstream)."""
    return [doc if isinstance(doc, SegmentedDoc) else segment_doc(doc) for doc in docs]


def word_analyzer(doc: SegmentedDoc) -> List[str]:
    """Words of title and text; title words also count as ``T:word`` because titles are dense."""
    return doc.tokens + doc.title_tokens + ["T:" + token for token in doc.title_tokens]


def full_text(doc: SegmentedDoc) -> str:
    """Title and text as one string, for the character n-gram vectoriser."""
    return doc.title + "。" + doc.text if doc.title else doc.text


# --------------------------------------------------------------------------- character n-grams
_CODE_BITS = 21  # every Unicode code point fits in 21 bits, so up to 3 characters fit in 63


def _ngram_keys(text: str, min_n: int, max_n: int) -> np.ndarray:
    """The character n-grams of ``text`` as integers: code points packed 21 bits apiece.

    An n-gram of n characters never equals one of another length (no character is U+0000), so one
    sorted array of keys can serve as the vocabulary for all lengths.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = [_packed_ngrams(codes, n) for n in range(min_n, max_n + 1)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def _packed_ngrams(codes: np.ndarray, n: int) -> np.ndarray:
    """Keys of the ``n``-grams of ``codes`` (uint64 code points), one per start position."""
    count = max(0, codes.size - n + 1)
    keys = codes[:count].copy()
    for offset in range(1, n):
        keys = (keys << np.uint64(_CODE_BITS)) | codes[offset:offset + count]
    return keys


def _key_text(key: int) -> str:
    chars = []
    while key:
        chars.append(chr(key & ((1 << _CODE_BITS) - 1)))
        key >>= _CODE_BITS
    return "".join(reversed(chars))


class CharNgramTfidf(BaseEstimator, TransformerMixin):
    """Character n-gram TF-IDF of title and text, vectorised with numpy.

    Gives what ``TfidfVectorizer(analyzer="char", sublinear_tf=True)`` gives (smooth idf, l2 norm)
    at about ten times its speed: n-grams are packed into integers and looked up with
    ``searchsorted`` instead of one Python dict lookup per n-gram.

    Args:
        ngram_range: shortest and longest n-gram, at most 3 characters.
        min_df: keep n-grams seen in at least this many documents.
        max_features: keep at most this many, the most frequent first.
    """

    def __init__(self, ngram_range: Tuple[int, int] = (1, 3), min_df: int = 2,
                 max_features: Optional[int] = 60000):
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features

    def _doc_keys(self, X) -> List[np.ndarray]:
        low, high = self.ngram_range
        if not 1 <= low <= high <= 3:
            raise ValueError(f"ngram_range must lie within (1, 3), not {self.ngram_range}")
        return [_ngram_keys(full_text(doc), low, high) for doc in X]

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        doc_keys = self._doc_keys(X)
        distinct = [np.unique(keys) for keys in doc_keys]
        pooled = np.concatenate(distinct) if distinct else np.zeros(0, dtype=np.uint64)
        vocabulary, df = np.unique(pooled, return_counts=True)
        totals = np.unique(np.concatenate(doc_keys), return_counts=True)[1] if pooled.size else df
        keep = df >= self.min_df
        if self.max_features is not None and keep.sum() > self.max_features:
            # Most frequent first (ties by key, so fitting is deterministic).
            order = np.lexsort((vocabulary, -totals))
            order = order[keep[order]][:self.max_features]
            keep = np.zeros_like(keep)
            keep[order] = True
        self.vocabulary_ = vocabulary[keep]
        n_docs = len(doc_keys)
        self.idf_ = np.log((1.0 + n_docs) / (1.0 + df[keep])) + 1.0
        return self._transform_keys(doc_keys)

    def transform(self, X):
        return self._transform_keys(self._doc_keys(X))

    def _transform_keys(self, doc_keys: List[np.ndarray]) -> sp.csr_matrix:
        sizes = [keys.size for keys in doc_keys]
        keys = np.concatenate(doc_keys) if doc_keys else np.zeros(0, dtype=np.uint64)
        counts, norms = self.weighted_counts(np.repeat(np.arange(len(doc_keys)), sizes), keys, len(doc_keys))
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ counts)

    def weighted_counts(self, rows: np.ndarray, keys: np.ndarray, n_rows: int
                        ) -> Tuple[sp.csr_matrix, np.ndarray]:
        """Sublinear TF-IDF of the n-gram ``keys`` counted into ``rows``, not yet normalised, and
        each row's L2 norm (0 for a row with no known n-gram)."""
        vocabulary = self.vocabulary_
        counts = sp.csr_matrix((n_rows, vocabulary.size))
        if vocabulary.size and keys.size:
            # One lookup for the whole batch, keys sorted first: searchsorted is about four times
            # faster on sorted keys, and the entries' order does not matter to the sparse matrix.
            order = np.argsort(keys)
            keys, rows = keys[order], rows[order]
            position = np.searchsorted(vocabulary, keys)
            position[position == vocabulary.size] = 0
            hit = vocabulary[position] == keys
            counts = sp.csr_matrix((np.ones(int(hit.sum())), (rows[hit], position[hit])),
                                   shape=(n_rows, vocabulary.size))
            counts.sum_duplicates()
            counts.data = (1.0 + np.log(counts.data)) * self.idf_[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        return counts, norms

    def get_feature_names_out(self, input_features=None):
        return np.array([f"char_{_key_text(int(k))}" for k in self.vocabulary_], dtype=object)


# --------------------------------------------------------------------------- clause cue features
def load_type_terms(path: Optional[str] = None) -> Dict[str, Any]:
    """Reads and validates ``type_terms.json``: strong and weak cue terms per label, grievance
    and non-environmental cues, clause separators."""
    path = path or data_path(TYPE_TERMS_FILE)
    document = load_json_config(path, required=("version", "labels", "grievance",
                                                "not_environmental", "clause_separators"))
    for label in LABELS:
        entry = document["labels"].get(label)
        if not isinstance(entry, dict) or not entry.get("strong") \
                or not isinstance(entry.get("weak", []), list):
            raise ConfigError(f"{path}: labels.{label} needs a non-empty 'strong' list and a "
                              "'weak' list")
    for key in ("grievance", "not_environmental"):
        if not isinstance(document[key], list) or not document[key]:
            raise ConfigError(f"{path}: {key} must be a non-empty list of terms")
    if not isinstance(document.get("masked", []), list):
        raise ConfigError(f"{path}: masked must be a list of terms")
    return document


def _alternation(terms: Iterable[str]) -> str:
    # Longest first, so that "臭气熏天" is one hit and not "臭气" plus nothing.
    unique = sorted({normalise(t) for t in terms if t.strip()}, key=lambda t: (-len(t), t))
    return "|".join(re.escape(t) for t in unique)


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class of ``chars`` (sorted, so the pattern is the same in every process)."""
    return "[" + "".join(re.escape(char) for char in sorted(set(chars))) + "]"


def _literals(pattern: str) -> List[str]:
    """The terms of a pattern that :func:`_alternation` wrote (a fitted state keeps patterns).

    Raises ``ValueError`` for anything else, an empty pattern included (it would match the empty
    string everywhere), rather than scan for the wrong thing.
    """
    terms = [re.sub(r"\\(.)", r"\1", term, flags=re.S)
             for term in re.findall(r"(?:\\.|[^|\\])+", pattern, re.S)]
    if not terms or "|".join(re.escape(term) for term in terms) != pattern:
        raise ValueError(f"not an alternation of literal terms: {pattern[:60]!r}")
    return terms


class _CueScan:
    """Every occurrence of the terms of several literal alternations, found in one pass.

    A regex alternation tries its terms one by one wherever a term's first character occurs, so
    running the 18 cue, grievance and non-environmental patterns was most of
    :meth:`ClauseCueFeatures.transform`. Here one regex of character classes finds the positions
    where a term may start (one in six to eight), and only those are probed in a dict.
    :meth:`replay` then gives, from the occurrences, exactly the matches that ``finditer`` of one
    longest-first alternation gives.
    """

    def __init__(self, patterns: Sequence[str]):
        self._masks: Dict[str, int] = {}  # term -> bit i set when patterns[i] has the term
        for index, pattern in enumerate(patterns):
            for term in _literals(pattern):
                self._masks[term] = self._masks.get(term, 0) | 1 << index
        singles = {term for term in self._masks if len(term) == 1}
        lengths: Dict[str, set] = {}  # first two characters -> lengths of the terms there
        for term in self._masks:
            if len(term) > 1:
                lengths.setdefault(term[:2], {1} if term[0] in singles else set()).add(len(term))
        self._lengths = {pair: sorted(found, reverse=True) for pair, found in lengths.items()}
        # A one-character term, or a first character of a longer term before a second one. The
        # class comes first so that the regex engine skips other characters without trying.
        checks = ["(?<=" + _char_class(singles) + ")"] if singles else []
        if lengths:
            checks.append("(?=" + _char_class(pair[1] for pair in lengths) + ")")
        self._starts = re.compile(_char_class({pair[0] for pair in lengths} | singles)
                                  + "(?:" + "|".join(checks) + ")")

    def find(self, text: str) -> Tuple[List[Tuple[int, List[Tuple[int, str, int]]]], int]:
        """Per position where terms start, in order: ``(start, [(end, term, mask)])``, longest
        term first; and the union of all masks (which patterns occur at all)."""
        masks, lengths = self._masks, self._lengths
        n = len(text)
        occurrences = []
        present = 0
        for match in self._starts.finditer(text):
            start = match.start()
            hits = []
            for length in lengths.get(text[start:start + 2], (1,)):
                term = text[start:start + length]
                mask = masks.get(term) if start + length <= n else None
                if mask:
                    hits.append((start + length, term, mask))
                    present |= mask
            if hits:
                occurrences.append((start, hits))
        return occurrences, present

    @staticmethod
    def replay(occurrences: List[Tuple[int, List[Tuple[int, str, int]]]], bit: int
               ) -> List[Tuple[int, str]]:
        """``(start, term)`` of the matches of pattern ``bit``: leftmost, then the longest term
        (its first alternative), then on from the match's end, as ``finditer`` goes."""
        matches = []
        position = 0
        for start, hits in occurrences:
            if start >= position:
                for end, term, mask in hits:
                    if mask & bit:
                        matches.append((start, term))
                        position = end
                        break
        return matches


class ClauseCueFeatures(BaseEstimator, TransformerMixin):
    """Domain rules as features, clause by clause.

    A complaint is cut into clauses (at 。！？；). For each label and for its strong cues and
    its strong-or-weak cues: cue in the title; log number of clauses with a cue; share of clauses
    with a cue; a cue in the first two clauses (main concern first); log number of clauses with a
    cue *and* a grievance word (a reported harm, not a mention); log number of distinct cue hits.
    Then non-environmental cues in text and title, grievance clauses, clauses and length.
    ``masked`` phrases of the terms file (豆腐渣工程, 垃圾短信, 抽烟, 生态示范县) are blanked
    before the label cues are matched: they contain a cue but report no such problem.

    Cue lists come from ``type_terms.json`` at fit time and are kept in the fitted state, so a
    saved model always applies the rules it was trained with.

    Args:
        terms_path: a type-terms file; ``None`` means the packaged one.
    """

    _PER_SET = 6

    def __init__(self, terms_path: Optional[str] = None):
        self.terms_path = terms_path

    def fit(self, X, y=None):
        self.__dict__.pop("_compiled_cache", None)  # a refit may read another terms file
        document = load_type_terms(self.terms_path)
        patterns = []
        for label in LABELS:
            entry = document["labels"][label]
            patterns.append(_alternation(entry["strong"]))
            patterns.append(_alternation(list(entry["strong"]) + list(entry.get("weak", []))))
        self.cue_patterns_ = patterns
        self.grievance_pattern_ = _alternation(document["grievance"])
        self.not_environmental_pattern_ = _alternation(document["not_environmental"])
        self.clause_pattern_ = "[" + re.escape(document["clause_separators"]) + "]+"
        # Phrases that contain a cue but are no cue (豆腐渣工程, 垃圾短信, 抽烟): blanked first.
        self.masked_pattern_ = _alternation(document.get("masked", []))
        self.terms_version_ = str(document["version"])
        self.n_features_out_ = self._PER_SET * len(patterns) + 5
        return self

    def _compiled(self):
        compiled = getattr(self, "_compiled_cache", None)
        if compiled is None:
            masked = getattr(self, "masked_pattern_", "")
            # Cue patterns are bits 0-15, then grievance and non-environmental cues.
            compiled = (_CueScan(self.cue_patterns_ + [self.grievance_pattern_,
                                                       self.not_environmental_pattern_]),
                        re.compile(self.clause_pattern_),
                        re.compile(masked) if masked else None)
            self._compiled_cache = compiled
        return compiled

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_compiled_cache", None)  # compiled patterns are rebuilt after loading
        return state

    def transform(self, X):
        scan, splitter, masked = self._compiled()
        n_cues = len(self.cue_patterns_)
        cue_bits = (1 << n_cues) - 1
        grievance_bit = cue_bits + 1
        not_env_bit = grievance_bit << 1
        per_set = self._PER_SET
        log1p = math.log1p
        out = np.zeros((len(X), self.n_features_out_), dtype=np.float64)
        for row, doc in enumerate(X):
            text, title = doc.text, doc.title
            if masked is not None:
                # The non-environmental cues still see the masked phrases (垃圾分类, 水费).
                not_env_text, not_env_title = text, title
                text, title = masked.sub("□", text), masked.sub("□", title)
            else:
                not_env_text, not_env_title = text, title
            # Clause spans (non-blank clauses only). Cues never contain a separator, so matching
            # the whole text once finds exactly the per-clause matches, at a fraction of the regex
            # calls; each match is placed in its clause by its offset.
            starts, ends, position = [], [], 0
            for separator in splitter.finditer(text):
                if text[position:separator.start()].strip():
                    starts.append(position)
                    ends.append(separator.start())
                position = separator.end()
            if text[position:].strip():
                starts.append(position)
                ends.append(len(text))
            n = len(starts) or 1
            occurrences, present = scan.find(text)
            # A clause is harmed when a grievance word lies wholly inside it, as a search of the
            # clause alone would find it.
            harmed = set()
            if present & grievance_bit:
                for start, hits in occurrences:
                    for end, _, mask in hits:
                        if mask & grievance_bit:
                            clause = bisect_right(starts, start) - 1
                            if clause >= 0 and end <= ends[clause]:
                                harmed.add(clause)
            values = out[row]
            in_title = scan.find(title)[1]
            remaining = in_title & cue_bits
            while remaining:
                bit = remaining & -remaining
                remaining ^= bit
                values[(bit.bit_length() - 1) * per_set] = 1.0
            remaining = present & cue_bits  # most labels' cues are absent: their features stay 0
            while remaining:
                bit = remaining & -remaining
                remaining ^= bit
                found: Dict[int, set] = {}  # clause -> distinct cues matched in it
                for start, term in scan.replay(occurrences, bit):
                    clause = bisect_right(starts, start) - 1
                    if clause >= 0 and start < ends[clause]:
                        found.setdefault(clause, set()).add(term)
                if found:
                    column = (bit.bit_length() - 1) * per_set
                    values[column + 1] = log1p(len(found))
                    values[column + 2] = len(found) / n
                    values[column + 3] = 1.0 if 0 in found or 1 in found else 0.0
                    values[column + 4] = log1p(len(harmed.intersection(found)))
                    values[column + 5] = log1p(sum(map(len, found.values())))
            if not_env_text != text:
                occurrences = scan.find(not_env_text)[0]
            if not_env_title != title:
                in_title = scan.find(not_env_title)[1]
            column = per_set * n_cues
            values[column] = log1p(len({term for _, term in scan.replay(occurrences, not_env_bit)}))
            values[column + 1] = 1.0 if in_title & not_env_bit else 0.0
            values[column + 2] = log1p(len(harmed))
            values[column + 3] = log1p(n)
            values[column + 4] = log1p(len(doc.text))
        return out

    def get_feature_names_out(self, input_features=None):
        names = []
        for label in LABELS:
            for kind in ("strong", "any"):
                names += [f"cue_{label}_{kind}_{w}" for w in
                          ("title", "clauses", "share", "first", "harm", "hits")]
        names += ["not_env_text", "not_env_title", "harm_clauses", "clauses", "length"]
        return np.array(names, dtype=object)


# --------------------------------------------------------------------------- clause evidence
class ClauseEvidence(BaseEstimator, TransformerMixin):
    """Per label, the evidence of the strongest clause: a second medium named in one clause of a
    long letter is not drowned out by the rest of the letter.

    A per-label logistic regression over character n-gram TF-IDF is fitted on whole complaints,
    then applied to each clause (title, and text cut at the terms file's clause separators); the
    output per label is the sigmoid of the highest clause score. Fitted on labelled rows, so
    :meth:`fit_transform` returns cross-fitted scores (each training row scored by a model that
    did not see it; in-sample scores would look more certain than scores of new complaints and
    the downstream classifier would over-trust them), and :meth:`transform` uses the model fitted
    on all rows.

    Args:
        ngram_range: shortest and longest character n-gram (1-2 beat 1-3 and 1-1 in 5-fold CV,
            and is faster).
        folds: cross-fitting folds for :meth:`fit_transform`.
        C: inverse regularisation of the per-label logistic regressions.
        weight: scale of the output (0 to ``weight``) beside the TF-IDF columns; the linear
            classifier is regularised, so the scale sets how much it leans on clause evidence.
        seed: fold shuffling seed.
    """

    def __init__(self, ngram_range: Tuple[int, int] = (1, 2), folds: int = 4, C: float = 4.0,
                 weight: float = 1.0, seed: int = 0):
        self.ngram_range = ngram_range
        self.folds = folds
        self.C = C
        self.weight = weight
        self.seed = seed

    def _fit(self, X, Y) -> Tuple[CharNgramTfidf, np.ndarray, np.ndarray]:
        vectoriser = CharNgramTfidf(ngram_range=self.ngram_range, min_df=2, max_features=60000)
        D = vectoriser.fit_transform(X)
        coef = np.zeros((Y.shape[1], D.shape[1]))
        intercept = np.zeros(Y.shape[1])
        for label in range(Y.shape[1]):
            y = Y[:, label]
            if y.min() == y.max():
                intercept[label] = 10.0 if y[0] else -10.0
                continue
            model = LogisticRegression(C=self.C, max_iter=3000, class_weight="balanced",
                                       solver="liblinear", dual=True, random_state=self.seed).fit(D, y)
            coef[label] = model.coef_[0]
            intercept[label] = model.intercept_[0]
        return vectoriser, coef, intercept

    def _prepare(self, Y) -> np.ndarray:
        if Y is None:
            raise ValueError("ClauseEvidence is fitted on labels: pass Y")
        # Sentences, not comma phrases: cutting at commas too lost 0.025 micro F1 in 5-fold CV.
        self.separators_ = str(load_type_terms()["clause_separators"])
        Y = np.asarray(Y)
        return Y.reshape(-1, 1) if Y.ndim == 1 else Y

    def _fit_all(self, X, Y: np.ndarray) -> None:
        self.vectoriser_, self.coef_, self.intercept_ = self._fit(X, Y)
        self.n_features_out_ = Y.shape[1]

    def fit(self, X, Y=None):
        self._fit_all(X, self._prepare(Y))
        return self

    def fit_transform(self, X, Y=None):
        Y = self._prepare(Y)
        self._fit_all(X, Y)
        if len(X) < 2 * self.folds:
            return self.transform(X)  # too few rows to cross-fit (tiny test sets)
        out = np.zeros((len(X), Y.shape[1]))
        folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        for train_idx, test_idx in folds.split(np.zeros(len(X)), _strata(Y)):
            fitted = self._fit([X[i] for i in train_idx], Y[train_idx])
            out[test_idx] = self._scores([X[i] for i in test_idx], *fitted)
        return out

    def _scores(self, X, vectoriser: CharNgramTfidf, coef: np.ndarray, intercept: np.ndarray
                ) -> np.ndarray:
        # The whole batch at once, in numpy: one string of every text and title, each followed
        # by a separator; an n-gram's clause is the number of separators before it, and n-grams
        # spanning a separator are dropped. A Python loop over clauses cost 40% of throughput.
        if not len(X):
            return np.zeros((0, coef.shape[0]))
        separator = self.separators_[0]
        pieces = []
        for doc in X:
            pieces.append(doc.text)
            pieces.append(separator)
            pieces.append(doc.title)
            pieces.append(separator)
        codes = np.frombuffer("".join(pieces).encode("utf-32-le"), dtype=np.uint32)
        sep_codes = np.frombuffer(self.separators_.encode("utf-32-le"), dtype=np.uint32)
        before = np.concatenate([[0], np.cumsum(np.isin(codes, sep_codes))])  # separators < i
        wide = codes.astype(np.uint64)
        low, high = vectoriser.ngram_range
        keys, clauses = [], []
        for n in range(low, high + 1):
            gram = _packed_ngrams(wide, n)
            inside = before[n:n + gram.size] == before[:gram.size]
            keys.append(gram[inside])
            clauses.append(before[:gram.size][inside])
        counts, norms = vectoriser.weighted_counts(np.concatenate(clauses), np.concatenate(keys), int(before[-1]))
        scores = np.asarray(counts @ coef.T) / np.where(norms > 0, norms, 1.0)[:, None] + intercept
        scores[norms == 0] = -np.inf  # blank clauses (and empty titles) are no evidence
        # Every document ends two clauses (text, title), so its clause range is never empty.
        lengths = np.array([len(doc.text) + len(doc.title) + 2 for doc in X])
        first = before[np.concatenate([[0], np.cumsum(lengths)[:-1]])]
        out = np.maximum.reduceat(scores, first, axis=0)
        out[~np.isfinite(out)] = -50.0  # no clause with a known n-gram: no evidence
        return self.weight / (1.0 + np.exp(-out))

    def transform(self, X):
        return self._scores(X, self.vectoriser_, self.coef_, self.intercept_)

    def get_feature_names_out(self, input_features=None):
        return np.array([f"clause_max_{label}" for label in LABELS], dtype=object)


# --------------------------------------------------------------------------- classifier step
def _fit_binary(base, X, y, sample_weight):
    if y.min() == y.max():
        return float(y[0])  # no positives (or only positives) here: predict the constant
    return clone(base).fit(X, y, sample_weight=sample_weight)


def _binary_proba(model, X) -> np.ndarray:
    if isinstance(model, float):
        return np.full(X.shape[0], model)
    return model.predict_proba(X)[:, 1]


class MultiLabelThresholdClassifier(BaseEstimator, ClassifierMixin):
    """Two views per label, averaged, each label with its own decision threshold.

    The *lexical* view is one binary ``estimator`` per label over all columns (word and character
    TF-IDF and the clause cues). The *rule* view is one small standardised logistic regression per
    label over the last ``dense_columns`` columns only (the clause cues): with a few hundred real
    rows, 100 dense domain features generalise where 60,000 sparse ones overfit. Their
    probabilities are averaged with weight ``dense_weight``.

    With ``gate`` an "environmental at all?" model (both views, trained on every labelled row at
    once) is combined with each label by a geometric mean, so both must agree.

    Per-label thresholds matter because rare labels get low probabilities: one global 0.5 would
    never predict them. ``thresholds`` is set after fitting by :func:`train_model` from
    out-of-fold probabilities; without it ``default_threshold`` applies.

    Args:
        estimator: a binary classifier with ``predict_proba`` for the lexical view.
        thresholds: per-label thresholds, or ``None``.
        default_threshold: used when ``thresholds`` is ``None``.
        gate: combine with the environmental-or-not model.
        dense_columns: how many trailing columns form the rule view (0: no rule view).
        dense_weight: weight of the rule view in the average.
        dense_C: inverse regularisation of the rule-view regressions.
        confidence_calibration: ``(slope, intercept)`` mapping raw to calibrated confidence, set
            by :func:`train_model`; read by :func:`decide`.
        stacker: a fitted :class:`LabelStacker` over :meth:`base_proba`, set by
            :func:`train_model` (``None``: the first-stage probabilities are the output).
        cue_columns: how many trailing columns (the clause cues) :meth:`base_proba` passes on
            to the stacker (0: probabilities only).
        exclusive_label: index of a label given only when no other label is (``other``:
            LABELS.md gives it when the text names no medium); ``None``: no such label.
        exclusive_keep: the exclusive label's probability at or over which it stays beside
            other labels (an explicit violation besides a medium), set by :func:`train_model`.
        min_ratio: for :func:`at_least_one`: a complaint the gate calls environmental but with
            no label over its threshold gets its closest label when that label's probability is
            at least this share of its threshold (``None``: off).
    """

    def __init__(self, estimator=None, thresholds=None, default_threshold: float = 0.5,
                 gate: bool = False, dense_columns: int = 0, dense_weight: float = 0.5,
                 dense_C: float = 0.3, confidence_calibration=None, stacker=None,
                 cue_columns: int = 0, exclusive_label: Optional[int] = None,
                 exclusive_keep: float = 1.01, min_ratio: Optional[float] = None):
        self.estimator = estimator
        self.thresholds = thresholds
        self.default_threshold = default_threshold
        self.gate = gate
        self.dense_columns = dense_columns
        self.dense_weight = dense_weight
        self.dense_C = dense_C
        self.confidence_calibration = confidence_calibration
        self.stacker = stacker
        self.cue_columns = cue_columns
        self.exclusive_label = exclusive_label
        self.exclusive_keep = exclusive_keep
        self.min_ratio = min_ratio

    def _dense(self, X) -> np.ndarray:
        block = X[:, X.shape[1] - self.dense_columns:]
        return block.toarray() if sp.issparse(block) else np.asarray(block)

    def fit(self, X, Y, sample_weight=None):
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        base = self.estimator if self.estimator is not None else LogisticRegression(max_iter=2000)
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        targets = [Y[:, column] for column in range(Y.shape[1])]
        env = (Y.sum(axis=1) > 0).astype(int)
        self.estimators_ = [_fit_binary(base, X, y, sample_weight) for y in targets]
        self.dense_estimators_ = []
        self.scaler_ = None
        if self.dense_columns:
            dense = self._dense(X)
            self.scaler_ = StandardScaler().fit(dense)
            dense = self.scaler_.transform(dense)
            rule = LogisticRegression(C=self.dense_C, max_iter=3000, class_weight="balanced")
            self.dense_estimators_ = [_fit_binary(rule, dense, y, sample_weight) for y in targets]
        self.gate_ = None
        self.dense_gate_ = None
        if self.gate and env.min() != env.max():
            # "Environmental at all?" learns from every labelled row at once, which the
            # per-label models (a few dozen positives each) cannot.
            self.gate_ = _fit_binary(base, X, env, sample_weight)
            if self.dense_columns:
                self.dense_gate_ = _fit_binary(rule, dense, env, sample_weight)
        self.n_labels_ = Y.shape[1]
        self.classes_ = np.arange(Y.shape[1])
        return self

    def _views(self, lexical, dense_models, X, dense):
        out = np.column_stack([_binary_proba(m, X) for m in lexical]) if isinstance(
            lexical, list) else _binary_proba(lexical, X)
        if dense is None:
            return out
        other = np.column_stack([_binary_proba(m, dense) for m in dense_models]) if isinstance(
            dense_models, list) else _binary_proba(dense_models, dense)
        return (1.0 - self.dense_weight) * out + self.dense_weight * other

    def base_proba(self, X) -> np.ndarray:
        """First-stage probabilities: per-label views (gated), then the gate (all ones without
        a gate), then the last ``cue_columns`` feature columns. The stacker reads this matrix."""
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        cues = []
        if getattr(self, "cue_columns", 0):
            block = X[:, X.shape[1] - self.cue_columns:]
            cues = [block.toarray() if sp.issparse(block) else np.asarray(block)]
        dense = None
        if self.dense_columns and self.scaler_ is not None:
            dense = self.scaler_.transform(self._dense(X))
        out = self._views(self.estimators_, self.dense_estimators_, X, dense)
        gate = np.ones(out.shape[0])
        if self.gate_ is not None:
            gate = self._views(self.gate_, self.dense_gate_, X,
                               dense if self.dense_gate_ is not None else None)
            out = np.sqrt(out * gate[:, None])
        return np.column_stack([out, gate] + cues)

    def predict_proba(self, X):
        base = self.base_proba(X)
        stacker = getattr(self, "stacker", None)
        out = stacker.transform(base) if stacker is not None else base[:, :self.n_labels_]
        thresholds = self.thresholds_array()
        out = exclusive_rule(out, thresholds, getattr(self, "exclusive_label", None),
                             getattr(self, "exclusive_keep", 1.01))
        if getattr(self, "gate_", None) is None:
            return out  # no gate, no evidence that a complaint is environmental at all
        return at_least_one(out, thresholds, base[:, self.n_labels_],
                            getattr(self, "min_ratio", None))

    def thresholds_array(self) -> np.ndarray:
        if self.thresholds is None:
            return np.full(self.n_labels_, self.default_threshold)
        return np.asarray(self.thresholds, dtype=np.float64)

    def predict(self, X):
        return (self.predict_proba(X) >= self.thresholds_array()).astype(int)


def exclusive_rule(P: np.ndarray, thresholds: np.ndarray, label: Optional[int], keep: float
                   ) -> np.ndarray:
    """Lowers ``label``'s probability under its threshold where another label is over its own
    and ``label`` is under ``keep``: the learned models see "环评" or "严重污染环境" in many
    medium complaints, but the annotation guide gives ``other`` only when no medium is named
    (or, rarely, for an explicit violation besides one: kept when the model is sure)."""
    if label is None or keep > 1.0 or not len(P):
        return P
    P = np.array(P, dtype=np.float64, copy=True)
    others = np.delete(P >= thresholds, label, axis=1).any(axis=1)
    drop = others & (P[:, label] < keep)
    P[drop, label] *= thresholds[label] / max(keep, 1e-9) * 0.999
    return P


def at_least_one(P: np.ndarray, thresholds: np.ndarray, gate: np.ndarray,
                 min_ratio: Optional[float]) -> np.ndarray:
    """Raises the closest label to its threshold where the environmental gate is at least 0.5
    but no label reaches its threshold, if that label's probability is at least ``min_ratio``
    of its threshold. LABELS.md gives every environmental complaint at least one label; the
    per-label models each see only their own few dozen positives and can all fall just short on
    a complaint the gate (trained on every labelled row) is sure about. The raised probability
    sits at the threshold, so the prediction's confidence stays low."""
    if min_ratio is None or not len(P):
        return P
    thresholds = np.asarray(thresholds, dtype=np.float64)
    ratio = P / thresholds
    top = np.argmax(ratio, axis=1)
    rows = np.arange(len(P))
    lift = ~(P >= thresholds).any(axis=1) & (np.asarray(gate) >= 0.5) \
        & (ratio[rows, top] >= min_ratio)
    if not lift.any():
        return P
    P = np.array(P, dtype=np.float64, copy=True)
    P[rows[lift], top[lift]] = thresholds[top[lift]]
    return P


def tune_exclusive_keep(Y: np.ndarray, P: np.ndarray, thresholds: Sequence[float], label: int,
                        grid: Sequence[float] = (0.85, 0.9, 0.95, 0.98, 1.01)) -> float:
    """The ``keep`` level of :func:`exclusive_rule` maximising the label's F1 out of fold
    (middle of the best plateau, like :func:`tune_thresholds`)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    y = Y[:, label]
    scores = []
    for keep in grid:
        pred = exclusive_rule(P, thresholds, label, keep)[:, label] >= thresholds[label]
        denominator = pred.sum() + y.sum()
        scores.append(2.0 * np.sum(pred & (y == 1)) / denominator if denominator else 0.0)
    scores = np.asarray(scores)
    best = np.flatnonzero(scores >= scores.max() - 0.005)
    return float(grid[best[len(best) // 2]])


_CUES_PER_LABEL = 12  # ClauseCueFeatures: 6 per cue set, strong and strong-or-weak
_CUES_GLOBAL = 5


def _stack_features(base: np.ndarray, label: int, n_labels: int) -> np.ndarray:
    """What the second stage sees for one label: the logits of every label's first-stage
    probability and of the gate, the label's margin over the strongest other label, whether it
    is the top label, and (when :meth:`base_proba` passes them) the label's own clause cues and
    the global ones. So it can learn the annotation rules that link labels (``other`` only when
    no medium is named; a secondary medium needs more evidence than the main concern)."""
    Z = _logit(base[:, :n_labels + 1])
    labels = Z[:, :n_labels]
    others = np.delete(labels, label, axis=1)
    margin = labels[:, label] - others.max(axis=1)
    parts = [Z, margin, (margin > 0).astype(np.float64)]
    cues = base[:, n_labels + 1:]
    if cues.shape[1] >= _CUES_PER_LABEL * n_labels + _CUES_GLOBAL:
        parts.append(cues[:, _CUES_PER_LABEL * label:_CUES_PER_LABEL * (label + 1)])
        parts.append(cues[:, -_CUES_GLOBAL:])
    return np.column_stack(parts)


class LabelStacker(BaseEstimator):
    """Second stage: per label a small logistic regression over :func:`_stack_features`.

    Fitted on out-of-fold first-stage probabilities of the real rows (never on in-sample ones,
    which are over-confident). Labels with fewer than ``min_positives`` positives keep their
    first-stage probability: a dozen features need more than a handful of examples.

    Args:
        C: inverse regularisation of the per-label regressions.
        min_positives: fewest positives for a label to be stacked.
    """

    def __init__(self, C: float = 1.0, min_positives: int = 12):
        self.C = C
        self.min_positives = min_positives

    def fit(self, base: np.ndarray, Y: np.ndarray):
        self.models_ = []
        self.n_labels_ = Y.shape[1]
        for label in range(Y.shape[1]):
            y = Y[:, label]
            if y.sum() < self.min_positives or y.sum() == len(y):
                self.models_.append(None)
                continue
            features = _stack_features(base, label, self.n_labels_)
            scaler = StandardScaler().fit(features)
            model = LogisticRegression(C=self.C, max_iter=2000).fit(scaler.transform(features), y)
            self.models_.append((scaler, model))
        return self

    def transform(self, base: np.ndarray) -> np.ndarray:
        out = base[:, :self.n_labels_].copy()
        for label, fitted in enumerate(self.models_):
            if fitted is not None:
                scaler, model = fitted
                out[:, label] = model.predict_proba(
                    scaler.transform(_stack_features(base, label, self.n_labels_)))[:, 1]
        return out


def _base_estimator(model: str, C: float, seed: int):
    if model == "lr":
        # dual: the same L2 objective, solved 2-4 times faster when features outnumber rows
        return LogisticRegression(C=C, max_iter=3000, class_weight="balanced", solver="liblinear",
                                  dual=True, random_state=seed)
    if model == "svc":
        return CalibratedClassifierCV(LinearSVC(C=C / 10.0, class_weight="balanced",
                                                random_state=seed), method="sigmoid", cv=3)
    if model == "nb":
        return ComplementNB(alpha=0.3)
    raise ValueError(f"unknown model {model!r}; expected 'lr', 'svc' or 'nb'")


def build_pipeline(**hyper: Any) -> Pipeline:
    """An unfitted classifier pipeline; ``hyper`` overrides :data:`DEFAULT_HYPER`."""
    h = {**DEFAULT_HYPER, **hyper}
    features = []
    if h["words"]:
        features.append(("words", TfidfVectorizer(analyzer=word_analyzer, sublinear_tf=True,
                                                  min_df=2)))
    if h["char_ngrams"]:
        features.append(("chars", CharNgramTfidf(ngram_range=(1, 3), min_df=2,
                                                 max_features=60000)))
    if h["clauses"]:
        features.append(("clauses", ClauseEvidence(C=h["clause_C"], weight=h["clause_weight"],
                                                   seed=h["seed"])))
    dense_columns = 0
    if h["rules"]:
        # Last, so that the classifier's rule view can take the trailing columns.
        cues = ClauseCueFeatures()
        features.append(("cues", cues))
        dense_columns = 6 * 2 * len(LABELS) + 5
    return Pipeline([
        ("segment", FunctionTransformer(segment_docs)),
        ("features", FeatureUnion(features)),
        ("classify", MultiLabelThresholdClassifier(
            _base_estimator(h["model"], h["C"], h["seed"]),
            default_threshold=h["default_threshold"], gate=h["gate"],
            dense_columns=dense_columns if h["rule_view"] else 0,
            dense_weight=h["rule_weight"], dense_C=h["rule_C"],
            cue_columns=dense_columns if h["stack"] and h["stack_cues"] else 0,
            exclusive_label=LABELS.index("other") if h["exclusive_other"] else None,
            min_ratio=h["at_least_one"])),
    ])


# --------------------------------------------------------------------------- training
def _docs(records: Sequence[dict]) -> List[Tuple[str, str]]:
    return [(r.get("title") or "", r.get("text") or "") for r in records]


def label_matrix(records: Sequence[dict]) -> np.ndarray:
    """Gold labels as a 0/1 matrix over :data:`LABELS`; unknown labels fail loudly."""
    Y = np.zeros((len(records), len(LABELS)), dtype=int)
    for row, record in enumerate(records):
        for label in record.get("labels") or []:
            if label not in LABELS:
                raise ValueError(f"record {record.get('id')!r}: unknown label {label!r}")
            Y[row, LABELS.index(label)] = 1
    return Y


def _strata(Y: np.ndarray) -> np.ndarray:
    """Stratify folds by the rarest gold label of each row, so rare labels spread over folds."""
    counts = Y.sum(axis=0)
    strata = np.full(Y.shape[0], -1)
    for row in range(Y.shape[0]):
        present = np.flatnonzero(Y[row])
        if present.size:
            strata[row] = present[np.argmin(counts[present])]
    # StratifiedKFold needs every stratum at least n_splits times; merge tiny strata into "any".
    values, sizes = np.unique(strata, return_counts=True)
    for value, size in zip(values, sizes):
        if size < 5:
            strata[strata == value] = -2
    return strata


def _plateau_middle(grid: np.ndarray, scores: np.ndarray) -> float:
    best = np.flatnonzero(scores >= scores.max() - 0.005)
    return float(grid[best[len(best) // 2]])


def tune_thresholds(Y: np.ndarray, P: np.ndarray, default: float, min_positives: int = 5,
                    shrink: float = 0.0) -> List[float]:
    """Per-label threshold maximising F1 on out-of-fold probabilities.

    Takes the middle of the best plateau (not its edge) so one row does not move the threshold,
    and keeps ``default`` for labels with fewer than ``min_positives`` rows.

    With ``shrink`` > 0 each label's threshold is then pulled toward the common threshold (the
    one threshold for all labels that maximises micro F1), weighted as if the label had
    ``shrink`` more positives there: ``(n * own + shrink * common) / (n + shrink)``. A rare
    label's own optimum rests on a handful of rows and overfits them; a frequent label keeps
    close to its own.
    """
    grid = np.round(np.arange(0.10, 0.81, 0.025), 3)
    thresholds: List[float] = []
    for column in range(Y.shape[1]):
        y, p = Y[:, column], P[:, column]
        if y.sum() < min_positives:
            thresholds.append(default)
            continue
        scores = []
        for t in grid:
            pred = p >= t
            tp = float(np.sum(pred & (y == 1)))
            denominator = pred.sum() + y.sum()
            scores.append(2 * tp / denominator if denominator else 0.0)
        thresholds.append(_plateau_middle(grid, np.asarray(scores)))
    if shrink <= 0 or not Y.sum():
        return thresholds
    positives = Y.sum()
    common = []
    for t in grid:
        pred = P >= t
        common.append(2.0 * np.sum(pred & (Y == 1)) / (pred.sum() + positives))
    common_threshold = _plateau_middle(grid, np.asarray(common))
    counts = Y.sum(axis=0)
    return [float((n * own + shrink * common_threshold) / (n + shrink))
            for n, own in zip(counts, thresholds)]


def _fit_features_and_classifier(pipeline: Pipeline, segmented, Y, weights) -> Pipeline:
    tail = pipeline[1:]
    tail.fit(segmented, Y, classify__sample_weight=weights)
    return pipeline


def train_model(records: List[dict], **hyper: Any) -> Pipeline:
    """Fits the classifier pipeline and tunes its per-label thresholds.

    Thresholds come from out-of-fold probabilities over the non-synthetic rows (records without
    ``"synthetic": true``); synthetic rows are always in the training side and weigh
    ``synthetic_weight``.

    Args:
        records: dicts with ``text``, optional ``title``, ``labels`` and ``synthetic``.
        **hyper: overrides of :data:`DEFAULT_HYPER`.
    """
    h = {**DEFAULT_HYPER, **hyper}
    pipeline = build_pipeline(**h)
    segmented = segment_docs(_docs(records))
    Y = label_matrix(records)
    synthetic = np.array([bool(r.get("synthetic")) for r in records])
    weights = np.where(synthetic, h["synthetic_weight"], 1.0)
    real = np.flatnonzero(~synthetic)
    thresholds = None
    calibration = None
    stacker = None
    if h["threshold_folds"] and len(real) >= 5 * h["threshold_folds"]:
        B = None
        folds = StratifiedKFold(h["threshold_folds"], shuffle=True, random_state=h["seed"])
        for train_idx, test_idx in folds.split(real, _strata(Y[real])):
            train_rows = np.concatenate([real[train_idx], np.flatnonzero(synthetic)])
            fold_pipe = build_pipeline(**h)
            _fit_features_and_classifier(fold_pipe, [segmented[i] for i in train_rows],
                                         Y[train_rows], weights[train_rows])
            features = fold_pipe.named_steps["features"].transform(
                [segmented[i] for i in real[test_idx]])
            fold_base = fold_pipe.named_steps["classify"].base_proba(features)
            if B is None:
                B = np.zeros((len(real), fold_base.shape[1]))
            B[test_idx] = fold_base
        P = B[:, :len(LABELS)]
        if h["stack"]:
            # Out-of-fold second-stage probabilities (cheap: the first stage is not refitted),
            # so thresholds and calibration are tuned on what the stacked model will output.
            P = np.zeros_like(P)
            inner = StratifiedKFold(h["threshold_folds"], shuffle=True,
                                    random_state=h["seed"] + 1)
            for train_idx, test_idx in inner.split(real, _strata(Y[real])):
                fold_stacker = LabelStacker(C=h["stack_C"], min_positives=h["stack_min"]).fit(
                    B[train_idx], Y[real][train_idx])
                P[test_idx] = fold_stacker.transform(B[test_idx])
            stacker = LabelStacker(C=h["stack_C"], min_positives=h["stack_min"]).fit(B, Y[real])
        thresholds = tune_thresholds(Y[real], P, h["default_threshold"],
                                     shrink=h["threshold_shrink"])
        if h["exclusive_other"]:
            label = LABELS.index("other")
            keep = tune_exclusive_keep(Y[real], P, thresholds, label)
            pipeline.named_steps["classify"].set_params(exclusive_keep=keep)
            P = exclusive_rule(P, np.asarray(thresholds), label, keep)
        if h["gate"]:
            P = at_least_one(P, np.asarray(thresholds), B[:, len(LABELS)], h["at_least_one"])
        calibration = fit_confidence_calibration(Y[real], P, np.asarray(thresholds))
    _fit_features_and_classifier(pipeline, segmented, Y, weights)
    pipeline.named_steps["classify"].set_params(thresholds=thresholds,
                                                confidence_calibration=calibration,
                                                stacker=stacker)
    return pipeline


def _raw_confidence(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Product over labels of ``p`` (chosen) or ``1 - p`` (not chosen): right if independent."""
    return np.prod(np.where(probabilities >= thresholds, probabilities, 1.0 - probabilities),
                   axis=1)


def _logit(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 1e-6, 1.0 - 1e-6)
    return np.log(values / (1.0 - values))


def fit_confidence_calibration(Y: np.ndarray, P: np.ndarray, thresholds: np.ndarray
                               ) -> Optional[Tuple[float, float]]:
    """Platt scaling of the raw confidence to "the whole label set is right".

    Labels are not independent and the averaged, gated probabilities are not calibrated, so the
    raw product over-states confidence. A one-feature logistic regression on the logit of the
    raw confidence of out-of-fold predictions, against exact label-set match, maps it to a
    probability (monotonic: the ranking of complaints by confidence is unchanged).

    Returns:
        ``(slope, intercept)``, or ``None`` when every prediction was right or every one wrong.
    """
    correct = np.all((P >= thresholds).astype(int) == Y, axis=1).astype(int)
    if correct.min() == correct.max():
        return None
    feature = _logit(_raw_confidence(P, thresholds)).reshape(-1, 1)
    model = LogisticRegression(C=100.0).fit(feature, correct)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


# --------------------------------------------------------------------------- prediction
def decide(probabilities: np.ndarray, thresholds: np.ndarray, review_threshold: float,
           model_version: str, calibration: Optional[Tuple[float, float]] = None
           ) -> List[TypePrediction]:
    """Turns per-label probabilities into predictions.

    Labels are those at or over their threshold, ordered by probability (main concern first).
    Confidence is the probability that the whole label set is right: taking labels as
    independent, the product of ``p`` for chosen labels and ``1 - p`` for the others; with
    ``calibration`` (from :func:`fit_confidence_calibration`) that product is mapped to the
    observed rate of fully right predictions. ``needs_review`` is confidence below
    ``review_threshold``.
    """
    out = []
    if len(probabilities):
        raw = _raw_confidence(probabilities, thresholds)
        if calibration is not None:
            slope, intercept = calibration
            raw = 1.0 / (1.0 + np.exp(-(slope * _logit(raw) + intercept)))
    for row, confidence in zip(probabilities, raw if len(probabilities) else []):
        chosen = [i for i in np.argsort(-row, kind="stable") if row[i] >= thresholds[i]]
        confidence = float(confidence)
        labels = [LABELS[i] for i in chosen]
        out.append(TypePrediction(labels=labels, primary=labels[0] if labels else None,
                                  confidence=round(confidence, 4),
                                  needs_review=confidence < review_threshold,
                                  model_version=model_version))
    return out


class PollutionModel:
    """A fitted pipeline plus its registry version; what pipelines and the CLI call.

    Args:
        pipeline: from :func:`train_model`.
        version: registry version (``"unregistered"`` for a fresh model).
        review_threshold: predictions with lower confidence get ``needs_review=True``.
    """

    def __init__(self, pipeline: Pipeline, version: str = "unregistered",
                 review_threshold: float = DEFAULT_REVIEW_THRESHOLD):
        self.pipeline = pipeline
        self.version = version
        self.labels: Tuple[str, ...] = LABELS
        self.review_threshold = review_threshold

    @property
    def thresholds(self) -> np.ndarray:
        return self.pipeline.named_steps["classify"].thresholds_array()

    def predict_proba(self, docs: Sequence[Any]) -> np.ndarray:
        """Per-label probabilities, one row per complaint (columns in :data:`LABELS` order)."""
        if not len(docs):
            return np.zeros((0, len(self.labels)))
        return self.pipeline.predict_proba(segment_docs(docs))

    def predict(self, docs: Sequence[Any]) -> List[TypePrediction]:
        """Classifies a batch (batching amortises the matrix work).

        Args:
            docs: ``(title, text)`` pairs, or :class:`SegmentedDoc` from
                :func:`segment_for_model` (the pipeline's segmentation stage), or a mix.
        """
        classify = self.pipeline.named_steps["classify"]
        return decide(self.predict_proba(docs), self.thresholds, self.review_threshold,
                      self.version, getattr(classify, "confidence_calibration", None))


# --------------------------------------------------------------------------- evaluation
def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score_predictions(gold_records: Sequence[dict], predictions: Sequence[TypePrediction]
                      ) -> Dict[str, Any]:
    """The evaluation report for predictions aligned with gold records (see :func:`evaluate`)."""
    Y = label_matrix(gold_records)
    Yp = np.zeros_like(Y)
    for row, prediction in enumerate(predictions):
        for label in prediction.labels:
            Yp[row, LABELS.index(label)] = 1
    per_label = {}
    for i, label in enumerate(LABELS):
        tp = int(np.sum((Y[:, i] == 1) & (Yp[:, i] == 1)))
        fp = int(np.sum((Y[:, i] == 0) & (Yp[:, i] == 1)))
        fn = int(np.sum((Y[:, i] == 1) & (Yp[:, i] == 0)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        per_label[label] = {"precision": round(precision, 4), "recall": round(recall, 4),
                            "f1": round(_f1(precision, recall), 4), "support": int(Y[:, i].sum()),
                            "predicted": int(Yp[:, i].sum())}
    tp = int(np.sum((Y == 1) & (Yp == 1)))
    micro_p = tp / Yp.sum() if Yp.sum() else 0.0
    micro_r = tp / Y.sum() if Y.sum() else 0.0
    frequent = [l for l in LABELS if per_label[l]["support"] >= 10]
    env_gold = Y.sum(axis=1) > 0
    env_pred = Yp.sum(axis=1) > 0
    confusion: Dict[str, Dict[str, int]] = {}
    errors = []
    pairs: Counter = Counter()
    for record, prediction, gold_row, pred_row in zip(gold_records, predictions, Y, Yp):
        gold_labels = list(record.get("labels") or [])
        gold_primary = gold_labels[0] if gold_labels else "none"
        pred_primary = prediction.primary or "none"
        confusion.setdefault(gold_primary, Counter())[pred_primary] += 1
        missed = [LABELS[i] for i in np.flatnonzero((gold_row == 1) & (pred_row == 0))]
        extra = [LABELS[i] for i in np.flatnonzero((gold_row == 0) & (pred_row == 1))]
        for label in missed:
            for other in extra or ["-"]:
                pairs[(label, other)] += 1
        if not missed:
            for other in extra:
                pairs[("none" if not gold_labels else "-", other)] += 1
        wrong = int(np.sum(gold_row != pred_row))
        if wrong:
            errors.append({"id": record.get("id"), "gold": gold_labels,
                           "predicted": list(prediction.labels),
                           "confidence": prediction.confidence, "_wrong": wrong})
    # Worst first: most wrong labels, then the most confident mistakes.
    errors.sort(key=lambda e: (-e["_wrong"], -e["confidence"]))
    for error in errors:
        del error["_wrong"]
    return {
        "n": len(gold_records),
        "per_label": per_label,
        "micro_f1": round(_f1(micro_p, micro_r), 4),
        "micro_precision": round(micro_p, 4),
        "micro_recall": round(micro_r, 4),
        "macro_f1_frequent": round(float(np.mean([per_label[l]["f1"] for l in frequent])), 4)
        if frequent else 0.0,
        "frequent_labels": frequent,
        "macro_f1_all": round(float(np.mean([per_label[l]["f1"] for l in LABELS])), 4),
        "env_accuracy": round(float(np.mean(env_gold == env_pred)), 4) if len(Y) else 0.0,
        "needs_review_rate": round(float(np.mean([p.needs_review for p in predictions])), 4)
        if predictions else 0.0,
        "exact_match": round(float(np.mean(np.all(Y == Yp, axis=1))), 4) if len(Y) else 0.0,
        "mean_confidence": round(float(np.mean([p.confidence for p in predictions])), 4)
        if predictions else 0.0,
        "reliability": _reliability(Y, Yp, predictions),
        "confusion": {g: dict(c) for g, c in sorted(confusion.items())},
        # (gold label missed or "-"/"none", predicted label not in gold or "-"): counts.
        "error_pairs": [[g, p, n] for (g, p), n in pairs.most_common(15)],
        "worst_errors": errors[:20],
    }


def _reliability(Y: np.ndarray, Yp: np.ndarray, predictions: Sequence[TypePrediction]
                 ) -> List[Dict[str, Any]]:
    """Calibration table: per confidence bin, how many, mean confidence, share fully right."""
    if not len(predictions):
        return []
    confidence = np.array([p.confidence for p in predictions])
    right = np.all(Y == Yp, axis=1)
    table = []
    edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0001]
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence >= low) & (confidence < high)
        if inside.any():
            table.append({"bin": f"{low:.1f}-{min(high, 1.0):.1f}", "n": int(inside.sum()),
                          "mean_confidence": round(float(confidence[inside].mean()), 3),
                          "exact_match": round(float(right[inside].mean()), 3)})
    return table


def evaluate(model: PollutionModel, gold_records: Sequence[dict], batch_size: int = 64
             ) -> Dict[str, Any]:
    """Scores ``model`` on gold records.

    Returns per-label precision/recall/F1/support, micro F1, macro F1 over labels with at least 10
    gold rows and over all labels, environmental-or-not accuracy, a primary-label confusion table
    (``"none"`` = not environmental) and the 20 worst errors (ids and labels only, never text).
    """
    docs = _docs(gold_records)
    predictions: List[TypePrediction] = []
    for start in range(0, len(docs), batch_size):
        predictions.extend(model.predict(docs[start:start + batch_size]))
    report = score_predictions(gold_records, predictions)
    report["model_version"] = model.version
    return report


def cross_validate(records: List[dict], folds: int = 5, seed: int = 0,
                   extra_train: Optional[List[dict]] = None, **hyper: Any) -> Dict[str, Any]:
    """K-fold cross-validation on real rows; ``extra_train`` joins every training side only.

    The report pools the out-of-fold predictions of all folds (so every real row is scored once,
    by a model that never saw it) and adds each fold's micro and macro F1.
    """
    extra = [dict(r, synthetic=True) for r in (extra_train or [])]
    records = [dict(r, synthetic=False) for r in records]
    Y = label_matrix(records)
    predictions: List[Optional[TypePrediction]] = [None] * len(records)
    fold_scores = []
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    started = time.perf_counter()
    progress = tqdm(total=folds, desc="cross-validation", unit="fold", disable=None, leave=False, file=sys.stderr)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(records, _strata(Y))):
        pipeline = train_model([records[i] for i in train_idx] + extra, seed=seed, **hyper)
        model = PollutionModel(pipeline, version=f"cv-fold-{fold}")
        held_out = [records[i] for i in test_idx]
        fold_predictions = model.predict(_docs(held_out))
        for i, prediction in zip(test_idx, fold_predictions):
            predictions[i] = prediction
        fold_report = score_predictions(held_out, fold_predictions)
        fold_scores.append({"micro_f1": fold_report["micro_f1"],
                            "macro_f1_frequent": fold_report["macro_f1_frequent"],
                            "env_accuracy": fold_report["env_accuracy"]})
        LOGGER.info("cv fold %d: micro_f1=%.3f", fold, fold_report["micro_f1"])
        progress.update(1)
    progress.close()
    report = score_predictions(records, predictions)
    report["folds"] = fold_scores
    report["cv"] = {"folds": folds, "seed": seed, "extra_train_rows": len(extra),
                    "hyper": {**DEFAULT_HYPER, **hyper},
                    "seconds": round(time.perf_counter() - started, 1)}
    return report


def format_report(report: Dict[str, Any]) -> str:
    """A readable table of an evaluation or cross-validation report."""
    lines = []
    title = report.get("model_version") or (f"{report['cv']['folds']}-fold CV" if "cv" in report
                                             else "evaluation")
    lines.append(f"Pollution-type classifier: {title}  (n={report['n']})")
    lines.append(f"{'label':<12}{'prec':>7}{'rec':>7}{'f1':>7}{'support':>9}{'pred':>7}")
    for label, m in report["per_label"].items():
        lines.append(f"{label:<12}{m['precision']:>7.3f}{m['recall']:>7.3f}{m['f1']:>7.3f}"
                     f"{m['support']:>9d}{m['predicted']:>7d}")
    lines.append(f"micro F1 {report['micro_f1']:.3f}   macro F1 (support>=10: "
                 f"{','.join(report['frequent_labels'])}) {report['macro_f1_frequent']:.3f}   "
                 f"macro F1 (all) {report['macro_f1_all']:.3f}")
    lines.append(f"environmental/not accuracy {report['env_accuracy']:.3f}   "
                 f"needs_review rate {report['needs_review_rate']:.3f}")
    if "exact_match" in report:
        lines.append(f"exact label-set match {report['exact_match']:.3f}   mean confidence "
                     f"{report['mean_confidence']:.3f}   calibration: " + "  ".join(
                         f"[{b['bin']}: n={b['n']} conf {b['mean_confidence']:.2f} "
                         f"right {b['exact_match']:.2f}]" for b in report.get("reliability", [])))
    columns = ["none"] + list(LABELS)
    lines.append("confusion (rows gold primary, columns predicted primary):")
    lines.append(" " * 12 + "".join(f"{c[:6]:>7}" for c in columns))
    for gold in columns:
        row = report["confusion"].get(gold)
        if row:
            lines.append(f"{gold:<12}" + "".join(f"{row.get(c, 0):>7d}" for c in columns))
    if report.get("folds"):
        lines.append("folds: " + "  ".join(
            f"[micro {f['micro_f1']:.3f} macro {f['macro_f1_frequent']:.3f}]"
            for f in report["folds"]))
    if report.get("error_pairs"):
        lines.append("most common errors (gold missed -> predicted extra; '-' none, 'none' not "
                     "environmental): " + ", ".join(f"{g}->{p} {n}" for g, p, n in
                                                    report["error_pairs"][:10]))
    if report["worst_errors"]:
        lines.append("worst errors (id: gold -> predicted @confidence):")
        for e in report["worst_errors"]:
            lines.append(f"  {e['id']}: {e['gold']} -> {e['predicted']} @{e['confidence']:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- data files
def read_jsonl(path: str) -> List[dict]:
    """Reads labelled rows (JSON Lines); each needs ``text`` and ``labels``."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "text" not in row or "labels" not in row:
                raise ValueError(f"{path}:{number}: a row needs 'text' and 'labels'")
            rows.append(row)
    return rows


def training_files() -> List[str]:
    """The project's own training sentences shipped in ``models/training/``."""
    return sorted(glob.glob(os.path.join(TRAINING_DIR, "*.jsonl")))


def load_project_training() -> List[dict]:
    """All generated/hand-written project rows, marked synthetic."""
    rows = []
    for path in training_files():
        rows.extend(dict(r, synthetic=True) for r in read_jsonl(path))
    return rows


def shared_data_dir() -> Optional[str]:
    """The shared labelled-data folder (``$ENVLEADS_SHARED_DATA`` or ``<repo>/../shared/data``)."""
    configured = os.environ.get("ENVLEADS_SHARED_DATA")
    if configured:
        return configured if os.path.isdir(configured) else None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(os.path.dirname(repo), "shared", "data")
    return candidate if os.path.isdir(candidate) else None


# --------------------------------------------------------------------------- CLI
def _write_json(path: Optional[str], report: Dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)


def _labelled_files(paths: Sequence[str]) -> List[dict]:
    # id + labels rows (envleads labels import) are joined with the shared texts
    from envleads.models import protocol

    return [dict(r, synthetic=False) for path in paths
            for r in protocol.read_labelled(path, shared_data_dir())]


def _run_train(args: argparse.Namespace) -> int:
    from envleads.models import protocol, registry, registry_cli

    records = _labelled_files(args.extra)
    if args.include_shared:
        development, _ = protocol.real_parts(shared_data_dir())
        records.extend(dict(r, synthetic=False) for r in development)
    records.extend(load_project_training())
    version = registry.train_and_register(records, registry_dir=args.out,
                                          command=" ".join(["envleads"] + sys.argv[1:]),
                                          cv_folds=args.cv, data_files=registry.training_files_for(
                                              args.extra, args.include_shared))
    metadata = registry.read_metadata(version, args.out)
    print(f"registered pollution_type/{version}")
    print(registry_cli.after_train(version, args.out))
    if metadata.get("metrics"):
        print(format_report(metadata["metrics"]))
    _write_json(args.json_out, {"version": version, **metadata})
    return 0


def _gold_rows(args: argparse.Namespace) -> List[dict]:
    """The rows ``envleads evaluate`` scores: a part of the real labels or the ``--gold`` files."""
    from envleads.models import protocol

    if not args.part:
        return _labelled_files(args.gold)
    shared = shared_data_dir()
    if not shared:
        raise SystemExit("--part needs the shared data folder (../shared/data or $ENVLEADS_SHARED_DATA)")
    development, locked = protocol.real_parts(shared)
    return development if args.part == protocol.DEVELOPMENT else locked


def _run_evaluate(args: argparse.Namespace) -> int:
    from envleads.models import evaluation, protocol
    from envleads.models.registry_cli import training_rows_warning

    if bool(args.part) == bool(args.gold):
        raise SystemExit("give --part or --gold (one of them)")
    if args.cv and args.part == protocol.LOCKED:
        raise SystemExit("the locked part is only scored, never cross-validated on: use --part development")
    gold = _gold_rows(args)
    warning = None if args.cv else training_rows_warning(args.model, args.registry, gold)
    if args.cv:
        report = cross_validate(gold, folds=args.cv, seed=args.seed,
                                extra_train=load_project_training() + _labelled_files(args.extra))
    else:
        beam_args = ["--model_version", args.model]
        if args.registry:
            beam_args += ["--model_registry", args.registry]
        report = evaluation.evaluate_through_batch(gold, beam_args=beam_args)
    print(format_report(report))
    if warning:  # printed before and after the table: a long report must not scroll it away
        print(warning, file=sys.stderr)
    _write_json(args.json_out, report)
    return 0


def add_subcommand(subparsers) -> None:
    """Registers ``envleads train`` and ``envleads evaluate``."""
    train = subparsers.add_parser("train", help="train the pollution-type classifier and register it")
    train.add_argument("--extra", "--data", nargs="*", default=[], metavar="FILE", dest="extra",
                       help="labelled JSON Lines files (title, text, labels; or id + labels, joined "
                            "with the shared texts) to train on besides the project's rows and "
                            "the development part of the shared labels")
    train.add_argument("--out", default=None, metavar="REGISTRY_DIR",
                       help="model registry folder (default: $ENVLEADS_REGISTRY or models/registry)")
    train.add_argument("--include-shared", action=argparse.BooleanOptionalAction, default=True,
                       help="also train on the development part of the shared real labels when present "
                            "(the locked part is never trained on)")
    train.add_argument("--cv", type=int, default=0, metavar="K",
                       help="also run K-fold CV on the real rows and store it as the metrics")
    train.add_argument("--json-out", default=None, metavar="PATH", help="write metadata as JSON")
    train.set_defaults(func=_run_train)

    evaluate_parser = subparsers.add_parser(
        "evaluate", help="score a model through envleads batch on labelled data, or cross-validate")
    evaluate_parser.add_argument("--model", default="production",
                                 help="VERSION, 'production' or 'latest'")
    evaluate_parser.add_argument("--registry", default=None, metavar="REGISTRY_DIR",
                                 help="model registry folder")
    evaluate_parser.add_argument("--part", choices=("development", "locked"), default=None,
                                 help="a part of the shared real labels (models/protocol.py): "
                                      "'locked' is the reported result, 'development' is for choices")
    evaluate_parser.add_argument("--gold", nargs="*", default=[], metavar="FILE",
                                 help="gold JSON Lines files (id, title, text, labels; or id + labels)")
    evaluate_parser.add_argument("--cv", type=int, default=0, metavar="K",
                                 help="run K-fold cross-validation on the gold rows instead")
    evaluate_parser.add_argument("--extra", nargs="*", default=[], metavar="FILE",
                                 help="with --cv: labelled files added to every training side only")
    evaluate_parser.add_argument("--seed", type=int, default=0, help="CV fold seed")
    evaluate_parser.add_argument("--json-out", default=None, metavar="PATH",
                                 help="write the report as JSON")
    evaluate_parser.set_defaults(func=_run_evaluate)
