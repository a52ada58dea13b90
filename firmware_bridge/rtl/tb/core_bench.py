"""cocotb testbench for pcl_core (inference-only or learning), run inside the simulator by
``firmware_bridge.rtl.sim`` and ``firmware_bridge.rtl.train_sim``.

Stimulus: the weight image through the load port, then batches of commands (input beats, and for
a learning core training requests and read-back requests) that the caller has written as hex
files. Observation: the harness's spike, result and read-back records of each batch, moved to
``batchNNNNNN_*.hex`` in the output directory (a ``.done`` file marks a finished batch). There is
no model and no checker here: the caller decodes the records and compares them with the emulator
or the learner, so this file cannot drift into a second copy of the datapath.

The job (``PCL_RTL_JOB``, JSON): ``load_hex`` / ``load_beats``, the harness's plusarg paths
(``cmd_hex``, ``sp_hex``, ``res_hex``, ``rd_hex``), ``batches`` (each ``{"cmd_hex", "n_beats",
"n_results", "n_words", "timeout_cycles"}``), ``out_dir`` and ``throttle``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge, with_timeout

from firmware_bridge.rtl.tb.reset import reset

CLOCK_NS = 10  # the harness's clock period


async def _go(dut, signal, timeout_cycles: int) -> None:
    signal.value = 1
    await RisingEdge(dut.clk)
    signal.value = 0
    await with_timeout(RisingEdge(dut.done), timeout_cycles * CLOCK_NS, "ns")


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ["PCL_RTL_JOB"]).read_text())
    out_dir = Path(job["out_dir"])
    await reset(dut, (dut.go_load, dut.go_run, dut.n_beats, dut.n_results, dut.n_words), job.get("throttle"))

    n_load = int(job["load_beats"])
    dut.n_beats.value = n_load
    await _go(dut, dut.go_load, 4 * n_load + 100)
    for b, batch in enumerate(job["batches"]):
        shutil.copyfile(batch["cmd_hex"], job["cmd_hex"])
        for name in ("sp_hex", "res_hex", "rd_hex"):
            Path(job[name]).unlink(missing_ok=True)
        dut.n_beats.value = int(batch["n_beats"])
        dut.n_results.value = int(batch["n_results"])
        dut.n_words.value = int(batch["n_words"])
        await _go(dut, dut.go_run, int(batch["timeout_cycles"]))
        for name, tag in (("sp_hex", "sp"), ("res_hex", "res"), ("rd_hex", "rd")):
            target = out_dir / f"batch{b:06d}_{tag}.hex"
            if Path(job[name]).exists():
                os.replace(job[name], target)
            else:
                target.write_text("")
        (out_dir / f"batch{b:06d}.done").write_text("")  # the caller counts finished batches
