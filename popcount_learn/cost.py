"""Hardware cost of a weight image on the event-driven core: memory, cycles, images/s, energy.

The core is ``firmware_bridge/rtl`` (its README: "Cycle budget", "Memory per network size");
this module is the one place its cost formula and constants live, so a design-space sweep can
price a network from the emulator's counters without simulating the Verilog. With ``L`` lanes,
``G_k = ceil(n_post_k / L)`` words per row of layer ``k`` and rows padded to ``2**ceil(log2
G_k)`` words (a row address is a shift):

    weight words = sum_k (n_pre_k + 1) * 2**ceil(log2 G_k)        of L * weight_bits bits
    state words  = sum_k G_k                                      of L * (1 + membrane_bits + wide_bits) bits
    queue        = sum_k G_k entries                              of bits(max_k G_k) + L bits

and one image takes, with ``R_k`` = ``rows_read[:, k]`` and ``D + 1`` = steps to the decision,

    cycles = sum_k G_k + R_0 G_0 + sum_{k>=1} R_k max(G_k, ROW_MIN_CYCLES)
           + (D + 1) sum_k (G_k + PHASE_OVERHEAD_CYCLES)
           + SPIKE_REPORT_CYCLES * (spikes reported) + IMAGE_OVERHEAD_CYCLES

Energy per classification is an *estimate*: operation counts of that schedule times a
per-operation table for a 45 nm process at 0.9 V (M. Horowitz, "Computing's energy problem
(and what we can do about it)", ISSCC 2014: 8-bit integer add 0.03 pJ, 32-bit add 0.1 pJ;
64-bit read of an 8 KB SRAM 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ). Adds scale linearly with their
width, SRAM accesses with the word width and log-log with the memory size between those
points (extrapolated as ~sqrt(size) below 8 KB: the small neuron-state memory); a write costs
what a read costs. Control, clock tree, leakage and I/O are left out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .datapath import DatapathConfig
from .emulator import EmulationResult
from .errors import ConfigError
from .weight_image import UPLOAD_HEADER_BYTES, UPLOAD_LAYER_HEADER_BYTES, WeightImage, weight_dtype

# --- the cycle formula's constants (firmware_bridge/rtl/README.md, "Cycle budget", refers here)
PHASE_OVERHEAD_CYCLES = 6  # per layer and step: 1 ACC entry, 3 pipeline drain, 1 REPORT, 1 NEXT
ROW_MIN_CYCLES = 3  # a row of fewer words is padded: a state word is never read before its write
SPIKE_REPORT_CYCLES = 3  # per spike event streamed out
IMAGE_OVERHEAD_CYCLES = 5  # start and result beat

# --- the energy table: 45 nm, 0.9 V (Horowitz, ISSCC 2014); an estimate, not a measurement
ENERGY_SOURCE = "M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014; 45 nm, 0.9 V"
ADD_8BIT_PJ = 0.03
SRAM_READ_64BIT_PJ = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))  # (memory bytes, pJ)
MIN_SRAM_BYTES = 64  # smaller memories are priced as 64 bytes (~1.6 pJ per 64-bit access)


@dataclass(frozen=True)
class HardwareConfig:
    """The core a network is priced on: ``lanes`` neurons updated per cycle, clocked at ``clock_mhz``."""

    lanes: int = 4
    clock_mhz: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or not 1 <= self.lanes <= 64:
            raise ConfigError(f"lanes must be an integer in 1..64, got {self.lanes!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)):
            raise ConfigError(f"clock_mhz must be a number, got {self.clock_mhz!r}")
        if not (math.isfinite(self.clock_mhz) and self.clock_mhz > 0):
            raise ConfigError(f"clock_mhz must be positive, got {self.clock_mhz}")


def _bits_for(max_value: int) -> int:
    return max(1, int(max_value).bit_length())


def groups(topology, lanes: int) -> tuple[int, ...]:
    """Words per row (groups of ``lanes`` neurons) of each layer: ``ceil(n_post / lanes)``."""
    return tuple(-(-int(n) // lanes) for n in topology[1:])


def row_words(topology, lanes: int) -> tuple[int, ...]:
    """Words between consecutive rows: ``G_k`` rounded up to a power of two."""
    return tuple(1 << (g - 1).bit_length() for g in groups(topology, lanes))


def wide_bits(spec: DatapathConfig, topology) -> int:
    """Per-neuron current register of the core: ``max(current_bits, accumulator_bits(max n_pre + 1)) + 1``."""
    return max(spec.current_bits, spec.accumulator_bits(max(int(n) for n in topology[:-1]) + 1)) + 1


def memory(spec: DatapathConfig, topology, lanes: int) -> dict:
    """Memory of a network on the core (bits unless named ``_bytes``; see the module docstring).

    ``weight_memory_bytes`` is what the core addresses (padding included, rounded down to whole
    bytes as ``RtlLayout.weight_bytes``); ``dense_weight_bytes`` is the weights as the upload
    stream stores them (int8 up to 8 bits, else int16), ``upload_bytes`` the whole stream.
    """
    topology = tuple(int(n) for n in topology)
    g = groups(topology, lanes)
    words = sum((p + 1) * w for p, w in zip(topology[:-1], row_words(topology, lanes), strict=True))
    word_bits = lanes * spec.weight_bits
    state_word_bits = lanes * (1 + spec.membrane_bits + wide_bits(spec, topology))
    n_weights = sum((p + 1) * n for p, n in itertools.pairwise(topology))
    dense_bytes = n_weights * weight_dtype(spec).itemsize
    return {
        "weight_words": words,
        "weight_word_bits": word_bits,
        "weight_memory_bits": words * word_bits,
        "weight_memory_bytes": words * word_bits // 8,
        "weights": n_weights,
        "dense_weight_bits": n_weights * spec.weight_bits,
        "dense_weight_bytes": dense_bytes,
        "upload_bytes": UPLOAD_HEADER_BYTES + UPLOAD_LAYER_HEADER_BYTES * (len(topology) - 1) + dense_bytes,
        "state_words": sum(g),
        "state_word_bits": state_word_bits,
        "state_memory_bits": sum(g) * state_word_bits,
        "queue_memory_bits": sum(g) * (_bits_for(max(g)) + lanes),
    }


def spikes_reported(result: EmulationResult) -> np.ndarray:
    """Spike events the core streams out per image: every spike of every layer up to and
    including the decision step (all steps run without a decision)."""
    last = np.where(result.first_output_step >= 0, result.first_output_step, result.max_steps - 1)
    return sum(((s >= 0) & (s <= last[:, None])).sum(axis=1) for s in result.spike_steps).astype(np.int64)


def cycles_per_image(result: EmulationResult, lanes: int) -> np.ndarray:
    """The core's clock cycles per image predicted from the emulator's counters (int64)."""
    g = np.asarray(groups(result.topology, lanes), dtype=np.int64)
    rows = result.rows_read.astype(np.int64)
    row_cycles = np.maximum(g, ROW_MIN_CYCLES)
    row_cycles[0] = g[0]
    steps = result.steps_to_decision.astype(np.int64)
    return (
        g.sum()
        + rows @ row_cycles
        + steps * int((g + PHASE_OVERHEAD_CYCLES).sum())
        + SPIKE_REPORT_CYCLES * spikes_reported(result)
        + IMAGE_OVERHEAD_CYCLES
    )


def add_pj(bits: int) -> float:
    """Energy of one integer add of ``bits`` bits: ``ADD_8BIT_PJ * bits / 8``."""
    return ADD_8BIT_PJ * bits / 8


def sram_access_pj(word_bits: int, memory_bytes: float) -> float:
    """One read (or write) of a ``word_bits`` word from an SRAM of ``memory_bytes``: the 64-bit
    figure log-log interpolated in the memory size between the table's points and extrapolated
    with the nearest segment's slope outside them (below 8 KB that is ~sqrt(size), the trend of
    the 8 KB -> 32 KB figures), scaled by ``word_bits / 64``."""
    pts = SRAM_READ_64BIT_PJ
    size = max(float(memory_bytes), MIN_SRAM_BYTES)
    i = 0
    while i < len(pts) - 2 and size > pts[i + 1][0]:
        i += 1
    (sa, ea), (sb, eb) = pts[i], pts[i + 1]
    e64 = ea * (size / sa) ** (math.log(eb / ea) / math.log(sb / sa))
    return e64 * word_bits / 64


def operation_counts(result: EmulationResult, spec: DatapathConfig, lanes: int) -> dict:
    """Mean operations per image of the core's schedule (the counts the energy is built from).

    weight_word_reads: bias rows plus one word per group of every row read;
    state_accesses: a read and a write of a state word per weight word accumulated and per
    group swept; lane_accumulates: ``lanes`` adds of ``wide_bits`` per weight word;
    lane_updates: ``lanes`` neuron updates per group swept (decay subtract of ``current_bits``,
    membrane add and threshold compare of ``membrane_bits``).
    """
    g = np.asarray(groups(result.topology, lanes), dtype=np.int64)
    words = g.sum() + result.rows_read.astype(np.int64) @ g
    swept = result.steps_to_decision.astype(np.int64) * g.sum()
    return {
        "weight_word_reads": float(words.mean()),
        "state_accesses": float(2 * (words + swept).mean()),
        "lane_accumulates": float(lanes * words.mean()),
        "lane_updates": float(lanes * swept.mean()),
        "spikes_reported": float(spikes_reported(result).mean()),
    }


def energy_per_image_pj(counts: dict, spec: DatapathConfig, topology, lanes: int) -> dict:
    """Energy estimate per classification in pJ from ``operation_counts``, by part and in total."""
    mem = memory(spec, topology, lanes)
    state_bytes = mem["state_memory_bits"] / 8
    parts = {
        "weight_reads_pj": counts["weight_word_reads"]
        * sram_access_pj(mem["weight_word_bits"], mem["weight_memory_bytes"]),
        "state_accesses_pj": counts["state_accesses"] * sram_access_pj(mem["state_word_bits"], state_bytes),
        "accumulate_pj": counts["lane_accumulates"] * add_pj(wide_bits(spec, topology)),
        "neuron_update_pj": counts["lane_updates"] * (add_pj(spec.current_bits) + 2 * add_pj(spec.membrane_bits)),
    }
    parts["energy_pj"] = sum(parts.values())
    return parts


def hardware_cost(image: WeightImage, result: EmulationResult, hardware: HardwareConfig = HardwareConfig()) -> dict:
    """Memory, cycles per image (mean, median, max), images/s at ``hardware.clock_mhz`` and the
    energy estimate per classification of ``image`` on the core, from an emulation ``result``
    of that image (plain Python numbers)."""
    if tuple(result.topology) != tuple(image.topology):
        raise ConfigError(f"the emulation result is of a {result.topology} network, the image is {image.topology}")
    lanes = hardware.lanes
    cycles = cycles_per_image(result, lanes)
    counts = operation_counts(result, image.spec, lanes)
    mean_cycles = float(cycles.mean())
    return {
        "lanes": lanes,
        "clock_mhz": float(hardware.clock_mhz),
        **memory(image.spec, image.topology, lanes),
        "cycles_per_image_mean": mean_cycles,
        "cycles_per_image_median": float(np.median(cycles)),
        "cycles_per_image_max": int(cycles.max()),
        "images_per_s": hardware.clock_mhz * 1e6 / mean_cycles,
        **{f"ops_{k}": v for k, v in counts.items()},
        **energy_per_image_pj(counts, image.spec, image.topology, lanes),
    }
