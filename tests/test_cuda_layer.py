"""The thin CuPy layer (mlp_xp.backend.cupy_device) on the CPU model of CuPy (tests/cuda_host/fake_cupy.py):
each finding of the GPU audit as a scenario that fails without its fix, and, for each, a negative control: the
bug put back in a test-only subclass, caught by the same scenario.

Findings a GPU alone can show (uncoalesced loads, compile caching, the cost of memGetInfo) are measured by
benchmarks/gpu_check.py instead.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend.cupy_device import CupyDevice, GraphCaptureError, RawModuleKernels
from mlp_xp.backend.cupy_ops import CupyOps, gemm_geometry

from .conftest import cuda_host_backend
from .cuda_host.fake_cublas import FakeCublas
from .cuda_host.fake_cupy import CUDARuntimeError, FakeCupy, FakeDriver, RaceError, Stream


# ---- the bugs of the audit, put back (negative controls) ----
class NonePointerOps(CupyOps):
    """Finding 1: None passed for an absent array (a garbage pointer on CuPy 13)."""

    def _launch_named(self, name, grid, block, args, shared_mem=0):
        self.kernels.launch(name, grid, block, args, shared_mem)
        self._launched += 1


class NonePassingKernels(RawModuleKernels):
    def launch(self, name, grid, block, args, shared_mem=0):
        fn = self.function(name)
        with self.dev.device:
            fn(grid, block, args, shared_mem=shared_mem, stream=self.dev.stream)


class CurrentStreamDevice(CupyDevice):
    """Findings 2 and 3: the device and stream made current once, at construction; every call on whatever is
    current."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.device.use()
        self.stream.use()
        self.on = contextlib.nullcontext()


class CurrentStreamKernels(RawModuleKernels):
    def launch(self, name, grid, block, args, shared_mem=0):
        self.function(name)(grid, block, args, shared_mem=shared_mem)


class FinallyCaptureDevice(CupyDevice):
    """Finding 10 (and 3's missing check): end_capture in ``finally``, no node count."""

    def capture(self, fn, launched):
        with self.on:
            self.stream.begin_capture()
            try:
                fn()
            finally:
                graph = self.stream.end_capture()
        return graph


class SingleBufferPeekDevice(CupyDevice):
    """Finding 7: one pinned buffer, returned while the copy into it is in flight."""

    def peek(self, a):
        key = (a.data.ptr, a.shape, a.dtype.str)
        slot = self._peek.get(key)
        if slot is None:
            host = self.cp.cupyx.empty_pinned(a.shape, a.dtype)
            host[...] = 0
            slot = self._peek[key] = (host, None)
        host, event = slot
        if event is None or event.done:
            with self.on:
                a.get(stream=self.stream, out=host, blocking=False)
                event = self.cp.cuda.Event(disable_timing=True)
                event.record(self.stream)
            self._peek[key] = (host, event)
        return host


class AliasingDevice(CupyDevice):
    """Finding 12: cupy.asarray of a contiguous host array (zero-copy under CUPY_ENABLE_UMP=1)."""

    def from_host(self, arr, dtype):
        with self.on:
            return self.cp.asarray(np.ascontiguousarray(arr, dtype=dtype))


class MemInfoDevice(CupyDevice):
    """Finding 13: memGetInfo before every copy to the device."""

    def from_host(self, arr, dtype):
        self.memory()
        return super().from_host(arr, dtype)


def backend(
    host_kernels,
    index=0,
    *,
    fake,
    device_class=CupyDevice,
    kernels_class=RawModuleKernels,
    ops_class=CupyOps,
    gemm="cublas",
):
    dev = device_class(
        index, cupy=fake, driver=FakeDriver(fake), cublas_library=FakeCublas(dispatch=fake.cublas_dispatch)
    )
    return ops_class(index, gemm=gemm, device=dev, kernels=kernels_class(dev))


def _data(n=96, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)).astype(np.float32), rng.integers(0, classes, n)


def _train(ops, X, y, **kw):
    m = mlp_xp.MLP([X.shape[1], 8, 3], device=ops, seed=0)
    mlp_xp.fit(m, X, y, epochs=2, batch_size=16, lr=0.1, **kw)
    return m


def _own_work(fake, ops, since=0):
    """Every piece of work since ``since`` went to the backend's device and stream."""
    wrong = [w for w in fake.log[since:] if (w.device, w.stream) != (ops.index, ops.dev.stream.ptr)]
    return wrong


