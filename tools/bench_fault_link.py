"""Hardening run: BoardClient through the fault-injection proxy to the host virtual board.

Usage: python tools/bench_fault_link.py [--frames 100000] [--rate 0.01] [--seed 1]
                                        [--timeout 0.05] [--retries 3] [--qemu]

Every byte in both directions is corrupted with probability --rate (a different value);
``--drop`` / ``--duplicate`` add those faults. The client issues a fixed mix of requests (INFO,
READ_IMAGE of 16..64 bytes at a random offset, INFER of an MNIST test image) against a
784-32-10 int8 image and checks every accepted answer against the truth: the emulator for
INFER (every field: class, first output step, tie, every spike step, counters), the uploaded
stream for READ_IMAGE, the known image state for INFO. A call ends in exactly one of:
  ok           the right answer (possibly after resends);
  wrong        an answer that differs from the truth (must be 0);
  typed error  a firmware_bridge BoardError subclass (counted per class);
  untyped      any other exception (must be 0: that is a client bug).
Runs until the frames through the proxy (client requests + resends, board replies) reach
--frames. Prints one JSON object; exits 1 if any answer was wrong or any error untyped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from _machine import machine

from firmware_bridge.boards import launch
from firmware_bridge.boards.faults import FaultProxy, FaultRates
from firmware_bridge.check import compare
from firmware_bridge.commands import board_observations, image_input_bits, upload_image
from firmware_bridge.errors import BoardError
from firmware_bridge.wire.client import BoardClient
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate
from popcount_learn.h5io import load_weight_image
from popcount_learn.weight_image import LayerImage, WeightImage, image_crc32, upload_bytes

DELIMITER = 0x00
N_DISTINCT_INPUTS = 64


def link_test_image(n_hidden: int = 32) -> WeightImage:
    """The shipped net600-int8 cut to its first ``n_hidden`` hidden neurons (short replies)."""
    full = load_weight_image(HERE.parent / "datasets" / "pretrained" / "net600-int8.h5")
    hidden, output = full.layers
    return WeightImage(
        full.spec,
        (
            LayerImage(np.ascontiguousarray(hidden.weights_lsb[:, :n_hidden]), hidden.threshold_lsb, hidden.scale),
            LayerImage(
                np.ascontiguousarray(np.concatenate([output.weights_lsb[:n_hidden], output.weights_lsb[-1:]])),
                output.threshold_lsb,
                output.scale,
            ),
        ),
    )


def run_fault_link(
    board_port: str,
    image: WeightImage,
    *,
    frames: int,
    rates: FaultRates,
    seed: int,
    timeout_s: float,
    retries: int,
    data_dir=None,
    progress=None,
) -> dict:
    """Drive ``board_port`` (image already loaded) through a faulty proxy; count outcomes."""
    images = load_mnist(data_dir or default_data_dir(), "test").images[:N_DISTINCT_INPUTS]
    bits = image_input_bits(image, images)
    truth = emulate(image, images)
    stream = upload_bytes(image)
    crc = image_crc32(image)
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    per_kind: Counter = Counter()
    wrong_examples: list[str] = []
    start = time.perf_counter()
    with (
        FaultProxy(board_port, to_board=rates, to_client=rates, seed=seed, mark_byte=DELIMITER) as proxy,
        BoardClient(proxy.client_port, timeout_s=timeout_s, retries=retries) as client,
    ):

        def frames_so_far() -> int:
            return client.stats["requests"] + client.stats["resends"] + proxy.counts()["to_client"]["marks_out"]

        calls = 0
        while frames_so_far() < frames:
            kind = ("info", "read", "infer")[calls % 3]
            calls += 1
            try:
                if kind == "info":
                    info = client.info()
                    ok = info.image_loaded and info.image_crc32 == crc and info.image_bytes == len(stream)
                    detail = f"INFO {info}"
                elif kind == "read":
                    length = int(rng.integers(16, 65))
                    offset = int(rng.integers(0, len(stream) - length))
                    got = client.read_image(length) if offset == 0 else _read_at(client, offset, length)
                    ok = got == stream[offset : offset + length]
                    detail = f"READ_IMAGE {offset}+{length}"
                else:
                    i = int(rng.integers(0, len(bits)))
                    result = board_observations([client.infer(bits[i])], image.topology, image.spec.max_steps)
                    comparison = compare(truth.take([i]), result, body="board")
                    ok = comparison.ok
                    detail = f"INFER image {i}: {comparison.first_mismatch}"
                outcome = "ok" if ok else "wrong"
                if not ok and len(wrong_examples) < 5:
                    wrong_examples.append(detail)
            except BoardError as exc:
                outcome = f"typed:{type(exc).__name__}"
            except Exception as exc:
                outcome = f"untyped:{type(exc).__name__}"
                if len(wrong_examples) < 5:
                    wrong_examples.append(repr(exc))
            outcomes[outcome] += 1
            per_kind[f"{kind}:{outcome}"] += 1
            if progress is not None and calls % 500 == 0:
                progress(frames_so_far(), outcomes)
        counts = proxy.counts()
        stats = dict(client.stats)
    seconds = time.perf_counter() - start
    return {
        "frames": stats["requests"] + stats["resends"] + counts["to_client"]["marks_out"],
        "client_frames": stats["requests"] + stats["resends"],
        "board_frames": counts["to_client"]["marks_out"],
        "calls": calls,
        "ok": outcomes["ok"],
        "wrong": outcomes["wrong"],
        "typed_errors": {k.split(":", 1)[1]: v for k, v in outcomes.items() if k.startswith("typed:")},
        "untyped_errors": {k.split(":", 1)[1]: v for k, v in outcomes.items() if k.startswith("untyped:")},
        "per_kind": dict(sorted(per_kind.items())),
        "examples": wrong_examples,
        "client_stats": stats,
        "proxy": counts,
        "seconds": round(seconds, 1),
    }


def _read_at(client: BoardClient, offset: int, length: int) -> bytes:
    """READ_IMAGE of one range (BoardClient.read_image reads from offset 0)."""
    from firmware_bridge.wire import protocol
    from firmware_bridge.wire.protocol import MsgType

    reply = client.request(MsgType.READ_IMAGE, protocol.encode_read_image(offset, length))
    return client._decoded(lambda p: protocol.decode_read_image(p, offset, length), reply)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=0.01, help="byte corruption probability, both directions")
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--duplicate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=0.05, help="client wait per attempt, seconds")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--qemu", action="store_true", help="the QEMU Cortex-M3 board instead of the host one")
    args = ap.parse_args(argv)

    image = link_test_image()
    rates = FaultRates(corrupt=args.rate, drop=args.drop, duplicate=args.duplicate)
    load_before = _loadavg()
    with launch.start_virtual_board(image.spec, qemu=args.qemu) as board:
        with BoardClient(board.port, timeout_s=5.0) as clean:
            upload_image(clean, image)

        def progress(n, outcomes):
            print(f"  {n} frames: {dict(outcomes)}", file=sys.stderr, flush=True)

        summary = run_fault_link(
            board.port,
            image,
            frames=args.frames,
            rates=rates,
            seed=args.seed,
            timeout_s=args.timeout,
            retries=args.retries,
            progress=progress,
        )
    summary = {
        "command": "python tools/bench_fault_link.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "board": "qemu mps2_an385" if args.qemu else "host",
        "rates": rates.__dict__,
        **summary,
        "machine": machine(),
        "loadavg_before_after": [load_before, _loadavg()],
    }
    print(json.dumps(summary, indent=1))
    return 1 if summary["wrong"] or summary["untyped_errors"] else 0


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
