"""Finite-element references for the benchmark: case definitions, the HDF5 store, and
(in :mod:`reference.fem`, the only part that imports DOLFINx) the solvers."""
