"""The protocol-agnostic fault-injection proxy (firmware_bridge/faults.py)."""

from __future__ import annotations

import itertools
import os
import select
import shutil
import threading

import numpy as np
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.boards.faults import Babbler, ByteFaults, FaultProxy, FaultRates, open_raw_pty
from popcount_learn.errors import ConfigError


class EchoDevice:
    """A plain pty device that echoes every byte (the simplest 'board')."""

    def __init__(self):
        self._master, self._slave, self.port = open_raw_pty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            if select.select([self._master], [], [], 0.02)[0]:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    continue
                while data:
                    try:
                        data = data[os.write(self._master, data) :]
                    except BlockingIOError:
                        select.select([], [self._master], [], 0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        os.close(self._master)
        os.close(self._slave)


def read_exactly(port: serial.Serial, count: int, quiet_s: float = 0.5) -> bytes:
    """Read until ``count`` bytes or ``quiet_s`` of silence."""
    got = bytearray()
    port.timeout = quiet_s
    while len(got) < count:
        chunk = port.read(count - len(got))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def reference_faults(data: bytes, rates: FaultRates, seed: int, direction: int) -> bytes:
    """Slow, obvious per-byte model of ByteFaults: one choice and one mask draw per byte."""
    choice = np.random.default_rng([seed, direction, 0])
    mask = np.random.default_rng([seed, direction, 1])
    out = bytearray()
    for byte in data:
        u = choice.random()
        m = 1 + int(mask.random() * 255.0)
        if u < rates.corrupt:
            out.append(byte ^ m)
        elif u < rates.corrupt + rates.drop:
            pass
        elif u < rates.corrupt + rates.drop + rates.duplicate:
            out += bytes([byte, byte])
        else:
            out.append(byte)
    return bytes(out)


# --- rates and the pure fault model -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"corrupt": -0.1},
        {"drop": 1.5},
        {"duplicate": True},
        {"corrupt": "0.1"},
        {"corrupt": 0.5, "drop": 0.4, "duplicate": 0.2},
    ],
)
def test_invalid_rates_are_refused(kwargs):
    with pytest.raises(ConfigError, match="FaultRates"):
        FaultRates(**kwargs)


def test_no_faults_is_the_identity():
    data = bytes(range(256)) * 10
    faults = ByteFaults(FaultRates(), seed=1, direction=0)
    assert faults.apply(data) == data
    assert faults.counts.corrupted == faults.counts.dropped == faults.counts.duplicated == 0


def test_corruption_changes_exactly_the_counted_bytes_at_about_the_rate():
    data = np.random.default_rng(3).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    faults = ByteFaults(FaultRates(corrupt=0.01), seed=5, direction=0)
    out = faults.apply(data)
    assert len(out) == len(data)
    differing = int(np.count_nonzero(np.frombuffer(out, np.uint8) != np.frombuffer(data, np.uint8)))
    assert differing == faults.counts.corrupted  # a corrupted byte always changes
    assert 1_600 <= differing <= 2_400


def test_drop_and_duplicate_change_the_length_by_their_counts():
    data = bytes(range(256)) * 400
    faults = ByteFaults(FaultRates(drop=0.02, duplicate=0.03), seed=7, direction=1)
    out = faults.apply(data)
    assert len(out) == len(data) - faults.counts.dropped + faults.counts.duplicated
    assert faults.counts.dropped > 0 and faults.counts.duplicated > 0


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(0, 600), max_size=6),
    corrupt=st.floats(0, 0.3),
    drop=st.floats(0, 0.3),
    duplicate=st.floats(0, 0.3),
    seed=st.integers(0, 2**32 - 1),
    direction=st.integers(0, 1),
)
def test_fast_model_matches_reference_however_the_stream_is_chunked(
    data, cuts, corrupt, drop, duplicate, seed, direction
):
    rates = FaultRates(corrupt, drop, duplicate)
    faults = ByteFaults(rates, seed, direction)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    chunked = b"".join(faults.apply(data[a:b]) for a, b in itertools.pairwise(bounds))
    assert chunked == reference_faults(data, rates, seed, direction)


def test_reference_comparison_catches_a_one_byte_difference():
    data = bytes(range(200))
    rates = FaultRates(corrupt=0.05)
    out = bytearray(ByteFaults(rates, 1, 0).apply(data))
    out[10] ^= 1
    assert bytes(out) != reference_faults(data, rates, 1, 0)


# --- the proxy on ptys ------------------------------------------------------------------------


def test_clean_proxy_round_trips_through_an_echo_device():
    payload = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    with EchoDevice() as echo, FaultProxy(echo.port) as proxy, serial.Serial(proxy.client_port) as client:
        client.write(payload)
        assert read_exactly(client, len(payload)) == payload
        counts = proxy.counts()
    assert counts["to_board"]["bytes_in"] == counts["to_client"]["bytes_out"] == len(payload)
    assert counts["errors"] == []


