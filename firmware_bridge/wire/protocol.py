"""The wire format between host and board: the only module that knows it (docs/protocol.md).

A **frame** is ``COBS(raw) + 00``. ``raw`` is an 8-byte header, the payload and a CRC-32::

    raw = version u8 | type u8 | seq u16 | payload_len u32 | payload | crc32 u32   (little-endian)

The CRC-32 is zlib's (IEEE 802.3) over header + payload. COBS removes every zero byte from
``raw``, so 00 only ever ends a frame: a receiver that lost sync drops bytes up to the next 00.
Empty frames (00 00) are ignored, so a sender may start with 00 to end any garbage.

A reply carries the request's ``seq`` and type ``request | REPLY``, or ``ERROR`` with an error
code. Faults in a frame whose sequence number cannot be trusted (bad COBS, bad CRC, oversize,
truncated) are answered with ``ERROR`` and ``seq = NO_SEQ``.

The firmware takes its copy of these constants from ``header_constants()`` (rendered into
``pcl_protocol.h`` by ``popcount_learn.codegen`` at build time).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from popcount_learn.codegen import Constant

# Version 2 (issue 14): INFER, INFER_BATCH and TRAIN_STEP carry an input form byte before the
# inputs, so that graded (per-input step) inputs travel besides the step-0 bit vector.
PROTOCOL_VERSION = 2
HEADER = struct.Struct("<BBHI")  # version, type, seq, payload_len
CRC = struct.Struct("<I")
FRAME_OVERHEAD_BYTES = HEADER.size + CRC.size
# Ceiling of the protocol; a board reports its own (possibly smaller) limit in INFO.
MAX_PAYLOAD_BYTES = 65536
NO_SEQ = 0xFFFF  # seq of an error reply to a frame whose seq could not be trusted
REPLY = 0x80  # reply type = request type | REPLY


class MsgType(enum.IntEnum):
    INFO = 0x01
    RESET = 0x02
    LOAD_BEGIN = 0x10
    LOAD_CHUNK = 0x11
    LOAD_COMMIT = 0x12
    READ_IMAGE = 0x13
    INFER = 0x20
    INFER_BATCH = 0x21
    TRAIN_STEP = 0x30
    ERROR = 0x7F


class ErrorCode(enum.IntEnum):
    """Error reply codes; ``a`` and ``b`` of the reply carry the details named here."""

    BAD_FRAME = 1  # COBS invalid or frame shorter than header + CRC
    BAD_CRC = 2  # a = received CRC, b = computed CRC
    OVERSIZE = 3  # frame longer than the board's buffer; a = limit (payload bytes)
    TRUNCATED = 4  # no delimiter within the frame gap timeout; a = bytes received
    BAD_VERSION = 5  # a = version received, b = version spoken
    UNKNOWN_TYPE = 6  # a = type received
    BAD_LENGTH = 7  # payload length wrong for the message; a = received, b = expected
    NO_IMAGE = 8  # no committed weight image
    NOT_LOADING = 9  # LOAD_CHUNK / LOAD_COMMIT without LOAD_BEGIN
    BAD_OFFSET = 10  # a = offset received, b = offset expected
    IMAGE_TOO_LARGE = 11  # a = bytes, b = capacity
    IMAGE_CRC = 12  # a = CRC announced, b = CRC of the bytes received
    IMAGE_INCOMPLETE = 13  # a = bytes received, b = bytes announced
    IMAGE_FORMAT = 14  # bad magic / stream version / shape; a = byte offset of the fault, b = value
    SPEC_MISMATCH = 15  # a = spec field index (stream order), b = the image's value
    CAPACITY = 16  # too many layers or neurons, or accumulator too wide; a = value, b = limit
    BAD_ARGUMENT = 17  # a = argument index, b = value
    REPLY_TOO_LARGE = 18  # a = reply bytes needed, b = limit
    NO_LEARNING = 19  # firmware built without a learning rule


# -- COBS -------------------------------------------------------------------------------------


class FrameError(ValueError):
    """A frame that cannot be decoded (the client turns these into resynchronisation)."""


class VersionMismatch(FrameError):
    """An intact frame (its CRC holds) of another protocol version: a board built from another
    release, which no resending can fix (the client says so at once)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"protocol version {version}, expected {PROTOCOL_VERSION}")
        self.version = version


