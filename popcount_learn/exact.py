"""Exact z-domain forward and backward passes (Numba, parallel over samples).

For one neuron with weights ``w_i`` and input spike times ``z_i = exp(t_i)``, inputs are taken
earliest first. After the inputs with ``z_i <= z_k`` have arrived, the membrane is
``V(z) = A_k - B_k / z`` with ``A_k = sum w_i`` and ``B_k = sum w_i z_i`` over those inputs. The
neuron fires in ``[z_k, z_next)`` iff ``A_k > 1`` and ``z* = B_k / (A_k - 1) <= z_next``; the
causal set ``C`` is then every input with ``z_i <= z_k`` and

    z_out = sum_C w_i z_i / (sum_C w_i - 1)
    dz_out/dw_i = (z_i - z_out) / (sum_C w_i - 1)      (i in C)
    dz_out/dz_i = w_i / (sum_C w_i - 1)                (i in C)

A neuron whose causal sum never exceeds 1 is silent: ``z_out = inf``. Inputs tied in time enter
the causal set together. The last weight row of every layer is a bias input at ``z = 1``.

Binary inputs (every spike at ``z = 1``, the bias's time, as the default encoding gives the first
layer) take a closed form: all spiking inputs and the bias are one tie group, so with ``A`` their
summed weights a neuron fires at ``z_out = A / (A - 1)`` iff ``A > 1``, every spiking input is
causal for every neuron that fires, and ``dL/dw_ij`` is one term per sample,
``coef_bj (1 - z_out_bj)``, shared by all its spiking inputs. ``layer_forward`` and
``layer_backward`` take that path by themselves when their input is binary; it adds the same
numbers in the same order as the general path, so the results are bit-identical.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from . import _kernel_cache  # noqa: F401  (stamps the cached kernels below with every kernel file)
from .errors import ConfigError


@njit(cache=True, inline="always")
def _sample_forward(w, order, sorted_z, n_active, z_out, denom, a_sum, b_sum):
    """One sample: ``order[k]`` is the k-th spiking input (the bias is index n_in), at ``sorted_z[k]``."""
    n_out = w.shape[1]
    for j in range(n_out):
        a_sum[j] = 0.0
        b_sum[j] = 0.0
        z_out[j] = np.inf
        denom[j] = 0.0
    n_waiting = n_out
    k = 0
    while k < n_active and n_waiting > 0:
        z_k = sorted_z[k]
        # Add the whole group of inputs tied at z_k.
        while k < n_active and sorted_z[k] == z_k:
            row = w[order[k]]
            for j in range(n_out):
                a_sum[j] += row[j]
                b_sum[j] += row[j] * z_k
            k += 1
        z_next = sorted_z[k] if k < n_active else np.inf
        for j in range(n_out):
            if z_out[j] == np.inf:
                a1 = a_sum[j] - 1.0
                if a1 > 0.0:
                    zc = b_sum[j] / a1
                    if zc <= z_next:
                        # Never earlier than the last causal input (guards rounding).
                        z_out[j] = zc if zc > z_k else z_k
                        denom[j] = a1
                        n_waiting -= 1


_INSERTION_SORT_MAX = 96


@njit(cache=True, inline="always")
def _active_order(z_in, n_in, order_buf, key_buf, sorted_z):
    """Spiking inputs plus the bias (index n_in, z = 1) sorted by z: (indices, count); their
    times are written to ``sorted_z``."""
    n = 0
    for i in range(n_in):
        if z_in[i] < np.inf:
            order_buf[n] = i
            key_buf[n] = z_in[i]
            n += 1
    order_buf[n] = n_in
    key_buf[n] = 1.0
    n += 1
    if n > _INSERTION_SORT_MAX:
        perm = np.argsort(key_buf[:n], kind="mergesort")
        for k in range(n):
            sorted_z[k] = key_buf[perm[k]]
            perm[k] = order_buf[perm[k]]
        return perm, n
    # Few spikes (a sparse hidden layer): a stable insertion sort, the same order as mergesort's
    # (no NaN reaches here: a NaN time fails z < inf above).
    for k in range(n):
        z = key_buf[k]
        i = order_buf[k]
        m = k
        while m > 0 and sorted_z[m - 1] > z:
            sorted_z[m] = sorted_z[m - 1]
            order_buf[m] = order_buf[m - 1]
            m -= 1
        sorted_z[m] = z
        order_buf[m] = i
    return order_buf, n


@njit(cache=True, parallel=True)
def _layer_forward(z_in, w):
    """Spike times of one layer for a batch.

    z_in: (batch, n_in) input spike times in z (inf = no spike); w: (n_in + 1, n_out).
    Returns z_out (batch, n_out), inf for silent neurons, and denom = sum_C w - 1 (0 if silent).
    """
    batch, n_in = z_in.shape
    n_out = w.shape[1]
    z_out = np.empty((batch, n_out), dtype=w.dtype)
    denom = np.empty((batch, n_out), dtype=w.dtype)
    for b in prange(batch):
        order_buf = np.empty(n_in + 1, dtype=np.int64)
        key_buf = np.empty(n_in + 1, dtype=z_in.dtype)
        sorted_z = np.empty(n_in + 1, dtype=np.float64)  # as before: z_k computes in float64
        a_sum = np.empty(n_out, dtype=w.dtype)
        b_sum = np.empty(n_out, dtype=w.dtype)
        order, n_active = _active_order(z_in[b], n_in, order_buf, key_buf, sorted_z)
        _sample_forward(w, order, sorted_z, n_active, z_out[b], denom[b], a_sum, b_sum)
    return z_out, denom


@njit(cache=True, inline="always")
def _sorted_inputs(z_in, b, orders, times, counts):
    """Sample b's spiking inputs and the bias, stably sorted by z, into ``orders[b]`` / ``times[b]``."""
    n_in = z_in.shape[1]
    order_buf = np.empty(n_in + 1, dtype=np.int64)
    key_buf = np.empty(n_in + 1, dtype=z_in.dtype)
    order, n = _active_order(z_in[b], n_in, order_buf, key_buf, times[b])
    orders[b, :n] = order[:n]
    counts[b] = n


