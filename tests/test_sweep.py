"""The sweep runner on a real Dask LocalCluster (2 worker processes): completion, a worker killed
mid-sweep, an interrupted client resumed, byte-identical reruns, a failing point; the sweep
file's checks; determinism across thread counts; the report."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from popcount_learn import cli, h5io
from popcount_learn.data import load_split
from popcount_learn.sweep import SweepConfigError, SweepStore, parse_sweep
from popcount_learn.sweep.point import evaluate_point, image_hash, run_point, set_numba_threads
from popcount_learn.sweep.report import format_table, pareto_front, sweep_report
from popcount_learn.sweep.runner import local_cluster_size, run_sweep, worker_pids

distributed = pytest.importorskip("distributed")

# Eight tiny points: 784-16-10 and 784-32-10, 4- and 8-bit weights, two seeds; ~0.3-1 s each.
SWEEP = """
[sweep]
mode = "exact"
epochs = 1
limit = 1000
test_limit = 100

[base]
train.batch_size = 32
hardware.lanes = 4

[axes]
hidden = [16, 32]
datapath.weight_bits = [4, 8]
seed = [0, 1]
"""


def write_sweep(tmp_path, text=SWEEP, name="sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def cluster():
    c = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The reference: the 8-point sweep through the CLI, on a LocalCluster the runner starts."""
    d = tmp_path_factory.mktemp("clean")
    sweep_file = write_sweep(d)
    rc = cli.main(["sweep", str(sweep_file), "--out", str(d / "out"), "--workers", "2", "--dashboard", ":0", "--json"])
    assert rc == 0
    with SweepStore(d / "out", create=False) as store:
        return d / "out", store.raw_rows(), store.points(), store.runs()


def test_an_eight_point_sweep_completes(clean_run):
    out, rows, points, runs = clean_run
    assert len(rows) == 8 and all(p["status"] == "done" for p in points)
    assert len({p["config_hash"] for p in points}) == 8
    assert len({p["image_hash"] for p in points}) == 8
    assert {tuple(p["axes"]["train.hidden"]) for p in points} == {(16,), (32,)}
    # Both worker processes took part, each point ran once.
    assert len(runs) == 8 and len({r["worker"] for r in runs}) == 2
    for p in points:
        image = h5io.load_weight_image(out / p["image_file"])
        assert image_hash(image) == p["image_hash"]
        assert image.spec.weight_bits == p["config"]["datapath"]["weight_bits"]
        assert image.topology == (784, p["config"]["train"]["hidden"][0], 10)
        assert 0.0 < p["accuracy"] <= 1.0 and p["cycles_per_image"] > 0 and p["energy_pj"] > 0
        assert p["metrics"]["n"] == 100
    # More weight bits: more weight memory, at equal size.
    by = {(p["config"]["train"]["hidden"][0], p["config"]["datapath"]["weight_bits"]): p for p in points}
    assert by[(16, 8)]["weight_memory_bytes"] == 2 * by[(16, 4)]["weight_memory_bytes"]


def test_two_runs_give_byte_identical_rows_and_image_hashes(clean_run, cluster, tmp_path):
    _, rows, _, _ = clean_run
    summary = run_sweep(parse_sweep(SWEEP), tmp_path / "again", scheduler=cluster.scheduler_address)
    assert summary["done"] == 8
    with SweepStore(tmp_path / "again", create=False) as store:
        assert store.raw_rows() == rows


