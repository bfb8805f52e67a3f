"""``fastnn.backends.numba.jit`` and the package import: JIT flags, the stamped disk cache.

The cache tests run fresh processes on a copy of the ``fastnn`` package in a temporary
directory, so they can edit sources and place (or block) the cache at will:

- a stale cache is never used, wherever the cache lives (``NUMBA_CACHE_DIR``, the package's
  ``__pycache__``, the user-wide cache): a kernel is compiled and cached, a second process
  loads it from there (the cache is live), then two optimizer codes are swapped in the copy's
  ``_codes.py`` (a file the kernel's own file does not change with) and a third process must
  compile afresh and give the reference's numbers;
- with nothing writable for a cache the package still imports and runs, uncached, with one
  warning. Every cache place is blocked by a *file* standing where a directory must go, which
  holds also when the tests run as root (for whom read-only permissions do not apply).

One small kernel (``update_by_code``) is compiled per process to keep the time bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

import fastnn  # noqa: E402
from fastnn.backends.numba import activations, dense, epoch, jit, losses, optim, sparse  # noqa: E402

MODULES = (activations, dense, epoch, jit, losses, optim, sparse)


def test_jit_flags_keep_the_non_finite_check():
    assert not {"nnan", "ninf", "fast"} & set(jit.JIT_OPTIONS["fastmath"])
    assert "parallel" not in jit.JIT_OPTIONS
    assert "cache" not in jit.JIT_OPTIONS and jit.CACHE is True  # kernel() attaches the cache


def test_every_kernel_is_stamped_with_every_source():
    from numba.core.dispatcher import Dispatcher

    package = Path(jit.__file__).parent
    assert set(jit.stamped_files()) == set(package.glob("*.py")) | {
        Path(fastnn.__file__).parent / "_codes.py"
    }
    kernels = [
        obj for m in MODULES for obj in vars(m).values()
        if isinstance(obj, Dispatcher) and obj.py_func.__module__ == m.__name__
    ]  # fmt: skip
    assert len(kernels) > 20
    for k in kernels:
        assert type(k._cache).__name__ == "_StampedCache", k
        assert k._cache._cache_file._source_stamp[1] == jit.sources_stamp(), k


PROBE = """
    import json, warnings
    import numpy as np
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastnn.backends as B
        status = B.backend_status()["numba"]
        from fastnn import _codes as C
        from fastnn.backends import numpy as ref
        from fastnn.backends.numba import jit, optim
        p, g, m, v = (np.linspace(-1.0, 1.0, 5) + i for i in range(4))
        expected = p.copy()
        ref.adam_update(expected, g.copy(), m.copy(), v.copy(), 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
        hyper = np.array([0.1, 0.9, 0.0, 0.0, 0.9, 0.999, 1e-8])
        optim.update_by_code(C.OPT_ADAM, p, g, m, v, hyper, 1)
    stats = optim.update_by_code.stats
    print(json.dumps({
        "ok": bool(np.allclose(p, expected, rtol=1e-12)), "status": status,
        "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
        "path": str(getattr(optim.update_by_code._cache, "cache_path", None) or ""),
        "file": optim.__file__, "reason": jit.uncached_reason(),
        "warnings": sum("uncached" in str(w.message) for w in caught),
    }))
"""


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "_precompiled", "*.so", "*.c", "*.html")
    shutil.copytree(Path(fastnn.__file__).parent, src / "fastnn", ignore=ignore)
    return src


def _probe(src: Path, **env: str) -> dict:
    base = {
        k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NUMBA_DEBUG_CACHE")
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE)],
        env={**base, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1", **env},
        cwd=src.parent, capture_output=True, text=True, timeout=600,  # cwd: "" on sys.path
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(src), info  # the copy, not the installed fastnn
    return info


def _swap_optimizer_codes(src: Path) -> None:
    codes = src / "fastnn" / "_codes.py"
    text = codes.read_text()
    text, n = re.subn(r"^OPT_MOMENTUM = 1\b", "OPT_MOMENTUM = 2", text, flags=re.M)
    text, m = re.subn(r"^OPT_ADAM = 2\b", "OPT_ADAM = 1", text, flags=re.M)
    assert n == m == 1, "the code table changed: update this test"
    codes.write_text(text)


@pytest.mark.parametrize("where", ["NUMBA_CACHE_DIR", "in-tree", "user-wide"])
def test_stale_cache_is_never_used(tmp_path, where):
    src = _copy_package(tmp_path)
    numba_dir = src / "fastnn" / "backends" / "numba"
    env, cache = {}, numba_dir / "__pycache__"
    if where == "NUMBA_CACHE_DIR":
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
        cache = tmp_path / "numba-cache"
    elif where == "user-wide":
        (numba_dir / "__pycache__").write_text("a file: no in-tree cache")
        env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
        cache = tmp_path / "xdg"
    first = _probe(src, **env)
    assert first["ok"] and first["misses"] >= 1 and first["hits"] == 0, first
    assert Path(first["path"]).is_relative_to(cache), first
    assert list(Path(first["path"]).glob("optim.update_by_code-*.nbi")), first
    second = _probe(src, **env)
    assert second["ok"] and second["hits"] >= 1, ("the cache is not live", second)
    _swap_optimizer_codes(src)
    third = _probe(src, **env)
    assert third["hits"] == 0, ("stale machine code loaded", third)
    assert third["ok"], third


def test_unwritable_cache_runs_uncached_with_one_warning(tmp_path):
    src = _copy_package(tmp_path)
    (src / "fastnn" / "backends" / "numba" / "__pycache__").write_text("blocks the in-tree cache")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("every cache directory would have to be below this file")
    env = {"NUMBA_CACHE_DIR": str(blocker / "numba"), "XDG_CACHE_HOME": str(blocker / "xdg"),
           "HOME": str(blocker / "home")}  # fmt: skip
    info = _probe(src, **env)
    assert info["status"] == "ok" and info["ok"], info
    assert info["warnings"] == 1 and info["reason"], info
    assert info["path"] == "" and info["hits"] == 0, info  # Numba's null cache


def test_missing_numba_is_an_import_error():
    code = """
        import sys
        sys.modules["numba"] = None  # what Python does for a package that is not installed
        try:
            import fastnn.backends.numba
        except ImportError as exc:
            print("ImportError:", exc)
        import fastnn.backends as B
        print(B.available_backends())
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ImportError:" in result.stdout and "'numba'" not in result.stdout.splitlines()[-1]


# The epoch is compiled per (loss, optimizer) (epoch.py Design E, jit.py Design G) ------------
EPOCH_PROBE = """
    import copy, json, sys
    import numpy as np
    from fastnn import _codes as C
    from fastnn.backends import eager, numba as nb, numpy as ref
    from fastnn.backends.numba import epoch, losses, optim
    from fastnn.backends.workspace import Workspace
    from fastnn.layers import Dense

    rng = np.random.default_rng(0)
    X = rng.standard_normal((18, 12)); X[rng.random((18, 12)) < 0.6] = 0
    hyper = np.array([0.1, 0.9, 1.0, 0.01, 0.9, 0.999, 1e-8])
    layers = [Dense(12, 5, "tanh"), Dense(5, 4)]
    for layer in layers:
        layer.build((layer.in_features,), rng, np.float64)
    out = {}
    for loss, opt in json.loads(sys.argv[1]):
        y = rng.integers(0, 4, 18) if loss == C.LOSS_CROSS_ENTROPY else rng.random((18, 4))
        wss = []
        for run in (nb.train_epoch, lambda *a: eager.eager_epoch(ref, *a)):
            ws = Workspace(copy.deepcopy(layers), [C.TANH, C.IDENTITY], loss, opt, hyper, 4,
                           np.float64)
            assert run(ws, X, y, np.arange(18), 4, np.zeros(5)) == 5
            wss.append(ws)
        for u, v in zip(wss[0].weights + wss[0].biases, wss[1].weights + wss[1].biases):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
        stats = epoch.train_epoch_kernel(loss, opt).stats
        out[f"{loss},{opt}"] = {"hits": sum(stats.cache_hits.values()),
                                "misses": sum(stats.cache_misses.values())}
    compiled = {f"{k.py_func.__module__}.{k.__name__}" for m in (losses, optim)
                for k in vars(m).values() if getattr(k, "signatures", None)}
    print(json.dumps({"epochs": out, "compiled": sorted(compiled)}))
"""


def _epoch_probe(pairs: list[tuple[int, int]], cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(EPOCH_PROBE), json.dumps(pairs)],
        env={**env, "NUMBA_CACHE_DIR": str(cache)}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_epoch_compiles_only_its_loss_and_optimizer_and_caches_each_pair(tmp_path):
    """A fit compiles the one loss and optimizer it uses (not all five and three), and the
    pairs share the cache files without ever loading each other's machine code."""
    from fastnn import _codes as C

    cache = tmp_path / "numba-cache"
    mse_adam, bce_momentum = (C.LOSS_MSE, C.OPT_ADAM), (C.LOSS_BINARY_CROSS_ENTROPY, C.OPT_MOMENTUM)
    first = _epoch_probe([mse_adam], cache)  # empty cache: compiles
    assert first["epochs"]["0,2"] == {"hits": 0, "misses": 1}, first
    # Only the epoch's own loss and step kernels (adam_step calls adam_update) were compiled.
    prefix = "fastnn.backends.numba."
    assert first["compiled"] == [prefix + "losses.mse", prefix + "optim.adam_step",
                                 prefix + "optim.adam_update"], first  # fmt: skip
    second = _epoch_probe([bce_momentum, mse_adam], cache)
    assert second["epochs"]["3,1"] == {"hits": 0, "misses": 1}, ("loaded another pair", second)
    assert second["epochs"]["0,2"] == {"hits": 1, "misses": 0}, ("the cache is not live", second)
    assert prefix + "losses.mse" not in second["compiled"], second


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_depth_but_one_hidden_layer_shares_one_compiled_epoch(dtype):
    """jit.py Design I: padded per-layer tuples. Every depth gives the reference's weights and
    probabilities; after the first padded depth no other adds a specialization of the epoch
    or of predict; a one-hidden-layer net keeps a tuple of its own (two entries)."""
    import numpy as np

    from fastnn import _codes as C
    from fastnn.backends.numba import predict

    rng = np.random.default_rng(3)
    X = rng.random((90, 12)).astype(dtype)
    X[X < 0.5] = 0
    y = rng.integers(0, 3, 90)
    kernels = (epoch.train_epoch_kernel(C.LOSS_CROSS_ENTROPY, C.OPT_SGD),
               predict.predict_dense_kernel)  # fmt: skip
    tol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    first = None
    for hidden in ([], [9, 5], [6, 6, 4], [5, 4, 4, 3], [7]):  # the unpadded depth last
        sizes = [12, *hidden, 3]
        fitted = {}
        for backend in ("numpy", "numba"):
            pairs = zip(sizes[:-2], sizes[1:-1], strict=True)
            layers = [fastnn.Dense(a, b, "tanh") for a, b in pairs]
            model = fastnn.Sequential([*layers, fastnn.Dense(sizes[-2], 3)], seed=1, dtype=dtype)
            model.fit(X, y, optimizer=fastnn.SGD(0.2), batch_size=8, epochs=2, backend=backend)
            fitted[backend] = (model.get_weights(), model.predict_proba(X))
        for want, got in zip(fitted["numpy"][0], fitted["numba"][0], strict=True):
            np.testing.assert_allclose(got, want, rtol=10 * tol, atol=tol)
        np.testing.assert_allclose(fitted["numba"][1], fitted["numpy"][1], rtol=10 * tol, atol=tol)
        signatures = [set(k.signatures) for k in kernels]
        if len(hidden) != 1:
            first = first or signatures
            assert signatures == first, f"{len(hidden)} hidden layers compiled again"
    assert len(jit.layer_tuple([X, X])) == 2 and len(jit.layer_tuple([X])) == jit.TUPLE_LAYERS
