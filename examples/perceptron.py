"""The perceptron: a threshold unit that learns any linearly separable problem, and not XOR.

1. Two clouds of points separable by a line: the perceptron rule converges (an epoch without a
   mistake) and draws that line.
2. The logic gates AND and OR: also linearly separable, also learned.
3. XOR: no line separates {(0,1), (1,0)} from {(0,0), (1,1)}, so the perceptron keeps making
   mistakes forever. One hidden layer fixes it: the hidden units carve the plane with two
   lines and the output combines them.

Run: ``python examples/perceptron.py`` (under a second; no data to download).
"""

from __future__ import annotations

import argparse

import numpy as np

import fastnn

GATES_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
GATES = {"AND": [0, 0, 0, 1], "OR": [0, 1, 1, 1], "XOR": [0, 1, 1, 0]}


def separable_clouds(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clouds on either side of the line x0 + x1 = 0, with a margin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 2)) * 0.7
    X += np.where(y[:, None] == 1, 1.5, -1.5)
    return X, y


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", type=int, default=200, help="points in the two clouds")
    parser.add_argument("--max-epochs", type=int, default=100)
    args = parser.parse_args(argv)

    X, y = separable_clouds(args.points, args.seed)
    p = fastnn.Perceptron(2, lr=1.0, max_epochs=args.max_epochs, seed=args.seed).fit(X, y)
    w, b = p.W[:, 0], p.b[0]
    print(f"1. two separable clouds ({args.points} points): converged={p.converged_} after "
          f"{len(p.errors_)} epochs; mistakes per epoch {p.errors_}")  # fmt: skip
    print(f"   learned line: {w[0]:.2f} * x0 + {w[1]:.2f} * x1 + {b:.2f} = 0; "
          f"accuracy {p.score(X, y):.3f}")  # fmt: skip

    for gate, labels in GATES.items():
        p = fastnn.Perceptron(2, max_epochs=args.max_epochs, seed=args.seed).fit(GATES_X, labels)
        print(f"2. {gate:<3}: perceptron converged={p.converged_!s:<5} epochs={len(p.errors_):<3} "
              f"predictions {p.predict(GATES_X).tolist()} (want {labels}), "
              f"mistakes in the last epochs {p.errors_[-4:]}")  # fmt: skip

    # XOR with one hidden layer of 4 tanh units, trained by backpropagation (full batch).
    model = fastnn.Sequential([fastnn.Dense(2, 4, "tanh"), fastnn.Dense(4, 2)], seed=args.seed,
                              dtype="float64")  # fmt: skip
    history = model.fit(GATES_X, GATES["XOR"], optimizer=fastnn.Adam(0.05), batch_size=None,
                        epochs=500)  # fmt: skip
    print(f"3. XOR with one hidden layer (2-4-2, tanh): predictions "
          f"{model.predict(GATES_X).tolist()} (want {GATES['XOR']}), "
          f"accuracy {history.accuracy[-1]:.2f} after {history.epochs} epochs, "
          f"loss {history.loss[-1]:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
