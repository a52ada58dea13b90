"""Firmware, serial protocol and host client for running the datapath on a board.

- ``firmware/``: the portable C99 firmware (datapath, image loader, protocol handler) and the
  per-board HAL and build settings (``boards/<name>/``).
- ``protocol``: the wire format (the only module that knows it).
- ``client``: ``BoardClient(url)``, the host side over pyserial.
- ``launch``: builds the firmware for a spec and starts a virtual board on a pseudo-terminal.
- ``commands``: plain functions behind ``popcount-learn board ...`` (info, compare).
"""
