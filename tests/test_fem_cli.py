"""python -m reference generate: bad input exits 2 with the valid choices; a real run writes
a verified file."""

import sys

import pytest

from reference import store
from reference.__main__ import main


@pytest.mark.parametrize("argv, message", [
    (["generate", "nonsense"], "valid cases"),
    (["generate", "thermo"], "valid cases"),
    (["generate", "npp", "--gamma", "2"], "unknown parameter --gamma"),
    (["generate", "npp", "--eps", "-1"], "eps must be > 0"),
    (["generate", "npp", "--eps"], "--NAME VALUE"),
    (["generate"], "exactly one of CASE or --all"),
    (["generate", "npp", "--all"], "exactly one of CASE or --all"),
])
def test_bad_input_exits_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_without_dolfinx_generate_says_what_it_needs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dolfinx", None)      # import dolfinx fails
    monkeypatch.delitem(sys.modules, "reference.fem.generate", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["generate", "npp", "--eps", "0.2", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "needs DOLFINx and mpi4py" in capsys.readouterr().err


def test_an_unwritable_output_fails_before_the_solve(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as stop:
        main(["generate", "npp", "--eps", "0.2", "--out", str(tmp_path / "file" / "out")])
    assert stop.value.code == 2
    assert f"cannot write to {tmp_path / 'file' / 'out'}" in capsys.readouterr().err


def test_generate_writes_a_verified_npp_reference(tmp_path, capsys):
    pytest.importorskip("dolfinx")
    # --coupling is npp's eps, as in `pinn train --case npp --coupling 0.2`
    assert main(["generate", "npp", "--coupling", "0.2", "--out", str(tmp_path), "--quiet"]) == 0
    path = tmp_path / "npp-eps0.2.h5"
    assert str(path) in capsys.readouterr().out
    ds = store.open_reference(path)
    assert ds.attrs["params"]["eps"] == 0.2
    assert max(ds.attrs["verification"]["max_abs_vs_exact"].values()) < 1e-8
    assert ds.attrs["solver"]["newton_iterations"] >= 1
