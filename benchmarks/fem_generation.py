"""Time the straight-channel reference at eps = 0.05 at its stored accuracy, serial and
with MPI ranks: DOFs, Newton iterations, wall time of the solve, speedup.

    python benchmarks/fem_generation.py [--ranks 2] [--eps 0.05]

The script runs itself under ``mpirun -n RANKS`` for the parallel timing (each timing is
the best of 3 solves after one warm-up that JIT-compiles the forms).
"""

import argparse
import json
import os
import sys
import time


def measure(eps: float, repeats: int = 3) -> dict:
    from mpi4py import MPI

    from reference.cases import get_case
    from reference.fem import eof

    case = get_case("eof-straight", eps=eps)
    eof.solve(case)  # warm-up: form compilation
    times = []
    for _ in range(repeats):
        MPI.COMM_WORLD.Barrier()
        start = time.perf_counter()
        solution = eof.solve(case)
        times.append(MPI.COMM_WORLD.allreduce(time.perf_counter() - start, op=MPI.MAX))
    return {"ranks": MPI.COMM_WORLD.size, "dofs": solution.stats["dofs"],
            "newton_iterations": solution.stats["newton_iterations"], "wall_time": min(times),
            "mesh": solution.spec.as_dict()}


def main():
    from reference.mpirun import mpirun

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = measure(args.eps)
        from mpi4py import MPI
        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(result))
        return
    serial = measure(args.eps)
    out = mpirun(args.ranks, [sys.executable, __file__, "--worker", "--eps", str(args.eps)],
                 check=True, capture_output=True, text=True).stdout
    parallel = json.loads(out.strip().splitlines()[-1])
    print(f"eof-straight eps={args.eps}: {serial['dofs']} DOFs, mesh {serial['mesh']['nx']} x "
          f"{serial['mesh']['ny']} crossed")
    for r in (serial, parallel):
        print(f"  {r['ranks']} rank(s): {r['newton_iterations']} Newton iterations, "
              f"{r['wall_time']:.3f} s")
    print(f"  speedup with {args.ranks} ranks: {serial['wall_time'] / parallel['wall_time']:.2f}x")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
