"""Batched training: stacked networks, the batched SOAP, and R runs trained together giving
the results of the R runs trained one by one."""

import json
import math

import pytest
import torch

from pinn.batched import BatchedTrainer, stack_optimizer_state, train_batch, unstack_optimizer_state
from pinn.config import TrainConfig
from pinn.networks import MLP, build_model
from pinn.soap import SOAP
from pinn.soap_batched import BatchedSOAP
from pinn.stacked import StackedFieldNetworks, StackedMLP
from pinn.trainer import Trainer, train
from reference.cases import get_case


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(**changes) -> TrainConfig:
    options = dict(case="thermo", optimizer="adam", balancing="gn", width=16, depth=2,
                   n_points=32, steps=200, eval_every=50, balance_every=50, dtype="float64",
                   device="cpu", progress=False)
    options.update(changes)
    return TrainConfig(**options)


# Three runs differing in seed and coupling (gamma 1, 10, 50).
RUNS = [dict(seed=1, case_params={"gamma": 1.0}), dict(seed=2, case_params={"gamma": 10.0}),
        dict(seed=3, case_params={"gamma": 50.0})]


def test_stacked_networks_compute_each_model_on_its_row_block():
    case = get_case("rd-symmetric")
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(build_model(case, width=8, depth=2).double())
    stacked = StackedFieldNetworks.stack(models)
    points = [torch.rand(5, 1, dtype=torch.float64) for _ in models]
    out = stacked(torch.cat(points))
    for r, (model, x) in enumerate(zip(models, points)):
        expected = model(x)
        view = stacked.run_view(r)(x)
        for name in case.fields:
            assert torch.allclose(out[name][5 * r:5 * (r + 1)], expected[name], rtol=0, atol=1e-14)
            assert torch.allclose(view[name], expected[name], rtol=0, atol=1e-14)
    copy = build_model(case, width=8, depth=2).double()
    stacked.unstack_into(1, copy)
    assert all(torch.equal(a, b) for a, b in zip(copy.parameters(), models[1].parameters()))
    # Parameter k of the stack is parameter k of each run (optimizer states line up).
    assert [tuple(p.shape[1:]) for p in stacked.parameters()] == \
        [tuple(p.shape) for p in models[0].parameters()]
    with pytest.raises(ValueError, match="different shapes"):
        StackedFieldNetworks.stack([models[0], build_model(case, width=4, depth=2).double()])


def test_stacked_derivatives_are_each_runs_input_derivatives():
    """Forward-propagated value, d/dx_i and d^2/dx_i^2 of every run (2D input, 2 outputs)
    against autograd on the run's own MLP."""
    torch.manual_seed(0)
    mlps = [MLP(2, 2, 6, 3, [(0.0, 2.0), (0.0, 1.0)]).double() for _ in range(3)]
    stacked = StackedMLP(mlps)
    points = [torch.rand(4, 2, dtype=torch.float64) for _ in mlps]
    value, grad, second = stacked.derivatives(torch.cat(points), order=2)
    for r, (mlp, x) in enumerate(zip(mlps, points)):
        x = x.clone().requires_grad_(True)
        out = mlp(x)
        rows = slice(4 * r, 4 * (r + 1))
        assert torch.allclose(value[rows], out, atol=1e-14, rtol=0)
        for j in range(2):
            (g,) = torch.autograd.grad(out[:, j].sum(), x, create_graph=True)
            assert torch.allclose(grad[rows, :, j], g, atol=1e-13, rtol=0)
            for i in range(2):
                (gg,) = torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)
                assert torch.allclose(second[rows, i, j], gg[:, i], atol=1e-12, rtol=0)


@pytest.mark.parametrize("options", [dict(), dict(normalize_grads=True, precondition_1d=True,
                                                   precondition_frequency=1)])
