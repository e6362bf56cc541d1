"""``mlp-xp doctor --device`` and ``mlp-xp bench --device``, run in-process, with the GPU side faked: two fake GPUs
that are the CUDA backend's own code on the CPU harness of tests/cuda_host (``cuda_host_backend``, named
"cuda:i (CPU harness)"), or no GPU at all."""

import json

import pytest

import mlp_xp
from mlp_xp import backend, bench, doctor, selfcheck
from mlp_xp.cli import build_parser
from mlp_xp.constraints import device_choice

from .test_cli import run

NO_CUPY = "CuPy is not installed: for a CUDA 12 driver pip install 'cupy-cuda12x>=14'"

#: A few cases of one op: enough to run the real check on each backend, fast.
FEW_CASES = [c for c in selfcheck.cases() if c.op == "bias_act"][:3]


def _status(n_gpus: int):
    def cuda_status(index: int = 0):
        if n_gpus == 0:
            return False, NO_CUPY
        if index >= n_gpus:
            return False, f"cuda:{index} was asked for but this machine has {n_gpus} CUDA device(s): use cuda:0..1"
        return True, f"Fake GPU {index}"

    return cuda_status


@pytest.fixture
def gpus(monkeypatch, host_kernels):
    """``gpus(n)``: n fake GPUs (0: none). Returns the list of the backends' names the doctor checked, in order."""
    from .conftest import cuda_host_backend
    from .cuda_host.fake_cupy import FakeCupy

    fake = FakeCupy(host_kernels, n_devices=4)
    real_get_backend = backend.get_backend
    made = {}

    def get_backend(spec="auto", *, n_params=None):
        kind, index = backend.parse_device(spec)
        if kind == "cpu":
            return real_get_backend("cpu", n_params=n_params)
        if not status(index)[0]:
            raise AssertionError(f"get_backend({spec!r}) for a GPU that is not usable")
        if index not in made:
            made[index] = cuda_host_backend(host_kernels, index, fake=fake)
        return made[index]

    checked = []

    def timed_check(ops):
        checked.append(ops.name)
        return selfcheck.check_backend(ops, FEW_CASES), 0.01

    def install(n: int):
        nonlocal status
        status = _status(n)
        for module in (backend, doctor, bench):
            monkeypatch.setattr(module, "cuda_devices", lambda: list(range(n)))
            monkeypatch.setattr(module, "cuda_status", status)
            monkeypatch.setattr(module, "get_backend", get_backend)
        monkeypatch.setattr(doctor, "timed_check", timed_check)
        return checked

    status = _status(0)
    return install


def _one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlp-xp: error: "), err
    return lines[0]


# ---- doctor ----


def test_doctor_all_checks_the_cpu_then_every_gpu(capsys, gpus):
    checked = gpus(2)
    code, out, err = run(capsys, "doctor")
    assert code == 0, err
    assert [name.split()[0] for name in checked] == ["cpu", "cuda:0", "cuda:1"]
    blocks = [line for line in out.splitlines() if line.startswith("mlp-xp doctor: ")]
    assert [b.split()[2] for b in blocks] == ["cpu", "cuda:0", "cuda:1"]
    assert "compiled loops" in blocks[0] and blocks[2] == "mlp-xp doctor: cuda:1 (CPU harness)"
    assert out.count("1/1 ops verified") == 3 and err == ""
    code, out, _ = run(capsys, "doctor --device all")
    assert code == 0 and len(checked) == 6


@pytest.mark.parametrize("device, index", [("cuda:1", 1), ("cuda:0", 0), ("cuda", 0), ("CUDA:1", 1)])
def test_doctor_cuda_n_checks_that_gpu_alone(capsys, gpus, device, index):
    checked = gpus(2)
    code, out, err = run(capsys, "doctor", "--device", device)
    assert code == 0, err
    assert checked == [f"cuda:{index} (CPU harness)"]
    assert out.startswith(f"mlp-xp doctor: cuda:{index} (CPU harness)\n") and err == ""


def test_doctor_cpu_checks_the_cpu_alone(capsys, gpus):
    checked = gpus(2)
    code, out, err = run(capsys, "doctor --device cpu")
    assert code == 0 and [n.split()[0] for n in checked] == ["cpu"] and err == ""


@pytest.mark.parametrize("n_gpus", [0, 2])
def test_doctor_an_out_of_range_or_missing_gpu_is_one_line_and_status_3(capsys, gpus, n_gpus):
    checked = gpus(n_gpus)
    code, out, err = run(capsys, "doctor --device cuda:2")
    assert code == 3 and out == "" and checked == []
    line = _one_error(err)
    assert "cuda:2 is not usable" in line
    assert ("use cuda:0..1" if n_gpus else NO_CUPY) in line


