"""The results page generator (pinn/analysis/results.py): run folders in, a study JSON out; known
numbers in, the page out."""

import json
from pathlib import Path

import pytest

from pinn.__main__ import main
from pinn.analysis import results
from pinn.analysis.results import balancing_gain, collect, mean_std, render

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "results.md"
BUDGET = {"steps": 100, "lr": 1e-3, "width": 8, "depth": 2, "n_points": 20, "balance_every": 10,
          "warmup_steps": 5, "decay_rate": 0.9, "decay_every": 10, "dtype": "float32"}


def _run(method, gamma, seed, final, status="completed"):
    l2 = {"T": final, "u": final, "avg": final}
    return {"id": f"thermo-gamma{gamma}-{method}-s{seed}", "system": "thermo", "coupling": "gamma",
            "value": gamma, "method": method, "schedule": "constant", "seed": seed,
            "status": status, "steps": 100, "l2_final": l2, "l2_best": l2,
            "l2_lowest_loss": l2,
            "l2_tail": {"geomean": final, "spread": 1.5, "min": final / 2, "max": 2 * final},
            "trajectory": [[0, 1.0], [100, final]], "steps_per_second": 50.0 + seed}


def synthetic() -> dict:
    # final L2_avg per (method, gamma, seed); degradation per seed = gamma 10 / gamma 1
    #   soap+gn: seed 0 0.01 -> 0.01 (1.0x), seed 1 0.02 -> 0.022 (1.1x): median 1.05x
    #   adam+gn: seed 0 1e-3 -> 0.5 (500x), seed 1 2e-3 -> 0.4 (200x): median 350x
    runs = [_run("soap+gn", 1, 0, 0.01), _run("soap+gn", 10, 0, 0.01),
            _run("soap+gn", 1, 1, 0.02), _run("soap+gn", 10, 1, 0.022),
            _run("adam+gn", 1, 0, 1e-3), _run("adam+gn", 10, 0, 0.5),
            _run("adam+gn", 1, 1, 2e-3), _run("adam+gn", 10, 1, 0.4)]
    return {"study": "synthetic", "machine": "test machine", "wall_seconds": 60,
            "budget": {"thermo": dict(BUDGET)}, "runs": runs, "eof_errors": {}}


def test_mean_std_by_hand():
    mean, std = mean_std([0.5, 0.4, None, float("nan")])
    assert mean == pytest.approx(0.45)
    assert std == pytest.approx(0.0707107, rel=1e-6)    # sqrt((0.05^2 + 0.05^2) / 1)
    assert mean_std([3.0]) == (3.0, 0.0)
    assert mean_std([]) == (None, None)


def test_synthetic_page_has_the_hand_computed_numbers():
    page = render([("synthetic.json", synthetic())])
    assert page.startswith("# Reproduction study")
    assert "    python -m pinn results render synthetic.json --out docs/results.md" in page
    # degradation: final-epoch median [min, max] over seeds; tail (= final here): SOAP+GN
    # logs 0, ln 1.1: mean 0.04766, sd 0.06740, interval exp(0.04766 -+ 12.706 * 0.06740 /
    # sqrt 2) = [0.572, 1.92]; the mean is 0.04766 below ln 1.1, which t_{n-1} sd / sqrt n
    # first undercuts at n = 11 (t_10 = 2.228). Adam+GN ln 500, ln 200: geometric mean 316,
    # sd 0.6479, interval [0.937, 1.07e5]; 1.151 above ln 100: n = 4 (t_3 = 3.182)
    assert ("| thermo | soap+gn | gamma = 1, 10 | 1.50e-02, 1.60e-02 | 1.05x [1, 1.1] | "
            "<= 1.1x: reproduced | 1.05x [0.572, 1.92] | undecided (11 seeds would decide) "
            "| 2 |") in page
    assert ("| thermo | adam+gn | gamma = 1, 10 | 1.50e-03, 4.50e-01 | 350x [200, 500] | "
            "> 100x: reproduced | 316x [0.937, 1.07e+05] | undecided (4 seeds would decide) "
            "| 2 |") in page
    # mean +- std over seeds, success (< 0.1) and steps/s (mean of 50 and 51)
    assert ("| adam+gn | constant | 10 | 4.50e-01 +- 7.1e-02 | 4.50e-01 +- 7.1e-02 | "
            "4.50e-01 +- 7.1e-02 | 4.50e-01 +- 7.1e-02 | 0/2 | 50 |") in page
    assert "| soap+gn | constant | 1 | 1.50e-02 +- 7.1e-03 |" in page
    assert "| adam+gn | constant | 1 | 1.50e-03 +- 7.1e-04 |" in page and "| 2/2 |" in page
    # claim 3: both halves hold on the paper's protocol, two seeds decide neither on the tail
    assert ("| `synthetic` | 3: SOAP+GN <= 1.1x, Adam+GN > 100x | **reproduced** (reproduced 1) "
            "| **undecided** (undecided 1) |") in page
    assert "8 runs (8 completed)" in page
    assert "| `synthetic` | 4: EOF" not in page          # no EOF runs: no claim 4 row


