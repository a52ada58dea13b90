"""Firmware, serial protocol, host client and virtual-board launchers."""
