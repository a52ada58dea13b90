"""Fuzz the firmware's frame parser and message handlers under ASan + UBSan (seeded barrage).

Usage: python tools/fuzz_firmware.py [--inputs 1000000] [--seed 1] [--jobs 1]

Builds the firmware for the fuzz board (boards/fuzz_barrage: the real main loop with a HAL that
generates hostile input and checks every reply; gcc -fsanitize=address,undefined, any report
aborts) with small limits (8 KiB frames, 64 KiB weight memory, 64 neurons) so that oversize and
capacity paths are reachable, writes the seed corpus (one frame of every message type, plus the
upload stream of a 784-16-10 int8 image for the compiled spec), runs it and prints one JSON
object: the command, inputs, bytes, replies per message type, errors per code, seconds.
--jobs N runs N seeds (seed, seed+1, ...) in parallel, each with inputs/N.
Exit status 0 only if every run finished clean.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

from _machine import machine

from firmware_bridge.boards import build
from firmware_bridge.wire import protocol
from firmware_bridge.wire.protocol import MsgType
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import LayerImage, WeightImage, image_crc32, upload_bytes

FUZZ_MAKE_VARS = {"WEIGHT_CAPACITY_BYTES": 65536, "MAX_NEURONS": 64, "MAX_PAYLOAD_BYTES": 8192, "MAX_LAYERS": 4}
SEED_BODY, SEED_STREAM = 1, 2
# A rule that updates often, so the fuzzed TRAIN_STEPs run the whole update path.
FUZZ_RULE = LearningConfig(
    margin_steps=6,
    hidden_update_prob_q16=30000,
    output_update_prob_q16=50000,
    seed=7,
    output_rule="all_violators",
    correct_rule="always",
)


def seed_image() -> WeightImage:
    """A 784-16-10 image for the compiled (default int8) spec, weights biased to spike."""
    spec = build.default_spec()
    rng = np.random.default_rng(5)
    w0 = rng.integers(-20, 60, size=(785, 16)).astype(np.int8)
    w1 = rng.integers(-40, 90, size=(17, 10)).astype(np.int8)
    return WeightImage(spec, (LayerImage(w0, 2000, 1.0), LayerImage(w1, 2000, 1.0)))


def body(msg_type: int, payload: bytes = b"", seq: int = 1) -> bytes:
    return protocol.HEADER.pack(protocol.PROTOCOL_VERSION, msg_type, seq, len(payload)) + payload


def corpus_bytes(image: WeightImage) -> bytes:
    stream = upload_bytes(image)
    bits = bytes(np.random.default_rng(1).integers(0, 256, 98, dtype=np.uint8) & 0x5A)
    bodies = [
        body(MsgType.INFO),
        body(MsgType.RESET),
        body(MsgType.LOAD_BEGIN, protocol.encode_load_begin(len(stream), image_crc32(image))),
        body(MsgType.LOAD_CHUNK, protocol.encode_load_chunk(0, stream[:512])),
        body(MsgType.LOAD_COMMIT),
        body(MsgType.READ_IMAGE, protocol.encode_read_image(0, 64)),
        body(MsgType.INFER, protocol.encode_infer(bits)),
        body(MsgType.INFER_BATCH, protocol.encode_infer_batch([bits, bits[::-1]])),
        body(MsgType.TRAIN_STEP, protocol.encode_train_step(3, 7, bits)),
        body(0x55, b"\x01\x02"),
        body(MsgType.ERROR, protocol.encode_error(2, 3, 4)),
    ]
    out = b"".join(struct.pack("<BI", SEED_BODY, len(b)) + b for b in bodies)
    return out + struct.pack("<BI", SEED_STREAM, len(stream)) + stream


def build_fuzzer(build_root: Path | None = None) -> Path:
    return build.build_firmware(
        build.default_spec(), board="fuzz_barrage", learning=FUZZ_RULE, build_root=build_root, make_vars=FUZZ_MAKE_VARS
    )


def parse_summary(stderr: str) -> dict:
    """The fuzz HAL's summary lines as numbers; {} if the run did not finish."""
    done = re.search(r"FUZZ DONE inputs=(\d+) bytes=(\d+) kinds=([\d,]+)", stderr)
    if not done:
        return {}
    replies = re.search(r"FUZZ REPLIES(.*)", stderr).group(1).split()
    errors = re.search(r"FUZZ ERRORS(.*)", stderr).group(1).split()

    def pairs(items, names):
        out = {}
        for item in items:
            k, v = item.split("=")
            out[names(int(k))] = int(v)
        return out

    def type_name(t: int) -> str:
        base = t & ~protocol.REPLY
        try:
            return MsgType(t).name if t == MsgType.ERROR else MsgType(base).name + "_REPLY"
        except ValueError:
            return f"0x{t:02x}"

    def code_name(c: int) -> str:
        try:
            return protocol.ErrorCode(c).name
        except ValueError:
            return str(c)

    kinds = [int(x) for x in done.group(3).split(",")]
    return {
        "inputs": int(done.group(1)),
        "bytes": int(done.group(2)),
        "inputs_by_kind": dict(zip(["garbage", "valid", "deep", "wire", "oversize", "session"], kinds, strict=True)),
        "replies": pairs(replies, type_name),
        "errors": pairs(errors, code_name),
    }


