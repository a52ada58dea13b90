"""The host virtual board on a real pty against the emulator: inference, training, faults."""

import dataclasses
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import serial
from factories import graded_net100, random_weight_image
from reference_onchip import late_violator_steps

from firmware_bridge import check, commands
from firmware_bridge.boards import launch
from firmware_bridge.commands import (
    board_observations,
    compare_on_board,
    image_input_bits,
    image_input_steps,
    run_on_board,
    wire_inputs,
)
from firmware_bridge.errors import BoardConnectionError, BoardRefused, ImageRejected
from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.client import BoardClient
from firmware_bridge.wire.protocol import ErrorCode, MsgType
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate, encode_input_steps, input_steps_for
from popcount_learn.errors import ConfigError
from popcount_learn.h5io import load_weight_image, save_weight_image
from popcount_learn.learning import LearningConfig
from popcount_learn.onchip import OnchipLearner, train_step
from popcount_learn.weight_image import image_crc32, stream_spec_codes, upload_bytes

pytestmark = pytest.mark.firmware

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "datasets" / "pretrained"
# A rule that moves many weights per step, so that every path of the update is exercised.
BUSY_RULE = LearningConfig(
    margin_steps=6,
    hidden_update_prob_q16=30000,
    output_update_prob_q16=50000,
    prob_halving_samples=150,
    seed=12345,
    output_rule="all_violators",
    correct_rule="always",
)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    test = load_mnist(mnist_dir, "test")
    train = load_mnist(mnist_dir, "train")
    return test.images, test.labels, train.images[:400], train.labels[:400]


@pytest.fixture(scope="module")
def net600():
    return load_weight_image(PRETRAINED / "net600-int8.h5")


@pytest.fixture(scope="module")
def board(request, firmware_build_root):
    """A host virtual board (int8 spec, BUSY_RULE), or the board given with --board-port."""
    url = request.config.getoption("--board-port")
    if url:
        from types import SimpleNamespace

        yield SimpleNamespace(port=url)
        return
    with launch.start_virtual_board(build_root=firmware_build_root, learning=BUSY_RULE) as b:
        yield b


@pytest.fixture(scope="module")
def rule(board):
    """The learning rule compiled into the board (from INFO)."""
    with BoardClient(board.port, timeout_s=5.0) as c:
        codes = c.info().learning_codes
    if not codes:
        pytest.skip("the board has no learning rule")
    return LearningConfig.from_codes(codes)


@pytest.fixture
def client(board):
    with BoardClient(board.port, timeout_s=5.0) as c:
        yield c


def test_info_reports_compiled_spec_rule_and_capacity(client, rule, request):
    info = client.info()
    spec = DatapathConfig.for_weight_bits(8)
    assert info.spec_codes == stream_spec_codes(spec)
    assert info.learning_codes == rule.to_codes()
    if not request.config.getoption("--board-port"):
        assert rule == BUSY_RULE and info.board == "host"
    assert info.protocol_version == p.PROTOCOL_VERSION
    assert info.weight_capacity_bytes >= len(upload_bytes(load_weight_image(PRETRAINED / "net800-int8.h5")))


def test_upload_read_back_and_crc(client, net600):
    commands.upload_image(client, net600)
    stream = upload_bytes(net600)
    assert client.read_image(len(stream)) == stream
    info = client.info()
    assert info.image_loaded and info.image_crc32 == image_crc32(net600) and info.image_bytes == len(stream)


@pytest.mark.parametrize("name", ["net600-int8.h5", "net800-int8.h5"])
def test_bit_exact_with_the_emulator_on_1000_mnist_test_images(client, mnist, name):
    image = load_weight_image(PRETRAINED / name)
    commands.upload_image(client, image)
    images, labels = mnist[0][:1000], mnist[1][:1000]
    summary = compare_on_board(client, image, images, labels=labels)
    assert summary["n"] == 1000
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["board_accuracy"] == summary["emulator_accuracy"] > 0.95


@pytest.mark.parametrize("name", ["net600-int4.h5", "net600-int4-mse.h5"])
def test_the_shipped_4_bit_image_is_bit_exact_on_a_4_bit_board(mnist, firmware_build_root, name):
    """The 4-bit images (quantisation-aware training, issue #17; -mse: the clipped scale) on a
    board built for their spec."""
    image = load_weight_image(PRETRAINED / name)
    assert image.spec.weight_bits == 4
    images, labels = mnist[0][:1000], mnist[1][:1000]
    with launch.start_virtual_board(image.spec, build_root=firmware_build_root) as b, BoardClient(b.port) as c:
        commands.upload_image(c, image)
        summary = compare_on_board(c, image, images, labels=labels)
    assert summary["n"] == 1000
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["board_accuracy"] == summary["emulator_accuracy"] > 0.95


