// cpu.cpp -- the CPU backend's elementwise work, one compiled call per op instead of a dozen NumPy calls.
// Built at first use by the machine's C++ compiler (mlp_xp/backend/cpu_kernels.py), loaded with ctypes.
// Twins: the same NumPy functions as the .cu kernels (mlp_xp/functions), and the same contracts.
//
// Why compiled loops on the CPU at all: a training step alternates GEMMs with short elementwise passes,
// and each GEMM streams megabytes through the core's caches. Every NumPy call right after one runs its
// dispatch code cold (measured here: a 10-element np.add takes 13 us after a 128x784x512 GEMM, 1.3 us
// before), so the softmax cross-entropy's twenty NumPy calls on 128 x 10 logits take 140 us after a GEMM,
// and this file's one loop over them 40 us.
//
// common.cuh (the activation table shared with the GPU kernels) is included after the few CUDA words it
// uses are defined away, so the CPU and the GPU apply one definition of g(z) and g'(z).
#include <math.h>  // common.cuh calls expf, tanhf, ... unqualified
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#define __device__
#define __forceinline__ inline
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::exp; using std::log; using std::log1p; using std::tanh; using std::sqrt;
#include "common.cuh"

typedef long long i64;

// z <- g(z + b) over a (rows x cols) batch; the activation is a template argument so that the switch in
// k_activate folds away and the inner loop vectorizes.
template <typename T, int ACT>
static void bias_act_rows(T* __restrict__ z, const T* __restrict__ b, i64 rows, i64 cols, T slope) {
    for (i64 r = 0; r < rows; ++r) {
        T* __restrict__ zr = z + r * cols;
        for (i64 c = 0; c < cols; ++c) zr[c] = k_activate(zr[c] + b[c], ACT, slope);
    }
}

template <typename T>
static void bias_act(T* z, const T* b, i64 rows, i64 cols, int act, T slope) {
    switch (act) {
        case ACT_RELU: bias_act_rows<T, ACT_RELU>(z, b, rows, cols, slope); break;
        case ACT_LEAKY_RELU: bias_act_rows<T, ACT_LEAKY_RELU>(z, b, rows, cols, slope); break;
        case ACT_SIGMOID: bias_act_rows<T, ACT_SIGMOID>(z, b, rows, cols, slope); break;
        case ACT_TANH: bias_act_rows<T, ACT_TANH>(z, b, rows, cols, slope); break;
        default: bias_act_rows<T, ACT_IDENTITY>(z, b, rows, cols, slope); break;
    }
}

// dh <- dh * g'(z), with g' read off the layer's output h.
template <typename T, int ACT>
static void act_bwd_n(T* __restrict__ dh, const T* __restrict__ h, i64 n, T slope) {
    for (i64 e = 0; e < n; ++e) dh[e] = dh[e] * k_derivative_from_output(h[e], ACT, slope);
}

template <typename T>
static void act_bwd(T* dh, const T* h, i64 n, int act, T slope) {
    switch (act) {
        case ACT_RELU: act_bwd_n<T, ACT_RELU>(dh, h, n, slope); break;
        case ACT_LEAKY_RELU: act_bwd_n<T, ACT_LEAKY_RELU>(dh, h, n, slope); break;
        case ACT_SIGMOID: act_bwd_n<T, ACT_SIGMOID>(dh, h, n, slope); break;
        case ACT_TANH: act_bwd_n<T, ACT_TANH>(dh, h, n, slope); break;
        default: break;
    }
}

// db[c] <- sum over rows of g[r, c] (+ beta db[c]); rows are added in order, one column-vector at a time.
template <typename T>
static void bias_grad(const T* __restrict__ g, T* __restrict__ db, i64 rows, i64 cols, T beta) {
    if (beta == (T)0) {
        for (i64 c = 0; c < cols; ++c) db[c] = (T)0;
    } else {
        for (i64 c = 0; c < cols; ++c) db[c] *= beta;
    }
    for (i64 r = 0; r < rows; ++r) {
        const T* __restrict__ gr = g + r * cols;
        for (i64 c = 0; c < cols; ++c) db[c] += gr[c];
    }
}

