"""Run a firmware ELF on a QEMU Cortex-M machine with the board's first UART on a pty.

A QEMU board is a firmware board folder whose board.mk declares ``QEMU_MACHINE`` (the
``qemu-system-arm -M`` name): ``qemu_boards()`` lists them, ``qemu_machine(board)`` reads the
declaration. ``start_qemu(elf, machine)`` returns a ``QemuBoard`` whose ``port`` (such as
``/dev/pts/5``) is a real serial device for pyserial / ``BoardClient``. The board's other handle
is QEMU's QMP socket, used for ``reset()`` (a system reset, as by the board's reset button).
``build_selftest(board, build_dir)`` builds the HAL-only bring-up self-test of any such board.

Cleanup: ``stop()`` (also on ``with`` exit, garbage collection and interpreter exit) ends QEMU
and removes its temporary directory; QEMU runs in its own session so a terminal's Ctrl-C
reaches only the Python side, which then stops it. Started from the main thread on Linux,
QEMU also gets SIGKILL if the Python process dies without cleaning up (PR_SET_PDEATHSIG).

QEMU notices that the pty was opened only on a ~1 s poll, so the first exchange with a fresh
board must allow a few seconds (handshake with a ping and retry; do not wait for a banner).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from ..errors import BoardToolError, FirmwareBuildError
from .build import FIRMWARE_DIR, board_config, boards

QEMU_BINARY = "qemu-system-arm"
QEMU_START_TIMEOUT_S = 10.0
QEMU_STOP_TIMEOUT_S = 5.0
QMP_TIMEOUT_S = 5.0
# QEMU prints this line (on stdout) when a pty chardev is created.
_PTY_ANNOUNCEMENT = re.compile(r"char device redirected to (/dev/\S+) \(label uart0\)")
_PR_SET_PDEATHSIG = 1
_EM_ARM = 40
CROSS_GCC = "arm-none-eabi-gcc"


def find_qemu(binary: str = QEMU_BINARY) -> str:
    """Absolute path of the QEMU system emulator, or BoardToolError naming the package."""
    path = shutil.which(binary)
    if path is None:
        raise BoardToolError(f"{binary} not found on PATH (Debian/Ubuntu: apt-get install qemu-system-arm)")
    return path


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL QEMU when the thread that started it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _terminate(process: subprocess.Popen, workdir: str) -> None:
    """End QEMU (SIGTERM, then SIGKILL) and remove its directory; safe to call twice."""
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=QEMU_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=QEMU_STOP_TIMEOUT_S)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def qemu_machine(board: str) -> str | None:
    """The QEMU machine ``boards/<board>/board.mk`` declares (``QEMU_MACHINE``), or None."""
    return board_config(board).get("QEMU_MACHINE") or None


def qemu_boards() -> list[str]:
    """The boards that run under QEMU: every board folder whose board.mk declares a machine."""
    return [board for board in boards() if qemu_machine(board)]


class QemuBoard:
    """A running QEMU machine with the firmware loaded; ``port`` is its first UART's pty."""

    def __init__(self, process: subprocess.Popen, port: str, workdir: str, elf_path: Path, machine: str):
        self.process = process
        self.port = port
        self.elf_path = elf_path
        self.machine = machine
        self._workdir = workdir
        self._qmp_path = os.path.join(workdir, "qmp.sock")
        self._log_path = os.path.join(workdir, "qemu.log")
        self._finalizer = weakref.finalize(self, _terminate, process, workdir)

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        """QEMU's own stdout/stderr so far (warnings, guest errors); empty once stopped."""
        try:
            return Path(self._log_path).read_text(errors="replace")
        except OSError:
            return ""

    def qmp(self, command: str, **arguments) -> dict:
        """Run one QMP command and return its ``return`` value (BoardToolError on failure)."""
        if not self.is_running():
            raise BoardToolError(f"QEMU (pid {self.pid}) is not running")
        request = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(QMP_TIMEOUT_S)
                sock.connect(self._qmp_path)
                stream = sock.makefile("rwb")
                _qmp_read(stream)  # greeting
                for message in ({"execute": "qmp_capabilities"}, request):
                    stream.write(json.dumps(message).encode() + b"\n")
                    stream.flush()
                    reply = _qmp_read(stream)
                    if "error" in reply:
                        raise BoardToolError(f"QEMU QMP {message['execute']}: {reply['error']}")
                return reply.get("return", {})
        except OSError as exc:
            raise BoardToolError(f"QEMU QMP {command} failed: {exc}") from exc

    def reset(self) -> None:
        """System reset (CPU, UART, RAM contents kept, ELF segments reloaded), like the reset
        button: the firmware restarts from its reset vector and forgets any upload."""
        self.qmp("system_reset")

    def stop(self) -> None:
        """End QEMU and remove its files; idempotent."""
        self._finalizer()

    close = stop  # the launcher's started-board interface: .port, .wait(), .close()

    def wait(self, timeout: float | None = None) -> int:
        """Block until QEMU exits (it runs until stopped); returns its exit code."""
        return self.process.wait(timeout)

    def poll(self) -> int | None:
        return self.process.poll()

    def __enter__(self) -> QemuBoard:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.process.returncode}"
        return f"QemuBoard(machine={self.machine!r}, port={self.port!r}, pid={self.pid}, {state})"


