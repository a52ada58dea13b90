"""The Verilog core (firmware_bridge/rtl) against the emulator, bit for bit, under Icarus + cocotb.

Stimulus and monitor live in firmware_bridge/_rtl_cocotb.py, the model is
popcount_learn.emulator.emulate itself and the checker is firmware_bridge.rtl.sim: these tests
only choose networks and inputs, run them, and assert that the checker finds nothing (and that
it does find a one-LSB change). Skipped only when iverilog/vvp or cocotb >= 2 are absent.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from factories import datapath_configs, graded_net100, random_weight_image
from hypothesis import given, settings
from reference_emulator import reference_emulate

from firmware_bridge import check
from firmware_bridge.rtl import sim as rtl_sim
from firmware_bridge.rtl.params import RtlLayout
from popcount_learn import codegen, h5io
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate, encode_input_steps
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import LayerImage, WeightImage

REPO_ROOT = Path(__file__).resolve().parent.parent
NET100 = REPO_ROOT / "datasets" / "pretrained" / "net100-int8.h5"
NET600 = REPO_ROOT / "datasets" / "pretrained" / "net600-int8.h5"
NET600_INT4 = REPO_ROOT / "datasets" / "pretrained" / "net600-int4.h5"
NET600_INT4_MSE = REPO_ROOT / "datasets" / "pretrained" / "net600-int4-mse.h5"


# ----------------------------------------------------------------------------------------------
# Generated parameters and the memory layout (no simulator needed)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(datapath_configs())
def test_verilog_header_carries_every_constant_of_the_spec(spec):
    text = codegen.rtl_spec_headers(spec)["pcl_datapath.vh"]
    values = {m[1]: int(eval(m[2])) for m in re.finditer(r"localparam integer PCL_(\w+) = (.+);", text)}
    assert values["TIME_SHIFT"] == spec.time_shift
    assert values["WEIGHT_BITS"] == spec.weight_bits
    assert values["CURRENT_FRAC_BITS"] == spec.current_frac_bits
    assert values["CURRENT_BITS"] == spec.current_bits
    assert values["MEMBRANE_BITS"] == spec.membrane_bits
    assert (values["CURRENT_MIN"], values["CURRENT_MAX"]) == (spec.current_min, spec.current_max)
    assert (values["MEMBRANE_MIN"], values["MEMBRANE_MAX"]) == (spec.membrane_min, spec.membrane_max)
    assert values["CURRENT_WRAP"] == (spec.current_overflow == "wrap")
    assert values["MEMBRANE_WRAP"] == (spec.membrane_overflow == "wrap")
    assert values["TIE_BY_LOWEST_INDEX"] == (spec.tie_rule == "lowest_index")
    assert values["MAX_STEPS"] == spec.max_steps
    assert values["DARK_INPUT_STEP"] == spec.dark_input_step
    assert values["INPUT_THRESHOLD"] == spec.input_threshold


@pytest.mark.parametrize("lanes", [1, 3, 4, 8])
def test_weight_words_hold_every_weight_where_the_core_reads_it(lanes):
    # Decode the RAM image the slow, obvious way: word base + (row << shift) + group, lane bits.
    spec = DatapathConfig(weight_bits=5, current_bits=16, membrane_bits=16)
    image = random_weight_image(7, spec=spec, topology=(5, 11, 3, 2))
    layout = RtlLayout.for_image(image, lanes)
    words = layout.weight_words_of(image)
    assert len(words) == layout.weight_words
    wb = spec.weight_bits
    for k, layer in enumerate(image.layers):
        w = layer.weights_lsb
        for r in range(w.shape[0]):
            for j in range(w.shape[1]):
                word = words[layout.weight_base[k] + (r << layout.row_shift[k]) + j // lanes]
                raw = (word >> (wb * (j % lanes))) & ((1 << wb) - 1)
                assert raw - (1 << wb) * (raw >> (wb - 1)) == w[r, j]
    assert layout.row_words[0] >= layout.groups[0] and layout.row_words[0] < 2 * layout.groups[0]


def test_input_beats_are_sorted_by_step_and_drop_spikes_that_never_arrive():
    spec = DatapathConfig(max_steps=10)
    layout = RtlLayout(spec, (6, 2), 2)
    i_bits, s_bits = layout.widths["IN_INDEX_BITS"], layout.widths["STEP_BITS"]
    beats = layout.input_beats(np.array([3, -1, 0, 10, 3, 9]))
    decoded = [
        ((b >> (i_bits + s_bits)) & 1, (b >> i_bits) & ((1 << s_bits) - 1), b & ((1 << i_bits) - 1)) for b in beats
    ]
    assert decoded == [(0, 0, 2), (0, 3, 0), (0, 3, 4), (1, 9, 5)]
    assert layout.input_beats(np.array([-1, 12, -1, -1, -1, -1])) == [(1 << (i_bits + s_bits)) | (10 << i_bits)]


# ----------------------------------------------------------------------------------------------
# Random small networks: saturation, wrap, ties, no decision, several lane counts


def _random_network(rng, spec, topology):
    """Weights over the full range with extremes sprinkled in, thresholds that make neurons fire."""
    layers = []
    wmin, wmax = spec.weight_min, spec.weight_max
    for n_pre, n_post in itertools.pairwise(topology):
        shape = (n_pre + 1, n_post)
        w = rng.integers(wmin, wmax + 1, size=shape)
        if rng.random() < 0.6:  # mostly excitatory, so that spikes propagate
            w = np.clip(np.abs(w) - (rng.random(shape) < 0.2) * np.abs(w), wmin, wmax)
        pick = rng.random(shape) < 0.15
        w[pick] = rng.choice([wmin, wmax, 0, 1, -1], size=int(pick.sum()))
        th = int(2.0 ** (spec.weight_bits - 2 + spec.current_frac_bits + rng.integers(-1, 6)) * rng.uniform(0.5, 2.0))
        layers.append(LayerImage(w.astype(np.int64), min(max(th, 1), spec.membrane_max), 1.0))
    return WeightImage(spec, tuple(layers))


def _random_steps(rng, spec, n_images, n_in):
    special = np.array([-1, 0, 0, 0, 1, 2, spec.max_steps - 1, spec.max_steps, 3 * spec.max_steps])
    shape = (n_images, n_in)
    return np.where(
        rng.random(shape) < 0.6, rng.choice(special, size=shape), rng.integers(-1, spec.max_steps + 2, size=shape)
    )


def _events(image, steps, result):
    stats = Counter()
    reference_emulate(image, steps, stats=stats)
    stats["decision"] = int((result.first_output_step >= 0).sum())
    return stats


# (name, spec fields, topology, lanes, what this set must exercise, throttle, shuffle)
PARAMETER_SETS = [
    (
        "narrow-saturate",
        dict(time_shift=2, weight_bits=6, current_frac_bits=2, current_bits=8, membrane_bits=10, max_steps=24),
        (7, 9, 4),
        1,
        ("current_saturate", "membrane_saturate"),
        False,
        None,
    ),
    (
        "wrap",
        dict(
            time_shift=1,
            weight_bits=5,
            current_frac_bits=1,
            current_bits=6,
            membrane_bits=7,
            current_overflow="wrap",
            membrane_overflow="wrap",
            max_steps=20,
        ),
        (6, 7, 3),
        2,
        ("current_wrap", "membrane_wrap"),
        True,
        11,
    ),
    (
        "ties-lowest-index",
        dict(
            time_shift=0,
            weight_bits=4,
            current_frac_bits=0,
            current_bits=8,
            membrane_bits=9,
            tie_rule="lowest_index",
            max_steps=16,
        ),
        (5, 6, 5),
        3,
        ("tie",),
        False,
        3,
    ),
    (
        "ties-max-membrane",
        dict(time_shift=3, weight_bits=4, current_frac_bits=3, current_bits=10, membrane_bits=12, max_steps=30),
        (5, 10, 6),
        5,
        ("tie_rules_disagree", "no_decision"),
        True,
        None,
    ),
    (
        "three-layers",
        dict(time_shift=4, weight_bits=8, current_frac_bits=4, current_bits=16, membrane_bits=16, max_steps=40),
        (9, 12, 7, 3),
        4,
        ("hidden_spike_at_decision_step", "no_decision"),
        False,
        5,
    ),
]


def _find_case(name, fields, topology, wanted, n_images=24):
    """The first seed (0, 1, ...) whose network and inputs exercise everything in ``wanted``."""
    spec = DatapathConfig(**fields)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        image = _random_network(rng, spec, topology)
        steps = _random_steps(rng, spec, n_images, topology[0])
        result = emulate(image, input_spike_steps=steps)
        stats = _events(image, steps, result)
        if all(stats[w] > 0 for w in wanted) and stats["decision"] > 0:
            return image, steps, result, stats
    raise AssertionError(f"{name}: no seed below 200 exercises {wanted}")


_RUNS: dict = {}


def _run_set(index):
    if index not in _RUNS:
        name, fields, topology, lanes, wanted, throttle, shuffle = PARAMETER_SETS[index]
        image, steps, expected, stats = _find_case(name, fields, topology, wanted)
        observed = rtl_sim.simulate(
            image, input_spike_steps=steps, lanes=lanes, throttle=throttle, shuffle_seed=shuffle, batch_images=8
        )
        _RUNS[index] = (image, steps, expected, observed, stats)
    return _RUNS[index]


@pytest.mark.rtl
@pytest.mark.parametrize("index", range(len(PARAMETER_SETS)), ids=[p[0] for p in PARAMETER_SETS])
def test_random_networks_bit_exact(index):
    _image, steps, expected, observed, _stats = _run_set(index)
    assert observed.faults == {}
    problem = check.compare(expected, observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert len(observed) == len(steps) and np.all(observed.cycles > 0)


@pytest.mark.rtl
def test_random_sets_cover_saturation_wrap_ties_and_no_decision():
    total = Counter()
    for index in range(len(PARAMETER_SETS)):
        total.update(_run_set(index)[4])
    for key in (
        "current_saturate",
        "current_wrap",
        "membrane_saturate",
        "membrane_wrap",
        "tie",
        "tie_rules_disagree",
        "no_decision",
        "hidden_spike_at_decision_step",
        "decision",
    ):
        assert total[key] > 0, (key, total)


@pytest.mark.rtl
def test_learning_build_infers_as_the_inference_core():
    """The learning build (pcl_learn beside the core) answers plain inference requests with the
    emulator's results, in the inference-only core's cycles image for image."""
    image, steps, expected, observed, _stats = _run_set(4)
    _name, _fields, _topology, lanes, _wanted, throttle, shuffle = PARAMETER_SETS[4]
    learned = rtl_sim.simulate(
        image,
        input_spike_steps=steps,
        lanes=lanes,
        learning=LearningConfig(),
        throttle=throttle,
        shuffle_seed=shuffle,
        batch_images=8,
    )
    assert learned.faults == {}
    problem = check.compare(expected, learned, body="RTL (learning build)").first_mismatch
    assert problem is None, problem
    np.testing.assert_array_equal(learned.cycles, observed.cycles)


@pytest.mark.rtl
@pytest.mark.slow
def test_learning_build_infers_1000_mnist_test_images(mnist_dir):
    """net100-int8 in the 4-lane learning build on MNIST test images 0-999: every result field as
    the emulator's (~20 min of Icarus at load ~7; BENCHMARKS.md issue #16 part 4 has the tool run)."""
    image = h5io.load_weight_image(NET100)
    images = load_mnist(mnist_dir, "test").images[:1000]
    observed = rtl_sim.simulate(image, images, lanes=4, learning=LearningConfig())
    assert observed.faults == {} and len(observed.cycles) == 1000
    problem = check.compare(emulate(image, images), observed, body="RTL (learning build)").first_mismatch
    assert problem is None, problem


