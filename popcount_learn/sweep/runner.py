"""Run a sweep's points on a Dask cluster (``dask.distributed``) and record them in the store.

Without a scheduler address a ``LocalCluster`` of worker processes is started on this machine:
``N = cores // T`` workers (``--workers`` sets N, then ``T = cores // N``), each running one
point at a time with ``T`` Numba threads and one BLAS thread, so the workers together use the
cores once and do not oversubscribe them. With an address (``tcp://host:8786``) the points go
to that cluster: ``dask scheduler`` / ``dask worker`` started by hand, or a ``dask-jobqueue``
``SLURMCluster`` (docs/sweeps.md); each point then uses ``T`` Numba threads (default 1).

The client loads the data once and scatters it to the workers (they need no shared file
system), submits every point that the store does not hold yet, and records each result as it
arrives: the weight image to ``images/<config_hash>.h5`` first, then the row, in one
transaction. A point that raises is recorded as failed with its error; a worker that dies
takes its running points with it and Dask runs them again elsewhere (a point whose workers
die ``distributed.scheduler.allowed-failures`` + 1 times is recorded as failed). Interrupting
the client loses only the points that were running; rerunning the same command skips every
recorded point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from .. import h5io
from ..data import file_sha256, load_splits
from ..errors import ConfigError
from ..progress import as_progress
from ..weight_image import provenance_record
from .point import run_point
from .spec import SweepSpec
from .store import SweepStore, utc_now

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError("the sweep runs on Dask: pip install 'popcount-learn[sweep]' (dask[distributed])") from None
    return distributed


def local_cluster_size(
    workers: int | None, threads_per_worker: int | None, cores: int | None = None
) -> tuple[int, int]:
    """(worker processes, Numba threads per worker) of a LocalCluster sized to ``cores``."""
    cores = cores or os.cpu_count() or 1
    for name, v in (("--workers", workers), ("--threads-per-worker", threads_per_worker)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if workers is None:
        threads = threads_per_worker or 1
        return max(1, cores // threads), threads
    return workers, threads_per_worker or max(1, cores // workers)


@contextlib.contextmanager
def open_client(
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    dashboard_address: str | None = ":8787",
):
    """Yield (client, Numba threads per point, description) for a scheduler or a new LocalCluster."""
    distributed = _import_distributed()
    if scheduler is not None:
        if workers is not None:
            raise ConfigError("--workers sizes a local cluster; with --scheduler the cluster has its own workers")
        _, threads = local_cluster_size(None, threads_per_worker, cores=1)
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        try:
            yield client, threads, {"scheduler": scheduler, "local_cluster": False}
        finally:
            client.close()
        return
    n, threads = local_cluster_size(workers, threads_per_worker)
    # Numba's thread count is set per point (numba.set_num_threads); NUMBA_NUM_THREADS itself is left
    # alone: numba re-reads the environment and refuses a value that differs from its running pool.
    env = dict.fromkeys(THREAD_ENV, "1")
    cluster = distributed.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        env=env,
        dashboard_address=dashboard_address,
        silence_logs=logging.ERROR,
    )
    try:
        client = distributed.Client(cluster)
        try:
            yield client, threads, {"scheduler": cluster.scheduler_address, "local_cluster": True, "workers": n}
        finally:
            client.close()
    finally:
        cluster.close()


def worker_pids(client) -> dict[str, int]:
    """Worker address -> process id (for tests and diagnostics)."""
    return client.run(os.getpid)


def _data(sweep: SweepSpec):
    train, test, _ = load_splits(sweep.data, sweep.limit, scaling=None, test_limit=sweep.test_limit)
    sha = {Path(f).name: file_sha256(f) for f in (*train.files, *test.files)}
    return train, test, sha


def run_sweep(
    sweep: SweepSpec,
    out_dir,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    retry_failed: bool = False,
    progress=None,
    dashboard_address: str | None = ":8787",
    poll_seconds: float = 0.5,
    on_client=None,
) -> dict:
    """Run every point of ``sweep`` that ``out_dir``'s store lacks; returns a summary dict.

    ``progress`` (the progress hook) gets one phase of all points to run, with the metrics done,
    failed, running and workers; ``on_client(client)`` is called once the cluster is up (tests
    use it to find worker processes).
    """
    progress = as_progress(progress)
    t0 = time.perf_counter()
    local_cluster_size(workers, threads_per_worker)  # bad sizes are refused before any work
    train, test, sha = _data(sweep)
    configs = {}
    for axes, cfg in zip(sweep.points, sweep.point_configs(sha), strict=True):
        configs.setdefault(cfg.config_hash, (cfg, axes))  # two axis settings may give one configuration
    store = SweepStore(out_dir)
    try:
        before = store.finished()
        todo = [h for h in configs if h not in before or (retry_failed and before[h] == "failed")]
        store.set_meta(
            sweep_toml=sweep.text, sweep_path=str(sweep.path), points_total=str(len(configs)), points=list(configs)
        )
        summary = {
            "out": str(store.directory),
            "points": len(configs),
            "already_recorded": len(configs) - len(todo),
            "ran": 0,
            "failed_now": 0,
        }
        if todo:
            summary.update(
                _run(
                    store,
                    configs,
                    todo,
                    train,
                    test,
                    scheduler,
                    workers,
                    threads_per_worker,
                    progress,
                    dashboard_address,
                    poll_seconds,
                    on_client,
                )
            )
        final = store.finished()
        summary["done"] = sum(1 for h in configs if final.get(h) == "done")
        summary["failed"] = sum(1 for h in configs if final.get(h) == "failed")
        summary["wall_seconds"] = time.perf_counter() - t0
        return summary
    finally:
        store.close()


def _run(
    store,
    configs,
    todo,
    train,
    test,
    scheduler,
    workers,
    threads_per_worker,
    progress,
    dashboard_address,
    poll_seconds,
    on_client,
) -> dict:
    distributed = _import_distributed()
    t_start = time.perf_counter()
    with (
        _interrupt_between_polls() as interrupted,
        open_client(scheduler, workers, threads_per_worker, dashboard_address) as (client, threads, info),
    ):
        store.set_meta(
            state="running", started_utc=utc_now(), dashboard=client.dashboard_link or "", scheduler=info["scheduler"]
        )
        if on_client is not None:
            on_client(client)
        t_ready = time.perf_counter()
        # hash=False: keys unique to this scatter. Content-hashed keys are shared with an earlier
        # run's scatter of the same data on the same scheduler, and the workers' deletion of that
        # run's copies could remove this run's (seen under load as "lost scattered data").
        train_f = client.scatter((train.images, train.labels, train.image_shape), broadcast=True, hash=False)
        test_f = client.scatter((test.images, test.labels), broadcast=True, hash=False)
        futures = {}
        # Keys unique to this run: a rerun against a scheduler still cancelling an interrupted
        # run's tasks must not be handed those tasks (or refused) under the same key.
        run_tag = uuid.uuid4().hex[:8]
        for h in todo:
            cfg, _ = configs[h]
            key = f"sweep-point-{h}-{run_tag}"
            f = client.submit(run_point, cfg.to_dict(), train_f, test_f, threads, key=key, pure=False, retries=0)
            futures[f] = h
        by_key = {f.key: h for f, h in futures.items()}
        pending = set(futures)
        counts = {"done": 0, "failed": 0}
        busy_seconds = save_seconds = 0.0
        progress.start(total=len(todo), desc="sweep points")
        last_live = 0.0
        state = "interrupted"
        try:
            while pending:
                if interrupted.is_set():
                    raise KeyboardInterrupt
                finished = [f for f in pending if f.done()]
                for f in finished:
                    pending.discard(f)
                    outcome = _outcome(f, futures[f], distributed)
                    busy_seconds += outcome.get("seconds") or 0.0
                    t_save = time.perf_counter()
                    _save(store, configs[futures[f]], outcome)
                    save_seconds += time.perf_counter() - t_save
                    counts[outcome["status"]] += 1
                    f.release()
                now = time.perf_counter()
                if finished or now - last_live >= 1.0:
                    running = _running(client, by_key)
                    store.set_live(running)
                    last_live = now
                    progress.update(
                        len(finished),
                        done=counts["done"],
                        failed=counts["failed"],
                        running=len(running),
                        workers=len(set(running.values())),
                    )
                if pending:
                    time.sleep(poll_seconds)
            state = "finished"
        finally:
            progress.close()
            store.set_live({})
            store.set_meta(state=state, stopped_utc=utc_now())
            for f in pending:
                f.cancel()
        n_workers = len(client.scheduler_info().get("workers", {}))
        return {
            "ran": counts["done"] + counts["failed"],
            "failed_now": counts["failed"],
            "dashboard": client.dashboard_link,
            "scheduler": info["scheduler"],
            "workers": n_workers,
            "numba_threads_per_worker": threads,
            "cluster_start_seconds": t_ready - t_start,
            "points_seconds": time.perf_counter() - t_ready,
            "busy_seconds": busy_seconds,
            "client_record_seconds": save_seconds,
        }


@contextlib.contextmanager
def _interrupt_between_polls():
    """Ctrl-C (SIGINT) during a sweep sets the yielded event, and the poll loop raises
    KeyboardInterrupt at its next turn: an interrupt that lands inside a call into Dask's event
    loop can leave that loop logging an error with a traceback. A second Ctrl-C interrupts at
    once. Off the main thread, or with SIGINT ignored, nothing is installed."""
    requested = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield requested
        return

    def on_sigint(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _executing(dask_scheduler) -> dict[str, list]:
    """On the scheduler: worker address -> keys of the tasks it is executing now."""
    return {ws.address: [ts.key for ts in ws.executing] for ws in dask_scheduler.workers.values()}


def _running(client, by_key) -> dict[str, str]:
    """config_hash -> worker address of the points being computed now."""
    try:
        executing = client.run_on_scheduler(_executing)
    except Exception:  # the scheduler is busy or a worker is being replaced: no live view this tick
        return {}
    return {by_key[k]: w for w, keys in executing.items() for k in keys if k in by_key}


def _outcome(future, config_hash: str, distributed) -> dict:
    if future.status == "finished":
        return future.result()
    exc = future.exception()
    if isinstance(exc, distributed.KilledWorker):
        error = f"KilledWorker: every worker that ran this point died ({exc})"
    else:
        error = f"{type(exc).__name__}: {exc}"
    return {"config_hash": config_hash, "status": "failed", "error": error}


def _save(store: SweepStore, config_and_axes, outcome: dict) -> None:
    cfg, axes = config_and_axes
    if outcome["status"] == "done":
        image = outcome["image"]
        provenance = provenance_record(
            "sweep",
            config_hash=outcome["config_hash"],
            image_hash=outcome["image_hash"],
            config=cfg.to_dict(),
            emulated_test_accuracy=outcome["metrics"]["accuracy"],
        )
        h5io.save_weight_image(store.image_path(outcome["config_hash"]), _with_provenance(image, provenance))
    store.record(cfg.canonical_json(), axes, outcome)


def _with_provenance(image, provenance):
    import dataclasses

    return dataclasses.replace(image, provenance=provenance)
