"""One batch of the benchmark (the runs of one system and method: every coupling and seed of
a profile), trained and scored; used by the pytest harness (suite/test_benchmarks.py) and
by :func:`run`, the same benchmark from Python::

    import suite
    records = suite.run("pytorch_optimizer:Lion+gn", cases=["thermo"], profile="smoke",
                        optimizer_args={"pytorch_optimizer:Lion": {"betas": [0.9, 0.99]}})

Each record is what the suite's JSON holds per run (``extra_info["runs"]``): per-field
relative L2 (final, best, at the lowest loss), the tail statistic of L2_avg
(:func:`pinn.analysis.statistics.tail`), steps/s, the optimizer as run (class, version, arguments),
the reference file and its sha256. ``pinn.analysis.claims.summarise(records)`` gives the verdicts.
"""

from __future__ import annotations

import dataclasses

import torch

from pinn.optim.optimizers import split_method
from pinn.problems import get_problem
from pinn.training.trainer import TrainConfig, json_safe, resolve_device, train_batch
from reference import store
from reference.cases import CASES, get_case

from .profiles import Profile, get_profile

__all__ = ["train_benchmark", "run", "with_methods"]


def _config(profile: Profile, case, coupling, optimizer, balancing, seed, device):
    budget = profile.budgets[case]
    return TrainConfig(
        case=case, case_params={CASES[case].coupling: coupling}, optimizer=optimizer,
        optimizer_args=profile.optimizer_args.get(optimizer, {}), lr=budget.lr,
        balancing=balancing, balancing_args=profile.balancing_args.get(balancing, {}),
        balance_every=budget.balance_every, steps=budget.steps, eval_every=budget.eval_every,
        width=budget.width, depth=budget.depth, n_points=budget.n_points,
        dtype=profile.dtype, device=device, seed=seed, progress=False,
    )


def train_benchmark(profile: Profile, batch, device: str = "cpu", reference_root="data",
                    timer=None):
    """Train one batch ``(case, optimizer, balancing, [(coupling, seed), ...])`` of
    ``profile``; returns (results, records). ``timer(function, args, kwargs)`` runs the
    training (the harness passes pytest-benchmark's; default: a plain call). 2D flows are
    scored against the stored DOLFINx references, read (and their hashes checked) before
    training starts."""
    case_name, optimizer, balancing, runs = batch
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
        problem.reference()
    timer = timer or (lambda function, args, kwargs: function(*args, **kwargs))
    results = timer(train_batch, (configs,), {"problems": problems})
    records = []
    for (coupling, seed), case, result in zip(runs, cases, results):
        path = store.reference_path(case, reference_root) if stored else None
        records.append(json_safe({
            "case": case_name, "coupling": CASES[case_name].coupling,
            "coupling_value": coupling, "optimizer": optimizer, "balancing": balancing,
            "method": f"{optimizer}+{balancing}", "seed": seed, "profile": profile.name,
            "status": result.status, "steps": result.step,
            "steps_per_second": result.steps_per_second, "device": result.device,
            "n_parameters": result.n_parameters, "l2_final": result.final["l2"],
            "l2_best": result.best["l2"], "l2_lowest_loss": result.lowest_loss["l2"],
            "l2_tail": result.tail, "L2_avg": result.final["l2"]["avg"],
            "optimizer_class": result.optimizer, "balancing_args": configs[0].balancing_args,
            "reference": path.name if path else "exact",
            "reference_sha256": store.sha256(path) if path else None,
        }))
    return results, records


def with_methods(profile: Profile, methods=None, optimizer_args=None, balancing_args=None,
                 cases=None, seeds=None) -> Profile:
    """``profile`` with other methods ("OPTIMIZER+BALANCING" strings), their arguments
    ({name: {keyword: value}}), a subset of its cases and other seeds (for every case).
    Every config is built here, so a bad method or argument fails before anything trains."""
    changes = {}
    if methods is not None:
        methods = [methods] if isinstance(methods, str) else list(methods)
        changes["methods"] = tuple(split_method(method) for method in methods)
    if optimizer_args is not None:
        changes["optimizer_args"] = dict(optimizer_args)
    if balancing_args is not None:
        changes["balancing_args"] = dict(balancing_args)
    if cases is not None:
        cases = [cases] if isinstance(cases, str) else list(cases)
        unknown = set(cases) - set(profile.couplings)
        if unknown:
            raise ValueError(f"unknown case(s) {sorted(unknown)} for profile {profile.name!r}; "
                             f"valid cases: {sorted(profile.couplings)}")
        changes["couplings"] = {case: profile.couplings[case] for case in cases}
        changes["deferred"] = {**profile.deferred, **{
            case: "not selected" for case in profile.couplings if case not in cases}}
    if seeds is not None:   # for every system, in place of the budgets' own
        changes["seeds"] = tuple(seeds)
        changes["budgets"] = {case: dataclasses.replace(budget, seeds=None)
                              for case, budget in profile.budgets.items()}
    profile = dataclasses.replace(profile, **changes)
    for case, optimizer, balancing, runs in profile.batches():
        for coupling, seed in runs:
            _config(profile, case, coupling, optimizer, balancing, seed, "cpu")
    return profile


def run(methods="soap+gn", cases=None, profile: str | Profile = "smoke", *, device="cpu",
        seeds=None, optimizer_args=None, balancing_args=None, reference_root="data") -> list:
    """The benchmark of ``methods`` on ``cases`` (default: the profile's) at ``profile``'s
    budget; returns one record per run, as in the suite's JSON (module docstring)."""
    from pinn.training.threads import apply_thread_policy

    if isinstance(profile, str):
        profile = get_profile(profile)
    profile = with_methods(profile, methods, optimizer_args, balancing_args, cases, seeds)
    resolve_device(device)
    apply_thread_policy()
    records = []
    for batch in profile.batches():
        records += train_benchmark(profile, batch, device, reference_root)[1]
    return records
