"""Print the verification tables of the stored FE references (markdown) and draw the field
pictures of docs/cases/img/. Run from the repository root: .venv/bin/python scripts/fem_docs.py"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reference import store  # noqa: E402
from reference.cases import sweep  # noqa: E402

IMG = Path(__file__).resolve().parent.parent / "docs" / "cases" / "img"


def straight():
    print("| eps | mesh (nx x ny, beta) | DOFs | Newton | phi | c_plus | c_minus | u | v (abs) | p (abs) | Q variation |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in sweep("eof-straight"):
        ds = store.open_reference(store.reference_path(case))
        v, s = ds.attrs["verification"], ds.attrs["solver"]
        e, a, m = v["relative_l2_vs_exact"], v["absolute_l2_vs_exact"], v["mesh"]
        print(f"| {case.eps:g} | {m['nx']} x {m['ny']}, {m['beta']:.2f} | {s['dofs']} | "
              f"{s['newton_iterations']} | " + " | ".join(f"{e[k]:.1e}" for k in ("phi", "c_plus", "c_minus", "u"))
              + f" | {a['v']:.1e} | {a['p']:.1e} | {v['flow_rate']['relative_variation']:.1e} |")
    print("\nMMS orders (n = 8/16 -> 16/32):", {k: [round(r, 2) for r in x] for k, x in v["mms"]["rates"].items()})
    print("symmetry eps=0.05:", v["symmetry_max_abs"], "ion flux:", v["ion_flux_relative"])


def patch():
    print("| Pe | DOFs | Newton | field | est. rel. error (observed order) | order | differs from Pe=0 |")
    print("|---|---|---|---|---|---|---|")
    for case in sweep("eof-patch"):
        ds = store.open_reference(store.reference_path(case))
        v, s = ds.attrs["verification"], ds.attrs["solver"]
        r = v["richardson"]
        for k in ("phi", "c_plus", "c_minus", "u", "v", "p"):
            diff = v.get("relative_difference_from_Pe0", {}).get(k)
            print(f"| {case.Pe:g} | {s['dofs']} | {s['newton_iterations']} | {k} | "
                  f"{r['estimated_relative_error'][k]:.1e} | {r['observed_order'][k]:.2f} | "
                  + (f"{diff:.1e}" if diff is not None else "-") + " |")
        print("| | | | Q variation | " + f"{v['flow_rate']['relative_variation']:.1e} | | |")
    print("mesh:", v["mesh"], "wall_time", s["wall_time"])


def npp():
    print("| eps | cells | Newton | max abs c_plus | c_minus | phi |")
    print("|---|---|---|---|---|---|")
    for case in sweep("npp"):
        ds = store.open_reference(store.reference_path(case))
        v, s = ds.attrs["verification"]["max_abs_vs_exact"], ds.attrs["solver"]
        print(f"| {case.eps:g} | {s['cells']} | {s['newton_iterations']} | "
              + " | ".join(f"{v[k]:.1e}" for k in ("c_plus", "c_minus", "phi")) + " |")


def picture(case, name):
    ds = store.open_reference(store.reference_path(case))
    fig, axes = plt.subplots(2, 3, figsize=(10, 4.6 if case.length > 1 else 6), constrained_layout=True)
    for ax, field in zip(axes.ravel(), ("phi", "c_plus", "c_minus", "u", "v", "p")):
        im = ax.pcolormesh(ds.x, ds.y, ds[field], shading="gouraud", cmap="RdBu_r")
        ax.set_title(field)
        ax.set_aspect("equal")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(case.label)
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / name, dpi=70)


if __name__ == "__main__":
    straight()
    patch()
    npp()
    picture(sweep("eof-straight")[1], "eof-straight-eps0.2.png")
    picture(sweep("eof-patch")[2], "eof-patch-Pe10.png")
