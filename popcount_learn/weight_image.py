"""The weight image: integer weights, thresholds and datapath constants, nothing float but scales.

This is what is loaded into a board's weight memory. HDF5 serialisation lives in ``h5io``; the
byte stream a board receives (``upload_bytes``) and its CRC-32 are defined here, because they
are properties of the image, not of any file format. Layout: ``docs/weight-image.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
import zlib
from dataclasses import dataclass, field

import numpy as np

from .datapath import DatapathConfig
from .encoding import InputEncoding
from .errors import ConfigError
from .learning import LearningConfig


@dataclass(frozen=True)
class LayerImage:
    """One layer as the hardware stores it.

    weights_lsb: int array ``(n_pre + 1, n_post)``, one row per presynaptic neuron (one spike
        fetches one row); the last row is the bias input, which spikes at step 0.
    threshold_lsb: firing threshold in membrane register units (see DatapathConfig.threshold_lsb).
    scale: real weight = ``weights_lsb * scale``.
    """

    weights_lsb: np.ndarray
    threshold_lsb: int
    scale: float


@dataclass(frozen=True)
class WeightImage:
    """A deployable network: datapath spec, integer layers, provenance and, for an image that is
    trained on chip, the learning rule's spec (``None``: an inference-only image).

    encoding: the input encoding when the spec's binary fields (``input_threshold``,
    ``dark_input_step``) do not say it all (a latency encoding, or a feature scaling); None for
    a binary image on codes, as every image made before graded input (``input_encoding``).
    """

    spec: DatapathConfig
    layers: tuple[LayerImage, ...]
    provenance: dict = field(default_factory=dict)
    learning: LearningConfig | None = None
    encoding: InputEncoding | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, DatapathConfig):
            raise ConfigError(f"a weight image needs a DatapathConfig spec, got {type(self.spec).__name__}")
        if not self.layers:
            raise ConfigError("a weight image needs at least one layer")
        if not isinstance(self.provenance, dict):
            # The file format stores provenance as a JSON object; anything else could be written
            # but not read back.
            raise ConfigError(f"provenance must be a dict, got {type(self.provenance).__name__}")
        if self.learning is not None and not isinstance(self.learning, LearningConfig):
            raise ConfigError(f"learning must be a LearningConfig or None, got {type(self.learning).__name__}")
        spec = self.spec
        self._check_encoding()
        for k, layer in enumerate(self.layers):
            if not isinstance(layer, LayerImage):
                raise ConfigError(f"layer {k}: expected a LayerImage, got {type(layer).__name__}")
            w = layer.weights_lsb
            if not isinstance(w, np.ndarray) or w.ndim != 2 or not np.issubdtype(w.dtype, np.integer):
                what = f"{w.dtype} {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
                raise ConfigError(f"layer {k}: weights_lsb must be a 2-D integer array, got {what}")
            if w.shape[0] < 2 or w.shape[1] < 1:
                raise ConfigError(
                    f"layer {k}: weights_lsb has shape {w.shape}; a layer needs at least one "
                    "presynaptic row plus the bias row, and at least one neuron"
                )
            if k > 0 and w.shape[0] != self.layers[k - 1].weights_lsb.shape[1] + 1:
                raise ConfigError(
                    f"layer {k}: {w.shape[0]} rows, expected {self.layers[k - 1].weights_lsb.shape[1] + 1} "
                    "(previous layer size + bias row)"
                )
            if w.size and (w.min() < spec.weight_min or w.max() > spec.weight_max):
                raise ConfigError(
                    f"layer {k}: weights outside the {spec.weight_bits}-bit range "
                    f"[{spec.weight_min}, {spec.weight_max}] (min {w.min()}, max {w.max()})"
                )
            th = layer.threshold_lsb
            if isinstance(th, bool) or not isinstance(th, (int, np.integer)):
                raise ConfigError(f"layer {k}: threshold_lsb must be an integer, got {th!r}")
            if not 1 <= int(th) <= spec.membrane_max:
                raise ConfigError(f"layer {k}: threshold {layer.threshold_lsb} outside 1..{spec.membrane_max}")
            scale = layer.scale
            is_real = isinstance(scale, (int, float, np.integer, np.floating)) and not isinstance(
                scale, (bool, np.bool_)
            )
            if not (is_real and np.isfinite(scale) and scale > 0):
                raise ConfigError(f"layer {k}: scale must be a positive finite number, got {scale!r}")

    def _check_encoding(self) -> None:
        enc, spec = self.encoding, self.spec
        if enc is None:
            return
        if not isinstance(enc, InputEncoding):
            raise ConfigError(f"encoding must be an InputEncoding or None, got {type(enc).__name__}")
        if enc.kind == "binary":
            dark_step = -1 if enc.dark_time is None else round(enc.dark_time * 2**spec.time_shift)
            if (enc.threshold, dark_step) != (spec.input_threshold, spec.dark_input_step):
                raise ConfigError(
                    f"the binary encoding (threshold {enc.threshold}, dark_time {enc.dark_time}) contradicts the "
                    f"spec (input_threshold {spec.input_threshold}, dark_input_step {spec.dark_input_step})"
                )
        else:
            defaults = DatapathConfig()
            if (spec.input_threshold, spec.dark_input_step) != (defaults.input_threshold, defaults.dark_input_step):
                raise ConfigError(
                    "a latency image keeps the spec's binary fields input_threshold, dark_input_step at their defaults"
                )
            enc.step_table(spec)  # the latest step must fit max_steps

    @property
    def input_encoding(self) -> InputEncoding:
        """The encoding the image's inputs take: ``encoding``, or the binary one its spec states."""
        return self.encoding if self.encoding is not None else binary_encoding_of(self.spec)

    @property
    def topology(self) -> tuple[int, ...]:
        return (self.layers[0].weights_lsb.shape[0] - 1, *tuple(layer.weights_lsb.shape[1] for layer in self.layers))

    @property
    def weights_lsb(self) -> list[np.ndarray]:
        return [layer.weights_lsb for layer in self.layers]

    @property
    def thresholds_lsb(self) -> np.ndarray:
        return np.array([layer.threshold_lsb for layer in self.layers], dtype=np.int64)


