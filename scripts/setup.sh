#!/usr/bin/env bash
# Idempotent set-up: DOLFINx from the system (Debian packages) or from an active conda
# environment, plus a virtual environment `.venv` that sees it and holds the rest.
#
#   scripts/setup.sh            set up (a second run returns in about a second)
#   PYTHON=/path/python scripts/setup.sh   use that interpreter as the base
#
# Then a second venv, `.venv-fe11`, for the finite-element tests on a current DOLFINx: the
# PyPI wheel `dolfinx-solver-real` (DOLFINx 0.11, real PETSc, MPICH; Python >= 3.12), with
# numpy, scipy, h5py, xarray and pytest, no torch. `make test` runs tests/test_fem_*.py in it
# after the whole suite in `.venv`. The interpreter: $FE11_PYTHON, else the first of
# python3.14 ... python3.12, python3 and pyenv's 3.12+ that runs and is >= 3.12; none: the
# venv is skipped with a message. FE11=0 skips it.
#
# Why a venv with system site packages: DOLFINx, PETSc, MPI and an MPI build of HDF5/h5py
# cannot come from PyPI; they come from apt (or conda) and the venv adds PyTorch & co.
# Two traps (docs/setup.md): numpy must stay the base interpreter's numpy (petsc4py is
# compiled against it) and h5py must not come from PyPI (a second HDF5 in the process).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.setup-stamp
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
DEBIAN_PACKAGES="python3-dolfinx python3-venv python3-pip openmpi-bin python3-h5py-mpi libopenblas0-serial"

has_dolfinx() { "$1" -c "import dolfinx, h5py" >/dev/null 2>&1; }

# 1. the base interpreter: an explicit $PYTHON, an active conda env with DOLFINx, or Debian's
if [[ -n "${PYTHON:-}" ]]; then
    BASE=$PYTHON
elif [[ -n "${CONDA_PREFIX:-}" ]] && has_dolfinx "$CONDA_PREFIX/bin/python"; then
    BASE=$CONDA_PREFIX/bin/python
else
    BASE=/usr/bin/python3
    if ! has_dolfinx "$BASE" || ! command -v mpirun >/dev/null; then
        if ! command -v apt-get >/dev/null; then
            echo "setup: DOLFINx is not importable and this is not a Debian/Ubuntu system." >&2
            echo "       Use the conda route: conda env create -f environment.yml" >&2
            exit 1
        fi
        echo "setup: installing DOLFINx and MPI from the Debian packages"
        SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $DEBIAN_PACKAGES
    fi
fi

# 2. the venv; the stamp remembers what it was built from, so a second run is instant
setup_venv() {
    want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $BASE $TORCH_SPEC"
    if [[ -x $VENV/bin/python && -f $STAMP && "$(cat $STAMP)" == "$want" ]]; then
        return 0
    fi
    [[ -x $VENV/bin/python ]] || "$BASE" -m venv --system-site-packages $VENV

    # numpy is pinned to the base interpreter's; h5py (and packages that would pull a PyPI
    # h5py) are left to the base interpreter when it has one.
    constraints=$VENV/constraints.txt
    "$BASE" -c "import numpy; print(f'numpy=={numpy.__version__}')" > $constraints
    requirements=$("$BASE" - <<'PY'
import tomllib, importlib.util
meta = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = meta["dependencies"] + meta["optional-dependencies"]["test"]
have_h5py = importlib.util.find_spec("h5py") is not None
print("\n".join(r for r in reqs if not (have_h5py and r.split(">")[0].split("=")[0] == "h5py")))
PY
    )
    echo "setup: installing the Python dependencies into $VENV"
    PIP="$VENV/bin/python -m pip install -q --disable-pip-version-check -c $constraints"
    $PIP "$TORCH_SPEC"
    # shellcheck disable=SC2086
    $PIP $(echo "$requirements" | grep -v '^torch')
    # pytorch-optimizer is only the SOAP test oracle; its metadata asks for a newer numpy
    # than Debian's, which it does not need.
    $PIP --no-deps "pytorch-optimizer==4.1.0"
    $PIP --no-deps -e .
    echo "$want" > $STAMP
    echo "setup: done ($($VENV/bin/python -c 'import dolfinx, torch; print("dolfinx", dolfinx.__version__, "torch", torch.__version__)'))"
}
setup_venv

