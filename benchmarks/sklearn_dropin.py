"""The drop-in beside scikit-learn's own MLPClassifier and MLPRegressor: the same split, architecture, solver and
epochs, 10 seeds.

For each dataset (scikit-learn's digits scaled to [0, 1] and iris as it is, classified; its diabetes data with the
target standardized, and Friedman's first regression problem, 1,000 rows of 10 features, regressed) and seed: a
75/25 split (stratified for the classifiers), then ``MLPClassifier`` or ``MLPRegressor(hidden_layer_sizes=(64,),
max_iter=E, random_state=seed)`` from ``sklearn.neural_network`` and from ``mlp_xp.sklearn`` (adam, scikit-learn's
defaults otherwise), fitted one after the other (which goes first alternates), the test score (accuracy, or R^2
for the regressors) and the fit time recorded. Prints the mean scores and the median fit times, and their ratio.
``--sample-weight``: both fit with the same random weights, uniform in [0.5, 1.5), one per training row (the
scores stay unweighted).

    python benchmarks/sklearn_dropin.py [--seeds 10] [--sample-weight] [--json F]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.datasets import load_diabetes, load_digits, load_iris, make_friedman1  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402

from mlp_xp.files import write_json_atomic  # noqa: E402
from mlp_xp.sklearn import MLPClassifier as OursClassifier  # noqa: E402
from mlp_xp.sklearn import MLPRegressor as OursRegressor  # noqa: E402


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, (y - y.mean()) / y.std()


CLASSIFY, REGRESS = (SkClassifier, OursClassifier), (SkRegressor, OursRegressor)
#: name: (data, the features' scale, epochs, the estimators)
DATASETS = {
    "digits": (lambda: load_digits(return_X_y=True), 16.0, 100, CLASSIFY),
    "iris": (lambda: load_iris(return_X_y=True), 1.0, 500, CLASSIFY),
    "diabetes (regression)": (_diabetes, 1.0, 500, REGRESS),
    "friedman1 (regression)": (lambda: make_friedman1(1000, random_state=0), 1.0, 200, REGRESS),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--sample-weight", action="store_true", help="fit with random per-row weights in [0.5, 1.5)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    weighted = "; sample weights" if args.sample_weight else ""
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; {args.seeds} seeds{weighted}")
    print(
        "| data | epochs | score: scikit-learn | mlp_xp.sklearn | fit s (median): scikit-learn | mlp_xp.sklearn "
        "| time ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    result = {"cpu": cpu, "seeds": args.seeds, "sample_weight": args.sample_weight, "rows": []}
    for name, (load, scale, epochs, (Sk, Ours)) in DATASETS.items():
        X, y = load()
        X = X / scale
        acc = {"sk": [], "ours": []}
        secs = {"sk": [], "ours": []}
        for seed in range(args.seeds):
            stratify = y if Sk is SkClassifier else None
            Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=seed, stratify=stratify)
            rows = {}
            if args.sample_weight:
                rows["sample_weight"] = np.random.default_rng(seed).uniform(0.5, 1.5, len(ytr))
            order = (("sk", Sk), ("ours", Ours)) if seed % 2 == 0 else (("ours", Ours), ("sk", Sk))
            for key, cls in order:
                est = cls(hidden_layer_sizes=(64,), max_iter=epochs, random_state=seed)
                t = time.perf_counter()
                est.fit(Xtr, ytr, **rows)
                secs[key].append(time.perf_counter() - t)
                acc[key].append(est.score(Xte, yte))
        row = {
            "data": name,
            "epochs": epochs,
            "score": {k: float(np.mean(v)) for k, v in acc.items()},
            "fit_seconds": {k: [float(s) for s in v] for k, v in secs.items()},
        }
        med = {k: statistics.median(v) for k, v in secs.items()}
        print(
            f"| {name} | {epochs} | {row['score']['sk']:.4f} | {row['score']['ours']:.4f} | {med['sk']:.3f} | "
            f"{med['ours']:.3f} | {med['ours'] / med['sk']:.2f}x |"
        )
        result["rows"].append(row)
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
