"""BoardClient against the host virtual board through the fault-injection proxy.

Every call must either return the right answer or raise a typed ``BoardError`` within its
time budget; a wrong answer is never accepted; an interrupted upload leaves no image. The long
run (100,000 frames) is tools/bench_fault_link.py; this is its short version plus the
scripted faults (board falls silent mid-frame, speaks something else, link cut mid-upload).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from firmware_bridge.boards import launch
from firmware_bridge.boards.faults import Babbler, FaultProxy, FaultRates, open_raw_pty
from firmware_bridge.commands import upload_image
from firmware_bridge.errors import BoardError, BoardRefused, BoardTimeout
from firmware_bridge.wire import client as client_module
from firmware_bridge.wire.client import BoardClient
from firmware_bridge.wire.protocol import ErrorCode, MsgType
from popcount_learn.weight_image import upload_bytes

pytestmark = pytest.mark.firmware

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 0.2
RETRIES = 2


@pytest.fixture(scope="module")
def tool():
    import bench_fault_link

    return bench_fault_link


@pytest.fixture(scope="module")
def image(tool):
    return tool.link_test_image()


@pytest.fixture(scope="module")
def board(image, firmware_build_root):
    with launch.start_virtual_board(image.spec, build_root=firmware_build_root) as running:
        with BoardClient(running.port, timeout_s=5.0) as clean:
            upload_image(clean, image)
        yield running


def _budget_s(client: BoardClient) -> float:
    """Longest a call may take: every attempt's wait, plus slack for a loaded machine."""
    return client.timeout_s * (client.retries + 1) + 2.0


@pytest.mark.parametrize(
    "rates",
    [FaultRates(corrupt=0.01), FaultRates(corrupt=0.005, drop=0.005, duplicate=0.005)],
    ids=["corrupt-1%", "corrupt-drop-duplicate"],
)
def test_no_wrong_answer_is_ever_accepted_through_a_faulty_link(tool, board, image, rates):
    summary = tool.run_fault_link(board.port, image, frames=600, rates=rates, seed=3, timeout_s=0.05, retries=3)
    assert summary["frames"] >= 600
    assert summary["wrong"] == 0, summary["examples"]
    assert summary["untyped_errors"] == {}, summary["examples"]
    assert summary["ok"] > summary["calls"] // 2
    faults = summary["proxy"]["to_board"]["corrupted"] + summary["proxy"]["to_client"]["corrupted"]
    assert faults > 20  # the link really was faulty
    assert summary["ok"] + sum(summary["typed_errors"].values()) == summary["calls"]


def test_the_truth_check_catches_a_wrong_answer(tool, board, image, monkeypatch):
    # Make the board's answers wrong on purpose (one hidden spike moved by a step): the same
    # checker must count them as wrong, or the zero above would prove nothing.
    import dataclasses

    real = tool.board_observations

    def off_by_one_step(results, topology, max_steps):
        observed = real(results, topology, max_steps)
        steps = observed.spike_steps[0].copy()
        fired = (steps[0] >= 0).nonzero()[0]
        if len(fired):
            steps[0, fired[0]] += 1
        return dataclasses.replace(observed, spike_steps=(steps, *observed.spike_steps[1:]))

    monkeypatch.setattr(tool, "board_observations", off_by_one_step)
    summary = tool.run_fault_link(board.port, image, frames=60, rates=FaultRates(), seed=1, timeout_s=0.5, retries=1)
    assert summary["wrong"] > 0


def test_board_falling_silent_mid_frame_is_a_timeout_then_recovers(board):
    with (
        FaultProxy(board.port, mute_after_to_client_bytes=20) as proxy,
        BoardClient(proxy.client_port, timeout_s=TIMEOUT_S, retries=RETRIES) as client,
    ):
        start = time.monotonic()
        with pytest.raises(BoardTimeout):
            client.info()  # the INFO reply is longer than 20 bytes: cut mid-frame
        assert time.monotonic() - start < _budget_s(client)
        assert 0 < proxy.counts()["to_client"]["bytes_out"] <= 20
        proxy.set_muted(False)
        assert client.info().image_loaded


