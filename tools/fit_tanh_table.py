"""Fit the table of float32 tanh by lookup in kernels/cpu.cpp (TanhTable), and check it over every float32.

The table: 30 intervals of a = |z| in [0, ONE] (ONE = 9.5, where tanh rounds to 1): [0, 2^-4), then quarter
octaves [2^e (1 + m/4), 2^e (1 + (m + 1)/4)) for e = -4 .. 3, m = 0 .. 3 (the last cut at ONE), numbered by the
bits of a: the exponent and the mantissa's top two bits, j = (bits(a) >> 21) - 491, below 0 taken as 0. On each,
tanh(a) = c0 + t (c1 + t (c2 + ... + t c6)), t = a - b_j:

- b_j is a float32 near the interval's middle for which tanh(b_j) is closest to a float32 (over 8001 of them),
  so that c0 = float32(tanh(b_j)) is all but exact (within 0.0002 ulp; 0.23 in the two top intervals, where
  tanh is within a few ulps of 1 and no better b is near); t is exact (Sterbenz: b_j/2 <= a <= 2 b_j).
- c1 .. c6 minimize the largest relative error against tanh (Lawson's iteration on weighted least squares, on
  2,000 Chebyshev points, c0 held), of the lowest degree from 3 to 6 within TARGET (the c_k above it 0; the top
  intervals' floor is c0's rounding), then are rounded to float32 one at a time, the others refitted after
  each rounding. On [0, 2^-4), b = 0 and the odd part only: c0 = 0, c1 = 1, c2 = c4 = c6 = 0, so that
  tanh(z) = z for the tiny and the subnormal z.

Run without arguments it prints the C++ rows of TanhTable, and each interval's degree and fit on stderr.
``--check`` evaluates the built loops' scalar lookup (``tanh_lookup_f32``, the same operations as each vector
lane) at every float32 from 0 to 128 against long double, and prints the worst error in ulps (about three minutes
on one core).

    python tools/fit_tanh_table.py [--check]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

f32 = np.float32
LONG = np.longdouble
ONE = 9.5
DEG = 6
TARGET = 2.0**-32  # relative error of a fit, before rounding: a 2^-8 ulp (the top intervals cannot reach it)
ENTRIES = 30  # of 32: vpermt2ps picks among 32; the last two repeat the last, as padding (no index reaches them)


def intervals():
    """(j, lo, hi) of each interval of a."""
    yield 0, 0.0, 2.0**-4
    for j in range(1, ENTRIES):
        e, m = (j - 1) // 4 - 4, (j - 1) % 4
        yield j, 2.0**e * (1 + m / 4), min(2.0**e * (1 + (m + 1) / 4), ONE)


def _fit(lo: float, hi: float, b: float, c0: float, fixed: dict[int, float]) -> dict[int, float]:
    """c1 .. c6 of the least largest relative error of c0 + sum c_k t^k on [lo, hi], t = a - b, given ``fixed``."""
    n = 2000
    a = (lo + (hi - lo) * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n)) / 2).astype(LONG)
    a = a[a > 0]
    f = np.tanh(a)
    t = a - LONG(b)
    h = float(np.max(np.abs(t)))  # the monomials in u = t / h, within [-1, 1], for a well-conditioned system
    free = [k for k in range(1, DEG + 1) if k not in fixed]
    if not free:
        return dict(fixed), float("nan")
    rhs = f - LONG(c0) - sum((LONG(v) * t**k for k, v in fixed.items()), LONG(0))
    rel = (1 / f).astype(np.float64)
    u = (t / LONG(h)).astype(np.float64)
    A = np.stack([u**k for k in free], 1) * rel[:, None]
    y = rhs.astype(np.float64) * rel
    w = np.full(len(u), 1 / len(u))
    for _ in range(60):  # Lawson: reweight by the residuals, toward the minimax solution
        sw = np.sqrt(w)
        c = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
        w = w * np.abs(A @ c - y)
        w /= w.sum()
    return {**fixed, **{k: float(ck) / h**k for k, ck in zip(free, c)}}, float(np.max(np.abs(A @ c - y)))


def _pick_b(lo: float, hi: float) -> tuple[np.float32, np.float32]:
    """(b, c0): a float32 b near (lo + hi) / 2 whose tanh is closest to a float32, c0."""
    mid = f32((lo + hi) / 2)
    cands = (mid + np.arange(-4000, 4001) * np.spacing(mid)).astype(f32)
    cands = cands[(cands > lo) & (cands < hi)]
    exact = np.tanh(cands.astype(LONG))
    near = exact.astype(f32)
    i = int(np.argmin(np.abs(exact - near.astype(LONG)) / np.spacing(near).astype(LONG)))
    return cands[i], near[i]


def table(report=None) -> np.ndarray:
    """The (DEG + 2) x 32 float32 table: row 0 the b_j, row k + 1 the c_k. ``report``: called with each
    interval's (j, lo, hi, degree, relative error of the fit before rounding)."""
    rows = []
    for j, lo, hi in intervals():
        if j == 0:
            (b, c0), odd = (f32(0), f32(0)), {1: 1.0, 2: 0.0, 4: 0.0, 6: 0.0}
        else:
            (b, c0), odd = _pick_b(lo, hi), {}
        for deg in range(3, DEG + 1):  # the lowest degree within TARGET; the c_k above it 0
            fixed = {**odd, **{k: 0.0 for k in range(deg + 1, DEG + 1)}}
            coefs, err = _fit(lo, hi, float(b), float(c0), fixed)
            if err < TARGET:
                break
        if report:
            report(j, lo, hi, deg, err)
        for k in range(1, DEG + 1):  # round one at a time, the rest refitted to make up for it
            if k not in fixed:
                fixed[k] = float(f32(coefs[k]))
                coefs, _ = _fit(lo, hi, float(b), float(c0), fixed)
        rows.append([b, c0, *(f32(fixed[k]) for k in range(1, DEG + 1))])
    t = np.array(rows, f32)
    return np.concatenate([t, np.repeat(t[-1:], 32 - ENTRIES, 0)]).T.copy()


