"""The training loop: resume equivalence, divergence, the GN refresh gradients, one backward
per plain step, the run directory, the command line, and the recipe's accuracy."""

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pinn.training import checkpoint as ckpt
from pinn.__main__ import main
from pinn.training.config import TrainConfig
from pinn.problems import ThermoelasticProblem
from pinn.training.trainer import Trainer, train, train_batch
from reference.cases import get_case


@pytest.fixture(autouse=True)
def one_thread():
    """These models are small: one thread is faster than two, and far faster when other
    processes compete for the cores (intra-op threads then spin-wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(**changes) -> TrainConfig:
    """A few-second thermoelastic run in float64 (GN refreshed every 3 steps)."""
    options = dict(case="thermo", case_params={"gamma": 10.0}, optimizer="adam", width=16,
                   depth=2, n_points=32, steps=20, eval_every=5, balance_every=3,
                   dtype="float64", device="cpu", progress=False, seed=0)
    options.update(changes)
    return TrainConfig(**options)


def parameters(trainer_or_state):
    return [p.detach().clone() for p in trainer_or_state.model.parameters()]


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in history]


@pytest.mark.parametrize("optimizer", ["adam", "soap"])
def test_resume_continues_exactly(tmp_path, optimizer):
    # Uninterrupted 20 steps vs 10 steps, a checkpoint, a new process state, 10 more.
    whole = Trainer(small(optimizer=optimizer))
    [whole_result] = whole.run()

    first = small(optimizer=optimizer, steps=10, run_dir=str(tmp_path / "run"))
    train(first)
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    resumed = Trainer(small(optimizer=optimizer, run_dir=str(tmp_path / "run")), resume=True)
    assert resumed.step == 10
    [resumed_result] = resumed.run()

    assert resumed_result.step == whole_result.step == 20
    for a, b in zip(parameters(whole), parameters(resumed)):
        assert torch.equal(a, b)
    assert torch.equal(whole.balancer.weights, resumed.balancer.weights)
    assert _without_time(whole_result.history) == _without_time(resumed_result.history)
    assert [r["step"] for r in whole_result.history] == [0, 5, 10, 15, 20]
    for key in ("best", "lowest_loss", "final"):
        assert getattr(whole_result, key) == getattr(resumed_result, key)


def test_resume_refuses_a_changed_config(tmp_path):
    train(small(steps=5, run_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="lr: checkpoint 0.001, now 0.01"):
        train(small(steps=10, lr=1e-2, run_dir=str(tmp_path)), resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        train(small(steps=10, run_dir=str(tmp_path)))


class PoisonedProblem(ThermoelasticProblem):
    """The thermoelastic problem whose pde_u term turns NaN from its ``poison_from``-th
    call of loss_terms on (the trainer calls it once per step, once per evaluation and
    once when it starts to learn the term names)."""

    def __init__(self, config, poison_from):
        super().__init__(get_case("thermo", **config.case_params), n_points=config.n_points,
                         dtype=torch.float64, seed=config.seed)
        self.calls, self.poison_from = 0, poison_from

    def loss_terms(self, model):
        self.calls += 1
        terms = super().loss_terms(model)
        if self.calls >= self.poison_from:
            terms["pde_u"] = terms["pde_u"] * float("nan")
        return terms


def test_divergence_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    config = small(steps=40, checkpoint_every=5, run_dir=str(tmp_path))
    # calls: 1 names, 2 eval at step 0, steps 1-5 -> 3-7, eval 8, steps 6-10 -> 9-13,
    # eval 14, step 11 -> call 15: the first NaN loss is that of step 11.
    result = train(config, problem=PoisonedProblem(config, poison_from=15))
    assert result.status == "diverged" and result.diverged
    assert "['pde_u']" in result.message
    assert "non-finite at step 11 (noticed at step 15)" in result.message
    assert result.step == 15
    assert [row["step"] for row in result.history] == [0, 5, 10]
    assert math.isnan(result.final["l2"]["avg"])
    assert result.best["step"] in (0, 5, 10) and math.isfinite(result.best["l2"]["avg"])

    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "pde_u" in metrics["message"]
    assert metrics["final"]["l2"]["avg"] is None  # NaN is written as null (strict JSON)

    # The last good state loads and trains on.
    resumed = Trainer(small(steps=12, checkpoint_every=5, run_dir=str(tmp_path)), resume=True)
    assert resumed.step == 10
    assert resumed.run()[0].status == "completed"


def test_a_loss_blown_up_but_finite_is_a_divergence():
    """Adam at lr 1e3 keeps every number finite (tanh saturates) while the loss jumps from
    2.0e3 to 1.3e8 in 5 steps: reported as diverged, not completed with a meaningless L2."""
    result = train(small(lr=1e3, steps=40, eval_every=5))
    assert result.status == "diverged" and result.step == 5
    assert "loss 1.307e+08 after step 5 is more than 1000 x its initial 2.007e+03" in result.message
    assert train(small(lr=1e-3, steps=40, eval_every=5)).status == "completed"


def test_gn_refresh_uses_the_per_term_gradients():
    trainer = Trainer(small(balance_every=1000))
    seen, stepped = {}, {}
    update = trainer.balancer.update

    def spy(step, grads):
        seen[step] = [[g.clone() for g in term] for term in grads]
        update(step, grads)

    trainer.balancer.update = spy
    step = trainer.optimizer.step

    def spy_step(*args, **kwargs):
        stepped[trainer.step] = [p.grad.clone() for p in trainer.params]
        return step(*args, **kwargs)

    trainer.optimizer.step = spy_step

    # Independent per-term gradients at the initial parameters, one fresh graph each.
    independent = []
    for name in trainer.terms:
        trainer.model.zero_grad(set_to_none=True)
        trainer.problem.loss_terms(trainer.model)[name].sum().backward()  # one run: (1,)
        independent.append([torch.zeros_like(p) if p.grad is None else p.grad.clone()
                            for p in trainer.params])
    trainer.model.zero_grad(set_to_none=True)

    trainer.train_step()
    assert list(seen) == [1]
    for mine, theirs in zip(seen[1], independent):
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # The T-boundary term does not touch the u-network: exact zeros in its rows of the
    # stacked parameters (both networks have one shape: one stack, T then u).
    assert trainer.model.members == ((0, 1),) and trainer.model.groups == (("T",), ("u",))
    bc_T = trainer.terms.index("bc_T")
    for g in seen[1][bc_T]:
        assert not g[1].any() and g[0].any()

    norms = torch.stack([torch.sqrt(sum(g.square().sum() for g in term)) for term in independent])
    expected = 0.9 + 0.1 * norms.mean() / norms
    torch.testing.assert_close(trainer.balancer.weights[0], expected, rtol=1e-12, atol=0)
    # The step's gradient (one backward of the weighted sum) = sum_i lambda_i g_i.
    for k, g in enumerate(stepped[1]):
        combined = sum(w * term[k] for w, term in zip(expected, independent))
        torch.testing.assert_close(g, combined, rtol=1e-10, atol=1e-12)

    trainer.train_step()
    assert list(seen) == [1]  # no refresh at step 2


def test_one_backward_per_plain_step(monkeypatch):
    trainer = Trainer(small(balance_every=4))
    params = {id(p) for p in trainer.params}
    counts = {"backward": 0, "grad": 0}
    backward, grad = torch.Tensor.backward, torch.autograd.grad

    def counting_backward(self, *args, **kwargs):
        counts["backward"] += 1
        return backward(self, *args, **kwargs)

    def counting_grad(outputs, inputs, *args, **kwargs):
        inputs_list = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        if any(id(x) in params for x in inputs_list):  # derivatives in x do not count
            counts["grad"] += 1
        return grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", counting_backward)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    per_step = []
    for _ in range(8):
        before = dict(counts)
        trainer.train_step()
        per_step.append((counts["backward"] - before["backward"], counts["grad"] - before["grad"]))
    n_terms = len(trainer.terms)
    refresh = (1, n_terms)  # one autograd.grad per term, then the single backward
    assert per_step == [refresh, (1, 0), (1, 0), (1, 0), refresh, (1, 0), (1, 0), (1, 0)]


def test_run_directory(tmp_path):
    config = small(steps=12, checkpoint_every=5, run_dir=str(tmp_path))
    result = train(config)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "history.csv", "checkpoint.pt", "metrics.json", "losses.png",
            "l2.png", "weights.png"} <= names
    assert not any(name.endswith(".tmp") for name in names)
    assert TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == config

    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 5, 10, 12]
    assert {"loss_pde_T", "loss_pde_u", "loss_bc_T", "loss_bc_u", "weight_pde_u", "l2_T",
            "l2_u", "l2_avg"} <= set(rows[0])
    assert float(rows[-1]["l2_avg"]) == pytest.approx(result.final["l2"]["avg"], rel=1e-12)
    assert float(rows[0]["weight_bc_T"]) == 1.0 and float(rows[1]["weight_bc_T"]) != 1.0

    state = ckpt.load(tmp_path / "checkpoint.pt")  # weights_only=True inside
    assert state["step"] == 12 and len(state["history"]) == 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["n_parameters"] == result.n_parameters
    # 2 nets of 1 -> 16 -> 16 -> 1: (16 + 16) + (256 + 16) + (16 + 1) = 321 each
    assert result.n_parameters == 642
    assert result.steps_per_second > 0 and result.device == "cpu"
    assert min(r["l2_avg"] for r in result.history) == result.best["l2"]["avg"]
    assert min(r["loss"] for r in result.history) == result.lowest_loss["loss"]
    for png in ("losses.png", "l2.png", "weights.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def _damage_random(path):
    path.write_bytes(bytes(range(256)) * 4)


def _damage_empty(path):
    path.write_bytes(b"")


def _damage_shape(path):
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3, dtype=torch.float64)
    torch.save(state, path)


def _damage_key(path):
    state = torch.load(path, weights_only=True)
    del state["optimizer"]
    torch.save(state, path)


@pytest.mark.parametrize("damage, message", [
    (_damage_random, "it is not a checkpoint this trainer wrote, or it is damaged"),
    (_damage_empty, "the file is empty"),
    (_damage_shape, "does not hold this run's state (RuntimeError: Error(s) in loading"),
    (_damage_key, "does not hold this run's state (KeyError"),
])
def test_resume_from_a_damaged_checkpoint_says_what_is_wrong(tmp_path, capsys, damage, message):
    run = str(tmp_path / "run")
    assert main(["train", "--steps", "4", "--width", "8", "--depth", "1", "--n-points", "16",
                 "--eval-every", "2", "--device", "cpu", "--no-progress", "--run-dir", run]) == 0
    damage(tmp_path / "run" / "checkpoint.pt")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", run, "--resume", "--steps", "6"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err
    assert "weights_only=False" not in err          # torch's unsafe advice is not passed on


def test_resume_with_a_corrupt_config_names_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--steps", "2", "--width", "8", "--depth", "1", "--n-points", "16",
                 "--device", "cpu", "--no-progress", "--run-dir", str(run)]) == 0
    (run / "config.json").write_text('{"case": "thermo", ')
    with pytest.raises(SystemExit):
        main(["train", "--run-dir", str(run), "--resume", "--steps", "4"])
    assert f"cannot resume from {run / 'config.json'}: Expecting" in capsys.readouterr().err


def test_lra_weights_only_the_boundary_terms():
    result = train(small(steps=4, balancing="lra"))
    last = result.history[-1]
    assert last["weight_pde_T"] == last["weight_pde_u"] == 1.0
    assert last["weight_bc_T"] != 1.0 and last["weight_bc_u"] != 1.0
    none = train(small(steps=4, balancing="none")).history[-1]
    assert [none[f"weight_{t}"] for t in ("pde_T", "pde_u", "bc_T", "bc_u")] == [1.0] * 4


def test_seed_reproduces_and_changes_the_run():
    a, b, c = (Trainer(small(steps=3, seed=s)) for s in (7, 7, 8))
    for trainer in (a, b, c):
        trainer.run()
    assert all(torch.equal(x, y) for x, y in zip(parameters(a), parameters(b)))
    assert not torch.equal(parameters(a)[0], parameters(c)[0])


@pytest.mark.parametrize("argv, message", [
    (["train", "--case", "heat"], "invalid choice: 'heat' (choose from 'eof-patch'"),
    (["train", "--optimizer", "sgd"], "unknown optimizer 'sgd'; valid: ['adam', 'soap', "
                                      "'package.module:Class']"),
    (["train", "--param", "gamma"], "expected NAME=VALUE"),
    (["train", "--param", "zeta=1"], "unknown parameter(s) ['zeta'] for case 'thermo'"),
    (["train", "--coupling", "-3"], "gamma must be >= 0"),
    (["train", "--steps", "0"], "steps must be an integer >= 1"),
    (["train", "--lr", "nan"], "lr must be a finite number > 0"),
    (["train", "--lr", "-1e-3"], "lr must be a finite number > 0, got -0.001"),
    (["train", "--resume"], "--resume needs --run-dir"),
    # the Debye ratio is the coupling; "--eps" once set the optimizer epsilon silently
    (["train", "--case", "npp", "--eps", "0.05"], "--eps is ambiguous: the Debye ratio"),
    (["train", "--optimizer-eps", "-1"], "eps must be a finite number > 0"),
    ([], "required: COMMAND"),
])
def test_cli_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_missing_reference_or_unwritable_run_dir_before_writing(tmp_path, capsys):
    """Both fail with exit 2 and the reason before anything is trained or written."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--case", "eof-patch", "--coupling", "5", "--run-dir", str(tmp_path / "a")])
    assert exit_info.value.code == 2 and not (tmp_path / "a").exists()
    assert "eof-patch-Pe5.h5 does not exist; regenerate it with" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--steps", "2", "--run-dir", str(tmp_path / "file" / "run")])
    assert exit_info.value.code == 2
    assert "cannot write to" in capsys.readouterr().err


