"""On-chip-style training: the sign-only rule over a data set, online, in integer weights.

``train_onchip`` presents the samples one at a time in seeded random orders (optionally
shifted), each a step of ``onchip.OnchipLearner``, and measures the emulator on a test set after
every epoch; ``random_initial_image`` is the seeded integer start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .emulator import emulate, encode_input_steps, summarize
from .errors import ConfigError
from .evaluate import check_images_and_labels
from .learning import LearningConfig
from .onchip import OnchipLearner
from .progress import as_progress
from .quantize import quantize
from .train import TrainConfig, init_network, shift_images
from .weight_image import WeightImage


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
    float_config = TrainConfig(
        hidden=tuple(topology[1:-1]),
        seed=config.seed,
        init_mean=config.init_mean,
        init_std_gain=config.init_std_gain,
        first_layer_init_mean=config.init_mean,
        first_layer_init_std_gain=config.init_std_gain,
    )
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
        side = round(flat.shape[1] ** 0.5)
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
        shown = shift_images(flat, rng, config.augment_shift_px, image_shape) if shifting else flat
        steps = encode_input_steps(image.spec, shown, image.input_encoding)
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
            record["test"] = summarize(emulate(learner.image(), test_images), test_labels)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return learner.image(), history
