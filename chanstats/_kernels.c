/*
 * chanstats._kernels: exact per-channel moments of interleaved 8-bit pixels in one pass, and the
 * scanline unfiltering of the PNG fast path (chanstats.decoding.png).
 *
 * moments_u8(buffer, channels) -> (sums, sumsq, mins, maxs), four lists of Python ints.
 * unfilter_png(scanlines, width, height, channels) -> bytes, the pixels.
 * histogram_u8(buffer, channels) -> bytes, channels x 256 native uint64 counts (for percentiles).
 * histogram_moments(...) -> per-channel exact histogram and moments of 8/16-bit pixels of any
 *     number of channels, nodata left out (rasters; see its comment below).
 *
 * Why a compiled kernel: decoding a JPEG costs a few ns per pixel, and every exact statistic
 * available from Python (Pillow's histogram on a numpy buffer, numpy bincount or sums) costs
 * from half to several times as much again. This loop costs a fraction of a ns per pixel.
 *
 * How it stays exact and vectorizable: the buffer is read as rows of 48 bytes (48 is a multiple
 * of 1, 2, 3 and 4 channels, so byte j of a row always belongs to channel j % channels). Each of
 * the 48 lanes accumulates in uint32, which cannot overflow within a block of BLOCK_ROWS rows
 * (255² · 65536 < 2³²), and blocks are folded into uint64 totals, which cannot overflow for any
 * image below 2⁴⁰ pixels. The inner loop over 48 independent lanes is what compilers vectorize;
 * on x86-64 an SSE2 version (always available there) does the same about twice as fast, and an
 * AVX2 version (used where the CPU has it) twice as fast again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 48
#define BLOCK_ROWS 65536
#define MAX_CHANNELS 4
#define MAX_BPP 8 /* bytes per pixel of a PNG: 16-bit RGBA */

#ifdef __SSE2__
#include <emmintrin.h>

/* Adds two rows' values of 16 lanes: a and b are interleaved byte by byte, so that pmaddwd adds
 * each lane's two values (times 1, or squared) without mixing lanes, that is, channels. */
static inline void
add_row_pair(__m128i a, __m128i b, __m128i *s, __m128i *q)
{
    const __m128i zero = _mm_setzero_si128(), ones = _mm_set1_epi16(1);
    __m128i pairs_lo = _mm_unpacklo_epi8(a, b), pairs_hi = _mm_unpackhi_epi8(a, b);
    __m128i w[4] = {_mm_unpacklo_epi8(pairs_lo, zero), _mm_unpackhi_epi8(pairs_lo, zero),
                    _mm_unpacklo_epi8(pairs_hi, zero), _mm_unpackhi_epi8(pairs_hi, zero)};
    for (int k = 0; k < 4; k++) {
        s[k] = _mm_add_epi32(s[k], _mm_madd_epi16(w[k], ones));
        q[k] = _mm_add_epi32(q[k], _mm_madd_epi16(w[k], w[k]));
    }
}

/* The 16 lanes starting at `p` (one third of each 48-byte row) over `rows` rows. One group at a
 * time keeps all its accumulators in registers. */
static void
accumulate_group_sse2(const uint8_t *p, Py_ssize_t rows, uint64_t *lane_sum, uint64_t *lane_sumsq,
                      uint8_t *lane_min, uint8_t *lane_max)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i lo = _mm_loadu_si128((const __m128i *)lane_min);
    __m128i hi = _mm_loadu_si128((const __m128i *)lane_max);
    while (rows > 0) {
        Py_ssize_t block = rows < BLOCK_ROWS ? rows : BLOCK_ROWS;
        rows -= block;
        __m128i s[4] = {zero, zero, zero, zero}, q[4] = {zero, zero, zero, zero};
        for (Py_ssize_t pair = 0; pair < block / 2; pair++, p += 2 * LANES) {
            __m128i a = _mm_loadu_si128((const __m128i *)p);
            __m128i b = _mm_loadu_si128((const __m128i *)(p + LANES));
            lo = _mm_min_epu8(lo, _mm_min_epu8(a, b));
            hi = _mm_max_epu8(hi, _mm_max_epu8(a, b));
            add_row_pair(a, b, s, q);
        }
        if (block % 2) { /* an odd last row, paired with zeros, which add nothing */
            __m128i a = _mm_loadu_si128((const __m128i *)p);
            lo = _mm_min_epu8(lo, a);
            hi = _mm_max_epu8(hi, a);
            add_row_pair(a, zero, s, q);
            p += LANES;
        }
        uint32_t sums[16], squares[16];
        for (int k = 0; k < 4; k++) {
            _mm_storeu_si128((__m128i *)(sums + 4 * k), s[k]);
            _mm_storeu_si128((__m128i *)(squares + 4 * k), q[k]);
        }
        for (int j = 0; j < 16; j++) {
            lane_sum[j] += sums[j];
            lane_sumsq[j] += squares[j];
        }
    }
    _mm_storeu_si128((__m128i *)lane_min, lo);
    _mm_storeu_si128((__m128i *)lane_max, hi);
}
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* AVX2, chosen at run time where the CPU has it: the SSE2 scheme on 32 lanes at a time, over rows
 * of 96 bytes (a multiple of 1, 2, 3 and 4, like 48, so byte j is still channel j % channels).
 * 256-bit unpacks work within each 128-bit half, so 32-bit lane t of accumulator k holds the byte
 * position 4k + t (t < 4) or 16 + 4k + t - 4 (t >= 4) of its 32-byte group. About twice as fast. */
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#define AVX2_ROW 96

