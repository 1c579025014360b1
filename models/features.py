"""Features of the pollution-type classifier: segmentation, character n-grams, clause cues and
clause evidence.

Every transformer here is a scikit-learn estimator defined at module level, so a fitted model
pickles and ``joblib.load`` on a worker can import it; the segmenter itself is never pickled but
built lazily once per process (:func:`envleads.text.shared_tokenizer`).
"""
from __future__ import annotations

import math
import re
from bisect import bisect_right
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from envleads.config import ConfigError, data_path, load_json_config
from envleads.records import POLLUTION_LABELS
from envleads.text import SegmentedDoc, normalise, segment_for_model, shared_tokenizer

LABELS: Tuple[str, ...] = tuple(POLLUTION_LABELS)
TYPE_TERMS_FILE = "type_terms.json"


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
        self.__dict__.pop("_index_cache", None)  # a refit has another vocabulary
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
        # Each row scaled in place: the product with a diagonal matrix gave the same values with
        # the column indices out of order, and sorting them again cost more than the scaling.
        counts.data *= np.repeat(1.0 / norms, np.diff(counts.indptr))
        return counts

    def weighted_counts(self, rows: np.ndarray, keys: np.ndarray, n_rows: int
                        ) -> Tuple[sp.csr_matrix, np.ndarray]:
        """Sublinear TF-IDF of the n-gram ``keys`` counted into ``rows``, not yet normalised, and
        each row's L2 norm (0 for a row with no known n-gram)."""
        vocabulary = self.vocabulary_
        counts = sp.csr_matrix((n_rows, vocabulary.size))
        if vocabulary.size and keys.size:
            position = self._index().get_indexer(keys)  # one hash lookup for the batch, -1: absent
            hit = position >= 0
            counts = sp.csr_matrix((np.ones(int(hit.sum())), (rows[hit], position[hit])),
                                   shape=(n_rows, vocabulary.size))
            counts.sum_duplicates()
            counts.data = (1.0 + np.log(counts.data)) * self.idf_[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        return counts, norms

    def _index(self) -> pd.Index:
        """The vocabulary as a pandas index: its hash table finds a batch's keys without sorting
        them (sorting for ``searchsorted`` was a sixth of classification time), built once per
        loaded model."""
        index = getattr(self, "_index_cache", None)
        if index is None:
            index = self._index_cache = pd.Index(self.vocabulary_)
        return index

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: Python 3.11 hands out __dict__ itself
        state.pop("_index_cache", None)  # rebuilt from the vocabulary after loading
        return state

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
            masked = self.masked_pattern_
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
        for train_idx, test_idx in folds.split(np.zeros(len(X)), fold_strata(Y)):
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




# --------------------------------------------------------------------------- folds
def fold_strata(Y: np.ndarray) -> np.ndarray:
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

