"""Start a virtual board: the host one (``host.VirtualBoard``) or a QEMU Cortex-M board.

A started board is anything with ``.port`` (what ``BoardClient`` opens), ``.wait()`` and use as a
context manager that stops it on exit.
"""

from __future__ import annotations

from pathlib import Path

from popcount_learn.datapath import DatapathConfig

from ..errors import BoardToolError
from .build import build_firmware
from .host import VirtualBoard
from .qemu import qemu_boards, qemu_machine, start_qemu

HOST_BOARD = "host"
# The board ``--qemu`` means when no board is named (the first QEMU port, and the fastest).
DEFAULT_QEMU_BOARD = "mps2_an385"


def start_virtual_board(
    spec: DatapathConfig | None = None,
    *,
    qemu: bool = False,
    learning=None,
    build_root: Path | None = None,
    board: str | None = None,
    machine: str | None = None,
):
    """Build for ``spec`` and start a virtual board: the host one, or with ``qemu=True`` a QEMU board.

    ``board``: the firmware board folder (default ``host``, or ``DEFAULT_QEMU_BOARD`` with
    ``qemu=True``). ``machine``: the QEMU machine to run it on; default the one the board's
    board.mk declares (``QEMU_MACHINE``). A machine that models the board's memory map and UART
    under another name may be given instead. Unknown boards, and QEMU boards without
    ``qemu=True`` (or the reverse), raise BoardToolError before anything is built.
    """
    if not qemu:
        if machine is not None:
            raise BoardToolError("a QEMU machine was given without qemu=True")
        name = board or HOST_BOARD
        if name != HOST_BOARD:
            raise BoardToolError(
                f"board {name!r} is not a host board: start it with qemu=True (QEMU boards: {', '.join(qemu_boards())})"
            )
        return VirtualBoard(build_firmware(spec, board=name, learning=learning, build_root=build_root))
    name = board or DEFAULT_QEMU_BOARD
    machine = machine or qemu_machine(name)
    if machine is None:
        raise BoardToolError(
            f"board {name!r} declares no QEMU_MACHINE in its board.mk; QEMU boards: {', '.join(qemu_boards())}"
        )
    return start_qemu(build_firmware(spec, board=name, learning=learning, build_root=build_root), machine)
