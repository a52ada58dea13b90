"""The rule's spike target (``hidden_spike_target``, docs/learning-rule.md section 6) on boards.

A host board and a QEMU board compiled for a from-scratch rule with the target on train a
seeded random 784-100-10 int8 network side by side with the emulator's learner: every step's
reply and the whole weight image (read back every 250 steps and after the last) must be equal
byte for byte. The same run with the target off ends elsewhere, so the term did act.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from reference_onchip import late_violator_steps

from firmware_bridge.boards import launch
from firmware_bridge.commands import train_side_by_side
from firmware_bridge.wire.client import BoardClient
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import encode_input_steps
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.learning import LearningConfig
from popcount_learn.onchip import OnchipLearner
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image
from popcount_learn.train import expected_active_inputs

N_STEPS = 1000
# From-scratch probabilities (every causal weight moves), the target low enough for a 100-neuron
# hidden layer that it acts on most samples.
TARGET_RULE = LearningConfig(
    hidden_update_prob_q16=65536, output_update_prob_q16=65536, prob_halving_samples=0, seed=3, hidden_spike_target=12
)


@pytest.fixture(scope="module")
def start_image(mnist_dir):
    train = load_mnist(mnist_dir, "train")
    spec = DatapathConfig.for_weight_bits(8)
    encoding = SpikeEncoding()
    active = expected_active_inputs(train.images[:1000], encoding)
    return random_initial_image((784, 100, 10), spec, OnchipTrainConfig(seed=4), encoding, active)


@pytest.fixture(scope="module")
def samples(mnist_dir):
    train = load_mnist(mnist_dir, "train")
    return train.images[:N_STEPS], train.labels[:N_STEPS]


def _emulated(image, learning, images, labels):
    learner = OnchipLearner(image, learning)
    learner.train(encode_input_steps(image.spec, images), np.asarray(labels, np.int64), 0)
    return learner.image()


def test_the_target_changes_the_run(start_image, samples):
    images, labels = samples
    on = _emulated(start_image, TARGET_RULE, images[:200], labels[:200])
    off = _emulated(start_image, dataclasses.replace(TARGET_RULE, hidden_spike_target=0), images[:200], labels[:200])
    assert any(not np.array_equal(a, b) for a, b in zip(on.weights_lsb, off.weights_lsb, strict=True))


# The same with every violator penalised: the window anchored on the correct output's spike
# (docs/learning-rule.md, section 3) acts on many of these steps (checked in _side_by_side).
ALL_VIOLATORS_RULE = dataclasses.replace(TARGET_RULE, output_rule="all_violators")
RULES = pytest.mark.parametrize("rule", [TARGET_RULE, ALL_VIOLATORS_RULE], ids=["earliest", "all-violators"])


def _side_by_side(board, start_image, samples, rule):
    images, labels = samples
    with BoardClient(board.port, timeout_s=30.0) as client:
        summary = train_side_by_side(client, start_image, rule, images, labels, check_every=250)
    assert summary["steps"] == N_STEPS
    assert summary["mismatches"] == 0, summary["first_mismatch"]
    assert summary["weight_checks"] == 4
    assert summary["weights_changed"] > 10000
    if rule.output_rule == "all_violators":
        steps = encode_input_steps(start_image.spec, images)
        assert late_violator_steps(start_image, rule, steps, labels, 0) > 0
    return summary


@pytest.mark.firmware
@pytest.mark.slow
@RULES
def test_host_board_equals_the_emulator_over_1000_steps_with_the_target(
    start_image, samples, firmware_build_root, rule
):
    with launch.start_virtual_board(start_image.spec, learning=rule, build_root=firmware_build_root) as board:
        _side_by_side(board, start_image, samples, rule)


@pytest.mark.qemu
@pytest.mark.slow
@RULES
def test_qemu_board_equals_the_emulator_over_1000_steps_with_the_target(
    start_image, samples, firmware_build_root, rule
):
    board = launch.start_virtual_board(start_image.spec, qemu=True, learning=rule, build_root=firmware_build_root)
    try:
        _side_by_side(board, start_image, samples, rule)
    finally:
        board.close()
