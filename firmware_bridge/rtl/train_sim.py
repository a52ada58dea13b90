"""Train the learning core (``pcl_core`` with ``LEARNING = 1``) under Icarus Verilog + cocotb.

``simulate_training`` loads a weight image, then sends one training request ({label, sample
index}) and the input beats per step, and a weight read-back request every ``readback_every``
steps and after the last, through ``tb/pcl_train_harness.v`` (cocotb side: ``tb/train_bench.py``).
It returns what the core reported, in the emulator's field names: per step the forward pass
(class, decision step, tie, rows read, every spike step up to the end of the margin window), the
rule's ``weights_changed`` and ``neurons_with_delta``, the cycles and where they went; and the
weight-RAM words of each read-back. The model (``popcount_learn.onchip``) and the checker
(``firmware_bridge.check``) are applied by the caller (``firmware_bridge.commands``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from popcount_learn import codegen
from popcount_learn.codegen import Constant
from popcount_learn.errors import ConfigError
from popcount_learn.learning import LearningConfig
from popcount_learn.progress import as_progress
from popcount_learn.weight_image import WeightImage

from ..errors import RtlSimulationError
from . import sim
from .params import TB_CYCLE_BITS, TB_IMAGE_BITS, TB_PHASE_COUNTERS, RtlLayout, unpack
from .sources import RTL_DIR

HARNESS = RTL_DIR / "tb" / "pcl_train_harness.v"
TOPLEVEL = "pcl_train_harness"
DEFAULT_BATCH_STEPS = 10
_POLL_SECONDS = 0.2
# Command kinds of the harness's command stream (tb/pcl_train_harness.v).
CMD_INPUT, CMD_TRAIN, CMD_READBACK = 0, 1, 2
PLUSARGS = ("load_hex", "cmd_hex", "sp_hex", "res_hex", "rd_hex")
RECORD_FIELDS = (
    "input_error",
    "tie",
    "decided",
    "predicted",
    "step",
    "trained",
    "weights_changed",
    "neurons_with_delta",
)


def tb_constants(layout: RtlLayout, batch_steps: int, readbacks_per_batch: int) -> list[Constant]:
    """The training harness's memory depths (its pcl_tb.vh) for batches of ``batch_steps`` steps."""
    commands = batch_steps * (layout.topology[0] + 2) + readbacks_per_batch
    return [
        Constant("TB_SRC_DEPTH", max(layout.weight_words + layout.n_layers, commands)),
        Constant("TB_SP_DEPTH", batch_steps * layout.neurons),
        Constant("TB_RES_DEPTH", batch_steps),
        Constant("TB_WORD_DEPTH", max(1, readbacks_per_batch * layout.weight_words)),
        Constant("TB_IMAGE_BITS", TB_IMAGE_BITS),
        Constant("TB_CYCLE_BITS", TB_CYCLE_BITS),
    ]


def build_training(layout: RtlLayout, *, batch_steps: int, readbacks_per_batch: int, build_root=None):
    """Generate the headers and compile the training harness (cached by content): ``(runner, build_dir)``."""
    if layout.learning is None:
        raise ConfigError("the training harness needs a layout with a LearningConfig")
    headers = {
        **layout.headers(),
        "pcl_tb.vh": codegen.verilog_header(
            "pcl_tb.vh", tb_constants(layout, batch_steps, readbacks_per_batch), source="firmware_bridge.rtl.train_sim"
        ),
    }
    return sim.compile_bench([*sim.CORE_SOURCES, HARNESS], TOPLEVEL, headers, build_root=build_root)


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


