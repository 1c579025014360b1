"""Pollution-type classifier, its evaluation and the model registry.

Sentences here are written for these tests (they are not in models/training/). The fixture model is
trained on the project's own rows only, so these tests run without the shared data.
"""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envleads.models import evaluation, features, pollution, registry
from envleads.records import POLLUTION_LABELS, TypePrediction

SHARED = Path(os.environ.get("ENVLEADS_SHARED_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="module")
def project_rows():
    return pollution.load_project_training()


@pytest.fixture(scope="module")
def model(project_rows):
    estimator = pollution.train_model(project_rows, threshold_folds=0)
    return pollution.PollutionModel(estimator, version="test")


def test_restaurant_fumes_and_noise_get_air_and_noise(model):
    [prediction] = model.predict([(
        "楼下餐馆扰民",
        "小区一楼开了家川菜馆，排油烟管道正对着住户窗户，做饭时满屋油烟味，"
        "后厨的鼓风机一直响到半夜，吵得没法睡觉。")])
    assert set(prediction.labels) == {"air", "noise"}
    assert prediction.primary in {"air", "noise"}
    assert prediction.model_version == "test"


def test_parking_question_is_not_environmental(model):
    [prediction] = model.predict([("", "请问我们小区地下车库的月租车位怎么申请？物业说要排队。")])
    assert prediction.labels == []
    assert prediction.primary is None


@pytest.mark.parametrize("title, text, expected", [
    ("", "河对岸那家皮革厂晚上把污水偷偷排进河里，河水又黑又臭。", "water"),
    ("", "有人开着货车把拆房子的砖头和建筑垃圾倒在了村口的空地上。", "solid_waste"),
    ("", "小区中间要建一个变电站，离住户太近，担心辐射对孩子不好。", "radiation"),
    ("", "有人在水库上游的山上大面积砍树，山坡都光秃秃了。", "ecological"),
])
def test_clear_single_medium_complaints(model, title, text, expected):
    [prediction] = model.predict([(title, text)])
    assert prediction.primary == expected


def test_batch_prediction_keeps_order_and_handles_empty(model):
    docs = [("", "请问社保卡丢了怎么补办？"), ("", "工地夜里施工，打桩机的噪音太吵了。")]
    predictions = model.predict(docs)
    assert [p.primary for p in predictions] == [None, "noise"]
    assert model.predict([]) == []


def test_decide_thresholds_order_confidence_and_review():
    probabilities = np.array([[0.9, 0.1, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0],
                              [0.3, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]])
    thresholds = np.full(8, 0.5)
    first, second = pollution.decide(probabilities, thresholds, review_threshold=0.45,
                                     model_version="v")
    assert first.labels == ["air", "noise"] and first.primary == "air"
    assert first.confidence == pytest.approx(0.9 * 0.9 * 0.6)
    assert first.needs_review is False
    assert second.labels == [] and second.primary is None
    assert second.confidence == pytest.approx(0.7 * 0.8 * 0.9)
    assert second.needs_review is False
    [low] = pollution.decide(np.array([[0.55, 0.45, 0, 0, 0, 0, 0, 0]]), thresholds, 0.45, "v")
    assert low.labels == ["air"] and low.needs_review is True


def test_tune_thresholds_separates_and_keeps_default_for_rare_labels():
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.25, 0.2, 0.15, 0.1])
    rare = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    thresholds = pollution.tune_thresholds(np.c_[y, rare], np.c_[p, p], default=0.42)
    assert 0.3 < thresholds[0] <= 0.55
    assert thresholds[1] == 0.42


def test_tune_thresholds_shrinks_rare_labels_toward_the_common_threshold():
    rng = np.random.default_rng(0)
    frequent = (rng.random(400) < 0.4).astype(int)
    p_frequent = np.clip(0.5 * frequent + 0.45 * rng.random(400), 0, 1)
    rare = np.zeros(400, dtype=int)
    rare[:6] = 1
    # Six positives, negatives up to 0.7: the rare label's own F1 optimum sits far up.
    p_rare = np.where(rare == 1, 0.78, 0.7 * rng.random(400))
    Y, P = np.c_[frequent, rare], np.c_[p_frequent, p_rare]
    own = pollution.tune_thresholds(Y, P, default=0.4)
    shrunk = pollution.tune_thresholds(Y, P, default=0.4, shrink=20.0)
    assert pollution.tune_thresholds(Y, P, default=0.4, shrink=0.0) == own
    # Both move toward one common threshold, each by shrink / (positives + shrink) of the way:
    # the rare label most of the way, the frequent one barely.
    counts = Y.sum(axis=0)
    common = [o + (t - o) * (n + 20.0) / 20.0 for o, t, n in zip(own, shrunk, counts)]
    assert common[0] == pytest.approx(common[1]) and 0.1 <= common[0] <= 0.8
    assert 0 < abs(shrunk[0] - own[0]) < 0.5 * abs(shrunk[1] - own[1])


