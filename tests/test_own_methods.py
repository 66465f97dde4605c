"""A method from outside the package: an optimizer class and a balancer class defined in this
file (importable as ``test_own_methods:...``: pytest puts tests/ on sys.path), run through
the engine, the CLI, a sweep and the suite; L-BFGS by its torch import path; bad paths and
arguments refused before training."""

import json
import math
import sys

import pytest
import torch

from pinn.__main__ import main
from pinn.optim.balancing import Balancer
from pinn.training.sweep import load_spec, run_sweep
from pinn.training.trainer import Trainer, TrainConfig, train, train_batch

HERE = "test_own_methods"


class NormalizedSGD(torch.optim.Optimizer):
    """p <- p - lr g / ||g||_F per tensor, with heavy-ball momentum on the normalised step.
    The norm is over a whole tensor, so handed a stack of the runs' networks it would couple
    them: the engine must give it each run's own tensors."""

    def __init__(self, params, lr=1e-2, momentum=0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad / p.grad.norm().clamp(min=1e-30)
                state = self.state[p]
                buffer = state.setdefault("buffer", torch.zeros_like(p))
                buffer.mul_(group["momentum"]).add_(direction)
                p.add_(buffer, alpha=-group["lr"])


class BoundaryWeight(Balancer):
    """Residual terms weigh 1, boundary terms ``weight``, set on the first step."""

    name = "boundary-weight"

    def __init__(self, terms, every=1000, weight=1.0, **kwargs):
        super().__init__(terms, every, **kwargs)
        self.weight = float(weight)

    def reweight(self, grads):
        boundary = torch.tensor([name not in self.residuals for name in self.terms],
                                device=self.weights.device)
        self.weights = torch.where(boundary, torch.full_like(self.weights, self.weight),
                                   torch.ones_like(self.weights))


def small(**changes) -> TrainConfig:
    options = dict(case="thermo", case_params={"gamma": 10.0}, width=16, depth=2, n_points=32,
                   steps=20, eval_every=5, balance_every=3, dtype="float64", device="cpu",
                   progress=False, seed=0, optimizer=f"{HERE}:NormalizedSGD",
                   lr=1e-2, optimizer_args={"momentum": 0.5})
    options.update(changes)
    return TrainConfig(**options)


def test_a_batch_of_runs_gives_each_run_what_it_gets_alone():
    """Each run's optimizer sees its own tensors: a batch of 3 seeds and couplings equals
    the 3 runs trained alone (float64; equal up to the rounding of batched matmuls)."""
    configs = [small(seed=seed, case_params={"gamma": gamma})
               for seed, gamma in ((0, 1.0), (1, 10.0), (2, 50.0))]
    batched = train_batch(configs)
    for config, together in zip(configs, batched):
        alone = train(config)
        assert together.status == alone.status == "completed"
        assert math.isclose(together.final["l2"]["avg"], alone.final["l2"]["avg"], rel_tol=1e-9)
        assert alone.final["loss"] < 0.9 * alone.history[0]["loss"]  # it trains


@pytest.mark.parametrize("optimizer, args, lr", [
    (f"{HERE}:NormalizedSGD", {"momentum": 0.5}, 1e-2),
    ("torch.optim:LBFGS", {"max_iter": 4, "history_size": 5}, 0.5),
])
def test_resume_continues_exactly(tmp_path, optimizer, args, lr):
    options = dict(optimizer=optimizer, optimizer_args=args, lr=lr)
    whole = Trainer(small(**options))
    [whole_result] = whole.run()
    train(small(**options, steps=10, run_dir=str(tmp_path)))
    resumed = Trainer(small(**options, run_dir=str(tmp_path)), resume=True)
    [resumed_result] = resumed.run()
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert whole_result.final == resumed_result.final


def test_lbfgs_reaches_the_accuracy_adam_does_not_at_the_same_evaluations():
    """L-BFGS (strong Wolfe line search, by torch's import path) on thermo gamma 10, 3 x 16
    networks, float64: 60 steps of up to 10 loss evaluations each end at L2_avg < 2e-3
    (measured 3.8e-4 on the 2-core CPU machine, 2026-11-28). Adam with as many steps as
    L-BFGS may evaluate the loss (600) stays above 1e-2 (measured 8.8e-2)."""
    options = dict(width=16, depth=3, n_points=64, balance_every=100, eval_every=30,
                   case_params={"gamma": 10.0})
    lbfgs = train(small(**options, steps=60, optimizer="torch.optim:LBFGS", lr=1.0,
                        optimizer_args={"max_iter": 10, "line_search_fn": "strong_wolfe"}))
    adam = train(small(**options, steps=600, optimizer="adam", optimizer_args={}, lr=1e-3))
    assert lbfgs.status == "completed" and lbfgs.final["l2"]["avg"] < 2e-3
    assert adam.final["l2"]["avg"] > 1e-2
    assert lbfgs.optimizer["class"] == "torch.optim.lbfgs.LBFGS"


def test_own_balancer_weights_the_boundary_terms():
    result = train(small(balancing=f"{HERE}:BoundaryWeight", balancing_args={"weight": 7.0}))
    last = result.history[-1]
    weights = {key[len("weight_"):]: value for key, value in last.items()
               if key.startswith("weight_")}
    assert weights and all(value == (7.0 if name.startswith("bc_") else 1.0)
                           for name, value in weights.items())
    assert any(name.startswith("bc_") for name in weights)


def test_the_cli_trains_and_records_an_own_optimizer(tmp_path):
    run_dir = tmp_path / "run"
    main(["train", "--case", "thermo", "--optimizer", f"{HERE}:NormalizedSGD",
          "--optimizer-args", '{"momentum": 0.9}', "--optimizer-args", "momentum=0.5",
          "--lr", "1e-2", "--steps", "20", "--eval-every", "10", "--width", "8", "--depth", "2",
          "--n-points", "16", "--device", "cpu", "--run-dir", str(run_dir), "--no-progress"])
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert config["optimizer"] == f"{HERE}:NormalizedSGD"
    assert config["optimizer_args"] == {"momentum": 0.5}  # the last one given
    assert metrics["status"] == "completed"
    assert metrics["optimizer"] == {"name": f"{HERE}:NormalizedSGD",
                                    "class": f"{HERE}.NormalizedSGD", "version": None,
                                    "args": {"momentum": 0.5}}


def test_a_sweep_runs_an_own_method(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(f"""
output = "out"
methods = ["{HERE}:NormalizedSGD+{HERE}:BoundaryWeight", "adam+gn"]
seeds = [0]
[budget]
steps = 10
eval_every = 5
width = 8
depth = 2
n_points = 16
device = "cpu"
progress = false
[optimizer_args."{HERE}:NormalizedSGD"]
momentum = 0.9
[balancing_args."{HERE}:BoundaryWeight"]
weight = 3.0
[systems.thermo]
couplings = [1, 10]
""")
    rows = run_sweep(load_spec(spec_file), progress=False, log=lambda *_: None)
    ids = sorted(row["id"] for row in rows if "adam" not in row["id"])
    assert ids == ["thermo-gamma1-normalizedsgd-boundaryweight-constant-s0",
                        "thermo-gamma10-normalizedsgd-boundaryweight-constant-s0"]
    assert len(rows) == 4 and all(row["status"] == "completed" for row in rows)
    config = json.loads((tmp_path / "out" / "runs" / ids[0] / "config.json").read_text())
    assert config["optimizer_args"] == {"momentum": 0.9}
    assert config["balancing_args"] == {"weight": 3.0}


def test_the_suite_runs_an_own_method():
    import suite

    records = suite.run(f"{HERE}:NormalizedSGD+gn", cases="thermo", profile="tiny",
                        optimizer_args={f"{HERE}:NormalizedSGD": {"momentum": 0.5}})
    assert [(r["coupling_value"], r["status"]) for r in records] == [(1.0, "completed"),
                                                                      (10.0, "completed")]
    assert records[0]["optimizer_class"]["args"] == {"momentum": 0.5}
    assert all(math.isfinite(r["L2_avg"]) for r in records)


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"optimizer": "no_such_package.optim:Fast"}, "cannot import module 'no_such_package.optim'"),
    ({"optimizer": "torch.optim:Fastest"}, "module 'torch.optim' has no 'Fastest'"),
    ({"optimizer": "torch.nn:Linear"}, "is not a subclass of torch.optim.optimizer.Optimizer"),
    ({"optimizer_args": {"momentum": 2.0}}, "momentum must lie in \\[0, 1\\), got 2.0"),
    ({"optimizer_args": {"nesterov": True}}, "has no parameter\\(s\\) \\['nesterov'\\]"),
    # pytorch-optimizer's classes take **kwargs and ignore what they do not know
    ({"optimizer": "pytorch_optimizer:Lion", "optimizer_args": {"beta": 0.9}},
     "its parameters: \\['lr', 'betas'"),
    ({"optimizer": "adam", "optimizer_args": {"amsgrad": True}}, "are for an import-path"),
    ({"optimizer_args": {"lr": 0.1}}, "the learning rate is lr"),
    ({"betas": (0.9, 0.99)}, "put them in optimizer_args"),
    ({"optimizer_args": {"momentum": float("nan")}}, "must hold JSON values"),
    ({"balancing": "softadapt"}, "unknown balancing 'softadapt'"),
    ({"balancing": "gn", "balancing_args": {"weight": 2}}, "cannot be built with arguments"),
    ({"balancing": f"{HERE}:NormalizedSGD"}, "not a subclass of pinn.optim.balancing.Balancer"),
])
def test_a_bad_method_fails_when_the_config_is_built(changes, message):
    with pytest.raises(ValueError, match=message):
        small(**changes)


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "torch.optim:Adam", "--optimizer-args", "{nope"], "not a JSON object"),
    (["--optimizer", "torch.optim:Adam", "--optimizer-args", "amsgrad"], "NAME=VALUE"),
    (["--optimizer", "torch.optim:Adam", "--optimizer-args", "bogus=1"],
     "has no parameter(s) ['bogus']"),
    (["--optimizer", "torch.optim:Adam", "--optimizer-args", "betas=[2, 0.9]"],
     "cannot be built with lr=0.001 and arguments {'betas': [2, 0.9]}: ValueError"),
])
def test_the_cli_refuses_bad_arguments(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path / "r"), *argv])
    assert exit_info.value.code == 2 and not (tmp_path / "r").exists()
    assert message in capsys.readouterr().err