# ---- finding 1: None pointer arguments ----
def test_absent_arrays_are_real_null_pointers_on_cupy_13(host_kernels):
    fake = FakeCupy(host_kernels, version="13.6.0")
    ops = backend(host_kernels, fake=fake)
    X, y = _data()
    m = _train(ops, X, y, optimizer="sgd")  # plain SGD: no velocity; no class weights: both absent arrays
    assert m.predict_proba(X[:5]).shape == (5, 3)  # predict: no labels, no weights, no sums


def test_negative_control_none_pointers_are_caught(host_kernels):
    fake = FakeCupy(host_kernels, version="13.6.0")
    ops = backend(host_kernels, fake=fake, ops_class=NonePointerOps, kernels_class=NonePassingKernels)
    X, y = _data()
    with pytest.raises(CUDARuntimeError, match="garbage non-NULL pointer"):
        _train(ops, X, y, optimizer="sgd")


def test_the_kernel_loader_refuses_none_itself(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    z = ops.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="pass kernels.NULL"):
        ops.kernels.launch(
            "softmax_xent<float>",
            (1,),
            (4, 32),
            (z, None, None, None, None, np.int64(2), np.int32(3), np.int32(0), np.float32(0), np.float32(2)),
        )


# ---- finding 2: a second backend moves the current device and stream ----
def _second_device_scenario(host_kernels, **classes):
    fake = FakeCupy(host_kernels, n_devices=2)
    X, y = _data()
    ops0 = backend(host_kernels, 0, fake=fake, **classes)
    m = _train(ops0, X, y)
    before = m.predict_proba(X)
    ops1 = backend(host_kernels, 1, fake=fake, **classes)  # cuda:1 made after cuda:0, as m.to("cuda:1") does
    _train(ops1, X, y)
    start = len(fake.log)
    after = m.predict_proba(X)  # the cuda:0 model, used again
    mlp_xp.fit(m, X, y, epochs=1, batch_size=16, lr=0.1)
    return fake, ops0, start, before, after


def test_a_second_backend_on_another_device_leaves_the_first_alone(host_kernels):
    fake, ops0, start, before, after = _second_device_scenario(host_kernels)
    np.testing.assert_array_equal(before, after)
    assert _own_work(fake, ops0, start) == []
    assert fake.runtime.getDevice() == 0  # the caller's current device is what it was


def test_negative_control_a_backend_on_the_current_device_is_caught(host_kernels):
    with pytest.raises((mlp_xp.DataError, CUDARuntimeError, RaceError)):
        _second_device_scenario(host_kernels, device_class=CurrentStreamDevice, kernels_class=CurrentStreamKernels)


# ---- finding 3: capture while another stream is current ----
def _user_stream_scenario(host_kernels, **classes):
    """Training with cuda_graph inside the user's own ``with cupy.cuda.Stream()``: it must train exactly like the
    same run outside it."""
    X, y = _data()
    flats = []
    for user_stream in (False, True):
        fake = FakeCupy(host_kernels)
        ops = backend(host_kernels, fake=fake, **classes)
        with fake.cuda.Stream(non_blocking=True) if user_stream else contextlib.nullcontext():
            m = _train(ops, X, y, cuda_graph=True)
        flats.append(m.get_flat())
        assert ops.graph_gemm == "cublas"
    return flats


def test_a_capture_under_the_users_stream_records_the_step(host_kernels):
    plain, under = _user_stream_scenario(host_kernels)
    np.testing.assert_array_equal(plain, under)


def test_negative_control_a_capture_of_work_sent_elsewhere_fails_loudly(host_kernels, monkeypatch):
    # The kernels go to the user's stream and run at capture time; the graph holds only the GEMMs of the handle
    # bound to the backend's stream: the node count catches it (with the race detector off: a GPU has none).
    monkeypatch.setattr(FakeCupy, "_order", lambda self, s, name, reads, writes: None)
    with pytest.raises(GraphCaptureError, match=r"holds 5 node\(s\) for the step's 12 launches"):
        _user_stream_scenario(host_kernels, device_class=CurrentStreamDevice, kernels_class=CurrentStreamKernels)


