/*
 * The chunk encoder and decoder of codec.py, for many chunks in one call.
 *
 * Why C: a flush encodes thousands of (series, block) chunks; in Python each
 * costs tens of microseconds of numpy calls under the GIL, time taken from
 * ingest. Here the whole flush is encoded with the GIL released. The output is
 * byte-for-byte the layout codec.py documents and decodes (the zstd frames may
 * differ in bytes from cramjam's, never in content); codec.py stays the
 * reference and the tests compare the two.
 *
 * zstd comes from the system's libzstd.so.1, loaded at import; without it the
 * import fails and the store uses codec.py.
 *
 *   encode_chunks(ts, vals, bounds) -> (ts_blobs, val_blobs)
 *     ts: int64[n], vals: float64[n], bounds: int64[m + 1] (chunk i is
 *     [bounds[i], bounds[i + 1])); returns two lists of m bytes objects.
 *   decode_chunks(ts_blobs, val_blobs) -> (timestamps, values, counts)
 *     the reverse for lists of m blobs: int64, float64 and int64[m] arrays as
 *     bytes, the chunks' samples back to back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the blob headers are written in place: little-endian hosts only"
#endif

typedef void ZSTD_CCtx;
static ZSTD_CCtx *(*zstd_create)(void);
static size_t (*zstd_free)(ZSTD_CCtx *);
static size_t (*zstd_compress)(ZSTD_CCtx *, void *, size_t, const void *, size_t, int);
static size_t (*zstd_bound)(size_t);
static unsigned (*zstd_is_error)(size_t);

#define ZSTD_LEVEL 3 /* codec._ZSTD_LEVEL */
#define MAX_DECIMALS 9

enum { TS_REGULAR = 0, TS_DELTAS = 1, V_DECIMAL = 0, V_XOR = 1, V_CONST = 2 };

static inline uint64_t zz(int64_t x) { return ((uint64_t)x << 1) ^ (uint64_t)(x >> 63); }

/* Narrow to the smallest width holding max(x) and byte-shuffle into out; returns the width. */
static int narrow(const uint64_t *x, size_t n, uint8_t *out)
{
    uint64_t hi = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] > hi)
            hi = x[i];
    int width = hi < (1ULL << 8) ? 1 : hi < (1ULL << 16) ? 2 : hi < (1ULL << 32) ? 4 : 8;
    for (int b = 0; b < width; b++)
        for (size_t i = 0; i < n; i++)
            out[(size_t)b * n + i] = (uint8_t)(x[i] >> (8 * b));
    return width;
}

typedef struct {
    uint8_t *arena; /* output blobs, back to back */
    size_t used, cap;
    uint64_t *scratch; /* n words */
    uint8_t *plane;    /* 8n bytes */
    ZSTD_CCtx *cctx;
} Enc;

static int put(Enc *e, const void *p, size_t n)
{
    if (e->used + n > e->cap)
        return 0;
    memcpy(e->arena + e->used, p, n);
    e->used += n;
    return 1;
}

static int put_zstd(Enc *e, const uint8_t *src, size_t n)
{
    size_t r = zstd_compress(e->cctx, e->arena + e->used, e->cap - e->used, src, n, ZSTD_LEVEL);
    if (zstd_is_error(r))
        return 0;
    e->used += r;
    return 1;
}

#pragma pack(push, 1)
typedef struct { uint8_t kind; int64_t first, step; int32_t n; } TsRegular;
typedef struct { uint8_t kind; int64_t first, d0; int32_t n; uint8_t width; } TsDeltas;
typedef struct { uint8_t kind; uint64_t bits; int32_t n; } VConst;
typedef struct { uint8_t kind; uint8_t e; int64_t k0; int32_t n; uint8_t width; } VDecimal;
typedef struct { uint8_t kind; int32_t n; } VXor;
#pragma pack(pop)

