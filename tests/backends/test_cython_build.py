"""Installing fastnn without the Cython extension: the backend reports itself unavailable and
everything else works (the kernels are tested in ``test_cython.py``, the epoch in
``test_cython_epoch.py``). These build wheels, so they are slow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Building and importing without the extension ------------------------------------------------
def test_blocked_extension_leaves_a_working_numpy_fastnn():
    """With the compiled module missing the backend is reported unavailable; numpy trains."""
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        import numpy as np

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "fastnn.backends.cython._kernels":
                    raise ImportError("blocked by the test")
                return None

        sys.meta_path.insert(0, Block())
        from fastnn import backends
        from fastnn import _codes as C
        assert "cython" not in backends.available_backends(), backends.available_backends()
        assert "not built" in backends.backend_status()["cython"]
        B = backends.resolve_backend("auto")
        assert B.NAME != "cython"
        # A few steps of gradient descent through the kernels of the backend "auto" chose.
        rng = np.random.default_rng(0)
        X = rng.standard_normal((40, 5)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        W, b = np.zeros((5, 2), np.float32), np.zeros(2, np.float32)
        out, grad = np.zeros((40, 2), np.float32), np.zeros((40, 2), np.float32)
        dW, db = np.zeros_like(W), np.zeros_like(b)
        losses = []
        for _ in range(20):
            B.dense_forward(X, W, b, C.IDENTITY, 0.0, None, out)
            losses.append(B.softmax_cross_entropy(out, y, grad))
            B.dense_backward(X, W, None, out, grad, C.IDENTITY, 0.0, dW, db, None)
            B.sgd_update(W.reshape(-1), dW.reshape(-1), 0.5, 0.0)
            B.sgd_update(b, db, 0.5, 0.0)
        assert losses[-1] < losses[0], losses
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _copy_sources(dest: Path) -> None:
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "fastnn", dest / "fastnn", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )


@pytest.mark.parametrize("how", ["FASTNN_NO_EXTENSIONS", "no compiler", "no Cython"])
def test_wheel_builds_without_the_extension(tmp_path, how):
    src = tmp_path / "src"
    src.mkdir()
    _copy_sources(src)
    env = dict(os.environ)
    if how == "FASTNN_NO_EXTENSIONS":
        env["FASTNN_NO_EXTENSIONS"] = "1"
    elif how == "no compiler":
        env["CC"] = str(tmp_path / "no-such-cc")
    else:
        fake = tmp_path / "fake" / "Cython"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('no Cython in this test')\n")
        env["PYTHONPATH"] = str(fake.parent)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-v",
           "-w", str(tmp_path / "dist"), str(src)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if how != "FASTNN_NO_EXTENSIONS":
        assert "without its Cython backend" in result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("fastnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastnn/backends/numpy/__init__.py" in names
    assert "fastnn/_codes.py" in names
    assert "fastnn/backends/cython/__init__.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


def test_sdist_ships_what_the_build_generates_codes_from(tmp_path):
    """``codes.pxd`` is generated, not shipped: the sdist holds the table and the template, and
    the generator runs on the unpacked sdist alone."""
    pytest.importorskip("Cython")
    from Cython import Tempita

    src = tmp_path / "src"
    src.mkdir()
    _copy_sources(src)
    (src / "fastnn" / "backends" / "cython" / "codes.pxd").write_text("# stale, never shipped\n")
    env = dict(os.environ, FASTNN_NO_EXTENSIONS="1")
    cmd = [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")]
    result = subprocess.run(cmd, cwd=src, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = (tmp_path / "dist").glob("fastnn-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    package = "fastnn/backends/cython/"
    assert {"fastnn/_codes.py", "setup.py", package + "codes.pxd.tp", package + "_kernels.pyx",
            package + "epoch.pxd"} <= names  # fmt: skip
    assert package + "codes.pxd" not in names
    (root,) = (tmp_path / "unpacked").iterdir()
    setup_text = (root / "setup.py").read_text().split("\nsetup(")[0]
    namespace = {"__file__": str(root / "setup.py"), "__name__": "fastnn_setup"}
    exec(compile(setup_text, "setup.py", "exec"), namespace)  # everything but setup() itself
    generated = Path(namespace["generate_codes"](Tempita)).read_text()
    assert "    GELU_TANH = 7\n" in generated