def test_thermo_at_the_published_recipe_is_checked_against_the_authors_script():
    data = synthetic()
    assert "Cross-check" not in render([("s.json", data)])   # not the published recipe
    data["budget"]["thermo"].update(steps=60000, lr=1e-3, width=64, depth=4)
    for run in data["runs"]:
        run["value"] = 50 if run["value"] == 10 else run["value"]
    page = render([("s.json", data)])
    # SOAP+GN: ours 0.01, 0.02 at gamma 1 (authors 3.3e-5: outside even the tails, which
    # span [final / 2, 2 final]); per-seed ratios 1.0x, 1.1x, tails the same
    assert ("| soap+gn | 1 | 3.3e-05 | 0.015 [0.01, 0.02] | [0.005, 0.04] | no |  |") in page
    assert ("| soap+gn | 50 | 9.5e-05 | 0.016 [0.01, 0.022] | [0.005, 0.044] | no | "
            "2.88x; 1.05x [1, 1.1]; 1.05x [0.572, 1.92] |") in page
    # Adam+GN at gamma 1: 5.0e-4 lies in our tails [5e-4, 4e-3] but not among our finals
    assert "| adam+gn | 1 | 0.0005 | 0.0015 [0.001, 0.002] | [0.0005, 0.004] | tails |  |" in page


def test_a_failed_run_counts_as_no_success():
    data = synthetic()
    data["runs"][0]["status"] = "diverged"
    page = render([("synthetic.json", data)])
    assert "| soap+gn | constant | 1 | 1.50e-02 +- 7.1e-03 | 1.50e-02 +- 7.1e-03 | " \
           "1.50e-02 +- 7.1e-03 | 1.50e-02 +- 7.1e-03 | 1/2 (diverged) |" in page


def test_command_writes_page_and_figures(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(synthetic()))
    assert main(["results", "render", str(path), "--out", str(tmp_path / "docs" / "results.md")]) == 0
    assert (tmp_path / "docs" / "results.md").read_text() == render([(path.as_posix(), synthetic())])
    assert (tmp_path / "docs" / "img" / "s-degradation-constant.png").stat().st_size > 0


def test_render_refuses_a_json_that_is_not_a_study(tmp_path, capsys):
    path = tmp_path / "index.json"
    path.write_text("[]")
    with pytest.raises(SystemExit):
        main(["results", "render", str(path), "--out", str(tmp_path / "r.md")])
    assert "is not a study JSON" in capsys.readouterr().err


def _run_folder(root, name, gamma, seed, values, status="completed"):
    run = root / "runs" / name
    run.mkdir(parents=True)
    config = {"case": "thermo", "case_params": {"gamma": gamma}, "optimizer": "soap",
              "balancing": "gn", "schedule": "constant", "seed": seed, **BUDGET}
    (run / "config.json").write_text(json.dumps(config))
    final = {"l2": {"T": values[-1], "u": values[-1], "avg": values[-1]}}
    (run / "metrics.json").write_text(json.dumps(
        {"status": status, "step": 100 * (len(values) - 1), "final": final, "best": final,
         "lowest_loss": final, "train_seconds": 2.0}))
    (run / "history.csv").write_text("step,loss,l2_avg\n" + "".join(
        f"{100 * k},1.0,{v}\n" for k, v in enumerate(values)))


