"""One benchmark per batch: the runs of one system and method (every coupling and seed of the
profile) train together, and every field of every run is scored against its reference.

Each batch trains once (``benchmark.pedantic``, one round, one iteration: the time is the
batch's); the accuracy goes into ``extra_info["runs"]``, one record per run (per-field
relative L2: final, best and at the lowest loss; the tail statistic of L2_avg,
:func:`pinn.statistics.tail`; L2_avg; steps/s; the reference file and its sha256). 2D flows are scored against the stored DOLFINx references (the networks are
evaluated at the reference grid's points).
"""

import math

import torch

from pinn.problems import get_problem
from pinn.trainer import TrainConfig, json_safe, resolve_device, train_batch
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


def test_train(benchmark, batch_spec, profile, device, reference_root, record):
    case_name, optimizer, balancing, runs = batch_spec
    configs = [_config(profile, case_name, coupling, optimizer, balancing, seed, device)
               for coupling, seed in runs]
    cases = [get_case(case_name, **config.case_params) for config in configs]
    stored = cases[0].dim == 2
    problems = [get_problem(case, n_points=config.n_points,
                            dtype=getattr(torch, config.dtype), device=resolve_device(device),
                            seed=config.seed, reference_root=reference_root,
                            reference="stored" if stored else "exact")
                for case, config in zip(cases, configs)]
    for problem in problems:
        problem.reference()  # read (and its hash checked) before training starts
    benchmark.group = case_name
    results = benchmark.pedantic(train_batch, args=(configs,), kwargs={"problems": problems},
                                 rounds=1, iterations=1, warmup_rounds=0)

    infos = []
    for (coupling, seed), case, result in zip(runs, cases, results):
        path = store.reference_path(case, reference_root) if stored else None
        info = json_safe({
            "case": case_name, "coupling": CASES[case_name].coupling,
            "coupling_value": coupling, "optimizer": optimizer, "balancing": balancing,
            "method": f"{optimizer}+{balancing}", "seed": seed, "profile": profile.name,
            "status": result.status, "steps": result.step,
            "steps_per_second": result.steps_per_second, "device": result.device,
            "n_parameters": result.n_parameters, "l2_final": result.final["l2"],
            "l2_best": result.best["l2"], "l2_lowest_loss": result.lowest_loss["l2"],
            "l2_tail": result.tail,
            "L2_avg": result.final["l2"]["avg"],
            "reference": path.name if path else "exact",
            "reference_sha256": store.sha256(path) if path else None,
        })
        infos.append(info)
        record(info)
    benchmark.extra_info.update(case=case_name, method=f"{optimizer}+{balancing}",
                                runs=infos)
    for info, result in zip(infos, results):
        assert result.status == "completed", result.message
        assert math.isfinite(info["L2_avg"])
