"""Error fields against a stored reference: exact numbers from a known perturbation, the
double-layer/bulk split, NetCDF round trip, the plot, and run directories."""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from pinn.__main__ import main
from pinn.analysis.errors import error_fields, plot_error_fields
from reference import store
from reference.cases import get_case
from reference.exact import channel_profile


class ProfilePlusOffset(torch.nn.Module):
    """The exact fully developed profile, with ``offset`` added to u."""

    def __init__(self, case, offset):
        super().__init__()
        self.case, self.offset = case, offset
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        fields = channel_profile(self.case, x[:, 1].numpy())
        fields["u"] = fields["u"] + self.offset
        return {name: torch.as_tensor(values) for name, values in fields.items()}


@pytest.fixture(scope="module")
def reference():
    return store.open_reference(store.reference_path(get_case("eof-straight", eps=0.2)))


def test_known_perturbation(reference):
    case = get_case("eof-straight", eps=0.2)
    ds = error_fields(ProfilePlusOffset(case, 0.01), reference, band=1.0)
    assert list(ds["field"].values) == ["phi", "c_plus", "c_minus", "u", "v", "p"]
    w, u = reference["weight"].values, reference["u"].values
    expected = 0.01 * np.sqrt(w.sum() / np.sum(w * u**2))
    assert float(ds["l2"].sel(field="u")) == pytest.approx(expected, rel=1e-4)
    assert float(ds["max_error"].sel(field="u")) == pytest.approx(0.01, rel=1e-4)
    # the stored DOLFINx reference agrees with the exact profile far below PINN errors
    for name in ("phi", "c_plus", "c_minus"):
        assert float(ds["l2"].sel(field=name)) < 1e-6
    # v and p are zero in the reference: no relative error, the absolute one beside it
    for name in ("v", "p"):
        assert np.isnan(float(ds["l2"].sel(field=name)))
        assert float(ds["abs_l2"].sel(field=name)) < 1e-6
    assert float(ds["abs_l2"].sel(field="u")) == pytest.approx(0.01 * np.sqrt(w.sum()), rel=1e-4)
    # band + bulk split the squared error; the band is 1 Debye length from each wall
    band = (np.minimum(reference["y"], 1 - reference["y"]) <= 1 * 0.2 / np.sqrt(2)).values
    in_band = np.sum(w[band]) / w.sum()
    assert float(ds["l2_band"].sel(field="u")) == pytest.approx(expected * np.sqrt(in_band), rel=1e-4)
    total = ds["l2_band"] ** 2 + ds["l2_bulk"] ** 2
    np.testing.assert_allclose(total.sel(field="u"), ds["l2"].sel(field="u") ** 2, rtol=1e-10)
    assert ds.attrs["band_covers_channel"] == 0


def test_a_band_over_the_whole_channel_has_no_bulk(reference):
    """At eps 0.2, 5 Debye lengths (0.71) from each wall cover the channel (half-height 0.5):
    the band's error is the whole error and there is no bulk to speak of."""
    ds = error_fields(ProfilePlusOffset(get_case("eof-straight", eps=0.2), 0.01), reference)
    assert ds.attrs["band_covers_channel"] == 1
    np.testing.assert_array_equal(ds["l2_band"].sel(field="u"), ds["l2"].sel(field="u"))
    assert np.isnan(ds["l2_bulk"]).all()


def test_a_reference_of_other_parameters_or_case_is_refused(reference, tmp_path):
    other = store.open_reference(store.reference_path(get_case("eof-straight", eps=0.5)))
    model = ProfilePlusOffset(get_case("eof-straight", eps=0.2), 0.0)
    with pytest.raises(ValueError, match=r"holds the reference of eof-straight .*'eps': 0.5.*, "
                                         r"not of eof-straight .*'eps': 0.2.*\. The run was "
                                         "trained on the latter"):
        error_fields(model, other, case=get_case("eof-straight", eps=0.2))
    crossed = error_fields(model, other, case=get_case("eof-straight", eps=0.2),
                           allow_mismatch=True)
    assert float(crossed["l2"].sel(field="phi")) > 0.1       # eps 0.2 profile vs eps 0.5
    with pytest.raises(ValueError, match="holds the reference of eof-straight .* not of npp"):
        error_fields(model, reference, case=get_case("npp", eps=0.1))


def test_netcdf_round_trip_and_plot(reference, tmp_path):
    case = get_case("eof-straight", eps=0.2)
    ds = error_fields(ProfilePlusOffset(case, 0.0), reference)
    ds.to_netcdf(tmp_path / "errors.nc")
    back = xr.open_dataset(tmp_path / "errors.nc")
    np.testing.assert_array_equal(back["error"].values, ds["error"].values)
    assert list(back["field"].values) == list(ds["field"].values)
    back.close()
    png = plot_error_fields(ds, tmp_path / "errors.png")
    assert png.stat().st_size > 10_000


def test_run_directory(tmp_path, reference):
    from pinn.training.trainer import TrainConfig, train

    config = TrainConfig(case="eof-straight", case_params={"eps": 0.2}, optimizer="adam",
                         steps=3, eval_every=3, width=8, depth=2, n_points=20, seed=1,
                         run_dir=str(tmp_path / "run"), progress=False, device="cpu")
    result = train(config)
    ds = error_fields(tmp_path / "run", reference)
    # the scores of the run (against the exact profile) equal the error fields' (stored FE)
    for name in ("phi", "c_plus", "c_minus", "u"):
        assert float(ds["l2"].sel(field=name)) == pytest.approx(result.final["l2"][name], rel=1e-4)
    # the command refuses a reference of other parameters before evaluating, naming both
    other = store.reference_path(get_case("eof-straight", eps=0.5))
    with pytest.raises(SystemExit) as exit_:
        main(["errors", str(tmp_path / "run"), "--reference", str(other),
              "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    assert main(["errors", str(tmp_path / "run"), "--reference", str(other), "--allow-mismatch",
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "errors.nc").is_file()


def test_errors_say_which_checkpoint_they_score(tmp_path, capsys, reference):
    """`pinn errors` of a run scores its checkpoint; it prints that step and whether the run
    has finished, and writes both into errors.nc (a run still training, or killed, has no
    metrics.json yet, and one resumed for more steps asks for more in its config.json)."""
    from pinn.training.trainer import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(case="eof-straight", case_params={"eps": 0.2}, optimizer="adam", steps=4,
                      eval_every=2, width=8, depth=1, n_points=20, run_dir=str(run),
                      progress=False, device="cpu"))
    assert main(["errors", str(run), "--out", str(tmp_path / "done")]) == 0
    assert "scored the checkpoint of step 4: the run completed at step 4" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "steps": 8}))
    assert main(["errors", str(run), "--out", str(tmp_path / "more")]) == 0
    assert "the run is unfinished (step 4 of 8" in capsys.readouterr().out
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").unlink()
    assert main(["errors", str(run), "--out", str(tmp_path / "out")]) == 0
    assert ("scored the checkpoint of step 4: the run is unfinished (step 4 of 4: still "
            "training, or stopped before its end)") in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "out" / "errors.nc") as ds:
        assert ds.attrs["checkpoint_step"] == 4 and ds.attrs["run_status"] == "unfinished"
    ds = error_fields(run, reference)
    assert ds.attrs["checkpoint_step"] == 4 and ds.attrs["run_status"] == "unfinished"
