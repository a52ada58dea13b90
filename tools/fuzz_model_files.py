"""Fuzz the model-file reader: damaged files must be refused in one line, in bounded time.

Usage: PYTHONPATH=$PWD python tools/fuzz_model_files.py [--mode flip|random|truncate|all]
           [--cases N | --all-offsets] [--seed 1] [--deadline-s 30] [--workers 2] FILE...

For each FILE, every case is a damaged copy: ``flip`` XORs one byte with 0xFF, ``random``
overwrites 1..8 random bytes with random values (and a few cases replace the whole file with
random bytes), ``truncate`` cuts the file to a shorter length. ``--all-offsets`` runs every
byte offset (flip) or every length (truncate); otherwise ``--cases`` seeded samples per mode.
The copy keeps the file's name in a directory that holds a copy of the file's ``SHA256SUMS``
(if its directory has one), so a shipped file is read as it ships.

Each load runs in a worker process (``h5io.load_model_and_metadata``) and must answer within
the deadline; a worker that does not is killed and the case counted as a hang. Outcomes:
``refused`` (ModelFileError, one line), ``identical`` (loaded, same content as the intact
file), ``changed`` (loaded, different content: a silently changed result; the fields that
differ are recorded), ``wrong_error`` (another PopcountLearnError), ``multiline`` (an error of
more than one line), ``exception`` (anything else: a traceback), ``crash`` (the worker died),
``hang``. Prints one JSON object per file and mode, and a total; exit status 1 when any case is
neither refused nor identical.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

FAILURES = ("changed", "wrong_error", "multiline", "exception", "crash", "hang")
OUTCOMES = ("refused", "identical", *FAILURES)
MODES = ("flip", "random", "truncate")
DEFAULT_DEADLINE_S = 30.0
CHECKSUM_FILE = "SHA256SUMS"


# --- what a load returned --------------------------------------------------------------------


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype.newbyteorder("<")).encode() + str(part.shape).encode())
            h.update(np.ascontiguousarray(part, part.dtype.newbyteorder("<")).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=repr).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def fingerprint(model, metadata) -> dict[str, str]:
    """A digest per part of a loaded model (so that a change names the part it hit)."""
    from popcount_learn.weight_image import WeightImage

    if isinstance(model, WeightImage):
        parts = {
            "kind": _digest("weight-image"),
            "spec": _digest(model.spec.to_dict()),
            "learning": _digest(model.learning.to_dict() if model.learning is not None else None),
            "provenance": _digest(model.provenance),
        }
        for k, layer in enumerate(model.layers):
            parts[f"layer{k}.weights"] = _digest(layer.weights_lsb)
            parts[f"layer{k}.threshold"] = _digest(int(layer.threshold_lsb))
            parts[f"layer{k}.scale"] = _digest(float(layer.scale).hex())
        return parts
    parts = {
        "kind": _digest("exact-network"),
        "encoding": _digest(model.encoding.threshold, repr(model.encoding.dark_time)),
        "metadata": _digest(metadata),
    }
    for k, w in enumerate(model.weights):
        parts[f"layer{k}.weights"] = _digest(w)
    return parts


def load_outcome(path: str) -> tuple[str, str, dict | None]:
    """(outcome, message, fingerprint) of one load, in this process."""
    from popcount_learn import h5io
    from popcount_learn.errors import ModelFileError, PopcountLearnError

    try:
        model, metadata = h5io.load_model_and_metadata(path)
    except ModelFileError as exc:
        text = str(exc)
        return ("multiline" if "\n" in text.strip() else "refused"), text, None
    except PopcountLearnError as exc:
        return "wrong_error", f"{type(exc).__name__}: {exc}", None
    except Exception as exc:
        return "exception", f"{type(exc).__name__}: {exc}"[:500], None
    return "loaded", "", fingerprint(model, metadata)


WORKER_START_S = 300
WORKER_MEMORY_BYTES = 4 << 30  # a worker's address space: a runaway allocation fails, not the machine


def _serve(conn) -> None:
    """Worker loop: receive a path, answer with its load outcome; ``None`` ends it."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, resource.getrlimit(resource.RLIMIT_AS)[1]))
    from popcount_learn import h5io  # noqa: F401  (imported before the first deadline starts)

    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        path, plant = job
        if plant == "hang":
            while True:
                time.sleep(1)
        if plant == "crash":
            os._exit(3)
        outcome = load_outcome(path)
        if plant == "exception":
            outcome = ("exception", "KeyError: planted", None)
        elif plant == "changed" and outcome[0] == "loaded":
            outcome = ("loaded", "", {**outcome[2], "planted": "x"})
        conn.send(outcome)