def test_a_killed_worker_still_completes_every_point_exactly_once(clean_run, cluster, tmp_path):
    _, rows, _, _ = clean_run
    killed = {}

    def on_client(client):
        killed["client"] = client
        killed["pids"] = worker_pids(client)

    def hook(event):
        # Kill the worker process of a running point as soon as one runs (only ours, by PID).
        # Not gated on the event's ``running`` count: that comes from heartbeats too, and short
        # points can finish before any heartbeat reports them.
        if "pid" in killed or event.done >= 7:
            return
        client = killed["client"]
        # ``processing``: the tasks the scheduler has given a worker; ``executing`` is filled from
        # heartbeats and can still be empty when a fast point is already running.
        executing = client.run_on_scheduler(
            lambda dask_scheduler: [ws.address for ws in dask_scheduler.workers.values() if ws.processing]
        )
        if executing:
            killed["pid"] = killed["pids"][executing[0]]
            killed["done_before"] = event.done
            os.kill(killed["pid"], signal.SIGKILL)

    summary = run_sweep(
        parse_sweep(SWEEP), tmp_path / "k", scheduler=cluster.scheduler_address, progress=hook, on_client=on_client
    )
    assert "pid" in killed and killed["done_before"] < 8, "no worker was killed mid-sweep"
    assert summary["done"] == 8 and summary["failed"] == 0
    with SweepStore(tmp_path / "k", create=False) as store:
        assert store.raw_rows() == rows
        runs = store.runs()
    assert sorted(r["config_hash"] for r in runs) == sorted(r[0] for r in rows)  # each recorded once
    with distributed.Client(cluster.scheduler_address) as client:
        assert killed["pid"] not in worker_pids(client).values()


def test_an_interrupted_client_resumes_and_gives_the_same_table(clean_run, cluster, tmp_path):
    # 32 points (the 8 of SWEEP and 24 more seeds), so that Ctrl-C lands mid-sweep even on a loaded
    # machine, where the client may record several points before the signal is handled.
    _, rows, _, _ = clean_run
    big = SWEEP.replace("seed = [0, 1]", "seed = [0, 1, 2, 3, 4, 5, 6, 7]")
    total = 32
    out = tmp_path / "int"
    sweep_file = write_sweep(tmp_path, big)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "popcount_learn.cli", "sweep", str(sweep_file), "--out", str(out)),
            *("--scheduler", cluster.scheduler_address, "--no-progress"),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A suite started in the background by a non-interactive shell inherits SIGINT ignored; Ctrl-C
        # is what this test sends, so the client gets the default handler whatever the parent's.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    recorded = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "sweep.sqlite").exists():
            try:
                recorded = sqlite3.connect(out / "sweep.sqlite").execute("SELECT COUNT(*) FROM points").fetchone()[0]
            except sqlite3.OperationalError:  # the table is being created
                recorded = 0
            if recorded >= 1:
                proc.send_signal(signal.SIGINT)
                break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    with SweepStore(out, create=False) as store:
        kept = len(store.raw_rows())
        assert store.get_meta("state") == "interrupted"
    assert 1 <= kept < total, f"the interrupt came too late ({kept} points recorded)"
    summary = run_sweep(parse_sweep(big), out, scheduler=cluster.scheduler_address)
    assert summary["already_recorded"] == kept and summary["ran"] == total - kept
    with SweepStore(out, create=False) as store:
        resumed = store.raw_rows()
        assert len(resumed) == total and len({r[0] for r in resumed}) == total
        assert all(p["status"] == "done" for p in store.points())
    # The 8 points the clean run has are byte-identical to it, however the run was cut.
    clean_hashes = {r[0] for r in rows}
    assert [r for r in resumed if r[0] in clean_hashes] == rows
    # A third run has nothing left to do and starts no work.
    assert run_sweep(parse_sweep(big), out, scheduler=cluster.scheduler_address)["ran"] == 0


