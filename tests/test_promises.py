"""Promises fastnn makes about training, held on every backend that loads (docs/reliability.md).

- Two threads each fitting its own model at once give exactly the weights the same two fits
  give one after the other.
- A KeyboardInterrupt in the middle of a fit leaves a finite model that predicts, saves, loads
  and trains on.
- The same seed, backend and thread count give bitwise-identical weights in two fresh
  processes; with the Cython backend, and with Numba below full batch, also across thread
  counts.

Fits that run threads, or that must start in a fresh process, run in a subprocess: a backend
that changed process-wide state (BLAS threads) cannot leak it into the other tests, and a
crash shows as a failure instead of ending the test run. The cython backend is present only
where the extension was built (``python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.datasets import make_blobs

BACKENDS = fastnn.available_backends()
THREADS = (1, 2)
RUNS = 2

# Shared by the subprocesses: a deterministic problem, a fit, and a digest of the weights.
COMMON = textwrap.dedent(
    """
    import hashlib, json, sys, threading
    import fastnn
    from fastnn.datasets import make_blobs

    X, y = make_blobs(3000, 32, 5, seed=4, dtype="float32")

    def fit(seed, backend, batch_size=64):
        model = fastnn.Sequential(
            [fastnn.Dense(32, 64, "relu"), fastnn.Dense(64, 32, "tanh"), fastnn.Dense(32, 5)],
            seed=seed,
        )
        model.fit(X, y, optimizer=fastnn.Adam(3e-3), batch_size=batch_size, epochs=3,
                  seed=seed, backend=backend)
        digest = hashlib.sha256()
        for w in model.get_weights():
            digest.update(w.tobytes())
        return digest.hexdigest()
    """
)

CONCURRENT = COMMON + textwrap.dedent(
    """
    backend = sys.argv[1]
    alone = [fit(seed, backend) for seed in (1, 2)]
    together = [None, None]
    start = threading.Barrier(2)

    def worker(i):
        start.wait()  # both fits begin at once
        together[i] = fit(i + 1, backend)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"alone": alone, "together": together}))
    """
)

FRESH = COMMON + textwrap.dedent(
    """
    backend, threads, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fastnn.set_num_threads(threads)
    print(json.dumps(fit(7, backend, None if batch == "full" else int(batch))))
    """
)


def run_python(code: str, *args: str) -> object:
    root = str(Path(fastnn.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    env.pop("FASTNN_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------- thread safety


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_fitting_at_once_equal_the_fits_one_after_the_other(backend):
    result = run_python(CONCURRENT, backend)
    assert result["alone"][0] != result["alone"][1]  # two different fits, not one twice
    assert result["together"] == result["alone"]


# ------------------------------------------------------------------- interruption


class InterruptAt:
    """A callback that raises KeyboardInterrupt at the given hook call, as Ctrl-C would."""

    wants_progress = True

    def __init__(self, hook: str, epoch: int, call: int = 0) -> None:
        self.hook, self.epoch, self.call, self.seen = hook, epoch, call, 0

    def __getattr__(self, name: str):
        if not name.startswith("on_"):
            raise AttributeError(name)

        def hook(epoch: int = -1, *args, **kwargs) -> None:
            if name == "on_progress":
                self.iterations = args[0]  # batches done so far in this epoch
            if name == self.hook and epoch == self.epoch:
                if self.seen == self.call:
                    raise KeyboardInterrupt
                self.seen += 1

        return hook

    def set_context(self, model, history, params) -> None:
        pass


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "where",
    [("on_progress", 1, 3), ("on_epoch_end", 0, 0), ("on_epoch_begin", 2, 0)],
    ids=["mid-epoch", "epoch-end", "epoch-begin"],
)
@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_keyboard_interrupt_leaves_a_usable_model(tmp_path, backend, where, optimizer):
    X, y = make_blobs(600, 10, 4, seed=1, dtype="float32")
    model = fastnn.Sequential([fastnn.Dense(10, 16, "relu"), fastnn.Dense(16, 4)], seed=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, optimizer=optimizer, batch_size=16, epochs=4, backend=backend,
                  callbacks=[InterruptAt(*where)])  # fmt: skip
    assert all(np.isfinite(p).all() for p in model.parameters())
    before = model.predict_proba(X)
    assert np.isfinite(before).all()
    path = tmp_path / "interrupted.npz"
    model.save(path)
    loaded = fastnn.load(path)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The same weights; "auto" may predict with another backend, hence the float32 tolerance.
    np.testing.assert_allclose(loaded.predict_proba(X), before, rtol=1e-5, atol=1e-6)
    # And it trains on, from the interrupted weights.
    history = loaded.fit(X, y, optimizer=loaded.optimizer, epochs=1, backend=backend)
    assert np.isfinite(history.loss).all()
    assert all(np.isfinite(p).all() for p in loaded.parameters())


@pytest.mark.parametrize("epoch", [0, 1])
def test_interrupted_fit_keeps_the_optimizer_step_of_the_updates_made(epoch):
    X, y = make_blobs(600, 10, 4, seed=1, dtype="float32")
    model = fastnn.Sequential([fastnn.Dense(10, 16, "relu"), fastnn.Dense(16, 4)], seed=0)
    opt, stop = fastnn.Adam(), InterruptAt("on_progress", epoch, 3)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, optimizer=opt, batch_size=16, epochs=4, backend="numpy", callbacks=[stop])
    assert opt.state is not None
    assert opt.step == epoch * 38 + stop.iterations  # 38 batches per epoch


# ------------------------------------------------------------------- determinism


# (backend, threads, batch size): full batch too for numba, whose reductions differ there.
FRESH_SETTINGS = [(b, t, "64") for b in BACKENDS for t in THREADS]
FRESH_SETTINGS += [("numba", t, "full") for t in THREADS if "numba" in BACKENDS]


@pytest.fixture(scope="module")
def fresh_digests() -> dict[tuple[str, int, str], list[str]]:
    """Digests of the weights of the same fit in fresh processes, ``RUNS`` per setting."""
    return {
        s: [run_python(FRESH, s[0], str(s[1]), s[2]) for _ in range(RUNS)] for s in FRESH_SETTINGS
    }


@pytest.mark.parametrize("setting", FRESH_SETTINGS, ids=lambda s: "-".join(map(str, s)))
def test_same_seed_backend_threads_give_identical_weights_in_fresh_processes(
    fresh_digests, setting
):
    digests = fresh_digests[setting]
    assert len(set(digests)) == 1, digests


@pytest.mark.parametrize(
    ("backend", "batch"), [("cython", "64"), ("numba", "64")], ids=["cython", "numba-minibatch"]
)
def test_weights_do_not_depend_on_the_thread_count_where_promised(fresh_digests, backend, batch):
    if backend not in BACKENDS:
        pytest.skip(f"the {backend} backend is not available here")
    assert fresh_digests[(backend, 1, batch)][0] == fresh_digests[(backend, 2, batch)][0]
