"""Run the iCE40 UP5K top (``pcl_up5k_top``: byte bridge + core + SPRAM weights) under Icarus + cocotb.

The top is the one ``tools/rtl_synth.py`` places, compiled from ``pcl_up5k.f`` with yosys's own
``ice40/cells_sim.v`` for ``SB_SPRAM256KA``, inside ``tb/pcl_up5k_harness.v``; the cocotb side is
``tb/up5k_bench.py``. Everything reaches the top as byte packets (``packets.py``): weights,
thresholds and input spikes in, spike and result packets out. ``simulate_up5k`` returns an
``RtlResult`` like ``sim.simulate``, so ``sim``'s checker compares it with the emulator.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from popcount_learn import codegen
from popcount_learn.codegen import Constant
from popcount_learn.errors import ConfigError
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import WeightImage

from ..errors import RtlToolsMissing
from . import sim
from .packets import PacketLayout
from .params import RtlLayout
from .sources import RTL_DIR, UP5K_FILE_LIST, ice40_cells_sim, read_file_list

HARNESS = RTL_DIR / "tb" / "pcl_up5k_harness.v"
TOPLEVEL = "pcl_up5k_harness"
# cells_sim.v gives its ports default values (SystemVerilog); this define leaves them out.
DEFINES = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}


def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def stream_bounds(layout: RtlLayout, n_images: int) -> tuple[int, int]:
    """Upper bounds of the RX and TX bytes of ``n_images`` images: every input spikes once, every
    neuron fires once, one result per image."""
    packets = PacketLayout(layout)
    rx = (layout.weight_words + layout.n_layers + n_images * (layout.topology[0] + 1)) * packets.rx_bytes
    tx = n_images * (sum(layout.n_post) + 1) * packets.tx_bytes
    return rx, tx


def build_up5k(layout: RtlLayout, n_images: int, *, build_root=None, bounds: tuple[int, int] | None = None):
    """Headers (the layout's and the harness depths, rounded up to powers of two so that runs of
    similar size share a build) and the compiled harness: ``(runner, build_dir)``. ``bounds``:
    the RX and TX byte bounds (default: ``stream_bounds`` of ``n_images`` images)."""
    model = ice40_cells_sim()
    if model is None:
        raise RtlToolsMissing(
            "yosys's ice40/cells_sim.v (the SB_SPRAM256KA model) was not found; "
            "install yosys (Debian: apt-get install yosys)"
        )
    rx, tx = bounds or stream_bounds(layout, n_images)
    depths = [Constant("TB_RX_DEPTH", _pow2(rx)), Constant("TB_TX_DEPTH", _pow2(tx))]
    tb_header = codegen.verilog_header("pcl_tb.vh", depths, source="firmware_bridge.rtl.up5k_sim")
    headers = {**layout.headers(), "pcl_tb.vh": tb_header}  # this build's own pcl_tb.vh
    sources = [model, *read_file_list(UP5K_FILE_LIST), HARNESS]
    return sim.compile_bench(sources, TOPLEVEL, headers, build_root=build_root, defines=DEFINES)


def _run_top(runner, build_dir, work: Path, job: dict, bench: str, what: str) -> tuple[dict, float]:
    """Write ``job`` (with the harness's RX file and the record's path), run ``tb/<bench>.py`` on
    the harness and return the record it saved and the wall seconds."""
    job = {**job, "rx_hex": str(work / "rx.hex"), "out_npz": str(work / "out.npz")}
    (work / "job.json").write_text(json.dumps(job))
    (work / "out.npz").unlink(missing_ok=True)
    seconds = sim.run_bench(
        runner,
        build_dir,
        work,
        test_module=f"firmware_bridge.rtl.tb.{bench}",
        toplevel=TOPLEVEL,
        what=what,
        plusargs=[f"+rx_hex={job['rx_hex']}"],
        complete=(work / "out.npz").exists,
    )
    return dict(np.load(work / "out.npz")), seconds


def simulate_up5k(
    image: WeightImage,
    images_uint8: np.ndarray | None = None,
    *,
    input_spike_steps: np.ndarray | None = None,
    lanes: int = 4,
    throttle: bool = False,
    shuffle_seed: int | None = None,
    load_image: WeightImage | None = None,
    build_root=None,
    keep_dir=None,
) -> sim.RtlResult:
    """Run the UP5K top on a batch (uint8 images or input spike steps, as ``emulate`` takes them).

    ``load_image``: the weights actually sent (default ``image``), e.g. a corrupted copy, to show
    that the comparison with ``image``'s emulation notices. ``throttle``: random gaps on RX and
    back-pressure on TX; ``shuffle_seed``: permute input spikes within a step. ``cycles`` of the
    result: per image, from the previous image's result packet (the weight load for the first)
    to its own result packet's last byte, byte transport included.
    """
    if not isinstance(image, WeightImage):
        raise ConfigError(f"simulate_up5k: expected a WeightImage, got {type(image).__name__}")
    steps = sim.input_steps_of(image, images_uint8, input_spike_steps, "simulate_up5k")
    layout = RtlLayout.for_image(image, lanes)
    sent = load_image if load_image is not None else image
    if RtlLayout.for_image(sent, lanes) != layout:
        raise ConfigError("load_image must have the datapath and topology of image")
    n = len(steps)
    if n == 0:
        return sim.decode_records(layout, [], 0, lanes, 0.0)
    runner, build_dir = build_up5k(layout, n, build_root=build_root)

    rx_bound, tx_bound = stream_bounds(layout, n)
    timeout = (2 * rx_bound + 2 * tx_bound + n * sim.timeout_cycles_per_image(layout)) * (4 if throttle else 1) + 10_000
    with tempfile.TemporaryDirectory(prefix="pcl-up5k-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "load.bin").write_bytes(PacketLayout(layout).load_packets(sent))
        np.save(work / "steps.npy", np.ascontiguousarray(steps, dtype=np.int64))
        job = {
            "spec": image.spec.to_dict(),
            "topology": list(layout.topology),
            "lanes": lanes,
            "load_bin": str(work / "load.bin"),
            "steps_npy": str(work / "steps.npy"),
            "shuffle_seed": shuffle_seed,
            "throttle": bool(throttle),
            "timeout_cycles": timeout,
        }
        record, seconds = _run_top(runner, build_dir, work, job, "up5k_bench", "the UP5K top simulation")
    return sim.decode_records(layout, [record], n, lanes, seconds)


def simulate_up5k_training(
    image: WeightImage,
    learning: LearningConfig,
    input_spike_steps: np.ndarray,
    labels: np.ndarray,
    first_sample_index: int = 0,
    *,
    lanes: int = 4,
    readback_every: int | None = None,
    throttle: bool = False,
    load_image: WeightImage | None = None,
    build_root=None,
    keep_dir=None,
):
    """Train the UP5K top (learning build) as ``train_sim.simulate_training`` trains the core, but
    through its byte packets only: the weight load, then per step a training command packet and
    the input spike packets, and a read-back command every ``readback_every`` steps and after the
    last; the TX bytes are split into spike, result and read-back word packets. Returns a
    ``train_sim.RtlTrainResult`` (``phase_cycles`` has only ``cycles``: from the previous result
    packet, or the last weight-load byte, to this step's result packet, byte transport included).
    """
    from .train_sim import RtlTrainResult, plan_training

    plan = plan_training(
        image, learning, input_spike_steps, labels, first_sample_index, lanes, readback_every, load_image
    )
    steps, labels, layout, sent, readback_after = plan.steps, plan.labels, plan.layout, plan.sent, plan.readback_after
    packets = PacketLayout(layout)
    n = len(steps)
    rx = bytearray(packets.load_packets(sent))
    n_load = len(rx)
    for i in range(n):
        rx += packets.train_packet(int(labels[i]), first_sample_index + i)
        rx += packets.input_packets(steps[i])
        if i in readback_after:
            rx += packets.readback_packet()
    n_words = len(readback_after) * layout.weight_words
    tx_bound = (n * (layout.neurons + 1) + n_words) * packets.tx_bytes
    runner, build_dir = build_up5k(layout, n, build_root=build_root, bounds=(len(rx), tx_bound))

    per_step = sim.timeout_cycles_per_image(layout) + 8 * layout.weights + 1000
    timeout = (2 * len(rx) + 2 * tx_bound + n * per_step) * (4 if throttle else 1) + 10_000
    with tempfile.TemporaryDirectory(prefix="pcl-up5k-train-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "rx.bin").write_bytes(bytes(rx))
        job = {
            "spec": image.spec.to_dict(),
            "topology": list(layout.topology),
            "lanes": lanes,
            "learning": learning.to_dict(),
            "rx_bin": str(work / "rx.bin"),
            "load_bytes": n_load,
            "n_results": n,
            "n_words": n_words,
            "throttle": bool(throttle),
            "timeout_cycles": timeout,
        }
        record, seconds = _run_top(runner, build_dir, work, job, "up5k_train_bench", "the UP5K training simulation")
    words = [int(w, 16) for w in record.pop("words_hex").tolist()]
    readbacks = tuple(
        (i + 1, tuple(words[j * layout.weight_words : (j + 1) * layout.weight_words]))
        for j, i in enumerate(readback_after)
    )
    forward = sim.decode_records(layout, [record], n, lanes, seconds)
    faults = dict(forward.faults)
    for i in np.flatnonzero(record["trained"] == 0):
        faults[int(i)] = (*faults.get(int(i), ()), "the result packet does not say it was a training step")
    forward = dataclasses.replace(forward, faults=dict(sorted(faults.items())))
    return RtlTrainResult(
        forward=forward,
        weights_changed=record["weights_changed"],
        neurons_with_delta=record["neurons_with_delta"],
        phase_cycles={"cycles": record["cycles"]},
        readbacks=readbacks,
        lanes=lanes,
        sim_seconds=seconds,
    )
