"""The networks of a PINN: tanh multilayer perceptrons, one (or a few) per field.

A case's fields are split into groups; each group gets its own :class:`MLP`, and
:class:`FieldNetworks` holds them and returns every field by name. The split matters for
the analysis: the NTK's blocks J_s are the Jacobian columns of one network's parameters,
so the number of networks S is the S of the block-diagonal Gauss-Newton bound.

>>> from reference.cases import get_case
>>> model = build_model(get_case("eof-straight"), split="paper")
>>> model.groups
(('phi',), ('c_plus',), ('c_minus',), ('u', 'v', 'p'))
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .config import SPLITS
from .recipe import recipe

__all__ = ["MLP", "FieldNetworks", "build_model", "model_for", "SPLITS", "default_size"]



def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (valid: 1, 2, 3, ...), got {value!r}")
    return value


def tanh_channels(a: torch.Tensor, derivatives) -> list:
    """[t, t' a', t' (a'' - 2 t a'^2)] for t = tanh(a), as many as ``derivatives`` = (a', a'')
    holds: the value and input derivatives of one hidden layer's output (see
    :meth:`MLP.derivatives`, :meth:`pinn.training.stacked.StackedMLP.derivatives`)."""
    t = torch.tanh(a)
    channels = [t]
    if derivatives:
        slope = 1 - t * t
        channels.append(slope * derivatives[0])
    if len(derivatives) > 1:
        channels.append(slope * (derivatives[1] - 2 * t * derivatives[0] ** 2))
    return channels


class MLP(nn.Module):
    """A tanh perceptron with ``depth`` hidden layers of ``width`` neurons.

    The input is first mapped affinely from the box ``domain`` = ((lo_1, hi_1), ...) to
    [-1, 1]^in_dim, z = 2 (x - lo) / (hi - lo) - 1, then

        h_0 = z,  h_l = tanh(W_l h_{l-1} + b_l) (l = 1..depth),  out = W h_depth + b.

    Weights are Xavier-uniform (U(-a, a), a = sqrt(6 / (fan_in + fan_out))), biases zero.
    With ``out_scale`` (one positive number per output) the output is out * out_scale: the
    network learns each field divided by its known scale (a fixed buffer, not a parameter,
    and not stored in state dicts: the run's config rebuilds it).
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int,
                 domain: Sequence[Sequence[float]], out_scale: Sequence[float] | None = None):
        super().__init__()
        in_dim = _positive_int("in_dim", in_dim)
        out_dim = _positive_int("out_dim", out_dim)
        width = _positive_int("width", width)
        depth = _positive_int("depth", depth)
        bounds = torch.as_tensor(domain, dtype=torch.float64)
        if bounds.shape != (in_dim, 2):
            raise ValueError(
                f"domain must hold one (lo, hi) pair per input ({in_dim}), got {domain!r}"
            )
        if not torch.all(bounds[:, 1] > bounds[:, 0]):
            raise ValueError(f"domain bounds must satisfy lo < hi, got {domain!r}")
        # Buffers, so that .to(device/dtype) moves the input map with the weights.
        dtype = torch.get_default_dtype()
        self.register_buffer("center", ((bounds[:, 0] + bounds[:, 1]) / 2).to(dtype))
        self.register_buffer("half_width", ((bounds[:, 1] - bounds[:, 0]) / 2).to(dtype))
        self.scaled = out_scale is not None
        scale = torch.ones(out_dim) if out_scale is None else torch.as_tensor(
            out_scale, dtype=torch.float64)
        if scale.shape != (out_dim,) or not bool(((scale > 0) & scale.isfinite()).all()):
            raise ValueError(f"out_scale must hold {out_dim} positive finite numbers, "
                             f"got {out_scale!r}")
        self.register_buffer("out_scale", scale.to(dtype), persistent=False)

        sizes = [in_dim] + [width] * depth + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.in_dim, self.out_dim, self.width, self.depth = in_dim, out_dim, width, depth

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The affine input map of the domain onto [-1, 1]."""
        return (x - self.center) / self.half_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, in_dim) -> (N, out_dim)."""
        h = self.normalize(x)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        out = self.layers[-1](h)
        return out * self.out_scale if self.scaled else out

    def derivatives(self, x: torch.Tensor, order: int = 2):
        """The output and its input derivatives by forward propagation (no autograd in x).

        Returns ``(value, grad, second)``: value (N, out_dim), grad[k, i, j] = d out_j /
        d x_i and second[k, i, j] = d^2 out_j / d x_i^2 at point k, both (N, in_dim,
        out_dim); grad is None for ``order`` 0, second for ``order`` < 2.

        Each hidden layer maps h -> tanh(a), a = W h + b; with t = tanh(a), t' = 1 - t^2,
        t'' = -2 t t' and ' = d/dx_i, the chain rule gives

            h_new   = t,
            h_new'  = t' (W h'),
            h_new'' = t'' (W h')^2 + t' (W h'') = t' (W h'' - 2 t (W h')^2),

        starting from the input map z = (x - center) / half_width: z' = e_i / half_width_i,
        z'' = 0; the output layer is linear, out' = W h', out'' = W h''. The value and the
        derivative channels are stacked (C = 1 + order * in_dim channels of N points) so that
        each layer is one matmul. The result depends on the weights through ordinary ops,
        so the loss needs a first-order backward only (no double backward).
        """
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
        n, dim = x.shape
        # Channels (C, N, features): [value, d/dx_1..d/dx_dim, d2/dx_1^2..d2/dx_dim^2].
        channels = [self.normalize(x)[None]]
        if order >= 1:
            eye = torch.diag(1 / self.half_width)[:, None, :]  # dz/dx_i = e_i / half_width_i
            channels.append(eye.expand(dim, n, dim))
        if order >= 2:
            channels.append(x.new_zeros(dim, n, dim))
        h = torch.cat(channels)
        sizes = [1] + [dim] * order
        for layer in self.layers[:-1]:
            a = (h @ layer.weight.T).split(sizes)  # W h, W h', W h''
            h = torch.cat(tanh_channels(a[0] + layer.bias, a[1:]))
        last = self.layers[-1]
        out = (h @ last.weight.T).split(sizes)
        value = out[0][0] + last.bias
        grad = out[1].transpose(0, 1) if order >= 1 else None
        second = out[2].transpose(0, 1) if order >= 2 else None
        if self.scaled:
            value, grad, second = (None if t is None else t * self.out_scale
                                   for t in (value, grad, second))
        return value, grad, second

    def extra_repr(self) -> str:
        scale = f", out_scale={self.out_scale.tolist()}" if self.scaled else ""
        return (f"in_dim={self.in_dim}, out_dim={self.out_dim}, width={self.width}, "
                f"depth={self.depth}{scale}")