__attribute__((target("avx2"))) static inline void
add_row_pair_avx2(__m256i a, __m256i b, __m256i *s, __m256i *q)
{
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
    __m256i pairs_lo = _mm256_unpacklo_epi8(a, b), pairs_hi = _mm256_unpackhi_epi8(a, b);
    __m256i w[4] = {_mm256_unpacklo_epi8(pairs_lo, zero), _mm256_unpackhi_epi8(pairs_lo, zero),
                    _mm256_unpacklo_epi8(pairs_hi, zero), _mm256_unpackhi_epi8(pairs_hi, zero)};
    for (int k = 0; k < 4; k++) {
        s[k] = _mm256_add_epi32(s[k], _mm256_madd_epi16(w[k], ones));
        q[k] = _mm256_add_epi32(q[k], _mm256_madd_epi16(w[k], w[k]));
    }
}

__attribute__((target("avx2"))) static void
accumulate_group_avx2(const uint8_t *p, Py_ssize_t rows, uint64_t *lane_sum, uint64_t *lane_sumsq,
                      uint8_t *lane_min, uint8_t *lane_max)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i lo = _mm256_loadu_si256((const __m256i *)lane_min);
    __m256i hi = _mm256_loadu_si256((const __m256i *)lane_max);
    while (rows > 0) {
        Py_ssize_t block = rows < BLOCK_ROWS ? rows : BLOCK_ROWS;
        rows -= block;
        __m256i s[4] = {zero, zero, zero, zero}, q[4] = {zero, zero, zero, zero};
        for (Py_ssize_t pair = 0; pair < block / 2; pair++, p += 2 * AVX2_ROW) {
            __m256i a = _mm256_loadu_si256((const __m256i *)p);
            __m256i b = _mm256_loadu_si256((const __m256i *)(p + AVX2_ROW));
            lo = _mm256_min_epu8(lo, _mm256_min_epu8(a, b));
            hi = _mm256_max_epu8(hi, _mm256_max_epu8(a, b));
            add_row_pair_avx2(a, b, s, q);
        }
        if (block % 2) { /* an odd last row, paired with zeros, which add nothing */
            __m256i a = _mm256_loadu_si256((const __m256i *)p);
            lo = _mm256_min_epu8(lo, a);
            hi = _mm256_max_epu8(hi, a);
            add_row_pair_avx2(a, zero, s, q);
            p += AVX2_ROW;
        }
        uint32_t sums[8], squares[8];
        for (int k = 0; k < 4; k++) {
            _mm256_storeu_si256((__m256i *)sums, s[k]);
            _mm256_storeu_si256((__m256i *)squares, q[k]);
            for (int t = 0; t < 8; t++) {
                int j = t < 4 ? 4 * k + t : 16 + 4 * k + (t - 4);
                lane_sum[j] += sums[t];
                lane_sumsq[j] += squares[t];
            }
        }
    }
    _mm256_storeu_si256((__m256i *)lane_min, lo);
    _mm256_storeu_si256((__m256i *)lane_max, hi);
}

/* The whole 96-byte rows of the buffer with AVX2, folded into the 48 lanes of `accumulate` (byte j
 * of a 96-byte row is lane j % 48: the same channel). Returns the number of bytes consumed. */
static Py_ssize_t
accumulate_avx2(const uint8_t *data, Py_ssize_t size, uint64_t *lane_sum, uint64_t *lane_sumsq, uint8_t *lane_min,
                uint8_t *lane_max)
{
    uint64_t sum96[AVX2_ROW] = {0}, sumsq96[AVX2_ROW] = {0};
    uint8_t min96[AVX2_ROW], max96[AVX2_ROW];
    memset(min96, 255, sizeof min96);
    memset(max96, 0, sizeof max96);
    Py_ssize_t rows = size / AVX2_ROW;
    for (int g = 0; g < AVX2_ROW; g += 32)
        accumulate_group_avx2(data + g, rows, sum96 + g, sumsq96 + g, min96 + g, max96 + g);
    for (int j = 0; j < AVX2_ROW; j++) {
        int lane = j % LANES;
        lane_sum[lane] += sum96[j];
        lane_sumsq[lane] += sumsq96[j];
        lane_min[lane] = min96[j] < lane_min[lane] ? min96[j] : lane_min[lane];
        lane_max[lane] = max96[j] > lane_max[lane] ? max96[j] : lane_max[lane];
    }
    return rows * AVX2_ROW;
}