def test_at_least_one_gives_the_closest_label_to_an_environmental_complaint():
    thresholds = np.array([0.4, 0.6])
    P = np.array([[0.30, 0.50],   # gate sure, nothing passes: label 1 (0.83 of its threshold)
                  [0.30, 0.50],   # gate says not environmental: unchanged
                  [0.10, 0.15],   # gate sure, but every label far under: unchanged
                  [0.50, 0.10]])  # a label passes already: unchanged
    gate = np.array([0.9, 0.2, 0.9, 0.9])
    out = pollution.at_least_one(P, thresholds, gate, 0.5)
    assert list((out >= thresholds).any(axis=1)) == [True, False, False, True]
    assert out[0, 1] == thresholds[1] and out[0, 0] == P[0, 0]
    assert np.array_equal(out[1:], P[1:])
    assert np.array_equal(pollution.at_least_one(P, thresholds, gate, None), P)  # None: off


def test_exclusive_rule_drops_other_beside_a_medium_unless_sure():
    thresholds = np.array([0.5, 0.4])  # columns: a medium, "other"
    P = np.array([[0.9, 0.8],    # medium and other, other unsure: other dropped
                  [0.9, 0.97],   # medium and a sure other: kept
                  [0.2, 0.8],    # no medium: other kept
                  [0.9, 0.3]])   # other under its threshold anyway
    out = pollution.exclusive_rule(P, thresholds, label=1, keep=0.95)
    assert list(out[:, 1] >= thresholds[1]) == [False, True, True, False]
    assert np.array_equal(out[:, 0], P[:, 0])
    assert np.array_equal(pollution.exclusive_rule(P, thresholds, 1, 1.01), P)  # 1.01: off
    Y = np.array([[1, 0], [1, 1], [0, 1], [1, 0]])
    assert pollution.tune_exclusive_keep(Y, P, thresholds, 1) < 1.0


def test_score_predictions_by_hand():
    gold = [{"id": "a", "labels": ["air", "noise"]}, {"id": "b", "labels": []},
            {"id": "c", "labels": ["water"]}]
    predicted = [TypePrediction(["air"], "air", 0.9, False, "v"),
                 TypePrediction(["water"], "water", 0.8, False, "v"),
                 TypePrediction(["water"], "water", 0.7, False, "v")]
    report = pollution.score_predictions(gold, predicted)
    assert report["per_label"]["air"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                          "support": 1, "predicted": 1}
    assert report["per_label"]["water"]["precision"] == 0.5
    assert report["per_label"]["noise"]["recall"] == 0.0
    # tp=2, predicted=3, gold=3 -> micro F1 = 2/3
    assert report["micro_f1"] == pytest.approx(0.6667, abs=1e-4)
    assert report["env_accuracy"] == pytest.approx(0.6667, abs=1e-4)
    assert report["confusion"]["none"] == {"water": 1}
    # one wrong label each; the more confident mistake comes first
    assert [e["id"] for e in report["worst_errors"]] == ["a", "b"]
    assert "text" not in report["worst_errors"][0]
    assert sorted(map(tuple, report["error_pairs"])) == [("noise", "-", 1), ("none", "water", 1)]
    assert "micro F1" in pollution.format_report(report)


