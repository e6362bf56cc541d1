// common.cuh -- the formulas the CUDA kernels (kernels/*.cu) and the CPU loops (kernels/cpu.cpp) share, written
// once: the activations and their derivatives, the softmax cross-entropy of a row, the regularized gradient,
// Adam's step. Each names its reference in mlp_xp/reference, the readable NumPy that every implementation is
// tested against.
//
// The loader pastes this text in front of each .cu file instead of letting NVRTC #include it: CuPy's
// kernel cache keys on the source it is given, so an #included header that changed would not be seen.
// Everything here is also valid host C++ (cpu.cpp includes it; the CPU harness in tests/cuda_host runs the
// .cu files with it).

// Activation codes; mlp_xp/backend/kernels.py (ACTIVATION_CODES) uses the same numbers.
#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_LEAKY_RELU 2
#define ACT_SIGMOID 3
#define ACT_TANH 4

// Math in the kernel's precision: float calls stay float (expf, not exp) and double stays double.
__device__ __forceinline__ float k_exp(float x) { return expf(x); }
__device__ __forceinline__ double k_exp(double x) { return exp(x); }
__device__ __forceinline__ float k_log(float x) { return logf(x); }
__device__ __forceinline__ double k_log(double x) { return log(x); }
__device__ __forceinline__ float k_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double k_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float k_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double k_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float k_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double k_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float k_fabs(float x) { return fabsf(x); }
__device__ __forceinline__ double k_fabs(double x) { return fabs(x); }

// -infinity without the INFINITY macro, which NVRTC does not define.
template <typename T> __device__ __forceinline__ T k_neg_inf() { return (T)(-__int_as_float(0x7f800000)); }
// The smallest normal number (FLT_MIN, DBL_MIN: NVRTC has no <cfloat>); below it a number is subnormal.
template <typename T> __device__ __forceinline__ T k_tiny();
template <> __device__ __forceinline__ float k_tiny<float>() { return 1.17549435082228750797e-38f; }
template <> __device__ __forceinline__ double k_tiny<double>() { return 2.2250738585072013831e-308; }

// ---- a layer (reference: mlp_xp/reference/layer.py activate, derivative) ----

// h = g(z) for the hidden activations.
template <typename T>
__device__ __forceinline__ T k_activate(T z, int act, T slope) {
    switch (act) {
        // written so that a NaN passes through, as in NumPy's maximum: divergence must stay visible
        case ACT_RELU: return z < (T)0 ? (T)0 : z;
        case ACT_LEAKY_RELU: return z < (T)0 ? slope * z : z;
        case ACT_SIGMOID: return (T)0.5 * ((T)1 + k_tanh((T)0.5 * z));  // = 1 / (1 + e^-z), never overflows
        case ACT_TANH: return k_tanh(z);
        default: return z;
    }
}

// g'(z) read off the output h = g(z). dh * g'(h) is the IEEE product, NaN and infinity included (act_backward in
// mlp_xp/reference/layer.py says what that gives); cpu.cpp builds ReLU's g' with bit operations, the same value.
template <typename T>
__device__ __forceinline__ T k_derivative(T h, int act, T slope) {
    switch (act) {
        case ACT_RELU: return h > (T)0 ? (T)1 : (T)0;
        case ACT_LEAKY_RELU: return h > (T)0 ? (T)1 : slope;
        case ACT_SIGMOID: return h * ((T)1 - h);
        case ACT_TANH: return (T)1 - h * h;
        default: return (T)1;
    }
}

// ---- softmax cross-entropy of one row (reference: mlp_xp/reference/loss.py softmax_xent) ----

// loss = lse - sum_c q_c z_c with q = (1 - eps) onehot(y) + eps / C, given the row's maximum m, log s with
// s = sum_c exp(z_c - m) (so lse = m + log s), the label's logit zy and the sum of the logits zsum; arranged so
// that no two large numbers are subtracted. (The class weight multiplies it outside.)
template <typename T>
__device__ __forceinline__ T k_xent_row_loss(T log_s, T m, T zy, T zsum, int C, T smoothing) {
    return log_s + ((T)1 - smoothing) * (m - zy) + smoothing / (T)C * ((T)C * m - zsum);
}

// The smoothed one-hot target q: q_label at the label's column, q_other everywhere else.
template <typename T>
struct XentTarget {
    T q_label, q_other;
};
template <typename T>
__device__ __forceinline__ XentTarget<T> k_xent_target(T smoothing, int C) {
    return XentTarget<T>{(T)1 - smoothing + smoothing / (T)C, smoothing / (T)C};
}

// dL/dz_c = scale (p_c - q_c), with scale = w[y] / B (0 for a row whose label is out of range).
template <typename T>
__device__ __forceinline__ T k_xent_grad(T p, bool at_label, T scale, XentTarget<T> q) {
    return scale * (p - (at_label ? q.q_label : q.q_other));
}

// ---- updates (reference: mlp_xp/reference/optimizer.py) ----

// G = dL/dW + l2 W + l1 sign(W), for a weight (biases take dL/db as it is).
template <typename T>
__device__ __forceinline__ T k_regularized(T grad, T w, T l2, T l1) {
    const T sign = w > (T)0 ? (T)1 : (w < (T)0 ? (T)-1 : (T)0);
    return grad + l2 * w + l1 * sign;
}

// One Adam step of one parameter: m <- beta1 m + (1 - beta1) G;  v <- beta2 v + (1 - beta2) G^2;
// w <- w - lr (m c1) / (sqrt(v c2) + eps), with the bias corrections c1 = 1 / (1 - beta1^t), c2 = 1 / (1 - beta2^t).
// ZERO_SUBNORMAL_M stores a subnormal m as 0: the CPU loops set it, because there every operation on a subnormal
// costs a microcode assist (see cpu.cpp); the GPU kernels do not, because a GPU has no such cost (and CuPy compiles
// them with -ftz=true, which flushes float32 subnormals in arithmetic anyway). Either way a weight larger than about
// 1e-21 lr c1 moves the same (float32): the step such an m makes is under half an ulp of it.
template <bool ZERO_SUBNORMAL_M, typename T>
__device__ __forceinline__ void k_adam_step(T& w, T G, T& m, T& v, T lr, T beta1, T beta2, T eps, T c1, T c2) {
    T M = beta1 * m + ((T)1 - beta1) * G;
    if (ZERO_SUBNORMAL_M) M = k_fabs(M) < k_tiny<T>() ? (T)0 : M;
    const T V = beta2 * v + ((T)1 - beta2) * G * G;
    m = M;
    v = V;
    w = w - lr * c1 * M / (k_sqrt(V * c2) + eps);
}
