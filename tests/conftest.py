"""Shared fixtures: the finite-element values computed once serially and once under
``mpirun -n 2`` (tests/fem_problems.py), compared by the compat and solver tests; and a
summary line saying which DOLFINx the finite-element tests ran on."""

import sys
from pathlib import Path

import pytest


def _is_fe_test(nodeid: str) -> bool:
    return Path(nodeid.split("::")[0]).name.startswith("test_fem_")


def pytest_terminal_summary(terminalreporter):
    """One line naming the DOLFINx the finite-element tests (tests/test_fem_*.py) ran on and
    how they did: ``make test`` runs them on two (Debian's 0.5.2 in .venv, the PyPI wheel's
    0.11 in .venv-fe11), and the CI log says which passed where."""
    dolfinx = sys.modules.get("dolfinx")   # imported by those tests: nothing to load here
    counts = {outcome: sum(_is_fe_test(r.nodeid) for r in terminalreporter.stats.get(outcome, [])
                           if getattr(r, "when", "call") in ("call", "setup"))
              for outcome in ("passed", "failed", "error", "skipped")}
    if dolfinx is None or not any(counts.values()):
        return
    petsc = sys.modules.get("petsc4py.PETSc")
    mpi = sys.modules.get("mpi4py.MPI")
    parts = [f"PETSc {'.'.join(map(str, petsc.Sys.getVersion()))}" if petsc else None,
             " ".join(mpi.Get_library_version().splitlines()[0].split(",")[0].split())
             if mpi else None,
             f"Python {sys.version.split()[0]}", Path(sys.prefix).name]
    terminalreporter.write_line(
        f"finite-element tests on DOLFINx {dolfinx.__version__} "
        f"({', '.join(p for p in parts if p)}): "
        + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n), bold=True)


@pytest.fixture(scope="session")
def parallel_values():
    import fem_problems

    return fem_problems.parallel_run()


@pytest.fixture(scope="session")
def serial_values():
    import fem_problems

    return fem_problems.serial_run()


# What reads a tensor's value back to the host: on a GPU each of these waits for the device.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


class HostReads:
    """Spies on :data:`HOST_READS`: ``reads`` lists the ones made while ``watching`` is true
    (the tensor methods are restored when the test ends)."""

    def __init__(self, monkeypatch):
        import torch

        self.reads, self.watching = [], False
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def spy(tensor, *args, _name=name, _original=original, **kwargs):
                if self.watching:
                    self.reads.append(_name)
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, spy)


@pytest.fixture
def host_reads(monkeypatch):
    return HostReads(monkeypatch)
