"""The training core: one run's config and recipe, the networks (stacked over runs), the
engine, checkpoints, the schedule, the thread policy and sweeps of many runs."""
