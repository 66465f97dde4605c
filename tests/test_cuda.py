"""The training path on a CUDA device, each check also run on the CPU.

Every check takes a ``device`` from :data:`DEVICES`: the "cuda" leg is marked ``cuda``
(``pytest -m cuda``) and skipped with the reason "CUDA not available" where there is no
CUDA; the "cpu" leg runs everywhere, so that CI on a CPU keeps the checks themselves honest.
A run on the device is compared with the same run in float64 on the CPU; the CPU leg makes
the same comparison, which for a float64 run is the reference's own computation again
(asserted bitwise equal) and for a float32 run a real one (float32 against float64).

Tolerances (:func:`tolerance`; measured on the 2-core CPU machine, 2026-11-28; that the
compared runs are well conditioned is itself tested: test_the_compared_runs_are_well_
conditioned):

* float64, Adam: 1e-10 relative on every history value (losses, weights, L2 errors) and
  on the parameters. A GPU rounds differently from the CPU in every operation, by ~1e-16
  relative; perturbing the initial weights by 1e-15 moves these runs by <= 6e-13, so
  1e-10 leaves a margin of > 100.
* float32, Adam: against the float64 run, 2e-5 (measured <= 1.2e-6, and <= 2.5e-6 with
  1e-7 perturbations of the weights), 1e-3 with LRA (<= 1e-4: its weights, ratios of
  gradient statistics of ~1e3, carry float32 rounding into every later step). Matmul
  precision: nothing in this project sets ``torch.backends.cuda.matmul.allow_tf32`` or
  ``torch.set_float32_matmul_precision``, so PyTorch's default applies, TF32 off for
  matmuls (precision "highest"): float32 matmuls on the GPU are IEEE float32 like the
  CPU's. test_float32_matmuls_are_full_float32 asserts it (TF32, a 10-bit mantissa, would
  be ~1e-3 off per product).
* SOAP: relative on the loss and the L2 errors only: 1e-2 in float64, 5e-2 in float32
  (GN, none; against the float64 run). SOAP seeds its eigenbases with eigh of the first
  gradient's Kronecker factors; for the first layer (width x 1) and the last (1 x width)
  those have rank 1, so the eigenvectors of their null space are set by rounding noise
  (another device, BLAS or dtype picks another basis) and trajectories then agree
  statistically, not bitwise (as batched and single runs do, tests/test_batched.py).
  Measured over 40 steps, on an AMD EPYC (2026-11-28) and on an Intel Xeon (2026-12-05)
  under three code paths (native, ATEN_CPU_CAPABILITY=default,
  MKL_ENABLE_INSTRUCTIONS=SSE4_2): 1e-15 perturbations move the float64 runs by <= 2.6e-3;
  float32 (GN, none) is <= 2.0e-2 from float64 (the batched SOAP without balancing on the
  SSE4_2 path; <= 5.8e-3 on the others), so 5e-2 leaves a margin of 2.5. That margin is
  as large as the runs' own progress (their L2 error changes by >= 5 %), so a float32 run
  must also have trained: its L2 error falls by at least half as much as the float64
  run's. SOAP + LRA in float32 is not compared: float32 rounding of LRA's large weights
  (ratios of ~1e3) moved it from float64 by up to 8e-2 (AMD) and 1.7e-1 (Intel, natively;
  1e-3 on the other paths), and its L2 error may rise over these 40 steps (0.90 -> 0.94,
  Intel natively); it must stay finite and within 50 % of the float64 run. SOAP's
  arithmetic is checked to 1e-10 on identical gradients with well-posed factors
  (test_soap_steps_on_the_device_equal_the_cpu_ones).

The runs are test_trainer's small thermoelastic run with random biases (:func:`fresh`):
with the networks' zero biases and the symmetric collocation points some gradient entries
vanish by symmetry in exact arithmetic, and Adam's first step g / (|g| + eps) turns the
rounding noise in them into updates of up to lr: a 1e-15 change of the initial weights
moved such runs by up to 1e-5 (measured). Random biases remove that symmetry.

Nothing here imports DOLFINx: the checks run on a stock GPU machine (scripts/gpu-check.sh).
"""

