"""Does the recipe travel? The default ``popcount-learn train`` on other data vs a ReLU MLP.

Usage: PYTHONPATH=$PWD python tools/bench_data.py [--data sklearn:digits sklearn:breast_cancer ...]
           [--encoding latency] [--epochs E] [--seeds 0 1] [--limit N] [--threads 2] [--onchip]
           [--out DIR]

Per data set, one JSON line: the exact TTFS model trained by ``commands.train`` (the code behind
``popcount-learn train --data D --encoding E --seed S``, default options otherwise, so the
budget adapts to the data: ``train.budget_for``), its 8-bit emulator (``commands.export`` +
``evaluate --emulate``), with ``--onchip`` the on-chip rule (``train --mode onchip``), and
scikit-learn's ``MLPClassifier`` with the same hidden size (800), the epochs the exact model ran,
batch size (32), optimiser (Adam, lr 1e-3), the same seed, on the same inputs (the 8-bit codes /
255, i.e. the training split's min/max scaling; for binary encoding the 0/1 spikes). For each: test accuracy, hidden
spikes (MLP: hidden units with ReLU > 0) before the decision and input rows read (MLP: non-zero
inputs), seconds, and the load average. BLAS threads = Numba threads = ``--threads``.
"""

import os
import sys

_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _THREADS)

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numba
import numpy as np

from popcount_learn import commands, h5io
from popcount_learn.data import load_splits
from popcount_learn.onchip_train import OnchipTrainConfig
from popcount_learn.train import TrainConfig


def fit_mlp(x_train, labels, hidden: int, epochs: int, seed: int):
    """The baseline: a ReLU MLP of one hidden layer, Adam at 1e-3, batch 32, exactly ``epochs``
    epochs (no early stop), trained on features in [0, 1]."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        activation="relu",
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=32,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x_train, labels)
    return mlp


def mlp_baseline(data: str, hidden: int, epochs: int, seed: int, encoding: str = "latency", limit=None) -> dict:
    train, test, _ = load_splits(data, limit)
    x_train, x_test = (s.images.reshape(s.n_samples, -1) / 255.0 for s in (train, test))
    if encoding == "binary":  # what the binary encoding passes on: code > 128 spikes
        x_train, x_test = (x_train > 128 / 255).astype(float), (x_test > 128 / 255).astype(float)
    t0 = time.perf_counter()
    mlp = fit_mlp(x_train, train.labels, hidden, epochs, seed)
    seconds = time.perf_counter() - t0
    hidden_act = np.maximum(x_test @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)
    return {
        "accuracy": float((mlp.predict(x_test) == test.labels).mean()),
        "hidden_active_mean": float((hidden_act > 0).sum(axis=1).mean()),
        "input_nonzero_fraction": float((x_test > 0).mean()),
        "seconds": round(seconds, 1),
        "epochs_run": int(mlp.n_iter_),
    }


def _pick(summary: dict) -> dict:
    keys = (
        "accuracy",
        "hidden_spikes_before_decision_mean",
        "input_spikes_before_decision_mean",
        "input_weight_rows_read_fraction",
        "no_decision_count",
    )
    return {k: round(summary[k], 4) if isinstance(summary[k], float) else summary[k] for k in keys if k in summary}


def run(data: str, encoding: str, epochs, seed: int, limit, onchip: bool, out_dir: Path) -> dict:
    record = {"data": data, "encoding": encoding, "seed": seed, "threads": numba.get_num_threads()}
    name = f"{data.replace(':', '_').replace('/', '_')}-{encoding}-s{seed}"
    model = out_dir / f"{name}.h5"
    config, given = TrainConfig(seed=seed), frozenset()
    if epochs is not None:
        config, given = TrainConfig(seed=seed, epochs=epochs), frozenset({"epochs"})
    t0 = time.perf_counter()
    result = commands.train(
        config=config, data_dir=data, out=model, encoding=encoding, evaluate_every_epoch=False, given=given,
        limit=limit,
    )  # fmt: skip
    record["epochs"] = len(result["history"])
    trained = h5io.load_model(model)
    record["t_max"] = trained.encoding.t_max if trained.encoding.kind == "latency" else None
    record["exact"] = dict(_pick(result["test"]), seconds=round(time.perf_counter() - t0, 1))
    image = out_dir / f"{name}-int8.h5"
    commands.export(model, image, data_dir=data, measure=False)
    record["emulator_8bit"] = _pick(commands.evaluate(image, data_dir=data, emulate=True))
    if onchip:
        t0 = time.perf_counter()
        oc = commands.train_onchip(
            config=OnchipTrainConfig(seed=seed), data_dir=data, out=out_dir / f"{name}-onchip.h5",
            encoding=encoding, evaluate_every_epoch=False, limit=limit,
        )  # fmt: skip
        record["onchip"] = dict(_pick(oc["test"]), seconds=round(time.perf_counter() - t0, 1))
    record["relu_mlp"] = mlp_baseline(data, 800, record["epochs"], seed, encoding, limit)
    record["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["sklearn:digits", "sklearn:breast_cancer"])
    p.add_argument("--encoding", default="latency")
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer's, adapted to the data")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--limit", type=int, default=None, help="train on the first N training samples")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--onchip", action="store_true")
    p.add_argument("--out", default=None, help="keep the models here (default: a temporary directory)")
    args = p.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out or tmp)
        for data in args.data:
            for seed in args.seeds:
                record = run(data, args.encoding, args.epochs, seed, args.limit, args.onchip, out_dir)
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
