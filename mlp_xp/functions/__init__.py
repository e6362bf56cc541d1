"""The math of an MLP in NumPy: each forward formula beside its derivative.

These functions are the reference twins of the CUDA kernels in ``kernels/``: the same contract (argument
order, in-place behaviour, accumulators), written so a reader can check them against the course notes.
The NumPy backend calls them directly; tests compare the kernels against them.
"""
