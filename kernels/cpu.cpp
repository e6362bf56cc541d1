// cpu.cpp -- the CPU backend's compiled loops: a layer's elementwise work, the losses (softmax cross-entropy, binary
// cross-entropy, the squared error), the L1 penalty, Adam's update and the batch gather, one compiled call per op
// instead of a dozen NumPy calls, and the replay of a recorded step (at the end). Built at first use by the
// machine's C++ compiler (mlp_xp/backend/cpu_loops.py), loaded with ctypes. Each loop has its reference's
// contract: mlp_xp/reference/layer.py (bias_act, act_backward, bias_grad), mlp_xp/reference/loss.py
// (softmax_xent, sigmoid_bce, squared_error), mlp_xp/reference/optimizer.py (regularized, adam_update),
// mlp_xp/reference/data.py (gather_rows).
//
// Why compiled loops on the CPU at all: a training step alternates GEMMs with short elementwise passes, and each
// GEMM streams megabytes through the core's caches. Every NumPy call right after one runs its dispatch code cold,
// several times slower than warm, so an op of twenty NumPy calls costs far more than one loop over the same data
// (the measurement is in benchmarks/README.md).
//
// The formulas are common.cuh's, the same text the CUDA kernels use: it is included after the few CUDA words it
// uses are defined away. Sigmoid's and tanh's are the exception: computed here without the math library, so that
// their loops vectorize (see sigmoid_v and tanh_v).
#include <math.h>  // common.cuh calls expf, tanhf, ... unqualified
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __device__
#define __forceinline__ inline
static inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
using std::exp;
using std::fabs;
using std::log;
using std::log1p;
using std::sqrt;
using std::tanh;
#include "common.cuh"

typedef long long i64;

// Each loop is a function of its own, never inlined into the exported one that picks it: so that each has a
// symbol, by which tests/test_cpu_loops_codegen.py finds its machine code and checks that it is vectorized
// without a branch on the data. One call per op costs nothing beside the loop.
#if defined(__GNUC__)
#define MLP_XP_LOOP __attribute__((noinline))
#else
#define MLP_XP_LOOP
#endif

// A loop of little more than a load, an add and a store a vector, unrolled: on an AMD EPYC (AVX2), float32 at
// 128 x 512, the plain loop's bias + identity took 1.02x and 1.10x of NumPy's time, unrolled 0.50x-0.74x (bias +
// ReLU 0.63x-0.66x of the plain loop's time there; benchmarks/results/cpu_loops_epyc_avx2_dec2.md). (GCC knows the
// pragma from version 8.)
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define MLP_XP_UNROLL4 _Pragma("GCC unroll 4")
#else
#define MLP_XP_UNROLL4
#endif

// ---- selects that vectorize ----
// A factor chosen by a comparison, c ? x : y, is here built from the comparison's bits with integer
// operations: all ones where c holds keeps the bits of x, else those of y. Why not the plain select, as
// common.cuh writes k_activate and k_derivative for the CUDA kernels: g++ folds a product such as
// dh * (h > 0 ? 1 : a) into the select h > 0 ? dh : dh * a, and under the default -ftrapping-math it may not
// do on every element a multiply that the source does only on some, so it can if-convert that select only
// with AVX-512's masked multiply. With AVX2 (or SSE, or NEON) it emits a scalar loop with a branch on the sign
// of h, which real activations (about half zeros, in no pattern) mispredict: ReLU's backward ran 7 to 13 times
// slower than the NumPy path on an AVX2 EPYC (issue 15; benchmarks/cpu_loops.py times each loop against it).
// Integer operations on the bits are not folded into the product, so the loop becomes compare, and, or,
// multiply, vectorized at any width, and computes the same IEEE product bit for bit: the factor is exactly
// x or y, and the multiply happens on every element as the source says (NaN and infinity: see act_backward in
// mlp_xp/reference/layer.py). tests/test_cpu_loops_codegen.py checks the machine code.

// The unsigned integer of a float's width, and a float's bits as one (memcpy: the defined way to read them).
template <typename T>
struct BitsOf;
template <>
struct BitsOf<float> {
    typedef uint32_t type;
};
template <>
struct BitsOf<double> {
    typedef uint64_t type;
};
template <typename T>
static inline typename BitsOf<T>::type to_bits(T x) {
    typename BitsOf<T>::type u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}
