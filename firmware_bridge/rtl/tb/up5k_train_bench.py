"""cocotb testbench for the UP5K top of a learning build, run inside the simulator by
``firmware_bridge.rtl.up5k_sim.simulate_up5k_training``.

The top sits in ``tb/pcl_up5k_harness.v`` as for inference. Stimulus: the RX byte stream the caller
wrote (``rx_bin``: the weight load, then per step a training command packet and the input spike
packets, read-back commands in between). Observation: the TX bytes, split into packets
(``PacketLayout.split_tx``): spikes (tagged with the step they belong to), results, read-back
words. No model, no checker: the caller compares the record with the learner.

The job (``PCL_RTL_JOB``, JSON): ``spec`` / ``topology`` / ``lanes`` / ``learning``, ``rx_bin``,
``load_bytes``, ``rx_hex`` (the harness's plusarg), ``out_npz``, ``n_results``, ``n_words``,
``throttle``, ``timeout_cycles``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer

from firmware_bridge.rtl.packets import PacketLayout, TxKind
from firmware_bridge.rtl.params import TRAIN_RECORD_FIELDS, RtlLayout
from firmware_bridge.rtl.tb.reset import reset
from popcount_learn.datapath import DatapathConfig
from popcount_learn.learning import LearningConfig

CLOCK_NS = 10  # the harness's clock period
POLL_CYCLES = 2000


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ["PCL_RTL_JOB"]).read_text())
    layout = RtlLayout(
        DatapathConfig.from_dict(job["spec"]),
        tuple(job["topology"]),
        int(job["lanes"]),
        LearningConfig.from_dict(job["learning"]),
    )
    packets = PacketLayout(layout)
    data = Path(job["rx_bin"]).read_bytes()
    Path(job["rx_hex"]).write_text("".join(f"{b:02x}\n" for b in data))
    await reset(dut, (dut.go, dut.n_bytes, dut.mark_bytes), job.get("throttle"))
    dut.n_bytes.value = len(data)
    dut.mark_bytes.value = int(job["load_bytes"])
    dut.go.value = 1
    await RisingEdge(dut.clk)
    dut.go.value = 0

    size, read, waited = packets.tx_bytes, 0, 0
    pending, pending_cycle = bytearray(), 0
    spikes, results, result_cycles, words = [], [], [], []
    n_results, n_words = int(job["n_results"]), int(job["n_words"])

    def poll() -> None:
        nonlocal read, pending_cycle
        sent = int(dut.tx_count.value)
        for i in range(read, sent):
            word = int(dut.tx_mem[i].value)
            pending.append(word & 0xFF)
            pending_cycle = word >> 8
            if len(pending) == size:
                ((kind, fields),) = packets.split_tx(bytes(pending))
                pending.clear()
                if kind == TxKind.SPIKE:
                    spikes.append([len(results), fields["layer"], fields["index"], fields["step"]])
                elif kind == TxKind.WORD:
                    words.append(fields["data"])
                else:
                    results.append(fields)
                    result_cycles.append(pending_cycle)
        read = sent

    while len(results) < n_results or len(words) < n_words:
        await Timer(POLL_CYCLES * CLOCK_NS, "ns")
        waited += POLL_CYCLES
        poll()
        assert waited <= int(job["timeout_cycles"]), (
            f"timeout: {len(results)} of {n_results} results and {len(words)} of {n_words} words after "
            f"{waited} cycles ({int(dut.rx_count.value)} of {len(data)} RX bytes taken)"
        )
    await Timer(POLL_CYCLES * CLOCK_NS, "ns")  # anything sent after the last packet is recorded too
    poll()
    assert not pending, f"{len(pending)} bytes of a packet after the last one"
    ends = np.array(result_cycles, dtype=np.int64)
    record = {name: np.array([r[name] for r in results], dtype=np.int64) for name in TRAIN_RECORD_FIELDS}
    record["cycles"] = np.diff(np.concatenate([[int(dut.mark_cycle.value)], ends]))
    record["rows_read"] = np.array(
        [[r[f"rows_read{k}"] for k in range(layout.n_layers)] for r in results], dtype=np.int64
    ).reshape(len(results), layout.n_layers)
    record["spikes"] = np.array(spikes, dtype=np.int64).reshape(len(spikes), 4)
    record["first_image"] = np.int64(0)
    record["words_hex"] = np.array([f"{w:x}" for w in words])
    tmp = Path(job["out_npz"]).with_suffix(".tmp.npz")
    np.savez(tmp, **record)
    os.replace(tmp, job["out_npz"])
