"""benchmarks/cpu_epoch.py's refusals, made before any data are loaded or any round runs: names to skip that are no
contender (or mlp_xp, the one the others are compared with), and a contender whose package is missing (what the
numbers are is measured, not tested)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .conftest import load_benchmark


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "benchmarks"))  # (its contenders.py)
    module = load_benchmark("cpu_epoch")
    monkeypatch.setattr(module, "epoch_data", lambda *a: pytest.fail("the data were loaded before the refusal"))
    return module


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        ("torch", "--skip torch: not a contender here; give some of pytorch_eager, sklearn"),
        ("pytorch_eager,nonsense", "--skip nonsense: not a contender here"),
        ("mlp_xp", "--skip mlp_xp: every other epoch is compared with mlp_xp's, so it cannot be left out"),
    ],
)
def test_bad_names_to_skip_are_refused(bench, capsys, skip, message):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--skip", skip, "--rounds", "1"])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_contender_whose_package_is_missing_is_refused_with_the_install_and_the_skip(bench, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(SystemExit) as stop:
        bench.main(["--rounds", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "pytorch_eager needs torch, which is not installed: pip install torch" in err
    assert "or --skip pytorch_eager" in err
