"""Layout of a weight image in the RTL core and the Verilog parameters that describe it.

Everything the Verilog needs is computed here from the image's ``DatapathConfig``, its topology
and the number of lanes, and rendered by ``popcount_learn.codegen`` as generated include files;
nothing is typed into the RTL by hand.

Weight memory (``docs`` in ``firmware_bridge/rtl/README.md``): one word holds ``lanes`` weights
of one row, lane ``l`` at bits ``[l * weight_bits, (l + 1) * weight_bits)``; layer ``k`` has
``groups[k] = ceil(n_post / lanes)`` words per row, rows ``2**row_shift[k]`` words apart (the
next power of two), and its row ``r`` starts at word ``weight_base[k] + (r << row_shift[k])``
(rows ``0 .. n_pre - 1`` then the bias row ``n_pre``). Lanes past ``n_post`` and padding words
hold 0.

A layout with a ``LearningConfig`` describes a core that also trains (``pcl_learn.v``, the
rule of ``docs/learning-rule.md``): its ``pcl_learning.vh`` holds the rule (codegen) and its
parameter bindings switch ``LEARNING`` on and bind the rule's constants. Without one the core is
inference-only (``LEARNING = 0``, an empty ``pcl_learning.vh``); the learning engine's sizes are
in ``pcl_topology.vh`` either way, so that the UP5K top is one file for both builds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from popcount_learn import codegen
from popcount_learn.codegen import Constant
from popcount_learn.datapath import DatapathConfig
from popcount_learn.errors import ConfigError
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import LayerImage, WeightImage, weight_dtype

# Record widths of the simulation harness (firmware_bridge/rtl/tb/pcl_tb_harness.v).
TB_IMAGE_BITS = 24
TB_CYCLE_BITS = 32
# Where a training step's cycles go, counted by the harness (tb/pcl_tb_harness.v, learning build),
# most significant first in its result record: every cycle from the request to the result
# beat; the forward pass (with the margin window); the output deltas; the rows of the output
# layer and of the hidden layers; and, within those, the cycles in which the front end issued a
# draw, the back end read a weight word (sign bits, votes) and wrote one back.
TB_PHASE_COUNTERS = (
    "cycles",
    "cycles_forward",
    "cycles_output_deltas",
    "cycles_output_layer",
    "cycles_hidden_layers",
    "cycles_draw",
    "cycles_weight_read",
    "cycles_weight_write",
)
# The per-step fields of a training record (harness or UP5K packets) besides rows read and cycles.
TRAIN_RECORD_FIELDS = (
    "input_error",
    "tie",
    "decided",
    "predicted",
    "step",
    "trained",
    "weights_changed",
    "neurons_with_delta",
)


def _bits_for(max_value: int) -> int:
    """Unsigned width that holds 0 .. max_value (at least 1)."""
    return max(1, int(max_value).bit_length())


@dataclass(frozen=True)
class RtlLayout:
    """Sizes, bases and register widths of one network on the core with ``lanes`` lanes."""

    spec: DatapathConfig
    topology: tuple[int, ...]
    lanes: int
    learning: LearningConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or not 1 <= self.lanes <= 64:
            raise ConfigError(f"lanes must be an integer in 1..64, got {self.lanes!r}")
        if len(self.topology) < 2 or any(int(n) < 1 for n in self.topology):
            raise ConfigError(f"topology must have an input size and at least one layer, got {self.topology}")
        if self.learning is not None:
            if not isinstance(self.learning, LearningConfig):
                raise ConfigError(f"learning must be a LearningConfig or None, got {type(self.learning).__name__}")
            if max(self.n_pre) >= 1 << 16:
                raise ConfigError(
                    f"a learning core takes rows below 65536 (the row index is a 16-bit operand), "
                    f"got {max(self.n_pre)} inputs to a layer"
                )

    @classmethod
    def for_image(cls, image: WeightImage, lanes: int, learning: LearningConfig | None = None) -> RtlLayout:
        return cls(image.spec, tuple(int(n) for n in image.topology), lanes, learning)

    def inference_only(self) -> RtlLayout:
        """The same network on a core without the learning engine."""
        return RtlLayout(self.spec, self.topology, self.lanes)

    # --- per layer
    @property
    def n_layers(self) -> int:
        return len(self.topology) - 1

    @property
    def n_pre(self) -> tuple[int, ...]:
        return self.topology[:-1]

    @property
    def n_post(self) -> tuple[int, ...]:
        return self.topology[1:]

    @property
    def groups(self) -> tuple[int, ...]:
        """Words per row (= neuron groups of ``lanes`` neurons) per layer."""
        return tuple(math.ceil(n / self.lanes) for n in self.n_post)

    @property
    def last_lanes(self) -> tuple[int, ...]:
        """Neurons in the last group of each layer (1 .. lanes)."""
        return tuple(n - (g - 1) * self.lanes for n, g in zip(self.n_post, self.groups, strict=True))

    @property
    def row_shift(self) -> tuple[int, ...]:
        """log2 of the words between consecutive rows: rows are padded to a power of two of words,
        so that a row's address is a shift, not a multiply, in the core's address path."""
        return tuple((g - 1).bit_length() for g in self.groups)

    @property
    def row_words(self) -> tuple[int, ...]:
        return tuple(1 << s for s in self.row_shift)

    @property
    def state_base(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.groups)[:-1]]))

    @property
    def weight_base(self) -> tuple[int, ...]:
        sizes = [(p + 1) * w for p, w in zip(self.n_pre, self.row_words, strict=True)]
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(sizes)[:-1]]))

    @property
    def state_depth(self) -> int:
        return sum(self.groups)

    @property
    def weight_words(self) -> int:
        return sum((p + 1) * w for p, w in zip(self.n_pre, self.row_words, strict=True))

    @property
    def neurons(self) -> int:
        """Neurons of every layer (the learning engine's spike RAM holds one step per neuron)."""
        return sum(self.n_post)

    @property
    def weights(self) -> int:
        """Weights of every layer, bias rows included (the upload stream's weight count)."""
        return sum((p + 1) * q for p, q in zip(self.n_pre, self.n_post, strict=True))

    # --- widths
    @property
    def word_bits(self) -> int:
        return self.lanes * self.spec.weight_bits

    @property
    def wide_bits(self) -> int:
        """Per-neuron current register between operations: max(current, accumulator) + 1."""
        return max(self.spec.current_bits, self.spec.accumulator_bits(max(self.n_pre) + 1)) + 1

    @property
    def state_bits_per_neuron(self) -> int:
        return 1 + self.spec.membrane_bits + self.wide_bits

    @property
    def widths(self) -> dict[str, int]:
        return {
            "WADDR_BITS": _bits_for(max(self.weight_words, self.n_layers) - 1),
            "SADDR_BITS": _bits_for(self.state_depth - 1),
            "GROUP_BITS": _bits_for(max(self.groups)),
            "ROW_BITS": _bits_for(max(self.n_pre)),
            "NEURON_BITS": _bits_for(max(self.n_post) - 1),
            "IN_INDEX_BITS": _bits_for(self.topology[0] - 1),
            "STEP_BITS": _bits_for(self.spec.max_steps),
            "LAYER_BITS": _bits_for(self.n_layers - 1),
            "ROWCOUNT_BITS": _bits_for(max(self.n_pre)),
            "WL_BITS": max(self.word_bits, self.spec.membrane_bits),
            "WIDE_BITS": self.wide_bits,
        }

    @property
    def learning_widths(self) -> dict[str, int]:
        """Sizes of the learning engine: the spike RAM, and the counters of weights changed (at
        least 8 bits: a word's count is added whole) and of neurons with a delta."""
        return {
            "NEURONS": self.neurons,
            "NEURON_ADDR_BITS": _bits_for(self.neurons - 1),
            "WCOUNT_BITS": max(8, _bits_for(self.weights)),
            "NDELTA_BITS": _bits_for(self.neurons),
        }

    @property
    def weight_bytes(self) -> int:
        """Bytes of weight RAM the core addresses (padding lanes included)."""
        return self.weight_words * self.word_bits // 8

    @property
    def state_bits(self) -> int:
        """Bits of neuron state RAM (I, V, flag per neuron slot)."""
        return self.state_depth * self.lanes * self.state_bits_per_neuron

    # --- generated Verilog
    def constants(self) -> list[Constant]:
        """The topology, lanes, memory bases and register widths as header constants."""
        consts = [
            Constant("LEARNING", int(self.learning is not None)),
            Constant("LANES", self.lanes),
            Constant("N_LAYERS", self.n_layers),
            Constant("N_IN", self.topology[0]),
            Constant("LAYER_N_PRE", self.n_pre),
            Constant("LAYER_N_POST", self.n_post),
            Constant("LAYER_GROUPS", self.groups),
            Constant("LAYER_LAST_LANES", self.last_lanes),
            Constant("LAYER_STATE_BASE", self.state_base),
            Constant("LAYER_WEIGHT_BASE", self.weight_base),
            Constant("LAYER_ROW_SHIFT", self.row_shift),
            Constant("STATE_DEPTH", self.state_depth),
            Constant("WEIGHT_WORDS", self.weight_words),
            Constant("WORD_BITS", self.word_bits),
        ]
        widths = {**self.widths, **self.learning_widths}
        return consts + [Constant(name, value) for name, value in widths.items()]

    def core_parameter_bindings(self) -> list[tuple[str, str]]:
        """(pcl_core parameter, generated constant) pairs: how the core is bound to the headers."""
        names = [
            "LANES",
            "N_LAYERS",
            "N_IN",
            "LAYER_N_PRE",
            "LAYER_N_POST",
            "LAYER_GROUPS",
            "LAYER_LAST_LANES",
            "LAYER_STATE_BASE",
            "LAYER_WEIGHT_BASE",
            "LAYER_ROW_SHIFT",
            "STATE_DEPTH",
            *[n for n in self.widths if n != "WIDE_BITS"],
            "WIDE_BITS",
            "WEIGHT_BITS",
            "CURRENT_FRAC_BITS",
            "CURRENT_BITS",
            "MEMBRANE_BITS",
            "TIME_SHIFT",
            "CURRENT_WRAP",
            "MEMBRANE_WRAP",
        ]
        bindings = [(n, n) for n in names] + [("TIE_LOWEST_INDEX", "TIE_BY_LOWEST_INDEX"), ("MAX_STEPS", "MAX_STEPS")]
        bindings += [("LEARNING", "LEARNING"), *[(n, n) for n in self.learning_widths]]
        if self.learning is not None:
            bindings += [
                ("MARGIN_STEPS", "LEARN_MARGIN_STEPS"),
                ("HIDDEN_PROB_Q16", "LEARN_HIDDEN_UPDATE_PROB_Q16"),
                ("OUTPUT_PROB_Q16", "LEARN_OUTPUT_UPDATE_PROB_Q16"),
                ("PROB_HALVING_SAMPLES", "LEARN_PROB_HALVING_SAMPLES"),
                ("LEARN_SEED", "LEARN_SEED"),
                ("ALL_VIOLATORS", "LEARN_USE_ALL_VIOLATORS"),
                ("CORRECT_ALWAYS", "LEARN_USE_CORRECT_ALWAYS"),
                ("HIDDEN_SPIKE_TARGET", "LEARN_HIDDEN_SPIKE_TARGET"),
                ("MIX_MUL_1", "LEARN_MIX_MUL_1"),
                ("MIX_MUL_2", "LEARN_MIX_MUL_2"),
                ("INDEX_MUL", "LEARN_INDEX_MUL"),
                ("SAMPLE_SALT", "LEARN_SAMPLE_SALT"),
            ]
        return bindings

    def headers(self) -> dict[str, str]:
        """File name -> text of the generated includes of the core: pcl_datapath.vh (the spec),
        pcl_learning.vh (the rule, for a learning layout), pcl_topology.vh (this layout) and
        pcl_core_params.vh (the core's parameter bindings)."""
        source = "firmware_bridge.rtl.params.RtlLayout"
        return {
            **codegen.rtl_spec_headers(self.spec, self.learning),
            "pcl_topology.vh": codegen.verilog_header("pcl_topology.vh", self.constants(), source=source),
            "pcl_core_params.vh": codegen.verilog_parameter_bindings(
                "pcl_core_params.vh", self.core_parameter_bindings(), source=source
            ),
        }

    def write_headers(self, directory) -> list:
        """Write ``headers()`` into ``directory`` (unchanged files keep their timestamps)."""
        return codegen.write_headers(directory, self.headers())

    # --- memory image and beats
    def weight_words_of(self, image: WeightImage) -> list[int]:
        """The weight RAM contents, word by word (unsigned Python ints of ``word_bits`` bits)."""
        if tuple(image.topology) != self.topology or image.spec != self.spec:
            raise ConfigError("weight image does not match this RTL layout (topology or datapath differ)")
        wb, lanes = self.spec.weight_bits, self.lanes
        mask = (1 << wb) - 1
        words: list[int] = []
        shifts = [lane * wb for lane in range(lanes)]
        for layer, row_words in zip(image.layers, self.row_words, strict=True):
            w = np.asarray(layer.weights_lsb, dtype=np.int64)
            padded = np.zeros((w.shape[0], row_words * lanes), dtype=np.int64)
            padded[:, : w.shape[1]] = w
            lane_vals = (padded & mask).reshape(w.shape[0], row_words, lanes).tolist()
            for row in lane_vals:
                for group in row:
                    words.append(sum(v << s for v, s in zip(group, shifts, strict=True)))
        assert len(words) == self.weight_words
        return words

    def image_of_words(self, words, template: WeightImage) -> tuple[WeightImage, list[str]]:
        """The inverse of ``weight_words_of``: the weights held in RAM ``words`` as a weight image
        with ``template``'s thresholds, scales, spec and learning rule; and what the words hold
        beyond the weights (a padding lane or a padding word that is not 0), one line each."""
        if len(words) != self.weight_words:
            raise ConfigError(f"expected {self.weight_words} weight-RAM words, got {len(words)}")
        wb, lanes = self.spec.weight_bits, self.lanes
        mask = (1 << wb) - 1
        layers, faults = [], []
        for k, (layer, row_words, base) in enumerate(
            zip(template.layers, self.row_words, self.weight_base, strict=True)
        ):
            n_rows, n_post = self.n_pre[k] + 1, self.n_post[k]
            block = np.array(words[base : base + n_rows * row_words], dtype=object).reshape(n_rows, row_words)
            raw = np.array(
                [[(int(w) >> (wb * lane)) & mask for w in row for lane in range(lanes)] for row in block],
                dtype=np.int64,
            )
            signed = raw - ((raw >> (wb - 1)) << wb)
            if np.any(raw[:, n_post:] != 0):
                r, c = np.argwhere(raw[:, n_post:] != 0)[0]
                faults.append(f"layer {k} row {r}: padding lane {n_post + c} holds {signed[r, n_post + c]}, not 0")
            w = signed[:, :n_post].astype(weight_dtype(self.spec))
            layers.append(LayerImage(weights_lsb=w, threshold_lsb=layer.threshold_lsb, scale=layer.scale))
        image = WeightImage(
            spec=template.spec, layers=tuple(layers), provenance=dict(template.provenance), learning=template.learning
        )
        return image, faults

    def load_beats(self, image: WeightImage) -> list[int]:
        """Weight-load stream: {threshold flag, address, data} per beat, weights then thresholds."""
        w = self.widths
        a_bits, d_bits = w["WADDR_BITS"], w["WL_BITS"]
        beats = [(addr << d_bits) | word for addr, word in enumerate(self.weight_words_of(image))]
        mb_mask = (1 << self.spec.membrane_bits) - 1
        for k, th in enumerate(image.thresholds_lsb):
            beats.append((1 << (a_bits + d_bits)) | (k << d_bits) | (int(th) & mb_mask))
        return beats

    def input_beats(self, steps_row: np.ndarray, shuffle: np.random.Generator | None = None) -> list[int]:
        """Input-spike stream of one image: {last, step, index} per spike that arrives, by step.

        Spikes at ``-1`` or at steps ``>= max_steps`` never arrive and are not sent; an image
        without arriving spikes is one beat with step ``max_steps`` (never). ``shuffle``
        permutes the spikes within each step (the core must not depend on that order).
        """
        steps = np.asarray(steps_row, dtype=np.int64)
        w = self.widths
        s_bits, i_bits = w["STEP_BITS"], w["IN_INDEX_BITS"]
        arriving = np.nonzero((steps >= 0) & (steps < self.spec.max_steps))[0]
        if shuffle is not None:
            arriving = shuffle.permutation(arriving)
        order = arriving[np.argsort(steps[arriving], kind="stable")]
        pairs = [(int(steps[i]), int(i)) for i in order] or [(self.spec.max_steps, 0)]
        beats = [(step << i_bits) | idx for step, idx in pairs]
        beats[-1] |= 1 << (s_bits + i_bits)
        return beats

    # --- harness records
    def spike_fields(self) -> list[tuple[str, int]]:
        """Fields of a spike record, most significant first."""
        w = self.widths
        return [
            ("image", TB_IMAGE_BITS),
            ("layer", w["LAYER_BITS"]),
            ("index", w["NEURON_BITS"]),
            ("step", w["STEP_BITS"]),
        ]

    def train_beat(self, label: int, sample_index: int) -> int:
        """A training request beat {label, sample index} (the core's tc_label, tc_index)."""
        if not 0 <= int(sample_index) < 1 << 32:
            raise ConfigError(f"sample indices are unsigned 32-bit, got {sample_index}")
        if not 0 <= int(label) < 1 << self.widths["NEURON_BITS"]:
            raise ConfigError(f"label {label} does not fit the core's {self.widths['NEURON_BITS']}-bit label")
        return (int(label) << 32) | int(sample_index)

    def harness_result_fields(self) -> list[tuple[str, int]]:
        """Fields of a harness result record (tb/pcl_tb_harness.v), most significant first: the
        phase counters (``TB_PHASE_COUNTERS``; all but ``cycles`` are 0 in an inference-only
        build), the inference result, then the training flag and the rule's two counts."""
        w, lw = self.widths, self.learning_widths
        fields = [(name, TB_CYCLE_BITS) for name in TB_PHASE_COUNTERS]
        fields += [(name, bits) for name, bits in self.result_fields() if name != "cycles"]
        fields += [("trained", 1), ("weights_changed", lw["WCOUNT_BITS"]), ("neurons_with_delta", lw["NDELTA_BITS"])]
        assert w["NEURON_BITS"] >= 1
        return fields

    def result_fields(self) -> list[tuple[str, int]]:
        """Fields of a result record, most significant first (rows_read: layer K-1 first)."""
        w = self.widths
        fields = [
            ("cycles", TB_CYCLE_BITS),
            ("input_error", 1),
            ("tie", 1),
            ("decided", 1),
            ("predicted", w["NEURON_BITS"]),
            ("step", w["STEP_BITS"]),
        ]
        fields += [(f"rows_read{k}", w["ROWCOUNT_BITS"]) for k in reversed(range(self.n_layers))]
        return fields


def unpack(value: int, fields: list[tuple[str, int]]) -> dict[str, int]:
    """Split an unsigned record into named fields (most significant first)."""
    out = {}
    shift = sum(bits for _, bits in fields)
    for name, bits in fields:
        shift -= bits
        out[name] = (value >> shift) & ((1 << bits) - 1)
    return out
