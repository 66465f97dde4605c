"""Finite-element references (the only part of the project that imports DOLFINx).

- :mod:`reference.fem.compat`  DOLFINx 0.5 ... 0.11 differences behind small functions
- :mod:`reference.fem.meshes`  channel meshes graded towards the walls (and a patch)
- :mod:`reference.fem.eof`     the six-field electroosmotic flow solver (Newton + MUMPS)
- :mod:`reference.fem.npp`     the 1D Nernst-Planck-Poisson solver (cross-check of exact.py)
- :mod:`reference.fem.mms`     manufactured solutions and observed convergence rates
- :mod:`reference.fem.generate` solve, verify and write a case's reference file
"""
