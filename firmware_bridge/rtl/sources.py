"""Where the RTL's sources are: the file lists ``pcl.f`` (the core) and ``pcl_up5k.f`` (the UP5K
top, which reads ``pcl.f``), and yosys's iCE40 simulation models.

Every consumer (``rtl/sim.py``, ``tools/rtl_synth.py``, the lint and the testbenches) takes its
sources from these lists, so a file added to the core is added once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent
CORE_FILE_LIST = RTL_DIR / "pcl.f"
UP5K_FILE_LIST = RTL_DIR / "pcl_up5k.f"


def read_file_list(path: str | Path) -> list[Path]:
    """The source files a file list names, in order, as absolute paths.

    The format is the part of Verilator's ``-F`` files the RTL uses: one path per line, relative
    to the list's own directory; ``-F other.f`` reads another list in place; ``//`` starts a
    comment. Anything else (another option) is refused rather than ignored.
    """
    path = Path(path).resolve()
    files: list[Path] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-F "):
            files += read_file_list(path.parent / line[3:].strip())
        elif line.startswith(("-", "+")) or " " in line:
            raise ValueError(f"{path}:{number}: only file paths and '-F list' are supported, got {line!r}")
        else:
            files.append((path.parent / line).resolve())
    return files


def ice40_cells_sim() -> Path | None:
    """yosys's iCE40 cell models (``<datdir>/ice40/cells_sim.v``, with SB_SPRAM256KA), or None.

    The share directory comes from ``yosys-config --datdir`` when that is installed (Debian puts
    it in yosys-dev), else from the usual layout beside the binary (``<prefix>/share/yosys``).
    Compile it with ``NO_ICE40_DEFAULT_ASSIGNMENTS`` defined: its port defaults are SystemVerilog.
    """
    candidates = []
    if shutil.which("yosys-config"):
        out = subprocess.run(["yosys-config", "--datdir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    yosys = shutil.which("yosys")
    if yosys:
        candidates.append(Path(yosys).resolve().parent.parent / "share" / "yosys")
    for datdir in candidates:
        model = datdir / "ice40" / "cells_sim.v"
        if model.is_file():
            return model
    return None
