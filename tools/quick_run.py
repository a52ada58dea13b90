"""The quick exact run (784-100-10, 1 epoch on the first 10k training images) and its probes.

Usage:
    python tools/quick_run.py [--set FIELD=VALUE ...] [--adam-beta2 B] [--adam-eps E] [--global-clip C]
                               [--adam-reset-at STEPS] [--seed 1]
    python tools/quick_run.py --mlp [--seed 1]

Prints one JSON line: test accuracy (full 10k test set), running train accuracy, the train
accuracy of each window of 50 minibatches, the first minibatch's loss, how much larger the
first 10 steps' gradient norms are than the last 50 steps' (median), and the mean Adam step per
weight as a fraction of the learning rate over steps 41-60 and over the last 100, per layer.

``--set`` overrides any ``TrainConfig`` field (e.g. ``--set init_mean=2 --set init_std_gain=1
--set augment_from_epoch=1`` is the recipe before issue #7). ``--adam-beta2``, ``--adam-eps``,
``--global-clip`` (clip each minibatch's whole weight gradient to that norm) and
``--adam-reset-at`` (restart Adam's moments after that many steps) are probes that exist only
here: they wrap the trainer's Adam step. ``--mlp`` trains the reference ReLU MLP
784-100-10 on the same binarised images with the same budget (Adam 1e-3, batch 32, one pass).
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import math

import numpy as np

from popcount_learn import train as train_module
from popcount_learn.cli import options_dict, spec_item
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.errors import ConfigError
from popcount_learn.progress import Progress
from popcount_learn.train import TrainConfig, train_exact

WINDOW = 50


class _Recorder(Progress):
    """Keeps the cumulative number of correct training predictions after each minibatch."""

    def __init__(self):
        self.seen = []
        self.correct = []

    def update(self, n=1, **metrics):
        total = (self.seen[-1] if self.seen else 0) + n
        self.seen.append(total)
        self.correct.append(metrics["acc"] * total)


def _windows(seen, correct, width=WINDOW):
    out = []
    for k in range(0, len(seen), width):
        end = min(k + width, len(seen)) - 1
        n0, c0 = (seen[k - 1], correct[k - 1]) if k else (0, 0.0)
        out.append(round((correct[end] - c0) / (seen[end] - n0), 3))
    return out


def _parse_set(items):
    """``--set FIELD=VALUE`` items as typed ``TrainConfig`` fields (the CLI's pair parser and
    ``TrainConfig.typed_options``: an unknown field, a bad value or a field given twice is one line)."""
    try:
        return TrainConfig.typed_options(options_dict([spec_item(item) for item in items], "field"))
    except (argparse.ArgumentTypeError, ConfigError) as e:
        raise SystemExit(f"--set: {e}") from None


def _instrument_adam(beta2, eps, global_clip, reset_at, trace):
    """Wrap ``Adam.step``: optional whole-gradient clip, optional beta2, optional restart of
    Adam (moments and bias correction) after ``reset_at`` steps, and step-size tracing."""
    original = train_module.Adam.step
    done = []

    def step(self, params, grads, averages=None, ema_decay=-1.0):
        if reset_at and self.t == reset_at and not done:
            done.append(self.t)
            self.t = 0
            for k in range(len(self.m)):
                self.m[k][...] = 0.0
                self.v[k][...] = 0.0
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        trace["grad_norm"].append(norm)
        if global_clip and norm > global_clip:
            grads = [g * (global_clip / norm) for g in grads]
        before = [p.copy() for p in params]
        if beta2 is None and eps is None:
            original(self, params, grads, averages, ema_decay)
        else:  # the same update as the fused kernel, with another beta2 / epsilon
            b2 = 0.999 if beta2 is None else beta2
            self.t += 1
            c1, c2 = 1 - 0.9**self.t, 1 - b2**self.t
            for k, (p, g) in enumerate(zip(params, grads, strict=True)):
                self.m[k][...] = 0.9 * self.m[k] + 0.1 * g
                self.v[k][...] = b2 * self.v[k] + (1 - b2) * g * g
                p -= self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + (1e-8 if eps is None else eps))
                if averages is not None:
                    averages[k][...] = ema_decay * averages[k] + (1 - ema_decay) * p
        trace["step_fraction"].append(
            [float(np.abs(p - b).mean()) / self.lr for p, b in zip(params, before, strict=True)]
        )

    train_module.Adam.step = step


def run_exact(args, overrides):
    train = load_mnist(default_data_dir(), "train")
    test = load_mnist(default_data_dir(), "test")
    config = TrainConfig(**{"hidden": (100,), "epochs": 1, "seed": args.seed, **overrides})
    trace = {"grad_norm": [], "step_fraction": []}
    _instrument_adam(args.adam_beta2, args.adam_eps, args.global_clip, args.adam_reset_at, trace)
    first_loss = []
    original_loss = train_module.batch_loss_and_grads

    def loss_and_grads(network, z_input, labels, cfg):
        result = original_loss(network, z_input, labels, cfg)
        if not first_loss:
            first_loss.append(float(result[0]))
        return result

    train_module.batch_loss_and_grads = loss_and_grads
    recorder = _Recorder()
    _, history = train_exact(
        train.images[: args.limit],
        train.labels[: args.limit],
        config,
        test_images=test.images,
        test_labels=test.labels,
        n_classes=10,
        progress=recorder,
    )
    record = history.epochs[-1]
    norms = np.array(trace["grad_norm"])
    steps = np.array(trace["step_fraction"])
    return {
        "overrides": {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()},
        "adam_beta2": args.adam_beta2,
        "adam_eps": args.adam_eps,
        "global_clip": args.global_clip,
        "adam_reset_at": args.adam_reset_at,
        "seed": args.seed,
        "test_accuracy": record["test"]["accuracy"],
        "running_train_accuracy": round(record["train_accuracy"], 4),
        "train_accuracy_per_50_steps": _windows(recorder.seen, recorder.correct),
        "hidden_spikes_before_decision": round(record["test"]["hidden_spikes_before_decision_mean"], 1),
        "first_loss": round(first_loss[0], 2),
        "early_to_late_grad_norm": round(float(np.median(norms[:10]) / np.median(norms[-50:])), 1),
        "adam_step_fraction_steps_41_60": [round(float(x), 3) for x in steps[40:60].mean(axis=0)],
        "adam_step_fraction_last_100": [round(float(x), 3) for x in steps[-100:].mean(axis=0)],
    }


def run_mlp(args):
    """ReLU MLP 784-100-10 on pixel > 128, He init, Adam 1e-3, batch 32, one pass."""
    encoding = SpikeEncoding()
    train = load_mnist(default_data_dir(), "train")
    test = load_mnist(default_data_dir(), "test")
    x = encoding.bright(train.images[: args.limit]).astype(np.float64)
    y = train.labels[: args.limit].astype(np.int64)
    x_test = encoding.bright(test.images).astype(np.float64)
    rng = np.random.default_rng(args.seed)
    params = [
        rng.normal(0, math.sqrt(2 / 784), (784, 100)),
        np.zeros(100),
        rng.normal(0, math.sqrt(1 / 100), (100, 10)),
        np.zeros(10),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    seen, correct = [], []
    perm = rng.permutation(len(y))
    for t, start in enumerate(range(0, len(y), 32), 1):
        idx = perm[start : start + 32]
        w1, b1, w2, b2 = params
        h = np.maximum(x[idx] @ w1 + b1, 0)
        logits = h @ w2 + b2
        correct.append((correct[-1] if correct else 0) + int((logits.argmax(1) == y[idx]).sum()))
        seen.append((seen[-1] if seen else 0) + len(idx))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(idx)), y[idx]] -= 1
        d = p / len(idx)
        dh = (d @ w2.T) * (h > 0)
        grads = [x[idx].T @ dh, dh.sum(0), h.T @ d, d.sum(0)]
        for k, g in enumerate(grads):
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            params[k] -= 1e-3 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
    w1, b1, w2, b2 = params
    test_pred = (np.maximum(x_test @ w1 + b1, 0) @ w2 + b2).argmax(1)
    return {
        "model": "ReLU MLP 784-100-10",
        "seed": args.seed,
        "test_accuracy": float((test_pred == test.labels).mean()),
        "running_train_accuracy": round(correct[-1] / seen[-1], 4),
        "train_accuracy_per_50_steps": _windows(seen, correct),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--adam-beta2", type=float, default=None)
    ap.add_argument("--adam-eps", type=float, default=None)
    ap.add_argument("--global-clip", type=float, default=0.0)
    ap.add_argument("--adam-reset-at", type=int, default=0, metavar="STEPS")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--mlp", action="store_true")
    args = ap.parse_args()
    result = run_mlp(args) if args.mlp else run_exact(args, _parse_set(args.set))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
