"""Shared fixtures: the finite-element values computed once serially and once under
``mpirun -n 2`` (tests/fem_problems.py), compared by the compat and solver tests."""

import pytest


@pytest.fixture(scope="session")
def parallel_values():
    import fem_problems

    return fem_problems.parallel_run()


@pytest.fixture(scope="session")
def serial_values():
    import fem_problems

    return fem_problems.serial_run()
