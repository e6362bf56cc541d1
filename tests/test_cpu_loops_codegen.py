"""The machine code of the compiled CPU loops (kernels/cpu.cpp): each elementwise loop is vectorized, with no
branch on the data inside it, for AVX2 (``-march=x86-64-v3``) and AVX-512 (``-march=x86-64-v4``), whatever CPU
runs the tests.

Why: a loop the compiler leaves scalar with a branch on the data runs at the branch predictor's mercy. ReLU's
backward did, with AVX2: g++ turned ``dh * (h > 0 ? 1 : 0)`` into a scalar loop with a jump on the sign of h,
13 times slower than the NumPy path on real activations, while with AVX-512 masks it was vectorized (issue 15).
A timing test would see that only on an AVX2 machine, and noisily; the machine code shows it on any x86-64
machine, since g++ compiles for either instruction set without running the result.

How: cpu.cpp is built with the compiler and the flags of mlp_xp/backend/cpu_loops.py (``-O3``, its
COMMON_FLAGS, ``-Werror``), with ``-march=x86-64-v3`` or ``-march=x86-64-v4`` in place of ``-march=native``.
``objdump -d -C`` lists each loop under its own symbol (cpu.cpp keeps each loop out of line, MLP_XP_LOOP, for
this), such as ``void act_backward_n<float, 1>(...)``. The loops of a function are the cycles of its
control-flow graph, nested by taking out the jumps back to a loop's head; an innermost loop (no cycle left
inside) is what runs per element. It is vectorized when it does arithmetic on ymm or zmm registers, and free of
data-dependent branches when its only conditional jump is its own loop test. Each checked function must have a
vectorized innermost loop, no innermost loop with a second conditional jump (a scalar remainder loop without
a branch is allowed) and no call inside an innermost loop (sigmoid's and tanh's forward called the math
library's tanhf per element, a scalar loop 9 to 12 times slower than the NumPy path). The negative controls
build the old forms, common.cuh's ``k_derivative`` in the ReLU backward's loop and ``k_activate`` in sigmoid's
and tanh's forward, and show that the check fails them for x86-64-v3. (Besides ReLU's backward, the
check found leaky ReLU's forward and Adam with an l1 penalty branching on the data with AVX2: both are now
written like it, see select_bits in cpu.cpp.)
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from mlp_xp.backend import cpu_loops
from mlp_xp.backend.kernels import ACTIVATION_CODES, kernel_dir

pytestmark = [
    pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 machine code only"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (the layouts checked are GCC's)"),
    pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)"),
]

MARCHES = ["x86-64-v3", "x86-64-v4"]
RELU, LEAKY = ACTIVATION_CODES["relu"], ACTIVATION_CODES["leaky_relu"]

#: The loops checked, by the start of their demangled symbol: every elementwise loop of cpu.cpp but the softmax
#: and the two other losses (rows of C or K, each summed in float64 in order, which the compiler may not reorder;
#: softmax's calls the math library's exp), but binary cross-entropy's elementwise part (sigmoid_bce_terms) and
#: the unweighted squared error (squared_error_flat, summed in a fixed number of lanes).
#: Sigmoid's and tanh's bias + activation are among them: they called the math library's tanh per element until
#: issue 15, and now compute it with cpu.cpp's own exp, vectorized, with no call in the loop.
LOOPS = [
    *(
        pytest.param(f"act_backward_n<{t}, {ACTIVATION_CODES[a]}>", id=f"act_backward-{a}-{t}")
        for t in ("float", "double")
        for a in ("relu", "leaky_relu", "sigmoid", "tanh")  # identity has no loop: dh stays as it is
    ),
    *(
        pytest.param(f"bias_act_rows<{t}, {ACTIVATION_CODES[a]}>", id=f"bias_act-{a}-{t}")
        for t in ("float", "double")
        for a in ("identity", "relu", "leaky_relu", "sigmoid", "tanh")
    ),
    *(  # a narrow batch's sigmoid and tanh, as one flat array
        pytest.param(f"bias_act_flat<{t}, {ACTIVATION_CODES[a]}>", id=f"bias_act_flat-{a}-{t}")
        for t in ("float", "double")
        for a in ("sigmoid", "tanh")
    ),
    *(
        pytest.param(f"{name}<{t}>", id=f"{name}-{t}")
        for t in ("float", "double")
        for name in ("bias_grad", "flush_subnormals", "add_l1")
    ),
    *(
        pytest.param(f"sigmoid_bce_terms<{t}, {g}>", id=f"sigmoid_bce-{'grad' if g == 'true' else 'p'}-{t}")
        for t in ("float", "double")
        for g in ("false", "true")
    ),
    *(
        pytest.param(f"squared_error_flat<{t}, {g}>", id=f"squared_error-{'grad' if g == 'true' else 'sum'}-{t}")
        for t in ("float", "double")
        for g in ("false", "true")
    ),
    *(
        pytest.param(f"adam_range<{t}, {p}>", id=f"adam-{'penalized' if p == 'true' else 'plain'}-{t}")
        for t in ("float", "double")
        for p in ("false", "true")
    ),
]

# ---- the check ----

HEADER = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
PREFIXES = {"bnd", "notrack", "ds", "cs", "rep", "repz", "repnz", "lock", "data16"}
VECTOR_REGISTER = re.compile(r"%[yz]mm\d")
NOT_ARITHMETIC = re.compile(r"^v(mov|zero|broadcast|pbroadcast|extract|insert|perm|shuf|unpck|punpck)")


@dataclass
class Insn:
    addr: int
    mnemonic: str
    operands: str

    @property
    def is_jump(self) -> bool:
        return self.mnemonic.startswith("j")

    @property
    def is_conditional_jump(self) -> bool:
        return self.is_jump and self.mnemonic not in ("jmp", "jmpq")

    @property
    def target(self) -> int | None:
        m = re.match(r"([0-9a-f]+)\b", self.operands)
        return int(m.group(1), 16) if self.is_jump and m else None

    @property
    def is_call(self) -> bool:
        return self.mnemonic.startswith("call")

    @property
    def is_vector_arithmetic(self) -> bool:
        return bool(VECTOR_REGISTER.search(self.operands)) and not NOT_ARITHMETIC.match(self.mnemonic)

    def __str__(self) -> str:
        return f"{self.addr:x}: {self.mnemonic} {self.operands}".rstrip()


def disassemble(lib: Path) -> dict[str, list[Insn]]:
    """Each function of ``lib`` (its demangled symbol) -> its instructions."""
    out = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(lib)], capture_output=True, text=True, check=True
    ).stdout
    return parse_listing(out)


def parse_listing(text: str) -> dict[str, list[Insn]]:
    """objdump's listing: each function's demangled symbol -> its instructions (prefixes such as ``notrack``
    dropped)."""
    functions: dict[str, list[Insn]] = {}
    current: list[Insn] | None = None
    for line in text.splitlines():
        if m := HEADER.match(line):
            current = functions.setdefault(m.group(2), [])
        elif current is not None and (m := INSN.match(line)):
            words = m.group(2).split(None, 1)
            while len(words) == 2 and words[0] in PREFIXES:
                words = words[1].split(None, 1)
            if words:
                current.append(Insn(int(m.group(1), 16), words[0], words[1].strip() if len(words) > 1 else ""))
    return functions


@dataclass
class Verdict:
    loops: int
    vectorized: int
    branchy: list[str]  # each innermost loop with a conditional jump besides its own test, its jumps listed
    calls: list[str] = field(default_factory=list)  # each call inside an innermost loop (a math library's, say)

    @property
    def ok(self) -> bool:
        return self.vectorized > 0 and not self.branchy and not self.calls

    def __str__(self) -> str:
        what = f"{self.loops} innermost loop(s), {self.vectorized} vectorized"
        what += "".join(f"; branch inside the loop {b}" for b in self.branchy)
        return what + "".join(f"; call inside a loop: {c}" for c in self.calls)


def _successors(insns: list[Insn]) -> list[list[int]]:
    """For each instruction, the indices of those that may run next (a jump out of the function, an indirect
    jump or a return: none)."""
    index = {i.addr: k for k, i in enumerate(insns)}
    succ = []
    for k, i in enumerate(insns):
        nxt = []
        if not (i.mnemonic in ("jmp", "jmpq") or i.mnemonic.startswith(("ret", "ud2"))) and k + 1 < len(insns):
            nxt.append(k + 1)
        if i.target is not None and i.target in index:
            nxt.append(index[i.target])
        succ.append(nxt)
    return succ


def _components(nodes: set[int], succ: dict[int, list[int]]) -> list[set[int]]:
    """The strongly connected components of the graph on ``nodes`` that are cycles (Kosaraju, iterative)."""
    order, seen = [], set()
    for root in sorted(nodes):
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next((n for n in it if n not in seen), None)
            if nxt is None:
                order.append(node)
                stack.pop()
            else:
                seen.add(nxt)
                stack.append((nxt, iter(succ[nxt])))
    pred: dict[int, list[int]] = {n: [] for n in nodes}
    for n in nodes:
        for m in succ[n]:
            pred[m].append(n)
    components, assigned = [], set()
    for root in reversed(order):
        if root in assigned:
            continue
        comp, todo = {root}, [root]
        assigned.add(root)
        while todo:
            for m in pred[todo.pop()]:
                if m not in assigned:
                    assigned.add(m)
                    comp.add(m)
                    todo.append(m)
        if len(comp) > 1 or root in succ[root]:
            components.append(comp)
    return components


def _innermost(nodes: set[int], succ: dict[int, list[int]], pred_all: list[list[int]]) -> list[set[int]]:
    loops = []
    for comp in _components(nodes, succ):
        # its heads: where it is entered from outside (a loop entered in its middle, as g++ lays some out,
        # has its head there); without the jumps back to them, what still cycles are the loops inside
        heads = {n for n in comp if any(p not in comp for p in pred_all[n])} or {min(comp)}
        inner_succ = {n: [m for m in succ[n] if m in comp and m not in heads] for n in comp}
        loops += _innermost(comp, inner_succ, pred_all) or [comp]
    return loops


def innermost_loops(insns: list[Insn]) -> list[list[Insn]]:
    """The instructions of each innermost loop, in address order.

    The loops are the cycles of the control-flow graph (its strongly connected components), nested by taking
    the jumps back to a loop's head out and looking for cycles again; innermost: no cycle left inside. This is
    robust to the layouts g++ uses: a loop entered in its middle, a rare case moved out of line and jumping
    back in (both inside the loop), a jump back from the path for short arrays into remainder code (no cycle,
    so no loop)."""
    succ = _successors(insns)
    pred: list[list[int]] = [[] for _ in insns]
    for k, nxt in enumerate(succ):
        for n in nxt:
            pred[n].append(k)
    graph = dict(enumerate(succ))
    return [[insns[k] for k in sorted(body)] for body in _innermost(set(graph), graph, pred)]


def check(insns: list[Insn]) -> Verdict:
    loops = innermost_loops(insns)
    vectorized = sum(any(i.is_vector_arithmetic for i in body) for body in loops)
    branchy = []
    for body in loops:
        jumps = [i for i in body if i.is_conditional_jump]
        if len(jumps) > 1:
            branchy.append(f"{body[0].addr:x}-{body[-1].addr:x} ({', '.join(map(str, jumps))})")
    calls = [str(i) for body in loops for i in body if i.is_call]
    return Verdict(len(loops), vectorized, branchy, calls)


def find(functions: dict[str, list[Insn]], prefix: str) -> list[Insn]:
    """The function whose demangled symbol starts with ``prefix`` + "(", after its return type (clones such as ``[clone
    .constprop.0]`` included: the one with the most code, should there be several)."""
    starts = tuple(f"{returns}{prefix}(" for returns in ("", "void ", "float ", "double "))
    found = [insns for name, insns in functions.items() if name.startswith(starts)]
    assert found, f"no symbol {prefix}(...) in the library: was the loop renamed, or inlined (MLP_XP_LOOP)?"
    return max(found, key=len)


# ---- the builds ----


@cache
def _gcc() -> list[str]:
    """The compiler of cpu_loops.py when it is GCC (``c++`` usually is), else g++: the layouts this test reads
    are GCC's."""
    cxx = cpu_loops.compiler()
    if cxx is None:
        return ["g++"]
    r = subprocess.run([*cxx, "--version"], capture_output=True, text=True)
    return cxx if r.returncode == 0 and "clang" not in r.stdout.lower() else ["g++"]