def test_doctor_all_without_a_gpu_checks_the_cpu_and_says_why_in_one_line(capsys, gpus):
    checked = gpus(0)
    code, out, err = run(capsys, "doctor")
    assert code == 3
    assert [n.split()[0] for n in checked] == ["cpu"] and "1/1 ops verified" in out
    line = _one_error(err)
    assert "no usable GPU, so no CUDA kernel was checked" in line and NO_CUPY in line and "--device cpu" in line


def test_doctor_all_reports_a_visible_gpu_that_is_not_usable_and_checks_the_others(capsys, gpus, monkeypatch):
    checked = gpus(2)
    status = doctor.cuda_status
    monkeypatch.setattr(doctor, "cuda_status", lambda i=0: (False, "the driver is too old") if i == 0 else status(i))
    code, out, err = run(capsys, "doctor")
    assert code == 3
    assert [n.split()[0] for n in checked] == ["cpu", "cuda:1"]
    assert "cuda:0 is not usable" in _one_error(err) and "the driver is too old" in err


def test_a_failing_gpu_is_status_1_and_the_next_gpu_is_still_checked(capsys, gpus, monkeypatch):
    checked = gpus(2)
    fake = doctor.timed_check

    def timed_check(ops):
        results, seconds = fake(ops)
        if ops.name.startswith("cuda:0"):
            results[0].failures.append("a planted failure")
        return results, seconds

    monkeypatch.setattr(doctor, "timed_check", timed_check)
    code, out, err = run(capsys, "doctor")
    assert code == 1 and len(checked) == 3
    assert "FAILING" in out and "first failure: a planted failure" in out and out.count("1 FAILING") == 1


def test_a_gpu_whose_check_crashes_is_status_1_in_one_line_and_the_next_gpu_is_still_checked(capsys, gpus, monkeypatch):
    checked = gpus(2)
    fake = doctor.timed_check

    def timed_check(ops):
        if ops.name.startswith("cuda:0"):
            raise RuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")
        return fake(ops)

    monkeypatch.setattr(doctor, "timed_check", timed_check)
    code, out, err = run(capsys, "doctor")
    assert code == 1 and [n.split()[0] for n in checked] == ["cpu", "cuda:1"]
    assert "cuda:0 FAILED" in _one_error(err) and "cudaErrorIllegalAddress" in err


# ---- bench ----

BENCH = "bench --batch-sizes 8,16 --hidden 8 --steps 1"


def test_bench_all_times_the_cpu_and_every_gpu_in_one_table(tmp_path, capsys, gpus):
    gpus(2)
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    code, out, err = run(capsys, f"{BENCH} --json {out_json} --plot {out_png}")
    assert code == 0, err
    rows = json.loads(out_json.read_text())
    names = list(dict.fromkeys(r["backend"] for r in rows))
    assert [n.split(" (")[0] for n in names] == ["cpu", "cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert names[1:] == [
        "cuda:0 (CPU harness)",
        "cuda:0 (CPU harness) + CUDA graph (cuBLAS)",
        "cuda:1 (CPU harness)",
        "cuda:1 (CPU harness) + CUDA graph (cuBLAS)",
    ]
    assert [r["device"] for r in rows] == [d for d in ("cpu", "cuda:0", "cuda:0", "cuda:1", "cuda:1") for _ in (8, 16)]
    assert [r["batch_size"] for r in rows] == [8, 16] * 5
    assert all(r["speedup_vs_cpu"] > 0 for r in rows) and rows[0]["speedup_vs_cpu"] == 1.0
    table = [line for line in out.splitlines() if line.startswith("| ") and "batch" not in line]
    assert len(table) == 10 and sum(line.startswith("| cuda:1 (CPU harness)") for line in table) == 4
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out2, _ = run(capsys, f"{BENCH} --device all")
    assert code == 0 and out2.count("| cuda:1") == 4


@pytest.fixture
def timed(monkeypatch):
    """The devices bench times, in order, without timing anything (every step takes 1 ms)."""
    calls = []

    def time_step(device, hidden, batch_size, steps, *, dtype="float32", graph=False, **kw):
        calls.append((device.name, batch_size, graph))
        return 1e-3

    monkeypatch.setattr(bench, "time_step", time_step)
    return calls