def test_batched_soap_equals_separate_soaps(options):
    """R SOAPs on R tensors == one BatchedSOAP on their stack, given the same gradients.
    The shapes include the rank-deficient factors of an MLP's first and last layers
    ((16, 1): the left factor has rank 1), whose null-space eigenvectors are arbitrary:
    matching there needs bitwise-equal factors, which both paths get from baddbmm."""
    torch.manual_seed(0)
    runs, shapes = 3, [(16, 1), (16,), (16, 16), (1, 16), (1,)]
    initial = [[torch.randn(shape, dtype=torch.float64) for shape in shapes] for _ in range(runs)]
    single = [[torch.nn.Parameter(t.clone()) for t in run] for run in initial]
    stacked = [torch.nn.Parameter(torch.stack([run[k] for run in initial]))
               for k in range(len(shapes))]
    kw = dict(lr=1e-2, betas=(0.9, 0.99), **options)
    optimizers = [SOAP(params, **kw) for params in single]
    batched = BatchedSOAP(stacked, **kw)
    for _ in range(200):
        grads = [[torch.randn(shape, dtype=torch.float64) for shape in shapes] for _ in range(runs)]
        for params, g, opt in zip(single, grads, optimizers):
            for p, gp in zip(params, g):
                p.grad = gp.clone()
            opt.step()
        for k, p in enumerate(stacked):
            p.grad = torch.stack([g[k] for g in grads])
        batched.step()
    for r in range(runs):
        for k in range(len(shapes)):
            assert torch.allclose(stacked[k][r], single[r][k], rtol=0, atol=1e-12)
    # The stacked state unstacks into each run's own state, and stacks back.
    state = batched.state_dict()
    for r in range(runs):
        mine = unstack_optimizer_state(state, r)["state"]
        theirs = optimizers[r].state_dict()["state"]
        for k in theirs:
            assert torch.allclose(mine[k]["exp_avg_sq"], theirs[k]["exp_avg_sq"], atol=1e-12)
            assert mine[k]["step"] == theirs[k]["step"]
    restacked = stack_optimizer_state([unstack_optimizer_state(state, r) for r in range(runs)],
                                      state["param_groups"])
    assert torch.equal(restacked["state"][2]["Q"][0], state["state"][2]["Q"][0])


def _max_relative(a: float, b: float) -> float:
    return abs(a - b) / abs(a)


def test_batched_adam_gn_equals_the_runs_one_by_one_float64():
    """Metrics and parameters to 1e-10 after 200 steps. (At gamma = 50 the metrics still
    agree to 1e-10, the parameters to ~1e-7: Adam's m / sqrt(v) on parameters whose
    gradients almost vanish amplifies the rounding differences of batched matmuls.)"""
    runs = [dict(seed=1, case_params={"gamma": 1.0}), dict(seed=2, case_params={"gamma": 10.0}),
            dict(seed=3, case_params={"gamma": 10.0})]
    configs = [small(**run) for run in runs]
    singles = [Trainer(config) for config in configs]
    alone = [single.run() for single in singles]
    trainer = BatchedTrainer(configs)
    together = trainer.run()
    for r, (a, b) in enumerate(zip(alone, together)):
        assert b.status == "completed" and b.step == 200
        for key in ("final", "best", "lowest_loss"):
            assert a.__dict__[key]["step"] == b.__dict__[key]["step"]
            for field, value in a.__dict__[key]["l2"].items():
                assert _max_relative(value, b.__dict__[key]["l2"][field]) < 1e-10
        assert len(a.history) == len(b.history) == 5
        for row_a, row_b in zip(a.history, b.history):
            assert _max_relative(row_a["loss"], row_b["loss"]) < 1e-10
            # lambda = mean_j n_j / n_i: a ratio of gradient norms, ~1e3 here, which
            # amplifies the rounding of the (batched vs single) matmuls a little more.
            assert _max_relative(row_a["weight_bc_u"], row_b["weight_bc_u"]) < 1e-8
        # The GN weights moved (so the per-run refresh was exercised) and the parameters agree.
        assert abs(a.history[-1]["weight_pde_T"] - 1.0) > 1e-3
        for p, q in zip(singles[r].model.parameters(), trainer.model.parameters()):
            assert (q[r] - p).abs().max() <= 1e-10 * p.abs().max()


def test_batched_adam_gn_float32_is_close():
    """float32: the batched and single computations round differently (batched matmuls,
    per-run reductions), by ~1e-7 relative per operation; Adam's update is a smooth function
    of the gradient, so after 200 steps the errors agree to well within 1e-4 relative
    (measured: <= 2e-7 for the final L2 and loss)."""
    configs = [small(dtype="float32", **run) for run in RUNS]
    alone = [train(config) for config in configs]
    together = train_batch(configs)
    for a, b in zip(alone, together):
        assert _max_relative(a.final["l2"]["avg"], b.final["l2"]["avg"]) < 1e-4
        assert _max_relative(a.final["loss"], b.final["loss"]) < 1e-4


