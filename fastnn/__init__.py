"""fastnn: small neural networks on a CPU, fast, from code a newcomer can read.

The public API::

    model = fastnn.Sequential([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 10)], seed=0)
    history = model.fit(X, y, loss="cross_entropy", optimizer=fastnn.SGD(0.1), batch_size=32)

Kernels come from a backend: the NumPy reference, or the compiled Numba and Cython backends
(``fastnn.available_backends()``).
"""

__version__ = "0.1.0"

from . import losses, optimizers, schedules
from .backends import available_backends, backend_status, get_backend, set_backend
from .callbacks import Callback, ProgressBar
from .callbacks_extra import EarlyStopping, ModelCheckpoint
from .denormals import flush_denormals_supported, get_flush_denormals, set_flush_denormals
from .errors import TrainingDivergedError
from .history import History
from .layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from .model import Sequential, load
from .optimizers import SGD, Adam
from .perceptron import Perceptron
from .threads import get_num_threads, set_num_threads

__all__ = [
    "Adam",
    "Callback",
    "Conv2D",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "History",
    "MaxPool2D",
    "ModelCheckpoint",
    "Perceptron",
    "ProgressBar",
    "SGD",
    "Sequential",
    "TrainingDivergedError",
    "available_backends",
    "backend_status",
    "flush_denormals_supported",
    "get_backend",
    "get_flush_denormals",
    "get_num_threads",
    "load",
    "losses",
    "optimizers",
    "schedules",
    "set_backend",
    "set_flush_denormals",
    "set_num_threads",
]