import copy
import functools
import math

import numpy as np
import pytest
import torch
from test_derivatives import autograd_reference, random_mlp
from test_trainer import one_thread, small  # noqa: F401  (one_thread: autouse fixture)

from pinn.__main__ import main
from pinn.analysis.errors import error_fields
from pinn.training.config import TrainConfig
from pinn.training.networks import build_model
from pinn.analysis.ntk import ntk_at
from pinn.problems.base import autograd_derivatives, field_derivatives
from pinn.optim.soap import SOAP
from pinn.optim.soap_batched import BatchedSOAP
from pinn.training.stacked import StackedMLP, StackedNetworks
from pinn.training.trainer import Trainer, train
from reference import store
from reference.cases import get_case

CUDA = [pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")]
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=CUDA)]
METHODS = [(optimizer, balancing) for optimizer in ("adam", "soap")
           for balancing in ("none", "gn", "lra")]
STEPS = {"adam": 20, "soap": 40}  # SOAP: long enough to move the L2 error by >= 5 %


def tolerance(optimizer, balancing, dtype) -> float | None:
    """The relative tolerance of a run against the float64 CPU run (module docstring);
    None: not compared."""
    if optimizer == "adam":
        return 1e-10 if dtype == "float64" else 1e-3 if balancing == "lra" else 2e-5
    if dtype == "float64":
        return 1e-2
    return None if balancing == "lra" else 5e-2


# The runs of a batch differ in seed and coupling; a single run is the first.
RUNS = (dict(seed=1, case_params={"gamma": 1.0}), dict(seed=5, case_params={"gamma": 2.0}))


# --- the compared runs ------------------------------------------------------------------
def configs(device, dtype, optimizer, balancing, runs, **changes) -> list[TrainConfig]:
    """The first ``runs`` of RUNS as test_trainer's small thermoelastic run, networks 2 x 8,
    16 points, GN / LRA refreshed every 5 steps, STEPS steps evaluated 5 times."""
    steps = STEPS[optimizer]
    options = dict(optimizer=optimizer, balancing=balancing, width=8, n_points=16,
                   balance_every=5, steps=steps, eval_every=steps // 4, dtype=dtype,
                   device=device)
    return [small(**{**options, **RUNS[r], **changes}) for r in range(runs)]


def fresh(configs, perturb: float = 0.0, perturb_seed: int = 0) -> Trainer:
    """A new Trainer with random biases, drawn from each run's seed on the CPU in float64
    (the same numbers on every device, in every dtype, alone or in a batch; see the module
    docstring), its parameters optionally multiplied by 1 + perturb N(0, 1)."""
    trainer = Trainer(configs)
    noise = torch.Generator().manual_seed(perturb_seed)
    with torch.no_grad():
        for r, run in enumerate(trainer.runs):
            biases = torch.Generator().manual_seed(1000 + run.config.seed)
            for g, stack in enumerate(trainer.model.stacks):
                for layer in stack.layers:  # bias (networks, width); weight (networks, out, in)
                    rows = layer.bias[trainer.model.rows(g, r)]
                    rows.copy_(0.5 * torch.randn(rows.shape, generator=biases,
                                                 dtype=torch.float64))
        for p in trainer.params:
            if perturb:
                p.mul_(1 + perturb * torch.randn(p.shape, generator=noise, dtype=torch.float64)
                       .to(p.device))
    return trainer


@functools.lru_cache(maxsize=None)
def reference(optimizer, balancing, runs):
    """The float64 CPU run every device run is compared with: (histories, parameters)."""
    trainer = fresh(configs("cpu", "float64", optimizer, balancing, runs))
    results = trainer.run()
    return (tuple(result.history for result in results),
            tuple(p.detach().clone() for p in trainer.params))


def compared(optimizer):
    """The history values a check compares: all for Adam, the loss and L2 for SOAP."""
    if optimizer == "adam":
        return lambda key: key not in ("step", "train_seconds")
    return lambda key: key == "loss" or key.startswith("l2_")