/* CHANSTATS_NO_AVX2=1 in the environment forces the SSE2 path (for its tests, and for debugging). */
static int
cpu_has_avx2(void)
{
    static int known = -1;
    if (known < 0) {
        const char *off = getenv("CHANSTATS_NO_AVX2");
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && !(off && *off && strcmp(off, "0")) ? 1 : 0;
    }
    return known;
}
#endif

static void
accumulate(const uint8_t *data, Py_ssize_t size, int channels, uint64_t *sums, uint64_t *sumsq,
           uint8_t *mins, uint8_t *maxs)
{
    uint64_t lane_sum[LANES] = {0}, lane_sumsq[LANES] = {0};
    uint8_t lane_min[LANES], lane_max[LANES];
    memset(lane_min, 255, sizeof lane_min);
    memset(lane_max, 0, sizeof lane_max);

    const uint8_t *p = data;
    Py_ssize_t remaining = size;
#ifdef HAVE_AVX2_PATH
    if (cpu_has_avx2()) {
        Py_ssize_t done = accumulate_avx2(data, size, lane_sum, lane_sumsq, lane_min, lane_max);
        p += done; /* a multiple of 96, so the rest still starts on channel 0 */
        remaining -= done;
    }
#endif
    Py_ssize_t rows = remaining / LANES;
#ifdef __SSE2__
    for (int g = 0; g < LANES; g += 16)
        accumulate_group_sse2(p + g, rows, lane_sum + g, lane_sumsq + g, lane_min + g, lane_max + g);
    p += rows * LANES;
    rows = 0;
#endif
    while (rows > 0) {
        Py_ssize_t block = rows < BLOCK_ROWS ? rows : BLOCK_ROWS;
        uint32_t s[LANES] = {0}, q[LANES] = {0};
        uint8_t lo[LANES], hi[LANES];
        memcpy(lo, lane_min, LANES);
        memcpy(hi, lane_max, LANES);
        for (Py_ssize_t r = 0; r < block; r++, p += LANES) {
            for (int j = 0; j < LANES; j++) {
                uint32_t v = p[j];
                s[j] += v;
                q[j] += v * v;
                lo[j] = p[j] < lo[j] ? p[j] : lo[j];
                hi[j] = p[j] > hi[j] ? p[j] : hi[j];
            }
        }
        for (int j = 0; j < LANES; j++) {
            lane_sum[j] += s[j];
            lane_sumsq[j] += q[j];
        }
        memcpy(lane_min, lo, LANES);
        memcpy(lane_max, hi, LANES);
        rows -= block;
    }
    /* The last partial row: byte k of it is still channel k % channels. */
    Py_ssize_t tail = remaining % LANES;
    for (Py_ssize_t k = 0; k < tail; k++) {
        uint32_t v = p[k];
        lane_sum[k] += v;
        lane_sumsq[k] += v * v;
        lane_min[k] = p[k] < lane_min[k] ? p[k] : lane_min[k];
        lane_max[k] = p[k] > lane_max[k] ? p[k] : lane_max[k];
    }
    for (int c = 0; c < channels; c++) {
        sums[c] = 0;
        sumsq[c] = 0;
        mins[c] = 255;
        maxs[c] = 0;
    }
    Py_ssize_t lanes_used = size < LANES ? size : LANES;
    for (int j = 0; j < lanes_used; j++) {
        int c = j % channels;
        sums[c] += lane_sum[j];
        sumsq[c] += lane_sumsq[j];
        mins[c] = lane_min[j] < mins[c] ? lane_min[j] : mins[c];
        maxs[c] = lane_max[j] > maxs[c] ? lane_max[j] : maxs[c];
    }
}