static int encode_ts(Enc *e, const int64_t *ts, size_t n)
{
    int64_t d0 = n > 1 ? ts[1] - ts[0] : 0;
    int regular = 1;
    for (size_t i = 2; i < n && regular; i++)
        regular = ts[i] - ts[i - 1] == d0;
    if (regular) {
        TsRegular h = {TS_REGULAR, ts[0], d0, (int32_t)n};
        return put(e, &h, sizeof h);
    }
    /* delta of delta, the first against itself: n - 1 values, the first 0 */
    int64_t prev = d0;
    for (size_t i = 1; i < n; i++) {
        int64_t d = ts[i] - ts[i - 1];
        e->scratch[i - 1] = zz(d - prev);
        prev = d;
    }
    TsDeltas h = {TS_DELTAS, ts[0], d0, (int32_t)n, 0};
    h.width = (uint8_t)narrow(e->scratch, n - 1, e->plane);
    return put(e, &h, sizeof h) && put_zstd(e, e->plane, (n - 1) * h.width);
}

static const double POW10[MAX_DECIMALS + 1] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* codec._decimal_exponent: the smallest e with every value k / 10**e, |k| < 2**53; -1 if none. */
static int decimal_exponent(const double *v, size_t n)
{
    double amax = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]) || (v[i] == 0.0 && signbit(v[i])))
            return -1; /* non-finite values and -0.0 need the bit-exact XOR path */
        double a = fabs(v[i]);
        if (a > amax)
            amax = a;
    }
    for (int k = 0; k <= MAX_DECIMALS; k++) {
        double p = POW10[k];
        if (amax * p >= 9007199254740992.0)
            return -1;
        size_t i = 0;
        while (i < n && rint(v[i] * p) / p == v[i])
            i++;
        if (i == n)
            return k;
    }
    return -1;
}

static int encode_vals(Enc *e, const double *v, size_t n)
{
    const uint64_t *bits = (const uint64_t *)v;
    size_t i = 1;
    while (i < n && bits[i] == bits[0])
        i++;
    if (i == n) {
        VConst h = {V_CONST, bits[0], (int32_t)n};
        return put(e, &h, sizeof h);
    }
    int x = decimal_exponent(v, n);
    if (x >= 0) {
        double p = POW10[x];
        int64_t k0 = (int64_t)rint(v[0] * p), prev = k0;
        e->scratch[0] = 0;
        for (size_t j = 1; j < n; j++) {
            int64_t k = (int64_t)rint(v[j] * p);
            e->scratch[j] = zz(k - prev);
            prev = k;
        }
        VDecimal h = {V_DECIMAL, (uint8_t)x, k0, (int32_t)n, 0};
        h.width = (uint8_t)narrow(e->scratch, n, e->plane);
        return put(e, &h, sizeof h) && put_zstd(e, e->plane, n * h.width);
    }
    uint64_t last = 0;
    for (size_t j = 0; j < n; j++) {
        uint64_t w = bits[j] ^ last;
        last = bits[j];
        for (int b = 0; b < 8; b++)
            e->plane[(size_t)b * n + j] = (uint8_t)(w >> (8 * b));
    }
    VXor h = {V_XOR, (int32_t)n};
    return put(e, &h, sizeof h) && put_zstd(e, e->plane, 8 * n);
}

