"""``popcount-learn board ...`` and ``popcount-learn rtl ...``: argument parsing and printing only.

``register`` is this package's entry in the ``popcount_learn.cli`` entry-point group
(pyproject.toml): the popcount-learn CLI calls it with its subparsers and never imports this
module by name. The work is done by ``firmware_bridge.commands`` and ``boards.launch``.
"""

from __future__ import annotations

import logging
import signal
import sys

from popcount_learn.cli import PROG, add_output_flags, nonneg_int, positive_int, print_summary, progress_from
from popcount_learn.learning import LearningConfig

# Long single-phase commands report progress every tenth of the way when output is no terminal.
PROGRESS_EVERY = 0.1


def register(sub) -> None:
    """Add the ``board`` and ``rtl`` command groups to the popcount-learn subparsers ``sub``."""
    _add_board(sub)
    _add_rtl(sub)


def _add_board(sub) -> None:
    b = sub.add_parser("board", help="virtual boards: start one, query it, compare it with the emulator")
    bs = b.add_subparsers(dest="board_command", metavar="ACTION", parser_class=type(b))
    bs.required = True
    v = bs.add_parser("virtual", help="build (if needed) and start a virtual board; prints its port first")
    v.set_defaults(run=_run_virtual)
    v.add_argument(
        "--image",
        default=None,
        metavar="H5",
        help="build for this weight image's spec and learning rule (default: the int8 spec, default rule)",
    )
    v.add_argument("--qemu", action="store_true", help="a QEMU Cortex-M board instead of the host one")
    v.add_argument(
        "--board",
        default=None,
        metavar="NAME",
        help="firmware board folder (firmware_bridge/firmware/boards/NAME; default: host, or "
        "mps2_an385 with --qemu); naming a QEMU board implies --qemu",
    )
    v.add_argument(
        "--machine",
        default=None,
        metavar="M",
        help="QEMU machine to run it on (default: the one the board's board.mk declares); implies --qemu",
    )
    i = bs.add_parser("info", help="versions, spec, learning rule, capacity and image state of a board")
    i.set_defaults(run=_run_info)
    add_output_flags(i, progress=False)
    c = bs.add_parser("compare", help="run test images on board and emulator and compare every field")
    c.set_defaults(run=_run_compare)
    c.add_argument("--image", required=True, metavar="H5")
    c.add_argument("--limit", type=positive_int, default=None, help="first N test images only")
    c.add_argument("--data", default=None, metavar="DIR")
    c.add_argument("--batch", type=positive_int, default=None, help="images per round trip (default: fit the board)")
    add_output_flags(c)
    t = bs.add_parser("train", help="train board and emulator side by side; compare the weights byte for byte")
    t.set_defaults(run=_run_train)
    t.add_argument("--image", required=True, metavar="H5")
    t.add_argument("--steps", type=positive_int, required=True, help="training steps (one sample each)")
    t.add_argument("--seed", type=nonneg_int, default=0, help="order of the training samples (default: %(default)s)")
    t.add_argument("--check-every", type=positive_int, default=100, help="read back and compare every N steps")
    t.add_argument("--data", default=None, metavar="DIR")
    add_output_flags(t)
    for p in (i, c, t):
        p.add_argument("--port", required=True, metavar="URL", help="serial port or pyserial URL, e.g. /dev/pts/5")
        p.add_argument("--trace", action="store_true", help="log every frame as hex on stderr")


