"""Synthesis of the RTL core for the iCE40 UP5K (yosys + nextpnr-ice40) and a lanes sweep.

    python tools/rtl_synth.py datasets/pretrained/net100-int8.h5 --lanes 2 4 8 --sim-images 50
    python tools/rtl_synth.py datasets/pretrained/net100-int8.h5 --learning --lanes 2 4 8 --sim-train 50
    python tools/rtl_synth.py datasets/pretrained/net100-int8.h5 --learning --seeds 1 2 3 4 5
    python tools/rtl_synth.py datasets/pretrained/net100-int8.h5 --learning --no-synth --random-init 50 --sim-train 100

For each lane count: generate the parameter headers for the image's datapath and topology
(firmware_bridge.rtl.params.RtlLayout), synthesise pcl_up5k_top (core + weights in SPRAM +
byte-wide streams) with ``yosys synth_ice40``, place and route with ``nextpnr-ice40 --up5k
--package sg48`` and read logic cells, EBR, SPRAM and fmax from nextpnr's JSON report. With
--sim-images N the first N MNIST test images are also simulated (Icarus + cocotb) for cycles
per image, checked against the emulator, and images/s at fmax is derived (with --learning, in
the learning build: plain inference requests to the training core). With --learning the
core is the training build (pcl_learn beside the core; the image's learning rule, or the default
LearningConfig), synthesised with ``synth_ice40 -dsp`` (the draw's multipliers in SB_MAC16), and
--sim-train N trains it on N MNIST training samples (checked against the learner) for cycles per
training step and training samples/s at fmax. --seeds places the one synthesis with each nextpnr
seed (the table's fmax is the first seed's; the spread is printed). --random-init H replaces the
image by a seeded random 784-H-10 network of the same datapath (the exact trainer's init,
quantised; written to <out-dir>), for cycles at other hidden sizes. Prints a markdown table and
writes everything to <out-dir>/synth.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from firmware_bridge.rtl.params import RtlLayout
from firmware_bridge.rtl.sources import UP5K_FILE_LIST, read_file_list
from popcount_learn import h5io
from popcount_learn.learning import LearningConfig

SOURCES = read_file_list(UP5K_FILE_LIST)
UP5K = {"ICESTORM_LC": 5280, "ICESTORM_RAM": 30, "ICESTORM_SPRAM": 4, "ICESTORM_DSP": 8}


def synthesise(layout: RtlLayout, work: Path, freq_mhz: float, seeds, jobs: int = 1) -> dict:
    """Yosys once, then nextpnr once per seed (``jobs`` at a time); the result is the first
    seed's, with every seed's fmax."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    out = _yosys(layout, work)
    if "error" in out:
        return out
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = dict(zip(seeds, pool.map(lambda seed: _nextpnr(work, freq_mhz, seed), seeds), strict=True))
    first = runs[seeds[0]]
    out.update(first)
    out["seed"] = seeds[0]
    if len(seeds) > 1:
        out["fmax_by_seed"] = {str(s): r.get("fmax_mhz") for s, r in runs.items()}
    return out


