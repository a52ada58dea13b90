"""Build the firmware for a spec: generated headers, a build directory per spec, ``make``.

The firmware's spec is compile-time: ``generated_headers`` renders the datapath spec, the
upload stream layout, the learning rule and the wire constants (through
``popcount_learn.codegen``) into ``GEN_DIR``; the build directory is keyed by a hash of
those headers, the board and the make variables, so each spec gets its own binary and a change
of spec is a rebuild. ``make`` itself rebuilds when a source changed. Boards are the folders
``firmware/boards/<name>/`` that hold a ``board.mk``; ``board_config`` reads what a board.mk
declares (name, memory sizes, QEMU machine) through ``make print-board``, so the folder is the
only place a board is described.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from popcount_learn import __version__, codegen
from popcount_learn.datapath import DatapathConfig

from ..errors import FirmwareBuildError
from ..wire import protocol

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BUILD_ROOT_ENV = "PCL_FIRMWARE_BUILD_ROOT"
MAKE_TIMEOUT_S = 300


def default_spec() -> DatapathConfig:
    """The spec of the shipped int8 images (and of ``board virtual`` without ``--image``)."""
    return DatapathConfig.for_weight_bits(8)


def default_build_root() -> Path:
    """``$PCL_FIRMWARE_BUILD_ROOT``, else the user's own cache ``~/.cache/popcount-learn/firmware``
    (``$XDG_CACHE_HOME`` when set); never a directory shared with other users."""
    env = os.environ.get(BUILD_ROOT_ENV)
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "popcount-learn" / "firmware"


def own_cache_dir(path: Path, error=FirmwareBuildError) -> Path:
    """Create ``path`` (mode 0700 for new directories) and refuse it (``error``) when it belongs to
    another user: what is built there is run, so nobody else may put anything there."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = path.stat().st_uid
    if hasattr(os, "getuid") and owner != os.getuid():
        raise error(f"build cache {path} belongs to user id {owner}, not to you; set another with {BUILD_ROOT_ENV}")
    return path


def generated_headers(spec: DatapathConfig | None = None, learning=None) -> dict[str, str]:
    """File name -> text of every generated header of a firmware build for this spec (and rule)."""
    headers = codegen.firmware_spec_headers(spec or default_spec(), learning)
    headers["pcl_protocol.h"] = codegen.c_header(
        "pcl_protocol.h",
        [*protocol.header_constants(), codegen.Constant("FIRMWARE_VERSION", f'"{__version__}"')],
        source="firmware_bridge.wire.protocol",
    )
    return headers


def boards() -> list[str]:
    """Every board: the folders of ``firmware/boards/`` that hold a ``board.mk``."""
    return sorted(p.name for p in (FIRMWARE_DIR / "boards").iterdir() if (p / "board.mk").is_file())


def _check_board(board: str) -> None:
    if not (FIRMWARE_DIR / "boards" / board / "board.mk").is_file():
        raise FirmwareBuildError(f"unknown board {board!r}; boards: {', '.join(boards())}")


@functools.cache
def _board_config(board: str, board_mk_mtime_ns: int) -> tuple[tuple[str, str], ...]:
    if shutil.which("make") is None:
        raise FirmwareBuildError("reading a board's board.mk needs 'make' (apt-get install make)")
    r = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(FIRMWARE_DIR), f"BOARD={board}", "print-board"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise FirmwareBuildError(f"make print-board failed for board {board!r}:\n{(r.stdout + r.stderr).strip()}")
    pairs = (line.partition("=") for line in r.stdout.splitlines() if "=" in line)
    return tuple((name.strip(), value.strip()) for name, _, value in pairs)


def board_config(board: str) -> dict[str, str]:
    """What ``boards/<board>/board.mk`` declares, after the Makefile's defaults: BOARD_NAME,
    TARGET, QEMU_MACHINE (empty: not a QEMU board), WEIGHT_CAPACITY_BYTES, MAX_NEURONS,
    MAX_LAYERS, MAX_PAYLOAD_BYTES, SELFTEST ("yes"/"no"), SELFTEST_BIG_BYTES."""
    _check_board(board)
    mtime = (FIRMWARE_DIR / "boards" / board / "board.mk").stat().st_mtime_ns
    return dict(_board_config(board, mtime))


@dataclass(frozen=True)
class FirmwareBuild:
    board: str
    build_dir: Path
    gen_dir: Path
    make_vars: tuple[tuple[str, str], ...]

    def make_command(self, *targets: str) -> list[str]:
        return [
            "make",
            "-s",
            "-C",
            str(FIRMWARE_DIR),
            f"BOARD={self.board}",
            f"BUILD_DIR={self.build_dir}",
            f"GEN_DIR={self.gen_dir}",
            *(f"{k}={v}" for k, v in self.make_vars),
            *targets,
        ]


