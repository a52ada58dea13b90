"""Numba's cached kernels are stamped with every kernel file (popcount_learn._kernel_cache)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numba

from popcount_learn import _kernel_cache, emulator, exact, learning, onchip_kernels, train

KERNEL_MODULES = (emulator, exact, learning, onchip_kernels, train)


def _cached_dispatchers(module):
    for value in vars(module).values():
        cached = isinstance(value, numba.core.registry.CPUDispatcher) and type(value._cache).__name__ == "FunctionCache"
        if cached and value.py_func.__module__ == module.__name__:
            yield value


def test_every_cached_kernel_of_the_package_takes_the_package_stamp():
    assert _kernel_cache.LOCATORS, "the Numba cache layout was not recognised"
    assert {Path(m.__file__).name for m in KERNEL_MODULES} == set(_kernel_cache.KERNEL_FILES)
    seen = 0
    for module in KERNEL_MODULES:
        for dispatcher in _cached_dispatchers(module):
            locator = dispatcher._cache._impl._locator
            assert isinstance(locator, _kernel_cache.LOCATORS), (module.__name__, dispatcher.py_func.__name__)
            assert locator.get_source_stamp() == _kernel_cache.kernel_sources_digest()
            seen += 1
    assert seen > 20


def test_a_function_outside_the_kernel_files_keeps_numbas_own_stamp(tmp_path):
    @numba.njit(cache=True)
    def outside(x):
        return x + 1

    assert not isinstance(outside._cache._impl._locator, _kernel_cache.LOCATORS)


def test_the_digest_changes_with_any_kernel_file(tmp_path):
    for name in _kernel_cache.KERNEL_FILES:
        shutil.copy(_kernel_cache.PACKAGE_DIR / name, tmp_path / name)
    base = _kernel_cache.kernel_sources_digest(tmp_path)
    assert base == _kernel_cache.kernel_sources_digest()
    for name in _kernel_cache.KERNEL_FILES:
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(original + b"\n")
        assert _kernel_cache.kernel_sources_digest(tmp_path) != base, name
        (tmp_path / name).write_bytes(original)


# A package laid out like popcount_learn: onchip_kernels' cached kernel calls emulator's.
_EMULATOR = """
import numba
{stamp}

@numba.njit(cache=True)
def step_value():
    return {value}
"""
_ONCHIP = """
import numba
{stamp}
from .emulator import step_value

@numba.njit(cache=True)
def learner_value():
    return step_value() * 10
"""


def _make_package(root: Path, name: str, stamped: bool) -> Path:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(_kernel_cache.PACKAGE_DIR / "_kernel_cache.py", pkg / "_kernel_cache.py")
    stamp = "from . import _kernel_cache  # noqa: F401" if stamped else ""
    for file in ("exact.py", "learning.py", "train.py"):
        (pkg / file).write_text("")
    (pkg / "onchip_kernels.py").write_text(textwrap.dedent(_ONCHIP.format(stamp=stamp)))
    return pkg


def _run(root: Path) -> list[int]:
    code = "; ".join(f"from {p}.onchip_kernels import learner_value as {p}; print({p}())" for p in ("on", "off"))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [int(line) for line in out.stdout.split()]


def test_an_edit_of_a_callee_in_another_file_reaches_the_cached_caller(tmp_path):
    """Package ``on`` imports _kernel_cache; ``off``, the control, is Numba alone, which keeps the
    caller's stale machine code after the callee's file changed."""
    packages = {"on": _make_package(tmp_path, "on", True), "off": _make_package(tmp_path, "off", False)}
    for value in (1, 2):
        for name, pkg in packages.items():
            stamp = "from . import _kernel_cache  # noqa: F401" if name == "on" else ""
            (pkg / "emulator.py").write_text(textwrap.dedent(_EMULATOR.format(stamp=stamp, value=value)))
        if value == 1:
            assert _run(tmp_path) == [10, 10]
    assert _run(tmp_path) == [20, 10]
