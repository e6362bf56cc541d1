// gemm.cu -- C <- alpha op(A) op(B) + accumulate C for row-major matrices, without cuBLAS.
// Reference: mlp_xp/reference/layer.py matmul. It exists so that a whole training step can be captured as a CUDA
// graph on any machine: CuPy refuses its cuBLAS wrapper while a stream is capturing, and where cuBLAS cannot be
// called directly (mlp_xp/backend/cublas_graph.py) this kernel, an ordinary launch, takes its place.
//
// C is M x N with leading dimension ldc; op(A) is M x K (A stored K x M when trans_a), op(B) is K x N
// (B stored N x K when trans_b); lda and ldb are the row lengths of A and B as stored.
// A block computes a 64 x 64 tile of C with 256 threads, 4 x 4 outputs per thread, stepping K by 16
// through shared memory. Row tiles are on blockIdx.x (up to 2^31 - 1 of them: any batch size; grid.y would stop
// at 65535 x 64 rows), column tiles on blockIdx.y. Loads are coalesced: consecutive threads read consecutive
// addresses of the operand as stored (along k where it is stored row by row along k, along m or n otherwise),
// and the transpose happens in the store to shared memory.

#define G_TILE 64
#define G_KSTEP 16

template <typename T>
__global__ void __launch_bounds__(256) gemm(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                                            int M, int N, int K, int lda, int ldb, int ldc, int trans_a,
                                            int trans_b, T alpha, T accumulate) {
    // Row padding so that both store patterns (16 k x 2 m, or 32 m) hit distinct 4-byte banks: a stride of 66
    // floats, or of 65 doubles (a double covers two banks).
    constexpr int PAD = sizeof(T) == 8 ? 1 : 2;
    __shared__ T As[G_KSTEP][G_TILE + PAD];   // As[k][m] = op(A)[row0 + m][k0 + k]
    __shared__ T Bs[G_KSTEP][G_TILE + PAD];   // Bs[k][n] = op(B)[k0 + k][col0 + n]
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int row0 = blockIdx.x * G_TILE, col0 = blockIdx.y * G_TILE;
    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = (T)0;

    for (int k0 = 0; k0 < K; k0 += G_KSTEP) {
        // 256 threads load the 16 x 64 slices of op(A) and op(B): 4 elements each, zero outside the matrix.
        // A stored M x K (not transposed) is contiguous along k, so k varies fastest across threads; stored K x M
        // it is contiguous along m. B likewise: along n as stored K x N, along k as stored N x K (transposed).
        for (int e = threadIdx.x; e < G_KSTEP * G_TILE; e += 256) {
            const int ka = trans_a ? e / G_TILE : e % G_KSTEP, ma = trans_a ? e % G_TILE : e / G_KSTEP;
            const int kb = trans_b ? e % G_KSTEP : e / G_TILE, nb = trans_b ? e / G_KSTEP : e % G_TILE;
            const int gka = k0 + ka, gm = row0 + ma, gkb = k0 + kb, gn = col0 + nb;
            T a = (T)0, b = (T)0;
            if (gka < K && gm < M) a = trans_a ? A[(long long)gka * lda + gm] : A[(long long)gm * lda + gka];
            if (gkb < K && gn < N) b = trans_b ? B[(long long)gn * ldb + gkb] : B[(long long)gkb * ldb + gn];
            As[ka][ma] = a;
            Bs[kb][nb] = b;
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
