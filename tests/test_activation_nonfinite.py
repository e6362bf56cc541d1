"""What a layer's activation does with NaN and infinity, on every implementation: the reference, the CPU backend
with its compiled loops (``cpu``) and without (``cpu-numpy``, the NumPy path), the CUDA kernels on the CPU
harness (``cuda-host``) and on a GPU (``cuda``).

The definition is in the docstring of ``act_backward`` in mlp_xp/reference/layer.py: dh * g'(h) as IEEE
arithmetic gives it in the arrays' precision, with ReLU's and leaky ReLU's g' a comparison (exactly 1 where
h > 0, else 0 or a; a NaN h compares false). A NaN or an infinity in dh therefore never becomes a finite number.
The test spells the definition out element by element, on every pair of special and ordinary values of dh and
h, and wants each implementation to give exactly that: the same NaNs, the same infinities, the same finite
values and the same signs of zero.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp.backend.reference_ops import ReferenceOps

from .conftest import BACKENDS, make_backend

INF, NAN = np.inf, np.nan
DH = [NAN, INF, -INF, -1.5, -0.0, 0.0, 2.0]
H = [NAN, -INF, -2.0, -0.0, 0.0, 0.5, 1.0, 3.0, INF]
#: 0.25 makes every finite product exact in both dtypes, so that values compare exactly too; 0.01 is the default.
SLOPES = [0.25, 0.01]
ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]


@pytest.fixture(params=["reference", *BACKENDS])
def impl(request, host_kernels):
    if request.param == "reference":
        return ReferenceOps()
    return make_backend(request.param, host_kernels)


def _grid(dtype):
    """Every (dh, h) pair three times over, shuffled: 189 elements, so that vector loops and their remainders
    both see special values."""
    dh, h = (np.array(a, dtype) for a in np.meshgrid(DH, H, indexing="ij"))
    order = np.random.default_rng(0).permutation(np.tile(np.arange(dh.size), 3))
    return dh.reshape(-1)[order].reshape(21, 9), h.reshape(-1)[order].reshape(21, 9)


def _definition(dh: np.ndarray, h: np.ndarray, activation: str, slope: float) -> np.ndarray:
    """dh * g'(h), one element at a time in the dtype's own arithmetic."""
    t = dh.dtype.type
    out = np.empty_like(dh)
    with np.errstate(all="ignore"):
        for i in np.ndindex(dh.shape):
            d, x = dh[i], h[i]
            if activation == "identity":
                out[i] = d
                continue
            g = {
                "relu": t(1) if x > 0 else t(0),
                "leaky_relu": t(1) if x > 0 else t(slope),
                "sigmoid": x * (t(1) - x),
                "tanh": t(1) - x * x,
            }[activation]
            out[i] = d * g
    return out


def _assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaNs")
    finite_or_inf = ~np.isnan(want)
    np.testing.assert_array_equal(got[finite_or_inf], want[finite_or_inf], err_msg=f"{what}: values")
    np.testing.assert_array_equal(
        np.signbit(got[finite_or_inf]), np.signbit(want[finite_or_inf]), err_msg=f"{what}: signs"
    )


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_act_backward_follows_the_definition(impl, activation, dtype, slope):
    dh0, h0 = _grid(dtype)
    want = _definition(dh0, h0, activation, slope)
    dh, h = impl.asarray(dh0), impl.asarray(h0)
    with np.errstate(all="ignore"):  # the NumPy path warns of inf * 0 like NumPy (its caller's errstate rules)
        impl.act_backward(dh, h, activation, slope)
    got = impl.to_host(dh)
    if slope == 0.25:
        _assert_same(got, want, f"{impl.name} {activation}")
    else:  # a product by 0.01 may round differently (the reference multiplies in float64): values within 1 ulp
        _assert_same(np.where(np.isfinite(want), 0, got), np.where(np.isfinite(want), 0, want), impl.name)
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=np.finfo(dtype).eps)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_nonfinite_gradient_never_becomes_finite(impl, activation):
    """The property the definition is chosen for: a diverging run's NaN or infinite gradient stays visible."""
    dh0, h0 = _grid(np.float32)
    dh, h = impl.asarray(dh0), impl.asarray(h0)
    with np.errstate(all="ignore"):
        impl.act_backward(dh, h, activation, 0.01)
    got = impl.to_host(dh)
    assert np.isnan(got[np.isnan(dh0)]).all()
    assert not np.isfinite(got[np.isinf(dh0)]).any()
    if activation in ("sigmoid", "tanh"):  # g'(NaN) is NaN there: the product too
        assert np.isnan(got[np.isnan(h0)]).all()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_act_passes_nan_and_infinity_on(impl, activation, dtype):
    # z + b for z in (NaN, -inf, inf, -3, -0, 2) over 24 columns (a vector loop and its remainder)
    z0 = np.tile(np.array([NAN, -INF, INF, -3.0, -0.0, 2.0], dtype), (5, 4))
    z = impl.asarray(z0)
    impl.bias_act(z, impl.asarray(np.zeros(24, dtype)), activation, 0.25)
    got = impl.to_host(z)
    x = z0 + dtype(0)  # z + b (which makes -0 + 0 = +0)
    with np.errstate(all="ignore"):
        want = np.maximum(x, 0) if activation == "relu" else np.where(x < 0, x * dtype(0.25), x)
    _assert_same(got, want, f"{impl.name} {activation}")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_of_nan_infinity_and_zero(impl, activation, dtype):
    """NaN stays NaN, sigmoid(-inf) = 0, sigmoid(inf) = 1, tanh(+-inf) = +-1 and tanh(+-0) = +-0, exactly, on
    every implementation (the compiled loops compute both with an exp of their own, kernels/cpu.cpp)."""
    z0 = np.tile(np.array([NAN, -INF, INF, -0.0, 0.0], dtype), (5, 5))  # 25 columns
    z = impl.asarray(z0)
    impl.bias_act(z, impl.asarray(np.full(25, -0.0, dtype)), activation, 0.0)  # z + -0 keeps a zero's sign
    got = impl.to_host(z)
    row = [NAN, 0.0, 1.0, 0.5, 0.5] if activation == "sigmoid" else [NAN, -1.0, 1.0, -0.0, 0.0]
    _assert_same(got, np.tile(np.array(row, dtype), (5, 5)), f"{impl.name} {activation}")