@pytest.mark.parametrize("device, index", [("cuda:1", 1), ("cuda", 0)])
def test_bench_cuda_n_times_that_gpu_and_the_cpu_as_the_speedup_baseline(tmp_path, capsys, gpus, timed, device, index):
    gpus(2)
    out_json = tmp_path / "b.json"
    code, out, err = run(capsys, f"{BENCH} --device {device} --json {out_json}")
    assert code == 0, err
    assert [(n.split(" (")[0], b, g) for n, b, g in timed] == [
        ("cpu", 8, False),
        ("cpu", 16, False),
        (f"cuda:{index}", 8, False),
        (f"cuda:{index}", 16, False),
        (f"cuda:{index}", 8, True),
        (f"cuda:{index}", 16, True),
    ]
    rows = json.loads(out_json.read_text())
    assert {r["device"] for r in rows} == {"cpu", f"cuda:{index}"}
    assert all(r["speedup_vs_cpu"] == pytest.approx(1.0) for r in rows)
    assert f"| cuda:{index} (CPU harness) + CUDA graph (cuBLAS) | 16 |" in out


def test_bench_cpu_times_the_cpu_alone(capsys, gpus, timed):
    gpus(2)
    code, out, err = run(capsys, f"{BENCH} --device cpu")
    assert code == 0, err
    assert [n.split(" (")[0] for n, _, _ in timed] == ["cpu", "cpu"] and "cuda" not in out


def test_bench_all_without_a_gpu_reports_the_cpu_alone_and_says_why(capsys, gpus, timed):
    gpus(0)
    code, out, err = run(capsys, BENCH)
    assert code == 0
    assert [n.split(" (")[0] for n, _, _ in timed] == ["cpu", "cpu"]
    assert f"no usable GPU ({NO_CUPY}" in err and "reporting the CPU alone" in err


@pytest.mark.parametrize("n_gpus", [0, 2])
def test_bench_an_out_of_range_or_missing_gpu_is_one_line_and_status_3_before_any_timing(capsys, gpus, timed, n_gpus):
    gpus(n_gpus)
    code, out, err = run(capsys, f"{BENCH} --device cuda:2")
    assert code == 3 and out == "" and timed == []
    line = _one_error(err)
    assert "cuda:2 is not usable, so nothing was timed" in line
    assert ("use cuda:0..1" if n_gpus else NO_CUPY) in line


# ---- bad values and help ----


@pytest.mark.parametrize("command", ["doctor", "bench"])
@pytest.mark.parametrize(
    "device, message",
    [
        ("cuda:x", "unknown device 'cuda:x': the N of cuda:N is a device number"),
        ("cuda:-1", "unknown device 'cuda:-1': the N of cuda:N is a device number"),
        ("cuda:", "unknown device 'cuda:'"),
        ("tpu", "unknown device 'tpu': use 'all' (the CPU and every GPU), 'cpu', 'cuda' or 'cuda:N'"),
        ("", "unknown device ''"),
    ],
)
def test_a_bad_device_is_one_line_and_status_2_before_any_work(capsys, gpus, timed, command, device, message):
    checked = gpus(2)
    code, out, err = run(capsys, command, "--device", device)
    assert code == 2 and out == "" and checked == [] and timed == []
    line = _one_error(err)
    assert message in line and ("cuda:0" in line or "'cuda:N'" in line)  # the fix


def test_bench_checks_its_output_paths_before_any_timing(capsys, gpus, timed):
    gpus(2)
    code, out, err = run(capsys, f"{BENCH} --json /no/such/folder/b.json")
    assert code == 2 and timed == [] and "the folder /no/such/folder does not exist" in _one_error(err)


@pytest.mark.parametrize("command", ["doctor", "bench"])
def test_the_help_names_every_device_value(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    text = " ".join(sub.format_help().split())
    assert (
        "--device VALUE" in text
        and "every visible GPU" in text
        and "cuda or cuda:N" in text
        and "(default all)" in text
    )
    if command == "bench":
        assert "the CPU too, as the baseline of the speedup column" in text


def test_device_choice_in_the_library():
    assert device_choice("all") == ("all", None) == device_choice("auto")
    assert device_choice("cpu") == ("cpu", None)
    assert device_choice(" cuda:3 ") == ("cuda", 3) and device_choice("cuda") == ("cuda", 0)
    assert device_choice("gpu") == ("cuda", 0)  # as for train: "gpu" is cuda:0
    with pytest.raises(mlp_xp.ConfigError, match="the N of cuda:N is a device number"):
        device_choice("cuda:x")
