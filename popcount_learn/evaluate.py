"""Evaluation of the exact model: first-output-spike decision, ties, silence, sparsity.

The decision is the output neuron that spikes first (smallest z). Exact ties go to the lowest
index and are counted; a sample whose outputs all stay silent has no decision (counted, and
wrong). "Before the decision" means strictly earlier than the first output spike, counted over
every hidden layer: the weight rows a hardware implementation must read before it can decide. In
the last hidden layer these are exactly the causal set of the winning output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import exact
from .errors import ConfigError
from .network import ExactNetwork


@dataclass
class ExactEvaluation:
    """Per-sample results of the exact model (arrays of length n)."""

    predicted: np.ndarray
    labels: np.ndarray
    tie: np.ndarray
    decision_time: np.ndarray  # t of the first output spike (inf: none)
    input_spikes_before_decision: np.ndarray
    hidden_spikes_before_decision: np.ndarray  # summed over hidden layers
    input_spikes_total: np.ndarray  # every input spike of the sample, before or after
    hidden_spikes_total: np.ndarray
    n_inputs: int
    n_hidden: int

    def summary(self) -> dict:
        n = len(self.labels)
        decided = self.predicted >= 0
        hid = self.hidden_spikes_before_decision[decided]
        inp = self.input_spikes_before_decision[decided]
        return {
            "accuracy": float((self.predicted == self.labels).mean()) if n else 0.0,
            "n": int(n),
            "no_decision_count": int((~decided).sum()),
            "tie_count": int(self.tie.sum()),
            "hidden_spikes_before_decision_mean": float(hid.mean()) if len(hid) else 0.0,
            "hidden_spikes_before_decision_median": float(np.median(hid)) if len(hid) else 0.0,
            "input_spikes_before_decision_mean": float(inp.mean()) if len(inp) else 0.0,
            # Of the spikes that occur at all, the share that precedes the decision.
            "input_spikes_before_decision_fraction": _ratio(inp.sum(), self.input_spikes_total[decided].sum()),
            "hidden_spikes_before_decision_fraction": _ratio(hid.sum(), self.hidden_spikes_total[decided].sum()),
            # Weight rows a hardware implementation fetches, as a share of all rows.
            "input_weight_rows_read_fraction": float(inp.mean() / self.n_inputs) if len(inp) else 0.0,
            "hidden_weight_rows_read_fraction": float(hid.mean() / self.n_hidden)
            if len(hid) and self.n_hidden
            else 0.0,
            "decision_time_mean": float(self.decision_time[decided].mean()) if decided.any() else float("nan"),
        }


def check_images_and_labels(images: np.ndarray, labels: np.ndarray) -> None:
    """One label per image, and labels are integers >= 0 (ConfigError otherwise)."""
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ConfigError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise ConfigError(f"labels must be integers >= 0, got dtype {labels.dtype} with minimum {labels.min()}")


def _ratio(num, den) -> float:
    return float(num / den) if den else 0.0


def evaluate_exact(
    network: ExactNetwork, images: np.ndarray, labels: np.ndarray, batch_size: int = 2000
) -> ExactEvaluation:
    """Run the exact model on uint8 images and score the first-spike decisions."""
    labels = np.asarray(labels)
    n = len(labels)
    check_images_and_labels(images, labels)
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    images = images.reshape(n, math.prod(images.shape[1:]))  # not -1: n may be 0
    if images.shape[1] != network.topology[0]:
        raise ConfigError(
            f"the network takes {network.topology[0]} inputs but the images have {images.shape[1]} pixels"
        )
    predicted = np.empty(n, dtype=np.int64)
    tie = np.empty(n, dtype=bool)
    z_dec = np.empty(n)
    inp_before = np.empty(n, dtype=np.int64)
    hid_before = np.zeros(n, dtype=np.int64)
    inp_total = np.empty(n, dtype=np.int64)
    hid_total = np.zeros(n, dtype=np.int64)
    dtype = network.weights[0].dtype
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        z_in = network.encoding.input_z(images[sl], dtype=dtype)
        zs, _ = exact.forward(network.weights, z_in)
        pred, t = exact.first_spike_decision(zs[-1])
        predicted[sl] = pred
        tie[sl] = t
        zd = zs[-1].min(axis=1)
        z_dec[sl] = zd
        inp_before[sl] = (zs[0] < zd[:, None]).sum(axis=1)
        inp_total[sl] = np.isfinite(zs[0]).sum(axis=1)
        for z_h in zs[1:-1]:
            hid_before[sl] += (z_h < zd[:, None]).sum(axis=1)
            hid_total[sl] += np.isfinite(z_h).sum(axis=1)
    n_hidden = sum(w.shape[1] for w in network.weights[:-1])
    return ExactEvaluation(
        predicted=predicted,
        labels=labels.astype(np.int64),
        tie=tie,
        decision_time=np.log(z_dec),
        input_spikes_before_decision=inp_before,
        hidden_spikes_before_decision=hid_before,
        input_spikes_total=inp_total,
        hidden_spikes_total=hid_total,
        n_inputs=images.shape[1],
        n_hidden=n_hidden,
    )
