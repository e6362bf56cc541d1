"""mlp_xp.backend.blas: which BLAS the CPU backend calls (NumPy's OpenBLAS or MKL), and each one's calls against
NumPy's own arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend import blas
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.errors import ConfigError


def _mkl_or_none():
    try:
        return blas.load("mkl")
    except ConfigError:
        return None


HAVE_MKL = _mkl_or_none() is not None
KINDS = [
    pytest.param("numpy", marks=pytest.mark.skipif(blas.load("numpy") is None, reason="no NumPy BLAS to call")),
    pytest.param("mkl", marks=pytest.mark.skipif(not HAVE_MKL, reason="MKL is not installed (the mkl extra)")),
]


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("MLP_XP_BLAS", raising=False)
    monkeypatch.delenv("MLP_XP_NO_BLAS", raising=False)
    monkeypatch.setattr(blas, "_mkl_failure", [])  # (a fake MKL's failure must not outlive its test)
    return monkeypatch


# ---- the choice ----


LARGE, SMALL = blas.MKL_MIN_PARAMS, blas.MKL_MIN_PARAMS - 1


@pytest.mark.parametrize(
    ("env", "have_mkl", "intel", "n_params", "want"),
    [
        (None, True, True, LARGE, "mkl"),  # auto: MKL for a large model on an Intel CPU where it is installed
        (None, True, True, None, "mkl"),  # (no size given: a large model's)
        (None, True, True, SMALL, "numpy"),  # measured slower on small models
        (None, True, False, LARGE, "numpy"),  # not measured on other CPUs: not chosen there
        (None, False, True, LARGE, "numpy"),
        ("auto", True, True, LARGE, "mkl"),
        (" AUTO ", False, False, None, "numpy"),
        ("", True, True, LARGE, "mkl"),  # set but empty: auto
        ("numpy", True, True, LARGE, "numpy"),
        ("mkl", True, False, SMALL, "mkl"),  # asked for: used on any CPU, for any model
        ("MKL", False, False, None, "mkl"),  # asked for and missing: load("mkl") says so (below)
    ],
)
def test_the_choice(clean_env, env, have_mkl, intel, n_params, want):
    if env is not None:
        clean_env.setenv("MLP_XP_BLAS", env)
    clean_env.setattr(blas, "_mkl_candidates", lambda: ["/x/libmkl_rt.so.2"] if have_mkl else [])
    clean_env.setattr(blas, "_intel_cpu", lambda: intel)
    assert blas.choice(n_params) == want


@pytest.mark.skipif(not HAVE_MKL, reason="MKL is not installed (the mkl extra)")
def test_models_get_the_blas_of_their_size(clean_env):
    clean_env.setattr(blas, "_intel_cpu", lambda: True)
    small = mlp_xp.MLP([64, 64, 10], device="cpu")
    large = mlp_xp.MLP([784, 512, 256, 10], device="cpu")
    assert small.layout.n_params < blas.MKL_MIN_PARAMS <= large.layout.n_params
    assert small.ops.blas is blas.load("numpy") and large.ops.blas is blas.load("mkl")
    assert small.ops is mlp_xp.get_backend("cpu", n_params=100)  # (each backend still shared)
    clean_env.setenv("MLP_XP_BLAS", "numpy")
    assert mlp_xp.MLP([784, 512, 256, 10], device="cpu").ops.blas is blas.load("numpy")


def test_an_unknown_choice_is_one_clear_error(clean_env):
    clean_env.setenv("MLP_XP_BLAS", "openblass")
    with pytest.raises(ConfigError, match=r"MLP_XP_BLAS='openblass' is not a BLAS mlp_xp knows: set it to auto, "):
        blas.choice()
    with pytest.raises(ConfigError, match="openblass"):
        NumpyOps()  # before any work: the backend's construction


def test_mkl_asked_for_but_missing_says_how_to_install_it(clean_env):
    clean_env.setattr(blas, "_mkl_candidates", lambda: [])
    with pytest.raises(ConfigError, match=r"MLP_XP_BLAS=mkl but MKL is not installed here: pip install 'mkl>=2024'"):
        blas._load_mkl()
    with pytest.raises(ConfigError, match=r"\.\[mkl\]"):
        blas._load_mkl()


@pytest.fixture
def fake_mkl(clean_env, tmp_path):
    """A file named as MKL's library that is not one, found where MKL would be."""
    fake = tmp_path / "libmkl_rt.so.2"
    fake.write_bytes(b"not a library")
    clean_env.setattr(blas, "_mkl_candidates", lambda: [str(fake)])
    return fake


def test_mkl_that_cannot_be_loaded_is_named(clean_env, fake_mkl):
    fake = fake_mkl
    with pytest.raises(ConfigError, match=f"MKL at {fake} cannot be used"):
        blas._load_mkl()
    clean_env.setattr(blas, "_mkl_candidates", lambda: pytest.fail("a failed MKL is not opened again"))
    with pytest.raises(ConfigError, match=f"MKL at {fake} cannot be used"):
        blas._load_mkl()


