"""Write a validation split of the shipped MNIST: train on the first 50,000 training images,
hold out the last 10,000 as the "test" split of a ``.npz`` that ``--data`` reads.

Usage: python tools/validation_split.py [--out mnist-val.npz] [--holdout 10000]

Then every choice (schedule, epochs, targets) is made with
``popcount-learn train ... --data mnist-val.npz``, whose per-epoch "test" figures are the
validation accuracy, and only the chosen recipe is run on the full 60,000 and measured once on
the real test set (``popcount-learn evaluate --emulate``). The images stay uint8 28 x 28, so
``--encoding auto`` picks the binary code and the shift augmentation the same 1 pixel as on the
shipped MNIST. Prints the file's SHA-256 and the class counts of both parts.
"""

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from popcount_learn.data import default_data_dir, load_mnist


def validation_split(images: np.ndarray, labels: np.ndarray, holdout: int):
    """(train images, train labels, validation images, validation labels): the last ``holdout``
    samples, in file order, are the validation part."""
    if not 0 < holdout < len(labels):
        raise SystemExit(f"--holdout must be in 1..{len(labels) - 1}, got {holdout}")
    cut = len(labels) - holdout
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="mnist-val.npz")
    ap.add_argument("--holdout", type=int, default=10000)
    args = ap.parse_args(argv)
    train = load_mnist(default_data_dir(), "train")
    rows, cols = train.image_shape
    x = train.images.reshape(len(train.labels), rows, cols)
    x_train, y_train, x_val, y_val = validation_split(x, train.labels, args.holdout)
    out = Path(args.out)
    with open(out, "wb") as f:
        np.savez(f, x_train=x_train, y_train=y_train, x_test=x_val, y_test=y_val)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out}: {len(y_train)} train + {len(y_val)} validation images (verified source: {train.verified})")
    print(f"sha256 {digest}")
    print("train classes", np.bincount(y_train, minlength=10).tolist())
    print("validation classes", np.bincount(y_val, minlength=10).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
