"""Time one training epoch of the exact model on the full 60k MNIST training set.

Usage: python tools/bench_train.py [--hidden 800] [--threads 1 2] [--dtype float64 float32]
Runs each (threads, dtype) combination side by side in one process (same data, same seed)
and prints seconds per epoch. BLAS is pinned to one thread (Numba does the work).
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import time

import numba
from _machine import cpu_model

from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.train import TrainConfig, train_exact


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=800)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    ap.add_argument("--sparsity", type=float, default=TrainConfig().sparsity)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    images, labels = load_mnist(default_data_dir(), "train")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    # Warm-up compiles every kernel for every dtype (cache=True makes later runs cheap).
    for dtype in args.dtype:
        train_exact(
            images[:256],
            labels[:256],
            TrainConfig(hidden=(args.hidden,), epochs=1, dtype=dtype, sparsity=args.sparsity),
        )
    print(
        json.dumps({"cpu": cpu_model(), "nproc": os.cpu_count(), "numba": numba.__version__, "n_images": len(labels)})
    )
    for threads in args.threads:
        numba.set_num_threads(threads)
        for dtype in args.dtype:
            cfg = TrainConfig(hidden=(args.hidden,), epochs=1, dtype=dtype, sparsity=args.sparsity)
            t0 = time.perf_counter()
            train_exact(images, labels, cfg)
            dt = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "hidden": args.hidden,
                        "threads": threads,
                        "dtype": dtype,
                        "seconds_per_epoch": round(dt, 2),
                        "images_per_s": round(len(labels) / dt),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