def test_batched_soap_gn_follows_the_runs_one_by_one():
    """SOAP seeds its eigenbases with eigh of the first gradient's Kronecker factors; for a
    scalar input and output those of the first and last layer have rank 1, so their
    null-space eigenvectors are arbitrary and a 1e-16 rounding difference in the gradient
    (batched vs single matmuls) picks another basis. The optimizers themselves agree to
    1e-12 on equal gradients (test_batched_soap_equals_separate_soaps); whole runs agree
    statistically, not bitwise: measured final L2 differences <= 3.1e-3 relative (float64)."""
    configs = [small(optimizer="soap", **run) for run in RUNS]
    alone = [train(config) for config in configs]
    together = train_batch(configs)
    for a, b in zip(alone, together):
        assert b.status == "completed"
        assert _max_relative(a.final["l2"]["avg"], b.final["l2"]["avg"]) < 2e-2
        assert _max_relative(a.history[1]["loss"], b.history[1]["loss"]) < 2e-2
        assert a.final["l2"]["avg"] < 0.5 * a.history[0]["l2_avg"]  # it trained


def test_a_diverging_run_leaves_the_others_untouched(tmp_path):
    """gamma = 1e39 overflows float32: that run diverges at step 0 and is finished with its
    files; the others give exactly what they give alone."""
    common = dict(dtype="float32", steps=40, eval_every=20, balance_every=10)
    configs = [small(**common, seed=1, case_params={"gamma": 1e39}, run_dir=str(tmp_path / "a")),
               small(**common, seed=2, case_params={"gamma": 10.0}, run_dir=str(tmp_path / "b"))]
    together = train_batch(configs)
    assert together[0].status == "diverged" and together[0].step == 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["status"] == "diverged"
    alone = train(configs[1].replace(run_dir=None))
    assert together[1].status == "completed"
    assert _max_relative(alone.final["l2"]["avg"], together[1].final["l2"]["avg"]) < 1e-4
    assert math.isfinite(together[1].final["l2"]["avg"])


def test_batched_run_directories_are_single_run_directories(tmp_path):
    """Same files as a single run, and a batched run's checkpoint resumes alone."""
    configs = [small(steps=20, eval_every=10, checkpoint_every=10, optimizer="soap",
                     run_dir=str(tmp_path / f"run{r}"), **run) for r, run in enumerate(RUNS[:2])]
    train_batch(configs)
    single = train(small(steps=20, eval_every=10, checkpoint_every=10, optimizer="soap",
                         run_dir=str(tmp_path / "single"), **RUNS[0]))
    expected = sorted(p.name for p in (tmp_path / "single").iterdir())
    for r in range(2):
        assert sorted(p.name for p in (tmp_path / f"run{r}").iterdir()) == expected
    again = train_batch([c.replace(steps=30) for c in configs], resume=True)
    assert [row["step"] for row in again[1].history] == [0, 10, 20, 30]
    resumed = train(configs[0].replace(steps=40), resume=True)
    assert resumed.step == 40 and resumed.status == "completed"
    assert [row["step"] for row in resumed.history] == [0, 10, 20, 30, 40]
    assert single.status == "completed"


def test_a_resumed_batch_continues_exactly(tmp_path):
    """10 steps, checkpoint, resume to 20 == 20 steps straight (SOAP + GN state included)."""
    def configs(name, steps):
        return [small(steps=steps, eval_every=5, checkpoint_every=10, optimizer="soap",
                      balance_every=5, run_dir=str(tmp_path / f"{name}{r}"), **run)
                for r, run in enumerate(RUNS[:2])]

    straight = train_batch(configs("straight", 20))
    train_batch(configs("split", 10))
    resumed = train_batch(configs("split", 20), resume=True)
    for a, b in zip(straight, resumed):
        assert b.step == 20 and len(b.history) == 5
        assert [row["loss"] for row in a.history] == [row["loss"] for row in b.history]
        assert a.final == b.final


def test_a_batch_needs_compatible_configs():
    with pytest.raises(ValueError, match="lr"):
        BatchedTrainer([small(steps=2), small(steps=2, lr=1e-2)])
    with pytest.raises(ValueError, match="distinct run_dirs"):
        BatchedTrainer([small(steps=2, run_dir="x"), small(steps=2, run_dir="x")])
