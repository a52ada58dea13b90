"""Register high-water marks of a weight image on the MNIST test set: how wide must they be?

Usage: python tools/register_widths.py WEIGHT_IMAGE.h5 [--limit N]

Runs the dense numpy datapath (bit-exact with the emulator) and records, per layer, the
smallest and largest synaptic current and membrane values reached before saturation or wrap,
by neurons that have not fired yet in images that have not decided yet (after that, the
hardware no longer needs the value). Prints them with the signed width each needs and the
width the image's spec declares. The threshold itself must also fit the membrane register.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json

from dense_numpy_emulator import dense_emulate, signed_bits_needed

from popcount_learn import h5io
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import encode_input_steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    image = h5io.load_weight_image(args.image)
    images, _ = load_mnist(default_data_dir(), "test")
    if args.limit:
        images = images[: args.limit]
    extremes: list = []
    dense_emulate(image, encode_input_steps(image.spec, images), extremes=extremes)
    rows = []
    for k, (e, layer) in enumerate(zip(extremes, image.layers, strict=True)):
        rows.append(
            {
                "layer": k,
                **e,
                "threshold_lsb": int(layer.threshold_lsb),
                "current_bits_needed": signed_bits_needed(e["current_min"], e["current_max"]),
                "membrane_bits_needed": signed_bits_needed(
                    min(e["membrane_min"], 0), max(e["membrane_max"], int(layer.threshold_lsb))
                ),
                "current_bits_declared": image.spec.current_bits,
                "membrane_bits_declared": image.spec.membrane_bits,
            }
        )
    print(json.dumps({"image": args.image, "n_images": len(images), "layers": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
