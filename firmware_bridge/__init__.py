"""Firmware, serial protocol and host client for running the datapath on a board.

- ``firmware/``: the portable C99 firmware (datapath, image loader, protocol handler) and the
  per-board HAL and build settings (``boards/<name>/``).
- ``protocol``: the wire format (the only module that knows it).
- ``client``: ``BoardClient(url)``, the host side over pyserial.
- ``launch``: builds the firmware for a spec and starts a virtual board on a pseudo-terminal.
- ``qemu``: runs the firmware ELF on QEMU's mps2-an385 (Cortex-M3), UART0 on a pty.
- ``faults``: a protocol-agnostic fault-injection proxy on the byte stream.
- ``commands``: plain functions behind ``popcount-learn board ...`` (info, compare).
"""
