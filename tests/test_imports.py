"""`import pinn` and the light part of `reference` must work where DOLFINx is absent
(a GPU machine, a laptop with only PyTorch). A subprocess blocks the import of dolfinx,
petsc4py and mpi4py and imports every module of those packages."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent("""
    import importlib.abc, pkgutil, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"dolfinx", "petsc4py", "mpi4py", "ufl", "basix"}:
                raise ImportError(f"blocked: {name}")
    sys.meta_path.insert(0, Block())
    try:
        import dolfinx
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not work")
    import pinn, reference
    from reference import store, cases, exact
    for package in (pinn, reference):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith("reference.fem") or info.name == "reference.__main__":
                continue
            __import__(info.name)
    print("ok")
""")


def test_light_modules_import_without_dolfinx():
    out = subprocess.run([sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
