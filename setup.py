"""Build script: the pure-Python package always installs; the Cython extension when it can.

The Cython backend (``fastnn.backends.cython._kernels``) is optional. ``FASTNN_NO_EXTENSIONS=1``
skips it; a machine without a C compiler, Cython or scipy's BLAS declarations gets a working
NumPy/Numba fastnn and a warning at build time, and the backend then reports itself unavailable.

Flags are portable (``-O3``, OpenMP when the compiler has it). ``FASTNN_NATIVE=1`` adds
``-march=native`` for a build that only has to run on the machine that compiles it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PACKAGE_DIR = os.path.join("fastnn", "backends", "cython")
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,  # float division by zero gives inf/NaN (the loss check sees it)
    "initializedcheck": False,
    "nonecheck": False,
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _warn(message: str) -> None:
    print(
        f"WARNING (fastnn): {message}; fastnn installs without its Cython backend.", file=sys.stderr
    )


def _extensions() -> list[Extension]:
    if _flag("FASTNN_NO_EXTENSIONS"):
        print("fastnn: FASTNN_NO_EXTENSIONS is set, skipping the Cython backend.", file=sys.stderr)
        return []
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError as exc:
        _warn(f"cannot build the extension ({exc})")
        return []
    ext = Extension(
        "fastnn.backends.cython._kernels",
        [os.path.join(PACKAGE_DIR, "_kernels.pyx")],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        optional=True,  # a compiler error is a warning, not a failed install
    )
    try:
        return cythonize([ext], compiler_directives=DIRECTIVES, build_dir="build")
    except Exception as exc:  # Cython errors, scipy's .pxd missing, ...
        _warn(f"Cython could not translate the backend ({exc})")
        return []


class BuildExt(build_ext):
    """Adds optimisation and OpenMP flags the compiler accepts; failures only warn."""

    def build_extensions(self) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        args = ["/O2"] if msvc else ["-O3"]
        if _flag("FASTNN_NATIVE") and not msvc:
            args.append("-march=native")
        openmp = ["/openmp"] if msvc else ["-fopenmp"]
        has_openmp = self._compiles_with(openmp)
        if not has_openmp:
            print("fastnn: no OpenMP; the Cython backend will run on one thread.", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args += args + (openmp if has_openmp else [])
            if has_openmp and not msvc:
                ext.extra_link_args += openmp
        try:
            super().build_extensions()
        except Exception as exc:  # noqa: BLE001 - any build failure must leave a usable install
            _warn(f"building the extension failed ({exc})")

    def _compiles_with(self, flags: list[str]) -> bool:
        source = textwrap.dedent(
            """
            #include <omp.h>
            int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
            """
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "check_openmp.c")
            with open(path, "w") as f:
                f.write(source)
            try:
                objects = self.compiler.compile([path], output_dir=tmp, extra_postargs=flags)
                self.compiler.link_executable(
                    objects, "check_openmp", output_dir=tmp, extra_postargs=flags
                )
            except Exception:  # noqa: BLE001 - any failure means "no OpenMP here"
                return False
        return True


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