# -- random networks on specs that exercise overflow, wrap, ties, dark inputs -----------------

RANDOM_SPECS = [
    DatapathConfig.for_weight_bits(8),
    DatapathConfig(
        time_shift=2,
        weight_bits=12,
        current_frac_bits=1,
        current_bits=14,
        membrane_bits=15,
        current_overflow="wrap",
        membrane_overflow="wrap",
        dark_input_step=3,
        max_steps=40,
        tie_rule="lowest_index",
    ),
    DatapathConfig(
        time_shift=0,
        weight_bits=4,
        current_frac_bits=0,
        current_bits=5,
        membrane_bits=7,
        current_overflow="saturate",
        membrane_overflow="saturate",
        dark_input_step=2,
        max_steps=12,
        tie_rule="max_membrane",
    ),
    DatapathConfig(
        time_shift=3,
        weight_bits=16,
        current_frac_bits=3,
        current_bits=32,
        membrane_bits=32,
        max_steps=30,
        dark_input_step=-1,
    ),
]


def _random_image(rng, spec):
    topology = [int(rng.integers(1, 40))] + [int(rng.integers(1, 30)) for _ in range(int(rng.integers(1, 4)))]
    image = random_weight_image(rng, spec=spec, topology=topology)
    # Thresholds a few rows' worth of current above zero, so that neurons fire at varied steps.
    scale = spec.weight_max << spec.current_frac_bits
    layers = tuple(
        dataclasses.replace(layer, threshold_lsb=int(min(spec.membrane_max, rng.integers(1, 6 * scale + 2))))
        for layer in image.layers
    )
    return dataclasses.replace(image, layers=layers)


@pytest.mark.parametrize("spec_index", range(len(RANDOM_SPECS)))
def test_random_networks_match_the_emulator(spec_index, firmware_build_root):
    spec = RANDOM_SPECS[spec_index]
    rng = np.random.default_rng(spec_index)
    seen = {"decided": 0, "no_decision": 0, "tie": 0, "hidden_spikes": 0}
    with launch.start_virtual_board(spec, build_root=firmware_build_root) as b, BoardClient(b.port) as c:
        for _ in range(15):
            image = _random_image(rng, spec)
            c.load_image(upload_bytes(image), image_crc32(image))
            bits_on = rng.random((40, image.topology[0])) < rng.uniform(0.1, 0.9)
            steps = np.where(bits_on, 0, spec.dark_input_step).astype(np.int32)
            board = board_observations(
                c.infer_batch([p.input_bits(row) for row in bits_on]), image.topology, spec.max_steps
            )
            emu = emulate(image, input_spike_steps=steps)
            comparison = check.compare(emu, board, body="board")
            assert comparison.ok, comparison.first_mismatch
            seen["decided"] += int((emu.first_output_step >= 0).sum())
            seen["no_decision"] += int((emu.first_output_step < 0).sum())
            seen["tie"] += int(emu.tie.sum())
            seen["hidden_spikes"] += sum(int((s >= 0).sum()) for s in emu.spike_steps[:-1])
        with pytest.raises(BoardRefused, match="NO_LEARNING"):  # built without a rule
            c.train_step(0, 0, p.input_bits(bits_on[0]))
    assert all(v > 0 for v in seen.values()), seen  # the comparison covered each kind of outcome


# -- the comparator can fail ---------------------------------------------------------------


def _one_lsb_variant_that_matters(image, images):
    """A copy of ``image`` with one weight moved by one LSB that changes the emulated results."""
    base = emulate(image, images)
    out = len(image.layers) - 1
    for k in (out, 0):
        w = image.layers[k].weights_lsb
        for j in range(w.shape[1]):
            for d in (1, -1):
                w2 = w.copy()
                w2[-1, j] = np.clip(int(w2[-1, j]) + d, image.spec.weight_min, image.spec.weight_max)
                layers = list(image.layers)
                layers[k] = dataclasses.replace(layers[k], weights_lsb=w2)
                variant = dataclasses.replace(image, layers=tuple(layers))
                if not check.compare(base, emulate(variant, images), body="emulator").ok:
                    return variant, (k, w.shape[0] - 1, j, d)
    raise AssertionError("no single-LSB change altered the results")


