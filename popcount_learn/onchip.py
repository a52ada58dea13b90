"""The on-chip learner: a weight image trained with the sign-only rule one step at a time.

``OnchipLearner`` holds the weights as the hardware does (a flat integer buffer in upload
order, sign planes beside it) and applies the kernels of ``onchip_kernels``; ``train_step`` is
exactly one step on an image, the unit a board running the same rule is compared against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bitarray import bitarray

from .emulator import EmulationResult, datapath_constants, emulate, input_steps_for, pack_image
from .errors import ConfigError
from .learning import LearningConfig, window_end_step
from .onchip_kernels import sign_plane, train_samples, unpack_bits
from .weight_image import LayerImage, WeightImage, weight_dtype


@dataclass(frozen=True)
class StepResult:
    """What one training step saw and did (see ``OnchipLearner.step``).

    delta_plus / delta_minus: per layer, the delta planes as bitarrays (bit j set when neuron j
    of that layer had delta +1 / -1).
    """

    predicted: int
    first_output_step: int
    weights_changed: int
    neurons_with_delta: int
    hidden_spikes_delivered: int
    delta_plus: tuple = ()
    delta_minus: tuple = ()


class OnchipLearner:
    """A weight image being trained with the sign-only rule, packed as the hardware holds it.

    Weights stay integers in a flat buffer (rows of every layer in upload order), the sign
    planes are kept next to them and updated with them. ``step`` applies exactly one training
    step; ``train`` runs many in order; ``image()`` returns the current ``WeightImage``.
    """

    def __init__(self, image: WeightImage, learning: LearningConfig) -> None:
        if not isinstance(image, WeightImage):
            raise ConfigError(f"expected a WeightImage, got {type(image).__name__}")
        if not isinstance(learning, LearningConfig):
            raise ConfigError(f"expected a LearningConfig, got {type(learning).__name__}")
        self._template = image
        self.learning = learning
        self.spec = image.spec
        packed = pack_image(image)
        self._packed = packed
        self.w_flat = packed.w_flat.copy()
        self.words = ((packed.n_post + 63) // 64).astype(np.int64)
        sizes = (packed.n_pre + 1) * self.words
        self.sign_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.sign_flat = np.concatenate([sign_plane(layer.weights_lsb).ravel() for layer in image.layers]).astype(
            np.uint64
        )
        self._delta = np.zeros(int(packed.neuron_off[-1]), np.int8)

    def _args(self):
        spec, p, lr = self.spec, self._packed, self.learning
        return (
            self.w_flat,
            p.w_off,
            p.n_pre,
            p.n_post,
            p.neuron_off,
            p.thresholds,
            datapath_constants(spec),
            p.acc_proto,
            p.fire_table,
            spec.weight_min,
            spec.weight_max,
            self.sign_flat,
            self.sign_off,
            self.words,
            lr.margin_steps,
            lr.hidden_update_prob_q16,
            lr.output_update_prob_q16,
            lr.prob_halving_samples,
            lr.seed,
            lr.output_rule == "all_violators",
            lr.correct_rule == "always",
            lr.hidden_spike_target,
        )

    def train(
        self, input_spike_steps: np.ndarray, labels: np.ndarray, first_sample_index: int, order=None
    ) -> np.ndarray:
        """Train on the samples in ``order`` (default: as given); sample ``i`` of the order gets
        index ``first_sample_index + i``. Returns int64 stats ``(n, 5)``: predicted,
        first_output_step, weights changed, neurons with a delta, hidden spikes delivered."""
        steps = np.ascontiguousarray(input_spike_steps, dtype=np.int32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        n_out = int(self._packed.n_post[-1])
        if steps.ndim != 2 or steps.shape[1] != int(self._packed.n_pre[0]):
            raise ConfigError(f"input spike steps must have shape (n, {int(self._packed.n_pre[0])}), got {steps.shape}")
        if labels.shape != (len(steps),):
            raise ConfigError(f"labels must have shape ({len(steps)},), got {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= n_out):
            raise ConfigError(f"labels must be in 0..{n_out - 1} (the output neurons)")
        order = np.arange(len(steps), dtype=np.int64) if order is None else np.ascontiguousarray(order, dtype=np.int64)
        if not (int(first_sample_index) >= 0 and int(first_sample_index) + len(order) <= 1 << 32):
            raise ConfigError(f"sample indices must lie in 0..2**32-1, got {first_sample_index}")
        stats = np.zeros((len(order), 5), np.int64)
        train_samples(steps, labels, order, int(first_sample_index), *self._args(), self._delta, stats)
        return stats

    def step(self, input_spike_steps: np.ndarray, label: int, sample_index: int) -> StepResult:
        """Apply exactly one training step (one encoded input row, its label, its sample index)."""
        steps = np.asarray(input_spike_steps).reshape(1, -1)
        s = self.train(steps, np.array([label]), sample_index)[0]
        off = self._packed.neuron_off
        layers = [self._delta[off[k] : off[k + 1]] for k in range(len(off) - 1)]
        plus = tuple(bitarray((d > 0).tolist()) for d in layers)
        minus = tuple(bitarray((d < 0).tolist()) for d in layers)
        return StepResult(int(s[0]), int(s[1]), int(s[2]), int(s[3]), int(s[4]), plus, minus)

    def sign_plane_bits(self, layer: int) -> list:
        """The sign plane of ``layer`` as the hardware holds it: one bitarray per weight row
        (bit j set when ``w[row, j] < 0``)."""
        p = self._packed
        n_rows, n_post = int(p.n_pre[layer] + 1), int(p.n_post[layer])
        words = self.sign_flat[self.sign_off[layer] : self.sign_off[layer + 1]].reshape(n_rows, -1)
        return [bitarray(unpack_bits(row, n_post).tolist()) for row in words]

    def image(self, provenance: dict | None = None) -> WeightImage:
        """The current weights as a WeightImage (thresholds, scales, spec and input encoding unchanged)."""
        layers = []
        p = self._packed
        wdt = weight_dtype(self.spec)
        for k, layer in enumerate(self._template.layers):
            n = int((p.n_pre[k] + 1) * p.n_post[k])
            w = self.w_flat[p.w_off[k] : p.w_off[k] + n].reshape(int(p.n_pre[k] + 1), int(p.n_post[k])).astype(wdt)
            layers.append(LayerImage(weights_lsb=w, threshold_lsb=layer.threshold_lsb, scale=layer.scale))
        prov = dict(self._template.provenance if provenance is None else provenance)
        return WeightImage(
            spec=self.spec,
            layers=tuple(layers),
            provenance=prov,
            learning=self.learning,
            encoding=self._template.encoding,
        )


def train_step(image: WeightImage, learning: LearningConfig, input_spike_steps, label: int, sample_index: int):
    """Apply exactly one training step to ``image``; returns (new image, StepResult).

    ``input_spike_steps``: one encoded input (``encode_input_steps`` of an image, or any steps).
    This is the unit a board running the same rule is compared against, byte for byte.
    """
    steps = input_steps_for(image, None, np.asarray(input_spike_steps).reshape(1, -1))
    learner = OnchipLearner(image, learning)
    result = learner.step(steps[0], int(label), int(sample_index))
    return learner.image(), result


def training_forward_pass(
    image: WeightImage, learning: LearningConfig, input_spike_steps, label: int
) -> EmulationResult:
    """The forward pass of one training step as ``emulate`` gives it: steps ``0 .. E`` of
    ``window_end_step`` (docs/learning-rule.md, section 3), one encoded input and its label.

    What a body that trains reports for the step (spikes up to ``E``; counters and decision as
    for inference)."""
    steps = input_steps_for(image, None, np.asarray(input_spike_steps).reshape(1, -1))
    full = emulate(image, input_spike_steps=steps, full_raster=True)
    d = int(full.first_output_step[0])
    end = window_end_step(learning, d, int(full.spike_steps[-1][0, int(label)]), image.spec.max_steps)
    return emulate(image, input_spike_steps=steps, steps_after_decision=max(end - d, 0))