@pytest.mark.rtl
@pytest.mark.parametrize("index", [0, 1], ids=["saturate", "wrap"])
def test_threshold_at_the_membrane_bound(index):
    """Every threshold at membrane_max: in the saturating set a neuron fires only when V reaches
    the bound (the fire compare on the unsaturated sum must still see V = MEM_MAX); in the
    wrapping set only when V + I lands exactly on it."""
    image, steps, _expected, _observed, _stats = _run_set(index)
    _name, _fields, _topology, lanes, _wanted, throttle, shuffle = PARAMETER_SETS[index]
    top = image.spec.membrane_max
    layers = tuple(LayerImage(layer.weights_lsb, top, layer.scale) for layer in image.layers)
    # stronger weights so that the membrane reaches its bound
    layers = tuple(
        LayerImage(np.clip(np.abs(layer.weights_lsb) * 4, 0, image.spec.weight_max), top, layer.scale)
        for layer in layers
    )
    bound = WeightImage(image.spec, layers)
    expected = emulate(bound, input_spike_steps=steps)
    observed = rtl_sim.simulate(
        bound, input_spike_steps=steps, lanes=lanes, throttle=throttle, shuffle_seed=shuffle, batch_images=8
    )
    problem = check.compare(expected, observed, body="RTL").first_mismatch
    assert problem is None, problem
    if index == 0:
        assert sum(int((s >= 0).sum()) for s in expected.spike_steps) > 0  # some neuron reached the bound


