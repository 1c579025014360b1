"""Pollution-type classifier, its evaluation and the model registry.

Sentences here are written for these tests (they are not in models/training/). The fixture model is
trained on the project's own rows only, so these tests run without the shared data.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from envleads.models import pollution, registry
from envleads.records import POLLUTION_LABELS, TypePrediction

SHARED = Path(os.environ.get("ENVLEADS_SHARED_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="module")
def project_rows():
    return pollution.load_project_training()


@pytest.fixture(scope="module")
def model(project_rows):
    pipeline = pollution.train_model(project_rows, threshold_folds=0)
    return pollution.PollutionModel(pipeline, version="test")


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
    assert "micro F1" in pollution.format_report(report)


def test_unknown_label_is_refused():
    with pytest.raises(ValueError):
        pollution.label_matrix([{"id": "x", "labels": ["light"]}])


def test_training_rows_cover_every_label(project_rows):
    seen = {label for row in project_rows for label in row["labels"]}
    assert seen == set(POLLUTION_LABELS)
    assert sum(1 for row in project_rows if not row["labels"]) >= 100


def test_registry_round_trip(tmp_path, model, project_rows):
    version = registry.register(model.pipeline, {
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
                                        ("labels", ["air", "water"])])
def test_registry_refuses_mismatch(tmp_path, model, key, value):
    version = registry.register(model.pipeline, {"training_fingerprint": "ab" * 32},
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