def test_batches_shrink_when_a_reply_would_not_fit(client, mnist, net600):
    commands.upload_image(client, net600)
    with pytest.raises(BoardRefused, match="REPLY_TOO_LARGE") as refusal:
        client.infer_batch(image_input_bits(net600, mnist[0][:600]))  # ~170 bytes x 600 > 64 KiB
    # a = what the whole reply needs (docs/protocol.md): count u16, then per result its head,
    # rows read and a spike count per layer, and 6 bytes per neuron that fired.
    emu = emulate(net600, mnist[0][:600])
    fired = sum((steps >= 0).sum(axis=1) for steps in emu.spike_steps)
    n_layers = len(net600.layers)
    assert refusal.value.a == 2 + int(np.sum(14 + 8 * n_layers + 6 * fired))
    assert refusal.value.b == client.info().max_payload_bytes
    assert str(refusal.value).endswith(
        f"the whole reply needs {refusal.value.a} payload bytes, the board's limit is 65536"
    )
    retry = commands.smaller_batch(600, refusal.value)  # sized from the figure, not halved blindly
    assert int(np.sum((2 + 14 + 8 * n_layers + 6 * fired)[:retry])) <= refusal.value.b < refusal.value.a
    board = run_on_board(client, net600, mnist[0][:600], batch_size=600)
    assert check.compare(emulate(net600, mnist[0][:600]), board, body="board").ok


def test_comparator_fails_on_a_one_lsb_weight_difference(client, mnist, net600):
    images = mnist[0][:300]
    variant, where = _one_lsb_variant_that_matters(net600, images)
    commands.upload_image(client, variant)
    summary = compare_on_board(client, net600, images)  # board runs the variant, emulator the original
    assert summary["mismatches"] > 0 and summary["first_mismatch"].startswith("image "), where
    assert compare_on_board(client, variant, images)["mismatches"] == 0  # and it is exactly that weight


def test_comparator_fails_on_a_one_step_shift_of_one_hidden_spike(client, mnist, net600):
    commands.upload_image(client, net600)
    images = mnist[0][:20]
    board = run_on_board(client, net600, images)
    emu = emulate(net600, images)
    assert check.compare(emu, board, body="board").ok
    i = 7
    hidden = board.spike_steps[0].copy()
    j = int(np.flatnonzero(hidden[i] >= 0)[0])
    hidden[i, j] += 1
    result = check.compare(emu, dataclasses.replace(board, spike_steps=(hidden, *board.spike_steps[1:])), body="board")
    assert result.mismatched == (i,)
    assert (
        f"layer 0 spike steps  emulator != board at 1 neuron(s): neuron {j}: emulator {hidden[i, j] - 1}, "
        f"board {hidden[i, j]}" in result.first_mismatch
    )
    assert result.verdict().startswith(f"1 of 20 images: board != emulator; first: image {i}:")
    silent = int(np.flatnonzero(board.spike_steps[0][i] < 0)[0])
    hidden = board.spike_steps[0].copy()
    hidden[i, silent] = 3
    result = check.compare(emu, dataclasses.replace(board, spike_steps=(hidden, *board.spike_steps[1:])), body="board")
    assert f"neuron {silent}: emulator -1, board 3" in result.first_mismatch


# -- graded input (issue 14): per-input steps in the STEPS form ----------------------------


@pytest.fixture(scope="module")
def graded():
    return graded_net100()


def test_graded_images_are_bit_exact_with_the_emulator_on_500_mnist_test_images(client, mnist, graded):
    images, labels = mnist[0][:500], mnist[1][:500]
    steps = image_input_steps(graded, images)
    assert len(np.unique(steps)) > 100 and (steps == -1).any()  # graded, with silent inputs
    assert {x.form for x in image_input_bits(graded, images)} == {p.InputForm.STEPS}
    commands.upload_image(client, graded)
    summary = compare_on_board(client, graded, images, labels=labels)
    assert summary["n"] == 500
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["board_accuracy"] == summary["emulator_accuracy"] > 0.9


def test_graded_comparison_fails_on_one_lsb_of_a_weight_or_one_step_of_one_input(client, mnist, graded):
    images = mnist[0][:100]
    variant, where = _one_lsb_variant_that_matters(graded, images)
    commands.upload_image(client, variant)
    assert compare_on_board(client, graded, images)["mismatches"] > 0, where
    commands.upload_image(client, graded)
    steps = image_input_steps(graded, images)
    emu = emulate(graded, input_spike_steps=steps)
    i = 3
    for j in np.argsort(steps[i], kind="stable"):  # earliest inputs first: most likely to matter
        if steps[i, j] < 0:
            continue
        shifted = steps.copy()
        shifted[i, j] += 1
        if not check.compare(emu, emulate(graded, input_spike_steps=shifted), body="emulator").ok:
            break
    else:
        raise AssertionError("no one-step shift of an input changed image 3")

    def on_board(input_steps):
        sent = wire_inputs(graded, input_steps)
        replies = [r for k in range(0, len(sent), 20) for r in client.infer_batch(sent[k : k + 20])]
        return board_observations(replies, graded.topology, graded.spec.max_steps)

    assert check.compare(emu, on_board(shifted), body="board").mismatched == (i,)
    assert check.compare(emu, on_board(steps), body="board").ok


