"""``fastnn.threads``: one knob for BLAS and every loaded backend's thread pool."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import fastnn
from fastnn import threads


@pytest.fixture
def isolated(monkeypatch):
    """The module's record restored after the test, and BLAS limits recorded, not applied."""
    monkeypatch.setattr(threads, "_num_threads", threads._num_threads)
    calls = []
    monkeypatch.setattr(threads, "threadpool_limits", lambda limits=None: calls.append(limits))
    return calls


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_thread_counts_are_refused(isolated, bad):
    before = fastnn.get_num_threads()
    with pytest.raises(ValueError, match="integer >= 1"):
        fastnn.set_num_threads(bad)
    assert fastnn.get_num_threads() == before and isolated == []


def test_set_reaches_blas_and_every_loaded_backend_with_a_pool(isolated, monkeypatch):
    seen = []
    pooled = SimpleNamespace(NAME="pooled", set_num_threads=seen.append)
    plain = SimpleNamespace(NAME="plain")  # the reference has no pool of its own
    modules = {"plain": plain, "pooled": pooled}
    monkeypatch.setattr(threads.backends, "available_backends", lambda: list(modules))
    monkeypatch.setattr(threads.backends, "load_backend", modules.get)
    fastnn.set_num_threads(3)
    assert isolated == [3] and seen == [3]
    assert fastnn.get_num_threads() == 3


def test_default_is_the_cpu_count(isolated, monkeypatch):
    monkeypatch.setattr(threads, "_num_threads", None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 6)
    assert fastnn.get_num_threads() == 6
    monkeypatch.setattr(threads.os, "cpu_count", lambda: None)
    assert fastnn.get_num_threads() == 1


def test_thread_pools_report_only_known_keys():
    pools = threads.thread_pools(load_blas=True)
    assert pools, "NumPy's BLAS should be listed once loaded"
    for pool in pools:
        assert set(pool) <= set(threads.POOL_KEYS) and "user_api" in pool
        assert pool["num_threads"] >= 1
