"""Host virtual board over a pty: bit-exactness on the full test set, throughput, framing share.

    python tools/bench_board.py [--images A.h5 B.h5] [--limit N] [--train-steps K] [--learn F=V ...] [--json]

Per image, on a freshly built host board for the image's spec (and learning rule, default
``LearningConfig()`` for an inference-only image):
- ``board compare`` on the test set (every field of every image vs the emulator);
- full weight upload time (median of 5), read-back time;
- inferences/s over the pty with single INFER round trips and with INFER_BATCH;
- training steps/s over the pty, and ``train_side_by_side`` for K steps (read-back compared
  byte for byte every 100 steps and at the end);
- where the time goes: firmware compute alone and through the protocol handler (the C
  micro-benchmark ``pcl-bench``: CRC, COBS, dispatch, reply encoding, no I/O), host-side
  framing (Python encode/decode of the same frames), the rest is pty transit and scheduling.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine

from firmware_bridge import commands
from firmware_bridge.boards import build, launch
from firmware_bridge.check import compare
from firmware_bridge.commands import image_input_bits, run_on_board
from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.client import BoardClient
from popcount_learn.cli import options_dict, spec_item
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate, encode_input_steps
from popcount_learn.h5io import load_weight_image
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import upload_bytes

REPO = Path(__file__).resolve().parent.parent


REPEATS = 5  # timed sections run this often; the minimum is reported (the machine is shared)


def best_of(fn, repeats: int = REPEATS) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def host_framing_us(client_results_payloads, request_payloads, msg_type) -> float:
    """Python cost per round trip of framing: encode the request, decode (COBS, CRC, fields) the reply."""
    frames = [p.encode_frame(msg_type | p.REPLY, i, pl) for i, pl in enumerate(client_results_payloads)]

    def run():
        for i, pl in enumerate(request_payloads):
            p.encode_frame(msg_type, i, pl)
        dec = p.FrameDecoder()
        for f in frames:
            for item in dec.feed(f):
                if msg_type == p.MsgType.INFER:
                    p.decode_infer_reply(item.payload)
                else:
                    p.decode_train_reply(item.payload)

    return best_of(run) / len(request_payloads) * 1e6


def bench_image(path: Path, args, build_root: Path) -> dict:
    image = load_weight_image(path)
    learning = image.learning or LearningConfig()
    if args.learn:
        learning = LearningConfig.from_options(options_dict(args.learn, "--learn"), **learning.to_dict())
    test = load_mnist(default_data_dir(), "test")
    train = load_mnist(default_data_dir(), "train")
    images, labels = test.images[: args.limit], test.labels[: args.limit]
    stream = upload_bytes(image)
    out = {"image": path.name, "image_bytes": len(stream)}
    with (
        launch.start_virtual_board(image.spec, learning=learning, build_root=build_root) as board,
        BoardClient(board.port, timeout_s=30.0) as client,
    ):
        out["upload_s"] = best_of(lambda: commands.upload_image(client, image))
        assert client.read_image(len(stream)) == stream
        out["readback_s"] = best_of(lambda: client.read_image(len(stream)))

        # Bit-exactness on the test set (board in batches, then the emulator, then the checker).
        t0 = time.perf_counter()
        board_results = run_on_board(client, image, images)
        board_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emu = emulate(image, images)
        emu_s = time.perf_counter() - t0
        summary = compare(emu, board_results, body="board").summary()
        out.update(
            n=summary["n"],
            mismatches=summary["mismatches"],
            first_mismatch=summary["first_mismatch"],
            board_accuracy=float(np.mean(board_results.predicted == labels)),
            emulator_accuracy=float(np.mean(emu.predicted == labels)),
            compare_board_s=board_s,
            compare_emulator_s=emu_s,
        )

        # Throughput on the first `single` images: INFER_BATCH and single INFER round trips.
        bits = image_input_bits(image, images[: args.single])
        batch = client.batch_size_hint(len(bits[0]))
        out["batch_images"] = batch
        out["batch_inferences_per_s"] = len(bits) / best_of(
            lambda: [client.infer_batch(bits[i : i + batch]) for i in range(0, len(bits), batch)]
        )
        single_s = best_of(lambda: [client.infer(b) for b in bits])
        replies = [client.infer(b) for b in bits]
        out["single_inferences_per_s"] = len(bits) / single_s
        out["single_round_trip_us"] = single_s / len(bits) * 1e6
        out["infer_reply_bytes_mean"] = float(np.mean([len(p.encode_result(r)) for r in replies]))
        out["host_framing_infer_us"] = host_framing_us([p.encode_result(r) for r in replies], bits, p.MsgType.INFER)

        # Training: steps/s of the board alone, then side by side with the emulator.
        steps = commands.training_order(len(train.images), args.train_steps, seed=0)
        t_images, t_labels = train.images[steps], train.labels[steps]
        summary = commands.train_side_by_side(client, image, learning, t_images, t_labels, check_every=100)
        out.update(
            train_steps=summary["steps"],
            train_mismatches=summary["mismatches"],
            train_first_mismatch=summary["first_mismatch"],
            train_weight_checks=summary["weight_checks"],
            train_weights_changed=summary["weights_changed"],
            train_board_steps_per_s=summary["board_steps_per_s"],
            train_emulator_steps_per_s=summary["emulator_steps_per_s"],
            train_final_crc32=summary["final_crc32"],
        )
        enc = encode_input_steps(image.spec, t_images[:500])
        payloads = [p.encode_train_step(i, int(t_labels[i]), p.input_bits(enc[i] == 0)) for i in range(len(enc))]
        train_times = []
        for _ in range(3):  # the same steps from the same weights each time
            commands.upload_image(client, image)
            t0 = time.perf_counter()
            train_replies = [client.train_step(i, int(t_labels[i]), p.input_bits(enc[i] == 0)) for i in range(len(enc))]
            train_times.append(time.perf_counter() - t0)
        out["train_round_trip_us"] = min(train_times) / len(enc) * 1e6
        out["train_steps_per_s_pty"] = len(enc) / min(train_times)
        reply_payloads = [
            p._TRAIN_REPLY.pack(
                r.predicted, r.first_output_step, r.weights_changed, r.neurons_with_delta, r.hidden_spikes_delivered
            )
            for r in train_replies
        ]
        out["host_framing_train_us"] = host_framing_us(reply_payloads, payloads, p.MsgType.TRAIN_STEP)

    # Firmware compute vs protocol handler, no I/O (C micro-benchmark).
    bench = build.build_c_bench(image.spec, learning=learning, build_root=build_root)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "image").write_bytes(stream)
        (tmp / "bits").write_bytes(b"".join(x.body for x in image_input_bits(image, images[: args.single])))
        (tmp / "train").write_bytes(b"".join(payloads))
        r = subprocess.run(
            [str(bench), str(tmp / "image"), str(tmp / "bits"), str(tmp / "train")],
            capture_output=True,
            text=True,
            check=True,
        )
        out["c_bench"] = json.loads(r.stdout)
    c = out["c_bench"]
    rt = out["single_round_trip_us"]
    board_framing = c["infer_via_handler_us"] - c["infer_compute_us"]
    out["single_infer_time_share"] = {
        "board_compute": c["infer_compute_us"] / rt,
        "board_framing": board_framing / rt,
        "host_framing": out["host_framing_infer_us"] / rt,
        "pty_and_scheduling": 1 - (c["infer_via_handler_us"] + out["host_framing_infer_us"]) / rt,
    }
    trt = out["train_round_trip_us"]
    out["single_train_time_share"] = {
        "board_compute": c["train_compute_us"] / trt,
        "board_framing": (c["train_via_handler_us"] - c["train_compute_us"]) / trt,
        "host_framing": out["host_framing_train_us"] / trt,
        "pty_and_scheduling": 1 - (c["train_via_handler_us"] + out["host_framing_train_us"]) / trt,
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--images",
        nargs="+",
        default=[str(REPO / "datasets/pretrained/net600-int8.h5"), str(REPO / "datasets/pretrained/net800-int8.h5")],
    )
    ap.add_argument("--limit", type=int, default=10000, help="test images compared (default: all)")
    ap.add_argument("--single", type=int, default=2000, help="images for the single-round-trip figures")
    ap.add_argument("--train-steps", type=int, default=1000)
    ap.add_argument(
        "--learn",
        nargs="*",
        default=[],
        type=spec_item,
        metavar="FIELD=VALUE",
        help="override fields of the learning rule (default: the image's, else LearningConfig())",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as build_root:
        results = [bench_image(Path(path), args, Path(build_root)) for path in args.images]
    report = {"machine": machine(), "results": results}
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    print(json.dumps(report["machine"]))
    for r in results:
        print(f"\n== {r['image']} ({r['image_bytes']} bytes)")
        for k, v in r.items():
            if k in ("image",):
                continue
            print(f"  {k:32s} {json.dumps(v, default=lambda x: round(x, 4)) if isinstance(v, dict) else v}")
    return 0 if all(r["mismatches"] == 0 and r["train_mismatches"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