def prepare_build(
    spec: DatapathConfig | None = None,
    *,
    board: str = "host",
    learning=None,
    build_root: Path | None = None,
    make_vars: dict | None = None,
) -> FirmwareBuild:
    """Write the generated headers into a build directory keyed by their hash; no compiling yet."""
    headers = generated_headers(spec, learning)
    if learning is not None:
        make_vars = {"LEARN_SRCS": "pcl_learn.c", **(make_vars or {})}
    items = tuple(sorted((str(k), str(v)) for k, v in (make_vars or {}).items()))
    key = hashlib.sha256(repr((board, items, sorted(headers.items()))).encode()).hexdigest()[:16]
    build_dir = own_cache_dir(Path(build_root or default_build_root())) / f"{board}-{key}"
    gen_dir = build_dir / "gen"
    gen_dir.mkdir(parents=True, exist_ok=True)
    for name, text in headers.items():
        codegen.write_if_changed(gen_dir / name, text)
    return FirmwareBuild(board, build_dir, gen_dir, items)


# What a build leaves in its directory, with digests: checked before the next make reuses it.
MANIFEST = "manifest.sha256"
_NOT_BUILT = {".lock", MANIFEST, "gen"}


def _built_files(build_dir: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file make wrote (the generated headers excluded)."""
    out = {}
    for path in sorted(build_dir.rglob("*")):
        rel = path.relative_to(build_dir)
        if rel.parts[0] in _NOT_BUILT or not path.is_file() or path.is_symlink():
            continue
        out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _drop_damaged(build_dir: Path) -> list[str]:
    """Delete every file of the last build whose bytes changed since (a truncated binary or
    object, an interrupted copy), so that make builds it again instead of reusing it."""
    try:
        recorded = dict(line.split("  ", 1)[::-1] for line in (build_dir / MANIFEST).read_text().splitlines() if line)
    except (OSError, ValueError):
        return []  # no manifest (a first build, or one from before manifests): make decides
    dropped = []
    for rel, digest in recorded.items():
        path = build_dir / rel
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            path.unlink()
            dropped.append(rel)
    return dropped


def _write_manifest(build_dir: Path) -> None:
    text = "".join(f"{digest}  {rel}\n" for rel, digest in _built_files(build_dir).items())
    tmp = build_dir / f"{MANIFEST}.tmp"
    tmp.write_text(text)
    os.replace(tmp, build_dir / MANIFEST)


def _make(build: FirmwareBuild, *targets: str) -> str:
    """make ``targets`` under the build directory's lock. Files of an earlier build that were
    damaged since are deleted first (make rebuilds them); a failed make is tried once more from
    a clean directory, in case it failed on a damaged file no manifest knew about."""
    if shutil.which("make") is None:
        raise FirmwareBuildError("building the firmware needs 'make' and a C compiler (apt-get install make gcc)")
    with open(build.build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent launchers of one spec build once
        _drop_damaged(build.build_dir)
        r = subprocess.run(build.make_command(*targets), capture_output=True, text=True, timeout=MAKE_TIMEOUT_S)
        if r.returncode != 0 and _built_files(build.build_dir):
            for rel in _built_files(build.build_dir):
                (build.build_dir / rel).unlink()
            r = subprocess.run(build.make_command(*targets), capture_output=True, text=True, timeout=MAKE_TIMEOUT_S)
        if r.returncode == 0:
            _write_manifest(build.build_dir)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        goal = " ".join(targets) or "all"
        raise FirmwareBuildError(f"firmware build failed (make {goal} in {build.build_dir}):\n{tail}")
    return r.stdout


def build_firmware(
    spec: DatapathConfig | None = None,
    *,
    board: str = "host",
    learning=None,
    build_root: Path | None = None,
    make_vars: dict | None = None,
) -> Path:
    """Build (if needed) the firmware for ``spec`` and return the path of the binary / ELF."""
    _check_board(board)
    build = prepare_build(spec, board=board, learning=learning, build_root=build_root, make_vars=make_vars)
    _make(build, "all")
    return Path(_make(build, "print-target").strip().splitlines()[-1])


def build_c_tests(spec: DatapathConfig | None = None, *, learning=None, build_root: Path | None = None) -> Path:
    """Build the C unit test runner (host compiler) for ``spec``; returns its path."""
    build = prepare_build(spec, board="host", learning=learning, build_root=build_root)
    _make(build, "test")
    return build.build_dir / "pcl-tests"


def build_c_bench(spec: DatapathConfig | None = None, *, learning=None, build_root: Path | None = None) -> Path:
    """Build the host micro-benchmark (tools/bench_board.py) for ``spec``; returns its path."""
    build = prepare_build(spec, board="host", learning=learning, build_root=build_root)
    _make(build, "bench")
    return build.build_dir / "pcl-bench"
