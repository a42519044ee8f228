/* fastcall.c: fastact._backends._cfastcall, the C backend's call path for
 * small arrays: the elementwise kernels, PReLU and softmax (and the data
 * addresses of strided operands, for fa_elementwise_strided).
 *
 * cffi hands a NumPy array to C through ffi.from_buffer, about 0.25 us per
 * array; with cffi's own call, a C call on a small array cost more than the
 * Numba backend's whole dispatch (1.0 us against 0.5, relu on 1024 float32).
 * This plain CPython extension reads the arrays' data pointers through the
 * NumPy C API and calls fa_elementwise (c_src/fastact.c, compiled into the
 * cffi module, which gives fastact/_backends/c.py its address) directly.
 *
 * A kernel object is called as kernel(x, out, params) (forward) or
 * kernel(g, s, out, params) (backward), like the other backends' kernels.
 * A row kernel (make_row_kernel: PReLU and softmax, through fa_rowwise)
 * takes its arrays, then their extents: prelu forward (x, w, out, outer, C,
 * inner), backward (g, x, w, gx, gw, outer, C, inner), softmax forward
 * (x, out, rows, n), backward (g, y, out, rows, n), the gated family forward
 * (x, out, outer, M), backward (g, x, out, outer, M) (x and the backward's
 * out hold 2 outer M elements).
 * It checks everything the C code relies on before calling it: NumPy arrays
 * of the kernel's dtype in native byte order, C-contiguous, all of one size,
 * a writeable output, the number and types of the parameters.  A failed
 * check raises; C is never handed a wrong pointer or length (a row kernel's
 * arrays must hold exactly the elements its extents say: C of them for w
 * and gw).  The GIL is released during the kernel.
 */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>

#include <stdint.h>
#include <string.h>

#include "fastact.h"

/* fa_elementwise is not linked here: it is called through the address c.py
   passes in, as this type, which the compiler holds to the header's
   declaration (unevaluated: no reference to the symbol) */
typedef int (*fa_elementwise_fn)(int dtype, int kernel, const void *in0, const void *in1,
                                 void *out, int64_t n, double p0, double p1, double p2,
                                 uint64_t key, int nthreads);
_Static_assert(_Generic(&fa_elementwise, fa_elementwise_fn: 1, default: 0),
               "fa_elementwise_fn must match fastact.h");
typedef int (*fa_rowwise_fn)(int dtype, int kernel, const void *in0, const void *in1,
                             const void *in2, void *out0, void *out1, int64_t d0, int64_t d1,
                             int64_t d2, int nthreads);
_Static_assert(_Generic(&fa_rowwise, fa_rowwise_fn: 1, default: 0),
               "fa_rowwise_fn must match fastact.h");

/* what both kernel types hold first */
#define KERNEL_HEAD                                                                  \
    PyObject_HEAD                                                                    \
    int dtype, type_num;            /* FA_F32_IDX ... FA_BF16_IDX, NumPy's type number */ \
    Py_ssize_t parallel_min;        /* from this many elements on, threads() threads */ \
    PyObject *threads;              /* callable () -> int */                         \
    PyObject *name;                 /* for messages */

typedef struct {
    KERNEL_HEAD
} KernelHead;

typedef struct {
    KERNEL_HEAD
    fa_elementwise_fn fn;
    int kernel, binary, has_key;
    Py_ssize_t nparams;
} Kernel;

static void head_dealloc(PyObject *self_)
{
    KernelHead *k = (KernelHead *)self_;
    Py_XDECREF(k->threads);
    Py_XDECREF(k->name);
    Py_TYPE(self_)->tp_free(self_);
}

static PyObject *head_repr(PyObject *self_)
{
    return PyUnicode_FromFormat("<%s %U>", Py_TYPE(self_)->tp_name, ((KernelHead *)self_)->name);
}

/* the type object of a kernel struct whose head is KERNEL_HEAD */
#define KERNEL_TYPE(var, tpname, strct, call, doc)                                   \
    static PyTypeObject var = {                                                      \
        PyVarObject_HEAD_INIT(NULL, 0)                                               \
        .tp_name = "fastact._backends._cfastcall." tpname,                           \
        .tp_basicsize = sizeof(strct),                                               \
        .tp_dealloc = head_dealloc,                                                  \
        .tp_repr = head_repr,                                                        \
        .tp_call = call,                                                             \
        .tp_flags = Py_TPFLAGS_DEFAULT,                                              \
        .tp_doc = doc,                                                               \
    }

