"""Every example runs as written (on a short setting) and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if data is not None:
        env["FASTNN_DATA"] = str(data.parent)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
        timeout=300, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_perceptron_learns_separable_problems_and_fails_on_xor():
    out = run_example("perceptron.py").stdout
    assert "1. two separable clouds (200 points): converged=True" in out
    assert re.search(r"AND: perceptron converged=True", out)
    assert re.search(r"OR : perceptron converged=True", out)
    assert re.search(r"XOR: perceptron converged=False", out)
    assert "predictions [0, 1, 1, 0] (want [0, 1, 1, 0]), accuracy 1.00" in out


def test_gradient_descent_modes(mnist_root, tmp_path):
    plot = tmp_path / "modes.png"
    args = ["--subset", "500", "--epochs", "2"]
    if _has_matplotlib():
        args += ["--plot", str(plot)]
    out = run_example("gradient_descent_modes.py", *args, data=mnist_root).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()[:1] in (["full-batch"], ["stochastic"], ["mini-batch"])}  # fmt: skip
    # mode, batch, lr, iterations/epoch, iterations, epochs, ...
    assert rows["full-batch"][1:2] + rows["full-batch"][3:6] == ["500", "1", "2", "2"]
    assert rows["stochastic"][1:2] + rows["stochastic"][3:6] == ["1", "500", "1000", "2"]
    assert rows["mini-batch"][1:2] + rows["mini-batch"][3:6] == ["64", "8", "16", "2"]
    if _has_matplotlib():
        assert plot.read_bytes()[:4] == b"\x89PNG"


def test_failure_modes_shows_each_failure_and_remedy(mnist_root):
    out = run_example("failure_modes.py", "--subset", "1000", "--epochs", "1",
                      data=mnist_root).stdout  # fmt: skip
    sections = out.split("\n=== ")[1:]
    assert len(sections) == 6
    vanishing, relu_he, high_lr, lower_lr, diverging, clipped = sections
    assert "gradients vanish" in vanishing and "ReLU instead of sigmoid" in vanishing
    for healthy in (relu_he, lower_lr, clipped):
        assert "warning:" not in healthy and "test accuracy" in healthy
    assert "the gradients explode" in high_lr
    assert "TrainingDivergedError" in diverging and "epoch 1, iteration" in diverging
    assert "weights are all finite: True" in diverging


def test_mnist_98_smoke_run(mnist_root):
    out = run_example("mnist_98.py", "--subset", "2000", "--epochs", "1", data=mnist_root).stdout
    assert re.search(r"test accuracy 0\.\d{4} after \d+\.\d\d s of training", out)
    from fastnn.recipes import MNIST_98

    iterations = -(-2000 // MNIST_98["batch_size"])
    assert f"{iterations} iterations, 1 epochs" in out


@pytest.mark.slow
def test_mnist_98_reaches_98_percent(mnist_root):
    """The full recipe (a few seconds with a compiled backend): exit code 0 means >= 98%."""
    out = run_example("mnist_98.py", data=mnist_root).stdout
    accuracy = float(re.search(r"test accuracy (0\.\d+) after", out).group(1))
    assert accuracy >= 0.98


def test_mnist_cnn_smoke_run(mnist_root):
    out = run_example("mnist_cnn.py", "--subset", "512", "--epochs", "1", "--backend", "numpy",
                      data=mnist_root).stdout  # fmt: skip
    assert "Conv2D(5x5, relu)" in out and "(None, 32, 5, 5)" in out
    assert re.search(r"test accuracy 0\.\d{4} after \d+\.\d\d s of training", out)
    assert "2 iterations" in out  # ceil(512 / 256)


@pytest.mark.slow
def test_mnist_cnn_reaches_99_percent(mnist_root):
    """MNIST_99 (two epochs) on the fastest backend: exit code 0 means >= 99%."""
    out = run_example("mnist_cnn.py", data=mnist_root).stdout
    accuracy = float(re.search(r"test accuracy (0\.\d+) after", out).group(1))
    assert accuracy >= 0.99


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
