"""The kernels of ``fastnn.backends.cython`` against the reference, one by one, and the codes
compiled into them.

Every activation of ``fastnn._codes.ACTIVATION_CODES`` and every loss of ``LOSS_KERNEL_NAMES``
is covered by looping over the registries, on batch 1, odd and sparse shapes, float32 and
float64. The epoch is tested in ``test_cython_epoch.py``, building and installing without the
extension in ``test_cython_build.py``.
"""

from __future__ import annotations

import runpy
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastnn import _codes as C
from fastnn.backends import numpy as ref
from fastnn.backends._frontend import CONV_NAMES, contract_names

cy = pytest.importorskip("fastnn.backends.cython", reason="Cython extension not built")

ROOT = Path(__file__).resolve().parents[2]
DTYPES = [np.float32, np.float64]
# (rows, inputs, outputs, share of zero inputs): batch 1, tiny, odd, the BLAS path (dense, 8+
# rows) and the zero-skipping loops on sparse inputs of 8+ rows; the last two are wide enough
# for the loops' register blocks of 64 float32 / 32 float64 columns (rowblock.pxd), with a
# ragged rest of columns after them.
SHAPES = [(1, 13, 7, 0.0), (1, 30, 5, 0.8), (3, 9, 4, 0.0), (37, 23, 11, 0.0), (64, 40, 17, 0.85),
          (5, 40, 130, 0.5), (64, 50, 70, 0.85)]  # fmt: skip
ALPHA = 0.3  # leaky-ReLU slope and ELU alpha: not the default, so a dropped alpha shows