static PyObject *
int_list_u64(const uint64_t *values, int n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *item = PyLong_FromUnsignedLongLong(values[i]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *
int_list_u8(const uint8_t *values, int n)
{
    uint64_t wide[MAX_CHANNELS];
    for (int i = 0; i < n; i++)
        wide[i] = values[i];
    return int_list_u64(wide, n);
}

static PyObject *
moments_u8(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    int channels;
    if (!PyArg_ParseTuple(args, "y*i", &view, &channels))
        return NULL;
    if (channels < 1 || channels > MAX_CHANNELS || view.len % channels != 0 || view.len == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need a non-empty buffer of 1 to 4 interleaved 8-bit channels");
        return NULL;
    }
    uint64_t sums[MAX_CHANNELS], sumsq[MAX_CHANNELS];
    uint8_t mins[MAX_CHANNELS], maxs[MAX_CHANNELS];
    Py_BEGIN_ALLOW_THREADS
    accumulate((const uint8_t *)view.buf, view.len, channels, sums, sumsq, mins, maxs);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(NNNN)", int_list_u64(sums, channels), int_list_u64(sumsq, channels),
                         int_list_u8(mins, channels), int_list_u8(maxs, channels));
}

/*
 * unfilter_png(scanlines, width, height, channels) -> bytes
 *
 * The pixels of a non-interlaced 8-bit PNG from its inflated IDAT stream: `height` scanlines of
 * one filter-type byte and width * channels bytes each. For a 16-bit PNG, `channels` is the bytes
 * per pixel (2 per channel, up to 8): PNG filters work on bytes, a pixel's width apart. PNG decoding is zlib inflation plus this
 * step; Pillow spends about as long on it as on inflation, byte at a time through generic code.
 * Here each filter has its own loop with the bytes per pixel known at compile time, so Up is
 * vectorized and Sub/Average/Paeth run `channels` independent chains side by side.
 */
static inline uint8_t
paeth_predictor(int a, int b, int c)
{
    /* p = a + b - c; choose whichever of a, b, c is nearest p, ties in that order (PNG spec). */
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    int nearest_bc = pb <= pc ? b : c; /* selects, not branches: on photographs they mispredict */
    return (uint8_t)((pa <= pb) & (pa <= pc) ? a : nearest_bc);
}

static inline int
unfilter_row(int filter, const uint8_t *in, const uint8_t *prev, uint8_t *out, Py_ssize_t length, const int bpp)
{
    /* The left (a) and upper-left (c) bytes of each channel stay in registers: reading them back
     * from `out` would put a store-to-load round trip on every pixel's dependency chain. */
    int a[MAX_BPP] = {0}, c[MAX_BPP] = {0};
    Py_ssize_t i, k;
    switch (filter) {
    case 0: /* None */
        memcpy(out, in, length);
        return 0;
    case 1: /* Sub */
        for (i = 0; i < length; i += bpp)
            for (k = 0; k < bpp; k++)
                out[i + k] = (uint8_t)(a[k] = (uint8_t)(in[i + k] + a[k]));
        return 0;
    case 2: /* Up */
        for (i = 0; i < length; i++)
            out[i] = (uint8_t)(in[i] + prev[i]);
        return 0;
    case 3: /* Average */
        for (i = 0; i < length; i += bpp)
            for (k = 0; k < bpp; k++)
                out[i + k] = (uint8_t)(a[k] = (uint8_t)(in[i + k] + ((a[k] + prev[i + k]) >> 1)));
        return 0;
    case 4: /* Paeth; with no left neighbour, a = c = 0 and the predictor is the byte above */
        for (i = 0; i < length; i += bpp)
            for (k = 0; k < bpp; k++) {
                int b = prev[i + k];
                out[i + k] = (uint8_t)(a[k] = (uint8_t)(in[i + k] + paeth_predictor(a[k], b, c[k])));
                c[k] = b;
            }
        return 0;
    default:
        return -1;
    }
}

/* One copy of the loop per pixel width, so the compiler sees `bpp` as a constant. */
#define UNFILTER_ALL(BPP)                                                                           \
    for (Py_ssize_t r = 0; r < height; r++) {                                                      \
        const uint8_t *line = in + r * (row + 1);                                                  \
        uint8_t *dest = out + r * row;                                                             \
        if (unfilter_row(line[0], line + 1, r ? dest - row : zeros, dest, row, BPP) < 0) {          \
            status = -1;                                                                           \
            break;                                                                                 \
        }                                                                                          \
    }

static PyObject *
unfilter_png(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t width, height;
    int channels;
    if (!PyArg_ParseTuple(args, "y*nni", &view, &width, &height, &channels))
        return NULL;
    if (channels < 1 || channels > MAX_BPP || width < 1 || height < 1 || width > PY_SSIZE_T_MAX / channels - 1 ||
        height > PY_SSIZE_T_MAX / (width * channels + 1) || view.len != height * (width * channels + 1)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need exactly height scanlines of 1 + width * channels bytes");
        return NULL;
    }
    Py_ssize_t row = width * channels;
    PyObject *result = PyBytes_FromStringAndSize(NULL, row * height);
    uint8_t *zeros = calloc((size_t)row, 1);
    if (result == NULL || zeros == NULL) {
        Py_XDECREF(result);
        free(zeros);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const uint8_t *in = (const uint8_t *)view.buf;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    switch (channels) {
    case 1: UNFILTER_ALL(1) break;
    case 2: UNFILTER_ALL(2) break;
    case 3: UNFILTER_ALL(3) break;
    case 4: UNFILTER_ALL(4) break;
    case 6: UNFILTER_ALL(6) break;
    case 8: UNFILTER_ALL(8) break;
    default: UNFILTER_ALL(channels) break;
    }
    Py_END_ALLOW_THREADS
    free(zeros);
    PyBuffer_Release(&view);
    if (status < 0) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_ValueError, "unknown PNG filter type");
        return NULL;
    }
    return result;
}

