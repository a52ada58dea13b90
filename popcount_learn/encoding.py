"""Input encoding: feature codes 0..255 -> spike times (float model) and spike steps (datapath).

Every body sees the same input: one 8-bit *code* per feature. Images in IDX files are their own
codes (pixels 0..255); other data are scaled to codes by a ``FeatureScaling`` fitted on the
training split and stored with the model. An ``InputEncoding`` maps a code ``v`` to a spike time
``t`` (units of the synaptic time constant; ``z = exp(t)``, ``inf`` = never):

``binary`` (the default; MNIST as tuned): ``v > threshold`` spikes at ``t = 0``; the other codes
    at ``t = dark_time``, or never when ``dark_time`` is None. Never-spiking dark pixels are what
    lets hardware read only the weight rows of bright pixels (~13% on MNIST).
``latency`` (graded, TTFS): ``t = t_max * (255 - v) / 255``, a larger value spikes earlier;
    codes ``v < silence`` never spike (``silence = 0``: every input spikes, code 0 at ``t_max``).

The datapath step of a code is ``step_table(spec)[v]`` (256 entries, -1 = never), defined once
here: binary as ``DatapathConfig.input_threshold`` / ``dark_input_step`` say, latency as
``floor(t_max * (255 - v) * 2**time_shift / 255 + 1/2)`` in float64, evaluated in that order
(docs/datapath.md, "Input encoding"). The exact model trains on the real-valued times; the
emulator, the on-chip trainer and every board take the steps of this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import ConfigError

CODE_MAX = 255
ENCODING_KINDS = ("binary", "latency")
ENCODING_KIND_CODES = {"binary": 0, "latency": 1}


def _is_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


@dataclass(frozen=True)
class InputEncoding:
    """How an 8-bit feature code becomes an input spike (module docstring for the equations).

    kind: "binary" or "latency".
    threshold: binary: a code spikes at t = 0 when ``code > threshold`` (0..254).
    dark_time: binary: spike time of the other codes, or None = never.
    t_max: latency: the spike time of code 0, in synaptic time constants (> 0). 3 (the field's
        default) spreads the inputs' z = exp(t) over 1..20, so a value changes an input's share
        of the membrane ``w (1 - z_i / z)`` markedly; 4 (z in 1..55, the first default) trailed 3
        on graded MNIST and breast_cancer. A new network trained by the CLI gets
        ``latency_t_max_for`` its data: 3 for codes at the ends of the range, 2 for codes in
        between that vary independently, longer as the samples differ more in their common level
        (BENCHMARKS.md, issue #14).
    silence: latency: codes below it never spike (0..255; 0 = every code spikes).
    scaling: how raw features became codes (None: the data are codes already, e.g. IDX pixels).

    Fields of the other kind must stay at their defaults, so one encoding has one representation.
    """

    kind: str = "binary"
    threshold: int = 128
    dark_time: float | None = None
    t_max: float = 3.0
    silence: int = 0
    scaling: FeatureScaling | None = None

    ENUM_CODES: ClassVar[dict[str, dict[str, int]]] = {"kind": ENCODING_KIND_CODES}

    def __post_init__(self) -> None:
        if self.kind not in ENCODING_KINDS:
            raise ConfigError(f"encoding kind must be one of {ENCODING_KINDS}, got {self.kind!r}")
        if isinstance(self.threshold, bool) or not (
            isinstance(self.threshold, (int, np.integer)) and 0 <= self.threshold <= 254
        ):
            raise ConfigError(f"encoding threshold must be an integer in 0..254, got {self.threshold!r}")
        if self.dark_time is not None and (
            not _is_real(self.dark_time) or not (math.isfinite(self.dark_time) and self.dark_time > 0)
        ):
            raise ConfigError(f"dark_time must be a positive finite time or None, got {self.dark_time!r}")
        if not _is_real(self.t_max) or not (math.isfinite(self.t_max) and self.t_max > 0):
            raise ConfigError(f"latency t_max must be a positive finite time, got {self.t_max!r}")
        if isinstance(self.silence, bool) or not (
            isinstance(self.silence, (int, np.integer)) and 0 <= self.silence <= CODE_MAX
        ):
            raise ConfigError(f"latency silence must be an integer code in 0..255, got {self.silence!r}")
        if self.scaling is not None and not isinstance(self.scaling, FeatureScaling):
            raise ConfigError(f"scaling must be a FeatureScaling or None, got {type(self.scaling).__name__}")
        defaults = InputEncoding.__dataclass_fields__
        unused = ("t_max", "silence") if self.kind == "binary" else ("threshold", "dark_time")
        for name in unused:
            if getattr(self, name) != defaults[name].default:
                raise ConfigError(f"encoding field {name} does not apply to a {self.kind} encoding")

    @classmethod
    def latency(cls, t_max: float = 3.0, silence: int = 0, scaling=None) -> InputEncoding:
        return cls(kind="latency", t_max=float(t_max), silence=int(silence), scaling=scaling)

    # -- the one definition of the mapping --

    def code_times(self) -> np.ndarray:
        """Spike time of every code 0..255, float64 (``inf`` = never)."""
        v = np.arange(CODE_MAX + 1, dtype=np.float64)
        if self.kind == "binary":
            late = math.inf if self.dark_time is None else float(self.dark_time)
            return np.where(v > self.threshold, 0.0, late)
        t = self.t_max * (CODE_MAX - v) / CODE_MAX
        return np.where(v >= self.silence, t, math.inf)

    def step_table(self, spec) -> np.ndarray:
        """Datapath spike step of every code 0..255 under ``spec`` (a DatapathConfig), int32,
        -1 = never. ConfigError when a step does not fit ``0 .. max_steps - 1``."""
        if self.kind == "binary":
            dark = spec.dark_input_step
            return np.where(np.arange(CODE_MAX + 1) > spec.input_threshold, 0, dark).astype(np.int32)
        v = np.arange(CODE_MAX + 1, dtype=np.float64)
        steps = np.floor(self.t_max * (CODE_MAX - v) * float(2**spec.time_shift) / CODE_MAX + 0.5)
        last = int(steps[self.silence])  # the latest step: the smallest code that spikes
        if last >= spec.max_steps:
            raise ConfigError(
                f"latency t_max {self.t_max:g} is {last} steps of dt = 2**-{spec.time_shift}, beyond "
                f"max_steps - 1 = {spec.max_steps - 1}; lower t_max or raise max_steps"
            )
        return np.where(v >= self.silence, steps, -1).astype(np.int32)

    def times(self, codes: np.ndarray) -> np.ndarray:
        """Spike times of uint8 codes ``(n, ...)`` as float64 ``(n, n_features)``."""
        return self.code_times()[_flat_codes(codes)]

    def input_z(self, codes: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Input spike times in the z domain, ``z = exp(t)``; ``inf`` for no spike.

        A time whose ``z`` overflows ``dtype`` is refused: inf would mean "never".
        """
        times = self.code_times()
        finite = times[np.isfinite(times)]
        with np.errstate(over="ignore"):
            z_table = np.exp(times).astype(dtype)
            if finite.size and not np.isfinite(np.exp(finite.max()).astype(dtype)):
                raise ConfigError(
                    f"spike time {finite.max():g} is too late: z = exp(t) overflows {np.dtype(dtype).name}"
                )
        return z_table[_flat_codes(codes)]

    def bright(self, codes: np.ndarray) -> np.ndarray:
        """Boolean mask of the inputs that spike at t = 0, shape ``(n, n_features)``."""
        return self.times(codes) == 0.0

    # -- spec plumbing (strict like DatapathConfig) --

    KIND_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "binary": ("threshold", "dark_time"),
        "latency": ("t_max", "silence"),
    }

    def to_dict(self) -> dict:
        """``kind`` and the fields of that kind (the other kind's are unused, never stored: a
        later change of their defaults cannot change what a file means; scaling, arrays, is
        stored beside them)."""
        return {"kind": self.kind, **{name: getattr(self, name) for name in self.KIND_FIELDS[self.kind]}}

    @classmethod
    def from_dict(cls, d: dict, scaling=None) -> InputEncoding:
        """Inverse of ``to_dict``: exactly ``kind`` and the fields of that kind."""
        kind = d.get("kind")
        if kind not in cls.KIND_FIELDS:
            raise ConfigError(f"InputEncoding: kind must be one of {ENCODING_KINDS}, got {kind!r}")
        wanted = {"kind", *cls.KIND_FIELDS[kind]}
        unknown, missing = sorted(set(d) - wanted), sorted(wanted - set(d))
        if unknown:
            raise ConfigError(f"InputEncoding: unknown field(s) {unknown} for a {kind} encoding")
        if missing:
            raise ConfigError(f"InputEncoding: missing field(s) {missing} for a {kind} encoding")
        return cls(**d, scaling=scaling)


