"""``fastnn compile`` and the precompiled store (numba ``jit.py`` Design H, ``precompile.py``).

The round trip runs fresh processes: one fills a store for one kind of fit, then a process
with an empty ``NUMBA_CACHE_DIR`` fits a *different* net of that kind (other widths, depth,
activations, batch size) and must compile nothing; the same process with a store whose stamp
is not its sources' must compile. Every store lives in a temporary directory named by
``FASTNN_NUMBA_PRECOMPILED``, never beside the package.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

from fastnn import cli  # noqa: E402
from fastnn.backends.numba import jit, precompile  # noqa: E402

# A fit unlike the workloads' (784-32-10 relu, batch 64: other sizes, depth, activations and
# batch size) but of the same kind (float32, cross-entropy, plain SGD): the store must serve it
# whole. Prints the kernels compiled.
CHILD = textwrap.dedent("""
    import json, numpy as np
    from numba.core import event
    compiled = []
    class Listen(event.Listener):
        def on_start(self, ev):
            pass
        def on_end(self, ev):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    event.register("numba:compile", Listen())
    import fastnn
    rng = np.random.default_rng(1)
    X = rng.random((300, 50)).astype(np.float32)
    X[X < 0.5] = 0
    y = rng.integers(0, 3, 300)
    model = fastnn.Sequential([fastnn.Dense(50, 17, "tanh"), fastnn.Dense(17, 9, "gelu"),
                               fastnn.Dense(9, 3)], seed=0)
    model.fit(X, y, optimizer=fastnn.SGD(0.1), batch_size=7, epochs=2, backend="numba")
    model.predict_proba(X[:1]); model.predict_proba(X)
    print(json.dumps(compiled))
""")


def _child(store: Path, tmp_path: Path, name: str) -> list[str]:
    cache = tmp_path / f"cache-{name}"
    env = {**os.environ, jit.STORE_ENV: str(store), "NUMBA_CACHE_DIR": str(cache)}
    env.pop(jit.FILLING_ENV, None)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def _restamp(index: Path, stamp: object) -> None:
    """Rewrite a Numba index file with another source stamp (its format: version, then the
    pickled (stamp, overloads))."""
    with open(index, "rb") as f:
        version = pickle.load(f)
        _, overloads = pickle.loads(f.read())
    with open(index, "wb") as f:
        pickle.dump(version, f, protocol=-1)
        f.write(pickle.dumps((stamp, overloads), protocol=-1))


def test_a_filled_store_serves_every_fit_of_its_kind_and_a_stale_one_none(tmp_path):
    store = tmp_path / "store"
    report = precompile.compile_store(["float32"], ["cross_entropy"], ["sgd"], store=store,
                                      progress=False)  # fmt: skip
    assert report.store == store.resolve() and report.workloads == 7
    indexes = sorted(store.glob("*.nbi"))
    assert report.entries == len(indexes) > 10
    assert not list(tmp_path.glob("store.*"))  # no temporary directory left beside it
    with open(indexes[0], "rb") as f:
        pickle.load(f)
        stamp, _ = pickle.loads(f.read())
    assert stamp == ("precompiled", jit.sources_stamp())  # file times play no part

    assert _child(store, tmp_path, "fresh") == []

    stale = tmp_path / "stale"
    shutil.copytree(store, stale)
    for index in stale.glob("*.nbi"):
        _restamp(index, ("precompiled", "0" * 64))
    compiled = _child(stale, tmp_path, "stale")
    assert "_train_epoch" in compiled and len(compiled) > 10


def test_a_failed_compile_keeps_the_old_store_and_leaves_nothing(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    (store / "old.nbi").write_bytes(b"old")

    def fail(cmd, env, **kwargs):  # the child wrote part of a store, then died
        Path(env[jit.STORE_ENV]).mkdir()
        (Path(env[jit.STORE_ENV]) / "half.nbi").write_bytes(b"half")
        return subprocess.CompletedProcess(cmd, 1, stdout="")

    monkeypatch.setattr(precompile.subprocess, "run", fail)
    with pytest.raises(RuntimeError, match="store at .* is unchanged"):
        precompile.compile_store(store=store, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
    assert [p.name for p in store.iterdir()] == ["old.nbi"]


@pytest.mark.parametrize("kwargs, match", [
    ({"dtypes": ["float16"]}, "unknown dtype"),
    ({"losses": ["hinge"]}, "unknown loss"),
    ({"optimizers": []}, "unknown optimizer"),
])  # fmt: skip
def test_unknown_kinds_are_refused_before_anything_runs(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        precompile.compile_store(store=tmp_path / "store", progress=False, **kwargs)
    assert not (tmp_path / "store").exists()


def test_a_store_turned_off_or_read_only_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(jit.STORE_ENV, "off")
    assert jit.store_dir() is None
    with pytest.raises(ValueError, match="turned off"):
        precompile.compile_store(progress=False)
    monkeypatch.delenv(jit.STORE_ENV)
    assert jit.store_dir() == jit.PACKAGE / "_precompiled"
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shelf.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="read-only"):
            precompile.compile_store(store=shelf / "store", progress=False)
    finally:
        shelf.chmod(0o755)


def test_cli_status_and_clear(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.nbi").write_bytes(b"x" * 2048)
    assert cli.main(["compile", "--store", str(store), "--status"]) == 0
    assert f"{store}: 1 kernels" in capsys.readouterr().out
    assert cli.main(["compile", "--store", str(store), "--clear"]) == 0
    assert "deleted" in capsys.readouterr().out and not store.exists()
    assert cli.main(["compile", "--store", str(store), "--dtypes", "int8"]) == 1
    assert "unknown dtype" in capsys.readouterr().err