def test_ctrl_c_inside_a_dask_call_waits_for_the_poll_loop(cluster, tmp_path, monkeypatch):
    """SIGINT that arrives while the runner is inside a call into Dask (here the live view's
    ``run_on_scheduler``) lets that call return, then ends the sweep at the loop's next turn as
    KeyboardInterrupt, recorded as interrupted; the previous SIGINT handler is back afterwards."""
    from popcount_learn.sweep import runner

    calls = {"sent": 0, "returned": 0}
    real_running = runner._running

    def running_with_ctrl_c(client, by_key):
        if not calls["sent"]:
            calls["sent"] = 1
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the signal is handled while this call is still under way
        out = real_running(client, by_key)
        calls["returned"] += 1
        return out

    monkeypatch.setattr(runner, "_running", running_with_ctrl_c)
    # Python's own Ctrl-C handler, whatever the suite inherited (started in the background by a
    # non-interactive shell, SIGINT is ignored, and the runner rightly leaves it so).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "ctrl-c"
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(parse_sweep(SWEEP), out, scheduler=cluster.scheduler_address)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert calls == {"sent": 1, "returned": 1}  # the call the signal landed in finished, no other began
    with SweepStore(out, create=False) as store:
        assert store.get_meta("state") == "interrupted"


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(cluster, tmp_path, capsys):
    # An 8-bit membrane cannot hold the threshold of the trained scale: quantisation fails.
    text = SWEEP.replace("datapath.weight_bits = [4, 8]", "datapath.membrane_bits = [8, 24]").replace(
        "seed = [0, 1]", "seed = [0]"
    )
    out = tmp_path / "f"
    rc = cli.main(
        ["sweep", str(write_sweep(tmp_path, text)), "--out", str(out), "--scheduler", cluster.scheduler_address]
    )
    assert rc == 1
    with SweepStore(out, create=False) as store:
        points = store.points()
    status = {(p["config"]["train"]["hidden"][0], p["config"]["datapath"]["membrane_bits"]): p for p in points}
    assert len(points) == 4
    for hidden in (16, 32):
        assert status[(hidden, 24)]["status"] == "done"
        failed = status[(hidden, 8)]
        assert failed["status"] == "failed" and "does not fit the 8-bit membrane" in failed["error"]
        assert failed["image_file"] is None and not (out / "images" / f"{failed['config_hash']}.h5").exists()
    capsys.readouterr()
    assert cli.main(["sweep-report", str(out), "--no-plots"]) == 0
    assert "failed: ConfigError" in capsys.readouterr().out


# --- the sweep file


@pytest.mark.parametrize(
    "edit, message",
    [
        (("hidden = [16, 32]", "hidden = []"), "train.hidden: the axis is empty"),
        (("datapath.weight_bits = [4, 8]", "datapath.weight_bit = [4, 8]"), "unknown datapath field 'weight_bit'"),
        (("datapath.weight_bits = [4, 8]", "datapath.weight_bits = [4, 40]"), "weight_bits must be in 2..16"),
        (("datapath.weight_bits = [4, 8]", 'datapath.weight_bits = [4, "8"]'), "weight_bits[1]: expected an integer"),
        (("train.batch_size = 32", "train.batch_sise = 32"), "unknown train field 'batch_sise'"),
        (("train.batch_size = 32", "learning.margin_steps = 4"), "learning applies to mode onchip"),
        (("epochs = 1", "epochs = 1\nepoch = 2"), "unknown key(s) ['epoch']"),
        (("epochs = 1", "epochs = -1"), "epochs must be an integer >= 0"),
        (('mode = "exact"', 'mode = "fast"'), "mode: expected one of"),
        (("[axes]", "[axis]"), "unknown table(s) ['axis']"),
        (("hidden = [16, 32]", "hidden = [16, 32"), "not valid TOML"),
        (("seed = [0, 1]", "seed = [0, 0]"), "repeated values"),
        (("train.batch_size = 32", "train.epochs = 3"), "set epochs in [sweep]"),
        (("hardware.lanes = 4", "hardware.lanes = 0"), "lanes must be an integer in 1..64"),
        (("hardware.lanes = 4", "encoding.dark_time = 100.0"), "dark_time 100 is 6400 steps"),
    ],
)
def test_a_bad_sweep_file_is_one_clear_error_before_anything_runs(tmp_path, capsys, edit, message):
    old, new = edit
    assert old in SWEEP
    path = write_sweep(tmp_path, SWEEP.replace(old, new))
    with pytest.raises(SweepConfigError) as info:
        parse_sweep(path.read_text(), str(path))
    assert message in str(info.value) and str(path) in str(info.value)
    out = tmp_path / "never"
    assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("popcount-learn: error:") and message in err
    assert not out.exists()


