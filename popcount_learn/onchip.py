"""Numba kernels and the trainer of the sign-only popcount rule (``docs/learning-rule.md``).

Bit planes are held as the hardware holds them: per layer a weight-sign plane (bit ``j`` of row
``r`` = ``w[r, j] < 0``, packed in 64-bit words), per step of the window a causal plane, per
layer a plus and a minus delta plane. A presynaptic delta is two popcounts and a compare
(``sign_popcount_delta``); the only weights that move are causal ones of neurons with a delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .datapath import OVERFLOW_CODES, TIE_CODES
from .emulator import _input_steps_for, _pack, _run_image
from .errors import ConfigError
from .learning import LearningConfig, sample_key, weight_draw
from .weight_image import LayerImage, WeightImage, weight_dtype


# ----------------------------------------------------------------------------------------------
# Bit-plane kernels (64-bit words, bit j of word j // 64 is neuron j)


@numba.njit(cache=True, inline="always")
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True)
def causal_planes(deadline, n_steps, out):
    """``out[a]`` = bit plane of the neurons with ``deadline_j >= a``, for a = 0 .. n_steps - 1.

    ``deadline`` (int, -1 = none): the step a neuron fired at, or the window end for a silent
    neuron that learns. Row ``r`` arriving at step ``a`` is causal for exactly ``out[a]``.
    """
    out[:, :] = 0
    for j in range(deadline.shape[0]):
        d = deadline[j]
        if d >= 0:
            d = min(d, n_steps - 1)
            out[d, j >> 6] |= np.uint64(1) << np.uint64(j & 63)
    for a in range(n_steps - 2, -1, -1):
        for w in range(out.shape[1]):
            out[a, w] |= out[a + 1, w]


@numba.njit(cache=True)
def sign_popcount_delta(causal_row, sign_row, plus, minus):
    """delta of a presynaptic neuron: sign(popcount(ways +1) - popcount(ways -1)).

    way +1: downstream delta +1 through w >= 0, or -1 through w < 0 (sign bit set); way -1 the
    other two. Only downstream neurons in ``causal_row`` count.
    """
    n_plus = 0
    n_minus = 0
    for w in range(causal_row.shape[0]):
        c = causal_row[w]
        s = sign_row[w]
        n_plus += _popcount64(c & ((plus[w] & ~s) | (minus[w] & s)))
        n_minus += _popcount64(c & ((minus[w] & ~s) | (plus[w] & s)))
    if n_plus > n_minus:
        return 1
    if n_minus > n_plus:
        return -1
    return 0


@numba.njit(cache=True)
def _apply_layer_updates(w_flat, w_base, n_post, sign_plane, arrival, causal, plus, minus,
                         key, g_base, prob_q16, w_lo, w_hi):
    """Move each causal weight of the neurons with a delta by one LSB where the draw says so.

    Returns the number of weights changed (a saturated weight that cannot move is not counted).
    """
    changed = 0
    if prob_q16 == 0:
        return 0
    for r in range(arrival.shape[0]):
        a = arrival[r]
        if a < 0 or a >= causal.shape[0]:
            continue
        for wi in range(plus.shape[0]):
            todo = causal[a, wi] & (plus[wi] | minus[wi])
            while todo != 0:
                b = np.int64(_popcount64((todo & (~todo + np.uint64(1))) - np.uint64(1)))
                todo &= todo - np.uint64(1)
                j = wi * 64 + b
                idx = r * n_post + j
                u = weight_draw(key, g_base + idx)
                if (u >> np.uint64(16)) >= np.uint64(prob_q16):
                    continue
                old = np.int64(w_flat[w_base + idx])
                if (plus[wi] >> np.uint64(b)) & np.uint64(1):
                    new = max(old - 1, w_lo)
                else:
                    new = min(old + 1, w_hi)
                if new != old:
                    w_flat[w_base + idx] = new
                    bit = np.uint64(1) << np.uint64(b)
                    if new < 0:
                        sign_plane[r, wi] |= bit
                    else:
                        sign_plane[r, wi] &= ~bit
                    changed += 1
    return changed


@numba.njit(cache=True)
def _train_one(
    in_steps, label, sample_index,
    w_flat, w_off, n_pre, n_post, neuron_off, thresholds,
    time_shift, frac_bits, cur_lo, cur_hi, cur_wrap, mem_lo, mem_hi, mem_wrap, tie_lowest, max_steps,
    acc_proto, w_lo, w_hi, sign_flat, sign_off, words,
    margin, hidden_prob, output_prob, halving, seed, all_violators, always_correct,
    spk, rows_read, delta, stats,
):
    """One step of the rule on one sample; weights and sign planes change in place.

    ``stats`` receives [predicted, first_output_step, weights changed, neurons with a delta,
    hidden spikes delivered before the decision].
    """
    n_layers = n_pre.shape[0]
    spk[:] = -1
    predicted, decision, _tie = _run_image(
        in_steps, w_flat, w_off, n_pre, n_post, neuron_off, thresholds,
        time_shift, frac_bits, cur_lo, cur_hi, cur_wrap, mem_lo, mem_hi, mem_wrap,
        tie_lowest, max_steps, margin - 1, acc_proto, spk, rows_read,
    )
    end = max_steps - 1
    if decision >= 0:
        end = min(decision + margin - 1, max_steps - 1)
    n_steps = end + 2  # arrival steps 0 .. end + 1 (a hidden spike at `end` arrives too late)

    # Output deltas.
    delta[:] = 0
    out = n_layers - 1
    ob = neuron_off[out]
    s_c = spk[ob + label]
    c_fired = s_c >= 0
    earliest = -1
    any_violator = False
    for j in range(n_post[out]):
        s = spk[ob + j]
        if j == label or s < 0:
            continue
        if (not c_fired) or s < s_c + margin:
            any_violator = True
            if all_violators:
                delta[ob + j] = 1
            elif earliest < 0 or s < spk[ob + earliest]:
                earliest = j
    if earliest >= 0:
        delta[ob + earliest] = 1
    if any_violator or (not c_fired) or always_correct:
        delta[ob + label] = -1

    hidden_delivered = 0
    for k in range(n_layers - 1):
        hidden_delivered += rows_read[k + 1]
    n_delta = 0
    changed = 0
    key = sample_key(seed, sample_index)
    shift = 0
    if halving > 0:
        shift = min(31, sample_index // halving)

    # Per layer, from the output back: delta planes, causal planes, presynaptic deltas.
    for k in range(n_layers - 1, -1, -1):
        nb = neuron_off[k]
        npost = n_post[k]
        nw = words[k]
        plus = np.zeros(nw, np.uint64)
        minus = np.zeros(nw, np.uint64)
        deadline = np.full(npost, -1, np.int64)
        have = False
        for j in range(npost):
            d = delta[nb + j]
            if d != 0:
                have = True
                n_delta += 1
                bit = np.uint64(1) << np.uint64(j & 63)
                if d > 0:
                    plus[j >> 6] |= bit
                else:
                    minus[j >> 6] |= bit
                s = spk[nb + j]
                deadline[j] = s if s >= 0 else end
        if not have:
            continue
        causal = np.empty((n_steps, nw), np.uint64)
        causal_planes(deadline, n_steps, causal)
        # Arrival step of every row of layer k (-1 = did not arrive by `end`).
        npre = n_pre[k]
        arrival = np.full(npre + 1, -1, np.int64)
        if k == 0:
            for r in range(npre):
                s = in_steps[r]
                if 0 <= s <= end:
                    arrival[r] = s
        else:
            pb = neuron_off[k - 1]
            for r in range(npre):
                s = spk[pb + r]
                if s >= 0 and s + 1 <= end:
                    arrival[r] = s + 1
        arrival[npre] = 0  # bias
        plane = sign_flat[sign_off[k] : sign_off[k] + (npre + 1) * nw].reshape(npre + 1, nw)
        if k > 0:
            pb = neuron_off[k - 1]
            for r in range(npre):
                a = arrival[r]
                if a >= 0:
                    delta[pb + r] = sign_popcount_delta(causal[a], plane[r], plus, minus)
        prob = output_prob if k == out else hidden_prob
        changed += _apply_layer_updates(
            w_flat, w_off[k], npost, plane, arrival, causal, plus, minus,
            key, w_off[k], prob >> shift, w_lo, w_hi,
        )
    stats[0] = predicted
    stats[1] = decision
    stats[2] = changed
    stats[3] = n_delta
    stats[4] = hidden_delivered


@numba.njit(cache=True)
def _train_samples(
    input_steps, labels, order, first_sample_index,
    w_flat, w_off, n_pre, n_post, neuron_off, thresholds,
    time_shift, frac_bits, cur_lo, cur_hi, cur_wrap, mem_lo, mem_hi, mem_wrap, tie_lowest, max_steps,
    acc_proto, w_lo, w_hi, sign_flat, sign_off, words,
    margin, hidden_prob, output_prob, halving, seed, all_violators, always_correct,
    delta, stats_out,
):
    """Train on ``input_steps[order[i]]`` for i = 0, 1, ... (sample index first_sample_index + i).

    ``delta`` (int8, one per neuron) is scratch; it is left holding the last sample's deltas.
    """
    total = neuron_off[n_pre.shape[0]]
    spk = np.empty(total, np.int32)
    rows_read = np.empty(n_pre.shape[0], np.int32)
    for i in range(order.shape[0]):
        s = order[i]
        _train_one(
            input_steps[s], labels[s], first_sample_index + i,
            w_flat, w_off, n_pre, n_post, neuron_off, thresholds,
            time_shift, frac_bits, cur_lo, cur_hi, cur_wrap, mem_lo, mem_hi, mem_wrap, tie_lowest, max_steps,
            acc_proto, w_lo, w_hi, sign_flat, sign_off, words,
            margin, hidden_prob, output_prob, halving, seed, all_violators, always_correct,
            spk, rows_read, delta, stats_out[i],
        )


# ----------------------------------------------------------------------------------------------
# Python API


def pack_bits(bits) -> np.ndarray:
    """A boolean vector as little-endian 64-bit words (bit j of word j // 64 is element j)."""
    b = np.asarray(bits, dtype=bool).ravel()
    words = np.zeros((len(b) + 63) // 64, np.uint64)
    for j in np.flatnonzero(b):
        words[j >> 6] |= np.uint64(1) << np.uint64(j & 63)
    return words


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``pack_bits``: the first ``n`` bits as a bool array."""
    w = np.asarray(words, dtype=np.uint64)
    idx = np.arange(n)
    return ((w[idx >> 6] >> (idx & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)


def sign_plane(weights_lsb: np.ndarray) -> np.ndarray:
    """Packed sign bits ``w < 0`` of a layer, shape ``(n_pre + 1, ceil(n_post / 64))`` uint64."""
    w = np.asarray(weights_lsb)
    return np.stack([pack_bits(row < 0) for row in w]) if len(w) else np.zeros((0, 0), np.uint64)


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
        packed = _pack(image)
        self._packed = packed
        self.w_flat = packed.w_flat.copy()
        self.words = ((packed.n_post + 63) // 64).astype(np.int64)
        sizes = (packed.n_pre + 1) * self.words
        self.sign_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.sign_flat = np.concatenate([sign_plane(l.weights_lsb).ravel() for l in image.layers]).astype(np.uint64)
        self._delta = np.zeros(int(packed.neuron_off[-1]), np.int8)

    def _args(self):
        spec, p, lr = self.spec, self._packed, self.learning
        return (
            self.w_flat, p.w_off, p.n_pre, p.n_post, p.neuron_off, p.thresholds,
            spec.time_shift, spec.current_frac_bits, spec.current_min, spec.current_max,
            spec.current_overflow_code == OVERFLOW_CODES["wrap"], spec.membrane_min, spec.membrane_max,
            spec.membrane_overflow_code == OVERFLOW_CODES["wrap"], spec.tie_rule_code == TIE_CODES["lowest_index"],
            spec.max_steps, p.acc_proto, spec.weight_min, spec.weight_max, self.sign_flat, self.sign_off, self.words,
            lr.margin_steps, lr.hidden_update_prob_q16, lr.output_update_prob_q16, lr.prob_halving_samples,
            lr.seed, lr.output_rule == "all_violators", lr.correct_rule == "always",
        )

    def train(self, input_spike_steps: np.ndarray, labels: np.ndarray, first_sample_index: int, order=None) -> np.ndarray:
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
        if not (0 <= int(first_sample_index) and int(first_sample_index) + len(order) <= 1 << 32):
            raise ConfigError(f"sample indices must lie in 0..2**32-1, got {first_sample_index}")
        stats = np.zeros((len(order), 5), np.int64)
        _train_samples(steps, labels, order, int(first_sample_index), *self._args(), self._delta, stats)
        return stats

    def step(self, input_spike_steps: np.ndarray, label: int, sample_index: int) -> StepResult:
        """Apply exactly one training step (one encoded input row, its label, its sample index)."""
        from bitarray import bitarray

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
        from bitarray import bitarray

        p = self._packed
        n_rows, n_post = int(p.n_pre[layer] + 1), int(p.n_post[layer])
        words = self.sign_flat[self.sign_off[layer] : self.sign_off[layer + 1]].reshape(n_rows, -1)
        return [bitarray(unpack_bits(row, n_post).tolist()) for row in words]

    def image(self, provenance: dict | None = None) -> WeightImage:
        """The current weights as a WeightImage (thresholds, scales and spec unchanged)."""
        layers = []
        p = self._packed
        wdt = weight_dtype(self.spec)
        for k, layer in enumerate(self._template.layers):
            n = int((p.n_pre[k] + 1) * p.n_post[k])
            w = self.w_flat[p.w_off[k] : p.w_off[k] + n].reshape(int(p.n_pre[k] + 1), int(p.n_post[k])).astype(wdt)
            layers.append(LayerImage(weights_lsb=w, threshold_lsb=layer.threshold_lsb, scale=layer.scale))
        prov = dict(self._template.provenance if provenance is None else provenance)
        return WeightImage(spec=self.spec, layers=tuple(layers), provenance=prov, learning=self.learning)


def train_step(image: WeightImage, learning: LearningConfig, input_spike_steps, label: int, sample_index: int):
    """Apply exactly one training step to ``image``; returns (new image, StepResult).

    ``input_spike_steps``: one encoded input (``encode_input_steps`` of an image, or any steps).
    This is the unit a board running the same rule is compared against, byte for byte.
    """
    steps = _input_steps_for(image, None, np.asarray(input_spike_steps).reshape(1, -1))
    learner = OnchipLearner(image, learning)
    result = learner.step(steps[0], int(label), int(sample_index))
    return learner.image(), result


# ----------------------------------------------------------------------------------------------
# The trainer


@dataclass(frozen=True)
class OnchipTrainConfig:
    """Options of on-chip-style training (online, one sample at a time, integer weights).

    hidden: hidden layer sizes of a new network (ignored when starting from a model).
    epochs: passes over the training set, each in a fresh seeded random order.
    seed: sample order, shift augmentation and the random initial network.
    augment_shift_px: random translation of each presented image (0 = none; the host does it,
        the rule sees only the translated image), from epoch ``augment_from_epoch`` on. Shifting
        from the first epoch is worth ~0.3 points after 15 epochs (two seeds) but costs ~1-2
        points in a one-epoch run (BENCHMARKS.md).
    init_mean, init_std_gain: the random float init (``train.init_network``) that is quantised
        to the datapath to give the initial integer weights.
    first_sample_index: sample index ``t`` of the first sample presented.
    chunk_samples: samples per kernel call (progress granularity; no effect on the result).
    """

    hidden: tuple[int, ...] = (600,)
    epochs: int = 15
    seed: int = 0
    augment_shift_px: int = 1
    augment_from_epoch: int = 1
    init_mean: float = 2.0
    init_std_gain: float = 1.0
    first_sample_index: int = 0
    chunk_samples: int = 4096

    def __post_init__(self) -> None:
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not (isinstance(self.hidden, (tuple, list)) and all(is_int(h) and h > 0 for h in self.hidden)):
            raise ConfigError(f"hidden sizes must be a sequence of positive integers, got {self.hidden!r}")
        for name in ("epochs", "seed", "augment_shift_px", "first_sample_index"):
            v = getattr(self, name)
            if not (is_int(v) and v >= 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be an integer >= 0, got {v!r}")
        if self.augment_shift_px > 4:
            raise ConfigError(f"augment shift must be in 0..4 pixels, got {self.augment_shift_px}")
        if not (is_int(self.augment_from_epoch) and self.augment_from_epoch >= 1):
            raise ConfigError(f"augment from epoch must be an integer >= 1, got {self.augment_from_epoch!r}")
        if not (is_int(self.chunk_samples) and self.chunk_samples >= 1):
            raise ConfigError(f"chunk_samples must be a positive integer, got {self.chunk_samples!r}")


def random_initial_image(topology, spec, config: OnchipTrainConfig, encoding, active_inputs: float) -> WeightImage:
    """A seeded random integer network: the exact trainer's Gaussian init, quantised to ``spec``."""
    from .quantize import quantize
    from .train import TrainConfig, init_network

    float_config = TrainConfig(hidden=tuple(topology[1:-1]), seed=config.seed, init_mean=config.init_mean,
                               init_std_gain=config.init_std_gain, first_layer_init_mean=config.init_mean,
                               first_layer_init_std_gain=config.init_std_gain)
    return quantize(init_network(topology, float_config, encoding, active_inputs), spec)


def train_onchip(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    image: WeightImage,
    learning: LearningConfig,
    config: OnchipTrainConfig = OnchipTrainConfig(),
    *,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    progress=None,
    on_epoch=None,
    image_shape: tuple[int, int] | None = None,
) -> tuple[WeightImage, list[dict]]:
    """Train ``image`` with the sign-only rule, one uint8 image at a time; returns it and the
    per-epoch history.

    Deterministic for a given image, rule and config, whatever the thread count (the samples are
    processed strictly in order; only the test-set evaluation runs in parallel). Each epoch's
    record has the running train accuracy, the mean number of weights changed per sample, the
    share of samples that changed anything, samples/s, and (with a test set) the ``summarize``
    statistics of the emulator under ``"test"``.
    """
    import time

    from .emulator import encode_input_steps, summarize
    from .emulator import emulate as run_emulator
    from .evaluate import check_images_and_labels
    from .progress import as_progress
    from .train import _shift_images

    progress = as_progress(progress)
    check_images_and_labels(train_images, train_labels)
    n = len(train_labels)
    if n == 0:
        raise ConfigError("no training images")
    learner = OnchipLearner(image, learning)
    flat = train_images.reshape(n, -1)
    if flat.shape[1] != image.topology[0]:
        raise ConfigError(f"images have {flat.shape[1]} pixels, the network expects {image.topology[0]} inputs")
    if int(train_labels.max()) >= image.topology[-1]:
        raise ConfigError(f"labels go up to {int(train_labels.max())} but the network has {image.topology[-1]} outputs")
    if config.augment_shift_px and image_shape is None:
        side = int(round(flat.shape[1] ** 0.5))
        if side * side != flat.shape[1]:
            raise ConfigError("shift augmentation needs the image shape (pass image_shape)")
        image_shape = (side, side)
    rng = np.random.default_rng(config.seed + 1)
    labels = np.asarray(train_labels, dtype=np.int64)
    t = config.first_sample_index
    history = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        shifting = config.augment_shift_px and epoch + 1 >= config.augment_from_epoch
        shown = _shift_images(flat, rng, config.augment_shift_px, image_shape) if shifting else flat
        steps = encode_input_steps(image.spec, shown)
        progress.start(total=n, desc=f"epoch {epoch + 1}/{config.epochs}")
        correct = changed = updated = 0
        for start in range(0, n, config.chunk_samples):
            part = order[start : start + config.chunk_samples]
            stats = learner.train(steps, labels, t, part)
            t += len(part)
            correct += int((stats[:, 0] == labels[part]).sum())
            changed += int(stats[:, 2].sum())
            updated += int((stats[:, 2] > 0).sum())
            done = start + len(part)
            progress.update(len(part), acc=correct / done, changed=changed / done)
        progress.close()
        seconds = time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_accuracy": correct / n,
            "weights_changed_per_sample": changed / n,
            "samples_with_update_fraction": updated / n,
            "hidden_update_prob_q16": learning.update_prob_q16(False, t - 1),
            "output_update_prob_q16": learning.update_prob_q16(True, t - 1),
            "samples_per_s": n / seconds if seconds > 0 else float("inf"),
            "seconds": seconds,
        }
        if test_images is not None and test_labels is not None:
            record["test"] = summarize(run_emulator(learner.image(), test_images), test_labels)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return learner.image(), history