def test_a_sweep_refuses_arguments_of_no_method(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("""output = "out"
methods = ["adam+gn"]
seeds = [0]
[optimizer_args."torch.optim:SGD"]
momentum = 0.9
[systems.thermo]
couplings = [1]
""")
    with pytest.raises(ValueError, match="names \\['torch.optim:SGD'\\], which no method uses"):
        load_spec(spec_file)


def test_adam_then_lbfgs_as_one_optimizer(tmp_path):
    """pinn.optim.optimizers:TwoPhase: 100 Adam steps, then L-BFGS; the L-BFGS phase takes the
    Adam run's error down by more than 10x (measured 5.7e-1 -> 1.8e-3 in 20 steps, where 20
    more Adam steps give 5.5e-1), and a run resumed across the switch (80 steps,
    then resumed to 120) ends where the uninterrupted one does."""
    options = dict(optimizer="pinn.optim.optimizers:TwoPhase", steps=120, eval_every=20,
                   balance_every=1000, lr=1e-2,
                   optimizer_args={"switch": 100, "second_args": {
                       "max_iter": 10, "line_search_fn": "strong_wolfe"}})
    whole = train(small(**options))
    at = {row["step"]: row["l2_avg"] for row in whole.history}
    assert whole.status == "completed" and at[120] < 0.1 * at[100]
    train(small(**{**options, "steps": 80}, run_dir=str(tmp_path)))
    resumed = Trainer(small(**options, run_dir=str(tmp_path)), resume=True)
    assert resumed.step == 80
    [result] = resumed.run()
    assert result.final == whole.final


class WithSchedule(NormalizedSGD):
    """Holds a function in its param_groups: a checkpoint cannot store it."""

    def __init__(self, params, lr=1e-2):
        super().__init__(params, lr=lr)
        for group in self.param_groups:
            group["schedule"] = lambda step: 1.0


def test_a_state_a_checkpoint_cannot_hold_fails_at_the_first_checkpoint(tmp_path):
    from pinn.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="cannot checkpoint .*'schedule'.*: a function"):
        train(small(optimizer=f"{HERE}:WithSchedule", optimizer_args={}, run_dir=str(tmp_path),
                    checkpoint_every=10))
    assert not (tmp_path / "checkpoint.pt").exists()