def _hex_records(path: Path) -> list[int]:
    lines = (line.split("//")[0].strip() for line in path.read_text().splitlines())
    return [int(line, 16) for line in lines if line]


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
    steps, labels = check_training_inputs(image, learning, input_spike_steps, labels, first_sample_index)
    n = len(steps)
    if readback_every is not None and readback_every < 1:
        raise ConfigError(f"readback_every must be positive, got {readback_every}")
    layout = RtlLayout.for_image(image, lanes, learning)
    sent = load_image if load_image is not None else image
    if RtlLayout.for_image(sent, lanes, learning) != layout:
        raise ConfigError("load_image must have the datapath and topology of image")
    batch_steps = max(1, min(int(batch_steps), n))
    every = readback_every or n
    readback_after = [i for i in range(n) if (i + 1) % every == 0 or i == n - 1]
    per_batch = max(sum(1 for i in readback_after if i // batch_steps == b) for b in range(-(-n // batch_steps)))
    runner, build_dir = build_training(
        layout, batch_steps=batch_steps, readbacks_per_batch=per_batch, build_root=build_root
    )
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    w = layout.widths
    pay_bits = max(1 + w["STEP_BITS"] + w["IN_INDEX_BITS"], w["NEURON_BITS"] + 32)
    progress = as_progress(progress)
    from cocotb_tools.check_results import get_results

    with tempfile.TemporaryDirectory(prefix="pcl-rtl-train-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        out_dir = work / "out"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        load = layout.load_beats(sent)
        (work / "load.hex").write_text("".join(f"{v:x}\n" for v in load))
        batches = []
        per_step_timeout = timeout_cycles_per_step(layout) * (4 if throttle else 1)
        for b, start in enumerate(range(0, n, batch_steps)):
            cmds: list[int] = []
            n_words = 0
            for i in range(start, min(n, start + batch_steps)):
                cmds.append((CMD_TRAIN << pay_bits) | layout.train_beat(int(labels[i]), first_sample_index + i))
                cmds += [(CMD_INPUT << pay_bits) | beat for beat in layout.input_beats(steps[i], shuffle=rng)]
                if i in readback_after:
                    cmds.append(CMD_READBACK << pay_bits)
                    n_words += layout.weight_words
            path = work / f"cmd{b:06d}.hex"
            path.write_text("".join(f"{v:x}\n" for v in cmds))
            n_here = min(n, start + batch_steps) - start
            batches.append(
                {
                    "cmd_hex": str(path),
                    "n_beats": len(cmds),
                    "n_results": n_here,
                    "n_words": n_words,
                    "timeout_cycles": n_here * per_step_timeout + 4 * len(cmds) + 4 * n_words + 1000,
                }
            )
        job = {
            "load_hex": str(work / "load.hex"),
            "load_beats": len(load),
            "cmd_hex": str(work / "cmd.hex"),
            "sp_hex": str(work / "sp.hex"),
            "res_hex": str(work / "res.hex"),
            "rd_hex": str(work / "rd.hex"),
            "batches": batches,
            "out_dir": str(out_dir),
            "throttle": bool(throttle),
        }
        (work / "job.json").write_text(json.dumps(job))
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["xml"] = runner.test(
                    test_module="firmware_bridge.rtl.tb.train_bench",
                    hdl_toplevel=TOPLEVEL,
                    build_dir=build_dir,
                    test_dir=work,
                    results_xml=str(work / "results.xml"),
                    log_file=work / "sim.log",
                    plusargs=[
                        f"+{name}={job[name]}" for name in ("load_hex", "cmd_hex", "sp_hex", "res_hex", "rd_hex")
                    ],
                    extra_env={"PCL_RTL_JOB": str(work / "job.json"), "PYTHONPATH": sim.simulator_pythonpath()},
                )
            except BaseException as exc:  # reported below, in the calling thread
                outcome["error"] = exc

        t0 = time.perf_counter()
        progress.start(total=n, desc=f"RTL training ({lanes} lanes)")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        done = 0
        try:
            while thread.is_alive():
                thread.join(_POLL_SECONDS)
                finished = min(n, len(list(out_dir.glob("batch*.done"))) * batch_steps)
                if finished > done:
                    progress.update(finished - done)
                    done = finished
        finally:
            progress.close()
        seconds = time.perf_counter() - t0
        failed = "error" in outcome
        if not failed:
            try:
                failed = get_results(outcome["xml"])[1] > 0
            except Exception:  # no or unreadable results file: the simulator died
                failed = True
        finished = len(list(out_dir.glob("batch*.done")))
        if failed or finished < len(batches):
            log = (work / "sim.log").read_text(errors="replace") if (work / "sim.log").exists() else ""
            tail = "\n".join(log.splitlines()[-40:])
            raise RtlSimulationError(
                f"the RTL training simulation did not finish ({outcome.get('error', 'test failed')}); "
                f"last lines of the simulator log:\n{tail}"
            )
        return _decode(layout, batches, out_dir, readback_after, batch_steps, n, lanes, seconds)


def _decode(layout, batches, out_dir: Path, readback_after, batch_steps, n, lanes, seconds) -> RtlTrainResult:
    fields = layout.train_result_fields()
    spike_fields = layout.spike_fields()
    records, readbacks = [], []
    for b, batch in enumerate(batches):
        res = [unpack(v, fields) for v in _hex_records(out_dir / f"batch{b:06d}_res.hex")]
        if len(res) != batch["n_results"]:
            raise RtlSimulationError(f"batch {b}: {len(res)} results for {batch['n_results']} steps")
        spikes = [unpack(v, spike_fields) for v in _hex_records(out_dir / f"batch{b:06d}_sp.hex")]
        words = _hex_records(out_dir / f"batch{b:06d}_rd.hex")
        if len(words) != batch["n_words"]:
            raise RtlSimulationError(f"batch {b}: {len(words)} read-back words, expected {batch['n_words']}")
        first = b * batch_steps
        after = [i for i in readback_after if first <= i < first + len(res)]
        for j, i in enumerate(after):
            readbacks.append((i + 1, tuple(words[j * layout.weight_words : (j + 1) * layout.weight_words])))
        record = {
            name: np.array([r[name] for r in res], dtype=np.int64) for name in (*RECORD_FIELDS, *TB_PHASE_COUNTERS)
        }
        record["rows_read"] = np.array(
            [[r[f"rows_read{k}"] for k in range(layout.n_layers)] for r in res], dtype=np.int64
        ).reshape(len(res), layout.n_layers)
        record["spikes"] = np.array(
            [[s["image"], s["layer"], s["index"], s["step"]] for s in spikes], dtype=np.int64
        ).reshape(len(spikes), 4)
        record["first_image"] = np.int64(first)
        records.append(record)
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
