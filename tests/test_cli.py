"""``fastnn train`` and ``fastnn info`` end to end on a small generated dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli, cli_info, cli_train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """An .npz of 4 well-separated classes of 8x8 'images' (flattened by the CLI)."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 8, 8)) * 2

    def draw(n):
        y = rng.integers(0, 4, n)
        return (centers[y] + rng.standard_normal((n, 8, 8))).astype(np.float32), y

    X_train, y_train = draw(600)
    X_test, y_test = draw(200)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    return path


def train(capsys, *args):
    code = cli_train.main(["--backend", "numpy", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_end_to_end_writes_model_history_and_plot(dataset, tmp_path, capsys):
    model_path, json_path, png_path = tmp_path / "m.npz", tmp_path / "h.json", tmp_path / "c.png"
    code, out, err = train(
        capsys, "--dataset", dataset, "--hidden", "32,16", "--epochs", 3, "--batch-size", 32,
        "--optimizer", "adam", "--validation-fraction", 0.2, "--save", model_path,
        "--json", json_path, "--plot", png_path, "--seed", 1,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(
        "data: 480 training, 120 validation, 200 test samples of shape (64,), 4 classes"
    )
    assert "model: 64-32-16-4 relu" in lines[1] and "Adam(lr=0.001" in lines[1]
    summaries = [line for line in lines if line.startswith("epoch ")]
    assert [s.split(" - ")[0] for s in summaries] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val_accuracy" in s for s in summaries)
    final = next(line for line in lines if line.startswith("test accuracy"))
    accuracy = float(final.split()[2])
    assert accuracy > 0.9
    assert "45 iterations - 3 epochs" in final  # ceil(480 / 32) = 15 per epoch

    model = fastnn.load(model_path)
    data = np.load(dataset)
    X_test = data["X_test"].reshape(200, -1)
    assert np.mean(model.predict(X_test) == data["y_test"]) == pytest.approx(accuracy, abs=1e-4)
    record = json.loads(json_path.read_text())
    assert record["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert record["history"]["epochs"] == 3 and len(record["history"]["val_loss"]) == 3
    assert record["config"]["hidden"] == [32, 16]
    pytest.importorskip("matplotlib")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_full_batch_sgd_with_diagnostics_prints_the_table(dataset, capsys, monkeypatch):
    monkeypatch.setattr(fastnn.threads, "_num_threads", fastnn.threads._num_threads)
    before = fastnn.get_num_threads()
    code, out, _ = train(capsys, "--dataset", dataset, "--hidden", "16", "--optimizer", "sgd",
                         "--batch-size", "full", "--epochs", 2, "--diagnostics", "--quiet",
                         "--threads", 1)
    assert code == 0
    assert fastnn.get_num_threads() == 1
    fastnn.set_num_threads(before)  # the pools as they were; monkeypatch restores the record
    assert out.count("update/weight") == 2  # one table per epoch
    assert "2 iterations - 2 epochs" in out  # full batch: one iteration per epoch


def test_diagnostics_show_the_vanishing_gradient_remedy(dataset, capsys):
    code, out, err = train(capsys, "--dataset", dataset, "--hidden", "32,32,32,32,32",
                           "--activation", "sigmoid", "--init", "normal", "--optimizer", "sgd",
                           "--epochs", 1, "--diagnostics", "--quiet")
    assert code == 0
    assert "warning: layer 0 (sigmoid)" in out and "ReLU instead of sigmoid" in out
    assert "VanishingGradientWarning" not in err  # shown once, in the table, not twice


def test_early_stopping_option(dataset, tmp_path, capsys):
    json_path = tmp_path / "h.json"
    code, _, _ = train(capsys, "--dataset", dataset, "--hidden", "16", "--epochs", 30,
                       "--early-stopping", 1, "--validation-fraction", 0.25, "--quiet",
                       "--optimizer", "momentum", "--schedule", "none", "--json", json_path)
    assert code == 0
    val_loss = json.loads(json_path.read_text())["history"]["val_loss"]
    assert len(val_loss) < 30  # stopped early ...
    assert val_loss[-1] >= min(val_loss[:-1])  # ... at the first epoch that did not improve


def test_schedule_option(dataset, tmp_path, capsys):
    json_path = tmp_path / "h.json"
    code, _, _ = train(capsys, "--dataset", dataset, "--hidden", "16", "--epochs", 3, "--quiet",
                       "--schedule", "exponential", "--lr", 0.1, "--json", json_path)
    assert code == 0
    lr = json.loads(json_path.read_text())["history"]["lr"]
    assert lr == pytest.approx([0.1, 0.07, 0.049])


def test_divergence_exits_1_and_names_the_epoch(dataset, capsys):
    code, out, err = train(capsys, "--dataset", dataset, "--loss", "mse", "--optimizer", "sgd",
                           "--lr", "1e4", "--epochs", 5, "--quiet")
    assert code == 1
    assert "training diverged" in err and "epoch 1" in err
    assert "weights from before the divergence" in out


@pytest.mark.parametrize("args", [
    ["--hidden", "12,x"],
    ["--batch-size", "0"],
    ["--activation", "softplus"],
    ["--dataset", "/nonexistent/file.npz"],
    ["--validation-fraction", "1.5"],
    ["--lr", "-1"],
])
def test_bad_arguments_exit_2_with_a_message(dataset, capsys, args):
    full = ["--dataset", str(dataset), *args] if args[0] != "--dataset" else args
    code, _, err = train(capsys, *full, "--epochs", 1)
    assert code == 2
    assert "error" in err


def test_npz_without_the_expected_arrays(tmp_path, capsys):
    path = tmp_path / "wrong.npz"
    np.savez(path, X=np.zeros((3, 2)))
    code, _, err = train(capsys, "--dataset", path)
    assert code == 2 and "X_train" in err


def test_plot_without_matplotlib_is_a_clear_message(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    code, _, err = train(capsys, "--dataset", dataset, "--epochs", 1, "--quiet",
                         "--plot", tmp_path / "c.png")
    assert code == 1
    assert "pip install" in err and "matplotlib" in err
    assert not (tmp_path / "c.png").exists()


def test_unwritable_output_exits_1_after_training(dataset, tmp_path, capsys):
    code, out, err = train(capsys, "--dataset", dataset, "--epochs", 1, "--quiet",
                           "--save", tmp_path / "missing-dir" / "m.npz")
    assert code == 1
    assert "test accuracy" in out and "cannot write" in err


def test_help_and_dispatch(capsys):
    assert cli.main(["train", "--help"]) == 0
    assert "--early-stopping PATIENCE" in capsys.readouterr().out


def test_info_lists_every_backend_and_the_thread_pools(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fastnn {fastnn.__version__}")
    for name, status in fastnn.backend_status().items():
        assert f"  {name:<7} {'loaded' if status == 'ok' else 'NOT loaded'}" in out
    assert "blas" in out.lower() and "CPU:" in out
    assert cli_info.main(["--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["backends"]) == {"numpy", "numba", "cython"}
    assert info["cpu"]["logical_cpus"] >= 1


def test_python_dash_m_runs_the_command(dataset):
    result = subprocess.run(
        [sys.executable, "-m", "fastnn", "train", "--dataset", str(dataset), "--backend", "numpy",
         "--hidden", "8", "--epochs", "1", "--quiet"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout.splitlines()[-1]