@pytest.fixture(scope="module")
def mnist_train_500(mnist_dir):
    train = load_mnist(mnist_dir, "train")
    return train.images[:500], train.labels[:500]


def test_500_graded_training_steps_side_by_side_stay_identical(client, rule, graded, mnist_train_500):
    images, labels = mnist_train_500
    summary = commands.train_side_by_side(client, graded, rule, images, labels, check_every=100)
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["steps"] == 500 and summary["weight_checks"] == 5
    assert summary["weights_changed"] > 1000
    if rule.output_rule == "all_violators":  # BUSY_RULE: the window anchored on s_c acted (37 steps)
        assert late_violator_steps(graded, rule, input_steps_for(graded, images, None), labels, 0) > 0


def test_graded_training_comparison_fails_on_a_one_lsb_difference(client, rule, graded, mnist_train_500):
    images, labels = mnist_train_500
    w = graded.layers[0].weights_lsb.copy()
    w[0, 5] += 1 if w[0, 5] < 127 else -1  # pixel 0 is black: silent, so this weight never learns
    corrupted = dataclasses.replace(
        graded, layers=(dataclasses.replace(graded.layers[0], weights_lsb=w), *graded.layers[1:])
    )
    summary = commands.train_side_by_side(
        client, graded, rule, images[:20], labels[:20], check_every=10, board_image=corrupted
    )
    assert summary["mismatches"] == 1
    assert "layer 0 weight [row 0, column 5]" in summary["first_mismatch"]


# -- training ------------------------------------------------------------------------------


def test_training_steps_equal_the_python_one_step_function(client, rule, mnist, net600):
    commands.upload_image(client, net600)
    image = net600
    _, _, train_images, train_labels = mnist
    changed = []
    for t in range(len(train_images)):  # until three steps moved weights (a rule may skip correct samples)
        enc = encode_input_steps(image.spec, train_images[t : t + 1])[0]
        reply = client.train_step(t, int(train_labels[t]), p.input_bits(enc == 0))
        image, result = train_step(image, rule, enc, int(train_labels[t]), t)
        assert reply.weights_changed == result.weights_changed
        if result.weights_changed:
            assert client.read_image(len(upload_bytes(image))) == upload_bytes(image)
            changed.append(result.weights_changed)
            if len(changed) == 3:
                break
    assert changed, "no training step moved a weight"
    assert client.read_image(len(upload_bytes(image))) == upload_bytes(image)


def test_200_training_steps_side_by_side_stay_identical(client, rule, mnist, net600):
    _, _, train_images, train_labels = mnist
    summary = commands.train_side_by_side(
        client, net600, rule, train_images[:200], train_labels[:200], check_every=50, first_sample_index=1000
    )
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["steps"] == 200 and summary["weight_checks"] == 4
    assert summary["weights_changed"] > 1000


def test_training_comparison_fails_on_a_one_lsb_difference(client, rule, mnist, net600):
    _, _, train_images, train_labels = mnist
    w = net600.layers[0].weights_lsb.copy()
    w[0, 5] += 1 if w[0, 5] < 127 else -1  # pixel 0 is always dark: this weight never learns
    corrupted = dataclasses.replace(
        net600, layers=(dataclasses.replace(net600.layers[0], weights_lsb=w), *net600.layers[1:])
    )
    summary = commands.train_side_by_side(
        client, net600, rule, train_images[:20], train_labels[:20], check_every=10, board_image=corrupted
    )
    assert summary["mismatches"] == 1
    assert "layer 0 weight [row 0, column 5]" in summary["first_mismatch"]


def test_board_with_another_rule_is_refused(client, rule, mnist, net600):
    other = dataclasses.replace(rule, seed=rule.seed ^ 1)
    with pytest.raises(ConfigError, match="learning rule"):
        commands.train_side_by_side(client, net600, other, mnist[2][:2], mnist[3][:2])


# -- retries and faults over the real pty ----------------------------------------------------


class DropFirstReply:
    """A serial port that loses the first reply frame it receives (a glitch on the line)."""

    def __init__(self, port):
        self._port = port
        self.dropped = False

    timeout = property(lambda self: self._port.timeout, lambda self, v: setattr(self._port, "timeout", v))
    in_waiting = property(lambda self: self._port.in_waiting)

    def read(self, n):
        data = self._port.read(n)
        if self.dropped:
            return data
        end = data.find(b"\x00")
        if end < 0:
            return b""
        self.dropped = True
        return data[end + 1 :]

    def write(self, data):
        return self._port.write(data)

    def reset_input_buffer(self):
        self._port.reset_input_buffer()

    def close(self):
        self._port.close()