def _tol(dtype):
    return {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def _inputs(rng, n, d, k, zeros, dtype):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random(x.shape) < zeros] = 0
    W = (rng.standard_normal((d, k)) / np.sqrt(d)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    return x, W, b


def _forward(B, x, W, b, act):
    n, k = x.shape[0], W.shape[1]
    z = np.full((n, k), np.nan, x.dtype) if act in C.NEEDS_PREACTIVATION else None
    out = np.full((n, k), np.nan, x.dtype)
    B.dense_forward(x, W, b, act, ALPHA, z, out)
    return z, out


# The codes ----------------------------------------------------------------------------------
def test_backend_names_and_contract():
    assert cy.NAME == "cython"
    assert cy.FUSED_LAYERS == frozenset({"dense"})
    assert cy.BUILD in ("avx2", "generic")
    assert isinstance(cy.HAS_OPENMP, bool)
    for name in contract_names():
        assert callable(getattr(cy, name)), name


def test_convolution_kernels_are_public_and_checked():
    """The compiled conv kernels (tested against the reference in test_cython_conv.py) are
    published under the contract's names, behind the shared checks."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6))
    W, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    got, want = np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4, 4))
    cy.conv2d_forward(x, W, b, 1, 0, C.RELU, 0.0, None, got)
    ref.conv2d_forward(x, W, b, 1, 0, C.RELU, 0.0, None, want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises((TypeError, ValueError)):
        cy.conv2d_forward(x, W, b, 1, 0, C.RELU, 0.0, None, got[:, :2])
    for name in CONV_NAMES:
        assert getattr(cy, name).__name__ == name


def test_compiled_codes_match_the_table():
    """What the build compiled (``codes.pxd``, generated) against the table as it is now: a
    build older than an edit of ``fastnn/_codes.py`` fails here."""
    table = C.int_constants()
    compiled = cy._kernels.CODES
    assert set(compiled) == set(table)
    for name, value in table.items():
        assert compiled[name] == value, name
    for name, code in C.ACTIVATION_CODES.items():
        assert compiled[name.upper()] == code, name
    hyper = {name: value for name, value in table.items() if name.startswith("H_")}
    assert sorted(hyper.values()) == list(range(C.N_HYPER))
    assert cy._kernels.NEEDS_Z == C.NEEDS_PREACTIVATION


def _generate(tmp_path, table_text):
    """Run setup.py's generator on a copy of the sources with ``table_text`` as the table."""
    pytest.importorskip("Cython")
    from Cython import Tempita

    (tmp_path / "fastnn" / "backends" / "cython").mkdir(parents=True)
    (tmp_path / "fastnn" / "_codes.py").write_text(table_text)
    template = ROOT / "fastnn" / "backends" / "cython" / "codes.pxd.tp"
    (tmp_path / "fastnn" / "backends" / "cython" / "codes.pxd.tp").write_text(template.read_text())
    setup_text = (ROOT / "setup.py").read_text().split("\nsetup(")[0]
    namespace = {"__file__": str(tmp_path / "setup.py"), "__name__": "fastnn_setup"}
    exec(compile(setup_text, "setup.py", "exec"), namespace)  # everything but setup() itself
    return Path(namespace["generate_codes"](Tempita)).read_text()


def test_generated_declarations_follow_the_table(tmp_path):
    """setup.py writes every constant of the table, and a changed table changes them."""
    table = (ROOT / "fastnn" / "_codes.py").read_text()
    text = _generate(tmp_path / "a", table)
    for name, value in C.int_constants().items():
        assert f"    {name} = {value}\n" in text, name
        assert f'"{name}": {name},' in text, name
    changed = table.replace("SILU = 8", "SILU = 11").replace(
        "NEEDS_PREACTIVATION: frozenset[int] = frozenset({GELU, GELU_TANH, SILU})",
        "NEEDS_PREACTIVATION: frozenset[int] = frozenset({GELU})",
    )
    assert changed != table
    text = _generate(tmp_path / "b", changed)
    assert "    SILU = 11\n" in text and "    SILU = 8\n" not in text
    assert "return act == 6\n" in text


def test_generated_declarations_are_not_committed():
    result = subprocess.run(
        ["git", "check-ignore", "-q", "fastnn/backends/cython/codes.pxd"], cwd=ROOT, check=False
    )
    if result.returncode == 128:
        pytest.skip("not a git checkout")
    assert result.returncode == 0, "codes.pxd is generated: it must be in .gitignore"
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "*.pxd.tp" in manifest and "fastnn/_codes.py" in manifest


def test_the_generator_loads_the_table_without_fastnn(tmp_path):
    """The build must not import fastnn (nothing is installed yet): the table is read from its
    path, so a broken package elsewhere does not matter."""
    table = runpy.run_path(str(ROOT / "fastnn" / "_codes.py"))
    assert table["int_constants"]() == C.int_constants()


# Dense layer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{d}x{k}-{z}" for n, d, k, z in SHAPES])
def test_dense_forward_and_backward_match_reference(dtype, shape):
    n, d, k, zeros = shape
    rng = np.random.default_rng(n * 100 + d)
    for name, act in C.ACTIVATION_CODES.items():
        x, W, b = _inputs(rng, n, d, k, zeros, dtype)
        z_ref, a_ref = _forward(ref, x, W, b, act)
        z_cy, a_cy = _forward(cy, x, W, b, act)
        np.testing.assert_allclose(a_cy, a_ref, **_tol(dtype), err_msg=f"{name}: forward")
        if z_ref is not None:
            np.testing.assert_allclose(z_cy, z_ref, **_tol(dtype), err_msg=f"{name}: z")
        grad = rng.standard_normal((n, k)).astype(dtype)
        results = []
        for B, z, a in ((ref, z_ref, a_ref), (cy, z_cy, a_cy)):
            g, dW, db = grad.copy(), np.full_like(W, np.nan), np.full_like(b, np.nan)
            gx = np.full_like(x, np.nan)
            B.dense_backward(x, W, z, a, g, act, ALPHA, dW, db, gx)
            results.append((g, dW, db, gx))
        for what, got, want in zip(("dL/dz", "dW", "db", "grad_x"), *results, strict=True):
            np.testing.assert_allclose(got, want, **_tol(dtype), err_msg=f"{name}: {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_backward_without_input_gradient(dtype):
    rng = np.random.default_rng(3)
    x, W, b = _inputs(rng, 9, 6, 4, 0.0, dtype)
    for act in C.ACTIVATION_CODES.values():
        z, a = _forward(cy, x, W, b, act)
        grads = []
        for grad_x in (None, np.zeros_like(x)):
            g, dW, db = np.ones((9, 4), dtype), np.zeros_like(W), np.zeros_like(b)
            cy.dense_backward(x, W, z, a, g, act, ALPHA, dW, db, grad_x)
            grads.append((g, dW, db))
        for got, want in zip(*grads, strict=True):
            np.testing.assert_array_equal(got, want)


def test_activations_that_keep_no_z_ignore_the_buffer():
    """For activations outside NEEDS_PREACTIVATION, z is None or ignored (left untouched)."""
    rng = np.random.default_rng(4)
    x, W, b = _inputs(rng, 10, 5, 3, 0.0, np.float64)
    for act in set(C.ACTIVATION_CODES.values()) - C.NEEDS_PREACTIVATION:
        z = np.full((10, 3), 7.0)
        out, out_none = np.zeros((10, 3)), np.zeros((10, 3))
        cy.dense_forward(x, W, b, act, ALPHA, z, out)
        cy.dense_forward(x, W, b, act, ALPHA, None, out_none)
        np.testing.assert_array_equal(out, out_none)
        assert (z == 7.0).all()


def test_activations_on_extreme_inputs_stay_finite():
    """Large |z|: the stable forms (tanh sigmoid, expm1) must not overflow to inf or NaN."""
    x = np.array([[-800.0], [-40.0], [0.0], [40.0], [800.0]])
    for dtype in DTYPES:
        xs, W, b = x.astype(dtype) / 10, np.ones((1, 1), dtype) * 10, np.zeros(1, dtype)
        for name, act in C.ACTIVATION_CODES.items():
            z_ref, a_ref = _forward(ref, xs, W, b, act)
            z, a = _forward(cy, xs, W, b, act)
            np.testing.assert_allclose(a, a_ref, **_tol(dtype), err_msg=name)
            g, g_ref = np.ones_like(a), np.ones_like(a)
            for B, zz, aa, gg in ((cy, z, a, g), (ref, z_ref, a_ref, g_ref)):
                B.dense_backward(xs, W, zz, aa, gg, act, ALPHA, np.zeros_like(W),
                                 np.zeros_like(b), None)  # fmt: skip
            if name != "softmax":  # one column: its derivative is 0 * (huge) in both
                assert np.isfinite(g).all(), name
            np.testing.assert_allclose(g, g_ref, **_tol(dtype), err_msg=name)


# Losses and optimizers ------------------------------------------------------------------------
def _targets(rng, name, n, k, dtype):
    if name == "softmax_cross_entropy":
        return rng.integers(0, k, n).astype(np.int64)
    if name == "mse":
        return rng.standard_normal((n, k)).astype(dtype)
    if name == "binary_cross_entropy":
        return rng.random((n, k)).astype(dtype)
    p = rng.random((n, k)) ** 3  # probability rows, some near zero
    p[:, 0] = 0.0  # 0 log 0 = 0 in the KL divergence
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n, k", [(1, 3), (7, 10), (64, 2)])
def test_every_loss_matches_reference(dtype, n, k):
    rng = np.random.default_rng(n + k)
    for name in C.LOSS_KERNEL_NAMES.values():
        outputs = (3 * rng.standard_normal((n, k))).astype(dtype)
        targets = _targets(rng, name, n, k, dtype)
        g_ref, g_cy = np.zeros_like(outputs), np.zeros_like(outputs)
        want = getattr(ref, name)(outputs, targets, g_ref)
        got = getattr(cy, name)(outputs, targets, g_cy)
        assert isinstance(got, float)
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(g_cy, g_ref, **_tol(dtype), err_msg=name)


def _optimizer_calls(p, g, s1, s2, step):
    return {
        "sgd": ("sgd_update", (p, g, 0.1, 0.0)),
        "sgd-decay": ("sgd_update", (p, g, 0.1, 0.01)),
        "momentum": ("momentum_update", (p, g, s1, 0.05, 0.9, False, 0.0)),
        "nesterov-decay": ("momentum_update", (p, g, s1, 0.05, 0.9, True, 1e-3)),
        "adam": ("adam_update", (p, g, s1, s2, 1e-2, 0.9, 0.999, 1e-8, 0.0, step)),
        "adam-decay": ("adam_update", (p, g, s1, s2, 1e-2, 0.8, 0.99, 1e-6, 1e-2, step)),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("size", [1, 31])
def test_every_optimizer_matches_reference(dtype, size):
    rng = np.random.default_rng(size)
    p0 = rng.standard_normal(size).astype(dtype)
    for case in _optimizer_calls(*(None,) * 4, 1):
        states = []
        for B in (ref, cy):
            p, s1, s2 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
            for step in (1, 2, 3):
                g = np.random.default_rng(step).standard_normal(size).astype(dtype)
                name, args = _optimizer_calls(p, g, s1, s2, step)[case]
                getattr(B, name)(*args)
            states.append((p, s1, s2))
        for got, want in zip(*states, strict=True):
            np.testing.assert_allclose(got, want, **_tol(dtype), err_msg=case)


# Argument checks: every entry point raises before compiled code runs --------------------------
def _f(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _kernel_calls():
    """(name, good arguments, indices of array arguments to spoil) for every public kernel."""
    x, W, b, a = _f(4, 3), _f(3, 2), _f(2), _f(4, 2)
    labels = np.zeros(4, np.int64)
    p = _f(5)
    return [
        ("dense_forward", (x, W, b, C.RELU, 0.0, None, a), [0, 1, 2, 6]),
        ("dense_forward-z", (x, W, b, C.GELU, 0.0, a.copy(), a), [0, 1, 2, 5, 6]),
        ("dense_backward", (x, W, None, a, a.copy(), C.RELU, 0.0, W.copy(), b.copy(), x.copy()),
         [0, 1, 3, 4, 7, 8, 9]),
        ("dense_backward-z", (x, W, a.copy(), a, a.copy(), C.SILU, 0.0, W.copy(), b.copy(),
                              None), [0, 1, 2, 3, 4, 7, 8]),
        ("mse", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("softmax_cross_entropy", (a, labels, a.copy()), [0, 1, 2]),
        ("softmax_cross_entropy_soft", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("binary_cross_entropy", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("kl_divergence", (a, a.copy(), a.copy()), [0, 1, 2]),
        ("sgd_update", (p, p.copy(), 0.1, 0.0), [0, 1]),
        ("momentum_update", (p, p.copy(), p.copy(), 0.1, 0.9, False, 0.0), [0, 1, 2]),
        ("adam_update", (p, p.copy(), p.copy(), p.copy(), 0.1, 0.9, 0.99, 1e-8, 0.0, 1),
         [0, 1, 2, 3]),
    ]  # fmt: skip


def _spoiled(arg):
    """Wrong dtype, wrong shape, non-contiguous and non-array versions of one array argument."""
    wrong_dtype = arg.astype(np.int32 if arg.dtype == np.int64 else np.float64)
    wrong_shape = np.zeros((arg.shape[0] + 1, *arg.shape[1:]), arg.dtype)
    strided = np.zeros((*arg.shape[:-1], 2 * arg.shape[-1]), arg.dtype)[..., ::2]
    return {"dtype": wrong_dtype, "shape": wrong_shape, "strided": strided, "list": arg.tolist()}


@pytest.mark.parametrize("name, args, spoil", _kernel_calls(), ids=[c[0] for c in _kernel_calls()])
def test_every_kernel_rejects_bad_arrays(name, args, spoil):
    kernel = getattr(cy, name.split("-")[0])
    kernel(*args)  # the good call works
    for index in spoil:
        for what, bad in _spoiled(args[index]).items():
            spoilt = list(args)
            spoilt[index] = bad
            with pytest.raises((TypeError, ValueError)):
                kernel(*spoilt)
                pytest.fail(f"{name}: argument {index} with bad {what} was accepted")


def test_missing_preactivation_buffer_is_rejected():
    x, W, b, a = _f(4, 3), _f(3, 2), _f(2), _f(4, 2)
    for act in C.NEEDS_PREACTIVATION:
        with pytest.raises(ValueError, match="pre-activation"):
            cy.dense_forward(x, W, b, act, 0.0, None, a)
        with pytest.raises(ValueError, match="pre-activation"):
            cy.dense_backward(x, W, None, a, a.copy(), act, 0.0, W.copy(), b.copy(), None)


def test_read_only_and_aliased_outputs_are_rejected():
    out = _f(4, 2)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        cy.dense_forward(_f(4, 3), _f(3, 2), _f(2), C.RELU, 0.0, None, out)
    with pytest.raises(ValueError):
        cy.mse(_f(4, 2), _f(4, 2), out)
    a = _f(4, 2)
    with pytest.raises(ValueError, match="overlaps"):
        cy.dense_forward(_f(4, 3), _f(3, 2), _f(2), C.GELU, 0.0, a, a)


def test_set_num_threads_validates():
    before = cy.get_num_threads()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            cy.set_num_threads(bad)
    assert cy.get_num_threads() == before
