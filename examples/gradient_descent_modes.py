"""Full-batch, stochastic and mini-batch gradient descent on the same data.

Two people walk to a market in the valley. The first studies the whole map before every step:
each step points exactly downhill, but she takes few of them per hour (full-batch gradient
descent: one step per pass over all the data). The second asks a single passer-by at each
corner: the advice is noisy and he zigzags, but he takes a step every few seconds (stochastic
gradient descent: one step per sample). Most people do something in between: ask a small group,
step, ask again (mini-batch gradient descent).

The same network, the same data, the same number of epochs (passes over the data) for each; an
iteration is one step on one batch, so ``iterations = epochs * ceil(n / batch_size)``.
Each mode gets a learning rate that suits it: large, reliable steps for the full batch; small,
noisy ones for single samples.

Run: ``python examples/gradient_descent_modes.py`` (a few seconds);
``--plot modes.png`` draws the loss curves (needs matplotlib). Needs MNIST (``FASTNN_DATA``
or a download).
"""

from __future__ import annotations

import argparse

import fastnn
from fastnn.datasets import load_mnist

# (name, batch size (None = all samples), learning rate)
MODES = [
    ("full-batch", None, 0.5),
    ("stochastic", 1, 0.005),
    ("mini-batch", 64, 0.1),
]
SPARK = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float, hi: float) -> str:
    """A loss curve in one line of block characters, on the scale [lo, hi] (high = large loss)."""
    span = (hi - lo) or 1.0
    return "".join(SPARK[1 + round((v - lo) / span * (len(SPARK) - 2))] for v in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000, help="training samples to use")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--plot", default=None, metavar="PATH", help="PNG of the loss curves")
    args = parser.parse_args(argv)

    X, y, X_test, y_test = load_mnist()
    X, y = X[: args.subset], y[: args.subset]
    print(f"{len(X)} MNIST training samples, 784-64-10 ReLU network, {args.epochs} epochs, "
          f"backend {fastnn.get_backend()}\n")  # fmt: skip
    header = (f"{'mode':<11}{'batch':>6}{'lr':>7}{'iter/epoch':>11}{'iterations':>11}"
              f"{'epochs':>7}{'loss':>8}{'test acc':>9}{'seconds':>9}  loss per epoch")  # fmt: skip
    print(header)
    results, rows = {}, []
    for name, batch_size, lr in MODES:
        model = fastnn.Sequential([fastnn.Dense(784, 64, "relu"), fastnn.Dense(64, 10)], seed=0)
        h = model.fit(X, y, optimizer=fastnn.SGD(lr), batch_size=batch_size, epochs=args.epochs,
                      track_accuracy=False)  # fmt: skip
        acc = model.evaluate(X_test, y_test)["accuracy"]
        results[name] = h
        rows.append(f"{name:<11}{h.batch_size:>6}{lr:>7g}{h.iterations_per_epoch:>11}"
                    f"{h.iterations:>11}{h.epochs:>7}{h.loss[-1]:>8.4f}{acc:>9.4f}"
                    f"{sum(h.seconds):>9.2f}")  # fmt: skip
    # One scale for every curve, so the curves can be compared with each other.
    lo = min(min(h.loss) for h in results.values())
    hi = max(max(h.loss) for h in results.values())
    for row, h in zip(rows, results.values(), strict=True):
        print(f"{row}  {sparkline(h.loss, lo, hi)}")
    best = min(results, key=lambda k: results[k].loss[-1])
    print(f"\nAfter the same {args.epochs} epochs the lowest training loss is {best}'s. The full "
          "batch took one careful step\nper epoch; the stochastic walker took one noisy step "
          "per sample; mini-batches take many steps,\neach fairly reliable, and each is one "
          "matrix product over the batch (see the seconds column).")  # fmt: skip
    if args.plot:
        plot(results, args.plot)
        print(f"loss curves written to {args.plot}")


def plot(results: dict[str, fastnn.History], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, h in results.items():
        ax.plot(range(1, h.epochs + 1), h.loss, marker="o",
                label=f"{name} ({h.iterations} iterations)")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