/* fastact's index of a dtype (FA_F32_IDX ...), or -1: float32, float64,
   float16, and ml_dtypes' bfloat16, a user-defined NumPy type of 2 bytes
   whose scalar type is named bfloat16 (fastact._narrow tells it by name too) */
static int dtype_index(const PyArray_Descr *descr)
{
    switch (descr->type_num) {
    case NPY_FLOAT32: return FA_F32_IDX;
    case NPY_FLOAT64: return FA_F64_IDX;
    case NPY_HALF: return FA_F16_IDX;
    default: break;
    }
    if (descr->type_num < NPY_USERDEF || PyDataType_ELSIZE(descr) != 2)
        return -1;
    const char *tp = descr->typeobj->tp_name, *dot = strrchr(tp, '.');
    return strcmp(dot != NULL ? dot + 1 : tp, "bfloat16") == 0 ? FA_BF16_IDX : -1;
}

/* a new kernel of `type` with its head filled in, or NULL (an exception set,
   ValueError where `dtype` is not float32, float64, float16 or bfloat16,
   `threads` not callable or `ok` false) */
static KernelHead *head_new(PyTypeObject *type, PyObject *dtype, Py_ssize_t parallel_min,
                            PyObject *threads, PyObject *name, int ok)
{
    PyArray_Descr *descr = NULL;
    if (!PyArray_DescrConverter(dtype, &descr))
        return NULL;
    const int type_num = descr->type_num, dtid = dtype_index(descr);
    Py_DECREF(descr);
    if (!ok || dtid < 0 || !PyCallable_Check(threads)) {
        PyErr_Format(PyExc_ValueError, "%s: invalid arguments", type->tp_name);
        return NULL;
    }
    KernelHead *k = (KernelHead *)PyObject_New(KernelHead, type);
    if (k == NULL)
        return NULL;
    k->dtype = dtid;
    k->type_num = type_num;
    k->parallel_min = parallel_min;
    Py_INCREF(threads);
    k->threads = threads;
    Py_INCREF(name);
    k->name = name;
    return k;
}

static int check_array_of(PyObject *name, int type_num, PyObject *o, const char *what,
                          int writeable)
{
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%U: %s must be a numpy.ndarray, not %.100s", name,
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type_num || !PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_TypeError, "%U: %s has the wrong dtype for this kernel", name,
                     what);
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError, "%U: %s is not C-contiguous", name, what);
        return -1;
    }
    if (writeable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%U: %s is read-only", name, what);
        return -1;
    }
    return 0;
}

static int check_array(const Kernel *k, PyObject *o, const char *what, int writeable)
{
    return check_array_of(k->name, k->type_num, o, what, writeable);
}

/* threads() clamped into [1, 1024] (0 on error, with the exception set) */
static int call_threads(PyObject *threads)
{
    PyObject *t = PyObject_CallNoArgs(threads);
    if (t == NULL)
        return 0;
    long v = PyLong_AsLong(t);
    Py_DECREF(t);
    if (v == -1 && PyErr_Occurred())
        return 0;
    return v < 1 ? 1 : v > 1024 ? 1024 : (int)v;
}

