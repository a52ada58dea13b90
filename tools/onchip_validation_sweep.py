"""Choose the on-chip spike-target recipe on a validation split, not on the test set.

Usage: python tools/onchip_validation_sweep.py --data mnist-val.npz --work DIR [--only NAME ...]

``--data`` is the file ``tools/validation_split.py`` writes (first 50,000 training images to
train on, the last 10,000 as its "test" split), so every accuracy and spike count this prints is
the emulator's on the validation images; the real test set is never read. Each variant is a
chain of phases, each a ``commands.train_onchip`` call (what ``popcount-learn train --mode onchip``
runs) from the previous phase's image, so the rule and its sample index carry over and
``--learn`` fields override it, exactly as the README's two phased commands. Phases shared by
several variants are trained once and kept in ``DIR``. Prints a markdown table: the last epoch,
the mean of the last three epochs (the figure the choice is made on: one epoch is +-0.15 points
of noise) and the most accurate epoch at <= 28 spikes.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import sys
import time
from pathlib import Path

from popcount_learn import commands, h5io
from popcount_learn.onchip_train import OnchipTrainConfig

SPIKE_LIMIT = 28.0
PHASE1 = (3, {"margin_steps": "16"})


def phase2(epochs=12, **learn):
    fields = {"hidden_spike_target": "48", "prob_halving_samples": "360000"}
    fields.update({k: str(v) for k, v in learn.items()})
    return (epochs, fields)


# name -> phases, each (epochs, --learn fields); the first phase starts from the seeded random int8 start.
VARIANTS = {
    "3 + 12, T 48 (the shipped recipe)": [PHASE1, phase2()],
    "3 + 12, T 40": [PHASE1, phase2(hidden_spike_target=40)],
    "3 + 12, T 44": [PHASE1, phase2(hidden_spike_target=44)],
    "3 + 12, T 52": [PHASE1, phase2(hidden_spike_target=52)],
    "3 + 12, T 56": [PHASE1, phase2(hidden_spike_target=56)],
    "3 + 12, T 48, halving 540,000": [PHASE1, phase2(prob_halving_samples=540000)],
    "3 + 12, T 48, halving 720,000": [PHASE1, phase2(prob_halving_samples=720000)],
    "3 + 12, T 48, margin 24 in phase 2": [PHASE1, phase2(margin_steps=24)],
    "5 + 10, T 48": [(5, {"margin_steps": "16"}), phase2(epochs=10)],
    "3 + 20, T 48": [PHASE1, phase2(epochs=20)],
    "3 + 6 + 6, T 56 then 44 (falling target)": [
        PHASE1,
        phase2(6, hidden_spike_target=56),
        phase2(6, hidden_spike_target=44),
    ],
    "3 + 6 + 6, T 48, then margin 24": [PHASE1, phase2(6), phase2(6, margin_steps=24)],
    # second round, combining the first round's best three (T 44, halving 540,000, margin 24)
    "3 + 12, T 44, halving 540,000": [PHASE1, phase2(hidden_spike_target=44, prob_halving_samples=540000)],
    "3 + 12, T 44, margin 24": [PHASE1, phase2(hidden_spike_target=44, margin_steps=24)],
    "3 + 12, T 44, margin 24, halving 540,000": [
        PHASE1,
        phase2(hidden_spike_target=44, margin_steps=24, prob_halving_samples=540000),
    ],
    "3 + 12, T 48, margin 24, halving 540,000": [PHASE1, phase2(margin_steps=24, prob_halving_samples=540000)],
    "3 + 12, T 40, margin 24": [PHASE1, phase2(hidden_spike_target=40, margin_steps=24)],
}


def phase_file(work: Path, phases) -> Path:
    key = "_".join(f"e{e}" + "".join(f"-{k[:6]}{v}" for k, v in sorted(f.items())) for e, f in phases)
    return work / f"{key}.h5"


def run_phases(data, work: Path, phases):
    """Train the chain (reusing finished prefixes); the per-epoch validation records of every phase."""
    records, init = [], None
    for i in range(len(phases)):
        out = phase_file(work, phases[: i + 1])
        if not out.exists():
            epochs, fields = phases[i]
            commands.train_onchip(
                config=OnchipTrainConfig(epochs=epochs),
                learning_options=dict(fields),
                data_dir=data,
                init=init,
                out=out,
                given=frozenset({"epochs"}),
            )
        records += h5io.load_model(out).provenance["history"]
        init = out
    return records, init


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the .npz of tools/validation_split.py")
    ap.add_argument("--work", required=True, help="directory for the phase images (reused between runs)")
    ap.add_argument("--only", nargs="*", default=None, help="substrings of variant names to run")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(
        "| variant | epochs | last epoch: val. acc / spikes | last 3 epochs: mean acc / spikes "
        "| best epoch at <= 28 spikes | file |"
    )
    print("|---|---|---|---|---|---|")
    for name, phases in VARIANTS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        t = time.perf_counter()
        records, out = run_phases(args.data, work, phases)
        acc = [100 * r["test"]["accuracy"] for r in records]
        spk = [r["test"]["hidden_spikes_before_decision_mean"] for r in records]
        within = [i for i in range(len(acc)) if spk[i] <= SPIKE_LIMIT]
        best = max(within, key=lambda i: acc[i]) if within else None
        best_text = f"ep {best + 1}: {acc[best]:.2f} / {spk[best]:.1f}" if best is not None else "none"
        print(
            f"| {name} | {len(acc)} | {acc[-1]:.2f} / {spk[-1]:.1f} | {sum(acc[-3:]) / 3:.2f} / "
            f"{sum(spk[-3:]) / 3:.1f} | {best_text} | {out.name} |",
            flush=True,
        )
        log = {"variant": name, "phases": phases, "accuracy": acc, "spikes": spk, "seconds": time.perf_counter() - t}
        with open(work / "sweep.jsonl", "a") as f:
            f.write(json.dumps(log) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
