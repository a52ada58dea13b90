"""Probe, not a rule: does a step toward zero rescue the 4-bit on-chip rule? (issue #17)

Usage: python tools/onchip_decay_probe.py --init start.h5 --data mnist-val.npz --decay-q16 Q
           [--every 1000] [--epochs 3] [--learn FIELD=VALUE ...]

Trains ``--init`` with the sign-only rule (``onchip.OnchipLearner``, the rule of
``learning.starting_rule`` with the ``--learn`` fields) and, after every ``--every`` samples,
moves each nonzero weight one LSB toward zero with probability ``Q / 65536`` (host-side numpy
draws, seeded): a weight decay outside the rule, to measure whether the rule's missing pull
toward zero is what stops it at 4 bits before anyone builds one into every body. Samples in a
seeded random order per epoch, 1-pixel shifts; prints the validation (``--data``'s test split)
accuracy and hidden spikes after each epoch and the mean |w| per layer.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import dataclasses
import sys

import numpy as np

from popcount_learn import h5io
from popcount_learn.cli import options_dict, spec_item
from popcount_learn.data import load_split
from popcount_learn.emulator import emulate, encode_input_steps, summarize
from popcount_learn.learning import starting_rule
from popcount_learn.onchip import OnchipLearner
from popcount_learn.train import shift_images


def decayed(image, q16: int, rng: np.random.Generator):
    """``image`` with each nonzero weight moved one LSB toward zero with probability q16 / 2^16."""
    layers = []
    for layer in image.layers:
        w = layer.weights_lsb
        move = (rng.integers(0, 65536, size=w.shape) < q16) & (w != 0)
        layers.append(dataclasses.replace(layer, weights_lsb=(w - np.sign(w) * move).astype(w.dtype)))
    return dataclasses.replace(image, layers=tuple(layers))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--decay-q16", type=int, required=True)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learn", type=spec_item, action="append", default=[])
    args = ap.parse_args(argv)
    image = h5io.load_weight_image(args.init)
    learning, _ = starting_rule(image.learning, args.seed, options_dict(args.learn, "--learn"))
    train = load_split(args.data, "train")
    val = load_split(args.data, "test")
    labels = np.asarray(train.labels, dtype=np.int64)
    rng = np.random.default_rng(args.seed + 1)
    decay_rng = np.random.default_rng(args.seed + 2)
    t = 0
    print(f"rule {learning.to_dict()}, decay {args.decay_q16}/65536 every {args.every} samples")
    for epoch in range(args.epochs):
        order = rng.permutation(len(labels))
        steps = encode_input_steps(
            image.spec, shift_images(train.images, rng, 1, train.image_shape), image.input_encoding
        )
        for start in range(0, len(order), args.every):
            part = order[start : start + args.every]
            learner = OnchipLearner(image, learning)
            learner.train(steps, labels, t, part)
            t += len(part)
            image = learner.image()
            if args.decay_q16:
                image = decayed(image, args.decay_q16, decay_rng)
        s = summarize(emulate(image, val.images), val.labels)
        mean_abs = ", ".join(f"{np.mean(np.abs(layer.weights_lsb)):.2f}" for layer in image.layers)
        print(
            f"epoch {epoch + 1}: val {100 * s['accuracy']:.2f} %, hidden spikes "
            f"{s['hidden_spikes_before_decision_mean']:.1f}, mean |w| {mean_abs} LSB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
