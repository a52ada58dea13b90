"""Train the learning core (``pcl_core`` with ``LEARNING = 1``) under Icarus Verilog + cocotb.

``simulate_training`` loads a weight image, then sends one training request ({label, sample
index}) and the input beats per step, and a weight read-back request every ``readback_every``
steps and after the last, through ``tb/pcl_tb_harness.v`` (``sim.run_harness``; cocotb: ``tb/core_bench.py``).
It returns what the core reported, in the emulator's field names: per step the forward pass
(class, decision step, tie, rows read, every spike step up to the end of the margin window), the
rule's ``weights_changed`` and ``neurons_with_delta``, the cycles and where they went; and the
weight-RAM words of each read-back. The model (``popcount_learn.onchip``) and the checker
(``firmware_bridge.check``) are applied by the caller (``firmware_bridge.commands``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from popcount_learn.errors import ConfigError
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import WeightImage

from . import sim
from .params import TB_PHASE_COUNTERS, RtlLayout

DEFAULT_BATCH_STEPS = 10


def timeout_cycles_per_step(layout: RtlLayout) -> int:
    """An upper bound on a training step's cycles: the forward pass's bound, and every weight
    word of every row read, drawn for every lane and written once."""
    learn = sum((p + 1) * (g * (layout.lanes + 4) + 12) for p, g in zip(layout.n_pre, layout.groups, strict=True))
    return sim.timeout_cycles_per_image(layout) + learn + 4 * layout.neurons + 200


@dataclass(frozen=True)
class RtlTrainResult:
    """What the learning core reported, step by step, and the weights it read back.

    forward: the steps' forward passes as an ``sim.RtlResult`` (spike steps up to the end of the
        margin window (``onchip.training_forward_pass``); ``cycles`` per
        step from the request to the result beat; ``faults`` per step).
    weights_changed, neurons_with_delta: the rule's counts per step (``StepResult`` names).
    phase_cycles: ``TB_PHASE_COUNTERS`` name -> cycles per step.
    readbacks: ``(steps done before it, the weight-RAM words)`` per read-back, in order.
    """

    forward: sim.RtlResult
    weights_changed: np.ndarray
    neurons_with_delta: np.ndarray
    phase_cycles: dict
    readbacks: tuple
    lanes: int
    sim_seconds: float

    def __len__(self) -> int:
        return len(self.weights_changed)

    def step(self, i: int) -> StepReport:
        """Step ``i``'s fields as ``OnchipLearner.step`` names them (for the step checker)."""
        f = self.forward
        return StepReport(
            predicted=int(f.predicted[i]),
            first_output_step=int(f.first_output_step[i]),
            weights_changed=int(self.weights_changed[i]),
            neurons_with_delta=int(self.neurons_with_delta[i]),
            hidden_spikes_delivered=int(f.rows_read[i, 1:].sum()),
        )


@dataclass(frozen=True)
class StepReport:
    """One training step as the core reported it (the fields of ``onchip.StepResult`` it has)."""

    predicted: int
    first_output_step: int
    weights_changed: int
    neurons_with_delta: int
    hidden_spikes_delivered: int


def check_training_inputs(image, learning, input_spike_steps, labels, first_sample_index: int):
    """``(steps, labels)`` as arrays after checking them and the image and rule (ConfigError)."""
    if not isinstance(image, WeightImage):
        raise ConfigError(f"training: expected a WeightImage, got {type(image).__name__}")
    if not isinstance(learning, LearningConfig):
        raise ConfigError(f"training: expected a LearningConfig, got {type(learning).__name__}")
    steps = np.asarray(input_spike_steps)
    labels = np.asarray(labels)
    if steps.ndim != 2 or steps.shape[1] != image.topology[0] or not np.issubdtype(steps.dtype, np.integer):
        raise ConfigError(f"input spike steps must be integers of shape (n, {image.topology[0]}), got {steps.shape}")
    if labels.shape != (len(steps),) or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"labels must be integers of shape ({len(steps)},), got {labels.dtype} {labels.shape}")
    n = len(steps)
    if n == 0:
        raise ConfigError("training: no training steps")
    if not (int(first_sample_index) >= 0 and int(first_sample_index) + n <= 1 << 32):
        raise ConfigError(f"sample indices must lie in 0..2**32-1, got {first_sample_index} + {n} steps")
    return steps, labels


@dataclass(frozen=True)
class TrainingPlan:
    """A checked training run: its steps and labels, the layout, the image whose weights are sent
    (``load_image`` or the image) and the steps after which the weights are read back."""

    steps: np.ndarray
    labels: np.ndarray
    layout: RtlLayout
    sent: WeightImage
    readback_after: list[int]


