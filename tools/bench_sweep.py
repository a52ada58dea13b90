"""Wall time of a sweep on a local Dask cluster, per worker count, and the cost per point.

    python tools/bench_sweep.py tools/sweeps/mnist-bits-shift-hidden.toml --workers 1 2 --out-root build/sweep-bench

For each worker count N (Numba threads per worker: cores / N unless --threads-per-worker), the
sweep runs from scratch into OUT_ROOT/wN and the figures are printed as one JSON line: wall
seconds, cluster start, the points' own seconds summed (busy), the idle worker time per point
((points_seconds * N - busy) / points: Dask's scheduling, the client's store writes and the tail
where fewer points than workers are left), and the load average before and after. The last line
compares the runs' result rows (they must be byte-identical).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _machine import machine

from popcount_learn.sweep import SweepStore, load_sweep
from popcount_learn.sweep.runner import run_sweep


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_file")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads-per-worker", type=int, default=None)
    p.add_argument("--out-root", default="build/sweep-bench")
    p.add_argument("--keep", action="store_true", help="resume into existing directories instead of starting anew")
    args = p.parse_args(argv)
    sweep = load_sweep(args.sweep_file)
    print(json.dumps({"machine": machine(), "sweep": args.sweep_file, "points": len(sweep.points)}), flush=True)
    rows = {}
    for n in args.workers:
        suffix = "" if args.threads_per_worker is None else f"t{args.threads_per_worker}"
        out = Path(args.out_root) / f"w{n}{suffix}"
        if out.exists() and not args.keep:
            shutil.rmtree(out)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        s = run_sweep(sweep, out, workers=n, threads_per_worker=args.threads_per_worker, dashboard_address=":0")
        wall = time.perf_counter() - t0
        ran = max(1, s["ran"])
        record = {
            "workers": n,
            "numba_threads_per_worker": s.get("numba_threads_per_worker"),
            "points": s["points"],
            "ran": s["ran"],
            "failed": s["failed"],
            "wall_seconds": round(wall, 1),
            "cluster_start_seconds": round(s.get("cluster_start_seconds", 0.0), 1),
            "points_seconds": round(s.get("points_seconds", 0.0), 1),
            "busy_seconds": round(s.get("busy_seconds", 0.0), 1),
            "client_record_seconds_per_point": round(s.get("client_record_seconds", 0.0) / ran, 4),
            "mean_point_seconds": round(s.get("busy_seconds", 0.0) / ran, 3),
            "idle_worker_seconds_per_point": round(
                (s.get("points_seconds", 0.0) * n - s.get("busy_seconds", 0.0)) / ran, 3
            ),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        print(json.dumps(record), flush=True)
        with SweepStore(out, create=False) as store:
            rows[n] = store.raw_rows()
    first = next(iter(rows.values()))
    print(json.dumps({"result_rows_identical_across_runs": all(r == first for r in rows.values())}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
