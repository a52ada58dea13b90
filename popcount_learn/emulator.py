"""Bit-exact emulator of the time-stepped fixed-point datapath (see ``docs/datapath.md``).

Per image, per step ``n = 0 .. max_steps - 1``, per layer, per neuron (registers start at 0)::

    I  = I - (I >> time_shift)              # decay, arithmetic shift (floor)
    A  = sum of the arriving weight rows     # wide accumulator, order-free
    I  = ovf_I(I + (A << current_frac_bits)) # one overflow op per step
    V  = ovf_V(V + I)
    fire when the spike flag is clear and V >= threshold_lsb

Arrivals at step n: layer 0 reads the rows of the inputs whose spike step is n; layer k > 0 reads
the rows of the layer k-1 neurons that fired at step n - 1; every layer reads its bias row at
step 0. The decision is the first step at which an output neuron fires (ties: ``tie_rule``).

The kernels are event-driven where it pays (a spike adds its whole weight row; a layer whose
neurons have all fired is skipped) and otherwise sweep the neurons of a layer in one branch-free,
vectorisable loop. Registers are stored in int32 (every width is <= 32 bits); the arithmetic runs
in int64, where ``I_decayed + acc`` and ``V + I`` cannot overflow (bounds in ``_check_bounds``),
and the overflow policy is applied before the value is stored.

Thread count: blocks of images run side by side on ``numba.get_num_threads()`` threads (the
kernel releases the GIL); call ``numba.set_num_threads`` yourself.
"""

from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from . import _kernel_cache  # noqa: F401  (stamps the cached kernels below with every kernel file)
from .datapath import OVERFLOW_CODES, TIE_CODES, DatapathConfig
from .errors import ConfigError
from .weight_image import WeightImage, weight_dtype

_WRAP = OVERFLOW_CODES["wrap"]
_LOWEST_INDEX = TIE_CODES["lowest_index"]


def steps_to_decision(first_output_step: np.ndarray, max_steps: int) -> np.ndarray:
    """``D + 1`` per image, ``max_steps`` where there is no decision (``D`` = -1): int32."""
    d = np.asarray(first_output_step)
    return np.where(d >= 0, d + 1, max_steps).astype(np.int32)


def encode_input_steps(spec: DatapathConfig, images_uint8: np.ndarray, encoding=None) -> np.ndarray:
    """Input spike step per pixel (feature code), int32 ``(n, n_pixels)``, -1 = never.

    ``encoding`` (an ``InputEncoding``, e.g. ``image.input_encoding``) maps each code through its
    ``step_table(spec)``; None is the binary encoding of the spec: ``pixel > spec.input_threshold``
    spikes at step 0, a dark pixel at ``spec.dark_input_step``, or never (-1) when that is -1.
    """
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (0..255), got dtype {images.dtype}")
    if images.ndim < 2:
        raise ConfigError(f"images must have shape (n, pixels...), got {images.shape}")
    flat = images.reshape(len(images), -1)
    if encoding is not None and encoding.kind != "binary":
        return encoding.step_table(spec)[flat]
    dark = np.int32(spec.dark_input_step)
    return np.where(flat > spec.input_threshold, np.int32(0), dark).astype(np.int32)


