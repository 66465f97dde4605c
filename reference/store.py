"""The reference store: one HDF5 file per case, readable with h5py, numpy and xarray.

Schema (version :data:`SCHEMA_VERSION`; documented in docs/store.md)::

    /                   attrs: schema_version, case, params (JSON), generator (JSON),
                               created (ISO 8601 UTC), solver (JSON), verification (JSON)
    /grid/x, /grid/y    the structured evaluation grid (y only for 2D cases)
    /grid/weight        quadrature weights of the grid (sum = domain measure)
    /grid/<field>       every field of the case on the grid, shape (ny, nx) or (nx,)
    /mesh/vertices      (N, gdim) vertex coordinates        (optional)
    /mesh/cells         (M, k) vertex indices of each cell  (optional)
    /mesh/<field>       field values at the vertices        (optional)

The grid is what PINNs are scored on. Scores use the quadrature weights, so a grid graded
towards the walls (to resolve the double layers) does not over-weight them:

    relative L2 = sqrt(sum w (pred - ref)^2 / sum w ref^2).

Writes are atomic (a temporary file renamed into place; stale ones of killed writers are
removed on the next write), and ``manifest.json`` in the same folder records each file's
sha256 (updated under a file lock, so parallel writers keep every entry); reading checks
the file against it, and a reader asking for a case checks that the file holds that case
(:func:`check_case`). A reference and its manifest entry are both written in full before
either is renamed into place, so a full disk or a kill leaves the previous pair. Nothing
here imports DOLFINx.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import glob
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "ReferenceFileError",
    "evaluation_grid",
    "grid_points",
    "reference_path",
    "write_reference",
    "open_reference",
    "check_case",
    "check_writable",
    "atomic_write",
    "full_disk_message",
    "full_disk_exits",
    "read_mesh",
    "sha256",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DATA = Path(__file__).resolve().parent.parent / "data"   # the project's stored references
GRID_1D = 1000                 # uniform points of a 1D grid (the paper's)
GRID_2D = (200, 50)            # (ny, nx) points of a 2D grid per unit length in x


class ReferenceFileError(RuntimeError):
    """A reference file is missing, unreadable or not the one the manifest records."""


def _regenerate_hint(path: Path) -> str:
    """The command that regenerates the file at ``path`` (named ``<case.label>.h5``)."""
    from reference.cases import CASES

    stem = path.name.removesuffix(".h5")
    for name in sorted(CASES, key=len, reverse=True):
        coupling = CASES[name].coupling
        if stem.startswith(f"{name}-{coupling}"):
            value = stem[len(name) + len(coupling) + 1:]
            command = f"python -m reference generate {name} --{coupling} {value}"
            break
    else:
        command = "python -m reference generate --all"
    return f"regenerate it with `{command}` (or all of them with `make references`)"


# --- the evaluation grid --------------------------------------------------------------------
def _graded(n: int, beta: float) -> np.ndarray:
    """n points on [0, 1] clustered towards both ends: y = (1 + tanh(beta (2s-1)) / tanh(beta)) / 2."""
    s = np.linspace(0.0, 1.0, n)
    return 0.5 * (1.0 + np.tanh(beta * (2.0 * s - 1.0)) / np.tanh(beta))


def _trapezoid_weights(t: np.ndarray) -> np.ndarray:
    w = np.zeros_like(t)
    dt = np.diff(t)
    w[:-1] += dt / 2
    w[1:] += dt / 2
    return w


def evaluation_grid(case) -> dict[str, np.ndarray]:
    """The structured grid a case is scored on, with trapezoid quadrature weights.

    1D: 1000 uniform points. 2D (channel, walls at y = 0, 1): 50 uniform points per unit
    length in x; 200 points in y, graded towards both walls with a strength that grows as
    the double layer thins (beta = 1 at eps >= 0.5 up to 3 at eps = 0.01), so at least a
    dozen points fall inside one Debye length of each wall.
    """
    if case.dim == 1:
        (x0, x1), = case.domain
        x = np.linspace(x0, x1, GRID_1D)
        return {"x": x, "weight": _trapezoid_weights(x)}
    (x0, x1), (y0, y1) = case.domain
    ny, nx_per_length = GRID_2D
    nx = max(2, int(round(nx_per_length * (x1 - x0))))
    beta = float(np.clip(1.0 + 0.5 * math.log2(0.5 / case.eps), 1.0, 3.0))
    x = np.linspace(x0, x1, nx)
    y = y0 + (y1 - y0) * _graded(ny, beta)
    weight = np.outer(_trapezoid_weights(y), _trapezoid_weights(x))
    return {"x": x, "y": y, "weight": weight}


def grid_points(grid) -> np.ndarray:
    """The points of an evaluation grid (a dict of :func:`evaluation_grid` or the Dataset of
    :func:`open_reference`) as an (M, dim) array; in 2D (x, y) pairs flattened in the
    (y, x) C-order of the stored fields, so ``field.ravel()`` lines up with them."""
    x = np.asarray(grid["x"], dtype=float)
    if "y" not in grid:
        return x[:, None]
    yy, xx = np.meshgrid(np.asarray(grid["y"], dtype=float), x, indexing="ij")
    return np.column_stack([xx.ravel(), yy.ravel()])


def reference_path(case, root: str | os.PathLike | None = None) -> Path:
    """Where the reference of ``case`` lives: ``<root>/<case.label>.h5`` (root: the
    project's ``data/`` folder by default)."""
    return Path(DATA if root is None else root) / f"{case.label}.h5"


# --- writing --------------------------------------------------------------------------------
def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _json(obj) -> str:
    def default(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return json.dumps(obj if obj is not None else {}, default=default, sort_keys=True)


CHECK_BYTES = 4096  # what check_writable writes: an empty file fits on a full disk


def check_writable(folder) -> Path:
    """ValueError naming ``folder`` when files cannot be written there (checked by writing
    :data:`CHECK_BYTES` to disk in its nearest existing ancestor, created folders left
    alone: nothing stays behind); call it before long work whose results go there."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        try:
            os.write(fd, bytes(CHECK_BYTES))
            os.fsync(fd)   # a full disk may refuse the blocks only here
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as error:
        raise ValueError(f"cannot write to {folder}: {error.strerror or error}") from None
    return folder


def full_disk_message(error: BaseException) -> str | None:
    """What to tell the user when ``error`` is a full disk (or quota), else None (the
    writes here are atomic, so the files being written were left as they were)."""
    if not isinstance(error, OSError) or error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f" writing {error.filename}" if error.filename else ""
    return (f"{os.strerror(error.errno)}{where}; the files being written were left as they "
            "were (nothing half-written): free some space and run the command again (a run "
            "resumes from its last checkpoint with --resume, a sweep skips its finished runs)")


@contextlib.contextmanager
def full_disk_exits(prog: str):
    """A full disk inside this block ends the command with :func:`full_disk_message` and
    status 1, not a traceback (the command lines run in one)."""
    try:
        yield
    except OSError as error:
        message = full_disk_message(error)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


STALE_SECONDS = 3600  # a temporary file of ours this old was left by a killed writer


def _clean_stale(path: Path) -> None:
    """Remove temporary files of ``path`` (".<name>.*.tmp", ours by name) older than
    :data:`STALE_SECONDS`: a writer killed mid-write (SIGKILL) cannot clean up after itself."""
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass  # another writer's cleanup got there first, or it is not ours to remove


class _Interrupted(BaseException):
    """SIGINT or SIGTERM during a write (:func:`_interrupts_unwind`)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_held: list | None = None  # signals that arrived while files were renamed (:func:`_renaming`)


def _interrupt(signum, frame):
    if _held is not None:
        _held.append(signum)
        return
    raise _Interrupted(signum)


@contextlib.contextmanager
def _interrupts_unwind():
    """While a write's temporary files exist, SIGTERM unwinds the stack as SIGINT does, so
    that their cleanup runs (by default SIGTERM ends the process on the spot and leaves them
    for an hour); on the way out the signal is raised again, to end the process as it
    would have. Only default handlers are replaced, and only the main thread can."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    replaced = [signum for signum, handler in defaults.items()
                if signal.getsignal(signum) is handler]
    for signum in replaced:
        signal.signal(signum, _interrupt)
    try:
        yield
    except _Interrupted as interrupted:
        if replaced:   # the outermost write: the temporary files are gone by now
            for signum in replaced:
                signal.signal(signum, defaults[signum])
            signal.raise_signal(interrupted.signum)   # SIGINT: KeyboardInterrupt from here
        raise
    finally:
        for signum in replaced:
            signal.signal(signum, defaults[signum])


@contextlib.contextmanager
def _renaming():
    """Files renamed into place in this block are renamed all or none on SIGINT/SIGTERM:
    a signal waits for the end of the block."""
    global _held
    _held = []
    try:
        yield
    finally:
        held, _held = _held, None
        if held:
            raise _Interrupted(held[0])


@contextlib.contextmanager
def _staged(path: Path, write):
    """A temporary file beside ``path`` holding what ``write(tmp_path)`` wrote, flushed to
    disk; the caller renames it into place. It is removed if it is still there at the end
    (an error, a full disk, SIGINT or SIGTERM), as are stale ones of earlier, killed
    writes of ``path``."""
    _clean_stale(path)
    with _interrupts_unwind():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
            yield Path(tmp)
        except OSError as error:
            if full_disk_message(error) and not error.filename:
                error.filename = str(path)   # the file, not its temporary name
            raise
        finally:
            Path(tmp).unlink(missing_ok=True)


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)``, flush it to disk, then rename it into ``path``: an
    interrupted write (an error, a full disk, SIGINT or SIGTERM) never leaves a
    half-written file (the previous one stays). Stale temporary files of earlier, killed
    writes of ``path`` are removed first."""
    path = Path(path)
    with _staged(path, write) as tmp:
        os.replace(tmp, path)
    return path


def _read_manifest(manifest_path: Path) -> dict:
    """The manifest's entries; a file that is not a JSON object of entries with a sha256 is
    a ReferenceFileError naming it."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReferenceFileError(f"cannot read the manifest {manifest_path}: {error}; restore it "
                             f"(git checkout) or regenerate the references in that folder "
                             f"(python -m reference generate --all --out {manifest_path.parent})"
                             ) from None
    bad = [name for name, entry in manifest.items() if not isinstance(entry, dict)
           or not isinstance(entry.get("sha256"), str)] if isinstance(manifest, dict) else [None]
    if bad:
        raise ReferenceFileError(f"the manifest {manifest_path} has entries without a sha256 "
                             f"({bad}); restore it (git checkout) or regenerate those references")
    return manifest


def _install_listed(tmp: Path, path: Path) -> str:
    """Rename the written reference ``tmp`` into ``path`` together with its manifest entry;
    returns its sha256. The new manifest is written in full first, then both are renamed
    back to back (:func:`_renaming`), so no failure leaves a file the manifest does not
    list. Writers of one folder (e.g. ranks generating references at once) take turns
    under an exclusive lock on a lock file, so none loses another's entry."""
    import fcntl

    digest = sha256(tmp)
    manifest_path = path.parent / MANIFEST
    with open(path.parent / f".{MANIFEST}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file is closed
        manifest = _read_manifest(manifest_path) if manifest_path.exists() else {}
        manifest[path.name] = {"sha256": digest, "size": tmp.stat().st_size}
        text = json.dumps(dict(sorted(manifest.items())), indent=2) + "\n"
        with _staged(manifest_path, lambda t: t.write_text(text)) as manifest_tmp, _renaming():
            os.replace(tmp, path)
            os.replace(manifest_tmp, manifest_path)
    return digest


def write_reference(path, case, *, grid_fields, mesh=None, mesh_fields=None, solver=None,
                    verification=None, generator=None, manifest=True) -> str:
    """Write the reference of ``case`` to ``path`` (atomically); returns its sha256.

    ``grid_fields`` maps every field of the case to its values on
    :func:`evaluation_grid` (shape (ny, nx) in 2D). See the module docstring for the rest.
    """
    import h5py  # deferred: importing this module must not need h5py (e.g. for paths)

    path = Path(path)
    grid = evaluation_grid(case)
    shape = grid["weight"].shape
    missing = [f for f in case.fields if f not in grid_fields]
    if missing:
        raise ValueError(f"grid_fields lacks the field(s) {missing} of case {case.name!r}")
    for name, values in grid_fields.items():
        if np.shape(values) != shape:
            raise ValueError(f"grid field {name!r} has shape {np.shape(values)}, grid is {shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"grid field {name!r} holds non-finite values")

    generator = {"git_commit": _git_commit(), **(generator or {})}
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with h5py.File(tmp, "w", driver=None) as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["case"] = case.name
            f.attrs["params"] = _json(case.params())
            f.attrs["generator"] = _json(generator)
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["solver"] = _json(solver)
            f.attrs["verification"] = _json(verification)
            g = f.create_group("grid")
            for name, values in {**grid, **grid_fields}.items():
                g.create_dataset(name, data=np.asarray(values, dtype=float))
            if mesh is not None:
                m = f.create_group("mesh")
                m.create_dataset("vertices", data=np.asarray(mesh["vertices"], dtype=float))
                m.create_dataset("cells", data=np.asarray(mesh["cells"], dtype=np.int64))
                for name, values in (mesh_fields or {}).items():
                    m.create_dataset(name, data=np.asarray(values, dtype=float))

    if not manifest:
        return sha256(atomic_write(path, write))
    with _staged(path, write) as tmp:
        return _install_listed(tmp, path)


# --- reading --------------------------------------------------------------------------------
def _check(path: Path, verify: bool) -> None:
    if not path.exists():
        raise ReferenceFileError(f"reference file {path} does not exist; {_regenerate_hint(path)}")
    if not verify:
        return
    manifest_path = path.parent / MANIFEST
    if not manifest_path.exists():
        raise ReferenceFileError(
            f"no {MANIFEST} next to {path}, so the file cannot be verified; "
            f"{_regenerate_hint(path)}"
        )
    entry = _read_manifest(manifest_path).get(path.name)
    if entry is None:
        raise ReferenceFileError(f"{path} is not listed in {manifest_path}; {_regenerate_hint(path)}")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise ReferenceFileError(
            f"{path} does not match its manifest entry (sha256 {actual[:12]}... != "
            f"{entry['sha256'][:12]}...): the file is stale or corrupted; {_regenerate_hint(path)}"
        )


def _open(path: Path):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ReferenceFileError(
            f"{path} is not a readable HDF5 file ({err}); it may be truncated; "
            f"{_regenerate_hint(path)}"
        ) from None
    version = f.attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        f.close()
        raise ReferenceFileError(
            f"{path} has schema version {version}, this code reads version {SCHEMA_VERSION}; "
            f"{_regenerate_hint(path)}"
        )
    return f


def open_reference(path, verify: bool = True, case=None):
    """Open a reference file as an ``xarray.Dataset`` on its evaluation grid.

    Dimensions ``y`` and ``x`` (1D cases: ``x``); data variables: every field and
    ``weight``; attributes: ``case``, ``params``, ``generator``, ``solver``,
    ``verification`` (dicts), ``created``, ``schema_version``, ``sha256``, ``path``.
    With ``verify`` the file's sha256 must match the manifest beside it; with ``case`` the
    file must hold that case's reference (:func:`check_case`). Raises
    :class:`ReferenceFileError` saying what is wrong and how to regenerate the file.
    """
    import xarray as xr

    path = Path(path)
    _check(path, verify)
    with _open(path) as f:
        attrs = {key: f.attrs[key] for key in f.attrs}
        grid = {name: f["grid"][name][()] for name in f["grid"]}
    attrs = {key: (value.item() if isinstance(value, np.generic) else value)
             for key, value in attrs.items()}
    for key in ("params", "generator", "solver", "verification"):
        attrs[key] = json.loads(attrs[key])
    attrs.update(sha256=sha256(path), path=str(path))
    from reference.cases import case_from_params

    try:
        fields = case_from_params(attrs["case"], attrs["params"]).fields
    except (KeyError, TypeError, ValueError) as error:
        raise ReferenceFileError(f"{path} names a case this code does not know ({error}); "
                             f"{_regenerate_hint(path)}") from None
    missing = [name for name in (*fields, "weight", "x") if name not in grid]
    if missing:
        raise ReferenceFileError(f"{path} lacks the dataset(s) {missing} of its case "
                             f"{attrs['case']}; {_regenerate_hint(path)}")
    dims = ("y", "x") if "y" in grid else ("x",)
    coords = {dim: grid.pop(dim) for dim in dims}
    data = {name: (dims, values) for name, values in grid.items()}
    dataset = xr.Dataset(data, coords=coords, attrs=attrs)
    if case is not None:
        check_case(dataset, case)
    return dataset


def check_case(reference, case) -> None:
    """ReferenceFileError naming both when ``reference`` (a Dataset of :func:`open_reference`)
    is not the reference of ``case``: another case or other parameters (a file stored, and
    listed in the manifest, under another case's name: its sha256 matches, so only this
    tells), or another evaluation grid than :func:`evaluation_grid` gives. Every reader
    that scores a case against a file checks it here."""
    from reference.cases import case_from_params

    path = Path(reference.attrs.get("path", reference_path(case)))
    stored = case_from_params(reference.attrs["case"], reference.attrs["params"])
    if stored != case:
        # under the case's own name the file is mislabeled; under another, the wrong one
        hint = (f"; {_regenerate_hint(path)}" if path.name == reference_path(case).name else "")
        raise ReferenceFileError(f"{path} holds the reference of {stored.name} {stored.params()}, "
                                 f"not of {case.name} {case.params()}{hint}")
    grid = evaluation_grid(case)
    for axis in ("x", "y")[: case.dim]:
        if not np.allclose(reference[axis].values, grid[axis], rtol=0, atol=1e-12):
            raise ReferenceFileError(f"{path} is stored on another {axis}-grid than "
                                     f"evaluation_grid gives; {_regenerate_hint(path)}")


def read_mesh(path, verify: bool = True) -> dict[str, np.ndarray]:
    """The mesh group of a reference file: vertices, cells and the vertex fields."""
    path = Path(path)
    _check(path, verify)
    with _open(path) as f:
        if "mesh" not in f:
            raise ReferenceFileError(f"{path} stores no mesh")
        return {name: f["mesh"][name][()] for name in f["mesh"]}
