"""The built-in row producers: fastnn (any backend), PyTorch and scikit-learn.

Each factory turns a :class:`~fastnn.bench.registry.Setup` into a trainer of the *same* model —
the MLP with the given initial weights, hidden activation, softmax cross-entropy and optimizer —
written the way a user of that library would write it. Building the trainer (data conversion,
model construction, copying the initial weights) is not timed; ``run`` is.

PyTorch and scikit-learn are imported inside their factories only, so a row of one library
never pays for importing another.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .registry import Setup

_ACTIVATIONS_TORCH = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid",
                      "leaky_relu": "LeakyReLU", "identity": "Identity"}  # fmt: skip
_ACTIVATIONS_SKLEARN = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic",
                        "identity": "identity"}  # fmt: skip


def optimizer_settings(optimizer: dict) -> dict:
    """``optimizer`` with every key filled in (defaults of ``fastnn.SGD`` / ``fastnn.Adam``)."""
    name = str(optimizer.get("name", "sgd")).lower()
    if name not in ("sgd", "adam"):
        raise ValueError(f"the benchmark knows optimizers 'sgd' and 'adam', got {name!r}")
    betas = optimizer.get("betas", (0.9, 0.999))
    return {
        "name": name,
        "lr": float(optimizer.get("lr", 0.01 if name == "sgd" else 1e-3)),
        "momentum": float(optimizer.get("momentum", 0.0)),
        "nesterov": bool(optimizer.get("nesterov", False)),
        "weight_decay": float(optimizer.get("weight_decay", 0.0)),
        "betas": [float(betas[0]), float(betas[1])],
        "eps": float(optimizer.get("eps", 1e-8)),
        # Learning rate of every epoch (a schedule), or None for a constant rate.
        "lr_schedule": [float(v) for v in optimizer["lr_schedule"]]
        if optimizer.get("lr_schedule")
        else None,
    }


def _rate(schedule: list[float] | None, epoch: int) -> float | None:
    """The scheduled rate of ``epoch`` (the last one once the schedule is over)."""
    return None if not schedule else schedule[min(epoch, len(schedule) - 1)]


# fastnn ------------------------------------------------------------------------------------
class FastnnTrainer:
    """``Sequential.fit`` over all epochs in one call; a callback marks every epoch."""

    def __init__(self, setup: Setup) -> None:
        import fastnn

        self.setup = setup
        from ..backends import resolve_backend

        # Resolved here, passed to fit: the process-wide default backend is left alone.
        wanted = setup.options.get("backend", "auto")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the check below says it better
            self.backend = resolve_backend(wanted).NAME
        if wanted != "auto" and self.backend != wanted:  # never time the fallback under its name
            raise RuntimeError(f"fastnn backend {wanted!r} is unavailable in this process")
        fastnn.set_num_threads(setup.threads)
        sizes = [setup.weights[0].shape[0], *setup.hidden, setup.n_classes]
        acts = [setup.activation] * (len(sizes) - 2) + [None]
        layers = [
            fastnn.Dense(d, k, a) for d, k, a in zip(sizes[:-1], sizes[1:], acts, strict=True)
        ]
        self.model = fastnn.Sequential(layers, seed=setup.seed, dtype="float32")
        self.model.set_weights(setup.weights)
        opt = optimizer_settings(setup.optimizer)
        if opt["name"] == "sgd":
            self.optimizer = fastnn.SGD(
                opt["lr"],
                momentum=opt["momentum"],
                nesterov=opt["nesterov"],
                weight_decay=opt["weight_decay"],
            )
        else:
            self.optimizer = fastnn.Adam(
                opt["lr"],
                betas=tuple(opt["betas"]),
                eps=opt["eps"],
                weight_decay=opt["weight_decay"],
            )

    def run(self, epochs: int, on_epoch_begin: Callable[[int], None],
            on_epoch_end: Callable[[int], bool]) -> None:  # fmt: skip
        import fastnn

        schedule = optimizer_settings(self.setup.optimizer)["lr_schedule"]

        class Marks(fastnn.Callback):
            def on_epoch_begin(self, epoch: int) -> None:
                on_epoch_begin(epoch)
                if schedule:  # as fastnn.schedules callbacks do: the rate of this epoch
                    self.model.optimizer.lr = _rate(schedule, epoch)

            def on_epoch_end(self, epoch: int, logs: dict) -> None:
                if on_epoch_end(epoch):
                    self.model.stop_training = True

        s = self.setup
        batch = None if s.batch_size >= s.X.shape[0] else s.batch_size
        self.model.fit(s.X, s.y, loss="cross_entropy", optimizer=self.optimizer, batch_size=batch,
                       epochs=epochs, seed=s.seed, backend=self.backend, track_accuracy=False,
                       callbacks=[Marks()])  # fmt: skip

    def test_accuracy(self) -> float:
        # Not timed, so any backend will do; the parity tests make them agree.
        return float(np.mean(self.model.predict(self.setup.X_test) == self.setup.y_test))


def fastnn_trainer(setup: Setup) -> FastnnTrainer:
    """fastnn with the backend ``setup.options["backend"]`` (default "auto")."""
    return FastnnTrainer(setup)


# PyTorch -----------------------------------------------------------------------------------
class TorchTrainer:
    """The idiomatic eager loop: ``nn.Sequential``, ``optim.SGD``/``Adam``, index-sliced tensors.

    Each epoch visits the samples in the same order as fastnn (the same NumPy permutation).
    """

    def __init__(self, setup: Setup) -> None:
        import torch

        self.torch = torch
        self.setup = setup
        torch.set_num_threads(setup.threads)
        nn = torch.nn
        modules: list = []
        n_layers = len(setup.weights) // 2
        for i in range(n_layers):
            W, b = setup.weights[2 * i], setup.weights[2 * i + 1]
            linear = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():  # fastnn's W is (in, out); torch stores (out, in)
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                linear.bias.copy_(torch.from_numpy(b))
            modules.append(linear)
            if i < n_layers - 1:
                modules.append(getattr(nn, _ACTIVATIONS_TORCH[setup.activation])())
        self.model = nn.Sequential(*modules)
        opt = optimizer_settings(setup.optimizer)
        params = self.model.parameters()
        if opt["name"] == "sgd":
            self.optimizer = torch.optim.SGD(
                params,
                lr=opt["lr"],
                momentum=opt["momentum"],
                nesterov=opt["nesterov"],
                weight_decay=opt["weight_decay"],
            )
        else:
            self.optimizer = torch.optim.Adam(
                params,
                lr=opt["lr"],
                betas=tuple(opt["betas"]),
                eps=opt["eps"],
                weight_decay=opt["weight_decay"],
            )
        self.loss_fn = nn.CrossEntropyLoss()
        self.X = torch.from_numpy(setup.X)
        self.y = torch.from_numpy(setup.y)
        self.X_test = torch.from_numpy(setup.X_test)
        self.rng = np.random.default_rng(setup.seed)

    def run(self, epochs: int, on_epoch_begin: Callable[[int], None],
            on_epoch_end: Callable[[int], bool]) -> None:  # fmt: skip
        n, bs = self.X.shape[0], self.setup.batch_size
        model, opt, loss_fn, X, y = self.model, self.optimizer, self.loss_fn, self.X, self.y
        model.train()
        schedule = optimizer_settings(self.setup.optimizer)["lr_schedule"]
        for epoch in range(epochs):
            on_epoch_begin(epoch)
            if schedule:
                for group in opt.param_groups:
                    group["lr"] = _rate(schedule, epoch)
            order = self.torch.from_numpy(self.rng.permutation(n))
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                opt.zero_grad()
                loss = loss_fn(model(X[idx]), y[idx])
                loss.backward()
                opt.step()
            if on_epoch_end(epoch):
                break

    def test_accuracy(self) -> float:
        with self.torch.inference_mode():
            pred = self.model(self.X_test).argmax(dim=1).numpy()
        return float(np.mean(pred == self.setup.y_test))


def torch_trainer(setup: Setup) -> TorchTrainer:
    """PyTorch CPU, ``torch.set_num_threads(setup.threads)``."""
    return TorchTrainer(setup)


# scikit-learn ------------------------------------------------------------------------------
class SklearnTrainer:
    """scikit-learn's ``MLPClassifier`` with the same hyper-parameters; one ``partial_fit``/epoch.

    scikit-learn shuffles with its own generator (seeded), so its batches differ from fastnn's.
    The initial weights are copied in after a one-sample ``partial_fit`` that only serves to
    let scikit-learn allocate its parameters and optimizer (not timed). Subclasses run another
    estimator with scikit-learn's API through the same code (``fastnn.sklearn``'s row).
    """

    activations = _ACTIVATIONS_SKLEARN  # fastnn's activation names -> the estimator's

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self._limit_threads(setup.threads)
        if setup.activation not in self.activations:
            raise ValueError(f"the estimator has no activation {setup.activation!r}")
        opt = optimizer_settings(setup.optimizer)
        self._schedule = opt["lr_schedule"]
        common = {"hidden_layer_sizes": tuple(setup.hidden), "alpha": opt["weight_decay"],
                  "activation": self.activations[setup.activation],
                  "batch_size": setup.batch_size, "learning_rate_init": opt["lr"],
                  "shuffle": True, "random_state": setup.seed, **self._extra_params()}  # fmt: skip
        estimator = self._estimator_class()
        if opt["name"] == "sgd":
            self.clf = estimator(solver="sgd", learning_rate="constant", momentum=opt["momentum"],
                                 nesterovs_momentum=opt["nesterov"], **common)  # fmt: skip
        else:
            betas = opt["betas"]
            self.clf = estimator(solver="adam", beta_1=betas[0], beta_2=betas[1],
                                 epsilon=opt["eps"], **common)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "batch_size larger than sample size" on 1 sample
            self.clf.partial_fit(setup.X[:1], setup.y[:1], classes=np.arange(setup.n_classes))
        # In place: the optimizer holds references to these very arrays.
        params = [*self.clf.coefs_, *self.clf.intercepts_]
        ours = [*setup.weights[0::2], *setup.weights[1::2]]
        for dst, src in zip(params, ours, strict=True):
            dst[...] = src
        self._restart_optimizer()  # forget the optimizer state of that one-sample step

    # -- what differs between estimators ------------------------------------------------------
    def _estimator_class(self) -> type:
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier

    def _extra_params(self) -> dict:
        return {}

    def _limit_threads(self, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=threads)  # kept for the process lifetime

    def _restart_optimizer(self) -> None:
        state = self.clf._optimizer
        for buffers in ("velocities", "ms", "vs"):
            for buf in getattr(state, buffers, ()):
                buf[...] = 0
        if hasattr(state, "t"):
            state.t = 0

    def _set_rate(self, rate: float) -> None:
        self.clf._optimizer.learning_rate = rate  # the optimizer partial_fit keeps between calls

    # -- the timed part ------------------------------------------------------------------------
    def run(self, epochs: int, on_epoch_begin: Callable[[int], None],
            on_epoch_end: Callable[[int], bool]) -> None:  # fmt: skip
        s = self.setup
        for epoch in range(epochs):
            on_epoch_begin(epoch)
            if self._schedule:
                self._set_rate(_rate(self._schedule, epoch))
            self.clf.partial_fit(s.X, s.y)
            if on_epoch_end(epoch):
                break

    def test_accuracy(self) -> float:
        return float(np.mean(self.clf.predict(self.setup.X_test) == self.setup.y_test))


def sklearn_trainer(setup: Setup) -> SklearnTrainer:
    """scikit-learn's MLPClassifier; BLAS limited to ``setup.threads`` threads."""
    return SklearnTrainer(setup)
