"""Optimizers: the built-in ones by name, any other by import path.

``TrainConfig.optimizer`` is ``"adam"``, ``"soap"`` or an import path ``"package.module:Class"``
(e.g. ``"torch.optim:LBFGS"``, ``"pytorch_optimizer:Lion"``, or a class of your own on
``sys.path``) with keyword arguments in ``TrainConfig.optimizer_args``.

What is imported. Importing a module runs it, so only a name the user gives (the command
line, a sweep spec, the suite's options, Python) is imported. A config read from a file
(a run folder's config.json or checkpoint: resume, sweeps, ``pinn ntk``) is read inside
:func:`reading_stored`, where an import path resolves only in a module already imported:
a file cannot make anything run. A run of an outside class resumes when the command line
names the class again (``--optimizer pytorch_optimizer:Lion``) or in the sweep of the spec
that names it.

The class is called
like a ``torch.optim.Optimizer``: ``Class(params, lr=config.lr, **optimizer_args)``; only
the learning rate comes from the config (the schedule scales it), everything else of the
class keeps its own default unless ``optimizer_args`` sets it.

How a class sees the parameters. The engine trains the networks of R runs stacked
(:mod:`pinn.training.stacked`: weight tensors (K, out, in), K = networks x runs). Adam and SOAP are
built for that (Adam is elementwise, :class:`pinn.optim.soap_batched.BatchedSOAP` factorises each
slice). A class from outside cannot be assumed to be: a matrix-aware method (Muon,
Shampoo) would treat a stack as one matrix, a closure-based one (L-BFGS) would treat all
runs as one vector and couple them through its line search. So it gets what it would get
from one plain model: :class:`PerRunOptimizer` builds one instance per run, over that
run's own tensors (each network's weight (out, in) and bias (out,)) as views into the
stacks: a step writes into the stack directly, and the run's rows of the stacked gradient
are its tensors' gradients. Nothing is copied.

Closures. ``step`` always receives a closure (torch's convention: it re-evaluates the loss
at the current parameters, back-propagates and returns the loss). Its first call returns
the loss already computed for this step without computing anything, so a class that calls
the closure once (torch's Adam does when given one) costs nothing extra; L-BFGS, which
calls it again after moving the parameters, gets a fresh loss and gradient each time. One
engine step is one ``step`` call of each run's optimizer: for L-BFGS that is up to
``max_iter`` (default 20) evaluations.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import inspect
import sys
from typing import Callable, Sequence

import torch

__all__ = ["is_import_path", "load_class", "reading_stored", "label", "split_method",
           "describe", "check_optimizer", "PerRunOptimizer", "TwoPhase"]

_STORED = contextvars.ContextVar("stored_config_source", default=None)


@contextlib.contextmanager
def reading_stored(source):
    """Within this block :func:`load_class` imports nothing: the config being read came from
    the file ``source``, and a module named in a file would run when imported."""
    token = _STORED.set(str(source))
    try:
        yield
    finally:
        _STORED.reset(token)


def is_import_path(name: str) -> bool:
    """``"package.module:Class"`` (as opposed to a built-in name)."""
    return isinstance(name, str) and ":" in name


def load_class(path: str, what: str = "optimizer", base: type | None = None) -> type:
    """The class at import path ``"package.module:Class"``, with an error saying what is
    wrong (the module cannot be imported, it has no such name, it is not a class, or not a
    subclass of ``base``). Inside :func:`reading_stored` the module must be imported
    already."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} {path!r}: an import path is 'package.module:Class'")
    source = _STORED.get()
    if source is not None and module_name not in sys.modules:
        raise ValueError(f"{what} {path!r} is named in {source}, and a module named in a file "
                         "is not imported (it would run); name it yourself to use it: "
                         f"`--{what} {path}` on the command line, or in the sweep spec")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{what} {path!r}: cannot import module {module_name!r} ({error}); "
                         "is it installed, or on PYTHONPATH?") from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {path!r}: module {module_name!r} has no {attribute!r}")
        obj = getattr(obj, part)
    if not inspect.isclass(obj):
        raise ValueError(f"{what} {path!r} is not a class but {type(obj).__name__}")
    if base is not None and not issubclass(obj, base):
        raise ValueError(f"{what} {path!r} is not a subclass of "
                         f"{base.__module__}.{base.__qualname__}")
    return obj


def label(name: str) -> str:
    """A short name for run ids and plots: the built-in name, or the class name in lower
    case (``"pytorch_optimizer:Lion"`` -> ``"lion"``)."""
    return name.rpartition(":")[2].rpartition(".")[2].lower() if is_import_path(name) else name


def split_method(text: str) -> tuple[str, str]:
    """A method ``"OPTIMIZER+BALANCING"`` (e.g. ``"soap+gn"``, ``"pytorch_optimizer:Lion+gn"``)
    as its two parts."""
    optimizer, sep, balancing = str(text).partition("+")
    if not sep or not optimizer or not balancing:
        raise ValueError(f"a method is OPTIMIZER+BALANCING (e.g. soap+gn), got {text!r}")
    return optimizer, balancing


@functools.lru_cache(maxsize=None)
def _version(module_name: str) -> str | None:
    """The installed version of the distribution that provides ``module_name``."""
    from importlib import metadata

    top = module_name.split(".")[0]
    for dist in metadata.packages_distributions().get(top, [top]):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return getattr(importlib.import_module(top), "__version__", None)