def cobs_encode(data: bytes) -> bytes:
    """Consistent-overhead byte stuffing: the output has no 00 byte; 1 byte per 254 extra.

    Each zero-free run between zeros becomes blocks ``code | bytes``: a full run of 254 is code
    FF (no zero implied), a shorter tail ``len + 1`` (a zero implied, except at the very end).
    """
    out = bytearray()
    for run in bytes(data).split(b"\x00"):
        view = memoryview(run)
        while len(view) >= 254:
            out.append(255)
            out += view[:254]
            view = view[254:]
        out.append(len(view) + 1)
        out += view
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise FrameError("COBS: block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError("COBS: zero byte inside a frame")
        out += block
        i = end
        if code < 255 and i < n:
            out.append(0)
    return bytes(out)


def max_encoded_bytes(payload_bytes: int) -> int:
    """Longest COBS-encoded frame (without delimiter) for a payload of ``payload_bytes``."""
    raw = FRAME_OVERHEAD_BYTES + payload_bytes
    return raw + raw // 254 + 1


# -- frames -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    msg_type: int
    seq: int
    payload: bytes


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """``COBS(header | payload | crc32) + 00``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the protocol limit {MAX_PAYLOAD_BYTES}")
    body = HEADER.pack(PROTOCOL_VERSION, msg_type, seq, len(payload)) + bytes(payload)
    return cobs_encode(body + CRC.pack(zlib.crc32(body) & 0xFFFFFFFF)) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """One frame without its delimiter -> Frame; FrameError says what is wrong."""
    raw = cobs_decode(encoded)
    if len(raw) < FRAME_OVERHEAD_BYTES:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than header + CRC")
    body, (crc,) = raw[:-4], CRC.unpack(raw[-4:])
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise FrameError(f"CRC mismatch: frame says 0x{crc:08x}, bytes give 0x{zlib.crc32(body) & 0xFFFFFFFF:08x}")
    version, msg_type, seq, length = HEADER.unpack(body[: HEADER.size])
    if version != PROTOCOL_VERSION:
        raise VersionMismatch(version)
    if length != len(body) - HEADER.size:
        raise FrameError(f"header says {length} payload bytes, frame holds {len(body) - HEADER.size}")
    if length > MAX_PAYLOAD_BYTES:  # a payload with zero bytes encodes short enough to get this far
        raise FrameError(f"payload of {length} bytes exceeds the protocol limit {MAX_PAYLOAD_BYTES}")
    return Frame(msg_type, seq, body[HEADER.size :])


class FrameDecoder:
    """Splits a byte stream at 00 delimiters; ``feed`` returns Frames and FrameErrors in order.

    Bytes beyond ``max_payload_bytes`` worth of frame are dropped up to the next delimiter and
    reported as one FrameError, so garbage can never grow the buffer without bound.
    """

    def __init__(self, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self._limit = max_encoded_bytes(max_payload_bytes)
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list:
        items = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._buf += chunk
                if len(self._buf) > self._limit:
                    self._overflow = True
                    self._buf.clear()
            if end < 0:
                return items
            if self._overflow:
                items.append(FrameError(f"frame longer than {self._limit} encoded bytes"))
            elif self._buf:
                try:
                    items.append(decode_frame(bytes(self._buf)))
                except FrameError as exc:
                    items.append(exc)
            self._buf.clear()
            self._overflow = False
            start = end + 1

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


# -- messages ---------------------------------------------------------------------------------

_U32 = struct.Struct("<I")
_ERROR = struct.Struct("<Hii")
_LOAD_BEGIN = struct.Struct("<II")  # total bytes, CRC-32 of the stream
_READ_IMAGE = struct.Struct("<II")  # offset, length
_INFO_HEAD = struct.Struct("<HHIIIII")
_INFO_IMAGE = struct.Struct("<BII")
_RESULT_HEAD = struct.Struct("<iiBBI")  # predicted, first_output_step, tie, n_layers, synaptic_additions
_SPIKE = np.dtype([("index", "<u2"), ("step", "<i4")])
_TRAIN_HEAD = struct.Struct("<IH")  # sample index, label
_TRAIN_REPLY = struct.Struct("<iiIII")


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise FrameError(what)


@dataclass(frozen=True)
class BoardInfo:
    """INFO reply: versions, build-time limits, compiled spec, image state, learning spec."""

    protocol_version: int
    firmware_version: str
    board: str
    max_payload_bytes: int
    weight_capacity_bytes: int
    max_neurons: int
    max_layers: int
    spec_codes: tuple[int, ...]  # datapath fields, stream order (weight_image.UPLOAD_SPEC_FIELDS)
    image_loaded: bool
    image_crc32: int
    image_bytes: int
    learning_codes: tuple[int, ...]  # LearningConfig fields in order, rules as codes (empty: no rule)


def encode_info_reply(info: BoardInfo) -> bytes:
    """(Used by the tests' fake boards; the firmware builds the same bytes in C.)"""
    fw, board = info.firmware_version.encode("ascii"), info.board.encode("ascii")
    return b"".join(
        [
            _INFO_HEAD.pack(
                info.protocol_version,
                len(info.spec_codes),
                info.max_payload_bytes,
                info.weight_capacity_bytes,
                info.max_neurons,
                info.max_layers,
                len(info.learning_codes),
            ),
            struct.pack(f"<{len(info.spec_codes)}i", *info.spec_codes),
            struct.pack(f"<{len(info.learning_codes)}I", *info.learning_codes),
            _INFO_IMAGE.pack(int(info.image_loaded), info.image_crc32, info.image_bytes),
            bytes([len(fw)]),
            fw,
            bytes([len(board)]),
            board,
        ]
    )


def decode_info_reply(payload: bytes) -> BoardInfo:
    try:
        pv, n_spec, max_payload, capacity, max_neurons, max_layers, n_learn = _INFO_HEAD.unpack_from(payload, 0)
        off = _INFO_HEAD.size
        spec = struct.unpack_from(f"<{n_spec}i", payload, off)
        off += 4 * n_spec
        learn = struct.unpack_from(f"<{n_learn}I", payload, off)
        off += 4 * n_learn
        loaded, crc, nbytes = _INFO_IMAGE.unpack_from(payload, off)
        off += _INFO_IMAGE.size
        strings = []
        for _ in range(2):
            n = payload[off]
            strings.append(payload[off + 1 : off + 1 + n].decode("ascii"))
            _need(len(strings[-1]) == n, "INFO reply: string runs past the end")
            off += 1 + n
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise FrameError(f"INFO reply malformed ({exc})") from None
    _need(off == len(payload), f"INFO reply has {len(payload) - off} trailing bytes")
    return BoardInfo(
        pv,
        strings[0],
        strings[1],
        max_payload,
        capacity,
        max_neurons,
        max_layers,
        tuple(spec),
        bool(loaded),
        crc,
        nbytes,
        tuple(learn),
    )


def encode_error(code: int, a: int = 0, b: int = 0) -> bytes:
    return _ERROR.pack(code, a, b)


def decode_error(payload: bytes) -> tuple[int, int, int]:
    _need(len(payload) == _ERROR.size, f"ERROR reply of {len(payload)} bytes, expected {_ERROR.size}")
    return _ERROR.unpack(payload)


def encode_load_begin(total_bytes: int, crc32: int) -> bytes:
    return _LOAD_BEGIN.pack(total_bytes, crc32)


def encode_load_chunk(offset: int, data: bytes) -> bytes:
    return _U32.pack(offset) + bytes(data)


def load_chunk_capacity(max_payload_bytes: int) -> int:
    """Image bytes that fit one LOAD_CHUNK of a board with this payload limit."""
    return max_payload_bytes - _U32.size


def decode_u32(payload: bytes) -> int:
    _need(len(payload) == 4, f"expected a 4-byte reply, got {len(payload)} bytes")
    return _U32.unpack(payload)[0]


def encode_read_image(offset: int, length: int) -> bytes:
    return _READ_IMAGE.pack(offset, length)


def decode_read_image(payload: bytes, offset: int, length: int) -> bytes:
    _need(len(payload) == 4 + length, f"READ_IMAGE reply of {len(payload)} bytes, expected {4 + length}")
    _need(_U32.unpack_from(payload)[0] == offset, "READ_IMAGE reply for another offset")
    return payload[4:]


class InputForm(enum.IntEnum):
    """How a request carries its input spikes (one form byte before them).

    BITS: ``ceil(n_in / 8)`` bytes, bit ``i`` (byte ``i // 8``, bit ``i % 8``) set = input ``i``
        spikes at step 0, clear = at the spec's ``dark_input_step`` (never when it is -1).
    STEPS: ``n_in`` x u16, the spike step of input ``i``; ``INPUT_STEP_NEVER`` = no spike.
    """

    BITS = 0
    STEPS = 1


INPUT_STEP_NEVER = 0xFFFF  # STEPS form: the input does not spike
INPUT_STEP_MAX = 0xFFFE  # STEPS form: the latest step a request can carry
_INPUT_STEP = np.dtype("<u2")
_INFER_BATCH_HEAD = struct.Struct("<HB")  # count, input form
# The most inputs one STEPS request can hold within the protocol's payload (TRAIN_STEP, the
# longest head); a board's own payload limit may allow fewer.
MAX_INPUTS = (MAX_PAYLOAD_BYTES - _TRAIN_HEAD.size - 1) // _INPUT_STEP.itemsize


def input_bits(input_spike_at_step0: np.ndarray) -> bytes:
    """Bit vector of the inputs that spike at step 0 (bit i = byte i // 8, bit i % 8)."""
    return np.packbits(np.asarray(input_spike_at_step0, dtype=bool), bitorder="little").tobytes()


@dataclass(frozen=True)
class Inputs:
    """One request's input spikes as they travel: the form and its bytes (``InputForm``)."""

    form: InputForm
    body: bytes


def as_inputs(inputs) -> Inputs:
    """``Inputs`` as they are; bare ``bytes`` are a BITS vector (the compact form)."""
    if isinstance(inputs, Inputs):
        return inputs
    return Inputs(InputForm.BITS, bytes(inputs))


def binary_form_fits(steps: np.ndarray, dark_input_step: int, max_steps: int) -> bool:
    """True when every step of ``steps`` (any shape, -1 = never) is one the BITS form carries:
    0, or the dark step (a step at or beyond ``max_steps`` never arrives, like -1)."""
    steps = np.asarray(steps, dtype=np.int64)
    never = (steps < 0) | (steps >= max_steps)
    if 0 <= dark_input_step < max_steps:
        return bool(np.all((steps == 0) | (steps == dark_input_step)))
    return bool(np.all((steps == 0) | never))


def step_inputs(steps_row: np.ndarray, max_steps: int) -> Inputs:
    """The STEPS form of one input's spike steps (-1 or ``>= max_steps``: never arrives).

    ValueError for a step that arrives but is beyond ``INPUT_STEP_MAX`` (a spec with more than
    65,535 steps)."""
    steps = np.asarray(steps_row, dtype=np.int64).ravel()
    never = (steps < 0) | (steps >= max_steps)
    if np.any(~never & (steps > INPUT_STEP_MAX)):
        raise ValueError(f"input spike step {int(steps[~never].max())} exceeds the protocol's {INPUT_STEP_MAX}")
    if len(steps) > MAX_INPUTS:
        raise ValueError(f"{len(steps)} inputs exceed the protocol's {MAX_INPUTS} per request")
    return Inputs(InputForm.STEPS, np.where(never, INPUT_STEP_NEVER, steps).astype(_INPUT_STEP).tobytes())


def inputs_for(steps: np.ndarray, dark_input_step: int, max_steps: int) -> list[Inputs]:
    """Wire inputs of a batch of spike steps ``(n, n_in)``, one form for all: BITS when every
    image fits it (``binary_form_fits``), else STEPS."""
    steps = np.asarray(steps)
    if binary_form_fits(steps, dark_input_step, max_steps):
        return [Inputs(InputForm.BITS, input_bits(row == 0)) for row in steps]
    return [step_inputs(row, max_steps) for row in steps]


def input_body_bytes(form: int, n_inputs: int) -> int:
    """Bytes of one input of ``n_inputs`` in ``form``."""
    return (n_inputs + 7) // 8 if form == InputForm.BITS else _INPUT_STEP.itemsize * n_inputs


def decode_inputs(inputs, n_inputs: int, dark_input_step: int) -> np.ndarray:
    """Inverse of the encoders: int32 spike steps ``(n_inputs,)``, -1 = never (tests, fakes)."""
    inputs = as_inputs(inputs)
    _need(len(inputs.body) == input_body_bytes(inputs.form, n_inputs), "inputs of the wrong length")
    if inputs.form == InputForm.BITS:
        bits = np.unpackbits(np.frombuffer(inputs.body, np.uint8), bitorder="little")[:n_inputs].astype(bool)
        return np.where(bits, 0, dark_input_step).astype(np.int32)
    raw = np.frombuffer(inputs.body, _INPUT_STEP).astype(np.int32)
    return np.where(raw == INPUT_STEP_NEVER, -1, raw).astype(np.int32)


def _encode_inputs(inputs) -> bytes:
    inputs = as_inputs(inputs)
    return bytes([int(inputs.form)]) + inputs.body


def encode_infer(inputs) -> bytes:
    """INFER payload: form u8, the inputs (``bytes`` alone: a BITS vector)."""
    return _encode_inputs(inputs)


def encode_infer_batch(batch: list) -> bytes:
    """INFER_BATCH payload: count u16, form u8, count x inputs (one form for the whole batch)."""
    items = [as_inputs(x) for x in batch]
    forms = {x.form for x in items}
    if len(forms) > 1:
        raise ValueError("INFER_BATCH carries one input form for the whole batch")
    form = forms.pop() if forms else InputForm.BITS
    return _INFER_BATCH_HEAD.pack(len(items), int(form)) + b"".join(x.body for x in items)


@dataclass(frozen=True)
class BoardResult:
    """One inference as the board reports it (sparse spikes: per layer, neuron index and step)."""

    predicted: int
    first_output_step: int
    tie: bool
    synaptic_additions: int
    rows_read: tuple[int, ...]
    spike_index: tuple[np.ndarray, ...]
    spike_step: tuple[np.ndarray, ...]


def encode_result(r: BoardResult) -> bytes:
    """(Reference encoder for tests; the firmware builds these bytes in C.)"""
    parts = [
        _RESULT_HEAD.pack(r.predicted, r.first_output_step, int(r.tie), len(r.rows_read), r.synaptic_additions),
        struct.pack(f"<{len(r.rows_read)}I", *r.rows_read),
    ]
    for idx, step in zip(r.spike_index, r.spike_step, strict=True):
        spikes = np.empty(len(idx), _SPIKE)
        spikes["index"], spikes["step"] = idx, step
        parts += [_U32.pack(len(idx)), spikes.tobytes()]
    return b"".join(parts)


def decode_result(payload: bytes, offset: int = 0) -> tuple[BoardResult, int]:
    """One inference result starting at ``offset``; returns it and the offset after it."""
    try:
        pred, first, tie, n_layers, syn = _RESULT_HEAD.unpack_from(payload, offset)
        off = offset + _RESULT_HEAD.size
        rows = struct.unpack_from(f"<{n_layers}I", payload, off)
        off += 4 * n_layers
        idx, steps = [], []
        for _ in range(n_layers):
            (count,) = _U32.unpack_from(payload, off)
            off += 4
            _need(off + count * _SPIKE.itemsize <= len(payload), "result: spike list runs past the end")
            spikes = np.frombuffer(payload, _SPIKE, count, off)
            off += count * _SPIKE.itemsize
            idx.append(spikes["index"].astype(np.int64))
            steps.append(spikes["step"].astype(np.int32))
    except struct.error as exc:
        raise FrameError(f"result malformed ({exc})") from None
    return BoardResult(pred, first, bool(tie), syn, tuple(rows), tuple(idx), tuple(steps)), off


def decode_infer_reply(payload: bytes) -> BoardResult:
    result, off = decode_result(payload)
    _need(off == len(payload), f"INFER reply has {len(payload) - off} trailing bytes")
    return result


def decode_infer_batch_reply(payload: bytes) -> list[BoardResult]:
    _need(len(payload) >= 2, "INFER_BATCH reply too short")
    (count,) = struct.unpack_from("<H", payload)
    off, results = 2, []
    for _ in range(count):
        result, off = decode_result(payload, off)
        results.append(result)
    _need(off == len(payload), f"INFER_BATCH reply has {len(payload) - off} trailing bytes")
    return results


def encode_train_step(sample_index: int, label: int, inputs) -> bytes:
    """TRAIN_STEP payload: sample index u32, label u16, form u8, the inputs."""
    return _TRAIN_HEAD.pack(sample_index, label) + _encode_inputs(inputs)


@dataclass(frozen=True)
class TrainStepReply:
    predicted: int
    first_output_step: int
    weights_changed: int
    neurons_with_delta: int
    hidden_spikes_delivered: int


def decode_train_reply(payload: bytes) -> TrainStepReply:
    _need(len(payload) == _TRAIN_REPLY.size, f"TRAIN_STEP reply of {len(payload)} bytes, expected {_TRAIN_REPLY.size}")
    return TrainStepReply(*_TRAIN_REPLY.unpack(payload))


# -- constants for the firmware ----------------------------------------------------------------


def header_constants() -> list[Constant]:
    """The wire constants the firmware is built with (``pcl_protocol.h``, rendered by codegen)."""
    consts = [
        Constant("PROTO_VERSION", PROTOCOL_VERSION),
        Constant("PROTO_HEADER_BYTES", HEADER.size),
        Constant("PROTO_CRC_BYTES", CRC.size),
        Constant("PROTO_MAX_PAYLOAD_BYTES", MAX_PAYLOAD_BYTES),
        Constant("PROTO_NO_SEQ", NO_SEQ),
        Constant("PROTO_REPLY", REPLY),
        Constant("PROTO_ERROR_BYTES", _ERROR.size),
        Constant("PROTO_RESULT_HEAD_BYTES", _RESULT_HEAD.size),
        Constant("PROTO_SPIKE_BYTES", _SPIKE.itemsize),
        Constant("PROTO_TRAIN_HEAD_BYTES", _TRAIN_HEAD.size),
        Constant("PROTO_INPUT_STEP_NEVER", INPUT_STEP_NEVER),
        Constant("PROTO_INPUT_STEP_MAX", INPUT_STEP_MAX),
        Constant("PROTO_MAX_INPUTS", MAX_INPUTS),
    ]
    consts += [Constant(f"INPUT_FORM_{f.name}", int(f)) for f in InputForm]
    consts += [Constant(f"MSG_{m.name}", int(m)) for m in MsgType]
    consts += [Constant(f"ERR_{e.name}", int(e)) for e in ErrorCode]
    return consts
