"""Numba's on-disk cache for this package's kernels, keyed on every kernel source at once.

Numba stamps a cached function with its own file only. A kernel that calls ``run_image`` from
another module (``onchip_kernels.train_one`` does) kept its cached machine code after an edit of
``emulator.py``, so a worktree ran the old ``run_image`` inside the new learner (found in issue
#19's work: a benchmark could look bit-identical to code that never ran). Here the stamp of every
kernel of the package is one digest of all ``KERNEL_FILES``: an edit of any of them recompiles
them all on first use. Same cache directories as Numba's own locators; only functions defined in
those files are affected. Importing this module installs the locators; every kernel module does
so before its first ``@numba.njit(cache=True)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core import caching

PACKAGE_DIR = Path(__file__).resolve().parent
KERNEL_FILES = ("emulator.py", "exact.py", "learning.py", "onchip_kernels.py", "train.py")


def kernel_sources_digest(package_dir: Path = PACKAGE_DIR) -> bytes:
    """SHA-256 over the kernel files' names and contents, in ``KERNEL_FILES`` order."""
    h = hashlib.sha256()
    for name in KERNEL_FILES:
        h.update(name.encode() + b"\0" + (package_dir / name).read_bytes() + b"\0")
    return h.digest()


_DIGEST = kernel_sources_digest()
_KERNEL_PATHS = frozenset(str(PACKAGE_DIR / name) for name in KERNEL_FILES)


class _PackageStamp:
    """Mixin for a Numba source-file locator: take only this package's kernel files, and stamp
    them with the digest of all of them instead of the one file."""

    def get_source_stamp(self):
        return _DIGEST

    @classmethod
    def from_function(cls, py_func, py_file):
        if str(Path(py_file).resolve()) not in _KERNEL_PATHS:
            return None
        return super().from_function(py_func, py_file)


def _numba_class(name: str):
    # Public from Numba 0.61 on, underscored before.
    return getattr(caching, name, None) or getattr(caching, "_" + name, None)


def _install() -> tuple[type, ...]:
    cache_impl = _numba_class("CacheImpl")
    bases = [_numba_class(n) for n in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    if cache_impl is None or None in bases:  # an unknown Numba layout: keep its own stamps
        return ()
    if any(issubclass(c, _PackageStamp) for c in cache_impl._locator_classes):
        return tuple(c for c in cache_impl._locator_classes if issubclass(c, _PackageStamp))
    # The same order as Numba's: $NUMBA_CACHE_DIR, then __pycache__, then the user-wide cache.
    ours = tuple(type("Package" + base.__name__.lstrip("_"), (_PackageStamp, base), {}) for base in bases)
    cache_impl._locator_classes = list(ours) + list(cache_impl._locator_classes)
    return ours


LOCATORS = _install()
