"""The x86 floating-point control register (MXCSR) from compiled code: flushing denormals.

Why: a float32 below 1.2e-38 (a *subnormal*, or denormal) is slow on many x86 CPUs: every
operation that reads or makes one takes a microcode assist of ~100 cycles. Training makes them
in bulk: Adam's second moment ``v = b2 v + (1 - b2) g^2`` of a weight whose gradient is ~1e-20
(a unit that rarely fires) lands there and stays. Measured on an Intel Xeon (AVX-512) host:
Adam's update of 205,000 weights took 8.65 ms with 92% of ``v`` subnormal, 0.19 ms without,
and the MNIST_99 CNN's batches were 1.47x faster with denormals flushed. Like TensorFlow (on
by default in its threads) and ``torch.set_flush_denormal(True)``, fastnn trains with the
control register's FTZ (results that would be subnormal become 0) and DAZ (subnormal inputs
read as 0) bits set; see :mod:`fastnn.denormals` for the setting and its scope.

Design:

A. The control register belongs to a thread, so every thread that runs a kernel must carry
   the caller's mode: the parallel regions read the caller's register before they start
   (:func:`get_mode`) and each worker sets it on entry and puts its own back on exit
   (:func:`swap_mode`). Two threads then compute exactly what one does.
B. On any other architecture the functions compile to nothing and :data:`SUPPORTED` is False.
   Under ``NUMBA_DISABLE_JIT=1`` (plain Python) they leave the register alone too.
"""

from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..._codes import FLUSH_BITS  # MXCSR's FTZ and DAZ bits, one value for every backend
from .jit import kernel

#: Whether this machine has the register (x86-64).
SUPPORTED = (platform.machine().lower() in ("x86_64", "amd64")
             and not numba.config.DISABLE_JIT)  # fmt: skip


def _csr_call(builder, name: str, ptr) -> None:  # noqa: ANN001
    i8p = ir.IntType(8).as_pointer()
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p]),
                                        name)  # fmt: skip
    builder.call(fn, [builder.bitcast(ptr, i8p)])


def _py_read_csr() -> int:
    return 0


def _py_write_csr(value: int) -> None:
    return None


@intrinsic
def _read_csr(typingctx):  # noqa: ANN001, ANN202
    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        if not SUPPORTED:
            return context.get_constant(types.uint32, 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _csr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _write_csr(typingctx, value):  # noqa: ANN001, ANN202
    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        if SUPPORTED:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(context.cast(builder, args[0], sig.args[0], types.uint32), slot)
            _csr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(value), codegen


if numba.config.DISABLE_JIT:  # Design B
    _read_csr, _write_csr = _py_read_csr, _py_write_csr  # noqa: F811


@kernel
def get_mode():  # noqa: ANN201
    """This thread's flush bits (``FLUSH_BITS`` or a part of them; 0 off x86-64)."""
    return _read_csr() & FLUSH_BITS


@kernel
def swap_mode(mode):  # noqa: ANN001, ANN201
    """Set this thread's flush bits to ``mode`` (the rest of the register is kept); return the
    bits it had, for the matching restore."""
    old = _read_csr()
    _write_csr((old & ~FLUSH_BITS) | (mode & FLUSH_BITS))
    return old & FLUSH_BITS
