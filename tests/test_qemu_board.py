"""Every QEMU Cortex-M board port, proven with the HAL-only bring-up self-test.

The boards are discovered (``qemu.qemu_boards()``: the board folders whose board.mk declares a
QEMU_MACHINE), and each runs the same checks: memory placement from its linker map, UART both
ways, tick at real time, read timeouts and wake-ups, a full receive ring, sleep when idle, its
PCL_BIG_RAM, fault reports and resets. Skips (with the reason) only when arm-none-eabi-gcc or
qemu-system-arm is absent; CI installs both (gcc-arm-none-eabi libnewlib-arm-none-eabi
qemu-system-arm).
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

from firmware_bridge.boards import build, qemu
from firmware_bridge.boards.launch import DEFAULT_QEMU_BOARD
from firmware_bridge.boards.selftest_link import SelftestError, SelftestLink, crc32, source_pattern
from firmware_bridge.errors import BoardToolError, FirmwareBuildError

pytestmark = pytest.mark.qemu


def _qemu_boards() -> list[str]:
    # Without make the boards cannot be read; the default board's tests then skip (or fail
    # under CI) through the qemu marker, which names the missing tool.
    return qemu.qemu_boards() if shutil.which("make") else [DEFAULT_QEMU_BOARD]


@pytest.fixture(scope="module", params=_qemu_boards())
def board_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def config(board_name) -> dict[str, str]:
    return build.board_config(board_name)


@pytest.fixture(scope="module")
def selftest_elf(board_name, tmp_path_factory) -> Path:
    return qemu.build_selftest(board_name, tmp_path_factory.mktemp(f"{board_name}_selftest"))


@pytest.fixture(scope="module")
def board(board_name, selftest_elf):
    with qemu.start_qemu(selftest_elf, qemu.qemu_machine(board_name)) as running:
        yield running


@pytest.fixture(scope="module")
def open_link(board):
    # One link per board: every fresh open of the pty costs QEMU's ~1 s poll.
    with SelftestLink(board.port) as module_link:
        module_link.handshake()
        yield module_link


@pytest.fixture()
def link(board, open_link, config):
    """The board's link, answering PING; a board a test left halted or talking is reset first."""
    open_link.drain(quiet_s=0.05)
    try:
        answering = open_link.command("PING") == f"PONG {config['BOARD_NAME']}"
    except SelftestError:
        answering = False
    if not answering:
        board.reset()
        open_link.handshake()
    return open_link


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_regions(map_file: Path) -> dict[str, tuple[int, int, str]]:
    """The MEMORY regions of a GNU ld map: name -> (origin, length, attributes)."""
    text = map_file.read_text()
    table = text.split("Memory Configuration", 1)[1].split("Linker script and memory map", 1)[0]
    regions = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].startswith("0x") and fields[0] != "*default*":
            regions[fields[0]] = (int(fields[1], 16), int(fields[2], 16), fields[3] if len(fields) > 3 else "")
    return regions


def _symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {f[2]: int(f[0], 16) for f in (line.split() for line in out.splitlines()) if len(f) == 3}


def test_elf_places_vectors_ram_and_stack_as_the_linker_script_declares(selftest_elf, config):
    regions = _memory_regions(selftest_elf.with_suffix(".map"))
    address = _symbols(selftest_elf)

    def region_of(value: int, *, end: bool = False) -> tuple[int, int, str]:
        hits = [r for r in regions.values() if r[0] <= value - end < r[0] + r[1]]
        assert len(hits) == 1, (hex(value), regions)
        return hits[0]

    # The core fetches the initial stack pointer and reset vector from address 0.
    assert address["board_vector_table"] == 0x00000000
    assert "w" not in region_of(0)[2]
    ram = region_of(address["__bss_start"])
    assert "w" in ram[2]
    assert address["__stack_top"] == ram[0] + ram[1]  # the stack starts at the top of RAM
    assert address["__stack_top"] % 8 == 0
    big = region_of(address["__bigram_start"])
    assert "w" in big[2] and region_of(address["__bigram_end"], end=True) == big
    assert address["__bigram_start"] <= address["big_test_memory"]
    assert address["big_test_memory"] + int(config["SELFTEST_BIG_BYTES"]) <= address["__bigram_end"]


def test_boots_and_answers_quickly_after_the_handshake(link, config):
    # The handshake itself may take up to QEMU's ~1 s pty poll; after it, a ping is immediate.
    start = time.monotonic()
    assert link.command("PING") == f"PONG {config['BOARD_NAME']}"
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
    # Also checks the board's idea of its clock: a SysTick reload computed for the wrong core
    # clock (QEMU's is the machine's, not the board's wish) runs the milliseconds fast or slow.
    # A QEMU starved of CPU by a loaded host runs slow for a while, never fast; a wrong reload is
    # wrong every time. So a fast second fails at once, a slow one is measured again (3 tries).
    seconds_ms = []
    for _ in range(3):
        first = int(link.command("MS").split()[1])
        time.sleep(1.0)
        seconds_ms.append(int(link.command("MS").split()[1]) - first)
        assert seconds_ms[-1] <= 1400, seconds_ms
        if seconds_ms[-1] >= 900:
            break
    assert 900 <= seconds_ms[-1] <= 1400, seconds_ms
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