def test_negative_control_without_the_node_check_the_empty_graph_trains_silently_wrong(host_kernels, monkeypatch):
    """What the node count guards against: with the race detector off (a GPU has none), the run completes and
    its weights are wrong."""

    class Unchecked(CurrentStreamDevice, FinallyCaptureDevice):
        pass

    monkeypatch.setattr(FakeCupy, "_order", lambda self, s, name, reads, writes: None)
    plain, under = _user_stream_scenario(host_kernels, device_class=Unchecked, kernels_class=CurrentStreamKernels)
    assert not np.array_equal(plain, under)


def test_a_worker_thread_trains_on_the_backend_made_in_the_main_thread(host_kernels):
    fake = FakeCupy(host_kernels)
    ops = backend(host_kernels, fake=fake)
    X, y = _data()
    reference = _train(backend(host_kernels, fake=FakeCupy(host_kernels)), X, y, cuda_graph=True).get_flat()
    result, errors = {}, []

    def work():  # a new thread: device 0 and the legacy stream are current there
        try:
            result["flat"] = _train(ops, X, y, cuda_graph=True).get_flat()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors, errors
    np.testing.assert_array_equal(result["flat"], reference)
    assert _own_work(fake, ops) == []


def test_a_second_capture_on_the_same_backend_is_refused(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    with ops.dev._capture_lock:  # another thread's capture in progress
        with pytest.raises(mlp_xp.ConfigError, match="already capturing a graph in another thread"):
            ops.capture(lambda: None)


def test_an_empty_capture_is_an_error(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    with pytest.raises(GraphCaptureError, match="0 node"):
        ops.capture(lambda: None)


# ---- finding 4: ordering against the legacy stream ----
def _legacy_stream_scenario(host_kernels):
    fake = FakeCupy(host_kernels)
    z = fake.asarray(np.array([[-1.0, 2.0]], np.float32))  # the user's upload, on the legacy stream
    ops = backend(host_kernels, fake=fake)
    ops.bias_act(z, ops.asarray(np.zeros(2, np.float32)), "relu", 0.0)  # the user's array, used directly
    X, y = _data()
    Xd = fake.asarray(X)  # uploaded after the backend exists, passed to fit as a CuPy array
    m = _train(ops, Xd, y)
    return ops.to_host(z), m


def test_the_backend_waits_for_the_users_uploads(host_kernels):
    z, _ = _legacy_stream_scenario(host_kernels)
    np.testing.assert_array_equal(z, [[0.0, 2.0]])


def test_negative_control_unordered_streams_are_caught(host_kernels, monkeypatch):
    monkeypatch.setattr(Stream, "wait_event", lambda self, event: None)
    with pytest.raises(RaceError, match="without waiting"):
        _legacy_stream_scenario(host_kernels)


# ---- finding 5: the gemm kernel's grid ----
def test_gemm_row_tiles_fit_any_batch(host_kernels):
    m = 5_000_000  # more than 65535 x 64 rows
    grid, block = gemm_geometry(m, 10)
    assert grid == (78125, 1) and block == (256,)
    z32 = np.int32(0)
    a = np.zeros((1, 1), np.float32)  # the checks happen before any argument is read
    args = (a, a, a, *(np.int32(1),) * 6, z32, z32, np.float32(1), np.float32(0))
    host_kernels.prepare("gemm<float>", grid, block, args)  # within every limit
    with pytest.raises(ValueError, match="exceeds the limits"):  # negative control: row tiles on grid.y
        host_kernels.prepare("gemm<float>", (1, 78125), block, args)
    with pytest.raises(mlp_xp.ConfigError, match="wider than the gemm kernel takes"):
        gemm_geometry(8, 65536 * 64)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gemm_kernel_over_several_tiles_both_ways(host_kernels, trans_a, trans_b, dtype):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    rng = np.random.default_rng(1)
    m, n, k = 131, 70, 37  # 3 row tiles, 2 column tiles, k not a multiple of 16
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    out = ops.asarray(C0)
    ops.gemm_kernel(ops.asarray(A), ops.asarray(B), out, trans_a=trans_a, trans_b=trans_b, accumulate=0.5)
    want = (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B) + 0.5 * C0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ops.to_host(out), want, rtol=tol, atol=tol * np.abs(want).max())


# ---- finding 7: peek ----
def _peek_scenario(host_kernels, device_class):
    fake = FakeCupy(host_kernels)
    ops = backend(host_kernels, fake=fake, device_class=device_class)
    sums = ops.zeros((2,), np.float64)
    seen = []
    for k in range(6):
        ops.fill(sums, float(k + 1))
        got = ops.peek(sums)
        in_flight = [dst for _, dst, _ in ops.dev.stream.pending]
        assert not any(got is dst for dst in in_flight), f"peek {k} returned the buffer a copy is writing"
        seen.append(got[0])
    return seen


def test_peek_returns_only_landed_copies(host_kernels):
    seen = _peek_scenario(host_kernels, CupyDevice)
    assert seen[0] == 0.0 and all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] > 0


