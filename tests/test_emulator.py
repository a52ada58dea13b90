"""The Numba emulator (and the dense numpy tool) against the slow reference, bit for bit."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import dense_numpy_emulator
import numpy as np
import pytest
from factories import emulator_cases as cases
from factories import make_image
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference_emulator import FIELDS, diff_results, reference_emulate, reference_encode

from popcount_learn import codegen
from popcount_learn import emulator as emulator_module
from popcount_learn.data import load_split
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import (
    EmulationResult,
    emulate,
    encode_input_steps,
    evaluate_emulated,
    first_layer_fire_table,
    pack_image,
    summarize,
)
from popcount_learn.errors import ConfigError
from popcount_learn.h5io import load_weight_image

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run_both(image, images, steps, full_raster, stats, steps_after_decision=0):
    opts = dict(full_raster=full_raster, steps_after_decision=steps_after_decision)
    if images is not None:
        enc = encode_input_steps(image.spec, images)
        ref_steps = reference_encode(image.spec, images)
        assert enc.tolist() == ref_steps
        got = emulate(image, images, **opts)
    else:
        ref_steps = steps
        got = emulate(image, input_spike_steps=steps, **opts)
    ref = reference_emulate(image, ref_steps, stats=stats, **opts)
    return got, ref


def test_kernel_matches_reference_bit_exact():
    stats = Counter()
    n_examples = [0]

    @settings(
        max_examples=500,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cases())
    def check(case):
        image, images, steps = case
        n_examples[0] += 1
        early, ref_early = _run_both(image, images, steps, False, stats)
        assert diff_results(early, ref_early) == []
        full, ref_full = _run_both(image, images, steps, True, stats)
        assert diff_results(full, ref_full) == []
        # The counters refer to the decision, so they do not depend on the raster mode, and the
        # early raster is the full raster cut after the decision step.
        for name in ("predicted", "first_output_step", "steps_to_decision", "tie", "rows_read", "synaptic_additions"):
            assert np.array_equal(getattr(early, name), getattr(full, name)), name
        last = early.steps_to_decision - 1
        for e, f in zip(early.spike_steps, full.spike_steps, strict=True):
            assert np.array_equal(e, np.where(f <= last[:, None], f, -1))
        # Running a few steps past the decision (the learning rule's window) is the full raster
        # cut later, with the same counters.
        extra = n_examples[0] % 4 + 1
        window, ref_window = _run_both(image, images, steps, False, Counter(), extra)
        assert diff_results(window, ref_window) == []
        for name in ("predicted", "first_output_step", "steps_to_decision", "tie", "rows_read", "synaptic_additions"):
            assert np.array_equal(getattr(window, name), getattr(full, name)), name
        end = np.where(early.first_output_step >= 0, last + extra, image.spec.max_steps - 1)
        for w, f in zip(window.spike_steps, full.spike_steps, strict=True):
            assert np.array_equal(w, np.where(f <= end[:, None], f, -1))

    check()
    assert n_examples[0] >= 100
    # The random cases must really exercise every overflow path, ties and no-decisions.
    keys = (
        "current_saturate",
        "current_wrap",
        "membrane_saturate",
        "membrane_wrap",
        "tie",
        "tie_rules_disagree",
        "no_decision",
        "hidden_layer_all_fired",
        "hidden_spike_at_decision_step",
    )
    for key in keys:
        assert stats[key] > 0, (key, stats)


def test_result_fields_match_reference_field_list():
    assert tuple(EmulationResult.FIELDS) == FIELDS


# ----------------------------------------------------------------------------------------------
# The checker catches a one-LSB difference


def _one_neuron(spec, w, threshold, bias=0):
    return make_image(spec, [np.array([[w], [bias]])], [threshold])


def test_one_lsb_threshold_change_is_detected():
    # time_shift 1, no fraction bits, w = 8 arriving at step 0:
    # I: 8, 4, 2, 1, 1, ...   V: 8, 12, 14, 15, 16, ...  -> threshold 15 fires at step 3, 16 at step 4.
    spec = DatapathConfig(
        time_shift=1, weight_bits=5, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=10
    )
    steps = np.array([[0]])
    exact = emulate(_one_neuron(spec, 8, 15), input_spike_steps=steps)
    off_by_one = reference_emulate(_one_neuron(spec, 8, 16), steps)
    assert diff_results(exact, reference_emulate(_one_neuron(spec, 8, 15), steps)) == []
    problems = diff_results(exact, off_by_one)
    assert any(p.startswith("first_output_step") for p in problems)
    assert any(p.startswith("spike_steps[0]") for p in problems)


def test_one_lsb_weight_change_is_detected():
    # Two inputs into one neuron, threshold reached exactly: w = (5, 3), shift 2, frac 0:
    # step 0: I = 8, V = 8; step 1: I = 8 - 2 = 6, V = 14. Threshold 14 -> fires at step 1.
    # With w = (5, 2): I = 7, V = 7; I = 7 - 1 = 6, V = 13; I = 6 - 1 = 5, V = 18 -> step 2.
    spec = DatapathConfig(
        time_shift=2, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=10
    )
    steps = np.array([[0, 0]])
    good = make_image(spec, [np.array([[5], [3], [0]])], [14])
    bad = make_image(spec, [np.array([[5], [2], [0]])], [14])
    got = emulate(good, input_spike_steps=steps)
    assert got.first_output_step.tolist() == [1]
    assert diff_results(got, reference_emulate(good, steps)) == []
    problems = diff_results(got, reference_emulate(bad, steps))
    assert any(p.startswith("first_output_step") for p in problems)


# ----------------------------------------------------------------------------------------------
# Hand-computed tiny cases


@pytest.mark.parametrize("threshold, expected_step", [(8, 0), (12, 1), (14, 2), (15, 3), (16, 4), (20, 8), (21, 9)])
def test_single_neuron_decay_by_hand(threshold, expected_step):
    # shift 1, frac 0, w = 8 at step 0. I_n = I - (I >> 1) after step 0: 8, 4, 2, 1, then 1 forever
    # (1 >> 1 = 0: a positive current below 2**time_shift never decays). V_n: 8, 12, 14, 15, 16, 17, ...
    spec = DatapathConfig(
        time_shift=1, weight_bits=5, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=10
    )
    r = emulate(_one_neuron(spec, 8, threshold), input_spike_steps=np.array([[0]]))
    assert r.first_output_step.tolist() == [expected_step]
    assert r.predicted.tolist() == [0]
    assert r.steps_to_decision.tolist() == [expected_step + 1]


def test_single_neuron_never_fires_past_max_steps():
    # Same neuron, threshold 22 needs step 10 but max_steps = 10 (steps 0..9): no decision.
    spec = DatapathConfig(
        time_shift=1, weight_bits=5, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=10
    )
    r = emulate(_one_neuron(spec, 8, 22), input_spike_steps=np.array([[0]]))
    assert r.predicted.tolist() == [-1]
    assert r.first_output_step.tolist() == [-1]
    assert r.steps_to_decision.tolist() == [10]
    assert r.rows_read.tolist() == [[1]]


def test_negative_current_decays_to_zero_by_hand():
    # shift 1, frac 0: bias -5 at step 0 and input +7 at step 2 (-5 >> 1 = -3: floor).
    # step 0: I = -5, V = -5; step 1: I = -5 + 3 = -2, V = -7; step 2: I = -2 + 1 + 7 = 6, V = -1;
    # step 3: I = 3, V = 2; step 4: I = 2, V = 4; step 5: I = 1, V = 5; step 6: I = 1, V = 6.
    spec = DatapathConfig(
        time_shift=1, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=20
    )
    for threshold, expected in ((4, 4), (5, 5), (6, 6)):
        r = emulate(_one_neuron(spec, 7, threshold, bias=-5), input_spike_steps=np.array([[2]]))
        assert r.first_output_step.tolist() == [expected]


def test_frac_bits_and_current_overflow_by_hand():
    # shift 2, frac 1, current 5 bits (-16..15): two inputs w = 7 arrive as 14 + 14 = 28.
    # saturate: I = 15, V = 15; I = 15 - 3 = 12, V = 27; I = 12 - 3 = 9, V = 36 -> threshold 36 at step 2.
    # (An unbounded register would give V = 28, 49: step 1.)
    base = dict(time_shift=2, weight_bits=4, current_frac_bits=1, current_bits=5, membrane_bits=10, max_steps=20)
    w = np.array([[7], [7], [0]])
    r = emulate(make_image(DatapathConfig(**base), [w], [36]), input_spike_steps=np.array([[0, 0]]))
    assert r.first_output_step.tolist() == [2]
    # wrap: 28 - 32 = -4; I: -4, -3, -2, -1, 0 (floor shift), V falls to -10 and stays: no spike.
    spec = DatapathConfig(**base, current_overflow="wrap")
    r = emulate(make_image(spec, [w], [36]), input_spike_steps=np.array([[0, 0]]))
    assert r.first_output_step.tolist() == [-1]


def test_membrane_wrap_fires_after_overflow_by_hand():
    # membrane 4 bits (-8..7), threshold 7, shift 0 (I lasts one step), frac 0.
    # Bias -6 at step 0: I = -6, V = -6. Step 1: I = 0, V = -6. Input -3 at step 2: I = -3,
    # V = -9 -> wraps to 7 >= 7: fires at step 2. Saturating V would stay at -8 and never fire.
    base = dict(time_shift=0, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=4, max_steps=6)
    for policy, expected in (("wrap", 2), ("saturate", -1)):
        spec = DatapathConfig(**base, membrane_overflow=policy)
        r = emulate(_one_neuron(spec, -3, 7, bias=-6), input_spike_steps=np.array([[2]]))
        assert r.first_output_step.tolist() == [expected], policy


def test_layer_latency_and_counters_by_hand():
    # 1 input -> 1 hidden -> 2 outputs, shift 0 (I = arrivals of this step only), frac 0.
    # Input at step 0, w = 5, hidden threshold 5: hidden fires at step 0, arrives at step 1.
    # Output 0: w = 3, threshold 3 -> fires at step 1. Output 1: w = 2 -> V = 2 at step 1 only.
    spec = DatapathConfig(
        time_shift=0, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=8
    )
    img = make_image(spec, [np.array([[5], [0]]), np.array([[3, 2], [0, 0]])], [5, 3])
    r = emulate(img, input_spike_steps=np.array([[0]]), full_raster=True)
    assert r.spike_steps[0].tolist() == [[0]]
    assert r.spike_steps[1].tolist() == [[1, -1]]
    assert r.predicted.tolist() == [0]
    assert r.first_output_step.tolist() == [1]
    assert r.rows_read.tolist() == [[1, 1]]
    # (1 input row + bias) * 1 + (1 hidden row + bias) * 2
    assert r.synaptic_additions.tolist() == [2 + 4]


def test_tie_rules_by_hand():
    # Two outputs cross at step 0 with V = 6 and 9 (threshold 5): max_membrane picks 1, lowest_index 0.
    for rule, expected in (("max_membrane", 1), ("lowest_index", 0)):
        spec = DatapathConfig(
            time_shift=1,
            weight_bits=5,
            current_frac_bits=0,
            current_bits=8,
            membrane_bits=8,
            max_steps=4,
            tie_rule=rule,
        )
        img = make_image(spec, [np.array([[6, 9], [0, 0]])], [5])
        r = emulate(img, input_spike_steps=np.array([[0]]))
        assert r.predicted.tolist() == [expected]
        assert r.tie.tolist() == [True]


def test_hidden_spike_at_decision_step_is_not_delivered():
    # Hidden neuron 0 fires at step 0, hidden neuron 1 at step 1; output fires at step 1 from the
    # bias alone -> only the step-0 hidden spike is delivered (arrives at step 1 <= D = 1).
    # shift 12: I - (I >> 12) = I for these small currents, so I is held (no decay).
    spec = DatapathConfig(
        time_shift=12, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=8
    )
    w1 = np.array([[4, 2], [0, 0]])  # V(h0) = 4 at step 0; V(h1) = 2, 4 -> threshold 4 at step 1
    w2 = np.array([[0], [0], [2]])  # bias 2: V = 2, 4 -> threshold 4 at step 1
    img = make_image(spec, [w1, w2], [4, 4])
    r = emulate(img, input_spike_steps=np.array([[0]]))
    assert r.spike_steps[0].tolist() == [[0, 1]]
    assert r.first_output_step.tolist() == [1]
    assert r.rows_read.tolist() == [[1, 1]]


# ----------------------------------------------------------------------------------------------
# API, summaries and errors


def test_evaluate_and_summary_statistics():
    spec = DatapathConfig(
        time_shift=0,
        weight_bits=4,
        current_frac_bits=0,
        current_bits=8,
        membrane_bits=8,
        max_steps=8,
        input_threshold=100,
        dark_input_step=3,
    )
    img = make_image(spec, [np.array([[5], [5], [0]]), np.array([[3, 0], [0, 0]])], [5, 3])
    images = np.array([[255, 0], [0, 0]], dtype=np.uint8)
    labels = np.array([0, 1])
    s = evaluate_emulated(img, images, labels)
    # Image 0: input 0 at step 0 -> hidden fires at 0 -> output 0 at step 1 (correct);
    #   input 1 (dark, step 3) is not delivered. Image 1: both inputs at step 3 -> hidden at 3,
    #   output 0 at step 4 (wrong label).
    assert s["n"] == 2
    assert s["accuracy"] == 0.5
    assert s["no_decision_count"] == 0
    assert s["tie_count"] == 0
    assert s["mean_steps_to_decision"] == (2 + 5) / 2
    assert s["hidden_spikes_before_decision_mean"] == 1.0
    assert s["input_weight_rows_read_fraction"] == (1 / 2 + 2 / 2) / 2
    assert s["input_spikes_before_decision_fraction"] == 3 / 4
    assert s["hidden_weight_rows_read_fraction"] == 1.0
    assert s["weight_rows_read_fraction_per_layer"] == [0.75, 1.0]
    assert s["synaptic_additions_mean"] == ((1 + 1) * 1 + (1 + 1) * 2 + (2 + 1) * 1 + (1 + 1) * 2) / 2


def test_input_errors():
    spec = DatapathConfig(max_steps=8)
    img = make_image(spec, [np.zeros((3, 1), dtype=np.int64)], [5])
    with pytest.raises(ConfigError, match="exactly one"):
        emulate(img)
    with pytest.raises(ConfigError, match="uint8"):
        emulate(img, np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(ConfigError, match="pixels"):
        emulate(img, np.zeros((1, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match="shape"):
        emulate(img, input_spike_steps=np.zeros((1, 5), dtype=np.int64))
    with pytest.raises(ConfigError, match="-1"):
        emulate(img, input_spike_steps=np.full((1, 2), -2))
    with pytest.raises(ConfigError, match="labels"):
        summarize(emulate(img, input_spike_steps=np.zeros((2, 2), dtype=np.int64)), np.zeros(3))


# ----------------------------------------------------------------------------------------------
# The dense numpy tool is bit-exact too


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_dense_numpy_tool_matches_reference(case):
    dense = dense_numpy_emulator
    image, images, steps = case
    if steps is None:
        steps = encode_input_steps(image.spec, images)
    got = dense.dense_emulate(image, steps)
    ref = reference_emulate(image, steps)
    assert np.array_equal(got["predicted"], ref["predicted"])
    assert np.array_equal(got["first_output_step"], ref["first_output_step"])
    assert np.array_equal(got["tie"], ref["tie"])
    for g, w in zip(got["spike_steps"], ref["spike_steps"], strict=True):
        assert np.array_equal(g, w)


# ----------------------------------------------------------------------------------------------
# Plots (need matplotlib)


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from popcount_learn.plots import plot_decision_histograms, plot_raster

    spec = DatapathConfig(
        time_shift=0, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=8
    )
    img = make_image(spec, [np.array([[5], [0]]), np.array([[3, 2], [0, 0]])], [5, 3])
    steps = np.array([[0], [-1]])
    result = emulate(img, input_spike_steps=steps, full_raster=True)
    paths = plot_decision_histograms(result, tmp_path)
    assert sorted(p.name for p in paths) == ["hidden_spikes_before_decision.png", "steps_to_decision.png"]
    raster = plot_raster(result, 0, tmp_path / "raster.png")
    for p in [*paths, raster]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hidden_spikes_before_decision.png",
        "raster.png",
        "steps_to_decision.png",
    ]
    with pytest.raises(ConfigError, match="index 2"):
        plot_raster(result, 2, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="does not exist"):
        plot_decision_histograms(result, tmp_path / "missing")
    with pytest.raises(ConfigError, match="does not exist"):
        plot_raster(result, 0, tmp_path / "missing" / "r.png")


def test_plot_files_follow_the_umask_and_write_errors_are_config_errors(tmp_path):
    pytest.importorskip("matplotlib")
    import os
    import stat

    from popcount_learn.plots import plot_raster

    spec = DatapathConfig(
        time_shift=0, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=8
    )
    result = emulate(make_image(spec, [np.array([[5], [0]])], [5]), input_spike_steps=np.array([[0]]))
    umask = os.umask(0o022)
    try:
        path = plot_raster(result, 0, tmp_path / "r.png")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # was 0o600 (mkstemp)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match=r"cannot write .*taken"):
        plot_raster(result, 0, tmp_path / "taken")  # a directory: the rename fails
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.png", "taken"]
    for index in (0.5, True):
        with pytest.raises(ConfigError, match="index must be an integer"):
            plot_raster(result, index, tmp_path / "x.png")


def test_raster_counts_only_the_input_spikes_of_the_steps_run(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from popcount_learn import plots

    # Input 0 at step 0 makes the single output fire at step 0; input 1 (step 3) is never read.
    spec = DatapathConfig(
        time_shift=0, weight_bits=4, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=8
    )
    img = make_image(spec, [np.array([[5], [0], [0]])], [5])
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    for full_raster, expected in ((False, "(1/2 fired)"), (True, "(2/2 fired)")):
        result = emulate(img, input_spike_steps=np.array([[0, 3]]), full_raster=full_raster)
        plots.plot_raster(result, 0, tmp_path / "r.png")
        assert expected in figures[-1].axes[0].get_ylabel(), full_raster


# ----------------------------------------------------------------------------------------------
# Derived constants of the spec


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 16), st.integers(0, 16), st.integers(1, 5000))
def test_accumulator_bits_holds_every_worst_case_sum(weight_bits, frac, n_rows):
    assume(weight_bits + frac <= 32)
    spec = DatapathConfig(weight_bits=weight_bits, current_frac_bits=frac, current_bits=32)
    bits = spec.accumulator_bits(n_rows)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert lo <= n_rows * (spec.weight_min << frac) and n_rows * (spec.weight_max << frac) <= hi
    # and one bit less is not enough for the most negative sum once n_rows is a power of two
    if n_rows & (n_rows - 1) == 0:
        assert n_rows * (spec.weight_min << frac) < -(2 ** (bits - 2))


@pytest.mark.needs("cc")
def test_c_header_compiles_with_the_spec_values(tmp_path):
    import subprocess

    cc = "cc"
    spec = DatapathConfig(
        time_shift=5,
        weight_bits=12,
        current_frac_bits=4,
        current_bits=32,
        membrane_bits=20,
        current_overflow="wrap",
        tie_rule="lowest_index",
        dark_input_step=7,
        max_steps=300,
    )
    (tmp_path / "pcl.h").write_text(codegen.firmware_spec_headers(spec)["pcl_datapath.h"])
    checks = {
        "TIME_SHIFT": 5,
        "WEIGHT_MIN": -2048,
        "WEIGHT_MAX": 2047,
        "CURRENT_MIN": -(2**31),
        "CURRENT_MAX": 2**31 - 1,
        "MEMBRANE_MIN": -(2**19),
        "MEMBRANE_MAX": 2**19 - 1,
        "MEMBRANE_FRAC_BITS": 9,
        "CURRENT_OVERFLOW": 1,
        "MEMBRANE_OVERFLOW": 0,
        "TIE_RULE": 1,
        "DARK_INPUT_STEP": 7,
        "MAX_STEPS": 300,
        "INPUT_THRESHOLD": 128,
    }
    body = "\n".join(f'_Static_assert((long long)PCL_{k} == {v}LL, "{k}");' for k, v in checks.items())
    (tmp_path / "t.c").write_text(f'#include "pcl.h"\n{body}\nint main(void) {{ return 0; }}\n')
    proc = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Werror", "-c", "t.c", "-o", "t.o"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow  # compiles every kernel once more, for the int64 accumulator nothing else uses (~35 s)
def test_wide_layer_uses_a_64_bit_accumulator():
    # 70000 inputs of weight 32767 sum to 2_293_690_000 > 2**31 - 1: a 32-bit accumulator would
    # wrap negative and the neuron would stay silent. Saturating 32-bit registers clip the sum
    # to 2**31 - 1, which reaches the threshold 2**31 - 1 at step 0; wrapping I goes negative.
    n_in = 70000
    w = np.full((n_in + 1, 1), 32767, dtype=np.int16)
    w[-1] = 0
    base = dict(time_shift=4, weight_bits=16, current_frac_bits=0, current_bits=32, membrane_bits=32, max_steps=1)
    steps = np.zeros((1, n_in), dtype=np.int64)
    for policy, expected in (("saturate", 0), ("wrap", -1)):
        img = make_image(DatapathConfig(**base, current_overflow=policy), [w], [2**31 - 1])
        r = emulate(img, input_spike_steps=steps)
        assert r.first_output_step.tolist() == [expected], policy
        assert r.rows_read.tolist() == [[n_in]]


def test_datapath_from_dict_refuses_missing_and_unknown_fields():
    d = DatapathConfig(time_shift=5, current_frac_bits=7).to_dict()
    assert DatapathConfig.from_dict(d) == DatapathConfig(time_shift=5, current_frac_bits=7)
    partial = dict(d)
    del partial["max_steps"]
    with pytest.raises(ConfigError, match=r"missing field.*max_steps"):
        DatapathConfig.from_dict(partial)
    with pytest.raises(ConfigError, match=r"unknown field.*bogus"):
        DatapathConfig.from_dict(dict(d, bogus=1))


def test_layer_too_wide_for_the_64_bit_accumulator_is_refused():
    # No such array can be allocated, so the bound check is called on the layer sizes alone.
    from popcount_learn.emulator import _check_bounds

    spec = DatapathConfig()  # 8-bit weights, 6 fraction bits
    assert _check_bounds(spec, np.array([2**24 - 1])) == np.int32  # 8 + 24 bits of raw sum
    assert _check_bounds(spec, np.array([2**24])) == np.int64
    with pytest.raises(ConfigError, match="too wide for the 64-bit accumulator"):
        _check_bounds(spec, np.array([2**47]))  # accumulator_bits = 8 + 6 + 48 = 62 > 60


def test_datapath_string_fields_must_be_strings():
    with pytest.raises(ConfigError, match="tie_rule must be a string"):
        DatapathConfig(tie_rule=np.array(["max_membrane"]))


# ----------------------------------------------------------------------------------------------
# The closed-form first layer (every input at step 0): taken where it can be exact, and exact


def _stepped_fire_step(i0, spec, threshold):
    """The datapath's recurrence for one neuron with one arrival I_0 at step 0, step by step."""
    cur, mem = i0, 0
    for n in range(spec.max_steps):
        if n > 0:
            cur -= cur >> spec.time_shift
        mem = min(max(mem + cur, spec.membrane_min), spec.membrane_max)
        if mem >= threshold:
            return n
    return -1


