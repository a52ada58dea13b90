"""The datapath in Verilog (the ``.v`` files here, see README.md): ``params.RtlLayout`` (memory
layout, widths, generated headers via ``popcount_learn.codegen``), ``sim`` (build and run under
Icarus Verilog + cocotb) and ``tb/`` (the cocotb testbenches and the simulation harness). May
import ``firmware_bridge.errors`` and ``popcount_learn``; results are compared with the emulator
by ``firmware_bridge.check``, which this wing does not import."""
