"""Board vs emulator: stimulus, board readback, model and checker kept apart.

The stimulus is a batch of uint8 images; ``run_on_board`` drives the board (monitor), the
emulator is the model (``popcount_learn.emulator.emulate``), and ``first_mismatch`` is the checker:
it compares every field of the datapath's result (class, first output step, tie, every spike
step of every layer, rows read per layer, synaptic additions) and describes the first
difference in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popcount_learn.emulator import EmulationResult, emulate, encode_input_steps
from popcount_learn.progress import as_progress
from popcount_learn.weight_image import WeightImage

from .errors import BoardRefused
from .wire.protocol import BoardResult, ErrorCode, input_bits


def image_input_bits(image: WeightImage, images_uint8: np.ndarray) -> list[bytes]:
    """The INFER bit vector per image: bit i set = input i spikes at step 0 (a bright pixel)."""
    steps = encode_input_steps(image.spec, images_uint8)
    return [input_bits(row == 0) for row in steps]


@dataclass(frozen=True)
class DenseBoardResult:
    """A board result in the emulator's shapes (spike steps per layer, -1 = did not fire)."""

    predicted: int
    first_output_step: int
    tie: bool
    spike_steps: tuple[np.ndarray, ...]
    rows_read: np.ndarray
    synaptic_additions: int


def densify(result: BoardResult, topology: tuple[int, ...]) -> DenseBoardResult:
    layers = []
    for k, n_post in enumerate(topology[1:]):
        steps = np.full(n_post, -1, np.int32)
        idx = result.spike_index[k] if k < len(result.spike_index) else np.zeros(0, np.int64)
        if len(idx) and idx.max() >= n_post:
            raise ValueError(f"board reported neuron {idx.max()} in layer {k} of {n_post} neurons")
        steps[idx] = result.spike_step[k]
        layers.append(steps)
    return DenseBoardResult(result.predicted, result.first_output_step, result.tie, tuple(layers),
                            np.asarray(result.rows_read, np.int64), result.synaptic_additions)


def first_mismatch(board: DenseBoardResult, emu: EmulationResult, i: int) -> str | None:
    """None if board result == emulator row ``i`` in every field, else a full description."""
    diffs = []
    for name in ("predicted", "first_output_step", "tie", "synaptic_additions"):
        b, e = getattr(board, name), getattr(emu, name)[i]
        if int(b) != int(e):
            diffs.append(f"{name}: board {int(b)}, emulator {int(e)}")
    if len(board.rows_read) != emu.rows_read.shape[1] or np.any(board.rows_read != emu.rows_read[i]):
        diffs.append(f"rows_read: board {board.rows_read.tolist()}, emulator {emu.rows_read[i].tolist()}")
    if len(board.spike_steps) != len(emu.spike_steps):
        diffs.append(f"layers: board {len(board.spike_steps)}, emulator {len(emu.spike_steps)}")
    for k, (b, e) in enumerate(zip(board.spike_steps, emu.spike_steps)):
        e = e[i]
        if b.shape != e.shape:
            diffs.append(f"layer {k}: board {b.shape[0]} neurons, emulator {e.shape[0]}")
            continue
        bad = np.flatnonzero(b != e)
        if len(bad):
            shown = ", ".join(f"neuron {j}: board {b[j]}, emulator {e[j]}" for j in bad[:8])
            more = f" (+{len(bad) - 8} more)" if len(bad) > 8 else ""
            diffs.append(f"layer {k} spike steps differ at {len(bad)} neuron(s): {shown}{more}")
    return "; ".join(diffs) if diffs else None


def run_on_board(client, image: WeightImage, images_uint8: np.ndarray, *, batch_size: int | None = None,
                 progress=None) -> list[DenseBoardResult]:
    """Infer every image on the board (in INFER_BATCH round trips) and densify the results."""
    progress = as_progress(progress)
    bits = image_input_bits(image, images_uint8)
    batch = batch_size or client.batch_size_hint(len(bits[0]) if bits else 1)
    out = []
    progress.start(total=len(bits), desc="board")
    start = 0
    while start < len(bits):
        part = bits[start : start + batch]
        try:
            results = client.infer_batch(part)
        except BoardRefused as exc:
            if exc.code not in (ErrorCode.REPLY_TOO_LARGE, ErrorCode.OVERSIZE) or len(part) == 1:
                raise
            batch = max(1, len(part) // 2)  # a request or reply the board cannot hold: smaller batches
            continue
        out += [densify(r, image.topology) for r in results]
        progress.update(len(part))
        start += len(part)
    progress.close()
    return out


def compare_results(board: list[DenseBoardResult], emu: EmulationResult) -> dict:
    """Count mismatching images; describe the first one in full."""
    mismatched = []
    first = None
    for i, b in enumerate(board):
        diff = first_mismatch(b, emu, i)
        if diff is not None:
            mismatched.append(i)
            if first is None:
                first = f"image {i}: {diff}"
    return {"n": len(board), "mismatches": len(mismatched), "first_mismatch": first,
            "mismatched_images": mismatched[:20]}


def compare_on_board(client, image: WeightImage, images_uint8: np.ndarray, *, labels=None,
                     batch_size: int | None = None, progress=None) -> dict:
    """Run board and emulator on the same images; {n, mismatches, first_mismatch, accuracy...}."""
    board = run_on_board(client, image, images_uint8, batch_size=batch_size, progress=progress)
    emu = emulate(image, images_uint8)
    summary = compare_results(board, emu)
    if labels is not None:
        labels = np.asarray(labels)
        summary["board_accuracy"] = float(np.mean([b.predicted == y for b, y in zip(board, labels)]))
        summary["emulator_accuracy"] = float(np.mean(emu.predicted == labels))
    return summary
