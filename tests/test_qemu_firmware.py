"""The real firmware on every QEMU Cortex-M board, driven by the same BoardClient.

The boards are discovered (``qemu.qemu_boards()``: board folders that declare a QEMU_MACHINE).
Each runs a cut of the shipped net600-int8 to its first hidden neurons: the largest of
``HIDDEN_LADDER`` that the board's reported weight memory and neuron count hold (784-100-10 on
mps2_an385; 784-32-10 on the 64 KB lm3s6965evb), which also keeps the upload short (the QEMU
UARTs carry only tens of kB/s from the host). Skips only when arm-none-eabi-gcc or qemu-system-arm is absent (CI
installs gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from factories import graded_net100
from reference_onchip import late_violator_steps

from firmware_bridge.boards import build, launch, qemu
from firmware_bridge.boards.faults import FaultProxy
from firmware_bridge.commands import compare_on_board, train_side_by_side, upload_image
from firmware_bridge.errors import BoardError, BoardRefused, BoardTimeout, BoardToolError, FirmwareBuildError
from firmware_bridge.wire import protocol
from firmware_bridge.wire.client import BoardClient
from firmware_bridge.wire.protocol import ErrorCode, MsgType
from popcount_learn.data import load_mnist
from popcount_learn.emulator import emulate, input_steps_for
from popcount_learn.h5io import load_weight_image
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import LayerImage, WeightImage, upload_bytes

REPO = Path(__file__).resolve().parent.parent
N_IMAGES = 100
N_TRAIN_STEPS = 100
# Hidden neurons of the net600-int8 cut a board runs: the first of these that fits it.
HIDDEN_LADDER = (100, 64, 32, 16)
# Moves many weights per step, so every path of the on-board update runs on the Cortex-M3.
BUSY_RULE = LearningConfig(
    margin_steps=6,
    hidden_update_prob_q16=30000,
    output_update_prob_q16=50000,
    prob_halving_samples=150,
    seed=12345,
    output_rule="all_violators",
    correct_rule="always",
)
pytestmark = pytest.mark.qemu


def _qemu_boards() -> list[str]:
    # Without make the boards cannot be read; the default board's tests then skip (or fail
    # under CI) through the qemu marker, which names the missing tool.
    return qemu.qemu_boards() if shutil.which("make") else [launch.DEFAULT_QEMU_BOARD]


def first_hidden_neurons(image: WeightImage, n_hidden: int) -> WeightImage:
    """A 2-layer image cut down to its first ``n_hidden`` hidden neurons (bias rows kept)."""
    hidden, output = image.layers
    out_rows = np.concatenate([output.weights_lsb[:n_hidden], output.weights_lsb[-1:]])
    return WeightImage(
        spec=image.spec,
        layers=(
            LayerImage(np.ascontiguousarray(hidden.weights_lsb[:, :n_hidden]), hidden.threshold_lsb, hidden.scale),
            LayerImage(np.ascontiguousarray(out_rows), output.threshold_lsb, output.scale),
        ),
        provenance={"derived_from": "net600-int8.h5", "hidden_neurons_kept": n_hidden},
    )


def cut_that_fits(image: WeightImage, info) -> WeightImage:
    """The largest ``HIDDEN_LADDER`` cut of ``image`` the board's INFO says it can hold."""
    for n_hidden in HIDDEN_LADDER:
        cut = first_hidden_neurons(image, n_hidden)
        if len(upload_bytes(cut)) <= info.weight_capacity_bytes and sum(cut.topology[1:]) <= info.max_neurons:
            return cut
    raise AssertionError(
        f"{info.board}: no cut of {HIDDEN_LADDER} hidden neurons fits "
        f"{info.weight_capacity_bytes} bytes / {info.max_neurons} neurons"
    )


@pytest.fixture(scope="module", params=_qemu_boards())
def board_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def shipped_image() -> WeightImage:
    return load_weight_image(REPO / "datasets" / "pretrained" / "net600-int8.h5")


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    test = load_mnist(mnist_dir, "test")
    return test.images[:N_IMAGES], test.labels[:N_IMAGES]


@pytest.fixture(scope="module")
def qemu_board(board_name, shipped_image, firmware_build_root):
    board = launch.start_virtual_board(
        shipped_image.spec, qemu=True, board=board_name, learning=BUSY_RULE, build_root=firmware_build_root
    )
    try:
        yield board
    finally:
        board.close()


@pytest.fixture(scope="module")
def open_client(qemu_board):
    # The first request waits out QEMU's ~1 s poll for a newly opened pty.
    with BoardClient(qemu_board.port, timeout_s=5.0) as module_client:
        yield module_client


@pytest.fixture(scope="module")
def small_image(open_client, shipped_image) -> WeightImage:
    return cut_that_fits(shipped_image, open_client.info())


@pytest.fixture(scope="module")
def client(open_client, small_image):
    upload_image(open_client, small_image)
    return open_client


