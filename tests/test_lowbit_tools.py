"""The issue-#17 study tools: the validation split, the thresholded 4-bit start, the sweep's phase files."""

import dataclasses

import image_health
import numpy as np
import onchip_decay_probe
import onchip_start
import onchip_validation_sweep
import pytest
import validation_split

from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image


def test_validation_split_holds_out_the_last_samples_in_order():
    images = np.arange(40, dtype=np.uint8).reshape(10, 2, 2)
    labels = np.arange(10, dtype=np.uint8)
    x_train, y_train, x_val, y_val = validation_split.validation_split(images, labels, 3)
    assert y_train.tolist() == list(range(7)) and y_val.tolist() == [7, 8, 9]
    assert np.array_equal(np.concatenate([x_train, x_val]), images)
    for bad in (0, 10, -1):
        with pytest.raises(SystemExit):
            validation_split.validation_split(images, labels, bad)


def _start(bits=4):
    spec = DatapathConfig.for_weight_bits(bits)
    images = np.random.default_rng(3).integers(0, 256, size=(50, 16), dtype=np.uint8)
    return random_initial_image(
        (16, 12, 3), spec, OnchipTrainConfig(hidden=(12,), seed=5), SpikeEncoding(), 8.0
    ), images


def test_threshold_gains_of_one_keep_the_start():
    image, _ = _start()
    same = onchip_start.with_threshold_gains(image, [1.0, 1.0])
    for a, b in zip(image.layers, same.layers, strict=True):
        assert np.array_equal(a.weights_lsb, b.weights_lsb)
        assert (a.threshold_lsb, a.scale) == (b.threshold_lsb, b.scale)


def test_threshold_gains_lower_each_layers_threshold_and_keep_the_weights():
    image, images = _start()
    lowered = onchip_start.with_threshold_gains(image, [2.0, 4.0])
    for g, a, b in zip((2.0, 4.0), image.layers, lowered.layers, strict=True):
        assert np.array_equal(a.weights_lsb, b.weights_lsb)
        assert b.scale == a.scale * g
        assert b.threshold_lsb == image.spec.threshold_lsb(a.scale * g)
        assert abs(b.threshold_lsb - a.threshold_lsb / g) <= 1
    # With the hidden layer as it was, a lower output threshold is crossed no later on any image.
    before, after = emulate(image, images), emulate(onchip_start.with_threshold_gains(image, [1.0, 4.0]), images)
    decided = before.first_output_step >= 0
    assert np.all(after.first_output_step[decided] >= 0)
    assert np.all(after.first_output_step[decided] <= before.first_output_step[decided])
    assert np.any(after.first_output_step[decided] < before.first_output_step[decided])
    with pytest.raises(SystemExit):
        onchip_start.with_threshold_gains(image, [1.0])


def test_hidden_from_takes_the_first_layer_and_keeps_the_fresh_output_layer():
    image, _ = _start()
    other = random_initial_image((16, 12, 3), image.spec, OnchipTrainConfig(hidden=(12,), seed=9), SpikeEncoding(), 8.0)
    mixed = onchip_start.with_hidden_layer_of(image, other)
    assert mixed.layers[0] is other.layers[0] and mixed.layers[1] is image.layers[1]
    assert not np.array_equal(mixed.layers[0].weights_lsb, image.layers[0].weights_lsb)
    with pytest.raises(SystemExit, match="spec"):
        onchip_start.with_hidden_layer_of(image, _start(bits=5)[0])
    wider = random_initial_image((16, 13, 3), image.spec, OnchipTrainConfig(hidden=(13,), seed=9), SpikeEncoding(), 8.0)
    with pytest.raises(SystemExit, match="topology"):
        onchip_start.with_hidden_layer_of(image, wider)


def test_sweep_phase_files_name_every_phase():
    names = {
        onchip_validation_sweep.phase_file(onchip_validation_sweep.Path("w"), phases).name
        for phases in onchip_validation_sweep.VARIANTS.values()
    }
    assert len(names) == len(onchip_validation_sweep.VARIANTS)
    first = onchip_validation_sweep.VARIANTS["3 + 12, T 48 (the shipped recipe)"]
    assert onchip_validation_sweep.phase_file(onchip_validation_sweep.Path("w"), first[:1]).name == "e3-margin16.h5"


def test_image_health_counts_silent_neurons_and_weights_at_the_bounds():
    image, images = _start()
    w = image.layers[0].weights_lsb.copy()
    w[:, 0] = image.spec.weight_min  # hidden neuron 0 is inhibited by every input and the bias
    layers = (dataclasses.replace(image.layers[0], weights_lsb=w), image.layers[1])
    pinned = dataclasses.replace(image, layers=layers)
    before = image_health.layer_health(image, emulate(image, images, full_raster=True))
    after = image_health.layer_health(pinned, emulate(pinned, images, full_raster=True))
    assert after["silent_hidden"] >= before["silent_hidden"] + 1 / w.shape[1] - 1e-12
    at_min = np.mean(w == image.spec.weight_min)
    assert after["layers"][0]["at_min"] == pytest.approx(at_min) and at_min >= 1 / w.shape[1]
    assert after["layers"][1] == before["layers"][1]
    charge = 2 ** (image.spec.current_frac_bits + image.spec.time_shift)
    assert after["layers"][0]["threshold_charges"] == image.layers[0].threshold_lsb / charge


def test_decay_probe_steps_nonzero_weights_toward_zero():
    image, _ = _start()
    rng = np.random.default_rng(0)
    assert all(
        np.array_equal(a.weights_lsb, b.weights_lsb)
        for a, b in zip(image.layers, onchip_decay_probe.decayed(image, 0, rng).layers, strict=True)
    )
    for a, b in zip(image.layers, onchip_decay_probe.decayed(image, 65536, rng).layers, strict=True):
        w = a.weights_lsb.astype(np.int64)
        assert np.array_equal(b.weights_lsb, w - np.sign(w)) and b.weights_lsb.dtype == a.weights_lsb.dtype
    half = onchip_decay_probe.decayed(image, 32768, rng).layers[0].weights_lsb.astype(np.int64)
    w = image.layers[0].weights_lsb.astype(np.int64)
    moved = (half != w)[w != 0]
    assert np.all(np.abs(half) <= np.abs(w)) and 0.3 < moved.mean() < 0.7
