"""Firmware, serial protocol and host client for running the datapath on a board.

- ``firmware/``: the portable C99 firmware (datapath, image loader, protocol handler) and the
  per-board HAL and build settings (``boards/<name>/``).
- ``protocol``: the wire format (the only module that knows it).
- ``client``: ``BoardClient(url)``, the host side over pyserial.
- ``launch``: builds the firmware for a spec and starts a virtual board on a pseudo-terminal.
- ``qemu``: runs the firmware ELF on QEMU's mps2-an385 (Cortex-M3), UART0 on a pty.
- ``faults``: a protocol-agnostic fault-injection proxy on the byte stream.
- ``commands``: plain functions behind ``popcount-learn board ...`` (info, compare).
- ``rtl/``: the datapath in Verilog (event-driven core, UP5K wrappers); ``rtl_params``: its
  generated parameters and memory layout; ``rtl_sim``: build and run it under Icarus + cocotb
  (``_rtl_cocotb`` is the in-simulator testbench) and the checker against the emulator.
"""
