"""Training throughput of the on-chip rule: Numba bit-plane kernels vs the plain numpy version.

Usage: python tools/bench_onchip.py [--hidden 600] [--samples 20000] [--numpy-samples 300]
                                    [--repeat 3] [--init IMAGE.h5] [--learn FIELD=VALUE ...]

Two regimes, because the cost of a step grows with the number of weights it changes:
- "from scratch": a fresh seeded random int8 784-H-10 network and the first samples of MNIST
  training in a random order (the busiest part of training: most samples update hundreds of
  weights);
- "trained": the same network after one epoch of on-chip training (or --init IMAGE), where most
  samples are already right by the margin.
In each regime both versions start from the same weights and train on the same samples; the
numpy version runs on the first --numpy-samples of them and must end with identical weights
(checked every run). One process; Numba is single-threaded by construction (samples are
sequential), BLAS gets one thread. Prints one JSON object (samples/s wall, and per CPU second).
For old vs new side by side, ``--trees OLD NEW [--rounds R]`` runs the whole measurement once
per tree in turn, R times (fresh processes, ``PYTHONPATH`` set to the tree), then prints the
best per tree and the ratios over the first tree.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

import numpy_onchip
from _machine import machine
from _side_by_side import run_trees, strip_tree_args

from popcount_learn import h5io
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import encode_input_steps
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.learning import LearningConfig
from popcount_learn.onchip import OnchipLearner
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image
from popcount_learn.train import expected_active_inputs


def measure(image, learning, steps, labels, numpy_samples, repeat):
    # Numba: best of `repeat` runs from the same starting weights (the first call compiles).
    OnchipLearner(image, learning).train(steps[:10], labels[:10], 0)
    best = float("inf")
    best_cpu = float("inf")
    for _ in range(repeat):
        learner = OnchipLearner(image, learning)
        t, c = time.perf_counter(), time.process_time()
        stats = learner.train(steps, labels, 0)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    check = OnchipLearner(image, learning)
    check.train(steps[:numpy_samples], labels[:numpy_samples], 0)
    t = time.perf_counter()
    weights = numpy_onchip.train(image, learning, steps[:numpy_samples], labels[:numpy_samples], 0)
    numpy_s = time.perf_counter() - t
    exact = all(np.array_equal(a.astype(np.int64), b) for a, b in zip(check.image().weights_lsb, weights, strict=True))
    numba_rate = len(labels) / best
    numpy_rate = numpy_samples / numpy_s
    return {
        "numba_samples_per_s": round(numba_rate, 1),
        "numba_samples_per_cpu_s": round(len(labels) / best_cpu, 1),
        "numpy_samples_per_s": round(numpy_rate, 1),
        "ratio": round(numba_rate / numpy_rate, 1),
        "bit_exact": exact,
        "samples": len(labels),
        "numpy_samples": numpy_samples,
        "weights_changed_per_sample": round(float(stats[:, 2].mean()), 1),
        "samples_with_update_fraction": round(float((stats[:, 2] > 0).mean()), 4),
    }, learner


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=600)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--numpy-samples", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--init", default=None, help="weight image for the 'trained' regime")
    ap.add_argument("--learn", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--trees", nargs="+", default=None, metavar="DIR", help="old vs new: run in each tree in turn")
    ap.add_argument("--rounds", type=int, default=3, help="with --trees: runs per tree, alternating (default 3)")
    args = ap.parse_args(argv)
    if args.trees:
        figures = [
            f"{r}.{k}" for r in ("from_scratch", "trained") for k in ("numba_samples_per_s", "numba_samples_per_cpu_s")
        ]
        run_trees(__file__, strip_tree_args(sys.argv[1:] if argv is None else argv), args.trees, args.rounds, figures)
        return 0
    learning = LearningConfig.from_options(dict(x.split("=", 1) for x in args.learn))
    train = load_mnist(default_data_dir(), "train")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train.labels))
    spec = DatapathConfig.for_weight_bits(8)
    steps_all = encode_input_steps(spec, train.images)
    steps, labels = steps_all[order[: args.samples]], train.labels[order[: args.samples]].astype(np.int64)
    fresh = random_initial_image(
        (784, args.hidden, 10),
        spec,
        OnchipTrainConfig(hidden=(args.hidden,)),
        SpikeEncoding(),
        expected_active_inputs(train.images, SpikeEncoding()),
    )
    import popcount_learn

    result = {
        "library": os.path.dirname(os.path.abspath(popcount_learn.__file__)),
        "machine": machine(),
        "load_average": list(os.getloadavg()),
        "topology": [784, args.hidden, 10],
        "learning": learning.to_dict(),
    }
    result["from_scratch"], _ = measure(fresh, learning, steps, labels, args.numpy_samples, args.repeat)
    if args.init:
        trained = h5io.load_weight_image(args.init)
    else:
        learner = OnchipLearner(fresh, learning)
        learner.train(steps_all, train.labels.astype(np.int64), 0, rng.permutation(len(train.labels)))
        trained = learner.image()
    later = steps_all[order[-args.samples :]], train.labels[order[-args.samples :]].astype(np.int64)
    result["trained"], _ = measure(trained, learning, later[0], later[1], args.numpy_samples, args.repeat)
    print(json.dumps(result, indent=1))
    return 0 if result["from_scratch"]["bit_exact"] and result["trained"]["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
