"""CPU vs GPU: the trainer's step on every usable backend (and with a CUDA graph on a GPU) over several batch
sizes; prints the table and writes a PNG. The same as ``mlp-xp bench``.

    python benchmarks/backends.py --batch-sizes 32,128,512,2048 --plot benchmarks/results/backends.png
"""

import sys

from mlp_xp.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
