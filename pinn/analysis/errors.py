"""Error fields of a trained PINN against a stored reference, as an xarray Dataset.

Where in the channel is the network wrong? :func:`error_fields` evaluates the networks at
the reference's own grid points (no interpolation) and returns, for every field f,

    pred_f, ref_f, error_f = pred_f - ref_f          on the grid (dims y, x)

and per-field statistics (data variables over the dimension ``field``)::

    l2        = sqrt(sum w e^2 / sum w ref^2)          (w: the grid's quadrature weights)
    abs_l2    = sqrt(sum w e^2), the absolute error norm
    max_error = max |e|
    l2_band   = the same relative L2 restricted to the double-layer band, the points within
                ``band`` Debye lengths (eps / sqrt 2) of a wall, normalised by the whole
                reference norm so that l2_band^2 + l2_bulk^2 = l2^2
    l2_bulk   = the rest of the channel

A relative error against a reference that is zero (v and p of the straight channel) is
undefined: l2, l2_band and l2_bulk are NaN there and abs_l2 / max_error say how large the
error is. Where the band covers the whole channel (eps = 0.2: 5 x 0.2 / sqrt 2 = 0.71 of a
half-height 0.5) the split says nothing: l2_band = l2 and l2_bulk is NaN (attribute
``band_covers_channel``). A 1D case has no band: both are NaN.

The run and the reference must be of the same case and parameters (:func:`check_reference`);
``allow_mismatch=True`` scores across them on purpose. Scored from a run directory, the
Dataset says which checkpoint it scored (attributes checkpoint_step, run_status and run_note,
:func:`scored_checkpoint`): a run that is still training is scored at its last checkpoint.

The Dataset writes to NetCDF (``ds.to_netcdf(path)``; scipy's writer is enough) and
:func:`plot_error_fields` draws one error map per field.

>>> from reference import store
>>> ds = error_fields("runs/eof-soap", store.open_reference("data/eof-straight-eps0.2.h5"))  # doctest: +SKIP
>>> ds["l2"].to_series()                                                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from reference import store
from reference.cases import case_from_params, get_case

__all__ = ["error_fields", "load_model", "scored_checkpoint", "plot_error_fields",
           "check_reference", "reference_case"]


ZERO_REFERENCE = 1e-8   # a field whose norm is below this fraction of the largest is zero


def load_model(run_dir, device="cpu"):
    """(model, case, scored) of a run directory: the model of its checkpoint.pt, the case,
    and what that checkpoint is (:func:`scored_checkpoint`: a run may still be training)."""
    from ..training import checkpoint as ckpt
    from ..training.networks import model_for
    from ..training.trainer import CHECKPOINT

    run_dir = Path(run_dir)
    state = ckpt.load(run_dir / CHECKPOINT, map_location=device)
    config = state["config"]
    case = get_case(config["case"], **config["case_params"])
    model = model_for(case, config)
    model.load_state_dict(state["model"])
    model = model.to(device=device, dtype=getattr(torch, config["dtype"]))
    return model, case, scored_checkpoint(run_dir, int(state["step"]), config["steps"])


def scored_checkpoint(run_dir, step: int, steps: int) -> dict:
    """What the checkpoint at ``step`` of a run of ``steps`` steps is, by the run's files:
    {"checkpoint_step", "run_status", "run_note"}. run_status: "completed", "diverged" (the
    checkpoint is its last good state) or "unfinished" (no metrics.json, or fewer steps than
    its config.json asks for: training, or stopped before its end). Scoring never takes the
    run's writer lock, so it cannot stop a run from starting."""
    from ..training.trainer import CONFIG, METRICS

    run_dir = Path(run_dir)
    if (run_dir / CONFIG).is_file():  # a resumed run's new target
        steps = json.loads((run_dir / CONFIG).read_text())["steps"]
    metrics = (json.loads((run_dir / METRICS).read_text())
               if (run_dir / METRICS).is_file() else {})
    status = metrics.get("status")
    if status == "diverged":
        note = (f"the run diverged (at step {metrics['step']}): step {step} is its last good "
                "checkpoint")
    elif status is None or step < steps:
        status = "unfinished"
        note = (f"the run is unfinished (step {step} of {steps}: still training, or stopped "
                "before its end): these are not its final errors")
    else:
        note = f"the run completed at step {step}"
    return {"checkpoint_step": step, "run_status": status, "run_note": note}


def _predict(model, points: np.ndarray) -> dict[str, np.ndarray]:
    parameter = next(model.parameters())
    x = torch.as_tensor(points, dtype=parameter.dtype, device=parameter.device)
    with torch.no_grad():
        out = model(x)
    return {name: values.detach().cpu().double().numpy() for name, values in out.items()}


def reference_case(reference: xr.Dataset):
    """The case (with its parameters) a stored reference was computed for."""
    return case_from_params(reference.attrs["case"], reference.attrs["params"])