def test_corrupting_proxy_damages_exactly_what_it_counts():
    payload = np.random.default_rng(2).integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    with (
        EchoDevice() as echo,
        FaultProxy(echo.port, to_board=FaultRates(corrupt=0.01), seed=11) as proxy,
        serial.Serial(proxy.client_port) as client,
    ):
        client.write(payload)
        echoed = read_exactly(client, len(payload))
        counts = proxy.counts()
    assert len(echoed) == len(payload)
    differing = int(np.count_nonzero(np.frombuffer(echoed, np.uint8) != np.frombuffer(payload, np.uint8)))
    assert differing == counts["to_board"]["corrupted"] > 0
    # Same seed, same stream: the same damage, byte for byte.
    assert echoed == reference_faults(payload, FaultRates(corrupt=0.01), 11, 0)


def test_muted_board_stops_answering_mid_stream_and_can_come_back():
    with (
        EchoDevice() as echo,
        FaultProxy(echo.port, mute_after_to_client_bytes=100) as proxy,
        serial.Serial(proxy.client_port) as client,
    ):
        client.write(bytes(range(250)))
        assert read_exactly(client, 250, quiet_s=0.4) == bytes(range(100))
        proxy.set_muted(False)
        client.write(b"again")
        assert read_exactly(client, 5) == b"again"
        assert proxy.counts()["to_client"]["muted"] == 150


def test_reset_hook_fires_once_at_the_given_byte():
    seen_at = []
    with EchoDevice() as echo:
        proxy = FaultProxy(
            echo.port,
            reset_after_to_board_bytes=1000,
            reset_hook=lambda: seen_at.append(proxy.to_board.counts.bytes_in),
        )
        with proxy, serial.Serial(proxy.client_port) as client:
            for _ in range(5):
                client.write(bytes(600))
                read_exactly(client, 600)
            assert seen_at == [1000]
            assert proxy.counts()["resets"] == 1


def test_unopenable_board_port_is_a_connection_error(tmp_path):
    from firmware_bridge.errors import BoardConnectionError

    with pytest.raises(BoardConnectionError, match="cannot open the board port"):
        FaultProxy(str(tmp_path / "no-such-tty")).start()


def test_reset_schedule_without_hook_is_refused():
    with pytest.raises(ConfigError, match="reset_hook"):
        FaultProxy("loop://", reset_after_to_board_bytes=10)


def test_proxy_stop_releases_its_pty():
    with EchoDevice() as echo:
        proxy = FaultProxy(echo.port).start()
        port = proxy.client_port
        proxy.stop()
        proxy.stop()
        assert not any(t.name.startswith("fault-proxy") and t.is_alive() for t in threading.enumerate())
        assert port and proxy._master == -1 and proxy._slave == -1  # both pty ends closed


def test_babbler_speaks_something_else():
    with Babbler() as modem, serial.Serial(modem.port, timeout=1) as client:
        client.write(b"\x00\x01hello")
        assert read_exactly(client, 6) == b"\r\nOK\r\n"
    with Babbler(noise=True, seed=3) as noise, serial.Serial(noise.port, timeout=1) as client:
        client.write(b"x" * 10)
        assert len(read_exactly(client, 10)) == 10


# --- the proxy in front of the QEMU board -----------------------------------------------------


def _qemu_boards() -> list[str]:
    """The QEMU boards (board folders declaring a QEMU_MACHINE); without make, the default one
    (whose test the qemu marker then skips, or fails under CI, naming the missing tool)."""
    from firmware_bridge.boards import qemu
    from firmware_bridge.boards.launch import DEFAULT_QEMU_BOARD

    return qemu.qemu_boards() if shutil.which("make") else [DEFAULT_QEMU_BOARD]


@pytest.mark.qemu
@pytest.mark.parametrize("board_name", _qemu_boards())
def test_reset_hook_resets_the_qemu_board_mid_stream(tmp_path, board_name):
    from firmware_bridge.boards import build, qemu
    from firmware_bridge.boards.selftest_link import SelftestLink

    name = build.board_config(board_name)["BOARD_NAME"]
    elf = qemu.build_selftest(board_name, tmp_path)
    with (
        qemu.start_qemu(elf, qemu.qemu_machine(board_name)) as board,
        FaultProxy(board.port, reset_hook=board.reset, reset_after_to_board_bytes=4000) as proxy,
        SelftestLink(proxy.client_port) as link,
    ):
        link.handshake()
        assert link.command("ECHOALL") == "ECHOING"
        sent = proxy.counts()["to_board"]["bytes_in"]
        stream = bytes((i * 13) & 0x7F for i in range(2000))  # ASCII, no newline-free issue
        link.port.write(stream)
        echoed = read_exactly(link.port, len(stream))
        assert echoed == stream
        link.port.write(b"." * (4000 - sent - len(stream) + 500))  # crosses the reset point
        after = link.drain(quiet_s=1.0)
        assert f"BOOT {name} selftest".encode() in after  # the board rebooted mid-stream
        assert proxy.counts()["resets"] == 1
        link.handshake()
        assert link.command("PING") == f"PONG {name}"