def largest_difference(histories, expected, keys) -> float:
    """The largest relative difference of a compared value between two sets of histories
    (rows at the same steps)."""
    worst = 0.0
    for history, expected_history in zip(histories, expected, strict=True):
        assert [row["step"] for row in history] == [row["step"] for row in expected_history]
        for row, expected_row in zip(history, expected_history):
            for key, value in expected_row.items():
                if keys(key):
                    worst = max(worst, abs(row[key] - value) / abs(value))
    return worst


def parameter_difference(params, expected) -> float:
    """The largest difference of a parameter tensor, relative to its largest entry."""
    return max(float((p.detach().cpu().double() - q).abs().max() / q.abs().max())
               for p, q in zip(params, expected, strict=True))


# --- training ---------------------------------------------------------------------------
@pytest.mark.parametrize("runs", [1, 2], ids=["single", "batched"])
@pytest.mark.parametrize("optimizer, balancing", METHODS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("device", DEVICES)
def test_training_follows_the_cpu_float64_run(device, dtype, optimizer, balancing, runs):
    """A single run and a batch of two, every optimizer and balancer: the run on the device
    against the float64 CPU run, to the tolerance of the module docstring."""
    expected, expected_params = reference(optimizer, balancing, runs)
    trainer = fresh(configs(device, dtype, optimizer, balancing, runs))
    assert all(p.device.type == device for p in trainer.params)
    results = trainer.run()
    assert [r.status for r in results] == ["completed"] * runs
    assert all(r.device.startswith(device) for r in results)
    histories = [r.history for r in results]
    limit = tolerance(optimizer, balancing, dtype)
    if limit is None:  # SOAP + LRA in float32: finite, and near the float64 run
        for history, expected_history in zip(histories, expected, strict=True):
            assert all(math.isfinite(row["l2_avg"]) for row in history)
            for row, expected_row in zip(history, expected_history, strict=True):
                assert abs(row["l2_avg"] / expected_row["l2_avg"] - 1) < 0.5
        return
    difference = largest_difference(histories, expected, compared(optimizer))
    assert difference <= limit
    if (optimizer, dtype) == ("soap", "float32"):  # its tolerance is as large as its progress
        for history, expected_history in zip(histories, expected, strict=True):
            fell = 1 - history[-1]["l2_avg"] / history[0]["l2_avg"]
            assert fell >= 0.5 * (1 - expected_history[-1]["l2_avg"] / expected_history[0]["l2_avg"])
    if optimizer == "adam":
        assert parameter_difference(trainer.params, expected_params) <= limit
    if device == "cpu" and dtype == "float64":
        assert difference == 0.0  # the reference's own computation, again


@pytest.mark.parametrize("device", DEVICES)
def test_an_optimizer_by_import_path_follows_the_cpu_float64_run(device):
    """torch.optim:Adam by import path (one instance per run, on views of each run's
    tensors on the device: pinn.optim.optimizers.PerRunOptimizer), a batch of two, follows the
    built-in fused Adam's float64 CPU run to Adam's float64 tolerance."""
    expected, _ = reference("adam", "gn", 2)
    trainer = fresh([config.replace(optimizer="torch.optim:Adam")
                     for config in configs(device, "float64", "adam", "gn", 2)])
    assert {t.device.type for views in trainer.optimizer.views for t in views} == {device}
    histories = [result.history for result in trainer.run()]
    assert largest_difference(histories, expected, compared("adam")) <= tolerance(
        "adam", "gn", "float64")


@pytest.mark.parametrize("runs", [1, 2], ids=["single", "batched"])
@pytest.mark.parametrize("optimizer, balancing", METHODS)
def test_the_compared_runs_are_well_conditioned(optimizer, balancing, runs):
    """What the float64 tolerances rest on (CPU): another device rounds differently in every
    operation, by ~1e-16 relative; three perturbations of the initial weights by 1e-15
    relative move each run by at most a hundredth (Adam) or a third (SOAP) of its
    tolerance, and every run's L2 error changes by more than three tolerances (so a device
    run that did not train cannot pass, which matters for SOAP's 1e-2)."""
    expected, _ = reference(optimizer, balancing, runs)
    limit = tolerance(optimizer, balancing, "float64")
    for perturb_seed in range(3):
        trainer = fresh(configs("cpu", "float64", optimizer, balancing, runs), 1e-15, perturb_seed)
        histories = [result.history for result in trainer.run()]
        moved = largest_difference(histories, expected, compared(optimizer))
        assert 0 < moved <= limit / (100 if optimizer == "adam" else 3)
    for history in expected:
        assert abs(history[-1]["l2_avg"] / history[0]["l2_avg"] - 1) > 3 * limit


@pytest.mark.parametrize("device", DEVICES)
def test_float32_matmuls_are_full_float32(device):
    """The precision the float32 tolerance assumes: after building and stepping a trainer,
    TF32 is still off for matmuls (nothing in pinn turns it on) and a float32 matmul on the
    device agrees with float64 to float32 rounding (TF32 would be ~1e-3 off)."""
    trainer = fresh(configs(device, "float32", "adam", "gn", 1))
    trainer.train_step()
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(256, 256, generator=generator, dtype=torch.float64) for _ in range(2))
    product = (a.float().to(device) @ b.float().to(device)).cpu().double()
    exact = a.float().double() @ b.float().double()
    assert float(((product - exact).abs() / exact.abs()).max()) < 1e-5