@dataclass(frozen=True, eq=False)
class EmulationResult:
    """Per-image outcome and counters of one emulation run (all arrays have ``n`` rows).

    With ``D`` = first_output_step, or ``max_steps - 1`` when there is no decision, every
    counter counts the arrivals processed in steps ``0 .. D``:

    predicted: int32, winning output neuron, -1 = no decision.
    first_output_step: int32, step of the first output spike, -1 = none.
    steps_to_decision: int32, ``D + 1`` (``max_steps`` when there is no decision).
    tie: bool, more than one output neuron fired at the decision step.
    input_spike_steps: int32 ``(n, n_in)``, the encoded input (-1 = never).
    spike_steps: per layer int32 ``(n, n_post)``: step at which each neuron fired, -1 = did not
        fire in the steps run (``0 .. D + steps_after_decision`` with early termination, all
        steps with full_raster).
    rows_read: int32 ``(n, n_layers)``: weight rows read per layer, bias row excluded. Layer 0:
        input spikes with step ``<= D``; layer k: layer k-1 spikes with step ``<= D - 1``.
    synaptic_additions: int64, ``sum_k (rows_read[k] + 1) * n_post[k]`` (bias row included).
    """

    predicted: np.ndarray
    first_output_step: np.ndarray
    steps_to_decision: np.ndarray
    tie: np.ndarray
    input_spike_steps: np.ndarray
    spike_steps: tuple[np.ndarray, ...]
    rows_read: np.ndarray
    synaptic_additions: np.ndarray
    max_steps: int
    full_raster: bool
    steps_after_decision: int = 0

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

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def topology(self) -> tuple[int, ...]:
        return (self.input_spike_steps.shape[1], *tuple(s.shape[1] for s in self.spike_steps))

    def take(self, indices) -> EmulationResult:
        """The results of the images ``indices`` (an int array or a slice), in that order."""
        pick = (lambda a: a[indices]) if isinstance(indices, slice) else (lambda a: a[np.asarray(indices)])
        per_image = {name: pick(getattr(self, name)) for name in self.FIELDS if name != "spike_steps"}
        return dataclasses.replace(self, **per_image, spike_steps=tuple(pick(s) for s in self.spike_steps))

    @property
    def input_spikes_delivered(self) -> np.ndarray:
        """Input spikes whose weight row was read before or at the decision step."""
        return self.rows_read[:, 0]

    @property
    def hidden_spikes_delivered(self) -> np.ndarray:
        """``(n, n_hidden_layers)``: hidden spikes delivered to the next layer by the decision."""
        return self.rows_read[:, 1:]

    @property
    def rows_read_fraction(self) -> np.ndarray:
        """``rows_read / n_pre`` per layer, float ``(n, n_layers)``."""
        return self.rows_read / np.asarray(self.topology[:-1], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Kernels


@numba.njit(cache=True, inline="always")
def _overflow(x, lo, hi, wrap):
    """Saturate to [lo, hi] or wrap two's complement into the same range (x is int64)."""
    if wrap:
        return ((x - lo) & (hi - lo)) + lo
    return min(max(x, lo), hi)


@numba.njit(cache=True, inline="always")
def _add_row(acc_k, row, first):
    if first:
        for j in range(acc_k.shape[0]):
            acc_k[j] = row[j]
    else:
        for j in range(acc_k.shape[0]):
            acc_k[j] += row[j]


# int8 weight rows are summed in int16 first, up to INT16_EXACT_ROWS rows at a time: int16
# arithmetic is arithmetic modulo 2**16, and the true sum of at most 256 values in [-128, 127]
# lies in [-32768, 32512], inside int16's range, so the int16 result is that sum exactly
# (whatever the intermediate values). A wider accumulator then takes one add per block.
INT16_EXACT_ROWS = 256


@numba.njit(cache=True)
def _add_rows(acc_k, w_flat, wbase, rows, first, row_sums):
    """acc_k (+)= the sum of the weight rows ``rows`` (each ``acc_k.shape[0]`` wide, from
    ``wbase``). Integer sums, so the grouping is free. Four int8 rows or more (``row_sums``,
    int16 scratch at least as wide, is then given) are summed in ``row_sums``, four per pass, in blocks
    of at most INT16_EXACT_ROWS rows, each block added to ``acc_k`` at once."""
    n = acc_k.shape[0]
    n_rows = rows.shape[0]
    if row_sums.shape[0] >= n and n_rows >= 4:
        q = 0
        while q < n_rows:
            end = min(n_rows, q + INT16_EXACT_ROWS)
            b0 = wbase + rows[q] * n
            row = w_flat[b0 : b0 + n]
            for j in range(n):
                row_sums[j] = row[j]
            q += 1
            while q + 4 <= end:
                r0 = w_flat[wbase + rows[q] * n : wbase + rows[q] * n + n]
                r1 = w_flat[wbase + rows[q + 1] * n : wbase + rows[q + 1] * n + n]
                r2 = w_flat[wbase + rows[q + 2] * n : wbase + rows[q + 2] * n + n]
                r3 = w_flat[wbase + rows[q + 3] * n : wbase + rows[q + 3] * n + n]
                for j in range(n):
                    row_sums[j] += (np.int16(r0[j]) + np.int16(r1[j])) + (np.int16(r2[j]) + np.int16(r3[j]))
                q += 4
            while q < end:
                b0 = wbase + rows[q] * n
                row = w_flat[b0 : b0 + n]
                for j in range(n):
                    row_sums[j] += row[j]
                q += 1
            _add_row(acc_k, row_sums[:n], first)
            first = False
        return
    for q in range(n_rows):
        r0 = wbase + rows[q] * n
        _add_row(acc_k, w_flat[r0 : r0 + n], first)
        first = False


# The first layer in closed form. With every input spike at step 0 and a saturating membrane, a
# first-layer neuron sees one arrival, I_0 = ovf_I(A << current_frac_bits) with A its summed
# row, and from then on I_n = I_{n-1} - (I_{n-1} >> time_shift) >= 0, V_n = min(S_n, V_max) with
# S_n = I_0 + ... + I_n. It fires at the first n with S_n >= threshold (the threshold fits the
# membrane), never if I_0 <= 0. S_n grows with I_0 and with n, so "fires by step n" is
# "I_0 >= T_n" for a non-increasing table T over the steps: a neuron's fire step is a search of
# T for its I_0, with no time steps. ``first_layer_fire_table`` builds T; ``run_image`` takes
# the closed form for an image when it is given a table and every input arrives at step 0 (or
# never), and steps the layers above as usual.

# Longest run the table is built for (its cost grows with the square of the steps).
FIRE_TABLE_MAX_STEPS = 4096
_NEVER_FIRES = np.iinfo(np.int64).max


@numba.njit(cache=True)
def _reaches(i0, n, time_shift, threshold):
    """S_n = I_0 + ... + I_n >= threshold, with I_k = I_{k-1} - (I_{k-1} >> time_shift)."""
    i = i0
    total = 0
    for _ in range(n + 1):
        total += i
        if total >= threshold:
            return True
        i -= i >> time_shift
    return False


@numba.njit(cache=True)
def _fire_table(time_shift, cur_max, threshold, n_steps):
    """T_n = the smallest I_0 in 1..cur_max that fires by step n, for n < n_steps (none: never)."""
    table = np.empty(n_steps, np.int64)
    hi = cur_max  # T_n <= T_{n-1}: search below the previous entry
    found = False
    for n in range(n_steps):
        if not _reaches(hi, n, time_shift, threshold):
            table[n] = _NEVER_FIRES  # only until the largest I_0 first fires
            continue
        found = True
        # Gallop down from hi (which fires by n) to a value that does not, then bisect.
        step = 1
        good = hi
        bad = 0  # I_0 = 0 never fires
        while True:
            x = good - step
            if x <= 0:
                break
            if _reaches(x, n, time_shift, threshold):
                good = x
                step *= 2
            else:
                bad = x
                break
        while good - bad > 1:
            mid = (good + bad) // 2
            if _reaches(mid, n, time_shift, threshold):
                good = mid
            else:
                bad = mid
        table[n] = good
        hi = good
    if not found:
        table[:] = _NEVER_FIRES
    return table


def first_layer_fire_table(spec: DatapathConfig, threshold_lsb: int) -> np.ndarray:
    """The closed-form first layer's table T (int64, one entry per step), or an empty array when
    the spec does not allow it (a wrapping membrane, or more than FIRE_TABLE_MAX_STEPS steps)."""
    if spec.membrane_overflow_code == _WRAP or spec.max_steps > FIRE_TABLE_MAX_STEPS:
        return np.zeros(0, np.int64)
    return _fire_table(spec.time_shift, spec.current_max, int(threshold_lsb), spec.max_steps)


@numba.njit(cache=True, inline="always")
def _fire_step(table, i0):
    """First n with table[n] <= i0 (table non-increasing), -1 if none. Branch-free bisection:
    the entries > i0 are a prefix, and their count is the answer."""
    n = table.shape[0]
    if n == 0 or i0 < table[n - 1]:
        return -1
    base = 0
    size = n
    while size > 1:
        half = size >> 1
        base += half * np.int64(table[base + half - 1] > i0)
        size -= half
    return base


@numba.njit(cache=True, inline="always")
def _popcount64(x):
    """Set bits of a uint64 (SWAR)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True)
def _fire_steps(table, acc_0, frac_bits, cur_lo, cur_hi, cur_wrap, flags, i0s, fired, steps):
    """The first-layer neurons that fire, ``fired[:m]`` in increasing order, and their fire
    steps ``steps[:m]`` = ``_fire_step(table, I_0)``, I_0 = ovf_I(acc_0[j] << frac_bits);
    returns m. A neuron fires at all iff I_0 >= the table's last entry and I_0 > 0: one
    branch-free pass sets a byte flag per neuron (``flags``: uint8 scratch, contiguous from
    its start, at least len(acc_0) rounded up to 8), the flags are read as 64-bit words (8
    silent neurons skipped at once), then the firing neurons' bisections run in lockstep, one
    pass over them per halving, so their table reads overlap. ``i0s``, ``fired``, ``steps``:
    int64 scratch of len(acc_0)."""
    nh = acc_0.shape[0]
    n = table.shape[0]
    if n == 0:
        return 0
    last = table[n - 1]
    n_words = (nh + 7) // 8
    if not cur_wrap and 0 < last <= cur_hi:
        # Saturation is monotone: I_0 >= last > 0 iff acc << frac_bits >= last, i.e. iff
        # acc >= ceil(last / 2**frac_bits), one compare in the accumulator's own width.
        acc_min = (last + (np.int64(1) << frac_bits) - 1) >> frac_bits
        for j in range(nh):
            flags[j] = acc_0[j] >= acc_min
    else:
        for j in range(nh):
            i0 = _overflow(np.int64(acc_0[j]) << frac_bits, cur_lo, cur_hi, cur_wrap)
            flags[j] = (i0 >= last) & (i0 > 0)
    for j in range(nh, 8 * n_words):
        flags[j] = 0
    words = flags.view(np.uint64)
    m = 0
    for wi in range(n_words):
        word = words[wi]
        while word != 0:  # one pass per set flag: its byte is the count of zero bits below it, / 8
            j = wi * 8 + (np.int64(trailing_zeros(word)) >> 3)
            word &= word - np.uint64(1)
            fired[m] = j
            i0s[m] = _overflow(np.int64(acc_0[j]) << frac_bits, cur_lo, cur_hi, cur_wrap)
            steps[m] = 0
            m += 1
    size = n
    while size > 1:
        half = size >> 1
        for q in range(m):
            steps[q] += half * np.int64(table[steps[q] + half - 1] > i0s[q])
        size -= half
    return m


@numba.njit(cache=True)
def _bucket_by_step(fired, steps, m, bucket_off, bucket):
    """Counting sort of the ``m`` neurons ``fired`` by their ``steps``: the neurons of step f
    are ``bucket[bucket_off[f] : bucket_off[f + 1]]``, in the order given, for f = 0 .. n_b -
    1; returns n_b = the last step + 1 (0: none). ``bucket_off``: at least n_b + 1 long."""
    last_f = -1
    for q in range(m):
        last_f = max(last_f, steps[q])
    n_b = last_f + 1
    bucket_off[: n_b + 1] = 0
    for q in range(m):
        bucket_off[steps[q] + 1] += 1
    for f in range(n_b):
        bucket_off[f + 1] += bucket_off[f]
    for q in range(m):
        f = steps[q]
        bucket[bucket_off[f]] = fired[q]
        bucket_off[f] += 1
    for f in range(n_b, 0, -1):
        bucket_off[f] = bucket_off[f - 1]
    bucket_off[0] = 0
    return n_b


@numba.njit(cache=True)
def make_scratch(n_in, n_post, neuron_off, max_steps, acc_proto, w_flat):
    """Working memory of ``run_image`` for one network, reusable from image to image."""
    n_layers = n_post.shape[0]
    total = neuron_off[n_layers]
    n_flags = 0
    for k in range(n_layers):
        n_flags += (n_post[k] + 7) // 8 * 8
    return (
        np.empty(n_in, np.int64),  # arrival rows
        np.empty(n_in, np.int64),  # arrival steps
        np.empty(n_flags, np.uint8),  # crossing flags, whole 64-bit words per layer
        np.empty(total, np.int32),  # current
        np.empty(total, np.int32),  # membrane
        np.empty(total, acc_proto.dtype),  # accumulator
        np.empty(total, np.int64),  # threshold per neuron
        np.empty(total, np.int64),  # per layer: neurons that fired in the latest step
        np.empty(max_steps + 1, np.int64),  # closed form: first-layer spikes per step (offsets)
        np.empty(n_post[0], np.int64),  # closed form: first-layer neurons by fire step
        np.empty(n_post.max() if w_flat.itemsize == 1 else 0, np.int16),  # _add_rows
        np.empty((4, n_post[n_layers - 1]), np.int64),  # closed two-layer path: output I, V, thr, flag
    )


@numba.njit(cache=True)
def _two_layer_closed(
    w_flat,
    w_off,
    n_pre,
    n_post,
    thresholds,
    datapath,
    steps_after_decision,
    fire_table,
    arr_idx,
    n_arr,
    scratch,
    spk,
    rows_read_out,
):
    """A two-layer network whose inputs all arrive at step 0 (``n_arr`` rows in ``arr_idx``):
    the first layer in closed form (summed rows, fire step from ``fire_table``, neurons
    bucketed by fire step), then the output layer, all its neurons in lockstep (one branch-free
    pass per step, the stepped path's arithmetic), reading at step f + 1 the rows of the hidden
    spikes of step f. It stops after step min(D + steps_after_decision, max_steps - 1), D the
    first output spike; the hidden spikes up to there are written. A neuron's registers do not
    depend on another's, so every spike is the stepped path's. Returns (predicted, decision,
    tie) and writes ``spk`` (pre-filled with -1) and ``rows_read_out``."""
    time_shift, frac_bits, cur_lo, cur_hi, cur_wrap, mem_lo, mem_hi, mem_wrap, tie_lowest, max_steps = datapath
    acc = scratch[5]
    fstep = scratch[6]
    bucket_off = scratch[8]
    bucket = scratch[9]
    pair_sums = scratch[10]
    lanes = scratch[11]
    nh = n_post[0]
    no = n_post[1]

    # Hidden layer: I_0 = ovf_I(A << frac) per neuron, its fire step from the table.
    acc_0 = acc[:nh]
    r0 = w_off[0] + n_pre[0] * nh
    _add_row(acc_0, w_flat[r0 : r0 + nh], True)
    _add_rows(acc_0, w_flat, w_off[0], arr_idx[:n_arr], np.bool_(False), pair_sums)
    # Its firing neurons bucketed by fire step 0 .. n_b - 1 (increasing j within a step); the
    # bucket is the i0 scratch of _fire_steps, read before the sort writes it.
    m = _fire_steps(fire_table, acc_0, frac_bits, cur_lo, cur_hi, cur_wrap, scratch[2], bucket, scratch[7], fstep)
    n_b = _bucket_by_step(scratch[7], fstep, m, bucket_off, bucket)
    last_f = n_b - 1

    # Output layer, step by step, every neuron at once.
    wbase = w_off[1]
    ob = nh  # the output neurons' offset in spk
    acc_1 = acc[nh : nh + no]
    r1 = wbase + n_pre[1] * no
    _add_row(acc_1, w_flat[r1 : r1 + no], True)  # step 0: the bias row alone
    cur = lanes[0]
    mem = lanes[1]
    thr = lanes[2]
    flag = lanes[3]
    never = np.int64(1) << 40
    for j in range(no):
        cur[j] = 0
        mem[j] = 0
        thr[j] = thresholds[1]
    stop = max_steps - 1
    decision = -1
    predicted = -1
    tie = False
    fired = 0
    have = True
    n = 0
    while True:
        crossings = 0
        if have:
            for j in range(no):
                c = cur[j]
                c = c - (c >> time_shift)
                c = _overflow(c + (np.int64(acc_1[j]) << frac_bits), cur_lo, cur_hi, cur_wrap)
                v = _overflow(mem[j] + c, mem_lo, mem_hi, mem_wrap)
                cur[j] = c
                mem[j] = v
                f = np.int64(v >= thr[j])
                flag[j] = f
                crossings += f
        else:
            for j in range(no):
                c = cur[j]
                c = c - (c >> time_shift)
                v = _overflow(mem[j] + c, mem_lo, mem_hi, mem_wrap)
                cur[j] = c
                mem[j] = v
                f = np.int64(v >= thr[j])
                flag[j] = f
                crossings += f
        if crossings > 0:
            n_at = 0
            best = -1
            for j in range(no):
                if flag[j]:
                    spk[ob + j] = n
                    thr[j] = never
                    if n_at == 0 or (not tie_lowest and mem[j] > mem[best]):
                        best = j
                    n_at += 1
            fired += n_at
            if decision < 0:
                decision = n
                predicted = best
                tie = n_at > 1
                stop = min(n + steps_after_decision, max_steps - 1)
        if n >= stop or fired == no:
            break
        n += 1
        have = False
        if n <= n_b:  # arrivals at n: the hidden spikes of step n - 1
            q0 = bucket_off[n - 1]
            q1 = bucket_off[n]
            if q1 > q0:
                _add_rows(acc_1, w_flat, wbase, bucket[q0:q1], np.bool_(True), pair_sums)
                have = True

    # The hidden spikes of the steps run, and the rows read by the decision (or the last step).
    for f in range(min(stop, last_f) + 1):
        for q in range(bucket_off[f], bucket_off[f + 1]):
            spk[bucket[q]] = f
    last = decision if decision >= 0 else max_steps - 1
    rows_read_out[0] = n_arr  # every arrival is at step 0 <= last
    rows_read_out[1] = bucket_off[min(last, n_b)]  # hidden spikes of steps < last
    return predicted, decision, tie


@numba.njit(cache=True)
def run_image(
    in_steps,
    w_flat,
    w_off,
    n_pre,
    n_post,
    neuron_off,
    thresholds,
    datapath,
    steps_after_decision,
    acc_proto,
    fire_table,
    scratch,
    spk,
    rows_read_out,
):
    """Run one image; writes spike steps into ``spk`` (pre-filled with -1) and rows read.

    Runs steps ``0 .. min(D + steps_after_decision, max_steps - 1)`` (D = decision step; all
    steps without a decision). ``fire_table``: ``first_layer_fire_table`` of the spec and the
    first layer's threshold, or empty (always step every layer). ``scratch``: ``make_scratch``.
    ``datapath``: ``datapath_constants(spec)`` (or the same values in a tuple).
    Returns (predicted, first_output_step, tie).
    """
    time_shift, frac_bits, cur_lo, cur_hi, cur_wrap, mem_lo, mem_hi, mem_wrap, tie_lowest, max_steps = datapath
    n_layers = n_pre.shape[0]
    n_in = in_steps.shape[0]
    arr_idx, arr_step, flags, cur, mem, acc, thr, new_idx, bucket_off, bucket, pair_sums, _lanes = scratch

    # Input spikes that arrive within the run, ordered by step (order within a step is free).
    # Branch-free compaction: slot n_arr is written every time and kept when the input arrives.
    n_arr = np.int64(0)  # not a literal 0: that would compile _two_layer_closed once more
    latest = np.int64(-1)
    in_order = True
    for j in range(n_in):
        s = np.int64(in_steps[j])
        arrives = (s >= 0) & (s < max_steps)
        arr_idx[n_arr] = j
        arr_step[n_arr] = s
        in_order &= (not arrives) | (s >= latest)
        latest = max(latest, s if arrives else np.int64(-1))
        n_arr += np.int64(arrives)
    closed = fire_table.shape[0] == max_steps and n_layers >= 2 and latest <= 0
    if closed and n_layers == 2:
        return _two_layer_closed(
            w_flat,
            w_off,
            n_pre,
            n_post,
            thresholds,
            datapath,
            steps_after_decision,
            fire_table,
            arr_idx,
            n_arr,
            scratch,
            spk,
            rows_read_out,
        )
    if not in_order:
        order = np.argsort(arr_step[:n_arr], kind="mergesort")
        idx_sorted = arr_idx[:n_arr][order]
        step_sorted = arr_step[:n_arr][order]
        arr_idx[:n_arr] = idx_sorted
        arr_step[:n_arr] = step_sorted
    ptr = 0

    # Per-layer views into flat scratch. Crossing flags are bytes, padded to whole 64-bit
    # words per layer so that the search for fired neurons can skip 8 silent neurons at once.
    flag_off = np.zeros(n_layers + 1, np.int64)
    for k in range(n_layers):
        flag_off[k + 1] = flag_off[k] + (n_post[k] + 7) // 8 * 8
    flags[:] = 0
    flag_words = flags.view(np.uint64)
    cur[:] = 0
    mem[:] = 0
    # Threshold per neuron; a fired neuron's is raised out of reach, so "V >= thr" alone says
    # "fires now" (its V and I keep being updated but are never looked at again).
    for k in range(n_layers):
        for j in range(neuron_off[k], neuron_off[k + 1]):
            thr[j] = thresholds[k]
    never = np.int64(1) << 40
    new_cnt = np.zeros(n_layers, np.int64)
    fired_cnt = np.zeros(n_layers, np.int64)

    if closed:
        # The first layer at once: its summed rows, then each neuron's fire step from the table,
        # bucketed by step (neurons in increasing order within a step).
        npost = n_post[0]
        acc_0 = acc[:npost]
        r0 = w_off[0] + n_pre[0] * npost
        _add_row(acc_0, w_flat[r0 : r0 + npost], True)
        _add_rows(acc_0, w_flat, w_off[0], arr_idx[:n_arr], np.bool_(False), pair_sums)
        # Its firing neurons bucketed by fire step (increasing j within a step); steps past the
        # last bucket have none. flags, new_idx and thr of layer 0 are free scratch here.
        m = _fire_steps(fire_table, acc_0, frac_bits, cur_lo, cur_hi, cur_wrap, flags, bucket, new_idx, thr)
        n_b = _bucket_by_step(new_idx, thr, m, bucket_off, bucket)
        bucket_off[n_b + 1 :] = bucket_off[n_b]

    out = n_layers - 1
    predicted = -1
    decision = -1
    tie = False
    for n in range(max_steps):
        # Layer k consumes layer k-1's spikes of step n-1, so go from the last layer down:
        # layer k-1 then overwrites its new-spike list with the spikes of step n.
        for k in range(n_layers - 1, -1, -1):
            npost = n_post[k]
            base = neuron_off[k]
            if k == 0 and closed:
                nc = 0
                for q in range(bucket_off[n], bucket_off[n + 1]):
                    j = bucket[q]
                    spk[j] = n
                    new_idx[nc] = j
                    nc += 1
                new_cnt[0] = nc
                continue
            if fired_cnt[k] == npost:
                new_cnt[k] = 0
                continue
            wbase = w_off[k]
            cur_k = cur[base : base + npost]
            mem_k = mem[base : base + npost]
            spk_k = spk[base : base + npost]
            acc_k = acc[base : base + npost]
            thr_k = thr[base : base + npost]
            flag_k = flags[flag_off[k] : flag_off[k] + npost]

            have = False
            if n == 0:
                r0 = wbase + n_pre[k] * npost
                _add_row(acc_k, w_flat[r0 : r0 + npost], True)
                have = True
            if k == 0:
                q0 = ptr
                while ptr < n_arr and arr_step[ptr] == n:
                    ptr += 1
                if ptr > q0:
                    _add_rows(acc_k, w_flat, wbase, arr_idx[q0:ptr], not have, pair_sums)
                    have = True
            elif new_cnt[k - 1] > 0:
                pbase = neuron_off[k - 1]
                _add_rows(acc_k, w_flat, wbase, new_idx[pbase : pbase + new_cnt[k - 1]], not have, pair_sums)
                have = True

            crossings = 0
            for j in range(npost):
                c = np.int64(cur_k[j])
                c = c - (c >> time_shift)
                if have:
                    c = _overflow(c + (np.int64(acc_k[j]) << frac_bits), cur_lo, cur_hi, cur_wrap)
                v = _overflow(np.int64(mem_k[j]) + c, mem_lo, mem_hi, mem_wrap)
                cur_k[j] = c
                mem_k[j] = v
                f = v >= thr_k[j]
                flag_k[j] = f
                crossings += f

            nc = 0
            if crossings > 0:
                w0 = flag_off[k] // 8
                for wi in range((npost + 7) // 8):
                    word = flag_words[w0 + wi]
                    if word != 0:
                        for b in range(8):
                            if (word >> np.uint64(8 * b)) & np.uint64(1):
                                j = wi * 8 + b
                                spk_k[j] = n
                                thr_k[j] = never
                                new_idx[base + nc] = j
                                nc += 1
                fired_cnt[k] += nc
            new_cnt[k] = nc

            if k == out and nc > 0 and decision < 0:
                decision = n
                tie = nc > 1
                best = new_idx[base]
                if not tie_lowest:
                    for qq in range(1, nc):
                        j = new_idx[base + qq]
                        if mem_k[j] > mem_k[best]:
                            best = j
                predicted = best
        if decision >= 0 and n >= decision + steps_after_decision:
            break

    last = decision if decision >= 0 else max_steps - 1
    cnt = 0
    for j in range(n_in):
        if 0 <= in_steps[j] <= last:
            cnt += 1
    rows_read_out[0] = cnt
    for k in range(1, n_layers):
        pbase = neuron_off[k - 1]
        cnt = 0
        for j in range(n_post[k - 1]):
            s = spk[pbase + j]
            if s >= 0 and s + 1 <= last:
                cnt += 1
        rows_read_out[k] = cnt
    return predicted, decision, tie


@numba.njit(cache=True, nogil=True)
def _emulate_block(
    start,
    stop,
    input_steps,
    w_flat,
    w_off,
    n_pre,
    n_post,
    neuron_off,
    thresholds,
    datapath,
    steps_after_decision,
    acc_proto,
    fire_table,
    spike_steps,
    predicted,
    first_output_step,
    tie,
    rows_read,
    images_u8,
    code_steps,
):
    """Images ``start .. stop - 1`` of ``input_steps`` through ``run_image``, one after the
    other, without the GIL (``emulate`` runs blocks side by side on threads). With
    ``images_u8`` non-empty the input is encoded here, in the same pass:
    ``input_steps[i, j] = code_steps[images_u8[i, j]]``. Writes every output row whole
    (``spike_steps`` need not be pre-filled)."""
    n_in = input_steps.shape[1]
    encode = images_u8.shape[0] > 0
    scratch = make_scratch(n_in, n_post, neuron_off, datapath[9], acc_proto, w_flat)
    for i in range(start, stop):
        if encode:
            for j in range(n_in):
                input_steps[i, j] = code_steps[images_u8[i, j]]
        spike_steps[i, :] = -1
        p, d, t = run_image(
            input_steps[i],
            w_flat,
            w_off,
            n_pre,
            n_post,
            neuron_off,
            thresholds,
            datapath,
            steps_after_decision,
            acc_proto,
            fire_table,
            scratch,
            spike_steps[i],
            rows_read[i],
        )
        predicted[i] = p
        first_output_step[i] = d
        tie[i] = t


def _run_blocks(kernel, n: int, args: tuple) -> None:
    """``kernel(start, stop, *args)`` over ``n`` images in ``8 * threads`` blocks (for balance),
    on ``numba.get_num_threads()`` threads of a pool: the kernel is serial and releases the GIL,
    so no parallel (parfor) version has to be compiled for every argument type."""
    threads = numba.get_num_threads()
    if threads <= 1 or n <= 1:
        kernel(0, n, *args)
        return
    n_blocks = min(n, 8 * threads)
    width = (n + n_blocks - 1) // n_blocks
    pool = _block_pool(threads)
    for future in [pool.submit(kernel, s, min(n, s + width), *args) for s in range(0, n, width)]:
        future.result()


@functools.lru_cache(maxsize=4)
def _block_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, kept for the next call (a small batch would otherwise pay
    for starting threads)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pcl-emulate")


# ----------------------------------------------------------------------------------------------
# Python API


@dataclass(frozen=True)
class PackedImage:
    w_flat: np.ndarray
    w_off: np.ndarray
    n_pre: np.ndarray
    n_post: np.ndarray
    neuron_off: np.ndarray
    thresholds: np.ndarray
    acc_proto: np.ndarray
    fire_table: np.ndarray  # first_layer_fire_table (empty: step every layer)


def datapath_constants(spec: DatapathConfig) -> tuple[int, ...]:
    """The spec's datapath as the kernels take it, one tuple of ints: ``(time_shift,
    current_frac_bits, current_min, current_max, current wraps, membrane_min, membrane_max,
    membrane wraps, tie rule is lowest_index, max_steps)`` (flags 0/1)."""
    return (
        int(spec.time_shift),
        int(spec.current_frac_bits),
        int(spec.current_min),
        int(spec.current_max),
        int(spec.current_overflow_code == _WRAP),
        int(spec.membrane_min),
        int(spec.membrane_max),
        int(spec.membrane_overflow_code == _WRAP),
        int(spec.tie_rule_code == _LOWEST_INDEX),
        int(spec.max_steps),
    )


def _check_bounds(spec: DatapathConfig, n_pre: np.ndarray) -> np.dtype:
    """Choose the accumulator dtype and check the int64 intermediates cannot overflow.

    acc holds the *unshifted* weight sum of one step: at most (n_pre + 1) rows of |w| <= 2**15.
    In int64: ``I_decayed + (acc << frac)`` <= 2**31 + 2**(accumulator_bits - 1) and
    ``V + I`` <= 2**32, far below 2**63 for any n_pre < 2**40.
    """
    n_rows_max = int(n_pre.max()) + 1
    if spec.accumulator_bits(n_rows_max) > 60:
        raise ConfigError(f"layer with {n_rows_max} rows is too wide for the 64-bit accumulator")
    raw_bits = spec.weight_bits + (n_rows_max - 1).bit_length()  # signed width of the raw sum
    return np.dtype(np.int32) if raw_bits <= 32 else np.dtype(np.int64)


def pack_image(image: WeightImage) -> PackedImage:
    layers = image.layers
    n_pre = np.array([layer.weights_lsb.shape[0] - 1 for layer in layers], dtype=np.int64)
    n_post = np.array([layer.weights_lsb.shape[1] for layer in layers], dtype=np.int64)
    sizes = (n_pre + 1) * n_post
    w_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    # int8 rows for weight_bits <= 8 halve the memory traffic of the row fetches.
    w_dtype = weight_dtype(image.spec)
    w_flat = np.concatenate([np.ascontiguousarray(layer.weights_lsb).astype(w_dtype).ravel() for layer in layers])
    neuron_off = np.concatenate([[0], np.cumsum(n_post)]).astype(np.int64)
    thresholds = image.thresholds_lsb.astype(np.int64)
    acc_dtype = _check_bounds(image.spec, n_pre)
    table = _cached_fire_table(image.spec, int(thresholds[0])) if len(layers) >= 2 else _NO_FIRE_TABLE
    if table.flags.writeable:
        # Numba compiles the kernels once per array type: a writable table would be a second.
        table = table.view()
        table.flags.writeable = False
    return PackedImage(w_flat, w_off, n_pre, n_post, neuron_off, thresholds, np.zeros(0, acc_dtype), table)


# Read-only, as pack_image hands every table to the kernels.
_NO_FIRE_TABLE = np.zeros(0, np.int64)
_NO_FIRE_TABLE.flags.writeable = False


@functools.lru_cache(maxsize=64)
def _cached_fire_table(spec: DatapathConfig, threshold_lsb: int) -> np.ndarray:
    table = first_layer_fire_table(spec, threshold_lsb)
    table.flags.writeable = False
    return table


def _flat_uint8(image: WeightImage, images_uint8) -> np.ndarray:
    """The images as a C-contiguous uint8 ``(n, n_in)`` array, checked as encode_input_steps does."""
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (0..255), got dtype {images.dtype}")
    if images.ndim < 2:
        raise ConfigError(f"images must have shape (n, pixels...), got {images.shape}")
    # The pixel count from the shape, not -1: numpy cannot infer it for an empty batch.
    flat = np.ascontiguousarray(images.reshape(len(images), int(np.prod(images.shape[1:]))))
    n_in = image.topology[0]
    if flat.shape[1] != n_in:
        raise ConfigError(f"images have {flat.shape[1]} pixels, the weight image expects {n_in} inputs")
    return flat


def _code_steps(image: WeightImage) -> np.ndarray:
    """Spike step of every pixel code 0..255 (int32, -1 = never), as encode_input_steps maps them."""
    codes = np.arange(256, dtype=np.uint8)[None, :]
    return np.ascontiguousarray(encode_input_steps(image.spec, codes, image.input_encoding)[0], dtype=np.int32)


def input_steps_for(image: WeightImage, images_uint8, input_spike_steps) -> np.ndarray:
    if (images_uint8 is None) == (input_spike_steps is None):
        raise ConfigError("emulate: pass exactly one of images_uint8 and input_spike_steps")
    n_in = image.topology[0]
    if images_uint8 is not None:
        steps = encode_input_steps(image.spec, images_uint8, image.input_encoding)
        if steps.shape[1] != n_in:
            raise ConfigError(f"images have {steps.shape[1]} pixels, the weight image expects {n_in} inputs")
        return steps
    steps = np.asarray(input_spike_steps)
    if not np.issubdtype(steps.dtype, np.integer):
        raise ConfigError(f"input_spike_steps must be integers, got dtype {steps.dtype}")
    if steps.ndim != 2 or steps.shape[1] != n_in:
        raise ConfigError(f"input_spike_steps must have shape (n, {n_in}), got {steps.shape}")
    if steps.size and (steps.min() < -1 or steps.max() > np.iinfo(np.int32).max):
        raise ConfigError("input_spike_steps must be -1 (never) or a step >= 0 that fits int32")
    return np.ascontiguousarray(steps, dtype=np.int32)


def emulate(
    image: WeightImage,
    images_uint8: np.ndarray | None = None,
    *,
    input_spike_steps: np.ndarray | None = None,
    full_raster: bool = False,
    steps_after_decision: int = 0,
) -> EmulationResult:
    """Run the datapath on a batch; give either uint8 images or encoded input spike steps.

    Input spike steps >= ``max_steps`` never arrive. With ``full_raster=False`` each image
    stops ``steps_after_decision`` steps after its decision step (0: right after it; the
    on-chip learning rule looks a few steps further); with ``full_raster=True`` every image
    runs all ``max_steps`` steps. The counters always refer to the decision, so they do not
    depend on either option.
    """
    if not isinstance(image, WeightImage):
        raise ConfigError(f"emulate: expected a WeightImage, got {type(image).__name__}")
    spec = image.spec
    if images_uint8 is not None and input_spike_steps is None:
        # Encoded inside the kernel, image by image, in parallel (the same table lookup).
        images_u8 = _flat_uint8(image, images_uint8)
        code_steps = _code_steps(image)
        steps = np.empty(images_u8.shape, np.int32)
    else:
        steps = input_steps_for(image, images_uint8, input_spike_steps)
        images_u8 = np.zeros((0, steps.shape[1]), np.uint8)
        code_steps = np.zeros(256, np.int32)
    if (
        isinstance(steps_after_decision, bool)
        or not isinstance(steps_after_decision, (int, np.integer))
        or steps_after_decision < 0
    ):
        raise ConfigError(f"steps_after_decision must be an integer >= 0, got {steps_after_decision!r}")
    extra_steps = spec.max_steps if full_raster else min(int(steps_after_decision), spec.max_steps)
    packed = pack_image(image)
    n = steps.shape[0]
    n_layers = len(image.layers)
    total = int(packed.neuron_off[-1])
    spike_steps = np.empty((n, total), dtype=np.int32)
    predicted = np.empty(n, np.int32)
    first_output_step = np.empty(n, np.int32)
    tie = np.empty(n, np.bool_)
    rows_read = np.empty((n, n_layers), np.int32)
    _run_blocks(
        _emulate_block,
        n,
        (
            steps,
            packed.w_flat,
            packed.w_off,
            packed.n_pre,
            packed.n_post,
            packed.neuron_off,
            packed.thresholds,
            datapath_constants(spec),
            extra_steps,
            packed.acc_proto,
            packed.fire_table,
            spike_steps,
            predicted,
            first_output_step,
            tie,
            rows_read,
            images_u8,
            code_steps,
        ),
    )
    synaptic_additions = ((rows_read.astype(np.int64) + 1) * packed.n_post[None, :]).sum(axis=1)
    per_layer = tuple(spike_steps[:, packed.neuron_off[k] : packed.neuron_off[k + 1]] for k in range(n_layers))
    return EmulationResult(
        predicted=predicted,
        first_output_step=first_output_step,
        steps_to_decision=steps_to_decision(first_output_step, spec.max_steps),
        tie=tie,
        input_spike_steps=steps,
        spike_steps=per_layer,
        rows_read=rows_read,
        synaptic_additions=synaptic_additions,
        max_steps=spec.max_steps,
        full_raster=bool(full_raster),
        steps_after_decision=int(extra_steps),
    )


def summarize(result: EmulationResult, labels: np.ndarray) -> dict:
    """Accuracy and decision statistics of an emulation run (plain Python numbers).

    hidden spikes before the decision = hidden spikes delivered (fired at a step < D), summed
    over hidden layers; the *_rows_read_fraction values are means over images of rows read /
    n_pre (hidden: summed over hidden layers); input_spikes_before_decision_fraction = input
    spikes delivered / input spikes that arrive within max_steps, over the whole batch;
    weight_rows_read_fraction_per_layer = mean over images of rows read / n_pre, per layer.
    """
    labels = np.asarray(labels)
    n = len(result)
    if labels.shape != (n,):
        raise ConfigError(f"labels must have shape ({n},), got {labels.shape}")
    if n == 0:
        raise ConfigError("cannot summarize an empty batch")
    topo = result.topology
    hidden = result.hidden_spikes_delivered.sum(axis=1)
    n_hidden_pre = sum(topo[1:-1])
    in_steps = result.input_spike_steps
    arriving = int(((in_steps >= 0) & (in_steps < result.max_steps)).sum())
    delivered = int(result.input_spikes_delivered.sum())
    out = {
        "n": int(n),
        "accuracy": float(np.mean(result.predicted == labels)),
        "no_decision_count": int(np.sum(result.first_output_step < 0)),
        "tie_count": int(np.sum(result.tie)),
        "mean_steps_to_decision": float(np.mean(result.steps_to_decision)),
        "median_steps_to_decision": float(np.median(result.steps_to_decision)),
        "hidden_spikes_before_decision_mean": float(np.mean(hidden)),
        "hidden_spikes_before_decision_median": float(np.median(hidden)),
        "input_weight_rows_read_fraction": float(np.mean(result.input_spikes_delivered / topo[0])),
        "hidden_weight_rows_read_fraction": float(np.mean(hidden / n_hidden_pre)) if n_hidden_pre else 0.0,
        "input_spikes_before_decision_fraction": delivered / arriving if arriving else 0.0,
        "synaptic_additions_mean": float(np.mean(result.synaptic_additions)),
        "weight_rows_read_fraction_per_layer": [float(x) for x in result.rows_read_fraction.mean(axis=0)],
    }
    return out


def evaluate_emulated(image: WeightImage, images_uint8: np.ndarray, labels: np.ndarray) -> dict:
    """Emulate a labelled batch with early termination and return ``summarize``'s statistics."""
    return summarize(emulate(image, images_uint8), labels)
