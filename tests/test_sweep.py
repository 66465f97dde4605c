"""Sweeps: the spec, the plan, the index, resuming after a kill, MPI sharding, the CLI."""

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pinn.__main__ import main
from pinn.training.sweep import load_spec, plan

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
output = "out"
methods = ["adam+gn", "soap+none"]
seeds = [0, 1]
batch_size = {batch_size}

[budget]
steps = {steps}
width = 8
depth = 1
n_points = 16
eval_every = 20
balance_every = 10
device = "cpu"
checkpoint_every = 20

[systems.thermo]
couplings = [1, 10]
"""


def write_spec(folder: Path, steps=40, batch_size=4) -> Path:
    path = folder / "spec.toml"
    path.write_text(SPEC.format(steps=steps, batch_size=batch_size))
    return path


def test_plan_expands_the_grid_with_overrides(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    runs = plan(spec)
    assert len(runs) == 2 * 2 * 2  # couplings x methods x seeds
    assert runs[0].id == "thermo-gamma1-adam-gn-constant-s0"
    assert runs[0].config.case_params == {"gamma": 1} and runs[0].config.width == 8
    assert runs[0].run_dir == tmp_path / "out" / "runs" / runs[0].id
    only = load_spec(write_spec(tmp_path), methods=["soap+gn"], seeds=[5],
                     schedules=["warmup-exp"], budget={"steps": 7})
    ids = [run.id for run in plan(only)]
    assert ids == ["thermo-gamma1-soap-gn-warmup-exp-s5", "thermo-gamma10-soap-gn-warmup-exp-s5"]
    assert plan(only)[0].config.steps == 7
    # a system table beats the budget; the command line beats both
    path = write_spec(tmp_path)
    path.write_text(path.read_text() + "steps = 30\n")   # inside [systems.thermo]
    assert {run.config.steps for run in plan(load_spec(path))} == {30}
    assert {run.config.steps for run in plan(load_spec(path, budget={"steps": 7}))} == {7}


@pytest.mark.parametrize("text, message", [
    ("colour = 1", "unknown key"),
    ('methods = ["soap"]', "OPTIMIZER\\+BALANCING"),
    ('[systems.heat]\ncouplings = [1]', "unknown system"),
    ('[budget]\nstepz = 3', "stepz"),
    ("couplings = [-1, 10]", "run thermo-gamma-1-adam-gn-constant-s0: gamma must be >= 0"),
])
def test_bad_specs_are_reported(tmp_path, text, message):
    base = SPEC.format(steps=10, batch_size=2)
    if text.startswith("methods"):
        base = base.replace('methods = ["adam+gn", "soap+none"]', text)
    elif text.startswith("[budget]"):
        base = base.replace("[budget]", text)
    elif text.startswith("[systems"):
        base += text
    elif text.startswith("couplings"):
        base = base.replace("couplings = [1, 10]", text)
    else:
        base = text + "\n" + base
    path = tmp_path / "bad.toml"
    path.write_text(base)
    with pytest.raises(ValueError, match=message):
        load_spec(path)


def test_cuda_is_checked_when_the_spec_is_read(tmp_path):
    import torch

    if torch.cuda.is_available():
        spec = load_spec(write_spec(tmp_path), budget={"device": "cuda"})
        assert {run.config.device for run in plan(spec)} == {"cuda"}
    else:
        with pytest.raises(ValueError, match="'cuda' was requested but CUDA is not available"):
            load_spec(write_spec(tmp_path), budget={"device": "cuda"})


def test_a_sweep_in_which_no_run_completed_exits_1(tmp_path, capsys):
    path = write_spec(tmp_path, steps=10)
    path.write_text(path.read_text().replace("width = 8", "width = 16\nlr = 1e3\neval_every = 5")
                    .replace("eval_every = 20\n", ""))
    assert main(["sweep", str(path), "--seeds", "0", "--no-progress"]) == 1
    assert "0 of 4 runs completed" in capsys.readouterr().out


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in list(env):  # a sweep run by pytest under mpirun must not think it is one
        if name.startswith(("OMPI_COMM_WORLD", "PMI_", "PMIX_")):
            del env[name]
    return env


def _index(folder: Path) -> list[dict]:
    with open(folder / "out" / "index.csv") as handle:
        return list(csv.DictReader(handle))


def test_a_killed_sweep_finishes_on_restart_without_retraining(tmp_path):
    spec = write_spec(tmp_path, steps=150, batch_size=1)
    command = [sys.executable, "-m", "pinn", "sweep", str(spec), "--no-progress"]
    runs = tmp_path / "out" / "runs"
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while len(list(runs.glob("*/metrics.json"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    done = {path.parent.name: path.stat().st_mtime_ns for path in runs.glob("*/metrics.json")}
    assert 2 <= len(done) < 8, "the sweep should have been killed part-way"
    assert not (tmp_path / "out" / "index.csv").exists()

    finished = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(done)} finished, {8 - len(done)} to train" in finished.stdout
    for name, mtime in done.items():  # finished runs were not trained again
        assert (runs / name / "metrics.json").stat().st_mtime_ns == mtime
    rows = _index(tmp_path)
    assert len(rows) == 8 and {row["status"] for row in rows} == {"completed"}
    assert all(float(row["final_l2_avg"]) > 0 and row["step"] == "150" for row in rows)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index[0]["config"]["steps"] == 150


def test_cli_sweep_batches_and_is_idempotent(tmp_path, capsys):
    spec = write_spec(tmp_path, steps=20, batch_size=4)
    # --index-only: the index of what is finished (nothing yet), no run folder touched
    assert main(["sweep", str(spec), "--methods", "adam+gn", "--index-only"]) == 0
    assert "0 of 4 runs finished" in capsys.readouterr().out
    assert {row["status"] for row in _index(tmp_path)} == {"pending"}
    assert not (tmp_path / "out" / "runs").exists()
    assert main(["sweep", str(spec), "--no-progress", "--methods", "adam+gn"]) == 0
    out = capsys.readouterr().out
    assert "batch of 4" in out and "4 of 4 runs completed" in out
    history = tmp_path / "out" / "runs" / "thermo-gamma10-adam-gn-constant-s1" / "history.csv"
    assert history.read_text().count("\n") == 3  # header + steps 0, 20
    assert main(["sweep", str(spec), "--no-progress", "--methods", "adam+gn"]) == 0
    assert "4 finished, 0 to train" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--methods", "adam+gn", "--index-only"]) == 0
    assert "4 of 4 runs finished" in capsys.readouterr().out
    assert {row["status"] for row in _index(tmp_path)} == {"completed"}
    # More steps: the finished runs continue from their checkpoints.
    assert main(["sweep", str(spec), "--no-progress", "--methods", "adam+gn", "--steps", "40"]) == 0
    assert "batch of 4 (thermo, adam+gn, constant) from step 20" in capsys.readouterr().out
    assert history.read_text().count("\n") == 4  # header + steps 0, 20, 40
    # Another trajectory under the same run ids (a changed lr): refused, nothing overwritten.
    spec.write_text(spec.read_text().replace("steps =", "lr = 0.01\nsteps ="))
    with pytest.raises(SystemExit):
        main(["sweep", str(spec), "--no-progress", "--methods", "adam+gn", "--steps", "40"])
    assert "another config" in capsys.readouterr().err


def test_mpirun_without_mpi4py_stops_with_a_message(tmp_path, monkeypatch, capsys):
    spec = write_spec(tmp_path, steps=20, batch_size=4)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)      # import mpi4py fails
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(spec), "--no-progress"])
    assert stop.value.code == 2 and "mpi4py is not installed" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.skipif(shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
                    reason="needs mpirun and mpi4py")
def test_mpi_ranks_split_the_runs_and_rank0_writes_the_whole_index(tmp_path):
    spec = write_spec(tmp_path, steps=20, batch_size=4)
    env = dict(_env(), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    done = subprocess.run(["mpirun", "-n", "2", sys.executable, "-m", "pinn", "sweep", str(spec),
                           "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[rank 0/2] 4 runs: 0 finished, 4 to train" in done.stdout
    assert "[rank 1/2] 4 runs: 0 finished, 4 to train" in done.stdout
    rows = _index(tmp_path)
    assert sorted(row["id"] for row in rows) == sorted(run.id for run in plan(load_spec(spec)))
    assert {row["status"] for row in rows} == {"completed"}


def test_a_folder_that_cannot_be_resumed_is_moved_aside_not_deleted(tmp_path, capsys):
    """Raising --steps resumes finished runs from their checkpoints; a run whose checkpoint
    is unreadable, or missing, starts afresh and its folder - metrics and all - is moved to
    <output>/broken/, never deleted."""
    spec = write_spec(tmp_path, steps=20, batch_size=4)
    assert main(["sweep", str(spec), "--no-progress", "--methods", "adam+gn"]) == 0
    capsys.readouterr()
    runs = tmp_path / "out" / "runs"
    garbled, missing = "thermo-gamma1-adam-gn-constant-s0", "thermo-gamma10-adam-gn-constant-s1"
    (runs / garbled / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (runs / missing / "checkpoint.pt").unlink()
    assert main(["sweep", str(spec), "--no-progress", "--methods", "adam+gn",
                 "--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert f"{garbled}: its checkpoint cannot be read" in out
    assert f"{missing}: it holds no checkpoint" in out
    broken = sorted(p.name for p in (tmp_path / "out" / "broken").iterdir())
    assert [name.rsplit("-", 2)[0] for name in broken] == sorted([garbled, missing])
    for name in broken:  # the finished runs' metrics are kept
        metrics = json.loads((tmp_path / "out" / "broken" / name / "metrics.json").read_text())
        assert metrics["step"] == 20
    rows = {row["id"]: row for row in _index(tmp_path)}
    assert {row["step"] for row in rows.values()} == {"40"}
    with open(runs / garbled / "history.csv") as handle:  # retrained from step 0
        assert [row["step"] for row in csv.DictReader(handle)] == ["0", "20", "40"]


def test_a_second_sweep_on_the_same_output_leaves_the_first_ones_runs_alone(tmp_path, capsys):
    """Sweep A claims its runs (their folders' locks) when it starts. Sweep B, started on
    the same output while A is stopped mid-batch (SIGSTOP: a slow A), skips every run,
    moving, resuming or training none, lists them as busy and exits 0; A then finishes
    every run once and its index says so; B rerun finds them finished."""
    spec = write_spec(tmp_path, steps=200, batch_size=4)
    command = [sys.executable, "-m", "pinn", "sweep", str(spec), "--no-progress"]
    runs = tmp_path / "out" / "runs"
    first = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not list(runs.glob("*/config.json")) and time.time() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "sweep A should still be running"
        assert main(["sweep", str(spec), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "8 runs: 0 finished, 0 to train, 8 held by another process" in out
        assert f"skipped, {runs / plan(load_spec(spec))[0].id} is in use: another process " \
               f"(pid {first.pid})" in out
        assert "0 of 8 runs completed, 8 held by another process" in out
        assert {row["status"] for row in _index(tmp_path)} == {"busy"}
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert not (tmp_path / "out" / "broken").exists()
    rows = _index(tmp_path)
    assert len(rows) == 8 and {row["status"] for row in rows} == {"completed"}
    for folder in runs.iterdir():  # each run trained once, from step 0 to 200
        with open(folder / "history.csv") as handle:
            assert [int(row["step"]) for row in csv.DictReader(handle)] == list(range(0, 201, 20))
    assert main(["sweep", str(spec), "--no-progress"]) == 0
    assert "8 runs: 8 finished, 0 to train" in capsys.readouterr().out


def test_the_index_is_replaced_whole(tmp_path, monkeypatch):
    """A write of the index that fails half-way (disk full, a kill) leaves the previous
    index.json and index.csv as they were, and no temporary file."""
    from pinn.training.sweep import _row, write_index

    spec = load_spec(write_spec(tmp_path))
    rows = [_row(run, None) for run in plan(spec)]
    write_index(spec.output, rows)
    before = {name: (spec.output / name).read_bytes() for name in ("index.json", "index.csv")}

    def fail(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", fail)
    with pytest.raises(OSError):
        write_index(spec.output, [dict(row, status="completed") for row in rows])
    assert {name: (spec.output / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in spec.output.iterdir()) == ["index.csv", "index.json"]
