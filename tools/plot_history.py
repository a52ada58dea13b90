"""Plot the learning curve stored in a model file: test accuracy and hidden spikes per epoch.

Usage: python tools/plot_history.py MODEL.h5 [MODEL.h5 ...] -o curve.png

Every model written by `popcount-learn train` keeps its per-epoch history (loss, running
training accuracy, the test summary after each epoch) in its metadata; this draws it.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from popcount_learn import h5io
from popcount_learn.errors import PopcountLearnError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_history: matplotlib is needed (pip install -e '.[plots]')", file=sys.stderr)
        return 2
    fig, (ax_acc, ax_spk) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for path in args.models:
        try:
            _, metadata = h5io.load_network(path)
        except PopcountLearnError as exc:
            print(f"plot_history: {exc}", file=sys.stderr)
            return 2
        history = [r for r in metadata.get("history") or [] if "test" in r]
        if not history:
            print(f"plot_history: {path} has no per-epoch test history", file=sys.stderr)
            return 2
        epochs = [r["epoch"] for r in history]
        label = Path(path).name
        ax_acc.plot(epochs, [100 * r["test"]["accuracy"] for r in history], marker="o", ms=3, label=label)
        ax_spk.plot(
            epochs, [r["test"]["hidden_spikes_before_decision_mean"] for r in history], marker="o", ms=3, label=label
        )
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_spk.set_ylabel("hidden spikes before\nthe decision (mean)")
    ax_spk.set_xlabel("epoch")
    ax_spk.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out)
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
