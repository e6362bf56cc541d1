"""The wheel carries the CUDA sources, and a plain (non-editable) install finds them."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mlp_xp.backend import cpu_loops, kernels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode:
        pytest.fail(f"building the wheel failed:\n{r.stdout}\n{r.stderr}")
    (path,) = out.glob("mlp_xp-*.whl")
    return path


def test_wheel_contains_every_kernel_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for fname in [*kernels.KERNELS, kernels.HEADER, "cpu.cpp"]:
        assert f"mlp_xp/kernels/{fname}" in names
    assert "mlp_xp/cli.py" in names and not any(n.startswith("tests/") for n in names)


def test_an_installed_wheel_finds_its_kernels(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    code = (
        "import mlp_xp.backend.kernels as k; d = k.kernel_dir(); print(d); "
        "assert all((d / f).is_file() for f in k.KERNELS); print(len(k.source('loss.cu'))); "
        "from mlp_xp.backend import cpu_loops as c; print(c.status())"
    )
    env = {"PYTHONPATH": str(target), "PATH": os.environ.get("PATH", ""), "MLP_XP_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert str(target) in r.stdout.splitlines()[0]
    # the CPU loops build from the installed sources too (where this machine has a compiler)
    if cpu_loops.find() is not None:
        assert r.stdout.splitlines()[2].startswith("built by"), r.stdout
