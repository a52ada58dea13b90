"""Shared fixtures, and the markers that say what a test needs of the machine.

``@pytest.mark.firmware`` (make and a C compiler), ``qemu`` (the ARM cross compiler and QEMU),
``rtl`` (Icarus Verilog and cocotb >= 2) and ``needs("tool", ...)`` (programs on PATH) skip a
test with the reason and the package to install when this machine lacks something; under CI
(``CI`` set in the environment) they fail it instead, since tools/install-test-deps.sh installs
everything there and a silent skip would hide a broken install. ``slow`` marks the long runs
that the default selection leaves out (``pytest -m slow`` runs them).
"""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

APT_HINT = {
    "make": "make",
    "cc": "build-essential",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "iverilog": "iverilog",
    "vvp": "iverilog",
    "verilator": "verilator",
    "yosys": "yosys",
    "clang": "clang",
    "h5dump": "hdf5-tools",
}
MARKER_TOOLS = {
    "firmware": ("make", "cc"),
    "qemu": ("make", "arm-none-eabi-gcc", "qemu-system-arm"),
    "rtl": ("iverilog", "vvp"),
}


def _missing(tools) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _cocotb_problem() -> str | None:
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotb_tools") is None:
        return "cocotb is not installed (pip install 'cocotb>=2.0')"
    import cocotb

    if int(str(cocotb.__version__).split(".")[0]) < 2:
        return f"cocotb {cocotb.__version__} is too old (the runner needs >= 2.0)"
    return None


def requirement_problem(item) -> str | None:
    """Why this machine cannot run ``item`` (None: it can)."""
    tools = [t for name, needed in MARKER_TOOLS.items() if item.get_closest_marker(name) for t in needed]
    for mark in item.iter_markers("needs"):
        tools += list(mark.args)
    missing = _missing(dict.fromkeys(tools))
    if missing:
        packages = " ".join(dict.fromkeys(APT_HINT.get(t, t) for t in missing))
        return f"{', '.join(missing)} not on PATH (apt-get install {packages})"
    if item.get_closest_marker("rtl"):
        return _cocotb_problem()
    return None


def pytest_collection_modifyitems(config, items):
    """Leave the ``slow`` tests out unless the -m expression names them (``-m slow``): a plain
    ``-m "not qemu"`` must not bring them back, as an ``-m`` in addopts would."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_runtest_setup(item):
    problem = requirement_problem(item)
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but {problem}; tools/install-test-deps.sh installs it")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST copy shipped in the repository (``datasets/mnist``)."""
    return REPO_ROOT / "datasets" / "mnist"


@pytest.fixture(scope="session")
def firmware_build_root(tmp_path_factory) -> Path:
    """One firmware build directory per test session (builds are keyed by spec inside it)."""
    return tmp_path_factory.mktemp("firmware")


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one worker per core this process may run on (the
    affinity mask, which a container's cpuset also narrows); most tests are single-threaded
    (a simulator, a board, a Numba compile), so the suite's wall time falls about in proportion."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pytest_addoption(parser):
    parser.addoption(
        "--board-port",
        default=None,
        metavar="URL",
        help="run tests/test_board.py against this board (int8 spec, any learning rule) instead of "
        "a host virtual board it starts itself",
    )