def test_a_lost_reply_is_retried_and_the_step_applied_once(board, rule, mnist, net600):
    _, _, train_images, train_labels = mnist
    with BoardClient(board.port) as c:
        commands.upload_image(c, net600)
    port = DropFirstReply(serial.serial_for_url(board.port))
    encoded = encode_input_steps(net600.spec, train_images[:100])
    i = next(
        i
        for i in range(100)  # a sample whose step moves weights, so that twice != once
        if train_step(net600, rule, encoded[i], int(train_labels[i]), 77)[1].weights_changed
    )
    with BoardClient(port=port, url=board.port, timeout_s=0.5, retries=2) as c:
        enc = encoded[i]
        reply = c.train_step(77, int(train_labels[i]), p.input_bits(enc == 0))
        assert port.dropped and c.stats["resends"] == 1
        once, result = train_step(net600, rule, enc, int(train_labels[i]), 77)
        assert reply.weights_changed == result.weights_changed > 0
        assert c.read_image(len(upload_bytes(once))) == upload_bytes(once)  # not applied twice


def test_board_answers_garbage_oversize_and_truncation_and_stays_in_sync(client):
    client._write(b"\x42\x43garbage\xff\x00")
    assert client.info().protocol_version == p.PROTOCOL_VERSION
    client._write(b"\x55" * (p.MAX_PAYLOAD_BYTES + 2000) + b"\x00")
    assert client.info().protocol_version == p.PROTOCOL_VERSION
    client._write(p.encode_frame(MsgType.INFO, 5, b"")[:6])
    time.sleep(0.8)  # longer than the board's frame gap timeout
    assert client.info().protocol_version == p.PROTOCOL_VERSION
    assert client.stats["frame_faults"] >= 3


def test_unknown_type_and_bad_lengths_are_typed_errors(client):
    with pytest.raises(BoardRefused, match="UNKNOWN_TYPE") as e:
        client.request(0x55)
    assert e.value.code == ErrorCode.UNKNOWN_TYPE
    with pytest.raises(BoardRefused, match="BAD_LENGTH"):
        client.request(MsgType.LOAD_BEGIN, b"\x01\x02")


def test_reset_forgets_the_image(client, net600):
    commands.upload_image(client, net600)
    assert client.info().image_loaded
    client.reset()
    assert not client.info().image_loaded
    with pytest.raises(BoardRefused, match="NO_IMAGE"):
        client.infer(bytes(98))
    with pytest.raises(BoardRefused, match="NO_IMAGE"):
        client.read_image(16)


def test_train_step_with_a_label_that_is_no_output_is_refused(client, net600):
    commands.upload_image(client, net600)
    with pytest.raises(BoardRefused, match="BAD_ARGUMENT: argument 1 has bad value 10"):
        client.train_step(0, 10, bytes(98))
    with pytest.raises(BoardRefused, match="BAD_LENGTH"):
        client.train_step(0, 1, bytes(97))


def test_half_loaded_and_mismatched_images_are_refused(client, net600):
    stream = upload_bytes(net600)
    client.request(MsgType.LOAD_BEGIN, p.encode_load_begin(len(stream), image_crc32(net600)))
    client.request(MsgType.LOAD_CHUNK, p.encode_load_chunk(0, stream[:1000]))
    with pytest.raises(ImageRejected, match="IMAGE_INCOMPLETE: image incomplete: 1000 of"):
        client.request(MsgType.LOAD_COMMIT)
    with pytest.raises(BoardRefused, match="NO_IMAGE"):
        client.infer(bytes(98))
    other = dataclasses.replace(net600, spec=dataclasses.replace(net600.spec, max_steps=300))
    with pytest.raises(ImageRejected, match="SPEC_MISMATCH: spec field 9 is 300"):
        client.load_image(upload_bytes(other), image_crc32(other))
    with pytest.raises(ConfigError, match="built for max_steps = 512 but"):
        commands.upload_image(client, other)
    with pytest.raises(ImageRejected, match="IMAGE_CRC"):
        client.load_image(stream, image_crc32(net600) ^ 1)


# -- the CLI ------------------------------------------------------------------------------