template <typename T>
static inline T from_bits(typename BitsOf<T>::type u) {
    T x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// c ? x : y for the floats whose bits are x and y.
template <typename T>
static inline T select_bits(bool c, typename BitsOf<T>::type x, typename BitsOf<T>::type y) {
    typedef typename BitsOf<T>::type U;
    const U where = (U)0 - (U)c;  // all ones or all zeros
    return from_bits<T>((where & x) | (~where & y));
}

// ---- a multiply and an add, fused where the CPU can ----
// a b + c. The build keeps g++ from fusing on its own (-ffp-contract=off, mlp_xp/backend/cpu_loops.py), so that no
// loop's rounding depends on what the compiler chose; the exps and tanh below ask for the fused form where the
// target has FMA (-march=native on Intel's Core and Xeon CPUs since Haswell, AMD's since Piledriver, every 64-bit
// ARM one; elsewhere where the compiler says fma is fast, __FP_FAST_FMA): one rounding instead of two, and one
// instruction, in loops bound by their number of operations (on the Xeon EMR, benchmarks/cpu_loops.py, float32
// bias + sigmoid took 0.74 of its unfused time, bias + tanh 0.88 to 0.95). Without FMA std::fma is a library call
// per element, so there it stays a multiply and an add, the same values as before the fused form was written (a
// NaN's sign aside: g++ now folds the - of -|z| into the constants). The two forms round differently, each on its
// own machines (ARCHITECTURE.md counts the CPU and the build in "the same run"); the accuracy tests hold both
// (tests/test_cpu_loops.py also builds for x86-64-v2, which has no FMA).
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || (defined(__FP_FAST_FMA) && defined(__FP_FAST_FMAF))
#define MLP_XP_FMA 1
template <typename T>
static inline T mul_add(T a, T b, T c) {
    return std::fma(a, b, c);
}
#else
#define MLP_XP_FMA 0
template <typename T>
static inline T mul_add(T a, T b, T c) {
    return a * b + c;
}
#endif

// ---- sigmoid and tanh that vectorize ----
// common.cuh's k_activate calls the math library's tanhf or tanh, a scalar call per element: bias + sigmoid and
// bias + tanh ran 9 to 12 times slower than the NumPy path, whose tanh is SIMD (issue 15; 1174 us against 125 us
// for a 128 x 512 float32 sigmoid on the EPYC AVX2). Here both are built from an exp of cpu.cpp's own (tanh's a
// rational one, see TanhConsts), with no call and no branch, so that g++ vectorizes them at any width
// (tests/test_cpu_loops_codegen.py checks the machine code); the CUDA kernels keep common.cuh's formulas.
//
//   exp(x), x <= 0:  x = k ln 2 + r, k = round(x / ln 2), |r| <= ln(2) / 2 (Cody and Waite: ln 2 in two parts,
//                    the first with trailing zeros, so that k ln2_hi is exact); exp(r) = 1 + (r + r^2 E(r)), E a
//                    polynomial fitted to (exp(r) - 1 - r) / r^2 (mpmath's chebyfit; degree 5 for float32,
//                    relative error of exp(r) under 7e-10 with the coefficients rounded; degree 10 for float64,
//                    under 1.1e-18); times 2^k, put together from its exponent bits. k is read off the low bits of
//                    x / ln 2 + 1.5 2^MANT. Only for x >= LOWEST, ln of the smallest normal number: below, 2^k's
//                    bits are garbage and the caller uses another value (a select after the fact, not a clamp
//                    before, which would lengthen the chain of dependent operations).
//   sigmoid(z) = (z < 0 ? e : 1) / (1 + e),  e = exp(-|z|), 0 where -|z| < LOWEST
//   tanh(z)    = sign(z) t, a = |z|:  t = a - a s U(s) / V(s), s = a^2, for a <= 0.75; t = 1 - 2 e / (1 + e),
//                e = exp(-2a) as a ratio, beyond; one division for both (TanhConsts, below).
//
// Both sides of each choice are computed and one is picked with select_bits: no branch (a plain ?: on two
// floats kept g++ from vectorizing these loops at all). exp's polynomial is evaluated in Estrin's order, which
// shortens the longest chain of dependent operations (llvm-mca: the loops are bound by it as much as by their
// number of operations); tanh's short ones in Horner's, the fewer operations.
//
// Accuracy, against long double (tests/test_cpu_loops.py, on this machine's build and on one without FMA): sigmoid
// within 2.5 ulp, tanh within 1.6 ulp, float32 (worst over every float32 with |z| in [2^-30, 128): 2.40 and 1.40)
// and float64 (dense sweeps: 2.06 and 1.45) alike, fused or not; the math library's tanhf, which the loop called
// before, is within 2.1, NumPy's tanh within 1.4.
// Sigmoid keeps its relative accuracy down to the smallest normal number, where 0.5 (1 + tanh(z / 2)),
// common.cuh's formula and the NumPy path's, loses it below about 1e-8 (it gives 0 for z < -17 in float32);
// below the smallest normal number it is 0, never a subnormal (which would cost the next GEMM microcode assists,
// see flush_subnormals). No other input gives a subnormal but tanh(z) = z for a subnormal z. NaN stays NaN (each
// step passes it on, and each comparison that picks a side fails on it, which picks the side that passes it on),
// sigmoid(-inf) = 0, sigmoid(inf) = 1, tanh(+-inf) = +-1, tanh(+-0) = +-0.
template <typename T>
struct ExpConsts;
template <>
struct ExpConsts<float> {
    static constexpr int MANT = 23, BIAS = 127;
    static constexpr float LOG2E = 0x1.715476p+0f, LN2_HI = 0x1.63p-1f, LN2_LO = -0x1.bd0106p-13f;
    static constexpr float SHIFTER = 0x1.8p23f;  // 1.5 2^23: adding it rounds to an integer, kept in the low bits
    static constexpr float LOWEST = -87.33654f;  // ln of the smallest normal number, rounded toward 0
    static inline float exp_e(float r) {         // E(r), exp(r) = 1 + r + r^2 E(r)
        const float r2 = r * r;
        const float p01 = mul_add(r, 0x1.555556p-3f, 0.5f), p23 = mul_add(r, 0x1.1110f6p-7f, 0x1.555516p-5f),
                    p45 = mul_add(r, 0x1.a0fcdap-13f, 0x1.6d1606p-10f);
        return mul_add(r2 * r2, p45, mul_add(r2, p23, p01));
    }
};
template <>
struct ExpConsts<double> {
    static constexpr int MANT = 52, BIAS = 1023;
    static constexpr double LOG2E = 0x1.71547652b82fep+0, LN2_HI = 0x1.62e42fee00000p-1,
                            LN2_LO = 0x1.a39ef35793c76p-33;
    static constexpr double SHIFTER = 0x1.8p52;
    static constexpr double LOWEST = -708.3964185322641;
    static inline double exp_e(double r) {
        const double r2 = r * r, r4 = r2 * r2;
        const double p01 = mul_add(r, 0x1.5555555555556p-3, 0.5),
                     p23 = mul_add(r, 0x1.1111111110918p-7, 0x1.5555555555555p-5),
                     p45 = mul_add(r, 0x1.a01a01a83ba17p-13, 0x1.6c16c16c16789p-10),
                     p67 = mul_add(r, 0x1.71de0be2b5e96p-19, 0x1.a01a01a4bf4ccp-16),
                     p89 = mul_add(r, 0x1.af3ce42b12b24p-26, 0x1.27e4e0ede8585p-22);
        return mul_add(r4 * r4, mul_add(r2, 0x1.1f6949e9931a3p-29, p89),
                       mul_add(r4, mul_add(r2, p67, p45), mul_add(r2, p23, p01)));
    }
};

// |x|, by the sign bit.
template <typename T>
static inline T abs_bits(T x) {
    typedef typename BitsOf<T>::type U;
    return from_bits<T>(to_bits(x) & ~((U)1 << (sizeof(U) * 8 - 1)));
}

// exp(x) for x in [LOWEST, 0] (a NaN gives NaN). Below LOWEST the result is garbage: see above.
template <typename T>
static inline T exp_nonpositive(T x) {
    typedef ExpConsts<T> C;
    typedef typename BitsOf<T>::type U;
    const T shifted = mul_add(x, C::LOG2E, C::SHIFTER);  // round(x / ln 2) in its low bits
    const T k = shifted - C::SHIFTER;
    const T scale = from_bits<T>((to_bits(shifted) + (U)C::BIAS) << C::MANT);  // 2^k: the shifter's bits shift out
    const T r = mul_add(k, -C::LN2_LO, mul_add(k, -C::LN2_HI, x));  // (x - k ln2_hi) - k ln2_lo
    return scale * ((T)1 + mul_add(r * r, C::exp_e(r), r));
}

template <typename T>
static inline T sigmoid_v(T z) {
    typedef ExpConsts<T> C;
    typedef typename BitsOf<T>::type U;
    const T x = -abs_bits(z);
    const T e = select_bits<T>(x < C::LOWEST, (U)0, to_bits(exp_nonpositive(x)));  // NaN: kept
    return select_bits<T>(z < (T)0, to_bits(e), to_bits((T)1)) / ((T)1 + e);
}

// ---- tanh ----
// Why not exp_nonpositive with a polynomial near 0, as before: every element paid for both, the polynomial near 0
// (degree 4 in a^2; float64: 10) and the whole exp (degree 5; 10) with its division, and bias + tanh ran 1.5 times
// slower than the NumPy path on a Xeon with AVX-512 (128 x 512: float32 58-75 us against 38-42, float64 175
// against 155), whose tanh looks its polynomials up in a table (SVML). The loop is bound by its number of
// operations (two 512-bit ones a cycle at most, fused only where mul_add asks) and by its chain of dependent ones.
// Here the near and the far side share one division, and the far side's exp is a ratio of short polynomials
// (measured on that Xeon, benchmarks/cpu_loops.py: 0.65 of the former loop's time in float32, 0.6 in float64, and
// 0.65 to 0.7 built for AVX2; against the NumPy path 0.97 and 0.6 to 0.75; with its multiply-adds fused, mul_add,
// 0.87 to 0.93 in float32):
//
//   near, a <= SPLIT:  t = a - a s U(s) / V(s), s = a^2, U / V a minimax rational for (a - tanh(a)) / a^3: its
//                      errors, and the division's, are damped by (a - t) / t <= 0.18, so that t keeps the final
//                      subtraction's half ulp and little more.
//   far, a > SPLIT:    t = 1 - 2 e / (1 + e), e = exp(-2a) = 2^k exp(-2 rho), k = round(-2a / ln 2),
//                      rho = a + k ln(2) / 2, |rho| <= ln(2) / 4 (Cody and Waite, as in exp_nonpositive), and
//                      exp(-2 rho) = (A - B) / (A + B), B = rho Bp(u), u = rho^2, B / A a minimax rational for
//                      tanh(rho) (Pade's is rho (15 + u) / (15 + 6u)). With w = 2^k (A - B),
//                      t = 1 - 2w / ((A + B) + w); no cancellation: 2e / (1 + e) < 0.37.
//   both:              t = base - num / den, (base, num, den) the near side's or the far side's, picked before the
//                      one division.
//
// Degrees [1/1] (U over V, in s) and [1/1] (Bp over A, in u) for float32, [2/3] and [2/2] for float64, fitted by the
// Remez exchange (mpmath), the monic ones saving a multiply each; the approximations' relative errors, in t and in
// exp(-2 rho): 2^-25.6 and 2^-31 (float64: 2^-56.9 and 2^-60). float32's far coefficients were picked among
// near-minimax ones for a small worst case over every float32, which their roundings decide (1.40 ulp; 1.49 with the
// Remez ones). Why SPLIT = 0.75: as t falls toward 0.5 the far side's roundings (of w, of 1 + e, of the quotient q and
// of 1 - q, whose ulp becomes t's at a = 0.55) add up past 1.6 ulp (1.6 to 1.9 over float32 with SPLIT = 0.5625), and
// (a - t) / t grows beyond it. Why not tanh(a) = -m / (2 + m), m = expm1(-2a) from the same reduction, with no near
// side: its numerator, denominator and quotient each round by up to about 0.7 ulp of t (1.95 ulp over float32). float32
// reduces with one constant, 0x1.62e43p-2, ln(2) / 2 to 21 bits (about 2^-30 off): k (0 to -27) times it is exact for
// |k| <= 8 and within 2^-21 beyond, where e < 2^-8; one multiply and one add less on the chain (float64: ln(2) / 2 in
// two parts, as exp_nonpositive). The far side takes a clamped to ONE, where tanh rounds to 1, so that k stays in range
// (infinity: 1); the near side takes NaN (a > SPLIT fails), and its base a passes it on. t >= +0, NaN aside: one or
// gives it the sign of z.
template <typename T>
struct TanhConsts;
template <>
struct TanhConsts<float> {
    static constexpr float SPLIT = 0.75f;  // the near side up to this
    static constexpr float ONE = 9.5f;     // tanh rounds to 1 beyond
    static inline float near_num(float a, float s) { return (a * s) * (0x1.b5eb06p+7f + s); }    // a s U(s)
    static inline float near_den(float s) { return mul_add(s, 0x1.09bc14p+8f, 0x1.487074p+9f); }  // V(s)
    static inline float reduce(float a, float k) { return mul_add(k, 0x1.62e43p-2f, a); }         // rho
    static inline float far_a(float u) { return mul_add(u, 0x1.808868p+2f, 0x1.e0ccccp+3f); }     // A(u)
    static inline float far_b(float u) { return 0x1.e0ccccp+3f + u; }                            // Bp(u)
};
template <>
struct TanhConsts<double> {
    static constexpr double SPLIT = 0.75;
    static constexpr double ONE = 19.5;
    static inline double near_num(double a, double s) {
        return (a * s) * mul_add(s, 0x1.9c4fe9c912d4fp+6 + s, 0x1.a339a8a0aafedp+10);
    }
    static inline double near_den(double s) {
        return mul_add(s, mul_add(s, mul_add(s, 0x1.096fcd064ff47p+0, 0x1.d47207a9e8238p+6), 0x1.22307cb1a6851p+11),
                       0x1.3a6b3e7880400p+12);
    }
    static inline double reduce(double a, double k) {
        return mul_add(k, 0.5 * ExpConsts<double>::LN2_LO, mul_add(k, 0.5 * ExpConsts<double>::LN2_HI, a));
    }
    static inline double far_a(double u) {
        return mul_add(u, mul_add(u, 0x1.e03d903e74c71p+3, 0x1.a4569cb75dd92p+8), 0x1.d8e50cfe165f7p+9);
    }
    static inline double far_b(double u) { return mul_add(u, 0x1.a44cfae2915b2p+6 + u, 0x1.d8e50cfe165f6p+9); }
};

template <typename T>
static inline T tanh_v(T z) {
    typedef ExpConsts<T> C;
    typedef TanhConsts<T> P;
    typedef typename BitsOf<T>::type U;
    const T a = abs_bits(z), s = a * a;
    const bool far = a > P::SPLIT;  // fails for NaN
    const U ia = to_bits(a), ione = to_bits(P::ONE);
    const T af = from_bits<T>(ia < ione ? ia : ione);  // min(a, ONE): the bits of floats >= +0 compare as they do
    const T shifted = mul_add(af, (T)-2 * C::LOG2E, C::SHIFTER + (T)C::BIAS);  // k + BIAS in its low bits
    const T k = shifted - (C::SHIFTER + (T)C::BIAS);
    const T scale = from_bits<T>(to_bits(shifted) << C::MANT);  // 2^k: the shifter's bits shift out
    const T rho = P::reduce(af, k), u = rho * rho;
    const T A = P::far_a(u), B = rho * P::far_b(u);
    const T w = scale * (A - B);  // e (A + B)
    const T num = select_bits<T>(far, to_bits(w + w), to_bits(P::near_num(a, s)));
    const T den = select_bits<T>(far, to_bits((A + B) + w), to_bits(P::near_den(s)));
    const T t = select_bits<T>(far, to_bits((T)1), to_bits(a)) - num / den;
    return from_bits<T>(to_bits(t) | (to_bits(z) & ((U)1 << (sizeof(U) * 8 - 1))));
}

// ---- float32 tanh by table lookup, for AVX-512 ----
// On a CPU with AVX-512 the NumPy path's float32 tanh looks its polynomials up in a table held in registers, and
// tanh_v above, bound by its twenty-odd operations, a division among them, and by their chain of dependent ones,
// only matched it (bias + tanh 128 x 256 on the Xeon EMR: 0.93 and 1.06 of the NumPy path's time in two runs).
// There, and for float32 only (float64's tanh_v takes 0.55 of NumPy's time), bias + tanh looks up instead:
//
//   a = min(|z|, ONE), j = max((bits(a) >> 21) - 491, 0): 0 for a < 2^-4, else by a's exponent and the top two
//   bits of its mantissa, one of 29 quarter octaves from 2^-4 up to ONE = 9.5 (tanh rounds to 1 beyond);
//   tanh(z) = sign(z) (c0 + t (c1 + t (c2 + ... + t c6))), t = a - b_j, the b_j and c_k of TanhTable below.
//
// On each interval c0 = float32(tanh(b_j)), b_j a float32 near the middle picked for that rounding to be all but
// exact (within 0.0002 ulp; 0.23 and 0.15 in the top two), so that the last multiply-add, c0 + t q, rounds once
// near the exact value and q's errors are damped by t q / c0 (at most 0.11); t is exact (b_j / 2 <= a <= 2 b_j).
// The c_k minimize the largest relative error, of the lowest degree (4 to 6; the c_k above it 0) within 2^-32
// where the fit reaches it (0.013 ulp on [4, 5); on the top two c0's own rounding is the floor), and are rounded
// to float32 one at a time, the rest refitted after each: tools/fit_tanh_table.py, which printed the rows below.
// On [0, 2^-4) the odd part only, b = 0, c0 = 0, c1 = 1: tanh(z) = z for a tiny or subnormal z; there nothing
// damps q's rounding (t (1 + t (...)) rounds twice), and there is the worst error over every float32 in [0, 128),
// 0.994 ulp at 0x1.fdfa1ap-5 (tools/fit_tanh_table.py --check; tanh_v: 1.40, NumPy's: 1.4). NaN stays NaN (the
// min below keeps it, as ONE < a fails; its j reads rows 17 to 20, and t is NaN), +-inf gives +-1, +-0 gives +-0.
//
// The vector loop holds each row of the table in two zmm registers, 16 entries each, and vpermt2ps picks each
// lane's entry by the low five bits of j (entries 30 and 31 are padding: no j reaches them); 8 lookups, 6 fused
// multiply-adds and 8 more operations per 16 elements, no division (on the Xeon EMR 0.67 to 0.81 of tanh_v's time
// as the backend's op, against the NumPy path's 0.60 to 0.70: benchmarks/cpu_loops.py). A row's last cols % 16
// go through the same 16-lane code (how: bias_tanh_lookup). tanh_lookup does the same operations on one element
// (a lane and it give the same bits, tested): tanh_lookup_f32 exports it, for the tests and the check on any CPU.
// Where the CPU has no AVX-512, bias + tanh keeps tanh_v (a lookup not timed there: a 32-entry one takes four
// AVX2 permutes and three blends per row of the table).
namespace {  // (internal: no exported symbol for the table)
struct TanhTable {
    static constexpr int DEG = 6, BASE = 491, SHIFT = 21;
    static constexpr float ONE = 9.5f;
    alignas(64) static constexpr float rows[DEG + 2][32] = {
        // b
        {0.0f, 0x1.200c32p-4f, 0x1.5fe34p-4f, 0x1.9ffde6p-4f, 0x1.dfe2e6p-4f, 0x1.1ff20ep-3f,
         0x1.6006ap-3f, 0x1.a01ad6p-3f, 0x1.e01738p-3f, 0x1.201c7cp-2f, 0x1.600068p-2f, 0x1.9fefaap-2f,
         0x1.e0167ep-2f, 0x1.2018bp-1f, 0x1.5ffc7cp-1f, 0x1.a01cfcp-1f, 0x1.dff95ap-1f, 0x1.20155cp+0f,
         0x1.5fef1ep+0f, 0x1.a01248p+0f, 0x1.dfe98p+0f, 0x1.1ff226p+1f, 0x1.5fe7f2p+1f, 0x1.a01c78p+1f,
         0x1.e01726p+1f, 0x1.1fe142p+2f, 0x1.5fe8bep+2f, 0x1.9fef28p+2f, 0x1.e01f4p+2f, 0x1.17e0cp+3f,
         0x1.17e0cp+3f, 0x1.17e0cp+3f},
        // c0
        {0.0f, 0x1.1f92ep-4f, 0x1.5f0648p-4f, 0x1.9e9142p-4f, 0x1.ddb3dep-4f, 0x1.1e1024p-3f,
         0x1.5c9976p-3f, 0x1.9a78dep-3f, 0x1.d77c5ap-3f, 0x1.18bdf2p-2f, 0x1.52c322p-2f, 0x1.8a79f8p-2f,
         0x1.bfc09cp-2f, 0x1.051ab4p-1f, 0x1.31559cp-1f, 0x1.5798eep-1f, 0x1.77d528p-1f, 0x1.9e6b72p-1f,
         0x1.c27104p-1f, 0x1.d9cc3cp-1f, 0x1.e87494p-1f, 0x1.f4bd6ep-1f, 0x1.fbd37ap-1f, 0x1.fe7728p-1f,
         0x1.ff6f4cp-1f, 0x1.ffdf88p-1f, 0x1.fffb9cp-1f, 0x1.ffff68p-1f, 0x1.ffffecp-1f, 0x1.fffffep-1f,
         0x1.fffffep-1f, 0x1.fffffep-1f},
        // c1
        {0x1p+0f, 0x1.fd79eap-1f, 0x1.fc3d5cp-1f, 0x1.fac14cp-1f, 0x1.f9093p-1f, 0x1.f602cp-1f,
         0x1.f12a74p-1f, 0x1.eb6ec4p-1f, 0x1.e4dd2ap-1f, 0x1.d983fep-1f, 0x1.c7f704p-1f, 0x1.b4048ap-1f,
         0x1.9e1bbap-1f, 0x1.7ad846p-1f, 0x1.49e972p-1f, 0x1.196a6cp-1f, 0x1.d83dd4p-2f, 0x1.61204ep-2f,
         0x1.cedcf8p-3f, 0x1.26374ep-3f, 0x1.700d5ap-4f, 0x1.645bfp-5f, 0x1.0a0ac4p-6f, 0x1.884152p-8f,
         0x1.213f2p-9f, 0x1.03b92ap-11f, 0x1.190054p-14f, 0x1.30017ep-17f, 0x1.472d2p-20f, 0x1.b2ac6p-24f,
         0x1.b2ac6p-24f, 0x1.b2ac6p-24f},
        // c2
        {0.0f, -0x1.1e284ap-4f, -0x1.5c722ap-4f, -0x1.9a51eap-4f, -0x1.d73498p-4f, -0x1.187b4ep-3f,
         -0x1.527fcep-3f, -0x1.89fbc8p-3f, -0x1.be7f2ep-3f, -0x1.03a3dap-2f, -0x1.2dafdap-2f, -0x1.4fef6p-2f,
         -0x1.6a24fep-2f, -0x1.8265fep-2f, -0x1.897d76p-2f, -0x1.79b5b2p-2f, -0x1.5aa5e4p-2f, -0x1.1dd33ap-2f,
         -0x1.973662p-3f, -0x1.104374p-3f, -0x1.5f2096p-4f, -0x1.5c859cp-5f, -0x1.07df88p-6f, -0x1.87145ap-8f,
         -0x1.20ed6p-9f, -0x1.03a81cp-11f, -0x1.18fd5ap-14f, -0x1.300098p-17f, -0x1.22ffd8p-19f, 0x1.8425bcp-23f,
         0x1.8425bcp-23f, 0x1.8425bcp-23f},
        // c3
        {-0x1.55553ep-2f, -0x1.4e279ap-2f, -0x1.4ba756p-2f, -0x1.47a25cp-2f, -0x1.42a6dep-2f, -0x1.3b2686p-2f,
         -0x1.2eb85ep-2f, -0x1.1ff3eap-2f, -0x1.0fe8fap-2f, -0x1.e8f032p-3f, -0x1.983a1p-3f, -0x1.427402p-3f,
         -0x1.d6fb5cp-4f, -0x1.bc4bb6p-5f, 0x1.d7c1bap-7f, 0x1.07668p-4f, 0x1.84231p-4f, 0x1.c69278p-4f,
         0x1.97eecep-4f, 0x1.33c2c4p-4f, 0x1.a898ep-5f, 0x1.bc25a2p-6f, 0x1.5a1234p-7f, 0x1.032424p-8f,
         0x1.805cdcp-10f, 0x1.59acf4p-12f, 0x1.763b0ap-15f, 0x1.94e6cp-18f, 0x1.b6aep-21f, 0x1.21b676p-24f,
         0x1.21b676p-24f, 0x1.21b676p-24f},
        // c4
        {0.0f, 0x1.afd622p-5f, 0x1.b528ecp-5f, 0x1.029676p-4f, 0x1.3c30bp-4f, 0x1.688c18p-4f,
         0x1.ace914p-4f, 0x1.f0cf74p-4f, 0x1.112638p-3f, 0x1.3310fep-3f, 0x1.5024c4p-3f, 0x1.5c30c6p-3f,
         0x1.585092p-3f, 0x1.39eed4p-3f, 0x1.e96e84p-4f, 0x1.46de36p-4f, 0x1.63055p-5f, 0x1.a55f22p-9f,
         -0x1.5da094p-6f, -0x1.9d24bep-6f, -0x1.55c10ep-6f, -0x1.9414e2p-7f, -0x1.4eb1aap-8f, -0x1.00066p-9f,
         -0x1.7ea9f2p-11f, -0x1.596eb4p-13f, -0x1.764584p-16f, -0x1.94fa8p-19f, 0x1.42f73ep-17f, -0x1.6b7f5cp-20f,
         -0x1.6b7f5cp-20f, -0x1.6b7f5cp-20f},
        // c5
        {0x1.107864p-3f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
         0.0f, 0.0f, 0.0f, 0x1.4ee43p-5f, 0.0f, 0.0f,
         0.0f, -0x1.3fdb3p-5f, -0x1.0e1a8ap-4f, -0x1.e94dc2p-5f, -0x1.a76352p-5f, -0x1.066306p-5f,
         -0x1.37d882p-7f, 0x1.6041c4p-10f, 0x1.2c9f82p-8f, 0x1.04c634p-8f, 0x1.f6927ep-10f, 0x1.935b6ep-11f,
         0x1.326648p-12f, 0x1.1f7efp-14f, 0x1.382ff8p-17f, 0x1.51eb16p-20f, 0x1.369f02p-23f, 0x1.e4b2p-27f,
         0x1.e4b2p-27f, 0x1.e4b2p-27f},
        // c6
        {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
         0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
         0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0x1.2f02b6p-6f,
         0x1.6705fep-7f, 0x1.0ecc7ep-8f, 0.0f, -0x1.7765bcp-11f, -0x1.1e00bap-11f, -0x1.fee356p-13f,
         -0x1.9137dp-14f, -0x1.7b753p-16f, -0x1.9dfa86p-19f, -0x1.c0ad5cp-22f, -0x1.be358ap-16f, 0x1.9e4466p-20f,
         0x1.9e4466p-20f, 0x1.9e4466p-20f},
    };
};
}  // namespace

static inline float tanh_lookup(float z) {
    typedef TanhTable L;
    const float a = abs_bits(z);
    const float af = L::ONE < a ? L::ONE : a;  // NaN: a, as vminps(ONE, a) gives
    const int j = (int)(to_bits(af) >> L::SHIFT) - L::BASE;
    const int i = (j < 0 ? 0 : j) & 31;  // as vpermt2ps reads an index
    const float t = af - L::rows[0][i];
    float p = L::rows[L::DEG + 1][i];
    for (int k = L::DEG; k >= 1; --k) p = std::fma(t, p, L::rows[k][i]);  // vfmadd: one rounding, as a lane's
    return from_bits<float>(to_bits(p) | (to_bits(z) & 0x80000000u));
}

#if defined(__AVX512F__)
#include <immintrin.h>
#define MLP_XP_TANH_LOOKUP 1
// (GCC 12's -Wall warns of the unused, undefined passthrough operand that its intrinsics' headers give every
// unmasked AVX-512 operation, a false alarm: gcc.gnu.org/PR105593. clang has no such warning, and would warn of the
// unknown option.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// tanh_lookup on 16 lanes, the table's rows in lo (entries 0 to 15) and hi (16 to 31).
__attribute__((always_inline)) static inline __m512 tanh_lookup16(__m512 x, const __m512* lo, const __m512* hi) {
    typedef TanhTable L;
    const __m512i bits = _mm512_castps_si512(x);
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)));
    const __m512 af = _mm512_min_ps(_mm512_set1_ps(L::ONE), a);
    const __m512i base = _mm512_set1_epi32(L::BASE);
    const __m512i j = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_castps_si512(af), L::SHIFT), base);
    const __m512i i = _mm512_max_epi32(j, _mm512_setzero_si512());
    const __m512 t = _mm512_sub_ps(af, _mm512_permutex2var_ps(lo[0], i, hi[0]));
    __m512 p = _mm512_permutex2var_ps(lo[L::DEG + 1], i, hi[L::DEG + 1]);
    for (int k = L::DEG; k >= 1; --k) p = _mm512_fmadd_ps(t, p, _mm512_permutex2var_ps(lo[k], i, hi[k]));
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(p), bits, sign, 0xf8));  // p | (x & sign)
}

