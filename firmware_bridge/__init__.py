"""Firmware, serial protocol, virtual boards and RTL: the datapath's other bodies.

Built on ``popcount_learn`` (the spec objects, the emulator, the learner, the weight image,
codegen), which in turn knows nothing of this package. Its wings, bottom up (tests/test_layers.py
holds them to it):

- ``wire/``: the wire format (``protocol``, the only module that knows the bytes) and
  ``BoardClient`` over any pyserial URL. Imports nothing else of this package but ``errors``.
- ``boards/``: bodies that speak the wire: the firmware build per spec (``build``), the host pty
  board (``host``), QEMU Cortex-M boards (``qemu``), ``launch`` to start one, the fault-injection
  proxy (``faults``) and the board bring-up self-test link (``selftest_link``). May import ``wire``.
- ``rtl/``: the datapath in Verilog, its file list and generated parameters (``params``), the
  simulation (``sim``) and its cocotb testbenches (``tb/``). Imports nothing else of this package
  but ``errors``.
- ``check``: the one body-vs-emulator checker, over the emulator's result fields.
- ``commands``: plain functions behind ``popcount-learn board ...`` / ``rtl ...`` (may import all
  of the above); ``cli``: their subcommands, registered into the popcount-learn CLI through the
  ``popcount_learn.cli`` entry point (pyproject.toml).
- ``firmware/``: the portable C99 firmware and its per-board folders; ``errors``: the faults.
"""
