"""The learning build of the Verilog core against the learner (popcount_learn.onchip), weight for weight.

The model is ``OnchipLearner`` itself and the checker is ``firmware_bridge.check`` (through
``commands.rtl_train_side_by_side``): these tests choose networks, rules and samples, run the
core under Icarus + cocotb, and assert that the checker finds nothing on every step's forward
pass, every result field and the weight RAM read back, and that it does find a one-LSB
difference in one weight and a flipped sign bit. Skipped when iverilog/vvp or cocotb are absent.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from bench_qemu_board import cut_hidden
from factories import graded_net100
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rtl import PARAMETER_SETS, _random_network, _random_steps

from firmware_bridge import commands
from firmware_bridge.rtl import train_sim
from firmware_bridge.rtl.params import RtlLayout
from popcount_learn import codegen, h5io
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import encode_input_steps
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.learning import CORRECT_RULES, OUTPUT_RULES, LearningConfig
from popcount_learn.onchip import OnchipLearner, training_forward_pass
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image
from popcount_learn.train import expected_active_inputs
from popcount_learn.weight_image import LayerImage, WeightImage, image_crc32

REPO_ROOT = Path(__file__).resolve().parent.parent
NET100 = REPO_ROOT / "datasets" / "pretrained" / "net100-int8.h5"


# ----------------------------------------------------------------------------------------------
# The rule's constants reach the RTL through codegen (no simulator needed)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    st.integers(1, 1 << 16),
    st.integers(0, 65536),
    st.integers(0, 65536),
    st.integers(0, (1 << 31) - 1),
    st.integers(0, (1 << 32) - 1),
    st.sampled_from(OUTPUT_RULES),
    st.sampled_from(CORRECT_RULES),
    st.integers(0, (1 << 16) - 1),
)
def test_learning_header_carries_every_constant_of_the_rule(
    margin, p_hidden, p_out, halving, seed, out_rule, c_rule, target
):
    learning = LearningConfig(margin, p_hidden, p_out, halving, seed, out_rule, c_rule, target)
    text = codegen.rtl_spec_headers(DatapathConfig(), learning)["pcl_learning.vh"]
    values = {}
    for m in re.finditer(r"localparam (?:integer|\[31:0\]) PCL_(\w+) = (?:32'([dh]))?(\w+);", text):
        values[m[1]] = int(m[3], 16 if m[2] == "h" else 10)
    assert values["LEARN_MARGIN_STEPS"] == margin
    assert values["LEARN_HIDDEN_UPDATE_PROB_Q16"] == p_hidden
    assert values["LEARN_OUTPUT_UPDATE_PROB_Q16"] == p_out
    assert values["LEARN_PROB_HALVING_SAMPLES"] == halving
    assert values["LEARN_SEED"] == seed
    assert values["LEARN_USE_ALL_VIOLATORS"] == (out_rule == "all_violators")
    assert values["LEARN_USE_CORRECT_ALWAYS"] == (c_rule == "always")
    assert values["LEARN_HIDDEN_SPIKE_TARGET"] == target


def test_inference_only_layout_has_no_learning_header():
    spec = DatapathConfig()
    plain = RtlLayout(spec, (6, 5, 3), 2).headers()["pcl_topology.vh"]
    learn = RtlLayout(spec, (6, 5, 3), 2, LearningConfig()).headers()["pcl_topology.vh"]
    assert "localparam integer PCL_LEARNING = 0;" in plain
    assert "localparam integer PCL_LEARNING = 1;" in learn


# ----------------------------------------------------------------------------------------------
# What a run exercised, from the model (the learner and the emulator), not from the RTL


def _coverage(image: WeightImage, learning: LearningConfig, steps, labels, first_t: int) -> Counter:
    """Events of the rule on these samples: weights pushed against either bound, silent correct
    outputs, hidden deltas, ties, probability halvings crossed and sample indices near 2**32."""
    seen = Counter()
    learner = OnchipLearner(image, learning)
    spec = image.spec
    for i in range(len(steps)):
        t = first_t + i
        before = [w.astype(np.int64) for w in learner.image().weights_lsb]
        fwd = training_forward_pass(learner.image(), learning, steps[i], int(labels[i]))
        seen["tie"] += int(fwd.tie[0])
        if learning.output_rule == "all_violators":  # violators after D + m - 1 (the window from s_c)
            out, d, m = fwd.spike_steps[-1][0], int(fwd.first_output_step[0]), learning.margin_steps
            s_c = int(out[labels[i]])
            late = [
                j for j in range(len(out)) if j != labels[i] and out[j] > d + m - 1 and (s_c < 0 or out[j] < s_c + m)
            ]
            seen["late_violators"] += int(len(late) > 0)
        seen["silent_correct"] += int(fwd.spike_steps[-1][0, labels[i]] < 0)
        result = learner.step(steps[i], int(labels[i]), t)
        seen["changed"] += int(result.weights_changed > 0)
        seen["hidden_delta"] += int(result.neurons_with_delta > 0 and result.hidden_spikes_delivered > 0)
        for w0, w1 in zip(before, learner.image().weights_lsb, strict=True):
            moved = w1.astype(np.int64) - w0
            # A neuron whose column moved one way while a weight at the bound in that direction stayed.
            up, down = (moved > 0).any(axis=0), (moved < 0).any(axis=0)
            seen["saturate_max"] += int(((w0 == spec.weight_max) & up[None, :]).sum())
            seen["saturate_min"] += int(((w0 == spec.weight_min) & down[None, :]).sum())
        if learning.prob_halving_samples and i and t % learning.prob_halving_samples == 0:
            seen["halving_crossed"] += 1
        seen["t_near_2_32"] += int(t >= (1 << 32) - 16)
    return seen


def _extremes(rng, image: WeightImage, fraction: float) -> WeightImage:
    """``image`` with a fraction of its weights moved to the bounds (so updates saturate)."""
    spec = image.spec
    layers = []
    for layer in image.layers:
        w = layer.weights_lsb.copy()
        pick = rng.random(w.shape) < fraction
        w[pick] = rng.choice([spec.weight_min, spec.weight_max], size=int(pick.sum()))
        layers.append(LayerImage(w, layer.threshold_lsb, layer.scale))
    return WeightImage(spec, tuple(layers))


# The datapaths of test_rtl's inference sets, by name.
INFERENCE_SPEC_FIELDS = {name: fields for name, fields, *_ in PARAMETER_SETS}
# (name, spec fields, topology, lanes, learning, first sample index, steps, throttle)
TRAIN_SETS = [
    (
        "saturate-earliest-when-violated",
        dict(time_shift=2, weight_bits=4, current_frac_bits=2, current_bits=10, membrane_bits=12, max_steps=24),
        (7, 9, 4),
        1,
        LearningConfig(margin_steps=3, prob_halving_samples=0, seed=5),
        0,
        14,
        False,
    ),
    (
        "all-violators-always-halving",
        dict(time_shift=3, weight_bits=5, current_frac_bits=3, current_bits=10, membrane_bits=12, max_steps=30),
        (6, 10, 5),
        2,
        LearningConfig(
            margin_steps=2,
            hidden_update_prob_q16=40000,
            output_update_prob_q16=65535,
            prob_halving_samples=3,
            seed=0xDEADBEEF,
            output_rule="all_violators",
            correct_rule="always",
        ),
        1,
        14,
        True,
    ),
    (
        "three-layers-wrap-t-near-2^32",
        dict(
            time_shift=2,
            weight_bits=6,
            current_frac_bits=2,
            current_bits=9,
            membrane_bits=10,
            current_overflow="wrap",
            membrane_overflow="wrap",
            max_steps=28,
        ),
        (8, 11, 7, 3),
        3,
        LearningConfig(margin_steps=5, hidden_update_prob_q16=50000, prob_halving_samples=0, seed=12345),
        (1 << 32) - 12,
        12,
        False,
    ),
    (
        "ties-lowest-index-margin-1",
        INFERENCE_SPEC_FIELDS["ties-lowest-index"],
        (5, 6, 5),
        4,
        LearningConfig(margin_steps=1, prob_halving_samples=5, correct_rule="always", seed=77),
        3,
        14,
        False,
    ),
    (
        "spike-target-two-hidden-layers",
        dict(time_shift=2, weight_bits=5, current_frac_bits=2, current_bits=10, membrane_bits=12, max_steps=26),
        (7, 9, 6, 3),
        2,
        LearningConfig(
            margin_steps=3, hidden_update_prob_q16=50000, prob_halving_samples=0, seed=99, hidden_spike_target=2
        ),
        0,
        12,
        False,
    ),
]

_TRAIN_RUNS: dict = {}


def _train_case(index):
    """The set's network, samples and labels (the first seed whose samples make the model train)."""
    name, fields, topology, lanes, learning, first_t, n, throttle = TRAIN_SETS[index]
    spec = DatapathConfig(**fields)
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        image = _extremes(rng, _random_network(rng, spec, topology), 0.15)
        steps = _random_steps(rng, spec, n, topology[0])
        labels = rng.integers(0, topology[-1], size=n)
        seen = _coverage(image, learning, steps, labels, first_t)
        if seen["changed"] >= n // 2 and seen["hidden_delta"] > 0:
            return image, learning, steps, labels, first_t, lanes, throttle, seen
    raise AssertionError(f"{name}: no seed below 100 makes the network train")


