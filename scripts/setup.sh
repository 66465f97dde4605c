#!/usr/bin/env bash
# Idempotent set-up: DOLFINx from the system (Debian packages) or from an active conda
# environment, plus a virtual environment `.venv` that sees it and holds the rest.
#
#   scripts/setup.sh            set up (a second run returns in about a second)
#   PYTHON=/path/python scripts/setup.sh   use that interpreter as the base
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
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $BASE $TORCH_SPEC"
if [[ -x $VENV/bin/python && -f $STAMP && "$(cat $STAMP)" == "$want" ]]; then
    exit 0
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
