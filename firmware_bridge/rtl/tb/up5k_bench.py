"""cocotb testbench for pcl_up5k_top, run inside the simulator by ``firmware_bridge.rtl.up5k_sim``.

The top (byte bridge + core + SPRAM weights, as placed) sits in ``tb/pcl_up5k_harness.v``.
Stimulus (``Driver``): one RX byte stream: the weight and threshold packets the caller wrote
(``load_bin``, ``PacketLayout.load_packets``), then the input spike packets of every image.
Observation (``Monitor``): the TX bytes the top sent, read back from the harness while it runs,
split into packets (``PacketLayout.split_tx``) and decoded into the per-image record of
``tb/core_bench.py``. There is no model and no checker here: the caller compares the record
with ``popcount_learn.emulator`` through ``firmware_bridge.rtl.sim``'s checker.

The job (``PCL_RTL_JOB``, JSON): ``spec`` / ``topology`` / ``lanes``, ``load_bin``, ``steps_npy``
(input spike steps, ``(n, n_in)``), ``rx_hex`` (the harness's plusarg), ``out_npz``,
``shuffle_seed``, ``throttle``, ``timeout_cycles``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer

from firmware_bridge.rtl.packets import PacketLayout, TxKind
from firmware_bridge.rtl.params import RtlLayout
from firmware_bridge.rtl.tb.reset import reset
from popcount_learn.datapath import DatapathConfig

CLOCK_NS = 10  # the harness's clock period
POLL_CYCLES = 2000


class Driver:
    """Stimulus: the whole RX byte stream into the harness's source memory, then go."""

    def __init__(self, dut, packets: PacketLayout, job: dict):
        self.dut, self.packets, self.job = dut, packets, job
        seed = job.get("shuffle_seed")
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def stream(self, steps: np.ndarray) -> tuple[bytes, int]:
        """(RX bytes, bytes of the weight load) for the images ``steps``."""
        load = Path(self.job["load_bin"]).read_bytes()
        images = b"".join(self.packets.input_packets(row, shuffle=self.rng) for row in steps)
        return load + images, len(load)

    async def start(self, steps: np.ndarray) -> int:
        data, n_load = self.stream(steps)
        Path(self.job["rx_hex"]).write_text("".join(f"{b:02x}\n" for b in data))
        dut = self.dut
        dut.n_bytes.value = len(data)
        dut.mark_bytes.value = n_load
        dut.go.value = 1
        await RisingEdge(dut.clk)
        dut.go.value = 0
        return len(data)


class Monitor:
    """Observation: TX bytes (with the cycle each left) -> packets -> per-image records."""

    def __init__(self, dut, packets: PacketLayout, n_layers: int):
        self.dut, self.packets, self.n_layers = dut, packets, n_layers
        self.read = 0
        self.pending = bytearray()
        self.pending_cycle = 0
        self.spikes: list[list[int]] = []
        self.results: list[dict[str, int]] = []
        self.result_cycles: list[int] = []

    def poll(self) -> None:
        """Take the bytes sent since the last poll and decode every complete packet."""
        size = self.packets.tx_bytes
        sent = int(self.dut.tx_count.value)
        for i in range(self.read, sent):
            word = int(self.dut.tx_mem[i].value)
            self.pending.append(word & 0xFF)
            self.pending_cycle = word >> 8
            if len(self.pending) == size:
                ((kind, fields),) = self.packets.split_tx(bytes(self.pending))
                self.pending.clear()
                if kind == TxKind.SPIKE:
                    self.spikes.append([len(self.results), fields["layer"], fields["index"], fields["step"]])
                else:
                    self.results.append(fields)
                    self.result_cycles.append(self.pending_cycle)
        self.read = sent

    def record(self, start_cycle: int) -> dict[str, np.ndarray]:
        """The results so far in tb/core_bench.py's record format (``cycles``: from the end of the
        previous image's result packet, or from the last weight-load byte, to this one's)."""
        res = self.results
        ends = np.array(self.result_cycles, dtype=np.int64)
        out = {
            name: np.array([r[name] for r in res], dtype=np.int64)
            for name in ("input_error", "tie", "decided", "predicted", "step")
        }
        out["cycles"] = np.diff(np.concatenate([[start_cycle], ends])) if len(res) else np.zeros(0, np.int64)
        out["rows_read"] = np.array(
            [[r[f"rows_read{k}"] for k in range(self.n_layers)] for r in res], dtype=np.int64
        ).reshape(len(res), self.n_layers)
        out["spikes"] = np.array(self.spikes, dtype=np.int64).reshape(len(self.spikes), 4)
        out["first_image"] = np.int64(0)
        return out


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ["PCL_RTL_JOB"]).read_text())
    layout = RtlLayout(DatapathConfig.from_dict(job["spec"]), tuple(job["topology"]), int(job["lanes"]))
    packets = PacketLayout(layout)
    steps = np.load(job["steps_npy"])

    await reset(dut, (dut.go, dut.n_bytes, dut.mark_bytes), job.get("throttle"))

    driver, monitor = Driver(dut, packets, job), Monitor(dut, packets, layout.n_layers)
    n_bytes = await driver.start(steps)
    waited = 0
    while len(monitor.results) < len(steps):
        await Timer(POLL_CYCLES * CLOCK_NS, "ns")
        waited += POLL_CYCLES
        monitor.poll()
        assert waited <= int(job["timeout_cycles"]), (
            f"timeout: {len(monitor.results)} of {len(steps)} results after {waited} cycles "
            f"({int(dut.rx_count.value)} of {n_bytes} RX bytes taken)"
        )
    # A little longer: anything sent after the last result is recorded too (and reported).
    await Timer(POLL_CYCLES * CLOCK_NS, "ns")
    monitor.poll()
    assert not monitor.pending, f"{len(monitor.pending)} bytes of a packet after the last result"
    record = monitor.record(int(dut.mark_cycle.value))
    tmp = Path(job["out_npz"]).with_suffix(".tmp.npz")
    np.savez(tmp, **record)
    os.replace(tmp, job["out_npz"])
