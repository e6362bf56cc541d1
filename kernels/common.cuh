// common.cuh -- helpers shared by the mlp_xp kernels.
//
// The loader pastes this text in front of each .cu file instead of letting NVRTC #include it: CuPy's
// kernel cache keys on the source it is given, so an #included header that changed would not be seen.
// Everything here is also valid host C++ for the CPU harness (tests/cuda_host), which runs the same text.

// Activation codes; the Python side (mlp_xp/functions/activations.py) uses the same numbers.
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

// -infinity without the INFINITY macro, which NVRTC does not define.
template <typename T> __device__ __forceinline__ T k_neg_inf() { return (T)(-__int_as_float(0x7f800000)); }

// h = g(z) for the hidden activations (mlp_xp/functions/activations.py holds the same table).
template <typename T>
__device__ __forceinline__ T k_activate(T z, int act, T slope) {
    switch (act) {
        // written so that a NaN passes through, as in NumPy's maximum: divergence must stay visible
        case ACT_RELU: return z < (T)0 ? (T)0 : z;
        case ACT_LEAKY_RELU: return z < (T)0 ? slope * z : z;
        case ACT_SIGMOID: return (T)0.5 * ((T)1 + k_tanh((T)0.5 * z));  // never overflows
        case ACT_TANH: return k_tanh(z);
        default: return z;
    }
}

// g'(z) read off the output h = g(z).
template <typename T>
__device__ __forceinline__ T k_derivative_from_output(T h, int act, T slope) {
    switch (act) {
        case ACT_RELU: return h > (T)0 ? (T)1 : (T)0;
        case ACT_LEAKY_RELU: return h > (T)0 ? (T)1 : slope;
        case ACT_SIGMOID: return h * ((T)1 - h);
        case ACT_TANH: return (T)1 - h * h;
        default: return (T)1;
    }
}
