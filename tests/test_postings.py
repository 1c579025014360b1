"""ShinglePostings against a plain dict of sets, over random sequences of changes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envleads.postings import ShinglePostings

HASHES = st.lists(st.integers(min_value=0, max_value=40), max_size=12, unique=True)
# (matter, hashes it holds from now on); an empty set drops the matter and frees its slot
CHANGES = st.lists(st.tuples(st.integers(min_value=0, max_value=6), HASHES), max_size=60)


def _apply(postings: ShinglePostings, model: dict, matter: str, new: set) -> None:
    old = model.get(matter, set())
    postings.remove(matter, np.array(sorted(old - new), dtype=np.uint32))
    postings.add(matter, np.array(sorted(new - old), dtype=np.uint32))
    if new:
        model[matter] = new
    else:
        model.pop(matter, None)
        postings.release(matter)


def _check(postings: ShinglePostings, model: dict) -> None:
    queries = np.arange(0, 45, dtype=np.uint32)
    expected_df = [sum(h in held for held in model.values()) for h in queries.tolist()]
    lookup = postings.lookup(queries)
    df = lookup.df
    assert df.tolist() == expected_df
    assert postings.document_frequency(queries).tolist() == expected_df
    assert len(postings) == sum(len(held) for held in model.values())
    weights = np.linspace(0.5, 2.0, queries.size)
    cap = 2
    clusters, shared, skipped = postings.shared_weight(lookup, weights, cap)
    expected = {}
    for h, w in zip(queries.tolist(), weights.tolist()):
        holders = [m for m, held in model.items() if h in held]
        if len(holders) <= cap:
            for m in holders:
                expected[m] = expected.get(m, 0.0) + w
    assert dict(zip(clusters, shared.tolist())) == expected  # exact: same order of additions
    common = [w for h, w in zip(queries.tolist(), weights.tolist()) if expected_df[h] > cap]
    assert skipped == sum(common)
    floor = skipped + 2.0  # a matter is named when its shared weight plus the skipped reaches it
    clusters, shared, _ = postings.shared_weight(lookup, weights, cap, floor)
    assert dict(zip(clusters, shared.tolist())) == {m: w for m, w in expected.items() if w >= floor - skipped}


@settings(max_examples=300, deadline=None)
@given(CHANGES, st.sampled_from([1, 4, 8192]))
def test_postings_match_a_dict_of_sets(changes, merge_at):
    postings, model = ShinglePostings(merge_at=merge_at), {}
    for matter, hashes in changes:
        _apply(postings, model, f"m{matter}", set(hashes))
        _check(postings, model)


def test_freed_slot_reused_without_inheriting_postings():
    postings, model = ShinglePostings(merge_at=1), {}
    _apply(postings, model, "a", {1, 2, 3})
    postings._merge()
    _apply(postings, model, "a", set())  # removals pending against the merged base
    _apply(postings, model, "b", {2, 5})  # reuses a's slot
    _check(postings, model)
    assert postings.document_frequency(np.array([1, 2, 3, 5], dtype=np.uint32)).tolist() == [0, 1, 0, 1]


def test_memory_is_eight_bytes_per_posting_after_a_merge():
    postings = ShinglePostings(merge_at=10)
    for i in range(100):
        postings.add(f"m{i}", np.arange(i, i + 50, dtype=np.uint32))
    postings._merge()
    assert len(postings) == 5000
    assert postings.nbytes() == 8 * 5000


def test_a_lookup_is_refused_after_the_postings_changed():
    """Its ranges point into arrays a change replaces: a stale one would name wrong matters."""
    postings = ShinglePostings()
    postings.add("a", np.array([1, 2], dtype=np.uint32))
    lookup = postings.lookup(np.array([1, 2], dtype=np.uint32))
    postings.add("b", np.array([2], dtype=np.uint32))
    with pytest.raises(ValueError, match="changed"):
        postings.shared_weight(lookup, np.ones(2), cap=5)
