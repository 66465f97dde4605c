"""One benchmark per run: train a PINN, score every field against its reference.

Each run trains once (``benchmark.pedantic``, one round, one iteration); the accuracy goes
into ``extra_info`` (per-field relative L2: final, best and at the lowest loss; L2_avg;
steps/s; the reference file and its sha256). 2D flows are scored against the stored
DOLFINx references (the networks are evaluated at the reference grid's points).
"""

import math

import torch

from pinn.problems import get_problem
from pinn.trainer import TrainConfig, resolve_device, train
from reference import store
from reference.cases import CASES, get_case


def _config(profile, case, coupling, optimizer, balancing, seed, device):
    budget = profile.budgets[case]
    return TrainConfig(
        case=case, case_params={CASES[case].coupling: coupling}, optimizer=optimizer,
        lr=budget.lr, balancing=balancing, balance_every=budget.balance_every,
        steps=budget.steps, eval_every=budget.eval_every, width=budget.width,
        depth=budget.depth, n_points=budget.n_points, dtype=profile.dtype, device=device,
        seed=seed, progress=False,
    )


def test_train(benchmark, run_spec, profile, device, reference_root, record):
    case_name, coupling, optimizer, balancing, seed = run_spec
    config = _config(profile, *run_spec, device)
    case = get_case(case_name, **config.case_params)
    stored = case.dim == 2
    problem = get_problem(
        case, n_points=config.n_points, dtype=getattr(torch, config.dtype),
        device=resolve_device(device), seed=seed, reference_root=reference_root,
        reference="stored" if stored else "exact",
    )
    # the reference is read (and its hash checked) before training starts
    problem.reference()
    benchmark.group = case_name
    result = benchmark.pedantic(train, args=(config,), kwargs={"problem": problem},
                                rounds=1, iterations=1, warmup_rounds=0)

    path = store.reference_path(case, reference_root) if stored else None
    info = {
        "case": case_name, "coupling": CASES[case_name].coupling, "coupling_value": coupling,
        "optimizer": optimizer, "balancing": balancing, "method": f"{optimizer}+{balancing}",
        "seed": seed, "profile": profile.name, "status": result.status,
        "steps": result.step, "steps_per_second": result.steps_per_second,
        "device": result.device, "n_parameters": result.n_parameters,
        "l2_final": result.final["l2"], "l2_best": result.best["l2"],
        "l2_lowest_loss": result.lowest_loss["l2"],
        "L2_avg": result.final["l2"]["avg"],
        "reference": path.name if path else "exact",
        "reference_sha256": store.sha256(path) if path else None,
    }
    info = _plain(info)
    benchmark.extra_info.update(info)
    record(info)
    assert result.status == "completed", result.message
    assert math.isfinite(info["L2_avg"])


def _plain(value):
    """JSON-able: NaN/inf become None, numpy scalars Python floats."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, float) or hasattr(value, "item"):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
