"""Graded (STEPS-form) inference on a QEMU board: inputs sorted by step once per image against the
old scan of every input at each arrival step, side by side in one run.

Usage: PYTHONPATH=$PWD python tools/bench_graded_infer.py [--board mps2_an385] [--images 200]
                                                        [--rounds 3] [--batch 2]

Builds the board's firmware twice from the same sources: as shipped (sorted inputs) and with
EXTRA_DEFS=-DPCL_GRADED_ORDER_INPUTS=0u (every image takes the scan, the code before issue 14's
last part). Both QEMU boards run at once with the same graded image (tests/factories.py
graded_net100, cut to fit); each round sends --images graded MNIST test images to one board, then
the other (INFER_BATCH of --batch images), so both see the same load. Every result is compared
with the emulator. Prints one JSON object: wall ms per image (median over rounds) and the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from _machine import machine
from bench_qemu_board import cut_hidden, fits
from factories import graded_net100

from firmware_bridge.boards.build import build_firmware
from firmware_bridge.boards.qemu import qemu_boards, qemu_machine, start_qemu
from firmware_bridge.check import compare
from firmware_bridge.commands import run_on_board, upload_image
from firmware_bridge.wire.client import BoardClient
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate

VARIANTS = {"sorted": {}, "scan": {"EXTRA_DEFS": "-DPCL_GRADED_ORDER_INPUTS=0u"}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="mps2_an385", choices=qemu_boards())
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2, help="images per INFER_BATCH request")
    args = ap.parse_args(argv)

    graded = graded_net100()
    test = load_mnist(default_data_dir(), "test")
    images = test.images[: args.images]
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out["loadavg_start"] = Path("/proc/loadavg").read_text().split()[0]
    elves = {name: build_firmware(graded.spec, board=args.board, make_vars=mv) for name, mv in VARIANTS.items()}
    boards, clients = {}, {}
    try:
        for name, elf in elves.items():
            boards[name] = start_qemu(elf, qemu_machine(args.board))
            clients[name] = BoardClient(boards[name].port, timeout_s=30.0).__enter__()
        info = clients["sorted"].info()
        # the whole 784-100-10 where it fits, else the 784-32-10 cut the QEMU tests use
        image = graded if fits(graded, info) else dataclasses.replace(cut_hidden(graded, 32), encoding=graded.encoding)
        for client in clients.values():
            upload_image(client, image)
        expected = emulate(image, images)
        times = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, client in clients.items():
                t = time.perf_counter()
                result = run_on_board(client, image, images, batch_size=args.batch)
                times[name].append(time.perf_counter() - t)
                comparison = compare(expected, result, body=f"board ({name})")
                if not comparison.ok:
                    raise SystemExit(comparison.verdict())
        ms = {name: round(1e3 * statistics.median(t) / len(images), 2) for name, t in times.items()}
        out.update(
            board=args.board,
            topology="-".join(map(str, image.topology)),
            images=len(images),
            rounds=args.rounds,
            batch=args.batch,
            ms_per_image_median=ms,
            ms_per_image_all={name: [round(1e3 * x / len(images), 2) for x in t] for name, t in times.items()},
            scan_over_sorted=round(ms["scan"] / ms["sorted"], 2),
            bit_exact="both == emulator on every round",
        )
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)
        for board in boards.values():
            board.stop()
    out["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