def test_grid_and_seeded_random_sampling():
    grid = parse_sweep(SWEEP)
    assert len(grid.points) == 8
    assert grid.points[0] == {"train.hidden": [16], "datapath.weight_bits": 4, "train.seed": 0}
    text = SWEEP.replace("seed = [0, 1]", "seed = [0, 1]\ntrain.lr = {low = 1e-4, high = 1e-2, log = true}")
    text += '\n[sampling]\nmethod = "random"\npoints = 6\nseed = 3\n'
    a, b = parse_sweep(text), parse_sweep(text)
    assert a.points == b.points and len(a.points) == 6
    assert all(1e-4 <= p["train.lr"] <= 1e-2 for p in a.points)
    assert parse_sweep(text.replace("seed = 3", "seed = 4")).points != a.points
    with pytest.raises(SweepConfigError, match="needs \\[sampling\\] method"):
        parse_sweep(text.split("[sampling]")[0])
    too_many = SWEEP + '\n[sampling]\nmethod = "random"\npoints = 9\n'
    with pytest.raises(SweepConfigError, match="only 8 combinations"):
        parse_sweep(too_many)


def test_the_config_hash_covers_every_field_and_the_data():
    configs = parse_sweep(SWEEP).point_configs({"a.gz": "00"})
    hashes = {c.config_hash for c in configs}
    assert len(hashes) == 8
    assert parse_sweep(SWEEP).point_configs({"a.gz": "00"})[0].config_hash == configs[0].config_hash
    assert parse_sweep(SWEEP).point_configs({"a.gz": "01"})[0].config_hash not in hashes
    lr = parse_sweep(SWEEP.replace("train.batch_size = 32", "train.batch_size = 32\ntrain.lr = 0.002"))
    assert lr.point_configs({"a.gz": "00"})[0].config_hash not in hashes
    # A field left at its default and the same field set to the default are the same point.
    same = parse_sweep(SWEEP.replace("train.batch_size = 32", "train.batch_size = 32\ntrain.lr = 0.001"))
    assert same.point_configs({"a.gz": "00"})[0].config_hash == configs[0].config_hash


@pytest.mark.parametrize("mode", ["exact", "onchip"])
def test_a_point_gives_the_same_image_on_one_and_two_threads(mode):
    import numba

    text = SWEEP.replace('mode = "exact"', f'mode = "{mode}"').replace("limit = 1000", "limit = 600")
    if mode == "onchip":
        text = text.replace("train.batch_size = 32", "learning.margin_steps = 6")
    config = parse_sweep(text).point_configs({})[0]
    train = load_split(None, "train", 600)
    test = load_split(None, "test", 100)
    args = (config.to_dict(), (train.images, train.labels, train.image_shape), (test.images, test.labels))
    before = numba.get_num_threads()
    try:
        one = run_point(*args, numba_threads=1)
        two = run_point(*args, numba_threads=2)
    finally:
        set_numba_threads(before)
    assert one["status"] == two["status"] == "done", (one["error"], two["error"])
    assert one["image_hash"] == two["image_hash"]
    assert json.dumps(one["metrics"], sort_keys=True) == json.dumps(two["metrics"], sort_keys=True)
    if mode == "onchip":
        assert one["image"].learning is not None


def test_the_image_hash_sees_a_one_lsb_change():
    config = parse_sweep(SWEEP).point_configs({})[0]
    train = load_split(None, "train", 300)
    test = load_split(None, "test", 50)
    image, _ = evaluate_point(config, (train.images, train.labels, train.image_shape), (test.images, test.labels))
    w = image.layers[0].weights_lsb.copy()
    w[3, 2] += 1 if w[3, 2] < image.spec.weight_max else -1
    import dataclasses

    changed = dataclasses.replace(
        image, layers=(dataclasses.replace(image.layers[0], weights_lsb=w), *image.layers[1:])
    )
    assert image_hash(changed) != image_hash(image)


