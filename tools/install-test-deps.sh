#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine, then the package itself:
#   - Debian: a C compiler and make (firmware host build), iverilog (RTL under cocotb),
#     verilator (RTL lint), yosys (its iCE40 cells_sim.v: the UP5K top in simulation),
#     gcc-arm-none-eabi + libnewlib-arm-none-eabi + qemu-system-arm (the Cortex-M boards),
#     clang (the fuzzing harness), hdf5-tools (h5dump checks of the file format);
#   - PyPI: the package with its [test,plots] extras (pytest, pytest-xdist, hypothesis, cocotb, ruff,
#     dask[distributed] for the sweep runner's tests, matplotlib).
# Packages already present are not reinstalled. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(build-essential iverilog verilator yosys gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang hdf5-tools)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    echo "install-test-deps: apt-get install ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install-test-deps: no apt-get; tests that need ${missing[*]} will be skipped with a reason" >&2
  fi
fi
pip install -q -e ".[test,plots]"
