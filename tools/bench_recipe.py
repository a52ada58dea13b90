"""Why does the recipe trail the MLP on small data? Measured on a validation split, several seeds.

Usage: PYTHONPATH=$PWD python tools/bench_recipe.py --data sklearn:wine sklearn:breast_cancer ...
           [--seeds 0 1 2] [--validation 0.25] [--folds K] [--set field=value ...] [--t-max T] [--mlp] [--threads 1]

Per data set, one JSON line: the exact TTFS model of ``popcount-learn train --data D --encoding
latency --validation V --seed S`` (``commands.adapt_exact_to_data``: the defaults derived from the
data, with the ``--set`` fields of ``TrainConfig`` kept as given) trained on the training split
less its last ``V`` samples and scored on those held-out samples only (the test split is read
with them but not scored), for each seed; with ``--mlp`` also scikit-learn's ``MLPClassifier`` (ReLU, the same hidden
size, epochs, batch 32, Adam lr 1e-3, the same seeds) on the same inputs (codes / 255). ``--folds K``:
K disjoint held-out tails of the training split (its order rotated, ``fold_files``), each scaled
without its tail, every seed on each; the accuracy lists run fold by fold, seeds within.
"""

import os
import sys

_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _THREADS)

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from bench_data import fit_mlp

from popcount_learn import commands
from popcount_learn.cli import options_dict, spec_item
from popcount_learn.data import SPLITS, _read_source, load_splits, validation_count
from popcount_learn.errors import ConfigError
from popcount_learn.evaluate import evaluate_exact
from popcount_learn.train import TrainConfig, train_exact


def parse_fields(items) -> dict:
    """``field=value`` pairs of ``TrainConfig`` (the value in the field's type; one line for an
    unknown field, a bad value or a field given twice)."""
    try:
        return TrainConfig.typed_options(options_dict([spec_item(item) for item in items], "field"))
    except (argparse.ArgumentTypeError, ConfigError) as e:
        raise SystemExit(f"--set: {e}") from None


def mlp_on_validation(train, val, hidden: int, epochs: int, seed: int) -> float:
    mlp = fit_mlp(train.images / 255.0, train.labels, hidden, epochs, seed)
    return float((mlp.predict(val.images / 255.0) == val.labels).mean())


def fold_files(data: str, validation: float, folds: int, tmp: Path) -> list[str]:
    """``folds`` copies of ``data`` whose training splits are rotated so that their last
    ``validation_count`` samples (the held-out tail) are disjoint blocks: k-fold validation inside
    the training split, the test split untouched. One fold: ``data`` itself."""
    if folds == 1:
        return [data]
    raw = _read_source(data, SPLITS)
    x, y = raw.x["train"], raw.y["train"]
    count = validation_count(validation, len(y))
    if folds * count > len(y):
        raise SystemExit(f"--folds {folds} of {count} samples do not fit in {len(y)} training samples")
    files = []
    for k in range(folds):
        path = tmp / f"fold{k}.npz"
        order = np.roll(np.arange(len(y)), k * count)  # fold k's block moves to the tail
        np.savez(path, x_train=x[order], y_train=y[order], x_test=raw.x["test"], y_test=raw.y["test"])
        files.append(str(path))
    return files


def run(data: str, seeds, validation, fields: dict, t_max, mlp: bool, folds: int = 1) -> dict:
    record = {"data": data, "set": {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}
    accuracy, spikes, rows, mlp_accuracy, fit, derived = [], [], [], [], [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for source in fold_files(data, validation, folds, Path(tmp)):
            train, _, val = load_splits(source, validation=validation)
            encoding = commands.choose_encoding("latency", train, t_max=t_max)
            derived.append(encoding.t_max)
            for seed in seeds:
                config = commands.adapt_exact_to_data(TrainConfig(seed=seed, **fields), train, frozenset(fields))
                network, history = train_exact(
                    train.images, train.labels, config, encoding=encoding, image_shape=train.image_shape,
                    n_classes=train.n_classes,
                )  # fmt: skip
                summary = evaluate_exact(network, val.images, val.labels).summary()
                accuracy.append(summary["accuracy"])
                fit.append(history.epochs[-1]["train_accuracy"] if history.epochs else float("nan"))
                spikes.append(summary["hidden_spikes_before_decision_mean"])
                rows.append(summary["input_weight_rows_read_fraction"])
                if mlp:
                    mlp_accuracy.append(mlp_on_validation(train, val, config.hidden[0], config.epochs, seed))
    record.update(t_max=t_max, t_max_used=derived, validation=val.n_samples, train=train.n_samples)
    record.update(seeds=list(seeds), folds=folds)
    record.update(epochs=config.epochs, config=dataclasses.asdict(config))
    record["ttfs_val_accuracy"] = [round(100 * a, 2) for a in accuracy]
    record["ttfs_mean"] = round(100 * float(np.mean(accuracy)), 2)
    record["ttfs_last_epoch_train_accuracy"] = [round(100 * a, 2) for a in fit]
    record["hidden_spikes_before_decision"] = round(float(np.mean(spikes)), 1)
    record["input_rows_read_fraction"] = round(float(np.mean(rows)), 3)
    if mlp:
        record["mlp_val_accuracy"] = [round(100 * a, 2) for a in mlp_accuracy]
        record["mlp_mean"] = round(100 * float(np.mean(mlp_accuracy)), 2)
    record["seconds"] = round(time.perf_counter() - t0)
    record["threads"] = numba.get_num_threads()
    record["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["sklearn:wine", "sklearn:breast_cancer", "sklearn:iris"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--validation", type=float, default=0.25)
    p.add_argument(
        "--set", nargs="*", action="extend", default=[], metavar="FIELD=VALUE", help="TrainConfig fields, kept as given"
    )
    p.add_argument("--t-max", type=float, default=None, help="latency t_max (default: the trainer's)")
    p.add_argument("--folds", type=int, default=1, help="k disjoint validation tails of the training split")
    p.add_argument("--mlp", action="store_true", help="also the ReLU MLP on the same split")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    fields = parse_fields(args.set)
    for data in args.data:
        print(json.dumps(run(data, args.seeds, args.validation, fields, args.t_max, args.mlp, args.folds)), flush=True)


if __name__ == "__main__":
    main()
