"""Where the pressure error of eof-patch lives: a refinement study on the two coarse levels.

For each discretisation (velocity/pressure pair; corner layers of the mesh or not) solve
eof-patch at Pe = 0 on the meshes with 1/4 and 1/2 of the cells of the stored mesh and
print, on the evaluation grid, the relative L2 difference d = ||f_N/2 - f_N/4|| / ||f||
per field and the share of d(p)^2 in two regions (the four corners, the patch). The
corner share is what the end layers (reference.fem.meshes) remove.

    mpirun -n 2 .venv/bin/python scripts/patch_pressure_study.py
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reference import store  # noqa: E402
from reference.cases import get_case  # noqa: E402
from reference.fem import compat, eof, generate  # noqa: E402
from reference.fem.meshes import channel_mesh_spec  # noqa: E402

FIELDS = ("phi", "c_plus", "c_minus", "u", "v", "p")


def flow_pair(velocity: int, pressure: int):
    """eof.mixed_space with the given velocity/pressure degrees (P2 phi, c+-)."""
    return lambda msh: compat.mixed_space(
        msh, [(2, ()), (2, ()), (2, ()), (velocity, (2,)), (pressure, ())])


def main():
    comm = MPI.COMM_WORLD
    case = get_case("eof-patch", Pe=0.0)
    grid = store.evaluation_grid(case)
    X, Y = np.meshgrid(grid["x"], grid["y"])
    w = grid["weight"]
    norm = lambda f, mask=1.0: np.sqrt(np.sum(w * mask * f**2))
    regions = {"corners (0.03 x 0.02)": (np.minimum(X, case.length - X) < 0.03)
               & (np.minimum(Y, 1 - Y) < 0.02),
               "patch (centre +- 1.5 widths)":
               np.abs(X - case.patch_center) < 1.5 * case.patch_width}
    layered = channel_mesh_spec(case)
    # The same cell counts without the layers (the mesh used before them).
    plain = replace(layered, side_layers=(0.0, 0.0), wall_layers=(0.0, 0.0))
    for pair, spec in (((2, 1), plain), ((3, 2), plain), ((3, 2), layered)):
        eof.mixed_space = flow_pair(*pair)
        fields = [generate._on_grid(eof.solve(case, spec.refined(f), comm), case)
                  for f in (0.25, 0.5)]
        if comm.rank:
            continue
        coarse, fine = fields
        d = {k: norm(fine[k] - coarse[k]) / norm(fine[k]) for k in FIELDS}
        dp = fine["p"] - coarse["p"]
        share = {name: norm(dp, m) ** 2 / norm(dp) ** 2 for name, m in regions.items()}
        layers = "with" if spec.side_layers[0] else "without"
        print(f"P{pair[0]}/P{pair[1]}, {layers} corner layers, N/4 -> N/2 "
              f"({spec.refined(0.5).nx} x {spec.refined(0.5).ny}):")
        print("  d: " + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
        print("  share of d(p)^2: " + ", ".join(f"{k} {v:.2f}" for k, v in share.items()))
    if comm.rank == 0:
        p = fine["p"]
        print(f"||p|| = {norm(p):.3e} (grid L2), max |p| = {np.abs(p).max():.3e}")


if __name__ == "__main__":
    main()