def test_cross_validation_keeps_every_out_of_fold_prediction(project_rows):
    hand = [r for r in project_rows if not r["id"].startswith("gen")][::4]
    generated = [r for r in project_rows if r["id"].startswith("gen")][::10]
    report = pollution.cross_validate(hand, folds=2, seed=0, extra_train=generated,
                                      progress=False, threshold_folds=0)
    rows = report["predictions"]
    assert [p["id"] for p in rows] == [r["id"] for r in hand]  # every scored row once, in order
    assert [p["gold"] for p in rows] == [r["labels"] for r in hand]
    assert sorted({p["fold"] for p in rows}) == [0, 1]
    assert all("text" not in p and set(p["probabilities"]) == set(POLLUTION_LABELS) for p in rows)
    for p in rows:  # the labels are those at or over the row's fold thresholds
        thresholds = report["folds"][p["fold"]]["thresholds"]
        over = {label for label, prob in p["probabilities"].items()
                if prob >= thresholds[label] - 1e-4}
        assert set(p["predicted"]) == over
        assert p["needs_review"] == (p["confidence"] < pollution.DEFAULT_REVIEW_THRESHOLD)
    # the kept predictions are the ones the report scored
    again = pollution.score_predictions(hand, evaluation.type_predictions(rows))
    assert again["micro_f1"] == report["micro_f1"]
    assert again["per_label"] == report["per_label"]
    Y, Yp, P = evaluation.prediction_arrays(rows)
    assert np.array_equal(Y, pollution.label_matrix(hand)) and P.shape == Y.shape == Yp.shape


