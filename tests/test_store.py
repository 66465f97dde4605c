"""The HDF5 reference store: round trip, xarray view, atomic writes, every corruption case."""

import json

import h5py
import numpy as np
import pytest

from reference import store
from reference.cases import get_case
from reference.exact import channel_profile


@pytest.fixture
def eof_case():
    return get_case("eof-straight", eps=0.1)


def _write(tmp_path, case, **extra):
    grid = store.evaluation_grid(case)
    fields = channel_profile(case, grid["y"])
    grid_fields = {name: np.tile(values[:, None], (1, grid["x"].size))
                   for name, values in fields.items()}
    path = store.reference_path(case, tmp_path)
    digest = store.write_reference(
        path, case, grid_fields=grid_fields,
        mesh={"vertices": np.random.rand(5, 2), "cells": np.array([[0, 1, 2], [2, 3, 4]])},
        mesh_fields={"phi": np.arange(5.0)},
        solver={"newton_iterations": 3, "residuals": [1.0, 1e-5, 1e-11]},
        verification={"rel_l2": {"phi": 1e-8}}, generator={"dolfinx": "0.5.2"}, **extra,
    )
    return path, digest, grid_fields


def test_evaluation_grid(eof_case):
    grid = store.evaluation_grid(eof_case)
    assert grid["weight"].shape == (200, 50)
    assert grid["weight"].sum() == pytest.approx(1.0)  # the unit square's area
    y = grid["y"]
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0) and np.all(np.diff(y) > 0)
    # graded: spacing at the wall is much finer than in the middle
    assert np.diff(y)[0] < 0.25 * np.diff(y)[100]
    # at least a dozen points within one Debye length of each wall
    assert np.sum(y < eof_case.debye_length) >= 12
    one_d = store.evaluation_grid(get_case("npp"))
    assert one_d["x"].size == 1000 and one_d["weight"].sum() == pytest.approx(1.0)
    # the quadrature weights integrate a smooth function accurately
    g2 = store.evaluation_grid(get_case("eof-patch"))
    integrand = np.sin(np.pi * g2["y"])[:, None] * np.ones_like(g2["x"])[None, :]
    assert np.sum(g2["weight"] * integrand) == pytest.approx(2 * 2 / np.pi, rel=1e-4)


def test_round_trip_and_xarray_view(tmp_path, eof_case):
    path, digest, grid_fields = _write(tmp_path, eof_case)
    assert path.name == "eof-straight-eps0.1.h5"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest[path.name]["sha256"] == digest == store.sha256(path)

    ds = store.open_reference(path)
    assert ds["phi"].dims == ("y", "x") and ds["phi"].shape == (200, 50)
    for name, values in grid_fields.items():
        np.testing.assert_array_equal(ds[name].values, values)
    assert ds.attrs["case"] == "eof-straight"
    assert ds.attrs["params"]["eps"] == 0.1
    assert ds.attrs["solver"]["residuals"] == [1.0, 1e-5, 1e-11]
    assert ds.attrs["verification"]["rel_l2"]["phi"] == 1e-8
    assert ds.attrs["generator"]["dolfinx"] == "0.5.2" and "git_commit" in ds.attrs["generator"]
    assert ds.attrs["schema_version"] == store.SCHEMA_VERSION and ds.attrs["sha256"] == digest
    # the exact profile at mid-channel survives the round trip
    mid = ds["u"].interp(y=0.5).values
    assert np.allclose(mid, channel_profile(eof_case, [0.5])["u"], rtol=1e-5)

    mesh = store.read_mesh(path)
    assert mesh["cells"].shape == (2, 3) and np.array_equal(mesh["phi"], np.arange(5.0))


