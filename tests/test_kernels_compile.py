"""NVRTC compiles every kernel, as CuPy would at run time, for sm_75, sm_80 and sm_90; no errors, no spills.

It needs CuPy and NVRTC (the ``test`` extra) but no GPU: the architecture is given explicitly, so nothing
asks the driver which device is present. CI sets MLP_XP_REQUIRE_NVRTC=1 so that a missing compiler fails
the run instead of skipping these tests.
"""

import os
import re

import pytest

from mlp_xp.backend import kernels

ARCHS = ["sm_75", "sm_80", "sm_90"]


def _nvrtc():
    try:
        from cupy._core import core
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
        return nvrtc, core
    except Exception as e:  # no CuPy, or no libnvrtc
        if os.environ.get("MLP_XP_REQUIRE_NVRTC") == "1":
            raise
        pytest.skip(f"NVRTC through CuPy is not available here ({e}): pip install -e '.[test]'")


def compile_file(fname: str, arch: str) -> tuple[str, dict[str, str]]:
    """Compile one kernel file with CuPy's own options plus -Xptxas=-v; return the log and lowered names."""
    nvrtc, core = _nvrtc()
    # The options RawModule uses (CuPy's include folders, --std=c++17, -ftz=true, the device-default
    # execution space), with the architecture pinned instead of queried from a device.
    opts = (
        f"--gpu-architecture={arch}",
        "-ftz=true",
        "--device-as-default-execution-space",
        "-Xptxas=-v",
        *core.assemble_cupy_compiler_options(("--std=c++17",)),
    )
    prog = nvrtc.createProgram(kernels.source(fname), fname, (), ())
    try:
        for name in kernels.KERNELS[fname]:
            nvrtc.addNameExpression(prog, name)
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError:
            pytest.fail(f"NVRTC failed on {fname} for {arch}:\n{nvrtc.getProgramLog(prog)}")
        lowered = {name: nvrtc.getLoweredName(prog, name) for name in kernels.KERNELS[fname]}
        assert nvrtc.getCUBIN(prog)
        return nvrtc.getProgramLog(prog), lowered
    finally:
        nvrtc.destroyProgram(prog)


def ptxas_stats(log: str) -> dict[str, dict[str, int]]:
    stats = {}
    for fn, body in re.findall(r"Compiling entry function '(\w+)'.*?\n(.*?)(?=Compiling entry|\Z)", log, re.S):
        regs = re.search(r"Used (\d+) registers", body)
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", body)
        stats[fn] = {
            "registers": int(regs.group(1)),
            "spill_stores": int(spill.group(1)),
            "spill_loads": int(spill.group(2)),
        }
    return stats


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fname", sorted(kernels.KERNELS))
def test_kernel_file_compiles_without_spills(fname, arch):
    log, lowered = compile_file(fname, arch)
    stats = ptxas_stats(log)
    # Every name expression became a kernel that ptxas compiled and reported on.
    assert set(lowered.values()) <= set(stats), f"ptxas did not report {set(lowered.values()) - set(stats)}"
    spilled = {fn: s for fn, s in stats.items() if s["spill_stores"] or s["spill_loads"]}
    assert not spilled, f"register spills in {fname} for {arch}: {spilled}"
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    assert not warnings, "\n".join(warnings)
