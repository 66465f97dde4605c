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

# make test runs the finite-element tests a second time on the PyPI wheel's DOLFINx 0.11
# (.venv-fe11, built by scripts/setup.sh where a Python >= 3.12 exists; FE11=0 skips it).
# Its DOLFINx libraries find the wheel's MPICH (libmpi.so.12) through LD_LIBRARY_PATH.
FE11_VENV := .venv-fe11
FE_TESTS := $(wildcard tests/test_fem_*.py)

# make test-paths: the numerics tests again under two other CPU code paths, MKL's SSE4.2
# kernels and ATen's non-vectorised ones: they round differently, as another CPU would, so
# a tolerance that holds only on this machine's kernels fails here.
NUMERICS_TESTS := tests/test_batched.py tests/test_cuda.py tests/test_soap.py \
	tests/test_trainer.py tests/test_derivatives.py tests/test_balancing.py tests/test_ntk.py \
	tests/test_own_methods.py tests/test_suite.py
CODE_PATHS := MKL_ENABLE_INSTRUCTIONS=SSE4_2 ATEN_CPU_CAPABILITY=default

.PHONY: setup test test-paths bench references clean
setup:
	@scripts/setup.sh

test: setup
	@echo "== make test 1/2: every test in .venv (DOLFINx from the system or conda)"
	$(PY) -m pytest tests/
	@if [ "$(FE11)" != 0 ] && [ -f $(FE11_VENV)/.setup-stamp ]; then \
	    echo "== make test 2/2: the finite-element tests in $(FE11_VENV) (the PyPI DOLFINx wheel)"; \
	    echo "LD_LIBRARY_PATH=$(FE11_VENV)/lib $(FE11_VENV)/bin/python -m pytest $(FE_TESTS)"; \
	    LD_LIBRARY_PATH="$(CURDIR)/$(FE11_VENV)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
	        $(FE11_VENV)/bin/python -m pytest $(FE_TESTS); \
	else \
	    echo "== make test 2/2 skipped: no $(FE11_VENV) (FE11=0, or no Python >= 3.12: see the set-up's message)"; \
	fi

test-paths: setup
	@set -e; for path in $(CODE_PATHS); do \
	    echo "== make test-paths: $$path $(PY) -m pytest $(NUMERICS_TESTS)"; \
	    env $$path $(PY) -m pytest -q $(NUMERICS_TESTS); \
	done

bench: setup
	$(PY) -m pytest suite/ --profile $(PROFILE) --device $(DEVICE) --benchmark-json $(BENCH_JSON)

references: setup
	mpirun -n $(NP) $(PY) -m reference generate --all

clean:
	rm -rf .venv $(FE11_VENV) .pytest_cache .benchmarks
