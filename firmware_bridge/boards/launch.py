"""Build the firmware for a spec and start a virtual board behind a pseudo-terminal.

The firmware's spec is compile-time: ``generated_headers`` renders the datapath spec
(``DatapathConfig.c_header()``), the upload stream layout (``weight_image``) and the wire
constants (``protocol.c_header()``) into ``GEN_DIR``; the build directory is keyed by a hash of
those headers, the board and the make variables, so each spec gets its own binary and a change
of spec is a rebuild. ``make`` itself rebuilds when a source changed.

Boards: ``host`` (this machine; the firmware process reads and writes a pty) and, plugged in by
``firmware_bridge.boards.qemu.start_qemu(elf_path)``, a QEMU Cortex-M3 (``board="mps2_an385"``). A
started board is anything with ``.port`` (what ``BoardClient`` opens), ``.wait()`` and use as a
context manager that stops it on exit; ``VirtualBoard`` is the host one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import tty
from dataclasses import dataclass
from pathlib import Path

from popcount_learn import __version__
from popcount_learn.datapath import DatapathConfig
from popcount_learn.learning import CORRECT_RULE_CODES, OUTPUT_RULE_CODES, LearningConfig
from popcount_learn.weight_image import (
    UPLOAD_HEADER_BYTES,
    UPLOAD_LAYER_HEADER_BYTES,
    UPLOAD_MAGIC,
    UPLOAD_SPEC_FIELDS,
    UPLOAD_STREAM_VERSION,
)

from ..wire import protocol
from ..errors import FirmwareBuildError

_LEARNING_ENUM_CODES = {"output_rule": OUTPUT_RULE_CODES, "correct_rule": CORRECT_RULE_CODES}
FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BUILD_ROOT_ENV = "PCL_FIRMWARE_BUILD_ROOT"
MAKE_TIMEOUT_S = 300
STOP_TIMEOUT_S = 3.0


def default_spec() -> DatapathConfig:
    """The spec of the shipped int8 images (and of ``board virtual`` without ``--image``)."""
    return DatapathConfig.for_weight_bits(8)


def default_build_root() -> Path:
    env = os.environ.get(BUILD_ROOT_ENV)
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "popcount-learn" / "firmware"


def stream_c_header(guard: str = "PCL_IMAGE_STREAM_H") -> str:
    """Layout constants of the upload stream (docs/weight-image.md) for the firmware.

    ``PCL_STREAM_SPEC_VALUES`` pairs each header field, in stream order, with the compiled
    spec's ``PCL_<FIELD>`` constant: the board compares an image's header against it.
    """
    macros = [f"PCL_{name.upper()}" for name in UPLOAD_SPEC_FIELDS]
    missing = [m for m in macros if f"#define {m} " not in default_spec().c_header()]
    if missing:
        raise RuntimeError(f"DatapathConfig.c_header() lacks {missing}, needed by the upload stream")
    consts = [(f"STREAM_MAGIC_{i}", b) for i, b in enumerate(UPLOAD_MAGIC)]
    consts += [
        ("STREAM_VERSION", UPLOAD_STREAM_VERSION),
        ("STREAM_VERSION_OFFSET", len(UPLOAD_MAGIC)),
        ("STREAM_SPEC_OFFSET", len(UPLOAD_MAGIC) + 4),
        ("STREAM_N_SPEC_FIELDS", len(UPLOAD_SPEC_FIELDS)),
        ("STREAM_N_LAYERS_OFFSET", len(UPLOAD_MAGIC) + 4 + 4 * len(UPLOAD_SPEC_FIELDS)),
        ("STREAM_HEADER_BYTES", UPLOAD_HEADER_BYTES),
        ("STREAM_LAYER_HEADER_BYTES", UPLOAD_LAYER_HEADER_BYTES),
    ]
    lines = ["/* Generated from popcount_learn.weight_image (upload stream layout); do not edit. */",
             f"#ifndef {guard}", f"#define {guard}", ""]
    lines += [f"#define PCL_{name} {value}" for name, value in consts]
    lines.append(f"#define PCL_STREAM_SPEC_VALUES {{ {', '.join(macros)} }}")
    lines += ["", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def generated_headers(spec: DatapathConfig | None = None, learning=None) -> dict[str, str]:
    """File name -> text of every generated header for this spec (and learning rule, if any)."""
    spec = spec or default_spec()
    headers = {
        "pcl_datapath.h": spec.c_header(),
        "pcl_image_stream.h": stream_c_header(),
        "pcl_protocol.h": protocol.c_header() + f'#define PCL_FIRMWARE_VERSION "{__version__}"\n',
    }
    if learning is not None:
        headers["pcl_learning.h"] = learning.c_header()
        headers["pcl_learning_fields.h"] = learning_fields_c_header()
    return headers


def learning_codes(learning: LearningConfig) -> tuple[int, ...]:
    """The rule's fields in declaration order, string fields as their codes (as INFO reports them)."""
    return tuple(
        _LEARNING_ENUM_CODES[f.name][getattr(learning, f.name)] if f.name in _LEARNING_ENUM_CODES
        else int(getattr(learning, f.name))
        for f in dataclasses.fields(LearningConfig)
    )