# ----------------------------------------------------------------------------------------------
# The checker catches a one-LSB change


def _one_lsb_variants(image, thresholds: bool = True):
    """Every image that differs from ``image`` by +-1 in one weight or (``thresholds``) one threshold."""
    for k, layer in enumerate(image.layers):
        for delta in (1, -1) if thresholds else ():
            th = layer.threshold_lsb + delta
            if 1 <= th <= image.spec.membrane_max:
                yield f"threshold of layer {k} {delta:+d}", _replace_layer(image, k, layer.weights_lsb, th)
        w = layer.weights_lsb
        for r in range(w.shape[0]):
            for j in range(w.shape[1]):
                for delta in (1, -1):
                    if image.spec.weight_min <= w[r, j] + delta <= image.spec.weight_max:
                        w2 = w.copy()
                        w2[r, j] += delta
                        yield f"weight [{k}][{r}, {j}] {delta:+d}", _replace_layer(image, k, w2, layer.threshold_lsb)


def _replace_layer(image, k, weights, threshold):
    layers = list(image.layers)
    layers[k] = LayerImage(weights, int(threshold), layers[k].scale)
    return WeightImage(image.spec, tuple(layers))


@pytest.mark.rtl
def test_one_lsb_change_in_the_model_is_reported():
    image, steps, expected, observed, _ = _run_set(0)
    assert check.compare(expected, observed, body="RTL").first_mismatch is None
    caught = 0
    for what, variant in _one_lsb_variants(image):
        changed = emulate(variant, input_spike_steps=steps)
        if check.compare(expected, changed, body="emulator").ok:
            continue  # this LSB makes no visible difference on these inputs
        report = check.compare(changed, observed, body="RTL").first_mismatch
        assert report is not None, what
        assert "!=" in report and report.startswith("image "), report
        caught += 1
        if caught >= 5:
            break
    assert caught >= 5