def test_cli_train_and_resume(tmp_path, capsys):
    run = str(tmp_path / "run")
    common = ["--optimizer", "adam", "--width", "8", "--depth", "2", "--n-points", "16",
              "--eval-every", "2", "--device", "cpu", "--no-progress"]
    assert main(["train", "--case", "thermo", "--coupling", "5", "--steps", "4",
                 "--run-dir", run, *common]) == 0
    assert "completed after 4 steps" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["case_params"] == {"gamma": 5.0} and config["optimizer"] == "adam"
    # Resume with only the run folder and a longer run: the rest comes from config.json.
    assert main(["train", "--run-dir", run, "--resume", "--steps", "6", "--no-progress"]) == 0
    assert "completed after 6 steps" in capsys.readouterr().out
    # resuming a finished run trains nothing and keeps the run's rate (not null)
    rate = json.loads((tmp_path / "run" / "metrics.json").read_text())["steps_per_second"]
    assert main(["train", "--run-dir", run, "--resume", "--no-progress"]) == 0
    again = json.loads((tmp_path / "run" / "metrics.json").read_text())["steps_per_second"]
    assert rate > 0 and again > 0
    # a 1D run has no stored reference to score against: said, not a wrong command
    with pytest.raises(SystemExit):
        main(["errors", run])
    assert "thermo has no stored reference" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--run-dir", run, "--resume", "--lr", "0.5"])
    assert "cannot resume" in capsys.readouterr().err