def test_scores_by_slice_scores_each_slice_alone():
    gold = [{"id": "a", "labels": ["air"], "origin": "x"}, {"id": "b", "labels": [], "origin": "y"},
            {"id": "c", "labels": ["water"], "origin": "x"}]
    predicted = [TypePrediction(["air"], "air", 0.9, False, "v"),
                 TypePrediction(["water"], "water", 0.8, False, "v"),
                 TypePrediction([], None, 0.7, True, "v")]
    parts = evaluation.scores_by_slice(gold, predicted, lambda r: r["origin"])
    assert list(parts) == ["x", "y"]
    assert parts["x"]["n"] == 2 and parts["x"]["micro_f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert parts["y"]["env_accuracy"] == 0.0 and parts["y"]["needs_review_rate"] == 0.0


def test_unknown_label_is_refused():
    with pytest.raises(ValueError):
        pollution.label_matrix([{"id": "x", "labels": ["light"]}])


def test_training_rows_cover_every_label(project_rows):
    seen = {label for row in project_rows for label in row["labels"]}
    assert seen == set(POLLUTION_LABELS)
    assert sum(1 for row in project_rows if not row["labels"]) >= 100


def test_registry_round_trip(tmp_path, model, project_rows):
    version = registry.register(model.estimator, {
        "training_fingerprint": registry.training_fingerprint(project_rows[:3]),
        "metrics": None}, registry_dir=str(tmp_path))
    assert version.startswith("pt-") and len(version.split("-")[-1]) == 6
    folder = tmp_path / "pollution_type" / version
    assert {p.name for p in folder.iterdir()} == {"model.joblib", "metadata.json", "MODEL_CARD.md"}
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["labels"] == list(POLLUTION_LABELS)
    assert metadata["sklearn_version"]
    loaded = registry.load_model("latest", registry_dir=str(tmp_path))
    assert loaded.version == version
    docs = [("", "化工厂的烟囱天天冒黑烟，气味刺鼻。")]
    assert loaded.predict(docs)[0].labels == model.predict(docs)[0].labels


def test_training_fingerprint_depends_on_rows():
    a = [{"text": "甲", "labels": []}]
    b = [{"text": "甲", "labels": ["air"]}]
    assert registry.training_fingerprint(a) != registry.training_fingerprint(b)
    assert registry.training_fingerprint(a) == registry.training_fingerprint([dict(a[0], x=1)])


@pytest.mark.parametrize("key, value", [("sklearn_version", "0.0.1"),
                                        ("labels", ["air", "water"]),
                                        ("hyper", {"stack": True}),
                                        ("hyper", {"model": "svc", "C": 8.0})])
def test_registry_refuses_mismatch(tmp_path, model, key, value):
    version = registry.register(model.estimator, {"training_fingerprint": "ab" * 32},
                                registry_dir=str(tmp_path))
    path = tmp_path / "pollution_type" / version / "metadata.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata[key] = value
    path.write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(registry.ModelMismatchError):
        registry.load_model(version, registry_dir=str(tmp_path))


def test_empty_registry_has_no_latest(tmp_path):
    with pytest.raises(registry.ModelNotFoundError):
        registry.load_model("latest", registry_dir=str(tmp_path))


def test_default_registry_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ENVLEADS_REGISTRY", str(tmp_path))
    assert registry.default_registry_dir() == str(tmp_path)


@pytest.mark.skipif(not (SHARED / "pollution_dev.jsonl").exists(), reason="shared data absent")
def test_shared_data_rows_have_known_labels():
    rows = pollution.read_jsonl(str(SHARED / "pollution_dev.jsonl"))
    assert len(rows) > 100
    matrix = pollution.label_matrix(rows)
    assert matrix.shape == (len(rows), len(POLLUTION_LABELS))


# ------------------------------------------------------------------ pre-segmented input
def test_predict_accepts_segmented_docs(model):
    from envleads.text import build_tokenizer

    pair = ("噪音扰民", "楼下的KTV每天放音乐到凌晨两点，吵得孩子睡不着。")
    segmented = pollution.segment_for_model(build_tokenizer(), *pair)
    assert isinstance(segmented, pollution.SegmentedDoc)
    from_pairs = model.predict([pair, ("", "请问社保卡怎么办理？")])
    mixed = model.predict([segmented, ("", "请问社保卡怎么办理？")])
    assert [p.labels for p in mixed] == [p.labels for p in from_pairs]
    assert mixed[0].primary == "noise" and mixed[1].labels == []
    np.testing.assert_allclose(model.predict_proba([segmented]), model.predict_proba([pair]))


# ------------------------------------------------------------------ features
def _doc(title, text):
    return pollution.SegmentedDoc(title, text, [], [])


def test_char_ngrams_by_hand():
    vectoriser = pollution.CharNgramTfidf(ngram_range=(1, 2), min_df=1, max_features=None)
    X = vectoriser.fit_transform([_doc("", "水污"), _doc("", "水")]).toarray()
    names = list(vectoriser.get_feature_names_out())
    assert sorted(names) == ["char_水", "char_水污", "char_污"]
    # doc 1: 水 (idf 1), 污 and 水污 (idf ln(3/2)+1 each), tf 1; l2-normalised.
    rare = np.log(1.5) + 1.0
    norm = np.sqrt(1.0 + 2 * rare ** 2)
    assert X[0, names.index("char_水")] == pytest.approx(1.0 / norm)
    assert X[0, names.index("char_水污")] == pytest.approx(rare / norm)
    assert X[1].tolist() == [1.0 if n == "char_水" else 0.0 for n in names]


def test_char_ngrams_match_sklearn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [_doc("投诉", "工厂废水直排河道，河水发黑发臭。"), _doc("", "夜间施工噪音大，吵得睡不着。"),
            _doc("噪音", "广场舞音响太吵，噪音扰民。"), _doc("", "河道里有人偷排废水。")]
    ours = pollution.CharNgramTfidf(min_df=2, max_features=None).fit(docs[:3])
    reference = TfidfVectorizer(analyzer="char", preprocessor=features.full_text,
                                lowercase=False, ngram_range=(1, 3), sublinear_tf=True,
                                min_df=2).fit(docs[:3])
    columns = [reference.vocabulary_[name[len("char_"):]] for name in ours.get_feature_names_out()]
    assert len(columns) == len(reference.vocabulary_)
    np.testing.assert_allclose(ours.transform(docs).toarray(),
                               reference.transform(docs).toarray()[:, columns])


def test_the_ngram_lookup_finds_vocabulary_keys_as_searchsorted_does():
    # The vocabulary's hash lookup against the sorted-vocabulary search it replaced: 0, keys
    # beside vocabulary keys, and absent large keys.
    rng = np.random.default_rng(0)
    vocabulary = np.unique(np.concatenate([rng.integers(0, 2 ** 63, 3000, dtype=np.uint64),
                                           np.arange(0, 400, dtype=np.uint64) * 7]))
    ngrams = features.CharNgramTfidf()
    ngrams.vocabulary_ = vocabulary
    keys = np.concatenate([vocabulary, vocabulary + np.uint64(1), rng.integers(
        0, 2 ** 63, 5000, dtype=np.uint64)])
    rng.shuffle(keys)
    position = np.minimum(np.searchsorted(vocabulary, keys), vocabulary.size - 1)
    expected = np.where(vocabulary[position] == keys, position, -1)
    np.testing.assert_array_equal(ngrams._index().get_indexer(keys), expected)


def test_label_views_product_is_each_models_predict_proba():
    # base_proba applies the stacked coefficients; the reference is each model's own predict_proba
    # (a label without positives is a constant model), gated by a geometric mean.
    import pickle

    import scipy.sparse as sp

    from envleads.models.estimator import LabelViews, _base_estimator

    rng = np.random.default_rng(1)
    X = sp.random(60, 40, density=0.2, format="csr", random_state=2)
    Y = np.zeros((60, 3), dtype=int)
    Y[:, 0] = rng.integers(0, 2, 60)
    Y[:20, 1] = 1
    views = LabelViews(_base_estimator(1.0, 0), gate=True).fit(X, Y)
    assert isinstance(views.estimators_[2], float)
    gate = views.gate_.predict_proba(X)[:, 1]
    labels = [m.predict_proba(X)[:, 1] for m in views.estimators_[:2]] + [np.zeros(60)]
    expected = np.column_stack([np.sqrt(np.column_stack(labels) * gate[:, None]), gate])
    np.testing.assert_allclose(views.base_proba(X), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(views)).base_proba(X), expected,
                               rtol=0, atol=1e-12)
    assert "_stacked_cache" not in pickle.loads(pickle.dumps(views)).__dict__


