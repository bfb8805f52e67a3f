# cython: language_level=3
"""The thread team of the epoch: how work is split, and whether the chunks run on threads.

A ``Team`` splits work into ``size`` chunks, run on ``size`` OpenMP threads when ``parallel``,
else one after the other: the zero-skipping loops (``sparse.pxd``), the optimizer updates and,
with ``own_blas``, the BLAS products, each chunk calling the backend's own single-threaded BLAS
handle (``blas.pxd``). One thread pool, never two: OpenMP workers spinning after a ``prange``
starve BLAS's own threads (DESIGN.md, 25x), and BLAS threads inside the team would
oversubscribe the cores. Without ``own_blas`` (no ``scipy-openblas32``) the team never calls
BLAS: every product runs whole on the calling thread, outside any parallel region, with the
threads the process gave scipy's BLAS. fastnn never changes those (a process-wide limit is
seen by every other thread).

Whether the chunks run on threads is decided by timing work in both modes.

Threads pay on an idle machine (measured ~1.3x per epoch at batch 128 and ~1.5x for full
batches on 2 cores), and cost 4-7x when another process holds a core: every parallel region
then waits for a descheduled thread. Loops over many blocks (rows of the forward and the
gather, groups of features of dW) hand them out on a dynamic schedule, so a slowed thread does
fewer of them; the end of each region still waits for it.

- Batches below ``epoch.PROBE_BATCH`` rows: the epoch measures the seconds per row of whole
  batches in each mode (kept between calls in a small ``stats`` array owned by the caller),
  runs the faster mode and retries the other now and then, less often the more it lost.
- Larger batches (full batch: one batch per call) decide inside the batch, from blocks of
  their first layer's forward timed in each mode (``epoch.forward_first_probed``): a choice
  never costs a whole one-step epoch in the slower mode. ``stats[PROBED]`` keeps it for the
  next large batch's gather, which comes before its probe.

Both modes give the same results (each chunk computes whole rows, the same in any split), so
the choice never changes what is learned.

``stats`` (STATS doubles, zeros at first): seconds per row serial, seconds per row parallel,
batches until the next retry, retry batches left, the mode being retried, retries so far, and
the last probe's mode plus 1 (0: none yet). The first retries come sooner: one early sample
(threads waking up, another process's burst) must not decide for long.
"""

from .codes cimport FLUSH_BITS


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static double fastnn_wtime(void) { return omp_get_wtime(); }
    static int fastnn_has_openmp(void) { return 1; }
    #else
    static double fastnn_wtime(void) { return 0.0; }
    static int fastnn_has_openmp(void) { return 0; }
    #endif
    """
    double fastnn_wtime() noexcept nogil
    int fastnn_has_openmp() noexcept nogil


cdef extern from *:
    """
    /* Denormal flushing (FTZ + DAZ bits of MXCSR) is a per-thread state: a parallel region
       reads the caller's bits first and every thread runs its chunk under them, restoring
       its own after (fastnn/denormals.py explains why fastnn flushes). The bits come from
       the code table (FLUSH_BITS of codes.pxd, fastnn/_codes.py), passed in as ``mask``. */
    #if defined(__x86_64__) || defined(_M_X64)
    #include <xmmintrin.h>
    static unsigned fastnn_csr_bits(unsigned mask) { return _mm_getcsr() & mask; }
    static unsigned fastnn_csr_swap(unsigned mode, unsigned mask) {
        unsigned csr = _mm_getcsr();
        _mm_setcsr((csr & ~mask) | (mode & mask));
        return csr & mask;
    }
    static int fastnn_fp_supported(void) { return 1; }
    #else
    static unsigned fastnn_csr_bits(unsigned mask) { (void)mask; return 0; }
    static unsigned fastnn_csr_swap(unsigned mode, unsigned mask) {
        (void)mode; (void)mask; return 0;
    }
    static int fastnn_fp_supported(void) { return 0; }
    #endif
    """
    unsigned fastnn_csr_bits(unsigned mask) noexcept nogil
    unsigned fastnn_csr_swap(unsigned mode, unsigned mask) noexcept nogil
    int fastnn_fp_supported() noexcept nogil


cdef inline unsigned fastnn_fp_mode() noexcept nogil:
    """This thread's flush bits (FLUSH_BITS or a part of them; 0 off x86-64)."""
    return fastnn_csr_bits(FLUSH_BITS)


