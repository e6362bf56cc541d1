// loss.cu -- fused output layer + loss + dL/dz, with the batch's loss and hits summed on the device.
// Reference: mlp_xp/reference/loss.py (softmax_xent, sigmoid_bce, squared_error, output_act). Every kernel here:
//   * overwrites z with dL/dz when write_grad (training), else with the output p;
//   * adds (sum of row losses, correct rows or squared error) into acc[0], acc[1] (doubles);
//   * with labels == nullptr (prediction) only writes p.
// Per-row weights: row_weight may be nullptr (all ones); else row r's loss, hit (or squared error) is counted
// row_weight[r] times and its gradient row is row_weight[r] times the unweighted one. The gradient's denominator
// is the scalar divisor (the host passes the batch's rows when none is given), not the kernel's row count.
// Geometry of softmax_xent and sigmoid_bce: blockDim.x threads share a row (a power of two), blockDim.y rows
// share a block; the host picks blockDim.x from the row width (mlp_xp/backend/cupy_ops.py, row_geometry).

// Up to K_CACHE logits per thread stay in registers between the two passes, so a row of up to
// K_CACHE * blockDim.x (1024) logits is read from memory once; wider rows read their tail twice.
#define K_CACHE 4

// Where a thread of a row kernel stands: tx-th of the bx threads of row r, which is the ty-th row of its block.
struct RowThread {
    int tx, ty, bx, t;  // t: the thread's index in its block
    long long r;
    bool live;  // r < rows: the block's last rows may lie past the batch
};

__device__ __forceinline__ RowThread k_row_thread(long long rows) {
    RowThread th;
    th.tx = threadIdx.x;
    th.ty = threadIdx.y;
    th.bx = blockDim.x;
    th.t = th.ty * th.bx + th.tx;
    th.r = (long long)blockIdx.x * blockDim.y + th.ty;
    th.live = th.r < rows;
    return th;
}

// Combine two partial (max, sum of exp(x - max), argmax) triples into the first; ties keep the lower index.
template <typename T>
__device__ __forceinline__ void k_merge_softmax(T& m, T& s, int& a, T m2, T s2, int a2) {
    if (m2 > m || (m2 == m && a2 < a)) {
        T tm = m, ts = s;
        int ta = a;
        m = m2;
        s = s2;
        a = a2;
        m2 = tm;
        s2 = ts;
        a2 = ta;
    }
    if (s2 != (T)0) s += s2 * k_exp(m2 - m);
}

// Add the per-row results of a block (row_loss[ty], row_hit[ty], written by thread tx == 0 of each row) to acc.
// Every thread of the block calls it.
__device__ __forceinline__ void k_block_accumulate(double* acc, const double* row_loss, const double* row_hit,
                                                   long long rows) {
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        const long long left = rows - (long long)blockIdx.x * blockDim.y;
        const int here = (int)(left < blockDim.y ? left : blockDim.y);
        double l = 0.0, h = 0.0;
        for (int k = 0; k < here; ++k) {
            l += row_loss[k];
            h += row_hit[k];
        }
        atomicAdd(&acc[0], l);
        atomicAdd(&acc[1], h);
    }
}

// What pass 2 writes at column c: the probability p, or dL/dz_c (common.cuh's k_xent_grad).
template <typename T>
__device__ __forceinline__ T k_xent_output(T p, int c, int yr, bool grad, T scale, XentTarget<T> q) {
    return grad ? k_xent_grad(p, c == yr, scale, q) : p;
}