@njit(cache=True, inline="always")
def _grad_weights_block(orders, times, counts, z_out, coef, grad_w, j0, j1):
    """grad_w[:, j0:j1] += coef_bj (z_bi - z_out_bj) where input i is causal (z_bi < z_out_bj)
    for j, in increasing b.

    By arrival time: the inputs of sample b tied at one z share one term per neuron,
    t_j = coef_bj (z - z_out_bj) (float64, as ``row[j] += coef * (z_i - z_out)`` computes it) or
    +0.0 where the input is not causal or j has no gradient. It is worked out once per tie group
    and added to each of the group's rows, as a whole row when many neurons take it. Adding +0.0
    changes nothing (a running sum from +0.0 is never -0.0), so the numbers are those of testing
    every (input, neuron) pair.
    """
    m = j1 - j0
    term = np.empty(m, dtype=np.float64)
    live = np.empty(m, dtype=np.int64)
    for b in range(orders.shape[0]):
        zo = z_out[b, j0:j1]
        cb = coef[b, j0:j1]
        any_live = False
        for j in range(m):
            if cb[j] != 0.0:
                any_live = True
                break
        if not any_live:
            continue
        order = orders[b]
        t = times[b]
        n = counts[b]
        k = 0
        while k < n:
            z_g = t[k]
            n_live = 0
            for j in range(m):
                if cb[j] != 0.0 and z_g < zo[j]:
                    term[j] = cb[j] * (z_g - zo[j])
                    live[n_live] = j
                    n_live += 1
                else:
                    term[j] = 0.0
            dense = n_live * 4 > m
            while k < n and t[k] == z_g:
                if n_live > 0:
                    row = grad_w[order[k], j0:j1]
                    if dense:
                        for j in range(m):
                            row[j] += term[j]
                    else:
                        for q in range(n_live):
                            row[live[q]] += term[live[q]]
                k += 1


@njit(cache=True, parallel=True)
def _grad_weights(z_in, z_out, coef, n_blocks):
    """dL/dw_ij = sum_b coef_bj (z_bi - z_out_bj) over samples where input i is causal for j.

    Parallel over blocks of output columns: each thread owns its columns, so there are no
    per-thread copies of the gradient and no reduction.
    """
    batch, n_in = z_in.shape
    n_out = z_out.shape[1]
    grad_w = np.zeros((n_in + 1, n_out), dtype=coef.dtype)
    orders = np.empty((batch, n_in + 1), dtype=np.int64)
    times = np.empty((batch, n_in + 1), dtype=np.float64)
    counts = np.empty(batch, dtype=np.int64)
    for b in prange(batch):
        _sorted_inputs(z_in, b, orders, times, counts)
    block = (n_out + n_blocks - 1) // n_blocks
    for blk in prange(n_blocks):
        j0 = blk * block
        _grad_weights_block(orders, times, counts, z_out, coef, grad_w, j0, min(n_out, j0 + block))
    return grad_w