/* simd() -> "avx2", "sse2" or "scalar": the instruction set the moments kernel uses on this CPU. */
static PyObject *
simd(PyObject *self, PyObject *args)
{
#ifdef HAVE_AVX2_PATH
    if (cpu_has_avx2())
        return PyUnicode_FromString("avx2");
#endif
#ifdef __SSE2__
    return PyUnicode_FromString("sse2");
#else
    return PyUnicode_FromString("scalar");
#endif
}

/* Histogram of interleaved 8-bit pixels. A histogram loop is a chain of increments through memory,
 * which SIMD does not speed up; what limits it is the same bin being incremented by consecutive
 * pixels (store-to-load forwarding), so each channel counts into four tables, one per pixel mod 4,
 * summed at the end. uint32 tables are folded into the uint64 result every 2^31 pixels. */
#define HIST_COPIES 4
#define HIST_FOLD ((Py_ssize_t)1 << 31)

/* Inlined once per channel count, so that the compiler unrolls the channel loop. */
static inline __attribute__((always_inline)) void
count_u8(const uint8_t *p, Py_ssize_t pixels, const int channels, uint32_t *tables, uint64_t *out)
{
    const int stride = channels * 256;
    for (Py_ssize_t done = 0; done < pixels;) {
        Py_ssize_t end = pixels - done < HIST_FOLD ? pixels : done + HIST_FOLD;
        Py_ssize_t i = done;
        for (; i + HIST_COPIES <= end; i += HIST_COPIES) {
            const uint8_t *px = p + i * channels;
            for (int c = 0; c < channels; c++) {
                uint32_t *t = tables + c * 256;
                t[px[c]]++;
                t[stride + px[channels + c]]++;
                t[2 * stride + px[2 * channels + c]]++;
                t[3 * stride + px[3 * channels + c]]++;
            }
        }
        for (; i < end; i++)
            for (int c = 0; c < channels; c++)
                tables[c * 256 + p[i * channels + c]]++;
        for (int k = 0; k < HIST_COPIES * stride; k++) {
            out[k % stride] += tables[k];
            tables[k] = 0;
        }
        done = end;
    }
}