// z <- tanh(z + b) over a (rows x cols) float32 batch. Inlined into bias_act_rows, whose symbol
// tests/test_cpu_loops_codegen.py reads. No masked store is followed by a load of the next row: a load that overlaps
// a masked store in flight waits for it to complete (cannot be forwarded), and with a masked remainder per row
// 128 x 17 took 6.3 us against 3.3 us for 128 x 16 on the Xeon EMR. So a row of 16 or more ends with its last 16
// elements, computed from the inputs before the row's first store and stored after its others (overlapping them with
// the same values); narrower rows are taken as one flat array, the bias repeated in a pattern of cols 16-lane
// vectors (element p's is b[p % cols]), and only its end is masked.
__attribute__((always_inline)) static inline void bias_tanh_lookup(float* __restrict__ z, const float* __restrict__ b,
                                                                   i64 rows, i64 cols) {
    typedef TanhTable L;
    __m512 lo[L::DEG + 2], hi[L::DEG + 2];
    for (int k = 0; k < L::DEG + 2; ++k) {
        lo[k] = _mm512_load_ps(L::rows[k]);
        hi[k] = _mm512_load_ps(L::rows[k] + 16);
    }
    if (cols >= 16) {
        for (i64 r = 0; r < rows; ++r) {
            float* __restrict__ zr = z + r * cols;
            const i64 last = cols - 16;
            const __m512 x_end = _mm512_add_ps(_mm512_loadu_ps(zr + last), _mm512_loadu_ps(b + last));
            const __m512 end = tanh_lookup16(x_end, lo, hi);
            for (i64 c = 0; c < last; c += 16) {  // the last of these may overlap [last, cols)
                const __m512 x = _mm512_add_ps(_mm512_loadu_ps(zr + c), _mm512_loadu_ps(b + c));
                _mm512_storeu_ps(zr + c, tanh_lookup16(x, lo, hi));
            }
            _mm512_storeu_ps(zr + last, end);
        }
        return;
    }
    alignas(64) float pattern[16 * 16];
    for (i64 k = 0; k < 16 * cols; ++k) pattern[k] = b[k % cols];
    const i64 n = rows * cols, period = 16 * cols;
    i64 p = 0, q = 0;
    for (; p + period <= n; p += period) {  // whole patterns, then what is left of one
        for (q = 0; q < period; q += 16) {
            const __m512 x = _mm512_add_ps(_mm512_loadu_ps(z + p + q), _mm512_load_ps(pattern + q));
            _mm512_storeu_ps(z + p + q, tanh_lookup16(x, lo, hi));
        }
    }
    for (q = 0; p + 16 <= n; p += 16, q += 16) {
        const __m512 x = _mm512_add_ps(_mm512_loadu_ps(z + p), _mm512_load_ps(pattern + q));
        _mm512_storeu_ps(z + p, tanh_lookup16(x, lo, hi));
    }
    if (p < n) {  // the lanes past the end read zeros (a masked load does not fault) and are not stored
        const __mmask16 rest = (__mmask16)((1u << (n - p)) - 1);
        const __m512 x = _mm512_add_ps(_mm512_maskz_loadu_ps(rest, z + p), _mm512_load_ps(pattern + q));
        _mm512_mask_storeu_ps(z + p, rest, tanh_lookup16(x, lo, hi));
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define MLP_XP_TANH_LOOKUP 0
#endif

// ---- a layer ----

// z <- g(z + b), g sigmoid or tanh, over a narrow (rows x cols) batch taken as one flat array, FLAT_ROWS rows at
// a time against the bias repeated FLAT_ROWS times: a row whose width is not a multiple of the vector length ends
// in a scalar remainder, which at narrow widths costs sigmoid and tanh more than the row's vectors do (EPYC AVX2,
// float32, as the recorded step calls it: sigmoid at 128 x 10 0.84 us, row by row 4.2-4.3 us). The same function
// of the same elements: the same values, bit for bit, as row by row. FLAT_ROWS is the widest vector's length (float32
// in AVX-512): a block of FLAT_ROWS rows is a whole number of vectors at any width, and a row whose width is a
// multiple of it has no remainder at any vector length.
constexpr i64 FLAT_ROWS = 16, FLAT_MAX_COLS = 64;

template <typename T, int ACT>
MLP_XP_LOOP static void bias_act_flat(T* __restrict__ z, const T* __restrict__ b, i64 rows, i64 cols) {
    static_assert(ACT == ACT_SIGMOID || ACT == ACT_TANH, "the activations whose remainder costs");
    alignas(64) T pattern[FLAT_ROWS * FLAT_MAX_COLS];
    const i64 pattern_rows = rows < FLAT_ROWS ? rows : FLAT_ROWS, block = pattern_rows * cols, n = rows * cols;
    // (the bias once, then each element from the one a row before: a copy per row would become a call of memcpy
    // per row, which tests/test_cpu_loops_codegen.py refuses inside a loop)
    for (i64 c = 0; c < cols; ++c) pattern[c] = b[c];
    for (i64 k = cols; k < block; ++k) pattern[k] = pattern[k - cols];
    for (i64 start = 0; start < n; start += block) {
        T* __restrict__ zb = z + start;
        const i64 m = n - start < block ? n - start : block;
        for (i64 j = 0; j < m; ++j) {
            if constexpr (ACT == ACT_SIGMOID) {
                zb[j] = sigmoid_v(zb[j] + pattern[j]);
            } else {
                zb[j] = tanh_v(zb[j] + pattern[j]);
            }
        }
    }
}

// z <- g(z + b) over a (rows x cols) batch; the activation is a template argument so that the switch in
// k_activate folds away and the inner loop vectorizes. Leaky ReLU is k_activate's z < 0 ? a z : z written as
// z * (z < 0 ? a : 1) with select_bits (the same value: z * 1 is z, NaN, infinity and -0 included); sigmoid and
// tanh are sigmoid_v and tanh_v (k_activate's call the math library per element), narrow batches flat
// (bias_act_flat); float32 tanh is bias_tanh_lookup where the target has AVX-512.
template <typename T, int ACT>
MLP_XP_LOOP static void bias_act_rows(T* __restrict__ z, const T* __restrict__ b, i64 rows, i64 cols, T slope) {
#if MLP_XP_TANH_LOOKUP
    if constexpr (ACT == ACT_TANH && std::is_same_v<T, float>) {
        bias_tanh_lookup(z, b, rows, cols);
        return;
    }
#endif
    if constexpr (ACT == ACT_SIGMOID || ACT == ACT_TANH) {
        if (cols < FLAT_MAX_COLS && cols % FLAT_ROWS != 0) {
            bias_act_flat<T, ACT>(z, b, rows, cols);
            return;
        }
    }
    for (i64 r = 0; r < rows; ++r) {
        T* __restrict__ zr = z + r * cols;
        if constexpr (ACT == ACT_LEAKY_RELU) {
            const typename BitsOf<T>::type one = to_bits((T)1), a = to_bits(slope);
            for (i64 c = 0; c < cols; ++c) {
                const T x = zr[c] + b[c];
                zr[c] = x * select_bits<T>(x < (T)0, a, one);
            }
        } else if constexpr (ACT == ACT_SIGMOID) {
            for (i64 c = 0; c < cols; ++c) zr[c] = sigmoid_v(zr[c] + b[c]);
        } else if constexpr (ACT == ACT_TANH) {
            for (i64 c = 0; c < cols; ++c) zr[c] = tanh_v(zr[c] + b[c]);
        } else {
            MLP_XP_UNROLL4
            for (i64 c = 0; c < cols; ++c) zr[c] = k_activate(zr[c] + b[c], ACT, slope);
        }
    }
}

template <typename T>
static void bias_act(T* z, const T* b, i64 rows, i64 cols, int act, T slope) {
    switch (act) {
        case ACT_RELU: bias_act_rows<T, ACT_RELU>(z, b, rows, cols, slope); break;
        case ACT_LEAKY_RELU: bias_act_rows<T, ACT_LEAKY_RELU>(z, b, rows, cols, slope); break;
        case ACT_SIGMOID: bias_act_rows<T, ACT_SIGMOID>(z, b, rows, cols, slope); break;
        case ACT_TANH: bias_act_rows<T, ACT_TANH>(z, b, rows, cols, slope); break;
        default: bias_act_rows<T, ACT_IDENTITY>(z, b, rows, cols, slope); break;
    }
}

// dh <- dh * g'(z), with g' read off the layer's output h. For ReLU and leaky ReLU, g' is k_derivative's
// h > 0 ? 1 : a (a = 0 for ReLU; a NaN h compares false, so a) built with select_bits.
template <typename T, int ACT>
MLP_XP_LOOP static void act_backward_n(T* __restrict__ dh, const T* __restrict__ h, i64 n, T slope) {
    if constexpr (ACT == ACT_RELU || ACT == ACT_LEAKY_RELU) {
        const typename BitsOf<T>::type one = to_bits((T)1), a = to_bits(ACT == ACT_RELU ? (T)0 : slope);
        for (i64 e = 0; e < n; ++e) dh[e] = dh[e] * select_bits<T>(h[e] > (T)0, one, a);
    } else {
        for (i64 e = 0; e < n; ++e) dh[e] = dh[e] * k_derivative(h[e], ACT, slope);
    }
}

template <typename T>
static void act_backward(T* dh, const T* h, i64 n, int act, T slope) {
    switch (act) {
        case ACT_RELU: act_backward_n<T, ACT_RELU>(dh, h, n, slope); break;
        case ACT_LEAKY_RELU: act_backward_n<T, ACT_LEAKY_RELU>(dh, h, n, slope); break;
        case ACT_SIGMOID: act_backward_n<T, ACT_SIGMOID>(dh, h, n, slope); break;
        case ACT_TANH: act_backward_n<T, ACT_TANH>(dh, h, n, slope); break;
        default: break;
    }
}

// db[c] <- sum over rows of g[r, c] (+ accumulate db[c]); rows are added in order, one column-vector at a time.
template <typename T>
MLP_XP_LOOP static void bias_grad(const T* __restrict__ g, T* __restrict__ db, i64 rows, i64 cols, T accumulate) {
    if (accumulate == (T)0) {
        for (i64 c = 0; c < cols; ++c) db[c] = (T)0;
    } else {
        for (i64 c = 0; c < cols; ++c) db[c] *= accumulate;
    }
    for (i64 r = 0; r < rows; ++r) {
        const T* __restrict__ gr = g + r * cols;
        for (i64 c = 0; c < cols; ++c) db[c] += gr[c];
    }
}

// softmax + cross-entropy, the contract of softmax_xent in loss.cu, one row at a time:
//   loss_r = w[y_r] (lse_r - sum_c q_rc z_rc),  q_r = (1 - eps) onehot(y_r) + eps / C
//   z_r <- dL/dz_r = w[y_r] (softmax(z_r) - q_r) / rows  (write_grad),  else z_r <- softmax(z_r)
//   acc[0] += sum of loss_r, acc[1] += rows whose first maximum is at y_r; labels == nullptr: only p.
// A label outside [0, C) is never used as an index: its loss is NaN and its gradient row zero.
template <typename T>
MLP_XP_LOOP static void softmax_xent(T* __restrict__ z, const int* __restrict__ labels,
                                     const T* __restrict__ class_weight, const T* __restrict__ row_weight,
                                     double* __restrict__ acc, i64 rows, i64 C, int write_grad, T smoothing,
                                     T divisor) {
    if (C <= 0) return;  // no logits: nothing to read (the backend never sends this; the NumPy path raises)
    double loss_sum = 0.0, hits = 0.0;
    const bool grad = write_grad && labels != nullptr;
    const XentTarget<T> q = k_xent_target(smoothing, (int)C);
    for (i64 r = 0; r < rows; ++r) {
        T* __restrict__ zr = z + r * C;
        int yr = -1;
        bool valid = false;
        T wy = (T)1, sr = (T)1, zy = (T)0;
        if (labels != nullptr) {
            yr = labels[r];
            valid = yr >= 0 && yr < C;
            if (valid && class_weight != nullptr) wy = class_weight[yr];
            if (row_weight != nullptr) sr = row_weight[r];
            if (valid) zy = zr[yr];
        }
        T m = zr[0], zs = (T)0;
        i64 am = 0;
        for (i64 c = 0; c < C; ++c) {
            const T x = zr[c];
            if (x > m) {
                m = x;
                am = c;
            }
            zs += x;
        }
        // p = exp(x - max) / sum (see loss.cu for why not exp(x - lse)); exp(x - max) lands in z itself.
        T s = (T)0;
        for (i64 c = 0; c < C; ++c) {
            const T e = k_exp(zr[c] - m);
            zr[c] = e;
            s += e;
        }
        const T inv_sum = (T)1 / s;
        if (valid) {  // the row weight in double, as loss.cu: exact for sr = 1
            loss_sum += (double)(wy * k_xent_row_loss(k_log(s), m, zy, zs, (int)C, smoothing)) * (double)sr;
            hits += am == yr ? (double)sr : 0.0;
        } else if (labels != nullptr) {
            loss_sum += (double)k_neg_inf<T>() * 0.0;  // NaN: a bad label must not pass silently
        }
        if (grad) {
            const T scale = valid ? wy * sr / divisor : (T)0;
            for (i64 c = 0; c < C; ++c) zr[c] = k_xent_grad(zr[c] * inv_sum, c == yr, scale, q);
        } else {
            for (i64 c = 0; c < C; ++c) zr[c] *= inv_sum;
        }
    }
    if (labels != nullptr) {
        acc[0] += loss_sum;
        acc[1] += hits;
    }
}

// log(1 + e) for e in [0, 1] as 2 atanh(s), s = e / (2 + e) in [0, 1/3]: 2 (s + s^3/3 + s^5/5 + ...), cut after
// s^15 (float32) or s^33 (float64), where the first term left out is at most 1.3e-9 or 1.6e-18 of the value (at
// s = 1/3), far below either type's epsilon; and no cancellation, since s comes from e directly. No call, so that
// the loss's loop vectorizes (the math library's log1pf per element left it scalar).
template <typename T>
struct Log1pTerms;
template <>
struct Log1pTerms<float> {
    static constexpr int N = 8;
};
template <>
struct Log1pTerms<double> {
    static constexpr int N = 17;
};
template <typename T>
static inline T log1p_unit(T e) {
    const T s = e / ((T)2 + e), s2 = s * s;
    T sum = (T)1 / (T)(2 * Log1pTerms<T>::N - 1);
    for (int n = Log1pTerms<T>::N - 2; n >= 0; --n) sum = sum * s2 + (T)1 / (T)(2 * n + 1);
    return (T)2 * (s * sum);
}

// One row of sigmoid_bce, element by element (vectorized: tests/test_cpu_loops_codegen.py): each output's loss
// term max(z, 0) - z y + log(1 + e), e = exp(-|z|), into loss[k], whether its sign disagrees with its target into
// wrong[k], and z <- sr (p - y) / divisor (GRAD) or p, p = sigmoid(z) from the same e.
template <typename T, bool GRAD>
MLP_XP_LOOP static void sigmoid_bce_terms(T* __restrict__ z, const T* __restrict__ y, T* __restrict__ loss,
                                          int* __restrict__ wrong, i64 n, T sr, T divisor) {
    typedef ExpConsts<T> C;
    typedef typename BitsOf<T>::type U;
    for (i64 k = 0; k < n; ++k) {
        const T x = z[k], t = y[k], a = -abs_bits(x);
        const T e = select_bits<T>(a < C::LOWEST, (U)0, to_bits(exp_nonpositive(a)));  // NaN: kept
        loss[k] = (select_bits<T>(x > (T)0, to_bits(x), to_bits((T)0)) - x * t) + log1p_unit(e);
        wrong[k] = (int)(x > (T)0) ^ (int)(t >= (T)0.5);
        const T p = select_bits<T>(x < (T)0, to_bits(e), to_bits((T)1)) / ((T)1 + e);
        z[k] = GRAD ? sr * (p - t) / divisor : p;
    }
}

// sigmoid + binary cross-entropy, the contract of sigmoid_bce in loss.cu, one row at a time:
//   loss_r = s_r sum_k (max(z, 0) - z y + log(1 + exp(-|z|)))  (acc[0], the row's sum in float64),
//   hit_r = s_r when every output's (z > 0) equals its (y >= 1/2), else 0  (acc[1]),
//   z <- dL/dz = s_r (sigmoid(z) - y) / divisor  (write_grad),  else z <- sigmoid(z);
// row_weight (s) may be nullptr (all ones). The sums run in order over each row's terms (a float64 sum the
// compiler may not reorder), in pieces of up to PIECE outputs.
template <typename T>
MLP_XP_LOOP static void sigmoid_bce(T* __restrict__ z, const T* __restrict__ y, const T* __restrict__ row_weight,
                                    double* __restrict__ acc, i64 rows, i64 K, int write_grad, T divisor) {
    constexpr i64 PIECE = 256;
    T loss[PIECE];
    int wrong[PIECE];
    double loss_sum = 0.0, hits = 0.0;
    for (i64 r = 0; r < rows; ++r) {
        const T sr = row_weight != nullptr ? row_weight[r] : (T)1;
        double row = 0.0;
        int any_wrong = 0;
        for (i64 k0 = 0; k0 < K; k0 += PIECE) {
            const i64 n = K - k0 < PIECE ? K - k0 : PIECE;
            T* zr = z + r * K + k0;
            const T* yr = y + r * K + k0;
            if (write_grad) {
                sigmoid_bce_terms<T, true>(zr, yr, loss, wrong, n, sr, divisor);
            } else {
                sigmoid_bce_terms<T, false>(zr, yr, loss, wrong, n, sr, divisor);
            }
            for (i64 k = 0; k < n; ++k) {
                row += (double)loss[k];
                any_wrong |= wrong[k];
            }
        }
        loss_sum += row * (double)sr;
        hits += any_wrong ? 0.0 : (double)sr;
    }
    acc[0] += loss_sum;
    acc[1] += hits;
}

// The unweighted squared error's sum and gradient over the n elements of the batch, flat: element i's square goes
// to lane i % LANES in float64, and the lanes are added in a fixed order at the end. Why lanes: one running sum is
// an add per element, each waiting for the one before (4 cycles), and the loop ran at that speed (on the Xeon EMR a
// call at 128 x 100 took 16.4-17.4 us, 4.4-4.7 us with the lanes); the lanes' adds are independent, so it vectorizes
// (tests/test_cpu_loops_codegen.py), and the order of the adds is LANES's, not the vector width's.
constexpr i64 SQ_LANES = 8;
template <typename T, bool GRAD>
MLP_XP_LOOP static double squared_error_flat(T* __restrict__ z, const T* __restrict__ y, i64 n, T divisor) {
    double lane[SQ_LANES] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const i64 whole = n - n % SQ_LANES;
    for (i64 i = 0; i < whole; i += SQ_LANES) {
        for (i64 j = 0; j < SQ_LANES; ++j) {
            const T d = z[i + j] - y[i + j];
            lane[j] += (double)(d * d);
            if (GRAD) z[i + j] = d / divisor;
        }
    }
    for (i64 i = whole; i < n; ++i) {
        const T d = z[i] - y[i];
        lane[i - whole] += (double)(d * d);
        if (GRAD) z[i] = d / divisor;
    }
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// identity + half squared error, the contract of squared_error in loss.cu:
//   acc[0] += 1/2 sum_r s_r sum_k (z_rk - y_rk)^2,  acc[1] += sum_r s_r sum_k (z_rk - y_rk)^2  (in float64),
//   z <- dL/dz = s_r (z - y) / divisor  (write_grad; else z is left as it is: the identity output);
// row_weight (s) may be nullptr (all ones: squared_error_flat), else one row at a time. One call instead of the
// NumPy path's three to five, and a loss the recorded step can hold (mlp_xp/backend/program.py).
template <typename T>
MLP_XP_LOOP static void squared_error(T* __restrict__ z, const T* __restrict__ y, const T* __restrict__ row_weight,
                                      double* __restrict__ acc, i64 rows, i64 K, int write_grad, T divisor) {
    double sq = 0.0;
    if (row_weight == nullptr) {
        sq = write_grad ? squared_error_flat<T, true>(z, y, rows * K, divisor)
                        : squared_error_flat<T, false>(z, y, rows * K, divisor);
        acc[0] += 0.5 * sq;
        acc[1] += sq;
        return;
    }
    for (i64 r = 0; r < rows; ++r) {
        T* __restrict__ zr = z + r * K;
        const T* __restrict__ yr = y + r * K;
        const T sr = row_weight[r];
        double row = 0.0;
        if (write_grad) {
            for (i64 k = 0; k < K; ++k) {
                const T d = zr[k] - yr[k];
                row += (double)(d * d);
                zr[k] = sr * d / divisor;
            }
        } else {
            for (i64 k = 0; k < K; ++k) {
                const T d = zr[k] - yr[k];
                row += (double)(d * d);
            }
        }
        sq += row * (double)sr;
    }
    acc[0] += 0.5 * sq;
    acc[1] += sq;
}

// Subnormal numbers (|x| < 1.2e-38 in float32) cost the CPU a microcode assist per arithmetic operation, and
// momentum manufactures them: the velocity of a weight whose gradient stays zero (an input pixel that is always
// blank) decays by mu every step, through the subnormal range, in the GEMM that accumulates mu V and in the update.
// On MNIST-shaped data about 9% of V is subnormal at any time, and the first layer's gradient GEMM ran about 50%
// slower for it (benchmarks/README.md). The CPU backend therefore sets them to zero now and then (the optimizer
// asks for it every FLUSH_EVERY steps, mlp_xp/optim.py). What that changes: lr V below 1e-38 is under half an ulp
// of any weight with |W| > 2e-31 (float32; lr <= 1), so such weights move exactly as before; and a zeroed V
// differs from the subnormal one only where later gradients are below about 1e-31. Weights and gradients that
// small are not a trained MLP's working range.
template <typename T>
MLP_XP_LOOP static void flush_subnormals(T* __restrict__ a, i64 n) {
    const T tiny = k_tiny<T>();
    for (i64 i = 0; i < n; ++i) a[i] = k_fabs(a[i]) < tiny ? (T)0 : a[i];
}

// common.cuh's k_regularized, grad + l2 w + l1 sign(w), with sign(w) built by select_bits: the plain select
// puts l1 * 0 on one side of a branch on the sign of w, which g++ does not if-convert without AVX-512 (see
// select_bits), and the signs of the weights follow no pattern. The same value: sign(w) is 1, -1 or 0 (a NaN
// w: 0) either way.
template <typename T>
static inline T sign_of(T w) {
    const typename BitsOf<T>::type zero = to_bits((T)0), one = to_bits((T)1), minus_one = to_bits((T)-1);
    return select_bits<T>(w > (T)0, one, to_bits(select_bits<T>(w < (T)0, minus_one, zero)));
}

template <typename T>
static inline T regularized(T grad, T w, T l2, T l1) {
    return grad + l2 * w + l1 * sign_of(w);
}

// g[0, n) += l1 sign(w), the SGD family's L1 penalty (its L2 is a BLAS axpy before it, mlp_xp/backend/numpy_ops.py).
// It was np.sign and an axpy, NumPy code a recorded step cannot hold; the same numbers (l1 sign(w) is exact, so
// one rounding either way), but for a NaN weight, whose sign is 0 here as in k_regularized.
template <typename T>
MLP_XP_LOOP static void add_l1(T* __restrict__ g, const T* __restrict__ w, i64 n, T l1) {
    for (i64 i = 0; i < n; ++i) g[i] = g[i] + l1 * sign_of(w[i]);
}

// adam (the contract of adam_update in optimizer.cu), one pass instead of the NumPy path's thirteen, with
// common.cuh's k_adam_step storing a subnormal m as 0 (ZERO_SUBNORMAL_M): m decays by beta1 like momentum's V.
template <typename T, bool PENALIZED>
MLP_XP_LOOP static void adam_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                   T* __restrict__ v, i64 n, T lr, T beta1, T beta2, T eps, T c1, T c2, T l2, T l1) {
    for (i64 i = 0; i < n; ++i) {
        T w = p[i], mi = m[i], vi = v[i];
        const T G = PENALIZED ? regularized(g[i], w, l2, l1) : g[i];
        k_adam_step<true>(w, G, mi, vi, lr, beta1, beta2, eps, c1, c2);
        p[i] = w;
        m[i] = mi;
        v[i] = vi;
    }
}

template <typename T>
static void adam_update(T* p, const T* g, T* m, T* v, i64 n, i64 n_weights, T lr, T beta1, T beta2, T eps, T c1,
                        T c2, T l2, T l1) {
    const i64 w = n_weights;  // the weights are the prefix [0, w): only they are penalized
    if (l2 != (T)0 || l1 != (T)0) {
        adam_range<T, true>(p, g, m, v, w, lr, beta1, beta2, eps, c1, c2, l2, l1);
    } else {
        adam_range<T, false>(p, g, m, v, w, lr, beta1, beta2, eps, c1, c2, l2, l1);
    }
    adam_range<T, false>(p + w, g + w, m + w, v + w, n - w, lr, beta1, beta2, eps, c1, c2, l2, l1);
}

// The exported names: <op>_f32 and <op>_f64, called through ctypes (argument types in cpu_loops.py).
#define MLP_XP_EXPORT(T, SUFFIX)                                                                                   \
    extern "C" void bias_act_##SUFFIX(T* z, const T* b, i64 rows, i64 cols, int act, T slope) {                     \
        bias_act<T>(z, b, rows, cols, act, slope);                                                                 \
    }                                                                                                              \
    extern "C" void act_backward_##SUFFIX(T* dh, const T* h, i64 n, int act, T slope) {                             \
        act_backward<T>(dh, h, n, act, slope);                                                                     \
    }                                                                                                              \
    extern "C" void bias_grad_##SUFFIX(const T* g, T* db, i64 rows, i64 cols, T accumulate) {                       \
        bias_grad<T>(g, db, rows, cols, accumulate);                                                               \
    }                                                                                                              \
    extern "C" void softmax_xent_##SUFFIX(T* z, const int* y, const T* w, const T* s, double* acc, i64 rows,       \
                                          i64 C, int write_grad, T smoothing, T divisor) {                         \
        softmax_xent<T>(z, y, w, s, acc, rows, C, write_grad, smoothing, divisor);                                 \
    }                                                                                                              \
    extern "C" void squared_error_##SUFFIX(T* z, const T* y, const T* s, double* acc, i64 rows, i64 K,              \
                                           int write_grad, T divisor) {                                            \
        squared_error<T>(z, y, s, acc, rows, K, write_grad, divisor);                                              \
    }                                                                                                              \
    extern "C" void sigmoid_bce_##SUFFIX(T* z, const T* y, const T* s, double* acc, i64 rows, i64 K,                \
                                         int write_grad, T divisor) {                                              \
        sigmoid_bce<T>(z, y, s, acc, rows, K, write_grad, divisor);                                                \
    }                                                                                                              \
    extern "C" void add_l1_##SUFFIX(T* g, const T* w, i64 n, T l1) { add_l1<T>(g, w, n, l1); }                     \
    extern "C" void adam_update_##SUFFIX(T* p, const T* g, T* m, T* v, i64 n, i64 n_weights, T lr, T beta1,       \
                                         T beta2, T eps, T c1, T c2, T l2, T l1) {                                 \
        adam_update<T>(p, g, m, v, n, n_weights, lr, beta1, beta2, eps, c1, c2, l2, l1);                           \
    }                                                                                                              \
    extern "C" void flush_subnormals_##SUFFIX(T* a, i64 n) { flush_subnormals<T>(a, n); }

