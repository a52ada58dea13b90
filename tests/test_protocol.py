"""The wire format (firmware_bridge.wire.protocol): golden vectors, round trips, damaged input."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.protocol import ErrorCode, Frame, FrameDecoder, FrameError, MsgType
from popcount_learn import codegen
from popcount_learn.datapath import OVERFLOW_CODES, TIE_CODES, DatapathConfig
from popcount_learn.weight_image import UPLOAD_SPEC_FIELDS, stream_spec_codes

GOLDEN = Path(__file__).resolve().parents[1] / "firmware_bridge" / "wire" / "golden_frames.txt"


def golden_vectors():
    out = []
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, type_hex, seq, payload_hex, frame_hex = line.split()
        payload = b"" if payload_hex == "-" else bytes.fromhex(payload_hex)
        out.append((name, int(type_hex, 16), int(seq), payload, bytes.fromhex(frame_hex)))
    return out


def test_golden_vectors_encode_and_decode():
    vectors = golden_vectors()
    assert len(vectors) >= 8
    for name, msg_type, seq, payload, frame in vectors:
        assert p.encode_frame(msg_type, seq, payload) == frame, name
        assert p.decode_frame(frame[:-1]) == Frame(msg_type, seq, payload), name
    names = {v[0] for v in vectors}
    assert {"run_254", "run_254_then_zero", "error_no_seq"} <= names  # the COBS edge cases are covered


def test_one_golden_frame_spelled_out():
    # INFO, seq 0, no payload: header 02 01 0000 00000000 (version 2), CRC-32 of the header, COBS, 00.
    header = bytes([2, 1, 0, 0, 0, 0, 0, 0])
    raw = header + struct.pack("<I", zlib.crc32(header))
    assert raw[-4:] == bytes.fromhex("a0d37081")
    # COBS: [02 01] ends at the first zero (code 03), the other five zeros end empty blocks (01).
    expected = bytes([3, 2, 1] + [1] * 5 + [5]) + raw[-4:] + b"\x00"
    assert p.encode_frame(MsgType.INFO, 0, b"") == expected
    assert golden_vectors()[0][4] == expected


def slow_cobs_encode(data: bytes) -> bytes:
    """The obvious byte-at-a-time COBS encoder, as a reference for the fast one."""
    out, block = bytearray(), bytearray()
    for byte in data:
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out += b"\xff" + block
                block.clear()
    return bytes(out + bytes([len(block) + 1]) + block)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"\x00", b"\x01", b"\xff", b"\x07" * 253, b"\x08" * 254, b"\x09" * 255]), max_size=8)
    | st.binary(max_size=1200).map(lambda b: [b])
)
def test_cobs_encoder_agrees_with_the_byte_at_a_time_reference(parts):
    data = b"".join(parts)
    assert p.cobs_encode(data) == slow_cobs_encode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero(data):
    enc = p.cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= p.max_encoded_bytes(len(data))
    assert p.cobs_decode(enc) == data


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=3000), st.data())
def test_frames_survive_any_chunking(msg_type, seq, payload, data):
    stream = p.encode_frame(msg_type, seq, payload) * 2
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    dec = FrameDecoder()
    items = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        items += dec.feed(stream[a:b])
    assert items == [Frame(msg_type, seq, payload)] * 2


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.binary(max_size=200))
def test_garbage_before_a_frame_is_reported_and_the_frame_recovered(garbage, payload):
    frame = p.encode_frame(MsgType.INFER, 7, payload)
    items = FrameDecoder().feed(garbage + b"\x00" + frame)
    assert items[-1] == Frame(MsgType.INFER, 7, payload)
    assert all(isinstance(i, FrameError) for i in items[:-1])
    # garbage that is not delimited swallows the next frame: one error, never a wrong frame
    joined = FrameDecoder().feed(garbage.replace(b"\x00", b"\x01") + frame)
    assert len(joined) == 1 and (isinstance(joined[0], FrameError) or joined[0].payload == payload)


def test_truncated_frame_then_delimiter_then_frame():
    frame = p.encode_frame(MsgType.INFO, 3, b"abc")
    items = FrameDecoder().feed(frame[:5] + b"\x00" + frame)
    assert isinstance(items[0], FrameError) and items[1] == Frame(MsgType.INFO, 3, b"abc")
    assert FrameDecoder().feed(frame[:-1]) == []  # no delimiter yet: nothing to say


@pytest.mark.parametrize("position", [0, 3, 8, -3])
def test_any_flipped_byte_is_refused(position):
    raw = p.cobs_decode(p.encode_frame(MsgType.LOAD_CHUNK, 1234, b"\x00payload\x00")[:-1])
    bad = bytearray(raw)
    bad[position] ^= 0x40
    with pytest.raises(FrameError):
        p.decode_frame(p.cobs_encode(bytes(bad)))


def test_bad_crc_message_and_wrong_length_and_version():
    body = p.HEADER.pack(p.PROTOCOL_VERSION, 1, 2, 3) + b"xyz"
    with pytest.raises(FrameError, match="CRC"):
        p.decode_frame(p.cobs_encode(body + b"\0\0\0\0"))
    body = p.HEADER.pack(p.PROTOCOL_VERSION, 1, 2, 4) + b"xyz"  # says 4, holds 3
    with pytest.raises(FrameError, match="payload bytes"):
        p.decode_frame(p.cobs_encode(body + struct.pack("<I", zlib.crc32(body))))
    body = p.HEADER.pack(9, 1, 2, 0)
    with pytest.raises(FrameError, match="version 9"):
        p.decode_frame(p.cobs_encode(body + struct.pack("<I", zlib.crc32(body))))
    with pytest.raises(FrameError, match="shorter"):
        p.decode_frame(p.cobs_encode(b"\x01\x02"))


@pytest.mark.parametrize("fill", [0x00, 0x55], ids=["zero-bytes", "no-zero-bytes"])
def test_a_payload_one_byte_over_the_limit_is_no_frame(fill):
    payload = bytes([fill]) * (p.MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(FrameError, match="exceeds the protocol limit"):
        p.encode_frame(MsgType.INFO, 1, payload)
    body = p.HEADER.pack(p.PROTOCOL_VERSION, MsgType.INFO, 1, len(payload)) + payload
    encoded = p.cobs_encode(body + p.CRC.pack(zlib.crc32(body)))
    with pytest.raises(FrameError, match="exceeds the protocol limit"):
        p.decode_frame(encoded)
    items = FrameDecoder().feed(encoded + b"\x00")
    assert len(items) == 1 and isinstance(items[0], FrameError)
    at_limit = p.encode_frame(MsgType.INFO, 1, payload[:-1])
    assert FrameDecoder().feed(at_limit) == [Frame(MsgType.INFO, 1, payload[:-1])]


def test_oversize_is_dropped_up_to_the_delimiter():
    dec = FrameDecoder(max_payload_bytes=64)
    frame = p.encode_frame(MsgType.INFO, 1, b"")
    items = dec.feed(b"\x55" * 500) + dec.feed(b"\x55" * 500 + b"\x00" + frame)
    assert isinstance(items[0], FrameError) and "longer" in str(items[0])
    assert items[1] == Frame(MsgType.INFO, 1, b"")
    assert dec.pending_bytes == 0
    with pytest.raises(FrameError):
        p.encode_frame(MsgType.INFO, 1, bytes(p.MAX_PAYLOAD_BYTES + 1))


@st.composite
def board_results(draw):
    n_layers = draw(st.integers(1, 4))
    idx, steps = [], []
    for _ in range(n_layers):
        k = draw(st.integers(0, 20))
        idx.append(np.array(draw(st.lists(st.integers(0, 65535), min_size=k, max_size=k)), np.int64))
        steps.append(np.array(draw(st.lists(st.integers(0, 2**31 - 1), min_size=k, max_size=k)), np.int32))
    return p.BoardResult(
        predicted=draw(st.integers(-1, 1000)),
        first_output_step=draw(st.integers(-1, 2**20)),
        tie=draw(st.booleans()),
        synaptic_additions=draw(st.integers(0, 2**32 - 1)),
        rows_read=tuple(draw(st.lists(st.integers(0, 2**32 - 1), min_size=n_layers, max_size=n_layers))),
        spike_index=tuple(idx),
        spike_step=tuple(steps),
    )


def _same_result(a, b):
    assert (a.predicted, a.first_output_step, a.tie, a.synaptic_additions, a.rows_read) == (
        b.predicted,
        b.first_output_step,
        b.tie,
        b.synaptic_additions,
        b.rows_read,
    )
    for x, y in zip(a.spike_index, b.spike_index, strict=True):
        assert np.array_equal(x, y)
    for x, y in zip(a.spike_step, b.spike_step, strict=True):
        assert np.array_equal(x, y)


@settings(max_examples=100, deadline=None)
@given(st.lists(board_results(), min_size=1, max_size=4))
def test_result_and_batch_round_trip(results):
    _same_result(p.decode_infer_reply(p.encode_result(results[0])), results[0])
    batch = struct.pack("<H", len(results)) + b"".join(p.encode_result(r) for r in results)
    for a, b in zip(p.decode_infer_batch_reply(batch), results, strict=True):
        _same_result(a, b)
    with pytest.raises(FrameError):
        p.decode_infer_reply(p.encode_result(results[0]) + b"\x00")
    with pytest.raises(FrameError):
        p.decode_infer_batch_reply(batch[:-1] if len(batch) > 2 else b"\x01")


def test_info_round_trip_and_truncation():
    info = p.BoardInfo(
        1,
        "0.1.0",
        "host",
        65536,
        1 << 20,
        2048,
        8,
        (6, 8, 6, 24, 24, 0, 0, 128, -1, 512, 0),
        True,
        0xDEADBEEF,
        636090,
        (8, 1024, 1024, 0, 0xFFFFFFFF, 0, 1),
    )
    payload = p.encode_info_reply(info)
    assert p.decode_info_reply(payload) == info
    for cut in (3, len(payload) - 1):
        with pytest.raises(FrameError):
            p.decode_info_reply(payload[:cut])


def test_the_document_states_every_error_code_and_its_numbers():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    table = doc[doc.index("## Error codes") : doc.index("## The firmware")]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows[cells[1]] = (int(cells[0]), cells[2], cells[3])
    assert {name: row[0] for name, row in rows.items()} == {e.name: int(e) for e in ErrorCode}
    golden = {v[0] for v in golden_vectors()}
    frame_level = {"BAD_FRAME", "BAD_CRC", "OVERSIZE", "TRUNCATED"}
    for name in frame_level | {"BAD_LENGTH", "REPLY_TOO_LARGE", "NO_IMAGE", "UNKNOWN_TYPE", "BAD_VERSION"}:
        assert any(g.startswith("error_" + name.lower()) for g in golden), name


def test_c_header_carries_every_message_and_error_code():
    text = codegen.c_header("pcl_protocol.h", p.header_constants(), source="test")
    for m in MsgType:
        assert f"#define PCL_MSG_{m.name} {int(m)}\n" in text
    for e in ErrorCode:
        assert f"#define PCL_ERR_{e.name} {int(e)}\n" in text
    assert len({int(m) for m in MsgType}) == len(MsgType)
    assert all(int(m) & p.REPLY == 0 for m in MsgType)  # a reply type never collides with a request


def test_stream_enum_codes_are_the_fixed_datapath_codes():
    # The codes are part of the upload stream format (and the CRC of every shipped image): fixed.
    assert OVERFLOW_CODES == {"saturate": 0, "wrap": 1} and TIE_CODES == {"max_membrane": 0, "lowest_index": 1}
    spec = DatapathConfig(current_overflow="wrap", membrane_overflow="saturate", tie_rule="lowest_index")
    codes = dict(zip(UPLOAD_SPEC_FIELDS, stream_spec_codes(spec), strict=True))
    assert (codes["current_overflow"], codes["membrane_overflow"], codes["tie_rule"]) == (1, 0, 1)
    assert DatapathConfig.from_codes(stream_spec_codes(spec), UPLOAD_SPEC_FIELDS) == spec


def test_input_bits_are_lsb_first():
    assert p.input_bits([True] + [False] * 7 + [False, True]) == bytes([0x01, 0x02])


def test_learning_codes_round_trip():
    from popcount_learn.learning import LearningConfig

    for cfg in (
        LearningConfig(),
        LearningConfig(
            seed=2**32 - 1,
            output_rule="all_violators",
            correct_rule="always",
            margin_steps=65536,
            prob_halving_samples=0,
        ),
    ):
        assert LearningConfig.from_codes(cfg.to_codes()) == cfg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decoder_never_raises_on_arbitrary_bytes(data):
    for item in FrameDecoder(max_payload_bytes=128).feed(data):
        assert isinstance(item, (Frame, FrameError))


def test_inputs_take_the_compact_form_exactly_when_every_step_is_0_or_the_dark_step():
    binary = np.array([[0, -1, 0, -1], [-1, -1, 0, 600]])  # 600 >= max_steps: never arrives
    forms = p.inputs_for(binary, dark_input_step=-1, max_steps=512)
    assert [x.form for x in forms] == [p.InputForm.BITS] * 2 and forms[0].body == bytes([0b0101])
    assert [x.form for x in p.inputs_for(np.array([[0, 3]]), 3, 512)] == [p.InputForm.BITS]
    graded = np.array([[0, -1, 0, -1], [-1, 5, 0, 600]])
    forms = p.inputs_for(graded, dark_input_step=-1, max_steps=512)
    assert [x.form for x in forms] == [p.InputForm.STEPS] * 2  # one form for the whole batch
    assert forms[1].body == bytes.fromhex("ffff05000000ffff")
    assert p.encode_infer_batch(forms)[:3] == bytes([2, 0, p.InputForm.STEPS])
    with pytest.raises(ValueError, match="one input form"):
        p.encode_infer_batch([forms[0], p.Inputs(p.InputForm.BITS, b"\x01")])


@given(
    st.integers(1, 40).flatmap(
        lambda n: st.lists(st.integers(-1, 70_000), min_size=n, max_size=n).map(lambda v: np.array(v, np.int64))
    ),
    st.integers(-1, 300),
)
def test_wire_inputs_round_trip_to_the_steps_that_arrive(steps, dark):
    max_steps = 65_535
    arrive = np.where((steps >= 0) & (steps < max_steps), steps, -1)
    dark_steps = np.where(arrive == -1, -1, arrive)
    if np.any(arrive > p.INPUT_STEP_MAX):
        with pytest.raises(ValueError, match="exceeds"):
            p.inputs_for(steps[None], dark, max_steps)
        return
    (inputs,) = p.inputs_for(steps[None], dark, max_steps)
    got = p.decode_inputs(inputs, len(steps), dark)
    got = np.where((got >= 0) & (got < max_steps), got, -1)
    assert np.array_equal(got, dark_steps)
    assert len(inputs.body) == p.input_body_bytes(inputs.form, len(steps))


def test_request_layouts_of_both_forms():
    bits, steps = p.Inputs(p.InputForm.BITS, b"\x09"), p.step_inputs(np.array([1, -1]), 512)
    assert p.encode_infer(bits) == b"\x00\x09" and p.encode_infer(b"\x09") == b"\x00\x09"
    assert p.encode_infer(steps) == bytes.fromhex("010100ffff")
    assert p.encode_train_step(7, 3, steps) == struct.pack("<IHB", 7, 3, 1) + bytes.fromhex("0100ffff")
    assert p.MAX_INPUTS * 2 + 7 <= p.MAX_PAYLOAD_BYTES < (p.MAX_INPUTS + 1) * 2 + 7
    text = codegen.c_header("pcl_protocol.h", p.header_constants(), source="test")
    for name, value in [
        ("INPUT_FORM_BITS", 0),
        ("INPUT_FORM_STEPS", 1),
        ("PROTO_INPUT_STEP_NEVER", 0xFFFF),
        ("PROTO_INPUT_STEP_MAX", 0xFFFE),
        ("PROTO_MAX_INPUTS", p.MAX_INPUTS),
        ("PROTO_TRAIN_HEAD_BYTES", 6),
    ]:
        assert f"#define PCL_{name} {value}\n" in text