static PyObject *
histogram_u8(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    int channels;
    if (!PyArg_ParseTuple(args, "y*i", &view, &channels))
        return NULL;
    if (channels < 1 || channels > MAX_CHANNELS || view.len % channels != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need a buffer of 1 to 4 interleaved 8-bit channels");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)channels * 256 * sizeof(uint64_t));
    uint32_t *tables = calloc((size_t)HIST_COPIES * channels * 256, sizeof(uint32_t));
    if (result == NULL || tables == NULL) {
        Py_XDECREF(result);
        free(tables);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    uint64_t *out = (uint64_t *)PyBytes_AS_STRING(result);
    memset(out, 0, (size_t)channels * 256 * sizeof(uint64_t));
    const uint8_t *p = (const uint8_t *)view.buf;
    Py_ssize_t pixels = view.len / channels;
    Py_BEGIN_ALLOW_THREADS
    switch (channels) {
    case 1: count_u8(p, pixels, 1, tables, out); break;
    case 2: count_u8(p, pixels, 2, tables, out); break;
    case 3: count_u8(p, pixels, 3, tables, out); break;
    default: count_u8(p, pixels, 4, tables, out); break;
    }
    Py_END_ALLOW_THREADS
    free(tables);
    PyBuffer_Release(&view);
    return result;
}

/*
 * histogram_moments(buffer, itemsize, channels, signed, nodata, keep_counts)
 *     -> (counts, sums, sumsq, lows, highs, histograms)
 *
 * Exact per-channel histogram and moments of interleaved 8- or 16-bit integer pixels (any number
 * of channels), in one pass over the pixels: the pass only counts, and the moments come from the
 * counts (65,536 bins at most per channel, far fewer than the pixels of a raster tile). Nodata is
 * one bin per channel set to zero before anything is read from the counts: for integer pixels,
 * "this pixel equals the band's nodata value" and "this pixel falls in that bin" are the same.
 *
 * Values are read as unsigned bin indices; signed pixels have their sign bit flipped, which maps
 * them to indices in order (index = value + 2^(bits-1)); the caller shifts the results back.
 * Results are in index units: per channel the pixels kept, the sums of indices and of squared
 * indices (Python ints, exact: 128-bit accumulation), the smallest and largest index present
 * (None for a channel with no pixel), and with keep_counts the native uint64 counts from the
 * smallest to the largest index (else None).
 *
 * The counting tables are uint32, folded into uint64 totals every 2^31 pixels, so no count can
 * overflow. One table per channel: with several channels interleaved, consecutive increments go
 * to different tables, which keeps the same bin from being incremented back to back; a single
 * channel counts into two tables, even and odd pixels, for the same reason.
 */
#define WIDE_FOLD ((Py_ssize_t)1 << 31)
#define MAX_WIDE_CHANNELS 65535
#define TABLE_PAD 16

/* Counts `lanes` adjacent channels (1 to 4, a constant where inlined) of pixels `pixel_stride`
 * values apart, from `px` on, for `pixels` pixels; `tables` is the first lane's table. One copy of
 * the loop per pixel type and lane count, so the compiler sees both as constants. A single channel
 * (pixels 1 value apart) alternates between two tables (the second `stride` further on), even and
 * odd pixels. */
#define COUNT_LANES(TYPE)                                                                           \
    {                                                                                               \
        const TYPE *p = (const TYPE *)px;                                                          \
        const TYPE flipped = (TYPE)flip;                                                           \
        Py_ssize_t i = 0;                                                                          \
        if (lanes == 1 && pixel_stride == 1)                                                       \
            for (; i + 2 <= pixels; i += 2, p += 2) {                                              \
                tables[(TYPE)(p[0] ^ flipped)]++;                                                  \
                tables[stride + (TYPE)(p[1] ^ flipped)]++;                                         \
            }                                                                                      \
        for (; i < pixels; i++, p += pixel_stride)                                                 \
            for (int c = 0; c < lanes; c++)                                                        \
                tables[(Py_ssize_t)c * stride + (TYPE)(p[c] ^ flipped)]++;                         \
    }

static inline __attribute__((always_inline)) void
count_lanes(const void *px, int itemsize, Py_ssize_t pixels, Py_ssize_t pixel_stride, const int lanes,
            unsigned flip, uint32_t *tables, Py_ssize_t stride)
{
    if (itemsize == 1)
        COUNT_LANES(uint8_t)
    else
        COUNT_LANES(uint16_t)
}

static void
count_group(const void *px, int itemsize, Py_ssize_t pixels, Py_ssize_t pixel_stride, int lanes, unsigned flip,
            uint32_t *tables, Py_ssize_t stride)
{
    switch (lanes) {
    case 1: count_lanes(px, itemsize, pixels, pixel_stride, 1, flip, tables, stride); break;
    case 2: count_lanes(px, itemsize, pixels, pixel_stride, 2, flip, tables, stride); break;
    case 3: count_lanes(px, itemsize, pixels, pixel_stride, 3, flip, tables, stride); break;
    default: count_lanes(px, itemsize, pixels, pixel_stride, 4, flip, tables, stride); break;
    }
}

/* Pixels start to end-1 of `channels` interleaved channels. Up to 4 channels: one pass. More: the
 * loop over a variable number of channels costs more than the counting itself, so blocks of pixels
 * small enough to stay in the L1/L2 cache are passed over once per group of 4 channels. */
#define WIDE_BLOCK_BYTES (16 * 1024)

static void
count_any(const void *data, int itemsize, Py_ssize_t start, Py_ssize_t end, int channels, unsigned flip,
          uint32_t *tables, Py_ssize_t stride)
{
    const char *bytes = (const char *)data;
    Py_ssize_t pixel_bytes = (Py_ssize_t)itemsize * channels;
    if (channels <= 4) {
        count_group(bytes + start * pixel_bytes, itemsize, end - start, channels, channels, flip, tables, stride);
        return;
    }
    Py_ssize_t block = WIDE_BLOCK_BYTES / pixel_bytes > 0 ? WIDE_BLOCK_BYTES / pixel_bytes : 1;
    for (Py_ssize_t first = start; first < end; first += block) {
        Py_ssize_t pixels = end - first < block ? end - first : block;
        for (int c = 0; c < channels; c += 4)
            count_group(bytes + first * pixel_bytes + (Py_ssize_t)c * itemsize, itemsize, pixels, channels,
                        channels - c < 4 ? channels - c : 4, flip, tables + (Py_ssize_t)c * stride, stride);
    }
}

/* (hi, lo) += a * b without overflow, for any a and b < 2^32. */
static inline void
mul_add_u128(uint64_t *hi, uint64_t *lo, uint64_t a, uint64_t b)
{
    uint64_t low_part = (a & 0xFFFFFFFFu) * b, high_part = (a >> 32) * b;
    uint64_t add_lo = high_part << 32, add_hi = high_part >> 32, sum;
    sum = *lo + add_lo;
    *hi += add_hi + (sum < *lo);
    *lo = sum;
    sum = *lo + low_part;
    *hi += (sum < *lo);
    *lo = sum;
}

static PyObject *
int_from_u128(uint64_t hi, uint64_t lo)
{
    PyObject *high = PyLong_FromUnsignedLongLong(hi), *low = PyLong_FromUnsignedLongLong(lo), *shift = NULL,
             *shifted = NULL, *result = NULL;
    if (high && low && (shift = PyLong_FromLong(64)) && (shifted = PyNumber_Lshift(high, shift)))
        result = PyNumber_Or(shifted, low);
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    return result;
}

/* One channel's summary: pixels kept, exact sums of indices and squared indices, index range. */
typedef struct {
    uint64_t kept, sum_hi, sum_lo, sq_hi, sq_lo;
    Py_ssize_t low, high; /* -1 when no pixel was kept */
} WideChannel;

static inline uint64_t
bin_count(const uint32_t *tables, const uint64_t *totals, Py_ssize_t k)
{
    return (uint64_t)tables[k] + (totals ? totals[k] : 0);
}

static void
summarize_channel(const uint32_t *tables, const uint64_t *totals, Py_ssize_t bins, WideChannel *out)
{
    memset(out, 0, sizeof *out);
    out->low = out->high = -1;
    for (Py_ssize_t v = 0; v < bins; v++) {
        uint64_t n = bin_count(tables, totals, v);
        if (n == 0)
            continue;
        if (out->low < 0)
            out->low = v;
        out->high = v;
        out->kept += n;
        mul_add_u128(&out->sum_hi, &out->sum_lo, n, (uint64_t)v);
        mul_add_u128(&out->sq_hi, &out->sq_lo, n, (uint64_t)v * (uint64_t)v);
    }
}

static PyObject *
channel_counts_bytes(const uint32_t *tables, const uint64_t *totals, const WideChannel *channel)
{
    if (channel->low < 0)
        return PyBytes_FromStringAndSize(NULL, 0);
    Py_ssize_t span = channel->high - channel->low + 1;
    PyObject *result = PyBytes_FromStringAndSize(NULL, span * (Py_ssize_t)sizeof(uint64_t));
    if (result == NULL)
        return NULL;
    uint64_t *counts = (uint64_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t k = 0; k < span; k++)
        counts[k] = bin_count(tables, totals, channel->low + k);
    return result;
}

static int
parse_nodata_bins(PyObject *nodata, int channels, Py_ssize_t bins, Py_ssize_t *out)
{
    PyObject *items = PySequence_Fast(nodata, "nodata must be a sequence of bin indices (-1: none)");
    if (items == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(items) != channels) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "need one nodata bin per channel");
        return -1;
    }
    for (int c = 0; c < channels; c++) {
        Py_ssize_t bin = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(items, c));
        if (bin == -1 && PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
        if (bin < -1 || bin >= bins) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_ValueError, "a nodata bin is outside the pixel type's range");
            return -1;
        }
        out[c] = bin;
    }
    Py_DECREF(items);
    return 0;
}

