"""Datasets: MNIST and the IDX file format it is stored in.

``load_mnist()`` returns ``(X_train, y_train, X_test, y_test)`` ready for ``fit``: float32 rows
of 784 pixels in [0, 1] and int64 labels. It reads the original IDX files (gzip or raw) from
one directory (``root``, else ``$FASTNN_DATA/mnist``, else the cache directory), verifies them,
and downloads missing ones into that directory. ``read_idx`` reads any IDX file;
``make_blobs`` makes a small learnable problem.
"""

from ._idx import read_idx
from .mnist import MNIST_SHA256, load_mnist, mnist_cache_dir
from .synthetic import make_blobs

__all__ = ["MNIST_SHA256", "load_mnist", "make_blobs", "mnist_cache_dir", "read_idx"]
