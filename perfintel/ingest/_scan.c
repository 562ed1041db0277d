/*
 * Byte scanners for the two bulk ingest formats: Prometheus remote-write 1.0
 * protobuf and Influx line protocol.
 *
 * Why C: in Python these loops cost a few hundred nanoseconds per sample and
 * hold the GIL, which capped HTTP ingest at one core. Here they cost a few
 * nanoseconds per byte and run with the GIL released, so concurrent requests
 * use every core. Both scanners only take the regular, common shape of their
 * input; anything unusual is handed back to the Python parsers (which define
 * the semantics and word the error messages), so the two can never disagree:
 *
 *   rw_scan(body)  -> None when the request is not in the plain shape, else
 *                     (series_info, timestamps, values, metadata_spans)
 *   lp_scan(body, mul, div, default_ts)
 *                  -> (sample_group, sample_line, timestamps, values,
 *                      group_spans, careful_lines)
 *
 * Every result is a bytes object holding a native array; Python wraps them
 * with numpy.frombuffer (no numpy headers needed to build this file).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the scanners read protobuf doubles in place: little-endian hosts only"
#endif

/* ---- remote write ------------------------------------------------------------------------ */

static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (p >= end)
            return 0;
        uint8_t b = *p++;
        if (shift == 63 && (b & 0x7E))
            return 0; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 1;
        }
    }
    return 0;
}

static inline int read_len(const uint8_t **pp, const uint8_t *end, const uint8_t **body_end)
{
    uint64_t len;
    if (!read_varint(pp, end, &len) || len > (uint64_t)(end - *pp))
        return 0;
    *body_end = *pp + len;
    return 1;
}

typedef struct {
    int64_t *info; /* per series: labels start, labels end, samples, histograms */
    int64_t *ts;
    double *vals;
    int64_t *meta; /* per metadata message: start, end */
    Py_ssize_t n_series, n_samples, n_meta;
} RwOut;

/* One pass over a WriteRequest; fills the arrays that are not NULL. 0: not the plain shape. */
static int rw_pass(const uint8_t *base, Py_ssize_t size, RwOut *o)
{
    const uint8_t *p = base, *end = base + size;
    Py_ssize_t ns = 0, nsamp = 0, nm = 0;
    while (p < end) {
        uint64_t tag;
        const uint8_t *msg_end;
        if (!read_varint(&p, end, &tag) || (tag & 7) != 2 || !read_len(&p, end, &msg_end))
            return 0;
        const uint8_t *q = p;
        p = msg_end;
        if (tag >> 3 == 3) { /* MetricMetadata: decoded by Python */
            if (o->meta) {
                o->meta[2 * nm] = q - base;
                o->meta[2 * nm + 1] = msg_end - base;
            }
            nm++;
            continue;
        }
        if (tag >> 3 != 1)
            return 0;
        /* TimeSeries: labels must be contiguous (they are the series' cache key). */
        int64_t lab_a = -1, lab_b = -1, count = 0, hist = 0;
        while (q < msg_end) {
            const uint8_t *field = q, *sub_end;
            uint64_t t2;
            if (!read_varint(&q, msg_end, &t2) || (t2 & 7) != 2 || !read_len(&q, msg_end, &sub_end))
                return 0;
            const uint8_t *s = q;
            q = sub_end;
            switch (t2 >> 3) {
            case 1: /* Label */
                if (lab_a < 0)
                    lab_a = field - base;
                else if (lab_b != field - base)
                    return 0;
                lab_b = sub_end - base;
                break;
            case 2: { /* Sample */
                double v = 0.0;
                uint64_t t = 0;
                while (s < sub_end) {
                    uint64_t t3;
                    if (!read_varint(&s, sub_end, &t3))
                        return 0;
                    if (t3 == 0x09) {
                        if (sub_end - s < 8)
                            return 0;
                        memcpy(&v, s, 8);
                        s += 8;
                    } else if (t3 == 0x10) {
                        if (!read_varint(&s, sub_end, &t))
                            return 0;
                    } else {
                        return 0;
                    }
                }
                if (o->ts) {
                    o->ts[nsamp] = (int64_t)t;
                    o->vals[nsamp] = v;
                }
                nsamp++;
                count++;
                break;
            }
            case 3: /* exemplars: ignored */
                break;
            case 4: /* native histograms: counted, reported by Python */
                hist++;
                break;
            default:
                return 0;
            }
        }
        if (lab_a < 0)
            lab_a = lab_b = 0;
        if (o->info) {
            int64_t *r = o->info + 4 * ns;
            r[0] = lab_a;
            r[1] = lab_b;
            r[2] = count;
            r[3] = hist;
        }
        ns++;
    }
    o->n_series = ns;
    o->n_samples = nsamp;
    o->n_meta = nm;
    return 1;
}