static PyObject *
build_wide_result(const uint32_t *tables, const uint64_t *totals, Py_ssize_t stride, int channels,
                  const WideChannel *summary, int keep_counts)
{
    PyObject *lists[6] = {NULL};
    for (int k = 0; k < 6; k++)
        if ((lists[k] = PyList_New(channels)) == NULL)
            goto fail;
    for (int c = 0; c < channels; c++) {
        const WideChannel *s = summary + c;
        PyObject *items[6] = {
            PyLong_FromUnsignedLongLong(s->kept),
            int_from_u128(s->sum_hi, s->sum_lo),
            int_from_u128(s->sq_hi, s->sq_lo),
            s->low < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(s->low),
            s->high < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(s->high),
            keep_counts ? channel_counts_bytes(tables + (Py_ssize_t)c * stride, totals ? totals + (Py_ssize_t)c * stride : NULL, s)
                        : Py_NewRef(Py_None),
        };
        for (int k = 0; k < 6; k++) {
            if (items[k] == NULL) {
                for (int j = 0; j < 6; j++)
                    Py_XDECREF(items[j]);
                goto fail;
            }
            PyList_SET_ITEM(lists[k], c, items[k]);
        }
    }
    return Py_BuildValue("(NNNNNN)", lists[0], lists[1], lists[2], lists[3], lists[4], lists[5]);
fail:
    for (int k = 0; k < 6; k++)
        Py_XDECREF(lists[k]);
    return NULL;
}