def binary_encoding_of(spec: DatapathConfig) -> InputEncoding:
    """The binary encoding a spec states: a code spikes at step 0 when it is brighter than
    ``input_threshold``; the others at ``dark_input_step`` (time ``step * dt``), or never for -1."""
    dark_time = None if spec.dark_input_step == -1 else spec.dark_input_step * spec.dt
    return InputEncoding(threshold=spec.input_threshold, dark_time=dark_time)


# --- integer storage types -------------------------------------------------------------------


def smallest_signed_dtype(bits: int) -> np.dtype:
    """Smallest little-endian signed integer dtype holding a ``bits``-bit two's complement value."""
    for dtype in ("<i1", "<i2", "<i4", "<i8"):
        if bits <= np.dtype(dtype).itemsize * 8:
            return np.dtype(dtype)
    raise ConfigError(f"no integer type holds {bits} bits")


def weight_dtype(spec: DatapathConfig) -> np.dtype:
    """Storage type of ``weights_lsb``: int8 for weight_bits <= 8, else int16 (little-endian)."""
    return smallest_signed_dtype(spec.weight_bits)


def threshold_dtype(spec: DatapathConfig) -> np.dtype:
    """Storage type of ``threshold_lsb`` in a file: the smallest that fits ``membrane_bits``."""
    return smallest_signed_dtype(spec.membrane_bits)


# --- the upload byte stream (what a board receives; see docs/weight-image.md) ----------------

UPLOAD_MAGIC = b"PCLW"
UPLOAD_STREAM_VERSION = 1

# Header order of the spec fields, each one int32 little-endian. Every DatapathConfig field must
# appear here so that the CRC-32 covers everything the board's behaviour depends on.
UPLOAD_SPEC_FIELDS = (
    "time_shift",
    "weight_bits",
    "current_frac_bits",
    "current_bits",
    "membrane_bits",
    "current_overflow",
    "membrane_overflow",
    "input_threshold",
    "dark_input_step",
    "max_steps",
    "tie_rule",
)
UPLOAD_HEADER_BYTES = 4 + 4 + 4 * len(UPLOAD_SPEC_FIELDS) + 4
UPLOAD_LAYER_HEADER_BYTES = 12


def stream_spec_codes(spec: DatapathConfig) -> tuple[int, ...]:
    """The spec fields as the stream header carries them: ``UPLOAD_SPEC_FIELDS`` order, string
    fields by ``DatapathConfig.ENUM_CODES`` (the codes the kernels and headers use)."""
    return spec.to_codes(UPLOAD_SPEC_FIELDS)


def upload_bytes(image: WeightImage) -> bytes:
    """The image as the byte stream a board receives (layout: docs/weight-image.md).

    Header: magic ``PCLW``; int32 LE stream version; one int32 LE per spec field in
    ``UPLOAD_SPEC_FIELDS`` order (``stream_spec_codes``); int32 LE layer count.
    Per layer: int32 LE ``n_pre + 1``, ``n_post``, ``threshold_lsb``; then the weight rows in
    memory order (row = presynaptic neuron, bias row last), each weight int8 when
    ``weight_bits <= 8`` else int16 LE. No padding anywhere.
    """
    spec = image.spec
    spec_names = {f.name for f in dataclasses.fields(spec)}
    if spec_names != set(UPLOAD_SPEC_FIELDS):
        raise RuntimeError(
            f"upload stream layout covers {sorted(UPLOAD_SPEC_FIELDS)} but DatapathConfig has "
            f"{sorted(spec_names)}: extend UPLOAD_SPEC_FIELDS and bump UPLOAD_STREAM_VERSION"
        )
    header = [UPLOAD_STREAM_VERSION, *stream_spec_codes(spec)]
    header.append(len(image.layers))
    parts = [UPLOAD_MAGIC, np.asarray(header, dtype="<i4").tobytes()]
    wdtype = weight_dtype(spec)
    for layer in image.layers:
        w = layer.weights_lsb
        parts.append(np.asarray([w.shape[0], w.shape[1], int(layer.threshold_lsb)], dtype="<i4").tobytes())
        # Values were range-checked in __post_init__, so the cast is exact.
        parts.append(np.ascontiguousarray(w, dtype=wdtype).tobytes(order="C"))
    return b"".join(parts)


def image_crc32(image: WeightImage) -> int:
    """CRC-32 (zlib / IEEE 802.3 polynomial, as ``zlib.crc32``) of ``upload_bytes(image)``."""
    return zlib.crc32(upload_bytes(image)) & 0xFFFFFFFF


def provenance_record(mode: str, **fields) -> dict:
    """A provenance dict for a new image: ``mode`` plus ``fields`` (epochs, seed, dataset,
    accuracy, ...), with ``package_version`` and ``created_utc`` (ISO 8601) filled in."""
    from . import __version__

    record = {"mode": mode, **fields}
    record.setdefault("package_version", __version__)
    record.setdefault("created_utc", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return record