@pytest.mark.parametrize(
    "time_shift, current_bits, membrane_bits, max_steps, threshold",
    [(0, 6, 6, 5, 7), (1, 6, 8, 12, 40), (2, 7, 6, 30, 31), (3, 8, 10, 40, 500), (4, 5, 12, 64, 200)],
)
def test_fire_table_gives_the_stepped_fire_step_for_every_current(
    time_shift, current_bits, membrane_bits, max_steps, threshold
):
    spec = DatapathConfig(
        time_shift=time_shift,
        weight_bits=4,
        current_frac_bits=0,
        current_bits=current_bits,
        membrane_bits=membrane_bits,
        max_steps=max_steps,
    )
    table = first_layer_fire_table(spec, threshold)
    assert table.shape == (max_steps,)
    for i0 in range(spec.current_min, spec.current_max + 1):
        expected = _stepped_fire_step(i0, spec, threshold)
        got = emulator_module._fire_step(table, i0) if i0 > 0 else -1
        assert got == expected, (i0, got, expected)


@pytest.mark.parametrize(
    "time_shift, current_bits, membrane_bits, max_steps, threshold",
    [(1, 6, 8, 12, 40), (3, 8, 10, 40, 500), (4, 9, 12, 64, 200)],
)
def test_lockstep_fire_steps_are_the_one_neuron_search(time_shift, current_bits, membrane_bits, max_steps, threshold):
    # _fire_steps (all neurons' bisections in lockstep) against _fire_step, one neuron at a
    # time, over every current the register holds, accumulator values that saturate I_0
    # included; and a table off by one entry is caught.
    spec = DatapathConfig(
        time_shift=time_shift,
        weight_bits=4,
        current_frac_bits=1,
        current_bits=current_bits,
        membrane_bits=membrane_bits,
        max_steps=max_steps,
    )
    table = first_layer_fire_table(spec, threshold)
    acc = np.arange(spec.current_min - 3, spec.current_max + 4, dtype=np.int32)
    for wrap in (0, 1):  # the accumulator compare (saturating current) and the general test
        x = acc.astype(np.int64) << 1
        lo, hi = spec.current_min, spec.current_max
        i0 = ((x - lo) & (hi - lo)) + lo if wrap else np.clip(x, lo, hi)
        expected = np.array([emulator_module._fire_step(table, int(v)) if v > 0 else -1 for v in i0])
        assert (expected >= 0).any() and (expected == -1).any()
        got = _lockstep_fire_steps(table, acc, spec, wrap)
        assert np.array_equal(got, expected)
        k = int(np.argmax(expected))  # a neuron that fires, late
        broken = table.copy()
        broken[expected[k] - 1] = i0[k]  # it would fire one step early
        assert not np.array_equal(_lockstep_fire_steps(broken, acc, spec, wrap), expected)


