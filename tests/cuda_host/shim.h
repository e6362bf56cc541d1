// shim.h -- compile CUDA C kernel sources with g++ and run them serially on the CPU, so that the unmodified
// kernels/*.cu run in CI on machines without a GPU (tests/cuda_host/harness.py builds and launches them).
// Prepended (via `g++ -include shim.h`) to an unmodified .cu file.
// Blocks run one after another; threads of a block run serially. Kernels that call __syncthreads()
// run each thread as a ucontext fiber, and the barrier is a cooperative yield (all fibers reach it,
// then all continue) -- so shared memory + barriers behave as on a GPU (minus warp intrinsics).
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <algorithm>
#include <vector>
#include <memory>
#include <ucontext.h>

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace shim {
// "built-in" variables: plain globals, set by the launcher before each thread (fiber) resumes.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline unsigned char* dyn_smem = nullptr;           // extern __shared__ storage
inline bool fiber_mode = false;
inline ucontext_t sched_ctx;
inline ucontext_t* cur_ctx = nullptr;
inline int cur_state = 0;                            // 0 running, 1 at barrier, 2 done
inline long barrier_hits = 0;
[[noreturn]] inline void fail(const char* m) { std::fprintf(stderr, "cuda_cpu_shim: %s\n", m); std::abort(); }
inline void syncthreads() {
    if (!fiber_mode) fail("__syncthreads() called but kernel was launched without fibers (uses_sync=False)");
    cur_state = 1; ++barrier_hits;
    swapcontext(cur_ctx, &sched_ctx);               // yield to the block scheduler
}
}  // namespace shim

#define threadIdx (shim::threadIdx)
#define blockIdx (shim::blockIdx)
#define blockDim (shim::blockDim)
#define gridDim (shim::gridDim)
#define warpSize 32
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static                            // one copy, reused by every (sequential) block
#define __constant__
#define __align__(n) alignas(n)
#define __syncthreads() shim::syncthreads()
#define __threadfence() ((void)0)
// __restrict__ is understood by g++ natively.

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
template <class T> inline T __ldg(const T* p) { return *p; }
// Single OS thread + cooperative fibers => plain read-modify-write is atomic here.
template <class T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <class T> inline T atomicMax(T* p, T v) { T o = *p; *p = std::max(o, v); return o; }
using std::min; using std::max;
using std::exp; using std::log; using std::log1p; using std::tanh; using std::sqrt;

namespace shim {
template <class F> struct FiberArg { F* body; };
template <class F> void fiber_entry(unsigned lo, unsigned hi) {
    auto* f = reinterpret_cast<F*>((uintptr_t(hi) << 32) | uintptr_t(lo));
    (*f)();
    cur_state = 2;                                   // uc_link returns to sched_ctx
}

// Launch `body` (a no-arg callable that invokes the kernel) over grid x block.
template <class F>
void launch(dim3 grid, dim3 block, size_t dyn_smem_bytes, bool use_fibers, F body) {
    gridDim = grid; blockDim = block;
    std::vector<unsigned char> smem(dyn_smem_bytes + 16);
    dyn_smem = smem.data();
    const unsigned nthr = block.x * block.y * block.z;
    if (!use_fibers) {
        fiber_mode = false;
        for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            blockIdx = {bx, by, bz};
            for (unsigned tz = 0; tz < block.z; ++tz) for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) { threadIdx = {tx, ty, tz}; body(); }
        }
        return;
    }
    fiber_mode = true;
    const size_t stack_sz = 64 * 1024;              // the kernels keep little on the stack
    std::vector<ucontext_t> ctx(nthr);
    // One stack per thread, kept between launches: allocating (and zeroing) them anew for every launch
    // made a fiber launch cost milliseconds.
    static std::vector<std::unique_ptr<char[]>> stacks;
    while (stacks.size() < nthr) stacks.emplace_back(new char[stack_sz]);
    std::vector<int> state(nthr);
    std::vector<long> hits(nthr);
    uintptr_t fp = reinterpret_cast<uintptr_t>(&body);
    for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        for (unsigned t = 0; t < nthr; ++t) {
            getcontext(&ctx[t]);
            ctx[t].uc_stack.ss_sp = stacks[t].get(); ctx[t].uc_stack.ss_size = stack_sz;
            ctx[t].uc_link = &sched_ctx;
            makecontext(&ctx[t], (void (*)())fiber_entry<F>, 2, unsigned(fp & 0xffffffffu), unsigned(fp >> 32));
            state[t] = 0; hits[t] = 0;
        }
        for (;;) {                                   // one "phase" = every live thread runs to the next barrier
            bool any_live = false;
            for (unsigned t = 0; t < nthr; ++t) {
                if (state[t] == 2) continue;
                threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                cur_ctx = &ctx[t]; cur_state = 0; barrier_hits = hits[t];
                swapcontext(&sched_ctx, &ctx[t]);
                state[t] = cur_state; hits[t] = barrier_hits;
                if (state[t] != 2) any_live = true;
            }
            if (!any_live) break;
        }
        for (unsigned t = 1; t < nthr; ++t)          // CUDA requires every thread to hit the same barriers
            if (hits[t] != hits[0]) {
                std::fprintf(stderr, "cuda_cpu_shim: divergent __syncthreads in block (%u,%u,%u): thread 0 hit %ld, thread %u hit %ld\n",
                             bx, by, bz, hits[0], t, hits[t]);
                std::abort();
            }
    }
    fiber_mode = false;
}
}  // namespace shim
