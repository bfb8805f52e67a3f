"""Learning-rate schedules (``fastnn.schedules``): the rate of every epoch, that it reaches
the kernels, and the checks of their arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn.datasets import make_blobs
from fastnn.schedules import CosineDecay, ExponentialDecay, LearningRateSchedule, StepDecay


def blobs(n: int = 400, d: int = 10, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n, d, k, spread=2.0, seed=seed)


def small_model(seed: int = 0) -> fastnn.Sequential:
    return fastnn.Sequential([fastnn.Dense(10, 16, "relu"), fastnn.Dense(16, 3)], seed=seed)


def test_rates_by_formula():
    assert [StepDecay(3, gamma=0.1).rate(e, 1.0, 9) for e in (0, 2, 3, 8)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.01])  # fmt: skip
    assert ExponentialDecay(0.5).rate(3, 0.8, 10) == pytest.approx(0.1)
    cosine = CosineDecay()
    assert [round(cosine.rate(e, lr0=0.1, epochs=4), 4) for e in range(4)] == [
        0.0962, 0.0691, 0.0309, 0.0038]  # fmt: skip
    assert CosineDecay(min_lr=0.0).rate(10, 0.1, 10) == pytest.approx(0.1e-6)  # never 0
    assert CosineDecay(total_epochs=2, min_lr=0.02).rate(7, 0.1, 10) == pytest.approx(0.02)


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="gamma"):
        StepDecay(2, gamma=0)
    with pytest.raises(ValueError, match="step_size"):
        StepDecay(0)
    with pytest.raises(TypeError, match="step_size"):
        StepDecay(1.5)
    with pytest.raises(ValueError, match="gamma"):
        ExponentialDecay(-0.5)
    with pytest.raises(ValueError, match="total_epochs"):
        CosineDecay(total_epochs=0)
    with pytest.raises(ValueError, match="min_lr"):
        CosineDecay(min_lr=-1.0)


def test_a_schedule_giving_a_bad_rate_stops_the_fit():
    class Broken(LearningRateSchedule):
        def rate(self, epoch, lr0, epochs):
            return lr0 if epoch == 0 else 0.0

    X, y = blobs(n=60)
    with pytest.raises(ValueError, match="Broken gave learning rate 0.0 at epoch 1"):
        small_model().fit(X, y, optimizer=fastnn.SGD(0.1), epochs=3, callbacks=[Broken()])


def test_the_base_rate_is_kept_across_fits():
    X, y = blobs(n=60)
    opt, schedule = fastnn.SGD(0.2), ExponentialDecay(0.5)
    model = small_model()
    model.fit(X, y, optimizer=opt, epochs=2, callbacks=[schedule])
    history = model.fit(X, y, optimizer=opt, epochs=2, callbacks=[schedule])
    assert schedule.lr0 == 0.2 and history.lr == pytest.approx([0.2, 0.1])


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (StepDecay(2, gamma=0.5), [0.2, 0.2, 0.1, 0.1, 0.05]),
        (ExponentialDecay(0.5), [0.2, 0.1, 0.05, 0.025, 0.0125]),
        (CosineDecay(), [0.2 * 0.5 * (1 + math.cos(math.pi * (e + 0.5) / 5)) for e in range(5)]),
        (
            CosineDecay(total_epochs=2, min_lr=0.01),
            [0.01 + 0.19 * 0.5 * (1 + math.cos(math.pi * t)) for t in (0.25, 0.75, 1, 1, 1)],
        ),
    ],
)
def test_schedules_set_the_learning_rate_of_every_epoch(schedule, expected):
    X, y = blobs()
    opt = fastnn.SGD(0.2)
    history = small_model().fit(X, y, optimizer=opt, epochs=5, callbacks=[schedule])
    np.testing.assert_allclose(history.lr, expected, rtol=1e-12)
    assert opt.lr == pytest.approx(expected[-1])


def test_schedule_changes_the_steps_actually_taken():
    """A schedule must reach the kernels, not just History.lr: compare with constant rates."""
    X, y = blobs()
    scheduled = small_model()
    scheduled.fit(
        X, y, optimizer=fastnn.SGD(0.2), epochs=2, shuffle=False, callbacks=[ExponentialDecay(0.5)]
    )
    manual = small_model()
    manual.fit(X, y, optimizer=fastnn.SGD(0.2), epochs=1, shuffle=False)
    manual.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=1, shuffle=False)
    for a, b in zip(scheduled.get_weights(), manual.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