def _train_run(index):
    if index not in _TRAIN_RUNS:
        image, learning, steps, labels, first_t, lanes, throttle, seen = _train_case(index)
        out = commands.rtl_train_side_by_side(
            image, learning, steps, labels, first_sample_index=first_t, lanes=lanes, readback_every=1, throttle=throttle
        )
        _TRAIN_RUNS[index] = (out, seen)
    return _TRAIN_RUNS[index]


@pytest.mark.rtl
@pytest.mark.parametrize("index", range(len(TRAIN_SETS)), ids=[s[0] for s in TRAIN_SETS])
def test_random_networks_train_weight_for_weight(index):
    out, _ = _train_run(index)
    assert out["first_mismatch"] is None, out["first_mismatch"]
    n = TRAIN_SETS[index][6]
    assert out["steps"] == n and out["weight_checks"] == n and out["mismatches"] == 0
    assert out["weights_changed"] > 0
    assert out["cycles_max"] >= out["cycles_median"] > 0


@pytest.mark.rtl
def test_random_training_sets_cover_the_rule():
    total = Counter()
    for index in range(len(TRAIN_SETS)):
        total.update(_train_run(index)[1])
    for key in (
        "saturate_max",
        "saturate_min",
        "silent_correct",
        "hidden_delta",
        "tie",
        "halving_crossed",
        "t_near_2_32",
        "late_violators",
    ):
        assert total[key] > 0, (key, total)


