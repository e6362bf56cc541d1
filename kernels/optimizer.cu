// optimizer.cu -- one launch updates the whole flat parameter buffer (weights first, biases after).
// Reference: mlp_xp/reference/optimizer.py (sgd_update, adam_update). Regularization acts on the weight prefix
// [0, n_weights) only (common.cuh's k_regularized): G = dL/dW + l2 W + l1 sign(W).

// sgd:       W <- W - lr G                           (v == nullptr)
// momentum:  V <- momentum V + G;  W <- W - lr V
// nesterov:  V <- momentum V + G;  W <- W - lr (G + momentum V)
// folded momentum: the backward pass already wrote momentum V + dL/dW into v (g is unused, may be nullptr);
//            V <- v + penalties;  W <- W - lr V
template <typename T>
__global__ void sgd_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v, long long n,
                           long long n_weights, T lr, T momentum, int nesterov, T l2, T l1, int folded) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T w = p[i];
        const T grad = folded ? v[i] : g[i];
        const T G = i < n_weights ? k_regularized(grad, w, l2, l1) : grad;
        if (folded) {
            v[i] = G;
            p[i] = w - lr * G;
            continue;
        }
        T step = G;
        if (v != nullptr) {
            const T V = momentum * v[i] + G;
            v[i] = V;
            step = nesterov ? G + momentum * V : V;
        }
        p[i] = w - lr * step;
    }
}

// adam: common.cuh's k_adam_step for every parameter, with the bias corrections c1, c2 from the host.
template <typename T>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            long long n, long long n_weights, T lr, T beta1, T beta2, T eps, T c1, T c2, T l2, T l1) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        T w = p[i], mi = m[i], vi = v[i];
        const T G = i < n_weights ? k_regularized(g[i], w, l2, l1) : g[i];
        k_adam_step<false>(w, G, mi, vi, lr, beta1, beta2, eps, c1, c2);
        p[i] = w;
        m[i] = mi;
        v[i] = vi;
    }
}
