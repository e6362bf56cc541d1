"""Each compiled CPU loop (``kernels/cpu.cpp``) timed against the NumPy path's op, on this machine.

The compiled loops exist to be faster than the NumPy path; whether they are depends on the CPU and the compiler
(ReLU's backward was 13 times slower on an AVX2 machine until issue 15, while faster with AVX-512), so this
measures it where the code runs: ``benchmarks/cpu_loops.py`` at length, ``mlp-xp doctor`` in a few lines
(:func:`doctor_lines`, well under a second).

The cases are the shapes of a 784-512-256-10 training step at batch 128 (bias_act and act_backward on 128 x 512
and 128 x 256, bias_grad on those and 128 x 10, the softmax on 128 x 10 logits, Adam and the subnormal flush over
the 535,818 parameters), on data shaped like a real run's, not like uniform noise: pre-activations and gradients
of random sign, so that a ReLU's output is about half zeros in no pattern (what a branch predictor cannot learn),
a velocity of which 9% is subnormal (as momentum leaves it on MNIST, see cpu.cpp). The NumPy side is what the
CPU backend runs without the compiled loops (``NumpyOps(fast=False)``): the functions of
:mod:`~mlp_xp.backend.numpy_path`, NumPy's sum for bias_grad, and for the flush, which the NumPy path does not
do at all, its cheapest NumPy form (abs, less, copyto where).

Each call is timed alone with ``time.perf_counter`` on inputs restored (untimed) to the same values first; a
round is ``calls`` such calls of one implementation and gives their median; the two implementations alternate
round by round, and a result is the median over rounds of each and the ratio of those medians (compiled /
NumPy: below 1, the compiled loop is faster).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from . import numpy_path
from .scratch import ScratchCache

BATCH, SIZES = 128, (784, 512, 256, 10)
N_WEIGHTS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
N_PARAMS = N_WEIGHTS + sum(SIZES[1:])
SLOPE = 0.01
#: The share of a velocity that is subnormal, as momentum leaves it on MNIST-shaped data (kernels/cpu.cpp).
SUBNORMAL_SHARE = 0.09

#: act_backward's activations: identity has no loop (dh is left as it is, by both sides).
BACKWARD_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
FORWARD_ACTIVATIONS = ("identity", *BACKWARD_ACTIVATIONS)


@dataclass
class Case:
    """One op on one input. ``inputs`` holds the pristine arrays and ``mutable`` the names of those the op writes
    (restored before every call); ``compiled`` (given the CompiledLoops) and ``numpy`` (given a ScratchCache) bind
    an implementation to a working copy."""

    op: str
    what: str
    inputs: dict[str, np.ndarray]
    mutable: tuple[str, ...]
    compiled: Callable[[dict, object], Callable[[], None]]
    numpy: Callable[[dict, ScratchCache], Callable[[], None]]

    @property
    def name(self) -> str:
        return f"{self.op} {self.what}"


@dataclass
class Timing:
    """A case's result: medians over rounds, in seconds, and each round's median."""

    case: Case
    compiled: float
    numpy: float
    rounds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.compiled / self.numpy

    def as_dict(self) -> dict:
        return {
            "op": self.case.op,
            "case": self.case.what,
            "compiled_us": self.compiled * 1e6,
            "numpy_us": self.numpy * 1e6,
            "ratio": self.ratio,
            "rounds_us": {k: [t * 1e6 for t in v] for k, v in self.rounds.items()},
        }


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def step_arrays(dtype, activation: str, X: np.ndarray | None = None, y: np.ndarray | None = None, *, seed: int = 0):
    """What a step's elementwise ops see, per hidden layer l (0, 1): the pre-activation ``z[l]`` (h W, before
    the bias), the output ``h[l]``, the gradient ``dh[l]`` arriving from above; and the ``logits`` with their
    ``labels``.

    With a batch X (at least 128 rows, in [0, 1]) and its labels y, from one forward and backward pass (float64,
    then cast) of a He-initialized 784-512-256-10 network: real images' activations. Without, synthetic ones of
    the same make: z normal, so that a ReLU's output is half zeros in no pattern, dh of random sign.
    """
    from ..reference.layer import activate, derivative

    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    widths = SIZES[1:-1]
    if X is None:
        z = [rng.standard_normal((BATCH, w)) for w in widths]
        h = [activate(zl, activation, SLOPE) for zl in z]
        dh = [rng.standard_normal((BATCH, w)) * 0.01 for w in widths]
        logits, labels = rng.standard_normal((BATCH, SIZES[-1])) * 3, rng.integers(0, SIZES[-1], BATCH)
    else:
        Ws = [rng.standard_normal((a, b)) * np.sqrt(2 / a) for a, b in zip(SIZES[:-1], SIZES[1:])]
        z, h = [], [np.asarray(X[:BATCH], np.float64)]
        for W in Ws[:-1]:
            z.append(h[-1] @ W)
            h.append(activate(z[-1], activation, SLOPE))
        h = h[1:]
        logits, labels = h[-1] @ Ws[-1], np.asarray(y[:BATCH])
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = p
        g[np.arange(BATCH), labels] -= 1
        g /= BATCH
        dh = [None, None]
        for layer in (1, 0):
            dh[layer] = g @ Ws[layer + 1].T
            g = dh[layer] * derivative(h[layer], activation, SLOPE)
    return {
        "z": [a.astype(dt) for a in z],
        "h": [a.astype(dt) for a in h],
        "dh": [a.astype(dt) for a in dh],
        "logits": logits.astype(dt),
        "labels": labels.astype(np.int32),
    }


def _bias_act_case(act: str, z: np.ndarray, b: np.ndarray, slope) -> Case:
    """bias_act with activation ``act`` on the pre-activations z and the bias b."""
    return Case(
        "bias_act",
        f"{act} {_shape(z.shape)}",
        {"z": z, "b": b},
        ("z",),
        lambda w, k: lambda: k.bias_act(w["z"], w["b"], act, slope),
        lambda w, s: lambda: numpy_path.bias_act(w["z"], w["b"], act, slope, s),
    )


def cases(dtype=np.float32, X: np.ndarray | None = None, y: np.ndarray | None = None, *, seed: int = 0) -> list[Case]:
    """Every case, in the order of the table of ``benchmarks/cpu_loops.py``, on the arrays of :func:`step_arrays`
    (real images' when X and y are given)."""
    rng = np.random.default_rng(seed + 1)
    dt = np.dtype(dtype)
    slope = dt.type(SLOPE)
    arrays = {act: step_arrays(dt, act, X, y, seed=seed) for act in BACKWARD_ACTIVATIONS}
    relu = arrays["relu"]

    def normal(shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dt)

    out = [_bias_act_case(act, zl, normal(zl.shape[1:], 0.1), slope) for act in FORWARD_ACTIVATIONS for zl in relu["z"]]
    # the output layer's z_L = h W_L + b_L: bias + identity at the logits' width
    out.append(_bias_act_case("identity", relu["logits"], normal(relu["logits"].shape[1:], 0.1), slope))
    for act in BACKWARD_ACTIVATIONS:
        for dhl, hl in zip(arrays[act]["dh"], arrays[act]["h"]):
            out.append(
                Case(
                    "act_backward",
                    f"{act} {_shape(dhl.shape)}",
                    {"dh": dhl, "h": hl},
                    ("dh",),
                    lambda w, k, act=act: lambda: k.act_backward(w["dh"], w["h"], act, slope),
                    lambda w, s, act=act: lambda: numpy_path.act_backward(w["dh"], w["h"], act, slope, s),
                )
            )
    # a ReLU layer's gradient g = dh * g'(h) (half zeros), and the logits' gradient
    grads = [(dhl * (hl > 0)).astype(dt) for dhl, hl in zip(relu["dh"], relu["h"])]
    p = np.exp(relu["logits"] - relu["logits"].max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(BATCH), relu["labels"]] -= 1
    grads.append((p / BATCH).astype(dt))
    for g in grads:
        out.append(
            Case(
                "bias_grad",
                _shape(g.shape),
                {"g": g, "db": np.zeros(g.shape[1], dt)},
                ("db",),
                lambda w, k: lambda: k.bias_grad(w["g"], w["db"]),
                lambda w, s: lambda: np.sum(w["g"], axis=0, out=w["db"]),
            )
        )
    out.append(
        Case(
            "softmax_xent",
            _shape(relu["logits"].shape),
            {"z": relu["logits"], "y": relu["labels"], "acc": np.zeros(2)},
            ("z", "acc"),
            lambda w, k: lambda: k.softmax_xent(w["z"], w["y"], w["acc"]),
            lambda w, s: lambda: numpy_path.softmax_xent(w["z"], w["y"], w["acc"], scratch=s),
        )
    )
    # a multi-label output layer: the logits against 0/1 targets
    targets = (rng.random(relu["logits"].shape) < 0.3).astype(dt)
    out.append(
        Case(
            "sigmoid_bce",
            _shape(relu["logits"].shape),
            {"z": relu["logits"], "y": targets, "acc": np.zeros(2)},
            ("z", "acc"),
            lambda w, k: lambda: k.sigmoid_bce(w["z"], w["y"], w["acc"]),
            lambda w, s: lambda: numpy_path.sigmoid_bce(w["z"], w["y"], w["acc"], scratch=s),
        )
    )
    # a regression's output layer: 10 and 1 outputs against targets near them
    for k_out in (SIZES[-1], 1):
        zr = normal((BATCH, k_out))
        out.append(
            Case(
                "squared_error",
                _shape(zr.shape),
                {"z": zr, "y": (zr + normal(zr.shape, 0.5)).astype(dt), "acc": np.zeros(2)},
                ("z", "acc"),
                lambda w, k: lambda: k.squared_error(w["z"], w["y"], w["acc"]),
                lambda w, s: lambda: numpy_path.squared_error(w["z"], w["y"], w["acc"], scratch=s),
            )
        )
    penalized = {"g": normal(N_WEIGHTS, 1e-3), "w": normal(N_WEIGHTS, 0.05)}
    out.append(
        Case(
            "add_l1",
            f"{N_WEIGHTS} weights",
            penalized,
            ("g",),
            lambda w, k: lambda: k.add_l1(w["g"], w["w"], 1e-5),
            lambda w, s: lambda: numpy_path.add_penalties(w["w"], w["g"], N_WEIGHTS, 0.0, 1e-5, s),
        )
    )
    velocity = normal(N_PARAMS, 1e-3)
    sub = rng.random(N_PARAMS) < SUBNORMAL_SHARE
    velocity[sub] = (rng.random(int(sub.sum())) * np.finfo(dt).tiny * np.sign(velocity[sub])).astype(dt)
    out.append(
        Case(
            "flush_subnormals",
            f"{N_PARAMS} ({SUBNORMAL_SHARE:.0%} subnormal)",
            {"v": velocity},
            ("v",),
            lambda w, k: lambda: k.flush_subnormals(w["v"]),
            lambda w, s: lambda: _numpy_flush(w["v"], s),
        )
    )
    adam = {
        "p": normal(N_PARAMS, 0.05),
        "g": normal(N_PARAMS, 1e-3),
        "m": normal(N_PARAMS, 1e-4),
        "v": np.abs(normal(N_PARAMS, 1e-6)),
    }
    for what, penalties in (("", {}), (" with l2, l1", {"l2": 1e-4, "l1": 1e-5})):
        kw = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, **penalties}
        out.append(
            Case(
                "adam_update",
                f"{N_PARAMS}{what}",
                adam,
                ("p", "m", "v"),
                lambda w, k, kw=kw: lambda: k.adam_update(w["p"], w["g"], w["m"], w["v"], N_WEIGHTS, 1e-3, 10, **kw),
                lambda w, s, kw=kw: (
                    lambda: numpy_path.adam_update(w["p"], w["g"], w["m"], w["v"], N_WEIGHTS, 1e-3, 10, **kw, scratch=s)
                ),
            )
        )
    return out


