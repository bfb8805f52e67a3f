"""fastnn.sklearn: scikit-learn's estimator checks, pipelines, and step-for-step parity with
scikit-learn's own MLP (same initial weights, same updates) where the mapping is exact."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6", reason="fastnn.sklearn needs scikit-learn>=1.6")

import joblib  # noqa: E402  (a scikit-learn dependency)
from sklearn import neural_network as skl  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_iris,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FLOAT32_ROUNDING = (
    "float32 (the default dtype): BLAS sums each row in a different order for different row "
    "counts, so predictions on a subset agree to float32 rounding (~1e-7 relative), not to the "
    "float64 tolerance of this check; the dtype='float64' estimators pass it"
)


def _expected_failures(est: object) -> dict[str, str]:
    if est.dtype == "float32":
        return {"check_methods_subset_invariance": FLOAT32_ROUNDING}
    return {}


CHECKED = [MLPClassifier(), MLPRegressor()]
CHECKED += [MLPClassifier(dtype="float64"), MLPRegressor(dtype="float64")]


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check) -> None:  # noqa: ANN001
    check(estimator)


# -- data --------------------------------------------------------------------------------------
X3, Y3 = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
_, YML = make_multilabel_classification(120, 6, n_classes=4, random_state=0)
XR, YR = make_regression(120, 6, n_targets=3, random_state=0)
YR = YR / 100

PROBLEMS = {  # name: (fastnn class, scikit-learn class, X, y)
    "multiclass": (MLPClassifier, skl.MLPClassifier, X3, Y3),
    "binary": (MLPClassifier, skl.MLPClassifier, X3, Y3 == 1),
    "multilabel": (MLPClassifier, skl.MLPClassifier, X3, YML),
    "regression": (MLPRegressor, skl.MLPRegressor, XR, YR),
}
# Batch 32 leaves a ragged last batch of 24: the exact mapping holds for it too.
COMMON = {"hidden_layer_sizes": (7, 5), "activation": "tanh", "batch_size": 32, "shuffle": False,
          "random_state": 0, "max_iter": 25, "learning_rate_init": 0.01}  # fmt: skip


def _pair(problem: str, backend: str | None = None, **params: object) -> tuple[object, object]:
    ours, theirs, X, y = PROBLEMS[problem]
    kw = {**COMMON, **params}
    return ours(dtype="float64", backend=backend, **kw).fit(X, y), theirs(**kw).fit(X, y)


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b, strict=True))


# -- parity with scikit-learn's MLP --------------------------------------------------------------
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_sgd_takes_sklearns_steps(problem: str, schedule: str) -> None:
    # Same initial weights, Nesterov momentum, learning-rate schedule and loss scaling.
    ours, theirs = _pair(problem, solver="sgd", alpha=0.0, learning_rate=schedule)
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-10
    assert _max_diff(ours.intercepts_, theirs.intercepts_) < 1e-10
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert (ours.n_iter_, ours.t_, ours.out_activation_, ours.n_outputs_, ours.n_layers_) == (
        theirs.n_iter_, theirs.t_, theirs.out_activation_, theirs.n_outputs_, theirs.n_layers_,
    )  # fmt: skip


@pytest.mark.parametrize("backend", fastnn.available_backends())
def test_every_backend_takes_sklearns_steps(backend: str) -> None:
    ours, theirs = _pair("multiclass", solver="sgd", alpha=0.0, nesterovs_momentum=False,
                         backend=backend)  # fmt: skip
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-9


def test_adaptive_rate_drops_and_stops_as_sklearn() -> None:
    ours, theirs = _pair("multiclass", solver="sgd", alpha=0.0, learning_rate="adaptive",
                         tol=0.05, n_iter_no_change=2, max_iter=200)  # fmt: skip
    assert theirs.n_iter_ < 200 and ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_adam_matches_sklearn(problem: str) -> None:
    # Only eps sits differently (PyTorch's sqrt(v_hat) + eps vs sqrt(v) + eps).
    ours, theirs = _pair(problem, solver="adam", alpha=0.0)
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-3
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_alpha_has_sklearns_strength(solver: str) -> None:
    # The intercepts are decayed too (documented), so only close: half the alpha is far off.
    ours, theirs = _pair("multiclass", solver=solver, alpha=0.1)
    half, _ = _pair("multiclass", solver=solver, alpha=0.05)
    close = abs(ours.loss_ - theirs.loss_)
    assert close < 1e-2 * theirs.loss_
    assert abs(half.loss_ - theirs.loss_) > 5 * close
    assert _max_diff(ours.coefs_, theirs.coefs_) < 3e-2


def test_partial_fit_and_warm_start_match_sklearn() -> None:
    kw = {**COMMON, "solver": "sgd", "alpha": 0.0}
    ours, theirs = MLPClassifier(dtype="float64", **kw), skl.MLPClassifier(**kw)
    for est in (ours, theirs):
        est.partial_fit(X3[:60], Y3[:60], classes=[0, 1, 2])
        est.partial_fit(X3[60:], Y3[60:])
    assert ours.n_iter_ == 1 and ours.t_ == theirs.t_ == 120
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-10
    kw["warm_start"] = True
    ours, theirs = MLPClassifier(dtype="float64", **kw), skl.MLPClassifier(**kw)
    for est in (ours, theirs):
        est.fit(X3, Y3).fit(X3, Y3)  # the second fit continues, with a new optimizer
    assert len(ours.loss_curve_) == 2 * COMMON["max_iter"]
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-10


def test_early_stopping_matches_sklearn() -> None:
    ours, theirs = _pair("multiclass", solver="sgd", alpha=0.0, early_stopping=True,
                         n_iter_no_change=3, max_iter=200)  # fmt: skip
    assert ours.n_iter_ == theirs.n_iter_ < 200
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert ours.best_validation_score_ == theirs.best_validation_score_
    assert ours.best_loss_ is None and ours.validation_scores_ is not None
    # The best epoch's weights are restored, as scikit-learn does.
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-10


def test_similar_accuracy_to_sklearn_with_defaults() -> None:
    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    kw = {"hidden_layer_sizes": (20,), "max_iter": 300, "random_state": 0}
    ours = make_pipeline(StandardScaler(), MLPClassifier(**kw)).fit(X_tr, y_tr)
    theirs = make_pipeline(StandardScaler(), skl.MLPClassifier(**kw)).fit(X_tr, y_tr)
    assert ours.score(X_te, y_te) >= 0.9
    assert abs(ours.score(X_te, y_te) - theirs.score(X_te, y_te)) <= 0.05


# -- scikit-learn tooling ------------------------------------------------------------------------
def test_pipeline_grid_search_and_cross_validation() -> None:
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(max_iter=100, learning_rate_init=0.01, random_state=0)
    pipe = make_pipeline(StandardScaler(), clf)
    grid = {"mlpclassifier__hidden_layer_sizes": [(8,), (16, 8)],
            "mlpclassifier__activation": ["relu", "leaky_relu"]}  # fmt: skip
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_params_["mlpclassifier__activation"] in ("relu", "leaky_relu")
    assert search.best_score_ > 0.85
    assert search.predict(X).shape == (150,)
    scores = cross_val_score(make_pipeline(StandardScaler(), MLPRegressor(max_iter=100)),
                             XR, YR[:, 0], cv=3)  # fmt: skip
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_clone_and_pickle_round_trip(tmp_path) -> None:  # noqa: ANN001
    est = MLPClassifier(hidden_layer_sizes=(9,), activation="leaky_relu", backend="numpy",
                        dtype="float64", max_iter=30, random_state=1).fit(X3, Y3)  # fmt: skip
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "coefs_")
    joblib.dump(est, tmp_path / "est.joblib")
    for copy in (pickle.loads(pickle.dumps(est)), joblib.load(tmp_path / "est.joblib")):
        np.testing.assert_array_equal(copy.predict_proba(X3), est.predict_proba(X3))
        # coefs_ are still the network's own arrays: further training shows in them.
        copy.partial_fit(X3, Y3)
        assert copy.coefs_[0] is copy._model.layers[0].W
        assert _max_diff(copy.coefs_, est.coefs_) > 0


# -- targets and prediction API ------------------------------------------------------------------
def test_string_integer_and_multilabel_targets() -> None:
    names = np.array(["cat", "dog", "emu"])[Y3]
    clf = MLPClassifier(max_iter=50, random_state=0).fit(X3, names)
    assert list(clf.classes_) == ["cat", "dog", "emu"] and clf.out_activation_ == "softmax"
    assert set(clf.predict(X3)) <= set(clf.classes_)
    proba = clf.predict_proba(X3)
    assert proba.shape == (120, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(clf.predict_log_proba(X3), np.log(proba), rtol=1e-6)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X3))

    binary = MLPClassifier(max_iter=50, random_state=0).fit(X3, Y3 * 10 + 5)
    assert list(binary.classes_) == [5, 15, 25]
    two = MLPClassifier(max_iter=50, random_state=0).fit(X3, np.where(Y3 == 1, 7, -7))
    assert two.out_activation_ == "logistic" and two.n_outputs_ == 1
    assert two.predict_proba(X3).shape == (120, 2) and set(two.predict(X3)) <= {-7, 7}

    multi = MLPClassifier(max_iter=50, random_state=0).fit(X3, YML)
    assert multi.out_activation_ == "logistic" and multi.n_outputs_ == 4
    assert multi.predict(X3).shape == (120, 4) and set(np.unique(multi.predict(X3))) <= {0, 1}


def test_partial_fit_needs_classes_and_rejects_new_ones() -> None:
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X3, Y3)
    clf.partial_fit(X3[Y3 < 2], Y3[Y3 < 2], classes=[0, 1, 2])
    assert clf.n_outputs_ == 3 and clf.t_ == int((Y3 < 2).sum())
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X3, Y3 + 1)
    with pytest.raises(ValueError, match="early_stopping"):
        clf.set_params(early_stopping=True).partial_fit(X3, Y3)


def test_assigned_coefs_are_used_for_prediction() -> None:
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X3, Y3)
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X3), 1 / 3, rtol=1e-6)
    assert clf.coefs_[1] is clf._model.layers[1].W


def test_full_batch_loss_reporting_and_convergence_warning(capsys) -> None:  # noqa: ANN001
    reg = MLPRegressor(hidden_layer_sizes=(), batch_size="full", alpha=0.0, max_iter=3,
                       verbose=True, random_state=0)  # fmt: skip
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        reg.fit(XR, YR)
    assert reg._optimizer.step == 3  # one step per epoch
    assert capsys.readouterr().out.startswith("Iteration 1, loss = ")
    # loss_ is scikit-learn's half squared error of the epoch (full batch: before the step).
    assert reg.n_iter_ == 3 and len(reg.loss_curve_) == 3
    assert reg.best_loss_ == min(reg.loss_curve_) and reg.validation_scores_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLPRegressor(max_iter=500, tol=10.0, random_state=0).fit(XR, YR)  # stops on tol


@pytest.mark.parametrize(
    ("params", "match"),
    [({"solver": "lbfgs"}, "gradient descent"), ({"activation": "softplus"}, "activation"),
     ({"batch_size": 0}, "batch_size"), ({"momentum": 1.0}, "momentum"),
     ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes"), ({"dtype": "float16"}, "dtype"),
     ({"n_iter_no_change": 0}, "n_iter_no_change")],
)  # fmt: skip
def test_bad_parameters_fail_at_fit(params: dict, match: str) -> None:
    clf = MLPClassifier(**params)  # scikit-learn validates in fit, never in __init__
    with pytest.raises(ValueError, match=match):
        clf.fit(X3, Y3)


def test_regressor_rejects_other_losses_and_architecture_changes() -> None:
    with pytest.raises(ValueError, match="squared_error"):
        MLPRegressor(loss="poisson").fit(XR, YR)
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5).fit(XR, YR)
    with pytest.raises(ValueError, match="hidden layers"):
        reg.set_params(hidden_layer_sizes=(6,)).partial_fit(XR, YR)
    MLPRegressor(n_iter_no_change=np.inf, max_iter=5).fit(XR, YR)


# -- the rest of fastnn and the benchmark --------------------------------------------------------
def test_fastnn_itself_never_imports_sklearn() -> None:
    code = ("import sys, numpy as np, fastnn\n"
            "fastnn.Sequential([fastnn.Dense(2, 2)]).fit(np.eye(2), [0, 1], epochs=2)\n"
            "print('sklearn' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_row_trains_from_the_shared_weights() -> None:
    registry = pytest.importorskip("fastnn.bench.registry")
    from fastnn.bench.peer_fastnn_sklearn import NAME, fastnn_sklearn_trainer

    registry.load_plugins()
    assert registry.get_impl(NAME).factory.endswith(":fastnn_sklearn_trainer")
    start = fastnn.Sequential([fastnn.Dense(6, 8, "relu"), fastnn.Dense(8, 3)], seed=3)
    X, y = X3.astype(np.float32), Y3.astype(np.int64)
    setup = registry.Setup(X=X, y=y, X_test=X, y_test=y, weights=start.get_weights(),
                           activation="relu", optimizer={"name": "sgd", "lr": 0.05},
                           batch_size=16, threads=1, seed=0)  # fmt: skip
    trainer = fastnn_sklearn_trainer(setup)
    np.testing.assert_array_equal(trainer.clf.coefs_[0], setup.weights[0])
    assert trainer.clf._optimizer.step == 0
    epochs: list[int] = []
    trainer.run(3, epochs.append, lambda epoch: epoch == 1)  # stops after the 2nd epoch
    assert epochs == [0, 1] and trainer.clf.t_ == 2 * len(X)
    assert 0.0 <= trainer.test_accuracy() <= 1.0


def test_feature_names_are_recorded_and_checked() -> None:
    pd = pytest.importorskip("pandas", reason="feature names need a pandas DataFrame")
    frame = pd.DataFrame(X3, columns=[f"f{i}" for i in range(X3.shape[1])])
    clf = MLPClassifier(max_iter=5).fit(frame, Y3)
    assert list(clf.feature_names_in_) == list(frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X3)
