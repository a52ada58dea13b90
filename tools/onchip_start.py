"""Write a seeded random start for on-chip training with chosen thresholds (the 4-bit start study).

Usage: python tools/onchip_start.py --out start.h5 [--bits 4] [--hidden 600] [--seed 0]
           [--init-std-gain 1.0] [--threshold-gain G0 G1 ...]

The start is the one ``popcount-learn train --mode onchip --bits B`` makes
(``onchip_train.random_initial_image``: the exact trainer's Gaussian init quantised per layer
with ``scale = max|w| / weight_max``), except that layer k's real weights are multiplied by
``G_k`` before the threshold is set: the integer weights stay, the threshold in membrane LSB
becomes ``threshold_lsb(G_k * scale)``, i.e. about ``1 / G_k`` of the plain start's. G = 1 for
every layer writes the plain start exactly. Train it with ``popcount-learn train --mode onchip
--init start.h5 --learn ...`` (an image without a rule gets the fine-tune rates: give the rates).
Prints each layer's threshold in one-LSB charges (how many 1-LSB inputs fire a neuron).

``--hidden-from IMAGE`` (e.g. the 4-bit QAT image ``net600-int4.h5``) takes the first layer --
integers, scale and threshold -- from a weight image of the same spec and topology and keeps
the fresh random output layer: a trained hidden layer under an output layer the rule learns from
scratch (the gains then apply to that start; give 1 for the hidden layer to keep it as it is).
"""

import argparse
import dataclasses
import sys

from popcount_learn import h5io
from popcount_learn.commands import choose_encoding
from popcount_learn.data import load_split
from popcount_learn.datapath import DatapathConfig
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image
from popcount_learn.train import expected_active_inputs


def with_threshold_gains(image, gains):
    """``image`` with layer k's scale multiplied by ``gains[k]`` and its threshold re-derived."""
    if len(gains) != len(image.layers):
        raise SystemExit(f"--threshold-gain needs {len(image.layers)} values, got {len(gains)}")
    layers = tuple(
        dataclasses.replace(layer, scale=layer.scale * g, threshold_lsb=image.spec.threshold_lsb(layer.scale * g))
        for layer, g in zip(image.layers, gains, strict=True)
    )
    return dataclasses.replace(image, layers=layers)


def with_hidden_layer_of(image, source):
    """``image`` with its first layer replaced by ``source``'s (same spec and topology)."""
    if source.spec != image.spec:
        raise SystemExit("--hidden-from: the image's datapath spec differs from the start's (give the same --bits)")
    if source.topology != image.topology:
        raise SystemExit(f"--hidden-from: topology {source.topology} differs from the start's {image.topology}")
    return dataclasses.replace(image, layers=(source.layers[0], *image.layers[1:]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-std-gain", type=float, default=1.0)
    ap.add_argument("--threshold-gain", type=float, nargs="+", default=[1.0, 1.0])
    ap.add_argument("--hidden-from", default=None, help="take the first layer from this weight image")
    args = ap.parse_args(argv)
    train = load_split(None, "train")
    spec = DatapathConfig.for_weight_bits(args.bits)
    encoding = choose_encoding("auto", train, spec=spec)
    config = OnchipTrainConfig(hidden=(args.hidden,), seed=args.seed, init_std_gain=args.init_std_gain)
    topology = (int(train.images[0].size), args.hidden, train.n_classes)
    image = random_initial_image(topology, spec, config, encoding, expected_active_inputs(train.images, encoding))
    if args.hidden_from is not None:
        image = with_hidden_layer_of(image, h5io.load_weight_image(args.hidden_from))
    image = with_threshold_gains(image, args.threshold_gain)
    image = dataclasses.replace(
        image,
        provenance={
            "mode": "random-start",
            "tool": "tools/onchip_start.py",
            "seed": args.seed,
            "bits": args.bits,
            "init_std_gain": args.init_std_gain,
            "threshold_gain": list(args.threshold_gain),
            **({"hidden_from": args.hidden_from} if args.hidden_from is not None else {}),
        },
    )
    h5io.save_weight_image(args.out, image)
    one_lsb_charge = 2 ** (spec.current_frac_bits + spec.time_shift)
    charges = ", ".join(f"{layer.threshold_lsb / one_lsb_charge:.1f}" for layer in image.layers)
    print(f"{args.out}: {'-'.join(map(str, image.topology))} int{args.bits}, thresholds in 1-LSB charges: {charges}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