static PyObject *rw_scan(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:rw_scan", &buf))
        return NULL;
    const uint8_t *base = buf.buf;
    RwOut counts = {0};
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = rw_pass(base, buf.len, &counts);
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyBuffer_Release(&buf);
        Py_RETURN_NONE;
    }
    PyObject *info = PyBytes_FromStringAndSize(NULL, counts.n_series * 32);
    PyObject *ts = PyBytes_FromStringAndSize(NULL, counts.n_samples * 8);
    PyObject *vals = PyBytes_FromStringAndSize(NULL, counts.n_samples * 8);
    PyObject *meta = PyBytes_FromStringAndSize(NULL, counts.n_meta * 16);
    if (!info || !ts || !vals || !meta) {
        Py_XDECREF(info);
        Py_XDECREF(ts);
        Py_XDECREF(vals);
        Py_XDECREF(meta);
        PyBuffer_Release(&buf);
        return NULL;
    }
    RwOut fill = {
        (int64_t *)PyBytes_AS_STRING(info),
        (int64_t *)PyBytes_AS_STRING(ts),
        (double *)PyBytes_AS_STRING(vals),
        (int64_t *)PyBytes_AS_STRING(meta),
        0,
        0,
        0,
    };
    Py_BEGIN_ALLOW_THREADS
    rw_pass(base, buf.len, &fill);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return Py_BuildValue("(NNNN)", info, ts, vals, meta);
}

/* ---- line protocol ----------------------------------------------------------------------- */

static locale_t c_locale; /* strtod_l: correctly rounded, independent of the process locale */

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A float in plain decimal syntax: [+-] digits [. digits] [(e|E) [+-] digits], at least one
 * mantissa digit. What Python's float() reads the same way; anything else returns 0. */
static int plain_float(const char *s, const char *e, double *out)
{
    const char *p = s;
    int neg = 0;
    if (p < e && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    uint64_t m = 0;
    int sig = 0, exp10 = 0, any = 0;
    for (; p < e && is_digit(*p); p++) {
        any = 1;
        if (m == 0 && *p == '0')
            continue;
        if (sig < 19)
            m = m * 10 + (uint64_t)(*p - '0');
        else
            exp10++;
        sig++;
    }
    if (p < e && *p == '.') {
        for (p++; p < e && is_digit(*p); p++) {
            any = 1;
            if (m == 0 && *p == '0') {
                exp10--;
                continue;
            }
            if (sig < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                exp10--;
            }
            sig++;
        }
    }
    if (!any)
        return 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < e && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == e || !is_digit(*p))
            return 0;
        int x = 0;
        for (; p < e && is_digit(*p); p++)
            if (x < 100000)
                x = x * 10 + (*p - '0');
        exp10 += eneg ? -x : x;
    }
    if (p != e)
        return 0;
    if (sig <= 19 && m <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        /* Exact operands, one IEEE operation: correctly rounded (Clinger's fast path). */
        double v = (double)m;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        *out = neg ? -v : v;
        return 1;
    }
    char tmp[80];
    size_t n = (size_t)(e - s);
    if (n >= sizeof tmp)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *stop;
    double v = strtod_l(tmp, &stop, c_locale);
    if (stop != tmp + n)
        return 0;
    *out = v;
    return 1;
}

static int field_value(const char *s, const char *e, double *out)
{
    char last = e[-1];
    if (last == 'i' || last == 'u') {
        const char *p = s, *stop = e - 1;
        int neg = 0;
        if (last == 'i' && p < stop && *p == '-')
            neg = 1, p++;
        if (p == stop)
            return 0;
        uint64_t limit = last == 'u' ? UINT64_MAX : (neg ? (1ULL << 63) : (1ULL << 63) - 1);
        uint64_t v = 0;
        for (; p < stop; p++) {
            if (!is_digit(*p))
                return 0;
            uint64_t d = (uint64_t)(*p - '0');
            if (v > (limit - d) / 10)
                return 0; /* out of range: the careful path words the error */
            v = v * 10 + d;
        }
        *out = neg ? -(double)v : (double)v;
        return 1;
    }
    size_t n = (size_t)(e - s);
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)
    if (IS("t") || IS("T") || IS("true") || IS("True") || IS("TRUE")) {
        *out = 1.0;
        return 1;
    }
    if (IS("f") || IS("F") || IS("false") || IS("False") || IS("FALSE")) {
        *out = 0.0;
        return 1;
    }
#undef IS
    return plain_float(s, e, out);
}