@pytest.mark.parametrize("babbler", [Babbler(), Babbler(noise=True, seed=2)], ids=["modem-text", "noise"])
def test_a_port_that_speaks_something_else_gives_a_typed_error_in_bounded_time(babbler):
    with babbler, BoardClient(babbler.port, timeout_s=TIMEOUT_S, retries=RETRIES) as client:
        start = time.monotonic()
        with pytest.raises(BoardError):
            client.info()
        assert time.monotonic() - start < _budget_s(client)


def test_a_board_that_stops_reading_gives_a_timeout_not_a_hang(monkeypatch):
    # Nobody reads the device side of this pty: after its buffer fills, a write never ends.
    # (A fast assumed link keeps the write deadline short: 0.2 s + 60 kB at 100 kB/s.)
    monkeypatch.setattr(client_module, "SLOWEST_LINK_BYTES_PER_S", 100_000)
    master, slave, port = open_raw_pty()
    try:
        with BoardClient(port, timeout_s=TIMEOUT_S, retries=RETRIES) as client:
            chunk = bytes(60_000)
            start = time.monotonic()
            with pytest.raises(BoardTimeout, match="stopped reading"):
                client.request(MsgType.LOAD_CHUNK, chunk)
            assert time.monotonic() - start < TIMEOUT_S + len(chunk) / 100_000 + 2.0
    finally:
        os.close(master)
        os.close(slave)


def test_link_cut_mid_upload_leaves_no_image_and_commit_is_refused(board, image):
    stream_bytes = len(upload_bytes(image))

    def pull_the_cable():
        proxy.set_cut(True)
        proxy.set_muted(True)

    proxy = FaultProxy(board.port, reset_hook=pull_the_cable, reset_after_to_board_bytes=stream_bytes // 2)
    with proxy, BoardClient(proxy.client_port, timeout_s=TIMEOUT_S, retries=RETRIES) as client:
        start = time.monotonic()
        with pytest.raises(BoardTimeout):
            upload_image(client, image)  # half of the image's bytes get through, then nothing
        assert time.monotonic() - start < 3 * _budget_s(client)  # a few calls: info, begin, chunk
        assert proxy.counts()["to_board"]["bytes_out"] == stream_bytes // 2
    with BoardClient(board.port, timeout_s=2.0) as clean:
        info = clean.info()
        assert not info.image_loaded and info.image_bytes == 0
        with pytest.raises(BoardRefused) as refused:
            clean.request(MsgType.LOAD_COMMIT)
        assert refused.value.code in (ErrorCode.IMAGE_INCOMPLETE, ErrorCode.NOT_LOADING)
        with pytest.raises(BoardRefused) as no_image:
            clean.infer(b"\x00" * 98)
        assert no_image.value.code == ErrorCode.NO_IMAGE
        upload_image(clean, image)  # and a clean upload is taken again
        assert clean.info().image_loaded


def test_upload_through_a_corrupting_link_is_whole_or_refused(board, image):
    stream = upload_bytes(image)
    # ~1 fault per 40 kB: some attempts at the 25 kB chunk fail, most get through.
    with (
        FaultProxy(
            board.port, to_board=FaultRates(corrupt=2.5e-5), to_client=FaultRates(corrupt=2.5e-5), seed=5
        ) as proxy,
        BoardClient(proxy.client_port, timeout_s=0.5, retries=6) as client,
    ):
        try:
            upload_image(client, image)
            uploaded = True
        except BoardError:
            uploaded = False
        corrupted = proxy.counts()["to_board"]["corrupted"]
    assert corrupted > 0
    with BoardClient(board.port, timeout_s=2.0) as clean:
        info = clean.info()
        if uploaded:
            assert clean.read_image(len(stream)) == stream
        else:
            assert not info.image_loaded
        upload_image(clean, image)
