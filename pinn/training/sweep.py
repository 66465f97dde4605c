"""Sweeps: many training runs from one TOML spec, batched, resumable, sharded over MPI ranks.

A spec (``sweeps/*.toml``; read with :mod:`tomllib`) names the grid and the budget::

    output = "runs/cpu"                 # folder of the sweep (relative to the spec file)
    methods = ["soap+gn", "adam+gn"]    # optimizer+balancing pairs; either part may be
                                        # an import path, "pytorch_optimizer:Lion+gn"
    schedules = ["constant"]            # learning-rate schedules (pinn.training.schedules)
    seeds = [0, 1, 2]
    batch_size = 16                     # at most this many runs trained together

    [budget]                            # TrainConfig fields shared by every run
    steps = 2000
    lr = 1e-3
    width = 64
    depth = 4

    [optimizer_args."pytorch_optimizer:Lion"]   # keyword arguments of an import-path
    betas = [0.9, 0.99]                          # optimizer (balancing_args: of a balancer)

    [systems.thermo]                    # one table per case: its coupling values, and
    couplings = [1, 5, 10, 50]          # TrainConfig fields overriding the budget
    [systems.npp]
    couplings = [0.5, 0.1]
    lr = 3e-4

The runs are the product systems x couplings x methods x schedules x seeds. Each gets the id
``<case>-<coupling><value>-<optimizer>-<balancing>-<schedule>-s<seed>`` (an import path by its
class name in lower case: ``lion``) and the run directory
``<output>/runs/<id>`` with the files of a single run (config.json, history.csv,
checkpoint.pt, metrics.json). Runs that differ only in seed and coupling are trained as one
batch (:mod:`pinn.training.trainer`), at most ``batch_size`` at a time.

Resume: a run whose ``metrics.json`` exists is finished and skipped (its config must equal
the spec's, else the sweep stops with an error naming it); a run with only a checkpoint
continues from it (runs are batched with others at the same checkpoint step), and so does a
finished run when the spec now asks for more steps; any other run starts afresh. Nothing is
deleted: a folder that cannot be resumed (no checkpoint, or one that cannot be read) is
moved aside to ``<output>/broken/<id>-<time>`` with a message. Rerunning the same command
after a kill therefore finishes the sweep without retraining finished runs.

One writer per run folder (:func:`pinn.training.checkpoint.writer_lock`): a sweep takes the
lock of each of its runs before it looks at the run's files, and holds the locks of the
runs it trains until it ends. A run another process holds (another sweep on the same
output, a ``pinn train``) is skipped with a message and listed as ``busy`` (or with its
metrics, when it has finished by the time the index is written); it is never moved, resumed
or trained twice. The index files are replaced atomically: the last sweep to end writes it.

Sharding: under ``mpirun -n K`` (detected from the launcher's environment; mpi4py is imported
only then) rank k takes runs k, k + K, k + 2K, ... of the sorted run list, uses GPU
``local rank % n_gpus`` when GPUs are present (its rank on its own node, from the
launcher's environment: one GPU per rank on every node), and rank 0 gathers every rank's
index rows and writes ``index.json`` and ``index.csv`` (run id, status, final/best/
lowest-loss L2_avg, config).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import sys
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from reference.cases import CASES, get_case
from reference.store import atomic_write, full_disk_message

from .config import TrainConfig
from ..optim.optimizers import label, split_method

__all__ = ["SweepSpec", "Run", "load_spec", "plan", "run_sweep", "batches", "mpi_world",
           "index_finished"]

INDEX_JSON = "index.json"
INDEX_CSV = "index.csv"
SPEC_KEYS = {"output", "methods", "schedules", "seeds", "batch_size", "budget", "systems",
             "optimizer_args", "balancing_args"}
CSV_COLUMNS = ["id", "status", "case", "coupling", "value", "optimizer", "balancing",
               "schedule", "seed", "step", "final_l2_avg", "best_l2_avg", "lowest_loss_l2_avg",
               "tail_l2_geomean", "tail_l2_spread",
               "train_seconds", "run_dir"]


@dataclass
class SweepSpec:
    """A parsed spec (see the module docstring)."""

    output: Path
    systems: dict  # case -> {"couplings": [...], **config overrides}
    methods: list
    schedules: list
    seeds: list
    budget: dict
    batch_size: int = 16
    overrides: dict = field(default_factory=dict)  # from the command line: beat every table
    optimizer_args: dict = field(default_factory=dict)   # optimizer -> its keyword arguments
    balancing_args: dict = field(default_factory=dict)   # balancing -> its keyword arguments


@dataclass
class Run:
    id: str
    config: TrainConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)


def _list(spec: dict, key: str, default=None) -> list:
    value = spec.get(key, default)
    if not isinstance(value, list) or not value:
        raise ValueError(f"spec: {key} must be a non-empty list, got {value!r}")
    return value


def load_spec(path, **overrides) -> SweepSpec:
    """Read a TOML spec; ``overrides`` (output, systems, methods, schedules, seeds,
    batch_size, and budget fields as ``budget={...}``) replace what the file says (budget
    fields also beat a system table's own value)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot read sweep spec {path}: {error}") from None
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise ValueError(f"spec {path}: unknown key(s) {sorted(unknown)}; valid: {sorted(SPEC_KEYS)}")
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ValueError(f"spec {path}: needs at least one [systems.<case>] table")
    budget = dict(data.get("budget", {}))
    forced = dict(overrides.pop("budget", None) or {})
    if overrides.get("systems"):
        missing = set(overrides["systems"]) - set(systems)
        if missing:
            raise ValueError(f"systems {sorted(missing)} are not in the spec ({sorted(systems)})")
        systems = {name: systems[name] for name in overrides.pop("systems")}
    output = overrides.pop("output", None) or data.get("output")
    if not output:
        raise ValueError(f"spec {path}: needs an output folder (output = \"...\")")
    output = Path(output)
    if not output.is_absolute() and "output" in data and output == Path(data["output"]):
        output = path.parent / output
    values = {key: overrides.get(key) or data.get(key) for key in ("methods", "schedules", "seeds")}
    spec = SweepSpec(output=output, systems=systems,
                     methods=_list(values, "methods"),
                     schedules=_list({"schedules": values["schedules"] or ["constant"]}, "schedules"),
                     seeds=_list(values, "seeds"), budget=budget,
                     batch_size=overrides.get("batch_size") or data.get("batch_size", 16),
                     overrides=forced, optimizer_args=dict(data.get("optimizer_args", {})),
                     balancing_args=dict(data.get("balancing_args", {})))
    pairs = [split_method(method) for method in spec.methods]
    for key, used in (("optimizer_args", {optimizer for optimizer, _ in pairs}),
                      ("balancing_args", {balancing for _, balancing in pairs})):
        unused = set(getattr(spec, key)) - used
        if unused:
            raise ValueError(f"spec {path}: [{key}] names {sorted(unused)}, which no method uses")
    if isinstance(spec.batch_size, bool) or not isinstance(spec.batch_size, int) or spec.batch_size < 1:
        raise ValueError(f"spec: batch_size must be an integer >= 1, got {spec.batch_size!r}")
    plan(spec)  # every config is validated here, before anything runs
    return spec


def plan(spec: SweepSpec) -> list[Run]:
    """Every run of the spec, sorted by id (the order shards are dealt from); every run's
    config, case parameters and device are checked here, before anything trains."""
    from .trainer import resolve_device

    runs = []
    for case, table in spec.systems.items():
        if case not in CASES:
            raise ValueError(f"spec: unknown system {case!r}; valid: {sorted(CASES)}")
        if not isinstance(table, dict):
            raise ValueError(f"spec: [systems.{case}] must be a table")
        table = dict(table)
        couplings = _list(table, "couplings")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in couplings):
            raise ValueError(f"spec: [systems.{case}] couplings must be numbers, got {couplings}")
        table.pop("couplings")
        fixed_params = table.pop("case_params", {})  # other case parameters, e.g. zeta
        coupling = CASES[case].coupling
        for value, method, schedule, seed in itertools.product(
                couplings, spec.methods, spec.schedules, spec.seeds):
            optimizer, balancing = split_method(method)
            params = {**fixed_params, coupling: value}
            run_id = (f"{case}-{coupling}{value:g}-{label(optimizer)}-{label(balancing)}-"
                      f"{schedule}-s{seed}")
            fields = {**spec.budget, **table, **spec.overrides, "case": case, "case_params": params,
                      "optimizer": optimizer, "balancing": balancing, "schedule": schedule,
                      "optimizer_args": spec.optimizer_args.get(optimizer, {}),
                      "balancing_args": spec.balancing_args.get(balancing, {}),
                      "seed": seed, "run_dir": str(spec.output / "runs" / run_id)}
            try:
                config = TrainConfig.from_dict(fields)
                get_case(case, **params)         # e.g. a negative coupling
                resolve_device(config.device)    # e.g. cuda on a machine without it
            except (ValueError, TypeError) as error:
                raise ValueError(f"spec: run {run_id}: {error}") from None
            runs.append(Run(run_id, config))
    runs.sort(key=lambda run: run.id)
    ids = [run.id for run in runs]
    if len(set(ids)) != len(ids):
        raise ValueError("spec: the grid repeats a run (duplicate couplings, seeds or methods)")
    return runs