// softmax + cross-entropy over logits z (rows x C) and labels y in [0, C):
//   loss_r = s_r w[y_r] (lse_r - sum_c q_rc z_rc),  q_r = (1 - eps) onehot(y_r) + eps / C
//   dL/dz_r = s_r w[y_r] (softmax(z_r) - q_r) / divisor;   hit_r = s_r (argmax_c z_rc == y_r), first maximum wins
// class_weight and row_weight (s) may be nullptr (all ones). A label outside [0, C) is never used as an index:
// its row's loss is NaN whatever its weight, which the trainer reports, and its gradient row is zero.
template <typename T>
__global__ void softmax_xent(T* __restrict__ z, const int* __restrict__ labels, const T* __restrict__ class_weight,
                             const T* __restrict__ row_weight, double* __restrict__ acc, long long rows, int C,
                             int write_grad, T smoothing, T divisor) {
    extern __shared__ __align__(8) unsigned char k_smem[];
    __shared__ double row_loss[256];
    __shared__ double row_hit[256];
    const RowThread th = k_row_thread(rows);
    const int nthr = blockDim.x * blockDim.y, t = th.t, tx = th.tx, bx = th.bx;
    T* s_max = reinterpret_cast<T*>(k_smem);
    T* s_sum = s_max + nthr;
    T* s_zsum = s_sum + nthr;
    int* s_arg = reinterpret_cast<int*>(s_zsum + nthr);
    T* zr = z + (th.live ? th.r : 0) * (long long)C;

    // Pass 1: max, sum of exp(x - max) (rescaled online as the max grows), argmax and sum of logits.
    T m = k_neg_inf<T>(), s = (T)0, zs = (T)0;
    int am = C;
    T cache[K_CACHE];
#pragma unroll
    for (int j = 0; j < K_CACHE; ++j) {
        const int c = tx + j * bx;
        cache[j] = (T)0;
        if (th.live && c < C) {
            const T x = zr[c];
            cache[j] = x;
            k_merge_softmax(m, s, am, x, (T)1, c);
            zs += x;
        }
    }
    for (int c = tx + K_CACHE * bx; th.live && c < C; c += bx) {
        const T x = zr[c];
        k_merge_softmax(m, s, am, x, (T)1, c);
        zs += x;
    }
    // The label's logit is read now: once the reductions below are done, the row's other threads may
    // already be overwriting z in pass 2.
    int yr = -1;
    T wy = (T)1, sr = (T)1, zy = (T)0;
    bool valid = false;
    if (th.live && labels != nullptr) {
        yr = labels[th.r];
        valid = yr >= 0 && yr < C;
        if (valid && class_weight != nullptr) wy = class_weight[yr];
        if (row_weight != nullptr) sr = row_weight[th.r];
        if (valid && tx == 0) zy = zr[yr];
    }
    s_max[t] = m;
    s_sum[t] = s;
    s_zsum[t] = zs;
    s_arg[t] = am;
    __syncthreads();
    for (int off = bx / 2; off > 0; off >>= 1) {
        if (tx < off) {
            T mm = s_max[t], ss = s_sum[t];
            int aa = s_arg[t];
            k_merge_softmax(mm, ss, aa, s_max[t + off], s_sum[t + off], s_arg[t + off]);
            s_max[t] = mm;
            s_sum[t] = ss;
            s_arg[t] = aa;
            s_zsum[t] += s_zsum[t + off];
        }
        __syncthreads();
    }
    const int row0 = th.ty * bx;
    // p = exp(x - max) / sum rather than exp(x - lse): with logits near 1e4, lse itself is only good to
    // float32's 1e-3 there, and that error would land in every p.
    const T mx = s_max[row0], inv_sum = (T)1 / s_sum[row0];

    if (labels != nullptr && tx == 0) {
        double loss = 0.0, hit = 0.0;
        if (th.live && valid) {
            const T row = wy * k_xent_row_loss(k_log(s_sum[row0]), mx, zy, s_zsum[row0], C, smoothing);
            loss = (double)row * (double)sr;  // the row weight in double: exact for sr = 1
            hit = s_arg[row0] == yr ? (double)sr : 0.0;
        } else if (th.live) {
            loss = (double)k_neg_inf<T>() * 0.0;  // NaN: a bad label must not pass silently
        }
        row_loss[th.ty] = loss;
        row_hit[th.ty] = hit;
    }

    // Pass 2: write p, or dL/dz = s w (p - q) / divisor.
    const bool grad = write_grad && labels != nullptr;
    const T scale = valid ? wy * sr / divisor : (T)0;
    const XentTarget<T> q = k_xent_target(smoothing, C);
#pragma unroll
    for (int j = 0; j < K_CACHE; ++j) {
        const int c = tx + j * bx;
        if (th.live && c < C) zr[c] = k_xent_output(k_exp(cache[j] - mx) * inv_sum, c, yr, grad, scale, q);
    }
    for (int c = tx + K_CACHE * bx; th.live && c < C; c += bx)
        zr[c] = k_xent_output(k_exp(zr[c] - mx) * inv_sum, c, yr, grad, scale, q);
    if (labels == nullptr) return;
    k_block_accumulate(acc, row_loss, row_hit, rows);
}