@cache
def _knows(march: str) -> bool:
    r = subprocess.run(
        [*_gcc(), f"-march={march}", "-x", "c++", "-fsyntax-only", "-"], input="", capture_output=True, text=True
    )
    return r.returncode == 0


def _build(source: Path, march: str, out: Path) -> Path:
    if not _knows(march):
        pytest.skip(f"{' '.join(_gcc())} does not know -march={march} (GCC 11 or later does)")
    lib = out / f"{source.stem}-{march}.so"
    flags = ["-O3", f"-march={march}", *cpu_loops.COMMON_FLAGS, "-Werror"]
    cmd = [*_gcc(), *flags, "-I", str(kernel_dir()), str(source), "-o", str(lib)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return lib


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("codegen")

    @cache
    def functions(march: str) -> dict[str, list[Insn]]:
        return disassemble(_build(kernel_dir() / cpu_loops.SOURCE, march, out))

    return functions


#: The loops cpu.cpp had before issue 15: common.cuh's g' multiplied in, and its g, as the CUDA kernels do it.
OLD_FORM = """
template <typename T, int ACT>
__attribute__((noinline)) static void act_backward_n(T* __restrict__ dh, const T* __restrict__ h, long long n,
                                                     T slope) {
    for (long long e = 0; e < n; ++e) dh[e] = dh[e] * k_derivative(h[e], ACT, slope);
}
extern "C" void act_backward_f32(float* dh, const float* h, long long n, int act, float slope) {
    if (act == ACT_RELU) act_backward_n<float, ACT_RELU>(dh, h, n, slope);
    else act_backward_n<float, ACT_LEAKY_RELU>(dh, h, n, slope);
}
template <typename T, int ACT>
__attribute__((noinline)) static void bias_act_rows(T* __restrict__ z, const T* __restrict__ b, long long rows,
                                                    long long cols, T slope) {
    for (long long r = 0; r < rows; ++r)
        for (long long c = 0; c < cols; ++c) z[r * cols + c] = k_activate(z[r * cols + c] + b[c], ACT, slope);
}
extern "C" void bias_act_f32(float* z, const float* b, long long rows, long long cols, int act, float slope) {
    if (act == ACT_SIGMOID) bias_act_rows<float, ACT_SIGMOID>(z, b, rows, cols, slope);
    else bias_act_rows<float, ACT_TANH>(z, b, rows, cols, slope);
}
"""


def _old_form(tmp_path: Path) -> Path:
    # cpu.cpp's own preamble (the includes and the CUDA words defined away), then the old loop
    text = (kernel_dir() / cpu_loops.SOURCE).read_text()
    marker = '#include "common.cuh"'
    assert marker in text
    src = tmp_path / "old_form.cpp"
    src.write_text(text.split(marker)[0] + marker + "\n" + OLD_FORM)
    return src


# ---- the tests ----


@pytest.mark.parametrize("march", MARCHES)
@pytest.mark.parametrize("loop", LOOPS)
def test_the_loop_is_vectorized_without_a_branch_on_the_data(built, march, loop):
    _skip_if_looked_up(march, loop)
    verdict = check(find(built(march), loop))
    assert verdict.ok, f"{loop} with -march={march}: {verdict}"


#: Where the target has AVX-512, float32 tanh is looked up (bias_tanh_lookup) before a batch could run flat, and the
#: compiler drops the flat tanh_v it never calls.
LOOKED_UP = {("x86-64-v4", f"bias_act_flat<float, {ACTIVATION_CODES['tanh']}>")}


def _skip_if_looked_up(march: str, loop: str) -> None:
    if (march, loop) in LOOKED_UP:
        pytest.skip(f"-march={march} looks float32 tanh up: no {loop} in the build")


#: The loops whose exp or tanh ask for fused multiply-adds (cpu.cpp's mul_add), and how many each element's
#: source asks for: the exp 9 in float32 (its shifter, its two-part reduction, five in its polynomial, the last
#: step) and 14 in float64 (a longer polynomial); tanh 4 (its shifter, its reduction, two polynomials) and 10
#: (float32's table lookup, built for AVX-512 in place of tanh_v, has 6: its polynomial; by march where they differ).
#: Where the target has FMA (x86-64-v3 and v4 do) each must be one instruction, not a multiply and an add.
FUSED = {
    **{f"bias_act_rows<{t}, {ACTIVATION_CODES['sigmoid']}>": n for t, n in (("float", 9), ("double", 14))},
    f"bias_act_rows<float, {ACTIVATION_CODES['tanh']}>": {"x86-64-v3": 4, "x86-64-v4": 6},
    f"bias_act_rows<double, {ACTIVATION_CODES['tanh']}>": 10,
    **{f"bias_act_flat<{t}, {ACTIVATION_CODES['sigmoid']}>": n for t, n in (("float", 9), ("double", 14))},
    **{f"bias_act_flat<{t}, {ACTIVATION_CODES['tanh']}>": n for t, n in (("float", 4), ("double", 10))},
    **{f"sigmoid_bce_terms<{t}, true>": n for t, n in (("float", 9), ("double", 14))},
}


@pytest.mark.parametrize("march", MARCHES)
@pytest.mark.parametrize("loop", sorted(FUSED))
def test_exp_and_tanh_are_fused_where_the_target_has_fma(built, march, loop):
    _skip_if_looked_up(march, loop)
    # the vector loop: the innermost loop with the most vector arithmetic (g++ may unroll it: at least one
    # element's worth)
    body = max(innermost_loops(find(built(march), loop)), key=lambda b: sum(i.is_vector_arithmetic for i in b))
    fused = sum(1 for i in body if re.match(r"vfn?m(add|sub)", i.mnemonic))
    want = FUSED[loop][march] if isinstance(FUSED[loop], dict) else FUSED[loop]
    assert fused >= want, f"{loop} with -march={march}: {fused} fused multiply-adds, {want} asked for"


@pytest.mark.parametrize("act", [RELU, LEAKY], ids=["relu", "leaky_relu"])
def test_the_check_catches_the_old_relu_backward(tmp_path, act):
    """Negative control: the form g++ cannot vectorize for AVX2 fails the check, with a branch in its loop."""
    functions = disassemble(_build(_old_form(tmp_path), "x86-64-v3", tmp_path))
    verdict = check(find(functions, f"act_backward_n<float, {act}>"))
    # should a later GCC vectorize this form, the control needs another one that it leaves branchy
    assert not verdict.ok and verdict.branchy and verdict.vectorized == 0, f"the old form: {verdict}"


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_the_check_catches_the_old_sigmoid_and_tanh_forward(tmp_path, act):
    """Negative control: a loop calling the math library's tanhf per element fails the check, for that call."""
    functions = disassemble(_build(_old_form(tmp_path), "x86-64-v3", tmp_path))
    verdict = check(find(functions, f"bias_act_rows<float, {ACTIVATION_CODES[act]}>"))
    assert not verdict.ok and verdict.calls, f"the old form: {verdict}"


def test_the_parser_reads_a_listing():
    # a loop with a jump over a multiply: the shape of the old ReLU backward (g++ 12, -march=x86-64-v3)
    listing = """
0000000000001e70 <void act_backward_n<float, 1>(float*, float const*, long long, float)>:
    1e70:\ttest   %rdx,%rdx
    1e73:\tjle    1ea2 <void act_backward_n<float, 1>(float*, float const*, long long, float)+0x32>
    1e80:\tvmovss (%rsi,%rdx,4),%xmm1
    1e8a:\tvcomiss %xmm2,%xmm1
    1e8e:\tja     1e94 <void act_backward_n<float, 1>(float*, float const*, long long, float)+0x24>
    1e90:\tvmulss %xmm2,%xmm0,%xmm0
    1e94:\tvmovss %xmm0,(%rax,%rdx,4)
    1e99:\tadd    $0x1,%rdx
    1e9d:\tcmp    %rdx,%rdi
    1ea0:\tjne    1e80 <void act_backward_n<float, 1>(float*, float const*, long long, float)+0x10>
    1ea2:\tret
"""
    verdict = check(find(parse_listing(listing), "act_backward_n<float, 1>"))
    assert verdict.loops == 1 and verdict.vectorized == 0 and len(verdict.branchy) == 1