def _cli(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "popcount_learn.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_cli_virtual_info_compare_train(firmware_build_root, tmp_path):
    import json

    env = dict(os.environ, PCL_FIRMWARE_BUILD_ROOT=str(firmware_build_root), PYTHONPATH=str(REPO))
    image_path = tmp_path / "net600-busy.h5"
    save_weight_image(
        image_path, dataclasses.replace(load_weight_image(PRETRAINED / "net600-int8.h5"), learning=BUSY_RULE)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcount_learn.cli", "board", "virtual", "--image", str(image_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        r = _cli("board", "info", "--port", port, "--json", "--trace", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["datapath"]["max_steps"] == 512
        assert r.stderr.startswith("trace: tx INFO seq=") and "trace: rx type=0x81" in r.stderr
        r = _cli("board", "compare", "--port", port, "--image", str(image_path), "--limit", "100", "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["mismatches"] == 0
        r = _cli(
            "board",
            "train",
            "--port",
            port,
            "--image",
            str(image_path),
            "--steps",
            "30",
            "--check-every",
            "10",
            "--json",
            env=env,
        )
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["mismatches"] == 0 and out["weight_checks"] == 3
        r = _cli("board", "compare", "--port", port, "--image", str(PRETRAINED / "net600.h5"), env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a float model" in r.stderr
    finally:
        proc.terminate()
        proc.wait(10)
    assert not os.path.exists(port)  # the board and its pty are gone
    r = _cli("board", "info", "--port", "/dev/nonexistent-pcl", env=env)
    assert r.returncode == 2 and "cannot open /dev/nonexistent-pcl" in r.stderr


# -- property tests: random networks of 1-3 layers on the default-spec board -----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def small_problems(draw):
    """A random default-spec image of 1-3 layers with moderate thresholds, inputs and a label."""
    spec = DatapathConfig.for_weight_bits(8)
    n_layers = draw(st.integers(1, 3))
    topology = [draw(st.integers(1, 48))] + [draw(st.integers(1, 24)) for _ in range(n_layers)]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    image = random_weight_image(rng, spec=spec, topology=topology, provenance={})
    unit = spec.weight_max << spec.current_frac_bits
    layers = tuple(dataclasses.replace(layer, threshold_lsb=int(rng.integers(1, 4 * unit))) for layer in image.layers)
    image = dataclasses.replace(image, layers=layers)
    bits_on = rng.random(topology[0]) < draw(st.floats(0.05, 0.95))
    label = draw(st.integers(0, topology[-1] - 1))
    t = draw(st.integers(0, 2**32 - 1))
    return image, bits_on, label, t


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=small_problems())
def test_property_inference_and_one_training_step_match_on_random_networks(client, rule, problem):
    image, bits_on, label, t = problem
    client.load_image(upload_bytes(image), image_crc32(image))
    steps = np.where(bits_on, 0, image.spec.dark_input_step).astype(np.int32)
    board = board_observations([client.infer(p.input_bits(bits_on))], image.topology, image.spec.max_steps)
    emu = emulate(image, input_spike_steps=steps[None, :])
    comparison = check.compare(emu, board, body="board")
    assert comparison.ok, comparison.first_mismatch
    reply = client.train_step(t, label, p.input_bits(bits_on))
    trained, result = train_step(image, rule, steps, label, t)
    got = (
        reply.predicted,
        reply.first_output_step,
        reply.weights_changed,
        reply.neurons_with_delta,
        reply.hidden_spikes_delivered,
    )
    assert got == (
        result.predicted,
        result.first_output_step,
        result.weights_changed,
        result.neurons_with_delta,
        result.hidden_spikes_delivered,
    )
    assert client.read_image(len(upload_bytes(trained))) == upload_bytes(trained)


def test_property_test_exercised_deep_learning_paths(client, rule):
    """The random problems above do reach hidden deltas two layers deep and weight changes there."""
    rng = np.random.default_rng(5)
    deep_changes = 0
    for i in range(40):
        spec = DatapathConfig.for_weight_bits(8)
        image = random_weight_image(rng, spec=spec, topology=(30, 20, 15, 6), provenance={})
        unit = spec.weight_max << spec.current_frac_bits
        image = dataclasses.replace(
            image,
            layers=tuple(
                dataclasses.replace(layer, threshold_lsb=int(rng.integers(1, 2 * unit))) for layer in image.layers
            ),
        )
        bits_on = rng.random(30) < 0.5
        steps = np.where(bits_on, 0, -1).astype(np.int32)
        client.load_image(upload_bytes(image), image_crc32(image))
        client.train_step(i, i % 6, p.input_bits(bits_on))
        trained, _ = train_step(image, rule, steps, i % 6, i)
        assert client.read_image(len(upload_bytes(trained))) == upload_bytes(trained)
        deep_changes += int((trained.layers[0].weights_lsb != image.layers[0].weights_lsb).sum())
    assert deep_changes > 0  # first-layer weights moved: deltas propagated back through two layers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.lists(st.binary(max_size=300) | st.just(b"\x00"), max_size=6).map(b"".join))
def test_property_any_noise_leaves_the_board_answering(client, noise):
    client._write(noise)
    assert client.info().protocol_version == p.PROTOCOL_VERSION


# -- the protocol's contract where it is easy to get wrong (docs/protocol.md) ------------------


def raw_frame(version: int, msg_type: int, seq: int, payload: bytes, *, length=None, crc=None) -> bytes:
    """A frame built by hand (any version, length field or CRC), with delimiters around it."""
    body = struct.pack("<BBHI", version, msg_type, seq, len(payload) if length is None else length) + payload
    crc = zlib.crc32(body) if crc is None else crc
    return b"\x00" + p.cobs_encode(body + struct.pack("<I", crc)) + b"\x00"


def raw_replies(client, data: bytes, n: int = 1, timeout_s: float = 10.0) -> list[bytes]:
    """Write ``data`` as it is; the next ``n`` frames the board sends, as sent (COBS and 00)."""
    client._write(data)
    buf, frames = b"", []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n and time.monotonic() < deadline:
        buf += client._read()
        while b"\x00" in buf:
            frame, buf = buf.split(b"\x00", 1)
            if frame:
                frames.append(frame + b"\x00")
    return frames


def golden_frames() -> dict[str, bytes]:
    from test_protocol import golden_vectors

    return {name: frame for name, _, _, _, frame in golden_vectors()}


def tiny_image():
    """8 inputs, one output neuron that the bias fires at step 0: every result is 28 bytes."""
    w = np.zeros((9, 1), np.int8)
    w[-1, 0] = 127
    from popcount_learn.weight_image import LayerImage, WeightImage

    return WeightImage(DatapathConfig.for_weight_bits(8), (LayerImage(w, 1, 1.0),))


@pytest.mark.parametrize("fill", [0x00, 0x55], ids=["zero-bytes", "no-zero-bytes"])
def test_a_payload_one_byte_over_the_limit_is_refused(client, fill):
    limit = client.info().max_payload_bytes
    # LOAD_CHUNK without LOAD_BEGIN: a board that read the frame would answer NOT_LOADING.
    frame = p.decode_frame(
        raw_replies(client, raw_frame(p.PROTOCOL_VERSION, MsgType.LOAD_CHUNK, 11, bytes([fill]) * (limit + 1)))[0][:-1]
    )
    assert (frame.msg_type, frame.seq) == (MsgType.ERROR, p.NO_SEQ)
    assert p.decode_error(frame.payload) == (ErrorCode.OVERSIZE, limit, 0)
    # At the limit the frame is read (INFO takes no payload: BAD_LENGTH of the request's seq).
    frame = p.decode_frame(
        raw_replies(client, raw_frame(p.PROTOCOL_VERSION, MsgType.INFO, 12, bytes([fill]) * limit))[0][:-1]
    )
    assert (frame.msg_type, frame.seq) == (MsgType.ERROR, 12)
    assert p.decode_error(frame.payload) == (ErrorCode.BAD_LENGTH, limit, 0)


def test_error_replies_are_the_golden_frames(client):
    if client.info().max_payload_bytes != 65536:
        pytest.skip("the golden OVERSIZE and REPLY_TOO_LARGE frames are for a board with a 64 KiB limit")
    golden = golden_frames()
    client.reset()
    cases = [
        ("error_bad_frame", b"\x00\x05\x01\x00"),  # COBS block runs past the end: decoded length -1
        ("error_bad_crc", raw_frame(p.PROTOCOL_VERSION, MsgType.INFO, 2, b"", crc=0x12345678)),
        ("error_oversize", raw_frame(p.PROTOCOL_VERSION, MsgType.LOAD_CHUNK, 9, bytes(65537))),
        ("error_bad_version", raw_frame(1, MsgType.INFO, 2, b"")),
        ("error_bad_length_frame", raw_frame(p.PROTOCOL_VERSION, MsgType.INFO, 3, b"\x01\x02\x03", length=5)),
        ("error_bad_length_message", raw_frame(p.PROTOCOL_VERSION, MsgType.INFO, 4, b"\x01\x02\x03")),
        ("error_unknown_type", raw_frame(p.PROTOCOL_VERSION, 0x55, 5, b"")),
        ("error_no_image", raw_frame(p.PROTOCOL_VERSION, MsgType.INFER, 6, bytes(99))),
        ("error_not_loading", raw_frame(p.PROTOCOL_VERSION, MsgType.LOAD_COMMIT, 7, b"")),
    ]
    for name, data in cases:
        assert raw_replies(client, data) == [golden[name]], name
    assert raw_replies(client, raw_frame(p.PROTOCOL_VERSION, MsgType.INFO, 10, b"")[:6], timeout_s=3.0) == [
        golden["error_truncated"]
    ]
    commands.upload_image(client, tiny_image())
    assert raw_replies(client, raw_frame(p.PROTOCOL_VERSION, MsgType.INFER_BATCH, 8, b"\x00\x00\x00")) == [
        golden["error_bad_argument_batch_of_0"]
    ]
    batch = struct.pack("<HB", 65533, p.InputForm.BITS) + bytes(65533)  # 2 + 65533 x 28 reply bytes = 1,834,926
    assert raw_replies(client, raw_frame(p.PROTOCOL_VERSION, MsgType.INFER_BATCH, 9, batch)) == [
        golden["error_reply_too_large"]
    ]
    assert client.info().protocol_version == p.PROTOCOL_VERSION  # and in sync after all of it


def test_a_second_client_on_the_port_is_told_it_is_in_use(board, capsys):
    if "://" in board.port:
        pytest.skip("a URL port (socket://...) has no lock")
    from popcount_learn import cli

    with BoardClient(board.port, timeout_s=5.0) as first:
        with pytest.raises(BoardConnectionError, match="port in use"):
            BoardClient(board.port)
        assert cli.main(["board", "info", "--port", board.port]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "port in use" in err
        assert first.info().protocol_version == p.PROTOCOL_VERSION  # the first one was not disturbed
    with BoardClient(board.port, timeout_s=5.0) as again:  # free again once the first has closed
        assert again.info().protocol_version == p.PROTOCOL_VERSION


def replayed(image, rule, images, labels, n_steps):
    learner = OnchipLearner(image, rule)
    for i, enc in enumerate(encode_input_steps(image.spec, images[:n_steps])):
        learner.step(enc, int(labels[i]), i)
    return learner.image()


@pytest.mark.parametrize("in_flight", [False, True], ids=["between-steps", "step-in-flight"])
def test_an_interrupted_board_train_says_how_many_steps_the_board_applied(client, rule, mnist, net600, in_flight):
    images, labels = mnist[2][:20], mnist[3][:20]
    real, calls = client.train_step, []

    def train_step_then_ctrl_c(t, label, bits):
        calls.append(t)
        if len(calls) < 6:
            return real(t, label, bits)
        if in_flight:  # the request reaches the board; Ctrl-C comes while the host waits for the reply
            client._write(
                b"\x00" + p.encode_frame(MsgType.TRAIN_STEP, client._next_seq(), p.encode_train_step(t, label, bits))
            )
        raise KeyboardInterrupt

    client.train_step = train_step_then_ctrl_c
    with pytest.raises(KeyboardInterrupt) as info:
        commands.train_side_by_side(client, net600, rule, images, labels, image_name="net600-int8.h5")
    applied = 6 if in_flight else 5
    assert str(info.value) == (
        f"after {applied} of 20 training steps applied on the board; its weights now differ from net600-int8.h5 "
        "(upload the image again, as board compare and board train do, before comparing it with the file)"
    )
    assert client.info().image_crc32 == image_crc32(replayed(net600, rule, images, labels, applied))


def test_ctrl_c_in_board_train_prints_what_the_board_holds(board, rule, mnist, tmp_path, firmware_build_root):
    if "://" in board.port:
        pytest.skip("needs a port this test can hand to a second process")
    image = dataclasses.replace(load_weight_image(PRETRAINED / "net100-int8.h5"), learning=rule)
    path = tmp_path / "net100-rule.h5"
    save_weight_image(path, image)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = ["board", "train", "--port", board.port, "--image", path, "--steps", "20000", "--check-every", "1000000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcount_learn.cli", *map(str, args)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A suite started in the background by a non-interactive shell inherits SIGINT ignored, and
        # so would the CLI: give it the disposition a terminal's Ctrl-C meets.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = proc.stderr.readline()  # "train: 2000/20000 ..." after a tenth of the steps
        assert first.startswith("train: "), first
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("popcount-learn: interrupted: after ") and f"differ from {path}" in last, err
    applied = int(last.split("after ")[1].split(" of ")[0].replace(",", ""))
    assert applied > 0
    train = load_mnist(REPO / "datasets" / "mnist", "train")
    order = commands.training_order(len(train.images), 20000, 0)[:applied]
    with BoardClient(board.port, timeout_s=5.0) as c:
        board_crc = c.info().image_crc32
    assert board_crc == image_crc32(replayed(image, rule, train.images[order], train.labels[order], applied))
