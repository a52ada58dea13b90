"""The fixed-point datapath spec: the single source of truth for every width, shift and limit.

The emulator, the weight image and, through ``codegen``, the firmware and Verilog headers all
derive their constants from a ``DatapathConfig``; nothing re-types them. See ``docs/datapath.md``
for the full semantics.

Registers (all two's complement):

====================  =====================  ===============================================
register              width (bits)           meaning / overflow policy
====================  =====================  ===============================================
weight                ``weight_bits``        one synapse, real value ``w_lsb * scale``
synaptic current I    ``current_bits``       ``current_frac_bits`` extra fraction bits below
                                             the weight LSB; ``current_overflow``
membrane V            ``membrane_bits``      threshold per layer in the same units;
                                             ``membrane_overflow``
spike flag            1 per neuron           set on the first crossing, never cleared
====================  =====================  ===============================================

One time step is ``dt = 2**-time_shift`` synaptic time constants. Per step, per layer:
decay ``I -= I >> time_shift`` (arithmetic shift: floor, i.e. rounds toward -inf), accumulate
arriving weight rows ``I += w << current_frac_bits``, integrate ``V += I``, compare
``V >= threshold`` and fire. A spike fired at step n reaches the next layer at step n + 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ._spec_fields import field_codes, from_field_codes, strict_from_dict, typed_options
from .errors import ConfigError

OVERFLOW_POLICIES = ("saturate", "wrap")
TIE_RULES = ("max_membrane", "lowest_index")
# Integer codes of the policies and tie rules, as the kernels and the C header use them.
OVERFLOW_CODES = {"saturate": 0, "wrap": 1}
TIE_CODES = {"max_membrane": 0, "lowest_index": 1}


@dataclass(frozen=True)
class DatapathConfig:
    """Bit widths, shifts, limits and rules of the time-stepped datapath.

    time_shift: dt = 2**-time_shift (synaptic time constant = 1); also the decay shift.
    weight_bits: signed weight width, 2..16.
    current_frac_bits: fraction bits of I below the weight LSB (rule of thumb: >= time_shift,
        else currents below 2**time_shift never decay under the floor shift).
    current_bits / membrane_bits: signed register widths.
    current_overflow / membrane_overflow: "saturate" (clip to the register range) or "wrap".
    input_threshold: a pixel spikes at step 0 when ``pixel > input_threshold``.
    dark_input_step: step at which dark pixels spike, or -1 for never.
    max_steps: step limit; no output spike by then means "no decision".
    tie_rule: among outputs crossing in the same step, "max_membrane" picks the largest V
        (then the lowest index); "lowest_index" picks the lowest index.
    """

    time_shift: int = 6
    weight_bits: int = 8
    current_frac_bits: int = 6
    current_bits: int = 24
    membrane_bits: int = 24
    current_overflow: str = "saturate"
    membrane_overflow: str = "saturate"
    input_threshold: int = 128
    dark_input_step: int = -1
    max_steps: int = 512
    tie_rule: str = "max_membrane"

    # How the string fields travel as integers (kernels, headers, the upload stream, INFO).
    ENUM_CODES: ClassVar[dict[str, dict[str, int]]] = {
        "current_overflow": OVERFLOW_CODES,
        "membrane_overflow": OVERFLOW_CODES,
        "tie_rule": TIE_CODES,
    }

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"DatapathConfig: {msg}")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int",):
                need(isinstance(v, int) and not isinstance(v, bool), f"{f.name} must be an int, got {v!r}")
        need(0 <= self.time_shift <= 12, f"time_shift must be in 0..12, got {self.time_shift}")
        need(2 <= self.weight_bits <= 16, f"weight_bits must be in 2..16, got {self.weight_bits}")
        need(0 <= self.current_frac_bits <= 16, f"current_frac_bits must be in 0..16, got {self.current_frac_bits}")
        need(
            self.weight_bits + self.current_frac_bits <= self.current_bits <= 32,
            f"current_bits must be in weight_bits+current_frac_bits "
            f"({self.weight_bits + self.current_frac_bits})..32, got {self.current_bits}",
        )
        need(2 <= self.membrane_bits <= 32, f"membrane_bits must be in 2..32, got {self.membrane_bits}")
        for name in ("current_overflow", "membrane_overflow", "tie_rule"):
            need(isinstance(getattr(self, name), str), f"{name} must be a string, got {getattr(self, name)!r}")
        need(self.current_overflow in OVERFLOW_POLICIES, f"current_overflow must be one of {OVERFLOW_POLICIES}")
        need(self.membrane_overflow in OVERFLOW_POLICIES, f"membrane_overflow must be one of {OVERFLOW_POLICIES}")
        need(0 <= self.input_threshold <= 254, f"input_threshold must be in 0..254, got {self.input_threshold}")
        need(1 <= self.max_steps <= 1 << 20, f"max_steps must be in 1..2**20, got {self.max_steps}")
        need(
            self.dark_input_step == -1 or 0 < self.dark_input_step < self.max_steps,
            f"dark_input_step must be -1 (never) or in 1..max_steps-1, got {self.dark_input_step}",
        )
        need(self.tie_rule in TIE_RULES, f"tie_rule must be one of {TIE_RULES}")

    # Derived constants: everything else reads these, never re-derives them.
    @property
    def dt(self) -> float:
        """Time step in synaptic time constants."""
        return 2.0**-self.time_shift

    @property
    def weight_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def weight_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def current_max(self) -> int:
        return (1 << (self.current_bits - 1)) - 1

    @property
    def current_min(self) -> int:
        return -(1 << (self.current_bits - 1))

    @property
    def membrane_max(self) -> int:
        return (1 << (self.membrane_bits - 1)) - 1

    @property
    def membrane_min(self) -> int:
        return -(1 << (self.membrane_bits - 1))

    @property
    def membrane_frac_bits(self) -> int:
        """V is in units of ``scale * 2**-membrane_frac_bits`` (current fraction bits + time_shift)."""
        return self.current_frac_bits + self.time_shift

    @property
    def current_overflow_code(self) -> int:
        return OVERFLOW_CODES[self.current_overflow]

    @property
    def membrane_overflow_code(self) -> int:
        return OVERFLOW_CODES[self.membrane_overflow]

    @property
    def tie_rule_code(self) -> int:
        return TIE_CODES[self.tie_rule]

    def accumulator_bits(self, n_rows: int) -> int:
        """Signed width that holds the sum of ``n_rows`` shifted weight rows without overflow.

        One step's arrivals are at most ``n_rows`` rows (all presynaptic neurons plus the bias),
        each ``|w << current_frac_bits| <= 2**(weight_bits - 1 + current_frac_bits)``.
        The pre-overflow sum ``I_decayed + acc`` needs ``max(current_bits, this) + 1`` bits.
        """
        if n_rows < 1:
            raise ConfigError(f"accumulator_bits: n_rows must be >= 1, got {n_rows}")
        return self.weight_bits + self.current_frac_bits + (n_rows - 1).bit_length()

    def threshold_lsb(self, scale: float) -> int:
        """Threshold 1 (real units) in membrane register units for a layer of weight scale.

        V_real = V_lsb * scale * 2**-(current_frac_bits + time_shift), so
        threshold_lsb = round(2**(current_frac_bits + time_shift) / scale) (half to even).
        """
        if not scale > 0:
            raise ConfigError(f"weight scale must be positive, got {scale}")
        th = round(2.0 ** (self.current_frac_bits + self.time_shift) / scale)
        if not 1 <= th <= self.membrane_max:
            raise ConfigError(
                f"threshold {th} LSB does not fit the {self.membrane_bits}-bit membrane register "
                f"(scale {scale:g}); widen membrane_bits or change time_shift/current_frac_bits"
            )
        return th

    @classmethod
    def for_weight_bits(cls, weight_bits: int, **fields) -> DatapathConfig:
        """The default spec for ``weight_bits``-bit weights, registers widened to match.

        The threshold in register units is ~``2**(current_frac_bits + time_shift) * weight_max /
        max|w|``, so every extra weight bit needs one more current and membrane bit: both are
        ``24 + max(0, weight_bits - 8)`` bits (32 at 16-bit weights). ``fields`` override.
        """
        default = cls()
        widen = max(0, weight_bits - default.weight_bits)
        base = {
            "weight_bits": weight_bits,
            "current_bits": min(32, default.current_bits + widen),
            "membrane_bits": min(32, default.membrane_bits + widen),
        }
        base.update(fields)
        return cls(**base)

    @classmethod
    def from_options(cls, weight_bits: int = 8, options: dict | None = None) -> DatapathConfig:
        """``for_weight_bits(weight_bits)`` with fields overridden from text, e.g. {"time_shift": "8"}.

        Values are converted by the field's declared type; an unknown field, a value that is not
        of that type, or ``weight_bits`` itself (give it as ``weight_bits``) is a ConfigError.
        """
        if "weight_bits" in (options or {}):
            raise ConfigError("the weight width is set with --bits, not as a datapath field")
        typed = typed_options(cls, options, "datapath")
        return cls.for_weight_bits(weight_bits, **typed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DatapathConfig:
        """Rebuild a spec from every one of its fields; a missing or unknown field is an error.

        Defaults are not filled in: a stored spec that lacks a field would otherwise silently
        take today's default, which may differ from what the hardware was built with.
        """
        return strict_from_dict(cls, d)

    def to_codes(self, names: tuple[str, ...] | None = None) -> tuple[int, ...]:
        """The fields ``names`` (default: all, in order) as integers, strings by ``ENUM_CODES``."""
        return field_codes(self, names)

    @classmethod
    def from_codes(cls, codes, names: tuple[str, ...] | None = None) -> DatapathConfig:
        """Inverse of ``to_codes``."""
        return from_field_codes(cls, codes, names)
