"""BoardClient without a board: loop:// (every byte written comes back) and scripted ports."""

import logging
import os
import time

import pytest

from firmware_bridge.errors import BoardConnectionError, BoardProtocolError, BoardRefused, BoardTimeout, ImageRejected
from firmware_bridge.wire import client as client_mod
from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.client import BoardClient
from firmware_bridge.wire.protocol import ErrorCode, MsgType


def loop_client(**kw):
    return BoardClient("loop://", first_seq=99, **kw)  # its first request uses seq 100


def test_silence_gives_a_timeout_after_the_retries_in_bounded_time(caplog):
    c = loop_client(timeout_s=0.15, retries=2, trace=True)
    caplog.set_level(logging.DEBUG, logger="firmware_bridge.trace")
    t0 = time.monotonic()
    with pytest.raises(
        BoardTimeout, match=r"no reply to INFO: waited .* s \(3 attempt\(s\) of .* s\) for a reply frame"
    ):
        c.info()
    assert time.monotonic() - t0 < 2.0
    assert c.stats["resends"] == 2
    tx = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tx")]
    assert len(tx) == 3 and all("seq=100" in line for line in tx)  # retries keep the sequence number
    assert c.stats["stale"] >= 3  # the echoed requests were recognised as not-a-reply


class SilentPort:
    """A port that takes every byte and never answers (an unplugged cable)."""

    timeout, baudrate, in_waiting = 0.05, 115200, 0

    def write(self, data):
        return len(data)

    def read(self, n):
        time.sleep(0.01)
        return b""

    def close(self):
        pass


def test_a_timeout_says_what_it_waited_for_and_what_came_instead():
    with pytest.raises(BoardTimeout) as info:
        loop_client(timeout_s=0.1, retries=1).info()
    text = str(info.value)
    assert text.startswith("loop://: no reply to INFO: waited ") and "for a reply frame with seq 100" in text
    assert text.endswith("only the request itself came back (a loopback such as loop://, not a board?)")
    with pytest.raises(BoardTimeout, match=r"seq 8; nothing came back \(is a board running the firmware"):
        BoardClient(port=SilentPort(), url="/dev/ttyX", timeout_s=0.1, retries=0, first_seq=7).info()


def test_reply_after_garbage_is_found():
    c = loop_client(timeout_s=1.0)
    c._port.write(b"\x13\x37garbage\xff" + b"\x00" + p.encode_frame(MsgType.RESET | p.REPLY, 100, b""))
    c.reset()
    assert c.stats["frame_faults"] >= 1


def test_stale_reply_with_another_seq_is_skipped():
    c = loop_client(timeout_s=0.3, retries=0)
    c._port.write(p.encode_frame(MsgType.RESET | p.REPLY, 42, b""))
    with pytest.raises(BoardTimeout):
        c.reset()
    assert c.stats["stale"] >= 1


@pytest.mark.parametrize(
    "code, exc",
    [
        (ErrorCode.IMAGE_CRC, ImageRejected),
        (ErrorCode.SPEC_MISMATCH, ImageRejected),
        (ErrorCode.NO_IMAGE, BoardRefused),
    ],
)
def test_error_replies_become_typed_exceptions(code, exc):
    c = loop_client()
    c._port.write(p.encode_frame(MsgType.ERROR, 100, p.encode_error(code, 5, 6)))
    with pytest.raises(exc, match=code.name) as info:
        c.reset()
    assert (info.value.code, info.value.a, info.value.b) == (code, 5, 6)


def test_wrong_reply_type_is_a_protocol_error():
    c = loop_client()
    c._port.write(p.encode_frame(MsgType.INFER | p.REPLY, 100, b""))
    with pytest.raises(BoardProtocolError, match="reply type"):
        c.reset()


