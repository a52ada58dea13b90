"""The mps2-an385 (Cortex-M3) board port under QEMU, proven with the HAL-only self-test.

Skips (with the reason) only when arm-none-eabi-gcc or qemu-system-arm is absent; CI installs
both (gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.boards import qemu
from firmware_bridge.boards.selftest_link import SelftestLink, crc32, source_pattern
from firmware_bridge.errors import BoardToolError

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def selftest_elf(tmp_path_factory) -> Path:
    return qemu.build_selftest(tmp_path_factory.mktemp("mps2_selftest"))


@pytest.fixture(scope="module")
def board(selftest_elf):
    with qemu.start_qemu(selftest_elf) as running:
        yield running


@pytest.fixture()
def link(board):
    """A handshaken link to the module's board; a test that leaves it broken resets it."""
    with SelftestLink(board.port) as open_link:
        open_link.handshake()
        yield open_link


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_elf_places_vectors_in_ssram1_and_big_ram_in_psram(selftest_elf):
    symbols = subprocess.run(
        ["arm-none-eabi-nm", str(selftest_elf)], capture_output=True, text=True, check=True
    ).stdout
    address = {line.split()[2]: int(line.split()[0], 16) for line in symbols.splitlines()
               if len(line.split()) == 3}
    assert address["vector_table"] == 0x00000000
    assert address["big_test_memory"] == 0x21000000
    assert 0x20000000 <= address["__bss_start"] < 0x20400000
    assert address["__stack_top"] == 0x20400000


def test_boots_and_answers_quickly_after_the_handshake(link):
    # The handshake itself may take up to QEMU's ~1 s pty poll; after it, a ping is immediate.
    start = time.monotonic()
    assert link.command("PING") == "PONG mps2-an385"
    assert time.monotonic() - start < 0.5


def test_bytes_round_trip_both_ways(link):
    payload = np.random.default_rng(9).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    board_crc, _ = link.sink(payload)
    assert board_crc == crc32(payload)
    assert link.source(20_000) == source_pattern(20_000)
    # The CRC comparison must be able to fail: one flipped bit gives another CRC.
    corrupted = bytearray(payload)
    corrupted[123] ^= 0x01
    assert crc32(bytes(corrupted)) != board_crc


def test_millisecond_tick_runs_at_real_time_and_never_steps_back(link):
    first = int(link.command("MS").split()[1])
    time.sleep(1.0)
    second = int(link.command("MS").split()[1])
    assert 900 <= second - first <= 1400
    reads, backward = map(int, link.command("MONO 1500").split()[1:])
    assert reads > 1000
    assert backward == 0


def test_read_byte_times_out_on_time_and_wakes_on_a_byte(link):
    _, kind, elapsed_ms = link.command("WAIT 200").split()
    assert kind == "timeout"
    assert 200 <= int(elapsed_ms) <= 1000  # never early; late only if QEMU was starved of CPU
    link.port.write(b"WAIT 3000\n")
    time.sleep(0.2)
    link.port.write(b"Z")
    reply = link.port.readline().decode().split()
    assert reply[:3] == ["WAIT", "byte", str(ord("Z"))]
    assert int(reply[3]) < 1500  # woken by the byte, not by the timeout


def test_full_receive_ring_holds_the_host_back_without_losing_a_byte(tmp_path):
    # A 256-byte ring fills while the board is busy; the rest must wait, not vanish.
    elf = qemu.build_selftest(tmp_path, defines="-DRX_RING_BYTES=256u")
    payload = np.random.default_rng(4).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with qemu.start_qemu(elf) as small_ring, SelftestLink(small_ring.port) as link:
        link.handshake()
        link.port.write(b"HOLD 500\nSINK 3000\n" + payload)
        assert link.port.readline() == b"HELD\n"
        assert link.port.readline() == b"READY\n"
        reply = link.port.readline().decode().split()
        assert reply[:3] == ["SINK", "3000", f"{crc32(payload):08x}"]


def test_idle_board_sleeps_instead_of_spinning(board, link):
    before = _cpu_seconds(board.pid)
    time.sleep(2.0)
    used = (_cpu_seconds(board.pid) - before) / 2.0
    # A guest polling the UART keeps QEMU near one full core; the WFI wait stays at a few %.
    assert used < 0.3, f"idle QEMU used {used:.0%} of a core"


def test_big_ram_is_psram_and_holds_a_pattern(link):
    assert link.command("MEM") == "MEM 21000000 524288 ok"


def test_unknown_and_overlong_commands_get_errors(link):
    assert link.command("FROB") == "ERR unknown"
    assert link.command("X" * 200) == "ERR long"
    assert link.command("PING") == "PONG mps2-an385"


def test_divide_by_zero_is_reported_and_reset_recovers(board, link):
    link.port.write(b"DIV0\n")
    report = link.drain(quiet_s=0.5)
    assert b"!PCL-FAULT fault" in report
    assert b"cfsr=02000000" in report  # UsageFault DIVBYZERO
    assert link.port.write(b"PING\n") and link.port.read(1) == b""  # halted: silence
    board.reset()
    link.handshake()
    assert link.command("PING") == "PONG mps2-an385"


def test_software_reset_reboots_the_board(link):
    link.port.write(b"RESET\n")
    after = link.drain(quiet_s=0.5)
    assert after.startswith(b"RESETTING\n")
    assert b"BOOT mps2-an385 selftest" in after
    assert link.command("PING") == "PONG mps2-an385"


def test_stop_ends_qemu_and_removes_its_files(selftest_elf):
    running = qemu.start_qemu(selftest_elf)
    pid, port, workdir = running.pid, running.port, running._workdir
    assert Path(port).exists() and Path(workdir).is_dir()
    running.stop()
    running.stop()  # idempotent
    assert running.process.returncode is not None
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not Path(workdir).exists()
    # (Not re-opening the pty: another process may already have been given the same name.)


def test_missing_or_bad_elf_is_a_clear_error_and_leaves_nothing_running(tmp_path, selftest_elf):
    with pytest.raises(BoardToolError, match="ELF not found"):
        qemu.start_qemu(tmp_path / "absent.elf")
    bogus = tmp_path / "bogus.elf"
    bogus.write_bytes(b"not an elf at all, but long enough")
    with pytest.raises(BoardToolError, match="not a 32-bit ARM ELF"):
        qemu.start_qemu(bogus)
    with pytest.raises(BoardToolError, match="apt-get install qemu-system-arm"):
        qemu.start_qemu(selftest_elf, qemu="qemu-system-does-not-exist")
    before = set(Path(tempfile.gettempdir()).glob("pcl-qemu-*"))
    with pytest.raises(BoardToolError, match="exited with code 1"):
        qemu.start_qemu(selftest_elf, qemu="false")  # stands in for a QEMU that refuses to run
    assert set(Path(tempfile.gettempdir()).glob("pcl-qemu-*")) <= before
