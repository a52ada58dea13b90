"""RTL core vs emulator over (a range of) the MNIST test set, in chunks, with a running record.

    python tools/bench_rtl.py datasets/pretrained/net100-int8.h5 --lanes 4 --out runs/net100.jsonl

Each chunk of images is simulated (firmware_bridge.rtl.sim.simulate: Icarus + cocotb), emulated
(popcount_learn.emulator) and compared image by image; one JSON line per chunk goes to --out as
soon as the chunk is done, so an interrupted run keeps what it finished. The last line is the
summary: images compared, mismatching images (and the first one in full), cycles per image
(mean / median / max), simulated images/s. Exit code 1 on any mismatch.
``python tools/bench_rtl.py --summarize A.jsonl B.jsonl`` merges the chunks of split or
interrupted runs into one summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

from firmware_bridge.check import compare
from firmware_bridge.rtl import sim as rtl_sim
from popcount_learn import h5io
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate


def _merged(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [f"{a}..{b - 1}" for a, b in out]


def summarize_records(paths) -> dict:
    """Merge the chunk records of one or more --out files (e.g. a run split over processes)."""
    chunks = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            rec = json.loads(line)
            if not rec.get("summary"):
                chunks[(rec["image"], rec["lanes"], rec["start"], rec["end"])] = rec
    recs = sorted(chunks.values(), key=lambda r: (r["image"], r["lanes"], r["start"]))
    n = int(sum(r["end"] - r["start"] for r in recs))
    seconds = sum(r["sim_seconds"] for r in recs)
    out = {
        "images": n,
        "ranges": _merged([(r["start"], r["end"]) for r in recs]),
        "lanes": sorted({r["lanes"] for r in recs}),
        "mismatches": int(sum(r["mismatches"] for r in recs)),
        "sim_images_per_s_per_process": n / seconds if seconds else None,
    }
    if n and all("cycles" in r for r in recs):
        cycles = np.concatenate([r["cycles"] for r in recs])
        steps = np.concatenate([r["steps_to_decision"] for r in recs])
        out.update(
            cycles_mean=float(cycles.mean()),
            cycles_median=float(np.median(cycles)),
            cycles_max=int(cycles.max()),
            steps_to_decision_mean=float(steps.mean()),
        )
    elif n:  # records of an older run: chunk means and maxima only
        out.update(
            cycles_mean=sum(r["cycles_mean"] * (r["end"] - r["start"]) for r in recs) / n,
            cycles_median=None,
            cycles_max=max(r["cycles_max"] for r in recs),
        )
    return out


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--summarize":
        print(json.dumps(summarize_records(argv[1:]), indent=1))
        return 0
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="python tools/bench_rtl.py --summarize OUT.jsonl... merges recorded chunks",
    )
    p.add_argument("image")
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="images from --start (default: to the end)")
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--data", default=None)
    p.add_argument("--out", required=True, help="JSON-lines record, appended to")
    args = p.parse_args(argv)

    image = h5io.load_weight_image(args.image)
    test = load_mnist(args.data or default_data_dir(), "test")
    stop = len(test.labels) if args.limit is None else min(len(test.labels), args.start + args.limit)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cycles, steps, correct, mismatches, first = [], [], 0, 0, None
    sim_seconds = 0.0
    t0 = time.perf_counter()
    for start in range(args.start, stop, args.chunk):
        end = min(stop, start + args.chunk)
        images = test.images[start:end]
        observed = rtl_sim.simulate(image, images, lanes=args.lanes)
        expected = emulate(image, images)
        comparison = compare(expected, observed, body="RTL")
        if comparison.mismatched and first is None:
            first = (
                f"test image {start + comparison.mismatched[0]} (chunk offset {start}):\n" + comparison.first_mismatch
            )
        mismatches += len(comparison.mismatched)
        cycles.append(observed.cycles)
        steps.append(observed.steps_to_decision)
        correct += int(np.sum(observed.predicted == test.labels[start:end]))
        sim_seconds += observed.sim_seconds
        record = {
            "image": args.image,
            "lanes": args.lanes,
            "start": start,
            "end": end,
            "mismatches": len(comparison.mismatched),
            "cycles_mean": float(observed.cycles.mean()),
            "cycles_max": int(observed.cycles.max()),
            "sim_seconds": round(observed.sim_seconds, 2),
            "cycles": observed.cycles.tolist(),
            "steps_to_decision": observed.steps_to_decision.tolist(),
        }
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k not in ("cycles", "steps_to_decision")}), flush=True)
    c = np.concatenate(cycles)
    n = len(c)
    summary = {
        "summary": True,
        "image": args.image,
        "lanes": args.lanes,
        "start": args.start,
        "end": stop,
        "images": n,
        "mismatches": mismatches,
        "first_mismatch": first,
        "accuracy": correct / n,
        "steps_to_decision_mean": float(np.concatenate(steps).mean()),
        "cycles_mean": float(c.mean()),
        "cycles_median": float(np.median(c)),
        "cycles_max": int(c.max()),
        "sim_images_per_s": n / sim_seconds,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    with out.open("a") as f:
        f.write(json.dumps(summary) + "\n")
    print(json.dumps(summary), flush=True)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