def test_frame_fault_reply_triggers_an_immediate_resend():
    c = loop_client(timeout_s=1.0, retries=1)
    c._port.write(p.encode_frame(MsgType.ERROR, p.NO_SEQ, p.encode_error(ErrorCode.BAD_CRC, 1, 2)))
    t0 = time.monotonic()
    with pytest.raises(BoardTimeout):
        c.reset()
    assert c.stats["resends"] == 1
    assert time.monotonic() - t0 < 1.8  # the first attempt ended at once, only the resend waited 1 s


def test_trace_off_formats_nothing(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("trace formatting while trace is off")

    monkeypatch.setattr(client_mod.trace_log, "debug", boom)
    c = loop_client()
    c._port.write(p.encode_frame(MsgType.RESET | p.REPLY, 100, b""))
    c.reset()


def test_unopenable_port_is_a_connection_error():
    with pytest.raises(BoardConnectionError, match="/dev/nonexistent-pcl"):
        BoardClient("/dev/nonexistent-pcl")


def test_sequence_numbers_skip_no_seq():
    c = BoardClient("loop://", first_seq=p.NO_SEQ - 1)
    assert c._next_seq() == 0 and c._next_seq() == 1


def test_an_oversize_report_about_this_request_is_final_not_resent():
    # The board reports OVERSIZE (no seq: it could not read the frame) with its limit, 64 bytes.
    # Our request carries 100 payload bytes, so the report is about it: refused at once.
    c = loop_client(timeout_s=2.0, retries=3)
    c._port.write(b"\x00" + p.encode_frame(MsgType.ERROR, p.NO_SEQ, p.encode_error(ErrorCode.OVERSIZE, 64, 0)))
    t0 = time.monotonic()
    with pytest.raises(BoardRefused, match="OVERSIZE") as info:
        c.request(MsgType.INFER_BATCH, b"\x01" * 100)
    assert time.monotonic() - t0 < 1.0 and c.stats["resends"] == 0
    assert (info.value.a, info.value.b) == (64, 100)


def test_an_oversize_report_about_a_damaged_frame_is_resent():
    # A limit above our payload means the board saw a longer (merged or corrupted) frame: resend.
    c = loop_client(timeout_s=0.3, retries=1)
    c._port.write(b"\x00" + p.encode_frame(MsgType.ERROR, p.NO_SEQ, p.encode_error(ErrorCode.OVERSIZE, 8192, 0)))
    with pytest.raises(BoardTimeout):
        c.request(MsgType.INFER_BATCH, b"\x01" * 100)
    assert c.stats["resends"] == 1


def test_a_request_over_the_known_limit_is_refused_before_sending():
    c = loop_client()
    c._info = p.BoardInfo(p.PROTOCOL_VERSION, "x", "y", 64, 0, 0, 0, (), False, 0, 0, ())
    with pytest.raises(BoardRefused, match="OVERSIZE"):
        c.request(MsgType.INFER_BATCH, b"\x01" * 65)
    assert c.stats["requests"] == 0 and c._port.in_waiting == 0


def test_a_second_client_on_a_pty_is_refused_with_port_in_use():
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        with BoardClient(name), pytest.raises(BoardConnectionError, match=f"^{name}: port in use: another program"):
            BoardClient(name)
        with BoardClient(name):  # the lock went with the first client
            pass
    finally:
        os.close(master)
        os.close(slave)


def test_a_board_of_the_old_protocol_version_is_one_clear_error_not_a_timeout():
    # What a version-1 board sends back to any version-2 request: ERROR BAD_VERSION in a v1 frame.
    import struct
    import zlib

    payload = p.encode_error(ErrorCode.BAD_VERSION, p.PROTOCOL_VERSION, 1)
    body = p.HEADER.pack(1, MsgType.ERROR, 100, len(payload)) + payload
    old = p.cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"
    c = loop_client(timeout_s=5.0, retries=3)
    c._port.write(old)
    t0 = time.monotonic()
    with pytest.raises(BoardProtocolError, match="speaks protocol version 1, this host version 2; rebuild"):
        c.info()
    assert time.monotonic() - t0 < 2.0 and c.stats["resends"] == 0
