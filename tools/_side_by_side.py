"""Old vs new in one run: a benchmark script once per tree per round, in turn, in fresh processes.

``run_trees(script, argv, trees, rounds, figures)`` runs ``script`` with ``argv`` (the caller's
arguments without ``--trees`` / ``--rounds``) under ``PYTHONPATH=tree`` for each tree, ``rounds``
times alternating, checks that each run imported the library of its tree (the script's JSON
report must carry ``"library"``), prints every run as a JSON line and then, for the figures named
in ``figures`` (dotted paths into the report, higher is better), the best run per tree and each
tree's ratio over the first tree's best.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def strip_tree_args(argv: list[str]) -> list[str]:
    """``argv`` without ``--trees DIR ...`` and ``--rounds R``."""
    out = []
    i = 0
    while i < len(argv):
        if argv[i] == "--trees":
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
        elif argv[i] == "--rounds":
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _get(report: dict, path: str) -> float:
    for key in path.split("."):
        report = report[key]
    return float(report)


def run_trees(script: str, argv: list[str], trees: list[str], rounds: int, figures: list[str]) -> dict:
    runs: dict[str, list[dict]] = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree in trees:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
            out = subprocess.run(
                [sys.executable, os.path.abspath(script), *argv], env=env, check=True, capture_output=True, text=True
            ).stdout
            report = json.loads(out[out.index("{") :])
            if not os.path.samefile(report["library"], os.path.join(tree, "popcount_learn")):
                raise SystemExit(f"{tree}: ran the library in {report['library']}")
            runs[tree].append(report)
            print(json.dumps({"tree": tree, **report}), flush=True)
    best = {tree: {f: max(_get(r, f) for r in reports) for f in figures} for tree, reports in runs.items()}
    first = best[trees[0]]
    summary = {
        "best_per_tree": best,
        "ratio_over_first": {
            t: {f: round(b[f] / first[f], 2) for f in figures} for t, b in best.items() if t != trees[0]
        },
        "load_per_run": {t: [r["load_average"][0] for r in reports] for t, reports in runs.items()},
    }
    print(json.dumps(summary, indent=1), flush=True)
    return summary