static int as_double(const Kernel *k, PyObject *o, double *v)
{
    *v = PyFloat_AsDouble(o);
    if (*v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%U: parameters must be real numbers, not %.100s",
                     k->name, Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *kernel_call(PyObject *self_, PyObject *args, PyObject *kwargs)
{
    Kernel *k = (Kernel *)self_;
    const Py_ssize_t narr = k->binary ? 3 : 2;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) || PyTuple_GET_SIZE(args) != narr + 1) {
        PyErr_Format(PyExc_TypeError, "%U takes %zd positional arguments (%s)", k->name,
                     narr + 1, k->binary ? "g, s, out, params" : "x, out, params");
        return NULL;
    }
    PyObject *in0 = PyTuple_GET_ITEM(args, 0);
    PyObject *in1 = k->binary ? PyTuple_GET_ITEM(args, 1) : NULL;
    PyObject *out = PyTuple_GET_ITEM(args, narr - 1);
    PyObject *params = PyTuple_GET_ITEM(args, narr);
    if (check_array(k, in0, k->binary ? "g" : "x", 0) < 0 ||
        (in1 != NULL && check_array(k, in1, "s", 0) < 0) || check_array(k, out, "out", 1) < 0)
        return NULL;
    const npy_intp n = PyArray_SIZE((PyArrayObject *)out);
    if (PyArray_SIZE((PyArrayObject *)in0) != n ||
        (in1 != NULL && PyArray_SIZE((PyArrayObject *)in1) != n)) {
        PyErr_Format(PyExc_ValueError, "%U: the arrays differ in size", k->name);
        return NULL;
    }
    if (!PyTuple_Check(params) || PyTuple_GET_SIZE(params) != k->nparams) {
        PyErr_Format(PyExc_TypeError, "%U: params must be a tuple of %zd values", k->name,
                     k->nparams);
        return NULL;
    }
    double p[3] = {0.0, 0.0, 0.0};
    uint64_t key = 0;
    Py_ssize_t first = 0;
    if (k->has_key) {                  /* rrelu: (key, lower, upper) */
        PyObject *idx = PyNumber_Index(PyTuple_GET_ITEM(params, 0));
        if (idx == NULL)
            return NULL;
        key = (uint64_t)PyLong_AsUnsignedLongLong(idx);
        Py_DECREF(idx);
        if (PyErr_Occurred())
            return NULL;
        first = 1;
    }
    for (Py_ssize_t i = first; i < k->nparams; i++)
        if (as_double(k, PyTuple_GET_ITEM(params, i), &p[i - first]) < 0)
            return NULL;
    int nthreads = 1;
    if (n >= k->parallel_min && (nthreads = call_threads(k->threads)) == 0)
        return NULL;
    const void *d0 = PyArray_DATA((PyArrayObject *)in0);
    const void *d1 = in1 != NULL ? PyArray_DATA((PyArrayObject *)in1) : NULL;
    void *dout = PyArray_DATA((PyArrayObject *)out);
    int rc = 0;
    if (n > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = k->fn(k->dtype, k->kernel, d0, d1, dout, (int64_t)n, p[0], p[1], p[2], key,
                   nthreads);
        Py_END_ALLOW_THREADS
    }
    if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError, "%U: fa_elementwise refused the call", k->name);
        return NULL;
    }
    Py_RETURN_NONE;
}

KERNEL_TYPE(KernelType, "Kernel", Kernel, kernel_call,
            "An elementwise C kernel: k(x, out, params) or k(g, s, out, params).");

static PyObject *make_kernel(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"address", "kernel", "dtype", "binary", "nparams", "has_key",
                            "parallel_min", "threads", "name", NULL};
    unsigned long long address;
    int kernel, binary, has_key;
    Py_ssize_t nparams, parallel_min;
    PyObject *dtype, *threads, *name;
    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KiOpnpnOU", names, &address, &kernel,
                                     &dtype, &binary, &nparams, &has_key, &parallel_min,
                                     &threads, &name))
        return NULL;
    const int ok = address != 0 && nparams >= (has_key ? 1 : 0) && nparams <= (has_key ? 4 : 3);
    Kernel *k = (Kernel *)head_new(&KernelType, dtype, parallel_min, threads, name, ok);
    if (k == NULL)
        return NULL;
    k->fn = (fa_elementwise_fn)(uintptr_t)address;
    k->kernel = kernel;
    k->binary = binary;
    k->has_key = has_key;
    k->nparams = nparams;
    return (PyObject *)k;
}

/* --- row kernels (fa_rowwise) ---------------------------------------------------- */

/* _C: C elements (extent d1); _2: twice the extents' product (a gated x) */
/* ROLE_OUT_PAIRS: 2 C doubles (prelu backward's weight gradient, in pairs) */
enum { ROLE_IN, ROLE_IN_C, ROLE_OUT, ROLE_OUT_C, ROLE_IN_2, ROLE_OUT_2, ROLE_OUT_PAIRS };

typedef struct {
    int kernel, narr, ndims;
    const char *names[5];
    int roles[5];
    const char *usage;
} RowLayout;