def _add_rtl(sub) -> None:
    r = sub.add_parser("rtl", help="the Verilog core (firmware_bridge/rtl) under Icarus + cocotb")
    rs = r.add_subparsers(dest="rtl_command", metavar="ACTION", parser_class=type(r))
    rs.required = True
    c = rs.add_parser("compare", help="simulate the core on test images and compare it with the emulator")
    c.set_defaults(run=_run_rtl_compare)
    c.add_argument("--image", required=True, metavar="NET.h5", help="weight image (popcount-learn export)")
    c.add_argument("--limit", type=positive_int, default=None, help="first N test images only")
    c.add_argument("--lanes", type=positive_int, default=4, help="parallel neuron lanes (default: %(default)s)")
    c.add_argument("--data", default=None, metavar="DIR")
    add_output_flags(c)
    t = rs.add_parser(
        "train", help="train the core (its learning build) and the emulator side by side; compare the weights"
    )
    t.set_defaults(run=_run_rtl_train)
    t.add_argument("--image", required=True, metavar="NET.h5", help="weight image (its learning rule, or the default)")
    t.add_argument("--steps", type=positive_int, required=True, help="training steps (one MNIST training sample each)")
    t.add_argument("--seed", type=nonneg_int, default=0, help="order of the training samples (default: %(default)s)")
    t.add_argument(
        "--check-every",
        type=positive_int,
        default=10,
        help="read the weights back and compare every N steps (default: %(default)s)",
    )
    t.add_argument("--lanes", type=positive_int, default=4, help="parallel neuron lanes (default: %(default)s)")
    t.add_argument(
        "--from-step",
        type=nonneg_int,
        default=0,
        metavar="S",
        help="the emulator alone trains the first S samples; the core starts from its weights at sample S",
    )
    t.add_argument("--data", default=None, metavar="DIR")
    add_output_flags(t)


def _report(summary: dict, as_json: bool) -> int:
    """The verdict first, then the details, then the first mismatch in full; 1 if they differ."""
    if as_json:
        print_summary(summary, True)
    else:
        print(summary["verdict"])
        print_summary(
            {k: v for k, v in summary.items() if k not in ("verdict", "first_mismatch", "cycles_per_step")}, False
        )
        if summary.get("first_mismatch"):
            print("first mismatch (emulator vs body):\n" + summary["first_mismatch"])
    return 1 if summary["mismatches"] else 0


def _trace_on_stderr() -> None:
    """Frames as hex on stderr; nothing else turns verbose."""
    from .wire.client import trace_log

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("trace: %(message)s"))
    trace_log.addHandler(handler)
    trace_log.setLevel(logging.DEBUG)


def _run_virtual(args) -> int:
    from .boards.launch import start_virtual_board
    from .commands import load_weight_image

    spec, learning = None, LearningConfig()
    if args.image is not None:
        image = load_weight_image(args.image)
        spec, learning = image.spec, image.learning or learning
    # SIGTERM ends the board like Ctrl-C does (the with block stops the firmware).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    qemu = args.qemu or args.machine is not None or args.board not in (None, "host")
    with start_virtual_board(spec, learning=learning, qemu=qemu, board=args.board, machine=args.machine) as board:
        print(board.port, flush=True)
        code = board.wait()
        print(f"{PROG}: error: the virtual board exited with status {code}", file=sys.stderr)
        return 1


def _run_info(args) -> int:
    from . import commands

    if args.trace:
        _trace_on_stderr()
    print_summary(commands.board_info(args.port, trace=args.trace), args.json)
    return 0


def _run_compare(args) -> int:
    from . import commands

    if args.trace:
        _trace_on_stderr()
    summary = commands.board_compare(
        args.port,
        args.image,
        limit=args.limit,
        data_dir=args.data,
        batch_size=args.batch,
        trace=args.trace,
        progress=progress_from(args, PROGRESS_EVERY),
    )
    return _report(summary, args.json)


def _run_train(args) -> int:
    from . import commands

    if args.trace:
        _trace_on_stderr()
    summary = commands.board_train(
        args.port,
        args.image,
        steps=args.steps,
        seed=args.seed,
        check_every=args.check_every,
        data_dir=args.data,
        trace=args.trace,
        progress=progress_from(args, PROGRESS_EVERY),
    )
    return _report(summary, args.json)


def _run_rtl_compare(args) -> int:
    from . import commands

    out = commands.rtl_compare(
        args.image, limit=args.limit, lanes=args.lanes, data_dir=args.data, progress=progress_from(args, PROGRESS_EVERY)
    )
    return _report(out, args.json)


def _run_rtl_train(args) -> int:
    from . import commands

    out = commands.rtl_train(
        args.image,
        steps=args.steps,
        seed=args.seed,
        lanes=args.lanes,
        check_every=args.check_every,
        from_step=args.from_step,
        data_dir=args.data,
        progress=progress_from(args, PROGRESS_EVERY),
    )
    return _report(out, args.json)