/* Timestamp -?digits in precision units -> ms (floor division, like Python's //). */
static int timestamp_ms(const char *s, const char *e, int64_t mul, int64_t div, int64_t *out)
{
    int neg = 0;
    if (s < e && *s == '-')
        neg = 1, s++;
    if (s == e)
        return 0;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (!is_digit(*s))
            return 0;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    int64_t raw = neg ? -(int64_t)v : (int64_t)v;
    if (mul == 1) {
        int64_t q = raw / div;
        if (raw % div != 0 && raw < 0)
            q--;
        *out = q;
        return 1;
    }
    int64_t limit = INT64_MAX / mul;
    if (raw > limit || raw < -limit)
        return 0;
    *out = raw * mul;
    return 1;
}

static inline uint64_t hash_bytes(const char *s, size_t n, uint64_t h)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w ^ ((uint64_t)n << 56)) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 31);
}

typedef struct {
    int64_t ks, kn, fs, fn;
    uint64_t hash;
} Group;

typedef struct {
    const char *b;
    int64_t mul, div, default_ts;
    /* outputs, sized by the caller from upper bounds */
    int32_t *gid, *line;
    int64_t *ts;
    double *vals;
    int32_t *careful;
    Group *groups;
    int32_t *table; /* open addressing: group id or -1 */
    uint64_t mask;
    Py_ssize_t n_samples, n_groups, n_careful;
} LpState;

static int32_t group_of(LpState *st, int64_t ks, int64_t kn, int64_t fs, int64_t fn)
{
    uint64_t h = hash_bytes(st->b + fs, (size_t)fn, hash_bytes(st->b + ks, (size_t)kn, 0x51ED27));
    for (uint64_t i = h & st->mask;; i = (i + 1) & st->mask) {
        int32_t g = st->table[i];
        if (g < 0) {
            g = (int32_t)st->n_groups++;
            st->groups[g] = (Group){ks, kn, fs, fn, h};
            st->table[i] = g;
            return g;
        }
        Group *x = &st->groups[g];
        if (x->hash == h && x->kn == kn && x->fn == fn &&
            memcmp(st->b + x->ks, st->b + ks, (size_t)kn) == 0 &&
            memcmp(st->b + x->fs, st->b + fs, (size_t)fn) == 0)
            return g;
    }
}

#define MAX_FIELDS 64

/* 1: space (a section separator), 2: a byte only the careful path handles. */
static const uint8_t BYTE_CLASS[256] = {
    [' '] = 1, ['"'] = 2, ['\\'] = 2, ['\t'] = 2, ['\r'] = 2, ['\v'] = 2, ['\f'] = 2,
};

/* One line [a, e): 1 parsed (samples appended), 0 needs the careful path. */
static int lp_line(LpState *st, int64_t a, int64_t e, int32_t line_no)
{
    const char *b = st->b;
    if (b[a] == '#' || b[a] == ' ' || b[e - 1] == ' ')
        return 0;
    int64_t sp1 = -1, sp2 = -1;
    for (int64_t i = a; i < e; i++) {
        uint8_t k = BYTE_CLASS[(uint8_t)b[i]];
        if (k == 0)
            continue;
        if (k == 2)
            return 0;
        if (sp1 < 0)
            sp1 = i;
        else if (sp2 < 0)
            sp2 = i;
        else
            return 0;
    }
    if (sp1 <= a)
        return 0;
    int64_t fend = sp2 >= 0 ? sp2 : e;
    if (fend == sp1 + 1)
        return 0;
    int64_t ts = st->default_ts;
    if (sp2 >= 0 && (sp2 + 1 == e || !timestamp_ms(b + sp2 + 1, b + e, st->mul, st->div, &ts)))
        return 0;
    int64_t fs[MAX_FIELDS], fn[MAX_FIELDS];
    double fv[MAX_FIELDS];
    int nf = 0;
    int64_t p = sp1 + 1;
    while (p < fend) {
        int64_t q = p, eq = -1;
        for (; q < fend && b[q] != ','; q++)
            if (b[q] == '=') {
                if (eq >= 0)
                    return 0;
                eq = q;
            }
        if (eq <= p || eq == q - 1 || nf == MAX_FIELDS)
            return 0;
        if (!field_value(b + eq + 1, b + q, &fv[nf]))
            return 0;
        fs[nf] = p;
        fn[nf] = eq - p;
        nf++;
        if (q < fend && q + 1 == fend)
            return 0; /* trailing comma */
        p = q + 1;
    }
    for (int i = 0; i < nf; i++) {
        Py_ssize_t k = st->n_samples++;
        st->gid[k] = group_of(st, a, sp1 - a, fs[i], fn[i]);
        st->line[k] = line_no;
        st->ts[k] = ts;
        st->vals[k] = fv[i];
    }
    return 1;
}

