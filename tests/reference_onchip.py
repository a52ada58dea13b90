"""Slow, obvious reference of one on-chip learning step (docs/learning-rule.md), plain Python.

Written from the document: the forward pass is the reference emulator run a window past the
decision; deltas are sums of sign products over explicit causal sets (no bit planes); every
weight is visited in a double loop and its draw computed with Python integers.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from reference_emulator import reference_one

M32 = 0xFFFFFFFF


def mix32(x: int) -> int:
    x &= M32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    x ^= x >> 16
    return x


def sample_key(seed: int, t: int) -> int:
    return mix32(seed ^ mix32((t + 0x3C6EF372) & M32))


def weight_draw(key: int, g: int) -> int:
    return mix32((key + g * 0x9E3779B9) & M32)


def reference_step(image, learning, in_steps, label: int, t: int):
    """Returns (new weight matrices as lists, info dict) after one step on one sample."""
    spec = image.spec
    m = learning.margin_steps
    weights = [[[int(v) for v in row] for row in layer.weights_lsb] for layer in image.layers]
    # The window of section 3. all_violators with the correct output not at D: the whole
    # raster, cut at E (what a run that stops at E records).
    fwd = reference_one(image, [int(s) for s in in_steps], False, Counter(), m - 1)
    d = fwd["first_output_step"]
    if learning.output_rule == "all_violators" and d >= 0 and fwd["spike_steps"][-1][label] != d:
        fwd = reference_one(image, [int(s) for s in in_steps], True, Counter())
    if d < 0:
        end = spec.max_steps - 1
    elif learning.output_rule == "all_violators":
        s_c = fwd["spike_steps"][-1][label]
        end = min(s_c + m - 1, spec.max_steps - 1) if s_c >= 0 else spec.max_steps - 1
    else:
        end = min(d + m - 1, spec.max_steps - 1)
    spikes = [[s if s <= end else -1 for s in layer] for layer in fwd["spike_steps"]]
    n_layers = len(weights)
    sizes = [len(w[0]) for w in weights]
    deltas = [[0] * n for n in sizes]

    # Output deltas.
    out = spikes[-1]
    s_c = out[label]
    violators = [j for j in range(sizes[-1]) if j != label and out[j] >= 0 and (s_c < 0 or out[j] < s_c + m)]
    if violators:
        if learning.output_rule == "all_violators":
            for j in violators:
                deltas[-1][j] = 1
        else:
            first = min(violators, key=lambda j: (out[j], j))
            deltas[-1][first] = 1
    # Violators the window to D + m - 1 would not have seen (all_violators, the correct output late).
    late_violators = sum(1 for j in violators if out[j] > d + m - 1)
    if violators or s_c < 0 or learning.correct_rule == "always":
        deltas[-1][label] = -1

    def arrival(k, r):
        """Step at which row r of layer k arrived (None = not by the window's end)."""
        n_pre = len(weights[k]) - 1
        if r == n_pre:
            return 0
        s = in_steps[r] if k == 0 else spikes[k - 1][r]
        if s < 0:
            return None
        a = s if k == 0 else s + 1
        return a if a <= end else None

    def causal(k, r, j):
        a = arrival(k, r)
        if a is None or deltas[k][j] == 0:
            return False
        deadline = spikes[k][j] if spikes[k][j] >= 0 else end
        return a <= deadline

    # Over the spike target: hidden spikes delivered by the decision, all hidden layers.
    hidden_delivered = sum(fwd["rows_read"][1:])
    target = learning.hidden_spike_target
    over_target = target > 0 and d >= 0 and hidden_delivered > target
    target_plus = 0

    # Hidden deltas, output layer first, all from the weights before any update.
    for k in range(n_layers - 1, 0, -1):
        for h in range(sizes[k - 1]):
            total = 0
            for j in range(sizes[k]):
                if causal(k, h, j):
                    sign = 1 if weights[k][h][j] >= 0 else -1
                    total += deltas[k][j] * sign
            deltas[k - 1][h] = (total > 0) - (total < 0)
            a = arrival(k, h)
            if over_target and total == 0 and a is not None and a <= d:
                deltas[k - 1][h] = 1  # idle, and its spike reached layer k by the decision
                target_plus += 1

    # Updates.
    key = sample_key(learning.seed, t)
    g_base = 0
    changed = 0
    new = [[row[:] for row in w] for w in weights]
    for k in range(n_layers):
        p = learning.update_prob_q16(k == n_layers - 1, t)
        n_post = sizes[k]
        for r in range(len(weights[k])):
            for j in range(n_post):
                if not causal(k, r, j):
                    continue
                if (weight_draw(key, g_base + r * n_post + j) >> 16) >= p:
                    continue
                v = min(max(weights[k][r][j] - deltas[k][j], spec.weight_min), spec.weight_max)
                changed += v != weights[k][r][j]
                new[k][r][j] = v
        g_base += len(weights[k]) * n_post
    info = {
        "predicted": fwd["predicted"],
        "first_output_step": d,
        "weights_changed": changed,
        "neurons_with_delta": sum(1 for layer in deltas for x in layer if x),
        "hidden_spikes_delivered": hidden_delivered,
        "deltas": deltas,
        "spike_target_plus": target_plus,
        "late_violators": late_violators,
    }
    return [np.array(w) for w in new], info


def late_violator_steps(image, learning, input_spike_steps, labels, first_t: int) -> int:
    """Steps of a training run (the library's learner) with a violator after ``D + m - 1``: a
    wrong output that only the all_violators window (anchored on ``s_c``) sees. A side-by-side
    check under all_violators is a check of that window only when this is > 0."""
    from popcount_learn.onchip import OnchipLearner, training_forward_pass

    learner = OnchipLearner(image, learning)
    m, count = learning.margin_steps, 0
    for i in range(len(input_spike_steps)):
        label = int(labels[i])
        fwd = training_forward_pass(learner.image(), learning, input_spike_steps[i], label)
        out, d = fwd.spike_steps[-1][0], int(fwd.first_output_step[0])
        s_c = int(out[label])
        count += (
            any(j != label and out[j] > d + m - 1 and (s_c < 0 or out[j] < s_c + m) for j in range(len(out))) and d >= 0
        )
        learner.step(input_spike_steps[i], label, first_t + i)
    return count
