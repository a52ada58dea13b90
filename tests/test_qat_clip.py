"""QAT with a clipped per-layer scale (issue #17): ``quantize.mse_clip`` against a slow, obvious
reference, the export round trip of a clipped grid, and the trainer under ``qat_scale="mse"``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popcount_learn import cli
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.errors import ConfigError
from popcount_learn.network import ExactNetwork
from popcount_learn.quantize import (
    MSE_CLIP_BINS,
    MSE_CLIP_CANDIDATES,
    fake_quantize,
    layer_clip,
    mse_clip,
    quantize,
    weight_clips,
)
from popcount_learn.train import TrainConfig, batch_loss_and_grads, forward_weights, qat_clips, train_exact


def _exact_error(w, clip, weight_max):
    """sum (w - s * clip(rint(w / s), -M, M))**2, every weight rounded on its own."""
    s = clip / weight_max
    total = 0.0
    for x in np.asarray(w, dtype=np.float64).ravel():
        code = min(max(round(x / s), -weight_max), weight_max)  # Python round: half to even, as rint
        total += (x - code * s) ** 2
    return total


def _reference_histogram_choice(w, weight_max):
    """The documented rule in plain loops: the histogram's error of each candidate, the largest
    candidate of least error (returned with the errors)."""
    a = [abs(float(x)) for x in np.asarray(w, dtype=np.float64).ravel()]
    top = max(a)
    nb, nc = MSE_CLIP_BINS, MSE_CLIP_CANDIDATES
    count, s1, s2 = [0] * nb, [0.0] * nb, [0.0] * nb
    for x in a:
        b = min(int(x * (nb / top)), nb - 1)
        count[b] += 1
        s1[b] += x
        s2[b] += x * x
    used = [b for b in range(nb) if count[b]]
    errors = []
    for j in range(1, nc + 1):
        clip = top * j / nc
        s = clip / weight_max
        err = 0.0
        for b in used:
            level = min(round((b + 0.5) * (top / nb) / s), weight_max) * s
            err += s2[b] - 2 * level * s1[b] + level * level * count[b]
        errors.append((clip, err))
    return errors


weights_strategy = st.builds(
    lambda seed, n, spread, tail: np.random.default_rng(seed).standard_t(tail, size=n) * spread,
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 300),
    spread=st.floats(0.01, 5.0),
    tail=st.sampled_from([2.0, 4.0, 30.0]),
)


@settings(max_examples=25, deadline=None)
@given(w=weights_strategy, bits=st.integers(2, 8))
def test_mse_clip_is_the_documented_rule_and_near_the_true_least_error(w, bits):
    weight_max = DatapathConfig.for_weight_bits(bits).weight_max
    clip = mse_clip(w, weight_max)
    errors = _reference_histogram_choice(w, weight_max)
    best = min(e for _, e in errors)
    chosen = [e for c, e in errors if np.isclose(c, clip, rtol=1e-12, atol=0)]
    assert chosen and chosen[0] <= best + 1e-9 * max(best, 1e-300) + 1e-12
    assert 0 < clip <= np.max(np.abs(w))
    # Against every weight rounded on its own: a bin's weights take its centre's code, which is
    # wrong only for weights within half a bin of a rounding midpoint, each costing <= s * h more.
    top = float(np.max(np.abs(w)))
    h = top / MSE_CLIP_BINS
    exact = [_exact_error(w, c, weight_max) for c, _ in errors]
    slack = len(w) * (top / weight_max) * h
    assert _exact_error(w, clip, weight_max) <= min(exact) + 2 * slack + 1e-12


def test_mse_clip_saturates_an_outlier_and_keeps_a_flat_layer_at_its_maximum():
    w = np.concatenate([np.linspace(-1.0, 1.0, 2001), [5.0]])
    assert mse_clip(w, 1) < 1.0  # ternary: one outlier must not zero every other weight
    assert mse_clip(np.concatenate([np.linspace(-0.1, 0.1, 201), [5.0]]), 1) == 5.0  # nor be zeroed by few
    assert layer_clip(w, 1, "max") == 5.0
    flat = np.array([-1.0, 1.0, 1.0, -1.0])
    assert mse_clip(flat, 3) == 1.0
    with pytest.raises(ConfigError, match="scale rule must be one of max, mse"):
        layer_clip(w, 3, "lsq")
    with pytest.raises(ConfigError, match="layer 0: all weights are zero"):
        weight_clips([np.zeros((2, 2))], 4, "mse")


def _tiny_network(seed, n_in=30, n_hid=12, n_out=4):
    rng = np.random.default_rng(seed)
    w1 = rng.standard_t(3, (n_in + 1, n_hid)) * 0.2 + 0.05
    w2 = rng.normal(0.25, 0.4, (n_hid + 1, n_out))
    return ExactNetwork([w1, w2], SpikeEncoding())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(2, 8))
def test_a_clipped_grid_exports_through_plain_quantize_to_the_same_codes(seed, bits):
    """The trainer's model on an mse-clipped grid, written out, is re-quantised by ``export``'s
    plain max rule to exactly the codes (and thresholds) ``quantize(..., scale_rule="mse")``
    gives the float model: the top code is reached, so max|w_q| / M is the clipped scale."""
    net = _tiny_network(seed)
    cfg = TrainConfig(qat_bits=bits, qat_scale="mse")
    clips = qat_clips(net.weights, cfg)
    run = forward_weights(net.weights, cfg)
    direct = quantize(net, bits=bits, scale_rule="mse")
    again = quantize(ExactNetwork(run, net.encoding), bits=bits)
    weight_max = DatapathConfig.for_weight_bits(bits).weight_max
    for k, (a, b) in enumerate(zip(again.layers, direct.layers, strict=True)):
        np.testing.assert_array_equal(a.weights_lsb, b.weights_lsb)
        assert a.threshold_lsb == b.threshold_lsb
        assert np.isclose(a.scale, clips[k] / weight_max, rtol=1e-14, atol=0)
        assert np.max(np.abs(b.weights_lsb)) == weight_max
    # Fake-quantising the written model again changes nothing (a fixed point of the trainer).
    for a, b in zip(forward_weights(run, cfg), run, strict=True):
        np.testing.assert_array_equal(a, b)
    # A one-LSB change of one code is seen by the comparison above.
    bad = direct.layers[0].weights_lsb.copy()
    bad[0, 0] += 1 if bad[0, 0] < weight_max else -1
    assert not np.array_equal(bad, again.layers[0].weights_lsb)


def test_the_gradient_is_straight_through_the_clipped_grid():
    """d L / d w under QAT is d L / d w_q of the network on the grid (straight-through), for the
    clipped weights too: the same numbers as the plain gradient of the fake-quantised network."""
    net = _tiny_network(5)
    rng = np.random.default_rng(9)
    z = SpikeEncoding().input_z((rng.random((16, 30)) < 0.4).astype(np.uint8) * 255)
    labels = rng.integers(0, 4, 16)
    cfg = TrainConfig(qat_bits=3, qat_scale="mse")
    loss, grads, _ = batch_loss_and_grads(net, z, labels, cfg)
    on_grid = ExactNetwork(fake_quantize(net.weights, 3, qat_clips(net.weights, cfg)), net.encoding)
    loss_q, grads_q, _ = batch_loss_and_grads(on_grid, z, labels, TrainConfig())
    assert loss == loss_q
    for g, g_q in zip(grads, grads_q, strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(g_q))
    assert any(np.abs(w).max() > c for w, c in zip(net.weights, qat_clips(net.weights, cfg), strict=True))


def test_mse_qat_training_lands_on_the_clipped_grid_and_fused_equals_written_out(mnist_dir):
    train = load_mnist(mnist_dir, "train")
    x, y = train.images[:400], train.labels[:400]
    cfg = TrainConfig(hidden=(12,), epochs=2, qat_bits=3, qat_scale="mse", augment_shift_px=0)
    fused, history = train_exact(x, y, cfg)
    plain, _ = train_exact(x, y, cfg, fused=False)
    for a, b in zip(fused.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    for w in fused.weights:
        assert len(np.unique(w)) <= 7
    image = quantize(fused, bits=3)  # what export does with the model
    for layer, w in zip(image.layers, fused.weights, strict=True):
        np.testing.assert_array_equal(layer.weights_lsb * layer.scale, w)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    maxed, _ = train_exact(x, y, dataclasses.replace(cfg, qat_scale="max"))
    assert TrainConfig().qat_scale == "mse"  # the default
    assert any(not np.array_equal(a, b) for a, b in zip(maxed.weights, fused.weights, strict=True))


def test_bad_qat_scale_is_refused_in_one_line(capsys, tmp_path):
    with pytest.raises(ConfigError, match="qat scale must be one of max, mse"):
        TrainConfig(qat_scale="lsq")
    try:
        code = cli.main(["train", "--qat-bits", "3", "--qat-scale", "lsq", "--out", str(tmp_path / "x.h5")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "--qat-scale" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "x.h5").exists()


def test_rounding_table_rows_are_the_emulator_on_each_rule():
    from rounding_table import rounding_rows

    from popcount_learn import emulator

    net = _tiny_network(2)
    rng = np.random.default_rng(4)
    images = (rng.random((40, 30)) < 0.4).astype(np.uint8) * 255
    labels = rng.integers(0, 4, 40)
    rows = rounding_rows(net, images, labels, [3, 2])
    assert [(r["bits"], r["scale_rule"]) for r in rows] == [(3, "max"), (3, "mse"), (2, "max"), (2, "mse")]
    for row in rows:
        image = quantize(net, bits=row["bits"], scale_rule=row["scale_rule"])
        summary = emulator.summarize(emulator.emulate(image, images), labels)
        assert row["accuracy"] == summary["accuracy"]
        assert row["hidden_spikes"] == summary["hidden_spikes_before_decision_mean"]
    assert quantize(net, bits=2, scale_rule="mse").layers[0].scale < quantize(net, bits=2).layers[0].scale