def _numpy_flush(a: np.ndarray, scratch: ScratchCache) -> None:
    # The compiled flush's work in NumPy (the NumPy path itself does not flush): a <- 0 where |a| < tiny.
    t = scratch("flush", a.shape, a.dtype)
    mask = scratch("flush_mask", a.shape, np.bool_)
    np.abs(a, out=t)
    np.less(t, np.finfo(a.dtype).tiny, out=mask)
    np.copyto(a, 0, where=mask)


def _calls_for(fn: Callable[[], None], restore: Callable[[], None], seconds: float, lo: int, hi: int) -> int:
    t = time.perf_counter()
    restore()
    fn()
    one = max(time.perf_counter() - t, 1e-7)
    return int(min(hi, max(lo, seconds / one)))


def measure(
    case: Case,
    loops,
    *,
    rounds: int = 5,
    seconds: float = 0.02,
    min_calls: int = 5,
    max_calls: int = 2000,
    others: dict | None = None,
) -> Timing:
    """Time ``case`` on ``loops`` (a :class:`~mlp_xp.backend.cpu_loops.CompiledLoops`) and on the NumPy path:
    ``rounds`` rounds each, alternating, of about ``seconds`` of calls (between min_calls and max_calls).
    ``others``: more builds of the loops by name (an older cpu.cpp, another compiler), timed in the same rounds
    (their medians in :attr:`Timing.rounds`)."""
    scratch = ScratchCache()
    impls = {}
    for side, k in {"compiled": loops, **(others or {}), "numpy": None}.items():
        work = {name: a.copy() for name, a in case.inputs.items()}
        fn = case.numpy(work, scratch) if k is None else case.compiled(work, k)
        pairs = [(work[name], case.inputs[name]) for name in case.mutable]

        def restore(pairs=pairs) -> None:
            for dst, src in pairs:
                np.copyto(dst, src)

        impls[side] = (fn, restore)
    with np.errstate(all="ignore"):
        for fn, restore in impls.values():  # warm: scratch buffers, caches, the library's first call
            for _ in range(3):
                restore()
                fn()
        calls = {side: _calls_for(fn, restore, seconds, min_calls, max_calls) for side, (fn, restore) in impls.items()}
        per_round: dict[str, list[float]] = {side: [] for side in impls}
        for _ in range(rounds):
            for side, (fn, restore) in impls.items():
                times = []
                for _ in range(calls[side]):
                    restore()
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
                per_round[side].append(statistics.median(times))
    med = {side: statistics.median(v) for side, v in per_round.items()}
    return Timing(case, med["compiled"], med["numpy"], per_round)