# --- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One damaged copy, kept as the damage only (the bytes are made when the case is run, so
    that a million cases of a large file do not sit in memory)."""

    mode: str
    label: str  # offset, offsets or length
    edits: tuple = ()  # (offset, new byte value) pairs
    length: int | None = None  # truncate to this many bytes
    random_from: int | None = None  # replace everything from this offset with random bytes
    seed: int = 0
    plant: str | None = None  # the worker misbehaves on purpose: "hang", "crash", "exception", "changed"

    def apply(self, data: bytes) -> bytes:
        if self.length is not None:
            return data[: self.length]
        b = bytearray(data)
        if self.random_from is not None:
            rng = np.random.default_rng(self.seed)
            b[self.random_from :] = rng.integers(0, 256, len(b) - self.random_from, dtype=np.uint8).tobytes()
        for offset, value in self.edits:
            b[offset] = value
        return bytes(b)


def flip_cases(data: bytes, offsets) -> list[Case]:
    return [Case("flip", str(i), edits=((i, data[i] ^ 0xFF),)) for i in offsets]


def truncate_cases(data: bytes, lengths) -> list[Case]:
    return [Case("truncate", str(n), length=n) for n in lengths]


def random_cases(data: bytes, n: int, rng: np.random.Generator) -> list[Case]:
    """``n`` cases: 1..8 bytes overwritten with new random values; every 50th case is the whole
    file replaced by random bytes (with the first 8 or 520 bytes kept, so the reader gets past
    the signature)."""
    out = []
    for c in range(n):
        if c % 50 == 49:
            keep = (0, 8, 520)[c // 50 % 3]
            out.append(Case("random", f"all-from-{keep}", random_from=keep, seed=int(rng.integers(1 << 31))))
            continue
        offsets = sorted(set(rng.integers(0, len(data), int(rng.integers(1, 9))).tolist()))
        edits = tuple((i, (data[i] + int(rng.integers(1, 256))) % 256) for i in offsets)
        out.append(Case("random", "+".join(map(str, offsets)), edits=edits))
    return out


def metadata_offsets(path) -> list[int]:
    """Offsets of the intact file outside every dataset's raw data (its HDF5 structure,
    attributes and the seal): where a flip reaches HDF5's metadata code."""
    import h5py

    spans = []
    with h5py.File(path, "r") as f:

        def visit(_name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                spans.append((obj.id.get_offset(), obj.id.get_offset() + obj.id.get_storage_size()))

        f.visititems(visit)
    inside = np.zeros(Path(path).stat().st_size, bool)
    for a, b in spans:
        inside[a:b] = True
    return np.flatnonzero(~inside).tolist()


def make_cases(data: bytes, modes, *, n_cases: int | None, seed: int, flip_offsets=None) -> list[Case]:
    """The cases of ``modes`` for ``data``: all offsets / lengths when ``n_cases`` is None,
    else ``n_cases`` seeded samples per mode. ``flip_offsets`` limits the flips to those offsets."""
    rng = np.random.default_rng(seed)
    size = len(data)
    cases: list[Case] = []
    for mode in modes:
        if mode == "flip":
            pool = np.arange(size) if flip_offsets is None else np.asarray(flip_offsets)
            offsets = pool if n_cases is None else np.sort(rng.choice(pool, min(n_cases, len(pool)), replace=False))
            cases += flip_cases(data, offsets.tolist())
        elif mode == "truncate":
            lengths = range(size) if n_cases is None else sorted(rng.choice(size, min(n_cases, size), replace=False))
            cases += truncate_cases(data, lengths)
        elif mode == "random":
            cases += random_cases(data, n_cases if n_cases is not None else 2000, rng)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    return cases


# --- running them ----------------------------------------------------------------------------


@dataclass
class Tally:
    file: str
    mode: str
    counts: dict = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    examples: dict = field(default_factory=dict)  # outcome -> first few (label, message)
    changed_parts: dict = field(default_factory=dict)  # part -> cases that changed it
    seconds: float = 0.0
    slowest_s: float = 0.0

    def add(self, outcome: str, case: Case, message: str, seconds: float) -> None:
        self.counts[outcome] += 1
        self.slowest_s = max(self.slowest_s, seconds)
        if outcome != "identical" and (outcome != "refused" or len(self.examples.get(outcome, [])) < 3):
            keep = self.examples.setdefault(outcome, [])
            if len(keep) < 10:
                keep.append((case.label, message[:300]))

    @property
    def failures(self) -> int:
        return sum(self.counts[o] for o in FAILURES)

    def summary(self) -> dict:
        n = sum(self.counts.values())
        return {
            "file": self.file,
            "mode": self.mode,
            "cases": n,
            **self.counts,
            "failures": self.failures,
            "changed_parts": self.changed_parts,
            "examples": self.examples,
            "seconds": round(self.seconds, 1),
            "slowest_load_s": round(self.slowest_s, 2),
        }


class _Worker:
    def __init__(self, ctx, work_dir: Path, index: int) -> None:
        self.dir = work_dir / f"w{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ctx = ctx
        self._start()

    def _start(self) -> None:
        self.conn, child = self._ctx.Pipe()
        self.process = self._ctx.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(WORKER_START_S) or self.conn.recv() != "ready":
            raise RuntimeError(f"a fuzz worker did not start within {WORKER_START_S} s")
        self.case = None
        self.started = 0.0

    def restart(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()
        self._start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class LoadPool:
    """Worker processes that load damaged copies, each with a deadline (a context manager).

    ``run(source, cases)`` writes each case's bytes under ``source``'s name into a worker's own
    directory (beside a copy of ``source``'s SHA256SUMS, if it has one), has the worker load it
    and sorts the outcome into a Tally per mode. A worker that overruns the deadline or dies is
    replaced.
    """

    def __init__(self, *, workers: int = 2, deadline_s: float = DEFAULT_DEADLINE_S, work_dir: Path | None = None):
        self.deadline_s = deadline_s
        self._own_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="pcl-fuzz-")) if self._own_dir else Path(work_dir)
        ctx = multiprocessing.get_context("spawn")
        self.workers = []
        try:
            for i in range(max(1, workers)):
                self.workers.append(_Worker(ctx, self.work_dir, i))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LoadPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, source, cases: list[Case], on_progress=None) -> dict[str, Tally]:
        from popcount_learn import h5io

        source = Path(source)
        data = source.read_bytes()
        intact = fingerprint(*h5io.load_model_and_metadata(source))
        sums = source.parent / CHECKSUM_FILE
        for w in self.workers:
            for old in w.dir.iterdir():
                old.unlink()
            if sums.is_file():
                shutil.copyfile(sums, w.dir / CHECKSUM_FILE)
        tallies = {mode: Tally(str(source), mode) for mode in dict.fromkeys(c.mode for c in cases)}
        pool, deadline_s = self.workers, self.deadline_s
        todo = list(reversed(cases))
        done = 0
        t_start = time.perf_counter()
        while todo or any(w.case is not None for w in pool):
            for w in pool:
                if w.case is None and todo:
                    w.case = todo.pop()
                    target = w.dir / source.name
                    target.write_bytes(w.case.apply(data))
                    w.started = time.perf_counter()
                    w.conn.send((str(target), w.case.plant))
            busy = [w for w in pool if w.case is not None]
            timeout = max(0.0, min(w.started + deadline_s for w in busy) - time.perf_counter())
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
            now = time.perf_counter()
            for w in busy:
                case = w.case
                tally = tallies[case.mode]
                seconds = now - w.started
                if w.conn in ready:
                    try:
                        outcome, message, parts = w.conn.recv()
                    except (EOFError, OSError):
                        w.process.join()
                        outcome, message, parts = "crash", f"worker exit code {w.process.exitcode}", None
                        w.restart()
                elif w.process.sentinel in ready:
                    w.process.join()
                    outcome, message, parts = "crash", f"worker exit code {w.process.exitcode}", None
                    w.restart()
                elif seconds >= deadline_s:
                    outcome, message, parts = "hang", f"no answer within {deadline_s:g} s", None
                    w.restart()
                else:
                    continue
                if outcome == "loaded":
                    changed = sorted(k for k in set(parts) | set(intact) if parts.get(k) != intact.get(k))
                    outcome = "changed" if changed else "identical"
                    message = ",".join(changed)
                    for part in changed:
                        tally.changed_parts.setdefault(part, []).append(case.label)
                tally.add(outcome, case, message, seconds)
                w.case = None
                done += 1
                if on_progress is not None:
                    on_progress(done, len(cases))
        total = time.perf_counter() - t_start
        for tally in tallies.values():
            tally.seconds = total * sum(tally.counts.values()) / max(1, len(cases))
        return tallies