def test_collect_takes_the_tail_and_trajectory_from_the_history(tmp_path):
    _run_folder(tmp_path, "a", 1, 0, [1.0] * 37 + [1e-4, 1e-2, 1e-4, 1e-2])
    _run_folder(tmp_path, "b", 10, 0, [1.0, 0.5, 0.25], status="diverged")
    (tmp_path / "runs" / "c").mkdir()                       # unfinished: no metrics.json
    data = collect(tmp_path, "a test sweep", machine="test machine")
    assert data["study"] == "a test sweep" and data["eof_errors"] == data["eof_thin_errors"] == {}
    a, b = data["runs"]
    # the last 5 of 41 evaluations (ceil 4.1): 1.0, 1e-4, 1e-2, 1e-4, 1e-2
    assert a["l2_tail"]["evaluations"] == 5 and a["l2_tail"]["from_step"] == 3600
    assert a["l2_tail"]["geomean"] == pytest.approx((1e-8 * 1e-4) ** (1 / 5), rel=1e-3)
    assert a["trajectory"][-2:] == [[3900, 1e-4], [4000, 1e-2]]
    assert a["steps_per_second"] == 2000.0 and data["budget"]["thermo"]["steps"] == 100
    assert b["l2_tail"] is None and b["status"] == "diverged"   # no tail for a failed run
    assert a["band"] is None                                    # not an EOF run
    with pytest.raises(ValueError, match="no sweep output"):
        collect(tmp_path / "missing", "x")


@pytest.mark.parametrize("name", ["study-cpu", "study-cpu-compiled", "paper-1d", "eof-claim",
                                  "paper-1d-ablation", "paper-1d-warmup", "eof-coupling",
                                  "eof-coupling-split", "eof-coupling-thin"])
def test_committed_jsons_are_studies(name):
    path = ROOT / "data" / "results" / f"{name}.json"
    data = json.loads(path.read_text())
    assert path.stat().st_size < 2_000_000 and data["runs"] and data["budget"]


def test_committed_page_regenerates_identically():
    names = PAGE.read_text().split("python -m pinn results render ", 1)[1].split(" --out")[0]
    studies = [(name, json.loads((ROOT / name).read_text())) for name in names.split()]
    assert len(studies) >= 3
    assert PAGE.read_text() == render(studies)


def test_balancing_gain_pairs_each_run_with_its_gn_twin():
    # soap+none against soap+gn of synthetic(), seed by seed (gain = none / gn):
    #   gamma 1: s0 0.05 / 0.01 = 5, s1 0.02 / 0.02 = 1 (not helped): median 3
    #   gamma 10: s0 0.5 / 0.01 = 50, s1 0.044 / 0.022 = 2: median 26
    # a seed without a twin and an Adam+none study of another budget pair with nothing
    ablation = {**synthetic(), "runs": [
        _run("soap+none", 1, 0, 0.05), _run("soap+none", 10, 0, 0.5),
        _run("soap+none", 1, 1, 0.02), _run("soap+none", 10, 1, 0.044),
        _run("soap+none", 1, 2, 0.9)]}
    longer = {**synthetic(), "budget": {"thermo": {**BUDGET, "steps": 200}},
              "runs": [_run("adam+none", 1, 0, 0.5), _run("adam+none", 10, 0, 0.5)]}
    studies = [("gn.json", synthetic()), ("none.json", ablation), ("longer.json", longer)]
    [row] = balancing_gain(studies)
    assert row["studies"] == ["gn", "none"] and row["optimizer"] == "soap"
    assert row["couplings"] == [1, 10] and row["none"] == pytest.approx([0.035, 0.272])
    assert row["gn"] == pytest.approx([0.015, 0.016])
    assert row["gain"] == pytest.approx([3.0, 26.0]) and (row["helped"], row["pairs"]) == (3, 4)
    page = render(studies)
    assert ("| `gn`, `none` | thermo | SOAP | constant | gamma = 1, 10 | 3.50e-02, 2.72e-01 | "
            "1.50e-02, 1.60e-02 | 3x, 26x | 3 of 4 |") in page
    # studies without a claimed method get no claim-3 verdict row nor comparison column
    assert "| `gn` | 3: SOAP+GN" in page and "| `none` | 3:" not in page
    assert "How the verdicts change" not in page
    assert "What GN buys" not in render([("gn.json", synthetic())])


