"""Launching a command under ``mpirun`` with the environment this project needs.

Open MPI refuses to run as root (containers, CI) unless told it may, and refuses more
ranks than cores unless oversubscription is allowed; Debian's h5py picks its MPI build only
when asked. The Makefile exports the same variables; code that starts ``mpirun`` itself
uses :func:`mpirun`.

Which ``mpirun``: the one beside the running interpreter when there is one (the PyPI
DOLFINx wheel's venv, ``.venv-fe11``, brings MPICH's; a conda environment its own), else
the first on PATH (Debian's Open MPI for ``.venv``). A launcher of another MPI would start
N separate one-rank processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["MPI_ENV", "mpi_env", "mpirun"]

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "H5PY_ALWAYS_USE_MPI": "1",
}


def mpi_env() -> dict[str, str]:
    """The current environment plus :data:`MPI_ENV`."""
    return {**os.environ, **MPI_ENV}


def mpirun(n: int, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``mpirun -n N command...`` (``subprocess.run`` keywords pass through)."""
    beside = Path(sys.executable).parent / "mpirun"
    executable = str(beside) if os.access(beside, os.X_OK) else shutil.which("mpirun")
    if executable is None:
        raise RuntimeError("mpirun is not installed (Debian: openmpi-bin; run `make setup`)")
    return subprocess.run([executable, "-n", str(n), *command], env=mpi_env(), **kwargs)