static const RowLayout row_layouts[] = {
    {FA_K_PRELU_FWD, 3, 3, {"x", "w", "out"}, {ROLE_IN, ROLE_IN_C, ROLE_OUT},
     "x, w, out, outer, C, inner"},
    {FA_K_PRELU_BWD, 5, 3, {"g", "x", "w", "gx", "gw"},
     {ROLE_IN, ROLE_IN, ROLE_IN_C, ROLE_OUT, ROLE_OUT_PAIRS},
     "g, x, w, gx, gw (2 C float64), outer, C, inner"},
#define ROW_FAMILY_LAYOUTS(NAME, name, negate, log_, fwd_out, bwd_out)               \
    {FA_K_##NAME##_FWD, 2, 2, {"x", "out"}, {ROLE_IN, ROLE_OUT}, "x, out, rows, n"},   \
    {FA_K_##NAME##_BWD, 3, 2, {"g", "y", "out"}, {ROLE_IN, ROLE_IN, ROLE_OUT},         \
     "g, y, out, rows, n"},
    FA_ROW_FAMILY(ROW_FAMILY_LAYOUTS)
#undef ROW_FAMILY_LAYOUTS
#define GATED_LAYOUTS(NAME, name, act, swap, complement, saves_y, fwd_out)            \
    {FA_K_##NAME##_FWD, 2, 2, {"x", "out"}, {ROLE_IN_2, ROLE_OUT}, "x, out, outer, M"}, \
    {FA_K_##NAME##_BWD, 3, 2, {"g", "x", "out"}, {ROLE_IN, ROLE_IN_2, ROLE_OUT_2},     \
     "g, x, out, outer, M"},
    FA_GATED_FAMILY(GATED_LAYOUTS)
#undef GATED_LAYOUTS
};

typedef struct {
    KERNEL_HEAD
    fa_rowwise_fn fn;
    const RowLayout *layout;
} RowKernel;

static PyObject *row_kernel_call(PyObject *self_, PyObject *args, PyObject *kwargs)
{
    RowKernel *k = (RowKernel *)self_;
    const RowLayout *L = k->layout;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) ||
        PyTuple_GET_SIZE(args) != L->narr + L->ndims) {
        PyErr_Format(PyExc_TypeError, "%U takes %d positional arguments (%s)", k->name,
                     L->narr + L->ndims, L->usage);
        return NULL;
    }
    int64_t d[3] = {0, 0, 0};
    for (int i = 0; i < L->ndims; i++) {
        long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(args, L->narr + i));
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (v < 0) {
            PyErr_Format(PyExc_ValueError, "%U: extents must not be negative", k->name);
            return NULL;
        }
        d[i] = (int64_t)v;
    }
    int64_t total = d[0];
    for (int i = 1; i < L->ndims; i++)
        if (__builtin_mul_overflow(total, d[i], &total)) {
            PyErr_Format(PyExc_ValueError, "%U: the extents overflow", k->name);
            return NULL;
        }
    const void *in[3] = {NULL, NULL, NULL};
    void *out[2] = {NULL, NULL};
    int nin = 0, nout = 0;
    for (int i = 0; i < L->narr; i++) {
        PyObject *o = PyTuple_GET_ITEM(args, i);
        const int role = L->roles[i];
        const int output = role == ROLE_OUT || role == ROLE_OUT_C || role == ROLE_OUT_2 ||
                           role == ROLE_OUT_PAIRS;
        if (check_array_of(k->name, role == ROLE_OUT_PAIRS ? NPY_DOUBLE : k->type_num, o,
                           L->names[i], output) < 0)
            return NULL;
        const int64_t want = role == ROLE_IN_C || role == ROLE_OUT_C ? d[1]
                             : role == ROLE_OUT_PAIRS ? 2 * d[1]
                             : role == ROLE_IN_2 || role == ROLE_OUT_2 ? 2 * total : total;
        if ((int64_t)PyArray_SIZE((PyArrayObject *)o) != want) {
            PyErr_Format(PyExc_ValueError, "%U: %s has %zd elements, not %lld", k->name,
                         L->names[i], (Py_ssize_t)PyArray_SIZE((PyArrayObject *)o),
                         (long long)want);
            return NULL;
        }
        if (output)
            out[nout++] = PyArray_DATA((PyArrayObject *)o);
        else
            in[nin++] = PyArray_DATA((PyArrayObject *)o);
    }
    int nthreads = 1;
    if (total >= k->parallel_min && (nthreads = call_threads(k->threads)) == 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = k->fn(k->dtype, L->kernel, in[0], in[1], in[2], out[0], out[1], d[0], d[1], d[2],
               nthreads);
    Py_END_ALLOW_THREADS
    if (rc == -1) {
        PyErr_Format(PyExc_MemoryError, "%U: could not allocate its %lld-channel partial sums",
                     k->name, (long long)d[1]);
        return NULL;
    }
    if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError, "%U: fa_rowwise refused the call", k->name);
        return NULL;
    }
    Py_RETURN_NONE;
}