def test_resuming_never_shortens_a_run(tmp_path, capsys):
    """A finished 6-step run resumed with --steps 4 would train nothing and then say 4 steps
    in config.json beside a 6-step checkpoint and metrics: refused, nothing rewritten."""
    run = tmp_path / "run"
    assert main(["train", "--steps", "6", "--width", "8", "--depth", "1", "--n-points", "16",
                 "--eval-every", "2", "--device", "cpu", "--no-progress",
                 "--run-dir", str(run)]) == 0
    files = {name: (run / name).read_bytes() for name in ("config.json", "metrics.json")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(run), "--resume", "--steps", "4", "--no-progress"])
    assert exit_info.value.code == 2
    assert "the run has 6 steps already" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in files} == files


def _train_in_background(run_dir, *options):
    """``python -m pinn train`` in another process, once it has written a checkpoint."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pinn", "train", "--run-dir", str(run_dir), "--device", "cpu",
         "--width", "8", "--depth", "1", "--n-points", "16", "--no-progress", *options],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
        assert process.poll() is None, "the background run ended early"
        time.sleep(0.02)
    return process


def test_a_run_folder_has_one_writer(tmp_path, capsys):
    """While `pinn train` writes a run folder, a second `pinn train` of that folder, fresh
    or resuming, is refused naming the folder and the writer's pid, and so is a batch that
    includes it (its other folders are left as they were); a killed writer leaves no lock."""
    run = tmp_path / "run"
    writer = _train_in_background(run, "--steps", "100000", "--checkpoint-every", "10",
                                  "--eval-every", "10", "--seed", "1")
    try:
        config = (run / "config.json").read_text()
        for extra in ([], ["--resume"]):
            with pytest.raises(SystemExit) as exit_info:
                main(["train", "--run-dir", str(run), "--steps", "5", "--seed", "2",
                      "--no-progress", *extra])
            assert exit_info.value.code == 2
            assert (f"{run} is in use: another process (pid {writer.pid}) holds its lock"
                    in capsys.readouterr().err)
        assert (run / "config.json").read_text() == config
        free = tmp_path / "free"
        with pytest.raises(ckpt.RunDirBusy):
            train_batch([small(run_dir=str(free)), small(run_dir=str(run), seed=1)])
        assert not free.exists()
    finally:
        writer.kill()  # SIGKILL: no clean-up runs in the writer
        writer.wait()
    with ckpt.writer_lock([run]):
        assert (run / ".lock").read_text() == f"{os.getpid()}\n"


def test_a_run_whose_loss_never_fell_is_reported_as_stalled(tmp_path, capsys):
    """Adam at lr 10 keeps the loss finite and below the blow-up line, but never below its
    start (2.5e3): the run completes (a result) with a "stalled" warning in its result,
    metrics.json and the printed output."""
    assert main(["train", "--case", "thermo", "--coupling", "10", "--optimizer", "adam",
                 "--lr", "10", "--width", "16", "--depth", "2", "--n-points", "32", "--steps",
                 "40", "--eval-every", "5", "--balance-every", "3", "--dtype", "float64",
                 "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "completed after 40 steps" in out
    assert ("warning: stalled: the loss never fell below 0.5 x its initial 2.477e+03 (lowest "
            "2.477e+03, at step 0)") in err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["warnings"][0].startswith("stalled")
    assert train(small(lr=1e-2, steps=40)).warnings == ()  # 2.0e3 -> 77 in the same steps


@pytest.mark.slow
def test_thermo_gamma10_soap_gn_accuracy():
    """The recipe (SOAP + GN, 4 x 64 per field, lr 1e-3, float32) at gamma = 10, 2000 steps."""
    config = TrainConfig(case="thermo", case_params={"gamma": 10.0}, optimizer="soap",
                         balancing="gn", lr=1e-3, steps=2000, width=64, depth=4,
                         eval_every=500, device="cpu", progress=False, seed=42)
    result = train(config)
    assert result.status == "completed"
    assert result.final["l2"]["avg"] < 1e-3, result.final


@pytest.mark.slow
@pytest.mark.parametrize("case, params, steps, width, n_points, bound", [
    # measured (seed 0, 2-core CPU): L2_avg 0.93 -> 7.6e-3 (npp), 1.55 -> 0.31 (eof)
    ("npp", {"eps": 0.5}, 800, 32, 150, 0.05),
    ("eof-straight", {"eps": 0.5}, 600, 16, 200, 0.6),
])
def test_short_runs_reduce_the_error(case, params, steps, width, n_points, bound):
    """SOAP + GN on the nonlinear systems: a short run cuts the error by a clear factor
    (the bounds leave a margin of ~6x (npp) and 2x (eof) over what was measured)."""
    config = TrainConfig(case=case, case_params=params, optimizer="soap", balancing="gn",
                         lr=1e-3, balance_every=100, steps=steps, eval_every=steps // 4,
                         width=width, depth=3, n_points=n_points, seed=0, device="cpu",
                         progress=False)
    result = train(config)
    initial = result.history[0]["l2_avg"]
    assert initial > 0.9                                # an untrained network is far off
    assert result.final["l2"]["avg"] < bound, result.final


def test_warmup_exp_schedule_sets_the_learning_rate():
    from pinn.training.schedules import lr_factor

    kw = dict(warmup_steps=4, decay_rate=0.5, decay_every=3)
    assert [lr_factor("warmup-exp", t, **kw) for t in range(1, 12)] == \
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert lr_factor("constant", 10**6) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("cosine", 1)
    config = TrainConfig(case="thermo", optimizer="adam", lr=1e-2, schedule="warmup-exp",
                         steps=7, eval_every=7, width=4, depth=1, n_points=8, device="cpu",
                         progress=False, **kw)
    trainer = Trainer(config)
    seen = []
    for _ in range(7):
        trainer.train_step()
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([1e-2 * f for f in (0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5)])
    with pytest.raises(ValueError, match="decay_rate must be in"):
        TrainConfig(schedule="warmup-exp", decay_rate=1.5)


@pytest.mark.parametrize("optimizer", ["adam", "soap"])
def test_steps_read_nothing_back_to_the_host(host_reads, optimizer):
    """No .item(), .tolist() or truth value of a tensor in a training step, plain or GN
    refresh (on a GPU each would wait for the device): a batch of two eof-patch runs
    (the advection an (R, 1) tensor), steps 4-11 after the first calls' set-up.
    (tests/test_cuda.py checks the loop between evaluations, and on CUDA every sync.)"""
    trainer = Trainer([small(case="eof-patch", optimizer=optimizer, width=8, n_points=40,
                             balance_every=5, seed=seed, case_params={"Pe": pe})
                       for seed, pe in ((0, 0.0), (1, 10.0))])
    for _ in range(3):
        trainer.train_step()
    host_reads.watching = True  # the spy of tests/conftest.py
    for _ in range(8):
        trainer.train_step()
    host_reads.watching = False
    assert trainer.step == 11 and host_reads.reads == []