def run_fuzzer(
    executable: Path, corpus: Path, *, inputs: int, seed: int, plant: bool = False, timeout_s: float | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PCL_FUZZ_CORPUS": str(corpus),
        "PCL_FUZZ_INPUTS": str(inputs),
        "PCL_FUZZ_SEED": str(seed),
        "PCL_FUZZ_PLANT": "1" if plant else "0",
        "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=0",
        "UBSAN_OPTIONS": "print_stacktrace=1",
    }
    return subprocess.run(
        [str(executable)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    executable = build_fuzzer()
    with tempfile.TemporaryDirectory(prefix="pcl-fuzz-") as tmp:
        corpus = Path(tmp) / "corpus.bin"
        corpus.write_bytes(corpus_bytes(seed_image()))
        start = time.perf_counter()
        share = -(-args.inputs // args.jobs)
        env_base = {
            **os.environ,
            "PCL_FUZZ_CORPUS": str(corpus),
            "PCL_FUZZ_INPUTS": str(share),
            "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=0",
            "UBSAN_OPTIONS": "print_stacktrace=1",
        }
        running = [
            subprocess.Popen(
                [str(executable)],
                env={**env_base, "PCL_FUZZ_SEED": str(args.seed + j)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for j in range(args.jobs)
        ]
        results = [(p.communicate(), p.returncode) for p in running]
        seconds = time.perf_counter() - start
    runs, total = [], {"inputs": 0, "bytes": 0, "replies": {}, "errors": {}, "inputs_by_kind": {}}
    clean = True
    for j, ((_, err), code) in enumerate(results):
        summary = parse_summary(err)
        ok = code == 0 and bool(summary) and "runtime error" not in err and "Sanitizer" not in err
        clean &= ok
        runs.append(
            {
                "seed": args.seed + j,
                "exit": code,
                "clean": ok,
                **({"tail": err.strip().splitlines()[-12:]} if not ok else {}),
            }
        )
        for key in ("inputs", "bytes"):
            total[key] += summary.get(key, 0)
        for key in ("replies", "errors", "inputs_by_kind"):
            for k, v in summary.get(key, {}).items():
                total[key][k] = total[key].get(k, 0) + v
    print(
        json.dumps(
            {
                "command": "python tools/fuzz_firmware.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "sanitizers": "gcc -fsanitize=address,undefined -fno-sanitize-recover=all",
                "make_vars": FUZZ_MAKE_VARS,
                "clean": clean,
                **total,
                "runs": runs,
                "seconds": round(seconds, 1),
                "inputs_per_s": round(total["inputs"] / seconds),
                "machine": machine(),
            },
            indent=1,
        )
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
