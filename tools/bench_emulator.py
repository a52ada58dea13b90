"""Throughput of the bit-exact Numba emulator vs the dense numpy version on the MNIST test set.

Usage: python tools/bench_emulator.py [WEIGHT_IMAGE.h5] [--threads 1 2] [--limit N] [--repeat 3]
                                     [--blas-threads 1]

Without a weight image it quantises a random 784-600-10 float network to int8, with weight
means chosen so that about a third of the hidden neurons fire before the decision.
Both versions run on the same image and inputs and must give identical predictions, first
output steps and ties. The dense version's matrix products go through BLAS (float64, exact
for these integers) with --blas-threads threads (default 1; set before numpy is imported);
the Numba emulator runs once per requested thread count.
Prints one JSON object: machine, load, images/s per thread count (wall, and CPU seconds of all
threads per image), the dense figure and ratios.
For old vs new side by side, ``--trees OLD NEW`` runs the whole measurement once per tree in
turn, ``--rounds R`` times (fresh processes, ``PYTHONPATH`` set to the tree, e.g. ``git archive
ef8b831 | tar -x -C /tmp/old``), and prints each run, then the best per tree and the ratios of
each tree over the first.
"""

import os
import sys

# BLAS threads can only be set before numpy is imported: --blas-threads N is read here.
_BLAS_THREADS = sys.argv[sys.argv.index("--blas-threads") + 1] if "--blas-threads" in sys.argv else "1"
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = _BLAS_THREADS

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numba
import numpy as np
from _machine import cpu_model
from _side_by_side import run_trees, strip_tree_args

from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate, encode_input_steps, summarize
from popcount_learn.network import ExactNetwork
from popcount_learn.quantize import quantize

HERE = Path(__file__).resolve().parent


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def random_image(seed: int = 0):
    """A random int8 784-600-10 weight image whose neurons do fire on MNIST digits.

    Hidden weights N(0.01, 0.1): ~100 bright pixels give a mean arrived sum of ~1.2 (threshold
    1), so many but not all hidden neurons fire; output weights N(0.005, 0.05) likewise.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.01, 0.1, size=(785, 600))
    w2 = rng.normal(0.005, 0.05, size=(601, 10))
    return quantize(ExactNetwork([w1, w2]), bits=8, provenance={"mode": "random", "seed": seed})


def load_dense():
    spec = importlib.util.spec_from_file_location("dense_numpy_emulator", HERE / "dense_numpy_emulator.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def best_time(fn, repeat: int) -> tuple[float, float]:
    """Best wall and best CPU seconds (all threads of the process) of ``repeat`` calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", help="weight image (.h5); default: random int8 784-600-10")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--limit", type=int, default=None, help="use the first N test images")
    ap.add_argument("--repeat", type=int, default=3, help="Numba timings: best of N runs")
    ap.add_argument("--data", default=None, help="MNIST directory (default: the shipped copy)")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads of the dense version (default 1)")
    ap.add_argument("--trees", nargs="+", default=None, metavar="DIR", help="old vs new: run in each tree in turn")
    ap.add_argument("--rounds", type=int, default=3, help="with --trees: runs per tree, alternating (default 3)")
    args = ap.parse_args()
    if args.trees:
        figures = [f"{key}.{t}" for key in ("numba_images_per_s", "numba_images_per_cpu_s") for t in args.threads]
        run_trees(
            __file__, strip_tree_args(sys.argv[1:]), args.trees, args.rounds, [*figures, "dense_numpy_images_per_s"]
        )
        return 0

    if args.image:
        from popcount_learn import h5io

        image = h5io.load_weight_image(args.image)
        source = args.image
    else:
        image = random_image()
        source = "random int8 784-600-10 (seed 0)"
    images, labels = load_mnist(args.data or default_data_dir(), "test")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    n = len(images)
    load_before = load_average()

    steps = encode_input_steps(image.spec, images)
    emulate(image, images[:8])  # compile (or load the cache) outside the timings
    numba_rates = {}
    cpu_rates = {}
    result = None
    for threads in args.threads:
        numba.set_num_threads(threads)
        seconds, cpu_seconds = best_time(lambda: emulate(image, images), args.repeat)
        numba_rates[threads] = n / seconds
        cpu_rates[threads] = n / cpu_seconds
    result = emulate(image, images)
    summary = summarize(result, labels)

    dense = load_dense()
    t0 = time.perf_counter()
    dense_out = dense.dense_emulate(image, steps)
    dense_seconds = time.perf_counter() - t0
    for name in ("predicted", "first_output_step", "tie"):
        if not np.array_equal(dense_out[name], getattr(result, name)):
            print(f"MISMATCH between the Numba and the dense emulator in {name}", file=sys.stderr)
            return 1
    for k, (a, b) in enumerate(zip(dense_out["spike_steps"], result.spike_steps, strict=True)):
        if not np.array_equal(a, b):
            print(f"MISMATCH between the Numba and the dense emulator in spike_steps[{k}]", file=sys.stderr)
            return 1
    dense_rate = n / dense_seconds

    import popcount_learn

    report = {
        "library": os.path.dirname(os.path.abspath(popcount_learn.__file__)),
        "source": source,
        "topology": list(image.topology),
        "weight_bits": image.spec.weight_bits,
        "n_images": n,
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "numba": numba.__version__, "numpy": np.__version__},
        "blas_threads_dense": args.blas_threads,
        "load_average": load_before,
        "load_average_after": load_average(),
        "numba_images_per_s": {str(t): round(r) for t, r in numba_rates.items()},
        "numba_images_per_cpu_s": {str(t): round(r) for t, r in cpu_rates.items()},
        "dense_numpy_images_per_s": round(dense_rate, 1),
        "ratio_numba_over_dense": {str(t): round(r / dense_rate, 1) for t, r in numba_rates.items()},
        "bit_exact_vs_dense": True,
        "accuracy": summary["accuracy"],
        "mean_steps_to_decision": summary["mean_steps_to_decision"],
        "hidden_spikes_before_decision_mean": summary["hidden_spikes_before_decision_mean"],
        "no_decision_count": summary["no_decision_count"],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
