"""The UP5K top as it is placed (byte bridge + core + SPRAM through yosys's SB_SPRAM256KA model)
against the emulator, end to end through byte packets, under Icarus + cocotb.

Stimulus and monitor: firmware_bridge/rtl/tb/up5k_bench.py (byte layout: rtl/packets.py); model:
popcount_learn.emulator.emulate; checker: firmware_bridge.rtl.sim's. These tests choose networks
and inputs and assert that the checker finds nothing, and that it does find a corrupted weight.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from factories import graded_net100
from test_rtl import PARAMETER_SETS, _find_case, _one_lsb_variants

from firmware_bridge import check
from firmware_bridge.rtl.packets import PacketLayout, RxKind, TxKind
from firmware_bridge.rtl.params import RtlLayout, unpack
from firmware_bridge.rtl.up5k_sim import simulate_up5k
from popcount_learn import h5io
from popcount_learn.data import load_mnist
from popcount_learn.emulator import emulate
from popcount_learn.weight_image import LayerImage, WeightImage

NET100 = Path(__file__).resolve().parent.parent / "datasets" / "pretrained" / "net100-int8.h5"


def up5k(test):
    """Icarus + cocotb, and yosys for its ice40/cells_sim.v (the SB_SPRAM256KA model)."""
    return pytest.mark.rtl(pytest.mark.needs("yosys")(test))


# ----------------------------------------------------------------------------------------------
# The packet layout (no simulator)


def test_packet_sizes_follow_the_layout_widths():
    layout = RtlLayout.for_image(h5io.load_weight_image(NET100), 4)
    w = layout.widths
    p = PacketLayout(layout)
    assert (w["WADDR_BITS"], w["WL_BITS"], w["STEP_BITS"], w["IN_INDEX_BITS"]) == (15, 32, 10, 10)
    assert (p.rx_payload_bits, p.rx_bytes) == (47, 7)  # {addr 15, data 32} + 2 kind bits
    assert (p.spike_bits, p.result_bits, p.tx_bytes) == (18, 40, 6)  # result: 3 + 7 + 10 + 2 x 10


def test_load_and_input_packets_carry_the_beats():
    image = h5io.load_weight_image(NET100)
    layout = RtlLayout.for_image(image, 4)
    p = PacketLayout(layout)
    load = p.split_rx(p.load_packets(image))
    beats = layout.load_beats(image)
    assert [k for k, _ in load] == [RxKind.WEIGHT] * layout.weight_words + [RxKind.THRESHOLD] * layout.n_layers
    flag = 1 << (layout.widths["WADDR_BITS"] + layout.widths["WL_BITS"])
    assert [payload | (flag if k == RxKind.THRESHOLD else 0) for k, payload in load] == beats
    steps = np.full(784, -1)
    steps[[3, 700]] = [5, 0]
    spikes = p.split_rx(p.input_packets(steps))
    assert spikes == [(RxKind.SPIKE, b) for b in layout.input_beats(steps)] and len(spikes) == 2


def test_tx_packets_decode_and_bad_ones_are_refused():
    p = PacketLayout(RtlLayout.for_image(h5io.load_weight_image(NET100), 4))
    spike = {"layer": 1, "index": 9, "step": 77}
    payload = (1 << 17) | (9 << 10) | 77
    assert unpack(payload, p.spike_fields) == spike
    data = p.tx_packet(TxKind.SPIKE, payload) + p.tx_packet(TxKind.RESULT, (1 << 37) | 5)
    (k0, f0), (k1, f1) = p.split_tx(data)
    assert (k0, f0) == (TxKind.SPIKE, spike)
    assert k1 == TxKind.RESULT and f1["decided"] == 1 and f1["rows_read0"] == 5 and f1["tie"] == 0
    with pytest.raises(ValueError, match="not a whole number"):
        p.split_tx(data[:-1])
    with pytest.raises(ValueError, match="kind 2"):
        p.split_tx((2 << p.tx_payload_bits).to_bytes(p.tx_bytes, "little"))
    with pytest.raises(ValueError, match="not one the bridge sends"):  # a spike payload wider than a spike
        p.split_tx(p.tx_packet(TxKind.SPIKE, 1 << p.spike_bits))


# ----------------------------------------------------------------------------------------------
# The top, simulated


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    return load_mnist(mnist_dir, "test")


_CASES: dict = {}


def _case(index):
    """(image, steps, expected) of test_rtl's parameter set ``index``, found once."""
    if index not in _CASES:
        name, fields, topology, _, wanted, _, _ = PARAMETER_SETS[index]
        _CASES[index] = _find_case(name, fields, topology, wanted, n_images=16)[:3]
    return _CASES[index]


