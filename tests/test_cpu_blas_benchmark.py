"""benchmarks/cpu_blas.py's parts that are not timings: the step's products of a model, the --hidden argument,
and one process's measurements (what the numbers are is measured, not tested)."""

from __future__ import annotations

import argparse

import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("cpu_blas")


def test_the_products_of_the_epoch_benchmarks_model(bench):
    # (name, rows of op(A), inner, columns, trans_a, trans_b): the forward products, the dW ones, the dh one
    assert [p[1:] for p in bench.products([784, 512, 256, 10])] == [
        (128, 784, 512, False, False),
        (128, 512, 256, False, False),
        (784, 128, 512, True, False),
        (512, 128, 256, True, False),
        (128, 256, 512, False, True),
    ]
    assert [p[0].split(":")[0] for p in bench.products([784, 64, 10])] == ["z1 = x W1", "dW1 = x^T g1"]


def test_hidden_sizes_are_parsed_or_refused(bench):
    assert bench._hidden("512,256") == (512, 256) and bench._hidden("64") == (64,)
    for bad in ("", "5,x", "0", "64,-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="widths, comma separated"):
            bench._hidden(bad)


def test_one_process_measures_its_blas(bench, monkeypatch):
    from mlp_xp.backend import blas

    if blas.load("numpy") is None:
        pytest.skip("NumPy's BLAS has no entry points mlp_xp can call here")
    monkeypatch.delenv("MLP_XP_BLAS", raising=False)  # (the child sets it; this puts it back)
    monkeypatch.delenv("MLP_XP_NO_BLAS", raising=False)
    out = bench.child("numpy", 1, "synthetic", (8,))
    assert out["blas"] == "NumPy's OpenBLAS" and out["sizes"][1] == 8
    assert out["n_params"] == (out["sizes"][0] + 1) * 8 + 9 * out["sizes"][2]
    assert len(out["epochs"]) == 1 and out["epoch"] > 0
    assert list(out["products"]) == [p[0] for p in bench.products(out["sizes"])]
