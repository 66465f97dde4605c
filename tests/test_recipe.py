"""The published recipe is defined once (pinn/training/recipe.py) and everything that states it
agrees: the config's defaults, the networks, the problems, the command line, the paper
profile and the sweep specs of the published budget."""

from pathlib import Path

import pytest

from pinn.__main__ import build_parser
from pinn.training.config import TrainConfig, from_args
from pinn.training.networks import build_model
from pinn.problems import get_problem
from pinn.training.recipe import PUBLISHED, recipe
from pinn.training.sweep import load_spec, plan
from reference.cases import CASES, get_case
from suite.profiles import PAPER

ROOT = Path(__file__).resolve().parents[1]


def test_every_case_has_a_recipe_and_the_published_numbers():
    assert set(PUBLISHED) == set(CASES)
    assert (recipe("thermo").steps, recipe("thermo").lr) == (60_000, 1e-3)
    assert (recipe("npp").steps, recipe("npp").lr, recipe("npp").n_points) == (30_000, 3e-4, 300)
    assert (recipe("eof-straight").width, recipe("eof-straight").depth) == (128, 5)
    with pytest.raises(ValueError, match="no published recipe for case 'heat'"):
        recipe("heat")


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_defaults_are_the_cases_recipe(case):
    r = recipe(case)
    config = TrainConfig(case=case)
    assert (config.steps, config.lr) == (r.steps, r.lr)
    assert TrainConfig(case=case, steps=7, lr=0.5).steps == 7       # given values win
    model = build_model(get_case(case))
    assert {(net.width, net.depth) for net in model.nets} == {(r.width, r.depth)}
    assert get_problem(get_case(case)).interior.shape[0] == r.n_points
    budget = PAPER.budgets[case]
    assert (budget.steps, budget.lr, budget.width, budget.depth) == (r.steps, r.lr, r.width,
                                                                     r.depth)


def test_the_command_line_takes_the_recipe_of_the_case_it_names():
    """`pinn train --case npp` trains NPP's 30k steps at 3e-4 (not thermo's 60k at 1e-3)."""
    parser = build_parser()
    config = from_args(parser.parse_args(["train", "--case", "npp"]))
    assert (config.steps, config.lr) == (30_000, 3e-4)
    config = from_args(parser.parse_args(["train", "--case", "npp", "--lr", "1e-3"]))
    assert (config.steps, config.lr) == (30_000, 1e-3)


@pytest.mark.parametrize("spec", ["paper.toml", "paper-1d.toml"])
def test_the_published_sweeps_run_the_recipe(spec):
    for run in plan(load_spec(ROOT / "sweeps" / spec)):
        config, r = run.config, recipe(run.config.case)
        assert (config.steps, config.lr) == (r.steps, r.lr), run.id
        assert (config.width or r.width, config.depth or r.depth) == (r.width, r.depth), run.id
        assert (config.n_points or r.n_points) == r.n_points, run.id