class FieldNetworks(nn.Module):
    """Networks that together produce the named fields of a case.

    ``nets[s]`` maps points (N, dim) to (N, len(groups[s])): column j is the field
    ``groups[s][j]``. Any module with that contract works (tests wrap exact solutions).
    """

    def __init__(self, nets: Sequence[nn.Module], groups: Sequence[Sequence[str]]):
        super().__init__()
        groups = tuple(tuple(group) for group in groups)
        if len(nets) != len(groups):
            raise ValueError(f"need one group of field names per network: {len(nets)} nets, "
                             f"{len(groups)} groups")
        names = [name for group in groups for name in group]
        if not names or any(not group for group in groups) or len(set(names)) != len(names):
            raise ValueError(f"groups must be non-empty and name each field once, got {groups}")
        self.nets = nn.ModuleList(nets)
        self.groups = groups
        self.fields = tuple(names)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every field at the points ``x`` (N, dim): {name: (N,)}."""
        out = {}
        for net, group in zip(self.nets, self.groups):
            values = net(x)
            for j, name in enumerate(group):
                out[name] = values[:, j]
        return out


def default_size(case) -> tuple[int, int]:
    """(width, depth) of the published recipe (:mod:`pinn.training.recipe`): 1D 64 x 4, 2D 128 x 5."""
    published = recipe(case)
    return published.width, published.depth


def _groups(case, split: str) -> tuple[tuple[str, ...], ...]:
    if split == "shared":
        return (tuple(case.fields),)
    if split == "paper" and {"u", "v", "p"} <= set(case.fields):
        # The authors' 2D split: one network per scalar field, one for the flow (u, v, p).
        flow = ("u", "v", "p")
        return tuple((f,) for f in case.fields if f not in flow) + (flow,)
    return tuple((f,) for f in case.fields)


def build_model(case, width: int | None = None, depth: int | None = None,
                split: str = "per-field", scales: dict[str, float] | None = None
                ) -> FieldNetworks:
    """The networks of ``case``.

    ``split``: "per-field" (one network per field, the default), "paper" (the authors'
    split: the 2D flow fields u, v, p share one network; 1D cases as per-field) or
    "shared" (one network for all fields, an ablation). ``width``/``depth`` default to the
    recipe (:func:`default_size`). ``scales`` ({field: scale}, others 1): each network
    learns its fields divided by these and multiplies them back (:class:`MLP`'s ``out_scale``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    default_width, default_depth = default_size(case)
    width = _positive_int("width", default_width if width is None else width)
    depth = _positive_int("depth", default_depth if depth is None else depth)
    groups = _groups(case, split)
    nets = [MLP(case.dim, len(group), width, depth, case.domain,
                None if scales is None else [scales.get(name, 1.0) for name in group])
            for group in groups]
    return FieldNetworks(nets, groups)


def model_for(case, config) -> FieldNetworks:
    """The networks a run's config describes (a TrainConfig, or the dict stored in its
    config.json or checkpoint): size, split and output scales."""
    config = config if isinstance(config, dict) else config.to_dict()
    scales = case.field_scales if config.get("output_scales", "none") == "case" else None
    return build_model(case, config.get("width"), config.get("depth"),
                       config.get("split", "per-field"), scales)