def _qmp_read(stream) -> dict:
    """Next QMP reply, skipping asynchronous events."""
    while True:
        line = stream.readline()
        if not line:
            raise BoardToolError("QEMU closed its QMP socket")
        message = json.loads(line)
        if "event" not in message:
            return message


def qemu_command(elf_path: Path, workdir: str, qemu: str, machine: str) -> list[str]:
    """The qemu-system-arm command line: no display, no default devices, the machine's first
    UART (``-serial``) on a new pty, QMP on a socket in ``workdir``; the other UARTs and any NIC
    stay unconnected."""
    return [
        qemu,
        "-M",
        machine,
        "-display",
        "none",
        "-nodefaults",
        "-chardev",
        "pty,id=uart0",
        "-serial",
        "chardev:uart0",
        "-qmp",
        f"unix:{os.path.join(workdir, 'qmp.sock')},server=on,wait=off",
        "-kernel",
        str(elf_path),
    ]


def start_qemu(
    elf_path: str | os.PathLike,
    machine: str,
    *,
    qemu: str = QEMU_BINARY,
    start_timeout_s: float = QEMU_START_TIMEOUT_S,
) -> QemuBoard:
    """Start QEMU ``machine`` (e.g. ``qemu_machine("mps2_an385")``) running ``elf_path``; return
    once the first UART's pty exists.

    Raises BoardToolError if QEMU is missing, exits (bad ELF, unknown machine, bad option: its
    message is in the error) or announces no pty within ``start_timeout_s``. Nothing is left
    running on error.
    """
    if not machine:
        raise BoardToolError("start_qemu needs a QEMU machine name (qemu-system-arm -M help lists them)")
    elf = Path(elf_path)
    if not elf.is_file():
        raise BoardToolError(f"firmware ELF not found: {elf}")
    with open(elf, "rb") as f:
        header = f.read(20)
    # QEMU would run any other file as a raw image (and fault); refuse it here instead.
    if header[:4] != b"\x7fELF" or header[4] != 1 or int.from_bytes(header[18:20], "little") != _EM_ARM:
        raise BoardToolError(f"{elf} is not a 32-bit ARM ELF file")
    qemu_path = find_qemu(qemu)
    workdir = tempfile.mkdtemp(prefix="pcl-qemu-")
    log_path = os.path.join(workdir, "qemu.log")
    on_main_thread = threading.current_thread() is threading.main_thread()
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                qemu_command(elf, workdir, qemu_path, machine),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if on_main_thread else None,
            )
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise BoardToolError(f"cannot start {qemu_path}: {exc}") from exc

    deadline = time.monotonic() + start_timeout_s
    try:
        while True:
            text = Path(log_path).read_text(errors="replace")
            match = _PTY_ANNOUNCEMENT.search(text)
            if match and os.path.exists(os.path.join(workdir, "qmp.sock")):
                return QemuBoard(process, match.group(1), workdir, elf, machine)
            if process.poll() is not None:
                raise BoardToolError(
                    f"QEMU (-M {machine}) exited with code {process.returncode} before the board came up: "
                    + " | ".join(text.strip().splitlines()[-3:])
                )
            if time.monotonic() > deadline:
                raise BoardToolError(f"QEMU announced no UART pty within {start_timeout_s:g} s")
            time.sleep(0.02)
    except BaseException:
        _terminate(process, workdir)
        raise


def find_cross_compiler(binary: str = CROSS_GCC) -> str:
    """Absolute path of arm-none-eabi-gcc, or BoardToolError naming the packages."""
    path = shutil.which(binary)
    if path is None:
        raise BoardToolError(
            f"{binary} not found on PATH (Debian/Ubuntu: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
        )
    return path


def build_selftest(board: str, build_dir: str | os.PathLike, defines: str = "") -> Path:
    """Build ``board``'s bring-up self-test (``make BOARD=<board> selftest``) and return its ELF.

    The self-test (arch/cortex_m/selftest.c over the board's HAL) needs only the board files and
    hal.h, so it proves a port (UART, tick, WFI, memory map, fault reports) independently of the
    firmware proper. ``defines``: extra -D options (e.g. ``-DRX_RING_BYTES=256u``).
    """
    if board_config(board).get("SELFTEST") != "yes":
        raise FirmwareBuildError(f"board {board!r} has no bring-up self-test (its board.mk sets no SELFTEST_SRCS)")
    find_cross_compiler()
    build = Path(build_dir).resolve()
    result = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(FIRMWARE_DIR),
            f"BOARD={board}",
            f"BUILD_DIR={build}",
            f"SELFTEST_DEFS={defines}",
            "selftest",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BoardToolError(f"{board} self-test build failed:\n{result.stdout}{result.stderr}")
    return build / "selftest.elf"