# The name the library used before graded input; a binary InputEncoding is what it described.
SpikeEncoding = InputEncoding


@dataclass(frozen=True, eq=False)
class FeatureScaling:
    """Raw feature -> 8-bit code: ``code = clip(floor(255 * (x - low) / (high - low) + 1/2), 0, 255)``.

    low, high: float64 arrays of shape ``(1,)`` (one range for every feature, e.g. grey images)
    or ``(n_features,)``; fitted as the min / max of the training split. A feature with
    ``high == low`` (constant in training) maps to code 0.
    """

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.atleast_1d(np.asarray(self.low, dtype=np.float64)).copy()
        high = np.atleast_1d(np.asarray(self.high, dtype=np.float64)).copy()
        if low.shape != high.shape or low.ndim != 1 or low.size == 0:
            raise ConfigError(f"scaling low/high must have one shape, (1,) or (n,), got {low.shape} and {high.shape}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))) or np.any(high < low):
            raise ConfigError("scaling low/high must be finite with high >= low")
        low.flags.writeable = False
        high.flags.writeable = False
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, FeatureScaling)
            and self.low.shape == other.low.shape
            and bool(np.array_equal(self.low, other.low) and np.array_equal(self.high, other.high))
        )

    def __hash__(self) -> int:
        return hash((self.low.tobytes(), self.high.tobytes()))

    @classmethod
    def fit(cls, x: np.ndarray, per_feature: bool) -> FeatureScaling:
        """min / max of ``x`` (n, n_features): per feature, or one range over all of them."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if per_feature:
            return cls(x.min(axis=0), x.max(axis=0))
        return cls(np.float64(x.min()), np.float64(x.max()))

    def codes(self, x: np.ndarray) -> np.ndarray:
        """uint8 codes of raw features ``x`` (n, ...) -> (n, n_features)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if self.low.size not in (1, x.shape[1]):
            raise ConfigError(f"the scaling covers {self.low.shape[0]} features, the data have {x.shape[1]}")
        span = self.high - self.low
        safe = np.where(span > 0, span, 1.0)
        scaled = np.where(span > 0, (x - self.low) * CODE_MAX / safe, 0.0)
        return np.clip(np.floor(scaled + 0.5), 0, CODE_MAX).astype(np.uint8)


