# cython: language_level=3
# Declarations of the plain C kernels in csrc/lenet.h.
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t

cdef extern from "lenet.h" nogil:
    enum:
        LENET_OK
        LENET_ERR_SIZE
        LENET_ERR_ARG
        LENET_ERR_LABEL
        LENET_ERR_NULL
        LENET_ERR_WORKSPACE
        LENET_ERR_ISA
        LENET_ERR_NONFINITE
        LENET_ISA_PORTABLE
        LENET_ISA_AVX2
        LENET_ISA_AVX512
        LENET_NISA
        LENET_HEAD_SOFTMAX
        LENET_HEAD_RBF
        LENET_NPARAMS
        LENET_NACTS
        LENET_OFF_C1_W
        LENET_OFF_C1_B
        LENET_OFF_S2_W
        LENET_OFF_S2_B
        LENET_OFF_C3_W
        LENET_OFF_C3_B
        LENET_OFF_S4_W
        LENET_OFF_S4_B
        LENET_OFF_C5_W
        LENET_OFF_C5_B
        LENET_OFF_F6_W
        LENET_OFF_F6_B
        LENET_OFF_OUT_W
        LENET_OFF_OUT_B
        LENET_ACT_C1
        LENET_ACT_S2
        LENET_ACT_C3
        LENET_ACT_S4
        LENET_ACT_C5
        LENET_ACT_F6
        LENET_ACT_OUT

    const float LENET_RBF_J   # the RBF loss's constant j (a float macro)

    ctypedef struct lenet_net:
        const float *params
        const int32_t *c3_out
        const int32_t *c3_in
        int head
        int isa

    int lenet_isa_compiled(int isa)
    int lenet_isa_supported(int isa)
    int lenet_best_isa()
    const char *lenet_isa_name(int isa)

    int lenet_conv5x5_forward(float *out, const float *inp, const float *w, const float *b,
                              int64_t N, int C, int M, int H, int W, int nthreads)
    int lenet_conv5x5_backward(float *din, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, int64_t N, int C, int M, int H, int W)
    int lenet_c3_forward(float *out, const float *inp, const float *w, const float *b,
                         const int32_t *pout, const int32_t *pin, int P, int64_t N, int C, int M,
                         int H, int W, int nthreads)
    int lenet_c3_backward(float *din, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const int32_t *pout, const int32_t *pin, int P, int64_t N,
                          int C, int M, int H, int W)
    int lenet_subsample_forward(float *out, const float *inp, const float *coef, const float *bias,
                                int64_t N, int C, int H, int W, int nthreads)
    int lenet_subsample_backward(float *din, float *dcoef, float *dbias, const float *dout,
                                 const float *inp, const float *coef, int64_t N, int C, int H, int W)
    int lenet_subsample_backward2(float *hin, float *hcoef, float *hbias, const float *hout,
                                  const float *inp, const float *coef, int64_t N, int C, int H, int W)
    int lenet_squash_forward(float *out, const float *inp, int64_t n)
    int lenet_squash_forward_isa(float *out, const float *inp, int64_t n, int isa)
    int lenet_digits_gather(float *out, const uint8_t *digits, const int64_t *index,
                            const int8_t *shift, int64_t B, int64_t N)
    int lenet_warp_rows_forward(float *out, const float *inp, const float *ax, const float *axy,
                                const float *ayy, const float *offx, const float *offy,
                                float background, int64_t N, int H, int W, float *workspace)
    int lenet_squash_backward(float *din, const float *dout, const float *out, int64_t n)
    int lenet_squash_backward2(float *hin, const float *hout, const float *out, int64_t n)
    int lenet_dense_forward(float *out, const float *inp, const float *w, const float *b,
                            int64_t N, int K, int M, int nthreads)
    int lenet_dense_backward(float *din, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, int64_t N, int K, int M)
    int lenet_rbf_forward(float *out, const float *inp, const float *proto, int64_t N, int K, int M,
                          int nthreads)
    int lenet_rbf_backward(float *din, const float *dout, const float *inp, const float *proto,
                           int64_t N, int K, int M)
    int lenet_softmax_forward(float *probs, const float *inp, float sign, int64_t N, int M)
    int lenet_xent_forward(float *losses, const float *logits, const int32_t *labels, int64_t N, int M)
    int lenet_xent_backward(float *dlogits, const float *logits, const int32_t *labels, float scale,
                            int64_t N, int M)
    int lenet_rbfloss_forward(float *losses, const float *y, const int32_t *labels, float j,
                              int64_t N, int M)
    int lenet_rbfloss_backward(float *dy, const float *y, const int32_t *labels, float j, float scale,
                               int64_t N, int M)
    int lenet_sgd_update(float *p, float *v, const float *g, const uint8_t *mask, float lr,
                         float momentum, float decay, int64_t n)
    int lenet_sgd_update_isa(float *p, float *v, const float *g, const uint8_t *mask, float lr,
                             float momentum, float decay, int64_t n, int isa)

    size_t lenet_forward_workspace_size(int nthreads)
    int lenet_forward(float *out, float *acts, const lenet_net *net, const float *x, int64_t N,
                      int nthreads, float *workspace, size_t workspace_floats)
    int lenet_forward_checked(float *out, float *acts, const lenet_net *net, const float *x,
                              int64_t N, int nthreads, int check_finite, float *workspace,
                              size_t workspace_floats)
    size_t lenet_grad_workspace_size(int64_t N, int nthreads)
    int lenet_sgd_train_step(float *params, float *velocity, float *losses, float *out,
                             const uint8_t *mask, float lr, float momentum, float decay,
                             const lenet_net *net, const float *x, const int32_t *labels,
                             float scale, int64_t N, int nthreads, float *workspace,
                             size_t workspace_floats)
    int lenet_loss_grad(float *grad, float *losses, float *out, const lenet_net *net,
                        const float *x, const int32_t *labels, float scale, int64_t N,
                        int nthreads, float *workspace, size_t workspace_floats)
    size_t lenet_hessian_workspace_size()
    int lenet_hessian_diag(float *h, const lenet_net *net, const float *x, const int32_t *labels,
                           float scale, int64_t N, float *workspace, size_t workspace_floats)
    size_t lenet_sdlm_workspace_size()
    int lenet_sdlm_epoch(float *params, float *losses, const int32_t *c3_out,
                         const int32_t *c3_in, int head, int isa, const float *step, const float *x,
                         const int32_t *labels, const int64_t *order, int64_t N, int64_t total,
                         float *workspace, size_t workspace_floats)

