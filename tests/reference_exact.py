"""Slow, obvious reference of the exact neuron, written from the definition.

For one neuron: sort inputs by time; for each prefix of the sorted inputs (ties enter
together) compute A = sum w, B = sum w z; the first prefix with A > 1 and B / (A - 1) no later
than the next input's z is the causal set, and z_out = B / (A - 1). No such prefix: silent.
"""

import math


def neuron_reference(z_in, w_col):
    """z_in: list of input z (inf = none), bias excluded; w_col: weights, last one is the bias.

    Returns (z_out, causal_indices) with z_out = inf and [] for a silent neuron.
    """
    events = [(z, i) for i, z in enumerate(z_in) if z != math.inf]
    events.append((1.0, len(z_in)))  # the bias input
    events.sort()
    a = 0.0
    b = 0.0
    causal = []
    k = 0
    while k < len(events):
        z_k = events[k][0]
        while k < len(events) and events[k][0] == z_k:
            i = events[k][1]
            a += w_col[i]
            b += w_col[i] * z_k
            causal.append(i)
            k += 1
        z_next = events[k][0] if k < len(events) else math.inf
        if a > 1.0 and b / (a - 1.0) <= z_next:
            return max(b / (a - 1.0), z_k), sorted(causal)
    return math.inf, []


def layer_reference(z_in_batch, w):
    """Apply neuron_reference to every sample and neuron of a layer (w: (n_in + 1, n_out))."""
    out = []
    for z_in in z_in_batch:
        out.append([neuron_reference(list(z_in), list(w[:, j]))[0] for j in range(w.shape[1])])
    return out


def membrane(t, t_in, w_col):
    """V(t) = sum_i w_i (1 - exp(-(t - t_i))) over inputs with t_i < t (bias at t = 0)."""
    v = 0.0
    times = [*list(t_in), 0.0]
    for t_i, w_i in zip(times, w_col, strict=True):
        if t_i < t:
            v += w_i * (1.0 - math.exp(-(t - t_i)))
    return v
