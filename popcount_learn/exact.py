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
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

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
    perm = np.argsort(key_buf[:n], kind="mergesort")
    for k in range(n):
        sorted_z[k] = key_buf[perm[k]]
        perm[k] = order_buf[perm[k]]
    return perm, n


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


@njit(cache=True, parallel=True)
def _grad_weights(z_in, z_out, coef, n_blocks):
    """dL/dw_ij = sum_b coef_bj (z_bi - z_out_bj) over samples where input i is causal for j.

    Parallel over blocks of output columns: each thread owns its columns, so there are no
    per-thread copies of the gradient and no reduction.
    """
    batch, n_in = z_in.shape
    n_out = z_out.shape[1]
    grad_w = np.zeros((n_in + 1, n_out), dtype=coef.dtype)
    block = (n_out + n_blocks - 1) // n_blocks
    for blk in prange(n_blocks):
        j0 = blk * block
        j1 = min(n_out, j0 + block)
        for b in range(batch):
            zo = z_out[b]
            cb = coef[b]
            live = False
            for j in range(j0, j1):
                if cb[j] != 0.0:
                    live = True
                    break
            if not live:
                continue
            for i in range(n_in + 1):
                z_i = 1.0 if i == n_in else z_in[b, i]
                if z_i == np.inf:
                    continue
                row = grad_w[i]
                for j in range(j0, j1):
                    if cb[j] != 0.0 and z_i < zo[j]:
                        row[j] += cb[j] * (z_i - zo[j])
    return grad_w


@njit(cache=True, parallel=True)
def _grad_input_times(z_in, w, z_out, coef):
    """dL/dz_bi = sum_j coef_bj w_ij over the neurons j for which input i is causal."""
    batch, n_in = z_in.shape
    n_out = w.shape[1]
    grad_z_in = np.zeros((batch, n_in), dtype=coef.dtype)
    for b in prange(batch):
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
    return grad_z_in


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
    _check_layer(z_in, w)
    return _layer_forward(np.ascontiguousarray(z_in, dtype=w.dtype), np.ascontiguousarray(w))


def layer_backward(z_in, w, z_out, denom, grad_z_out, need_grad_z_in=True):
    """Exact gradients of one layer.

    grad_z_out: (batch, n_out) dL/dz_out (ignored for silent neurons).
    Returns grad_w (n_in + 1, n_out) summed over the batch and grad_z_in (batch, n_in)
    (zeros when need_grad_z_in is False).
    """
    _check_layer(z_in, w)
    if z_out.shape != (z_in.shape[0], w.shape[1]) or denom.shape != z_out.shape or grad_z_out.shape != z_out.shape:
        raise ConfigError("layer_backward: z_out, denom and grad_z_out must have shape (batch, n_out)")
    fired = np.isfinite(z_out) & (denom > 0)
    coef = np.where(fired, grad_z_out / np.where(fired, denom, 1.0), 0.0).astype(w.dtype)
    n_blocks = max(1, min(numba.get_num_threads(), w.shape[1]))
    grad_w = _grad_weights(z_in, z_out, coef, n_blocks)
    grad_z_in = _grad_input_times(z_in, w, z_out, coef) if need_grad_z_in else np.zeros(z_in.shape, dtype=w.dtype)
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


def forward(weights, z_input):
    """Run every layer. Returns the list of z per layer (input first) and the denominators."""
    zs = [z_input]
    denoms = []
    for w in weights:
        z_next, denom = layer_forward(zs[-1], w)
        zs.append(z_next)
        denoms.append(denom)
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