@njit(cache=True)
def _sort_batch(z_in):
    """Every sample's spiking inputs and the bias, stably sorted by z (``_active_order``), on the
    calling thread: (orders, times, counts), sample b's in ``orders[b, :counts[b]]``."""
    batch, n_in = z_in.shape
    orders = np.empty((batch, n_in + 1), dtype=np.int64)
    times = np.empty((batch, n_in + 1), dtype=np.float64)
    counts = np.empty(batch, dtype=np.int64)
    order_buf = np.empty(n_in + 1, dtype=np.int64)
    key_buf = np.empty(n_in + 1, dtype=z_in.dtype)
    for b in range(batch):
        order, n = _active_order(z_in[b], n_in, order_buf, key_buf, times[b])
        orders[b, :n] = order[:n]
        counts[b] = n
    return orders, times, counts


@njit(cache=True)
def _layer_forward_sorted(orders, times, counts, w):
    """``_layer_forward`` on the calling thread from a ``_sort_batch`` result (the same numbers:
    the same per-sample order and float64 times)."""
    batch = counts.shape[0]
    n_out = w.shape[1]
    z_out = np.empty((batch, n_out), dtype=w.dtype)
    denom = np.empty((batch, n_out), dtype=w.dtype)
    a_sum = np.empty(n_out, dtype=w.dtype)
    b_sum = np.empty(n_out, dtype=w.dtype)
    for b in range(batch):
        _sample_forward(w, orders[b], times[b], counts[b], z_out[b], denom[b], a_sum, b_sum)
    return z_out, denom


@njit(cache=True)
def _grad_weights_sorted(orders, times, counts, z_out, coef):
    """``_grad_weights`` on the calling thread from a ``_sort_batch`` result (each element's sum
    runs over the samples in the same increasing order, so the same numbers)."""
    n_out = z_out.shape[1]
    grad_w = np.zeros((orders.shape[1], n_out), dtype=coef.dtype)
    _grad_weights_block(orders, times, counts, z_out, coef, grad_w, 0, n_out)
    return grad_w


@njit(cache=True, inline="always")
def _grad_input_times_sample(z_in, w, z_out, coef, grad_z_in, b):
    n_in = z_in.shape[1]
    n_out = w.shape[1]
    zo = z_out[b]
    cb = coef[b]
    for i in range(n_in):
        z_i = z_in[b, i]
        if z_i == np.inf:
            continue
        row = w[i]
        acc = 0.0
        for j in range(n_out):
            if cb[j] != 0.0 and z_i < zo[j]:
                acc += cb[j] * row[j]
        grad_z_in[b, i] = acc


@njit(cache=True, parallel=True)
def _grad_input_times(z_in, w, z_out, coef):
    """dL/dz_bi = sum_j coef_bj w_ij over the neurons j for which input i is causal."""
    grad_z_in = np.zeros(z_in.shape, dtype=coef.dtype)
    for b in prange(z_in.shape[0]):
        _grad_input_times_sample(z_in, w, z_out, coef, grad_z_in, b)
    return grad_z_in


@njit(cache=True)
def _grad_input_times_serial(z_in, w, z_out, coef):
    """``_grad_input_times`` on the calling thread (the same numbers)."""
    grad_z_in = np.zeros(z_in.shape, dtype=coef.dtype)
    for b in range(z_in.shape[0]):
        _grad_input_times_sample(z_in, w, z_out, coef, grad_z_in, b)
    return grad_z_in


# A general layer whose batch x weights is below this runs on the calling thread: waking the
# thread pool costs 15-500 us a call on the shared 2-core machine, more than such a layer's work
# (the 801x10 output layer at batch 32: ~0.2-0.4 ms a kernel on one thread).
SERIAL_WORK = 1 << 22


def _serial(batch, w):
    return numba.get_num_threads() == 1 or batch * w.shape[0] * w.shape[1] < SERIAL_WORK


# ----------------------------------------------------------------------------------------------
# Binary inputs: every spike at z = 1 (one tie group with the bias).


