"""Cost against the silence threshold: input weight rows read and accuracy per ``--silence`` code.

Usage: PYTHONPATH=$PWD python tools/bench_silence.py --data sklearn:digits [--silence 0 1 16 64 128]
           [--epochs E] [--limit N] [--hidden H] [--threads 2] [--plot PATH] [--out DIR]

Per silence code, one JSON line: the exact model trained by ``commands.train`` (the code behind
``popcount-learn train --data D --encoding latency --silence S``, other options default except
those given here), its test accuracy, hidden spikes and input weight rows read before the
decision (mean per image and as a share of the inputs), and the same for its 8-bit emulator
(``export`` + ``evaluate --emulate``). ``--plot`` draws ``plots.plot_cost_against_silence``.
BLAS threads = Numba threads = ``--threads``.
"""

import os
import sys

_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _THREADS)

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numba

from popcount_learn import commands, plots
from popcount_learn.train import TrainConfig

_KEYS = (
    "accuracy",
    "hidden_spikes_before_decision_mean",
    "input_spikes_before_decision_mean",
    "input_weight_rows_read_fraction",
    "no_decision_count",
)


def _pick(summary: dict) -> dict:
    return {k: round(summary[k], 4) if isinstance(summary[k], float) else summary[k] for k in _KEYS if k in summary}


def run(data: str, silence: int, config: TrainConfig, given, limit, out_dir: Path) -> dict:
    record = {"data": data, "silence": silence, "seed": config.seed, "threads": numba.get_num_threads()}
    model = out_dir / f"silence{silence}.h5"
    t0 = time.perf_counter()
    result = commands.train(
        config=config, data_dir=data, out=model, encoding="latency", silence=silence, limit=limit,
        evaluate_every_epoch=False, given=given,
    )  # fmt: skip
    record["epochs"] = len(result["history"])
    record["exact"] = dict(_pick(result["test"]), seconds=round(time.perf_counter() - t0, 1))
    image = out_dir / f"silence{silence}-int8.h5"
    commands.export(model, image, data_dir=data, measure=False)
    record["emulator_8bit"] = _pick(commands.evaluate(image, data_dir=data, emulate=True))
    record["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="sklearn:digits")
    p.add_argument("--silence", type=int, nargs="+", default=[0, 1, 16, 64, 128])
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer's (adapted to the data)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training samples")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--plot", default=None, help="write the plot here (PNG)")
    p.add_argument("--out", default=None, help="keep the models here (default: a temporary directory)")
    args = p.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    config, given = TrainConfig(seed=args.seed), set()
    if args.epochs is not None:
        config, given = dataclasses.replace(config, epochs=args.epochs), given | {"epochs"}
    if args.hidden is not None:
        config, given = dataclasses.replace(config, hidden=(args.hidden,)), given | {"hidden"}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out or tmp)
        for silence in args.silence:
            records.append(run(args.data, silence, config, frozenset(given), args.limit, out_dir))
            print(json.dumps(records[-1]), flush=True)
    if args.plot:
        plots.plot_cost_against_silence(
            [r["silence"] for r in records],
            [r["exact"]["input_spikes_before_decision_mean"] for r in records],
            [r["exact"]["accuracy"] for r in records],
            args.plot,
            emulator_accuracy=[r["emulator_8bit"]["accuracy"] for r in records],
            title=f"{args.data}: rows read and accuracy against the silence code",
        )


if __name__ == "__main__":
    main()