def machine() -> dict:
    """The CPU (model, cores, the vector instruction sets the code may use), NumPy's BLAS (threadpoolctl's view
    when it is installed: the kernels OpenBLAS picked and its threads) and the compiled loops' build."""
    from . import cpu_loops

    model, flags, ids = platform.processor() or platform.machine(), set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif key.strip() in ("cpu family", "model") and key.strip() not in ids:
                    ids[key.strip()] = value.strip()
    except OSError:
        pass
    # (a KVM guest's model name can be just "Intel(R) Xeon(R) Processor": the family and model tell them apart)
    if len(ids) == 2:
        model += f" (family {ids['cpu family']} model {ids['model']})"
    isa = [name for flag, name in _ISA if flag in flags]
    blas: dict = {}
    try:
        from threadpoolctl import threadpool_info

        every = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        # (NumPy's own: where mlp_xp loaded MKL beside it, MKL is named by cpu_backend_blas)
        info = next((i for i in every if "numpy" in i.get("filepath", "")), every[0] if every else None)
        if info:
            keys = ("internal_api", "version", "architecture", "num_threads")
            blas = {k: info.get(k) for k in keys if info.get(k) is not None}
    except Exception:  # not installed, or it could not read the libraries: name the BLAS NumPy was built with
        pass
    if not blas:
        try:
            dep = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = {"internal_api": dep.get("name", "?"), "version": dep.get("version", "")}
        except Exception:  # show_config(mode=) is NumPy >= 1.25
            blas = {"internal_api": "unknown"}
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": isa,
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "numpy": np.__version__,
        "blas": blas,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "cpu_backend_blas": _backend_blas(),
        "compiled_loops": cpu_loops.status(),
    }


