"""Tests of fastnn.bench: the report schema, the FLOP formula, same-model fairness, failures.

Everything runs on small generated blobs (in process unless a test is about process isolation)
with one thread; no test looks at a time. Real MNIST is used only with FASTNN_DATA.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import fastnn
from fastnn.bench import cli, flops, machine, registry, report, runner, trainers, tta, worker
from fastnn.bench.registry import Impl, Setup

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
ROW_KEYS = {"impl", "batch_size", "epoch_s", "epoch_s_all", "compile_s", "samples_per_s", "gflops",
            "pct_of_sgemm", "pct_of_limit", "speedup_vs_reference", "test_accuracy",
            "peak_rss_mb"}  # fmt: skip


def make_blobs(n_train: int = 1200, n_test: int = 400, d: int = 24, k: int = 10, seed: int = 0):
    """Ten Gaussian clusters: learnable to high accuracy in a few epochs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 2.5, (k, d))
    y = rng.integers(0, k, n_train + n_test)
    X = (centers[y] + rng.normal(0.0, 1.0, (len(y), d))).astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _quiet(line: str) -> None:
    pass


def _broken_factory(setup: Setup):  # noqa: ANN201
    raise RuntimeError("this implementation is broken on purpose")


@pytest.fixture
def clean_registry(monkeypatch):  # noqa: ANN001, ANN201
    """A private copy of the registry, so fake implementations do not leak."""
    monkeypatch.setattr(registry, "_IMPLS", dict(registry._IMPLS))
    monkeypatch.setattr(registry, "_plugin_problems", dict(registry._plugin_problems))
    return registry


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return make_blobs()


@pytest.fixture(scope="module")
def bench(data):  # noqa: ANN001, ANN201
    """One in-process run over every available backend and peer, two batch sizes."""
    config = runner.BenchConfig(batch_sizes=[32, None], hidden=[32], epochs=3, threads=1,
                                isolate=False, startup=False)  # fmt: skip
    return runner.run_benchmark(config, data=data, progress=False, log=_quiet)


# FLOP formula --------------------------------------------------------------------------------
def test_flops_per_sample_of_the_mnist_mlp():
    # forward 2dk + weight gradient 2dk per layer, input gradient 2dk except the first layer
    assert flops.flops_per_sample([784, 128, 10]) == 4 * 784 * 128 + 6 * 128 * 10 == 409_088


def test_flops_of_a_deeper_net_and_an_epoch():
    expected = 4 * 784 * 256 + 6 * 256 * 128 + 6 * 128 * 10
    assert flops.flops_per_sample([784, 256, 128, 10]) == expected
    assert flops.flops_per_epoch([784, 256, 128, 10], 60_000) == 60_000 * expected
    assert flops.flops_per_sample([5, 3]) == 4 * 5 * 3  # no hidden layer: no input gradient


def test_nonzero_flops_count_only_the_first_layers_nonzero_inputs():
    # MNIST: ~150 non-zero pixels of 784; the first layer's two products over those only
    assert flops.nonzero_flops_per_sample([784, 128, 10], 150) == 4 * 150 * 128 + 6 * 128 * 10
    assert flops.nonzero_flops_per_sample([784, 128, 10], 784) == flops.flops_per_sample(
        [784, 128, 10]
    )
    with pytest.raises(ValueError, match="nonzero_inputs"):
        flops.nonzero_flops_per_sample([784, 10], 785)
    X = np.zeros((9000, 7), np.float32)  # more rows than one counting block
    X[::3, 2] = 1.0
    X[1::3, :4] = -2.0
    assert flops.mean_nonzeros(X, block=4096) == pytest.approx((3000 + 4 * 3000) / 9000)


@pytest.mark.parametrize("sizes", [[784], [], [784, 0, 10]])
def test_flops_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError):
        flops.flops_per_sample(sizes)


def test_sgemm_ceiling_is_a_positive_rate():
    result = flops.sgemm_gflops(size=64, min_seconds=0.0)
    assert result["gflops"] >= result["median_gflops"] > 0
    assert result["calls"] >= 3


