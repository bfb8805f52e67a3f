"""The prediction paths of ``fastnn._predict``: the served-call fast path, the general chunked
path, plans shared between threads, and (Numba) the large batch split over the team.

Every loadable backend and every activation of the registry, against the NumPy reference.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastnn
from fastnn import _predict
from fastnn._codes import ACTIVATION_CODES
from fastnn.backends import available_backends

BACKENDS = available_backends()


def model_for(act: str, dtype: str = "float32", sizes=(20, 13, 4), seed: int = 0):
    layers = [fastnn.Dense(sizes[0], sizes[1], act), fastnn.Dense(sizes[1], sizes[2])]
    return fastnn.Sequential(layers, seed=seed, dtype=dtype)


def sparse_inputs(n: int, d: int, dtype: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)).astype(dtype)
    X[rng.random((n, d)) < 0.8] = 0  # MNIST-like: most inputs zero (the loops' case)
    return X


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", sorted(ACTIVATION_CODES))
def test_fast_path_equals_general_path(backend, act):
    model = model_for(act, "float64")
    X = sparse_inputs(_predict.FAST_ROWS + 5, 20, "float64")
    model.backend = "numpy"
    reference = model.predict_proba(X)  # > FAST_ROWS rows: the general path
    model.backend = backend
    for n in (1, 3, _predict.FAST_ROWS):
        served = model.predict_proba(X[:n])  # the fast path
        assert served.shape == (n, 4) and served.flags.owndata
        np.testing.assert_allclose(served, reference[:n], rtol=1e-10, atol=1e-12)
    # float32 rows of a float64 model take the general path and agree too.
    np.testing.assert_allclose(model.predict_proba(X[:2].astype(np.float32)),
                               model.predict_proba(X[:2].astype(np.float32).astype(np.float64)),
                               rtol=1e-12)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_served_call_output_is_not_overwritten_by_the_next(backend):
    model = model_for("relu")
    model.backend = backend
    X = sparse_inputs(2, 20, "float32")
    first = model.predict_proba(X[:1])
    keep = first.copy()
    model.predict_proba(X[1:])
    np.testing.assert_array_equal(first, keep)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 3, _predict.FAST_ROWS + 1, 600])
def test_every_path_rejects_non_finite_inputs(backend, bad, dtype, n):
    # 1 and 3 rows: the served call; more: the general path; 600: Numba's team split, whose
    # compiled pass checks the values itself (Design E), the bad value in the second block.
    model = model_for("tanh", dtype)
    model.backend = backend
    X = sparse_inputs(n, 20, dtype)
    X[n - 1, 7] = bad
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        model.predict_proba(X)
    X[n - 1, 7] = 0  # and the same model, plan and buffers predict again once it is fixed
    np.testing.assert_allclose(model.predict_proba(X), model_for("tanh", dtype).predict_proba(X),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_served_call_rejects_a_wrong_width(backend):
    model = model_for("relu")
    model.backend = backend
    with pytest.raises(ValueError, match="19 features, the model expects 20"):
        model.predict_proba(np.zeros((1, 19), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_follows_a_replaced_weight(backend):
    model = model_for("relu")
    model.backend = backend
    X = sparse_inputs(1, 20, "float32")
    before = model.predict_proba(X)
    model.layers[1].b = model.layers[1].b + np.float32(1.0)
    np.testing.assert_allclose(model.predict_proba(X), before + 1.0, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_sharing_a_model_get_their_own_outputs(backend):
    """Design C: a busy plan is never shared; every thread sees its own rows' outputs."""
    model = model_for("gelu", sizes=(20, 64, 4))
    model.backend = backend
    X = sparse_inputs(400, 20, "float32")
    expected = [model.predict_proba(X[i : i + 1]) for i in range(len(X))]
    failures: list[int] = []

    def serve(offset: int) -> None:
        for _ in range(3):
            for i in range(offset, len(X), 2):
                if not np.array_equal(model.predict_proba(X[i : i + 1]), expected[i]):
                    failures.append(i)

    threads = [threading.Thread(target=serve, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
@pytest.mark.parametrize("n", [256, 257, 1023])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_team_split_of_a_large_batch(n, dtype):
    """Design C of fastnn.backends.numba.predict: row blocks on the team, ragged sizes."""
    from fastnn.backends.numba import predict as nb_predict

    assert n >= nb_predict.TEAM_ROWS
    model = model_for("silu", dtype, sizes=(30, 17, 5))
    X = sparse_inputs(n, 30, dtype)
    model.backend = "numpy"
    reference = model.predict_proba(X)
    model.backend = "numba"
    threads = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(2)
        split = model.predict_proba(X)
        fastnn.set_num_threads(1)
        one = model.predict_proba(X)
    finally:
        fastnn.set_num_threads(threads)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(split, reference, rtol=tol, atol=tol)
    np.testing.assert_allclose(one, reference, rtol=tol, atol=tol)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("row", [0, 299, 599])
def test_numba_plan_checks_its_input_in_the_compiled_pass(threads, row):
    """Design E of fastnn._predict / D of fastnn.backends.numba.predict: the model does not
    check the values before the call; the kernel finds them, in any block of the team."""
    model = model_for("relu", "float32", sizes=(30, 17, 5))
    model.backend = "numba"
    X = sparse_inputs(600, 30, "float32")
    B = fastnn.backends.resolve_backend("numba")
    assert _predict.checked_by_plan(model, B, X, None)
    X[row, 3] = np.nan
    saved = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(threads)
        plan = _predict.plan_for(model, B, 600, model.layers[-1].act_code)
        assert plan.run(X) is None  # nothing computed, and no exception from the kernel
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            model.predict_proba(X)
    finally:
        fastnn.set_num_threads(saved)
