/* ops.h: the C backend's op list.  GENERATED from fastact's registry by
   `python build.py --generate` (build.py: ops_header); do not edit.
   tests/test_c_backend.py checks that it is current. */
#ifndef FASTACT_OPS_H
#define FASTACT_OPS_H

/* cdef begin */
/* kernel ids: fa_elementwise takes those below
   FA_K_ELEMENTWISE_COUNT, fa_rowwise the others */
enum {
    FA_K_SIGMOID_FWD = 0,
    FA_K_SIGMOID_BWD = 1,
    FA_K_RELU_FWD = 2,
    FA_K_RELU_BWD = 3,
    FA_K_LEAKY_RELU_FWD = 4,
    FA_K_LEAKY_RELU_BWD = 5,
    FA_K_RRELU_TRAIN_FWD = 6,
    FA_K_RRELU_TRAIN_BWD = 7,
    FA_K_RRELU_DIV_TRAIN_FWD = 8,
    FA_K_RRELU_DIV_TRAIN_BWD = 9,
    FA_K_ELU_FWD = 10,
    FA_K_ELU_BWD = 11,
    FA_K_ELU_BWDY = 12,
    FA_K_HARDTANH_FWD = 13,
    FA_K_HARDTANH_BWD = 14,
    FA_K_RELU6_FWD = 15,
    FA_K_RELU6_BWD = 16,
    FA_K_HARDSIGMOID_FWD = 17,
    FA_K_HARDSIGMOID_BWD = 18,
    FA_K_HARDSWISH_FWD = 19,
    FA_K_HARDSWISH_BWD = 20,
    FA_K_HARDSHRINK_FWD = 21,
    FA_K_HARDSHRINK_BWD = 22,
    FA_K_SOFTSHRINK_FWD = 23,
    FA_K_SOFTSHRINK_BWD = 24,
    FA_K_THRESHOLD_FWD = 25,
    FA_K_THRESHOLD_BWD = 26,
    FA_K_SOFTSIGN_FWD = 27,
    FA_K_SOFTSIGN_BWD = 28,
    FA_K_SILU_FWD = 29,
    FA_K_SILU_BWD = 30,
    FA_K_TANH_FWD = 31,
    FA_K_TANH_BWD = 32,
    FA_K_SELU_FWD = 33,
    FA_K_SELU_BWD = 34,
    FA_K_SELU_BWDY = 35,
    FA_K_CELU_FWD = 36,
    FA_K_CELU_BWD = 37,
    FA_K_CELU_BWDY = 38,
    FA_K_MISH_FWD = 39,
    FA_K_MISH_BWD = 40,
    FA_K_TANHSHRINK_FWD = 41,
    FA_K_TANHSHRINK_BWD = 42,
    FA_K_SOFTPLUS_FWD = 43,
    FA_K_SOFTPLUS_BWD = 44,
    FA_K_LOGSIGMOID_FWD = 45,
    FA_K_LOGSIGMOID_BWD = 46,
    FA_K_GELU_TANH_FWD = 47,
    FA_K_GELU_TANH_BWD = 48,
    FA_K_GELU_FWD = 49,
    FA_K_GELU_BWD = 50,
    FA_K_SQUAREPLUS_FWD = 51,
    FA_K_SQUAREPLUS_BWD = 52,
    FA_K_ELEMENTWISE_COUNT = 53,
    FA_K_PRELU_FWD = 53,
    FA_K_PRELU_BWD = 54,
    FA_K_SOFTMAX_FWD = 55,
    FA_K_SOFTMAX_BWD = 56,
    FA_K_LOG_SOFTMAX_FWD = 57,
    FA_K_LOG_SOFTMAX_BWD = 58,
    FA_K_SOFTMIN_FWD = 59,
    FA_K_SOFTMIN_BWD = 60,
    FA_K_GLU_FWD = 61,
    FA_K_GLU_BWD = 62,
    FA_K_REGLU_FWD = 63,
    FA_K_REGLU_BWD = 64,
    FA_K_GEGLU_FWD = 65,
    FA_K_GEGLU_BWD = 66,
    FA_K_GEGLU_TANH_FWD = 67,
    FA_K_GEGLU_TANH_BWD = 68,
    FA_K_SWIGLU_FWD = 69,
    FA_K_SWIGLU_BWD = 70,
    FA_K_COUNT = 71
};
/* cdef end */