MLP_XP_EXPORT(float, f32)
MLP_XP_EXPORT(double, f64)

// 1 where this build fuses the exps' and tanh's multiply-adds (mul_add, above), else 0: for mlp-xp info, the
// benchmarks' machine line and the tests.
extern "C" int fused_multiply_add() { return MLP_XP_FMA; }

// 1 where this build's float32 bias + tanh looks tanh up (bias_tanh_lookup, AVX-512), else 0 (tanh_v).
extern "C" int tanh_by_lookup() { return MLP_XP_TANH_LOOKUP; }

// out <- tanh_lookup(z), one element at a time, on any CPU: the lookup's values where bias + tanh does not use it
// (the tests, tools/fit_tanh_table.py --check).
extern "C" void tanh_lookup_f32(const float* z, float* out, i64 n) {
    for (i64 i = 0; i < n; ++i) out[i] = tanh_lookup(z[i]);
}

// ---- the batch gather ----
// out row i <- src row idx[i], rows of row_bytes bytes (any dtype: features, int32 labels, row weights). An index
// outside [0, n_src) is clamped into it, as numpy_path's np.take(mode="clip") does (the op's contract asks for
// rows in range: the trainer passes a permutation).
extern "C" void gather_rows(const char* src, i64 n_src, i64 row_bytes, const i64* idx, i64 n, char* out) {
    for (i64 i = 0; i < n; ++i) {
        const i64 j = idx[i] < 0 ? 0 : (idx[i] >= n_src ? n_src - 1 : idx[i]);
        std::memcpy(out + i * row_bytes, src + j * row_bytes, (size_t)row_bytes);
    }
}