static void lp_pass(LpState *st, Py_ssize_t size)
{
    const char *b = st->b;
    int64_t a = 0;
    int32_t line_no = 0;
    while (a <= size) {
        const char *nl = memchr(b + a, '\n', (size_t)(size - a));
        int64_t e = nl ? nl - b : size;
        if (e > a && !lp_line(st, a, e, line_no))
            st->careful[st->n_careful++] = line_no;
        line_no++;
        a = e + 1;
    }
}

static size_t count_byte(const char *b, Py_ssize_t n, char c)
{
    size_t k = 0;
    const char *p = b, *end = b + n;
    while ((p = memchr(p, c, (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

static PyObject *lp_scan(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    long long mul, div, default_ts;
    if (!PyArg_ParseTuple(args, "y*LLL:lp_scan", &buf, &mul, &div, &default_ts))
        return NULL;
    if (mul <= 0 || div <= 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "mul and div must be positive");
        return NULL;
    }
    const char *b = buf.buf;
    Py_ssize_t size = buf.len;
    size_t n_eq, n_lines;
    Py_BEGIN_ALLOW_THREADS
    n_eq = count_byte(b, size, '=');
    n_lines = count_byte(b, size, '\n') + 1;
    Py_END_ALLOW_THREADS
    size_t cap = n_eq + 1; /* every sample has its own '=' */
    uint64_t slots = 16;
    while (slots < 2 * cap)
        slots <<= 1;
    PyObject *gid = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap * 4));
    PyObject *line = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap * 4));
    PyObject *ts = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap * 8));
    PyObject *vals = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap * 8));
    PyObject *careful = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n_lines * 4));
    Group *groups = PyMem_RawMalloc(cap * sizeof(Group));
    int32_t *table = PyMem_RawMalloc(slots * sizeof(int32_t));
    PyObject *spans = NULL, *result = NULL;
    if (!gid || !line || !ts || !vals || !careful || !groups || !table) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    memset(table, 0xFF, slots * sizeof(int32_t));
    LpState st = {
        .b = b,
        .mul = mul,
        .div = div,
        .default_ts = default_ts,
        .gid = (int32_t *)PyBytes_AS_STRING(gid),
        .line = (int32_t *)PyBytes_AS_STRING(line),
        .ts = (int64_t *)PyBytes_AS_STRING(ts),
        .vals = (double *)PyBytes_AS_STRING(vals),
        .careful = (int32_t *)PyBytes_AS_STRING(careful),
        .groups = groups,
        .table = table,
        .mask = slots - 1,
    };
    Py_BEGIN_ALLOW_THREADS
    lp_pass(&st, size);
    Py_END_ALLOW_THREADS
    spans = PyBytes_FromStringAndSize(NULL, st.n_groups * 32);
    if (!spans)
        goto done;
    int64_t *sp = (int64_t *)PyBytes_AS_STRING(spans);
    for (Py_ssize_t g = 0; g < st.n_groups; g++) {
        sp[4 * g] = groups[g].ks;
        sp[4 * g + 1] = groups[g].ks + groups[g].kn;
        sp[4 * g + 2] = groups[g].fs;
        sp[4 * g + 3] = groups[g].fs + groups[g].fn;
    }
    if (_PyBytes_Resize(&gid, st.n_samples * 4) < 0 || _PyBytes_Resize(&line, st.n_samples * 4) < 0 ||
        _PyBytes_Resize(&ts, st.n_samples * 8) < 0 || _PyBytes_Resize(&vals, st.n_samples * 8) < 0 ||
        _PyBytes_Resize(&careful, st.n_careful * 4) < 0)
        goto done;
    result = Py_BuildValue("(OOOOOO)", gid, line, ts, vals, spans, careful);
done:
    Py_XDECREF(gid);
    Py_XDECREF(line);
    Py_XDECREF(ts);
    Py_XDECREF(vals);
    Py_XDECREF(careful);
    Py_XDECREF(spans);
    PyMem_RawFree(groups);
    PyMem_RawFree(table);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"rw_scan", rw_scan, METH_VARARGS,
     "rw_scan(body) -> (series_info, timestamps, values, metadata_spans) or None"},
    {"lp_scan", lp_scan, METH_VARARGS,
     "lp_scan(body, mul, div, default_ts) -> (group, line, timestamps, values, group_spans, careful)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__scan(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c_locale)
        return PyErr_NoMemory();
    return PyModule_Create(&module);
}
