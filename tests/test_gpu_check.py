"""scripts/gpu-check.sh end to end on the CPU at --small sizes, so that the GPU check does not
rot between the runs on a GPU (docs/gpu.md): every part writes its numbers to the JSON and
the table comes last."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(out), "--device",
                          "cpu", "--small", "--budget", "30"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((out / "gpu-check.json").read_text())
    assert data["device"] == "cpu" and data["small"] and data["allow_tf32"] is False

    tests = data["parts"]["tests"]  # (a): on a CPU every CUDA test is skipped, with the reason
    assert tests["failures"] == tests["errors"] == 0 and tests["tests"] >= 40
    if not torch.cuda.is_available():
        assert tests["skipped"] == tests["tests"] and tests["skip_reasons"] == ["CUDA not available"]

    speed = data["parts"]["eof_speed"]  # (b)
    assert (speed["width"], speed["depth"], speed["terms"]) == (16, 2, 12)
    for method in ("soap+gn", "adam+gn"):
        rows = speed["methods"][method]
        assert all(rows[v]["steps_per_second"] > 0 and rows[v]["timed_steps"] >= 3
                   for v in ("eager", "compiled", "naive"))
        assert rows["eager_over_naive"] > 1.0  # 12 backward passes a step instead of one
        assert rows["compiled_over_eager"] == pytest.approx(
            rows["compiled"]["steps_per_second"] / rows["eager"]["steps_per_second"])
        assert "compile_seconds" in rows["compiled"]

    batched = data["parts"]["batched"]  # (c)
    for case, points in (("thermo", 200), ("npp", 300)):
        entry = batched["cases"][case]
        assert entry["n_points"] == points and list(entry["runs"]) == ["1", "4"]
        assert entry["runs"]["1"]["over_sequential"] == 1.0
        four = entry["runs"]["4"]
        assert four["runs_steps_per_second"] == pytest.approx(4 * four["steps_per_second"])

    paper = data["parts"]["paper_run"]  # (d)
    steps = [row["step"] for row in paper["trajectory"]]
    assert steps == list(range(0, paper["steps"] + 1, 500)) and paper["steps"] >= 500
    assert paper["config"]["lr"] == 3e-4 and paper["reference"].startswith("data/eof-straight")
    assert all(math.isfinite(row["l2_avg"]) for row in paper["trajectory"])
    assert paper["trajectory"][-1]["l2_avg"] < paper["trajectory"][0]["l2_avg"]
    assert paper["projected_50k"]["train_seconds"] == pytest.approx(
        50_000 / paper["steps_per_second"])

    lines = run.stdout.strip().splitlines()  # the table comes last: header, (a) ... (d)
    table = lines[max(i for i, line in enumerate(lines) if line.startswith("gpu-check: ")):]
    assert [line[:3] for line in table if line.startswith("(")] == ["(a)", "(b)", "(c)", "(d)"]
    assert table[1].startswith("(a) pytest -m cuda tests/test_cuda.py: ")
    if not torch.cuda.is_available():
        assert "0 passed, 0 failed, 0 errors" in table[1] and "CUDA not available" in table[1]
    assert table[-1].startswith("    L2_avg: 0: ") and table[-2].startswith("(d) eof-straight")
    log = (out / "gpu-check.log").read_text()
    assert "tests/test_cuda.py" in log and log.rstrip().endswith("\n".join(table))


def test_step_profile_reports_both_methods_on_the_cpu(tmp_path):
    """benchmarks/step_profile.py at the --small sizes: a report per method, with the wall
    time per step and the profiler's tables (the kernel lines need a GPU: docs/gpu.md)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from step_profile import main

    assert main([str(tmp_path), "--device", "cpu", "--small", "--steps", "2"]) == 0
    report = (tmp_path / "step-profile.txt").read_text()
    heads = [line for line in report.splitlines() if line.startswith("== ")]
    assert [head.split(":")[0] for head in heads] == ["== soap+gn", "== adam+gn"]
    assert all(float(head.split(": ")[1].split(" ms")[0]) > 0 for head in heads)
    assert report.count("Self CPU time total") == 2 and "kernels" not in report
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--steps", "0"])