// ---- the step program (mlp_xp/backend/program.py) ----
// A training step recorded once as the list of calls it makes into this library and into BLAS, then replayed
// by one call per step: the CPU's counterpart of a CUDA graph. Python's dispatch of the step's ops (about 85 us
// a step for a three-layer model, while the second core waits) is paid once, at the recording.
//
// An instruction is an op code and the op's arguments, one 64-bit word each, in the order of its exported
// signature (a BLAS call: the function's address, then CBLAS's arguments). A word may instead come from the
// step: slot s in [0, 16) scales it by scalars[s] (the learning rate, Adam's corrections, the L2 penalty, the
// loss's divisor: program.py's N_STEP_VALUES), s in [16, 32) adds
// it as an offset to pointers[s - 16] (the batch's row indices).
union Word {
    i64 i;
    double d;
    void* p;
};
constexpr int MAX_WORDS = 16, POINTER_SLOT = 16;
struct Instr {
    int32_t op, n_words;
    int8_t slot[MAX_WORDS];
    Word w[MAX_WORDS];
};

// The op codes, named as their exports (the BLAS ones by routine, dtype and index width); program.py reads
// them through program_op, so that the numbering lives here only.
#define MLP_XP_PROGRAM_OPS(X)                                                                                      \
    X(bias_act_f32) X(bias_act_f64) X(act_backward_f32) X(act_backward_f64) X(bias_grad_f32) X(bias_grad_f64)      \
    X(softmax_xent_f32) X(softmax_xent_f64) X(adam_update_f32) X(adam_update_f64) X(flush_subnormals_f32)         \
    X(flush_subnormals_f64) X(squared_error_f32) X(squared_error_f64) X(sigmoid_bce_f32) X(sigmoid_bce_f64)        \
    X(add_l1_f32) X(add_l1_f64) X(gather_rows) X(gemm_f32_i64) X(gemm_f64_i64) X(gemm_f32_i32) X(gemm_f64_i32)     \
    X(axpy_f32_i64) X(axpy_f64_i64) X(axpy_f32_i32) X(axpy_f64_i32) X(axpby_f32_i64) X(axpby_f64_i64)             \
    X(axpby_f32_i32) X(axpby_f64_i32)