# wrap: 2 lanes, both registers wrapping, throttled streams, shuffled inputs; three-layers: 4 lanes
@up5k
@pytest.mark.parametrize(
    "index",
    [1, 4, *(pytest.param(i, marks=pytest.mark.slow) for i in (2, 0))],
    ids=[PARAMETER_SETS[i][0] for i in (1, 4, 2, 0)],
)
def test_up5k_top_random_networks_bit_exact(index):
    _, _, _, lanes, _, throttle, shuffle = PARAMETER_SETS[index]
    image, steps, expected = _case(index)
    observed = simulate_up5k(image, input_spike_steps=steps, lanes=lanes, throttle=throttle, shuffle_seed=shuffle)
    assert observed.faults == {}
    problem = check.compare(expected, observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert np.all(observed.cycles > 0)


@up5k
def test_up5k_comparison_catches_a_one_lsb_weight_corruption():
    lanes = PARAMETER_SETS[1][3]
    image, steps, expected = _case(1)
    # the first one-LSB change that these inputs can see
    visible = (
        (what, corrupted)
        for what, corrupted in _one_lsb_variants(image, thresholds=False)
        if not check.compare(expected, emulate(corrupted, input_spike_steps=steps), body="emulator").ok
    )
    what, corrupted = next(visible, (None, None))
    assert corrupted is not None, "no one-LSB weight change is visible on these inputs"
    observed = simulate_up5k(image, input_spike_steps=steps, lanes=lanes, load_image=corrupted)
    report = check.compare(expected, observed, body="RTL").first_mismatch
    assert report is not None and "!=" in report, what
    # ... and the corrupted weight did arrive bit-exact: the top agrees with its emulation
    assert check.compare(emulate(corrupted, input_spike_steps=steps), observed, body="RTL").first_mismatch is None, what


@up5k
def test_up5k_top_mnist_net100_int8_bit_exact(mnist_test):
    image = h5io.load_weight_image(NET100)
    images = mnist_test.images[:20]
    observed = simulate_up5k(image, images, lanes=4)
    problem = check.compare(emulate(image, images), observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert observed.faults == {}
    assert np.mean(observed.predicted == mnist_test.labels[:20]) > 0.8


@up5k
def test_up5k_top_graded_mnist_bit_exact(mnist_test):
    """A latency-encoded image (issue 14): graded input steps travel in the spike byte packets."""
    image = graded_net100()
    images = mnist_test.images[:20]  # as many as the binary test above: the same harness build
    observed = simulate_up5k(image, images, lanes=4)
    problem = check.compare(emulate(image, images), observed, body="RTL").first_mismatch
    assert problem is None, problem
    assert observed.faults == {}
    # The same run against the emulation of a one-LSB-changed image: the comparison reports it.
    changed, reference = _one_bias_lsb_the_emulator_notices(image, images)
    comparison = check.compare(reference, observed, body="RTL")
    assert not comparison.ok and comparison.first_mismatch is not None, changed
    assert "RTL != emulator" in comparison.verdict(), comparison.verdict()


def _one_bias_lsb_the_emulator_notices(image: WeightImage, images: np.ndarray):
    """(where, emulation) of ``image`` with one hidden bias weight moved by one LSB, the first
    such change that moves a hidden spike step on ``images``."""
    original = emulate(image, images).spike_steps[0]
    hidden = image.layers[0]
    bias_row = hidden.weights_lsb.shape[0] - 1
    for neuron in range(hidden.weights_lsb.shape[1]):
        w = hidden.weights_lsb.copy()
        w[bias_row, neuron] += 1 if w[bias_row, neuron] < image.spec.weight_max else -1
        layers = (LayerImage(w, hidden.threshold_lsb, hidden.scale), *image.layers[1:])
        result = emulate(dataclasses.replace(image, layers=layers, provenance={}), images)
        if not np.array_equal(result.spike_steps[0], original):
            return f"bias of hidden neuron {neuron}", result
    raise AssertionError("no single bias-weight LSB changes a hidden spike step")


@up5k
@pytest.mark.slow
@pytest.mark.parametrize("n, throttle", [(200, False), (50, True)])
def test_up5k_top_mnist_more_images(mnist_test, n, throttle):
    image = h5io.load_weight_image(NET100)
    images = mnist_test.images[:n]
    observed = simulate_up5k(image, images, lanes=4, throttle=throttle, shuffle_seed=1 if throttle else None)
    problem = check.compare(emulate(image, images), observed, body="RTL").first_mismatch
    assert problem is None, problem