@pytest.mark.rtl
@pytest.mark.parametrize(
    "field",
    ["predicted", "first_output_step", "steps_to_decision", "tie", "rows_read", "synaptic_additions", "spike_steps"],
)
def test_checker_compares_every_field(field):
    import dataclasses

    _, _, expected, observed, _ = _run_set(2)
    value = getattr(observed, field)
    if field == "spike_steps":
        layer = value[-1].copy()
        layer[0, 0] += 1
        value = (*value[:-1], layer)
    else:
        value = value.copy()
        value.flat[0] = (not value.flat[0]) if value.dtype == bool else value.flat[0] + 1
    corrupted = dataclasses.replace(observed, **{field: value})
    report = check.compare(expected, corrupted, body="RTL").first_mismatch
    assert report is not None and report.startswith("image 0:")
    label = "spike steps" if field == "spike_steps" else check.FIELD_LABELS[field]
    assert re.search(rf"{label} .*!=", report), report


# ----------------------------------------------------------------------------------------------
# MNIST with the shipped 784-100-10 int8 image


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    return load_mnist(mnist_dir, "test")


@pytest.mark.rtl
def test_mnist_net100_int8_bit_exact_on_200_images(mnist_test):
    image = h5io.load_weight_image(NET100)
    images = mnist_test.images[:200]
    observed = rtl_sim.simulate(image, images, lanes=4)
    expected = emulate(image, images)
    problem = check.compare(expected, observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert observed.faults == {}
    assert np.mean(observed.predicted == mnist_test.labels[:200]) > 0.9


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize(
    "path, n, lanes", [(NET100, 2000, 8), (NET600, 200, 4), (NET600_INT4, 200, 4), (NET600_INT4_MSE, 200, 4)]
)
def test_mnist_more_images_bit_exact(mnist_test, path, n, lanes):
    image = h5io.load_weight_image(path)
    images = mnist_test.images[:n]
    observed = rtl_sim.simulate(image, images, lanes=lanes)
    problem = check.compare(emulate(image, images), observed, body="RTL").first_mismatch
    assert problem is None, problem


@pytest.mark.rtl
def test_mnist_net600_int4_bit_exact_on_5_images(mnist_test):
    """The shipped 4-bit image (issue #17) in the core built for its spec."""
    image = h5io.load_weight_image(NET600_INT4)
    assert image.spec.weight_bits == 4
    images = mnist_test.images[:5]  # 784-600-10 in the simulator is slow: 200 images in the slow run
    observed = rtl_sim.simulate(image, images, lanes=4)
    problem = check.compare(emulate(image, images), observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert observed.faults == {}


# ----------------------------------------------------------------------------------------------
# Graded input (issue 14): per-input steps through the core's {step, index} beats


@pytest.mark.rtl
def test_graded_mnist_bit_exact_and_a_one_step_input_shift_is_reported(mnist_test):
    image = graded_net100()
    images = mnist_test.images[:20]
    steps = encode_input_steps(image.spec, images, image.input_encoding)
    assert len(np.unique(steps)) > 50 and (steps == -1).any()
    expected = emulate(image, images)
    # Image 4 goes to the core with one input a step late, chosen so that the emulator notices.
    i = 4
    for j in np.argsort(steps[i], kind="stable"):
        if steps[i, j] >= 0:
            shifted = steps.copy()
            shifted[i, j] += 1
            if not check.compare(expected, emulate(image, input_spike_steps=shifted), body="emulator").ok:
                break
    else:
        raise AssertionError("no one-step shift of an input changed image 4")
    observed = rtl_sim.simulate(image, input_spike_steps=shifted, lanes=4)
    assert observed.faults == {}
    assert check.compare(expected, observed, body="RTL").mismatched == (i,)  # the 19 others are exact
    assert check.compare(emulate(image, input_spike_steps=shifted), observed, body="RTL").ok


@pytest.mark.rtl
@pytest.mark.slow
def test_graded_mnist_bit_exact_on_200_images(mnist_test):
    image = graded_net100()
    images = mnist_test.images[:200]
    observed = rtl_sim.simulate(image, images, lanes=4)
    problem = check.compare(emulate(image, images), observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert observed.faults == {}
    assert np.mean(observed.predicted == mnist_test.labels[:200]) > 0.9


# ----------------------------------------------------------------------------------------------
# CLI


@pytest.mark.rtl
def test_cli_rtl_compare(capsys):
    from popcount_learn.cli import main

    assert main(["rtl", "compare", "--image", str(NET100), "--limit", "3", "--lanes", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.match(
        r"3 images: RTL == emulator on class, decision step, tie, [\d,]+ spike steps and the counters\n", out
    ), out
    assert re.search(r"\ncycles_mean +\d+", out) and "sim_images_per_s" in out


def test_cli_rtl_compare_refuses_a_float_model(capsys):
    from popcount_learn.cli import main

    code = main(["rtl", "compare", "--image", str(REPO_ROOT / "datasets" / "pretrained" / "net100.h5"), "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and ("float model" in err or "RTL" in err or "install" in err)