#define MLP_XP_OP_ENUM(name) OP_##name,
#define MLP_XP_OP_NAME(name) #name,
enum ProgramOp { MLP_XP_PROGRAM_OPS(MLP_XP_OP_ENUM) N_PROGRAM_OPS };
static const char* const PROGRAM_OP_NAMES[] = {MLP_XP_PROGRAM_OPS(MLP_XP_OP_NAME)};

extern "C" int program_op(const char* name) {
    for (int k = 0; k < N_PROGRAM_OPS; ++k)
        if (std::strcmp(name, PROGRAM_OP_NAMES[k]) == 0) return k;
    return -1;
}

// CBLAS's routines, their enums passed as int (the C ABI of an enum), I the index type of the BLAS build.
template <typename T, typename I>
using GemmFn = void (*)(int, int, int, I, I, I, T, const T*, I, const T*, I, T, T*, I);
template <typename T, typename I>
using AxpyFn = void (*)(I, T, const T*, I, T*, I);
template <typename T, typename I>
using AxpbyFn = void (*)(I, T, const T*, I, T, T*, I);

template <typename F>
static F function_at(const Word& w) {
    return reinterpret_cast<F>(static_cast<uintptr_t>(w.i));
}

template <typename T, typename I>
static void call_gemm(const Word* w) {
    function_at<GemmFn<T, I>>(w[0])((int)w[1].i, (int)w[2].i, (int)w[3].i, (I)w[4].i, (I)w[5].i, (I)w[6].i,
                                    (T)w[7].d, (const T*)w[8].p, (I)w[9].i, (const T*)w[10].p, (I)w[11].i,
                                    (T)w[12].d, (T*)w[13].p, (I)w[14].i);
}

