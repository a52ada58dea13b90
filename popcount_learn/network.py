"""The float (exact) network: a stack of fully connected spiking layers.

Each layer's weights have shape ``(n_pre + 1, n_post)``: one row per presynaptic neuron (the
order hardware reads them, one row per spike), the last row is the layer's bias input, which
spikes at ``t = 0`` (``z = 1``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .encoding import SpikeEncoding
from .errors import ConfigError


@dataclass
class ExactNetwork:
    """Weights of every layer plus the input encoding they were trained for."""

    weights: list[np.ndarray]
    encoding: SpikeEncoding = field(default_factory=SpikeEncoding)

    def __post_init__(self) -> None:
        if not self.weights:
            raise ConfigError("a network needs at least one layer")
        for k, w in enumerate(self.weights):
            if not isinstance(w, np.ndarray) or not np.issubdtype(w.dtype, np.floating):
                raise ConfigError(f"layer {k}: weights must be a float numpy array, got {type(w).__name__}")
            if w.dtype not in (np.float32, np.float64):
                # The Numba kernels compute in float32 or float64 only.
                raise ConfigError(f"layer {k}: weights must be float32 or float64, got {w.dtype}")
            if w.ndim != 2:
                raise ConfigError(f"layer {k}: weights must be 2-D, got shape {w.shape}")
            if w.shape[0] < 2 or w.shape[1] < 1:
                raise ConfigError(
                    f"layer {k}: weights of shape {w.shape}; need at least one input row plus the bias row "
                    "and at least one neuron"
                )
            if k > 0 and w.shape[0] != self.weights[k - 1].shape[1] + 1:
                raise ConfigError(
                    f"layer {k}: {w.shape[0]} rows but previous layer has "
                    f"{self.weights[k - 1].shape[1]} neurons (+1 bias row expected)"
                )
            if not np.all(np.isfinite(w)):
                raise ConfigError(f"layer {k}: weights contain NaN or inf")

    @property
    def topology(self) -> tuple[int, ...]:
        """Layer sizes without bias inputs, e.g. ``(784, 800, 10)``."""
        return (self.weights[0].shape[0] - 1, *tuple(w.shape[1] for w in self.weights))

    @classmethod
    def random(cls, topology, seed: int = 0, dtype=np.float64, encoding: SpikeEncoding | None = None):
        """Weights drawn from N(0, 1 / n_pre) per layer: a quick test network, not a training start.

        With zero mean many neurons never reach threshold; ``train.init_network`` scales the mean
        by the number of spiking inputs instead.
        """
        rng = np.random.default_rng(seed)
        weights = []
        for n_pre, n_post in itertools.pairwise(topology):
            std = 1.0 / np.sqrt(n_pre)
            w = rng.normal(0.0, std, size=(n_pre + 1, n_post))
            weights.append(w.astype(dtype))
        return cls(weights, encoding or SpikeEncoding())
