"""pinn compare: result files side by side, with the refusals for files that do not measure
the same thing."""

import json

import pytest

from pinn.__main__ import main
from pinn.analysis.compare import compare


def suite_json(path, l2, profile="smoke", sha="a" * 64, speed=50.0):
    """A suite JSON of thermo SOAP+GN at gamma 1 and 50, one seed: final L2 ``l2``."""
    runs = [{"case": "thermo", "method": "soap+gn", "seed": 42, "coupling_value": gamma,
             "L2_avg": value, "l2_tail": {"geomean": value}, "steps_per_second": speed,
             "reference_sha256": sha if gamma == 50 else None}
            for gamma, value in zip((1.0, 50.0), l2)]
    path.write_text(json.dumps({
        "machine_info": {"node": "box", "cpu": {"brand_raw": "CPU"}},
        "pinn_bench": {"profile": profile},
        "benchmarks": [{"extra_info": {"runs": runs}}]}))
    return path


def test_two_files_side_by_side(tmp_path):
    a = suite_json(tmp_path / "a.json", (1e-4, 2e-4))
    b = suite_json(tmp_path / "b.json", (1e-4, 5e-3), speed=80.0)
    text = compare([a, b])
    assert "- `a.json`: profile smoke, box (CPU), 2 runs" in text
    assert "## thermo (constant)" in text
    assert "| soap+gn | 50 | 2.00e-04 | 50.0 | 5.00e-03 | 80.0 |" in text
    # degradation 2x vs 50x; one seed: the tail interval is unbounded, undecided
    assert ("| soap+gn | 2x not reproduced | 2x [0, inf] undecided | "
            "50x not reproduced | 50x [0, inf] undecided |") in text


def test_a_study_json_compares_with_a_suite_json(tmp_path):
    study = {"study": "s", "machine": "m", "budget": {"thermo": {"steps": 2000}}, "runs": [
        {"system": "thermo", "method": "soap+gn", "schedule": "constant", "seed": 0,
         "value": gamma, "l2_final": {"avg": value}, "l2_tail": None, "steps_per_second": 9.0}
        for gamma, value in ((1.0, 1e-3), (50.0, 3e-3))]}
    (tmp_path / "study.json").write_text(json.dumps(study))
    a = suite_json(tmp_path / "a.json", (1e-4, 2e-4))
    text = compare([a, tmp_path / "study.json"], allow_mismatch=True)
    assert "| soap+gn | 1 | 1.00e-04 | 50.0 | 1.00e-03 | 9.0 |" in text
    with pytest.raises(ValueError, match="different profiles"):
        compare([a, tmp_path / "study.json"])
    # two studies of one budget compare; of another budget only when told
    (tmp_path / "again.json").write_text(json.dumps(study))
    assert "## thermo (constant)" in compare([tmp_path / "study.json", tmp_path / "again.json"])
    (tmp_path / "longer.json").write_text(json.dumps({**study, "budget": {"thermo": {"steps": 9}}}))
    with pytest.raises(ValueError, match=r"train \['thermo'\] on different budgets"):
        compare([tmp_path / "study.json", tmp_path / "longer.json"])


def test_other_references_or_profiles_are_refused_unless_allowed(tmp_path, capsys):
    a = suite_json(tmp_path / "a.json", (1e-4, 2e-4))
    b = suite_json(tmp_path / "b.json", (1e-4, 2e-4), sha="b" * 64)
    with pytest.raises(ValueError, match="scores thermo at 50 against another reference"):
        compare([a, b])
    c = suite_json(tmp_path / "c.json", (1e-4, 2e-4), profile="long")
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(a), str(c)])
    assert exit_info.value.code == 2 and "different profiles" in capsys.readouterr().err
    out = tmp_path / "t.md"
    assert main(["compare", str(a), str(b), "--allow-mismatch", "--out", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="neither a suite JSON nor a study JSON"):
        compare([tmp_path / "bad.json"])
