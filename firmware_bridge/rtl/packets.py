"""The byte packets of ``pcl_byte_bridge.v`` (the UP5K top's interface), from ``RtlLayout`` widths.

This is the one Python description of the byte layout; the testbenches (``tb/bridge_bench.py``,
``tb/up5k_bench.py``) and any host talking to the UP5K build use it. A packet is a fixed number of
bytes, least significant byte first, of one integer: the payload in the low bits and a 2-bit kind
just above the longest payload of its direction.

RX (host to core), ``rx_bytes`` bytes, kind at bit ``rx_payload_bits`` =
``max(WADDR_BITS + WL_BITS, 1 + STEP_BITS + IN_INDEX_BITS)``:

- ``WEIGHT``: ``{addr, data}`` (``data`` in the low ``WL_BITS``): one weight-RAM word;
- ``THRESHOLD``: ``{layer, threshold}`` in the same fields;
- ``SPIKE``: ``{last, step, index}``: one input spike beat (``RtlLayout.input_beats``);
- ``IGNORED``: dropped by an inference-only bridge; in a learning build the same kind is a
  ``COMMAND`` ``{op, label, sample index}``: op 0 a training request (``train_packet``, before
  the image's spikes), op 1 a weight read-back request (``readback_packet``).

TX (core to host), ``tx_bytes`` bytes, kind at bit ``tx_payload_bits`` = ``max(spike, result)``
(and the read-back word in a learning build):

- ``SPIKE``: ``{layer, index, step}``;
- ``RESULT``: ``{input_error, tie, decided, predicted, step, rows_read (layer K-1 first)}``, and
  in a learning build then ``{trained, weights_changed, neurons_with_delta}``;
- ``WORD`` (learning build): ``{last, data}``, one weight-RAM word of a read-back, in address order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from popcount_learn.errors import ConfigError
from popcount_learn.weight_image import WeightImage

from .params import RtlLayout, unpack

KIND_BITS = 2


class RxKind(enum.IntEnum):
    WEIGHT = 0
    THRESHOLD = 1
    SPIKE = 2
    IGNORED = 3
    COMMAND = 3  # the same kind: a command in a learning build (an alias of IGNORED)


class CommandOp(enum.IntEnum):
    TRAIN = 0
    READBACK = 1


class TxKind(enum.IntEnum):
    SPIKE = 0
    RESULT = 1
    WORD = 2


def _mask(bits: int) -> int:
    return (1 << bits) - 1


@dataclass(frozen=True)
class PacketLayout:
    """Field positions and sizes of the bridge's packets for one ``RtlLayout`` (computed once)."""

    layout: RtlLayout

    # --- RX
    @cached_property
    def load_bits(self) -> int:
        """Payload of a weight or threshold packet: {addr, data}."""
        w = self.layout.widths
        return w["WADDR_BITS"] + w["WL_BITS"]

    @cached_property
    def spike_in_bits(self) -> int:
        """Payload of an input spike packet: {last, step, index}."""
        w = self.layout.widths
        return 1 + w["STEP_BITS"] + w["IN_INDEX_BITS"]

    @cached_property
    def command_bits(self) -> int:
        """Payload of a command packet of a learning build: {op, label, sample index}."""
        return 1 + self.layout.widths["NEURON_BITS"] + 32

    @cached_property
    def rx_payload_bits(self) -> int:
        learning = [self.command_bits] if self.layout.learning is not None else []
        return max(self.load_bits, self.spike_in_bits, *learning)

    @cached_property
    def rx_bytes(self) -> int:
        return (self.rx_payload_bits + KIND_BITS + 7) // 8

    def rx_packet(self, kind: RxKind, payload: int) -> bytes:
        """One RX packet (``payload`` is the unsigned field value without the kind)."""
        if not 0 <= payload < 1 << self.rx_payload_bits:
            raise ConfigError(f"RX payload {payload:#x} does not fit {self.rx_payload_bits} bits")
        return ((int(kind) << self.rx_payload_bits) | payload).to_bytes(self.rx_bytes, "little")

    def load_packets(self, image: WeightImage) -> bytes:
        """The weight and threshold packets of ``image`` (``RtlLayout.load_beats``, in that order)."""
        flag_bit = self.load_bits  # load_beats puts the threshold flag just above {addr, data}
        out = bytearray()
        for beat in self.layout.load_beats(image):
            kind = RxKind.THRESHOLD if beat >> flag_bit else RxKind.WEIGHT
            out += self.rx_packet(kind, beat & _mask(flag_bit))
        return bytes(out)

    def input_packets(self, steps_row: np.ndarray, shuffle: np.random.Generator | None = None) -> bytes:
        """The input spike packets of one image (``RtlLayout.input_beats``)."""
        return b"".join(self.rx_packet(RxKind.SPIKE, beat) for beat in self.layout.input_beats(steps_row, shuffle))

    def command_packet(self, op: CommandOp, label: int = 0, sample_index: int = 0) -> bytes:
        """A command packet of a learning build (``train_packet``, ``readback_packet``)."""
        if self.layout.learning is None:
            raise ConfigError("an inference-only bridge drops command packets; build with a LearningConfig")
        beat = self.layout.train_beat(label, sample_index)  # {label, sample index}, range-checked
        return self.rx_packet(RxKind.COMMAND, (int(op) << (self.command_bits - 1)) | beat)

    def train_packet(self, label: int, sample_index: int) -> bytes:
        """The training request of the next image: {label, sample index}."""
        return self.command_packet(CommandOp.TRAIN, label, sample_index)

    def readback_packet(self) -> bytes:
        """A request to send every weight-RAM word back (``WORD`` packets)."""
        return self.command_packet(CommandOp.READBACK)

    def split_rx(self, data: bytes) -> list[tuple[RxKind, int]]:
        """(kind, payload) per RX packet of ``data`` (the inverse of ``rx_packet``)."""
        return [(RxKind(kind), payload) for kind, payload in self._split(data, self.rx_bytes, self.rx_payload_bits)]

    # --- TX
    @cached_property
    def spike_fields(self) -> list[tuple[str, int]]:
        """Fields of a TX spike payload, most significant first."""
        return [f for f in self.layout.spike_fields() if f[0] != "image"]

    @cached_property
    def result_fields(self) -> list[tuple[str, int]]:
        """Fields of a TX result payload, most significant first (rows_read: layer K-1 first)."""
        fields = [f for f in self.layout.result_fields() if f[0] != "cycles"]
        if self.layout.learning is not None:
            lw = self.layout.learning_widths
            fields += [
                ("trained", 1),
                ("weights_changed", lw["WCOUNT_BITS"]),
                ("neurons_with_delta", lw["NDELTA_BITS"]),
            ]
        return fields

    @cached_property
    def word_fields(self) -> list[tuple[str, int]]:
        """Fields of a TX read-back word of a learning build: {last, data}."""
        return [("last", 1), ("data", self.layout.word_bits)]

    @cached_property
    def spike_bits(self) -> int:
        return sum(bits for _, bits in self.spike_fields)

    @cached_property
    def result_bits(self) -> int:
        return sum(bits for _, bits in self.result_fields)

    @cached_property
    def tx_payload_bits(self) -> int:
        words = [1 + self.layout.word_bits] if self.layout.learning is not None else []
        return max(self.spike_bits, self.result_bits, *words)

    @cached_property
    def tx_bytes(self) -> int:
        return (self.tx_payload_bits + KIND_BITS + 7) // 8

    def tx_packet(self, kind: TxKind, payload: int) -> bytes:
        """One TX packet as the bridge sends it (for testing a host's decoder)."""
        if not 0 <= payload < 1 << self.tx_payload_bits:
            raise ConfigError(f"TX payload {payload:#x} does not fit {self.tx_payload_bits} bits")
        return ((int(kind) << self.tx_payload_bits) | payload).to_bytes(self.tx_bytes, "little")

    def split_tx(self, data: bytes) -> list[tuple[TxKind, dict[str, int]]]:
        """Decode TX bytes into (kind, fields) per packet. A kind the bridge never sends, nonzero
        bits above the kind, or a trailing partial packet raise ``ValueError``."""
        out = []
        for kind, payload in self._split(data, self.tx_bytes, self.tx_payload_bits):
            if kind == TxKind.SPIKE and payload < 1 << self.spike_bits:
                out.append((TxKind.SPIKE, unpack(payload, self.spike_fields)))
            elif kind == TxKind.RESULT and payload < 1 << self.result_bits:
                out.append((TxKind.RESULT, unpack(payload, self.result_fields)))
            elif kind == TxKind.WORD and self.layout.learning is not None and payload < 2 << self.layout.word_bits:
                out.append((TxKind.WORD, unpack(payload, self.word_fields)))
            else:
                raise ValueError(f"TX packet of kind {kind} with payload {payload:#x} is not one the bridge sends")
        return out

    @staticmethod
    def _split(data: bytes, size: int, payload_bits: int) -> list[tuple[int, int]]:
        if len(data) % size:
            raise ValueError(f"{len(data)} bytes are not a whole number of {size}-byte packets")
        out = []
        for start in range(0, len(data), size):
            value = int.from_bytes(data[start : start + size], "little")
            if value >> (payload_bits + KIND_BITS):
                raise ValueError(f"packet at byte {start} has bits set above its kind: {value:#x}")
            out.append((value >> payload_bits, value & _mask(payload_bits)))
        return out