def plan_training(
    image, learning, input_spike_steps, labels, first_sample_index, lanes, readback_every, load_image
) -> TrainingPlan:
    """``check_training_inputs``, then the layout, the image sent and the read-back steps
    (after every ``readback_every`` steps, None: none but the last, and after the last)."""
    steps, labels = check_training_inputs(image, learning, input_spike_steps, labels, first_sample_index)
    if readback_every is not None and readback_every < 1:
        raise ConfigError(f"readback_every must be positive, got {readback_every}")
    layout = RtlLayout.for_image(image, lanes, learning)
    sent = load_image if load_image is not None else image
    if RtlLayout.for_image(sent, lanes, learning) != layout:
        raise ConfigError("load_image must have the datapath and topology of image")
    n, every = len(steps), readback_every or len(steps)
    readback_after = [i for i in range(n) if (i + 1) % every == 0 or i == n - 1]
    return TrainingPlan(steps, labels, layout, sent, readback_after)


def simulate_training(
    image: WeightImage,
    learning: LearningConfig,
    input_spike_steps: np.ndarray,
    labels: np.ndarray,
    first_sample_index: int = 0,
    *,
    lanes: int = 4,
    readback_every: int | None = None,
    batch_steps: int = DEFAULT_BATCH_STEPS,
    throttle: bool = False,
    shuffle_seed: int | None = None,
    load_image: WeightImage | None = None,
    build_root=None,
    progress=None,
    keep_dir=None,
) -> RtlTrainResult:
    """Train the core on ``input_spike_steps[i]`` / ``labels[i]`` with sample index
    ``first_sample_index + i``, one step each, from ``image`` (or ``load_image``, e.g. a corrupted
    copy, to show that a comparison with the model started from ``image`` notices).

    The weights are read back after every ``readback_every`` steps (None: only after the last)
    and after the last step. ``throttle``: random gaps and back-pressure on every stream;
    ``shuffle_seed``: permute the input spikes within each step. Progress per finished batch.
    """
    plan = plan_training(
        image, learning, input_spike_steps, labels, first_sample_index, lanes, readback_every, load_image
    )
    steps, labels, layout, sent, readback_after = plan.steps, plan.labels, plan.layout, plan.sent, plan.readback_after
    n = len(steps)
    batch_steps = max(1, min(int(batch_steps), n))
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    pay_bits = sim.command_payload_bits(layout)
    per_step_timeout = timeout_cycles_per_step(layout) * (4 if throttle else 1)
    batches = []
    for start in range(0, n, batch_steps):
        cmds: list[int] = []
        n_words = 0
        for i in range(start, min(n, start + batch_steps)):
            cmds.append((sim.CMD_TRAIN << pay_bits) | layout.train_beat(int(labels[i]), first_sample_index + i))
            cmds += [(sim.CMD_INPUT << pay_bits) | beat for beat in layout.input_beats(steps[i], shuffle=rng)]
            if i in readback_after:
                cmds.append(sim.CMD_READBACK << pay_bits)
                n_words += layout.weight_words
        n_here = min(n, start + batch_steps) - start
        timeout = n_here * per_step_timeout + 4 * len(cmds) + 4 * n_words + 1000
        batches.append({"commands": cmds, "n_results": n_here, "n_words": n_words, "timeout_cycles": timeout})
    records, words, seconds = sim.run_harness(
        layout,
        layout.load_beats(sent),
        batches,
        batch_steps=batch_steps,
        throttle=throttle,
        what="the RTL training simulation",
        desc=f"RTL training ({lanes} lanes)",
        build_root=build_root,
        progress=progress,
        keep_dir=keep_dir,
    )
    return _decode(layout, records, words, readback_after, batch_steps, n, lanes, seconds)


def _decode(layout, records, words, readback_after, batch_steps, n, lanes, seconds) -> RtlTrainResult:
    readbacks = []
    for b, (record, batch_words) in enumerate(zip(records, words, strict=True)):
        first = b * batch_steps
        after = [i for i in readback_after if first <= i < first + len(record["trained"])]
        for j, i in enumerate(after):
            readbacks.append((i + 1, tuple(batch_words[j * layout.weight_words : (j + 1) * layout.weight_words])))
    forward = sim.decode_records(layout, records, n, lanes, seconds)
    cat = {
        name: np.concatenate([r[name] for r in records]) for name in records[0] if name not in ("spikes", "first_image")
    }
    faults = dict(forward.faults)
    for i in np.flatnonzero(cat["trained"] == 0):
        faults.setdefault(int(i), ())
        faults[int(i)] += ("the result beat does not say it was a training step",)
    forward = dataclasses.replace(forward, faults=dict(sorted(faults.items())))
    return RtlTrainResult(
        forward=forward,
        weights_changed=cat["weights_changed"],
        neurons_with_delta=cat["neurons_with_delta"],
        phase_cycles={name: cat[name] for name in TB_PHASE_COUNTERS},
        readbacks=tuple(readbacks),
        lanes=lanes,
        sim_seconds=seconds,
    )
