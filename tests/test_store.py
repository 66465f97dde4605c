"""The HDF5 reference store: round trip, xarray view, atomic writes, every corruption case,
a full disk and a kill mid-write."""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from reference import store
from reference.cases import get_case
from reference.exact import channel_profile


@pytest.fixture
def eof_case():
    return get_case("eof-straight", eps=0.1)


def _write(tmp_path, case, path=None, **extra):
    """Write ``case``'s reference (at ``path``, default its own name in ``tmp_path``)."""
    grid = store.evaluation_grid(case)
    fields = channel_profile(case, grid["y"])
    grid_fields = {name: np.tile(values[:, None], (1, grid["x"].size))
                   for name, values in fields.items()}
    path = path or store.reference_path(case, tmp_path)
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


def test_a_file_of_another_case_under_its_name_is_refused_by_every_reader(tmp_path, eof_case):
    """A reference of zeta 2 stored, and listed in the manifest, under the name of the zeta 1
    case: its sha256 and its grid match, only its own case and parameters tell. Training,
    the suite and sweeps read it through the problem, `pinn errors` through check_reference:
    each refuses it (before, training scored against it)."""
    from pinn.analysis.errors import check_reference
    from pinn.problems import get_problem

    path = store.reference_path(eof_case, tmp_path)
    _write(tmp_path, eof_case.replace(zeta=2.0), path=path)
    assert store.open_reference(path).attrs["params"]["zeta"] == 2.0    # a sound file
    message = (r"eof-straight-eps0.1.h5 holds the reference of eof-straight .*'zeta': 2.0.*, not "
               r"of eof-straight .*'zeta': 1.0.*; regenerate it with `python -m reference "
               "generate eof-straight --eps 0.1`")
    with pytest.raises(store.ReferenceFileError, match=message):
        store.open_reference(path, case=eof_case)
    problem = get_problem(eof_case, n_points=8, reference="stored", reference_root=tmp_path)
    with pytest.raises(store.ReferenceFileError, match=message):
        problem.reference()
    with pytest.raises(ValueError, match=message):
        check_reference(eof_case, store.open_reference(path))


def test_the_write_check_writes_blocks_to_disk(tmp_path, monkeypatch):
    """A full disk still takes an empty file: the check writes 4 KiB and flushes them, which
    it refuses, and leaves nothing behind either way."""
    written = []
    real_fsync = os.fsync

    def full(fd):
        written.append(os.fstat(fd).st_size)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ValueError, match=f"cannot write to {tmp_path}: No space left on device"):
        store.check_writable(tmp_path)
    assert written == [store.CHECK_BYTES] and not list(tmp_path.iterdir())
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert store.check_writable(tmp_path / "new") == tmp_path / "new"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target", ["reference", "manifest"])
def test_a_full_disk_leaves_the_reference_and_its_entry_as_they_were(tmp_path, eof_case,
                                                                     monkeypatch, target):
    """ENOSPC while the new file or the new manifest is written: both stay the previous
    pair, nothing half-written, and the error names the file. (The manifest was updated
    after the new file was renamed in: that left a file it did not list.)"""
    path, digest, _ = _write(tmp_path, eof_case)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if target == "reference":
        monkeypatch.setattr(h5py.Group, "create_dataset", full)
    else:
        write_text = Path.write_text

        def manifest_full(self, *args, **kwargs):
            if self.name.startswith(".manifest.json."):   # the manifest's temporary file
                full()
            return write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", manifest_full)
    with pytest.raises(OSError) as error:
        _write(tmp_path, eof_case)
    named = path if target == "reference" else tmp_path / "manifest.json"
    message = store.full_disk_message(error.value)
    assert message.startswith(f"No space left on device writing {named}; ")
    monkeypatch.undo()
    assert store.open_reference(path).attrs["sha256"] == digest
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".manifest.json.lock") == [
        "eof-straight-eps0.1.h5", "manifest.json"]


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
import h5py
from reference.cases import get_case
from test_store import _write

owner, name = {target}
original = getattr(owner, name)

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)    # as `kill PID` would, at this point
    return original(*args, **kwargs)

setattr(owner, name, killed)
_write(Path({folder!r}), get_case("eof-straight", eps=0.1))
"""


@pytest.mark.parametrize("target", ["(h5py.Group, 'create_dataset')", "(os, 'replace')"])
def test_sigterm_while_a_reference_is_written(tmp_path, eof_case, target):
    """SIGTERM (a kill, or mpirun passing one on) during the write removes the temporary
    file as SIGINT does, then ends the process as SIGTERM does; between the renames of the
    file and of its manifest it waits until both are in place. Either way the folder holds
    a listed file and no temporary one (before, a hidden .tmp stayed for an hour)."""
    path, digest, _ = _write(tmp_path, eof_case)
    tests = Path(__file__).resolve().parent
    script = _KILLED_WRITER.format(root=str(tests.parent), tests=str(tests), target=target,
                                   folder=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == -signal.SIGTERM, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".manifest.json.lock") == [
        "eof-straight-eps0.1.h5", "manifest.json"]
    renamed = store.open_reference(path).attrs["sha256"] != digest
    assert renamed == (target == "(os, 'replace')")   # killed before the renames: the old pair
