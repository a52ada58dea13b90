"""Ablation of the on-chip rule: what makes sign-only popcount learning work (BENCHMARKS.md).

Usage: python tools/onchip_ablation.py [--hidden 600] [--epochs 3] [--limit N] [--only NAME ...]

Every row trains a fresh seeded random int8 784-H-10 network (the same one for every row) with
the rule and options in its row (no shifts and a constant probability unless the row says so),
on the shipped MNIST, and reports the emulator's test accuracy after each epoch and the hidden
spikes before the decision. Prints a markdown table.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import sys
import time

from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.learning import LearningConfig
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image, train_onchip
from popcount_learn.train import expected_active_inputs

ONE = 65536
CONSTANT = dict(prob_halving_samples=0)
# name -> (LearningConfig fields, OnchipTrainConfig fields)
ROWS = {
    "literal: all violators +1, correct -1 always, p=1/64": (
        dict(
            **CONSTANT,
            output_rule="all_violators",
            correct_rule="always",
            hidden_update_prob_q16=1024,
            output_update_prob_q16=1024,
        ),
        {},
    ),
    "all violators +1, correct -1 when violated, p=1/64": (
        dict(**CONSTANT, output_rule="all_violators", hidden_update_prob_q16=1024, output_update_prob_q16=1024),
        {},
    ),
    "earliest violator +1, correct -1 always, p=1/64": (
        dict(**CONSTANT, correct_rule="always", hidden_update_prob_q16=1024, output_update_prob_q16=1024),
        {},
    ),
    "amended (earliest violator, when violated), p=1/64": (
        dict(**CONSTANT, hidden_update_prob_q16=1024, output_update_prob_q16=1024),
        {},
    ),
    "amended, p=1/8": (dict(**CONSTANT, hidden_update_prob_q16=8192, output_update_prob_q16=8192), {}),
    "amended, p=1/2": (dict(**CONSTANT, hidden_update_prob_q16=32768, output_update_prob_q16=32768), {}),
    "amended, p=1 (every causal weight moves 1 LSB)": (
        dict(**CONSTANT, hidden_update_prob_q16=ONE, output_update_prob_q16=ONE),
        {},
    ),
    "amended, p=1, margin 2 steps": (
        dict(**CONSTANT, margin_steps=2, hidden_update_prob_q16=ONE, output_update_prob_q16=ONE),
        {},
    ),
    "amended, p=1, margin 16 steps": (
        dict(**CONSTANT, margin_steps=16, hidden_update_prob_q16=ONE, output_update_prob_q16=ONE),
        {},
    ),
    "amended, p=1, 1-pixel shifts": (
        dict(**CONSTANT, hidden_update_prob_q16=ONE, output_update_prob_q16=ONE),
        dict(augment_shift_px=1),
    ),
    "amended, p=1, shifts, p halves every 3 epochs": (
        dict(hidden_update_prob_q16=ONE, output_update_prob_q16=ONE, prob_halving_samples=180000),
        dict(augment_shift_px=1),
    ),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="substrings of row names to run")
    args = ap.parse_args(argv)
    train = load_mnist(default_data_dir(), "train")
    test = load_mnist(default_data_dir(), "test")
    x, y = train.images[: args.limit], train.labels[: args.limit]
    spec = DatapathConfig.for_weight_bits(8)
    config = OnchipTrainConfig(hidden=(args.hidden,), epochs=args.epochs)
    start = random_initial_image(
        (784, args.hidden, 10), spec, config, SpikeEncoding(), expected_active_inputs(x, SpikeEncoding())
    )
    print(
        f"784-{args.hidden}-10 int8 from the same seeded random init; {len(y)} training images, "
        f"{args.epochs} epochs; test accuracy after each epoch (emulator, 10k test images)\n"
    )
    print("| variant | " + " | ".join(f"ep {e + 1}" for e in range(args.epochs)) + " | hidden spikes | s |")
    print("|---|" + "---|" * args.epochs + "---|---|")
    for name, (rule, opts) in ROWS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        learning = LearningConfig(**rule)
        t = time.perf_counter()
        options = dict(hidden=(args.hidden,), epochs=args.epochs, augment_shift_px=0)
        options.update(opts)
        _, history = train_onchip(
            x, y, start, learning, OnchipTrainConfig(**options), test_images=test.images, test_labels=test.labels
        )
        accs = " | ".join(f"{100 * h['test']['accuracy']:.2f}" for h in history)
        spikes = history[-1]["test"]["hidden_spikes_before_decision_mean"]
        print(f"| {name} | {accs} | {spikes:.1f} | {time.perf_counter() - t:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