def test_feature_blocks_stack_as_feature_union_stacks_them(model):
    # The estimator stacks its feature blocks itself; FeatureUnion.transform is the reference,
    # entry for entry and in the same order (the products downstream add in that order).
    from envleads.models.estimator import _transform

    docs = [features.segment_doc(("噪音", "夜间施工噪音大。河道里有人偷排废水，发黑发臭！")),
            features.segment_doc(("", "小区停车位被占用")), features.segment_doc(("", ""))]
    ours, reference = _transform(model.estimator.features_, docs), \
        model.estimator.features_.transform(docs)
    for part in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(ours, part), getattr(reference, part))


def test_char_ngrams_keep_the_most_frequent():
    vectoriser = pollution.CharNgramTfidf(ngram_range=(1, 1), min_df=1, max_features=1)
    vectoriser.fit([_doc("", "臭臭水"), _doc("", "臭")])
    assert list(vectoriser.get_feature_names_out()) == ["char_臭"]


def test_clause_cues_by_hand():
    cues = pollution.ClauseCueFeatures().fit([])
    names = list(cues.get_feature_names_out())
    [row] = cues.transform([_doc("工地扰民", "工地天天夜里施工。噪音很大，严重影响休息。请处理。")])
    value = dict(zip(names, row))
    assert value["cue_noise_strong_title"] == 1.0          # 扰民 in the title
    assert value["cue_noise_strong_clauses"] == pytest.approx(np.log1p(1))  # clause 2: 噪音
    assert value["cue_noise_strong_share"] == pytest.approx(1 / 3)
    assert value["cue_noise_strong_first"] == 1.0           # within the first two clauses
    assert value["cue_noise_strong_harm"] == pytest.approx(np.log1p(1))     # 严重/影响
    # Clause 1 counts too with weak cues: 施工.
    assert value["cue_noise_any_clauses"] == pytest.approx(np.log1p(2))
    assert value["cue_water_strong_clauses"] == 0.0
    assert value["clauses"] == pytest.approx(np.log1p(3))


def test_clause_cues_survive_pickling():
    import pickle

    cues = pollution.ClauseCueFeatures().fit([])
    docs = [_doc("", "河里的污水又黑又臭。")]
    before = cues.transform(docs)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cues)).transform(docs), before)


_CUE_CHARS = "ab.|\\污染水"  # overlapping terms, and characters that regex escaping must keep


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text(_CUE_CHARS, min_size=1, max_size=4), min_size=1, max_size=6),
                min_size=1, max_size=3),
       st.text(_CUE_CHARS + "。 ", max_size=30))
def test_cue_scan_matches_what_each_alternation_matches(term_lists, text):
    patterns = [features._alternation(terms) for terms in term_lists]
    scan = features._CueScan(patterns)
    occurrences, present = scan.find(text)
    for index, pattern in enumerate(patterns):
        expected = [(match.start(), match.group()) for match in re.finditer(pattern, text)]
        assert scan.replay(occurrences, 1 << index) == expected
        assert bool(present >> index & 1) == bool(expected)


def test_cue_scan_refuses_a_pattern_that_is_not_literal_terms():
    for pattern in ("", "a|b+", "(a)"):
        with pytest.raises(ValueError, match="literal"):
            features._CueScan([pattern])


