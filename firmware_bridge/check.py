"""Body vs emulator: the one checker for every body (host or QEMU board, the RTL core).

The emulator (``popcount_learn.emulator.emulate``) is the model. A body's observations of a
batch are brought into the emulator's shapes (``BodyResult``: the same field names, plus the
protocol-level ``faults`` the body reported per image); ``compare`` then checks every field of
``COMPARED_FIELDS`` and every spike step of every layer, image by image, and returns a
``Comparison`` whose ``verdict`` is the line a person reads first and whose ``first_mismatch``
describes the first differing image in full.

Training is checked step by step (``training_step_difference``: every field the board reports
for a step against the emulator's ``StepResult``) and by the weight image read back
(``first_stream_difference``: the first differing byte and where in the image it lies).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from popcount_learn.emulator import EmulationResult
from popcount_learn.errors import ConfigError
from popcount_learn.weight_image import UPLOAD_HEADER_BYTES, UPLOAD_LAYER_HEADER_BYTES, WeightImage, weight_dtype

# Everything the datapath produces, as the emulator names it (the encoded input is its input).
COMPARED_FIELDS = tuple(name for name in EmulationResult.FIELDS if name != "input_spike_steps")
_PER_IMAGE = tuple(name for name in COMPARED_FIELDS if name != "spike_steps")
FIELD_LABELS = {
    "predicted": "class",
    "first_output_step": "decision step",
    "steps_to_decision": "steps to decision",
    "tie": "tie",
    "rows_read": "rows read",
    "synaptic_additions": "synaptic additions",
}


@dataclass(frozen=True, eq=False)
class BodyResult:
    """A body's results for a batch in the emulator's field names and shapes (``n`` rows each;
    ``spike_steps`` per layer ``(n, n_post)``, -1 = did not fire). ``faults``: image index ->
    what the body did wrong beyond the fields (a neuron reported twice, a flagged input beat)."""

    predicted: np.ndarray
    first_output_step: np.ndarray
    steps_to_decision: np.ndarray
    tie: np.ndarray
    spike_steps: tuple[np.ndarray, ...]
    rows_read: np.ndarray
    synaptic_additions: np.ndarray
    faults: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.predicted)

    def row(self, i: int) -> BodyResult:
        """Image ``i`` alone, as a batch of one."""
        return BodyResult(
            **{n: getattr(self, n)[i : i + 1] for n in _PER_IMAGE},
            spike_steps=tuple(s[i : i + 1] for s in self.spike_steps),
            faults={0: self.faults[i]} if i in self.faults else {},
        )


@dataclass(frozen=True)
class Comparison:
    """The outcome of ``compare``: ``mismatched`` image indices (sorted), the first of them
    described in full, and how much was compared."""

    body: str
    n: int
    mismatched: tuple[int, ...]
    first_mismatch: str | None
    spike_steps_compared: int

    @property
    def ok(self) -> bool:
        return not self.mismatched

    def verdict(self) -> str:
        """One line: what agreed, or how many images differ and where the first one does."""
        if self.ok:
            return (
                f"{self.n:,} images: {self.body} == emulator on class, decision step, tie, "
                f"{self.spike_steps_compared:,} spike steps and the counters"
            )
        first = self.first_mismatch.splitlines()
        where = "; ".join(line.strip() for line in first[1:] if "!=" in line or line.strip().startswith("fault"))
        return f"{len(self.mismatched):,} of {self.n:,} images: {self.body} != emulator; first: {first[0]} {where}"

    def summary(self) -> dict:
        return {
            "n": self.n,
            "mismatches": len(self.mismatched),
            "mismatched_images": list(self.mismatched[:20]),
            "first_mismatch": self.first_mismatch,
            "verdict": self.verdict(),
        }


def compare(expected: EmulationResult, observed, *, body: str) -> Comparison:
    """Compare ``observed`` (a ``BodyResult``, or anything with its fields, e.g. an RTL result)
    with the emulator's ``expected`` on every field of every image."""
    n = len(expected)
    if len(observed) != n:
        raise ConfigError(f"the emulator has {n} images, the {body} {len(observed)}")
    if len(observed.spike_steps) != len(expected.spike_steps):
        raise ConfigError(
            f"the emulator has {len(expected.spike_steps)} layers, the {body} {len(observed.spike_steps)}"
        )
    bad = np.zeros(n, dtype=bool)
    for name in _PER_IMAGE:
        e = np.asarray(getattr(expected, name)).astype(np.int64).reshape(n, -1)
        o = np.asarray(getattr(observed, name)).astype(np.int64).reshape(n, -1)
        if e.shape != o.shape:
            raise ConfigError(f"{name}: the emulator gives shape {e.shape}, the {body} {o.shape}")
        bad |= (e != o).any(axis=1)
    for k, (e, o) in enumerate(zip(expected.spike_steps, observed.spike_steps, strict=True)):
        if np.shape(e) != np.shape(o):
            raise ConfigError(f"layer {k}: the emulator has {np.shape(e)[1]} neurons, the {body} {np.shape(o)[1]}")
        bad |= (np.asarray(e) != np.asarray(o)).any(axis=1)
    faults = getattr(observed, "faults", {})
    for i in faults:
        bad[i] = True
    mismatched = tuple(int(i) for i in np.flatnonzero(bad))
    spikes = int(sum((np.asarray(s) >= 0).sum() for s in expected.spike_steps))
    first = describe(expected, observed, mismatched[0], body=body) if mismatched else None
    return Comparison(body, n, mismatched, first, spikes)


