"""Seconds per training epoch of the exact trainer on graded (latency-coded) MNIST, trees side by side.

Usage: python tools/bench_graded_epoch.py --trees OLD_TREE NEW_TREE [--limit 6000] [--hidden 800]
                                          [--t-max T] [--init MODEL.h5] [--repeat 2] [--threads 1]

Each repeat trains one epoch of ``popcount-learn train --encoding latency`` in a fresh process per
tree (``PYTHONPATH`` = the tree; the trees alternate, so both see the same load) and reads the
epoch's seconds (the training loop only, not the test evaluation) from the model file's history.
``--init`` starts every run from a trained model (the weights a long run spends most epochs on:
most hidden neurons then fire after the last input), otherwise from the default initialisation.
Prints one JSON line per run, then the median seconds per tree and their ratio, with the load.
The weights each tree ends with are compared: the kernels are meant to give the same numbers.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _machine import machine

import popcount_learn.h5io as h5io


def _one_epoch(tree, args, out) -> dict:
    cmd = [sys.executable, "-m", "popcount_learn.cli", "--threads", str(args.threads), "train", "--epochs", "1"]
    cmd += ["--limit", str(args.limit), "--no-progress", "--json", "--out", out]
    cmd += ["--init", args.init] if args.init else ["--encoding", "latency"]
    cmd += ["--t-max", str(args.t_max)] if args.t_max is not None and not args.init else []
    cmd += [] if args.init else ["--hidden", str(args.hidden)]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    load_before = os.getloadavg()[0]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=os.path.abspath(tree))
    model = h5io.read_model_file(out)
    weights = b"".join(w.tobytes() for w in model.model.weights)
    return {
        "tree": tree,
        "epoch_s": round(model.metadata["history"][0]["seconds"], 2),
        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "weights_sha256": hashlib.sha256(weights).hexdigest()[:16],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", nargs=2, required=True, metavar=("OLD", "NEW"))
    ap.add_argument("--limit", type=int, default=6000)
    ap.add_argument("--hidden", type=int, default=800)
    ap.add_argument("--t-max", type=float, default=None, help="default: the trainer's, derived from the data")
    ap.add_argument("--init", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps({"machine": machine(), **vars(args)}))
    runs = {tree: [] for tree in args.trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for k, tree in enumerate(args.trees):
                row = _one_epoch(tree, args, os.path.join(tmp, f"m{r}-{k}.h5"))
                runs[tree].append(row)
                print(json.dumps(row), flush=True)
    old, new = (statistics.median(row["epoch_s"] for row in runs[t]) for t in args.trees)
    same = len({row["weights_sha256"] for rows in runs.values() for row in rows}) == 1
    print(json.dumps({"old_epoch_s": old, "new_epoch_s": new, "speedup": round(old / new, 2), "same_weights": same}))


if __name__ == "__main__":
    main()