def _clause_evidence():
    water = ["河水发黑发臭。", "工厂偷排废水进河里。", "污水直排河道。", "河里漂着死鱼，水很臭。"]
    air = ["饭店油烟呛人。", "烟囱冒黑烟。", "工厂废气刺鼻。", "油烟熏黑了窗户。"]
    docs = [_doc("", text) for text in water + air]
    Y = np.array([[1, 0]] * len(water) + [[0, 1]] * len(air))
    return pollution.ClauseEvidence(folds=2, weight=1.0).fit(docs, Y)


def test_clause_evidence_is_the_strongest_clause():
    evidence = _clause_evidence()
    alone = evidence.transform([_doc("", "污水直排河道")])
    # Five air sentences and one water sentence: the water evidence is that sentence's own.
    letter = _doc("", "饭店油烟呛人。烟囱冒黑烟！油烟熏黑了窗户。污水直排河道；废气刺鼻。油烟很大。")
    [row] = evidence.transform([letter])
    assert row[0] == pytest.approx(alone[0, 0])
    assert row[0] > 0.5 and row[1] > 0.5


def test_clause_evidence_is_the_same_in_any_batch():
    import pickle

    evidence = _clause_evidence()
    docs = [_doc("投诉油烟", "饭店油烟呛人。河水发臭。"), _doc("", ""), _doc("河水发黑", ""),
            _doc("", "。；。"), _doc("", "污水直排河道")]
    batch = evidence.transform(docs)
    assert batch.shape == (5, 2) and np.all((batch >= 0) & (batch <= 1))
    for doc, row in zip(docs, batch):
        np.testing.assert_allclose(evidence.transform([doc])[0], row)
    # No known n-gram (empty, or separators only): no evidence at all.
    assert batch[1].tolist() == batch[3].tolist() == pytest.approx([0.0, 0.0])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(evidence)).transform(docs), batch)


def test_clause_evidence_training_scores_are_cross_fitted():
    evidence = _clause_evidence()
    docs = [_doc("", t) for t in ["河水发黑发臭。", "工厂偷排废水进河里。", "污水直排河道。",
                                  "河里漂着死鱼，水很臭。", "饭店油烟呛人。", "烟囱冒黑烟。",
                                  "工厂废气刺鼻。", "油烟熏黑了窗户。"]]
    Y = np.array([[1, 0]] * 4 + [[0, 1]] * 4)
    crossed = pollution.ClauseEvidence(folds=2, weight=1.0).fit_transform(docs, Y)
    # Rows scored by a model that saw them look more certain than rows it did not see.
    in_sample = evidence.transform(docs)
    assert np.mean(np.abs(in_sample - Y)) < np.mean(np.abs(crossed - Y))


def test_type_terms_validation(tmp_path):
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({"version": "x", "labels": {"air": {"strong": ["臭"]}},
                                "grievance": ["严重"], "not_environmental": ["请问"],
                                "clause_separators": "。"}), encoding="utf-8")
    with pytest.raises(Exception, match="water"):
        pollution.load_type_terms(str(path))


# ------------------------------------------------------------------ confidence
def test_decide_applies_confidence_calibration():
    probabilities = np.array([[0.9, 0.1, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0]])
    thresholds = np.full(8, 0.5)
    raw = 0.9 * 0.9 * 0.6
    [identity] = pollution.decide(probabilities, thresholds, 0.5, "v", calibration=(1.0, 0.0))
    assert identity.confidence == pytest.approx(raw, abs=1e-4)
    [flat] = pollution.decide(probabilities, thresholds, 0.6, "v", calibration=(0.0, 0.0))
    assert flat.confidence == 0.5 and flat.needs_review is True
    [shifted] = pollution.decide(probabilities, thresholds, 0.5, "v", calibration=(1.0, 1.0))
    odds = raw / (1 - raw) * np.e
    assert shifted.confidence == pytest.approx(odds / (1 + odds), abs=1e-4)