cdef inline unsigned fastnn_fp_swap(unsigned mode) noexcept nogil:
    """Set this thread's flush bits to ``mode``; return the bits it had."""
    return fastnn_csr_swap(mode, FLUSH_BITS)


cdef enum:
    MAX_THREADS = 64
    PAR_MIN_WORK = 1 << 20  # multiply-adds below which work stays on one thread


cdef struct Team:
    # How work is split: into ``size`` chunks (the configured thread count), run on ``size``
    # OpenMP threads when ``parallel``, else one after the other. Chunks hold whole rows of the
    # results, so ``parallel`` changes no number.
    int size
    bint parallel
    bint own_blas  # BLAS products split over the team through the own single-threaded handle


cdef inline int n_chunks(Py_ssize_t work, Py_ssize_t items, int size) noexcept nogil:
    """Chunks for ``work`` multiply-adds over ``items`` rows: 1 when too small to split."""
    if size <= 1 or work < PAR_MIN_WORK or items < 2:
        return 1
    if size > items:
        return <int>items
    return size if size < MAX_THREADS else MAX_THREADS


cdef enum:
    SERIAL = 0
    PARALLEL = 1
    COUNTDOWN = 2
    RETRYING = 3
    RETRY_MODE = 4
    RETRIES = 5
    PROBED = 6        # the mode the last large batch chose inside (``epoch.pxd``), plus 1
    STATS = 7
    RETRY_MIN = 64    # batches between retries of the slower mode, times how much slower
    RETRY_FIRST = 4   # ... for the first retry, doubling up to RETRY_MIN
    RETRY_MAX = 8192
    RETRY_LEN = 3     # batches per retry: the first wakes the threads up, the best other counts
    RATIO_MAX = 8     # an outlier must not postpone the next retry for ever


cdef inline int start_retry(double* stats, int mode) noexcept nogil:
    stats[RETRYING] = RETRY_LEN
    stats[RETRY_MODE] = mode
    return mode


cdef inline int choose_mode(double* stats) noexcept nogil:
    """The mode of the next batch: a mode not yet timed, a due retry, or the faster one."""
    cdef int best
    cdef double wait, base, ratio
    if stats[RETRYING] > 0:
        return <int>stats[RETRY_MODE]
    if stats[SERIAL] == 0:
        return start_retry(stats, SERIAL)
    if stats[PARALLEL] == 0:
        return start_retry(stats, PARALLEL)
    best = PARALLEL if stats[PARALLEL] <= stats[SERIAL] else SERIAL
    if stats[COUNTDOWN] <= 0:
        # Waiting in proportion to the loss bounds the cost of retries to ~RETRY_LEN/RETRY_MIN.
        base = RETRY_FIRST * 2.0 ** stats[RETRIES]
        base = RETRY_MIN if base > RETRY_MIN else base
        stats[RETRIES] += 1
        ratio = stats[1 - best] / stats[best]
        wait = base * (RATIO_MAX if ratio > RATIO_MAX else ratio)
        stats[COUNTDOWN] = RETRY_MAX if wait > RETRY_MAX else wait
        return start_retry(stats, 1 - best)
    stats[COUNTDOWN] -= 1
    return best


cdef inline void record(double* stats, int mode, double seconds, Py_ssize_t rows) noexcept nogil:
    """Fold one batch's time into its mode's seconds per row."""
    cdef double per_row = seconds / rows
    if stats[RETRYING] > 0:
        stats[RETRYING] -= 1
        # A retry replaces the old figure, which may be long stale, by the best of its batches
        # after the first: a descheduled moment must not count, a busy machine still does.
        if stats[RETRYING] == RETRY_LEN - 2 or stats[mode] == 0:
            stats[mode] = per_row
        elif stats[RETRYING] < RETRY_LEN - 2 and per_row < stats[mode]:
            stats[mode] = per_row
    elif stats[mode] == 0:
        stats[mode] = per_row
    else:
        stats[mode] = 0.75 * stats[mode] + 0.25 * per_row
