"""Host side of the board bring-up self-test (boards/*/selftest.c): a line protocol over
pyserial, used by the board tests and the link benchmark, never by the firmware client."""

from __future__ import annotations

import time
import zlib

import serial

from popcount_learn.errors import PopcountLearnError

HANDSHAKE_TIMEOUT_S = 8.0
REPLY_TIMEOUT_S = 5.0
# A fresh pty is noticed by QEMU only on its ~1 s poll: each ping gets this long to answer.
PING_WAIT_S = 1.5
QUIET_S = 0.3


class SelftestError(PopcountLearnError):
    """The self-test board did not answer, or answered something unexpected."""


def source_pattern(count: int) -> bytes:
    """What ``SOURCE <count>`` sends: byte i = (7 i + 3) mod 256."""
    return bytes((7 * i + 3) & 0xFF for i in range(count))


class SelftestLink:
    """An open serial port to a board running the self-test."""

    def __init__(self, url: str):
        self.port = serial.serial_for_url(url, timeout=REPLY_TIMEOUT_S)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> SelftestLink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def drain(self, quiet_s: float = QUIET_S) -> bytes:
        """Read and return whatever arrives until the line has been quiet for ``quiet_s``."""
        old = self.port.timeout
        self.port.timeout = quiet_s
        try:
            junk = bytearray()
            while chunk := self.port.read(4096):
                junk += chunk
            return bytes(junk)
        finally:
            self.port.timeout = old

    def handshake(self, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> float:
        """Ping until the board answers; leave the line empty. Returns seconds taken."""
        start = time.monotonic()
        old = self.port.timeout
        self.port.timeout = PING_WAIT_S
        try:
            while time.monotonic() - start < timeout_s:
                self.port.write(b"PING\n")
                for _ in range(4):
                    line = self.port.readline()
                    if not line:
                        break
                    if line.startswith(b"PONG"):
                        elapsed = time.monotonic() - start
                        self.drain()  # answers to the earlier, queued pings
                        return elapsed
        finally:
            self.port.timeout = old
        raise SelftestError(f"no PONG within {timeout_s:g} s on {self.port.port}")

    def command(self, line: str) -> str:
        """Send one command line, return the reply line without its newline."""
        self.port.write(line.encode("ascii") + b"\n")
        reply = self.port.readline()
        if not reply.endswith(b"\n"):
            raise SelftestError(f"{line!r}: no complete reply within {self.port.timeout} s (got {reply!r})")
        return reply[:-1].decode("ascii", errors="replace")

    def sink(self, payload: bytes) -> tuple[int, int]:
        """Send ``payload`` to the board; return (board's CRC-32 of it, board's elapsed ms)."""
        ready = self.command(f"SINK {len(payload)}")
        if ready != "READY":
            raise SelftestError(f"SINK: expected READY, got {ready!r}")
        self.port.write(payload)
        reply = self.port.readline().decode("ascii", errors="replace").split()
        if len(reply) != 4 or reply[0] != "SINK":
            raise SelftestError(f"SINK: unexpected reply {reply!r}")
        return int(reply[2], 16), int(reply[3])

    def source(self, count: int) -> bytes:
        """Ask the board for ``count`` pattern bytes; return what arrived."""
        self.port.write(f"SOURCE {count}\n".encode("ascii"))
        return self.port.read(count)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF
