/*
 * chanstats._kernels: exact per-channel moments of interleaved 8-bit pixels in one pass, and the
 * scanline unfiltering of the PNG fast path (chanstats.decoding.png).
 *
 * moments_u8(buffer, channels) -> (sums, sumsq, mins, maxs), four lists of Python ints.
 * unfilter_png(scanlines, width, height, channels) -> bytes, the pixels.
 * histogram_u8(buffer, channels) -> bytes, channels x 256 native uint64 counts (for percentiles).
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

static PyMethodDef methods[] = {
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
