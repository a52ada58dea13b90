"""PNG plots of emulation results (matplotlib is optional: ``pip install popcount-learn[plots]``).

Figures are drawn with ``matplotlib.figure.Figure`` (no pyplot, no global backend change) and
written to a temporary file that is renamed into place, so a failed plot leaves no partial PNG.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from .emulator import EmulationResult
from .errors import ConfigError, PopcountLearnError

HIDDEN_HISTOGRAM_PNG = "hidden_spikes_before_decision.png"
STEPS_HISTOGRAM_PNG = "steps_to_decision.png"


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PopcountLearnError(
            "plotting needs matplotlib, which is not installed (pip install 'popcount-learn[plots]')"
        ) from None
    return Figure(**kwargs)


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG to a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {path.parent} does not exist")
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp.png"
    try:
        # Mode 0o666 lets the umask decide, as for any other output file (mkstemp would make
        # the plot readable by its owner only).
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            fig.savefig(tmp, dpi=110, format="png")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _integer_bins(values: np.ndarray, max_bins: int = 60) -> np.ndarray:
    lo, hi = int(values.min()), int(values.max())
    width = max(1, int(np.ceil((hi - lo + 1) / max_bins)))
    return np.arange(lo, hi + width + 1, width) - 0.5


def plot_decision_histograms(result: EmulationResult, path_dir) -> list[Path]:
    """Write two histograms into ``path_dir`` and return their paths.

    ``hidden_spikes_before_decision.png``: hidden spikes delivered before the decision, summed
    over hidden layers, per image. ``steps_to_decision.png``: ``first_output_step + 1`` per
    image; images without a decision are counted separately (at ``max_steps``) and named in
    the title.
    """
    if not isinstance(result, EmulationResult):
        raise ConfigError(f"expected an EmulationResult, got {type(result).__name__}")
    if len(result) == 0:
        raise ConfigError("cannot plot an empty emulation result")
    path_dir = Path(path_dir)
    if not path_dir.is_dir():
        raise ConfigError(f"plot directory {path_dir} does not exist")
    n = len(result)
    written = []

    hidden = result.hidden_spikes_delivered.sum(axis=1)
    n_hidden = sum(result.topology[1:-1])
    fig = _figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(hidden, bins=_integer_bins(hidden), color="tab:blue", edgecolor="white", linewidth=0.3)
    ax.set_xlabel(f"hidden spikes delivered before the output spike (of {n_hidden} hidden neurons)")
    ax.set_ylabel("images")
    ax.set_title(
        f"Hidden spikes before the decision: mean {hidden.mean():.1f}, median {np.median(hidden):.0f} (n = {n})"
    )
    written.append(_save(fig, path_dir / HIDDEN_HISTOGRAM_PNG))

    decided = result.first_output_step >= 0
    steps = result.steps_to_decision[decided]
    fig = _figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    if steps.size:
        ax.hist(steps, bins=_integer_bins(steps), color="tab:green", edgecolor="white", linewidth=0.3)
    ax.set_xlabel(f"time steps to classification (first output spike step + 1; max_steps {result.max_steps})")
    ax.set_ylabel("images")
    mean = f"mean {steps.mean():.1f} over decided images" if steps.size else "no decisions"
    ax.set_title(f"Steps to decision: {mean}; {int((~decided).sum())} of {n} without a decision")
    written.append(_save(fig, path_dir / STEPS_HISTOGRAM_PNG))
    return written


def plot_raster(result: EmulationResult, index: int, path) -> Path:
    """Spike raster of image ``index``: one panel per layer (input first), step on the x axis.

    The decision step is a dashed line; the winning output neuron is drawn in red. Run the
    emulator with ``full_raster=True`` to see spikes after the decision.
    """
    if not isinstance(result, EmulationResult):
        raise ConfigError(f"expected an EmulationResult, got {type(result).__name__}")
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise ConfigError(f"image index must be an integer, got {index!r}")
    if not 0 <= index < len(result):
        raise ConfigError(f"image index {index} outside 0..{len(result) - 1}")
    layers = [result.input_spike_steps[index]] + [s[index] for s in result.spike_steps]
    names = ["input"] + [f"hidden {k + 1}" for k in range(len(layers) - 2)] + ["output"]
    decision = int(result.first_output_step[index])
    winner = int(result.predicted[index])
    x_max = result.max_steps if result.full_raster or decision < 0 else decision + 1
    heights = [max(1.0, min(3.0, len(s) / 250)) for s in layers]
    fig = _figure(figsize=(7.0, 1.6 + 1.4 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(layers), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    axes = np.atleast_1d(axes)
    for ax, name, steps in zip(axes, names, layers, strict=True):
        # Only the steps that were run: input spikes after an early-terminated decision are not
        # shown or counted, like the hidden and output spikes the run never reached.
        fired = np.nonzero((steps >= 0) & (steps < x_max))[0]
        size = 4 if len(steps) > 100 else 16
        ax.scatter(steps[fired], fired, s=size, marker="|" if len(steps) > 100 else "o", color="black", linewidths=0.8)
        if name == "output" and winner >= 0:
            ax.scatter([steps[winner]], [winner], s=40, color="tab:red", zorder=3, label=f"winner {winner}")
            ax.legend(loc="upper right", fontsize=8)
        if decision >= 0:
            ax.axvline(decision, color="tab:red", linestyle="--", linewidth=0.8)
        ax.set_ylim(-1, len(steps))
        ax.set_ylabel(f"{name}\n({len(fired)}/{len(steps)} fired)", fontsize=9)
    axes[-1].set_xlim(-1, x_max + 1)
    axes[-1].set_xlabel("time step")
    title = f"Image {index}: " + (f"class {winner} at step {decision}" if decision >= 0 else "no decision")
    if bool(result.tie[index]):
        title += " (tie)"
    axes[0].set_title(title)
    return _save(fig, Path(path))


def plot_cost_against_silence(silence, rows_read, accuracy, path, *, emulator_accuracy=None, title="") -> Path:
    """Input weight rows read per image before the decision (left axis) and test accuracy (right
    axis) against the latency ``silence`` code (codes below it never spike), one point per run.

    ``silence``, ``rows_read``, ``accuracy`` (and ``emulator_accuracy``, optional): sequences of
    one length; accuracies as fractions.
    """
    columns = [np.asarray(silence, dtype=float), np.asarray(rows_read, dtype=float), np.asarray(accuracy, dtype=float)]
    if emulator_accuracy is not None:
        columns.append(np.asarray(emulator_accuracy, dtype=float))
    if any(c.ndim != 1 for c in columns) or len({len(c) for c in columns}) != 1 or len(columns[0]) == 0:
        raise ConfigError("silence, rows read and accuracies must be non-empty sequences of one length")
    x, rows, acc = columns[:3]
    order = np.argsort(x, kind="stable")
    fig = _figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x[order], rows[order], "o-", color="tab:blue", label="input rows read per image")
    ax.set_xlabel("silence code (codes below it never spike)")
    ax.set_ylabel("input weight rows read per image", color="tab:blue")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(x[order], 100 * acc[order], "s-", color="tab:red", label="exact TTFS")
    if emulator_accuracy is not None:
        ax2.plot(x[order], 100 * columns[3][order], "^--", color="tab:orange", label="8-bit emulator")
    ax2.set_ylabel("test accuracy (%)", color="tab:red")
    ax2.legend(loc="lower left", fontsize=8)
    ax.set_title(title or "Cost and accuracy against the silence threshold")
    return _save(fig, Path(path))