def test_negative_control_a_single_buffer_peek_is_caught(host_kernels):
    with pytest.raises(AssertionError, match="returned the buffer a copy is writing"):
        _peek_scenario(host_kernels, SingleBufferPeekDevice)


def test_a_bar_that_shows_nothing_peeks_nothing(host_kernels, monkeypatch):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    calls = []
    monkeypatch.setattr(ops.dev, "peek", lambda a: calls.append(a))
    X, y = _data()
    _train(ops, X, y, verbose=True)  # stderr is not a terminal here: tqdm disables the bar
    assert calls == []


# ---- finding 10: the error of a failed capture ----
def _failing_capture(ops):
    a = ops.zeros((2, 2), np.float32)
    ops.capture(lambda: (ops.matmul(a, a, a), ops.synchronize()))  # a sync invalidates the capture


def test_a_failed_capture_reports_its_cause(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureUnsupported: a stream synchronization"):
        _failing_capture(ops)
    assert not ops.dev.stream.is_capturing()
    a = ops.zeros((2, 2), np.float32)
    assert ops.capture(lambda: ops.matmul(a, a, a)) is not None  # the backend captures again


def test_negative_control_a_finally_capture_hides_the_cause(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels), device_class=FinallyCaptureDevice)
    with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated"):
        _failing_capture(ops)


# ---- finding 12 and 13: copies to the device ----
def test_a_copy_to_the_device_never_aliases_host_memory(host_kernels):
    for device_class, aliases in ((CupyDevice, False), (AliasingDevice, True)):
        ops = backend(host_kernels, fake=FakeCupy(host_kernels, ump=True), device_class=device_class)
        host = np.ones(4, np.float32)
        dev = ops.asarray(host)
        host[:] = 7
        assert (ops.to_host(dev)[0] == 7) == aliases, device_class.__name__


def test_copies_to_the_device_do_not_query_memory(host_kernels):
    for device_class, calls in ((CupyDevice, 0), (MemInfoDevice, 10)):
        fake = FakeCupy(host_kernels)
        ops = backend(host_kernels, fake=fake, device_class=device_class)
        for _ in range(10):
            ops.asarray(np.zeros((16, 4), np.float32))
        assert fake.runtime.mem_get_info_calls == calls, device_class.__name__


def test_out_of_memory_still_names_the_size_and_the_fix(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels, total_bytes=1 << 20))
    with pytest.raises(mlp_xp.DeviceMemoryError, match="needs 3.8 MiB but only 1.0 MiB .* smaller batch size"):
        ops.asarray(np.zeros(1_000_000, np.float32))


# ---- the graph step's GEMMs: cuBLAS called directly, or the kernel ----
@pytest.mark.parametrize("gemm", ["cublas", "kernel"])
def test_a_graph_step_is_three_launches_and_trains_like_the_plain_step_with_the_same_gemm(host_kernels, gemm):
    X, y = _data(n=100)
    flats, per_step = [], []
    for graph in (False, True):
        fake = FakeCupy(host_kernels)
        ops = cuda_host_backend(host_kernels, gemm=gemm, fake=fake)
        marks = []
        m = mlp_xp.MLP([12, 8, 3], device=ops, seed=0)
        mlp_xp.fit(
            m,
            X,
            y,
            epochs=2,
            batch_size=16,
            lr=0.1,
            cuda_graph=graph,
            callbacks=[lambda r, mod, ops=ops, marks=marks: marks.append(ops.counts.ops)],
        )
        flats.append(m.get_flat())
        per_step.append(marks[1] - marks[0])
        if graph:
            assert ops.graph_gemm == ("cublas" if gemm == "cublas" else "kernel")
    np.testing.assert_array_equal(flats[0], flats[1])
    # An epoch: 6 full steps (6L + 1 = 13 ops each plain; copy, replay, update as a graph) and a partial one.
    assert per_step[0] - per_step[1] == 6 * (13 - 3)


