"""The weight image: integer weights, thresholds and datapath constants, nothing float but scales.

This is what is loaded into a board's weight memory. Serialisation lives in ``h5io``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .datapath import DatapathConfig
from .errors import ConfigError


@dataclass(frozen=True)
class LayerImage:
    """One layer as the hardware stores it.

    weights_lsb: int array ``(n_pre + 1, n_post)``, one row per presynaptic neuron (one spike
        fetches one row); the last row is the bias input, which spikes at step 0.
    threshold_lsb: firing threshold in membrane register units (see DatapathConfig.threshold_lsb).
    scale: real weight = ``weights_lsb * scale``.
    """

    weights_lsb: np.ndarray
    threshold_lsb: int
    scale: float


@dataclass(frozen=True)
class WeightImage:
    """A deployable network: datapath spec, integer layers and provenance."""

    spec: DatapathConfig
    layers: tuple[LayerImage, ...]
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("a weight image needs at least one layer")
        spec = self.spec
        for k, layer in enumerate(self.layers):
            w = layer.weights_lsb
            if w.ndim != 2 or not np.issubdtype(w.dtype, np.integer):
                raise ConfigError(f"layer {k}: weights_lsb must be a 2-D integer array, got {w.dtype} {w.shape}")
            if k > 0 and w.shape[0] != self.layers[k - 1].weights_lsb.shape[1] + 1:
                raise ConfigError(
                    f"layer {k}: {w.shape[0]} rows, expected {self.layers[k - 1].weights_lsb.shape[1] + 1} "
                    "(previous layer size + bias row)"
                )
            if w.size and (w.min() < spec.weight_min or w.max() > spec.weight_max):
                raise ConfigError(
                    f"layer {k}: weights outside the {spec.weight_bits}-bit range "
                    f"[{spec.weight_min}, {spec.weight_max}] (min {w.min()}, max {w.max()})"
                )
            if not 1 <= int(layer.threshold_lsb) <= spec.membrane_max:
                raise ConfigError(f"layer {k}: threshold {layer.threshold_lsb} outside 1..{spec.membrane_max}")
            if not (np.isfinite(layer.scale) and layer.scale > 0):
                raise ConfigError(f"layer {k}: scale must be positive and finite, got {layer.scale}")

    @property
    def topology(self) -> tuple[int, ...]:
        return (self.layers[0].weights_lsb.shape[0] - 1,) + tuple(l.weights_lsb.shape[1] for l in self.layers)

    @property
    def weights_lsb(self) -> list[np.ndarray]:
        return [l.weights_lsb for l in self.layers]

    @property
    def thresholds_lsb(self) -> np.ndarray:
        return np.array([l.threshold_lsb for l in self.layers], dtype=np.int64)
