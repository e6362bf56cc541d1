// data.cu -- epoch permutations and batch gathers, entirely on the device.
// Reference: mlp_xp/reference/data.py (shuffle_keys, gather_rows).

#define K_GAMMA 0x9E3779B97F4A7C15ULL

// SplitMix64's finalizer.
__device__ __forceinline__ unsigned long long k_mix64(unsigned long long x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

// key_i = mix(base + i GAMMA); argsort of the keys is the epoch's permutation. base = mix(mix(seed) ^ epoch)
// comes from the host, so the same (seed, epoch) gives the same permutation on every backend.
extern "C" __global__ void shuffle_keys(unsigned long long* __restrict__ keys, long long n, unsigned long long base) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        keys[i] = k_mix64(base + (unsigned long long)i * K_GAMMA);
    }
}

// xb[r, :] <- X[idx[r], :], yb[r, :] <- Y[idx[r], :] and, where W is not nullptr, wb[r] <- W[idx[r]] for
// r < rows, in one launch. X is (n x d) of T; Y is (n x k) of L (class labels: k = 1, L = int); W, the rows'
// weights, is (n) of T.
template <typename T, typename L>
__global__ void gather_rows(const T* __restrict__ X, const L* __restrict__ Y, const T* __restrict__ W,
                            const long long* __restrict__ idx, T* __restrict__ xb, L* __restrict__ yb,
                            T* __restrict__ wb, long long rows, int d, int k) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long e = start; e < rows * d; e += stride) {
        const long long r = e / d;
        xb[e] = X[idx[r] * d + (e - r * d)];
    }
    for (long long e = start; e < rows * k; e += stride) {
        const long long r = e / k;
        yb[e] = Y[idx[r] * k + (e - r * k)];
    }
    if (W == nullptr) return;
    for (long long r = start; r < rows; r += stride) wb[r] = W[idx[r]];
}