def test_without_a_loadable_cublas_the_graph_falls_back_to_the_kernel_and_says_why(host_kernels):
    class NoCublas(CupyDevice):
        def capturable_gemm(self):
            raise mlp_xp.BackendUnavailable("libcublas is not loaded")

    ops = backend(host_kernels, fake=FakeCupy(host_kernels), device_class=NoCublas)
    X, y = _data()
    _train(ops, X, y, cuda_graph=True)
    assert ops.graph_gemm == "kernel (BackendUnavailable: libcublas is not loaded)"


# ---- finding 9: what "auto" confirms before it picks a GPU ----
class _FakeCupyModule:
    __version__ = "14.2.0"

    class cuda:  # noqa: N801
        class runtime:  # noqa: N801
            @staticmethod
            def driverGetVersion():  # noqa: N802
                return 13000


def test_the_probe_runs_a_kernel_and_cublas_and_caches_a_pass(host_kernels, monkeypatch):
    from mlp_xp import backend as backend_module

    monkeypatch.setattr(backend_module, "cuda_status", lambda i: (True, "CPU harness"))
    runs = []

    def run(index):
        runs.append(index)
        backend_module._probe_run(index, make=lambda i: backend(host_kernels, i, fake=FakeCupy(host_kernels)))

    assert backend_module.probe_cuda(0, run, cupy=_FakeCupyModule) == (True, "CPU harness")
    assert backend_module.probe_cuda(0, run, cupy=_FakeCupyModule) == (True, "CPU harness")
    assert runs == [0]  # the second run of the program skips it
    monkeypatch.setattr(_FakeCupyModule, "__version__", "14.3.0")
    backend_module.probe_cuda(0, run, cupy=_FakeCupyModule)
    assert runs == [0, 0]  # a new CuPy is probed again


def test_a_gpu_that_cannot_run_the_kernels_sends_auto_to_the_cpu_in_one_line(host_kernels, monkeypatch, capsys):
    from mlp_xp import backend as backend_module

    class Broken(FakeCupy):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.RawModule = self._no_nvrtc

        def _no_nvrtc(self, *a, **kw):
            raise RuntimeError("NVRTC could not be loaded (libnvrtc.so.13: cannot open shared object file)")

    monkeypatch.setattr(backend_module, "cuda_status", lambda i: (True, "CPU harness"))

    def run(index):
        backend_module._probe_run(index, make=lambda i: backend(host_kernels, i, fake=Broken(host_kernels)))

    ok, why = backend_module.probe_cuda(0, run, cupy=_FakeCupyModule)
    assert not ok and "failed the kernel check: RuntimeError: NVRTC could not be loaded" in why
    assert backend_module.probe_cuda(0, lambda i: None, cupy=_FakeCupyModule)[0]  # a failure is not cached
    monkeypatch.setattr(backend_module, "probe_cuda", lambda i: (False, why))
    backend_module._auto_choice.cache_clear()
    try:
        assert backend_module._auto_choice() == "cpu"
    finally:
        backend_module._auto_choice.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "using the CPU; CUDA not used: cuda:0 (CPU harness) failed" in err


def test_a_gpu_failure_mid_run_stops_the_run_in_one_line(host_kernels, monkeypatch, capsys, tmp_path):
    from mlp_xp import backend as backend_module
    from mlp_xp.cli import main

    class CUDARuntimeError(RuntimeError):  # stands for CuPy's, by the module it lives in
        pass

    CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"
    ops = backend(host_kernels, fake=FakeCupy(host_kernels))
    real, launches = ops.kernels.launch, []

    def failing(name, *args):
        launches.append(name)
        if len(launches) > 50:
            raise CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")
        real(name, *args)

    monkeypatch.setattr(ops.kernels, "launch", failing)
    monkeypatch.setattr(backend_module, "get_backend", lambda spec="auto": ops)
    saved = tmp_path / "m.npz"
    code = main(
        ["train", "--data", "digits", "--hidden", "16", "--epochs", "2", "--device", "cuda", "--save", str(saved)]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mlp-xp: error")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert not saved.exists()  # nothing half-trained was written
    assert "the GPU failed during the run (CUDARuntimeError: cudaErrorIllegalAddress" in err and "--device cpu" in err
    assert backend_module.is_cuda_failure(CUDARuntimeError()) and not backend_module.is_cuda_failure(ValueError())


# ---- the second reading against CuPy's source ----
class GraphHandleDevice(CupyDevice):
    """Counting a graph's nodes after end_capture, through Graph.graph: 0 on CuPy 13."""

    def capture(self, fn, launched):
        with self.on:
            self.stream.begin_capture()
            try:
                fn()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            graph = self.stream.end_capture()
        if self.driver.graph_node_count(graph.graph) < launched():
            raise GraphCaptureError("empty")
        return graph


@pytest.mark.parametrize("version", ["13.6.0", "14.2.0"])
def test_graph_steps_work_on_cupy_13_and_14(host_kernels, version):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels, version=version))
    X, y = _data()
    _train(ops, X, y, cuda_graph=True)
    a = ops.zeros((4, 4), np.float32)
    graph = ops.capture(lambda: ops.matmul(a, a, a))
    assert ops.dev.graph_nodes(graph) == 1