# Report schema -------------------------------------------------------------------------------
def test_report_has_the_documented_keys(bench, data):
    assert {"machine", "sgemm_gflops", "config", "rows"} <= set(bench)
    m = bench["machine"]
    assert {"cpu", "cores", "threads", "blas", "versions"} <= set(m)
    assert {"python", "numpy", "numba", "cython", "torch", "sklearn"} <= set(m["versions"])
    assert m["threads"] == 1
    assert {"hidden", "lr", "epochs", "repeats", "dtype"} <= set(bench["config"])
    assert bench["config"]["dtype"] == "float32"
    assert bench["config"]["hidden"] == [32]
    for row in bench["rows"]:
        assert ROW_KEYS <= set(row), row["impl"]
        assert isinstance(row["batch_size"], int)
        assert len(row["epoch_s_all"]) == 3
        assert row["epoch_s"] == pytest.approx(float(np.median(row["epoch_s_all"])))
        assert row.get("error") is None, row
    assert json.loads(json.dumps(bench)) == bench


def test_full_batch_row_uses_every_sample(bench, data):
    n = len(data[0])
    full = [r for r in bench["rows"] if r["full_batch"]]
    assert full and all(r["batch_size"] == n and r["iterations_per_epoch"] == 1 for r in full)


def test_rates_follow_from_the_flop_formula(bench, data):
    n = len(data[0])
    per_sample = flops.flops_per_sample([24, 32, 10])
    assert bench["config"]["flops_per_sample"] == per_sample
    for row in bench["rows"]:
        assert row["samples_per_s"] == pytest.approx(n / row["epoch_s"])
        assert row["gflops"] == pytest.approx(per_sample * n / row["epoch_s"] / 1e9)
        assert row["pct_of_sgemm"] == pytest.approx(100 * row["gflops"] / bench["sgemm_gflops"])
        nnz = flops.mean_nonzeros(data[0])
        assert bench["config"]["nonzero_inputs_per_sample"] == pytest.approx(nnz)
        useful = flops.nonzero_flops_per_sample([24, 32, 10], nnz) * n / row["epoch_s"] / 1e9
        assert row["pct_of_limit"] == pytest.approx(100 * useful / bench["sgemm_gflops"])


def test_speedups_are_measured_against_the_reference(bench):
    for row in bench["rows"]:
        ref = next(r for r in bench["rows"]
                   if r["impl"] == "numpy" and r["batch_size"] == row["batch_size"])  # fmt: skip
        assert row["speedup_vs_reference"] == pytest.approx(ref["epoch_s"] / row["epoch_s"])
    assert bench["rows"][0]["impl"] == "numpy"


def test_every_implementation_trains_the_same_model_to_a_comparable_accuracy(bench):
    impls = {r["impl"] for r in bench["rows"]}
    assert set(fastnn.available_backends()) <= impls
    if HAS_TORCH:
        assert "torch" in impls
    for bs in bench["config"]["batch_sizes"]:
        accs = {r["impl"]: r["test_accuracy"] for r in bench["rows"] if r["batch_size"] == bs}
        assert max(accs.values()) - min(accs.values()) <= 0.05, accs
    minibatch = [r["test_accuracy"] for r in bench["rows"] if r["batch_size"] == 32]
    assert min(minibatch) > 0.8  # they all learned, not merely agreed


