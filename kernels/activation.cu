// activation.cu -- a layer's elementwise work: bias + activation, activation backward, bias gradient.
// Reference: mlp_xp/reference/layer.py (bias_act, act_backward, bias_grad); g and g' are common.cuh's.

// z <- g(z + b), in place over a (rows x cols) batch; one thread per element, grid-stride.
template <typename T>
__global__ void bias_act(T* __restrict__ z, const T* __restrict__ b, long long rows, int cols, int act, T slope) {
    const long long n = rows * cols;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        z[e] = k_activate(z[e] + b[e % cols], act, slope);
    }
}

// dh <- dh * g'(z), in place, with g' read off the layer's output h (for ReLU: dh where h > 0, else 0).
template <typename T>
__global__ void act_backward(T* __restrict__ dh, const T* __restrict__ h, long long n, int act, T slope) {
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        dh[e] = dh[e] * k_derivative(h[e], act, slope);
    }
}

// db[c] <- sum over rows of g[r, c] (+ accumulate db[c]). A block is 32 columns x blockDim.y row stripes:
// neighbouring threads read neighbouring columns (coalesced), and the stripes are summed in a fixed
// order in shared memory, so the result does not depend on scheduling.
template <typename T>
__global__ void bias_grad(const T* __restrict__ g, T* __restrict__ db, long long rows, int cols, T accumulate) {
    __shared__ T part[8][32];
    const int c = blockIdx.x * 32 + threadIdx.x;
    T s = (T)0;
    if (c < cols)
        for (long long r = threadIdx.y; r < rows; r += blockDim.y) s += g[r * cols + c];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        T total = (T)0;
        for (int k = 0; k < (int)blockDim.y; ++k) total += part[k][threadIdx.x];
        db[c] = accumulate == (T)0 ? total : accumulate * db[c] + total;
    }
}