# --- state of a run on disk -----------------------------------------------------------
def _finished(run: Run) -> dict | None:
    """The run's metrics when it is finished; an error if they belong to another config.
    A completed run with fewer steps than the spec asks for is not finished: it continues
    from its checkpoint (``steps`` is the one budget field a finished run may change)."""
    from .trainer import CONFIG, METRICS

    metrics = run.run_dir / METRICS
    if not metrics.is_file():
        return None
    stored = TrainConfig.from_stored(json.loads((run.run_dir / CONFIG).read_text()),
                                     run.run_dir / CONFIG)
    changed = run.config.trajectory_differences(stored)
    if changed:
        raise ValueError(f"{run.run_dir} holds a finished run with another config "
                         f"({sorted(changed)}); move it away or use another output folder")
    metrics = json.loads(metrics.read_text())
    if metrics.get("status") == "completed" and (metrics.get("step") or 0) < run.config.steps:
        return None
    return metrics


def _checkpoint_step(run: Run, log=print) -> int:
    """The step of the run's checkpoint; 0 when the run starts afresh, after moving the
    files of a folder that cannot be resumed aside (never deleting them: they may hold a
    finished run's metrics). Called with the run's lock held, which stays in the folder."""
    from . import checkpoint as ckpt
    from .trainer import CHECKPOINT

    path = run.run_dir / CHECKPOINT
    files = ([p for p in run.run_dir.iterdir() if p.name != ckpt.LOCK]
             if run.run_dir.exists() else [])
    if not files:
        return 0
    reason = "it holds no checkpoint"
    if path.is_file():
        try:
            return int(ckpt.load(path)["step"])
        except ckpt.CheckpointError as error:
            reason = f"its checkpoint cannot be read ({error})"
    broken = run.run_dir.parent.parent / "broken" / f"{run.id}-{time.strftime('%Y%m%d-%H%M%S')}"
    broken.mkdir(parents=True)
    for file in files:
        shutil.move(str(file), str(broken / file.name))
    log(f"{run.id}: {reason}; moved to {broken}, the run starts afresh")
    return 0