@pytest.mark.rtl
def test_hypothesis_drawn_tiny_networks_and_rules():
    @settings(
        max_examples=3,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.integers(0, 2**31),
        st.integers(1, 6),
        st.sampled_from([1, 20000, 65535, 65536]),
        st.sampled_from([0, 1, 2, 7]),
        st.integers(0, 2**32 - 1),
        st.sampled_from(OUTPUT_RULES),
        st.sampled_from(CORRECT_RULES),
        st.sampled_from([0, 2**32 - 6]),
        st.integers(1, 4),
        st.sampled_from([0, 1, 3]),
    )
    def check(seed, margin, prob, halving, key, out_rule, c_rule, first_t, lanes, target):
        rng = np.random.default_rng(seed)
        spec = DatapathConfig(
            time_shift=2,
            weight_bits=int(rng.integers(3, 8)),
            current_frac_bits=2,
            current_bits=12,
            membrane_bits=12,
            max_steps=int(rng.integers(12, 30)),
            current_overflow=str(rng.choice(["saturate", "wrap"])),
            tie_rule=str(rng.choice(["lowest_index", "max_membrane"])),
        )
        topology = (int(rng.integers(2, 8)), int(rng.integers(1, 8)), int(rng.integers(2, 5)))
        image = _random_network(rng, spec, topology)
        learning = LearningConfig(margin, prob, prob, halving, key, out_rule, c_rule, target)
        steps = _random_steps(rng, spec, 5, topology[0])
        labels = rng.integers(0, topology[-1], size=5)
        out = commands.rtl_train_side_by_side(
            image, learning, steps, labels, first_sample_index=first_t, lanes=lanes, readback_every=1
        )
        assert out["first_mismatch"] is None, out["first_mismatch"]
        assert out["steps"] == 5 and out["weight_checks"] == 5

    check()


# ----------------------------------------------------------------------------------------------
# The comparison catches a one-LSB difference in one weight and a flipped sign bit


