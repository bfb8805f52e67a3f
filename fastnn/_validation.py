"""Input checks shared by the API: every problem becomes an exception that names it."""

from __future__ import annotations

import math

import numpy as np

DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
#: Largest slice of X one finiteness check reads at once (bounded memory for any X).
CHECK_BYTES = 8 << 20


def check_dtype(dtype: object) -> np.dtype:
    """The model dtype (float32 or float64) from a name or a NumPy dtype."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in DTYPES.values():
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dt}")
    return dt


def _checked_array(X: object, shape: int | tuple[int, ...] | None, name: str) -> np.ndarray:
    """``X`` as an array of real numbers of the right shape, converted only if it was not an
    array already (an ndarray, a memmap or a view stays the caller's memory)."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    arr = X if isinstance(X, np.ndarray) else np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if shape is None or len(shape) == 1:
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D with shape (n_samples, n_features), got shape {arr.shape}"
            )
    elif arr.ndim != len(shape) + 1:
        dims = ", ".join(map(str, shape))
        raise ValueError(f"{name} must have shape (n_samples, {dims}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if shape is not None and arr.shape[1:] != tuple(shape):
        if len(shape) == 1:
            raise ValueError(f"{name} has {arr.shape[1]} features, the model expects {shape[0]}")
        raise ValueError(
            f"{name} has samples of shape {arr.shape[1:]}, the model expects {tuple(shape)}"
        )
    return arr


def check_X(
    X: object, shape: int | tuple[int, ...] | None, dtype: np.dtype, name: str = "X"
) -> np.ndarray:
    """Return ``X`` as a finite, C-contiguous array of ``dtype`` (one copy at most).

    ``shape`` is the shape of one sample: an int (features of a 2-D input), a tuple such as
    ``(784,)`` or ``(1, 28, 28)``, or None for any 2-D input. Integers, float16 and
    non-contiguous arrays are converted; strings, objects, complex numbers, NaN and inf are
    rejected. (``fit``, ``predict`` and ``evaluate`` use :func:`check_X_in_place`, which
    converts nothing.)
    """
    arr = _checked_array(X, shape, name)
    with np.errstate(over="ignore"):  # a value beyond float32's range is reported below
        converted = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(converted).all():
        _raise_not_finite(arr, converted, name)
    return converted


def check_X_in_place(
    X: object,
    shape: int | tuple[int, ...] | None,
    dtype: np.dtype,
    name: str = "X",
    scale: float | None = None,
) -> np.ndarray:
    """Check ``X`` as :func:`check_X` does, without converting it.

    Returns the caller's array itself (an ``ndarray``, a view or a ``numpy.memmap``; anything
    else, such as a list, becomes an array of ``dtype``). The values are checked as they will
    be fed to the model, ``dtype(X * scale)``, in chunks of at most ``CHECK_BYTES`` of ``X``:
    the check needs bounded memory however large ``X`` is (a memmap is read once, not held).
    """
    if not isinstance(X, np.ndarray):
        X = _as_real_array(X, dtype, name)
    arr = _checked_array(X, shape, name)
    limit = float(np.finfo(dtype).max)
    factor = 1.0 if scale is None else abs(float(scale))
    if _largest_of_type(arr.dtype) * factor < limit:
        return arr  # no value of this (integer) type can overflow: nothing to read
    step = max(1, CHECK_BYTES // max(1, arr[:1].nbytes))
    for start in range(0, arr.shape[0], step):
        block = arr[start : start + step]
        # min and max propagate NaN and see inf: two passes that allocate nothing.
        lo, hi = float(np.min(block)), float(np.max(block))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _raise_not_finite_chunked(arr, name, step)
        if max(abs(lo), abs(hi)) * factor > limit:
            _raise_if_overflows(arr, dtype, scale, name, step)
    return arr


def _largest_of_type(dt: np.dtype) -> float:
    """The largest magnitude a value of an integer or bool dtype can have (inf for floats)."""
    if dt.kind == "b":
        return 1.0
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return float(max(-int(info.min), int(info.max)))
    return math.inf


def _as_real_array(X: object, dtype: np.dtype, name: str) -> np.ndarray:
    """A list or other array-like as an array of ``dtype`` (strings and objects refused)."""
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr if arr.dtype.kind == "b" else arr.astype(dtype)


def _scaled(block: np.ndarray, dtype: np.dtype, scale: float | None) -> np.ndarray:
    """``block`` as the model sees it: cast to ``dtype`` and times ``scale`` (in float64)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if scale is None:
            return block.astype(dtype)
        return np.multiply(block, float(scale), dtype=np.float64).astype(dtype)


def _raise_not_finite_chunked(arr: np.ndarray, name: str, step: int) -> None:
    """Count the NaN/inf of ``X`` chunk by chunk (the failure path) and raise."""
    bad = sum(
        int(np.count_nonzero(~np.isfinite(arr[s : s + step]))) for s in range(0, arr.shape[0], step)
    )
    raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def _raise_if_overflows(
    arr: np.ndarray, dtype: np.dtype, scale: float | None, name: str, step: int
) -> None:
    """Raise when a finite value of ``X`` (times ``scale``) is beyond ``dtype``'s range.

    Only runs when the range of a chunk came close to the limit, so it may find nothing
    (a value that rounds to the largest finite number is fine).
    """
    bad, largest = 0, 0.0
    for s in range(0, arr.shape[0], step):
        block = arr[s : s + step]
        over = ~np.isfinite(_scaled(block, dtype, scale))
        if over.any():
            bad += int(np.count_nonzero(over))
            largest = max(largest, float(np.max(np.abs(block[over].astype(np.float64)))))
    if bad:
        limit = float(np.finfo(dtype).max)
        scaled = "" if scale is None else f" times input_scale {float(scale):g}"
        raise ValueError(
            f"{name} contains {bad} value(s) out of {np.dtype(dtype)} range{scaled} "
            f"(largest magnitude {largest:.3g}, {np.dtype(dtype)} holds up to {limit:.3g}); "
            "rescale the data or use dtype='float64'"
        )


def check_input_scale(scale: object) -> float | None:
    """``None`` or a finite number > 0: the factor applied to every input batch."""
    if scale is None:
        return None
    return check_positive("input_scale", scale)


def _raise_not_finite(arr: np.ndarray, converted: np.ndarray, name: str) -> None:
    """Say whether the input held NaN/inf or finite values too large for the model dtype.

    Runs only on failure, so a valid ``X`` pays for one ``isfinite`` pass, not two.
    """
    original_bad = int(np.count_nonzero(~np.isfinite(arr))) if arr.dtype.kind == "f" else 0
    if original_bad:
        raise ValueError(f"{name} contains {original_bad} NaN or infinite value(s)")
    bad = ~np.isfinite(converted)
    largest = float(np.max(np.abs(arr[bad])))
    limit = float(np.finfo(converted.dtype).max)
    raise ValueError(
        f"{name} contains {int(np.count_nonzero(bad))} value(s) out of {converted.dtype} range "
        f"(largest magnitude {largest:.3g}, {converted.dtype} holds up to {limit:.3g}); "
        "rescale the data or use dtype='float64'"
    )


def check_positive(name: str, value: object, integer: bool = False, allow_zero: bool = False):
    """A finite number > 0 (or >= 0 with ``allow_zero``); an int when ``integer``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return int(value) if integer else float(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool (Python or NumPy), else a TypeError naming ``name``.

    Strings are refused rather than judged by truthiness: ``shuffle="no"`` would be true.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_choice(kind: str, name: object, valid: dict) -> str:
    """``name`` lower-cased if it is one of ``valid``, else a ValueError listing them."""
    if not isinstance(name, str) or name.lower() not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")
    return name.lower()


def check_seed(name: str, seed: object) -> int:
    """A seed for ``numpy.random.default_rng``: a non-negative integer (not a bool or float)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 0 or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, got {seed!r}")
    return int(seed)