# --- input derivatives ------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_stacked_input_derivatives_equal_autograd_on_the_device(device):
    """pinn/training/stacked.py on the device, float64: the forward-propagated value, d/dx_i and
    d2/dx_i^2 of three stacked 2D networks (random biases) against nested autograd of each
    network on the device, and a stacked EOF model's fields against its autograd path; to
    1e-12 as tests/test_derivatives.py on the CPU (two exact formulas, differing by
    rounding); the device's numbers also equal the CPU's to 1e-12."""
    mlps = [random_mlp(2, 3, ((0.0, 2.0), (0.0, 1.0)), seed=k) for k in range(3)]
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(3, 40, 2, generator=generator, dtype=torch.float64)
    points = points * torch.tensor([2.0, 1.0], dtype=torch.float64)
    on_cpu = StackedMLP(mlps).derivatives(points, order=2)
    stacked = StackedMLP(mlps).to(device)
    value, grad, second = stacked.derivatives(points.to(device), order=2)
    assert value.device.type == device
    for k, mlp in enumerate(mlps):
        expected = autograd_reference(copy.deepcopy(mlp).to(device), points[k].to(device))
        for mine, theirs, cpu in zip((value, grad, second), expected, on_cpu):
            torch.testing.assert_close(mine[k], theirs, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(mine[k].cpu(), cpu[k], rtol=1e-12, atol=1e-12)

    case = get_case("eof-straight")
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model(case, width=8, depth=2).double().to(device))
    model = StackedNetworks.stack(models)
    x = points[0].to(device)
    orders = {"phi": 2, "c_plus": 2, "u": 2, "p": 1}
    forward = field_derivatives(model, x, orders)
    with autograd_derivatives():
        backward = field_derivatives(model, x, orders)
    for name, order in orders.items():
        for part in ("value", "grad", "second")[:order + 1]:
            torch.testing.assert_close(getattr(forward[name], part),
                                       getattr(backward[name], part), rtol=1e-12, atol=1e-12)


# --- SOAP -------------------------------------------------------------------------------
# Per-run shapes whose first Kronecker factors have null spaces of dimension <= 1 (unique
# eigenvectors up to a sign, which cancels): square, |m - n| = 1, and a bias (identity).
SHAPES = [(8, 8), (8,), (7, 8), (8, 7)]
SOAP_OPTIONS = {"recipe": {}, "normalized": dict(normalize_grads=True, precondition_frequency=1)}