def _with_weight(image: WeightImage, k: int, r: int, j: int, value: int) -> WeightImage:
    layers = list(image.layers)
    w = layers[k].weights_lsb.copy()
    w[r, j] = value
    layers[k] = LayerImage(w, layers[k].threshold_lsb, layers[k].scale)
    return WeightImage(image.spec, tuple(layers))


@pytest.mark.rtl
@pytest.mark.parametrize("what", ["one LSB", "sign bit"])
def test_a_corrupted_weight_is_caught(what):
    image, learning, steps, labels, first_t, lanes, _, _ = _train_case(0)
    spec = image.spec
    w = image.layers[1].weights_lsb
    r, j = map(int, np.argwhere((w > spec.weight_min + 1) & (w < spec.weight_max - 1))[0])
    raw = int(w[r, j]) & ((1 << spec.weight_bits) - 1)
    if what == "one LSB":
        value = int(w[r, j]) + 1
    else:
        raw ^= 1 << (spec.weight_bits - 1)
        value = raw - (1 << spec.weight_bits) * (raw >> (spec.weight_bits - 1))
    bad = _with_weight(image, 1, r, j, value)
    out = commands.rtl_train_side_by_side(
        image,
        learning,
        steps[:4],
        labels[:4],
        first_sample_index=first_t,
        lanes=lanes,
        readback_every=2,
        load_image=bad,
    )
    assert out["mismatches"] == 1 and out["verdict"].startswith("RTL != emulator"), out["verdict"]
    assert out["first_mismatch"] is not None
    # Either a step's forward pass/result already differs, or the read-back names the weight in full.
    if "weight" in out["first_mismatch"] and "forward" not in out["first_mismatch"]:
        assert f"layer 1 weight [row {r}, column {j}]" in out["first_mismatch"], out["first_mismatch"]


# ----------------------------------------------------------------------------------------------
# MNIST with the shipped 784-100-10 int8 image and from a seeded random init


@pytest.fixture(scope="module")
def mnist_train(mnist_dir):
    return load_mnist(mnist_dir, "train")


def _random_init_net100(train):
    spec = h5io.load_weight_image(NET100).spec
    encoding = SpikeEncoding()
    return random_initial_image(
        (784, 100, 10), spec, OnchipTrainConfig(seed=3), encoding, expected_active_inputs(train.images, encoding)
    )


def _mnist_samples(image, train, n):
    """The first ``n`` samples of ``rtl train``'s order, as input steps under the image's own encoding."""
    order = commands.training_order(len(train.images), n, 0)
    return commands.image_input_steps(image, train.images[order]), train.labels[order]


def _mnist_run(image, train, n, lanes, every):
    steps, labels = _mnist_samples(image, train, n)
    return commands.rtl_train_side_by_side(
        image, image.learning or LearningConfig(), steps, labels, lanes=lanes, readback_every=every
    )


def test_mnist_samples_use_the_image_encoding(mnist_train):
    """A graded (latency-encoded) image's samples carry its graded steps, not the binary ones
    (the MNIST runs below once encoded every image as binary)."""
    graded = graded_net100()
    steps, labels = _mnist_samples(graded, mnist_train, 4)
    images = mnist_train.images[commands.training_order(len(mnist_train.images), 4, 0)]
    assert np.array_equal(steps, encode_input_steps(graded.spec, images, graded.input_encoding))
    assert len(np.unique(steps)) > 2 and not np.array_equal(steps, encode_input_steps(graded.spec, images))
    assert labels.shape == (4,)


@pytest.mark.rtl
def test_mnist_net100_trains_weight_for_weight(mnist_train):
    out = _mnist_run(h5io.load_weight_image(NET100), mnist_train, 12, 4, 4)
    assert out["first_mismatch"] is None, out["first_mismatch"]
    assert out["steps"] == 12 and out["weight_checks"] == 3 and out["weights_changed"] > 0


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("start, lanes", [("net100", 4), ("random", 2), ("graded", 4)])
def test_mnist_200_steps_weight_for_weight(mnist_train, start, lanes):
    starts = {"net100": lambda: h5io.load_weight_image(NET100), "random": lambda: _random_init_net100(mnist_train)}
    image = starts.get(start, graded_net100)()
    out = _mnist_run(image, mnist_train, 200, lanes, 10)
    assert out["first_mismatch"] is None, out["first_mismatch"]
    assert out["steps"] == 200 and out["weight_checks"] == 20 and out["weights_changed"] > 0


