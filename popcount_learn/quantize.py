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


SCALE_RULES = ("max", "mse")
MSE_CLIP_CANDIDATES = 256
MSE_CLIP_BINS = 2048


def _checked_abs_max(w: np.ndarray, name: str) -> float:
    w_abs_max = float(np.max(np.abs(w)))
    if not np.isfinite(w_abs_max):
        raise ConfigError(f"{name}: weights are not finite, no quantisation scale exists")
    if w_abs_max == 0.0:
        raise ConfigError(f"{name}: all weights are zero, no quantisation scale exists")
    return w_abs_max


def mse_clip(w, weight_max: int, name: str = "layer") -> float:
    """The clip ``c`` (the weight that maps to ``weight_max``) minimising the rounding error
    ``sum (w - s * clip(rint(w / s), -weight_max, weight_max))**2``, ``s = c / weight_max``,
    over the candidates ``c_j = max|w| * j / J`` (``J = MSE_CLIP_CANDIDATES``, ``j = 1..J``;
    ties: the largest). The error of each candidate is taken on a histogram of ``|w|``
    (``MSE_CLIP_BINS`` equal bins over ``[0, max|w|]``, each bin's weights given the code of its
    centre, with its exact count, sum and sum of squares), so the choice costs one pass over
    the weights. ``c <= max|w|`` always: the largest weight gets code ``+-weight_max``, which is
    what makes ``quantize`` (scale ``max|w_q| / weight_max``) give back the same codes for the
    clipped network ``w_q``."""
    a = np.abs(np.asarray(w, dtype=np.float64)).ravel()
    top = _checked_abs_max(a, name)
    nb = MSE_CLIP_BINS
    idx = np.minimum((a * (nb / top)).astype(np.int64), nb - 1)
    count = np.bincount(idx, minlength=nb).astype(np.float64)
    s1 = np.bincount(idx, a, minlength=nb)
    s2 = np.bincount(idx, a * a, minlength=nb)
    centre = (np.arange(nb) + 0.5) * (top / nb)
    clips = top * np.arange(1, MSE_CLIP_CANDIDATES + 1) / MSE_CLIP_CANDIDATES
    steps = clips / weight_max
    level = np.minimum(np.rint(centre[None, :] / steps[:, None]), weight_max) * steps[:, None]
    err = (s2[None, :] - 2.0 * level * s1[None, :] + level * level * count[None, :]).sum(axis=1)
    best = np.flatnonzero(err <= err.min())[-1]
    return float(clips[best])


def layer_clip(w, weight_max: int, scale_rule: str = "max", name: str = "layer") -> float:
    """The weight that maps to ``+-weight_max`` under ``scale_rule``: ``max|w|`` ("max") or
    ``mse_clip`` ("mse")."""
    if scale_rule == "max":
        return _checked_abs_max(np.asarray(w, dtype=np.float64), name)
    if scale_rule == "mse":
        return mse_clip(w, weight_max, name)
    raise ConfigError(f"scale rule must be one of {', '.join(SCALE_RULES)}, got {scale_rule!r}")


def quantize_layer(w, weight_max: int, name: str = "layer", clip: float | None = None) -> tuple[np.ndarray, float]:
    """One layer's integers and scale: ``scale = c / weight_max``, ``w_lsb = clip(rint(w / scale),
    -weight_max, weight_max)`` (float64 arithmetic), with ``c = max|w|`` unless ``clip`` is given
    (then weights beyond ``+-c`` saturate)."""
    w = np.asarray(w, dtype=np.float64)
    if clip is None:
        clip = _checked_abs_max(w, name)
    elif not (np.isfinite(clip) and clip > 0):
        raise ConfigError(f"{name}: the clip must be a positive number, got {clip!r}")
    scale = clip / weight_max
    return np.clip(np.rint(w / scale), -weight_max, weight_max), scale


def weight_clips(weights, weight_bits: int, scale_rule: str = "max") -> list[float]:
    """Per layer, ``layer_clip`` at ``weight_bits``."""
    weight_max = DatapathConfig.for_weight_bits(weight_bits).weight_max
    return [layer_clip(w, weight_max, scale_rule, f"layer {k}") for k, w in enumerate(weights)]


def fake_quantize(weights, weight_bits: int, clips=None) -> list[np.ndarray]:
    """The weights ``quantize`` would give at ``weight_bits``, back in real units, per layer:
    ``w_lsb * scale`` (float64, then the layer's dtype). For float64 weights this is exactly
    ``dequantize(quantize(network, bits=weight_bits))``: the network the emulator runs.
    ``clips`` (one per layer, e.g. ``weight_clips(..., "mse")``) replaces ``max|w|``; the result
    then re-quantises by ``quantize`` to the same integers when every clip is ``<= max|w|``."""
    weight_max = DatapathConfig.for_weight_bits(weight_bits).weight_max
    out = []
    for k, w in enumerate(weights):
        clip = None if clips is None else clips[k]
        w_lsb, scale = quantize_layer(w, weight_max, f"layer {k}", clip)
        out.append((w_lsb * scale).astype(np.asarray(w).dtype, copy=False))
    return out


def quantize(
    network: ExactNetwork,
    spec: DatapathConfig | None = None,
    *,
    bits: int | None = None,
    provenance: dict | None = None,
    scale_rule: str = "max",
) -> WeightImage:
    """Quantise every layer of ``network`` to ``spec.weight_bits`` (default spec: 8 bits).

    ``bits`` sets the weight width when no spec is given (default 8); with a spec it must agree.
    ``provenance`` is stored in the image as given (copied). ``scale_rule`` ("max" or "mse",
    ``layer_clip``) sets each layer's scale; "max" is the rule of the module docstring.
    """
    if not isinstance(network, ExactNetwork):
        raise ConfigError(f"quantize: expected an ExactNetwork, got {type(network).__name__}")
    spec = _spec_for(network, spec, bits)
    dtype = weight_dtype(spec)
    layers = []
    for k, w in enumerate(network.weights):
        clip = layer_clip(w, spec.weight_max, scale_rule, f"layer {k}")
        w_lsb, scale = quantize_layer(w, spec.weight_max, f"layer {k}", clip)
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
