"""Fault injection on a serial byte stream, knowing nothing of any protocol.

``FaultProxy(board_url)`` opens the board's port (any pyserial URL: a QEMU or host-board pty,
``socket://``...) and offers the client a new pty, ``proxy.client_port``. Bytes are pumped both
ways; on the way each direction applies its own seeded ``FaultRates``:

- corrupt: the byte is replaced by a different value (XOR with a uniform non-zero mask);
- drop: the byte is not forwarded;
- duplicate: the byte is forwarded twice.

At most one fault per byte; the choice depends only on the seed and on the byte's position in
its direction's stream (not on how the stream is chunked), so a run is reproducible.

Scripted faults: ``mute_after_to_client_bytes`` silences the board after that many bytes
(a board that stops answering mid-frame; ``set_muted`` toggles it at run time), and
``reset_after_to_board_bytes`` calls ``reset_hook`` (such as ``QemuBoard.reset``) once the
client has sent that many bytes (a board reset mid-upload). ``Babbler`` is a device that
speaks something else entirely.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import serial

from popcount_learn.errors import ConfigError

from ..errors import BoardConnectionError

PUMP_POLL_S = 0.02
BOARD_READ_BYTES = 4096


@dataclass(frozen=True)
class FaultRates:
    """Per-byte fault probabilities of one direction; each in [0, 1], their sum at most 1."""

    corrupt: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("corrupt", "drop", "duplicate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"FaultRates.{name} must be a probability in [0, 1], got {value!r}")
        if self.corrupt + self.drop + self.duplicate > 1.0:
            raise ConfigError("FaultRates: corrupt + drop + duplicate must not exceed 1")

    @property
    def any(self) -> bool:
        return self.corrupt + self.drop + self.duplicate > 0.0


@dataclass
class FaultCounts:
    """What one direction did so far."""

    bytes_in: int = 0
    bytes_out: int = 0
    corrupted: int = 0
    dropped: int = 0
    duplicated: int = 0
    muted: int = 0
    marks_out: int = 0  # forwarded bytes equal to the proxy's ``mark_byte`` (e.g. frame ends)


class ByteFaults:
    """Seeded faults for one direction of a byte stream (pure: no I/O).

    Byte i of the stream draws u_i (fault choice) and m_i (corruption mask) from two
    independent generators, one value per byte each, so the outcome for byte i does not
    depend on how the stream was split into chunks.
    """

    def __init__(self, rates: FaultRates, seed: int, direction: int, mark_byte: int | None = None):
        self.rates = rates
        self.mark_byte = mark_byte
        self.counts = FaultCounts()
        self._choice = np.random.default_rng([seed, direction, 0])
        self._mask = np.random.default_rng([seed, direction, 1])

    def apply(self, data: bytes) -> bytes:
        n = len(data)
        self.counts.bytes_in += n
        if n == 0 or not self.rates.any:
            self.counts.bytes_out += n
            self._count_marks(data)
            return bytes(data)
        u = self._choice.random(n)
        masks = (1 + np.floor(self._mask.random(n) * 255.0)).astype(np.uint8)  # 1..255
        r = self.rates
        corrupt = u < r.corrupt
        drop = (u >= r.corrupt) & (u < r.corrupt + r.drop)
        duplicate = (u >= r.corrupt + r.drop) & (u < r.corrupt + r.drop + r.duplicate)
        values = np.frombuffer(bytes(data), dtype=np.uint8).copy()
        values[corrupt] ^= masks[corrupt]
        repeats = np.ones(n, dtype=np.int64)
        repeats[drop] = 0
        repeats[duplicate] = 2
        out = np.repeat(values, repeats).tobytes()
        self.counts.corrupted += int(corrupt.sum())
        self.counts.dropped += int(drop.sum())
        self.counts.duplicated += int(duplicate.sum())
        self.counts.bytes_out += len(out)
        self._count_marks(out)
        return out

    def _count_marks(self, out: bytes) -> None:
        if self.mark_byte is not None:
            self.counts.marks_out += out.count(self.mark_byte)


def open_raw_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode (no echo, no CR/LF translation): (master fd, slave fd, path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def _write_all(fd: int, data: bytes, stop: threading.Event) -> None:
    """Write to a non-blocking fd, waiting for room (the reader's pace) until stopped."""
    view = memoryview(data)
    while view and not stop.is_set():
        try:
            written = os.write(fd, view)
            view = view[written:]
        except BlockingIOError:
            select.select([], [fd], [], PUMP_POLL_S)


@dataclass
class _Script:
    mute_after_to_client_bytes: int | None = None
    reset_after_to_board_bytes: int | None = None
    reset_done: bool = False
    muted: bool = False
    cut_to_board: bool = False
    resets: int = 0
    errors: list = field(default_factory=list)


class FaultProxy:
    """Pumps bytes between a client pty (``client_port``) and a board port, injecting faults.

    Use as a context manager, or ``start()`` / ``stop()``. ``to_board`` and ``to_client`` are
    the two directions' rates; ``counts()`` reports what each did. ``mark_byte``, if given, is
    a byte value whose forwarded occurrences are counted (a frame delimiter, say) - counted
    only, never interpreted.
    """

    def __init__(
        self,
        board_url: str,
        *,
        to_board: FaultRates = FaultRates(),
        to_client: FaultRates = FaultRates(),
        seed: int = 0,
        reset_hook: Callable[[], None] | None = None,
        reset_after_to_board_bytes: int | None = None,
        mute_after_to_client_bytes: int | None = None,
        mark_byte: int | None = None,
    ):
        if reset_after_to_board_bytes is not None and reset_hook is None:
            raise ConfigError("FaultProxy: reset_after_to_board_bytes needs a reset_hook")
        self.board_url = board_url
        self.to_board = ByteFaults(to_board, seed, 0, mark_byte)
        self.to_client = ByteFaults(to_client, seed, 1, mark_byte)
        self.reset_hook = reset_hook
        self._script = _Script(mute_after_to_client_bytes, reset_after_to_board_bytes)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._board: serial.SerialBase | None = None
        self._master = self._slave = -1
        self.client_port = ""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        try:
            self._board = serial.serial_for_url(self.board_url, timeout=PUMP_POLL_S)
        except (serial.SerialException, ValueError) as exc:
            raise BoardConnectionError(f"fault proxy: cannot open the board port {self.board_url}: {exc}") from None
        self._master, self._slave, self.client_port = open_raw_pty()
        self._threads = [
            threading.Thread(target=self._pump_to_board, name="fault-proxy-to-board", daemon=True),
            threading.Thread(target=self._pump_to_client, name="fault-proxy-to-client", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop both pumps and close both ends; idempotent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads = []
        if self._board is not None:
            self._board.close()
            self._board = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- run-time control ----------------------------------------------------------------------

    def set_muted(self, muted: bool) -> None:
        """A muted board's bytes are discarded: it seems to stop answering."""
        with self._lock:
            self._script.muted = muted

    def set_cut(self, cut: bool) -> None:
        """A cut link drops the client's bytes too (counted as ``to_board.muted``); with
        ``set_muted`` it is a pulled cable. Usable as a reset_hook: ``lambda: proxy.set_cut(True)``."""
        with self._lock:
            self._script.cut_to_board = cut

    def reset_board(self) -> None:
        """Call the reset hook now (counted in ``counts()['resets']``)."""
        if self.reset_hook is None:
            raise ConfigError("FaultProxy: no reset_hook was given")
        self.reset_hook()
        with self._lock:
            self._script.resets += 1

    def counts(self) -> dict:
        """Fault counters per direction, plus resets and pump errors."""
        with self._lock:
            return {
                "to_board": dataclass_dict(self.to_board.counts),
                "to_client": dataclass_dict(self.to_client.counts),
                "resets": self._script.resets,
                "errors": list(self._script.errors),
            }

    # --- pumps ---------------------------------------------------------------------------------

    def _pump_to_board(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._master], [], [], PUMP_POLL_S)
                if not ready:
                    continue
                try:
                    data = os.read(self._master, BOARD_READ_BYTES)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EIO:  # no client has the pty open: nothing to read
                        self._stop.wait(PUMP_POLL_S)
                        continue
                    raise
                self._forward_to_board(data)
        except Exception as exc:  # reported through counts(); the client sees silence
            with self._lock:
                self._script.errors.append(f"to_board: {exc!r}")

    def _forward_to_board(self, data: bytes) -> None:
        script = self._script
        if script.cut_to_board:
            self.to_board.counts.muted += len(data)
            return
        limit = script.reset_after_to_board_bytes
        sent_before = self.to_board.counts.bytes_in
        if limit is not None and not script.reset_done and sent_before + len(data) >= limit:
            head, tail = data[: limit - sent_before], data[limit - sent_before :]
            self._board.write(self.to_board.apply(head))
            self._board.flush()
            script.reset_done = True
            self.reset_board()
            data = tail
        if data and not script.cut_to_board:
            self._board.write(self.to_board.apply(data))
        elif data:
            self.to_board.counts.muted += len(data)

    def _pump_to_client(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._board.read(1)
                if not data:
                    continue
                waiting = self._board.in_waiting
                if waiting:
                    data += self._board.read(min(waiting, BOARD_READ_BYTES))
                _write_all(self._master, self._filter_to_client(data), self._stop)
        except Exception as exc:
            if not self._stop.is_set():
                with self._lock:
                    self._script.errors.append(f"to_client: {exc!r}")

    def _filter_to_client(self, data: bytes) -> bytes:
        script = self._script
        counts = self.to_client.counts
        with self._lock:
            if script.muted:
                counts.muted += len(data)
                return b""
            limit = script.mute_after_to_client_bytes
            if limit is not None and counts.bytes_in + len(data) > limit:
                keep = max(0, limit - counts.bytes_in)
                counts.muted += len(data) - keep
                script.muted = True
                script.mute_after_to_client_bytes = None  # fires once; set_muted(False) undoes it
                data = data[:keep]
        return self.to_client.apply(data)


def dataclass_dict(counts: FaultCounts) -> dict:
    return dict(counts.__dict__)


class Babbler:
    """A device on a pty that speaks something else: to every chunk it reads it answers with
    ``reply`` (default: a modem's "OK"), or with seeded random bytes when ``noise`` is set."""

    def __init__(self, reply: bytes = b"\r\nOK\r\n", *, noise: bool = False, seed: int = 0):
        self.reply = reply
        self.noise = noise
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._master, self._slave, self.port = open_raw_pty()
        self._thread = threading.Thread(target=self._run, name="babbler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], PUMP_POLL_S)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except (BlockingIOError, OSError):
                self._stop.wait(PUMP_POLL_S)
                continue
            answer = (
                self._rng.integers(0, 256, max(1, len(data)), dtype=np.uint8).tobytes() if self.noise else self.reply
            )
            _write_all(self._master, answer, self._stop)

    def __enter__(self) -> Babbler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        os.close(self._master)
        os.close(self._slave)
