"""Start a virtual board: the host one (``host.VirtualBoard``) or a QEMU Cortex-M board.

A started board is anything with ``.port`` (what ``BoardClient`` opens), ``.wait()`` and use as a
context manager that stops it on exit.
"""

from __future__ import annotations

from pathlib import Path

from popcount_learn.datapath import DatapathConfig

from .build import build_firmware
from .host import VirtualBoard
from .qemu import start_qemu


def start_virtual_board(spec: DatapathConfig | None = None, *, qemu: bool = False, learning=None,
                        build_root: Path | None = None):
    """Build for ``spec`` and start a virtual board: the host one, or QEMU with ``qemu=True``."""
    if qemu:
        return start_qemu(build_firmware(spec, board="mps2_an385", learning=learning, build_root=build_root))
    return VirtualBoard(build_firmware(spec, board="host", learning=learning, build_root=build_root))
