# cython: language_level=3
"""The kernels of ``_kernels.pyx``, compiled a second time with AVX2 + FMA (see setup.py).

``fastnn.backends.cython`` imports this build only on CPUs that have those instructions.
"""

include "_kernels.pyx"