def describe(name: str, args: dict) -> dict:
    """What a run's record says of its optimizer: its name, the class (module and name as
    defined), the version of the package that provides it, and the arguments."""
    if is_import_path(name):
        cls = load_class(name)
    elif name == "adam":
        cls = torch.optim.Adam
    else:
        from .soap_batched import BatchedSOAP as cls
    return {"name": name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "version": _version(cls.__module__), "args": dict(args)}


def check_optimizer(name: str, args: dict, lr: float) -> None:
    """Fail now, with a clear message, if the optimizer ``name`` cannot be built with
    ``args``: it is built once on a small dummy model (a weight and a bias)."""
    cls = load_class(name, "optimizer", torch.optim.Optimizer)
    parameters = inspect.signature(cls.__init__).parameters
    named = [key for key, p in parameters.items() if key not in ("self", "params")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(args) - set(named))
    if unknown:  # a class whose __init__ takes **kwargs would silently ignore them
        raise ValueError(f"optimizer {name!r} has no parameter(s) {unknown}; its parameters: "
                         f"{named}")
    dummy = [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    try:
        cls(dummy, lr=lr, **args)
    except Exception as error:  # TypeError for unknown keywords, ValueError for bad values
        raise ValueError(f"optimizer {name!r} cannot be built with lr={lr} and arguments "
                         f"{args}: {type(error).__name__}: {error}") from None


class PerRunOptimizer:
    """One instance of an optimizer class per run, over views of the run's own parameter
    tensors in the stacks (module docstring).

    ``params``: the stacked parameters (:meth:`pinn.training.stacked.StackedNetworks.parameters`);
    ``places[r]``: where run r's tensors live in them, as (index into ``params``, row)
    pairs in the order of the run's own model's parameters
    (:meth:`pinn.training.stacked.StackedNetworks.run_parameters`). ``optimizers[r]`` is run r's
    instance; its ``state_dict()`` is keyed like the run's model, so a run resumes alone
    or in any batch.
    """

    def __init__(self, cls: type, params: Sequence[torch.Tensor],
                 places: Sequence[Sequence[tuple[int, int]]], **kwargs):
        self.params = list(params)
        self.places = [list(run) for run in places]
        # Each run's tensors as leaves sharing the stack's memory: what a step writes into
        # them is in the stack, and what is set in the stack is what they hold.
        self.views = [[self.params[p].detach()[k].requires_grad_(True) for p, k in run]
                      for run in self.places]
        self.optimizers = [cls(views, **kwargs) for views in self.views]

    @property
    def param_groups(self) -> list:
        """Every group of every run's optimizer (the engine's schedule sets their lr)."""
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _gradients_to(self, r: int) -> None:
        """Run r's rows of the stacked gradients as its tensors' gradients (views)."""
        for view, (p, k) in zip(self.views[r], self.places[r]):
            grad = self.params[p].grad
            view.grad = torch.zeros_like(view) if grad is None else grad[k]

    def step(self, loss: Callable[[], torch.Tensor], current: torch.Tensor) -> None:
        """One step of every run's optimizer. The stacked gradients hold the gradient at
        the current parameters and ``current`` (runs,) each run's loss there; ``loss()``
        re-evaluates the (runs,) losses at the stacked parameters and back-propagates
        their sum (a run's block of the gradient depends on that run alone)."""
        for r, optimizer in enumerate(self.optimizers):
            self._gradients_to(r)
            fresh = [True]

            def closure(r=r, fresh=fresh):
                if fresh[0]:  # the loss and gradient of this step, already computed
                    fresh[0] = False
                    return current[r]
                self.zero_grad()
                value = loss()
                self._gradients_to(r)
                return value[r].detach()

            optimizer.step(closure)

    def run_state(self, r: int) -> dict:
        return self.optimizers[r].state_dict()

    def load_run_states(self, states: Sequence[dict]) -> None:
        for optimizer, state in zip(self.optimizers, states):
            optimizer.load_state_dict(state)



class TwoPhase(torch.optim.Optimizer):
    """The common "Adam, then L-BFGS" recipe as one optimizer: ``first`` for the first
    ``switch`` steps, ``second`` after them, both over the same parameters and each given
    by import path with its own keyword arguments. ``lr`` is the first phase's (and the only
    one a schedule scales); the second keeps its own (L-BFGS: ``second_args={"lr": 1}``,
    its default). Use it as ``--optimizer pinn.optim.optimizers:TwoPhase --optimizer-args
    '{"switch": 5000, "second_args": {"line_search_fn": "strong_wolfe"}}'``."""

    def __init__(self, params, lr: float = 1e-3, first: str = "torch.optim:Adam",
                 second: str = "torch.optim:LBFGS", switch: int = 1000,
                 first_args: dict | None = None, second_args: dict | None = None):
        params = list(params)
        if isinstance(switch, bool) or not isinstance(switch, int) or switch < 0:
            raise ValueError(f"switch must be an integer >= 0 (the steps of the first phase), "
                             f"got {switch!r}")
        super().__init__(params, {"lr": lr})
        base = torch.optim.Optimizer
        self.phases = (load_class(first, "optimizer", base)(params, lr=lr, **(first_args or {})),
                       load_class(second, "optimizer", base)(params, **(second_args or {})))
        self.param_groups = self.phases[0].param_groups   # the schedule scales phase 1
        self.switch, self.steps = switch, 0

    def step(self, closure=None):
        phase = self.phases[0 if self.steps < self.switch else 1]
        self.steps += 1
        return phase.step(closure)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "phases": [phase.state_dict() for phase in self.phases]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        for phase, phase_state in zip(self.phases, state["phases"]):
            phase.load_state_dict(phase_state)