// softmax + cross-entropy, the contract of softmax_xent in loss.cu, one row at a time:
//   loss_r = w[y_r] (lse_r - sum_c q_rc z_rc),  q_r = (1 - eps) onehot(y_r) + eps / C
//   z_r <- dL/dz_r = w[y_r] (softmax(z_r) - q_r) / rows  (write_grad),  else z_r <- softmax(z_r)
//   acc[0] += sum of loss_r, acc[1] += rows whose first maximum is at y_r; labels == nullptr: only p.
// A label outside [0, C) is never used as an index: its loss is NaN and its gradient row zero.
template <typename T>
static void softmax_xent(T* __restrict__ z, const int* __restrict__ labels, const T* __restrict__ class_weight,
                         double* __restrict__ acc, i64 rows, i64 C, int write_grad, T smoothing) {
    if (C <= 0) return;  // no logits: nothing to read (the backend never sends this; the twin raises)
    double loss_sum = 0.0, hits = 0.0;
    const bool grad = write_grad && labels != nullptr;
    const T off_label = smoothing / (T)C, on_label = (T)1 - smoothing + smoothing / (T)C;
    for (i64 r = 0; r < rows; ++r) {
        T* __restrict__ zr = z + r * C;
        int yr = -1;
        bool valid = false;
        T wy = (T)1, zy = (T)0;
        if (labels != nullptr) {
            yr = labels[r];
            valid = yr >= 0 && yr < C;
            if (valid && class_weight != nullptr) wy = class_weight[yr];
            if (valid) zy = zr[yr];
        }
        T m = zr[0], zs = (T)0;
        i64 am = 0;
        for (i64 c = 0; c < C; ++c) {
            const T x = zr[c];
            if (x > m) { m = x; am = c; }
            zs += x;
        }
        // p = exp(x - max) / sum (see loss.cu for why not exp(x - lse)); exp(x - max) lands in z itself.
        T s = (T)0;
        for (i64 c = 0; c < C; ++c) {
            const T e = k_exp(zr[c] - m);
            zr[c] = e;
            s += e;
        }
        const T inv_sum = (T)1 / s;
        if (valid) {
            // lse - sum_c q_c z_c, arranged so that no two large numbers are subtracted (as in loss.cu)
            const T lse_minus_target =
                k_log(s) + ((T)1 - smoothing) * (m - zy) + smoothing / (T)C * ((T)C * m - zs);
            loss_sum += (double)(wy * lse_minus_target);
            hits += am == yr ? 1.0 : 0.0;
        } else if (labels != nullptr) {
            loss_sum += (double)k_neg_inf<T>() * 0.0;  // NaN: a bad label must not pass silently
        }
        if (grad) {
            const T scale = valid ? wy / (T)rows : (T)0;
            for (i64 c = 0; c < C; ++c) zr[c] = scale * (zr[c] * inv_sum - (c == yr ? on_label : off_label));
        } else {
            for (i64 c = 0; c < C; ++c) zr[c] *= inv_sum;
        }
    }
    if (labels != nullptr) {
        acc[0] += loss_sum;
        acc[1] += hits;
    }
}

// Subnormal numbers (|x| < 1.2e-38 in float32) cost the CPU a microcode assist per arithmetic operation, and
// momentum manufactures them: the velocity of a weight whose gradient stays zero (an input pixel that is
// always blank) decays by mu every step, through the subnormal range, in the GEMM that accumulates mu V and
// in the update. Measured on MNIST-shaped data: 9% of V subnormal at any time, and the gradient GEMM of the
// first layer 50% slower for it. The CPU backend therefore sets them to zero now and then. What that changes:
// lr V below 1e-38 is under half an ulp of any weight with |W| > 2e-31 (float32; lr <= 1), so such weights
// move exactly as before; and a zeroed V differs from the subnormal one only where later gradients are below
// about 1e-31. Weights and gradients that small are not a trained MLP's working range.
template <typename T>
static void flush_subnormals(T* __restrict__ a, i64 n) {
    const T tiny = std::numeric_limits<T>::min();
    for (i64 i = 0; i < n; ++i) a[i] = std::fabs(a[i]) < tiny ? (T)0 : a[i];
}