def test_negative_control_counting_nodes_through_graph_graph_fails_on_cupy_13(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels, version="13.6.0"), device_class=GraphHandleDevice)
    X, y = _data()
    with pytest.raises(RuntimeError, match="NULL graph"):
        _train(ops, X, y, cuda_graph=True)


class OwnStreamForeignCopyDevice(CupyDevice):
    """Another device's array copied on this backend's stream: not ordered after that device's work."""

    def foreign_to_host(self, a):
        return self.to_host(a)


def _foreign_array_scenario(host_kernels, device_class):
    fake = FakeCupy(host_kernels, n_devices=2)
    ops0 = backend(host_kernels, 0, fake=fake, device_class=device_class)
    with fake.cuda.Device(1):
        x1 = fake.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))  # queued on device 1's legacy stream
    return ops0.to_host(ops0.asarray(x1))


def test_another_devices_array_is_copied_after_its_work(host_kernels):
    np.testing.assert_array_equal(_foreign_array_scenario(host_kernels, CupyDevice), np.arange(6).reshape(2, 3))


def test_negative_control_a_foreign_copy_on_the_backends_stream_is_caught(host_kernels):
    with pytest.raises(RaceError, match="without waiting"):
        _foreign_array_scenario(host_kernels, OwnStreamForeignCopyDevice)


class ArrayCopyDevice(CupyDevice):
    """cupy.array(host, copy=True): CuPy's UMP path wraps the host memory whatever copy= says."""

    def from_host(self, arr, dtype):
        with self.on:
            return self.cp.array(np.ascontiguousarray(arr, dtype=dtype), dtype=dtype, copy=True, order="C")


def test_negative_control_copy_true_still_aliases_under_ump(host_kernels):
    ops = backend(host_kernels, fake=FakeCupy(host_kernels, ump=True), device_class=ArrayCopyDevice)
    host = np.ones(4, np.float32)
    dev = ops.asarray(host)
    host[:] = 7
    assert ops.to_host(dev)[0] == 7


class _DeviceContext:
    """The old switch: CuPy's ``with Device``, whose exit always calls cudaSetDevice(previous)."""

    def __init__(self, dev, stream=True):
        self.dev, self.stream = dev, stream

    def __enter__(self):
        self.dev.device.__enter__()
        if self.stream:
            self.dev.stream.__enter__()

    def __exit__(self, *exc):
        if self.stream:
            self.dev.stream.__exit__(*exc)
        self.dev.device.__exit__(*exc)


class DeviceContextDevice(CupyDevice):
    switch = _DeviceContext


@pytest.mark.parametrize("device_class, touches_gpu0", [(CupyDevice, False), (DeviceContextDevice, True)])
def test_a_backend_on_cuda_1_makes_no_context_on_gpu_0(host_kernels, device_class, touches_gpu0):
    fake = FakeCupy(host_kernels, n_devices=2)
    result = {}

    def work():  # a new thread: it reports device 0, which has no context
        ops1 = backend(host_kernels, 1, fake=fake, device_class=device_class)
        X, y = _data()
        _train(ops1, X, y, cuda_graph=True)
        result["flat"] = True

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert result == {"flat": True}
    assert (0 in fake.contexts) == touches_gpu0


class NoWarmUpOps(CupyOps):
    def _warm_graph_gemms(self, fn):
        pass


def test_cublas_kernels_are_loaded_before_the_capture(host_kernels):
    for ops_class, fails in ((CupyOps, False), (NoWarmUpOps, True)):
        ops = backend(host_kernels, fake=FakeCupy(host_kernels, lazy_cublas=True), ops_class=ops_class)
        X, y = _data()
        with pytest.raises(CUDARuntimeError, match="module loading") if fails else contextlib.nullcontext():
            _train(ops, X, y, cuda_graph=True)
