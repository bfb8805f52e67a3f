"""Explicit SIMD for the convolution and sparse dense-layer kernels: vector FMAs on flat
arrays, accumulators on the stack; and the one atomic counter the thread team shares out
work with.

LLVM's loop vectorizer picks the wrong loop in a register-blocked convolution: it vectorizes
the runtime-length tap loop (gathers, one reduction per filter) and keeps the accumulators in
memory (3-25 GFLOP/s measured on the conv2 layer of MNIST_99, against 95-110 with these
intrinsics; benchmarks/numba_conv_options.py). So the micro-kernels of :mod:`.conv` say what
they mean.

Design:

A. :func:`vfma` is one vector multiply-add ``acc[i:i+V] += a * w[j:j+V]`` of ``V = lanes(x)``
   elements: 256 bits, 8 float32 or 4 float64 (one ymm register; Zen 4 issues two per cycle,
   as many flops as AVX-512 there; LLVM splits or joins the vector for other targets).
B. Accumulators live in :func:`stack_array`, an ``alloca`` of a compile-time size. Indexed only
   at constant offsets (loops of constant trip count, which LLVM unrolls), it is promoted to
   registers: a block of pixels x filters stays in registers over the whole tap loop.
C. No vector type reaches Numba's type system: the intrinsics load and store through the
   array's data pointer, so kernels stay ordinary Numba code over flat C-contiguous 1-D arrays.
   Indices are trusted (no bounds checks), like every kernel behind the checked front end;
   :func:`load` reads a scalar without the wrap-around test of negative indices that Numba
   adds to every signed index (three instructions per load in the inner loops).
D. A register block needs its size as a constant: :func:`specialized` compiles one function
   per value of its last argument (4, 3, 2 or 1 vectors of filters). Left to LLVM's inliner
   (a constant argument of an ordinary call), a large caller kept the runtime count and the
   accumulators went back to memory: the same block ran 2-3x slower inside the conv kernel
   than in a small benchmark loop.
E. :func:`fetch_add` is an atomic add on a shared int64 counter: the threads of a call take
   the next chunk of images from it (dynamic scheduling, see :mod:`.conv`).
F. Under ``NUMBA_DISABLE_JIT=1`` the same names are plain Python (NumPy slices), so the kernels
   stay valid Python, as the rest of the package.
G. ``wide_vfma``/``wide_vcopy`` are the same operations on 512-bit vectors (16 float32 or 8
   float64; two 256-bit halves on a CPU without AVX-512). Which width wins was measured per
   kernel and block shape: the convolutions' first 512-bit blocks ran slower (Intel Xeon with
   AVX-512, conv2 of MNIST_99: 41.6-51.5 against 31.3-37.8 ms per batch of 256), a block of 8
   pixels x 2 wide vectors of filters faster (:mod:`.conv_nhwc` Design E), and the sparse
   dense-layer forward of :mod:`.sparse` faster (784 -> 128 on MNIST digits, 1024 rows, one
   thread: 1.48 against 1.70 ms on 256 bits and 2.05 ms for the loops LLVM vectorized; median
   of 40, interleaved).
H. :func:`vpool2` pools V tiling 2 x 2 windows in registers: the two rows' even and odd
   elements are split by shuffles, so the value and the index of each maximum are vector
   selects. LLVM left the scalar loop of :mod:`.pool` at 4 lanes with scalar tails: it took
   3-4x as long (MNIST_99's first pooling, chunks of 8 images in L2: 150 against 45 us).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

from .jit import JIT_OPTIONS

VECTOR_BYTES = 32
WIDE_BYTES = 64  # Design G


def _width(dtype: types.Type, nbytes: int = VECTOR_BYTES) -> int:
    return nbytes // (dtype.bitwidth // 8)


def _vector_pointer(context, builder, arrty, arr, index, nbytes=VECTOR_BYTES):  # noqa: ANN001, ANN202
    data = make_array(arrty)(context, builder, arr).data
    vty = ir.VectorType(context.get_value_type(arrty.dtype), _width(arrty.dtype, nbytes))
    return builder.bitcast(builder.gep(data, [index]), vty.as_pointer()), vty


def _lanes_for(nbytes: int):  # noqa: ANN202
    @intrinsic
    def _lanes(typingctx, arr):  # noqa: ANN001, ANN202
        sig = types.intp(arr)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return context.get_constant(types.intp, _width(sig.args[0].dtype, nbytes))

        return sig, codegen

    return _lanes


_lanes, _wide_lanes = _lanes_for(VECTOR_BYTES), _lanes_for(WIDE_BYTES)


@intrinsic
def _stack_array(typingctx, size, like):  # noqa: ANN001, ANN202
    if not isinstance(size, types.IntegerLiteral):
        return None  # Numba retries with the literal value
    count = size.literal_value
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        elt = context.get_value_type(like.dtype)
        data = cgutils.alloca_once(builder, elt, size=count)  # in the entry block
        itemsize = context.get_abi_sizeof(elt)
        ary = make_array(arrty)(context, builder)
        intp = context.get_value_type(types.intp)
        populate_array(ary, data=data, shape=[intp(count)], strides=[intp(itemsize)],
                       itemsize=intp(itemsize), meminfo=None)  # fmt: skip
        return ary._getvalue()

    return arrty(size, like), codegen


def _splat(builder, vty, scalar):  # noqa: ANN001, ANN202
    """A vector of ``vty`` with ``scalar`` in every lane."""
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, scalar, ir.IntType(32)(0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32),
                                                                      vty.count), [0] * vty.count))


def _vfma_for(nbytes: int):  # noqa: ANN202
    @intrinsic
    def _vfma(typingctx, acc, ai, w, wi, a):  # noqa: ANN001, ANN202
        sig = types.void(acc, ai, w, wi, a)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            pacc, vty = _vector_pointer(context, builder, sig.args[0], args[0], args[1], nbytes)
            pw, _ = _vector_pointer(context, builder, sig.args[2], args[2], args[3], nbytes)
            scalar = context.cast(builder, args[4], sig.args[4], sig.args[0].dtype)
            splat = _splat(builder, vty, scalar)
            suffix = "f32" if sig.args[0].dtype.bitwidth == 32 else "f64"
            fnty = ir.FunctionType(vty, [vty, vty, vty])
            name = f"llvm.fma.v{vty.count}{suffix}"
            fma = cgutils.get_or_insert_function(builder.module, fnty, name)
            align = sig.args[0].dtype.bitwidth // 8
            total = builder.call(fma, [splat, builder.load(pw, align=align),
                                       builder.load(pacc, align=align)])  # fmt: skip
            builder.store(total, pacc, align=align)

        return sig, codegen

    return _vfma


_vfma, _wide_vfma = _vfma_for(VECTOR_BYTES), _vfma_for(WIDE_BYTES)


@intrinsic
def _vfmav(typingctx, acc, ai, a, aj, b, bj):  # noqa: ANN001, ANN202
    sig = types.void(acc, ai, a, aj, b, bj)

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        pacc, vty = _vector_pointer(context, builder, sig.args[0], args[0], args[1])
        pa, _ = _vector_pointer(context, builder, sig.args[2], args[2], args[3])
        pb, _ = _vector_pointer(context, builder, sig.args[4], args[4], args[5])
        suffix = "f32" if sig.args[0].dtype.bitwidth == 32 else "f64"
        fnty = ir.FunctionType(vty, [vty, vty, vty])
        fma = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{vty.count}{suffix}")
        align = sig.args[0].dtype.bitwidth // 8
        loads = [builder.load(p, align=align) for p in (pa, pb, pacc)]
        builder.store(builder.call(fma, loads), pacc, align=align)

    return sig, codegen


def _vcopy_for(nbytes: int):  # noqa: ANN202
    @intrinsic
    def _vcopy(typingctx, dst, di, src, si):  # noqa: ANN001, ANN202
        sig = types.void(dst, di, src, si)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            pdst, _ = _vector_pointer(context, builder, sig.args[0], args[0], args[1], nbytes)
            psrc, _ = _vector_pointer(context, builder, sig.args[2], args[2], args[3], nbytes)
            align = sig.args[0].dtype.bitwidth // 8
            builder.store(builder.load(psrc, align=align), pdst, align=align)

        return sig, codegen

    return _vcopy


_vcopy, _wide_vcopy = _vcopy_for(VECTOR_BYTES), _vcopy_for(WIDE_BYTES)


@intrinsic
def _vadd(typingctx, dst, di, src, si):  # noqa: ANN001, ANN202
    sig = types.void(dst, di, src, si)

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        pdst, _ = _vector_pointer(context, builder, sig.args[0], args[0], args[1])
        psrc, _ = _vector_pointer(context, builder, sig.args[2], args[2], args[3])
        align = sig.args[0].dtype.bitwidth // 8
        total = builder.fadd(builder.load(pdst, align=align), builder.load(psrc, align=align))
        builder.store(total, pdst, align=align)

    return sig, codegen


@intrinsic
def _load(typingctx, arr, i):  # noqa: ANN001, ANN202
    sig = arr.dtype(arr, i)

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        data = make_array(sig.args[0])(context, builder, args[0]).data
        return builder.load(builder.gep(data, [args[1]]))

    return sig, codegen


def _vpool2_for(nbytes: int):  # noqa: ANN202
    @intrinsic
    def _vpool2(typingctx, src, r, W, out, o, am, a, k):  # noqa: ANN001, ANN202
        sig = types.boolean(src, r, W, out, o, am, a, k)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            dty = sig.args[0].dtype
            elt, n, align = context.get_value_type(dty), _width(dty, nbytes), dty.bitwidth // 8
            i32, i64 = ir.IntType(32), ir.IntType(64)
            pair, vi64 = ir.VectorType(elt, 2 * n), ir.VectorType(i64, n)
            data = [make_array(sig.args[j])(context, builder, args[j]).data for j in (0, 3, 5)]
            r_, W_, k_ = (context.cast(builder, args[j], sig.args[j], types.int64)
                          for j in (1, 2, 7))  # fmt: skip
            rows = [builder.load(builder.bitcast(builder.gep(data[0], [s]), pair.as_pointer()),
                                 align=align) for s in (r_, builder.add(r_, W_))]  # fmt: skip
            undef = ir.Constant(pair, ir.Undefined)
            picks, right = [], []
            for row in rows:  # per row, the right element only if strictly greater (ties: first)
                e, d = (builder.shuffle_vector(row, undef, ir.Constant(
                    ir.VectorType(i32, n), list(range(first, 2 * n, 2)))) for first in (0, 1))
                right.append(builder.fcmp_ordered(">", d, e))
                picks.append(builder.select(right[-1], d, e))
            down = builder.fcmp_ordered(">", picks[1], picks[0])
            builder.store(builder.select(down, picks[1], picks[0]), builder.bitcast(
                builder.gep(data[1], [args[4]]), ir.VectorType(elt, n).as_pointer()), align=align)
            index = builder.add(builder.add(_splat(builder, vi64, k_), ir.Constant(
                vi64, list(range(0, 2 * n, 2)))), builder.select(
                down, builder.add(_splat(builder, vi64, W_), builder.zext(right[1], vi64)),
                builder.zext(right[0], vi64)))  # fmt: skip
            builder.store(index, builder.bitcast(builder.gep(data[2], [args[6]]),
                                                 vi64.as_pointer()), align=8)  # fmt: skip
            bits = ir.IntType(2 * n)
            nan = builder.bitcast(builder.fcmp_unordered("uno", rows[0], rows[1]), bits)
            return builder.icmp_unsigned("!=", nan, ir.Constant(bits, 0))

        return sig, codegen

    return _vpool2


_vpool2, _half_vpool2 = _vpool2_for(VECTOR_BYTES), _vpool2_for(VECTOR_BYTES // 2)


@intrinsic
def _fetch_add(typingctx, counter, value):  # noqa: ANN001, ANN202
    sig = types.int64(counter, value)

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        data = make_array(sig.args[0])(context, builder, args[0]).data
        step = context.cast(builder, args[1], sig.args[1], types.int64)
        return builder.atomic_rmw("add", data, step, "seq_cst")

    return sig, codegen


_counter_lock = threading.Lock()


def _py_fetch_add(counter: np.ndarray, value: int) -> int:
    with _counter_lock:
        old = int(counter[0])
        counter[0] = old + value
    return old


def specialized(template: Callable[[int], Callable]) -> Callable:
    """A function whose last argument is a compile-time constant (Design D).

    ``template(k)`` returns the implementation for the constant ``k``. In compiled code the
    result is an overload that asks Numba for the literal value of the last argument, so each
    constant compiles its own function with constant loop bounds whether or not LLVM inlines
    it; in plain Python it calls ``template(k)`` directly.
    """

    def function(*args):  # noqa: ANN002, ANN202
        return template(args[-1])(*args)

    function.__name__ = function.__qualname__ = template.__name__.removesuffix("_for")
    function.__doc__ = template.__doc__
    impl = template(1)  # its signature, for the overload

    def typer(*args):  # noqa: ANN002, ANN202
        if not isinstance(args[-1], types.IntegerLiteral):
            return None  # Numba retries with the literal
        return template(args[-1].literal_value)

    typer.__signature__ = inspect.signature(impl)
    overload(function, jit_options=dict(JIT_OPTIONS))(typer)
    return function


def _py_vadd(dst: np.ndarray, di: int, src: np.ndarray, si: int) -> None:
    v = _py_lanes(dst)
    dst[di : di + v] += src[si : si + v]


def _py_load(arr: np.ndarray, i: int) -> float:
    return arr[i]


def _py_lanes(arr: np.ndarray, nbytes: int = VECTOR_BYTES) -> int:
    return nbytes // arr.itemsize


def _py_wide_lanes(arr: np.ndarray) -> int:
    return _py_lanes(arr, WIDE_BYTES)


def _py_stack_array(size: int, like: np.ndarray) -> np.ndarray:
    return np.zeros(size, like.dtype)


def _py_vfma(acc: np.ndarray, ai: int, w: np.ndarray, wi: int, a: float,
             nbytes: int = VECTOR_BYTES) -> None:  # fmt: skip
    v = _py_lanes(acc, nbytes)
    acc[ai : ai + v] += a * w[wi : wi + v]


def _py_wide_vfma(acc: np.ndarray, ai: int, w: np.ndarray, wi: int, a: float) -> None:
    _py_vfma(acc, ai, w, wi, a, WIDE_BYTES)


def _py_vfmav(acc: np.ndarray, ai: int, a: np.ndarray, aj: int, b: np.ndarray, bj: int) -> None:
    v = _py_lanes(acc)
    acc[ai : ai + v] += a[aj : aj + v] * b[bj : bj + v]


def _py_vcopy(dst: np.ndarray, di: int, src: np.ndarray, si: int,
              nbytes: int = VECTOR_BYTES) -> None:  # fmt: skip
    v = _py_lanes(dst, nbytes)
    dst[di : di + v] = src[si : si + v]


def _py_wide_vcopy(dst: np.ndarray, di: int, src: np.ndarray, si: int) -> None:
    _py_vcopy(dst, di, src, si, WIDE_BYTES)


def _py_vpool2(src: np.ndarray, r: int, W: int, out: np.ndarray, o: int, am: np.ndarray,
               a: int, k: int, nbytes: int = VECTOR_BYTES) -> bool:  # fmt: skip
    n = _py_lanes(out, nbytes)
    s, flat_out, flat_am = src.reshape(-1), out.reshape(-1), am.reshape(-1)
    rows = s[r : r + 2 * n], s[r + W : r + W + 2 * n]
    right = [row[1::2] > row[0::2] for row in rows]
    picks = [np.where(g, row[1::2], row[0::2]) for g, row in zip(right, rows, strict=True)]
    down = picks[1] > picks[0]
    flat_out[o : o + n] = np.where(down, picks[1], picks[0])
    flat_am[a : a + n] = k + 2 * np.arange(n) + np.where(down, W + right[1], right[0])
    return bool(np.isnan(rows[0]).any() or np.isnan(rows[1]).any())


def _py_half_vpool2(src: np.ndarray, r: int, W: int, out: np.ndarray, o: int, am: np.ndarray,
                    a: int, k: int) -> bool:  # fmt: skip
    return _py_vpool2(src, r, W, out, o, am, a, k, VECTOR_BYTES // 2)


if numba.config.DISABLE_JIT:  # Design F
    lanes, stack_array, load, fetch_add = _py_lanes, _py_stack_array, _py_load, _py_fetch_add
    vfma, vfmav, vcopy, vadd = _py_vfma, _py_vfmav, _py_vcopy, _py_vadd
    wide_lanes, wide_vfma, wide_vcopy = _py_wide_lanes, _py_wide_vfma, _py_wide_vcopy
    vpool2, half_vpool2 = _py_vpool2, _py_half_vpool2
else:
    lanes, stack_array, load, fetch_add = _lanes, _stack_array, _load, _fetch_add
    vfma, vfmav, vcopy, vadd = _vfma, _vfmav, _vcopy, _vadd
    wide_lanes, wide_vfma, wide_vcopy = _wide_lanes, _wide_vfma, _wide_vcopy
    vpool2, half_vpool2 = _vpool2, _half_vpool2
lanes.__doc__ = "Elements per vector for the dtype of ``arr`` (a compile-time constant)."
stack_array.__doc__ = "A 1-D stack array of ``size`` (a literal int) elements of ``like``'s dtype."
vfma.__doc__ = "``acc[ai:ai+V] += a * w[wi:wi+V]``: one fused vector multiply-add (flat arrays)."
fetch_add.__doc__ = "Atomically add ``value`` to ``counter[0]`` (int64); return the old value."
load.__doc__ = "``arr[i]`` of a flat array, without Numba's negative-index wrap-around test."
vfmav.__doc__ = "``acc[ai:ai+V] += a[aj:aj+V] * b[bj:bj+V]``: a vector-vector multiply-add."
vadd.__doc__ = "``dst[di:di+V] += src[si:si+V]``: one vector add (flat arrays)."
vcopy.__doc__ = "``dst[di:di+V] = src[si:si+V]``: one vector load and store (flat arrays)."
wide_lanes.__doc__ = "Elements per 512-bit vector for the dtype of ``arr`` (Design G)."
wide_vfma.__doc__ = ":func:`vfma` on 512-bit vectors (``V = wide_lanes(acc)``; Design G)."
wide_vcopy.__doc__ = ":func:`vcopy` on 512-bit vectors (``V = wide_lanes(dst)``; Design G)."
vpool2.__doc__ = """V = lanes(out) 2 x 2 windows of stride 2 from the flat row pair at ``src[r:]``
and ``src[r + W:]`` (2V elements each): their maxima to ``out[o:o+V]``, their indices
``k + 2j + (0, 1, W or W + 1)`` (first in row order on ties) to the int64 ``am[a:a+V]``; True
if an element was NaN (Design H)."""
half_vpool2.__doc__ = ":func:`vpool2` on half a vector (V / 2 windows; Design H)."