def _lockstep_fire_steps(table, acc, spec, wrap):
    """_fire_steps' (fired, steps) lists as one fire step per neuron (-1 = never)."""
    n = len(acc)
    flags = np.full((n + 7) // 8 * 8, 7, np.uint8)  # dirty scratch: every byte is written
    fired = np.full(n, -5, np.int64)
    steps = np.full(n, -5, np.int64)
    m = emulator_module._fire_steps(
        table, acc, 1, spec.current_min, spec.current_max, wrap, flags, np.empty(n, np.int64), fired, steps
    )
    assert np.all(np.diff(fired[:m]) > 0)
    out = np.full(n, -1, np.int64)
    out[fired[:m]] = steps[:m]
    return out


def test_fire_table_is_refused_where_it_cannot_be_exact():
    wrap = DatapathConfig(membrane_overflow="wrap")
    assert first_layer_fire_table(wrap, 100).size == 0
    long_run = DatapathConfig(max_steps=emulator_module.FIRE_TABLE_MAX_STEPS + 1)
    assert first_layer_fire_table(long_run, 100).size == 0


def test_closed_form_first_layer_is_taken_and_agrees_with_the_reference():
    taken = [0]

    @settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(cases(), st.integers(0, 2**32 - 1))
    def check(case, seed):
        image, _, _ = case
        rng = np.random.default_rng(seed)
        n_in = image.topology[0]
        # Binary input: every spike at step 0 or outside the run (never, or past the end).
        steps = rng.choice(np.array([0, 0, -1, image.spec.max_steps, 5 * image.spec.max_steps]), size=(3, n_in))
        fast = pack_image(image).fire_table.size == image.spec.max_steps and len(image.layers) >= 2
        taken[0] += fast
        for full_raster, extra in ((False, 0), (True, 0), (False, 3)):
            got = emulate(image, input_spike_steps=steps, full_raster=full_raster, steps_after_decision=extra)
            ref = reference_emulate(image, steps, full_raster=full_raster, steps_after_decision=extra)
            assert diff_results(got, ref) == []

    check()
    assert taken[0] >= 40, taken


def test_a_one_step_error_in_the_fire_table_is_caught(monkeypatch):
    # 2-2-1: input 0 drives hidden neuron 0 alone, which drives the output.
    spec = DatapathConfig(
        time_shift=2, weight_bits=5, current_frac_bits=0, current_bits=8, membrane_bits=8, max_steps=20
    )
    image = make_image(spec, [np.array([[9, 0], [0, 0], [0, 0]]), np.array([[15], [0], [0]])], [30, 15])
    steps = np.array([[0, -1]])
    good = emulate(image, input_spike_steps=steps)
    assert diff_results(good, reference_emulate(image, steps)) == []
    table = first_layer_fire_table(spec, 30)
    n = emulator_module._fire_step(table, 9)
    assert n > 0
    broken = table.copy()
    broken[n - 1] = 9  # fires one step early
    monkeypatch.setattr(emulator_module, "_cached_fire_table", lambda spec, threshold: broken)
    problems = diff_results(emulate(image, input_spike_steps=steps), reference_emulate(image, steps))
    assert any(p.startswith("spike_steps[0]") for p in problems)


def test_output_layer_run_by_arrivals_is_taken_and_agrees_with_the_stepped_path_and_reference(monkeypatch):
    # A two-layer network with every input at step 0 runs its output layer from one arrival step
    # to the next; the stepped path (forced by an empty fire table) and the reference must agree
    # with it on every field, ties and tie rules, no-decisions and the windows after a decision.
    seen = Counter()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(cases(), st.integers(0, 2**32 - 1))
    def check(case, seed):
        image, _, _ = case
        if len(image.layers) != 2:
            return
        rng = np.random.default_rng(seed)
        steps = rng.choice(np.array([0, 0, -1, image.spec.max_steps]), size=(4, image.topology[0]))
        if pack_image(image).fire_table.size != image.spec.max_steps:
            return
        seen["taken"] += 1
        for full_raster, extra in ((False, 0), (True, 0), (False, 2)):
            opts = dict(full_raster=full_raster, steps_after_decision=extra)
            got = emulate(image, input_spike_steps=steps, **opts)
            with monkeypatch.context() as m:
                m.setattr(emulator_module, "_cached_fire_table", lambda spec, threshold: np.zeros(0, np.int64))
                stepped = emulate(image, input_spike_steps=steps, **opts)
            assert diff_results(got, {name: getattr(stepped, name) for name in FIELDS}) == []
            assert diff_results(got, reference_emulate(image, steps, **opts)) == []
        seen["tie"] += int(got.tie.any())
        seen["no_decision"] += int((got.first_output_step < 0).any())
        seen["several_arrival_steps"] += int(any(len(set(s[s >= 0])) > 1 for s in got.spike_steps[0]))

    check()
    for key in ("taken", "tie", "no_decision", "several_arrival_steps"):
        assert seen[key] > 0, seen


def test_output_layer_by_arrivals_by_hand():
    # 1-2-1: the input drives hidden 0 (early) and hidden 1 (later); the output needs both
    # arrivals, so it is advanced over two intervals and fires after the second arrival.
    spec = DatapathConfig(
        time_shift=2, weight_bits=6, current_frac_bits=2, current_bits=12, membrane_bits=12, max_steps=20
    )
    image = make_image(spec, [np.array([[20, 6], [0, 0]]), np.array([[4], [4], [0]])], [60, 50])
    steps = np.array([[0]])
    got = emulate(image, input_spike_steps=steps)
    ref = reference_emulate(image, steps)
    assert diff_results(got, ref) == []
    hidden = got.spike_steps[0][0].tolist()
    assert 0 <= hidden[0] < hidden[1]
    assert got.first_output_step[0] > hidden[1]
    # One step off in the output would be caught by the comparison.
    off = dataclasses.replace(got, first_output_step=got.first_output_step + 1)
    assert diff_results(off, ref) != []
    late = dataclasses.replace(got, spike_steps=(got.spike_steps[0], got.spike_steps[1] + 1))
    assert diff_results(late, ref) != []


def test_images_are_encoded_inside_the_kernel_as_encode_input_steps_does():
    # emulate(images) encodes in the kernel through the 256-entry code table; it must give what
    # emulate(input_spike_steps=encode_input_steps(...)) gives, for binary and latency images,
    # and a one-code change in one pixel must show in input_spike_steps.
    from popcount_learn.encoding import InputEncoding

    rng = np.random.default_rng(5)
    spec = DatapathConfig(max_steps=64)
    w1 = rng.integers(-20, 60, size=(17, 6))
    w2 = rng.integers(-20, 60, size=(7, 3))
    binary = make_image(spec, [w1, w2], [200, 150])
    latency = dataclasses.replace(binary, encoding=InputEncoding(kind="latency", t_max=0.5, silence=10))
    images = rng.integers(0, 256, size=(40, 4, 4), dtype=np.uint8)
    for image in (binary, latency):
        steps = encode_input_steps(image.spec, images, image.input_encoding)
        assert len(np.unique(steps)) > (2 if image is latency else 1)  # graded steps for latency
        got = emulate(image, images)
        want = emulate(image, input_spike_steps=steps)
        assert diff_results(got, {name: getattr(want, name) for name in FIELDS}) == []
        assert diff_results(got, reference_emulate(image, steps)) == []
        changed = images.copy()
        changed[3, 1, 2] = 255 - changed[3, 1, 2]
        assert not np.array_equal(emulate(image, changed).input_spike_steps, got.input_spike_steps)
    with pytest.raises(ConfigError, match="pixels"):
        emulate(binary, images[:, :3])


def test_two_layer_closed_path_by_itself_matches_the_stepped_path():
    # _two_layer_closed called directly (so this test cannot pass through another path) on
    # step-0 inputs agrees with the stepped run_image path (forced by an empty fire table).
    rng = np.random.default_rng(9)
    spec = DatapathConfig(time_shift=3, max_steps=80)
    w1 = rng.integers(-30, 70, size=(25, 12))
    w2 = rng.integers(-40, 60, size=(13, 4))
    image = make_image(spec, [w1, w2], [300, 250])
    packed = pack_image(image)
    assert packed.fire_table.size == spec.max_steps
    dp = emulator_module.datapath_constants(spec)
    checked = 0
    for _ in range(30):
        steps = np.where(rng.random(24) < 0.4, 0, -1).astype(np.int32)
        for extra in (0, 2):
            scratch = emulator_module.make_scratch(
                24, packed.n_post, packed.neuron_off, spec.max_steps, packed.acc_proto, packed.w_flat
            )
            arr = np.flatnonzero(steps == 0).astype(np.int64)
            scratch[0][: len(arr)] = arr
            spk = np.full(int(packed.neuron_off[-1]), -1, np.int32)
            rows = np.zeros(2, np.int32)
            fast = emulator_module._two_layer_closed(
                packed.w_flat,
                packed.w_off,
                packed.n_pre,
                packed.n_post,
                packed.thresholds,
                dp,
                extra,
                packed.fire_table,
                scratch[0],
                len(arr),
                scratch,
                spk,
                rows,
            )
            spk_ref = np.full_like(spk, -1)
            rows_ref = np.zeros_like(rows)
            slow = emulator_module.run_image(
                steps,
                packed.w_flat,
                packed.w_off,
                packed.n_pre,
                packed.n_post,
                packed.neuron_off,
                packed.thresholds,
                dp,
                extra,
                packed.acc_proto,
                emulator_module._NO_FIRE_TABLE,
                scratch,
                spk_ref,
                rows_ref,
            )
            assert fast == slow
            assert spk.tolist() == spk_ref.tolist()
            assert rows.tolist() == rows_ref.tolist()
            checked += slow[1] >= 0
    assert checked > 10


def _stacked(results) -> dict:
    """The per-image results as one batch's fields (spike_steps per layer)."""
    out = {}
    for name in FIELDS:
        parts = [getattr(r, name) for r in results]
        if name == "spike_steps":
            out[name] = tuple(np.concatenate(layer) for layer in zip(*parts, strict=True))
        else:
            out[name] = np.concatenate(parts)
    return out


def test_blocks_on_threads_equal_one_image_at_a_time(monkeypatch):
    """``emulate`` runs blocks of images on a thread pool: on 1 and 2 threads a batch gives the
    bytes of one call per image (the pool-free path), and an empty batch is empty."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads (NUMBA_NUM_THREADS)")
    image = load_weight_image(REPO_ROOT / "datasets" / "pretrained" / "net100-int8.h5")
    images = load_split(None, "test", 37).images  # 37: not a multiple of the 16 blocks of 2 threads
    one_by_one = _stacked([emulate(image, images[i : i + 1]) for i in range(len(images))])
    pools = []
    real_pool = emulator_module._block_pool
    monkeypatch.setattr(emulator_module, "_block_pool", lambda t: pools.append(t) or real_pool(t))
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            batch = emulate(image, images)
            for name in FIELDS:
                got, want = getattr(batch, name), one_by_one[name]
                if name == "spike_steps":
                    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)), threads
                else:
                    assert np.array_equal(got, want), (threads, name)
            empty = emulate(image, images[:0])
            assert empty.predicted.shape == (0,) and [a.shape for a in empty.spike_steps] == [(0, 100), (0, 10)]
    finally:
        numba.set_num_threads(before)
    assert pools == [2]  # the 2-thread batch ran on the pool, the others did not


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.integers(1, 40),
    st.integers(0, 600),
    st.sampled_from(["random", "low", "high"]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_int16_row_sums_are_the_plain_sums(width, n_rows, weights, first, seed):
    # _add_rows sums int8 rows in int16 blocks of up to INT16_EXACT_ROWS rows: against a plain
    # int64 sum, for every row count across the block edges and weights all at -128 or 127 (the
    # bound of the int16 proof); from four rows on the int16 path is the one taken (its scratch
    # holds the last block's sum), and one weight one LSB off is caught.
    rng = np.random.default_rng(seed)
    n_pre = max(n_rows, 1)
    if weights == "random":
        w = rng.integers(-128, 128, size=(n_pre + 1, width))
    else:
        w = np.full((n_pre + 1, width), -128 if weights == "low" else 127)
    w_flat = np.concatenate([np.zeros(3, np.int8), w.astype(np.int8).ravel()])  # row base 3
    rows = rng.integers(0, n_pre, size=n_rows).astype(np.int64)  # repeats allowed
    start = rng.integers(-(2**20), 2**20, size=width)
    acc = start.astype(np.int32)
    row_sums = np.zeros(width + 2, np.int16)
    emulator_module._add_rows(acc, w_flat, 3, rows, first, row_sums)
    expected = w[rows].astype(np.int64).sum(axis=0) + (0 if first else start)
    if n_rows == 0 and first:
        expected = start  # nothing added, nothing overwritten
    assert acc.astype(np.int64).tolist() == expected.tolist()
    if n_rows >= 4:
        tail = w[rows[(n_rows - 1) // emulator_module.INT16_EXACT_ROWS * emulator_module.INT16_EXACT_ROWS :]]
        assert row_sums[:width].tolist() == tail.astype(np.int64).sum(axis=0).tolist()
    if n_rows:
        off = w.copy()
        r = int(rows[0])
        off[r, 0] += 1 if off[r, 0] < 127 else -1
        acc_off = start.astype(np.int32)
        w_off = np.concatenate([np.zeros(3, np.int8), off.astype(np.int8).ravel()])
        emulator_module._add_rows(acc_off, w_off, 3, rows, first, row_sums)
        assert acc_off.tolist() != acc.tolist()


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(-1, 30), min_size=0, max_size=70))
def test_bucket_by_step_is_a_stable_sort_by_step(step_of):
    # _bucket_by_step against a plain stable sort of the firing neurons by fire step.
    step_of = np.array(step_of, np.int64)
    fired = np.flatnonzero(step_of >= 0).astype(np.int64)
    steps = step_of[fired]
    bucket_off = np.full(40, -9, np.int64)
    bucket = np.full(max(len(fired), 1), -9, np.int64)
    n_b = emulator_module._bucket_by_step(fired, steps, len(fired), bucket_off, bucket)
    assert n_b == (steps.max() + 1 if len(fired) else 0)
    for f in range(n_b):
        assert bucket[bucket_off[f] : bucket_off[f + 1]].tolist() == fired[steps == f].tolist()
    assert bucket_off[n_b] == len(fired)