# 3. .venv-fe11: the PyPI DOLFINx wheel (no system packages: the wheel brings its own PETSc,
# MPICH and HDF5). Its DOLFINx libraries find MPICH's libmpi.so.12 in .venv-fe11/lib only
# through LD_LIBRARY_PATH (or when mpi4py.MPI is imported first): the Makefile sets it.
FE11_VENV=.venv-fe11
FE11_STAMP=$FE11_VENV/.setup-stamp
FE11_SPEC=${FE11_SPEC:-dolfinx-solver-real==0.11.0.post0}
FE11_PACKAGES="numpy scipy h5py xarray pytest"

find_python312() {  # the first of "$@" (default: the usual names) that runs, is >= 3.12
    local candidate   # and can make a venv; printed as its real path (not a pyenv shim)
    (($#)) || set -- python3.14 python3.13 python3.12 python3 \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3
    for candidate in "$@"; do
        if "$candidate" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 12))' \
                >/dev/null 2>&1; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

setup_fe11() {
    local python want start
    if [[ "${FE11:-1}" == 0 ]]; then
        return 0
    fi
    if [[ -n "${FE11_PYTHON:-}" ]] && ! python=$(find_python312 "$FE11_PYTHON"); then
        echo "setup: FE11_PYTHON=$FE11_PYTHON does not run as a Python >= 3.12 with venv" >&2
        return 1
    fi
    if [[ -z "${FE11_PYTHON:-}" ]] && ! python=$(find_python312); then
        echo "setup: no Python >= 3.12 found (tried python3.14 ... python3.12, python3," \
             "pyenv's 3.12+); skipping $FE11_VENV: make test runs the finite-element tests" \
             "on the system DOLFINx only. FE11_PYTHON=/path/to/python3.12 names one." >&2
        return 0
    fi
    want="$(sha256sum < scripts/setup.sh | cut -c1-16) $python $FE11_SPEC $PWD"
    if [[ -x $FE11_VENV/bin/python && -f $FE11_STAMP && "$(cat $FE11_STAMP)" == "$want" ]]; then
        return 0
    fi
    start=$SECONDS
    echo "setup: building $FE11_VENV ($FE11_SPEC on $python)"
    rm -rf $FE11_VENV
    build_fe11 "$python" || { rm -rf $FE11_VENV; return 1; }
    echo "$want" > $FE11_STAMP
    echo "setup: $FE11_VENV done in $((SECONDS - start)) s ($(LD_LIBRARY_PATH="$PWD/$FE11_VENV/lib" \
        $FE11_VENV/bin/python -c 'import dolfinx; from petsc4py import PETSc
print("dolfinx", dolfinx.__version__, "petsc", ".".join(map(str, PETSc.Sys.getVersion())))'))"
}

build_fe11() {  # the venv on interpreter $1 (a function: each step's failure returns 1)
    local purelib
    "$1" -m venv $FE11_VENV || return 1
    # shellcheck disable=SC2086
    $FE11_VENV/bin/python -m pip install -q --disable-pip-version-check "$FE11_SPEC" \
        $FE11_PACKAGES || return 1
    # the project by path (an editable install would fetch setuptools to build it)
    purelib=$($FE11_VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
        || return 1
    echo "$PWD" > "$purelib/multiphysics_pinn_bench.pth"
    [[ -x $FE11_VENV/bin/mpirun ]] || { echo "setup: $FE11_VENV has no mpirun" >&2; return 1; }
    LD_LIBRARY_PATH="$PWD/$FE11_VENV/lib" $FE11_VENV/bin/python -c \
        'import dolfinx, h5py, xarray, reference.fem.compat' || return 1
}

if ! setup_fe11; then
    echo "setup: no $FE11_VENV (above); FE11=0 skips it" >&2
    exit 1
fi