def _hex(v: np.float32) -> str:
    if v == 0:
        return "0.0f"
    mant, exp = float(v).hex().split("p")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    return f"{mant}p{exp}f"


def cpp(t: np.ndarray) -> str:
    """TanhTable's rows as C++, each under a comment naming it, six entries a line."""
    lines = []
    for k, row in enumerate(t):
        lines.append(f"        // {'b' if k == 0 else f'c{k - 1}'}")
        vals = [_hex(v) for v in row]
        for i in range(0, len(vals), 6):
            lines.append(
                ("        {" if i == 0 else "         ")
                + ", ".join(vals[i : i + 6])
                + ("}," if i + 6 >= len(vals) else ",")
            )
    return "\n".join(lines)


def check() -> float:
    """The worst error, in ulps of the exact value, of the loops' scalar lookup over every float32 in [0, 128)
    whose tanh is a normal number (below: tanh(z) = z exactly, else it stops)."""
    from mlp_xp.backend import cpu_loops

    loops = cpu_loops.find()
    if loops is None or loops.tanh_lookup is None:
        raise SystemExit(f"no compiled loops with the tanh lookup here: {cpu_loops.status()}")
    worst, where = 0.0, 0.0
    chunk = 1 << 22
    end = int(np.array(128.0, f32).view(np.uint32))
    tiny = LONG(np.finfo(f32).tiny)
    for start in range(0, end, chunk):
        z = np.arange(start, min(start + chunk, end), dtype=np.uint32).view(f32)
        out = loops.tanh_lookup_f32(z)
        exact = np.tanh(z.astype(LONG))
        keep = exact >= tiny
        if not np.array_equal(out[~keep], z[~keep]):  # below the smallest normal number: tanh(z) = z
            raise SystemExit(f"tanh(z) != z for a tiny z in [{z[0]!r}, {z[-1]!r}]")
        if not keep.any():
            continue
        _, e = np.frexp(exact[keep])
        err = np.abs(out[keep].astype(LONG) - exact[keep]) / np.ldexp(LONG(1), e - 24)
        i = int(np.argmax(err))
        if err[i] > worst:
            worst, where = float(err[i]), float(z[keep][i])
    print(f"worst {worst:.3f} ulp, at z = {where!r} ({float(where).hex()})")
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="check the built loops' table over every float32 instead")
    args = p.parse_args(argv)
    if args.check:
        check()
    else:

        def report(j, lo, hi, deg, err):
            print(
                f"interval {j:2d} [{lo:.6g}, {hi:.6g}): degree {deg}, fit within {err:.2e} ({err / 2**-24:.4f} ulp)",
                file=sys.stderr,
            )

        print(cpp(table(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
