"""The thread policy (pinn.training.threads): one intra-op thread per process unless PINN_THREADS
says otherwise, applied by the command line; and the stacked problem of a batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pinn.problems import get_problem
from pinn.problems.base import stack_problems
from pinn.training.threads import apply_thread_policy
from reference.cases import get_case

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_one_thread_by_default_and_the_variable_overrides(monkeypatch, restore_threads):
    monkeypatch.delenv("PINN_THREADS", raising=False)
    torch.set_num_threads(2)
    assert apply_thread_policy() == 1 and torch.get_num_threads() == 1
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("PINN_THREADS", str(cores))
    assert apply_thread_policy() == cores and torch.get_num_threads() == cores
    for bad in ("two", "0"):
        monkeypatch.setenv("PINN_THREADS", bad)
        with pytest.raises(ValueError, match="positive integer"):
            apply_thread_policy()
    # more threads than cores only wait for each other (was accepted silently)
    monkeypatch.setenv("PINN_THREADS", "999")
    with pytest.raises(ValueError, match=f"PINN_THREADS must be at most the {cores} CPU cores "
                                         "this process may run on, got 999"):
        apply_thread_policy()
    with pytest.raises(ValueError, match=f"threads must be at most the {cores} CPU cores"):
        apply_thread_policy(cores + 1)


def test_the_command_line_refuses_a_bad_thread_count():
    env = {"PINN_THREADS": "many", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "pinn", "train", "--steps", "1"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "PINN_THREADS must be a positive integer, got 'many'" in run.stderr


def test_stacked_problem_keeps_what_runs_share_and_stacks_what_differs():
    problems = [get_problem(get_case("thermo", gamma=g), n_points=8, dtype=torch.float64)
                for g in (1.0, 10.0, 50.0)]
    stacked = stack_problems(problems)
    assert stacked.case.gamma.shape == (3, 1) and stacked.case.gamma[2, 0] == 50.0
    assert stacked.case.kappa == problems[0].case.kappa          # shared: a plain number
    assert stacked.interior is problems[0].interior                # same points for all
    f_u = stacked.sources["pde_u"]   # depends on gamma: one row per run
    assert f_u.shape == (3, 8) and torch.equal(f_u[1], problems[1].sources["pde_u"])
    with pytest.raises(ValueError, match="one type"):
        stack_problems([problems[0], get_problem("npp", n_points=8)])
