"""The start of every bench: inputs low, the harness's throttle set, three cycles of reset."""

from __future__ import annotations

from cocotb.triggers import ClockCycles, RisingEdge


async def reset(dut, inputs, throttle: bool) -> None:
    """Drive ``inputs`` to 0 and ``dut.throttle`` to ``throttle``, hold ``rst`` for three clock
    cycles, then wait one more edge."""
    for sig in inputs:
        sig.value = 0
    dut.throttle.value = int(bool(throttle))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
