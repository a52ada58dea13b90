"""Spike encoding of images: binarize, bright pixels spike at t = 0, dark pixels late or never.

A pixel ``p`` (0..255) is *bright* when ``p > threshold``. Bright pixels spike at ``t = 0``
(``z = 1``). Dark pixels spike at ``t = dark_time`` (``z = exp(dark_time)``) or, when
``dark_time`` is ``None`` (the default), never (``z = inf``). Never-spiking dark pixels are what
lets hardware read only the weight rows of bright pixels (~13% on MNIST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class SpikeEncoding:
    """Binarizing time-to-first-spike input encoding.

    threshold: a pixel spikes early when ``pixel > threshold`` (0..254).
    dark_time: spike time of dark pixels in units of the synaptic time constant, or None = never.
    """

    threshold: int = 128
    dark_time: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not (
            isinstance(self.threshold, (int, np.integer)) and 0 <= self.threshold <= 254
        ):
            raise ConfigError(f"encoding threshold must be an integer in 0..254, got {self.threshold!r}")
        if self.dark_time is not None and (
            isinstance(self.dark_time, bool)
            or not isinstance(self.dark_time, (int, float, np.integer, np.floating))
            or not (math.isfinite(self.dark_time) and self.dark_time > 0)
        ):
            raise ConfigError(f"dark_time must be a positive finite time or None, got {self.dark_time!r}")

    def bright(self, images: np.ndarray) -> np.ndarray:
        """Boolean mask of early (bright) pixels, shape ``(n, n_pixels)``."""
        return images.reshape(len(images), -1) > self.threshold

    def input_z(self, images: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Input spike times in the z domain, ``z = exp(t)``; ``inf`` for no spike.

        A ``dark_time`` whose ``z`` overflows ``dtype`` is refused: inf would mean "never".
        """
        late = np.inf
        if self.dark_time is not None:
            try:
                late = math.exp(self.dark_time)
            except OverflowError:
                late = math.inf
            with np.errstate(over="ignore"):
                if not np.isfinite(np.asarray(late).astype(dtype)):
                    raise ConfigError(
                        f"dark_time {self.dark_time:g} is too late: z = exp(dark_time) overflows {np.dtype(dtype).name}"
                    )
        return np.where(self.bright(images), 1.0, late).astype(dtype)