template <typename T, typename I>
static void call_axpy(const Word* w) {
    function_at<AxpyFn<T, I>>(w[0])((I)w[1].i, (T)w[2].d, (const T*)w[3].p, (I)w[4].i, (T*)w[5].p, (I)w[6].i);
}

template <typename T, typename I>
static void call_axpby(const Word* w) {
    function_at<AxpbyFn<T, I>>(w[0])((I)w[1].i, (T)w[2].d, (const T*)w[3].p, (I)w[4].i, (T)w[5].d, (T*)w[6].p,
                                     (I)w[7].i);
}

// The loops' cases of run_program's switch, for dtype T with suffix S.
#define MLP_XP_LOOP_CASES(T, S)                                                                                    \
    case OP_bias_act_##S: bias_act<T>((T*)w[0].p, (const T*)w[1].p, w[2].i, w[3].i, (int)w[4].i, (T)w[5].d); break; \
    case OP_act_backward_##S: act_backward<T>((T*)w[0].p, (const T*)w[1].p, w[2].i, (int)w[3].i, (T)w[4].d); break;  \
    case OP_bias_grad_##S: bias_grad<T>((const T*)w[0].p, (T*)w[1].p, w[2].i, w[3].i, (T)w[4].d); break;          \
    case OP_softmax_xent_##S:                                                                                      \
        softmax_xent<T>((T*)w[0].p, (const int*)w[1].p, (const T*)w[2].p, (const T*)w[3].p, (double*)w[4].p,      \
                        w[5].i, w[6].i, (int)w[7].i, (T)w[8].d, (T)w[9].d);                                        \
        break;                                                                                                     \
    case OP_sigmoid_bce_##S:                                                                                       \
        sigmoid_bce<T>((T*)w[0].p, (const T*)w[1].p, (const T*)w[2].p, (double*)w[3].p, w[4].i, w[5].i, (int)w[6].i, \
                       (T)w[7].d);                                                                                 \
        break;                                                                                                     \
    case OP_squared_error_##S:                                                                                     \
        squared_error<T>((T*)w[0].p, (const T*)w[1].p, (const T*)w[2].p, (double*)w[3].p, w[4].i, w[5].i,         \
                         (int)w[6].i, (T)w[7].d);                                                                  \
        break;                                                                                                     \
    case OP_add_l1_##S: add_l1<T>((T*)w[0].p, (const T*)w[1].p, w[2].i, (T)w[3].d); break;                       \
    case OP_adam_update_##S:                                                                                       \
        adam_update<T>((T*)w[0].p, (const T*)w[1].p, (T*)w[2].p, (T*)w[3].p, w[4].i, w[5].i, (T)w[6].d, (T)w[7].d, \
                       (T)w[8].d, (T)w[9].d, (T)w[10].d, (T)w[11].d, (T)w[12].d, (T)w[13].d);                      \
        break;                                                                                                     \
    case OP_flush_subnormals_##S: flush_subnormals<T>((T*)w[0].p, w[1].i); break;

