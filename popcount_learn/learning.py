"""The sign-only popcount learning rule: its spec object and random draw (``docs/learning-rule.md``).

The kernels that apply it live in ``onchip_kernels.py`` (``onchip.OnchipLearner`` drives them,
``onchip_train`` trains a data set with them); this module holds what every implementation
(emulator, firmware, RTL) shares.

One training step on one labelled input, with ``E`` the last step run:

1. Forward: the datapath of ``docs/datapath.md`` on the current integer weights, run until
   ``E = min(D + margin_steps - 1, max_steps - 1)`` (``D`` = decision step; ``max_steps - 1``
   without a decision); under ``all_violators`` until ``E = min(s_c + margin_steps - 1,
   max_steps - 1)``, ``s_c`` the correct output's spike (``max_steps - 1`` if it never fires)
   (``window_end_step``).
2. Output deltas (+1 = fire later, -1 = fire earlier): a wrong output ``j`` that fired *violates*
   when the correct output ``c`` did not fire by ``E`` or ``s_j < s_c + margin_steps``. The
   earliest violator (lowest index among equals) gets +1 (``output_rule="all_violators"``: every
   violator); ``c`` gets -1 when something violates or ``c`` did not fire
   (``correct_rule="always"``: on every sample).
3. Causal sets: row ``r`` of layer ``k`` (an input, a neuron of layer ``k-1`` or the bias) is
   causal for neuron ``j`` when it arrived at step ``a_r <= deadline_j``: ``deadline_j`` is the
   step ``j`` fired at, or ``E`` for a silent neuron with a delta (only ever the correct output).
4. Hidden deltas, from the output back: for a presynaptic neuron ``h`` with sign bit
   ``S[h, j] = (w[h, j] < 0)``, ``plus = popcount(C_h & ((P & ~S_h) | (M & S_h)))`` and
   ``minus = popcount(C_h & ((M & ~S_h) | (P & S_h)))`` over the layer's delta planes ``P``
   (+1) and ``M`` (-1) and its causal row ``C_h``; ``delta_h = sign(plus - minus)``. All signs
   are read before any weight of the step changes. With ``hidden_spike_target = T > 0``, when
   more than ``T`` hidden spikes were delivered by the decision ``D``, a tie (``plus = minus``)
   of a neuron whose spike arrived by ``D`` gives +1 instead (fire later: fewer spikes decide).
5. Updates: every causal weight ``w[r, j]`` of a neuron with ``delta_j != 0`` moves one LSB,
   ``w -= delta_j`` saturated to the weight range, when ``draw(seed, t, g) >> 16 < p_q16``:
   ``g`` is the weight's index in the upload stream's weight order, ``t`` the sample index and
   ``p_q16`` the layer's update probability in units of 2**-16 (halved every
   ``prob_halving_samples`` samples when that is > 0).

The random draw is counter-based (``mix32`` below), so the result does not depend on the order
in which weights are visited and a 32-bit microcontroller reproduces it exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np

from . import _kernel_cache  # noqa: F401  (stamps the cached kernels below with every kernel file)
from ._spec_fields import field_codes, from_field_codes, strict_from_dict, typed_options
from .errors import ConfigError

OUTPUT_RULES = ("earliest_violator", "all_violators")
CORRECT_RULES = ("when_violated", "always")
OUTPUT_RULE_CODES = {"earliest_violator": 0, "all_violators": 1}
CORRECT_RULE_CODES = {"when_violated": 0, "always": 1}
PROB_ONE_Q16 = 1 << 16
# Constants of the counter-based random draw (docs/learning-rule.md, section 5).
MIX_MUL_1 = 0x85EBCA6B
MIX_MUL_2 = 0xC2B2AE35
INDEX_MUL = 0x9E3779B9
SAMPLE_SALT = 0x3C6EF372


@dataclass(frozen=True)
class LearningConfig:
    """Constants of the sign-only learning rule; travels in the weight image next to the datapath.

    margin_steps: a wrong output must fire at least this many steps after the correct one (>= 1);
        also the length of the window after the decision that the forward pass runs.
    hidden_update_prob_q16 / output_update_prob_q16: probability, in 2**-16 units (0..65536),
        that a causal weight of a neuron with a delta moves by one LSB; hidden layers / output.
    prob_halving_samples: both probabilities halve every this many samples (0 = constant).

    The defaults train 784-600-10 int8 MNIST from scratch (BENCHMARKS.md): every causal weight
    moves one LSB at first, halving every 180,000 samples (three MNIST epochs).
    seed: 32-bit key of the random draw.
    output_rule: "earliest_violator" (only the earliest violating wrong output gets +1) or
        "all_violators".
    correct_rule: "when_violated" (the correct output gets -1 only when a wrong output violates
        the margin or it did not fire) or "always".
    hidden_spike_target: 0 = off; T > 0: on a sample with a decision D and more than T hidden
        spikes delivered by D (summed over hidden layers), every hidden neuron whose spike arrived
        by D and whose popcount vote ties gets delta +1.
    """

    margin_steps: int = 8
    hidden_update_prob_q16: int = 65536
    output_update_prob_q16: int = 65536
    prob_halving_samples: int = 180000
    seed: int = 0
    output_rule: str = "earliest_violator"
    correct_rule: str = "when_violated"
    hidden_spike_target: int = 0

    ENUM_CODES: ClassVar[dict[str, dict[str, int]]] = {
        "output_rule": OUTPUT_RULE_CODES,
        "correct_rule": CORRECT_RULE_CODES,
    }
    # Fields added after weight images carrying the rule were shipped, with the value that is the
    # rule as it was before them (a file stored without one trained with it off).
    ADDED_FIELDS: ClassVar[dict[str, int]] = {"hidden_spike_target": 0}

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"LearningConfig: {msg}")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                need(
                    isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)),
                    f"{f.name} must be an int, got {v!r}",
                )
            else:
                need(isinstance(v, str), f"{f.name} must be a string, got {v!r}")
        need(1 <= self.margin_steps <= 1 << 16, f"margin_steps must be in 1..65536, got {self.margin_steps}")
        for name in ("hidden_update_prob_q16", "output_update_prob_q16"):
            v = getattr(self, name)
            need(0 <= v <= PROB_ONE_Q16, f"{name} must be in 0..65536 (units of 2**-16), got {v}")
        need(
            0 <= self.prob_halving_samples < 1 << 31,
            f"prob_halving_samples must be in 0..2**31-1, got {self.prob_halving_samples}",
        )
        need(0 <= self.seed < 1 << 32, f"seed must be a 32-bit unsigned integer, got {self.seed}")
        need(self.output_rule in OUTPUT_RULES, f"output_rule must be one of {OUTPUT_RULES}, got {self.output_rule!r}")
        need(
            self.correct_rule in CORRECT_RULES,
            f"correct_rule must be one of {CORRECT_RULES}, got {self.correct_rule!r}",
        )
        need(
            0 <= self.hidden_spike_target < 1 << 16,
            f"hidden_spike_target must be in 0..65535 (0 = off), got {self.hidden_spike_target}",
        )

    def update_prob_q16(self, layer_is_output: bool, sample_index: int) -> int:
        """The layer's update probability (2**-16 units) at sample ``sample_index``."""
        p = self.output_update_prob_q16 if layer_is_output else self.hidden_update_prob_q16
        if self.prob_halving_samples:
            p >>= min(31, sample_index // self.prob_halving_samples)
        return p

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LearningConfig:
        """Rebuild from every field; a missing or unknown field is an error (no silent defaults),
        except a field added after images were shipped (``ADDED_FIELDS``): absent, it is off, the
        rule the image was trained with."""
        return strict_from_dict(cls, {**cls.ADDED_FIELDS, **d})

    def to_codes(self) -> tuple[int, ...]:
        """The fields in declaration order as integers, rules by their codes (as INFO reports them)."""
        return field_codes(self)

    @classmethod
    def from_codes(cls, codes) -> LearningConfig:
        """Inverse of ``to_codes``: the rule a board reports."""
        return from_field_codes(cls, codes)

    @classmethod
    def from_options(cls, options: dict | None = None, **fields) -> LearningConfig:
        """Defaults, then ``fields``, then text overrides such as {"margin_steps": "6"}."""
        typed = dict(fields)
        typed.update(typed_options(cls, options, "learning"))
        return cls(**typed)


# Update probabilities for starting from a trained network (an exported exact model's image, or
# a float model quantised on the way in), which carries no rule of its own: the hidden layer
# learns 16x more slowly than the output layer and nothing halves. The from-scratch defaults
# above (every causal weight moves at first) wreck such a network: -1.6 points after 10,000
# samples of net600-int8.h5 (BENCHMARKS.md, issue #17).
FINE_TUNE_RATES = {"hidden_update_prob_q16": 64, "output_update_prob_q16": 1024, "prob_halving_samples": 0}


def window_end_step(learning: LearningConfig, first_output_step: int, correct_output_step: int, max_steps: int) -> int:
    """``E``, the last step a training step's forward pass runs (docs/learning-rule.md, section 3).

    ``max_steps - 1`` without a decision (``D = -1``); else ``min(D + margin_steps - 1, max_steps
    - 1)``, except under ``all_violators``: ``min(s_c + margin_steps - 1, max_steps - 1)`` with
    ``s_c`` the correct output's spike step (``max_steps - 1`` if it never fires), so that every
    wrong output firing before ``s_c + margin_steps`` is seen.
    """
    last = max_steps - 1
    if first_output_step < 0:
        return last
    if learning.output_rule == "all_violators":
        return min(correct_output_step + learning.margin_steps - 1, last) if correct_output_step >= 0 else last
    return min(first_output_step + learning.margin_steps - 1, last)


def starting_rule(carried: LearningConfig | None, seed: int, options: dict | None = None) -> tuple[LearningConfig, str]:
    """The rule training starts from a network with, and where it came from.

    A network that carries a rule (an image trained on chip) keeps it; one that does not (a
    trained exact model or its image) gets the defaults with ``FINE_TUNE_RATES`` and ``seed``.
    Text ``options`` override either (as ``--learn``). Returns (rule, "carried" | "fine-tune").
    """
    if carried is not None:
        return LearningConfig.from_options(options, **carried.to_dict()), "carried"
    return LearningConfig.from_options(options, seed=seed, **FINE_TUNE_RATES), "fine-tune"


# ----------------------------------------------------------------------------------------------
# The counter-based random draw (all arithmetic modulo 2**32)

_M32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, inline="always")
def mix32(x):
    """32-bit finaliser: x ^= x >> 16; x *= MIX_MUL_1; x ^= x >> 13; x *= MIX_MUL_2; x ^= x >> 16."""
    x = np.uint64(x) & _M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(MIX_MUL_1)) & _M32
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(MIX_MUL_2)) & _M32
    x ^= x >> np.uint64(16)
    return x


@numba.njit(cache=True, inline="always")
def sample_key(seed, sample_index):
    """Per-sample key: mix32(seed ^ mix32(sample_index + SAMPLE_SALT))."""
    t = (np.uint64(sample_index) + np.uint64(SAMPLE_SALT)) & _M32
    return mix32(np.uint64(seed) ^ mix32(t))


@numba.njit(cache=True, inline="always")
def weight_draw(key, weight_index):
    """The 32-bit draw of one weight: mix32(key + weight_index * INDEX_MUL)."""
    g = (np.uint64(weight_index) * np.uint64(INDEX_MUL)) & _M32
    return mix32((np.uint64(key) + g) & _M32)