PLANTED = """
from pathlib import Path

import torch

Path(__file__).with_name("imported").touch()   # what importing it runs: it could be anything


class Adam(torch.optim.Adam):
    pass
"""


def test_a_class_named_in_a_run_folder_is_not_imported(tmp_path, monkeypatch, capsys):
    """An import path in a run folder's config.json or checkpoint is code that would run when
    the file is read (`"optimizer": "this:s"` printed the Zen of Python on --resume and in
    sweeps). Only a class the user names is imported; reading a run folder resolves one only
    in a module already imported, so the run resumes when the command line names it again."""
    (tmp_path / "planted.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(tmp_path))   # as the current directory is for `python -m`
    imported, run = tmp_path / "imported", tmp_path / "run"
    common = ["--no-progress", "--steps", "4"]
    assert main(["train", "--case", "thermo", "--optimizer", "planted:Adam", "--lr", "1e-3",
                 "--width", "8", "--depth", "2", "--n-points", "16", "--eval-every", "2",
                 "--device", "cpu", "--run-dir", str(run), "--no-progress", "--steps", "2"]) == 0
    assert imported.is_file()                           # named on the command line: imported
    imported.unlink()
    monkeypatch.delitem(sys.modules, "planted")         # as in a fresh process
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", "--run-dir", str(run), *common])
    assert exit_info.value.code == 2 and not imported.exists()
    assert (f"optimizer 'planted:Adam' is named in {run / 'config.json'}, and a module named "
            "in a file is not imported (it would run); name it yourself to use it: "
            "`--optimizer planted:Adam`") in capsys.readouterr().err
    # the checkpoint's config, which the engine reads on resume, and a sweep's finished run
    with pytest.raises(ValueError, match=r"is named in .*checkpoint.pt"):
        train(TrainConfig.from_dict({**json.loads((run / "config.json").read_text()),
                                     "optimizer": "adam", "progress": False}), resume=True)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("""output = "out"
methods = ["adam+gn"]
seeds = [0]
[budget]
steps = 2
width = 8
depth = 2
n_points = 16
device = "cpu"
[systems.thermo]
couplings = [1]
""")
    spec = load_spec(spec_file)
    run_sweep(spec, progress=False, log=lambda *_: None)
    finished = tmp_path / "out" / "runs" / "thermo-gamma1-adam-gn-constant-s0" / "config.json"
    planted = {**json.loads(finished.read_text()), "optimizer": "planted:Adam"}
    finished.write_text(json.dumps(planted))
    with pytest.raises(ValueError, match=f"is named in {finished}"):
        run_sweep(spec, progress=False, log=lambda *_: None)
    assert not imported.exists()
    # named again on the command line, the run resumes
    assert main(["train", "--resume", "--run-dir", str(run), "--optimizer", "planted:Adam",
                 *common]) == 0
    assert "completed after 4 steps" in capsys.readouterr().out