KERNEL_TYPE(RowKernelType, "RowKernel", RowKernel, row_kernel_call,
            "A PReLU, softmax-family or gated C kernel: its arrays, then their extents.");

static PyObject *make_row_kernel(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"address", "kernel", "dtype", "parallel_min", "threads", "name",
                            NULL};
    unsigned long long address;
    int kernel;
    Py_ssize_t parallel_min;
    PyObject *dtype, *threads, *name;
    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KiOnOU", names, &address, &kernel, &dtype,
                                     &parallel_min, &threads, &name))
        return NULL;
    const RowLayout *layout = NULL;
    for (size_t i = 0; i < sizeof row_layouts / sizeof row_layouts[0]; i++)
        if (row_layouts[i].kernel == kernel)
            layout = &row_layouts[i];
    RowKernel *k = (RowKernel *)head_new(&RowKernelType, dtype, parallel_min, threads, name,
                                         address != 0 && layout != NULL);
    if (k == NULL)
        return NULL;
    k->fn = (fa_rowwise_fn)(uintptr_t)address;
    k->layout = layout;
    return (PyObject *)k;
}

/* --- addresses (strided calls) -------------------------------------------------- */

/* addresses(arrays, starts): the address of element starts[k] (counted in
   items from the data pointer, any sign) of each NumPy array arrays[k], a
   list: what the array interface gives, without building its dict. */
static PyObject *addresses(PyObject *mod, PyObject *args)
{
    PyObject *arrays, *starts;
    (void)mod;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &arrays, &PyTuple_Type, &starts))
        return NULL;
    const Py_ssize_t n = PyTuple_GET_SIZE(arrays);
    if (PyTuple_GET_SIZE(starts) != n) {
        PyErr_SetString(PyExc_ValueError, "addresses: one start per array");
        return NULL;
    }
    PyObject *res = PyList_New(n);
    if (res == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *o = PyTuple_GET_ITEM(arrays, k);
        long long start = PyLong_AsLongLong(PyTuple_GET_ITEM(starts, k));
        if (!PyArray_Check(o) || (start == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "addresses: arrays must be numpy.ndarray");
            Py_DECREF(res);
            return NULL;
        }
        PyArrayObject *a = (PyArrayObject *)o;
        uintptr_t p = (uintptr_t)PyArray_DATA(a) + (uintptr_t)(start * PyArray_ITEMSIZE(a));
        PyObject *v = PyLong_FromUnsignedLongLong((unsigned long long)p);
        if (v == NULL) {
            Py_DECREF(res);
            return NULL;
        }
        PyList_SET_ITEM(res, k, v);
    }
    return res;
}

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_VARARGS,
     "addresses(arrays, starts): the address of element starts[k] of each arrays[k]."},
    {"make_row_kernel", (PyCFunction)(void (*)(void))make_row_kernel,
     METH_VARARGS | METH_KEYWORDS,
     "make_row_kernel(address, kernel, dtype, parallel_min, threads, name): a RowKernel "
     "calling fa_rowwise at `address` with kernel id `kernel` (PReLU, softmax family, gated)."},
    {"make_kernel", (PyCFunction)(void (*)(void))make_kernel, METH_VARARGS | METH_KEYWORDS,
     "make_kernel(address, kernel, dtype, binary, nparams, has_key, parallel_min, threads, "
     "name): a Kernel calling fa_elementwise at `address` with kernel id `kernel`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_cfastcall",
    .m_doc = "The C backend's call path for small arrays (see c_src/fastcall.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__cfastcall(void)
{
    import_array();
    if (PyType_Ready(&KernelType) < 0 || PyType_Ready(&RowKernelType) < 0)
        return NULL;
    return PyModule_Create(&module);
}
