"""``popcount-learn board ...``: argument parsing and printing only (firmware_bridge does the work)."""

from __future__ import annotations

import signal
import sys


def add_board_parser(sub, positive_int) -> None:
    b = sub.add_parser("board", help="virtual boards: start one, query it, compare it with the emulator")
    bs = b.add_subparsers(dest="board_command", metavar="ACTION")
    bs.required = True
    v = bs.add_parser("virtual", help="build (if needed) and start a virtual board; prints its port first")
    v.add_argument("--image", default=None, metavar="H5",
                   help="build for this weight image's spec and learning rule (default: the int8 spec, default rule)")
    v.add_argument("--qemu", action="store_true", help="a QEMU Cortex-M3 board instead of the host one")
    i = bs.add_parser("info", help="versions, spec, capacity and image state of a board")
    c = bs.add_parser("compare", help="run test images on board and emulator and compare every field")
    c.add_argument("--image", required=True, metavar="H5")
    c.add_argument("--limit", type=positive_int, default=None, help="first N test images only")
    c.add_argument("--data", default=None, metavar="DIR")
    c.add_argument("--batch", type=positive_int, default=None, help="images per round trip (default: fit the board)")
    t = bs.add_parser("train", help="train board and emulator side by side; compare the weights byte for byte")
    t.add_argument("--image", required=True, metavar="H5")
    t.add_argument("--steps", type=positive_int, required=True, help="training steps (one sample each)")
    t.add_argument("--seed", type=int, default=0, help="order of the training samples (default: %(default)s)")
    t.add_argument("--check-every", type=positive_int, default=100, help="read back and compare every N steps")
    t.add_argument("--data", default=None, metavar="DIR")
    for p in (i, c, t):
        p.add_argument("--port", required=True, metavar="URL", help="serial port or pyserial URL, e.g. /dev/pts/5")
        p.add_argument("--trace", action="store_true", help="log every frame as hex on stderr")
        p.add_argument("--json", action="store_true")


def _serve(args) -> int:
    from firmware_bridge.boards.launch import start_virtual_board

    from popcount_learn.learning import LearningConfig

    spec, learning = None, LearningConfig()
    if args.image is not None:
        from popcount_learn.h5io import load_weight_image

        image = load_weight_image(args.image)
        spec, learning = image.spec, image.learning or learning
    # SIGTERM ends the board like Ctrl-C does (the finally below stops the firmware).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with start_virtual_board(spec, learning=learning, qemu=args.qemu) as board:  # stopped on any exit
        print(board.port, flush=True)
        code = board.wait()
        print(f"popcount-learn: error: the virtual board exited with status {code}", file=sys.stderr)
        return 1


def run_board(args, print_summary) -> int:
    from firmware_bridge import commands

    if args.board_command == "virtual":
        return _serve(args)
    if getattr(args, "trace", False):  # frames as hex on stderr; nothing else turns verbose
        import logging

        from firmware_bridge.wire.client import trace_log

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("trace: %(message)s"))
        trace_log.addHandler(handler)
        trace_log.setLevel(logging.DEBUG)
    if args.board_command == "info":
        print_summary(commands.board_info(args.port, trace=args.trace), args.json)
        return 0
    if args.board_command == "compare":
        from popcount_learn.progress import TqdmProgress

        summary = commands.board_compare(
            args.port, args.image, limit=args.limit, data_dir=args.data, batch_size=args.batch, trace=args.trace,
            progress=TqdmProgress(leave=False, dynamic_ncols=True, file=sys.stderr),
        )
        print_summary(summary, args.json)
        if summary["mismatches"]:
            print(f"popcount-learn: board and emulator differ on {summary['mismatches']} of {summary['n']} images; "
                  f"first: {summary['first_mismatch']}", file=sys.stderr)
            return 1
        return 0
    if args.board_command == "train":
        from popcount_learn.progress import TqdmProgress

        summary = commands.board_train(
            args.port, args.image, steps=args.steps, seed=args.seed, check_every=args.check_every,
            data_dir=args.data, trace=args.trace, progress=TqdmProgress(leave=False, dynamic_ncols=True, file=sys.stderr),
        )
        print_summary(summary, args.json)
        if summary["mismatches"]:
            print(f"popcount-learn: board and emulator differ: {summary['first_mismatch']}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.board_command)
