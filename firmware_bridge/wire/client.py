"""``BoardClient``: the host side of the protocol over any pyserial URL.

``/dev/ttyUSB0``, a pty such as ``/dev/pts/5``, ``socket://host:port`` and ``loop://`` all work
(``serial.serial_for_url``). One request at a time: the command loop sends a frame, reads until
the reply with the same sequence number arrives or the deadline passes, and resends the *same*
frame (same seq) up to ``retries`` times. The board keeps its last reply, so a resent request is
answered again, not executed twice. Bytes that do not decode are dropped up to the next frame
delimiter (resynchronisation), stale replies (another seq) are skipped.

Trace: ``trace=True`` logs every frame as hex on the ``firmware_bridge.trace`` logger at DEBUG;
when off, no formatting happens at all.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time

import serial

from ..errors import (
    BoardConnectionError,
    BoardProtocolError,
    BoardRefused,
    BoardTimeout,
    ImageRejected,
)
from . import protocol
from .protocol import ErrorCode, FrameError, MsgType

DEFAULT_TIMEOUT_S = 2.0  # per attempt, for short requests; longer ones add the two below
COMPUTE_TIMEOUT_PER_IMAGE_S = 0.05  # per inference or training step of a request (slow boards)
BITS_PER_BYTE_ON_THE_LINE = 10  # 8N1 UART framing: time to move the request and the reply
DEFAULT_RETRIES = 3
READ_SLICE_S = 0.05  # one blocking read waits at most this long
# A write may take the attempt's timeout plus its bytes at this rate (about 9600 baud); longer
# means the board stopped taking bytes (hung, or blocked sending to a host that is writing).
SLOWEST_LINK_BYTES_PER_S = 960
DEFAULT_BAUDRATE = 115200  # meaningless on a pty; real UARTs use it
INFER_BATCH_BYTES_PER_RESULT = 400  # reply size guess for batch sizing (the board refuses overflows)

_IMAGE_CODES = {
    ErrorCode.IMAGE_TOO_LARGE,
    ErrorCode.IMAGE_CRC,
    ErrorCode.IMAGE_INCOMPLETE,
    ErrorCode.IMAGE_FORMAT,
    ErrorCode.SPEC_MISMATCH,
    ErrorCode.CAPACITY,
}
_FRAME_FAULT_CODES = {ErrorCode.BAD_FRAME, ErrorCode.BAD_CRC, ErrorCode.OVERSIZE, ErrorCode.TRUNCATED}

trace_log = logging.getLogger("firmware_bridge.trace")


def open_port(url: str, baudrate: int = DEFAULT_BAUDRATE):
    """Open ``url`` (any pyserial URL) for this client alone: a serial device or pty is locked
    exclusively (``flock``), so a second client on the same port is refused at once with "port
    in use" instead of both failing later on each other's replies."""
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=READ_SLICE_S, exclusive=True)
    except serial.SerialException as exc:
        if "exclusively lock" in str(exc):
            raise BoardConnectionError(
                f"{url}: port in use: another program (another popcount-learn board command?) has it open"
            ) from None
        raise BoardConnectionError(f"cannot open {url}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise BoardConnectionError(f"cannot open {url}: {exc}") from None


def _describe_error(code: int, a: int, b: int) -> str:
    try:
        name = ErrorCode(code).name
    except ValueError:
        return f"unknown error code {code} ({a}, {b})"
    texts = {
        ErrorCode.BAD_CRC: f"frame CRC 0x{a & 0xFFFFFFFF:08x} != computed 0x{b & 0xFFFFFFFF:08x}",
        ErrorCode.BAD_VERSION: f"protocol version {a}, board speaks {b}",
        ErrorCode.UNKNOWN_TYPE: f"message type 0x{a:02x} unknown",
        ErrorCode.BAD_LENGTH: f"payload of {a} bytes, expected {b}",
        ErrorCode.OVERSIZE: f"frame over the board's payload limit of {a} bytes",
        ErrorCode.TRUNCATED: f"frame cut off after {a} encoded bytes",
        ErrorCode.BAD_FRAME: f"undecodable frame (decoded length {a})",
        ErrorCode.NO_IMAGE: "no weight image loaded",
        ErrorCode.NOT_LOADING: "no image load in progress",
        ErrorCode.BAD_OFFSET: f"chunk offset {a}, expected {b}",
        ErrorCode.IMAGE_TOO_LARGE: f"image of {a} bytes exceeds {b}",
        ErrorCode.IMAGE_CRC: (
            f"image CRC-32 announced 0x{a & 0xFFFFFFFF:08x}, received bytes give 0x{b & 0xFFFFFFFF:08x}"
        ),
        ErrorCode.IMAGE_INCOMPLETE: f"image incomplete: {a} of {b} bytes received",
        ErrorCode.IMAGE_FORMAT: f"image stream malformed at byte {a} (value {b})",
        ErrorCode.SPEC_MISMATCH: f"spec field {a} is {b} in the image",
        ErrorCode.CAPACITY: f"{a} exceeds the board's limit {b}",
        ErrorCode.BAD_ARGUMENT: f"argument {a} has bad value {b}",
        ErrorCode.REPLY_TOO_LARGE: f"the whole reply needs {a} payload bytes, the board's limit is {b}",
        ErrorCode.NO_LEARNING: "firmware built without a learning rule",
    }
    return f"{name}: {texts.get(code, f'({a}, {b})')}"


def _message_type(value: int):
    """A MsgType, or a plain int with a ``name`` for types this host does not know (tests)."""
    try:
        return MsgType(value)
    except ValueError:
        return _UnknownType(value)


class _UnknownType(int):
    @property
    def name(self) -> str:
        return f"type 0x{int(self):02x}"


class BoardClient:
    """Request/reply client; methods return decoded replies or raise a BoardError subclass.

    url: any pyserial URL. timeout_s: wait per attempt (long requests scale it). retries:
    resends of one request. trace: log frames as hex (logger ``firmware_bridge.trace``).
    port: an already open serial-like object instead of ``url`` (tests).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        trace: bool = False,
        baudrate: int = DEFAULT_BAUDRATE,
        port=None,
        first_seq: int | None = None,
    ) -> None:
        if port is None:
            port = open_port(url, baudrate)
        else:
            port.timeout = READ_SLICE_S
        self.url = url
        self._port = port
        self.baudrate = getattr(port, "baudrate", None) or baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._trace = bool(trace)
        self._decoder = protocol.FrameDecoder()
        # A random start keeps a new client's first seq apart from the board's kept last one.
        self._seq = first_seq if first_seq is not None else random.randrange(0, protocol.NO_SEQ)
        self._info = None
        self.stats = {"requests": 0, "resends": 0, "frame_faults": 0, "stale": 0, "tx_bytes": 0, "rx_bytes": 0}
        with contextlib.suppress(serial.SerialException, OSError, AttributeError):
            self._port.reset_input_buffer()

    # -- the command loop ------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % protocol.NO_SEQ  # NO_SEQ itself is never used
        return self._seq

    def _write(self, data: bytes) -> None:
        limit_s = round(self.timeout_s + len(data) / SLOWEST_LINK_BYTES_PER_S, 1)
        try:
            if getattr(self._port, "write_timeout", limit_s) != limit_s:
                self._port.write_timeout = limit_s  # reconfigures the port: only when it changes
            self._port.write(data)
        except serial.SerialTimeoutException:
            raise BoardTimeout(
                f"{self.url}: the board took no more bytes for {limit_s:g} s (it stopped reading)"
            ) from None
        except (serial.SerialException, OSError) as exc:
            raise BoardConnectionError(f"{self.url}: write failed: {exc}") from None
        self.stats["tx_bytes"] += len(data)

    def _read(self) -> bytes:
        try:
            waiting = self._port.in_waiting
            return self._port.read(waiting or 1)
        except (serial.SerialException, OSError) as exc:
            raise BoardConnectionError(f"{self.url}: read failed: {exc}") from None

    def request(
        self,
        msg_type: int,
        payload: bytes = b"",
        *,
        timeout_s: float | None = None,
        reply_bytes: int = 0,
        images: int = 0,
    ) -> bytes:
        """Send one request and return the reply payload; BoardRefused on an error reply.

        Each attempt waits ``timeout_s`` (default ``self.timeout_s``) plus the line time of the
        request and of ``reply_bytes`` at the port's baud rate, plus ``images`` x
        COMPUTE_TIMEOUT_PER_IMAGE_S.
        """
        msg_type = _message_type(msg_type)
        if self._info is not None and len(payload) > self._info.max_payload_bytes:
            # Resending cannot help a request the board's buffer cannot hold: refuse it here.
            raise BoardRefused(
                f"board refused {msg_type.name}: {_describe_error(ErrorCode.OVERSIZE, self._info.max_payload_bytes, 0)}"
                f" (request payload {len(payload)} bytes)",
                ErrorCode.OVERSIZE,
                self._info.max_payload_bytes,
                len(payload),
            )
        seq = self._next_seq()
        frame = protocol.encode_frame(msg_type, seq, payload)
        wait_s = (
            (self.timeout_s if timeout_s is None else timeout_s)
            + (len(frame) + reply_bytes) * BITS_PER_BYTE_ON_THE_LINE / self.baudrate
            + images * COMPUTE_TIMEOUT_PER_IMAGE_S
        )
        self.stats["requests"] += 1
        heard = dict.fromkeys(("echoes", "other", "faults"), 0)
        t0 = time.monotonic()
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["resends"] += 1
            if self._trace:
                trace_log.debug("tx %s seq=%d try=%d %s", msg_type.name, seq, attempt, frame.hex(" "))
            # A leading delimiter ends whatever garbage the board may hold.
            self._write(b"\x00" + frame)
            reply = self._await_reply(msg_type, seq, time.monotonic() + wait_s, len(payload), heard)
            if reply is not None:
                return reply
        raise BoardTimeout(self._no_reply(msg_type, seq, wait_s, time.monotonic() - t0, heard))

    def _no_reply(self, msg_type, seq: int, wait_s: float, waited_s: float, heard: dict) -> str:
        """What a timeout waited for and what came instead (a loopback echoes the request)."""
        attempts = self.retries + 1
        text = (
            f"{self.url}: no reply to {msg_type.name}: waited {waited_s:.1f} s ({attempts} attempt(s) of "
            f"{wait_s:.1f} s) for a reply frame with seq {seq}"
        )
        if heard["echoes"] and not heard["other"]:
            return text + "; only the request itself came back (a loopback such as loop://, not a board?)"
        if heard["other"] or heard["faults"]:
            return text + f"; got {heard['other']} other frame(s) and {heard['faults']} undecodable one(s) instead"
        return text + "; nothing came back (is a board running the firmware on this port?)"

    def _await_reply(self, msg_type, seq: int, deadline: float, payload_len: int, heard=None) -> bytes | None:
        """The reply payload, or None to resend (deadline passed or the board saw a bad frame).

        An OVERSIZE report whose limit is below this request's payload is about this request
        (a resend would be refused again): it raises BoardRefused at once.
        """
        heard = heard if heard is not None else dict.fromkeys(("echoes", "other", "faults"), 0)
        while time.monotonic() < deadline:
            data = self._read()
            if not data:
                continue
            self.stats["rx_bytes"] += len(data)
            for item in self._decoder.feed(data):
                if isinstance(item, protocol.VersionMismatch):
                    raise BoardProtocolError(
                        f"{self.url}: the board speaks protocol version {item.version}, this host version "
                        f"{protocol.PROTOCOL_VERSION}; rebuild its firmware from this release (board virtual and "
                        "board qemu build it from the checkout)"
                    )
                if isinstance(item, FrameError):
                    heard["faults"] += 1
                    self.stats["frame_faults"] += 1
                    if self._trace:
                        trace_log.debug("rx noise: %s", item)
                    continue
                if self._trace:
                    trace_log.debug("rx type=0x%02x seq=%d %s", item.msg_type, item.seq, item.payload.hex(" "))
                if item.msg_type == MsgType.ERROR and item.seq == protocol.NO_SEQ:
                    # The board received a damaged frame: perhaps ours. Resending is safe.
                    code, a, b = protocol.decode_error(item.payload)
                    if code == ErrorCode.OVERSIZE and a < payload_len:
                        raise BoardRefused(
                            f"board refused {msg_type.name}: {_describe_error(code, a, b)} "
                            f"(request payload {payload_len} bytes)",
                            code,
                            a,
                            payload_len,
                        )
                    if code in _FRAME_FAULT_CODES:
                        self.stats["frame_faults"] += 1
                        return None
                    continue
                if item.seq != seq or (not item.msg_type & protocol.REPLY and item.msg_type != MsgType.ERROR):
                    self.stats["stale"] += 1  # an old reply, or the echo of a request
                    echo = item.seq == seq and item.msg_type == msg_type
                    heard["echoes" if echo else "other"] += 1
                    continue
                if item.msg_type == MsgType.ERROR:
                    self._raise_error(msg_type, item.payload)
                if item.msg_type != msg_type | protocol.REPLY:
                    raise BoardProtocolError(
                        f"{self.url}: reply type 0x{item.msg_type:02x} to {msg_type.name} (seq {seq})"
                    )
                return item.payload
        return None

    def _raise_error(self, msg_type, payload: bytes):
        try:
            code, a, b = protocol.decode_error(payload)
        except FrameError as exc:
            raise BoardProtocolError(f"{self.url}: {exc}") from None
        cls = ImageRejected if code in _IMAGE_CODES else BoardRefused
        raise cls(f"board refused {msg_type.name}: {_describe_error(code, a, b)}", code, a, b)

    def _decoded(self, decode, payload: bytes):
        try:
            return decode(payload)
        except FrameError as exc:
            raise BoardProtocolError(f"{self.url}: {exc}") from None

    # -- messages ----------------------------------------------------------------------------

    def info(self) -> protocol.BoardInfo:
        self._info = self._decoded(protocol.decode_info_reply, self.request(MsgType.INFO))
        if self._info.protocol_version != protocol.PROTOCOL_VERSION:
            raise BoardProtocolError(
                f"{self.url}: board speaks protocol {self._info.protocol_version}, "
                f"this host {protocol.PROTOCOL_VERSION}"
            )
        return self._info

    def _board_info(self) -> protocol.BoardInfo:
        return self._info or self.info()

    def reset(self) -> None:
        self.request(MsgType.RESET)
        self._info = None

    def load_image(self, stream: bytes, crc32: int, *, progress=None) -> int:
        """Upload an image stream in chunks and commit; returns the board's CRC-32 of it."""
        info = self._board_info()
        chunk = protocol.load_chunk_capacity(info.max_payload_bytes)
        self.request(MsgType.LOAD_BEGIN, protocol.encode_load_begin(len(stream), crc32))
        if progress is not None:
            progress.start(total=len(stream), desc="upload")
        for offset in range(0, len(stream), chunk):
            part = stream[offset : offset + chunk]
            reply = self.request(MsgType.LOAD_CHUNK, protocol.encode_load_chunk(offset, part))
            if self._decoded(protocol.decode_u32, reply) != offset + len(part):
                raise BoardProtocolError(f"{self.url}: LOAD_CHUNK acknowledged the wrong length")
            if progress is not None:
                progress.update(len(part))
        if progress is not None:
            progress.close()
        board_crc = self._decoded(protocol.decode_u32, self.request(MsgType.LOAD_COMMIT))
        self._info = None  # image state changed
        return board_crc

    def read_image(self, n_bytes: int) -> bytes:
        """The first ``n_bytes`` of the board's weight memory (the committed image stream)."""
        info = self._board_info()
        step = info.max_payload_bytes - 4
        parts = []
        for offset in range(0, n_bytes, step):
            length = min(step, n_bytes - offset)
            reply = self.request(MsgType.READ_IMAGE, protocol.encode_read_image(offset, length), reply_bytes=length)
            parts.append(self._decoded(lambda p, o=offset, n=length: protocol.decode_read_image(p, o, n), reply))
        return b"".join(parts)

    def infer(self, inputs) -> protocol.BoardResult:
        """One inference; ``inputs``: ``protocol.Inputs``, or ``bytes`` = a step-0 bit vector."""
        reply = self.request(MsgType.INFER, protocol.encode_infer(inputs), images=1)
        return self._decoded(protocol.decode_infer_reply, reply)

    def infer_batch(self, bit_vectors: list, *, timeout_s: float | None = None) -> list[protocol.BoardResult]:
        """Several inferences in one round trip (keep the batch small enough for one reply); each
        input as ``infer`` takes it, all of one form."""
        payload = protocol.encode_infer_batch(bit_vectors)
        reply = self.request(
            MsgType.INFER_BATCH,
            payload,
            timeout_s=timeout_s,
            images=len(bit_vectors),
            reply_bytes=len(bit_vectors) * INFER_BATCH_BYTES_PER_RESULT,
        )
        results = self._decoded(protocol.decode_infer_batch_reply, reply)
        if len(results) != len(bit_vectors):
            raise BoardProtocolError(f"{self.url}: {len(results)} results for {len(bit_vectors)} inputs")
        return results

    def batch_size_hint(self, n_input_bytes: int) -> int:
        """How many inputs per INFER_BATCH fit the board's payload limit (request and reply)."""
        limit = self._board_info().max_payload_bytes
        return max(1, min(limit // max(1, n_input_bytes), limit // INFER_BATCH_BYTES_PER_RESULT, 0xFFFF))

    def train_step(self, sample_index: int, label: int, inputs) -> protocol.TrainStepReply:
        """One step of the board's learning rule on one input (sample index ``t``, label);
        ``inputs`` as ``infer`` takes them."""
        reply = self.request(MsgType.TRAIN_STEP, protocol.encode_train_step(sample_index, label, inputs), images=1)
        return self._decoded(protocol.decode_train_reply, reply)

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()

    def __enter__(self) -> BoardClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
