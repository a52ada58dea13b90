"""Plain rounding of a float model at several weight widths, per-layer scale by the max rule and
by the MSE-optimal clip (``quantize(..., scale_rule=...)``): emulator accuracy and hidden spikes
before the decision, the baseline column of the QAT table (issue #17).

Usage: python tools/rounding_table.py MODEL [--bits 6 5 4 3 2] [--data DIR_OR_NPZ] [--split test]

No training: each row quantises the model once and runs the emulator on the split. Prints one
line per (bits, rule) and a JSON list at the end.
"""

import argparse
import json
import sys

from popcount_learn import emulator, h5io
from popcount_learn.data import load_split
from popcount_learn.quantize import SCALE_RULES, quantize


def rounding_rows(network, images, labels, bits_list, rules=SCALE_RULES):
    """[{bits, scale_rule, accuracy, hidden_spikes}] of ``quantize(network, bits, scale_rule)``."""
    rows = []
    for bits in bits_list:
        for rule in rules:
            image = quantize(network, bits=bits, scale_rule=rule)
            summary = emulator.summarize(emulator.emulate(image, images), labels)
            rows.append(
                {
                    "bits": bits,
                    "scale_rule": rule,
                    "accuracy": summary["accuracy"],
                    "hidden_spikes": summary["hidden_spikes_before_decision_mean"],
                }
            )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--bits", type=int, nargs="+", default=[6, 5, 4, 3, 2])
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="test", choices=("train", "test"))
    args = ap.parse_args(argv)
    network = h5io.load_model(args.model)
    data = load_split(args.data, args.split, scaling=getattr(network.encoding, "scaling", None))
    rows = rounding_rows(network, data.images, data.labels, args.bits)
    for row in rows:
        print(
            f"{row['bits']} bits, {row['scale_rule']}: {100 * row['accuracy']:.2f}%  {row['hidden_spikes']:.2f} spikes"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