def batches(runs: list[Run], batch_size: int, log=print) -> list[tuple[int, list[Run]]]:
    """Groups of compatible runs (same batch key and checkpoint step), at most batch_size
    each: [(start step, runs)]."""
    from .trainer import batch_key

    groups: dict = {}
    for run in runs:
        groups.setdefault((batch_key(run.config), _checkpoint_step(run, log)), []).append(run)
    out = []
    for (_, step), members in groups.items():
        for i in range(0, len(members), batch_size):
            out.append((step, members[i:i + batch_size]))
    return out


def _row(run: Run, metrics: dict | None, status: str | None = None, message: str = "") -> dict:
    config = run.config
    coupling = CASES[config.case].coupling

    def avg(key):
        value = (metrics or {}).get(key) or {}
        return (value.get("l2") or {}).get("avg")

    return {"id": run.id, "status": status or (metrics or {}).get("status", "pending"),
            "case": config.case, "coupling": coupling,
            "value": config.case_params[coupling], "optimizer": config.optimizer,
            "balancing": config.balancing, "schedule": config.schedule, "seed": config.seed,
            "step": (metrics or {}).get("step"), "final_l2_avg": avg("final"),
            "best_l2_avg": avg("best"), "lowest_loss_l2_avg": avg("lowest_loss"),
            "tail_l2_geomean": ((metrics or {}).get("tail") or {}).get("geomean"),
            "tail_l2_spread": ((metrics or {}).get("tail") or {}).get("spread"),
            "train_seconds": (metrics or {}).get("train_seconds"), "run_dir": str(run.run_dir),
            "message": message or (metrics or {}).get("message")
            or "; ".join((metrics or {}).get("warnings") or []),
            "config": config.to_dict()}


def index_finished(spec: SweepSpec) -> list[dict]:
    """Write the index of the runs finished so far (the others listed as pending), training
    nothing and touching no run folder: a sweep's results while it is still running."""
    rows = [_row(run, _finished(run)) for run in plan(spec)]
    write_index(spec.output, rows)
    return rows