def _yosys(layout: RtlLayout, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    layout.write_headers(work)
    srcs = " ".join(str(s) for s in SOURCES)
    t0 = time.perf_counter()
    yosys = subprocess.run(
        [
            "yosys",
            "-q",
            "-l",
            str(work / "yosys.log"),
            "-p",
            f"read_verilog -I{work} {srcs}; synth_ice40{' -dsp' if layout.learning is not None else ''} "
            f"-top pcl_up5k_top -json {work / 'top.json'}",
        ],
        capture_output=True,
        text=True,
    )
    if yosys.returncode != 0:
        return {"error": "yosys failed: " + (yosys.stderr or yosys.stdout)[-500:]}
    return {"yosys_seconds": round(time.perf_counter() - t0, 1)}


def cells_by_module(layout: RtlLayout, work: Path) -> dict:
    """Yosys ``synth_ice40 -noflatten``: LUT4s, flip-flops, carries, EBR and DSPs per module, summed
    over its instances (a module's name without its parameters; ``pcl_lane`` counts every lane)."""
    work.mkdir(parents=True, exist_ok=True)
    layout.write_headers(work)
    srcs = " ".join(str(s) for s in SOURCES)
    stat = work / "stat.json"
    yosys = subprocess.run(
        [
            "yosys",
            "-q",
            "-p",
            f"read_verilog -I{work} {srcs}; synth_ice40{' -dsp' if layout.learning is not None else ''} "
            f"-noflatten -top pcl_up5k_top; tee -q -o {stat} stat -json",
        ],
        capture_output=True,
        text=True,
    )
    if yosys.returncode != 0:
        return {"error": "yosys failed: " + (yosys.stderr or yosys.stdout)[-500:]}
    return cells_of_stat(stat.read_text())


def cells_of_stat(text: str) -> dict:
    """``cells_by_module``'s table from yosys's ``stat -json`` output."""
    # yosys 0.23 prints the hierarchy into the JSON after "modules": read that object only
    modules, _ = json.JSONDecoder().raw_decode(text, text.index("{", text.index('"modules"')))
    top = next(name for name in modules if name.endswith("pcl_up5k_top"))
    totals: dict[str, dict[str, int]] = {}

    def visit(name: str, times: int) -> None:
        kinds = {"LUT4": 0, "DFF": 0, "CARRY": 0, "EBR": 0, "DSP": 0, "SPRAM": 0}
        for cell, n in modules[name]["num_cells_by_type"].items():
            if cell in modules:
                visit(cell, times * n)
            elif cell == "SB_LUT4":
                kinds["LUT4"] += n
            elif cell.startswith("SB_DFF"):
                kinds["DFF"] += n
            elif cell == "SB_CARRY":
                kinds["CARRY"] += n
            elif cell.startswith("SB_RAM40"):
                kinds["EBR"] += n
            elif cell == "SB_MAC16":
                kinds["DSP"] += n
            elif cell == "SB_SPRAM256KA":
                kinds["SPRAM"] += n
        base = name.split("\\")[1] if name.startswith("$paramod") else name.lstrip("\\")
        row = totals.setdefault(base, dict.fromkeys(kinds, 0) | {"instances": 0})
        row["instances"] += times
        for k, v in kinds.items():
            row[k] += v * times

    visit(top, 1)
    return totals


def nextpnr_failure(returncode: int, stderr: str, utilization: dict) -> str:
    """Why a nextpnr run gave no report: "does not fit" only when a resource is over the part's
    count; a run stopped by a signal is "interrupted", any other exit "failed", with the status."""
    over = [f"{k} {v} of {UP5K[k]}" for k, v in utilization.items() if k in UP5K and v > UP5K[k]]
    errors = [line.strip() for line in stderr.splitlines() if "ERROR" in line]
    if over:
        return "does not fit: " + ", ".join(over)
    if returncode < 0:
        return f"nextpnr interrupted (signal {-returncode})"
    why = f": {errors[-1]}" if errors else ""
    return f"nextpnr failed (exit status {returncode}){why}"


def _nextpnr(work: Path, freq_mhz: float, seed: int) -> dict:
    t1 = time.perf_counter()
    report = work / f"report-seed{seed}.json"
    report.unlink(missing_ok=True)
    pnr = subprocess.run(
        [
            "nextpnr-ice40",
            "--up5k",
            "--package",
            "sg48",
            "--json",
            str(work / "top.json"),
            "--asc",
            str(work / f"top-seed{seed}.asc"),
            "--freq",
            str(freq_mhz),
            "--seed",
            str(seed),
            "--timing-allow-fail",
            "--pcf-allow-unconstrained",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
    )
    (work / f"nextpnr-seed{seed}.log").write_text(pnr.stderr + pnr.stdout)
    out = {"nextpnr_seconds": round(time.perf_counter() - t1, 1)}
    if pnr.returncode != 0 or not report.exists():
        util = dict(re.findall(r"(ICESTORM_\w+):\s+(\d+)/", pnr.stderr))
        out["utilization"] = {k: int(v) for k, v in util.items()}
        out["error"] = nextpnr_failure(pnr.returncode, pnr.stderr, out["utilization"])
        return out
    r = json.loads(report.read_text())
    out["utilization"] = {k: v["used"] for k, v in r["utilization"].items() if k in UP5K}
    out["fmax_mhz"] = min(v["achieved"] for v in r["fmax"].values())
    return out


def simulate_cycles(image, lanes: int, n_images: int, learning=None, first: int = 0) -> dict:
    from firmware_bridge.check import compare
    from firmware_bridge.rtl import sim as rtl_sim
    from popcount_learn.data import default_data_dir, load_mnist
    from popcount_learn.emulator import emulate

    test = load_mnist(default_data_dir(), "test")
    images = test.images[first : first + n_images]
    observed = rtl_sim.simulate(image, images, lanes=lanes, learning=learning)
    mismatches = len(compare(emulate(image, images), observed, body="RTL").mismatched)
    c = observed.cycles
    return {
        "sim_images": len(images),
        "sim_first_image": first,
        "mismatches": mismatches,
        "cycles_mean": float(c.mean()),
        "cycles_median": float(np.median(c)),
        "cycles_max": int(c.max()),
        "cycles_per_image": [int(v) for v in c],
        "sim_images_per_s": n_images / observed.sim_seconds,
    }


def simulate_training_cycles(image_path, lanes: int, n_steps: int) -> dict:
    from firmware_bridge import commands

    out = commands.rtl_train(image_path, steps=n_steps, lanes=lanes, check_every=max(1, n_steps // 5))
    return {
        "train_steps": out["steps"],
        "train_mismatches": out["mismatches"],
        "train_cycles_mean": out["cycles_mean"],
        "train_cycles_median": out["cycles_median"],
        "train_cycles_max": out["cycles_max"],
        "train_phase_cycles_mean": out["phase_cycles_mean"],
        "sim_train_steps_per_s": out["sim_steps_per_s"],
    }


def random_image(image, hidden: int, out_dir: Path):
    """A seeded random 784-hidden-10 image on ``image``'s datapath (and rule), and the file it is in."""
    from popcount_learn.data import default_data_dir, load_mnist
    from popcount_learn.encoding import SpikeEncoding
    from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image
    from popcount_learn.train import expected_active_inputs

    train = load_mnist(default_data_dir(), "train")
    encoding = SpikeEncoding()
    active = expected_active_inputs(train.images, encoding)
    start = random_initial_image((784, hidden, 10), image.spec, OnchipTrainConfig(seed=3), encoding, active)
    if image.learning is not None:
        start = dataclasses.replace(start, learning=image.learning)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"random-784-{hidden}-10.h5"
    h5io.save_weight_image(path, start)
    return start, str(path)


def print_by_module(rows) -> None:
    """One markdown table: per module, LUT4 / DFF / CARRY (EBR, DSP) at each lane count."""
    for r in rows:
        if "error" in r["by_module"]:
            print(f"{r['lanes']} lanes: {r['by_module']['error']}", file=sys.stderr)
    rows = [r for r in rows if "error" not in r["by_module"]]
    if not rows:
        return
    names = sorted(
        {m for r in rows for m in r["by_module"]}, key=lambda m: -rows[-1]["by_module"].get(m, {}).get("LUT4", 0)
    )
    print("\n| module | " + " | ".join(f"{r['lanes']} lanes: LUT4 / DFF / CARRY (EBR, DSP)" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for m in [*names, "total"]:
        cells = []
        for r in rows:
            mods = r["by_module"]
            c = (
                {k: sum(v[k] for v in mods.values()) for k in ("LUT4", "DFF", "CARRY", "EBR", "DSP")}
                if m == "total"
                else mods.get(m)
            )
            cells.append("-" if c is None else f"{c['LUT4']} / {c['DFF']} / {c['CARRY']} ({c['EBR']}, {c['DSP']})")
        print(f"| {m} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="weight image (its datapath and topology size the core)")
    p.add_argument("--lanes", type=int, nargs="+", default=[4])
    p.add_argument("--freq", type=float, default=30.0, help="nextpnr target MHz (default 30)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="nextpnr seeds (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="nextpnr runs at a time (default 1)")
    p.add_argument("--sim-images", type=int, default=0, help="also simulate N MNIST test images per lane count")
    p.add_argument("--sim-first", type=int, default=0, help="with --sim-images: start at test image K (default 0)")
    p.add_argument("--no-synth", action="store_true", help="only simulate (cycles per image vs lanes)")
    p.add_argument("--learning", action="store_true", help="the training build (the image's rule or the default)")
    p.add_argument("--sim-train", type=int, default=0, help="with --learning: train N MNIST samples per lane count")
    p.add_argument("--random-init", type=int, metavar="H", help="a seeded random 784-H-10 net instead of the image")
    p.add_argument("--by-module", action="store_true", help="only yosys, hierarchy kept: cells per module")
    p.add_argument("--out-dir", default="build/rtl-synth")
    args = p.parse_args(argv)
    for tool in () if args.no_synth else ("yosys", "nextpnr-ice40"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not on PATH (Debian: apt-get install yosys nextpnr-ice40)", file=sys.stderr)
            return 2
    image = h5io.load_weight_image(args.image)
    out_dir = Path(args.out_dir)
    if args.random_init:
        image, args.image = random_image(image, args.random_init, out_dir)
    learning = (image.learning or LearningConfig()) if args.learning else None
    rows = []
    for lanes in args.lanes:
        layout = RtlLayout.for_image(image, lanes, learning)
        row = {
            "lanes": lanes,
            "weight_words": layout.weight_words,
            "word_bits": layout.word_bits,
            "weight_ram_bytes": layout.weight_bytes,
            "state_bits": layout.state_bits,
        }
        if args.by_module:
            tag = "learn" if learning is not None else ""
            row["by_module"] = cells_by_module(layout, out_dir / f"{tag}lanes{lanes}-modules")
            print(json.dumps(row), flush=True)
            rows.append(row)
            continue
        if not args.no_synth:
            tag = "learn" if learning is not None else ""
            row.update(synthesise(layout, out_dir / f"{tag}lanes{lanes}", args.freq, args.seeds, args.jobs))
        if args.sim_images:
            row.update(simulate_cycles(image, lanes, args.sim_images, learning, args.sim_first))
            if "fmax_mhz" in row:
                row["images_per_s_at_fmax"] = row["fmax_mhz"] * 1e6 / row["cycles_mean"]
        if learning is not None and args.sim_train:
            row.update(simulate_training_cycles(args.image, lanes, args.sim_train))
            if "fmax_mhz" in row:
                row["train_samples_per_s_at_fmax"] = row["fmax_mhz"] * 1e6 / row["train_cycles_mean"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.by_module:
        (out_dir / "modules.json").write_text(json.dumps({"image": args.image, "rows": rows}, indent=1))
        print_by_module(rows)
        return 0
    (out_dir / "synth.json").write_text(json.dumps({"image": args.image, "rows": rows}, indent=1))

    print(
        "\n| lanes | logic cells (of 5,280) | EBR (of 30) | SPRAM (of 4) | DSP (of 8) | fmax MHz "
        "| cycles/image mean (median, max) | images/s at fmax | cycles/training step mean (median, max) "
        "| training samples/s at fmax |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        u = r.get("utilization", {})
        fmax = f"{r['fmax_mhz']:.1f}" if "fmax_mhz" in r else r.get("error", "?")
        cyc = f"{r['cycles_mean']:.0f} ({r['cycles_median']:.0f}, {r['cycles_max']})" if "cycles_mean" in r else "-"
        ips = f"{r['images_per_s_at_fmax']:,.0f}" if "images_per_s_at_fmax" in r else "-"
        tc = "-"
        if "train_cycles_mean" in r:
            tc = f"{r['train_cycles_mean']:.0f} ({r['train_cycles_median']:.0f}, {r['train_cycles_max']})"
        tps = f"{r['train_samples_per_s_at_fmax']:,.0f}" if "train_samples_per_s_at_fmax" in r else "-"
        print(
            f"| {r['lanes']} | {u.get('ICESTORM_LC', '?')} | {u.get('ICESTORM_RAM', '?')} "
            f"| {u.get('ICESTORM_SPRAM', '?')} | {u.get('ICESTORM_DSP', 0)} "
            f"| {fmax} | {cyc} | {ips} | {tc} | {tps} |"
        )
    for r in rows:
        if r.get("fmax_by_seed"):
            f = [v for v in r["fmax_by_seed"].values() if v is not None]
            spread = f"min {min(f):.2f}, median {float(np.median(f)):.2f}, max {max(f):.2f} MHz" if f else "no fit"
            seeds = ", ".join(f"{s}: {v:.2f}" if v else f"{s}: -" for s, v in r["fmax_by_seed"].items())
            print(f"\n{r['lanes']} lanes, fmax over nextpnr seeds ({seeds}): {spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
