"""One benchmark per batch: the runs of one system and method (every coupling and seed of the
profile) train together, and every field of every run is scored against its reference
(:func:`suite.runner.train_benchmark`).

Each batch trains once (``benchmark.pedantic``, one round, one iteration: the time is the
batch's); the accuracy goes into ``extra_info["runs"]``, one record per run.
"""

import math

from .runner import train_benchmark


def test_train(benchmark, batch_spec, profile, device, reference_root, record):
    case, optimizer, balancing, _ = batch_spec
    benchmark.group = case

    def timer(function, args, kwargs):
        return benchmark.pedantic(function, args=args, kwargs=kwargs, rounds=1, iterations=1,
                                  warmup_rounds=0)

    results, records = train_benchmark(profile, batch_spec, device, reference_root, timer)
    for info in records:
        record(info)
    benchmark.extra_info.update(case=case, method=f"{optimizer}+{balancing}", runs=records)
    for info, result in zip(records, results):
        assert result.status == "completed", result.message
        assert math.isfinite(info["L2_avg"])
