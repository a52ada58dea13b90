"""cocotb testbench for pcl_core, run inside the simulator by ``firmware_bridge.rtl.sim``.

Stimulus (``Driver``): the weight image through the load port, then batches of input-spike
beats. Observation (``Monitor``): the spike and result beats recorded by the harness, decoded into
one ``.npz`` per batch. There is no model and no checker here: those run in the calling process
(``popcount_learn.emulator`` and ``firmware_bridge.rtl.sim.compare``), so this file cannot drift
into a second copy of the datapath.

The job (``PCL_RTL_JOB``, JSON) names the files: ``load_hex`` (``load_beats`` weight-load beats),
``in_hex`` / ``sp_hex`` / ``res_hex`` (the harness's plusargs), ``steps_npy`` (input spike steps,
int32 ``(n, n_in)``), ``out_dir``; and ``spec`` / ``topology`` / ``lanes``, ``batch_images``,
``shuffle_seed`` and ``timeout_cycles_per_image``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from firmware_bridge.rtl.params import RtlLayout, unpack
from popcount_learn.datapath import DatapathConfig

CLOCK_NS = 10  # the harness's clock period


def _write_hex(path: Path, values: list[int]) -> None:
    path.write_text("".join(f"{v:x}\n" for v in values))


def _read_hex(path: Path) -> list[int]:
    lines = (line.split("//")[0].strip() for line in path.read_text().splitlines())
    return [int(line, 16) for line in lines if line]


class Driver:
    """Stimulus: fills the harness source memory from a hex file and starts a stream."""

    def __init__(self, dut, layout: RtlLayout, job: dict):
        self.dut, self.layout, self.job = dut, layout, job
        self.rng = np.random.default_rng(job["shuffle_seed"]) if job.get("shuffle_seed") is not None else None

    async def _go(self, signal, n_beats: int, timeout_cycles: int) -> None:
        dut = self.dut
        dut.n_beats.value = n_beats
        signal.value = 1
        await RisingEdge(dut.clk)
        signal.value = 0
        await with_timeout(RisingEdge(dut.done), timeout_cycles * CLOCK_NS, "ns")

    async def load_weights(self) -> None:
        """Stream the weight-load beats the caller wrote (RtlLayout.load_beats) into the core."""
        n_beats = int(self.job["load_beats"])
        await self._go(self.dut.go_load, n_beats, 4 * n_beats + 100)

    async def run_images(self, steps: np.ndarray) -> None:
        beats = []
        for row in steps:
            beats += self.layout.input_beats(row, shuffle=self.rng)
        _write_hex(Path(self.job["in_hex"]), beats)
        self.dut.n_images.value = len(steps)
        per_image = int(self.job["timeout_cycles_per_image"])
        await self._go(self.dut.go_run, len(beats), per_image * len(steps) + 4 * len(beats) + 100)


class Monitor:
    """Observation: decodes the harness's spike and result records of one batch."""

    def __init__(self, dut, layout: RtlLayout, job: dict):
        self.dut, self.layout, self.job = dut, layout, job

    def collect(self, n_images: int) -> dict[str, np.ndarray]:
        n_results = int(self.dut.n_results.value)
        n_spikes = int(self.dut.n_spikes.value)
        assert n_results == n_images, f"harness recorded {n_results} results for {n_images} images"
        res = [unpack(v, self.layout.result_fields()) for v in _read_hex(Path(self.job["res_hex"]))[:n_results]]
        sp = (
            [unpack(v, self.layout.spike_fields()) for v in _read_hex(Path(self.job["sp_hex"]))[:n_spikes]]
            if n_spikes
            else []
        )
        out = {
            name: np.array([r[name] for r in res], dtype=np.int64)
            for name in ("cycles", "input_error", "tie", "decided", "predicted", "step")
        }
        out["rows_read"] = np.array(
            [[r[f"rows_read{k}"] for k in range(self.layout.n_layers)] for r in res], dtype=np.int64
        ).reshape(n_results, self.layout.n_layers)
        out["spikes"] = np.array([[s["image"], s["layer"], s["index"], s["step"]] for s in sp], dtype=np.int64).reshape(
            len(sp), 4
        )
        return out


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ["PCL_RTL_JOB"]).read_text())
    spec = DatapathConfig.from_dict(job["spec"])
    layout = RtlLayout(spec, tuple(job["topology"]), int(job["lanes"]))
    steps = np.load(job["steps_npy"])
    out_dir = Path(job["out_dir"])

    for sig in (dut.go_load, dut.go_run, dut.n_beats, dut.n_images):
        sig.value = 0
    dut.throttle.value = int(bool(job.get("throttle")))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    driver, monitor = Driver(dut, layout, job), Monitor(dut, layout, job)
    await driver.load_weights()
    batch = int(job["batch_images"])
    for b, start in enumerate(range(0, len(steps), batch)):
        chunk = steps[start : start + batch]
        await driver.run_images(chunk)
        record = monitor.collect(len(chunk))
        record["first_image"] = np.int64(start)
        tmp = out_dir / f".batch{b:06d}.npz"
        np.savez(tmp, **record)
        os.replace(tmp, out_dir / f"batch{b:06d}.npz")  # the caller counts finished batches