def test_the_local_cluster_is_sized_to_the_cores():
    assert local_cluster_size(None, None, cores=2) == (2, 1)
    assert local_cluster_size(1, None, cores=2) == (1, 2)
    assert local_cluster_size(None, 2, cores=8) == (4, 2)
    assert local_cluster_size(3, 1, cores=2) == (3, 1)


def test_pareto_front_against_a_brute_force_check():
    rng = np.random.default_rng(0)
    points = [{"accuracy": float(a), "c": float(c)} for a, c in rng.integers(0, 6, size=(40, 2))]
    front = set(pareto_front(points, ("c",)))
    for i, p in enumerate(points):
        beaten = any(
            q["accuracy"] >= p["accuracy"] and q["c"] <= p["c"] and (q["accuracy"], q["c"]) != (p["accuracy"], p["c"])
            for q in points
        )
        assert (i in front) == (not beaten)


def test_the_report_has_the_table_csv_and_plots(clean_run, capsys):
    pytest.importorskip("matplotlib")
    out, _, points, _ = clean_run
    report = sweep_report(out)
    assert report["state"] == "finished" and report["done"] == 8 and report["pending"] == 0
    assert len(report["plots"]) == 4 and all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in report["plots"])
    lines = Path(report["csv"]).read_text().splitlines()
    assert len(lines) == 9 and "accuracy" in lines[0] and "train.hidden" in lines[0]
    # Each front: its points are not dominated in (accuracy, that cost).
    for key, hashes in report["fronts"].items():
        assert hashes
        for h in hashes:
            p = next(q for q in points if q["config_hash"] == h)
            assert not any(q["accuracy"] > p["accuracy"] and q[key] < p[key] for q in points)
    table = format_table(report["rows"])
    assert len(table.splitlines()) == 9 and "weight_bits" in table.splitlines()[0]
    assert cli.main(["sweep-report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("finished: 8 done, 0 failed, 0 running, 0 pending of 8 points")
    assert "dask dashboard: http://" in printed


def test_a_report_of_a_directory_without_a_sweep_is_one_error(tmp_path, capsys):
    assert cli.main(["sweep-report", str(tmp_path)]) == 2
    assert "no sweep here" in capsys.readouterr().err


def test_synthesis_results_written_through_the_store_show_in_the_report(clean_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(clean_run[0], out)
    report = sweep_report(out, plots=False)
    front = [r for r in report["rows"] if r.get("pareto")]
    with SweepStore(out, create=False) as store:
        store.record_synthesis(front[0]["config_hash"], {"lanes": 4, "logic_cells": 1234, "fmax_mhz": 31.5})
        store.record_synthesis(front[-1]["config_hash"], {"lanes": 4, "error": "too many SPRAM"})
    rows = sweep_report(out, plots=False)["rows"]
    table = format_table(rows).splitlines()
    assert "LCs" in table[0] and "fmax MHz" in table[0]
    by_point = {line.split()[0]: line for line in table[1:]}
    assert "1,234" in by_point[str(front[0]["point"])] and "31.5" in by_point[str(front[0]["point"])]
    assert "no fit" in by_point[str(front[-1]["point"])]


@pytest.mark.slow
@pytest.mark.needs("yosys", "nextpnr-ice40")
def test_the_synthesis_stage_runs_on_a_pareto_point(clean_run, tmp_path):
    import shutil

    import sweep_synth

    out = tmp_path / "copy"
    shutil.copytree(clean_run[0], out)
    assert sweep_synth.main([str(out), "--limit", "1"]) == 0
    with SweepStore(out, create=False) as store:
        (result,) = store.synthesis().values()
    assert result["logic_cells"] > 100 and result["fmax_mhz"] > 5
