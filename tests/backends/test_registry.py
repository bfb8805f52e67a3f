"""Backend choice (`fastnn.backends`): names, "auto", the environment variable, loading once
and the fallback warning."""

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


def test_backend_names(registry):
    with pytest.raises(ValueError, match="unknown backend"):
        fastnn.set_backend("gpu")
    with pytest.raises(TypeError, match="string"):
        fastnn.set_backend(3)
    assert "numpy" in fastnn.available_backends()
    assert fastnn.available_backends()[0] == "numpy"  # the reference first
    fastnn.set_backend(" NumPy ")  # names are trimmed and case-insensitive
    assert fastnn.get_backend() == "numpy"
    status = fastnn.backend_status()
    assert status["numpy"] == "ok" and set(status) == set(registry.BACKEND_NAMES)
    assert set(registry.AUTO_ORDER) == set(registry.BACKEND_NAMES)


def test_set_backend_warns_at_once_not_at_the_first_fit(registry):
    with pytest.warns(RuntimeWarning, match="'numba' is unavailable"):
        fastnn.set_backend("numba")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fastnn.get_backend() == "numpy"


def test_load_backend_loads_once_and_keeps_the_reason_of_a_failure(registry, monkeypatch):
    numpy_backend = registry.load_backend("numpy")
    calls = []

    def failing_import(name):
        calls.append(name)
        raise OSError("extension not built")

    monkeypatch.setattr(registry.importlib, "import_module", failing_import)
    registry._loaded.pop("cython", None)
    registry._failures.pop("cython", None)
    assert registry.load_backend("cython") is None
    assert registry.load_backend("cython") is None
    assert calls == ["fastnn.backends.cython"]  # the failure is remembered, not retried
    assert registry.backend_status()["cython"] == "OSError: extension not built"
    assert registry.available_backends()[0] == "numpy"
    assert "cython" not in registry.available_backends()
    assert registry.load_backend("numpy") is numpy_backend  # already loaded: no import
    assert calls == ["fastnn.backends.cython"]