def check_reference(case, reference: xr.Dataset) -> None:
    """ValueError naming both when ``reference`` is not of ``case`` and its parameters (the
    store's check, :func:`reference.store.check_case`, which training uses too)."""
    try:
        store.check_case(reference, case)
    except store.ReferenceFileError as error:
        raise ValueError(f"{error}. The run was trained on the latter: score a run against "
                         "its own case's reference (or cross-score on purpose: "
                         "allow_mismatch=True, `pinn errors --allow-mismatch`)") from None


def error_fields(model_or_run, reference: xr.Dataset, band: float = 5.0, case=None,
                 allow_mismatch: bool = False) -> xr.Dataset:
    """Prediction, reference and error of every field on the reference's grid.

    ``model_or_run``: a model (``model(x) -> {field: values}``) or a run directory.
    ``reference``: a Dataset from :func:`reference.store.open_reference`.
    ``band``: the double-layer band's width in Debye lengths (2D channel cases).
    ``case``: the case the model was trained on (a run directory knows its own); checked
    against the reference's unless ``allow_mismatch``.
    """
    scored = {}
    if isinstance(model_or_run, (str, Path)):
        model, case, scored = load_model(model_or_run)
    else:
        model = model_or_run
    if case is not None and not allow_mismatch:
        check_reference(case, reference)
    case = reference_case(reference)
    fields = [name for name in case.fields if name in reference]
    dims = reference[fields[0]].dims
    pred = _predict(model, store.grid_points(reference))
    missing = [name for name in fields if name not in pred]
    if missing:
        raise ValueError(f"the model does not produce the field(s) {missing} of {case.name}")

    shape = reference[fields[0]].shape
    pred_arr = np.stack([pred[name].reshape(shape) for name in fields])
    ref_arr = np.stack([reference[name].values for name in fields])
    err_arr = pred_arr - ref_arr
    weight = reference["weight"].values
    if dims == ("y", "x"):
        yy = reference["y"].values
        distance = np.minimum(yy - case.domain[1][0], case.domain[1][1] - yy)
        in_band = (distance <= band * case.eps / np.sqrt(2.0))[:, None] * np.ones(shape, bool)
    else:
        in_band = np.zeros(shape, bool)
    covers = bool(in_band.all())

    def norm(values, mask=None):
        w = weight if mask is None else weight * mask
        return np.sqrt(np.sum(w * values**2, axis=tuple(range(1, values.ndim))))

    ref_norm = norm(ref_arr)
    # a reference that is zero (to the solver's rounding: v and p of the straight channel
    # are ~1e-9 of the largest field) has no relative error
    ref_norm = np.where(ref_norm > ZERO_REFERENCE * ref_norm.max(), ref_norm, np.nan)
    nan = np.full(len(fields), np.nan)
    ds = xr.Dataset(
        {
            "pred": (("field",) + dims, pred_arr),
            "ref": (("field",) + dims, ref_arr),
            "error": (("field",) + dims, err_arr),
            "weight": (dims, weight),
            "in_band": (dims, in_band.astype(np.int8)),
            "l2": ("field", norm(err_arr) / ref_norm),
            "abs_l2": ("field", norm(err_arr)),
            "max_error": ("field", np.abs(err_arr).reshape(len(fields), -1).max(axis=1)),
            "l2_band": ("field", nan if dims != ("y", "x") else norm(err_arr, in_band) / ref_norm),
            "l2_bulk": ("field", nan if dims != ("y", "x") or covers
                        else norm(err_arr, ~in_band) / ref_norm),
        },
        coords={"field": fields, **{dim: reference[dim].values for dim in dims}},
        attrs={"case": case.name, "params": json.dumps(case.params()), "band_debye_lengths": band,
               "band_covers_channel": int(covers),
               "reference_sha256": str(reference.attrs.get("sha256", "")), **scored},
    )
    return ds


def plot_error_fields(ds: xr.Dataset, path) -> Path:
    """One panel per field: the error map (2D) or the error curve (1D); saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..training.plotting import save_figure

    fields = list(ds["field"].values)
    fig, axes = plt.subplots(1, len(fields), figsize=(3.0 * len(fields), 2.8), squeeze=False)
    for ax, name in zip(axes[0], fields):
        error = ds["error"].sel(field=name)
        if error.ndim == 2:
            limit = float(np.abs(error).max()) or 1.0
            mesh = ax.pcolormesh(ds["x"], ds["y"], error, cmap="RdBu_r", vmin=-limit,
                                 vmax=limit, shading="auto")
            fig.colorbar(mesh, ax=ax, format="%.0e")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        else:
            ax.plot(ds["x"], error)
            ax.set_xlabel("x")
        if np.isnan(float(ds["l2"].sel(field=name))):
            # a zero reference (v and p of the straight channel): no relative error
            title = f"{name}: max |e| {float(ds['max_error'].sel(field=name)):.1e} (ref = 0)"
        else:
            title = f"{name}: L2 {float(ds['l2'].sel(field=name)):.1e}"
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path, dpi=110)
    return path
