"""The configuration of one training run, as a validated dataclass.

One :class:`TrainConfig` says everything a run needs (case, networks, optimizer, loss
balancing, steps, evaluation, device, output); ``config.json`` in a run directory is
its :meth:`TrainConfig.to_dict`. Invalid values raise ``ValueError`` naming the field and
the valid choices when the config is built, before any model or problem exists.

>>> TrainConfig(case="thermo", case_params={"gamma": 10}, steps=2000).optimizer
'soap'
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .schedules import SCHEDULES

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "DTYPES", "DEVICES", "BALANCING", "SPLITS",
           "OUTPUT_SCALES", "RESUMABLE_CHANGES"]

OPTIMIZERS = ("adam", "soap")    # or an import path "package.module:Class" (pinn.optim.optimizers)
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
BALANCING = ("none", "gn", "lra")  # or the import path of a pinn.optim.balancing.Balancer subclass
SPLITS = ("per-field", "paper", "shared")   # networks per field (pinn.training.networks.build_model)
OUTPUT_SCALES = ("none", "case")   # networks learn fields as they are, or divided by case.field_scales

# Fields a resumed run may change: they do not alter the trajectory of the parameters
# (device, compile: the same computation on other hardware or in fused kernels, which
# round differently; steps: run longer).
RESUMABLE_CHANGES = ("steps", "device", "compile", "progress", "checkpoint_every", "run_dir")


def _int(name, value, minimum, *, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive_float(name, value, *, zero_ok=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def _arguments(name, value):
    """Keyword arguments for a class: a dict with string keys, JSON-able (config.json)."""
    import json

    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{name} must be a dict of keyword arguments, got {value!r}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must hold JSON values (numbers, strings, lists, dicts): "
                         f"{error}") from None


def _choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {list(valid)}")
    return value


@dataclass
class TrainConfig:
    """One training run.

    case, case_params     the benchmark case (:func:`reference.cases.get_case`) and its
                          parameters, e.g. ``{"gamma": 10}``
    optimizer             "adam" (PyTorch defaults), "soap" (:class:`pinn.optim.soap.SOAP`) or the
                          import path of any torch.optim.Optimizer class, e.g.
                          "pytorch_optimizer:Lion" (:mod:`pinn.optim.optimizers`)
    optimizer_args        keyword arguments of an import-path optimizer (it gets lr and
                          these only; betas, eps, weight_decay below are the built-ins')
    lr                    learning rate; None = the case's published one (:mod:`pinn.training.recipe`)
    betas                 (beta1, beta2); None = the optimizer's recipe default
                          (Adam (0.9, 0.999), SOAP (0.99, 0.999))
    eps, weight_decay     optimizer epsilon and decoupled (SOAP) / L2 (Adam) weight decay
    precondition_frequency, shampoo_beta   SOAP only (shampoo_beta < 0: use beta2)
    schedule              learning-rate schedule (:mod:`pinn.training.schedules`): "constant" or
                          "warmup-exp" (linear warmup over warmup_steps, then x decay_rate
                          every decay_every steps)
    balancing, balance_every   loss balancing (:mod:`pinn.optim.balancing`): "none", "gn", "lra" or
                          the import path of a Balancer subclass; and its period
    balancing_args        keyword arguments of the balancer (e.g. {"momentum": 0.5} for gn)
    steps                 optimizer steps; None = the case's published number
    eval_every            evaluate (relative L2 on the evaluation grid, unweighted loss,
                          divergence check, history row) every this many steps and at the end
    width, depth, split   networks (:func:`pinn.training.networks.build_model`); None = recipe
    output_scales         "none", or "case": each network learns its field divided by the
                          case's known scale (``case.field_scales``; EOF: u, v ~ U, p ~ mu U)
    n_points              interior collocation points; None = recipe
    dtype, device         "float32" | "float64"; "auto" | "cpu" | "cuda" (auto: cuda if present)
    seed                  seeds the network initialisation and the collocation points
    run_dir               where config, history, checkpoint, metrics and plots go (optional)
    checkpoint_every      write a checkpoint at the multiples of this many steps and at the
                          last step (0: only at the last step); only with a run_dir
    compile               compile the loss and its backward with torch.compile (fused
                          kernels: 1.3-2.1x per step on the CPU, one compilation of ~15 s
                          or more per process; pays off for long runs, docs/training.md)
    progress              show a tqdm progress bar
    """

    case: str = "thermo"
    case_params: dict = field(default_factory=dict)
    optimizer: str = "soap"
    optimizer_args: dict = field(default_factory=dict)
    lr: float | None = None
    betas: tuple | None = None
    eps: float = 1e-8
    weight_decay: float = 0.0
    precondition_frequency: int = 2
    shampoo_beta: float = -1.0
    schedule: str = "constant"
    warmup_steps: int = 1000
    decay_rate: float = 0.9
    decay_every: int = 2000
    balancing: str = "gn"
    balance_every: int = 1000
    balancing_args: dict = field(default_factory=dict)
    steps: int | None = None
    eval_every: int = 100
    width: int | None = None
    depth: int | None = None
    split: str = "per-field"
    output_scales: str = "none"
    n_points: int | None = None
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 42
    run_dir: str | None = None
    checkpoint_every: int = 1000
    compile: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.steps is None or self.lr is None:   # the case's published values
            from .recipe import recipe

            published = recipe(self.case) if isinstance(self.case, str) else None
            if published is not None:
                self.steps = published.steps if self.steps is None else self.steps
                self.lr = published.lr if self.lr is None else self.lr
        self.validate()

    def validate(self) -> "TrainConfig":
        if not isinstance(self.case, str):
            raise ValueError(f"case must be a case name, got {self.case!r}")
        if not isinstance(self.case_params, dict):
            raise ValueError(f"case_params must be a dict, got {self.case_params!r}")
        self.lr = _positive_float("lr", self.lr)
        self._check_optimizer()
        if self.betas is not None:
            try:
                betas = tuple(float(b) for b in self.betas)
            except (TypeError, ValueError):
                raise ValueError(
                    f"betas must be two numbers in [0, 1), got {self.betas!r}") from None
            if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
                raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
            self.betas = betas
        self.eps = _positive_float("eps", self.eps)
        self.weight_decay = _positive_float("weight_decay", self.weight_decay, zero_ok=True)
        _int("precondition_frequency", self.precondition_frequency, 1)
        try:
            self.shampoo_beta = float(self.shampoo_beta)
        except (TypeError, ValueError):
            raise ValueError(f"shampoo_beta must be a number, got {self.shampoo_beta!r}") from None
        if self.shampoo_beta >= 1.0:
            raise ValueError(
                f"shampoo_beta must be < 1 (negative: use beta2), got {self.shampoo_beta}")
        _choice("schedule", self.schedule, SCHEDULES)
        _int("warmup_steps", self.warmup_steps, 0)
        self.decay_rate = _positive_float("decay_rate", self.decay_rate)
        if self.decay_rate > 1:
            raise ValueError(f"decay_rate must be in (0, 1], got {self.decay_rate}")
        _int("decay_every", self.decay_every, 1)
        _int("balance_every", self.balance_every, 1)
        self._check_balancing()
        _int("steps", self.steps, 1)
        _int("eval_every", self.eval_every, 1)
        _int("width", self.width, 1, optional=True)
        _int("depth", self.depth, 1, optional=True)
        _choice("split", self.split, SPLITS)
        _choice("output_scales", self.output_scales, OUTPUT_SCALES)
        _int("n_points", self.n_points, 2, optional=True)
        _choice("dtype", self.dtype, DTYPES)
        _choice("device", self.device, DEVICES)
        _int("seed", self.seed, 0)
        if self.run_dir is not None and not isinstance(self.run_dir, str):
            self.run_dir = str(self.run_dir)
        _int("checkpoint_every", self.checkpoint_every, 0)
        for name in ("compile", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        return self

    def _check_optimizer(self) -> None:
        from ..optim.optimizers import check_optimizer, is_import_path

        _arguments("optimizer_args", self.optimizer_args)
        if not is_import_path(self.optimizer):
            _choice("optimizer", self.optimizer, OPTIMIZERS + ("package.module:Class",))
            if self.optimizer_args:
                raise ValueError(f"optimizer_args are for an import-path optimizer; {self.optimizer} "
                                 "is set by betas, eps, weight_decay (and SOAP's fields)")
            return
        if "lr" in self.optimizer_args:
            raise ValueError("the learning rate is lr (the schedule scales it), not an entry "
                             "of optimizer_args")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        ignored = [name for name in ("betas", "eps", "weight_decay")
                   if getattr(self, name) != defaults[name]]
        if ignored:
            raise ValueError(f"{ignored} are options of the built-in optimizers; for "
                             f"{self.optimizer} put them in optimizer_args")
        check_optimizer(self.optimizer, self.optimizer_args, self.lr)

    def _check_balancing(self) -> None:
        from ..optim.balancing import make_balancer
        from ..optim.optimizers import is_import_path

        _arguments("balancing_args", self.balancing_args)
        if not is_import_path(self.balancing):
            _choice("balancing", self.balancing, BALANCING + ("package.module:Class",))
        # built once on two dummy terms: a bad class or argument fails here
        make_balancer(self.balancing, ("pde", "bc"), self.balance_every, residuals=("pde",),
                      **self.balancing_args)

    def to_dict(self) -> dict:
        """Plain JSON-able values (tuples become lists)."""
        data = dataclasses.asdict(self)
        if data["betas"] is not None:
            data["betas"] = list(data["betas"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**data)

    @classmethod
    def from_stored(cls, data: dict, source) -> "TrainConfig":
        """A config read from the file ``source`` (a run folder's config.json or checkpoint):
        as :meth:`from_dict`, but the import paths it names resolve only in modules already
        imported (:func:`pinn.optim.optimizers.reading_stored`: a file makes nothing run)."""
        from ..optim.optimizers import reading_stored

        with reading_stored(source):
            return cls.from_dict(data)

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def trajectory_differences(self, other: "TrainConfig") -> dict:
        """{field: (self, other)} for fields that differ and would change the trajectory
        (everything but :data:`RESUMABLE_CHANGES`)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {key: (mine[key], theirs[key]) for key in mine
                if key not in RESUMABLE_CHANGES and mine[key] != theirs[key]}


# --- the command-line form (used by ``python -m pinn train``) -----------------------------
def _param(text: str):
    """``NAME=VALUE`` of ``--param``: VALUE as a number when it reads as one, "none" as None."""
    import argparse

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if value.lower() == "none":
        return name, None
    try:
        return name, float(value)
    except ValueError:
        return name, value


def keyword_arguments(text: str) -> dict:
    """``--optimizer-args`` / ``--balancing-args``: a JSON object, or ``NAME=VALUE`` with
    VALUE read as JSON when it reads as JSON (numbers, lists, true/false) and as text else."""
    import argparse
    import json

    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"not a JSON object: {text!r} ({error})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
        return value
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected a JSON object or NAME=VALUE, got {text!r}")
    try:
        return {name: json.loads(value)}
    except json.JSONDecodeError:
        return {name: value}


def add_arguments(parser) -> None:
    """The options of ``python -m pinn train``; every one defaults to "not given", so that
    a resumed run changes only what the command line names. The defaults the help states
    are read from :class:`TrainConfig` (None: the case's published recipe)."""
    import argparse

    from reference.cases import CASES

    s = argparse.SUPPRESS
    add = parser.add_argument
    add("--case", choices=sorted(CASES), help="benchmark case")
    add("--coupling", type=float,
        help="value of the case's coupling parameter (thermo: gamma, npp: eps, ...)")
    add("--param", type=_param, action="append", metavar="NAME=VALUE",
        help="another case parameter, e.g. --param zeta=2 (repeatable)")
    add("--optimizer", metavar="NAME",
        help="adam, soap or an import path package.module:Class of a torch.optim optimizer, "
             "e.g. pytorch_optimizer:Lion")
    add("--optimizer-args", type=keyword_arguments, action="append", metavar="ARGS",
        help="keyword arguments of an import-path optimizer: a JSON object "
             "'{\"betas\": [0.9, 0.99]}' or NAME=VALUE (repeatable)")
    add("--lr", type=float, help="learning rate")
    add("--betas", type=float, nargs=2, metavar=("BETA1", "BETA2"),
        help="adam, soap; default adam 0.9 0.999, soap 0.99 0.999")
    add("--optimizer-eps", dest="eps", type=float, help="adam, soap: epsilon")
    # "--eps" would read as the Debye ratio of npp / eof-straight: refused in from_args
    add("--eps", dest="ambiguous_eps", help=s)
    add("--weight-decay", type=float, help="adam, soap")
    add("--precondition-frequency", type=int, help="soap")
    add("--shampoo-beta", type=float, help="soap; < 0 uses beta2")
    add("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    add("--warmup-steps", type=int, help="warmup-exp: warmup length")
    add("--decay-rate", type=float, help="warmup-exp: factor per decay")
    add("--decay-every", type=int, help="warmup-exp: decay period")
    add("--balancing", metavar="NAME",
        help="loss balancing: none, gn, lra or an import path package.module:Class of a "
             "pinn.optim.balancing.Balancer subclass")
    add("--balancing-args", type=keyword_arguments, action="append", metavar="ARGS",
        help="keyword arguments of the balancer, as --optimizer-args")
    add("--balance-every", type=int, help="balancing period in steps")
    add("--steps", type=int, help="optimizer steps")
    add("--eval-every", type=int, help="evaluation period")
    add("--width", type=int, help="hidden width")
    add("--depth", type=int, help="hidden layers")
    add("--split", choices=SPLITS, help="networks per field")
    add("--output-scales", choices=OUTPUT_SCALES,
        help="case: networks learn each field divided by its known scale")
    add("--n-points", type=int, help="interior collocation points")
    add("--dtype", choices=DTYPES)
    add("--device", choices=DEVICES, help="auto: cuda if available")
    add("--seed", type=int)
    add("--run-dir", help="folder for config, history, checkpoint, metrics, plots")
    add("--checkpoint-every", type=int, help="0: only at the end")
    add("--compile", action="store_true",
        help="compile the loss and its backward (torch.compile; for long runs)")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}
    recipe_fields = ("lr", "steps", "width", "depth", "n_points")   # None: pinn/training/recipe.py
    for action in parser._actions:   # "not given", and the help states the default
        if action.dest in names or action.dest in ("coupling", "param", "ambiguous_eps"):
            action.default = s
        value = defaults.get(action.dest)
        if action.dest in recipe_fields:
            value = "the case's published one (pinn/training/recipe.py)"
        if value is not None and not isinstance(value, bool):
            action.help = f"{action.help + '; ' if action.help else ''}default {value}"


def from_args(args, base: TrainConfig | None = None) -> TrainConfig:
    """A config from parsed :func:`add_arguments` options, on top of ``base`` (default:
    the defaults). Raises ``ValueError`` for bad values."""
    from reference.cases import CASES, get_case

    given = vars(args)
    # a new run starts from the defaults of its case (its published steps and rate)
    data = (base or TrainConfig(case=given.get("case", TrainConfig.case))).to_dict()
    if "ambiguous_eps" in given:
        raise ValueError("--eps is ambiguous: the Debye ratio of npp / eof-straight is "
                         "--coupling (or --param eps=VALUE), the optimizer epsilon is "
                         "--optimizer-eps")
    changed_case = "case" in given and given["case"] != data["case"]
    data.update({f.name: given[f.name] for f in dataclasses.fields(TrainConfig)
                 if f.name in given and f.name not in ("case_params", "optimizer_args",
                                                       "balancing_args")})
    for name in ("optimizer_args", "balancing_args"):   # repeated options add up
        if name in given:
            data[name] = {key: value for part in given[name] for key, value in part.items()}
    params = {} if changed_case else dict(data["case_params"])
    params.update(dict(given.get("param", [])))
    if "coupling" in given:
        params[CASES[data["case"]].coupling] = given["coupling"]
    get_case(data["case"], **params)  # a bad parameter fails here, naming the valid ones
    data["case_params"] = params
    return TrainConfig.from_dict(data)
