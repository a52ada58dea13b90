"""The ``popcount-learn`` command: parses arguments, calls ``commands``, prints the result.

A user mistake (PopcountLearnError, bad option) is one line on stderr and exit code 2.

Other packages add command groups through the entry-point group ``popcount_learn.cli``: each
entry is a function ``register(subparsers)`` that adds its subcommands, each with
``set_defaults(run=fn)`` where ``fn(args) -> exit code``. This package imports none of them by
name (the board and RTL commands of ``firmware_bridge`` come this way); the helpers below
(argument types, ``add_output_flags``, ``progress_from``, ``print_summary``) are theirs to use.
"""

from __future__ import annotations

import os

# Numba's threads and BLAS's threads fight over two cores; BLAS gets one unless the user says.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import sys
from importlib.metadata import entry_points

from . import __version__
from .errors import ConfigError, PopcountLearnError
from .progress import progress_for_output

PROG = "popcount-learn"
DATA_HELP = (
    "an IDX directory (any image size), a .npz with x_train, y_train, x_test, y_test, or "
    "sklearn:digits|breast_cancer|iris|wine (default: the shipped MNIST)"
)
PLUGIN_GROUP = "popcount_learn.cli"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line + usage hint, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def validation_size(text):
    """An argparse type for ``--validation``: a count of samples (an integer >= 1) or a fraction in (0, 1)."""
    label = "a number of samples (an integer >= 1) or a fraction in (0, 1)"
    try:
        value = int(text) if text.strip().lstrip("+-").isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {label}, got {text!r}") from None
    if not (value >= 1 if isinstance(value, int) else 0 < value < 1):
        raise argparse.ArgumentTypeError(f"expected {label}, got {text}")
    return value


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


positive_int = _number(int, minimum=1, label="a positive integer")
nonneg_int = _number(int, minimum=0, label="a non-negative integer")
positive_float = _number(float, minimum=0.0, inclusive=False, label="a positive number")
nonneg_float = _number(float, minimum=0.0, label="a non-negative number")