static PyObject *encode_chunks(PyObject *self, PyObject *args)
{
    Py_buffer tb, vb, bb;
    if (!PyArg_ParseTuple(args, "y*y*y*:encode_chunks", &tb, &vb, &bb))
        return NULL;
    PyObject *result = NULL, *ts_list = NULL, *val_list = NULL;
    size_t *offs = NULL;
    Enc e = {0};
    size_t n = (size_t)tb.len / 8, m = bb.len / 8 ? (size_t)bb.len / 8 - 1 : 0;
    const int64_t *ts = tb.buf, *bounds = bb.buf;
    const double *vals = vb.buf;
    if ((size_t)vb.len != 8 * n || (m && (bounds[0] < 0 || (size_t)bounds[m] > n))) {
        PyErr_SetString(PyExc_ValueError, "encode_chunks: inconsistent array lengths");
        goto done;
    }
    size_t longest = 0;
    for (size_t i = 0; i < m; i++) {
        if (bounds[i + 1] <= bounds[i]) {
            PyErr_SetString(PyExc_ValueError, "encode_chunks: chunk bounds must increase");
            goto done;
        }
        if ((size_t)(bounds[i + 1] - bounds[i]) > longest)
            longest = (size_t)(bounds[i + 1] - bounds[i]);
    }
    e.cap = 2 * zstd_bound(8 * n) + m * 2 * (64 + 32);
    e.arena = PyMem_RawMalloc(e.cap);
    e.scratch = PyMem_RawMalloc(8 * longest + 8);
    e.plane = PyMem_RawMalloc(8 * longest + 8);
    offs = PyMem_RawMalloc((2 * m + 1) * sizeof(size_t));
    e.cctx = zstd_create();
    if (!e.arena || !e.scratch || !e.plane || !offs || !e.cctx) {
        PyErr_NoMemory();
        goto done;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    offs[0] = 0;
    for (size_t i = 0; i < m && ok; i++) {
        size_t a = (size_t)bounds[i], len = (size_t)(bounds[i + 1] - bounds[i]);
        ok = encode_ts(&e, ts + a, len);
        offs[2 * i + 1] = e.used;
        ok = ok && encode_vals(&e, vals + a, len);
        offs[2 * i + 2] = e.used;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "encode_chunks: zstd failed");
        goto done;
    }
    ts_list = PyList_New((Py_ssize_t)m);
    val_list = PyList_New((Py_ssize_t)m);
    if (!ts_list || !val_list)
        goto done;
    for (size_t i = 0; i < m; i++) {
        PyObject *t = PyBytes_FromStringAndSize((char *)e.arena + offs[2 * i], (Py_ssize_t)(offs[2 * i + 1] - offs[2 * i]));
        PyObject *v = PyBytes_FromStringAndSize((char *)e.arena + offs[2 * i + 1], (Py_ssize_t)(offs[2 * i + 2] - offs[2 * i + 1]));
        if (!t || !v) {
            Py_XDECREF(t);
            Py_XDECREF(v);
            goto done;
        }
        PyList_SET_ITEM(ts_list, (Py_ssize_t)i, t);
        PyList_SET_ITEM(val_list, (Py_ssize_t)i, v);
    }
    result = PyTuple_Pack(2, ts_list, val_list);
done:
    Py_XDECREF(ts_list);
    Py_XDECREF(val_list);
    if (e.cctx)
        zstd_free(e.cctx);
    PyMem_RawFree(e.arena);
    PyMem_RawFree(e.scratch);
    PyMem_RawFree(e.plane);
    PyMem_RawFree(offs);
    PyBuffer_Release(&tb);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&bb);
    return result;
}

/* ---- decoding ------------------------------------------------------------------------------ */

typedef void ZSTD_DCtx;
static ZSTD_DCtx *(*zstd_dcreate)(void);
static size_t (*zstd_dfree)(ZSTD_DCtx *);
static size_t (*zstd_decompress)(ZSTD_DCtx *, void *, size_t, const void *, size_t);

static inline int64_t unzz(uint64_t u) { return (int64_t)(u >> 1) ^ -(int64_t)(u & 1); }

/* zstd frame -> width-byte planes of n values -> out (widened to 64 bits). 0: corrupt. */
static int unplane(ZSTD_DCtx *d, const uint8_t *src, size_t len, int width, size_t n, uint8_t *tmp,
                   uint64_t *out)
{
    size_t want = (size_t)width * n;
    size_t got = zstd_decompress(d, tmp, want, src, len);
    if (zstd_is_error(got) || got != want)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        for (int b = 0; b < width; b++)
            v |= (uint64_t)tmp[(size_t)b * n + i] << (8 * b);
        out[i] = v;
    }
    return 1;
}

static int valid_width(int w) { return w == 1 || w == 2 || w == 4 || w == 8; }

/* Number of samples of a chunk (from its timestamp header); -1 if malformed. */
static int64_t ts_count(const uint8_t *b, size_t len)
{
    if (len >= sizeof(TsRegular) && b[0] == TS_REGULAR)
        return ((const TsRegular *)b)->n;
    if (len >= sizeof(TsDeltas) && b[0] == TS_DELTAS)
        return ((const TsDeltas *)b)->n;
    return -1;
}