@functools.lru_cache(maxsize=None)
def soap_trajectory(device, dtype, batched, options, runs=3, steps=100):
    """The parameters after ``steps`` SOAP (or BatchedSOAP, ``runs`` runs) steps on the same
    random gradients (drawn on the CPU in float64), as CPU float64 tensors, and the device
    types of the optimizer's state."""
    generator = torch.Generator().manual_seed(0)
    draw = lambda: [torch.randn(shape, generator=generator, dtype=torch.float64)  # noqa: E731
                    for shape in SHAPES]
    initial = [draw() for _ in range(runs)]
    gradients = [[draw() for _ in range(runs)] for _ in range(steps)]
    move = lambda t: t.to(device=device, dtype=getattr(torch, dtype))  # noqa: E731
    if batched:
        params = [torch.nn.Parameter(move(torch.stack([run[k] for run in initial])))
                  for k in range(len(SHAPES))]
        optimizer = BatchedSOAP(params, lr=1e-2, betas=(0.9, 0.99), **SOAP_OPTIONS[options])
        step_gradients = [[torch.stack([run[k] for run in step]) for k in range(len(SHAPES))]
                          for step in gradients]
    else:
        params = [torch.nn.Parameter(move(t)) for t in initial[0]]
        optimizer = SOAP(params, lr=1e-2, betas=(0.9, 0.99), **SOAP_OPTIONS[options])
        step_gradients = [step[0] for step in gradients]
    for step in step_gradients:
        for p, g in zip(params, step):
            p.grad = move(g)
        optimizer.step()
    devices = {t.device.type for state in optimizer.state.values() for value in state.values()
               for t in (value if isinstance(value, list) else [value])
               if isinstance(t, torch.Tensor)}
    return tuple(p.detach().cpu().double() for p in params), devices


