"""Quantisation-aware exact training (issue #17): the forward pass runs the weights the board
will run, and the exported image is that network."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popcount_learn import cli, commands, exact, h5io
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.errors import ConfigError
from popcount_learn.network import ExactNetwork
from popcount_learn.quantize import dequantize, fake_quantize, quantize
from popcount_learn.train import TrainConfig, forward_weights, train_exact


def _tiny_network(seed, n_in=30, n_hid=12, n_out=4):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.08, 0.25, (n_in + 1, n_hid))
    w2 = rng.normal(0.25, 0.4, (n_hid + 1, n_out))
    return ExactNetwork([w1, w2], SpikeEncoding())


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(2, 16))
def test_fake_quantised_weights_are_the_exported_images_weights_bit_for_bit(seed, bits):
    net = _tiny_network(seed)
    run = forward_weights(net.weights, TrainConfig(qat_bits=bits, qat_scale="max"))
    image = quantize(net, bits=bits)
    for w_q, w_image in zip(run, dequantize(image).weights, strict=True):
        assert w_q.dtype == np.float64
        np.testing.assert_array_equal(w_q, w_image)
    # Re-quantising the fake-quantised network gives the same integers and thresholds: a model
    # trained on the grid exports to exactly the image its forward pass ran.
    again = quantize(ExactNetwork(run, net.encoding), bits=bits)
    for a, b in zip(again.layers, image.layers, strict=True):
        np.testing.assert_array_equal(a.weights_lsb, b.weights_lsb)
        assert a.threshold_lsb == b.threshold_lsb
    assert forward_weights(net.weights, TrainConfig()) is net.weights  # off: untouched


def test_a_one_lsb_change_of_the_image_is_seen_by_the_comparison():
    net = _tiny_network(3)
    image = quantize(net, bits=4)
    w = image.layers[1].weights_lsb.copy()
    w[2, 1] += 1 if w[2, 1] < 7 else -1
    bad = dequantize(image).weights[1].copy()
    bad[2, 1] = w[2, 1] * image.layers[1].scale
    assert not np.array_equal(fake_quantize(net.weights, 4)[1], bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fake_quantised_forward_is_what_the_emulator_runs_on_a_tiny_network(seed):
    """The exact forward pass on the QAT weights (4 bits) and the emulator on the exported image,
    at a fine time step and with fraction bits enough that the current's truncated decay
    (``I >> time_shift`` is 0 for ``I < 2**time_shift``) is below a weight LSB: every spike the
    exact model has well clear of a tangential crossing is in the emulator within the
    discretisation (one step of latency per layer, left-Riemann sums), and every decision with
    a clear margin is the same. (At the default 6 fraction bits that truncation is part of the
    trainer-vs-emulator tolerance, measured on MNIST: BENCHMARKS.md, issue #17.)"""
    net = _tiny_network(seed)
    spec = DatapathConfig(
        time_shift=8, current_frac_bits=12, weight_bits=4, current_bits=32, membrane_bits=32, max_steps=4096
    )
    image = quantize(net, spec)
    rng = np.random.default_rng(seed + 100)
    images = (rng.random((24, 30)) < 0.4).astype(np.uint8) * 255
    result = emulate(image, images, full_raster=True)
    zs, denoms = exact.forward(
        forward_weights(net.weights, TrainConfig(qat_bits=4, qat_scale="max")), net.encoding.input_z(images)
    )
    dt, checked, decided = spec.dt, 0, 0
    for layer in (1, 2):
        t_exact = np.log(zs[layer])
        steps = result.spike_steps[layer - 1]
        for b in range(len(images)):
            for j in range(t_exact.shape[1]):
                t = t_exact[b, j]
                if not np.isfinite(t) or t > 3.0 or denoms[layer - 1][b, j] < 0.2:
                    continue
                assert steps[b, j] >= 0
                assert abs((steps[b, j] - (layer - 1)) * dt - t) <= 4 * layer * dt + 0.02 * t, (layer, b, j)
                checked += 1
    t_out = np.log(zs[2])
    for b in range(len(images)):
        order = np.argsort(t_out[b])
        if np.isfinite(t_out[b, order[0]]) and t_out[b, order[1]] - t_out[b, order[0]] > 0.1:
            assert result.predicted[b] == order[0]
            decided += 1
    assert checked > 20 and decided > 0


def test_qat_training_returns_a_network_on_the_grid_and_fused_equals_written_out(mnist_dir):
    train = load_mnist(mnist_dir, "train")
    x, y = train.images[:400], train.labels[:400]
    cfg = TrainConfig(hidden=(12,), epochs=2, qat_bits=4, qat_scale="max", augment_shift_px=0)
    fused, history = train_exact(x, y, cfg)
    plain, _ = train_exact(x, y, cfg, fused=False)
    for a, b in zip(fused.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    for w, w_q in zip(fused.weights, fake_quantize(fused.weights, 4), strict=True):
        np.testing.assert_array_equal(w, w_q)  # already on the 4-bit grid: rounding is a no-op
        assert len(np.unique(w)) <= 15
    # It learns through the rounding (straight-through), and it is not plain training rounded.
    first, last = history.epochs[0], history.epochs[-1]
    assert last["loss"] < first["loss"] - 0.3 and last["train_accuracy"] > first["train_accuracy"]
    off, _ = train_exact(x, y, TrainConfig(hidden=(12,), epochs=2, augment_shift_px=0))
    rounded = fake_quantize(off.weights, 4)
    assert any(not np.array_equal(a, b) for a, b in zip(rounded, fused.weights, strict=True))


def test_cli_qat_train_then_export_round_trip(tmp_path, capsys):
    """train --qat-bits 4 reports the emulator's accuracy of its image; export (no --bits) writes
    that image, at 4 bits, with the same integers and the same emulated accuracy."""
    model = tmp_path / "q4.h5"
    args = ["--threads", "2", "train", "--hidden", "20", "--epochs", "1", "--limit", "1500", "--qat-bits", "4"]
    assert cli.main([*args, "--out", str(model), "--no-progress", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["qat_bits"] == 4
    # The tolerance between the exact model on the grid and the emulator (time step 1/64).
    assert abs(trained["qat_emulated_test_accuracy"] - trained["qat_exact_test_accuracy"]) <= 0.01
    image_path = tmp_path / "q4-int4.h5"
    summary = commands.export(model, image_path)
    assert summary["weight_bits"] == 4 and summary["provenance"]["qat_bits"] == 4
    assert summary["provenance"]["emulated_test_accuracy"] == trained["qat_emulated_test_accuracy"]
    image = h5io.load_weight_image(image_path)
    network, _ = h5io.load_network(model)
    for layer, w in zip(image.layers, network.weights, strict=True):
        np.testing.assert_array_equal(layer.weights_lsb * layer.scale, w)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--qat-bits", "1"], "weight bits must be in 2..16, got 1"),
        (["train", "--qat-bits", "17"], "weight bits must be in 2..16, got 17"),
        (["train", "--qat-bits", "four"], "expected a positive integer, got 'four'"),
        (["train", "--mode", "onchip", "--qat-bits", "4"], "--qat-bits applies to --mode exact only"),
    ],
)
def test_bad_qat_values_are_one_line(args, needle, capsys, tmp_path):
    try:
        code = cli.main([*args, "--out", str(tmp_path / "x.h5"), "--no-progress"])
    except SystemExit as exc:  # argparse's own refusal of a bad value
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("bits", [1, 17, True, 4.0])
def test_bad_qat_bits_in_the_library_are_config_errors(bits):
    with pytest.raises(ConfigError, match="qat bits must be 0"):
        TrainConfig(qat_bits=bits)


def test_fake_quantising_an_all_zero_or_non_finite_layer_is_refused():
    with pytest.raises(ConfigError, match="layer 1: all weights are zero"):
        fake_quantize([np.ones((3, 2)), np.zeros((3, 2))], 4)
    with pytest.raises(ConfigError, match="layer 0: weights are not finite"):
        fake_quantize([np.array([[1.0, np.nan]])], 4)
