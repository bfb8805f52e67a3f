# cython: language_level=3
"""One output row of the zero-skipping forward in register blocks (C, GCC vector extensions).

``o[:c] += sum_q xr[nz[q]] * W[nz[q], :c]`` over the listed inputs, for the first ``c``
columns (whole blocks; ``c`` is returned). ``sparse.pxd``'s ``axpy4`` loops read and write
the output row once per four inputs; here a block of 8 vectors of outputs (64 float32 or 32
float64 columns on AVX2) stays in 8 of the 16 vector registers over the whole list, so an
input costs 8 loads of ``W`` and 8 FMAs. The numba backend's ``sparse.py`` (Design A) does
the same for two rows at a time in 512-bit registers; AVX2's 16 registers hold one row's
block. The columns after the last whole block stay with ``axpy4`` (a plain per-input loop
over them here was slower: 784 -> 100 on MNIST digits, 6.6 ms against 3.6 ms).

Measured (Intel Xeon host, 2 threads, MNIST MLP 784-128-10, 20,000 samples, 4 alternating
process pairs against the ``axpy4`` loops alone): batch 32 0.127-0.156 s per epoch against
0.149-0.181 s; batch 1 (0.37-0.46 against 0.37-0.45) and batch 128 (0.10-0.11 both)
unchanged; a 1024-row forward alone no faster beyond noise.

Only where GCC or Clang compiles for AVX2 (the ``_kernels_v3`` build, ``FASTNN_NATIVE=1``):
elsewhere the functions are 0, no column is done here and ``axpy4`` does every column (on
SSE2's 16 registers of 128 bits a block of 8 vectors of 256 bits would spill).
"""


cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__AVX2__)
    #include <string.h>
    #define FASTNN_BLOCK_VECTORS 8
    #define FASTNN_ROW_BLOCK(name, T, VT)                                                   \\
        static Py_ssize_t name(T *__restrict__ o, Py_ssize_t k, const T *__restrict__ xr,   \\
                               const int *__restrict__ nz, Py_ssize_t cnt,                  \\
                               const T *__restrict__ W) {                                   \\
            const Py_ssize_t L = (Py_ssize_t)(sizeof(VT) / sizeof(T));                      \\
            const Py_ssize_t B = FASTNN_BLOCK_VECTORS * L;                                  \\
            Py_ssize_t c0 = 0, q, g;                                                        \\
            for (; c0 + B <= k; c0 += B) {                                                  \\
                VT acc[FASTNN_BLOCK_VECTORS];                                               \\
                for (g = 0; g < FASTNN_BLOCK_VECTORS; g++)                                  \\
                    memcpy(&acc[g], o + c0 + g * L, sizeof(VT));                            \\
                for (q = 0; q < cnt; q++) {                                                 \\
                    const T *w = W + (Py_ssize_t)nz[q] * k + c0;                            \\
                    const T a = xr[nz[q]];                                                  \\
                    for (g = 0; g < FASTNN_BLOCK_VECTORS; g++) {                            \\
                        VT wv;                                                              \\
                        memcpy(&wv, w + g * L, sizeof(VT));                                 \\
                        acc[g] += a * wv;                                                   \\
                    }                                                                       \\
                }                                                                           \\
                for (g = 0; g < FASTNN_BLOCK_VECTORS; g++)                                  \\
                    memcpy(o + c0 + g * L, &acc[g], sizeof(VT));                            \\
            }                                                                               \\
            return c0;                                                                      \\
        }
    typedef float fastnn_v8sf __attribute__((vector_size(32)));
    typedef double fastnn_v4df __attribute__((vector_size(32)));
    FASTNN_ROW_BLOCK(fastnn_row_blocks_f, float, fastnn_v8sf)
    FASTNN_ROW_BLOCK(fastnn_row_blocks_d, double, fastnn_v4df)
    #else
    #define fastnn_row_blocks_f(o, k, xr, nz, cnt, W) ((Py_ssize_t)0)
    #define fastnn_row_blocks_d(o, k, xr, nz, cnt, W) ((Py_ssize_t)0)
    #endif
    """
    Py_ssize_t fastnn_row_blocks_f(float* o, Py_ssize_t k, const float* xr, const int* nz,
                                   Py_ssize_t cnt, const float* W) noexcept nogil
    Py_ssize_t fastnn_row_blocks_d(double* o, Py_ssize_t k, const double* xr, const int* nz,
                                   Py_ssize_t cnt, const double* W) noexcept nogil