def _eof(method, eps, seed, avg, band=None):
    """An eof-straight run whose final L2 is ``avg`` with phi 70 % of it (c+, c-, u 10 %
    each), its tail the final value, ``band`` (l2_band, l2_bulk) of phi on 36 % of the
    channel."""
    l2 = {"phi": 2.8 * avg, "c_plus": 0.4 * avg, "c_minus": 0.4 * avg, "u": 0.4 * avg,
          "avg": avg}
    return {**_run(method, eps, seed, avg), "id": f"eof-straight-eps{eps}-{method}-s{seed}",
            "system": "eof-straight", "coupling": "eps", "l2_final": l2,
            "band": band and {"fraction": 0.36, **{key: {f: value for f in ("phi", "c_plus",
                                                                                "c_minus", "u")}
                                                   for key, value in zip(("l2_band", "l2_bulk"),
                                                                         band)}}}


def coupling_studies() -> list[tuple[str, dict]]:
    # SOAP+GN, final L2_avg per seed: eps 0.5 1e-4, 2e-4; 0.2 2e-4, 4e-4 (2x); 0.05 1e-2,
    # 2e-2 (50x); the whole range 100x in both seeds, so every interval has zero width.
    # Adam+GN: 1e-3, 0.1 and 0.5 / 1.2 at 0.05 (median 0.85: one run above 0.9).
    # phi's band / bulk at 0.05: 3 / 4 (36 % in the band), 4 / 3 (64 %): median 50 %
    budget = {"eof-straight": {**BUDGET, "steps": 6000, "split": "per-field"}}
    base = [_eof("soap+gn", 0.5, 0, 1e-4), _eof("soap+gn", 0.5, 1, 2e-4),
            _eof("soap+gn", 0.2, 0, 2e-4), _eof("soap+gn", 0.2, 1, 4e-4),
            _eof("soap+gn", 0.05, 0, 1e-2, (0.03, 0.04)),
            _eof("soap+gn", 0.05, 1, 2e-2, (0.04, 0.03)),
            _eof("adam+gn", 0.5, 0, 1e-3), _eof("adam+gn", 0.5, 1, 1e-3),
            _eof("adam+gn", 0.2, 0, 0.1), _eof("adam+gn", 0.2, 1, 0.1),
            _eof("adam+gn", 0.05, 0, 0.5), _eof("adam+gn", 0.05, 1, 1.2)]
    # the authors' split: SOAP+GN at 0.05 0.2, 0.3, outside ours (1e-2, 2e-2)
    split = [_eof("soap+gn", 0.2, 0, 2e-4), _eof("soap+gn", 0.2, 1, 4e-4),
             _eof("soap+gn", 0.05, 0, 0.2), _eof("soap+gn", 0.05, 1, 0.3)]
    # twice the steps: 0.05 at a fifth of its error
    thin = [_eof("soap+gn", 0.05, 0, 2e-3), _eof("soap+gn", 0.05, 1, 4e-3)]

    def study(runs, **change):
        return {**synthetic(), "runs": runs,
                "budget": {"eof-straight": {**budget["eof-straight"], **change}}}

    return [("eof-claim.json", study(base[2:4])),          # the same budget: not beside it
            ("eof-coupling.json", study(base)),
            ("eof-coupling-split.json", study(split, split="paper")),
            ("eof-coupling-thin.json", study(thin, steps=12000))]


