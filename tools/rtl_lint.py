"""Verilator lint of the RTL (``verilator --lint-only -Wall``) over a set of layouts.

    python tools/rtl_lint.py                 # every layout of LINT_LAYOUTS, pcl_core and pcl_up5k_top
    python tools/rtl_lint.py --top pcl_core

pcl_core is linted as the top with its parameters bound from ``RtlLayout`` (``-G``, the values of
``pcl_core_params.vh``); pcl_up5k_top with the generated headers and yosys's SB_SPRAM256KA model
(``ice40/cells_sim.v``). The sources come from the file lists (``pcl.f``, ``pcl_up5k.f``); the
only waivers are those of ``firmware_bridge/rtl/pcl_lint.vlt``, each with its reason. Prints every
warning; exit code 1 if there is any.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_bridge.rtl.params import RtlLayout
from firmware_bridge.rtl.sources import RTL_DIR, ice40_cells_sim, read_file_list
from popcount_learn import codegen, h5io
from popcount_learn.datapath import DatapathConfig
from popcount_learn.learning import LearningConfig

NET100 = ROOT / "datasets" / "pretrained" / "net100-int8.h5"
TOPS = ("pcl_core", "pcl_up5k_top")
WAIVERS = "pcl_lint.vlt"


def lint_layouts(net100: Path = NET100) -> dict[str, RtlLayout]:
    """The layouts the lint must pass: the shipped 784-100-10 int8 image at 1, 4 and 8 lanes and
    16-bit weights, a 3-layer network at 3 lanes, wrapping registers with the lowest-index tie
    rule, and a network smaller than its lane count; and learning cores: net100-int8 at 1, 4 and 8
    lanes with the default rule, the 3-layer network with the other two rules, and the tiny one
    with constant probabilities that need the draw."""
    image = h5io.load_weight_image(net100)
    shipped = (image.spec, tuple(int(n) for n in image.topology))
    three = DatapathConfig(
        time_shift=4, weight_bits=8, current_frac_bits=4, current_bits=16, membrane_bits=16, max_steps=40
    )
    wrap = DatapathConfig(
        time_shift=1,
        weight_bits=5,
        current_frac_bits=1,
        current_bits=6,
        membrane_bits=7,
        current_overflow="wrap",
        membrane_overflow="wrap",
        tie_rule="lowest_index",
        max_steps=20,
    )
    wide = DatapathConfig.for_weight_bits(16)
    return {
        "net100-int8 x1": RtlLayout(*shipped, 1),
        "net100-int8 x4": RtlLayout(*shipped, 4),
        "net100-int8 x8": RtlLayout(*shipped, 8),
        "net100 16-bit x2": RtlLayout(wide, shipped[1], 2),
        "3 layers 9-12-7-3 x3": RtlLayout(three, (9, 12, 7, 3), 3),
        "wrap lowest-index 6-7-3 x2": RtlLayout(wrap, (6, 7, 3), 2),
        "tiny 3-5-2 x8": RtlLayout(DatapathConfig(max_steps=16), (3, 5, 2), 8),
        "learning net100-int8 x1": RtlLayout(*shipped, 1, LearningConfig()),
        "learning net100-int8 x4": RtlLayout(*shipped, 4, LearningConfig()),
        "learning net100-int8 x8": RtlLayout(*shipped, 8, LearningConfig()),
        "learning 9-12-7-3 x3 all rules": RtlLayout(
            three,
            (9, 12, 7, 3),
            3,
            LearningConfig(margin_steps=3, output_rule="all_violators", correct_rule="always", seed=0xDEADBEEF),
        ),
        "learning tiny 3-5-2 x8 drawn": RtlLayout(
            DatapathConfig(max_steps=16),
            (3, 5, 2),
            8,
            LearningConfig(hidden_update_prob_q16=1000, output_update_prob_q16=30000, prob_halving_samples=0),
        ),
    }


def core_parameters(layout: RtlLayout) -> list[str]:
    """``-G`` options that bind pcl_core's parameters exactly as pcl_core_params.vh does."""
    rule = codegen.learning_constants(layout.learning) if layout.learning is not None else []
    values = {c.name: c for c in [*codegen.datapath_constants(layout.spec), *layout.constants(), *rule]}
    options = []
    for param, const in layout.core_parameter_bindings():
        value = values[const].value
        if isinstance(value, tuple):  # a vector of 32-bit fields, element 0 lowest
            packed = sum(int(v) << (32 * i) for i, v in enumerate(value))
            options.append(f"-G{param}={32 * len(value)}'h{packed:x}")
        elif values[const].unsigned:  # a 32-bit unsigned constant (localparam [31:0])
            options.append(f"-G{param}=32'h{int(value):08x}")
        else:
            options.append(f"-G{param}={int(value)}")
    return options


@dataclass(frozen=True)
class LintResult:
    top: str
    command: list[str]
    messages: list[str]  # one line per %Warning / %Error
    output: str  # verilator's full output


def lint(
    layout: RtlLayout, top: str = "pcl_core", *, rtl_dir: Path = RTL_DIR, work_dir: Path | None = None
) -> LintResult:
    """Lint ``top`` for ``layout`` with the sources of the file lists in ``rtl_dir`` (a copy of the
    RTL directory can be linted the same way) and that directory's waivers."""
    if top not in TOPS:
        raise ValueError(f"top must be one of {TOPS}, got {top!r}")
    rtl_dir = Path(rtl_dir)
    with tempfile.TemporaryDirectory(prefix="pcl-lint-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cmd = ["verilator", "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top, str(rtl_dir / WAIVERS)]
        if top == "pcl_core":
            cmd += core_parameters(layout)
            cmd += [str(p) for p in read_file_list(rtl_dir / "pcl.f")]
        else:
            model = ice40_cells_sim()
            if model is None:
                raise FileNotFoundError("yosys's ice40/cells_sim.v was not found (apt-get install yosys)")
            layout.write_headers(work)
            cmd += [f"-I{work}", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", str(model)]
            cmd += [str(p) for p in read_file_list(rtl_dir / "pcl_up5k.f")]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    output = proc.stdout + proc.stderr
    messages = [line.strip() for line in output.splitlines() if line.startswith(("%Warning", "%Error"))]
    if proc.returncode != 0 and not messages:
        messages = [f"%Error: verilator exited with {proc.returncode}"]
    return LintResult(top, cmd, messages, output)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--top", nargs="+", choices=TOPS, default=list(TOPS))
    p.add_argument("--image", default=str(NET100), help="the shipped image whose layouts are linted")
    args = p.parse_args(argv)
    total = 0
    for name, layout in lint_layouts(Path(args.image)).items():
        for top in args.top:
            result = lint(layout, top)
            total += len(result.messages)
            print(f"{name:28s} {top:14s} {len(result.messages)} warnings")
            for line in result.messages:
                print("    " + line)
    print(f"{total} warnings in total")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