def write_index(output: Path, rows: list[dict]) -> None:
    """index.json (every row, with its config) and index.csv (the scalar columns), each
    written atomically (another sweep on the same folder may write them at the same time:
    the last one written stands, whole)."""
    rows = sorted(rows, key=lambda row: row["id"])
    output.mkdir(parents=True, exist_ok=True)

    def write_csv(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    text = json.dumps(rows, indent=1) + "\n"
    atomic_write(output / INDEX_CSV, write_csv)
    atomic_write(output / INDEX_JSON, lambda tmp: tmp.write_text(text))


# --- MPI ------------------------------------------------------------------------------
_MPI_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def mpi_world():
    """(communicator, rank, size): the MPI world when launched by mpirun with more than one
    process, else (None, 0, 1) without importing mpi4py. Launched by mpirun without mpi4py,
    a ValueError (each process would otherwise train every run)."""
    if not any(int(os.environ.get(name, "1") or 1) > 1 for name in _MPI_SIZE_VARIABLES):
        return None, 0, 1
    try:
        from mpi4py import MPI
    except ImportError:
        raise ValueError("started by mpirun with several processes, but mpi4py is not "
                         "installed here: install it (pip install mpi4py, built against "
                         "this mpirun's MPI) or run the sweep without mpirun") from None

    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


# The rank of this process among the ranks on its own node, as launchers export it (Open
# MPI, MPICH / Intel MPI, PMIx, Slurm); without one, the world rank stands in (one node).
_LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMIX_LOCAL_RANK",
                         "SLURM_LOCALID")


def local_rank(rank: int) -> int:
    """This process's rank on its node (the launcher's variable), else ``rank``."""
    for name in _LOCAL_RANK_VARIABLES:
        text = os.environ.get(name, "").strip()
        if text.isdigit():
            return int(text)
    return rank


def _pick_gpu(rank: int) -> int | None:
    """Use GPU ``local rank % GPUs on this node`` when there are GPUs; returns its index."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = local_rank(rank) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return index


# --- the sweep ------------------------------------------------------------------------
def run_sweep(spec: SweepSpec, *, progress: bool = True, log=print) -> list[dict]:
    """Run (this rank's share of) the sweep; returns the index rows (all ranks' on rank 0,
    this rank's elsewhere)."""
    from . import checkpoint as ckpt
    from .threads import apply_thread_policy
    from .trainer import train_batch

    apply_thread_policy()  # one thread per rank (pinn.training.threads)
    comm, rank, size = mpi_world()
    _pick_gpu(rank)
    runs = plan(spec)[rank::size]
    prefix = f"[rank {rank}/{size}] " if size > 1 else ""
    rows, pending, busy = [], [], []
    with ExitStack() as held:  # the locks of the runs to train, held until the sweep ends
        for run in runs:
            try:
                with ExitStack() as lock:
                    lock.enter_context(ckpt.writer_lock([run.run_dir]))
                    metrics = _finished(run)  # read under the lock: no one else writes it now
                    if metrics is None:
                        pending.append(run)
                        held.push(lock.pop_all())
                    else:
                        rows.append(_row(run, metrics))
            except ckpt.RunDirBusy as error:
                busy.append((run, str(error)))
                log(f"{prefix}{run.id}: skipped, {error}")
        log(f"{prefix}{len(runs)} runs: {len(rows)} finished, {len(pending)} to train"
            + (f", {len(busy)} held by another process" if busy else ""))
        for step, group in batches(pending, spec.batch_size, log=lambda text: log(prefix + text)):
            configs = [run.config.replace(progress=progress) for run in group]
            log(f"{prefix}batch of {len(group)} ({group[0].config.case}, "
                f"{group[0].config.optimizer}+{group[0].config.balancing}, "
                f"{group[0].config.schedule})" + (f" from step {step}" if step else ""))
            try:
                results = train_batch(configs, resume=step > 0)
            except Exception as error:  # one failing batch should not stop the sweep
                if full_disk_message(error):
                    raise   # a full disk does: every batch after it would fail the same way
                traceback.print_exc(file=sys.stderr)
                rows.extend(_row(run, None, "failed", f"{type(error).__name__}: {error}")
                            for run in group)
                continue
            for run, result in zip(group, results):
                for warning in result.warnings:
                    log(f"{prefix}{run.id}: {warning}")
                rows.append(_row(run, _json_metrics(result)))
    # a run another process held: its metrics if it has finished since, else "busy"
    rows.extend(_row(run, metrics) if (metrics := _finished(run)) else
                _row(run, None, "busy", message) for run, message in busy)
    if comm is not None:
        gathered = comm.gather(rows, root=0)
        if rank != 0:
            return rows
        rows = [row for part in gathered for row in part]
    write_index(spec.output, rows)
    return rows


def _json_metrics(result) -> dict:
    from .trainer import json_safe

    return json_safe(result.metrics())
