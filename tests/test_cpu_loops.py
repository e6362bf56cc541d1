"""The compiled CPU loops of kernels/cpu.cpp: how they are built, found and switched off, and the values they
must give that the op contract (tests/test_ops.py, backend cpu) does not pin down by itself: hand-computed
numbers, NaN passing through, subnormal zeroing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess

import numpy as np
import pytest

from mlp_xp.backend import cpu_loops
from mlp_xp.backend.kernels import kernel_dir
from mlp_xp.backend.numpy_ops import NumpyOps


def _kernels_or_skip():
    k = cpu_loops.find()
    if k is None:
        if os.environ.get("MLP_XP_REQUIRE_CPU_LOOPS") == "1":  # CI: a missing build must fail, not skip
            pytest.fail(f"MLP_XP_REQUIRE_CPU_LOOPS=1 but {cpu_loops.status()}")
        pytest.skip(f"no compiled CPU kernels here: {cpu_loops.status()}")
    return k


DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def k():
    return _kernels_or_skip()


X86_64 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(scope="module", params=["native", "x86-64-v2"])
def each_form(request, tmp_path_factory):
    """The build in use (-march=native: fused multiply-adds where the CPU has FMA) and one for x86-64-v2, which has
    no FMA: cpu.cpp's mul_add rounds differently in the two, and each must be as accurate (x86-64 only: elsewhere
    the one in use)."""
    native = _kernels_or_skip()
    if request.param == "native":
        return native
    if not X86_64:
        pytest.skip("x86-64-v2 is an x86-64 target")
    lib = tmp_path_factory.mktemp("v2") / "cpu-v2.so"
    flags = ["-O3", "-march=x86-64-v2", *cpu_loops.COMMON_FLAGS, "-Werror"]  # as cpu_loops.build does, CI's -Werror
    cmd = [*cpu_loops.compiler(), *flags, "-I", str(kernel_dir())]
    r = subprocess.run([*cmd, str(kernel_dir() / cpu_loops.SOURCE), "-o", str(lib)], capture_output=True, text=True)
    if r.returncode and "x86-64-v2" in r.stderr:
        pytest.skip(f"the compiler does not know -march=x86-64-v2 (GCC 11 or later does): {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    loops = cpu_loops.CompiledLoops(ctypes.CDLL(str(lib)), lib, "x86-64-v2")
    assert not loops.fma and not loops.tanh_lookup  # (no AVX-512 either: float32 tanh is tanh_v there)
    return loops


@pytest.mark.skipif(not X86_64, reason="reads x86-64's CPU flags")
def test_the_build_fuses_where_the_cpu_has_fma(k):
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    if "-march=native" not in cpu_loops.status():
        pytest.skip(f"not built for this CPU: {cpu_loops.status()}")
    assert k.fma == ("fma" in flags)
    assert ("with FMA" if k.fma else "without FMA") in cpu_loops.status()
    assert k.tanh_lookup == ("avx512f" in flags)  # float32 tanh by table lookup, with AVX-512 only
    assert ("float32 tanh by lookup" in cpu_loops.status()) == k.tanh_lookup


def test_softmax_xent_by_hand(k):
    # z = (0, ln 3): p = (1/4, 3/4); label 1: loss = -ln(3/4), dL/dz = p - onehot = (1/4, -1/4), a hit.
    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    k.softmax_xent(z, np.array([1], np.int32), acc)
    np.testing.assert_allclose(z, [[0.25, -0.25]], rtol=1e-14)
    np.testing.assert_allclose(acc, [-np.log(0.75), 1.0], rtol=1e-14)
    # label 0 with a class weight of 2 on it, batch of 1: loss 2 ln 4, gradient 2 (p - onehot(0)), no hit
    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    k.softmax_xent(z, np.array([0], np.int32), acc, class_weight=np.array([2.0, 1.0]))
    np.testing.assert_allclose(z, [[2 * (0.25 - 1), 2 * 0.75]], rtol=1e-14)
    np.testing.assert_allclose(acc, [2 * np.log(4.0), 0.0], rtol=1e-14)


def test_softmax_xent_bad_label_gives_nan_and_a_zero_row(k):
    z, acc = np.ones((3, 4), np.float32), np.zeros(2)
    k.softmax_xent(z, np.array([1, 4, -1], np.int32), acc)
    assert np.isnan(acc[0])
    assert (z[1:] == 0).all()
    np.testing.assert_allclose(z[0], (np.full(4, 0.25) - [0, 1, 0, 0]) / 3, rtol=1e-6)


def test_softmax_xent_probabilities_without_labels(k):
    z = np.random.default_rng(0).standard_normal((5, 7))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    acc = np.zeros(2)
    k.softmax_xent(z, None, acc, write_grad=False)
    np.testing.assert_allclose(z, p, rtol=1e-14)
    assert (acc == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_error_by_hand(k, dtype):
    z, y = np.array([[1.0, 2.0], [3.0, 5.0]], dtype), np.array([[0.0, 2.0], [1.0, 1.0]], dtype)  # z - y: 1 0, 2 4
    acc, g = np.zeros(2), z.copy()
    k.squared_error(g, y, acc)
    np.testing.assert_array_equal(acc, [10.5, 21.0])  # rows 1 and 20: half of 21, and 21
    np.testing.assert_array_equal(g, np.array([[0.5, 0.0], [1.0, 2.0]], dtype))  # (z - y) / 2 rows
    acc, g = np.zeros(2), z.copy()
    k.squared_error(g, y, acc, sample_weight=np.array([2.0, 0.5], dtype), divisor=2.5)
    np.testing.assert_array_equal(acc, [6.0, 12.0])  # 2 * 1 + 0.5 * 20
    np.testing.assert_allclose(g, np.array([[0.8, 0.0], [0.4, 0.8]], dtype), rtol=1e-7)  # s_r (z - y) / 2.5
    acc, p = np.zeros(2), z.copy()
    k.squared_error(p, y, acc, write_grad=False)
    np.testing.assert_array_equal(p, z)  # the identity output: z as it was
    np.testing.assert_array_equal(acc, [10.5, 21.0])
    acc, g = np.zeros(2), np.array([[np.nan, 1.0]], dtype)
    k.squared_error(g, np.zeros((1, 2), dtype), acc)
    assert np.isnan(acc).all() and np.isnan(g[0, 0]) and g[0, 1] == 1.0  # a NaN output's loss is NaN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (4, 2), (3, 3), (17, 1), (128, 10), (101, 3)])
def test_squared_error_sums_every_element(k, dtype, shape):
    # unweighted, the sum runs in lanes over the flat batch, with a tail: z - y = 1, 2, ..., n, whose squares sum
    # to n (n + 1) (2n + 1) / 6, exactly, and each gradient is (z - y) / rows
    n = shape[0] * shape[1]
    d = np.arange(1, n + 1, dtype=dtype).reshape(shape)
    y = np.full(shape, 0.25, dtype)
    z = d + y
    acc, g = np.zeros(2), z.copy()
    k.squared_error(g, y, acc)
    total = n * (n + 1) * (2 * n + 1) // 6
    np.testing.assert_array_equal(acc, [total / 2, total])
    np.testing.assert_array_equal(g, d / dtype(shape[0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_by_hand(each_form, dtype):
    z, y = np.array([[0.0, 2.0], [-3.0, 4.0]], dtype), np.array([[1.0, 1.0], [0.0, 1.0]], dtype)
    s = 1 / (1 + np.exp(-z.astype(np.float64)))
    # max(z, 0) - z y + log(1 + e^-|z|), by row: log 2 + log(1 + e^-2); log(1 + e^-3) + log(1 + e^-4)
    loss = np.log(2) + np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-3.0)) + np.log1p(np.exp(-4.0))
    acc, g = np.zeros(2), z.copy()
    each_form.sigmoid_bce(g, y, acc)
    np.testing.assert_allclose(acc, [loss, 1.0], rtol=1e-6)  # row 0 wrong (z = 0 is not > 0), row 1 right
    np.testing.assert_allclose(g, (s - y) / 2, rtol=1e-6, atol=1e-7)  # (sigmoid(z) - y) / 2 rows
    acc, g = np.zeros(2), z.copy()
    each_form.sigmoid_bce(g, y, acc, sample_weight=np.array([2.0, 0.5], dtype), divisor=2.5)
    row0 = np.log(2) + np.log1p(np.exp(-2.0))
    np.testing.assert_allclose(acc, [2 * row0 + 0.5 * (loss - row0), 0.5], rtol=1e-6)
    np.testing.assert_allclose(g, np.array([[2.0], [0.5]]) * (s - y) / 2.5, rtol=1e-6, atol=1e-7)
    acc, p = np.zeros(2), z.copy()
    each_form.sigmoid_bce(p, y, acc, write_grad=False)
    np.testing.assert_allclose(p, s, rtol=1e-6)  # the output p
    acc, g = np.zeros(2), np.array([[np.nan, 1.0]], dtype)
    each_form.sigmoid_bce(g, np.ones((1, 2), dtype), acc)
    assert np.isnan(acc[0]) and acc[1] == 0 and np.isnan(g[0, 0])  # a NaN logit: NaN loss, a wrong row


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_is_close_to_the_exact_loss_over_the_whole_range(each_form, dtype):
    """cpu.cpp's own exp and log1p (a series in s = e / (2 + e)), row by row against float64's log1p and exp:
    a few float32 ulps (float64: a few parts in 10^16), from tiny logits to where exp(-|z|) underflows."""
    z = np.concatenate([np.linspace(-120, 120, 4001), [0.0, 1e-30, -1e-30, 1e-8, -1e-8]]).astype(dtype)
    z = z.reshape(-1, 1)  # (a row each: each row's loss is one term)
    y = (np.arange(len(z)) % 2).astype(dtype).reshape(-1, 1)
    x = z.astype(np.float64)
    exact = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    terms, g = [], z.copy()
    for r in range(len(z)):  # (one row a call: acc[0] is that row's loss)
        acc = np.zeros(2)
        each_form.sigmoid_bce(g[r : r + 1], y[r : r + 1], acc, write_grad=False)
        terms.append(acc[0])
    eps = np.finfo(dtype).eps
    # the term's own rounding: max(z, 0) - z y is exact, log1p(e) within a few ulps of itself
    np.testing.assert_allclose(terms, exact[:, 0], rtol=4 * eps, atol=4 * eps * np.log(2))
    # p, from the same e; 0 where it is below the smallest normal number (sigmoid_v's, as bias + sigmoid's)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-x)), rtol=4 * eps, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_l1_adds_l1_times_the_sign(k, dtype):
    w = np.array([2.0, -3.0, 0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40], dtype)
    g = np.array([1.0, 1.0, -0.0, 0.5, 0.0, 0.0, 1.0, 0.0], dtype)
    k.add_l1(g, w, 0.25)
    # sign 1, -1, 0, 0, 1, -1, 0 (NaN: 0, as the CUDA kernels' k_regularized), 1 (a subnormal weight is positive)
    np.testing.assert_array_equal(g, np.array([1.25, 0.75, 0.0, 0.5, 0.25, -0.25, 1.0, 0.25], dtype))
    assert not np.signbit(g[2])  # -0 + 0.25 * 0 is +0, as in the axpy it replaces (0.25 * 0 + -0)


def test_relu_lets_nan_through(k):
    # divergence must stay visible: NaN + b is NaN, and ReLU keeps it (as NumPy's maximum does)
    z = np.array([[np.nan, -1.0, 2.0]], np.float32)
    k.bias_act(z, np.zeros(3, np.float32), "relu", 0.0)
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2


def test_bias_grad_ignores_a_stale_output_when_not_accumulating(k):
    db = np.full(3, np.nan)
    k.bias_grad(np.ones((4, 3)), db)
    assert (db == 4).all()


# ---- sigmoid and tanh: cpu.cpp's own exp, in ulps against long double ----

LONG = np.longdouble
#: The most error allowed, in ulps of the exact value. Measured on these sweeps, with FMA (cpu.cpp's mul_add fused) and
#: without (x86-64-v2) alike: sigmoid 2.25 (float32) and 2.06 (float64), tanh (tanh_v) 1.34 and 1.45; over every
#: float32 with |z| in [2^-30, 128) (each sign for sigmoid), either way: sigmoid 2.40, tanh 1.40. Where the build has
#: AVX-512, float32 tanh is the table lookup, held to LOOKUP_MAX_ULPS below. (The math library's tanhf, which the
#: loops called before issue 15: 2.1; NumPy's tanh 1.4.)
MAX_ULPS = {"sigmoid": 2.5, "tanh": 1.6}


def _inputs(dtype) -> np.ndarray:
    """Dense sweeps over where sigmoid and tanh bend and saturate, every magnitude from the smallest subnormal
    number to the largest finite one, each sign, and the special values."""
    fi = np.finfo(dtype)
    mag = np.geomspace(LONG(fi.smallest_subnormal), LONG(fi.max), 200_001)
    parts = [np.linspace(-40, 40, 400_001), np.linspace(-1, 1, 200_001), mag, -mag, np.linspace(-750, 750, 30_001)]
    return np.concatenate([*parts, [0.0, -0.0, np.inf, -np.inf]]).astype(dtype)


def _exact(activation: str, x: np.ndarray) -> np.ndarray:
    xl = x.astype(LONG)
    with np.errstate(over="ignore"):
        return np.tanh(xl) if activation == "tanh" else 1 / (1 + np.exp(-xl))


def _ulps(got: np.ndarray, exact: np.ndarray, dtype) -> np.ndarray:
    """|got - exact| in units in the last place of exact in ``dtype`` (below the smallest normal number, in units
    of the subnormal numbers' spacing)."""
    fi = np.finfo(dtype)
    binade = np.floor(np.log2(np.maximum(np.abs(exact), LONG(fi.tiny)))).astype(int)
    return np.abs(got.astype(LONG) - exact) / np.ldexp(LONG(1), binade - fi.nmant)


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs a long double wider than float64")
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_within_a_few_ulps(each_form, activation, dtype):
    x = _inputs(dtype)
    z = x.reshape(1, -1).copy()  # one long row: the vector loop and its remainder
    each_form.bias_act(z, np.zeros(z.shape[1], dtype), activation, 0.0)
    got, exact = z[0], _exact(activation, x)
    normal = np.abs(exact) >= np.finfo(dtype).tiny
    err = _ulps(got[normal], exact[normal], dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULPS[activation], (
        f"{activation}({x[normal][worst]!r}) = {got[normal][worst]!r}, exact {exact[normal][worst]}: "
        f"{err[worst]:.2f} ulp"
    )
    # below the smallest normal number: sigmoid gives 0 (never a subnormal), tanh(z) = z for a subnormal z
    want = 0 if activation == "sigmoid" else x[~normal]
    np.testing.assert_array_equal(got[~normal], want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_of_special_values(each_form, dtype):
    fi = np.finfo(dtype)
    nan, inf, tiny, sub, big = np.nan, np.inf, fi.tiny, fi.smallest_subnormal, fi.max
    z0 = np.array([nan, -inf, inf, -0.0, 0.0, tiny, -sub, big, -big, 1e-30, -1e-30], dtype)
    want = {
        "sigmoid": [nan, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0, 0.5, 0.5],
        "tanh": [nan, -1.0, 1.0, -0.0, 0.0, tiny, -sub, 1.0, -1.0, 1e-30, -1e-30],
    }
    for activation, w in want.items():
        z = np.tile(z0, (3, 3))  # 33 columns: the vector loop and its remainder
        each_form.bias_act(z, np.full(z.shape[1], -0.0, dtype), activation, 0.0)  # z + -0 keeps a zero's sign
        w = np.tile(np.array(w, dtype), (3, 3))
        np.testing.assert_array_equal(z, w, err_msg=activation)
        np.testing.assert_array_equal(np.signbit(z[~np.isnan(w)]), np.signbit(w[~np.isnan(w)]), err_msg=activation)


# ---- float32 tanh by table lookup (cpu.cpp, TanhTable) ----

#: Over every float32 in [0, 128) the lookup is within 0.994 ulp (tools/fit_tanh_table.py --check).
LOOKUP_MAX_ULPS = 1.0


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs a long double wider than float64")
def test_tanh_lookup_within_an_ulp(k):
    # the scalar lookup, on any CPU: the same operations as each lane of the AVX-512 loop
    x = _inputs(np.float32)
    got, exact = k.tanh_lookup_f32(x), _exact("tanh", x)
    normal = np.abs(exact) >= np.finfo(np.float32).tiny
    err = _ulps(got[normal], exact[normal], np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= LOOKUP_MAX_ULPS, f"tanh({x[normal][worst]!r}) = {got[normal][worst]!r}: {err[worst]:.2f} ulp"
    np.testing.assert_array_equal(got[~normal], x[~normal])  # tanh(z) = z, subnormal z included
    # each interval of the table: its ends and its middle
    edges = np.array([2.0**e * (1 + m / 4) for e in range(-4, 4) for m in range(4)], np.float32)
    worst_z = float.fromhex("0x1.fdfa1ap-5")  # the worst over every float32: 0.994 ulp
    near = np.concatenate(
        [edges, np.nextafter(edges, 0), (edges[:-1] + edges[1:]) / 2, [9.5, 9.0, 9.01, 10.0, worst_z]]
    )
    near = near.astype(np.float32)
    err = _ulps(k.tanh_lookup_f32(near), _exact("tanh", near), np.float32)
    assert err.max() <= LOOKUP_MAX_ULPS, near[int(np.argmax(err))]


def test_tanh_lookup_of_special_values(k):
    fi = np.finfo(np.float32)
    z = np.array(
        [
            np.nan,
            -np.nan,
            -np.inf,
            np.inf,
            -0.0,
            0.0,
            fi.tiny,
            -fi.smallest_subnormal,
            fi.max,
            -fi.max,
            9.5,
            -9.5,
            20.0,
            1e-30,
        ],
        np.float32,
    )
    want = np.array(
        [np.nan, np.nan, -1, 1, -0.0, 0.0, fi.tiny, -fi.smallest_subnormal, 1, -1, 1, -1, 1, 1e-30], np.float32
    )
    got = k.tanh_lookup_f32(z)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got[2:]), np.signbit(want[2:]))
    assert np.all(np.abs(k.tanh_lookup_f32(np.linspace(-30, 30, 100_001, dtype=np.float32))) <= 1)


def test_bias_tanh_is_the_lookup_bit_for_bit_where_the_build_looks_up(k):
    if not k.tanh_lookup:
        pytest.skip(f"this build computes tanh (tanh_v): {cpu_loops.status()}")
    rng = np.random.default_rng(3)
    fi = np.finfo(np.float32)
    special = [np.nan, -np.inf, np.inf, -0.0, 0.0, fi.tiny, -fi.smallest_subnormal, fi.max, 9.5, -(2.0**-4)]
    # rows under 16 wide (one flat array, the bias in a pattern of cols vectors: 37 rows, two whole patterns and a
    # part), and wider ones (16 a step, the last 16 overlapping)
    for cols in (1, 3, 10, 15, 16, 17, 31, 33, 100, 256):
        z = (rng.standard_normal((37, cols)) * rng.choice([0.01, 1, 4], (37, cols))).astype(np.float32)
        z.flat[: min(z.size, len(special))] = special[: z.size]
        b = (rng.standard_normal(cols) * 0.1).astype(np.float32)
        want = k.tanh_lookup_f32((z + b).ravel()).reshape(z.shape)
        k.bias_act(z, b, "tanh", 0.0)
        np.testing.assert_array_equal(z.view(np.uint32), want.view(np.uint32), err_msg=f"{cols} columns")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_narrow_sigmoid_and_tanh_run_flat_with_the_row_loops_values(each_form, activation, dtype):
    # Under 64 columns, and not a multiple of 16, the batch runs as one flat array 16 rows at a time against the
    # bias repeated (bias_act_flat): the same function of the same elements as the row loop, so the same bits. The
    # row loop's values: the batch as one row, padded to 1024 columns (far from the flat path's widths), the bias
    # tiled along it. 37 rows: two whole blocks of 16 and a part; 128: whole blocks only (the batch size); 5 rows: a
    # block shorter than 16 rows; 0 rows: nothing to do.
    rng = np.random.default_rng(5)
    shapes = [(37, c) for c in (1, 3, 10, 15, 16, 17, 30, 33, 63, 64, 100)] + [(128, 10), (5, 10), (1, 7), (0, 10)]
    for rows, cols in shapes:
        z = (rng.standard_normal((rows, cols)) * 4).astype(dtype)
        b = (rng.standard_normal(cols) * 0.1).astype(dtype)
        row = np.concatenate([z.ravel(), np.zeros(1024, dtype)]).reshape(1, -1)
        b_row = np.concatenate([np.tile(b, rows), np.zeros(1024, dtype)])
        each_form.bias_act(row, b_row, activation, 0.0)
        each_form.bias_act(z, b, activation, 0.0)
        want = row[0, : z.size].reshape(z.shape)
        bits = np.uint32 if dtype == np.float32 else np.uint64
        np.testing.assert_array_equal(z.view(bits), want.view(bits), err_msg=f"{rows} x {cols}")


# ---- subnormal flushing ----


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_subnormals(k, dtype):
    tiny = np.finfo(dtype).tiny  # the smallest normal number
    a = np.array([tiny / 2, -tiny / 3, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf, tiny * 0.999], dtype)
    k.flush_subnormals(a)
    want = np.array([0, 0, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf, 0], dtype)
    np.testing.assert_array_equal(a, want)


# ---- Adam ----


def test_adam_by_hand(k):
    # first step, G = 2: m = 0.2, v = 0.004, c1 = 10, c2 = 1000: W -= 0.1 * 2 / (2 + 1e-8)
    p, g, m, v = np.array([1.0]), np.array([2.0]), np.zeros(1), np.zeros(1)
    k.adam_update(p, g, m, v, 1, 0.1, 1, beta1=0.9, beta2=0.999, eps=1e-8)
    np.testing.assert_allclose([p[0], m[0], v[0]], [1 - 0.1 * 2 / (2 + 1e-8), 0.2, 0.004], rtol=1e-14)


def test_adam_first_moment_subnormals_become_zero(k):
    tiny = np.finfo(np.float32).tiny
    p, g = np.ones(3, np.float32), np.zeros(3, np.float32)
    m, v = np.array([tiny * 1.05, 1e-3, -tiny], np.float32), np.full(3, 0.5, np.float32)
    k.adam_update(p, g, m, v, 3, 1e-3, 1000, beta1=0.9, beta2=0.999, eps=1e-8)
    np.testing.assert_array_equal(m, [0.0, np.float32(0.9) * np.float32(1e-3), 0.0])


# ---- building and finding ----


@pytest.fixture
def fresh_find():
    cpu_loops.find.cache_clear()
    yield cpu_loops.find
    cpu_loops.find.cache_clear()


def test_a_build_is_reused(k, tmp_path):
    cxx = cpu_loops.compiler()
    lib, flags = cpu_loops.build(cxx, tmp_path)
    mtime = lib.stat().st_mtime_ns
    again, _ = cpu_loops.build(cxx, tmp_path)
    assert again == lib and lib.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary file left behind


def test_a_refused_flag_set_is_not_retried_once_a_build_exists(k, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_loops, "FLAGS", (["-fno-such-flag-anywhere"], ["-O1"]))
    compiles = []
    real_run = cpu_loops.subprocess.run

    def run(cmd, **kw):
        if "-o" in cmd:
            compiles.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(cpu_loops.subprocess, "run", run)
    lib, flags = cpu_loops.build(cpu_loops.compiler(), tmp_path)
    assert flags == ["-O1"] and len(compiles) == 2
    assert cpu_loops.build(cpu_loops.compiler(), tmp_path) == (lib, flags) and len(compiles) == 2


def test_a_compiler_command_with_arguments(k, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", f"env {cpu_loops.compiler()[0]}")  # as with "ccache g++"
    cxx = cpu_loops.compiler()
    assert cxx[0] == "env"
    lib, _ = cpu_loops.build(cxx, tmp_path)
    assert lib.is_file()


def test_an_unwritable_cache_is_named(k, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RuntimeError, match="cannot write the compiled CPU loops to .*file/kernels.*MLP_XP_CACHE"):
        cpu_loops.build(cpu_loops.compiler(), blocker / "kernels")


def test_a_failed_build_names_the_command(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)building the compiled CPU loops failed:.*false -O3"):
        cpu_loops.build("false", tmp_path)
    assert not any(tmp_path.iterdir())


def test_without_a_compiler_the_backend_falls_back_to_numpy(fresh_find, monkeypatch):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.delenv("MLP_XP_REQUIRE_CPU_LOOPS", raising=False)
    assert fresh_find() is None
    assert cpu_loops.status().startswith("unavailable, NumPy used instead: building the compiled CPU loops failed")
    ops = NumpyOps()
    assert ops.loops is None and "compiled" not in ops.name
    z = np.array([[-1.0, 2.0]])
    ops.bias_act(z, np.zeros(2), "relu", 0.0)
    np.testing.assert_array_equal(z, [[0.0, 2.0]])


def test_a_required_build_that_fails_raises(fresh_find, monkeypatch):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv("MLP_XP_REQUIRE_CPU_LOOPS", "1")
    with pytest.raises(RuntimeError, match="MLP_XP_REQUIRE_CPU_LOOPS=1"):
        fresh_find()


def test_they_can_be_switched_off(fresh_find, monkeypatch):
    monkeypatch.setenv("MLP_XP_CPU_LOOPS", "0")
    assert fresh_find() is None
    assert cpu_loops.status() == "off (MLP_XP_CPU_LOOPS=0)"


def test_the_old_names_of_the_switches_still_work(fresh_find, monkeypatch):
    monkeypatch.delenv("MLP_XP_CPU_LOOPS", raising=False)
    monkeypatch.setenv("MLP_XP_CPU_KERNELS", "0")
    with pytest.warns(FutureWarning, match="MLP_XP_CPU_KERNELS is now MLP_XP_CPU_LOOPS"):
        assert fresh_find() is None
