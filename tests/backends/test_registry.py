"""Backend choice: names, "auto", the environment variable and the fallback warning."""

from __future__ import annotations

import warnings

import pytest

import fastnn
from fastnn import backends


@pytest.fixture
def registry(monkeypatch):
    """Isolate the registry's module state; pretend "numba" failed to load."""
    monkeypatch.setattr(backends, "_current", None)
    monkeypatch.setattr(backends, "_loaded", dict(backends._loaded))
    monkeypatch.setattr(backends, "_failures", {"numba": "ImportError: pretend"})
    monkeypatch.setattr(backends, "_warned", set())
    backends._loaded.pop("numba", None)
    return backends


def test_unavailable_backend_by_name_warns_once_and_falls_back(registry):
    with pytest.warns(RuntimeWarning, match="'numba' is unavailable.*pretend"):
        assert registry.resolve_backend("numba").NAME == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry.resolve_backend("numba").NAME == "numpy"  # no second warning


def test_auto_skips_unavailable_backends_silently(registry):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        name = registry.resolve_backend("auto").NAME
    assert name != "numba" and name in fastnn.available_backends()
    assert registry.backend_status()["numba"] == "ImportError: pretend"


def test_environment_variable_and_set_backend(registry, monkeypatch):
    monkeypatch.setenv("FASTNN_BACKEND", "numpy")
    assert fastnn.get_backend() == "numpy"
    monkeypatch.setenv("FASTNN_BACKEND", "tpu")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        fastnn.get_backend()
    fastnn.set_backend("numpy")  # an explicit choice wins over the environment
    assert fastnn.get_backend() == "numpy"
