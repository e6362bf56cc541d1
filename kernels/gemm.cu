// gemm.cu -- C <- alpha op(A) op(B) + accumulate C for row-major matrices, without cuBLAS.
// Reference: mlp_xp/reference/layer.py matmul. It exists so that a whole training step can be captured as a CUDA
// graph: CuPy refuses to call cuBLAS while a stream is capturing, and this kernel is an ordinary launch.
//
// C is M x N with leading dimension ldc; op(A) is M x K (A stored K x M when trans_a), op(B) is K x N
// (B stored N x K when trans_b); lda and ldb are the row lengths of A and B as stored.
// A block computes a 64 x 64 tile of C with 256 threads, 4 x 4 outputs per thread, stepping K by 16
// through shared memory.

#define G_TILE 64
#define G_KSTEP 16

template <typename T>
__global__ void __launch_bounds__(256) gemm(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                                            int M, int N, int K, int lda, int ldb, int ldc, int trans_a,
                                            int trans_b, T alpha, T accumulate) {
    __shared__ T As[G_KSTEP][G_TILE + 1];   // As[k][m] = op(A)[row0 + m][k0 + k]; +1 avoids bank conflicts
    __shared__ T Bs[G_KSTEP][G_TILE + 1];   // Bs[k][n] = op(B)[k0 + k][col0 + n]
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int row0 = blockIdx.y * G_TILE, col0 = blockIdx.x * G_TILE;
    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = (T)0;

    for (int k0 = 0; k0 < K; k0 += G_KSTEP) {
        // 256 threads load the 16 x 64 slices of op(A) and op(B): 4 elements each, zero outside the matrix.
        for (int e = threadIdx.x; e < G_KSTEP * G_TILE; e += 256) {
            const int k = e / G_TILE, mn = e % G_TILE;
            const int gk = k0 + k, gm = row0 + mn, gn = col0 + mn;
            T a = (T)0, b = (T)0;
            if (gk < K && gm < M) a = trans_a ? A[(long long)gk * lda + gm] : A[(long long)gm * lda + gk];
            if (gk < K && gn < N) b = trans_b ? B[(long long)gn * ldb + gk] : B[(long long)gk * ldb + gn];
            As[k][mn] = a;
            Bs[k][mn] = b;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < G_KSTEP; ++k) {
            T a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int r = row0 + ty + 16 * i;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = col0 + tx + 16 * j;
            if (c >= N) continue;
            T* out = C + (long long)r * ldc + c;
            *out = accumulate == (T)0 ? alpha * acc[i][j] : alpha * acc[i][j] + accumulate * *out;
        }
    }
}