def _backend_blas() -> str:
    """The BLAS the CPU backend calls, in words (:func:`mlp_xp.backend.blas.describe`)."""
    from . import blas

    try:
        return blas.describe() or "none (NumPy's matmul)"
    except ConfigError as e:
        return f"none: {e}"


#: /proc/cpuinfo flags of the vector instruction sets the compiled loops (-march=native) may use, by name.
_ISA = (
    ("sse4_2", "SSE4.2"),
    ("avx", "AVX"),
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512F"),
    ("avx512bw", "AVX-512BW"),
    ("avx512vl", "AVX-512VL"),
    ("asimd", "NEON"),
    ("sve", "SVE"),
)


def describe(m: dict) -> str:
    """One line naming the machine of :func:`machine`."""
    isa = ", ".join(m["isa"]) or "no vector extension found"
    if m["avx2"] and not m["avx512f"]:
        isa += " (no AVX-512)"
    blas = m["blas"]
    kernels = f", {blas['architecture']} kernels" if blas.get("architecture") else ""
    threads = f", {blas['num_threads']} threads" if blas.get("num_threads") else ""
    coretype = f", OPENBLAS_CORETYPE={m['openblas_coretype']}" if m["openblas_coretype"] else ""
    own = m.get("cpu_backend_blas", "NumPy's OpenBLAS")
    calls = "" if own == "NumPy's OpenBLAS" else f"; mlp_xp's CPU backend calls {own}"
    return (
        f"{m['cpu']}, {m['cores']} cores, {isa}; NumPy {m['numpy']} with {blas.get('internal_api', '?')} "
        f"{blas.get('version', '')}{kernels}{threads}{coretype}{calls}".replace("  ", " ")
    )