def test_full_receive_ring_holds_the_host_back_without_losing_a_byte(board_name, tmp_path):
    # A 256-byte ring fills while the board is busy; the rest must wait, not vanish.
    elf = qemu.build_selftest(board_name, tmp_path, defines="-DRX_RING_BYTES=256u")
    payload = np.random.default_rng(4).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with qemu.start_qemu(elf, qemu.qemu_machine(board_name)) as small_ring, SelftestLink(small_ring.port) as link:
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


def test_big_ram_holds_a_pattern_where_the_linker_put_it(link, selftest_elf, config):
    where = _symbols(selftest_elf)["big_test_memory"]
    assert link.command("MEM") == f"MEM {where:08x} {config['SELFTEST_BIG_BYTES']} ok"


def test_unknown_and_overlong_commands_get_errors(link, config):
    assert link.command("FROB") == "ERR unknown"
    assert link.command("X" * 200) == "ERR long"
    assert link.command("PING") == f"PONG {config['BOARD_NAME']}"


def test_divide_by_zero_is_reported_and_reset_recovers(board, link, config):
    link.port.write(b"DIV0\n")
    report = link.drain(quiet_s=0.5)
    assert b"!PCL-FAULT fault" in report
    assert b"cfsr=02000000" in report  # UsageFault DIVBYZERO
    link.port.timeout, patience = 1.0, link.port.timeout
    try:
        assert link.port.write(b"PING\n") and link.port.read(1) == b""  # halted: silence
    finally:
        link.port.timeout = patience
    board.reset()
    link.handshake()
    assert link.command("PING") == f"PONG {config['BOARD_NAME']}"


def test_software_reset_reboots_the_board(link, config):
    link.port.write(b"RESET\n")
    after = link.drain(quiet_s=0.5)
    assert after.startswith(b"RESETTING\n")
    assert f"BOOT {config['BOARD_NAME']} selftest".encode() in after
    assert link.command("PING") == f"PONG {config['BOARD_NAME']}"


def test_stop_ends_qemu_and_removes_its_files(board_name, selftest_elf):
    running = qemu.start_qemu(selftest_elf, qemu.qemu_machine(board_name))
    pid, port, workdir = running.pid, running.port, running._workdir
    assert Path(port).exists() and Path(workdir).is_dir()
    assert running.machine == qemu.qemu_machine(board_name)
    running.stop()
    running.stop()  # idempotent
    assert running.process.returncode is not None
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not Path(workdir).exists()
    # (Not re-opening the pty: another process may already have been given the same name.)


def test_missing_or_bad_elf_or_machine_is_a_clear_error_and_leaves_nothing_running(tmp_path, board_name, selftest_elf):
    machine = qemu.qemu_machine(board_name)
    with pytest.raises(BoardToolError, match="ELF not found"):
        qemu.start_qemu(tmp_path / "absent.elf", machine)
    bogus = tmp_path / "bogus.elf"
    bogus.write_bytes(b"not an elf at all, but long enough")
    with pytest.raises(BoardToolError, match="not a 32-bit ARM ELF"):
        qemu.start_qemu(bogus, machine)
    with pytest.raises(BoardToolError, match="apt-get install qemu-system-arm"):
        qemu.start_qemu(selftest_elf, machine, qemu="qemu-system-does-not-exist")
    with pytest.raises(BoardToolError, match="needs a QEMU machine"):
        qemu.start_qemu(selftest_elf, "")
    before = set(Path(tempfile.gettempdir()).glob("pcl-qemu-*"))
    with pytest.raises(BoardToolError, match="exited with code 1"):
        qemu.start_qemu(selftest_elf, machine, qemu="false")  # stands in for a QEMU that refuses to run
    with pytest.raises(BoardToolError, match=r"exited with code 1.*machine"):
        qemu.start_qemu(selftest_elf, "no-such-machine")  # QEMU's own message is in the error
    assert set(Path(tempfile.gettempdir()).glob("pcl-qemu-*")) <= before


def test_qemu_boards_are_the_folders_that_declare_a_machine():
    boards = qemu.qemu_boards()
    assert DEFAULT_QEMU_BOARD in boards
    for name in build.boards():
        declared = build.board_config(name)["QEMU_MACHINE"]
        assert (name in boards) == bool(declared)
        if declared:
            assert build.board_config(name)["SELFTEST"] == "yes", f"{name}: a QEMU board needs the self-test"
    assert "host" not in boards and qemu.qemu_machine("host") is None
    with pytest.raises(FirmwareBuildError, match="no bring-up self-test"):
        qemu.build_selftest("host", tempfile.gettempdir())