/* X(ID, stem, binary, out, fast) for every elementwise kernel (see build.py) */
#define FA_ELEMENTWISE_KERNELS(X) \
    X(SIGMOID_FWD, sigmoid_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(SIGMOID_BWD, sigmoid_bwd, 1, FA_OUT_STREAM, 0) \
    X(RELU_FWD, relu_fwd, 0, FA_OUT_STREAM, 0) \
    X(RELU_BWD, relu_bwd, 1, FA_OUT_STREAM, 0) \
    X(LEAKY_RELU_FWD, leaky_relu_fwd, 0, FA_OUT_STREAM, 0) \
    X(LEAKY_RELU_BWD, leaky_relu_bwd, 1, FA_OUT_STREAM, 0) \
    X(RRELU_TRAIN_FWD, rrelu_train_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(RRELU_TRAIN_BWD, rrelu_train_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(RRELU_DIV_TRAIN_FWD, rrelu_div_train_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(RRELU_DIV_TRAIN_BWD, rrelu_div_train_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(ELU_FWD, elu_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(ELU_BWD, elu_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(ELU_BWDY, elu_bwdy, 1, FA_OUT_STREAM, 0) \
    X(HARDTANH_FWD, hardtanh_fwd, 0, FA_OUT_STREAM, 0) \
    X(HARDTANH_BWD, hardtanh_bwd, 1, FA_OUT_STREAM, 0) \
    X(RELU6_FWD, relu6_fwd, 0, FA_OUT_STREAM, 0) \
    X(RELU6_BWD, relu6_bwd, 1, FA_OUT_STREAM, 0) \
    X(HARDSIGMOID_FWD, hardsigmoid_fwd, 0, FA_OUT_STREAM, 0) \
    X(HARDSIGMOID_BWD, hardsigmoid_bwd, 1, FA_OUT_STREAM, 0) \
    X(HARDSWISH_FWD, hardswish_fwd, 0, FA_OUT_STREAM, 0) \
    X(HARDSWISH_BWD, hardswish_bwd, 1, FA_OUT_STREAM, 0) \
    X(HARDSHRINK_FWD, hardshrink_fwd, 0, FA_OUT_STREAM, 0) \
    X(HARDSHRINK_BWD, hardshrink_bwd, 1, FA_OUT_STREAM, 0) \
    X(SOFTSHRINK_FWD, softshrink_fwd, 0, FA_OUT_STREAM, 0) \
    X(SOFTSHRINK_BWD, softshrink_bwd, 1, FA_OUT_STREAM, 0) \
    X(THRESHOLD_FWD, threshold_fwd, 0, FA_OUT_STREAM, 0) \
    X(THRESHOLD_BWD, threshold_bwd, 1, FA_OUT_STREAM, 0) \
    X(SOFTSIGN_FWD, softsign_fwd, 0, FA_OUT_STREAM, 0) \
    X(SOFTSIGN_BWD, softsign_bwd, 1, FA_OUT_STREAM, 0) \
    X(SILU_FWD, silu_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(SILU_BWD, silu_bwd, 1, FA_OUT_PREFETCH, 1) \
    X(TANH_FWD, tanh_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(TANH_BWD, tanh_bwd, 1, FA_OUT_STREAM, 0) \
    X(SELU_FWD, selu_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(SELU_BWD, selu_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(SELU_BWDY, selu_bwdy, 1, FA_OUT_STREAM, 0) \
    X(CELU_FWD, celu_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(CELU_BWD, celu_bwd, 1, FA_OUT_PREFETCH, 1) \
    X(CELU_BWDY, celu_bwdy, 1, FA_OUT_STREAM, 0) \
    X(MISH_FWD, mish_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(MISH_BWD, mish_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(TANHSHRINK_FWD, tanhshrink_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(TANHSHRINK_BWD, tanhshrink_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(SOFTPLUS_FWD, softplus_fwd, 0, FA_OUT_STREAM, 0) \
    X(SOFTPLUS_BWD, softplus_bwd, 1, FA_OUT_PREFETCH, 1) \
    X(LOGSIGMOID_FWD, logsigmoid_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(LOGSIGMOID_BWD, logsigmoid_bwd, 1, FA_OUT_PREFETCH, 1) \
    X(GELU_TANH_FWD, gelu_tanh_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(GELU_TANH_BWD, gelu_tanh_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(GELU_FWD, gelu_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(GELU_BWD, gelu_bwd, 1, FA_OUT_PREFETCH, 0) \
    X(SQUAREPLUS_FWD, squareplus_fwd, 0, FA_OUT_PREFETCH, 0) \
    X(SQUAREPLUS_BWD, squareplus_bwd, 1, FA_OUT_PREFETCH, 0)

/* X(NAME, name, negate, log, fwd_out, bwd_out) for every row-wise op (the
   softmax family; fastact/_spec.py: Row): kernels FA_K_<NAME>_FWD/_BWD,
   rows of -x where negate, log-probabilities where log */
#define FA_ROW_FAMILY(X) \
    X(SOFTMAX, softmax, 0, 0, FA_OUT_PREFETCH, FA_OUT_STREAM) \
    X(LOG_SOFTMAX, log_softmax, 0, 1, FA_OUT_PREFETCH, FA_OUT_REGULAR) \
    X(SOFTMIN, softmin, 1, 0, FA_OUT_PREFETCH, FA_OUT_STREAM)

/* X(NAME, name, act, swap, complement, saves_y, fwd_out) for every gated op
   (fastact/_spec.py: Gated): kernels FA_K_<NAME>_FWD/_BWD composing the
   formulas N_(act_fwd), N_(act_bwd) as fastact/_ops/gated.py does */
#define FA_GATED_FAMILY(X) \
    X(GLU, glu, sigmoid, 1, 1, 1, FA_OUT_PREFETCH) \
    X(REGLU, reglu, relu, 0, 0, 1, FA_OUT_STREAM) \
    X(GEGLU, geglu, gelu, 0, 0, 0, FA_OUT_PREFETCH) \
    X(GEGLU_TANH, geglu_tanh, gelu_tanh, 0, 0, 0, FA_OUT_PREFETCH) \
    X(SWIGLU, swiglu, silu, 0, 0, 0, FA_OUT_PREFETCH)

#endif /* FASTACT_OPS_H */
