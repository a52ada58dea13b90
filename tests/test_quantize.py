"""Quantisation of float networks to weight images and back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from popcount_learn.datapath import DatapathConfig
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.errors import ConfigError
from popcount_learn.network import ExactNetwork
from popcount_learn.quantize import dequantize, quantize


def _net(*weights, encoding=None):
    return ExactNetwork([np.asarray(w, dtype=np.float64) for w in weights], encoding or SpikeEncoding())


@settings(max_examples=150, deadline=None)
@given(
    bits=st.integers(2, 16),
    w=hnp.arrays(
        np.float64,
        st.tuples(st.integers(2, 6), st.integers(1, 5)),
        elements=st.floats(-4.0, 4.0, allow_nan=False, allow_subnormal=False),
    ),
)
def test_round_trip_error_is_at_most_half_a_step(bits, w):
    if not np.any(np.abs(w) > 1e-3):
        w = w.copy()
        w[0, 0] = 1.0
    spec = DatapathConfig(weight_bits=bits, membrane_bits=32, current_bits=32, current_frac_bits=0, time_shift=4)
    image = quantize(_net(w), spec)
    layer = image.layers[0]
    scale = np.max(np.abs(w)) / (2 ** (bits - 1) - 1)
    assert layer.scale == scale
    assert layer.weights_lsb.min() >= -(2 ** (bits - 1) - 1)  # the extra negative code is unused
    assert layer.weights_lsb.max() <= 2 ** (bits - 1) - 1
    assert np.abs(layer.weights_lsb).max() == 2 ** (bits - 1) - 1  # the largest weight uses full scale
    back = dequantize(image).weights[0]
    assert np.all(np.abs(back - w) <= scale / 2 * (1 + 1e-12))
    assert layer.weights_lsb.dtype == (np.int8 if bits <= 8 else np.int16)


def test_rounding_is_half_to_even_by_hand():
    # max|w| = 3 with 3 bits (weight_max 3): scale 1. 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2.
    spec = DatapathConfig(weight_bits=3, time_shift=0, current_frac_bits=0, current_bits=8)
    image = quantize(_net([[0.5, 1.5, 2.5], [-0.5, -1.5, 3.0]]), spec)
    assert image.layers[0].weights_lsb.tolist() == [[0, 2, 2], [0, -2, 3]]
    assert image.layers[0].scale == 1.0


def test_threshold_follows_scale():
    # threshold_lsb = round(2**(frac + shift) / scale); frac 6, shift 6, max|w| = 0.5 at 8 bits:
    # scale = 0.5 / 127, threshold = round(4096 * 254) = 1040384.
    net = _net(np.array([[0.5, -0.25], [0.1, 0.0]]), np.array([[0.2], [-0.4], [0.05]]))
    image = quantize(net, bits=8)
    assert image.layers[0].threshold_lsb == 4096 * 254
    assert image.layers[1].scale == 0.4 / 127
    assert image.layers[1].threshold_lsb == round(4096 / (0.4 / 127))
    assert image.spec.weight_bits == 8
    assert image.topology == (1, 2, 1)


def test_encoding_fields_follow_the_network():
    enc = SpikeEncoding(threshold=77, dark_time=0.5)
    spec = DatapathConfig(time_shift=6)
    image = quantize(_net([[1.0], [0.5]], encoding=enc), spec)
    assert image.spec.input_threshold == 77
    assert image.spec.dark_input_step == 32  # 0.5 / 2**-6
    back = dequantize(image)
    assert back.encoding == SpikeEncoding(threshold=77, dark_time=0.5)
    never = quantize(_net([[1.0], [0.5]]), spec)
    assert never.spec.dark_input_step == -1
    assert dequantize(never).encoding.dark_time is None


def test_provenance_is_copied():
    prov = {"seed": 3}
    image = quantize(_net([[1.0], [0.5]]), provenance=prov)
    prov["seed"] = 4
    assert image.provenance == {"seed": 3}


def test_errors():
    with pytest.raises(ConfigError, match="all weights are zero"):
        quantize(_net([[0.0], [0.0]]))
    with pytest.raises(ConfigError, match=r"contradicts spec.weight_bits"):
        quantize(_net([[1.0], [0.5]]), DatapathConfig(weight_bits=4), bits=8)
    with pytest.raises(ConfigError, match="weight_bits"):
        quantize(_net([[1.0], [0.5]]), bits=17)
    with pytest.raises(ConfigError, match="ExactNetwork"):
        quantize([np.ones((2, 1))])
    with pytest.raises(ConfigError, match="dequantize: expected a WeightImage"):
        dequantize(_net([[1.0], [0.5]]))
    with pytest.raises(ConfigError, match="spec must be a DatapathConfig"):
        quantize(_net([[1.0], [0.5]]), {"weight_bits": 8})
    # dark_time too late for max_steps
    with pytest.raises(ConfigError, match="dark_time"):
        quantize(_net([[1.0], [0.5]], encoding=SpikeEncoding(dark_time=100.0)), DatapathConfig(max_steps=64))
    # dark_time shorter than half a step rounds to step 0
    with pytest.raises(ConfigError, match="dark_time"):
        quantize(_net([[1.0], [0.5]], encoding=SpikeEncoding(dark_time=0.001)))
    # explicit spec values that contradict the encoding
    with pytest.raises(ConfigError, match="input_threshold"):
        quantize(_net([[1.0], [0.5]], encoding=SpikeEncoding(threshold=10)), DatapathConfig(input_threshold=20))
    # a threshold that cannot fit the membrane register, named with its layer
    with pytest.raises(ConfigError, match="layer 0"):
        quantize(_net([[1e-6], [0.0]]), DatapathConfig(membrane_bits=8))


@pytest.mark.parametrize("bits", list(range(2, 17)))
def test_every_weight_width_quantises_a_typical_network_with_the_default_spec(bits):
    """Weights up to ~1 need thresholds of ~2**(frac+shift) * weight_max: registers must grow."""
    from popcount_learn.emulator import emulate

    rng = np.random.default_rng(bits)
    net = ExactNetwork([rng.normal(0.02, 0.3, (17, 9)), rng.normal(0.1, 0.4, (10, 3))])
    image = quantize(net, bits=bits)
    assert image.spec.weight_bits == bits
    assert all(1 <= layer.threshold_lsb <= image.spec.membrane_max for layer in image.layers)
    images = rng.integers(0, 256, (20, 16)).astype(np.uint8)
    emulate(image, images)  # the emulator's own bound checks accept the widened registers
