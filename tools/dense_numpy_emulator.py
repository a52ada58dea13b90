"""Dense, vectorised numpy version of the datapath (docs/datapath.md): the baseline for benchmarks.

This is the straightforward implementation a user writes first: a batch of images advances one
step at a time, every layer is updated for every image (decay all, add ``spikes_now @ W``,
integrate, compare). It is bit-exact with the Numba emulator (tests/test_emulator.py checks it
against the reference) but does far more work: it cannot skip silent neurons or finished images
within a chunk.

The matrix products run in float64: the operands are integers and every partial sum is bounded
by ``(n_pre + 1) * 2**15 < 2**53``, so BLAS computes them exactly.
"""

from __future__ import annotations

import numpy as np


def _overflow(x: np.ndarray, bits: int, policy: str) -> np.ndarray:
    lo = -(1 << (bits - 1))
    hi = (1 << (bits - 1)) - 1
    if policy == "saturate":
        return np.clip(x, lo, hi)
    return ((x - lo) & ((1 << bits) - 1)) + lo


def _dense_chunk(image, input_steps: np.ndarray, extremes: list | None = None) -> dict:
    spec = image.spec
    b = input_steps.shape[0]
    ws = [layer.weights_lsb.astype(np.float64) for layer in image.layers]
    thresholds = [int(layer.threshold_lsb) for layer in image.layers]
    n_layers = len(ws)
    cur = [np.zeros((b, w.shape[1]), np.int64) for w in ws]
    mem = [np.zeros((b, w.shape[1]), np.int64) for w in ws]
    spk = [np.full((b, w.shape[1]), -1, np.int32) for w in ws]
    first = np.full(b, -1, np.int32)
    predicted = np.full(b, -1, np.int32)
    tie = np.zeros(b, bool)
    for n in range(spec.max_steps):
        # Spikes of step n-1, taken before this step updates the rasters (-1 means "none").
        prev_spikes = [(s == n - 1) & (n > 0) for s in spk]
        for k in range(n_layers):
            w = ws[k]
            pre = (input_steps == n) if k == 0 else prev_spikes[k - 1]
            arriving = np.zeros(cur[k].shape, np.int64)
            if pre.any():
                arriving += (pre.astype(np.float64) @ w[:-1]).astype(np.int64)
            if n == 0:
                arriving += w[-1].astype(np.int64)
            c = cur[k] - (cur[k] >> spec.time_shift)
            c_raw = c + (arriving << spec.current_frac_bits)
            c = _overflow(c_raw, spec.current_bits, spec.current_overflow)
            v_raw = mem[k] + c
            v = _overflow(v_raw, spec.membrane_bits, spec.membrane_overflow)
            if extremes is not None:
                # Values before saturation/wrap, of images still running and neurons not yet fired.
                live = (first < 0)[:, None] & (spk[k] < 0)
                if live.any():
                    e = extremes[k]
                    e["current_min"] = min(e["current_min"], int(c_raw[live].min()))
                    e["current_max"] = max(e["current_max"], int(c_raw[live].max()))
                    e["membrane_min"] = min(e["membrane_min"], int(v_raw[live].min()))
                    e["membrane_max"] = max(e["membrane_max"], int(v_raw[live].max()))
            cur[k], mem[k] = c, v
            new = (v >= thresholds[k]) & (spk[k] < 0)
            spk[k][new] = n
        out_new = spk[-1] == n
        deciding = (first < 0) & out_new.any(axis=1)
        if deciding.any():
            rows = np.nonzero(deciding)[0]
            first[rows] = n
            tie[rows] = out_new[rows].sum(axis=1) > 1
            if spec.tie_rule == "lowest_index":
                predicted[rows] = np.argmax(out_new[rows], axis=1)
            else:
                v_out = np.where(out_new[rows], mem[-1][rows], np.iinfo(np.int64).min)
                predicted[rows] = np.argmax(v_out, axis=1)  # argmax returns the lowest index of the max
        if (first >= 0).all():
            break
    # Early termination: an image stops after its decision step, so later spikes never happened.
    last = np.where(first >= 0, first, spec.max_steps - 1)[:, None]
    spike_steps = tuple(np.where(s <= last, s, -1) for s in spk)
    return {"predicted": predicted, "first_output_step": first, "tie": tie, "spike_steps": spike_steps}


def signed_bits_needed(lo: int, hi: int) -> int:
    """Smallest two's complement width holding every value in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def dense_emulate(image, input_spike_steps: np.ndarray, chunk: int = 1000, extremes: list | None = None) -> dict:
    """Predicted class, first output step, tie flag and spike steps (early termination).

    With ``extremes`` (a list, filled in place with one dict per layer), also the smallest and
    largest current and membrane values reached before saturation or wrap by neurons that
    have not fired, in images that have not decided: the register high-water marks.
    """
    steps = np.asarray(input_spike_steps)
    if extremes is not None:
        extremes[:] = [{"current_min": 0, "current_max": 0, "membrane_min": 0, "membrane_max": 0} for _ in image.layers]
    parts = [_dense_chunk(image, steps[i : i + chunk], extremes) for i in range(0, len(steps), chunk)]
    return {
        "predicted": np.concatenate([p["predicted"] for p in parts]),
        "first_output_step": np.concatenate([p["first_output_step"] for p in parts]),
        "tie": np.concatenate([p["tie"] for p in parts]),
        "spike_steps": tuple(np.concatenate([p["spike_steps"][k] for p in parts]) for k in range(len(image.layers))),
    }
