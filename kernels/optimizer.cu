// optimizer.cu -- one launch updates the whole flat parameter buffer (weights first, biases after).
// Twins: mlp_xp/functions/optimizers.py. Regularization acts on the weight prefix [0, n_w) only:
//     G = dL/dW + l2 W + l1 sign(W)

template <typename T>
__device__ __forceinline__ T k_regularized(T grad, T w, long long i, long long n_w, T l2, T l1) {
    if (i >= n_w) return grad;
    const T sign = w > (T)0 ? (T)1 : (w < (T)0 ? (T)-1 : (T)0);
    return grad + l2 * w + l1 * sign;
}

// sgd:       W <- W - lr G                           (v == nullptr)
// momentum:  V <- mu V + G;  W <- W - lr V
// nesterov:  V <- mu V + G;  W <- W - lr (G + mu V)
// accumulated momentum: the backward pass already wrote mu V + dL/dW into v (g is unused, may be nullptr);
//            V <- v + penalties;  W <- W - lr V
template <typename T>
__global__ void sgd_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v, long long n, long long n_w,
                           T lr, T mu, int nesterov, T l2, T l1, int accumulated) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T w = p[i];
        if (accumulated) {
            const T V = k_regularized(v[i], w, i, n_w, l2, l1);
            v[i] = V;
            p[i] = w - lr * V;
            continue;
        }
        const T G = k_regularized(g[i], w, i, n_w, l2, l1);
        T step = G;
        if (v != nullptr) {
            const T V = mu * v[i] + G;
            v[i] = V;
            step = nesterov ? G + mu * V : V;
        }
        p[i] = w - lr * step;
    }
}

// adam: m <- b1 m + (1 - b1) G;  v <- b2 v + (1 - b2) G^2;  W <- W - lr (m c1) / (sqrt(v c2) + eps)
// with the bias corrections c1 = 1 / (1 - b1^t), c2 = 1 / (1 - b2^t) computed on the host.
template <typename T>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            long long n, long long n_w, T lr, T b1, T b2, T eps, T c1, T c2, T l2, T l1) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T w = p[i];
        const T G = k_regularized(g[i], w, i, n_w, l2, l1);
        const T M = b1 * m[i] + ((T)1 - b1) * G;
        const T V = b2 * v[i] + ((T)1 - b2) * G * G;
        m[i] = M;
        v[i] = V;
        p[i] = w - lr * c1 * M / (k_sqrt(V * c2) + eps);
    }
}
