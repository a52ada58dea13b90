"""Progress reporting hook for long library loops (training epochs, evaluation, emulation).

A library function accepts ``progress: Progress | Callable[[ProgressEvent], None] | None`` and
normalises it with ``as_progress``. It then reports one phase at a time::

    progress.start(total=len(batches), desc="epoch 3")
    for batch in batches:
        ...
        progress.update(1, loss=loss, acc=acc)   # metrics are optional, shown live
    progress.close()

``start`` may be called again after ``close`` to begin the next phase. ``update(0, **metrics)``
changes the shown metrics without advancing. Library code never prints; only the renderer does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Progress:
    """Base class and interface; every method is a no-op here."""

    def start(self, total: int, desc: str = "") -> None:
        """Begin a phase of ``total`` steps (``total`` may be 0)."""

    def update(self, n: int = 1, **metrics: float) -> None:
        """Advance by ``n`` steps and replace the live metrics with ``metrics`` if any are given."""

    def close(self) -> None:
        """End the current phase. Calling it twice, or without ``start``, is harmless."""


class NullProgress(Progress):
    """Reports nothing; the default when a caller passes ``progress=None``."""


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class TqdmProgress(Progress):
    """Renders each phase as a tqdm bar with the metrics as its postfix (``loss=0.1234``).

    ``tqdm_kwargs`` are passed to ``tqdm.tqdm`` for every phase (e.g. ``file``, ``leave``,
    ``mininterval``, ``disable``).
    """

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self._tqdm_kwargs = tqdm_kwargs
        self._bar = None

    def start(self, total: int, desc: str = "") -> None:
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=desc, **self._tqdm_kwargs)

    def update(self, n: int = 1, **metrics: float) -> None:
        if self._bar is None:
            return
        if metrics:
            # refresh=False: the update() below redraws, rate-limited by tqdm's mininterval.
            self._bar.set_postfix({k: _format_metric(v) for k, v in metrics.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LineProgress(Progress):
    """One plain line per phase, for output that is no terminal (a log file, a CI job):
    ``epoch 3/30: 60000/60000 loss=0.1234 acc=0.9712 (10.4 s)`` when the phase closes, and with
    ``every_fraction`` (e.g. 0.1) also a line each time another such share of it is done. No
    carriage returns, no redraws."""

    def __init__(self, stream=None, every_fraction: float | None = None) -> None:
        import sys

        self._stream = stream if stream is not None else sys.stderr
        self._every = every_fraction
        self._phase = None

    def start(self, total: int, desc: str = "") -> None:
        import time

        self.close()
        self._phase = {"desc": desc, "total": total, "done": 0, "metrics": {}, "t0": time.perf_counter(), "next": 0}
        self._advance_mark()

    def _advance_mark(self) -> None:
        p = self._phase
        if self._every and p["total"]:
            step = max(1, int(p["total"] * self._every))
            p["next"] = (p["done"] // step + 1) * step
        else:
            p["next"] = None

    def _line(self) -> None:
        import time

        p = self._phase
        metrics = "".join(f" {k}={_format_metric(v)}" for k, v in p["metrics"].items())
        head = f"{p['desc']}: " if p["desc"] else ""
        print(
            f"{head}{p['done']}/{p['total']}{metrics} ({time.perf_counter() - p['t0']:.1f} s)",
            file=self._stream,
            flush=True,
        )

    def update(self, n: int = 1, **metrics: float) -> None:
        p = self._phase
        if p is None:
            return
        p["done"] += n
        if metrics:
            p["metrics"] = metrics
        if p["next"] is not None and p["done"] >= p["next"] and p["done"] < p["total"]:
            self._line()
            self._advance_mark()

    def close(self) -> None:
        if self._phase is not None:
            self._line()
            self._phase = None


def progress_for_output(enabled: bool = True, stream=None, every_fraction: float | None = None) -> Progress:
    """What a command-line tool shows: nothing when disabled; a live bar on a terminal; else
    ``LineProgress`` lines (one per phase, or per ``every_fraction`` of a phase)."""
    import sys

    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return NullProgress()
    if hasattr(stream, "isatty") and stream.isatty():
        return TqdmProgress(leave=False, dynamic_ncols=True, file=stream)
    return LineProgress(stream, every_fraction)


@dataclass(frozen=True)
class ProgressEvent:
    """What a plain-callable progress hook receives on every ``start`` and ``update``.

    done: steps completed in this phase so far; total: the phase's step count;
    metrics: the latest metrics passed to ``update`` in this phase (empty until then).
    """

    desc: str
    done: int
    total: int
    metrics: dict[str, Any] = field(default_factory=dict)


class CallbackProgress(Progress):
    """Adapts ``fn(event: ProgressEvent)`` to the Progress interface; ``close`` sends nothing."""

    def __init__(self, fn: Callable[[ProgressEvent], None]) -> None:
        self._fn = fn
        self._desc = ""
        self._done = 0
        self._total = 0
        self._metrics: dict[str, Any] = {}

    def start(self, total: int, desc: str = "") -> None:
        self._desc, self._done, self._total, self._metrics = desc, 0, total, {}
        self._fn(ProgressEvent(desc, 0, total, {}))

    def update(self, n: int = 1, **metrics: float) -> None:
        self._done += n
        if metrics:
            self._metrics = dict(metrics)
        self._fn(ProgressEvent(self._desc, self._done, self._total, dict(self._metrics)))


def as_progress(progress: Progress | Callable[[ProgressEvent], None] | None) -> Progress:
    """None -> NullProgress, a Progress -> itself, a callable -> CallbackProgress."""
    if progress is None:
        return NullProgress()
    if isinstance(progress, Progress):
        return progress
    if callable(progress):
        return CallbackProgress(progress)
    raise TypeError(f"progress must be a Progress, a callable or None, got {type(progress).__name__}")
