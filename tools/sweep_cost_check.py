"""The cost model checked on a sweep's points: predicted against simulated RTL cycles, memory
against RtlLayout and the weight image file.

    python tools/sweep_cost_check.py DIR --points 3 --images 30

Takes --points of the overall Pareto points of DIR, spread from the cheapest to the most accurate, simulates the
first --images MNIST test images of each on the core (Icarus + cocotb, at the lanes the point was
priced with), and prints one JSON line per point: predicted and simulated cycles per image (mean,
largest per-image difference), the mean relative error, the emulator == RTL verdict, and the
model's weight memory beside RtlLayout's and the image's upload stream beside the model's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from firmware_bridge.check import compare
from firmware_bridge.rtl import sim as rtl_sim
from firmware_bridge.rtl.params import RtlLayout
from popcount_learn import cost, h5io
from popcount_learn.data import load_split
from popcount_learn.emulator import emulate
from popcount_learn.sweep.report import sweep_report
from popcount_learn.weight_image import upload_bytes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--points", type=int, default=3)
    p.add_argument("--images", type=int, default=30)
    args = p.parse_args(argv)
    report = sweep_report(args.directory, plots=False)
    front = sorted((r for r in report["rows"] if r.get("pareto")), key=lambda r: r["cycles_per_image"])
    if len(front) > args.points:  # spread over the front: the cheapest, the most accurate and between
        picks = np.linspace(0, len(front) - 1, args.points).round().astype(int)
        front = [front[i] for i in dict.fromkeys(picks.tolist())]
    images = load_split(None, "test", args.images).images
    for r in front:
        image = h5io.load_weight_image(Path(args.directory) / r["image_file"])
        lanes = int(_lanes(args.directory, r["config_hash"]))
        expected = emulate(image, images)
        predicted = cost.cycles_per_image(expected, lanes)
        observed = rtl_sim.simulate(image, images, lanes=lanes)
        simulated = observed.cycles.astype(np.int64)
        mem = cost.memory(image.spec, image.topology, lanes)
        layout = RtlLayout.for_image(image, lanes)
        print(
            json.dumps(
                {
                    "point": r["point"],
                    "topology": list(image.topology),
                    "weight_bits": image.spec.weight_bits,
                    "time_shift": image.spec.time_shift,
                    "lanes": lanes,
                    "images": len(images),
                    "rtl_equals_emulator": compare(expected, observed, body="RTL").verdict(),
                    "cycles_predicted_mean": float(predicted.mean()),
                    "cycles_simulated_mean": float(simulated.mean()),
                    "mean_relative_error": float((predicted.mean() - simulated.mean()) / simulated.mean()),
                    "largest_per_image_difference": int(np.abs(predicted - simulated).max()),
                    "weight_memory_bytes_model": mem["weight_memory_bytes"],
                    "weight_memory_bytes_rtl_layout": layout.weight_bytes,
                    "upload_bytes_model": mem["upload_bytes"],
                    "upload_bytes_image": len(upload_bytes(image)),
                }
            ),
            flush=True,
        )
    return 0


def _lanes(directory, config_hash: str) -> int:
    from popcount_learn.sweep import SweepStore

    with SweepStore(directory, create=False) as store:
        return next(p for p in store.points() if p["config_hash"] == config_hash)["config"]["hardware"]["lanes"]


if __name__ == "__main__":
    sys.exit(main())