def learning_from_codes(codes) -> LearningConfig:
    """Inverse of ``learning_codes``: the rule a board reports in INFO."""
    fields = dataclasses.fields(LearningConfig)
    if len(codes) != len(fields):
        raise ValueError(f"expected {len(fields)} learning fields, got {len(codes)}")
    values = {}
    for f, code in zip(fields, codes):
        if f.name in _LEARNING_ENUM_CODES:
            names = {v: k for k, v in _LEARNING_ENUM_CODES[f.name].items()}
            values[f.name] = names[int(code)]
        else:
            values[f.name] = int(code)
    return LearningConfig(**values)


def learning_fields_c_header(guard: str = "PCL_LEARNING_FIELDS_H") -> str:
    """``PCL_LEARN_SPEC_VALUES``: the rule's constants in LearningConfig field order (for INFO)."""
    macros = [f"(uint32_t)PCL_LEARN_{f.name.upper()}" for f in dataclasses.fields(LearningConfig)]
    missing = [m for m in macros if f"#define {m[10:]} " not in LearningConfig().c_header()]
    if missing:
        raise RuntimeError(f"LearningConfig.c_header() lacks {missing}")
    return "\n".join([
        "/* Generated from popcount_learn.learning.LearningConfig (field order); do not edit. */",
        f"#ifndef {guard}", f"#define {guard}", "",
        f"#define PCL_LEARN_SPEC_VALUES {{ {', '.join(macros)} }}",
        "", f"#endif /* {guard} */", "",
    ])


@dataclass(frozen=True)
class FirmwareBuild:
    board: str
    build_dir: Path
    gen_dir: Path
    make_vars: tuple[tuple[str, str], ...]

    def make_command(self, *targets: str) -> list[str]:
        return ["make", "-s", "-C", str(FIRMWARE_DIR), f"BOARD={self.board}", f"BUILD_DIR={self.build_dir}",
                f"GEN_DIR={self.gen_dir}", *(f"{k}={v}" for k, v in self.make_vars), *targets]


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return  # keep the timestamp: make must not rebuild for nothing
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare_build(spec: DatapathConfig | None = None, *, board: str = "host", learning=None,
                  build_root: Path | None = None, make_vars: dict | None = None) -> FirmwareBuild:
    """Write the generated headers into a build directory keyed by their hash; no compiling yet."""
    headers = generated_headers(spec, learning)
    if learning is not None:
        make_vars = {"LEARN_SRCS": "pcl_learn.c", **(make_vars or {})}
    items = tuple(sorted((str(k), str(v)) for k, v in (make_vars or {}).items()))
    key = hashlib.sha256(repr((board, items, sorted(headers.items()))).encode()).hexdigest()[:16]
    build_dir = Path(build_root or default_build_root()) / f"{board}-{key}"
    gen_dir = build_dir / "gen"
    gen_dir.mkdir(parents=True, exist_ok=True)
    for name, text in headers.items():
        _write_if_changed(gen_dir / name, text)
    return FirmwareBuild(board, build_dir, gen_dir, items)


def _make(build: FirmwareBuild, *targets: str) -> str:
    if shutil.which("make") is None:
        raise FirmwareBuildError("building the firmware needs 'make' and a C compiler (apt-get install make gcc)")
    with open(build.build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent launchers of one spec build once
        r = subprocess.run(build.make_command(*targets), capture_output=True, text=True, timeout=MAKE_TIMEOUT_S)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise FirmwareBuildError(f"firmware build failed (make {' '.join(targets) or 'all'} in {build.build_dir}):\n{tail}")
    return r.stdout


def build_firmware(spec: DatapathConfig | None = None, *, board: str = "host", learning=None,
                   build_root: Path | None = None, make_vars: dict | None = None) -> Path:
    """Build (if needed) the firmware for ``spec`` and return the path of the binary / ELF."""
    if not (FIRMWARE_DIR / "boards" / board / "board.mk").is_file():
        known = sorted(p.name for p in (FIRMWARE_DIR / "boards").iterdir() if (p / "board.mk").is_file())
        raise FirmwareBuildError(f"unknown board {board!r}; boards: {', '.join(known)}")
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


class VirtualBoard:
    """The host firmware as a child process whose stdin/stdout is the master side of a pty.

    ``port`` is the slave device (e.g. ``/dev/pts/5``), which any serial client can open. The
    launcher keeps the slave open itself, so clients may come and go; closing the board ends
    the process.
    """

    def __init__(self, executable: Path) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
            self.port = os.ttyname(slave)
            self._process = subprocess.Popen(
                [str(executable)], stdin=master, stdout=master, close_fds=True, start_new_session=True
            )
        except BaseException:
            os.close(slave)
            raise
        finally:
            os.close(master)  # the child holds its own copy
        self._slave = slave

    @property
    def pid(self) -> int:
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._process.wait(timeout)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None

    stop = close  # the name QEMU boards use

    def __enter__(self) -> "VirtualBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_virtual_board(spec: DatapathConfig | None = None, *, qemu: bool = False, learning=None,
                        build_root: Path | None = None):
    """Build for ``spec`` and start a virtual board: the host one, or QEMU with ``qemu=True``."""
    if qemu:
        try:
            from .qemu import start_qemu
        except ImportError:
            raise FirmwareBuildError("this release has no QEMU board (firmware_bridge/qemu.py)") from None
        return start_qemu(build_firmware(spec, board="mps2_an385", learning=learning, build_root=build_root))
    return VirtualBoard(build_firmware(spec, board="host", learning=learning, build_root=build_root))
