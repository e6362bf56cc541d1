// activation.cu -- a layer's elementwise work: bias + activation forward, activation backward, bias gradient.
// Twins: mlp_xp/functions/activations.py (bias_act_forward, act_backward) and numpy.sum(g, axis=0).

// z <- g(z + b), in place over a (rows x cols) batch; one thread per element, grid-stride.
template <typename T>
__global__ void bias_act_fwd(T* __restrict__ z, const T* __restrict__ b, long long rows, int cols, int act,
                             T slope) {
    const long long n = rows * cols;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        z[e] = k_activate(z[e] + b[e % cols], act, slope);
    }
}

// dh <- dh * g'(z), in place, with g' read off the layer's output h (for ReLU: dh where h > 0, else 0).
template <typename T>
__global__ void act_bwd(T* __restrict__ dh, const T* __restrict__ h, long long n, int act, T slope) {
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        dh[e] = dh[e] * k_derivative_from_output(h[e], act, slope);
    }
}

// db[c] <- sum over rows of g[r, c] (+ beta db[c]). A block is 32 columns x blockDim.y row stripes:
// neighbouring threads read neighbouring columns (coalesced), and the stripes are summed in a fixed
// order in shared memory, so the result does not depend on scheduling.
template <typename T>
__global__ void bias_grad(const T* __restrict__ g, T* __restrict__ db, long long rows, int cols, T beta) {
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
        db[c] = beta == (T)0 ? total : beta * db[c] + total;
    }
}