def test_an_mkl_chosen_but_unusable_gives_way_to_numpys(clean_env, fake_mkl):
    clean_env.setattr(blas, "_intel_cpu", lambda: True)
    clean_env.setattr(blas, "load", blas.load.__wrapped__)  # (uncached: the fake must not stay behind)
    assert blas.choice() == "mkl" and blas.find().name == "NumPy's OpenBLAS"
    clean_env.setenv("MLP_XP_BLAS", "mkl")  # asked for: the error stands
    with pytest.raises(ConfigError, match="cannot be used"):
        blas.find()


def test_no_blas_at_all(clean_env):
    clean_env.setenv("MLP_XP_NO_BLAS", "1")
    assert blas.find() is None and NumpyOps().blas is None
    assert blas.describe() is None


@pytest.mark.skipif(blas.load("numpy") is None, reason="no NumPy BLAS to call")
def test_describe_says_where_small_models_get_another_blas(clean_env):
    clean_env.setenv("MLP_XP_BLAS", "numpy")  # one BLAS for every model
    assert blas.describe() == blas.load("numpy").name
    assert blas.describe(paths=True) == f"{blas.load('numpy').name} ({blas.load('numpy').path})"
    if not HAVE_MKL:
        return
    clean_env.delenv("MLP_XP_BLAS")
    clean_env.setattr(blas, "_intel_cpu", lambda: True)
    mkl, numpy = blas.load("mkl").name, blas.load("numpy").name
    assert blas.describe() == f"{mkl} for models of at least {blas.MKL_MIN_PARAMS:,} parameters, {numpy} below"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Intel(R) oneAPI Math Kernel Library Version 2026.2-Product Build 20260915 for Intel(R) 64", "MKL 2026.2"),
        ("Intel(R) oneAPI Math Kernel Library Version 2024.2.1-Product Build 1", "MKL 2024.2.1"),
        ("something else", "MKL ?"),
        ("Version", "MKL ?"),
    ],
)
def test_mkl_names_its_version(text, want):
    assert blas._mkl_name(text) == want


# ---- each BLAS against NumPy ----


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("trans_a", "trans_b"), [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_against_numpy(kind, dtype, trans_a, trans_b):
    b_ = blas.load(kind)
    rng = np.random.default_rng(4)
    m, k, n = 7, 13, 5
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    out = rng.standard_normal((m, n)).astype(dtype)
    want = 0.5 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + 0.25 * out
    b_.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=0.25, alpha=0.5)
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_update_calls_by_hand(kind, dtype):
    b_ = blas.load(kind)
    y, x = np.array([1.0, 2.0, -3.0], dtype), np.array([4.0, -1.0, 0.5], dtype)
    b_.add_scaled(y, -0.5, x)  # y <- -0.5 x + y
    np.testing.assert_array_equal(y, np.array([-1.0, 2.5, -3.25], dtype))
    b_.scale_add(y, 2.0, 1.0, x)  # y <- x + 2 y
    np.testing.assert_array_equal(y, np.array([2.0, 4.0, -6.0], dtype))


@pytest.mark.skipif(not HAVE_MKL, reason="MKL is not installed (the mkl extra)")
def test_a_fit_on_mkl_replays_its_steps_and_matches_openblas_up_to_rounding(clean_env):
    """The recorded step calls the BLAS it was recorded with: on MKL, the replayed run is the op-by-op run, bit for
    bit; against NumPy's OpenBLAS the products may round differently, so the weights agree closely (on this small
    model they may agree exactly)."""
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 12)).astype(np.float32), rng.integers(0, 3, 300)
    runs = {}
    for kind, record in (("mkl", True), ("mkl", False), ("numpy", True)):
        clean_env.setenv("MLP_XP_BLAS", kind)
        ops = NumpyOps()
        assert ops.blas is blas.load(kind)
        ops.records_steps = record and ops.records_steps
        model = mlp_xp.MLP([12, 16, 3], device=ops, seed=0)
        h = mlp_xp.fit(model, X, y, epochs=3, batch_size=32, optimizer="nesterov", lr=0.1, decay=0.1, l2=1e-3)
        runs[kind, record] = (model.get_flat(), [r["train_loss"] for r in h.records], ops.counts.by_op)
    (w_mkl, loss_mkl, counts), (w_op, loss_op, _), (w_numpy, loss_numpy, _) = runs.values()
    if NumpyOps().records_steps:  # (with the compiled loops)
        assert counts.get("run_program", 0) == 3 * 10 - 2
    np.testing.assert_array_equal(w_mkl, w_op)
    assert loss_mkl == loss_op
    np.testing.assert_allclose(w_mkl, w_numpy, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss_mkl, loss_numpy, rtol=1e-4)


def test_the_cpu_backend_names_its_blas(clean_env):
    for kind in ("numpy", "mkl") if HAVE_MKL else ("numpy",):
        clean_env.setenv("MLP_XP_BLAS", kind)
        ops = NumpyOps()
        if ops.blas is None:
            pytest.skip("no NumPy BLAS to call")
        assert ("MKL " in ops.name) == (kind == "mkl")
        assert ("BLAS direct" in ops.name) == (kind == "numpy")
