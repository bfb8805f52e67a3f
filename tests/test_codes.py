"""``fastnn._codes``: the one code table every backend reads."""

from __future__ import annotations

from fastnn import _codes as C
from fastnn.backends import _frontend


def test_activation_codes_are_distinct_and_named_both_ways():
    codes = list(C.ACTIVATION_CODES.values())
    assert len(set(codes)) == len(codes)
    assert {v: k for k, v in C.ACTIVATION_NAMES.items()} == C.ACTIVATION_CODES
    for name, code in C.ACTIVATION_CODES.items():
        assert getattr(C, name.upper()) == code  # RELU, GELU_TANH, ...
    assert C.NEEDS_PREACTIVATION <= set(codes) and C.TAKES_ALPHA <= set(codes)
    assert C.NEEDS_PREACTIVATION == {C.GELU, C.GELU_TANH, C.SILU}
    assert C.TAKES_ALPHA == {C.LEAKY_RELU, C.ELU}


def test_loss_codes_name_the_contract_kernels():
    losses = {v for k, v in vars(C).items() if k.startswith("LOSS_") and isinstance(v, int)}
    assert set(C.LOSS_KERNEL_NAMES) == losses
    assert tuple(C.LOSS_KERNEL_NAMES[code] for code in sorted(losses)) == _frontend.LOSS_NAMES


def test_hyper_slots_fill_the_vector_once_each():
    slots = {k: v for k, v in vars(C).items() if k.startswith("H_")}
    assert sorted(slots.values()) == list(range(C.N_HYPER)), slots


def test_int_constants_hold_every_integer_code_and_nothing_else():
    constants = C.int_constants()
    expected = {k: v for k, v in vars(C).items()
                if k.isupper() and type(v) is int}  # fmt: skip
    assert constants == expected
    assert {"RELU", "GELU", "LOSS_MSE", "OPT_ADAM", "H_EPS", "N_HYPER"} <= set(constants)
    assert all(type(v) is int for v in constants.values())
