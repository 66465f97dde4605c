#!/usr/bin/env bash
# Runs the finite-element tests on DOLFINx 0.9 (Debian 13's python3-dolfinx, Python 3.13)
# in a Debian 13 chroot, without touching the host's DOLFINx. Needs root and a Debian mirror.
#
#   scripts/test-dolfinx-0.9.sh              set up what is missing, then run the tests
#   scripts/test-dolfinx-0.9.sh -k stokes    extra arguments go to pytest
#
# Idempotent: the chroot (.chroot/trixie, git-ignored, ~2.2 GB) is built once by debootstrap
# and its packages installed once; later runs only mount and test. `rm -rf .chroot` starts
# over. The project is bind-mounted at /project inside; every mount is undone on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=$PWD
CHROOT=$PROJECT/.chroot/trixie
SUITE=trixie
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# What the FE tests import: dolfinx (+ petsc4py, ufl, basix, ffcx), mpi4py and mpirun,
# scipy (reference/exact.py), h5py with MPI and xarray (reference/store.py), pytest. No torch.
# (Debian 13 moved `import h5py` itself into python3-h5py; -mpi only adds the MPI build.)
PACKAGES="python3-dolfinx python3-mpi4py openmpi-bin python3-scipy python3-h5py python3-h5py-mpi
python3-xarray python3-pytest"
TESTS="tests/test_fem_compat.py tests/test_fem_eof.py tests/test_fem_cli.py"

if [[ $(id -u) != 0 ]]; then
    echo "test-dolfinx-0.9: needs root (debootstrap, chroot, mount); run it with sudo" >&2
    exit 1
fi

# A mount left under the chroot (a killed run) must be undone by hand first: rebuilding the
# chroot with the project still bind-mounted inside would delete the project.
if awk '{print $2}' /proc/self/mounts | grep -q "^$CHROOT/"; then
    echo "test-dolfinx-0.9: something is still mounted under $CHROOT (a killed run?):" >&2
    awk '{print $2}' /proc/self/mounts | grep "^$CHROOT/" >&2
    echo "  unmount it (umount PATH) and run again" >&2
    exit 1
fi

elapsed() { echo "test-dolfinx-0.9: $1 took $((SECONDS - $2)) s"; }

# 1. the Debian 13 root file system (the stamp marks a debootstrap that finished)
STAMP=$CHROOT/.debootstrap-done
if [[ ! -f $STAMP ]]; then
    if ! command -v debootstrap >/dev/null; then
        echo "test-dolfinx-0.9: installing debootstrap on the host"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
    fi
    echo "test-dolfinx-0.9: debootstrap $SUITE into .chroot/trixie"
    rm -rf "$CHROOT"   # a half-finished earlier attempt
    mkdir -p "$CHROOT"
    start=$SECONDS
    debootstrap --variant=minbase "$SUITE" "$CHROOT" "$MIRROR" >/dev/null
    touch "$STAMP"
    elapsed debootstrap "$start"
fi

# 2. mounts: /proc and a read-only /sys (MPI and hwloc read them), a tmpfs /dev/shm
#    (Open MPI's shared memory), the project
MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" || echo "test-dolfinx-0.9: could not unmount ${MOUNTS[i]}" >&2
    done
}
trap cleanup EXIT
trap "exit 130" INT
trap "exit 143" TERM
mount_at() {  # mount_at TARGET MOUNT-ARGUMENTS...
    local target=$CHROOT$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTS+=("$target")
}
mount_at /proc -t proc proc
mount_at /sys -t sysfs -o ro sysfs
mount_at /dev/shm -t tmpfs -o size=512m shm
mount_at /project --bind "$PROJECT"

in_chroot() {
    chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# 3. the packages (dpkg -s fails when any is missing)
# shellcheck disable=SC2086
if ! in_chroot dpkg -s $PACKAGES >/dev/null 2>&1; then
    echo "test-dolfinx-0.9: apt-get install in the chroot: $(echo $PACKAGES)"
    start=$SECONDS
    cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
    log=$PROJECT/.chroot/apt.log   # dpkg is chatty; the log is shown when apt fails
    if ! { in_chroot apt-get update -qq &&
           in_chroot apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $PACKAGES &&
           in_chroot apt-get clean; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "test-dolfinx-0.9: apt-get failed in the chroot (full log: .chroot/apt.log)" >&2
        exit 1
    fi
    elapsed "apt-get install" "$start"
fi
in_chroot python3 -c 'import sys, dolfinx; print("test-dolfinx-0.9: DOLFINx", dolfinx.__version__, "on Python", sys.version.split()[0])'

# 4. the tests, with the project on PYTHONPATH (it is not pip-installed there)
start=$SECONDS
status=0
# shellcheck disable=SC2086
in_chroot OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_rmaps_base_oversubscribe=1 H5PY_ALWAYS_USE_MPI=1 PYTHONPATH=/project \
    PYTHONDONTWRITEBYTECODE=1 \
    sh -c 'cd /project && exec python3 -m pytest -p no:cacheprovider "$@"' pytest \
    $TESTS "$@" || status=$?
elapsed tests "$start"
exit "$status"