@pytest.mark.rtl
@pytest.mark.parametrize(
    "n_hidden, n_steps",
    # 784-8-10 x 24 steps took 172 s at load 9-15 and x 12 44 s at load 7-11 (a default-suite
    # test must stay short: 6 steps), 784-100-10 x 24 steps 830 s at load 18
    [(8, 6), pytest.param(100, 24, marks=pytest.mark.slow)],
)
def test_graded_mnist_trains_weight_for_weight_through_rtl_train(tmp_path, mnist_dir, mnist_train, n_hidden, n_steps):
    """``rtl train`` (the CLI's function) on a latency-encoded image (graded_net100, its first
    ``n_hidden`` hidden neurons): the {step, index} beats carry the graded steps, and the core
    trains as the learner does, read back three times."""
    graded = graded_net100()
    if n_hidden < graded.topology[1]:
        graded = dataclasses.replace(cut_hidden(graded, n_hidden), encoding=graded.encoding)
    path = tmp_path / "graded.h5"
    h5io.save_weight_image(path, graded)
    order = commands.training_order(len(mnist_train.images), n_steps, 0)
    steps = commands.image_input_steps(graded, mnist_train.images[order])
    assert len(np.unique(steps)) > 100 and (steps == -1).any()  # graded, with silent inputs
    out = commands.rtl_train(path, steps=n_steps, lanes=4, check_every=n_steps // 3, data_dir=mnist_dir)
    assert out["first_mismatch"] is None, out["first_mismatch"]
    assert out["steps"] == n_steps and out["weight_checks"] == 3 and out["weights_changed"] > 0


# ----------------------------------------------------------------------------------------------
# CLI


@pytest.mark.rtl
def test_cli_rtl_train(capsys, mnist_train):
    from popcount_learn.cli import main

    args = ["rtl", "train", "--image", str(NET100), "--steps", "2", "--check-every", "1", "--lanes", "4"]
    assert main([*args, "--from-step", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"2 training steps: RTL == emulator on every step's forward pass and result and on all ", out), out
    assert re.search(r"\ncycles_mean +\d+", out) and "weights_changed" in out and "cycles_per_step" not in out
    # --from-step 3: the core went on from the learner's weights after samples 0-2 of the order, so
    # its final image is the learner's after all five samples (indices 0-4) in one go.
    image = h5io.load_weight_image(NET100)
    train = mnist_train
    order = commands.training_order(len(train.images), 5, 0)
    learner = OnchipLearner(image, image.learning or LearningConfig())
    learner.train(encode_input_steps(image.spec, train.images[order], image.input_encoding), train.labels[order], 0)
    crc = re.search(r"\nfinal_crc32 +(0x[0-9a-f]{8})", out)
    assert crc and crc.group(1) == f"0x{image_crc32(learner.image()):08x}", out


def test_cli_rtl_train_refuses_bad_input(capsys):
    from popcount_learn.cli import main

    code = main(["rtl", "train", "--image", str(REPO_ROOT / "datasets" / "pretrained" / "net100.h5"), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_training_inputs_are_checked():
    image = _random_network(np.random.default_rng(0), DatapathConfig(), (3, 2, 2))
    learning = LearningConfig()
    with pytest.raises(Exception, match="shape"):
        train_sim.check_training_inputs(image, learning, np.zeros((2, 4), dtype=np.int64), np.zeros(2, np.int64), 0)
    with pytest.raises(Exception, match="2\\*\\*32"):
        train_sim.check_training_inputs(image, learning, np.zeros((2, 3), dtype=np.int64), np.zeros(2, np.int64), 2**32)
    with pytest.raises(Exception, match="labels"):
        commands.rtl_train_side_by_side(image, learning, np.zeros((1, 3), dtype=np.int64), np.array([5]))


@pytest.mark.rtl
def test_up5k_top_trains_weight_for_weight_through_byte_packets():
    image, learning, steps, labels, first_t, _, _, _ = _train_case(1)
    out = commands.rtl_train_side_by_side(
        image, learning, steps[:6], labels[:6], first_sample_index=first_t, lanes=2, readback_every=3, top="up5k"
    )
    assert out["first_mismatch"] is None, out["first_mismatch"]
    assert out["steps"] == 6 and out["weight_checks"] == 2 and out["weights_changed"] > 0