def describe(expected: EmulationResult, observed, i: int, *, body: str) -> str:
    """Every compared field of image ``i``, emulator against body, each difference marked ``!=``."""
    lines = [f"image {i}:"]
    for name in _PER_IMAGE:
        e = np.asarray(getattr(expected, name))[i].tolist()
        o = np.asarray(getattr(observed, name))[i].tolist()
        lines.append(f"  {FIELD_LABELS[name]:20s} emulator {e} {'==' if e == o else '!='} {body} {o}")
    for k, (e_all, o_all) in enumerate(zip(expected.spike_steps, observed.spike_steps, strict=True)):
        e, o = np.asarray(e_all[i]), np.asarray(o_all[i])
        diff = np.flatnonzero(e != o)
        label = f"layer {k} spike steps"
        if not diff.size:
            lines.append(f"  {label:20s} emulator == {body} ({int((e >= 0).sum())} of {len(e)} neurons fired)")
            continue
        shown = ", ".join(f"neuron {int(j)}: emulator {int(e[j])}, {body} {int(o[j])}" for j in diff[:8])
        more = f" (+{diff.size - 8} more)" if diff.size > 8 else ""
        lines.append(f"  {label:20s} emulator != {body} at {diff.size} neuron(s): {shown}{more}")
    lines += [f"  fault: {text}" for text in getattr(observed, "faults", {}).get(i, ())]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Training


def training_step_difference(reported, expected, *, body: str = "board") -> str | None:
    """None when every field the body reports for one training step (a dataclass such as the
    protocol's ``TrainStepReply`` or the RTL's ``StepReport``) equals the emulator's
    ``StepResult``; else the fields that differ, both sides."""
    names = [f.name for f in dataclasses.fields(reported)]
    missing = [n for n in names if not hasattr(expected, n)]
    if missing:
        raise ConfigError(f"the emulator's step result has no {missing}")
    diffs = [
        f"{n}: {body} {getattr(reported, n)}, emulator {getattr(expected, n)}"
        for n in names
        if int(getattr(reported, n)) != int(getattr(expected, n))
    ]
    return "; ".join(diffs) or None


def _locate(image: WeightImage, offset: int):
    """("header", byte) / ("layer header", k, byte) / ("weight", k, row, col, first byte) / ("past", offset)."""
    if offset < UPLOAD_HEADER_BYTES:
        return ("header", offset)
    pos = UPLOAD_HEADER_BYTES
    wbytes = weight_dtype(image.spec).itemsize
    for k, layer in enumerate(image.layers):
        rows, cols = layer.weights_lsb.shape
        if offset < pos + UPLOAD_LAYER_HEADER_BYTES:
            return ("layer header", k, offset - pos)
        pos += UPLOAD_LAYER_HEADER_BYTES
        size = rows * cols * wbytes
        if offset < pos + size:
            index = (offset - pos) // wbytes
            return ("weight", k, index // cols, index % cols, pos + index * wbytes)
        pos += size
    return ("past", offset)


def stream_position(image: WeightImage, offset: int) -> str:
    """Where byte ``offset`` of the upload stream lies: header, layer header or W_k[row, col]."""
    where = _locate(image, offset)
    if where[0] == "header":
        return f"stream header byte {offset}"
    if where[0] == "layer header":
        return f"layer {where[1]} header byte {where[2]}"
    if where[0] == "weight":
        return f"layer {where[1]} weight [row {where[2]}, column {where[3]}]"
    return f"byte {offset}, past the end of the image"


def first_stream_difference(board: bytes, model: bytes, image: WeightImage, *, body: str = "board") -> str | None:
    """None if identical, else the first differing byte with its place in the image (``board``:
    the body's upload stream, ``model``: the emulator's)."""
    if board == model:
        return None
    n = min(len(board), len(model))
    diff = np.flatnonzero(np.frombuffer(board[:n], np.uint8) != np.frombuffer(model[:n], np.uint8))
    if not len(diff):
        return f"lengths differ: {body} {len(board)} bytes, emulator {len(model)}"
    at = int(diff[0])
    text = (
        f"{len(diff)} byte(s) differ; first at offset {at} ({stream_position(image, at)}): "
        f"{body} 0x{board[at]:02x}, emulator 0x{model[at]:02x}"
    )
    where = _locate(image, at)
    if where[0] == "weight":  # the whole weight, both sides, as the signed integers they are
        dtype = np.dtype(weight_dtype(image.spec)).newbyteorder("<")
        start, size = where[4], dtype.itemsize
        if start + size <= n:
            b, m = (int(np.frombuffer(x[start : start + size], dtype)[0]) for x in (board, model))
            text += f" (the weight is {b} on the {body}, {m} in the emulator)"
    return text