def run_cases(source, cases: list[Case], *, deadline_s=DEFAULT_DEADLINE_S, workers=2, on_progress=None):
    """``LoadPool.run`` with a pool of its own."""
    with LoadPool(workers=workers, deadline_s=deadline_s) as pool:
        return pool.run(source, cases, on_progress)


def fuzz_file(
    path, modes=MODES, *, n_cases: int | None = 100, seed: int = 1, deadline_s=DEFAULT_DEADLINE_S, workers=2
) -> list[dict]:
    """Every mode's summary for one file (see the module docstring)."""
    data = Path(path).read_bytes()
    cases = make_cases(data, modes, n_cases=n_cases, seed=seed)
    tallies = run_cases(Path(path), cases, deadline_s=deadline_s, workers=workers)
    return [t.summary() for t in tallies.values()]


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE))
    from _machine import machine

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--mode", choices=(*MODES, "all"), default="all")
    p.add_argument("--cases", type=int, default=200, help="seeded cases per mode and file (default: %(default)s)")
    p.add_argument("--all-offsets", action="store_true", help="every offset (flip) and length (truncate)")
    p.add_argument(
        "--metadata-only", action="store_true", help="flip only outside the datasets' raw data (HDF5 structure)"
    )
    p.add_argument("--random-cases", type=int, default=2000, help="random-bytes cases with --all-offsets")
    p.add_argument("--truncate-cases", type=int, default=None, help="seeded lengths with --all-offsets (default: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    modes = MODES if args.mode == "all" else (args.mode,)
    t0 = time.perf_counter()
    summaries = []
    pool = LoadPool(workers=args.workers, deadline_s=args.deadline_s)
    for path in args.files:
        data = path.read_bytes()
        cases = []
        for mode in modes:
            if args.all_offsets:
                n = {"random": args.random_cases, "truncate": args.truncate_cases}.get(mode)
            else:
                n = args.cases
            flips = metadata_offsets(path) if args.metadata_only and mode == "flip" else None
            cases += make_cases(data, (mode,), n_cases=n, seed=args.seed, flip_offsets=flips)

        def tick(done, total, name=path.name):
            if done % 1000 == 0 or done == total:
                print(f"{name}: {done:,}/{total:,}", file=sys.stderr, flush=True)

        for tally in pool.run(path, cases, on_progress=tick).values():
            summary = tally.summary()
            summaries.append(summary)
            print(json.dumps(summary), flush=True)
    pool.close()
    total = {o: sum(s[o] for s in summaries) for o in ("cases", *OUTCOMES, "failures")}
    print(
        json.dumps(
            {
                "command": "python tools/fuzz_model_files.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "total": total,
                "seconds": round(time.perf_counter() - t0, 1),
                "workers": args.workers,
                "load_average": os.getloadavg(),
                **machine(),
            }
        )
    )
    return 1 if total["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
