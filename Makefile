# The two commands: `make bench` (the benchmark suite, default CPU profile) and `make test`.
# Each sets itself up first (scripts/setup.sh, idempotent).
PY := .venv/bin/python
NP ?= 2
PROFILE ?= smoke
DEVICE ?= cpu
BENCH_JSON ?= bench.json

# MPI as root (containers, CI), the MPI build of h5py, one BLAS thread per MPI rank.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export H5PY_ALWAYS_USE_MPI := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

.PHONY: setup test bench references clean
setup:
	@scripts/setup.sh

test: setup
	$(PY) -m pytest tests/

bench: setup
	$(PY) -m pytest suite/ --profile $(PROFILE) --device $(DEVICE) --benchmark-json $(BENCH_JSON)

references: setup
	mpirun -n $(NP) $(PY) -m reference generate --all

clean:
	rm -rf .venv .pytest_cache .benchmarks
