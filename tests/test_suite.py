"""The benchmark harness end to end: a tiny profile run through pytest-benchmark, the JSON
it writes (schema of every run's extra_info and of the summary), the report rendered from
it, and the harness's errors for bad options."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from pinn.analysis.report import write_report

ROOT = Path(__file__).resolve().parents[1]

RUN_KEYS = {
    "case": str, "coupling": str, "coupling_value": float, "optimizer": str,
    "balancing": str, "method": str, "seed": int, "profile": str, "status": str,
    "steps": int, "steps_per_second": float, "device": str, "n_parameters": int,
    "l2_final": dict, "l2_best": dict, "l2_lowest_loss": dict, "l2_tail": dict, "L2_avg": float,
    "reference": str,
}


def _pytest_suite(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "pytest", "suite/", "-q", "-p", "no:cacheprovider",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out.json"
    run = _pytest_suite("--profile", "tiny", "--benchmark-json", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "coupling robustness (tiny profile)" in run.stdout
    assert "study: 7 of 8 batches" in run.stdout and "min to go" in run.stdout  # progress
    return out


def test_json_schema(tiny_json):
    data = json.loads(tiny_json.read_text())
    benches = data["benchmarks"]
    # tiny: 4 systems x 2 methods, one batch each, of 2 couplings x 1 seed
    assert len(benches) == 8
    runs = []
    for bench in benches:
        assert bench["stats"]["rounds"] == 1 and bench["group"] == bench["extra_info"]["case"]
        assert len(bench["extra_info"]["runs"]) == 2
        for info in bench["extra_info"]["runs"]:
            assert (info["case"], info["method"]) == (bench["extra_info"]["case"],
                                                      bench["extra_info"]["method"])
            runs.append(info)
    assert len({(r["case"], r["method"], r["coupling_value"]) for r in runs}) == 16
    for info in runs:
        for key, kind in RUN_KEYS.items():
            assert isinstance(info[key], kind), (key, info[key])
        assert info["status"] == "completed" and info["steps"] == 20
        fields = {"thermo": {"T", "u"}, "npp": {"c_plus", "c_minus", "phi"}}.get(
            info["case"], {"phi", "c_plus", "c_minus", "u"})
        for key in ("l2_final", "l2_best", "l2_lowest_loss"):
            assert set(info[key]) == fields | {"avg"}
            assert all(math.isfinite(value) and value > 0 for value in info[key].values())
        assert info["l2_best"]["avg"] <= info["l2_final"]["avg"]
        if info["case"].startswith("eof"):
            # 2D flows are scored against the stored DOLFINx reference, identified by hash
            assert info["reference"].endswith(".h5") and len(info["reference_sha256"]) == 64
            manifest = json.loads((ROOT / "data" / "manifest.json").read_text())
            assert manifest[info["reference"]]["sha256"] == info["reference_sha256"]
        else:
            assert info["reference"] == "exact" and info["reference_sha256"] is None
    meta = data["pinn_bench"]
    assert meta["profile"] == "tiny"
    summary = meta["summary"]
    assert {(case, method) for case in summary for method in summary[case]} == {
        (r["case"], r["method"]) for r in runs}
    row = summary["npp"]["soap+gn"]
    assert row["couplings"] == [0.5, 0.2]  # weak -> strong: eps decreasing
    by_eps = {r["coupling_value"]: r["L2_avg"] for r in runs
              if r["case"] == "npp" and r["method"] == "soap+gn"}
    assert row["degradation"] == pytest.approx(by_eps[0.2] / by_eps[0.5])  # one seed
    # (the verdict rules are tested on hand-made cases in test_claims.py)
    assert row["paper_verdict"] in ("reproduced", "not reproduced")
    assert row["tail_verdict"] == "undecided"     # one seed: its interval is unbounded
    assert row["tail_interval"]["n"] == 1


def test_report_renders(tiny_json, tmp_path):
    path = write_report(tiny_json, tmp_path)
    text = path.read_text()
    assert "| thermo | soap+gn | gamma |" in text and "degradation.png" in text
    for figure in ("degradation.png", "fields.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_a_case_a_profile_forgets_is_an_error():
    from suite.profiles import SMOKE, Profile

    couplings = {k: v for k, v in SMOKE.couplings.items() if k != "npp"}
    with pytest.raises(ValueError, match=r"case\(s\) \['npp'\] are neither benchmarked nor "
                                         "deferred"):
        Profile(name="x", description="", couplings=couplings, budgets=SMOKE.budgets,
                deferred=SMOKE.deferred)


def test_a_budget_s_seeds_make_its_batches_and_given_seeds_replace_them():
    from suite.profiles import SMOKE
    from suite.runner import with_methods

    runs = {case: runs for case, optimizer, _, runs in SMOKE.batches() if optimizer == "soap"}
    assert runs["thermo"] == [(c, s) for c in (1.0, 50.0) for s in range(6)]
    assert runs["eof-straight"] == [(0.5, 42), (0.2, 42)]
    chosen = with_methods(SMOKE, seeds=[7, 8])
    assert {tuple(r) for _, _, _, r in chosen.batches()} == {
        tuple((c, s) for c in couplings for s in (7, 8)) for couplings in SMOKE.couplings.values()}


@pytest.mark.parametrize("args, message", [
    (["--profile", "huge"], "unknown profile 'huge'; valid profiles: ['long', 'paper', 'smoke', 'tiny']"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--case", "heat"], "unknown case 'heat' for profile 'smoke'; valid cases:"),
])
def test_bad_options_fail_fast(args, message):
    run = _pytest_suite(*args, "--collect-only", timeout=120)
    assert run.returncode != 0
    assert message in run.stdout + run.stderr


def test_missing_reference_names_file_and_command(tmp_path):
    run = _pytest_suite("--profile", "tiny", "--case", "eof-patch", "--reference-root",
                        str(tmp_path), "-x", "--benchmark-disable")
    assert run.returncode != 0
    assert "eof-patch-Pe0.h5 does not exist" in run.stdout
    assert "python -m reference generate eof-patch --Pe 0" in run.stdout
