"""cocotb testbench for pcl_byte_bridge alone, run inside the simulator by ``firmware_bridge.rtl.bridge_sim``.

The bridge is the toplevel, its parameters bound from an ``RtlLayout``; Python plays both of its
neighbours, one clock cycle at a time:

- ``Driver`` (stimulus): RX bytes of a random packet stream of every kind (``PacketLayout``) with
  random gaps; spike and result payloads for the core-side sources, offered at random, often at
  once; random ``wl_ready`` / ``in_ready`` / ``tx_ready`` (back-pressure on both sides). A
  valid stays up, with its data, until it is taken, as the core's and a UART's do.
- ``Monitor`` (observation): every cycle, every valid, ready and data signal, sampled settled
  before the clock edge, into one trace (``out_json``, with the RX bytes the driver planned).

No checker here: ``bridge_sim.check_bridge`` judges the trace against the packet layout.
The job (``PCL_RTL_JOB``, JSON): ``spec`` / ``topology`` / ``lanes``, ``seed``, ``packets``,
``spikes``, ``results``, ``out_json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from firmware_bridge.rtl.packets import PacketLayout, RxKind
from firmware_bridge.rtl.params import RtlLayout
from popcount_learn.datapath import DatapathConfig

# Trace columns (one row per cycle), in this order.
TRACE = (
    "rx_valid",
    "rx_ready",
    "rx_data",
    "wl_valid",
    "wl_ready",
    "wl_threshold",
    "wl_addr",
    "wl_data",
    "in_valid",
    "in_ready",
    "in_index",
    "in_step",
    "in_last",
    "sp_valid",
    "sp_ready",
    "sp_payload",
    "res_valid",
    "res_ready",
    "res_payload",
    "tx_valid",
    "tx_ready",
    "tx_data",
)


class Driver:
    """Stimulus for both sides of the bridge; ``step`` drives one cycle, ``taken`` advances it."""

    def __init__(self, dut, packets: PacketLayout, job: dict):
        self.dut, self.p = dut, packets
        self.rng = rng = np.random.default_rng(int(job["seed"]))
        kinds = list(RxKind) + list(rng.choice(list(RxKind), size=int(job["packets"]) - len(RxKind)))
        rng.shuffle(kinds)
        self.rx = b"".join(packets.rx_packet(RxKind(int(k)), self._payload(RxKind(int(k)))) for k in kinds)
        self.spikes = [int(rng.integers(0, 1 << packets.spike_bits)) for _ in range(int(job["spikes"]))]
        self.results = [int(rng.integers(0, 1 << packets.result_bits)) for _ in range(int(job["results"]))]
        self.rx_pos = 0
        self.rx_valid = self.sp_valid = self.res_valid = False
        # Phases of the run: the ready/valid probabilities change, so that each side is in turn
        # the bottleneck (RX stalls behind a slow core, TX stalls behind a slow host).
        self.cycle = 0

    def _payload(self, kind: RxKind) -> int:
        p, w = self.p, self.p.layout.widths
        if kind == RxKind.SPIKE:
            return int(self.rng.integers(0, 1 << p.spike_in_bits))
        if kind == RxKind.IGNORED:
            return int(self.rng.integers(0, 1 << p.rx_payload_bits))
        return int(self.rng.integers(0, 1 << (w["WADDR_BITS"] + w["WL_BITS"])))

    def done(self) -> bool:
        return self.rx_pos == len(self.rx) and not self.spikes and not self.results

    def step(self) -> None:
        """Drive this cycle's inputs (after the falling edge)."""
        dut, rng = self.dut, self.rng
        phase = (self.cycle // 400) % 3  # 0: core slow, 1: host slow, 2: both fast
        self.cycle += 1
        core_ready = (0.15, 0.9, 0.95)[phase]
        host_ready = (0.9, 0.2, 0.95)[phase]
        if not self.rx_valid and self.rx_pos < len(self.rx):
            self.rx_valid = rng.random() < 0.8
        if not self.sp_valid and self.spikes:
            self.sp_valid = rng.random() < 0.3
        if not self.res_valid and self.results:
            self.res_valid = rng.random() < (0.6 if self.sp_valid else 0.1)
        dut.rx_valid.value = int(self.rx_valid)
        dut.rx_data.value = self.rx[self.rx_pos] if self.rx_valid else int(rng.integers(0, 256))
        dut.sp_valid.value = int(self.sp_valid)
        dut.sp_payload.value = self.spikes[0] if self.sp_valid else 0
        dut.res_valid.value = int(self.res_valid)
        dut.res_payload.value = self.results[0] if self.res_valid else 0
        dut.wl_ready.value = int(rng.random() < core_ready)
        dut.in_ready.value = int(rng.random() < core_ready)
        dut.tx_ready.value = int(rng.random() < host_ready)

    def taken(self, row: dict[str, int]) -> None:
        """Advance what the bridge took this cycle (sampled settled before the edge)."""
        if row["rx_valid"] and row["rx_ready"]:
            self.rx_pos += 1
            self.rx_valid = False
        if row["sp_valid"] and row["sp_ready"]:
            self.spikes.pop(0)
            self.sp_valid = False
        if row["res_valid"] and row["res_ready"]:
            self.results.pop(0)
            self.res_valid = False


class Monitor:
    """Observation: one row per cycle of every stream signal."""

    def __init__(self, dut):
        self.dut = dut
        self.rows: list[list[int]] = []

    def sample(self) -> dict[str, int]:
        """This cycle's values; -1 for a signal with X or Z bits (the data of an idle stream)."""
        row = {}
        for name in TRACE:
            try:
                row[name] = int(getattr(self.dut, name).value)
            except ValueError:
                row[name] = -1
        self.rows.append([row[name] for name in TRACE])
        return row


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ["PCL_RTL_JOB"]).read_text())
    layout = RtlLayout(DatapathConfig.from_dict(job["spec"]), tuple(job["topology"]), int(job["lanes"]))
    driver, monitor = Driver(dut, PacketLayout(layout), job), Monitor(dut)
    Clock(dut.clk, 10, unit="ns").start()
    for sig in (
        "rx_valid",
        "rx_data",
        "wl_ready",
        "in_ready",
        "sp_valid",
        "sp_payload",
        "res_valid",
        "res_payload",
        "tx_ready",
    ):
        getattr(dut, sig).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    idle = 0
    limit = 40 * len(driver.rx) + 60 * (len(driver.spikes) + len(driver.results)) + 1000
    while idle < 50:  # until everything went in and the bridge has been quiet for a while
        await FallingEdge(dut.clk)
        driver.step()
        await ReadOnly()
        row = monitor.sample()
        driver.taken(row)
        busy = row["tx_valid"] or row["wl_valid"] or row["in_valid"] or not driver.done()
        idle = 0 if busy else idle + 1
        assert len(monitor.rows) < limit, f"the bridge stalled: {len(driver.rx) - driver.rx_pos} RX bytes left"
    out = {"columns": list(TRACE), "trace": monitor.rows, "rx_planned": driver.rx.hex()}
    tmp = Path(job["out_json"]).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, job["out_json"])
