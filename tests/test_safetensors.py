"""Model files in safetensors beside .npz (issue 14, item 2), and the small conveniences (item 4): ``mlp-xp
--version`` and ``python -m mlp_xp``."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlp_xp
from mlp_xp.errors import ModelFileError

from .conftest import cuda_host_backend
from .test_cli import run

ROOT = Path(__file__).resolve().parent.parent
safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture
def trained():
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 12)).astype(np.float32), rng.integers(0, 3, 200)
    m = mlp_xp.MLP([12, 16, 8, 3], device="cpu", seed=0)
    mlp_xp.fit(m, X, y, epochs=2, batch_size=32)
    return m, X


def test_a_safetensors_model_predicts_bit_for_bit_as_the_npz_one(trained, tmp_path):
    m, X = trained
    m.save(tmp_path / "m.npz")
    m.save(tmp_path / "m.safetensors")
    a, b = mlp_xp.MLP.load(tmp_path / "m.npz", device="cpu"), mlp_xp.MLP.load(tmp_path / "m.safetensors", device="cpu")
    np.testing.assert_array_equal(a.get_flat(), b.get_flat())
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert b.trained_on == m.trained_on and b.config() == m.config()


def test_the_weights_are_laid_out_as_a_torch_sequential_of_linear_layers(trained, tmp_path):
    m, X = trained
    m.save(tmp_path / "m.safetensors")
    tensors = safetensors_numpy.load_file(tmp_path / "m.safetensors")
    assert {k: v.shape for k, v in tensors.items()} == {
        "0.weight": (16, 12),
        "0.bias": (16,),
        "2.weight": (8, 16),
        "2.bias": (8,),
        "4.weight": (3, 8),
        "4.bias": (3,),
    }
    W1, b1 = m.weights()[0]
    np.testing.assert_array_equal(tensors["0.weight"], W1.T)  # nn.Linear: (out, in); y = x W^T + b
    np.testing.assert_array_equal(tensors["0.bias"], b1)
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(p, m.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_the_same_model_gives_the_same_bytes_and_loads_on_the_cuda_backend(trained, tmp_path, host_kernels):
    m, X = trained
    m.save(tmp_path / "a.safetensors")
    m.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    gpu = mlp_xp.MLP.load(tmp_path / "a.safetensors", device=cuda_host_backend(host_kernels))
    np.testing.assert_array_equal(gpu.get_flat(), m.get_flat())


def test_a_safetensors_file_that_is_not_a_model_says_so(tmp_path):
    safetensors_numpy.save_file({"x": np.zeros(3, np.float32)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="without mlp_xp's metadata"):
        mlp_xp.MLP.load(tmp_path / "other.safetensors", device="cpu")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        mlp_xp.MLP.load(tmp_path / "bad.safetensors", device="cpu")
    with pytest.raises(ModelFileError, match="does not exist"):
        mlp_xp.MLP.load(tmp_path / "none.safetensors", device="cpu")


def test_the_command_line_saves_and_evaluates_safetensors(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    code, _, err = run(capsys, f"train --epochs 1 --hidden 8 --device cpu --save {model}")
    assert code == 0 and model.is_file(), err
    code, out, _ = run(capsys, f"evaluate {model} --device cpu")
    assert code == 0 and out.startswith("digits test (359 samples)")


def test_version_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as info:
        mlp_xp.cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"mlp-xp {mlp_xp.__version__}"
    r = subprocess.run(
        [sys.executable, "-m", "mlp_xp", "--version"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert r.returncode == 0 and r.stdout.strip() == f"mlp-xp {mlp_xp.__version__}"


def test_without_the_package_a_safetensors_save_is_refused_before_the_data(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError("No module named 'safetensors'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    from mlp_xp import data as data_module

    monkeypatch.setattr(data_module, "load_dataset", lambda *a, **kw: pytest.fail("the data were loaded"))
    code, _, err = run(capsys, f"train --device cpu --save {tmp_path / 'm.safetensors'}")
    assert code == 2 and "needs the safetensors package: pip install 'safetensors>=0.4'" in err
