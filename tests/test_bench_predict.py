"""fastnn.bench.predict on tiny sizes: rows, agreement of the runtimes, bad input (no timing)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import fastnn
from fastnn.bench import predict as bp

HAVE_ORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture
def model():
    return bp.mlp((8, 5, 3), seed=0)


def test_rows_for_every_fastnn_backend(model):
    predictors = bp.fastnn_predictors(model)
    rows = bp.measure_predict(predictors, 8, calls=7, warmup=1, batch=16, repeats=3, rounds=2)
    assert [r.name for r in rows] == [f"fastnn-{b}" for b in fastnn.available_backends()]
    for r in rows:
        assert 0 < r.latency_median_us <= r.latency_p99_us and r.throughput > 0
        assert r.first_batch_ms > 0
        assert (r.calls, r.batch, r.repeats) == (7, 16, 3)
        assert r.max_abs_diff < 1e-5  # the same weights on every backend
    assert model.backend is None  # the shallow copies carried the backend, not the model


@pytest.mark.skipif(not HAVE_ORT, reason="needs onnx and onnxruntime: pip install 'fastnn[onnx]'")
def test_onnxruntime_predictor_agrees(model):
    predictors = [*bp.fastnn_predictors(model, ["numpy"]), bp.onnxruntime_predictor(model, 1)]
    rows = bp.measure_predict(predictors, 8, calls=3, warmup=0, batch=4, repeats=1, rounds=1)
    assert rows[1].name == "onnxruntime" and rows[1].max_abs_diff < 1e-5
    table = bp.format_rows(rows)
    assert "onnxruntime" in table and "p50/onnx" in table


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_torch_predictor_agrees(model):
    predictors = [*bp.fastnn_predictors(model, ["numpy"]), bp.torch_predictor(model)]
    rows = bp.measure_predict(predictors, 8, calls=3, warmup=0, batch=4, repeats=1, rounds=1)
    assert rows[1].name == "torch" and rows[1].max_abs_diff < 1e-5


def test_a_predictor_that_disagrees_shows_it(model):
    right = bp.fastnn_predictors(model, ["numpy"])[0]
    wrong = ("wrong", lambda x: model.predict_proba(x) + 1.0)
    rows = bp.measure_predict([right, wrong], 8, calls=2, warmup=0, batch=4, repeats=1)
    assert rows[0].max_abs_diff == 0 and rows[1].max_abs_diff == pytest.approx(1.0)
    assert "p50/onnx" not in bp.format_rows(rows)  # no baseline row, no ratio columns


def test_bad_input(model):
    good = bp.fastnn_predictors(model, ["numpy"])
    with pytest.raises(ValueError, match="at least one predictor"):
        bp.measure_predict([], 8)
    with pytest.raises(ValueError, match="calls must be >= 1"):
        bp.measure_predict(good, 8, calls=0)
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        bp.measure_predict(good, 8, warmup=-1)
    flat = ("flat", lambda x: np.zeros(len(x)))
    with pytest.raises(ValueError, match="predictor 'flat' returned shape"):
        bp.measure_predict([flat], 8, calls=1, batch=2, repeats=1)
    narrow = ("narrow", lambda x: np.zeros((len(x), 2)))
    with pytest.raises(ValueError, match="predictor 'narrow' returned shape"):
        bp.measure_predict([*good, narrow], 8, calls=1, batch=2, repeats=1)


def test_main_prints_a_table(capsys):
    assert bp.main(["--sizes", "6,4,3", "--calls", "3", "--warmup", "0", "--batch", "8",
                    "--repeats", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("predictor") and "fastnn-numpy" in out