@njit(cache=True)
def _binary_rows(z_in):
    """Spiking inputs per sample when every spike is at z = 1: (ok, row_ptr, rows).

    ``rows[row_ptr[b] : row_ptr[b + 1]]`` are sample b's spiking inputs (z = 1) in increasing
    order. ``ok`` is False as soon as some input is neither 1 nor inf (NaN included).
    """
    batch, n_in = z_in.shape
    ptr = np.zeros(batch + 1, np.int64)
    rows = np.empty(batch * n_in, np.int64)
    n = 0
    for b in range(batch):
        for i in range(n_in):
            z = z_in[b, i]
            if z == 1.0:
                rows[n] = i
                n += 1
            elif z != np.inf:
                return False, ptr[:1], rows[:0]
        ptr[b + 1] = n
    return True, ptr, rows[:n]


def binary_input_rows(z_in):
    """``(row_ptr, rows)`` of the spiking inputs per sample if every spike is at z = 1, else None."""
    ok, ptr, rows = _binary_rows(np.ascontiguousarray(z_in))
    return (ptr, rows) if ok else None


def _column_chunks(n_out):
    """Contiguous column ranges, one per thread: each thread owns its columns (no reduction)."""
    return max(1, min(numba.get_num_threads(), n_out))


@njit(cache=True, parallel=True)
def _binary_layer_forward(ptr, rows, w, n_chunks):
    """``_layer_forward`` for binary inputs: A_bj = sum of w_ij over sample b's spiking inputs
    (increasing i, then the bias row), z_out = A / (A - 1) if A > 1 else inf, denom = A - 1.

    The same additions in the same order as the general kernel, whose single tie group at z = 1
    holds the spiking inputs in increasing order and then the bias (b_sum = a_sum there, z = 1).
    """
    n_rows, n_out = w.shape
    bias = n_rows - 1
    batch = ptr.shape[0] - 1
    z_out = np.empty((batch, n_out), dtype=w.dtype)
    denom = np.empty((batch, n_out), dtype=w.dtype)
    width = (n_out + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        j0 = c * width
        j1 = min(n_out, j0 + width)
        acc = np.empty(max(0, j1 - j0), dtype=w.dtype)
        for b in range(batch):
            acc[:] = 0.0
            for q in range(ptr[b], ptr[b + 1]):
                row = w[rows[q], j0:j1]
                for j in range(acc.shape[0]):
                    acc[j] += row[j]
            row = w[bias, j0:j1]
            for j in range(acc.shape[0]):
                acc[j] += row[j]
            _binary_fire(acc, z_out[b, j0:j1], denom[b, j0:j1])
    return z_out, denom


@njit(cache=True, inline="always")
def _binary_fire(a_sum, z_out, denom):
    """z_out = A / (A - 1) if A > 1 else inf and denom = A - 1 (0 if silent), per element of the
    summed weights ``a_sum`` (the one tie group at z = 1 of binary inputs)."""
    for j in range(a_sum.shape[0]):
        a1 = a_sum[j] - 1.0
        zo = np.inf
        d = 0.0
        if a1 > 0.0:
            zc = a_sum[j] / a1
            if zc <= np.inf:
                zo = zc if zc > 1.0 else 1.0
                d = a1
        z_out[j] = zo
        denom[j] = d


@njit(cache=True)
def _samples_per_row(ptr, rows, n_in):
    """The per-sample lists transposed: ``samples[start[i] : start[i + 1]]`` are the samples in
    which input i spikes, increasing; row ``n_in`` (the bias) lists every sample."""
    batch = ptr.shape[0] - 1
    n_pairs = ptr[batch]
    start = np.zeros(n_in + 2, np.int64)
    for q in range(n_pairs):
        start[rows[q] + 1] += 1
    for i in range(n_in + 1):
        start[i + 1] += start[i]
    fill = start[: n_in + 1].copy()
    samples = np.empty(n_pairs + batch, np.int64)
    for b in range(batch):
        for q in range(ptr[b], ptr[b + 1]):
            i = rows[q]
            samples[fill[i]] = b
            fill[i] += 1
    for b in range(batch):
        samples[n_pairs + b] = b
    start[n_in + 1] = n_pairs + batch
    return start, samples


@njit(cache=True, inline="always")
def _binary_terms(z_out, coef, j0, m):
    """Per sample b and column j0 + j: t_bj = coef_bj (1 - z_out_bj) where the neuron fired after
    z = 1 and has a gradient, else +0.0 (float64, as the general kernel computes it); the live
    columns of each sample, their number, and whether to add the sample's row densely."""
    batch = z_out.shape[0]
    term = np.zeros((batch, m), dtype=np.float64)
    live = np.empty((batch, m), dtype=np.int64)
    n_live = np.zeros(batch, dtype=np.int64)
    for b in range(batch):
        for j in range(m):
            cb = coef[b, j0 + j]
            zo = z_out[b, j0 + j]
            if cb != 0.0 and zo > 1.0:
                term[b, j] = cb * (1.0 - zo)
                live[b, n_live[b]] = j
                n_live[b] += 1
    # Adding the +0.0 of a dead column changes nothing (a running sum that starts at +0.0 is
    # never -0.0), so a sample with many live columns is added as a whole row.
    dense = n_live * 4 > m
    return term, live, n_live, dense


@njit(cache=True, inline="always")
def _add_terms(acc, samples, q0, q1, term, live, n_live, dense):
    """acc += t_b for the samples b = samples[q0:q1], in that order."""
    for q in range(q0, q1):
        b = samples[q]
        if dense[b]:
            for j in range(acc.shape[0]):
                acc[j] += term[b, j]
        else:
            for k in range(n_live[b]):
                j = live[b, k]
                acc[j] += term[b, j]


@njit(cache=True, parallel=True)
def _binary_grad_weights(ptr, rows, n_in, z_out, coef, n_chunks):
    """``_grad_weights`` for binary inputs: input i (z = 1) is causal for every neuron j that fired
    after z = 1, through the same term t_bj = coef_bj (1 - z_out_bj) for all of sample b's
    spiking inputs. grad_w[i, j] = sum of t_bj over the samples b in which i spikes, in
    increasing b (every sample for the bias row): the general kernel's order.
    """
    n_out = z_out.shape[1]
    start, samples = _samples_per_row(ptr, rows, n_in)
    grad_w = np.empty((n_in + 1, n_out), dtype=coef.dtype)
    width = (n_out + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        j0 = c * width
        m = max(0, min(n_out, j0 + width) - j0)
        term, live, n_live, dense = _binary_terms(z_out, coef, j0, m)
        for i in range(n_in + 1):
            acc = grad_w[i, j0 : j0 + m]
            for j in range(m):
                acc[j] = 0.0
            _add_terms(acc, samples, start[i], start[i + 1], term, live, n_live, dense)
    return grad_w


@njit(cache=True)
def _backward_coefficients(z_out, denom, grad_z_out, coef):
    for b in range(z_out.shape[0]):
        for j in range(z_out.shape[1]):
            d = denom[b, j]
            coef[b, j] = grad_z_out[b, j] / d if np.isfinite(z_out[b, j]) and d > 0 else 0.0


def backward_coefficients(z_out, denom, grad_z_out, dtype):
    """coef = dL/dz_out / (sum_C w - 1) for neurons that fired, 0 for silent ones (in ``dtype``).

    Written out, the numpy expression ``np.where(fired, g / np.where(fired, denom, 1.0), 0.0)``.
    """
    coef = np.empty(z_out.shape, dtype=dtype)
    _backward_coefficients(z_out, denom, grad_z_out, coef)
    return coef


def _check_layer(z_in, w) -> None:
    # The kernels do not bounds-check: a mismatch would read past the weight matrix.
    if z_in.ndim != 2 or w.ndim != 2 or z_in.shape[1] + 1 != w.shape[0]:
        raise ConfigError(
            f"layer input of shape {z_in.shape} does not fit weights of shape {w.shape} "
            "(expected (batch, n_in) and (n_in + 1, n_out))"
        )
    if w.dtype not in (np.float32, np.float64):
        raise ConfigError(f"layer weights must be float32 or float64, got {w.dtype}")


def layer_forward(z_in, w):
    """Spike times of one layer for a batch.

    z_in: (batch, n_in) input spike times in z (inf = no spike); w: (n_in + 1, n_out).
    Returns z_out (batch, n_out), inf for silent neurons, and denom = sum_C w - 1 (0 if silent).
    """
    z_out, denom, _ = layer_forward_sorted(z_in, w)
    return z_out, denom


def layer_forward_sorted(z_in, w):
    """``layer_forward`` plus the sorted inputs it made, if it sorted on the calling thread, else
    None: ``(orders, times, counts)`` of ``_sort_batch``, which ``layer_backward`` takes as
    ``sorted_inputs`` for the same ``z_in`` and ``w`` instead of sorting them again."""
    _check_layer(z_in, w)
    z_in = np.ascontiguousarray(z_in, dtype=w.dtype)
    w = np.ascontiguousarray(w)
    ok, ptr, rows = _binary_rows(z_in)
    if ok:
        return *_binary_layer_forward(ptr, rows, w, _column_chunks(w.shape[1])), None
    if _serial(z_in.shape[0], w):
        sorted_inputs = _sort_batch(z_in)
        return *_layer_forward_sorted(*sorted_inputs, w), sorted_inputs
    return *_layer_forward(z_in, w), None


def layer_backward(z_in, w, z_out, denom, grad_z_out, need_grad_z_in=True, sorted_inputs=None):
    """Exact gradients of one layer.

    grad_z_out: (batch, n_out) dL/dz_out (ignored for silent neurons). ``sorted_inputs``: what
    ``layer_forward_sorted(z_in, w)`` returned as its third value (or None: sort here).
    Returns grad_w (n_in + 1, n_out) summed over the batch and grad_z_in (batch, n_in)
    (zeros when need_grad_z_in is False).
    """
    _check_layer(z_in, w)
    if z_out.shape != (z_in.shape[0], w.shape[1]) or denom.shape != z_out.shape or grad_z_out.shape != z_out.shape:
        raise ConfigError("layer_backward: z_out, denom and grad_z_out must have shape (batch, n_out)")
    coef = backward_coefficients(z_out, denom, grad_z_out, w.dtype)
    ok, ptr, rows = _binary_rows(np.ascontiguousarray(z_in))
    if ok:
        grad_w = _binary_grad_weights(ptr, rows, z_in.shape[1], z_out, coef, _column_chunks(w.shape[1]))
    elif _serial(z_in.shape[0], w):
        # The forward pass sorted z_in in w's dtype; the same order unless that cast made ties.
        if sorted_inputs is None or z_in.dtype != w.dtype:
            sorted_inputs = _sort_batch(np.ascontiguousarray(z_in))
        grad_w = _grad_weights_sorted(*sorted_inputs, z_out, coef)
    else:
        grad_w = _grad_weights(z_in, z_out, coef, _column_chunks(w.shape[1]))
    if not need_grad_z_in:
        grad_z_in = np.zeros(z_in.shape, dtype=w.dtype)
    elif _serial(z_in.shape[0], w):
        grad_z_in = _grad_input_times_serial(z_in, w, z_out, coef)
    else:
        grad_z_in = _grad_input_times(z_in, w, z_out, coef)
    return grad_w, grad_z_in


@njit(cache=True, parallel=True)
def _arrived_weight_sum(z_in, w):
    """Sum of the weights of every input that ever spikes (bias included), per neuron.

    A neuron is silent iff this is <= 1; its gradient w.r.t. each spiking input weight is 1.
    """
    batch, n_in = z_in.shape
    n_out = w.shape[1]
    total = np.empty((batch, n_out), dtype=w.dtype)
    for b in prange(batch):
        for j in range(n_out):
            total[b, j] = w[n_in, j]
        for i in range(n_in):
            if z_in[b, i] < np.inf:
                for j in range(n_out):
                    total[b, j] += w[i, j]
    return total


def arrived_weight_sum(z_in, w):
    """Sum of the weights of every input that ever spikes (bias included), per neuron.

    A neuron is silent iff this is <= 1.
    """
    _check_layer(z_in, w)
    return _arrived_weight_sum(z_in, w)


def forward(weights, z_input, sorted_inputs=None):
    """Run every layer. Returns the list of z per layer (input first) and the denominators.

    ``sorted_inputs``, if a list, receives each layer's third value of ``layer_forward_sorted``.
    """
    zs = [z_input]
    denoms = []
    for w in weights:
        z_next, denom, kept = layer_forward_sorted(zs[-1], w)
        zs.append(z_next)
        denoms.append(denom)
        if sorted_inputs is not None:
            sorted_inputs.append(kept)
    return zs, denoms


def first_spike_decision(z_out):
    """Class of the earliest output spike per sample; -1 when no output spikes.

    Ties (several outputs at exactly the same earliest z) go to the lowest index and are
    flagged. Returns (predicted, tie).
    """
    z_first = z_out.min(axis=1)
    predicted = np.where(np.isfinite(z_first), z_out.argmin(axis=1), -1)
    tie = (z_out == z_first[:, None]).sum(axis=1) > 1
    tie &= np.isfinite(z_first)
    return predicted, tie