static int decode_ts(ZSTD_DCtx *d, const uint8_t *b, size_t len, size_t n, uint8_t *tmp,
                     uint64_t *scratch, int64_t *out)
{
    if (b[0] == TS_REGULAR) {
        const TsRegular *h = (const TsRegular *)b;
        for (size_t i = 0; i < n; i++)
            out[i] = (int64_t)((uint64_t)h->first + (uint64_t)h->step * i);
        return 1;
    }
    const TsDeltas *h = (const TsDeltas *)b;
    if (!valid_width(h->width) || n < 2)
        return n == 1 ? (out[0] = h->first, 1) : 0;
    if (!unplane(d, b + sizeof *h, len - sizeof *h, h->width, n - 1, tmp, scratch))
        return 0;
    /* codec.decode_timestamps: d = cumsum(dd) + d0 - dd[0]; ts = first + cumsum(d) */
    uint64_t dd0 = (uint64_t)unzz(scratch[0]), acc = 0, t = (uint64_t)h->first;
    out[0] = h->first;
    for (size_t i = 0; i + 1 < n; i++) {
        acc += (uint64_t)unzz(scratch[i]);
        t += acc + (uint64_t)h->d0 - dd0;
        out[i + 1] = (int64_t)t;
    }
    return 1;
}

static int decode_vals(ZSTD_DCtx *d, const uint8_t *b, size_t len, size_t n, uint8_t *tmp,
                       uint64_t *scratch, double *out)
{
    if (len >= sizeof(VConst) && b[0] == V_CONST) {
        const VConst *h = (const VConst *)b;
        if ((size_t)h->n != n)
            return 0;
        for (size_t i = 0; i < n; i++)
            memcpy(&out[i], &h->bits, 8);
        return 1;
    }
    if (len >= sizeof(VDecimal) && b[0] == V_DECIMAL) {
        const VDecimal *h = (const VDecimal *)b;
        if ((size_t)h->n != n || h->e > MAX_DECIMALS || !valid_width(h->width) ||
            !unplane(d, b + sizeof *h, len - sizeof *h, h->width, n, tmp, scratch))
            return 0;
        double p = POW10[h->e];
        uint64_t k = (uint64_t)h->k0;
        out[0] = (double)(int64_t)k / p;
        for (size_t i = 1; i < n; i++) {
            k += (uint64_t)unzz(scratch[i]);
            out[i] = (double)(int64_t)k / p;
        }
        return 1;
    }
    if (len >= sizeof(VXor) && b[0] == V_XOR) {
        const VXor *h = (const VXor *)b;
        if ((size_t)h->n != n || !unplane(d, b + sizeof *h, len - sizeof *h, 8, n, tmp, scratch))
            return 0;
        uint64_t acc = 0;
        for (size_t i = 0; i < n; i++) {
            acc ^= scratch[i];
            memcpy(&out[i], &acc, 8);
        }
        return 1;
    }
    return 0;
}

/* The bytes of a blob: bytes from fetchall, bytearray from fetchnumpy. Nothing
   resizes them while the GIL is released: the caller's lists own them. */
static int blob_view(PyObject *o, const uint8_t **p, size_t *len)
{
    if (PyBytes_Check(o)) {
        *p = (const uint8_t *)PyBytes_AS_STRING(o);
        *len = (size_t)PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyByteArray_Check(o)) {
        *p = (const uint8_t *)PyByteArray_AS_STRING(o);
        *len = (size_t)PyByteArray_GET_SIZE(o);
        return 0;
    }
    return -1;
}

