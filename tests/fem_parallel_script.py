"""Run by tests/test_fem_compat.py and tests/test_fem_eof.py, serial or under mpirun.

``python tests/fem_parallel_script.py OUT.npz`` computes the compat checks and a small
electroosmotic patch solve and (on rank 0) saves the point values; the tests compare the
values of ``mpirun -n 2`` with those of a serial run.
"""

import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, __import__("os").path.dirname(__file__))
import fem_problems  # noqa: E402


def main(out):
    comm = MPI.COMM_WORLD
    values = fem_problems.all_values(comm)
    if comm.rank == 0:
        np.savez(out, **values)


if __name__ == "__main__":
    main(sys.argv[1])
