"""Exact training of the temporal-coding network (z domain, exact gradients, Adam).

Loss per sample, with output spike times ``z_o`` and correct class ``c``:

    L = CE(softmax(-z_o / temperature), c)                      (silent outputs: prob 0)
      + silent_penalty * (1 - A_c)                               (only if output c is silent,
                                                                  i.e. A_c = sum of its arrived
                                                                  weights is <= 1)
      + sparsity * relu(n_soft - sparsity_target)                (hidden spikes before z_c)

with ``n_soft = sum_h sigmoid((z_c - z_h) / sparsity_width)`` over the hidden spikes ``z_h`` of
every hidden layer: a smooth count of the hidden spikes needed for the decision. The batch loss
is the mean of ``L`` plus ``weight_sum_penalty * sum_j relu(1 - sum_i w_ij)`` per layer, a plain
column sum (bias row included) that keeps every neuron able to reach threshold. (A
data-dependent sum over the inputs that actually spike cost accuracy and sparsity in trials;
see BENCHMARKS.md.)

Not part of the loss: the backpropagated gradient w.r.t. each sample's hidden spike times is
clipped to norm ``grad_clip`` (0 = off), and the returned model is an exponential moving average
of the weights (``ema_decay``, 0 = off). Training images are shifted at random by up to
``augment_shift_px`` pixels from epoch ``augment_from_epoch`` on (the first pass sees them as
they are: nothing has been seen twice yet, so there is nothing for the shifts to regularise).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import njit, prange

from . import _kernel_cache, exact  # noqa: F401  (_kernel_cache stamps the cached kernels below with every kernel file)
from .encoding import SpikeEncoding
from .errors import ConfigError
from .evaluate import check_images_and_labels, evaluate_exact
from .network import ExactNetwork
from .progress import Progress, as_progress
from .quantize import SCALE_RULES, fake_quantize, weight_clips

SILENT_LOGIT = -1e4


@dataclass(frozen=True)
class TrainConfig:
    """Options of exact training; the defaults give the documented MNIST result.

    qat_bits: 0 = off; else quantisation-aware training at that weight width: every forward
    pass (and so every gradient) is taken on ``forward_weights``, the weights ``quantize``
    gives at ``qat_bits``, and the gradient is applied to the float weights unchanged
    (straight-through). The model returned is on that grid. ``qat_scale`` sets each layer's
    scale ``c / weight_max``: "mse" (``c`` the clip of least rounding error,
    ``quantize.mse_clip``, re-chosen from the float weights every ``QAT_CLIP_REFRESH_STEPS``
    minibatches and once more for the returned model; larger weights saturate) or "max"
    (``c = max|w|``, as plain ``quantize``; issue #17's first part). Either way the returned
    model's largest weight is ``c``, so ``export``'s plain ``quantize`` gives back its codes.
    """

    hidden: tuple[int, ...] = (800,)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    lr_decay: float = 0.93
    seed: int = 0
    temperature: float = 0.25
    silent_penalty: float = 1.0
    weight_sum_penalty: float = 1.0
    sparsity: float = 0.01
    sparsity_width: float = 0.05
    sparsity_target: float = 30.0
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    augment_shift_px: int = 1
    augment_from_epoch: int = 2
    init_mean: float = 2.0
    init_std_gain: float = 1.0
    first_layer_init_mean: float = 3.0
    first_layer_init_std_gain: float = 0.5
    dtype: str = "float64"
    qat_bits: int = 0
    qat_scale: str = "mse"

    @classmethod
    def typed_options(cls, options: dict | None) -> dict:
        """Text overrides such as {"epochs": "5", "hidden": "400,400"} in each field's type (that of
        its default: a tuple takes comma-separated integers). An unknown field or a value not of
        the field's type is a ConfigError naming it; the values are checked when the config is made."""
        defaults = cls()
        names = [f.name for f in dataclasses.fields(cls)]
        typed = {}
        for name, text in (options or {}).items():
            if name not in names:
                raise ConfigError(f"unknown training field {name!r}; the fields are: {', '.join(names)}")
            default = getattr(defaults, name)
            try:
                if isinstance(default, tuple):
                    typed[name] = tuple(int(v) for v in str(text).split(","))
                elif isinstance(default, int):
                    value = float(text)
                    if not value.is_integer():
                        raise ValueError
                    typed[name] = int(value)
                else:
                    typed[name] = type(default)(text)
            except ValueError:
                kind = "comma-separated integers" if isinstance(default, tuple) else type(default).__name__
                raise ConfigError(f"training field {name} takes {kind}, got {text!r}") from None
        return typed

    def __post_init__(self) -> None:
        def need(cond, msg):
            if not cond:
                raise ConfigError(msg)

        def is_int(value):
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        need(
            isinstance(self.hidden, (tuple, list)) and all(is_int(h) and h > 0 for h in self.hidden),
            f"hidden sizes must be a sequence of positive integers, got {self.hidden!r}",
        )
        need(is_int(self.epochs) and self.epochs >= 0, f"epochs must be an integer >= 0, got {self.epochs!r}")
        need(
            is_int(self.batch_size) and self.batch_size >= 1,
            f"batch size must be an integer >= 1, got {self.batch_size!r}",
        )
        need(is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        need(self.lr > 0 and math.isfinite(self.lr), f"learning rate must be positive, got {self.lr}")
        need(0 < self.lr_decay <= 1, f"lr decay must be in (0, 1], got {self.lr_decay}")
        need(0 <= self.ema_decay < 1, f"ema decay must be in [0, 1), got {self.ema_decay}")
        need(
            self.temperature > 0 and math.isfinite(self.temperature),
            f"temperature must be positive, got {self.temperature}",
        )
        need(math.isfinite(self.init_mean), f"init mean must be finite, got {self.init_mean}")
        need(
            math.isfinite(self.first_layer_init_mean),
            f"first layer init mean must be finite, got {self.first_layer_init_mean}",
        )
        for name in (
            "sparsity",
            "sparsity_target",
            "silent_penalty",
            "weight_sum_penalty",
            "grad_clip",
            "init_std_gain",
            "first_layer_init_std_gain",
        ):
            value = getattr(self, name)
            need(math.isfinite(value) and value >= 0, f"{name.replace('_', ' ')} must be >= 0, got {value}")
        need(self.sparsity_width > 0, f"sparsity width must be positive, got {self.sparsity_width}")
        need(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype}")
        need(
            is_int(self.qat_bits) and (self.qat_bits == 0 or 2 <= self.qat_bits <= 16),
            f"qat bits must be 0 (off) or a weight width in 2..16, got {self.qat_bits!r}",
        )
        need(
            self.qat_scale in SCALE_RULES,
            f"qat scale must be one of {', '.join(SCALE_RULES)}, got {self.qat_scale!r}",
        )
        need(
            is_int(self.augment_shift_px) and 0 <= self.augment_shift_px <= 4,
            f"augment shift must be an integer in 0..4 pixels, got {self.augment_shift_px!r}",
        )
        need(
            is_int(self.augment_from_epoch) and self.augment_from_epoch >= 1,
            f"augment from epoch must be an integer >= 1, got {self.augment_from_epoch!r}",
        )


# The fewest Adam steps a default run takes (issue #14). 30 epochs of batch 32 is 56,250 steps on
# MNIST but ~120 on iris (114 samples), where the model was still underfitting: on a small set the
# default number of epochs grows until the run has this many steps (BENCHMARKS.md, issue #14).
MIN_ADAM_STEPS = 1500


def budget_for(config: TrainConfig, n_samples: int, given=()) -> TrainConfig:
    """``config`` with a training budget of at least ``MIN_ADAM_STEPS`` Adam steps on ``n_samples``.

    epochs = max(epochs, ceil(MIN_ADAM_STEPS / ceil(n_samples / batch_size))), and the per-epoch
    lr decay stretched to keep the run's total decay: ``lr_decay ** (epochs_0 / epochs)``. Only
    defaults adapt: ``epochs`` / ``lr_decay`` named in ``given`` (asked for) or different from
    ``TrainConfig``'s default are kept. A set with enough steps (MNIST) gets ``config`` itself.
    """
    defaults = TrainConfig()
    if "epochs" in given or config.epochs != defaults.epochs or n_samples <= 0:
        return config
    steps_per_epoch = -(-n_samples // config.batch_size)
    epochs = max(config.epochs, -(-MIN_ADAM_STEPS // steps_per_epoch))
    if epochs == config.epochs:
        return config
    asked = "lr_decay" in given or config.lr_decay != defaults.lr_decay
    lr_decay = config.lr_decay if asked else config.lr_decay ** (config.epochs / epochs)
    return dataclasses.replace(config, epochs=epochs, lr_decay=lr_decay)


@dataclass
class TrainHistory:
    """Per-epoch records: loss, train accuracy, test metrics (if a test set was given), seconds."""

    epochs: list[dict] = field(default_factory=list)


def expected_active_inputs(images: np.ndarray, encoding: SpikeEncoding, sample: int = 1000) -> float:
    """Mean number of inputs that spike per image over the first ``sample`` images, plus the
    bias input: the ``a`` that ``init_network`` scales the first layer by."""
    flat = images.reshape(len(images), -1)[:sample]
    return float(np.isfinite(encoding.input_z(flat)).sum(axis=1).mean()) + 1.0


def init_network(topology, config: TrainConfig, encoding: SpikeEncoding, active_inputs: float) -> ExactNetwork:
    """Gaussian init scaled by the expected number ``a`` of spiking inputs per layer.

    w ~ N(mean / a, gain / sqrt(a)): the summed weight ``A`` of the spiking inputs is about
    ``mean`` with spread ``gain``; (``first_layer_init_mean``, ``first_layer_init_std_gain``)
    for the first layer, (``init_mean``, ``init_std_gain``) above it. ``a`` is measured on the
    data for the first layer and taken as half the layer size above it.

    The first layer is special: with the default encoding every input spike arrives at z = 1,
    so a neuron fires at ``z = A / (A - 1)`` with weight gradient ``-1 / (A - 1)^2`` per spiking
    input, both set by ``A`` alone. (3, 0.5) there (issue #2 had (2, 1), as the layers above
    still do) keeps ``A`` away from 1, where neurons are silent (no gradient) or dominate the
    gradient, and starts the output spikes of an image closer together: the first MNIST loss
    is ~3.5 instead of ~10.5, whose gradients, ~20x their later size, Adam's second moment kept
    dividing the steps of a short run by. BENCHMARKS.md, "Short runs", has the measurements.
    """
    rng = np.random.default_rng(config.seed)
    dtype = np.dtype(config.dtype)
    weights = []
    a = max(1.0, active_inputs)
    mean, gain = config.first_layer_init_mean, config.first_layer_init_std_gain
    for n_pre, n_post in itertools.pairwise(topology):
        w = rng.normal(mean / a, gain / math.sqrt(a), size=(n_pre + 1, n_post))
        weights.append(w.astype(dtype))
        a = max(1.0, n_post / 2)
        mean, gain = config.init_mean, config.init_std_gain
    return ExactNetwork(weights, encoding)


def shift_images(images: np.ndarray, rng: np.random.Generator, max_shift: int, shape=(28, 28)) -> np.ndarray:
    """Translate each image by a random integer offset in [-max_shift, max_shift]^2 (zero fill)."""
    n = len(images)
    rows, cols = shape
    imgs = images.reshape(n, rows, cols)
    out = np.zeros_like(imgs)
    dx = rng.integers(-max_shift, max_shift + 1, n)
    dy = rng.integers(-max_shift, max_shift + 1, n)
    for sx in range(-max_shift, max_shift + 1):
        for sy in range(-max_shift, max_shift + 1):
            sel = np.nonzero((dx == sx) & (dy == sy))[0]
            if len(sel) == 0:
                continue
            src = imgs[sel]
            ys = slice(max(sy, 0), rows + min(sy, 0))
            xs = slice(max(sx, 0), cols + min(sx, 0))
            ys_src = slice(max(-sy, 0), rows + min(-sy, 0))
            xs_src = slice(max(-sx, 0), cols + min(-sx, 0))
            out[sel, ys, xs] = src[:, ys_src, xs_src]
    return out.reshape(n, -1)


# Under ``qat_scale="mse"`` the clips are re-chosen from the float weights this often (minibatches):
# choosing one costs a histogram pass over the layer (~4 ms for 785 x 600), a minibatch ~15 ms.
QAT_CLIP_REFRESH_STEPS = 16


def qat_clips(weights, config: TrainConfig) -> list[float] | None:
    """Per layer, the weight that maps to ``+-weight_max`` under ``config.qat_scale`` (None
    without QAT)."""
    if not config.qat_bits:
        return None
    return weight_clips(weights, config.qat_bits, config.qat_scale)


def forward_weights(weights, config: TrainConfig, clips=None) -> list[np.ndarray]:
    """The weights the forward pass runs: ``weights`` themselves, or with ``config.qat_bits``
    their fake-quantised copy ``clip(rint(w / scale), -M, M) * scale``, ``scale = c / M``,
    ``M = 2**(B-1) - 1`` per layer (``quantize.fake_quantize``; exactly what the emulator's
    image represents), with ``c`` from ``clips`` or, if None, ``qat_clips(weights, config)``."""
    if not config.qat_bits:
        return weights
    return fake_quantize(weights, config.qat_bits, qat_clips(weights, config) if clips is None else clips)


def batch_loss_and_grads(
    network: ExactNetwork, z_input: np.ndarray, labels: np.ndarray, config: TrainConfig, clips=None
):
    """Loss (mean over the batch), weight gradients and the forward state of one minibatch,
    taken on ``forward_weights`` (straight-through under QAT: the gradient is d L / d w_q)."""
    run = forward_weights(network.weights, config, clips)
    return _loss_and_grads(run, z_input, labels, config, defer_first=False)


@dataclass(frozen=True, eq=False)
class _FirstLayerGradient:
    """The weight gradient of a first layer whose inputs all spike at z = 1, not yet added up:

        grad[i, j] = scale * sum_b t_bj  -  penalty * deficit_j

    over the samples b in which input i spikes (every sample for the bias row), with
    t_bj = coef_bj (1 - z_out_bj) for the neurons that fired (``exact._binary_grad_weights``).
    ``Adam.step`` adds it up and applies it in one pass over the weights, so the (n_in + 1, n_out)
    gradient is never written out.
    """

    ptr: np.ndarray
    rows: np.ndarray
    z_out: np.ndarray
    coef: np.ndarray
    scale: float = 1.0
    deficit: np.ndarray | None = None
    penalty: float = 0.0


@dataclass(frozen=True, eq=False)
class _FirstLayerForward:
    """The first layer's forward pass of a minibatch with binary inputs, run ahead by ``Adam.step``:
    its spike times and denominators (``exact.layer_forward``) and the spiking inputs per sample
    (``exact.binary_input_rows``)."""

    z_out: np.ndarray
    denom: np.ndarray
    ptr: np.ndarray
    rows: np.ndarray


def _loss_and_grads(
    weights, z_input, labels, config: TrainConfig, defer_first: bool, column_sums=None, first_layer=None
):
    """``batch_loss_and_grads``; with ``defer_first`` the first layer's gradient, if its inputs are
    binary and it is not the output layer, comes back as a ``_FirstLayerGradient``.
    ``column_sums[k]``, where not None, is ``weights[k].sum(axis=0)`` known already;
    ``first_layer``, where not None, is the ``_FirstLayerForward`` of ``z_input`` on ``weights[0]``."""
    kept = []  # per layer, its sorted inputs if the forward pass sorted them on this thread
    if first_layer is None:
        zs, denoms = exact.forward(weights, z_input, kept)
    else:
        above, above_denoms = exact.forward(weights[1:], first_layer.z_out, kept)
        zs, denoms, kept = [z_input, *above], [first_layer.denom, *above_denoms], [None, *kept]
    z_o = zs[-1]
    batch = len(labels)
    rows = np.arange(batch)
    silent = ~np.isfinite(z_o)
    logits = np.where(silent, SILENT_LOGIT, -z_o / config.temperature)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss_ce = -np.log(np.maximum(p[rows, labels], 1e-30))
    # d CE / d z_o = -(p - onehot) / T ; silent outputs pass no gradient.
    onehot = np.zeros_like(p)
    onehot[rows, labels] = 1.0
    grad_z = -(p - onehot) / config.temperature
    grad_z[silent] = 0.0

    loss = loss_ce.sum()
    grads = [None] * len(weights)
    z_c = z_o[rows, labels]  # the correct output's spike time

    # Sparsity: smooth count, over every hidden layer, of the spikes before the correct output's.
    extra_grad_z = {}  # layer index in zs -> dL/dz of that layer from the sparsity term (negated)
    if config.sparsity > 0 and len(weights) > 1:
        has_c = np.isfinite(z_c)
        sig = {}
        soft_count = np.zeros(batch)
        for layer in range(1, len(zs) - 1):
            s = _soft_spikes(zs[layer], z_c, config.sparsity_width)
            sig[layer] = s
            soft_count += s.sum(axis=1)
        over = soft_count > config.sparsity_target
        loss += config.sparsity * (soft_count[over] - config.sparsity_target).sum()
        for layer, s in sig.items():
            ds = _soft_spike_slope(s, over, config.sparsity, config.sparsity_width)
            grad_z[rows[has_c], labels[has_c]] += ds.sum(axis=1)[has_c]
            extra_grad_z[layer] = ds

    # Backward through the layers.
    g = grad_z
    for layer in range(len(weights) - 1, -1, -1):
        need_in = layer > 0
        if layer == 0 and defer_first and len(weights) > 1:
            binary = exact.binary_input_rows(zs[0]) if first_layer is None else (first_layer.ptr, first_layer.rows)
            if binary is not None:
                coef = exact.backward_coefficients(zs[1], denoms[0], g, weights[0].dtype)
                grads[0] = _FirstLayerGradient(*binary, zs[1], coef)
                continue
        args = (zs[layer], weights[layer], zs[layer + 1], denoms[layer], g, need_in, kept[layer])
        gw, g_in = exact.layer_backward(*args)
        grads[layer] = gw  # a fresh array, never -0.0: the same as adding it to zeros
        if need_in:
            if layer in extra_grad_z:
                g_in = _minus(g_in, extra_grad_z[layer])
            if config.grad_clip > 0:
                norm = np.sqrt(_square(g_in).sum(axis=1, keepdims=True))
                g_in = _scale_rows(g_in, np.minimum(1.0, config.grad_clip / np.maximum(norm, 1e-30)))
            g = g_in

    # Correct output silent: push up the weights of every input that arrived.
    silent_c = ~np.isfinite(z_c)
    if config.silent_penalty > 0 and silent_c.any():
        idx = np.nonzero(silent_c)[0]
        z_h = zs[-2][idx]
        w_out = weights[-1]
        arrived = exact.arrived_weight_sum(z_h, w_out)[np.arange(len(idx)), labels[idx]]
        # Silent means arrived <= 1, so this is never negative; a margin here would only shift
        # the reported loss, since the term switches off as soon as the output fires.
        short = 1.0 - arrived
        act = short > 0
        loss += config.silent_penalty * short[act].sum()
        for b, lab in zip(idx[act], labels[idx[act]], strict=True):
            spiking = np.isfinite(zs[-2][b])
            grads[-1][:-1, lab] -= config.silent_penalty * spiking
            grads[-1][-1, lab] -= config.silent_penalty

    scale = 1.0 / batch
    loss *= scale
    for k in range(len(grads)):
        deferred = isinstance(grads[k], _FirstLayerGradient)
        known = column_sums[k] if column_sums is not None else None
        if deferred:
            column_sum = known if known is not None else _column_sums(weights[k])
        else:
            column_sum = _scale_and_column_sums(grads[k], weights[k], scale)
        deficit = None
        if config.weight_sum_penalty > 0:
            deficit = column_sum < 1.0
            if deficit.any():
                loss += config.weight_sum_penalty * (1.0 - column_sum[deficit]).sum()
                if not deferred:
                    grads[k][:, deficit] -= config.weight_sum_penalty
            else:
                deficit = None
        if deferred:
            t = weights[k].dtype.type  # numpy applies a Python scalar in the array's dtype
            penalty = t(config.weight_sum_penalty)
            grads[k] = dataclasses.replace(grads[k], scale=t(scale), deficit=deficit, penalty=penalty)
    return loss, grads, zs


# Elementwise pieces of the loss in Numba. Each does exactly the IEEE operations of the numpy
# expression in its docstring, in the dtype numpy would use (a Python scalar takes the array's
# dtype); the reductions and np.exp stay in numpy, so the numbers are numpy's to the last bit.


@njit(cache=True)
def _soft_spike_arg(z_h, z_c, width, limit, x, fin):
    """x = -clip(where(fin, (z_c - z_h) / width, -limit), -limit, limit), fin = z_h and z_c finite."""
    for b in range(z_h.shape[0]):
        zc = z_c[b]
        c_ok = np.isfinite(zc)
        for j in range(z_h.shape[1]):
            zh = z_h[b, j]
            f = c_ok and np.isfinite(zh)
            a = (zc - zh) / width if f else -limit
            x[b, j] = -min(max(a, -limit), limit)
            fin[b, j] = f


@njit(cache=True)
def _sigmoid_of_exp(e, fin, one, zero, s):
    """s = (1 / (1 + e)) * fin."""
    for b in range(e.shape[0]):
        for j in range(e.shape[1]):
            s[b, j] = one / (one + e[b, j]) * (one if fin[b, j] else zero)


def _soft_spikes(z_h, z_c, width):
    """Smooth spike indicators of one hidden layer: sigmoid((z_c - z_h) / width), 0 where either
    is silent."""
    dt = np.result_type(z_c, z_h)
    x = np.empty(z_h.shape, dtype=dt)
    fin = np.empty(z_h.shape, dtype=np.bool_)
    _soft_spike_arg(z_h, z_c, dt.type(width), dt.type(50), x, fin)
    e = np.exp(x)
    s = np.empty_like(e)
    _sigmoid_of_exp(e, fin, e.dtype.type(1), e.dtype.type(0), s)
    return s


@njit(cache=True)
def _soft_spike_slope_kernel(s, over, sparsity, width, one, zero, ds):
    """ds = sparsity * s * (1 - s) / width * over, evaluated left to right."""
    for b in range(s.shape[0]):
        o = one if over[b] else zero
        for j in range(s.shape[1]):
            ds[b, j] = sparsity * s[b, j] * (one - s[b, j]) / width * o


def _soft_spike_slope(s, over, sparsity, width):
    """d(sparsity * soft count) / d z_h for the samples over the target, per hidden spike: the
    negative of the sparsity term's gradient w.r.t. the hidden spike times."""
    t = s.dtype.type
    ds = np.empty_like(s)
    _soft_spike_slope_kernel(s, over, t(sparsity), t(width), t(1), t(0), ds)
    return ds


@njit(cache=True)
def _minus_kernel(a, b, out):
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            out[r, c] = a[r, c] + (-b[r, c])


def _minus(a, b):
    """a + (-b)."""
    out = np.empty(a.shape, dtype=np.result_type(a, b))
    _minus_kernel(a, b, out)
    return out


@njit(cache=True)
def _square_kernel(a, out):
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            out[r, c] = a[r, c] * a[r, c]


def _square(a):
    """a * a."""
    out = np.empty_like(a)
    _square_kernel(a, out)
    return out


@njit(cache=True)
def _scale_rows_kernel(a, factor, out):
    for r in range(a.shape[0]):
        f = factor[r, 0]
        for c in range(a.shape[1]):
            out[r, c] = a[r, c] * f


def _scale_rows(a, factor):
    """a * factor, factor of shape (rows, 1)."""
    out = np.empty(a.shape, dtype=np.result_type(a, factor))
    _scale_rows_kernel(a, factor, out)
    return out


@njit(cache=True, parallel=True)
def _scale_and_sum_columns(g, w, scale, n_chunks):
    """g *= scale in place; returns w.sum(axis=0), each column summed over the rows in order."""
    n_rows, n_cols = w.shape
    total = np.zeros(n_cols, dtype=w.dtype)
    width = (n_cols + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        j0 = c * width
        j1 = min(n_cols, j0 + width)
        for i in range(n_rows):
            for j in range(j0, j1):
                g[i, j] = g[i, j] * scale
                total[j] += w[i, j]
    return total


@njit(cache=True, parallel=True)
def _sum_columns(w, n_chunks):
    n_rows, n_cols = w.shape
    total = np.zeros(n_cols, dtype=w.dtype)
    width = (n_cols + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        j0 = c * width
        part = total[j0 : min(n_cols, j0 + width)]
        for i in range(n_rows):
            row = w[i, j0 : j0 + part.shape[0]]
            for j in range(part.shape[0]):
                part[j] += row[j]
    return total


def _column_sums(w):
    """``w.sum(axis=0)`` (see ``_scale_and_column_sums`` for the order)."""
    if w.shape[1] < 2 or not w.flags.c_contiguous:
        return w.sum(axis=0)
    return _sum_columns(w, max(1, min(numba.get_num_threads(), w.shape[1] // 16)))


def _scale_and_column_sums(g, w, scale):
    """``g *= scale`` (in place) and ``w.sum(axis=0)`` in one pass.

    numpy sums a C-ordered matrix along axis 0 row after row (the order used here) when it has
    two or more columns; a single column it sums pairwise, so that case is left to numpy.
    """
    if w.shape[1] < 2 or not (g.flags.c_contiguous and w.flags.c_contiguous) or g.shape != w.shape:
        g *= scale
        return w.sum(axis=0)
    n_chunks = max(1, min(numba.get_num_threads(), w.shape[1] // 16))
    kernel = _scale_and_sum_columns if n_chunks > 1 else _scale_and_sum_columns_serial
    return kernel(g, w, g.dtype.type(scale), n_chunks)


@njit(cache=True, inline="always")
def _adam_one(p, g, m, v, avg, i, lr, c1, c2, ema_decay, divide_m, divide_v, average):
    """Adam and the weight average for element i. ``x / 1.0 == x`` exactly, so a bias correction
    that has reached 1.0 (``divide_* = False``) skips its division without changing a bit."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    gi = g[i]
    mi = b1 * m[i] + (1.0 - b1) * gi
    vi = b2 * v[i] + (1.0 - b2) * gi * gi
    m[i] = mi
    v[i] = vi
    m_hat = mi / c1 if divide_m else mi
    v_hat = vi / c2 if divide_v else vi
    pi = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    p[i] = pi
    if average:
        avg[i] = ema_decay * avg[i] + (1.0 - ema_decay) * pi


@njit(cache=True, parallel=True, error_model="numpy")
def _adam_ema_update_flat(p, g, m, v, avg, lr, c1, c2, ema_decay):
    # One prange loop per case (straight, vectorisable loops over 1-D arrays). The numpy error
    # model drops the zero-divisor checks, which kept the loops scalar (3.6x slower on one thread):
    # no divisor here is ever 0 (c1, c2 > 0; sqrt(v) + eps > 0), so not a bit changes.
    n = p.shape[0]
    if ema_decay >= 0.0 and c1 == 1.0 and c2 == 1.0:
        for i in prange(n):
            _adam_one(p, g, m, v, avg, i, lr, c1, c2, ema_decay, False, False, True)
    elif ema_decay >= 0.0 and c1 == 1.0:
        for i in prange(n):
            _adam_one(p, g, m, v, avg, i, lr, c1, c2, ema_decay, False, True, True)
    elif ema_decay >= 0.0:
        for i in prange(n):
            _adam_one(p, g, m, v, avg, i, lr, c1, c2, ema_decay, True, True, True)
    else:
        for i in prange(n):
            _adam_one(p, g, m, v, avg, i, lr, c1, c2, ema_decay, True, True, False)


@njit(cache=True, parallel=True, error_model="numpy")
def _first_layer_adam(
    ptr,
    rows,
    z_out,
    coef,
    scale,
    deficit,
    penalty,
    p,
    m,
    v,
    avg,
    lr,
    c1,
    c2,
    ema_decay,
    g_rows,
    column_sums,
    next_start,
    next_samples,
    next_sum,
    next_z_out,
    next_denom,
):
    """Adam + weight average with the gradient of a ``_FirstLayerGradient``, added up one weight
    row at a time (in the order of ``exact._binary_grad_weights``) right where it is used.

    ``deficit`` has one flag per column; ``g_rows`` is scratch, one row per column chunk (one
    chunk per thread); ``column_sums`` receives the column sums of the updated weights, row
    after row (numpy's ``p.sum(axis=0)`` for two or more columns).

    The next minibatch's forward pass through this layer rides along when its inputs are binary
    (``next_sum`` has one row per sample; zero rows = none): each updated weight row, while it is
    in cache, is added to the sums A_bj of the samples b in which that input spikes
    (``next_samples[next_start[i] : next_start[i + 1]]``, every sample for the bias row), so
    A_bj adds the rows in increasing i and then the bias, as ``exact._binary_layer_forward``
    does; ``next_z_out`` / ``next_denom`` receive its results (the same numbers).
    """
    n_rows, n_out = p.shape
    n_chunks = g_rows.shape[0]
    n_next = next_sum.shape[0]
    start, samples = exact._samples_per_row(ptr, rows, n_rows - 1)
    width = (n_out + n_chunks - 1) // n_chunks
    average = ema_decay >= 0.0
    divide_m = c1 != 1.0
    divide_v = c2 != 1.0
    for c in prange(n_chunks):
        j0 = c * width
        mm = max(0, min(n_out, j0 + width) - j0)
        term, live, n_live, dense = exact._binary_terms(z_out, coef, j0, mm)
        g = g_rows[c, :mm]
        pen = deficit[j0 : j0 + mm]
        total = column_sums[j0 : j0 + mm]
        for j in range(mm):
            total[j] = 0.0
        for b in range(n_next):
            for j in range(mm):
                next_sum[b, j0 + j] = 0.0
        for i in range(n_rows):
            for j in range(mm):
                g[j] = 0.0
            exact._add_terms(g, samples, start[i], start[i + 1], term, live, n_live, dense)
            for j in range(mm):
                gj = g[j] * scale
                g[j] = gj - penalty if pen[j] else gj
            pi = p[i, j0 : j0 + mm]
            mi = m[i, j0 : j0 + mm]
            vi = v[i, j0 : j0 + mm]
            ai = avg[i, j0 : j0 + mm]
            if average and not divide_m and not divide_v:
                for j in range(mm):
                    _adam_one(pi, g, mi, vi, ai, j, lr, c1, c2, ema_decay, False, False, True)
            elif average and not divide_m:
                for j in range(mm):
                    _adam_one(pi, g, mi, vi, ai, j, lr, c1, c2, ema_decay, False, True, True)
            elif average:
                for j in range(mm):
                    _adam_one(pi, g, mi, vi, ai, j, lr, c1, c2, ema_decay, True, True, True)
            else:
                for j in range(mm):
                    _adam_one(pi, g, mi, vi, ai, j, lr, c1, c2, ema_decay, True, True, False)
            for j in range(mm):
                total[j] += pi[j]
            for q in range(next_start[i], next_start[i + 1]):
                acc = next_sum[next_samples[q], j0 : j0 + mm]
                for j in range(mm):
                    acc[j] += pi[j]
        for b in range(n_next):
            j1 = j0 + mm
            exact._binary_fire(next_sum[b, j0:j1], next_z_out[b, j0:j1], next_denom[b, j0:j1])


# Small layers (the output layer) run the same loops on one thread: waking the thread pool for a
# few thousand elements costs more than the work, most of all on a loaded machine. Each element
# is computed alone and each column summed in row order either way, so the numbers are the same.
_PARALLEL_MIN_SIZE = 1 << 16
_scale_and_sum_columns_serial = njit(cache=True)(_scale_and_sum_columns.py_func)
_adam_ema_update_flat_serial = njit(cache=True, error_model="numpy")(_adam_ema_update_flat.py_func)


def _adam_ema_update(p, g, m, v, avg, lr, c1, c2, ema_decay):
    """One fused pass over C-ordered arrays: Adam moments, parameter step and the weight average
    (``avg = d * avg + (1 - d) * p``; unused if ``ema_decay < 0``)."""
    arrays = (p, g, m, v, avg)
    if not all(a.flags.c_contiguous and a.shape == p.shape for a in arrays):
        raise ConfigError("Adam state must be C-contiguous arrays of one shape")
    kernel = _adam_ema_update_flat if p.size >= _PARALLEL_MIN_SIZE else _adam_ema_update_flat_serial
    kernel(*(a.reshape(-1) for a in arrays), lr, c1, c2, ema_decay)


class Adam:
    """Adam with bias correction (beta1 0.9, beta2 0.999, eps 1e-8), fused with a weight EMA."""

    def __init__(self, params, lr):
        self.lr = lr
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0
        # Per layer, the column sums of the weights after the last step when that step added up a
        # _FirstLayerGradient (it gets them for free), else None.
        self.column_sums = [None] * len(params)
        self.next_first_layer = None

    def step(self, params, grads, averages=None, ema_decay=-1.0, next_input=None):
        """Update ``params`` in place; with ``averages``, also ``avg = d * avg + (1 - d) * p``.

        ``next_input`` (optional): the next minibatch's input z. If the first layer's gradient
        is a ``_FirstLayerGradient`` and that input is binary, the pass that updates the first
        layer also runs the next batch through it: ``self.next_first_layer`` is then that
        layer's ``_FirstLayerForward`` on the updated weights, else None.
        """
        self.t += 1
        self.next_first_layer = None
        c1 = 1 - 0.9**self.t
        c2 = 1 - 0.999**self.t
        for k, (p, g) in enumerate(zip(params, grads, strict=True)):
            avg = averages[k] if averages is not None else p
            decay = ema_decay if averages is not None else -1.0
            self.column_sums[k] = None
            if isinstance(g, _FirstLayerGradient):
                deficit = np.zeros(p.shape[1], np.bool_) if g.deficit is None else g.deficit
                n_chunks = max(1, min(numba.get_num_threads(), p.shape[1] // 16))
                g_rows = np.empty((n_chunks, -(-p.shape[1] // n_chunks)), dtype=p.dtype)
                sums = np.empty(p.shape[1], dtype=p.dtype)
                args = (g.ptr, g.rows, g.z_out, g.coef, g.scale, deficit, g.penalty)
                binary = exact.binary_input_rows(next_input) if k == 0 and next_input is not None else None
                n_next = 0 if binary is None else len(binary[0]) - 1
                if binary is None:
                    next_start, next_samples = np.zeros(p.shape[0] + 1, np.int64), np.zeros(0, np.int64)
                else:
                    next_start, next_samples = exact._samples_per_row(*binary, p.shape[0] - 1)
                next_sum = np.empty((n_next, p.shape[1]), dtype=p.dtype)
                next_z_out = np.empty((n_next, p.shape[1]), dtype=p.dtype)
                next_denom = np.empty((n_next, p.shape[1]), dtype=p.dtype)
                ahead = (next_start, next_samples, next_sum, next_z_out, next_denom)
                _first_layer_adam(*args, p, self.m[k], self.v[k], avg, self.lr, c1, c2, decay, g_rows, sums, *ahead)
                if binary is not None:
                    self.next_first_layer = _FirstLayerForward(next_z_out, next_denom, *binary)
                if p.shape[1] >= 2:
                    self.column_sums[k] = sums
                continue
            g = np.ascontiguousarray(g, dtype=p.dtype)
            _adam_ema_update(p, g, self.m[k], self.v[k], avg, self.lr, c1, c2, decay)


def train_exact(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    config: TrainConfig = TrainConfig(),
    *,
    network: ExactNetwork | None = None,
    encoding: SpikeEncoding | None = None,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    validation_images: np.ndarray | None = None,
    validation_labels: np.ndarray | None = None,
    progress: Progress | None = None,
    eval_fn=None,
    on_epoch=None,
    image_shape: tuple[int, int] | None = None,
    n_classes: int | None = None,
    fused: bool = True,
) -> tuple[ExactNetwork, TrainHistory]:
    """Train (or continue training) an exact network on uint8 images; returns it and its history.

    Reproducible for a given seed and thread count. ``progress`` receives one update per
    minibatch with the running loss and accuracy; ``eval_fn(network) -> dict`` (optional) is
    called after every epoch and its result is stored in the history, as are the summaries on the
    test and validation samples (``record["test"]``, ``record["validation"]``); ``on_epoch(record)``
    (optional) receives each epoch's finished record. ``image_shape`` (rows, cols) is needed
    for the shift augmentation when images are flat and not square. ``encoding`` (default: the
    starting network's, else ``SpikeEncoding()``) is used for training and stored in the result.
    ``n_classes`` (default: ``max(label) + 1``, also of the test labels if given) sets the
    number of outputs of a new network. ``fused=False`` runs every minibatch through
    ``batch_loss_and_grads`` and ``Adam.step`` with the whole gradient written out, for probes
    that wrap those two; the default adds up the first layer's gradient inside the Adam pass.
    Both give the same weights, bit for bit.
    """
    progress = as_progress(progress)
    encoding = encoding or (network.encoding if network is not None else SpikeEncoding())
    check_images_and_labels(train_images, train_labels)
    if len(train_labels) == 0:
        raise ConfigError("no training images")
    n_in = train_images.reshape(len(train_images), -1).shape[1]
    if image_shape is None:
        if train_images.ndim == 3:
            image_shape = train_images.shape[1:]
        elif math.isqrt(n_in) ** 2 == n_in:
            image_shape = (math.isqrt(n_in), math.isqrt(n_in))
    if config.augment_shift_px and (image_shape is None or image_shape[0] * image_shape[1] != n_in):
        raise ConfigError(
            f"shift augmentation needs the image shape: {n_in} pixels per image is not square; "
            "pass image_shape or set augment_shift_px=0"
        )
    seen_classes = int(train_labels.max()) + 1
    if test_labels is not None and len(test_labels):
        seen_classes = max(seen_classes, int(np.max(test_labels)) + 1)
    if n_classes is None:
        n_classes = seen_classes
    elif n_classes < seen_classes:
        raise ConfigError(f"n_classes={n_classes} but the labels go up to {seen_classes - 1}")
    if network is None:
        topology = (n_in, *tuple(config.hidden), n_classes)
        active = expected_active_inputs(train_images, encoding)
        network = init_network(topology, config, encoding, active)
    else:
        if network.topology[0] != n_in or network.topology[-1] < n_classes:
            raise ConfigError(
                f"the starting network is {'-'.join(map(str, network.topology))} but the data has "
                f"{n_in} pixels and {n_classes} classes"
            )
        network = ExactNetwork([w.astype(config.dtype, copy=True) for w in network.weights], encoding)
    dtype = np.dtype(config.dtype)
    rng = np.random.default_rng(config.seed + 1)
    opt = Adam(network.weights, config.lr)
    # Exponential moving average of the weights (0 = off): the model that is evaluated and
    # returned. It damps the +-0.2% epoch-to-epoch swing of the raw weights.
    averaged = [w.copy() for w in network.weights] if config.ema_decay > 0 else None
    history = TrainHistory()
    n = len(train_labels)
    clips = None  # QAT: the clips of the forward weights (``qat_clips``), refreshed as documented
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        perm = rng.permutation(n)
        images = train_images.reshape(n, -1)
        if config.augment_shift_px and epoch + 1 >= config.augment_from_epoch:
            images = shift_images(images, rng, config.augment_shift_px, image_shape)
        progress.start(total=n, desc=f"epoch {epoch + 1}/{config.epochs}")
        loss_sum = 0.0
        correct = 0
        seen = 0
        # Encoded per minibatch (elementwise, so the same numbers as encoding the whole set).
        z_next = encoding.input_z(images[perm[: config.batch_size]], dtype=dtype)
        first_layer = None  # the batch's first layer, run ahead by the last Adam step
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            labels = train_labels[idx].astype(np.int64)
            z_batch = z_next
            z_next = None
            if start + config.batch_size < n:
                after = perm[start + config.batch_size : start + 2 * config.batch_size]
                z_next = encoding.input_z(images[after], dtype=dtype)
            if config.qat_bits and (clips is None or config.qat_scale == "max" or opt.t % QAT_CLIP_REFRESH_STEPS == 0):
                clips = qat_clips(network.weights, config)
            if fused:
                # Under QAT the column sums Adam knows are the float weights', not the forward's.
                known = None if config.qat_bits else opt.column_sums
                run = forward_weights(network.weights, config, clips)
                loss, grads, zs = _loss_and_grads(run, z_batch, labels, config, True, known, first_layer)
            else:
                loss, grads, zs = batch_loss_and_grads(network, z_batch, labels, config, clips)
            # EMA decay ramped so that short runs are not dominated by the initial weights.
            decay = min(config.ema_decay, (2.0 + opt.t) / (11.0 + opt.t))
            # Under QAT the next forward pass runs on other weights than the ones Adam updates.
            ahead = z_next if fused and not config.qat_bits else None
            opt.step(network.weights, grads, averaged, decay, next_input=ahead)
            first_layer = opt.next_first_layer
            pred, _ = exact.first_spike_decision(zs[-1])
            correct += int((pred == labels).sum())
            loss_sum += loss * len(idx)
            seen += len(idx)
            progress.update(len(idx), loss=loss_sum / seen, acc=correct / seen)
        progress.close()
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "lr": opt.lr,
            "seconds": time.perf_counter() - t0,
        }
        weights = network.weights if averaged is None else averaged
        current = ExactNetwork([w.copy() for w in forward_weights(weights, config)], network.encoding)
        if validation_images is not None and validation_labels is not None:
            record["validation"] = evaluate_exact(current, validation_images, validation_labels).summary()
        if test_images is not None and test_labels is not None:
            record["test"] = evaluate_exact(current, test_images, test_labels).summary()
        if eval_fn is not None:
            record.update(eval_fn(current) or {})
        history.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
        opt.lr *= config.lr_decay
    if averaged is not None:
        network = ExactNetwork(averaged, network.encoding)
    if config.qat_bits:
        network = ExactNetwork(forward_weights(network.weights, config), network.encoding)
    return network, history