def test_write_validates_fields(tmp_path, eof_case):
    grid = store.evaluation_grid(eof_case)
    good = {name: np.zeros(grid["weight"].shape) for name in eof_case.fields}
    with pytest.raises(ValueError, match="lacks the field"):
        store.write_reference(tmp_path / "a.h5", eof_case, grid_fields={"phi": good["phi"]})
    with pytest.raises(ValueError, match="has shape"):
        store.write_reference(tmp_path / "a.h5", eof_case,
                              grid_fields={**good, "u": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="non-finite"):
        store.write_reference(tmp_path / "a.h5", eof_case,
                              grid_fields={**good, "u": np.full(grid["weight"].shape, np.nan)})
    assert not list(tmp_path.iterdir())  # nothing written


def test_interrupted_write_leaves_no_file(tmp_path, eof_case, monkeypatch):
    path, digest, _ = _write(tmp_path, eof_case)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, eof_case)
    # the old file is intact, no temporary left behind
    assert store.sha256(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".manifest.json.lock") == [
        "eof-straight-eps0.1.h5", "manifest.json"]


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path, eof_case):
    """A SIGKILLed writer leaves its temporary file; the next write of that file removes
    the ones older than STALE_SECONDS (a fresh one may be another writer's, in flight)."""
    import os
    import time

    path = store.reference_path(eof_case, tmp_path)
    old, fresh = (tmp_path / f".{path.name}.{tag}.tmp" for tag in ("killed", "inflight"))
    other = tmp_path / ".eof-straight-eps0.2.h5.killed.tmp"     # another file's: not ours
    for tmp in (old, fresh, other):
        tmp.write_bytes(b"partial")
    past = time.time() - store.STALE_SECONDS - 60
    for tmp in (old, other):
        os.utime(tmp, (past, past))
    _write(tmp_path, eof_case)
    assert not old.exists() and fresh.exists() and other.exists()


def _write_many(args):
    root, values = args
    for eps in values:
        _write(root, get_case("eof-straight", eps=eps))


def test_parallel_writers_keep_every_manifest_entry(tmp_path):
    """Six processes writing references into one folder at once (as ranks of `reference
    generate` do): without the lock on the manifest's read-modify-write, entries were lost
    in every trial (6 files, 2 entries)."""
    import multiprocessing

    values = [[round(0.05 + 0.01 * (4 * w + k), 2) for k in range(4)] for w in range(6)]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        pool.map(_write_many, [(tmp_path, v) for v in values])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    files = sorted(p.name for p in tmp_path.glob("*.h5"))
    assert len(files) == 24 and sorted(manifest) == files
    for name in files:
        assert manifest[name]["sha256"] == store.sha256(tmp_path / name)


@pytest.mark.parametrize("text, message", [
    ("{not json", "cannot read the manifest"),
    ('{"eof-straight-eps0.1.h5": {"size": 3}}', "entries without a sha256"),
    ("[]", "entries without a sha256"),
])
def test_a_broken_manifest_names_itself(tmp_path, eof_case, text, message):
    path, _, _ = _write(tmp_path, eof_case)
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(store.ReferenceFileError, match=message) as error:
        store.open_reference(path)
    assert str(tmp_path / "manifest.json") in str(error.value)
    with pytest.raises(store.ReferenceFileError, match=message):     # a writer refuses it too
        _write(tmp_path, eof_case)


def test_missing_file(tmp_path, eof_case):
    path = store.reference_path(eof_case, tmp_path)
    with pytest.raises(store.ReferenceFileError,
                       match=r"does not exist.*python -m reference generate eof-straight --eps 0.1"):
        store.open_reference(path)


def test_truncated_file(tmp_path, eof_case):
    path, _, _ = _write(tmp_path, eof_case)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(store.ReferenceFileError, match="stale or corrupted"):
        store.open_reference(path)
    with pytest.raises(store.ReferenceFileError, match="truncated"):
        store.open_reference(path, verify=False)


def test_hash_mismatch(tmp_path, eof_case):
    path, _, _ = _write(tmp_path, eof_case)
    with h5py.File(path, "r+") as f:
        f["grid/phi"][0, 0] = 42.0
    with pytest.raises(store.ReferenceFileError, match="does not match its manifest.*generate eof-straight"):
        store.open_reference(path)


def test_wrong_schema_version(tmp_path, eof_case):
    path, _, _ = _write(tmp_path, eof_case)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(store.ReferenceFileError, match="schema version 99"):
        store.open_reference(path, verify=False)


def test_a_renamed_dataset_is_named(tmp_path, eof_case):
    """A file whose manifest entry matches but which lacks a field of its case (here phi
    renamed) is refused naming the dataset, not with xarray's KeyError later."""
    path, _, _ = _write(tmp_path, eof_case)
    with h5py.File(path, "r+") as f:
        f["grid"].move("phi", "potential")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest[path.name]["sha256"] = store.sha256(path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(store.ReferenceFileError, match=r"lacks the dataset\(s\) \['phi'\] of its case "
                                                   "eof-straight; regenerate it with"):
        store.open_reference(path)


def test_unlisted_and_unverifiable(tmp_path, eof_case):
    path, _, _ = _write(tmp_path, eof_case, manifest=False)
    with pytest.raises(store.ReferenceFileError, match="no manifest.json"):
        store.open_reference(path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(store.ReferenceFileError, match="not listed"):
        store.open_reference(path)
