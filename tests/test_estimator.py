"""PollutionTypeClassifier behaves like a scikit-learn estimator.

Full ``check_estimator`` does not apply (text input, one target column per label; see the class
docstring), so these are the checks that do: parameters, clone, fit returns self, cross-validation
of clones, pickling, and that fitting depends on the rows and the seed but not on the rows' order.
Small data (a few hundred of the project's rows), so each fit takes seconds.
"""
import pickle
import random

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score, make_scorer
from sklearn.model_selection import KFold, cross_val_score
from sklearn.utils.estimator_checks import (check_get_params_invariance,
                                            check_no_attributes_set_in_init,
                                            check_parameters_default_constructible,
                                            check_set_params)

from envleads.models import pollution
from envleads.models.estimator import DEFAULT_HYPER, PollutionTypeClassifier

FAST = {"threshold_folds": 3}


@pytest.fixture(scope="module")
def split():
    """Training rows (hand-written ones real, so the decision rules are cross-fitted; a sample of
    the generated ones synthetic) and held-out rows of the same files."""
    rows = pollution.load_project_training()
    hand = [r for r in rows if not r["id"].startswith("gen")]
    generated = [r for r in rows if r["id"].startswith("gen")]
    train = [dict(r, synthetic=False) for r in hand[::2]] + generated[::8]
    held_out = hand[1::2] + generated[4::8]
    return train, held_out


def _xy(rows):
    return (pollution.record_docs(rows), pollution.label_matrix(rows),
            np.array([bool(r.get("synthetic")) for r in rows]))


@pytest.fixture(scope="module")
def fitted(split):
    X, Y, synthetic = _xy(split[0])
    return PollutionTypeClassifier(**FAST).fit(X, Y, synthetic=synthetic)


def test_constructor_defaults_are_default_hyper():
    assert PollutionTypeClassifier().get_params() == DEFAULT_HYPER


def test_scikit_learn_parameter_checks():
    estimator = PollutionTypeClassifier()
    name = type(estimator).__name__
    check_parameters_default_constructible(name, estimator)
    check_no_attributes_set_in_init(name, estimator)
    check_get_params_invariance(name, estimator)
    check_set_params(name, estimator)


def test_set_params_round_trip_and_unknown_parameter():
    estimator = PollutionTypeClassifier()
    assert estimator.set_params(C=2.0, seed=3) is estimator
    assert estimator.get_params()["C"] == 2.0 and estimator.get_params()["seed"] == 3
    assert PollutionTypeClassifier(**estimator.get_params()).get_params() == estimator.get_params()
    with pytest.raises(ValueError):
        estimator.set_params(no_such_parameter=1)
    with pytest.raises(TypeError):
        pollution.train_model([], no_such_parameter=1)  # a misspelt option is not ignored


def test_clone_is_unfitted_with_the_same_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "views_") and not hasattr(copy, "thresholds_")
    with pytest.raises(NotFittedError):
        copy.predict_proba([("", "河水发黑发臭。")])


def test_fit_returns_self_and_learns_the_decision_rules(split):
    X, Y, synthetic = _xy(split[0])
    estimator = PollutionTypeClassifier(**FAST)
    assert estimator.fit(X, Y, synthetic=synthetic) is estimator
    # Tuned out of fold inside fit, not left at their defaults.
    assert not np.allclose(estimator.thresholds_, DEFAULT_HYPER["default_threshold"])
    assert estimator.exclusive_keep_ <= 1.01
    assert estimator.confidence_calibration_ is not None
    assert list(estimator.classes_) == list(pollution.LABELS)


def test_predict_is_predict_proba_over_thresholds(fitted, split):
    X = pollution.record_docs(split[1][:40])
    P = fitted.predict_proba(X)
    assert P.shape == (40, len(pollution.LABELS)) and ((0 <= P) & (P <= 1)).all()
    np.testing.assert_array_equal(fitted.predict(X), (P >= fitted.thresholds_).astype(int))
    assert fitted.predict_proba([]).shape == (0, len(pollution.LABELS))


def test_labels_must_be_one_column_per_label(split):
    X, Y, _ = _xy(split[0][:30])
    with pytest.raises(ValueError, match="shape"):
        PollutionTypeClassifier(**FAST).fit(X, Y[:, :3])
    with pytest.raises(ValueError, match="0 and 1"):
        PollutionTypeClassifier(**FAST).fit(X, Y * 2)


def test_train_model_is_fit_on_the_records(fitted, split):
    X = pollution.record_docs(split[1][:60])
    wrapped = pollution.train_model(split[0], **FAST)
    assert isinstance(wrapped, PollutionTypeClassifier)
    np.testing.assert_allclose(wrapped.predict_proba(X), fitted.predict_proba(X), atol=1e-12)
    model = pollution.PollutionModel(wrapped, version="v")
    assert [set(p.labels) for p in model.predict(X)] == [
        {pollution.LABELS[i] for i in np.flatnonzero(row)} for row in fitted.predict(X)]


def test_cross_val_score_fits_clones(split):
    X, Y, synthetic = _xy(split[0])
    scores = cross_val_score(PollutionTypeClassifier(threshold_folds=2), X, Y,
                             cv=KFold(2, shuffle=True, random_state=0),
                             scoring=make_scorer(f1_score, average="micro", zero_division=0),
                             params={"synthetic": synthetic})
    assert scores.shape == (2,) and (scores > 0.3).all()


def test_pickle_and_joblib_round_trips_predict_the_same(fitted, split, tmp_path):
    X = pollution.record_docs(split[1][:60])
    expected = fitted.predict_proba(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(X), expected)
    joblib.dump(fitted, tmp_path / "model.joblib", compress=3)
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict_proba(X), expected)


def _label_sets(rows, X):
    X_train, Y, synthetic = _xy(rows)
    return PollutionTypeClassifier(**FAST).fit(X_train, Y, synthetic=synthetic).predict(X)


def test_row_order_changes_at_most_0_3_percent_of_label_sets(split):
    train, held_out = split
    X = pollution.record_docs(held_out)
    shuffled = random.Random(1).sample(train, len(train))
    first, second = _label_sets(train, X), _label_sets(shuffled, X)
    differing = int(np.sum(np.any(first != second, axis=1)))
    assert differing <= 0.003 * len(X), f"{differing} of {len(X)} label sets differ"
