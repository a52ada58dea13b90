"""The optional synthesis stage of a sweep: yosys + nextpnr-ice40 on its Pareto points only.

    python tools/sweep_synth.py DIR [--freq 30] [--seed 1] [--limit N]

Reads DIR/sweep.sqlite (popcount-learn sweep), takes the points on the front of all five
objectives (``pareto`` in ``popcount-learn sweep-report DIR``), synthesises each one's weight
image for the iCE40 UP5K at the lanes it was priced with (``tools/rtl_synth.py``: logic cells,
EBR, SPRAM, fmax after place and route) and writes the results back through the store's API
(``SweepStore.record_synthesis``); ``sweep-report`` then shows logic cells and fmax beside the
points. A point whose weights do not fit the UP5K is recorded with nextpnr's error. Points
already synthesised are skipped (``--again`` redoes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtl_synth import synthesise

from firmware_bridge.rtl.params import RtlLayout
from popcount_learn import h5io
from popcount_learn.sweep import SweepStore
from popcount_learn.sweep.report import sweep_report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--freq", type=float, default=30.0, help="nextpnr target MHz (default 30)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    p.add_argument("--limit", type=int, default=None, help="at most N Pareto points, most accurate first")
    p.add_argument("--again", action="store_true", help="synthesise points that already have a result")
    p.add_argument("--work", default=None, help="build directory (default DIR/synth)")
    args = p.parse_args(argv)
    for tool in ("yosys", "nextpnr-ice40"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not on PATH (Debian: apt-get install yosys nextpnr-ice40)", file=sys.stderr)
            return 2
    report = sweep_report(args.directory, plots=False)
    front = sorted((r for r in report["rows"] if r.get("pareto")), key=lambda r: -r["accuracy"])
    work = Path(args.work or Path(args.directory) / "synth")
    with SweepStore(args.directory, create=False) as store:
        done = store.synthesis()
        todo = [r for r in front if args.again or r["config_hash"] not in done][: args.limit]
        for r in todo:
            image = h5io.load_weight_image(Path(args.directory) / r["image_file"])
            lanes = store_lanes(store, r["config_hash"])
            layout = RtlLayout.for_image(image, lanes)
            result = synthesise(layout, work / r["config_hash"][:16], args.freq, args.seed)
            util = result.get("utilization", {})
            record = {
                "lanes": lanes,
                "logic_cells": util.get("ICESTORM_LC"),
                "ebr": util.get("ICESTORM_RAM"),
                "spram": util.get("ICESTORM_SPRAM"),
                "fmax_mhz": result.get("fmax_mhz"),
                "error": result.get("error"),
                "target_mhz": args.freq,
                "nextpnr_seed": args.seed,
            }
            if record["fmax_mhz"]:
                record["images_per_s_at_fmax"] = record["fmax_mhz"] * 1e6 / r["cycles_per_image"]
            store.record_synthesis(r["config_hash"], record)
            print(json.dumps({"point": r["point"], "config_hash": r["config_hash"][:16], **record}), flush=True)
    print(f"{len(todo)} Pareto point(s) synthesised, {len(front) - len(todo)} skipped; see popcount-learn sweep-report")
    return 0


def store_lanes(store: SweepStore, config_hash: str) -> int:
    point = next(p for p in store.points() if p["config_hash"] == config_hash)
    return int(point["config"]["hardware"]["lanes"])


if __name__ == "__main__":
    sys.exit(main())
