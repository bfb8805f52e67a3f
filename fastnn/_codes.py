"""Integer codes shared by the API and every backend.

Compiled kernels (Numba, Cython) cannot take Python strings cheaply, so the API
translates names into these small integers once per ``fit``. Every backend reads
the same table; change it here only.
"""

from __future__ import annotations

# Activations ------------------------------------------------------------------
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
SOFTMAX = 5
GELU = 6  # exact: z * Phi(z), Phi the standard normal CDF (PyTorch's default GELU)
GELU_TANH = 7  # the tanh approximation of GELU (PyTorch's approximate="tanh")
SILU = 8  # z * sigmoid(z), also called swish
ELU = 9  # z if z > 0 else alpha * (exp(z) - 1)

ACTIVATION_CODES: dict[str, int] = {
    "identity": IDENTITY,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "softmax": SOFTMAX,
    "gelu": GELU,
    "gelu_tanh": GELU_TANH,
    "silu": SILU,
    "elu": ELU,
}
ACTIVATION_NAMES: dict[int, str] = {v: k for k, v in ACTIVATION_CODES.items()}

# Activations whose derivative cannot be written from their output alone: the kernels keep the
# pre-activation z for these (and only these) in a caller-owned buffer.
NEEDS_PREACTIVATION: frozenset[int] = frozenset({GELU, GELU_TANH, SILU})
# The activations that read the activation parameter ``alpha`` (leaky ReLU's negative slope,
# ELU's alpha); every other activation ignores it.
TAKES_ALPHA: frozenset[int] = frozenset({LEAKY_RELU, ELU})

# Losses -------------------------------------------------------------------------
# Every loss works on the raw outputs of the last layer (logits where a softmax or
# sigmoid is fused in) and returns the mean over the batch.
LOSS_MSE = 0  # targets float (n, k)
LOSS_CROSS_ENTROPY = 1  # targets int64 class indices (n,)
LOSS_CROSS_ENTROPY_SOFT = 2  # targets float probabilities (n, k)
LOSS_BINARY_CROSS_ENTROPY = 3  # targets float in [0, 1] (n, k)
LOSS_KL_DIVERGENCE = 4  # targets float probabilities (n, k)

# Optimizers -----------------------------------------------------------------
OPT_SGD = 0  # plain SGD (momentum == 0)
OPT_MOMENTUM = 1  # heavy-ball or Nesterov momentum
OPT_ADAM = 2

# Layout of the float64 hyper-parameter vector handed to ``train_epoch``.
H_LR = 0
H_MOMENTUM = 1
H_NESTEROV = 2  # 0.0 or 1.0
H_WEIGHT_DECAY = 3
H_BETA1 = 4
H_BETA2 = 5
H_EPS = 6
N_HYPER = 7

# Denormal flushing (fastnn.denormals): the FTZ (bit 15) and DAZ (bit 6) bits of x86's MXCSR,
# one value for every backend (the Cython build gets it through codes.pxd).
FLUSH_BITS = 0x8040

# Name of each loss kernel in every backend module (the kernel contract).
LOSS_KERNEL_NAMES: dict[int, str] = {
    LOSS_MSE: "mse",
    LOSS_CROSS_ENTROPY: "softmax_cross_entropy",
    LOSS_CROSS_ENTROPY_SOFT: "softmax_cross_entropy_soft",
    LOSS_BINARY_CROSS_ENTROPY: "binary_cross_entropy",
    LOSS_KL_DIVERGENCE: "kl_divergence",
}


def int_constants() -> dict[str, int]:
    """Every integer code of this table by name (the Cython build generates its enum from it)."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
    }
