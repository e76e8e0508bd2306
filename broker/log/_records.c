/* backbone.broker.log._records: the per-record walk of a record batch, in C.
 *
 * The optional accelerator of backbone/broker/log/records.py, which holds the same
 * walk in pure Python (used when this module is not built, or when
 * BACKBONE_NO_EXTENSIONS is set) and turns the result into a message. Both return
 * exactly the same tuples; the tests compare them on crafted and random inputs.
 *
 * scan(records, count) walks the `count` records of an uncompressed records section
 * (magic v2, see records.py for the layout) and returns
 *
 *     (0, min timestamp delta, max timestamp delta, records with a null key)
 *
 * or, at the first problem, (code, record index, a, b) with the codes of records.py.
 * Nothing is allocated per record; the GIL is released during the walk.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum {
    OK = 0,
    MISSING = 1,        /* a = declared count */
    PAST_END = 2,       /* a field runs past the end of its record */
    TOO_LONG = 3,       /* a varint longer than 5 (varlong: 10) bytes */
    LENGTH = 4,         /* a = length, b = bytes left in the section */
    OFFSET_DELTA = 5,   /* a = offset delta found */
    KEY_LENGTH = 6,     /* a = length, b = bytes left in the record */
    VALUE_LENGTH = 7,
    HEADER_COUNT = 8,
    HEADER_KEY = 9,
    HEADER_VALUE = 10,
    RECORD_SIZE = 11,   /* a = bytes its fields take, b = its length */
    TRAILING = 12,      /* a = bytes after the last declared record */
    OVERFLOW = 13       /* a varint above 32 bits (a varlong above 64) */
};

/* Kafka's (zigzag) varint: at most 5 bytes and 32 bits (Kafka would silently drop the
 * higher bits of a 5th byte; clients that read 64 bits would not, so it is refused). */
static int
read_varint(const unsigned char **pp, const unsigned char *end, int64_t *out)
{
    const unsigned char *p = *pp;
    uint64_t raw = 0;
    int shift = 0;
    for (int n = 0; n < 5; n++) {
        if (p >= end)
            return PAST_END;
        unsigned char b = *p++;
        if (n == 4 && (b & 0x70))
            return OVERFLOW;
        raw |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            uint32_t u = (uint32_t)raw;
            *out = (int32_t)((u >> 1) ^ (0u - (u & 1u)));
            *pp = p;
            return OK;
        }
        shift += 7;
    }
    return TOO_LONG;
}

/* Kafka's (zigzag) varlong: at most 10 bytes and 64 bits. */
static int
read_varlong(const unsigned char **pp, const unsigned char *end, int64_t *out)
{
    const unsigned char *p = *pp;
    uint64_t raw = 0;
    int shift = 0;
    for (int n = 0; n < 10; n++) {
        if (p >= end)
            return PAST_END;
        unsigned char b = *p++;
        if (n == 9 && (b & 0x7e))
            return OVERFLOW;
        raw |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)((raw >> 1) ^ (0ull - (raw & 1ull)));
            *pp = p;
            return OK;
        }
        shift += 7;
    }
    return TOO_LONG;
}

typedef struct {
    int code;
    int64_t index, a, b;
    int64_t min_delta, max_delta, null_keys;
} scan_result;

#define FAIL(c, x, y) do { r->code = (c); r->index = i; r->a = (x); r->b = (y); return; } while (0)
#define STEP(call) do { int rc_ = (call); if (rc_) FAIL(rc_, 0, 0); } while (0)

static void
scan_records(const unsigned char *p, const unsigned char *end, int64_t count, scan_result *r)
{
    int64_t i = 0, v, left;
    r->min_delta = INT64_MAX;
    r->max_delta = INT64_MIN;
    r->null_keys = 0;
    for (i = 0; i < count; i++) {
        if (p >= end)
            FAIL(MISSING, count, 0);
        STEP(read_varint(&p, end, &v));
        left = end - p;
        if (v < 0 || v > left)
            FAIL(LENGTH, v, left);
        const unsigned char *body = p, *rec_end = p + v;
        int64_t length = v;
        if (p >= rec_end)
            FAIL(PAST_END, 0, 0);
        p++; /* attributes (unused in magic v2) */
        STEP(read_varlong(&p, rec_end, &v));
        if (v < r->min_delta)
            r->min_delta = v;
        if (v > r->max_delta)
            r->max_delta = v;
        STEP(read_varint(&p, rec_end, &v));
        if (v != i)
            FAIL(OFFSET_DELTA, v, 0);
        STEP(read_varint(&p, rec_end, &v));
        left = rec_end - p;
        if (v < -1 || v > left)
            FAIL(KEY_LENGTH, v, left);
        if (v < 0)
            r->null_keys++;
        else
            p += v;
        STEP(read_varint(&p, rec_end, &v));
        left = rec_end - p;
        if (v < -1 || v > left)
            FAIL(VALUE_LENGTH, v, left);
        if (v > 0)
            p += v;
        STEP(read_varint(&p, rec_end, &v));
        left = rec_end - p;
        if (v < 0 || v > left)
            FAIL(HEADER_COUNT, v, left);
        for (int64_t headers = v; headers > 0; headers--) {
            STEP(read_varint(&p, rec_end, &v));
            left = rec_end - p;
            if (v < 0 || v > left)
                FAIL(HEADER_KEY, v, left);
            p += v;
            STEP(read_varint(&p, rec_end, &v));
            left = rec_end - p;
            if (v < -1 || v > left)
                FAIL(HEADER_VALUE, v, left);
            if (v > 0)
                p += v;
        }
        if (p != rec_end)
            FAIL(RECORD_SIZE, (int64_t)(p - body), length);
    }
    if (p != end)
        FAIL(TRAILING, (int64_t)(end - p), 0);
    r->code = OK;
}

static PyObject *
scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    long long count;
    scan_result r;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*L:scan", &view, &count))
        return NULL;
    const unsigned char *start = (const unsigned char *)view.buf;
    Py_BEGIN_ALLOW_THREADS
    scan_records(start, start + view.len, (int64_t)count, &r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (r.code != OK)
        return Py_BuildValue("(iLLL)", r.code, (long long)r.index, (long long)r.a,
                             (long long)r.b);
    return Py_BuildValue("(iLLL)", OK, (long long)r.min_delta, (long long)r.max_delta,
                         (long long)r.null_keys);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(records, count) -> (0, min ts delta, max ts delta, null keys) or "
     "(code, record index, a, b): walk the records of an uncompressed v2 section."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_records", "The per-record walk of a record batch, in C.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    return PyModule_Create(&module);
}
