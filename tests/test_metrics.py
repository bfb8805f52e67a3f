"""``fastnn.metrics``: labels from outputs and accuracy against every kind of target."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.metrics import accuracy, labels_of


def test_labels_are_the_arg_max_or_a_threshold_for_one_column():
    np.testing.assert_array_equal(labels_of(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])), [1, 0])
    labels = labels_of(np.array([[0.2], [0.5], [0.9]]))
    assert labels.dtype == np.int64 and list(labels) == [0, 1, 1]


@pytest.mark.parametrize(
    "targets",
    [np.array([1, 0, 2, 2]), np.eye(3)[[1, 0, 2, 2]], np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1],
                                                                 [0.1, 0.1, 0.8], [0, 0.4, 0.6]])],
    ids=["labels", "one-hot", "probabilities"],
)  # fmt: skip
def test_accuracy_against_labels_one_hot_and_probabilities(targets):
    outputs = np.array([[0.0, 3.0, 1.0], [2.0, 1.0, 0.0], [0.0, 5.0, 1.0], [0.0, 0.0, 9.0]])
    assert accuracy(outputs, targets, fused_sigmoid=False) == 0.75


def test_one_output_is_cut_at_zero_for_logits_and_at_one_half_for_probabilities():
    outputs = np.array([[-0.2], [0.3], [0.7]])
    targets = np.array([[0.0], [1.0], [1.0]])
    assert accuracy(outputs, targets, fused_sigmoid=True) == 1.0  # logits: 0.3 > 0
    assert accuracy(outputs, targets, fused_sigmoid=False) == pytest.approx(2 / 3)  # 0.3 < 0.5
    assert accuracy(outputs, np.array([0, 1, 1]), fused_sigmoid=True) == 1.0
