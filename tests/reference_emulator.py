"""Slow, obvious reference of the datapath in docs/datapath.md (Python ints, plain loops).

Written from the document, not from the kernel: one loop over steps, layers and neurons, explicit
saturate / wrap functions, fired neurons are frozen (the spec says their state is irrelevant).
Also counts how often each overflow policy actually changed a value, so tests can prove that
saturation and wrap-around were exercised.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

FIELDS = (
    "predicted",
    "first_output_step",
    "steps_to_decision",
    "tie",
    "input_spike_steps",
    "spike_steps",
    "rows_read",
    "synaptic_additions",
)


def saturate(x: int, bits: int) -> int:
    lo = -(2 ** (bits - 1))
    hi = 2 ** (bits - 1) - 1
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def wrap(x: int, bits: int) -> int:
    """Keep the low ``bits`` bits and read them as two's complement."""
    m = 2**bits
    r = x % m  # Python: 0 <= r < m
    if r >= m // 2:
        r -= m
    return r


def apply_policy(x: int, bits: int, policy: str, stats: Counter, name: str) -> int:
    if policy == "saturate":
        y = saturate(x, bits)
    elif policy == "wrap":
        y = wrap(x, bits)
    else:
        raise AssertionError(policy)
    if y != x:
        stats[f"{name}_{policy}"] += 1
    return y


def reference_encode(spec, images_uint8) -> list[list[int]]:
    out = []
    for img in np.asarray(images_uint8).reshape(len(images_uint8), -1):
        row = []
        for p in img:
            if int(p) > spec.input_threshold:
                row.append(0)
            else:
                row.append(spec.dark_input_step)  # -1 already means never
        out.append(row)
    return out


def reference_one(image, in_steps: list[int], full_raster: bool, stats: Counter, steps_after_decision: int = 0) -> dict:
    spec = image.spec
    weights = [[[int(v) for v in row] for row in layer.weights_lsb] for layer in image.layers]
    thresholds = [int(layer.threshold_lsb) for layer in image.layers]
    n_layers = len(weights)
    n_in = len(weights[0]) - 1
    sizes = [len(w[0]) for w in weights]
    cur = [[0] * m for m in sizes]
    mem = [[0] * m for m in sizes]
    spike = [[-1] * m for m in sizes]
    decision = -1
    predicted = -1
    tie = False
    for n in range(spec.max_steps):
        for k in range(n_layers):
            w = weights[k]
            n_pre = len(w) - 1
            if k == 0:
                rows = [i for i in range(n_in) if in_steps[i] == n]
            else:
                rows = [i for i in range(n_pre) if spike[k - 1][i] == n - 1 and n >= 1]
            if n == 0:
                rows.append(n_pre)  # bias row
            for j in range(sizes[k]):
                if spike[k][j] != -1:
                    continue  # fired: frozen
                i_reg = cur[k][j]
                i_reg = i_reg - (i_reg >> spec.time_shift)  # Python >> on ints is floor
                arriving = 0
                for r in rows:
                    arriving += w[r][j] * 2**spec.current_frac_bits
                i_reg = apply_policy(i_reg + arriving, spec.current_bits, spec.current_overflow, stats, "current")
                v_reg = apply_policy(mem[k][j] + i_reg, spec.membrane_bits, spec.membrane_overflow, stats, "membrane")
                cur[k][j] = i_reg
                mem[k][j] = v_reg
                if v_reg >= thresholds[k]:
                    spike[k][j] = n
        if decision == -1:
            fired_out = [j for j in range(sizes[-1]) if spike[-1][j] == n]
            if fired_out:
                decision = n
                tie = len(fired_out) > 1
                if spec.tie_rule == "lowest_index":
                    predicted = fired_out[0]
                else:
                    best = fired_out[0]
                    for j in fired_out[1:]:
                        if mem[-1][j] > mem[-1][best]:
                            best = j
                    predicted = best
                if tie:
                    stats["tie"] += 1
                    if predicted != fired_out[0]:
                        stats["tie_rules_disagree"] += 1
        keep_going = decision == -1 or full_raster or n < decision + steps_after_decision
        another_step = n + 1 < spec.max_steps and keep_going
        for k in range(n_layers - 1):
            if another_step and all(s != -1 for s in spike[k]) and any(s == n for s in spike[k]):
                stats["hidden_layer_all_fired"] += 1  # the kernel skips this layer in later steps
        if not keep_going:
            break

    last = decision if decision != -1 else spec.max_steps - 1
    rows_read = [sum(1 for s in in_steps if 0 <= s <= last)]
    if decision != -1 and any(s == decision for layer in spike[:-1] for s in layer):
        stats["hidden_spike_at_decision_step"] += 1  # fired, recorded, never delivered
    for k in range(1, n_layers):
        rows_read.append(sum(1 for s in spike[k - 1] if s != -1 and s + 1 <= last))
    additions = sum((rows_read[k] + 1) * sizes[k] for k in range(n_layers))
    if decision == -1:
        stats["no_decision"] += 1
    return {
        "predicted": predicted,
        "first_output_step": decision,
        "steps_to_decision": last + 1,
        "tie": tie,
        "input_spike_steps": list(in_steps),
        "spike_steps": spike,
        "rows_read": rows_read,
        "synaptic_additions": additions,
    }


def reference_emulate(
    image, input_spike_steps, full_raster: bool = False, stats: Counter | None = None, steps_after_decision: int = 0
) -> dict:
    """Batch version: returns a dict of numpy arrays named like EmulationResult's fields."""
    stats = Counter() if stats is None else stats
    per = [
        reference_one(image, [int(s) for s in row], full_raster, stats, steps_after_decision)
        for row in np.asarray(input_spike_steps)
    ]
    n_layers = len(image.layers)
    out = {}
    for name in FIELDS:
        if name == "spike_steps":
            out[name] = tuple(np.array([p[name][k] for p in per], dtype=np.int64) for k in range(n_layers))
        else:
            out[name] = np.array([p[name] for p in per])
    return out


def diff_results(result, reference: dict) -> list[str]:
    """Every field where the emulator result and the reference differ (empty = bit-exact)."""
    problems = []
    for name in FIELDS:
        got = getattr(result, name)
        want = reference[name]
        if name == "spike_steps":
            if len(got) != len(want):
                problems.append(f"spike_steps: {len(got)} layers vs {len(want)}")
                continue
            for k, (g, w) in enumerate(zip(got, want, strict=True)):
                g = np.asarray(g)
                if g.shape != w.shape or not np.array_equal(g.astype(np.int64), w):
                    problems.append(f"spike_steps[{k}]: got {g.tolist()} want {w.tolist()}")
        else:
            g = np.asarray(got)
            if g.shape != want.shape or not np.array_equal(g.astype(np.int64), want.astype(np.int64)):
                problems.append(f"{name}: got {g.tolist()} want {want.tolist()}")
    return problems
