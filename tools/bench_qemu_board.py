"""A QEMU Cortex-M board (default mps2_an385): link throughput, upload time, inference latency.

Usage: python tools/bench_qemu_board.py [--board mps2_an385] [--images 200] [--batch-images 1000]
                                        [--train-steps 50]

In one run, side by side with the host virtual board where it applies:
- raw UART link (the board's bring-up self-test): time to the first answer on a fresh pty,
  host->board and board->host throughput (40 kB each, median of 3);
- per weight image (shipped net600-int8 and its 784-100-10 and 784-32-10 cuts, each only if it
  fits the board's weight memory and neuron count): full upload time and throughput;
  single-INFER round-trip latency per image (median over --images test images); INFER_BATCH
  throughput over --batch-images images (all results compared with the emulator);
- on-board training steps/s (--train-steps, default LearningConfig) on the QEMU board, on the
  largest of the two cuts that fits.
--board is any folder of firmware/boards/ that declares a QEMU_MACHINE (see --help).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _machine import machine

from firmware_bridge.boards import launch
from firmware_bridge.boards.qemu import build_selftest, qemu_boards, qemu_machine, start_qemu
from firmware_bridge.boards.selftest_link import SelftestLink
from firmware_bridge.check import compare
from firmware_bridge.commands import image_input_bits, run_on_board, train_side_by_side, upload_image
from firmware_bridge.wire.client import BoardClient
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate
from popcount_learn.h5io import load_weight_image
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import LayerImage, WeightImage, upload_bytes


def cut_hidden(image: WeightImage, n_hidden: int) -> WeightImage:
    hidden, output = image.layers
    return WeightImage(
        image.spec,
        (
            LayerImage(np.ascontiguousarray(hidden.weights_lsb[:, :n_hidden]), hidden.threshold_lsb, hidden.scale),
            LayerImage(
                np.ascontiguousarray(np.concatenate([output.weights_lsb[:n_hidden], output.weights_lsb[-1:]])),
                output.threshold_lsb,
                output.scale,
            ),
        ),
    )


def raw_link(board_name: str) -> dict:
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_qemu(build_selftest(board_name, tmp), qemu_machine(board_name)) as board,
        SelftestLink(board.port) as link,
    ):
        first_answer_s = link.handshake()
        payload = bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8))
        to_board, to_host = [], []
        for _ in range(3):
            t = time.perf_counter()
            link.sink(payload)
            to_board.append(len(payload) / (time.perf_counter() - t) / 1e3)
            t = time.perf_counter()
            got = link.source(len(payload))
            to_host.append(len(got) / (time.perf_counter() - t) / 1e3)
        return {
            "first_answer_s": round(first_answer_s, 2),
            "host_to_board_kB_per_s": round(statistics.median(to_board), 1),
            "board_to_host_kB_per_s": round(statistics.median(to_host), 1),
        }


def image_figures(client: BoardClient, image: WeightImage, images: np.ndarray, n_single: int) -> dict:
    stream = upload_bytes(image)
    t = time.perf_counter()
    upload_image(client, image)
    upload_s = time.perf_counter() - t
    bits = image_input_bits(image, images)
    latencies = []
    for b in bits[:n_single]:
        t = time.perf_counter()
        client.infer(b)
        latencies.append(time.perf_counter() - t)
    t = time.perf_counter()
    board = run_on_board(client, image, images)
    batch_s = time.perf_counter() - t
    summary = compare(emulate(image, images), board, body="board").summary()
    return {
        "topology": "-".join(map(str, image.topology)),
        "image_bytes": len(stream),
        "upload_s": round(upload_s, 1),
        "upload_kB_per_s": round(len(stream) / upload_s / 1e3, 1),
        "infer_latency_ms_median": round(1e3 * statistics.median(latencies), 2),
        "infer_latency_ms_p90": round(1e3 * float(np.percentile(latencies, 90)), 2),
        "batch_images_per_s": round(len(images) / batch_s, 1),
        "batch_images": len(images),
        "batch_mismatches": summary["mismatches"],
    }


def fits(image: WeightImage, info) -> bool:
    return len(upload_bytes(image)) <= info.weight_capacity_bytes and sum(image.topology[1:]) <= info.max_neurons


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--board",
        default=launch.DEFAULT_QEMU_BOARD,
        choices=qemu_boards(),
        help="QEMU board folder (default: %(default)s)",
    )
    ap.add_argument("--images", type=int, default=200, help="single-INFER round trips per image")
    ap.add_argument("--batch-images", type=int, default=1000)
    ap.add_argument("--train-steps", type=int, default=50)
    args = ap.parse_args(argv)
    data = default_data_dir()
    test = load_mnist(data, "test").images[: args.batch_images]
    train = load_mnist(data, "train")
    shipped = load_weight_image(HERE.parent / "datasets" / "pretrained" / "net600-int8.h5")
    candidates = (
        ("net600-int8", shipped),
        ("784-100-10 cut", cut_hidden(shipped, 100)),
        ("784-32-10 cut", cut_hidden(shipped, 32)),
    )
    rule = LearningConfig()
    out = {
        "command": "python tools/bench_qemu_board.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[0],
        "board": args.board,
        "qemu_machine": qemu_machine(args.board),
        "raw_uart_link_qemu": raw_link(args.board),
    }
    images = None
    for name, board_name in ((f"qemu_{args.board}", args.board), ("host", None)):
        t = time.perf_counter()
        with (
            launch.start_virtual_board(
                shipped.spec, qemu=board_name is not None, board=board_name, learning=rule
            ) as board,
            BoardClient(board.port, timeout_s=10.0) as client,
        ):
            info = client.info()
            first_info_s = time.perf_counter() - t
            figures = {"start_to_first_info_s": round(first_info_s, 2)}
            if images is None:  # the QEMU board's capacity decides; the host runs the same images
                images = [(label, image) for label, image in candidates if fits(image, info)]
                figures["images_that_do_not_fit"] = [label for label, image in candidates if not fits(image, info)]
            for label, image in images:
                figures[label] = image_figures(client, image, test, args.images)
            if board_name is not None and args.train_steps:
                cut = next(image for label, image in images if label.endswith("cut"))
                summary = train_side_by_side(
                    client,
                    cut,
                    rule,
                    train.images[: args.train_steps],
                    train.labels[: args.train_steps],
                    check_every=args.train_steps,
                )
                figures["train_" + "-".join(map(str, cut.topology))] = {
                    k: summary[k] for k in ("steps", "mismatches", "board_steps_per_s", "weights_changed")
                }
        out[name] = figures
    out["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
