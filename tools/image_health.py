"""How a weight image's layers stand: silent neurons, weights at their bounds, thresholds.

Usage: python tools/image_health.py IMAGE.h5 [...] [--data mnist-val.npz] [--limit 2000]

For each image, on the first ``--limit`` images of ``--data``'s test split (the validation
images for the ``.npz`` of ``tools/validation_split.py``): accuracy and hidden spikes before the
decision (``summarize``), the share of hidden neurons that never fire in the whole raster,
per layer the share of weights at ``weight_min`` / ``weight_max`` and the mean |w| in LSB, and
the threshold in one-LSB charges (``threshold_lsb / 2^(current_frac_bits + time_shift)``: how
many 1-LSB inputs fire a neuron). Prints a markdown table.
"""

import argparse
import sys

import numpy as np

from popcount_learn import h5io
from popcount_learn.data import load_split
from popcount_learn.emulator import emulate, summarize


def layer_health(image, result) -> dict:
    """The figures of one image on one emulation (``full_raster``) result."""
    spec = image.spec
    charge = 2 ** (spec.current_frac_bits + spec.time_shift)
    hidden = np.concatenate([s for s in result.spike_steps[:-1]], axis=1)
    out = {"silent_hidden": float(np.mean(np.all(hidden < 0, axis=0)))}
    out["layers"] = [
        {
            "at_min": float(np.mean(layer.weights_lsb == spec.weight_min)),
            "at_max": float(np.mean(layer.weights_lsb == spec.weight_max)),
            "mean_abs_lsb": float(np.mean(np.abs(layer.weights_lsb))),
            "threshold_charges": layer.threshold_lsb / charge,
        }
        for layer in image.layers
    ]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--data", default=None)
    ap.add_argument("--limit", type=int, default=2000)
    args = ap.parse_args(argv)
    data = load_split(args.data, "test", args.limit)
    print("| image | acc. | hidden spikes | hidden silent | per layer: at min / max, mean abs w (LSB) | thresholds |")
    print("|---|---|---|---|---|---|")
    for path in args.images:
        image = h5io.load_weight_image(path)
        result = emulate(image, data.images, full_raster=True)
        s = summarize(result, data.labels)
        h = layer_health(image, result)
        layers = "; ".join(
            f"{100 * x['at_min']:.2f} / {100 * x['at_max']:.2f} %, {x['mean_abs_lsb']:.2f}" for x in h["layers"]
        )
        th = ", ".join(f"{x['threshold_charges']:.1f}" for x in h["layers"])
        print(
            f"| {path} | {100 * s['accuracy']:.2f} % | {s['hidden_spikes_before_decision_mean']:.1f} | "
            f"{100 * h['silent_hidden']:.1f} % | {layers} | {th} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