static PyObject *
histogram_moments(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    int itemsize, channels, is_signed, keep_counts;
    PyObject *nodata;
    if (!PyArg_ParseTuple(args, "y*iipOp", &view, &itemsize, &channels, &is_signed, &nodata, &keep_counts))
        return NULL;
    Py_ssize_t pixel_bytes = (Py_ssize_t)itemsize * channels;
    if ((itemsize != 1 && itemsize != 2) || channels < 1 || channels > MAX_WIDE_CHANNELS || view.len % pixel_bytes != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need a buffer of interleaved 8- or 16-bit pixels of 1 to 65535 channels");
        return NULL;
    }
    /* Tables a cache line longer than the bins: at a stride of a power of two, bin v of every
     * channel would fall in the same cache set, and more than a few channels would evict each other. */
    Py_ssize_t bins = (Py_ssize_t)1 << (8 * itemsize), stride = bins + TABLE_PAD, table_size = stride * channels;
    Py_ssize_t *nodata_bins = PyMem_Malloc(sizeof(Py_ssize_t) * channels);
    WideChannel *summary = PyMem_Malloc(sizeof(WideChannel) * channels);
    uint32_t *tables = calloc((size_t)(channels == 1 ? 2 : 1) * table_size, sizeof(uint32_t));
    uint64_t *totals = NULL;
    PyObject *result = NULL;
    if (nodata_bins == NULL || summary == NULL || tables == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (parse_nodata_bins(nodata, channels, bins, nodata_bins) < 0)
        goto done;
    Py_ssize_t pixels = view.len / pixel_bytes;
    unsigned flip = is_signed ? (unsigned)(bins >> 1) : 0;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t start = 0; start < pixels && !failed; start += WIDE_FOLD) {
        Py_ssize_t end = pixels - start < WIDE_FOLD ? pixels : start + WIDE_FOLD;
        if (start > 0 || end < pixels) { /* a huge image: fold the previous block into uint64 */
            if (totals == NULL && (totals = calloc((size_t)table_size, sizeof(uint64_t))) == NULL) {
                failed = 1;
                break;
            }
            if (start > 0)
                for (Py_ssize_t k = 0; k < table_size; k++) {
                    totals[k] += tables[k];
                    tables[k] = 0;
                }
        }
        count_any(view.buf, itemsize, start, end, channels, flip, tables, stride);
        if (channels == 1) /* the odd pixels' table */
            for (Py_ssize_t k = 0; k < bins; k++) {
                tables[k] += tables[stride + k];
                tables[stride + k] = 0;
            }
    }
    if (!failed)
        for (int c = 0; c < channels; c++) {
            Py_ssize_t offset = (Py_ssize_t)c * stride;
            if (nodata_bins[c] >= 0) {
                tables[offset + nodata_bins[c]] = 0;
                if (totals)
                    totals[offset + nodata_bins[c]] = 0;
            }
            summarize_channel(tables + offset, totals ? totals + offset : NULL, bins, summary + c);
        }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = build_wide_result(tables, totals, stride, channels, summary, keep_counts);
done:
    free(tables);
    free(totals);
    PyMem_Free(nodata_bins);
    PyMem_Free(summary);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"histogram_moments", histogram_moments, METH_VARARGS,
     "histogram_moments(buffer, itemsize, channels, signed, nodata, keep_counts) -> (counts, sums, sumsq, lows, "
     "highs, histograms): exact per-channel histogram and moments of a C-contiguous buffer of interleaved 8- or "
     "16-bit pixels, in bin-index units, nodata bins left out."},
    {"histogram_u8", histogram_u8, METH_VARARGS,
     "histogram_u8(buffer, channels) -> bytes: channels x 256 native uint64 counts of a C-contiguous "
     "buffer of interleaved 8-bit pixels."},
    {"simd", simd, METH_NOARGS, "simd() -> str: the instruction set of the moments kernel: avx2, sse2 or scalar."},
    {"moments_u8", moments_u8, METH_VARARGS,
     "moments_u8(buffer, channels) -> (sums, sumsq, mins, maxs): exact per-channel integer moments "
     "of a C-contiguous buffer of interleaved 8-bit pixels."},
    {"unfilter_png", unfilter_png, METH_VARARGS,
     "unfilter_png(scanlines, width, height, channels) -> bytes: the pixels of a non-interlaced 8-bit "
     "PNG from its inflated image data (each scanline a filter-type byte and width * channels bytes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "chanstats._kernels", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
