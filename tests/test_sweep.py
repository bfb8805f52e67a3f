"""``fastnn.sweep``: spaces, the pure trial, results files, and sweeps on a LocalCluster.

The cluster is started in the test session (``dask_client`` in conftest.py: 2 worker processes
x 1 thread); the data is small generated blobs and every trial trains for 2 short epochs on the
NumPy backend (no JIT compilation in the fresh worker processes).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.datasets import make_blobs
from fastnn.sweep import (
    BASE,
    KEYS,
    METRICS,
    LogUniform,
    SweepData,
    SweepResults,
    SweepWarning,
    Uniform,
    config_key,
    grid,
    parse_assignment,
    sample,
    sweep,
    train_trial,
)
from fastnn.sweep.space import format_value

FAST = {"hidden": [8], "epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def data() -> SweepData:
    X, y = make_blobs(240, 6, 3, spread=3.0, seed=0, dtype="float32")
    return SweepData(X[:180], y[:180], X[180:], y[180:])


def run(space, data, tmp_path, **kwargs):
    options = {"base": FAST, "backend": "numpy", "results": tmp_path / "s.json",
               "progress": False} | kwargs  # fmt: skip
    return sweep(space, data, **options)


# -- spaces ----------------------------------------------------------------------------------
def test_grid_is_every_combination_first_key_slowest():
    configs = grid({"hidden": [8, (16, 8)], "lr": [0.1, 0.2], "seed": [0, 1]}, base=FAST)
    assert len(configs) == 8
    assert [c["hidden"] for c in configs[:4]] == [[8]] * 4
    assert configs[-1]["hidden"] == [16, 8]
    assert [(c["lr"], c["seed"]) for c in configs[:4]] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert all(set(c) == set(KEYS) and c["epochs"] == 2 for c in configs)
    assert grid({"activation": "tanh"})[0] == {**BASE, "activation": "tanh"}  # one fixed value


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"learning_rate": [0.1]}, "unknown sweep key 'learning_rate'"),
        ({"lr": ["fast"]}, "lr: expected a number"),
        ({"epochs": [2.5]}, "epochs: expected an integer"),
        ({"hidden": ["wide"]}, "hidden: expected widths"),
        ({"lr": [0.1, 0.1]}, "listed twice"),
        ({"lr": []}, "no values"),
        ({"lr": LogUniform(0.01, 0.1)}, "needs random search"),
        ({"activation": Uniform(0, 1)}, "numeric key"),
    ],
)
def test_grid_rejects_bad_spaces(space, match):
    with pytest.raises(ValueError, match=match):
        grid(space)


def test_sample_is_deterministic_distinct_and_repeats_seeds():
    space = {"hidden": [8, 16, 32], "lr": [0.05, 0.1, 0.2], "seed": [0, 1]}
    configs = sample(space, 4, seed=3)
    assert configs == sample(space, 4, seed=3)
    assert [c["seed"] for c in configs] == [0, 1] * 4
    points = {(c["hidden"][0], c["lr"]) for c in configs}
    assert len(points) == 4  # distinct grid points, each with both seeds
    with pytest.raises(ValueError, match="grid of only 9"):
        sample(space, 10)
    drawn = sample({"lr": LogUniform(1e-3, 1e-1), "batch_size": Uniform(16, 64)}, 200)
    lrs = np.array([c["lr"] for c in drawn])
    assert lrs.min() >= 1e-3 and lrs.max() <= 1e-1
    assert 0.3 < np.mean(lrs < 1e-2) < 0.7  # log-uniform: about half below the mid-decade
    assert all(isinstance(c["batch_size"], int) and 16 <= c["batch_size"] <= 64 for c in drawn)


def test_parse_assignment_reads_the_cli_syntax():
    assert parse_assignment("hidden=64,128x64,none") == ("hidden", [[64], [128, 64], []])
    assert parse_assignment("batch_size=full,32") == ("batch_size", [None, 32])
    assert parse_assignment("nesterov=true,no") == ("nesterov", [True, False])
    assert parse_assignment("lr=loguniform:1e-3:0.1") == ("lr", LogUniform(1e-3, 0.1))
    assert parse_assignment("weight-decay=0,1e-4") == ("weight_decay", [0.0, 1e-4])
    bad_ones = [("lr", "KEY=VALUE"), ("depth=2", "unknown sweep key"),
                ("lr=uniform:1", "uniform:LOW:HIGH"), ("hidden=64,1x2x", "hidden")]  # fmt: skip
    for bad, match in bad_ones:
        with pytest.raises(ValueError, match=match):
            parse_assignment(bad)
    assert [format_value(k, v) for k, v in [("hidden", [128, 64]), ("hidden", []),
                                            ("batch_size", None), ("lr", 0.1)]] == [
        "128x64", "none", "full", "0.1"]  # fmt: skip


# -- the trial -------------------------------------------------------------------------------
def test_train_trial_is_a_pure_function_of_config_and_data(data):
    config = {**FAST, "hidden": [8], "lr": 0.05}
    first, second = train_trial(config, data, backend="numpy"), train_trial(config, data, "numpy")
    assert set(first.metrics) == set(METRICS) and first.metrics == second.metrics
    assert first.epochs == 2 and len(first.history["loss"]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(first.weights, second.weights, strict=True))
    assert first.metrics["val_accuracy"] > 0.8
    with pytest.raises(ValueError, match="unknown optimizer"):
        train_trial({**config, "optimizer": "lion"}, data)


def test_sweep_data_checks_shapes():
    X = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="one label per row"):
        SweepData(X, np.zeros(3, int), X, np.zeros(4, int))
    with pytest.raises(ValueError, match="features"):
        SweepData(X, np.zeros(4, int), np.zeros((4, 2)), np.zeros(4, int))


# -- results files ---------------------------------------------------------------------------
def test_results_refuse_to_clobber_and_check_the_data_on_resume(data, tmp_path):
    path = tmp_path / "r.json"
    meta = {"data": data.describe()}
    SweepResults(path, metric="val_accuracy", columns=["lr"], meta=meta).close()
    with pytest.raises(FileExistsError, match="resume"):
        SweepResults(path, metric="val_accuracy", columns=["lr"], meta=meta)
    with pytest.raises(ValueError, match="other data"):
        SweepResults(path, metric="val_accuracy", columns=["lr"], meta={"data": {"n_train": 1}},
                     resume=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"\.json"):
        SweepResults(tmp_path / "r.csv", metric="val_accuracy", columns=[], meta=meta)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a fastnn sweep"):
        SweepResults(tmp_path / "bad.json", metric="val_loss", columns=[], meta={}, resume=True)


# -- sweeps on the cluster -------------------------------------------------------------------
def test_grid_on_dask_records_failures_streams_files_and_saves_the_best(
    dask_client, data, tmp_path
):
    workers = set(dask_client.scheduler_info()["workers"])
    space = {"activation": ["relu", "no-such-activation"], "lr": [0.05, 1e6]}
    result = run(space, data, tmp_path, client=dask_client, save=tmp_path / "best.npz")
    rows = {(r["config"]["activation"], r["config"]["lr"]): r for r in result.rows}
    assert len(rows) == 4 and result.count("ok") == 1 and result.count("failed") == 3
    assert rows["relu", 1e6]["error"].startswith("TrainingDivergedError")
    assert rows["no-such-activation", 0.05]["error"].startswith("ValueError")
    for row in result.rows:
        assert row["worker"] in workers
        assert row["threads"]["ok"] and row["threads"]["fastnn"] == 1
        assert row["threads"]["blas"] and set(row["threads"]["blas"]) == {1}
    assert result.best is rows["relu", 0.05] and result.best["metrics"]["val_accuracy"] > 0.8
    saved = fastnn.load(tmp_path / "best.npz")
    np.testing.assert_array_equal(saved.predict_proba(data.X_val),
                                  result.model.predict_proba(data.X_val))  # fmt: skip
    record = json.loads((tmp_path / "s.json").read_text())
    assert len(record["rows"]) == 4 and record["best"]["trial"] == result.best["trial"]
    with open(tmp_path / "s.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["status"] for r in table) == ["failed"] * 3 + ["ok"]
    assert {r["activation"] for r in table} == {"relu", "no-such-activation"}
    markdown = (tmp_path / "s.md").read_text().splitlines()
    assert markdown[4].startswith(f"| {result.best['trial']} | ok |")  # best first


def test_random_search_on_dask_in_batches(dask_client, data, tmp_path):
    space = {"hidden": [4, 8, 16], "lr": LogUniform(0.01, 0.2), "seed": [0, 1]}
    result = run(space, data, tmp_path, client=dask_client, n_trials=3, trials_per_task=2)
    assert result.n_configs == 6 and result.count("ok") == 6
    assert sorted(r["trial"] for r in result.rows) == list(range(6))
    assert {config_key(r["config"]) for r in result.rows} == {
        config_key(c) for c in sample(space, 3, base=FAST)}  # fmt: skip
    best = max(result.rows, key=lambda r: r["metrics"]["val_accuracy"])
    assert result.best["metrics"]["val_accuracy"] == best["metrics"]["val_accuracy"]


def test_ctrl_c_keeps_finished_rows_and_resume_runs_only_the_rest(
    dask_client, data, tmp_path, monkeypatch
):
    space = {"hidden": [4, 8], "lr": [0.05, 0.1, 0.2]}
    add = SweepResults.add
    calls = []

    def interrupted(self, rows):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(rows)
        return add(self, rows)

    monkeypatch.setattr(SweepResults, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(space, data, tmp_path, client=dask_client)
    monkeypatch.undo()
    kept = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert len(kept) == 2
    with pytest.raises(FileExistsError):
        run(space, data, tmp_path, client=dask_client)
    result = run(space, data, tmp_path, client=dask_client, resume=True)
    assert result.n_skipped == 2 and len(result.rows) == 6 and result.count("ok") == 6
    assert len({config_key(r["config"]) for r in result.rows}) == 6
    assert kept == result.rows[:2]  # the earlier rows, unchanged


def _dies_on_lr_half(config, data, backend=None):
    """A trial that kills its worker process (a lost worker), for one configuration."""
    if config["lr"] == 0.5 and "distributed" in sys.modules:
        from distributed import get_worker

        get_worker()  # raises outside a worker: never kill the test process
        os._exit(1)
    return train_trial(config, data, backend=backend)


def test_a_lost_worker_keeps_the_other_rows_and_resume_reruns_its_trial(data, tmp_path):
    distributed = pytest.importorskip("distributed", reason="needs dask: pip install fastnn[dask]")
    import cloudpickle
    import dask

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    space = {"lr": [0.05, 0.5, 0.1]}
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster:  # fmt: skip
            with distributed.Client(cluster) as client:
                lost = run(space, data, tmp_path, client=client, trial=_dies_on_lr_half)
    statuses = {r["config"]["lr"]: r["status"] for r in lost.rows}
    # The trial that kills its worker is lost; a trial the scheduler had already queued on that
    # worker may be lost with it (Dask counts it as a failure too), the others finish.
    assert statuses[0.5] == "lost" and set(statuses.values()) <= {"ok", "lost"}
    assert len(statuses) == 3 and "ok" in statuses.values()
    assert "KilledWorker" in next(r["error"] for r in lost.rows if r["status"] == "lost")
    again = run(space, data, tmp_path, in_process=True, resume=True)
    n_ok = list(statuses.values()).count("ok")
    assert again.n_skipped == n_ok and again.count("ok") == 3 and again.count("lost") == 0


def test_gridsearchcv_under_joblib_dask_backend(dask_client):
    pytest.importorskip("sklearn", reason="needs scikit-learn: pip install fastnn[sklearn]")
    import joblib
    from distributed import get_task_stream
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV

    from fastnn.sklearn import MLPClassifier

    X, y = make_blobs(200, 5, 3, spread=3.0, seed=1, dtype="float32")
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, backend="numpy")
    search = GridSearchCV(mlp, {"learning_rate_init": [0.01, 0.05]}, cv=2, n_jobs=2)
    with get_task_stream(dask_client) as tasks, joblib.parallel_backend("dask"):
        with warnings.catch_warnings():  # 20 epochs on purpose: short, not converged
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 2 and search.best_score_ > 0.8
    assert len(tasks.data) >= 4  # the 2 x 2 fits ran as tasks on the cluster's workers


# -- without Dask ----------------------------------------------------------------------------
def test_without_dask_the_sweep_runs_in_this_process_and_says_so(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.warns(SweepWarning, match="dask is not installed") as warned:
        result = run({"hidden": [4, 8]}, data, tmp_path, save=tmp_path / "b.npz")
    assert len([w for w in warned if issubclass(w.category, SweepWarning)]) == 1
    assert result.count("ok") == 2
    assert {r["worker"] for r in result.rows} == {f"{os.uname().nodename}:{os.getpid()}"}
    assert fastnn.load(tmp_path / "b.npz").predict(data.X_val).shape == (len(data.X_val),)
    with pytest.raises(ImportError, match="fastnn\\[dask\\]"):
        run({"hidden": [4]}, data, tmp_path, scheduler="tcp://127.0.0.1:1", overwrite=True)


def test_trial_threads_share_a_worker_between_its_trials():
    pytest.importorskip("distributed", reason="needs dask: pip install fastnn[dask]")
    from fastnn.sweep._plugin import trial_threads

    assert trial_threads(1, {}) == 1
    assert trial_threads(4, {}) == 1  # 4 trials at once, one thread each
    assert trial_threads(2, {"fastnn_trial": 1}) == 2  # one trial on both threads
    assert trial_threads(4, {"fastnn_trial": 2}) == 2