def test_coupling_section_has_the_hand_computed_numbers():
    page = render(coupling_studies())
    section = page.split("## The 2D flow across its coupling range: eof-straight, "
                         "eps 0.5 -> 0.05")[1]
    assert ("- SOAP+GN at eps = 0.05, median final L2_avg over 2 seeds <= 0.001: **missed**, "
            "1.50e-02; after 12000 steps (`eof-coupling-thin`) 3.00e-03, **missed**. Measured "
            "reason: phi carries 70% of L2_avg (median L2 per field: phi 4.20e-02, c_plus "
            "6.00e-03, c_minus 6.00e-03, u 6.00e-03); of phi's squared error 50% lies in the band "
            "within 5 Debye lengths of a wall, 36% of the channel, and 50% in the bulk beyond it: "
            "per unit of channel 1.8x as much in the band as in the bulk") in section
    assert ("- SOAP+GN's degradation eps 0.5 -> 0.05 <= 1.1x by the tail interval: **not "
            "reproduced**, tail 100x [100, 100] (paper's protocol: 100x, not reproduced). Step by "
            "step, tail ratio [95 % interval]: 0.5 -> 0.2: 2x [2, 2]; 0.2 -> 0.05: 50x [50, 50]; "
            "the largest step is 0.2 -> 0.05.") in section
    assert ("the median ends above 0.9 at no coupling; single runs above it: `eof-coupling` eps "
            "0.05 seed 1 (1.2).") in section
    assert ("| 0.2 -> 0.05 | soap+gn | eps = 0.2, 0.05 | 3.00e-04, 1.50e-02 | 50x [50, 50] | "
            "<= 1.1x: not reproduced | 50x [50, 50] | not reproduced | 2 |") in section
    assert ("| whole range | adam+gn | eps = 0.5, 0.05 | 1.00e-03, 8.50e-01 | 850x [500, 1.2e+03] "
            "| > 100x: reproduced |") in section
    assert ("| `eof-coupling` | soap+gn | 0.05 | 2 | 4.20e-02 | 6.00e-03 | 6.00e-03 | 6.00e-03 | "
            "1.50e-02 |") in section
    assert ("| `eof-coupling` | soap+gn | 0.05 | 2 | 36% | 3.50e-02 / 3.50e-02 (50%) |") in section
    # the split: the same verdicts, but SOAP+GN's seeds at 0.05 apart from ours; eof-claim
    # (the same budget) is beside nothing
    assert ("**Yes**: SOAP+GN 0.05: 1.50e-02 -> 2.50e-01 (the seeds' ranges do not overlap). "
            "Median final L2_avg, ours -> the authors' split: SOAP+GN 0.2: 3.00e-04 -> 3.00e-04; "
            "SOAP+GN 0.05: 1.50e-02 -> 2.50e-01.") in section
    assert "`eof-claim`" not in section
    assert ("| soap+gn | 0.05 | 2 | 1.50e-02 [1.00e-02, 2.00e-02] | 3.00e-03 [2.00e-03, 4.00e-03] "
            "| 0.2 [0.2, 0.2] | 3.00e-03 [2.00e-03, 4.00e-03] |") in section
    assert "SOAP+GN at eps = 0.05: 0.2x, ending at 3.00e-03, 3x the goal of 0.001." in section
    assert "across its coupling range" not in render([("synthetic.json", synthetic())])


def test_the_thin_layer_map_is_of_the_best_soap_seed_at_the_thinnest_band(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(results, "_error_map",
                        lambda root, run, img, name: drawn.append(name) or {"run": run["id"]})
    runs = [r for _, data in coupling_studies()[1:2] for r in data["runs"]]
    thin = results._thin_errors(tmp_path, runs, tmp_path, "eof-coupling")
    # the SOAP+GN runs with a band: 0.05 seeds 0 (1e-2) and 1 (2e-2)
    assert thin == {"value": 0.05, "seed": 0, "method": "soap+gn",
                    "run": "eof-straight-eps0.05-soap+gn-s0"}
    assert drawn == ["eof-coupling-eof-errors-eps0.05-soap-gn.png"]
    assert results._thin_errors(tmp_path, [{**r, "band": None} for r in runs], tmp_path, "x") == {}