static PyObject *decode_chunks(PyObject *self, PyObject *args)
{
    PyObject *ts_in, *val_in;
    if (!PyArg_ParseTuple(args, "O!O!:decode_chunks", &PyList_Type, &ts_in, &PyList_Type, &val_in))
        return NULL;
    Py_ssize_t m = PyList_GET_SIZE(ts_in);
    if (PyList_GET_SIZE(val_in) != m) {
        PyErr_SetString(PyExc_ValueError, "decode_chunks: lists of different lengths");
        return NULL;
    }
    /* Pointers into the blobs: the lists hold references to them while we run. */
    const uint8_t **tp = PyMem_RawMalloc(2 * (m + 1) * sizeof(uint8_t *));
    size_t *lens = PyMem_RawMalloc(2 * (m + 1) * sizeof(size_t));
    int64_t *counts_buf = PyMem_RawMalloc((m + 1) * sizeof(int64_t));
    PyObject *ts_out = NULL, *val_out = NULL, *counts = NULL, *result = NULL;
    uint8_t *tmp = NULL;
    uint64_t *scratch = NULL;
    ZSTD_DCtx *dctx = NULL;
    if (!tp || !lens || !counts_buf) {
        PyErr_NoMemory();
        goto done;
    }
    size_t total = 0, longest = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *a = PyList_GET_ITEM(ts_in, i), *b = PyList_GET_ITEM(val_in, i);
        if (blob_view(a, &tp[2 * i], &lens[2 * i]) < 0 || blob_view(b, &tp[2 * i + 1], &lens[2 * i + 1]) < 0) {
            PyErr_SetString(PyExc_TypeError, "decode_chunks: blobs must be bytes or bytearray");
            goto done;
        }
        int64_t n = ts_count(tp[2 * i], lens[2 * i]);
        if (n < 0 || lens[2 * i + 1] == 0) {
            PyErr_SetString(PyExc_ValueError, "decode_chunks: malformed chunk header");
            goto done;
        }
        counts_buf[i] = n;
        total += (size_t)n;
        if ((size_t)n > longest)
            longest = (size_t)n;
    }
    ts_out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(8 * total));
    val_out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(8 * total));
    counts = PyBytes_FromStringAndSize((const char *)counts_buf, (Py_ssize_t)(8 * m));
    tmp = PyMem_RawMalloc(8 * longest + 8);
    scratch = PyMem_RawMalloc(8 * longest + 8);
    dctx = zstd_dcreate();
    if (!ts_out || !val_out || !counts || !tmp || !scratch || !dctx) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    int64_t *tso = (int64_t *)PyBytes_AS_STRING(ts_out);
    double *vo = (double *)PyBytes_AS_STRING(val_out);
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    size_t at = 0;
    for (Py_ssize_t i = 0; i < m && ok; i++) {
        size_t n = (size_t)counts_buf[i];
        ok = decode_ts(dctx, tp[2 * i], lens[2 * i], n, tmp, scratch, tso + at) &&
             decode_vals(dctx, tp[2 * i + 1], lens[2 * i + 1], n, tmp, scratch, vo + at);
        at += n;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "decode_chunks: corrupt chunk");
        goto done;
    }
    result = PyTuple_Pack(3, ts_out, val_out, counts);
done:
    Py_XDECREF(ts_out);
    Py_XDECREF(val_out);
    Py_XDECREF(counts);
    if (dctx)
        zstd_dfree(dctx);
    PyMem_RawFree(tmp);
    PyMem_RawFree(scratch);
    PyMem_RawFree(tp);
    PyMem_RawFree(lens);
    PyMem_RawFree(counts_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_chunks", encode_chunks, METH_VARARGS,
     "encode_chunks(ts, vals, bounds) -> (ts_blobs, val_blobs)"},
    {"decode_chunks", decode_chunks, METH_VARARGS,
     "decode_chunks(ts_blobs, val_blobs) -> (timestamps, values, counts)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_chunks", NULL, -1, methods};

PyMODINIT_FUNC PyInit__chunks(void)
{
    void *lib = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        PyErr_Format(PyExc_ImportError, "libzstd.so.1 not found: %s", dlerror());
        return NULL;
    }
    zstd_create = (ZSTD_CCtx * (*)(void)) dlsym(lib, "ZSTD_createCCtx");
    zstd_free = (size_t(*)(ZSTD_CCtx *))dlsym(lib, "ZSTD_freeCCtx");
    zstd_compress = (size_t(*)(ZSTD_CCtx *, void *, size_t, const void *, size_t, int))dlsym(
        lib, "ZSTD_compressCCtx");
    zstd_bound = (size_t(*)(size_t))dlsym(lib, "ZSTD_compressBound");
    zstd_is_error = (unsigned (*)(size_t))dlsym(lib, "ZSTD_isError");
    zstd_dcreate = (ZSTD_DCtx * (*)(void)) dlsym(lib, "ZSTD_createDCtx");
    zstd_dfree = (size_t(*)(ZSTD_DCtx *))dlsym(lib, "ZSTD_freeDCtx");
    zstd_decompress = (size_t(*)(ZSTD_DCtx *, void *, size_t, const void *, size_t))dlsym(
        lib, "ZSTD_decompressDCtx");
    if (!zstd_create || !zstd_free || !zstd_compress || !zstd_bound || !zstd_is_error ||
        !zstd_dcreate || !zstd_dfree || !zstd_decompress) {
        PyErr_SetString(PyExc_ImportError, "libzstd.so.1 lacks the functions needed");
        return NULL;
    }
    return PyModule_Create(&module);
}
