"""The reference of every op: its formula in plain NumPy, in the notes' notation, short enough to check by eye.

A *reference* says what an op computes and is the oracle of every test and of ``mlp-xp doctor``; it is not
tuned and may allocate. The other implementations of each op are checked against it:

* the *NumPy path* (:mod:`mlp_xp.backend.numpy_path`): tuned NumPy, allocation-free, what the CPU backend
  runs where the compiled loops cannot;
* the *compiled loops* (``kernels/cpu.cpp``): the CPU backend's default;
* the *CUDA kernels* (``kernels/*.cu``): the GPU backend.

Each reference function names its implementations; ``ARCHITECTURE.md`` maps every formula to all of them.
:class:`mlp_xp.backend.reference_ops.ReferenceOps` runs the whole op vocabulary on these functions.
"""
