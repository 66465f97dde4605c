"""Where results go: an output a command cannot write is refused before any work (the suite's
JSON, a sweep's folder), and a full disk ends a command with one line, not a traceback,
leaving nothing half-written (the store's own cases: tests/test_store.py)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinn.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def _suite(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "suite/", "-q", "-p", "no:cacheprovider",
                           "--profile", "tiny", "--case", "thermo", "--collect-only", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_suite_checks_its_json_before_training(tmp_path):
    """pytest-benchmark writes --benchmark-json after the last benchmark: into a folder it
    cannot write, the whole study was trained and then lost in a crash. It is a usage error
    at start-up now (pytest's status 4); a folder yet to exist is made."""
    (tmp_path / "file").write_text("")
    for target, message in ((tmp_path / "file" / "out.json", "cannot write to"),
                            (tmp_path, "is a folder; give a file name")):
        run = _suite("--benchmark-json", str(target))
        assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
        assert "--benchmark-json: " in run.stderr and message in run.stderr
    run = _suite("--benchmark-json", str(tmp_path / "new" / "out.json"))
    assert run.returncode == 0 and (tmp_path / "new").is_dir()


def test_a_sweep_checks_its_output_before_any_batch(tmp_path, capsys):
    """`pinn sweep --output` where nothing can be written printed a traceback per batch;
    now one usage error, as `pinn train --run-dir` gives, before anything trains."""
    spec = tmp_path / "spec.toml"
    spec.write_text('output = "out"\nmethods = ["adam+gn"]\nseeds = [0, 1]\n'
                    '[budget]\nsteps = 2\n[systems.thermo]\ncouplings = [1, 10]\n')
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(spec), "--output", str(tmp_path / "file" / "out"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot write to {tmp_path / 'file' / 'out'}" in err and "Traceback" not in err


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("target, name", [
    ("torch.save", "checkpoint.pt"),
    ("csv.DictWriter.writerows", "history.csv"),
    ("matplotlib.figure.Figure.savefig", "losses.png"),
])
def test_a_full_disk_ends_training_with_one_line(tmp_path, capsys, monkeypatch, target, name):
    """ENOSPC while a checkpoint, the history or a plot is written: one message naming the
    file and what to do (status 1), and no file half-written or temporary one left."""
    monkeypatch.setattr(target, _full)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--case", "thermo", "--optimizer", "adam", "--steps", "4",
              "--eval-every", "2", "--width", "8", "--depth", "2", "--n-points", "16",
              "--device", "cpu", "--run-dir", str(run), "--no-progress"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"error: No space left on device writing {run / name}; " in err
    assert "nothing half-written" in err and "Traceback" not in err
    assert not (run / name).exists() and not list(run.glob(".*.tmp"))
