"""``mlp-xp doctor``'s exit statuses and last line: 0 when every check it could run passed, 3 when a GPU asked for
was not usable but the rest passed, 1 when a check failed or stopped on an error; with ``--device all`` the run
ends with an ``overall:`` line, so it never ends on a backend's "N/N ops verified" while exiting 1. The GPUs are
the fake ones of tests/test_doctor_bench.py."""

from __future__ import annotations

import re

import pytest

from mlp_xp import doctor
from mlp_xp.errors import BackendUnavailable

from .test_cli import run
from .test_doctor_bench import gpus  # noqa: F401 (the fixture)

VERIFIED = re.compile(r"^\d+/\d+ ops verified")


def _last_line(out: str) -> str:
    return out.rstrip("\n").splitlines()[-1]


def test_all_passing_ends_with_the_overall_line_and_status_0(capsys, gpus):  # noqa: F811
    gpus(2)
    code, out, err = run(capsys, "doctor")
    assert code == 0 and err == ""
    assert _last_line(out) == "overall: every check passed on cpu, cuda:0, cuda:1"


def test_a_gpu_that_crashes_mid_check_is_status_1_and_the_output_does_not_end_verified(capsys, gpus, monkeypatch):  # noqa: F811
    gpus(2)
    fake = doctor.timed_check

    def timed_check(ops):
        if ops.name.startswith("cuda:0"):
            raise RuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")
        return fake(ops)

    monkeypatch.setattr(doctor, "timed_check", timed_check)
    code, out, err = run(capsys, "doctor")
    # Before the fix the output ended "1/1 ops verified" (cuda:1's block) while the status was 1.
    assert code == 1 and not VERIFIED.match(_last_line(out))
    assert _last_line(out) == "overall: FAILED on cuda:0 (passed: cpu, cuda:1), exit status 1"


def test_no_gpu_is_status_3_with_the_reason_on_the_last_line(capsys, gpus):  # noqa: F811
    gpus(0)
    code, out, err = run(capsys, "doctor --device all")
    assert code == 3 and err.count("\n") == 1
    assert (
        _last_line(out) == "overall: passed on cpu, but no GPU was usable, so no CUDA kernel was checked, exit status 3"
    )
    code, out, err = run(capsys, "doctor --device cpu")
    assert code == 0 and err == "" and "overall" not in out


def test_a_cpu_check_that_crashes_is_status_1_in_one_line_and_the_gpus_are_still_checked(capsys, gpus, monkeypatch):  # noqa: F811
    checked = gpus(2)
    fake = doctor.timed_check

    def timed_check(ops):
        if ops.name.startswith("cpu"):
            checked.append(ops.name)
            raise MemoryError("no room for the cases")
        return fake(ops)

    monkeypatch.setattr(doctor, "timed_check", timed_check)
    code, out, err = run(capsys, "doctor")
    assert code == 1 and [n.split()[0] for n in checked] == ["cpu", "cuda:0", "cuda:1"]
    assert err == "mlp-xp: error: cpu FAILED: the check stopped on MemoryError: no room for the cases\n"
    assert _last_line(out) == "overall: FAILED on cpu (passed: cuda:0, cuda:1), exit status 1"
    code, out, err = run(capsys, "doctor --device cpu")
    assert code == 1 and out == "" and "cpu FAILED" in err


def test_a_gpu_whose_backend_is_unavailable_is_status_3_not_a_failure(capsys, gpus, monkeypatch):  # noqa: F811
    gpus(2)
    real = doctor.get_backend

    def get_backend(spec="auto"):
        if spec == "cuda:1":
            raise BackendUnavailable("cuda:1 failed its probe (a kernel gave a wrong answer): use another GPU")
        return real(spec)

    monkeypatch.setattr(doctor, "get_backend", get_backend)
    code, out, err = run(capsys, "doctor")
    assert code == 3 and "cuda:1 is not usable, so no CUDA kernel was checked: cuda:1 failed its probe" in err
    assert (
        _last_line(out)
        == "overall: passed on cpu, cuda:0, but cuda:1 was not usable, so not every GPU was checked, exit status 3"
    )
    code, out, err = run(capsys, "doctor --device cuda:1")
    assert code == 3 and out == ""


def test_a_check_that_ran_no_case_verifies_nothing(capsys, gpus, monkeypatch):  # noqa: F811
    gpus(0)
    monkeypatch.setattr(doctor, "timed_check", lambda ops: ([], 0.0))
    code, out, err = run(capsys, "doctor --device cpu")
    assert code == 1 and "0/0 ops verified" not in out and "no case was checked" in err


@pytest.mark.parametrize("n_gpus", [0, 1, 2])
@pytest.mark.parametrize("failing", ["cpu", "cuda:0", None])
def test_status_1_never_ends_on_a_verified_line(capsys, gpus, monkeypatch, n_gpus, failing):  # noqa: F811
    gpus(n_gpus)
    fake = doctor.timed_check

    def timed_check(ops):
        results, seconds = fake(ops)
        if failing and ops.name.startswith(failing):
            results[0].failures.append("a planted failure")
        return results, seconds

    monkeypatch.setattr(doctor, "timed_check", timed_check)
    code, out, _ = run(capsys, "doctor")
    fails = failing == "cpu" or (failing == "cuda:0" and n_gpus > 0)
    assert code == (1 if fails else 3 if n_gpus == 0 else 0)
    assert _last_line(out).startswith("overall: ") and not (code == 1 and VERIFIED.match(_last_line(out)))