cdef extern from "q8.h" nogil:
    enum:
        LENET_ISA_AVX512VNNI
        LENET_Q8_NW
        LENET_Q8_NZ
        LENET_Q8_NF
        LENET_Q8_NQA
        LENET_Q8_OFF_W1
        LENET_Q8_OFF_W3
        LENET_Q8_OFF_W5
        LENET_Q8_OFF_W6
        LENET_Q8_OFF_Z1
        LENET_Q8_OFF_Z3
        LENET_Q8_OFF_Z5
        LENET_Q8_OFF_Z6
        LENET_Q8_OFF_MUL1
        LENET_Q8_OFF_B1
        LENET_Q8_OFF_S2C
        LENET_Q8_OFF_S2B
        LENET_Q8_OFF_MUL3
        LENET_Q8_OFF_B3
        LENET_Q8_OFF_S4C
        LENET_Q8_OFF_S4B
        LENET_Q8_OFF_MUL5
        LENET_Q8_OFF_B5
        LENET_Q8_OFF_MUL6
        LENET_Q8_OFF_B6
        LENET_Q8_OFF_OUTW
        LENET_Q8_OFF_OUTB
        LENET_Q8_OFF_INV2
        LENET_Q8_OFF_INV4
        LENET_Q8_OFF_INV5
        LENET_Q8_QA_C1
        LENET_Q8_QA_C3
        LENET_Q8_QA_C5
        LENET_Q8_QA_F6
        LENET_Q8_QA_IN
        LENET_Q8_QA_S2
        LENET_Q8_QA_S4
        LENET_Q8_QA_C5Q
        LENET_Q8_C5M
        LENET_Q8_F6M
        LENET_Q8_KBYTES

    ctypedef struct lenet_qnet:
        const int8_t *w
        const int32_t *zw
        const float *f
        const int32_t *c3_out
        const int32_t *c3_in
        int head
        int isa

    int lenet_q8_compiled(int isa)
    int lenet_q8_supported(int isa)
    int lenet_q8_best_isa()
    size_t lenet_q8_workspace_size(int nthreads)
    int lenet_q8_forward(float *out, int32_t *qa, const lenet_qnet *qn, const float *x, int64_t N,
                         int nthreads, unsigned char *workspace, size_t workspace_bytes)
