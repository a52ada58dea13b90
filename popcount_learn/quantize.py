"""Float network -> weight image (per-layer symmetric quantisation) and back.

Per layer ``k``: ``scale_k = max|w_k| / weight_max`` and
``w_lsb = clip(rint(w / scale_k), weight_min, weight_max)`` where ``rint`` rounds half to even
(numpy). Hence ``|w - w_lsb * scale_k| <= scale_k / 2``; the largest weight maps to
``+-weight_max`` and ``weight_min`` (the extra negative code) is never produced.
The threshold 1 becomes ``spec.threshold_lsb(scale_k)`` membrane LSBs.

The encoding fields of the spec follow the network's SpikeEncoding: ``input_threshold =
encoding.threshold`` and ``dark_input_step = round(dark_time / dt)`` (Python ``round``: half to
even), or -1 when dark pixels never spike.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .datapath import DatapathConfig
from .encoding import SpikeEncoding
from .errors import ConfigError
from .network import ExactNetwork
from .weight_image import LayerImage, WeightImage, binary_encoding_of, weight_dtype

_DEFAULTS = DatapathConfig()


def dark_input_step_for(spec: DatapathConfig, encoding: SpikeEncoding) -> int:
    """Step of dark-pixel spikes for ``encoding`` under ``spec``'s time step, -1 for never."""
    if encoding.dark_time is None:
        return -1
    step = round(encoding.dark_time * 2**spec.time_shift)
    if not 1 <= step < spec.max_steps:
        raise ConfigError(
            f"dark_time {encoding.dark_time:g} is {step} steps of dt = 2**-{spec.time_shift}, "
            f"outside 1..max_steps-1 = {spec.max_steps - 1}; change time_shift or max_steps"
        )
    return step


def encoding_for(spec: DatapathConfig) -> SpikeEncoding:
    """The binary input encoding ``spec`` implies (the inverse of the rule above)."""
    return binary_encoding_of(spec)


def _spec_for(network: ExactNetwork, spec: DatapathConfig | None, bits: int | None) -> DatapathConfig:
    if spec is None:
        spec = DatapathConfig.for_weight_bits(8 if bits is None else bits)
    elif not isinstance(spec, DatapathConfig):
        raise ConfigError(f"quantize: spec must be a DatapathConfig, got {type(spec).__name__}")
    elif bits is not None and bits != spec.weight_bits:
        raise ConfigError(f"quantize: bits={bits} contradicts spec.weight_bits={spec.weight_bits}")
    enc = network.encoding
    if enc.kind != "binary":
        for name in ("input_threshold", "dark_input_step"):
            if getattr(spec, name) != getattr(_DEFAULTS, name):
                raise ConfigError(
                    f"quantize: spec.{name} applies to binary inputs; the network's encoding is {enc.kind}"
                )
        return spec
    dark = dark_input_step_for(spec, enc)
    # A spec field left at its default follows the encoding; an explicit, different value is a
    # contradiction the user has to resolve.
    for name, wanted in (("input_threshold", enc.threshold), ("dark_input_step", dark)):
        have = getattr(spec, name)
        if have != wanted and have != getattr(_DEFAULTS, name):
            raise ConfigError(f"quantize: spec.{name}={have} contradicts the network's encoding ({name} {wanted})")
    return dataclasses.replace(spec, input_threshold=int(enc.threshold), dark_input_step=dark)


def quantize_layer(w, weight_max: int, name: str = "layer") -> tuple[np.ndarray, float]:
    """One layer's integers and scale: ``scale = max|w| / weight_max``, ``w_lsb = rint(w / scale)``
    (float64 arithmetic; ``|w_lsb| <= weight_max`` by construction, the clip only guards it)."""
    w = np.asarray(w, dtype=np.float64)
    w_abs_max = float(np.max(np.abs(w)))
    if not np.isfinite(w_abs_max):
        raise ConfigError(f"{name}: weights are not finite, no quantisation scale exists")
    if w_abs_max == 0.0:
        raise ConfigError(f"{name}: all weights are zero, no quantisation scale exists")
    scale = w_abs_max / weight_max
    return np.clip(np.rint(w / scale), -weight_max, weight_max), scale


def fake_quantize(weights, weight_bits: int) -> list[np.ndarray]:
    """The weights ``quantize`` would give at ``weight_bits``, back in real units, per layer:
    ``w_lsb * scale`` (float64, then the layer's dtype). For float64 weights this is exactly
    ``dequantize(quantize(network, bits=weight_bits))``: the network the emulator runs."""
    weight_max = DatapathConfig.for_weight_bits(weight_bits).weight_max
    out = []
    for k, w in enumerate(weights):
        w_lsb, scale = quantize_layer(w, weight_max, f"layer {k}")
        out.append((w_lsb * scale).astype(np.asarray(w).dtype, copy=False))
    return out


def quantize(
    network: ExactNetwork,
    spec: DatapathConfig | None = None,
    *,
    bits: int | None = None,
    provenance: dict | None = None,
) -> WeightImage:
    """Quantise every layer of ``network`` to ``spec.weight_bits`` (default spec: 8 bits).

    ``bits`` sets the weight width when no spec is given (default 8); with a spec it must agree.
    ``provenance`` is stored in the image as given (copied).
    """
    if not isinstance(network, ExactNetwork):
        raise ConfigError(f"quantize: expected an ExactNetwork, got {type(network).__name__}")
    spec = _spec_for(network, spec, bits)
    dtype = weight_dtype(spec)
    layers = []
    for k, w in enumerate(network.weights):
        w_lsb, scale = quantize_layer(w, spec.weight_max, f"layer {k}")
        w_lsb = w_lsb.astype(dtype)
        try:
            threshold = spec.threshold_lsb(scale)
        except ConfigError as exc:
            raise ConfigError(f"layer {k}: {exc}") from None
        layers.append(LayerImage(weights_lsb=w_lsb, threshold_lsb=threshold, scale=scale))
    enc = network.encoding
    stored = None if enc.kind == "binary" and enc.scaling is None else enc
    return WeightImage(spec=spec, layers=tuple(layers), provenance=dict(provenance or {}), encoding=stored)


def dequantize(image: WeightImage) -> ExactNetwork:
    """The float network a weight image represents: ``w = w_lsb * scale`` (threshold 1).

    Thresholds are not carried over: the float model's threshold is 1 by definition, and
    ``threshold_lsb`` only approximates ``1 / scale`` in membrane units.
    """
    if not isinstance(image, WeightImage):
        raise ConfigError(f"dequantize: expected a WeightImage, got {type(image).__name__}")
    weights = [layer.weights_lsb.astype(np.float64) * layer.scale for layer in image.layers]
    return ExactNetwork(weights, image.input_encoding)