def test_board_reports_itself_and_the_sizes_its_board_mk_declares(client, board_name, small_image):
    declared = build.board_config(board_name)
    info = client.info()
    assert info.board == declared["BOARD_NAME"]
    assert info.weight_capacity_bytes == int(declared["WEIGHT_CAPACITY_BYTES"])
    assert info.max_neurons == int(declared["MAX_NEURONS"])
    assert info.max_layers == int(declared["MAX_LAYERS"])
    assert info.max_payload_bytes == int(declared["MAX_PAYLOAD_BYTES"])
    assert info.image_loaded and info.image_bytes == len(upload_bytes(small_image))


def test_bit_exact_with_the_emulator_on_100_test_images(client, small_image, test_images):
    images, labels = test_images
    summary = compare_on_board(client, small_image, images, labels=labels)
    assert summary["n"] == N_IMAGES
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["board_accuracy"] == summary["emulator_accuracy"]


def _one_lsb_change_the_emulator_notices(image: WeightImage, images: np.ndarray) -> WeightImage:
    """The image with one weight moved by one LSB, chosen so the emulator's results change."""
    reference = emulate(image, images)
    hidden = image.layers[0]
    bias_row = hidden.weights_lsb.shape[0] - 1
    for neuron in range(hidden.weights_lsb.shape[1]):
        w = hidden.weights_lsb.copy()
        w[bias_row, neuron] += 1 if w[bias_row, neuron] < image.spec.weight_max else -1
        changed = dataclasses.replace(
            image, layers=(LayerImage(w, hidden.threshold_lsb, hidden.scale), image.layers[1]), provenance={}
        )
        if not np.array_equal(emulate(changed, images).spike_steps[0], reference.spike_steps[0]):
            return changed
    raise AssertionError("no single bias-weight LSB changes a hidden spike step")


def test_comparison_on_the_qemu_board_catches_a_one_lsb_weight_change(client, small_image, test_images):
    images, _ = test_images
    changed = _one_lsb_change_the_emulator_notices(small_image, images[:20])
    upload_image(client, changed)  # (the tests after this one upload what they need)
    # Board runs the changed image, the emulator the original: they must disagree.
    summary = compare_on_board(client, small_image, images[:20])
    assert summary["mismatches"] > 0
    assert "spike steps  emulator != board" in summary["first_mismatch"]


N_GRADED = 500  # on the default board; the others run the first N_GRADED_OTHER (suite time)
N_GRADED_OTHER = 100


@pytest.fixture(scope="module")
def graded_cut(open_client) -> WeightImage:
    """net100-int8 under a latency encoding (``factories.graded_net100``), cut to fit the board."""
    graded = graded_net100()
    return dataclasses.replace(cut_that_fits(graded, open_client.info()), encoding=graded.encoding)


def test_graded_images_are_bit_exact_with_the_emulator_on_500_test_images(client, board_name, graded_cut, mnist_dir):
    test = load_mnist(mnist_dir, "test")
    n = N_GRADED if board_name == launch.DEFAULT_QEMU_BOARD else N_GRADED_OTHER
    images, labels = test.images[:n], test.labels[:n]
    upload_image(client, graded_cut)
    # 2 images (3.1 KB) per request, within the pty's buffer: a starved QEMU (load 30) drained
    # mps2_an385's full 8 KB requests slower than the client's write limit (13 s) allows.
    summary = compare_on_board(client, graded_cut, images, labels=labels, batch_size=2)
    assert summary["n"] == n
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["board_accuracy"] == summary["emulator_accuracy"] > 0.2  # a small cut on lm3s6965evb
    # and the same comparison notices one LSB of one weight between board and emulator (the
    # emulator runs the changed image: no second upload, which a starved QEMU makes slow)
    changed = _one_lsb_change_the_emulator_notices(graded_cut, images[:50])
    summary = compare_on_board(client, changed, images[:50], batch_size=2)
    assert summary["mismatches"] > 0


def test_board_refuses_an_image_larger_than_its_weight_memory(client):
    # Asked of the board itself (upload_image would refuse on the host side first): a stream one
    # byte over the capacity is IMAGE_TOO_LARGE at LOAD_BEGIN, one of exactly the capacity is not.
    capacity = client.info().weight_capacity_bytes
    with pytest.raises(BoardRefused) as refused:
        client.request(MsgType.LOAD_BEGIN, protocol.encode_load_begin(capacity + 1, 0))
    assert refused.value.code == ErrorCode.IMAGE_TOO_LARGE
    client.request(MsgType.LOAD_BEGIN, protocol.encode_load_begin(capacity, 0))  # accepted
    # (The board now waits for chunks; the next test's upload begins a new load.)


