"""Numba kernels of the sign-only popcount rule (``docs/learning-rule.md``) and its bit planes.

Bit planes are held as the hardware holds them: per layer a weight-sign plane (bit ``j`` of row
``r`` = ``w[r, j] < 0``, packed in 64-bit words), per step of the window a causal plane, per
layer a plus and a minus delta plane. A presynaptic delta is two popcounts and a compare
(``sign_popcount_delta``); the only weights that move are causal ones of neurons with a delta.
``train_samples`` runs the whole rule, forward pass (``emulator.run_image``) included, on a
sequence of samples; ``onchip.OnchipLearner`` is its Python face.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from . import _kernel_cache  # noqa: F401  (stamps the cached kernels below with every kernel file)
from .emulator import _popcount64, make_scratch, run_image
from .learning import sample_key, weight_draw

# ----------------------------------------------------------------------------------------------
# Bit-plane kernels (64-bit words, bit j of word j // 64 is neuron j)


@numba.njit(cache=True)
def causal_planes(deadline, n_steps, out):
    """``out[a]`` = bit plane of the neurons with ``deadline_j >= a``, for a = 0 .. n_steps - 1.

    ``deadline`` (int, -1 = none): the step a neuron fired at, or the window end for a silent
    neuron that learns. Row ``r`` arriving at step ``a`` is causal for exactly ``out[a]``.
    """
    out[:, :] = 0
    for j in range(deadline.shape[0]):
        d = deadline[j]
        if d >= 0:
            d = min(d, n_steps - 1)
            out[d, j >> 6] |= np.uint64(1) << np.uint64(j & 63)
    for a in range(n_steps - 2, -1, -1):
        for w in range(out.shape[1]):
            out[a, w] |= out[a + 1, w]


@numba.njit(cache=True)
def sign_popcount_delta(causal_row, sign_row, plus, minus):
    """delta of a presynaptic neuron: sign(popcount(ways +1) - popcount(ways -1)).

    way +1: downstream delta +1 through w >= 0, or -1 through w < 0 (sign bit set); way -1 the
    other two. Only downstream neurons in ``causal_row`` count.
    """
    return _popcount_vote(causal_row.reshape(1, -1), 0, sign_row.reshape(1, -1), 0, plus, minus)


@numba.njit(cache=True)
def _popcount_vote(causal, a, plane, r, plus, minus):
    """``sign_popcount_delta(causal[a], plane[r], plus, minus)``, read in place: no row views
    (a call with views per arriving row cost more than its popcounts)."""
    n_plus = 0
    n_minus = 0
    for w in range(plus.shape[0]):
        c = causal[a, w]
        s = plane[r, w]
        n_plus += _popcount64(c & ((plus[w] & ~s) | (minus[w] & s)))
        n_minus += _popcount64(c & ((minus[w] & ~s) | (plus[w] & s)))
    if n_plus > n_minus:
        return 1
    if n_minus > n_plus:
        return -1
    return 0


@numba.njit(cache=True)
def _step_directions(causal_row, plus, minus, n_post, out):
    """``out[j]`` = -1 / +1 / 0: the move of a weight into neuron j from a row arriving with
    causal plane ``causal_row`` (-1 where j is causal with delta +1, +1 where delta -1)."""
    for wi in range(causal_row.shape[0]):
        c = causal_row[wi]
        p = c & plus[wi]
        m = c & minus[wi]
        j0 = wi * 64
        for b in range(min(64, n_post - j0)):
            sh = np.uint64(b)
            out[j0 + b] = np.int8((m >> sh) & np.uint64(1)) - np.int8((p >> sh) & np.uint64(1))


@numba.njit(cache=True)
def _sign_words(row, n_post, out):
    """``out`` = the packed sign bits ``row[j] < 0`` (bit j of word j // 64)."""
    for wi in range(out.shape[0]):
        j0 = wi * 64
        word = np.uint64(0)
        for b in range(min(64, n_post - j0)):
            word |= np.uint64(row[j0 + b] < 0) << np.uint64(b)
        out[wi] = word


@numba.njit(cache=True, inline="always")
def _move_weight(w_flat, idx, down, w_lo, w_hi, sign_rows, r, wi, b):
    """Weight ``w_flat[idx]`` (bit ``b`` of sign word ``sign_rows[r, wi]``) one LSB down (delta
    +1) or up (delta -1), saturating at ``w_lo`` / ``w_hi``, its sign bit kept. Returns 1 if it
    changed, else 0."""
    old = np.int64(w_flat[idx])
    new = max(old - 1, w_lo) if down else min(old + 1, w_hi)
    if new == old:
        return 0
    w_flat[idx] = new
    bit = np.uint64(1) << np.uint64(b)
    if new < 0:
        sign_rows[r, wi] |= bit
    else:
        sign_rows[r, wi] &= ~bit
    return 1


@numba.njit(cache=True)
def _apply_all_rows(w_flat, w_base, n_post, sign_rows, arrival, causal, plus, minus, w_lo, w_hi):
    """``apply_layer_updates`` when every draw passes (update probability 1). The rows are
    taken step by step of arrival (a counting sort); for each step the weights that move are
    listed once (neuron j and its move: -1 LSB for delta +1, +1 LSB for delta -1), and every
    row arriving then gets them: where at least 1/4 of a row moves, in one dense, branch-free
    pass over the step's direction vector (``_step_directions``), its sign words rebuilt only
    when a sign flipped; otherwise weight by weight down the list, a flipped sign toggling its
    bit. Each weight moves on its own, so the order of rows and weights is free."""
    n_steps = causal.shape[0]
    n_rows = arrival.shape[0]
    step_off = np.zeros(n_steps + 1, np.int64)
    for r in range(n_rows):
        a = arrival[r]
        if 0 <= a < n_steps:
            step_off[a + 1] += 1
    for a in range(n_steps):
        step_off[a + 1] += step_off[a]
    rows_by_step = np.empty(step_off[n_steps], np.int64)
    fill = step_off[:n_steps].copy()
    for r in range(n_rows):
        a = arrival[r]
        if 0 <= a < n_steps:
            rows_by_step[fill[a]] = r
            fill[a] += 1
    moving = np.empty(n_post, np.int64)
    move = np.empty(n_post, np.int64)
    dirs = np.empty(n_post, np.int8)
    changed = 0
    for a in range(n_steps):
        if step_off[a + 1] == step_off[a]:
            continue
        n_mv = 0
        for wi in range(plus.shape[0]):
            todo = causal[a, wi] & (plus[wi] | minus[wi])
            up = causal[a, wi] & minus[wi]
            while todo != 0:
                b = np.int64(trailing_zeros(todo))
                moving[n_mv] = wi * 64 + b
                move[n_mv] = 2 * np.int64((up >> np.uint64(b)) & np.uint64(1)) - 1
                todo &= todo - np.uint64(1)
                n_mv += 1
        if n_mv == 0:
            continue
        dense = 4 * n_mv >= n_post
        if dense:
            _step_directions(causal[a], plus, minus, n_post, dirs)
        for q in range(step_off[a], step_off[a + 1]):
            r = rows_by_step[q]
            row = w_flat[w_base + r * n_post : w_base + (r + 1) * n_post]
            if dense:
                moved = 0
                flips = 0
                for j in range(n_post):
                    old = np.int64(row[j])
                    d = np.int64(dirs[j])
                    new = max(old - 1, w_lo) if d < 0 else (min(old + 1, w_hi) if d > 0 else old)
                    row[j] = new
                    moved += np.int64(new != old)
                    flips += np.int64((old ^ new) < 0)
                changed += moved
                if flips > 0:
                    _sign_words(row, n_post, sign_rows[r])
                continue
            for t in range(n_mv):
                j = moving[t]
                old = np.int64(row[j])
                new = min(max(old + move[t], w_lo), w_hi)
                row[j] = new
                changed += np.int64(new != old)
                if (old ^ new) < 0:
                    sign_rows[r, j >> 6] ^= np.uint64(1) << np.uint64(j & 63)
    return changed


@numba.njit(cache=True)
def apply_layer_updates(
    w_flat, w_base, n_post, sign_rows, arrival, causal, plus, minus, key, g_base, prob_q16, w_lo, w_hi
):
    """Move each causal weight of the neurons with a delta by one LSB where the draw says so.

    Returns the number of weights changed (a saturated weight that cannot move is not counted).
    At probability 1 (``prob_q16 >= 65536``) every draw passes: ``_apply_all_rows``, the same
    moves without the draws.
    """
    if prob_q16 == 0:
        return 0
    if prob_q16 >= 65536:
        return _apply_all_rows(w_flat, w_base, n_post, sign_rows, arrival, causal, plus, minus, w_lo, w_hi)
    return _apply_drawn(
        w_flat, w_base, n_post, sign_rows, arrival, causal, plus, minus, key, g_base, prob_q16, w_lo, w_hi
    )


@numba.njit(cache=True)
def _apply_drawn(w_flat, w_base, n_post, sign_rows, arrival, causal, plus, minus, key, g_base, prob_q16, w_lo, w_hi):
    """``apply_layer_updates`` weight by weight: each causal weight of a neuron with a delta
    draws, and moves when ``draw >> 16 < prob_q16``."""
    changed = 0
    for r in range(arrival.shape[0]):
        a = arrival[r]
        if a < 0 or a >= causal.shape[0]:
            continue
        for wi in range(plus.shape[0]):
            todo = causal[a, wi] & (plus[wi] | minus[wi])
            while todo != 0:
                b = np.int64(trailing_zeros(todo))
                todo &= todo - np.uint64(1)
                j = wi * 64 + b
                idx = r * n_post + j
                u = weight_draw(key, g_base + idx)
                if (u >> np.uint64(16)) >= np.uint64(prob_q16):
                    continue
                down = plus[wi] >> np.uint64(b) & np.uint64(1) != 0
                changed += _move_weight(w_flat, w_base + idx, down, w_lo, w_hi, sign_rows, r, wi, b)
    return changed


@numba.njit(cache=True)
def train_one(
    in_steps,
    label,
    sample_index,
    w_flat,
    w_off,
    n_pre,
    n_post,
    neuron_off,
    thresholds,
    datapath,
    acc_proto,
    fire_table,
    scratch,
    w_lo,
    w_hi,
    sign_flat,
    sign_off,
    words,
    margin,
    hidden_prob,
    output_prob,
    halving,
    seed,
    all_violators,
    always_correct,
    spike_target,
    spk,
    rows_read,
    delta,
    stats,
):
    """One step of the rule on one sample; weights and sign planes change in place.
    ``datapath`` is ``emulator.datapath_constants(spec)``.

    ``stats`` receives [predicted, first_output_step, weights changed, neurons with a delta,
    hidden spikes delivered before the decision].
    """
    n_layers = n_pre.shape[0]
    max_steps = datapath[9]
    spk[:] = -1
    predicted, decision, _tie = run_image(
        in_steps,
        w_flat,
        w_off,
        n_pre,
        n_post,
        neuron_off,
        thresholds,
        datapath,
        margin - 1,
        acc_proto,
        fire_table,
        scratch,
        spk,
        rows_read,
    )
    end = max_steps - 1
    if decision >= 0:
        end = min(decision + margin - 1, max_steps - 1)
    out = n_layers - 1
    ob = neuron_off[out]
    if all_violators and decision >= 0 and end < max_steps - 1 and spk[ob + label] != decision:
        # all_violators: the window ends at E = min(s_c + margin - 1, max_steps - 1) (s_c the
        # correct output's spike, max_steps - 1 if it never fires; docs/learning-rule.md,
        # section 3). The correct output fired after D, or not yet: run again to the longest
        # window it can need, then drop the spikes after E (a run to E records exactly those).
        s_c = spk[ob + label]
        after = (s_c + margin - 1 if s_c >= 0 else max_steps - 1) - decision
        spk[:] = -1
        run_image(
            in_steps,
            w_flat,
            w_off,
            n_pre,
            n_post,
            neuron_off,
            thresholds,
            datapath,
            after,
            acc_proto,
            fire_table,
            scratch,
            spk,
            rows_read,
        )
        s_c = spk[ob + label]
        end = min(s_c + margin - 1, max_steps - 1) if s_c >= 0 else max_steps - 1
        for i in range(spk.shape[0]):
            if spk[i] > end:
                spk[i] = -1
    n_steps = end + 2  # arrival steps 0 .. end + 1 (a hidden spike at `end` arrives too late)

    # Output deltas.
    delta[:] = 0
    s_c = spk[ob + label]
    c_fired = s_c >= 0
    earliest = -1
    any_violator = False
    for j in range(n_post[out]):
        s = spk[ob + j]
        if j == label or s < 0:
            continue
        if (not c_fired) or s < s_c + margin:
            any_violator = True
            if all_violators:
                delta[ob + j] = 1
            elif earliest < 0 or s < spk[ob + earliest]:
                earliest = j
    if earliest >= 0:
        delta[ob + earliest] = 1
    if any_violator or (not c_fired) or always_correct:
        delta[ob + label] = -1

    hidden_delivered = 0
    for k in range(n_layers - 1):
        hidden_delivered += rows_read[k + 1]
    # The spike target: over it, a hidden neuron whose spike arrived by D and whose vote ties
    # gets +1 (docs/learning-rule.md, section 6).
    over_target = spike_target > 0 and decision >= 0 and hidden_delivered > spike_target
    n_delta = 0
    changed = 0
    key = sample_key(seed, sample_index)
    shift = 0
    if halving > 0:
        shift = min(31, sample_index // halving)

    # Per layer, from the output back: delta planes, causal planes, presynaptic deltas.
    for k in range(n_layers - 1, -1, -1):
        nb = neuron_off[k]
        npost = n_post[k]
        nw = words[k]
        plus = np.zeros(nw, np.uint64)
        minus = np.zeros(nw, np.uint64)
        deadline = np.full(npost, -1, np.int64)
        have = False
        for j in range(npost):
            d = delta[nb + j]
            if d != 0:
                have = True
                n_delta += 1
                bit = np.uint64(1) << np.uint64(j & 63)
                if d > 0:
                    plus[j >> 6] |= bit
                else:
                    minus[j >> 6] |= bit
                s = spk[nb + j]
                deadline[j] = s if s >= 0 else end
        if not have and not (over_target and k > 0):
            continue  # (over the target a hidden layer learns even without deltas above it)
        causal = np.empty((n_steps, nw), np.uint64)
        causal_planes(deadline, n_steps, causal)
        # Arrival step of every row of layer k (-1 = did not arrive by `end`).
        npre = n_pre[k]
        arrival = np.full(npre + 1, -1, np.int64)
        if k == 0:
            for r in range(npre):
                s = in_steps[r]
                if 0 <= s <= end:
                    arrival[r] = s
        else:
            pb = neuron_off[k - 1]
            for r in range(npre):
                s = spk[pb + r]
                if s >= 0 and s + 1 <= end:
                    arrival[r] = s + 1
        arrival[npre] = 0  # bias
        plane = sign_flat[sign_off[k] : sign_off[k] + (npre + 1) * nw].reshape(npre + 1, nw)
        if k > 0:
            pb = neuron_off[k - 1]
            for r in range(npre):
                a = arrival[r]
                if a >= 0:
                    dh = _popcount_vote(causal, a, plane, r, plus, minus)
                    if dh == 0 and over_target and a <= decision:
                        dh = 1
                    delta[pb + r] = dh
        prob = output_prob if k == out else hidden_prob
        changed += apply_layer_updates(
            w_flat,
            w_off[k],
            npost,
            plane,
            arrival,
            causal,
            plus,
            minus,
            key,
            w_off[k],
            prob >> shift,
            w_lo,
            w_hi,
        )
    stats[0] = predicted
    stats[1] = decision
    stats[2] = changed
    stats[3] = n_delta
    stats[4] = hidden_delivered


@numba.njit(cache=True)
def train_samples(
    input_steps,
    labels,
    order,
    first_sample_index,
    w_flat,
    w_off,
    n_pre,
    n_post,
    neuron_off,
    thresholds,
    datapath,
    acc_proto,
    fire_table,
    w_lo,
    w_hi,
    sign_flat,
    sign_off,
    words,
    margin,
    hidden_prob,
    output_prob,
    halving,
    seed,
    all_violators,
    always_correct,
    spike_target,
    delta,
    stats_out,
):
    """Train on ``input_steps[order[i]]`` for i = 0, 1, ... (sample index first_sample_index + i).

    ``delta`` (int8, one per neuron) is scratch; it is left holding the last sample's deltas.
    """
    total = neuron_off[n_pre.shape[0]]
    spk = np.empty(total, np.int32)
    rows_read = np.empty(n_pre.shape[0], np.int32)
    scratch = make_scratch(input_steps.shape[1], n_post, neuron_off, datapath[9], acc_proto, w_flat)
    for i in range(order.shape[0]):
        s = order[i]
        train_one(
            input_steps[s],
            labels[s],
            first_sample_index + i,
            w_flat,
            w_off,
            n_pre,
            n_post,
            neuron_off,
            thresholds,
            datapath,
            acc_proto,
            fire_table,
            scratch,
            w_lo,
            w_hi,
            sign_flat,
            sign_off,
            words,
            margin,
            hidden_prob,
            output_prob,
            halving,
            seed,
            all_violators,
            always_correct,
            spike_target,
            spk,
            rows_read,
            delta,
            stats_out[i],
        )


def pack_bits(bits) -> np.ndarray:
    """A boolean vector as little-endian 64-bit words (bit j of word j // 64 is element j)."""
    b = np.asarray(bits, dtype=bool).ravel()
    words = np.zeros((len(b) + 63) // 64, np.uint64)
    for j in np.flatnonzero(b):
        words[j >> 6] |= np.uint64(1) << np.uint64(j & 63)
    return words


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``pack_bits``: the first ``n`` bits as a bool array."""
    w = np.asarray(words, dtype=np.uint64)
    idx = np.arange(n)
    return ((w[idx >> 6] >> (idx & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)


def sign_plane(weights_lsb: np.ndarray) -> np.ndarray:
    """Packed sign bits ``w < 0`` of a layer, shape ``(n_pre + 1, ceil(n_post / 64))`` uint64."""
    w = np.asarray(weights_lsb)
    return np.stack([pack_bits(row < 0) for row in w]) if len(w) else np.zeros((0, 0), np.uint64)