@pytest.mark.parametrize("options", list(SOAP_OPTIONS))
@pytest.mark.parametrize("batched", [False, True], ids=["SOAP", "BatchedSOAP"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("device", DEVICES)
def test_soap_steps_on_the_device_equal_the_cpu_ones(device, dtype, batched, options):
    """100 steps on identical gradients, against the float64 CPU steps: float64 to 1e-10
    (1e-15 perturbations of the gradients move them by <= 2e-15: eigh and QR on the device
    round differently, nothing more), float32 to 1e-5 (measured 7e-7 from float64); the
    parameters moved by > 0.1 of their size. The optimizer's state lives on the device."""
    expected, _ = soap_trajectory("cpu", "float64", batched, options)
    params, devices = soap_trajectory(device, dtype, batched, options)
    assert devices == {device}
    tolerance = 1e-10 if dtype == "float64" else 1e-5
    assert parameter_difference(params, expected) <= tolerance
    start, _ = soap_trajectory("cpu", "float64", batched, options, steps=0)
    assert parameter_difference(expected, start) > 0.1


@pytest.mark.parametrize("device", DEVICES)
def test_eigendecomposition_fallbacks_on_the_device(device, monkeypatch):
    """BatchedSOAP's first step when the batched eigh fails: every run is retried alone
    (pinn.optim.soap._eigenbasis), giving on the device orthonormal bases that diagonalise the
    factors, columns by descending eigenvalue; when every attempt fails, the identity with
    a RuntimeWarning."""
    real_eigh = torch.linalg.eigh
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(2, 6, 5, generator=generator, dtype=torch.float64)
    gradient = torch.randn(2, 6, 5, generator=generator, dtype=torch.float64)

    def first_step():
        p = torch.nn.Parameter(weight.to(device))
        optimizer = BatchedSOAP([p], lr=1e-2)
        p.grad = gradient.to(device)
        optimizer.step()
        return optimizer.state[p]

    def batched_fails(matrix, *args, **kwargs):
        if matrix.dim() == 3:
            raise torch.linalg.LinAlgError("simulated: the batched eigh failed")
        return real_eigh(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", batched_fails)
    state = first_step()
    for factor, basis in zip(state["GG"], state["Q"]):
        assert basis.device.type == device and basis.shape == factor.shape
        eye = torch.eye(basis.shape[-1], dtype=torch.float64, device=device)
        torch.testing.assert_close(basis.mT @ basis, eye.expand_as(basis), rtol=0, atol=1e-12)
        rotated = basis.mT @ factor @ basis
        diagonal = torch.diagonal(rotated, dim1=-2, dim2=-1)
        scale = float(factor.abs().max())
        assert float((rotated - torch.diag_embed(diagonal)).abs().max()) < 1e-12 * scale
        assert bool((diagonal[:, :-1] >= diagonal[:, 1:] - 1e-12 * scale).all())

    def always_fails(matrix, *args, **kwargs):
        raise torch.linalg.LinAlgError("simulated")

    monkeypatch.setattr(torch.linalg, "eigh", always_fails)
    with pytest.warns(RuntimeWarning, match="identity basis"):
        state = first_step()
    for basis in state["Q"]:
        eye = torch.eye(basis.shape[-1], dtype=torch.float64, device=device)
        assert torch.equal(basis, eye.expand_as(basis))


# --- checkpoints, errors, NTK ------------------------------------------------------------
PAIRS = [pytest.param("cpu", "cpu", id="cpu-cpu"),
         pytest.param("cuda", "cpu", id="cuda-cpu", marks=CUDA),
         pytest.param("cpu", "cuda", id="cpu-cuda", marks=CUDA)]


@pytest.mark.parametrize("optimizer", ["adam", "soap"])
@pytest.mark.parametrize("written, resumed", PAIRS)
def test_a_checkpoint_resumes_on_another_device(tmp_path, written, resumed, optimizer):
    """Half the steps on one device, a checkpoint, the other half on the other device (the
    optimizer and balancer state moved there) follow the uninterrupted float64 CPU run:
    bitwise from CPU to CPU, else to the training tolerance (GN, float64)."""
    run_dir, half = str(tmp_path / "run"), STEPS[optimizer] // 2
    first = fresh(configs(written, "float64", optimizer, "gn", 1, steps=half, run_dir=run_dir))
    first.run()
    [config] = configs(resumed, "float64", optimizer, "gn", 1, run_dir=run_dir)
    trainer = Trainer(config, resume=True)
    assert trainer.step == half
    state = [t for s in trainer.optimizer.state.values() for value in s.values()
             for t in (value if isinstance(value, list) else [value])
             if isinstance(t, torch.Tensor)]
    assert state and {t.device.type for t in state} == {resumed}
    assert trainer.balancer.weights.device.type == resumed
    [result] = trainer.run()
    expected, _ = reference(optimizer, "gn", 1)
    difference = largest_difference([result.history], expected, compared(optimizer))
    if written == resumed:
        assert difference == 0.0
    assert difference <= tolerance(optimizer, "gn", "float64")


@pytest.mark.parametrize("device", DEVICES)
def test_error_fields_of_a_run_trained_on_the_device(tmp_path, device, capsys):
    """A float64 EOF run trained on the device (3 Adam steps, random collocation points):
    error_fields of its run directory, read on the CPU, equal those of the same run trained
    on the CPU (predictions to 1e-10 of their size), agree with the run's own scores against
    the exact profile (1e-4: the stored DOLFINx reference against the exact profile), and
    `pinn errors` writes errors.nc with the same L2."""
    import xarray as xr

    case = get_case("eof-straight", eps=0.2)
    reference_data = store.open_reference(store.reference_path(case))
    base = TrainConfig(case="eof-straight", case_params={"eps": 0.2}, optimizer="adam", steps=3,
                       eval_every=3, width=8, depth=2, n_points=20, seed=1, dtype="float64",
                       progress=False, device="cpu", run_dir=str(tmp_path / "cpu"))
    train(base)
    result = train(base.replace(device=device, run_dir=str(tmp_path / "device")))
    assert result.device.startswith(device)
    ds = error_fields(tmp_path / "device", reference_data)
    on_cpu = error_fields(tmp_path / "cpu", reference_data)
    scale = float(np.abs(on_cpu["pred"]).max())
    np.testing.assert_allclose(ds["pred"], on_cpu["pred"], rtol=0, atol=1e-10 * scale)
    for name in ("phi", "c_plus", "c_minus", "u"):
        assert float(ds["l2"].sel(field=name)) == pytest.approx(result.final["l2"][name], rel=1e-4)

    assert main(["errors", str(tmp_path / "device"), "--out", str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "out" / "errors.nc") as written:
        np.testing.assert_allclose(written["l2"], ds["l2"], rtol=1e-12)
    assert (tmp_path / "out" / "errors.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name, params", [("thermo", {"gamma": 10.0}), ("npp", {"eps": 0.2}),
                                          ("eof-straight", {"eps": 0.2})])
@pytest.mark.parametrize("device", DEVICES)
def test_ntk_spectra_on_the_device_equal_the_cpu_ones(device, name, params):
    """pinn.analysis.ntk.ntk_at on the device against the CPU (float64): lambda_max(K) to 1e-10, the
    K eigenvalues above 1e-8 lambda_max to 1e-8 (an SVD resolves sigma_k to ~1e-16
    sigma_max, so lambda_k = sigma_k^2 to ~1e-16 lambda_max / (sigma_k / sigma_max) <= 1e-12
    relative there), the same ranks (the singular values nearest the 1e-10 rank cutoff lie
    >= 2 % from it, measured, while rounding moves them by ~1e-6 of themselves), the top of
    the K_P spectrum (lambda_max = S and the largest diagonal entry) to 1e-8, and the whole
    K_P spectrum to sum_s 1e-15 / margin_s: by Weyl each eigenvalue moves by at most
    sum_s ||dP_s||, and by Wedin ||dP_s|| <~ ||E_s|| / sigma_r,s, where the row-equilibrated
    block (unit rows, so sigma_1 >= 1) carries rounding errors ||E_s|| <~ 1e-15 (~1e-16 per
    row, <= 62 rows). These blocks keep singular values down to ~1e-10 sigma_1, so that is
    up to ~1e-5; float32 anywhere on the path would turn those directions by O(1). On an
    H200 (2026-11-28) the spectra differed by up to 2.7e-8."""
    case = get_case(name, **params)
    options = dict(width=6, depth=2, n_points=10, seed=0, spectra=True)
    mine, cpu = ntk_at(case, device=device, **options), ntk_at(case, **options)
    assert mine.lambda_max_K == pytest.approx(cpu.lambda_max_K, rel=1e-10)
    assert mine.lambda_max_KP == pytest.approx(cpu.lambda_max_KP, rel=0, abs=1e-8)
    assert [b.rank for b in mine.blocks] == [b.rank for b in cpu.blocks]
    assert mine.coverage == cpu.coverage
    assert mine.max_diag_KP == pytest.approx(cpu.max_diag_KP, rel=0, abs=1e-8)
    large = cpu.eigenvalues_K >= 1e-8 * cpu.lambda_max_K
    assert large.sum() >= 10
    np.testing.assert_allclose(mine.eigenvalues_K[large], cpu.eigenvalues_K[large], rtol=1e-8)
    bound = sum(1e-15 / block.margin for block in cpu.blocks if block.margin)
    assert bound < 1e-4  # the bound is small against the O(1) values of the K_P spectrum
    np.testing.assert_allclose(mine.eigenvalues_KP, cpu.eigenvalues_KP, rtol=0, atol=bound)


@pytest.mark.parametrize("device", [pytest.param("cuda", id="cuda", marks=CUDA)])
def test_the_suite_trains_and_scores_on_the_device(tmp_path, device):
    """The benchmark suite's tiny profile (thermo and the straight EOF channel, both methods,
    two couplings) with --device cuda, end to end: every run completed on the device and
    the JSON holds its accuracy. (The CPU leg is tests/test_suite.py: the whole tiny
    profile on the CPU.)"""
    import json

    from test_suite import RUN_KEYS, _pytest_suite

    out = tmp_path / "tiny.json"
    run = _pytest_suite("--profile", "tiny", "--device", device, "--case", "thermo", "--case",
                        "eof-straight", "--benchmark-json", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = [info for bench in json.loads(out.read_text())["benchmarks"]
            for info in bench["extra_info"]["runs"]]
    assert len(runs) == 8
    for info in runs:
        assert all(isinstance(info[key], kind) for key, kind in RUN_KEYS.items())
        assert info["status"] == "completed" and info["device"].startswith(device)
        assert math.isfinite(info["L2_avg"]) and info["L2_avg"] > 0


# --- sweeps and devices -------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_a_sweep_rank_takes_the_gpu_of_its_local_rank(device, monkeypatch):
    """Under mpirun every rank uses GPU (rank on its node) % (GPUs on the node). The CPU leg
    checks the choice with a stand-in for torch.cuda (two GPUs); the CUDA leg makes it."""
    from pinn.training import sweep

    for name in sweep._LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if device == "cpu":
        chosen = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
        monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2")  # world rank 5 of a node's 3rd
        assert sweep._pick_gpu(5) == 0 and chosen == [0]       # the world rank would give 1
        monkeypatch.delenv("OMPI_COMM_WORLD_LOCAL_RANK")
        monkeypatch.setenv("SLURM_LOCALID", "3")
        assert sweep._pick_gpu(0) == 1 and chosen == [0, 1]
        monkeypatch.delenv("SLURM_LOCALID")                     # no launcher: one node
        assert sweep._pick_gpu(5) == 1 and chosen == [0, 1, 1]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert sweep._pick_gpu(5) is None and chosen == [0, 1, 1]
        return
    count, before = torch.cuda.device_count(), torch.cuda.current_device()
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", str(count - 1))  # the node's last rank
    try:
        assert sweep._pick_gpu(2 * count) == count - 1  # world rank 2 count: GPU 0 by it
        assert torch.cuda.current_device() == count - 1
    finally:
        torch.cuda.set_device(before)


def test_cuda_asked_for_without_cuda_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """No CUDA (a CPU machine, or a GPU machine with CUDA hidden here): `train`, `pinn train
    --device cuda` and `pinn sweep --device cuda` stop before anything is trained or
    written, with a message naming the missing CUDA (exit status 2 on the command line,
    no traceback). Not parametrized: it is about the machine, not the device."""
    from test_sweep import write_spec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = "device 'cuda' was requested but CUDA is not available"
    with pytest.raises(ValueError, match=message):
        train(small(device="cuda", run_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    for argv in (["train", "--device", "cuda", "--steps", "2", "--no-progress",
                  "--run-dir", str(tmp_path / "cli")],
                 ["sweep", str(write_spec(tmp_path)), "--device", "cuda", "--no-progress"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "cli").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("optimizer", ["adam", "soap"])
@pytest.mark.parametrize("device", DEVICES)
def test_no_host_device_synchronisation_between_evaluations(device, optimizer, host_reads,
                                                            monkeypatch):
    """Trainer.run on a batch of two eof-patch runs (float32; the advection an (R, 1)
    tensor), evaluated every 4 steps: between evaluations, from step 5 on (SOAP's first
    call may read its eigenbasis back), nothing reads a value back to the host (.item(),
    .tolist(), truth values; tests/test_trainer.py checks train_step alone the same way)
    and, on CUDA, no operation synchronises (torch.cuda.set_sync_debug_mode("error")
    raises if one does). Steps 5-12 include GN refreshes (6, 11) and SOAP basis refreshes."""
    import pinn.training.trainer

    trainer = Trainer([small(case="eof-patch", optimizer=optimizer, width=8, n_points=40,
                             balance_every=5, steps=12, eval_every=4, dtype="float32",
                             device=device, seed=seed, case_params={"Pe": pe})
                       for seed, pe in ((0, 0.0), (1, 10.0))])
    watched = []

    def watch(on: bool) -> None:
        host_reads.watching = on
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error" if on else "default")

    check, sync, step = trainer._check, pinn.training.trainer.sync, trainer.train_step

    def evaluation(*args, **kwargs):  # the end of an interval: anything goes until it is over
        watch(False)
        check(*args, **kwargs)
        watch(4 <= trainer.step < trainer.config.steps)

    def synchronise(device_):
        watch(False)
        sync(device_)

    def counted_step():
        if host_reads.watching:
            watched.append(trainer.step + 1)
        return step()

    trainer._check, trainer.train_step = evaluation, counted_step
    monkeypatch.setattr(pinn.training.trainer, "sync", synchronise)
    try:
        [result, _] = trainer.run()
    finally:
        watch(False)
    assert result.status == "completed" and result.step == 12
    assert watched == list(range(5, 13)) and host_reads.reads == []
    assert math.isfinite(result.final["l2"]["avg"])