# The latency window a new network gets (``latency_t_max_for``): 2 time constants for codes that
# are all in between and vary sample by sample independently of each other, up to 3 for codes at
# the ends of the range (graded MNIST: 82 % of its pixels are 0 or 255) or for samples that differ
# mostly in their common level (iris). BENCHMARKS.md, issue #14, fourth and fifth parts.
T_MAX_EXTREME_CODES = 3.0
T_MAX_GRADED_CODES = 2.0


def latency_t_max_for(codes: np.ndarray) -> float:
    """``t_max`` derived from the training codes: ``2 + max(f, m)`` rounded to 0.01, with ``f``
    the fraction of codes that are 0 or 255 and ``m = common_level_fraction(codes)``; either
    asks for a longer window, and the larger one decides.

    Codes at the ends spike at 0 or at t_max: the window only says how late "dark" is, and 3 was
    best on graded MNIST. Codes inside the range carry their value in their time, and z = exp(t)
    warps it: a window of 3 spreads z over 1..20, and on wine (1 % of codes at an end) it fitted
    the training split and missed 8 % of the validation split that a window of 2 or 1.5 got.
    But a network of first spikes is blind to a shift of every input by the same time but for the
    bias input, which spikes at a fixed time: a common level shows only against the bias, by
    ``t_max`` times the level's change. Iris (``m`` = 0.55: its four features measure one flower's
    size) underfitted at 2.04 and came back at 2.55 (validation, 4 folds x 2 seeds). Graded MNIST
    (f 0.82, m 0.02) and digits (0.58, 0.01) keep 2 + f.
    """
    flat = _flat_codes(codes)
    if flat.size == 0:
        return T_MAX_EXTREME_CODES
    at_ends = float(np.count_nonzero((flat == 0) | (flat == CODE_MAX))) / flat.size
    stretch = max(at_ends, common_level_fraction(flat))
    return round(T_MAX_GRADED_CODES + (T_MAX_EXTREME_CODES - T_MAX_GRADED_CODES) * stretch, 2)


def common_level_fraction(codes: np.ndarray) -> float:
    """``var_i(mean_j v_ij) / var_ij(v_ij)``: the share of the codes' variance that is each sample's
    common level (its mean over features), in [0, 1]; 0 for codes that do not vary or one feature."""
    flat = _flat_codes(codes)
    if flat.shape[1] < 2 or len(flat) < 2:
        return 0.0
    counts = np.bincount(flat.reshape(-1), minlength=CODE_MAX + 1).astype(np.float64)
    values = np.arange(CODE_MAX + 1, dtype=np.float64)
    mean = counts @ values / counts.sum()
    total = counts @ (values - mean) ** 2 / counts.sum()
    if total == 0.0:
        return 0.0
    levels = flat.sum(axis=1, dtype=np.int64) / flat.shape[1]
    return float(min(1.0, levels.var() / total))


def _flat_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise ConfigError(f"input codes must be uint8 (0..255), got dtype {codes.dtype}")
    return codes.reshape(len(codes), math.prod(codes.shape[1:]))