def test_machine_reports_the_openblas_environment(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    info = machine.machine_info(threads=2)
    assert info["env"]["OPENBLAS_CORETYPE"] == "Haswell"
    assert info["env"]["OPENBLAS_L2_SIZE"] == "512"
    assert info["cores"] >= 1 and info["versions"]["numpy"] == np.__version__


# Same model, side by side ----------------------------------------------------------------------
def _setup(data, batch_size: int) -> Setup:  # noqa: ANN001
    weights = runner.initial_weights([24, 16, 10], "relu", seed=3)
    return Setup(*data, weights=weights, activation="relu",
                 optimizer={"name": "sgd", "lr": 0.05}, batch_size=batch_size, threads=1,
                 seed=3, options={"backend": "numpy"})  # fmt: skip


def _train_one_epoch(trainer) -> None:  # noqa: ANN001
    trainer.run(1, lambda epoch: None, lambda epoch: False)


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_row_takes_the_same_steps_as_fastnn(data):
    ours = trainers.fastnn_trainer(_setup(data, 50))
    theirs = trainers.torch_trainer(_setup(data, 50))
    _train_one_epoch(ours)
    _train_one_epoch(theirs)
    torch_params = [p.detach().numpy() for p in theirs.model.parameters()]
    torch_params = [p.T if p.ndim == 2 else p for p in torch_params]
    for a, b in zip(ours.model.get_weights(), torch_params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed")
def test_sklearn_row_starts_from_the_shared_weights_and_matches_a_full_batch_step(data):
    setup = _setup(data, len(data[0]))
    theirs = trainers.sklearn_trainer(setup)
    for a, b in zip(theirs.clf.coefs_, setup.weights[0::2], strict=True):
        np.testing.assert_array_equal(a, b)
    ours = trainers.fastnn_trainer(_setup(data, len(data[0])))
    _train_one_epoch(ours)
    _train_one_epoch(theirs)  # full batch: one step, the shuffling order does not matter
    got = [*theirs.clf.coefs_[:1], *theirs.clf.intercepts_[:1]]
    np.testing.assert_allclose(got[0], ours.model.get_weights()[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got[1], ours.model.get_weights()[1], rtol=1e-3, atol=1e-5)


def test_fastnn_row_refuses_to_time_a_fallback_under_another_name(monkeypatch, data):
    reference = fastnn.backends.resolve_backend("numpy")
    monkeypatch.setattr(fastnn.backends, "resolve_backend", lambda name=None: reference)
    setup = _setup(data, 50)
    setup.options = {"backend": "cython"}
    with pytest.raises(RuntimeError, match="unavailable"):
        trainers.fastnn_trainer(setup)


# Missing and failing implementations -------------------------------------------------------
def test_missing_peer_is_reported_not_fatal(clean_registry, data):
    registry.register_impl(Impl(name="ghost", factory="fastnn_no_such_module:make",
                                import_code="import fastnn_no_such_module",
                                requires=("fastnn_no_such_module",)))  # fmt: skip
    config = runner.BenchConfig(batch_sizes=[64], hidden=[8], backends=["numpy"],
                                peers=["ghost"], threads=1, isolate=False)  # fmt: skip
    result = runner.run_benchmark(config, data=data, progress=False, log=_quiet)
    assert [r["impl"] for r in result["rows"]] == ["numpy"]
    (skip,) = result["skipped"]
    assert skip["impl"] == "ghost" and "fastnn_no_such_module" in skip["reason"]


def test_unknown_name_is_a_usage_error(data):
    config = runner.BenchConfig(backends=["numpy"], peers=["no-such-peer"], isolate=False)
    with pytest.raises(ValueError, match="no-such-peer"):
        runner.run_benchmark(config, data=data, progress=False, log=_quiet)


def test_missing_backend_is_reported_and_the_command_succeeds(monkeypatch, tmp_path, data):
    status = {"numpy": "ok", "numba": "ImportError: no numba", "cython": "ImportError: not built"}
    monkeypatch.setattr(fastnn.backends, "backend_status", lambda: dict(status))
    monkeypatch.setattr(runner, "load_data", lambda config: (data, "blobs"))
    out = tmp_path / "r.json"
    # --model mlp: the default "all" would also time the CNN on MNIST (minutes).
    code = cli.main(["--in-process", "--model", "mlp", "--peers", "none", "--batch-sizes", "64",
                     "--hidden", "8", "--threads", "1", "--json", str(out),
                     "--markdown", str(tmp_path / "r.md"), "--no-progress"])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert [r["impl"] for r in result["rows"]] == ["numpy"]
    assert {s["impl"]: s["reason"] for s in result["skipped"]} == {
        "numba": status["numba"], "cython": status["cython"],
    }  # fmt: skip
    assert "Not run: `cython` (ImportError: not built)" in (tmp_path / "r.md").read_text()


def test_a_failing_row_is_reported_and_the_others_still_run(clean_registry, monkeypatch, tmp_path,
                                                            data):  # fmt: skip
    registry.register_impl(Impl(name="broken", factory=f"{__name__}:_broken_factory",
                                import_code="pass"))  # fmt: skip
    monkeypatch.setattr(runner, "load_data", lambda config: (data, "blobs"))
    out = tmp_path / "r.json"
    code = cli.main(["--in-process", "--model", "mlp", "--backends", "numpy", "--peers", "broken",
                     "--hidden", "8", "--batch-sizes", "64", "--threads", "1", "--json", str(out),
                     "--markdown", "none", "--no-progress"])  # fmt: skip
    assert code == 1
    rows = {r["impl"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["numpy"]["epoch_s"] > 0 and rows["numpy"].get("error") is None
    assert "broken on purpose" in rows["broken"]["error"]
    assert rows["broken"]["epoch_s"] is None


def test_rows_in_fresh_processes_report_memory_startup_and_child_errors(clean_registry, data):
    registry.register_impl(Impl(name="crashy", factory="fastnn.bench.trainers:no_such_factory",
                                import_code="pass"))  # fmt: skip
    config = runner.BenchConfig(batch_sizes=[100], hidden=[8], backends=["numpy"],
                                peers=["crashy"], threads=1, startup=True)  # fmt: skip
    result = runner.run_benchmark(config, data=data, progress=False, log=_quiet)
    rows = {r["impl"]: r for r in result["rows"]}
    numpy_row = rows["numpy"]
    assert numpy_row["peak_rss_mb"] > 0 and numpy_row["import_s"] >= 0
    assert numpy_row["blas"] and numpy_row["test_accuracy"] > 0.5
    assert "no_such_factory" in rows["crashy"]["error"]
    cold, warm = result["startup"]["numpy"]["cold"], result["startup"]["numpy"]["warm"]
    assert {"import_s", "first_epoch_s", "startup_s"} <= set(cold) & set(warm)


def test_peak_rss_is_this_process_high_water_mark():
    before = worker.peak_rss_mb()
    block = np.ones(8_000_000)  # 61 MiB, touched
    assert worker.peak_rss_mb() >= before
    assert worker.peak_rss_mb() >= block.nbytes / 2**20


# Registry and plug-ins -----------------------------------------------------------------------
def test_register_rejects_duplicates_and_bad_factories(clean_registry):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_impl(Impl(name="numpy", factory="m:f", import_code="pass"))
    with pytest.raises(ValueError, match="module:function"):
        registry.register_impl(Impl(name="x", factory="no_colon", import_code="pass"))
    with pytest.raises(ValueError, match="kind"):
        registry.register_impl(Impl(name="x", factory="m:f", import_code="pass", kind="other"))


def test_plugin_module_registers_through_its_hook(clean_registry, monkeypatch, tmp_path):
    (tmp_path / "my_bench_plugin.py").write_text(
        "def register_bench_impls(register):\n"
        "    from fastnn.bench.registry import Impl\n"
        "    register(Impl(name='mine', factory='my_bench_plugin:make', import_code='pass'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(registry.PLUGIN_ENV, "my_bench_plugin, fastnn_absent_plugin")
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    assert registry.load_plugins() == {}
    assert registry.get_impl("mine").kind == "peer"
    (tmp_path / "my_broken_plugin.py").write_text("import fastnn_no_such_dependency\n")
    monkeypatch.setenv(registry.PLUGIN_ENV, "my_broken_plugin")
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    assert "fastnn_no_such_dependency" in registry.load_plugins()["my_broken_plugin"]
    skipped = runner.select_impls(runner.BenchConfig(backends=["numpy"], peers=[]))[1]
    assert skipped[0]["impl"] == "my_broken_plugin" and skipped[0]["kind"] == "plugin"
    assert "mine" in [impl.name for impl in registry.registered("peer")]


# Command line --------------------------------------------------------------------------------
def test_cli_parses_lists_and_full_batch():
    args = cli.build_parser().parse_args(
        ["--batch-sizes", "1,32,full", "--hidden", "256,128", "--peers", "none"]
    )
    config = cli.config_from_args(args)
    assert config.batch_sizes == [1, 32, None]
    assert config.hidden == [256, 128]
    assert config.peers == [] and config.backends is None
    assert config.startup and config.isolate and config.n_train is None


def test_quick_is_a_small_run_that_explicit_options_override():
    quick = cli.config_from_args(cli.build_parser().parse_args(["--quick"]))
    assert quick.quick and quick.n_train == runner.QUICK["n_train"]
    assert not quick.startup and quick.batch_sizes == runner.QUICK["batch_sizes"]
    custom = cli.config_from_args(
        cli.build_parser().parse_args(["--quick", "--batch-sizes", "64", "--startup"])
    )
    assert custom.batch_sizes == [64] and custom.startup


@pytest.mark.parametrize("argv", [["--batch-sizes", "0"], ["--batch-sizes", "x"],
                                  ["--epochs", "0"], ["--hidden", "-3"],
                                  ["--time-to-accuracy", "150"], ["--warmup", "-1"]])  # fmt: skip
def test_cli_usage_errors_exit_with_2(argv, capsys):
    assert cli.main(argv) == 2


def test_cli_help_exits_with_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "--time-to-accuracy" in capsys.readouterr().out


def test_accuracy_target_accepts_percentages():
    assert cli._fraction("98") == pytest.approx(0.98)
    assert cli._fraction("0.975") == pytest.approx(0.975)


# Reports -----------------------------------------------------------------------------------------
def test_markdown_has_a_table_per_batch_size_and_states_the_flop_formula(bench):
    md = report.markdown(bench)
    assert "**batch size 32**" in md and "**full batch (1200)**" in md
    assert flops.FLOP_FORMULA in md
    assert md.count("| numpy |") == 2
    for row in bench["rows"]:
        assert report.console_line(row).split()[0] == row["impl"]


def test_update_readme_replaces_only_the_results_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{report.BEGIN_MARK}\nold table\n{report.END_MARK}\n\nTail\n")
    report.update_readme("new table\n", readme)
    report.update_readme("newer table\n", readme)
    text = readme.read_text()
    assert text == f"# Title\n\n{report.BEGIN_MARK}\nnewer table\n{report.END_MARK}\n\nTail\n"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="results"):
        report.update_readme("x", readme)


def test_plot_writes_a_png(bench, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    report.plot(bench, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Time to accuracy ------------------------------------------------------------------------------
def test_recipes_are_normalized_from_their_usual_spellings():
    r = tta.normalize_recipe({"hidden_sizes": 64, "optimizer": "momentum", "lr": 0.1,
                              "batch_size": "full", "max_epochs": 7})  # fmt: skip
    assert r["hidden"] == [64] and r["batch_size"] is None and r["epochs"] == 7
    assert r["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9}
    assert r["backend"] == "auto" and r["activation"] == "relu"
    assert "SGD lr 0.1 momentum 0.9" in tta.describe(r)


def test_best_recipe_comes_from_fastnn_recipes():
    recipe, source = tta.best_recipe()
    from fastnn.recipes import MNIST_98

    assert source == "fastnn.recipes.MNIST_98"
    assert recipe["hidden"] == list(MNIST_98["hidden"])
    schedule = recipe["optimizer"].get("lr_schedule")
    if MNIST_98.get("schedule", "none") != "none":
        assert len(schedule) == recipe["epochs"] and schedule[0] <= recipe["optimizer"]["lr"]


def test_time_to_accuracy_stops_at_the_target(monkeypatch, data):
    recipe = tta.normalize_recipe({"hidden": [16], "optimizer": {"name": "sgd", "lr": 0.05},
                                   "batch_size": 32, "epochs": 6})  # fmt: skip
    monkeypatch.setattr(tta, "best_recipe", lambda: (recipe, "test recipe"))
    config = runner.BenchConfig(batch_sizes=[64], hidden=[8], backends=["numpy"],
                                peers=["torch"] if HAS_TORCH else [], threads=1,
                                isolate=False, time_to_accuracy=0.9)  # fmt: skip
    result = runner.run_benchmark(config, data=data, progress=False, log=_quiet)
    t = result["time_to_accuracy"]
    assert t["target"] == 0.9 and t["source"] == "test recipe"
    assert [r["impl"] for r in t["results"]] == ["fastnn"] + (["torch"] if HAS_TORCH else [])
    for r in t["results"]:
        assert r["reached"], r
        assert r["accuracy_curve"][-1] >= 0.9 > max(r["accuracy_curve"][:-1], default=0)
        assert r["epochs"] == len(r["epoch_s_all"]) == len(r["accuracy_curve"])
    assert "Time to 90.0% test accuracy" in report.markdown(result)


# Real MNIST ----------------------------------------------------------------------------------
def test_mnist_rows_agree_on_accuracy(mnist_root):
    from fastnn.datasets import load_mnist

    mnist = load_mnist(root=mnist_root, download=False)
    config = runner.BenchConfig(batch_sizes=[128], hidden=[32], n_train=3000, threads=1,
                                isolate=False, startup=False)  # fmt: skip
    result = runner.run_benchmark(config, data=mnist, progress=False, log=_quiet)
    accs = {r["impl"]: r["test_accuracy"] for r in result["rows"]}
    assert min(accs.values()) > 0.75 and max(accs.values()) - min(accs.values()) <= 0.03, accs


def test_sklearn_peer_brings_the_fastnn_estimator_row():
    pytest.importorskip("sklearn")
    chosen, _ = runner.select_impls(runner.BenchConfig(backends=["numpy"], peers=["sklearn"]))
    names = [impl.name for impl in chosen]
    assert names.index("fastnn-sklearn") == names.index("sklearn") + 1


# A busy machine on demand ----------------------------------------------------------------------
def test_busy_core_competitor_runs_on_its_core_and_is_killed():
    import os

    from fastnn.bench import busy

    core = sorted(os.sched_getaffinity(0))[-1]
    with busy.competitor(core) as pid:
        assert os.sched_getaffinity(pid) == {core}
        os.kill(pid, 0)  # alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with busy.competitor(None) as nothing:
        assert nothing is None


def test_busy_core_must_be_usable(capsys):
    assert cli.main(["--busy-core", "9999", "--quick"]) == 2
    assert "--busy-core 9999: not a usable core" in capsys.readouterr().err
