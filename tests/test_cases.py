"""Case definitions: registry, sweeps, and validation before any computation."""

import math

import pytest

from reference import cases
from reference.cases import CASES, get_case, sweep


def test_registry_vocabulary():
    assert get_case("thermo").fields == ("T", "u")
    assert get_case("rd-symmetric").fields == ("c_A", "c_B", "c_C")
    assert get_case("npp").fields == ("c_plus", "c_minus", "phi")
    assert get_case("eof-straight").fields == ("phi", "c_plus", "c_minus", "u", "v", "p")
    assert set(cases.CASES) == {"thermo", "rd-symmetric", "rd-asymmetric", "npp",
                                "eof-straight", "eof-patch"}


def test_paper_defaults():
    eof = get_case("eof-straight")
    assert (eof.eps, eof.zeta, eof.Ex, eof.mu, eof.Pe) == (0.2, 1.0, 1.0, 1.0, 0.0)
    assert eof.straight and eof.domain == ((0.0, 1.0), (0.0, 1.0))
    assert get_case("npp").eps == 0.1
    assert math.isclose(eof.debye_length, 0.2 / math.sqrt(2))


def test_sweeps_span_the_coupling():
    assert [c.gamma for c in sweep("thermo")] == [1.0, 5.0, 10.0, 50.0]
    assert [c.eps for c in sweep("eof-straight")] == [0.5, 0.2, 0.1, 0.05]
    patch = sweep("eof-patch")
    assert [c.Pe for c in patch] == [0.0, 1.0, 10.0]
    assert all(c.eps == 0.1 and c.sides == "open" for c in patch)
    assert sweep("thermo", kappa=2.0)[0].kappa == 2.0


def test_rates():
    assert get_case("rd-symmetric", k=5).rates == (5.0, 5.0, 5.0, 5.0)
    asym = get_case("rd-asymmetric", k=4)
    assert asym.rates == (4.0, 2.0, 8.0, 1.0) and not asym.symmetric
    assert asym.params()["k3"] == 8.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_case_is_recovered_from_its_recorded_params(name):
    """What files record (params(), through JSON: tuples as lists, derived rates added)
    gives the same case back."""
    import json

    case = sweep(name)[-1]
    recorded = json.loads(json.dumps(case.params()))
    assert cases.case_from_params(name, recorded) == case


def test_patch_wall_potential():
    patch = get_case("eof-patch")
    assert patch.wall_zeta(patch.patch_center, "bottom") == pytest.approx(-1.0)
    assert patch.wall_zeta(0.0, "bottom") == pytest.approx(1.0, abs=1e-10)
    assert patch.wall_zeta(1.0, "top") == 1.0
    # Pe is a Peclet number on the Helmholtz-Smoluchowski speed eps^2 zeta Ex / mu
    assert get_case("eof-patch", Pe=10).advection == pytest.approx(10 / 0.01)
    assert get_case("eof-patch", Pe=0).advection == 0.0


def test_labels_are_unique_per_sweep():
    labels = [c.label for name in cases.CASES for c in sweep(name)]
    assert len(labels) == len(set(labels))
    assert get_case("eof-straight", eps=0.05).label == "eof-straight-eps0.05"


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("eof-straight", {"eps": 0.0}, "eps must be > 0"),
        ("eof-straight", {"eps": -0.1}, "eps must be > 0"),
        ("npp", {"eps": float("nan")}, "eps must be finite"),
        # thinner than the evaluation grid resolves (the Poisson-Boltzmann solve failed)
        ("npp", {"eps": 1e-6}, r"eps must be >= 0.01 \(allowed range: \[0.01, inf\)"),
        ("npp", {"eps": 0.004, "length": 0.5}, "eps must be >= 0.005"),
        ("eof-straight", {"eps": 0.005}, "eps must be >= 0.01"),
        ("eof-straight", {"Ex": float("inf")}, "Ex must be finite"),
        ("eof-straight", {"mu": 0}, "mu must be > 0"),
        ("eof-straight", {"length": 0}, "length must be > 0"),
        ("thermo", {"length": -1}, "length must be > 0"),
        ("thermo", {"gamma": -1}, "gamma must be >= 0"),
        ("thermo", {"gamma": "strong"}, "gamma must be a real number"),
        ("rd-symmetric", {"D2": 0}, "D2 must be > 0"),
        ("rd-symmetric", {"ratios": (1, 2)}, "ratios must hold 4"),
        ("eof-patch", {"patch_center": 5.0}, "patch_center must lie in"),
        ("eof-patch", {"sides": "periodic"}, "sides must be"),
        ("eof-patch", {"Pe": 1, "Ex": 0}, "Pe > 0 needs a flow"),
        ("thermo", {"eps": 0.1}, "unknown parameter"),
    ],
)
def test_invalid_parameters_are_named(name, params, message):
    with pytest.raises(ValueError, match=message):
        get_case(name, **params)


def test_the_command_line_refuses_a_double_layer_thinner_than_the_grid(capsys):
    """`pinn train --case npp --coupling 1e-6` said so with a RuntimeError traceback from
    the Poisson-Boltzmann solve; now with the valid range, before anything is computed."""
    from pinn.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--case", "npp", "--coupling", "1e-6", "--steps", "2"])
    assert exit_info.value.code == 2
    assert "eps must be >= 0.01 (allowed range: [0.01, inf)" in capsys.readouterr().err


def test_unknown_case_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid cases: .*eof-straight.*thermo"):
        get_case("heat")
    with pytest.raises(ValueError, match="unknown case"):
        sweep("heat")


def test_cases_are_frozen_and_replace_validates():
    case = get_case("npp")
    with pytest.raises(AttributeError):
        case.eps = 0.2
    assert case.replace(eps=0.05).eps == 0.05
    with pytest.raises(ValueError, match="eps must be > 0"):
        case.replace(eps=0)


def test_weak_to_strong_follows_each_sweep():
    assert CASES["npp"].weak_to_strong([0.1, 0.5, 0.1, 0.05]) == [0.5, 0.1, 0.05]   # eps
    assert CASES["thermo"].weak_to_strong([50.0, 1.0, 10.0]) == [1.0, 10.0, 50.0]   # gamma
    assert CASES["eof-patch"].weak_to_strong([10.0, 0.0]) == [0.0, 10.0]           # Pe
    assert CASES["eof-straight"].smaller_is_stronger() and not CASES["rd-symmetric"].smaller_is_stronger()