// sigmoid + binary cross-entropy over logits z (rows x K) and targets y in [0, 1]:
//   loss_r = s_r sum_k (max(z, 0) - z y + log(1 + exp(-|z|)));  dL/dz = s_r (sigmoid(z) - y) / divisor
//   hit_r = s_r when every output's (z > 0) equals its (y >= 1/2), else 0;  row_weight (s) may be nullptr
template <typename T>
__global__ void sigmoid_bce(T* __restrict__ z, const T* __restrict__ y, const T* __restrict__ row_weight,
                            double* __restrict__ acc, long long rows, int K, int write_grad, T divisor) {
    extern __shared__ __align__(8) unsigned char k_smem[];
    __shared__ double row_loss[256];
    __shared__ double row_hit[256];
    const RowThread th = k_row_thread(rows);
    const int nthr = blockDim.x * blockDim.y, t = th.t, bx = th.bx;
    T* s_loss = reinterpret_cast<T*>(k_smem);
    int* s_wrong = reinterpret_cast<int*>(s_loss + nthr);

    const long long base = (th.live ? th.r : 0) * (long long)K;
    const T sr = th.live && y != nullptr && row_weight != nullptr ? row_weight[th.r] : (T)1;
    T loss = (T)0;
    int wrong = 0;
    for (int c = th.tx; th.live && c < K; c += bx) {
        const T x = z[base + c];
        const T p = k_activate(x, ACT_SIGMOID, (T)0);
        if (y != nullptr) {
            const T target = y[base + c];
            const T ax = x < (T)0 ? -x : x;
            loss += (x > (T)0 ? x : (T)0) - x * target + k_log1p(k_exp(-ax));
            wrong |= (x > (T)0) != (target >= (T)0.5);
            z[base + c] = write_grad ? sr * (p - target) / divisor : p;
        } else {
            z[base + c] = p;
        }
    }
    if (y == nullptr) return;
    s_loss[t] = loss;
    s_wrong[t] = wrong;
    __syncthreads();
    for (int off = bx / 2; off > 0; off >>= 1) {
        if (th.tx < off) {
            s_loss[t] += s_loss[t + off];
            s_wrong[t] |= s_wrong[t + off];
        }
        __syncthreads();
    }
    if (th.tx == 0) {
        row_loss[th.ty] = th.live ? (double)s_loss[th.ty * bx] * (double)sr : 0.0;
        row_hit[th.ty] = th.live && !s_wrong[th.ty * bx] ? (double)sr : 0.0;
    }
    k_block_accumulate(acc, row_loss, row_hit, rows);
}

// identity + half squared error over z (rows x K) and targets y:
//   loss = 1/2 sum_r s_r sum_k (z - y)^2 (acc[0]), sum_r s_r sum_k (z - y)^2 (acc[1]),
//   dL/dz = s_r (z - y) / divisor;  row_weight (s) may be nullptr (all ones).
// One thread per element (grid-stride); blockDim.x must be a power of two <= 256.
template <typename T>
__global__ void squared_error(T* __restrict__ z, const T* __restrict__ y, const T* __restrict__ row_weight,
                              double* __restrict__ acc, long long rows, int K, int write_grad, T divisor) {
    __shared__ double part[256];
    const long long n = rows * K;
    double sq = 0.0;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        const T d = z[e] - y[e];
        const T sr = row_weight != nullptr ? row_weight[e / K] : (T)1;  // the division only with weights
        sq += (double)(d * d) * (double)sr;
        if (write_grad) z[e] = sr * d / divisor;
    }
    part[threadIdx.x] = sq;
    __syncthreads();
    for (int off = blockDim.x / 2; off > 0; off >>= 1) {
        if ((int)threadIdx.x < off) part[threadIdx.x] += part[threadIdx.x + off];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        atomicAdd(&acc[0], 0.5 * part[0]);
        atomicAdd(&acc[1], part[0]);
    }
}
