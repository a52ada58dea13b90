"""Time one training epoch of the exact model on the full 60k MNIST training set.

Usage: python tools/bench_train.py [--hidden 800] [--threads 1 2] [--dtype float64 float32]
                                   [--batch-size 32 ...] [--limit N] [--profile K] [--epochs E]
                                   [--test-accuracy]
Runs each (threads, dtype, batch size) combination side by side in one process (same data, same
seed) and prints seconds per epoch (wall and CPU, all threads), one JSON line each, with the load
average. BLAS is pinned to one thread (Numba does the work). ``--profile K`` runs each epoch
under cProfile and prints the K functions with the most own time (a Numba kernel is one call:
its whole time is its own).
``--epochs E`` times E epochs (the figure is per epoch); ``--test-accuracy`` adds the 10k
test-set accuracy of the network each run ends with (outside the timing).
For old vs new side by side, ``--trees OLD NEW`` runs every (threads, dtype, batch size) row once
per tree in turn, each in a fresh process with ``PYTHONPATH`` set to that tree (e.g. ``git
archive ec8c57a | tar -x -C /tmp/old``), and adds a row with the ratios first tree / each other.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import time

import numba
from _machine import cpu_model

import popcount_learn
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.evaluate import evaluate_exact
from popcount_learn.train import TrainConfig, train_exact


def _top_functions(profile: cProfile.Profile, k: int) -> list[dict]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (path, line, name), (_cc, calls, tottime, _cum, _callers) in stats.stats.items():
        rows.append({"function": f"{os.path.basename(path)}:{line}:{name}", "calls": calls, "own_s": round(tottime, 2)})
    rows.sort(key=lambda r: -r["own_s"])
    return rows[:k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=800)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[TrainConfig().batch_size])
    ap.add_argument("--sparsity", type=float, default=TrainConfig().sparsity)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--profile", type=int, default=0, metavar="K", help="print the K costliest functions")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--test-accuracy", action="store_true")
    ap.add_argument("--trees", nargs="+", default=None, metavar="DIR", help="run each row in each tree, side by side")
    args = ap.parse_args()
    if args.trees:
        _side_by_side(args)
        return
    images, labels = load_mnist(default_data_dir(), "train")
    test_images, test_labels = load_mnist(default_data_dir(), "test")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    # Warm-up compiles every kernel for every dtype (cache=True makes later runs cheap).
    for dtype in args.dtype:
        for batch in args.batch_size:
            cfg = TrainConfig(hidden=(args.hidden,), epochs=1, dtype=dtype, sparsity=args.sparsity, batch_size=batch)
            train_exact(images[:256], labels[:256], cfg)
    print(
        json.dumps(
            {
                "library": os.path.dirname(popcount_learn.__file__),
                "cpu": cpu_model(),
                "nproc": os.cpu_count(),
                "numba": numba.__version__,
                "n_images": len(labels),
            }
        )
    )
    for threads in args.threads:
        numba.set_num_threads(threads)
        for dtype in args.dtype:
            for batch in args.batch_size:
                cfg = TrainConfig(
                    hidden=(args.hidden,), epochs=args.epochs, dtype=dtype, sparsity=args.sparsity, batch_size=batch
                )
                load_before = os.getloadavg()[0]
                profile = cProfile.Profile() if args.profile else None
                t0, c0 = time.perf_counter(), time.process_time()
                if profile:
                    profile.enable()
                network, _history = train_exact(images, labels, cfg)
                if profile:
                    profile.disable()
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                row = {
                    "hidden": args.hidden,
                    "threads": threads,
                    "dtype": dtype,
                    "batch_size": batch,
                    "epochs": args.epochs,
                    "seconds_per_epoch": round(dt / args.epochs, 2),
                    "images_per_s": round(len(labels) * args.epochs / dt),
                    "cpu_seconds_all_threads": round(cpu, 2),
                    "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }
                if args.test_accuracy:
                    row["test_accuracy"] = round(
                        float(evaluate_exact(network, test_images, test_labels).summary()["accuracy"]), 4
                    )
                if profile:
                    row["top_own_time"] = _top_functions(profile, args.profile)
                print(json.dumps(row), flush=True)


def _side_by_side(args):
    """Each row once per tree, in turn, in a fresh process; then the ratios to the first tree."""
    common = ["--hidden", str(args.hidden), "--sparsity", str(args.sparsity), "--epochs", str(args.epochs)]
    common += ["--limit", str(args.limit)] if args.limit else []
    common += ["--profile", str(args.profile)] if args.profile else []
    common += ["--test-accuracy"] if args.test_accuracy else []
    for threads in args.threads:
        for dtype in args.dtype:
            for batch in args.batch_size:
                rows = []
                for tree in args.trees:
                    row_args = ["--threads", str(threads), "--dtype", dtype, "--batch-size", str(batch), *common]
                    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                    out = subprocess.run(
                        [sys.executable, os.path.abspath(__file__), *row_args],
                        env=env,
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                    head, row = lines[0], lines[-1]
                    row = {"tree": tree, **row}
                    if not os.path.samefile(head["library"], os.path.join(tree, "popcount_learn")):
                        raise SystemExit(f"{tree}: ran the library in {head['library']}")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                first = rows[0]
                ratios = {
                    "threads": threads,
                    "dtype": dtype,
                    "batch_size": batch,
                    "wall_ratio_first_over": {
                        r["tree"]: round(first["seconds_per_epoch"] / r["seconds_per_epoch"], 2) for r in rows[1:]
                    },
                    "cpu_ratio_first_over": {
                        r["tree"]: round(first["cpu_seconds_all_threads"] / r["cpu_seconds_all_threads"], 2)
                        for r in rows[1:]
                    },
                }
                print(json.dumps(ratios), flush=True)


if __name__ == "__main__":
    main()
