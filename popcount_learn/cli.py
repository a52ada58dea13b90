"""The ``popcount-learn`` command: parses arguments, calls ``commands``, prints the result.

A user mistake (PopcountLearnError, bad option) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import os

# Numba's threads and BLAS's threads fight over two cores; BLAS gets one unless the user says.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

from . import __version__  # noqa: E402
from .errors import ConfigError, PopcountLearnError  # noqa: E402

PROG = "popcount-learn"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line + usage hint, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def _number(kind, *, minimum, inclusive=True, label):
    """An argparse type: parse ``kind`` and require it to be >= (or >) ``minimum``."""

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {label}, got {text!r}") from None
        ok = (v >= minimum if inclusive else v > minimum) and math.isfinite(v)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {label}, got {v}")
        return v

    return parse


_positive_int = _number(int, minimum=1, label="a positive integer")
_nonneg_int = _number(int, minimum=0, label="a non-negative integer")
_positive_float = _number(float, minimum=0.0, inclusive=False, label="a positive number")
_nonneg_float = _number(float, minimum=0.0, label="a non-negative number")


def _spec_item(text):
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE (e.g. time_shift=8), got {text!r}")
    return name.strip(), value.strip()


def _bits(text):
    v = _positive_int(text)
    if not 2 <= v <= 16:
        raise argparse.ArgumentTypeError(f"weight bits must be in 2..16, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from .onchip import OnchipTrainConfig
    from .train import TrainConfig

    d = TrainConfig()
    od = OnchipTrainConfig()
    p = _Parser(prog=PROG, description="Temporally coded spiking networks: exact training, bit-exact emulation.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--threads", type=_positive_int, default=None, help="Numba threads (default: all cores)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a network on MNIST-style data and report test accuracy")
    t.add_argument("--mode", choices=("exact", "onchip"), default="exact",
                   help="exact: float model, exact gradients (default); onchip: integer weights, sign-only "
                        "popcount rule on the bit-exact datapath (docs/learning-rule.md)")
    t.add_argument("--hidden", type=_positive_int, nargs="+", default=None,
                   help=f"hidden layer sizes (default: exact {' '.join(map(str, d.hidden))}, onchip "
                        f"{' '.join(map(str, od.hidden))}, or those of --init)")
    t.add_argument("--epochs", type=_nonneg_int, default=None, help=f"default: exact {d.epochs}, onchip {od.epochs}")
    t.add_argument("--seed", type=_nonneg_int, default=d.seed, help="default: %(default)s")
    t.add_argument("--augment-shift", type=_nonneg_int, default=None,
                   help=f"random translation in pixels (default: exact {d.augment_shift_px}, onchip {od.augment_shift_px})")
    t.add_argument("--augment-from-epoch", type=_positive_int, default=None,
                   help=f"first epoch with shifted images (default: exact {d.augment_from_epoch}, onchip {od.augment_from_epoch})")
    t.add_argument("--limit", type=_positive_int, default=None, help="train on the first N training images only")
    t.add_argument("--data", default=None, metavar="DIR", help="directory of the four IDX files (default: the shipped MNIST)")
    t.add_argument("--out", default="model.h5", metavar="PATH", help="where to save the model (default: %(default)s)")
    t.add_argument("--init", default=None, metavar="MODEL",
                   help="start from this model or weight image (onchip: a float model is quantised)")
    t.add_argument("--json", action="store_true", help="print the final summary as JSON")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex = t.add_argument_group("exact mode")
    ex.add_argument("--batch-size", type=_positive_int, default=None, help=f"default: {d.batch_size}")
    ex.add_argument("--lr", type=_positive_float, default=None, help=f"Adam learning rate (default: {d.lr})")
    ex.add_argument("--lr-decay", type=_positive_float, default=None, help=f"per-epoch factor (default: {d.lr_decay})")
    ex.add_argument("--sparsity", type=_nonneg_float, default=None,
                    help=f"weight of the hidden-spikes-before-decision term, 0 = off (default: {d.sparsity})")
    ex.add_argument("--sparsity-target", type=_nonneg_float, default=None,
                    help=f"hidden spikes before the decision tolerated without penalty (default: {d.sparsity_target})")
    ex.add_argument("--temperature", type=_positive_float, default=None,
                    help=f"softmax temperature over -z of the outputs (default: {d.temperature})")
    oc = t.add_argument_group("onchip mode")
    oc.add_argument("--bits", type=_bits, default=None, help="weight bits of a new or quantised network (default 8)")
    oc.add_argument("--spec", type=_spec_item, action="append", default=[], metavar="FIELD=VALUE",
                    help="override a datapath field of a new or quantised network (repeatable)")
    oc.add_argument("--learn", type=_spec_item, action="append", default=[], metavar="FIELD=VALUE",
                    help="override a learning-rule field (repeatable; docs/learning-rule.md), e.g. margin_steps=6")

    e = sub.add_parser("evaluate", help="evaluate a model or weight image on the test set")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("--limit", type=_positive_int, default=None, help="first N test images only")
    e.add_argument("--data", default=None, metavar="DIR")
    e.add_argument("--emulate", action="store_true", help="run the bit-exact fixed-point emulator")
    e.add_argument("--bits", type=_bits, default=None, help="weight bits when quantising a float model (default 8)")
    e.add_argument("--plots", default=None, metavar="DIR", help="with --emulate: write histogram and raster PNGs")
    e.add_argument("--spec", type=_spec_item, action="append", default=[], metavar="FIELD=VALUE",
                   help="with --emulate on a float model: override a datapath field (repeatable; "
                        "fields as in docs/datapath.md, e.g. time_shift=8)")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    x = sub.add_parser("export", help="quantise a float model (or re-measure a weight image) into an HDF5 weight image")
    x.add_argument("model", metavar="MODEL")
    x.add_argument("-o", "--out", required=True, metavar="PATH")
    x.add_argument("--bits", type=_bits, default=None, help="weight bits of a quantised float model (default 8)")
    x.add_argument("--data", default=None, metavar="DIR", help="test data for the accuracy recorded in the image")
    x.add_argument("--spec", type=_spec_item, action="append", default=[], metavar="FIELD=VALUE",
                   help="override a datapath field of the image (repeatable), e.g. membrane_bits=28")
    x.add_argument("--json", action="store_true")

    i = sub.add_parser("inspect", help="summarise a model or weight image and verify its checksums")
    i.add_argument("path", metavar="FILE")
    i.add_argument("--json", action="store_true")

    r = sub.add_parser("rtl", help="the Verilog core (firmware_bridge/rtl) under Icarus + cocotb")
    rsub = r.add_subparsers(dest="rtl_command", metavar="ACTION", parser_class=_Parser)
    rsub.required = True
    rc = rsub.add_parser("compare", help="simulate the core on test images and compare it with the emulator")
    rc.add_argument("--image", required=True, metavar="NET.h5", help="weight image (popcount-learn export)")
    rc.add_argument("--limit", type=_positive_int, default=None, help="first N test images only")
    rc.add_argument("--lanes", type=_positive_int, default=4, help="parallel neuron lanes (default: %(default)s)")
    rc.add_argument("--data", default=None, metavar="DIR")
    rc.add_argument("--json", action="store_true")
    rc.add_argument("--no-progress", action="store_true")

    from firmware_bridge.cli import add_board_parser

    add_board_parser(sub, _positive_int)
    return p


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=str))
        return
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"{key:42s} {value}")


def _print_epoch(record: dict) -> None:
    test = record.get("test", {})
    print(
        f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  train acc {record['train_accuracy']:.4f}  "
        f"test acc {test.get('accuracy', float('nan')):.4f}  "
        f"hidden spikes before decision {test.get('hidden_spikes_before_decision_mean', float('nan')):.1f}  "
        f"({record['seconds']:.1f} s)",
        flush=True,
    )


_EXACT_ONLY = ("batch_size", "lr", "lr_decay", "sparsity", "sparsity_target", "temperature")
_ONCHIP_ONLY = ("bits", "spec", "learn")


def _print_onchip_epoch(record: dict) -> None:
    test = record.get("test", {})
    print(
        f"epoch {record['epoch']:3d}  train acc {record['train_accuracy']:.4f}  "
        f"test acc {test.get('accuracy', float('nan')):.4f}  "
        f"hidden spikes before decision {test.get('hidden_spikes_before_decision_mean', float('nan')):.1f}  "
        f"weights changed/sample {record['weights_changed_per_sample']:.1f}  "
        f"({record['samples_per_s']:.0f} samples/s)",
        flush=True,
    )


def _run_train(args, commands) -> int:
    from .progress import NullProgress, TqdmProgress

    exact = args.mode == "exact"
    misplaced = [n for n in (_ONCHIP_ONLY if exact else _EXACT_ONLY) if getattr(args, n) not in (None, [])]
    if misplaced:
        flag = "--" + misplaced[0].replace("_", "-")
        raise ConfigError(f"{flag} applies to --mode {'onchip' if exact else 'exact'} only")
    if args.hidden is not None:
        hidden = tuple(args.hidden)
    elif args.init is not None:
        hidden = commands.model_topology(args.init)[1:-1]
    else:
        hidden = None
    progress = NullProgress() if args.no_progress else TqdmProgress(leave=False, dynamic_ncols=True)
    options = {k: getattr(args, k) for k in ("epochs", "augment_shift", "augment_from_epoch") if getattr(args, k) is not None}
    if "augment_shift" in options:
        options["augment_shift_px"] = options.pop("augment_shift")
    if hidden is not None:
        options["hidden"] = hidden
    if exact:
        from .train import TrainConfig

        options.update({k: getattr(args, k) for k in _EXACT_ONLY if getattr(args, k) is not None})
        result = commands.train(
            config=TrainConfig(seed=args.seed, **options), data_dir=args.data, limit=args.limit, out=args.out,
            init=args.init, progress=progress, on_epoch=None if args.json else _print_epoch,
        )
    else:
        from .onchip import OnchipTrainConfig

        result = commands.train_onchip(
            config=OnchipTrainConfig(seed=args.seed, **options), learning_options=dict(args.learn), bits=args.bits,
            spec_options=dict(args.spec), data_dir=args.data, limit=args.limit, out=args.out, init=args.init,
            progress=progress, on_epoch=None if args.json else _print_onchip_epoch,
        )
    if not args.json:
        print(f"saved {result['out']}")
    _print_summary(dict(result["test"], out=result["out"]), args.json)
    return 0


def _run(args) -> int:
    from . import commands

    if args.threads is not None:
        import numba

        available = numba.config.NUMBA_NUM_THREADS
        if args.threads > available:
            print(f"{PROG}: note: --threads {args.threads} capped at {available} (NUMBA_NUM_THREADS)", file=sys.stderr)
        numba.set_num_threads(min(args.threads, available))

    if args.command == "train":
        return _run_train(args, commands)
    if args.command == "evaluate":
        summary = commands.evaluate(
            args.model, data_dir=args.data, limit=args.limit, emulate=args.emulate, bits=args.bits,
            plots_dir=args.plots, spec_options=dict(args.spec),
        )
        _print_summary(summary, args.json)
        return 0
    if args.command == "export":
        summary = commands.export(args.model, args.out, bits=args.bits, data_dir=args.data, spec_options=dict(args.spec))
        _print_summary(summary, args.json)
        return 0
    if args.command == "inspect":
        _print_summary(commands.inspect(args.path), args.json)
        return 0
    if args.command == "rtl":
        from .progress import NullProgress, TqdmProgress

        progress = NullProgress() if args.no_progress else TqdmProgress(leave=False, dynamic_ncols=True)
        out = commands.rtl_compare(args.image, limit=args.limit, lanes=args.lanes, data_dir=args.data, progress=progress)
        if args.json:
            print(json.dumps(out, sort_keys=True))
        elif out["first_mismatch"]:
            print("first mismatch (emulator vs RTL):\n" + out["first_mismatch"])
        if not args.json:
            verdict = "RTL == emulator" if out["mismatches"] == 0 else f"{out['mismatches']} MISMATCHING images"
            print(f"{out['images']} images compared, {verdict}; {out['lanes']} lanes, cycles per image mean "
                  f"{out['cycles_mean']:.1f} (median {out['cycles_median']:.0f}, max {out['cycles_max']}); "
                  f"simulated {out['sim_images_per_s']:.2f} images/s ({out['sim_seconds']:.1f} s)")
        return 1 if out["mismatches"] else 0
    if args.command == "board":
        from firmware_bridge.cli import run_board

        return run_board(args, _print_summary)
    raise AssertionError(args.command)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except PopcountLearnError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug: permissions, a full disk, a missing path
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{PROG}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