// adam (the contract of adam_update in optimizer.cu):
//   G = dL/dW + l2 W + l1 sign(W) on weights;  m <- b1 m + (1 - b1) G;  v <- b2 v + (1 - b2) G^2;
//   W <- W - lr (m c1) / (sqrt(v c2) + eps),  with c1 = 1 / (1 - b1^t), c2 = 1 / (1 - b2^t) from the host.
// One pass instead of NumPy's thirteen. m decays by b1 like momentum's V, so its subnormals are set to zero
// as it is stored (free here, where m is written anyway): with eps = 1e-8 such an m makes a step below
// 1e-29 lr c1, under half an ulp of any weight larger than about 1e-21 lr c1 (float32). v is left exact:
// sqrt(v) + eps does not see a subnormal v.
template <typename T, bool PENALIZED>
static void adam_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v, i64 n,
                       T lr, T b1, T b2, T eps, T c1, T c2, T l2, T l1) {
    const T tiny = std::numeric_limits<T>::min();
    for (i64 i = 0; i < n; ++i) {
        const T w = p[i];
        T G = g[i];
        if (PENALIZED) G += l2 * w + l1 * (w > (T)0 ? (T)1 : (w < (T)0 ? (T)-1 : (T)0));
        T M = b1 * m[i] + ((T)1 - b1) * G;
        M = std::fabs(M) < tiny ? (T)0 : M;
        const T V = b2 * v[i] + ((T)1 - b2) * G * G;
        m[i] = M;
        v[i] = V;
        p[i] = w - lr * c1 * M / (std::sqrt(V * c2) + eps);
    }
}

template <typename T>
static void adam_update(T* p, const T* g, T* m, T* v, i64 n, i64 n_w, T lr, T b1, T b2, T eps, T c1, T c2, T l2,
                        T l1) {
    if (l2 != (T)0 || l1 != (T)0) {
        adam_range<T, true>(p, g, m, v, n_w, lr, b1, b2, eps, c1, c2, l2, l1);
    } else {
        adam_range<T, false>(p, g, m, v, n_w, lr, b1, b2, eps, c1, c2, l2, l1);
    }
    adam_range<T, false>(p + n_w, g + n_w, m + n_w, v + n_w, n - n_w, lr, b1, b2, eps, c1, c2, l2, l1);
}

// The exported names: <op>_f32 and <op>_f64, called through ctypes (argument types in cpu_kernels.py).
#define MLP_XP_EXPORT(T, SUFFIX)                                                                              \
    extern "C" void bias_act_##SUFFIX(T* z, const T* b, i64 rows, i64 cols, int act, T slope) {                \
        bias_act<T>(z, b, rows, cols, act, slope);                                                            \
    }                                                                                                         \
    extern "C" void act_bwd_##SUFFIX(T* dh, const T* h, i64 n, int act, T slope) { act_bwd<T>(dh, h, n, act, slope); } \
    extern "C" void bias_grad_##SUFFIX(const T* g, T* db, i64 rows, i64 cols, T beta) {                       \
        bias_grad<T>(g, db, rows, cols, beta);                                                                \
    }                                                                                                         \
    extern "C" void softmax_xent_##SUFFIX(T* z, const int* y, const T* w, double* acc, i64 rows, i64 C,       \
                                          int write_grad, T smoothing) {                                      \
        softmax_xent<T>(z, y, w, acc, rows, C, write_grad, smoothing);                                        \
    }                                                                                                         \
    extern "C" void adam_update_##SUFFIX(T* p, const T* g, T* m, T* v, i64 n, i64 n_w, T lr, T b1, T b2, T eps,  \
                                         T c1, T c2, T l2, T l1) {                                            \
        adam_update<T>(p, g, m, v, n, n_w, lr, b1, b2, eps, c1, c2, l2, l1);                                  \
    }                                                                                                         \
    extern "C" void flush_subnormals_##SUFFIX(T* a, i64 n) { flush_subnormals<T>(a, n); }

MLP_XP_EXPORT(float, f32)
MLP_XP_EXPORT(double, f64)
