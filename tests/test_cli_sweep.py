"""``fastnn sweep`` end to end on a small generated .npz (in this process, and on Dask)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli, cli_sweep
from fastnn.datasets import make_blobs

FAST = ["--dataset", None, "--backend", "numpy", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    X, y = make_blobs(500, 10, 4, spread=3.0, seed=0, dtype="float32")
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, X_train=X[:400], y_train=y[:400], X_test=X[400:], y_test=y[400:])
    return path


def sweep(capsys, dataset, tmp_path, *args):
    base = [str(dataset) if a is None else a for a in FAST]
    code = cli_sweep.main([*base, "--json", str(tmp_path / "s.json"), *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_grid_in_process_writes_results_saves_the_best_and_resumes(dataset, tmp_path, capsys):
    args = ["--grid", "hidden=8,16x8", "--grid", "lr=0.05,1e6", "--grid", "batch_size=32",
            "--in-process",
            "--save", tmp_path / "best.npz"]  # fmt: skip
    code, out, err = sweep(capsys, dataset, tmp_path, *args)
    assert code == 0, err
    assert "360 training, 40 validation, 100 test samples" in out
    assert "4 in the sweep, 0 already done; 2 ok, 2 failed, 0 lost" in out
    assert "TrainingDivergedError" in out
    assert "best: trial" in out and "test accuracy of the best model" in out
    record = json.loads((tmp_path / "s.json").read_text())
    assert len(record["rows"]) == 4 and record["metric"] == "val_accuracy"
    best = max((r for r in record["rows"] if r["status"] == "ok"),
               key=lambda r: r["metrics"]["val_accuracy"])  # fmt: skip
    assert record["best"]["trial"] == best["trial"]
    assert fastnn.load(tmp_path / "best.npz").n_features == 10
    assert (tmp_path / "s.csv").read_text().count("\n") == 5
    assert (tmp_path / "s.md").exists()

    code, out, err = sweep(capsys, dataset, tmp_path, *args)
    assert code == 2 and "exists" in err  # never clobbered by accident
    code, out, _ = sweep(capsys, dataset, tmp_path, *args, "--resume")
    assert code == 0 and "4 in the sweep, 4 already done" in out
    assert f"best: trial {best['trial']}" in out
    assert "test accuracy of the best model" in out  # read back from best.npz


def test_random_search_on_an_existing_cluster(dask_client, dataset, tmp_path, capsys):
    args = ["--grid", "lr=loguniform:0.01:0.2", "--grid", "hidden=4,8", "--grid", "seed=0,1",
            "--random", "2", "--scheduler", dask_client.scheduler.address]  # fmt: skip
    code, out, err = sweep(capsys, dataset, tmp_path, *args)
    assert code == 0, err
    assert "4 in the sweep, 0 already done; 4 ok" in out
    assert "on Dask: 2 workers, 2 threads" in out
    assert "threads per trial: fastnn 1, blas 1" in out and "(as pinned)" in out
    workers = {r["worker"] for r in json.loads((tmp_path / "s.json").read_text())["rows"]}
    assert workers <= set(dask_client.scheduler_info()["workers"])


def test_without_dask_the_cli_says_so_and_runs_here(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, out, err = sweep(capsys, dataset, tmp_path, "--grid", "hidden=4,8")
    assert code == 0 and "dask is not installed" in err and "in this process" in out
    code, _, err = sweep(capsys, dataset, tmp_path, "--grid", "hidden=4", "--overwrite",
                         "--scheduler", "tcp://127.0.0.1:1")  # fmt: skip
    assert code == 2 and "fastnn[dask]" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to sweep"),
        (["--grid", "depth=3"], "unknown sweep key 'depth'"),
        (["--grid", "lr=0.1", "--grid", "lr=0.2"], "given twice"),
        (["--grid", "epochs=1,2"], "either with --epochs"),
        (["--grid", "lr=0.1,0.2", "--random", "5"], "grid of only 2"),
        (["--grid", "lr=loguniform:0.01:0.1"], "needs random search"),
        (["--grid", "lr=0.1", "--validation-fraction", "0"], "validation-fraction"),
        (["--grid", "lr=0.1", "--metric", "f1"], "invalid choice"),
    ],
)
def test_usage_errors_exit_with_2(dataset, tmp_path, capsys, args, message):
    code, _, err = sweep(capsys, dataset, tmp_path, "--in-process", *args)
    assert code == 2 and message in err


def test_fastnn_lists_the_sweep_command(capsys):
    assert cli.main(["--help"]) == 0
    usage = capsys.readouterr().out.splitlines()[0]
    assert usage.startswith("usage: fastnn {") and "sweep" in usage.split("}")[0].split(",")