def spec_item(text):
    """``FIELD=VALUE`` as a (field, value) pair, for ``--spec`` and ``--learn``."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE (e.g. time_shift=8), got {text!r}")
    return name.strip(), value.strip()


def options_dict(pairs, flag: str) -> dict:
    """The (field, value) pairs of a repeatable ``--spec`` / ``--learn`` as a dict; a field given
    twice with different values is refused (ConfigError), never silently the last one."""
    out: dict = {}
    for name, value in pairs or ():
        if name in out and out[name] != value:
            raise ConfigError(f"{flag} {name} is given twice ({out[name]} and {value}); give it once")
        out[name] = value
    return out


def weight_bits(text):
    v = positive_int(text)
    if not 2 <= v <= 16:
        raise argparse.ArgumentTypeError(f"weight bits must be in 2..16, got {v}")
    return v


def add_output_flags(parser, *, progress: bool = True) -> None:
    """``--json`` (one JSON object on stdout) and, for a long command, ``--no-progress``."""
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    if progress:
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress on stderr (a bar on a terminal, else one line per phase)",
        )


def progress_from(args, every_fraction: float | None = None):
    """The progress a command shows on stderr: a bar on a terminal, plain lines otherwise."""
    return progress_for_output(not getattr(args, "no_progress", False), sys.stderr, every_fraction)


def print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=str))
        return
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"{key:42s} {value}")


def _add_plugins(sub) -> None:
    """Let every installed ``popcount_learn.cli`` entry point add its command groups."""
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            register = entry.load()
        except ModuleNotFoundError as exc:
            # The package that registered the entry point is not importable here (absent from the
            # path): its commands are simply not offered. Anything else is a bug and surfaces.
            if (exc.name or "").split(".")[0] == entry.value.split(".")[0]:
                continue
            raise
        register(sub)


def build_parser() -> argparse.ArgumentParser:
    from .onchip_train import OnchipTrainConfig
    from .train import TrainConfig

    d = TrainConfig()
    od = OnchipTrainConfig()
    p = Parser(prog=PROG, description="Temporally coded spiking networks: exact training, bit-exact emulation.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--threads", type=positive_int, default=None, help="Numba threads (default: all cores)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a network on MNIST-style data and report test accuracy")
    t.set_defaults(run=_run_train)
    t.add_argument(
        "--mode",
        choices=("exact", "onchip"),
        default="exact",
        help="exact: float model, exact gradients (default); onchip: integer weights, sign-only "
        "popcount rule on the bit-exact datapath (docs/learning-rule.md)",
    )
    t.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        default=None,
        help=f"hidden layer sizes (default: exact {' '.join(map(str, d.hidden))}, onchip "
        f"{' '.join(map(str, od.hidden))}, or those of --init)",
    )
    t.add_argument("--epochs", type=nonneg_int, default=None, help=f"default: exact {d.epochs}, onchip {od.epochs}")
    t.add_argument("--seed", type=nonneg_int, default=d.seed, help="default: %(default)s")
    t.add_argument(
        "--augment-shift",
        type=nonneg_int,
        default=None,
        help=f"random translation in pixels (default: exact {d.augment_shift_px}, onchip {od.augment_shift_px})",
    )
    t.add_argument(
        "--augment-from-epoch",
        type=positive_int,
        default=None,
        help=f"first epoch with shifted images (default: exact {d.augment_from_epoch}, onchip {od.augment_from_epoch})",
    )
    t.add_argument("--limit", type=positive_int, default=None, help="train on the first N training images only")
    t.add_argument(
        "--validation",
        type=validation_size,
        default=None,
        metavar="N|F",
        help="hold out the last N training samples (or the fraction F in (0, 1)) before --limit, not "
        "trained on and measured after every epoch; choose options on these, not on the test split "
        "(default: none)",
    )
    t.add_argument("--data", default=None, metavar="DATA", help=DATA_HELP)
    t.add_argument(
        "--classes",
        type=positive_int,
        default=None,
        help="number of classes; labels must be 0..N-1 (default: the distinct training labels)",
    )
    t.add_argument(
        "--encoding",
        choices=("auto", "binary", "latency"),
        default="auto",
        help="input spike code: binary (value > 128 spikes at t = 0, the rest never) or latency "
        "(t = t_max * (1 - x)); auto (default): binary for 8-bit images (IDX, MNIST), latency for "
        "data scaled to codes (.npz floats, scikit-learn sets)",
    )
    t.add_argument(
        "--t-max",
        type=positive_float,
        default=None,
        help="latency: spike time of the smallest value, in synaptic time constants (default: 2 + max(f, "
        "m), f the fraction of training codes that are 0 or 255, m the share of their variance that is "
        "each sample's mean level: 2.82 on graded MNIST, 2.55 on iris, 2.13 on wine)",
    )
    t.add_argument(
        "--silence",
        type=_number(int, minimum=0, label="a code in 0..255"),
        default=None,
        help="latency: codes (0..255 after scaling) below this never spike (default 0: all spike)",
    )
    t.add_argument("--out", default="model.h5", metavar="PATH", help="where to save the model (default: %(default)s)")
    t.add_argument(
        "--init",
        default=None,
        metavar="MODEL",
        help="start from this model or weight image (onchip: a float model is quantised)",
    )
    add_output_flags(t)
    ex = t.add_argument_group("exact mode")
    ex.add_argument("--batch-size", type=positive_int, default=None, help=f"default: {d.batch_size}")
    ex.add_argument("--lr", type=positive_float, default=None, help=f"Adam learning rate (default: {d.lr})")
    ex.add_argument("--lr-decay", type=positive_float, default=None, help=f"per-epoch factor (default: {d.lr_decay})")
    ex.add_argument(
        "--sparsity",
        type=nonneg_float,
        default=None,
        help=f"weight of the hidden-spikes-before-decision term, 0 = off (default: {d.sparsity})",
    )
    ex.add_argument(
        "--sparsity-target",
        type=nonneg_float,
        default=None,
        help=f"hidden spikes before the decision tolerated without penalty (default: {d.sparsity_target})",
    )
    ex.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help=f"softmax temperature over -z of the outputs (default: {d.temperature})",
    )
    ex.add_argument(
        "--qat-bits",
        type=weight_bits,
        default=None,
        metavar="B",
        help="quantisation-aware training: the forward pass runs the weights rounded to B-bit integers "
        "(per-layer scale, as export quantises), straight-through gradient; export then uses B bits",
    )
    ex.add_argument(
        "--qat-scale",
        choices=("max", "mse"),
        default=None,
        help="QAT's per-layer scale: the largest weight maps to the top code (max), or the clip of least "
        f"rounding error does and larger weights saturate (mse) (default: {d.qat_scale})",
    )
    oc = t.add_argument_group("onchip mode")
    oc.add_argument(
        "--bits", type=weight_bits, default=None, help="weight bits of a new or quantised network (default 8)"
    )
    oc.add_argument(
        "--spec",
        type=spec_item,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a datapath field of a new or quantised network (repeatable)",
    )
    oc.add_argument(
        "--learn",
        type=spec_item,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a learning-rule field (repeatable; docs/learning-rule.md), e.g. margin_steps=6",
    )

    e = sub.add_parser("evaluate", help="evaluate a model or weight image on the test set")
    e.set_defaults(run=_run_evaluate)
    e.add_argument("model", metavar="MODEL")
    e.add_argument("--limit", type=positive_int, default=None, help="first N test images only")
    e.add_argument("--data", default=None, metavar="DATA", help=DATA_HELP)
    e.add_argument("--emulate", action="store_true", help="run the bit-exact fixed-point emulator")
    e.add_argument(
        "--bits", type=weight_bits, default=None, help="weight bits when quantising a float model (default 8)"
    )
    e.add_argument("--plots", default=None, metavar="DIR", help="with --emulate: write histogram and raster PNGs")
    e.add_argument(
        "--spec",
        type=spec_item,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="with --emulate on a float model: override a datapath field (repeatable; "
        "fields as in docs/datapath.md, e.g. time_shift=8)",
    )
    add_output_flags(e, progress=False)

    x = sub.add_parser("export", help="quantise a float model (or re-measure a weight image) into an HDF5 weight image")
    x.set_defaults(run=_run_export)
    x.add_argument("model", metavar="MODEL")
    x.add_argument("-o", "--out", required=True, metavar="PATH")
    x.add_argument("--bits", type=weight_bits, default=None, help="weight bits of a quantised float model (default 8)")
    x.add_argument("--data", default=None, metavar="DATA", help="test data for the accuracy recorded; " + DATA_HELP)
    x.add_argument(
        "--spec",
        type=spec_item,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a datapath field of the image (repeatable), e.g. membrane_bits=28",
    )
    add_output_flags(x, progress=False)

    i = sub.add_parser("inspect", help="summarise a model or weight image and verify its checksums")
    i.set_defaults(run=_run_inspect)
    i.add_argument("path", metavar="FILE")
    add_output_flags(i, progress=False)

    _add_sweep_commands(sub)
    _add_plugins(sub)
    return p


def _add_sweep_commands(sub) -> None:
    """``sweep`` and ``sweep-report`` (docs/sweeps.md); the work is in ``popcount_learn.sweep``."""
    s = sub.add_parser("sweep", help="train and price every point of a design-space sweep on a Dask cluster")
    s.set_defaults(run=_run_sweep)
    s.add_argument("sweep_file", metavar="SWEEP.toml", help="base configuration, axes, sampling (docs/sweeps.md)")
    s.add_argument("--out", required=True, metavar="DIR", help="results: DIR/sweep.sqlite and DIR/images/")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:8786", help="run on this Dask cluster")
    where.add_argument(
        "--workers", type=positive_int, default=None, help="worker processes of the local cluster (default: cores / T)"
    )
    s.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=None,
        metavar="T",
        help="Numba threads per point (default: 1, or cores / --workers)",
    )
    s.add_argument("--retry-failed", action="store_true", help="run the points that failed before again")
    s.add_argument(
        "--dashboard", default=":8787", metavar="ADDR", help="local cluster's dashboard address (default: %(default)s)"
    )
    add_output_flags(s)
    r = sub.add_parser("sweep-report", help="progress, table, CSV and Pareto plots of a sweep")
    r.set_defaults(run=_run_sweep_report)
    r.add_argument("directory", metavar="DIR")
    r.add_argument("--csv", default=None, metavar="PATH", help="where to write the CSV (default: DIR/sweep.csv)")
    r.add_argument("--no-plots", action="store_true", help="no PNGs (default: DIR/plots/pareto_*.png)")
    add_output_flags(r, progress=False)


def _print_epoch(record: dict) -> None:
    test = record.get("test", {})
    val = f"val acc {record['validation']['accuracy']:.4f}  " if "validation" in record else ""
    print(
        f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  train acc {record['train_accuracy']:.4f}  {val}"
        f"test acc {test.get('accuracy', float('nan')):.4f}  "
        f"hidden spikes before decision {test.get('hidden_spikes_before_decision_mean', float('nan')):.1f}  "
        f"({record['seconds']:.1f} s)",
        flush=True,
    )


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


_EXACT_ONLY = ("batch_size", "lr", "lr_decay", "sparsity", "sparsity_target", "temperature", "qat_bits", "qat_scale")
_ONCHIP_ONLY = ("bits", "spec", "learn")


def _run_train(args) -> int:
    from . import commands
    from .onchip_train import OnchipTrainConfig
    from .train import TrainConfig

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
    options = {
        k: getattr(args, k) for k in ("epochs", "augment_shift", "augment_from_epoch") if getattr(args, k) is not None
    }
    if "augment_shift" in options:
        options["augment_shift_px"] = options.pop("augment_shift")
    if hidden is not None:
        options["hidden"] = hidden
    if args.silence is not None and args.silence > 255:
        raise ConfigError(f"--silence is a code in 0..255, got {args.silence}")
    common = dict(
        data_dir=args.data,
        limit=args.limit,
        out=args.out,
        init=args.init,
        progress=progress_from(args),
        classes=args.classes,
        encoding=args.encoding,
        t_max=args.t_max,
        silence=args.silence,
        given=frozenset(options),
        validation=args.validation,
    )
    if exact:
        options.update({k: getattr(args, k) for k in _EXACT_ONLY if getattr(args, k) is not None})
        common["given"] = frozenset(options)  # --lr-decay etc. are kept as asked too
        result = commands.train(
            config=TrainConfig(seed=args.seed, **options), on_epoch=None if args.json else _print_epoch, **common
        )
    else:
        result = commands.train_onchip(
            config=OnchipTrainConfig(seed=args.seed, **options),
            learning_options=options_dict(args.learn, "--learn"),
            bits=args.bits,
            spec_options=options_dict(args.spec, "--spec"),
            on_epoch=None if args.json else _print_onchip_epoch,
            **common,
        )
    if not args.json:
        print(f"saved {result['out']}")
    summary = dict(result["test"], out=result["out"])
    if "validation" in result:
        summary["validation_accuracy"] = result["validation"]["accuracy"]
    if "qat" in result:
        summary.update({f"qat_{k}": v for k, v in result["qat"].items()})
    print_summary(summary, args.json)
    return 0


def _run_evaluate(args) -> int:
    from . import commands

    summary = commands.evaluate(
        args.model,
        data_dir=args.data,
        limit=args.limit,
        emulate=args.emulate,
        bits=args.bits,
        plots_dir=args.plots,
        spec_options=options_dict(args.spec, "--spec"),
    )
    print_summary(summary, args.json)
    return 0


def _run_export(args) -> int:
    from . import commands

    summary = commands.export(
        args.model, args.out, bits=args.bits, data_dir=args.data, spec_options=options_dict(args.spec, "--spec")
    )
    print_summary(summary, args.json)
    return 0


def _run_inspect(args) -> int:
    from . import commands

    print_summary(commands.inspect(args.path), args.json)
    return 0


def _run_sweep(args) -> int:
    from .sweep import load_sweep
    from .sweep.runner import run_sweep

    sweep = load_sweep(args.sweep_file)  # a bad file is one error before anything starts

    def show_dashboard(client):
        if not args.json:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)

    summary = run_sweep(
        sweep,
        args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        retry_failed=args.retry_failed,
        progress=progress_from(args),
        dashboard_address=args.dashboard,
        on_client=show_dashboard,
    )
    print_summary(summary, args.json)
    return 1 if summary["failed"] else 0


def _run_sweep_report(args) -> int:
    from .sweep.report import format_table, sweep_report

    report = sweep_report(args.directory, csv_path=args.csv, plots=not args.no_plots)
    if args.json:
        print(json.dumps(report, sort_keys=True, default=str))
        return 0
    print(
        f"{report['state']}: {report['done']} done, {report['failed']} failed, {report['running']} running"
        + (f" on {', '.join(report['running_on'])}" if report["running_on"] else "")
        + f", {report['pending']} pending of {report['points']} points"
    )
    if report["dashboard"]:
        print(f"dask dashboard: {report['dashboard']}")
    print(format_table(report["rows"]))
    print(f"csv: {report['csv']}")
    for path in report["plots"]:
        print(f"plot: {path}")
    return 0


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    import numba

    available = numba.config.NUMBA_NUM_THREADS
    if threads > available:
        print(f"{PROG}: note: --threads {threads} capped at {available} (NUMBA_NUM_THREADS)", file=sys.stderr)
    numba.set_num_threads(min(threads, available))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _set_threads(args.threads)
        return args.run(args)
    except PopcountLearnError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug: permissions, a full disk, a missing path
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{PROG}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # A command that knows what the interruption left behind says so in the exception.
        detail = f": {exc}" if str(exc) else ""
        print(f"{PROG}: interrupted{detail}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
