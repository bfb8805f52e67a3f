"""Training flushes denormals on every thread that computes, and gives the caller its own
floating-point mode back (fastnn.denormals)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _codes as C
from fastnn import denormals
from fastnn.backends import load_backend

TINY = np.float32(1e-20)  # normal; the product of two is 1e-40, a float32 subnormal
COMPILED = [name for name in ("numba", "cython") if name in fastnn.available_backends()]

needs_flush = pytest.mark.skipif(not fastnn.flush_denormals_supported(),
                                 reason="no way to flush denormals here (x86-64 + a compiled "
                                        "backend)")  # fmt: skip


def _bits() -> int:
    swap = denormals._swapper()
    old = swap(0)
    swap(old)
    return old


@pytest.fixture(autouse=True)
def default_setting():
    yield
    denormals._enabled = None


@pytest.fixture
def two_threads():
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    yield
    fastnn.set_num_threads(before)


@needs_flush
def test_training_mode_flushes_this_thread_and_restores_its_bits():
    assert fastnn.get_flush_denormals()
    before = _bits()
    with denormals.training_mode():
        assert _bits() == denormals.FLUSH_BITS
        assert np.float32(TINY * TINY) == 0  # NumPy on this thread flushes too
    assert _bits() == before
    assert np.float32(TINY) * np.float32(TINY) != 0


@needs_flush
def test_turned_off_training_mode_leaves_the_register_alone():
    fastnn.set_flush_denormals(False)
    before = _bits()
    with denormals.training_mode():
        assert _bits() == before


@needs_flush
def test_the_environment_turns_it_off_and_info_reports_it(monkeypatch):
    from fastnn.cli_info import collect

    assert collect()["flush_denormals"] == {"supported": True, "enabled": True}
    monkeypatch.setenv("FASTNN_FLUSH_DENORMALS", "0")
    assert not fastnn.get_flush_denormals()
    assert collect()["flush_denormals"]["enabled"] is False
    fastnn.set_flush_denormals(True)  # the call wins over the environment
    assert fastnn.get_flush_denormals()


def test_bad_setting_is_refused():
    with pytest.raises(TypeError, match="bool"):
        fastnn.set_flush_denormals(1)


def test_asking_for_an_unsupported_flush_raises(monkeypatch):
    monkeypatch.setattr(denormals, "flush_denormals_supported", lambda: False)
    with pytest.raises(RuntimeError, match="cannot flush denormals"):
        fastnn.set_flush_denormals(True)
    fastnn.set_flush_denormals(False)  # turning it off always works


class _ModeSeen(fastnn.Callback):
    """A per-iteration callback (as the schedules are): records the bits between batches."""

    per_iteration = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()

    def next_rate(self) -> float:
        self.seen.add(_bits())
        return 0.01


@needs_flush
@pytest.mark.parametrize("flush", [True, False])
def test_fit_trains_in_the_chosen_mode_and_returns_the_callers(flush):
    fastnn.set_flush_denormals(flush)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = fastnn.Sequential([fastnn.Dense(5, 4, "relu"), fastnn.Dense(4, 3)], seed=0)
    seen = _ModeSeen()
    before = _bits()
    model.fit(X, y, epochs=1, batch_size=16, backend="numpy", callbacks=[seen])
    assert seen.seen == {denormals.FLUSH_BITS if flush else before}
    assert _bits() == before


@needs_flush
@pytest.mark.parametrize("backend", COMPILED)
def test_every_team_thread_computes_under_the_callers_mode(backend, two_threads):
    """64 images of tiny values on two threads: with the flush, every output (1e-40 before
    rounding) is exactly zero, whichever thread computed it; without, none is."""
    B = load_backend(backend)
    x = np.full((64, 4, 16, 16), TINY, np.float32)
    W = np.full((16, 4, 3, 3), TINY, np.float32)
    b = np.zeros(16, np.float32)
    out = np.empty((64, 16, 14, 14), np.float32)
    for _ in range(8):  # the Cython team times serial and parallel calls first: both run
        with denormals.training_mode():
            B.conv2d_forward(x, W, b, 1, 0, C.ACTIVATION_CODES["identity"], 0.0, None, out)
        assert not out.any()
    B.conv2d_forward(x, W, b, 1, 0, C.ACTIVATION_CODES["identity"], 0.0, None, out)
    assert out.all()  # subnormal, not flushed: the register was given back


@needs_flush
def test_adam_state_holds_no_subnormals_after_a_flushed_fit():
    """Features of 1e-20 give weight gradients of ~1e-21, whose squares Adam's second moment
    keeps: subnormal without the flush, zero with it."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((128, 6)).astype(np.float32)
    X[:, 3:] *= TINY
    y = rng.integers(0, 2, 128)
    tiny = np.finfo(np.float32).tiny
    for flush in (False, True):
        fastnn.set_flush_denormals(flush)
        model = fastnn.Sequential([fastnn.Dense(6, 8, "relu"), fastnn.Dense(8, 2)], seed=0)
        opt = fastnn.Adam(1e-3)
        model.fit(X, y, epochs=2, batch_size=32, optimizer=opt, backend="numpy")
        v = np.concatenate([np.ravel(s) for s in opt.state])
        subnormal = np.count_nonzero((v != 0) & (np.abs(v) < tiny))
        assert (subnormal == 0) == flush
