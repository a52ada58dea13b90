"""One point of a sweep, as a worker runs it: train, quantise (exact mode), emulate, price.

``run_point`` is a plain function of plain arguments (the point's configuration as a dict and
the data arrays) so that any Dask worker can run it. It is deterministic: every random draw is
seeded from the configuration (``train.seed``: initial weights, sample order, shifts;
``learning.seed``: the on-chip rule's counter-based draw), and the trainers sum in a fixed order
whatever the thread count, so the same configuration gives the same weight image, hence the
same ``image_hash`` (SHA-256 of the image's upload byte stream), on any worker.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import traceback

import numpy as np

from ..cost import hardware_cost
from ..emulator import emulate, summarize
from ..evaluate import evaluate_exact
from ..onchip_train import random_initial_image, train_onchip
from ..quantize import quantize
from ..train import expected_active_inputs, train_exact
from ..weight_image import upload_bytes
from .spec import PointConfig

# Per-epoch history fields that are measurements of the machine, not of the point.
_TIMING_KEYS = ("seconds", "samples_per_s")


def image_hash(image) -> str:
    """SHA-256 (hex) of the image's upload byte stream: spec, thresholds and every weight."""
    return hashlib.sha256(upload_bytes(image)).hexdigest()


def set_numba_threads(threads: int) -> int:
    """Use ``threads`` Numba threads in the calling thread (capped at NUMBA_NUM_THREADS)."""
    import numba

    n = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def evaluate_point(config: PointConfig, train_data, test_data) -> tuple[object, dict]:
    """(weight image, metrics) of one point; raises on any failure.

    ``train_data`` = (images uint8, labels, image_shape); ``test_data`` = (images, labels).
    """
    train_cfg, spec, encoding, hardware, learning = config.objects()
    images, labels, shape = train_data
    test_images, test_labels = test_data
    n_classes = max(int(np.max(labels)), int(np.max(test_labels))) + 1
    metrics: dict = {}
    if config.mode == "exact":
        network, history = train_exact(
            images, labels, train_cfg, encoding=encoding, image_shape=shape, n_classes=n_classes
        )
        epochs = history.epochs
        exact = evaluate_exact(network, test_images, test_labels).summary()
        metrics["float_accuracy"] = exact["accuracy"]
        metrics["float_hidden_spikes_before_decision_mean"] = exact["hidden_spikes_before_decision_mean"]
        image = quantize(network, spec)
    else:
        topology = (int(images[0].size), *train_cfg.hidden, n_classes)
        start = random_initial_image(topology, spec, train_cfg, encoding, expected_active_inputs(images, encoding))
        image, epochs = train_onchip(images, labels, start, learning, train_cfg, image_shape=shape)
    if epochs:
        last = {k: v for k, v in epochs[-1].items() if k not in _TIMING_KEYS and not isinstance(v, dict)}
        metrics.update({f"train_{k}" if not k.startswith("train_") else k: v for k, v in last.items()})
    result = emulate(image, test_images)
    metrics.update(summarize(result, test_labels))
    metrics.update(hardware_cost(image, result, hardware))
    metrics["topology"] = list(image.topology)
    return image, metrics


def run_point(point: dict, train_data, test_data, numba_threads: int = 1) -> dict:
    """Run one point (``point`` = ``PointConfig.to_dict()``) and report it; never raises.

    Returns {config_hash, status ("done" or "failed"), error, image, image_hash, metrics,
    worker, pid, seconds}; a failure carries the exception's type and message as ``error``
    (and its traceback as ``traceback``) so that the sweep records it and goes on.
    """
    config = PointConfig(**{**point, "data_sha256": tuple(sorted(point["data_sha256"].items()))})
    t0 = time.perf_counter()
    out = {
        "config_hash": config.config_hash,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "status": "failed",
        "error": None,
        "image": None,
        "image_hash": None,
        "metrics": None,
    }
    try:
        out["numba_threads"] = set_numba_threads(numba_threads)
        image, metrics = evaluate_point(config, train_data, test_data)
        out.update(status="done", image=image, image_hash=image_hash(image), metrics=metrics)
    except Exception as exc:  # recorded in the store: one bad point must not stop the sweep
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=20)
    out["seconds"] = time.perf_counter() - t0
    return out