// Runs the n instructions of prog in order; 0, or k + 1 when instruction k has an op code this build does not know
// or more words than an instruction holds (a program recorded against another build): then none has run, so that
// no step is ever applied in part.
extern "C" i64 run_program(const Instr* prog, i64 n, const double* scalars, char* const* pointers) {
    for (i64 k = 0; k < n; ++k)
        if (prog[k].n_words < 0 || prog[k].n_words > MAX_WORDS || prog[k].op < 0 || prog[k].op >= N_PROGRAM_OPS)
            return k + 1;
    for (i64 k = 0; k < n; ++k) {
        const Instr& in = prog[k];
        Word w[MAX_WORDS];
        for (int j = 0; j < in.n_words; ++j) {
            const int s = in.slot[j];
            w[j] = in.w[j];
            if (s >= POINTER_SLOT) {
                w[j].p = pointers[s - POINTER_SLOT] + in.w[j].i;
            } else if (s >= 0) {
                w[j].d = in.w[j].d * scalars[s];
            }
        }
        switch (in.op) {
            MLP_XP_LOOP_CASES(float, f32)
            MLP_XP_LOOP_CASES(double, f64)
            case OP_gather_rows:
                gather_rows((const char*)w[0].p, w[1].i, w[2].i, (const i64*)w[3].p, w[4].i, (char*)w[5].p);
                break;
            case OP_gemm_f32_i64: call_gemm<float, int64_t>(w); break;
            case OP_gemm_f64_i64: call_gemm<double, int64_t>(w); break;
            case OP_gemm_f32_i32: call_gemm<float, int32_t>(w); break;
            case OP_gemm_f64_i32: call_gemm<double, int32_t>(w); break;
            case OP_axpy_f32_i64: call_axpy<float, int64_t>(w); break;
            case OP_axpy_f64_i64: call_axpy<double, int64_t>(w); break;
            case OP_axpy_f32_i32: call_axpy<float, int32_t>(w); break;
            case OP_axpy_f64_i32: call_axpy<double, int32_t>(w); break;
            case OP_axpby_f32_i64: call_axpby<float, int64_t>(w); break;
            case OP_axpby_f64_i64: call_axpby<double, int64_t>(w); break;
            case OP_axpby_f32_i32: call_axpby<float, int32_t>(w); break;
            case OP_axpby_f64_i32: call_axpby<double, int32_t>(w); break;
            default: break;  // (unreachable: every op code was checked before the first instruction ran)
        }
    }
    return 0;
}
