/*
 * The chunk encoder of codec.py, for many chunks in one call.
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

static PyMethodDef methods[] = {
    {"encode_chunks", encode_chunks, METH_VARARGS,
     "encode_chunks(ts, vals, bounds) -> (ts_blobs, val_blobs)"},
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
    if (!zstd_create || !zstd_free || !zstd_compress || !zstd_bound || !zstd_is_error) {
        PyErr_SetString(PyExc_ImportError, "libzstd.so.1 lacks the functions needed");
        return NULL;
    }
    return PyModule_Create(&module);
}