def test_reset_mid_upload_leaves_no_image_behind(qemu_board, client, small_image):
    stream_bytes = len(upload_bytes(small_image))
    with (
        FaultProxy(qemu_board.port, reset_hook=qemu_board.reset, reset_after_to_board_bytes=stream_bytes // 3) as proxy,
        BoardClient(proxy.client_port, timeout_s=3.0, retries=2) as through_proxy,
    ):
        with pytest.raises(BoardError) as raised:
            upload_image(through_proxy, small_image)
        assert proxy.counts()["resets"] == 1
    # Typed, not a generic exception: the board forgot the load (NOT_LOADING / BAD_OFFSET) or
    # the cut frame never got an answer.
    assert isinstance(raised.value, (BoardRefused, BoardTimeout)), repr(raised.value)
    info = client.info()
    assert not info.image_loaded and info.image_bytes == 0
    with pytest.raises(BoardRefused) as refused:
        client.infer(b"\x00" * ((small_image.topology[0] + 7) // 8))
    assert refused.value.code == ErrorCode.NO_IMAGE
    # (The next test's clean upload shows that the board takes an image again.)


def test_weights_identical_to_the_emulator_after_100_on_board_training_steps(client, small_image, mnist_dir):
    # Runs after the inference tests (it leaves trained weights); starts with a clean upload.
    train = load_mnist(mnist_dir, "train")
    summary = train_side_by_side(
        client, small_image, BUSY_RULE, train.images[:N_TRAIN_STEPS], train.labels[:N_TRAIN_STEPS], check_every=50
    )
    assert summary["steps"] == N_TRAIN_STEPS
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["weight_checks"] == 2  # the whole image read back after step 50 and 100
    assert summary["weights_changed"] > 0  # the rule did move weights: the check is not vacuous
    # all_violators' window anchored on the correct output's spike acted (6-11 of the steps).
    steps = input_steps_for(small_image, train.images[:N_TRAIN_STEPS], None)
    assert late_violator_steps(small_image, BUSY_RULE, steps, train.labels[:N_TRAIN_STEPS], 0) > 0


def test_start_virtual_board_takes_the_board_and_its_machine_as_parameters(shipped_image, firmware_build_root):
    qemu_board_name = qemu.qemu_boards()[0]
    with pytest.raises(BoardToolError, match="qemu=True"):
        launch.start_virtual_board(qemu=False, board=qemu_board_name)
    with pytest.raises(BoardToolError, match="declares no QEMU_MACHINE"):
        launch.start_virtual_board(qemu=True, board="host")
    with pytest.raises(FirmwareBuildError, match="unknown board 'no_such_board'"):
        launch.start_virtual_board(qemu=True, board="no_such_board")
    with pytest.raises(BoardToolError, match="without qemu=True"):
        launch.start_virtual_board(machine=qemu.qemu_machine(qemu_board_name))
    # The machine reaches QEMU as given (default: the board's declared one, used by every
    # other test here): a machine QEMU does not know ends in its own error message.
    with pytest.raises(BoardToolError, match="no-such-machine"):
        launch.start_virtual_board(
            shipped_image.spec,
            qemu=True,
            board=qemu_board_name,
            machine="no-such-machine",
            learning=BUSY_RULE,
            build_root=firmware_build_root,
        )


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_cli_board_virtual_qemu_prints_its_port_and_stops_cleanly(board_name, firmware_build_root):
    env = {**os.environ, "PYTHONPATH": str(REPO), build.BUILD_ROOT_ENV: str(firmware_build_root)}
    named = [] if board_name == launch.DEFAULT_QEMU_BOARD else ["--board", board_name]
    cli = subprocess.Popen(
        [sys.executable, "-m", "popcount_learn.cli", "board", "virtual", "--qemu", *named],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        port = cli.stdout.readline().strip()
        assert port.startswith("/dev/pts/"), (port, cli.stderr.read() if cli.poll() is not None else "")
        qemu_pids = [
            pid
            for pid in _children(cli.pid)
            if "qemu-system-arm" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        ]
        assert len(qemu_pids) == 1
        machine = qemu.qemu_machine(board_name)
        assert f"\0{machine}\0" in Path(f"/proc/{qemu_pids[0]}/cmdline").read_text()
        info = subprocess.run(
            [sys.executable, "-m", "popcount_learn.cli", "board", "info", "--port", port, "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
        )
        assert info.returncode == 0, info.stderr
        assert f'"{build.board_config(board_name)["BOARD_NAME"]}"' in info.stdout
    finally:
        if cli.poll() is None:
            cli.send_signal(signal.SIGTERM)
        cli.wait(timeout=20)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{qemu_pids[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{qemu_pids[0]}").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["net600-int4.h5", "net600-int4-mse.h5"])
def test_shipped_4bit_image_bit_exact_on_the_default_qemu_board_over_200_images(name, mnist_dir, firmware_build_root):
    # The shipped 4-bit images (issue #17; max and MSE-clipped scale) whole, on a QEMU board built
    # for their 4-bit spec: every spike step, decision and counter equal to the emulator's on 200
    # MNIST test images.
    image = load_weight_image(REPO / "datasets" / "pretrained" / name)
    test = load_mnist(mnist_dir, "test")
    board = launch.start_virtual_board(image.spec, qemu=True, build_root=firmware_build_root)
    try:
        with BoardClient(board.port, timeout_s=60.0) as c:
            upload_image(c, image)
            summary = compare_on_board(c, image, test.images[:200], labels=test.labels[:200])
    finally:
        board.close()
    assert summary["n"] == 200
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["board_accuracy"] == summary["emulator_accuracy"]