def test_confidence_calibration_learns_overconfidence():
    # Raw confidence is high everywhere but only half of the label sets are right.
    Y = np.array([[1, 0]] * 10 + [[0, 1]] * 10)
    P = np.array([[0.95, 0.05]] * 10 + [[0.9, 0.1]] * 10)
    slope, intercept = pollution.fit_confidence_calibration(Y, P, np.array([0.5, 0.5]))
    [high, low] = pollution.decide(np.array([[0.95, 0.05] + [0] * 6, [0.9, 0.1] + [0] * 6]),
                                   np.full(8, 0.5), 0.5, "v", calibration=(slope, intercept))
    assert high.confidence > low.confidence
    assert 0.3 < (high.confidence + low.confidence) / 2 < 0.7
    assert pollution.fit_confidence_calibration(Y[:10], P[:10], np.array([0.5, 0.5])) is None


# ------------------------------------------------------------------ registry compatibility
def test_registry_refuses_old_pipeline_format(tmp_path, model):
    version = registry.register(model.estimator, {"training_fingerprint": "cd" * 32},
                                registry_dir=str(tmp_path))
    path = tmp_path / "pollution_type" / version / "metadata.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    assert metadata["pipeline_format"] == pollution.PIPELINE_FORMAT
    assert metadata["segmenter"].split()[0] in ("rjieba", "jieba")
    assert registry.is_loadable(version, str(tmp_path))
    metadata["pipeline_format"] = 1
    path.write_text(json.dumps(metadata), encoding="utf-8")
    assert not registry.is_loadable(version, str(tmp_path))
    with pytest.raises(registry.ModelMismatchError, match="format"):
        registry.load_model(version, registry_dir=str(tmp_path))


def test_ensure_default_model_never_retrains_over_an_unloadable_production_model(
        tmp_path, model, monkeypatch):
    version = registry.register(model.estimator, {"training_fingerprint": "ef" * 32},
                                registry_dir=str(tmp_path))
    assert registry.ensure_default_model(str(tmp_path)) == version  # adopted as production
    assert registry.production_version(str(tmp_path)) == version
    path = tmp_path / "pollution_type" / version / "metadata.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["pipeline_format"] = 1
    path.write_text(json.dumps(metadata), encoding="utf-8")
    calls = []
    monkeypatch.setattr(registry, "train_and_register",
                        lambda records, **kwargs: calls.append(records) or "pt-new")
    monkeypatch.setattr(registry, "default_training_records", lambda: [])
    with pytest.raises(registry.UnusableModelError, match="envleads models promote"):
        registry.ensure_default_model(str(tmp_path))
    assert calls == []
    assert registry.production_version(str(tmp_path)) == version


# ------------------------------------------------------------------ generated training rows
def test_generated_rows_are_reproducible_and_cover_every_label():
    import importlib.util

    script = Path(pollution.TRAINING_DIR) / "make_generated.py"
    spec = importlib.util.spec_from_file_location("make_generated", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.generate(7)
    assert rows == module.generate(7)
    committed = pollution.read_jsonl(str(Path(pollution.TRAINING_DIR) / "generated_v2.jsonl"))
    assert committed == rows  # the committed file is what the script writes
    assert {label for row in rows for label in row["labels"]} == set(POLLUTION_LABELS)
    assert all(row["synthetic"] for row in rows)


# ------------------------------------------------------------------ masked phrases
def _terms_file(tmp_path, masked):
    document = pollution.load_type_terms()
    document["masked"] = masked
    path = tmp_path / "terms.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_masked_phrases_are_no_cues_but_still_count_as_not_environmental(tmp_path):
    doc = _doc("", "这条路是豆腐渣工程，刚修好就坏了。请问垃圾分类怎么分？")
    plain = pollution.ClauseCueFeatures(_terms_file(tmp_path, [])).fit([])
    masked = pollution.ClauseCueFeatures(_terms_file(tmp_path, ["豆腐渣", "垃圾分类"])).fit([])
    names = list(plain.get_feature_names_out())
    before = dict(zip(names, plain.transform([doc])[0]))
    after = dict(zip(names, masked.transform([doc])[0]))
    assert before["cue_solid_waste_strong_clauses"] > 0        # 垃圾 inside 垃圾分类
    assert after["cue_solid_waste_strong_clauses"] == 0.0
    assert after["cue_solid_waste_any_hits"] == 0.0             # nor 渣 of 豆腐渣, if weak
    assert after["not_env_text"] == before["not_env_text"] > 0  # 垃圾分类, 请问 still seen


def test_masked_must_be_a_list(tmp_path):
    path = _terms_file(tmp_path, "豆腐渣")
    with pytest.raises(Exception, match="masked"):
        pollution.load_type_terms(path)
