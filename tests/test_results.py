"""The results page generator (pinn/results.py): known numbers in, the page out."""

import json
from pathlib import Path

import pytest

from pinn.__main__ import main
from pinn.results import mean_std, render

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "data" / "results" / "study-cpu.json"
PAGE = ROOT / "docs" / "results.md"
BUDGET = {"steps": 100, "lr": 1e-3, "width": 8, "depth": 2, "n_points": 20, "balance_every": 10,
          "warmup_steps": 5, "decay_rate": 0.9, "decay_every": 10, "dtype": "float32"}


def _run(method, gamma, seed, final, status="completed"):
    l2 = {"T": final, "u": final, "avg": final}
    return {"id": f"thermo-gamma{gamma}-{method}-s{seed}", "system": "thermo", "coupling": "gamma",
            "value": gamma, "method": method, "schedule": "constant", "seed": seed,
            "status": status, "steps": 100, "l2_final": l2, "l2_best": l2,
            "l2_lowest_loss": l2, "steps_per_second": 50.0 + seed}


def synthetic() -> dict:
    # final L2_avg per (method, gamma, seed); degradation per seed = gamma 10 / gamma 1
    #   soap+gn: seed 0 0.01 -> 0.01 (1.0x), seed 1 0.02 -> 0.022 (1.1x): median 1.05x
    #   adam+gn: seed 0 1e-3 -> 0.5 (500x), seed 1 2e-3 -> 0.4 (200x): median 350x
    runs = [_run("soap+gn", 1, 0, 0.01), _run("soap+gn", 10, 0, 0.01),
            _run("soap+gn", 1, 1, 0.02), _run("soap+gn", 10, 1, 0.022),
            _run("adam+gn", 1, 0, 1e-3), _run("adam+gn", 10, 0, 0.5),
            _run("adam+gn", 1, 1, 2e-3), _run("adam+gn", 10, 1, 0.4)]
    return {"study": "synthetic", "machine": "test machine", "wall_seconds": 60,
            "budget": {"thermo": BUDGET}, "runs": runs, "eof_errors": {}}


def test_mean_std_by_hand():
    mean, std = mean_std([0.5, 0.4, None, float("nan")])
    assert mean == pytest.approx(0.45)
    assert std == pytest.approx(0.0707107, rel=1e-6)    # sqrt((0.05^2 + 0.05^2) / 1)
    assert mean_std([3.0]) == (3.0, 0.0)
    assert mean_std([]) == (None, None)


def test_synthetic_page_has_the_hand_computed_numbers():
    page = render(synthetic(), json_name="synthetic.json")
    assert page.startswith("# Reproduction study")
    assert "    python -m pinn results synthetic.json --out docs/results.md" in page
    # degradation, median [min, max] over seeds
    assert "| thermo | soap+gn | gamma = 1, 10 | 1.50e-02, 1.60e-02 | 1.05x [1.00, 1.10] | 2 |" in page
    assert "| thermo | adam+gn | gamma = 1, 10 | 1.50e-03, 4.50e-01 | 350.00x [200.00, 500.00] | 2 |" in page
    # mean +- std over seeds, success (< 0.1) and steps/s (mean of 50 and 51)
    assert ("| adam+gn | constant | 10 | 4.50e-01 +- 7.1e-02 | 4.50e-01 +- 7.1e-02 | "
            "4.50e-01 +- 7.1e-02 | 0/2 | 50 |") in page
    assert "| soap+gn | constant | 1 | 1.50e-02 +- 7.1e-03 |" in page
    assert "| adam+gn | constant | 1 | 1.50e-03 +- 7.1e-04 |" in page and "| 2/2 |" in page
    # claim 3: both halves hold for the one (system, schedule) pair
    assert "degradation: reproduced**" in page
    assert ("`constant`: SOAP+GN <= 1.1x for 1 of 1 systems, Adam+GN > 100x for 1 of 1, "
            "SOAP+GN degrades less than Adam+GN for 1 of 1 and ends more accurate at the "
            "strongest coupling for 1 of 1") in page
    assert "Runs: 8 completed." in page
    assert "**EOF eps = 0.2, SOAP+GN L2 = 1.3e-3, Adam+GN > 0.9: not tested.**" in page


def test_a_failed_run_counts_as_no_success():
    data = synthetic()
    data["runs"][0]["status"] = "diverged"
    page = render(data, json_name="synthetic.json")
    assert "| soap+gn | constant | 1 | 1.50e-02 +- 7.1e-03 | 1.50e-02 +- 7.1e-03 | " \
           "1.50e-02 +- 7.1e-03 | 1/2 (diverged) |" in page


def test_command_writes_page_and_figures(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(synthetic()))
    assert main(["results", str(path), "--out", str(tmp_path / "docs" / "results.md")]) == 0
    assert (tmp_path / "docs" / "results.md").read_text() == render(synthetic(), path.as_posix())
    assert (tmp_path / "docs" / "img" / "results-degradation-constant.png").stat().st_size > 0


@pytest.mark.skipif(not STUDY.is_file(), reason="no committed study JSON")
def test_committed_page_regenerates_identically():
    data = json.loads(STUDY.read_text())
    assert STUDY.stat().st_size < 1_000_000
    assert PAGE.read_text() == render(data, json_name="data/results/study-cpu.json")
