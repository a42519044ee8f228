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
    FA_K_ELU_FWD = 8,
    FA_K_ELU_BWD = 9,
    FA_K_SOFTPLUS_FWD = 10,
    FA_K_SOFTPLUS_BWD = 11,
    FA_K_LOGSIGMOID_FWD = 12,
    FA_K_LOGSIGMOID_BWD = 13,
    FA_K_GELU_TANH_FWD = 14,
    FA_K_GELU_TANH_BWD = 15,
    FA_K_GELU_FWD = 16,
    FA_K_GELU_BWD = 17,
    FA_K_ELEMENTWISE_COUNT = 18,
    FA_K_PRELU_FWD = 18,
    FA_K_PRELU_BWD = 19,
    FA_K_SOFTMAX_FWD = 20,
    FA_K_SOFTMAX_BWD = 21,
    FA_K_COUNT = 22
};
/* cdef end */

/* X(ID, stem, binary, out) for every elementwise kernel (see build.py) */
#define FA_ELEMENTWISE_KERNELS(X) \
    X(SIGMOID_FWD, sigmoid_fwd, 0, FA_OUT_PREFETCH) \
    X(SIGMOID_BWD, sigmoid_bwd, 1, FA_OUT_STREAM) \
    X(RELU_FWD, relu_fwd, 0, FA_OUT_STREAM) \
    X(RELU_BWD, relu_bwd, 1, FA_OUT_STREAM) \
    X(LEAKY_RELU_FWD, leaky_relu_fwd, 0, FA_OUT_STREAM) \
    X(LEAKY_RELU_BWD, leaky_relu_bwd, 1, FA_OUT_STREAM) \
    X(RRELU_TRAIN_FWD, rrelu_train_fwd, 0, FA_OUT_PREFETCH) \
    X(RRELU_TRAIN_BWD, rrelu_train_bwd, 1, FA_OUT_PREFETCH) \
    X(ELU_FWD, elu_fwd, 0, FA_OUT_PREFETCH) \
    X(ELU_BWD, elu_bwd, 1, FA_OUT_PREFETCH) \
    X(SOFTPLUS_FWD, softplus_fwd, 0, FA_OUT_PREFETCH) \
    X(SOFTPLUS_BWD, softplus_bwd, 1, FA_OUT_PREFETCH) \
    X(LOGSIGMOID_FWD, logsigmoid_fwd, 0, FA_OUT_PREFETCH) \
    X(LOGSIGMOID_BWD, logsigmoid_bwd, 1, FA_OUT_PREFETCH) \
    X(GELU_TANH_FWD, gelu_tanh_fwd, 0, FA_OUT_PREFETCH) \
    X(GELU_TANH_BWD, gelu_tanh_bwd, 1, FA_OUT_PREFETCH) \
    X(GELU_FWD, gelu_fwd, 0, FA_OUT_PREFETCH) \
    X(GELU_BWD, gelu_bwd, 1, FA_OUT_PREFETCH)

#endif /* FASTACT_OPS_H */