#: What ``mlp-xp doctor`` times: each loop once, on the first hidden layer's shape (the first case of each name).
DOCTOR_CASES = (
    *(f"bias_act {act} 128x512" for act in FORWARD_ACTIVATIONS),
    *(f"act_backward {act} 128x512" for act in BACKWARD_ACTIVATIONS),
    "bias_grad 128x512",
    "softmax_xent 128x10",
    "sigmoid_bce 128x10",
    "squared_error 128x10",
    "add_l1",
    "flush_subnormals",
    "adam_update",
)


def parse_widths(text: str) -> list[int]:
    """Layer widths written as the benchmarks take them, ``"10,17,100"``; ValueError naming the fix otherwise."""
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ValueError(f"{text!r} is not a list of widths: give positive integers, comma separated, e.g. 10,17,100")
    return widths


def width_cases(widths, dtype=np.float32, activations=FORWARD_ACTIVATIONS, *, seed: int = 0) -> list[Case]:
    """bias_act for each activation on BATCH x w pre-activations (normal, scale 2: both sides of every bend), for
    each width w: the layer widths a step of another model uses (benchmarks/cpu_loops.py --widths)."""
    rng = np.random.default_rng(seed + 2)
    dt = np.dtype(dtype)
    slope = dt.type(SLOPE)
    out = []
    for width in widths:
        z, b = (rng.standard_normal((BATCH, width)) * 2).astype(dt), (rng.standard_normal(width) * 0.1).astype(dt)
        out += [_bias_act_case(act, z, b, slope) for act in activations]
    return out


def doctor_cases(dtype=np.float32) -> list[Case]:
    every = cases(dtype)
    return [next(c for c in every if c.name.startswith(name)) for name in DOCTOR_CASES]


def format_timing(t: Timing, width: int = 40) -> str:
    verdict = "" if t.ratio <= 1 else "  SLOWER than NumPy"
    return f"    {t.case.name:<{width}s} {t.compiled * 1e6:9.1f} us {t.numpy * 1e6:9.1f} us {t.ratio:7.2f}x{verdict}"


def doctor_lines(loops, *, rounds: int = 3, seconds: float = 0.004) -> list[str]:
    """A few lines for ``mlp-xp doctor``: each compiled loop against the NumPy path, float32, synthetic data
    (about half a second)."""
    timings = [measure(c, loops, rounds=rounds, seconds=seconds, min_calls=3, max_calls=200) for c in doctor_cases()]
    return [
        f"  compiled loop vs NumPy path on {describe(machine())}",
        f"    {'(float32, median of ' + str(rounds) + ' rounds)':<40s} {'compiled':>12s} {'NumPy':>12s} {'ratio':>8s}",
        *(format_timing(t) for t in timings),
    ]
