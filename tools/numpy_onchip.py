"""Plain numpy version of the sign-only learning rule (docs/learning-rule.md): the baseline.

What a user writes first: for each sample, step the datapath with whole-layer numpy vector
operations (decay every neuron, add the arriving rows, integrate, compare) until the learning
window ends, then compute the deltas with matrix-vector products of the weight signs and apply
the update to the whole causal sub-matrix with a vectorised random draw. No bit planes, no
event lists, no early exit inside a layer. Bit-exact with ``popcount_learn.onchip`` (checked by
tests/test_onchip.py and by tools/bench_onchip.py on every run).
"""

from __future__ import annotations

import numpy as np

M32 = np.uint64(0xFFFFFFFF)


def _mix32(x: np.ndarray) -> np.ndarray:
    x = x & M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & M32
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & M32
    x ^= x >> np.uint64(16)
    return x


def _overflow(x, bits, policy):
    lo = -(1 << (bits - 1))
    if policy == "saturate":
        return np.clip(x, lo, (1 << (bits - 1)) - 1)
    return ((x - lo) & ((1 << bits) - 1)) + lo


def forward_window(weights, thresholds, spec, in_steps, margin, watch=-1):
    """Spike steps per layer (-1 = none by the window's end), decision step, window end.

    The window ends ``margin - 1`` steps after the decision, or with ``watch >= 0`` (the label
    under all_violators) after that output's spike (the last step if it never fires)."""
    n_layers = len(weights)
    cur = [np.zeros(w.shape[1], np.int64) for w in weights]
    mem = [np.zeros(w.shape[1], np.int64) for w in weights]
    spk = [np.full(w.shape[1], -1, np.int64) for w in weights]
    decision = -1
    for n in range(spec.max_steps):
        prev = [s == n - 1 for s in spk] if n > 0 else [np.zeros(len(s), bool) for s in spk]
        for k in range(n_layers):
            w = weights[k]
            pre = (in_steps == n) if k == 0 else prev[k - 1]
            arriving = w[:-1][pre].sum(axis=0) if pre.any() else np.zeros(w.shape[1], np.int64)
            if n == 0:
                arriving = arriving + w[-1]
            c = cur[k] - (cur[k] >> spec.time_shift)
            c = _overflow(c + (arriving << spec.current_frac_bits), spec.current_bits, spec.current_overflow)
            v = _overflow(mem[k] + c, spec.membrane_bits, spec.membrane_overflow)
            cur[k], mem[k] = c, v
            fire = (v >= thresholds[k]) & (spk[k] < 0)
            spk[k][fire] = n
        if decision < 0 and (spk[-1] == n).any():
            decision = n
        anchor = decision if watch < 0 else spk[-1][watch]
        if anchor >= 0 and n >= anchor + margin - 1:
            break
    end = n if decision >= 0 else spec.max_steps - 1
    return spk, decision, end


def train_step(weights, thresholds, spec, learning, in_steps, label, t):
    """One step in place on ``weights`` (list of int64 arrays, bias row last). Returns the
    number of weights changed."""
    m = learning.margin_steps
    watch = label if learning.output_rule == "all_violators" else -1
    spk, decision, end = forward_window(weights, thresholds, spec, np.asarray(in_steps), m, watch)
    n_layers = len(weights)
    out = spk[-1]
    s_c = out[label]
    wrong = np.arange(len(out)) != label
    viol = wrong & (out >= 0) & ((s_c < 0) | (out < s_c + m))
    deltas = [np.zeros(w.shape[1], np.int64) for w in weights]
    if viol.any():
        if learning.output_rule == "all_violators":
            deltas[-1][viol] = 1
        else:
            cand = np.where(viol, out, np.iinfo(np.int64).max)
            deltas[-1][int(np.argmin(cand))] = 1
    if viol.any() or s_c < 0 or learning.correct_rule == "always":
        deltas[-1][label] = -1
    # The spike target: hidden spikes delivered by the decision (s + 1 <= D), all hidden layers.
    delivered = sum(int(((s >= 0) & (s + 1 <= decision)).sum()) for s in spk[:-1])
    target = learning.hidden_spike_target
    over_target = target > 0 and decision >= 0 and delivered > target
    arrivals = []
    for k in range(n_layers):
        if k == 0:
            a = np.where((in_steps >= 0) & (in_steps <= end), in_steps, -1).astype(np.int64)
        else:
            s = spk[k - 1]
            a = np.where((s >= 0) & (s + 1 <= end), s + 1, -1)
        arrivals.append(np.append(a, 0))  # bias row arrives at step 0
    causal = []
    for k in range(n_layers - 1, -1, -1):
        deadline = np.where(spk[k] >= 0, spk[k], end)
        ck = (arrivals[k][:, None] >= 0) & (arrivals[k][:, None] <= deadline[None, :]) & (deltas[k] != 0)[None, :]
        causal.insert(0, ck)
        if k > 0:
            sign = np.where(weights[k][:-1] < 0, -1, 1)
            total = (ck[:-1] * sign * deltas[k][None, :]).sum(axis=1)
            deltas[k - 1] = np.sign(total)
            if over_target:
                a = arrivals[k][:-1]
                deltas[k - 1][(total == 0) & (a >= 0) & (a <= decision)] = 1
    key = _mix32(np.uint64(learning.seed) ^ _mix32(np.uint64((t + 0x3C6EF372) & 0xFFFFFFFF)))
    g_base = 0
    changed = 0
    for k in range(n_layers):
        w = weights[k]
        p = learning.update_prob_q16(k == n_layers - 1, t)
        rows, cols = np.nonzero(causal[k])
        if len(rows):
            g = (np.uint64(g_base) + rows.astype(np.uint64) * np.uint64(w.shape[1]) + cols.astype(np.uint64)) & M32
            u = _mix32((key + ((g * np.uint64(0x9E3779B9)) & M32)) & M32)
            move = (u >> np.uint64(16)) < np.uint64(p)
            rows, cols = rows[move], cols[move]
            new = np.clip(w[rows, cols] - deltas[k][cols], spec.weight_min, spec.weight_max)
            changed += int((new != w[rows, cols]).sum())
            w[rows, cols] = new
        g_base += w.size
    return changed


def train(image, learning, input_steps, labels, first_sample_index=0):
    """Train on the rows of ``input_steps`` in order; returns the new weight matrices (int64)."""
    weights = [layer.weights_lsb.astype(np.int64) for layer in image.layers]
    thresholds = [int(layer.threshold_lsb) for layer in image.layers]
    for i in range(len(labels)):
        train_step(weights, thresholds, image.spec, learning, input_steps[i], int(labels[i]), first_sample_index + i)
    return weights
