"""fastnn._atomic: saves that a SIGKILL cannot break and that leave nothing behind.

The kill test runs a subprocess that saves one of two big models to the same path in a loop and
kills it at random moments: after each kill the file must load and be one of the two models,
and the next save must leave the directory holding that file only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import _atomic

MODES = ["o_tmpfile", "rename"]
KILLS = 10
# Two models of 8 MB each: a save takes long enough for kills to land inside it.
CHILD = textwrap.dedent(
    """
    import sys
    import fastnn
    from fastnn import _atomic

    path, mode = sys.argv[1], sys.argv[2]
    _atomic.USE_O_TMPFILE = mode == "o_tmpfile"
    models = [fastnn.Sequential([fastnn.Dense(1024, 2048)], seed=s) for s in (0, 1)]
    i = 0
    while True:
        models[i % 2].save(path)
        i += 1
        if i == 2:
            print("saving", flush=True)
    """
)


def big_model(seed: int) -> fastnn.Sequential:
    return fastnn.Sequential([fastnn.Dense(1024, 2048)], seed=seed)


def child_env() -> dict[str, str]:
    root = str(Path(fastnn.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(autouse=True)
def default_mode(monkeypatch):
    monkeypatch.setattr(_atomic, "USE_O_TMPFILE", _atomic.USE_O_TMPFILE)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and the stale-file cleanup are POSIX")
@pytest.mark.parametrize("mode", MODES)
def test_killed_saves_leave_old_or_new_model_and_no_debris(tmp_path, mode):
    if mode == "o_tmpfile" and not _atomic.USE_O_TMPFILE:
        pytest.skip("O_TMPFILE is Linux-only")
    path = tmp_path / "model.npz"
    weights = [big_model(s).layers[0].W for s in (0, 1)]
    big_model(0).save(path)
    rng = np.random.default_rng(16)
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), mode],
            stdout=subprocess.PIPE, env=child_env(), cwd=tmp_path,
        )  # fmt: skip
        try:
            assert proc.stdout.readline() == b"saving\n"  # two saves done: the loop is running
            # A random moment within a few saves (each writes 8 MB and syncs it).
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # reaped: a zombie would still count as a live process
        assert proc.returncode == -signal.SIGKILL
        W = fastnn.load(path).layers[0].W
        assert any(np.array_equal(W, w) for w in weights)  # the old or the new model
        fastnn.load(path).save(path)  # the next save removes what the killed one left
        assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.skipif(os.name != "posix", reason="the stale-file cleanup is POSIX")
@pytest.mark.parametrize("mode", MODES)
def test_save_removes_temporaries_of_dead_processes_only(tmp_path, mode, monkeypatch):
    monkeypatch.setattr(_atomic, "USE_O_TMPFILE", mode == "o_tmpfile" and _atomic.USE_O_TMPFILE)
    path = tmp_path / "model.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".model.npz.{dead_pid}.0123abcd.tmp",
            "live": f".model.npz.{live.pid}.0123abcd.tmp",
            "other-file": f".other.npz.{dead_pid}.0123abcd.tmp",
            "not-ours": f".model.npz.{dead_pid}.notahexx.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        big_model(0).save(path)
    finally:
        live.kill()
        live.wait()
    left = set(os.listdir(tmp_path))
    assert names["dead"] not in left
    assert {names["live"], names["other-file"], names["not-ours"], "model.npz"} == left
    np.testing.assert_array_equal(fastnn.load(path).layers[0].W, big_model(0).layers[0].W)


@pytest.mark.parametrize("mode", MODES)
def test_failed_write_leaves_the_old_file_and_nothing_else(tmp_path, mode, monkeypatch):
    monkeypatch.setattr(_atomic, "USE_O_TMPFILE", mode == "o_tmpfile" and _atomic.USE_O_TMPFILE)
    path = tmp_path / "data.bin"
    _atomic.write_atomic(path, lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic.write_atomic(path, failing)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_anonymous_file_is_used_on_linux(tmp_path, monkeypatch):
    if not _atomic.USE_O_TMPFILE:
        pytest.skip("O_TMPFILE is Linux-only")
    seen = []

    def spy(f):
        seen.append(sorted(os.listdir(tmp_path)))  # while writing: no name in the directory
        f.write(b"new")

    _atomic.write_atomic(tmp_path / "x.bin", spy)
    assert seen == [[]]
    assert (tmp_path / "x.bin").read_bytes() == b"new"


def test_saved_file_honours_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        _atomic.write_atomic(tmp_path / "x.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    if os.name == "posix":
        assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o640
